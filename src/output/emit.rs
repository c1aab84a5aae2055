//! `vfio-bind emit`'s text: the configured groups as libvirt `<hostdev>` elements or QEMU
//! `-device vfio-pci` arguments, so no one hand-translates `01:00.0` into XML. Pure: from
//! the planned groups.
//!
//! - libvirt (`docs/formatdomain.rst`, "Host device assignment"): one `<hostdev
//!   mode='subsystem' type='pci' managed='no'>` per non-bridge member, in group then
//!   address order. `managed='no'`: vfio-bind binds the group, and libvirt refuses to
//!   start the domain when it is not bound (a fail-safe, LIBVIRT.md).
//! - QEMU (its `vfio-pci` device, `hw/vfio/pci.c`: `-device vfio-pci,host=`): each host slot on
//!   its own `pcie-root-port` (a q35 machine), its functions at the same function numbers
//!   with `multifunction=on` on function 0 when the slot has several, as the guest
//!   drivers of a GPU and its HDMI audio expect. One argument a line, continued with `\`.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::names::Names;
use crate::pci::PciAddress;
use crate::plan::model::{Action, GroupPlan};

/// The first chassis number of the root ports `qemu` adds (chosen high to stay clear of
/// the ones a VM definition numbers from 1; QEMU takes 0..=255).
pub const FIRST_CHASSIS: u32 = 128;

fn members(groups: &[GroupPlan]) -> impl Iterator<Item = (&GroupPlan, &crate::plan::MemberPlan)> {
    groups
        .iter()
        .flat_map(|g| g.members.iter().map(move |m| (g, m)))
        .filter(|(_, m)| m.action != Action::Bridge)
}

/// The `<hostdev>` elements of `groups`, each group introduced by a comment naming it and
/// its devices.
pub fn libvirt(groups: &[GroupPlan], names: &Names) -> String {
    let mut out = String::new();
    let mut last = None;
    for (g, m) in members(groups) {
        if last != Some(g.group) {
            let _ = writeln!(out, "<!-- IOMMU group {} -->", g.group);
            last = Some(g.group);
        }
        let what = names
            .describe(m.id)
            .unwrap_or_else(|| format!("{} [{}]", names.class(m.class), m.id));
        let a = m.address;
        let _ = writeln!(
            out,
            "<hostdev mode='subsystem' type='pci' managed='no'>\n  <!-- {a} {} -->\n  <source>\n    <address domain='{:#06x}' bus='{:#04x}' slot='{:#04x}' function='{:#x}'/>\n  </source>\n</hostdev>",
            what.replace("--", "- -"),
            a.domain,
            a.bus,
            a.device,
            a.function
        );
    }
    out
}

/// The QEMU arguments of `groups`.
pub fn qemu(groups: &[GroupPlan]) -> String {
    let mut slots: BTreeMap<(u32, u8, u8), Vec<PciAddress>> = BTreeMap::new();
    for (_, m) in members(groups) {
        let a = m.address;
        slots
            .entry((a.domain, a.bus, a.device))
            .or_default()
            .push(a);
    }
    let mut args = Vec::new();
    for (n, fns) in slots.values().enumerate() {
        let n = n as u32;
        let port = format!("vfio-rp{n}");
        args.push(format!(
            "-device pcie-root-port,id={port},chassis={},slot=0",
            FIRST_CHASSIS + n
        ));
        let multi = fns.len() > 1;
        for a in fns {
            let mf = if multi && a.function == 0 {
                ",multifunction=on"
            } else {
                ""
            };
            args.push(format!(
                "-device vfio-pci,host={a},bus={port},addr=0x0.{:#x}{mf}",
                a.function
            ));
        }
    }
    let n = args.len();
    let mut out = String::new();
    for (i, a) in args.into_iter().enumerate() {
        out.push_str(&a);
        out.push_str(if i + 1 < n { " \\\n" } else { "\n" });
    }
    out
}
