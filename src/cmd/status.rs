//! `vfio-bind status`: for each configured group, whether it is bound, each member's
//! driver, and the ownership of `/dev/vfio/<group>`.

use std::fmt::Write;
use std::fs;
use std::os::unix::fs::MetadataExt;

use super::Context;
use crate::error::Error;
use crate::plan::{Action, Plan};
use crate::sysfs::Root;

fn user_name(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(u)) => u.name,
        _ => uid.to_string(),
    }
}

fn group_name(gid: u32) -> String {
    match nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid)) {
        Ok(Some(g)) => g.name,
        _ => gid.to_string(),
    }
}

/// Render the status of `plan` (made from the current snapshot) and return it with
/// whether everything is as configured.
pub fn render(root: &Root, plan: &Plan) -> (String, bool) {
    let mut s = String::new();
    let mut all_ok = !plan.has_errors();
    if plan.groups.is_empty() && plan.problems.is_empty() && plan.releases.is_empty() {
        s.push_str("Nothing configured.\n");
    }
    for r in &plan.releases {
        all_ok = false;
        let _ = writeln!(
            s,
            "{}: bound by vfio-bind earlier, no longer configured (driver {}); `vfio-bind apply` releases it",
            r.address,
            r.driver.as_deref().unwrap_or("none")
        );
    }
    for g in &plan.groups {
        let pending = g.members.iter().filter(|m| m.action.writes()).count();
        let node = root.vfio_node(g.group);
        let meta = fs::metadata(&node).ok();
        let node_ok = match &meta {
            None => !g
                .members
                .iter()
                .any(|m| m.action.target().is_some_and(|d| d.contains("vfio"))),
            Some(m) => {
                g.ownership.user.as_ref().is_none_or(|u| u.id == m.uid())
                    && g.ownership.group.as_ref().is_none_or(|x| x.id == m.gid())
                    && g.ownership.mode.is_none_or(|x| x == m.mode() & 0o7777)
            }
        };
        let verdict = if g.is_refused() {
            "refused".to_string()
        } else if pending > 0 {
            format!(
                "not bound ({pending} of {} members to change)",
                g.members.len()
            )
        } else if !node_ok {
            "bound, /dev/vfio node not as configured".to_string()
        } else {
            "bound".to_string()
        };
        all_ok &= verdict == "bound";
        let _ = writeln!(s, "IOMMU group {}: {verdict}", g.group);
        for m in &g.members {
            let now = m.driver.as_deref().unwrap_or("none");
            let state = match &m.action {
                Action::Bridge => format!("bridge, driver {now}"),
                Action::Keep { .. } => format!("driver {now}"),
                Action::SetOverride { driver } => {
                    format!("driver {now}, driver_override not {driver}")
                }
                Action::Bind { driver } => format!("driver {now}, wants {driver}"),
            };
            let why = m
                .entry
                .map_or("shares the group".to_string(), |i| format!("device[{i}]"));
            let _ = writeln!(
                s,
                "  {} [{}] {}: {state}  ({why})",
                m.address,
                m.id,
                m.class.name()
            );
        }
        for r in &g.refusals {
            let _ = writeln!(s, "  refused: {} {}", r.member, r.reason);
        }
        match meta {
            Some(m) => {
                let _ = writeln!(
                    s,
                    "  /dev/vfio/{}: {}:{} {:04o}{}",
                    g.group,
                    user_name(m.uid()),
                    group_name(m.gid()),
                    m.mode() & 0o7777,
                    if g.ownership.is_empty() {
                        String::new()
                    } else {
                        format!("  (configured: {})", g.ownership)
                    }
                );
            }
            None => {
                let _ = writeln!(s, "  /dev/vfio/{}: absent", g.group);
            }
        }
    }
    for p in &plan.problems {
        let kind = if p.error { "error" } else { "warning" };
        let _ = writeln!(
            s,
            "{kind}: {}: device[{}]: {}",
            p.origin, p.entry, p.message
        );
    }
    (s, all_ok)
}

/// Print the status. Exit 0 when every configured group is bound with its node as
/// configured; 1 otherwise.
pub fn run(ctx: &Context) -> Result<u8, Error> {
    let (_config, _lock, _host, plan) = ctx.plan(None)?;
    let (text, ok) = render(&ctx.root, &plan);
    print!("{text}");
    Ok(u8::from(!ok))
}
