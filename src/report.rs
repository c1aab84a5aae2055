//! Reporting: where log lines go (journald or stderr, never both), the sd-notify
//! `STATUS=` line, and the one-line summary of a run.

use std::io::Write;

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::apply::{ApplyError, GroupOutcome, ReleaseOutcome};
use crate::plan::model::Plan;

/// Plain `vfio-bind: ...` lines on stderr, for a terminal or a non-journal service manager.
/// When stderr is the kernel log (`/dev/kmsg`, as the initramfs hooks redirect it), each
/// line starts with its syslog priority (`<3>` error ... `<7>` debug), which the kernel
/// takes as the record's level (Documentation/ABI/testing/dev-kmsg).
struct StderrLog {
    kmsg: bool,
}

/// True when stderr is `/dev/kmsg` (character device 1:11, devices.txt).
fn stderr_is_kmsg() -> bool {
    use nix::sys::stat::{fstat, major, minor, SFlag};
    fstat(2).is_ok_and(|st| {
        (st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFCHR.bits()
            && major(st.st_rdev) == 1
            && minor(st.st_rdev) == 11
    })
}

impl Log for StderrLog {
    fn enabled(&self, _: &Metadata) -> bool {
        true
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let prefix = match record.level() {
            Level::Error => "error: ",
            Level::Warn => "warning: ",
            Level::Info => "",
            Level::Debug | Level::Trace => "debug: ",
        };
        // Every line carries the program's name, so a multi-line message stays
        // attributable; continuation lines are indented under the first, not counted as
        // more errors. A write error (a closed pipe) is ignored: logging never aborts a run.
        // Each line is one write(2): stderr is unbuffered, and on /dev/kmsg (the initramfs
        // claim's stderr) every write is a record of its own.
        let text = record.args().to_string();
        let priority = match (self.kmsg, record.level()) {
            (false, _) => "",
            (true, Level::Error) => "<3>",
            (true, Level::Warn) => "<4>",
            (true, Level::Info) => "<6>",
            (true, Level::Debug | Level::Trace) => "<7>",
        };
        let mut err = std::io::stderr().lock();
        for (i, line) in text.lines().enumerate() {
            let line = if i == 0 {
                format!("{priority}vfio-bind: {prefix}{line}\n")
            } else {
                format!("{priority}vfio-bind:   {line}\n")
            };
            let _ = err.write_all(line.as_bytes());
        }
    }

    fn flush(&self) {}
}

/// Install the logger: systemd-journal-logger when stderr is connected to journald
/// (`JOURNAL_STREAM`, as under a systemd unit), so records carry the structured fields
/// `VFIO_BIND_ADDRESS`, `VFIO_BIND_GROUP`, `VFIO_BIND_ACTION`, `VFIO_BIND_DRIVER`;
/// otherwise plain lines on stderr. With `journal_unless_tty` (the hotplug helper, whose
/// stderr udev keeps only at debug level), the journal whenever its socket exists and
/// stderr is not a terminal (`sink` [`Sink::JournalUnlessTty`]). The libvirt hook
/// ([`Sink::Journal`]) logs to the journal whenever its socket exists, else nowhere.
/// `verbosity`: -1 quiet (warnings and errors), 0 normal, 1 or more debug.
pub fn init_logging(verbosity: i8, sink: Sink) {
    let level = match verbosity {
        i8::MIN..=-1 => LevelFilter::Warn,
        0 => LevelFilter::Info,
        _ => LevelFilter::Debug,
    };
    use std::io::IsTerminal;
    let socket = std::path::Path::new("/run/systemd/journal/socket").exists();
    let wanted = match sink {
        Sink::Nowhere => return,
        Sink::Journal => socket,
        Sink::JournalUnlessTty => {
            systemd_journal_logger::connected_to_journal()
                || (!std::io::stderr().is_terminal() && socket)
        }
        Sink::Default => systemd_journal_logger::connected_to_journal(),
    };
    if sink == Sink::Journal && !wanted {
        return;
    }
    let journal = wanted
        .then(systemd_journal_logger::JournalLog::new)
        .and_then(Result::ok);
    let installed = match journal {
        Some(j) => j.with_syslog_identifier("vfio-bind".into()).install(),
        None => log::set_boxed_logger(Box::new(StderrLog {
            kmsg: stderr_is_kmsg(),
        })),
    };
    if installed.is_ok() {
        log::set_max_level(level);
    }
}

/// Where log records go ([`init_logging`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// The journal under a unit (`JOURNAL_STREAM`), stderr otherwise.
    Default,
    /// Also the journal when stderr is not a terminal and the journal's socket exists
    /// (udev's RUN programs).
    JournalUnlessTty,
    /// The journal when its socket exists, else nowhere (the libvirt hook).
    Journal,
    /// Nowhere.
    Nowhere,
}

/// Send `STATUS=<line>` to the service manager (shown by `systemctl status`). A no-op
/// outside a unit (no `NOTIFY_SOCKET`).
pub fn notify_status(line: &str) {
    if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Status(line)]) {
        log::debug!("sd_notify STATUS failed: {e}");
    }
}

/// The one-line summary of an apply, e.g. `5 devices in 3 IOMMU groups on vfio-pci`,
/// followed by failures (`; 1 group failed`).
pub fn summary(plan: &Plan, released: &[ReleaseOutcome], outcomes: &[GroupOutcome]) -> String {
    let t = Tally::new(plan, outcomes);
    let mut line = if t.groups == 0 {
        "no device bound".to_string()
    } else {
        format!(
            "{} in {} on {}",
            plural(t.devices, "device", "devices"),
            plural(t.groups, "IOMMU group", "IOMMU groups"),
            t.drivers.join(", ")
        )
    };
    let ok = released.iter().filter(|r| r.result.is_ok()).count();
    let errors = plan.problems.iter().filter(|p| p.error).count();
    for (n, one, many, what) in [
        (t.failed, "group", "groups", "failed"),
        (t.refused, "group", "groups", "refused"),
        (ok, "device", "devices", "released"),
        (
            released.len() - ok,
            "device",
            "devices",
            "failed to release",
        ),
        (errors, "entry", "entries", "in error"),
    ] {
        if n > 0 {
            line.push_str(&format!("; {} {what}", plural(n, one, many)));
        }
    }
    line
}

/// `1 group`, `2 groups`.
fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

/// The groups of an apply, counted by how they ended.
struct Tally<'p> {
    devices: usize,
    groups: usize,
    drivers: Vec<&'p str>,
    failed: usize,
    refused: usize,
}

impl<'p> Tally<'p> {
    fn new(plan: &'p Plan, outcomes: &[GroupOutcome]) -> Self {
        let mut t = Tally {
            devices: 0,
            groups: 0,
            drivers: Vec::new(),
            failed: 0,
            refused: 0,
        };
        for (g, o) in plan.groups.iter().zip(outcomes) {
            match &o.result {
                Ok(()) => {
                    t.groups += 1;
                    for d in g.members.iter().filter_map(|m| m.action.target()) {
                        t.devices += 1;
                        if !t.drivers.contains(&d.as_str()) {
                            t.drivers.push(d.as_str());
                        }
                    }
                }
                Err(ApplyError::Refused { .. }) => t.refused += 1,
                Err(_) => t.failed += 1,
            }
        }
        t
    }
}
