//! The `vfio-bind` binary: parse the arguments ([`cli`]), set up logging, dispatch to
//! the subcommand, map the result to an exit code. Nothing else.

#![deny(clippy::too_many_lines)]

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use cli::{Cli, Command};
use vfio_bind::apply::Options;
use vfio_bind::cmd::{self, Context};
use vfio_bind::config::Source;
use vfio_bind::error::Error;
use vfio_bind::root::Root;

fn context(cli: &Cli) -> Context {
    let root = Root::new(cli.root.clone().unwrap_or_else(|| PathBuf::from("/")));
    let config = match &cli.config {
        Some(p) => Source::File(p.clone()),
        None => Source::Default(root.clone()),
    };
    Context {
        root,
        config,
        options: Options {
            bind_timeout: Duration::from_millis(cli.bind_timeout),
            node_timeout: Duration::from_millis(cli.node_timeout),
            early: false,
            vm: None,
            hold_timeout: Duration::from_millis(cli.hold_timeout),
        },
        lock_timeout: Duration::from_millis(cli.lock_timeout),
    }
}

fn dispatch(ctx: &Context, command: Command) -> Result<u8, Error> {
    if !matches!(command, Command::Completions { .. }) {
        ctx.check_root()?;
    }
    match command {
        Command::Apply { dry_run } => cmd::apply::run(ctx, dry_run),
        Command::Status { json } => cmd::status::run(ctx, json),
        Command::List { json } => cmd::list::run(ctx, json),
        Command::Check => cmd::check::run(ctx),
        Command::Release { addresses, all } => cmd::release::run(ctx, &addresses, all),
        Command::Doctor { guest_memory } => cmd::doctor::run(ctx, guest_memory),
        Command::Claim { files: true, .. } => cmd::claim::files(ctx),
        Command::Claim { modules: true, .. } => cmd::claim::modules(ctx),
        Command::Claim { .. } => cmd::claim::run(ctx),
        Command::Hotplug { address, action } => cmd::hotplug::run(ctx, &address, action),
        Command::Attach { vm, xml } => attach(ctx, &vm, xml.as_deref()),
        Command::Detach { vm } => cmd::attach::detach(ctx, &vm),
        Command::Emit { format, targets } => cmd::emit::run(ctx, format, &targets),
        Command::Import { write } => cmd::import::run(ctx, write),
        Command::Hook {
            vm,
            op,
            subop,
            extra,
        } => Ok(cmd::hook::run(ctx, &vm, &op, &subop, &extra)),
        Command::Completions { shell } => {
            print!("{}", cli::completions(shell));
            Ok(0)
        }
    }
}

/// `attach VM [--xml FILE]`: the XML read here (`-`: stdin), then the command.
fn attach(ctx: &Context, vm: &str, xml: Option<&std::path::Path>) -> Result<u8, Error> {
    let text = match xml {
        None => None,
        Some(p) if p == std::path::Path::new("-") => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                .map_err(|e| Error::Usage(format!("cannot read the domain XML from stdin: {e}")))?;
            Some(("<stdin>".into(), s))
        }
        Some(p) => Some((
            p.to_path_buf(),
            std::fs::read_to_string(p).map_err(|e| {
                Error::Usage(format!(
                    "cannot read {}: {e}",
                    vfio_bind::text::escape(&p.display().to_string())
                ))
            })?,
        )),
    };
    let domain = text
        .as_ref()
        .map(|(file, text): &(PathBuf, String)| cmd::attach::DomainXml {
            file: file.as_path(),
            text: text.as_str(),
        });
    cmd::attach::attach(ctx, vm, domain)
}

/// Report a fatal error: the message, then each cause on a line of its own, and the
/// first line as the unit's `STATUS=`.
fn report(e: &Error) -> ExitCode {
    log::error!("{e}");
    let first = e.to_string();
    vfio_bind::report::notify_status(&format!(
        "failed: {}",
        first.lines().next().unwrap_or_default()
    ));
    // One cause a line, each only once: a cause whose text the line above already
    // carries (the errno of a `cannot read FILE: errno`) is not repeated.
    let mut shown = first;
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !shown.contains(&text) {
            log::error!("  caused by: {text}");
        }
        shown = text;
        source = cause.source();
    }
    ExitCode::from(e.exit_code())
}

/// The search path systemd gives services (systemd.exec(5), "Environment Variables"),
/// for `modprobe` and `udevadm` when the caller set none: udev runs the hotplug helper
/// with the device's properties as its whole environment, without PATH.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn main() -> ExitCode {
    if std::env::var_os("PATH").is_none_or(|p| p.is_empty()) {
        // Single-threaded still: nothing reads the environment concurrently.
        std::env::set_var("PATH", DEFAULT_PATH);
    }
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
    // The hotplug helper on the real host (run by udev) logs to the journal; under --root
    // (tests) it never does.
    let hotplug = matches!(cli.command, Command::Hotplug { .. }) && cli.root.is_none();
    let sink = match cli.command {
        // libvirt shows a hook's stderr only when it fails, as the reason: the hook logs
        // to the journal (nowhere under --root) and prints that one line itself.
        Command::Hook { .. } if cli.root.is_none() => vfio_bind::report::Sink::Journal,
        Command::Hook { .. } => vfio_bind::report::Sink::Nowhere,
        _ if hotplug => vfio_bind::report::Sink::JournalUnlessTty,
        _ => vfio_bind::report::Sink::Default,
    };
    vfio_bind::report::init_logging(verbosity, sink);
    let ctx = context(&cli);
    // Runs that write must never die half-way through a group: signals become a flag
    // they check (and SIGPIPE is ignored); the others die quietly on a closed pipe.
    let writes = matches!(
        cli.command,
        Command::Apply { dry_run: false }
            | Command::Release { .. }
            | Command::Claim {
                files: false,
                modules: false
            }
            | Command::Hotplug { .. }
            | Command::Attach { .. }
            | Command::Detach { .. }
            | Command::Hook { .. }
    );
    if writes {
        if let Err(e) = vfio_bind::interrupt::install() {
            log::error!("cannot install signal handlers: {e}");
            return ExitCode::from(1);
        }
    }
    match dispatch(&ctx, cli.command) {
        Ok(code) => ExitCode::from(code),
        Err(e) => report(&e),
    }
}
