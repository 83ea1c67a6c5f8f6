//! Generated captures with known impairments: the engine must report exactly what the
//! generator's truth says — counts derived from the construction (what was dropped,
//! duplicated, reordered, altered), and the SHA-1 of every delivered byte stream. Poisoned
//! swarms (`--poison`): every piece verifies, exactly the hostile peers are proven bad for
//! exactly their copies, the hash failures are the ones the copies' order implies, and the
//! cache, read back with `peercache cache get`, holds the original content byte for byte.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use clap::ValueEnum;
use common::*;
use peercache::config::Config;
use peercache::engine::Engine;
use peercache::report::Report;
use peercache::synth::{self, BadCopies, Poison, SynthArgs, Truth};
use peercache::wire::link::LinkType;
use serde_json::Value;

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

/// A poisoned capture of `scenario`: by default 4 pieces of 4 blocks and a fifth of two
/// (the last one short), so one-block and partial-block cases come up too.
fn poisoned(scenario: Poison, f: impl FnOnce(&mut SynthArgs)) -> SynthArgs {
    args(|a| {
        a.poison = Some(scenario);
        a.size = synth::ByteSize(4 * 65536 + 20000);
        f(a);
    })
}

/// `peercache replay --json` of `pcap` into the cache `cache`, with the .torrent files of
/// `torrents`: the JSON as an operator sees it.
fn replay_cli(pcap: &Path, cache: &Path, torrents: &Path) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_peercache"))
        .args(["replay", "--json", "--cache-dir"])
        .arg(cache)
        .arg("--metainfo")
        .arg(torrents)
        .arg(pcap)
        .output()
        .expect("run peercache replay");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("report JSON")
}

/// Piece `index` of `info_hash` from `peercache cache get`.
fn cache_get(cache: &Path, info_hash: &str, index: u32) -> Vec<u8> {
    let out = Command::new(env!("CARGO_BIN_EXE_peercache"))
        .args(["cache", "get", "--cache-dir"])
        .arg(cache)
        .args([info_hash, &index.to_string()])
        .output()
        .expect("run peercache cache get");
    assert!(out.status.success(), "piece {index} not in the cache");
    out.stdout
}

