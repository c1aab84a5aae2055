//! Faults, proven against a fake kernel (tests/common/fakekernel.rs: a FUSE file system
//! over a generated sysfs tree that reacts to `driver_override`, `unbind`, `bind` and
//! `drivers_probe` writes as Linux does), so apply and release run their real
//! verification. Each fault must end in a clear error naming the device, the file and
//! the errno; the group rolled back; nothing else changed; exit 1.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::fakekernel::{FakeKernel, Rules};
use common::{dev, Tree};
use nix::libc::{EACCES, EBUSY, ENODEV};

const XHCI: &str = "0000:01:00.0";
const SIB: &str = "0000:01:00.1";
const NIC: &str = "0000:02:00.0";

/// Group 7: xhci + e1000e (two functions of one slot); group 8: a lone e1000e. The
/// config names both; vfio-pci is loaded.
fn tree(extra: &str) -> Tree {
    let t = Tree::new();
    t.driver("vfio-pci")
        .device(dev(XHCI, "1b36:000d", 0x0c0330, Some("xhci_hcd"), 7))
        .device(dev(SIB, "8086:10d3", 0x020000, Some("e1000e"), 7))
        .device(dev(NIC, "8086:10d3", 0x020000, Some("e1000e"), 8));
    t.config(&format!(
        "{extra}\n[[device]]\naddress = \"{XHCI}\"\n\n[[device]]\naddress = \"{NIC}\"\n"
    ));
    t
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn apply(k: &FakeKernel) -> std::process::Output {
    k.run(&["--bind-timeout", "300", "--node-timeout", "300", "apply"])
}

/// Everything vfio-bind has recorded: the text of every state file (one per group in
/// /run/vfio-bind/groups, and a version 1 state.toml if one is left).
fn state_text(k: &FakeKernel) -> String {
    // The version 1 file too: a record left there would come back on the next run.
    let mut text = std::fs::read_to_string(k.path("run/vfio-bind/state.toml")).unwrap_or_default();
    if let Ok(rd) = std::fs::read_dir(k.path("run/vfio-bind/groups")) {
        let mut files: Vec<_> = rd.map(|e| e.unwrap().path()).collect();
        files.sort();
        for f in files {
            text.push_str(&std::fs::read_to_string(f).unwrap());
        }
    }
    text
}

/// Group 7 is back where it started (drivers and overrides), with no state record.
fn group7_rolled_back(k: &FakeKernel) {
    assert_eq!(k.driver(XHCI).as_deref(), Some("xhci_hcd"));
    assert_eq!(k.driver(SIB).as_deref(), Some("e1000e"));
    assert_eq!(k.override_of(XHCI), None);
    assert_eq!(k.override_of(SIB), None);
    let state = state_text(k);
    assert!(!state.contains(XHCI) && !state.contains(SIB), "{state}");
}

/// Group 8 (not at fault) still bound, and recorded.
fn group8_bound(k: &FakeKernel) {
    assert_eq!(k.driver(NIC).as_deref(), Some("vfio-pci"));
    let state = state_text(k);
    assert!(state.contains(NIC), "{state}");
}

/// Every sysfs file written belongs to the named devices (or is a bus-wide control file
/// naming one of them).
fn only_touched(k: &FakeKernel, devices: &[&str]) {
    let allowed: BTreeSet<&str> = devices.iter().copied().collect();
    for w in k.writes() {
        let ok = allowed
            .iter()
            .any(|d| w.path.contains(d) || w.value.trim() == *d);
        assert!(ok, "unexpected write {w:?}");
    }
}

#[test]
fn driver_refuses_the_device() {
    let t = tree("");
    let k = FakeKernel::mount(&t, Rules::default().refuse(SIB, "vfio-pci"));
    let o = apply(&k);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "{SIB}: not bound to vfio-pci after 300 ms (driver now: none)"
        )),
        "{err}"
    );
    assert!(err.contains("journalctl -k"), "{err}");
    assert!(
        err.contains(&format!("{XHCI}: rolled back to xhci_hcd")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{SIB}: rolled back to e1000e")),
        "{err}"
    );
    group7_rolled_back(&k);
    group8_bound(&k);
    only_touched(&k, &[XHCI, SIB, NIC]);
}

#[test]
fn probing_outlasts_the_timeout() {
    let t = tree("");
    let k = FakeKernel::mount(
        &t,
        Rules::default().slow_probe(XHCI, "vfio-pci", Duration::from_secs(3)),
    );
    let o = apply(&k);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("{XHCI}: not bound to vfio-pci after 300 ms")),
        "{err}"
    );
    group7_rolled_back(&k);
    group8_bound(&k);
    // The late probe must not land after the rollback: the override is cleared.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(k.driver(XHCI).as_deref(), Some("xhci_hcd"));
}

