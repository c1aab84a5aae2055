//! `vfio-bind claim`: the claim in early boot. The initramfs integrations (initramfs-tools
//! `init-top`, dracut's first `cmdline` hook or initrd unit, mkinitcpio's early hook or unit)
//! run it before udev's coldplug and before any listed module is loaded.
//!
//! It reads the config (no user or group names are resolved: the initramfs has no user
//! database, and ownership of `/dev/vfio/<group>` waits for the real root's `apply`),
//! expands it to IOMMU groups, writes every override first, then loads the target
//! drivers (vfio-pci's registration binds the overridden devices), then runs the bind
//! protocol for what is left (a member a built-in driver already holds is unbound and
//! reprobed), group by group, all-or-nothing, and records what it claimed, marked early,
//! in `/run/vfio-bind/` (`/run` is moved into the real root at switch_root). The guards
//! that need the real root (mounts, swap, interfaces) have nothing to judge yet; the boot
//! VGA guard holds, and a group is refused when a storage or network controller no entry
//! names shares it (it may carry the root file system; the boot-time `apply` decides). A
//! group whose target driver does not register gets its overrides back. Per-device lines
//! are debug messages here: the kernel log keeps at most 10 lines per 5 s from a writer,
//! so the summary and the errors come first. `vfio-bind=off` on the kernel command line
//! skips it all.

use super::{log_problems, Context};
use crate::apply::{self, early, Options};
use crate::config;
use crate::error::Error;
use crate::host::usage::Uses;
use crate::owner::Owners;
use crate::plan::{self, guard};
use crate::report;
use crate::state::State;

/// `vfio-bind claim --files`: print the config files the claim reads, one per line (what
/// an initramfs hook copies into the image). Exit 0 when the config names at least one
/// device, 1 when it names none (the hook then leaves vfio-bind out).
///
/// Errors: [`Error::Config`] (exit 2).
pub fn files(ctx: &Context) -> Result<u8, Error> {
    let config = config::load(&ctx.config)?;
    for f in &config.files {
        println!("{}", f.display());
    }
    Ok(u8::from(config.entries.is_empty()))
}

/// `vfio-bind claim --modules`: print the kernel modules of the drivers the config binds
/// to (each entry's driver, and `vfio-pci` for the members a variant driver does not
/// take), one per line, sorted; what an initramfs hook adds to the image besides
/// `vfio_iommu_type1`. A driver's module has its name (`vfio-pci`, `pci-stub`,
/// `mlx5_vfio_pci`; modprobe treats `-` and `_` alike). Exit 0.
///
/// Errors: [`Error::Config`] (exit 2).
pub fn modules(ctx: &Context) -> Result<u8, Error> {
    let config = config::load(&ctx.config)?;
    let mut names: Vec<String> = config
        .entries
        .iter()
        .flat_map(|e| [e.driver.clone(), e.driver.for_companions()])
        .map(|d| d.to_string())
        .collect();
    names.sort();
    names.dedup();
    for n in names {
        println!("{n}");
    }
    Ok(0)
}

/// Claim the configured groups as described in the module documentation. Exit 0 when
/// every group ends bound (or the command line says `vfio-bind=off`), 1 when a group
/// failed or was refused.
///
/// Errors: [`Error::Config`] and [`Error::Plan`] (exit 2, nothing touched),
/// [`Error::Lock`], [`Error::Host`], [`Error::NoIommu`], [`Error::State`].
pub fn run(ctx: &Context) -> Result<u8, Error> {
    if crate::cmdline::off(&ctx.root) {
        log::warn!(
            "{} on the kernel command line: not claiming any device",
            crate::cmdline::OFF
        );
        return Ok(0);
    }
    let config = config::load(&ctx.config)?;
    if config.entries.is_empty() {
        log::info!("no [[device]] entries configured; nothing to claim");
        return Ok(0);
    }
    if ctx.lock_would_create() {
        plan::plan(&config, &ctx.host()?, &State::load(&ctx.root)?)?;
    }
    let _lock = ctx.lock("claim")?;
    let opts = Options {
        early: true,
        ..ctx.options.clone()
    };
    let plan_now = |state: &State| -> Result<plan::Plan, Error> {
        let host = ctx.host()?;
        let mut plan = plan::plan(&config, &host, state)?;
        guard::refuse(&mut plan, &host, &Uses::new());
        early::refuse_unnamed_storage_and_network(&mut plan);
        Ok(plan)
    };
    let mut state = State::load(&ctx.root)?;
    let first = plan_now(&state)?;
    log_problems(&first);
    early::write_overrides(&ctx.root, &first, &mut state);
    early::load_drivers(&ctx.root, &first, &opts);
    early::undo_unregistered(&ctx.root, &first, &mut state);
    // What registering the drivers bound is in place now; the rest takes the protocol.
    let plan = plan_now(&state)?;
    let (released, outcomes) = apply::apply(&ctx.root, &plan, &Owners::new(), &mut state, &opts);
    let summary = report::summary(&plan, &released, &outcomes);
    log::info!("claimed early: {summary}");
    let failed = outcomes.iter().any(|o| o.result.is_err())
        || released.iter().any(|r| r.result.is_err())
        || outcomes.len() < plan.groups.len();
    Ok(u8::from(failed || plan.has_errors()))
}
