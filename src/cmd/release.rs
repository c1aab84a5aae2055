//! `vfio-bind release [ADDR...|--all]`: give devices back to the drivers they had.

use std::collections::BTreeSet;

use super::Context;
use crate::apply::{self, udev};
use crate::config;
use crate::error::Error;
use crate::host::snapshot::Host;
use crate::host::usage::Uses;
use crate::owner;
use crate::pci::PciAddress;
use crate::plan::{self, guard, Verdict};
use crate::state::State;

/// Which devices to release: every recorded device with `all`; otherwise each named
/// device plus the recorded devices of its IOMMU group (a group is handed back whole).
/// Devices a VM's `attach` bound are that VM's `detach`'s: left out (and a named one is
/// returned with its VM as the second value).
fn targets(
    host: &Host,
    state: &State,
    names: &[PciAddress],
    all: bool,
) -> (BTreeSet<PciAddress>, Vec<(PciAddress, String)>) {
    let mut out = BTreeSet::new();
    let mut vms = Vec::new();
    for (addr, record) in state.records() {
        if let Some(vm) = &record.vm {
            if names.contains(&addr) {
                vms.push((addr, vm.clone()));
            }
            continue;
        }
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
    out.extend(
        names
            .iter()
            .filter(|n| !vms.iter().any(|(a, _)| a == *n))
            .copied(),
    );
    (out, vms)
}

/// Rewrite the udev rules for what is still bound: the configured groups that are in
/// place after the release, not refused, with ownership configured (what `apply` keeps).
/// The config is read again for it; when it cannot be (an error in it), the rules are
/// left as they are.
fn sync_rules(ctx: &Context) {
    let kept = (|| -> Result<_, Error> {
        let config = config::load(&ctx.config)?;
        let host = Host::read(&ctx.root)?;
        let state = State::load(&ctx.root)?;
        let mut plan = plan::plan(&config, &host, &state)?;
        // Bound groups need no write, so the host-use guards have nothing to judge.
        guard::refuse(&mut plan, &host, &Uses::new());
        let bound = plan
            .groups
            .iter()
            .filter(|g| matches!(g.verdict(), Verdict::Bound | Verdict::NodePending))
            .map(|g| (g.group, &g.ownership));
        Ok((owner::resolve_groups(&ctx.users(), bound)?, config.entries))
    })();
    match kept {
        Ok((owners, entries)) => {
            if let Err(e) = udev::sync(&ctx.root, owners.iter().map(|(g, o)| (*g, o)), &entries) {
                log::error!("{e}");
            }
        }
        Err(e) => log::warn!("udev rules left as they are: {e}"),
    }
}

/// Named devices a VM's attach bound: each an error naming its `detach`.
fn log_attached(attached: &[(PciAddress, String)]) {
    for (a, vm) in attached {
        let vm = crate::text::escape(vm);
        log::error!("{a}: attached to VM \"{vm}\"; give it back with `vfio-bind detach {vm}`");
    }
}

/// Release under the run lock and update the state after each device. A device that
/// vfio-bind did not bind is released only when named; it then goes to whatever host
/// driver probes it. Exit 0 when everything was released, 1 otherwise.
///
/// Errors: [`Error::Usage`] (exit 2) for a malformed or unknown address; [`Error::Lock`],
/// [`Error::Host`], [`Error::State`].
pub fn run(ctx: &Context, addrs: &[String], all: bool) -> Result<u8, Error> {
    let mut names = Vec::new();
    for a in addrs {
        names.push(
            a.parse::<PciAddress>()
                .map_err(|e| Error::Usage(e.to_string()))?,
        );
    }
    // Arguments naming no device and a state file that cannot be used stop the run
    // before the lock is created ([`Context::lock_would_create`]); everything is read
    // again under the lock.
    let check = |host: &Host, state: &State| -> Result<(), Error> {
        for n in &names {
            if !host.devices.contains_key(n) && state.get(*n).is_none() {
                return Err(Error::Usage(format!("no PCI device {n} on this host")));
            }
        }
        Ok(())
    };
    if ctx.lock_would_create() {
        check(&Host::read(&ctx.root)?, &State::load(&ctx.root)?)?;
    }
    let _lock = ctx.lock("release")?;
    let host = Host::read(&ctx.root)?;
    let mut state = State::load(&ctx.root)?;
    check(&host, &state)?;
    let (targets, attached) = targets(&host, &state, &names, all);
    log_attached(&attached);
    if targets.is_empty() {
        if attached.is_empty() {
            log::info!("nothing to release: vfio-bind has bound no device");
        }
        return Ok(u8::from(!attached.is_empty()));
    }
    let targets = targets
        .into_iter()
        .map(|a| {
            let record = state.get(a).cloned();
            let group = record.as_ref().map(|r| r.group);
            apply::release::Target {
                group: group.or_else(|| host.devices.get(&a).and_then(|d| d.iommu_group)),
                address: a,
                record,
                present: host.devices.contains_key(&a),
            }
        })
        .collect();
    let (outcomes, stopped) =
        apply::release::release_groups(&ctx.root, targets, &mut state, &ctx.options);
    if let Some(signal) = stopped {
        log::error!("stopped by {signal}; the groups not yet released stay bound");
    }
    sync_rules(ctx);
    let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
    log::info!(
        "released {} of {} devices",
        outcomes.len() - failed,
        outcomes.len()
    );
    Ok(u8::from(
        failed > 0 || !attached.is_empty() || crate::interrupt::requested().is_some(),
    ))
}
