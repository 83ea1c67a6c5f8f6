//! Policy rules end to end: rules files in front of a real cache, fed by the lab captures
//! and by generated ones.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use common::{meta_dir, peercache_json, plain_torrent, repo};
use peercache::cache::{CommitPolicy, PieceStore, StoreWriter};
use peercache::config::Config;
use peercache::engine::Engine;
use peercache::replay::{replay_with, ReplayOptions};
use peercache::report::Report;
use peercache::rules::{self, RuleCounters, RulesSink};
use peercache::runtime::{self, Shared};
use peercache::swarm::pieces::FlowContext;
use peercache::swarm::{Metainfo, PieceSink, Registry, VerifiedPiece};
use peercache::synth::{self, SynthArgs};
use peercache::wire::infohash::InfoHash;
use peercache::wire::link::LinkType;

const PLAIN: &str = "bf31b5eba75965210f1ab47d4312b4c87493bb93";
const MAGNET: &str = "f55284268c9b103c824eec9515ddfa5fe5d9d10d";

struct Run {
    report: Report,
    shared: Shared,
    dir: tempfile::TempDir,
}

impl Run {
    fn cached(&self, ih: &str) -> u64 {
        self.report
            .swarms
            .iter()
            .find(|s| s.info_hash == ih)
            .map_or(0, |s| s.pieces_cached)
    }
    fn rule(&self, name: &str) -> RuleCounters {
        *self
            .report
            .rules
            .get(name)
            .unwrap_or_else(|| panic!("no rule {name} in {:?}", self.report.rules.keys()))
    }
    fn audit(&self) -> Vec<serde_json::Value> {
        read_audit(&self.dir.path().join("audit.jsonl"))
    }
}

fn read_audit(p: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
        .collect()
}

/// Replay `pcaps` (plain's metainfo from its .torrent, magnet's from the wire) into a fresh
/// disk cache behind the rules `yaml` (written beside an `audit.jsonl`).
fn replay_rules(pcaps: &[&str], yaml: &str) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let meta = meta_dir(dir.path(), &plain_torrent());
    let rules_path = dir.path().join("rules.yaml");
    std::fs::write(&rules_path, format!("audit_log: audit.jsonl\n{yaml}")).unwrap();
    let store = Arc::new(PieceStore::open(&dir.path().join("cache"), 1 << 30).unwrap());
    let mut shared = Shared {
        registry: Arc::new(Registry::default()),
        sink: Arc::new(StoreWriter::new(store, 16, CommitPolicy::default())),
        rules: None,
        fetch: None,
        served: Default::default(),
        requests: None,
    };
    runtime::install_rules(&mut shared, &rules_path, Default::default()).unwrap();
    let cfg = Config {
        subscriber_nets: vec!["198.18.0.0/16".parse().unwrap()],
        metainfo_dir: Some(meta),
        rules: Some(rules_path),
        ..Config::default()
    };
    let paths: Vec<PathBuf> = pcaps.iter().map(|p| repo().join("pcaps").join(p)).collect();
    let out = replay_with(&paths, &cfg, &ReplayOptions::default(), &shared);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    Run {
        report: out.report,
        shared,
        dir,
    }
}

const BOTH: [&str; 2] = ["lab-tcp-plain.pcap", "lab-tcp-magnet.pcap"];

#[test]
fn no_rules_in_force_caches_both() {
    let r = replay_rules(&BOTH, "");
    assert_eq!((r.cached(PLAIN), r.cached(MAGNET)), (16, 16));
    let d = r.rule("default");
    assert_eq!((d.matched, d.cached, d.refused), (32, 32, 0));
    assert!(r.audit().is_empty());
}

