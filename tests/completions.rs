//! The completion scripts `vfio-bind completions SHELL` prints (and `make install`
//! installs), run in the shells themselves: the options of a subcommand complete after
//! it (`vfio-bind apply --<TAB>` offers `--dry-run`), subcommands complete at the top, and
//! a full path to the binary works as well. The shells come from tests/vm/setup.sh.

use std::process::Command;

fn script(shell: &str) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_vfio-bind"))
        .args(["completions", shell])
        .output()
        .unwrap();
    assert!(o.status.success());
    String::from_utf8(o.stdout).unwrap()
}

/// Run `code` in `shell` with the script saved as `file` in a temp dir (cwd).
fn run(shell: &str, file: &str, code: &str) -> String {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join(file), script(shell)).unwrap();
    let o = Command::new(shell)
        .current_dir(d.path())
        .args(["-c", code])
        .output()
        .unwrap_or_else(|e| panic!("{shell}: {e} (tests/vm/setup.sh installs it)"));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{shell}: {out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// What bash's completion function offers for the words of `line` (the last one being
/// completed).
fn bash_complete(line: &str) -> String {
    let words: Vec<&str> = line.split(' ').collect();
    let cword = words.len() - 1;
    let prev = if cword > 0 { words[cword - 1] } else { "" };
    let code = format!(
        "source ./vfio-bind.bash\nCOMP_WORDS=({line})\nCOMP_CWORD={cword}\n\
         _vfio__bind {} '{}' {prev}\necho \"${{COMPREPLY[*]}}\"",
        words[0], words[cword]
    );
    run("bash", "vfio-bind.bash", &code)
}

#[test]
fn bash_completes_subcommand_options() {
    let out = bash_complete("vfio-bind apply --");
    assert!(out.contains("--dry-run"), "{out}");
    let out = bash_complete("vfio-bind release --");
    assert!(out.contains("--all"), "{out}");
    let out = bash_complete("vfio-bind status --");
    assert!(out.contains("--json"), "{out}");
    let out = bash_complete("/usr/sbin/vfio-bind doctor --");
    assert!(out.contains("--guest-memory"), "{out}");
    let out = bash_complete("vfio-bind re");
    assert_eq!(out.trim(), "release", "{out}");
}

#[test]
fn fish_completes_subcommand_options() {
    let code = "source ./vfio-bind.fish; complete -C 'vfio-bind apply --'; \
                echo ---; complete -C 'vfio-bind rel'";
    let out = run("fish", "vfio-bind.fish", code);
    let (apply, sub) = out.split_once("---").unwrap();
    assert!(apply.contains("--dry-run"), "{out}");
    assert!(sub.contains("release"), "{out}");
}

/// zsh: the script loads through compinit as the autoloaded `_vfio-bind` function of an
/// interactive zsh on a pseudo-terminal (zsh/zpty); two TABs after `vfio-bind apply --`
/// list `--dry-run`.
#[test]
fn zsh_completes_subcommand_options() {
    let code = r#"
zmodload zsh/zpty
zpty z zsh -f -i
zpty -w z "PS1='> '; fpath=($PWD \$fpath); autoload -Uz compinit; compinit -u -D"
zpty -w z "zstyle ':completion:*' list-prompt ''; setopt nolistambiguous; LISTMAX=1000"
zpty -w z $'vfio-bind apply --\t\t'
sleep 3
out=""
while zpty -r -t z chunk; do out+=$chunk; done
zpty -d z
print -r -- "$out" | tr -d '\033' | grep -o -- '--[a-z-]*' | sort -u | tr '\n' ' '
"#;
    let out = run("zsh", "_vfio-bind", code);
    assert!(out.contains("--dry-run"), "{out}");
}
