//! Selecting devices and groups from entries: which devices each entry matches, which
//! entry names each device (the first; two drivers for one device is an error), and which
//! entries bring each IOMMU group in. Entries that match nothing, bridges named directly
//! and devices without a group become [`Problem`]s.

use std::collections::BTreeMap;

use crate::config::{Config, Entry, Selector};
use crate::host::snapshot::{Device, Host};
use crate::pci::PciAddress;
use crate::plan::model::{PlanError, Problem};

/// What the entries select on a host.
#[derive(Debug, Default)]
pub struct Selection<'c> {
    /// Each selected device with the first entry that names it.
    pub devices: BTreeMap<PciAddress, &'c Entry>,
    /// Each IOMMU group with the entries that select into it, in entry order.
    pub groups: BTreeMap<u32, Vec<&'c Entry>>,
    /// Entries that matched nothing, bridges named directly, devices with no group.
    pub problems: Vec<Problem>,
}

/// True when `entry` selects `dev`.
pub fn matches(entry: &Entry, dev: &Device) -> bool {
    match entry.selector {
        Selector::Address(a) => dev.address == a,
        Selector::Id(id) => {
            dev.id == id && entry.subsystem.is_none_or(|s| dev.subsystem == Some(s))
        }
    }
}

fn problem(entry: &Entry, message: String, error: bool) -> Problem {
    Problem {
        entry: entry.index,
        origin: entry.origin.clone(),
        message,
        error,
    }
}

/// Select on `host` what `config` names.
///
/// Errors: [`PlanError`] when two entries ask for different drivers for one device.
pub fn select<'c>(config: &'c Config, host: &Host) -> Result<Selection<'c>, PlanError> {
    let mut sel = Selection::default();
    for entry in &config.entries {
        let mut matched = false;
        for dev in host.devices.values().filter(|d| matches(entry, d)) {
            matched = true;
            sel.add(entry, dev, host)?;
        }
        if !matched {
            let message = format!("{} matches no PCI device on this host", entry.selector);
            sel.problems.push(problem(entry, message, entry.required));
        }
    }
    Ok(sel)
}

impl<'c> Selection<'c> {
    fn add(&mut self, entry: &'c Entry, dev: &Device, host: &Host) -> Result<(), PlanError> {
        match self.devices.get(&dev.address) {
            Some(prev) if prev.driver != entry.driver => {
                return Err(PlanError {
                    origin: entry.origin.clone(),
                    message: format!(
                        "{} asks for driver {} but the entry at {} asks for {}",
                        dev.address, entry.driver, prev.origin, prev.driver
                    ),
                });
            }
            Some(_) => {}
            None => {
                self.devices.insert(dev.address, entry);
            }
        }
        if dev.is_bridge() && matches!(entry.selector, Selector::Address(_)) {
            let message = format!(
                "{} is a bridge (header type 1/2); bridges are never bound, only the other \
                 members of its IOMMU group",
                dev.address
            );
            self.problems.push(problem(entry, message, false));
        }
        match dev.iommu_group {
            Some(g) if host.groups.contains_key(&g) => {
                let list = self.groups.entry(g).or_default();
                if !list.iter().any(|e| e.index == entry.index) {
                    list.push(entry);
                }
            }
            _ => {
                let message = format!(
                    "{} has no IOMMU group, so VFIO cannot use it (is the IOMMU on for this \
                     device?)",
                    dev.address
                );
                self.problems.push(problem(entry, message, true));
            }
        }
        Ok(())
    }
}
