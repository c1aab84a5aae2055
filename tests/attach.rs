//! Per-VM passthrough against the fake kernel (tests/common/fakekernel.rs): `attach`,
//! `detach`, and the libvirt hook spawned as libvirtd spawns it (the installed wrapper
//! `dist/libvirt/qemu.d/vfio-bind`, argv `VM OP SUBOP EXTRA`, a cleaned environment with
//! `LC_ALL=C`, the domain XML through a pipe, stdout and stderr read to their ends). The
//! real-kernel proofs are tests/vm/scenarios/handover.sh (a GPU stand-in) and
//! tests/e2e/libvirt.sh (a real libvirtd).

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::fakekernel::{FakeKernel, Rules};
use common::{dev, Tree};

const GPU: &str = "0000:01:00.0";
const AUDIO: &str = "0000:01:00.1";
const NIC: &str = "0000:02:00.0";
const USB: &str = "0000:03:00.0";

/// Group 7: a GPU (bochs-drm) and its HDMI audio (snd_hda_intel), one slot; group 8: an
/// e1000e the boot-time config binds; group 9: an xhci. The GPU carries the firmware
/// framebuffer `efi-framebuffer.0` (bound, with fb0 beneath it) and the framebuffer console
/// `vtcon1` (bound); `vtcon0` is the dummy console. vfio-pci is registered.
fn tree(config: &str) -> Tree {
    let t = Tree::new();
    t.driver("vfio-pci")
        .device(dev(GPU, "1234:1111", 0x030000, Some("bochs-drm"), 7))
        .device(dev(AUDIO, "8086:293e", 0x040300, Some("snd_hda_intel"), 7))
        .device(dev(NIC, "8086:10d3", 0x020000, Some("e1000e"), 8))
        .device(dev(USB, "1b36:000d", 0x0c0330, Some("xhci_hcd"), 9));
    let fbdev = t.path(&format!("sys/devices/pci0000:00/{GPU}/efi-framebuffer.0"));
    fs::create_dir_all(fbdev.join("graphics/fb0")).unwrap();
    fs::create_dir_all(t.path("sys/bus/platform/drivers/efi-framebuffer")).unwrap();
    for f in ["bind", "unbind"] {
        fs::write(
            t.path(&format!("sys/bus/platform/drivers/efi-framebuffer/{f}")),
            "",
        )
        .unwrap();
    }
    fs::create_dir_all(t.path("sys/bus/platform/devices")).unwrap();
    symlink(
        format!("../../../devices/pci0000:00/{GPU}/efi-framebuffer.0"),
        t.path("sys/bus/platform/devices/efi-framebuffer.0"),
    )
    .unwrap();
    symlink(
        "../../../../bus/platform/drivers/efi-framebuffer",
        fbdev.join("driver"),
    )
    .unwrap();
    fs::create_dir_all(t.path("sys/class/graphics")).unwrap();
    symlink(
        format!("../../devices/pci0000:00/{GPU}/efi-framebuffer.0/graphics/fb0"),
        t.path("sys/class/graphics/fb0"),
    )
    .unwrap();
    for (n, name) in [(0, "(S) dummy device"), (1, "(M) frame buffer device")] {
        let d = t.path(&format!("sys/class/vtconsole/vtcon{n}"));
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("name"), format!("{name}\n")).unwrap();
        fs::write(d.join("bind"), "1\n").unwrap();
    }
    t.config(config);
    t
}

const CONFIG: &str = r#"
[[device]]
address = "0000:02:00.0"

[[vm]]
name = "win11"
handover = true

[[vm]]
name = "usb"
devices = ["0000:03:00.0"]
mode = "0660"
"#;

/// A domain XML passing `hostdevs` through, padded past the pipe buffer (64 KiB): a hook
/// that stops reading early would leave libvirt's write blocked or failed.
fn domain(name: &str, hostdevs: &[&str]) -> String {
    let mut x = format!(
        "<domain type='kvm'>\n  <name>{name}</name>\n  <!-- {} -->\n  <devices>\n",
        "x".repeat(256 * 1024)
    );
    for h in hostdevs {
        let (bus, rest) = h[5..].split_once(':').unwrap();
        let (slot, f) = rest.split_once('.').unwrap();
        x.push_str(&format!(
            "    <hostdev mode='subsystem' type='pci' managed='yes'>\n      <source>\n        <address domain='0x0000' bus='0x{bus}' slot='0x{slot}' function='0x{f}'/>\n      </source>\n    </hostdev>\n"
        ));
    }
    x.push_str("  </devices>\n</domain>\n");
    x
}

