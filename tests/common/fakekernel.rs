//! A fake kernel for the generated sysfs tree: a FUSE passthrough filesystem mounted over
//! the tree's `sys/` that plays the kernel's part when a control file is written, so
//! `apply` and `release` run their real verification against something that reacts.
//!
//! Layout: `FakeKernel::mount(&tree, rules)` makes a fresh root `R` with `R/sys` the FUSE
//! mount (backed by `tree.path("sys")`) and `R/dev`, `R/etc`, `R/run` symlinks to the
//! tree's own directories. Pass `R` (`root()`) as `--root`. Reads pass through; attribute
//! and entry TTLs are zero and every file is opened `direct_io`, so each read, readlink,
//! readdir and write reaches this process.
//!
//! Writes are handled synchronously, before the reply, by editing the backing tree, as the
//! kernel does (Linux `drivers/pci/pci-sysfs.c`, `drivers/base/{bus,dd,driver}.c`):
//! - `<dev>/driver_override` (`driver_override_store` → `driver_set_override`): the value
//!   up to the first newline; empty clears it (reads `(null)`). >= 4095 bytes: EINVAL.
//! - `drivers/<drv>/unbind` (`unbind_store`): ENODEV unless the device is bound to `<drv>`.
//! - `drivers/<drv>/bind` (`bind_store` → `device_driver_attach`): ENODEV when the device
//!   is unknown or does not match (`pci_match_device`: the override names another driver,
//!   or no override and `<drv>` is not the device's native driver); EBUSY when already
//!   bound (`__driver_probe_device`); ENODEV when the probe refuses; EAGAIN when the probe
//!   defers (a slow probe, bound later).
//! - `drivers_probe` (`drivers_probe_store` → `bus_rescan_devices_helper`): ENODEV for an
//!   unknown device; otherwise success, even when no driver takes it. An unbound device
//!   goes to its override, or without one to its native driver.
//! - `class/vtconsole/vtconN/bind` (`drivers/tty/vt/vt.c`, `store_bind`): "0" or "1"
//!   (a trailing newline allowed) is stored; anything else EINVAL.
//! - `bus/platform/drivers/<drv>/unbind` and `bind`: a platform device (the firmware
//!   framebuffer) loses or gets its `driver` link; ENODEV when it is not bound to `<drv>`
//!   (unbind) or is bound already (bind).
//! - any other file: EACCES (a read-only attribute; new_id, remove, rescan are not modelled).
//!   A file of a removed device: ENODEV (`kernfs_get_active` fails).
//!
//! "Native" driver: what the device was bound to at mount, unless that was a vfio driver
//! or pci-stub (they match by override only); `Rules::native` sets it. A bind to a driver
//! whose name contains "vfio" creates `dev/vfio/<group>` (mode 0600, as devtmpfs does);
//! when the group's last device leaves vfio the node is removed.
//!
//! Deferred work runs on one worker thread, cancelled on drop: slow probes (Linux's
//! `drivers_probe` is synchronous, so a late bind is a deferred probe, `-EPROBE_DEFER`
//! re-tried by `deferred_probe_work_func`) and late `/dev/vfio` nodes (udev lagging).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, INodeNo, LockOwner, OpenFlags,
    ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry, ReplyOpen, ReplyWrite, Request, WriteFlags,
};
use nix::libc::{EACCES, EAGAIN, EBUSY, EINVAL, ENODEV};

use super::Tree;

/// Fault injection and driver behaviour, built up with the methods below.
#[derive(Debug, Default, Clone)]
pub struct Rules {
    refuse: Vec<(String, String)>,
    slow: Vec<(String, String, Duration)>,
    /// (bdf, file, after): see `unplug_on_write`.
    unplug: Vec<(String, String, bool)>,
    /// (path suffix, errno, writes left).
    faults: Vec<(String, i32, usize)>,
    /// group -> delay before `/dev/vfio/<group>` appears; `None`: it never does.
    node: HashMap<u32, Option<Duration>>,
    native: HashMap<String, Option<String>>,
}

impl Rules {
    /// Forget every `refuse` rule (the probes accept again).
    pub fn accept_all(mut self) -> Self {
        self.refuse.clear();
        self
    }

