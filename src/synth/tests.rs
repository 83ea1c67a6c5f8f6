//! Tests of the generator against independent test-only decoders: etherparse for frames, a
//! tiny peer-wire parser, a tiny bencode decoder, and a first-copy-wins reassembler.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};

use etherparse::{LinkExtSlice, NetSlice, SlicedPacket, TransportSlice};
use sha1::{Digest, Sha1};

use super::*;

fn args(f: impl FnOnce(&mut SynthArgs)) -> SynthArgs {
    let mut a = SynthArgs::default();
    f(&mut a);
    a
}

/// All frames of a run, with timestamps.
fn frames(a: &SynthArgs) -> (Vec<(u64, Vec<u8>)>, Truth) {
    let mut out = Vec::new();
    let truth = generate(a, &mut |f| {
        out.push((f.ts_micros, f.data.to_vec()));
        Ok(())
    })
    .expect("generate");
    (out, truth)
}

#[derive(Clone, Debug)]
struct Pkt {
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: Option<u32>,
    syn: bool,
    vlans: Vec<(u16, u16)>, // (tpid-ish marker: 0 = 802.1Q inner, 1 = outer), vlan id
    payload: Vec<u8>,
}

/// Decodes a frame with etherparse and checks every checksum.
fn decode(frame: &[u8]) -> Pkt {
    let p = SlicedPacket::from_ethernet(frame).expect("frame parses");
    let mut vlans = Vec::new();
    for (i, e) in p.link_exts.iter().enumerate() {
        if let LinkExtSlice::Vlan(v) = e {
            vlans.push((i as u16, v.vlan_identifier().value()));
        }
    }
    let Some(TransportSlice::Tcp(tcp)) = &p.transport else {
        panic!("not TCP")
    };
    let (src_ip, dst_ip): (IpAddr, IpAddr) = match &p.net {
        Some(NetSlice::Ipv4(ip)) => {
            let h = ip.header();
            assert_eq!(
                h.header_checksum(),
                h.to_header().calc_header_checksum(),
                "ipv4 checksum"
            );
            assert!(h.dont_fragment());
            let sum = tcp
                .calc_checksum_ipv4(h.source(), h.destination())
                .expect("len");
            assert_eq!(sum, tcp.checksum(), "tcp checksum");
            (h.source_addr().into(), h.destination_addr().into())
        }
        Some(NetSlice::Ipv6(ip)) => {
            let h = ip.header();
            let sum = tcp
                .calc_checksum_ipv6(h.source(), h.destination())
                .expect("len");
            assert_eq!(sum, tcp.checksum(), "tcp checksum");
            (h.source_addr().into(), h.destination_addr().into())
        }
        _ => panic!("not IP"),
    };
    Pkt {
        src: SocketAddr::new(src_ip, tcp.source_port()),
        dst: SocketAddr::new(dst_ip, tcp.destination_port()),
        seq: tcp.sequence_number(),
        ack: tcp.ack().then(|| tcp.acknowledgment_number()),
        syn: tcp.syn(),
        vlans,
        payload: tcp.payload().to_vec(),
    }
}

/// Direction key: (client, server, from_client).
fn dir_of(p: &Pkt) -> (SocketAddr, SocketAddr, bool) {
    if p.dst.port() == SEEDER_PORT {
        (p.src, p.dst, true)
    } else {
        (p.dst, p.src, false)
    }
}

#[derive(Default, Debug, Clone, PartialEq, Eq)]
struct Stats {
    gaps: u64,
    gap_bytes: u64,
    overlaps: u64,
    conflicting: u64,
    out_of_order: u64,
}

/// First-copy-wins reassembler with the Truth's definitions: a segment beyond the next
/// expected byte is out of order; a hole is skipped (a gap) when the peer's ACK passes it
/// while later data waits; a segment (partly) below the next expected byte is an overlap,
/// conflicting when its bytes differ.
#[derive(Default)]
struct Rx {
    base: Option<u32>,
    next: u64,
    buffered: BTreeMap<u64, Vec<u8>>,
    /// Bytes by stream offset (gaps zero-filled), for comparing overlaps.
    by_offset: Vec<u8>,
    delivered: Vec<u8>,
    stats: Stats,
}

