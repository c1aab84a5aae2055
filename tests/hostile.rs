//! Hostile and careless input, table-driven: each case lays out a generated host
//! (`--root`), runs the real binary with a time limit (nothing may block), and checks the
//! exit code, the words the message must contain (and must not), and that the host is
//! unchanged (every file, link and mode of the tree compared before and after).

mod common;

use std::os::unix::fs::symlink;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{dev, q35, Tree};

/// Run with a deadline; a run still going after it is killed and the test fails.
fn run(t: &Tree, args: &[&str]) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vfio-bind"))
        .arg("--root")
        .arg(t.root())
        .args(args)
        .env_remove("JOURNAL_STREAM")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("VFIO_BIND_ROOT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(10) {
            child.kill().unwrap();
            panic!("vfio-bind {args:?} still running after 10 s (blocked)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = child.wait_with_output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (o.status.code(), text(&o.stdout), text(&o.stderr))
}

struct Case {
    name: &'static str,
    setup: fn(&Tree),
    args: &'static [&'static str],
    exit: i32,
    /// Words the stderr (or stdout) must contain.
    words: &'static [&'static str],
    /// Words neither may contain.
    never: &'static [&'static str],
}

fn fifo(path: &std::path::Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
}

/// A second card identical to the boot VGA (1234:1111), in its own group.
fn two_gpus(t: &Tree) {
    t.device(dev(
        "0000:06:00.0",
        "1234:1111",
        0x030000,
        Some("bochs-drm"),
        11,
    ));
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "a wrong type names the key and says what is expected",
            setup: |t| {
                t.config("[[device]]\naddress = \"02:00.0\"\nrequired = \"yes\"\n");
            },
            args: &["check"],
            exit: 2,
            words: &["vfio-bind.toml:3:12: device[1].required: expected true or false, got string \"yes\""],
            never: &[],
        },
        Case {
            name: "mode as a number gets the string hint",
            setup: |t| {
                t.config("mode = 660\n");
            },
            args: &["check"],
            exit: 2,
            words: &["1:8: mode: expected a string", "mode = \"0660\""],
            never: &[],
        },
        Case {
            name: "[device] gets the [[device]] hint",
            setup: |t| {
                t.config("[device]\naddress = \"02:00.0\"\n");
            },
            args: &["check"],
            exit: 2,
            words: &["[[device]] table (two brackets)"],
            never: &[],
        },
        Case {
            name: "set-uid, set-gid and sticky bits are refused",
            setup: |t| {
                t.config("mode = \"7777\"\n");
            },
            args: &["apply"],
            exit: 2,
            words: &["1:8: invalid mode \"7777\": set-uid, set-gid and sticky bits"],
            never: &[],
        },
        Case {
            name: "the undocumented 0o prefix is refused",
            setup: |t| {
                t.config("mode = \"0o660\"\n");
            },
            args: &["check"],
            exit: 2,
            words: &["invalid mode \"0o660\""],
            never: &[],
        },
        Case {
            name: "a world-writable mode is warned about",
            setup: |t| {
                t.config("mode = \"0666\"\n");
            },
            args: &["check"],
            exit: 0,
            words: &["warning: ", "mode 0666 lets every user"],
            never: &[],
        },
        Case {
            name: "a key with a newline cannot forge a log line",
            setup: |t| {
                t.config("\"x\\nvfio-bind: error: forged\" = 1\n");
            },
            args: &["check"],
            exit: 2,
            words: &["unknown field `x\\nvfio-bind: error: forged`"],
            never: &["\nvfio-bind: error: forged"],
        },
        Case {
            name: "ESC bytes never reach the terminal",
            setup: |t| {
                t.config("driver = \"\\u001b[2Jvfio\"\n");
            },
            args: &["check"],
            exit: 2,
            words: &["invalid driver name \"\\x1b[2Jvfio\""],
            never: &["\x1b"],
        },
        Case {
            name: "a 1 MB value is not echoed whole",
            setup: |t| {
                t.config(&format!("driver = \"{}\"\n", "v".repeat(1 << 20)));
            },
            args: &["check"],
            exit: 2,
            words: &["invalid driver name", "…"],
            never: &[],
        },
        Case {
            name: "a FIFO as the config is an error, not a hang",
            setup: |t| fifo(&t.path("etc/vfio-bind.toml")),
            args: &["apply"],
            exit: 2,
            words: &["vfio-bind.toml: is a FIFO, not a regular file"],
            never: &[],
        },
        Case {
            name: "a FIFO, a directory and a dangling link among the drop-ins are skipped, named",
            setup: |t| {
                t.dropin("10-ok.toml", "[[device]]\naddress = \"02:00.0\"\n");
                fifo(&t.path("etc/vfio-bind.d/20-fifo.toml"));
                std::fs::create_dir(t.path("etc/vfio-bind.d/30-dir.toml")).unwrap();
                symlink("/nonexistent", t.path("etc/vfio-bind.d/40-dangling.toml")).unwrap();
            },
            args: &["check"],
            exit: 0,
            words: &[
                "20-fifo.toml: skipped: is a FIFO",
                "30-dir.toml: skipped: is a directory",
                "40-dangling.toml: skipped: No such file or directory",
                "0000:02:00.0 [8086:10d3] Ethernet controller: e1000e -> vfio-pci",
            ],
            never: &[],
        },
        Case {
            name: "dot-files in the drop-in directory are not read",
            setup: |t| {
                t.dropin(".hidden.toml", "[[device]]\naddress = \"02:00.0\"\n");
            },
            args: &["check"],
            exit: 0,
            words: &["Nothing configured"],
            never: &["device[1]"],
        },
        Case {
            name: "two entries naming one device are warned about",
            setup: |t| {
                t.config("[[device]]\naddress = \"02:00.0\"\n[[device]]\nid = \"8086:10d3\"\n");
            },
            args: &["check"],
            exit: 0,
            words: &["device[2]: 0000:02:00.0 is already named by the entry at"],
            never: &[],
        },
        Case {
            name: "the boot VGA matched only through an id is skipped, the twin bound",
            setup: |t| {
                two_gpus(t);
                t.config("[[device]]\nid = \"1234:1111\"\n");
            },
            args: &["check"],
            exit: 0,
            words: &[
                "0000:00:01.0 matches id 1234:1111 but is the boot VGA device",
                "IOMMU group 11: will be bound",
            ],
            never: &["IOMMU group 1:", "refused"],
        },
        Case {
            name: "the boot VGA's own audio function does not pull its group in through an id",
            setup: |t| {
                two_gpus_with_audio(t);
                t.config("[[device]]\nid = \"1234:1111\"\n[[device]]\nid = \"1234:2222\"\n");
            },
            args: &["check"],
            exit: 0,
            words: &[
                "0000:00:01.1 matches id 1234:2222 but shares its IOMMU group with the boot VGA device 0000:00:01.0",
                "IOMMU group 11: will be bound",
            ],
            never: &["IOMMU group 1:", "refused"],
        },
        Case {
            name: "a drop-in that cannot be read is an error, not skipped",
            setup: |t| {
                t.dropin("10-latin1.toml", "");
                std::fs::write(t.path("etc/vfio-bind.d/10-latin1.toml"), b"# caf\xe9\n").unwrap();
            },
            args: &["check"],
            exit: 2,
            words: &["10-latin1.toml: stream did not contain valid UTF-8"],
            never: &["skipped"],
        },
        Case {
            name: "release of an unknown address creates nothing",
            setup: |_| {},
            args: &["release", "0000:99:00.0"],
            exit: 2,
            words: &["no PCI device 0000:99:00.0 on this host"],
            never: &[],
        },
        Case {
            name: "a state file's parse error is escaped",
            setup: |t| {
                std::fs::create_dir_all(t.path("run/vfio-bind/groups")).unwrap();
                std::fs::write(
                    t.path("run/vfio-bind/groups/3.toml"),
                    "\"a\\u001b[31mX\\nvfio-bind: forged\" = 1\n\"a\\u001b[31mX\\nvfio-bind: forged\" = 2\n",
                )
                .unwrap();
            },
            args: &["status"],
            exit: 1,
            words: &["not a vfio-bind state file"],
            never: &["\x1b", "\nvfio-bind: forged"],
        },
        Case {
            name: "the boot VGA named by address stays a refusal",
            setup: |t| {
                two_gpus(t);
                t.config("[[device]]\naddress = \"00:01.0\"\n");
            },
            args: &["check"],
            exit: 1,
            words: &["refused: 0000:00:01.0 is the boot VGA device"],
            never: &[],
        },
        Case {
            name: "a previous_driver read back from the state is validated",
            setup: |t| {
                std::fs::create_dir_all(t.path("run/vfio-bind")).unwrap();
                std::fs::write(
                    t.path("run/vfio-bind/state.toml"),
                    "[devices.\"0000:02:00.0\"]\ndriver = \"vfio-pci\"\ngroup = 8\nprevious_driver = \"../../../../etc\"\n",
                )
                .unwrap();
            },
            args: &["release", "--all"],
            exit: 1,
            words: &["not a vfio-bind state file", "bad driver name \"../../../../etc\""],
            never: &[],
        },
        Case {
            name: "a config conflict creates no lock",
            setup: |t| {
                t.config("[[device]]\naddress = \"01:00.0\"\nuser = 0\n[[device]]\naddress = \"01:00.1\"\nuser = 1\n");
            },
            args: &["apply"],
            exit: 2,
            words: &["this entry asks for owner 1"],
            never: &[],
        },
        Case {
            name: "a dry run shows the node change when it is all that apply will do",
            setup: |t| {
                t.device(dev("0000:07:00.0", "8086:10d3", 0x020000, Some("vfio-pci"), 12))
                    .set_override("0000:07:00.0", "vfio-pci")
                    .node(12);
                use std::os::unix::fs::PermissionsExt;
                let p = t.path("dev/vfio/12");
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
                t.config("mode = \"0640\"\n[[device]]\naddress = \"07:00.0\"\n");
            },
            args: &["apply", "--dry-run"],
            exit: 0,
            words: &[
                "IOMMU group 12: bound; its /dev/vfio node will be set",
                "/dev/vfio/12: mode 0640 (will be set)",
            ],
            never: &["nothing to do"],
        },
        Case {
            name: "release of a device vfio-bind never bound, on its host driver, says so",
            setup: |_| {},
            args: &["release", "02:00.0"],
            exit: 0,
            words: &["0000:02:00.0: not bound by vfio-bind and on e1000e, not a vfio driver: nothing to release"],
            never: &[],
        },
        Case {
            name: "errno is printed once, in the system's words",
            setup: |t| {
                std::fs::remove_dir_all(t.path("sys/bus/pci/devices")).unwrap();
            },
            args: &["list"],
            exit: 1,
            words: &["devices: No such file or directory (os error 2)"],
            never: &["caused by: No such file", "entity not found"],
        },
    ]
}

