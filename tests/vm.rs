//! Real-kernel tests: each scenario in `tests/vm/scenarios/` runs inside a QEMU guest
//! (TCG, q35 + emulated Intel IOMMU, Debian's kernel) where the kernel binds for real.
//! `tests/vm/run-guest.sh` installs what it needs (Debian packages, the kernel) on first
//! use. These tests are never skipped: when the guest cannot run, they fail.

use std::path::{Path, PathBuf};
use std::process::Command;

fn run_scenario(name: &str) {
    run_scenario_with(name, &[]);
}

fn run_scenario_with(name: &str, opts: &[&str]) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let logs = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("vm-logs");
    std::fs::create_dir_all(&logs).unwrap();
    let log = logs.join(format!("{name}.log"));
    let status = Command::new(repo.join("tests/vm/run-guest.sh"))
        .args(opts)
        .arg(env!("CARGO_BIN_EXE_vfio-bind"))
        .arg(repo.join(format!("tests/vm/scenarios/{name}.sh")))
        .arg(&log)
        .status()
        .expect("cannot run tests/vm/run-guest.sh");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let checks: Vec<&str> = text
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| l.starts_with("ok - ") || l.starts_with("not ok - "))
        .collect();
    let summary = text
        .lines()
        .find(|l| l.starts_with("VM-CHECKS "))
        .map(|l| l.trim_end_matches('\r').to_string());
    assert!(
        status.success(),
        "scenario {name} failed in the guest (log {}):\n{}",
        log.display(),
        checks.join("\n")
    );
    assert!(
        !checks.is_empty() && checks.iter().all(|c| c.starts_with("ok - ")),
        "scenario {name}: checks {checks:?}"
    );
    assert!(
        summary.as_deref().is_some_and(|s| s.ends_with(" failed=0")),
        "scenario {name}: no clean VM-CHECKS line ({summary:?})"
    );
    eprintln!(
        "scenario {name}: {} checks passed in the guest",
        checks.len()
    );
}

#[test]
fn vm_smoke_topology_and_raw_bind() {
    run_scenario("smoke");
}

/// The demo (tests/vm/demo.sh) with the host's pci.ids in the guest: `list` names the
/// devices, and the demo's config binds.
#[test]
fn vm_demo_list_shows_device_names() {
    run_scenario_with("demo", &["--pci-ids"]);
}

#[test]
fn vm_device_alone_in_its_group_and_second_apply_is_noop() {
    run_scenario("alone");
}

#[test]
fn vm_multifunction_group_expanded_from_one_id() {
    run_scenario("multifunction");
}

#[test]
fn vm_group_behind_pcie_to_pci_bridge_bridge_untouched() {
    run_scenario("bridge");
}

#[test]
fn vm_node_ownership_from_names() {
    run_scenario("ownership");
}

#[test]
fn vm_broken_config_exits_2_and_changes_nothing() {
    run_scenario("broken-config");
}

#[test]
fn vm_boot_vga_refused() {
    run_scenario("boot-vga");
}

#[test]
fn vm_guard_mounted_disk_refused() {
    run_scenario("guard-storage");
}

#[test]
fn vm_guard_network_interface_up_with_address_refused() {
    run_scenario("guard-net");
}

#[test]
fn vm_boot_vga_bound_when_allowed() {
    run_scenario("boot-vga-allow");
}

#[test]
fn vm_release_all_restores_host_drivers() {
    run_scenario("release");
}

#[test]
fn vm_reload_converges() {
    run_scenario("reload");
}

#[test]
fn vm_sigkill_between_groups_then_rerun() {
    run_scenario("sigkill");
}

#[test]
fn vm_sigterm_mid_run_leaves_no_group_half_bound() {
    run_scenario("sigterm");
}

#[test]
fn vm_doctor_passes_with_the_emulated_iommu() {
    run_scenario("doctor");
}

#[test]
fn vm_doctor_fails_without_iommu() {
    run_scenario_with("doctor-noiommu", &["--no-iommu"]);
}

#[test]
fn vm_gpu_handover_attach_detach_and_holder_rollback() {
    // UEFI guest: std VGA (bochs-drm, fbcon) + ich9-intel-hda (snd_hda_intel) in one group.
    run_scenario_with("handover", &["--topology", "gpu"]);
}

/// Issue 13's leftovers on Debian's bookworm-backports kernel 6.12 (vfio_virqfd merged into
/// vfio since 6.2): doctor names `options vfio-pci ids=` and `vfio_virqfd` with file:line,
/// import turns ids= into a drop-in, and apply then binds the whole group.
#[test]
fn vm_leftovers_doctor_import_apply_on_kernel_6_12() {
    run_scenario_with("leftovers", &["--kernel", "6.12"]);
}