#[test]
fn blocklist_caches_nothing_of_the_swarm_and_audits_refusals() {
    let r = replay_rules(&BOTH, &format!("blocklist: [{PLAIN}]\n"));
    assert_eq!((r.cached(PLAIN), r.cached(MAGNET)), (0, 16));
    let b = r.rule("blocklist");
    assert_eq!(
        (b.matched, b.cached, b.refused, b.purged_bytes),
        (16, 0, 16, 0)
    );
    assert_eq!(r.rule("default").cached, 16);
    let audit = r.audit();
    assert_eq!(audit.len(), 16, "one line per refused piece: {audit:?}");
    let mut indexes: Vec<u64> = audit
        .iter()
        .map(|l| {
            assert_eq!(l["info_hash"], PLAIN);
            assert_eq!(l["rule"], "blocklist");
            assert_eq!(l["action"], "refuse");
            assert_eq!(l["bytes"], 65536);
            assert!(l["time"].as_f64().unwrap() > 1.6e9);
            l["index"].as_u64().unwrap()
        })
        .collect();
    indexes.sort();
    assert_eq!(indexes, (0..16).collect::<Vec<_>>());
    // Never served either: its requests are not hits, and `contains` says no.
    let ih: InfoHash = PLAIN.parse().unwrap();
    assert!(!r.shared.sink.contains(&ih, 0));
    // The same counts on /metrics.
    let snap = runtime::snapshot(
        "replay",
        "x",
        0.0,
        &peercache::report::Stats::default(),
        &r.shared,
        Default::default(),
        &Config::default(),
        (0, 0),
        true,
    );
    let text = peercache::metrics::prometheus::render(&snap);
    for line in [
        "peercache_rule_decisions_total{rule=\"blocklist\",decision=\"refused\"} 16",
        "peercache_rule_decisions_total{rule=\"blocklist\",decision=\"cached\"} 0",
        "peercache_rule_decisions_total{rule=\"default\",decision=\"cached\"} 16",
        "peercache_rule_purged_bytes_total{rule=\"blocklist\"} 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing from:\n{text}"
        );
    }
}

#[test]
fn allowlist_caches_only_the_listed_swarm() {
    let r = replay_rules(&BOTH, &format!("allowlist: [{MAGNET}]\n"));
    assert_eq!((r.cached(PLAIN), r.cached(MAGNET)), (0, 16));
    let a = r.rule("allowlist");
    assert_eq!((a.matched, a.cached, a.refused), (16, 0, 16));
    assert_eq!(r.rule("default").cached, 16);
    assert!(r
        .audit()
        .iter()
        .all(|l| l["info_hash"] == PLAIN && l["rule"] == "allowlist"));
}

#[test]
fn name_pattern() {
    let r = replay_rules(
        &BOTH,
        "rules:\n  - name: no-plain\n    match: {name: 'LAB-tcp-plain*'}\n    action: observe\n",
    );
    assert_eq!((r.cached(PLAIN), r.cached(MAGNET)), (0, 16));
    let n = r.rule("no-plain");
    assert_eq!((n.matched, n.refused), (16, 16));
    assert_eq!(r.audit().len(), 16);
}

#[test]
fn piece_and_swarm_size_limits() {
    // Both torrents are 1 MiB in 64 KiB pieces.
    let r = replay_rules(
        &BOTH,
        "rules:\n  - name: small-pieces\n    match: {max_piece_length: 32768}\n    action: observe\n\
         \x20 - name: big-swarms\n    match: {min_total_length: 1048576}\n    action: ignore\n",
    );
    assert_eq!((r.cached(PLAIN), r.cached(MAGNET)), (0, 0));
    assert_eq!(r.rule("small-pieces").matched, 0);
    let b = r.rule("big-swarms");
    assert_eq!((b.matched, b.cached, b.refused), (32, 0, 0));
    assert!(r.audit().is_empty(), "ignore is not audited");

    let r = replay_rules(
        &BOTH,
        "rules:\n  - name: big-swarms\n    match: {min_total_length: 1048577}\n    action: observe\n",
    );
    assert_eq!((r.cached(PLAIN), r.cached(MAGNET)), (16, 16));
    assert_eq!(r.rule("big-swarms").matched, 0);
}

#[test]
fn network_port_and_vlan_conditions_use_the_request_flow() {
    let rule = |cond: &str| {
        format!("default: observe\nrules:\n  - name: r\n    match: {{{cond}}}\n    action: cache\n")
    };
    let r = replay_rules(
        &BOTH,
        &rule("subscriber_nets: [198.18.0.0/24], upstream_ports: [6881]"),
    );
    assert_eq!(r.rule("r").cached, 32);
    let r = replay_rules(&BOTH, &rule("upstream_nets: ['2001:db8::/32']"));
    assert_eq!(r.rule("r").cached, 0);
    let r = replay_rules(&BOTH, &rule("vlans: [5]"));
    assert_eq!(r.rule("r").cached, 0);
}

