//! Proves the fake kernel itself (tests/common/fakekernel.rs) with plain file I/O through
//! its mount, the way vfio-bind does it (open O_WRONLY without O_CREAT, one write).

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use common::fakekernel::{eventually, FakeKernel, Rules, Written};
use common::{dev, Tree};
use nix::libc::{EACCES, EAGAIN, EBUSY, ENODEV};

const NIC: &str = "0000:02:00.0";
const GROUP: u32 = 8;

/// Write `value` to `path` as vfio-bind does; the errno on failure.
fn w(path: impl AsRef<Path>, value: &str) -> Result<(), i32> {
    let mut f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| e.raw_os_error().unwrap())?;
    f.write_all(value.as_bytes())
        .map_err(|e| e.raw_os_error().unwrap())
}

/// A lone e1000e NIC in group 8, a two-function group 7 (xhci + e1000e), vfio-pci loaded.
fn tree() -> Tree {
    let t = Tree::new();
    t.driver("vfio-pci")
        .device(dev(
            "0000:01:00.0",
            "1b36:000d",
            0x0c0330,
            Some("xhci_hcd"),
            7,
        ))
        .device(dev(
            "0000:01:00.1",
            "8086:10d3",
            0x020000,
            Some("e1000e"),
            7,
        ))
        .device(dev(NIC, "8086:10d3", 0x020000, Some("e1000e"), GROUP));
    t
}

/// The bind protocol of DESIGN.md, step by step, through the mount.
fn bind(k: &FakeKernel, bdf: &str, drv: &str) -> Result<(), i32> {
    let dir = k.path(&format!("sys/bus/pci/devices/{bdf}"));
    w(dir.join("driver_override"), drv)?;
    if dir.join("driver").exists() {
        w(dir.join("driver/unbind"), bdf)?;
    }
    w(k.path("sys/bus/pci/drivers_probe"), bdf)
}

fn release(k: &FakeKernel, bdf: &str) -> Result<(), i32> {
    let dir = k.path(&format!("sys/bus/pci/devices/{bdf}"));
    w(dir.join("driver_override"), "\n")?;
    w(dir.join("driver/unbind"), bdf)?;
    w(k.path("sys/bus/pci/drivers_probe"), bdf)
}

fn ok(path: &str, value: &str) -> Written {
    Written {
        path: path.into(),
        value: value.into(),
        errno: None,
    }
}

