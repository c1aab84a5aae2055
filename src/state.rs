//! What vfio-bind has bound: one file per IOMMU group, `/run/vfio-bind/groups/<n>.toml`.
//! `/run` is a tmpfs, so the record lasts exactly as long as the binds do (until reboot).
//!
//! One file per group, so that recording a group before its first write (write-ahead)
//! and forgetting a released device cost in proportion to that group, never to
//! everything bound before it: a host of thousands of devices is recorded in linear time.
//! Each file is replaced atomically through [`crate::atomic`]; only the groups changed
//! since the last save are written ([`State::save`]).
//!
//! Each file carries the schema `version` (now [`STATE_VERSION`]). Version 1, the single
//! file `/run/vfio-bind/state.toml` (a file without `version` is version 1), is converted
//! on reading: the next save writes its groups' files and removes it. A version newer
//! than this binary knows is refused with a clear message, never guessed at or
//! overwritten. Unknown keys of a known version are ignored.
//!
//! ```toml
//! # /run/vfio-bind/groups/7.toml
//! version = 2
//! [devices."0000:01:00.0"]        # bound by vfio-bind, and what it had before
//! driver = "vfio-pci"
//! group = 7
//! previous_driver = "xhci_hcd"
//! early = true                    # claimed in the initramfs (absent: false)
//! vm = "win11"                    # attached for this libvirt domain (absent: the config's)
//! ```
//!
//! A device recorded with a `vm` belongs to that VM's `attach` until its `detach`: the
//! boot-time `apply` neither releases nor re-plans it, and `release` leaves it to
//! `detach`. The console handover steps of a VM are recorded beside the groups, in
//! `/run/vfio-bind/vms/` ([`crate::vm::record`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::atomic;
use crate::driver::{self, Driver};
use crate::pci::PciAddress;
use crate::root::Root;
use crate::text::escape;

/// Directory of the state file and the lock (taken under the root).
pub const STATE_DIR: &str = "/run/vfio-bind";

/// The state file's schema version this binary writes and reads.
pub const STATE_VERSION: u32 = 2;

/// The largest state file read, in bytes (4 MiB: some 35 000 recorded devices in the
/// version 1 file; a group's file is far smaller). A larger file is not one vfio-bind
/// wrote, and reading it whole would cost memory out of proportion.
pub const STATE_MAX_BYTES: u64 = 4 << 20;

/// A state failure, naming the file and the errno or what is wrong with it.
#[derive(Debug, Error)]
pub enum StateError {
    /// Reading or writing failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file (or directory, or temporary file) of the failing step.
        path: PathBuf,
        /// The error, with its errno.
        #[source]
        source: io::Error,
    },
    /// The state file is not what vfio-bind writes.
    #[error("{}: not a vfio-bind state file: {message} (remove it only if no device is bound by vfio-bind; `vfio-bind release ADDR` hands a device back without it)", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parse error.
        message: String,
    },
    /// The state file was written by a newer vfio-bind.
    #[error("{}: state version {found} was written by a newer vfio-bind (this one reads up to version {STATE_VERSION}); release the devices with that version (`vfio-bind release --all`) or reboot, then use this one", path.display())]
    Version {
        /// The file.
        path: PathBuf,
        /// The version found in it.
        found: i64,
    },
}

impl From<atomic::WriteError> for StateError {
    fn from(e: atomic::WriteError) -> Self {
        StateError::Io {
            path: e.path,
            source: e.source,
        }
    }
}

/// One device that vfio-bind bound, and what it had before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The driver vfio-bind bound it to.
    pub driver: Driver,
    /// Its IOMMU group when bound.
    pub group: u32,
    /// The driver it was on before (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_driver: Option<Driver>,
    /// Its `driver_override` before (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_override: Option<Driver>,
    /// Claimed in the initramfs (`vfio-bind claim`), before the real root's services ran.
    /// Absent (false) in files written before it existed; older binaries of version 2
    /// ignore it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub early: bool,
    /// The libvirt domain whose `attach` bound it (absent: the config's `[[device]]`
    /// entries did). Older binaries of version 2 ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<String>,
}

/// A file as written; `version` is absent in files written before it existed.
#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    #[serde(default)]
    version: Option<i64>,
    #[serde(default)]
    devices: BTreeMap<String, Record>,
}

/// What vfio-bind has bound: devices by PCI address, and which groups' files are out of
/// date.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    devices: BTreeMap<PciAddress, Record>,
    /// The recorded devices of each group (an index of `devices`).
    groups: BTreeMap<u32, BTreeSet<PciAddress>>,
    /// Groups changed since the last save (their files are rewritten or removed).
    dirty: BTreeSet<u32>,
    /// A version 1 `state.toml` was read: the next save converts it.
    legacy: bool,
    /// While loading: the devices read from groups' files.
    from_groups: BTreeSet<PciAddress>,
}

