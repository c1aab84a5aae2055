//! What the host is using beneath each PCI device: block devices with a mounted
//! filesystem, active swap or holders (dm, md, LVM), and network interfaces that are up
//! with an address, a route, or a master/upper device. Read-only, from sysfs and /proc
//! under the [`Root`], so `--root` trees and the running host are read alike.
//!
//! Sources: `/sys/class/block/*` and `/sys/class/net/*` (links into `/sys/devices`, whose
//! path names every PCI device above the block or net device), `<blk>/holders/`
//! (`Documentation/ABI/stable/sysfs-block`), `<blk>/multipath/` (NVMe native multipath),
//! `/proc/self/mountinfo` (`Documentation/filesystems/proc.rst`), `/proc/swaps`,
//! `/proc/net/route`, `/proc/net/if_inet6`, `/proc/net/ipv6_route`, and
//! `/sys/class/net/<if>/flags` (IFF_UP = 0x1).

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use crate::pci::PciAddress;
use crate::root::Root;

/// One way the host uses a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Use {
    /// A block device beneath it holds a mounted filesystem.
    Mounted {
        /// Block device name (`vda1`).
        dev: String,
        /// Where it is mounted.
        mountpoint: String,
    },
    /// A block device beneath it is active swap.
    Swap {
        /// Block device name.
        dev: String,
    },
    /// A block device beneath it is held by another block device (dm, md, LVM, bcache).
    Held {
        /// Block device name.
        dev: String,
        /// The holders (`dm-0`, `md127`).
        holders: Vec<String>,
    },
    /// A network interface beneath it is up and in use.
    NetUp {
        /// Interface name.
        iface: String,
        /// What makes it in use: addresses, routes, a master or an upper device.
        why: String,
    },
}

impl fmt::Display for Use {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Use::Mounted { dev, mountpoint } => write!(
                f,
                "has /dev/{dev} mounted on {mountpoint} (unmount it first)"
            ),
            Use::Swap { dev } => write!(f, "has /dev/{dev} in use as swap (swapoff it first)"),
            Use::Held { dev, holders } => write!(
                f,
                "has /dev/{dev} held by {} (a dm/md/LVM device is built on it; stop that first)",
                holders.join(", ")
            ),
            Use::NetUp { iface, why } => write!(
                f,
                "has network interface {iface} up with {why} (move its configuration off and \
                 `ip link set {iface} down` first)"
            ),
        }
    }
}

/// Host use per PCI device, attributed to every PCI device on the sysfs path above the
/// block or network device.
pub type Uses = BTreeMap<PciAddress, Vec<Use>>;

fn read_text(root: &Root, abs: &str) -> String {
    fs::read_to_string(root.path(abs)).unwrap_or_default()
}

/// The PCI devices on a sysfs device path (`.../0000:00:1c.0/0000:02:00.0/nvme/...`).
fn pci_ancestors(path: &Path) -> Vec<PciAddress> {
    path.components()
        .filter_map(|c| c.as_os_str().to_str()?.parse().ok())
        .collect()
}

/// Where a class entry (`/sys/class/net/eth0`, a link such as
/// `../../devices/pci0000:00/0000:00:1c.0/0000:01:00.0/net/eth0`) points: one `readlink`
/// and a lexical join, not `canonicalize` (which `readlink`s every component). The class
/// directories are real directories, so dropping `..` lexically is exact. Anything that
/// is not such a link is canonicalized.
fn resolve(link: &Path) -> Option<PathBuf> {
    let Ok(target) = fs::read_link(link) else {
        return fs::canonicalize(link).ok();
    };
    let mut out = PathBuf::new();
    for c in link.parent()?.join(target).components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    Some(out)
}

/// [`pci_ancestors`] of a canonical path, ignoring the root's own components.
fn owners_under(root: &Root, canon: &Path) -> Vec<PciAddress> {
    pci_ancestors(canon.strip_prefix(root.base()).unwrap_or(canon))
}

fn list(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// PCI devices beneath which a block device lives. NVMe multipath heads live under
/// `/sys/devices/virtual`; their paths (`multipath/*`, also on the head of a partition)
/// lead to the controllers' PCI devices.
fn block_owners(root: &Root, canon: &Path) -> Vec<PciAddress> {
    let mut owners = owners_under(root, canon);
    if owners.is_empty() {
        for dir in [Some(canon), canon.parent()].into_iter().flatten() {
            for p in list(&dir.join("multipath")) {
                if let Some(c) = resolve(&dir.join("multipath").join(&p)) {
                    owners.extend(owners_under(root, &c));
                }
            }
        }
    }
    owners.sort();
    owners.dedup();
    owners
}

/// Read the host uses under `root` beneath the PCI devices for which `relevant` holds
/// (the members a plan would write: the guards judge nothing else), so that a host with
/// many disks and interfaces pays only for the ones beneath those devices. Unreadable or
/// absent sources count as "no use": a host without /proc/swaps has no swap.
pub fn read(root: &Root, relevant: &dyn Fn(PciAddress) -> bool) -> Uses {
    let mut uses = Uses::new();
    read_block(root, relevant, &mut uses);
    read_net(root, relevant, &mut uses);
    uses
}

/// Record `u` for every device of `owners`, once.
fn add(uses: &mut Uses, owners: &[PciAddress], u: Use) {
    for o in owners {
        let v = uses.entry(*o).or_default();
        if !v.contains(&u) {
            v.push(u.clone());
        }
    }
}

/// `(major:minor, mount point, source)` of every mount in `/proc/self/mountinfo`.
fn mounts(root: &Root) -> Vec<(String, String, String)> {
    read_text(root, "/proc/self/mountinfo")
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-")?;
            Some((
                f.get(2)?.to_string(),
                f.get(4)?.to_string(),
                f.get(sep + 2)?.to_string(),
            ))
        })
        .collect()
}

