//! The plan as `check` and `apply --dry-run` print it: releases, then each group with its
//! verdict, members, refusals and node ownership, then the problems.

use std::fmt;

use crate::plan::model::{Action, GroupPlan, MemberPlan, Plan, ReleasePlan, Verdict};

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.groups.is_empty() && self.problems.is_empty() && self.releases.is_empty() {
            return writeln!(f, "Nothing configured: no device will be bound.");
        }
        for r in &self.releases {
            release(f, r)?;
        }
        for g in &self.groups {
            group(f, g)?;
        }
        for p in &self.problems {
            let kind = if p.error { "error" } else { "warning" };
            writeln!(
                f,
                "{kind}: {}: device[{}]: {}",
                p.origin, p.entry, p.message
            )?;
        }
        Ok(())
    }
}

fn release(f: &mut fmt::Formatter<'_>, r: &ReleasePlan) -> fmt::Result {
    let back = r.record.previous_driver.as_deref().unwrap_or("no driver");
    if r.present {
        writeln!(
            f,
            "Release {}: no longer configured; {} -> {back}",
            r.address,
            r.driver.as_deref().unwrap_or("no driver")
        )
    } else {
        writeln!(f, "Forget {}: bound earlier, no longer present", r.address)
    }
}

/// How `check` words a verdict.
pub fn verdict_text(v: Verdict) -> &'static str {
    match v {
        Verdict::Refused => "refused, nothing will be changed",
        Verdict::Bound => "already bound, nothing to do",
        Verdict::NodePending => "bound; its /dev/vfio node will be set",
        Verdict::Pending { .. } => "will be bound",
    }
}

fn group(f: &mut fmt::Formatter<'_>, g: &GroupPlan) -> fmt::Result {
    writeln!(f, "IOMMU group {}: {}", g.group, verdict_text(g.verdict()))?;
    for m in &g.members {
        member(f, m)?;
    }
    for r in &g.refusals {
        writeln!(f, "  refused: {} {}", r.member, r.reason)?;
    }
    if !g.ownership.is_empty() {
        // A group about to be bound gets its node set anyway; say it only when the
        // node is all that apply will change.
        let pending = if g.verdict() == Verdict::NodePending {
            " (will be set)"
        } else {
            ""
        };
        writeln!(f, "  /dev/vfio/{}: {}{pending}", g.group, g.ownership)?;
    }
    Ok(())
}

fn member(f: &mut fmt::Formatter<'_>, m: &MemberPlan) -> fmt::Result {
    let now = m.driver.as_deref().unwrap_or("no driver");
    let what = match &m.action {
        Action::Bridge => format!("bridge, untouched ({now})"),
        Action::Keep { driver } => format!("on {driver}"),
        Action::SetOverride { driver } => format!("on {driver}; set driver_override to {driver}"),
        Action::Bind { driver } => format!("{now} -> {driver}"),
    };
    let why = match m.entry {
        Some(i) => format!("device[{i}]"),
        None => "shares the group".to_string(),
    };
    writeln!(
        f,
        "  {} [{}] {}: {what}  ({why})",
        m.address,
        m.id,
        m.class.name()
    )
}
