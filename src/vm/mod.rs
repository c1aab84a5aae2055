//! Per-VM passthrough: what `attach`, `detach` and the libvirt hook (`vfio-bind hook`)
//! need beyond the bind protocol, one concern per module:
//!
//! - [`name`]: libvirt domain names, checked and made file names;
//! - [`xml`]: the PCI `<hostdev>`s of a libvirt domain XML;
//! - [`profile`]: a `[[vm]]` profile (and the domain's hostdevs) as the entries planning
//!   takes, pure;
//! - [`record`]: the console handover steps done for a VM, recorded write-ahead in
//!   `/run/vfio-bind/vms/` so `detach` undoes exactly them;
//! - [`holders`]: processes holding the members' device nodes;
//! - [`handover`]: single-GPU console handover (display manager and units, framebuffer
//!   vtconsoles, the firmware framebuffer, module unloading) and its undo; the only
//!   module that stops units.
//!
//! The VM's groups themselves go through [`crate::plan`] and [`crate::apply::group`] as
//! `apply`'s do; which VM owns a group is [`crate::state::Record::vm`]. The hook contract
//! is libvirt's (`docs/hooks.rst`, `src/util/virhook.c`).

pub mod handover;
pub mod holders;
pub mod name;
pub mod profile;
pub mod record;
pub mod xml;
