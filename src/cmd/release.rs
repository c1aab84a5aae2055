//! `vfio-bind release [ADDR...|--all]`: give devices back to the drivers they had.

use std::collections::BTreeSet;

use super::Context;
use crate::apply;
use crate::error::Error;
use crate::pci::PciAddress;
use crate::sysfs::Host;

/// Which devices to release: every recorded device with `all`; otherwise each named
/// device plus the recorded devices of its IOMMU group (a group is handed back whole).
fn targets(host: &Host, names: &[PciAddress], all: bool) -> BTreeSet<PciAddress> {
    let mut out = BTreeSet::new();
    for (addr, record) in host.state.records() {
        let named_group = names.iter().any(|n| {
            *n == addr
                || host
                    .devices
                    .get(n)
                    .and_then(|d| d.iommu_group)
                    .is_some_and(|g| g == record.group)
        });
        if all || named_group {
            out.insert(addr);
        }
    }
    out.extend(names.iter().copied());
    out
}

/// Release under the run lock and update the state after each device. A device that
/// vfio-bind did not bind is released only when named; it then goes to whatever host
/// driver probes it. Exit 0 when everything was released, 1 otherwise; 2 for a malformed
/// or unknown address.
pub fn run(ctx: &Context, addrs: &[String], all: bool) -> Result<u8, Error> {
    let mut names = Vec::new();
    for a in addrs {
        names.push(
            a.parse::<PciAddress>()
                .map_err(|e| Error::Usage(e.to_string()))?,
        );
    }
    let _lock = ctx.lock("release")?;
    let mut host = Host::read(&ctx.root)?;
    host.state = crate::state::State::load(&ctx.root)?;
    for n in &names {
        if !host.devices.contains_key(n) && host.state.get(*n).is_none() {
            return Err(Error::Usage(format!("no PCI device {n} on this host")));
        }
    }
    let targets = targets(&host, &names, all);
    if targets.is_empty() {
        log::info!("nothing to release: vfio-bind has bound no device");
        return Ok(0);
    }
    let mut outcomes = Vec::new();
    for addr in targets {
        let record = host.state.get(addr).cloned();
        let present = host.devices.contains_key(&addr);
        outcomes.push(apply::release_recorded(
            &ctx.root,
            addr,
            record.as_ref(),
            present,
            &mut host.state,
            &ctx.options,
        ));
    }
    // Groups with nothing of vfio-bind's left lose their udev ownership rule.
    let mut gone: Vec<u32> = Vec::new();
    for o in outcomes.iter().filter(|o| o.result.is_ok()) {
        if let Some(g) = host.devices.get(&o.address).and_then(|d| d.iommu_group) {
            if !host.state.records().any(|(_, r)| r.group == g) && !gone.contains(&g) {
                gone.push(g);
            }
        }
    }
    if let Err(e) = apply::forget_udev_rules(&ctx.root, &gone) {
        log::error!("{e}");
    }
    let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
    log::info!(
        "released {} of {} devices",
        outcomes.len() - failed,
        outcomes.len()
    );
    Ok(u8::from(failed > 0))
}