impl Rx {
    fn off(&self, seq: u32) -> u64 {
        u64::from(seq.wrapping_sub(self.base.unwrap_or(seq)))
    }
    fn data(&mut self, seq: u32, bytes: &[u8]) {
        if self.base.is_none() {
            self.base = Some(seq); // midstream: the stream starts at the first byte seen
        }
        let off = self.off(seq);
        let end = off + bytes.len() as u64;
        if off > self.next {
            self.stats.out_of_order += 1;
            self.buffered.insert(off, bytes.to_vec());
            return;
        }
        if off < self.next {
            self.stats.overlaps += 1;
            let old_end = end.min(self.next);
            let old = &self.by_offset[off as usize..old_end as usize];
            if old != &bytes[..(old_end - off) as usize] {
                self.stats.conflicting += 1;
            }
        }
        if end > self.next {
            self.take(&bytes[(self.next - off) as usize..]);
        }
        self.drain();
    }
    fn drain(&mut self) {
        while let Some((&o, _)) = self.buffered.first_key_value() {
            if o > self.next {
                break;
            }
            let Some((o, b)) = self.buffered.pop_first() else {
                break;
            };
            let end = o + b.len() as u64;
            if end > self.next {
                self.take(&b[(self.next - o) as usize..]);
            }
        }
    }
    fn take(&mut self, new: &[u8]) {
        self.delivered.extend_from_slice(new);
        self.by_offset.extend_from_slice(new);
        self.next += new.len() as u64;
    }
    fn ack(&mut self, ack: u32) {
        let Some(_) = self.base else { return };
        let a = self.off(ack);
        if a > self.next && a < (1 << 31) {
            if let Some((&o, _)) = self.buffered.first_key_value() {
                if o > self.next && o <= a {
                    self.stats.gaps += 1;
                    self.stats.gap_bytes += o - self.next;
                    self.by_offset.resize(o as usize, 0);
                    self.next = o;
                    self.drain();
                }
            }
        }
    }
}

/// Reassembles every flow direction of a capture; ISNs come from SYNs when seen.
fn reassemble(frames: &[(u64, Vec<u8>)]) -> HashMap<(SocketAddr, SocketAddr, bool), Rx> {
    let mut rx: HashMap<(SocketAddr, SocketAddr, bool), Rx> = HashMap::new();
    for (_, f) in frames {
        let p = decode(f);
        let (c, s, from_client) = dir_of(&p);
        let key = (c, s, from_client);
        if p.syn {
            rx.entry(key).or_default().base = Some(p.seq.wrapping_add(1));
            continue;
        }
        if !p.payload.is_empty() {
            rx.entry(key).or_default().data(p.seq, &p.payload);
        }
        if let Some(a) = p.ack {
            rx.entry((c, s, !from_client)).or_default().ack(a);
        }
    }
    rx
}

/// Peer-wire messages of a whole stream: ("handshake" | type name, payload after the id).
fn parse_messages(mut s: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    if s.len() >= 68 && s[0] == 19 && &s[1..20] == b"BitTorrent protocol" {
        out.push(("handshake", s[20..68].to_vec()));
        s = &s[68..];
    }
    while s.len() >= 4 {
        let len = u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize;
        assert!(s.len() >= 4 + len, "truncated message");
        let name = if len == 0 {
            "keepalive"
        } else {
            match s[4] {
                0 => "choke",
                1 => "unchoke",
                2 => "interested",
                3 => "not_interested",
                4 => "have",
                5 => "bitfield",
                6 => "request",
                7 => "piece",
                8 => "cancel",
                9 => "port",
                0x0d => "suggest",
                0x0e => "have_all",
                0x0f => "have_none",
                0x10 => "reject",
                0x11 => "allowed_fast",
                20 => "extended",
                other => panic!("unknown id {other}"),
            }
        };
        out.push((name, s[4..4 + len].get(1..).unwrap_or(&[]).to_vec()));
        s = &s[4 + len..];
    }
    assert!(s.is_empty(), "trailing bytes");
    out
}

#[derive(Debug, PartialEq)]
enum B {
    I(i64),
    S(Vec<u8>),
    L(Vec<B>),
    D(Vec<(Vec<u8>, B)>),
}