fn count(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// Generates `a` (a `--poison` run) to a file, replays it with a cache and the .torrent,
/// and holds the report and the cache to the truth; the capture's counts and streams are
/// checked in-process as for every other scenario.
fn check_poisoned(name: &str, a: &SynthArgs) {
    let dir = tempfile::tempdir().unwrap();
    let torrents = dir.path().join("torrents");
    std::fs::create_dir_all(&torrents).unwrap();
    let a = SynthArgs {
        output: dir.path().join("p.pcap"),
        torrent_out: Some(torrents.join("p.torrent")),
        ..a.clone()
    };
    let truth = synth::run(&a).expect("synth");
    let p = truth
        .poison
        .as_ref()
        .expect("a --poison run has poison truth");
    let torrent = synth::torrent_for(&a).unwrap();
    let pieces = u64::from(truth.pieces);
    // Each flow's honest seeder sends every piece: all of them verify.
    assert_eq!(p.pieces_verified, pieces, "{name}: truth");
    let hostile: BTreeSet<String> = p.hostile.iter().map(|h| h.address.clone()).collect();
    assert_eq!(
        hostile.len(),
        usize::from(p.scenario.hostile_peers()),
        "{name}"
    );
    // Every scenario has each hostile peer send at least one block of every piece: each
    // is named, and nobody else.
    assert_eq!(
        p.proven_bad_peers.keys().cloned().collect::<BTreeSet<_>>(),
        hostile,
        "{name}: truth names the hostile peers"
    );
    // Independently of the truth's own accounting: no peer sends a block twice except
    // the honest seeder's second copy of every block in `refetch`, so the hostile copies
    // are the PIECE messages beyond the honest ones (every block of the torrent per flow,
    // once or, in `refetch`, twice less the blocks the hostile peer sent first).
    let flows = u64::from(a.flows);
    let blocks: u64 = (0..truth.pieces)
        .map(|i| u64::from(torrent.piece_len(i).div_ceil(synth::BLOCK_LEN)))
        .sum();
    let bad_blocks: u64 = p.proven_bad_peers.values().map(|b| b.blocks).sum();
    let bad_bytes: u64 = p.proven_bad_peers.values().map(|b| b.bytes).sum();
    if p.scenario == Poison::Refetch {
        assert_eq!(truth.piece_messages, 2 * flows * blocks, "{name}");
    } else {
        assert_eq!(bad_blocks, truth.piece_messages - flows * blocks, "{name}");
        assert_eq!(
            bad_bytes,
            truth.piece_bytes - flows * truth.total_length,
            "{name}"
        );
    }

    // The capture itself: connections, messages, delivered streams.
    let (t, r) = replay_generated(&a);
    assert_eq!(t, truth, "{name}: generation is deterministic");
    check(name, &t, &r, false);

    // The replay an operator runs, with a cache.
    let cache = dir.path().join("cache");
    let r = replay_cli(&a.output, &cache, &torrents);
    let s = swarm_json(&r, truth.info_hash.as_str())
        .unwrap_or_else(|| panic!("{name}: swarm not in the report"));
    // (pieces_search_capped may be non-zero: swaps can spend the budget before an honest
    // peer's own set is complete; that set is tried all the same.)
    assert_eq!(
        (count(&s["pieces_verified"]), count(&s["pieces_cached"])),
        (pieces, pieces),
        "{name}: (verified, cached)"
    );
    assert_eq!(
        (count(&s["pieces_failed"]), count(&s["pieces_recovered"])),
        (p.pieces_failed, p.pieces_recovered),
        "{name}: (failed, recovered)"
    );
    let proven: BTreeMap<String, BadCopies> = s["proven_bad_peers"]
        .as_object()
        .expect("proven_bad_peers")
        .iter()
        .map(|(k, v)| {
            let b = BadCopies {
                blocks: count(&v["blocks"]),
                bytes: count(&v["bytes"]),
            };
            (k.clone(), b)
        })
        .collect();
    assert_eq!(proven, p.proven_bad_peers, "{name}: proven-bad peers");
    for h in &p.honest {
        assert!(!proven.contains_key(h), "{name}: honest {h} proven bad");
    }
    assert_eq!(
        (
            count(&s["proven_bad_blocks"]),
            count(&s["proven_bad_bytes"])
        ),
        (bad_blocks, bad_bytes),
        "{name}: proven-bad totals"
    );
    let failed: BTreeMap<String, u64> = s["failed_by_peer"]
        .as_object()
        .expect("failed_by_peer")
        .iter()
        .map(|(k, v)| (k.clone(), count(v)))
        .collect();
    assert_eq!(failed, p.failed_by_peer, "{name}: failed_by_peer");

    // Not one hostile byte in the cache: every piece is the generated content.
    for i in 0..truth.pieces {
        let offset = u64::from(i) * u64::from(truth.piece_length);
        let want = synth::content_byte_range(a.seed, 0, offset, torrent.piece_len(i) as usize);
        assert!(
            cache_get(&cache, &truth.info_hash, i) == want,
            "{name}: piece {i} in the cache is not the content"
        );
    }
}

#[test]
fn poisoned_swarms_over_tcp() {
    for &scenario in Poison::value_variants() {
        for seed in [1, 2] {
            let a = poisoned(scenario, |a| a.seed = seed);
            check_poisoned(&format!("{scenario:?} seed {seed}"), &a);
        }
    }
}

#[test]
fn poisoned_swarms_over_utp() {
    for &scenario in Poison::value_variants() {
        let a = poisoned(scenario, |a| {
            a.utp = true;
            a.seed = 3;
        });
        check_poisoned(&format!("utp {scenario:?}"), &a);
    }
}

/// Three leechers, each with its honest seeder and its connections to the hostile peers:
/// the second and third leechers' copies of a piece all come after it verified (only the
/// hostile ones are blamed, as they arrive); over IPv6, one run over uTP.
#[test]
fn poisoned_swarm_with_several_leechers() {
    for (scenario, utp) in [
        (Poison::Before, false),
        (Poison::Different, false),
        (Poison::Refetch, true),
    ] {
        let a = poisoned(scenario, |a| {
            a.flows = 3;
            a.ipv6 = true;
            a.utp = utp;
            a.seed = 4;
        });
        check_poisoned(&format!("3 leechers {scenario:?} utp {utp}"), &a);
    }
}

/// Pieces of 16 blocks (256 KiB): the search of a piece whose hostile copies cover it before
/// the honest seeder's set is complete may spend swarms.max_hash_attempts_per_piece (64) on
/// one-block swaps first; the honest seeder's own complete set is tried whatever the budget
/// spent, so every piece verifies (issue 20, point 1).
#[test]
fn poisoned_pieces_of_sixteen_blocks() {
    for &scenario in Poison::value_variants() {
        for seed in [1, 2] {
            let a = poisoned(scenario, |a| {
                a.size = synth::ByteSize(1 << 20);
                a.piece_length = 1 << 18;
                a.seed = seed;
            });
            check_poisoned(&format!("16 blocks {scenario:?} seed {seed}"), &a);
        }
    }
}
