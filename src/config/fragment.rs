//! Stage 1: one file's TOML, parsed (serde with `toml::Spanned` positions) and each value
//! checked on its own: selectors, hex IDs, driver names, modes, user and group as a name
//! or a number. No user database is consulted and no other file is looked at.

use std::fmt;
use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::config::model::{ConfigError, NameOrId, Origin, Ownership, Principal, Selector};
use crate::driver::{self, Driver};
use crate::pci::PciId;

/// The settings a file's top level, a `[[device]]` entry and a `[[vm]]` profile may each
/// carry, checked; absent ones come from the level above
/// ([`Settings::or`]).
#[derive(Debug, Default, Clone)]
pub struct Settings {
    /// `driver`.
    pub driver: Option<Driver>,
    /// `user`.
    pub user: Option<Principal>,
    /// `group`.
    pub group: Option<Principal>,
    /// `mode`.
    pub mode: Option<u32>,
}

impl Settings {
    /// `self`, each value it does not set taken from `defaults`.
    pub fn or(self, defaults: &Settings) -> Settings {
        Settings {
            driver: self.driver.or_else(|| defaults.driver.clone()),
            user: self.user.or_else(|| defaults.user.clone()),
            group: self.group.or_else(|| defaults.group.clone()),
            mode: self.mode.or(defaults.mode),
        }
    }

    /// The `user` and `group` values set, with their keys.
    pub fn principals(&self) -> impl Iterator<Item = (&'static str, &Principal)> {
        [("user", &self.user), ("group", &self.group)]
            .into_iter()
            .filter_map(|(k, p)| p.as_ref().map(|p| (k, p)))
    }

    /// The ownership part.
    pub fn ownership(&self) -> Ownership {
        Ownership {
            user: self.user.clone(),
            group: self.group.clone(),
            mode: self.mode,
        }
    }
}

/// One file, with every value checked and every position turned into an [`Origin`].
#[derive(Debug, Default)]
pub struct Fragment {
    /// The top-level `driver`, `user`, `group`, `mode`.
    pub settings: Settings,
    /// The `[[device]]` entries, in file order.
    pub devices: Vec<DeviceFragment>,
    /// The `[[vm]]` profiles, in file order.
    pub vms: Vec<VmFragment>,
}

/// One `[[vm]]` profile of a file, its defaults not applied yet.
#[derive(Debug)]
pub struct VmFragment {
    /// Where the profile's table starts.
    pub origin: Origin,
    /// `name`: the libvirt domain name.
    pub name: String,
    /// Where `name` is written.
    pub name_origin: Origin,
    /// `devices`: each selector with where it is written; `None` when absent (the
    /// domain XML's PCI `<hostdev>`s are used).
    pub devices: Option<Vec<(Selector, Origin)>>,
    /// `handover` (default false).
    pub handover: bool,
    /// `stop_units`, each checked as a unit name.
    pub stop_units: Vec<String>,
    /// `unload_modules`, each checked as a module name.
    pub unload_modules: Vec<String>,
    /// `driver`, `user`, `group`, `mode`.
    pub settings: Settings,
}

/// One `[[device]]` entry of a file, its defaults not applied yet.
#[derive(Debug)]
pub struct DeviceFragment {
    /// Where the entry's table starts.
    pub origin: Origin,
    /// `address` or `id`.
    pub selector: Selector,
    /// `subsystem`.
    pub subsystem: Option<PciId>,
    /// `driver`, `user`, `group`, `mode`.
    pub settings: Settings,
    /// `allow_boot_vga` (default false).
    pub allow_boot_vga: bool,
    /// `required` (default false).
    pub required: bool,
}

/// `user`/`group` value: a name, or a numeric id (as a TOML integer or a digit string).
#[derive(Debug)]
enum RawNameOrId {
    Id(i64),
    Name(String),
}

