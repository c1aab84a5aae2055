//! `vfio-bind list`: every IOMMU group and its devices, the listing VFIO guides tell
//! people to script by hand (`for g in /sys/kernel/iommu_groups/*; ...`).

use std::fmt::Write;

use super::Context;
use crate::error::Error;
use crate::sysfs::Host;

/// Render the listing: one block per group, one line per device with class, IDs and
/// driver, and markers for bridges, the boot VGA device and a set `driver_override`.
pub fn render(host: &Host) -> String {
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
                "  {} {} [{:04x}]: [{}]\n      driver: {}{notes}",
                d.address,
                d.class.name(),
                d.class.class_id(),
                d.id,
                d.driver.as_deref().unwrap_or("none"),
            );
        }
        for o in &g.other {
            let _ = writeln!(s, "  {o} (not a PCI device)");
        }
    }
    s
}

/// Print every group. Exit 0; 1 when the IOMMU is off.
pub fn run(ctx: &Context) -> Result<u8, Error> {
    let host = ctx.host()?;
    print!("{}", render(&host));
    Ok(0)
}
