//! The documentation's relative links resolve: every `[text](target)` in README.md and
//! docs/*.md that is not a URL must name a file or directory of the repository, and a
//! `#fragment` on a Markdown target must name one of its headings (GitHub's anchor rule).
//! Links inside code blocks and code spans are not links and are skipped.

mod common;

use std::path::{Path, PathBuf};

use common::repo;

/// A link as written: the file it is in, its line, and its target.
#[derive(Debug)]
struct Link {
    file: PathBuf,
    line: usize,
    target: String,
}

/// The text outside fenced code blocks and code spans, line by line (numbers from 1).
fn prose_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut fenced = false;
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Drop code spans: text between backtick runs (Markdown pairs them on one line).
        let mut kept = String::new();
        let mut in_code = false;
        for c in line.chars() {
            if c == '`' {
                in_code = !in_code;
            } else if !in_code {
                kept.push(c);
            }
        }
        out.push((i + 1, kept));
    }
    out
}

/// Every inline link target of a Markdown text.
fn links(file: &Path, text: &str) -> Vec<Link> {
    let mut out = Vec::new();
    for (line, prose) in prose_lines(text) {
        let mut rest = prose.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            // `[text](target "title")`: the target is the first word.
            let target = after[..end].split_whitespace().next().unwrap_or("");
            out.push(Link {
                file: file.to_owned(),
                line,
                target: target.to_string(),
            });
            rest = &after[end..];
        }
    }
    out
}

/// GitHub's anchor for a heading: lower case; letters, digits, `-` and `_` kept; spaces
/// become `-`; everything else dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a Markdown text's headings (code spans inside headings count as text).
fn anchors(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced && line.starts_with('#') {
            out.push(slug(line.trim_start_matches('#')));
        }
    }
    out
}

/// What is wrong with one link, if anything.
fn broken(link: &Link) -> Option<String> {
    let t = &link.target;
    if t.is_empty() {
        return Some("empty target".into());
    }
    if t.contains("://") || t.starts_with("mailto:") {
        return None;
    }
    let (path, fragment) = match t.split_once('#') {
        Some((p, f)) => (p, Some(f)),
        None => (t.as_str(), None),
    };
    let dir = link.file.parent().unwrap();
    let file = if path.is_empty() {
        link.file.clone()
    } else if path.starts_with('/') {
        return Some("absolute path (GitHub resolves it against the site, not the repo)".into());
    } else {
        dir.join(path)
    };
    if !file.exists() {
        return Some(format!("{} does not exist", file.display()));
    }
    if let Some(f) = fragment {
        if file.extension().is_some_and(|e| e == "md") {
            let text = std::fs::read_to_string(&file).unwrap();
            if !anchors(&text).iter().any(|a| a == f) {
                return Some(format!("no heading #{f} in {}", file.display()));
            }
        }
    }
    None
}

fn doc_files() -> Vec<PathBuf> {
    let mut v = vec![repo().join("README.md")];
    let docs = repo().join("docs");
    let mut pages: Vec<PathBuf> = std::fs::read_dir(&docs)
        .unwrap_or_else(|e| panic!("{}: {e}", docs.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    v.extend(pages);
    v
}

#[test]
fn every_relative_link_in_the_docs_resolves() {
    let files = doc_files();
    // README plus the pages it promises (a page lost in a move must fail here too).
    for page in [
        "cli",
        "report",
        "configuration",
        "inline",
        "metrics",
        "benchmarks",
        "lab",
        "design",
    ] {
        assert!(
            files.contains(&repo().join("docs").join(format!("{page}.md"))),
            "docs/{page}.md is missing"
        );
    }
    let mut checked = 0;
    let mut bad = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for l in links(f, &text) {
            checked += 1;
            if let Some(why) = broken(&l) {
                bad.push(format!(
                    "{}:{}: ({}) {why}",
                    l.file.strip_prefix(repo()).unwrap_or(&l.file).display(),
                    l.line,
                    l.target
                ));
            }
        }
    }
    assert!(bad.is_empty(), "broken links:\n{}", bad.join("\n"));
    // The README links every page; far fewer links means the parser stopped seeing them.
    assert!(checked >= files.len(), "only {checked} links found");
}

/// The checker itself: it must find each kind of broken link, and only those.
#[test]
fn the_link_checker_catches_broken_links() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("docs")).unwrap();
    std::fs::write(
        dir.path().join("docs/page.md"),
        "# A page\n\n## The `cache` section (v1)\n",
    )
    .unwrap();
    let readme = dir.path().join("README.md");
    let text = "\
[ok](docs/page.md) [ok anchor](docs/page.md#the-cache-section-v1) [web](https://example.org/x)
[missing](docs/nope.md) [bad anchor](docs/page.md#nope) [here](#a-heading-not-here)
`[in code](docs/nope.md)`
```
[in a block](docs/nope.md)
```
[abs](/docs/page.md) [titled](docs/page.md \"A title\")
";
    std::fs::write(&readme, text).unwrap();
    let found = links(&readme, text);
    let targets: Vec<&str> = found.iter().map(|l| l.target.as_str()).collect();
    assert_eq!(
        targets,
        [
            "docs/page.md",
            "docs/page.md#the-cache-section-v1",
            "https://example.org/x",
            "docs/nope.md",
            "docs/page.md#nope",
            "#a-heading-not-here",
            "/docs/page.md",
            "docs/page.md",
        ]
    );
    let bad: Vec<(usize, &str)> = found
        .iter()
        .filter(|l| broken(l).is_some())
        .map(|l| (l.line, l.target.as_str()))
        .collect();
    assert_eq!(
        bad,
        [
            (2, "docs/nope.md"),
            (2, "docs/page.md#nope"),
            (2, "#a-heading-not-here"),
            (7, "/docs/page.md"),
        ]
    );
}
