//! What vfio-bind has bound: `/run/vfio-bind/state.toml`, and the run lock
//! `/run/vfio-bind/lock`. `/run` is a tmpfs, so the record lasts exactly as long as the
//! binds do (until reboot).
//!
//! The state file is replaced atomically (write a temporary file, fsync, rename, fsync
//! the directory): a crash leaves the old or the new file, never a torn one.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::PathBuf;
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::pci::PciAddress;
use crate::sysfs::Root;

/// Directory of the state file and the lock (taken under the root).
pub const STATE_DIR: &str = "/run/vfio-bind";

/// A state or lock failure, naming the file and the errno.
#[derive(Debug, Error)]
pub enum StateError {
    /// Reading, writing or locking failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error, with its errno.
        #[source]
        source: io::Error,
    },
    /// The state file is not what vfio-bind writes.
    #[error("{}: not a vfio-bind state file: {message} (remove it only if no device is bound by vfio-bind)", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parse error.
        message: String,
    },
    /// Another run holds the lock.
    #[error("another vfio-bind run holds {} ({holder}); gave up after {waited_ms} ms", path.display())]
    Busy {
        /// The lock file.
        path: PathBuf,
        /// Who holds it, as it wrote itself into the lock file (`pid 123: apply`).
        holder: String,
        /// How long this run waited, in milliseconds.
        waited_ms: u128,
    },
}

/// One device that vfio-bind bound, and what it had before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The driver vfio-bind bound it to.
    pub driver: String,
    /// Its IOMMU group when bound.
    pub group: u32,
    /// The driver it was on before (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_driver: Option<String>,
    /// Its `driver_override` before (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_override: Option<String>,
}

/// The devices vfio-bind has bound, by PCI address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// By address (`dddd:bb:dd.f`).
    #[serde(default)]
    pub devices: BTreeMap<String, Record>,
}

impl State {
    fn path(root: &Root) -> PathBuf {
        root.path(format!("{STATE_DIR}/state.toml"))
    }

    /// Read the state; a missing file is an empty state.
    ///
    /// Errors: [`StateError::Io`] when it cannot be read, [`StateError::Corrupt`] when it
    /// does not parse.
    pub fn load(root: &Root) -> Result<State, StateError> {
        let path = Self::path(root);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(State::default()),
            Err(source) => return Err(StateError::Io { path, source }),
        };
        let state: State = toml::from_str(&text).map_err(|e| StateError::Corrupt {
            path: path.clone(),
            message: e.message().to_string(),
        })?;
        for k in state.devices.keys() {
            if k.parse::<PciAddress>().is_err() {
                return Err(StateError::Corrupt {
                    path,
                    message: format!("bad PCI address {k:?}"),
                });
            }
        }
        Ok(state)
    }

    /// The record of a device, if vfio-bind bound it.
    pub fn get(&self, addr: PciAddress) -> Option<&Record> {
        self.devices.get(&addr.to_string())
    }

    /// Every recorded device with its record, by address.
    pub fn records(&self) -> impl Iterator<Item = (PciAddress, &Record)> {
        self.devices
            .iter()
            .filter_map(|(k, r)| Some((k.parse().ok()?, r)))
    }

    /// Record (or update) a device.
    pub fn insert(&mut self, addr: PciAddress, r: Record) {
        self.devices.insert(addr.to_string(), r);
    }

    /// Forget a device.
    pub fn remove(&mut self, addr: PciAddress) -> Option<Record> {
        self.devices.remove(&addr.to_string())
    }

    /// Replace the state file atomically (temporary file, fsync, rename, fsync of the
    /// directory). Creates `/run/vfio-bind` (0755) if needed.
    ///
    /// Errors: [`StateError::Io`] naming the file that failed.
    pub fn save(&self, root: &Root) -> Result<(), StateError> {
        let dir = root.path(STATE_DIR);
        let path = Self::path(root);
        let tmp = dir.join("state.toml.tmp");
        let io_err = |path: &PathBuf| {
            let path = path.clone();
            move |source| StateError::Io { path, source }
        };
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let mut text = String::from(
            "# Devices bound by vfio-bind, with the driver each had before.\n\
             # Written by vfio-bind; read by `vfio-bind release` and by `apply` on reload.\n",
        );
        text.push_str(&toml::to_string(self).expect("state serializes"));
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(text.as_bytes()).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        drop(f);
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&dir))?;
        Ok(())
    }
}

/// The run lock: an exclusive `flock` on `/run/vfio-bind/lock`, held for the life of
/// the value. The holder writes `pid <pid>: <what>` into the file so a waiting run can
/// say who holds it.
pub struct Lock {
    _file: Flock<File>,
}

impl Lock {
    /// Take the lock, waiting at most `timeout` (polled every 50 ms).
    ///
    /// Errors: [`StateError::Busy`] naming the holder when the wait runs out;
    /// [`StateError::Io`] when the lock file cannot be created or locked.
    pub fn acquire(root: &Root, what: &str, timeout: Duration) -> Result<Lock, StateError> {
        let dir = root.path(STATE_DIR);
        let path = dir.join("lock");
        let io_err = |source| StateError::Io {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(&dir).map_err(|source| StateError::Io {
            path: dir.clone(),
            source,
        })?;
        let start = Instant::now();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err)?;
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(mut locked) => {
                    let note = format!("pid {}: {what}\n", std::process::id());
                    locked.set_len(0).map_err(io_err)?;
                    locked.rewind().map_err(io_err)?;
                    locked.write_all(note.as_bytes()).map_err(io_err)?;
                    return Ok(Lock { _file: locked });
                }
                Err((f, nix::errno::Errno::EWOULDBLOCK)) => {
                    file = f;
                    if start.elapsed() >= timeout {
                        let mut holder = String::new();
                        let _ = file.rewind();
                        let _ = file.read_to_string(&mut holder);
                        let holder = holder.trim();
                        return Err(StateError::Busy {
                            path: path.clone(),
                            holder: if holder.is_empty() {
                                "holder unknown".into()
                            } else {
                                holder.to_string()
                            },
                            waited_ms: start.elapsed().as_millis(),
                        });
                    }
                    sleep(Duration::from_millis(50));
                }
                Err((_, e)) => return Err(io_err(io::Error::from(e))),
            }
        }
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
            },
        );
        s.save(&root).unwrap();
        assert_eq!(State::load(&root).unwrap(), s);
        assert!(!dir.path().join("run/vfio-bind/state.toml.tmp").exists());
        fs::write(dir.path().join("run/vfio-bind/state.toml"), "devices = 3\n").unwrap();
        assert!(matches!(
            State::load(&root),
            Err(StateError::Corrupt { .. })
        ));
    }

    #[test]
    fn lock_names_its_holder() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        let held = Lock::acquire(&root, "apply", Duration::from_millis(0)).unwrap();
        let e = Lock::acquire(&root, "release", Duration::from_millis(120))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains(&format!("pid {}: apply", std::process::id())),
            "{e}"
        );
        drop(held);
        Lock::acquire(&root, "release", Duration::from_millis(0)).unwrap();
    }
}
