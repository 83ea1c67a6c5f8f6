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
        t.info_hash.to_string()
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
    let a = magnet_args(false);
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
    check_magnet(
        &a,
        &truth,
        &rx[&key(false)].delivered,
        &rx[&key(true)].delivered,
    );
}

/// 1024 pieces -> a 20.5 KB info dict: two metadata pieces, the second one short.
fn magnet_args(utp: bool) -> SynthArgs {
    args(|a| {
        a.size = ByteSize(1 << 20);
        a.piece_length = 1024;
        a.magnet = true;
        a.utp = utp;
    })
}

/// The BEP 9 exchange of a one-flow magnet run, from its delivered streams.
fn check_magnet(a: &SynthArgs, truth: &Truth, s2c: &[u8], c2s: &[u8]) {
    let t = torrent_for(a).expect("torrent");
    let s2c = parse_messages(s2c);
    let c2s = parse_messages(c2s);
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
        "--mse-plaintext",
        "1",
    ]);
    assert_eq!(c.synth.size, ByteSize(1 << 20));
    assert_eq!(c.synth.mse_plaintext, 1);
    assert_eq!(c.synth.overlap_conflict, 2);
    assert!(c.synth.one_byte);
    let d = Cli::parse_from(["synth", "-o", "x.pcap"]).synth;
    let e = SynthArgs {
        output: "x.pcap".into(),
        ..SynthArgs::default()
    };
    assert_eq!(format!("{d:?}"), format!("{e:?}"));
    let p = Cli::parse_from(["synth", "-o", "x.pcap", "--poison", "refetch"]).synth;
    assert_eq!(p.poison, Some(Poison::Refetch));
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

// ---- uTP (BEP 29) --------------------------------------------------------------------

/// One decoded uTP-over-UDP frame.
#[derive(Clone, Debug)]
struct UPkt {
    src: SocketAddr,
    dst: SocketAddr,
    ty: u8,
    conn_id: u16,
    timestamp: u32,
    ts_diff: u32,
    wnd: u32,
    seq: u16,
    ack: u16,
    vlans: Vec<u16>,
    payload: Vec<u8>,
}

const ST_DATA: u8 = 0;
const ST_FIN: u8 = 1;
const ST_STATE: u8 = 2;
const ST_SYN: u8 = 4;

/// Decodes a frame with etherparse as UDP, checks every checksum, then parses the BEP 29
/// header (walking any extensions) by hand.
fn decode_utp(frame: &[u8]) -> UPkt {
    let p = SlicedPacket::from_ethernet(frame).expect("frame parses");
    let vlans = p
        .link_exts
        .iter()
        .filter_map(|e| match e {
            LinkExtSlice::Vlan(v) => Some(v.vlan_identifier().value()),
            _ => None,
        })
        .collect();
    let Some(TransportSlice::Udp(udp)) = &p.transport else {
        panic!("not UDP")
    };
    let h = udp.to_header();
    let body = udp.payload();
    assert_ne!(udp.checksum(), 0, "UDP checksum present");
    let (src_ip, dst_ip): (IpAddr, IpAddr) = match &p.net {
        Some(NetSlice::Ipv4(ip)) => {
            let ih = ip.header();
            assert_eq!(
                ih.header_checksum(),
                ih.to_header().calc_header_checksum(),
                "ipv4 checksum"
            );
            let sum = h
                .calc_checksum_ipv4_raw(ih.source(), ih.destination(), body)
                .expect("len");
            assert_eq!(sum, udp.checksum(), "udp checksum");
            (ih.source_addr().into(), ih.destination_addr().into())
        }
        Some(NetSlice::Ipv6(ip)) => {
            let ih = ip.header();
            let sum = h
                .calc_checksum_ipv6_raw(ih.source(), ih.destination(), body)
                .expect("len");
            assert_eq!(sum, udp.checksum(), "udp checksum");
            (ih.source_addr().into(), ih.destination_addr().into())
        }
        _ => panic!("not IP"),
    };
    assert!(body.len() >= 20, "uTP header");
    assert_eq!(body[0] & 0x0f, 1, "uTP version");
    let be16 = |i: usize| u16::from_be_bytes([body[i], body[i + 1]]);
    let be32 = |i: usize| u32::from_be_bytes([body[i], body[i + 1], body[i + 2], body[i + 3]]);
    let mut at = 20;
    let mut ext = body[1];
    while ext != 0 {
        ext = body[at];
        at += 2 + usize::from(body[at + 1]);
    }
    UPkt {
        src: SocketAddr::new(src_ip, udp.source_port()),
        dst: SocketAddr::new(dst_ip, udp.destination_port()),
        ty: body[0] >> 4,
        conn_id: be16(2),
        timestamp: be32(4),
        ts_diff: be32(8),
        wnd: be32(12),
        seq: be16(16),
        ack: be16(18),
        vlans,
        payload: body[at..].to_vec(),
    }
}

