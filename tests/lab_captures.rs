//! The captures recorded from real clients by tests/lab (pcaps/lab-*.pcap). Each has a truth
//! file written by the leecher itself (blocks it received, from libtorrent's counters or
//! aria2's log) and by tshark; the engine must agree with both.

mod common;

use common::*;
use serde_json::Value;

fn truth(name: &str) -> Value {
    let p = repo().join("pcaps").join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&p).expect("truth file")).expect("truth json")
}

fn check_plain(name: &str) {
    let t = truth(name);
    let r = run(&repo().join("pcaps").join(format!("{name}.pcap")));
    let ih = t["info_hash"].as_str().unwrap();
    let s = swarm(&r, ih);
    let blocks = t["blocks_received"].as_u64().unwrap();
    assert_eq!(
        s.piece_messages, blocks,
        "{name}: PIECE messages vs blocks the leecher received"
    );
    assert_eq!(
        s.piece_messages,
        t["tshark_piece_messages"].as_u64().unwrap(),
        "{name}: vs tshark"
    );
    assert_eq!(
        s.request_messages,
        t["tshark_request_messages"].as_u64().unwrap(),
        "{name}: REQUESTs vs tshark"
    );
    assert_eq!(
        s.piece_bytes,
        t["file_size"].as_u64().unwrap(),
        "{name}: whole file crossed once"
    );
    assert_eq!(s.distinct_blocks, t["num_blocks"].as_u64().unwrap());
    assert_eq!(s.connections, 1);
    assert_eq!(r.bittorrent.tcp_connections, 1);
    assert_eq!(r.reassembly.gaps, 0);
    // Every message type tshark decoded, we decoded as often (no loss in these captures).
    let ts = tshark_msg_types(
        &repo().join("pcaps").join(format!("{name}.pcap")),
        &["-d", "tcp.port==6881,bittorrent"],
    );
    let ours = |k: &str| s.messages.get(k).copied().unwrap_or(0);
    for (id, n) in ts {
        let key = peercache::wire::peerwire::Kind::from_id(id as u8)
            .map(|k| k.as_str())
            .unwrap();
        assert_eq!(ours(key), n, "{name}: {key}");
    }
}

#[test]
fn plain_tcp_from_torrent() {
    check_plain("lab-tcp-plain");
}

#[test]
fn aria2_leecher() {
    check_plain("lab-tcp-aria2");
    // aria2 first tries MSE, which the plain-only seeder refuses, then reconnects in the
    // clear: that first attempt is the one encrypted connection.
    let r = run(&repo().join("pcaps/lab-tcp-aria2.pcap"));
    assert_eq!(r.bittorrent.encrypted_connections, 1);
}

#[test]
fn magnet_link_carries_metadata_on_the_wire() {
    check_plain("lab-tcp-magnet");
    let t = truth("lab-tcp-magnet");
    let r = run(&repo().join("pcaps/lab-tcp-magnet.pcap"));
    let s = swarm(&r, t["info_hash"].as_str().unwrap());
    // The .torrent's info dictionary is what went over the wire.
    let torrent = std::fs::read(repo().join("pcaps/lab-tcp-magnet.torrent")).unwrap();
    let (v, _) = peercache::wire::bencode::decode_prefix(&torrent, Default::default()).unwrap();
    let info = match v.get(b"info").unwrap() {
        peercache::wire::bencode::Value::Dict { raw, .. } => raw.len() as u64,
        _ => panic!("info is not a dict"),
    };
    assert_eq!(s.metadata_size, Some(info));
    // BEP 9 moves metadata in 16 KiB pieces, one request and one data message each (the
    // single leecher fetches it once; tshark sees the same extended messages, above).
    let metadata_pieces = info.div_ceil(16384);
    assert_eq!(
        (
            s.extended.get("ut_metadata_request").copied(),
            s.extended.get("ut_metadata_data").copied()
        ),
        (Some(metadata_pieces), Some(metadata_pieces)),
        "{:?}",
        s.extended
    );
}

#[test]
fn encrypted_is_counted_and_left_alone() {
    let r = run(&repo().join("pcaps/lab-tcp-encrypted.pcap"));
    assert_eq!(r.bittorrent.encrypted_connections, 1);
    assert_eq!(r.bittorrent.tcp_connections, 0);
    assert!(r.swarms.is_empty());
    assert_eq!(r.unattributed.piece_messages, 0);
}

#[test]
fn several_files_in_one_run_and_sharded_workers_agree() {
    let files: Vec<_> = ["lab-tcp-plain", "lab-tcp-magnet", "lab-tcp-aria2"]
        .iter()
        .map(|n| repo().join("pcaps").join(format!("{n}.pcap")))
        .collect();
    let one = run_with(&files, &Default::default(), 1).report;
    let three = run_with(&files, &Default::default(), 3).report;
    assert_eq!(one.swarms.len(), 3);
    assert_eq!(one.frames, three.frames);
    for (a, b) in one.swarms.iter().zip(&three.swarms) {
        assert_eq!(
            (
                &a.info_hash,
                a.piece_messages,
                a.request_messages,
                a.distinct_blocks
            ),
            (
                &b.info_hash,
                b.piece_messages,
                b.request_messages,
                b.distinct_blocks
            )
        );
    }
    assert_eq!(one.bittorrent.tcp_connections, 3);
    assert_eq!(three.bittorrent.tcp_connections, 3);
}

#[test]
fn replay_publishes_a_final_snapshot_for_the_dashboard() {
    use std::sync::Arc;
    let live = Arc::new(peercache::metrics::Live::new(10));
    let path = repo().join("pcaps/lab-tcp-plain.pcap");
    let opts = peercache::replay::ReplayOptions {
        workers: 1,
        live: Some(live.clone()),
        ..Default::default()
    };
    let out = peercache::replay::replay(std::slice::from_ref(&path), &Default::default(), &opts);
    let s = live.latest().expect("published");
    assert!(s.finished);
    assert_eq!(
        (s.mode.as_str(), s.report.frames),
        ("replay", out.report.frames)
    );
    assert_eq!(s.input_read_bytes, std::fs::metadata(&path).unwrap().len());
    let h = live.history();
    assert_eq!(h.last().map(|p| p.frames), Some(out.report.frames));
}
