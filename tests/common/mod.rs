//! A generated sysfs tree under a temp directory, laid out as the kernel lays out the
//! real one (`/sys/devices/pci0000:00/<bdf>` with `/sys/bus/pci/devices/<bdf>`,
//! `driver` and `iommu_group` as relative symlinks), for running the real binary with
//! `--root`. Nothing reacts to writes here: it is for reading commands and no-op applies.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Tree {
    pub dir: tempfile::TempDir,
}

/// One device to create.
pub struct Dev<'a> {
    pub bdf: &'a str,
    pub id: &'a str,
    pub subsystem: &'a str,
    pub class: u32,
    pub header: u8,
    pub driver: Option<&'a str>,
    pub group: Option<u32>,
    /// Leave out `uevent` (as some generated or old trees do): IDs then come from the
    /// attribute files.
    pub no_uevent: bool,
}

pub fn dev<'a>(
    bdf: &'a str,
    id: &'a str,
    class: u32,
    driver: Option<&'a str>,
    group: u32,
) -> Dev<'a> {
    Dev {
        bdf,
        id,
        subsystem: "1af4:1100",
        class,
        header: if class >> 8 == 0x0604 { 0x01 } else { 0x00 },
        driver,
        group: Some(group),
        no_uevent: false,
    }
}

impl<'a> Dev<'a> {
    /// A device with no IOMMU group (the IOMMU is off).
    pub fn no_group(bdf: &'a str, id: &'a str, class: u32, driver: Option<&'a str>) -> Self {
        Dev {
            group: None,
            ..dev(bdf, id, class, driver, 0)
        }
    }
}

impl Tree {
    /// An empty host: the PCI bus with `drivers_probe`, no devices, no groups.
    pub fn new() -> Tree {
        let t = Tree {
            dir: tempfile::tempdir().unwrap(),
        };
        for d in [
            "sys/devices/pci0000:00",
            "sys/bus/pci/devices",
            "sys/bus/pci/drivers",
            "sys/kernel/iommu_groups",
            "dev/vfio",
            "etc",
            "run",
            "proc",
        ] {
            fs::create_dir_all(t.path(d)).unwrap();
        }
        fs::write(t.path("sys/bus/pci/drivers_probe"), "").unwrap();
        t
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Register a PCI driver (`/sys/bus/pci/drivers/<name>/{bind,unbind}`).
    pub fn driver(&self, name: &str) -> &Self {
        let d = self.path(&format!("sys/bus/pci/drivers/{name}"));
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("bind"), "").unwrap();
        fs::write(d.join("unbind"), "").unwrap();
        self
    }

    pub fn device(&self, d: Dev) -> &Self {
        let devdir = self.path(&format!("sys/devices/pci0000:00/{}", d.bdf));
        fs::create_dir_all(&devdir).unwrap();
        let (v, p) = d.id.split_once(':').unwrap();
        let (sv, sp) = d.subsystem.split_once(':').unwrap();
        fs::write(devdir.join("vendor"), format!("0x{v}\n")).unwrap();
        fs::write(devdir.join("device"), format!("0x{p}\n")).unwrap();
        fs::write(devdir.join("subsystem_vendor"), format!("0x{sv}\n")).unwrap();
        fs::write(devdir.join("subsystem_device"), format!("0x{sp}\n")).unwrap();
        fs::write(devdir.join("class"), format!("0x{:06x}\n", d.class)).unwrap();
        if !d.no_uevent {
            // As drivers/pci/pci-driver.c pci_uevent prints it.
            fs::write(
                devdir.join("uevent"),
                format!(
                    "PCI_CLASS={:X}\nPCI_ID={}:{}\nPCI_SUBSYS_ID={}:{}\nPCI_SLOT_NAME={}\n",
                    d.class,
                    v.to_uppercase(),
                    p.to_uppercase(),
                    sv.to_uppercase(),
                    sp.to_uppercase(),
                    d.bdf
                ),
            )
            .unwrap();
        }
        let mut config = vec![0u8; 64];
        config[0..2].copy_from_slice(&u16::from_str_radix(v, 16).unwrap().to_le_bytes());
        config[2..4].copy_from_slice(&u16::from_str_radix(p, 16).unwrap().to_le_bytes());
        config[0x0e] = d.header;
        fs::write(devdir.join("config"), config).unwrap();
        fs::write(devdir.join("driver_override"), "(null)\n").unwrap();
        if d.class >> 16 == 0x03 {
            fs::write(devdir.join("boot_vga"), "0\n").unwrap();
        }
        if let Some(drv) = d.driver {
            self.driver(drv);
            symlink(
                format!("../../../bus/pci/drivers/{drv}"),
                devdir.join("driver"),
            )
            .unwrap();
            symlink(
                format!("../../../../devices/pci0000:00/{}", d.bdf),
                self.path(&format!("sys/bus/pci/drivers/{drv}/{}", d.bdf)),
            )
            .unwrap();
        }
        symlink(
            format!("../../../devices/pci0000:00/{}", d.bdf),
            self.path(&format!("sys/bus/pci/devices/{}", d.bdf)),
        )
        .unwrap();
        if let Some(g) = d.group {
            let gdir = self.path(&format!("sys/kernel/iommu_groups/{g}/devices"));
            fs::create_dir_all(&gdir).unwrap();
            symlink(
                format!("../../../kernel/iommu_groups/{g}"),
                devdir.join("iommu_group"),
            )
            .unwrap();
            symlink(
                format!("../../../../devices/pci0000:00/{}", d.bdf),
                gdir.join(d.bdf),
            )
            .unwrap();
        }
        self
    }

