//! What vfio-bind has bound: `/run/vfio-bind/state.toml`. `/run` is a tmpfs, so the record
//! lasts exactly as long as the binds do (until reboot).
//!
//! The file carries a schema `version` (now [`STATE_VERSION`]); a file without one was
//! written before the key existed and reads as version 1. Each older version is converted
//! on reading (none is older than 1 today); a version newer than this binary knows is
//! refused with a clear message, never guessed at or overwritten. Unknown keys of a known
//! version are ignored. The file is replaced atomically through [`crate::atomic`].
//!
//! ```toml
//! version = 1
//! [devices."0000:01:00.0"]        # bound by vfio-bind, and what it had before
//! driver = "vfio-pci"
//! group = 7
//! previous_driver = "xhci_hcd"
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::atomic;
use crate::driver;
use crate::pci::PciAddress;
use crate::root::Root;
use crate::text::escape;

/// Directory of the state file and the lock (taken under the root).
pub const STATE_DIR: &str = "/run/vfio-bind";

/// The state file's schema version this binary writes and reads.
pub const STATE_VERSION: u32 = 1;

/// The largest state file read, in bytes (4 MiB: some 35 000 recorded devices). A larger
/// file is not one vfio-bind wrote, and reading it whole would cost memory out of
/// proportion.
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

/// The file as written; `version` is absent in files written before it existed.
#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    #[serde(default)]
    version: Option<i64>,
    #[serde(default)]
    devices: BTreeMap<String, Record>,
}

/// What vfio-bind has bound: devices by PCI address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    devices: BTreeMap<PciAddress, Record>,
}

impl State {
    fn path(root: &Root) -> PathBuf {
        root.path(format!("{STATE_DIR}/state.toml"))
    }

    /// Read the state; a missing file is an empty state. A version 1 file is converted.
    ///
    /// Errors: [`StateError::Io`] when it cannot be read, [`StateError::Corrupt`] when it
    /// does not parse, [`StateError::Version`] when a newer vfio-bind wrote it.
    pub fn load(root: &Root) -> Result<State, StateError> {
        let path = Self::path(root);
        let corrupt = |message: String| StateError::Corrupt {
            path: path.clone(),
            message,
        };
        let mut text = String::new();
        match fs::File::open(&path) {
            Ok(f) => f
                .take(STATE_MAX_BYTES + 1)
                .read_to_string(&mut text)
                .map_err(|source| StateError::Io {
                    path: path.clone(),
                    source,
                })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(State::default()),
            Err(source) => return Err(StateError::Io { path, source }),
        };
        if text.len() as u64 > STATE_MAX_BYTES {
            return Err(corrupt(format!("larger than {STATE_MAX_BYTES} bytes")));
        }
        let file: File = toml::from_str(&text).map_err(|e| corrupt(e.message().to_string()))?;
        match file.version {
            None | Some(1) => {}
            Some(v) if v > i64::from(STATE_VERSION) => {
                return Err(StateError::Version { path, found: v })
            }
            Some(v) => return Err(corrupt(format!("unknown version {v}"))),
        }
        let mut state = State::default();
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
            state.devices.insert(a, r);
        }
        Ok(state)
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
        self.devices.insert(addr, r);
    }

    /// Forget a device.
    pub fn remove(&mut self, addr: PciAddress) -> Option<Record> {
        self.devices.remove(&addr)
    }

    /// The file's text.
    fn render(&self) -> String {
        let file = File {
            version: Some(i64::from(STATE_VERSION)),
            devices: self
                .devices
                .iter()
                .map(|(a, r)| (a.to_string(), r.clone()))
                .collect(),
        };
        let mut text = String::from(
            "# Devices bound by vfio-bind, with the driver each had before.\n\
             # Written by vfio-bind; read by `vfio-bind release` and by `apply` on reload.\n",
        );
        text.push_str(&toml::to_string(&file).expect("state serializes"));
        text
    }

    /// Replace the state file atomically ([`crate::atomic::write`], mode 0644). Creates
    /// `/run/vfio-bind` (0755) if needed.
    ///
    /// Errors: [`StateError::Io`] naming the file or directory that failed, and the errno.
    pub fn save(&self, root: &Root) -> Result<(), StateError> {
        Ok(atomic::write(
            &Self::path(root),
            self.render().as_bytes(),
            0o644,
        )?)
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
    fn a_file_without_version_reads_as_version_1() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        fs::create_dir_all(dir.path().join("run/vfio-bind")).unwrap();
        // As the first releases wrote it, with a key a later version might add.
        fs::write(
            dir.path().join("run/vfio-bind/state.toml"),
            "[devices.\"0000:02:00.0\"]\ndriver = \"vfio-pci\"\ngroup = 8\nlater = 1\n",
        )
        .unwrap();
        let s = State::load(&root).unwrap();
        assert_eq!(s.get("0000:02:00.0".parse().unwrap()).unwrap().group, 8);
        s.save(&root).unwrap();
        let text = fs::read_to_string(dir.path().join("run/vfio-bind/state.toml")).unwrap();
        assert!(text.contains("version = 1"), "{text}");
        assert_eq!(State::load(&root).unwrap(), s);
    }

    #[test]
    fn newer_version_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        fs::create_dir_all(dir.path().join("run/vfio-bind")).unwrap();
        fs::write(dir.path().join("run/vfio-bind/state.toml"), "version = 2\n").unwrap();
        let e = State::load(&root).unwrap_err();
        assert!(matches!(e, StateError::Version { found: 2, .. }), "{e}");
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
}
