//! The one path handle: every absolute path vfio-bind touches (`/sys`, `/proc`, `/dev`,
//! `/run`, `/etc`, `/usr/share`) is taken under a [`Root`], so `--root DIR` redirects all
//! of them (a generated tree in tests, an offline copy for inspection). It imports only [`crate::pci`],
//! itself a leaf.

use std::path::{Path, PathBuf};

use crate::pci::PciAddress;

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
    /// writes (loading a kernel module, asking udev to reload, the NSS user database)
    /// are allowed.
    pub fn is_host(&self) -> bool {
        self.base == Path::new("/")
    }

    /// Map an absolute host path (`/sys/bus/pci`) to its place under the root.
    pub fn path(&self, abs: impl AsRef<Path>) -> PathBuf {
        let abs = abs.as_ref();
        self.base.join(abs.strip_prefix("/").unwrap_or(abs))
    }

    /// `/sys/bus/pci/devices/<bdf>` under the root (`Documentation/ABI/testing/sysfs-bus-pci`).
    pub fn device_dir(&self, addr: PciAddress) -> PathBuf {
        self.path(format!("/sys/bus/pci/devices/{addr}"))
    }

    /// `/sys/bus/pci/drivers/<driver>` under the root.
    pub fn driver_dir(&self, driver: &str) -> PathBuf {
        self.path(format!("/sys/bus/pci/drivers/{driver}"))
    }

    /// `/dev/vfio/<group>` under the root (`Documentation/driver-api/vfio.rst`).
    pub fn vfio_node(&self, group: u32) -> PathBuf {
        self.path(format!("/dev/vfio/{group}"))
    }
}
