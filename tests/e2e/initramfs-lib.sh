# shellcheck shell=bash
# What the drivers that build real initramfs images share (tests/e2e/initramfs-tools.sh,
# tests/e2e/dracut.sh, tests/initcpio/test.sh); sourced after `set -euo pipefail`.
#
#   ir_init NAME BINARY LOGDIR   the arguments (binary=, logdir=, created), log() prefixed
#                                with NAME, and the kernel (kernel=, kver=, image=, from
#                                tests/e2e/setup.sh)
#   ir_workroot CHROOT           $work (removed at exit, /proc in it unmounted) and $w, a
#                                hard-linked copy of CHROOT (nothing may write into its
#                                files) with the kernel's modules and config
#   ir_install CONFIG            vfio-bind `make install`ed into $w, CONFIG as its config
#   check DESCRIPTION CMD...     an "ok - " or "FAIL - " line; a failure sets fail=1
IR_E2E="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
IR_REPO="$(cd "$IR_E2E/../.." && pwd)"
fail=0

ir_init() {
    IR_NAME="$1"
    shift
    [ $# -eq 2 ] || { echo "usage: $0 BINARY LOGDIR" >&2; exit 2; }
    binary="$(realpath "$1")"
    logdir="$(realpath -m "$2")"
    mkdir -p "$logdir"
    eval "$("$IR_E2E/setup.sh")"
}

log() { echo "$IR_NAME: $*" >&2; }

ir_workroot() {
    work="$(mktemp -d "${TMPDIR:-/tmp}/vfio-bind-$IR_NAME.XXXXXX")"
    trap 'umount "$work/root/proc" 2>/dev/null || true; rm -rf "$work"' EXIT
    w="$work/root"
    cp -al "$1" "$w"
    mkdir -p "$w/lib/modules" "$w/boot"
    rm -rf "${w:?}/lib/modules/$kver"
    cp -al "$kernel/lib/modules/$kver" "$w/lib/modules/$kver"
    # Generators read the kernel's config (which compressions it can unpack).
    cp "$kernel/boot/config-$kver" "$w/boot/"
}

ir_install() {
    make -C "$IR_REPO" -s install DESTDIR="$w" PREFIX=/usr SYSTEMDUNITDIR=/usr/lib/systemd/system \
        VFIO_BIND_BIN="$binary" COMPDIR="$work/completions" PKG_CONFIG=false >/dev/null
    rm -f "$w/etc/vfio-bind.toml"
    cp "$1" "$w/etc/vfio-bind.toml"
}

check() {
    local d="$1"
    shift
    if "$@"; then echo "ok - $d"; else echo "FAIL - $d"; fail=1; fi
}
