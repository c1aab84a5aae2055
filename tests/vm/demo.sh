#!/bin/bash
# Show vfio-bind's main job on a machine without passthrough hardware: boot a QEMU guest
# (real Debian kernel, emulated Intel IOMMU) and run `list`, `check`, `apply`, `status`
# in it as a user would. Installs what it needs on first use (tests/vm/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --locked
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
# The host's pci.ids goes into the guest, so `list` shows device names.
tests/vm/run-guest.sh --pci-ids target/release/vfio-bind tests/vm/scenarios/demo.sh "$log"
# The guest's console, less firmware noise, kernel messages and the passing checks.
tr -d '\r' <"$log" | sed -n '/^VM-GUEST-START/,/^VM-SCENARIO-EXIT/p' |
    grep -avE '^(VM-|ok - |\[ *[0-9]+\.[0-9]+\])'
