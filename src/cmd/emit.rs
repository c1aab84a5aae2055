//! `vfio-bind emit libvirt|qemu [VM|ADDR...]`: the `<hostdev>` elements or the QEMU
//! `-device vfio-pci` arguments for configured groups ([`crate::output::emit`]). Reads
//! the host, writes nothing.

use super::Context;
use crate::config::{self, Entry, Selector};
use crate::error::Error;
use crate::names::Names;
use crate::output::emit;
use crate::pci::PciAddress;
use crate::plan;
use crate::state::State;

/// What to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// libvirt domain XML `<hostdev>` elements.
    Libvirt,
    /// QEMU command-line arguments.
    Qemu,
}

/// Print the snippets for `targets` (each a `[[vm]]` name or a PCI address
/// `dddd:bb:dd.f`); none: every `[[device]]` entry and every profile that lists its
/// `devices`. Exit 0, or 1 when a target's device is not on this host.
///
/// Errors: [`Error::Config`] (exit 2); [`Error::Usage`] (exit 2) for a target that is
/// neither, or a profile without `devices`; as [`Context::host`].
pub fn run(ctx: &Context, format: Format, targets: &[String]) -> Result<u8, Error> {
    let config = config::load(&ctx.config)?;
    let picked = pick(&config, targets)?;
    let entries = picked
        .into_iter()
        .enumerate()
        .map(|(i, (selector, origin, _))| Entry {
            index: i + 1,
            origin,
            selector,
            subsystem: None,
            driver: config.driver.clone(),
            ownership: config::Ownership::default(),
            allow_boot_vga: true,
            required: !targets.is_empty(),
        })
        .collect();
    let wanted = config::Config {
        entries,
        vms: Vec::new(),
        ..config
    };
    let host = ctx.host()?;
    // Every entry asks the same driver and no ownership: planning finds no conflict.
    let p = plan::plan(&wanted, &host, &State::default())?;
    for pr in &p.problems {
        if pr.error {
            log::error!("{}: {}", pr.origin, pr.message);
        } else {
            log::warn!("{}: {}", pr.origin, pr.message);
        }
    }
    let text = match format {
        Format::Libvirt => {
            let names = Names::load(
                &ctx.root,
                p.groups.iter().flat_map(|g| g.members.iter().map(|m| m.id)),
            );
            emit::libvirt(&p.groups, &names)
        }
        Format::Qemu => emit::qemu(&p.groups),
    };
    print!("{text}");
    Ok(u8::from(p.has_errors()))
}

/// The selectors of `targets`, or of everything configured when there are none.
///
/// Errors: [`Error::Usage`] for a target that is neither a profile nor an address, or a
/// profile without `devices`.
fn pick(
    config: &config::Config,
    targets: &[String],
) -> Result<Vec<(Selector, config::Origin, String)>, Error> {
    let mut picked: Vec<(Selector, config::Origin, String)> = Vec::new();
    let from_vm = |vm: &config::VmProfile, out: &mut Vec<(Selector, config::Origin, String)>| {
        for (s, o) in vm.devices.iter().flatten() {
            out.push((*s, o.clone(), format!("VM {}", vm.name)));
        }
    };
    if targets.is_empty() {
        for e in &config.entries {
            picked.push((e.selector, e.origin.clone(), format!("device[{}]", e.index)));
        }
        for vm in &config.vms {
            if vm.devices.is_none() {
                log::info!(
                    "VM {}: its devices come from its domain XML; not emitted",
                    vm.name
                );
            }
            from_vm(vm, &mut picked);
        }
    }
    for t in targets {
        if let Some(vm) = config.vm(t) {
            if vm.devices.is_none() {
                return Err(Error::Usage(format!(
                    "VM {}: its [[vm]] profile ({}) has no `devices` (they come from its \
                     domain XML); name the PCI addresses instead",
                    vm.name, vm.origin
                )));
            }
            from_vm(vm, &mut picked);
        } else if let Ok(a) = t.parse::<PciAddress>() {
            let origin = config::Origin {
                file: "<command line>".into(),
                line: 1,
                column: 1,
            };
            picked.push((Selector::Address(a), origin, a.to_string()));
        } else {
            return Err(Error::Usage(format!(
                "{}: neither a [[vm]] profile nor a PCI address (dddd:bb:dd.f)",
                crate::text::escape(t)
            )));
        }
    }
    Ok(picked)
}
