//! The run lock `/run/vfio-bind/lock`: an exclusive `flock(2)` that serializes every run
//! that writes (apply, release), with the holder's pid and command written into the file
//! so a waiting run can say who holds it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::PathBuf;
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use thiserror::Error;

use crate::root::Root;
use crate::state::STATE_DIR;

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
}

impl Lock {
    /// Take the lock, waiting at most `timeout` (polled every 50 ms).
    ///
    /// Errors: [`LockError::Busy`] naming the holder when the wait runs out;
    /// [`LockError::Io`] when the lock file cannot be created or locked.
    pub fn acquire(root: &Root, what: &str, timeout: Duration) -> Result<Lock, LockError> {
        let dir = root.path(STATE_DIR);
        let path = dir.join("lock");
        let io_err = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(&dir).map_err(|source| LockError::Io {
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
                        return Err(LockError::Busy {
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
