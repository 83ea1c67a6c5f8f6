//! The same generated session under every link type we claim (Ethernet, Linux SLL and SLL2,
//! raw IP, BSD loopback), written as real pcap files through libpcap with those link types,
//! with its IPv4 datagrams fragmented, and with frames captured short: the engine must see
//! the same BitTorrent traffic every time, and count the short frames exactly.

mod common;

use std::path::Path;

use common::*;
use etherparse::{IpFragOffset, Ipv4Header};
use peercache::config::Config;
use peercache::report::Report;
use peercache::synth::{self, SynthArgs};

fn frames(a: &SynthArgs) -> (synth::Truth, Vec<(u64, Vec<u8>)>) {
    let mut v = Vec::new();
    let t = synth::generate(a, &mut |f| {
        v.push((f.ts_micros, f.data.to_vec()));
        Ok(())
    })
    .unwrap();
    (t, v)
}

/// Write frames as a pcap with link type `dlt`; `short` frames are cut to 60 bytes while
/// their header keeps the original length (caplen < len).
fn write_pcap(path: &Path, dlt: i32, frames: &[(u64, Vec<u8>)], short: impl Fn(usize) -> bool) {
    let dead = pcap::Capture::dead(pcap::Linktype(dlt)).unwrap();
    let mut save = dead.savefile(path).unwrap();
    for (i, (ts, data)) in frames.iter().enumerate() {
        let caplen = if short(i) {
            data.len().min(60)
        } else {
            data.len()
        };
        let h = pcap::PacketHeader {
            ts: libc::timeval {
                tv_sec: (ts / 1_000_000) as _,
                tv_usec: (ts % 1_000_000) as _,
            },
            caplen: caplen as u32,
            len: data.len() as u32,
        };
        save.write(&pcap::Packet {
            header: &h,
            data: &data[..caplen],
        });
    }
    save.flush().unwrap();
}

fn replay_one(path: &Path) -> Report {
    let out = run_with(&[path.to_owned()], &Config::default(), 1);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    out.report
}

fn same_traffic(name: &str, t: &synth::Truth, r: &Report) {
    let s = swarm(r, &t.info_hash);
    assert_eq!(
        (
            r.flows.tcp,
            s.piece_messages,
            s.piece_bytes,
            s.request_messages,
            r.reassembly.gaps
        ),
        (
            t.flows as u64,
            t.piece_messages,
            t.piece_bytes,
            t.request_messages,
            0
        ),
        "{name}"
    );
}

/// Rewrites an Ethernet frame into another link layer's framing.
type Reframe = Box<dyn Fn(&[u8]) -> Vec<u8>>;

fn ethertype(eth: &[u8]) -> [u8; 2] {
    [eth[12], eth[13]]
}

#[test]
fn every_link_type_sees_the_same_session() {
    let dir = tempfile::tempdir().unwrap();
    let a = SynthArgs {
        size: synth::ByteSize(128 * 1024),
        flows: 2,
        ..Default::default()
    };
    let (t, eth) = frames(&a);
    let cases: Vec<(&str, i32, Reframe)> = vec![
        ("ethernet", 1, Box::new(|f: &[u8]| f.to_vec())),
        // Raw IP: the IP packet alone (DLT_RAW is 12 on Linux; libpcap writes LINKTYPE_RAW).
        ("raw", 12, Box::new(|f: &[u8]| f[14..].to_vec())),
        // Linux cooked v1: type, ARPHRD, address length, 8 address bytes, protocol.
        (
            "sll",
            113,
            Box::new(|f: &[u8]| {
                let mut v = vec![0, 0, 0, 1, 0, 6];
                v.extend_from_slice(&f[6..12]);
                v.extend_from_slice(&[0, 0]);
                v.extend_from_slice(&ethertype(f));
                v.extend_from_slice(&f[14..]);
                v
            }),
        ),
        // Linux cooked v2: protocol, reserved, ifindex, ARPHRD, type, address length, address.
        (
            "sll2",
            276,
            Box::new(|f: &[u8]| {
                let mut v = ethertype(f).to_vec();
                v.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 1, 0, 6]);
                v.extend_from_slice(&f[6..12]);
                v.extend_from_slice(&[0, 0]);
                v.extend_from_slice(&f[14..]);
                v
            }),
        ),
        // BSD loopback: AF_INET in host byte order.
        (
            "null",
            0,
            Box::new(|f: &[u8]| {
                let mut v = 2u32.to_ne_bytes().to_vec();
                v.extend_from_slice(&f[14..]);
                v
            }),
        ),
    ];
    for (name, dlt, conv) in cases {
        let conv_frames: Vec<_> = eth.iter().map(|(ts, f)| (*ts, conv(f))).collect();
        let p = dir.path().join(format!("{name}.pcap"));
        write_pcap(&p, dlt, &conv_frames, |_| false);
        let r = replay_one(&p);
        assert_eq!(r.frames, eth.len() as u64, "{name}");
        assert!(r.decode_errors.is_empty(), "{name}: {:?}", r.decode_errors);
        same_traffic(name, &t, &r);
    }
}

