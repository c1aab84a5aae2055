//! The kernel's bind protocol, per device (`Documentation/ABI/testing/sysfs-bus-pci`,
//! `driver_override` and `drivers_probe`):
//! 1. write the driver name to `/sys/bus/pci/devices/<bdf>/driver_override`;
//! 2. if bound to another driver, write `<bdf>` to `/sys/bus/pci/devices/<bdf>/driver/unbind`;
//! 3. write `<bdf>` to `/sys/bus/pci/drivers_probe`;
//! 4. poll `/sys/bus/pci/devices/<bdf>/driver` until it names the target (bounded).
//!
//! The override stays set, as libvirt and driverctl leave it, so a rescan cannot hand the
//! device back to its host driver. Restore (a rollback) and release run the protocol the
//! other way. The only sysfs writes vfio-bind makes are here.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::apply::error::ApplyError;
use crate::apply::module::{ensure_driver, load_modalias};
use crate::apply::options::Options;
use crate::driver;
use crate::host::sysfs;
use crate::interrupt;
use crate::pci::PciAddress;
use crate::plan::model::{Action, MemberPlan};
use crate::root::Root;
use crate::state::Record;

/// Write `value` to the sysfs attribute `path` of `device`.
///
/// Errors: [`ApplyError::Write`] naming the device, the file, the value and the errno. A
/// missing attribute is an error (ENOENT), never a new file: no `O_CREAT`.
pub fn write_attr(device: &str, path: &Path, value: &str) -> Result<(), ApplyError> {
    let err = |source| ApplyError::Write {
        device: device.to_string(),
        path: path.to_path_buf(),
        value: value.trim_end().to_string(),
        source,
    };
    let mut f = OpenOptions::new().write(true).open(path).map_err(err)?;
    f.write_all(value.as_bytes()).map_err(err)
}

/// The driver `addr` is on now.
///
/// Errors: [`ApplyError::Read`] (the device gone, say).
pub fn driver_now(root: &Root, addr: PciAddress) -> Result<Option<String>, ApplyError> {
    sysfs::current_driver(root, addr).map_err(|source| ApplyError::Read {
        device: addr,
        source,
    })
}

/// Wait until `addr` is on `want` (`None`: on no driver), polling every 10 ms. An
/// `interruptible` wait (a bind) gives up at a terminating signal, naming the device in
/// the journal (a probe that wedges is what a unit's start timeout stops); the waits of a
/// rollback or a release are not, so that they finish what they started.
///
/// Errors: [`ApplyError::Verify`] after `timeout`, [`ApplyError::Read`],
/// [`ApplyError::Interrupted`].
pub fn wait_driver(
    root: &Root,
    addr: PciAddress,
    want: Option<&str>,
    timeout: Duration,
    interruptible: bool,
) -> Result<(), ApplyError> {
    let start = Instant::now();
    loop {
        let now = driver_now(root, addr)?;
        if now.as_deref() == want {
            return Ok(());
        }
        if let Some(signal) = interruptible.then(interrupt::requested).flatten() {
            let waited = start.elapsed().as_millis();
            log::error!(VFIO_BIND_ADDRESS = addr.to_string().as_str(), VFIO_BIND_ACTION = "interrupted";
                "{addr}: {signal} after {waited} ms waiting for it to bind to {} (driver now: {})",
                want.unwrap_or("no driver"), now.as_deref().unwrap_or("none"));
            return Err(ApplyError::Interrupted {
                signal,
                device: Some(addr),
            });
        }
        if start.elapsed() >= timeout {
            return Err(ApplyError::Verify {
                device: addr,
                expected: want.unwrap_or("no driver").to_string(),
                found: now.unwrap_or_else(|| "none".into()),
                timeout_ms: timeout.as_millis(),
                hint: "see the kernel log (journalctl -k) for the driver's probe error",
            });
        }
        sleep(Duration::from_millis(10));
    }
}

