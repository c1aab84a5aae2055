//! Stage 2: the fragments of every file merged in order (main file first, then the
//! drop-ins in lexical order). Top-level keys: the last file that sets one wins. Entries
//! add up, numbered in merge order.

use std::path::PathBuf;

use crate::config::fragment::{DeviceFragment, Fragment, VmFragment};
use crate::config::model::Principal;
use crate::driver::Driver;

/// The merged configuration, defaults not yet applied to the entries.
#[derive(Debug, Default)]
pub struct Merged {
    /// Files merged, in order.
    pub files: Vec<PathBuf>,
    /// Top-level `driver` of the last file that sets it.
    pub driver: Option<Driver>,
    /// Top-level `user` of the last file that sets it.
    pub user: Option<Principal>,
    /// Top-level `group` of the last file that sets it.
    pub group: Option<Principal>,
    /// Top-level `mode` of the last file that sets it.
    pub mode: Option<u32>,
    /// Every entry, in merge order.
    pub devices: Vec<DeviceFragment>,
    /// Every `[[vm]]` profile, in merge order.
    pub vms: Vec<VmFragment>,
    /// Every `user` and `group` value written, with its key, in file order.
    pub principals: Vec<(&'static str, Principal)>,
}

/// Merge `(file, fragment)` pairs, given in merge order.
pub fn merge(fragments: Vec<(PathBuf, Fragment)>) -> Merged {
    let mut m = Merged::default();
    for (file, f) in fragments {
        m.files.push(file);
        let tops = [("user", &f.user), ("group", &f.group)];
        let entries = f
            .devices
            .iter()
            .flat_map(|d| [("user", &d.user), ("group", &d.group)])
            .chain(
                f.vms
                    .iter()
                    .flat_map(|v| [("user", &v.user), ("group", &v.group)]),
            );
        for (key, p) in tops.into_iter().chain(entries) {
            if let Some(p) = p {
                m.principals.push((key, p.clone()));
            }
        }
        m.driver = f.driver.or(m.driver);
        m.user = f.user.or(m.user);
        m.group = f.group.or(m.group);
        m.mode = f.mode.or(m.mode);
        m.devices.extend(f.devices);
        m.vms.extend(f.vms);
    }
    m
}
