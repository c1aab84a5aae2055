//! `vfio-bind attach VM [--xml FILE]` and `vfio-bind detach VM`: a `[[vm]]` profile's
//! IOMMU groups bound for one VM run and given back after it (the libvirt hook calls
//! both, [`crate::cmd::hook`]).
//!
//! Attach, all or nothing: the VM's devices (its `devices`, or the PCI `<hostdev>`s of
//! the domain XML) expand to their groups through the same plan and guards as `apply`;
//! every refusal is found before anything is touched. Then, with `handover = true`, the
//! console is handed over ([`crate::vm::handover`]); processes holding the members' nodes
//! are waited for ([`crate::vm::holders`]); the modules to unload go; and each group is
//! bound (write-ahead records naming the VM, [`crate::state::Record::vm`]). On any
//! failure every step done so far is undone in reverse and the exit is 1.
//!
//! A group the boot-time config binds is used as it is and never released by a VM; a
//! group another VM holds, or whose `/dev/vfio/<group>` is open, is refused.
//!
//! Detach works from the records alone (the config may have changed while the VM ran):
//! the VM's devices go back to the drivers they had, then the handover steps are undone
//! in reverse. Detaching a VM with nothing recorded does nothing.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use super::{Context, Planned};
use crate::apply::{self, release, Options};
use crate::config::{self, Config, VmProfile};
use crate::error::Error;
use crate::owner;
use crate::pci::PciAddress;
use crate::plan::model::{Action, GroupPlan, Refusal};
use crate::root::Root;
use crate::state::State;
use crate::vm::holders;
use crate::vm::record::{self, VmRecord};
use crate::vm::{handover, profile, xml};

/// The domain XML given to an attach: where it came from (named in messages) and its
/// text.
pub struct DomainXml<'a> {
    /// The file, or `<stdin>` for the hook's.
    pub file: &'a Path,
    /// The XML.
    pub text: &'a str,
}

/// `vfio-bind attach VM`: exit 0 when every group of the VM ends bound (or it passes no
/// device through), 1 when one was refused or failed (everything undone).
///
/// Errors: [`Error::Config`] (exit 2) for the config, [`Error::Usage`] (exit 2) when no
/// profile is named `vm`, the domain XML is bad, or the profile names no devices and no
/// XML was given; [`Error::Failed`] (exit 1, after the rollback) naming what failed; as
/// [`Context::plan`] otherwise.
pub fn attach(ctx: &Context, vm: &str, xml: Option<DomainXml>) -> Result<u8, Error> {
    let config = config::load(&ctx.config)?;
    let Some(profile) = config.vm(vm) else {
        return Err(no_profile(&config, vm));
    };
    attach_profile(ctx, &config, profile, xml)
}

/// The usage error for a VM without a profile.
pub fn no_profile(config: &Config, vm: &str) -> Error {
    let files: Vec<String> = config
        .files
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    Error::Usage(format!(
        "no [[vm]] profile named \"{}\" in {}",
        crate::text::escape(vm),
        if files.is_empty() {
            "the config".to_string()
        } else {
            files.join(", ")
        }
    ))
}

/// [`attach`] for a profile of an already loaded `config`.
///
/// Errors: as [`attach`].
pub fn attach_profile(
    ctx: &Context,
    config: &Config,
    vm: &VmProfile,
    xml: Option<DomainXml>,
) -> Result<u8, Error> {
    let Some(vm_config) = vm_config(ctx, config, vm, xml)? else {
        return Ok(0);
    };
    let Planned {
        lock: _lock,
        host,
        mut state,
        mut plan,
        owners,
        ..
    } = ctx.plan_config(vm_config, Some(&format!("attach {}", vm.name)))?;
    check(ctx, config, vm, &host, &state, &mut plan)?;
    if already_attached(ctx, vm, &state, &plan)? {
        return Ok(0);
    }
    let members: Vec<PciAddress> = plan
        .groups
        .iter()
        .flat_map(|g| g.members.iter())
        .filter(|m| m.action != Action::Bridge)
        .map(|m| m.address)
        .collect();
    let mut rec = VmRecord::new(&vm.name);
    let opts = Options {
        vm: Some(Arc::from(vm.name.as_str())),
        ..ctx.options.clone()
    };
    let mut done = Progress::default();
    let result = take(
        ctx,
        vm,
        &plan.groups,
        &members,
        &mut rec,
        &mut state,
        &owners,
        &opts,
        &mut done,
    );
    let groups: Vec<u32> = plan.groups.iter().map(|g| g.group).collect();
    match result {
        Ok(()) => attached(ctx, vm, &rec, &groups, members.len()),
        Err(e) => {
            log::error!("VM {}: {e}; undoing the attach", vm.name);
            let undo = undo_attach(ctx, done, &rec, &mut state, &opts);
            let tail = if undo.is_empty() {
                "everything was undone".to_string()
            } else {
                format!("undo failed too: {}", undo.join("; "))
            };
            Err(Error::Failed(format!(
                "VM {}: not attached: {e} ({tail})",
                vm.name
            )))
        }
    }
}

