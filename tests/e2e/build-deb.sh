#!/bin/bash
# Build vfio-bind_<version>_amd64.deb with `dpkg-buildpackage -us -uc -b` from a clean
# copy of the source tree (the files git knows, plus untracked ones not ignored), check
# it with lintian (no errors, no warnings), and copy it to OUTDIR (default target/deb).
# Prints the .deb's path. Installs debhelper and lintian when missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="$(realpath -m "${1:-$repo/target/deb}")"

need=()
command -v dh >/dev/null || need+=(debhelper)
command -v lintian >/dev/null || need+=(lintian)
command -v dpkg-buildpackage >/dev/null || need+=(dpkg-dev)
if [ ${#need[@]} -gt 0 ]; then
    echo "build-deb: installing ${need[*]}" >&2
    apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >&2
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/vfio-bind-deb.XXXXXX")"
trap 'rm -rf "$work"' EXIT
src="$work/vfio-bind"
mkdir -p "$src"
(cd "$repo" && git ls-files -z --cached --others --exclude-standard |
    xargs -0 cp --parents -t "$src")
# Reuse compiled crates between runs; the package build itself starts from clean sources.
export CARGO_TARGET_DIR="$repo/target/deb-build"
(cd "$src" && dpkg-buildpackage -us -uc -b) >"$work/build.log" 2>&1 ||
    { tail -n 40 "$work/build.log" >&2; echo "build-deb: dpkg-buildpackage failed" >&2; exit 1; }
lintian --fail-on error,warning "$work"/vfio-bind_*_amd64.changes >&2 ||
    { echo "build-deb: lintian reports errors or warnings" >&2; exit 1; }
mkdir -p "$out"
rm -f "$out"/vfio-bind_*_amd64.deb
cp "$work"/vfio-bind_*_amd64.deb "$out"/
ls "$out"/vfio-bind_*_amd64.deb
