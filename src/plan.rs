//! Planning: a pure function from ([`Config`], [`Host`]) to a [`Plan`].
//!
//! Each configured device expands to its whole IOMMU group, because VFIO only hands a
//! group to userspace when the group is *viable*: every member bound to a vfio driver,
//! to `pci-stub`, or to no driver, bridges excepted (`Documentation/driver-api/vfio.rst`).
//! So every non-bridge member gets an action; bridges (header type 1 or 2) get none.
//!
//! Nothing here reads or writes the host: `check`, `apply --dry-run` and `apply` all
//! print or execute the same plan, and the unit tests below cover the decisions.

use std::collections::BTreeMap;
use std::fmt;

use thiserror::Error;

use crate::config::{Config, Entry, Origin, Ownership, Selector};
use crate::pci::{ClassCode, PciAddress, PciId};
use crate::state::Record;
use crate::sysfs::{Host, Name};

/// A plan that cannot be made because the config contradicts itself on this host.
/// Treated as a config error (exit 2): nothing has been touched.
#[derive(Debug, Error)]
#[error("{origin}: {message}")]
pub struct PlanError {
    /// The entry that introduced the contradiction.
    pub origin: Origin,
    /// What contradicts what.
    pub message: String,
}

/// What to do with one group member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A bridge (header type 1/2): never written to.
    Bridge,
    /// Already on the target driver with `driver_override` set to it: nothing to do.
    Keep {
        /// The target driver.
        driver: Name,
    },
    /// Already on the target driver, but `driver_override` does not name it: set the
    /// override so a later reprobe or rescan keeps the device there; no rebind.
    SetOverride {
        /// The target driver.
        driver: Name,
    },
    /// Run the bind protocol: override, unbind from the current driver if any, reprobe,
    /// verify.
    Bind {
        /// The target driver.
        driver: Name,
    },
}

impl Action {
    /// True when applying this action writes to sysfs.
    pub fn writes(&self) -> bool {
        matches!(self, Action::SetOverride { .. } | Action::Bind { .. })
    }

    /// The driver the member ends on, `None` for bridges.
    pub fn target(&self) -> Option<&str> {
        match self {
            Action::Bridge => None,
            Action::Keep { driver } | Action::SetOverride { driver } | Action::Bind { driver } => {
                Some(driver)
            }
        }
    }
}

/// One member of a planned group, with what the snapshot saw and what will be done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberPlan {
    /// PCI address.
    pub address: PciAddress,
    /// vendor:device ID.
    pub id: PciId,
    /// Class code.
    pub class: ClassCode,
    /// Driver bound at snapshot time.
    pub driver: Option<Name>,
    /// `driver_override` at snapshot time.
    pub driver_override: Option<Name>,
    /// The entry (1-based index) that names this device, if any; `None` for a member
    /// included only because it shares the group.
    pub entry: Option<usize>,
    /// What apply does.
    pub action: Action,
}

/// Why a group will not be touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The member at fault (a PCI address, or the name of a non-PCI member).
    pub member: String,
    /// Why, and what the user can do about it.
    pub reason: String,
}

/// The plan for one IOMMU group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPlan {
    /// IOMMU group number.
    pub group: u32,
    /// Entries (1-based indexes) that select a device in this group.
    pub entries: Vec<usize>,
    /// Every PCI member, by address.
    pub members: Vec<MemberPlan>,
    /// Reasons not to touch the group; empty when it may be applied.
    pub refusals: Vec<Refusal>,
    /// Ownership wanted on `/dev/vfio/<group>`.
    pub ownership: Ownership,
}

impl GroupPlan {
    /// True when no member needs a sysfs write.
    pub fn is_bound(&self) -> bool {
        self.members.iter().all(|m| !m.action.writes())
    }

    /// True when a refusal stops the group.
    pub fn is_refused(&self) -> bool {
        !self.refusals.is_empty()
    }
}

