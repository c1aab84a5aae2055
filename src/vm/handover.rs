//! Single-GPU console handover (`handover = true`): before a VM takes the GPU the host's
//! console runs on, the host lets go of it; after the VM stops, it takes it back. Every
//! step is recorded before it is taken ([`crate::vm::record`]) and undone from the record,
//! in reverse: only units that were active are started again, only vtconsoles that were
//! bound are bound again. No fixed sleeps: the bind protocol and the holder wait poll
//! conditions with bounds.
//!
//! The steps, in order:
//! 1. stop `display-manager.service` (the alias every systemd display manager installs)
//!    and the profile's `stop_units`, each only when active (`systemctl is-active`);
//! 2. unbind the framebuffer vtconsoles (`/sys/class/vtconsole/vtconN`, `name` saying
//!    "frame buffer"; `Documentation/driver-api/console.rst`) when a framebuffer of a
//!    member (or the firmware one on it) carries the console;
//! 3. unbind the firmware framebuffer that sits on a member: a `efi-framebuffer.N`,
//!    `simple-framebuffer.N` or `vesa-framebuffer.N` platform device beneath a member's
//!    sysfs directory, or whose memory lies inside a member's BAR (`/proc/iomem`); native
//!    DRM drivers and vfio-pci remove it themselves for VGA-class devices
//!    (`drivers/video/aperture.c`), not for 0x0380 display controllers;
//! 4. (after the holder wait, [`crate::vm::holders`]) unload `unload_modules`, each only
//!    when loaded (`/sys/module/<name>`).
//!
//! Units and modules are acted on only on the running host: under `--root` (a generated
//! tree) nothing is stopped or unloaded, and that is logged.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::apply::protocol::write_attr;
use crate::config::VmProfile;
use crate::pci::PciAddress;
use crate::root::Root;
use crate::vm::record::{self, Step, VmRecord};

/// The unit systemd's display managers are installed as (systemd.special(7)).
pub const DISPLAY_MANAGER: &str = "display-manager.service";

/// Platform framebuffer devices the firmware's framebuffer is registered as
/// (`drivers/firmware/sysfb.c`, `arch/x86/kernel/sysfb*`).
const FIRMWARE_FB: [&str; 3] = ["efi-framebuffer", "simple-framebuffer", "vesa-framebuffer"];

/// `/proc/iomem` names of a firmware framebuffer's memory.
const FIRMWARE_FB_IOMEM: [&str; 5] = [
    "BOOTFB",
    "efifb",
    "vesafb",
    "simplefb",
    "simple-framebuffer",
];

/// Run `program args` with no stdin and no stdout (libvirt reads a hook's stdout), wait
/// for it, and return its stderr's last line on failure.
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("{program} {}: {e}", args.join(" ")))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    Err(format!(
        "{program} {}: {}{}",
        args.join(" "),
        out.status,
        if last.is_empty() {
            String::new()
        } else {
            format!(": {}", crate::text::escape(last.trim()))
        }
    ))
}

fn save(root: &Root, rec: &mut VmRecord, step: Step) -> Result<(), String> {
    rec.steps.push(step);
    record::save(root, rec).map_err(|e| {
        rec.steps.pop();
        e.to_string()
    })
}

fn systemd(root: &Root) -> bool {
    root.is_host() && root.path("/run/systemd/system").is_dir()
}

/// Step 1: stop the display manager and `vm.stop_units` that are active.
///
/// Errors: the `systemctl` failure, or `stop_units` on a host without systemd.
fn stop_units(root: &Root, vm: &VmProfile, rec: &mut VmRecord) -> Result<(), String> {
    if !root.is_host() {
        log::info!("not stopping units under --root {}", root.base().display());
        return Ok(());
    }
    if !systemd(root) {
        if let Some(u) = vm.stop_units.first() {
            return Err(format!(
                "stop_units: cannot stop {u}: the host is not running systemd"
            ));
        }
        return Ok(());
    }
    let mut units = vec![DISPLAY_MANAGER.to_string()];
    units.extend(
        vm.stop_units
            .iter()
            .filter(|u| *u != DISPLAY_MANAGER)
            .cloned(),
    );
    for u in units {
        if run("systemctl", &["is-active", "--quiet", "--", &u]).is_err() {
            log::debug!("{u} is not active");
            continue;
        }
        save(root, rec, Step::Unit { name: u.clone() })?;
        log::info!(VFIO_BIND_ACTION = "stop-unit"; "VM {}: stopping {u}", vm.name);
        run("systemctl", &["stop", "--", &u])?;
    }
    Ok(())
}

/// The canonical sysfs directories of `members`.
fn member_dirs(root: &Root, members: &[PciAddress]) -> Vec<PathBuf> {
    members
        .iter()
        .filter_map(|a| fs::canonicalize(root.device_dir(*a)).ok())
        .collect()
}