fn udir_of(p: &UPkt) -> (SocketAddr, SocketAddr, bool) {
    if p.dst.port() == SEEDER_PORT {
        (p.src, p.dst, true)
    } else {
        (p.dst, p.src, false)
    }
}

#[derive(Default, Debug, Clone, PartialEq, Eq)]
struct UStats {
    out_of_order: u64,
    duplicates: u64,
    conflicting: u64,
    gaps: u64,
    gap_packets: u64,
}

/// First-copy-wins uTP reassembler by seq_nr with the Truth's definitions: DATA beyond the
/// next expected seq_nr is out of order; a seq_nr seen before is a duplicate (conflicting if
/// its payload differs); seq_nrs the peer's STATE acknowledges but the capture never showed
/// are skipped as gaps. FIN takes a seq_nr with no payload.
#[derive(Default)]
struct URx {
    /// seq_nr of stream packet 0 (the first DATA seen: never an impaired one).
    base: Option<u16>,
    next: i64,
    /// First copies by packet index.
    got: BTreeMap<i64, Vec<u8>>,
    delivered: Vec<u8>,
    /// (offset in `delivered`, packets skipped there).
    holes: Vec<(usize, u64)>,
    stats: UStats,
}

impl URx {
    /// Packet index of `seq`: the one nearest `next` in 16-bit serial arithmetic.
    fn idx(&self, seq: u16) -> i64 {
        let expect = self.base.unwrap_or(seq).wrapping_add(self.next as u16);
        self.next + i64::from(seq.wrapping_sub(expect) as i16)
    }
    fn data(&mut self, seq: u16, payload: &[u8]) {
        if self.base.is_none() {
            self.base = Some(seq);
        }
        let i = self.idx(seq);
        if let Some(first) = self.got.get(&i) {
            self.stats.duplicates += 1;
            if first != payload {
                self.stats.conflicting += 1;
            }
            return;
        }
        assert!(i >= self.next, "copy of a seq_nr already skipped as lost");
        if i > self.next {
            self.stats.out_of_order += 1;
        }
        self.got.insert(i, payload.to_vec());
        self.drain();
    }
    fn drain(&mut self) {
        while let Some(p) = self.got.get(&self.next) {
            self.delivered.extend_from_slice(p);
            self.next += 1;
        }
    }
    fn ack(&mut self, ack: u16) {
        if self.base.is_none() {
            return;
        }
        let a = self.idx(ack);
        let mut run = false;
        while self.next <= a {
            if self.got.contains_key(&self.next) {
                self.drain();
                run = false;
                continue;
            }
            if !run {
                self.stats.gaps += 1;
                self.holes.push((self.delivered.len(), 0));
                run = true;
            }
            if let Some(h) = self.holes.last_mut() {
                h.1 += 1;
            }
            self.stats.gap_packets += 1;
            self.next += 1;
        }
        self.drain();
    }
}

type UKey = (SocketAddr, SocketAddr, bool);

fn utp_reassemble(frames: &[(u64, Vec<u8>)]) -> HashMap<UKey, URx> {
    let mut rx: HashMap<UKey, URx> = HashMap::new();
    for (_, f) in frames {
        let p = decode_utp(f);
        let (c, s, from_client) = udir_of(&p);
        match p.ty {
            ST_DATA => rx
                .entry((c, s, from_client))
                .or_default()
                .data(p.seq, &p.payload),
            ST_FIN => rx.entry((c, s, from_client)).or_default().data(p.seq, &[]),
            ST_STATE => rx.entry((c, s, !from_client)).or_default().ack(p.ack),
            _ => {}
        }
    }
    rx
}