/// Tiny bencode decoder; returns the value and the rest.
fn bdecode(s: &[u8]) -> (B, &[u8]) {
    match s[0] {
        b'i' => {
            let e = s.iter().position(|&c| c == b'e').expect("e");
            (
                B::I(
                    std::str::from_utf8(&s[1..e])
                        .expect("utf8")
                        .parse()
                        .expect("int"),
                ),
                &s[e + 1..],
            )
        }
        b'l' | b'd' => {
            let mut rest = &s[1..];
            let mut items = Vec::new();
            while rest[0] != b'e' {
                let (v, r) = bdecode(rest);
                items.push(v);
                rest = r;
            }
            if s[0] == b'l' {
                return (B::L(items), &rest[1..]);
            }
            let mut pairs = Vec::new();
            let mut it = items.into_iter();
            while let (Some(B::S(k)), Some(v)) = (it.next(), it.next()) {
                pairs.push((k, v));
            }
            let keys: Vec<_> = pairs.iter().map(|p| p.0.clone()).collect();
            let mut sorted = keys.clone();
            sorted.sort();
            assert_eq!(keys, sorted, "dict keys sorted");
            (B::D(pairs), &rest[1..])
        }
        _ => {
            let c = s.iter().position(|&c| c == b':').expect(":");
            let n: usize = std::str::from_utf8(&s[..c])
                .expect("utf8")
                .parse()
                .expect("len");
            (B::S(s[c + 1..c + 1 + n].to_vec()), &s[c + 1 + n..])
        }
    }
}

fn get<'a>(d: &'a B, key: &str) -> &'a B {
    let B::D(pairs) = d else { panic!("not a dict") };
    &pairs.iter().find(|p| p.0 == key.as_bytes()).expect(key).1
}

fn sha1_hex(b: &[u8]) -> String {
    hex(&Sha1::digest(b))
}

#[test]
fn deterministic_and_seed_dependent() {
    let a = args(|a| {
        a.flows = 2;
        a.loss = 1;
        a.reorder = 1;
    });
    let (f1, t1) = frames(&a);
    let (f2, t2) = frames(&a);
    assert_eq!(f1, f2);
    assert_eq!(t1, t2);
    let (f3, t3) = frames(&args(|x| {
        x.seed = 2;
        x.flows = 2;
        x.loss = 1;
        x.reorder = 1;
    }));
    assert_ne!(f1, f3);
    assert_ne!(t1.info_hash, t3.info_hash);
    // Timestamps come from the frame counter.
    for (i, (ts, _)) in f1.iter().enumerate() {
        assert_eq!(*ts, START_MICROS + i as u64 * STEP_MICROS);
    }
}

#[test]
fn run_writes_identical_pcaps_and_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mk = |name: &str| {
        args(|a| {
            a.size = ByteSize(100_000);
            a.flows = 2;
            a.output = dir.path().join(format!("{name}.pcap"));
            a.truth_out = Some(dir.path().join(format!("{name}.json")));
            a.torrent_out = Some(dir.path().join(format!("{name}.torrent")));
        })
    };
    let (a, b) = (mk("a"), mk("b"));
    let ta = run(&a).expect("run a");
    run(&b).expect("run b");
    let read = |p: &std::path::Path| std::fs::read(p).expect("read");
    let pa = read(&a.output);
    assert_eq!(pa, read(&b.output));
    assert_eq!(&pa[..4], &0xa1b2_c3d4u32.to_ne_bytes());
    // Read back through libpcap: same frames as the in-memory sink.
    let (mem, _) = frames(&a);
    let mut cap = pcap::Capture::from_file(&a.output).expect("open");
    assert_eq!(cap.get_datalink(), pcap::Linktype::ETHERNET);
    let mut n = 0;
    while let Ok(p) = cap.next_packet() {
        let (ts, data) = &mem[n];
        assert_eq!(p.data, &data[..]);
        let got = p.header.ts.tv_sec as u64 * 1_000_000 + p.header.ts.tv_usec as u64;
        assert_eq!(got, *ts);
        n += 1;
    }
    assert_eq!(n, mem.len());
    let json: Truth =
        serde_json::from_slice(&read(a.truth_out.as_ref().expect("t"))).expect("json");
    assert_eq!(json, ta);
    assert_eq!(
        read(a.torrent_out.as_ref().expect("t")),
        read(b.torrent_out.as_ref().expect("t"))
    );
}

#[test]
fn torrent_file_is_valid_and_matches_content() {
    let a = args(|a| {
        a.size = ByteSize(200_000);
        a.piece_length = 32768;
    });
    let t = torrent_for(&a).expect("torrent");
    let file = t.torrent_file();
    let (root, rest) = bdecode(&file);
    assert!(rest.is_empty());
    assert_eq!(
        get(&root, "announce"),
        &B::S(ANNOUNCE_URL.as_bytes().to_vec())
    );
    // The info dict inside the file is byte-identical to the hashed one.
    let at = file
        .windows(t.info.len())
        .position(|w| w == t.info.as_slice())
        .expect("info");
    assert_eq!(
        hex(&Sha1::digest(&file[at..at + t.info.len()])),
        hex(&t.info_hash)
    );
    let (info, _) = bdecode(&t.info);
    assert_eq!(get(&info, "length"), &B::I(200_000));
    assert_eq!(get(&info, "piece length"), &B::I(32768));
    let B::S(pieces) = get(&info, "pieces") else {
        panic!()
    };
    assert_eq!(pieces.len(), 20 * 7);
    let content = content_byte_range(a.seed, 0, 0, 200_000);
    for (i, chunk) in content.chunks(32768).enumerate() {
        assert_eq!(&pieces[20 * i..20 * i + 20], Sha1::digest(chunk).as_slice());
        assert_eq!(t.piece_hash(i as u32), Some(&pieces[20 * i..20 * i + 20]));
    }
    // Random access agrees with sequential generation.
    assert_eq!(
        content_byte_range(a.seed, 0, 12345, 999),
        content[12345..13344].to_vec()
    );
    assert_ne!(content_byte_range(a.seed, 1, 0, 64), content[..64].to_vec());
}

