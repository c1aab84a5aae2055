//! Apply's timeouts, and whether this run is the initramfs claim.

use std::time::Duration;

/// Timeouts for the waits apply does.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// How long to wait for a device to show the target driver after `drivers_probe`
    /// (probing can be asynchronous), and for a driver directory after loading a module.
    pub bind_timeout: Duration,
    /// How long to wait for `/dev/vfio/<group>` to appear after the group is bound.
    pub node_timeout: Duration,
    /// The run is the claim in the initramfs (`vfio-bind claim`): records are marked
    /// `early` ([`crate::state::Record::early`]).
    pub early: bool,
}

impl Default for Options {
    /// 10 000 ms for binds, 5 000 ms for the device node; not the initramfs claim.
    fn default() -> Self {
        Options {
            bind_timeout: Duration::from_millis(10_000),
            node_timeout: Duration::from_millis(5_000),
            early: false,
        }
    }
}