/// Records, in order, the subscribers that requested and the admissions that succeeded.
struct Probe {
    inner: Arc<RulesSink>,
    events: Mutex<Vec<Event>>,
}

#[derive(Debug)]
enum Event {
    Request(std::net::IpAddr),
    Admitted(u32),
    Refused(u32),
}

impl PieceSink for Probe {
    fn contains(&self, ih: &InfoHash, index: u32) -> bool {
        self.inner.contains(ih, index)
    }
    fn admit(&self, m: &Metainfo, piece: VerifiedPiece) -> bool {
        let i = piece.index();
        let ok = self.inner.admit(m, piece);
        self.events.lock().unwrap().push(if ok {
            Event::Admitted(i)
        } else {
            Event::Refused(i)
        });
        ok
    }
    fn touch(&self, ih: &InfoHash, index: u32) {
        self.inner.touch(ih, index)
    }
    fn cached_pieces(&self, ih: &InfoHash) -> u64 {
        self.inner.cached_pieces(ih)
    }
    fn retry_later(&self, ih: &InfoHash) -> bool {
        self.inner.retry_later(ih)
    }
    fn watches_requests(&self) -> bool {
        self.inner.watches_requests()
    }
    fn requested(&self, ih: &InfoHash, flow: &FlowContext) {
        self.events
            .lock()
            .unwrap()
            .push(Event::Request(flow.subscriber.ip()));
        self.inner.requested(ih, flow)
    }
}

/// Three generated sessions of one torrent, leechers on 198.18.0.0/16, through rules with
/// `min_subscribers`. Returns the event log and what the rule counted.
fn popularity(min: u32) -> (Vec<Event>, RuleCounters, u32) {
    let dir = tempfile::tempdir().unwrap();
    let mut a = SynthArgs {
        output: dir.path().join("s.pcap"),
        torrent_out: Some(dir.path().join("s.torrent")),
        flows: 3,
        size: synth::ByteSize(512 * 1024),
        piece_length: 32 * 1024,
        ..Default::default()
    };
    synth::run(&a).unwrap();
    let m = Metainfo::from_torrent_file(&dir.path().join("s.torrent")).unwrap();
    let pieces = m.num_pieces();
    let registry = Registry::default();
    registry.insert(m, peercache::swarm::Source::File);
    let rules_path = dir.path().join("rules.yaml");
    std::fs::write(
        &rules_path,
        format!(
            "audit_log: audit.jsonl\nrules:\n  - name: popular\n    action: cache\n    min_subscribers: {min}\n"
        ),
    )
    .unwrap();
    let inner: Arc<dyn PieceSink + Send + Sync> = Arc::new(peercache::swarm::MemorySink::default());
    let (rs, _) = RulesSink::new(inner, &rules_path).unwrap();
    let rs = Arc::new(rs);
    let probe = Arc::new(Probe {
        inner: rs.clone(),
        events: Mutex::new(Vec::new()),
    });
    let shared = Shared {
        registry: Arc::new(registry),
        sink: probe.clone(),
        rules: Some(rs.clone()),
        fetch: None,
        served: Default::default(),
        requests: None,
    };
    let cfg = Config {
        subscriber_nets: vec!["198.18.0.0/16".parse().unwrap()],
        ..Config::default()
    };
    let mut e = Engine::with_shared(cfg, shared);
    a.torrent_out = None;
    // The generator interleaves its sessions; the first subscriber's session is replayed
    // whole before the others start, so popularity grows one subscriber at a time.
    let (mut first, mut rest) = (Vec::new(), Vec::new());
    synth::generate(&a, &mut |f| {
        // Ethernet + IPv4: source address at 26..30, destination at 30..34.
        let first_leecher = [198, 18, 0, 1];
        let mine = f.data.get(26..30) == Some(&first_leecher[..])
            || f.data.get(30..34) == Some(&first_leecher[..]);
        let v = if mine { &mut first } else { &mut rest };
        v.push((f.ts_micros, f.data.to_vec()));
        Ok(())
    })
    .unwrap();
    let shift = first.last().map_or(0, |f| f.0) + 1_000_000;
    for (ts, d) in first {
        e.handle(ts, LinkType::Ethernet, &d, d.len() as u32);
    }
    for (ts, d) in rest {
        e.handle(ts + shift, LinkType::Ethernet, &d, d.len() as u32);
    }
    e.finish();
    let c = rs.counters()["popular"];
    let ev = std::mem::take(&mut *probe.events.lock().unwrap());
    (ev, c, pieces)
}

