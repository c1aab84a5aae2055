//! The host snapshot: the PCI devices, IOMMU groups and PCI drivers, read once into plain
//! data. What the host uses beneath its devices ([`crate::host::usage`]) and vfio-bind's
//! own record ([`crate::state`]) are separate inputs, read by the caller.
//!
//! Kernel sources for the layout:
//! - `Documentation/ABI/testing/sysfs-bus-pci`: `/sys/bus/pci/devices/<bdf>/{vendor,device,
//!   subsystem_vendor,subsystem_device,class,config,driver,driver_override,boot_vga}`;
//! - `Documentation/ABI/testing/sysfs-kernel-iommu_groups`: `/sys/kernel/iommu_groups/<n>/devices/`
//!   and the per-device `iommu_group` link.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::{self, Read};
use std::path::Path;

use crate::driver::Driver;
use crate::host::sysfs::{
    link_name, list_dir, parse_hex, read_attr, read_err, read_hex, read_override, read_small,
    ReadError,
};
use crate::pci::{ClassCode, HeaderType, PciAddress, PciId};
use crate::root::Root;

/// Hands out one shared [`Driver`] per distinct name.
#[derive(Default)]
struct Interner(HashMap<String, Driver>);

impl Interner {
    fn get(&mut self, s: &str) -> Driver {
        if let Some(n) = self.0.get(s) {
            return n.clone();
        }
        let n = Driver::new(s);
        self.0.insert(s.to_string(), n.clone());
        n
    }
}

/// One PCI device as sysfs shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Its PCI address (the name of its sysfs directory).
    pub address: PciAddress,
    /// Vendor:device ID (`vendor`, `device`).
    pub id: PciId,
    /// Subsystem vendor:device (`subsystem_vendor`, `subsystem_device`), when present.
    pub subsystem: Option<PciId>,
    /// Class code (`class`).
    pub class: ClassCode,
    /// Header type from config-space byte 0x0e.
    pub header: HeaderType,
    /// The bound driver (basename of the `driver` link), if any.
    pub driver: Option<Driver>,
    /// Content of `driver_override`; `None` when it reads `(null)` or is empty.
    pub driver_override: Option<Driver>,
    /// IOMMU group number (basename of the `iommu_group` link), if any.
    pub iommu_group: Option<u32>,
    /// `boot_vga` reads 1: the firmware's boot display device.
    pub boot_vga: bool,
}

impl Device {
    /// True for PCI header types 1 and 2 (never touched by vfio-bind).
    pub fn is_bridge(&self) -> bool {
        self.header.is_bridge()
    }
}

/// An IOMMU group: the smallest set of devices the IOMMU can isolate
/// (`Documentation/driver-api/vfio.rst`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IommuGroup {
    /// The group number (`/sys/kernel/iommu_groups/<n>`).
    pub number: u32,
    /// PCI members, sorted by address.
    pub devices: Vec<PciAddress>,
    /// Members that are not PCI devices (names as listed); vfio-bind cannot make such a
    /// group viable.
    pub other: Vec<String>,
}

/// A snapshot of the host's PCI devices, IOMMU groups and PCI drivers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Host {
    /// Every device under `/sys/bus/pci/devices`, by address.
    pub devices: BTreeMap<PciAddress, Device>,
    /// Every group under `/sys/kernel/iommu_groups`, by number.
    pub groups: BTreeMap<u32, IommuGroup>,
    /// Names of the PCI drivers registered (`/sys/bus/pci/drivers/*`).
    pub drivers: BTreeSet<String>,
}

impl Host {
    /// Read the snapshot under `root`.
    ///
    /// Errors: [`ReadError`] for a directory that cannot be listed or an attribute that
    /// cannot be read. A device that vanishes while being read (hot-unplug) is left out.
    /// A missing `/sys/kernel/iommu_groups` is not an error: it gives no groups (see
    /// [`Host::iommu_enabled`]).
    pub fn read(root: &Root) -> Result<Host, ReadError> {
        Host {
            devices: read_devices(root)?,
            groups: BTreeMap::new(),
            drivers: read_drivers(root)?,
        }
        .with_groups(root)
    }

