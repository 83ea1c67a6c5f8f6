//! `--requests-out`: the request trace a replay writes holds every subscriber REQUEST of
//! the capture, checked against what others say about the same captures: tshark's own
//! dissection of the TCP recording (count, order, piece/begin/length, times to the
//! microsecond), the lab's truth file for the uTP one (count; every request a valid block
//! of the torrent), and the same multiset of requests with two workers. Read back through
//! `peercache sim csv`, the trace's documented CSV view.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::repo;

const LEECHER: &str = "198.18.0.2";
const BLOCK: u64 = 16384;

/// One CSV row of `peercache sim csv`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Row {
    time_us: u64,
    info_hash: String,
    piece_length: u64,
    client: String,
    piece: u64,
    begin: u64,
    length: u64,
}

fn truth(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(repo().join("pcaps").join(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A `--metainfo` directory holding the given .torrent files of pcaps/.
fn metainfo(dir: &Path, torrents: &[&str]) -> PathBuf {
    let meta = dir.join("meta");
    std::fs::create_dir_all(&meta).unwrap();
    for t in torrents {
        std::fs::copy(repo().join("pcaps").join(t), meta.join(t)).unwrap();
    }
    meta
}

/// `peercache replay PCAPS --json --requests-out TRACE ...`: the JSON report.
fn replay(pcaps: &[&str], meta: &Path, trace: &Path, workers: usize) -> serde_json::Value {
    let mut args: Vec<std::ffi::OsString> = vec!["replay".into()];
    args.extend(pcaps.iter().map(|p| repo().join("pcaps").join(p).into()));
    for a in ["--json", "--subscriber-net", "198.18.0.0/16", "--workers"] {
        args.push(a.into());
    }
    args.push(workers.to_string().into());
    args.extend([
        "--metainfo".into(),
        meta.into(),
        "--requests-out".into(),
        trace.into(),
    ]);
    common::peercache_json(args)
}

/// `peercache sim csv TRACE`, parsed.
fn csv(trace: &Path) -> Vec<Row> {
    let out = common::peercache_stdout([
        std::ffi::OsStr::new("sim"),
        "csv".as_ref(),
        trace.as_os_str(),
    ]);
    let text = String::from_utf8(out).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("time_us,info_hash,piece_length,client,piece,begin,length")
    );
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), 7, "{l}");
            let n = |i: usize| f[i].parse::<u64>().unwrap_or_else(|_| panic!("{l}"));
            Row {
                time_us: n(0),
                info_hash: f[1].to_owned(),
                piece_length: n(2),
                client: f[3].to_owned(),
                piece: n(4),
                begin: n(5),
                length: n(6),
            }
        })
        .collect()
}

/// "1795572052.904274000" as microseconds, exactly.
fn epoch_us(s: &str) -> u64 {
    let (sec, frac) = s.split_once('.').unwrap_or((s, "0"));
    let frac = format!("{frac:0<6}");
    sec.parse::<u64>().unwrap() * 1_000_000 + frac[..6].parse::<u64>().unwrap()
}

fn hex_u64(s: &str) -> u64 {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).unwrap(),
        None => s.parse().unwrap(),
    }
}

/// Every REQUEST message (type 6) in a tshark JSON value, in document order: (piece,
/// begin, length).
fn requests_in(v: &serde_json::Value, out: &mut Vec<(u64, u64, u64)>) {
    match v {
        serde_json::Value::Array(a) => a.iter().for_each(|x| requests_in(x, out)),
        serde_json::Value::Object(o) => {
            if o.get("bittorrent.msg.type").and_then(|t| t.as_str()) == Some("6") {
                let f = |k: &str| hex_u64(o[k].as_str().unwrap_or_else(|| panic!("{k}: {v}")));
                out.push((
                    f("bittorrent.piece.index"),
                    f("bittorrent.piece.begin"),
                    f("bittorrent.piece.length"),
                ));
            } else {
                o.values().for_each(|x| requests_in(x, out));
            }
        }
        _ => {}
    }
}

