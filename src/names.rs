//! Vendor, device and class names from the distribution's PCI ID database (`pci.ids`,
//! from the `hwdata` or `pci.ids` package), read at run time through pciid-parser. Where
//! the database is absent, callers show IDs alone (and the built-in class names).

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, BufRead};

use crate::pci::{ClassCode, PciId};
use crate::root::Root;

/// Where distributions install `pci.ids` (taken under the root): hwdata first, as lspci.
pub const PCI_IDS_PATHS: &[&str] = &["/usr/share/hwdata/pci.ids", "/usr/share/misc/pci.ids"];

/// The loaded database, or none.
pub struct Names {
    db: Option<pciid_parser::Database>,
}

impl Names {
    /// Load the names of the given IDs from the first `pci.ids` found under `root`; a
    /// missing or unreadable file gives an empty database (names are a convenience, never
    /// a reason to fail).
    ///
    /// The file (1.3 MB, some 40 000 entries) is streamed, and only the lines of the wanted
    /// vendors and devices and the class section are handed to pciid-parser, which does
    /// the parsing: the whole database would cost 5 MB of memory and 20 ms per run.
    pub fn load(root: &Root, wanted: impl IntoIterator<Item = PciId>) -> Names {
        let wanted: BTreeSet<PciId> = wanted.into_iter().collect();
        for p in PCI_IDS_PATHS {
            let path = root.path(p);
            let Ok(file) = fs::File::open(&path) else {
                continue;
            };
            let text = match filter(io::BufReader::new(file), &wanted) {
                Ok(t) => t,
                Err(e) => {
                    log::debug!("cannot read {}: {e}", path.display());
                    continue;
                }
            };
            match pciid_parser::Database::parse_db(text.as_bytes()) {
                Ok(db) => return Names { db: Some(db) },
                Err(e) => log::debug!("cannot parse {}: {e:?}", path.display()),
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

/// The lines of a pci.ids stream that matter for `wanted`: each wanted vendor's line and
/// its wanted devices' lines (subsystem lines dropped), and the whole class section
/// (`C xx` onwards). Comments and everything else are skipped. Line classification only;
/// the parsing is pciid-parser's.
fn filter(reader: impl BufRead, wanted: &BTreeSet<PciId>) -> io::Result<String> {
    let vendors: BTreeSet<u16> = wanted.iter().map(|i| i.vendor).collect();
    let hex4 = |s: &str| s.get(..4).and_then(|h| u16::from_str_radix(h, 16).ok());
    let mut out = String::new();
    let mut vendor: Option<u16> = None;
    let mut classes = false;
    for line in reader.lines() {
        let line = line?;
        if classes {
            out.push_str(&line);
            out.push('\n');
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if line.starts_with("C ") {
            classes = true;
            out.push_str(&line);
            out.push('\n');
        } else if let Some(rest) = line.strip_prefix("\t\t") {
            let _ = rest; // subsystem names are not shown
        } else if let Some(rest) = line.strip_prefix('\t') {
            let keep = match (vendor, hex4(rest)) {
                (Some(v), Some(d)) => wanted.contains(&PciId {
                    vendor: v,
                    device: d,
                }),
                _ => false,
            };
            if keep {
                out.push_str(&line);
                out.push('\n');
            }
        } else {
            vendor = hex4(&line).filter(|v| vendors.contains(v));
            if vendor.is_some() {
                out.push_str(&line);
                out.push('\n');
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDS: &str = "# comment\n\
        1af4  Red Hat, Inc.\n\
        \t1041  Virtio 1.0 network device\n\
        \t1042  Virtio 1.0 block device\n\
        \t\t1af4 1100  QEMU\n\
        8086  Intel Corporation\n\
        \t10d3  82574L Gigabit Network Connection\n\
        C 01  Mass storage controller\n\
        \t00  SCSI storage controller\n\
        C 02  Network controller\n\
        \t00  Ethernet controller\n";

    #[test]
    fn filtered_database_names_the_wanted_ids_only() {
        let want: BTreeSet<PciId> = ["1af4:1042".parse().unwrap()].into_iter().collect();
        let text = filter(IDS.as_bytes(), &want).unwrap();
        assert!(
            !text.contains("8086") && !text.contains("1041") && !text.contains("1100"),
            "{text}"
        );
        let names = Names {
            db: Some(pciid_parser::Database::parse_db(text.as_bytes()).unwrap()),
        };
        let id: PciId = "1af4:1042".parse().unwrap();
        assert_eq!(
            names.describe(id).unwrap(),
            "Red Hat, Inc. Virtio 1.0 block device"
        );
        assert_eq!(names.class(ClassCode(0x020000)), "Ethernet controller");
        assert_eq!(names.vendor("8086:10d3".parse().unwrap()), None);
    }
}