#[test]
fn frames_parse_with_valid_checksums_and_encapsulation() {
    let cases: Vec<(SynthArgs, Vec<u16>, bool)> = vec![
        (args(|a| a.size = ByteSize(40_000)), vec![], false),
        (
            args(|a| {
                a.size = ByteSize(40_000);
                a.ipv6 = true;
                a.flows = 2;
            }),
            vec![],
            true,
        ),
        (
            args(|a| {
                a.size = ByteSize(40_000);
                a.vlan = Some(100);
            }),
            vec![100],
            false,
        ),
        (
            args(|a| {
                a.size = ByteSize(40_000);
                a.vlan = Some(100);
                a.qinq = Some(3000);
                a.ipv6 = true;
            }),
            vec![3000, 100],
            true,
        ),
    ];
    for (a, vlans, v6) in cases {
        let (fs, truth) = frames(&a);
        for (_, f) in &fs {
            let p = decode(f);
            assert_eq!(p.vlans.iter().map(|v| v.1).collect::<Vec<_>>(), vlans);
            if vlans.len() == 2 {
                assert_eq!(&f[12..14], &[0x88, 0xa8]); // 802.1ad outer tag
                assert_eq!(&f[16..18], &[0x81, 0x00]);
            }
            let (c, s, _) = dir_of(&p);
            match (c.ip(), s.ip()) {
                (IpAddr::V4(c), IpAddr::V4(s)) => {
                    assert!(!v6);
                    assert_eq!(&c.octets()[..2], &[198, 18]);
                    assert_eq!(&s.octets()[..2], &[198, 19]);
                }
                (IpAddr::V6(c), IpAddr::V6(s)) => {
                    assert!(v6);
                    assert_eq!(&c.segments()[..3], &[0x2001, 2, 0]);
                    assert_eq!(&s.segments()[..3], &[0x2001, 2, 0]);
                }
                _ => panic!("mixed"),
            }
            assert!(c.port() >= LEECHER_BASE_PORT);
        }
        if v6 {
            assert!(truth.streams[0].client.starts_with("[2001:2:0:1::"));
        }
    }
}

#[test]
fn ipv4_ident_increments_per_sender() {
    let (fs, _) = frames(&args(|a| a.size = ByteSize(40_000)));
    let mut last: HashMap<IpAddr, u16> = HashMap::new();
    for (_, f) in &fs {
        let p = SlicedPacket::from_ethernet(f).expect("parse");
        let Some(NetSlice::Ipv4(ip)) = &p.net else {
            panic!()
        };
        let h = ip.header();
        if let Some(prev) = last.insert(h.source_addr().into(), h.identification()) {
            assert_eq!(h.identification(), prev.wrapping_add(1));
        }
    }
}

#[test]
fn sequence_numbers_wrap_in_flow_0() {
    let (fs, _) = frames(&args(|a| a.flows = 2));
    let mut wrapped = [false; 2];
    let mut prev: [Option<u32>; 2] = [None; 2];
    for (_, f) in &fs {
        let p = decode(f);
        if p.payload.is_empty()
            || p.src.port() == LEECHER_BASE_PORT + 1
            || p.dst.port() == LEECHER_BASE_PORT + 1
        {
            continue;
        }
        let d = usize::from(p.dst.port() == SEEDER_PORT);
        if let Some(q) = prev[d] {
            if p.seq < q {
                wrapped[d] = true;
            }
        }
        prev[d] = Some(p.seq);
    }
    assert_eq!(wrapped, [true, true], "[s2c, c2s] wrapped");
}

