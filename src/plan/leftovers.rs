//! Judging what the guides left ([`crate::host::leftovers`]) against the config: which
//! lines bind a device a second time (two owners), which break the host (a blacklist a
//! host device needs, a module the running kernel does not have), and which name devices
//! the config does not (`vfio-bind import` takes those). Pure: the host-dependent answers
//! come in as [`Facts`].

use std::collections::BTreeMap;

use crate::host::leftovers::{Kind, Leftover};
use crate::pci::{PciAddress, PciId};

/// How much a leftover matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Worth knowing.
    Info,
    /// Fights vfio-bind or breaks the host: remove it.
    Warn,
}

/// One leftover judged: where, what it does here, what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    /// How much it matters.
    pub level: Level,
    /// `file:line: what it does`.
    pub message: String,
    /// What to do.
    pub fix: String,
}

/// What the host says, for the judgement.
pub struct Facts<'a> {
    /// Devices the config's `[[device]]` entries bind (every member of their groups), each
    /// with the entry naming it (`device[N]`, or `device[N]'s group`).
    pub configured: BTreeMap<PciAddress, String>,
    /// IDs of configured devices and of `id` entries, each with the entry.
    pub configured_ids: BTreeMap<PciId, String>,
    /// The running kernel's release.
    pub release: String,
    /// Whether a module exists on the running kernel.
    pub known: &'a dyn Fn(&str) -> bool,
    /// The devices outside the config a module would drive.
    pub victims: &'a dyn Fn(&str) -> Vec<PciAddress>,
}

fn list<T: ToString>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn vfio_ids(l: &Leftover, ids: &[PciId], f: &Facts) -> Vec<Judgement> {
    ids.iter()
        .map(|id| match f.configured_ids.get(id) {
            Some(entry) => Judgement {
                level: Level::Warn,
                message: format!(
                    "{}: `options vfio-pci ids=` binds every {id} device, which the config \
                     binds too ({entry}): two owners",
                    l.at()
                ),
                fix: "remove the ids= option: vfio-bind binds per device through \
                      driver_override, and ids= also takes any other card with that ID"
                    .into(),
            },
            None => Judgement {
                level: Level::Warn,
                message: format!(
                    "{}: `options vfio-pci ids=` binds every {id} device, which the config \
                     does not name",
                    l.at()
                ),
                fix: "`vfio-bind import` turns it into a [[device]] entry; then remove the \
                      option"
                    .into(),
            },
        })
        .collect()
}

fn writes(
    l: &Leftover,
    what: &str,
    addresses: &[PciAddress],
    ids: &[PciId],
    f: &Facts,
) -> Option<Judgement> {
    let mut covered: Vec<String> = addresses
        .iter()
        .filter_map(|a| f.configured.get(a).map(|e| format!("{a} ({e})")))
        .collect();
    covered.extend(
        ids.iter()
            .filter_map(|i| f.configured_ids.get(i).map(|e| format!("{i} ({e})"))),
    );
    if !covered.is_empty() {
        return Some(Judgement {
            level: Level::Warn,
            message: format!(
                "{}: a hand-made script writes {what} for {}, which the config binds too: \
                 two owners",
                l.at(),
                covered.join(", ")
            ),
            fix: if what == "nodedev-detach" {
                "remove the script's nodedev-detach and nodedev-reattach of these devices \
                 (and its display manager, vtconsole and framebuffer steps): vfio-bind's \
                 hook does them"
                    .into()
            } else {
                "remove the script (or its lines for these devices) and the unit or hook \
                 that runs it"
                    .into()
            },
        });
    }
    let named: Vec<String> = addresses
        .iter()
        .map(ToString::to_string)
        .chain(ids.iter().map(ToString::to_string))
        .collect();
    (!named.is_empty()).then(|| Judgement {
        level: Level::Info,
        message: format!(
            "{}: a hand-made script writes {what} for {}, which the config does not name",
            l.at(),
            named.join(", ")
        ),
        fix: "`vfio-bind import` turns them into config entries; then remove the script".into(),
    })
}

/// A blacklist of a module some device outside the config needs.
fn blacklist(l: &Leftover, m: &str, f: &Facts) -> Option<Judgement> {
    let victims = (f.victims)(m);
    (!victims.is_empty()).then(|| Judgement {
        level: Level::Warn,
        message: format!(
            "{}: `blacklist {m}` leaves {} without a driver, which the config does not bind",
            l.at(),
            list(&victims)
        ),
        fix: "remove the line: driver_override keeps the configured devices off the module".into(),
    })
}

