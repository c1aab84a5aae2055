//! The host snapshot: everything vfio-bind needs from sysfs, read once into plain data.
//!
//! Every path goes through one [`Root`] handle, so `--root DIR` redirects all of them (a
//! generated tree in tests, an offline copy for inspection). This module only reads.
//!
//! Kernel sources for the layout:
//! - `Documentation/ABI/testing/sysfs-bus-pci`: `/sys/bus/pci/devices/<bdf>/{vendor,device,
//!   subsystem_vendor,subsystem_device,class,config,driver,driver_override,boot_vga}`;
//! - `Documentation/ABI/testing/sysfs-kernel-iommu_groups`: `/sys/kernel/iommu_groups/<n>/devices/`
//!   and the per-device `iommu_group` link.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::pci::{ClassCode, HeaderType, PciAddress, PciId};

/// The root that every absolute path the tool touches is taken under (`/` on a real host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    base: PathBuf,
}

impl Root {
    /// A root at `base`; `/` means the running host.
    pub fn new(base: impl Into<PathBuf>) -> Self {
        Root { base: base.into() }
    }

    /// The directory everything is taken under.
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// True when the root is the running host (`/`), where side effects beyond file
    /// writes (loading a kernel module) are allowed.
    pub fn is_host(&self) -> bool {
        self.base == Path::new("/")
    }

    /// Map an absolute host path (`/sys/bus/pci`) to its place under the root.
    pub fn path(&self, abs: impl AsRef<Path>) -> PathBuf {
        let abs = abs.as_ref();
        self.base.join(abs.strip_prefix("/").unwrap_or(abs))
    }

    /// `/sys/bus/pci/devices/<bdf>` under the root.
    pub fn device_dir(&self, addr: PciAddress) -> PathBuf {
        self.path(format!("/sys/bus/pci/devices/{addr}"))
    }

    /// `/sys/bus/pci/drivers/<driver>` under the root.
    pub fn driver_dir(&self, driver: &str) -> PathBuf {
        self.path(format!("/sys/bus/pci/drivers/{driver}"))
    }

    /// `/dev/vfio/<group>` under the root.
    pub fn vfio_node(&self, group: u32) -> PathBuf {
        self.path(format!("/dev/vfio/{group}"))
    }
}

/// A sysfs read that failed, with the file it was reading.
#[derive(Debug, Error)]
#[error("cannot read {}: {source}", path.display())]
pub struct ReadError {
    /// The file or directory (under the root).
    pub path: PathBuf,
    /// The underlying error (its errno).
    #[source]
    pub source: io::Error,
}

fn read_err(path: &Path) -> impl FnOnce(io::Error) -> ReadError + '_ {
    move |source| ReadError {
        path: path.to_path_buf(),
        source,
    }
}

/// A kernel driver name (`vfio-pci`), shared: a host has thousands of devices but a
/// handful of drivers, so each name is allocated once per snapshot.
pub type Name = std::sync::Arc<str>;

/// Hands out one shared [`Name`] per distinct string.
#[derive(Default)]
struct Interner(std::collections::HashMap<String, Name>);

