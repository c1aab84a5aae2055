//! The first two steps of the claim in the initramfs (`vfio-bind claim`), before the
//! usual bind protocol: every planned group's `driver_override`s are written (each group
//! recorded first, write-ahead), then the target drivers' modules are loaded. Registering
//! a driver binds every unbound device whose override names it
//! (`Documentation/ABI/testing/sysfs-bus-pci`, `driver_override`), so a device no host
//! driver has touched yet goes straight to vfio-pci; the members a built-in driver already
//! holds are then unbound and reprobed by [`crate::apply::apply`] as usual.

use crate::apply::error::ApplyError;
use crate::apply::group::{restore_records, write_ahead, Before};
use crate::apply::module::ensure_driver;
use crate::apply::options::Options;
use crate::apply::protocol::write_attr;
use crate::plan::model::{GroupPlan, Plan, Refusal};
use crate::root::Root;
use crate::state::State;

/// Write the override of every member that needs one, group by group, each group
/// recorded (write-ahead, marked early) before its first write. A group whose record or
/// override write fails is put back (overrides restored, records forgotten) and left to
/// the bind protocol, which reports it. Refused groups are not touched.
pub fn write_overrides(root: &Root, plan: &Plan, state: &mut State) {
    for g in plan
        .groups
        .iter()
        .filter(|g| !g.is_refused() && !g.is_bound())
    {
        let before: Before = g
            .members
            .iter()
            .filter(|m| m.action.writes())
            .map(|m| (m.address, state.get(m.address).cloned()))
            .collect();
        let early = Options {
            early: true,
            ..Options::default()
        };
        if let Err(e) = write_ahead(root, g, &before, state, &early) {
            log::error!(VFIO_BIND_GROUP = g.group; "group {}: {e}", g.group);
            continue;
        }
        if let Err(e) = overrides(root, g, &before, state) {
            log::error!(VFIO_BIND_GROUP = g.group; "group {}: {e}", g.group);
        }
    }
}

/// The override writes of one group; on a failure, the ones written are restored.
fn overrides(
    root: &Root,
    g: &GroupPlan,
    before: &Before,
    state: &mut State,
) -> Result<(), ApplyError> {
    let mut written: Vec<(crate::pci::PciAddress, std::path::PathBuf)> = Vec::new();
    for m in g.members.iter().filter(|m| m.action.writes()) {
        let target = m.action.target().expect("writes have a target");
        if m.driver_override.as_ref() == Some(target) {
            continue;
        }
        let dev = m.address.to_string();
        let path = root.device_dir(m.address).join("driver_override");
        if let Err(e) = write_attr(&dev, &path, target.as_str()) {
            // The write-ahead records hold each member's override before vfio-bind.
            for (m, path) in written.iter().rev() {
                let prev = state.get(*m).and_then(|r| r.previous_override.as_deref());
                if let Err(re) = write_attr(&m.to_string(), path, prev.unwrap_or("\n")) {
                    log::error!("group {}: restoring the override of {m}: {re}", g.group);
                }
            }
            restore_records(state, before);
            if let Err(se) = state.save(root) {
                log::error!("group {}: {se}", g.group);
            }
            return Err(e);
        }
        log::debug!("{dev}: driver_override set to {target}");
        written.push((m.address, path));
    }
    Ok(())
}

/// The initramfs's own guard, in place of the host-use guards (nothing is mounted or up
/// yet, so they cannot judge): a storage (class 01) or network (class 02) controller that
/// no entry names but that shares a group with one may hold the root file system (the
/// root disk's controller, the NIC of an NFS or iSCSI root). Such a group is refused
/// here and left to the boot-time `apply`, whose guards see the mounts and interfaces.
pub fn refuse_unnamed_storage_and_network(plan: &mut Plan) {
    for g in &mut plan.groups {
        for m in g
            .members
            .iter()
            .filter(|m| m.action.writes() && m.entry.is_none())
        {
            let base = m.class.base();
            if base == 0x01 || base == 0x02 {
                let what = if base == 0x01 { "storage" } else { "network" };
                g.refusals.push(Refusal {
                    member: m.address.to_string(),
                    reason: format!(
                        "is a {what} controller no entry names, sharing the group; in the \
                         initramfs vfio-bind cannot tell whether the root file system needs \
                         it, so the boot-time apply decides (name it in an entry to claim it \
                         early)"
                    ),
                });
            }
        }
    }
}

/// Put back the overrides of every group whose target driver did not register (its
/// module missing from the image, say), and forget their records: the group stays as the
/// kernel left it, for the boot-time `apply` to bind.
pub fn undo_unregistered(root: &Root, plan: &Plan, state: &mut State) {
    for g in plan
        .groups
        .iter()
        .filter(|g| !g.is_refused() && !g.is_bound())
    {
        let missing = g
            .members
            .iter()
            .filter(|m| m.action.writes())
            .filter_map(|m| m.action.target())
            .find(|d| !root.driver_dir(d.as_str()).is_dir());
        let Some(driver) = missing else {
            continue;
        };
        log::error!(VFIO_BIND_GROUP = g.group, VFIO_BIND_DRIVER = driver.as_str();
            "group {}: driver {driver} did not register; putting the group's overrides back", g.group);
        for m in g.members.iter().filter(|m| m.action.writes()) {
            let Some(r) = state.get(m.address).cloned() else {
                continue;
            };
            let path = root.device_dir(m.address).join("driver_override");
            let prev = r.previous_override.as_deref().unwrap_or("\n");
            match write_attr(&m.address.to_string(), &path, prev) {
                Ok(()) => {
                    state.remove(m.address);
                }
                Err(e) => log::error!("group {}: {e}", g.group),
            }
        }
        if let Err(e) = state.save(root) {
            log::error!("group {}: {e}", g.group);
        }
    }
}

/// Load the module of every driver a group not refused is to be bound to. A failure is
/// logged; the bind protocol then reports the groups it leaves unbound.
pub fn load_drivers(root: &Root, plan: &Plan, opts: &Options) {
    let mut drivers: Vec<&str> = plan
        .groups
        .iter()
        .filter(|g| !g.is_refused())
        .flat_map(|g| g.members.iter())
        .filter(|m| m.action.writes())
        .filter_map(|m| m.action.target().map(|d| d.as_str()))
        .collect();
    drivers.sort_unstable();
    drivers.dedup();
    for d in drivers {
        if let Err(e) = ensure_driver(root, d, opts.bind_timeout) {
            log::error!(VFIO_BIND_DRIVER = d; "{e}");
        }
    }
}