#[test]
fn short_frames_are_counted_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let a = SynthArgs {
        size: synth::ByteSize(64 * 1024),
        ..Default::default()
    };
    let (_, eth) = frames(&a);
    let p = dir.path().join("short.pcap");
    // Every 7th frame longer than 60 bytes is captured short.
    let short = |i: usize| i % 7 == 3 && eth[i].1.len() > 60;
    let expected = (0..eth.len()).filter(|&i| short(i)).count() as u64;
    write_pcap(&p, 1, &eth, short);
    let r = replay_one(&p);
    assert_eq!(r.decode_errors.get("truncated").copied(), Some(expected));
    assert_eq!(r.frames, eth.len() as u64);
}

/// Split an Ethernet/IPv4 frame's datagram into fragments of at most `chunk` payload bytes.
fn fragment(frame: &[u8], chunk: usize) -> Vec<Vec<u8>> {
    let (h, rest) = Ipv4Header::from_slice(&frame[14..]).unwrap();
    let payload = &rest[..h.payload_len().unwrap() as usize];
    if payload.len() <= chunk {
        return vec![frame.to_vec()];
    }
    let mut out = Vec::new();
    for (i, part) in payload.chunks(chunk).enumerate() {
        let mut fh = h.clone();
        fh.dont_fragment = false;
        fh.more_fragments = (i + 1) * chunk < payload.len();
        fh.fragment_offset = IpFragOffset::try_new(((i * chunk) / 8) as u16).unwrap();
        fh.set_payload_len(part.len()).unwrap();
        fh.header_checksum = fh.calc_header_checksum();
        let mut f = frame[..14].to_vec();
        f.extend_from_slice(&fh.to_bytes());
        f.extend_from_slice(part);
        out.push(f);
    }
    out
}

#[test]
fn fragmented_ipv4_reassembles_to_the_same_session() {
    let dir = tempfile::tempdir().unwrap();
    let a = SynthArgs {
        size: synth::ByteSize(64 * 1024),
        ..Default::default()
    };
    let (t, eth) = frames(&a);
    let mut frags = Vec::new();
    let mut expected_reassembled = 0;
    for (i, (ts, f)) in eth.iter().enumerate() {
        let mut parts = fragment(f, 512);
        if parts.len() > 1 {
            expected_reassembled += 1;
            // Deliver every other datagram's fragments last-first: order must not matter.
            if i % 2 == 1 {
                parts.reverse();
            }
        }
        frags.extend(parts.into_iter().map(|p| (*ts, p)));
    }
    let p = dir.path().join("frag.pcap");
    write_pcap(&p, 1, &frags, |_| false);
    let r = replay_one(&p);
    assert!(expected_reassembled > 30);
    assert_eq!(r.ip_fragments.reassembled, expected_reassembled);
    assert_eq!(
        (
            r.ip_fragments.dropped_cap,
            r.ip_fragments.invalid,
            r.ip_fragments.timed_out
        ),
        (0, 0, 0)
    );
    same_traffic("fragmented", &t, &r);
}

#[test]
fn tiny_flow_table_evicts_and_counts() {
    let a = SynthArgs {
        size: synth::ByteSize(256 * 1024),
        flows: 12,
        seed: 3,
        ..Default::default()
    };
    let (_, eth) = frames(&a);
    let mut cfg = Config::default();
    cfg.flows.max_flows = 4;
    let mut e = peercache::engine::Engine::new(cfg);
    for (ts, f) in &eth {
        e.handle(
            *ts,
            peercache::wire::link::LinkType::Ethernet,
            f,
            f.len() as u32,
        );
    }
    let s = e.finish();
    assert!(s.flows.evicted > 0);
    // An evicted flow that comes back is a new flow; each of the 12 may be evicted for the
    // last time without coming back.
    let returned = s.flows.tcp - 12;
    assert!(
        returned <= s.flows.evicted && s.flows.evicted <= returned + 12,
        "{:?}",
        s.flows
    );
}