/// A configured entry that selects nothing this run can bind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The entry (1-based index).
    pub entry: usize,
    /// Where it is in the config.
    pub origin: Origin,
    /// What is wrong.
    pub message: String,
    /// An error (exit 1) rather than a warning.
    pub error: bool,
}

/// A device vfio-bind bound earlier that the config no longer names: `apply` gives it
/// back to the driver it had (reload convergence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleasePlan {
    /// The device.
    pub address: PciAddress,
    /// What vfio-bind recorded when it bound the device.
    pub record: Record,
    /// Its driver now; `None` also when the device is gone.
    pub driver: Option<String>,
    /// False when the device is no longer on the host (its record is just dropped).
    pub present: bool,
}

/// The whole plan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Devices to release first, by address.
    pub releases: Vec<ReleasePlan>,
    /// Groups to bind, in group-number order.
    pub groups: Vec<GroupPlan>,
    /// Entries that matched nothing (warnings, or errors when `required`), devices with no
    /// IOMMU group, bridges named directly.
    pub problems: Vec<Problem>,
}

impl Plan {
    /// True when `apply` would exit non-zero even if every write succeeded.
    pub fn has_errors(&self) -> bool {
        self.groups.iter().any(GroupPlan::is_refused) || self.problems.iter().any(|p| p.error)
    }
}

fn matches(entry: &Entry, dev: &crate::sysfs::Device) -> bool {
    match entry.selector {
        Selector::Address(a) => dev.address == a,
        Selector::Id(id) => {
            dev.id == id && entry.subsystem.is_none_or(|s| dev.subsystem == Some(s))
        }
    }
}

/// Driver for group members that no entry names: the driver of the first entry that
/// selects the group, except that a vfio *variant* driver (which supports only its own
/// devices) gives way to plain `vfio-pci`.
fn companion_driver(driver: &str) -> String {
    if driver == "vfio-pci" || driver == "pci-stub" {
        driver.to_string()
    } else {
        "vfio-pci".to_string()
    }
}

fn intern(names: &mut BTreeMap<String, Name>, s: &str) -> Name {
    names
        .entry(s.to_string())
        .or_insert_with(|| Name::from(s))
        .clone()
}

