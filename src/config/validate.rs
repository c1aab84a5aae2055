//! Stage 3: the merged configuration made whole: the top-level defaults applied to every
//! entry that does not set its own, entries numbered (1-based, the `device[N]` the
//! messages name), `[[vm]]` names checked to be unique.

use crate::config::merge::Merged;
use crate::config::model::{Config, ConfigError, Entry, VmProfile, DEFAULT_DRIVER};
use crate::driver::Driver;

/// Apply the defaults and number the entries.
///
/// Errors: [`ConfigError::At`] for a second `[[vm]]` profile with a name an earlier one
/// has (at its `name`, naming the first). Other combinations that contradict each other on a given host (two
/// drivers for one device, two owners for one node) are found by planning.
pub fn validate(m: Merged) -> Result<Config, ConfigError> {
    let driver = m
        .settings
        .driver
        .clone()
        .unwrap_or_else(|| Driver::new(DEFAULT_DRIVER));
    let entries = m
        .devices
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            let s = d.settings.or(&m.settings);
            Entry {
                index: i + 1,
                origin: d.origin,
                selector: d.selector,
                subsystem: d.subsystem,
                driver: s.driver.clone().unwrap_or_else(|| driver.clone()),
                ownership: s.ownership(),
                allow_boot_vga: d.allow_boot_vga,
                required: d.required,
            }
        })
        .collect();
    let mut vms: Vec<VmProfile> = Vec::with_capacity(m.vms.len());
    for (i, v) in m.vms.into_iter().enumerate() {
        if let Some(first) = vms.iter().find(|p| p.name == v.name) {
            return Err(ConfigError::at(
                &v.name_origin,
                format!(
                    "name: a [[vm]] profile named \"{}\" is already at {}; one profile per VM",
                    crate::text::escape(&v.name),
                    first.origin
                ),
            ));
        }
        let s = v.settings.or(&m.settings);
        vms.push(VmProfile {
            index: i + 1,
            origin: v.origin,
            name: v.name,
            devices: v.devices,
            handover: v.handover,
            stop_units: v.stop_units,
            unload_modules: v.unload_modules,
            driver: s.driver.clone().unwrap_or_else(|| driver.clone()),
            ownership: s.ownership(),
        });
    }
    Ok(Config {
        vms,
        files: m.files,
        driver,
        ownership: m.settings.ownership(),
        entries,
        principals: m.principals,
    })
}
