//! Apply: execute a [`Plan`] through the kernel's bind protocol. The only module that
//! writes to the host.
//!
//! Per device (`Documentation/ABI/testing/sysfs-bus-pci`, `driver_override` and
//! `drivers_probe`):
//! 1. write the driver name to `/sys/bus/pci/devices/<bdf>/driver_override`;
//! 2. if bound to another driver, write `<bdf>` to `/sys/bus/pci/devices/<bdf>/driver/unbind`;
//! 3. write `<bdf>` to `/sys/bus/pci/drivers_probe`;
//! 4. poll `/sys/bus/pci/devices/<bdf>/driver` until it names the target (bounded).
//!
//! The override stays set, as libvirt and driverctl leave it, so a rescan cannot hand
//! the device back to its host driver. A group is all-or-nothing: when a member fails,
//! the members changed in this run are restored to their previous override and driver.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::config::Ownership;
use crate::pci::PciAddress;
use crate::plan::{Action, GroupPlan, MemberPlan, Plan};
use crate::sysfs::{self, Root};

/// Timeouts for the waits apply does.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// How long to wait for a device to show the target driver after `drivers_probe`
    /// (probing can be asynchronous), and for a driver directory after loading a module.
    pub bind_timeout: Duration,
    /// How long to wait for `/dev/vfio/<group>` to appear after the group is bound.
    pub node_timeout: Duration,
}

impl Default for Options {
    /// 10 000 ms for binds, 5 000 ms for the device node.
    fn default() -> Self {
        Options {
            bind_timeout: Duration::from_millis(10_000),
            node_timeout: Duration::from_millis(5_000),
        }
    }
}

/// Why a group could not be applied. Each names the device or group, the file and the
/// errno where there is one.
#[derive(Debug, Error)]
pub enum ApplyError {
    /// A sysfs or devfs write failed.
    #[error("{device}: cannot write {value:?} to {}: {source}", path.display())]
    Write {
        /// The device (or `group N`) being changed.
        device: String,
        /// The file written.
        path: PathBuf,
        /// What was written.
        value: String,
        /// The error, with its errno.
        #[source]
        source: io::Error,
    },
    /// A read during verification failed.
    #[error("{device}: {source}")]
    Read {
        /// The device being verified.
        device: PciAddress,
        /// The failed read.
        #[source]
        source: sysfs::ReadError,
    },
    /// The device did not end on the expected driver in time.
    #[error(
        "{device}: not bound to {expected} after {timeout_ms} ms (driver now: {found}); {hint}"
    )]
    Verify {
        /// The device.
        device: PciAddress,
        /// The driver it should be on.
        expected: String,
        /// The driver it is on (`none` when unbound).
        found: String,
        /// The bounded wait, in milliseconds.
        timeout_ms: u128,
        /// What to look at next.
        hint: &'static str,
    },
    /// The driver is not registered and could not be loaded.
    #[error("driver {driver} is not available ({}): {reason}", path.display())]
    Driver {
        /// The driver name.
        driver: String,
        /// Its sysfs directory that is missing.
        path: PathBuf,
        /// Why loading failed.
        reason: String,
    },
    /// `/dev/vfio/<group>` did not appear, or its ownership could not be set.
    #[error("group {group}: {message} ({})", path.display())]
    Node {
        /// The IOMMU group.
        group: u32,
        /// The node path.
        path: PathBuf,
        /// What went wrong (with errno where there is one).
        message: String,
    },
    /// The plan refused the group (see the refusals).
    #[error("group {group} refused: {reasons}")]
    Refused {
        /// The IOMMU group.
        group: u32,
        /// The refusal reasons, joined.
        reasons: String,
    },
}

/// What happened to one group.
#[derive(Debug)]
pub struct GroupOutcome {
    /// The IOMMU group.
    pub group: u32,
    /// Members bound (or whose override was set) in this run.
    pub changed: Vec<PciAddress>,
    /// Whether the node's ownership or mode was changed in this run.
    pub node_changed: bool,
    /// `Ok` when the group ends as planned; the error otherwise (group rolled back).
    pub result: Result<(), ApplyError>,
    /// Errors while rolling back (the group may be half-bound when non-empty).
    pub rollback_errors: Vec<ApplyError>,
}