/// The plain exchange, parsed with the test-only peer-wire parser, is the full torrent.
fn check_clean_exchange(a: &SynthArgs) -> Truth {
    let (fs, truth) = frames(a);
    let t = torrent_for(a).expect("torrent");
    let rx = reassemble(&fs);
    assert_eq!(rx.len(), 2 * a.flows as usize);
    let mut counts: BTreeMap<String, u64> =
        MESSAGE_TYPES.iter().map(|k| (k.to_string(), 0)).collect();
    let mut piece_messages = 0;
    for st in &truth.streams {
        let key = |from_client| {
            (
                st.client.parse().expect("c"),
                st.server.parse().expect("s"),
                from_client,
            )
        };
        let c2s = &rx[&key(true)];
        let s2c = &rx[&key(false)];
        assert_eq!(c2s.stats, Stats::default());
        assert_eq!(s2c.stats, Stats::default());
        assert_eq!(
            (st.c2s_bytes, st.c2s_sha1.clone()),
            (c2s.delivered.len() as u64, sha1_hex(&c2s.delivered))
        );
        assert_eq!(
            (st.s2c_bytes, st.s2c_sha1.clone()),
            (s2c.delivered.len() as u64, sha1_hex(&s2c.delivered))
        );

        let msgs = parse_messages(&s2c.delivered);
        for (name, _) in parse_messages(&c2s.delivered).iter().chain(msgs.iter()) {
            *counts.get_mut(*name).expect("known type") += 1;
        }
        // Handshake: reserved bits and info-hash.
        assert_eq!(msgs[0].0, "handshake");
        assert_eq!(&msgs[0].1[..8], &[0, 0, 0, 0, 0, 0x10, 0, 0x04]);
        assert_eq!(hex(&msgs[0].1[8..28]), truth.info_hash);
        // Blocks in (index, begin) order are the content; each piece hashes as listed.
        let mut blocks: Vec<(u32, u32, Vec<u8>)> = msgs
            .iter()
            .filter(|m| m.0 == "piece")
            .map(|(_, p)| {
                let i = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
                let b = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
                (i, b, p[8..].to_vec())
            })
            .collect();
        piece_messages += blocks.len() as u64;
        blocks.sort_by_key(|b| (b.0, b.1));
        let content: Vec<u8> = blocks.iter().flat_map(|b| b.2.iter().copied()).collect();
        assert_eq!(content, content_byte_range(a.seed, 0, 0, a.size.0 as usize));
        for (i, piece) in content.chunks(a.piece_length as usize).enumerate() {
            assert_eq!(Some(Sha1::digest(piece).as_slice()), t.piece_hash(i as u32));
        }
        // Bitfield has all bits set and spare bits clear.
        if let Some((_, bf)) = msgs.iter().find(|m| m.0 == "bitfield") {
            let n = t.num_pieces as usize;
            for bit in 0..bf.len() * 8 {
                assert_eq!(bf[bit / 8] >> (7 - bit % 8) & 1 == 1, bit < n);
            }
        }
    }
    assert_eq!(piece_messages, truth.piece_messages);
    assert_eq!(counts, truth.messages);
    assert_eq!(truth.reassembly, ReassemblyTruth::default());
    truth
}

#[test]
fn clean_exchange_is_the_torrent() {
    let a = args(|a| {
        a.flows = 3;
        a.size = ByteSize(300_000); // not a multiple of the piece or block length
    });
    let truth = check_clean_exchange(&a);
    let blocks = 4 * 4 + 3; // 4 full pieces of 4 blocks, last piece 37856 bytes = 3 blocks
    assert_eq!(truth.piece_messages, 3 * blocks);
    assert_eq!(truth.distinct_blocks, blocks);
    assert_eq!(truth.request_messages, 3 * blocks);
    assert_eq!(truth.piece_bytes, 3 * 300_000);
    assert_eq!(truth.messages["have"], 3 * 5);
    assert_eq!(truth.messages["handshake"], 6);
    assert_eq!(truth.messages["bitfield"] + truth.messages["have_all"], 3);
    // Both announcements are exercised (per-flow coin flip; fixed by the seed).
    assert!(
        truth.messages["bitfield"] > 0 && truth.messages["have_all"] > 0,
        "{:?}",
        truth.messages
    );
    assert_eq!(truth.messages["extended"], 6);
}

#[test]
fn one_byte_segments() {
    let a = args(|a| {
        a.size = ByteSize(20_000);
        a.piece_length = 16384;
        a.one_byte = true;
    });
    check_clean_exchange(&a);
    let (fs, _) = frames(&a);
    assert!(fs.iter().all(|(_, f)| decode(f).payload.len() <= 1));
}

