//! `vfio-bind check`: validate the config and resolve it on this host; writes nothing.

use super::Context;
use crate::error::Error;

/// One line for a `[[vm]]` profile: the IOMMU groups of its devices on this host (its
/// `devices`, or the hostdevs of libvirt's definition of the domain), bound when the VM
/// starts.
fn vm_line(ctx: &Context, p: &super::Planned, vm: &crate::config::VmProfile) -> String {
    let name = crate::text::escape(&vm.name);
    let handover = if vm.handover {
        ", with console handover"
    } else {
        ""
    };
    match super::bound::vm_groups(&ctx.root, &p.config, &p.host, vm) {
        Err(_) => {
            format!(
                "VM {name}: devices from the domain XML libvirt passes when it starts{handover}"
            )
        }
        Ok(groups) if !groups.is_empty() => {
            let groups: Vec<String> = groups.iter().map(u32::to_string).collect();
            format!(
                "VM {name}: IOMMU group {} bound while it runs{handover}",
                groups.join(", ")
            )
        }
        _ => format!("VM {name}: none of its devices is on this host"),
    }
}

/// Print the resolved plan. Exit 0 when `apply` could bind everything, 1 when a group
/// would be refused or a `required` entry matches nothing, 2 on a config error
/// (including a user or group the root's user database does not know).
///
/// Errors: as [`Context::plan`].
pub fn run(ctx: &Context) -> Result<u8, Error> {
    let p = ctx.plan(None)?;
    for f in &p.config.files {
        println!("config: {}", f.display());
    }
    if p.config.files.is_empty() {
        println!("config: none found (nothing will be bound)");
    }
    print!("{}", p.plan);
    for vm in &p.config.vms {
        println!("{}", vm_line(ctx, &p, vm));
    }
    for s in crate::host::initramfs::stale(&ctx.root, &p.config.files) {
        log::warn!("{s}");
    }
    Ok(u8::from(p.plan.has_errors()))
}