/// Run the bind protocol for one member of `group`.
///
/// Errors: [`ApplyError::Write`], [`ApplyError::Read`], [`ApplyError::Verify`].
pub fn bind_member(
    root: &Root,
    group: u32,
    m: &MemberPlan,
    opts: &Options,
) -> Result<(), ApplyError> {
    let addr = m.address;
    let dev = addr.to_string();
    let dir = root.device_dir(addr);
    let Some(driver) = m.action.target().map(|d| d.as_str()) else {
        return Ok(());
    };
    write_attr(&dev, &dir.join("driver_override"), driver)?;
    if let Action::SetOverride { .. } = m.action {
        log::info!(VFIO_BIND_ADDRESS = dev.as_str(), VFIO_BIND_GROUP = group, VFIO_BIND_DRIVER = driver, VFIO_BIND_ACTION = "override";
            "{dev}: already on {driver}; driver_override set to {driver}");
        return Ok(());
    }
    let now = driver_now(root, addr)?;
    if let Some(cur) = now.as_deref() {
        if cur != driver {
            write_attr(&dev, &dir.join("driver").join("unbind"), &dev)?;
        }
    }
    if now.as_deref() != Some(driver) {
        write_attr(&dev, &root.path("/sys/bus/pci/drivers_probe"), &dev)?;
    }
    wait_driver(root, addr, Some(driver), opts.bind_timeout, true)?;
    let was = m.driver.as_deref().unwrap_or("no driver");
    // In the initramfs claim, a debug line: the kernel log rate-limits its writer.
    let level = if opts.early {
        log::Level::Debug
    } else {
        log::Level::Info
    };
    log::log!(level, VFIO_BIND_ADDRESS = dev.as_str(), VFIO_BIND_GROUP = group, VFIO_BIND_DRIVER = driver, VFIO_BIND_ACTION = "bind";
        "{dev}: bound to {driver} (was {was})");
    Ok(())
}

/// What a rolled-back member goes back to: its driver and `driver_override` before
/// vfio-bind touched it (`None`: no driver, no override).
#[derive(Debug, Clone, Copy)]
pub struct Previous<'a> {
    /// The driver.
    pub driver: Option<&'a str>,
    /// The override.
    pub driver_override: Option<&'a str>,
}

/// Restore one member to the override and driver it had before (`prev`: the state
/// file's record when an earlier run bound it, else the snapshot).
///
/// The kernel binds a device only to the driver its `driver_override` names
/// (`pci_match_device`), so the override is first cleared (or set to the previous
/// driver), the previous driver bound and verified, and only then the previous override
/// put back. A device that is gone (hot-unplug) counts as restored.
///
/// Errors: [`ApplyError::Write`], [`ApplyError::Read`], [`ApplyError::Verify`].
pub fn restore_member(
    root: &Root,
    group: u32,
    m: &MemberPlan,
    prev_state: Previous,
    opts: &Options,
) -> Result<(), ApplyError> {
    let addr = m.address;
    let dev = addr.to_string();
    let dir = root.device_dir(addr);
    if !dir.exists() {
        log::warn!(VFIO_BIND_ADDRESS = dev.as_str(), VFIO_BIND_ACTION = "rollback";
            "{dev}: gone from the host; nothing to roll back");
        return Ok(());
    }
    let prev = prev_state.driver;
    let interim = prev.map_or_else(|| "\n".to_string(), str::to_string);
    write_attr(&dev, &dir.join("driver_override"), &interim)?;
    let now = driver_now(root, addr)?;
    if now.as_deref() != prev {
        if now.is_some() {
            write_attr(&dev, &dir.join("driver").join("unbind"), &dev)?;
        }
        if let Some(prev) = prev {
            write_attr(&dev, &root.driver_dir(prev).join("bind"), &dev)?;
        }
        wait_driver(root, addr, prev, opts.bind_timeout, false)?;
    }
    let prev_override = prev_state
        .driver_override
        .map_or_else(|| "\n".to_string(), str::to_string);
    if prev_override != interim {
        write_attr(&dev, &dir.join("driver_override"), &prev_override)?;
    }
    log::info!(VFIO_BIND_ADDRESS = dev.as_str(), VFIO_BIND_GROUP = group, VFIO_BIND_DRIVER = prev.unwrap_or(""), VFIO_BIND_ACTION = "rollback";
        "{dev}: rolled back to {}", prev.unwrap_or("no driver"));
    Ok(())
}