impl<'de> Deserialize<'de> for RawNameOrId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = RawNameOrId;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a name (\"kvm\") or a numeric id (993)")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RawNameOrId, E> {
                Ok(RawNameOrId::Id(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawNameOrId, E> {
                Ok(RawNameOrId::Name(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    driver: Option<Spanned<String>>,
    user: Option<Spanned<RawNameOrId>>,
    group: Option<Spanned<RawNameOrId>>,
    mode: Option<Spanned<String>>,
    #[serde(default)]
    device: Vec<Spanned<RawDevice>>,
    #[serde(default)]
    vm: Vec<Spanned<RawVm>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVm {
    name: Option<Spanned<String>>,
    devices: Option<Spanned<Vec<Spanned<String>>>>,
    handover: Option<bool>,
    stop_units: Option<Vec<Spanned<String>>>,
    unload_modules: Option<Vec<Spanned<String>>>,
    driver: Option<Spanned<String>>,
    user: Option<Spanned<RawNameOrId>>,
    group: Option<Spanned<RawNameOrId>>,
    mode: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    address: Option<Spanned<String>>,
    id: Option<Spanned<String>>,
    subsystem: Option<Spanned<String>>,
    driver: Option<Spanned<String>>,
    user: Option<Spanned<RawNameOrId>>,
    group: Option<Spanned<RawNameOrId>>,
    mode: Option<Spanned<String>>,
    allow_boot_vga: Option<bool>,
    required: Option<bool>,
}

/// One file's text and name, for turning byte spans into line:column. The line starts
/// are indexed once, so each position costs a binary search, not a scan from the top of
/// the file (a config of 60 000 entries stays linear).
struct Text<'a> {
    file: &'a Path,
    src: &'a str,
    /// Byte offset of each line's first character.
    lines: Vec<usize>,
}

impl<'a> Text<'a> {
    fn new(file: &'a Path, src: &'a str) -> Self {
        let lines = std::iter::once(0)
            .chain(src.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Text { file, src, lines }
    }

    fn origin(&self, span: &Range<usize>) -> Origin {
        let mut start = span.start.min(self.src.len());
        while !self.src.is_char_boundary(start) {
            start -= 1;
        }
        let line = self.lines.partition_point(|&l| l <= start);
        let line_start = self.lines[line - 1];
        let column = self.src[line_start..start].chars().count() + 1;
        Origin {
            file: self.file.to_path_buf(),
            line,
            column,
        }
    }

    fn err(&self, span: &Range<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError::at(&self.origin(span), message)
    }
}

/// The key path of a deserialization error as the user wrote it: `device[1].required`
/// (entries counted from 1, as everywhere else), the internal fields of
/// `toml::Spanned` (`$__serde_spanned_private_*`) left out.
fn key_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("[{}]", index + 1)),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if key.starts_with("$__") {
                    continue;
                }
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&crate::text::escape(key));
            }
            Segment::Unknown => {}
        }
    }
    out
}

/// serde's `invalid type: X, expected Y` said the way a config user reads it, naming the
/// key, with a hint for the usual slips; other messages (an unknown key, a syntax error)
/// name what is wrong themselves and are only escaped.
fn reword(key: &str, message: &str) -> String {
    use crate::text::escape;
    // Split first, then escape and cut each part: a long value must not cut away the key
    // and the hint.
    let Some((got, expected)) = message
        .strip_prefix("invalid type: ")
        .and_then(|m| m.rsplit_once(", expected "))
    else {
        // Unknown keys and syntax errors name what is wrong themselves, at its position.
        return escape(message);
    };
    let (got, expected) = (escape(got), escape(expected));
    let expected = match expected.as_str() {
        "a boolean" => "true or false",
        "a sequence" if key == "device" || key == "vm" => {
            return format!("{key}: each entry is a [[{key}]] table (two brackets), not [{key}]")
        }
        e => e,
    };
    let last = key.rsplit('.').next().unwrap_or(key);
    let hint = match last {
        "mode" => " (write the mode as an octal string: mode = \"0660\")",
        "address" => " (write it as a string: address = \"0000:01:00.0\")",
        "id" | "subsystem" => " (write it as a string: id = \"10de:1c03\")",
        "devices" => " (a list of strings: devices = [\"0000:01:00.0\", \"10de:1c03\"])",
        "stop_units" => " (a list of unit names: stop_units = [\"display-manager.service\"])",
        "unload_modules" => " (a list of module names: unload_modules = [\"nvidia_drm\"])",
        _ => "",
    };
    format!("{key}: expected {expected}, got {got}{hint}")
}

