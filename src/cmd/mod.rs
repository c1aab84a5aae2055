//! One module per subcommand. Each takes a [`Context`] and returns the exit code, or
//! an [`Error`] whose [`Error::exit_code`] the binary uses.

use crate::apply::Options;
use crate::config::{self, Config, Source};
use crate::error::Error;
use crate::plan::{self, Plan};
use crate::state::{Lock, State};
use crate::sysfs::{Host, Root};

pub mod apply;
pub mod check;
pub mod doctor;
pub mod list;
pub mod release;
pub mod status;

/// What every command needs: the root all paths are taken under, where the config is,
/// and apply's timeouts.
#[derive(Debug, Clone)]
pub struct Context {
    /// `/`, or `--root DIR`.
    pub root: Root,
    /// The config file(s) to read.
    pub config: Source,
    /// Bind and node timeouts.
    pub options: Options,
    /// How long a run waits for another run's lock.
    pub lock_timeout: std::time::Duration,
}

impl Context {
    /// Read the host snapshot; an empty `/sys/kernel/iommu_groups` is [`Error::NoIommu`].
    pub fn host(&self) -> Result<Host, Error> {
        let host = Host::read(&self.root)?;
        if !host.iommu_enabled() {
            return Err(Error::NoIommu {
                path: self
                    .root
                    .path("/sys/kernel/iommu_groups")
                    .display()
                    .to_string(),
            });
        }
        Ok(host)
    }

    /// The snapshot for planning: [`Context::host`] plus vfio-bind's own state. What the
    /// host uses beneath its devices (mounts, swap, interfaces) is read by
    /// [`Context::plan`] only when some group needs a write.
    pub fn snapshot(&self) -> Result<Host, Error> {
        let mut host = self.host()?;
        host.state = State::load(&self.root)?;
        Ok(host)
    }

    /// Take the run lock (for commands that write).
    pub fn lock(&self, what: &str) -> Result<Lock, Error> {
        Ok(Lock::acquire(&self.root, what, self.lock_timeout)?)
    }

    /// Config, then (for writers) the lock, then the snapshot, then the plan: a config
    /// error stops before anything on the host is read or touched.
    pub fn plan(&self, lock: Option<&str>) -> Result<(Config, Option<Lock>, Host, Plan), Error> {
        let config = config::load(&self.config)?;
        let lock = lock.map(|w| self.lock(w)).transpose()?;
        let mut host = self.snapshot()?;
        let mut plan = plan::plan(&config, &host)?;
        // The guards matter only where something is written: a no-op apply (every group
        // already bound) does not scan block devices, mounts and interfaces.
        if plan.groups.iter().any(|g| !g.is_bound()) {
            host.uses = crate::inuse::read(&self.root);
            plan = plan::plan(&config, &host)?;
        }
        Ok((config, lock, host, plan))
    }
}

/// Log the plan's problems (unmatched entries, devices without a group) at the right level.
pub(crate) fn log_problems(plan: &Plan) {
    for p in &plan.problems {
        if p.error {
            log::error!("{}: device[{}]: {}", p.origin, p.entry, p.message);
        } else {
            log::warn!("{}: device[{}]: {}", p.origin, p.entry, p.message);
        }
    }
}
