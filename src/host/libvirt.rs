//! What `doctor` reads of libvirt's files (under the root): whether vfio-bind's own hook
//! is installed, and the domain definitions (`/etc/libvirt/qemu/<vm>.xml`) whose PCI
//! hostdevs are the devices of a profile without `devices`. The hook scripts the guides
//! left are read by [`crate::host::leftovers`].
//!
//! libvirt's hook layout (`docs/hooks.rst`): `/etc/libvirt/hooks/qemu`, and since 6.5
//! every executable in `/etc/libvirt/hooks/qemu.d/`; the guides' helper script runs a
//! tree `qemu.d/<vm>/<op>/<subop>/*.sh` beneath it.

use std::fs;

use std::path::PathBuf;

use crate::root::Root;

/// vfio-bind's hook, as installed.
pub const HOOK: &str = "/etc/libvirt/hooks/qemu.d/vfio-bind";
/// libvirt's QEMU hook directory.
pub const HOOK_DIR: &str = "/etc/libvirt/hooks/qemu.d";
/// libvirt's single QEMU hook script.
pub const HOOK_SCRIPT: &str = "/etc/libvirt/hooks/qemu";
/// Where libvirt keeps the definitions of the system instance's QEMU domains.
pub const DOMAIN_DIR: &str = "/etc/libvirt/qemu";

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

/// libvirt's definition of `vm`, parsed; `None` when it has none or it does not parse.
pub fn domain(root: &Root, vm: &str) -> Option<crate::vm::xml::Domain> {
    domain_xml(root, vm).and_then(|(f, x)| crate::vm::xml::parse(&f, &x).ok())
}
