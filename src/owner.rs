//! Ownership of `/dev/vfio/<group>` resolved to numbers: the configured `user` and
//! `group` looked up in the root's user database ([`crate::users`]), with the configured
//! `mode`. The form apply sets, status compares, and the udev rules carry.
//!
//! Resolution happens where ownership is set or compared, never while parsing: an unknown
//! name is a config error naming file:line:column and the key, raised before anything on
//! the host is touched.

use crate::config::{Config, ConfigError, NameOrId, Ownership, Principal};
use crate::text::escape;
use crate::users::{Kind, Users};

/// Resolved ownership for one node; each part `None` is left as the kernel and udev made
/// it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeOwner {
    /// Owner uid.
    pub uid: Option<u32>,
    /// Group gid.
    pub gid: Option<u32>,
    /// Permission bits (0..=0o7777).
    pub mode: Option<u32>,
}

impl NodeOwner {
    /// True when nothing is asked for.
    pub fn is_empty(&self) -> bool {
        self.uid.is_none() && self.gid.is_none() && self.mode.is_none()
    }

    /// True when a node with `uid`, `gid` and permission bits `mode` has every part asked
    /// for.
    pub fn matches(&self, uid: u32, gid: u32, mode: u32) -> bool {
        self.uid.is_none_or(|u| u == uid)
            && self.gid.is_none_or(|g| g == gid)
            && self.mode.is_none_or(|m| m == mode & 0o7777)
    }
}

/// Resolve one principal.
///
/// Errors: [`ConfigError::At`] at the value's place: `unknown user "bob" (not in the
/// system's user database)`, or the lookup's own failure.
pub fn resolve_principal(users: &Users, kind: Kind, p: &Principal) -> Result<u32, ConfigError> {
    let what = kind.key();
    match &p.value {
        NameOrId::Id(n) => Ok(*n),
        NameOrId::Name(name) => match users.id(kind, name) {
            Ok(Some(id)) => Ok(id),
            Ok(None) => Err(ConfigError::at(
                &p.origin,
                format!(
                    "unknown {what} \"{}\" (not in the system's {what} database)",
                    escape(name)
                ),
            )),
            Err(e) => Err(ConfigError::at(
                &p.origin,
                format!(
                    "cannot look up {what} \"{}\": {}",
                    escape(name),
                    escape(&e.0)
                ),
            )),
        },
    }
}

/// Resolve a group's configured ownership.
///
/// Errors: as [`resolve_principal`].
pub fn resolve(users: &Users, o: &Ownership) -> Result<NodeOwner, ConfigError> {
    Ok(NodeOwner {
        uid: o
            .user
            .as_ref()
            .map(|u| resolve_principal(users, Kind::User, u))
            .transpose()?,
        gid: o
            .group
            .as_ref()
            .map(|g| resolve_principal(users, Kind::Group, g))
            .transpose()?,
        mode: o.mode,
    })
}

/// Resolved ownership by IOMMU group.
pub type Owners = std::collections::BTreeMap<u32, NodeOwner>;

/// Resolve the ownership of every group given as `(group, ownership)`; groups that ask
/// for nothing are left out.
///
/// Errors: the first [`ConfigError`] of [`resolve`].
pub fn resolve_groups<'a>(
    users: &Users,
    groups: impl IntoIterator<Item = (u32, &'a Ownership)>,
) -> Result<Owners, ConfigError> {
    let mut out = Owners::new();
    for (g, o) in groups {
        if !o.is_empty() {
            out.insert(g, resolve(users, o)?);
        }
    }
    Ok(out)
}

/// Resolve every `user` and `group` the config names, so that an unknown one is a config
/// error (exit 2) before anything on the host is read or touched, whether or not its
/// entry matches a device.
///
/// Errors: the first [`ConfigError`] of [`resolve_principal`], in file order.
pub fn check_config(users: &Users, config: &Config) -> Result<(), ConfigError> {
    for (key, p) in &config.principals {
        let kind = if *key == "user" {
            Kind::User
        } else {
            Kind::Group
        };
        resolve_principal(users, kind, p)?;
    }
    Ok(())
}