/// Reassembles a uTP run, checks the delivered SHA-1s, the impairment and packet counts,
/// and (without losses) the message counts against its Truth.
fn check_utp(a: &SynthArgs) -> (Truth, HashMap<UKey, URx>) {
    let (fs, truth) = frames(a);
    let rx = utp_reassemble(&fs);
    let u = truth.utp.clone().expect("uTP truth");
    assert_eq!(truth.reassembly, ReassemblyTruth::default());
    assert_eq!(u.packets, fs.len() as u64);
    let data = fs.iter().filter(|f| decode_utp(&f.1).ty == ST_DATA).count();
    assert_eq!(u.data_packets, data as u64);
    let mut sum = UStats::default();
    let mut counts: BTreeMap<String, u64> =
        MESSAGE_TYPES.iter().map(|k| (k.to_string(), 0)).collect();
    for st in &truth.streams {
        let key = |fc| -> UKey {
            (
                st.client.parse().expect("c"),
                st.server.parse().expect("s"),
                fc,
            )
        };
        let (c2s, s2c) = (&rx[&key(true)], &rx[&key(false)]);
        assert_eq!(c2s.stats, UStats::default(), "impairments only hit s2c");
        assert_eq!(
            (st.c2s_bytes, st.c2s_sha1.clone()),
            (c2s.delivered.len() as u64, sha1_hex(&c2s.delivered))
        );
        assert_eq!(
            (st.s2c_bytes, st.s2c_sha1.clone()),
            (s2c.delivered.len() as u64, sha1_hex(&s2c.delivered))
        );
        assert!(
            s2c.got.range(s2c.next..).next().is_none(),
            "nothing left waiting"
        );
        let s = &s2c.stats;
        sum.out_of_order += s.out_of_order;
        sum.duplicates += s.duplicates;
        sum.conflicting += s.conflicting;
        sum.gaps += s.gaps;
        sum.gap_packets += s.gap_packets;
        if u.gaps == 0 && !a.midstream {
            for (name, _) in parse_messages(&c2s.delivered)
                .iter()
                .chain(parse_messages(&s2c.delivered).iter())
            {
                *counts.get_mut(*name).expect("known type") += 1;
            }
        }
    }
    assert_eq!(
        sum,
        UStats {
            out_of_order: u.out_of_order,
            duplicates: u.duplicates,
            conflicting: u.conflicting,
            gaps: u.gaps,
            gap_packets: u.gap_packets,
        }
    );
    if u.gaps == 0 && !a.midstream {
        assert_eq!(counts, truth.messages);
    }
    (truth, rx)
}

#[test]
fn utp_deterministic_and_truth_json() {
    let a = args(|a| {
        a.utp = true;
        a.flows = 2;
        a.loss = 1;
        a.reorder = 1;
    });
    let (f1, t1) = frames(&a);
    let (f2, t2) = frames(&a);
    assert_eq!(f1, f2);
    assert_eq!(t1, t2);
    let (f3, _) = frames(&SynthArgs {
        seed: 2,
        ..a.clone()
    });
    assert_ne!(f1, f3);
    for (i, (ts, _)) in f1.iter().enumerate() {
        assert_eq!(*ts, START_MICROS + i as u64 * STEP_MICROS);
    }
    // The uTP section is in the JSON of uTP runs only, and round-trips.
    let json = serde_json::to_string(&t1).expect("json");
    assert!(json.contains("\"utp\":{\"packets\""));
    assert_eq!(serde_json::from_str::<Truth>(&json).expect("parse"), t1);
    let tcp = frames(&args(|x| x.flows = 2)).1;
    assert!(tcp.utp.is_none());
    assert!(!serde_json::to_string(&tcp).expect("json").contains("utp"));
    // Same torrent and script: the same streams as TCP carries.
    assert_eq!(tcp.info_hash, frames(&args(|x| x.utp = true)).1.info_hash);
}

