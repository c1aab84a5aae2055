#!/bin/bash
# Real-kernel benchmark: binding N devices (N = 1, 8, 32 e1000e: one alone in its IOMMU
# group, then one and four groups of 8 functions) in a QEMU guest with the emulated IOMMU,
# with vfio-bind, with the bare sysfs writes (the floor), with a guide-style script and
# with driverctl; all in one guest boot, methods interleaved. Prints a markdown table with
# medians and the ratios vfio-bind / floor, script / vfio-bind and driverctl / vfio-bind.
# See BENCHMARKS.md.
#
#   bench/realkernel.sh           # 5 rounds
#   bench/realkernel.sh --quick   # 1 round, N = 1 and 8 (CI)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=5 ns="1 8 32"
if [ "${1:-}" = "--quick" ]; then rounds=1 ns="1 8"; fi

command -v setpci >/dev/null || {
    apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends pciutils >&2
}
# driverctl, unpacked from Debian's package into the cache (never installed here: its udev
# rules would act on this machine's devices).
cache="${VFIO_BIND_VM_CACHE:-$HOME/.cache/vfio-bind-vm}"
dctl="$cache/driverctl"
if [ ! -f "$dctl/.complete" ]; then
    rm -rf "$dctl" && mkdir -p "$dctl/dl"
    (cd "$dctl/dl" && apt-get download -q driverctl >&2) || {
        apt-get update -q >&2
        (cd "$dctl/dl" && apt-get download -q driverctl >&2)
    }
    dpkg-deb -x "$dctl"/dl/*.deb "$dctl/pkg"
    rm -rf "$dctl/dl"
    touch "$dctl/.complete"
fi
cargo build --release --locked -q
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
{ echo "R=$rounds"; echo "NS=\"$ns\""; cat bench/guest.sh; } >"$work/scenario.sh"
# The scenario prints its results; it has no VM-CHECKS, so the verdict is BENCH-DONE.
tests/vm/run-guest.sh --topology bench --bin /usr/bin/date --bin "$(command -v setpci)" \
    --bin /bin/bash --bin "$dctl/pkg/usr/sbin/driverctl" \
    target/release/vfio-bind "$work/scenario.sh" "$work/log" || true
tr -d '\r' <"$work/log" | grep -a '^BENCH' >"$work/bench" || true
if ! grep -q '^BENCH-DONE' "$work/bench" || grep -q '^BENCH-ERROR' "$work/bench"; then
    tr -d '\r' <"$work/log" | tail -n 40 >&2
    echo "realkernel: the benchmark did not complete" >&2
    exit 1
fi
python3 - "$work/bench" "$rounds" <<'PY'
import sys, statistics, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    f = line.split()
    if f[0] == "BENCH":
        rows[(f[1], int(f[2]))].append(float(f[3]))
ns = sorted({n for m, n in rows if m not in ("startup", "noop")})
med = {k: statistics.median(v) for k, v in rows.items()}
print(f"## Real kernel (QEMU TCG, q35 + intel-iommu, Debian 6.1; {sys.argv[2]} round(s), median ms)\n")
st = med[("startup", 0)]
print("| N | floor (bare writes) | guide script | driverctl | vfio-bind | vfio-bind / floor | script / vfio-bind | driverctl / vfio-bind | (vfio-bind − start-up) / floor |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for n in ns:
    fl, sc, dc, vb = (med[(m, n)] for m in ("floor", "script", "drvctl", "vfiobind"))
    print(f"| {n} | {fl:.1f} | {sc:.1f} | {dc:.1f} | {vb:.1f} | {vb / fl:.2f} | {sc / vb:.2f} | {dc / vb:.2f} | {(vb - st) / fl:.2f} |")
print(f"\nvfio-bind process start-up alone (`vfio-bind --version`): {st:.1f} ms (median).")
print("vfio-bind `apply` with nothing left to do (its fixed cost: start-up, snapshot, checks), ms: "
      + ", ".join(f"N = {n}: {med[('noop', n)]:.1f}" for n in ns) + ".")
PY