/// The installed hook as `make install` renders it (the binary's path substituted).
fn hook_script(dir: &Path) -> PathBuf {
    let text = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/dist/libvirt/qemu.d/vfio-bind"
    ))
    .unwrap()
    .replace("/usr/sbin/vfio-bind", env!("CARGO_BIN_EXE_vfio-bind"));
    let p = dir.join("vfio-bind");
    fs::write(&p, text).unwrap();
    fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    p
}

/// The hook as libvirtd runs it, which must exit 0 having read all of stdin and printed
/// nothing.
fn hook_quietly(k: &FakeKernel, script: &Path, args: [&str; 4], xml: &str) {
    let (o, all) = libvirt_hook(k, script, args, xml);
    let what = args.join(" ");
    assert_eq!(o.status.code(), Some(0), "{what}: {}", text(&o.stderr));
    assert!(all, "{what}: stdin not read to its end");
    assert_eq!(
        (text(&o.stdout), text(&o.stderr)),
        (String::new(), String::new()),
        "{what}"
    );
}

/// Run the hook as libvirtd does (`virHookCall` → `virCommandRun`): argv, a cleaned
/// environment (`LC_ALL=C` and the few variables `virCommandAddEnvPassCommon` passes;
/// `VFIO_BIND_ROOT` is the test's one addition, pointing at the fake kernel), the XML
/// written into stdin's pipe by another thread, stdout and stderr read to their ends.
/// Returns the output and whether all of the XML was consumed.
fn libvirt_hook(k: &FakeKernel, script: &Path, args: [&str; 4], xml: &str) -> (Output, bool) {
    let mut child = Command::new(script)
        .args(args)
        .env_clear()
        .env("LC_ALL", "C")
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("HOME", "/")
        .env("USER", "root")
        .env("LOGNAME", "root")
        .env("VFIO_BIND_ROOT", k.root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = xml.as_bytes().to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data).is_ok());
    let out = child.wait_with_output().unwrap();
    (out, writer.join().unwrap())
}