/// The leecher's REQUESTs as tshark dissects them: (time in µs since the epoch, piece,
/// begin, length), in capture order (a frame's messages in their order).
fn tshark_requests(pcap: &Path, src: &str) -> Vec<(u64, u64, u64, u64)> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args(["-Y"])
        .arg(format!("bittorrent.msg.type == 6 && ip.src == {src}"))
        .args(["-T", "json", "--no-duplicate-keys"])
        .output()
        .expect("tshark must be installed (apt-get install tshark): the tests cross-check with it");
    assert!(out.status.success(), "tshark failed on {}", pcap.display());
    let frames: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut rows = Vec::new();
    for f in frames.as_array().unwrap() {
        let layers = &f["_source"]["layers"];
        let t = &layers["frame"]["frame.time_epoch"];
        let t = t
            .as_str()
            .or_else(|| t.get(0).and_then(|x| x.as_str()))
            .unwrap();
        let mut reqs = Vec::new();
        requests_in(&layers["bittorrent"], &mut reqs);
        assert!(!reqs.is_empty(), "a frame the filter kept has no REQUEST");
        rows.extend(reqs.into_iter().map(|(p, b, l)| (epoch_us(t), p, b, l)));
    }
    rows
}

#[test]
fn tcp_trace_matches_tshark() {
    let t = truth("lab-tcp-plain.json");
    let dir = tempfile::tempdir().unwrap();
    let meta = metainfo(dir.path(), &["lab-tcp-plain.torrent"]);
    let trace = dir.path().join("tcp.trace");
    let report = replay(&["lab-tcp-plain.pcap"], &meta, &trace, 1);
    let rows = csv(&trace);

    let want = tshark_requests(&repo().join("pcaps/lab-tcp-plain.pcap"), LEECHER);
    assert_eq!(want.len() as u64, t["requests_sent"].as_u64().unwrap());
    assert_eq!(rows.len(), want.len(), "{rows:#?}");
    let t0 = want[0].0;
    for (i, (r, w)) in rows.iter().zip(&want).enumerate() {
        assert_eq!(
            (r.time_us, r.piece, r.begin, r.length),
            (w.0 - t0, w.1, w.2, w.3),
            "request {i}"
        );
        assert_eq!(r.client, LEECHER);
        assert_eq!(&r.info_hash, t["info_hash"].as_str().unwrap());
        assert_eq!(r.piece_length, t["piece_length"].as_u64().unwrap());
    }
    let c = &report["requests_out"];
    assert_eq!(c["written"], 64, "{c}");
    assert_eq!(c["skipped_unknown_swarm"], 0, "{c}");
    assert_eq!(c["write_errors"], 0, "{c}");
}

#[test]
fn utp_trace_has_every_request_as_a_valid_block() {
    let t = truth("lab-utp-plain.json");
    let dir = tempfile::tempdir().unwrap();
    let meta = metainfo(dir.path(), &["lab-utp-plain.torrent"]);
    let trace = dir.path().join("utp.trace");
    replay(&["lab-utp-plain.pcap"], &meta, &trace, 1);
    let rows = csv(&trace);

    let n = t["requests_sent"].as_u64().unwrap();
    assert_eq!(rows.len() as u64, n);
    let piece_length = t["piece_length"].as_u64().unwrap();
    let size = t["file_size"].as_u64().unwrap();
    let pieces = size.div_ceil(piece_length);
    let mut blocks = std::collections::BTreeSet::new();
    let mut last = 0;
    for r in &rows {
        assert_eq!(r.client, LEECHER);
        assert_eq!(&r.info_hash, t["info_hash"].as_str().unwrap());
        assert_eq!(r.piece_length, piece_length);
        assert!(r.piece < pieces, "{r:?}");
        let in_piece = piece_length.min(size - r.piece * piece_length);
        assert_eq!(r.begin % BLOCK, 0, "{r:?}");
        assert_eq!(r.length, BLOCK.min(in_piece - r.begin), "{r:?}");
        assert!(r.time_us >= last, "time goes forward: {r:?}");
        last = r.time_us;
        blocks.insert((r.piece, r.begin));
    }
    // Every block was asked for once (the leecher sent as many REQUESTs as there are blocks
    // and received each block once).
    if n == t["num_blocks"].as_u64().unwrap() {
        assert_eq!(blocks.len() as u64, n);
    }
}

/// Requests as a multiset, without their times (workers interleave).
fn multiset(rows: &[Row]) -> BTreeMap<(String, String, u64, u64, u64, u64), u32> {
    let mut m = BTreeMap::new();
    for r in rows {
        let k = (
            r.info_hash.clone(),
            r.client.clone(),
            r.piece_length,
            r.piece,
            r.begin,
            r.length,
        );
        *m.entry(k).or_default() += 1;
    }
    m
}

