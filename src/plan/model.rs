//! The plan's types: what happens to each member of each IOMMU group, why a group is
//! refused, what is released, and the one [`Verdict`] every command shows for a group.

use thiserror::Error;

use crate::config::{Origin, Ownership};
use crate::driver::Driver;
use crate::pci::{ClassCode, PciAddress, PciId};
use crate::state::Record;

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
    /// Already on the target driver with `driver_override` set to it (or a member no
    /// entry names that already keeps the group viable): nothing to do.
    Keep {
        /// The target driver.
        driver: Driver,
    },
    /// Already on the target driver, but `driver_override` does not name it: set the
    /// override so a later reprobe or rescan keeps the device there; no rebind.
    SetOverride {
        /// The target driver.
        driver: Driver,
    },
    /// Run the bind protocol: override, unbind from the current driver if any, reprobe,
    /// verify.
    Bind {
        /// The target driver.
        driver: Driver,
    },
}

impl Action {
    /// True when applying this action writes to sysfs.
    pub fn writes(&self) -> bool {
        matches!(self, Action::SetOverride { .. } | Action::Bind { .. })
    }

    /// The driver the member ends on, `None` for bridges.
    pub fn target(&self) -> Option<&Driver> {
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
    pub driver: Option<Driver>,
    /// `driver_override` at snapshot time.
    pub driver_override: Option<Driver>,
    /// The entry (1-based index) that names this device, if any; `None` for a member
    /// included only because it shares the group.
    pub entry: Option<usize>,
    /// The entry that names it permits the boot VGA device (`allow_boot_vga`).
    pub allow_boot_vga: bool,
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

/// The state of a configured group, as `check`, `status` and `doctor` show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A guard refused the group: nothing will be changed.
    Refused,
    /// Some members need a write (`apply` binds them).
    Pending {
        /// How many members need a write.
        changes: usize,
    },
    /// Every member is where it should be, but `/dev/vfio/<group>` does not have the
    /// configured owner, group or mode yet (`apply` sets it).
    NodePending,
    /// Every member is where it should be, and so is the node.
    Bound,
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
    /// Reasons not to touch the group; empty when it may be applied. Filled by
    /// [`crate::plan::guard::refuse`].
    pub refusals: Vec<Refusal>,
    /// Ownership wanted on `/dev/vfio/<group>`.
    pub ownership: Ownership,
    /// The node does not have that ownership yet (filled by [`crate::plan::node::check`]).
    pub node_pending: bool,
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

    /// The group's verdict: refused, pending (with the number of writes), or bound.
    pub fn verdict(&self) -> Verdict {
        let changes = self.members.iter().filter(|m| m.action.writes()).count();
        if self.is_refused() {
            Verdict::Refused
        } else if changes > 0 {
            Verdict::Pending { changes }
        } else if self.node_pending {
            Verdict::NodePending
        } else {
            Verdict::Bound
        }
    }

    /// True when a member ends on a vfio driver, so the kernel creates
    /// `/dev/vfio/<group>` (a group handed to `pci-stub` alone has none).
    pub fn has_vfio_node(&self) -> bool {
        self.members
            .iter()
            .any(|m| m.action.target().is_some_and(Driver::is_vfio))
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
    pub driver: Option<Driver>,
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

    /// True when some group needs a sysfs write (only then do the host-use guards need
    /// their scan of block devices, mounts and interfaces).
    pub fn needs_writes(&self) -> bool {
        self.groups.iter().any(|g| !g.is_bound())
    }
}
