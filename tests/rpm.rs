//! The RPM package: `dist/rpm/vfio-bind.spec` built with `rpmbuild` from a source tarball
//! of the tree (tests/rpm/build.sh; its `%build` runs `make build`, which reuses the
//! cached cargo output when the sources are unchanged), then checked: exactly the expected
//! files with their modes and `%config` flags, the scriptlets (systemd presets, no restart
//! on upgrade), the dependencies, the -debuginfo split, and rpmlint from PyPI
//! (tests/rpm/rpmlint.sh) with no errors and no warnings. The control: a copy of the spec
//! with two packaging mistakes builds, and rpmlint fails it, naming both.
//! Never skipped: when rpmbuild or rpmlint cannot run, the tests fail.

use std::path::{Path, PathBuf};
use std::process::Command;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// Mode, rpm's file flags (c = %config, n = noreplace, d = %doc), path; the build-id link
/// is checked apart (its name is the binary's hash).
const EXPECTED: &[(&str, &str, &str)] = &[
    ("-rwxr-xr-x", "", "/etc/libvirt/hooks/qemu.d/vfio-bind"),
    ("-rw-r--r--", "cn", "/etc/vfio-bind.toml"),
    ("drwxr-xr-x", "", "/usr/lib/dracut/modules.d/90vfio-bind"),
    (
        "-rwxr-xr-x",
        "",
        "/usr/lib/dracut/modules.d/90vfio-bind/module-setup.sh",
    ),
    (
        "-rwxr-xr-x",
        "",
        "/usr/lib/dracut/modules.d/90vfio-bind/vfio-bind-cmdline.sh",
    ),
    (
        "-rw-r--r--",
        "",
        "/usr/lib/dracut/modules.d/90vfio-bind/vfio-bind-initrd.service",
    ),
    ("-rw-r--r--", "", "/usr/lib/modules-load.d/vfio-bind.conf"),
    (
        "-rw-r--r--",
        "",
        "/usr/lib/systemd/system/vfio-bind.service",
    ),
    ("-rwxr-xr-x", "", "/usr/sbin/vfio-bind"),
    (
        "-rw-r--r--",
        "",
        "/usr/share/bash-completion/completions/vfio-bind",
    ),
    ("drwxr-xr-x", "", "/usr/share/doc/vfio-bind-0.1.0"),
    (
        "-rw-r--r--",
        "d",
        "/usr/share/doc/vfio-bind-0.1.0/README.md",
    ),
    (
        "-rw-r--r--",
        "",
        "/usr/share/fish/vendor_completions.d/vfio-bind.fish",
    ),
    ("-rw-r--r--", "d", "/usr/share/man/man5/vfio-bind.toml.5.gz"),
    ("-rw-r--r--", "d", "/usr/share/man/man8/vfio-bind.8.gz"),
    ("-rw-r--r--", "", "/usr/share/zsh/site-functions/_vfio-bind"),
];

/// Run tests/rpm/build.sh (with `--spec SPEC` when given) into `out`; the packages' paths.
fn build(spec: Option<&Path>, out: &Path) -> Vec<PathBuf> {
    let mut cmd = Command::new(Path::new(REPO).join("tests/rpm/build.sh"));
    if let Some(spec) = spec {
        cmd.arg("--spec").arg(spec);
    }
    let res = cmd
        .arg(out)
        .output()
        .expect("cannot run tests/rpm/build.sh");
    assert!(
        res.status.success(),
        "rpmbuild failed:\n{}",
        String::from_utf8_lossy(&res.stderr)
    );
    eprint!("{}", String::from_utf8_lossy(&res.stderr));
    String::from_utf8_lossy(&res.stdout)
        .lines()
        .map(PathBuf::from)
        .collect()
}

/// The package of `pkgs` whose file name ends with `suffix` (and is not a debug one).
fn pick<'a>(pkgs: &'a [PathBuf], suffix: &str) -> &'a Path {
    pkgs.iter()
        .find(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("vfio-bind-0") && name.ends_with(suffix)
        })
        .unwrap_or_else(|| panic!("no vfio-bind-*{suffix} in {pkgs:?}"))
}

/// rpmlint on `files`: success, and its report.
fn rpmlint(files: &[&Path]) -> (bool, String) {
    let res = Command::new(Path::new(REPO).join("tests/rpm/rpmlint.sh"))
        .args(files)
        .output()
        .expect("cannot run tests/rpm/rpmlint.sh");
    (
        res.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&res.stdout),
            String::from_utf8_lossy(&res.stderr)
        ),
    )
}

