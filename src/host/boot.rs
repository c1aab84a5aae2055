//! Which bootloader (or kernel command line tool) this host boots with, so `doctor` can
//! print the exact command that adds a missing kernel argument. Read-only; the files and
//! tools each family documents:
//!
//! - Proxmox VE: `/etc/kernel/proxmox-boot-uuids` (proxmox-boot-tool manages the ESPs);
//!   the arguments live in `/etc/kernel/cmdline` (systemd-boot) or `/etc/default/grub`,
//!   then `proxmox-boot-tool refresh` (Proxmox VE admin guide, "Editing the Kernel
//!   Commandline");
//! - Pop!_OS: `/etc/kernelstub/configuration`, `kernelstub -a ARGS`;
//! - Fedora, RHEL, CentOS: `grubby` (`grubby --update-kernel=ALL --args=ARGS`, grubby(8));
//! - systemd-boot with kernel-install: `/etc/kernel/cmdline` (kernel-install(8)), then the
//!   entries regenerated with `kernel-install add`; without it, the `options` line of the
//!   loader entries (`/boot/loader/entries`, `/efi/loader/entries`,
//!   `/boot/efi/loader/entries`; the Boot Loader Specification);
//! - GRUB: `/etc/default/grub` (`GRUB_CMDLINE_LINUX_DEFAULT`, else `GRUB_CMDLINE_LINUX`),
//!   then `update-grub` where the distribution has it (Debian, Ubuntu), else
//!   `grub2-mkconfig -o /boot/grub2/grub.cfg` (openSUSE, older Fedora) or
//!   `grub-mkconfig -o /boot/grub/grub.cfg` (Arch).

use std::fs;
use std::path::Path;

use crate::root::Root;

/// Proxmox's list of the ESPs proxmox-boot-tool keeps in sync.
pub const PROXMOX_UUIDS: &str = "/etc/kernel/proxmox-boot-uuids";
/// The kernel command line kernel-install and proxmox-boot-tool use.
pub const KERNEL_CMDLINE: &str = "/etc/kernel/cmdline";
/// Pop!_OS's kernelstub configuration.
pub const KERNELSTUB: &str = "/etc/kernelstub/configuration";
/// GRUB's defaults file.
pub const GRUB_DEFAULT: &str = "/etc/default/grub";
/// Where grubby is installed.
pub const GRUBBY: [&str; 2] = ["/usr/sbin/grubby", "/usr/bin/grubby"];
/// Where Boot Loader Specification entries are kept.
pub const LOADER_ENTRIES: [&str; 3] = [
    "/boot/loader/entries",
    "/efi/loader/entries",
    "/boot/efi/loader/entries",
];

/// How this host's kernel command line is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootloader {
    /// Proxmox VE; `cmdline` is true with `/etc/kernel/cmdline` (systemd-boot), false with
    /// GRUB.
    Proxmox {
        /// `/etc/kernel/cmdline` is used.
        cmdline: bool,
    },
    /// Pop!_OS's kernelstub.
    Kernelstub,
    /// Fedora's and RHEL's grubby.
    Grubby,
    /// kernel-install with `/etc/kernel/cmdline`.
    KernelInstall,
    /// systemd-boot entries edited by hand.
    LoaderEntries {
        /// The entries directory (as on the host, not under the root).
        dir: String,
    },
    /// GRUB with `/etc/default/grub`.
    Grub {
        /// The variable the arguments go in.
        variable: &'static str,
        /// The command that regenerates grub.cfg.
        update: &'static str,
    },
}

/// What [`detect`] found, and the files and tools it looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    /// The bootloader, when one could be told.
    pub loader: Option<Bootloader>,
    /// Every path looked at, in order (named when nothing was found).
    pub looked_at: Vec<&'static str>,
}

fn exists(root: &Root, p: &str) -> bool {
    root.path(p).exists()
}

/// The GRUB variable holding the default arguments, and the update command.
fn grub(root: &Root) -> Bootloader {
    let text = fs::read_to_string(root.path(GRUB_DEFAULT)).unwrap_or_default();
    let variable = if text
        .lines()
        .any(|l| l.trim_start().starts_with("GRUB_CMDLINE_LINUX_DEFAULT="))
    {
        "GRUB_CMDLINE_LINUX_DEFAULT"
    } else {
        "GRUB_CMDLINE_LINUX"
    };
    let update = if ["/usr/sbin/update-grub", "/sbin/update-grub"]
        .iter()
        .any(|p| exists(root, p))
    {
        "update-grub"
    } else if ["/usr/sbin/grub2-mkconfig", "/usr/bin/grub2-mkconfig"]
        .iter()
        .any(|p| exists(root, p))
    {
        "grub2-mkconfig -o /boot/grub2/grub.cfg"
    } else {
        "grub-mkconfig -o /boot/grub/grub.cfg"
    };
    Bootloader::Grub { variable, update }
}

