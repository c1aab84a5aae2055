//! Reading sysfs attributes under a [`Root`]: small files read to end of file, symlinks
//! resolved to their basename, hex values parsed. The only place that opens sysfs
//! attributes for reading; [`crate::host::snapshot`] builds the host snapshot on it and
//! [`crate::apply`] verifies binds with it.
//!
//! Layout: `Documentation/ABI/testing/sysfs-bus-pci` (`/sys/bus/pci/devices/<bdf>/{vendor,
//! device,subsystem_vendor,subsystem_device,class,config,driver,driver_override,boot_vga,
//! uevent}`).

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::pci::PciAddress;
use crate::root::Root;

/// A sysfs read that failed, with the file it was reading.
#[derive(Debug, Error)]
#[error("cannot read {}: {source}", path.display())]
pub struct ReadError {
    /// The file or directory (under the root).
    pub path: PathBuf,
    /// The underlying error (its errno).
    #[source]
    pub source: io::Error,
}

/// A closure turning an `io::Error` on `path` into a [`ReadError`].
pub fn read_err(path: &Path) -> impl FnOnce(io::Error) -> ReadError + '_ {
    move |source| ReadError {
        path: path.to_path_buf(),
        source,
    }
}

/// Names in a directory, sorted (`.` and `..` excluded).
///
/// Errors: [`ReadError`] naming the directory.
pub fn list_dir(dir: &Path) -> Result<Vec<String>, ReadError> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(read_err(dir))? {
        let entry = entry.map_err(read_err(dir))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// Read a small sysfs attribute: open, read until end of file, close. Unlike
/// `fs::read_to_string` no `statx` for a size hint (sysfs reports 4096 for every file):
/// the syscalls per attribute are what a snapshot of thousands of devices costs.
///
/// Errors: the `io::Error` of the open or read; `InvalidData` for non-UTF-8 content.
pub fn read_small(path: &Path) -> io::Result<String> {
    let mut f = fs::File::open(path)?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    loop {
        let n = f.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// An attribute's content without surrounding whitespace.
///
/// Errors: [`ReadError`] naming the file.
pub fn read_attr(path: &Path) -> Result<String, ReadError> {
    read_small(path)
        .map(|s| s.trim().to_string())
        .map_err(read_err(path))
}

/// Parse a hex attribute value (`0x10de` or `10de`) read from `path`.
///
/// Errors: [`ReadError`] with `InvalidData` naming the file.
pub fn parse_hex(path: &Path, s: &str) -> Result<u32, ReadError> {
    u32::from_str_radix(s.trim_start_matches("0x"), 16).map_err(|_| ReadError {
        path: path.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidData, format!("not hex: {s:?}")),
    })
}

/// [`read_attr`] then [`parse_hex`].
///
/// Errors: [`ReadError`] naming the file.
pub fn read_hex(path: &Path) -> Result<u32, ReadError> {
    let s = read_attr(path)?;
    parse_hex(path, &s)
}

/// Basename of a symlink's target, or `None` when the link does not exist.
///
/// Errors: [`ReadError`] for any other `readlink` failure.
pub fn link_name(path: &Path) -> Result<Option<String>, ReadError> {
    match fs::read_link(path) {
        Ok(t) => Ok(t.file_name().map(|n| n.to_string_lossy().into_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(read_err(path)(e)),
    }
}

/// The driver a device is bound to now (basename of `/sys/bus/pci/devices/<bdf>/driver`).
///
/// Errors: [`ReadError`] with `NotFound` when the device itself is gone.
pub fn current_driver(root: &Root, addr: PciAddress) -> Result<Option<String>, ReadError> {
    let dir = root.device_dir(addr);
    if !dir.exists() {
        return Err(read_err(&dir)(io::Error::from(nix::errno::Errno::ENOENT)));
    }
    link_name(&dir.join("driver"))
}

/// The content of `driver_override`, `None` for `(null)` or empty
/// (`Documentation/ABI/testing/sysfs-bus-pci`).
///
/// Errors: [`ReadError`] naming the file (a missing file reads as `None`).
pub fn read_override(root: &Root, addr: PciAddress) -> Result<Option<String>, ReadError> {
    let path = root.device_dir(addr).join("driver_override");
    match read_small(&path) {
        Ok(s) => {
            let s = s.trim();
            Ok((!s.is_empty() && s != "(null)").then(|| s.to_string()))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(read_err(&path)(e)),
    }
}
