//! The kernel command line (`/proc/cmdline`, under the root): the rescue switch
//! `vfio-bind=off`, which skips the claim in the initramfs, the hotplug claim and (through
//! the unit's `ConditionKernelCommandLine=!vfio-bind=off`) the boot-time `apply`, so that a
//! user who passed through the host's only GPU can get a console back from the boot menu.

use std::fs;

use crate::root::Root;

/// The parameter that turns vfio-bind off for one boot.
pub const OFF: &str = "vfio-bind=off";

/// True when the kernel command line holds [`OFF`] as a whole word (the kernel splits
/// parameters at spaces outside double quotes: `Documentation/admin-guide/kernel-parameters.rst`).
/// An unreadable `/proc/cmdline` (no `/proc` mounted) is treated as not off.
pub fn off(root: &Root) -> bool {
    fs::read_to_string(root.path("/proc/cmdline")).is_ok_and(|c| words(&c).any(|w| w == OFF))
}

/// The parameters of a command line, quotes removed (`a="b c"` is one word, `a=b c`).
fn words(line: &str) -> impl Iterator<Item = String> + '_ {
    let mut out = Vec::new();
    let (mut word, mut quoted) = (String::new(), false);
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out.into_iter()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_only_as_a_whole_parameter() {
        let w = |l: &str| words(l).any(|w| w == OFF);
        assert!(w("BOOT_IMAGE=/vmlinuz root=/dev/vda vfio-bind=off quiet\n"));
        assert!(w("vfio-bind=off"));
        assert!(!w("root=/dev/vda quiet"));
        assert!(!w("vfio-bind=offx rd.vfio-bind=off"));
        assert!(!w("init=\"/bin/sh vfio-bind=off\""));
    }
}
