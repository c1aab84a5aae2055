//! vfio-bind: hand PCI devices, whole IOMMU groups at a time, to vfio-pci at boot,
//! from a declarative config (`/etc/vfio-bind.toml`).
//!
//! Data flows one way: [`config`] → host snapshot ([`sysfs`]) → [`plan`] → [`apply`] →
//! [`report`]. Only [`apply`] writes to the host.

pub mod apply;
pub mod cmd;
pub mod config;
pub mod error;
pub mod inuse;
pub mod names;
pub mod pci;
pub mod plan;
pub mod report;
pub mod state;
pub mod sysfs;
