//! Every capture in ../shared/pcaps-public replays without a panic, with counts consistent
//! with SOURCES.md (and its _analysis ground truth) and never below what tshark decodes.

mod common;

use common::*;
use peercache::config::Config;
use peercache::report::Report;

fn public_files() -> Vec<std::path::PathBuf> {
    let dir = repo().join("../shared/pcaps-public");
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("pcap" | "pcapng" | "cap")
                )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn whole_corpus_replays_and_never_undercounts_tshark() {
    if !have_public() {
        return;
    }
    let files = public_files();
    // SOURCES.md lists 30 captures (29 pcap/pcapng and one NetMon .cap), each with its hash.
    assert_eq!(files.len(), 30, "corpus incomplete or changed: {files:?}");
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let out = run_with(std::slice::from_ref(f), &Config::default(), 1);
        if name.ends_with(".cap") {
            // NetMon 2.x, not pcap: a one-line error naming the file.
            assert_eq!(out.errors.len(), 1, "{name}");
            assert!(out.errors[0].contains(&name), "{}", out.errors[0]);
            continue;
        }
        assert!(out.errors.is_empty(), "{name}: {:?}", out.errors);
        let r = &out.report;
        assert!(r.frames > 0, "{name}");
        let ts = tshark_msg_types(f, &[]);
        let t = |id| ts.get(&id).copied().unwrap_or(0);
        assert!(
            total(r, |s| s.piece_messages) >= t(7),
            "{name}: PIECE ours {} < tshark {}",
            total(r, |s| s.piece_messages),
            t(7)
        );
        assert!(
            total(r, |s| s.request_messages) >= t(6),
            "{name}: REQUEST ours < tshark {}",
            t(6)
        );
        assert!(
            total(r, |s| s.messages.get("have").copied().unwrap_or(0)) >= t(4),
            "{name}: HAVE"
        );
    }
}

fn one(name: &str) -> Report {
    run(&public(name))
}

#[test]
fn complete_transfers_match_their_torrents() {
    if !have_public() {
        return;
    }
    // _analysis/piece_sha1_verification.txt: total bytes and block counts of whole files.
    for (file, ih, blocks, bytes) in [
        (
            "bittorrentreconstituter__lookaway.pcap",
            "4aa10386e70174864eaeaa54237d37f93e18458f",
            119,
            1_945_472,
        ),
        (
            "bittorrentreconstituter__mippo.pcap",
            "a060d2981790dacb715ac99ed7cbd2dfc1df47d8",
            3,
            47_104,
        ),
        (
            "bittorrentreconstituter__test.txt.pcap",
            "2a72ac0b7b1e62e0d4f6ac9ec997138e1d636bcd",
            1,
            58,
        ),
    ] {
        let r = one(file);
        let s = r
            .swarms
            .iter()
            .find(|s| s.info_hash.starts_with(&ih[..8]))
            .unwrap_or_else(|| panic!("{file}"));
        assert_eq!(
            (s.piece_messages, s.piece_bytes, s.distinct_blocks),
            (blocks, bytes, blocks),
            "{file}"
        );
        assert_eq!(r.reassembly.gaps, 0, "{file}");
        assert_eq!(r.bittorrent.tcp_connections, 1, "{file}");
    }
}

#[test]
fn gapped_captures_resync_and_count_their_gaps() {
    if !have_public() {
        return;
    }
    // SOURCES.md: codemonkey2 has 3 TCP gaps, codemonkey 39, codemonkey_and_testtxt 40;
    // Wireshark decodes 190, 38 and 65 PIECE messages. A resyncing parser finds more.
    for (file, gaps, wireshark_pieces) in [
        ("bittorrentreconstituter__codemonkey2.pcap", 3, 190),
        ("bittorrentreconstituter__codemonkey.pcap", 39, 38),
        (
            "bittorrentreconstituter__codemonkey_and_testtxt.pcap",
            40,
            65,
        ),
    ] {
        let r = one(file);
        assert_eq!(r.reassembly.gaps, gaps, "{file}");
        assert!(r.peerwire.resyncs >= 1, "{file}");
        let pieces = total(&r, |s| s.piece_messages);
        assert!(pieces > wireshark_pieces, "{file}: {pieces}");
    }
    let r = one("bittorrentreconstituter__codemonkey_and_testtxt.pcap");
    assert_eq!(r.swarms.len(), 2);
    assert_eq!(
        swarm(&r, "2a72ac0b7b1e62e0d4f6ac9ec997138e1d636bcd").piece_bytes,
        58
    );
}

#[test]
fn modern_qbittorrent_capture() {
    if !have_public() {
        return;
    }
    let r = one("vut-pds-terezaburianova__small.pcap");
    assert_eq!(r.peerwire.handshakes, 13); // "13 directions"
    assert_eq!(r.swarms.len(), 2);
    let s = r
        .swarms
        .iter()
        .find(|s| s.info_hash.starts_with("13fe7880"))
        .unwrap();
    assert_eq!((s.piece_messages, s.piece_bytes), (29, 462_887));
    assert_eq!(s.messages.get("allowed_fast"), Some(&5), "fast extension");
    // Gap-free, clean handshakes: every message type exactly as often as tshark decodes it
    // (5 allowed_fast among them), summed over both swarms.
    let f = public("vut-pds-terezaburianova__small.pcap");
    for (id, n) in tshark_msg_types(&f, &[]) {
        let key = peercache::wire::peerwire::Kind::from_id(id as u8)
            .map(|k| k.as_str())
            .unwrap();
        assert_eq!(
            total(&r, |s| s.messages.get(key).copied().unwrap_or(0)),
            n,
            "{key}"
        );
    }
    assert!(r.swarms.iter().any(|s| s.info_hash.starts_with("8c271f4d")));
    assert_eq!(r.reassembly.gaps, 0);
}