/// Build the plan for `config` on `host`.
///
/// Errors: [`PlanError`] when two entries ask for different drivers for one device, or
/// different ownership for one group's `/dev/vfio/<group>`.
pub fn plan(config: &Config, host: &Host) -> Result<Plan, PlanError> {
    let mut plan = Plan::default();
    // device -> entry that selects it (first wins; conflicting drivers are errors)
    let mut selected: BTreeMap<PciAddress, &Entry> = BTreeMap::new();
    // group -> entries selecting into it, in entry order
    let mut group_entries: BTreeMap<u32, Vec<&Entry>> = BTreeMap::new();

    for entry in &config.entries {
        let devices: Vec<_> = host
            .devices
            .values()
            .filter(|d| matches(entry, d))
            .collect();
        if devices.is_empty() {
            plan.problems.push(Problem {
                entry: entry.index,
                origin: entry.origin.clone(),
                message: format!("{} matches no PCI device on this host", entry.selector),
                error: entry.required,
            });
            continue;
        }
        for dev in devices {
            if let Some(prev) = selected.get(&dev.address) {
                if prev.driver != entry.driver {
                    return Err(PlanError {
                        origin: entry.origin.clone(),
                        message: format!(
                            "{} asks for driver {} but the entry at {} asks for {}",
                            dev.address, entry.driver, prev.origin, prev.driver
                        ),
                    });
                }
            } else {
                selected.insert(dev.address, entry);
            }
            if dev.is_bridge() && matches!(entry.selector, Selector::Address(_)) {
                plan.problems.push(Problem {
                    entry: entry.index,
                    origin: entry.origin.clone(),
                    message: format!(
                        "{} is a bridge (header type 1/2); bridges are never bound, \
                         only the other members of its IOMMU group",
                        dev.address
                    ),
                    error: false,
                });
            }
            match dev.iommu_group {
                Some(g) if host.groups.contains_key(&g) => {
                    let list = group_entries.entry(g).or_default();
                    if !list.iter().any(|e| e.index == entry.index) {
                        list.push(entry);
                    }
                }
                _ => plan.problems.push(Problem {
                    entry: entry.index,
                    origin: entry.origin.clone(),
                    message: format!(
                        "{} has no IOMMU group, so VFIO cannot use it (is the IOMMU on \
                         for this device?)",
                        dev.address
                    ),
                    error: true,
                }),
            }
        }
    }

    // One shared name per target driver, however many members go to it.
    let mut names: BTreeMap<String, Name> = BTreeMap::new();
    for (&number, entries) in &group_entries {
        let group = &host.groups[&number];
        let first = entries[0];
        let ownership = merge_ownership(number, entries)?;
        let mut refusals = Vec::new();
        for other in &group.other {
            refusals.push(Refusal {
                member: other.clone(),
                reason: "is not a PCI device; vfio-bind cannot make this group viable".into(),
            });
        }
        let mut members = Vec::new();
        for addr in &group.devices {
            let dev = &host.devices[addr];
            let entry = selected.get(addr).copied();
            let viable_now = dev
                .driver
                .as_deref()
                .is_some_and(|d| d.contains("vfio") || d == "pci-stub");
            let action = if dev.is_bridge() {
                Action::Bridge
            } else if entry.is_none() && viable_now {
                // A member no entry names that is already on a vfio driver (a variant
                // driver, say) or pci-stub keeps the group viable as it is: leave it.
                Action::Keep {
                    driver: dev.driver.clone().expect("viable_now has a driver"),
                }
            } else {
                let wanted = match entry {
                    Some(e) => e.driver.clone(),
                    None => companion_driver(&first.driver),
                };
                let driver = intern(&mut names, &wanted);
                let on_target = dev.driver.as_deref() == Some(&*driver);
                let override_set = dev.driver_override.as_deref() == Some(&*driver);
                match (on_target, override_set) {
                    (true, true) => Action::Keep { driver },
                    (true, false) => Action::SetOverride { driver },
                    (false, _) => Action::Bind { driver },
                }
            };
            if let (true, crate::pci::HeaderType::Other(t)) = (action.writes(), dev.header) {
                refusals.push(Refusal {
                    member: addr.to_string(),
                    reason: format!(
                        "has PCI header type {t:#04x} (not an endpoint or a bridge; vfio-pci \
                         only takes header type 0)"
                    ),
                });
            }
            if action.writes() {
                for u in host.uses.get(addr).into_iter().flatten() {
                    refusals.push(Refusal {
                        member: addr.to_string(),
                        reason: u.to_string(),
                    });
                }
            }
            // The boot VGA device passes only when the entry that names it allows it; as
            // a mere group companion it is always refused.
            let allow_boot_vga = entry.is_some_and(|e| e.allow_boot_vga);
            if dev.boot_vga && action.writes() && !allow_boot_vga {
                refusals.push(Refusal {
                    member: addr.to_string(),
                    reason: "is the boot VGA device (the host's console); set \
                             allow_boot_vga = true on its entry to pass it through \
                             (single-GPU passthrough)"
                        .into(),
                });
            }
            members.push(MemberPlan {
                address: *addr,
                id: dev.id,
                class: dev.class,
                driver: dev.driver.clone(),
                driver_override: dev.driver_override.clone(),
                entry: entry.map(|e| e.index),
                action,
            });
        }
        plan.groups.push(GroupPlan {
            group: number,
            entries: entries.iter().map(|e| e.index).collect(),
            members,
            refusals,
            ownership,
        });
    }

    // Reload convergence: what vfio-bind bound earlier and no planned group holds now.
    let planned: std::collections::BTreeSet<PciAddress> = plan
        .groups
        .iter()
        .flat_map(|g| g.members.iter().map(|m| m.address))
        .collect();
    for (address, record) in host.state.records() {
        if !planned.contains(&address) {
            let dev = host.devices.get(&address);
            plan.releases.push(ReleasePlan {
                address,
                record: record.clone(),
                driver: dev.and_then(|d| d.driver.as_deref().map(str::to_string)),
                present: dev.is_some(),
            });
        }
    }
    Ok(plan)
}

