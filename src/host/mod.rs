//! What vfio-bind reads of the host, as plain data, each a separate input to planning:
//!
//! - [`sysfs`]: reading single attributes (`driver`, `driver_override`, `uevent`...), the
//!   one place sysfs files are opened for reading; also used by apply to verify binds;
//! - [`snapshot`]: the PCI devices, IOMMU groups and PCI drivers ([`snapshot::Host`]);
//! - [`nodes`]: `/dev/vfio/<group>` owner, group and mode, for the node check;
//! - [`usage`]: what the host uses beneath its devices (mounts, swap, holders, network
//!   interfaces), read only when some group will be written;
//! - [`boot`]: which bootloader sets the kernel command line, and the command that
//!   changes it;
//! - [`initramfs`]: which initramfs generator the host uses, and whether its image is
//!   older than the config;
//! - [`leftovers`]: what the VFIO guides left (modprobe options, module lists, scripts);
//! - [`libvirt`]: libvirt's hook scripts and domain definitions, for `doctor`.
//!
//! Nothing here writes.

pub mod boot;
pub mod initramfs;
pub mod leftovers;
pub mod libvirt;
pub mod nodes;
pub mod snapshot;
pub mod sysfs;
pub mod usage;
