//! The user database that names in `user = ` / `group = ` resolve through: the system's
//! (NSS: `getpwnam(3)`, `getgrnam(3)`, through nix) on the running host, and the root's
//! own `/etc/passwd` and `/etc/group` (passwd(5), group(5)) under `--root DIR`, as
//! `systemd-tmpfiles --root` and `systemd-sysusers --root` read them. So a check under a
//! root never depends on the machine it runs on. The config is parsed without any lookup
//! (the initramfs has no NSS); names are resolved only where `/dev/vfio/<group>` is owned
//! or compared.

use std::fs;

use crate::root::Root;

/// Which database: user (`passwd`) or group (`group`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Users: `getpwnam(3)`, `/etc/passwd`.
    User,
    /// Groups: `getgrnam(3)`, `/etc/group`.
    Group,
}

impl Kind {
    /// `user` or `group`, as the config key is named.
    pub fn key(self) -> &'static str {
        match self {
            Kind::User => "user",
            Kind::Group => "group",
        }
    }

    fn file(self) -> &'static str {
        match self {
            Kind::User => "/etc/passwd",
            Kind::Group => "/etc/group",
        }
    }
}

/// A lookup that could not be answered (as opposed to "no such name").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupError(pub String);

/// The user database of a [`Root`].
#[derive(Debug, Clone)]
pub struct Users {
    root: Root,
}

impl Users {
    /// The database for `root`: NSS when it is the running host, its files otherwise.
    pub fn new(root: &Root) -> Self {
        Users { root: root.clone() }
    }

    /// The id of `name` (uid or gid); `Ok(None)` when there is no such name.
    ///
    /// Errors: [`LookupError`] when NSS fails (the errno's description).
    pub fn id(&self, kind: Kind, name: &str) -> Result<Option<u32>, LookupError> {
        if self.root.is_host() {
            let r = match kind {
                Kind::User => nix::unistd::User::from_name(name).map(|u| u.map(|u| u.uid.as_raw())),
                Kind::Group => {
                    nix::unistd::Group::from_name(name).map(|g| g.map(|g| g.gid.as_raw()))
                }
            };
            return r.map_err(|e| LookupError(e.desc().to_string()));
        }
        Ok(self
            .entries(kind)?
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, id)| id))
    }

    /// The name of id `id`, or the number as text when it has none.
    pub fn name(&self, kind: Kind, id: u32) -> String {
        if self.root.is_host() {
            let name = match kind {
                Kind::User => nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(id))
                    .ok()
                    .flatten()
                    .map(|u| u.name),
                Kind::Group => nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(id))
                    .ok()
                    .flatten()
                    .map(|g| g.name),
            };
            return name.unwrap_or_else(|| id.to_string());
        }
        self.entries(kind)
            .unwrap_or_default()
            .into_iter()
            .find(|(_, i)| *i == id)
            .map_or_else(|| id.to_string(), |(n, _)| n)
    }

    /// `name:password:id:...` lines of the root's file; a missing file has no entries.
    ///
    /// Errors: [`LookupError`] when the file exists but cannot be read.
    fn entries(&self, kind: Kind) -> Result<Vec<(String, u32)>, LookupError> {
        let path = self.root.path(kind.file());
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(LookupError(format!("{}: {e}", path.display()))),
        };
        Ok(text
            .lines()
            .filter_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?;
                let id = f.nth(1)?.parse().ok()?;
                (!name.is_empty() && !name.starts_with('#')).then(|| (name.to_string(), id))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_under_a_root() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("etc")).unwrap();
        fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n",
        )
        .unwrap();
        fs::write(d.path().join("etc/group"), "root:x:0:\nkvm:x:993:alice\n").unwrap();
        let u = Users::new(&Root::new(d.path()));
        assert_eq!(u.id(Kind::User, "alice"), Ok(Some(1000)));
        assert_eq!(u.id(Kind::Group, "kvm"), Ok(Some(993)));
        assert_eq!(u.id(Kind::User, "bob"), Ok(None));
        assert_eq!(u.name(Kind::Group, 993), "kvm");
        assert_eq!(u.name(Kind::User, 4242), "4242");
        let empty = Users::new(&Root::new(d.path().join("nothing")));
        assert_eq!(empty.id(Kind::User, "root"), Ok(None));
    }
}
