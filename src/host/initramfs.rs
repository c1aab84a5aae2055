//! Whether the initramfs of the running kernel carries the configuration the early claim
//! (`vfio-bind claim`) should use: which initramfs generator this host has, where its
//! image for the running kernel is, and whether that image is older than the config files
//! or than vfio-bind's own integration (installed after the image was built, it is not in
//! it). Read-only, and cheap enough for every `apply`: a few `stat`s, no decompression.
//!
//! Layouts (each family's own documentation): initramfs-tools writes
//! `/boot/initrd.img-<release>` (update-initramfs(8)); dracut writes
//! `/boot/initramfs-<release>.img` (dracut(8); on Debian, `/boot/initrd.img-<release>`);
//! mkinitcpio writes the images its presets name, `/boot/initramfs-<pkgbase>.img`
//! (mkinitcpio(8)), and runs the hooks listed in `HOOKS=` of `/etc/mkinitcpio.conf` and
//! `/etc/mkinitcpio.conf.d/*.conf`.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::root::Root;

/// An initramfs generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Debian's and Ubuntu's initramfs-tools.
    InitramfsTools,
    /// dracut (Fedora, RHEL, openSUSE; also packaged by Debian).
    Dracut,
    /// Arch's mkinitcpio.
    Mkinitcpio,
}

impl Family {
    /// The command that rebuilds the images.
    pub fn rebuild(self) -> &'static str {
        match self {
            Family::InitramfsTools => "update-initramfs -u",
            Family::Dracut => "dracut -f",
            Family::Mkinitcpio => "mkinitcpio -P",
        }
    }

    /// The generator's name.
    pub fn name(self) -> &'static str {
        match self {
            Family::InitramfsTools => "initramfs-tools",
            Family::Dracut => "dracut",
            Family::Mkinitcpio => "mkinitcpio",
        }
    }

    /// vfio-bind's integration for this family (where the generator reads it).
    fn integration(self) -> &'static [&'static str] {
        match self {
            Family::InitramfsTools => &["/usr/share/initramfs-tools/hooks/vfio-bind"],
            Family::Dracut => &["/usr/lib/dracut/modules.d/90vfio-bind/module-setup.sh"],
            Family::Mkinitcpio => &[
                "/usr/lib/initcpio/install/vfio-bind",
                "/etc/initcpio/install/vfio-bind",
            ],
        }
    }

    /// The generator itself (any one of these): `make install` puts every family's
    /// integration in place, so only the generator tells which one this host uses.
    fn generator(self) -> &'static [&'static str] {
        match self {
            Family::InitramfsTools => &["/usr/sbin/mkinitramfs", "/sbin/mkinitramfs"],
            Family::Dracut => &["/usr/bin/dracut", "/usr/sbin/dracut", "/sbin/dracut"],
            Family::Mkinitcpio => &["/usr/bin/mkinitcpio"],
        }
    }
}

/// What is wrong with the running kernel's initramfs, for the early claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stale {
    /// The image was built before `file` (a config file, or vfio-bind's integration)
    /// last changed.
    Older {
        /// The image.
        image: PathBuf,
        /// The newer file.
        file: PathBuf,
        /// The generator.
        family: Family,
    },
    /// mkinitcpio's `HOOKS=` lists neither `vfio-bind` nor `sd-vfio-bind`.
    NotInHooks {
        /// The config file with the `HOOKS=` line.
        conf: PathBuf,
    },
}

impl std::fmt::Display for Stale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stale::Older {
                image,
                file,
                family,
            } => write!(
                f,
                "the initramfs {} is older than {}: the claim in early boot uses what it was \
                 built with; rebuild it with `{}`",
                image.display(),
                file.display(),
                family.rebuild()
            ),
            Stale::NotInHooks { conf } => write!(
                f,
                "{}: HOOKS lists neither vfio-bind nor sd-vfio-bind, so nothing is claimed in \
                 early boot; add vfio-bind before udev (sd-vfio-bind with the systemd hook), \
                 then run `mkinitcpio -P`",
                conf.display()
            ),
        }
    }
}

/// The generator this host has (under `root`), when vfio-bind's integration for it is
/// installed too (none: the host claims from the real root only, nothing is stale).
pub fn family(root: &Root) -> Option<Family> {
    [Family::InitramfsTools, Family::Dracut, Family::Mkinitcpio]
        .into_iter()
        .find(|f| f.generator().iter().any(|g| root.path(g).is_file()))
        .filter(|f| integration_file(root, *f).is_some())
}

