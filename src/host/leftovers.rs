//! What the VFIO guides leave on a host, found with file and line: the modprobe
//! configuration (`options vfio-pci ids=…`, `softdep … pre: vfio-pci`, `blacklist …`,
//! `disable_vga=1`; modprobe.d(5)), module lists (`/etc/modules`, modules-load.d(5),
//! `/etc/initramfs-tools/modules`), and hand-made scripts and units that write
//! `driver_override`, `new_id` or `unbind`, call `virsh nodedev-detach`, or
//! `chmod 666 /dev/vfio/*`. Read-only; `doctor` judges them against the config and the
//! running kernel, `import` turns them into config entries.
//!
//! Scripts looked at: `/etc/systemd/system/*.service` and the absolute programs their
//! `ExecStart*=` lines run, `/usr/local/bin/*`, `/usr/local/sbin/*`, `/etc/rc.local`,
//! `/etc/initramfs-tools/scripts/{init-top,init-premount}/*`, `/etc/libvirt/hooks/qemu`
//! and `/etc/libvirt/hooks/qemu.d/**` (vfio-bind's own hook left out). A file over
//! [`MAX_BYTES`] or holding a NUL byte (a binary) is skipped.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::pci::{PciAddress, PciId};
use crate::root::Root;

/// The most of one file read.
pub const MAX_BYTES: u64 = 1 << 20;

/// What a leftover line does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `options vfio-pci ids=…` (or `vfio_pci`): binds every device with these IDs.
    VfioIds(Vec<PciId>),
    /// `softdep MODULE pre: vfio-pci`.
    Softdep(String),
    /// `blacklist MODULE`.
    Blacklist(String),
    /// `disable_vga=1` in the options of vfio-pci.
    DisableVga,
    /// A module named in a list of modules to load.
    Load(String),
    /// A script that binds by hand (`driver_override`, `new_id`, `unbind`,
    /// `nodedev-detach`): the PCI addresses and IDs it names (the whole file's: guides
    /// set them in variables first).
    Writes {
        /// `driver_override`, `new_id`, `unbind` or `nodedev-detach`: the first found.
        what: &'static str,
        /// The addresses named in the file.
        addresses: Vec<PciAddress>,
        /// The IDs named in the file (`10de 1c03` for new_id, `10de:1c03`).
        ids: Vec<PciId>,
    },
    /// `chmod 666 /dev/vfio/…` (or `a+rw`, `o+rw`): every user may open every group.
    WorldWritable,
}

/// One leftover: where it is and what it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    /// The file, as on the host (not under the root).
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// What it does.
    pub kind: Kind,
}

impl Leftover {
    /// `file:line`.
    pub fn at(&self) -> String {
        format!("{}:{}", self.file.display(), self.line)
    }
}