/// Block devices: mounted, swap, or held.
fn read_block(root: &Root, relevant: &dyn Fn(PciAddress) -> bool, uses: &mut Uses) {
    let mounts = mounts(root);
    let swaps: Vec<String> = read_text(root, "/proc/swaps")
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    let class_block = root.path("/sys/class/block");
    for name in list(&class_block) {
        let Some(canon) = resolve(&class_block.join(&name)) else {
            continue;
        };
        let owners = block_owners(root, &canon);
        if !owners.iter().any(|o| relevant(*o)) {
            continue;
        }
        let devnum = fs::read_to_string(canon.join("dev"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let node = format!("/dev/{name}");
        for (num, mountpoint, source) in &mounts {
            if (!devnum.is_empty() && *num == devnum) || *source == node {
                let u = Use::Mounted {
                    dev: name.clone(),
                    mountpoint: mountpoint.clone(),
                };
                add(uses, &owners, u);
            }
        }
        if swaps.contains(&node) {
            add(uses, &owners, Use::Swap { dev: name.clone() });
        }
        let holders = list(&canon.join("holders"));
        if !holders.is_empty() {
            let u = Use::Held {
                dev: name.clone(),
                holders,
            };
            add(uses, &owners, u);
        }
    }
}

/// The routing and address tables of `/proc/net` the network guard reads.
struct NetTables {
    routes4: String,
    addrs6: String,
    routes6: String,
}

impl NetTables {
    /// Why `iface` (up) is in use: IPv4 routes, global IPv6 addresses or routes, a master
    /// or an upper device; empty when it is not.
    fn why(&self, link: &Path, iface: &str) -> Vec<String> {
        let mut why = Vec::new();
        if self
            .routes4
            .lines()
            .skip(1)
            .any(|l| l.split_whitespace().next() == Some(iface))
        {
            why.push("IPv4 routes".to_string());
        }
        // if_inet6: address, index, prefix length, scope, flags, name. Scope 0x20 is
        // link-local, which every up interface gets by itself: not a sign of use.
        if self.addrs6.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() == 6 && f[5] == iface && f[3] != "20"
        }) {
            why.push("IPv6 addresses".to_string());
        }
        // ipv6_route: dest, plen, src, plen, next hop, metric, refcnt, use, flags, name.
        if self.routes6.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() == 10 && f[9] == iface && !f[0].starts_with("fe80") && !f[0].starts_with("ff")
        }) {
            why.push("IPv6 routes".to_string());
        }
        if let Ok(m) = fs::read_link(link.join("master")) {
            let m = m.file_name().map(|n| n.to_string_lossy().into_owned());
            why.push(format!("master {}", m.unwrap_or_default()));
        }
        for e in list(link) {
            if let Some(u) = e.strip_prefix("upper_") {
                why.push(format!("upper device {u}"));
            }
        }
        why
    }
}

/// Network interfaces that are up (IFF_UP) and in use.
fn read_net(root: &Root, relevant: &dyn Fn(PciAddress) -> bool, uses: &mut Uses) {
    let tables = NetTables {
        routes4: read_text(root, "/proc/net/route"),
        addrs6: read_text(root, "/proc/net/if_inet6"),
        routes6: read_text(root, "/proc/net/ipv6_route"),
    };
    let class_net = root.path("/sys/class/net");
    for iface in list(&class_net) {
        let link = class_net.join(&iface);
        let Some(canon) = resolve(&link) else {
            continue;
        };
        let owners = owners_under(root, &canon);
        if !owners.iter().any(|o| relevant(*o)) {
            continue;
        }
        let flags = fs::read_to_string(link.join("flags")).unwrap_or_default();
        let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).unwrap_or(0);
        if flags & 0x1 == 0 {
            continue; // not IFF_UP
        }
        let why = tables.why(&link, &iface);
        if !why.is_empty() {
            let u = Use::NetUp {
                iface: iface.clone(),
                why: why.join(", "),
            };
            add(uses, &owners, u);
        }
    }
}
