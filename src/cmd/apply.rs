//! `vfio-bind apply [--dry-run]`: bind everything the config names (the unit's
//! ExecStart and ExecReload).

use super::{log_problems, Context};
use crate::apply;
use crate::error::Error;
use crate::report;

/// Plan and apply. With `dry_run`, print the plan to stdout and write nothing.
/// Exit 0 when every group ends bound, 1 when a group failed or was refused or a
/// `required` entry matched nothing.
pub fn run(ctx: &Context, dry_run: bool) -> Result<u8, Error> {
    let (config, _host, plan) = ctx.plan()?;
    if dry_run {
        print!("{plan}");
        return Ok(u8::from(plan.has_errors()));
    }
    if config.entries.is_empty() {
        log::info!("no [[device]] entries configured; nothing to bind");
    }
    log_problems(&plan);
    let outcomes = apply::apply(&ctx.root, &plan, &ctx.options);
    let mut changed = 0;
    for o in &outcomes {
        changed += o.changed.len() + usize::from(o.node_changed);
    }
    let summary = report::summary(&plan, &outcomes);
    if changed == 0 && outcomes.iter().all(|o| o.result.is_ok()) && !plan.groups.is_empty() {
        log::info!("{summary} (already in place, nothing changed)");
    } else {
        log::info!("{summary}");
    }
    report::notify_status(&summary);
    let failed = outcomes.iter().any(|o| o.result.is_err());
    Ok(u8::from(failed || plan.has_errors()))
}