/// A text file's contents (at most [`MAX_BYTES`]; `None` for binaries and unreadable files).
fn text(path: &Path) -> Option<String> {
    let mut buf = Vec::new();
    fs::File::open(path)
        .ok()?
        .take(MAX_BYTES)
        .read_to_end(&mut buf)
        .ok()?;
    if buf.contains(&0) {
        return None;
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// Regular files in `dir` (under the root) whose names end in `suffix`, sorted.
fn files_in(root: &Root, dir: &str, suffix: &str) -> Vec<String> {
    let Ok(rd) = fs::read_dir(root.path(dir)) else {
        return Vec::new();
    };
    let mut out: Vec<String> = rd
        .flatten()
        .filter(|e| fs::metadata(e.path()).is_ok_and(|m| m.is_file()))
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| n.ends_with(suffix) && !n.starts_with('.'))
        .map(|n| format!("{dir}/{n}"))
        .collect();
    out.sort();
    out
}

/// The modprobe.d lines of one file.
fn modprobe(file: &str, src: &str, out: &mut Vec<Leftover>) {
    for (i, l) in src.lines().enumerate() {
        let words: Vec<&str> = l
            .split('#')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let at = |kind| Leftover {
            file: file.into(),
            line: i + 1,
            kind,
        };
        match words.as_slice() {
            ["options", m, opts @ ..] if m.replace('_', "-") == "vfio-pci" => {
                for o in opts {
                    if let Some(v) = o.strip_prefix("ids=") {
                        let ids = v
                            .split(',')
                            .filter_map(|id| {
                                let mut p = id.split(':');
                                format!("{}:{}", p.next()?, p.next()?).parse().ok()
                            })
                            .collect();
                        out.push(at(Kind::VfioIds(ids)));
                    } else if *o == "disable_vga=1" || *o == "disable_vga=Y" {
                        out.push(at(Kind::DisableVga));
                    }
                }
            }
            ["softdep", m, rest @ ..] if rest.iter().any(|w| w.replace('_', "-") == "vfio-pci") => {
                out.push(at(Kind::Softdep(m.to_string())));
            }
            ["blacklist", m] => out.push(at(Kind::Blacklist(m.to_string()))),
            _ => {}
        }
    }
}

/// The module names of a list of modules to load (one a line, `#` comments; in
/// `/etc/initramfs-tools/modules` and `/etc/modules` arguments may follow the name).
fn load_list(file: &str, src: &str, out: &mut Vec<Leftover>) {
    for (i, l) in src.lines().enumerate() {
        let l = l.split(['#', ';']).next().unwrap_or("").trim();
        let mut words = l.split_whitespace();
        let Some(m) = words.next() else { continue };
        out.push(Leftover {
            file: file.into(),
            line: i + 1,
            kind: Kind::Load(m.to_string()),
        });
        // `vfio-pci ids=…` (the Proxmox and Ubuntu guides' form in /etc/modules and
        // /etc/initramfs-tools/modules): the same as the modprobe.d option.
        if m.replace('_', "-") == "vfio-pci" {
            let opts: Vec<&str> = words.collect();
            modprobe(
                file,
                &format!("{}options vfio-pci {}", "\n".repeat(i), opts.join(" ")),
                out,
            );
        }
    }
}

/// PCI addresses in `line`: `dddd:bb:dd.f` or `bb:dd.f`, and libvirt's `pci_dddd_bb_dd_f`.
pub fn addresses(line: &str) -> Vec<PciAddress> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("pci_") {
        let tail = &rest[at + 4..];
        let token: String = tail
            .chars()
            .take_while(|c| c.is_ascii_hexdigit() || *c == '_')
            .collect();
        if let [d, b, s, f] = token.split('_').collect::<Vec<_>>()[..] {
            out.extend(format!("{d}:{b}:{s}.{f}").parse::<PciAddress>().ok());
        }
        rest = &tail[token.len()..];
    }
    for w in line.split(|c: char| !(c.is_ascii_hexdigit() || c == ':' || c == '.')) {
        let w = w.trim_matches(|c| c == '.' || c == ':');
        if w.contains('.') && w.contains(':') {
            out.extend(w.parse::<PciAddress>().ok());
        }
    }
    out
}

/// Vendor:device IDs in `line`: `10de:1c03`, or `10de 1c03` (new_id's format).
pub fn ids(line: &str) -> Vec<PciId> {
    let words: Vec<&str> = line
        .split(|c: char| !(c.is_ascii_hexdigit() || c == ':'))
        .filter(|w| !w.is_empty())
        .collect();
    let hex4 = |w: &str| w.len() == 4 && w.bytes().all(|b| b.is_ascii_hexdigit());
    let mut out = Vec::new();
    for (i, w) in words.iter().enumerate() {
        if let Some((v, d)) = w.split_once(':') {
            if hex4(v) && hex4(d) {
                out.extend(w.parse::<PciId>().ok());
            }
        } else if line.contains("new_id") && hex4(w) && words.get(i + 1).is_some_and(|n| hex4(n)) {
            out.extend(format!("{w}:{}", words[i + 1]).parse::<PciId>().ok());
        }
    }
    out
}

/// What a script does by hand: its binding writes and chmods.
fn script(file: &str, src: &str, out: &mut Vec<Leftover>) {
    const WRITES: [&str; 4] = ["driver_override", "new_id", "/unbind", "nodedev-detach"];
    let mut first = None;
    let mut addrs = Vec::new();
    let mut found_ids = Vec::new();
    for (i, l) in src.lines().enumerate() {
        let code = l.split('#').next().unwrap_or("");
        if first.is_none() {
            if let Some(w) = WRITES.iter().find(|w| code.contains(*w)) {
                first = Some((i + 1, w.trim_start_matches('/')));
            }
        }
        addrs.extend(addresses(code));
        found_ids.extend(ids(code));
        let chmod = code.contains("chmod")
            && code.contains("/dev/vfio")
            && ["666", "a+rw", "o+rw", "ugo+rw"]
                .iter()
                .any(|m| code.contains(m));
        if chmod {
            out.push(Leftover {
                file: file.into(),
                line: i + 1,
                kind: Kind::WorldWritable,
            });
        }
    }
    if let Some((line, what)) = first {
        addrs.sort();
        addrs.dedup();
        found_ids.sort();
        found_ids.dedup();
        out.push(Leftover {
            file: file.into(),
            line,
            kind: Kind::Writes {
                what: match what {
                    "driver_override" => "driver_override",
                    "new_id" => "new_id",
                    "unbind" => "unbind",
                    _ => "nodedev-detach",
                },
                addresses: addrs,
                ids: found_ids,
            },
        });
    }
}