    /// `driver`'s probe rejects `bdf`: `drivers_probe` succeeds and leaves it unbound
    /// (`really_probe` ignores probe errors), `bind` fails with ENODEV.
    pub fn refuse(mut self, bdf: &str, driver: &str) -> Self {
        self.refuse.push((bdf.into(), driver.into()));
        self
    }

    /// `driver`'s probe of `bdf` is deferred (`-EPROBE_DEFER`, `driver_deferred_probe_add`):
    /// the bind happens `delay` after the write, on the worker thread, if the device is
    /// still unbound and matching then. Cancelled when the fixture drops.
    pub fn slow_probe(mut self, bdf: &str, driver: &str, delay: Duration) -> Self {
        self.slow.push((bdf.into(), driver.into(), delay));
        self
    }

    /// Hot-unplug `bdf` when `file` ("driver_override", "unbind", "bind" or
    /// "drivers_probe") is written for it: the device is removed and the write fails with
    /// ENODEV, changing nothing else. One-shot.
    pub fn unplug_on_write(mut self, bdf: &str, file: &str) -> Self {
        self.unplug.push((bdf.into(), file.into(), false));
        self
    }

    /// Like [`Rules::unplug_on_write`], but the write takes effect and succeeds; the
    /// device is removed right after.
    pub fn unplug_after_write(mut self, bdf: &str, file: &str) -> Self {
        self.unplug.push((bdf.into(), file.into(), true));
        self
    }

    /// The next `count` writes to a file whose `sys`-relative path ends with `suffix`
    /// (whole components: "0000:02:00.0/driver_override", "drivers/e1000e/unbind",
    /// "drivers_probe") fail with `errno` and change nothing. `usize::MAX`: every write.
    /// Checked before everything else (unplug rules, the store itself).
    pub fn fail_write(mut self, suffix: &str, errno: i32, count: usize) -> Self {
        self.faults.push((suffix.into(), errno, count));
        self
    }

    /// `/dev/vfio/<group>` appears `delay` after the group's first device binds to vfio.
    pub fn node_delay(mut self, group: u32, delay: Duration) -> Self {
        self.node.insert(group, Some(delay));
        self
    }

    /// `/dev/vfio/<group>` never appears.
    pub fn no_node(mut self, group: u32) -> Self {
        self.node.insert(group, None);
        self
    }

    /// The driver `drivers_probe` gives `bdf` when it has no override (`None`: none).
    pub fn native(mut self, bdf: &str, driver: Option<&str>) -> Self {
        self.native.insert(bdf.into(), driver.map(Into::into));
        self
    }
}

/// One write the fake kernel saw: the file as `/sys/...` (symlinks resolved), the bytes
/// written (lossy UTF-8) and the errno it failed with (`None`: success).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub path: String,
    pub value: String,
    pub errno: Option<i32>,
}

#[derive(Debug, Clone)]
enum Timer {
    Probe { bdf: String, driver: String },
    Node(u32),
}

/// The kernel's state lives in the backing tree; this is what the tree cannot hold.
struct State {
    sys: PathBuf,
    vfio: PathBuf,
    rules: Rules,
    log: Vec<Written>,
    timers: Vec<(Instant, Timer)>,
    shutdown: bool,
}

struct Shared {
    state: Mutex<State>,
    cv: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn base(p: &Path) -> Option<String> {
    p.file_name().map(|n| n.to_string_lossy().into_owned())
}

impl State {
    /// `bus_find_device_by_name`: the device's real directory.
    fn dev_dir(&self, bdf: &str) -> Option<PathBuf> {
        if bdf.is_empty() || bdf.contains('/') || bdf.starts_with('.') {
            return None;
        }
        fs::canonicalize(self.sys.join("bus/pci/devices").join(bdf)).ok()
    }

    fn bound(&self, dev: &Path) -> Option<String> {
        fs::read_link(dev.join("driver"))
            .ok()
            .and_then(|t| base(&t))
    }

    fn override_of(&self, dev: &Path) -> Option<String> {
        let s = fs::read_to_string(dev.join("driver_override")).ok()?;
        let s = s.trim_end_matches('\n');
        (!s.is_empty() && s != "(null)").then(|| s.to_string())
    }

    fn group(&self, dev: &Path) -> Option<u32> {
        base(&fs::read_link(dev.join("iommu_group")).ok()?)?
            .parse()
            .ok()
    }

