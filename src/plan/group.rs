//! What happens to each member of a selected group: bridges are left alone, members no
//! entry names that already keep the group viable are kept, every other member goes to
//! its entry's driver (or the companion driver, [`Driver::for_companions`]); and the
//! ownership the group's entries ask for, merged.

use std::collections::BTreeMap;
use std::fmt;

use crate::config::{Entry, Ownership, Principal};
use crate::driver::Driver;
use crate::host::snapshot::{Device, Host};
use crate::pci::PciAddress;
use crate::plan::model::{Action, GroupPlan, MemberPlan, PlanError};
use crate::plan::select::Selection;

/// One shared [`Driver`] per target name, however many members go to it.
#[derive(Default)]
pub struct Targets(BTreeMap<String, Driver>);

impl Targets {
    fn get(&mut self, d: &Driver) -> Driver {
        self.0
            .entry(d.to_string())
            .or_insert_with(|| d.clone())
            .clone()
    }
}

/// The action for `dev`, named by `entry` (or by none), in a group brought in by `first`.
pub fn action(dev: &Device, entry: Option<&Entry>, first: &Entry, t: &mut Targets) -> Action {
    if dev.is_bridge() {
        return Action::Bridge;
    }
    if let (None, Some(d)) = (entry, dev.driver.as_ref().filter(|d| d.keeps_viable())) {
        // A member no entry names that is already on a vfio driver (a variant driver,
        // say) or pci-stub keeps the group viable as it is: leave it.
        return Action::Keep { driver: d.clone() };
    }
    let driver = match entry {
        Some(e) => t.get(&e.driver),
        None => t.get(&first.driver.for_companions()),
    };
    let on_target = dev.driver.as_ref() == Some(&driver);
    let override_set = dev.driver_override.as_ref() == Some(&driver);
    match (on_target, override_set) {
        (true, true) => Action::Keep { driver },
        (true, false) => Action::SetOverride { driver },
        (false, _) => Action::Bind { driver },
    }
}

/// The plan of group `number`, without refusals (those are [`crate::plan::guard`]'s).
///
/// Errors: [`PlanError`] when two of its entries ask for different ownership.
pub fn group(
    number: u32,
    sel: &Selection,
    host: &Host,
    t: &mut Targets,
) -> Result<GroupPlan, PlanError> {
    let entries = &sel.groups[&number];
    let first = entries[0];
    let members = host.groups[&number]
        .devices
        .iter()
        .map(|addr| {
            member(
                &host.devices[addr],
                sel.devices.get(addr).copied(),
                first,
                t,
            )
        })
        .collect();
    Ok(GroupPlan {
        group: number,
        entries: entries.iter().map(|e| e.index).collect(),
        members,
        refusals: Vec::new(),
        ownership: merge_ownership(number, entries)?,
        node_pending: false,
    })
}

fn member(dev: &Device, entry: Option<&Entry>, first: &Entry, t: &mut Targets) -> MemberPlan {
    let address: PciAddress = dev.address;
    MemberPlan {
        address,
        id: dev.id,
        class: dev.class,
        driver: dev.driver.clone(),
        driver_override: dev.driver_override.clone(),
        entry: entry.map(|e| e.index),
        allow_boot_vga: entry.is_some_and(|e| e.allow_boot_vga),
        action: action(dev, entry, first, t),
    }
}

/// Merge one ownership field: the first entry that sets it wins; a different value from
/// a later entry is an error.
fn merge_field<'e, T: Clone>(
    group: u32,
    field: &str,
    entries: &[&'e Entry],
    get: impl Fn(&Ownership) -> Option<&T>,
    same: impl Fn(&T, &T) -> bool,
    show: impl Fn(&T) -> String,
) -> Result<Option<T>, PlanError> {
    let mut out: Option<(&T, &'e Entry)> = None;
    for e in entries {
        let Some(v) = get(&e.ownership) else { continue };
        match out {
            None => out = Some((v, e)),
            Some((p, prev)) if !same(p, v) => {
                return Err(PlanError {
                    origin: e.origin.clone(),
                    message: format!(
                        "/dev/vfio/{group}: this entry asks for {field} {}, but the entry at {} \
                         (same IOMMU group) asks for {}",
                        show(v),
                        prev.origin,
                        show(p)
                    ),
                })
            }
            Some(_) => {}
        }
    }
    Ok(out.map(|(v, _)| v.clone()))
}

/// Merge the ownership every entry of a group asks for; two different values for one
/// field are an error (values compare as written: `kvm` and `993` differ).
fn merge_ownership(group: u32, entries: &[&Entry]) -> Result<Ownership, PlanError> {
    let show = |p: &Principal| p.to_string();
    Ok(Ownership {
        user: merge_field(
            group,
            "owner",
            entries,
            |o| o.user.as_ref(),
            Principal::same,
            show,
        )?,
        group: merge_field(
            group,
            "group",
            entries,
            |o| o.group.as_ref(),
            Principal::same,
            show,
        )?,
        mode: merge_field(
            group,
            "mode",
            entries,
            |o| o.mode.as_ref(),
            |a, b| a == b,
            |m| format!("{m:04o}"),
        )?,
    })
}

impl fmt::Debug for Targets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}
