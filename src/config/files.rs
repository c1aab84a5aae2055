//! Stage 0: which files make the configuration, and their text. The main file
//! `/etc/vfio-bind.toml` (may be absent), then the drop-ins `/etc/vfio-bind.d/*.toml` in
//! lexical order of their names; or exactly one file given with `--config`.

use std::fs;
use std::io;
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
/// Errors: [`ConfigError::Read`] for a `--config` file that does not exist, a main file
/// that cannot be examined (a dangling link, an unreadable `/etc`), or any file that
/// cannot be read.
pub fn read(source: &Source) -> Result<Vec<(PathBuf, String)>, ConfigError> {
    let files = match source {
        Source::File(p) => {
            if !p.exists() {
                return Err(ConfigError::Read {
                    file: p.clone(),
                    source: io::Error::from(io::ErrorKind::NotFound),
                });
            }
            vec![p.clone()]
        }
        Source::Default(root) => {
            let mut files = Vec::new();
            let main = root.path(DEFAULT_CONFIG);
            // A dangling link or an unreadable /etc is an error, not "no config".
            match fs::symlink_metadata(&main) {
                Ok(_) => files.push(main),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(ConfigError::Read { file: main, source }),
            }
            files.extend(dropins(&root.path(DEFAULT_DROPIN_DIR))?);
            files
        }
    };
    files
        .into_iter()
        .map(|file| match fs::read_to_string(&file) {
            Ok(text) => Ok((file, text)),
            Err(source) => Err(ConfigError::Read { file, source }),
        })
        .collect()
}

/// Drop-in files in `dir` (`*.toml`), in lexical order of their names.
fn dropins(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let pattern = format!("{}/*.toml", glob::Pattern::escape(&dir.to_string_lossy()));
    let mut files = Vec::new();
    let paths = glob::glob(&pattern).map_err(|e| ConfigError::File {
        file: dir.to_path_buf(),
        message: e.to_string(),
    })?;
    for p in paths {
        let p = p.map_err(|e| ConfigError::Read {
            file: e.path().to_path_buf(),
            source: io::Error::new(e.error().kind(), e.error().to_string()),
        })?;
        if p.is_file() {
            files.push(p);
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}