/// A module to load that the running kernel does not have.
fn load(l: &Leftover, m: &str, f: &Facts) -> Option<Judgement> {
    if (f.known)(m) {
        return None;
    }
    let merged = if m.replace('-', "_") == "vfio_virqfd" {
        " (merged into vfio in Linux 6.2)"
    } else {
        ""
    };
    let who = if l.file.starts_with("/etc/initramfs-tools") {
        "the initramfs build warns about it"
    } else {
        "systemd-modules-load fails on it"
    };
    Some(Judgement {
        level: Level::Warn,
        message: format!(
            "{}: module {m} does not exist on kernel {}{merged}: {who}",
            l.at(),
            f.release
        ),
        fix: "remove the line".into(),
    })
}

/// Judge one leftover.
fn judge_one(l: &Leftover, f: &Facts) -> Vec<Judgement> {
    let one = |level, message: String, fix: &str| {
        vec![Judgement {
            level,
            message,
            fix: fix.to_string(),
        }]
    };
    match &l.kind {
        Kind::VfioIds(ids) => vfio_ids(l, ids, f),
        Kind::Softdep(m) => one(
            Level::Warn,
            format!(
                "{}: `softdep {m} pre: vfio-pci` only served the ids= option",
                l.at()
            ),
            "remove it: vfio-bind claims its devices in the initramfs, per device",
        ),
        Kind::Blacklist(m) => blacklist(l, m, f).into_iter().collect(),
        Kind::DisableVga => one(
            Level::Info,
            format!(
                "{}: `disable_vga=1` takes vfio-pci's devices out of VGA arbitration",
                l.at()
            ),
            "vfio-bind does not need it; keep it only for a reason of your own",
        ),
        Kind::Load(m) => load(l, m, f).into_iter().collect(),
        Kind::Writes {
            what,
            addresses,
            ids,
        } => writes(l, what, addresses, ids, f).into_iter().collect(),
        Kind::WorldWritable => one(
            Level::Warn,
            format!(
                "{}: `chmod 666 /dev/vfio/…` lets every user on the host open every VFIO group",
                l.at()
            ),
            "remove it; set user, group and mode in the config (group = \"kvm\", mode = \"0660\")",
        ),
    }
}

/// Judge every leftover, in order.
pub fn judge(leftovers: &[Leftover], facts: &Facts) -> Vec<Judgement> {
    leftovers.iter().flat_map(|l| judge_one(l, facts)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::leftovers::Kind;

    fn at(file: &str, line: usize, kind: Kind) -> Leftover {
        Leftover {
            file: file.into(),
            line,
            kind,
        }
    }

    #[test]
    fn leftovers_are_judged_against_the_config_and_the_kernel() {
        let gpu: PciAddress = "0000:01:00.0".parse().unwrap();
        let nic: PciAddress = "0000:03:00.0".parse().unwrap();
        let id: PciId = "10de:1c03".parse().unwrap();
        let other: PciId = "10de:10f1".parse().unwrap();
        let f = Facts {
            configured: [(gpu, "device[1]".to_string())].into(),
            configured_ids: [(id, "device[1]".to_string())].into(),
            release: "6.12.1".into(),
            known: &|m| m != "vfio_virqfd",
            victims: &|m| if m == "amdgpu" { vec![nic] } else { vec![] },
        };
        let j = judge(
            &[
                at(
                    "/etc/modprobe.d/vfio.conf",
                    1,
                    Kind::VfioIds(vec![id, other]),
                ),
                at(
                    "/etc/modprobe.d/vfio.conf",
                    2,
                    Kind::Blacklist("amdgpu".into()),
                ),
                at(
                    "/etc/modprobe.d/vfio.conf",
                    3,
                    Kind::Blacklist("nouveau".into()),
                ),
                at("/etc/modules", 4, Kind::Load("vfio_virqfd".into())),
                at("/etc/modules", 5, Kind::Load("vfio".into())),
            ],
            &f,
        );
        let m: Vec<String> = j.iter().map(|j| j.message.clone()).collect();
        assert_eq!(
            m,
            [
                "/etc/modprobe.d/vfio.conf:1: `options vfio-pci ids=` binds every 10de:1c03 device, which the config binds too (device[1]): two owners",
                "/etc/modprobe.d/vfio.conf:1: `options vfio-pci ids=` binds every 10de:10f1 device, which the config does not name",
                "/etc/modprobe.d/vfio.conf:2: `blacklist amdgpu` leaves 0000:03:00.0 without a driver, which the config does not bind",
                "/etc/modules:4: module vfio_virqfd does not exist on kernel 6.12.1 (merged into vfio in Linux 6.2): systemd-modules-load fails on it",
            ]
        );
    }
}
