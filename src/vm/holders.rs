//! Processes holding the device nodes of the devices about to be handed to a VM: the
//! DRM, sound, framebuffer and input nodes their host drivers created, and an NVIDIA
//! GPU's `/dev/nvidiaN`. Unbinding a driver whose node is open waits on, or races with,
//! the process holding it (an HDMI audio unbind hangs while PipeWire holds the card), so
//! `attach` waits until they let go, with a bound, and names them when they do not.
//!
//! The nodes are found exactly, without udev's `by-path` links (absent in an initramfs or
//! a container): every `dev` attribute (`major:minor`) beneath the device's sysfs
//! directory (`Documentation/ABI/testing/sysfs-dev`), named by the `DEVNAME` of the
//! `uevent` beside it; NVIDIA's proprietary driver creates no class device, so its minor
//! comes from `/proc/driver/nvidia/gpus/<bdf>/information` ("Device Minor"). Holders are
//! the open file descriptors under `/proc/<pid>/fd/` whose target is such a character
//! device (proc(5)).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::pci::PciAddress;
use crate::root::Root;

/// How deep beneath a device's sysfs directory `dev` attributes are looked for
/// (`drm/card0/dev` is 3, `sound/card0/controlC0/dev` 4; input devices sit deeper).
const DEPTH: usize = 7;

/// A character device node of a device: its number and its `/dev` name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// `major:minor` as `makedev` packs it (the `st_rdev` of the node).
    pub rdev: u64,
    /// `/dev/dri/card0`, `/dev/snd/controlC0`, ...
    pub name: String,
    /// The PCI device it belongs to.
    pub device: PciAddress,
}

/// A process holding a node open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Its process id.
    pub pid: u32,
    /// Its `comm` (proc(5)).
    pub comm: String,
    /// The node it holds.
    pub node: Node,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} ({}) holds {} of {}",
            self.pid,
            crate::text::escape(&self.comm),
            self.node.name,
            self.node.device
        )
    }
}

fn parse_dev(text: &str) -> Option<u64> {
    let (ma, mi) = text.trim().split_once(':')?;
    Some(nix::sys::stat::makedev(ma.parse().ok()?, mi.parse().ok()?))
}

fn walk(dir: &Path, depth: usize, device: PciAddress, out: &mut Vec<Node>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        // Symbolic links (driver, subsystem, device, iommu_group...) are never followed:
        // what lies beneath the device is in real directories.
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() && depth > 0 {
            walk(&e.path(), depth - 1, device, out);
        } else if t.is_file() && e.file_name() == "dev" {
            let Some(rdev) = fs::read_to_string(e.path())
                .ok()
                .as_deref()
                .and_then(parse_dev)
            else {
                continue;
            };
            let uevent = fs::read_to_string(dir.join("uevent")).unwrap_or_default();
            let name = uevent
                .lines()
                .find_map(|l| l.strip_prefix("DEVNAME="))
                .map(|n| format!("/dev/{n}"))
                .unwrap_or_else(|| {
                    let leaf = dir.file_name().unwrap_or_default().to_string_lossy();
                    format!("/dev/{leaf}")
                });
            out.push(Node { rdev, name, device });
        }
    }
}

/// The character device nodes of `devices` (PCI addresses, `dddd:bb:dd.f`).
pub fn nodes(root: &Root, devices: &[PciAddress]) -> Vec<Node> {
    let mut out = Vec::new();
    for &d in devices {
        walk(&root.device_dir(d), DEPTH, d, &mut out);
        let info = root.path(format!("/proc/driver/nvidia/gpus/{d}/information"));
        if let Ok(text) = fs::read_to_string(info) {
            let minor = text.lines().find_map(|l| {
                l.strip_prefix("Device Minor:")
                    .and_then(|m| m.trim().parse::<u64>().ok())
            });
            if let Some(m) = minor {
                out.push(Node {
                    rdev: nix::sys::stat::makedev(195, m),
                    name: format!("/dev/nvidia{m}"),
                    device: d,
                });
            }
        }
    }
    out
}

/// `/dev/vfio/<group>` as a node to look for holders of, when it exists and is a
/// character device.
pub fn vfio_group_node(root: &Root, group: u32, device: PciAddress) -> Option<Node> {
    let m = fs::metadata(root.vfio_node(group)).ok()?;
    m.file_type().is_char_device().then(|| Node {
        rdev: m.rdev(),
        name: format!("/dev/vfio/{group}"),
        device,
    })
}

