//! `vfio-bind check`: validate the config and resolve it on this host; writes nothing.

use super::Context;
use crate::error::Error;

/// Print the resolved plan. Exit 0 when `apply` could bind everything, 1 when a group
/// would be refused or a `required` entry matches nothing, 2 on a config error.
pub fn run(ctx: &Context) -> Result<u8, Error> {
    let (config, _lock, _host, plan) = ctx.plan(None)?;
    for f in &config.files {
        println!("config: {}", f.display());
    }
    if config.files.is_empty() {
        println!("config: none found (nothing will be bound)");
    }
    print!("{plan}");
    Ok(u8::from(plan.has_errors()))
}
