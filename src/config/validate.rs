//! Stage 3: the merged configuration made whole: the top-level defaults applied to every
//! entry that does not set its own, entries numbered (1-based, the `device[N]` the
//! messages name).

use crate::config::merge::Merged;
use crate::config::model::{Config, ConfigError, Entry, Ownership, DEFAULT_DRIVER};
use crate::driver::Driver;

/// Apply the defaults and number the entries.
///
/// Errors: none today; combinations that contradict each other on a given host (two
/// drivers for one device, two owners for one node) are found by planning.
pub fn validate(m: Merged) -> Result<Config, ConfigError> {
    let driver = m.driver.unwrap_or_else(|| Driver::new(DEFAULT_DRIVER));
    let entries = m
        .devices
        .into_iter()
        .enumerate()
        .map(|(i, d)| Entry {
            index: i + 1,
            origin: d.origin,
            selector: d.selector,
            subsystem: d.subsystem,
            driver: d.driver.unwrap_or_else(|| driver.clone()),
            ownership: Ownership {
                user: d.user.or_else(|| m.user.clone()),
                group: d.group.or_else(|| m.group.clone()),
                mode: d.mode.or(m.mode),
            },
            allow_boot_vga: d.allow_boot_vga,
            required: d.required,
        })
        .collect();
    Ok(Config {
        files: m.files,
        driver,
        ownership: Ownership {
            user: m.user,
            group: m.group,
            mode: m.mode,
        },
        entries,
        principals: m.principals,
    })
}