    /// The driver that matches an unbound device (`pci_match_device`): its override, or
    /// without one its native driver.
    fn matching(&self, bdf: &str, dev: &Path) -> Option<String> {
        self.override_of(dev)
            .or_else(|| self.rules.native.get(bdf).cloned().flatten())
    }

    fn schedule(&mut self, delay: Duration, t: Timer) {
        self.timers.push((Instant::now() + delay, t));
    }

    /// `really_probe`: Ok(true) bound, Ok(false) refused, Err(EAGAIN) deferred.
    fn probe(&mut self, bdf: &str, dev: &Path, drv: &str) -> Result<bool, i32> {
        if self.rules.refuse.iter().any(|(b, d)| b == bdf && d == drv) {
            return Ok(false);
        }
        let slow = self
            .rules
            .slow
            .iter()
            .find(|(b, d, _)| b == bdf && d == drv);
        if let Some(&(_, _, delay)) = slow {
            let (bdf, driver) = (bdf.to_string(), drv.to_string());
            self.schedule(delay, Timer::Probe { bdf, driver });
            return Err(EAGAIN);
        }
        self.attach(bdf, dev, drv);
        Ok(true)
    }

    /// `driver_bound`: the device's `driver` link and the driver's `<bdf>` link; a vfio
    /// driver also makes the group's device node (`vfio_group` char device).
    fn attach(&mut self, bdf: &str, dev: &Path, drv: &str) {
        let rel = dev.strip_prefix(&self.sys).unwrap_or(dev);
        let up = "../".repeat(rel.components().count());
        let _ =
            std::os::unix::fs::symlink(format!("{up}bus/pci/drivers/{drv}"), dev.join("driver"));
        let link = self.sys.join("bus/pci/drivers").join(drv).join(bdf);
        let _ = std::os::unix::fs::symlink(Path::new("../../../..").join(rel), link);
        if let (true, Some(g)) = (drv.contains("vfio"), self.group(dev)) {
            match self.rules.node.get(&g).copied() {
                None => self.make_node(g),
                Some(Some(delay)) => self.schedule(delay, Timer::Node(g)),
                Some(None) => {}
            }
        }
    }

    /// `device_release_driver`: remove both links; the last vfio member of a group takes
    /// the group's node with it.
    fn detach(&mut self, bdf: &str, dev: &Path) {
        let Some(drv) = self.bound(dev) else { return };
        let _ = fs::remove_file(dev.join("driver"));
        let _ = fs::remove_file(self.sys.join("bus/pci/drivers").join(&drv).join(bdf));
        if let (true, Some(g)) = (drv.contains("vfio"), self.group(dev)) {
            if !self.group_on_vfio(g) {
                let _ = fs::remove_file(self.vfio.join(g.to_string()));
            }
        }
    }

    fn group_on_vfio(&self, g: u32) -> bool {
        let dir = self.sys.join(format!("kernel/iommu_groups/{g}/devices"));
        fs::read_dir(dir).into_iter().flatten().flatten().any(|e| {
            fs::read_link(e.path().join("driver"))
                .is_ok_and(|t| t.to_string_lossy().contains("vfio"))
        })
    }

    fn make_node(&self, g: u32) {
        let _ = fs::create_dir_all(&self.vfio);
        let _ = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(self.vfio.join(g.to_string()));
    }

    /// `pci_stop_and_remove_bus_device`: release the driver, then drop the device from
    /// the bus, its IOMMU group (an empty group goes too) and sysfs.
    fn remove_device(&mut self, bdf: &str) {
        let Some(dev) = self.dev_dir(bdf) else { return };
        self.detach(bdf, &dev);
        if let Some(g) = self.group(&dev) {
            let gdir = self.sys.join(format!("kernel/iommu_groups/{g}"));
            let _ = fs::remove_file(gdir.join("devices").join(bdf));
            if fs::read_dir(gdir.join("devices")).is_ok_and(|mut d| d.next().is_none()) {
                let _ = fs::remove_dir_all(gdir);
            }
        }
        let _ = fs::remove_file(self.sys.join("bus/pci/devices").join(bdf));
        let _ = fs::remove_dir_all(dev);
    }

