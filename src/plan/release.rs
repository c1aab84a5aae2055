//! Reload convergence: devices vfio-bind bound earlier ([`State`]) that no planned group
//! holds now are released, back to the driver they had; devices no longer on the host
//! are forgotten. Devices a VM's `attach` bound ([`crate::state::Record::vm`]) are that
//! VM's until its `detach`: never released here.

use std::collections::BTreeSet;

use crate::host::snapshot::Host;
use crate::pci::PciAddress;
use crate::plan::model::{GroupPlan, ReleasePlan};
use crate::state::State;

/// The releases for a plan whose groups are `groups`.
pub fn releases(groups: &[GroupPlan], host: &Host, state: &State) -> Vec<ReleasePlan> {
    let planned: BTreeSet<PciAddress> = groups
        .iter()
        .flat_map(|g| g.members.iter().map(|m| m.address))
        .collect();
    state
        .records()
        .filter(|(address, r)| r.vm.is_none() && !planned.contains(address))
        .map(|(address, record)| {
            let dev = host.devices.get(&address);
            ReleasePlan {
                address,
                record: record.clone(),
                driver: dev.and_then(|d| d.driver.clone()),
                present: dev.is_some(),
            }
        })
        .collect()
}
