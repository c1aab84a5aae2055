//! The JSON documents of `list --json` and `status --json` (schema: `docs/json.md`,
//! vfio-bind(8) JSON OUTPUT). Fields are only ever added within a [`JSON_VERSION`].

use serde::Serialize;

use crate::host::snapshot::{Device, Host};
use crate::names::Names;
use crate::plan::model::{Action, GroupPlan, Plan, Verdict};
use crate::state::State;

/// Version of the JSON documents of `list --json` and `status --json`; bumped only on
/// incompatible changes (fields are only ever added within a version).
pub const JSON_VERSION: u32 = 1;

/// One device (`list --json`, and the members of `status --json`).
#[derive(Debug, Serialize)]
pub struct JsonDevice {
    /// PCI address, `dddd:bb:dd.f`.
    pub address: String,
    /// `vvvv:dddd`, lower-case hex.
    pub id: String,
    /// Subsystem `vvvv:dddd`, or null.
    pub subsystem: Option<String>,
    /// Vendor name from pci.ids, or null.
    pub vendor_name: Option<String>,
    /// Device name from pci.ids, or null.
    pub device_name: Option<String>,
    /// Class code, six hex digits (`0c0330`).
    pub class: String,
    /// Class name (pci.ids subclass name, or built in).
    pub class_name: String,
    /// Bound driver, or null.
    pub driver: Option<String>,
    /// `driver_override`, or null when unset.
    pub driver_override: Option<String>,
    /// Header type 1 or 2: never touched by vfio-bind.
    pub bridge: bool,
    /// The firmware's boot display device.
    pub boot_vga: bool,
}

impl JsonDevice {
    /// Build from a snapshot device.
    pub fn new(d: &Device, names: &Names) -> Self {
        JsonDevice {
            address: d.address.to_string(),
            id: d.id.to_string(),
            subsystem: d.subsystem.map(|s| s.to_string()),
            vendor_name: names.vendor(d.id).map(str::to_string),
            device_name: names.device(d.id).map(str::to_string),
            class: format!("{:06x}", d.class.0),
            class_name: names.class(d.class),
            driver: d.driver.as_deref().map(str::to_string),
            driver_override: d.driver_override.as_deref().map(str::to_string),
            bridge: d.is_bridge(),
            boot_vga: d.boot_vga,
        }
    }
}

/// One IOMMU group of `list --json`.
#[derive(Debug, Serialize)]
pub struct ListGroup {
    /// The group number.
    pub group: u32,
    /// Its PCI devices.
    pub devices: Vec<JsonDevice>,
    /// Members that are not PCI devices.
    pub other_members: Vec<String>,
}

/// The `list --json` document.
#[derive(Debug, Serialize)]
pub struct List {
    /// [`JSON_VERSION`].
    pub version: u32,
    /// Every group, by number.
    pub iommu_groups: Vec<ListGroup>,
}

impl List {
    /// Every group of the snapshot.
    pub fn new(host: &Host, names: &Names) -> Self {
        List {
            version: JSON_VERSION,
            iommu_groups: host
                .groups
                .values()
                .map(|g| ListGroup {
                    group: g.number,
                    devices: g
                        .devices
                        .iter()
                        .map(|a| JsonDevice::new(&host.devices[a], names))
                        .collect(),
                    other_members: g.other.clone(),
                })
                .collect(),
        }
    }
}

/// A configured group's state in `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupState {
    /// Every member in place, node as configured.
    Bound,
    /// Some members need a write.
    NotBound,
    /// A guard refuses the group.
    Refused,
    /// Members in place, but `/dev/vfio/<group>` is absent or not as configured.
    NodeNotAsConfigured,
}

impl GroupState {
    /// From the plan's verdict and whether the node is as configured.
    pub fn new(verdict: Verdict, node_ok: bool) -> Self {
        match verdict {
            Verdict::Refused => GroupState::Refused,
            Verdict::Pending { .. } => GroupState::NotBound,
            Verdict::Bound if node_ok => GroupState::Bound,
            Verdict::Bound | Verdict::NodePending => GroupState::NodeNotAsConfigured,
        }
    }
}

/// What `apply` would do to a member now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pending {
    /// Nothing.
    Keep,
    /// The bind protocol.
    Bind,
    /// Set `driver_override` only.
    SetOverride,
    /// A bridge: never touched.
    Bridge,
}

impl From<&Action> for Pending {
    fn from(a: &Action) -> Self {
        match a {
            Action::Bridge => Pending::Bridge,
            Action::Keep { .. } => Pending::Keep,
            Action::SetOverride { .. } => Pending::SetOverride,
            Action::Bind { .. } => Pending::Bind,
        }
    }
}