#[test]
fn encrypted_detection() {
    if !have_public() {
        return;
    }
    // 84 TCP flows MSE-like and 12 plaintext handshake directions (Transmission).
    let r = one("ndpi__bittorrent_transmission.pcapng");
    assert_eq!(r.bittorrent.encrypted_tcp_connections, 84);
    // Almost all of its uTP flows are MSE-like too (SOURCES: 308 of 309 data directions).
    assert!(
        r.bittorrent.encrypted_utp_connections > 100,
        "{:?}",
        r.bittorrent
    );
    // ...and the one that is not, is plain BitTorrent over uTP.
    assert_eq!(r.bittorrent.utp_connections, 1);
    // 12 plaintext handshake directions over TCP (SOURCES) plus the plain uTP one.
    assert_eq!(r.peerwire.handshakes, 13);
    assert_eq!(
        swarm(&r, "aa3769c4530dde06241873dad43ab5ccec2ce622").connections,
        13
    );
    // MSE handshake, then crypto_select plaintext: counted encrypted, and the 6 PIECE
    // headers present in the raw bytes are found (Wireshark decodes 5).
    let r = one("ndpi__bittorrent_tcp_miss.pcapng");
    assert_eq!(r.bittorrent.encrypted_connections, 1);
    assert_eq!(r.bittorrent.encrypted_then_plain, 1);
    assert_eq!(total(&r, |s| s.piece_messages), 6);
    assert!(r.swarms.iter().any(|s| s.info_hash.starts_with("0f6b9cd2")));
    // Fully encrypted mid-stream: nothing plausible, nothing claimed.
    let r = one("ndpi__bittorrent_ip.pcap");
    assert_eq!(
        (
            r.bittorrent.tcp_connections,
            r.swarms.len(),
            total(&r, |s| s.piece_messages)
        ),
        (0, 0, 0)
    );
    // One MSE-like TCP flow among 7 plaintext TCP handshakes; over uTP, Wireshark decodes
    // 9 more handshake directions (16 in all), we find 8 (15 in all).
    let r = one("360bitscoping__small_torrent.pcap");
    assert_eq!(r.bittorrent.encrypted_tcp_connections, 1);
    assert!(r.bittorrent.encrypted_utp_connections >= 1);
    assert_eq!(r.peerwire.handshakes, 15);
    // High-entropy plaintext media inside PIECE messages is not "encrypted": lookaway's
    // only BitTorrent connection stays plain.
    let r = one("bittorrentreconstituter__lookaway.pcap");
    assert_eq!(r.bittorrent.encrypted_connections, 0);
    // SOURCES: 4 TCP handshake directions and 30 plaintext uTP directions; 2 TCP and 56 uTP
    // MSE-like (a cruder heuristic than ours).
    let r = one("bittorrentdetector__small_bit_torrent.pcap");
    assert_eq!(r.peerwire.handshakes, 4 + 30);
    assert!(r.bittorrent.encrypted_tcp_connections >= 2);
    // Mid-stream plaintext uTP: at least 63 PIECE messages (~1.03 MB) with unknown info-hash.
    assert!(
        r.unattributed.piece_messages >= 63,
        "{}",
        r.unattributed.piece_messages
    );
    assert!(r.bittorrent.midstream_connections > 0);
}

#[test]
fn negatives_yield_no_bittorrent() {
    if !have_public() {
        return;
    }
    for f in [
        "ndpi__tls_torrent.pcapng",
        "ndpi__bt-dns.pcap",
        "ndpi__bt_search.pcap",
        "incc__torrent-dht.pcap",
        "suricata-verify__bittorrent-dht.pcap",
        "arkime__bt-udp.pcap",
        "arkime__ip-boundaries_dht.pcap",
        "ndpi__targusdataspeed_false_positives.pcap",
        "zeek__bittorrent_tracker.pcap",
        "ndpi__bt-http.pcapng",
    ] {
        let r = one(f);
        assert_eq!(
            r.bittorrent.tcp_connections + r.bittorrent.encrypted_connections,
            0,
            "{f}"
        );
        assert!(r.swarms.is_empty(), "{f}");
    }
}

#[test]
fn vlan_tagged_handshake_and_many_short_flows() {
    if !have_public() {
        return;
    }
    let r = one("arkime__bt-tcp.pcap");
    assert_eq!(
        swarm(&r, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa").connections,
        1
    );
    let r = one("ndpi__bittorrent.pcap");
    assert_eq!(r.peerwire.handshakes, 41);
    let s = swarm(&r, "dcfcdccfb9e670ccc3dd40c78c161f2bea243126");
    assert_eq!(s.request_messages, 71);
    assert_eq!(s.messages["port"], 21);
    // The PIECE headers Wireshark cannot reach behind 77 lost segments: 40 in the raw bytes.
    assert_eq!(s.piece_messages, 40);
    let r = one("wiresharkwiki__BITTORRENT.pcap");
    assert_eq!(total(&r, |s| s.request_messages), 48);
}
