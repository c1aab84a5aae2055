//! `vfio-bind import [--write]`: config entries from what the guides left on this host
//! ([`crate::host::leftovers`]): the IDs of `options vfio-pci ids=`, the PCI addresses and
//! IDs of hand-made binding scripts, and, for a libvirt hook tree
//! (`/etc/libvirt/hooks/qemu.d/<vm>/…`), a `[[vm]]` profile with the devices its scripts
//! `nodedev-detach` (with `handover = true` when they stop the display manager or unbind
//! the console). Devices the config already binds are left out.
//!
//! The TOML goes to stdout; with `--write` it becomes the drop-in
//! `/etc/vfio-bind.d/50-imported.toml` (created, never replaced). No file that was read is
//! ever edited: what the user can remove afterwards is listed instead.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use super::Context;
use crate::config::{self, Config};
use crate::error::Error;
use crate::host::leftovers::{self, Kind, Leftover};
use crate::host::libvirt::HOOK_DIR;
use crate::host::snapshot::Host;
use crate::pci::{PciAddress, PciId};

/// Where `--write` puts the entries.
pub const DROPIN: &str = "/etc/vfio-bind.d/50-imported.toml";

/// What is imported: `[[device]]` selectors and `[[vm]]` profiles, each with its sources.
#[derive(Default)]
struct Import {
    ids: BTreeMap<PciId, Vec<String>>,
    addresses: BTreeMap<PciAddress, Vec<String>>,
    vms: BTreeMap<String, (BTreeSet<PciAddress>, bool, Vec<String>)>,
}

/// The VM whose hook tree `file` is in (`/etc/libvirt/hooks/qemu.d/<vm>/…`).
fn hook_vm(file: &str) -> Option<String> {
    let rest = file.strip_prefix(HOOK_DIR)?.strip_prefix('/')?;
    let (vm, tail) = rest.split_once('/')?;
    (!tail.is_empty() && crate::vm::name::valid(vm)).then(|| vm.to_string())
}

/// True when a hook script hands the console over (the guides' single-GPU steps).
fn hands_over(ctx: &Context, file: &str) -> bool {
    let text = std::fs::read_to_string(ctx.root.path(file)).unwrap_or_default();
    ["display-manager", "vtcon", "efi-framebuffer"]
        .iter()
        .any(|w| text.contains(w))
}

/// What the config binds already: every member of the groups of its `[[device]]` entries
/// and `[[vm]]` profiles, and the IDs it names or that those devices have (an `ids=` of
/// those would take the same devices again).
fn covered(ctx: &Context, host: &Host, config: &Config) -> (BTreeSet<PciAddress>, BTreeSet<PciId>) {
    let (addrs, ids) = super::bound::configured(&ctx.root, host, config);
    let mut ids: BTreeSet<PciId> = ids.into_keys().collect();
    ids.extend(
        addrs
            .keys()
            .filter_map(|a| host.devices.get(a).map(|d| d.id)),
    );
    (addrs.into_keys().collect(), ids)
}

/// The addresses of a script the config does not bind yet. The boot VGA device is never
/// made a boot-time entry: a guide's script that takes it is a single-GPU VM's, and
/// binding it at boot blanks the host's console (a VM's hook tree may name it).
fn fresh(
    host: &Host,
    bound: &BTreeSet<PciAddress>,
    file: &str,
    addresses: &[PciAddress],
) -> Vec<PciAddress> {
    addresses
        .iter()
        .filter(|a| !bound.contains(a))
        .filter(|a| !host.devices.get(a).is_some_and(|d| d.boot_vga) || hook_vm(file).is_some())
        .copied()
        .collect()
}

fn collect(ctx: &Context, host: &Host, config: &Config, found: &[Leftover]) -> Import {
    let (bound, named_ids) = covered(ctx, host, config);
    let mut im = Import::default();
    for l in found {
        let at = l.at();
        match &l.kind {
            Kind::VfioIds(ids) => {
                for id in ids.iter().filter(|i| !named_ids.contains(i)) {
                    im.ids.entry(*id).or_default().push(at.clone());
                }
            }
            Kind::Writes {
                what,
                addresses,
                ids,
            } => {
                let file = l.file.display().to_string();
                let fresh = fresh(host, &bound, &file, addresses);
                if let Some(vm) = hook_vm(&file) {
                    if config.vm(&vm).is_none() && !fresh.is_empty() {
                        let e = im.vms.entry(vm).or_default();
                        e.0.extend(fresh);
                        e.1 |= hands_over(ctx, &file);
                        e.2.push(at);
                    }
                    continue;
                }
                // A libvirt hook that is not a per-VM tree (the single `hooks/qemu`
                // dispatcher, a file directly in `qemu.d/`), or any `nodedev-detach`: the
                // devices are a VM's, never boot-time entries. Name the VM by hand.
                if *what == "nodedev-detach" || file.starts_with("/etc/libvirt/hooks/") {
                    let list: Vec<String> = fresh.iter().map(ToString::to_string).collect();
                    log::warn!(
                        "{at}: a libvirt hook detaches {}; not imported (which VM is not \
                         known): add a [[vm]] profile naming the VM",
                        list.join(", ")
                    );
                    continue;
                }
                for a in fresh {
                    im.addresses.entry(a).or_default().push(at.clone());
                }
                for id in ids.iter().filter(|i| !named_ids.contains(i)) {
                    im.ids.entry(*id).or_default().push(at.clone());
                }
            }
            _ => {}
        }
    }
    // An address whose device an imported ID takes already needs no entry of its own.
    im.addresses.retain(|a, _| {
        !host
            .devices
            .get(a)
            .is_some_and(|d| im.ids.contains_key(&d.id))
    });
    im
}