/// A device vfio-bind did not bind, named explicitly: when it is not on a vfio driver,
/// only a vfio `driver_override` is cleared. Returns its driver, or `None` when the
/// device is on a vfio driver and must be released for real.
fn release_unrecorded(
    root: &Root,
    addr: PciAddress,
    now: &Option<String>,
) -> Result<Option<Option<String>>, ApplyError> {
    if now.as_deref().is_some_and(driver::is_vfio) {
        return Ok(None);
    }
    let ovr = sysfs::read_override(root, addr).map_err(|source| ApplyError::Read {
        device: addr,
        source,
    })?;
    let dev = addr.to_string();
    let on = now.as_deref().unwrap_or("no driver");
    if ovr.as_deref().is_some_and(driver::is_vfio) {
        write_attr(&dev, &root.device_dir(addr).join("driver_override"), "\n")?;
        log::info!(VFIO_BIND_ADDRESS = dev.as_str(), VFIO_BIND_ACTION = "release";
            "{dev}: not bound by vfio-bind and on {on}; cleared its vfio driver_override");
    } else {
        log::info!(VFIO_BIND_ADDRESS = dev.as_str(), VFIO_BIND_ACTION = "release";
            "{dev}: not bound by vfio-bind and on {on}, not a vfio driver: nothing to release");
    }
    Ok(Some(now.clone()))
}

/// After `drivers_probe`: wait for the recorded driver `want`; when another driver or
/// none took the device, bind `want` explicitly if the device is free.
fn wait_previous(
    root: &Root,
    addr: PciAddress,
    want: &str,
    opts: &Options,
) -> Result<(), ApplyError> {
    let Err(e) = wait_driver(root, addr, Some(want), opts.bind_timeout, false) else {
        return Ok(());
    };
    if driver_now(root, addr)?.is_some() || !root.driver_dir(want).is_dir() {
        return Err(e);
    }
    write_attr(
        &addr.to_string(),
        &root.driver_dir(want).join("bind"),
        &addr.to_string(),
    )?;
    wait_driver(root, addr, Some(want), opts.bind_timeout, false)
}

/// Give a device back to its host driver: restore `driver_override` (the recorded one,
/// or none), unbind it from its vfio driver, write it to `drivers_probe`, and verify.
/// With a `record`, the device must end on the recorded previous driver (loaded with
/// `modprobe` on the real host when missing). Without one (a device vfio-bind did not
/// bind, named explicitly), any non-vfio driver, or none, is accepted; on the real host
/// the module matching the device's `modalias` is loaded first.
///
/// Errors: [`ApplyError::Write`] naming the file and errno, [`ApplyError::Verify`] when
/// the previous driver does not come back in time, [`ApplyError::StillVfio`].
pub fn release_device(
    root: &Root,
    addr: PciAddress,
    record: Option<&Record>,
    opts: &Options,
) -> Result<Option<String>, ApplyError> {
    let dev = addr.to_string();
    let dir = root.device_dir(addr);
    let now = driver_now(root, addr)?;
    if record.is_none() {
        if let Some(done) = release_unrecorded(root, addr, &now)? {
            return Ok(done);
        }
    }
    let want = record.and_then(|r| r.previous_driver.as_deref().map(str::to_string));
    let prev_override = record
        .and_then(|r| r.previous_override.as_deref())
        .unwrap_or("\n");
    write_attr(&dev, &dir.join("driver_override"), prev_override)?;
    if record.is_some() && now == want {
        return Ok(now);
    }
    if now.is_some() {
        write_attr(&dev, &dir.join("driver").join("unbind"), &dev)?;
    }
    match want.as_deref() {
        Some(w) if root.is_host() => {
            ensure_driver(root, w, opts.bind_timeout)?;
        }
        Some(_) => {}
        None => load_modalias(root, addr),
    }
    write_attr(&dev, &root.path("/sys/bus/pci/drivers_probe"), &dev)?;
    let end = match want.as_deref() {
        Some(w) => {
            wait_previous(root, addr, w, opts)?;
            Some(w.to_string())
        }
        None => driver_now(root, addr)?,
    };
    if let Some(d) = end.as_deref().filter(|d| driver::is_vfio(d)) {
        return Err(ApplyError::StillVfio {
            device: addr,
            driver: d.to_string(),
        });
    }
    let shown = end.as_deref().unwrap_or("no driver");
    let group = record.map(|r| r.group.to_string()).unwrap_or_default();
    log::info!(VFIO_BIND_ADDRESS = dev.as_str(), VFIO_BIND_GROUP = group.as_str(), VFIO_BIND_DRIVER = end.as_deref().unwrap_or(""), VFIO_BIND_ACTION = "release";
        "{dev}: released to {shown}");
    Ok(end)
}
