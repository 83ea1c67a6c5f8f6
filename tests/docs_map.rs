//! The module map in docs/design.md matches the tree, so it cannot drift.
//!
//! The map is the first fenced code block after the line
//! `<!-- module map: coordinator verifies against the tree -->`. Each non-empty line of it
//! is one entry: two spaces of indentation per level, a name (a directory ends with `/`),
//! then what it holds. An entry's path is its name under the directory entries above it at
//! lower levels; level 0 is the repository root.
//!
//! The rule: every file and every directory under `src/` is an entry, and every entry
//! (inside `src/` or not: `tests/`, `deploy/`, ...) exists. Adding, moving or removing a
//! file under `src/` therefore means one line in the map.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const MARKER: &str = "<!-- module map: coordinator verifies against the tree -->";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The paths the map names (directories with a trailing `/`), or what is malformed.
fn map_entries(design: &str) -> Result<Vec<String>, String> {
    let mut lines = design.lines().enumerate();
    lines
        .by_ref()
        .find(|(_, l)| l.trim() == MARKER)
        .ok_or("no module map marker")?;
    lines
        .by_ref()
        .find(|(_, l)| l.trim_start().starts_with("```"))
        .ok_or("no code block after the marker")?;
    let mut dirs: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for (i, line) in lines {
        if line.trim_start().starts_with("```") {
            return Ok(out);
        }
        if line.trim().is_empty() {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let level = indent / 2;
        if indent % 2 != 0 || level > dirs.len() {
            return Err(format!("line {}: bad indentation: {line:?}", i + 1));
        }
        dirs.truncate(level);
        let name = line.split_whitespace().next().unwrap_or_default();
        if (name.contains('/') && !name.ends_with('/')) || name.matches('/').count() > 1 {
            return Err(format!("line {}: one name per entry: {line:?}", i + 1));
        }
        let path = format!("{}{name}", dirs.concat());
        if name.ends_with('/') {
            dirs.push(name.to_owned());
        }
        out.push(path);
    }
    Err("the module map's code block is not closed".into())
}

/// Every file and directory under `dir`, as paths relative to `root` (directories with a
/// trailing `/`).
fn tree(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for e in entries {
        let p = e.unwrap().path();
        let rel = p
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if p.is_dir() {
            out.insert(format!("{rel}/"));
            tree(root, &p, out);
        } else {
            out.insert(rel);
        }
    }
}

/// What is wrong between a map and a tree: entries missing, entries that do not exist,
/// entries listed twice.
fn drift(
    map: &[String],
    src_tree: &BTreeSet<String>,
    exists: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut bad = Vec::new();
    let mut seen = BTreeSet::new();
    for e in map {
        if !seen.insert(e.as_str()) {
            bad.push(format!("{e}: listed twice"));
        }
        if !exists(e) {
            bad.push(format!("{e}: in the map but not in the tree"));
        }
    }
    for p in src_tree {
        if !seen.contains(p.as_str()) {
            bad.push(format!("{p}: in the tree but not in the map"));
        }
    }
    bad
}

#[test]
fn module_map_matches_the_tree() {
    let design = std::fs::read_to_string(repo().join("docs/design.md")).unwrap();
    let map = map_entries(&design).unwrap();
    let mut src = BTreeSet::new();
    tree(&repo(), &repo().join("src"), &mut src);
    src.insert("src/".to_owned());
    assert!(src.len() > 50, "only {} paths under src/", src.len());
    let exists = |e: &str| {
        let p = repo().join(e.trim_end_matches('/'));
        if e.ends_with('/') {
            p.is_dir()
        } else {
            p.is_file()
        }
    };
    let bad = drift(&map, &src, exists);
    assert!(
        bad.is_empty(),
        "docs/design.md's module map and the tree differ:\n{}",
        bad.join("\n")
    );
}

/// The checker itself: nesting, and each kind of drift.
#[test]
fn the_map_checker_catches_drift() {
    let doc = format!(
        "text\n{MARKER}\n\n```\nsrc/            the code\n  lib.rs        root\n  \
         a/            a dir\n    mod.rs      its root\n    b/          deeper\n      \
         c.rs      a file\n  gone.rs       removed\n  lib.rs        again\ntests/          \
         tests\n```\n```\nnot/   after the block\n```\n"
    );
    let map = map_entries(&doc).unwrap();
    assert_eq!(
        map,
        [
            "src/",
            "src/lib.rs",
            "src/a/",
            "src/a/mod.rs",
            "src/a/b/",
            "src/a/b/c.rs",
            "src/gone.rs",
            "src/lib.rs",
            "tests/",
        ]
    );
    let tree: BTreeSet<String> = ["src/", "src/lib.rs", "src/a/", "src/a/mod.rs", "src/a/b/"]
        .into_iter()
        .chain(["src/a/b/c.rs", "src/new.rs"])
        .map(String::from)
        .collect();
    let exists = |e: &str| tree.contains(e) || e == "tests/";
    assert_eq!(
        drift(&map, &tree, exists),
        [
            "src/gone.rs: in the map but not in the tree",
            "src/lib.rs: listed twice",
            "src/new.rs: in the tree but not in the map",
        ]
    );
    // Malformed maps are refused, not half-read.
    let bad_indent = format!("{MARKER}\n```\nsrc/\n   x.rs odd\n```\n");
    assert!(map_entries(&bad_indent).is_err());
    let skipped_level = format!("{MARKER}\n```\nsrc/\n    x.rs two levels down\n```\n");
    assert!(map_entries(&skipped_level).is_err());
    let unclosed = format!("{MARKER}\n```\nsrc/\n");
    assert!(map_entries(&unclosed).is_err());
    assert!(map_entries("no marker").is_err());
}