#[test]
fn device_disappears_mid_run() {
    let t = tree("");
    let k = FakeKernel::mount(&t, Rules::default().unplug_on_write(SIB, "driver_override"));
    let o = apply(&k);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("{SIB}: cannot write \"vfio-pci\" to ")),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{SIB}/driver_override: No such device (os error 19)"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("{SIB}: gone from the host; nothing to roll back")),
        "{err}"
    );
    assert!(!k.present(SIB));
    assert_eq!(k.driver(XHCI).as_deref(), Some("xhci_hcd"));
    assert_eq!(k.override_of(XHCI), None);
    group8_bound(&k);
}

fn write_fails(file: &str, errno: i32, want: &str) {
    let t = tree("");
    let k = FakeKernel::mount(&t, Rules::default().fail_write(file, errno, 1));
    let o = apply(&k);
    assert_eq!(o.status.code(), Some(1), "{file}");
    let err = stderr(&o);
    assert!(err.contains(want), "{file}: {err}");
    group7_rolled_back(&k);
    group8_bound(&k);
    only_touched(&k, &[XHCI, SIB, NIC]);
}

#[test]
fn unbind_fails_with_ebusy() {
    write_fails(
        "drivers/e1000e/unbind",
        EBUSY,
        &format!("{SIB}: cannot write \"{SIB}\" to "),
    );
    write_fails(
        "drivers/e1000e/unbind",
        EBUSY,
        "/driver/unbind: Device or resource busy (os error 16)",
    );
}

#[test]
fn drivers_probe_fails_with_enodev() {
    write_fails(
        "drivers_probe",
        ENODEV,
        "/sys/bus/pci/drivers_probe: No such device (os error 19)",
    );
}

#[test]
fn driver_override_fails_with_eacces() {
    write_fails(
        &format!("{SIB}/driver_override"),
        EACCES,
        &format!("{SIB}/driver_override: Permission denied (os error 13)"),
    );
}

