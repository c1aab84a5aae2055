//! Scale benchmark: the release binary on generated sysfs trees of many devices.
//!
//! For each host size it times `list`, `check`, `apply --dry-run` and a no-op `apply`
//! (every device already on vfio-pci with its override set), `check` with one config entry
//! per device, and, through the fake kernel of the tests (`tests/common/fakekernel.rs`, a
//! FUSE file system that binds and releases as Linux does), a first `apply` (every device
//! from its host driver to vfio-pci) and `release --all`; each run's peak RSS comes from
//! GNU time(1). It also measures boot cost: a no-op `apply` on a 256-device host as a
//! ratio to `true`, timed side by side in the same loop.
//!
//!   cargo bench --bench scale              # 64, 1024, 8192 devices, 7 runs each
//!   cargo bench --bench scale -- --quick   # 64, 256, 1024 devices, 3 runs (CI)
//!   (under `cargo test --all-targets`: 16 and 64 devices once, a smoke test)
//!
//! Devices are all `15b3:101e` (an SR-IOV virtual function), in IOMMU groups of 1 to 8
//! members, one config entry `id = "15b3:101e"` naming them all, every one recorded in
//! the state as bound by vfio-bind (was `mlx5_core`). When the machine has a
//! pci.ids (package `pci.ids` or `hwdata`), it is copied into the tree so `list` pays
//! for names as it would on a real host. Results go to stdout and to
//! target/bench/scale.md.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../tests/common/mod.rs"]
mod common;

const ID: (&str, &str) = ("15b3", "101e");

/// Lay out `n` devices under `root` as the kernel does (see tests/common/mod.rs).
fn generate(root: &Path, n: usize) {
    let sys = root.join("sys");
    for d in [
        "devices/pci0000:00",
        "bus/pci/devices",
        "bus/pci/drivers/vfio-pci",
        "kernel/iommu_groups",
    ] {
        fs::create_dir_all(sys.join(d)).unwrap();
    }
    fs::create_dir_all(root.join("etc")).unwrap();
    // Every device recorded as vfio-bind records what it bound (its state, version 2: one
    // file per IOMMU group), so each command pays for reading a full state.
    let groups_dir = root.join("run/vfio-bind/groups");
    fs::create_dir_all(&groups_dir).unwrap();
    fs::write(sys.join("bus/pci/drivers_probe"), "").unwrap();
    fs::write(
        root.join("etc/vfio-bind.toml"),
        format!("[[device]]\nid = \"{}:{}\"\n", ID.0, ID.1),
    )
    .unwrap();
    for p in ["/usr/share/hwdata/pci.ids", "/usr/share/misc/pci.ids"] {
        if Path::new(p).is_file() {
            let dest = root.join(p.trim_start_matches('/'));
            fs::create_dir_all(dest.parent().unwrap()).unwrap();
            fs::copy(p, dest).unwrap();
            break;
        }
    }
    let mut config = vec![0u8; 64];
    config[0..2].copy_from_slice(&0x15b3u16.to_le_bytes());
    config[2..4].copy_from_slice(&0x101eu16.to_le_bytes());
    let (mut group, mut left, mut size) = (0u32, 0usize, 0usize);
    for i in 0..n {
        if left == 0 {
            group += 1;
            size = size % 8 + 1;
            left = size;
            fs::create_dir_all(sys.join(format!("kernel/iommu_groups/{group}/devices"))).unwrap();
            fs::write(groups_dir.join(format!("{group}.toml")), "version = 2\n").unwrap();
        }
        left -= 1;
        let bdf = format!("0000:{:02x}:{:02x}.{}", 1 + i / 256, (i / 8) % 32, i % 8);
        let mut state = fs::OpenOptions::new()
            .append(true)
            .open(groups_dir.join(format!("{group}.toml")))
            .unwrap();
        std::io::Write::write_all(
            &mut state,
            format!(
                "[devices.\"{bdf}\"]\ndriver = \"vfio-pci\"\ngroup = {group}\nprevious_driver = \"mlx5_core\"\n"
            )
            .as_bytes(),
        )
        .unwrap();
        let dir = sys.join(format!("devices/pci0000:00/{bdf}"));
        fs::create_dir_all(&dir).unwrap();
        for (f, v) in [
            ("vendor", format!("0x{}\n", ID.0)),
            ("device", format!("0x{}\n", ID.1)),
            ("subsystem_vendor", "0x15b3\n".into()),
            ("subsystem_device", "0x0001\n".into()),
            ("class", "0x020000\n".into()),
            (
                "uevent",
                format!("PCI_CLASS=20000\nPCI_ID=15B3:101E\nPCI_SUBSYS_ID=15B3:0001\nPCI_SLOT_NAME={bdf}\n"),
            ),
            ("driver_override", "vfio-pci\n".into()),
        ] {
            fs::write(dir.join(f), v).unwrap();
        }
        fs::write(dir.join("config"), &config).unwrap();
        symlink("../../../bus/pci/drivers/vfio-pci", dir.join("driver")).unwrap();
        symlink(
            format!("../../../kernel/iommu_groups/{group}"),
            dir.join("iommu_group"),
        )
        .unwrap();
        symlink(
            format!("../../../devices/pci0000:00/{bdf}"),
            sys.join(format!("bus/pci/devices/{bdf}")),
        )
        .unwrap();
        symlink(
            format!("../../../../devices/pci0000:00/{bdf}"),
            sys.join(format!("kernel/iommu_groups/{group}/devices/{bdf}")),
        )
        .unwrap();
    }
}

