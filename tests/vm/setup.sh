#!/bin/bash
# Install everything the real-kernel tests need on a Debian 12 machine, and cache the
# guest kernel. Idempotent; safe to run before every test run.
#
#   - Debian packages: qemu-system-x86 (the guest), busybox-static (its userland),
#     kmod (depmod for the guest's modules.dep), cpio (the initramfs), e2fsprogs (its
#     disk), make and groff-base (install and man page tests), systemd
#     (systemd-analyze verify of the unit's ordering), util-linux (flock), zsh and fish
#     (the completion scripts run in each shell), time (peak RSS in benches/scale.rs),
#     pci.ids (device names in the demo guest), rpm, debugedit and elfutils (rpmbuild
#     and its -debuginfo split, tests/rpm.rs), python3-rpm, python3-venv and libmagic1
#     (rpmlint from PyPI in a venv that sees the rpm bindings, tests/rpm/rpmlint.sh).
#   - The kernel that Debian's linux-image-amd64 depends on, downloaded with
#     `apt-get download` and unpacked into the cache (no install on this machine).
#   - With --ovmf, also the UEFI firmware for the GPU topology (run-guest.sh --topology
#     gpu): Debian's ovmf package, `apt-get download`ed and unpacked into the cache.
#
# Cache: $VFIO_BIND_VM_CACHE (default ~/.cache/vfio-bind-vm). Prints the kernel dir; with
# --ovmf a second line, the directory holding OVMF_CODE_4M.fd and OVMF_VARS_4M.fd.
set -euo pipefail

ovmf=0
[ "${1:-}" = --ovmf ] && ovmf=1

cache="${VFIO_BIND_VM_CACHE:-$HOME/.cache/vfio-bind-vm}"
mkdir -p "$cache"

need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
[ -x /bin/busybox ] || need+=(busybox-static)
command -v depmod >/dev/null || need+=(kmod)
command -v cpio >/dev/null || need+=(cpio)
command -v make >/dev/null || need+=(make)            # tests/install.rs
command -v groff >/dev/null || need+=(groff-base)     # man page checks
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)  # the guest's virtio disk
command -v systemd-analyze >/dev/null || need+=(systemd)  # tests/unit_ordering.rs
command -v flock >/dev/null || need+=(util-linux)     # tests/hostile.rs (a lock holder)
command -v zsh >/dev/null || need+=(zsh)              # tests/completions.rs
command -v fish >/dev/null || need+=(fish)            # tests/completions.rs
[ -x /usr/bin/time ] || need+=(time)                # benches/scale.rs (peak RSS of a child)
[ -f /usr/share/misc/pci.ids ] || [ -f /usr/share/hwdata/pci.ids ] || need+=(pci.ids)  # tests/vm/demo.sh names
command -v rpmbuild >/dev/null || need+=(rpm)            # tests/rpm.rs
command -v find-debuginfo >/dev/null || need+=(debugedit)  # tests/rpm.rs (-debuginfo)
command -v eu-strip >/dev/null || need+=(elfutils)       # tests/rpm.rs (find-debuginfo)
/usr/bin/python3 -c 'import rpm' 2>/dev/null || need+=(python3-rpm)    # tests/rpm/rpmlint.sh
/usr/bin/python3 -c 'import ensurepip' 2>/dev/null || need+=(python3-venv)  # tests/rpm/rpmlint.sh
[ -e /usr/lib/x86_64-linux-gnu/libmagic.so.1 ] || need+=(libmagic1)  # rpmlint (python-magic)
if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing ${need[*]}" >&2
    if [ "$(id -u)" != 0 ]; then
        echo "setup: need root to install ${need[*]}" >&2
        exit 1
    fi
    apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >&2
fi

