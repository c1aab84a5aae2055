//! The real binary on generated sysfs trees (`--root`): list, status, check, dry runs and
//! no-op applies on several IOMMU-group shapes, and the errors a user can hit.

mod common;

use common::{dev, q35, Dev, Tree};

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Replace the temp root in output so snapshots are stable.
fn scrub(t: &Tree, s: &str) -> String {
    s.replace(&t.root().display().to_string(), "[ROOT]")
}

#[test]
fn list_shows_every_group_with_ids_class_and_driver() {
    let t = q35();
    t.set_override("0000:02:00.0", "vfio-pci");
    let o = t.run(&["list"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    insta::assert_snapshot!("list_q35", stdout(&o));
}

#[test]
fn check_prints_plan_for_each_group_shape() {
    let t = q35();
    t.config(
        r#"user = "0"
mode = "0660"

[[device]]
id = "1b36:000d"          # multifunction slot: the e1000e function comes along

[[device]]
address = "04:02.0"        # behind a PCIe-to-PCI bridge: bridge untouched

[[device]]
address = "0000:02:00.0"   # alone in its group

[[device]]
id = "10de:1c03"           # not on this host: a warning
"#,
    );
    let before = t.state();
    let o = t.run(&["check"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    insta::assert_snapshot!("check_q35", scrub(&t, &stdout(&o)));
    assert_eq!(before, t.state(), "check wrote something");
}

#[test]
fn dry_run_prints_the_plan_and_writes_nothing() {
    let t = q35();
    t.config("[[device]]\naddress = \"04:01.0\"\n");
    let before = t.state();
    let o = t.run(&["apply", "--dry-run"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("IOMMU group 9: will be bound"), "{out}");
    assert!(
        out.contains("0000:03:00.0 [1b36:000e] PCI bridge: bridge, untouched (no driver)"),
        "{out}"
    );
    assert!(
        out.contains(
            "0000:04:01.0 [8086:100e] Ethernet controller: e1000 -> vfio-pci  (device[1])"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "0000:04:02.0 [8086:100e] Ethernet controller: e1000 -> vfio-pci  (shares the group)"
        ),
        "{out}"
    );
    assert_eq!(before, t.state(), "--dry-run wrote something");
}

#[test]
fn dry_run_of_refused_boot_vga_exits_1() {
    let t = q35();
    t.config("[[device]]\naddress = \"00:01.0\"\n");
    let before = t.state();
    let o = t.run(&["apply", "--dry-run"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("refused: 0000:00:01.0 is the boot VGA device"),
        "{}",
        stdout(&o)
    );
    t.config("[[device]]\naddress = \"00:01.0\"\nallow_boot_vga = true\n");
    let o = t.run(&["apply", "--dry-run"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert_eq!(before.len(), t.state().len());
}

/// A host where the configured groups are already on vfio-pci with the override set and
/// the node as configured.
fn bound() -> Tree {
    let t = Tree::new();
    t.device(dev(
        "0000:01:00.0",
        "10de:1c03",
        0x030000,
        Some("vfio-pci"),
        1,
    ))
    .device(dev(
        "0000:01:00.1",
        "10de:10f1",
        0x040300,
        Some("vfio-pci"),
        1,
    ))
    .device(dev(
        "0000:00:01.0",
        "8086:1901",
        0x060400,
        Some("pcieport"),
        1,
    ))
    .device(dev(
        "0000:02:00.0",
        "1b21:2142",
        0x0c0330,
        Some("xhci_hcd"),
        2,
    ))
    .set_override("0000:01:00.0", "vfio-pci")
    .set_override("0000:01:00.1", "vfio-pci")
    .node(1);
    let uid = nix::unistd::getuid().as_raw();
    let gid = nix::unistd::getgid().as_raw();
    t.config(&format!(
        "user = {uid}\ngroup = {gid}\nmode = \"0640\"\n[[device]]\nid = \"10de:1c03\"\n"
    ));
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(t.path("dev/vfio/1"), std::fs::Permissions::from_mode(0o640)).unwrap();
    t
}

#[test]
fn status_reports_bound_group_and_node() {
    let t = bound();
    let o = t.run(&["status"]);
    assert_eq!(o.status.code(), Some(0), "{}\n{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("IOMMU group 1: bound\n"), "{out}");
    for want in [
        "  0000:00:01.0 [8086:1901] PCI bridge  (shares the group)\n      bridge, driver pcieport\n",
        "  0000:01:00.0 [10de:1c03] VGA compatible controller  (device[1])\n      driver vfio-pci\n",
        "  0000:01:00.1 [10de:10f1] Audio device  (shares the group)\n      driver vfio-pci\n",
        " 0640  (configured: owner 0, group 0, mode 0640)\n",
    ] {
        assert!(out.contains(want), "{want:?} not in\n{out}");
    }
}

#[test]
fn status_exits_1_when_not_bound() {
    let t = bound();
    t.config("[[device]]\nid = \"1b21:2142\"\n");
    let o = t.run(&["status"]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(
        out.contains("IOMMU group 2: not bound (1 of 1 members to change)"),
        "{out}"
    );
    assert!(out.contains("driver xhci_hcd, wants vfio-pci"), "{out}");
    assert!(out.contains("/dev/vfio/2: absent"), "{out}");
}

#[test]
fn apply_on_bound_host_is_a_noop() {
    let t = bound();
    std::fs::create_dir_all(t.path("run/udev")).unwrap(); // udev is running
    let before = t.state();
    let o = t.run(&["apply"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o)
            .contains("2 devices in 1 IOMMU group on vfio-pci (already in place, nothing changed)"),
        "{}",
        stderr(&o)
    );
    // Nothing changed but the udev rule that keeps the node's ownership through later
    // udev events; a second run changes nothing at all.
    let mut after = t.state();
    after
        .remove("run/udev/rules.d/70-vfio-bind.rules")
        .expect("udev rule written");
    after.remove("run/udev/rules.d");
    assert_eq!(before, after, "no-op apply wrote to sysfs or /dev");
    let again = t.state();
    assert_eq!(t.run(&["apply"]).status.code(), Some(0));
    assert_eq!(again, t.state(), "second apply wrote something");
    let text = std::fs::read_to_string(t.path("run/udev/rules.d/70-vfio-bind.rules")).unwrap();
    let uid = nix::unistd::getuid().as_raw();
    let gid = nix::unistd::getgid().as_raw();
    assert!(
        text.contains(&format!(
            "SUBSYSTEM==\"vfio\", KERNEL==\"1\", OWNER=\"{uid}\", GROUP=\"{gid}\", MODE=\"0640\""
        )),
        "{text}"
    ); // The hotplug line of the id entry runs this very binary.
    let bin = std::fs::canonicalize(env!("CARGO_BIN_EXE_vfio-bind")).unwrap();
    assert!(
        text.contains(&format!(
            "ACTION==\"add|remove\", SUBSYSTEM==\"pci\", ENV{{SYNTH_UUID}}==\"\", ENV{{PCI_ID}}==\"10DE:1C03\", RUN+=\"{} hotplug --action $env{{ACTION}} $kernel\"\n",
            bin.display()
        )),
        "{text}"
    );
}

#[test]
fn apply_fixes_node_mode_only() {
    let t = bound();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(t.path("dev/vfio/1"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = t.run(&["apply"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let mode = std::fs::metadata(t.path("dev/vfio/1"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o640);
}

#[test]
fn missing_driver_under_root_is_an_error_and_writes_nothing() {
    let t = q35();
    t.config("[[device]]\naddress = \"02:00.0\"\n");
    let before = t.state();
    let o = t.run(&["apply"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("driver vfio-pci is not available"), "{err}");
    assert!(
        err.contains("not loading kernel modules under --root"),
        "{err}"
    );
    assert_eq!(before, t.state());
}

#[test]
fn no_iommu_gives_one_clear_error() {
    let t = Tree::new();
    t.device(Dev::no_group(
        "0000:00:02.0",
        "8086:3e92",
        0x030000,
        Some("i915"),
    ));
    t.config("[[device]]\naddress = \"00:02.0\"\n");
    for args in [&["list"][..], &["apply"], &["check"], &["status"]] {
        let o = t.run(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let err = stderr(&o);
        assert!(err.contains("no IOMMU groups in"), "{err}");
        assert!(err.contains("intel_iommu=on"), "{err}");
        assert!(err.contains("VT-d"), "{err}");
        assert_eq!(
            err.matches("error:").count(),
            1,
            "one error, not a stack: {err}"
        );
    }
}

#[test]
fn config_errors_exit_2_with_position_and_touch_nothing() {
    let t = q35();
    let cases = [
        ("[[device]]\naddress = \"02:00.0\"\nallow_boot_gva = true\n", "etc/vfio-bind.toml:3:1: unknown field `allow_boot_gva`"),
        ("[[device]]\naddress = \"02:00.0\"\nid = \"8086:10d3\"\n", "etc/vfio-bind.toml:3:6: a [[device]] entry takes exactly one"),
        ("[[device]]\nid = \"8086:10d\"\n", "etc/vfio-bind.toml:2:6: invalid PCI ID \"8086:10d\""),
        ("mode = \"rw\"\n", "etc/vfio-bind.toml:1:8: invalid mode \"rw\""),
        ("group = \"no-such-group-here\"\n", "etc/vfio-bind.toml:1:9: unknown group \"no-such-group-here\""),
        ("[[device]]\n", "etc/vfio-bind.toml:1:1: a [[device]] entry needs"),
        // Two entries in one group asking for different owners: found at plan time,
        // still a config error before anything is touched.
        ("[[device]]\naddress = \"01:00.0\"\nuser = 0\n[[device]]\naddress = \"01:00.1\"\nuser = 1\n", "etc/vfio-bind.toml:4:1: /dev/vfio/7: this entry asks for owner 1"),
    ];
    for (text, want) in cases {
        t.config(text);
        let before = t.state();
        for args in [&["apply"][..], &["check"], &["apply", "--dry-run"]] {
            let o = t.run(args);
            assert_eq!(
                o.status.code(),
                Some(2),
                "{args:?} {text:?}: {}",
                stderr(&o)
            );
            let err = scrub(&t, &stderr(&o));
            assert!(err.contains(&format!("[ROOT]/{want}")), "{text:?}: {err}");
            assert!(stdout(&o).is_empty());
        }
        assert_eq!(before, t.state());
    }
}

#[test]
fn dropins_merge_in_lexical_order() {
    let t = q35();
    t.config("mode = \"0600\"\n[[device]]\naddress = \"02:00.0\"\n");
    t.dropin("20-late.toml", "mode = \"0660\"\n");
    t.dropin(
        "10-early.toml",
        "mode = \"0640\"\n[[device]]\nid = \"1b36:000d\"\n",
    );
    t.dropin("notes.txt", "ignored = true\n");
    let o = t.run(&["check"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = scrub(&t, &stdout(&o));
    let files: Vec<&str> = out.lines().filter(|l| l.starts_with("config: ")).collect();
    assert_eq!(
        files,
        [
            "config: [ROOT]/etc/vfio-bind.toml",
            "config: [ROOT]/etc/vfio-bind.d/10-early.toml",
            "config: [ROOT]/etc/vfio-bind.d/20-late.toml"
        ]
    );
    assert_eq!(out.matches("/dev/vfio/").count(), 2, "{out}");
    assert!(
        out.contains("/dev/vfio/7: mode 0660") && out.contains("/dev/vfio/8: mode 0660"),
        "{out}"
    );
}

#[test]
fn explicit_config_path_and_env_root() {
    let t = q35();
    let cfg = t.path("my.toml");
    std::fs::write(&cfg, "[[device]]\naddress = \"02:00.0\"\n").unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_vfio-bind"))
        .env("VFIO_BIND_ROOT", t.root())
        .env_remove("JOURNAL_STREAM")
        .args(["--config", cfg.to_str().unwrap(), "check"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("IOMMU group 8: will be bound"));
    let o = t.run(&["--config", "/nonexistent/vfio-bind.toml", "check"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("cannot read /nonexistent/vfio-bind.toml"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn required_entry_that_matches_nothing_fails() {
    let t = q35();
    t.config("[[device]]\nid = \"10de:1c03\"\n");
    let o = t.run(&["apply"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stderr(&o).contains(
        "warning: [ROOT]"
            .replace("[ROOT]", &t.root().display().to_string())
            .as_str()
    ));
    t.config("[[device]]\nid = \"10de:1c03\"\nrequired = true\n");
    let o = t.run(&["apply"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("error: ") && stderr(&o).contains("id 10de:1c03 matches no PCI device"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn usage_errors_exit_2() {
    let t = q35();
    assert_eq!(t.run(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(t.run(&["apply", "--bogus"]).status.code(), Some(2));
}

/// Host use read from sysfs and /proc under the root: each kind refuses the group with
/// the member and the reason, and check exits 1.
mod guards {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn write(t: &Tree, rel: &str, text: &str) {
        let p = t.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    /// A block device `name` (major:minor `num`) under the device at `devpath`
    /// (relative to sys/devices), listed in /sys/class/block.
    fn block(t: &Tree, devpath: &str, name: &str, num: &str) {
        write(
            t,
            &format!("sys/devices/{devpath}/{name}/dev"),
            &format!("{num}\n"),
        );
        fs::create_dir_all(t.path(&format!("sys/devices/{devpath}/{name}/holders"))).unwrap();
        fs::create_dir_all(t.path("sys/class/block")).unwrap();
        symlink(
            format!("../../devices/{devpath}/{name}"),
            t.path(&format!("sys/class/block/{name}")),
        )
        .unwrap();
    }

    fn net(t: &Tree, devpath: &str, name: &str, flags: &str) {
        write(
            t,
            &format!("sys/devices/{devpath}/net/{name}/flags"),
            &format!("{flags}\n"),
        );
        fs::create_dir_all(t.path("sys/class/net")).unwrap();
        symlink(
            format!("../../devices/{devpath}/net/{name}"),
            t.path(&format!("sys/class/net/{name}")),
        )
        .unwrap();
    }

    fn refused(t: &Tree, want: &str) {
        let o = t.run(&["check"]);
        assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
        assert!(stdout(&o).contains(want), "{}", stdout(&o));
    }

    #[test]
    fn mounted_partition_refuses_its_controller() {
        let t = q35();
        t.config("[[device]]\naddress = \"05:00.0\"\n");
        block(&t, "pci0000:00/0000:05:00.0/virtio2/block", "vda", "254:0");
        block(
            &t,
            "pci0000:00/0000:05:00.0/virtio2/block/vda",
            "vda1",
            "254:1",
        );
        assert_eq!(t.run(&["check"]).status.code(), Some(0));
        write(
            &t,
            "proc/self/mountinfo",
            "22 1 254:1 / /srv rw,relatime shared:1 - ext4 /dev/vda1 rw\n",
        );
        refused(
            &t,
            "refused: 0000:05:00.0 has /dev/vda1 mounted on /srv (unmount it first)",
        );
    }

    #[test]
    fn swap_and_holders_refuse() {
        let t = q35();
        t.config("[[device]]\naddress = \"05:00.0\"\n");
        block(&t, "pci0000:00/0000:05:00.0/virtio2/block", "vda", "254:0");
        write(
            &t,
            "proc/swaps",
            "Filename Type Size Used Priority\n/dev/vda partition 1024 0 -2\n",
        );
        refused(&t, "has /dev/vda in use as swap");
        fs::remove_file(t.path("proc/swaps")).unwrap();
        fs::create_dir_all(
            t.path("sys/devices/pci0000:00/0000:05:00.0/virtio2/block/vda/holders/dm-0"),
        )
        .unwrap();
        refused(&t, "has /dev/vda held by dm-0");
    }

    #[test]
    fn nvme_multipath_head_is_traced_to_its_controller() {
        let t = q35();
        t.config("[[device]]\naddress = \"05:00.0\"\n");
        // nvme0n1 lives under /sys/devices/virtual; its path device under the PCI device.
        block(&t, "pci0000:00/0000:05:00.0/nvme/nvme0", "nvme0c0n1", "0:0");
        block(
            &t,
            "virtual/nvme-subsystem/nvme-subsys0",
            "nvme0n1",
            "259:0",
        );
        block(
            &t,
            "virtual/nvme-subsystem/nvme-subsys0/nvme0n1",
            "nvme0n1p2",
            "259:2",
        );
        fs::create_dir_all(
            t.path("sys/devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1/multipath"),
        )
        .unwrap();
        symlink(
            "../../../../../pci0000:00/0000:05:00.0/nvme/nvme0/nvme0c0n1",
            t.path("sys/devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1/multipath/nvme0c0n1"),
        )
        .unwrap();
        write(
            &t,
            "proc/self/mountinfo",
            "22 1 259:2 / / rw - ext4 /dev/nvme0n1p2 rw\n",
        );
        refused(&t, "has /dev/nvme0n1p2 mounted on /");
    }

    #[test]
    fn interface_up_with_routes_addresses_or_master_refuses() {
        let t = q35();
        t.config("[[device]]\naddress = \"02:00.0\"\n");
        net(&t, "pci0000:00/0000:02:00.0", "enp2s0", "0x1003");
        // Up but unused (only a link-local address): not refused.
        write(
            &t,
            "proc/net/if_inet6",
            "fe80000000000000505400fffe123457 03 40 20 80 enp2s0\n",
        );
        assert_eq!(t.run(&["check"]).status.code(), Some(0));
        write(&t, "proc/net/route", "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\nenp2s0\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n");
        refused(
            &t,
            "refused: 0000:02:00.0 has network interface enp2s0 up with IPv4 routes",
        );
        fs::remove_file(t.path("proc/net/route")).unwrap();
        write(
            &t,
            "proc/net/if_inet6",
            "20010db8000000000000000000000001 03 40 00 80 enp2s0\n",
        );
        refused(&t, "up with IPv6 addresses");
        fs::remove_file(t.path("proc/net/if_inet6")).unwrap();
        net(&t, "virtual", "vmbr0", "0x1003");
        symlink(
            "../vmbr0",
            t.path("sys/devices/pci0000:00/0000:02:00.0/net/enp2s0/master"),
        )
        .unwrap();
        refused(&t, "up with master vmbr0");
        // Down: nothing counts.
        write(
            &t,
            "sys/devices/pci0000:00/0000:02:00.0/net/enp2s0/flags",
            "0x1002\n",
        );
        assert_eq!(t.run(&["check"]).status.code(), Some(0));
    }
}

/// `list` and `status`, text and JSON, with names from pci.ids.
mod named {
    use super::*;

    fn host() -> Tree {
        let t = q35();
        t.pci_ids();
        t.set_override("0000:02:00.0", "vfio-pci");
        t
    }

    #[test]
    fn list_text_with_names() {
        let t = host();
        let o = t.run(&["list"]);
        assert_eq!(o.status.code(), Some(0));
        let out = stdout(&o);
        assert!(
            out.lines().all(|l| l.chars().count() <= 80),
            "wider than 80 columns:\n{out}"
        );
        insta::assert_snapshot!("list_named", out);
    }

    #[test]
    fn list_json() {
        let t = host();
        let o = t.run(&["list", "--json"]);
        assert_eq!(o.status.code(), Some(0));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["version"], 1);
        insta::assert_snapshot!("list_json", stdout(&o));
    }

    fn bound() -> Tree {
        let t = host();
        t.node(8);
        t.config(
            "mode = \"0600\"\n[[device]]\naddress = \"02:00.0\"\n[[device]]\nid = \"1b36:000d\"\n",
        );
        // 02:00.0 already on vfio-pci with its override; the xhci group is not bound.
        std::fs::remove_file(t.path("sys/devices/pci0000:00/0000:02:00.0/driver")).unwrap();
        t.driver("vfio-pci");
        std::os::unix::fs::symlink(
            "../../../bus/pci/drivers/vfio-pci",
            t.path("sys/devices/pci0000:00/0000:02:00.0/driver"),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(t.path("dev/vfio/8"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        t
    }

    /// Node owner names depend on the machine's user database: show ids instead.
    fn scrub_owner(s: &str) -> String {
        let me = format!("{}:{}", nix::unistd::getuid(), nix::unistd::getgid());
        s.lines()
            .map(|l| {
                if l.starts_with("  /dev/vfio/") {
                    l.replace(&me, "[OWNER]").replace("root:root", "[OWNER]")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn status_text_with_names() {
        let t = bound();
        let o = t.run(&["status"]);
        assert_eq!(o.status.code(), Some(1), "one group is not bound");
        let out = scrub_owner(&scrub(&t, &stdout(&o)));
        assert!(
            out.lines().all(|l| l.chars().count() <= 80),
            "wider than 80 columns:\n{out}"
        );
        insta::assert_snapshot!("status_named", out);
    }

    #[test]
    fn status_json() {
        let t = bound();
        let o = t.run(&["status", "--json"]);
        assert_eq!(o.status.code(), Some(1));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["ok"], false);
        assert_eq!(v["groups"][0]["group"], 7);
        assert_eq!(v["groups"][0]["state"], "not_bound");
        assert_eq!(v["groups"][1]["state"], "bound");
        assert_eq!(v["groups"][1]["node"]["mode"], "0600");
        assert_eq!(v["groups"][1]["members"][0]["driver"], "vfio-pci");
        assert_eq!(
            v["groups"][1]["members"][0]["vendor_name"],
            "Intel Corporation"
        );
        let mut v = v;
        for g in v["groups"].as_array_mut().unwrap() {
            for k in ["uid", "gid", "user", "group"] {
                if !g["node"][k].is_null() {
                    g["node"][k] = serde_json::Value::String(format!("[{k}]"));
                }
            }
        }
        insta::assert_snapshot!("status_json", serde_json::to_string_pretty(&v).unwrap());
    }
}

/// `doctor` on generated hosts.
mod doctor {
    use super::*;
    use std::fs;

    fn write(t: &Tree, rel: &str, text: &str) {
        let p = t.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    /// The /proc, /lib/modules and /sys/class/iommu of an Intel host set up for
    /// passthrough.
    fn healthy(t: &Tree) {
        write(
            t,
            "proc/cpuinfo",
            "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu vme vmx sse\n",
        );
        write(
            t,
            "proc/cmdline",
            "BOOT_IMAGE=/vmlinuz root=/dev/sda1 intel_iommu=on iommu=pt\n",
        );
        write(t, "proc/sys/kernel/osrelease", "6.1.0-test\n");
        write(
            t,
            "lib/modules/6.1.0-test/modules.dep",
            "kernel/drivers/vfio/pci/vfio-pci.ko: kernel/drivers/vfio/pci/vfio-pci-core.ko\n",
        );
        fs::create_dir_all(t.path("sys/class/iommu/dmar0")).unwrap();
        write(
            t,
            "proc/interrupts",
            "  24:   0   IR-PCI-MSI 512000-edge   ahci\n",
        );
        write(
            t,
            "proc/self/limits",
            "Max locked memory         unlimited            unlimited            bytes\n",
        );
    }

    /// Exit code and output with the 80-column wrapping undone (whitespace runs become
    /// one space), so assertions can name whole sentences.
    fn run(t: &Tree) -> (Option<i32>, String) {
        let o = t.run(&["doctor"]);
        let out = stdout(&o);
        assert!(
            out.lines().all(|l| l.chars().count() <= 80),
            "wider than 80 columns:\n{out}"
        );
        (
            o.status.code(),
            out.split_whitespace().collect::<Vec<_>>().join(" "),
        )
    }

    #[test]
    fn healthy_host_passes() {
        let t = q35();
        healthy(&t);
        t.config("[[device]]\naddress = \"02:00.0\"\n");
        let (code, out) = run(&t);
        assert_eq!(code, Some(0), "{out}");
        for want in [
            "[ ok ] CPU virtualization: Intel VT-x (vmx)",
            "[ ok ] IOMMU: 8 IOMMU groups; IOMMU units: dmar0",
            "[ ok ] kernel command line: intel_iommu=on iommu=pt",
            "[ ok ] interrupt remapping: enabled",
            "[ ok ] vfio modules: vfio-pci available for kernel 6.1.0-test, not loaded yet",
            "[ ok ] memlock limit: unlimited",
            "[ ok ] device group: group 8 of 0000:02:00.0: alone in its group",
            "Passthrough can work on this host.",
        ] {
            assert!(out.contains(want), "{want:?} not in\n{out}");
        }
    }

    #[test]
    fn iommu_off_fails_with_the_fix() {
        let t = Tree::new();
        t.device(Dev::no_group(
            "0000:02:00.0",
            "8086:10d3",
            0x020000,
            Some("e1000e"),
        ));
        healthy(&t);
        write(&t, "proc/cmdline", "BOOT_IMAGE=/vmlinuz root=/dev/sda1\n");
        let (code, out) = run(&t);
        assert_eq!(code, Some(1), "{out}");
        assert!(out.contains("[FAIL] IOMMU: no IOMMU groups"), "{out}");
        assert!(
            out.contains("fix: enable VT-d (Intel) or AMD-Vi/IOMMU (AMD) in the firmware setup"),
            "{out}"
        );
        assert!(
            out.contains("[FAIL] kernel command line: no IOMMU options"),
            "{out}"
        );
        assert!(out.contains("fix: add intel_iommu=on"), "{out}");
        assert!(out.contains("Passthrough cannot work yet"), "{out}");
    }

    #[test]
    fn missing_module_fails() {
        let t = q35();
        healthy(&t);
        write(
            &t,
            "lib/modules/6.1.0-test/modules.dep",
            "kernel/drivers/net/e1000e.ko:\n",
        );
        let (code, out) = run(&t);
        assert_eq!(code, Some(1), "{out}");
        assert!(
            out.contains("[FAIL] vfio modules: vfio-pci is neither loaded nor available for kernel 6.1.0-test"),
            "{out}"
        );
    }

    #[test]
    fn shared_group_gets_acs_advice() {
        let t = q35();
        healthy(&t);
        // Another slot's device in the group (behind a PCIe-to-PCI bridge): a warning
        // that names it, not the named device itself.
        t.config("[[device]]\naddress = \"04:01.0\"\n");
        let (code, out) = run(&t);
        assert_eq!(code, Some(0), "a shared group is a warning: {out}");
        assert!(
            out.contains("[warn] device group: group 9 of 0000:04:01.0 also holds: 0000:04:02.0 Ethernet controller fix:"),
            "{out}"
        );
        assert!(out.contains("ACS"), "{out}");
        // The other functions of the named device's own slot (a GPU's HDMI audio, here
        // the xhci's sibling function) are not strangers.
        t.config("[[device]]\nid = \"1b36:000d\"\n");
        let (code, out) = run(&t);
        assert_eq!(code, Some(0), "{out}");
        assert!(
            out.contains("[ ok ] device group: group 7 of 0000:01:00.0: with its own functions only (0000:01:00.1 Ethernet controller)"),
            "{out}"
        );
        assert!(!out.contains("also holds"), "{out}");
    }

    #[test]
    fn refused_group_and_config_errors_fail() {
        let t = q35();
        healthy(&t);
        t.config("[[device]]\naddress = \"00:01.0\"\n");
        let (code, out) = run(&t);
        assert_eq!(code, Some(1), "{out}");
        assert!(
            out.contains("[FAIL] device group: group 1 of 0000:00:01.0: refused"),
            "{out}"
        );
        t.config("[[device]]\nadress = \"00:01.0\"\n");
        let (code, out) = run(&t);
        assert_eq!(code, Some(1), "{out}");
        assert!(
            out.contains("[FAIL] config: ")
                && out.contains("etc/vfio-bind.toml:2:1: unknown field `adress`"),
            "{out}"
        );
    }

    #[test]
    fn no_interrupt_remapping_and_low_memlock_warn() {
        let t = q35();
        healthy(&t);
        write(
            &t,
            "proc/interrupts",
            "  24:   0   PCI-MSI 512000-edge   ahci\n",
        );
        write(
            &t,
            "proc/self/limits",
            "Max locked memory         8388608              8388608              bytes\n",
        );
        t.config("user = 0\n[[device]]\naddress = \"02:00.0\"\n");
        let (code, out) = run(&t);
        assert_eq!(code, Some(0), "{out}");
        assert!(
            out.contains("[warn] interrupt remapping: not enabled"),
            "{out}"
        );
        assert!(out.contains("allow_unsafe_interrupts=1"), "{out}");
        assert!(
            out.contains("[warn] memlock limit: 8192 KiB for this session"),
            "{out}"
        );
        assert!(out.contains("/etc/security/limits.d/vfio.conf"), "{out}");
    }
}

/// Trees without `uevent` files: IDs, subsystem and class come from the attribute files.
#[test]
fn ids_without_uevent_come_from_attribute_files() {
    let t = Tree::new();
    t.device(Dev {
        no_uevent: true,
        ..dev("0000:02:00.0", "8086:10d3", 0x020000, Some("e1000e"), 8)
    })
    .device(dev(
        "0000:03:00.0",
        "8086:10d3",
        0x020000,
        Some("e1000e"),
        9,
    ));
    t.config("[[device]]\nid = \"8086:10d3\"\nsubsystem = \"1af4:1100\"\n");
    let o = t.run(&["check"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("0000:02:00.0 [8086:10d3] Ethernet controller: e1000e -> vfio-pci"),
        "{out}"
    );
    assert!(
        out.contains("0000:03:00.0 [8086:10d3] Ethernet controller: e1000e -> vfio-pci"),
        "{out}"
    );
}
