//! vfio-bind: hand PCI devices, whole IOMMU groups at a time, to vfio-pci at boot,
//! from a declarative config (`/etc/vfio-bind.toml`).
//!
//! Data flows one way, and the module graph with it (no module imports one that imports
//! it back; `tests/module_graph.rs` checks):
//!
//! [`config`] → host inputs ([`host::snapshot`], [`host::usage`], [`state`]) → [`plan`]
//! (pure; [`plan::guard`] refuses) → [`owner`] (names resolved) → [`apply`] (the only
//! writer) → [`report`] and [`output`]. [`cmd`] has one module per subcommand and
//! composes the rest; leaves at the bottom: [`root`] (the one path handle), [`pci`],
//! [`driver`], [`atomic`], [`users`], [`names`].

#![deny(missing_docs)]
#![deny(clippy::too_many_lines)]

pub mod apply;
pub mod atomic;
pub mod cmd;
pub mod cmdline;
pub mod config;
pub mod driver;
pub mod error;
pub mod host;
pub mod interrupt;
pub mod lock;
pub mod names;
pub mod output;
pub mod owner;
pub mod pci;
pub mod plan;
pub mod report;
pub mod root;
pub mod state;
pub mod text;
pub mod users;
pub mod vm;
