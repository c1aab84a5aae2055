//! Apply's timeouts, and whether this run is the initramfs claim or a VM's attach.

use std::time::Duration;

/// Timeouts for the waits apply does.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long to wait for a device to show the target driver after `drivers_probe`
    /// (probing can be asynchronous), and for a driver directory after loading a module.
    pub bind_timeout: Duration,
    /// How long to wait for `/dev/vfio/<group>` to appear after the group is bound.
    pub node_timeout: Duration,
    /// The run is the claim in the initramfs (`vfio-bind claim`): records are marked
    /// `early` ([`crate::state::Record::early`]).
    pub early: bool,
    /// The libvirt domain this run attaches for (`vfio-bind attach`, the hook): new
    /// records name it ([`crate::state::Record::vm`]).
    pub vm: Option<std::sync::Arc<str>>,
    /// How long `attach` waits for processes holding the members' device nodes to close
    /// them.
    pub hold_timeout: Duration,
}

impl Default for Options {
    /// 10 000 ms for binds, 5 000 ms for the device node and for holders to let go; not
    /// the initramfs claim, no VM.
    fn default() -> Self {
        Options {
            bind_timeout: Duration::from_millis(10_000),
            node_timeout: Duration::from_millis(5_000),
            early: false,
            vm: None,
            hold_timeout: Duration::from_millis(5_000),
        }
    }
}