/// Every script file looked at (host paths), sorted, each once.
fn scripts(root: &Root) -> Vec<String> {
    let mut files = Vec::new();
    for unit in files_in(root, "/etc/systemd/system", ".service") {
        files.push(unit.clone());
        let src = text(&root.path(&unit)).unwrap_or_default();
        for l in src.lines() {
            let Some((k, v)) = l.split_once('=') else {
                continue;
            };
            if !k.trim().starts_with("ExecStart") {
                continue;
            }
            let prog = v.trim().trim_start_matches(['-', '@', ':', '+', '!']);
            if let Some(p) = prog
                .split_whitespace()
                .next()
                .filter(|p| p.starts_with('/'))
            {
                files.push(p.to_string());
            }
        }
    }
    for d in [
        "/usr/local/bin",
        "/usr/local/sbin",
        "/etc/initramfs-tools/scripts/init-top",
        "/etc/initramfs-tools/scripts/init-premount",
    ] {
        files.extend(files_in(root, d, ""));
    }
    files.push("/etc/rc.local".into());
    files.push(crate::host::libvirt::HOOK_SCRIPT.into());
    let mut hooks = Vec::new();
    hook_tree(root, crate::host::libvirt::HOOK_DIR, 5, &mut hooks);
    files.extend(
        hooks
            .into_iter()
            .filter(|f| f != crate::host::libvirt::HOOK),
    );
    files.sort();
    files.dedup();
    files
}

fn hook_tree(root: &Root, dir: &str, depth: usize, out: &mut Vec<String>) {
    let Ok(rd) = fs::read_dir(root.path(dir)) else {
        return;
    };
    for e in rd.flatten() {
        let Some(n) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let p = format!("{dir}/{n}");
        match fs::metadata(e.path()) {
            Ok(m) if m.is_dir() && depth > 0 => hook_tree(root, &p, depth - 1, out),
            Ok(m) if m.is_file() => out.push(p),
            _ => {}
        }
    }
}

/// Every leftover on the host, in file order.
pub fn read(root: &Root) -> Vec<Leftover> {
    let mut out = Vec::new();
    let mut modprobe_files = vec!["/etc/modprobe.conf".to_string()];
    modprobe_files.extend(files_in(root, "/etc/modprobe.d", ".conf"));
    for f in modprobe_files {
        if let Some(src) = text(&root.path(&f)) {
            modprobe(&f, &src, &mut out);
        }
    }
    let mut lists = vec![
        "/etc/modules".to_string(),
        "/etc/initramfs-tools/modules".to_string(),
    ];
    lists.extend(files_in(root, "/etc/modules-load.d", ".conf"));
    // Debian's /etc/modules-load.d/modules.conf is a link to /etc/modules: read once.
    let mut seen = std::collections::BTreeSet::new();
    lists.retain(|f| seen.insert(fs::canonicalize(root.path(f)).unwrap_or_else(|_| root.path(f))));
    for f in lists {
        if let Some(src) = text(&root.path(&f)) {
            load_list(&f, &src, &mut out);
        }
    }
    for f in scripts(root) {
        if let Some(src) = text(&root.path(&f)) {
            script(&f, &src, &mut out);
        }
    }
    out
}

