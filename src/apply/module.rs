//! Loading kernel modules: the target driver's module when its
//! `/sys/bus/pci/drivers/<driver>` is absent, and a device's host driver (by its
//! `modalias`) on release. Only on the running host: under `--root` nothing is loaded.

use std::fs;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::apply::error::ApplyError;
use crate::pci::PciAddress;
use crate::root::Root;

/// Make sure `/sys/bus/pci/drivers/<driver>` exists, loading the module with `modprobe`
/// on the real host and waiting up to `timeout` for the driver to register. Returns
/// whether a module was loaded.
///
/// Errors: [`ApplyError::Driver`] under `--root` (no module is loaded there), when
/// `modprobe` fails, or when the driver does not register in time.
pub fn ensure_driver(root: &Root, driver: &str, timeout: Duration) -> Result<bool, ApplyError> {
    let dir = root.driver_dir(driver);
    if dir.is_dir() {
        return Ok(false);
    }
    let fail = |reason: String| ApplyError::Driver {
        driver: driver.to_string(),
        path: dir.clone(),
        reason,
    };
    if !root.is_host() {
        return Err(fail(format!(
            "not loading kernel modules under --root {}",
            root.base().display()
        )));
    }
    log::info!(VFIO_BIND_DRIVER = driver, VFIO_BIND_ACTION = "modprobe"; "loading kernel module {driver}");
    let out = Command::new("modprobe")
        .arg("--")
        .arg(driver)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| fail(format!("cannot run modprobe: {e}")))?;
    if !out.status.success() {
        return Err(fail(format!(
            "modprobe {driver} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let start = Instant::now();
    while !dir.is_dir() {
        if start.elapsed() >= timeout {
            return Err(fail(format!(
                "modprobe succeeded but the driver did not register within {} ms",
                timeout.as_millis()
            )));
        }
        sleep(Duration::from_millis(10));
    }
    Ok(true)
}

/// Load the module for a device's `modalias` (best effort, real host only), so a device
/// claimed before its host driver was ever loaded can get one on release.
pub fn load_modalias(root: &Root, addr: PciAddress) {
    if !root.is_host() {
        return;
    }
    let Ok(alias) = fs::read_to_string(root.device_dir(addr).join("modalias")) else {
        return;
    };
    let alias = alias.trim();
    let out = Command::new("modprobe")
        .args(["-q", "-b", "--", alias])
        .stdin(Stdio::null())
        .output();
    if let Err(e) = out {
        log::debug!("{addr}: modprobe {alias}: {e}");
    }
}
