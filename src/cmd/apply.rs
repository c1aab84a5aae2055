//! `vfio-bind apply [--dry-run]`: bind everything the config names and release what it
//! no longer names (the unit's ExecStart and ExecReload).

use super::{log_problems, Context};
use crate::apply;
use crate::error::Error;
use crate::report;

/// Plan and apply under the run lock. With `dry_run`, print the plan to stdout and
/// write nothing (no lock either). Exit 0 when every group ends bound and every release
/// succeeded, 1 when a group failed or was refused, a release failed, or a `required`
/// entry matched nothing.
pub fn run(ctx: &Context, dry_run: bool) -> Result<u8, Error> {
    if dry_run {
        let (_config, _lock, _host, plan) = ctx.plan(None)?;
        print!("{plan}");
        return Ok(u8::from(plan.has_errors()));
    }
    let (config, _lock, mut host, plan) = ctx.plan(Some("apply"))?;
    if config.entries.is_empty() {
        log::info!("no [[device]] entries configured; nothing to bind");
    }
    log_problems(&plan);
    let (released, outcomes) = apply::apply(&ctx.root, &plan, &mut host.state, &ctx.options);
    let mut changed = released.len();
    for o in &outcomes {
        changed += o.changed.len() + usize::from(o.node_changed);
    }
    let rules = apply::sync_udev_rules(&ctx.root, &plan, &outcomes);
    if let Err(e) = &rules {
        log::error!("{e}");
    }
    let summary = report::summary(&plan, &released, &outcomes);
    let failed = outcomes.iter().any(|o| o.result.is_err())
        || released.iter().any(|r| r.result.is_err())
        || rules.is_err();
    if changed == 0 && !failed && !plan.groups.is_empty() {
        log::info!("{summary} (already in place, nothing changed)");
    } else {
        log::info!("{summary}");
    }
    report::notify_status(&summary);
    Ok(u8::from(failed || plan.has_errors()))
}
