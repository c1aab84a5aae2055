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
use crate::state::{Record, State, StateError};
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
    /// The state file could not be written; the group was not touched (or was rolled
    /// back).
    #[error("{0}")]
    State(#[from] StateError),
    /// After release the device is still on a vfio driver.
    #[error("{device}: still on {driver} after release (is {driver} claiming it by ID, e.g. a vfio-pci ids= module option?)")]
    StillVfio {
        /// The device.
        device: PciAddress,
        /// The vfio driver it is on.
        driver: String,
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

/// The driver `addr` is on now, as an [`ApplyError`] on failure (the device gone, say).
fn driver_now(root: &Root, addr: PciAddress) -> Result<Option<String>, ApplyError> {
    sysfs::current_driver(root, addr).map_err(|source| ApplyError::Read {
        device: addr,
        source,
    })
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
        let now = driver_now(root, addr)?;
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
fn bind_member(root: &Root, group: u32, m: &MemberPlan, opts: &Options) -> Result<(), ApplyError> {
    let addr = m.address;
    let dev = addr.to_string();
    let dir = root.device_dir(addr);
    let Some(driver) = m.action.target() else {
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
    wait_driver(root, addr, Some(driver), opts.bind_timeout)?;
    let was = m.driver.as_deref().unwrap_or("no driver");
    log::info!(VFIO_BIND_ADDRESS = dev.as_str(), VFIO_BIND_GROUP = group, VFIO_BIND_DRIVER = driver, VFIO_BIND_ACTION = "bind";
        "{dev}: bound to {driver} (was {was})");
    Ok(())
}

/// Restore one member to the override and driver it had in the snapshot.
///
/// The kernel binds a device only to the driver its `driver_override` names
/// (`pci_match_device`), so the override is first cleared (or set to the previous
/// driver), the previous driver bound and verified, and only then the snapshot's override
/// put back. A device that is gone (hot-unplug) counts as restored.
fn restore_member(
    root: &Root,
    group: u32,
    m: &MemberPlan,
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
    let interim = m.driver.clone().unwrap_or_else(|| "\n".into());
    write_attr(&dev, &dir.join("driver_override"), &interim)?;
    let now = driver_now(root, addr)?;
    if now.as_deref() != m.driver.as_deref() {
        if now.is_some() {
            write_attr(&dev, &dir.join("driver").join("unbind"), &dev)?;
        }
        if let Some(prev) = m.driver.as_deref() {
            write_attr(&dev, &root.driver_dir(prev).join("bind"), &dev)?;
        }
        wait_driver(root, addr, m.driver.as_deref(), opts.bind_timeout)?;
    }
    let prev_override = m.driver_override.clone().unwrap_or_else(|| "\n".into());
    if prev_override != interim {
        write_attr(&dev, &dir.join("driver_override"), &prev_override)?;
    }
    log::info!(VFIO_BIND_ADDRESS = dev.as_str(), VFIO_BIND_GROUP = group, VFIO_BIND_DRIVER = m.driver.as_deref().unwrap_or(""), VFIO_BIND_ACTION = "rollback";
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
    // chmod first, while root may still own the node (no CAP_FOWNER needed then).
    if let Some(mode) = want.mode {
        if meta.mode() & 0o7777 != mode {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                .map_err(|e| fail(format!("chmod {mode:04o} failed: {e}")))?;
            changed = true;
        }
    }
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
    if changed {
        log::info!(VFIO_BIND_GROUP = group, VFIO_BIND_ACTION = "ownership";
            "/dev/vfio/{group}: set {want}");
    }
    Ok(changed)
}

/// Apply one group: bind every non-bridge member, set the node's ownership, or roll back
/// the members changed in this run.
pub fn apply_group(root: &Root, g: &GroupPlan, state: &mut State, opts: &Options) -> GroupOutcome {
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
    let mut drivers: Vec<&str> = g
        .members
        .iter()
        .filter(|m| m.action.writes())
        .filter_map(|m| m.action.target())
        .collect();
    drivers.dedup();
    for d in drivers {
        if let Err(e) = ensure_driver(root, d, opts.bind_timeout) {
            log::error!(VFIO_BIND_GROUP = g.group, VFIO_BIND_DRIVER = d, VFIO_BIND_ACTION = "fail"; "group {}: {e}", g.group);
            out.result = Err(e);
            return out;
        }
    }
    // Write-ahead: record every member about to change, with what it has now, before
    // the first write; a crash mid-group then leaves a record `release` can undo.
    let mut intents = Vec::new();
    for m in g.members.iter().filter(|m| m.action.writes()) {
        let target = m.action.target().expect("writes have a target").to_string();
        let record = match state.get(m.address) {
            Some(r) => Record {
                driver: target,
                group: g.group,
                ..r.clone()
            },
            None => {
                intents.push(m.address);
                Record {
                    driver: target,
                    group: g.group,
                    previous_driver: m.driver.as_deref().map(str::to_string),
                    previous_override: m.driver_override.as_deref().map(str::to_string),
                }
            }
        };
        state.insert(m.address, record);
    }
    let needs_save = g.members.iter().any(|m| m.action.writes());
    let mut result = match if needs_save { state.save(root) } else { Ok(()) } {
        Ok(()) => Ok(()),
        Err(e) => {
            // Nothing written to sysfs yet: forget the intents again.
            for a in &intents {
                state.remove(*a);
            }
            out.result = Err(e.into());
            return out;
        }
    };
    if result.is_ok() {
        for m in g.members.iter().filter(|m| m.action.writes()) {
            out.changed.push(m.address);
            if let Err(e) = bind_member(root, g.group, m, opts) {
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
    // Without ownership keys the node is left to the kernel and udev; kernels built
    // without the group interface (iommufd only) have no /dev/vfio/<group> at all.
    if result.is_ok() && vfio && !g.ownership.is_empty() {
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
            match restore_member(root, g.group, m, opts) {
                Ok(()) => {
                    if intents.contains(addr) {
                        state.remove(*addr);
                    }
                }
                // Keep the record: `release` can finish the job later.
                Err(re) => {
                    log::error!(VFIO_BIND_GROUP = g.group, VFIO_BIND_ADDRESS = addr.to_string().as_str(), VFIO_BIND_ACTION = "rollback";
                        "group {}: rollback of {addr} failed: {re}", g.group);
                    out.rollback_errors.push(re);
                }
            }
        }
        // Members never reached keep nothing to undo.
        for a in &intents {
            if !out.changed.contains(a) {
                state.remove(*a);
            }
        }
        if let Err(se) = state.save(root) {
            log::error!(VFIO_BIND_GROUP = g.group; "group {}: {se}", g.group);
            out.rollback_errors.push(se.into());
        }
        out.result = Err(e);
    }
    out
}

/// What happened to one device being released.
#[derive(Debug)]
pub struct ReleaseOutcome {
    /// The device.
    pub address: PciAddress,
    /// The driver it ended on, or why it could not be released.
    pub result: Result<Option<String>, ApplyError>,
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
    if record.is_none() && !now.as_deref().is_some_and(|d| d.contains("vfio")) {
        let ovr = sysfs::read_override(root, addr).map_err(|source| ApplyError::Read {
            device: addr,
            source,
        })?;
        if ovr.as_deref().is_some_and(|o| o.contains("vfio")) {
            write_attr(&dev, &dir.join("driver_override"), "\n")?;
        }
        return Ok(now);
    }
    let want = record.and_then(|r| r.previous_driver.clone());
    let prev_override = record
        .and_then(|r| r.previous_override.clone())
        .unwrap_or_else(|| "\n".into());
    write_attr(&dev, &dir.join("driver_override"), &prev_override)?;
    if record.is_some() && now == want {
        return Ok(now);
    }
    if now.is_some() {
        write_attr(&dev, &dir.join("driver").join("unbind"), &dev)?;
    }
    match want.as_deref() {
        Some(w) => {
            if root.is_host() {
                ensure_driver(root, w, opts.bind_timeout)?;
            }
        }
        None => {
            if root.is_host() {
                load_modalias(root, addr);
            }
        }
    }
    write_attr(&dev, &root.path("/sys/bus/pci/drivers_probe"), &dev)?;
    let end = match want.as_deref() {
        Some(w) => {
            if let Err(e) = wait_driver(root, addr, Some(w), opts.bind_timeout) {
                // drivers_probe may have found another driver first, or none: bind
                // the recorded one explicitly if the device is free.
                if driver_now(root, addr)?.is_some() || !root.driver_dir(w).is_dir() {
                    return Err(e);
                }
                write_attr(&dev, &root.driver_dir(w).join("bind"), &dev)?;
                wait_driver(root, addr, Some(w), opts.bind_timeout)?;
            }
            Some(w.to_string())
        }
        None => driver_now(root, addr)?,
    };
    if let Some(d) = end.as_deref().filter(|d| d.contains("vfio")) {
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

/// Load the module for a device's `modalias` (best effort, real host only), so a device
/// claimed before its host driver was ever loaded can get one on release.
fn load_modalias(root: &Root, addr: PciAddress) {
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

/// Release one device (see [`release_device`]), or forget it when it is no longer
/// present, and drop its record from `state` (saved at once) when it had one. Shared by
/// `apply` (devices no longer configured) and `release`.
pub fn release_recorded(
    root: &Root,
    addr: PciAddress,
    record: Option<&Record>,
    present: bool,
    state: &mut State,
    opts: &Options,
) -> ReleaseOutcome {
    let result = if present {
        release_device(root, addr, record, opts)
    } else {
        log::warn!(VFIO_BIND_ADDRESS = addr.to_string().as_str(), VFIO_BIND_ACTION = "forget";
            "{addr}: bound earlier but no longer present; forgetting it");
        Ok(None)
    };
    let result = result.and_then(|d| {
        if record.is_some() {
            state.remove(addr);
            state.save(root)?;
        }
        Ok(d)
    });
    if let Err(e) = &result {
        log::error!(VFIO_BIND_ADDRESS = addr.to_string().as_str(), VFIO_BIND_ACTION = "release";
            "{e}");
    }
    ReleaseOutcome {
        address: addr,
        result,
    }
}

/// Release the devices of `plan.releases` (no longer configured), then apply every
/// group, in order, recording in `state` (saved after each step) what was bound. A failed
/// or refused group does not stop the others.
pub fn apply(
    root: &Root,
    plan: &Plan,
    state: &mut State,
    opts: &Options,
) -> (Vec<ReleaseOutcome>, Vec<GroupOutcome>) {
    let released = plan
        .releases
        .iter()
        .map(|r| release_recorded(root, r.address, Some(&r.record), r.present, state, opts))
        .collect();
    let groups = plan
        .groups
        .iter()
        .map(|g| apply_group(root, g, state, opts))
        .collect();
    (released, groups)
}

/// The udev rules vfio-bind writes so that `/dev/vfio/<group>` keeps its configured
/// owner, group and mode through later udev events (`udevadm trigger`, a coldplug),
/// whatever other rules say: with no rule of its own naming the node, a udev may reset it
/// (bookworm's udev 252 was measured to leave it alone).
pub const UDEV_RULES: &str = "/run/udev/rules.d/70-vfio-bind.rules";

const UDEV_HEADER: &str =
    "# Written by vfio-bind: keeps the owner, group and mode of the /dev/vfio\n\
     # nodes it set up through later udev events. Regenerated by every apply.\n";

fn udev_line(group: u32, o: &Ownership) -> String {
    let mut l = format!("SUBSYSTEM==\"vfio\", KERNEL==\"{group}\"");
    if let Some(u) = &o.user {
        l.push_str(&format!(", OWNER=\"{}\"", u.id));
    }
    if let Some(g) = &o.group {
        l.push_str(&format!(", GROUP=\"{}\"", g.id));
    }
    if let Some(m) = o.mode {
        l.push_str(&format!(", MODE=\"{m:04o}\""));
    }
    l
}

/// Replace the rules file with `lines` (removed when empty), atomically; on the real
/// host, tell udev to reload its rules when the content changed.
///
/// Errors: [`ApplyError::Write`] naming the file and errno.
fn write_udev_rules(root: &Root, lines: &[String]) -> Result<(), ApplyError> {
    let path = root.path(UDEV_RULES);
    let rules_dir = path.parent().expect("rules file has a directory");
    if !rules_dir.parent().is_some_and(Path::is_dir) {
        // No /run/udev: udev is not running, so nothing will reset the nodes.
        log::debug!("no {}: not writing udev rules", rules_dir.display());
        return Ok(());
    }
    let old = fs::read_to_string(&path).ok();
    let new = (!lines.is_empty()).then(|| format!("{UDEV_HEADER}{}\n", lines.join("\n")));
    if old == new {
        return Ok(());
    }
    let err = |p: &Path, value: &str| {
        let p = p.to_path_buf();
        let value = value.to_string();
        move |source| ApplyError::Write {
            device: "udev rules".into(),
            path: p,
            value,
            source,
        }
    };
    match &new {
        None => match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(&path, "")(e)),
        },
        Some(text) => {
            let dir = path.parent().expect("rules file has a directory");
            fs::create_dir_all(dir).map_err(err(dir, ""))?;
            let tmp = path.with_extension("rules.tmp");
            fs::write(&tmp, text).map_err(err(&tmp, text))?;
            fs::rename(&tmp, &path).map_err(err(&path, text))?;
        }
    }
    if root.is_host() {
        match Command::new("udevadm")
            .args(["control", "--reload", "--timeout=5"])
            .stdin(Stdio::null())
            .output()
        {
            Ok(o) if o.status.success() => {}
            Ok(o) => log::debug!(
                "udevadm control --reload: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => log::debug!("udevadm control --reload: {e}"),
        }
    }
    Ok(())
}

/// Regenerate the udev rules from an applied plan: one line per group that ended bound
/// and has ownership configured.
pub fn sync_udev_rules(
    root: &Root,
    plan: &Plan,
    outcomes: &[GroupOutcome],
) -> Result<(), ApplyError> {
    let lines: Vec<String> = plan
        .groups
        .iter()
        .zip(outcomes)
        .filter(|(g, o)| o.result.is_ok() && !g.ownership.is_empty())
        .map(|(g, _)| udev_line(g.group, &g.ownership))
        .collect();
    write_udev_rules(root, &lines)
}

/// Drop the udev rules of `groups` (after their devices were released).
pub fn forget_udev_rules(root: &Root, groups: &[u32]) -> Result<(), ApplyError> {
    let Ok(text) = fs::read_to_string(root.path(UDEV_RULES)) else {
        return Ok(());
    };
    let lines: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter(|l| {
            !groups
                .iter()
                .any(|g| l.contains(&format!("KERNEL==\"{g}\"")))
        })
        .map(str::to_string)
        .collect();
    write_udev_rules(root, &lines)
}