#[test]
fn hostile_input_gets_a_precise_answer_and_changes_nothing() {
    let mut failures = Vec::new();
    for c in cases() {
        let t = q35();
        (c.setup)(&t);
        let before = t.state();
        let (code, out, err) = run(&t, c.args);
        let all = format!("{out}{err}");
        let mut why = Vec::new();
        if code != Some(c.exit) {
            why.push(format!("exit {code:?}, want {}", c.exit));
        }
        for w in c.words {
            if !all.contains(w) {
                why.push(format!("missing {w:?}"));
            }
        }
        for w in c.never {
            if all.contains(w) {
                why.push(format!("contains {w:?}"));
            }
        }
        if all.len() > 16 << 10 {
            why.push(format!("{} bytes of output", all.len()));
        }
        // Nothing on the host changed, and a run that fails created nothing (not even
        // the lock).
        let mut after = t.state();
        after.retain(|k, _| !k.starts_with("run/vfio-bind/lock"));
        let mut before = before;
        before.retain(|k, _| !k.starts_with("run/vfio-bind/lock"));
        if before != after || (c.exit != 0 && t.path("run/vfio-bind/lock").exists()) {
            why.push("the host changed".into());
        }
        if !why.is_empty() {
            failures.push(format!("{}: {}\n{}", c.name, why.join("; "), cut(&all)));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

fn cut(s: &str) -> String {
    s.chars().take(2000).collect()
}

#[test]
fn a_nonexistent_root_is_refused_and_nothing_is_created() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("nonexistent");
    let o = Command::new(env!("CARGO_BIN_EXE_vfio-bind"))
        .arg("--root")
        .arg(&root)
        .arg("apply")
        .env_remove("JOURNAL_STREAM")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a directory"));
    assert!(!root.exists());
}

/// A lock file naming an earlier, finished run: the waiting run names the process that
/// really holds the lock (from the kernel's lock table), not the stale note.
#[test]
fn the_lock_holder_named_is_the_real_one() {
    let t = q35();
    t.config("[[device]]\naddress = \"02:00.0\"\n");
    std::fs::create_dir_all(t.path("run/vfio-bind")).unwrap();
    std::fs::create_dir_all(t.path("proc")).unwrap();
    symlink("/proc/locks", t.path("proc/locks")).unwrap();
    let lock = t.path("run/vfio-bind/lock");
    std::fs::write(&lock, "pid 999999: apply\n").unwrap();
    let mut holder = Command::new("flock")
        .arg("-x")
        .arg(&lock)
        .args(["sleep", "30"])
        .spawn()
        .expect("flock(1) from util-linux");
    // Wait until the lock is taken.
    let start = Instant::now();
    loop {
        let (code, _, err) = run(&t, &["--lock-timeout", "50", "apply"]);
        if code == Some(1) && err.contains("another vfio-bind run holds") {
            assert!(!err.contains("999999"), "{err}");
            assert!(
                err.contains(&format!("pid {}", holder.id())) || err.contains("holder unknown"),
                "{err}"
            );
            assert!(err.contains(&format!("pid {}", holder.id())), "{err}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "never saw the lock held"
        );
    }
    holder.kill().unwrap();
    holder.wait().unwrap();
}

/// The state file cannot be written (here: no file may grow, RLIMIT_FSIZE 0, as on a
/// full /run): the failure names the file and the errno, the group is not touched, and no
/// temporary file is left behind.
#[test]
fn a_failed_state_write_names_the_file_and_errno_and_leaves_nothing() {
    use std::os::unix::process::CommandExt;
    let t = q35();
    t.driver("vfio-pci");
    t.config("[[device]]\naddress = \"02:00.0\"\n");
    let before = t.state();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vfio-bind"));
    cmd.arg("--root")
        .arg(t.root())
        .arg("apply")
        .env_remove("JOURNAL_STREAM");
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_FSIZE, 0, 0)?;
            nix::sys::signal::signal(
                nix::sys::signal::Signal::SIGXFSZ,
                nix::sys::signal::SigHandler::SigIgn,
            )?;
            Ok(())
        });
    }
    let o = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("group 8: "), "{err}");
    assert!(err.contains("run/vfio-bind/groups/.8.toml."), "{err}");
    assert!(err.contains("File too large (os error 27)"), "{err}");
    let mut after = t.state();
    after.retain(|k, _| !k.starts_with("run/vfio-bind"));
    let mut before = before;
    before.retain(|k, _| !k.starts_with("run/vfio-bind"));
    assert_eq!(before, after, "sysfs changed");
    let left: Vec<_> = std::fs::read_dir(t.path("run/vfio-bind/groups"))
        .into_iter()
        .flatten()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// Two identical GPUs, each with its HDMI audio function (1234:2222) in its group.
fn two_gpus_with_audio(t: &Tree) {
    two_gpus(t);
    t.device(dev(
        "0000:00:01.1",
        "1234:2222",
        0x040300,
        Some("snd_hda_intel"),
        1,
    ))
    .device(dev(
        "0000:06:00.1",
        "1234:2222",
        0x040300,
        Some("snd_hda_intel"),
        11,
    ));
}
