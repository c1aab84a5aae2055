//! From the guides to vfio-bind, on generated roots: `doctor`'s kernel command line fix
//! for each bootloader layout, the guides' leftovers it names (with file, line and what to
//! do), and `import` turning them into config entries. The messages are snapshot-tested
//! (tests/snapshots/guides__*.snap, insta): each case's exact text. The real-kernel proof
//! is tests/vm/scenarios/leftovers.sh.

mod common;

use std::fs;
use std::time::{Duration, SystemTime};

use common::{q35, Tree};

fn write(t: &Tree, rel: &str, text: &str) {
    let p = t.path(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

fn exe(t: &Tree, rel: &str) {
    write(t, rel, "#!/bin/sh\n");
    fs::set_permissions(
        t.path(rel),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
}

/// doctor's findings for `check`, each on one line with its fix (the 80-column wrapping
/// undone).
fn findings(t: &Tree, check: &str) -> String {
    let o = t.run(&["doctor"]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let mut all: Vec<String> = Vec::new();
    for l in out.lines() {
        if l.starts_with('[') {
            all.push(l.to_string());
        } else if let Some(last) = all.last_mut() {
            if !l.trim().is_empty() {
                last.push(' ');
                last.push_str(l.trim());
            }
        }
    }
    let root = t.root().display().to_string();
    all.into_iter()
        .filter(|f| f.contains(&format!("] {check}: ")))
        .map(|f| f.replace(&root, "ROOT"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// What systemd-boot boots with: no BOOT_IMAGE= (GRUB's mark).
fn systemd_boot(t: &Tree) {
    write(
        t,
        "proc/cmdline",
        "initrd=\\EFI\\linux\\initrd root=UUID=1234 rw quiet\n",
    );
}

/// An Intel host whose IOMMU is off and whose kernel command line has no IOMMU option.
fn intel_off(t: &Tree) {
    write(
        t,
        "proc/cpuinfo",
        "vendor_id\t: GenuineIntel\nflags\t\t: vmx\n",
    );
    write(
        t,
        "proc/cmdline",
        "BOOT_IMAGE=/vmlinuz root=/dev/sda1 quiet\n",
    );
}

#[test]
fn doctor_prints_the_command_line_fix_for_each_bootloader() {
    type Layout = fn(&Tree);
    let layouts: [(&str, Layout); 12] = [
        ("Debian/Ubuntu GRUB", |t| {
            write(
                t,
                "etc/default/grub",
                "GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\nGRUB_CMDLINE_LINUX=\"\"\n",
            );
            exe(t, "usr/sbin/update-grub");
        }),
        ("Arch GRUB", |t| {
            write(t, "etc/default/grub", "GRUB_CMDLINE_LINUX=\"loglevel=3\"\n");
        }),
        ("openSUSE GRUB 2", |t| {
            write(
                t,
                "etc/default/grub",
                "GRUB_CMDLINE_LINUX_DEFAULT='splash=silent quiet'\n",
            );
            exe(t, "usr/sbin/grub2-mkconfig");
        }),
        ("Fedora/RHEL (grubby)", |t| {
            write(t, "etc/default/grub", "GRUB_CMDLINE_LINUX=\"rhgb quiet\"\n");
            exe(t, "usr/sbin/grubby");
            exe(t, "usr/sbin/grub2-mkconfig");
        }),
        ("systemd-boot with kernel-install", |t| {
            systemd_boot(t);
            write(t, "etc/kernel/cmdline", "root=UUID=1234 rw quiet\n");
            write(t, "boot/loader/entries/a.conf", "options root=UUID=1234\n");
        }),
        ("systemd-boot, entries by hand", |t| {
            systemd_boot(t);
            write(
                t,
                "boot/loader/entries/arch.conf",
                "title Arch\noptions root=/dev/sda2 rw\n",
            );
        }),
        ("Proxmox VE, systemd-boot", |t| {
            systemd_boot(t);
            write(t, "etc/kernel/proxmox-boot-uuids", "1234-5678\n");
            write(
                t,
                "etc/kernel/cmdline",
                "root=ZFS=rpool/ROOT/pve-1 boot=zfs\n",
            );
            write(
                t,
                "etc/default/grub",
                "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\n",
            );
        }),
        ("Proxmox VE, GRUB", |t| {
            write(t, "etc/kernel/proxmox-boot-uuids", "1234-5678\n");
            write(
                t,
                "etc/default/grub",
                "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\n",
            );
            exe(t, "usr/sbin/update-grub");
        }),
        ("Debian with kernel-install's files, booted by GRUB", |t| {
            write(t, "etc/kernel/cmdline", "root=UUID=1234 ro\n");
            write(
                t,
                "etc/default/grub",
                "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet splash\" # the installer's\n",
            );
            exe(t, "usr/sbin/update-grub");
        }),
        ("Pop!_OS (kernelstub)", |t| {
            write(t, "etc/kernelstub/configuration", "{}\n");
            write(
                t,
                "etc/default/grub",
                "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\n",
            );
        }),
        ("AMD with amd_iommu=off, GRUB", |t| {
            write(
                t,
                "proc/cpuinfo",
                "vendor_id\t: AuthenticAMD\nflags\t\t: svm\n",
            );
            write(
                t,
                "proc/cmdline",
                "BOOT_IMAGE=/vmlinuz root=/dev/sda1 amd_iommu=off\n",
            );
            write(
                t,
                "etc/default/grub",
                "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet amd_iommu=off\"\n",
            );
            exe(t, "usr/sbin/update-grub");
        }),
        ("unknown", |_| {}),
    ];
    let mut snap = String::new();
    for (name, layout) in layouts {
        let t = Tree::new();
        intel_off(&t);
        layout(&t);
        snap.push_str(&format!(
            "== {name}\n{}\n",
            findings(&t, "kernel command line")
        ));
    }
    // IOMMU on, iommu=pt missing: the option, with the same layouts' command.
    let t = q35();
    write(
        &t,
        "proc/cpuinfo",
        "vendor_id\t: GenuineIntel\nflags\t\t: vmx\n",
    );
    write(&t, "proc/cmdline", "BOOT_IMAGE=/vmlinuz intel_iommu=on\n");
    exe(&t, "usr/sbin/grubby");
    snap.push_str(&format!(
        "== IOMMU on, Fedora\n{}\n",
        findings(&t, "kernel command line")
    ));
    insta::assert_snapshot!("bootloaders", snap);
}

/// A q35 host after a guide: modprobe options, a module list, a hand-made unit and
/// script, a libvirt hook tree, an initramfs built before the last modprobe.d change.
/// The config binds 02:00.0 (an e1000e, 8086:10d3).
fn guided() -> Tree {
    let t = q35();
    t.config("[[device]]\naddress = \"02:00.0\"\n");
    write(&t, "proc/sys/kernel/osrelease", "6.12.0-test\n");
    write(
        &t,
        "lib/modules/6.12.0-test/modules.dep",
        "kernel/drivers/vfio/vfio.ko:\nkernel/drivers/vfio/vfio_iommu_type1.ko: kernel/drivers/vfio/vfio.ko\nkernel/drivers/vfio/pci/vfio-pci.ko: kernel/drivers/vfio/vfio.ko\n",
    );
    write(
        &t,
        "lib/modules/6.12.0-test/modules.alias",
        "alias pci:v00001234d00001111sv*sd*bc03sc00i00 bochs\nalias pci:v00008086d000010D3sv*sd*bc*sc*i* e1000e\n",
    );
    write(
        &t,
        "sys/devices/pci0000:00/0000:00:01.0/modalias",
        "pci:v00001234d00001111sv00001AF4sd00001100bc03sc00i00\n",
    );
    write(
        &t,
        "etc/modprobe.d/vfio.conf",
        "# from the guide\noptions vfio-pci ids=8086:10d3,1b36:000d disable_vga=1\nsoftdep xhci_pci pre: vfio-pci\nblacklist bochs\nblacklist nouveau\nblacklist nvidiafb\n",
    );
    write(
        &t,
        "etc/modules-load.d/vfio.conf",
        "vfio\nvfio_iommu_type1\nvfio_pci\nvfio_virqfd\n",
    );
    write(
        &t,
        "etc/initramfs-tools/modules",
        "# a Proxmox guide\nvfio\nvfio_virqfd\nvfio-pci ids=8086:100e\n",
    );
    write(
        &t,
        "etc/systemd/system/vfio-pci-override.service",
        "[Service]\nType=oneshot\nExecStart=/usr/local/bin/vfio-pci-override.sh\n",
    );
    write(
        &t,
        "usr/local/bin/vfio-pci-override.sh",
        "#!/bin/sh\nDEVS=\"0000:02:00.0 0000:04:01.0\"\nfor DEV in $DEVS; do\n  echo vfio-pci > /sys/bus/pci/devices/$DEV/driver_override\ndone\nmodprobe -i vfio-pci\nchmod 666 /dev/vfio/*\n",
    );
    write(
        &t,
        "etc/libvirt/hooks/qemu.d/win10/prepare/begin/start.sh",
        "#!/bin/bash\nsystemctl stop display-manager\necho 0 > /sys/class/vtconsole/vtcon0/bind\nvirsh nodedev-detach pci_0000_05_00_0\n",
    );
    exe(&t, "usr/sbin/mkinitramfs");
    write(&t, "boot/initrd.img-6.12.0-test", "");
    let old = SystemTime::now() - Duration::from_secs(3600);
    fs::File::options()
        .write(true)
        .open(t.path("boot/initrd.img-6.12.0-test"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    t
}

#[test]
fn doctor_names_each_leftover_with_file_line_and_fix() {
    let t = guided();
    insta::assert_snapshot!("leftovers", findings(&t, "leftover"));
    // The control: a host without the guide's files has none.
    let clean = q35();
    clean.config("[[device]]\naddress = \"02:00.0\"\n");
    assert_eq!(
        findings(&clean, "leftover"),
        "[ ok ] leftover: no guide leftovers in modprobe.d, module lists, units or scripts"
    );
}

#[test]
fn import_turns_leftovers_into_entries_and_never_edits_what_it_read() {
    let t = guided();
    let before = t.state();
    let o = t.run(&["import"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(t.state(), before, "import without --write writes nothing");
    let stderr =
        String::from_utf8_lossy(&o.stderr).replace(&t.root().display().to_string(), "ROOT");
    insta::assert_snapshot!(
        "import",
        format!(
            "{}\n-- stderr\n{stderr}",
            String::from_utf8_lossy(&o.stdout)
        )
    );
    let o = t.run(&["import", "--write"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let dropin = fs::read_to_string(t.path("etc/vfio-bind.d/50-imported.toml")).unwrap();
    assert!(
        dropin.contains("id = \"1b36:000d\"") && dropin.contains("name = \"win10\""),
        "{dropin}"
    );
    for f in [
        "etc/modprobe.d/vfio.conf",
        "usr/local/bin/vfio-pci-override.sh",
        "etc/vfio-bind.toml",
    ] {
        assert_eq!(before.get(f), t.state().get(f), "{f} was edited");
    }
    // check reads the result; a second import finds nothing left, and never replaces
    // the drop-in.
    let o = t.run(&["check"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("0000:01:00.0 [1b36:000d] USB controller: xhci_hcd -> vfio-pci  (device[2])")
            && out.contains(
                "0000:04:01.0 [8086:100e] Ethernet controller: e1000 -> vfio-pci  (device[3])"
            ),
        "{out}"
    );
    assert!(
        out.contains("VM win10: IOMMU group 10 bound while it runs, with console handover"),
        "{out}"
    );
    let o = t.run(&["import"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).matches("[[").count(), 0);
    let o = t.run(&["import", "--write"]);
    assert_eq!(o.status.code(), Some(0));
    let o = t.run(&["emit", "qemu", "win10"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("host=0000:05:00.0"));
    // Now the ids= line is two owners for both IDs.
    let f = findings(&t, "leftover");
    assert!(
        f.contains("binds every 1b36:000d device, which the config binds too"),
        "{f}"
    );
}

#[test]
fn import_never_makes_a_vm_hook_or_the_boot_vga_a_boot_time_entry() {
    let t = q35();
    t.config("");
    // The single-file hook dispatcher of a single-GPU guide (the VM is not in the path),
    // and a binding script that also takes the boot VGA.
    write(
        &t,
        "etc/libvirt/hooks/qemu",
        "#!/bin/bash\nif [ \"$1\" = win10 ] && [ \"$2\" = prepare ]; then\n  virsh nodedev-detach pci_0000_00_01_0\n  virsh nodedev-detach pci_0000_02_00_0\nfi\n",
    );
    write(
        &t,
        "usr/local/sbin/vfio.sh",
        "#!/bin/sh\nfor d in 0000:00:01.0 0000:04:01.0; do echo vfio-pci > /sys/bus/pci/devices/$d/driver_override; done\n",
    );
    let o = t.run(&["import"]);
    assert_eq!(o.status.code(), Some(0));
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !out.contains("00:01.0") && !out.contains("02:00.0"),
        "{out}"
    );
    assert!(out.contains("address = \"0000:04:01.0\""), "{out}");
    assert!(
        err.contains(
            "/etc/libvirt/hooks/qemu:3: a libvirt hook detaches 0000:02:00.0; not imported"
        ) && !err.contains("/etc/libvirt/hooks/qemu:3  (nodedev-detach)"),
        "{err}"
    );
}
