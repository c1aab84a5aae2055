//! The configuration's types: what a validated [`Config`] holds, where each item came
//! from ([`Origin`]), and [`ConfigError`].

use std::fmt;
use std::io;
use std::path::PathBuf;

use thiserror::Error;

use crate::driver::Driver;
use crate::pci::{PciAddress, PciId};
use crate::text::escape;

/// Default main config file (taken under `--root`).
pub const DEFAULT_CONFIG: &str = "/etc/vfio-bind.toml";
/// Default drop-in directory (taken under `--root`); `*.toml` files merge in lexical order.
pub const DEFAULT_DROPIN_DIR: &str = "/etc/vfio-bind.d";
/// Driver used when the config names none.
pub const DEFAULT_DRIVER: &str = crate::driver::VFIO_PCI;

/// A configuration error. Displays as `file:line:column: message` (or `file: message`
/// where there is no position). Every such error exits 2 before the host is touched.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// A problem at a known place in a file.
    #[error("{}:{line}:{column}: {message}", escape(&file.display().to_string()))]
    At {
        /// The config file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column (in characters).
        column: usize,
        /// What is wrong and what is expected.
        message: String,
    },
    /// A problem with a whole file (or a combination of entries).
    #[error("{}: {message}", escape(&file.display().to_string()))]
    File {
        /// The config file.
        file: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The file exists but cannot be read.
    #[error("cannot read {}: {source}", escape(&file.display().to_string()))]
    Read {
        /// The config file.
        file: PathBuf,
        /// The I/O error (its errno).
        #[source]
        source: io::Error,
    },
}

impl ConfigError {
    /// An error at `origin`.
    pub fn at(origin: &Origin, message: impl Into<String>) -> Self {
        ConfigError::At {
            file: origin.file.clone(),
            line: origin.line,
            column: origin.column,
            message: message.into(),
        }
    }
}

/// Where a config item came from: file, 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The config file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = escape(&self.file.display().to_string());
        write!(f, "{file}:{}:{}", self.line, self.column)
    }
}

/// How an entry selects devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selector {
    /// One device by PCI address.
    Address(PciAddress),
    /// Every device with this vendor:device ID.
    Id(PciId),
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Address(a) => write!(f, "address {a}"),
            Selector::Id(i) => write!(f, "id {i}"),
        }
    }
}

/// A `user` or `group` value as written: a name, or a numeric id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameOrId {
    /// A numeric uid or gid (`993`, or the digit string `"993"`).
    Id(u32),
    /// A name, resolved through the user database only where the node is owned.
    Name(String),
}

/// A user or group for `/dev/vfio/<group>`, unresolved, with where it was written (so an
/// unknown name is reported at file:line:column when it is resolved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The value as configured.
    pub value: NameOrId,
    /// Where the value is.
    pub origin: Origin,
}

impl Principal {
    /// True when both name the same value as written (`"kvm"` and `"kvm"`, or `993` and
    /// `"993"`); where they came from does not matter.
    pub fn same(&self, other: &Principal) -> bool {
        self.value == other.value
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            NameOrId::Id(n) => write!(f, "{n}"),
            NameOrId::Name(s) => f.write_str(s),
        }
    }
}

/// Ownership to put on `/dev/vfio/<group>`; each part `None` leaves it as udev made it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ownership {
    /// Owner.
    pub user: Option<Principal>,
    /// Group.
    pub group: Option<Principal>,
    /// Permission bits (0..=0o7777).
    pub mode: Option<u32>,
}

impl Ownership {
    /// True when nothing is asked for.
    pub fn is_empty(&self) -> bool {
        self.user.is_none() && self.group.is_none() && self.mode.is_none()
    }
}

impl fmt::Display for Ownership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(u) = &self.user {
            parts.push(format!("owner {u}"));
        }
        if let Some(g) = &self.group {
            parts.push(format!("group {g}"));
        }
        if let Some(m) = self.mode {
            parts.push(format!("mode {m:04o}"));
        }
        if parts.is_empty() {
            f.write_str("ownership as udev made it")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// One validated `[[device]]` entry, with the defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// 1-based position among all entries after merging (main file first).
    pub index: usize,
    /// Where the entry's table starts.
    pub origin: Origin,
    /// Which devices it selects.
    pub selector: Selector,
    /// Narrows an `id` match to this subsystem vendor:device.
    pub subsystem: Option<PciId>,
    /// The driver to bind the matched devices (and their group) to.
    pub driver: Driver,
    /// Ownership for the group's `/dev/vfio/<group>`.
    pub ownership: Ownership,
    /// Permit binding the boot VGA device.
    pub allow_boot_vga: bool,
    /// Fail (exit 1) if nothing matches, instead of warning.
    pub required: bool,
}

/// One validated `[[vm]]` profile, with the defaults applied: what `attach`, `detach`
/// and the libvirt hook do for the libvirt domain `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmProfile {
    /// 1-based position among all profiles after merging (the `vm[N]` messages name).
    pub index: usize,
    /// Where the profile's table starts.
    pub origin: Origin,
    /// The libvirt domain name (1 to 255 bytes, no `/`).
    pub name: String,
    /// The devices, each with where it is written; `None`: the PCI `<hostdev>`s of the
    /// domain XML (libvirt passes it to the hook; `attach --xml FILE` reads it).
    pub devices: Option<Vec<(Selector, Origin)>>,
    /// Single-GPU console handover: stop the display manager and `stop_units`, unbind
    /// the framebuffer vtconsoles and the firmware framebuffer, unload `unload_modules`.
    /// Implies that the boot VGA device may be taken.
    pub handover: bool,
    /// Units stopped (when active) besides `display-manager.service`, in this order.
    pub stop_units: Vec<String>,
    /// Modules unloaded (when loaded) before binding, in this order.
    pub unload_modules: Vec<String>,
    /// The driver the devices go to (the top-level `driver` when absent).
    pub driver: Driver,
    /// Ownership for the groups' `/dev/vfio/<group>` (the top-level keys when absent).
    pub ownership: Ownership,
}

/// The merged, validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Files read, in merge order.
    pub files: Vec<PathBuf>,
    /// The top-level `driver` (default [`DEFAULT_DRIVER`]).
    pub driver: Driver,
    /// The top-level `user`, `group` and `mode` (applied to entries without their own).
    pub ownership: Ownership,
    /// Every entry, in merge order.
    pub entries: Vec<Entry>,
    /// Every `[[vm]]` profile, in merge order (names are unique).
    pub vms: Vec<VmProfile>,
    /// Every `user` and `group` value written in any file, with its key, in file order,
    /// including top-level values a later file overrides: each must resolve.
    pub principals: Vec<(&'static str, Principal)>,
}

impl Config {
    /// The `[[vm]]` profile of the libvirt domain `name`, if there is one.
    pub fn vm(&self, name: &str) -> Option<&VmProfile> {
        self.vms.iter().find(|v| v.name == name)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            files: Vec::new(),
            driver: Driver::new(DEFAULT_DRIVER),
            ownership: Ownership::default(),
            entries: Vec::new(),
            vms: Vec::new(),
            principals: Vec::new(),
        }
    }
}
