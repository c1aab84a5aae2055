//! `vfio-bind status [--json]`: for each configured group, whether it is bound, each
//! member's driver, and the owner and mode of `/dev/vfio/<group>`.

use std::fmt::Write;

use super::Context;
use crate::error::Error;
use crate::host::nodes::NodeState;
use crate::names::Names;
use crate::output::json::{Group, GroupState, Member, Node, Pending, Status};
use crate::owner::Owners;
use crate::plan::model::GroupPlan;
use crate::text::fit;
use crate::users::{Kind, Users};

/// `/dev/vfio/<group>` as found (`meta`, from the planning's read), against its
/// configured ownership.
fn node(users: &Users, g: &GroupPlan, owners: &Owners, meta: Option<NodeState>) -> Node {
    let want = owners.get(&g.group).copied().unwrap_or_default();
    let as_configured = match &meta {
        None => !g.has_vfio_node() && g.ownership.is_empty(),
        Some(m) => want.matches(m.uid, m.gid, m.mode),
    };
    Node {
        path: format!("/dev/vfio/{}", g.group),
        present: meta.is_some(),
        uid: meta.as_ref().map(|m| m.uid),
        user: meta.as_ref().map(|m| users.name(Kind::User, m.uid)),
        gid: meta.as_ref().map(|m| m.gid),
        group: meta.as_ref().map(|m| users.name(Kind::Group, m.gid)),
        mode: meta.as_ref().map(|m| format!("{:04o}", m.mode)),
        configured_user: g.ownership.user.as_ref().map(|u| u.to_string()),
        configured_group: g.ownership.group.as_ref().map(|u| u.to_string()),
        configured_mode: g.ownership.mode.map(|m| format!("{m:04o}")),
        as_configured,
    }
}

fn verdict(g: &Group) -> String {
    match g.state {
        GroupState::Bound => "bound".to_string(),
        GroupState::Refused => "refused".to_string(),
        GroupState::NotBound => format!(
            "not bound ({} of {} members to change)",
            g.members
                .iter()
                .filter(|m| matches!(m.pending, Pending::Bind | Pending::SetOverride))
                .count(),
            g.members.len()
        ),
        GroupState::NodeNotAsConfigured => "bound, /dev/vfio node not as configured".to_string(),
    }
}

fn render_member(s: &mut String, m: &Member) {
    let d = &m.device;
    let now = d.driver.as_deref().unwrap_or("none");
    let state = match (m.pending, m.target.as_deref()) {
        (Pending::Bridge, _) => format!("bridge, driver {now}"),
        (Pending::SetOverride, Some(t)) => format!("driver {now}, driver_override not {t}"),
        (Pending::Bind, Some(t)) => format!("driver {now}, wants {t}"),
        _ if m.early => format!("driver {now}, claimed early (in the initramfs)"),
        _ => format!("driver {now}"),
    };
    let why = m
        .entry
        .map_or("shares the group".to_string(), |i| format!("device[{i}]"));
    let _ = writeln!(
        s,
        "  {} [{}] {}  ({why})",
        d.address,
        d.id,
        fit(&d.class_name, 40)
    );
    if let Some(v) = &d.vendor_name {
        let name = match &d.device_name {
            Some(n) => format!("{v} {n}"),
            None => v.clone(),
        };
        let _ = writeln!(s, "      {}", fit(&name, 74));
    }
    let _ = writeln!(s, "      {state}");
}

fn render_node(s: &mut String, n: &Node) {
    if !n.present {
        let _ = writeln!(s, "  {}: absent", n.path);
        return;
    }
    let configured: Vec<String> = [
        n.configured_user.as_ref().map(|u| format!("owner {u}")),
        n.configured_group.as_ref().map(|u| format!("group {u}")),
        n.configured_mode.as_ref().map(|m| format!("mode {m}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    let _ = writeln!(
        s,
        "  {}: {}:{} {}{}",
        n.path,
        n.user.as_deref().unwrap_or("?"),
        n.group.as_deref().unwrap_or("?"),
        n.mode.as_deref().unwrap_or("?"),
        if configured.is_empty() {
            String::new()
        } else {
            format!("  (configured: {})", configured.join(", "))
        }
    );
}

fn render(st: &Status) -> String {
    let mut s = String::new();
    if st.groups.is_empty() && st.problems.is_empty() && st.releases.is_empty() {
        s.push_str("Nothing configured.\n");
    }
    for g in &st.groups {
        let _ = writeln!(s, "IOMMU group {}: {}", g.group, verdict(g));
        for m in &g.members {
            render_member(&mut s, m);
        }
        for r in &g.refusals {
            let _ = writeln!(s, "  refused: {} {}", r.member, r.reason);
        }
        render_node(&mut s, &g.node);
    }
    for r in &st.releases {
        let _ = writeln!(
            s,
            "{}: bound by vfio-bind earlier, no longer configured (driver {}); `vfio-bind apply` releases it",
            r.address,
            r.driver.as_deref().unwrap_or("none")
        );
    }
    for p in &st.problems {
        let kind = if p.error { "error" } else { "warning" };
        let _ = writeln!(
            s,
            "{kind}: {}: device[{}]: {}",
            p.origin, p.entry, p.message
        );
    }
    s
}

/// Print the status (text or JSON). Exit 0 when every configured group is bound with its
/// node as configured and nothing is left to release; 1 otherwise.
///
/// Errors: as [`Context::plan`].
pub fn run(ctx: &Context, as_json: bool) -> Result<u8, Error> {
    let p = ctx.plan(None)?;
    let names = Names::load(
        &ctx.root,
        p.plan
            .groups
            .iter()
            .flat_map(|g| g.members.iter().map(|m| m.id)),
    );
    let users = ctx.users();
    let groups = p
        .plan
        .groups
        .iter()
        .map(|g| {
            let meta = p.nodes.get(&g.group).copied().flatten();
            let n = node(&users, g, &p.owners, meta);
            Group::new(g, &p.host, &p.state, &names, n)
        })
        .collect();
    let st = Status::new(&p.plan, groups);
    if as_json {
        println!("{}", serde_json::to_string_pretty(&st).expect("serializes"));
    } else {
        print!("{}", render(&st));
    }
    Ok(u8::from(!st.ok))
}