    fn with_groups(mut self, root: &Root) -> Result<Host, ReadError> {
        let groupdir = root.path("/sys/kernel/iommu_groups");
        let names = match list_dir(&groupdir) {
            Ok(n) => n,
            Err(e) if e.source.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        for name in names {
            let Ok(number) = name.parse::<u32>() else {
                continue;
            };
            let mut group = IommuGroup {
                number,
                devices: Vec::new(),
                other: Vec::new(),
            };
            for member in list_dir(&groupdir.join(&name).join("devices"))? {
                match member.parse::<PciAddress>() {
                    Ok(a) if self.devices.contains_key(&a) => group.devices.push(a),
                    Ok(a) => log::debug!("group {number}: member {a} vanished"),
                    Err(_) => group.other.push(member),
                }
            }
            group.devices.sort();
            group.other.sort();
            self.groups.insert(number, group);
        }
        Ok(self)
    }

    /// True when the kernel exposes IOMMU groups (the IOMMU is on). Without groups, VFIO
    /// cannot bind anything.
    pub fn iommu_enabled(&self) -> bool {
        !self.groups.is_empty()
    }

    /// The group a device is in, if any.
    pub fn group_of(&self, addr: PciAddress) -> Option<&IommuGroup> {
        let n = self.devices.get(&addr)?.iommu_group?;
        self.groups.get(&n)
    }
}

fn read_devices(root: &Root) -> Result<BTreeMap<PciAddress, Device>, ReadError> {
    let mut devices = BTreeMap::new();
    let devdir = root.path("/sys/bus/pci/devices");
    let mut names = Interner::default();
    // Iterated, not collected: on hosts with thousands of functions the listing would be
    // the biggest allocation of the run.
    for entry in fs::read_dir(&devdir).map_err(read_err(&devdir))? {
        let entry = entry.map_err(read_err(&devdir))?;
        let Some(address) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<PciAddress>().ok())
        else {
            continue;
        };
        match read_device(root, address, &mut names) {
            Ok(d) => {
                devices.insert(address, d);
            }
            Err(e) if e.source.kind() == io::ErrorKind::NotFound => {
                log::debug!("{address} vanished while reading: {e}");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(devices)
}

fn read_drivers(root: &Root) -> Result<BTreeSet<String>, ReadError> {
    let drvdir = root.path("/sys/bus/pci/drivers");
    match list_dir(&drvdir) {
        Ok(n) => Ok(n.into_iter().collect()),
        Err(e) if e.source.kind() == io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(e) => Err(e),
    }
}

/// IDs and class: from `uevent` when it has them, else from the attribute files.
fn read_ids(dir: &Path) -> Result<(PciId, Option<PciId>, ClassCode), ReadError> {
    if let Some(ids) = read_uevent(dir)? {
        return Ok(ids);
    }
    let id = PciId {
        vendor: read_hex(&dir.join("vendor"))? as u16,
        device: read_hex(&dir.join("device"))? as u16,
    };
    let subsystem = match (
        read_attr(&dir.join("subsystem_vendor")),
        read_attr(&dir.join("subsystem_device")),
    ) {
        (Ok(v), Ok(d)) => Some(PciId {
            vendor: parse_hex(&dir.join("subsystem_vendor"), &v)? as u16,
            device: parse_hex(&dir.join("subsystem_device"), &d)? as u16,
        }),
        _ => None,
    };
    Ok((id, subsystem, ClassCode(read_hex(&dir.join("class"))?)))
}

fn read_device(
    root: &Root,
    address: PciAddress,
    names: &mut Interner,
) -> Result<Device, ReadError> {
    let dir = root.device_dir(address);
    let (id, subsystem, class) = read_ids(&dir)?;
    let header = read_header_type(&dir.join("config"), class)?;
    // The kernel creates boot_vga for display-class devices only.
    let boot_vga =
        class.base() == 0x03 && read_small(&dir.join("boot_vga")).is_ok_and(|s| s.trim() == "1");
    let iommu_group = link_name(&dir.join("iommu_group"))?.and_then(|n| n.parse().ok());
    Ok(Device {
        address,
        id,
        subsystem,
        class,
        header,
        driver: link_name(&dir.join("driver"))?.map(|d| names.get(&d)),
        driver_override: read_override(root, address)?.map(|d| names.get(&d)),
        iommu_group,
        boot_vga,
    })
}

/// IDs and class from the device's `uevent` (drivers/pci/pci-driver.c `pci_uevent`:
/// `PCI_CLASS=%04X`, `PCI_ID=%04X:%04X`, `PCI_SUBSYS_ID=%04X:%04X`): one read instead of
/// five attribute files, with the kernel's own values (a virtual function's config space
/// reads 0xffff for its IDs; these are right). `None` when the file lacks them.
fn read_uevent(dir: &Path) -> Result<Option<(PciId, Option<PciId>, ClassCode)>, ReadError> {
    let path = dir.join("uevent");
    let text = match read_small(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_err(&path)(e)),
    };
    let field = |k: &str| text.lines().find_map(|l| l.strip_prefix(k));
    let pair = |v: &str| -> Option<PciId> {
        let (a, b) = v.split_once(':')?;
        Some(PciId {
            vendor: u16::from_str_radix(a, 16).ok()?,
            device: u16::from_str_radix(b, 16).ok()?,
        })
    };
    let (Some(id), Some(class)) = (
        field("PCI_ID=").and_then(pair),
        field("PCI_CLASS=").and_then(|c| u32::from_str_radix(c, 16).ok()),
    ) else {
        return Ok(None);
    };
    Ok(Some((
        id,
        field("PCI_SUBSYS_ID=").and_then(pair),
        ClassCode(class),
    )))
}

/// Header type from config-space byte 0x0e. Unprivileged readers and every reader see at
/// least the first 64 bytes of `config`. When the file is absent or short, fall back to
/// the class code (0x0604 PCI bridge, 0x0607 CardBus bridge).
fn read_header_type(path: &Path, class: ClassCode) -> Result<HeaderType, ReadError> {
    let mut buf = [0u8; 0x0f];
    let from_class = || match class.class_id() {
        0x0604 => HeaderType::PciBridge,
        0x0607 => HeaderType::CardBusBridge,
        _ => HeaderType::Normal,
    };
    let mut f = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(from_class()),
        Err(e) => return Err(read_err(path)(e)),
    };
    match f.read_exact(&mut buf) {
        Ok(()) => Ok(HeaderType::from_config_byte(buf[0x0e])),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(from_class()),
        Err(e) => Err(read_err(path)(e)),
    }
}
