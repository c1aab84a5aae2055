//! What the config binds on this host, for the commands that judge other things against
//! it (`doctor`'s leftovers, `import`, `check`'s VM lines): the groups of each `[[vm]]`
//! profile (its `devices`, or the hostdevs of libvirt's definition of the domain), and
//! every device and ID of the `[[device]]` entries and profiles.

use std::collections::BTreeMap;

use crate::config::{Config, Selector, VmProfile};
use crate::host::snapshot::Host;
use crate::pci::{PciAddress, PciId};
use crate::plan;
use crate::root::Root;
use crate::vm::profile::NoDevices;

/// The IOMMU groups `vm` takes on `host`, in order: its `devices`, or the PCI hostdevs of
/// libvirt's definition of the domain under `root`; empty when none of them is on the
/// host (or two entries contradict each other).
///
/// Errors: [`NoDevices`] when the profile names no devices and libvirt defines no such
/// domain (or its definition passes none through).
pub fn vm_groups(
    root: &Root,
    config: &Config,
    host: &Host,
    vm: &VmProfile,
) -> Result<Vec<u32>, NoDevices> {
    let domain = crate::host::libvirt::domain(root, &vm.name);
    let vc = crate::vm::profile::config(config, vm, domain.as_ref())?;
    Ok(plan::select::select(&vc, host)
        .map(|sel| sel.groups.into_keys().collect())
        .unwrap_or_default())
}

/// The devices of IOMMU group `g`.
fn group_devices(host: &Host, g: u32) -> &[PciAddress] {
    host.groups
        .get(&g)
        .map(|g| g.devices.as_slice())
        .unwrap_or_default()
}

/// The devices the config binds (all members of the groups of its `[[device]]` entries
/// and `[[vm]]` profiles) and the IDs its entries name or its devices have, each with
/// the entry (`device[N]`) or profile (`[[vm]] "name"`).
pub type Configured = (BTreeMap<PciAddress, String>, BTreeMap<PciId, String>);

/// [`Configured`] for `c` on `host`.
pub fn configured(root: &Root, host: &Host, c: &Config) -> Configured {
    let mut addrs = BTreeMap::new();
    let mut ids = BTreeMap::new();
    for e in &c.entries {
        if let Selector::Id(id) = e.selector {
            ids.insert(id, format!("device[{}]", e.index));
        }
    }
    for vm in &c.vms {
        let label = format!("[[vm]] \"{}\"", crate::text::escape(&vm.name));
        let groups = vm_groups(root, c, host, vm).unwrap_or_default();
        for a in groups.iter().flat_map(|g| group_devices(host, *g)) {
            addrs.insert(*a, label.clone());
        }
    }
    if let Ok(sel) = plan::select::select(c, host) {
        for (g, entries) in &sel.groups {
            let label = entries
                .first()
                .map(|e| format!("device[{}]", e.index))
                .unwrap_or_default();
            for a in group_devices(host, *g) {
                addrs.insert(*a, label.clone());
                if let Some(d) = host.devices.get(a) {
                    ids.entry(d.id).or_insert_with(|| label.clone());
                }
            }
        }
    }
    (addrs, ids)
}
