//! Why a group, a release or a node could not be applied: each error names the device or
//! group, the file and the errno where there is one.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

use crate::host::sysfs::ReadError;
use crate::pci::PciAddress;
use crate::state::StateError;

/// Why a group could not be applied. Each names the device or group, the file and the
/// errno where there is one.
#[derive(Debug, Error)]
pub enum ApplyError {
    /// A sysfs or devfs write failed.
    #[error("{device}: cannot write {value:?} to {}: {source}", path.display())]
    Write {
        /// The device (or `group N`) being changed.
        device: String,
        /// The file written.
        path: PathBuf,
        /// What was written.
        value: String,
        /// The error, with its errno.
        #[source]
        source: io::Error,
    },
    /// A read during verification failed.
    #[error("{device}: {source}")]
    Read {
        /// The device being verified.
        device: PciAddress,
        /// The failed read.
        #[source]
        source: ReadError,
    },
    /// The device did not end on the expected driver in time.
    #[error(
        "{device}: not bound to {expected} after {timeout_ms} ms (driver now: {found}); {hint}"
    )]
    Verify {
        /// The device.
        device: PciAddress,
        /// The driver it should be on.
        expected: String,
        /// The driver it is on (`none` when unbound).
        found: String,
        /// The bounded wait, in milliseconds.
        timeout_ms: u128,
        /// What to look at next.
        hint: &'static str,
    },
    /// The driver is not registered and could not be loaded.
    #[error("driver {driver} is not available ({}): {reason}", path.display())]
    Driver {
        /// The driver name.
        driver: String,
        /// Its sysfs directory that is missing.
        path: PathBuf,
        /// Why loading failed.
        reason: String,
    },
    /// `/dev/vfio/<group>` did not appear, or its ownership could not be set.
    #[error("group {group}: {message} ({})", path.display())]
    Node {
        /// The IOMMU group.
        group: u32,
        /// The node path.
        path: PathBuf,
        /// What went wrong (with errno where there is one).
        message: String,
    },
    /// The state file could not be written; the group was not touched (or was rolled
    /// back).
    #[error("{0}")]
    State(#[from] StateError),
    /// After release the device is still on a vfio driver.
    #[error("{device}: still on {driver} after release (is {driver} claiming it by ID, e.g. a vfio-pci ids= module option?)")]
    StillVfio {
        /// The device.
        device: PciAddress,
        /// The vfio driver it is on.
        driver: String,
    },
    /// A terminating signal arrived: the group in progress is rolled back, no later group
    /// is started.
    #[error("stopped by {signal}{}", device.map(|d| format!(" while binding {d}")).unwrap_or_default())]
    Interrupted {
        /// The signal (`SIGTERM`).
        signal: &'static str,
        /// The device whose bind was in progress, if one was.
        device: Option<PciAddress>,
    },
    /// A group on a vfio driver is open (a VM or another program uses it): releasing it
    /// would block in the kernel (vfio-pci's remove waits for the device to be closed).
    #[error(
        "IOMMU group {group} is in use: {holders}; not released (stop the VM or program first)"
    )]
    InUse {
        /// The IOMMU group.
        group: u32,
        /// Who holds which node (`pid 777 (qemu-system-x86) holds /dev/vfio/9 of ...`).
        holders: String,
    },
    /// The plan refused the group (see the refusals).
    #[error("group {group} refused: {reasons}")]
    Refused {
        /// The IOMMU group.
        group: u32,
        /// The refusal reasons, joined.
        reasons: String,
    },
}
