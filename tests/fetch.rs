//! The metadata fetch from the swarm (BEP 9, issue 14), end to end with the real
//! `peercache` binary and real peers, on loopback only: a libtorrent seeder
//! (tests/lab/peer.py) and two hostile peers (tests/lab/hostile_peer.py): one answers
//! ut_metadata with wrong bytes of the right size, one never answers. A magnet link
//! naming the three is posted to `tap`'s HTTP service; the box must reject the first
//! (marked bad, never asked again), time out on the second, fetch from the seeder, count
//! each, persist what it fetched, and not fetch again after a restart. A second test
//! offers only the wrong peer: its metadata is never accepted.
//!
//! Needs root (tap captures on `lo`; the capture filter `udp port 9` keeps the box's own
//! fetch traffic out of the engine) and Debian's /usr/bin/python3 with python3-libtorrent
//! (deploy/install-deps.sh; CI installs it): a missing library fails the test, never skips it.
//! Every process a test starts is killed when the test ends, passed or not.

mod common;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{http_request, repo, Proc};
use peercache::swarm::Metainfo;
use serde_json::Value;

/// Debian's python, the one with python3-libtorrent (as tests/lab/lab.sh uses).
const PY: &str = "/usr/bin/python3";

/// The fetch settings of both tests: short per-peer deadlines so the silent peer costs
/// 2 s, no backoff between attempts so a wrongful retry would show at once.
const FETCH_CFG: &str = "metainfo_fetch:
  enabled: true
  idle_timeout_secs: 2
  total_timeout_secs: 10
  backoff_secs: 0
  connect_timeout_secs: 2
";