/// Parse and check one file.
///
/// Errors: [`ConfigError::At`] for a TOML syntax error, an unknown key, a value of the
/// wrong type (naming the key, `device[1].required`), an entry with both or neither of
/// `address`/`id`, malformed hex, a bad `mode`, a driver that is not a vfio driver or
/// `pci-stub`, or a user or group id out of range.
pub fn parse(file: &Path, src: &str) -> Result<Fragment, ConfigError> {
    let text = Text::new(file, src);
    let de = toml::Deserializer::new(src);
    let raw: RawFile = serde_path_to_error::deserialize(de).map_err(|e| {
        let key = key_path(e.path());
        let inner = e.into_inner();
        let message = reword(&key, inner.message());
        match inner.span() {
            Some(span) => text.err(&span, message),
            None => ConfigError::File {
                file: file.to_path_buf(),
                message,
            },
        }
    })?;
    Ok(Fragment {
        settings: settings(&text, &raw.driver, &raw.user, &raw.group, &raw.mode)?,
        devices: raw
            .device
            .iter()
            .map(|d| device(&text, d))
            .collect::<Result<_, _>>()?,
        vms: raw
            .vm
            .iter()
            .map(|v| vm(&text, v))
            .collect::<Result<_, _>>()?,
    })
}

/// A `devices` item: a PCI address when it has a `.` (`0000:01:00.0`, `01:00.0`), a
/// vendor:device ID otherwise (`10de:1c03`).
fn vm_selector(text: &Text, s: &Spanned<String>) -> Result<Selector, ConfigError> {
    let v = s.get_ref();
    let r = if v.contains('.') {
        v.parse().map(Selector::Address)
    } else {
        v.parse().map(Selector::Id)
    };
    r.map_err(|e: crate::pci::ParseError| {
        text.err(
            &s.span(),
            format!("devices: {e} (a PCI address \"dddd:bb:dd.f\" or an ID \"vvvv:dddd\")"),
        )
    })
}

/// `s` itself when `ok`; otherwise an error at it: `KEY: "VALUE" is not WHAT`.
fn checked(
    text: &Text,
    s: &Spanned<String>,
    ok: bool,
    key: &str,
    what: &str,
) -> Result<String, ConfigError> {
    if ok {
        return Ok(s.get_ref().clone());
    }
    let v = crate::text::escape(s.get_ref());
    Err(text.err(&s.span(), format!("{key}: \"{v}\" is not {what}")))
}

/// A systemd unit name (systemd.unit(5)): a name of `[A-Za-z0-9:_.\\@-]`, at most 255
/// bytes, with a unit type suffix; a template without its instance (`foo@.service`)
/// cannot be started or stopped.
fn unit_name(text: &Text, s: &Spanned<String>) -> Result<String, ConfigError> {
    const TYPES: [&str; 11] = [
        "service",
        "socket",
        "device",
        "mount",
        "automount",
        "swap",
        "target",
        "path",
        "timer",
        "slice",
        "scope",
    ];
    let v = s.get_ref();
    let ok = v.len() <= 255
        && !v.starts_with('-')
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b":_.\\@-".contains(&b))
        && v.rsplit_once('.')
            .is_some_and(|(n, t)| !n.is_empty() && !n.ends_with('@') && TYPES.contains(&t));
    let what = "a systemd unit name (like \"display-manager.service\")";
    checked(text, s, ok, "stop_units", what)
}

/// A kernel module name: `[A-Za-z0-9_-]`, at most 55 bytes (`MODULE_NAME_LEN` - 1).
fn module_name(text: &Text, s: &Spanned<String>) -> Result<String, ConfigError> {
    let v = s.get_ref();
    let ok = !v.is_empty()
        && v.len() <= 55
        && !v.starts_with('-')
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let what = "a kernel module name (like \"nvidia_drm\")";
    checked(text, s, ok, "unload_modules", what)
}