    pub fn boot_vga(&self, bdf: &str) -> &Self {
        fs::write(
            self.path(&format!("sys/devices/pci0000:00/{bdf}/boot_vga")),
            "1\n",
        )
        .unwrap();
        self
    }

    pub fn set_override(&self, bdf: &str, drv: &str) -> &Self {
        fs::write(
            self.path(&format!("sys/devices/pci0000:00/{bdf}/driver_override")),
            format!("{drv}\n"),
        )
        .unwrap();
        self
    }

    /// A stand-in for `/dev/vfio/<group>` (a regular file; ownership and mode behave alike).
    pub fn node(&self, group: u32) -> &Self {
        fs::write(self.path(&format!("dev/vfio/{group}")), "").unwrap();
        self
    }

    /// A small `pci.ids` (the distribution's format) at /usr/share/misc/pci.ids.
    pub fn pci_ids(&self) -> &Self {
        let p = self.path("usr/share/misc/pci.ids");
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(
            p,
            "# test subset of pci.ids\n\
             1234  Technical Corp.\n\
             \t1111  QEMU Virtual Video Controller\n\
             1af4  Red Hat, Inc.\n\
             \t1042  Virtio 1.0 block device\n\
             1b36  Red Hat, Inc.\n\
             \t000c  QEMU PCIe Root port\n\
             \t000d  QEMU XHCI Host Controller\n\
             \t000e  QEMU PCIe-to-PCI bridge\n\
             8086  Intel Corporation\n\
             \t100e  82540EM Gigabit Ethernet Controller\n\
             \t10d3  82574L Gigabit Network Connection\n\
             \t2918  82801IB (ICH9) LPC Interface Controller\n\
             \t2922  82801IR/IO/IH (ICH9R/DO/DH) 6 port SATA Controller [AHCI mode]\n\
             \t2930  82801I (ICH9 Family) SMBus Controller\n\
             \t29c0  82G33/G31/P35/P31 Express DRAM Controller\n\
             C 01  Mass storage controller\n\
             \t00  SCSI storage controller\n\
             \t06  SATA controller\n\
             C 02  Network controller\n\
             \t00  Ethernet controller\n\
             C 03  Display controller\n\
             \t00  VGA compatible controller\n\
             C 06  Bridge\n\
             \t00  Host bridge\n\
             \t01  ISA bridge\n\
             \t04  PCI bridge\n\
             C 0c  Serial bus controller\n\
             \t03  USB controller\n\
             \t05  SMBus\n",
        )
        .unwrap();
        self
    }

    pub fn config(&self, text: &str) -> &Self {
        fs::write(self.path("etc/vfio-bind.toml"), text).unwrap();
        self
    }

