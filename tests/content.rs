//! The content listener (`content.listen`) as real clients and caches use it: libtorrent and
//! aria2 downloading from the box's web seed alone, nginx keeping block URIs as ordinary
//! HTTP objects, and curl walking through every status code the listener answers. Each
//! test imports generated content (`tests/lab/webseed.py make`) into a fresh cache, then
//! runs `peercache tap` on loopback with a `content:` section, and cross-checks what the
//! clients saw with the box's own counters in /metrics. Loopback only; needs root (capture
//! on lo), curl, nginx, aria2c and python3-libtorrent.

mod common;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// Debian's python: python3-libtorrent is installed for it only.
const PY: &str = "/usr/bin/python3";
/// Generous: the clients finish in seconds, but the machine may be busy building.
const CLIENT_TIMEOUT: &str = "120";

// ------------------------------------------------------------------ generated content

/// What `webseed.py make` produced.
#[derive(Debug)]
struct Made {
    /// single | multi
    kind: String,
    torrent: PathBuf,
    data_dir: PathBuf,
    name: String,
    ih: String,
    piece_length: u64,
    pieces: u64,
    total: u64,
    /// (path inside the torrent, length, is a BEP 47 pad file), in torrent order.
    files: Vec<(String, u64, bool)>,
}

impl Made {
    fn real_bytes(&self) -> u64 {
        self.files.iter().filter(|f| !f.2).map(|f| f.1).sum()
    }

    fn real_files(&self) -> u64 {
        self.files.iter().filter(|f| !f.2).count() as u64
    }

    /// The torrent's bytes `start..end` (its files concatenated, pads as zeros).
    fn bytes(&self, start: u64, end: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let mut off = 0;
        for (path, len, pad) in &self.files {
            let (a, b) = (start.max(off), end.min(off + len));
            if a < b {
                if *pad {
                    out.resize(out.len() + (b - a) as usize, 0);
                } else {
                    // A single-file torrent's one file is DATA/NAME (its path is the name).
                    let file = match self.kind.as_str() {
                        "single" => self.data_dir.join(&self.name),
                        _ => self.data_dir.join(&self.name).join(path),
                    };
                    let all = std::fs::read(&file).unwrap();
                    out.extend_from_slice(&all[(a - off) as usize..(b - off) as usize]);
                }
            }
            off += len;
        }
        assert_eq!(
            out.len() as u64,
            end - start,
            "range past the torrent's end"
        );
        out
    }

    fn piece(&self, index: u64) -> Vec<u8> {
        let start = index * self.piece_length;
        self.bytes(start, (start + self.piece_length).min(self.total))
    }
}

/// `webseed.py ARGS`: its one JSON line (stdout), and its stderr for failure messages.
fn webseed(args: &[&str]) -> (bool, serde_json::Value, String) {
    let out = Command::new(PY)
        .arg(repo().join("tests/lab/webseed.py"))
        .args(args)
        .output()
        .expect("run /usr/bin/python3 tests/lab/webseed.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let line = stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("webseed.py {args:?} printed nothing; stderr:\n{stderr}"));
    let v = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}\n{stderr}"));
    (out.status.success(), v, stderr)
}

/// Deterministic content of `kind` (single|multi) from `seed` in `out`. The url-list is
/// irrelevant: the box's own /v1/{ih}/torrent names its web seed.
fn make(out: &Path, kind: &str, seed: u32) -> Made {
    let (ok, v, err) = webseed(&[
        "make",
        "--out",
        out.to_str().unwrap(),
        "--kind",
        kind,
        "--url-list",
        "http://192.0.2.1/unused/",
        "--seed",
        &seed.to_string(),
    ]);
    assert!(ok, "make {kind}: {v}\n{err}");
    let files = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["length"].as_u64().unwrap(),
                f["pad"].as_bool().unwrap(),
            )
        })
        .collect();
    Made {
        kind: kind.to_string(),
        torrent: v["torrent"].as_str().unwrap().into(),
        data_dir: v["data_dir"].as_str().unwrap().into(),
        name: v["name"].as_str().unwrap().into(),
        ih: v["info_hash"].as_str().unwrap().into(),
        piece_length: v["piece_length"].as_u64().unwrap(),
        pieces: v["pieces"].as_u64().unwrap(),
        total: v["total_length"].as_u64().unwrap(),
        files,
    }
}

fn peercache(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_peercache"))
        .args(args)
        .output()
        .expect("run peercache")
}

/// `peercache cache import`: every piece verifies and is stored (the whole torrent, pads
/// included, so the byte count is the torrent's length).
fn import(cache: &Path, m: &Made) {
    let out = peercache(&[
        "cache",
        "--cache-dir",
        cache.to_str().unwrap(),
        "import",
        m.torrent.to_str().unwrap(),
        m.data_dir.to_str().unwrap(),
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "{}: imported {n} of {n} pieces ({} bytes); 0 missing, 0 wrong\n",
            m.ih,
            m.total,
            n = m.pieces
        ),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success());
}