/// Tell the bootloader, most specific first (a Proxmox or Fedora host also has GRUB's
/// files).
pub fn detect(root: &Root) -> Detection {
    let mut looked_at = Vec::new();
    let mut look = |p: &'static str| {
        looked_at.push(p);
        exists(root, p)
    };
    // GRUB puts BOOT_IMAGE= on the command line it boots; systemd-boot does not. A host
    // with both GRUB's and kernel-install's files booted the one that left its mark.
    let grub_booted = fs::read_to_string(root.path("/proc/cmdline"))
        .unwrap_or_default()
        .split_whitespace()
        .any(|a| a.starts_with("BOOT_IMAGE="));
    let loader = if look(PROXMOX_UUIDS) {
        Some(Bootloader::Proxmox {
            cmdline: exists(root, KERNEL_CMDLINE) && !grub_booted,
        })
    } else if look(KERNELSTUB) {
        Some(Bootloader::Kernelstub)
    } else if GRUBBY.iter().any(|p| look(p)) {
        Some(Bootloader::Grubby)
    } else if grub_booted && exists(root, GRUB_DEFAULT) {
        looked_at.push(GRUB_DEFAULT);
        Some(grub(root))
    } else if look(KERNEL_CMDLINE) {
        Some(Bootloader::KernelInstall)
    } else if look(GRUB_DEFAULT) {
        Some(grub(root))
    } else {
        LOADER_ENTRIES
            .iter()
            .find(|d| look(d))
            .map(|d| Bootloader::LoaderEntries { dir: d.to_string() })
    };
    Detection { loader, looked_at }
}

/// The exact steps that add `args` (`intel_iommu=on iommu=pt`) to the kernel command
/// line with `loader`, and where `remove` (`amd_iommu=off`) must be taken out.
pub fn fix(root: &Root, loader: &Bootloader, args: &[&str], remove: &[&str]) -> String {
    let a = args.join(" ");
    let rm = if remove.is_empty() {
        String::new()
    } else {
        format!(" and remove {}", remove.join(" "))
    };
    match loader {
        Bootloader::Proxmox { cmdline: true } => format!(
            "add {a}{rm} to the one line of {KERNEL_CMDLINE}, then run `proxmox-boot-tool refresh` and reboot"
        ),
        Bootloader::Proxmox { cmdline: false } => format!(
            "add {a}{rm} to GRUB_CMDLINE_LINUX_DEFAULT in {GRUB_DEFAULT}, then run `proxmox-boot-tool refresh` and reboot"
        ),
        Bootloader::Kernelstub => {
            let mut s = format!("run `kernelstub -a \"{a}\"`");
            if !remove.is_empty() {
                s.push_str(&format!(" and `kernelstub -d \"{}\"`", remove.join(" ")));
            }
            s + ", then reboot"
        }
        Bootloader::Grubby => {
            let mut s = format!("run `grubby --update-kernel=ALL --args=\"{a}\"");
            if !remove.is_empty() {
                s.push_str(&format!(" --remove-args=\"{}\"", remove.join(" ")));
            }
            s + "`, then reboot"
        }
        Bootloader::KernelInstall => format!(
            "add {a}{rm} to the one line of {KERNEL_CMDLINE}, then run `kernel-install add \"$(uname -r)\" \"/usr/lib/modules/$(uname -r)/vmlinuz\"` and reboot"
        ),
        Bootloader::LoaderEntries { dir } => format!(
            "add {a}{rm} to the `options` line of your entry in {dir}/, then reboot"
        ),
        Bootloader::Grub { variable, update } => {
            let current = grub_value(root, variable);
            format!(
                "in {GRUB_DEFAULT} set {variable}=\"{}\"{rm}, then run `{update}` and reboot",
                current
                    .split_whitespace()
                    .filter(|w| !remove.contains(w))
                    .chain(args.iter().copied())
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        }
    }
}

/// The value of `variable` in `/etc/default/grub` (the last assignment, its quotes and a
/// trailing comment removed).
fn grub_value(root: &Root, variable: &str) -> String {
    let text = fs::read_to_string(root.path(GRUB_DEFAULT)).unwrap_or_default();
    let raw = text
        .lines()
        .rev()
        .find_map(|l| l.trim_start().strip_prefix(variable)?.strip_prefix('='))
        .unwrap_or_default()
        .trim();
    match raw.chars().next() {
        Some(q @ ('"' | '\'')) => raw[1..].split(q).next().unwrap_or_default().to_string(),
        _ => raw.split('#').next().unwrap_or_default().trim().to_string(),
    }
}

/// The paths [`detect`] looked at, for the message when it found nothing.
pub fn looked_at(d: &Detection) -> String {
    d.looked_at
        .iter()
        .map(|p| Path::new(p).display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