# --kernel 6.12 (for run-guest.sh --kernel 6.12): instead of the default kernel, the one
# of Debian's bookworm-backports (6.12: vfio_virqfd is merged into vfio since 6.2).
# Fetched through a scratch apt directory in the cache (its own sources list, made here
# from the URIs: of /etc/apt/sources.list.d/debian.sources; this machine's apt sources
# and lists are never touched), unpacked into the cache keyed by the package's version,
# its .ko.xz modules decompressed (the guest's busybox modprobe loads plain .ko) and
# depmod run. Prints that kernel's dir only. The cached one is reused when the index is
# unreachable; a stale index is refreshed once when its version no longer downloads.
if [ "${1:-}" = --kernel ]; then
    want="${2:-}"
    bd="$cache/apt-bookworm-backports"
    mkdir -p "$bd/lists/partial" "$bd/cache/archives/partial"
    uri="$(awk '$1 == "URIs:" {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
    [ -n "$uri" ] || { echo "setup: no URIs: in /etc/apt/sources.list.d/debian.sources" >&2; exit 1; }
    echo "deb $uri bookworm-backports main" >"$bd/sources.list"
    bo=(-o Dir::Etc::sourcelist="$bd/sources.list" -o Dir::Etc::sourceparts=/dev/null
        -o Dir::State::Lists="$bd/lists" -o Dir::Cache="$bd/cache")
    bdir=""
    for try in 1 2; do
        [ $try = 1 ] || apt-get "${bo[@]}" update -q >&2 || true
        bpkg="$(apt-cache "${bo[@]}" depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}' || true)"
        [ -n "$bpkg" ] || continue
        case "$bpkg" in linux-image-"$want".*) ;; *)
            echo "setup: bookworm-backports has $bpkg, not a $want kernel" >&2; exit 1 ;; esac
        bver="$(apt-cache "${bo[@]}" policy "$bpkg" | awk '/Candidate:/ {print $2; exit}')"
        bdir="$cache/${bpkg}_${bver//[^A-Za-z0-9.+-]/_}"
        [ ! -f "$bdir/.complete" ] || break
        echo "setup: downloading $bpkg $bver (bookworm-backports)" >&2
        rm -rf "$bdir" "$cache/dl-bpo"
        mkdir -p "$cache/dl-bpo"
        (cd "$cache/dl-bpo" && apt-get "${bo[@]}" download -q "$bpkg=$bver" >&2) || continue
        dpkg-deb -x "$cache"/dl-bpo/*.deb "$bdir"
        rm -rf "$cache/dl-bpo"
        unxz=(xz -d)
        command -v xz >/dev/null || unxz=(/bin/busybox unxz)
        find "$bdir/lib/modules" -name '*.ko.xz' -exec "${unxz[@]}" {} +
        depmod -b "$bdir" "$(ls "$bdir/lib/modules")"
        touch "$bdir/.complete"
        break
    done
    [ -n "$bdir" ] && [ -f "$bdir/.complete" ] ||
        { echo "setup: cannot fetch the bookworm-backports kernel" >&2; exit 1; }
    echo "$bdir"
    exit 0
fi

# Which kernel package does linux-image-amd64 pull in? Reuse any cached one when the
# package index is unavailable.
pkg="$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')"
if [ -z "$pkg" ]; then
    apt-get update -q >&2
    pkg="$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')"
fi
[ -n "$pkg" ] || { echo "setup: cannot resolve the kernel package of linux-image-amd64" >&2; exit 1; }

kdir="$cache/$pkg"
if [ ! -f "$kdir/.complete" ]; then
    echo "setup: downloading $pkg" >&2
    rm -rf "$kdir" "$cache/dl"
    mkdir -p "$cache/dl"
    (cd "$cache/dl" && apt-get download -q "$pkg" >&2)
    dpkg-deb -x "$cache"/dl/*.deb "$kdir"
    rm -rf "$cache/dl"
    ver="$(ls "$kdir/lib/modules")"
    depmod -b "$kdir" "$ver"
    touch "$kdir/.complete"
fi
echo "$kdir"

[ $ovmf = 1 ] || exit 0
# The UEFI firmware, same way: the candidate version of Debian's ovmf package.
over="$(apt-cache policy ovmf 2>/dev/null | awk '/Candidate:/ {print $2; exit}')"
if [ -z "$over" ] || [ "$over" = "(none)" ]; then
    apt-get update -q >&2
    over="$(apt-cache policy ovmf | awk '/Candidate:/ {print $2; exit}')"
fi
[ -n "$over" ] && [ "$over" != "(none)" ] || { echo "setup: no candidate for the ovmf package" >&2; exit 1; }
odir="$cache/ovmf-${over//[^A-Za-z0-9.+-]/_}"
if [ ! -f "$odir/.complete" ]; then
    echo "setup: downloading ovmf $over" >&2
    rm -rf "$odir" "$cache/dl-ovmf"
    mkdir -p "$cache/dl-ovmf"
    (cd "$cache/dl-ovmf" && apt-get download -q "ovmf=$over" >&2)
    dpkg-deb -x "$cache"/dl-ovmf/*.deb "$cache/dl-ovmf/x"
    mkdir -p "$odir"
    cp "$cache"/dl-ovmf/x/usr/share/OVMF/OVMF_CODE_4M.fd "$cache"/dl-ovmf/x/usr/share/OVMF/OVMF_VARS_4M.fd "$odir/"
    rm -rf "$cache/dl-ovmf"
    touch "$odir/.complete"
fi
echo "$odir"