#[test]
fn node_appears_late() {
    let owner = "mode = \"0660\"\n";
    // Later than the wait: the group fails and is rolled back.
    let t = tree(owner);
    let k = FakeKernel::mount(&t, Rules::default().node_delay(7, Duration::from_secs(3)));
    let o = apply(&k);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("group 7: device node did not appear within 300 ms"),
        "{err}"
    );
    assert!(err.contains("/dev/vfio/7"), "{err}");
    group7_rolled_back(&k);
    group8_bound(&k);
    // Late but within the wait: bound, with the mode set.
    let t = tree(owner);
    let k = FakeKernel::mount(
        &t,
        Rules::default().node_delay(7, Duration::from_millis(150)),
    );
    let o = k.run(&["--node-timeout", "5000", "apply"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(k.path("dev/vfio/7"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o660);
}

#[test]
fn release_failure_keeps_the_record() {
    let t = tree("");
    let k = FakeKernel::mount(&t, Rules::default());
    assert_eq!(apply(&k).status.code(), Some(0));
    k.update_rules(|r| r.fail_write("drivers/vfio-pci/unbind", EBUSY, 1));
    let o = k.run(&["release", NIC]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("Device or resource busy (os error 16)"),
        "{err}"
    );
    let state = state_text(&k);
    assert!(
        state.contains(NIC),
        "record kept for a later release: {state}"
    );
    // The next try succeeds and forgets it.
    let o = k.run(&["release", NIC]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(k.driver(NIC).as_deref(), Some("e1000e"));
    assert_eq!(k.override_of(NIC), None);
    let state = state_text(&k);
    assert!(!state.contains(NIC), "{state}");
}

#[test]
fn apply_then_release_all_round_trip() {
    let t = tree("");
    let k = FakeKernel::mount(&t, Rules::default());
    let o = apply(&k);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for d in [XHCI, SIB, NIC] {
        assert_eq!(k.driver(d).as_deref(), Some("vfio-pci"), "{d}");
        assert_eq!(k.override_of(d).as_deref(), Some("vfio-pci"), "{d}");
    }
    let o = apply(&k);
    assert!(stderr(&o).contains("nothing changed"), "{}", stderr(&o));
    let o = k.run(&["release", "--all"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    group7_rolled_back(&k);
    assert_eq!(k.driver(NIC).as_deref(), Some("e1000e"));
}

#[test]
fn concurrent_run_waits_then_names_the_lock_holder() {
    let t = tree("");
    let k = FakeKernel::mount(
        &t,
        Rules::default().slow_probe(XHCI, "vfio-pci", Duration::from_millis(1500)),
    );
    let mut first = k.command();
    first
        .args(["--bind-timeout", "5000", "apply"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let first = first.spawn().unwrap();
    let pid = first.id();
    // Wait until the first run holds the lock.
    assert!(common::fakekernel::eventually(
        Duration::from_secs(5),
        || {
            std::fs::read_to_string(k.path("run/vfio-bind/lock")).is_ok_and(|s| s.contains("apply"))
        }
    ));
    let o = k.run(&["--lock-timeout", "200", "apply"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("another vfio-bind run holds ")
            && err.contains(&format!("(pid {pid}: apply)")),
        "{err}"
    );
    let out = first.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // A run that waits long enough gets the lock and finds nothing to do.
    let o = k.run(&["--lock-timeout", "5000", "apply"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("nothing changed"));
}

/// A run killed mid-group left its own `vfio-pci` override on a device that is now on no
/// driver; the state file holds what the device had before. When the rerun fails and
/// rolls back, the device goes back to the recorded driver and override, not to what
/// the killed run left.
#[test]
fn rollback_after_a_killed_run_restores_the_recorded_values() {
    let t = tree("");
    t.driver("xhci_hcd");
    std::fs::remove_file(t.path(&format!("sys/bus/pci/devices/{XHCI}/driver"))).ok();
    std::fs::remove_file(t.path(&format!("sys/devices/pci0000:00/{XHCI}/driver"))).ok();
    t.set_override(XHCI, "vfio-pci");
    std::fs::create_dir_all(t.path("run/vfio-bind")).unwrap();
    std::fs::write(
        t.path("run/vfio-bind/state.toml"),
        format!("version = 1\n[devices.\"{XHCI}\"]\ndriver = \"vfio-pci\"\ngroup = 7\nprevious_driver = \"xhci_hcd\"\n"),
    )
    .unwrap();
    let k = FakeKernel::mount(&t, Rules::default().refuse(SIB, "vfio-pci"));
    assert_eq!(k.driver(XHCI), None);
    assert_eq!(k.override_of(XHCI).as_deref(), Some("vfio-pci"));
    let o = apply(&k);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("{XHCI}: rolled back to xhci_hcd")),
        "{err}"
    );
    group7_rolled_back(&k);
    group8_bound(&k);
}

/// SIGTERM (`systemctl stop`, the unit's start timeout) in the middle of a slow probe:
/// the device being waited for is named, the group in progress is rolled back, no later
/// group is started, and the run says so and exits 1.
#[test]
fn sigterm_mid_group_rolls_the_group_back_and_stops() {
    let t = tree("");
    let k = FakeKernel::mount(
        &t,
        Rules::default().slow_probe(XHCI, "vfio-pci", Duration::from_millis(3000)),
    );
    let mut cmd = k.command();
    cmd.args(["--bind-timeout", "10000", "apply"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    assert!(common::fakekernel::eventually(
        Duration::from_secs(5),
        || { k.override_of(XHCI).as_deref() == Some("vfio-pci") }
    ));
    std::thread::sleep(Duration::from_millis(200));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("{XHCI}: SIGTERM after")), "{err}");
    assert!(err.contains("stopped by SIGTERM"), "{err}");
    assert!(err.contains("1 of 2 groups not applied"), "{err}");
    group7_rolled_back(&k);
    assert_eq!(
        k.driver(NIC).as_deref(),
        Some("e1000e"),
        "group 8 was started"
    );
    assert_eq!(k.override_of(NIC), None);
}

/// `vfio-bind apply 2>&1 | head -1`: stderr closed after the first line. Writing the log
/// fails (EPIPE) and must not kill the run: every group ends bound.
#[test]
fn a_closed_stderr_never_kills_a_run() {
    let t = tree("");
    let k = FakeKernel::mount(&t, Rules::default());
    let (reader, writer) = nix::unistd::pipe().unwrap();
    drop(reader);
    let o = k
        .command()
        .args(["--bind-timeout", "3000", "apply"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(writer))
        .status()
        .unwrap();
    assert_eq!(o.code(), Some(0));
    assert_eq!(k.driver(XHCI).as_deref(), Some("vfio-pci"));
    assert_eq!(k.driver(SIB).as_deref(), Some("vfio-pci"));
    assert_eq!(k.driver(NIC).as_deref(), Some("vfio-pci"));
}

/// A killed run left one member of the group bound and recorded; the rerun fails on the
/// other member. The rollback takes the earlier run's member back too: the group never
/// ends half-bound.
#[test]
fn rollback_takes_back_members_an_earlier_run_bound() {
    let t = Tree::new();
    t.driver("vfio-pci")
        .driver("xhci_hcd")
        .device(dev(XHCI, "1b36:000d", 0x0c0330, Some("vfio-pci"), 7))
        .device(dev(SIB, "8086:10d3", 0x020000, Some("e1000e"), 7))
        .device(dev(NIC, "8086:10d3", 0x020000, Some("e1000e"), 8))
        .set_override(XHCI, "vfio-pci");
    t.config(&format!(
        "[[device]]\naddress = \"{XHCI}\"\n\n[[device]]\naddress = \"{NIC}\"\n"
    ));
    std::fs::create_dir_all(t.path("run/vfio-bind/groups")).unwrap();
    std::fs::write(
        t.path("run/vfio-bind/groups/7.toml"),
        format!("version = 2\n[devices.\"{XHCI}\"]\ndriver = \"vfio-pci\"\ngroup = 7\nprevious_driver = \"xhci_hcd\"\n"),
    )
    .unwrap();
    let k = FakeKernel::mount(
        &t,
        Rules::default()
            .refuse(SIB, "vfio-pci")
            .native(XHCI, Some("xhci_hcd")),
    );
    let o = apply(&k);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("{XHCI}: rolled back to xhci_hcd")),
        "{err}"
    );
    group7_rolled_back(&k);
    group8_bound(&k);
}
