//! Generated captures with known impairments: the engine must report exactly what the
//! generator's truth says — counts derived from the construction (what was dropped,
//! duplicated, reordered, altered), and the SHA-1 of every delivered byte stream.

mod common;

use common::*;
use peercache::config::Config;
use peercache::engine::Engine;
use peercache::report::Report;
use peercache::synth::{self, SynthArgs, Truth};
use peercache::wire::link::LinkType;

fn args(f: impl FnOnce(&mut SynthArgs)) -> SynthArgs {
    let mut a = SynthArgs {
        size: synth::ByteSize(256 * 1024),
        ..Default::default()
    };
    f(&mut a);
    a
}

/// Generate straight into the engine (no file).
fn replay_generated(a: &SynthArgs) -> (Truth, Report) {
    let cfg = Config {
        record_streams: true,
        ..Default::default()
    };
    let mut e = Engine::new(cfg);
    let truth = synth::generate(a, &mut |f| {
        let len = f.data.len() as u32;
        e.handle(f.ts_micros, LinkType::Ethernet, f.data, len);
        Ok(())
    })
    .expect("generate");
    let stats = e.finish();
    (truth, Report::new(&stats, Vec::new()))
}

fn check(name: &str, truth: &Truth, r: &Report, midstream: bool) {
    check_with(name, truth, r, midstream, 0);
}

/// `mse`: sessions opened with MSE/PE then plaintext (counted apart from plain BitTorrent).
fn check_with(name: &str, truth: &Truth, r: &Report, midstream: bool, mse: u64) {
    if let Some(u) = &truth.utp {
        assert_eq!(
            (r.flows.tcp, r.utp.flows),
            (0, truth.flows as u64),
            "{name}: utp flows"
        );
        assert_eq!(
            r.bittorrent.utp_connections, truth.flows as u64,
            "{name}: bt connections"
        );
        let x = &r.utp;
        // A lost packet's length is not on the wire: gaps are counted in packets.
        assert_eq!(
            (
                x.packets,
                x.data_packets,
                x.out_of_order,
                x.duplicates,
                x.conflicting,
                x.gaps,
                x.gap_packets
            ),
            (
                u.packets,
                u.data_packets,
                u.out_of_order,
                u.duplicates,
                u.conflicting,
                u.gaps,
                u.gap_packets
            ),
            "{name}: utp (packets, data, out_of_order, duplicates, conflicting, gaps, gap_packets)"
        );
    } else {
        assert_eq!(r.flows.tcp, truth.flows as u64, "{name}: tcp flows");
        let b = &r.bittorrent;
        assert_eq!(
            (
                b.tcp_connections,
                b.encrypted_tcp_connections,
                b.encrypted_then_plain
            ),
            (truth.flows as u64 - mse, mse, mse),
            "{name}: bt connections (plain, encrypted, encrypted then plain)"
        );
    }
    let x = &r.reassembly;
    let t = &truth.reassembly;
    assert_eq!(
        (
            x.gaps,
            x.gap_bytes,
            x.overlaps,
            x.conflicting_overlaps,
            x.out_of_order
        ),
        (
            t.gaps,
            t.gap_bytes,
            t.overlaps,
            t.conflicting_overlaps,
            t.out_of_order
        ),
        "{name}: reassembly (gaps, gap_bytes, overlaps, conflicting, out_of_order)"
    );
    let s = if midstream {
        assert_eq!(
            r.bittorrent.midstream_connections, truth.flows as u64,
            "{name}"
        );
        &r.unattributed
    } else {
        assert_eq!(r.swarms.len(), 1, "{name}");
        swarm(r, &truth.info_hash)
    };
    assert_eq!(
        (
            s.piece_messages,
            s.piece_bytes,
            s.request_messages,
            s.distinct_blocks
        ),
        (
            truth.piece_messages,
            truth.piece_bytes,
            truth.request_messages,
            truth.distinct_blocks
        ),
        "{name}: (pieces, piece bytes, requests, distinct blocks)"
    );
    for (k, v) in &truth.messages {
        assert_eq!(
            s.messages.get(k.as_str()).copied().unwrap_or(0),
            *v,
            "{name}: {k} messages"
        );
    }
    let mut want = truth.streams.clone();
    let mut got = r.streams.clone();
    want.sort_by(|a, b| (&a.client, &a.server).cmp(&(&b.client, &b.server)));
    got.sort_by(|a, b| (&a.client, &a.server).cmp(&(&b.client, &b.server)));
    assert_eq!(got, want, "{name}: delivered streams");
}

