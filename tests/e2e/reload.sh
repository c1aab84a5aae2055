#!/bin/bash
# `systemctl reload vfio-bind` under systemd as PID 1: boot with the default config
# (0000:02:00.0), add the bridge group (04:01.0 brings 04:02.0 along; 03:00.0 is a bridge
# and stays driverless), reload, and check the new STATUS= line and journal fields.
#
#   tests/e2e/run-systemd.sh target/release/vfio-bind tests/e2e/reload.sh /tmp/e2e-reload
set -u
# shellcheck source=tests/e2e/lib.sh
. "$E2E_LIB"
cd "$E2E_RESULTS" || exit 1

e2e_section "after boot"
timeout 120 systemctl is-system-running --wait >/dev/null 2>&1 || true
e2e_check "02:00.0 on vfio-pci" test "$(e2e_driver 0000:02:00.0)" = vfio-pci
e2e_check "04:01.0 on e1000" test "$(e2e_driver 0000:04:01.0)" = e1000
before="$(systemctl show -P StatusText vfio-bind.service)"
echo "StatusText before: $before"

e2e_section "reload with 04:01.0 added"
cat >>/etc/vfio-bind.toml <<'TOML'

[[device]]
address = "0000:04:01.0"
TOML
e2e_run config cat /etc/vfio-bind.toml
e2e_check "systemctl reload vfio-bind succeeds" systemctl reload vfio-bind.service
e2e_check "vfio-bind still active" test "$(systemctl is-active vfio-bind.service)" = active
after="$(systemctl show -P StatusText vfio-bind.service)"
echo "StatusText after: $after"
echo "$after" >status-text-after-reload.txt
e2e_check "STATUS= changed after the reload" test -n "$after" -a "$after" != "$before"
for b in 0000:02:00.0 0000:04:01.0 0000:04:02.0; do
    e2e_check "$b on vfio-pci" test "$(e2e_driver "$b")" = vfio-pci
done
e2e_check "bridge 03:00.0 untouched (no driver, no override)" \
    sh -c 'test ! -e /sys/bus/pci/devices/0000:03:00.0/driver &&
           test "$(cat /sys/bus/pci/devices/0000:03:00.0/driver_override)" = "(null)"'
e2e_run status env SYSTEMD_COLORS=0 systemctl status --no-pager -l vfio-bind.service || true
e2e_run journal journalctl -b -u vfio-bind.service --no-pager -o short-monotonic || true
e2e_check "journal: VFIO_BIND_ADDRESS=0000:04:02.0 entries" \
    test -n "$(journalctl -b -u vfio-bind.service -q -o cat VFIO_BIND_ADDRESS=0000:04:02.0)"
e2e_run vfio-bind-status-cli vfio-bind status || true

e2e_finish
