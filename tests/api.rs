//! The cache-metadata API (`/api/v1/...`) as an operator's tools see it: a box in tap mode
//! over a cache filled from three real lab captures, its content listener answering a few
//! requests, then every v1 answer checked three ways: against the captures' truth files
//! (pieces, bytes), against what the test itself asked of the content listener (served
//! counts by route), and against the OpenAPI document, which a validator must accept and
//! every response conform to (tests/lab/openapi_check.py).

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

const CAPTURES: [&str; 3] = ["lab-tcp-plain", "lab-utp-plain", "lab-tcp-aria2"];

fn truth(name: &str) -> Value {
    let text = std::fs::read(repo().join(format!("pcaps/{name}.json"))).unwrap();
    serde_json::from_slice(&text).unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The address a log line gives after `prefix` ("... at http://ADDR/ ...").
fn addr_after(line: &str, prefix: &str) -> SocketAddr {
    let rest = &line[line.find(prefix).unwrap() + prefix.len()..];
    rest.split('/').next().unwrap().parse().unwrap()
}

/// GET through curl, the body as bytes; `extra`: more curl arguments.
fn curl(url: &str, extra: &[&str]) -> (u16, Vec<u8>) {
    let out = Command::new("curl")
        .args(["-sS", "-o", "-", "-w", "\n%{http_code}"])
        .args(extra)
        .arg(url)
        .output()
        .unwrap();
    assert!(out.status.success(), "curl {url}: {:?}", out);
    let mut body = out.stdout;
    let nl = body.iter().rposition(|&b| b == b'\n').unwrap();
    let code = std::str::from_utf8(&body[nl + 1..])
        .unwrap()
        .parse()
        .unwrap();
    body.truncate(nl);
    (code, body)
}

fn get_json(addr: SocketAddr, path: &str) -> (u16, Value) {
    let (code, body) = curl(&format!("http://{addr}{path}"), &[]);
    (code, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// Pieces 0..n as a BEP 3 bitfield in hex, all held.
fn full_bitfield(n: u64) -> String {
    let mut bits = vec![0u8; n.div_ceil(8) as usize];
    for i in 0..n {
        bits[(i / 8) as usize] |= 0x80 >> (i % 8);
    }
    bits.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn v1_swarms_match_the_cache_the_served_counts_and_the_openapi_document() {
    let bin = env!("CARGO_BIN_EXE_peercache");
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let meta = dir.path().join("meta");
    std::fs::create_dir_all(&meta).unwrap();
    for c in CAPTURES {
        std::fs::copy(
            repo().join(format!("pcaps/{c}.torrent")),
            meta.join(format!("{c}.torrent")),
        )
        .unwrap();
    }
    let st = Command::new(bin)
        .args(["replay", "--no-progress", "--cache-dir"])
        .arg(&cache)
        .arg("--metainfo")
        .arg(&meta)
        .args(CAPTURES.map(|c| repo().join(format!("pcaps/{c}.pcap"))))
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    // The plain capture's first piece, read by the cache command before the box holds the
    // cache: what the content listener must hand out.
    let plain = truth("lab-tcp-plain");
    let plain_ih = plain["info_hash"].as_str().unwrap().to_string();
    let piece0 = Command::new(bin)
        .args(["cache", "--cache-dir"])
        .arg(&cache)
        .args(["get", &plain_ih, "0"])
        .output()
        .unwrap();
    assert!(piece0.status.success());
    let piece0 = piece0.stdout;
    let plen = plain["piece_length"].as_u64().unwrap();
    assert_eq!(piece0.len() as u64, plen);

    let cfg = dir.path().join("peercache.yaml");
    std::fs::write(
        &cfg,
        format!(
            "cache:\n  dir: {}\ncontent:\n  listen: 127.0.0.1:{}\n  allow: [127.0.0.0/8]\ncapture:\n  filter: udp port 9\n",
            cache.display(),
            free_port()
        ),
    )
    .unwrap();
    let mut tap = Proc::spawn(
        "tap",
        Command::new(bin)
            .args(["tap", "--iface", "lo", "--http", "127.0.0.1:0", "--config"])
            .arg(&cfg),
    );
    let api = addr_after(
        &tap.wait_for("dashboard and metrics at", Duration::from_secs(20)),
        "at http://",
    );
    let content = addr_after(
        &tap.wait_for("content listener at", Duration::from_secs(20)),
        "at http://",
    );

    // The content listener serves: the whole first piece, two blocks of it in one request
    // (multipart), and the first 100 bytes of the file as a web seed.
    let (code, body) = curl(&format!("http://{content}/v1/{plain_ih}/0"), &[]);
    assert_eq!((code, body.len()), (200, piece0.len()));
    assert!(body == piece0);
    let (code, multi) = curl(
        &format!("http://{content}/v1/{plain_ih}/0"),
        &["-H", "Range: bytes=0-16383,32768-49151"],
    );
    assert_eq!(code, 206);
    // Two parts of 16 KiB and their multipart framing.
    assert!(multi.len() > 2 * 16384);
    let (_, detail) = get_json(api, &format!("/api/v1/swarms/{plain_ih}"));
    let name = detail["name"].as_str().unwrap().to_string();
    let (code, head) = curl(
        &format!("http://{content}/ws/{plain_ih}/{name}"),
        &["-H", "Range: bytes=0-99"],
    );
    assert_eq!((code, head.as_slice()), (206, &piece0[..100]));

    // Every response the test checks, for the OpenAPI validator at the end.
    let mut checks: Vec<(String, &str, String, std::path::PathBuf)> = Vec::new();
    let mut keep = |route: &str, status: u16, body: &Value| {
        let f = dir.path().join(format!("resp{}.json", checks.len()));
        std::fs::write(&f, serde_json::to_vec(body).unwrap()).unwrap();
        checks.push((route.to_string(), "get", status.to_string(), f));
    };

    // The list: the three swarms, sorted, each complete as its capture's truth says.
    let (code, page) = get_json(api, "/api/v1/swarms");
    assert_eq!(code, 200);
    keep("/api/v1/swarms", code, &page);
    let swarms = page["swarms"].as_array().unwrap();
    let mut want: Vec<String> = CAPTURES
        .iter()
        .map(|c| truth(c)["info_hash"].as_str().unwrap().to_string())
        .collect();
    want.sort();
    let got: Vec<&str> = swarms
        .iter()
        .map(|s| s["info_hash"].as_str().unwrap())
        .collect();
    assert_eq!(got, want);
    assert_eq!(page["next"], Value::Null);
    for c in CAPTURES {
        let t = truth(c);
        let s = swarms
            .iter()
            .find(|s| s["info_hash"] == t["info_hash"])
            .unwrap();
        assert_eq!(s["pieces"], t["num_pieces"], "{c}");
        assert_eq!(s["pieces_cached"], t["num_pieces"], "{c}");
        assert_eq!(s["bytes_cached"], t["file_size"], "{c}");
        assert_eq!(s["piece_length"], t["piece_length"], "{c}");
    }

    // Pages of one chain through the same list; the last says there is no next.
    let mut after = String::new();
    let mut chained = Vec::new();
    loop {
        let q = if after.is_empty() {
            "/api/v1/swarms?limit=1".to_string()
        } else {
            format!("/api/v1/swarms?limit=1&after={after}")
        };
        let (code, p) = get_json(api, &q);
        assert_eq!(code, 200);
        keep("/api/v1/swarms", code, &p);
        chained.push(p["swarms"][0]["info_hash"].as_str().unwrap().to_string());
        match p["next"].as_str() {
            Some(n) => after = n.to_string(),
            None => break,
        }
    }
    assert_eq!(chained, want);

    // One swarm in full: the bitfield of a complete download, and exactly what this test
    // had served: two HTTP answers (a piece, and 2 × 16 KiB in multipart: the cache's
    // bytes are counted, not the multipart framing), one web seed
    // answer of 100 bytes, nothing inline (tap mode never serves).
    let (code, d) = get_json(api, &format!("/api/v1/swarms/{plain_ih}"));
    assert_eq!(code, 200);
    keep("/api/v1/swarms/{info_hash}", code, &d);
    let n = plain["num_pieces"].as_u64().unwrap();
    assert_eq!(d["bitfield"], full_bitfield(n));
    assert_eq!(d["metainfo_source"], "cache");
    assert_eq!(d["total_length"], plain["file_size"]);
    assert_eq!(d["served"]["http"]["hits"], 2);
    assert_eq!(
        d["served"]["http"]["bytes"].as_u64().unwrap(),
        plen + 2 * 16384
    );
    assert_eq!(
        d["served"]["web_seed"],
        serde_json::json!({"hits": 1, "bytes": 100})
    );
    assert_eq!(
        d["served"]["inline"],
        serde_json::json!({"hits": 0, "bytes": 0})
    );
    assert!(d["last_access_unix"].as_f64().unwrap() > 1.7e9);
    // The swarms nobody asked for: never accessed.
    let other = want.iter().find(|ih| **ih != plain_ih).unwrap();
    let (_, o) = get_json(api, &format!("/api/v1/swarms/{other}"));
    assert_eq!(o["last_access_unix"], Value::Null);
    keep("/api/v1/swarms/{info_hash}", 200, &o);

    // Bad input gets the right 4xx, in the documented error shape.
    for (path, route, status) in [
        ("/api/v1/swarms/xyz", "/api/v1/swarms/{info_hash}", 400),
        (
            "/api/v1/swarms/0000000000000000000000000000000000000000",
            "/api/v1/swarms/{info_hash}",
            404,
        ),
        ("/api/v1/swarms?limit=0", "/api/v1/swarms", 400),
        ("/api/v1/swarms?limit=abc", "/api/v1/swarms", 400),
        ("/api/v1/swarms?after=zz", "/api/v1/swarms", 400),
    ] {
        let (code, body) = get_json(api, path);
        assert_eq!(code, status, "{path}");
        keep(route, code, &body);
    }

    // The Prometheus view of the same counts. The snapshot is published once a second:
    // wait for one that has the answers above.
    let mut served_http = 0;
    for _ in 0..50 {
        let (_, m) = curl(&format!("http://{api}/metrics"), &[]);
        let m = String::from_utf8(m).unwrap();
        if let Some(v) = m
            .lines()
            .find_map(|l| l.strip_prefix("peercache_served_bytes_total{route=\"http\"} "))
        {
            served_http = v.trim().parse().unwrap();
            if served_http > 0 {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(served_http, plen + 2 * 16384);

    // The document itself, as served, is the one in the source tree; a validator accepts
    // it, and every response above conforms to it.
    let (code, doc) = curl(&format!("http://{api}/api/v1/openapi.json"), &[]);
    assert_eq!(code, 200);
    assert!(doc == std::fs::read(repo().join("src/http/openapi.json")).unwrap());
    let spec = dir.path().join("openapi.json");
    std::fs::write(&spec, &doc).unwrap();
    let mut check = Command::new("python3");
    check
        .arg(repo().join("tests/lab/openapi_check.py"))
        .arg(&spec);
    for (route, method, status, file) in &checks {
        check
            .args([route.as_str(), method, status.as_str()])
            .arg(file);
    }
    let out = check.output().unwrap();
    assert!(
        out.status.success(),
        "openapi_check: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["checked"].as_u64(), Some(checks.len() as u64));

    let (status, _, log) = tap.stop();
    assert!(status.success(), "{}", log.join("\n"));
}