/// Merge the ownership every entry of a group asks for; two different values for one
/// field are an error.
fn merge_ownership(group: u32, entries: &[&Entry]) -> Result<Ownership, PlanError> {
    let mut out = Ownership::default();
    let mut from: [Option<&Entry>; 3] = [None, None, None];
    for e in entries {
        let o = &e.ownership;
        let conflict =
            |field: &str, a: &dyn fmt::Display, prev: &Entry, b: &dyn fmt::Display| PlanError {
                origin: e.origin.clone(),
                message: format!(
                    "/dev/vfio/{group}: this entry asks for {field} {a}, but the entry at {} \
                 (same IOMMU group) asks for {b}",
                    prev.origin
                ),
            };
        if let Some(u) = &o.user {
            match (&out.user, from[0]) {
                (Some(p), Some(prev)) if p.id != u.id => {
                    return Err(conflict("owner", &u.name, prev, &p.name))
                }
                (None, _) => {
                    out.user = Some(u.clone());
                    from[0] = Some(e);
                }
                _ => {}
            }
        }
        if let Some(g) = &o.group {
            match (&out.group, from[1]) {
                (Some(p), Some(prev)) if p.id != g.id => {
                    return Err(conflict("group", &g.name, prev, &p.name))
                }
                (None, _) => {
                    out.group = Some(g.clone());
                    from[1] = Some(e);
                }
                _ => {}
            }
        }
        if let Some(m) = o.mode {
            match (out.mode, from[2]) {
                (Some(p), Some(prev)) if p != m => {
                    return Err(conflict(
                        "mode",
                        &format!("{m:04o}"),
                        prev,
                        &format!("{p:04o}"),
                    ))
                }
                (None, _) => {
                    out.mode = Some(m);
                    from[2] = Some(e);
                }
                _ => {}
            }
        }
    }
    Ok(out)
}

