//! One module per subcommand. Each takes a [`Context`] and returns the exit code, or
//! an [`Error`] whose [`Error::exit_code`] the binary uses.

use crate::apply::Options;
use crate::config::{self, Config, Source};
use crate::error::Error;
use crate::plan::{self, Plan};
use crate::sysfs::{Host, Root};

pub mod apply;
pub mod check;
pub mod list;
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

    /// Config, then host, then plan: a config error stops before the host is read.
    pub fn plan(&self) -> Result<(Config, Host, Plan), Error> {
        let config = config::load(&self.config)?;
        let host = self.host()?;
        let plan = plan::plan(&config, &host)?;
        Ok((config, host, plan))
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
