# The start of mkinitcpio's busybox /init (archlinux/mkinitcpio `init` and
# `init_functions`), sourced by tests/vm/run-guest.sh's /init before it loads the host
# drivers (run-guest.sh --preinit): the image's /config, every early hook
# (run_hookfunctions 'run_earlyhook' over EARLYHOOKS, each /hooks/NAME sourced when
# executable), then the MODULES= of mkinitcpio.conf loaded with modprobe.
. /config
run_hookfunctions() {
    fn="$1" desc="$2"
    shift 2
    for hook in "$@"; do
        [ -x "/hooks/$hook" ] || continue
        unset "$fn"
        . "/hooks/$hook"
        type "$fn" >/dev/null || continue
        echo ":: running $desc [$hook]"
        "$fn"
    done
}
run_hookfunctions 'run_earlyhook' 'early hook' $EARLYHOOKS
if [ -n "$MODULES" ]; then
    modprobe -a $MODULES
fi