#[test]
fn clean_session_with_sequence_wrap() {
    let a = args(|_| {});
    let (t, r) = replay_generated(&a);
    assert_eq!(t.piece_messages, 16);
    check("clean", &t, &r, false);
}

#[test]
fn every_impairment_alone_and_together() {
    let cases: Vec<(&str, SynthArgs)> = vec![
        ("reorder", args(|a| a.reorder = 3)),
        ("duplicate", args(|a| a.duplicate = 3)),
        ("loss", args(|a| a.loss = 3)),
        ("conflict", args(|a| a.conflict = 2)),
        ("overlap-conflict", args(|a| a.overlap_conflict = 2)),
        (
            "all",
            args(|a| {
                a.flows = 2;
                a.reorder = 2;
                a.duplicate = 2;
                a.loss = 2;
                a.conflict = 1;
                a.overlap_conflict = 1;
            }),
        ),
        (
            "one-byte",
            args(|a| {
                a.one_byte = true;
                a.size = synth::ByteSize(32 * 1024);
            }),
        ),
        ("magnet", args(|a| a.magnet = true)),
        ("vlan", args(|a| a.vlan = Some(300))),
        (
            "qinq",
            args(|a| {
                a.vlan = Some(300);
                a.qinq = Some(20);
            }),
        ),
        (
            "ipv6",
            args(|a| {
                a.ipv6 = true;
                a.loss = 1;
                a.reorder = 1;
            }),
        ),
        (
            "many-flows",
            args(|a| {
                a.flows = 40;
                a.size = synth::ByteSize(1 << 20);
                a.seed = 9;
            }),
        ),
    ];
    for (name, a) in cases {
        let (t, r) = replay_generated(&a);
        check(name, &t, &r, false);
    }
}

#[test]
fn utp_sessions_and_impairments() {
    let cases: Vec<(&str, SynthArgs)> = vec![
        ("utp clean", args(|a| a.utp = true)),
        (
            "utp reorder",
            args(|a| {
                a.utp = true;
                a.reorder = 3;
            }),
        ),
        (
            "utp duplicate",
            args(|a| {
                a.utp = true;
                a.duplicate = 3;
            }),
        ),
        (
            "utp loss",
            args(|a| {
                a.utp = true;
                a.loss = 3;
            }),
        ),
        (
            "utp conflict",
            args(|a| {
                a.utp = true;
                a.conflict = 2;
            }),
        ),
        (
            "utp all",
            args(|a| {
                a.utp = true;
                a.flows = 2;
                a.reorder = 2;
                a.duplicate = 2;
                a.loss = 2;
                a.conflict = 1;
            }),
        ),
        (
            "utp ipv6 qinq",
            args(|a| {
                a.utp = true;
                a.ipv6 = true;
                a.vlan = Some(10);
                a.qinq = Some(20);
            }),
        ),
        (
            "utp magnet",
            args(|a| {
                a.utp = true;
                a.magnet = true;
            }),
        ),
        (
            "utp one-byte",
            args(|a| {
                a.utp = true;
                a.one_byte = true;
                a.size = synth::ByteSize(32 * 1024);
            }),
        ),
        (
            "utp many flows",
            args(|a| {
                a.utp = true;
                a.flows = 20;
                a.seed = 5;
            }),
        ),
    ];
    for (name, a) in cases {
        let (t, r) = replay_generated(&a);
        check(name, &t, &r, false);
    }
}

#[test]
fn utp_midstream_pickup() {
    for seed in 1..4 {
        let a = args(|a| {
            a.utp = true;
            a.midstream = true;
            a.flows = 2;
            a.seed = seed;
        });
        let (t, r) = replay_generated(&a);
        check(&format!("utp midstream seed {seed}"), &t, &r, true);
    }
}