    /// A write to `rel` (relative to `sys`, symlinks resolved): faults, unplug, then the
    /// kernel's store function.
    fn store(&mut self, rel: &str, value: &str) -> Result<(), i32> {
        let p = Path::new(rel);
        if fs::symlink_metadata(self.sys.join(p)).is_err() {
            return Err(ENODEV);
        }
        let ends = |s: &str| rel == s || rel.ends_with(&format!("/{s}"));
        let faults = self.rules.faults.iter_mut();
        if let Some((_, errno, left)) = faults.into_iter().find(|f| f.2 > 0 && ends(&f.0)) {
            *left -= 1;
            return Err(*errno);
        }
        let name = base(p).unwrap_or_default();
        let parent = p.parent().and_then(base).unwrap_or_default();
        // sysfs_streq: the device name may carry one trailing newline.
        let bdf = match name.as_str() {
            "driver_override" => parent.clone(),
            _ => value.strip_suffix('\n').unwrap_or(value).to_string(),
        };
        let unplug = self.rules.unplug.iter();
        let unplug = unplug.into_iter().position(|u| u.0 == bdf && u.1 == name);
        let after = unplug.map(|i| self.rules.unplug.remove(i).2);
        if after == Some(false) {
            self.remove_device(&bdf);
            return Err(ENODEV);
        }
        let is_driver_file =
            p.parent().and_then(Path::parent) == Some(Path::new("bus/pci/drivers"));
        let result = match name.as_str() {
            "driver_override" => self.override_store(p, value),
            "unbind" if is_driver_file => self.unbind_store(&parent, &bdf),
            "bind" if is_driver_file => self.bind_store(&parent, &bdf),
            "drivers_probe" if rel == "bus/pci/drivers_probe" => self.drivers_probe_store(&bdf),
            "bind" if rel.starts_with("class/vtconsole/") => match value.trim_end_matches('\n') {
                v @ ("0" | "1") => {
                    fs::write(self.sys.join(p), format!("{v}\n")).map_err(|_| EINVAL)
                }
                _ => Err(EINVAL),
            },
            "unbind" | "bind"
                if p.parent().and_then(Path::parent) == Some(Path::new("bus/platform/drivers")) =>
            {
                self.platform_store(&parent, &bdf, name == "bind")
            }
            _ => Err(EACCES),
        };
        if after == Some(true) {
            self.remove_device(&bdf);
        }
        result
    }

    /// A platform device's `driver` link removed (unbind) or made (bind).
    fn platform_store(&mut self, drv: &str, dev: &str, bind: bool) -> Result<(), i32> {
        if dev.is_empty() || dev.contains('/') || dev.starts_with('.') {
            return Err(ENODEV);
        }
        let dir = fs::canonicalize(self.sys.join("bus/platform/devices").join(dev))
            .map_err(|_| ENODEV)?;
        let link = dir.join("driver");
        let now = fs::read_link(&link).ok().and_then(|t| base(&t));
        match (bind, now) {
            (false, Some(d)) if d == drv => fs::remove_file(&link).map_err(|_| ENODEV),
            (true, None) => {
                let target = self.sys.join("bus/platform/drivers").join(drv);
                if !target.is_dir() {
                    return Err(ENODEV);
                }
                std::os::unix::fs::symlink(target, &link).map_err(|_| ENODEV)
            }
            _ => Err(ENODEV),
        }
    }

    /// `driver_set_override`: up to the first newline; empty clears.
    fn override_store(&mut self, p: &Path, value: &str) -> Result<(), i32> {
        if value.len() >= 4095 {
            return Err(EINVAL);
        }
        let v = value.split('\n').next().unwrap_or("");
        let shown = if v.is_empty() { "(null)" } else { v };
        fs::write(self.sys.join(p), format!("{shown}\n")).map_err(|_| ENODEV)
    }

    fn unbind_store(&mut self, drv: &str, bdf: &str) -> Result<(), i32> {
        let dev = self.dev_dir(bdf).ok_or(ENODEV)?;
        if self.bound(&dev).as_deref() != Some(drv) {
            return Err(ENODEV);
        }
        self.detach(bdf, &dev);
        Ok(())
    }

    fn bind_store(&mut self, drv: &str, bdf: &str) -> Result<(), i32> {
        let dev = self.dev_dir(bdf).ok_or(ENODEV)?;
        if self.matching(bdf, &dev).as_deref() != Some(drv) {
            return Err(ENODEV);
        }
        if self.bound(&dev).is_some() {
            return Err(EBUSY);
        }
        match self.probe(bdf, &dev, drv)? {
            true => Ok(()),
            false => Err(ENODEV),
        }
    }