#[test]
fn magnet_fetches_metadata_with_receiver_ids() {
    // 1024 pieces -> a 20.5 KB info dict: two metadata pieces, the second one short.
    let a = args(|a| {
        a.size = ByteSize(1 << 20);
        a.piece_length = 1024;
        a.magnet = true;
    });
    let t = torrent_for(&a).expect("torrent");
    let (fs, truth) = frames(&a);
    let rx = reassemble(&fs);
    let st = &truth.streams[0];
    let key = |fc| {
        (
            st.client.parse().expect("c"),
            st.server.parse().expect("s"),
            fc,
        )
    };
    let s2c = parse_messages(&rx[&key(false)].delivered);
    let c2s = parse_messages(&rx[&key(true)].delivered);
    let ext = |m: &[(&str, Vec<u8>)]| -> Vec<Vec<u8>> {
        m.iter()
            .filter(|x| x.0 == "extended")
            .map(|x| x.1.clone())
            .collect()
    };
    let (se, ce) = (ext(&s2c), ext(&c2s));
    // Extended handshakes: each side announces its own id; the magnet leecher has no size.
    let (sh, _) = bdecode(&se[0][1..]);
    let (ch, _) = bdecode(&ce[0][1..]);
    assert_eq!(
        get(get(&sh, "m"), "ut_metadata"),
        &B::I(i64::from(SEEDER_UT_METADATA))
    );
    assert_eq!(
        get(get(&ch, "m"), "ut_metadata"),
        &B::I(i64::from(LEECHER_UT_METADATA))
    );
    assert_eq!(get(get(&ch, "m"), "ut_pex"), &B::I(1));
    assert_eq!(get(&sh, "metadata_size"), &B::I(t.info.len() as i64));
    let B::D(pairs) = &ch else { panic!() };
    assert!(!pairs.iter().any(|p| p.0 == b"metadata_size"));
    // Requests carry the seeder's id, data the leecher's; data reassembles the info dict.
    assert_eq!(ce.len(), 1 + 2);
    for (i, r) in ce[1..].iter().enumerate() {
        assert_eq!(r[0], SEEDER_UT_METADATA);
        let (d, rest) = bdecode(&r[1..]);
        assert!(rest.is_empty());
        assert_eq!(get(&d, "msg_type"), &B::I(0));
        assert_eq!(get(&d, "piece"), &B::I(i as i64));
    }
    let mut info = Vec::new();
    for (i, m) in se[1..].iter().enumerate() {
        assert_eq!(m[0], LEECHER_UT_METADATA);
        let (d, rest) = bdecode(&m[1..]);
        assert_eq!(get(&d, "msg_type"), &B::I(1));
        assert_eq!(get(&d, "piece"), &B::I(i as i64));
        assert_eq!(get(&d, "total_size"), &B::I(t.info.len() as i64));
        info.extend_from_slice(rest);
    }
    assert_eq!(info, t.info);
    assert_eq!(hex(&Sha1::digest(&info)), truth.info_hash);
    assert_eq!(truth.messages["extended"], 2 + 2 + 2);
}

fn check_impaired(a: &SynthArgs) -> Truth {
    let (fs, truth) = frames(a);
    let rx = reassemble(&fs);
    let mut sum = Stats::default();
    for st in &truth.streams {
        let key = |fc| {
            (
                st.client.parse().expect("c"),
                st.server.parse().expect("s"),
                fc,
            )
        };
        let (c2s, s2c) = (&rx[&key(true)], &rx[&key(false)]);
        assert_eq!(c2s.stats, Stats::default(), "impairments only hit s2c");
        assert_eq!(
            (st.c2s_bytes, st.c2s_sha1.clone()),
            (c2s.delivered.len() as u64, sha1_hex(&c2s.delivered))
        );
        assert_eq!(
            (st.s2c_bytes, st.s2c_sha1.clone()),
            (s2c.delivered.len() as u64, sha1_hex(&s2c.delivered))
        );
        assert!(s2c.buffered.is_empty());
        let s = &s2c.stats;
        sum.gaps += s.gaps;
        sum.gap_bytes += s.gap_bytes;
        sum.overlaps += s.overlaps;
        sum.conflicting += s.conflicting;
        sum.out_of_order += s.out_of_order;
    }
    let r = &truth.reassembly;
    assert_eq!(
        sum,
        Stats {
            gaps: r.gaps,
            gap_bytes: r.gap_bytes,
            overlaps: r.overlaps,
            conflicting: r.conflicting_overlaps,
            out_of_order: r.out_of_order
        }
    );
    truth
}

