#!/bin/bash
# Build the RPM package with rpmbuild from a source tarball of the tree (the files git
# knows, plus untracked ones not ignored, as tests/e2e/build-deb.sh copies), and write
# what the tests look at into OUTDIR:
#
#   tests/rpm/build.sh [--spec SPEC] OUTDIR
#
#   OUTDIR/vfio-bind-*.src.rpm, vfio-bind-*.x86_64.rpm   the packages (and the
#                        -debuginfo and -debugsource ones)
#   OUTDIR/files.txt     one line per file: mode, rpm's file flags (c = %config,
#                        n = noreplace, d = %doc), path
#   OUTDIR/scripts.txt   the scriptlets (rpm -qp --scripts)
#   OUTDIR/deps.txt      Requires, Recommends, Suggests, Enhances
#   OUTDIR/debuginfo.txt the -debuginfo package's files
#
# SPEC defaults to dist/rpm/vfio-bind.spec (a test passes a broken copy of it). Debian's
# rpm has none of an RPM distribution's macros: tests/rpm/macros stands in for them, and
# --nodeps skips the build dependencies, which an RPM database on Debian cannot know.
#
# The spec's %build runs `make build`, which runs cargo. It runs in a fixed directory
# ($base/rpm/BUILD) with the tree's own modification times (tar keeps them), and cargo's
# output stays in $base/rpm-cargo ($base: $CARGO_TARGET_DIR, else target/), so a
# second build with unchanged sources compiles nothing. One build at a time (a lock).
# Installs rpm, debugedit and elfutils when missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

spec="$repo/dist/rpm/vfio-bind.spec"
if [ "${1:-}" = --spec ]; then
    spec="$(realpath "$2")"
    shift 2
fi
[ $# -eq 1 ] || { echo "usage: $0 [--spec SPEC] OUTDIR" >&2; exit 2; }
out="$(realpath -m "$1")"

need=()
command -v rpmbuild >/dev/null || need+=(rpm)
command -v find-debuginfo >/dev/null || need+=(debugedit)  # the -debuginfo package
command -v eu-strip >/dev/null || need+=(elfutils)         # find-debuginfo's strip
command -v flock >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
    echo "rpm-build: installing ${need[*]}" >&2
    apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >&2
fi

# The version is the crate's: the spec must say the same.
version="$(awk '$1 == "Version:" {print $2; exit}' "$spec")"
crate="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$repo/Cargo.toml" | head -n 1)"
[ "$version" = "$crate" ] ||
    { echo "rpm-build: the spec says Version: $version, Cargo.toml $crate" >&2; exit 1; }

base="$(realpath -m "${CARGO_TARGET_DIR:-$repo/target}")"
top="$base/rpm"
mkdir -p "$top"/{SOURCES,BUILD,RPMS,SRPMS}
exec 9>"$top/.lock"
flock 9

# The source tarball, as `git archive` would make it, from the work tree (files deleted
# there but still in git's index are left out).
tarball="$top/SOURCES/vfio-bind-$version.tar.gz"
(cd "$repo" && git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
    tar --null -T - --transform "s,^,vfio-bind-$version/," --owner=0 --group=0 \
        --numeric-owner -cf - | gzip -n >"$tarball")

rm -rf "$top/RPMS" "$top/SRPMS" "$top/BUILDROOT"
log="$top/build.log"
start=$(date +%s)
# A clean environment, as a build system gives (no MAKEFLAGS of a calling make, no
# PREFIX or VFIO_BIND_BIN of the caller's shell): the toolchain's variables only.
keep=(PATH="$PATH" HOME="$HOME" LC_ALL=C CARGO_TARGET_DIR="$base/rpm-cargo")
for v in CARGO_HOME RUSTUP_HOME RUSTUP_TOOLCHAIN TMPDIR; do
    [ -z "${!v:-}" ] || keep+=("$v=${!v}")
done
env -i "${keep[@]}" rpmbuild -ba --nodeps \
    --load "$here/macros" --define "_topdir $top" "$spec" >"$log" 2>&1 ||
    { tail -n 40 "$log" >&2; echo "rpm-build: rpmbuild failed (log $log)" >&2; exit 1; }
echo "rpm-build: rpmbuild took $(($(date +%s) - start)) s" >&2

rm -rf "$out"
mkdir -p "$out"
cp "$top"/SRPMS/vfio-bind-*.src.rpm "$top"/RPMS/*/vfio-bind-*.rpm "$out"/
rpm="$(ls "$out"/vfio-bind-"$version"-*.x86_64.rpm)"
rpm -qp --qf '[%{FILEMODES:perms} %-3{FILEFLAGS:fflags} %{FILENAMES}\n]' "$rpm" >"$out/files.txt"
rpm -qlp "$out"/vfio-bind-debuginfo-*.rpm >"$out/debuginfo.txt"
rpm -qp --scripts "$rpm" >"$out/scripts.txt"
for dep in requires recommends suggests enhances; do
    rpm -qp --"$dep" "$rpm" | sed "s/^/$dep: /"
done >"$out/deps.txt"
ls "$out"/*.rpm