#[test]
fn midstream_pickup_resyncs() {
    for seed in 1..4 {
        let a = args(|a| {
            a.midstream = true;
            a.flows = 2;
            a.seed = seed;
        });
        let (t, r) = replay_generated(&a);
        check(&format!("midstream seed {seed}"), &t, &r, true);
    }
}

#[test]
fn magnet_extended_ids_follow_the_receiver() {
    let a = args(|a| a.magnet = true);
    let (t, r) = replay_generated(&a);
    let s = swarm(&r, &t.info_hash);
    // Requests go out under the seeder's id (2), data under the leecher's (3): read right,
    // both are named ut_metadata. The leecher asks once for each 16 KiB metadata piece of
    // the info dictionary, and each is answered.
    let info = synth::torrent_for(&a).unwrap().info.len() as u64;
    let metadata_pieces = info.div_ceil(u64::from(synth::METADATA_PIECE));
    assert_eq!(
        (
            s.extended.get("ut_metadata_request").copied(),
            s.extended.get("ut_metadata_data").copied()
        ),
        (Some(metadata_pieces), Some(metadata_pieces)),
        "{:?}",
        s.extended
    );
    assert!(
        !s.extended.contains_key("other") && !s.extended.contains_key("unknown_id"),
        "{:?}",
        s.extended
    );
}

#[test]
fn written_pcap_replays_like_the_generated_frames() {
    let dir = tempfile::tempdir().unwrap();
    let a = args(|a| {
        a.output = dir.path().join("s.pcap");
        a.truth_out = Some(dir.path().join("s.json"));
        a.vlan = Some(7);
        a.qinq = Some(100);
        a.loss = 1;
        a.duplicate = 1;
    });
    let t = synth::run(&a).unwrap();
    // Same seed, same bytes.
    let again = args(|b| {
        b.output = dir.path().join("t.pcap");
        b.vlan = Some(7);
        b.qinq = Some(100);
        b.loss = 1;
        b.duplicate = 1;
    });
    synth::run(&again).unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("s.pcap")).unwrap(),
        std::fs::read(dir.path().join("t.pcap")).unwrap()
    );
    let cfg = Config {
        record_streams: true,
        ..Default::default()
    };
    let out = run_with(std::slice::from_ref(&a.output), &cfg, 1);
    assert!(out.errors.is_empty());
    check("pcap file", &t, &out.report, false);
    let written: Truth =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("s.json")).unwrap()).unwrap();
    assert_eq!(written.info_hash, t.info_hash);
}

/// Sessions opened with MSE/PE that selected plaintext (the leecher's handshake encrypted
/// in IA) replay like plain ones: the same pieces verified, every message after the
/// exchange counted, the delivered streams (key exchange included) exact; the connections
/// are counted as encrypted, then plain.
#[test]
fn mse_then_plaintext_sessions_verify_like_plain_ones() {
    let with = |mse: u32, impair: bool| {
        args(|a| {
            a.magnet = true;
            a.flows = 3;
            a.mse_plaintext = mse;
            if impair {
                a.loss = 1;
                a.reorder = 1;
            }
        })
    };
    for impair in [false, true] {
        let (tp, rp) = replay_generated(&with(0, impair));
        let (tm, rm) = replay_generated(&with(2, impair));
        let name = format!("mse impair={impair}");
        check_with(&name, &tm, &rm, false, 2);
        // Two handshakes fewer seen: the leechers' travelled in IA.
        assert_eq!(
            tm.messages["handshake"] + 2,
            tp.messages["handshake"],
            "{name}"
        );
        let (sp, sm) = (swarm(&rp, &tp.info_hash), swarm(&rm, &tm.info_hash));
        assert_eq!(sm.pieces_verified, sp.pieces_verified, "{name}");
        assert_eq!(sm.pieces_verified, u64::from(tm.pieces), "{name}");
        assert_eq!(sm.pieces_failed, 0, "{name}");
    }
}