/// A successful attach: its record kept only when it holds steps; the journal line.
///
/// Errors: [`Error::State`] when an empty record cannot be removed.
fn attached(
    ctx: &Context,
    vm: &VmProfile,
    rec: &VmRecord,
    groups: &[u32],
    devices: usize,
) -> Result<u8, Error> {
    if rec.steps.is_empty() {
        record::remove(&ctx.root, &vm.name)?;
    }
    let groups: Vec<String> = groups.iter().map(u32::to_string).collect();
    let groups = if groups.is_empty() {
        "-".to_string()
    } else {
        groups.join(", ")
    };
    log::info!(VFIO_BIND_ACTION = "attach"; "VM {}: attached: {devices} device(s) in IOMMU group(s) {groups} on {}",
        vm.name, vm.driver);
    Ok(0)
}

/// The config planned for `vm`: its devices as entries; `None` when the domain XML
/// passes no PCI device through (nothing to attach).
///
/// Errors: [`Error::Config`] for a user or group no database knows, [`Error::Usage`]
/// for a bad domain XML or a profile without devices and no XML.
fn vm_config(
    ctx: &Context,
    config: &Config,
    vm: &VmProfile,
    xml: Option<DomainXml>,
) -> Result<Option<Config>, Error> {
    owner::check_config(&ctx.users(), config)?;
    let domain = xml
        .map(|x| xml::parse(x.file, x.text))
        .transpose()
        .map_err(|e| Error::Usage(e.to_string()))?;
    if let Some(n) = domain
        .as_ref()
        .and_then(|d| d.name.as_deref())
        .filter(|n| *n != vm.name)
    {
        log::warn!(
            "VM {}: the domain XML is named \"{}\"",
            vm.name,
            crate::text::escape(n)
        );
    }
    match profile::config(config, vm, domain.as_ref()) {
        Ok(c) => Ok(Some(c)),
        Err(profile::NoDevices::NoHostdevs) => {
            log::warn!(
                "VM {}: the domain XML passes no PCI device through; nothing to attach",
                vm.name
            );
            Ok(None)
        }
        Err(profile::NoDevices::NoXml) => Err(Error::Usage(format!(
            "VM {}: its [[vm]] profile ({}) has no `devices`: give the domain XML \
                 (--xml FILE, `virsh dumpxml {}`) or list the devices",
            vm.name, vm.origin, vm.name
        ))),
    }
}

