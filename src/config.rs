//! The configuration: `/etc/vfio-bind.toml` plus drop-ins `/etc/vfio-bind.d/*.toml`,
//! parsed, merged and validated into a typed [`Config`].
//!
//! Every error names the file and, where the TOML has one, the line and column
//! (1-based) of the offending value, so the user can jump to it. Loading touches nothing
//! on the host but reading these files and looking up users and groups through NSS.

use std::fmt;
use std::fs;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;
use toml::Spanned;

use crate::pci::{PciAddress, PciId};
use crate::sysfs::Root;

/// Default main config file (taken under `--root`).
pub const DEFAULT_CONFIG: &str = "/etc/vfio-bind.toml";
/// Default drop-in directory (taken under `--root`); `*.toml` files merge in lexical order.
pub const DEFAULT_DROPIN_DIR: &str = "/etc/vfio-bind.d";
/// Driver used when the config names none.
pub const DEFAULT_DRIVER: &str = "vfio-pci";

/// A configuration error. Displays as `file:line:column: message` (or `file: message`
/// where there is no position). Every such error exits 2 before the host is touched.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// A problem at a known place in a file.
    #[error("{}:{line}:{column}: {message}", file.display())]
    At {
        /// The config file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column (in characters).
        column: usize,
        /// What is wrong and what is expected.
        message: String,
    },
    /// A problem with a whole file (or a combination of entries).
    #[error("{}: {message}", file.display())]
    File {
        /// The config file.
        file: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The file exists but cannot be read.
    #[error("cannot read {}: {source}", file.display())]
    Read {
        /// The config file.
        file: PathBuf,
        /// The I/O error (its errno).
        #[source]
        source: io::Error,
    },
}

/// Where a config item came from: file, 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The config file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// How an entry selects devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selector {
    /// One device by PCI address.
    Address(PciAddress),
    /// Every device with this vendor:device ID.
    Id(PciId),
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Address(a) => write!(f, "address {a}"),
            Selector::Id(i) => write!(f, "id {i}"),
        }
    }
}

/// A user or group for `/dev/vfio/<group>`: the numeric id and the name it was given by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// uid or gid.
    pub id: u32,
    /// The name as configured (or the number, when given as one).
    pub name: String,
}

/// Ownership to put on `/dev/vfio/<group>`; each part `None` leaves it as udev made it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ownership {
    /// Owner.
    pub user: Option<Principal>,
    /// Group.
    pub group: Option<Principal>,
    /// Permission bits (0..=0o7777).
    pub mode: Option<u32>,
}

impl Ownership {
    /// True when nothing is asked for.
    pub fn is_empty(&self) -> bool {
        self.user.is_none() && self.group.is_none() && self.mode.is_none()
    }
}

impl fmt::Display for Ownership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(u) = &self.user {
            parts.push(format!("owner {}", u.name));
        }
        if let Some(g) = &self.group {
            parts.push(format!("group {}", g.name));
        }
        if let Some(m) = self.mode {
            parts.push(format!("mode {m:04o}"));
        }
        if parts.is_empty() {
            f.write_str("ownership as udev made it")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// One validated `[[device]]` entry, with the defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// 1-based position among all entries after merging (main file first).
    pub index: usize,
    /// Where the entry's table starts.
    pub origin: Origin,
    /// Which devices it selects.
    pub selector: Selector,
    /// Narrows an `id` match to this subsystem vendor:device.
    pub subsystem: Option<PciId>,
    /// The driver to bind the matched devices (and their group) to.
    pub driver: String,
    /// Ownership for the group's `/dev/vfio/<group>`.
    pub ownership: Ownership,
    /// Permit binding the boot VGA device.
    pub allow_boot_vga: bool,
    /// Fail (exit 1) if nothing matches, instead of warning.
    pub required: bool,
}

/// The merged, validated configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// Files read, in merge order.
    pub files: Vec<PathBuf>,
    /// The top-level `driver` (default [`DEFAULT_DRIVER`]); used for group members that no
    /// entry names.
    pub driver: String,
    /// Every entry, in merge order.
    pub entries: Vec<Entry>,
}

/// `user`/`group` value: a name, or a numeric id (as a TOML integer or a digit string).
#[derive(Debug)]
enum NameOrId {
    Id(i64),
    Name(String),
}