/// The initramfs generator this host has (whether vfio-bind's integration is installed or
/// not) and the newest image of the running kernel it made, with its modification time.
pub fn image(root: &Root) -> Option<(Family, PathBuf, SystemTime)> {
    let family = [Family::InitramfsTools, Family::Dracut, Family::Mkinitcpio]
        .into_iter()
        .find(|f| f.generator().iter().any(|g| root.path(g).is_file()))?;
    images(root, family)
        .into_iter()
        .filter_map(|p| mtime(&p).map(|t| (p, t)))
        .max_by_key(|(_, t)| *t)
        .map(|(p, t)| (family, p, t))
}

fn integration_file(root: &Root, f: Family) -> Option<PathBuf> {
    f.integration()
        .iter()
        .map(|p| root.path(p))
        .find(|p| p.is_file())
}

fn mtime(p: &Path) -> Option<SystemTime> {
    fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// The images of the running kernel (`/proc/sys/kernel/osrelease`) for `family`.
fn images(root: &Root, family: Family) -> Vec<PathBuf> {
    let release = fs::read_to_string(root.path("/proc/sys/kernel/osrelease")).unwrap_or_default();
    let release = release.trim();
    let candidates: Vec<PathBuf> = match family {
        Family::InitramfsTools | Family::Dracut if !release.is_empty() => vec![
            root.path(format!("/boot/initrd.img-{release}")),
            root.path(format!("/boot/initramfs-{release}.img")),
        ],
        Family::Mkinitcpio => fs::read_dir(root.path("/boot"))
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| {
                        p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                            n.starts_with("initramfs-")
                                && n.ends_with(".img")
                                && !n.ends_with("-fallback.img")
                        })
                    })
                    .collect()
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let mut found: Vec<PathBuf> = candidates.into_iter().filter(|p| p.is_file()).collect();
    found.sort();
    found
}

/// mkinitcpio: the last `HOOKS=` assignment (drop-ins after the main file), and whether it
/// names vfio-bind.
fn mkinitcpio_hooks(root: &Root) -> Option<(PathBuf, bool)> {
    let mut files = vec![root.path("/etc/mkinitcpio.conf")];
    if let Ok(rd) = fs::read_dir(root.path("/etc/mkinitcpio.conf.d")) {
        let mut d: Vec<PathBuf> = rd
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "conf"))
            .collect();
        d.sort();
        files.extend(d);
    }
    let mut last = None;
    for f in files {
        let Ok(text) = fs::read_to_string(&f) else {
            continue;
        };
        for line in text.lines() {
            let Some(v) = line.trim_start().strip_prefix("HOOKS=") else {
                continue;
            };
            let v = v.split('#').next().unwrap_or_default();
            let named = v
                .split(|c: char| c.is_whitespace() || "()\"'".contains(c))
                .any(|h| h == "vfio-bind" || h == "sd-vfio-bind");
            last = Some((f.clone(), named));
        }
    }
    last
}

/// What is stale about the running kernel's initramfs, given the config files the claim
/// reads (`config_files`, as read: under the root already) and the drop-in directory
/// `/etc/vfio-bind.d` (removing a drop-in changes its mtime). Nothing when no integration
/// is installed or no image exists for the running kernel (nothing to compare).
pub fn stale(root: &Root, config_files: &[PathBuf]) -> Vec<Stale> {
    let Some(family) = family(root) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if family == Family::Mkinitcpio {
        if let Some((conf, false)) = mkinitcpio_hooks(root) {
            out.push(Stale::NotInHooks { conf });
        }
    }
    let integration = integration_file(root, family);
    let configs: Vec<PathBuf> = config_files
        .iter()
        .cloned()
        .chain(Some(root.path("/etc/vfio-bind.d")).filter(|d| d.is_dir()))
        .collect();
    for image in images(root, family) {
        let Some(built) = mtime(&image) else {
            continue;
        };
        let newer = |f: &PathBuf| mtime(f).is_some_and(|m| m > built);
        // The integration first: an image built before it was installed has no claim at
        // all; otherwise the newest config file.
        let file = integration
            .iter()
            .find(|f| newer(f))
            .or_else(|| configs.iter().filter(|f| newer(f)).max_by_key(|f| mtime(f)));
        if let Some(file) = file {
            out.push(Stale::Older {
                image: image.clone(),
                file: file.clone(),
                family,
            });
        }
    }
    out
}
