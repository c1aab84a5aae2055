//! State-file cost at scale: what `apply` pays to record each group before its first
//! sysfs write (write-ahead), and what `release --all` pays to forget each device, on
//! hosts of 1024 and 8192 devices in groups of 4, through the library's real `State`
//! under a temporary root (tmpfs-backed `/run` on a host; here the build machine's disk).
//! Reports time per device and the 8192/1024 ratio (flat = 1.00).
//!
//!   cargo bench --bench state            # 1024 and 8192 devices
//!   cargo bench --bench state -- --quick # 256 and 1024 (CI)
//!   (under `cargo test --all-targets`: 16 and 64, a smoke test)

use std::time::Instant;

use vfio_bind::pci::PciAddress;
use vfio_bind::root::Root;
use vfio_bind::state::{Record, State};

const GROUP: usize = 4;

fn addr(i: usize) -> PciAddress {
    PciAddress {
        domain: (i >> 16) as u32,
        bus: (i >> 8) as u8,
        device: ((i >> 3) & 0x1f) as u8,
        function: (i & 7) as u8,
    }
}

/// (µs per device to record, µs per device to forget)
fn run(n: usize) -> (f64, f64) {
    let d = tempfile::tempdir().unwrap();
    let root = Root::new(d.path());
    let mut state = State::load(&root).unwrap();
    let t = Instant::now();
    for g in 0..n / GROUP {
        for i in g * GROUP..(g + 1) * GROUP {
            let r = Record {
                driver: "vfio-pci".into(),
                group: g as u32,
                previous_driver: Some("mlx5_core".into()),
                previous_override: None,
                early: false,
                vm: None,
            };
            state.insert(addr(i), r);
        }
        state.save(&root).unwrap();
    }
    let record = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    let mut state = State::load(&root).unwrap();
    let t = Instant::now();
    for i in 0..n {
        state.remove(addr(i));
        state.save(&root).unwrap();
    }
    let forget = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    (record, forget)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo test --all-targets` runs this without --bench: a smoke test, small sizes.
    let smoke = !args.iter().any(|a| a == "--bench");
    let quick = args.iter().any(|a| a == "--quick");
    let sizes: &[usize] = if smoke {
        &[16, 64]
    } else if quick {
        &[256, 1024]
    } else {
        &[1024, 8192]
    };
    println!("## State file (groups of {GROUP}; µs per device)\n");
    println!("| devices | record (write-ahead per group) | forget (release per device) |");
    println!("|---:|---:|---:|");
    let mut rows = Vec::new();
    for &n in sizes {
        let (r, f) = run(n);
        println!("| {n} | {r:.1} | {f:.1} |");
        rows.push((r, f));
    }
    let (a, b) = (rows[0], rows[rows.len() - 1]);
    println!(
        "\nLargest over smallest, per device: record {:.2}, forget {:.2} (flat = 1.00; target ≤ 1.25)",
        b.0 / a.0,
        b.1 / a.1
    );
}
