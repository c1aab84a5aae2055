//! `make install` into a temporary DESTDIR: exactly the expected files with their modes,
//! a second install that keeps the admin's edited config, and `make uninstall`.
//! make installs the binary cargo built for these tests (`VFIO_BIND_BIN`), so it runs no
//! cargo; its environment is cleared, so the caller's MAKEFLAGS, PREFIX, SBINDIR, ...
//! cannot change what it does. Also: the man pages render without groff warnings.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const BIN: &str = env!("CARGO_BIN_EXE_vfio-bind");

/// Run `make TARGET` in the repository with only PATH from the environment.
fn make(target: &str, destdir: &Path, compdir: &Path) {
    let out = Command::new("make")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LC_ALL", "C")
        .arg("-C")
        .arg(REPO)
        .arg(target)
        .arg(format!("DESTDIR={}", destdir.display()))
        .arg("PREFIX=/usr")
        .arg(format!("VFIO_BIND_BIN={BIN}"))
        .arg(format!("COMPDIR={}", compdir.display()))
        // Take the Makefile's fallback unit dir ($(PREFIX)/lib/systemd/system) rather than
        // the host's pkg-config answer, which is /lib/systemd/system on Debian 12.
        .arg("PKG_CONFIG=false")
        .output()
        .expect("run make (is GNU make installed?)");
    assert!(
        out.status.success(),
        "make {target} failed: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every file under `dir` (relative path, permission bits), sorted; fails on anything
/// that is neither a file nor a directory.
fn files(dir: &Path) -> Vec<(String, u32)> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, u32)>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let meta = fs::symlink_metadata(e.path()).unwrap();
            if meta.is_dir() {
                walk(base, &e.path(), out);
            } else {
                assert!(
                    meta.is_file(),
                    "{} is not a regular file",
                    e.path().display()
                );
                let rel = e.path().strip_prefix(base).unwrap().display().to_string();
                out.push((rel, meta.permissions().mode() & 0o7777));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

const EXPECTED: &[(&str, u32)] = &[
    ("etc/libvirt/hooks/qemu.d/vfio-bind", 0o755),
    ("etc/vfio-bind.toml", 0o644),
    (
        "usr/lib/dracut/modules.d/90vfio-bind/module-setup.sh",
        0o755,
    ),
    (
        "usr/lib/dracut/modules.d/90vfio-bind/vfio-bind-cmdline.sh",
        0o755,
    ),
    (
        "usr/lib/dracut/modules.d/90vfio-bind/vfio-bind-initrd.service",
        0o644,
    ),
    ("usr/lib/initcpio/hooks/vfio-bind", 0o644),
    ("usr/lib/initcpio/install/sd-vfio-bind", 0o644),
    ("usr/lib/initcpio/install/vfio-bind", 0o644),
    ("usr/lib/modules-load.d/vfio-bind.conf", 0o644),
    ("usr/lib/systemd/system/vfio-bind-initrd.service", 0o644),
    ("usr/lib/systemd/system/vfio-bind.service", 0o644),
    ("usr/sbin/vfio-bind", 0o755),
    ("usr/share/bash-completion/completions/vfio-bind", 0o644),
    ("usr/share/fish/vendor_completions.d/vfio-bind.fish", 0o644),
    ("usr/share/initramfs-tools/hooks/vfio-bind", 0o755),
    (
        "usr/share/initramfs-tools/scripts/init-top/00-vfio-bind",
        0o755,
    ),
    ("usr/share/man/man5/vfio-bind.toml.5", 0o644),
    ("usr/share/man/man8/vfio-bind.8", 0o644),
    ("usr/share/zsh/vendor-completions/_vfio-bind", 0o644),
];

fn expected() -> Vec<(String, u32)> {
    EXPECTED.iter().map(|&(p, m)| (p.to_string(), m)).collect()
}

fn read(p: impl AsRef<Path>) -> Vec<u8> {
    let p = p.as_ref();
    fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

#[test]
fn make_install_lays_out_exactly_the_expected_files_and_keeps_the_config() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("dest");
    let comp = tmp.path().join("completions");
    let repo = PathBuf::from(REPO);

    make("install", &dest, &comp);
    assert_eq!(files(&dest), expected());

    // Installed as shipped.
    assert_eq!(read(dest.join("usr/sbin/vfio-bind")), read(BIN));
    for (installed, shipped) in [
        ("etc/vfio-bind.toml", "dist/etc/vfio-bind.toml"),
        (
            "etc/libvirt/hooks/qemu.d/vfio-bind",
            "dist/libvirt/qemu.d/vfio-bind",
        ),
        (
            "usr/lib/systemd/system/vfio-bind.service",
            "dist/systemd/vfio-bind.service",
        ),
        (
            "usr/lib/modules-load.d/vfio-bind.conf",
            "dist/modules-load.d/vfio-bind.conf",
        ),
        ("usr/share/man/man8/vfio-bind.8", "man/vfio-bind.8"),
        // The integrations, with PREFIX=/usr unchanged by install's sed.
        (
            "usr/lib/systemd/system/vfio-bind-initrd.service",
            "dist/systemd/vfio-bind-initrd.service",
        ),
        (
            "usr/lib/dracut/modules.d/90vfio-bind/vfio-bind-initrd.service",
            "dist/systemd/vfio-bind-initrd.service",
        ),
        (
            "usr/lib/dracut/modules.d/90vfio-bind/module-setup.sh",
            "dist/dracut/90vfio-bind/module-setup.sh",
        ),
        (
            "usr/share/initramfs-tools/hooks/vfio-bind",
            "dist/initramfs-tools/hooks/vfio-bind",
        ),
        (
            "usr/share/initramfs-tools/scripts/init-top/00-vfio-bind",
            "dist/initramfs-tools/scripts/init-top/00-vfio-bind",
        ),
        (
            "usr/lib/initcpio/install/vfio-bind",
            "dist/initcpio/install/vfio-bind",
        ),
        (
            "usr/lib/initcpio/hooks/vfio-bind",
            "dist/initcpio/hooks/vfio-bind",
        ),
        (
            "usr/share/man/man5/vfio-bind.toml.5",
            "man/vfio-bind.toml.5",
        ),
    ] {
        assert_eq!(
            read(dest.join(installed)),
            read(repo.join(shipped)),
            "{installed}"
        );
    }
    let modules = String::from_utf8(read(dest.join("usr/lib/modules-load.d/vfio-bind.conf")));
    assert!(modules.unwrap().lines().any(|l| l.trim() == "vfio-pci"));
    for completion in [
        "usr/share/bash-completion/completions/vfio-bind",
        "usr/share/zsh/vendor-completions/_vfio-bind",
        "usr/share/fish/vendor_completions.d/vfio-bind.fish",
    ] {
        let text = String::from_utf8(read(dest.join(completion))).unwrap();
        assert!(
            text.contains("vfio-bind"),
            "{completion} is not a vfio-bind completion:\n{text}"
        );
    }

    // A second install keeps the admin's config and changes nothing else.
    let mine = "# edited by the admin\n[[device]]\nid = \"10de:1c03\"\n";
    fs::write(dest.join("etc/vfio-bind.toml"), mine).unwrap();
    make("install", &dest, &comp);
    assert_eq!(files(&dest), expected());
    assert_eq!(read(dest.join("etc/vfio-bind.toml")), mine.as_bytes());

    // Uninstall removes everything but the config.
    make("uninstall", &dest, &comp);
    assert_eq!(
        files(&dest),
        vec![("etc/vfio-bind.toml".to_string(), 0o644)]
    );
    assert_eq!(read(dest.join("etc/vfio-bind.toml")), mine.as_bytes());
}

#[test]
fn man_pages_render_without_groff_warnings() {
    for page in ["man/vfio-bind.8", "man/vfio-bind.toml.5"] {
        let out = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(Path::new(REPO).join(page))
            .output()
            .expect("run groff (Debian package groff-base)");
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{page}: groff {}:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
