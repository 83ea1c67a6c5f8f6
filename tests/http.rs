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
use peercache::swarm::Registry;
use serde_json::Value;

const PLAIN_IH: &str = "bf31b5eba75965210f1ab47d4312b4c87493bb93";
/// Publish a snapshot every this many frames (the capture has 1203).
const EVERY: u64 = 150;
const CACHE_CAPACITY: u64 = 2 << 20;

/// What every test serves: the Live with its history, and the last published report.
struct Fixture {
    live: Arc<Live>,
    report: Report,
    publishes: usize,
    _cache: tempfile::TempDir,
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
        let n = snaps.len();
        let start = now_unix() - n as f64;
        for (i, (r, read, finished)) in snaps.into_iter().enumerate() {
            live.publish(Snapshot {
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
            });
        }
        Fixture {
            live,
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
    let srv = serve("127.0.0.1:0".parse().unwrap(), live.clone(), None).unwrap();
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
    match serve(addr, Arc::new(Live::new(1)), None) {
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
    let srv = serve("127.0.0.1:0".parse().unwrap(), f.live.clone(), None).unwrap();
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
    srv.shutdown();
}

#[test]
fn metrics_pass_promtool_and_carry_the_report() {
    let f = fixture();
    let srv = serve("127.0.0.1:0".parse().unwrap(), f.live.clone(), None).unwrap();
    let m = get(srv.local_addr, "/metrics");
    srv.shutdown();
    assert_eq!(m.status, 200);
    assert!(
        m.headers
            .contains("content-type: text/plain; version=0.0.4"),
        "{}",
        m.headers
    );
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
        .write_all(m.body.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

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
}

#[test]
fn prometheus_scrapes_the_service() {
    let f = fixture();
    let srv = serve("127.0.0.1:0".parse().unwrap(), f.live.clone(), None).unwrap();
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

#[test]
fn dashboard_renders_live_charts_in_headless_chromium() {
    let f = fixture();
    let srv = serve("127.0.0.1:0".parse().unwrap(), f.live.clone(), None).unwrap();
    let url = format!("http://{}/", srv.local_addr);
    let profile = tempfile::tempdir().unwrap();
    let dom = chromium(&url, profile.path(), &["--dump-dom".to_string()]);
    let updates: u64 = attr(&dom, "<body", "data-updates")
        .unwrap_or_else(|| panic!("no data-updates in:\n{dom}"))
        .parse()
        .unwrap();
    assert!(updates >= 1, "no successful refresh:\n{dom}");
    let charts: Vec<&str> = dom
        .match_indices("<canvas")
        .map(|(i, _)| &dom[i..])
        .collect();
    assert_eq!(charts.len(), 6, "{dom}");
    for c in charts {
        let id = attr(c, "<canvas", "id").unwrap();
        let points: u64 = attr(c, "<canvas", "data-points").unwrap().parse().unwrap();
        assert!(points >= 2, "chart {id} drew {points} points");
    }
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

    // The picture, for people: kept under the target dir so it can be looked at after a run.
    let png: PathBuf = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&png);
    let profile2 = tempfile::tempdir().unwrap();
    chromium(
        &url,
        profile2.path(),
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
    srv.shutdown();
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
    let latest = f.live.latest().unwrap();
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
    let srv = serve("127.0.0.1:0".parse().unwrap(), Arc::new(Live::new(1)), None).unwrap();
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
    )
    .unwrap();
    let a = SocketAddr::from(([127, 0, 0, 1], srv.local_addr.port()));
    assert_eq!(post(a, path, "", &torrent).0, 403);
    assert_eq!(reg.len(), 0);
    srv.shutdown();
}