/// Fail (never skip) when the seeder's library is missing.
fn need_libtorrent() {
    let ok = Command::new(PY)
        .args(["-c", "import libtorrent"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{PY} cannot import libtorrent: install python3-libtorrent \
         (deploy/install-deps.sh; CI installs it). This test needs a real seeder."
    );
}

/// A loopback TCP port free a moment ago (for libtorrent, which does not report the
/// port it bound; the hostile peers and tap bind port 0 and say which they got).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_file(p: &Path, proc: &mut Proc, limit: Duration) {
    let start = Instant::now();
    while !p.exists() {
        proc.check_running();
        assert!(
            start.elapsed() < limit,
            "{}: no {} after {limit:?}; its log:\n{}",
            proc.name,
            p.display(),
            proc.lines().join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---- the peers

struct Torrent {
    path: PathBuf,
    data_dir: PathBuf,
    meta: Metainfo,
    ih: String,
}

/// A 1 MiB single-file torrent of 16 pieces (64 KiB), made by libtorrent. Its info
/// dictionary is a few hundred bytes: one ut_metadata piece (16 KiB), so each peer asked
/// gets exactly one request. The tracker URL is required by `peer.py make` but never
/// used: nothing listens on 127.0.0.1:1, the seeder is made ready without an announce
/// (`--ready-without-tracker`) and the box is given the peers in the magnet's x.pe. That
/// keeps a tracker daemon (opentracker wants a chroot, a whitelist and a user to drop to)
/// out of a test that does not exercise trackers at all.
fn make_torrent(dir: &Path, name: &str) -> Torrent {
    let data_dir = dir.join("seed");
    let out = Command::new(PY)
        .arg(repo().join("tests/lab/peer.py"))
        .args(["make", "--out-dir"])
        .arg(&data_dir)
        .args([
            "--name",
            name,
            "--size",
            "1048576",
            "--piece-length",
            "65536",
            "--seed",
            name,
            "--tracker",
            "http://127.0.0.1:1/announce",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "peer.py make: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let facts: Value = serde_json::from_slice(&out.stdout).unwrap();
    let path = PathBuf::from(facts["torrent"].as_str().unwrap());
    let meta = Metainfo::from_torrent_file(&path).unwrap();
    let ih = meta.info_hash.to_string();
    assert_eq!(facts["info_hash"].as_str(), Some(ih.as_str()));
    assert_eq!(
        (
            meta.name.as_str(),
            meta.num_pieces(),
            facts["num_pieces"].as_u64()
        ),
        (name, 16, Some(16))
    );
    assert!(
        meta.info.len() <= 16 * 1024,
        "the info dictionary must fit one metadata piece"
    );
    Torrent {
        path,
        data_dir,
        meta,
        ih,
    }
}

/// A libtorrent seeder on 127.0.0.1 (plain BitTorrent over TCP), ready (checked,
/// seeding, listening) when this returns.
fn seeder(dir: &Path, t: &Torrent) -> (Proc, SocketAddr) {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let ready = dir.join("seeder.ready");
    let mut p = Proc::spawn(
        "seeder",
        Command::new(PY)
            .arg(repo().join("tests/lab/peer.py"))
            .args(["seed", "--torrent"])
            .arg(&t.path)
            .arg("--data-dir")
            .arg(&t.data_dir)
            .args([
                "--listen",
                &addr.to_string(),
                "--encryption",
                "plain",
                "--transport",
                "tcp",
                "--ready-without-tracker",
                "--max-seconds",
                "300",
                "--ready-file",
            ])
            .arg(&ready),
    );
    wait_file(&ready, &mut p, Duration::from_secs(60));
    (p, addr)
}

/// A hostile peer (`wrong` or `silent`) for the torrent's swarm on 127.0.0.1, port chosen
/// by the kernel (read back from its stats file, written once it listens).
fn hostile(dir: &Path, t: &Torrent, mode: &str) -> (Proc, SocketAddr, PathBuf) {
    let stats = dir.join(format!("{mode}.stats.json"));
    let mut p = Proc::spawn(
        mode,
        Command::new(PY)
            .arg(repo().join("tests/lab/hostile_peer.py"))
            .args(["--listen", "127.0.0.1:0", "--mode", mode, "--torrent"])
            .arg(&t.path)
            .arg("--stats-file")
            .arg(&stats),
    );
    wait_file(&stats, &mut p, Duration::from_secs(20));
    let s = read_json(&stats);
    let addr: SocketAddr = s["listen"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        (s["info_hash"].as_str(), s["metadata_size"].as_u64()),
        (Some(t.ih.as_str()), Some(t.meta.info.len() as u64))
    );
    (p, addr, stats)
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// The counters a test asserts from a hostile peer's stats file.
fn asked(stats: &Path) -> [u64; 5] {
    let s = read_json(stats);
    let n = |k: &str| s[k].as_u64().unwrap_or_else(|| panic!("{k} in {s}"));
    [
        n("connections"),
        n("handshakes"),
        n("metadata_requests"),
        n("data_sent"),
        n("closed_by_peer"),
    ]
}

// ---- the box

fn write_cfg(dir: &Path, extra: &str) -> PathBuf {
    let p = dir.join("peercache.yaml");
    std::fs::write(&p, format!("{FETCH_CFG}{extra}")).unwrap();
    p
}

/// `peercache tap` on lo, capturing nothing of interest (`udp port 9`), with its HTTP
/// service on a port of its choosing (read back from its log line).
fn tap(cache: &Path, cfg: &Path) -> (Proc, SocketAddr) {
    let mut p = Proc::spawn(
        "tap",
        Command::new(env!("CARGO_BIN_EXE_peercache"))
            .args([
                "tap",
                "--iface",
                "lo",
                "--filter",
                "udp port 9",
                "--json",
                "--http",
                "127.0.0.1:0",
                "--cache-dir",
            ])
            .arg(cache)
            .arg("--config")
            .arg(cfg),
    );
    p.wait_for("capturing on lo", Duration::from_secs(20));
    let line = p.wait_for("dashboard and metrics at http://", Duration::from_secs(1));
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (p, addr)
}

/// A request with a plain-text body (a magnet link, or nothing).
fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    http_request(addr, method, path, "Content-Type: text/plain\r\n", body)
}

fn post_magnet(addr: SocketAddr, ih: &str, peers: &[SocketAddr]) -> (u16, Value) {
    let mut m = format!("magnet:?xt=urn:btih:{ih}");
    for p in peers {
        m.push_str(&format!("&x.pe={p}"));
    }
    let (st, body) = http(addr, "POST", "/api/v1/metainfo", m.as_bytes());
    let v = serde_json::from_str(&body).unwrap_or_else(|_| Value::String(body.clone()));
    (st, v)
}

/// The fetch counters: the report's `metainfo_fetch` key and its Prometheus series.
const COUNTERS: [(&str, &str); 13] = [
    ("attempts", "peercache_metainfo_fetch_attempts_total"),
    (
        "successes",
        "peercache_metainfo_fetch_results_total{result=\"success\"}",
    ),
    (
        "hash_mismatches",
        "peercache_metainfo_fetch_results_total{result=\"hash_mismatch\"}",
    ),
    (
        "timeouts",
        "peercache_metainfo_fetch_results_total{result=\"timeout\"}",
    ),
    (
        "connect_failures",
        "peercache_metainfo_fetch_results_total{result=\"connect_failed\"}",
    ),
    (
        "peer_errors",
        "peercache_metainfo_fetch_results_total{result=\"peer_error\"}",
    ),
    (
        "unusable",
        "peercache_metainfo_fetch_results_total{result=\"unusable\"}",
    ),
    (
        "refused_by_policy",
        "peercache_metainfo_fetch_policy_refusals_total",
    ),
    (
        "metadata_bytes",
        "peercache_metainfo_fetch_metadata_bytes_total",
    ),
    (
        "received_bytes",
        "peercache_metainfo_fetch_received_bytes_total",
    ),
    (
        "swarms_given_up",
        "peercache_metainfo_fetch_swarms_given_up_total",
    ),
    ("dropped", "peercache_metainfo_fetch_dropped_total"),
    ("in_flight", "peercache_metainfo_fetch_in_flight"),
];

/// `/metrics`, as series (name with labels) -> value.
fn metrics(addr: SocketAddr) -> BTreeMap<String, f64> {
    let (st, body) = http(addr, "GET", "/metrics", b"");
    assert_eq!(st, 200, "{body}");
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// The fetch counters from /metrics, by their report keys (every series must be there).
fn fetch_metrics(addr: SocketAddr) -> BTreeMap<&'static str, u64> {
    let m = metrics(addr);
    COUNTERS
        .iter()
        .map(|(k, series)| {
            let v = m.get(*series).unwrap_or_else(|| {
                panic!(
                    "/metrics has no {series}; its fetch series: {:?}",
                    m.keys()
                        .filter(|k| k.contains("metainfo_fetch"))
                        .collect::<Vec<_>>()
                )
            });
            (*k, *v as u64)
        })
        .collect()
}

/// The fetch counters from the JSON report (every key must be there).
fn fetch_report(report: &Value) -> BTreeMap<&'static str, u64> {
    let f = &report["metainfo_fetch"];
    COUNTERS
        .iter()
        .map(|(k, _)| {
            let v = f[*k]
                .as_u64()
                .unwrap_or_else(|| panic!("report metainfo_fetch.{k} missing: {f}"));
            (*k, v)
        })
        .collect()
}

/// Polls /metrics (published about once a second) until `done` holds, bounded.
fn wait_metrics(
    addr: SocketAddr,
    done: impl Fn(&BTreeMap<&'static str, u64>) -> bool,
) -> BTreeMap<&'static str, u64> {
    let start = Instant::now();
    loop {
        let m = fetch_metrics(addr);
        if done(&m) {
            return m;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "/metrics fetch counters never got there: {m:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `counters` restricted to the keys of `want` equals `want`.
fn assert_counters(what: &str, counters: &BTreeMap<&'static str, u64>, want: &[(&str, u64)]) {
    let got: Vec<(&str, u64)> = want.iter().map(|(k, _)| (*k, counters[k])).collect();
    assert_eq!(got, want, "{what}: all fetch counters {counters:?}");
}

/// Stop tap; it must exit 0 and print its JSON report.
fn stop_tap(p: Proc) -> (Value, Vec<String>) {
    let (st, out, lines) = p.stop();
    assert!(
        st.success(),
        "tap exit {st}; its log:\n{}",
        lines.join("\n")
    );
    let report: Value = serde_json::from_slice(&out).unwrap_or_else(|e| {
        panic!(
            "tap --json printed no report ({e}): {}",
            String::from_utf8_lossy(&out)
        )
    });
    (report, lines)
}

/// `peercache cache ls --json`: the swarms in the cache.
fn cache_ls(cache: &Path) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_peercache"))
        .args(["cache", "ls", "--json", "--cache-dir"])
        .arg(cache)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cache ls: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// Posting the magnet of a swarm whose metainfo the box has: 200, known, from `source`.
fn assert_known(addr: SocketAddr, ih: &str, peers: &[SocketAddr], source: &str) {
    let (st, v) = post_magnet(addr, ih, peers);
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        (
            v["info_hash"].as_str(),
            v["status"].as_str(),
            v["source"].as_str(),
            v["name"].as_str(),
            v["pieces"].as_u64()
        ),
        (
            Some(ih),
            Some("known"),
            Some(source),
            Some("fetchme.bin"),
            Some(16)
        ),
        "{v}"
    );
}

fn count(lines: &[String], needle: &str) -> usize {
    lines.iter().filter(|l| l.contains(needle)).count()
}

fn position(lines: &[String], needle: &str) -> usize {
    lines
        .iter()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no log line with {needle:?}:\n{}", lines.join("\n")))
}

/// Offered in the order wrong, silent, honest: the box asks the wrong peer (metadata
/// that does not hash: marked bad), then the silent one (timed out after the 2 s idle
/// limit), then the seeder (fetched). Each asked once: 3 attempts. The metainfo is in the
/// cache afterwards, and a restarted box knows it from there without fetching.
#[test]
fn fetches_past_a_wrong_and_a_silent_peer_and_keeps_it() {
    need_libtorrent();
    let dir = tempfile::tempdir().unwrap();
    let t = make_torrent(dir.path(), "fetchme.bin");
    let (ih, size) = (t.ih.clone(), t.meta.info.len() as u64);
    let (seed, h) = seeder(dir.path(), &t);
    let (_w, w, w_stats) = hostile(dir.path(), &t, "wrong");
    let (_s, s, s_stats) = hostile(dir.path(), &t, "silent");
    let cache = dir.path().join("cache");
    let cfg = write_cfg(dir.path(), "");

    let (mut box1, http1) = tap(&cache, &cfg);
    let (st, v) = post_magnet(http1, &ih, &[w, s, h]);
    assert_eq!(st, 202, "{v}");
    assert_eq!(
        (
            v["info_hash"].as_str(),
            v["status"].as_str(),
            v["peers"].as_u64()
        ),
        (Some(ih.as_str()), Some("fetching"), Some(3)),
        "{v}"
    );
    let fetched = box1.wait_for("metainfo: fetched", Duration::from_secs(30));
    assert!(
        fetched.ends_with(&format!(
            "metainfo: fetched fetchme.bin from {h} (swarm {ih}, {size} bytes)"
        )),
        "{fetched}"
    );
    // the order offered, each peer once, and why each of the first two failed
    let lines = box1.lines();
    let bad = format!(
        "metainfo fetch: {w} for swarm {ih}: metadata does not hash to the info-hash (peer marked bad)"
    );
    let timed_out = format!("metainfo fetch: {s} for swarm {ih}: timed out");
    assert_eq!(
        (count(&lines, &bad), count(&lines, &timed_out)),
        (1, 1),
        "{lines:#?}"
    );
    assert!(position(&lines, &bad) < position(&lines, &timed_out));
    assert!(position(&lines, &timed_out) < position(&lines, "metainfo: fetched"));

    let expect = [
        ("attempts", 3),
        ("successes", 1),
        ("hash_mismatches", 1),
        ("timeouts", 1),
        ("connect_failures", 0),
        ("peer_errors", 0),
        ("unusable", 0),
        ("refused_by_policy", 0),
        ("metadata_bytes", size),
        ("swarms_given_up", 0),
        ("dropped", 0),
        ("in_flight", 0),
    ];
    // Posted again: known now, fetched from the swarm.
    assert_known(http1, &ih, &[w, s, h], "fetched");
    let m = wait_metrics(http1, |m| m["successes"] >= 1 && m["in_flight"] == 0);
    assert_counters("/metrics", &m, &expect);
    // Received on the fetch connections: at least the three handshakes (68 bytes each) and
    // the two full metadata answers (the wrong peer's and the seeder's).
    assert!(m["received_bytes"] >= 3 * 68 + 2 * size, "{m:?}");

    // The hostile peers: the wrong one asked once (one connection, one request, one answer
    // sent), the silent one asked and never answering; the box closed both connections.
    assert_eq!(asked(&w_stats), [1, 1, 1, 1, 1], "wrong peer");
    assert_eq!(asked(&s_stats), [1, 1, 1, 0, 1], "silent peer");
    // and the seeder had one connection: the box's
    let seeder_conns = || count(&seed.lines(), "incoming_connection_alert");
    assert_eq!(seeder_conns(), 1, "{:#?}", seed.lines());

    let (report, _) = stop_tap(box1);
    let r = fetch_report(&report);
    assert_counters("report", &r, &expect);
    assert_eq!(r["received_bytes"], m["received_bytes"]);
    // The report lists the swarms seen on the wire; the capture filter admitted none, so
    // this one (known from the magnet and the fetch only) is not among them, and its
    // source shows in the intake's answer instead (above).
    assert!(
        report["swarms"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["info_hash"] != ih.as_str()),
        "{}",
        report["swarms"]
    );

    // persisted: the cache lists the swarm with its 16 pieces (none cached: no traffic)
    let ls = cache_ls(&cache);
    let entry: Vec<&Value> = ls
        .iter()
        .filter(|x| x["info_hash"] == ih.as_str())
        .collect();
    assert_eq!(entry.len(), 1, "{ls:?}");
    assert_eq!(
        (
            entry[0]["name"].as_str(),
            entry[0]["pieces"].as_u64(),
            entry[0]["piece_length"].as_u64(),
            entry[0]["pieces_cached"].as_u64()
        ),
        (Some("fetchme.bin"), Some(16), Some(65536), Some(0))
    );

    // a restarted box knows it from the cache: no fetch, nobody asked again
    let (box2, http2) = tap(&cache, &cfg);
    assert_known(http2, &ih, &[w, s, h], "cache");
    // long enough for a wrongful fetch to start (backoff 0) and reach a hostile peer
    std::thread::sleep(Duration::from_secs(1));
    let (report, lines) = stop_tap(box2);
    let r = fetch_report(&report);
    assert_counters(
        "report after restart",
        &r,
        &[("attempts", 0), ("successes", 0), ("received_bytes", 0)],
    );
    assert_eq!(count(&lines, "metainfo fetch:"), 0, "{lines:#?}");
    assert_eq!(asked(&w_stats)[0], 1, "wrong peer connected again");
    assert_eq!(asked(&s_stats)[0], 1, "silent peer connected again");
    assert_eq!(seeder_conns(), 1, "seeder connected again");
}

/// Only the wrong peer offered, and three attempts allowed: the box asks it once, finds
/// the metadata does not hash to the info-hash, marks it bad and never asks it again.
/// Nothing is accepted: no metainfo in the cache.
#[test]
fn never_accepts_metadata_that_does_not_hash() {
    need_libtorrent(); // peer.py make
    let dir = tempfile::tempdir().unwrap();
    let t = make_torrent(dir.path(), "refuseme.bin");
    let (ih, size) = (t.ih.clone(), t.meta.info.len() as u64);
    let (_w, w, w_stats) = hostile(dir.path(), &t, "wrong");
    let cache = dir.path().join("cache");
    let cfg = write_cfg(dir.path(), "  max_attempts_per_swarm: 3\n");

    let (mut bx, addr) = tap(&cache, &cfg);
    let (st, v) = post_magnet(addr, &ih, &[w]);
    assert_eq!(st, 202, "{v}");
    assert_eq!(
        (v["status"].as_str(), v["peers"].as_u64()),
        (Some("fetching"), Some(1)),
        "{v}"
    );
    bx.wait_for(
        &format!(
            "metainfo fetch: {w} for swarm {ih}: metadata does not hash to the info-hash (peer marked bad)"
        ),
        Duration::from_secs(20),
    );
    // Attempts 2 and 3 would follow at once (backoff 0); give them well over the idle
    // limit to show up.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(asked(&w_stats), [1, 1, 1, 1, 1], "wrong peer");
    // Offered again by the operator: still bad for this swarm, not asked.
    let (st, v) = post_magnet(addr, &ih, &[w]);
    assert_eq!(
        (st, v["status"].as_str(), v["peers"].as_u64()),
        (202, Some("fetching"), Some(1)),
        "{v}"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        asked(&w_stats),
        [1, 1, 1, 1, 1],
        "wrong peer, offered again"
    );
    let (report, lines) = stop_tap(bx);
    assert_eq!(count(&lines, "metainfo: fetched"), 0, "{lines:#?}");
    assert_eq!(count(&lines, "metainfo fetch:"), 1, "{lines:#?}");
    let r = fetch_report(&report);
    assert_counters(
        "report",
        &r,
        &[
            ("attempts", 1),
            ("successes", 0),
            ("hash_mismatches", 1),
            ("timeouts", 0),
            ("connect_failures", 0),
            ("peer_errors", 0),
            ("unusable", 0),
            ("refused_by_policy", 0),
            ("metadata_bytes", 0),
            // 1 attempt of 3 allowed: not given up, waiting for a peer not known bad
            ("swarms_given_up", 0),
            ("dropped", 0),
            ("in_flight", 0),
        ],
    );
    assert!(r["received_bytes"] >= 68 + size, "{r:?}");
    let ls = cache_ls(&cache);
    assert!(
        ls.iter().all(|x| x["info_hash"] != ih.as_str()),
        "metadata that does not hash was cached: {ls:?}"
    );
}