impl fmt::Display for Plan {
    /// The plan as `check` and `apply --dry-run` print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.groups.is_empty() && self.problems.is_empty() && self.releases.is_empty() {
            return writeln!(f, "Nothing configured: no device will be bound.");
        }
        for r in &self.releases {
            let back = r.record.previous_driver.as_deref().unwrap_or("no driver");
            if r.present {
                writeln!(
                    f,
                    "Release {}: no longer configured; {} -> {back}",
                    r.address,
                    r.driver.as_deref().unwrap_or("no driver")
                )?;
            } else {
                writeln!(f, "Forget {}: bound earlier, no longer present", r.address)?;
            }
        }
        for g in &self.groups {
            let verdict = if g.is_refused() {
                "refused, nothing will be changed"
            } else if g.is_bound() {
                "already bound, nothing to do"
            } else {
                "will be bound"
            };
            writeln!(f, "IOMMU group {}: {verdict}", g.group)?;
            for m in &g.members {
                let now = m.driver.as_deref().unwrap_or("no driver");
                let what = match &m.action {
                    Action::Bridge => format!("bridge, untouched ({now})"),
                    Action::Keep { driver } => format!("on {driver}"),
                    Action::SetOverride { driver } => {
                        format!("on {driver}; set driver_override to {driver}")
                    }
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
                )?;
            }
            for r in &g.refusals {
                writeln!(f, "  refused: {} {}", r.member, r.reason)?;
            }
            if !g.ownership.is_empty() {
                writeln!(f, "  /dev/vfio/{}: {}", g.group, g.ownership)?;
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse, Principal};
    use crate::pci::HeaderType;
    use crate::sysfs::{Device, IommuGroup};
    use std::path::Path;

    struct HostBuilder(Host);

    impl HostBuilder {
        fn new() -> Self {
            HostBuilder(Host::default())
        }
        fn dev(
            mut self,
            addr: &str,
            id: &str,
            class: u32,
            driver: Option<&str>,
            group: u32,
        ) -> Self {
            let address: PciAddress = addr.parse().unwrap();
            let header = if class >> 8 == 0x0604 {
                HeaderType::PciBridge
            } else {
                HeaderType::Normal
            };
            self.0.devices.insert(
                address,
                Device {
                    address,
                    id: id.parse().unwrap(),
                    subsystem: Some("1af4:1100".parse().unwrap()),
                    class: ClassCode(class),
                    header,
                    driver: driver.map(Name::from),
                    driver_override: None,
                    iommu_group: Some(group),
                    boot_vga: false,
                },
            );
            let g = self.0.groups.entry(group).or_insert(IommuGroup {
                number: group,
                devices: vec![],
                other: vec![],
            });
            g.devices.push(address);
            g.devices.sort();
            self
        }
        fn boot_vga(mut self, addr: &str) -> Self {
            self.0
                .devices
                .get_mut(&addr.parse().unwrap())
                .unwrap()
                .boot_vga = true;
            self
        }
        fn overridden(mut self, addr: &str, drv: &str) -> Self {
            self.0
                .devices
                .get_mut(&addr.parse().unwrap())
                .unwrap()
                .driver_override = Some(Name::from(drv));
            self
        }
        fn build(self) -> Host {
            self.0
        }
    }

    fn cfg(src: &str) -> Config {
        parse(&[(Path::new("/etc/vfio-bind.toml"), src)]).unwrap()
    }

    /// q35-like host: boot VGA alone; xhci + e1000e sharing a group; a PCIe-to-PCI bridge
    /// with two e1000 behind it; a lone e1000e.
    fn host() -> Host {
        HostBuilder::new()
            .dev("00:01.0", "1234:1111", 0x030000, None, 1)
            .boot_vga("00:01.0")
            .dev("01:00.0", "1b36:000d", 0x0c0330, Some("xhci_hcd"), 8)
            .dev("01:00.1", "8086:10d3", 0x020000, Some("e1000e"), 8)
            .dev("02:00.0", "8086:10d3", 0x020000, Some("e1000e"), 9)
            .dev("03:00.0", "1b36:000e", 0x060400, None, 10)
            .dev("04:01.0", "8086:100e", 0x020000, Some("e1000"), 10)
            .dev("04:02.0", "8086:100e", 0x020000, Some("e1000"), 10)
            .build()
    }

    fn actions(g: &GroupPlan) -> Vec<(String, Action)> {
        g.members
            .iter()
            .map(|m| (m.address.to_string(), m.action.clone()))
            .collect()
    }

    fn bind() -> Action {
        Action::Bind {
            driver: "vfio-pci".into(),
        }
    }

    #[test]
    fn id_expands_to_whole_group() {
        let p = plan(&cfg("[[device]]\nid = \"1b36:000d\"\n"), &host()).unwrap();
        assert_eq!(p.groups.len(), 1);
        let g = &p.groups[0];
        assert_eq!(g.group, 8);
        assert_eq!(
            actions(g),
            vec![
                ("0000:01:00.0".into(), bind()),
                ("0000:01:00.1".into(), bind())
            ]
        );
        assert_eq!(g.members[0].entry, Some(1));
        assert_eq!(g.members[1].entry, None);
        assert!(!p.has_errors());
    }

    #[test]
    fn id_matches_every_such_device() {
        let p = plan(&cfg("[[device]]\nid = \"8086:10d3\"\n"), &host()).unwrap();
        let groups: Vec<u32> = p.groups.iter().map(|g| g.group).collect();
        assert_eq!(groups, vec![8, 9]);
    }

    #[test]
    fn subsystem_narrows_an_id_match() {
        let p = plan(
            &cfg("[[device]]\nid = \"8086:10d3\"\nsubsystem = \"dead:beef\"\n"),
            &host(),
        )
        .unwrap();
        assert!(p.groups.is_empty());
        assert_eq!(p.problems.len(), 1);
        assert!(!p.problems[0].error);
    }

    #[test]
    fn bridge_is_never_touched() {
        let p = plan(&cfg("[[device]]\naddress = \"04:01.0\"\n"), &host()).unwrap();
        let g = &p.groups[0];
        assert_eq!(
            actions(g),
            vec![
                ("0000:03:00.0".into(), Action::Bridge),
                ("0000:04:01.0".into(), bind()),
                ("0000:04:02.0".into(), bind()),
            ]
        );
        assert!(!g.members[0].action.writes());
    }

    #[test]
    fn naming_a_bridge_warns_and_binds_its_group_peers() {
        let p = plan(&cfg("[[device]]\naddress = \"03:00.0\"\n"), &host()).unwrap();
        assert_eq!(
            p.groups[0]
                .members
                .iter()
                .filter(|m| m.action.writes())
                .count(),
            2
        );
        assert!(p
            .problems
            .iter()
            .any(|p| p.message.contains("is a bridge") && !p.error));
    }

    #[test]
    fn already_bound_member_is_left_alone() {
        let h = HostBuilder::new()
            .dev("02:00.0", "8086:10d3", 0x020000, Some("vfio-pci"), 9)
            .overridden("02:00.0", "vfio-pci")
            .dev("05:00.0", "8086:10d3", 0x020000, Some("vfio-pci"), 11)
            .build();
        let p = plan(&cfg("[[device]]\nid = \"8086:10d3\"\n"), &h).unwrap();
        assert_eq!(
            p.groups[0].members[0].action,
            Action::Keep {
                driver: "vfio-pci".into()
            }
        );
        assert!(p.groups[0].is_bound());
        // bound (e.g. via new_id) but no override: only the override is written
        assert_eq!(
            p.groups[1].members[0].action,
            Action::SetOverride {
                driver: "vfio-pci".into()
            }
        );
    }

    #[test]
    fn boot_vga_refused_unless_allowed() {
        let p = plan(&cfg("[[device]]\naddress = \"00:01.0\"\n"), &host()).unwrap();
        assert!(p.groups[0].is_refused());
        assert!(p.groups[0].refusals[0].reason.contains("allow_boot_vga"));
        assert!(p.has_errors());
        let p = plan(
            &cfg("[[device]]\naddress = \"00:01.0\"\nallow_boot_vga = true\n"),
            &host(),
        )
        .unwrap();
        assert!(!p.groups[0].is_refused());
    }

    #[test]
    fn unmatched_warns_or_fails_when_required() {
        let p = plan(&cfg("[[device]]\nid = \"10de:1c03\"\n"), &host()).unwrap();
        assert!(!p.has_errors());
        assert_eq!(p.problems[0].origin.line, 1);
        let p = plan(
            &cfg("[[device]]\nid = \"10de:1c03\"\nrequired = true\n"),
            &host(),
        )
        .unwrap();
        assert!(p.has_errors());
    }

    #[test]
    fn device_without_group_is_an_error() {
        let mut h = host();
        h.devices
            .get_mut(&"02:00.0".parse().unwrap())
            .unwrap()
            .iommu_group = None;
        let p = plan(&cfg("[[device]]\naddress = \"02:00.0\"\n"), &h).unwrap();
        assert!(p.groups.is_empty());
        assert!(p.has_errors());
    }

    #[test]
    fn non_pci_member_refuses_the_group() {
        let mut h = host();
        h.groups
            .get_mut(&9)
            .unwrap()
            .other
            .push("platform-foo".into());
        let p = plan(&cfg("[[device]]\naddress = \"02:00.0\"\n"), &h).unwrap();
        assert!(p.groups[0].is_refused());
    }

    #[test]
    fn ownership_merges_and_conflicts_are_errors() {
        let p = plan(
            &cfg("[[device]]\naddress = \"01:00.0\"\nuser = 1000\n\n[[device]]\naddress = \"01:00.1\"\nmode = \"0660\"\n"),
            &host(),
        )
        .unwrap();
        assert_eq!(
            p.groups[0].ownership,
            Ownership {
                user: Some(Principal {
                    id: 1000,
                    name: "1000".into()
                }),
                group: None,
                mode: Some(0o660)
            }
        );
        let e = plan(
            &cfg("[[device]]\naddress = \"01:00.0\"\nuser = 1000\n\n[[device]]\naddress = \"01:00.1\"\nuser = 1001\n"),
            &host(),
        )
        .unwrap_err();
        assert_eq!(e.origin.line, 5);
        assert!(e.to_string().contains("/dev/vfio/8"), "{e}");
    }

    #[test]
    fn conflicting_drivers_for_one_device_are_errors() {
        let e = plan(
            &cfg("[[device]]\naddress = \"02:00.0\"\n\n[[device]]\nid = \"8086:10d3\"\ndriver = \"pci-stub\"\n"),
            &host(),
        )
        .unwrap_err();
        assert!(e.message.contains("pci-stub"), "{e}");
    }

    #[test]
    fn variant_driver_companions_get_vfio_pci() {
        let p = plan(
            &cfg("[[device]]\naddress = \"01:00.0\"\ndriver = \"foo_vfio_pci\"\n"),
            &host(),
        )
        .unwrap();
        let targets: Vec<_> = p.groups[0]
            .members
            .iter()
            .map(|m| m.action.target().unwrap().to_string())
            .collect();
        assert_eq!(targets, vec!["foo_vfio_pci", "vfio-pci"]);
    }

    #[test]
    fn plan_text_shows_each_member() {
        let p = plan(
            &cfg("[[device]]\naddress = \"04:01.0\"\nmode = \"0660\"\n"),
            &host(),
        )
        .unwrap();
        let text = p.to_string();
        assert!(text.contains("IOMMU group 10: will be bound"), "{text}");
        assert!(
            text.contains("0000:03:00.0 [1b36:000e] PCI bridge: bridge, untouched"),
            "{text}"
        );
        assert!(
            text.contains(
                "0000:04:01.0 [8086:100e] Ethernet controller: e1000 -> vfio-pci  (device[1])"
            ),
            "{text}"
        );
        assert!(text.contains("0000:04:02.0 [8086:100e] Ethernet controller: e1000 -> vfio-pci  (shares the group)"), "{text}");
        assert!(text.contains("/dev/vfio/10: mode 0660"), "{text}");
    }

    #[test]
    fn host_use_refuses_the_group_with_the_reason() {
        let mut h = host();
        h.uses.insert(
            "05:00.0".parse().unwrap(),
            vec![crate::inuse::Use::Mounted {
                dev: "vda1".into(),
                mountpoint: "/".into(),
            }],
        );
        h = HostBuilder(h)
            .dev("05:00.0", "1af4:1042", 0x010000, Some("virtio-pci"), 12)
            .build();
        let p = plan(&cfg("[[device]]\naddress = \"05:00.0\"\n"), &h).unwrap();
        let g = &p.groups[0];
        assert!(g.is_refused());
        assert_eq!(g.refusals[0].member, "0000:05:00.0");
        assert!(
            g.refusals[0].reason.contains("/dev/vda1 mounted on /"),
            "{:?}",
            g.refusals
        );
        // Use beneath a device already on vfio-pci cannot exist; beneath another group
        // it does not matter.
        let p = plan(&cfg("[[device]]\naddress = \"02:00.0\"\n"), &h).unwrap();
        assert!(!p.groups[0].is_refused());
    }

    #[test]
    fn boot_vga_companion_is_refused_even_with_allow_on_a_sibling() {
        let h = HostBuilder::new()
            .dev("01:00.0", "10de:1c03", 0x030000, Some("nouveau"), 1)
            .boot_vga("01:00.0")
            .dev("01:00.1", "10de:10f1", 0x040300, Some("snd_hda_intel"), 1)
            .build();
        let p = plan(
            &cfg("[[device]]\naddress = \"01:00.1\"\nallow_boot_vga = true\n"),
            &h,
        )
        .unwrap();
        assert!(p.groups[0].is_refused());
        let p = plan(
            &cfg("[[device]]\naddress = \"01:00.0\"\nallow_boot_vga = true\n"),
            &h,
        )
        .unwrap();
        assert!(!p.groups[0].is_refused());
    }

    #[test]
    fn companions_already_viable_are_kept() {
        let h = HostBuilder::new()
            .dev("01:00.0", "15b3:101e", 0x020000, Some("mlx5_core"), 1)
            .dev("01:00.1", "15b3:101e", 0x020000, Some("mlx5_vfio_pci"), 1)
            .dev("01:00.2", "15b3:101e", 0x020000, Some("pci-stub"), 1)
            .build();
        let p = plan(&cfg("[[device]]\naddress = \"01:00.0\"\n"), &h).unwrap();
        let a = actions(&p.groups[0]);
        assert_eq!(a[0].1, bind());
        assert_eq!(
            a[1].1,
            Action::Keep {
                driver: "mlx5_vfio_pci".into()
            }
        );
        assert_eq!(
            a[2].1,
            Action::Keep {
                driver: "pci-stub".into()
            }
        );
    }

    #[test]
    fn unknown_header_type_is_refused() {
        let mut h = host();
        h.devices
            .get_mut(&"02:00.0".parse().unwrap())
            .unwrap()
            .header = HeaderType::Other(0x7f);
        let p = plan(&cfg("[[device]]\naddress = \"02:00.0\"\n"), &h).unwrap();
        assert!(p.groups[0].refusals[0].reason.contains("header type 0x7f"));
    }

    #[test]
    fn devices_no_longer_configured_are_released() {
        use crate::state::Record;
        let mut h = HostBuilder::new()
            .dev("02:00.0", "8086:10d3", 0x020000, Some("vfio-pci"), 9)
            .overridden("02:00.0", "vfio-pci")
            .dev("03:00.0", "8086:10d3", 0x020000, Some("vfio-pci"), 10)
            .overridden("03:00.0", "vfio-pci")
            .build();
        for (a, g) in [
            ("0000:02:00.0", 9),
            ("0000:03:00.0", 10),
            ("0000:07:00.0", 11),
        ] {
            h.state.insert(
                a.parse().unwrap(),
                Record {
                    driver: "vfio-pci".into(),
                    group: g,
                    previous_driver: Some("e1000e".into()),
                    previous_override: None,
                },
            );
        }
        let p = plan(&cfg("[[device]]\naddress = \"02:00.0\"\n"), &h).unwrap();
        let rel: Vec<(String, bool)> = p
            .releases
            .iter()
            .map(|r| (r.address.to_string(), r.present))
            .collect();
        assert_eq!(
            rel,
            vec![
                ("0000:03:00.0".into(), true),
                ("0000:07:00.0".into(), false)
            ]
        );
        assert!(p.groups[0].is_bound());
        let text = p.to_string();
        assert!(
            text.contains("Release 0000:03:00.0: no longer configured; vfio-pci -> e1000e"),
            "{text}"
        );
    }
}
