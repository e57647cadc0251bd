#!/usr/bin/env bash
# What a user gets from `pip install .` (not editable): a fresh venv, this checkout installed into
# it, then the venv's own `storlab` run from a directory outside the checkout: validate and plan a
# topology, list the shipped exercises, bring a small LXC lab up (the golden image cached by the
# LXC lab tests before it), run a command on a node and take the lab down. Fails on any error;
# leaves nothing behind (the lab goes down on any exit, the venv and work directory are removed).
#   sudo bash ci/install-check.sh        (ci/test.sh runs it as the phase 'install: pip install .')
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/storlab-install.XXXXXX)
venv=$work/venv
storlab=$venv/bin/storlab
lab=install-check
lab_started=0

cleanup() {
  local rc=$?
  if [ "$lab_started" = 1 ]; then
    "$storlab" down "$lab" || { echo "install-check: storlab down $lab failed" >&2; rc=1; }
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT

# pip builds from a copy of what the package is made of: a build/ left in the checkout by an earlier
# build would otherwise put stale modules into the wheel, and the checkout stays untouched
mkdir "$work/src" "$work/run"
tar -C "$repo" --exclude=__pycache__ -cf - harness pyproject.toml README.md | tar -C "$work/src" -xf -
python3 -m venv "$venv"
(cd "$work/src" && "$venv/bin/pip" install -q .)

cd "$work/run"  # nothing of the checkout on the path
cp "$repo/topologies/nodes-3.yaml" .
"$venv/bin/python" - <<'EOF'
import harness, harness.providers.vagrant.provider as vagrant
assert "/site-packages/harness/" in harness.__file__, f"harness imported from {harness.__file__}, not the venv"
assert vagrant.VAGRANTFILE.is_file(), f"{vagrant.VAGRANTFILE} missing: package data"
# the web service's pages and terminal (xterm.js) are package data too
from harness.web import app, pages
for f in ("seat.js", "class.js", "style.css", "vendor/xterm.js", "vendor/xterm.css", "vendor/addon-fit.js"):
    assert (app.STATIC / f).is_file(), f"{app.STATIC / f} missing: package data"
assert "Check" in pages.render("seat.html", title="t", seat="s01", klass="c")
EOF
"$storlab" validate nodes-3.yaml
"$storlab" plan nodes-3.yaml --provider lxc --name "$lab" -o plan  # the preview stays in the work directory
exercises=$("$storlab" exercise list)
echo "$exercises"
for d in "$repo"/harness/training/exercises/*/; do
  grep -q "^$(basename "$d") " <<<"$exercises" || { echo "install-check: exercise $(basename "$d") not listed" >&2; exit 1; }
done

lab_started=1
"$storlab" up nodes-3.yaml --provider lxc --name "$lab"
[ "$("$storlab" ssh "$lab" node1 hostname)" = node1 ] || { echo "install-check: ssh to node1 failed" >&2; exit 1; }
"$storlab" down "$lab"
lab_started=0
if "$storlab" list | grep -q "^$lab "; then echo "install-check: $lab still listed after down" >&2; exit 1; fi
echo "install-check: ok"
