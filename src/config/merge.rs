//! Stage 2: the fragments of every file merged in order (main file first, then the
//! drop-ins in lexical order). Top-level keys: the last file that sets one wins. Entries
//! add up, numbered in merge order.

use std::path::PathBuf;

use crate::config::fragment::{DeviceFragment, Fragment, Settings, VmFragment};
use crate::config::model::Principal;

/// The merged configuration, defaults not yet applied to the entries.
#[derive(Debug, Default)]
pub struct Merged {
    /// Files merged, in order.
    pub files: Vec<PathBuf>,
    /// The top-level settings, each from the last file that sets it.
    pub settings: Settings,
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
        let written = f
            .settings
            .principals()
            .chain(f.devices.iter().flat_map(|d| d.settings.principals()))
            .chain(f.vms.iter().flat_map(|v| v.settings.principals()));
        m.principals
            .extend(written.map(|(key, p)| (key, p.clone())));
        m.settings = f.settings.or(&m.settings);
        m.devices.extend(f.devices);
        m.vms.extend(f.vms);
    }
    m
}
