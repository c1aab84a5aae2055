//! The early claim (`vfio-bind claim`, run in the initramfs), the hotplug helper
//! (`vfio-bind hotplug ADDR`, run by udev), the rescue switch `vfio-bind=off`, and the
//! warning that the initramfs image is older than the config — against the fake kernel
//! (tests/common/fakekernel.rs) and generated roots. The real-kernel proof of the
//! initramfs integrations is tests/vm/initramfs.sh.

mod common;

use std::fs;
use std::time::{Duration, SystemTime};

use common::fakekernel::{FakeKernel, Rules};
use common::{dev, Tree};

const XHCI: &str = "0000:01:00.0";
const SIB: &str = "0000:01:00.1";
const NIC: &str = "0000:02:00.0";
const OTHER: &str = "0000:03:00.0";

/// Group 7: xhci + an audio function (one slot; the xhci named); group 8: a lone e1000e,
/// named; group 9: an e1000e nobody names. vfio-pci is registered. The top-level `user` is a name no user
/// database here knows: the claim must not look it up (the initramfs has none).
fn tree() -> Tree {
    let t = Tree::new();
    t.driver("vfio-pci")
        .device(dev(XHCI, "1b36:000d", 0x0c0330, Some("xhci_hcd"), 7))
        .device(dev(SIB, "8086:293e", 0x040300, Some("snd_hda_intel"), 7))
        .device(dev(NIC, "8086:10d3", 0x020000, Some("e1000e"), 8))
        .device(dev(OTHER, "8086:10d3", 0x020000, Some("e1000e"), 9));
    t.config(&format!(
        "[[device]]\naddress = \"{XHCI}\"\n\n[[device]]\naddress = \"{NIC}\"\n"
    ));
    t
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn state_text(root: &std::path::Path) -> String {
    let mut text = String::new();
    if let Ok(rd) = fs::read_dir(root.join("run/vfio-bind/groups")) {
        let mut files: Vec<_> = rd.map(|e| e.unwrap().path()).collect();
        files.sort();
        for f in files {
            text.push_str(&fs::read_to_string(f).unwrap());
        }
    }
    text
}

#[test]
fn claim_writes_every_override_before_any_probe_and_records_early() {
    let t = tree();
    fs::write(
        t.path("etc/vfio-bind.toml"),
        format!(
            "user = \"no-such-user-in-the-initramfs\"\nmode = \"0660\"\n{}",
            fs::read_to_string(t.path("etc/vfio-bind.toml")).unwrap()
        ),
    )
    .unwrap();
    let k = FakeKernel::mount(&t, Rules::default());
    let o = k.run(&["--bind-timeout", "300", "claim"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for d in [XHCI, SIB, NIC] {
        assert_eq!(k.driver(d).as_deref(), Some("vfio-pci"), "{d}");
        assert_eq!(k.override_of(d).as_deref(), Some("vfio-pci"), "{d}");
    }
    assert_eq!(k.driver(OTHER).as_deref(), Some("e1000e"));
    // Overrides first, for every member of every group, before any unbind or probe.
    let writes = k.writes();
    let first_other = writes
        .iter()
        .position(|w| !w.path.ends_with("driver_override"))
        .unwrap();
    for d in [XHCI, SIB, NIC] {
        assert!(
            writes[..first_other]
                .iter()
                .any(|w| w.path.ends_with(&format!("{d}/driver_override")) && w.value == "vfio-pci"),
            "{d}: {writes:#?}"
        );
    }
    let state = state_text(k.root());
    assert_eq!(state.matches("early = true").count(), 3, "{state}");
    assert!(state.contains("previous_driver = \"xhci_hcd\""), "{state}");
    assert!(
        stderr(&o).contains("claimed early: 3 devices in 2 IOMMU groups on vfio-pci"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn claim_leaves_a_group_with_an_unnamed_storage_controller_to_the_real_root() {
    // The xhci's slot holds a SATA controller (class 01) instead of the e1000e: it may
    // carry the root file system, which the initramfs cannot see yet.
    let t = Tree::new();
    t.driver("vfio-pci")
        .device(dev(XHCI, "1b36:000d", 0x0c0330, Some("xhci_hcd"), 7))
        .device(dev(SIB, "8086:2922", 0x010601, Some("ahci"), 7))
        .device(dev(NIC, "8086:10d3", 0x020000, Some("e1000e"), 8));
    t.config(&format!(
        "[[device]]\naddress = \"{XHCI}\"\n\n[[device]]\naddress = \"{NIC}\"\n"
    ));
    let k = FakeKernel::mount(&t, Rules::default());
    let o = k.run(&["--bind-timeout", "300", "claim"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!(
            "{SIB} is a storage controller no entry names, sharing the group"
        )),
        "{}",
        stderr(&o)
    );
    assert_eq!(k.driver(XHCI).as_deref(), Some("xhci_hcd"));
    assert_eq!(k.driver(SIB).as_deref(), Some("ahci"));
    assert_eq!(k.override_of(XHCI), None);
    assert_eq!(k.driver(NIC).as_deref(), Some("vfio-pci"));
    // Named by an entry, the same controller is claimed: the user said so.
    t.config(&format!(
        "[[device]]\naddress = \"{XHCI}\"\n\n[[device]]\naddress = \"{SIB}\"\n"
    ));
    let o = k.run(&["--bind-timeout", "300", "claim"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(k.driver(SIB).as_deref(), Some("vfio-pci"));
}

#[test]
fn claim_puts_the_overrides_back_when_the_driver_does_not_register() {
    // No vfio-pci driver directory, and under --root no module is loaded.
    let t = Tree::new();
    t.device(dev(NIC, "8086:10d3", 0x020000, Some("e1000e"), 8));
    t.config(&format!("[[device]]\naddress = \"{NIC}\"\n"));
    let k = FakeKernel::mount(&t, Rules::default());
    let o = k.run(&["--bind-timeout", "300", "claim"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(
            "group 8: driver vfio-pci did not register; putting the group's overrides back"
        ),
        "{}",
        stderr(&o)
    );
    assert_eq!(k.override_of(NIC), None);
    assert_eq!(k.driver(NIC).as_deref(), Some("e1000e"));
    assert!(!state_text(k.root()).contains(NIC));
}

#[test]
fn status_shows_early_claims_and_apply_keeps_them() {
    let t = tree();
    let k = FakeKernel::mount(&t, Rules::default());
    assert_eq!(
        k.run(&["--bind-timeout", "300", "claim"]).status.code(),
        Some(0)
    );
    let o = k.run(&["status"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains(&format!("{XHCI} [1b36:000d]"))
            && out.contains("driver vfio-pci, claimed early (in the initramfs)"),
        "{out}"
    );
    // The real root's apply: nothing left to bind, the records kept as they are.
    let before = k.writes().len();
    let o = k.run(&["--bind-timeout", "300", "apply"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(k.writes().len(), before, "{:#?}", &k.writes()[before..]);
    assert_eq!(state_text(k.root()).matches("early = true").count(), 3);
}

#[test]
fn apply_releases_what_an_older_initramfs_claimed_and_the_config_no_longer_names() {
    let t = tree();
    let k = FakeKernel::mount(&t, Rules::default());
    assert_eq!(
        k.run(&["--bind-timeout", "300", "claim"]).status.code(),
        Some(0)
    );
    fs::write(
        k.path("etc/vfio-bind.toml"),
        format!("[[device]]\naddress = \"{XHCI}\"\n"),
    )
    .unwrap();
    let o = k.run(&["--bind-timeout", "300", "apply"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(k.driver(NIC).as_deref(), Some("e1000e"));
    assert_eq!(k.override_of(NIC), None);
    assert_eq!(k.driver(XHCI).as_deref(), Some("vfio-pci"));
    assert!(!state_text(k.root()).contains(NIC));
}

#[test]
fn vfio_bind_off_on_the_command_line_skips_claim_and_hotplug() {
    let t = tree();
    fs::create_dir_all(t.path("proc")).unwrap();
    fs::write(
        t.path("proc/cmdline"),
        "BOOT_IMAGE=/vmlinuz root=/dev/sda vfio-bind=off quiet\n",
    )
    .unwrap();
    // The fake kernel's root links the tree's dev, etc, run and proc.
    let k = FakeKernel::mount(&t, Rules::default());
    let o = k.run(&["claim"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("vfio-bind=off on the kernel command line: not claiming"),
        "{}",
        stderr(&o)
    );
    let o = k.run(&["hotplug", NIC]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(k.writes().is_empty(), "{:#?}", k.writes());
    assert!(!k.path("run/vfio-bind").exists());
    // Control: without the switch the same claim binds.
    fs::write(k.path("proc/cmdline"), "root=/dev/sda quiet\n").unwrap();
    assert_eq!(
        k.run(&["--bind-timeout", "300", "claim"]).status.code(),
        Some(0)
    );
    assert_eq!(k.driver(NIC).as_deref(), Some("vfio-pci"));
}

#[test]
fn claim_files_lists_what_the_hooks_copy() {
    let t = tree();
    t.dropin(
        "50-more.toml",
        &format!("[[device]]\naddress = \"{OTHER}\"\n"),
    );
    let o = t.run(&["claim", "--files"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!(
            "{}\n{}\n",
            t.path("etc/vfio-bind.toml").display(),
            t.path("etc/vfio-bind.d/50-more.toml").display()
        )
    );
    t.config("# nothing\n");
    fs::remove_file(t.path("etc/vfio-bind.d/50-more.toml")).unwrap();
    assert_eq!(t.run(&["claim", "--files"]).status.code(), Some(1));
    t.config("[[device]]\nadress = \"01:00.0\"\n");
    let o = t.run(&["claim", "--files"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("adress"), "{}", stderr(&o));
}

#[test]
fn hotplug_claims_only_the_added_devices_group() {
    let t = tree();
    let k = FakeKernel::mount(&t, Rules::default());
    let o = k.run(&[
        "--bind-timeout",
        "300",
        "--node-timeout",
        "300",
        "hotplug",
        NIC,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains(&format!("{NIC}: added; claiming IOMMU group 8")));
    assert_eq!(k.driver(NIC).as_deref(), Some("vfio-pci"));
    // Group 7 is configured too, but nobody hot-added it: untouched.
    assert_eq!(k.driver(XHCI).as_deref(), Some("xhci_hcd"));
    for w in k.writes() {
        assert!(w.path.contains(NIC) || w.value.trim() == NIC, "{w:?}");
    }
    // A device no entry names: nothing at all.
    let before = k.writes().len();
    assert_eq!(k.run(&["hotplug", OTHER]).status.code(), Some(0));
    assert_eq!(k.writes().len(), before);
    // Removed: the record goes, nothing else changes.
    k.unplug(NIC);
    let o = k.run(&["hotplug", NIC]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains(&format!("{NIC}: removed; forgot its record")));
    assert!(!state_text(k.root()).contains(NIC));
    // The remove event comes before the sysfs directory goes: --action remove forgets
    // the record even while the device is still there.
    assert_eq!(
        k.run(&[
            "--bind-timeout",
            "300",
            "--node-timeout",
            "300",
            "hotplug",
            XHCI
        ])
        .status
        .code(),
        Some(0)
    );
    assert!(state_text(k.root()).contains(XHCI));
    let o = k.run(&["hotplug", "--action", "remove", XHCI]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        !state_text(k.root()).contains(XHCI),
        "{}",
        state_text(k.root())
    );
    // Bad input: exit 2, nothing touched.
    let o = k.run(&["hotplug", "../../etc"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not a PCI address"), "{}", stderr(&o));
}

/// A generated root with an initramfs generator (`generator`), vfio-bind's integration
/// for it (`family_file`, installed 5 days ago) and the other families' (as `make install`
/// puts them all in place), the config (written an hour ago) and an image of the running
/// kernel built at `built`.
fn with_image(generator: &str, family_file: &str, image: &str, built: SystemTime) -> Tree {
    let t = tree();
    for other in [
        "usr/share/initramfs-tools/hooks/vfio-bind",
        "usr/lib/dracut/modules.d/90vfio-bind/module-setup.sh",
        "usr/lib/initcpio/install/vfio-bind",
    ] {
        let p = t.path(other);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, "# an integration\n").unwrap();
        let long_ago = SystemTime::now() - Duration::from_secs(30 * 86400);
        fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
    }
    let g = t.path(generator);
    fs::create_dir_all(g.parent().unwrap()).unwrap();
    fs::write(&g, "#!/bin/sh\n").unwrap();
    fs::create_dir_all(t.path("proc/sys/kernel")).unwrap();
    fs::write(t.path("proc/sys/kernel/osrelease"), "6.1.0-test-amd64\n").unwrap();
    let hook = t.path(family_file);
    fs::create_dir_all(hook.parent().unwrap()).unwrap();
    fs::write(&hook, "# vfio-bind's integration\n").unwrap();
    let installed = SystemTime::now() - Duration::from_secs(5 * 86400);
    fs::File::options()
        .write(true)
        .open(&hook)
        .unwrap()
        .set_modified(installed)
        .unwrap();
    let old = SystemTime::now() - Duration::from_secs(3600);
    let cfg = t.path("etc/vfio-bind.toml");
    fs::File::options()
        .write(true)
        .open(&cfg)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let img = t.path(image);
    fs::create_dir_all(img.parent().unwrap()).unwrap();
    fs::write(&img, "image").unwrap();
    fs::File::options()
        .write(true)
        .open(&img)
        .unwrap()
        .set_modified(built)
        .unwrap();
    t
}

#[test]
fn check_and_apply_say_when_the_initramfs_is_older_than_the_config() {
    let hour_ago = SystemTime::now() - Duration::from_secs(7200);
    let t = with_image(
        "usr/sbin/mkinitramfs",
        "usr/share/initramfs-tools/hooks/vfio-bind",
        "boot/initrd.img-6.1.0-test-amd64",
        hour_ago,
    );
    let o = t.run(&["check"]);
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "the initramfs {} is older than {}",
            t.path("boot/initrd.img-6.1.0-test-amd64").display(),
            t.path("etc/vfio-bind.toml").display()
        )) && err.contains("rebuild it with `update-initramfs -u`"),
        "{err}"
    );
    let doctor = stdout(&t.run(&["doctor"]));
    assert!(
        doctor.contains("[warn] early boot: the initramfs")
            && doctor.contains("fix: run `update-initramfs -u`"),
        "{doctor}"
    );
    // Rebuilt after the config: nothing to say.
    let img = t.path("boot/initrd.img-6.1.0-test-amd64");
    fs::File::options()
        .write(true)
        .open(&img)
        .unwrap()
        .set_modified(SystemTime::now())
        .unwrap();
    let o = t.run(&["check"]);
    assert!(!stderr(&o).contains("initramfs"), "{}", stderr(&o));
}

#[test]
fn dracut_image_older_than_the_integration_lacks_it() {
    let long_ago = SystemTime::now() - Duration::from_secs(10 * 86400);
    let t = with_image(
        "usr/bin/dracut",
        "usr/lib/dracut/modules.d/90vfio-bind/module-setup.sh",
        "boot/initramfs-6.1.0-test-amd64.img",
        long_ago,
    );
    let o = t.run(&["check"]);
    let err = stderr(&o);
    assert!(
        err.contains("usr/lib/dracut/modules.d/90vfio-bind/module-setup.sh")
            && err.contains("`dracut -f`"),
        "{err}"
    );
}

#[test]
fn mkinitcpio_hooks_without_vfio_bind_are_named() {
    let t = with_image(
        "usr/bin/mkinitcpio",
        "usr/lib/initcpio/install/vfio-bind",
        "boot/initramfs-linux.img",
        SystemTime::now(),
    );
    fs::write(
        t.path("etc/mkinitcpio.conf"),
        "MODULES=(amdgpu)\nHOOKS=(base udev autodetect modconf kms block filesystems fsck)\n",
    )
    .unwrap();
    let o = t.run(&["check"]);
    let err = stderr(&o);
    assert!(
        err.contains("HOOKS lists neither vfio-bind nor sd-vfio-bind")
            && err.contains("mkinitcpio -P"),
        "{err}"
    );
    // A drop-in that adds it settles it.
    fs::create_dir_all(t.path("etc/mkinitcpio.conf.d")).unwrap();
    fs::write(
        t.path("etc/mkinitcpio.conf.d/vfio.conf"),
        "HOOKS=(base vfio-bind udev autodetect modconf kms block filesystems fsck)\n",
    )
    .unwrap();
    assert!(!stderr(&t.run(&["check"])).contains("HOOKS"));
}

#[test]
fn claim_modules_lists_the_drivers_the_hooks_add() {
    let t = tree();
    t.dropin(
        "50-variant.toml",
        &format!("[[device]]\naddress = \"{OTHER}\"\ndriver = \"mlx5_vfio_pci\"\n"),
    );
    let o = t.run(&["claim", "--modules"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // The variant driver, and vfio-pci for the members it does not take.
    assert_eq!(stdout(&o), "mlx5_vfio_pci\nvfio-pci\n");
    t.config("[[device]]\nadress = \"01:00.0\"\n");
    assert_eq!(t.run(&["claim", "--modules"]).status.code(), Some(2));
}
