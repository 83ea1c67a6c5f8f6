use std::path::Path;

use super::*;

fn parse(s: &str) -> Result<Rules, String> {
    Rules::parse(s, Path::new("/etc/peercache/rules.yaml"))
}

const IH: &str = "bf31b5eba75965210f1ab47d4312b4c87493bb93";

fn ctx<'a>(ih: &'a InfoHash, name: Option<&'a str>, flow: Option<&'a FlowContext>) -> Context<'a> {
    Context {
        info_hash: ih,
        name,
        piece_length: 65536,
        total_length: 1 << 20,
        index: 0,
        flow,
        subscribers: 0,
        peer_proven_bad_bytes: 0,
    }
}

#[test]
fn empty_file_caches_everything() {
    let r = parse("").unwrap();
    let d = r.decide(&ctx(&InfoHash::from([0; 20]), None, None));
    assert_eq!(
        (d.rule, d.action, d.caches()),
        (DEFAULT, Action::Cache, true)
    );
}

#[test]
fn blocklist_wins_and_allowlist_refuses_others() {
    let r = parse(&format!(
        "blocklist: [{IH}]\nallowlist: [{IH}, '{}']\n",
        "00".repeat(20)
    ))
    .unwrap();
    let ih: InfoHash = IH.parse().unwrap();
    let d = r.decide(&ctx(&ih, None, None));
    assert_eq!((d.rule, d.action), (BLOCKLIST, Action::Block));
    let d = r.decide(&ctx(&InfoHash::from([1; 20]), None, None));
    assert_eq!((d.rule, d.caches()), (ALLOWLIST, false));
    let d = r.decide(&ctx(&InfoHash::from([0; 20]), None, None));
    assert_eq!((d.rule, d.caches()), (DEFAULT, true));
}

#[test]
fn conditions() {
    let r = parse(
        "default: observe\nrules:\n\
         - name: isos\n  match: {name: '*.iso', max_total_length: 2000000}\n  action: serve\n\
         - name: vlan\n  match: {vlans: [7], subscriber_nets: [10.0.0.0/8], upstream_ports: [6881]}\n  action: cache\n  min_subscribers: 2\n",
    )
    .unwrap();
    let ih = InfoHash::from([3; 20]);
    assert_eq!(r.decide(&ctx(&ih, Some("a.ISO"), None)).rule, "isos");
    assert_eq!(r.decide(&ctx(&ih, Some("a.mkv"), None)).rule, DEFAULT);
    let mut c = ctx(&ih, Some("a.iso"), None);
    c.total_length = 3_000_000;
    assert_eq!(r.decide(&c).rule, DEFAULT);
    let f = FlowContext {
        subscriber: "10.1.2.3:5000".parse().unwrap(),
        upstream: "192.0.2.1:6881".parse().unwrap(),
        vlan: Some(7),
    };
    let mut c = ctx(&ih, None, Some(&f));
    let d = r.decide(&c);
    assert_eq!((d.rule, d.waiting, d.caches()), ("vlan", true, false));
    c.subscribers = 2;
    assert!(r.decide(&c).caches());
    let g = FlowContext { vlan: Some(8), ..f };
    assert_eq!(r.decide(&ctx(&ih, None, Some(&g))).rule, DEFAULT);
    assert!(r.wants_requests());
    assert_eq!(r.max_min_subscribers(), 2);
}

#[test]
fn errors_name_line_and_column() {
    let e = parse("rules:\n  - name: a\n    action: cache\n    colour: red\n").unwrap_err();
    assert!(e.contains("line 4"), "{e}");
    let e = parse("blocklist:\n  - abc\n").unwrap_err();
    assert!(e.contains("line 2") && e.contains("40 hex digits"), "{e}");
    let e = parse("rules:\n  - name: a\n    action: cache_it\n").unwrap_err();
    assert!(e.contains("line 3"), "{e}");
    let e = parse("rules:\n  - name: a\n    action: cache\n  - name: a\n    action: ignore\n")
        .unwrap_err();
    assert!(e.contains("twice"), "{e}");
    let e = parse("rules:\n  - name: default\n    action: cache\n").unwrap_err();
    assert!(e.contains("reserved"), "{e}");
}

#[test]
fn relative_audit_log_is_beside_the_file() {
    let r = parse("audit_log: audit.jsonl\n").unwrap();
    assert_eq!(r.audit_log(), Some(Path::new("/etc/peercache/audit.jsonl")));
}

/// The shipped rules file must always be valid.
#[test]
fn default_rules_file_loads() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/default.yaml");
    let r = Rules::load(&p).unwrap();
    assert!(r
        .decide(&ctx(&InfoHash::from([9; 20]), Some("x"), None))
        .caches());
}
