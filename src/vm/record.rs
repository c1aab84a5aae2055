//! The console handover steps done for a VM, one file per VM:
//! `/run/vfio-bind/vms/<name>.toml` ([`crate::vm::name::file_name`]). Each step is
//! recorded *before* it is taken (write-ahead), so an attach killed half-way leaves a
//! record `detach` can undo; `detach` undoes the steps in reverse and removes the file.
//! `/run` is a tmpfs: the record lasts as long as what it undoes (until reboot).
//!
//! ```toml
//! # /run/vfio-bind/vms/win11.toml
//! version = 1
//! vm = "win11"
//! [[step]]
//! kind = "unit"                 # was active; stopped (detach starts it)
//! name = "display-manager.service"
//! [[step]]
//! kind = "vtconsole"            # a framebuffer vtconsole that was bound
//! name = "vtcon1"
//! [[step]]
//! kind = "framebuffer"          # a firmware framebuffer unbound from its driver
//! device = "efi-framebuffer.0"
//! driver = "efi-framebuffer"
//! [[step]]
//! kind = "module"               # was loaded; unloaded (detach loads it)
//! name = "nvidia_drm"
//! ```
//!
//! A file of a newer version, or one that does not parse, is refused ([`StateError`]),
//! never guessed at.

use std::fs;
use std::io::{self, Read};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::atomic;
use crate::root::Root;
use crate::state::{StateError, STATE_DIR, STATE_MAX_BYTES};
use crate::text::escape;
use crate::vm::name;

/// The VM record's schema version.
pub const VM_RECORD_VERSION: i64 = 1;

/// One handover step, as recorded before it was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// A systemd unit that was active and is stopped (`systemctl stop`).
    Unit {
        /// The unit name.
        name: String,
    },
    /// A framebuffer vtconsole (`/sys/class/vtconsole/<name>`) that was bound.
    Vtconsole {
        /// `vtconN`.
        name: String,
    },
    /// A firmware framebuffer platform device unbound from its driver
    /// (`/sys/bus/platform/devices/<device>`).
    Framebuffer {
        /// `efi-framebuffer.0`, `simple-framebuffer.0`, `vesa-framebuffer.0`.
        device: String,
        /// The platform driver it was bound to.
        driver: String,
    },
    /// A kernel module that was loaded and is unloaded (`modprobe -r`).
    Module {
        /// The module name.
        name: String,
    },
}

/// A VM's record: the handover steps taken for it, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmRecord {
    /// The schema version ([`VM_RECORD_VERSION`]).
    pub version: i64,
    /// The libvirt domain name.
    pub vm: String,
    /// The steps, in the order they were taken.
    #[serde(default, rename = "step")]
    pub steps: Vec<Step>,
}

impl VmRecord {
    /// An empty record for `vm`.
    pub fn new(vm: &str) -> Self {
        VmRecord {
            version: VM_RECORD_VERSION,
            vm: vm.to_string(),
            steps: Vec::new(),
        }
    }
}

/// `/run/vfio-bind/vms` under the root.
pub fn dir(root: &Root) -> PathBuf {
    root.path(format!("{STATE_DIR}/vms"))
}

/// The record file of `vm`.
pub fn path(root: &Root, vm: &str) -> PathBuf {
    dir(root).join(name::file_name(vm))
}

