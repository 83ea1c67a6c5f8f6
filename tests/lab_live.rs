//! Real clients, now: the lab records a fresh libtorrent transfer in network namespaces
//! (tests/lab/lab.sh, addresses in 198.18.0.0/15, cleaned up on exit) and the engine must
//! count exactly the blocks the leecher reported receiving. Needs root and the lab's
//! packages (deploy/install-deps.sh); CI has both.

mod common;

use std::process::Command;

use common::*;

/// Record `scenario` with the lab into a temporary directory; returns (truth, report).
fn record(scenario: &str) -> (serde_json::Value, peercache::report::Report) {
    let uid = Command::new("id").arg("-u").output().expect("id");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "the live lab needs root (network namespaces); run the tests as root"
    );
    let dir = tempfile::tempdir().unwrap();
    let st = Command::new("bash")
        .arg(repo().join("tests/lab/lab.sh"))
        .args(["record", scenario])
        .env("LAB_OUT_DIR", dir.path())
        .status()
        .expect("run tests/lab/lab.sh");
    assert!(st.success(), "lab recording of {scenario} failed");
    let name = format!("lab-{scenario}");
    let truth: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join(format!("{name}.json"))).unwrap(),
    )
    .unwrap();
    (truth, run(&dir.path().join(format!("{name}.pcap"))))
}

/// One test records both transports in turn: the lab's namespace names are fixed, so two
/// recordings must never run at once.
#[test]
fn fresh_recordings_match_the_leecher() {
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