#[test]
fn utp_frames_parse_as_udp_with_bep29_connection_setup() {
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
    for (mut a, vlans, v6) in cases {
        a.utp = true;
        let (fs, truth) = frames(&a);
        // Per connection: the SYN and the seeder's answer, then the id/seq rules.
        #[derive(Default)]
        struct Conn {
            syn: Option<UPkt>,
            synack: Option<UPkt>,
            c2s_data: Vec<u16>,
            s2c_data: Vec<u16>,
            fins: u32,
        }
        let mut conns: HashMap<SocketAddr, Conn> = HashMap::new();
        for (_, f) in &fs {
            let p = decode_utp(f);
            assert_eq!(p.vlans, vlans);
            assert_eq!(p.wnd, 1 << 20);
            let (c, s, from_client) = udir_of(&p);
            assert_eq!(s.port(), SEEDER_PORT);
            assert!(c.port() >= LEECHER_BASE_PORT);
            assert_eq!(c.is_ipv6(), v6);
            let conn = conns.entry(c).or_default();
            let Some(syn) = conn.syn.clone() else {
                assert!(
                    from_client && p.ty == ST_SYN,
                    "a connection opens with a SYN"
                );
                assert_eq!(p.ts_diff, 0);
                conn.syn = Some(p);
                continue;
            };
            let r = syn.conn_id;
            if from_client {
                assert_ne!(p.ty, ST_SYN);
                assert_eq!(
                    p.conn_id,
                    r.wrapping_add(1),
                    "leecher sends with recv_id + 1"
                );
            } else {
                assert_eq!(p.conn_id, r, "seeder sends with the SYN's id");
            }
            if conn.synack.is_none() {
                assert!(!from_client && p.ty == ST_STATE);
                assert_eq!(p.ack, syn.seq);
                conn.synack = Some(p.clone());
            }
            match (p.ty, from_client) {
                (ST_DATA, true) => conn.c2s_data.push(p.seq),
                (ST_DATA, false) => conn.s2c_data.push(p.seq),
                (ST_FIN, _) => conn.fins += 1,
                _ => {}
            }
            assert!(p.payload.len() <= usize::from(a.mss));
            assert_eq!(p.ty == ST_DATA, !p.payload.is_empty());
            let _ = (p.timestamp, p.ts_diff);
        }
        assert_eq!(conns.len(), a.flows as usize);
        for conn in conns.values() {
            let (syn, synack) = (
                conn.syn.as_ref().expect("syn"),
                conn.synack.as_ref().expect("state"),
            );
            // First DATA: one past the SYN for the leecher, the STATE's seq_nr for the
            // seeder; then + 1 per packet.
            assert_eq!(conn.c2s_data[0], syn.seq.wrapping_add(1));
            assert_eq!(conn.s2c_data[0], synack.seq);
            for d in [&conn.c2s_data, &conn.s2c_data] {
                assert!(d.windows(2).all(|w| w[1] == w[0].wrapping_add(1)));
            }
            assert_eq!(conn.fins, 2);
        }
        if v6 {
            assert!(truth.streams[0].client.starts_with("[2001:2:0:1::"));
        }
        check_utp(&a);
    }
}

#[test]
fn utp_seq_nr_wraps_in_flow_0() {
    let (fs, _) = frames(&args(|a| {
        a.utp = true;
        a.flows = 2;
    }));
    let mut first: [Option<u16>; 2] = [None; 2];
    let mut wrapped = [false; 2];
    let mut prev: [Option<u16>; 2] = [None; 2];
    for (_, f) in &fs {
        let p = decode_utp(f);
        if p.ty != ST_DATA || udir_of(&p).0.port() != LEECHER_BASE_PORT {
            continue;
        }
        let d = usize::from(p.dst.port() == SEEDER_PORT);
        first[d].get_or_insert(p.seq);
        if prev[d].is_some_and(|q| p.seq < q) {
            wrapped[d] = true;
        }
        prev[d] = Some(p.seq);
    }
    assert_eq!(wrapped, [true, true], "[s2c, c2s] wrapped");
    assert!(
        first.iter().all(|f| f.is_some_and(|s| s >= 65530)),
        "{first:?}"
    );
}

#[test]
fn utp_clean_exchange_is_the_torrent() {
    let (t, _) = check_utp(&args(|a| {
        a.utp = true;
        a.flows = 3;
        a.size = ByteSize(300_000);
    }));
    let tcp = frames(&args(|a| {
        a.flows = 3;
        a.size = ByteSize(300_000);
    }))
    .1;
    // Same script, same delivered streams and message counts as over TCP.
    assert_eq!(t.streams, tcp.streams);
    assert_eq!(t.messages, tcp.messages);
    assert_eq!(
        (t.piece_messages, t.piece_bytes, t.distinct_blocks),
        (tcp.piece_messages, tcp.piece_bytes, tcp.distinct_blocks)
    );
    let u = t.utp.expect("utp");
    assert_eq!(
        u,
        UtpTruth {
            packets: u.packets,
            data_packets: u.data_packets,
            ..Default::default()
        }
    );
    // Per connection: SYN + STATE, DATA + STATE each, FIN + STATE each way.
    assert_eq!(u.packets, 2 * u.data_packets + 3 * 2 + 3 * 4);
    let one = args(|a| {
        a.utp = true;
        a.size = ByteSize(20_000);
        a.piece_length = 16384;
        a.one_byte = true;
    });
    let (fs, _) = frames(&one);
    assert!(fs.iter().all(|(_, f)| decode_utp(f).payload.len() <= 1));
    check_utp(&one);
}

