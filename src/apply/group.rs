//! One IOMMU group, all or nothing: load the target drivers, record every member about to
//! change in the state file (write-ahead), run the bind protocol member by member, own
//! the node; on any failure, roll the members changed in this run back in reverse order.

use crate::apply::error::ApplyError;
use crate::apply::module::ensure_driver;
use crate::apply::node::set_node;
use crate::apply::options::Options;
use crate::apply::protocol::{bind_member, restore_member, Previous};
use crate::interrupt;
use crate::owner::NodeOwner;
use crate::pci::PciAddress;
use crate::plan::model::{Action, GroupPlan, MemberPlan};
use crate::root::Root;
use crate::state::{Record, State};

/// What happened to one group.
#[derive(Debug)]
pub struct GroupOutcome {
    /// The IOMMU group.
    pub group: u32,
    /// Members bound (or whose override was set) in this run.
    pub changed: Vec<PciAddress>,
    /// Whether the node's ownership or mode was changed in this run.
    pub node_changed: bool,
    /// `Ok` when the group ends as planned; the error otherwise (group rolled back).
    pub result: Result<(), ApplyError>,
    /// Errors while rolling back (the group may be half-bound when non-empty).
    pub rollback_errors: Vec<ApplyError>,
}

impl GroupOutcome {
    fn new(group: u32) -> Self {
        GroupOutcome {
            group,
            changed: Vec::new(),
            node_changed: false,
            result: Ok(()),
            rollback_errors: Vec::new(),
        }
    }
}

