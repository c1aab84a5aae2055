//! Apply: execute a [`Plan`] through the kernel's bind protocol. The only module that
//! writes to the host, one concern per module:
//!
//! - [`early`]: the initramfs claim's overrides-first step and module loading;
//! - [`protocol`]: the sysfs bind protocol (bind, restore, release, wait), the only sysfs
//!   writes;
//! - [`group`]: one group all-or-nothing, with the write-ahead record and the rollback;
//! - [`release`]: giving recorded devices back;
//! - [`node`]: ownership of `/dev/vfio/<group>`;
//! - [`module`]: loading kernel modules;
//! - [`udev`]: the udev rules that keep node ownership;
//! - [`error`], [`options`]: the errors and the timeouts.

pub mod early;
pub mod error;
pub mod group;
pub mod module;
pub mod node;
pub mod options;
pub mod protocol;
pub mod release;
pub mod udev;

pub use error::ApplyError;
pub use group::GroupOutcome;
pub use options::Options;
pub use release::ReleaseOutcome;

use crate::owner::{NodeOwner, Owners};
use crate::plan::model::Plan;
use crate::root::Root;
use crate::state::State;

/// Release the devices of `plan.releases` (no longer configured), then apply every
/// group, in order, with the resolved ownership `owners`, recording in `state` (saved
/// after each step) what was bound. A failed or refused group does not stop the others;
/// a terminating signal ([`crate::interrupt`]) does: the group in progress is rolled
/// back and the outcomes stop there (fewer than the plan has).
pub fn apply(
    root: &Root,
    plan: &Plan,
    owners: &Owners,
    state: &mut State,
    opts: &Options,
) -> (Vec<ReleaseOutcome>, Vec<GroupOutcome>) {
    let targets = plan
        .releases
        .iter()
        .map(|r| release::Target {
            group: Some(r.record.group),
            address: r.address,
            record: Some(r.record.clone()),
            present: r.present,
        })
        .collect();
    let (released, stopped) = release::release_groups(root, targets, state, opts);
    if stopped.is_some() {
        return (released, Vec::new());
    }
    let mut groups = Vec::new();
    for g in &plan.groups {
        if crate::interrupt::requested().is_some() {
            break;
        }
        groups.push(group::apply_group(
            root,
            g,
            owners.get(&g.group),
            state,
            opts,
        ));
    }
    (released, groups)
}

/// The nodes whose ownership the udev rules keep after `apply`: every group that ended
/// as planned with ownership configured, and every group a signal kept the run from
/// reaching that was bound already.
pub fn kept_nodes<'a>(
    plan: &Plan,
    outcomes: &[GroupOutcome],
    owners: &'a Owners,
) -> Vec<(u32, &'a NodeOwner)> {
    use crate::plan::model::Verdict;
    plan.groups
        .iter()
        .enumerate()
        .filter(|(i, g)| match outcomes.get(*i) {
            Some(o) => o.result.is_ok(),
            None => matches!(g.verdict(), Verdict::Bound | Verdict::NodePending),
        })
        .filter_map(|(_, g)| owners.get(&g.group).map(|o| (g.group, o)))
        .collect()
}