#[test]
fn utp_impairment_counts_match_definitions() {
    let a = args(|a| {
        a.utp = true;
        a.flows = 2;
        a.reorder = 2;
        a.duplicate = 2;
        a.loss = 2;
        a.conflict = 1;
    });
    let (t, _) = check_utp(&a);
    let u = t.utp.clone().expect("utp");
    assert_eq!(
        (
            u.out_of_order,
            u.duplicates,
            u.conflicting,
            u.gaps,
            u.gap_packets
        ),
        (8, 6, 2, 4, 4)
    );
    assert_eq!(u.gap_bytes, 4 * 1448);
    // Lost payload is missing from the delivered streams.
    let clean = frames(&args(|x| {
        x.utp = true;
        x.flows = 2;
    }))
    .1;
    let lost: u64 = clean.streams.iter().map(|s| s.s2c_bytes).sum::<u64>()
        - t.streams.iter().map(|s| s.s2c_bytes).sum::<u64>();
    assert_eq!(lost, u.gap_bytes);
    // Copies and losses change the packet count by exactly their number.
    let cu = clean.utp.expect("utp");
    assert_eq!(u.data_packets, cu.data_packets + 2 * (2 + 1) - 2 * 2);
    // Each kind alone, with 1-byte packets, IPv6 and both VLAN tags too.
    for (k, one_byte) in (0..4).flat_map(|k| [(k, false), (k, true)]) {
        let a = args(|a| {
            a.utp = true;
            a.size = ByteSize(if one_byte { 20_000 } else { 100_000 });
            a.one_byte = one_byte;
            a.ipv6 = one_byte;
            if one_byte {
                a.vlan = Some(7);
                a.qinq = Some(8);
            }
            match k {
                0 => a.reorder = 3,
                1 => a.duplicate = 3,
                2 => a.loss = 3,
                _ => a.conflict = 3,
            }
        });
        let u = check_utp(&a).0.utp.expect("utp");
        let expect = match k {
            0 => (3, 0, 0, 0, 0),
            1 => (0, 3, 0, 0, 0),
            2 => (3, 0, 0, 3, 3),
            _ => (0, 3, 3, 0, 0),
        };
        assert_eq!(
            (
                u.out_of_order,
                u.duplicates,
                u.conflicting,
                u.gaps,
                u.gap_packets
            ),
            expect,
            "kind {k} one_byte {one_byte}"
        );
        if k == 2 {
            assert_eq!(u.gap_bytes, if one_byte { 3 } else { 3 * 1448 });
        }
    }
    // Overlap-conflict has no uTP meaning.
    let bad = args(|a| {
        a.utp = true;
        a.overlap_conflict = 1;
    });
    assert!(matches!(
        generate(&bad, &mut |_| Ok(())),
        Err(SynthError::InvalidArgs(_))
    ));
}

/// Message counts of a stream with holes as an engine can recover them, assuming every
/// lost packet was full size (`unit` bytes; true here: a lost packet is never the last of
/// a write): a message counts when its header bytes were captured; after a length prefix
/// lost in a hole the parser resyncs on the next plausible header.
fn count_with_holes(
    delivered: &[u8],
    holes: &[(usize, u64)],
    unit: usize,
    num_pieces: u32,
    counts: &mut BTreeMap<String, u64>,
) {
    let mut v: Vec<Option<u8>> = Vec::with_capacity(delivered.len());
    let mut h = holes.iter().peekable();
    for (i, &b) in delivered.iter().enumerate() {
        while let Some(&&(at, n)) = h.peek() {
            if at != i {
                break;
            }
            v.extend(std::iter::repeat_n(None, unit * n as usize));
            h.next();
        }
        v.push(Some(b));
    }
    let known = |a: usize, b: usize| b <= v.len() && v[a..b].iter().all(|x| x.is_some());
    let byte = |i: usize| v.get(i).copied().flatten().unwrap_or(0);
    let be32 = |i: usize| u32::from_be_bytes([byte(i), byte(i + 1), byte(i + 2), byte(i + 3)]);
    let name = |id: u8| match id {
        1 => Some("unchoke"),
        4 => Some("have"),
        5 => Some("bitfield"),
        7 => Some("piece"),
        0x0e => Some("have_all"),
        20 => Some("extended"),
        _ => None,
    };
    // A plausible header: known bytes, a known id and a length that fits it.
    let plausible = |p: usize| {
        if !known(p, p + 5) {
            return false;
        }
        let len = be32(p);
        match name(byte(p + 4)) {
            Some("piece") => {
                known(p, p + 13)
                    && (10..=9 + BLOCK_LEN).contains(&len)
                    && be32(p + 5) < num_pieces
                    && be32(p + 9) % BLOCK_LEN == 0
            }
            Some("have") => len == 5 && be32(p + 5) < num_pieces,
            Some("unchoke") | Some("have_all") => len == 1,
            Some(_) => (2..=1 << 20).contains(&len),
            None => false,
        }
    };
    let mut at = 0;
    if byte(0) == 19 {
        if known(0, 68) {
            *counts.get_mut("handshake").expect("k") += 1;
        }
        at = 68;
    }
    while at < v.len() {
        if !known(at, at + 5) {
            match (at..v.len()).find(|&p| plausible(p)) {
                Some(p) => at = p,
                None => break,
            }
        }
        let len = be32(at) as usize;
        let n = name(byte(at + 4)).expect("known id");
        let hdr = if n == "piece" { 13 } else { 4 + len };
        if known(at, at + hdr) {
            *counts.get_mut(n).expect("k") += 1;
        }
        at += 4 + len;
    }
}

