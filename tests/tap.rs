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

fn signal(pid: u32, sig: &str) {
    assert!(Command::new("kill")
        .args(["-s", sig, &pid.to_string()])
        .status()
        .unwrap()
        .success());
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
            format!("cache:\n  dir: {}\nflows:\n  max_flows: {max_flows}\ncapture:\n  filter: udp port 9\n", cache.display()),
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
            "--config",
        ])
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
    assert_eq!(
        err.trim()
            .lines()
            .last()
            .map(|l| l.starts_with("peercache: ")),
        Some(true),
        "{err}"
    );
}

/// A capture that cannot open says why in one line, exit 2: an interface that does not
/// exist is named as such, and a user without the capability is told which one it needs
/// (run as `nobody`: the tests run as root, which has it).
#[test]
fn capture_failures_name_their_cause() {
    let dir = tempfile::tempdir().unwrap();
    // A copy of the binary `nobody` may run (the build tree may be private).
    let bin = dir.path().join("peercache");
    std::fs::copy(env!("CARGO_BIN_EXE_peercache"), &bin).unwrap();
    use std::os::unix::fs::PermissionsExt;
    for p in [dir.path(), bin.as_path()] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let tap = |iface: &str, as_nobody: bool| {
        let mut c = if as_nobody {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(&bin);
            c
        } else {
            Command::new(&bin)
        };
        let out = c
            .args(["tap", "--http", "127.0.0.1:0", "--iface", iface])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (
            out.status.code(),
            err.lines().last().unwrap_or("").to_string(),
        )
    };
    assert_eq!(
        tap("nosuch0", false),
        (
            Some(2),
            "peercache: nosuch0: no such network interface".into()
        )
    );
    assert_eq!(
        tap("lo", true),
        (
            Some(2),
            "peercache: lo: not permitted: needs CAP_NET_RAW (or root)".into()
        )
    );
}