/// The memory BARs of `members`, from their `resource` files (start, end, flags per line;
/// `IORESOURCE_MEM` = 0x200).
fn member_bars(root: &Root, members: &[PciAddress]) -> Vec<(u64, u64)> {
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
    let mut bars = Vec::new();
    for a in members {
        let text = fs::read_to_string(root.device_dir(*a).join("resource")).unwrap_or_default();
        for l in text.lines() {
            let f: Vec<u64> = l.split_whitespace().filter_map(hex).collect();
            if let [start, end, flags] = f[..] {
                if flags & 0x200 != 0 && end > start {
                    bars.push((start, end));
                }
            }
        }
    }
    bars
}

/// True when `/proc/iomem` puts a firmware framebuffer's memory inside one of `bars`.
fn firmware_fb_in(root: &Root, bars: &[(u64, u64)]) -> bool {
    let text = fs::read_to_string(root.path("/proc/iomem")).unwrap_or_default();
    text.lines().any(|l| {
        let Some((range, name)) = l.trim_start().split_once(" : ") else {
            return false;
        };
        let named = FIRMWARE_FB_IOMEM.contains(&name.trim())
            || FIRMWARE_FB.iter().any(|p| name.trim().starts_with(p));
        let Some((s, e)) = range.split_once('-') else {
            return false;
        };
        let (Ok(s), Ok(e)) = (u64::from_str_radix(s, 16), u64::from_str_radix(e, 16)) else {
            return false;
        };
        // An all-zero range is what /proc/iomem shows a reader without CAP_SYS_ADMIN.
        named && e > 0 && bars.iter().any(|&(bs, be)| s >= bs && e <= be)
    })
}

/// The firmware framebuffer platform devices bound to a driver that sit on `members`:
/// beneath one's sysfs directory, or (a device under `/sys/devices/platform`) with its
/// memory inside one's BAR. Each with its driver's name.
pub fn firmware_framebuffers(root: &Root, members: &[PciAddress]) -> Vec<(String, String)> {
    let dirs = member_dirs(root, members);
    let in_bar = firmware_fb_in(root, &member_bars(root, members));
    let Ok(rd) = fs::read_dir(root.path("/sys/bus/platform/devices")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !FIRMWARE_FB
            .iter()
            .any(|p| name.starts_with(&format!("{p}.")))
        {
            continue;
        }
        let Ok(driver) = fs::read_link(e.path().join("driver")) else {
            continue;
        };
        let Some(driver) = driver.file_name().map(|d| d.to_string_lossy().into_owned()) else {
            continue;
        };
        let real = fs::canonicalize(e.path()).unwrap_or_default();
        let beneath = dirs.iter().any(|d| real.starts_with(d));
        let platform = real.components().any(|c| c.as_os_str() == "platform");
        if beneath || (in_bar && platform) {
            out.push((name, driver));
        }
    }
    out.sort();
    out
}

/// True when a framebuffer (`/sys/class/graphics/fbN`) of a member, or of a firmware
/// framebuffer on one, exists: the framebuffer console may run on the members.
fn console_on(root: &Root, members: &[PciAddress], firmware: &[(String, String)]) -> bool {
    let mut dirs = member_dirs(root, members);
    dirs.extend(firmware.iter().filter_map(|(d, _)| {
        fs::canonicalize(root.path(format!("/sys/bus/platform/devices/{d}"))).ok()
    }));
    let Ok(rd) = fs::read_dir(root.path("/sys/class/graphics")) else {
        return !firmware.is_empty();
    };
    let fb_on_member = rd.flatten().any(|e| {
        let real = fs::canonicalize(e.path()).unwrap_or_default();
        let dev = fs::canonicalize(e.path().join("device")).unwrap_or_default();
        dirs.iter()
            .any(|d| real.starts_with(d) || dev.starts_with(d))
    });
    fb_on_member || !firmware.is_empty()
}

/// The framebuffer vtconsoles (`vtconN` whose `name` says "frame buffer") and whether
/// each is bound.
fn fb_vtconsoles(root: &Root) -> Vec<(String, PathBuf, bool)> {
    let Ok(rd) = fs::read_dir(root.path("/sys/class/vtconsole")) else {
        return Vec::new();
    };
    let mut out: Vec<(String, PathBuf, bool)> = rd
        .flatten()
        .filter_map(|e| {
            let p = e.path();
            let name = fs::read_to_string(p.join("name")).ok()?;
            if !name.contains("frame buffer") {
                return None;
            }
            let bound = fs::read_to_string(p.join("bind")).ok()?.trim() == "1";
            Some((e.file_name().to_string_lossy().into_owned(), p, bound))
        })
        .collect();
    out.sort();
    out
}

