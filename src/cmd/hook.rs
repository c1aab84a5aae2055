//! `vfio-bind hook VM OP SUBOP EXTRA`: the libvirt QEMU hook, installed as
//! `/etc/libvirt/hooks/qemu.d/vfio-bind` (libvirt ≥ 6.5 runs every executable there,
//! in order, with the domain XML on stdin; libvirt's `docs/hooks.rst`).
//!
//! The contract it keeps (`src/util/virhook.c`, `src/qemu/qemu_process.c`):
//! - stdin is always read to its end, whatever the operation (libvirt writes the whole
//!   XML into the pipe);
//! - only VMs with a `[[vm]]` profile are acted on (and, on release, VMs with records);
//! - `prepare begin` (before libvirt touches any hostdev) attaches; a failure exits 1 with
//!   one line on stderr, which libvirt shows as the reason the start failed;
//! - `release end` detaches; libvirt also calls it after a failed start, so it is
//!   idempotent, and it always exits 0 (libvirt ignores failures there; they go to the
//!   journal);
//! - every other operation exits 0 and prints nothing: `migrate` and `restore` read
//!   stdout as a replacement XML, so nothing is ever written to stdout;
//! - it never calls back into libvirt (`virsh` from a hook deadlocks the daemon) and
//!   every child it starts (`systemctl`, `modprobe`) is waited for with stdout closed, so
//!   none is left holding libvirt's pipes.
//!
//! A config that cannot be read fails `prepare begin` for every VM (whether the VM is
//! one vfio-bind should act on cannot be known) and names the config error.

use std::io::Read;
use std::path::Path;

use super::attach::{self, DomainXml};
use super::Context;
use crate::config;

/// The `<extra>` libvirt passes: `-`, or since 10.5 the shutoff reason on `stopped`
/// and `release` (shutdown, destroyed, crashed, ...); not used.
pub fn run(ctx: &Context, vm: &str, op: &str, subop: &str, _extra: &[String]) -> u8 {
    let mut xml = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut xml) {
        log::warn!("VM {vm}: reading the domain XML from stdin: {e}");
    }
    match (op, subop) {
        ("prepare", "begin") => prepare(ctx, vm, &String::from_utf8_lossy(&xml)),
        ("release", "end") => {
            match attach::detach(ctx, vm) {
                Ok(0) => {}
                Ok(_) => log::error!(
                    "VM {vm}: detach left something recorded; `vfio-bind detach {vm}` tries again"
                ),
                Err(e) => log::error!("VM {vm}: detach failed: {e}"),
            }
            0
        }
        _ => 0,
    }
}

/// `prepare begin`: attach when the VM has a profile. The exit code and the one line.
fn prepare(ctx: &Context, vm: &str, xml: &str) -> u8 {
    let fail = |line: String| {
        log::error!("{line}");
        eprintln!("vfio-bind: {}", line.lines().next().unwrap_or_default());
        1
    };
    let config = match config::load(&ctx.config) {
        Ok(c) => c,
        Err(e) => return fail(format!("invalid configuration: {e}")),
    };
    let Some(profile) = config.vm(vm) else {
        log::debug!("VM {vm}: no [[vm]] profile; nothing to do");
        return 0;
    };
    let domain = DomainXml {
        file: Path::new("<stdin>"),
        text: xml,
    };
    match attach::attach_profile(ctx, &config, profile, Some(domain)) {
        Ok(0) => 0,
        Ok(_) => fail(format!("VM {vm}: not attached")),
        Err(e) => fail(e.to_string()),
    }
}
