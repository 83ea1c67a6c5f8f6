//! The library's layering, checked from its source: which top-level modules name which
//! (`crate::<module>` paths, in code and tests alike, comments ignored). The modes (replay,
//! tap, inline) share what they need through `runtime` and never import one another, and
//! no chain of imports between top-level modules comes back to where it started.
//!
//! The binary (src/main.rs and its modules) is left out: it names the library as
//! `peercache::`, and its own `crate::` paths are its modules, not the library's.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The modes: each stands alone on `runtime` and the layers below.
const MODES: [&str; 3] = ["replay", "tap", "inline"];

/// Edges that other parts of the restructuring (issue 12) are removing in parallel; each
/// closes a cycle today. The coordinator empties this list once those branches are merged.
const ALLOWED: &[(&str, &str, &str)] = &[];

/// Files of the library, not of the binary.
fn library_sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n == "bin") {
                continue;
            }
            library_sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file belongs to (None for the crate roots).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    match first {
        "lib.rs" | "main.rs" => None,
        f => Some(f.trim_end_matches(".rs").to_owned()),
    }
}

fn strip_comments(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// Top-level modules named by `crate::x` and `crate::{x, y::z}` paths.
fn crate_paths(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        // `peercache::crate::` cannot occur; a preceding identifier char means e.g. `mycrate::`.
        let before = rest[..i].chars().last();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut item_start = true;
            for (k, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => item_start = true,
                    c if item_start && !c.is_whitespace() => {
                        item_start = false;
                        let name = ident(&group[k..]);
                        if !name.is_empty() && name != "self" {
                            out.insert(name);
                        }
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

/// module -> modules it names, and for each edge one file that names it.
fn edges() -> BTreeMap<String, BTreeMap<String, PathBuf>> {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    library_sources(&src, &mut files);
    files.sort();
    assert!(files.len() > 20, "found only {} source files", files.len());
    let mut g: BTreeMap<String, BTreeMap<String, PathBuf>> = BTreeMap::new();
    for f in files {
        let Some(from) = module_of(&src, &f) else {
            continue;
        };
        let text = std::fs::read_to_string(&f).unwrap();
        let deps = g.entry(from.clone()).or_default();
        for to in crate_paths(&strip_comments(&text)) {
            if to != from {
                deps.entry(to).or_insert_with(|| f.clone());
            }
        }
    }
    g
}

#[test]
fn path_scanner_reads_groups_and_skips_comments() {
    let code = strip_comments(
        "use crate::a::B;\nuse crate::{b, c::{D, E}, self};\n// crate::zz\nlet x = crate::d::f();",
    );
    let got: Vec<String> = crate_paths(&code).into_iter().collect();
    assert_eq!(got, ["a", "b", "c", "d"]);
}

#[test]
fn modes_do_not_import_each_other() {
    let g = edges();
    let mut bad = Vec::new();
    for m in MODES {
        for (to, file) in g.get(m).into_iter().flatten() {
            if MODES.contains(&to.as_str()) {
                bad.push(format!("{m} -> {to} ({})", file.display()));
            }
        }
    }
    assert!(bad.is_empty(), "modes importing modes: {bad:#?}");
}

#[test]
fn no_import_cycles_between_top_level_modules() {
    let mut g = edges();
    for (from, to, _) in ALLOWED {
        // An allowed edge that is gone should leave the list too.
        let present = g.get_mut(*from).and_then(|d| d.remove(*to));
        assert!(
            present.is_some(),
            "allow-listed edge {from} -> {to} no longer exists: remove it from ALLOWED"
        );
    }
    // Depth-first search; a node met again while on the stack closes a cycle.
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeMap<String, PathBuf>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        cycles: &mut Vec<String>,
    ) {
        if done.contains(n) {
            return;
        }
        if let Some(i) = stack.iter().position(|s| s == n) {
            let mut c = stack[i..].to_vec();
            c.push(n.to_owned());
            let via: Vec<String> = c
                .windows(2)
                .map(|w| format!("{} -> {} ({})", w[0], w[1], g[&w[0]][&w[1]].display()))
                .collect();
            cycles.push(via.join(", "));
            return;
        }
        stack.push(n.to_owned());
        for to in g.get(n).into_iter().flat_map(|d| d.keys()) {
            visit(to, g, stack, done, cycles);
        }
        stack.pop();
        done.insert(n.to_owned());
    }
    let mut cycles = Vec::new();
    let mut done = BTreeSet::new();
    for n in g.keys() {
        visit(n, &g, &mut Vec::new(), &mut done, &mut cycles);
    }
    assert!(cycles.is_empty(), "import cycles: {cycles:#?}");
}
