//! Vendor, device and class names from the distribution's PCI ID database (`pci.ids`,
//! from the `hwdata` or `pci.ids` package), read at run time through pciid-parser. Where
//! the database is absent, callers show IDs alone (and the built-in class names).

use crate::pci::{ClassCode, PciId};
use crate::sysfs::Root;

/// Where distributions install `pci.ids` (taken under the root): hwdata first, as lspci.
pub const PCI_IDS_PATHS: &[&str] = &["/usr/share/hwdata/pci.ids", "/usr/share/misc/pci.ids"];

/// The loaded database, or none.
pub struct Names {
    db: Option<pciid_parser::Database>,
}

impl Names {
    /// Load the first `pci.ids` found under `root`; a missing or unreadable file gives an
    /// empty database (names are a convenience, never a reason to fail).
    pub fn load(root: &Root) -> Names {
        for p in PCI_IDS_PATHS {
            let path = root.path(p);
            if !path.is_file() {
                continue;
            }
            match pciid_parser::Database::read_from_file(&path) {
                Ok(db) => return Names { db: Some(db) },
                Err(e) => log::debug!("cannot read {}: {e:?}", path.display()),
            }
        }
        Names { db: None }
    }

    /// No database at all.
    pub fn none() -> Names {
        Names { db: None }
    }

    /// Vendor name (`Red Hat, Inc.`).
    pub fn vendor(&self, id: PciId) -> Option<&str> {
        Some(self.db.as_ref()?.vendors.get(&id.vendor)?.name.as_str())
    }

    /// Device name (`QEMU XHCI Host Controller`).
    pub fn device(&self, id: PciId) -> Option<&str> {
        let v = self.db.as_ref()?.vendors.get(&id.vendor)?;
        Some(v.devices.get(&id.device)?.name.as_str())
    }

    /// `vendor device`, as lspci prints it, when the vendor is known.
    pub fn describe(&self, id: PciId) -> Option<String> {
        let v = self.vendor(id)?;
        Some(match self.device(id) {
            Some(d) => format!("{v} {d}"),
            None => format!("{v} Device {:04x}", id.device),
        })
    }

    /// Subclass name from the database (`USB controller`), else the built-in name.
    pub fn class(&self, class: ClassCode) -> String {
        self.db
            .as_ref()
            .and_then(|db| db.classes.get(&class.base()))
            .and_then(|c| c.subclasses.get(&class.sub()).map(|s| s.name.clone()))
            .unwrap_or_else(|| class.name())
    }
}