/// The running kernel's release (`/proc/sys/kernel/osrelease`), empty when unknown.
pub fn release(root: &Root) -> String {
    fs::read_to_string(root.path("/proc/sys/kernel/osrelease"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// True when the running kernel's module index (`/lib/modules/<release>/modules.dep`)
/// can be read.
pub fn module_index(root: &Root, release: &str) -> bool {
    !release.is_empty()
        && root
            .path(format!("/lib/modules/{release}/modules.dep"))
            .is_file()
}

/// Is module `name` (`-` and `_` alike) built into kernel `release` or available for it
/// (`modules.builtin`, `modules.dep` under `/lib/modules/<release>`; modules.dep(5))?
pub fn module_known(root: &Root, release: &str, name: &str) -> bool {
    let norm = |s: &str| s.replace('-', "_");
    let want = format!("/{}.ko", norm(name));
    ["modules.dep", "modules.builtin"].iter().any(|f| {
        fs::read_to_string(root.path(format!("/lib/modules/{release}/{f}")))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(':').next())
            .any(|p| {
                let p = norm(p);
                p.ends_with(&want) || p.contains(&format!("{want}."))
            })
    })
}

/// The devices of `candidates` that module `module` would drive: their `modalias`
/// matches one of its `alias pci:…` patterns in `/lib/modules/<release>/modules.alias`
/// (modules.alias is what modprobe matches a modalias against).
pub fn driven_by(
    root: &Root,
    release: &str,
    module: &str,
    candidates: &[PciAddress],
) -> Vec<PciAddress> {
    let norm = |s: &str| s.replace('-', "_");
    let aliases = fs::read_to_string(root.path(format!("/lib/modules/{release}/modules.alias")))
        .unwrap_or_default();
    let patterns: Vec<glob::Pattern> = aliases
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            match (w.next(), w.next(), w.next()) {
                (Some("alias"), Some(p), Some(m))
                    if p.starts_with("pci:") && norm(m) == norm(module) =>
                {
                    glob::Pattern::new(p).ok()
                }
                _ => None,
            }
        })
        .collect();
    if patterns.is_empty() {
        return Vec::new();
    }
    candidates
        .iter()
        .filter(|a| {
            let alias =
                fs::read_to_string(root.device_dir(**a).join("modalias")).unwrap_or_default();
            let alias = alias.trim();
            !alias.is_empty() && patterns.iter().any(|p| p.matches(alias))
        })
        .copied()
        .collect()
}

/// The newest modification of `/etc/modprobe.d` (the directory, which changes when a file
/// is added or removed, and its files).
pub fn modprobe_changed(root: &Root) -> Option<std::time::SystemTime> {
    let dir = root.path("/etc/modprobe.d");
    let mut times: Vec<std::time::SystemTime> = fs::metadata(&dir)
        .and_then(|m| m.modified())
        .into_iter()
        .collect();
    if let Ok(rd) = fs::read_dir(&dir) {
        times.extend(
            rd.flatten()
                .filter_map(|e| e.metadata().and_then(|m| m.modified()).ok()),
        );
    }
    times.into_iter().max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modprobe_lines_lists_and_scripts_are_read() {
        let mut out = Vec::new();
        modprobe(
            "/etc/modprobe.d/vfio.conf",
            "# guide\noptions vfio-pci ids=10de:1c03,10de:10f1:1458:3fff disable_vga=1\nsoftdep nouveau pre: vfio-pci\nblacklist nouveau\noptions snd-hda-intel model=x\n",
            &mut out,
        );
        let kinds: Vec<String> = out
            .iter()
            .map(|l| format!("{}:{:?}", l.line, l.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                "2:VfioIds([PciId { vendor: 4318, device: 7171 }, PciId { vendor: 4318, device: 4337 }])",
                "2:DisableVga",
                "3:Softdep(\"nouveau\")",
                "4:Blacklist(\"nouveau\")"
            ]
        );
        let mut out = Vec::new();
        script(
            "/usr/local/bin/vfio.sh",
            "#!/bin/sh\nGPU=0000:0a:00.0\nAUDIO=0a:00.1\necho \"10de 1c03\" > /sys/bus/pci/drivers/vfio-pci/new_id\necho $GPU > /sys/bus/pci/devices/$GPU/driver/unbind\nchmod 666 /dev/vfio/*\n",
            &mut out,
        );
        assert_eq!(out[0].kind, Kind::WorldWritable);
        assert_eq!(out[0].line, 6);
        match &out[1].kind {
            Kind::Writes {
                what,
                addresses,
                ids,
            } => {
                assert_eq!(*what, "new_id");
                assert_eq!(out[1].line, 4);
                let a: Vec<String> = addresses.iter().map(ToString::to_string).collect();
                assert_eq!(a, ["0000:0a:00.0", "0000:0a:00.1"]);
                assert_eq!(ids, &["10de:1c03".parse::<PciId>().unwrap()]);
            }
            k => panic!("{k:?}"),
        }
        assert_eq!(
            addresses("virsh nodedev-detach pci_0000_01_00_1"),
            ["0000:01:00.1".parse::<PciAddress>().unwrap()]
        );
    }
}
