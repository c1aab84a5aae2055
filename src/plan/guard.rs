//! The guards: a pure pass over a plan that refuses, with the member, the reason and the
//! fix, every group whose writes would pull the host's rug or cannot make the group
//! viable. One small function per guard. Only members that would be written are judged:
//! a member already in place harms nothing.
//!
//! - a member that is not a PCI device (`Documentation/driver-api/vfio.rst`: vfio-bind
//!   cannot make such a group viable);
//! - an unknown PCI header type (vfio-pci takes header type 0 only);
//! - storage beneath a member: a block device mounted, active as swap, or held by
//!   dm/md/LVM ([`crate::host::usage`]);
//! - a network interface beneath a member that is up and in use;
//! - the boot VGA device, unless the entry that names it sets `allow_boot_vga`.

use crate::host::snapshot::{Device, Host, IommuGroup};
use crate::host::usage::{Use, Uses};
use crate::pci::HeaderType;
use crate::plan::model::{GroupPlan, MemberPlan, Plan, Refusal};

/// Fill in the refusals of every group of `plan`. `uses` may be empty when no group
/// needs a write ([`Plan::needs_writes`]): the host-use guards judge written members only.
pub fn refuse(plan: &mut Plan, host: &Host, uses: &Uses) {
    for g in &mut plan.groups {
        g.refusals = refusals(g, host, uses);
    }
}

/// The refusals of one group: non-PCI members first, then each written member's, in
/// address order.
pub fn refusals(g: &GroupPlan, host: &Host, uses: &Uses) -> Vec<Refusal> {
    let mut out: Vec<Refusal> = host.groups.get(&g.group).map_or(Vec::new(), non_pci);
    for m in g.members.iter().filter(|m| m.action.writes()) {
        let Some(dev) = host.devices.get(&m.address) else {
            continue;
        };
        out.extend(header_type(m, dev));
        out.extend(storage(m, uses));
        out.extend(network(m, uses));
        out.extend(boot_vga(m, dev));
    }
    out
}

fn refusal(m: &MemberPlan, reason: impl Into<String>) -> Refusal {
    Refusal {
        member: m.address.to_string(),
        reason: reason.into(),
    }
}

/// Members that are not PCI devices.
pub fn non_pci(group: &IommuGroup) -> Vec<Refusal> {
    group
        .other
        .iter()
        .map(|o| Refusal {
            member: o.clone(),
            reason: "is not a PCI device; vfio-bind cannot make this group viable".into(),
        })
        .collect()
}

/// A header type that is neither an endpoint nor a bridge.
pub fn header_type(m: &MemberPlan, dev: &Device) -> Option<Refusal> {
    let HeaderType::Other(t) = dev.header else {
        return None;
    };
    Some(refusal(
        m,
        format!(
            "has PCI header type {t:#04x} (not an endpoint or a bridge; vfio-pci only takes \
             header type 0)"
        ),
    ))
}

/// Block devices beneath the member that the host uses.
pub fn storage(m: &MemberPlan, uses: &Uses) -> Vec<Refusal> {
    uses.get(&m.address)
        .into_iter()
        .flatten()
        .filter(|u| !matches!(u, Use::NetUp { .. }))
        .map(|u| refusal(m, u.to_string()))
        .collect()
}

/// Network interfaces beneath the member that are up and in use.
pub fn network(m: &MemberPlan, uses: &Uses) -> Vec<Refusal> {
    uses.get(&m.address)
        .into_iter()
        .flatten()
        .filter(|u| matches!(u, Use::NetUp { .. }))
        .map(|u| refusal(m, u.to_string()))
        .collect()
}

/// The boot VGA device passes only when the entry that names it allows it; as a mere
/// group companion it is always refused.
pub fn boot_vga(m: &MemberPlan, dev: &Device) -> Option<Refusal> {
    (dev.boot_vga && !m.allow_boot_vga).then(|| {
        refusal(
            m,
            "is the boot VGA device (the host's console); set allow_boot_vga = true on its \
             entry to pass it through (single-GPU passthrough)",
        )
    })
}
