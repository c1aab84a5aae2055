#!/bin/bash
# Real-kernel benchmark: binding N devices (N = 1, 8, 32; each e1000e alone behind its own
# pcie-root-port) in a QEMU guest with the emulated IOMMU, with vfio-bind, with the bare
# sysfs writes (the floor), and with a guide-style script; all in one guest boot, methods
# interleaved. Prints a markdown table with medians and the ratios vfio-bind / floor and
# script / vfio-bind. See BENCHMARKS.md.
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
cargo build --release --locked -q
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
{ echo "R=$rounds"; echo "NS=\"$ns\""; cat bench/guest.sh; } >"$work/scenario.sh"
# The scenario prints its results; it has no VM-CHECKS, so the verdict is BENCH-DONE.
tests/vm/run-guest.sh --topology bench --bin /usr/bin/date --bin "$(command -v setpci)" \
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
ns = sorted({n for m, n in rows if m != "startup"})
med = {k: statistics.median(v) for k, v in rows.items()}
print(f"## Real kernel (QEMU TCG, q35 + intel-iommu, Debian 6.1; {sys.argv[2]} round(s), median ms)\n")
st = med[("startup", 0)]
print("| N | floor (bare writes) | guide script | vfio-bind | vfio-bind / floor | script / vfio-bind | (vfio-bind − start-up) / floor |")
print("|---:|---:|---:|---:|---:|---:|---:|")
for n in ns:
    fl, sc, vb = med[("floor", n)], med[("script", n)], med[("vfiobind", n)]
    print(f"| {n} | {fl:.1f} | {sc:.1f} | {vb:.1f} | {vb / fl:.2f} | {sc / vb:.2f} | {(vb - st) / fl:.2f} |")
print(f"\nvfio-bind process start-up alone (`vfio-bind --version`): {st:.1f} ms (median).")
PY
