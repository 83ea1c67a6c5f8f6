//! BitTorrent over uTP (BEP 29) through the same pipeline: real libtorrent recordings from
//! the lab, the public uTP captures, and the negatives (DHT, DNS, LSD must never be uTP).

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;
use sha2::Digest;

fn truth(name: &str) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(repo().join("pcaps").join(format!("{name}.json"))).unwrap(),
    )
    .unwrap()
}

#[test]
fn lab_utp_captures_match_the_leecher_and_tshark() {
    for name in ["lab-utp-plain", "lab-utp-magnet"] {
        let t = truth(name);
        let r = run(&repo().join("pcaps").join(format!("{name}.pcap")));
        let s = swarm(&r, t["info_hash"].as_str().unwrap());
        let blocks = t["blocks_received"].as_u64().unwrap();
        assert_eq!(s.piece_messages, blocks, "{name}");
        assert_eq!(
            s.piece_messages,
            t["tshark_piece_messages"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(
            s.request_messages,
            t["tshark_request_messages"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(s.piece_bytes, t["file_size"].as_u64().unwrap(), "{name}");
        assert_eq!(
            (r.bittorrent.utp_connections, r.bittorrent.tcp_connections),
            (1, 0),
            "{name}"
        );
        // The lab's own header count (tshark misses libtorrent's close-reason packets).
        assert_eq!(
            r.utp.data_packets,
            t["utp_types"]["0_DATA"].as_u64().unwrap(),
            "{name}: DATA packets"
        );
        assert_eq!(
            r.utp.packets,
            t["utp_packets"].as_u64().unwrap(),
            "{name}: uTP packets"
        );
        assert_eq!(
            r.utp.flows,
            t["utp_flows"].as_u64().unwrap(),
            "{name}: uTP flows"
        );
        assert_eq!((r.utp.gaps, r.utp.conflicting), (0, 0), "{name}");
        if name == "lab-utp-magnet" {
            assert_eq!(s.metainfo, "wire");
            assert_eq!(s.pieces_verified, 16, "metadata over uTP, then every piece");
        }
    }
}

/// Replay `name` into a fresh cache (with its .torrent if `with_torrent`) and rebuild the
/// file from `cache get`; its SHA-256 must be the leecher's.
fn rebuild_from_cache(name: &str, with_torrent: bool) {
    let t = truth(name);
    let cache = tempfile::tempdir().unwrap();
    let meta = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_peercache");
    let mut cmd = Command::new(bin);
    cmd.args(["replay", "--no-progress", "--cache-dir"])
        .arg(cache.path());
    if with_torrent {
        std::fs::copy(
            repo().join(format!("pcaps/{name}.torrent")),
            meta.path().join("t.torrent"),
        )
        .unwrap();
        cmd.arg("--metainfo").arg(meta.path());
    }
    let st = cmd
        .arg(repo().join(format!("pcaps/{name}.pcap")))
        .output()
        .unwrap();
    assert!(st.status.success(), "{name}");
    let ih = t["info_hash"].as_str().unwrap();
    let mut file = Vec::new();
    for i in 0..t["num_pieces"].as_u64().unwrap() {
        let o = Command::new(bin)
            .args(["cache", "get", "--cache-dir"])
            .arg(cache.path())
            .args([ih, &i.to_string()])
            .output()
            .unwrap();
        assert!(o.status.success(), "{name}: piece {i}");
        file.extend_from_slice(&o.stdout);
    }
    assert_eq!(
        peercache::wire::infohash::hex(&sha2::Sha256::digest(&file)),
        t["sha256"].as_str().unwrap(),
        "{name}"
    );
}

#[test]
fn utp_captures_rebuild_their_files_from_the_cache() {
    rebuild_from_cache("lab-utp-plain", true);
    // Magnet over uTP: the metadata comes off the wire, no .torrent given.
    rebuild_from_cache("lab-utp-magnet", false);
}

#[test]
fn public_utp_captures() {
    if !have_public() {
        return;
    }
    // 360BitScoping: a magnet-style fetch over uTP; the 175-byte metadata hashes to the
    // info-hash and both pieces (19,456 bytes) verify.
    let r = run(&public("360bitscoping__small_torrent.pcap"));
    let s = swarm(&r, "dbfc0ce745b4c9fb92003323d67ec3987148218c");
    assert_eq!(s.metainfo, "wire");
    assert_eq!(s.metadata_size, Some(175));
    assert_eq!((s.piece_messages, s.piece_bytes), (2, 19_456));
    assert_eq!(
        (s.pieces, s.pieces_verified, s.pieces_failed),
        (Some(2), 2, 0)
    );
    // nDPI's libtorrent <-> uTorrent transfer, both versions of the file: 2 PIECE, 32 KiB.
    for f in [
        "ndpi__bittorrent_utp.pcap",
        "ndpi__bittorrent_utp_oldversion.pcap",
    ] {
        let r = run(&public(f));
        let s = r
            .swarms
            .iter()
            .find(|s| s.info_hash.starts_with("0ca4c8e7"))
            .expect(f);
        assert_eq!((s.piece_messages, s.piece_bytes), (2, 32_768), "{f}");
        assert_eq!(r.bittorrent.utp_connections, 1, "{f}");
    }
    // uTP over IPv6, picked up mid-stream, one direction per flow.
    let r = run(&public("ndpi__lru_ipv6_caches.pcapng"));
    assert_eq!(
        (
            r.utp.flows,
            r.bittorrent.utp_connections,
            r.bittorrent.midstream_connections
        ),
        (2, 2, 2)
    );
}

#[test]
fn dht_dns_lsd_are_never_utp() {
    if !have_public() {
        return;
    }
    for f in [
        "incc__torrent-dht.pcap",
        "suricata-verify__bittorrent-dht.pcap",
        "arkime__bt-udp.pcap",
        "arkime__ip-boundaries_dht.pcap",
        "ndpi__bt-dns.pcap",
        "ndpi__bt_search.pcap",
        "ndpi__targusdataspeed_false_positives.pcap",
    ] {
        let r = run(&public(f));
        assert_eq!((r.utp.flows, r.bittorrent.utp_connections), (0, 0), "{f}");
    }
    // vut-pds has 500 DHT messages, UDP tracker and LSD traffic, and no uTP at all.
    let r = run(&public("vut-pds-terezaburianova__small.pcap"));
    assert_eq!(r.utp.flows, 0);
}
