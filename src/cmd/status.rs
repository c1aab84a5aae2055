//! `vfio-bind status [--json]`: for each configured group, whether it is bound, each
//! member's driver, and the owner and mode of `/dev/vfio/<group>`.

use std::fmt::Write;
use std::fs;
use std::os::unix::fs::MetadataExt;

use serde::Serialize;

use super::list::{JsonDevice, JSON_VERSION};
use super::Context;
use crate::error::Error;
use crate::names::Names;
use crate::plan::{Action, Plan};
use crate::sysfs::{Host, Root};

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

/// `/dev/vfio/<group>` as found.
#[derive(Debug, Serialize)]
struct Node {
    path: String,
    present: bool,
    uid: Option<u32>,
    user: Option<String>,
    gid: Option<u32>,
    group: Option<String>,
    /// Octal string, `"0660"`.
    mode: Option<String>,
    /// Owner/group/mode as configured (`null` parts are left as udev made them).
    configured_user: Option<String>,
    configured_group: Option<String>,
    configured_mode: Option<String>,
    /// Present and matching the configured parts.
    as_configured: bool,
}

#[derive(Debug, Serialize)]
struct Member {
    #[serde(flatten)]
    device: JsonDevice,
    /// `keep`, `bind`, `set_override` or `bridge`: what `apply` would do now.
    pending: &'static str,
    /// The driver the member should be on (null for bridges).
    target: Option<String>,
    /// The config entry (1-based) naming it, or null for a member that shares the group.
    entry: Option<usize>,
}

#[derive(Debug, Serialize)]
struct Refusal {
    member: String,
    reason: String,
}

#[derive(Debug, Serialize)]
struct Group {
    group: u32,
    /// `bound`, `not_bound`, `refused` or `node_not_as_configured`.
    state: &'static str,
    members: Vec<Member>,
    refusals: Vec<Refusal>,
    node: Node,
}

#[derive(Debug, Serialize)]
struct Release {
    address: String,
    driver: Option<String>,
    previous_driver: Option<String>,
    present: bool,
}

#[derive(Debug, Serialize)]
struct Problem {
    entry: usize,
    origin: String,
    message: String,
    error: bool,
}

/// The `status --json` document (schema: vfio-bind(8), JSON OUTPUT).
#[derive(Debug, Serialize)]
struct Status {
    version: u32,
    /// Everything is as configured (the exit code is 0).
    ok: bool,
    groups: Vec<Group>,
    /// Devices vfio-bind bound that the config no longer names (`apply` releases them).
    releases: Vec<Release>,
    problems: Vec<Problem>,
}

fn build(root: &Root, host: &Host, plan: &Plan, names: &Names) -> Status {
    let mut groups = Vec::new();
    for g in &plan.groups {
        let path = root.vfio_node(g.group);
        let meta = fs::metadata(&path).ok();
        let wants_node = g
            .members
            .iter()
            .any(|m| m.action.target().is_some_and(|d| d.contains("vfio")));
        let as_configured = match &meta {
            None => !wants_node && g.ownership.is_empty(),
            Some(m) => {
                g.ownership.user.as_ref().is_none_or(|u| u.id == m.uid())
                    && g.ownership.group.as_ref().is_none_or(|x| x.id == m.gid())
                    && g.ownership.mode.is_none_or(|x| x == m.mode() & 0o7777)
            }
        };
        let pending = g.members.iter().filter(|m| m.action.writes()).count();
        let state = if g.is_refused() {
            "refused"
        } else if pending > 0 {
            "not_bound"
        } else if !as_configured && (wants_node || !g.ownership.is_empty()) {
            "node_not_as_configured"
        } else {
            "bound"
        };
        let node = Node {
            path: format!("/dev/vfio/{}", g.group),
            present: meta.is_some(),
            uid: meta.as_ref().map(|m| m.uid()),
            user: meta.as_ref().map(|m| user_name(m.uid())),
            gid: meta.as_ref().map(|m| m.gid()),
            group: meta.as_ref().map(|m| group_name(m.gid())),
            mode: meta.as_ref().map(|m| format!("{:04o}", m.mode() & 0o7777)),
            configured_user: g.ownership.user.as_ref().map(|u| u.name.clone()),
            configured_group: g.ownership.group.as_ref().map(|u| u.name.clone()),
            configured_mode: g.ownership.mode.map(|m| format!("{m:04o}")),
            as_configured,
        };
        let members = g
            .members
            .iter()
            .map(|m| Member {
                device: JsonDevice::new(&host.devices[&m.address], names),
                pending: match m.action {
                    Action::Bridge => "bridge",
                    Action::Keep { .. } => "keep",
                    Action::SetOverride { .. } => "set_override",
                    Action::Bind { .. } => "bind",
                },
                target: m.action.target().map(str::to_string),
                entry: m.entry,
            })
            .collect();
        groups.push(Group {
            group: g.group,
            state,
            members,
            refusals: g
                .refusals
                .iter()
                .map(|r| Refusal {
                    member: r.member.clone(),
                    reason: r.reason.clone(),
                })
                .collect(),
            node,
        });
    }
    let releases: Vec<Release> = plan
        .releases
        .iter()
        .map(|r| Release {
            address: r.address.to_string(),
            driver: r.driver.clone(),
            previous_driver: r.record.previous_driver.clone(),
            present: r.present,
        })
        .collect();
    let ok = groups.iter().all(|g| g.state == "bound") && releases.is_empty() && !plan.has_errors();
    Status {
        version: JSON_VERSION,
        ok,
        groups,
        releases,
        problems: plan
            .problems
            .iter()
            .map(|p| Problem {
                entry: p.entry,
                origin: p.origin.to_string(),
                message: p.message.clone(),
                error: p.error,
            })
            .collect(),
    }
}

