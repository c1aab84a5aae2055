//! The command line: clap types for `vfio-bind`'s global options and subcommands. Parsing
//! only; `main.rs` turns the result into a `vfio_bind::cmd::Context` and dispatches.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Hand PCI devices (whole IOMMU groups) to vfio-pci, as /etc/vfio-bind.toml says.
#[derive(Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    /// Config file to read instead of /etc/vfio-bind.toml and /etc/vfio-bind.d/*.toml
    /// (no drop-ins are read with this option).
    #[arg(long, value_name = "PATH", global = true)]
    pub config: Option<PathBuf>,

    /// Take every absolute path (/sys, /proc, /dev, /etc, /run, /usr/share) under DIR; for
    /// tests and offline inspection. Kernel modules are never loaded under a root.
    #[arg(long, value_name = "DIR", env = "VFIO_BIND_ROOT", global = true)]
    pub root: Option<PathBuf>,

    /// More output (debug messages).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// How long to wait for another vfio-bind run to finish, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 30_000, global = true)]
    pub lock_timeout: u64,

    /// How long to wait for a device to show up on its new driver, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 10_000, global = true)]
    pub bind_timeout: u64,

    /// How long to wait for /dev/vfio/<group> to appear, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 5_000, global = true)]
    pub node_timeout: u64,

    /// How long `attach` waits for processes holding the devices' nodes (DRM, sound,
    /// framebuffer) to close them, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 5_000, global = true)]
    pub hold_timeout: u64,

    /// Less output (warnings and errors only).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Bind every device the config names, with its whole IOMMU group, to vfio-pci.
    Apply {
        /// Print the plan and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Show the configured groups: drivers now, and /dev/vfio/<group> ownership.
    Status {
        /// Print JSON (schema in vfio-bind(8)).
        #[arg(long)]
        json: bool,
    },
    /// List every IOMMU group and its devices.
    List {
        /// Print JSON (schema in vfio-bind(8)).
        #[arg(long)]
        json: bool,
    },
    /// Validate the config and resolve it on this host; writes nothing.
    Check,
    /// Diagnose IOMMU, kernel and module setup, and the configured groups.
    Doctor {
        /// Guest memory to check the memlock limit against, in MiB.
        #[arg(long, value_name = "MIB", default_value_t = 8192)]
        guest_memory: u64,
    },
    /// Print a shell completion script (bash, zsh or fish) to stdout.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Claim the configured groups in early boot (run by the initramfs integrations).
    ///
    /// Overrides first, then the vfio modules, then the bind protocol; no ownership (that
    /// waits for the real root's `apply`). Skipped when the kernel command line has
    /// vfio-bind=off.
    Claim {
        /// Print the config files the claim reads, one per line, and exit 0 when the config
        /// names devices, 1 when it names none (for initramfs hooks).
        #[arg(long, conflicts_with = "modules")]
        files: bool,
        /// Print the kernel modules of the drivers the config binds to, one per line (for
        /// initramfs hooks).
        #[arg(long)]
        modules: bool,
    },
    /// Claim the IOMMU group of a hot-added device the config names, or forget a removed
    /// one (run by vfio-bind's udev rule).
    Hotplug {
        /// The device's PCI address (udev's $kernel).
        #[arg(value_name = "ADDR")]
        address: String,
        /// The uevent's action (udev's $env{ACTION}); without it, a device present in
        /// sysfs is taken as added, an absent one as removed.
        #[arg(long, value_enum)]
        action: Option<vfio_bind::cmd::hotplug::Action>,
    },
    /// Bind a VM's IOMMU groups (its [[vm]] profile) for one run, with the console
    /// handover when the profile asks for it; all or nothing.
    Attach {
        /// The libvirt domain name of the [[vm]] profile.
        #[arg(value_name = "VM")]
        vm: String,
        /// The domain XML whose PCI <hostdev>s are the VM's devices when its profile
        /// lists no `devices` (`virsh dumpxml VM > FILE`; `-` reads stdin).
        #[arg(long, value_name = "FILE")]
        xml: Option<PathBuf>,
    },
    /// Give a VM's groups back to the drivers they had and undo its console handover.
    Detach {
        /// The libvirt domain name.
        #[arg(value_name = "VM")]
        vm: String,
    },
    /// Print libvirt <hostdev> elements or QEMU -device arguments for configured groups.
    Emit {
        /// libvirt or qemu.
        #[arg(value_enum)]
        format: vfio_bind::cmd::emit::Format,
        /// [[vm]] profile names or PCI addresses; none: everything configured.
        #[arg(value_name = "VM|ADDR")]
        targets: Vec<String>,
    },
    /// Config entries from a VFIO guide's leftovers on this host (modprobe ids=, binding
    /// scripts, libvirt hook scripts), printed as TOML; lists what can be removed after.
    Import {
        /// Create /etc/vfio-bind.d/50-imported.toml instead of printing (never replaces it,
        /// never edits the files read).
        #[arg(long)]
        write: bool,
    },
    /// The libvirt QEMU hook (installed as /etc/libvirt/hooks/qemu.d/vfio-bind): reads
    /// the domain XML on stdin; `prepare begin` attaches, `release end` detaches.
    #[command(hide = true)]
    Hook {
        /// The domain name.
        #[arg(value_name = "VM")]
        vm: String,
        /// The operation (prepare, start, started, stopped, release, migrate, ...).
        #[arg(value_name = "OP")]
        op: String,
        /// The sub-operation (begin, end, -).
        #[arg(value_name = "SUBOP")]
        subop: String,
        /// The extra argument(s) (`-`, or a shutoff reason since libvirt 10.5).
        #[arg(value_name = "EXTRA", allow_hyphen_values = true, num_args = 0..)]
        extra: Vec<String>,
    },
    /// Give devices bound by vfio-bind back to the drivers they had.
    Release {
        /// PCI addresses to release (with the recorded devices of their IOMMU groups);
        /// a device vfio-bind did not bind is released only when named here.
        #[arg(
            value_name = "ADDR",
            required_unless_present = "all",
            conflicts_with = "all"
        )]
        addresses: Vec<String>,
        /// Release every device vfio-bind bound.
        #[arg(long)]
        all: bool,
    },
}

/// The completion script for `shell`.
///
/// clap_complete 4.6's bash generator mangles a hyphenated binary name two ways: the
/// word loop sets `cmd="vfio__bind__subcmd__apply"` while the case below it tests
/// `vfio__subcmd__bind__subcmd__apply`, so no option of a subcommand ever completed. The
/// case labels are put back to the name the loop uses (tests/completions.rs runs the
/// scripts in bash, zsh and fish).
pub fn completions(shell: clap_complete::Shell) -> String {
    use clap::CommandFactory;
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "vfio-bind", &mut buf);
    let text = String::from_utf8(buf).expect("completion scripts are UTF-8");
    match shell {
        clap_complete::Shell::Bash => text.replace("vfio__subcmd__bind", "vfio__bind"),
        _ => text,
    }
}
