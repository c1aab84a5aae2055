//! The run lock `/run/vfio-bind/lock`: an exclusive `flock(2)` that serializes every run
//! that writes (apply, release), with the holder's pid and command written into the file
//! so a waiting run can say who holds it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use thiserror::Error;

use crate::root::Root;
use crate::state::STATE_DIR;

/// The lock file (taken under the root).
pub const LOCK_FILE: &str = "/run/vfio-bind/lock";

/// A lock failure, naming the file and the errno, or the holder.
#[derive(Debug, Error)]
pub enum LockError {
    /// Creating, opening or locking the file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error, with its errno.
        #[source]
        source: io::Error,
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

/// The run lock: an exclusive `flock` on `/run/vfio-bind/lock`, held for the life of
/// the value. The holder writes `pid <pid>: <what>` into the file so a waiting run can
/// say who holds it.
pub struct Lock {
    _file: Flock<File>,
    uncontended_create: bool,
}

impl Lock {
    /// True when this run created the lock file and no run held the lock before it: no
    /// other vfio-bind run can have written anything since this run started.
    pub fn uncontended_create(&self) -> bool {
        self.uncontended_create
    }

    /// Take the lock, waiting at most `timeout` (polled every 50 ms).
    ///
    /// Errors: [`LockError::Busy`] naming the holder when the wait runs out;
    /// [`LockError::Io`] when the lock file cannot be created or locked.
    pub fn acquire(root: &Root, what: &str, timeout: Duration) -> Result<Lock, LockError> {
        let dir = root.path(STATE_DIR);
        let path = root.path(LOCK_FILE);
        let io_err = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(&dir).map_err(|source| LockError::Io {
            path: dir.clone(),
            source,
        })?;
        let start = Instant::now();
        let open = |create_new: bool| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(create_new)
                .create(!create_new)
                .truncate(false)
                .open(&path)
        };
        let (mut file, mut created) = match open(true) {
            Ok(f) => (f, true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                (open(false).map_err(io_err)?, false)
            }
            Err(e) => return Err(io_err(e)),
        };
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(mut locked) => {
                    // Nobody held it before: we created the file, and it is still empty
                    // (every holder writes its note into it).
                    let unused = locked.metadata().is_ok_and(|m| m.len() == 0);
                    let uncontended_create = created && unused;
                    // The note only tells a waiting run who holds the lock (and the
                    // kernel's lock table is checked against it): a failure to write it
                    // does not stop this run.
                    let note = format!("pid {}: {what}\n", std::process::id());
                    let written = locked
                        .set_len(0)
                        .and_then(|()| locked.rewind())
                        .and_then(|()| locked.write_all(note.as_bytes()));
                    if let Err(e) = written {
                        log::debug!("{}: cannot write the holder's note: {e}", path.display());
                    }
                    return Ok(Lock {
                        _file: locked,
                        uncontended_create,
                    });
                }
                Err((f, nix::errno::Errno::EWOULDBLOCK)) => {
                    file = f;
                    created = false;
                    if start.elapsed() >= timeout {
                        return Err(LockError::Busy {
                            path: path.clone(),
                            holder: holder(root, &mut file),
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

/// Who holds the lock on `file`: the note the holder wrote (`pid 123: apply`) when the
/// kernel's lock table (`/proc/locks`, proc(5)) confirms that pid holds a lock on this
/// inode; else the pid the table names, with its `comm`; else, without a readable table,
/// the note as written. A note whose pid holds no lock (an earlier, finished run's) is
/// never shown as the holder.
fn holder(root: &Root, file: &mut File) -> String {
    let mut note = String::new();
    let _ = file.rewind();
    let _ = file.take(256).read_to_string(&mut note);
    let note = crate::text::escape(note.trim());
    let note_pid: Option<u32> = note
        .strip_prefix("pid ")
        .and_then(|r| r.split(':').next())
        .and_then(|p| p.parse().ok());
    let Ok(table) = fs::read_to_string(root.path("/proc/locks")) else {
        return if note.is_empty() {
            "holder unknown".into()
        } else {
            note
        };
    };
    let Ok(meta) = file.metadata() else {
        return "holder unknown".into();
    };
    let pids = lock_holders(&table, meta.dev(), meta.ino());
    match (note_pid, pids.first()) {
        (Some(p), _) if pids.contains(&p) => note,
        (_, Some(&p)) => {
            let comm = fs::read_to_string(root.path(format!("/proc/{p}/comm")))
                .map(|c| crate::text::escape(c.trim()))
                .unwrap_or_else(|_| "?".into());
            format!("pid {p}: {comm}")
        }
        (_, None) => "holder unknown".into(),
    }
}

/// The pids holding a lock on the file with device `dev` and inode `ino`, from the text
/// of `/proc/locks`: `1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF` (device as hex
/// major:minor, `lock_get_status` in fs/locks.c). Pending requests (`->`) are not holders.
fn lock_holders(table: &str, dev: u64, ino: u64) -> Vec<u32> {
    let want = format!(
        "{:02x}:{:02x}:{ino}",
        nix::sys::stat::major(dev),
        nix::sys::stat::minor(dev)
    );
    table
        .lines()
        .filter(|l| !l.contains("->"))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let at = f.iter().position(|x| *x == want)?;
            f.get(at.checked_sub(1)?)?.parse().ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn lock_table_lines_name_the_holders() {
        let table = "1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF\n\
                     1: -> FLOCK  ADVISORY  WRITE 4343 fd:01:1234 0 EOF\n\
                     2: POSIX  ADVISORY  WRITE 99 08:02:1234 0 EOF\n";
        let dev = nix::sys::stat::makedev(0xfd, 0x01);
        assert_eq!(lock_holders(table, dev, 1234), vec![4242]);
        assert!(lock_holders(table, dev, 1235).is_empty());
    }
}
