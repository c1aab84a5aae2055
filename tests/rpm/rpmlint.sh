#!/bin/bash
# rpmlint from PyPI on spec files and packages, with tests/rpm/rpmlint.toml (what a
# distribution's rpmlint configuration sets) and dist/rpm/vfio-bind-rpmlintrc (the
# package's filters):
#
#   tests/rpm/rpmlint.sh FILE...
#
# Prints rpmlint's report and exits with its status (0: no errors; the caller checks the
# warnings count). rpmlint needs the rpm library's Python bindings, which are not on
# PyPI: Debian's python3-rpm provides them to /usr/bin/python3, and the venv sees them
# through --system-site-packages. The venv is cached, one per rpmlint version, in
# $VFIO_BIND_VM_CACHE (default ~/.cache/vfio-bind-vm). Installs python3-rpm,
# python3-venv and libmagic1 when missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
[ $# -gt 0 ] || { echo "usage: $0 FILE..." >&2; exit 2; }

RPMLINT_VERSION=2.10.0
py=/usr/bin/python3
cache="${VFIO_BIND_VM_CACHE:-$HOME/.cache/vfio-bind-vm}"
venv="$cache/rpmlint-$RPMLINT_VERSION"

# One install and venv creation at a time (the tests run in parallel).
mkdir -p "$cache"
exec 9>"$cache/rpmlint.lock"
flock 9

need=()
"$py" -c 'import rpm' 2>/dev/null || need+=(python3-rpm)
"$py" -c 'import ensurepip' 2>/dev/null || need+=(python3-venv)
[ -e /usr/lib/x86_64-linux-gnu/libmagic.so.1 ] || need+=(libmagic1)
command -v rpm2cpio >/dev/null || need+=(rpm)
if [ ${#need[@]} -gt 0 ]; then
    echo "rpmlint: installing ${need[*]}" >&2
    apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >&2
fi

if [ ! -f "$venv/.complete" ]; then
    echo "rpmlint: creating $venv" >&2
    rm -rf "$venv"
    "$py" -m venv --system-site-packages "$venv" >&2
    "$venv/bin/pip" install -q --disable-pip-version-check "rpmlint==$RPMLINT_VERSION" >&2
    touch "$venv/.complete"
fi

exec 9>&-
exec "$venv/bin/rpmlint" --config "$here/rpmlint.toml" \
    --rpmlintrc "$here/../../dist/rpm/vfio-bind-rpmlintrc" "$@"
