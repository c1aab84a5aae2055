#!/bin/bash
# Run every test: formatting and lints, unit tests, generated-sysfs-tree tests, and the
# real-kernel tests in QEMU guests. Installs what the guests need first (Debian
# packages, the kernel download; see tests/vm/setup.sh). Needs root for the installs
# on a fresh machine. Never skips a test: anything missing fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== setup (Debian packages, guest kernel)"
tests/vm/setup.sh

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy"
cargo clippy --locked --all-targets -- -D warnings
echo "== cargo test"
cargo test --locked --all-targets

# The benchmarks in their quick mode, so they never rot; they print numbers and assert
# nothing about time (BENCHMARKS.md has the full runs).
echo "== benchmarks (quick mode)"
make bench-quick
