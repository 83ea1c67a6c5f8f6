//! Real clients, now: the lab records a fresh libtorrent transfer in network namespaces
//! (tests/lab/lab.sh, addresses in 198.18.0.0/15, cleaned up on exit) and the engine must
//! count exactly the blocks the leecher reported receiving. Needs root and the lab's
//! packages (deploy/install-deps.sh); CI has both.

mod common;

use std::process::Command;

use common::*;

#[test]
fn fresh_recording_matches_the_leecher() {
    let uid = Command::new("id").arg("-u").output().expect("id");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "the live lab needs root (network namespaces); run the tests as root"
    );
    let dir = tempfile::tempdir().unwrap();
    let st = Command::new("bash")
        .arg(repo().join("tests/lab/lab.sh"))
        .args(["record", "tcp-plain"])
        .env("LAB_OUT_DIR", dir.path())
        .status()
        .expect("run tests/lab/lab.sh");
    assert!(st.success(), "lab recording failed");
    let truth: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("lab-tcp-plain.json")).unwrap(),
    )
    .unwrap();
    let r = run(&dir.path().join("lab-tcp-plain.pcap"));
    let s = swarm(&r, truth["info_hash"].as_str().unwrap());
    assert_eq!(s.piece_messages, truth["blocks_received"].as_u64().unwrap());
    assert_eq!(
        s.piece_messages,
        truth["tshark_piece_messages"].as_u64().unwrap()
    );
    assert_eq!(s.piece_bytes, truth["file_size"].as_u64().unwrap());
}
