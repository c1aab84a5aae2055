//! `vfio-bind check`: validate the config and resolve it on this host; writes nothing.

use super::Context;
use crate::error::Error;

/// Print the resolved plan. Exit 0 when `apply` could bind everything, 1 when a group
/// would be refused or a `required` entry matches nothing, 2 on a config error
/// (including a user or group the root's user database does not know).
///
/// Errors: as [`Context::plan`].
pub fn run(ctx: &Context) -> Result<u8, Error> {
    let p = ctx.plan(None)?;
    for f in &p.config.files {
        println!("config: {}", f.display());
    }
    if p.config.files.is_empty() {
        println!("config: none found (nothing will be bound)");
    }
    print!("{}", p.plan);
    for s in crate::host::initramfs::stale(&ctx.root, &p.config.files) {
        log::warn!("{s}");
    }
    Ok(u8::from(p.plan.has_errors()))
}
