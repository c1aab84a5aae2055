//! The errors a command can end with, and their exit codes (DESIGN.md: 0 all good,
//! 1 runtime failure or refusal, 2 usage or config error with nothing touched).

use thiserror::Error;

use crate::config::ConfigError;
use crate::host::sysfs::ReadError;
use crate::lock::LockError;
use crate::plan::PlanError;
use crate::state::StateError;

/// A command's fatal error.
#[derive(Debug, Error)]
pub enum Error {
    /// The config cannot be read or is invalid (exit 2).
    #[error("invalid configuration: {0}")]
    Config(ConfigError),
    /// The config contradicts itself on this host (exit 2).
    #[error("invalid configuration: {0}")]
    Plan(PlanError),
    /// sysfs could not be read (exit 1).
    #[error("cannot read the host's PCI devices")]
    Host(#[from] ReadError),
    /// The state file failed (exit 1).
    #[error(transparent)]
    State(#[from] StateError),
    /// The run lock failed or another run holds it (exit 1).
    #[error(transparent)]
    Lock(#[from] LockError),
    /// A bad command-line argument found after parsing (exit 2).
    #[error("{0}")]
    Usage(String),
    /// A runtime failure already logged in full, summed up in one line (exit 1): a VM's
    /// attach that was refused or rolled back.
    #[error("{0}")]
    Failed(String),
    /// No IOMMU groups: VFIO cannot work on this host (exit 1).
    #[error(
        "no IOMMU groups in {path}: the IOMMU is off, so no device can be passed through.\n\
         Turn it on: enable VT-d (Intel) or AMD-Vi/IOMMU (AMD) in the firmware setup, and on \
         Intel boot with intel_iommu=on on the kernel command line (AMD enables it by \
         default; amd_iommu=on if it was turned off), then reboot."
    )]
    NoIommu {
        /// The groups directory that was empty or absent.
        path: String,
    },
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) | Error::Plan(_) | Error::Usage(_) => 2,
            Error::Host(_)
            | Error::NoIommu { .. }
            | Error::State(_)
            | Error::Lock(_)
            | Error::Failed(_) => 1,
        }
    }
}

// Written out (not `#[from]`) so the config error is not also reported as a cause: its
// message already is the whole story (file:line:column: what is wrong).
impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::Config(e)
    }
}

impl From<PlanError> for Error {
    fn from(e: PlanError) -> Self {
        Error::Plan(e)
    }
}
