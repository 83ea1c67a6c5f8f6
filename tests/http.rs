//! The operator HTTP service, end to end: snapshots of a real replay (the lab's plain TCP
//! capture, twice, so the second pass is all cache hits) published into `Live`, served on
//! 127.0.0.1, and checked by the tools a NOC uses: `promtool`, a real Prometheus scraping
//! it, and headless Chromium rendering the dashboard. Needs the `prometheus` and `chromium`
//! Debian packages (deploy/install-deps.sh).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use common::{http_request, repo};
use peercache::cache::{CommitPolicy, PieceStore, StoreWriter};
use peercache::capture::PcapFile;
use peercache::clock::now_unix;
use peercache::config::Config;
use peercache::engine::Engine;
use peercache::http::{serve, HttpError};
use peercache::metrics::{CaptureCounters, Live, Snapshot};
use peercache::report::{Report, Stats};
use peercache::runtime::Shared;
use peercache::serve::ServeCounters;
use peercache::stats::Counters;
use peercache::swarm::Registry;
use serde_json::Value;

const PLAIN_IH: &str = "bf31b5eba75965210f1ab47d4312b4c87493bb93";
/// Publish a snapshot every this many frames (the capture has 1203).
const EVERY: u64 = 150;
const CACHE_CAPACITY: u64 = 2 << 20;

/// What every test serves: the Live with its history, and the last published report.
struct Fixture {
    live: Arc<Live>,
    /// The same snapshots as an inline box publishes them: mode "inline", and the splice's
    /// counts growing from zero to `inline` (`inline_at`).
    inline_live: Arc<Live>,
    /// The splice's counts in the last inline snapshot.
    inline: ServeCounters,
    report: Report,
    publishes: usize,
    _cache: tempfile::TempDir,
}

/// The splice's counts at the end of the inline fixture. Every figure the dashboard shows is
/// distinct, so one shown under another's id fails the test; two reasons of each map are
/// non-zero and the rest absent, as the splice leaves them.
fn inline_final() -> ServeCounters {
    let mut c = ServeCounters::default();
    c.connections = 12;
    c.connections_spliced = 5;
    c.served_blocks = 448;
    c.served_bytes = 448 * 16384;
    c.misses = 64;
    c.miss_bytes = 64 * 16384;
    c.bypassed = [("overload".to_string(), 5), ("gap".to_string(), 3)].into();
    c.connections_bypassed = [
        ("not_bittorrent".to_string(), 2),
        ("midstream".to_string(), 1),
    ]
    .into();
    // Every REQUEST is served, missed or bypassed here (no read failures).
    c.requests = c.served_blocks + c.misses + c.bypassed.values().sum::<u64>();
    c.injected_segments = 448;
    c.retransmitted_segments = 6;
    c.retransmitted_bytes = 6 * 1448;
    c.retransmits_abandoned = 2;
    c.utp.connections = 4;
    c.utp.connections_spliced = 1;
    c.utp.served_blocks = 32;
    c.utp.served_bytes = 32 * 16384;
    c.utp_bypassed = [("gap".to_string(), 1)].into();
    c
}

/// The splice's counts at snapshot `k` of `n`: `inline_final` scaled by k/n, so the totals
/// grow (the served-rate chart has points) and the last snapshot carries them exactly.
fn inline_at(k: u64, n: u64) -> ServeCounters {
    let mut c = inline_final();
    let scale = |v: &mut u64| *v = *v * k / n;
    c.counts.for_each_mut(&mut |_, v| scale(v));
    c.utp.for_each_mut(&mut |_, v| scale(v));
    for m in [
        &mut c.bypassed,
        &mut c.connections_bypassed,
        &mut c.utp_bypassed,
        &mut c.utp_connections_bypassed,
    ] {
        m.values_mut().for_each(scale);
        // The splice adds a reason with its first count, so none is ever zero.
        m.retain(|_, v| *v > 0);
    }
    c
}

