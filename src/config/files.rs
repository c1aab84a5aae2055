//! Stage 0: which files make the configuration, and their text. The main file
//! `/etc/vfio-bind.toml` (may be absent), then the drop-ins `/etc/vfio-bind.d/*.toml` in
//! lexical order of their names; or exactly one file given with `--config`.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::config::model::{ConfigError, DEFAULT_CONFIG, DEFAULT_DROPIN_DIR};
use crate::root::Root;

/// Which files to read.
#[derive(Debug, Clone)]
pub enum Source {
    /// `/etc/vfio-bind.toml` (may be absent) and `/etc/vfio-bind.d/*.toml` under the root.
    Default(Root),
    /// Exactly this file (must exist); no drop-ins.
    File(PathBuf),
}

/// The files of `source`, in merge order, each with its text.
///
/// Only regular files are read, opened with `O_NONBLOCK` and checked again with `fstat`
/// after the open, so a FIFO or a device node can never block a run (at boot, the whole
/// boot). A main file that is not a regular file is an error; a drop-in that is not one
/// (a directory, a FIFO, a dangling or looping link) is skipped with a warning naming it.
/// Drop-ins whose names start with a dot are ignored, as in systemd's drop-in directories.
///
/// Errors: [`ConfigError::Read`] for a `--config` file that does not exist, a main file
/// that cannot be examined (a dangling link, an unreadable `/etc`) or is not a regular
/// file, or any file that cannot be read.
pub fn read(source: &Source) -> Result<Vec<(PathBuf, String)>, ConfigError> {
    let mut out = Vec::new();
    match source {
        Source::File(p) => out.push((p.clone(), read_regular(p)?)),
        Source::Default(root) => {
            let main = root.path(DEFAULT_CONFIG);
            // Absent is "no config"; a dangling link or an unreadable /etc is an error.
            match fs::symlink_metadata(&main) {
                Ok(_) => out.push((main.clone(), read_regular(&main)?)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(ConfigError::Read { file: main, source }),
            }
            for p in dropins(&root.path(DEFAULT_DROPIN_DIR))? {
                match read_regular(&p) {
                    Ok(text) => out.push((p, text)),
                    // Not a regular file, a dangling link, a link loop: skipped. A file
                    // that is there but cannot be read (EACCES, EIO, not UTF-8) is an
                    // error: skipping it would release what it binds.
                    Err(ConfigError::Read { source, .. })
                        if source.kind() == io::ErrorKind::InvalidInput
                            || source.kind() == io::ErrorKind::NotFound
                            || source.raw_os_error() == Some(nix::libc::ELOOP) =>
                    {
                        log::warn!(
                            "{}: skipped: {}",
                            crate::text::escape(&p.display().to_string()),
                            source
                        );
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(out)
}

/// The text of `path` if it is a regular file (symlinks followed), without ever
/// blocking on the open or the read.
fn read_regular(path: &Path) -> Result<String, ConfigError> {
    let fail = |source: io::Error| ConfigError::Read {
        file: path.to_path_buf(),
        source,
    };
    let not_regular = |t: fs::FileType| {
        let what = if t.is_dir() {
            "a directory"
        } else if t.is_fifo() {
            "a FIFO"
        } else if t.is_socket() {
            "a socket"
        } else {
            "a device node"
        };
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("is {what}, not a regular file"),
        )
    };
    let meta = fs::metadata(path).map_err(fail)?;
    if !meta.is_file() {
        return Err(fail(not_regular(meta.file_type())));
    }
    let mut f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)
        .map_err(fail)?;
    let meta = f.metadata().map_err(fail)?;
    if !meta.is_file() {
        return Err(fail(not_regular(meta.file_type())));
    }
    let mut text = String::new();
    f.read_to_string(&mut text).map_err(fail)?;
    Ok(text)
}

/// Drop-in files in `dir` (`*.toml`, not starting with a dot), in lexical order of their
/// names. Each is checked by [`read_regular`] when read.
fn dropins(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let pattern = format!("{}/*.toml", glob::Pattern::escape(&dir.to_string_lossy()));
    let options = glob::MatchOptions {
        require_literal_leading_dot: true,
        ..glob::MatchOptions::new()
    };
    let mut files = Vec::new();
    let paths = glob::glob_with(&pattern, options).map_err(|e| ConfigError::File {
        file: dir.to_path_buf(),
        message: e.to_string(),
    })?;
    for p in paths {
        let p = p.map_err(|e| ConfigError::Read {
            file: e.path().to_path_buf(),
            source: io::Error::new(e.error().kind(), e.error().to_string()),
        })?;
        files.push(p);
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}