/// `/dev/vfio/<group>` as found.
#[derive(Debug, Serialize)]
pub struct Node {
    /// `/dev/vfio/<group>`.
    pub path: String,
    /// It exists.
    pub present: bool,
    /// Owner uid.
    pub uid: Option<u32>,
    /// Owner name (or the uid as text).
    pub user: Option<String>,
    /// Group gid.
    pub gid: Option<u32>,
    /// Group name (or the gid as text).
    pub group: Option<String>,
    /// Octal string, `"0660"`.
    pub mode: Option<String>,
    /// Owner as configured (`null`: left as udev made it).
    pub configured_user: Option<String>,
    /// Group as configured.
    pub configured_group: Option<String>,
    /// Mode as configured.
    pub configured_mode: Option<String>,
    /// Present and matching the configured parts.
    pub as_configured: bool,
}

/// One member of a `status` group.
#[derive(Debug, Serialize)]
pub struct Member {
    /// The device.
    #[serde(flatten)]
    pub device: JsonDevice,
    /// What `apply` would do now.
    pub pending: Pending,
    /// The driver the member should be on (null for bridges).
    pub target: Option<String>,
    /// The config entry (1-based) naming it, or null for a member that shares the group.
    pub entry: Option<usize>,
    /// Claimed in the initramfs (`vfio-bind claim`), as recorded in the state.
    pub early: bool,
}

/// A refusal.
#[derive(Debug, Serialize)]
pub struct Refusal {
    /// The member at fault.
    pub member: String,
    /// Why, and the fix.
    pub reason: String,
}

/// One configured group of `status`.
#[derive(Debug, Serialize)]
pub struct Group {
    /// The group number.
    pub group: u32,
    /// Its state.
    pub state: GroupState,
    /// Every PCI member.
    pub members: Vec<Member>,
    /// Why it is refused.
    pub refusals: Vec<Refusal>,
    /// Its node.
    pub node: Node,
}

impl Group {
    /// A planned group with its node as found, and what `state` recorded of its members.
    pub fn new(g: &GroupPlan, host: &Host, state: &State, names: &Names, node: Node) -> Self {
        Group {
            group: g.group,
            state: GroupState::new(g.verdict(), node.as_configured),
            members: g
                .members
                .iter()
                .map(|m| Member {
                    device: JsonDevice::new(&host.devices[&m.address], names),
                    pending: Pending::from(&m.action),
                    target: m.action.target().map(|d| d.to_string()),
                    entry: m.entry,
                    early: state.get(m.address).is_some_and(|r| r.early),
                })
                .collect(),
            refusals: g
                .refusals
                .iter()
                .map(|r| Refusal {
                    member: r.member.clone(),
                    reason: r.reason.clone(),
                })
                .collect(),
            node,
        }
    }
}

/// A device to release.
#[derive(Debug, Serialize)]
pub struct Release {
    /// Its PCI address.
    pub address: String,
    /// Its driver now.
    pub driver: Option<String>,
    /// The driver it goes back to.
    pub previous_driver: Option<String>,
    /// Still on the host.
    pub present: bool,
}

/// A config entry that selects nothing this run can bind.
#[derive(Debug, Serialize)]
pub struct Problem {
    /// The entry (1-based).
    pub entry: usize,
    /// `file:line:column`.
    pub origin: String,
    /// What is wrong.
    pub message: String,
    /// An error rather than a warning.
    pub error: bool,
}

/// The `status --json` document.
#[derive(Debug, Serialize)]
pub struct Status {
    /// [`JSON_VERSION`].
    pub version: u32,
    /// Everything is as configured (the exit code is 0).
    pub ok: bool,
    /// Each configured group.
    pub groups: Vec<Group>,
    /// Devices vfio-bind bound that the config no longer names (`apply` releases them).
    pub releases: Vec<Release>,
    /// Entries that matched nothing, and the like.
    pub problems: Vec<Problem>,
    /// Each `[[vm]]` profile, and each VM something is recorded for, by name.
    pub vms: Vec<Vm>,
}

/// A VM in `status --json`: its profile, and what its `attach` bound and handed over.
#[derive(Debug, Serialize)]
pub struct Vm {
    /// The libvirt domain name.
    pub name: String,
    /// A `[[vm]]` profile names it (false: only records are left, from a profile since
    /// removed).
    pub configured: bool,
    /// Its attach bound something or handed the console over that its detach has not
    /// given back.
    pub attached: bool,
    /// The IOMMU groups its attach bound.
    pub groups: Vec<u32>,
    /// The devices its attach bound, with the driver each is on and had.
    pub devices: Vec<Release>,
    /// The console handover steps recorded (`unit display-manager.service`,
    /// `vtconsole vtcon1`, `framebuffer efi-framebuffer.0`, `module nvidia_drm`).
    pub handover: Vec<String>,
}

impl Status {
    /// The document for `plan`, with each group's node as found (`groups`, in plan order).
    pub fn new(plan: &Plan, groups: Vec<Group>) -> Self {
        let releases: Vec<Release> = plan
            .releases
            .iter()
            .map(|r| Release {
                address: r.address.to_string(),
                driver: r.driver.as_deref().map(str::to_string),
                previous_driver: r.record.previous_driver.as_deref().map(str::to_string),
                present: r.present,
            })
            .collect();
        let ok = groups.iter().all(|g| g.state == GroupState::Bound)
            && releases.is_empty()
            && !plan.has_errors();
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
            vms: Vec::new(),
        }
    }
}
