//! What `doctor` reads of libvirt's files (under the root): the QEMU hook scripts, to
//! find the guides' `virsh nodedev-detach` of devices a `[[vm]]` profile also binds (two
//! owners of one device), whether vfio-bind's own hook is installed, and the domain
//! definitions (`/etc/libvirt/qemu/<vm>.xml`) whose PCI hostdevs are the devices of a
//! profile without `devices`.
//!
//! libvirt's hook layout (`docs/hooks.rst`): `/etc/libvirt/hooks/qemu`, and since 6.5
//! every executable in `/etc/libvirt/hooks/qemu.d/`; the guides' helper script runs a
//! tree `qemu.d/<vm>/<op>/<subop>/*.sh` beneath it. Every regular file in that tree is
//! read (at most [`MAX_SCRIPT_BYTES`] each, [`MAX_DEPTH`] levels).

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::pci::PciAddress;
use crate::root::Root;

/// vfio-bind's hook, as installed.
pub const HOOK: &str = "/etc/libvirt/hooks/qemu.d/vfio-bind";
/// libvirt's QEMU hook directory.
pub const HOOK_DIR: &str = "/etc/libvirt/hooks/qemu.d";
/// libvirt's single QEMU hook script.
pub const HOOK_SCRIPT: &str = "/etc/libvirt/hooks/qemu";
/// Where libvirt keeps the definitions of the system instance's QEMU domains.
pub const DOMAIN_DIR: &str = "/etc/libvirt/qemu";

/// The most of one script read (a hook script is small; a larger file is not one).
pub const MAX_SCRIPT_BYTES: u64 = 1 << 20;
/// How deep beneath `qemu.d` scripts are looked for (`<vm>/<op>/<subop>/<file>` is 4).
pub const MAX_DEPTH: usize = 5;

/// A `pci_dddd_bb_dd_f` device name (libvirt's node device name) in a hook script that
/// calls `nodedev-detach`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detach {
    /// The script (under the root).
    pub file: PathBuf,
    /// 1-based line of the name.
    pub line: usize,
    /// The device.
    pub address: PciAddress,
}

/// True when vfio-bind's hook is installed (an executable file).
pub fn hook_installed(root: &Root) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(root.path(HOOK)).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The text of the domain definition of `vm`, when libvirt has one.
pub fn domain_xml(root: &Root, vm: &str) -> Option<(PathBuf, String)> {
    if !crate::vm::name::valid(vm) {
        return None;
    }
    let p = root.path(format!("{DOMAIN_DIR}/{vm}.xml"));
    let text = fs::read_to_string(&p).ok()?;
    Some((p, text))
}

/// The PCI addresses in `text` (libvirt's `pci_dddd_bb_dd_f` names and BDFs), with
/// their lines.
fn names(text: &str) -> Vec<(usize, PciAddress)> {
    text.lines()
        .enumerate()
        .flat_map(|(i, l)| {
            crate::host::leftovers::addresses(l)
                .into_iter()
                .map(move |a| (i + 1, a))
        })
        .collect()
}

fn scripts(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = rd.flatten().collect();
    entries.sort_by_key(fs::DirEntry::file_name);
    for e in entries {
        let Ok(m) = fs::metadata(e.path()) else {
            continue;
        };
        if m.is_dir() && depth > 0 {
            scripts(&e.path(), depth - 1, out);
        } else if m.is_file() {
            out.push(e.path());
        }
    }
}

/// Every device a hook script detaches with `virsh nodedev-detach` (a script that calls
/// it, and the device names in it), vfio-bind's own hook left out.
pub fn script_detaches(root: &Root) -> Vec<Detach> {
    let mut files = vec![root.path(HOOK_SCRIPT)];
    scripts(&root.path(HOOK_DIR), MAX_DEPTH, &mut files);
    let ours = root.path(HOOK);
    let mut out = Vec::new();
    for f in files.into_iter().filter(|f| *f != ours) {
        let mut text = String::new();
        let Ok(file) = fs::File::open(&f) else {
            continue;
        };
        if file
            .take(MAX_SCRIPT_BYTES)
            .read_to_string(&mut text)
            .is_err()
        {
            continue;
        }
        if !text.contains("nodedev-detach") {
            continue;
        }
        for (line, address) in names(&text) {
            out.push(Detach {
                file: f.clone(),
                line,
                address,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_device_names_are_found_with_their_lines() {
        let n = names("VIRSH_GPU_VIDEO=pci_0000_0a_00_0\nVIRSH_GPU_AUDIO=pci_0000_0a_00_1 pci_00_0\nvirsh nodedev-detach $VIRSH_GPU_VIDEO\n");
        let s: Vec<String> = n.iter().map(|(l, a)| format!("{l}:{a}")).collect();
        assert_eq!(s, ["1:0000:0a:00.0", "2:0000:0a:00.1"]);
    }
}