#[test]
fn bind_and_release_through_override_unbind_probe() {
    let t = tree();
    let k = FakeKernel::mount(&t, Rules::default());
    let dir = k.path(&format!("sys/bus/pci/devices/{NIC}"));
    // Passthrough: links, listings and attributes read as the tree has them.
    assert_eq!(
        fs::read_link(dir.join("driver")).unwrap(),
        Path::new("../../../bus/pci/drivers/e1000e")
    );
    assert_eq!(fs::read_to_string(dir.join("vendor")).unwrap(), "0x8086\n");
    assert_eq!(fs::read(dir.join("config")).unwrap()[0x0e], 0);
    let mut names: Vec<_> = fs::read_dir(k.path("sys/bus/pci/devices"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["0000:01:00.0", "0000:01:00.1", NIC]);
    assert!(!k.has_node(GROUP));

    bind(&k, NIC, "vfio-pci").unwrap();
    assert_eq!(k.driver(NIC).as_deref(), Some("vfio-pci"));
    assert_eq!(
        fs::read_link(dir.join("driver")).unwrap(),
        Path::new("../../../bus/pci/drivers/vfio-pci")
    );
    assert!(k
        .path(&format!("sys/bus/pci/drivers/vfio-pci/{NIC}"))
        .exists());
    assert!(!k
        .path(&format!("sys/bus/pci/drivers/e1000e/{NIC}"))
        .exists());
    assert_eq!(
        fs::read_to_string(dir.join("driver_override")).unwrap(),
        "vfio-pci\n"
    );
    assert!(k.has_node(GROUP) && k.path("dev/vfio/8").exists());
    // Control files keep nothing of what was written.
    assert_eq!(
        fs::read_to_string(k.path("sys/bus/pci/drivers_probe")).unwrap(),
        ""
    );
    assert_eq!(
        fs::read_to_string(k.path("sys/bus/pci/drivers/e1000e/unbind")).unwrap(),
        ""
    );

    release(&k, NIC).unwrap();
    assert_eq!(k.driver(NIC).as_deref(), Some("e1000e"));
    assert_eq!(k.override_of(NIC), None);
    assert_eq!(
        fs::read_to_string(dir.join("driver_override")).unwrap(),
        "(null)\n"
    );
    assert!(!k.has_node(GROUP));
    // The other devices were not touched; every write is logged with its real path.
    assert_eq!(k.driver("0000:01:00.1").as_deref(), Some("e1000e"));
    let o = format!("/sys/devices/pci0000:00/{NIC}/driver_override");
    assert_eq!(
        k.writes(),
        [
            ok(&o, "vfio-pci"),
            ok("/sys/bus/pci/drivers/e1000e/unbind", NIC),
            ok("/sys/bus/pci/drivers_probe", NIC),
            ok(&o, "\n"),
            ok("/sys/bus/pci/drivers/vfio-pci/unbind", NIC),
            ok("/sys/bus/pci/drivers_probe", NIC),
        ]
    );
    // std::fs::write (O_CREAT|O_TRUNC) works too, and a newline-terminated override.
    fs::write(dir.join("driver_override"), "vfio-pci\n").unwrap();
    assert_eq!(k.override_of(NIC).as_deref(), Some("vfio-pci"));
}

#[test]
fn kernel_errnos() {
    let t = tree();
    let k = FakeKernel::mount(&t, Rules::default());
    let drivers = k.path("sys/bus/pci/drivers");
    // unbind_store: not bound to that driver.
    assert_eq!(w(drivers.join("vfio-pci/unbind"), NIC), Err(ENODEV));
    // bind_store: already bound (EBUSY); unknown device, override naming another driver,
    // or not the native driver (ENODEV).
    assert_eq!(w(drivers.join("e1000e/bind"), NIC), Err(EBUSY));
    assert_eq!(w(drivers.join("e1000e/bind"), "0000:09:00.0"), Err(ENODEV));
    assert_eq!(w(drivers.join("vfio-pci/bind"), NIC), Err(ENODEV));
    w(drivers.join("e1000e/unbind"), NIC).unwrap();
    assert_eq!(w(drivers.join("xhci_hcd/bind"), NIC), Err(ENODEV));
    w(drivers.join("e1000e/bind"), &format!("{NIC}\n")).unwrap();
    assert_eq!(k.driver(NIC).as_deref(), Some("e1000e"));
    // drivers_probe_store: unknown device; a bound device is left alone.
    assert_eq!(
        w(k.path("sys/bus/pci/drivers_probe"), "0000:09:00.0"),
        Err(ENODEV)
    );
    w(k.path("sys/bus/pci/drivers_probe"), NIC).unwrap();
    // Read-only attributes.
    let dir = k.path(&format!("sys/bus/pci/devices/{NIC}"));
    assert_eq!(w(dir.join("vendor"), "0x1234"), Err(EACCES));
    assert_eq!(fs::read_to_string(dir.join("vendor")).unwrap(), "0x8086\n");
    // Override to a driver that is not loaded: drivers_probe succeeds, binds nothing.
    w(dir.join("driver_override"), "vfio-pci-nvgrace").unwrap();
    w(dir.join("driver/unbind"), NIC).unwrap();
    w(k.path("sys/bus/pci/drivers_probe"), NIC).unwrap();
    assert_eq!(k.driver(NIC), None);
    assert_eq!(k.writes().last().unwrap().errno, None);
    assert_eq!(k.writes()[0].errno, Some(ENODEV));
}

#[test]
fn refused_probe_leaves_the_device_unbound() {
    let t = tree();
    let k = FakeKernel::mount(&t, Rules::default().refuse(NIC, "vfio-pci"));
    // drivers_probe reports success though no driver took the device, as Linux does.
    bind(&k, NIC, "vfio-pci").unwrap();
    assert_eq!(k.driver(NIC), None);
    assert!(!k.has_node(GROUP));
    // An explicit bind gets the probe's error.
    let bindf = k.path("sys/bus/pci/drivers/vfio-pci/bind");
    assert_eq!(w(&bindf, NIC), Err(ENODEV));
    // Back to the host driver.
    release_unbound(&k);
    assert_eq!(k.driver(NIC).as_deref(), Some("e1000e"));
}

fn release_unbound(k: &FakeKernel) {
    let dir = k.path(&format!("sys/bus/pci/devices/{NIC}"));
    w(dir.join("driver_override"), "\n").unwrap();
    w(k.path("sys/bus/pci/drivers_probe"), NIC).unwrap();
}

#[test]
fn slow_probe_binds_later_and_is_cancelled_on_drop() {
    let t = tree();
    let delay = Duration::from_millis(150);
    let k = FakeKernel::mount(&t, Rules::default().slow_probe(NIC, "vfio-pci", delay));
    let start = Instant::now();
    bind(&k, NIC, "vfio-pci").unwrap();
    assert_eq!(k.driver(NIC), None, "bound before the delay");
    assert!(eventually(Duration::from_secs(5), || k
        .driver(NIC)
        .as_deref()
        == Some("vfio-pci")));
    assert!(start.elapsed() >= delay);
    assert!(k.has_node(GROUP));
    // bind_store with a deferred probe: EAGAIN now, bound later.
    let other = "0000:01:00.1";
    k.update_rules(|r| r.slow_probe(other, "e1000e", delay));
    w(k.path("sys/bus/pci/drivers/e1000e/unbind"), other).unwrap();
    assert_eq!(
        w(k.path("sys/bus/pci/drivers/e1000e/bind"), other),
        Err(EAGAIN)
    );
    assert!(eventually(Duration::from_secs(5), || k
        .driver(other)
        .is_some()));
    drop(k);

    // A probe far longer than any timeout: dropping the fixture does not wait for it.
    let t = tree();
    let k = FakeKernel::mount(
        &t,
        Rules::default().slow_probe(NIC, "vfio-pci", Duration::from_secs(3600)),
    );
    bind(&k, NIC, "vfio-pci").unwrap();
    let start = Instant::now();
    drop(k);
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(!t
        .path(&format!("sys/devices/pci0000:00/{NIC}/driver"))
        .exists());
}

#[test]
fn hot_unplug_on_write() {
    let t = tree();
    let k = FakeKernel::mount(&t, Rules::default().unplug_on_write(NIC, "driver_override"));
    let dir = k.path(&format!("sys/bus/pci/devices/{NIC}"));
    // The device is opened, then vanishes as the write lands.
    assert_eq!(w(dir.join("driver_override"), "vfio-pci"), Err(ENODEV));
    assert!(!k.present(NIC) && !dir.exists());
    assert!(!k.path("sys/kernel/iommu_groups/8").exists());
    assert!(!k
        .path(&format!("sys/bus/pci/drivers/e1000e/{NIC}"))
        .exists());
    assert_eq!(w(k.path("sys/bus/pci/drivers_probe"), NIC), Err(ENODEV));
    // Its group mate of another group is untouched.
    assert!(k.present("0000:01:00.1"));

    // A file opened before the unplug: its write fails with ENODEV, like kernfs.
    let mut f = OpenOptions::new()
        .write(true)
        .open(k.path("sys/bus/pci/devices/0000:01:00.1/driver_override"))
        .unwrap();
    k.unplug("0000:01:00.1");
    let e = f.write_all(b"vfio-pci").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(ENODEV));
    assert!(
        k.path("sys/kernel/iommu_groups/7").exists(),
        "group 7 still has 01:00.0"
    );
    drop(f);

    // The write succeeds and the device goes right after (mid-verification).
    let t = tree();
    let k = FakeKernel::mount(
        &t,
        Rules::default().unplug_after_write(NIC, "drivers_probe"),
    );
    bind(&k, NIC, "vfio-pci").unwrap();
    assert!(!k.present(NIC));
    assert!(!k.has_node(GROUP), "node goes with the device");
    assert_eq!(k.writes().len(), 3);
    assert!(k.writes().iter().all(|w| w.errno.is_none()));
}