/// Replays the plain capture twice through engines sharing one disk cache, the way the tap
/// driver will: a snapshot every `EVERY` frames. Stamps are spaced a second apart ending
/// now, so the dashboard's time axis and staleness check see a normal live run.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let pcap = repo().join("pcaps/lab-tcp-plain.pcap");
        let tdir = tempfile::tempdir().unwrap();
        std::fs::copy(
            repo().join("pcaps/lab-tcp-plain.torrent"),
            tdir.path().join("lab-tcp-plain.torrent"),
        )
        .unwrap();
        let cache = tempfile::tempdir().unwrap();
        let registry = Registry::default();
        let (loaded, errs) = registry.load_dir(tdir.path());
        assert_eq!((loaded, errs.len()), (1, 0), "{errs:?}");
        let store = Arc::new(PieceStore::open(cache.path(), CACHE_CAPACITY).unwrap());
        let shared = Shared {
            registry: Arc::new(registry),
            sink: Arc::new(StoreWriter::new(store, 64, CommitPolicy::default())),
            rules: None,
            fetch: None,
            served: Arc::default(),
            requests: None,
        };
        let mut cfg = Config {
            subscriber_nets: vec!["198.18.0.0/24".parse().unwrap()],
            ..Config::default()
        };
        cfg.cache.capacity_bytes = CACHE_CAPACITY;

        let file_len = std::fs::metadata(&pcap).unwrap().len();
        let mut snaps: Vec<(Report, u64, bool)> = Vec::new();
        let mut before = Stats::default();
        for pass in 0..2u64 {
            let mut engine = Engine::with_shared(cfg.clone(), shared.clone());
            let mut file = PcapFile::open(&pcap).unwrap();
            let link = file.link;
            let mut pos = 0u64;
            while let Some(f) = file.next_frame().unwrap() {
                pos += f.data.len() as u64 + 16;
                engine.handle(f.ts_micros, link, f.data, f.orig_len);
                if file.frames.is_multiple_of(EVERY) {
                    let mut s = before.counters();
                    s.merge(engine.snapshot());
                    snaps.push((
                        report(&s, &shared),
                        pass * file_len + pos.min(file_len),
                        false,
                    ));
                }
            }
            before.merge(engine.finish());
        }
        shared.sink.flush();
        let last = report(&before, &shared);
        snaps.push((last.clone(), 2 * file_len, true));

        let live = Arc::new(Live::new(600));
        let inline_live = Arc::new(Live::new(600));
        let n = snaps.len();
        let start = now_unix() - n as f64;
        for (i, (r, read, finished)) in snaps.into_iter().enumerate() {
            let snap = Snapshot {
                mode: "replay".into(),
                unix_time: start + i as f64 + 1.0,
                started_unix: start,
                source: "pcaps/lab-tcp-plain.pcap (twice)".into(),
                input_read_bytes: read,
                input_total_bytes: 2 * file_len,
                capture: CaptureCounters::default(),
                cache_capacity_bytes: Some(CACHE_CAPACITY),
                report: r,
                finished,
                inline: None,
            };
            live.publish(snap.clone());
            inline_live.publish(Snapshot {
                mode: "inline".into(),
                inline: Some(inline_at(i as u64 + 1, n as u64)),
                ..snap
            });
        }
        let inline = inline_at(n as u64, n as u64);
        assert_eq!(inline, inline_final());
        Fixture {
            live,
            inline_live,
            inline,
            report: last,
            publishes: n,
            _cache: cache,
        }
    })
}

fn report(s: &Stats, shared: &Shared) -> Report {
    let mut r = Report::new(s, Vec::new());
    peercache::runtime::annotate(&mut r, shared);
    r
}

/// A response as a client sees it.
struct Resp {
    status: u16,
    headers: String,
    body: String,
}

/// Minimal HTTP/1.1 GET, `Connection: close`: the test needs no HTTP client crate.
fn get(addr: SocketAddr, path: &str) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    Resp {
        status,
        headers: head.to_ascii_lowercase(),
        body: body.to_string(),
    }
}

fn get_json(addr: SocketAddr, path: &str) -> Value {
    let r = get(addr, path);
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    assert!(
        r.headers.contains("content-type: application/json"),
        "{}",
        r.headers
    );
    serde_json::from_str(&r.body).unwrap()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills a child process when the test ends, passed or not.
struct Reap(Child);
impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One sample of the exposition, e.g. `peercache_frames_total` or
/// `peercache_bt_connections_total{transport="tcp"}`.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{series} missing from:\n{text}"))
        .parse()
        .unwrap()
}

#[test]
fn before_the_first_publish_the_api_says_so() {
    let live = Arc::new(Live::new(10));
    let srv = serve("127.0.0.1:0".parse().unwrap(), live.clone(), None, None).unwrap();
    let a = srv.local_addr;
    let r = get(a, "/api/summary");
    assert_eq!(r.status, 503);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert!(v["error"].as_str().unwrap().contains("no snapshot"), "{v}");
    assert_eq!(get(a, "/api/swarms").status, 503);
    assert_eq!(get(a, "/metrics").status, 503);
    assert_eq!(get_json(a, "/api/history"), serde_json::json!([]));
    let h = get(a, "/healthz");
    assert_eq!((h.status, h.body.as_str()), (200, "ok\n"));
    let nf = get(a, "/nope");
    assert_eq!(nf.status, 404);
    assert!(nf.body.contains("/nope"), "{}", nf.body);
    // The dashboard itself is served before any data, and says it is waiting.
    let d = get(a, "/");
    assert_eq!(d.status, 200);
    assert!(d.headers.contains("text/html"), "{}", d.headers);
    srv.shutdown();
    assert!(
        TcpStream::connect(a).is_err(),
        "still listening after shutdown"
    );
}

