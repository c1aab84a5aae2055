//! `vfio-bind doctor`: the checks every passthrough guide walks through, one verdict
//! each, with the fix when a check fails. Reads only (sysfs, /proc, /lib/modules, /dev,
//! /etc under the root).

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use super::Context;
use crate::config::{self, Config};
use crate::error::Error;
use crate::host::snapshot::Host;
use crate::host::usage;
use crate::names::Names;
use crate::owner;
use crate::plan::{self, guard, Action};
use crate::root::Root;
use crate::state::State;

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Fine.
    Ok,
    /// Worth knowing; nothing to do.
    Info,
    /// May bite later; passthrough can still work.
    Warn,
    /// Blocks passthrough.
    Fail,
}

/// One check's result: a title, what was found, and the fix when not fine.
#[derive(Debug, Clone)]
pub struct Finding {
    /// How much it matters.
    pub severity: Severity,
    /// What was checked (`IOMMU`).
    pub check: &'static str,
    /// What was found.
    pub detail: String,
    /// What to do, for Warn and Fail.
    pub fix: Option<String>,
}

fn finding(verdict: Severity, check: &'static str, detail: impl Into<String>) -> Finding {
    Finding {
        severity: verdict,
        check,
        detail: detail.into(),
        fix: None,
    }
}

impl Finding {
    fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
}

fn read(root: &Root, abs: &str) -> String {
    fs::read_to_string(root.path(abs)).unwrap_or_default()
}