#[test]
fn utp_loss_message_counts_recoverable_with_full_size_holes() {
    for (one_byte, magnet) in [(false, false), (true, false), (false, true)] {
        let a = args(|a| {
            a.utp = true;
            a.flows = 2;
            a.loss = if one_byte { 12 } else { 4 };
            a.one_byte = one_byte;
            a.magnet = magnet;
            a.size = ByteSize(if one_byte { 20_000 } else { 256 << 10 });
            if one_byte {
                a.piece_length = 16384;
            }
        });
        let (t, rx) = check_utp(&a);
        let np = t.pieces;
        let unit = if one_byte { 1 } else { usize::from(a.mss) };
        let mut counts: BTreeMap<String, u64> =
            MESSAGE_TYPES.iter().map(|k| (k.to_string(), 0)).collect();
        for st in &t.streams {
            let key = |fc| -> UKey {
                (
                    st.client.parse().expect("c"),
                    st.server.parse().expect("s"),
                    fc,
                )
            };
            for (name, _) in parse_messages(&rx[&key(true)].delivered) {
                *counts.get_mut(name).expect("k") += 1;
            }
            let s2c = &rx[&key(false)];
            count_with_holes(&s2c.delivered, &s2c.holes, unit, np, &mut counts);
        }
        assert_eq!(counts, t.messages, "one_byte {one_byte} magnet {magnet}");
    }
}

#[test]
fn utp_magnet_rebuilds_the_info_dict() {
    let a = magnet_args(true);
    let (truth, rx) = check_utp(&a);
    let st = &truth.streams[0];
    let key = |fc| -> UKey {
        (
            st.client.parse().expect("c"),
            st.server.parse().expect("s"),
            fc,
        )
    };
    check_magnet(
        &a,
        &truth,
        &rx[&key(false)].delivered,
        &rx[&key(true)].delivered,
    );
}

#[test]
fn utp_midstream_has_no_syn() {
    let a = args(|a| {
        a.utp = true;
        a.midstream = true;
        a.flows = 2;
        a.loss = 1;
        a.duplicate = 1;
        a.hostile = 1;
    });
    let (t, _) = check_utp(&a);
    let (fs, _) = frames(&a);
    assert!(fs.iter().all(|(_, f)| decode_utp(f).ty != ST_SYN));
    assert_eq!(t.messages["handshake"], 0);
    let clean = frames(&args(|x| {
        x.utp = true;
        x.flows = 2;
    }))
    .1;
    assert!(t.piece_messages < clean.piece_messages * 3 / 4);
    for (m, c) in t.streams.iter().zip(&clean.streams) {
        assert!(m.s2c_bytes < c.s2c_bytes * 3 / 4 && m.s2c_bytes > c.s2c_bytes / 2);
    }
}

/// Prints the Truth of the uTP configuration quoted in the hand-over notes, and the packets
/// around each seeder->leecher impairment (out-of-sequence, repeated or missing seq_nr).
#[test]
#[ignore]
fn print_utp_reference() {
    let a = args(|a| {
        a.utp = true;
        a.flows = 2;
        a.reorder = 2;
        a.duplicate = 2;
        a.loss = 2;
        a.conflict = 1;
    });
    let (fs, t) = frames(&a);
    println!("{}", serde_json::to_string_pretty(&t).expect("json"));
    let ty = |t: u8| ["DATA", "FIN", "STATE", "RESET", "SYN"][usize::from(t)];
    for flow in 0..2u16 {
        let pk: Vec<(usize, UPkt)> = fs
            .iter()
            .enumerate()
            .map(|(i, f)| (i, decode_utp(&f.1)))
            .filter(|(_, p)| udir_of(p).0.port() == LEECHER_BASE_PORT + flow)
            .collect();
        let s2c: Vec<usize> = (0..pk.len())
            .filter(|&j| pk[j].1.ty == ST_DATA && pk[j].1.src.port() == SEEDER_PORT)
            .collect();
        let mut marks = Vec::new();
        for w in s2c.windows(2) {
            let (a, b) = (&pk[w[0]].1, &pk[w[1]].1);
            if b.seq != a.seq.wrapping_add(1) {
                marks.push(w[0]);
            }
        }
        let mut shown = std::collections::BTreeSet::new();
        for m in marks {
            for j in m.saturating_sub(4)..(m + 6).min(pk.len()) {
                shown.insert(j);
            }
        }
        let mut last = None;
        for j in shown {
            if last.is_some_and(|l| l + 1 != j) {
                println!("  ...");
            }
            last = Some(j);
            let (i, p) = &pk[j];
            let dir = if p.src.port() == SEEDER_PORT {
                "S->L"
            } else {
                "L->S"
            };
            println!(
                "flow {flow} frame {i:5} {dir} {:5} seq {:5} ack {:5} len {:4} first {:02x}",
                ty(p.ty),
                p.seq,
                p.ack,
                p.payload.len(),
                p.payload.first().copied().unwrap_or(0)
            );
        }
        println!();
    }
}