#[test]
fn a_busy_address_is_an_immediate_error_naming_it() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    match serve(addr, Arc::new(Live::new(1)), None, None) {
        Err(e @ HttpError::Bind { .. }) => {
            assert!(e.to_string().contains(&addr.to_string()), "{e}")
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("bound a busy address"),
    }
}

#[test]
fn json_api_describes_the_capture() {
    let f = fixture();
    let srv = serve("127.0.0.1:0".parse().unwrap(), f.live.clone(), None, None).unwrap();
    let a = srv.local_addr;
    let r = &f.report;
    let w = r.swarms.iter().find(|s| s.info_hash == PLAIN_IH).unwrap();
    // The capture twice: 64 REQUESTs and 64 PIECEs of 16 KiB per pass, 16 pieces of 64 KiB.
    assert_eq!(r.frames, 2 * 1203);
    assert_eq!((w.request_messages, w.piece_bytes), (128, 2 << 20));
    assert_eq!(
        (r.cache.hits, r.cache.hit_bytes, r.cache.misses),
        (64, 1 << 20, 64)
    );

    let s = get_json(a, "/api/summary");
    assert_eq!(s["mode"], "replay");
    assert_eq!(s["finished"], true);
    assert_eq!(s["report"]["frames"], r.frames);
    assert_eq!(s["report"]["cache"]["hit_bytes"], 1 << 20);
    assert_eq!(s["cache_capacity_bytes"], CACHE_CAPACITY);

    let list = get_json(a, "/api/swarms");
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), r.swarms.len());
    let v = &list[0];
    assert_eq!(v["info_hash"], PLAIN_IH);
    assert_eq!(v["name"], w.name.clone().unwrap());
    assert_eq!(
        (&v["pieces"], &v["piece_length"], &v["size_bytes"]),
        (&Value::from(16), &Value::from(65536), &Value::from(1 << 20))
    );
    assert_eq!(v["pieces_cached"], 16);
    assert_eq!(v["pieces_verified"], w.pieces_verified);
    assert_eq!(v["pieces_failed"], 0);
    assert_eq!(v["connections"], 2);
    assert_eq!(v["requests"], 128);
    assert_eq!(v["subscriber_requests"], 128);
    assert_eq!(v["piece_bytes"], 2 << 20);
    assert_eq!(v["metainfo"], "file");

    assert_eq!(get_json(a, "/api/swarms?limit=0"), serde_json::json!([]));
    let bad = get(a, "/api/swarms?limit=lots");
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("\"error\""), "{}", bad.body);

    let h = get_json(a, "/api/history");
    let h = h.as_array().unwrap();
    assert_eq!(h.len(), f.publishes);
    assert_eq!(h.last().unwrap()["frames"], r.frames);
    assert_eq!(h.last().unwrap()["hit_bytes"], 1 << 20);
    assert!(h
        .windows(2)
        .all(|p| p[0]["frames"].as_u64() <= p[1]["frames"].as_u64()));
    // Not inline: no splice counts, in the summary or the history.
    assert_eq!(s["inline"], Value::Null);
    assert!(h.iter().all(|p| p["inline_served_bytes"].is_null()));
    srv.shutdown();

    // Inline: the splice's counts as the report writes them, and served bytes over time.
    let srv = serve(
        "127.0.0.1:0".parse().unwrap(),
        f.inline_live.clone(),
        None,
        None,
    )
    .unwrap();
    let a = srv.local_addr;
    let s = get_json(a, "/api/summary");
    assert_eq!(s["mode"], "inline");
    assert_eq!(s["inline"], serde_json::to_value(&f.inline).unwrap());
    assert_eq!(s["inline"]["served_bytes"], f.inline.served_bytes);
    assert_eq!(
        s["inline"]["bypassed"]["overload"],
        f.inline.bypassed["overload"]
    );
    let h = get_json(a, "/api/history");
    let h = h.as_array().unwrap();
    assert_eq!(h.len(), f.publishes);
    assert_eq!(
        h.last().unwrap()["inline_served_bytes"],
        f.inline.served_bytes
    );
    assert!(h
        .windows(2)
        .all(|p| p[0]["inline_served_bytes"].as_u64() <= p[1]["inline_served_bytes"].as_u64()));
    srv.shutdown();
}