#[test]
fn injected_write_errors() {
    let t = tree();
    let rules = Rules::default()
        .fail_write(&format!("{NIC}/driver_override"), EBUSY, 1)
        .fail_write("drivers/e1000e/unbind", ENODEV, 1)
        .fail_write("drivers_probe", EACCES, 2);
    let k = FakeKernel::mount(&t, rules);
    let dir = k.path(&format!("sys/bus/pci/devices/{NIC}"));
    let probe = k.path("sys/bus/pci/drivers_probe");
    assert_eq!(w(dir.join("driver_override"), "vfio-pci"), Err(EBUSY));
    assert_eq!(k.override_of(NIC), None, "a failed write changes nothing");
    w(dir.join("driver_override"), "vfio-pci").unwrap();
    assert_eq!(w(dir.join("driver/unbind"), NIC), Err(ENODEV));
    assert_eq!(k.driver(NIC).as_deref(), Some("e1000e"));
    w(dir.join("driver/unbind"), NIC).unwrap();
    assert_eq!(w(&probe, NIC), Err(EACCES));
    assert_eq!(w(&probe, NIC), Err(EACCES));
    assert_eq!(k.driver(NIC), None);
    w(&probe, NIC).unwrap();
    assert_eq!(k.driver(NIC).as_deref(), Some("vfio-pci"));
    let errnos: Vec<_> = k.writes().iter().map(|w| w.errno).collect();
    assert_eq!(
        errnos,
        [
            Some(EBUSY),
            None,
            Some(ENODEV),
            None,
            Some(EACCES),
            Some(EACCES),
            None
        ]
    );
}