// ------------------------------------------------------------------ the box

/// `peercache tap` on lo (capturing nothing: `udp port 9`) with a content listener on an
/// ephemeral port, and the management service (/metrics) on another. The addresses come
/// from the log lines, so no port is guessed. Killed on drop (Proc).
struct PcBox {
    proc: Proc,
    content: SocketAddr,
    mgmt: SocketAddr,
}

/// The address in a log line `... at http://ADDR/ ...`.
fn logged_addr(line: &str) -> SocketAddr {
    let rest = line.split("http://").nth(1).unwrap();
    rest.split('/').next().unwrap().parse().unwrap()
}

impl PcBox {
    /// `content_extra`: more `content:` keys, each line indented by 2; `rules`: a rules file.
    fn start(
        dir: &Path,
        name: &str,
        cache: &Path,
        content_extra: &str,
        rules: Option<&Path>,
    ) -> PcBox {
        let cfg = dir.join(format!("{name}.yaml"));
        let mut yaml = format!(
            "cache:\n  dir: {}\ncontent:\n  listen: 127.0.0.1:0\n{content_extra}",
            cache.display()
        );
        if let Some(r) = rules {
            yaml += &format!("rules: {}\n", r.display());
        }
        std::fs::write(&cfg, yaml).unwrap();
        let mut proc = Proc::spawn(
            name,
            Command::new(env!("CARGO_BIN_EXE_peercache")).args([
                "tap",
                "--iface",
                "lo",
                "--filter",
                "udp port 9",
                "--http",
                "127.0.0.1:0",
                "--config",
                cfg.to_str().unwrap(),
            ]),
        );
        let limit = Duration::from_secs(60);
        let content = logged_addr(&proc.wait_for("content listener at http://", limit));
        let mgmt = logged_addr(&proc.wait_for("dashboard and metrics at http://", limit));
        PcBox {
            proc,
            content,
            mgmt,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.content)
    }

    /// /metrics of the management service, as of now: the service publishes a snapshot
    /// about once a second, and a snapshot's time is taken just after its counters are
    /// read. So wait for one stamped after now, then for the next: that one's counters
    /// were read after the first was published, hence after now.
    fn metrics(&self) -> Metrics {
        let first = self.scrape_after(now_unix());
        self.scrape_after(first.time())
    }

    /// The first /metrics whose snapshot is stamped after `t` (503 until the first one).
    fn scrape_after(&self, t: f64) -> Metrics {
        let start = Instant::now();
        loop {
            let (status, body) = http_request(self.mgmt, "GET", "/metrics", "", b"");
            if status == 200 {
                let m = Metrics(
                    body.lines()
                        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
                        .filter_map(|l| {
                            let (k, v) = l.rsplit_once(' ')?;
                            Some((k.to_string(), v.parse().ok()?))
                        })
                        .collect(),
                );
                if m.time() > t {
                    return m;
                }
            } else {
                assert_eq!(status, 503, "{body}");
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no snapshot after {t} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM; it must exit 0.
    fn stop(self) {
        let (st, _, log) = self.proc.stop();
        assert!(st.success(), "{st}: {}", log.join("\n"));
    }
}

fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

struct Metrics(BTreeMap<String, f64>);

impl Metrics {
    fn time(&self) -> f64 {
        self.0["peercache_snapshot_time_seconds"]
    }

    /// `peercache_` + `key` (`served_bytes_total{route="http"}`); absent is a failure.
    fn get(&self, key: &str) -> u64 {
        let k = format!("peercache_{key}");
        let v = self.0.get(&k).unwrap_or_else(|| {
            panic!(
                "{k} not in /metrics; peercache_content*/served*: {:?}",
                self.0
                    .keys()
                    .filter(|k| k.contains("content") || k.contains("served"))
                    .collect::<Vec<_>>()
            )
        });
        *v as u64
    }
}

/// The content counters that must move as a test expects: (2xx, 304, 4xx, 5xx).
fn classes(m: &Metrics) -> [u64; 4] {
    ["2xx", "304", "4xx", "5xx"]
        .map(|c| m.get(&format!("content_responses_total{{class=\"{c}\"}}")))
}

// ------------------------------------------------------------------ curl

/// One curl transfer as curl saw it.
struct Reply {
    /// 0 when no HTTP answer came.
    code: u16,
    /// curl's exit code (0, or 52 "empty reply", 56 "recv failure" ...).
    exit: i32,
    /// The final answer's headers, names lowercased.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Failure messages show the body's length and start, not a megabyte of binary.
impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.body.len().min(200);
        f.debug_struct("Reply")
            .field("code", &self.code)
            .field("exit", &self.exit)
            .field("headers", &self.headers)
            .field("body_len", &self.body.len())
            .field("body_start", &String::from_utf8_lossy(&self.body[..n]))
            .finish()
    }
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn json_error(&self) -> String {
        let v: serde_json::Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&self.body)));
        v["error"].as_str().unwrap().to_string()
    }
}

