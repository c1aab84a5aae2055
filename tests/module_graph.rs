//! The module graph of `src/` is acyclic: no module imports one that imports it back,
//! directly or through others (README, "Layout"; DESIGN.md, "Architecture").
//!
//! An edge A → B is any path in A's code that names module B: `use crate::b::…`,
//! `crate::b::…` inline, `super::…`, and a child module named by its relative path
//! (`select::select(…)` in `plan/mod.rs`). Comments, doc comments and string literals do
//! not count; declaring a child (`mod x;`) is ownership, not an import. A file's
//! `#[cfg(test)] mod tests` is a module of its own (`a::tests`), as rustc sees it. The
//! library (`src/lib.rs`) and the binary (`src/main.rs`) are checked as the two crates
//! they are.
//!
//! Built on the source text rather than on a tool such as cargo-modules: that one needs
//! rust-analyzer's crates compiled on every fresh CI machine (several hundred crates on
//! two cores) for a check this small. The control tests below run the same checker on
//! generated trees with and without a cycle, so the check is shown to fail when it should.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Module path (`plan::select`, `` for the crate root) → the module paths it names.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// Blank out comments, string and char literals (keeping line structure irrelevant here).
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        let rest = &src[i..];
        if rest.starts_with("//") {
            i += rest.find('\n').unwrap_or(rest.len());
        } else if rest.starts_with("/*") {
            i += rest.find("*/").map_or(rest.len(), |e| e + 2);
        } else if rest.starts_with("r#\"") || rest.starts_with("r\"") {
            let hashes = rest[1..].bytes().take_while(|&c| c == b'#').count();
            let close = format!("\"{}", "#".repeat(hashes));
            let body = 2 + hashes;
            i += body
                + rest[body..]
                    .find(&close)
                    .map_or(rest.len() - body, |e| e + close.len());
            out.push_str("\"\"");
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && (rest.get(2..3) == Some("'") || rest.starts_with("'\\")) {
            // A char literal ('x', '\n', '\''); a lifetime ('a) has no closing quote there.
            let end = rest[2..].find('\'').map_or(rest.len(), |e| e + 3);
            i += end;
            out.push_str("' '");
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// Expand a use tree (`a::{b, c::{self, d}}`) into its paths.
fn expand_use(tree: &str) -> Vec<String> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    let Some(open) = tree.find('{') else {
        return vec![tree];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .flat_map(|p| expand_use(&format!("{prefix}{p}")))
        .collect()
}

/// Every path the code names that starts with `crate`, `super`, `self` or a child module.
fn paths(code: &str, children: &BTreeSet<String>) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    // `use` items, with their trees expanded.
    let mut rest = code;
    while let Some(i) = find_word(rest, "use") {
        let stmt = &rest[i + 3..];
        let end = stmt.find(';').unwrap_or(stmt.len());
        for p in expand_use(&stmt[..end]) {
            out.push(p.split("::").map(str::to_string).collect());
        }
        rest = &stmt[end..];
    }
    // Paths inline: maximal `ident::ident::…` runs.
    let bytes = code.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    while i < bytes.len() {
        if ident(bytes[i]) && (i == 0 || !(ident(bytes[i - 1]) || bytes[i - 1] == b':')) {
            let mut j = i;
            let mut segs = Vec::new();
            loop {
                let s = j;
                while j < bytes.len() && ident(bytes[j]) {
                    j += 1;
                }
                segs.push(code[s..j].to_string());
                if code[j..].starts_with("::") && bytes.get(j + 2).is_some_and(|&c| ident(c)) {
                    j += 2;
                } else {
                    break;
                }
            }
            if segs.len() > 1 {
                out.push(segs);
            }
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
    out.retain(|p| {
        p.len() > 1
            && (matches!(p[0].as_str(), "crate" | "super" | "self") || children.contains(&p[0]))
    });
    out
}

fn find_word(s: &str, w: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut from = 0;
    while let Some(i) = s[from..].find(w).map(|i| i + from) {
        let before = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        let after = b.get(i + w.len()).is_some_and(|c| c.is_ascii_whitespace());
        if before && after {
            return Some(i);
        }
        from = i + w.len();
    }
    None
}

/// `mod name;` / `pub mod name;` declarations of a file: its child modules.
fn children_of(code: &str) -> BTreeSet<String> {
    code.split(';')
        .filter_map(|s| {
            let s = s.trim();
            let s = s
                .strip_prefix("pub(crate) ")
                .or(s.strip_prefix("pub "))
                .unwrap_or(s);
            let name = s.rsplit('\n').next()?.trim();
            let name = name
                .strip_prefix("pub(crate) ")
                .or(name.strip_prefix("pub "))
                .unwrap_or(name);
            name.strip_prefix("mod ").map(|n| n.trim().to_string())
        })
        .filter(|n| n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .collect()
}

fn join(m: &str, child: &str) -> String {
    if m.is_empty() {
        child.to_string()
    } else {
        format!("{m}::{child}")
    }
}

fn parent(m: &str) -> String {
    m.rsplit_once("::")
        .map_or(String::new(), |(p, _)| p.to_string())
}

/// The module files of the crate rooted at `root_file`, by module path.
fn modules(dir: &Path, root_file: &str) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut todo = vec![(String::new(), dir.join(root_file), dir.to_path_buf())];
    while let Some((m, file, sub)) = todo.pop() {
        let code = code_only(&fs::read_to_string(&file).unwrap());
        for c in children_of(&code) {
            let flat = sub.join(format!("{c}.rs"));
            let nested = sub.join(&c).join("mod.rs");
            let f = if flat.exists() { flat } else { nested };
            assert!(f.exists(), "module {} has no file", join(&m, &c));
            todo.push((join(&m, &c), f, sub.join(&c)));
        }
        out.insert(m, file);
    }
    out
}

/// Split a file's code at its `#[cfg(test)] mod tests {`: (module code, tests code).
fn split_tests(code: &str) -> (&str, &str) {
    match code.find("#[cfg(test)]") {
        Some(i) if code[i..].contains("mod tests") => (&code[..i], &code[i..]),
        _ => (code, ""),
    }
}

/// Resolve `path` named in module `m` (whose file declares `children` of module `file`)
/// to the deepest module in `known` it goes through.
fn resolve(
    m: &str,
    file: &str,
    path: &[String],
    known: &BTreeSet<String>,
    children: &BTreeSet<String>,
) -> Option<String> {
    let (mut base, rest) = match path[0].as_str() {
        "crate" => (String::new(), &path[1..]),
        "self" => (m.to_string(), &path[1..]),
        "super" => {
            let mut b = parent(m);
            let mut r = &path[1..];
            while r.first().map(String::as_str) == Some("super") {
                b = parent(&b);
                r = &r[1..];
            }
            (b, r)
        }
        c if children.contains(c) => (join(file, c), &path[1..]),
        _ => return None,
    };
    for seg in rest {
        let next = join(&base, seg);
        if known.contains(&next) {
            base = next;
        } else {
            break;
        }
    }
    Some(base)
}

/// The import graph of the crate rooted at `dir/root_file`.
fn graph(dir: &Path, root_file: &str) -> Graph {
    let files = modules(dir, root_file);
    let mut known: BTreeSet<String> = files.keys().cloned().collect();
    known.extend(files.keys().map(|m| join(m, "tests")));
    let mut g = Graph::new();
    for (m, file) in &files {
        let code = code_only(&fs::read_to_string(file).unwrap());
        let children = children_of(&code);
        let (main, tests) = split_tests(&code);
        // In the tests module, `super` is the file's module.
        for (node, text) in [(m.clone(), main), (join(m, "tests"), tests)] {
            let edges = g.entry(node.clone()).or_default();
            for p in paths(text, &children) {
                if let Some(t) = resolve(&node, m, &p, &known, &children) {
                    if t != node && !t.is_empty() {
                        edges.insert(t);
                    }
                }
            }
        }
    }
    g
}

/// Every cycle (a strongly connected component of two or more modules), as a path.
fn cycles(g: &Graph) -> Vec<Vec<String>> {
    // Reachability by DFS from each node; a node on a cycle reaches itself.
    let reach = |from: &String| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<&String> = g.get(from).into_iter().flatten().collect();
        while let Some(n) = stack.pop() {
            if seen.insert(n.clone()) {
                stack.extend(g.get(n).into_iter().flatten());
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<String>> = g.keys().map(|n| (n, reach(n))).collect();
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut done = BTreeSet::new();
    for (n, r) in &reaches {
        if !r.contains(*n) || done.contains(*n) {
            continue;
        }
        let scc: Vec<String> = r
            .iter()
            .filter(|o| reaches.get(o).is_some_and(|ro| ro.contains(*n)))
            .cloned()
            .collect();
        done.extend(scc.iter().cloned());
        out.push(scc);
    }
    out
}

fn report(g: &Graph, cyc: &[Vec<String>]) -> String {
    let mut s = String::new();
    for c in cyc {
        s.push_str(&format!("cycle among: {}\n", c.join(", ")));
        for m in c {
            let inside: Vec<&String> = g[m].iter().filter(|t| c.contains(t)).collect();
            s.push_str(&format!("  {m} -> {inside:?}\n"));
        }
    }
    s
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn library_module_graph_has_no_cycle() {
    let g = graph(&src(), "lib.rs");
    let cyc = cycles(&g);
    assert!(
        cyc.is_empty(),
        "module cycles in src/:\n{}",
        report(&g, &cyc)
    );
    // The checker found the modules and their imports at all.
    assert!(g.len() > 30, "{g:#?}");
    assert!(g["plan::select"].contains("plan::model"), "{g:#?}");
    assert!(g["cmd::apply"].contains("apply::udev"), "{g:#?}");
}

#[test]
fn binary_module_graph_has_no_cycle() {
    let g = graph(&src(), "main.rs");
    assert!(g[""].contains("cli"), "{g:#?}");
    let cyc = cycles(&g);
    assert!(
        cyc.is_empty(),
        "module cycles in the binary:\n{}",
        report(&g, &cyc)
    );
}

/// Control: the checker finds a cycle through a parent's re-export, one through `super`,
/// and one through an inline path; comments, strings and `mod` declarations make none.
#[test]
fn checker_finds_cycles_and_only_cycles() {
    let d = tempfile::tempdir().unwrap();
    let w = |p: &str, s: &str| {
        let p = d.path().join(p);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, s).unwrap();
    };
    w(
        "lib.rs",
        "pub mod a;\npub mod b;\npub mod c;\n// use crate::c::X;\n",
    );
    w(
        "a/mod.rs",
        "pub mod inner;\npub use inner::T;\nfn f() { let _ = \"crate::b::x\"; }\n",
    );
    w("a/inner.rs", "use crate::b::{self, U};\npub struct T;\n");
    w("b.rs", "pub struct U;\nfn g() { crate::c::h(); }\n");
    w(
        "c.rs",
        "pub fn h() {}\n#[cfg(test)]\nmod tests { use crate::a::T; }\n",
    );
    let g = graph(d.path(), "lib.rs");
    assert!(cycles(&g).is_empty(), "{}", report(&g, &cycles(&g)));

    // b -> a (through the re-export in a/mod.rs) -> a::inner -> b
    w("b.rs", "use crate::a::{T};\npub struct U;\n");
    let cyc = cycles(&graph(d.path(), "lib.rs"));
    assert_eq!(
        cyc,
        vec![vec!["a".to_string(), "a::inner".into(), "b".into()]]
    );

    // a::inner -> a through `super`, a -> a::inner through the relative path.
    w("b.rs", "pub struct U;\n");
    w("a/inner.rs", "pub struct T;\nfn f() { super::g(); }\n");
    w("a/mod.rs", "pub mod inner;\npub fn g() { inner::T; }\n");
    let cyc = cycles(&graph(d.path(), "lib.rs"));
    assert_eq!(cyc, vec![vec!["a".to_string(), "a::inner".into()]]);

    // An inline path in code (not a `use`) counts.
    w("a/mod.rs", "pub mod inner;\n");
    w("a/inner.rs", "pub struct T;\n");
    w("b.rs", "pub fn u() { crate::c::h() }\n");
    w("c.rs", "pub fn h() { let _x = crate::b::u; }\n");
    let cyc = cycles(&graph(d.path(), "lib.rs"));
    assert_eq!(cyc, vec![vec!["b".to_string(), "c".into()]]);
}