fn render(im: &Import) -> String {
    let mut s = String::from(
        "# Imported by `vfio-bind import` from what VFIO guides left on this host.\n\
         # Check it with `vfio-bind check`; apply it with `systemctl reload vfio-bind`.\n",
    );
    for (id, from) in &im.ids {
        let _ = write!(
            s,
            "\n# from {}\n[[device]]\nid = \"{id}\"\n",
            from.join(", ")
        );
    }
    for (a, from) in &im.addresses {
        let _ = write!(
            s,
            "\n# from {}\n[[device]]\naddress = \"{a}\"\n",
            from.join(", ")
        );
    }
    for (vm, (devs, handover, from)) in &im.vms {
        let devs: Vec<String> = devs.iter().map(|d| format!("\"{d}\"")).collect();
        let _ = write!(
            s,
            "\n# from the libvirt hook scripts {}\n[[vm]]\nname = \"{}\"\ndevices = [{}]\n",
            from.join(", "),
            vm.replace('\\', "\\\\").replace('"', "\\\""),
            devs.join(", ")
        );
        if *handover {
            s.push_str("handover = true\n");
        }
    }
    s
}

/// Print (or with `write`, create [`DROPIN`]) the imported entries, then list what can be
/// removed. Exit 0.
///
/// Errors: [`Error::Config`] (exit 2) for the config; [`Error::Usage`] (exit 2) when
/// [`DROPIN`] exists already; [`Error::Failed`] when it cannot be written; as
/// [`Context::host`].
pub fn run(ctx: &Context, write: bool) -> Result<u8, Error> {
    let config = config::load(&ctx.config)?;
    let host = ctx.host()?;
    let found = leftovers::read(&ctx.root);
    let im = collect(ctx, &host, &config, &found);
    let empty = im.ids.is_empty() && im.addresses.is_empty() && im.vms.is_empty();
    let text = render(&im);
    // What is written must be a config vfio-bind reads.
    config::parse(&[(std::path::Path::new(DROPIN), &text)])?;
    if empty {
        log::info!("nothing to import: no guide leftover names a device the config does not bind");
    } else if write {
        if let config::Source::File(f) = &ctx.config {
            return Err(Error::Usage(format!(
                "--write creates {DROPIN}, which is not read with --config {}: write the \
                 printed entries into that file yourself",
                crate::text::escape(&f.display().to_string())
            )));
        }
        create_new(&ctx.root.path(DROPIN), &text)?;
        log::info!("wrote {DROPIN}; check it with `vfio-bind check`");
    } else {
        print!("{text}");
    }
    removable(&found);
    Ok(0)
}

/// Create `path` with `text` (mode 0644), never replacing a file that exists (also one
/// created in between: `O_EXCL`), and sync it.
///
/// Errors: [`Error::Usage`] when it exists, [`Error::Failed`] naming the errno otherwise.
fn create_new(path: &std::path::Path, text: &str) -> Result<(), Error> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let fail = |e: std::io::Error| Error::Failed(format!("cannot write {DROPIN}: {e}"));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let mut f = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Error::Usage(format!(
                "{DROPIN} exists already: remove it or merge by hand (`vfio-bind import` \
                 prints the entries)"
            )))
        }
        Err(e) => return Err(fail(e)),
    };
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(fail)
}

/// The lines the user can remove once the entries are in place: the guides' binding
/// and loading lines (never edited here).
fn removable(found: &[Leftover]) {
    let lines: Vec<String> = found
        .iter()
        .filter_map(|l| {
            let what = match &l.kind {
                Kind::VfioIds(_) => "options vfio-pci ids=",
                Kind::Softdep(_) => "softdep ... pre: vfio-pci",
                Kind::DisableVga => "disable_vga=1",
                Kind::Load(m) if m.replace('-', "_").starts_with("vfio") => {
                    "a vfio module to load: vfio-bind loads vfio-pci itself"
                }
                // Not imported (which VM is not known): not to be removed yet either.
                Kind::Writes { .. }
                    if l.file.starts_with("/etc/libvirt/hooks")
                        && hook_vm(&l.file.display().to_string()).is_none() =>
                {
                    return None
                }
                Kind::Writes { what, .. } => what,
                Kind::WorldWritable => "chmod 666 /dev/vfio",
                _ => return None,
            };
            Some(format!("  {}  ({what})", l.at()))
        })
        .collect();
    if !lines.is_empty() {
        log::info!(
            "once `vfio-bind check` shows the imported entries, remove these lines and \
             rebuild the initramfs:\n{}",
            lines.join("\n")
        );
    }
}