#[test]
fn impairment_counts_match_definitions() {
    let a = args(|a| {
        a.flows = 2;
        a.reorder = 2;
        a.duplicate = 2;
        a.loss = 2;
        a.conflict = 1;
        a.overlap_conflict = 1;
    });
    let t = check_impaired(&a);
    let r = &t.reassembly;
    assert_eq!(
        (r.gaps, r.overlaps, r.conflicting_overlaps, r.out_of_order),
        (4, 8, 4, 8)
    );
    assert!(r.gap_bytes > 0 && r.gap_bytes <= 4 * 1448);
    // Lost bytes are missing from the delivered streams.
    let clean = frames(&args(|x| x.flows = 2)).1;
    let lost: u64 = clean.streams.iter().map(|s| s.s2c_bytes).sum::<u64>()
        - t.streams.iter().map(|s| s.s2c_bytes).sum::<u64>();
    assert_eq!(lost, r.gap_bytes);
    // Each kind alone, with 1-byte segments, IPv6 and both VLAN tags too.
    for (k, one_byte) in (0..5).flat_map(|k| [(k, false), (k, true)]) {
        let a = args(|a| {
            a.size = ByteSize(if one_byte { 20_000 } else { 100_000 });
            a.one_byte = one_byte;
            a.ipv6 = one_byte;
            match k {
                0 => a.reorder = 3,
                1 => a.duplicate = 3,
                2 => a.loss = 3,
                3 => a.conflict = 3,
                _ => a.overlap_conflict = 3,
            }
        });
        let r = check_impaired(&a).reassembly;
        let expect = match k {
            0 => (0, 0, 0, 3),
            1 => (0, 3, 0, 0),
            2 => (3, 0, 0, 3),
            _ => (0, 3, 3, 0),
        };
        assert_eq!(
            (r.gaps, r.overlaps, r.conflicting_overlaps, r.out_of_order),
            expect,
            "kind {k} one_byte {one_byte}"
        );
    }
}

#[test]
fn midstream_starts_a_third_in() {
    let a = args(|a| {
        a.midstream = true;
        a.flows = 2;
        a.loss = 1;
        a.duplicate = 1;
    });
    let t = check_impaired(&a);
    let (fs, _) = frames(&a);
    assert!(
        fs.iter().all(|(_, f)| !decode(f).syn),
        "no handshake captured"
    );
    let clean = frames(&args(|x| x.flows = 2)).1;
    for (m, c) in t.streams.iter().zip(&clean.streams) {
        assert!(m.s2c_bytes < c.s2c_bytes * 3 / 4 && m.s2c_bytes > c.s2c_bytes / 2);
    }
    assert_eq!(t.messages["handshake"], 0);
    assert!(t.piece_messages < clean.piece_messages * 3 / 4);

    // Without losses, each delivered stream is a suffix of the clean one; the Truth counts
    // exactly the clean messages that start inside that suffix.
    let m = args(|a| {
        a.midstream = true;
        a.flows = 2;
        a.duplicate = 1;
    });
    let t = check_impaired(&m);
    let (cf, clean) = frames(&args(|x| x.flows = 2));
    let rx = reassemble(&cf);
    let mut counts: BTreeMap<String, u64> =
        MESSAGE_TYPES.iter().map(|k| (k.to_string(), 0)).collect();
    for (st, cut) in clean.streams.iter().zip(&t.streams) {
        for (fc, delivered) in [(true, cut.c2s_bytes), (false, cut.s2c_bytes)] {
            let full = &rx[&(
                st.client.parse().expect("c"),
                st.server.parse().expect("s"),
                fc,
            )]
                .delivered;
            let skip = full.len() - delivered as usize;
            let mut at = 0;
            for (name, body) in parse_messages(full) {
                if at >= skip {
                    *counts.get_mut(name).expect("known") += 1;
                }
                at += if name == "handshake" {
                    68
                } else {
                    5 + body.len()
                };
            }
        }
    }
    assert_eq!(counts, t.messages);
    assert!(t.messages["piece"] > 0 && t.messages["request"] > 0 && t.messages["have"] > 0);
}

#[test]
fn many_flows_share_one_torrent() {
    let a = args(|a| {
        a.size = ByteSize(2 << 20);
        a.flows = 8;
        a.loss = 2;
    });
    let (mut n, mut switches, mut last) = (0u64, 0u64, None);
    let t = generate(&a, &mut |f| {
        let p = decode(f.data);
        let flow = dir_of(&p).0;
        if last.is_some_and(|l| l != flow) {
            switches += 1;
        }
        last = Some(flow);
        n += 1;
        Ok(())
    })
    .expect("generate");
    assert_eq!(t.streams.len(), 8);
    assert_eq!(t.distinct_blocks, 128);
    assert_eq!(t.reassembly.gaps, 16);
    // Flows interleave at frame granularity.
    assert!(switches > n / 2);
}