impl Interner {
    fn get(&mut self, s: &str) -> Name {
        if let Some(n) = self.0.get(s) {
            return n.clone();
        }
        let n: Name = Name::from(s);
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
    /// Name of the bound driver (basename of the `driver` link), if any.
    pub driver: Option<Name>,
    /// Content of `driver_override`; `None` when it reads `(null)` or is empty.
    pub driver_override: Option<Name>,
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
    /// What the host uses beneath each device (filled by the caller from
    /// [`crate::inuse::read`]; empty after [`Host::read`]).
    pub uses: crate::inuse::Uses,
    /// What vfio-bind has bound (filled by the caller from [`crate::state::State::load`];
    /// empty after [`Host::read`]).
    pub state: crate::state::State,
}

impl Host {
    /// Read the snapshot under `root`.
    ///
    /// Errors: [`ReadError`] for a directory that cannot be listed or an attribute that
    /// cannot be read. A device that vanishes while being read (hot-unplug) is left out.
    /// A missing `/sys/kernel/iommu_groups` is not an error: it gives no groups (see
    /// [`Host::iommu_enabled`]).
    pub fn read(root: &Root) -> Result<Host, ReadError> {
        let mut host = Host::default();

        let devdir = root.path("/sys/bus/pci/devices");
        let mut names = Interner::default();
        // Iterated, not collected: on hosts with thousands of functions the listing
        // would be the biggest allocation of the run.
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
                    host.devices.insert(address, d);
                }
                Err(e) if e.source.kind() == io::ErrorKind::NotFound => {
                    log::debug!("{address} vanished while reading: {e}");
                }
                Err(e) => return Err(e),
            }
        }

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
                    Ok(a) if host.devices.contains_key(&a) => group.devices.push(a),
                    Ok(a) => log::debug!("group {number}: member {a} vanished"),
                    Err(_) => group.other.push(member),
                }
            }
            group.devices.sort();
            group.other.sort();
            host.groups.insert(number, group);
        }

        let drvdir = root.path("/sys/bus/pci/drivers");
        host.drivers = match list_dir(&drvdir) {
            Ok(n) => n.into_iter().collect(),
            Err(e) if e.source.kind() == io::ErrorKind::NotFound => BTreeSet::new(),
            Err(e) => return Err(e),
        };
        Ok(host)
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

/// Names in a directory, sorted (`.` and `..` excluded).
fn list_dir(dir: &Path) -> Result<Vec<String>, ReadError> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(read_err(dir))? {
        let entry = entry.map_err(read_err(dir))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// Read a small sysfs attribute: open, read until end of file, close. Unlike
/// `fs::read_to_string` no `statx` for a size hint (sysfs reports 4096 for every file):
/// the syscalls per attribute are what a snapshot of thousands of devices costs.
fn read_small(path: &Path) -> io::Result<String> {
    let mut f = fs::File::open(path)?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    loop {
        let n = f.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

fn read_attr(path: &Path) -> Result<String, ReadError> {
    read_small(path)
        .map(|s| s.trim().to_string())
        .map_err(read_err(path))
}

fn parse_hex(path: &Path, s: &str) -> Result<u32, ReadError> {
    u32::from_str_radix(s.trim_start_matches("0x"), 16).map_err(|_| ReadError {
        path: path.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidData, format!("not hex: {s:?}")),
    })
}

fn read_hex(path: &Path) -> Result<u32, ReadError> {
    let s = read_attr(path)?;
    parse_hex(path, &s)
}

/// Basename of a symlink's target, or `None` when the link does not exist.
fn link_name(path: &Path) -> Result<Option<String>, ReadError> {
    match fs::read_link(path) {
        Ok(t) => Ok(t.file_name().map(|n| n.to_string_lossy().into_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(read_err(path)(e)),
    }
}

/// The driver a device is bound to now (basename of `/sys/bus/pci/devices/<bdf>/driver`).
///
/// Errors: [`ReadError`] with `NotFound` when the device itself is gone.
pub fn current_driver(root: &Root, addr: PciAddress) -> Result<Option<String>, ReadError> {
    let dir = root.device_dir(addr);
    if !dir.exists() {
        return Err(read_err(&dir)(io::Error::from(io::ErrorKind::NotFound)));
    }
    link_name(&dir.join("driver"))
}

/// The content of `driver_override`, `None` for `(null)` or empty
/// (`Documentation/ABI/testing/sysfs-bus-pci`).
pub fn read_override(root: &Root, addr: PciAddress) -> Result<Option<String>, ReadError> {
    let path = root.device_dir(addr).join("driver_override");
    match read_small(&path) {
        Ok(s) => {
            let s = s.trim();
            Ok((!s.is_empty() && s != "(null)").then(|| s.to_string()))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(read_err(&path)(e)),
    }
}

fn read_device(
    root: &Root,
    address: PciAddress,
    names: &mut Interner,
) -> Result<Device, ReadError> {
    let dir = root.device_dir(address);
    let (id, subsystem, class) = match read_uevent(&dir)? {
        Some(ids) => ids,
        None => {
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
            (id, subsystem, ClassCode(read_hex(&dir.join("class"))?))
        }
    };
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