fn cpu(root: &Root) -> (String, Finding) {
    let info = read(root, "/proc/cpuinfo");
    let vendor = info
        .lines()
        .find_map(|l| {
            l.strip_prefix("vendor_id")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let flags: Vec<&str> = info
        .lines()
        .find_map(|l| l.strip_prefix("flags"))
        .map(|f| {
            f.trim_start_matches([' ', '\t', ':'])
                .split_whitespace()
                .collect()
        })
        .unwrap_or_default();
    let f = if flags.contains(&"vmx") {
        finding(Severity::Ok, "CPU virtualization", "Intel VT-x (vmx)")
    } else if flags.contains(&"svm") {
        finding(Severity::Ok, "CPU virtualization", "AMD-V (svm)")
    } else {
        finding(
            Severity::Warn,
            "CPU virtualization",
            "no vmx/svm flag in /proc/cpuinfo: KVM will not be available",
        )
        .fix(
            "enable Intel VT-x or AMD-V (SVM) in the firmware setup (VFIO itself works without it)",
        )
    };
    (vendor, f)
}

fn iommu(root: &Root, host: &Host, vendor: &str) -> Vec<Finding> {
    vec![iommu_groups(root, host), cmdline(root, host, vendor)]
}

/// Are there IOMMU groups, and which IOMMU units are listed.
fn iommu_groups(root: &Root, host: &Host) -> Finding {
    let units: Vec<String> = fs::read_dir(root.path("/sys/class/iommu"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    if host.iommu_enabled() {
        finding(
            Severity::Ok,
            "IOMMU",
            format!(
                "{} IOMMU groups; IOMMU units: {}",
                host.groups.len(),
                if units.is_empty() {
                    "none listed".to_string()
                } else {
                    units.join(", ")
                }
            ),
        )
    } else {
        finding(
            Severity::Fail,
            "IOMMU",
            "no IOMMU groups in /sys/kernel/iommu_groups: the IOMMU is off",
        )
        .fix(
            "enable VT-d (Intel) or AMD-Vi/IOMMU (AMD) in the firmware setup; on Intel also \
             add intel_iommu=on to the kernel command line (AMD turns its IOMMU on by \
             default; amd_iommu=on only where it was turned off): the `kernel command \
             line` check names the command for this host's bootloader",
        )
    }
}

/// The arguments to add and to remove: `intel_iommu=on` when `intel_off`, `amd_iommu=on`
/// in place of `amd_iommu=off`.
fn missing(args: &[&str], intel_off: bool) -> (Vec<&'static str>, Vec<&'static str>) {
    let mut add = Vec::new();
    let mut remove = Vec::new();
    if intel_off {
        add.push("intel_iommu=on");
    }
    if args.contains(&"amd_iommu=off") {
        add.push("amd_iommu=on");
        remove.push("amd_iommu=off");
    }
    (add, remove)
}

/// The IOMMU options on the kernel command line, with the exact command for this host's
/// bootloader ([`crate::host::boot`]) that adds what is missing: `intel_iommu=on` on an
/// Intel host whose IOMMU is off, `amd_iommu=on` only where `amd_iommu=off` turned it off,
/// `iommu=pt` as an option.
fn cmdline(root: &Root, host: &Host, vendor: &str) -> Finding {
    use crate::host::boot;
    let cmdline = read(root, "/proc/cmdline");
    let args: Vec<&str> = cmdline.split_whitespace().collect();
    let intel = vendor == "GenuineIntel";
    let has = |p: &str| args.iter().any(|a| a.starts_with(p));
    let iommu_args: Vec<&str> = args
        .iter()
        .copied()
        .filter(|a| {
            a.starts_with("intel_iommu=") || a.starts_with("amd_iommu=") || a.starts_with("iommu=")
        })
        .collect();
    let detail = if iommu_args.is_empty() {
        "no IOMMU options".to_string()
    } else {
        iommu_args.join(" ")
    };
    let (add, remove) = missing(
        &args,
        intel && !has("intel_iommu=on") && !host.iommu_enabled(),
    );
    let detection = boot::detect(root);
    let how = |add: &[&str], remove: &[&str]| match &detection.loader {
        Some(l) => boot::fix(root, l, add, remove),
        None => format!(
            "add {} to the kernel command line in your bootloader's configuration (could \
             not tell which bootloader this host uses: looked for {}, found none)",
            add.join(" "),
            boot::looked_at(&detection)
        ),
    };
    if !add.is_empty() {
        let why = if intel {
            " (Intel kernels before 6.2 leave the IOMMU off without it)"
        } else {
            ""
        };
        finding(
            Severity::Fail,
            "kernel command line",
            format!("{detail}{why}"),
        )
        .fix(how(&add, &remove))
    } else if !args.contains(&"iommu=pt") {
        finding(
            Severity::Info,
            "kernel command line",
            format!("{detail}; iommu=pt not set"),
        )
        .fix(format!(
            "optional: iommu=pt keeps host devices in passthrough mode (less IOMMU \
                 overhead for the host): {}",
            how(&["iommu=pt"], &[])
        ))
    } else {
        finding(Severity::Ok, "kernel command line", detail)
    }
}

fn interrupt_remapping(root: &Root) -> Finding {
    let irqs = read(root, "/proc/interrupts");
    let unsafe_ok = read(
        root,
        "/sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts",
    );
    if irqs.contains("IR-") {
        finding(
            Severity::Ok,
            "interrupt remapping",
            "enabled (IR- interrupts in /proc/interrupts)",
        )
    } else if unsafe_ok.trim() == "Y" {
        finding(Severity::Warn, "interrupt remapping", "not enabled; vfio_iommu_type1 allow_unsafe_interrupts=Y")
            .fix("a guest can inject interrupts into the host; enable interrupt remapping in the firmware if you can")
    } else {
        finding(
            Severity::Warn,
            "interrupt remapping",
            "not enabled (no IR- interrupts in /proc/interrupts)",
        )
        .fix(
            "vfio_iommu_type1 refuses to attach devices without it: enable it in the firmware \
                 (VT-d/AMD-Vi interrupt remapping), or, accepting the risk, set \
                 `options vfio_iommu_type1 allow_unsafe_interrupts=1` in /etc/modprobe.d/",
        )
    }
}

fn modules(root: &Root, driver: &str) -> Vec<Finding> {
    let release = read(root, "/proc/sys/kernel/osrelease").trim().to_string();
    let loaded = root.driver_dir(driver).is_dir();
    let mut out = Vec::new();
    if loaded {
        out.push(finding(
            Severity::Ok,
            "vfio modules",
            format!("{driver} loaded"),
        ));
    } else if crate::host::leftovers::module_known(root, &release, driver) {
        out.push(finding(
            Severity::Ok,
            "vfio modules",
            format!("{driver} available for kernel {release}, not loaded yet (apply loads it)"),
        ));
    } else {
        out.push(
            finding(
                Severity::Fail,
                "vfio modules",
                format!("{driver} is neither loaded nor available for kernel {release}"),
            )
            .fix(
                "install the kernel's modules package, or use a kernel built with CONFIG_VFIO_PCI",
            ),
        );
    }
    out.push(container_node(root, loaded));
    out
}

/// `/dev/vfio/vfio`, the container node (`Documentation/driver-api/vfio.rst`).
fn container_node(root: &Root, loaded: bool) -> Finding {
    let node = root.path("/dev/vfio/vfio");
    match fs::metadata(&node) {
        Ok(m) if m.file_type().is_char_device() => {
            let mode = m.mode() & 0o777;
            if mode & 0o006 == 0o006 {
                finding(
                    Severity::Ok,
                    "/dev/vfio/vfio",
                    format!("present, mode {mode:04o}"),
                )
            } else {
                finding(
                    Severity::Warn,
                    "/dev/vfio/vfio",
                    format!("present, mode {mode:04o}: not usable by other users"),
                )
                .fix("the kernel makes it 0666; a udev rule here restricts it")
            }
        }
        Ok(_) => finding(
            Severity::Fail,
            "/dev/vfio/vfio",
            "present but not a character device",
        ),
        Err(_) if !loaded => finding(
            Severity::Info,
            "/dev/vfio/vfio",
            "absent until the vfio module is loaded",
        ),
        Err(_) => finding(
            Severity::Fail,
            "/dev/vfio/vfio",
            "absent although vfio-pci is loaded",
        )
        .fix("is devtmpfs mounted on /dev? (mount -t devtmpfs devtmpfs /dev)"),
    }
}

/// `Max locked memory` soft limit in bytes from /proc/self/limits (`None`: unlimited).
fn memlock(root: &Root) -> Option<Option<u64>> {
    let limits = read(root, "/proc/self/limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max locked memory"))?;
    let soft = line
        .trim_start_matches("Max locked memory")
        .split_whitespace()
        .next()?;
    Some(if soft == "unlimited" {
        None
    } else {
        soft.parse().ok()
    })
}

fn memlock_check(root: &Root, user: Option<&str>, guest_mib: u64) -> Finding {
    let who = user.unwrap_or("root");
    let need = guest_mib * 1024 * 1024;
    match memlock(root) {
        None => finding(Severity::Info, "memlock limit", "cannot read /proc/self/limits"),
        Some(None) => finding(Severity::Ok, "memlock limit", "unlimited for this session"),
        Some(Some(n)) if n >= need => finding(
            Severity::Ok,
            "memlock limit",
            format!("{} MiB, enough for a {guest_mib} MiB guest", n / (1024 * 1024)),
        ),
        Some(Some(n)) => finding(
            Severity::Warn,
            "memlock limit",
            format!(
                "{} KiB for this session; a guest with assigned devices pins all its memory ({guest_mib} MiB)",
                n / 1024
            ),
        )
        .fix(format!(
            "libvirt raises the limit for its guests by itself; for QEMU started by {who}, add \
             `{who} hard memlock {}` and `{who} soft memlock {}` (KiB) to \
             /etc/security/limits.d/vfio.conf, or LimitMEMLOCK= in its unit",
            need / 1024 + 1024 * 1024,
            need / 1024 + 1024 * 1024
        )),
    }
}

/// The config's findings: the files read, the memlock limit for the configured user,
/// and each configured group. A config error is one FAIL.
fn config_findings(ctx: &Context, host: &Host, guest_mib: u64) -> (String, Vec<Finding>) {
    let root = &ctx.root;
    let config =
        config::load(&ctx.config).and_then(|c| owner::check_config(&ctx.users(), &c).map(|()| c));
    let c = match config {
        Ok(c) => c,
        Err(e) => {
            let f = finding(Severity::Fail, "config", e.to_string())
                .fix("fix the config (vfio-bind check shows the same)");
            return (config::DEFAULT_DRIVER.to_string(), vec![f]);
        }
    };
    let mut out = vec![finding(Severity::Ok, "config", config_summary(&c))];
    out.push(early_boot(root, &c));
    out.extend(leftovers(root, host, &c));
    out.extend(libvirt(root, &c));
    let user = c
        .entries
        .iter()
        .find_map(|e| e.ownership.user.as_ref().map(|u| u.to_string()));
    out.push(memlock_check(root, user.as_deref(), guest_mib));
    if host.iommu_enabled() {
        let state = State::load(root).unwrap_or_default();
        match plan::plan(&c, host, &state) {
            Err(e) => out.push(finding(Severity::Fail, "config", e.to_string())),
            Ok(mut p) => {
                guard::refuse(&mut p, host, &usage::read(root, &|_| true));
                out.extend(groups(&p));
            }
        }
    }
    (c.driver.to_string(), out)
}

/// The initramfs integration and whether the image is current (
/// [`crate::host::initramfs`]).
fn early_boot(root: &Root, c: &Config) -> Finding {
    use crate::host::initramfs;
    let Some(family) = initramfs::family(root) else {
        return finding(
            Severity::Info,
            "early boot",
            "no initramfs integration of vfio-bind installed: devices are claimed by the \
             boot-time unit, before udev's coldplug but after the initramfs",
        );
    };
    let stale = initramfs::stale(root, &c.files);
    match stale.first() {
        None => finding(
            Severity::Ok,
            "early boot",
            format!(
                "{} integration installed; the initramfs is current",
                family.name()
            ),
        ),
        Some(s) => finding(Severity::Warn, "early boot", s.to_string())
            .fix(format!("run `{}`", family.rebuild())),
    }
}

/// What the guides left on this host ([`crate::host::leftovers`]), judged against the
/// config ([`crate::plan::leftovers`]), and whether the initramfs still carries the
/// modprobe options of before the last change to `/etc/modprobe.d`.
fn leftovers(root: &Root, host: &Host, c: &Config) -> Vec<Finding> {
    use crate::host::leftovers as lh;
    use crate::plan::leftovers::{self as lp, Level};
    let found = lh::read(root);
    let facts_config = super::bound::configured(root, host, c);
    let release = lh::release(root);
    // A blacklist hurts a device outside the config that has no driver now (one on
    // another driver, nvidia under `blacklist nouveau`, is fine); framebuffer modules
    // (`*fb`) are blacklisted by distributions themselves.
    let outside: Vec<crate::pci::PciAddress> = host
        .devices
        .values()
        .filter(|d| !facts_config.0.contains_key(&d.address) && d.driver.is_none())
        .map(|d| d.address)
        .collect();
    // Without the running kernel's module index (a kernel upgraded but not yet booted),
    // no module can be judged missing.
    let index = lh::module_index(root, &release);
    let known = |m: &str| !index || lh::module_known(root, &release, m);
    let victims = |m: &str| {
        if m.ends_with("fb") {
            Vec::new()
        } else {
            lh::driven_by(root, &release, m, &outside)
        }
    };
    let facts = lp::Facts {
        configured: facts_config.0,
        configured_ids: facts_config.1,
        release: release.clone(),
        known: &known,
        victims: &victims,
    };
    let mut out: Vec<Finding> = lp::judge(&found, &facts)
        .into_iter()
        .map(|j| {
            let sev = match j.level {
                Level::Info => Severity::Info,
                Level::Warn => Severity::Warn,
            };
            finding(sev, "leftover", j.message).fix(j.fix)
        })
        .collect();
    out.extend(initramfs_carries(root, &found));
    if out.is_empty() {
        out.push(finding(
            Severity::Ok,
            "leftover",
            "no guide leftovers in modprobe.d, module lists, units or scripts",
        ));
    }
    out
}

/// Whether the initramfs still carries the modprobe options of before the last change
/// to `/etc/modprobe.d` (or carries the leftover options found).
fn initramfs_carries(root: &Root, found: &[crate::host::leftovers::Leftover]) -> Option<Finding> {
    use crate::host::leftovers as lh;
    let modprobe_options = found.iter().any(|l| {
        use lh::Kind::*;
        matches!(l.kind, VfioIds(_) | Softdep(_) | DisableVga)
    });
    let (family, image, built) = crate::host::initramfs::image(root)?;
    let image = Path::new("/").join(image.strip_prefix(root.base()).unwrap_or(&image));
    let changed = lh::modprobe_changed(root);
    if changed.is_some_and(|t| t > built) {
        return Some(
            finding(
                Severity::Warn,
                "leftover",
                format!(
                    "the initramfs {} is older than the last change in /etc/modprobe.d: \
                         it still carries the modprobe options of before",
                    image.display()
                ),
            )
            .fix(format!("rebuild it: `{}`", family.rebuild())),
        );
    } else if modprobe_options {
        return Some(
            finding(
                Severity::Info,
                "leftover",
                format!(
                    "the initramfs {} carries these modprobe options too",
                    image.display()
                ),
            )
            .fix(format!(
                "after removing them, rebuild it: `{}`",
                family.rebuild()
            )),
        );
    }
    None
}

/// The `[[vm]]` profiles against libvirt's files: vfio-bind's hook installed. (Hook
/// scripts that still `virsh nodedev-detach` a profile's device are leftovers: two
/// owners, see [`leftovers`].)
fn libvirt(root: &Root, c: &Config) -> Vec<Finding> {
    use crate::host::libvirt as lv;
    if c.vms.is_empty() {
        return Vec::new();
    }
    let n = c.vms.len();
    vec![if lv::hook_installed(root) {
        finding(
            Severity::Ok,
            "libvirt hook",
            format!("{} installed for {n} [[vm]] profile(s)", lv::HOOK),
        )
    } else {
        finding(
            Severity::Warn,
            "libvirt hook",
            format!("{} is not installed: libvirt will not attach the {n} [[vm]] profile(s)", lv::HOOK),
        )
        .fix("install it (`make install`, or the package), then restart libvirtd once (it looks for hooks when it starts); without libvirt use `vfio-bind attach VM`")
    }]
}

/// `<files>: N device entries`.
fn config_summary(c: &Config) -> String {
    let files = if c.files.is_empty() {
        "no config file".to_string()
    } else {
        c.files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let n = c.entries.len();
    let vms = match c.vms.len() {
        0 => String::new(),
        1 => ", 1 [[vm]] profile".to_string(),
        v => format!(", {v} [[vm]] profiles"),
    };
    format!(
        "{files}: {n} device {}{vms}",
        if n == 1 { "entry" } else { "entries" }
    )
}

/// Print each finding (and its fix under it), wrapped to 80 columns.
fn print_findings(findings: &[Finding]) {
    let names = ["ok", "info", "warn", "FAIL"];
    for f in findings {
        let head = format!(
            "[{:^4}] {}: {}",
            names[f.severity as usize], f.check, f.detail
        );
        let opts = textwrap::Options::new(80)
            .subsequent_indent("       ")
            .word_splitter(textwrap::WordSplitter::NoHyphenation);
        println!("{}", textwrap::fill(&head, opts));
        if let Some(fix) = &f.fix {
            let opts = textwrap::Options::new(80)
                .initial_indent("       fix: ")
                .subsequent_indent("            ")
                .word_splitter(textwrap::WordSplitter::NoHyphenation);
            println!("{}", textwrap::fill(fix, opts));
        }
    }
}

/// Run every check; print one line per check (and the fix under it). Exit 0 when
/// passthrough can work, 1 when something blocks it (a Fail).
///
/// Errors: none; what cannot be read is a finding.
pub fn run(ctx: &Context, guest_mib: u64) -> Result<u8, Error> {
    let root = &ctx.root;
    let mut findings = Vec::new();
    let (vendor, f) = cpu(root);
    findings.push(f);
    let host = match Host::read(root) {
        Ok(h) => h,
        Err(e) => {
            findings.push(finding(Severity::Fail, "sysfs", e.to_string()));
            Host::default()
        }
    };
    findings.extend(iommu(root, &host, &vendor));
    findings.push(interrupt_remapping(root));
    let (driver, config_findings) = config_findings(ctx, &host, guest_mib);
    findings.extend(modules(root, &driver));
    findings.extend(config_findings);
    print_findings(&findings);
    let worst = findings
        .iter()
        .map(|f| f.severity)
        .max()
        .unwrap_or(Severity::Ok);
    if worst == Severity::Fail {
        println!("\nPassthrough cannot work yet: fix the FAIL lines above.");
        Ok(1)
    } else {
        println!("\nPassthrough can work on this host.");
        Ok(0)
    }
}

/// Each configured group: who shares it (ACS isolation), and refusals.
fn groups(p: &plan::Plan) -> Vec<Finding> {
    let mut out: Vec<Finding> = p.groups.iter().map(group).collect();
    for prob in &p.problems {
        let v = if prob.error {
            Severity::Fail
        } else {
            Severity::Warn
        };
        out.push(finding(
            v,
            "device group",
            format!("{}: {}", prob.origin, prob.message),
        ));
    }
    out
}

/// The named devices (as a list), the endpoints of other slots, and the other functions
/// of the named devices' slots, each as `address class`.
fn members(g: &plan::GroupPlan) -> (String, Vec<String>, Vec<String>) {
    let names = Names::none();
    let named: Vec<&plan::MemberPlan> = g.members.iter().filter(|m| m.entry.is_some()).collect();
    let same_slot = |m: &plan::MemberPlan| {
        named.iter().any(|n| {
            let (a, b) = (n.address, m.address);
            (a.domain, a.bus, a.device) == (b.domain, b.bus, b.device)
        })
    };
    let show = |m: &&plan::MemberPlan| format!("{} {}", m.address, names.class(m.class));
    let endpoints = g.members.iter().filter(|m| m.action != Action::Bridge);
    let strangers: Vec<String> = endpoints
        .clone()
        .filter(|m| m.entry.is_none() && !same_slot(m))
        .map(|m| show(&m))
        .collect();
    let functions: Vec<String> = endpoints
        .filter(|m| m.entry.is_none() && same_slot(m))
        .map(|m| show(&m))
        .collect();
    let named_list = named
        .iter()
        .map(|m| m.address.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    (named_list, strangers, functions)
}

/// One configured group: refused, shared with other endpoints, or alone. The devices
/// the config names and the other functions of their slots (a GPU's HDMI audio function)
/// are not strangers: only endpoints of other slots make a warning.
fn group(g: &plan::GroupPlan) -> Finding {
    let (named_list, strangers, functions) = members(g);
    if g.verdict() == plan::Verdict::Refused {
        let why: Vec<String> = g
            .refusals
            .iter()
            .map(|r| format!("{} {}", r.member, r.reason))
            .collect();
        finding(
            Severity::Fail,
            "device group",
            format!("group {} of {named_list}: refused", g.group),
        )
        .fix(why.join("; "))
    } else if !strangers.is_empty() {
        finding(
            Severity::Warn,
            "device group",
            format!(
                "group {} of {named_list} also holds: {}",
                g.group,
                strangers.join("; ")
            ),
        )
        .fix(
            "every device in a group goes to the VM together. Without ACS isolation between \
             them they cannot be split: try another slot (one wired to the CPU's root port), \
             or pass them all through. The ACS override kernel patch removes the isolation \
             guarantee: avoid it",
        )
    } else if !functions.is_empty() {
        finding(
            Severity::Ok,
            "device group",
            format!(
                "group {} of {named_list}: with its own functions only ({})",
                g.group,
                functions.join("; ")
            ),
        )
    } else {
        finding(
            Severity::Ok,
            "device group",
            format!("group {} of {named_list}: alone in its group", g.group),
        )
    }
}
