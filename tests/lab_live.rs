//! Real clients, now: the lab records a fresh libtorrent transfer in network namespaces
//! (tests/lab/lab.sh, addresses in 198.18.0.0/15, cleaned up on exit) and the engine must
//! count exactly the blocks the leecher reported receiving. Needs root and the lab's
//! packages (deploy/install-deps.sh); CI has both.

mod common;

use std::process::Command;
use std::sync::Mutex;

use common::*;

/// The lab's namespace names are fixed: its runs must never overlap.
static LAB: Mutex<()> = Mutex::new(());

/// Run `tests/lab/lab.sh record SCENARIO` into `out`, once more if it fails: the lab refuses
/// a recording when tcpdump dropped packets or a client misbehaved, which says something
/// about a loaded machine, not about the engine (whose counts are then checked exactly).
fn lab_record(scenario: &str, out: &std::path::Path, env: &[(&str, String)]) -> bool {
    (0..2).any(|attempt| {
        if attempt > 0 {
            eprintln!("lab recording of {scenario} failed; retrying once");
        }
        Command::new("bash")
            .arg(repo().join("tests/lab/lab.sh"))
            .args(["record", scenario])
            .env("LAB_OUT_DIR", out)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .status()
            .expect("run tests/lab/lab.sh")
            .success()
    })
}

/// Record `scenario` with the lab into a temporary directory; returns (truth, report).
fn record(scenario: &str) -> (serde_json::Value, peercache::report::Report) {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    assert!(
        lab_record(scenario, dir.path(), &[]),
        "lab recording of {scenario} failed twice"
    );
    let name = format!("lab-{scenario}");
    let truth: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join(format!("{name}.json"))).unwrap(),
    )
    .unwrap();
    (truth, run(&dir.path().join(format!("{name}.pcap"))))
}

#[test]
fn fresh_recordings_match_the_leecher() {
    let _lab = LAB.lock().unwrap_or_else(|e| e.into_inner());
    for scenario in ["tcp-plain", "utp-plain"] {
        let (truth, r) = record(scenario);
        let s = swarm(&r, truth["info_hash"].as_str().unwrap());
        assert_eq!(
            s.piece_messages,
            truth["blocks_received"].as_u64().unwrap(),
            "{scenario}"
        );
        assert_eq!(
            s.piece_messages,
            truth["tshark_piece_messages"].as_u64().unwrap(),
            "{scenario}"
        );
        assert_eq!(
            s.piece_bytes,
            truth["file_size"].as_u64().unwrap(),
            "{scenario}"
        );
        let (tcp, utp) = (r.bittorrent.tcp_connections, r.bittorrent.utp_connections);
        assert_eq!(
            (tcp, utp),
            if scenario.starts_with("utp") {
                (0, 1)
            } else {
                (1, 0)
            },
            "{scenario}"
        );
    }
}

/// `peercache tap` on the subscriber veth while the lab runs a real libtorrent transfer:
/// the cache fills with that torrent's verified pieces, and the file rebuilds from it.
#[test]
fn tap_fills_the_cache_during_a_real_transfer() {
    let _lab = LAB.lock().unwrap_or_else(|e| e.into_inner());
    let bin = env!("CARGO_BIN_EXE_peercache");
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let meta = meta_dir(dir.path(), &plain_torrent());
    let report = dir.path().join("tap.json");
    let tap = format!(
        "exec {bin} tap --iface \"$LAB_SUB_IF\" --http 127.0.0.1:0 --cache-dir {} --metainfo {} --subscriber-net 198.18.0.0/16 --json > {}",
        cache.display(),
        meta.display(),
        report.display()
    );
    let env = [
        ("LAB_TAP_CMD", tap.clone()),
        (
            "LAB_TAP_LOG",
            dir.path().join("tap.log").display().to_string(),
        ),
    ];
    assert!(
        lab_record("tcp-plain", dir.path(), &env),
        "lab run with tap failed twice"
    );
    let truth: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("lab-tcp-plain.json")).unwrap(),
    )
    .unwrap();
    let r: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&report).expect("tap wrote its report on SIGTERM"),
    )
    .unwrap();
    let ih = truth["info_hash"].as_str().unwrap();
    let s = swarm_json(&r, ih).expect("swarm seen by tap");
    assert_eq!(s["pieces_verified"], 16);
    assert_eq!(s["piece_messages"], truth["blocks_received"]);
    let store = peercache::cache::PieceStore::open(&cache, u64::MAX).unwrap();
    let ihb: peercache::wire::infohash::InfoHash = ih.parse().unwrap();
    let mut file = Vec::new();
    for i in 0..16 {
        let key = peercache::cache::PieceKey {
            info_hash: ihb,
            index: i,
        };
        file.extend(store.get(&key).unwrap().expect("piece cached"));
    }
    use sha2::Digest;
    assert_eq!(
        peercache::wire::infohash::hex(&sha2::Sha256::digest(&file)),
        truth["sha256"].as_str().unwrap()
    );
}
