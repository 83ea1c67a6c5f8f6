//! Tap mode as an operator runs it: live capture, SIGHUP reloads (a bad file refused, the
//! running configuration kept), SIGTERM shuts down cleanly, and the cache survives all of
//! it. Captures on loopback (root, as in CI); the real-transfer test is in lab_live.rs.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use peercache::cache::PieceStore;

fn wait_for(lines: &Arc<Mutex<Vec<String>>>, needle: &str) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if lines.lock().unwrap().iter().any(|l| l.contains(needle)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no log line with {needle:?}: {:?}", lines.lock().unwrap());
}

#[test]
fn sighup_reloads_and_sigterm_stops_without_losing_the_cache() {
    let bin = env!("CARGO_BIN_EXE_peercache");
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    // A cache filled from a real capture first.
    let meta = meta_dir(dir.path(), &plain_torrent());
    let st = Command::new(bin)
        .args(["replay", "--no-progress", "--cache-dir"])
        .arg(&cache)
        .arg("--metainfo")
        .arg(&meta)
        .arg(repo().join("pcaps/lab-tcp-plain.pcap"))
        .output()
        .unwrap();
    assert!(st.status.success());
    let cfg = dir.path().join("peercache.yaml");
    let write_cfg = |max_flows: &str| {
        std::fs::write(
            &cfg,
            format!("cache:\n  dir: {}\nflows:\n  max_flows: {max_flows}\ncapture:\n  filter: udp port 9\n  buffer_bytes: 16MiB\n", cache.display()),
        )
        .unwrap()
    };
    write_cfg("1000");
    let mut child = Command::new(bin)
        .args([
            "tap",
            "--iface",
            "lo",
            "--json",
            "--http",
            "127.0.0.1:0",
            "--report",
        ])
        .arg(dir.path().join("report.json"))
        .arg("--config")
        .arg(&cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let l2 = lines.clone();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            l2.lock().unwrap().push(line);
        }
    });
    wait_for(&lines, "capturing on lo");
    write_cfg("2000");
    signal(child.id(), "HUP");
    wait_for(&lines, "SIGHUP: reloaded");
    write_cfg("not a number");
    signal(child.id(), "HUP");
    wait_for(&lines, "SIGHUP: refused, previous configuration stays");
    signal(child.id(), "TERM");
    let out = child.wait_with_output().unwrap();
    reader.join().unwrap();
    assert!(
        out.status.success(),
        "exit {:?}: {:?}",
        out.status,
        lines.lock().unwrap()
    );
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("final report on stdout");
    assert!(report["frames"].is_u64());
    // --report FILE: the same document.
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(file, report);
    // Nothing lost: every piece is still there and verifies.
    let store = PieceStore::open(&cache, u64::MAX).unwrap();
    let v = store.verify_all();
    assert_eq!((v.ok, v.removed), (16, 0));
}

#[test]
fn bad_interface_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_peercache"))
        .args(["tap", "--iface", "pc-no-such-if0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pc-no-such-if0"), "{err}");
    let last = err.lines().last().unwrap_or("");
    assert_eq!(
        log_line(last).map(|(level, _)| level),
        Some("ERROR"),
        "{err}"
    );
}

/// A capture that cannot open says why in one line, exit 2: an interface that does not
/// exist is named as such, and a user without the capability is told which one it needs
/// (run as `nobody`: the tests run as root, which has it).
#[test]
fn capture_failures_name_their_cause() {
    let dir = tempfile::tempdir().unwrap();
    let bin = peercache_for_nobody(dir.path());
    let tap = |iface: &str, as_nobody: bool| {
        let out = command_as(&bin, as_nobody)
            .args(["tap", "--http", "127.0.0.1:0", "--iface", iface])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        let last = err.lines().last().unwrap_or("");
        let msg = match log_line(last) {
            Some(("ERROR", msg)) => msg.to_string(),
            _ => panic!("the last line is no ERROR log line: {err}"),
        };
        (out.status.code(), msg)
    };
    assert_eq!(
        tap("nosuch0", false),
        (Some(2), "nosuch0: no such network interface".into())
    );
    assert_eq!(
        tap("lo", true),
        (
            Some(2),
            "lo: not permitted: needs CAP_NET_RAW (or root)".into()
        )
    );
}

/// Log lines have one shape in every mode (RFC 3339 UTC time, level, message), `-q`/`-qq`
/// and `RUST_LOG` choose the levels shown, `--log-format json` gives one object per line
/// with the same message, and a bad `RUST_LOG` is a one-line error.
#[test]
fn logs_have_levels_a_json_form_and_obey_verbosity() {
    let tap = |pre: &[&str], env: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_peercache"));
        c.args(pre)
            .args(["tap", "--http", "127.0.0.1:0", "--iface", "nosuch0"]);
        match env {
            Some(v) => c.env("RUST_LOG", v),
            None => c.env_remove("RUST_LOG"),
        };
        let out = c.output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let levels = |err: &str| -> Vec<String> {
        err.lines()
            .map(|l| match log_line(l) {
                Some((level, _)) => level.to_string(),
                None => panic!("not a log line: {l:?} in\n{err}"),
            })
            .collect()
    };
    let want_error = "nosuch0: no such network interface";
    // Default: information (what it starts), the warning that no cache is configured,
    // and the error that stopped it, last.
    let err = tap(&[], None);
    let all = levels(&err);
    assert!(all.iter().any(|l| l == "INFO"), "{err}");
    assert_eq!(all.iter().filter(|l| *l == "WARN").count(), 1, "{err}");
    assert_eq!(
        log_line(err.lines().last().unwrap()),
        Some(("ERROR", want_error)),
        "{err}"
    );
    // -q: the same warning and error, nothing else; -qq and RUST_LOG=error: the error.
    assert_eq!(levels(&tap(&["-q"], None)), ["WARN", "ERROR"]);
    assert_eq!(levels(&tap(&["-qq"], None)), ["ERROR"]);
    assert_eq!(levels(&tap(&[], Some("error"))), ["ERROR"]);
    // -v adds detail, never removes any: at least the default's lines.
    assert!(levels(&tap(&["-v"], None)).len() >= all.len());
    // JSON: the same lines, one object each.
    let json = tap(&["--log-format", "json"], None);
    let objs: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(objs.len(), all.len(), "{json}");
    for (o, level) in objs.iter().zip(&all) {
        assert_eq!(o["level"], level.as_str(), "{o}");
        let ts = o["timestamp"].as_str().unwrap_or("");
        assert!(log_line(&format!("{ts} X m")).is_none()); // X is no level...
        assert!(log_line(&format!("{ts} INFO m")).is_some(), "{o}"); // ...the time is RFC 3339
    }
    assert_eq!(objs.last().unwrap()["fields"]["message"], want_error);
    // A bad RUST_LOG stops it before anything else, naming the variable.
    let mut c = Command::new(env!("CARGO_BIN_EXE_peercache"));
    let out = c
        .env("RUST_LOG", "peercache=loud")
        .args(["tap", "--iface", "nosuch0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("peercache: RUST_LOG=peercache=loud: "),
        "{err}"
    );
}
