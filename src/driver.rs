//! A PCI driver name as sysfs shows it (`/sys/bus/pci/drivers/<name>`, the basename of a
//! device's `driver` link, the content of `driver_override`), and what it means for VFIO.
//!
//! `Documentation/driver-api/vfio.rst`: a group is *viable* (usable through
//! `/dev/vfio/<group>`) when every member is bound to a vfio bus driver, to `pci-stub`, or
//! to no driver (bridges excepted). vfio bus drivers are `vfio-pci` and the vfio *variant*
//! drivers (`mlx5_vfio_pci`, `hisi_acc_vfio_pci`, `nvgrace_gpu_vfio_pci`...), each of which
//! binds only its own devices. Only a vfio bus driver makes the kernel create
//! `/dev/vfio/<group>`.

use std::fmt;
use std::sync::Arc;

/// The plain VFIO PCI driver's sysfs name (module `vfio_pci`).
pub const VFIO_PCI: &str = "vfio-pci";
/// The stub driver's sysfs name (module `pci_stub`): holds a device without using it.
pub const PCI_STUB: &str = "pci-stub";

/// A driver name, shared: a host has thousands of devices but a handful of drivers, so
/// each name is allocated once per snapshot and cloned cheaply.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Driver(Arc<str>);

impl Driver {
    /// A driver by its sysfs name (`vfio-pci`, `xhci_hcd`).
    pub fn new(name: &str) -> Self {
        Driver(Arc::from(name))
    }

    /// The sysfs name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for a vfio bus driver: `vfio-pci` or a vfio variant driver (kernel variant
    /// drivers are all named `*vfio*`, as their modules are `*_vfio_pci`).
    pub fn is_vfio(&self) -> bool {
        is_vfio(&self.0)
    }

    /// True when a member on this driver keeps its group viable for VFIO: a vfio bus
    /// driver, or `pci-stub`.
    pub fn keeps_viable(&self) -> bool {
        keeps_viable(&self.0)
    }

    /// True for a vfio variant driver (a vfio driver other than `vfio-pci`): it binds only
    /// the devices it was written for.
    pub fn is_variant(&self) -> bool {
        self.is_vfio() && &*self.0 != VFIO_PCI
    }

    /// The driver for group members no entry names, when the entry that brought the group
    /// in asks for `self`: the same driver, except that a variant driver gives way to
    /// plain `vfio-pci` (it would not take the other devices).
    pub fn for_companions(&self) -> Driver {
        if self.is_variant() {
            Driver::new(VFIO_PCI)
        } else {
            self.clone()
        }
    }
}

/// True for a name a PCI driver can have: 1 to 64 of `A-Za-z0-9_-` (what the kernel's
/// drivers use), so that a name read from outside can never be a path (`../..`) or carry
/// a newline into a sysfs write.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// [`Driver::is_vfio`] on a plain name.
pub fn is_vfio(name: &str) -> bool {
    name.contains("vfio")
}

/// [`Driver::keeps_viable`] on a plain name.
pub fn keeps_viable(name: &str) -> bool {
    is_vfio(name) || name == PCI_STUB
}

impl fmt::Display for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::ops::Deref for Driver {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Driver {
    fn from(s: &str) -> Self {
        Driver::new(s)
    }
}

/// Written as the plain name (the state file's `driver = "vfio-pci"`).
impl serde::Serialize for Driver {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// Read from a plain name; whether it is a valid one is the reader's check
/// ([`valid_name`]).
impl<'de> serde::Deserialize<'de> for Driver {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(Driver::new(&name))
    }
}

/// Shares one allocation per distinct name among many values read separately (the
/// records of a state file: thousands of devices, a handful of drivers).
#[derive(Debug, Default)]
pub struct Interner(Vec<Driver>);

impl Interner {
    /// `d`, or the equal name seen before.
    pub fn intern(&mut self, d: Driver) -> Driver {
        if let Some(seen) = self.0.iter().find(|s| **s == d) {
            return seen.clone();
        }
        self.0.push(d.clone());
        d
    }
}

impl PartialEq<str> for Driver {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        let v = Driver::new("vfio-pci");
        assert!(v.is_vfio() && v.keeps_viable() && !v.is_variant());
        let m = Driver::new("mlx5_vfio_pci");
        assert!(m.is_vfio() && m.is_variant());
        assert_eq!(m.for_companions(), v);
        let s = Driver::new("pci-stub");
        assert!(!s.is_vfio() && s.keeps_viable());
        assert_eq!(s.for_companions(), s);
        let e = Driver::new("e1000e");
        assert!(!e.is_vfio() && !e.keeps_viable());
    }
}