#[test]
fn popularity_admission() {
    let (ev, c, pieces) = popularity(0);
    let first_admit = ev.iter().position(|e| matches!(e, Event::Admitted(_)));
    let second_subscriber = ev
        .iter()
        .position(|e| matches!(e, Event::Request(ip) if ip.to_string() != "198.18.0.1"));
    // Option's order puts None first: both must exist for the comparison to mean anything.
    let (first_admit, second_subscriber) = (first_admit.unwrap(), second_subscriber.unwrap());
    assert!(
        first_admit < second_subscriber,
        "without the threshold the first session fills the cache"
    );
    assert_eq!((c.cached, c.refused), (u64::from(pieces), 0));

    let (ev, c, pieces) = popularity(2);
    // Exactly what the order of events implies: every piece is refused while only the
    // first subscriber has asked (its session verifies all of them), and from the second
    // subscriber's first REQUEST on, the re-sent pieces are admitted.
    let mut seen = std::collections::HashSet::new();
    let (mut admitted, mut refused_before, mut already) = (0u64, 0u64, 0u64);
    for e in &ev {
        match e {
            Event::Request(ip) => {
                seen.insert(*ip);
            }
            Event::Admitted(i) => {
                assert!(
                    seen.len() >= 2,
                    "piece {i} admitted with {} subscribers",
                    seen.len()
                );
                admitted += 1;
            }
            Event::Refused(i) if seen.len() < 2 => {
                assert!(*i < pieces);
                refused_before += 1;
            }
            // The third session's copies: already cached, so not admitted again.
            Event::Refused(_) => already += 1,
        }
    }
    assert_eq!(refused_before, u64::from(pieces));
    assert_eq!(admitted, u64::from(pieces));
    assert_eq!(
        (c.cached, c.refused, c.matched),
        (
            admitted,
            refused_before,
            admitted + refused_before + already
        )
    );
    let (_, c, _) = popularity(4);
    assert_eq!(c.cached, 0, "3 subscribers never reach 4");
}

#[test]
fn reload_purges_a_newly_blocked_swarm_and_a_bad_file_changes_nothing() {
    // Fill a cache with no rules in force.
    let r = replay_rules(&["lab-tcp-plain.pcap"], "");
    assert_eq!(r.cached(PLAIN), 16);
    let cache = r.dir.path().join("cache");
    let rules_path = r.dir.path().join("rules.yaml");
    drop(r.shared);

    let store = Arc::new(PieceStore::open(&cache, 1 << 30).unwrap());
    let ih: InfoHash = PLAIN.parse().unwrap();
    assert_eq!(store.pieces(&ih).len(), 16);
    let (sink, first) = RulesSink::new(store.clone(), &rules_path).unwrap();
    assert_eq!(first.purged_bytes, 0);

    // A malformed file is refused; nothing is purged and the old rules stay.
    std::fs::write(
        &rules_path,
        format!("audit_log: audit.jsonl\nblocklist: [{PLAIN}]\nbogus: 1\n"),
    )
    .unwrap();
    let e = sink.reload(&rules_path).unwrap_err().to_string();
    assert!(e.contains("line 3") && e.contains("bogus"), "{e}");
    assert_eq!(store.pieces(&ih).len(), 16);
    assert!(!sink.rules().is_blocked(&ih));

    // The operator fixes it and sends SIGHUP again: the swarm is purged and audited.
    std::fs::write(
        &rules_path,
        format!("audit_log: audit.jsonl\nblocklist: [{PLAIN}]\n"),
    )
    .unwrap();
    let done = sink.reload(&rules_path).unwrap();
    assert_eq!((done.purged_swarms, done.purged_bytes), (1, 16 * 65536));
    assert!(store.pieces(&ih).is_empty());
    assert!(store.metainfo(&ih).is_none());
    assert!(!sink.contains(&ih, 0));
    assert_eq!(sink.counters()["blocklist"].purged_bytes, 16 * 65536);
    let audit = read_audit(&r.dir.path().join("audit.jsonl"));
    let purges: Vec<_> = audit.iter().filter(|l| l["action"] == "purge").collect();
    assert_eq!(purges.len(), 1, "{audit:?}");
    assert_eq!(purges[0]["info_hash"], PLAIN);
    assert_eq!(purges[0]["rule"], "blocklist");
    assert_eq!(purges[0]["bytes"], 16 * 65536);

    // A second reload finds nothing left to purge and writes no line.
    assert_eq!(sink.reload(&rules_path).unwrap().purged_bytes, 0);
    assert_eq!(read_audit(&r.dir.path().join("audit.jsonl")).len(), 1);

    // And the tap's SIGHUP path reaches the same reload.
    let shared = Shared {
        registry: Arc::new(Registry::default()),
        sink: Arc::new(peercache::swarm::MemorySink::default()),
        rules: Some(Arc::new(sink)),
        fetch: None,
        served: Default::default(),
        requests: None,
    };
    let cfg = Config {
        rules: Some(rules_path.clone()),
        ..Config::default()
    };
    // Taken: Ok; refused: Err (logged as a warning), each with its line.
    let line = runtime::reload_rules(&shared, &cfg, None).unwrap().unwrap();
    assert!(line.contains("rules reloaded"), "{line}");
    std::fs::write(&rules_path, "rules: [\n").unwrap();
    let line = runtime::reload_rules(&shared, &cfg, None)
        .unwrap()
        .unwrap_err();
    assert!(
        line.contains("refused, previous rules stay") && line.contains("line"),
        "{line}"
    );
}

