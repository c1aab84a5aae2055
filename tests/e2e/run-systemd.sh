#!/bin/bash
# Boot a throwaway QEMU guest (TCG, q35 + intel-iommu, Debian's 6.1 kernel) with systemd
# as PID 1 on a Debian bookworm root filesystem, with vfio-bind installed and enabled,
# and run one test script in it once the boot has finished.
#
#   tests/e2e/run-systemd.sh [OPTIONS] BINARY TESTSCRIPT LOGDIR
#
#   --config FILE     /etc/vfio-bind.toml in the guest (default: tests/e2e/vfio-bind.toml,
#                     which binds the lone e1000e at 0000:02:00.0 by address)
#   --no-config       no /etc/vfio-bind.toml
#   --unit FILE       the unit to install (default: dist/systemd/vfio-bind.service)
#   --no-enable       install the unit but do not enable it
#   --file SRC:DEST   also copy SRC to DEST (absolute) in the guest; repeatable. Parent
#                     directories are created; an existing DEST is replaced.
#   --append ARGS     more kernel command-line arguments (e.g. modprobe.blacklist=e1000e)
#   --no-iommu        no intel-iommu device and no intel_iommu=on (no IOMMU groups)
#   --hotplug         one more (empty) pcie-root-port, id=rphp (bus 06), a netdev nhp, and a
#                     QEMU monitor: a console line holding "E2E-QEMU <monitor command>"
#                     from the test script (device_add/device_del) is sent to the monitor
#   --gpu             a second std VGA (1234:1111, not the boot VGA; bochs-drm's) behind one
#                     more pcie-root-port, id=rpgpu: 0000:06:00.0 (not with --hotplug). Any
#                     -device VGA turns QEMU's default one off, so the boot VGA at 00:01.0
#                     is then given explicitly, and every other BDF stays as it is.
#   --initrd FILE     boot this initramfs (a real one: initramfs-tools, dracut) instead of
#                     the tiny busybox one, with root=/dev/sda on the kernel command line
#   --deb FILE        install the files of this .deb (dpkg-deb -x; /lib/... goes to
#                     /usr/lib/... as on merged-/usr bookworm) instead of BINARY and the
#                     unit, and enable the unit as its postinst does (a link in the
#                     .wants/ directory of each WantedBy= target). BINARY is then ignored
#                     (pass -). --config still replaces the package's conffile.
#   --tree DIR        the same for an installed tree (`make install DESTDIR=DIR`): every
#                     file of DIR at its path, with its mode, units enabled as --deb does
#                     (BINARY ignored: pass -)
#   --rootfs DIR      boot a root disk image made of DIR (a cached chroot from
#                     tests/e2e/chroot.sh, e.g. with libvirt installed; tests/e2e/setup.sh
#                     --rootfs caches the image) instead of the plain root filesystem
#
# In the guest:
#   BINARY      -> /usr/sbin/vfio-bind (dynamically linked against the guest's glibc,
#                  bookworm = this machine's, so a binary built here runs there)
#   unit        -> /usr/lib/systemd/system/vfio-bind.service, enabled with the link
#                  /etc/systemd/system/multi-user.target.wants/vfio-bind.service
#   TESTSCRIPT  -> /usr/local/lib/vfio-bind-e2e/test.sh, run with bash as root by
#                  vfio-bind-e2e.service (After=multi-user.target; cwd /root) with
#                  E2E_RESULTS=/var/lib/vfio-bind-e2e/results (write result files
#                  there) and E2E_LIB=/usr/local/lib/vfio-bind-e2e/lib.sh (helpers).
#                  Its output goes to the journal, the console and E2E_RESULTS/test.log.
#   Afterwards the runner saves exit-code, system-state.txt, failed-units.txt,
#   systemd-analyze-blame.txt, journal.export (`journalctl -b -o export`) and
#   journal.txt into E2E_RESULTS and powers off.
#
# LOGDIR (created; emptied first when a previous run made it, refused when it holds
# anything else) receives everything in E2E_RESULTS, console.log (the serial console: kernel,
# systemd status lines, the test output) and timing.txt. Exits 0 only when the test script
# exited 0.
#
# Guest PCI topology: exactly tests/vm/run-guest.sh's -device list (same BDFs and, with
# Debian's 6.1, the same IOMMU group numbers). The root disk adds no PCI device: it is a
# SATA disk (/dev/sda) on q35's built-in ICH9 AHCI controller 0000:00:1f.2 (group 6 with
# 00:1f.0 and 00:1f.3), so the ahci driver is bound there and holds the mounted root.
# The 16 MiB ext4 disk on virtio-blk 05:00.0 is /dev/vda, as in tests/vm.
#
# Environment: VFIO_BIND_E2E_TIMEOUT (host-side seconds for the whole guest, default
# 420; the test script gets that minus 90), VFIO_BIND_E2E_MEM (MiB, default 1024),
# VFIO_BIND_E2E_KEEP=1 (keep the work dir with the guest's disk image and print it),
# VFIO_BIND_VM_CACHE (see setup.sh).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
t0=$(date +%s.%N)