/// `curl -sS ARGS URL`: body and headers through files (bodies are binary).
fn curl(args: &[&str], url: &str) -> Reply {
    let tmp = tempfile::tempdir().unwrap();
    let (body, head) = (tmp.path().join("body"), tmp.path().join("head"));
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "60", "-o"])
        .arg(&body)
        .arg("-D")
        .arg(&head)
        .args(["-w", "%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .expect("curl must be installed");
    let code = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    let head = std::fs::read_to_string(&head).unwrap_or_default();
    // Only the last answer's block (a 100 Continue or a redirect would come first).
    let last = head
        .split("\r\n\r\n")
        .filter(|b| !b.trim().is_empty())
        .last()
        .unwrap_or("");
    let headers = last
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Reply {
        code,
        exit: out.status.code().unwrap_or(-1),
        headers,
        body: std::fs::read(&body).unwrap_or_default(),
    }
}

fn curl_get(url: &str, headers: &[&str]) -> Reply {
    let mut args = Vec::new();
    for h in headers {
        args.extend(["-H", h]);
    }
    curl(&args, url)
}

/// Everything a server sends back for `request` (which should close the connection).
fn raw_request(addr: SocketAddr, request: &str) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    out
}

/// A free port on 127.0.0.1 for a server that cannot report its own (nginx).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_listening(addr: SocketAddr, what: &mut Proc) {
    let start = Instant::now();
    while TcpStream::connect(addr).is_err() {
        what.check_running();
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{addr} never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ================================================================== 1. web seed alone

#[test]
fn web_seed_alone_serves_libtorrent_and_aria2_single_and_multi_file() {
    let lab = tempfile::tempdir().unwrap();
    let cache = lab.path().join("cache");
    let made: Vec<Made> = ["single", "multi"]
        .iter()
        .map(|k| make(&lab.path().join(k), k, 3))
        .collect();
    for m in &made {
        import(&cache, m);
    }
    let pc = PcBox::start(
        lab.path(),
        "box-ws",
        &cache,
        "  allow: [127.0.0.0/8]\n",
        None,
    );
    for m in &made {
        let kind = &m.kind;
        // The box's .torrent: the info dictionary as imported (same info-hash) and the
        // box's own web seed as the only source, at the address the client used.
        let torrent = lab.path().join(format!("{kind}-from-box.torrent"));
        let r = curl_get(&pc.url(&format!("/v1/{}/torrent", m.ih)), &[]);
        assert_eq!(r.code, 200, "{r:?}");
        assert_eq!(r.header("content-type"), Some("application/x-bittorrent"));
        let t = r.body;
        std::fs::write(&torrent, &t).unwrap();
        let ws = format!("http://{}/ws/{}/", pc.content, m.ih);
        let url_list = format!("8:url-listl{}:{ws}ee", ws.len());
        assert!(
            t.ends_with(url_list.as_bytes()),
            "{:?}",
            String::from_utf8_lossy(&t[t.len().saturating_sub(120)..])
        );
        assert!(!t.windows(10).any(|w| w == b"8:announce"), "no tracker");

        // libtorrent: one request per real file, never a pad file (BEP 47 known), so
        // exactly the real files' bytes, once each (webseed-notes.md).
        let before = pc.metrics();
        let save = lab.path().join(format!("dl-lt-{kind}"));
        let (ok, v, err) = webseed(&[
            "lt-get",
            "--torrent",
            torrent.to_str().unwrap(),
            "--save",
            save.to_str().unwrap(),
            "--timeout",
            CLIENT_TIMEOUT,
        ]);
        assert!(
            ok,
            "libtorrent {kind}: {v}\n{err}\n{}",
            pc.proc.lines().join("\n")
        );
        assert_eq!(v["complete"], true, "{v}");
        assert_eq!(v["recheck_ok"], true, "{v}");
        assert_eq!(v["hash_failures"], 0, "{v}");
        assert_eq!(v["web_seed_errors"], serde_json::json!([]), "{v}");
        assert_eq!(v["payload_bytes"], m.real_bytes(), "{v}");
        compare(m, &save, &[]);
        let mid = pc.metrics();
        let d = |a: &Metrics, b: &Metrics, k: &str| b.get(k) - a.get(k);
        assert_eq!(
            (
                d(&before, &mid, "served_bytes_total{route=\"web_seed\"}"),
                d(&before, &mid, "served_answers_total{route=\"web_seed\"}")
            ),
            (m.real_bytes(), m.real_files()),
            "libtorrent {kind}: web-seed bytes and answers"
        );

        // aria2 1.36 ignores BEP 47: it asks for the pad files too (answered with zeros,
        // which are not the cache's bytes: not counted as served bytes), so every file of
        // the torrent is one answer, and the real files' bytes are the served bytes.
        let save = lab.path().join(format!("dl-aria2-{kind}"));
        let (ok, v, err) = webseed(&[
            "aria2-get",
            "--torrent",
            torrent.to_str().unwrap(),
            "--save",
            save.to_str().unwrap(),
            "--timeout",
            CLIENT_TIMEOUT,
        ]);
        assert!(
            ok,
            "aria2 {kind}: {v}\n{err}\n{}",
            pc.proc.lines().join("\n")
        );
        assert_eq!(
            (&v["complete"], &v["check_ok"]),
            (&serde_json::json!(true), &serde_json::json!(true)),
            "{v}"
        );
        let pads: Vec<String> = m
            .files
            .iter()
            .filter(|f| f.2)
            .map(|f| f.0.clone())
            .collect();
        compare(m, &save, &pads);
        let after = pc.metrics();
        assert_eq!(
            (
                d(&mid, &after, "served_bytes_total{route=\"web_seed\"}"),
                d(&mid, &after, "served_answers_total{route=\"web_seed\"}")
            ),
            (m.real_bytes(), m.files.len() as u64),
            "aria2 {kind}: web-seed bytes and answers"
        );
    }
    // Nothing but successes, nothing cut short, nothing on the block route.
    let m = pc.metrics();
    assert_eq!(classes(&m)[1..], [0, 0, 0], "304/4xx/5xx");
    assert_eq!(m.get("content_bodies_cut_total"), 0);
    assert_eq!(m.get("served_answers_total{route=\"http\"}"), 0);
    let all: u64 = made.iter().map(|m| 2 * m.real_bytes()).sum();
    assert_eq!(m.get("served_bytes_total{route=\"web_seed\"}"), all);
    pc.stop();
}

/// `webseed.py compare`: the download is byte-identical; `extra` is what may lie beside
/// (the pad files aria2 writes).
fn compare(m: &Made, save: &Path, extra: &[String]) {
    let (ok, v, err) = webseed(&[
        "compare",
        "--data",
        m.data_dir.to_str().unwrap(),
        "--save",
        save.to_str().unwrap(),
        "--name",
        &m.name,
    ]);
    assert!(ok, "{v}\n{err}");
    assert_eq!(v["identical"], true, "{v}");
    assert_eq!(v["files"], m.real_files(), "{v}");
    assert_eq!(v["extra"], serde_json::json!(extra), "{v}");
}

// ================================================================== 2. nginx in front

/// nginx as a caching reverse proxy, foreground, one process (SIGKILL on drop leaves no
/// worker behind).
struct Nginx {
    proc: Proc,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Nginx {
    fn start(dir: &Path, upstream: SocketAddr) -> Nginx {
        let dir = dir.join("nginx");
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let d = dir.display();
        // Caching a block URI: the Range goes upstream (proxy_cache drops it by default
        // and fetches the whole object) and is part of the key, and 206 is cacheable.
        // The box's own Cache-Control (public, a year, immutable) would do on its own;
        // proxy_cache_valid makes the intent explicit.
        let conf = format!(
            r#"master_process off;
daemon off;
user root;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
    log_format c '$request range="$http_range" $status cache=$upstream_cache_status up=$upstream_status';
    access_log {d}/access.log c;
    client_body_temp_path {d}/tmp;
    proxy_temp_path {d}/tmp;
    proxy_cache_path {d}/cache levels=1:2 keys_zone=blocks:1m max_size=64m inactive=1h use_temp_path=off;
    server {{
        listen {addr};
        location /v1/ {{
            proxy_pass http://{upstream};
            proxy_http_version 1.1;
            proxy_cache blocks;
            proxy_cache_key "$uri|$http_range";
            proxy_set_header Range $http_range;
            proxy_cache_valid 200 206 1h;
            add_header X-Cache $upstream_cache_status always;
        }}
    }}
}}
"#
        );
        let cfg = dir.join("nginx.conf");
        std::fs::write(&cfg, conf).unwrap();
        let mut proc = Proc::spawn(
            "nginx",
            Command::new("nginx")
                .arg("-e")
                .arg(dir.join("error.log"))
                .arg("-p")
                .arg(&dir)
                .arg("-c")
                .arg(&cfg),
        );
        wait_listening(addr, &mut proc);
        Nginx { proc, addr, dir }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn access_log(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("access.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

#[test]
fn nginx_caches_block_uris_as_ordinary_http_objects() {
    let lab = tempfile::tempdir().unwrap();
    let cache = lab.path().join("cache");
    let m = make(&lab.path().join("single"), "single", 5);
    import(&cache, &m);
    let pc = PcBox::start(
        lab.path(),
        "box-nginx",
        &cache,
        "  allow: [127.0.0.0/8]\n",
        None,
    );
    let mut ngx = Nginx::start(lab.path(), pc.content);
    let answers = |pc: &PcBox| pc.metrics().get("served_answers_total{route=\"http\"}");

    // A 16 KiB block of piece 7, twice: the first goes to the box, the second is nginx's.
    let p = 7;
    let uri = format!("/v1/{}/{p}", m.ih);
    let want = m.bytes(p * m.piece_length + 16384, p * m.piece_length + 32768);
    let n0 = answers(&pc);
    for (round, status) in ["MISS", "HIT"].iter().enumerate() {
        let r = curl_get(&ngx.url(&uri), &["Range: bytes=16384-32767"]);
        assert_eq!(r.code, 206, "round {round}: {r:?}");
        assert_eq!(
            r.header("x-cache"),
            Some(*status),
            "round {round}: {:?}",
            r.headers
        );
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes 16384-32767/{}", m.piece_length).as_str())
        );
        assert!(
            r.body == want,
            "round {round}: body differs ({} bytes)",
            r.body.len()
        );
        assert_eq!(
            r.header("etag").map(str::to_string),
            Some(format!("\"{}\"", sha1_hex(&m.piece(p))))
        );
    }
    assert_eq!(answers(&pc) - n0, 1, "the HIT must not reach the box");

    // The whole piece: a different object (no Range in the key), MISS then HIT too.
    let want = m.piece(p);
    for (round, status) in ["MISS", "HIT"].iter().enumerate() {
        let r = curl_get(&ngx.url(&uri), &[]);
        assert_eq!(r.code, 200, "round {round}: {r:?}");
        assert_eq!(
            r.header("x-cache"),
            Some(*status),
            "round {round}: {:?}",
            r.headers
        );
        assert!(
            r.body == want,
            "round {round}: body differs ({} bytes)",
            r.body.len()
        );
    }
    assert_eq!(answers(&pc) - n0, 2, "one more answer for the whole piece");
    let mm = pc.metrics();
    assert_eq!(
        mm.get("served_bytes_total{route=\"http\"}"),
        16384 + m.piece_length,
        "the box sent the block and the piece, once each"
    );
    // nginx's own account of the four requests.
    let log = ngx.access_log();
    let tail: Vec<&str> = log
        .iter()
        .map(|l| l.split(" cache=").nth(1).unwrap_or(""))
        .collect();
    assert_eq!(
        tail,
        ["MISS up=206", "HIT up=-", "MISS up=200", "HIT up=-"],
        "{log:?}"
    );
    ngx.proc.check_running();
    drop(ngx);
    pc.stop();
}

fn sha1_hex(b: &[u8]) -> String {
    use sha1::Digest;
    sha1::Sha1::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

// ================================================================== 3. every status code

#[test]
fn every_status_code_with_curl() {
    let lab = tempfile::tempdir().unwrap();
    let cache = lab.path().join("cache");
    let m = make(&lab.path().join("a"), "single", 11);
    let blocked = make(&lab.path().join("b"), "single", 12);
    assert_ne!(m.ih, blocked.ih);
    import(&cache, &m);
    import(&cache, &blocked);
    // Piece 3 goes (before the box locks the cache): the absent-piece and 503 cases.
    let missing = 3u64;
    let out = peercache(&[
        "cache",
        "--cache-dir",
        cache.to_str().unwrap(),
        "evict",
        &m.ih,
        &missing.to_string(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rules = lab.path().join("rules.yaml");
    std::fs::write(
        &rules,
        format!(
            "default: serve\nrules:\n  - name: takedown\n    match:\n      info_hashes: [{}]\n    action: block\n",
            blocked.ih
        ),
    )
    .unwrap();
    let pc = PcBox::start(
        lab.path(),
        "box-codes",
        &cache,
        "  allow: [127.0.0.0/8]\n",
        Some(&rules),
    );
    let v1 = |p: &str| pc.url(&format!("/v1/{}/{p}", m.ih));
    let plen = m.piece_length;
    let etag = format!("\"{}\"", sha1_hex(&m.piece(0)));
    // Expected tallies, kept as the requests are made.
    let (mut n2xx, mut n304, mut n4xx, mut n5xx) = (0u64, 0u64, 0u64, 0u64);
    let (mut http_answers, mut http_bytes) = (0u64, 0u64);

    // 200: the whole piece, with the headers of an immutable object named by its hash.
    let r = curl_get(&v1("0"), &[]);
    assert_eq!(r.code, 200, "{r:?}");
    assert!(r.body == m.piece(0));
    assert_eq!(r.header("content-length"), Some(plen.to_string().as_str()));
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    assert_eq!(
        r.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    (n2xx, http_answers, http_bytes) = (n2xx + 1, http_answers + 1, http_bytes + plen);

    // 206: one range.
    let r = curl_get(&v1("0"), &["Range: bytes=16384-32767"]);
    assert_eq!(r.code, 206, "{r:?}");
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 16384-32767/{plen}").as_str())
    );
    assert!(r.body == m.piece(0)[16384..32768]);
    (n2xx, http_answers, http_bytes) = (n2xx + 1, http_answers + 1, http_bytes + 16384);

    // 206: three ranges (a closed one, a suffix, an open one) as multipart/byteranges.
    let r = curl_get(&v1("0"), &["Range: bytes=0-9,-100,65000-"]);
    assert_eq!(r.code, 206, "{r:?}");
    let ct = r.header("content-type").unwrap().to_string();
    let boundary = ct
        .strip_prefix("multipart/byteranges; boundary=")
        .unwrap_or_else(|| panic!("{ct}"));
    let parts = multipart(&r.body, boundary);
    let piece0 = m.piece(0);
    let want = [(0u64, 9u64), (plen - 100, plen - 1), (65000, plen - 1)];
    assert_eq!(parts.len(), want.len());
    for ((cr, body), (a, b)) in parts.iter().zip(want) {
        assert_eq!(cr, &format!("bytes {a}-{b}/{plen}"));
        assert!(body[..] == piece0[a as usize..=b as usize], "part {cr}");
    }
    assert_eq!(
        r.header("content-length"),
        Some(r.body.len().to_string().as_str())
    );
    // The ledger counts the cache's bytes, not the multipart framing.
    let data: u64 = want.iter().map(|(a, b)| b - a + 1).sum();
    (n2xx, http_answers, http_bytes) = (n2xx + 1, http_answers + 1, http_bytes + data);

    // Range units are case-insensitive, and a unit other than bytes is ignored (RFC 9110
    // §14.2): the whole piece.
    let r = curl_get(&v1("0"), &["Range: BYTES=0-9"]);
    assert_eq!((r.code, r.body.len()), (206, 10), "{r:?}");
    let r = curl_get(&v1("0"), &["Range: items=0-1"]);
    assert_eq!((r.code, r.body.len() as u64), (200, plen), "{r:?}");
    (n2xx, http_answers, http_bytes) = (n2xx + 2, http_answers + 2, http_bytes + 10 + plen);

    // HEAD: the GET's headers, no body, and not counted as served. curl -I writes the
    // header block to its output; a raw request shows nothing follows the headers.
    let r = curl(&["-I"], &v1("0"));
    assert_eq!(r.code, 200, "{r:?}");
    assert_eq!(r.header("content-length"), Some(plen.to_string().as_str()));
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    assert_eq!(
        r.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    let raw = raw_request(
        pc.content,
        &format!(
            "HEAD /v1/{}/0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            m.ih
        ),
    );
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(
        raw.starts_with(b"HTTP/1.1 200 "),
        "{:?}",
        String::from_utf8_lossy(&raw)
    );
    assert_eq!(raw.len(), head_end, "HEAD answered with a body");
    n2xx += 2;

    // 304: If-None-Match with the ETag (also inside a list).
    for inm in [etag.clone(), format!("\"nope\", {etag}")] {
        let r = curl_get(&v1("0"), &[&format!("If-None-Match: {inm}")]);
        assert_eq!(r.code, 304, "{r:?}");
        assert!(r.body.is_empty());
        assert_eq!(r.header("etag"), Some(etag.as_str()));
        n304 += 1;
    }
    // ...but not with another piece's ETag.
    let r = curl_get(&v1("1"), &[&format!("If-None-Match: {etag}")]);
    assert_eq!(r.code, 200, "{r:?}");
    (n2xx, http_answers, http_bytes) = (n2xx + 1, http_answers + 1, http_bytes + plen);

    // 404: a piece the cache does not hold, an index past the end, a swarm it does not know.
    let r = curl_get(&v1(&missing.to_string()), &[]);
    assert_eq!(
        (r.code, r.json_error().as_str()),
        (404, "piece not in the cache"),
        "{r:?}"
    );
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let r = curl_get(&v1(&m.pieces.to_string()), &[]);
    assert_eq!(r.code, 404, "{r:?}");
    assert_eq!(
        r.json_error(),
        format!(
            "piece {} out of range: the swarm has {} pieces",
            m.pieces, m.pieces
        )
    );
    let r = curl_get(&pc.url(&format!("/v1/{}/0", "ab".repeat(20))), &[]);
    assert_eq!(
        (r.code, r.json_error().as_str()),
        (404, "swarm not known to this cache")
    );
    let r = curl_get(&pc.url("/nowhere"), &[]);
    assert_eq!(
        (r.code, r.json_error().as_str()),
        (404, "no such route: /nowhere")
    );
    n4xx += 4;

    // 400: a malformed info-hash, a piece token that is no number.
    for bad in [
        "/v1/xyz/0",
        &format!("/v1/{}/0", &m.ih[..39]),
        &format!("/v1/{}0/0", m.ih),
    ] {
        let r = curl_get(&pc.url(bad), &[]);
        assert_eq!(
            (r.code, r.json_error().as_str()),
            (400, "info-hash: give 40 hex digits"),
            "{bad}"
        );
    }
    let r = curl_get(&v1("-1"), &[]);
    assert_eq!(r.code, 400, "{r:?}");
    n4xx += 4;

    // 416: nothing satisfiable, a malformed Range, 17 ranges (max_ranges 16); each names
    // the length.
    let seventeen = format!("Range: bytes={}", vec!["0-0"; 17].join(","));
    for h in ["Range: bytes=99999999-", "Range: bytes=5-1", &seventeen] {
        let r = curl_get(&v1("0"), &[h]);
        assert_eq!(r.code, 416, "{h}: {r:?}");
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes */{plen}").as_str()),
            "{h}"
        );
    }
    // 16 ranges are still served.
    let sixteen = format!("Range: bytes={}", vec!["0-0"; 16].join(","));
    let r = curl_get(&v1("0"), &[&sixteen]);
    assert_eq!(r.code, 206, "{r:?}");
    assert_eq!(
        multipart(
            &r.body,
            r.header("content-type")
                .unwrap()
                .split("boundary=")
                .nth(1)
                .unwrap()
        )
        .len(),
        16
    );
    n4xx += 3;
    (n2xx, http_answers, http_bytes) = (n2xx + 1, http_answers + 1, http_bytes + 16);

    // Web seed: a range inside held pieces (206), a traversal (400, curl told not to
    // squash `..`), a file the torrent does not have (404), a range that needs the
    // evicted piece (503, come back later).
    let ws = |rest: &str| pc.url(&format!("/ws/{}/{rest}", m.ih));
    let mut ws_bytes = 0;
    let r = curl_get(&ws(&m.name), &["Range: bytes=100-199"]);
    assert_eq!(r.code, 206, "{r:?}");
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 100-199/{}", m.total).as_str())
    );
    assert!(r.body == m.bytes(100, 200));
    n2xx += 1;
    ws_bytes += 100;
    for path in [
        "..%2F..%2Fetc%2Fpasswd",
        &format!("{}/../x", m.name),
        &format!("{}/./x", m.name),
        &format!("{}//x", m.name),
    ] {
        let r = curl(&["--path-as-is"], &ws(path));
        assert_eq!(r.code, 400, "{path}: {r:?}");
        n4xx += 1;
    }
    let r = curl_get(&ws("other.bin"), &[]);
    assert_eq!(
        (r.code, r.json_error().as_str()),
        (404, "no such file in this torrent")
    );
    n4xx += 1;
    let hole = missing * plen;
    for range in [
        format!("bytes={}-{}", hole + 10, hole + 20),
        format!("bytes={}-{}", hole - 1, hole),
    ] {
        let r = curl_get(&ws(&m.name), &[&format!("Range: {range}")]);
        assert_eq!(r.code, 503, "{range}: {r:?}");
        assert_eq!(r.header("retry-after"), Some("30"));
        n5xx += 1;
    }
    // The whole file needs the evicted piece too.
    let r = curl_get(&ws(&m.name), &[]);
    assert_eq!(r.code, 503, "{r:?}");
    n5xx += 1;

    // 451: the blocked swarm, on every route that names it.
    for path in [
        format!("/v1/{}/0", blocked.ih),
        format!("/v1/{}/torrent", blocked.ih),
        format!("/ws/{}/{}", blocked.ih, blocked.name),
    ] {
        let r = curl_get(&pc.url(&path), &[]);
        assert_eq!(r.code, 451, "{path}: {r:?}");
        n4xx += 1;
    }

    // A header of 100 KiB is still a request; one of ~1 MB (curl's own cap on a request
    // is 1 MiB) is refused by hyper before any route (so the listener's own counters never
    // see it).
    let big = |n: usize| {
        let f = lab.path().join(format!("header-{n}"));
        std::fs::write(&f, format!("X-Big: {}\r\n", "a".repeat(n))).unwrap();
        f
    };
    let f = big(100 << 10);
    let r = curl(&["-H", &format!("@{}", f.display())], &v1("0"));
    assert_eq!(r.code, 200, "{r:?}");
    (n2xx, http_answers, http_bytes) = (n2xx + 1, http_answers + 1, http_bytes + plen);
    let f = big(1_000_000);
    let r = curl(&["-H", &format!("@{}", f.display())], &v1("0"));
    assert_eq!(r.code, 431, "{r:?}");

    // The box's counters tell the same story.
    let mm = pc.metrics();
    assert_eq!(classes(&mm), [n2xx, n304, n4xx, n5xx], "2xx, 304, 4xx, 5xx");
    assert_eq!(mm.get("served_answers_total{route=\"http\"}"), http_answers);
    assert_eq!(mm.get("served_bytes_total{route=\"http\"}"), http_bytes);
    assert_eq!(mm.get("served_answers_total{route=\"web_seed\"}"), 1);
    assert_eq!(mm.get("served_bytes_total{route=\"web_seed\"}"), ws_bytes);
    assert_eq!(mm.get("content_rate_limited_total"), 0);
    assert_eq!(mm.get("content_bodies_cut_total"), 0);
    pc.stop();

    // 429: a box allowing 1 request per second after a burst of 5. One curl process asks
    // 8 times on one connection, within milliseconds: 5 answers, then 429s.
    let rl = PcBox::start(
        lab.path(),
        "box-rate",
        &cache,
        "  allow: [127.0.0.0/8]\n  requests_per_second: 1\n  burst: 5\n",
        None,
    );
    let url = rl.url(&format!("/v1/{}/0", m.ih));
    let out = Command::new("curl")
        .args(["-sS", "-w", "%{http_code} %header{retry-after}\\n"])
        .args((0..8).flat_map(|_| ["-o", "/dev/null", url.as_str()]))
        .output()
        .unwrap();
    let codes: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .collect();
    assert_eq!(codes.len(), 8, "{codes:?}");
    assert!(codes[..5].iter().all(|c| c == "200"), "{codes:?}");
    assert_eq!(codes[5], "429 1", "{codes:?}");
    let limited = codes.iter().filter(|c| c.starts_with("429")).count() as u64;
    let mm = rl.metrics();
    assert_eq!(mm.get("content_rate_limited_total"), limited);
    assert_eq!(classes(&mm), [8 - limited, 0, limited, 0]);
    rl.stop();

    // A client outside content.allow: the connection is closed at once, nothing read.
    let shut = PcBox::start(
        lab.path(),
        "box-allow",
        &cache,
        "  allow: [198.18.0.0/15]\n",
        None,
    );
    for _ in 0..3 {
        let r = curl_get(&shut.url(&format!("/v1/{}/0", m.ih)), &[]);
        assert_eq!(r.code, 0, "{r:?}");
        assert!([52, 56].contains(&r.exit), "curl exit {}", r.exit);
    }
    let mm = shut.metrics();
    assert_eq!(
        mm.get("content_refused_connections_total{reason=\"not_allowed\"}"),
        3
    );
    assert_eq!(mm.get("content_connections_total"), 0);
    assert_eq!(classes(&mm), [0, 0, 0, 0]);
    shut.stop();
}

/// The parts of a multipart/byteranges body, framing checked byte for byte: each part's
/// length comes from its own Content-Range, and exactly `CRLF--boundary` must follow it.
fn multipart(body: &[u8], boundary: &str) -> Vec<(String, Vec<u8>)> {
    let delim = format!("--{boundary}");
    let find = |h: &[u8], n: &[u8]| h.windows(n.len()).position(|w| w == n);
    let mut rest = body
        .strip_prefix(delim.as_bytes())
        .expect("the body starts with the first boundary");
    let mut out = Vec::new();
    while !rest.starts_with(b"--") {
        rest = rest.strip_prefix(b"\r\n").expect("CRLF after a boundary");
        let head_end = find(rest, b"\r\n\r\n").expect("part headers end");
        let head = String::from_utf8_lossy(&rest[..head_end]).to_string();
        rest = &rest[head_end + 4..];
        let cr = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Range: "))
            .expect("a Content-Range per part")
            .to_string();
        let (a, b) = cr
            .strip_prefix("bytes ")
            .and_then(|r| r.split('/').next())
            .and_then(|r| r.split_once('-'))
            .map(|(a, b)| (a.parse::<usize>().unwrap(), b.parse::<usize>().unwrap()))
            .unwrap_or_else(|| panic!("part Content-Range {cr:?}"));
        let (data, after) = rest.split_at(b - a + 1);
        out.push((cr, data.to_vec()));
        rest = after
            .strip_prefix(format!("\r\n{delim}").as_bytes())
            .expect("CRLF and the boundary right after the part's bytes");
    }
    assert_eq!(rest, b"--\r\n", "the closing delimiter ends the body");
    out
}