#[test]
fn load_purges_what_the_blocklist_names() {
    let r = replay_rules(&["lab-tcp-plain.pcap"], "");
    let cache = r.dir.path().join("cache");
    let rules_path = r.dir.path().join("rules.yaml");
    drop(r.shared);
    std::fs::write(
        &rules_path,
        format!("audit_log: audit.jsonl\nblocklist: [{PLAIN}]\n"),
    )
    .unwrap();
    let store = Arc::new(PieceStore::open(&cache, 1 << 30).unwrap());
    let (_sink, done) = RulesSink::new(store.clone(), &rules_path).unwrap();
    assert_eq!(done.purged_bytes, 16 * 65536);
    assert!(store.swarms().is_empty());
}

#[test]
fn malformed_files_name_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "rules:\n  - name: a\n    action: cache\n    colour: red\n",
            "line 4 column 5",
        ),
        ("blocklist:\n  - 1234\n", "line 2"),
        ("rules:\n  - name: a\n    action: hoard\n", "line 3"),
        (
            "rules:\n  - name: a\n    match: {subscriber_nets: [10.0.0.0/33]}\n    action: cache\n",
            "line 3",
        ),
        (
            "rules:\n  - name: a\n    action: cache\n    min_subscribers: -1\n",
            "line 4",
        ),
        ("rules: [\n", "line"),
    ];
    for (text, want) in cases {
        let p = dir.path().join("r.yaml");
        std::fs::write(&p, text).unwrap();
        let e = rules::Rules::load(&p)
            .err()
            .unwrap_or_else(|| panic!("accepted {text:?}"))
            .to_string();
        assert!(e.contains(want) && e.contains("r.yaml"), "{text:?}: {e}");
    }
    // An audit log that cannot be opened refuses the file too.
    let p = dir.path().join("r.yaml");
    std::fs::write(&p, "audit_log: /nonexistent/dir/audit.jsonl\n").unwrap();
    let inner: Arc<dyn PieceSink + Send + Sync> = Arc::new(peercache::swarm::MemorySink::default());
    let e = RulesSink::new(inner, &p).err().unwrap().to_string();
    assert!(e.contains("audit log"), "{e}");
}

#[test]
fn rules_check_cli_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let run = |p: &Path| {
        Command::new(env!("CARGO_BIN_EXE_peercache"))
            .args(["rules", "check"])
            .arg(p)
            .output()
            .unwrap()
    };
    let out = run(&repo().join("rules/default.yaml"));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "default: cache\nrulez: []\n").unwrap();
    let out = run(&bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("line 2 column 1") && err.contains("rulez"),
        "{err}"
    );
    let out = run(&dir.path().join("missing.yaml"));
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn replay_cli_with_rules_reports_them() {
    let dir = tempfile::tempdir().unwrap();
    let rules_path = dir.path().join("r.yaml");
    std::fs::write(&rules_path, format!("blocklist: [{PLAIN}]\n")).unwrap();
    let v = peercache_json([
        "replay".as_ref(),
        "--json".as_ref(),
        "--no-progress".as_ref(),
        "--metainfo".as_ref(),
        repo().join("pcaps").as_os_str(),
        "--rules".as_ref(),
        rules_path.as_os_str(),
        repo().join("pcaps/lab-tcp-plain.pcap").as_os_str(),
    ]);
    assert_eq!(v["rules"]["blocklist"]["refused"], 16);
    assert_eq!(v["swarms"][0]["pieces_cached"], 0);
}

