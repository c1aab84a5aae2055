//! Selecting devices and groups from entries: which devices each entry matches, which
//! entry names each device (the first; two drivers for one device is an error), and which
//! entries bring each IOMMU group in. Entries that match nothing, bridges named directly,
//! devices without a group and devices named twice become [`Problem`]s.
//!
//! The boot VGA device is not selected through an `id` entry that does not set
//! `allow_boot_vga`: with two identical GPUs, the `id` means the one that is not the
//! host's console. It is skipped with a warning (an error when the entry is `required`
//! and matched nothing else). Named by `address`, it is selected and the guard refuses it
//! unless the entry allows it.

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
    let mut skipped = Vec::new();
    for entry in &config.entries {
        let mut matched = false;
        for dev in host.devices.values().filter(|d| matches(entry, d)) {
            if skips_boot_vga(entry, dev, host) {
                skipped.push((entry, dev.address));
                continue;
            }
            matched = true;
            sel.add(entry, dev, host)?;
        }
        let skipped_here = skipped.iter().any(|(e, _)| e.index == entry.index);
        if !matched && !skipped_here {
            let message = format!("{} matches no PCI device on this host", entry.selector);
            sel.problems.push(problem(entry, message, entry.required));
        } else if !matched {
            let message = format!(
                "{} matches only the boot VGA device, which is skipped",
                entry.selector
            );
            sel.problems.push(problem(entry, message, entry.required));
        }
    }
    for (entry, addr) in skipped {
        if sel.devices.contains_key(&addr) {
            continue;
        }
        let vga = host
            .devices
            .get(&addr)
            .and_then(|d| boot_vga_of_group(d, host));
        let what = match vga {
            Some(v) if v != addr => format!("shares its IOMMU group with the boot VGA device {v}"),
            _ => "is the boot VGA device".to_string(),
        };
        let message = format!(
            "{addr} matches {} but {what} (the host's console): skipped. To pass it \
             through, name the boot VGA device by address with allow_boot_vga = true",
            entry.selector
        );
        sel.problems.push(problem(entry, message, false));
    }
    Ok(sel)
}

/// An `id` entry without `allow_boot_vga` does not select the boot VGA device, nor a
/// device that shares its IOMMU group (its HDMI audio function: selecting it would pull
/// the boot VGA in, only to have the group refused).
fn skips_boot_vga(entry: &Entry, dev: &Device, host: &Host) -> bool {
    !entry.allow_boot_vga
        && matches!(entry.selector, Selector::Id(_))
        && boot_vga_of_group(dev, host).is_some()
}

/// The boot VGA device of `dev`'s IOMMU group (`dev` itself when it is one), if any.
fn boot_vga_of_group(dev: &Device, host: &Host) -> Option<PciAddress> {
    if dev.boot_vga {
        return Some(dev.address);
    }
    host.group_of(dev.address)?
        .devices
        .iter()
        .copied()
        .find(|a| host.devices.get(a).is_some_and(|d| d.boot_vga))
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
            Some(prev) if prev.index != entry.index => {
                let message = format!(
                    "{} is already named by the entry at {}, whose settings apply",
                    dev.address, prev.origin
                );
                self.problems.push(problem(entry, message, false));
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
