//! `vfio-bind list [--json]`: every IOMMU group and its devices, the listing VFIO guides
//! tell people to script by hand (`for g in /sys/kernel/iommu_groups/*; ...`).

use std::fmt::Write;

use serde::Serialize;

use super::Context;
use crate::error::Error;
use crate::names::Names;
use crate::sysfs::{Device, Host};

/// Version of the JSON documents of `list --json` and `status --json`; bumped only on
/// incompatible changes (fields are only ever added within a version).
pub const JSON_VERSION: u32 = 1;

/// One device in JSON (`list --json`, and the members of `status --json`).
#[derive(Debug, Serialize)]
pub struct JsonDevice {
    /// PCI address, `dddd:bb:dd.f`.
    pub address: String,
    /// `vvvv:dddd`, lower-case hex.
    pub id: String,
    /// Subsystem `vvvv:dddd`, or null.
    pub subsystem: Option<String>,
    /// Vendor name from pci.ids, or null.
    pub vendor_name: Option<String>,
    /// Device name from pci.ids, or null.
    pub device_name: Option<String>,
    /// Class code, six hex digits (`0c0330`).
    pub class: String,
    /// Class name (pci.ids subclass name, or built in).
    pub class_name: String,
    /// Bound driver, or null.
    pub driver: Option<String>,
    /// `driver_override`, or null when unset.
    pub driver_override: Option<String>,
    /// Header type 1 or 2: never touched by vfio-bind.
    pub bridge: bool,
    /// The firmware's boot display device.
    pub boot_vga: bool,
}

impl JsonDevice {
    /// Build from a snapshot device.
    pub fn new(d: &Device, names: &Names) -> Self {
        JsonDevice {
            address: d.address.to_string(),
            id: d.id.to_string(),
            subsystem: d.subsystem.map(|s| s.to_string()),
            vendor_name: names.vendor(d.id).map(str::to_string),
            device_name: names.device(d.id).map(str::to_string),
            class: format!("{:06x}", d.class.0),
            class_name: names.class(d.class),
            driver: d.driver.as_deref().map(str::to_string),
            driver_override: d.driver_override.as_deref().map(str::to_string),
            bridge: d.is_bridge(),
            boot_vga: d.boot_vga,
        }
    }
}

#[derive(Serialize)]
struct JsonGroup {
    group: u32,
    devices: Vec<JsonDevice>,
    other_members: Vec<String>,
}

#[derive(Serialize)]
struct JsonList {
    version: u32,
    iommu_groups: Vec<JsonGroup>,
}

/// The `list --json` document (schema: vfio-bind(8), JSON OUTPUT).
pub fn json(host: &Host, names: &Names) -> String {
    let doc = JsonList {
        version: JSON_VERSION,
        iommu_groups: host
            .groups
            .values()
            .map(|g| JsonGroup {
                group: g.number,
                devices: g
                    .devices
                    .iter()
                    .map(|a| JsonDevice::new(&host.devices[a], names))
                    .collect(),
                other_members: g.other.clone(),
            })
            .collect(),
    };
    serde_json::to_string_pretty(&doc).expect("serializes") + "\n"
}

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

/// `text` cut to `width` characters, with `…` when cut (the JSON has the full names).
pub fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_string()
    } else {
        let mut t: String = text.chars().take(width - 1).collect();
        t.push('…');
        t
    }
}

/// Print every group. Exit 0; 1 when the IOMMU is off.
pub fn run(ctx: &Context, as_json: bool) -> Result<u8, Error> {
    let host = ctx.host()?;
    let names = Names::load(&ctx.root, host.devices.values().map(|d| d.id));
    if as_json {
        print!("{}", json(&host, &names));
    } else {
        print!("{}", render(&host, &names));
    }
    Ok(0)
}