fn write_attr(device: &str, path: &Path, value: &str) -> Result<(), ApplyError> {
    let err = |source| ApplyError::Write {
        device: device.to_string(),
        path: path.to_path_buf(),
        value: value.trim_end().to_string(),
        source,
    };
    // No O_CREAT: a missing attribute is an error (ENOENT), never a new file in sysfs.
    let mut f = OpenOptions::new().write(true).open(path).map_err(err)?;
    f.write_all(value.as_bytes()).map_err(err)
}

/// Wait until `addr` is on `want` (`None`: on no driver), polling every 10 ms.
fn wait_driver(
    root: &Root,
    addr: PciAddress,
    want: Option<&str>,
    timeout: Duration,
) -> Result<(), ApplyError> {
    let start = Instant::now();
    loop {
        let now = sysfs::current_driver(root, addr).map_err(|source| ApplyError::Read {
            device: addr,
            source,
        })?;
        if now.as_deref() == want {
            return Ok(());
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

/// Make sure `/sys/bus/pci/drivers/<driver>` exists, loading the module with `modprobe`
/// on the real host. Under `--root` no module is loaded: a missing driver is an error.
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

/// Run the bind protocol for one member. Returns whether anything was written.
fn bind_member(root: &Root, m: &MemberPlan, opts: &Options) -> Result<(), ApplyError> {
    let addr = m.address;
    let dev = addr.to_string();
    let dir = root.device_dir(addr);
    let Some(driver) = m.action.target() else {
        return Ok(());
    };
    write_attr(&dev, &dir.join("driver_override"), driver)?;
    if let Action::SetOverride { .. } = m.action {
        log::info!(VFIO_BIND_ADDRESS = dev.as_str(), VFIO_BIND_DRIVER = driver, VFIO_BIND_ACTION = "override";
            "{dev}: already on {driver}; driver_override set to {driver}");
        return Ok(());
    }
    let now = sysfs::current_driver(root, addr).map_err(|source| ApplyError::Read {
        device: addr,
        source,
    })?;
    if let Some(cur) = now.as_deref() {
        if cur != driver {
            write_attr(&dev, &dir.join("driver").join("unbind"), &dev)?;
        }
    }
    if now.as_deref() != Some(driver) {
        write_attr(&dev, &root.path("/sys/bus/pci/drivers_probe"), &dev)?;
    }
    wait_driver(root, addr, Some(driver), opts.bind_timeout)?;
    let was = m.driver.as_deref().unwrap_or("no driver");
    log::info!(VFIO_BIND_ADDRESS = dev.as_str(), VFIO_BIND_DRIVER = driver, VFIO_BIND_ACTION = "bind";
        "{dev}: bound to {driver} (was {was})");
    Ok(())
}

/// Restore one member to the override and driver it had in the snapshot.
fn restore_member(root: &Root, m: &MemberPlan, opts: &Options) -> Result<(), ApplyError> {
    let addr = m.address;
    let dev = addr.to_string();
    let dir = root.device_dir(addr);
    let prev_override = m.driver_override.clone().unwrap_or_else(|| "\n".into());
    write_attr(&dev, &dir.join("driver_override"), &prev_override)?;
    let now = sysfs::current_driver(root, addr).map_err(|source| ApplyError::Read {
        device: addr,
        source,
    })?;
    if now == m.driver {
        return Ok(());
    }
    if now.is_some() {
        write_attr(&dev, &dir.join("driver").join("unbind"), &dev)?;
    }
    if let Some(prev) = m.driver.as_deref() {
        write_attr(&dev, &root.driver_dir(prev).join("bind"), &dev)?;
    }
    wait_driver(root, addr, m.driver.as_deref(), opts.bind_timeout)?;
    log::info!(VFIO_BIND_ADDRESS = dev.as_str(), VFIO_BIND_DRIVER = m.driver.as_deref().unwrap_or(""), VFIO_BIND_ACTION = "rollback";
        "{dev}: rolled back to {}", m.driver.as_deref().unwrap_or("no driver"));
    Ok(())
}

/// Wait for `/dev/vfio/<group>` and give it the ownership asked for. Returns whether
/// anything was changed.
fn set_node(root: &Root, group: u32, want: &Ownership, opts: &Options) -> Result<bool, ApplyError> {
    let path = root.vfio_node(group);
    let fail = |message: String| ApplyError::Node {
        group,
        path: path.clone(),
        message,
    };
    let start = Instant::now();
    let meta = loop {
        match fs::metadata(&path) {
            Ok(m) => break m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if start.elapsed() >= opts.node_timeout {
                    return Err(fail(format!(
                        "device node did not appear within {} ms (is udev or devtmpfs running?)",
                        opts.node_timeout.as_millis()
                    )));
                }
                sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(fail(format!("cannot stat: {e}"))),
        }
    };
    let mut changed = false;
    let uid = want
        .user
        .as_ref()
        .map(|u| u.id)
        .filter(|&u| u != meta.uid());
    let gid = want
        .group
        .as_ref()
        .map(|g| g.id)
        .filter(|&g| g != meta.gid());
    if uid.is_some() || gid.is_some() {
        nix::unistd::chown(
            &path,
            uid.map(nix::unistd::Uid::from_raw),
            gid.map(nix::unistd::Gid::from_raw),
        )
        .map_err(|e| fail(format!("chown failed: {} ({e})", e.desc())))?;
        changed = true;
    }
    if let Some(mode) = want.mode {
        if meta.mode() & 0o7777 != mode {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                .map_err(|e| fail(format!("chmod {mode:04o} failed: {e}")))?;
            changed = true;
        }
    }
    if changed {
        log::info!(VFIO_BIND_GROUP = group, VFIO_BIND_ACTION = "ownership";
            "/dev/vfio/{group}: set {want}");
    }
    Ok(changed)
}

/// Apply one group: bind every non-bridge member, set the node's ownership, or roll back
/// the members changed in this run.
pub fn apply_group(root: &Root, g: &GroupPlan, opts: &Options) -> GroupOutcome {
    let mut out = GroupOutcome {
        group: g.group,
        changed: Vec::new(),
        node_changed: false,
        result: Ok(()),
        rollback_errors: Vec::new(),
    };
    if g.is_refused() {
        for r in &g.refusals {
            log::error!(VFIO_BIND_GROUP = g.group, VFIO_BIND_ADDRESS = r.member.as_str(), VFIO_BIND_ACTION = "refuse";
                "group {}: refused: {} {}", g.group, r.member, r.reason);
        }
        out.result = Err(ApplyError::Refused {
            group: g.group,
            reasons: g
                .refusals
                .iter()
                .map(|r| format!("{} {}", r.member, r.reason))
                .collect::<Vec<_>>()
                .join("; "),
        });
        return out;
    }
    let mut result = Ok(());
    let mut drivers: Vec<&str> = g
        .members
        .iter()
        .filter(|m| m.action.writes())
        .filter_map(|m| m.action.target())
        .collect();
    drivers.dedup();
    for d in drivers {
        if let Err(e) = ensure_driver(root, d, opts.bind_timeout) {
            result = Err(e);
            break;
        }
    }
    if result.is_ok() {
        for m in g.members.iter().filter(|m| m.action.writes()) {
            out.changed.push(m.address);
            if let Err(e) = bind_member(root, m, opts) {
                result = Err(e);
                break;
            }
        }
    }
    // Only vfio drivers create /dev/vfio/<group>; a group handed to pci-stub has none.
    let vfio = g
        .members
        .iter()
        .any(|m| m.action.target().is_some_and(|d| d.contains("vfio")));
    let wants_node = !g.ownership.is_empty() || g.members.iter().any(|m| m.action.writes());
    if result.is_ok() && vfio && wants_node {
        // Wait for the node even without ownership keys: a group that is bound but has
        // no /dev/vfio node is not usable.
        match set_node(root, g.group, &g.ownership, opts) {
            Ok(c) => out.node_changed = c,
            Err(e) => result = Err(e),
        }
    }
    if let Err(e) = result {
        log::error!(VFIO_BIND_GROUP = g.group, VFIO_BIND_ACTION = "fail"; "group {}: {e}", g.group);
        for addr in out.changed.iter().rev() {
            let m = g
                .members
                .iter()
                .find(|m| m.address == *addr)
                .expect("member");
            if let Err(re) = restore_member(root, m, opts) {
                log::error!(VFIO_BIND_GROUP = g.group, VFIO_BIND_ADDRESS = addr.to_string().as_str(), VFIO_BIND_ACTION = "rollback";
                    "group {}: rollback of {addr} failed: {re}", g.group);
                out.rollback_errors.push(re);
            }
        }
        out.result = Err(e);
    }
    out
}

/// Apply every group of the plan, in order; a failed or refused group does not stop the
/// others.
pub fn apply(root: &Root, plan: &Plan, opts: &Options) -> Vec<GroupOutcome> {
    plan.groups
        .iter()
        .map(|g| apply_group(root, g, opts))
        .collect()
}