fn read(p: impl AsRef<Path>) -> String {
    let p = p.as_ref();
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

#[test]
fn rpm_builds_with_the_expected_files_and_is_rpmlint_clean() {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("rpm");
    let pkgs = build(None, &out);
    let rpm = pick(&pkgs, ".x86_64.rpm");
    let srpm = pick(&pkgs, ".src.rpm");

    // The files, their modes and flags: no initramfs-tools or mkinitcpio files, and the
    // initrd unit only inside the dracut module.
    let listing = read(out.join("files.txt"));
    let mut files = Vec::new();
    let mut build_ids = Vec::new();
    for line in listing.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (mode, flags, path) = match f.as_slice() {
            [mode, path] => (*mode, "", *path),
            [mode, flags, path] => (*mode, *flags, *path),
            _ => panic!("unexpected line in files.txt: {line:?}"),
        };
        if path.starts_with("/usr/lib/.build-id") {
            build_ids.push((mode.to_string(), path.to_string()));
        } else {
            files.push((mode.to_string(), flags.to_string(), path.to_string()));
        }
    }
    let expected: Vec<(String, String, String)> = EXPECTED
        .iter()
        .map(|&(m, f, p)| (m.to_string(), f.to_string(), p.to_string()))
        .collect();
    assert_eq!(files, expected, "rpm -qlp of {}", rpm.display());
    assert!(
        build_ids
            .iter()
            .any(|(m, p)| m.starts_with('l') && p.matches('/').count() == 5),
        "no build-id link for the binary: {build_ids:?}"
    );

    // The debug information went to -debuginfo (the binary in the package is stripped).
    let debuginfo = read(out.join("debuginfo.txt"));
    assert!(
        debuginfo
            .lines()
            .any(|l| l.starts_with("/usr/lib/debug/usr/sbin/vfio-bind-") && l.ends_with(".debug")),
        "no debug file for /usr/sbin/vfio-bind in -debuginfo:\n{debuginfo}"
    );

    // Scriptlets: preset on first install, disable on removal, never a restart.
    let scripts = read(out.join("scripts.txt"));
    assert!(
        scripts.contains("preset vfio-bind.service"),
        "no preset in %post:\n{scripts}"
    );
    assert!(
        scripts.contains("disable --now vfio-bind.service"),
        "no disable in %preun:\n{scripts}"
    );
    assert!(
        !scripts.contains("restart"),
        "a scriptlet restarts the unit:\n{scripts}"
    );
    let spec = read(Path::new(REPO).join("dist/rpm/vfio-bind.spec"));
    let code: Vec<&str> = spec.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(code.contains(&"%systemd_postun vfio-bind.service"));
    assert!(!code.iter().any(|l| l.contains("_with_restart")));

    let deps = read(out.join("deps.txt"));
    for dep in [
        "requires: kmod",
        "requires: systemd",
        "recommends: dracut",
        "suggests: hwdata",
        "enhances: libvirt-daemon",
    ] {
        assert!(
            deps.lines().any(|l| l == dep),
            "no {dep:?} in the package's dependencies:\n{deps}"
        );
    }

    // rpmlint: the spec, the source package and the package (the -debuginfo and
    // -debugsource packages are rpm's own making, not the spec's).
    let spec_path = Path::new(REPO).join("dist/rpm/vfio-bind.spec");
    let (ok, report) = rpmlint(&[&spec_path, srpm, rpm]);
    eprintln!("{report}");
    assert!(ok, "rpmlint failed:\n{report}");
    assert!(
        report.contains(" 0 errors, 0 warnings,"),
        "rpmlint reports errors or warnings:\n{report}"
    );
    assert!(
        !report.lines().any(|l| l.contains(": E: ")
            || (l.contains(": W: ") && !l.contains("unable to init enchant"))),
        "rpmlint findings:\n{report}"
    );
}

/// The control: rpmlint, with the same configuration and filters, fails a package whose
/// config is not %config(noreplace) and whose hook is %config.
#[test]
fn rpmlint_fails_a_package_with_packaging_mistakes() {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("rpm-broken");
    std::fs::create_dir_all(&tmp).unwrap();
    let spec = read(Path::new(REPO).join("dist/rpm/vfio-bind.spec"));
    for line in [
        "\n%config(noreplace) %{_sysconfdir}/vfio-bind.toml\n",
        "\n%{libvirthookdir}/vfio-bind\n",
    ] {
        assert!(spec.contains(line), "the spec no longer has {line:?}");
    }
    let broken = spec
        .replace(
            "%config(noreplace) %{_sysconfdir}/vfio-bind.toml",
            "%{_sysconfdir}/vfio-bind.toml",
        )
        .replace(
            "\n%{libvirthookdir}/vfio-bind\n",
            "\n%config(noreplace) %{libvirthookdir}/vfio-bind\n",
        );
    let broken_spec = tmp.join("vfio-bind.spec");
    std::fs::write(&broken_spec, broken).unwrap();

    let pkgs = build(Some(&broken_spec), &tmp.join("out"));
    let (ok, report) = rpmlint(&[&broken_spec, pick(&pkgs, ".x86_64.rpm")]);
    assert!(!ok, "rpmlint passed a broken package:\n{report}");
    for finding in [
        "W: non-conffile-in-etc /etc/vfio-bind.toml",
        "E: executable-marked-as-config-file /etc/libvirt/hooks/qemu.d/vfio-bind",
    ] {
        assert!(
            report.contains(finding),
            "rpmlint did not report {finding:?}:\n{report}"
        );
    }
}