die() { echo "run-systemd: $*" >&2; exit 2; }

config="$here/vfio-bind.toml"
unit="$repo/dist/systemd/vfio-bind.service"
enable=1
extra=()
more_append=""
iommu=1
deb=""
initrd=""
hotplug=0
gpu=0
tree=""
rootfs_dir=""
while [ $# -gt 0 ]; do
    case "$1" in
    --config) [ $# -ge 2 ] || die "--config needs a file"; config="$2"; shift 2 ;;
    --no-config) config=""; shift ;;
    --unit) [ $# -ge 2 ] || die "--unit needs a file"; unit="$2"; shift 2 ;;
    --no-enable) enable=0; shift ;;
    --file) [ $# -ge 2 ] || die "--file needs SRC:DEST"; extra+=("$2"); shift 2 ;;
    --append) [ $# -ge 2 ] || die "--append needs arguments"; more_append="$more_append $2"; shift 2 ;;
    --no-iommu) iommu=0; shift ;;
    --deb) [ $# -ge 2 ] || die "--deb needs a file"; deb="$(realpath "$2")"; shift 2 ;;
    --hotplug) hotplug=1; shift ;;
    --gpu) gpu=1; shift ;;
    --tree) [ $# -ge 2 ] && [ -d "$2" ] || die "--tree needs a directory"; tree="$(realpath "$2")"; shift 2 ;;
    --rootfs) [ $# -ge 2 ] && [ -d "$2" ] || die "--rootfs needs a directory"; rootfs_dir="$(realpath "$2")"; shift 2 ;;
    --initrd) [ $# -ge 2 ] && [ -f "$2" ] || die "--initrd needs a file"; initrd="$(realpath "$2")"; shift 2 ;;
    --) shift; break ;;
    -?*) die "unknown option $1" ;;
    *) break ;;
    esac