fn render(st: &Status) -> String {
    let mut s = String::new();
    if st.groups.is_empty() && st.problems.is_empty() && st.releases.is_empty() {
        s.push_str("Nothing configured.\n");
    }
    for g in &st.groups {
        let verdict = match g.state {
            "bound" => "bound".to_string(),
            "refused" => "refused".to_string(),
            "not_bound" => format!(
                "not bound ({} of {} members to change)",
                g.members
                    .iter()
                    .filter(|m| m.pending == "bind" || m.pending == "set_override")
                    .count(),
                g.members.len()
            ),
            _ => "bound, /dev/vfio node not as configured".to_string(),
        };
        let _ = writeln!(s, "IOMMU group {}: {verdict}", g.group);
        for m in &g.members {
            let d = &m.device;
            let now = d.driver.as_deref().unwrap_or("none");
            let state = match (m.pending, m.target.as_deref()) {
                ("bridge", _) => format!("bridge, driver {now}"),
                ("set_override", Some(t)) => format!("driver {now}, driver_override not {t}"),
                ("bind", Some(t)) => format!("driver {now}, wants {t}"),
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
                super::list::fit(&d.class_name, 40)
            );
            if let Some(v) = &d.vendor_name {
                let name = match &d.device_name {
                    Some(n) => format!("{v} {n}"),
                    None => v.clone(),
                };
                let _ = writeln!(s, "      {}", super::list::fit(&name, 74));
            }
            let _ = writeln!(s, "      {state}");
        }
        for r in &g.refusals {
            let _ = writeln!(s, "  refused: {} {}", r.member, r.reason);
        }
        let n = &g.node;
        if n.present {
            let mut configured = Vec::new();
            if let Some(u) = &n.configured_user {
                configured.push(format!("owner {u}"));
            }
            if let Some(u) = &n.configured_group {
                configured.push(format!("group {u}"));
            }
            if let Some(m) = &n.configured_mode {
                configured.push(format!("mode {m}"));
            }
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
        } else {
            let _ = writeln!(s, "  {}: absent", n.path);
        }
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
pub fn run(ctx: &Context, as_json: bool) -> Result<u8, Error> {
    let (_config, _lock, host, plan) = ctx.plan(None)?;
    let names = Names::load(
        &ctx.root,
        plan.groups
            .iter()
            .flat_map(|g| g.members.iter().map(|m| m.id)),
    );
    let st = build(&ctx.root, &host, &plan, &names);
    if as_json {
        println!("{}", serde_json::to_string_pretty(&st).expect("serializes"));
    } else {
        print!("{}", render(&st));
    }
    Ok(u8::from(!st.ok))
}