    pub fn dropin(&self, name: &str, text: &str) -> &Self {
        fs::create_dir_all(self.path("etc/vfio-bind.d")).unwrap();
        fs::write(self.path(&format!("etc/vfio-bind.d/{name}")), text).unwrap();
        self
    }

    /// Run `vfio-bind --root <tree> ARGS...` with no journal and no notify socket.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_vfio-bind"))
            .arg("--root")
            .arg(self.root())
            .args(args)
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("VFIO_BIND_ROOT")
            .output()
            .unwrap()
    }

    /// Every file, link and directory under the root with its content, link target and
    /// mode: compared before and after a command to prove it wrote nothing (the run lock
    /// in /run/vfio-bind is left out).
    pub fn state(&self) -> BTreeMap<String, String> {
        use std::os::unix::fs::MetadataExt;
        let mut out = BTreeMap::new();
        let mut stack = vec![self.root().to_path_buf()];
        while let Some(p) = stack.pop() {
            for e in fs::read_dir(&p).unwrap() {
                let e = e.unwrap();
                let path = e.path();
                let rel = path
                    .strip_prefix(self.root())
                    .unwrap()
                    .display()
                    .to_string();
                // The run lock is created by every writing run, even one that ends up
                // changing nothing; it carries no host state.
                if rel == "run/vfio-bind/lock" {
                    continue;
                }
                if rel == "run/vfio-bind" {
                    stack.push(path.clone()); // its other files still count
                    continue;
                }
                let meta = fs::symlink_metadata(&path).unwrap();
                let v = if meta.file_type().is_symlink() {
                    format!("-> {}", fs::read_link(&path).unwrap().display())
                } else if meta.is_dir() {
                    stack.push(path.clone());
                    format!("dir {:o}", meta.mode())
                } else if !meta.is_file() {
                    // A FIFO, socket or device node: its type and mode (reading a FIFO
                    // would block).
                    format!("special {:o}", meta.mode())
                } else {
                    format!(
                        "{:o} {}:{} {:?}",
                        meta.mode(),
                        meta.uid(),
                        meta.gid(),
                        fs::read(&path).unwrap()
                    )
                };
                out.insert(rel, v);
            }
        }
        out
    }
}

/// The q35-like host of the real-kernel tests, as a generated tree: boot VGA alone;
/// xhci + e1000e functions of one slot in one group; a lone e1000e; a PCIe-to-PCI bridge
/// with two e1000 behind it; a virtio-blk disk; the host bridge and ICH9 functions.
pub fn q35() -> Tree {
    let t = Tree::new();
    t.device(dev("0000:00:00.0", "8086:29c0", 0x060000, None, 0))
        .device(dev("0000:00:01.0", "1234:1111", 0x030000, None, 1))
        .boot_vga("0000:00:01.0")
        .device(dev(
            "0000:00:02.0",
            "1b36:000c",
            0x060400,
            Some("pcieport"),
            2,
        ))
        .device(dev(
            "0000:00:1f.0",
            "8086:2918",
            0x060100,
            Some("lpc_ich"),
            6,
        ))
        .device(dev("0000:00:1f.2", "8086:2922", 0x010601, Some("ahci"), 6))
        .device(dev(
            "0000:00:1f.3",
            "8086:2930",
            0x0c0500,
            Some("i801_smbus"),
            6,
        ))
        .device(dev(
            "0000:01:00.0",
            "1b36:000d",
            0x0c0330,
            Some("xhci_hcd"),
            7,
        ))
        .device(dev(
            "0000:01:00.1",
            "8086:10d3",
            0x020000,
            Some("e1000e"),
            7,
        ))
        .device(dev(
            "0000:02:00.0",
            "8086:10d3",
            0x020000,
            Some("e1000e"),
            8,
        ))
        .device(dev("0000:03:00.0", "1b36:000e", 0x060400, None, 9))
        .device(dev("0000:04:01.0", "8086:100e", 0x020000, Some("e1000"), 9))
        .device(dev("0000:04:02.0", "8086:100e", 0x020000, Some("e1000"), 9))
        .device(dev(
            "0000:05:00.0",
            "1af4:1042",
            0x010000,
            Some("virtio-pci"),
            10,
        ));
    t
}
pub mod fakekernel;