#[test]
fn two_workers_write_the_same_requests() {
    let dir = tempfile::tempdir().unwrap();
    let meta = metainfo(
        dir.path(),
        &["lab-tcp-plain.torrent", "lab-utp-plain.torrent"],
    );
    let pcaps = ["lab-tcp-plain.pcap", "lab-utp-plain.pcap"];
    let one = dir.path().join("one.trace");
    let two = dir.path().join("two.trace");
    replay(&pcaps, &meta, &one, 1);
    replay(&pcaps, &meta, &two, 2);
    let (a, b) = (csv(&one), csv(&two));
    let want = truth("lab-tcp-plain.json")["requests_sent"]
        .as_u64()
        .unwrap()
        + truth("lab-utp-plain.json")["requests_sent"]
            .as_u64()
            .unwrap();
    assert_eq!(a.len() as u64, want);
    assert_eq!(multiset(&a), multiset(&b));
}

/// A trace that cannot be written: logged with its path, counted, the replay goes on (its
/// report complete) and exits 1.
#[test]
fn write_error_is_reported_and_the_replay_goes_on() {
    if !Path::new("/dev/full").exists() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let meta = metainfo(dir.path(), &["lab-tcp-plain.torrent"]);
    let out = Command::new(env!("CARGO_BIN_EXE_peercache"))
        .arg("replay")
        .arg(repo().join("pcaps/lab-tcp-plain.pcap"))
        .args(["--json", "--subscriber-net", "198.18.0.0/16", "--metainfo"])
        .arg(&meta)
        .args(["--requests-out", "/dev/full"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/dev/full"), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["requests_out"]["write_errors"], 1, "{report}");
    assert_eq!(
        report["peerwire"]["handshakes"].as_u64().map(|h| h > 0),
        Some(true)
    );
}

/// `curl -sf URL` inside a network namespace: the body, or None.
fn curl_in(ns: &str, url: &str) -> Option<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "curl", "-sf", url])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Tap mode writes the same trace from a live capture: the TCP recording replayed onto a
/// veth with tcpreplay gives the leecher's REQUESTs in tshark's order, each once. (Times
/// are the capture's clock, not the file's, so only their order is checked.)
#[test]
fn tap_writes_the_trace_from_a_live_capture() {
    common::require_root();
    let dir = tempfile::tempdir().unwrap();
    let meta = metainfo(dir.path(), &["lab-tcp-plain.torrent"]);
    let trace = dir.path().join("tap.trace");
    let ns = "pc-rqo";
    let _ns = common::Netns::new(ns, &[("pc-rqo0", "pc-rqo1")]);

    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_peercache"), "tap"])
        .args(["--iface", "pc-rqo1", "--json", "--http", "127.0.0.1:9751"])
        .args(["--subscriber-net", "198.18.0.0/16", "--metainfo"])
        .arg(&meta)
        .arg("--requests-out")
        .arg(&trace);
    let mut tap = common::Proc::spawn("tap", &mut cmd);
    tap.wait_for("capturing on pc-rqo1", std::time::Duration::from_secs(30));
    let sent = Command::new("tcpreplay")
        .args(["-q", "--intf1=pc-rqo0", "--mbps=100"])
        .arg(repo().join("pcaps/lab-tcp-plain.pcap"))
        .output()
        .expect("tcpreplay (Debian package tcpreplay; deploy/install-deps.sh)");
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );

    let want = tshark_requests(&repo().join("pcaps/lab-tcp-plain.pcap"), LEECHER);
    // Until the tap has seen them all (its summary), then SIGTERM, which flushes the trace.
    let t0 = std::time::Instant::now();
    loop {
        let written = curl_in(ns, "http://127.0.0.1:9751/api/summary")
            .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
            .and_then(|v| v["report"]["requests_out"]["written"].as_u64());
        if written == Some(want.len() as u64) || t0.elapsed().as_secs() > 30 {
            break;
        }
        tap.check_running();
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let (status, stdout, lines) = tap.stop();
    assert_eq!(status.code(), Some(0), "{lines:#?}");
    let report: serde_json::Value = serde_json::from_slice(&stdout).expect("JSON report");
    let c = &report["requests_out"];
    assert_eq!(c["written"], want.len() as u64, "{c}");
    assert_eq!(c["write_errors"], 0, "{c}");

    let rows = csv(&trace);
    let got: Vec<(u64, u64, u64)> = rows.iter().map(|r| (r.piece, r.begin, r.length)).collect();
    let want: Vec<(u64, u64, u64)> = want.iter().map(|w| (w.1, w.2, w.3)).collect();
    assert_eq!(got, want);
    assert!(rows.iter().all(|r| r.client == LEECHER), "{rows:#?}");
    assert!(
        rows.windows(2).all(|w| w[0].time_us <= w[1].time_us),
        "{rows:#?}"
    );
}