/// Run a command to completion; wall time, peak RSS (KiB) and exit code. The RSS comes
/// from GNU time(1) (`%M`, its child's `wait4` rusage), not from our own `wait4`: std
/// spawns with `posix_spawn` (`CLONE_VM | CLONE_VFORK`), and the kernel folds the address
/// space the child leaves at `exec` (ours, with the fake kernel's whole tree in it) into
/// the child's `ru_maxrss`, which read 60 MiB for a process that never held 17.
fn run(cmd: &mut Command) -> (Duration, u64, i32) {
    let rss_file = tempfile::NamedTempFile::new().expect("temp file");
    let mut timed = Command::new(TIME);
    timed
        .args(["-f", "%M", "-o"])
        .arg(rss_file.path())
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => timed.env(k, v),
            None => timed.env_remove(k),
        };
    }
    let start = Instant::now();
    let status = timed
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("spawn time(1)");
    let wall = start.elapsed();
    let text = std::fs::read_to_string(rss_file.path()).expect("time(1) output");
    // A failing command adds "Command exited with non-zero status N" before the figure.
    let rss = text
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("time(1) printed {text:?}"));
    (wall, rss, status.code().unwrap_or(-1))
}

/// GNU time (Debian package `time`; tests/vm/setup.sh installs it).
const TIME: &str = "/usr/bin/time";

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn binary() -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let st = Command::new(env!("CARGO"))
        .args(["build", "--release", "--locked", "--bin", "vfio-bind"])
        .current_dir(repo)
        .status()
        .expect("cargo build");
    assert!(st.success());
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("target"));
    target.join("release/vfio-bind")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without
    // it, as a smoke test: then the smallest sizes, once.
    let smoke = !args.iter().any(|a| a == "--bench");
    let quick =
        args.iter().any(|a| a == "--quick") || std::env::var_os("VFIO_BIND_BENCH_QUICK").is_some();
    let (sizes, runs): (&[usize], usize) = if smoke {
        (&[16, 64], 1)
    } else if quick {
        (&[64, 256, 1024], 3)
    } else {
        (&[64, 1024, 8192], 7)
    };
    let bin = binary();
    let mut out = String::new();
    out.push_str(&format!(
        "## Scale ({} mode, {runs} runs each, median wall time, peak RSS)\n\n",
        if quick { "quick" } else { "full" }
    ));
    out.push_str(
        "| devices | command | wall ms | µs / device (marginal) | peak RSS KiB |\n|---:|---|---:|---:|---:|\n",
    );
    let commands: [&[&str]; 4] = [&["list"], &["check"], &["apply", "--dry-run"], &["apply"]];
    // Fixed cost per command: the same commands on a host with a single device.
    let base_dir = tempfile::tempdir().unwrap();
    generate(base_dir.path(), 1);
    let mut fixed = Vec::new();
    for args in commands {
        let walls: Vec<Duration> = (0..runs)
            .map(|_| {
                run(Command::new(&bin)
                    .arg("--root")
                    .arg(base_dir.path())
                    .args(args))
                .0
            })
            .collect();
        fixed.push(median(walls));
    }
    let mut per_device: Vec<(usize, &str, f64, u64)> = Vec::new();
    for &n in sizes {
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path(), n);
        for args in commands {
            let mut walls = Vec::new();
            let mut rss = 0;
            for _ in 0..runs {
                let (w, r, code) = run(Command::new(&bin).arg("--root").arg(dir.path()).args(args));
                assert_eq!(code, 0, "{args:?} on {n} devices exited {code}");
                walls.push(w);
                rss = rss.max(r);
            }
            let m = median(walls);
            let ci = commands.iter().position(|c| c == &args).unwrap();
            // Marginal time per device: the fixed cost (a one-device host) taken out.
            let us = m.saturating_sub(fixed[ci]).as_secs_f64() * 1e6 / (n - 1) as f64;
            let name = args.join(" ");
            out.push_str(&format!(
                "| {n} | `{name}` | {:.1} | {us:.1} | {rss} |\n",
                m.as_secs_f64() * 1e3
            ));
            per_device.push((n, args[0], us, rss));
        }
    }
    out.push_str(&format!(
        "\nFixed cost (one-device host): {}.\n\nMarginal time per device, largest over smallest host (flat = 1.00; target within 25%):\n\n",
        commands
            .iter()
            .zip(&fixed)
            .map(|(c, f)| format!("`{}` {:.2} ms", c.join(" "), f.as_secs_f64() * 1e3))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    for (i, args) in commands.iter().enumerate() {
        let first = per_device[i];
        let last = per_device[(sizes.len() - 1) * commands.len() + i];
        out.push_str(&format!(
            "- `{}`: {:.1} µs at {} devices, {:.1} µs at {}: ratio {:.2}; peak RSS {} KiB\n",
            args.join(" "),
            first.2,
            first.0,
            last.2,
            last.0,
            last.2 / first.2,
            last.3
        ));
    }

    out.push_str(&with_fake_kernel(&bin, sizes));

    // Boot cost: a no-op apply on 256 devices against `true`, interleaved.
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), 256);
    let (mut a, mut t) = (Vec::new(), Vec::new());
    for _ in 0..(runs * 3) {
        a.push(
            run(Command::new(&bin)
                .arg("--root")
                .arg(dir.path())
                .arg("apply"))
            .0,
        );
        t.push(run(&mut Command::new("true")).0);
    }
    let (a, t) = (median(a), median(t));
    out.push_str(&format!(
        "\n## Boot cost\n\nNo-op `apply` on 256 devices: {:.2} ms; `true`: {:.2} ms; ratio {:.1}\n",
        a.as_secs_f64() * 1e3,
        t.as_secs_f64() * 1e3,
        a.as_secs_f64() / t.as_secs_f64()
    ));
    print!("{out}");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    fs::create_dir_all(repo.join("target/bench")).unwrap();
    fs::write(repo.join("target/bench/scale.md"), &out).unwrap();
}

