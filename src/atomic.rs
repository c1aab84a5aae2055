//! The one way vfio-bind writes a file of its own (the state file, the udev rules):
//! atomically and durably. The new content goes to a temporary file in the same directory
//! (tempfile's `NamedTempFile`, created `O_EXCL` with a random name, so no stale or planted
//! `*.tmp` is ever followed or reused), is fsynced, renamed over the target, and the
//! directory is fsynced: a crash or power loss leaves the old file or the new one, never a
//! torn or empty one.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// A failed atomic write: the file (or directory) the failing step worked on, and the
/// errno.
#[derive(Debug, Error)]
#[error("cannot write {}: {source}", path.display())]
pub struct WriteError {
    /// The file or directory of the failing step (the temporary file while writing it).
    pub path: PathBuf,
    /// The underlying error, with its errno.
    #[source]
    pub source: io::Error,
}

fn at(path: &Path) -> impl FnOnce(io::Error) -> WriteError + '_ {
    move |source| WriteError {
        path: path.to_path_buf(),
        source,
    }
}

/// Replace `path` with `contents`, with permission bits `mode` (such as `0o644`):
/// temporary file in the same directory, write, fchmod, fsync, rename, fsync of the
/// directory. Creates the directory (0755) when it is missing.
///
/// Errors: [`WriteError`] naming the directory, the temporary file or the target.
pub fn write(path: &Path, contents: &[u8], mode: u32) -> Result<(), WriteError> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    fs::create_dir_all(dir).map_err(at(dir))?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(at(dir))?;
    let tmp_path = tmp.path().to_path_buf();
    tmp.write_all(contents).map_err(at(&tmp_path))?;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))
        .map_err(at(&tmp_path))?;
    tmp.as_file().sync_all().map_err(at(&tmp_path))?;
    tmp.persist(path).map_err(|e| WriteError {
        path: path.to_path_buf(),
        source: e.error,
    })?;
    sync_dir(dir)
}

/// Remove `path` if it exists, and fsync its directory.
///
/// Errors: [`WriteError`] naming the file or directory.
pub fn remove(path: &Path) -> Result<(), WriteError> {
    match fs::remove_file(path) {
        Ok(()) => sync_dir(path.parent().unwrap_or(Path::new("/"))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(at(path)(e)),
    }
}

fn sync_dir(dir: &Path) -> Result<(), WriteError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(at(dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn replaces_with_mode_and_leaves_no_temporary() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/state.toml");
        write(&p, b"one\n", 0o644).unwrap();
        write(&p, b"two\n", 0o600).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "two\n");
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o7777, 0o600);
        let names: Vec<_> = fs::read_dir(p.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1);
        remove(&p).unwrap();
        remove(&p).unwrap();
        assert!(!p.exists());
    }

    #[test]
    fn a_planted_tmp_name_is_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.toml");
        // The old fixed temporary name, as a directory: no longer in the way.
        fs::create_dir(d.path().join("state.toml.tmp")).unwrap();
        write(&p, b"x", 0o644).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "x");
    }
}
