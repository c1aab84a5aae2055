//! Releasing: a device vfio-bind bound goes back to the driver it had, and its record is
//! dropped from the state; a device no longer present is just forgotten. Shared by
//! `apply` (devices the config no longer names) and `release`.

use std::collections::{BTreeMap, BTreeSet};

use crate::apply::error::ApplyError;
use crate::apply::options::Options;
use crate::apply::protocol::release_device;
use crate::pci::PciAddress;
use crate::root::Root;
use crate::state::{Record, State};

/// What happened to one device being released.
#[derive(Debug)]
pub struct ReleaseOutcome {
    /// The device.
    pub address: PciAddress,
    /// The driver it ended on, or why it could not be released.
    pub result: Result<Option<String>, ApplyError>,
}

/// Release one device ([`release_device`]), or forget it when it is no longer
/// `present`, and drop its record from `state` (saved at once) when it had one.
pub fn release_recorded(
    root: &Root,
    addr: PciAddress,
    record: Option<&Record>,
    present: bool,
    state: &mut State,
    opts: &Options,
) -> ReleaseOutcome {
    let result = if present {
        release_device(root, addr, record, opts)
    } else {
        log::warn!(VFIO_BIND_ADDRESS = addr.to_string().as_str(), VFIO_BIND_ACTION = "forget";
            "{addr}: bound earlier but no longer present; forgetting it");
        Ok(None)
    };
    let result = result.and_then(|d| {
        if record.is_some() {
            state.remove(addr);
            state.save(root)?;
        }
        Ok(d)
    });
    if let Err(e) = &result {
        log::error!(VFIO_BIND_ADDRESS = addr.to_string().as_str(), VFIO_BIND_ACTION = "release";
            "{e}");
    }
    ReleaseOutcome {
        address: addr,
        result,
    }
}

/// One device to release, with the IOMMU group it is released with.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its group (recorded, or the snapshot's), which orders and bounds the release.
    pub group: Option<u32>,
    /// The device.
    pub address: PciAddress,
    /// What vfio-bind recorded when it bound the device, if it did.
    pub record: Option<Record>,
    /// False when the device is no longer on the host.
    pub present: bool,
}

/// The groups of `targets` (sorted by group) that a process holds open: a group some of
/// whose devices are on a vfio driver, its `/dev/vfio/<group>` or a member's node open
/// after waiting up to `opts.hold_timeout`; each with who holds what. `/proc` is scanned
/// once for all groups, then again only for the groups found held.
fn busy(root: &Root, targets: &[Target], opts: &Options) -> BTreeMap<u32, String> {
    use crate::vm::holders;
    let mut nodes: BTreeMap<u32, Vec<holders::Node>> = BTreeMap::new();
    for t in targets.iter().filter(|t| t.present) {
        let Some(g) = t.group else { continue };
        let on_vfio = crate::host::sysfs::current_driver(root, t.address)
            .ok()
            .flatten()
            .is_some_and(|d| crate::driver::is_vfio(&d));
        if on_vfio {
            let n = nodes.entry(g).or_insert_with(|| {
                holders::vfio_group_node(root, g, t.address)
                    .into_iter()
                    .collect()
            });
            n.extend(holders::nodes(root, &[t.address]));
        }
    }
    let all: Vec<holders::Node> = nodes.values().flatten().cloned().collect();
    let held: BTreeSet<PciAddress> = holders::holders(root, &all)
        .into_iter()
        .map(|h| h.node.device)
        .collect();
    let mut out = BTreeMap::new();
    for (g, n) in nodes {
        if !n.iter().any(|n| held.contains(&n.device)) {
            continue;
        }
        if let Err(h) = holders::wait_released(root, &n, opts.hold_timeout) {
            let who: Vec<String> = h.iter().map(ToString::to_string).collect();
            out.insert(g, who.join(", "));
        }
    }
    out
}

/// Release `targets` group by group ([`release_recorded`] each), in group then address
/// order. A group on a vfio driver that a process still holds open (its
/// `/dev/vfio/<group>` or a member's device node) after `opts.hold_timeout` is not
/// released: vfio-pci's remove would block until it is closed ([`ApplyError::InUse`]
/// for each of its devices, records kept). A terminating signal ([`crate::interrupt`]) is
/// acted on only between groups, so a group is always released whole. Returns the
/// outcomes and the signal that stopped the run early, if one did.
pub fn release_groups(
    root: &Root,
    mut targets: Vec<Target>,
    state: &mut State,
    opts: &Options,
) -> (Vec<ReleaseOutcome>, Option<&'static str>) {
    targets.sort_by_key(|t| (t.group, t.address));
    let mut outcomes = Vec::new();
    let mut last_group = None;
    let busy = busy(root, &targets, opts);
    for t in &targets {
        if last_group != Some(t.group) {
            if let Some(signal) = crate::interrupt::requested() {
                return (outcomes, Some(signal));
            }
        }
        last_group = Some(t.group);
        if let Some((group, holders)) = t.group.and_then(|g| busy.get(&g).map(|h| (g, h))) {
            let e = ApplyError::InUse {
                group,
                holders: holders.clone(),
            };
            log::error!(VFIO_BIND_ADDRESS = t.address.to_string().as_str(), VFIO_BIND_ACTION = "release"; "{}: {e}", t.address);
            outcomes.push(ReleaseOutcome {
                address: t.address,
                result: Err(e),
            });
            continue;
        }
        let rec = t.record.as_ref();
        outcomes.push(release_recorded(
            root, t.address, rec, t.present, state, opts,
        ));
    }
    (outcomes, None)
}
