//! `vfio-bind apply [--dry-run]`: bind everything the config names and release what it
//! no longer names (the unit's ExecStart and ExecReload).

use super::{log_problems, Context, Planned};
use crate::apply::{self, udev};
use crate::error::Error;
use crate::report;

/// Plan and apply under the run lock. With `dry_run`, print the plan to stdout and
/// write nothing (no lock either). Exit 0 when every group ends bound and every release
/// succeeded, 1 when a group failed or was refused, a release failed, or a `required`
/// entry matched nothing.
///
/// Errors: as [`Context::plan`].
pub fn run(ctx: &Context, dry_run: bool) -> Result<u8, Error> {
    if dry_run {
        let p = ctx.plan(None)?;
        print!("{}", p.plan);
        return Ok(u8::from(p.plan.has_errors()));
    }
    let Planned {
        config,
        lock: _lock,
        mut state,
        plan,
        owners,
        ..
    } = ctx.plan(Some("apply"))?;
    if config.entries.is_empty() {
        log::info!("no [[device]] entries configured; nothing to bind");
    }
    log_problems(&plan);
    for s in crate::host::initramfs::stale(&ctx.root, &config.files) {
        log::warn!("{s}");
    }
    let (released, outcomes) = apply::apply(&ctx.root, &plan, &owners, &mut state, &ctx.options);
    let mut changed = released.len();
    for o in &outcomes {
        changed += o.changed.len() + usize::from(o.node_changed);
    }
    // The rules keep the groups that ended as planned and, when a signal stopped the run,
    // the groups not reached that were bound before it.
    let rules = udev::sync(
        &ctx.root,
        apply::kept_nodes(&plan, &outcomes, &owners),
        &config.entries,
    );
    if let Err(e) = &rules {
        log::error!("{e}");
    }
    let mut summary = report::summary(&plan, &released, &outcomes);
    let skipped = plan.groups.len() - outcomes.len();
    let interrupted = skipped > 0
        || outcomes
            .iter()
            .any(|o| matches!(o.result, Err(apply::ApplyError::Interrupted { .. })));
    if let Some(signal) = crate::interrupt::requested().filter(|_| interrupted) {
        log::error!(
            "stopped by {signal}: the group in progress was rolled back; {skipped} of {} \
             groups not applied (run `vfio-bind apply` again)",
            plan.groups.len()
        );
        summary.push_str(&format!("; stopped by {signal}, {skipped} not applied"));
    }
    let failed = outcomes.iter().any(|o| o.result.is_err())
        || released.iter().any(|r| r.result.is_err())
        || rules.is_err()
        || skipped > 0;
    if changed == 0 && !failed && !plan.groups.is_empty() {
        log::info!("{summary} (already in place, nothing changed)");
    } else {
        log::info!("{summary}");
    }
    report::notify_status(&summary);
    Ok(u8::from(failed || plan.has_errors()))
}
