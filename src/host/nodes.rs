//! `/dev/vfio/<group>` as it is now (`Documentation/driver-api/vfio.rst`: the group's
//! character device, created by the kernel through devtmpfs or udev): owner, group and
//! permission bits, for the groups a plan names. Read-only.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;

use crate::root::Root;

/// A node's owner, group and permission bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeState {
    /// Owner uid.
    pub uid: u32,
    /// Group gid.
    pub gid: u32,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
}

/// Each group's node, `None` when absent (or unreadable).
pub type Nodes = BTreeMap<u32, Option<NodeState>>;

/// Stat `/dev/vfio/<group>` for each of `groups`.
pub fn read(root: &Root, groups: impl IntoIterator<Item = u32>) -> Nodes {
    groups
        .into_iter()
        .map(|g| {
            let n = fs::metadata(root.vfio_node(g)).ok().map(|m| NodeState {
                uid: m.uid(),
                gid: m.gid(),
                mode: m.mode() & 0o7777,
            });
            (g, n)
        })
        .collect()
}