/// Issue 20's policy hook: once a peer is proven to have sent `min_peer_proven_bad_bytes`
/// of bad data, a rule matching it refuses pieces it contributed to (others are still
/// cached) and, inline, REQUESTs sent to it are not answered from the cache; the peer
/// crossing the threshold is written to the audit log once.
#[test]
fn proven_liars_are_refused_and_audited_once() {
    use peercache::cache::PieceKey;
    use peercache::serve::source::StoreBlocks;
    use peercache::serve::{BlockSource, Lookup};
    use peercache::wire::peerwire::BlockRef;

    // A cache with a real swarm's pieces (and its metainfo).
    let r = replay_rules(&["lab-tcp-plain.pcap"], "");
    assert_eq!(r.cached(PLAIN), 16);
    let cache = r.dir.path().join("cache");
    drop(r.shared);
    let store = Arc::new(PieceStore::open(&cache, 1 << 30).unwrap());
    let ih: InfoHash = PLAIN.parse().unwrap();
    let m = store.metainfo(&ih).unwrap();
    let piece = |i: u32| {
        let key = PieceKey {
            info_hash: ih,
            index: i,
        };
        let data = store.get(&key).unwrap().unwrap();
        store.remove(&key).unwrap();
        VerifiedPiece::verify(&m, i, data).unwrap()
    };
    let rules_path = r.dir.path().join("liars.yaml");
    std::fs::write(
        &rules_path,
        "audit_log: audit.jsonl\ndefault: serve\nrules:\n  - name: liars\n    match:\n      min_peer_proven_bad_bytes: 32768\n    action: block\n",
    )
    .unwrap();
    let (sink, _) = RulesSink::new(store.clone(), &rules_path).unwrap();
    let sink = Arc::new(sink);
    let (liar, honest): (std::net::SocketAddr, std::net::SocketAddr) = (
        "198.19.0.66:6881".parse().unwrap(),
        "198.19.0.2:6881".parse().unwrap(),
    );

    // Below the threshold the liar's pieces are still cached.
    sink.proven_bad(liar, 16384);
    assert!(sink.admit(&m, piece(0).with_senders(vec![honest, liar])));
    assert!(read_audit(&r.dir.path().join("audit.jsonl")).is_empty());
    // At it: one audit line, and pieces it took part in are refused; others are not.
    sink.proven_bad(liar, 16384);
    sink.proven_bad(liar, 16384);
    let audit = read_audit(&r.dir.path().join("audit.jsonl"));
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0]["action"], "peer_proven_bad");
    assert_eq!(audit[0]["peer"], "198.19.0.66:6881");
    assert_eq!(audit[0]["rule"], "liars");
    assert_eq!(audit[0]["bytes"], 32768);
    assert_eq!(sink.peer_proven_bad_bytes(&liar), 49152);
    assert!(!sink.admit(&m, piece(1).with_senders(vec![honest, liar])));
    assert!(sink.admit(&m, piece(2).with_senders(vec![honest])));
    let c = sink.counters()["liars"];
    assert_eq!((c.matched, c.cached, c.refused), (1, 0, 1));

    // Inline: a REQUEST to the liar is not answered from the cache; to the honest peer it is.
    let blocks = StoreBlocks::new(store.clone(), Some(sink.clone()), 1 << 20);
    let req = BlockRef {
        index: 2,
        begin: 0,
        length: 16384,
    };
    let flow = |up| FlowContext {
        subscriber: "198.18.0.2:50000".parse().unwrap(),
        upstream: up,
        vlan: None,
    };
    assert!(matches!(
        blocks.lookup(ih.as_bytes(), req, &flow(liar)),
        Lookup::Refused
    ));
    assert!(matches!(
        blocks.lookup(ih.as_bytes(), req, &flow(honest)),
        Lookup::Hit(b) if b.len() == 16384
    ));
}
