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

/// The early claim in a real initramfs-tools image (tests/e2e/initramfs-tools.sh): the
/// image's content and init-top order, a boot where the configured e1000e is matched by
/// vfio-pci only although e1000e is loaded in the initramfs, and the control boot with
/// `vfio-bind=off` where e1000e takes it.
#[test]
fn e2e_initramfs_tools_claims_before_the_host_driver() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let logdir = tmp.join("e2e-initramfs-tools");
    let _ = std::fs::remove_dir_all(&logdir);
    let out = Command::new(repo.join("tests/e2e/initramfs-tools.sh"))
        .arg(env!("CARGO_BIN_EXE_vfio-bind"))
        .arg(&logdir)
        .output()
        .expect("cannot run tests/e2e/initramfs-tools.sh");
    let text = String::from_utf8_lossy(&out.stdout);
    let checks: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("ok - ") || l.starts_with("FAIL - "))
        .collect();
    assert!(
        out.status.success(),
        "initramfs-tools e2e failed (logs in {}):\n{}\n{}",
        logdir.display(),
        checks.join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
    // Image checks, the claim boot's and the control boot's: none may go missing.
    assert!(
        checks.len() >= 20 && checks.iter().all(|c| c.starts_with("ok - ")),
        "{checks:?}"
    );
    eprintln!("initramfs-tools: {} checks passed", checks.len());
}
