# The time-budget guard of ci/test.sh (sourced; tested by tests/unit/test_ci_budget.py).
# Needs: t0 (SECONDS at the start), budget and target (seconds), rc and timings (set by the caller).
vm_expected=0  # slow-day seconds of the VM phases run so far
vm_actual=0    # and what they took here

# phase KIND NAME SLOW_DAY_SECONDS PYTEST_ARGS...   KIND: always | core | extra
phase() {
  local kind=$1 name=$2 expected=$3; shift 3
  local elapsed=$((SECONDS - t0)) t=$SECONDS predicted limit why=""
  if [ "$vm_expected" -gt 0 ]; then
    predicted=$((expected * vm_actual / vm_expected))
  else
    predicted=$expected
  fi
  case $kind in
    core) limit=$budget ;;
    extra) limit=$target ;;
    *) limit=0 ;;
  esac
  if [ "$limit" -gt 0 ] && [ $((elapsed + predicted)) -gt "$limit" ]; then
    why="ci/test.sh: phase '$name' skipped: predicted ${predicted}s (${expected}s on a slow day) after ${elapsed}s would pass the ${limit}s $([ "$kind" = core ] && echo budget || echo target)"
    echo "== SKIPPED ${why#ci/test.sh: }"
    STORLAB_SKIP_REASON="$why" python3 -m pytest "$@" || rc=$?
    timings+=("$name: SKIPPED (predicted ${predicted}s, ${elapsed}s elapsed, limit ${limit}s)")
    return
  fi
  if [ "$kind" = always ]; then
    echo "== phase '$name' (never skipped; ${elapsed}s elapsed)"
  else
    echo "== phase '$name' (predicted ${predicted}s, ${expected}s on a slow day; ${elapsed}s elapsed)"
  fi
  python3 -m pytest "$@" || rc=$?
  echo "== phase '$name': $((SECONDS - t))s"
  timings+=("$name: $((SECONDS - t))s")
  if [ "$kind" != always ]; then
    vm_expected=$((vm_expected + expected))
    vm_actual=$((vm_actual + SECONDS - t))
  fi
}
