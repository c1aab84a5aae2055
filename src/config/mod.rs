//! The configuration: `/etc/vfio-bind.toml` plus drop-ins `/etc/vfio-bind.d/*.toml`,
//! read in stages, each its own module:
//!
//! 1. [`files`]: which files, and their text;
//! 2. [`fragment`]: each file parsed and its values checked (`file:line:column` on error);
//! 3. [`merge`]: the fragments merged in order;
//! 4. [`validate`]: defaults applied, entries numbered → [`Config`].
//!
//! Loading touches nothing on the host but reading these files. User and group names are
//! not looked up here (the initramfs has no user database): they are resolved where
//! `/dev/vfio/<group>` is owned ([`crate::owner`]), still before anything is touched.

pub mod files;
pub mod fragment;
pub mod merge;
pub mod model;
pub mod validate;

use std::path::Path;

pub use files::Source;
pub use model::{
    Config, ConfigError, Entry, NameOrId, Origin, Ownership, Principal, Selector, VmProfile,
    DEFAULT_CONFIG, DEFAULT_DRIVER, DEFAULT_DROPIN_DIR,
};

/// Read, merge and validate the configuration.
///
/// Errors: [`ConfigError`] for an unreadable file, a TOML syntax error, an unknown key,
/// an entry with both or neither of `address`/`id`, malformed hex, a bad `mode`, a driver
/// that is not a vfio driver or `pci-stub`, or an id out of range.
pub fn load(source: &Source) -> Result<Config, ConfigError> {
    let texts = files::read(source)?;
    let inputs: Vec<(&Path, &str)> = texts
        .iter()
        .map(|(f, s)| (f.as_path(), s.as_str()))
        .collect();
    parse(&inputs)
}