#[test]
fn vfio_node_follows_the_group() {
    let t = tree();
    let k = FakeKernel::mount(&t, Rules::default());
    let (a, b) = ("0000:01:00.0", "0000:01:00.1");
    bind(&k, a, "vfio-pci").unwrap();
    assert!(k.has_node(7));
    let node = fs::metadata(k.path("dev/vfio/7")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&node.permissions()) & 0o777,
        0o600
    );
    bind(&k, b, "vfio-pci").unwrap();
    release(&k, a).unwrap();
    assert!(k.has_node(7), "group 7 still has a vfio member");
    assert_eq!(k.driver(a).as_deref(), Some("xhci_hcd"));
    release(&k, b).unwrap();
    assert!(!k.has_node(7));
    drop(k);

    // Late node, and no node at all.
    let t = tree();
    let delay = Duration::from_millis(150);
    let k = FakeKernel::mount(&t, Rules::default().node_delay(GROUP, delay).no_node(7));
    let start = Instant::now();
    bind(&k, NIC, "vfio-pci").unwrap();
    bind(&k, a, "vfio-pci").unwrap();
    assert_eq!(k.driver(NIC).as_deref(), Some("vfio-pci"));
    assert!(!k.has_node(GROUP));
    assert!(eventually(Duration::from_secs(5), || k.has_node(GROUP)));
    assert!(start.elapsed() >= delay);
    assert!(!k.has_node(7));
}

fn mounted(p: &Path) -> bool {
    let p = p.to_string_lossy().into_owned();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(p.as_str()))
}

#[test]
fn unmounts_on_drop_even_when_busy_or_panicking() {
    let t = tree();
    let k = FakeKernel::mount(&t, Rules::default());
    let root = k.root().to_path_buf();
    let sys = fs::canonicalize(k.path("sys")).unwrap();
    assert!(mounted(&sys));
    // A file still open inside does not keep it mounted or hang the drop.
    let f = fs::File::open(k.path(&format!("sys/bus/pci/devices/{NIC}/vendor"))).unwrap();
    drop(k);
    assert!(!mounted(&sys) && !root.exists());
    drop(f);

    let t = tree();
    let mut sys = None;
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let k = FakeKernel::mount(&t, Rules::default());
        sys = Some(fs::canonicalize(k.path("sys")).unwrap());
        panic!("test failure inside the fixture's scope");
    }));
    assert!(r.is_err());
    assert!(!mounted(&sys.unwrap()));
}
