//! `vfio-bind list [--json]`: every IOMMU group and its devices, the listing VFIO guides
//! tell people to script by hand (`for g in /sys/kernel/iommu_groups/*; ...`).

use std::fmt::Write;

use super::Context;
use crate::error::Error;
use crate::host::snapshot::Host;
use crate::names::Names;
use crate::output::json;
use crate::text::fit;

/// Render the listing in the spirit of `lspci -nnk`, within 80 columns: one block per
/// group; per device its address, class and IDs, then its name (when pci.ids knows it),
/// then its driver with markers for bridges, the boot VGA device and a set override.
pub fn render(host: &Host, names: &Names) -> String {
    let mut s = String::new();
    for g in host.groups.values() {
        let _ = writeln!(s, "IOMMU group {}:", g.number);
        for addr in &g.devices {
            let d = &host.devices[addr];
            let mut notes = Vec::new();
            if d.is_bridge() {
                notes.push("bridge".to_string());
            }
            if d.boot_vga {
                notes.push("boot VGA".to_string());
            }
            if let Some(o) = &d.driver_override {
                notes.push(format!("driver_override {o}"));
            }
            let notes = if notes.is_empty() {
                String::new()
            } else {
                format!(" ({})", notes.join(", "))
            };
            let _ = writeln!(
                s,
                "  {} {} [{:04x}]: [{}]",
                d.address,
                names.class(d.class),
                d.class.class_id(),
                d.id,
            );
            if let Some(name) = names.describe(d.id) {
                let _ = writeln!(s, "      {}", fit(&name, 74));
            }
            let _ = writeln!(
                s,
                "      driver: {}{notes}",
                d.driver.as_deref().unwrap_or("none")
            );
        }
        for o in &g.other {
            let _ = writeln!(s, "  {o} (not a PCI device)");
        }
    }
    s
}

/// Print every group. Exit 0.
///
/// Errors: [`Error::NoIommu`] (exit 1) when the IOMMU is off, [`Error::Host`].
pub fn run(ctx: &Context, as_json: bool) -> Result<u8, Error> {
    let host = ctx.host()?;
    let names = Names::load(&ctx.root, host.devices.values().map(|d| d.id));
    if as_json {
        let doc = json::List::new(&host, &names);
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).expect("serializes")
        );
    } else {
        print!("{}", render(&host, &names));
    }
    Ok(0)
}