/// A refused group: every refusal logged, nothing touched.
fn refused(g: &GroupPlan) -> ApplyError {
    for r in &g.refusals {
        log::error!(VFIO_BIND_GROUP = g.group, VFIO_BIND_ADDRESS = r.member.as_str(), VFIO_BIND_ACTION = "refuse";
            "group {}: refused: {} {}", g.group, r.member, r.reason);
    }
    ApplyError::Refused {
        group: g.group,
        reasons: g
            .refusals
            .iter()
            .map(|r| format!("{} {}", r.member, r.reason))
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// Load every driver a member is about to be bound to.
fn load_drivers(root: &Root, g: &GroupPlan, opts: &Options) -> Result<(), ApplyError> {
    let mut drivers: Vec<&str> = g
        .members
        .iter()
        .filter(|m| m.action.writes())
        .filter_map(|m| m.action.target().map(|d| d.as_str()))
        .collect();
    drivers.dedup();
    for d in drivers {
        if let Err(e) = ensure_driver(root, d, opts.bind_timeout) {
            log::error!(VFIO_BIND_GROUP = g.group, VFIO_BIND_DRIVER = d, VFIO_BIND_ACTION = "fail"; "group {}: {e}", g.group);
            return Err(e);
        }
    }
    Ok(())
}

/// Write-ahead: record every member about to change, with what it has now, before the
/// first write; a crash mid-group then leaves a record `release` can undo. A member an
/// earlier run recorded keeps its recorded previous driver and override. When the record
/// cannot be saved, `state` is left as it was (nothing was written to sysfs yet). New
/// records are marked `early` in the initramfs claim, and name the VM of an attach
/// (`opts.vm`).
pub fn write_ahead(
    root: &Root,
    g: &GroupPlan,
    before: &Before,
    state: &mut State,
    opts: &Options,
) -> Result<(), ApplyError> {
    for m in g.members.iter().filter(|m| m.action.writes()) {
        let target = m.action.target().expect("writes have a target").clone();
        let record = match state.get(m.address) {
            Some(r) => Record {
                driver: target,
                group: g.group,
                ..r.clone()
            },
            None => Record {
                driver: target,
                group: g.group,
                previous_driver: m.driver.clone(),
                previous_override: m.driver_override.clone(),
                early: opts.early,
                vm: opts.vm.as_deref().map(str::to_string),
            },
        };
        state.insert(m.address, record);
    }
    state.save(root).map_err(|e| {
        restore_records(state, before);
        e.into()
    })
}

/// Put `state`'s records of the devices in `before` back as they were (forget the ones
/// that had none).
pub fn restore_records(state: &mut State, before: &Before) {
    for (addr, r) in before {
        match r {
            Some(r) => state.insert(*addr, r.clone()),
            None => {
                state.remove(*addr);
            }
        }
    }
}

/// The records of a group's members about to be written or recorded by an earlier run,
/// as they were before this run touched them (`None`: not recorded). Proportional to the
/// group, never to the state.
pub type Before = Vec<(PciAddress, Option<Record>)>;

/// Bind every member that needs a write, then own the node; stops at the first error.
fn bind_all(
    root: &Root,
    g: &GroupPlan,
    owner: Option<&NodeOwner>,
    opts: &Options,
    out: &mut GroupOutcome,
) -> Result<(), ApplyError> {
    for m in g.members.iter().filter(|m| m.action.writes()) {
        if let Some(signal) = interrupt::requested() {
            return Err(ApplyError::Interrupted {
                signal,
                device: None,
            });
        }
        out.changed.push(m.address);
        bind_member(root, g.group, m, opts)?;
    }
    // Without ownership keys the node is left to the kernel and udev; kernels built
    // without the group interface (iommufd only) have no /dev/vfio/<group> at all.
    if let Some(owner) = owner.filter(|o| g.has_vfio_node() && !o.is_empty()) {
        out.node_changed = set_node(root, g.group, owner, opts)?;
        if out.node_changed {
            log::info!(VFIO_BIND_GROUP = g.group, VFIO_BIND_ACTION = "ownership";
                "/dev/vfio/{}: set {}", g.group, g.ownership);
        }
    }
    Ok(())
}

/// Restore one member to `prev` and forget its record; a failure is logged and kept.
fn undo(
    root: &Root,
    g: &GroupPlan,
    m: &MemberPlan,
    prev: Previous,
    state: &mut State,
    opts: &Options,
    out: &mut GroupOutcome,
) {
    let addr = m.address;
    match restore_member(root, g.group, m, prev, opts) {
        Ok(()) => {
            state.remove(addr);
        }
        // Keep the record: `release` can finish the job later.
        Err(re) => {
            log::error!(VFIO_BIND_GROUP = g.group, VFIO_BIND_ADDRESS = addr.to_string().as_str(), VFIO_BIND_ACTION = "rollback";
                "group {}: rollback of {addr} failed: {re}", g.group);
            out.rollback_errors.push(re);
        }
    }
}

/// Roll the group back to where it was before vfio-bind touched it: the members changed
/// in this run, in reverse order, then the members an earlier run bound and recorded
/// (a run killed mid-group leaves some members bound), so that the group never ends
/// half-bound. Each goes back to what it had before vfio-bind touched it: the recorded
/// values when an earlier run recorded it (its override in the snapshot may be that
/// run's), the snapshot otherwise. Rollback errors are collected, never stop the rollback.
fn rollback(
    root: &Root,
    g: &GroupPlan,
    before: &Before,
    state: &mut State,
    opts: &Options,
    out: &mut GroupOutcome,
) {
    let recorded = |addr: PciAddress| {
        before
            .iter()
            .find(|(a, _)| *a == addr)
            .and_then(|(_, r)| r.clone())
    };
    let changed = out.changed.clone();
    let earlier = g.members.iter().filter(|m| {
        !changed.contains(&m.address) && m.action != Action::Bridge && recorded(m.address).is_some()
    });
    let order: Vec<&MemberPlan> = changed
        .iter()
        .rev()
        .filter_map(|a| g.members.iter().find(|m| m.address == *a))
        .chain(earlier)
        .collect();
    for m in order {
        let rec = recorded(m.address);
        let prev = match &rec {
            Some(r) => Previous {
                driver: r.previous_driver.as_deref(),
                driver_override: r.previous_override.as_deref(),
            },
            None => Previous {
                driver: m.driver.as_deref(),
                driver_override: m.driver_override.as_deref(),
            },
        };
        undo(root, g, m, prev, state, opts, out);
    }
    // Members never reached keep nothing to undo, unless an earlier run recorded them.
    for m in g.members.iter().filter(|m| m.action.writes()) {
        if !changed.contains(&m.address) && recorded(m.address).is_none() {
            state.remove(m.address);
        }
    }
    if let Err(se) = state.save(root) {
        log::error!(VFIO_BIND_GROUP = g.group; "group {}: {se}", g.group);
        out.rollback_errors.push(se.into());
    }
}

/// Apply one group: bind every non-bridge member that needs it, set the node's ownership
/// (`owner`, resolved), or roll back the members changed in this run. A refused group is
/// not touched.
pub fn apply_group(
    root: &Root,
    g: &GroupPlan,
    owner: Option<&NodeOwner>,
    state: &mut State,
    opts: &Options,
) -> GroupOutcome {
    let mut out = GroupOutcome::new(g.group);
    if g.is_refused() {
        out.result = Err(refused(g));
        return out;
    }
    if let Err(e) = load_drivers(root, g, opts) {
        out.result = Err(e);
        return out;
    }
    let before: Before = g
        .members
        .iter()
        .filter(|m| m.action.writes() || state.get(m.address).is_some())
        .map(|m| (m.address, state.get(m.address).cloned()))
        .collect();
    if !g.is_bound() {
        if let Err(e) = write_ahead(root, g, &before, state, opts) {
            log::error!(VFIO_BIND_GROUP = g.group, VFIO_BIND_ACTION = "fail"; "group {}: {e}", g.group);
            out.result = Err(e);
            return out;
        }
    }
    if let Err(e) = bind_all(root, g, owner, opts, &mut out) {
        log::error!(VFIO_BIND_GROUP = g.group, VFIO_BIND_ACTION = "fail"; "group {}: {e}", g.group);
        rollback(root, g, &before, state, opts, &mut out);
        out.result = Err(e);
    }
    out
}