    fn drivers_probe_store(&mut self, bdf: &str) -> Result<(), i32> {
        let dev = self.dev_dir(bdf).ok_or(ENODEV)?;
        if self.bound(&dev).is_some() {
            return Ok(());
        }
        if let Some(drv) = self.matching(bdf, &dev) {
            if self.sys.join("bus/pci/drivers").join(&drv).is_dir() {
                let _ = self.probe(bdf, &dev, &drv);
            }
        }
        Ok(())
    }

    /// A deferred event is due: re-check the world as the deferred-probe worker would.
    fn fire(&mut self, t: Timer) {
        match t {
            Timer::Probe { bdf, driver } => {
                let Some(dev) = self.dev_dir(&bdf) else {
                    return;
                };
                if self.bound(&dev).is_none()
                    && self.matching(&bdf, &dev).as_deref() == Some(driver.as_str())
                    && self.sys.join("bus/pci/drivers").join(&driver).is_dir()
                {
                    self.attach(&bdf, &dev, &driver);
                }
            }
            Timer::Node(g) if self.group_on_vfio(g) => self.make_node(g),
            Timer::Node(_) => {}
        }
    }
}

/// Runs due timers until shutdown.
fn worker(shared: Arc<Shared>) {
    let mut st = shared.lock();
    while !st.shutdown {
        let now = Instant::now();
        let (due, rest): (Vec<_>, Vec<_>) = st.timers.drain(..).partition(|t| t.0 <= now);
        st.timers = rest;
        for (_, t) in due {
            st.fire(t);
        }
        st = match st.timers.iter().map(|t| t.0).min() {
            None => shared.cv.wait(st).unwrap_or_else(|e| e.into_inner()),
            Some(at) => {
                let wait = at.saturating_duration_since(Instant::now());
                shared
                    .cv
                    .wait_timeout(st, wait)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
        };
    }
}

/// The FUSE side: inode numbers <-> `sys`-relative paths, and passthrough of reads.
struct Fs {
    shared: Arc<Shared>,
    sys: PathBuf,
    inodes: Mutex<Inodes>,
}

#[derive(Default)]
struct Inodes {
    /// path -> (inode, backing inode); a path re-created as a new file gets a new inode.
    by_path: HashMap<PathBuf, (u64, u64)>,
    by_ino: HashMap<u64, (PathBuf, u64)>,
    next: u64,
}

const TTL: Duration = Duration::ZERO;

fn attr(ino: u64, m: &fs::Metadata) -> FileAttr {
    let t = |s: i64| UNIX_EPOCH + Duration::from_secs(s.max(0) as u64);
    FileAttr {
        ino: INodeNo(ino),
        size: m.len(),
        blocks: m.blocks(),
        atime: t(m.atime()),
        mtime: t(m.mtime()),
        ctime: t(m.ctime()),
        crtime: SystemTime::UNIX_EPOCH,
        kind: FileType::from_std(m.file_type()).unwrap_or(FileType::RegularFile),
        perm: (m.mode() & 0o7777) as u16,
        nlink: m.nlink() as u32,
        uid: m.uid(),
        gid: m.gid(),
        rdev: m.rdev() as u32,
        blksize: 4096,
        flags: 0,
    }
}

impl Fs {
    fn inodes(&self) -> MutexGuard<'_, Inodes> {
        self.inodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The inode of `rel` with its metadata (ENOENT when the backing file is gone).
    fn ino_of(&self, rel: &Path) -> Result<(u64, fs::Metadata), Errno> {
        let m = fs::symlink_metadata(self.sys.join(rel)).map_err(Errno::from)?;
        if rel.as_os_str().is_empty() {
            return Ok((1, m));
        }
        let mut i = self.inodes();
        match i.by_path.get(rel) {
            Some(&(ino, b)) if b == m.ino() => Ok((ino, m)),
            _ => {
                i.next = i.next.max(1) + 1;
                let ino = i.next;
                i.by_path.insert(rel.to_path_buf(), (ino, m.ino()));
                i.by_ino.insert(ino, (rel.to_path_buf(), m.ino()));
                Ok((ino, m))
            }
        }
    }

    /// The path of an inode, whether or not its file still exists.
    fn path_of(&self, ino: INodeNo) -> Result<PathBuf, Errno> {
        if ino.0 == 1 {
            return Ok(PathBuf::new());
        }
        let i = self.inodes();
        i.by_ino
            .get(&ino.0)
            .map(|p| p.0.clone())
            .ok_or(Errno::ENOENT)
    }

    /// Path and metadata of a live inode: ENOENT once its file is gone or replaced.
    fn live(&self, ino: INodeNo) -> Result<(PathBuf, fs::Metadata), Errno> {
        let rel = self.path_of(ino)?;
        let (now, m) = self.ino_of(&rel)?;
        if now != ino.0 {
            return Err(Errno::ENOENT);
        }
        Ok((rel, m))
    }
}

impl Filesystem for Fs {
    /// `O_TRUNC` comes with `open` (ignored, as sysfs does) instead of a setattr.
    fn init(&mut self, _req: &Request, config: &mut fuser::KernelConfig) -> io::Result<()> {
        let _ = config.add_capabilities(fuser::InitFlags::FUSE_ATOMIC_O_TRUNC);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self
            .path_of(parent)
            .and_then(|p| self.ino_of(&p.join(name)))
        {
            Ok((ino, m)) => reply.entry(&TTL, &attr(ino, &m), fuser::Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.live(ino) {
            Ok((_, m)) => reply.attr(&TTL, &attr(ino.0, &m)),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self
            .live(ino)
            .and_then(|(p, _)| fs::read_link(self.sys.join(p)).map_err(Errno::from))
        {
            Ok(t) => reply.data(t.as_os_str().as_encoded_bytes()),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.live(ino) {
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        // A removed attribute reads as ENODEV, like kernfs.
        let mut buf = vec![0; size as usize];
        let file = self.path_of(ino).map(|p| fs::File::open(self.sys.join(p)));
        match file.map(|f| f.and_then(|f| f.read_at(&mut buf, offset))) {
            Ok(Ok(n)) => reply.data(&buf[..n]),
            _ => reply.error(Errno::ENODEV),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let Ok(rel) = self.path_of(ino) else {
            return reply.error(Errno::ENODEV);
        };
        let value = String::from_utf8_lossy(data).into_owned();
        let mut st = self.shared.lock();
        let result = st.store(&rel.to_string_lossy(), &value);
        st.log.push(Written {
            path: format!("/sys/{}", rel.display()),
            value,
            errno: result.err(),
        });
        drop(st);
        self.shared.cv.notify_all();
        match result {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(Errno::from_i32(e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let list = || -> Result<Vec<(u64, FileType, std::ffi::OsString)>, Errno> {
            let (rel, _) = self.live(ino)?;
            let up = rel
                .parent()
                .map_or(Ok(1), |p| self.ino_of(p).map(|x| x.0))?;
            let mut out = vec![
                (ino.0, FileType::Directory, ".".into()),
                (up, FileType::Directory, "..".into()),
            ];
            let mut names: Vec<_> = fs::read_dir(self.sys.join(&rel))
                .map_err(Errno::from)?
                .flatten()
                .map(|e| e.file_name())
                .collect();
            names.sort();
            for n in names {
                // An entry removed meanwhile is skipped.
                if let Ok((i, m)) = self.ino_of(&rel.join(&n)) {
                    let kind = FileType::from_std(m.file_type()).unwrap_or(FileType::RegularFile);
                    out.push((i, kind, n));
                }
            }
            Ok(out)
        };
        match list() {
            Ok(entries) => {
                for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize)
                {
                    if reply.add(INodeNo(ino), i as u64 + 1, kind, name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }
}

/// A mounted fake kernel. Dropping it cancels pending deferred work and unmounts (lazily,
/// so an open file cannot keep it mounted or hang the drop).
pub struct FakeKernel {
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
    session: Option<fuser::BackgroundSession>,
    root: tempfile::TempDir,
}

impl FakeKernel {
    /// Mount over `tree` with `rules`; panics when FUSE cannot be mounted.
    pub fn mount(tree: &Tree, rules: Rules) -> FakeKernel {
        Self::try_mount(tree, rules)
            .expect("mount the fake kernel (FUSE, needs /dev/fuse and CAP_SYS_ADMIN)")
    }

    pub fn try_mount(tree: &Tree, mut rules: Rules) -> io::Result<FakeKernel> {
        let sys = fs::canonicalize(tree.path("sys"))?;
        // Native drivers: what each device is on now, unless vfio or pci-stub.
        for e in fs::read_dir(sys.join("bus/pci/devices"))?.flatten() {
            let bdf = e.file_name().to_string_lossy().into_owned();
            let drv = fs::read_link(e.path().join("driver"))
                .ok()
                .and_then(|t| base(&t));
            let drv = drv.filter(|d| !d.contains("vfio") && d != "pci-stub");
            rules.native.entry(bdf).or_insert(drv);
        }
        let root = tempfile::tempdir()?;
        fs::create_dir(root.path().join("sys"))?;
        for d in ["dev", "etc", "run", "proc"] {
            std::os::unix::fs::symlink(tree.path(d), root.path().join(d))?;
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                vfio: tree.path("dev/vfio"),
                sys: sys.clone(),
                rules,
                log: Vec::new(),
                timers: Vec::new(),
                shutdown: false,
            }),
            cv: Condvar::new(),
        });
        let fs = Fs {
            shared: shared.clone(),
            sys,
            inodes: Mutex::default(),
        };
        let mut cfg = fuser::Config::default();
        cfg.mount_options
            .push(fuser::MountOption::FSName("fakekernel".into()));
        let session = fuser::spawn_mount(fs, root.path().join("sys"), &cfg)?;
        let s = shared.clone();
        let worker = std::thread::spawn(move || worker(s));
        Ok(FakeKernel {
            shared,
            worker: Some(worker),
            session: Some(session),
            root,
        })
    }

    /// The root to pass as `--root` (`sys` is the mount; `dev`, `etc`, `run`, `proc` the
    /// tree's).
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// `root()` joined with a relative path (`"sys/bus/pci/drivers_probe"`).
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    /// `vfio-bind --root <root>` with no journal and no notify socket; add args and run.
    pub fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_vfio-bind"));
        c.arg("--root").arg(self.root());
        for v in ["JOURNAL_STREAM", "NOTIFY_SOCKET", "VFIO_BIND_ROOT"] {
            c.env_remove(v);
        }
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("run vfio-bind")
    }

    /// The driver `bdf` is bound to now (`None`: unbound or gone).
    pub fn driver(&self, bdf: &str) -> Option<String> {
        let st = self.shared.lock();
        st.dev_dir(bdf).and_then(|d| st.bound(&d))
    }

    /// `bdf`'s driver_override (`None`: `(null)` or gone).
    pub fn override_of(&self, bdf: &str) -> Option<String> {
        let st = self.shared.lock();
        st.dev_dir(bdf).and_then(|d| st.override_of(&d))
    }

    /// Whether `bdf` is still on the bus.
    pub fn present(&self, bdf: &str) -> bool {
        self.shared.lock().dev_dir(bdf).is_some()
    }

    /// Whether `/dev/vfio/<group>` exists.
    pub fn has_node(&self, group: u32) -> bool {
        self.shared.lock().vfio.join(group.to_string()).exists()
    }

    /// Every write seen so far, in order.
    pub fn writes(&self) -> Vec<Written> {
        self.shared.lock().log.clone()
    }

    /// Change the rules of a mounted fixture: `k.update_rules(|r| r.no_node(8))`.
    pub fn update_rules(&self, f: impl FnOnce(Rules) -> Rules) {
        let mut st = self.shared.lock();
        st.rules = f(std::mem::take(&mut st.rules));
    }

    /// Hot-unplug `bdf` now.
    pub fn unplug(&self, bdf: &str) {
        self.shared.lock().remove_device(bdf);
    }

    /// Drop pending slow probes and late nodes.
    pub fn cancel_pending(&self) {
        self.shared.lock().timers.clear();
    }
}

impl Drop for FakeKernel {
    fn drop(&mut self) {
        {
            let mut st = self.shared.lock();
            st.shutdown = true;
            st.timers.clear();
        }
        self.shared.cv.notify_all();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
        // Detach first: a plain umount fails with EBUSY while anything is open inside.
        // Then fuser finds the connection gone; its thread ends on ENODEV, not joined.
        let _ = nix::mount::umount2(
            &self.root.path().join("sys"),
            nix::mount::MntFlags::MNT_DETACH,
        );
        drop(self.session.take());
    }
}

/// Poll `f` every 5 ms until it holds or `timeout` passes; returns its last value.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if f() {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