done
[ $# -eq 3 ] || die "usage: $0 [--config FILE|--no-config] [--unit FILE] [--no-enable] [--file SRC:DEST]... [--append ARGS] [--no-iommu] [--initrd FILE] [--tree DIR] [--rootfs DIR] BINARY TESTSCRIPT LOGDIR"
[ -z "$deb" ] || [ -z "$tree" ] || die "--deb and --tree exclude each other"
binary="$1"; [ -n "$deb$tree" ] || binary="$(realpath "$1")"
testscript="$(realpath "$2")"
logdir="$(realpath -m "$3")"
[ -n "$deb$tree" ] || [ -f "$binary" ] || die "no binary $binary"
[ -z "$deb" ] || [ -f "$deb" ] || die "no package $deb"
[ -f "$testscript" ] || die "no test script $testscript"
[ -f "$unit" ] || die "no unit file $unit"
[ -z "$config" ] || [ -f "$config" ] || die "no config $config"
for f in ${extra[@]+"${extra[@]}"}; do
    src="${f%%:*}" dest="${f#*:}"
    [ -f "$src" ] && [ "${dest#/}" != "$dest" ] || die "--file $f: need an existing SRC and an absolute DEST"
done
timeout_s="${VFIO_BIND_E2E_TIMEOUT:-420}"
guest_timeout=$((timeout_s - 90))
[ $guest_timeout -ge 30 ] || die "VFIO_BIND_E2E_TIMEOUT too small"
mem="${VFIO_BIND_E2E_MEM:-1024}"

# LOGDIR: never mix two runs' files, never wipe a directory this script did not make.
if [ -d "$logdir" ] && [ -n "$(ls -A "$logdir")" ]; then
    [ -f "$logdir/.vfio-bind-e2e" ] || die "LOGDIR $logdir is not empty (and not from an earlier run)"
    find "$logdir" -mindepth 1 -delete
fi
mkdir -p "$logdir"
touch "$logdir/.vfio-bind-e2e"

# 1. Packages, kernel, cached root image.
setup_out="$("$here/setup.sh" ${rootfs_dir:+--rootfs "$rootfs_dir"})" || { echo "run-systemd: setup.sh failed" >&2; exit 1; }
kdir="$(echo "$setup_out" | sed -n 's/^kernel=//p')"
kver="$(echo "$setup_out" | sed -n 's/^kver=//p')"
image="$(echo "$setup_out" | sed -n 's/^image=//p')"
vmlinuz="$kdir/boot/vmlinuz-$kver"
[ -f "$vmlinuz" ] && [ -f "$image" ] || { echo "run-systemd: setup gave no kernel/image" >&2; exit 1; }
t_setup=$(date +%s.%N)

work="$(mktemp -d "${TMPDIR:-/tmp}/vfio-bind-e2e.XXXXXX")"
if [ "${VFIO_BIND_E2E_KEEP:-0}" = 1 ]; then
    trap 'echo "run-systemd: kept $work" >&2' EXIT
else
    trap 'rm -rf "$work"' EXIT
fi

# 2. This run's copy of the root disk, with the files under test written into it by
# debugfs (no mount needed; the cached image is never written).
cp --sparse=always --reflink=auto "$image" "$work/root.img"

printf 'E2E_GUEST_TIMEOUT=%s\n' "$guest_timeout" >"$work/e2e.env"
# dest:src:mode
files=()
links=()
if [ -n "$deb$tree" ]; then
    # The package's (or the tree's) files, at their paths (merged /usr), with their modes.
    if [ -n "$deb" ]; then
        dpkg-deb -x "$deb" "$work/deb"
    else
        cp -a "$tree" "$work/deb"
    fi
    while IFS= read -r -d '' f; do
        rel="${f#"$work/deb"}"
        dest="$rel"
        case "$dest" in /lib/*|/sbin/*|/bin/*) dest="/usr$dest" ;; esac
        files+=("$dest:$f:$(stat -c %a "$f")")
    done < <(find "$work/deb" -type f -print0 | sort -z)
    # Enable as deb-systemd-helper does: a link per WantedBy= target.
    for u in "$work"/deb/lib/systemd/system/*.service "$work"/deb/usr/lib/systemd/system/*.service; do
        [ -f "$u" ] || continue
        name="$(basename "$u")"
        for t in $(sed -n 's/^WantedBy=//p' "$u"); do
            [ $enable = 1 ] && links+=("/etc/systemd/system/$t.wants/$name:/lib/systemd/system/$name")
        done
    done
else
    files+=(
        "/usr/sbin/vfio-bind:$binary:0755"
        "/usr/lib/systemd/system/vfio-bind.service:$unit:0644"
    )
    [ $enable = 1 ] && links+=("/etc/systemd/system/multi-user.target.wants/vfio-bind.service:/lib/systemd/system/vfio-bind.service")
fi
files+=(
    "/usr/local/lib/vfio-bind-e2e/test.sh:$testscript:0755"
    "/usr/local/lib/vfio-bind-e2e/lib.sh:$here/lib.sh:0644"
    "/usr/local/lib/vfio-bind-e2e/runner.sh:$here/guest/runner.sh:0755"
    "/etc/systemd/system/vfio-bind-e2e.service:$here/guest/vfio-bind-e2e.service:0644"
    "/etc/vfio-bind-e2e.env:$work/e2e.env:0644"
)
[ -n "$config" ] && files+=("/etc/vfio-bind.toml:$(realpath "$config"):0644")
for f in ${extra[@]+"${extra[@]}"}; do
    files+=("${f#*:}:$(realpath "${f%%:*}"):0644")
done
links+=("/etc/systemd/system/multi-user.target.wants/vfio-bind-e2e.service:/etc/systemd/system/vfio-bind-e2e.service")
# A later entry for the same path wins (--config over the package's conffile).
declare -A last=()
for i in "${!files[@]}"; do last["${files[$i]%%:*}"]=$i; done
kept=()
for i in "${!files[@]}"; do [ "${last["${files[$i]%%:*}"]}" = "$i" ] && kept+=("${files[$i]}"); done
files=("${kept[@]}")

{
    declare -A made=()
    mkdirs() { # every ancestor of $1, top down (errors for existing ones are harmless)
        local p="" c
        local IFS=/
        for c in ${1#/}; do
            [ -n "$c" ] || continue
            p="$p/$c"
            [ -n "${made[$p]:-}" ] || { echo "mkdir $p"; made[$p]=1; }
        done
    }
    for f in "${files[@]}"; do
        IFS=: read -r dest src mode <<<"$f"
        mkdirs "$(dirname "$dest")"
        echo "rm $dest"
        echo "cd $(dirname "$dest")"
        echo "write $src $(basename "$dest")"
        echo "sif $dest mode 0100${mode#0}"
        echo "sif $dest uid 0"
        echo "sif $dest gid 0"
    done
    for l in "${links[@]}"; do
        IFS=: read -r name target <<<"$l"
        mkdirs "$(dirname "$name")"
        echo "rm $name"
        echo "symlink $name $target"
    done
} >"$work/inject.cmds"
debugfs -w -f "$work/inject.cmds" "$work/root.img" >"$work/inject.log" 2>&1
# Verify every file made it (content and mode) and the links exist.
for f in "${files[@]}"; do
    IFS=: read -r dest src mode <<<"$f"
    rm -f "$work/check"
    debugfs -R "dump $dest $work/check" "$work/root.img" >/dev/null 2>&1 || true
    if ! cmp -s "$src" "$work/check"; then
        cat "$work/inject.log" >&2
        echo "run-systemd: could not write $dest into the guest image" >&2
        exit 1
    fi
done
for l in "${links[@]}"; do
    name="${l%%:*}"
    debugfs -R "stat $name" "$work/root.img" 2>/dev/null | grep -q 'Type: symlink' ||
        { cat "$work/inject.log" >&2; echo "run-systemd: could not link $name" >&2; exit 1; }
done

# 3. The initramfs: busybox and the modules for the root disk (AHCI + ext4).
ird="$work/initramfs"
mkdir -p "$ird"/{bin,sbin,dev,proc,sys,newroot}
cp /bin/busybox "$ird/bin/busybox"
for a in sh mount umount modprobe switch_root sleep readlink ls echo mkdir poweroff cat; do
    ln -s busybox "$ird/bin/$a"
done
mods="$ird/lib/modules/$kver"
mkdir -p "$mods"
for m in ahci sd_mod crc32c_generic ext4; do
    deps="$(modprobe -d "$kdir" -S "$kver" --show-depends "$m")" ||
        { echo "run-systemd: cannot resolve module $m" >&2; exit 1; }
    for ko in $(echo "$deps" | awk '$1 == "insmod" {print $2}'); do
        rel="${ko#"$kdir/lib/modules/$kver/"}"
        mkdir -p "$mods/$(dirname "$rel")"
        cp "$ko" "$mods/$rel"
    done
done
for f in modules.order modules.builtin modules.builtin.modinfo; do
    [ -f "$kdir/lib/modules/$kver/$f" ] && cp "$kdir/lib/modules/$kver/$f" "$mods/"
done
depmod -b "$ird" "$kver"
cp "$here/guest/init" "$ird/init"
chmod 755 "$ird/init"
(cd "$ird" && find . | cpio --quiet -o -H newc -R 0:0) >"$work/initramfs.cpio"

# 4. The 16 MiB disk of tests/vm's topology (virtio-blk 05:00.0, /dev/vda).
truncate -s 16M "$work/disk.img"
mkfs.ext4 -q -F "$work/disk.img"
t_prep=$(date +%s.%N)

# 5. The guest. The -device list from rp1 to the virtio-blk is tests/vm/run-guest.sh's.
# TERM=dumb (passed to init as an environment variable): no colour codes in console.log.
append="console=ttyS0 panic=-1 rw systemd.show_status=1 TERM=dumb"
iommu_dev=()
if [ $iommu = 1 ]; then
    append="$append intel_iommu=on"
    iommu_dev=(-device "intel-iommu,intremap=off")
fi
append="$append$more_append"
boot_initrd="$work/initramfs.cpio"
if [ -n "$initrd" ]; then
    # A real initramfs finds the root disk itself (the SATA disk on 00:1f.2).
    boot_initrd="$initrd"
    append="$append root=/dev/sda"
fi
: >"$logdir/console.log"
[ $((hotplug + gpu)) -le 1 ] || die "--hotplug and --gpu both want bus 06"
hp_dev=()
vga_dev=()
if [ $gpu = 1 ]; then
    vga_dev=(-device VGA,bus=pcie.0,addr=01.0)
    # After rp1..rp4, so every BDF above stays as it is; the new port's bus is 06.
    hp_dev=(-device pcie-root-port,id=rpgpu,chassis=8,slot=8 -device VGA,bus=rpgpu,addr=0.0)
fi
if [ $hotplug = 1 ]; then
    # After rp1..rp4, so every BDF above stays as it is; the new port's bus is 06.
    hp_dev=(-device pcie-root-port,id=rphp,chassis=9,slot=9
        -netdev user,id=nhp,restrict=on
        -monitor "unix:$work/monitor.sock,server,nowait")
    # Relay "E2E-QEMU <command>" console lines to the monitor, each once.
    (
        tail -n +1 -F "$logdir/console.log" 2>/dev/null | while IFS= read -r line; do
            line="${line%$'\r'}"
            case "$line" in
            # systemd prefixes the console line ("[ 22.06] runner.sh[212]: E2E-QEMU ...").
            *"E2E-QEMU "*)
                python3 - "$work/monitor.sock" "${line#*E2E-QEMU }" <<'PY' >>"$logdir/monitor.log" 2>&1
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall((sys.argv[2] + "\n").encode())
time.sleep(0.5)
print(sys.argv[2], "->", s.recv(65536).decode(errors="replace").strip())
PY
                ;;
            esac
        done
    ) &
    relay=$!
fi
rc=0
timeout "$timeout_s" qemu-system-x86_64 -accel tcg -M q35 -m "$mem" -smp 1 -nographic -no-reboot \
    -kernel "$vmlinuz" -initrd "$boot_initrd" -append "$append" \
    -drive file="$work/root.img",if=none,format=raw,id=root,cache=unsafe \
    -device ide-hd,drive=root,bus=ide.0 \
    "${iommu_dev[@]}" \
    "${vga_dev[@]}" \
    -device pcie-root-port,id=rp1,chassis=1,slot=1 \
    -device qemu-xhci,bus=rp1,addr=0.0,multifunction=on \
    -netdev user,id=n0,restrict=on -device e1000e,bus=rp1,addr=0.1,netdev=n0 \
    -device pcie-root-port,id=rp2,chassis=2,slot=2 \
    -netdev user,id=n1,restrict=on -device e1000e,bus=rp2,netdev=n1 \
    -device pcie-root-port,id=rp3,chassis=3,slot=3 \
    -device pcie-pci-bridge,id=br1,bus=rp3 \
    -netdev user,id=n2,restrict=on -device e1000,bus=br1,addr=1.0,netdev=n2 \
    -netdev user,id=n3,restrict=on -device e1000,bus=br1,addr=2.0,netdev=n3 \
    -device pcie-root-port,id=rp4,chassis=4,slot=4 \
    -drive file="$work/disk.img",if=none,format=raw,id=d0 \
    -device virtio-blk-pci,bus=rp4,drive=d0,disable-legacy=on \
    "${hp_dev[@]}" \
    </dev/null >>"$logdir/console.log" 2>&1 || rc=$?
[ $hotplug = 0 ] || { kill "$relay" 2>/dev/null; pkill -P "$relay" 2>/dev/null || true; }
t_qemu=$(date +%s.%N)

# 6. Results out of the image (debugfs rdump; no mount). After a timeout or crash the
# ext4 journal may hold the last writes: let e2fsck replay it first.
if [ $rc != 0 ]; then
    e2fsck -fy "$work/root.img" >"$work/e2fsck.log" 2>&1 || true
fi
mkdir -p "$work/out"
debugfs -R "rdump /var/lib/vfio-bind-e2e/results $work/out" "$work/root.img" >/dev/null 2>&1 || true
if [ -d "$work/out/results" ]; then
    cp -a "$work/out/results/." "$logdir/"
fi
# No journal export from the guest (it never got that far): export the persistent
# journal files with this machine's journalctl, when it has one.
if [ ! -s "$work/out/results/journal.export" ]; then
    debugfs -R "rdump /var/log/journal $work/out" "$work/root.img" >/dev/null 2>&1 || true
    if [ -d "$work/out/journal" ] && command -v journalctl >/dev/null; then
        journalctl -D "$work/out/journal" -o export >"$logdir/journal.export" 2>/dev/null || true
        journalctl -D "$work/out/journal" --no-pager >"$logdir/journal.txt" 2>/dev/null || true
    elif [ -d "$work/out/journal" ]; then
        cp -a "$work/out/journal" "$logdir/journal-files"
    fi
fi
t_end=$(date +%s.%N)

code="$(cat "$work/out/results/exit-code" 2>/dev/null || echo none)"
{
    awk -v a="$t0" -v b="$t_setup" -v c="$t_prep" -v d="$t_qemu" -v e="$t_end" -v rc="$rc" 'BEGIN {
        printf "setup   %6.1f s\n", b - a
        printf "prepare %6.1f s\n", c - b
        printf "qemu    %6.1f s (rc %s)\n", d - c, rc
        printf "collect %6.1f s\n", e - d
        printf "total   %6.1f s\n", e - a }'
    grep -ao 'E2E-TEST-START uptime=[0-9.]*' "$logdir/console.log" | head -n1 || true
    grep -ao 'E2E-TEST-EXIT [0-9]* uptime=[0-9.]*' "$logdir/console.log" | head -n1 || true
} >"$logdir/timing.txt"

if [ "$code" = 0 ]; then
    echo "run-systemd: test passed ($(awk '/^total/ {print $2}' "$logdir/timing.txt") s); logs in $logdir" >&2
    exit 0
fi
if [ $rc = 124 ]; then
    echo "run-systemd: qemu timed out after $timeout_s s" >&2
fi
echo "run-systemd: test failed (exit code: $code, qemu rc $rc); logs in $logdir; last console lines:" >&2
tail -n 40 "$logdir/console.log" >&2
exit 1
