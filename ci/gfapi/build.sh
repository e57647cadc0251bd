#!/usr/bin/env bash
# Build libgfcancel.so (gfcancel.c) for this host's libglusterfs and print its path; exit 1 (nothing
# printed) where it does not apply: libglusterfs0 is not 10.3, or its -dev package is not the same
# version (the shim reads the library's own structs), or gcc / liburcu-dev are missing.
#   bash ci/gfapi/build.sh      (ci/setup-host.sh runs it; the result is cached by version and source)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
lib=$(dpkg-query -W -f='${Version}' libglusterfs0 2>/dev/null) || exit 1
dev=$(dpkg-query -W -f='${Version}' libglusterfs-dev 2>/dev/null) || exit 1
case "$lib" in 10.3-*) ;; *) exit 1 ;; esac
[ "$lib" = "$dev" ] && dpkg-query -W liburcu-dev >/dev/null 2>&1 && command -v gcc >/dev/null || exit 1
sum=$(sha256sum "$here/gfcancel.c" | cut -c1-12)
dir="${STORLAB_HOME:-/var/lib/storlab}/gfapi"
out="$dir/libgfcancel-$lib-$sum.so"
if [ ! -f "$out" ]; then
  mkdir -p "$dir"
  gcc -O2 -fPIC -shared -Wall -DGF_LINUX_HOST_OS -DSIZEOF_LONG=8 -DSIZEOF_INT=4 -DSIZEOF_LONG_LONG=8 \
      -D_FILE_OFFSET_BITS=64 -o "$out.tmp" "$here/gfcancel.c" -ldl >&2
  mv "$out.tmp" "$out"
fi
echo "$out"