/// Read `vm`'s record; `None` when it has none.
///
/// Errors: [`StateError::Io`] when it cannot be read, [`StateError::Corrupt`] when it
/// does not parse or names another VM, [`StateError::Version`] for a newer version.
pub fn load(root: &Root, vm: &str) -> Result<Option<VmRecord>, StateError> {
    let path = path(root, vm);
    let mut text = String::new();
    match fs::File::open(&path) {
        Ok(f) => f
            .take(STATE_MAX_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(|source| StateError::Io {
                path: path.clone(),
                source,
            })?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(StateError::Io { path, source }),
    };
    let corrupt = |message: String| StateError::Corrupt {
        path: path.clone(),
        message,
    };
    if text.len() as u64 > STATE_MAX_BYTES {
        return Err(corrupt(format!("larger than {STATE_MAX_BYTES} bytes")));
    }
    let r: VmRecord = toml::from_str(&text).map_err(|e| corrupt(escape(e.message())))?;
    if r.version > VM_RECORD_VERSION {
        return Err(StateError::Version {
            path,
            found: r.version,
        });
    }
    if r.version < 1 || r.vm != vm {
        return Err(corrupt(format!(
            "version {} for VM \"{}\"",
            r.version,
            escape(&r.vm)
        )));
    }
    Ok(Some(r))
}

/// Every VM's record, by VM name; a file that cannot be read or parsed is logged and
/// left out (status only reports).
pub fn list(root: &Root) -> Vec<VmRecord> {
    let Ok(rd) = fs::read_dir(dir(root)) else {
        return Vec::new();
    };
    let mut out: Vec<VmRecord> = rd
        .flatten()
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.ends_with(".toml") && !n.starts_with('.')
        })
        .filter_map(|e| {
            let text = fs::read_to_string(e.path()).ok()?;
            match toml::from_str::<VmRecord>(&text) {
                Ok(r)
                    if name::valid(&r.vm)
                        && e.file_name().to_string_lossy() == name::file_name(&r.vm) =>
                {
                    Some(r)
                }
                _ => {
                    log::warn!("{}: not a vfio-bind VM record", e.path().display());
                    None
                }
            }
        })
        .collect();
    out.sort_by(|a, b| a.vm.cmp(&b.vm));
    out
}

/// Write `r` (atomically, mode 0644), creating `/run/vfio-bind/vms` when needed.
///
/// Errors: [`StateError::Io`] naming the file and the errno.
pub fn save(root: &Root, r: &VmRecord) -> Result<(), StateError> {
    let text = format!(
        "# Console handover steps vfio-bind took for VM \"{}\", in order; `vfio-bind detach` \
         undoes them in reverse.\n{}",
        escape(&r.vm),
        toml::to_string(r).expect("the record serializes")
    );
    Ok(atomic::write(&path(root, &r.vm), text.as_bytes(), 0o644)?)
}

/// Remove `vm`'s record (nothing when it has none).
///
/// Errors: [`StateError::Io`] naming the file and the errno.
pub fn remove(root: &Root, vm: &str) -> Result<(), StateError> {
    Ok(atomic::remove(&path(root, vm))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_refuse_what_vfio_bind_never_writes() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        assert_eq!(load(&root, "a b").unwrap(), None);
        let mut r = VmRecord::new("a b");
        r.steps.push(Step::Unit {
            name: "display-manager.service".into(),
        });
        r.steps.push(Step::Framebuffer {
            device: "efi-framebuffer.0".into(),
            driver: "efi-framebuffer".into(),
        });
        save(&root, &r).unwrap();
        assert!(path(&root, "a b").ends_with("run/vfio-bind/vms/a%20b.toml"));
        assert_eq!(load(&root, "a b").unwrap(), Some(r));
        fs::write(path(&root, "a b"), "version = 9\nvm = \"a b\"\n").unwrap();
        assert!(matches!(
            load(&root, "a b"),
            Err(StateError::Version { found: 9, .. })
        ));
        fs::write(path(&root, "a b"), "version = 1\nvm = \"other\"\n").unwrap();
        assert!(matches!(
            load(&root, "a b"),
            Err(StateError::Corrupt { .. })
        ));
        fs::write(
            path(&root, "a b"),
            "version = 1\nvm = \"a b\"\n[[step]]\nkind = \"reboot\"\n",
        )
        .unwrap();
        assert!(matches!(
            load(&root, "a b"),
            Err(StateError::Corrupt { .. })
        ));
        remove(&root, "a b").unwrap();
        remove(&root, "a b").unwrap();
        assert_eq!(load(&root, "a b").unwrap(), None);
    }
}