/// `o` exited with `code`, and its stderr holds `needle`.
fn exits_with(o: &Output, code: i32, needle: &str) {
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(code), "{err}");
    assert!(err.contains(needle), "{needle:?} not in:\n{err}");
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn read(k: &FakeKernel, rel: &str) -> String {
    fs::read_to_string(k.path(rel))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn fb_driver(k: &FakeKernel) -> Option<String> {
    fs::read_link(k.path("sys/bus/platform/devices/efi-framebuffer.0/driver"))
        .ok()
        .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
}

fn records(t: &Tree) -> String {
    let mut s = String::new();
    for d in ["run/vfio-bind/groups", "run/vfio-bind/vms"] {
        if let Ok(rd) = fs::read_dir(t.path(d)) {
            let mut files: Vec<_> = rd.map(|e| e.unwrap().path()).collect();
            files.sort();
            for f in files {
                s.push_str(&fs::read_to_string(f).unwrap());
            }
        }
    }
    s
}

/// The host as the tests compare it: every member's driver, the framebuffer's, the
/// vtconsoles' binds.
fn host(k: &FakeKernel) -> Vec<String> {
    let mut v: Vec<String> = [GPU, AUDIO, NIC, USB]
        .iter()
        .map(|d| format!("{d}={}", k.driver(d).unwrap_or_default()))
        .collect();
    v.push(format!("fb={}", fb_driver(k).unwrap_or_default()));
    v.push(format!(
        "vtcon1={}",
        read(k, "sys/class/vtconsole/vtcon1/bind")
    ));
    v.push(format!(
        "vtcon0={}",
        read(k, "sys/class/vtconsole/vtcon0/bind")
    ));
    v
}

#[test]
fn the_hook_acts_only_at_prepare_begin_and_release_end_and_reads_all_its_stdin() {
    let t = tree(CONFIG);
    let k = FakeKernel::mount(&t, Rules::default());
    let bin = tempfile::tempdir().unwrap();
    let hook = hook_script(bin.path());
    let o = k.run(&["apply"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let start = host(&k);
    let xml = domain("win11", &[GPU]);
    // A VM without a profile: every operation, nothing done, nothing printed.
    let ops: [(&str, &str, &str); 12] = [
        ("prepare", "begin", "-"),
        ("start", "begin", "-"),
        ("started", "begin", "-"),
        ("stopped", "end", "destroyed"),
        ("release", "end", "destroyed"),
        ("migrate", "begin", "-"),
        ("restore", "begin", "-"),
        ("reconnect", "begin", "-"),
        ("attach", "begin", "-"),
        ("stopped", "end", "-"),
        ("release", "end", "shutdown"),
        ("release", "end", "-"),
    ];
    for (op, sub, extra) in ops {
        hook_quietly(&k, &hook, ["other", op, sub, extra], &xml);
        assert_eq!(host(&k), start, "other {op} {sub}");
    }
    // The profiled VM: prepare begin attaches (with the handover), every other
    // operation leaves it so, release end gives everything back, and again does nothing.
    let attached = vec![
        format!("{GPU}=vfio-pci"),
        format!("{AUDIO}=vfio-pci"),
        format!("{NIC}=vfio-pci"),
        format!("{USB}=xhci_hcd"),
        "fb=".to_string(),
        "vtcon1=0".to_string(),
        "vtcon0=1".to_string(),
    ];
    let others = ops
        .iter()
        .filter(|(op, _, _)| *op != "prepare" && *op != "release");
    let order = std::iter::once(&ops[0])
        .chain(others)
        .chain(ops.iter().filter(|(op, _, _)| *op == "release"));
    for &(op, sub, extra) in order {
        hook_quietly(&k, &hook, ["win11", op, sub, extra], &xml);
        if op == "release" {
            assert_eq!(host(&k), start, "win11 {op} {sub} {extra}: given back");
            assert!(!records(&t).contains("win11"), "{}", records(&t));
        } else {
            assert_eq!(host(&k), attached, "win11 {op} {sub} {extra}");
            let r = records(&t);
            assert!(r.contains("vm = \"win11\""), "{r}");
            assert!(
                r.contains("kind = \"framebuffer\"") && r.contains("kind = \"vtconsole\""),
                "{r}"
            );
        }
    }
    // The boot-time config's group (the e1000e) was never the VM's: still bound, still
    // the config's.
    assert_eq!(k.driver(NIC).as_deref(), Some("vfio-pci"));
    assert!(
        records(&t).contains(NIC) && !records(&t).contains("vm ="),
        "{}",
        records(&t)
    );
}

#[test]
fn a_failure_mid_attach_undoes_every_step_and_says_why_in_one_line() {
    // The VM passes the GPU and the xhci through; the xhci's group (bound second) fails.
    let t = tree(CONFIG);
    let k = FakeKernel::mount(&t, Rules::default().refuse(USB, "vfio-pci"));
    let bin = tempfile::tempdir().unwrap();
    let hook = hook_script(bin.path());
    let start = host(&k);
    let before = records(&t);
    let (o, all) = libvirt_hook(
        &k,
        &hook,
        ["win11", "prepare", "begin", "-"],
        &domain("win11", &[GPU, USB]),
    );
    assert!(all);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("vfio-bind: VM win11: not attached: "),
        "{err}"
    );
    assert!(
        err.contains(USB) && err.contains("everything was undone"),
        "{err}"
    );
    assert_eq!(text(&o.stdout), "");
    assert_eq!(
        host(&k),
        start,
        "the GPU group, the framebuffer and the console are back"
    );
    assert_eq!(records(&t), before, "no record is left");
    // libvirt calls release end after a failed prepare: nothing to do, exit 0.
    let (o, _) = libvirt_hook(
        &k,
        &hook,
        ["win11", "release", "end", "-"],
        &domain("win11", &[GPU, USB]),
    );
    assert_eq!((o.status.code(), text(&o.stderr)), (Some(0), String::new()));
    assert_eq!(host(&k), start);
    // The control: the same attach without the fault binds both groups.
    k.update_rules(Rules::accept_all);
    let x = tempfile::NamedTempFile::new().unwrap();
    fs::write(x.path(), domain("win11", &[GPU, USB])).unwrap();
    let o = k.run(&["attach", "win11", "--xml", x.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(k.driver(USB).as_deref(), Some("vfio-pci"));
    assert_eq!(k.driver(AUDIO).as_deref(), Some("vfio-pci"));
    let o = k.run(&["detach", "win11"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(host(&k), start);
}

#[test]
fn a_process_holding_a_member_node_fails_the_attach_after_its_bound_and_changes_nothing() {
    let t = tree(CONFIG);
    // The audio function's control node; /dev/null (1:3) stands in for it, so the
    // holder is a real open character device.
    let ctl = t.path(&format!(
        "sys/devices/pci0000:00/{AUDIO}/sound/card0/controlC0"
    ));
    fs::create_dir_all(&ctl).unwrap();
    fs::write(ctl.join("dev"), "1:3\n").unwrap();
    fs::write(
        ctl.join("uevent"),
        "MAJOR=1\nMINOR=3\nDEVNAME=snd/controlC0\n",
    )
    .unwrap();
    fs::create_dir_all(t.path("proc/4242/fd")).unwrap();
    fs::write(t.path("proc/4242/comm"), "pipewire\n").unwrap();
    symlink("/dev/null", t.path("proc/4242/fd/21")).unwrap();
    let k = FakeKernel::mount(&t, Rules::default());
    let start = host(&k);
    let x = tempfile::NamedTempFile::new().unwrap();
    fs::write(x.path(), domain("win11", &[GPU])).unwrap();
    let t0 = std::time::Instant::now();
    let o = k.run(&[
        "--hold-timeout",
        "400",
        "attach",
        "win11",
        "--xml",
        x.path().to_str().unwrap(),
    ]);
    assert!(t0.elapsed() >= std::time::Duration::from_millis(400));
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains("timed out after 400 ms")
            && err.contains("pid 4242 (pipewire) holds /dev/snd/controlC0 of 0000:01:00.1"),
        "{err}"
    );
    assert_eq!(
        host(&k),
        start,
        "console and framebuffer given back, no member touched"
    );
    assert!(!k
        .writes()
        .iter()
        .any(|w| w.path.ends_with("driver_override")));
    assert_eq!(records(&t), "");
    // The control: once the holder lets go, the same attach succeeds.
    fs::remove_file(t.path("proc/4242/fd/21")).unwrap();
    let o = k.run(&[
        "--hold-timeout",
        "400",
        "attach",
        "win11",
        "--xml",
        x.path().to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(k.driver(AUDIO).as_deref(), Some("vfio-pci"));
}

#[test]
fn groups_held_by_another_vm_or_open_are_refused_and_a_plain_profile_keeps_the_console() {
    let cfg = format!("{CONFIG}\n[[vm]]\nname = \"usb2\"\ndevices = [\"1b36:000d\"]\n");
    let t = tree(&cfg);
    let k = FakeKernel::mount(&t, Rules::default());
    let start = host(&k);
    let o = k.run(&["attach", "usb"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(k.driver(USB).as_deref(), Some("vfio-pci"));
    // No handover in this profile: the console and the framebuffer stay.
    assert_eq!(read(&k, "sys/class/vtconsole/vtcon1/bind"), "1");
    assert_eq!(fb_driver(&k).as_deref(), Some("efi-framebuffer"));
    assert!(records(&t).contains("vm = \"usb\""));
    let o = k.run(&["status"]);
    let out = text(&o.stdout);
    assert!(
        out.contains(
            "VM usb: attached, IOMMU group 9\n  0000:03:00.0 driver vfio-pci, was xhci_hcd\n"
        ),
        "{out}"
    );
    assert!(out.contains("VM win11: not attached\n"), "{out}");
    let o = k.run(&["status", "--json"]);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let usb = j["vms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "usb")
        .unwrap();
    assert_eq!(
        (usb["attached"].as_bool(), usb["groups"][0].as_u64()),
        (Some(true), Some(9))
    );
    // release leaves a VM's devices to its detach.
    let o = k.run(&["release", USB]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr)
            .contains("attached to VM \"usb\"; give it back with `vfio-bind detach usb`"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(k.driver(USB).as_deref(), Some("vfio-pci"));
    let o = k.run(&["attach", "usb2"]);
    exits_with(&o, 1, "0000:03:00.0 is attached to VM \"usb\"");
    // Attaching again is a no-op; the boot-time apply leaves the VM's group alone.
    assert_eq!(k.run(&["attach", "usb"]).status.code(), Some(0));
    let o = k.run(&["apply"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(k.driver(USB).as_deref(), Some("vfio-pci"));
    let o = k.run(&["detach", "usb"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(k.driver(USB).as_deref(), Some("xhci_hcd"));
    // Detaching twice does nothing.
    assert_eq!(k.run(&["detach", "usb"]).status.code(), Some(0));
    // An attach killed half-way leaves its write-ahead record: the next attach refuses
    // to mix with it, detach undoes it.
    fs::create_dir_all(t.path("run/vfio-bind/vms")).unwrap();
    fs::write(
        t.path("run/vfio-bind/vms/usb.toml"),
        "version = 1\nvm = \"usb\"\n[[step]]\nkind = \"vtconsole\"\nname = \"vtcon1\"\n",
    )
    .unwrap();
    let o = k.run(&["attach", "usb"]);
    exits_with(&o, 1, "an earlier attach of it was not detached");
    assert_eq!(k.driver(USB).as_deref(), Some("xhci_hcd"));
    assert_eq!(k.run(&["detach", "usb"]).status.code(), Some(0));
    assert!(!t.path("run/vfio-bind/vms/usb.toml").exists());
    assert_eq!(k.run(&["attach", "usb"]).status.code(), Some(0));
    assert_eq!(k.run(&["detach", "usb"]).status.code(), Some(0));
    assert_eq!(host(&k)[3], start[3]);
}

#[test]
fn vm_profiles_are_validated_with_file_line_column_before_anything_is_touched() {
    let cases: [(&str, &str); 9] = [
        (
            "[[vm]]\nhandover = true\n",
            ":1:1: a [[vm]] profile needs `name`",
        ),
        (
            "[[vm]]\nname = \"a\"\nstop_units = [\"gdm.service\"]\n",
            ":3:15: stop_units takes effect only with `handover = true`",
        ),
        (
            "[[vm]]\nname = \"a\"\nhandover = true\nstop_units = [\"gdm\"]\n",
            ":4:15: stop_units: \"gdm\" is not a systemd unit name",
        ),
        (
            "[[vm]]\nname = \"a\"\nhandover = true\nunload_modules = [\"nvidia drm\"]\n",
            ":4:19: unload_modules: \"nvidia drm\" is not a kernel module name",
        ),
        (
            "[[vm]]\nname = \"a\"\n[[vm]]\nname = \"a\"\n",
            ":4:8: name: a [[vm]] profile named \"a\" is already at",
        ),
        (
            "[[vm]]\nname = \"a\"\ndevices = []\n",
            ":3:11: devices: an empty list selects nothing",
        ),
        (
            "[[vm]]\nname = \"a\"\ndevices = [\"01:00\"]\n",
            ":3:12: devices: invalid PCI ID \"01:00\"",
        ),
        (
            "[[vm]]\nname = \"a/b\"\n",
            ":2:8: name: \"a/b\" is not a libvirt domain name",
        ),
        (
            "[[vm]]\nname = \"a\"\nhandover = true\nstop_units = [\"getty@.service\"]\n",
            ":4:15: stop_units: \"getty@.service\" is not a systemd unit name",
        ),
    ];
    for (cfg, want) in cases {
        let t = tree(cfg);
        let before = t.state();
        for cmd in [&["check"][..], &["attach", "a"], &["emit", "qemu"]] {
            let o = t.run(cmd);
            assert_eq!(o.status.code(), Some(2), "{cmd:?} {cfg}");
            let err = text(&o.stderr);
            assert!(
                err.contains(&format!("vfio-bind.toml{want}")),
                "{cmd:?}: want {want:?} in {err}"
            );
        }
        assert_eq!(t.state(), before, "{cfg}");
    }
    let t = tree(CONFIG);
    let o = t.run(&["attach", "nosuch"]);
    exits_with(&o, 2, "no [[vm]] profile named \"nosuch\"");
    let o = t.run(&["attach", "win11"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("give the domain XML (--xml FILE"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn emit_prints_hostdev_elements_and_qemu_arguments_for_whole_groups() {
    let t = tree(CONFIG);
    let o = t.run(&["emit", "libvirt", GPU]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(
        text(&o.stdout),
        "<!-- IOMMU group 7 -->\n\
<hostdev mode='subsystem' type='pci' managed='no'>\n  <!-- 0000:01:00.0 VGA compatible controller [1234:1111] -->\n  <source>\n    <address domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>\n  </source>\n</hostdev>\n\
<hostdev mode='subsystem' type='pci' managed='no'>\n  <!-- 0000:01:00.1 Audio device [8086:293e] -->\n  <source>\n    <address domain='0x0000' bus='0x01' slot='0x00' function='0x1'/>\n  </source>\n</hostdev>\n"
    );
    let o = t.run(&["emit", "qemu", GPU, "usb"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(
        text(&o.stdout),
        "-device pcie-root-port,id=vfio-rp0,chassis=128,slot=0 \\\n\
-device vfio-pci,host=0000:01:00.0,bus=vfio-rp0,addr=0x0.0x0,multifunction=on \\\n\
-device vfio-pci,host=0000:01:00.1,bus=vfio-rp0,addr=0x0.0x1 \\\n\
-device pcie-root-port,id=vfio-rp1,chassis=129,slot=0 \\\n\
-device vfio-pci,host=0000:03:00.0,bus=vfio-rp1,addr=0x0.0x0\n"
    );
    // Everything configured: the [[device]] entry and the profile that lists devices.
    let o = t.run(&["emit", "qemu"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("host=0000:02:00.0")
            && text(&o.stdout).contains("host=0000:03:00.0")
    );
    assert!(!text(&o.stdout).contains("01:00"));
    let o = t.run(&["emit", "libvirt", "win11"]);
    assert_eq!(o.status.code(), Some(2));
    let o = t.run(&["emit", "libvirt", "0000:09:00.0"]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn doctor_names_hook_scripts_that_detach_a_profiled_device_and_a_missing_hook() {
    let t = tree(CONFIG);
    let script = t.path("etc/libvirt/hooks/qemu.d/win11/prepare/begin/start.sh");
    fs::create_dir_all(script.parent().unwrap()).unwrap();
    fs::write(
        &script,
        "#!/bin/bash\nVIRSH_GPU_VIDEO=pci_0000_01_00_0\nVIRSH_USB=pci_0000_03_00_0\nsystemctl stop display-manager\nvirsh nodedev-detach $VIRSH_GPU_VIDEO\nvirsh nodedev-detach $VIRSH_USB\n",
    )
    .unwrap();
    let doctor = |t: &Tree| text(&t.run(&["doctor"]).stdout).replace("\n       ", " ");
    // win11's devices come from its domain definition: none yet, so only the xhci (the
    // usb profile's) has two owners.
    let out = doctor(&t);
    assert!(out.contains("1 device entry, 2 [[vm]] profiles"), "{out}");
    assert!(
        out.contains("[warn] libvirt hook: /etc/libvirt/hooks/qemu.d/vfio-bind is not installed"),
        "{out}"
    );
    assert!(
        out.contains("[warn] leftover: /etc/libvirt/hooks/qemu.d/win11/prepare/begin/start.sh:5: a hand-made script writes nodedev-detach for 0000:03:00.0 ([[vm]] \"usb\"), which the config binds too: two owners fix: remove the script's nodedev-detach"),
        "{out}"
    );
    assert!(!out.contains("for 0000:01:00.0 ([[vm]]"), "{out}");
    fs::create_dir_all(t.path("etc/libvirt/qemu")).unwrap();
    fs::write(
        t.path("etc/libvirt/qemu/win11.xml"),
        domain("win11", &[GPU]),
    )
    .unwrap();
    fs::write(t.path("etc/libvirt/hooks/qemu.d/vfio-bind"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(
        t.path("etc/libvirt/hooks/qemu.d/vfio-bind"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let out = doctor(&t);
    assert!(out.contains("[ ok ] libvirt hook: /etc/libvirt/hooks/qemu.d/vfio-bind installed for 2 [[vm]] profile(s)"), "{out}");
    assert!(out.contains("start.sh:5: a hand-made script writes nodedev-detach for 0000:01:00.0 ([[vm]] \"win11\"), 0000:03:00.0 ([[vm]] \"usb\"), which the config binds too"), "{out}");
    // The control: a script that only names the devices, without nodedev-detach.
    fs::write(
        &script,
        "#!/bin/bash\n# pci_0000_01_00_0 pci_0000_03_00_0\n",
    )
    .unwrap();
    let out = doctor(&t);
    assert!(!out.contains("writes nodedev-detach"), "{out}");
}

#[test]
fn an_open_group_node_blocks_attach_and_detach_and_a_broken_config_blocks_prepare_only() {
    let t = tree(CONFIG);
    let k = FakeKernel::mount(&t, Rules::default());
    let o = k.run(&["attach", "usb"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    // QEMU holds /dev/vfio/9 (here /dev/null stands in for the node).
    let node = t.path("dev/vfio/9");
    let _ = fs::remove_file(&node);
    symlink("/dev/null", &node).unwrap();
    fs::create_dir_all(t.path("proc/777/fd")).unwrap();
    fs::write(t.path("proc/777/comm"), "qemu-system-x86\n").unwrap();
    symlink("/dev/null", t.path("proc/777/fd/30")).unwrap();
    let o = k.run(&["--hold-timeout", "200", "detach", "usb"]);
    exits_with(&o, 1, "IOMMU group 9 is in use: pid 777 (qemu-system-x86) holds /dev/vfio/9 of 0000:03:00.0; not released");
    assert_eq!(k.driver(USB).as_deref(), Some("vfio-pci"));
    assert!(records(&t).contains("vm = \"usb\""));
    // Another profile on the same device is refused for the VM that holds it.
    fs::write(
        t.path("etc/vfio-bind.toml"),
        format!("{CONFIG}\n[[vm]]\nname = \"usb2\"\ndevices = [\"{USB}\"]\n"),
    )
    .unwrap();
    let o = k.run(&["attach", "usb2"]);
    exits_with(&o, 1, "is attached to VM \"usb\"");
    fs::remove_file(t.path("proc/777/fd/30")).unwrap();
    let o = k.run(&["detach", "usb"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(k.driver(USB).as_deref(), Some("xhci_hcd"));
    // The xhci bound outside any VM (as a guide script would), its node open: refused.
    symlink("/dev/null", t.path("proc/777/fd/30")).unwrap();
    fs::write(
        k.path(&format!("sys/bus/pci/devices/{USB}/driver_override")),
        "vfio-pci",
    )
    .unwrap();
    fs::write(k.path("sys/bus/pci/drivers/xhci_hcd/unbind"), USB).unwrap();
    fs::write(k.path("sys/bus/pci/drivers_probe"), USB).unwrap();
    assert_eq!(k.driver(USB).as_deref(), Some("vfio-pci"));
    let _ = fs::remove_file(&node);
    symlink("/dev/null", &node).unwrap();
    let o = k.run(&["attach", "usb2"]);
    exits_with(&o, 1, "/dev/vfio/9 is open by pid 777 (qemu-system-x86)");
    // A group the boot-time config bound, used by a VM, then dropped from the config:
    // apply does not release it while it is open (vfio-pci's remove would block).
    fs::remove_file(t.path("proc/777/fd/30")).unwrap();
    assert_eq!(k.run(&["release", USB]).status.code(), Some(0));
    fs::write(
        t.path("etc/vfio-bind.toml"),
        format!("[[device]]\naddress = \"{USB}\"\n"),
    )
    .unwrap();
    assert_eq!(k.run(&["apply"]).status.code(), Some(0));
    let _ = fs::remove_file(&node);
    symlink("/dev/null", &node).unwrap();
    symlink("/dev/null", t.path("proc/777/fd/30")).unwrap();
    fs::write(t.path("etc/vfio-bind.toml"), "").unwrap();
    let o = k.run(&["--hold-timeout", "200", "apply"]);
    exits_with(&o, 1, "IOMMU group 9 is in use: pid 777");
    assert_eq!(k.driver(USB).as_deref(), Some("vfio-pci"));
    fs::remove_file(t.path("proc/777/fd/30")).unwrap();
    let o = k.run(&["apply"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(k.driver(USB).as_deref(), Some("xhci_hcd"));
    // A config that cannot be read fails prepare (one line) and never blocks release.
    fs::write(t.path("etc/vfio-bind.toml"), "[[vm]\nname = \"usb\"\n").unwrap();
    let bin = tempfile::tempdir().unwrap();
    let hook = hook_script(bin.path());
    let (o, all) = libvirt_hook(
        &k,
        &hook,
        ["any", "prepare", "begin", "-"],
        &domain("any", &[]),
    );
    assert!(all);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("vfio-bind: invalid configuration: ") && err.contains("vfio-bind.toml:1:"),
        "{err}"
    );
    let (o, _) = libvirt_hook(
        &k,
        &hook,
        ["any", "release", "end", "-"],
        &domain("any", &[]),
    );
    assert_eq!((o.status.code(), text(&o.stderr)), (Some(0), String::new()));
}