/// `--mse-plaintext`: the exact MSE/PE layout, then the plain peer wire; the other flows
/// are the bytes a run without it writes.
#[test]
fn mse_plaintext_sessions_have_the_exact_layout() {
    let a = args(|a| {
        a.flows = 2;
        a.mse_plaintext = 1;
        a.size = ByteSize(100_000);
    });
    let (fs, truth) = frames(&a);
    // Data segments of flow 0 in capture order, per direction (no impairments: in order).
    let mut writes: [Vec<Vec<u8>>; 2] = [Vec::new(), Vec::new()];
    for (_, f) in &fs {
        let p = decode(f);
        let (c, _, from_client) = dir_of(&p);
        if c.port() == LEECHER_BASE_PORT && !p.payload.is_empty() {
            writes[usize::from(!from_client)].push(p.payload);
        }
    }
    let [c2s, s2c] = writes;
    // Ya + PadA; Yb + PadB; the hashes, RC4(VC, provide, len(PadC), PadC, len(IA)), RC4(IA).
    assert!((96..=608).contains(&c2s[0].len()), "{}", c2s[0].len());
    assert!((96..=608).contains(&s2c[0].len()), "{}", s2c[0].len());
    assert!((40 + 14 + 2 + 68..=40 + 14 + 512 + 2 + 68).contains(&c2s[1].len()));
    for w in [&c2s[0], &s2c[0], &c2s[1]] {
        assert!(crate::wire::entropy::looks_random(w));
    }
    // RC4(VC, select, len(PadD), PadD), then the seeder's handshake in the clear.
    let s2c_stream: Vec<u8> = s2c.concat();
    let hs = s2c_stream
        .windows(20)
        .position(|w| w == crate::wire::peerwire::PROTOCOL)
        .expect("seeder handshake");
    assert!((14..=14 + 512).contains(&(hs - s2c[0].len())), "{hs}");
    let s2c_msgs = parse_messages(&s2c_stream[hs..]);
    assert_eq!(s2c_msgs[0].0, "handshake");
    // The leecher's plaintext starts with its extended handshake: its own was in IA.
    let c2s_stream: Vec<u8> = c2s.concat();
    let c2s_msgs = parse_messages(&c2s_stream[c2s[0].len() + c2s[1].len()..]);
    assert_eq!(c2s_msgs[0].0, "extended");
    assert!(c2s_msgs.iter().all(|(k, _)| *k != "handshake"));
    assert_eq!(truth.messages["handshake"], 3);
    // Flow 1 is what a run without MSE writes.
    let (_, plain) = frames(&args(|b| {
        b.flows = 2;
        b.size = ByteSize(100_000);
    }));
    assert_eq!(truth.streams[1], plain.streams[1]);
    assert_ne!(truth.streams[0], plain.streams[0]);
    // More MSE flows than flows is refused.
    assert!(generate(&args(|b| b.mse_plaintext = 2), &mut |_| Ok(())).is_err());
}

