//! `vfio-bind hotplug ADDR`: what the udev rule of [`crate::apply::udev`] runs for a PCI
//! device the config names when it is added or removed at runtime.
//!
//! Added (the device is in sysfs): its IOMMU group is claimed as `apply` would claim it
//! (guards, write-ahead record, bind protocol, rollback, node ownership), and nothing
//! else is touched: no other group, no release. The kernel probes a hot-added device
//! synchronously, before udev sees it, so its host driver may hold it already: the
//! protocol unbinds and reprobes. Removed (gone from sysfs): its record is forgotten, so
//! no stale state is left. `vfio-bind=off` on the kernel command line skips both.

use super::{log_problems, Context, Planned};
use crate::apply::{self, udev};
use crate::error::Error;
use crate::pci::PciAddress;
use crate::plan::model::Verdict;

/// The uevent's action, as udev passes it (`$env{ACTION}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Action {
    /// The device was added.
    Add,
    /// The device is being removed (the kernel sends this before its sysfs directory
    /// goes, so presence alone cannot tell).
    Remove,
}

/// Handle the add or remove of `address` (`dddd:bb:dd.f`, as udev's `$kernel`); without
/// `action`, a device present in sysfs is taken as added. Exit 0 when its group ends
/// bound, when it is no configured device's, or when it was removed; 1 when its group
/// failed or was refused.
///
/// Errors: [`Error::Usage`] (exit 2) for a malformed address; as
/// [`Context::plan`] otherwise.
pub fn run(ctx: &Context, address: &str, action: Option<Action>) -> Result<u8, Error> {
    let addr: PciAddress = address.parse().map_err(|_| {
        Error::Usage(format!(
            "{}: not a PCI address (dddd:bb:dd.f)",
            crate::text::escape(address)
        ))
    })?;
    if crate::cmdline::off(&ctx.root) {
        log::info!(
            "{}: {} on the kernel command line: not claiming",
            addr,
            crate::cmdline::OFF
        );
        return Ok(0);
    }
    let present = ctx.root.device_dir(addr).exists();
    if action == Some(Action::Remove) || !present {
        return removed(ctx, addr);
    }
    let Planned {
        config,
        lock: _lock,
        mut state,
        plan,
        owners,
        ..
    } = ctx.plan(Some("hotplug"))?;
    let Some(g) = plan
        .groups
        .iter()
        .find(|g| g.members.iter().any(|m| m.address == addr))
    else {
        log::debug!("{addr}: no configured device's IOMMU group; nothing to do");
        return Ok(0);
    };
    log_problems(&plan);
    log::info!(VFIO_BIND_ADDRESS = addr.to_string().as_str(), VFIO_BIND_GROUP = g.group, VFIO_BIND_ACTION = "hotplug";
        "{addr}: added; claiming IOMMU group {}", g.group);
    let out =
        apply::group::apply_group(&ctx.root, g, owners.get(&g.group), &mut state, &ctx.options);
    // The rules keep every other group as it was, and this one if it ended bound.
    let kept = plan
        .groups
        .iter()
        .filter(|p| {
            if p.group == g.group {
                out.result.is_ok()
            } else {
                matches!(p.verdict(), Verdict::Bound | Verdict::NodePending)
            }
        })
        .filter_map(|p| owners.get(&p.group).map(|o| (p.group, o)));
    if let Err(e) = udev::sync(&ctx.root, kept, &config.entries) {
        log::error!("{e}");
    }
    match &out.result {
        Ok(()) => {
            log::info!("{addr}: IOMMU group {} on vfio-pci", g.group);
            Ok(0)
        }
        Err(_) => Ok(1),
    }
}

/// A removed device: forget its record, and those of the members of its group that are
/// gone from sysfs too (functions no entry names get no event of their own); the group's
/// file is rewritten or removed. A member still present keeps its record.
fn removed(ctx: &Context, addr: PciAddress) -> Result<u8, Error> {
    let recorded = crate::state::State::load(&ctx.root)?;
    let Some(group) = recorded.get(addr).map(|r| r.group) else {
        return Ok(0);
    };
    let _lock = ctx.lock("hotplug")?;
    let mut state = crate::state::State::load(&ctx.root)?;
    let gone: Vec<PciAddress> = state
        .group_members(group)
        .into_iter()
        .filter(|a| *a == addr || !ctx.root.device_dir(*a).exists())
        .collect();
    for a in &gone {
        state.remove(*a);
        log::info!(VFIO_BIND_ADDRESS = a.to_string().as_str(), VFIO_BIND_GROUP = group, VFIO_BIND_ACTION = "forget";
            "{a}: removed; forgot its record (IOMMU group {group})");
    }
    state.save(&ctx.root)?;
    Ok(0)
}