/// A libvirt domain name as `[[vm]] name` ([`crate::vm::name::valid`]: 1 to 255 bytes,
/// no `/`, no control characters; it is used in file names and logs).
fn vm_name(text: &Text, s: &Spanned<String>) -> Result<String, ConfigError> {
    let ok = crate::vm::name::valid(s.get_ref());
    let what = "a libvirt domain name (1 to 255 bytes, no '/', no control characters)";
    checked(text, s, ok, "name", what)
}

/// `stop_units` and `unload_modules` are handover steps: refused without `handover`.
fn handover_keys(text: &Text, v: &RawVm, handover: bool) -> Result<(), ConfigError> {
    for (key, list) in [
        ("stop_units", &v.stop_units),
        ("unload_modules", &v.unload_modules),
    ] {
        if let (Some(first), false) = (list.as_ref().and_then(|l| l.first()), handover) {
            return Err(text.err(
                &first.span(),
                format!(
                    "{key} takes effect only with `handover = true` in the same [[vm]] profile"
                ),
            ));
        }
    }
    Ok(())
}

fn vm(text: &Text, raw: &Spanned<RawVm>) -> Result<VmFragment, ConfigError> {
    let v = raw.get_ref();
    let Some(name) = &v.name else {
        return Err(text.err(
            &raw.span(),
            "a [[vm]] profile needs `name`, the libvirt domain name (as `virsh list --all` shows it)",
        ));
    };
    let handover = v.handover.unwrap_or(false);
    handover_keys(text, v, handover)?;
    let devices = match &v.devices {
        None => None,
        Some(list) if list.get_ref().is_empty() => {
            return Err(text.err(
                &list.span(),
                "devices: an empty list selects nothing; leave `devices` out to use the \
                 PCI <hostdev>s of the domain XML",
            ))
        }
        Some(list) => Some(
            list.get_ref()
                .iter()
                .map(|s| Ok((vm_selector(text, s)?, text.origin(&s.span()))))
                .collect::<Result<Vec<_>, ConfigError>>()?,
        ),
    };
    let names = |l: &Option<Vec<Spanned<String>>>,
                 f: fn(&Text, &Spanned<String>) -> Result<String, ConfigError>| {
        l.iter()
            .flatten()
            .map(|s| f(text, s))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(VmFragment {
        origin: text.origin(&raw.span()),
        name: vm_name(text, name)?,
        name_origin: text.origin(&name.span()),
        devices,
        handover,
        stop_units: names(&v.stop_units, unit_name)?,
        unload_modules: names(&v.unload_modules, module_name)?,
        settings: settings(text, &v.driver, &v.user, &v.group, &v.mode)?,
    })
}

fn selector(text: &Text, dev: &Spanned<RawDevice>) -> Result<Selector, ConfigError> {
    let d = dev.get_ref();
    match (&d.address, &d.id) {
        (Some(a), None) => {
            Ok(Selector::Address(a.get_ref().parse().map_err(
                |e: crate::pci::ParseError| text.err(&a.span(), e.to_string()),
            )?))
        }
        (None, Some(i)) => {
            Ok(Selector::Id(i.get_ref().parse().map_err(
                |e: crate::pci::ParseError| text.err(&i.span(), e.to_string()),
            )?))
        }
        (Some(_), Some(i)) => Err(text.err(
            &i.span(),
            "a [[device]] entry takes exactly one of `address` or `id`, not both",
        )),
        (None, None) => Err(text.err(
            &dev.span(),
            "a [[device]] entry needs `address = \"dddd:bb:dd.f\"` or `id = \"vvvv:dddd\"`",
        )),
    }
}

fn device(text: &Text, dev: &Spanned<RawDevice>) -> Result<DeviceFragment, ConfigError> {
    let d = dev.get_ref();
    let selector = selector(text, dev)?;
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
    Ok(DeviceFragment {
        origin: text.origin(&dev.span()),
        selector,
        subsystem,
        settings: settings(text, &d.driver, &d.user, &d.group, &d.mode)?,
        allow_boot_vga: d.allow_boot_vga.unwrap_or(false),
        required: d.required.unwrap_or(false),
    })
}

/// The `driver`, `user`, `group` and `mode` of one table, each checked, in that order.
fn settings(
    text: &Text,
    driver_value: &Option<Spanned<String>>,
    user: &Option<Spanned<RawNameOrId>>,
    group: &Option<Spanned<RawNameOrId>>,
    mode_value: &Option<Spanned<String>>,
) -> Result<Settings, ConfigError> {
    Ok(Settings {
        driver: driver_value.as_ref().map(|d| driver(text, d)).transpose()?,
        user: user
            .as_ref()
            .map(|u| principal(text, u, "user"))
            .transpose()?,
        group: group
            .as_ref()
            .map(|g| principal(text, g, "group"))
            .transpose()?,
        mode: mode_value.as_ref().map(|m| mode(text, m)).transpose()?,
    })
}

/// A driver must be one that makes a group viable for VFIO: `vfio-pci`, a vfio variant
/// driver (its name contains `vfio`), or `pci-stub` (`Documentation/driver-api/vfio.rst`).
fn driver(text: &Text, d: &Spanned<String>) -> Result<Driver, ConfigError> {
    let name = d.get_ref();
    if !driver::valid_name(name) {
        return Err(text.err(
            &d.span(),
            format!("invalid driver name \"{}\"", crate::text::escape(name)),
        ));
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
    if !driver::keeps_viable(name) {
        return Err(text.err(
            &d.span(),
            format!(
                "driver \"{name}\" would not make the group usable by VFIO: use \"vfio-pci\", \
                 a vfio variant driver, or \"pci-stub\""
            ),
        ));
    }
    Ok(Driver::new(name))
}

/// A name, or a number in `0..u32::MAX` (`(uid_t)-1` means "unchanged" to chown(2)).
fn principal(text: &Text, v: &Spanned<RawNameOrId>, what: &str) -> Result<Principal, ConfigError> {
    let numeric = |n: i64| -> Result<NameOrId, ConfigError> {
        u32::try_from(n)
            .ok()
            .filter(|&n| n != u32::MAX)
            .map(NameOrId::Id)
            .ok_or_else(|| text.err(&v.span(), format!("{what} id {n} is out of range")))
    };
    let value = match v.get_ref() {
        RawNameOrId::Id(n) => numeric(*n)?,
        RawNameOrId::Name(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            match s.parse() {
                Ok(n) => numeric(n)?,
                Err(_) => {
                    let s = crate::text::escape(s);
                    return Err(text.err(&v.span(), format!("{what} id {s} is out of range")));
                }
            }
        }
        RawNameOrId::Name(name) => NameOrId::Name(name.clone()),
    };
    Ok(Principal {
        value,
        origin: text.origin(&v.span()),
    })
}

/// Permission bits of `/dev/vfio/<group>`: an octal string of up to four digits
/// (`"0660"`). Set-uid, set-gid and sticky bits mean nothing on a device node (and chown
/// clears the first two, so they would never converge): refused. World-writable modes
/// (the guides' `chmod 666`) are accepted with a warning.
fn mode(text: &Text, m: &Spanned<String>) -> Result<u32, ConfigError> {
    let s = m.get_ref();
    let ok = !s.is_empty() && s.len() <= 4 && s.bytes().all(|b| (b'0'..=b'7').contains(&b));
    if !ok {
        return Err(text.err(
            &m.span(),
            format!(
                "invalid mode \"{}\": expected an octal string like \"0660\"",
                crate::text::escape(s)
            ),
        ));
    }
    let mode = u32::from_str_radix(s, 8).expect("checked octal");
    if mode & 0o7000 != 0 {
        return Err(text.err(
            &m.span(),
            format!(
                "invalid mode \"{s}\": set-uid, set-gid and sticky bits mean nothing on a \
                 device node; use the permission bits only, like \"0660\""
            ),
        ));
    }
    if mode & 0o002 != 0 {
        log::warn!(
            "{}: mode {mode:04o} lets every user on the host open the group's device; \
             prefer a group (group = \"kvm\", mode = \"0660\")",
            text.origin(&m.span())
        );
    }
    Ok(mode)
}
