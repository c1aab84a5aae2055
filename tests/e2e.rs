//! End to end with systemd as PID 1 (tests/e2e/): the Debian package is built with
//! `dpkg-buildpackage` and checked with lintian (tests/e2e/build-deb.sh), its files are
//! installed into a Debian bookworm guest and its unit enabled as its postinst does, and
//! the guest boots under QEMU with the emulated IOMMU. tests/e2e/package.sh then checks
//! the boot, the ordering ahead of udev's coldplug, ownership through udev events, the
//! journal fields, reload after an edit, a broken config on reload, and the sandbox.
//! Never skipped: when the guest cannot run, the test fails.

use std::path::{Path, PathBuf};
use std::process::Command;

#[test]
fn e2e_package_boot_reload_journal_under_systemd() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let debdir = tmp.join("deb");
    let out = Command::new(repo.join("tests/e2e/build-deb.sh"))
        .arg(&debdir)
        .output()
        .expect("cannot run tests/e2e/build-deb.sh");
    assert!(
        out.status.success(),
        "package build or lintian failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deb = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(deb.ends_with("_amd64.deb"), "no .deb: {deb:?}");

    let logdir = tmp.join("e2e-package");
    let status = Command::new(repo.join("tests/e2e/run-systemd.sh"))
        .args(["--deb", &deb])
        .arg("--config")
        .arg(repo.join("tests/e2e/package.toml"))
        .arg("--file")
        .arg(format!(
            "{}:/root/vfio-bind-unhardened.service",
            repo.join("tests/e2e/vfio-bind-unhardened.service")
                .display()
        ))
        .arg("--file")
        .arg(format!(
            "{}:/etc/fstab",
            repo.join("tests/e2e/fstab-vartmp").display()
        ))
        .arg("-")
        .arg(repo.join("tests/e2e/package.sh"))
        .arg(&logdir)
        .status()
        .expect("cannot run tests/e2e/run-systemd.sh");
    let log = std::fs::read_to_string(logdir.join("test.log")).unwrap_or_default();
    let checks: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("ok - ") || l.starts_with("FAIL - "))
        .collect();
    assert!(
        status.success(),
        "e2e failed (logs in {}):\n{}",
        logdir.display(),
        checks.join("\n")
    );
    assert!(
        checks.len() >= 30 && checks.iter().all(|c| c.starts_with("ok - ")),
        "{checks:?}"
    );
    eprintln!("e2e: {} checks passed under systemd", checks.len());
}

/// The check lines of a script's output: "ok - ...", "FAIL - ..." or "not ok - ...",
/// with the "[mode] " prefix a driver script puts before a guest's lines taken off.
fn check_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.trim_end_matches('\r'))
        .map(|l| match l.strip_prefix('[') {
            Some(rest) => rest.split_once("] ").map_or(l, |(_, r)| r),
            None => l,
        })
        .filter(|l| {
            l.starts_with("ok - ") || l.starts_with("FAIL - ") || l.starts_with("not ok - ")
        })
        .map(str::to_string)
        .collect()
}

/// Run a driver script (`SCRIPT BINARY LOGDIR`) and require its exit 0 and at least
/// `min_checks` check lines, all "ok".
fn run_driver(script: &str, min_checks: usize) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let name = Path::new(script)
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let logdir = tmp.join(format!("e2e-{name}"));
    let _ = std::fs::remove_dir_all(&logdir);
    let out = Command::new(repo.join(script))
        .arg(env!("CARGO_BIN_EXE_vfio-bind"))
        .arg(&logdir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {script}: {e}"));
    let checks = check_lines(&String::from_utf8_lossy(&out.stdout));
    assert!(
        out.status.success(),
        "{script} failed (logs in {}):\n{}\n{}",
        logdir.display(),
        checks.join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
    // None may go missing: a boot that stops early has fewer lines.
    assert!(
        checks.len() >= min_checks && checks.iter().all(|c| c.starts_with("ok - ")),
        "{script}: {} checks, want {min_checks}: {checks:?}",
        checks.len()
    );
    eprintln!("{script}: {} checks passed", checks.len());
}

/// The early claim in a real initramfs-tools image (tests/e2e/initramfs-tools.sh): the
/// image's content and init-top order; a boot where the configured e1000e and second VGA
/// are matched by vfio-pci only although e1000e and bochs-drm are loaded in the
/// initramfs; the controls (`vfio-bind=off`, an image without vfio-bind) where the host
/// drivers take them; a config edited after the image was built.
#[test]
fn e2e_initramfs_tools_claims_before_the_host_drivers() {
    run_driver("tests/e2e/initramfs-tools.sh", 53);
}

/// The same with dracut (tests/e2e/dracut.sh): the systemd flavour (initrd unit) and the
/// shell flavour (cmdline hook), and the `vfio-bind=off` control.
#[test]
fn e2e_dracut_claims_before_the_host_drivers() {
    run_driver("tests/e2e/dracut.sh", 53);
}

/// mkinitcpio (tests/initcpio/test.sh): its install hooks against a stand-in of its build
/// API, the runtime hook as its busybox init runs early hooks, in a QEMU guest.
#[test]
fn e2e_mkinitcpio_hooks_build_and_claim_early() {
    run_driver("tests/initcpio/test.sh", 22);
}

/// Hotplug under systemd and udev (tests/e2e/hotplug.sh): a configured device hot-added
/// while its host driver is loaded ends on vfio-pci within 5 s, owned; removed, it
/// leaves no record.
#[test]
fn e2e_hotplug_claims_an_added_device_and_forgets_a_removed_one() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let logdir = tmp.join("e2e-hotplug");
    let status = Command::new(repo.join("tests/e2e/run-systemd.sh"))
        .arg("--hotplug")
        .arg("--config")
        .arg(repo.join("tests/e2e/hotplug.toml"))
        .args([
            "--append",
            "ignore_loglevel log_buf_len=4M dyndbg=\"file drivers/base/dd.c +p\"",
        ])
        .arg(env!("CARGO_BIN_EXE_vfio-bind"))
        .arg(repo.join("tests/e2e/hotplug.sh"))
        .arg(&logdir)
        .status()
        .expect("cannot run tests/e2e/run-systemd.sh");
    let log = std::fs::read_to_string(logdir.join("test.log")).unwrap_or_default();
    let checks = check_lines(&log);
    assert!(
        status.success(),
        "hotplug e2e failed (logs in {}):\n{}",
        logdir.display(),
        checks.join("\n")
    );
    assert!(
        checks.len() >= 12 && checks.iter().all(|c| c.starts_with("ok - ")),
        "{checks:?}"
    );
}

/// A real libvirtd in the guest (tests/e2e/libvirt.sh, checks in tests/e2e/libvirt-hook.sh):
/// with vfio-bind `make install`ed, `virsh start` of a domain with a [[vm]] profile and a
/// managed='no' <hostdev> runs the hook, which binds the hostdev's whole IOMMU group; QEMU
/// holds /dev/vfio/<group>; `virsh destroy` gives the devices back. Controls: the same
/// domain without a profile is refused by libvirt and nothing moves; a profile whose group
/// holds the mounted root makes the hook fail and the start abort. Also a managed='yes'
/// domain, and a `systemctl reload vfio-bind` and a libvirtd restart while a VM holds its
/// group.
#[test]
fn e2e_libvirt_hook_hands_a_group_to_a_real_libvirtd() {
    run_driver("tests/e2e/libvirt.sh", 70);
}