/// Every node a VM (or any VFIO user) may hold of a group: `/dev/vfio/<group>` and the
/// members' own nodes, among them the per-device `vfio-dev/vfioN` of the iommufd cdev
/// interface (`Documentation/driver-api/vfio.rst`, "VFIO device cdev").
pub fn group_nodes(root: &Root, group: u32, members: &[PciAddress]) -> Vec<Node> {
    let first = members.first().copied().unwrap_or(PciAddress {
        domain: 0,
        bus: 0,
        device: 0,
        function: 0,
    });
    let mut out: Vec<Node> = vfio_group_node(root, group, first).into_iter().collect();
    out.extend(nodes(root, members));
    out
}

/// The processes (other than this one) holding any of `nodes` open now, by pid.
pub fn holders(root: &Root, nodes: &[Node]) -> Vec<Holder> {
    if nodes.is_empty() {
        return Vec::new();
    }
    let by_rdev: BTreeMap<u64, &Node> = nodes.iter().map(|n| (n.rdev, n)).collect();
    let me = std::process::id();
    let mut out = Vec::new();
    let Ok(procs) = fs::read_dir(root.path("/proc")) else {
        return out;
    };
    let mut pids: Vec<u32> = procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&p| p != me || !root.is_host())
        .collect();
    pids.sort_unstable();
    for pid in pids {
        let dir = root.path(format!("/proc/{pid}"));
        let Ok(fds) = fs::read_dir(dir.join("fd")) else {
            continue;
        };
        // Only descriptors whose target is under /dev are stat'ed: following every
        // descriptor would block on a file of a hung network or FUSE mount.
        let mut held: Vec<&Node> = fds
            .flatten()
            .filter(|fd| fs::read_link(fd.path()).is_ok_and(|t| t.starts_with("/dev/")))
            .filter_map(|fd| fs::metadata(fd.path()).ok())
            .filter(|m| m.file_type().is_char_device())
            .filter_map(|m| by_rdev.get(&m.rdev()).copied())
            .collect();
        held.dedup_by_key(|n| n.rdev);
        let comm = fs::read_to_string(dir.join("comm"))
            .map(|c| c.trim_end().to_string())
            .unwrap_or_default();
        for n in held {
            out.push(Holder {
                pid,
                comm: comm.clone(),
                node: n.clone(),
            });
        }
    }
    out
}

/// Wait until no process holds any of `nodes`, polling every 50 ms for at most
/// `timeout` (milliseconds on the command line, `--hold-timeout`).
///
/// Errors: the holders still there when the bound passed.
pub fn wait_released(root: &Root, nodes: &[Node], timeout: Duration) -> Result<(), Vec<Holder>> {
    let start = Instant::now();
    loop {
        let h = holders(root, nodes);
        if h.is_empty() {
            return Ok(());
        }
        if start.elapsed() >= timeout {
            return Err(h);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn nodes_beneath_a_device_and_their_holders_are_found() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(t.path());
        let a: PciAddress = "0000:00:02.1".parse().unwrap();
        let card = root.device_dir(a).join("sound/card0/controlC0");
        fs::create_dir_all(&card).unwrap();
        // /dev/null is 1:3 on every Linux host: a real character device to hold.
        fs::write(card.join("dev"), "1:3\n").unwrap();
        fs::write(
            card.join("uevent"),
            "MAJOR=1\nMINOR=3\nDEVNAME=snd/controlC0\n",
        )
        .unwrap();
        let n = nodes(&root, &[a]);
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].name, "/dev/snd/controlC0");
        assert!(holders(&root, &n).is_empty());
        let fd = root.path("/proc/4242/fd");
        fs::create_dir_all(&fd).unwrap();
        fs::write(root.path("/proc/4242/comm"), "pipewire\n").unwrap();
        symlink("/dev/null", fd.join("7")).unwrap();
        symlink("/etc/hostname", fd.join("8")).unwrap();
        let h = holders(&root, &n);
        assert_eq!(h.len(), 1);
        assert_eq!(
            h[0].to_string(),
            "pid 4242 (pipewire) holds /dev/snd/controlC0 of 0000:00:02.1"
        );
        let e = wait_released(&root, &n, Duration::from_millis(120)).unwrap_err();
        assert_eq!(e, h);
        fs::remove_file(fd.join("7")).unwrap();
        assert_eq!(wait_released(&root, &n, Duration::ZERO), Ok(()));
    }
}