#[test]
fn too_many_impairments_is_an_error() {
    let a = args(|a| {
        a.size = ByteSize(20_000);
        a.loss = 50;
    });
    assert!(matches!(
        generate(&a, &mut |_| Ok(())),
        Err(SynthError::InvalidArgs(_))
    ));
    let q = args(|a| a.qinq = Some(5));
    assert!(matches!(
        generate(&q, &mut |_| Ok(())),
        Err(SynthError::InvalidArgs(_))
    ));
    let v = args(|a| a.vlan = Some(5000));
    assert!(matches!(
        generate(&v, &mut |_| Ok(())),
        Err(SynthError::InvalidArgs(_))
    ));
}

#[test]
fn plan_spacing() {
    let mut rng = fastrand::Rng::with_seed(7);
    let counts = impair::Counts {
        reorder: 5,
        duplicate: 5,
        loss: 5,
        conflict: 5,
        overlap_conflict: 5,
    };
    for _ in 0..50 {
        let p = impair::Plan::choose(&mut rng, &counts, 200, 300).expect("fits");
        let o = p.ordinals();
        assert_eq!(o.len(), 25);
        assert!(o.windows(2).all(|w| w[1] >= w[0] + impair::SPACING));
        assert!(o.iter().all(|&x| x < 200));
    }
    // Exactly full.
    let one = impair::Counts {
        loss: 3,
        ..Default::default()
    };
    let p = impair::Plan::choose(&mut rng, &one, 9, 20).expect("fits");
    assert_eq!(p.ordinals(), vec![0, 4, 8]);
    assert!(impair::Plan::choose(&mut rng, &one, 8, 20).is_err());
}

#[test]
fn byte_size_parses_suffixes() {
    let p = |s: &str| s.parse::<ByteSize>().map(|b| b.0);
    assert_eq!(p("256KiB"), Ok(262144));
    assert_eq!(p("1MiB"), Ok(1 << 20));
    assert_eq!(p("2G"), Ok(2 << 30));
    assert_eq!(p("10kb"), Ok(10_000));
    assert_eq!(p("777"), Ok(777));
    assert!(p("1XB").is_err());
    assert!(p("MiB").is_err());
    assert!(p("99999999999T").is_err());
}

#[test]
fn cli_args_parse() {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        synth: SynthArgs,
    }
    let c = Cli::parse_from([
        "synth",
        "-o",
        "x.pcap",
        "--size",
        "1MiB",
        "--overlap-conflict",
        "2",
        "--one-byte",
        "--qinq",
        "7",
        "--vlan",
        "8",
    ]);
    assert_eq!(c.synth.size, ByteSize(1 << 20));
    assert_eq!(c.synth.overlap_conflict, 2);
    assert!(c.synth.one_byte);
    let d = Cli::parse_from(["synth", "-o", "x.pcap"]).synth;
    let e = SynthArgs {
        output: "x.pcap".into(),
        ..SynthArgs::default()
    };
    assert_eq!(format!("{d:?}"), format!("{e:?}"));
}

/// Streams: 64 MiB x 8 flows into a counting sink. Nothing is asserted about memory or time
/// (memory is bounded by construction: one write per flow); this is a smoke test of the big
/// configuration and takes ~1 min in debug, so run it in release:
/// `cargo test --release --lib synth::tests::big_run_streams -- --ignored`.
#[test]
#[ignore]
fn big_run_streams() {
    let a = args(|a| {
        a.size = ByteSize(64 << 20);
        a.flows = 8;
        a.loss = 3;
        a.reorder = 3;
    });
    let (mut frames, mut bytes) = (0u64, 0u64);
    let t = generate(&a, &mut |f| {
        frames += 1;
        bytes += f.data.len() as u64;
        Ok(())
    })
    .expect("generate");
    assert_eq!(t.distinct_blocks, 4096);
    assert_eq!(t.reassembly.gaps, 24);
    assert!(bytes > 8 * (64 << 20));
    assert!(frames > 0);
}

/// Prints the Truth of the configuration quoted in the hand-over notes.
#[test]
#[ignore]
fn print_reference_truth() {
    let a = args(|a| {
        a.flows = 2;
        a.reorder = 2;
        a.duplicate = 2;
        a.loss = 2;
        a.conflict = 1;
        a.overlap_conflict = 1;
    });
    let t = generate(&a, &mut |_| Ok(())).expect("generate");
    println!("{}", serde_json::to_string_pretty(&t).expect("json"));
}
