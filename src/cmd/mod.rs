//! One module per subcommand. Each takes a [`Context`] and returns the exit code, or an
//! [`Error`] whose [`Error::exit_code`] the binary uses. The order of every command is the
//! data flow: config → (lock) → host snapshot and state → plan → guards → resolved
//! ownership → apply → report; a config error stops before anything on the host is read
//! or touched.

use crate::apply::Options;
use crate::config::{self, Config, Source};
use crate::error::Error;
use crate::host::snapshot::Host;
use crate::host::{nodes, usage};
use crate::lock::Lock;
use crate::owner::{self, Owners};
use crate::plan::{self, guard, Plan};
use crate::root::Root;
use crate::state::State;
use crate::users::Users;

pub mod apply;
pub mod attach;
pub mod bound;
pub mod check;
pub mod claim;
pub mod doctor;
pub mod emit;
pub mod hook;
pub mod hotplug;
pub mod import;
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

/// Everything a planning command works with, each input read once.
pub struct Planned {
    /// The validated config.
    pub config: Config,
    /// The run lock, for commands that write.
    pub lock: Option<Lock>,
    /// The PCI/IOMMU snapshot.
    pub host: Host,
    /// What vfio-bind bound earlier.
    pub state: State,
    /// The plan, guards applied.
    pub plan: Plan,
    /// The ownership of each group's node, resolved through the root's user database.
    pub owners: Owners,
    /// Each planned group's `/dev/vfio/<group>` as found.
    pub nodes: nodes::Nodes,
}

impl Context {
    /// Read the host snapshot; an empty `/sys/kernel/iommu_groups` is [`Error::NoIommu`].
    ///
    /// Errors: [`Error::Host`], [`Error::NoIommu`].
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

    /// Take the run lock (for commands that write), naming this run `what`.
    ///
    /// Errors: [`Error::Lock`].
    pub fn lock(&self, what: &str) -> Result<Lock, Error> {
        Ok(Lock::acquire(&self.root, what, self.lock_timeout)?)
    }

    /// Check that the root is a directory, before anything is read or created under it.
    ///
    /// Errors: [`Error::Usage`] (exit 2) naming it.
    pub fn check_root(&self) -> Result<(), Error> {
        if self.root.base().is_dir() {
            Ok(())
        } else {
            Err(Error::Usage(format!(
                "--root {}: not a directory",
                crate::text::escape(&self.root.base().display().to_string())
            )))
        }
    }

    /// True when taking the run lock would create it (and `/run/vfio-bind`): writers
    /// then validate what they can before the lock, so a run that fails creates nothing.
    /// Once the lock file exists, taking the lock creates nothing.
    pub fn lock_would_create(&self) -> bool {
        !self.root.path(crate::lock::LOCK_FILE).exists()
    }

    /// The user database names in the config resolve through.
    pub fn users(&self) -> Users {
        Users::new(&self.root)
    }

    /// Config, then (for writers, `lock` names the command) the lock, then the snapshot
    /// and the state, then the plan and its guards, then the nodes' ownership resolved.
    /// What the host uses beneath its devices (mounts, swap, interfaces) is scanned only
    /// when some group needs a write.
    ///
    /// Errors: [`Error::Config`] (exit 2) for the config or an unknown user or group,
    /// [`Error::Plan`] (exit 2), [`Error::Lock`], [`Error::Host`], [`Error::NoIommu`],
    /// [`Error::State`].
    pub fn plan(&self, lock: Option<&str>) -> Result<Planned, Error> {
        let config = config::load(&self.config)?;
        owner::check_config(&self.users(), &config)?;
        self.plan_config(config, lock)
    }

    /// [`Context::plan`] for a config already loaded and checked (a VM's, built by
    /// [`crate::vm::profile::config`]).
    ///
    /// Errors: as [`Context::plan`], but for the config's own.
    pub fn plan_config(&self, config: Config, lock: Option<&str>) -> Result<Planned, Error> {
        // When taking the lock would create it, validate first: a conflict found by
        // planning (exit 2) leaves nothing behind. The inputs read for it are used on when
        // this run created the lock and took it at once: no vfio-bind run can have written
        // in between (every writer holds the lock), so a first run reads the host once.
        let early_read = if lock.is_some() && self.lock_would_create() {
            let (host, state) = (self.host()?, State::load(&self.root)?);
            plan::plan(&config, &host, &state)?;
            Some((host, state))
        } else {
            None
        };
        let lock = lock.map(|w| self.lock(w)).transpose()?;
        let (host, state) = match early_read {
            Some(read) if lock.as_ref().is_some_and(Lock::uncontended_create) => read,
            _ => (self.host()?, State::load(&self.root)?),
        };
        let mut plan = plan::plan(&config, &host, &state)?;
        let written: std::collections::BTreeSet<_> = plan
            .groups
            .iter()
            .flat_map(|g| g.members.iter())
            .filter(|m| m.action.writes())
            .map(|m| m.address)
            .collect();
        let uses = if written.is_empty() {
            usage::Uses::new()
        } else {
            usage::read(&self.root, &|a| written.contains(&a))
        };
        guard::refuse(&mut plan, &host, &uses);
        let owners = owner::resolve_groups(
            &self.users(),
            plan.groups.iter().map(|g| (g.group, &g.ownership)),
        )?;
        let nodes = nodes::read(&self.root, plan.groups.iter().map(|g| g.group));
        plan::node::check(&mut plan, &owners, &nodes);
        Ok(Planned {
            config,
            lock,
            host,
            state,
            plan,
            owners,
            nodes,
        })
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