/// `--poison`: every connection's PIECE messages decoded independently (etherparse, the
/// test reassembler, the test peer-wire parser). Each flow's honest seeder sends every block
/// of every piece, right; every hostile PIECE is its block XORed with that peer's byte, and
/// no hostile peer sends a block twice; so the truth's proven-bad peers are exactly those
/// copies. The hostile connections go from each leecher's port 39999 - k to peer k.
#[test]
fn poisoned_connections_carry_the_scenarios_copies() {
    use clap::ValueEnum;
    for &scenario in Poison::value_variants() {
        let a = args(|a| {
            a.poison = Some(scenario);
            a.flows = 2;
            a.size = ByteSize(3 * 65536 + 5000);
            a.seed = 7;
        });
        let (fs, truth) = frames(&a);
        let t = torrent_for(&a).expect("torrent");
        let p = truth.poison.as_ref().expect("poison truth");
        assert_eq!(p.hostile.len(), usize::from(scenario.hostile_peers()));
        assert_eq!(truth.flows, 2 * (1 + u32::from(scenario.hostile_peers())));
        let xor: HashMap<SocketAddr, u8> = p
            .hostile
            .iter()
            .map(|h| (h.address.parse().expect("address"), h.xor))
            .collect();
        assert!(xor.values().all(|&x| x != 0));
        let mut bad: BTreeMap<String, BadCopies> = BTreeMap::new();
        let mut honest: BTreeMap<SocketAddr, std::collections::BTreeSet<(u32, u32)>> =
            BTreeMap::new();
        let rx = reassemble(&fs);
        assert_eq!(
            rx.len(),
            2 * truth.flows as usize,
            "two directions a connection"
        );
        for ((client, server, from_client), r) in &rx {
            if *from_client {
                continue;
            }
            let lie = xor.get(server).copied().unwrap_or(0);
            if lie != 0 {
                let k = p
                    .hostile
                    .iter()
                    .position(|h| h.address == server.to_string())
                    .expect("k") as u16;
                assert_eq!(client.port(), LEECHER_BASE_PORT - 1 - k);
            }
            let mut once = std::collections::BTreeSet::new();
            for (_, body) in parse_messages(&r.delivered)
                .iter()
                .filter(|m| m.0 == "piece")
            {
                let index = u32::from_be_bytes(body[0..4].try_into().expect("4"));
                let begin = u32::from_be_bytes(body[4..8].try_into().expect("4"));
                let block = &body[8..];
                let offset = u64::from(index) * u64::from(t.piece_length) + u64::from(begin);
                let want: Vec<u8> = content_byte_range(a.seed, 0, offset, block.len())
                    .iter()
                    .map(|b| b ^ lie)
                    .collect();
                assert!(
                    block == want,
                    "{scenario:?}: {server} piece {index}+{begin}"
                );
                if lie == 0 {
                    honest.entry(*client).or_default().insert((index, begin));
                    continue;
                }
                assert!(once.insert((index, begin)), "{server} sent a block twice");
                let e = bad.entry(server.to_string()).or_default();
                e.blocks += 1;
                e.bytes += block.len() as u64;
            }
        }
        assert_eq!(bad, p.proven_bad_peers, "{scenario:?}");
        let every: std::collections::BTreeSet<(u32, u32)> = (0..t.num_pieces)
            .flat_map(|i| {
                (0..t.piece_len(i))
                    .step_by(BLOCK_LEN as usize)
                    .map(move |b| (i, b))
            })
            .collect();
        assert_eq!(honest.len(), 2, "{scenario:?}: one honest seeder a leecher");
        for (leecher, blocks) in &honest {
            assert_eq!(blocks, &every, "{scenario:?}: {leecher}'s honest seeder");
        }
        assert_eq!(p.pieces_verified, u64::from(t.num_pieces));
        assert_eq!(p.pieces_recovered, p.pieces_failed);
    }
}

/// Same seed, same capture; another seed draws other copies. The truth's JSON carries
/// `poison` only for a poisoned run. Impairments, --midstream and --hostile are refused.
#[test]
fn poison_is_deterministic_and_stands_alone() {
    let a = args(|a| a.poison = Some(Poison::Identical));
    let (f1, t1) = frames(&a);
    assert_eq!((f1.clone(), t1.clone()), frames(&a));
    let (_, t2) = frames(&args(|b| {
        b.poison = Some(Poison::Identical);
        b.seed = 2;
    }));
    assert_ne!(t1.poison, t2.poison);
    let json = serde_json::to_value(&t1).expect("json");
    assert_eq!(json["poison"]["scenario"], "identical");
    assert!(serde_json::to_value(frames(&args(|_| {})).1)
        .expect("json")
        .get("poison")
        .is_none());
    for refused in [
        args(|b| b.loss = 1),
        args(|b| b.midstream = true),
        args(|b| b.hostile = 1),
    ] {
        let b = SynthArgs {
            poison: Some(Poison::Before),
            ..refused
        };
        assert!(matches!(
            generate(&b, &mut |_| Ok(())),
            Err(SynthError::InvalidArgs(_))
        ));
    }
}
