//! The `vfio-bind` binary: arguments, logging, dispatch, exit codes. Nothing else.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use vfio_bind::cmd::{self, Context};
use vfio_bind::config::Source;
use vfio_bind::sysfs::Root;

/// Hand PCI devices (whole IOMMU groups) to vfio-pci, as /etc/vfio-bind.toml says.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Config file to read instead of /etc/vfio-bind.toml and /etc/vfio-bind.d/*.toml
    /// (no drop-ins are read with this option).
    #[arg(long, value_name = "PATH", global = true)]
    config: Option<PathBuf>,

    /// Take every absolute path (/sys, /proc, /dev, /etc, /run, /usr/share) under DIR; for
    /// tests and offline inspection. Kernel modules are never loaded under a root.
    #[arg(long, value_name = "DIR", env = "VFIO_BIND_ROOT", global = true)]
    root: Option<PathBuf>,

    /// More output (debug messages).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,

    /// How long to wait for another vfio-bind run to finish, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 30_000, global = true)]
    lock_timeout: u64,

    /// How long to wait for a device to show up on its new driver, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 10_000, global = true)]
    bind_timeout: u64,

    /// How long to wait for /dev/vfio/<group> to appear, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 5_000, global = true)]
    node_timeout: u64,

    /// Less output (warnings and errors only).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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

fn main() -> ExitCode {
    // Die quietly on a closed pipe (`vfio-bind list | head`), as shell tools do.
    // SAFETY: setting a signal disposition to SIG_DFL installs no handler code.
    unsafe {
        let _ = nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        );
    }
    let cli = Cli::parse();
    let verbosity = if cli.quiet {
        -1
    } else {
        cli.verbose.min(3) as i8
    };
    vfio_bind::report::init_logging(verbosity);

    let root = Root::new(cli.root.unwrap_or_else(|| PathBuf::from("/")));
    let config = match cli.config {
        Some(p) => Source::File(p),
        None => Source::Default(root.clone()),
    };
    let ctx = Context {
        root,
        config,
        options: vfio_bind::apply::Options {
            bind_timeout: std::time::Duration::from_millis(cli.bind_timeout),
            node_timeout: std::time::Duration::from_millis(cli.node_timeout),
        },
        lock_timeout: std::time::Duration::from_millis(cli.lock_timeout),
    };
    let result = match cli.command {
        Command::Apply { dry_run } => cmd::apply::run(&ctx, dry_run),
        Command::Status { json } => cmd::status::run(&ctx, json),
        Command::List { json } => cmd::list::run(&ctx, json),
        Command::Check => cmd::check::run(&ctx),
        Command::Release { addresses, all } => cmd::release::run(&ctx, &addresses, all),
        Command::Doctor { guest_memory } => cmd::doctor::run(&ctx, guest_memory),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "vfio-bind",
                &mut std::io::stdout(),
            );
            Ok(0)
        }
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            log::error!("{e}");
            let first = e.to_string();
            vfio_bind::report::notify_status(&format!(
                "failed: {}",
                first.lines().next().unwrap_or_default()
            ));
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                log::error!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::from(e.exit_code())
        }
    }
}