/// What keeps the VM's planned groups from being attached, found before anything is
/// touched: entries that matched nothing, guard refusals, groups another VM holds or
/// whose node is open, groups of the boot-time config that are not bound. Groups the
/// boot-time config binds are taken out of `plan` (used as they are).
///
/// Errors: [`Error::Failed`] (exit 1) naming every problem, each logged;
/// [`Error::Plan`] when the boot-time config contradicts itself on this host.
fn check(
    ctx: &Context,
    config: &Config,
    vm: &VmProfile,
    host: &crate::host::snapshot::Host,
    state: &State,
    plan: &mut crate::plan::Plan,
) -> Result<(), Error> {
    let boot = crate::plan::select::select(config, host)?;
    let boot_groups: BTreeSet<u32> = boot.groups.keys().copied().collect();
    let mut problems = Vec::new();
    for p in plan.problems.iter().filter(|p| p.error) {
        problems.push(format!("{}: {}", p.origin, p.message));
    }
    // Groups the boot-time config binds are the config's: used as they are.
    plan.groups.retain(|g| {
        if !boot_groups.contains(&g.group) {
            return true;
        }
        if g.is_bound() {
            log::info!(VFIO_BIND_GROUP = g.group; "VM {}: IOMMU group {} is bound by the config's [[device]] entries; using it as it is", vm.name, g.group);
        } else {
            problems.push(format!(
                "IOMMU group {} belongs to the config's [[device]] entries but is not bound \
                 (run `vfio-bind apply`, see `vfio-bind status`)",
                g.group
            ));
        }
        false
    });
    for g in &mut plan.groups {
        let refusals = ownership_refusals(&ctx.root, g, state, &vm.name);
        g.refusals.extend(refusals);
    }
    for g in plan.groups.iter().filter(|g| g.is_refused()) {
        for r in &g.refusals {
            problems.push(format!(
                "IOMMU group {}: {} {}",
                g.group, r.member, r.reason
            ));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    for p in &problems {
        log::error!("VM {}: {p}", vm.name);
    }
    Err(Error::Failed(format!(
        "VM {}: not attached: {}",
        vm.name,
        problems.join("; ")
    )))
}

/// Refusals beyond the guards: a group another VM holds, or whose node is open while it
/// is not this VM's.
fn ownership_refusals(root: &Root, g: &GroupPlan, state: &State, vm: &str) -> Vec<Refusal> {
    let mut out = Vec::new();
    let mut ours = false;
    for m in &g.members {
        match state.get(m.address).and_then(|r| r.vm.as_deref()) {
            Some(other) if other != vm => out.push(Refusal {
                member: m.address.to_string(),
                reason: format!(
                    "is attached to VM \"{}\" (`vfio-bind detach {}` once it stopped)",
                    crate::text::escape(other),
                    crate::text::escape(other)
                ),
            }),
            Some(_) => ours = true,
            None => {}
        }
    }
    if out.is_empty() && !ours {
        let on_vfio: Vec<PciAddress> = g
            .members
            .iter()
            .filter(|m| {
                m.driver
                    .as_ref()
                    .is_some_and(crate::driver::Driver::is_vfio)
            })
            .map(|m| m.address)
            .collect();
        for h in holders::holders(root, &holders::group_nodes(root, g.group, &on_vfio)) {
            out.push(Refusal {
                member: h.node.name.clone(),
                reason: format!(
                    "is open by pid {} ({}): another VM or program uses the group",
                    h.pid,
                    crate::text::escape(&h.comm)
                ),
            });
        }
    }
    out
}

/// True when `vm` is attached already and `plan` has nothing left to write (a repeated
/// attach: nothing to do, exit 0).
///
/// Errors: [`Error::Failed`] when it is attached (records or a handover record from an
/// earlier attach not yet detached, possibly one killed half-way) and the plan would
/// still change something: a second attach would mix its undo with the first's.
fn already_attached(
    ctx: &Context,
    vm: &VmProfile,
    state: &State,
    plan: &crate::plan::Plan,
) -> Result<bool, Error> {
    let recorded = state
        .records()
        .any(|(_, r)| r.vm.as_deref() == Some(vm.name.as_str()));
    if !recorded && record::load(&ctx.root, &vm.name)?.is_none() {
        return Ok(false);
    }
    let writes = plan
        .groups
        .iter()
        .flat_map(|g| g.members.iter())
        .any(|m| m.action.writes());
    if !writes {
        log::info!("VM {}: attached already; nothing to do", vm.name);
        return Ok(true);
    }
    let name = crate::text::escape(&vm.name);
    let line = format!(
        "VM {name}: not attached: an earlier attach of it was not detached (see `vfio-bind \
         status`); run `vfio-bind detach {name}` first"
    );
    log::error!("{line}");
    Err(Error::Failed(line))
}

/// What an attach did so far, for its undo: the groups bound in this run, and what a
/// group's own rollback could not undo.
#[derive(Default)]
struct Progress {
    bound: Vec<u32>,
    leftover: Vec<String>,
}

/// The attach's steps after planning; `done` collects what was done.
#[allow(clippy::too_many_arguments)]
fn take(
    ctx: &Context,
    vm: &VmProfile,
    groups: &[GroupPlan],
    members: &[PciAddress],
    rec: &mut VmRecord,
    state: &mut State,
    owners: &crate::owner::Owners,
    opts: &Options,
    done: &mut Progress,
) -> Result<(), String> {
    if vm.handover {
        handover::take_console(&ctx.root, vm, members, rec)?;
    }
    // Only the members about to change: one already on its target driver (a group
    // attached earlier) is not unbound, and its vfio device node may be open.
    let changing: Vec<PciAddress> = groups
        .iter()
        .flat_map(|g| g.members.iter())
        .filter(|m| m.action.writes())
        .map(|m| m.address)
        .collect();
    let nodes = holders::nodes(&ctx.root, &changing);
    if let Err(held) = holders::wait_released(&ctx.root, &nodes, opts.hold_timeout) {
        let who: Vec<String> = held.iter().map(ToString::to_string).collect();
        return Err(format!(
            "timed out after {} ms (--hold-timeout) waiting for the devices' nodes to be closed: {}",
            opts.hold_timeout.as_millis(),
            who.join(", ")
        ));
    }
    if vm.handover {
        handover::unload_modules(&ctx.root, vm, rec)?;
    }
    for g in groups {
        if crate::interrupt::requested().is_some() {
            return Err("stopped by a signal".into());
        }
        let out = apply::group::apply_group(&ctx.root, g, owners.get(&g.group), state, opts);
        if !out.changed.is_empty() && out.result.is_ok() {
            done.bound.push(g.group);
        }
        done.leftover
            .extend(out.rollback_errors.iter().map(ToString::to_string));
        if let Err(e) = out.result {
            return Err(e.to_string());
        }
    }
    Ok(())
}

/// Undo an attach that failed: release the groups it bound, last first, then give the
/// console back. Returns the errors.
fn undo_attach(
    ctx: &Context,
    done: Progress,
    rec: &VmRecord,
    state: &mut State,
    opts: &Options,
) -> Vec<String> {
    let mut errors = done.leftover;
    for &g in done.bound.iter().rev() {
        let targets = targets(&ctx.root, state, |_, r| {
            r.group == g && r.vm.as_deref() == opts.vm.as_deref()
        });
        let (outs, _) = release::release_groups(&ctx.root, targets, state, opts);
        errors.extend(
            outs.into_iter()
                .filter_map(|o| o.result.err())
                .map(|e| e.to_string()),
        );
    }
    // The console is given back only when the devices are: a GPU still on vfio-pci must
    // not get its display manager back (detach finishes both).
    if errors.is_empty() {
        errors.extend(handover::give_back(&ctx.root, rec));
    }
    if errors.is_empty() {
        if let Err(e) = record::remove(&ctx.root, &rec.vm) {
            errors.push(e.to_string());
        }
    }
    errors
}

/// Release targets for the recorded devices `pick` selects.
fn targets(
    root: &Root,
    state: &State,
    pick: impl Fn(PciAddress, &crate::state::Record) -> bool,
) -> Vec<release::Target> {
    state
        .records()
        .filter(|(a, r)| pick(*a, r))
        .map(|(a, r)| release::Target {
            group: Some(r.group),
            address: a,
            record: Some(r.clone()),
            present: root.device_dir(a).exists(),
        })
        .collect()
}

/// `vfio-bind detach VM`: exit 0 when everything recorded for the VM was given back (or
/// nothing was recorded), 1 when something could not be (logged, and kept recorded for
/// another try).
///
/// Errors: [`Error::Usage`] (exit 2) for a name that is no libvirt domain name;
/// [`Error::Lock`], [`Error::State`].
pub fn detach(ctx: &Context, vm: &str) -> Result<u8, Error> {
    if !crate::vm::name::valid(vm) {
        return Err(Error::Usage(format!(
            "\"{}\" is not a libvirt domain name",
            crate::text::escape(vm)
        )));
    }
    let recorded = State::load(&ctx.root)?;
    let has_groups = recorded.records().any(|(_, r)| r.vm.as_deref() == Some(vm));
    let rec = record::load(&ctx.root, vm)?;
    if !has_groups && rec.is_none() {
        log::info!("VM {vm}: nothing attached; nothing to detach");
        return Ok(0);
    }
    let _lock = ctx.lock(&format!("detach {vm}"))?;
    let mut state = State::load(&ctx.root)?;
    let targets = targets(&ctx.root, &state, |_, r| r.vm.as_deref() == Some(vm));
    let groups: BTreeSet<u32> = targets.iter().filter_map(|t| t.group).collect();
    let mut failed = false;
    // A group still open (the VM still running) is not given back (release_groups waits
    // --hold-timeout for it, then refuses): nor is the console then.
    let (outs, stopped) = release::release_groups(&ctx.root, targets, &mut state, &ctx.options);
    for o in &outs {
        match &o.result {
            Ok(d) => {
                log::info!(VFIO_BIND_ADDRESS = o.address.to_string().as_str(), VFIO_BIND_ACTION = "detach";
                "VM {vm}: {} back on {}", o.address, d.as_deref().unwrap_or("no driver"))
            }
            Err(_) => failed = true,
        }
    }
    if stopped.is_some() {
        return Ok(1);
    }
    if failed {
        log::error!(
            "VM {vm}: not every device was given back; the console stays handed over \
             (is the VM still running? `vfio-bind detach {vm}` tries again)"
        );
        return Ok(1);
    }
    if let Some(rec) = rec {
        let errors = handover::give_back(&ctx.root, &rec);
        if errors.is_empty() {
            record::remove(&ctx.root, vm)?;
        } else {
            failed = true;
        }
    }
    if !failed {
        let g: Vec<String> = groups.iter().map(u32::to_string).collect();
        log::info!(VFIO_BIND_ACTION = "detach"; "VM {vm}: detached{}", if g.is_empty() { String::new() } else { format!(": IOMMU group(s) {} given back", g.join(", ")) });
    }
    Ok(u8::from(failed))
}
