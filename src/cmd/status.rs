//! `vfio-bind status [--json]`: for each configured group, whether it is bound, each
//! member's driver, and the owner and mode of `/dev/vfio/<group>`; then each `[[vm]]`
//! profile: attached or not, the groups its attach bound, the console handover steps.

use std::fmt::Write;

use super::Context;
use crate::error::Error;
use crate::host::nodes::NodeState;
use crate::names::Names;
use crate::output::json::{Group, GroupState, Member, Node, Pending, Release, Status, Vm};
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

fn render_vm(s: &mut String, vm: &Vm) {
    let name = crate::text::escape(&vm.name);
    let profile = if vm.configured {
        ""
    } else {
        " (no [[vm]] profile now)"
    };
    if !vm.attached {
        let _ = writeln!(s, "VM {name}: not attached{profile}");
        return;
    }
    let groups: Vec<String> = vm.groups.iter().map(u32::to_string).collect();
    let _ = writeln!(
        s,
        "VM {name}: attached{profile}{}",
        if groups.is_empty() {
            String::new()
        } else {
            format!(", IOMMU group {}", groups.join(", "))
        }
    );
    for d in &vm.devices {
        let _ = writeln!(
            s,
            "  {} driver {}, was {}",
            d.address,
            d.driver.as_deref().unwrap_or("none"),
            d.previous_driver.as_deref().unwrap_or("none")
        );
    }
    if !vm.handover.is_empty() {
        let _ = writeln!(s, "  console handed over: {}", vm.handover.join(", "));
    }
}

/// Each profiled or recorded VM, by name.
fn vms(p: &super::Planned, root: &crate::root::Root) -> Vec<Vm> {
    use crate::vm::record::{self, Step};
    let records = record::list(root);
    let mut names: Vec<String> = p.config.vms.iter().map(|v| v.name.clone()).collect();
    names.extend(p.state.records().filter_map(|(_, r)| r.vm.clone()));
    names.extend(records.iter().map(|r| r.vm.clone()));
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let devices: Vec<Release> = p
                .state
                .records()
                .filter(|(_, r)| r.vm.as_deref() == Some(name.as_str()))
                .map(|(a, r)| {
                    let dev = p.host.devices.get(&a);
                    Release {
                        address: a.to_string(),
                        driver: dev.and_then(|d| d.driver.as_deref().map(str::to_string)),
                        previous_driver: r.previous_driver.as_deref().map(str::to_string),
                        present: dev.is_some(),
                    }
                })
                .collect();
            let mut groups: Vec<u32> = p
                .state
                .records()
                .filter(|(_, r)| r.vm.as_deref() == Some(name.as_str()))
                .map(|(_, r)| r.group)
                .collect();
            groups.dedup();
            let handover: Vec<String> = records
                .iter()
                .filter(|r| r.vm == name)
                .flat_map(|r| r.steps.iter())
                .map(|st| match st {
                    Step::Unit { name } => format!("unit {name}"),
                    Step::Vtconsole { name } => format!("vtconsole {name}"),
                    Step::Framebuffer { device, .. } => format!("framebuffer {device}"),
                    Step::Module { name } => format!("module {name}"),
                })
                .collect();
            Vm {
                configured: p.config.vm(&name).is_some(),
                attached: !devices.is_empty() || !handover.is_empty(),
                name,
                groups,
                devices,
                handover,
            }
        })
        .collect()
}

fn render(st: &Status) -> String {
    let mut s = String::new();
    if st.groups.is_empty() && st.problems.is_empty() && st.releases.is_empty() && st.vms.is_empty()
    {
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
    for vm in &st.vms {
        render_vm(&mut s, vm);
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
    let mut st = Status::new(&p.plan, groups);
    st.vms = vms(&p, &ctx.root);
    if as_json {
        println!("{}", serde_json::to_string_pretty(&st).expect("serializes"));
    } else {
        print!("{}", render(&st));
    }
    Ok(u8::from(!st.ok))
}