/// Steps 1 to 3: units, the framebuffer vtconsoles, the firmware framebuffer; each
/// recorded in `rec` (saved) before it is taken.
///
/// Errors: the first step that failed, in words (the command and its exit status, or
/// the file written and the errno); the steps taken before it stay recorded for
/// [`give_back`].
pub fn take_console(
    root: &Root,
    vm: &VmProfile,
    members: &[PciAddress],
    rec: &mut VmRecord,
) -> Result<(), String> {
    stop_units(root, vm, rec)?;
    let firmware = firmware_framebuffers(root, members);
    let console = console_on(root, members, &firmware);
    // The consoles first, then the framebuffer under them: unregistering the only
    // framebuffer makes fbcon drop its vtconsole unrecorded, and unbinding one fbcon
    // still draws on is where fbcon has crashed.
    if console {
        for (name, dir, bound) in fb_vtconsoles(root) {
            if !bound {
                continue;
            }
            save(root, rec, Step::Vtconsole { name: name.clone() })?;
            log::info!(VFIO_BIND_ACTION = "unbind-vtconsole"; "VM {}: unbinding the framebuffer console {name}", vm.name);
            write_attr(&name, &dir.join("bind"), "0").map_err(|e| e.to_string())?;
        }
    } else {
        log::debug!("VM {}: no framebuffer console on its devices", vm.name);
    }
    for (device, driver) in &firmware {
        save(
            root,
            rec,
            Step::Framebuffer {
                device: device.clone(),
                driver: driver.clone(),
            },
        )?;
        log::info!(VFIO_BIND_ACTION = "unbind-framebuffer"; "VM {}: unbinding {device} from {driver}", vm.name);
        let unbind = root.path(format!("/sys/bus/platform/drivers/{driver}/unbind"));
        write_attr(device, &unbind, device).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Step 4: unload `vm.unload_modules` that are loaded, in order, each recorded first.
///
/// Errors: the `modprobe -r` failure (a module in use names its holders there).
pub fn unload_modules(root: &Root, vm: &VmProfile, rec: &mut VmRecord) -> Result<(), String> {
    for m in &vm.unload_modules {
        let loaded = root.path(format!("/sys/module/{}", m.replace('-', "_")));
        if !loaded.exists() {
            log::debug!("module {m} is not loaded");
            continue;
        }
        save(root, rec, Step::Module { name: m.clone() })?;
        if !root.is_host() {
            log::info!("not unloading {m} under --root {}", root.base().display());
            continue;
        }
        log::info!(VFIO_BIND_ACTION = "unload-module"; "VM {}: unloading module {m}", vm.name);
        run("modprobe", &["-r", "--", m])?;
    }
    Ok(())
}

/// Undo one recorded step.
fn undo(root: &Root, vm: &str, step: &Step) -> Result<(), String> {
    match step {
        Step::Module { name } => {
            if root.is_host() {
                log::info!(VFIO_BIND_ACTION = "load-module"; "VM {vm}: loading module {name} again");
                run("modprobe", &["--", name])?;
            }
        }
        Step::Framebuffer { device, driver } => {
            let dir = root.path(format!("/sys/bus/platform/devices/{device}"));
            if !dir.exists() {
                log::info!(
                    "VM {vm}: {device} no longer exists (the kernel removes the firmware \
                     framebuffer once a native driver takes the GPU; the console returns \
                     through that driver)"
                );
            } else if !dir.join("driver").exists() {
                log::info!(VFIO_BIND_ACTION = "bind-framebuffer"; "VM {vm}: binding {device} to {driver} again");
                let bind = root.path(format!("/sys/bus/platform/drivers/{driver}/bind"));
                write_attr(device, &bind, device).map_err(|e| e.to_string())?;
            }
        }
        Step::Vtconsole { name } => {
            // The recorded vtconsole when it is still a framebuffer one; when the native
            // driver's framebuffer came back as another vtconN, the unbound ones.
            let all = fb_vtconsoles(root);
            let recorded = all.iter().any(|(n, _, _)| n == name);
            for (n, dir, bound) in all {
                if !bound && (!recorded || n == *name) {
                    log::info!(VFIO_BIND_ACTION = "bind-vtconsole"; "VM {vm}: binding the framebuffer console {n} again (recorded {name})");
                    write_attr(&n, &dir.join("bind"), "1").map_err(|e| e.to_string())?;
                }
            }
        }
        Step::Unit { name } => {
            if systemd(root) {
                log::info!(VFIO_BIND_ACTION = "start-unit"; "VM {vm}: starting {name} again");
                run("systemctl", &["start", "--", name])?;
            }
        }
    }
    Ok(())
}

/// Undo every step of `rec`, last first; a failure is logged and kept, never stops the
/// others. The caller removes the record when this returns no error.
pub fn give_back(root: &Root, rec: &VmRecord) -> Vec<String> {
    let mut errors = Vec::new();
    for step in rec.steps.iter().rev() {
        if let Err(e) = undo(root, &rec.vm, step) {
            log::error!("VM {}: {e}", rec.vm);
            errors.push(e);
        }
    }
    errors
}