/// `check` with one `[[device]]` entry per device, and a first `apply` then
/// `release --all` through the fake kernel: µs per device and peak RSS per host size, and
/// the largest host's time per device over the smallest's.
fn with_fake_kernel(bin: &Path, sizes: &[usize]) -> String {
    let mut out = String::from(
        "\n## One entry per device; first apply and release --all (fake kernel)\n\n\
         | devices | command | wall ms | µs / device | peak RSS KiB |\n|---:|---|---:|---:|---:|\n",
    );
    let mut rows: Vec<(usize, &str, f64)> = Vec::new();
    for &n in sizes {
        let t = common::Tree::new();
        t.driver("vfio-pci");
        let mut config = String::new();
        for i in 0..n {
            let bdf = format!("0000:{:02x}:{:02x}.{}", 1 + i / 256, (i / 8) % 32, i % 8);
            let group = (i / 4 + 1) as u32;
            t.device(common::dev(
                &bdf,
                "15b3:101e",
                0x020000,
                Some("mlx5_core"),
                group,
            ));
            config.push_str(&format!("[[device]]\naddress = \"{bdf}\"\n"));
        }
        t.config(&config);
        let k = common::fakekernel::FakeKernel::mount(&t, common::fakekernel::Rules::default());
        for (name, args) in [
            ("check (an entry per device)", &["check"][..]),
            ("first apply", &["apply"]),
            ("release --all", &["release", "--all"]),
        ] {
            let (w, rss, code) = run(Command::new(bin).arg("--root").arg(k.root()).args(args));
            assert_eq!(code, 0, "{name} on {n} devices exited {code}");
            let us = w.as_secs_f64() * 1e6 / n as f64;
            out.push_str(&format!(
                "| {n} | `{name}` | {:.1} | {us:.1} | {rss} |\n",
                w.as_secs_f64() * 1e3
            ));
            rows.push((n, name, us));
        }
    }
    out.push_str("\nTime per device, largest host over smallest (flat = 1.00):\n\n");
    for name in [
        "check (an entry per device)",
        "first apply",
        "release --all",
    ] {
        let r: Vec<&(usize, &str, f64)> = rows.iter().filter(|r| r.1 == name).collect();
        let (a, b) = (r[0], r[r.len() - 1]);
        out.push_str(&format!("- `{name}`: {:.2}\n", b.2 / a.2));
    }
    out
}