/// `/run/vfio-bind/state.toml`, the version 1 file.
fn legacy_path(root: &Root) -> PathBuf {
    root.path(format!("{STATE_DIR}/state.toml"))
}

/// `/run/vfio-bind/groups`.
fn groups_dir(root: &Root) -> PathBuf {
    root.path(format!("{STATE_DIR}/groups"))
}

/// Read one state file (at most [`STATE_MAX_BYTES`]); `None` when it does not exist.
fn read_file(path: &Path) -> Result<Option<File>, StateError> {
    let corrupt = |message: String| StateError::Corrupt {
        path: path.to_path_buf(),
        message,
    };
    let io = |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut text = String::new();
    match fs::File::open(path) {
        Ok(f) => f
            .take(STATE_MAX_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(io)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(io(source)),
    };
    if text.len() as u64 > STATE_MAX_BYTES {
        return Err(corrupt(format!("larger than {STATE_MAX_BYTES} bytes")));
    }
    let file: File = toml::from_str(&text).map_err(|e| corrupt(escape(e.message())))?;
    match file.version {
        None | Some(1..=2) => Ok(Some(file)),
        Some(v) if v > i64::from(STATE_VERSION) => Err(StateError::Version {
            path: path.to_path_buf(),
            found: v,
        }),
        Some(v) => Err(corrupt(format!("unknown version {v}"))),
    }
}

impl State {
    /// Read the state: the version 1 file if there is one, then every group's file. No
    /// state at all is an empty state.
    ///
    /// Errors: [`StateError::Io`] when a file cannot be read, [`StateError::Corrupt`] when
    /// one does not parse or holds a value vfio-bind never writes (an address that is no
    /// PCI address, a driver name that is not one, a device in another group's file),
    /// [`StateError::Version`] when a newer vfio-bind wrote it.
    pub fn load(root: &Root) -> Result<State, StateError> {
        let mut state = State::default();
        let mut shared = driver::Interner::default();
        let legacy = legacy_path(root);
        if let Some(file) = read_file(&legacy)? {
            state.add(&legacy, file, None, &mut shared)?;
            state.legacy = true;
        }
        let dir = groups_dir(root);
        let names = match fs::read_dir(&dir) {
            Ok(rd) => rd
                .map(|e| e.map(|e| e.file_name()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|source| StateError::Io {
                    path: dir.clone(),
                    source,
                })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(source) => return Err(StateError::Io { path: dir, source }),
        };
        for name in names {
            let name = name.to_string_lossy();
            // Temporary files of an interrupted write (`.7.toml.XXXX.tmp`) are not state.
            // Only the names vfio-bind writes (`7.toml`; not `+7.toml` or `07.toml`).
            let Some(group) = name
                .strip_suffix(".toml")
                .and_then(|g| g.parse::<u32>().ok().filter(|n| n.to_string() == g))
            else {
                continue;
            };
            let path = dir.join(&*name);
            if let Some(file) = read_file(&path)? {
                state.add(&path, file, Some(group), &mut shared)?;
            }
        }
        // Loading is not a change; only a version 1 file's groups need writing.
        state.from_groups.clear();
        state.dirty.clear();
        if state.legacy {
            state.dirty = state.groups.keys().copied().collect();
        }
        Ok(state)
    }

    /// Add the validated records of one file (of `group`, when it is a group's file). A
    /// group's file overrides the version 1 file (it is newer: a conversion interrupted
    /// between the two writes leaves both); a device in two groups' files is corrupt.
    /// Driver names are shared through `shared`.
    fn add(
        &mut self,
        path: &Path,
        file: File,
        group: Option<u32>,
        shared: &mut driver::Interner,
    ) -> Result<(), StateError> {
        let corrupt = |message: String| StateError::Corrupt {
            path: path.to_path_buf(),
            message,
        };
        for (k, r) in file.devices {
            let a = k
                .parse::<PciAddress>()
                .map_err(|_| corrupt(format!("bad PCI address \"{}\"", escape(&k))))?;
            let names = [
                Some(&r.driver),
                r.previous_driver.as_ref(),
                r.previous_override.as_ref(),
            ];
            if let Some(bad) = names.into_iter().flatten().find(|n| !driver::valid_name(n)) {
                return Err(corrupt(format!("{a}: bad driver name \"{}\"", escape(bad))));
            }
            if let Some(vm) = r.vm.as_deref().filter(|v| !crate::vm::name::valid(v)) {
                return Err(corrupt(format!("{a}: bad VM name \"{}\"", escape(vm))));
            }
            if group.is_some_and(|g| g != r.group) {
                return Err(corrupt(format!("{a}: recorded in group {}", r.group)));
            }
            if let (Some(_), Some(old)) = (group, self.devices.get(&a)) {
                if self.from_groups.contains(&a) {
                    return Err(corrupt(format!(
                        "{a} is recorded in group {} and in group {}",
                        old.group, r.group
                    )));
                }
            }
            if group.is_some() {
                self.from_groups.insert(a);
            }
            let r = Record {
                driver: shared.intern(r.driver),
                previous_driver: r.previous_driver.map(|d| shared.intern(d)),
                previous_override: r.previous_override.map(|d| shared.intern(d)),
                ..r
            };
            self.insert(a, r);
        }
        Ok(())
    }

    /// The record of a device, if vfio-bind bound it.
    pub fn get(&self, addr: PciAddress) -> Option<&Record> {
        self.devices.get(&addr)
    }

    /// Every recorded device with its record, by address.
    pub fn records(&self) -> impl Iterator<Item = (PciAddress, &Record)> {
        self.devices.iter().map(|(a, r)| (*a, r))
    }

    /// Record (or update) a device.
    pub fn insert(&mut self, addr: PciAddress, r: Record) {
        self.dirty.insert(r.group);
        self.groups.entry(r.group).or_default().insert(addr);
        if let Some(old) = self.devices.insert(addr, r) {
            self.unindex(addr, old.group);
        }
    }

    /// The recorded devices of IOMMU group `group`, in address order (from the group
    /// index: proportional to the group).
    pub fn group_members(&self, group: u32) -> Vec<PciAddress> {
        self.groups
            .get(&group)
            .map(|set| set.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Forget a device.
    pub fn remove(&mut self, addr: PciAddress) -> Option<Record> {
        let r = self.devices.remove(&addr)?;
        self.unindex(addr, r.group);
        Some(r)
    }

    /// Drop `addr` from `group`'s index (unless it is still recorded there) and mark the
    /// group for the next save.
    fn unindex(&mut self, addr: PciAddress, group: u32) {
        self.dirty.insert(group);
        if self.devices.get(&addr).is_some_and(|r| r.group == group) {
            return;
        }
        if let Some(set) = self.groups.get_mut(&group) {
            set.remove(&addr);
            if set.is_empty() {
                self.groups.remove(&group);
            }
        }
    }

    /// The text of group `group`'s file.
    fn render(&self, group: u32) -> String {
        let file = File {
            version: Some(i64::from(STATE_VERSION)),
            devices: self
                .groups
                .get(&group)
                .into_iter()
                .flatten()
                .map(|a| (a.to_string(), self.devices[a].clone()))
                .collect(),
        };
        let mut text = format!(
            "# Devices of IOMMU group {group} bound by vfio-bind, with the driver each had \
             before.\n# Written by vfio-bind; read by `vfio-bind release` and by `apply` on \
             reload.\n"
        );
        text.push_str(&toml::to_string(&file).expect("state serializes"));
        text
    }

    /// Write the files of the groups changed since the last save ([`crate::atomic::write`],
    /// mode 0644; a group left with no device loses its file), and finish the conversion of
    /// a version 1 file. Creates `/run/vfio-bind/groups` (0755) if needed. The cost is that
    /// of the changed groups, not of the whole state.
    ///
    /// Errors: [`StateError::Io`] naming the file or directory that failed, and the errno;
    /// the groups not written stay marked for the next save.
    pub fn save(&mut self, root: &Root) -> Result<(), StateError> {
        let dir = groups_dir(root);
        while let Some(&g) = self.dirty.first() {
            let path = dir.join(format!("{g}.toml"));
            if self.groups.contains_key(&g) {
                atomic::write(&path, self.render(g).as_bytes(), 0o644)?;
            } else {
                atomic::remove(&path)?;
            }
            self.dirty.remove(&g);
        }
        if self.legacy {
            atomic::remove(&legacy_path(root))?;
            self.legacy = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_saves_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        assert_eq!(State::load(&root).unwrap(), State::default());
        let mut s = State::default();
        s.insert(
            "0000:02:00.0".parse().unwrap(),
            Record {
                driver: "vfio-pci".into(),
                group: 8,
                previous_driver: Some("e1000e".into()),
                previous_override: None,
                early: false,
                vm: None,
            },
        );
        s.save(&root).unwrap();
        assert_eq!(State::load(&root).unwrap(), s);
        let names: Vec<_> = fs::read_dir(dir.path().join("run/vfio-bind/groups"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(
            names,
            vec!["8.toml"],
            "one file per group, no temporary left"
        );
        // Forgetting the group's last device removes its file.
        s.remove("0000:02:00.0".parse().unwrap());
        s.save(&root).unwrap();
        assert!(!dir.path().join("run/vfio-bind/groups/8.toml").exists());
        assert_eq!(State::load(&root).unwrap(), State::default());
        fs::write(dir.path().join("run/vfio-bind/state.toml"), "devices = 3\n").unwrap();
        assert!(matches!(
            State::load(&root),
            Err(StateError::Corrupt { .. })
        ));
    }

    #[test]
    fn a_version_1_file_is_converted_to_group_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        fs::create_dir_all(dir.path().join("run/vfio-bind")).unwrap();
        // As the first releases wrote it, with a key a later version might add.
        fs::write(
            dir.path().join("run/vfio-bind/state.toml"),
            "[devices.\"0000:02:00.0\"]\ndriver = \"vfio-pci\"\ngroup = 8\nlater = 1\n",
        )
        .unwrap();
        let mut s = State::load(&root).unwrap();
        assert_eq!(s.get("0000:02:00.0".parse().unwrap()).unwrap().group, 8);
        s.save(&root).unwrap();
        assert!(!dir.path().join("run/vfio-bind/state.toml").exists());
        let text = fs::read_to_string(dir.path().join("run/vfio-bind/groups/8.toml")).unwrap();
        assert!(text.contains("version = 2"), "{text}");
        assert_eq!(State::load(&root).unwrap(), s);
    }

    #[test]
    fn newer_version_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        fs::create_dir_all(dir.path().join("run/vfio-bind/groups")).unwrap();
        fs::write(
            dir.path().join("run/vfio-bind/groups/7.toml"),
            "version = 3\n",
        )
        .unwrap();
        let e = State::load(&root).unwrap_err();
        assert!(matches!(e, StateError::Version { found: 3, .. }), "{e}");
        fs::remove_file(dir.path().join("run/vfio-bind/groups/7.toml")).unwrap();
        assert!(e.to_string().contains("newer vfio-bind"), "{e}");
        fs::write(dir.path().join("run/vfio-bind/state.toml"), "version = 0\n").unwrap();
        assert!(matches!(
            State::load(&root),
            Err(StateError::Corrupt { .. })
        ));
    }

    #[test]
    fn values_read_back_are_validated() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        fs::create_dir_all(dir.path().join("run/vfio-bind")).unwrap();
        let p = dir.path().join("run/vfio-bind/state.toml");
        for (text, want) in [
            (
                "[devices.\"0000:02:00.0\"]\ndriver = \"vfio-pci\"\ngroup = 8\nprevious_driver = \"../../../../etc\"\n",
                "bad driver name \"../../../../etc\"",
            ),
            (
                "[devices.\"0000:02:00.0\"]\ndriver = \"vfio-pci\"\ngroup = 8\nprevious_override = \"a\\nb\"\n",
                "bad driver name \"a\\nb\"",
            ),
            ("[devices.\"zz\"]\ndriver = \"vfio-pci\"\ngroup = 8\n", "bad PCI address \"zz\""),
        ] {
            fs::write(&p, text).unwrap();
            let e = State::load(&root).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
        let big = "# padding\n".repeat((STATE_MAX_BYTES as usize) / 10 + 10);
        fs::write(&p, big).unwrap();
        let e = State::load(&root).unwrap_err().to_string();
        assert!(e.contains("larger than"), "{e}");
    }

    #[test]
    fn a_device_in_two_groups_files_is_refused_and_odd_names_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        let g = dir.path().join("run/vfio-bind/groups");
        fs::create_dir_all(&g).unwrap();
        let rec = |n: u32| {
            format!("version = 2\n[devices.\"0000:02:00.0\"]\ndriver = \"vfio-pci\"\ngroup = {n}\n")
        };
        fs::write(g.join("7.toml"), rec(7)).unwrap();
        fs::write(g.join("07.toml"), rec(9)).unwrap();
        fs::write(g.join(".7.toml.abc.tmp"), "torn").unwrap();
        assert_eq!(
            State::load(&root)
                .unwrap()
                .get("0000:02:00.0".parse().unwrap())
                .unwrap()
                .group,
            7
        );
        fs::write(g.join("9.toml"), rec(9)).unwrap();
        let e = State::load(&root).unwrap_err().to_string();
        assert!(
            e.contains("is recorded in group 9 and in group 7")
                || e.contains("is recorded in group 7 and in group 9"),
            "{e}"
        );
        // A version 1 file left by an interrupted conversion is overridden, not refused.
        fs::remove_file(g.join("9.toml")).unwrap();
        fs::write(
            dir.path().join("run/vfio-bind/state.toml"),
            "[devices.\"0000:02:00.0\"]\ndriver = \"vfio-pci\"\ngroup = 7\nprevious_driver = \"old\"\n",
        )
        .unwrap();
        let s = State::load(&root).unwrap();
        assert_eq!(
            s.get("0000:02:00.0".parse().unwrap())
                .unwrap()
                .previous_driver,
            None
        );
    }
}
