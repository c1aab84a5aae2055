//! Ownership of `/dev/vfio/<group>`: wait for the kernel (devtmpfs) or udev to create the
//! node after the group's first member is on a vfio driver, then chmod and chown it to the
//! resolved ownership ([`crate::owner`]).

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::apply::error::ApplyError;
use crate::apply::options::Options;
use crate::owner::NodeOwner;
use crate::root::Root;

/// Wait up to `opts.node_timeout` for `/dev/vfio/<group>` and give it the ownership
/// asked for. Returns whether anything was changed.
///
/// Errors: [`ApplyError::Node`] naming the node: it did not appear, or stat, chmod or
/// chown failed (with the errno).
pub fn set_node(
    root: &Root,
    group: u32,
    want: &NodeOwner,
    opts: &Options,
) -> Result<bool, ApplyError> {
    let path = root.vfio_node(group);
    let fail = |message: String| ApplyError::Node {
        group,
        path: path.clone(),
        message,
    };
    let start = Instant::now();
    let meta = loop {
        match fs::metadata(&path) {
            Ok(m) => break m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if start.elapsed() >= opts.node_timeout {
                    return Err(fail(format!(
                        "device node did not appear within {} ms (is udev or devtmpfs running?)",
                        opts.node_timeout.as_millis()
                    )));
                }
                sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(fail(format!("cannot stat: {e}"))),
        }
    };
    let mut changed = false;
    // chmod first, while root may still own the node (no CAP_FOWNER needed then).
    if let Some(mode) = want.mode {
        if meta.mode() & 0o7777 != mode {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                .map_err(|e| fail(format!("chmod {mode:04o} failed: {e}")))?;
            changed = true;
        }
    }
    let uid = want.uid.filter(|&u| u != meta.uid());
    let gid = want.gid.filter(|&g| g != meta.gid());
    if uid.is_some() || gid.is_some() {
        nix::unistd::chown(
            &path,
            uid.map(nix::unistd::Uid::from_raw),
            gid.map(nix::unistd::Gid::from_raw),
        )
        .map_err(|e| fail(format!("chown failed: {} ({e})", e.desc())))?;
        changed = true;
    }
    Ok(changed)
}
