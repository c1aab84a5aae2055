//! Releasing: a device vfio-bind bound goes back to the driver it had, and its record is
//! dropped from the state; a device no longer present is just forgotten. Shared by
//! `apply` (devices the config no longer names) and `release`.

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

/// Release `targets` group by group ([`release_recorded`] each), in group then address
/// order. A terminating signal ([`crate::interrupt`]) is acted on only between groups, so
/// a group is always released whole. Returns the outcomes and the signal that stopped the
/// run early, if one did.
pub fn release_groups(
    root: &Root,
    mut targets: Vec<Target>,
    state: &mut State,
    opts: &Options,
) -> (Vec<ReleaseOutcome>, Option<&'static str>) {
    targets.sort_by_key(|t| (t.group, t.address));
    let mut outcomes = Vec::new();
    let mut last_group = None;
    for t in targets {
        if last_group != Some(t.group) {
            if let Some(signal) = crate::interrupt::requested() {
                return (outcomes, Some(signal));
            }
        }
        last_group = Some(t.group);
        let rec = t.record.as_ref();
        outcomes.push(release_recorded(
            root, t.address, rec, t.present, state, opts,
        ));
    }
    (outcomes, None)
}