impl<'de> Deserialize<'de> for NameOrId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = NameOrId;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a name (\"kvm\") or a numeric id (993)")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<NameOrId, E> {
                Ok(NameOrId::Id(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<NameOrId, E> {
                Ok(NameOrId::Name(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    driver: Option<Spanned<String>>,
    user: Option<Spanned<NameOrId>>,
    group: Option<Spanned<NameOrId>>,
    mode: Option<Spanned<String>>,
    #[serde(default)]
    device: Vec<Spanned<RawDevice>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    address: Option<Spanned<String>>,
    id: Option<Spanned<String>>,
    subsystem: Option<Spanned<String>>,
    driver: Option<Spanned<String>>,
    user: Option<Spanned<NameOrId>>,
    group: Option<Spanned<NameOrId>>,
    mode: Option<Spanned<String>>,
    allow_boot_vga: Option<bool>,
    required: Option<bool>,
}

/// Which files to read.
#[derive(Debug, Clone)]
pub enum Source {
    /// `/etc/vfio-bind.toml` (may be absent) and `/etc/vfio-bind.d/*.toml` under the root.
    Default(Root),
    /// Exactly this file (must exist); no drop-ins.
    File(PathBuf),
}

/// One file's text and name, for turning byte spans into line:column.
struct Text<'a> {
    file: &'a Path,
    src: &'a str,
}

impl Text<'_> {
    fn origin(&self, span: &Range<usize>) -> Origin {
        let start = span.start.min(self.src.len());
        let before = &self.src[..start];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = self.src[line_start..start].chars().count() + 1;
        Origin {
            file: self.file.to_path_buf(),
            line,
            column,
        }
    }

    fn err(&self, span: &Range<usize>, message: impl Into<String>) -> ConfigError {
        let o = self.origin(span);
        ConfigError::At {
            file: o.file,
            line: o.line,
            column: o.column,
            message: message.into(),
        }
    }
}

/// Top-level defaults being merged: the last file that sets a key wins.
#[derive(Default)]
struct Defaults {
    driver: Option<String>,
    user: Option<Principal>,
    group: Option<Principal>,
    mode: Option<u32>,
}

/// An entry whose own keys are validated but whose defaults are not applied yet.
struct Partial {
    origin: Origin,
    selector: Selector,
    subsystem: Option<PciId>,
    driver: Option<String>,
    user: Option<Principal>,
    group: Option<Principal>,
    mode: Option<u32>,
    allow_boot_vga: bool,
    required: bool,
}

/// Read, merge and validate the configuration.
///
/// Errors: [`ConfigError`] for an unreadable file, a TOML syntax error, an unknown key,
/// an entry with both or neither of `address`/`id`, malformed hex, a bad `mode`, a driver
/// that is not a vfio driver or `pci-stub`, or a user or group that does not exist.
pub fn load(source: &Source) -> Result<Config, ConfigError> {
    let files = match source {
        Source::File(p) => {
            if !p.exists() {
                return Err(ConfigError::Read {
                    file: p.clone(),
                    source: io::Error::from(io::ErrorKind::NotFound),
                });
            }
            vec![p.clone()]
        }
        Source::Default(root) => {
            let mut files = Vec::new();
            let main = root.path(DEFAULT_CONFIG);
            // A dangling link or an unreadable /etc is an error, not "no config".
            match fs::symlink_metadata(&main) {
                Ok(_) => files.push(main),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(ConfigError::Read { file: main, source }),
            }
            files.extend(dropins(&root.path(DEFAULT_DROPIN_DIR))?);
            files
        }
    };
    let mut texts = Vec::new();
    for file in &files {
        let src = fs::read_to_string(file).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        texts.push(src);
    }
    let inputs: Vec<(&Path, &str)> = files
        .iter()
        .zip(&texts)
        .map(|(f, s)| (f.as_path(), s.as_str()))
        .collect();
    parse(&inputs)
}

/// Drop-in files in `dir` (`*.toml`), in lexical order of their names.
fn dropins(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let pattern = format!("{}/*.toml", glob::Pattern::escape(&dir.to_string_lossy()));
    let mut files = Vec::new();
    let paths = glob::glob(&pattern).map_err(|e| ConfigError::File {
        file: dir.to_path_buf(),
        message: e.to_string(),
    })?;
    for p in paths {
        let p = p.map_err(|e| ConfigError::Read {
            file: e.path().to_path_buf(),
            source: io::Error::new(e.error().kind(), e.error().to_string()),
        })?;
        if p.is_file() {
            files.push(p);
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

/// Parse, merge and validate already-read files, given as (name, text) in merge order.
///
/// Errors: as [`load`].
pub fn parse(files: &[(&Path, &str)]) -> Result<Config, ConfigError> {
    let mut defaults = Defaults::default();
    let mut partials = Vec::new();
    for (file, src) in files {
        let text = Text { file, src };
        let raw: RawFile = toml::from_str(src).map_err(|e| match e.span() {
            Some(span) => text.err(&span, e.message().to_string()),
            None => ConfigError::File {
                file: file.to_path_buf(),
                message: e.message().to_string(),
            },
        })?;
        if let Some(d) = &raw.driver {
            defaults.driver = Some(driver_name(&text, d)?);
        }
        if let Some(u) = &raw.user {
            defaults.user = Some(principal(&text, u, Kind::User)?);
        }
        if let Some(g) = &raw.group {
            defaults.group = Some(principal(&text, g, Kind::Group)?);
        }
        if let Some(m) = &raw.mode {
            defaults.mode = Some(mode(&text, m)?);
        }
        for dev in &raw.device {
            partials.push(entry(&text, dev)?);
        }
    }
    let driver = defaults
        .driver
        .clone()
        .unwrap_or_else(|| DEFAULT_DRIVER.to_string());
    let entries = partials
        .into_iter()
        .enumerate()
        .map(|(i, p)| Entry {
            index: i + 1,
            origin: p.origin,
            selector: p.selector,
            subsystem: p.subsystem,
            driver: p.driver.unwrap_or_else(|| driver.clone()),
            ownership: Ownership {
                user: p.user.or_else(|| defaults.user.clone()),
                group: p.group.or_else(|| defaults.group.clone()),
                mode: p.mode.or(defaults.mode),
            },
            allow_boot_vga: p.allow_boot_vga,
            required: p.required,
        })
        .collect();
    Ok(Config {
        files: files.iter().map(|(f, _)| f.to_path_buf()).collect(),
        driver,
        entries,
    })
}

fn entry(text: &Text, dev: &Spanned<RawDevice>) -> Result<Partial, ConfigError> {
    let span = dev.span();
    let d = dev.get_ref();
    let selector = match (&d.address, &d.id) {
        (Some(a), None) => Selector::Address(
            a.get_ref()
                .parse()
                .map_err(|e: crate::pci::ParseError| text.err(&a.span(), e.to_string()))?,
        ),
        (None, Some(i)) => Selector::Id(
            i.get_ref()
                .parse()
                .map_err(|e: crate::pci::ParseError| text.err(&i.span(), e.to_string()))?,
        ),
        (Some(_), Some(i)) => {
            return Err(text.err(
                &i.span(),
                "a [[device]] entry takes exactly one of `address` or `id`, not both",
            ))
        }
        (None, None) => {
            return Err(text.err(
                &span,
                "a [[device]] entry needs `address = \"dddd:bb:dd.f\"` or `id = \"vvvv:dddd\"`",
            ))
        }
    };
    let subsystem = match &d.subsystem {
        None => None,
        Some(s) => {
            if matches!(selector, Selector::Address(_)) {
                return Err(text.err(
                    &s.span(),
                    "`subsystem` narrows an `id` match; it cannot be combined with `address`",
                ));
            }
            Some(
                s.get_ref()
                    .parse::<PciId>()
                    .map_err(|e| text.err(&s.span(), format!("subsystem: {e}")))?,
            )
        }
    };
    Ok(Partial {
        origin: text.origin(&span),
        selector,
        subsystem,
        driver: d
            .driver
            .as_ref()
            .map(|x| driver_name(text, x))
            .transpose()?,
        user: d
            .user
            .as_ref()
            .map(|x| principal(text, x, Kind::User))
            .transpose()?,
        group: d
            .group
            .as_ref()
            .map(|x| principal(text, x, Kind::Group))
            .transpose()?,
        mode: d.mode.as_ref().map(|x| mode(text, x)).transpose()?,
        allow_boot_vga: d.allow_boot_vga.unwrap_or(false),
        required: d.required.unwrap_or(false),
    })
}

/// A driver must be one that makes a group viable for VFIO: `vfio-pci`, a vfio variant
/// driver (its name contains `vfio`), or `pci-stub` (`Documentation/driver-api/vfio.rst`).
fn driver_name(text: &Text, d: &Spanned<String>) -> Result<String, ConfigError> {
    let name = d.get_ref();
    let valid_chars = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !valid_chars {
        return Err(text.err(&d.span(), format!("invalid driver name {name:?}")));
    }
    if name == "vfio_pci" || name == "pci_stub" {
        return Err(text.err(
            &d.span(),
            format!(
                "{name:?} is the module name; the driver is called {:?} in sysfs",
                name.replace('_', "-")
            ),
        ));
    }
    if !(name.contains("vfio") || name == "pci-stub") {
        return Err(text.err(
            &d.span(),
            format!(
                "driver {name:?} would not make the group usable by VFIO: use \"vfio-pci\", \
                 a vfio variant driver, or \"pci-stub\""
            ),
        ));
    }
    Ok(name.clone())
}

#[derive(Clone, Copy)]
enum Kind {
    User,
    Group,
}

fn principal(text: &Text, v: &Spanned<NameOrId>, kind: Kind) -> Result<Principal, ConfigError> {
    let what = match kind {
        Kind::User => "user",
        Kind::Group => "group",
    };
    let numeric = |n: i64| -> Result<Principal, ConfigError> {
        u32::try_from(n)
            .ok()
            .filter(|&n| n != u32::MAX)
            .map(|id| Principal {
                id,
                name: id.to_string(),
            })
            .ok_or_else(|| text.err(&v.span(), format!("{what} id {n} is out of range")))
    };
    match v.get_ref() {
        NameOrId::Id(n) => numeric(*n),
        NameOrId::Name(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            match s.parse() {
                Ok(n) => numeric(n),
                Err(_) => Err(text.err(&v.span(), format!("{what} id {s} is out of range"))),
            }
        }
        NameOrId::Name(name) => {
            let looked_up = match kind {
                Kind::User => nix::unistd::User::from_name(name).map(|u| u.map(|u| u.uid.as_raw())),
                Kind::Group => {
                    nix::unistd::Group::from_name(name).map(|g| g.map(|g| g.gid.as_raw()))
                }
            };
            match looked_up {
                Ok(Some(id)) => Ok(Principal {
                    id,
                    name: name.clone(),
                }),
                Ok(None) => Err(text.err(
                    &v.span(),
                    format!("unknown {what} {name:?} (not in the system's {what} database)"),
                )),
                Err(e) => Err(text.err(
                    &v.span(),
                    format!("cannot look up {what} {name:?}: {}", e.desc()),
                )),
            }
        }
    }
}

fn mode(text: &Text, m: &Spanned<String>) -> Result<u32, ConfigError> {
    let s = m.get_ref();
    let digits = s.strip_prefix("0o").unwrap_or(s);
    let ok = !digits.is_empty()
        && digits.len() <= 4
        && digits.bytes().all(|b| (b'0'..=b'7').contains(&b));
    if !ok {
        return Err(text.err(
            &m.span(),
            format!("invalid mode {s:?}: expected an octal string like \"0660\""),
        ));
    }
    Ok(u32::from_str_radix(digits, 8).expect("checked octal"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(src: &str) -> Result<Config, ConfigError> {
        parse(&[(Path::new("/etc/vfio-bind.toml"), src)])
    }

    fn err(src: &str) -> String {
        one(src).unwrap_err().to_string()
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
        assert_eq!(a.ownership.user.as_ref().unwrap().id, 0);
        assert_eq!(a.ownership.group.as_ref().unwrap().name, "0");
        assert_eq!(a.ownership.mode, Some(0o660));
        assert_eq!((a.origin.line, a.origin.column), (7, 1));
        assert!(!a.required && !a.allow_boot_vga);
        let b = &c.entries[1];
        assert_eq!(b.selector, Selector::Id("10de:1c03".parse().unwrap()));
        assert_eq!(b.subsystem, Some("1458:d000".parse().unwrap()));
        assert_eq!(b.ownership.mode, Some(0o600));
        assert!(b.required && b.allow_boot_vga);
        assert_eq!(b.driver, "vfio-pci");
    }

    #[test]
    fn empty_config_is_valid_and_binds_nothing() {
        let c = one("# nothing\n").unwrap();
        assert!(c.entries.is_empty());
        assert_eq!(c.driver, "vfio-pci");
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
        assert_eq!(c.entries[0].ownership.user.as_ref().unwrap().id, 1234);
        assert_eq!(c.entries[0].ownership.group.as_ref().unwrap().id, 4321);
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
}