/// `promtool check metrics` passes `body` with no warning.
fn promtool_check_metrics(body: &str) {
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; deploy/install-deps.sh)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn metrics_pass_promtool_and_carry_the_report() {
    let f = fixture();
    let srv = serve("127.0.0.1:0".parse().unwrap(), f.live.clone(), None, None).unwrap();
    let m = get(srv.local_addr, "/metrics");
    srv.shutdown();
    assert_eq!(m.status, 200);
    assert!(
        m.headers
            .contains("content-type: text/plain; version=0.0.4"),
        "{}",
        m.headers
    );
    promtool_check_metrics(&m.body);

    // Kept beside the screenshot, for people reviewing a run.
    let _ = std::fs::write(
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("metrics.txt"),
        &m.body,
    );
    let r = &f.report;
    let t = m.body.as_str();
    let eq = |series: &str, v: u64| assert_eq!(sample(t, series), v as f64, "{series}");
    eq("peercache_frames_total", r.frames);
    eq("peercache_bytes_total", r.bytes);
    eq("peercache_swarms", r.swarms.len() as u64);
    eq("peercache_cache_hit_bytes_total", 1 << 20);
    eq("peercache_cache_miss_bytes_total", 1 << 20);
    eq("peercache_cache_hits_total", 64);
    eq("peercache_cache_misses_total", 64);
    eq("peercache_cache_stored_bytes", r.cache.stored_bytes);
    eq("peercache_cache_capacity_bytes", CACHE_CAPACITY);
    eq(
        "peercache_pieces_verified_total",
        r.swarms.iter().map(|s| s.pieces_verified).sum(),
    );
    eq("peercache_pieces_failed_total", 0);
    eq(
        "peercache_bt_connections_total{transport=\"tcp\"}",
        r.bittorrent.tcp_connections,
    );
    eq("peercache_bt_connections_total{transport=\"utp\"}", 0);
    eq(
        "peercache_bt_encrypted_connections_total{transport=\"tcp\"}",
        0,
    );
    eq("peercache_flows_total{proto=\"tcp\"}", r.flows.tcp);
    eq(
        "peercache_capture_dropped_frames_total{reason=\"kernel\"}",
        0,
    );
    eq("peercache_decode_errors_total{kind=\"truncated\"}", 0);
    eq("peercache_tcp_gaps_total", r.reassembly.gaps);
    eq(
        &format!("peercache_top_swarm_requests{{info_hash=\"{PLAIN_IH}\"}}"),
        128,
    );
    eq("peercache_finished", 1);
    assert_eq!(sample(t, "peercache_cache_hit_ratio_bytes"), 0.5);
    assert!(
        t.contains(&format!(
            "peercache_info{{mode=\"replay\",version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        )),
        "{t}"
    );
    assert!(
        !t.contains("peercache_inline_"),
        "inline series in replay mode"
    );

    // Inline mode adds the splice's families, which pass promtool too.
    let srv = serve(
        "127.0.0.1:0".parse().unwrap(),
        f.inline_live.clone(),
        None,
        None,
    )
    .unwrap();
    let m = get(srv.local_addr, "/metrics");
    srv.shutdown();
    assert_eq!(m.status, 200);
    promtool_check_metrics(&m.body);
    let t = m.body.as_str();
    let eq = |series: &str, v: u64| assert_eq!(sample(t, series), v as f64, "{series}");
    let c = &f.inline;
    eq("peercache_inline_served_blocks_total", c.served_blocks);
    eq("peercache_inline_served_bytes_total", c.served_bytes);
    eq("peercache_inline_misses_total", c.misses);
    for (reason, n) in &c.bypassed {
        eq(
            &format!("peercache_inline_bypassed_requests_total{{reason=\"{reason}\"}}"),
            *n,
        );
    }
    eq(
        "peercache_inline_retransmitted_segments_total",
        c.retransmitted_segments,
    );
    eq(
        "peercache_inline_retransmits_abandoned_total",
        c.retransmits_abandoned,
    );
    eq(
        "peercache_inline_utp_served_bytes_total",
        c.utp.served_bytes,
    );
}

#[test]
fn prometheus_scrapes_the_service() {
    let f = fixture();
    let srv = serve("127.0.0.1:0".parse().unwrap(), f.live.clone(), None, None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: peercache\n    static_configs:\n      - targets: ['{}']\n",
            srv.local_addr
        ),
    )
    .unwrap();
    let port = free_port();
    let web: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let _prom = Reap(
        Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={web}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("prometheus (Debian package prometheus; deploy/install-deps.sh)"),
    );
    let want = f.report.frames.to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    loop {
        if TcpStream::connect(web).is_ok() {
            let r = get(web, "/api/v1/query?query=peercache_frames_total");
            last = r.body.clone();
            if r.status == 200 {
                let v: Value = serde_json::from_str(&r.body).unwrap();
                if v["data"]["result"][0]["value"][1] == want.as_str() {
                    break;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never reported peercache_frames_total = {want}; last answer: {last}\nlog:\n{}",
            std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // The target is healthy in Prometheus' own view too.
    let t = get(web, "/api/v1/targets");
    let v: Value = serde_json::from_str(&t.body).unwrap();
    assert_eq!(v["data"]["activeTargets"][0]["health"], "up", "{v}");
    srv.shutdown();
}

/// Runs headless Chromium on the dashboard with extra arguments; its stdout.
fn chromium(url: &str, profile: &Path, extra: &[String]) -> String {
    let child = Command::new("/usr/bin/chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdout(Stdio::piped())
        // A file, not a pipe nobody reads: Chromium is chatty and a full pipe would hang it.
        .stderr(std::fs::File::create(profile.join("chromium.log")).unwrap())
        .spawn()
        .expect("chromium (Debian package chromium; deploy/install-deps.sh)");
    let child = Reap(child);
    // Chromium has no timeout of its own; a hung browser must fail the test, not CI.
    let (tx, rx) = std::sync::mpsc::channel();
    let mut child = child;
    let stdout = child.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::BufReader::new(stdout).read_to_string(&mut s);
        let _ = tx.send(s);
    });
    rx.recv_timeout(Duration::from_secs(90))
        .expect("chromium did not finish within 90 s")
}

/// The value of `attr` on the element whose opening tag contains `marker`.
fn attr(dom: &str, marker: &str, attr: &str) -> Option<String> {
    let at = dom.find(marker)?;
    let start = dom[..=at].rfind('<')?;
    let end = at + dom[at..].find('>')?;
    let tag = &dom[start..end];
    let key = format!("{attr}=\"");
    let v = &tag[tag.find(&key)? + key.len()..];
    Some(v[..v.find('"')?].to_string())
}

fn text_of(dom: &str, id: &str) -> Option<String> {
    let at = dom.find(&format!("id=\"{id}\""))?;
    let v = &dom[at + dom[at..].find('>')? + 1..];
    Some(v[..v.find('<')?].to_string())
}

/// Serves `live` and returns what headless Chromium has on the dashboard after its refreshes
/// (`--dump-dom`), or its stdout for other `extra` arguments.
fn dashboard(live: &Arc<Live>, extra: &[String]) -> String {
    let srv = serve("127.0.0.1:0".parse().unwrap(), live.clone(), None, None).unwrap();
    let url = format!("http://{}/", srv.local_addr);
    let profile = tempfile::tempdir().unwrap();
    let out = chromium(&url, profile.path(), extra);
    srv.shutdown();
    out
}

/// Every canvas of the page: its id and the points it drew.
fn canvas_points(dom: &str) -> Vec<(String, u64)> {
    dom.match_indices("<canvas")
        .map(|(i, _)| {
            let c = &dom[i..];
            let id = attr(c, "<canvas", "id").unwrap();
            let points = attr(c, "<canvas", "data-points").unwrap().parse().unwrap();
            (id, points)
        })
        .collect()
}

/// The dashboard's `fmtBytes` (the fixture's values are no rounding ties, where Rust and
/// JavaScript could round apart).
fn fmt_bytes(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let (mut v, mut i) = (n as f64, 0);
    while v >= 1024.0 && i < units.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    let d = match (i, v) {
        (0, _) => 0,
        (_, v) if v < 10.0 => 2,
        (_, v) if v < 100.0 => 1,
        _ => 0,
    };
    format!("{v:.d$} {}", units[i])
}

/// The dashboard's `fmtPct`.
fn fmt_pct(r: f64) -> String {
    let d = if r >= 0.1 || r == 0.0 { 1 } else { 2 };
    format!("{:.d$} %", 100.0 * r)
}

/// The dashboard's `fmtCount` below a million: en-US digit groups.
fn fmt_count(n: u64) -> String {
    assert!(n < 1_000_000, "{n}: fmtCount abbreviates from a million");
    let d = n.to_string();
    let mut out = String::new();
    for (i, c) in d.chars().enumerate() {
        if i > 0 && (d.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The dashboard's by-reason line: non-zero reasons in the documented order, or "none".
fn fmt_reasons(m: &std::collections::BTreeMap<String, u64>) -> String {
    let order = [
        "overload",
        "gap",
        "not_bittorrent",
        "midstream",
        "queue_full",
        "policy",
        "unexpected_ack",
        "table_full",
    ];
    assert!(m.keys().all(|k| order.contains(&k.as_str())), "{m:?}");
    let shown: Vec<String> = order
        .iter()
        .filter_map(|r| {
            Some(format!(
                "{r} {}",
                fmt_count(*m.get(*r).filter(|n| **n > 0)?)
            ))
        })
        .collect();
    if shown.is_empty() {
        "none".into()
    } else {
        shown.join(" · ")
    }
}

#[test]
fn dashboard_renders_live_charts_in_headless_chromium() {
    let f = fixture();
    let dom = dashboard(&f.live, &["--dump-dom".to_string()]);
    let updates: u64 = attr(&dom, "<body", "data-updates")
        .unwrap_or_else(|| panic!("no data-updates in:\n{dom}"))
        .parse()
        .unwrap();
    assert!(updates >= 1, "no successful refresh:\n{dom}");
    // Six charts over the history, and the inline panel's, which a replay leaves empty.
    let charts = canvas_points(&dom);
    assert_eq!(charts.len(), 7, "{dom}");
    for (id, points) in &charts {
        if id == "chart-inline" {
            assert_eq!(*points, 0, "chart {id} drew without inline counters");
        } else {
            assert!(*points >= 2, "chart {id} drew {points} points");
        }
    }
    // Not inline (`inline` is null): the panel stays hidden, its figures unset.
    assert_eq!(
        attr(&dom, "id=\"inline\"", "hidden").as_deref(),
        Some(""),
        "inline panel shown in replay mode"
    );
    assert_eq!(text_of(&dom, "inline-served-bytes").unwrap(), "–");
    let frames: String = text_of(&dom, "frames")
        .unwrap()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    assert_eq!(frames, f.report.frames.to_string());
    assert_eq!(text_of(&dom, "swarm-count").unwrap(), "1");
    assert_eq!(text_of(&dom, "hit-ratio").unwrap(), "50.0 %");
    // The last snapshot is `publishes` seconds after the start, as an operator reads it.
    let clock = text_of(&dom, "clock").unwrap();
    assert!(
        clock.ends_with(&format!(" up {} s", f.publishes)),
        "{clock}"
    );
    assert!(
        dom.contains(&PLAIN_IH[..16]),
        "swarm table lacks the capture's info-hash"
    );

    // Inline mode: the panel is shown with the splice's last counts, and its served-rate
    // chart has drawn over the history like the others.
    let dom = dashboard(&f.inline_live, &["--dump-dom".to_string()]);
    assert_eq!(text_of(&dom, "mode").unwrap(), "inline");
    assert_eq!(
        attr(&dom, "id=\"inline\"", "hidden"),
        None,
        "inline panel hidden in inline mode"
    );
    let charts = canvas_points(&dom);
    assert_eq!(charts.len(), 7, "{dom}");
    for (id, points) in &charts {
        assert!(*points >= 2, "inline mode: chart {id} drew {points} points");
    }
    let c = &f.inline;
    let want = [
        ("inline-served-bytes", fmt_bytes(c.served_bytes)),
        ("inline-served-blocks", fmt_count(c.served_blocks)),
        (
            "inline-hit-ratio",
            fmt_pct(c.served_blocks as f64 / c.requests as f64),
        ),
        ("inline-requests", fmt_count(c.requests)),
        ("inline-misses", fmt_count(c.misses)),
        ("inline-miss-bytes", fmt_bytes(c.miss_bytes)),
        ("inline-spliced", fmt_count(c.connections_spliced)),
        ("inline-connections", fmt_count(c.connections)),
        ("inline-bypassed", fmt_count(c.bypassed.values().sum())),
        ("inline-bypassed-reasons", fmt_reasons(&c.bypassed)),
        (
            "inline-conns-bypassed",
            fmt_count(c.connections_bypassed.values().sum()),
        ),
        (
            "inline-conns-bypassed-reasons",
            fmt_reasons(&c.connections_bypassed),
        ),
        ("inline-retransmits", fmt_count(c.retransmitted_segments)),
        ("inline-retransmit-bytes", fmt_bytes(c.retransmitted_bytes)),
        (
            "inline-retransmits-abandoned",
            fmt_count(c.retransmits_abandoned),
        ),
        (
            "inline-utp-share",
            fmt_pct(c.utp.served_bytes as f64 / c.served_bytes as f64),
        ),
        ("inline-utp-blocks", fmt_count(c.utp.served_blocks)),
        ("inline-utp-bytes", fmt_bytes(c.utp.served_bytes)),
    ];
    for (id, text) in &want {
        assert_eq!(text_of(&dom, id).as_deref(), Some(text.as_str()), "#{id}");
    }
    // The fixture's figures are all different, so a figure under the wrong id cannot pass.
    let mut texts: Vec<&str> = want.iter().map(|(_, t)| t.as_str()).collect();
    texts.sort();
    texts.dedup();
    assert_eq!(texts.len(), want.len(), "{want:?}");
    // The formatting the operator reads, for the reader of this test.
    assert_eq!(
        (
            fmt_bytes(c.served_bytes).as_str(),
            fmt_reasons(&c.bypassed).as_str()
        ),
        ("7.00 MiB", "overload 5 · gap 3")
    );

    // The picture, for people: kept under the target dir so it can be looked at after a run
    // (inline mode, so it has every panel).
    let png: PathBuf = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&png);
    dashboard(
        &f.inline_live,
        &[
            format!("--screenshot={}", png.display()),
            "--window-size=1280,900".to_string(),
        ],
    );
    let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 10 * 1024,
        "screenshot {} is {size} bytes",
        png.display()
    );
    eprintln!("dashboard screenshot: {}", png.display());
}

/// The names of our series a query or rule text uses.
fn series_in(text: &str) -> Vec<String> {
    text.match_indices("peercache_")
        .map(|(i, _)| {
            text[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

#[test]
fn deploy_files_and_docs_match_the_exported_metrics() {
    let f = fixture();
    // Inline mode: every family of the other modes, and the splice's.
    let latest = f.inline_live.latest().unwrap();
    let text = peercache::metrics::prometheus::render(&latest);
    let exported: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next())
        .collect();
    assert!(exported.len() > 40, "{exported:?}");

    let doc = std::fs::read_to_string(repo().join("docs/metrics.md")).unwrap();
    for name in &exported {
        assert!(
            doc.contains(&format!("`{name}`")),
            "{name} is exported but not documented in docs/metrics.md"
        );
    }

    // Every series the Grafana dashboard queries exists (a renamed metric would leave an
    // empty panel that nobody notices until the day it is needed).
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("deploy/grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    let mut exprs = Vec::new();
    for p in dash["panels"].as_array().unwrap() {
        // A row only groups the panels below it: it has no query.
        if p["type"] == "row" {
            continue;
        }
        for t in p["targets"].as_array().unwrap() {
            exprs.push(t["expr"].as_str().unwrap().to_string());
        }
    }
    assert!(exprs.len() >= 10);
    for e in &exprs {
        // Every panel queries at least one of our series (a total over all panels could
        // hide a panel that queries none).
        assert!(
            e.contains("peercache_"),
            "dashboard panel queries no metric: {e}"
        );
        for name in series_in(e) {
            assert!(
                exported.contains(&name.as_str()),
                "dashboard uses unknown {name} in {e}"
            );
        }
    }
    for want in [
        "peercache_cache_hit_bytes_total",
        "peercache_swarms",
        "peercache_capture_dropped_frames_total",
        "peercache_bt_encrypted_connections_total",
        "peercache_cache_stored_bytes",
        "peercache_cache_writes_failing",
        "peercache_cache_write_errors_total",
        "peercache_inline_served_bytes_total",
        "peercache_inline_served_blocks_total",
        "peercache_inline_misses_total",
        "peercache_inline_bypassed_requests_total",
        "peercache_inline_retransmitted_segments_total",
        "peercache_inline_retransmits_abandoned_total",
    ] {
        assert!(
            exprs.iter().any(|e| e.contains(want)),
            "dashboard lacks {want}"
        );
    }

    // The alert rules use our series only, and pass promtool (checked again with the
    // config, which loads them).
    let alerts = std::fs::read_to_string(repo().join("deploy/peercache-alerts.yml")).unwrap();
    for name in series_in(&alerts) {
        assert!(
            exported.contains(&name.as_str()),
            "alert uses unknown {name}"
        );
    }
    assert!(alerts.contains("peercache_cache_writes_failing"));
    let out = Command::new("promtool")
        .args(["check", "config"])
        .arg(repo().join("deploy/prometheus.yml"))
        .output()
        .expect("promtool");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Shutdown completes although clients hold connections open: the service stops listening
/// and closes them (idle ones at once, busy ones after its 5 s grace period). How long that
/// takes is measured by `cargo bench --bench http_shutdown` (docs/benchmarks.md), not
/// asserted here.
#[test]
fn shutdown_is_not_held_up_by_an_idle_client() {
    let srv = serve(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(Live::new(1)),
        None,
        None,
    )
    .unwrap();
    let addr = srv.local_addr;
    // A scraper's keep-alive connection, and one that never sends a request.
    let mut keep = TcpStream::connect(addr).unwrap();
    write!(keep, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut buf = [0u8; 256];
    let n = keep.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let mut silent = TcpStream::connect(addr).unwrap();
    srv.shutdown();
    assert!(
        TcpStream::connect(addr).is_err(),
        "still listening after shutdown"
    );
    // Both idle connections were closed by the service (end of stream or reset), not left
    // open: a read that times out means the server still holds them.
    for (name, s) in [("keep-alive", &mut keep), ("silent", &mut silent)] {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        match s.read(&mut buf) {
            Ok(0) => {}
            Ok(n) => panic!("{name}: {n} unexpected bytes after shutdown"),
            Err(e) => assert!(
                matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
                ),
                "{name}: connection not closed by shutdown: {e}"
            ),
        }
    }
}

/// Minimal HTTP/1.1 POST of a .torrent `body`, with an extra header line if given.
fn post(addr: SocketAddr, path: &str, extra: &str, body: &[u8]) -> (u16, Value) {
    let headers = format!("{extra}Content-Type: application/x-bittorrent\r\n");
    let (status, body) = http_request(addr, "POST", path, &headers, body);
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// `POST /api/v1/metainfo`: a .torrent is taken into the registry (and the cache learns
/// it), once; junk and magnets are refused with a reason; a token, when set, is required;
/// without one, a service beyond loopback takes no posts.
#[test]
fn operators_post_torrents() {
    use peercache::http::Intake;
    use peercache::swarm::{MemorySink, Source};
    let torrent = std::fs::read(repo().join("pcaps/lab-tcp-plain.torrent")).unwrap();
    let intake = |reg: &Arc<Registry>, token: Option<&str>| Intake {
        registry: reg.clone(),
        sink: Arc::new(MemorySink::default()),
        token: token.map(str::to_string),
        fetch: None,
    };
    let path = "/api/v1/metainfo";

    let reg = Arc::new(Registry::default());
    let srv = serve(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(Live::new(1)),
        Some(intake(&reg, None)),
        None,
    )
    .unwrap();
    let a = srv.local_addr;
    let (st, v) = post(a, path, "", &torrent);
    assert_eq!(st, 201, "{v}");
    assert_eq!(
        (
            v["info_hash"].as_str(),
            v["status"].as_str(),
            v["source"].as_str()
        ),
        (Some(PLAIN_IH), Some("loaded"), Some("posted"))
    );
    let ih = PLAIN_IH.parse().unwrap();
    assert!(matches!(reg.get(&ih), Some((_, Source::Posted))));
    let (st, v) = post(a, path, "", &torrent);
    assert_eq!((st, v["status"].as_str()), (200, Some("known")), "{v}");
    let (st, v) = post(a, path, "", b"d4:infoi3ee");
    assert_eq!(st, 400, "{v}");
    assert!(v["error"]
        .as_str()
        .unwrap()
        .starts_with("not a usable .torrent"));
    // a magnet of a known swarm is answered from the registry; of another swarm, with no
    // fetcher running, refused (the fetch itself: tests/fetch.rs); a bad one, 400
    let (st, v) = post(
        a,
        path,
        "",
        format!("magnet:?xt=urn:btih:{PLAIN_IH}").as_bytes(),
    );
    assert_eq!((st, v["status"].as_str()), (200, Some("known")), "{v}");
    let (st, _) = post(
        a,
        path,
        "",
        b"magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567",
    );
    assert_eq!(st, 503);
    let (st, _) = post(a, path, "", b"magnet:?xt=urn:btih:nothex");
    assert_eq!(st, 400);
    assert_eq!(reg.len(), 1);
    srv.shutdown();

    // with a token: required, exactly
    let reg = Arc::new(Registry::default());
    let srv = serve(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(Live::new(1)),
        Some(intake(&reg, Some("s3cret"))),
        None,
    )
    .unwrap();
    let a = srv.local_addr;
    assert_eq!(post(a, path, "", &torrent).0, 401);
    assert_eq!(
        post(a, path, "Authorization: Bearer nope\r\n", &torrent).0,
        401
    );
    assert_eq!(reg.len(), 0);
    assert_eq!(
        post(a, path, "Authorization: Bearer s3cret\r\n", &torrent).0,
        201
    );
    assert_eq!(reg.len(), 1);
    srv.shutdown();

    // beyond loopback without a token: no posts at all (reached here over loopback)
    let reg = Arc::new(Registry::default());
    let srv = serve(
        "0.0.0.0:0".parse().unwrap(),
        Arc::new(Live::new(1)),
        Some(intake(&reg, None)),
        None,
    )
    .unwrap();
    let a = SocketAddr::from(([127, 0, 0, 1], srv.local_addr.port()));
    assert_eq!(post(a, path, "", &torrent).0, 403);
    assert_eq!(reg.len(), 0);
    srv.shutdown();
}
