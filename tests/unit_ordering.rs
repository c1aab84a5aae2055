//! The unit's ordering, checked by systemd itself (`systemd-analyze verify` on a boot
//! transaction): it starts before udev's coldplug, systemd-modules-load and the local
//! file systems, and pulls in no mount, so it cannot form an ordering cycle with units
//! that mount after the coldplug (ZFS on root: `zfs-import-cache` after
//! `systemd-udev-trigger`, `zfs-mount` before `local-fs.target`). The control case adds
//! `PrivateTmp=yes` back and must find the cycle it causes (systemd.exec(5), "Implicit
//! Dependencies").

use std::fs;
use std::path::Path;
use std::process::Command;

const UNIT: &str = include_str!("../dist/systemd/vfio-bind.service");

/// ZFS-on-root style units (as zfsutils ships them, trimmed to their ordering), udev's
/// units as stubs (this machine may not have udev), and a target that pulls them all
/// into one transaction with our unit.
fn boot(dir: &Path, unit: &str) {
    let w = |name: &str, text: &str| fs::write(dir.join(name), text).unwrap();
    w(
        "vfio-bind.service",
        &unit.replace("/usr/sbin/vfio-bind", "/bin/true"),
    );
    w(
        "zfs-import-cache.service",
        "[Unit]\nDefaultDependencies=no\nAfter=systemd-udev-trigger.service\n\
         After=systemd-remount-fs.service\nBefore=zfs-import.target\n\
         [Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n",
    );
    w(
        "zfs-import.target",
        "[Unit]\nDescription=ZFS pool import target\n",
    );
    w(
        "zfs-mount.service",
        "[Unit]\nDefaultDependencies=no\nAfter=zfs-import.target zfs-import-cache.service\n\
         Wants=zfs-import-cache.service\nBefore=local-fs.target\n\
         [Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n",
    );
    w(
        "systemd-udev-trigger.service",
        "[Unit]\nDefaultDependencies=no\nBefore=sysinit.target\n\
         [Service]\nType=oneshot\nExecStart=/bin/true\n",
    );
    w(
        "systemd-udevd-control.socket",
        "[Unit]\nDefaultDependencies=no\nBefore=sockets.target\n\
         [Socket]\nListenStream=/run/udev/control\n",
    );
    w(
        "boot-test.target",
        "[Unit]\nWants=vfio-bind.service zfs-mount.service zfs-import-cache.service \
         systemd-udev-trigger.service systemd-modules-load.service local-fs.target \
         sysinit.target\n",
    );
}

/// `systemd-analyze verify` of the boot transaction: its output (cycles are reported,
/// not an exit status).
fn verify(unit: &str) -> String {
    let d = tempfile::tempdir().unwrap();
    boot(d.path(), unit);
    let o = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(d.path().join("boot-test.target"))
        .output()
        .expect("systemd-analyze (Debian package systemd; tests/vm/setup.sh installs it)");
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn no_ordering_cycle_with_zfs_style_mount_units() {
    let out = verify(UNIT);
    assert!(!out.contains("ordering cycle"), "{out}");
    assert!(!out.contains("deleted to break"), "{out}");
}

#[test]
fn control_private_tmp_makes_the_cycle() {
    let unit = UNIT.replace("ProtectHome=yes\n", "ProtectHome=yes\nPrivateTmp=yes\n");
    assert_ne!(unit, UNIT);
    let out = verify(&unit);
    assert!(out.contains("Found ordering cycle"), "{out}");
}

#[test]
fn the_unit_orders_itself_early_and_implies_no_mount() {
    let lines: Vec<&str> = UNIT
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    for want in [
        "DefaultDependencies=no",
        "Before=systemd-udev-trigger.service",
        "Before=systemd-modules-load.service",
        "Before=local-fs.target",
        "TimeoutStartSec=3min",
    ] {
        assert!(lines.contains(&want), "missing {want}");
    }
    // Settings that imply mount dependencies (systemd.exec(5), "Implicit Dependencies").
    for bad in [
        "PrivateTmp=",
        "StateDirectory=",
        "CacheDirectory=",
        "LogsDirectory=",
        "WorkingDirectory=",
        "RootDirectory=",
        "RequiresMountsFor=",
        "After=local-fs.target",
        "After=systemd-modules-load.service",
    ] {
        assert!(
            !lines.iter().any(|l| l.starts_with(bad)),
            "the unit has {bad}"
        );
    }
}
