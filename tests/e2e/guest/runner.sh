#!/bin/bash
# ExecStart of vfio-bind-e2e.service in the guest: run the test script, collect the
# guest's state and journal into the results directory, power off.
set -u
R=/var/lib/vfio-bind-e2e/results
. /etc/vfio-bind-e2e.env # E2E_GUEST_TIMEOUT
export E2E_RESULTS=$R E2E_LIB=/usr/local/lib/vfio-bind-e2e/lib.sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mkdir -p "$R"
cd /root || exit 1

echo "E2E-TEST-START uptime=$(cut -d' ' -f1 /proc/uptime)"
timeout --kill-after=10 "$E2E_GUEST_TIMEOUT" bash /usr/local/lib/vfio-bind-e2e/test.sh 2>&1 |
    tee "$R/test.log"
code=${PIPESTATUS[0]}
[ "$code" = 124 ] && echo "E2E: test script timed out after ${E2E_GUEST_TIMEOUT}s"
echo "$code" >"$R/exit-code"
echo "E2E-TEST-EXIT $code uptime=$(cut -d' ' -f1 /proc/uptime)"

# State for the report. The boot itself finished before the runner started.
{
    echo "is-system-running: $(systemctl is-system-running 2>&1)"
    systemd-analyze time 2>&1
} >"$R/system-state.txt"
systemctl list-units --failed --no-legend --plain >"$R/failed-units.txt" 2>&1
systemd-analyze blame >"$R/systemd-analyze-blame.txt" 2>&1
journalctl --sync 2>/dev/null
journalctl -b -o export >"$R/journal.export" 2>&1
journalctl -b --no-pager >"$R/journal.txt" 2>&1
sync
systemctl poweroff --no-block
