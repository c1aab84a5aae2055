# shellcheck shell=bash
# Helpers for test scripts run by tests/e2e/run-systemd.sh inside the guest.
# Source it with:  . "$E2E_LIB"
# E2E_RESULTS is the directory whose files end up in the host's LOGDIR.

E2E_PASSED=0
E2E_FAILED=0
: "${E2E_RESULTS:=/var/lib/vfio-bind-e2e/results}"

# e2e_section TITLE
e2e_section() { printf '\n== %s\n' "$*"; }

# e2e_run NAME CMD...: run CMD, show its output and save it to $E2E_RESULTS/NAME.txt.
# Returns CMD's exit status (never counts as a failure by itself).
e2e_run() {
    local name="$1" rc=0
    shift
    echo "\$ $*"
    "$@" >"$E2E_RESULTS/$name.txt" 2>&1 || rc=$?
    cat "$E2E_RESULTS/$name.txt"
    [ $rc = 0 ] || echo "(exit $rc)"
    return $rc
}

# e2e_check DESCRIPTION CMD...: a pass/fail check (CMD's output is shown on failure).
e2e_check() {
    local desc="$1" out rc=0
    shift
    out="$("$@" 2>&1)" || rc=$?
    if [ $rc = 0 ]; then
        E2E_PASSED=$((E2E_PASSED + 1))
        echo "ok - $desc"
    else
        E2E_FAILED=$((E2E_FAILED + 1))
        echo "FAIL - $desc (exit $rc)"
        [ -z "$out" ] || printf '%s\n' "$out" | sed 's/^/    /'
    fi
    return 0
}

# e2e_driver BDF: the name of the driver bound to BDF, or "none".
e2e_driver() {
    local l
    l="$(readlink "/sys/bus/pci/devices/$1/driver" 2>/dev/null)" || { echo none; return; }
    echo "${l##*/}"
}

# e2e_group BDF: the IOMMU group number of BDF.
e2e_group() {
    local l
    l="$(readlink "/sys/bus/pci/devices/$1/iommu_group")" || return 1
    echo "${l##*/}"
}

# e2e_finish: print the tally and exit 0 only when every check passed.
e2e_finish() {
    echo
    echo "e2e: $E2E_PASSED passed, $E2E_FAILED failed"
    echo "$E2E_PASSED passed, $E2E_FAILED failed" >"$E2E_RESULTS/tally.txt"
    [ "$E2E_FAILED" = 0 ] && [ "$E2E_PASSED" -gt 0 ]
    exit $?
}
