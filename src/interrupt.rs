//! Terminating signals during a run that writes (`apply`, `release`): SIGTERM
//! (`systemctl stop`, shutdown, the unit's start timeout), SIGINT (Ctrl-C) and SIGHUP
//! only set a flag (signal-hook's `flag::register_usize`, async-signal-safe). The run
//! checks it between devices and groups: the group in progress is rolled back, no later
//! group is started, and the run exits with a message naming the signal. SIGPIPE is
//! ignored for these runs, so a closed stderr (`vfio-bind apply 2>&1 | head -1`) can
//! never kill a run in the middle of a group. A leaf module.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

static FLAG: OnceLock<Arc<AtomicUsize>> = OnceLock::new();

/// Catch SIGTERM, SIGINT and SIGHUP into the flag and ignore SIGPIPE, for the rest of
/// the process.
///
/// Errors: the `io::Error` of `sigaction(2)`.
pub fn install() -> std::io::Result<()> {
    let flag = FLAG.get_or_init(|| Arc::new(AtomicUsize::new(0)));
    for sig in [SIGTERM, SIGINT, SIGHUP] {
        signal_hook::flag::register_usize(sig, Arc::clone(flag), sig as usize)?;
    }
    // SAFETY: SIG_IGN installs no handler code.
    unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigIgn,
        )
        .map_err(std::io::Error::from)?;
    }
    Ok(())
}

/// The terminating signal received, if any (`SIGTERM`...).
pub fn requested() -> Option<&'static str> {
    let n = FLAG.get()?.load(Ordering::SeqCst);
    match n as i32 {
        0 => None,
        SIGTERM => Some("SIGTERM"),
        SIGINT => Some("SIGINT"),
        SIGHUP => Some("SIGHUP"),
        _ => Some("a terminating signal"),
    }
}
