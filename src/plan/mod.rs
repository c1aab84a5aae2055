//! Planning: a pure function from the config and the host's inputs to a [`Plan`].
//!
//! Each configured device expands to its whole IOMMU group, because VFIO only hands a
//! group to userspace when the group is *viable*: every member bound to a vfio driver,
//! to `pci-stub`, or to no driver, bridges excepted (`Documentation/driver-api/vfio.rst`).
//! So every non-bridge member gets an action; bridges (header type 1 or 2) get none.
//!
//! One module per concern, data flowing one way:
//! [`select`] (entries → devices and groups) → [`group`] (each member's action, the
//! node's ownership) → [`release`] (what the config no longer names) → [`guard`] (the
//! refusals, a separate pass that needs the host-use scan only when something will be
//! written) → [`node`] (whose `/dev/vfio/<group>` apply will change, once ownership is
//! resolved) → [`render`] (the text `check` and `apply --dry-run` print). The types are
//! in [`model`].
//!
//! Nothing here reads or writes the host: `check`, `apply --dry-run`, `status`, `doctor`
//! and `apply` all show or execute the same plan, and the unit tests below cover the
//! decisions.

pub mod group;
pub mod guard;
pub mod leftovers;
pub mod model;
pub mod node;
pub mod release;
pub mod render;
pub mod select;

pub use model::{
    Action, GroupPlan, MemberPlan, Plan, PlanError, Problem, Refusal, ReleasePlan, Verdict,
};

use crate::config::Config;
use crate::host::snapshot::Host;
use crate::state::State;

/// Build the plan for `config` on `host`, with what vfio-bind bound earlier (`state`),
/// before the guards: [`guard::refuse`] fills in the refusals.
///
/// Errors: [`PlanError`] when two entries ask for different drivers for one device, or
/// different ownership for one group's `/dev/vfio/<group>`.
pub fn plan(config: &Config, host: &Host, state: &State) -> Result<Plan, PlanError> {
    let sel = select::select(config, host)?;
    let mut targets = group::Targets::default();
    let groups = sel
        .groups
        .keys()
        .map(|&n| group::group(n, &sel, host, &mut targets))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Plan {
        releases: release::releases(&groups, host, state),
        groups,
        problems: sel.problems,
    })
}

#[cfg(test)]
#[allow(clippy::too_many_lines)]
mod tests {
    use super::*;
    use crate::config::{parse, NameOrId, Ownership};
    use crate::driver::Driver;
    use crate::host::snapshot::{Device, IommuGroup};
    use crate::host::usage::Uses;
    use crate::pci::{ClassCode, HeaderType, PciAddress};
    use std::path::Path;

    /// The three inputs of planning, as one value for the tests.
    #[derive(Default)]
    struct Host {
        host: crate::host::snapshot::Host,
        uses: Uses,
        state: State,
    }

    impl std::ops::Deref for Host {
        type Target = crate::host::snapshot::Host;
        fn deref(&self) -> &Self::Target {
            &self.host
        }
    }

    impl std::ops::DerefMut for Host {
        fn deref_mut(&mut self) -> &mut Self::Target {
            &mut self.host
        }
    }

    /// Plan, then the guards, as `Context::plan` does.
    fn plan(c: &Config, h: &Host) -> Result<Plan, PlanError> {
        let mut p = super::plan(c, &h.host, &h.state)?;
        guard::refuse(&mut p, &h.host, &h.uses);
        Ok(p)
    }

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
            self.0.host.devices.insert(
                address,
                Device {
                    address,
                    id: id.parse().unwrap(),
                    subsystem: Some("1af4:1100".parse().unwrap()),
                    class: ClassCode(class),
                    header,
                    driver: driver.map(Driver::from),
                    driver_override: None,
                    iommu_group: Some(group),
                    boot_vga: false,
                },
            );
            let g = self.0.host.groups.entry(group).or_insert(IommuGroup {
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
                .driver_override = Some(Driver::from(drv));
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
        let o: &Ownership = &p.groups[0].ownership;
        assert_eq!(o.user.as_ref().map(|u| &u.value), Some(&NameOrId::Id(1000)));
        assert_eq!((&o.group, o.mode), (&None, Some(0o660)));
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
            vec![crate::host::usage::Use::Mounted {
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
                    early: false,
                    vm: None,
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