/// Parse, merge and validate already-read files, given as (name, text) in merge order.
///
/// Errors: as [`load`].
pub fn parse(files: &[(&Path, &str)]) -> Result<Config, ConfigError> {
    let mut fragments = Vec::new();
    for (file, src) in files {
        fragments.push((file.to_path_buf(), fragment::parse(file, src)?));
    }
    validate::validate(merge::merge(fragments))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::owner::check_config;
    use crate::root::Root;
    use crate::users::Users;

    fn one(src: &str) -> Result<Config, ConfigError> {
        parse(&[(Path::new("/etc/vfio-bind.toml"), src)])
    }

    /// Parse, then resolve every user and group as every command does before touching
    /// the host (here through this machine's user database, the `/` root).
    fn err(src: &str) -> String {
        one(src)
            .and_then(|c| check_config(&Users::new(&Root::new("/")), &c))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn full_schema_parses_with_defaults_applied() {
        let c = one(r#"
driver = "vfio-pci"
user = "root"
group = 0
mode = "0660"

[[device]]
address = "21:00.3"

[[device]]
id = "10de:1c03"
subsystem = "1458:d000"
allow_boot_vga = true
required = true
mode = "0600"
"#)
        .unwrap();
        assert_eq!(c.entries.len(), 2);
        let a = &c.entries[0];
        assert_eq!(
            a.selector,
            Selector::Address("0000:21:00.3".parse().unwrap())
        );
        // "root" resolves to uid 0 where the node is owned (not while parsing).
        let users = Users::new(&Root::new("/"));
        assert_eq!(
            crate::owner::resolve(&users, &a.ownership).unwrap().uid,
            Some(0)
        );
        assert_eq!(a.ownership.group.as_ref().unwrap().to_string(), "0");
        assert_eq!(a.ownership.mode, Some(0o660));
        assert_eq!((a.origin.line, a.origin.column), (7, 1));
        assert!(!a.required && !a.allow_boot_vga);
        let b = &c.entries[1];
        assert_eq!(b.selector, Selector::Id("10de:1c03".parse().unwrap()));
        assert_eq!(b.subsystem, Some("1458:d000".parse().unwrap()));
        assert_eq!(b.ownership.mode, Some(0o600));
        assert!(b.required && b.allow_boot_vga);
        assert_eq!(b.driver.as_str(), "vfio-pci");
    }

    #[test]
    fn empty_config_is_valid_and_binds_nothing() {
        let c = one("# nothing\n").unwrap();
        assert!(c.entries.is_empty());
        assert_eq!(c.driver.as_str(), "vfio-pci");
    }

    #[test]
    fn unknown_key_names_line_and_column() {
        let e = err("[[device]]\naddress = \"01:00.0\"\nallow_boot_gva = true\n");
        assert!(e.starts_with("/etc/vfio-bind.toml:3:1: "), "{e}");
        assert!(e.contains("allow_boot_gva"), "{e}");
        let e = err("drivr = \"vfio-pci\"\n");
        assert!(e.starts_with("/etc/vfio-bind.toml:1:1: "), "{e}");
    }

    #[test]
    fn both_or_neither_selector_is_an_error() {
        let e = err("[[device]]\naddress = \"01:00.0\"\nid = \"10de:1c03\"\n");
        assert!(e.starts_with("/etc/vfio-bind.toml:3:6: "), "{e}");
        assert!(e.contains("not both"), "{e}");
        let e = err("\n[[device]]\nrequired = true\n");
        assert!(e.starts_with("/etc/vfio-bind.toml:2:1: "), "{e}");
        assert!(e.contains("needs `address"), "{e}");
    }

    #[test]
    fn bad_hex_and_mode_point_at_the_value() {
        let e = err("[[device]]\nid = \"10de:1c0g\"\n");
        assert!(
            e.starts_with("/etc/vfio-bind.toml:2:6: invalid PCI ID"),
            "{e}"
        );
        let e = err("[[device]]\naddress = \"0000:01:20.0\"\n");
        assert!(
            e.starts_with("/etc/vfio-bind.toml:2:11: invalid PCI address"),
            "{e}"
        );
        let e = err("mode = \"0668\"\n");
        assert!(
            e.starts_with("/etc/vfio-bind.toml:1:8: invalid mode"),
            "{e}"
        );
        let e = err("mode = 660\n");
        assert!(e.starts_with("/etc/vfio-bind.toml:1:8: "), "{e}");
        let e = err("[[device]]\nid = \"10de:1c03\"\nsubsystem = \"1458\"\n");
        assert!(e.starts_with("/etc/vfio-bind.toml:3:13: subsystem"), "{e}");
    }

    #[test]
    fn syntax_error_has_position() {
        let e = err("[[device]\naddress = \"01:00.0\"\n");
        assert!(e.starts_with("/etc/vfio-bind.toml:1:"), "{e}");
    }

    #[test]
    fn unknown_user_and_group_are_errors() {
        let e = err("user = \"no-such-user-vfio-bind\"\n");
        assert!(
            e.starts_with("/etc/vfio-bind.toml:1:8: unknown user"),
            "{e}"
        );
        let e = err("[[device]]\nid = \"10de:1c03\"\ngroup = \"no-such-group-vfio-bind\"\n");
        assert!(
            e.starts_with("/etc/vfio-bind.toml:3:9: unknown group"),
            "{e}"
        );
        let e = err("user = -1\n");
        assert!(e.contains("out of range"), "{e}");
        // numeric ids need no lookup
        let c = one("user = \"1234\"\ngroup = 4321\n[[device]]\nid = \"10de:1c03\"\n").unwrap();
        assert_eq!(
            c.entries[0].ownership.user.as_ref().unwrap().value,
            NameOrId::Id(1234)
        );
        assert_eq!(
            c.entries[0].ownership.group.as_ref().unwrap().value,
            NameOrId::Id(4321)
        );
    }

    #[test]
    fn non_vfio_driver_is_refused() {
        let e = err("driver = \"nvidia\"\n");
        assert!(e.contains("would not make the group usable by VFIO"), "{e}");
        assert!(one("driver = \"pci-stub\"\n").is_ok());
        assert!(one("driver = \"mlx5_vfio_pci\"\n").is_ok());
        assert!(err("driver = \"../vfio\"\n").contains("invalid driver name"));
        let e = err("driver = \"vfio_pci\"\n");
        assert!(e.contains("the driver is called \"vfio-pci\""), "{e}");
        let e = err("user = true\n");
        assert!(e.contains("a name (\"kvm\") or a numeric id"), "{e}");
        let e = err("user = \"99999999999999999999\"\n");
        assert!(
            e.contains("user id 99999999999999999999 is out of range"),
            "{e}"
        );
    }

    #[test]
    fn dropins_merge_in_order_and_override_defaults() {
        let c = parse(&[
            (
                Path::new("/etc/vfio-bind.toml"),
                "mode = \"0600\"\n[[device]]\naddress = \"01:00.0\"\n",
            ),
            (
                Path::new("/etc/vfio-bind.d/10-gpu.toml"),
                "mode = \"0660\"\n[[device]]\nid = \"10de:1c03\"\n",
            ),
        ])
        .unwrap();
        assert_eq!(c.entries.len(), 2);
        assert_eq!(c.entries[0].ownership.mode, Some(0o660));
        assert_eq!(
            c.entries[1].origin.file,
            Path::new("/etc/vfio-bind.d/10-gpu.toml")
        );
        assert_eq!(c.entries[1].index, 2);
        let e = parse(&[
            (Path::new("/etc/vfio-bind.toml"), ""),
            (Path::new("/etc/vfio-bind.d/20-x.toml"), "\n\nbogus = 1\n"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("/etc/vfio-bind.d/20-x.toml:3:1: "), "{e}");
    }

    #[test]
    fn an_overridden_top_level_name_must_still_resolve() {
        let c = parse(&[
            (
                Path::new("/etc/vfio-bind.toml"),
                "user = \"no-such-user-vfio-bind\"\n",
            ),
            (Path::new("/etc/vfio-bind.d/10-x.toml"), "user = 0\n"),
        ])
        .unwrap();
        let e = check_config(&Users::new(&Root::new("/")), &c)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("/etc/vfio-bind.toml:1:8: unknown user"),
            "{e}"
        );
    }
}
