# shellcheck shell=bash
# A stand-in for mkinitcpio's build-time API (archlinux/mkinitcpio, file `functions`),
# which Debian does not package: the functions an install hook calls, with upstream's
# argument conventions, so that dist/initcpio/install/{vfio-bind,sd-vfio-bind} are run as
# mkinitcpio runs them (tests/initcpio/test.sh).
#
#   add_binary SRC [DEST] [MODE]   the file, and every library `ldd` names (a script: just
#                                  the file); SRC may be a name found on PATH
#   add_file SRC [DEST] [MODE]     one file; DEST defaults to SRC; with MODE, install -Dm
#   add_dir PATH, add_symlink NAME [TARGET]
#   add_module NAME[?]             the module and its dependencies (a trailing ? tolerates
#                                  its absence); built-in modules add nothing
#   add_runscript                  /hooks/<name of the calling install file> (mode 755),
#                                  registered for the run_* functions it defines
#                                  (run_earlyhook -> EARLYHOOKS, run_hook -> HOOKS, ...)
#   add_systemd_unit UNIT          the unit from /usr/lib/systemd/system, and the binaries
#                                  of its ExecStart= lines
#   msg, warning, error            messages (error returns 1 and counts)
#
# The caller sets BUILDROOT and KERNELVERSION, runs `run_build_hook NAME` per hook
# (sourcing $_d_install/NAME and calling its build()), then `write_config` and
# `finish_modules` (depmod), as mkinitcpio's main loop does.

_d_install=${_d_install:-/usr/lib/initcpio/install}
_d_hooks=${_d_hooks:-/usr/lib/initcpio/hooks}
declare -A _runhooks=()
_modules_added=()
_errors=0
_warnings=0

msg() { printf '==> '"$1"'\n' "${@:2}"; }
warning() {
    printf '==> WARNING: '"$1"'\n' "${@:2}" >&2
    _warnings=$((_warnings + 1))
}
error() {
    printf '==> ERROR: '"$1"'\n' "${@:2}" >&2
    _errors=$((_errors + 1))
    return 1
}

add_dir() {
    [[ -d "$BUILDROOT$1" ]] || mkdir -p "$BUILDROOT$1"
}

add_symlink() {
    local name="$1" target="${2:-$1}"
    add_dir "${name%/*}"
    ln -sfn "$target" "$BUILDROOT$name"
}

add_file() {
    local src="$1" dest="${2:-$1}" mode="${3:-}"
    [[ -f "$src" ]] || { error "file not found: '%s'" "$src"; return 1; }
    [[ "$dest" == */ ]] && dest="$dest${src##*/}"
    if [[ -z "$mode" ]]; then
        add_dir "${dest%/*}"
        cp --remove-destination --preserve=mode "$src" "$BUILDROOT$dest"
    else
        install -Dm"$mode" "$src" "$BUILDROOT$dest"
    fi
}

add_binary() {
    local binary="$1" dest lib
    if [[ "${binary:0:1}" != / ]]; then
        binary="$(type -P "$1")" || { error "binary not found: '%s'" "$1"; return 1; }
    fi
    dest="${2:-$binary}"
    add_file "$binary" "$dest" "${3:-}" || return 1
    local out
    out="$(ldd "$binary" 2>/dev/null)" || return 0 # a script
    while read -r lib; do
        [[ -n "$lib" && ! -e "$BUILDROOT$lib" ]] || continue
        add_file "$(realpath -- "$lib")" "$lib"
    done <<<"$(grep -oE '/[^ ]+' <<<"$out")"
}

add_module() {
    local name="${1%\?}" ign=0 deps path rel
    [[ "$1" == *\? ]] && ign=1
    if ! deps="$(modprobe -S "$KERNELVERSION" --show-depends "$name" 2>/dev/null)"; then
        ((ign)) && return 0
        error "module not found: '%s'" "$name"
        return 1
    fi
    while read -r cmd path _; do
        [[ "$cmd" == insmod ]] || continue # "builtin NAME": nothing to add
        rel="${path#/usr}"
        [[ -e "$BUILDROOT/usr$rel" ]] || install -Dm644 "$path" "$BUILDROOT/usr$rel"
    done <<<"$deps"
    _modules_added+=("$name")
}

add_runscript() {
    local hookname="${BASH_SOURCE[1]##*/}" script fn
    script="$_d_hooks/$hookname"
    [[ -f "$script" ]] || { error "runtime script for '%s' not found" "$hookname"; return; }
    add_binary "$script" "/hooks/$hookname" 755
    while read -r fn; do
        case "$fn" in
        run_earlyhook) _runhooks[early]+=" $hookname" ;;
        run_hook) _runhooks[hooks]+=" $hookname" ;;
        run_latehook) _runhooks[late]+=" $hookname" ;;
        run_cleanuphook) _runhooks[cleanup]="$hookname ${_runhooks[cleanup]:-}" ;;
        esac
    done <<<"$(grep -oE '^[[:space:]]*run_[[:alnum:]_]+[[:space:]]*\(\)' "$script" | tr -d ' ()')"
}

add_systemd_unit() {
    local unit="$1" src="/usr/lib/systemd/system/$1" line bin
    [[ -f "$src" ]] || src="/lib/systemd/system/$1"
    [[ -f "$src" ]] || { error "unit not found: '%s'" "$unit"; return 1; }
    add_file "$src" "/usr/lib/systemd/system/$unit" 644
    while IFS='=' read -r line bin; do
        [[ "$line" == ExecStart ]] || continue
        bin="${bin#[-@:+!]}"
        add_binary "${bin%% *}"
    done <"$src"
}

# Source one install hook and run its build(), as mkinitcpio does for each of HOOKS.
run_build_hook() {
    local hook="$1"
    unset -f build help
    # shellcheck disable=SC1090
    . "$_d_install/$hook" || { error "failed to read %s" "$hook"; return 1; }
    declare -F build >/dev/null || { error "%s has no build()" "$hook"; return 1; }
    build
}

# The image's /config, which the busybox init sources (EARLYHOOKS, HOOKS, ... MODULES).
write_config() {
    {
        printf 'MODULES="%s"\n' "${MODULES:-}"
        printf 'EARLYHOOKS="%s"\n' "${_runhooks[early]:-}"
        printf 'HOOKS="%s"\n' "${_runhooks[hooks]:-}"
        printf 'LATEHOOKS="%s"\n' "${_runhooks[late]:-}"
        printf 'CLEANUPHOOKS="%s"\n' "${_runhooks[cleanup]:-}"
    } >"$BUILDROOT/config"
}

# The kernel's module lists beside the modules, then depmod, as mkinitcpio does.
finish_modules() {
    local d="$BUILDROOT/usr/lib/modules/$KERNELVERSION" f
    [[ -d "$d" ]] || return 0
    for f in modules.order modules.builtin modules.builtin.modinfo; do
        [[ -f "/lib/modules/$KERNELVERSION/$f" ]] && cp "/lib/modules/$KERNELVERSION/$f" "$d/"
    done
    depmod -b "$BUILDROOT/usr" "$KERNELVERSION"
}
