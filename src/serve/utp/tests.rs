//! The uTP splice on hand-built connections: what the subscriber receives, put in packet
//! order, must be exactly the remote's stream with our PIECE messages at a message boundary;
//! what the remote receives exactly the subscriber's stream with answered REQUESTs as
//! no-ops; acks and selective acks must map back; inserted packets are resent until acked.

use std::collections::{BTreeMap, HashMap};

use etherparse::PacketBuilder;

use super::super::tests::{piece_data, piece_msg, request};
use super::super::{BlockSource, Emit, InlineConfig, Lookup, Port, Splicer};
use crate::swarm::pieces::FlowContext;
use crate::wire::peerwire::BlockRef;
use crate::wire::udpframe::UdpFrame;
use crate::wire::utp::{UtpPacket, UtpRepr, UtpType};

const SUB_PORT: u16 = 50_000;
const REM_PORT: u16 = 6881;
const IH: [u8; 20] = [7; 20];
const CONN: u16 = 1000;

/// The TCP tests' handshake, for this file's swarm.
fn handshake(id: u8) -> Vec<u8> {
    super::super::tests::handshake(IH[0], id)
}

struct Cached(HashMap<u32, Vec<u8>>);

impl BlockSource for Cached {
    fn lookup(&self, _ih: &[u8; 20], b: BlockRef, _f: &FlowContext) -> Lookup {
        match self.0.get(&b.index) {
            Some(p) => Lookup::Hit(p[b.begin as usize..(b.begin + b.length) as usize].to_vec()),
            None => Lookup::Miss,
        }
    }
}

const UNCHOKE: [u8; 5] = [0, 0, 0, 1, 1];
const HAVE_5: [u8; 9] = [0, 0, 0, 5, 4, 0, 0, 0, 5];

/// A uTP packet in an Ethernet frame.
#[allow(clippy::too_many_arguments)]
fn frame(
    v6: bool,
    from_sub: bool,
    kind: UtpType,
    conn_id: u16,
    seq: u16,
    ack: u16,
    wnd: u32,
    sack: Option<&[u8]>,
    payload: &[u8],
) -> Vec<u8> {
    let mut h = UtpRepr {
        kind,
        conn_id,
        timestamp: 1_000,
        ts_diff: 50,
        wnd,
        seq,
        ack,
    }
    .emit()
    .to_vec();
    if let Some(m) = sack {
        h[1] = 1;
        h.extend_from_slice(&[0, m.len() as u8]);
        h.extend_from_slice(m);
    }
    h.extend_from_slice(payload);
    let (sub4, rem4) = ([198, 18, 0, 2], [198, 19, 0, 2]);
    let mut sub6 = [0u8; 16];
    sub6[..4].copy_from_slice(&[0x20, 0x01, 0x00, 0x02]);
    let mut rem6 = sub6;
    sub6[15] = 2;
    rem6[15] = 3;
    let b = PacketBuilder::ethernet2([2; 6], [3; 6]);
    let b = match (v6, from_sub) {
        (false, true) => b.ipv4(sub4, rem4, 64),
        (false, false) => b.ipv4(rem4, sub4, 64),
        (true, true) => b.ipv6(sub6, rem6, 64),
        (true, false) => b.ipv6(rem6, sub6, 64),
    };
    let b = if from_sub {
        b.udp(SUB_PORT, REM_PORT)
    } else {
        b.udp(REM_PORT, SUB_PORT)
    };
    let mut out = Vec::new();
    b.write(&mut out, &h).unwrap();
    out
}

/// A received uTP packet: header fields and payload.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Got {
    kind: UtpType,
    conn_id: u16,
    seq: u16,
    ack: u16,
    wnd: u32,
    sack: Option<Vec<u8>>,
    payload: Vec<u8>,
}

fn parse(f: &[u8]) -> Got {
    let u = UdpFrame::new_checked(f).expect("a UDP frame");
    let p = UtpPacket::new_checked(u.payload()).expect("a uTP packet");
    Got {
        kind: p.kind,
        conn_id: p.conn_id,
        seq: p.seq,
        ack: p.ack,
        wnd: p.wnd,
        sack: p.sack.map(<[u8]>::to_vec),
        payload: p.payload.to_vec(),
    }
}

/// The two ends of one uTP connection through the splice (S initiates with id CONN: S
/// sends CONN+1, R sends CONN), recording what each end receives.
struct Wire {
    sp: Splicer<Cached>,
    v6: bool,
    now: u64,
    to_s: Vec<Got>,
    to_r: Vec<Got>,
    s_seq: u16,
    r_seq: u16,
}

impl Wire {
    fn new(v6: bool, s_seq: u16, r_seq: u16, cfg: InlineConfig) -> Wire {
        let cache = Cached(
            [(3, piece_data(3)), (4, piece_data(4))]
                .into_iter()
                .collect(),
        );
        Wire {
            sp: Splicer::new(cfg, cache),
            v6,
            now: 1_000_000,
            to_s: Vec::new(),
            to_r: Vec::new(),
            s_seq,
            r_seq,
        }
    }

    fn deliver(&mut self, from: Port, f: &[u8], out: Vec<Emit>) {
        for e in out {
            let (port, bytes) = match e {
                Emit::Original => (from.other(), f.to_vec()),
                Emit::Frame(p, b) => (p, b),
            };
            let g = parse(&bytes);
            match port {
                Port::Subscriber => self.to_s.push(g),
                Port::Upstream => self.to_r.push(g),
            }
        }
    }

    /// S sends a packet (DATA/FIN numbered from its counter, STATE carrying its next).
    fn s(&mut self, kind: UtpType, ack: u16, wnd: u32, sack: Option<&[u8]>, payload: &[u8]) {
        let seq = self.s_seq;
        if matches!(kind, UtpType::Data | UtpType::Fin | UtpType::Syn) {
            self.s_seq = self.s_seq.wrapping_add(1);
        }
        let id = if kind == UtpType::Syn { CONN } else { CONN + 1 };
        let f = frame(self.v6, true, kind, id, seq, ack, wnd, sack, payload);
        let mut out = Vec::new();
        self.sp.on_frame(self.now, Port::Subscriber, &f, &mut out);
        self.deliver(Port::Subscriber, &f, out);
    }

    fn r(&mut self, kind: UtpType, ack: u16, payload: &[u8]) {
        let seq = self.r_seq;
        if matches!(kind, UtpType::Data | UtpType::Fin) {
            self.r_seq = self.r_seq.wrapping_add(1);
        }
        let f = frame(self.v6, false, kind, CONN, seq, ack, 1 << 20, None, payload);
        let mut out = Vec::new();
        self.sp.on_frame(self.now, Port::Upstream, &f, &mut out);
        self.deliver(Port::Upstream, &f, out);
    }

    fn tick(&mut self, us: u64) {
        self.now += us;
        if self.sp.poll_timeout().is_some_and(|t| t <= self.now) {
            let mut out = Vec::new();
            self.sp.handle_timeout(self.now, &mut out);
            self.deliver(Port::Upstream, &[], out);
        }
    }

    /// SYN, STATE, both handshakes, R's UNCHOKE; S has acked everything R sent.
    fn open(&mut self) {
        let syn_seq = self.s_seq;
        self.s(UtpType::Syn, 0, 1 << 20, None, &[]);
        self.r(UtpType::State, syn_seq, &[]);
        let r0 = self.r_seq;
        self.s(
            UtpType::Data,
            r0.wrapping_sub(1),
            1 << 20,
            None,
            &handshake(1),
        );
        let mut hs = handshake(2);
        hs.extend_from_slice(&UNCHOKE);
        let s_last = self.s_seq.wrapping_sub(1);
        self.r(UtpType::Data, s_last, &hs);
        self.s(UtpType::State, r0, 1 << 20, None, &[]);
    }

    /// S's received DATA packets in number order, concatenated (duplicates once).
    fn s_stream(&self, from: u16) -> Vec<u8> {
        let mut by: BTreeMap<i32, &Got> = BTreeMap::new();
        for g in &self.to_s {
            if g.kind == UtpType::Data {
                let d = i32::from(g.seq.wrapping_sub(from) as i16);
                if d >= 0 {
                    by.insert(d, g);
                }
            }
        }
        let mut out = Vec::new();
        for (want, (d, g)) in by.into_iter().enumerate() {
            assert_eq!(
                d,
                want as i32,
                "S misses packet {}",
                from.wrapping_add(want as u16)
            );
            out.extend_from_slice(&g.payload);
        }
        out
    }

    fn r_stream(&self) -> Vec<u8> {
        self.to_r
            .iter()
            .filter(|g| g.kind == UtpType::Data)
            .flat_map(|g| g.payload.clone())
            .collect()
    }
}

/// S requests two cached blocks; they arrive as inserted packets right after R's unchoke;
/// R's later HAVE is shifted past them; R sees the REQUESTs as no-ops; S's acks map back.
fn serve_two_blocks(v6: bool, s0: u16, r0: u16) {
    let mut w = Wire::new(v6, s0, r0, InlineConfig::default());
    w.open();
    let r_first = r0;
    let reqs = [request(3, 0, 16384), request(4, 16384, 16384)].concat();
    let r_next = w.r_seq;
    w.s(UtpType::Data, r_next.wrapping_sub(1), 1 << 20, None, &reqs);
    // R never sees the REQUESTs: the packet keeps its length, its bytes are no-ops.
    let last_to_r = w.to_r.last().unwrap().clone();
    assert_eq!(last_to_r.payload.len(), 34);
    assert_eq!(last_to_r.payload, [NOOP17, NOOP17].concat());
    // Both blocks went in as packets numbered from R's next (R idle, at a boundary).
    let inserted: Vec<&Got> = w
        .to_s
        .iter()
        .filter(|g| g.kind == UtpType::Data && g.seq.wrapping_sub(r_next) < 100)
        .collect();
    let n = inserted.len() as u16;
    assert_eq!(n, (2 * (16384u16 + 13)).div_ceil(1200));
    assert!(inserted
        .iter()
        .all(|g| g.payload.len() <= 1200 && g.conn_id == CONN));
    assert_eq!(w.sp.counters().utp.served_blocks, 2);
    // R's HAVE comes next: shifted by the inserted packets.
    let s_last = w.s_seq.wrapping_sub(1);
    w.r(UtpType::Data, s_last, &HAVE_5);
    assert_eq!(w.to_s.last().unwrap().seq, r_next.wrapping_add(n));
    // S's stream: R's stream with the PIECEs at the boundary after the UNCHOKE.
    let mut want = handshake(2);
    want.extend_from_slice(&UNCHOKE);
    want.extend_from_slice(&piece_msg(3, 0, &piece_data(3)[..16384]));
    want.extend_from_slice(&piece_msg(4, 16384, &piece_data(4)[16384..]));
    want.extend_from_slice(&HAVE_5);
    assert_eq!(w.s_stream(r_first), want);
    // R's stream: S's with the REQUESTs as no-ops.
    assert_eq!(
        w.r_stream(),
        [handshake(1), NOOP17.to_vec(), NOOP17.to_vec()].concat()
    );
    // S acks the first inserted packet: R's view does not move; the ack was R's last
    // packet before them (the UNCHOKE), already told: kept from R (a duplicate ack to it).
    let before = w.to_r.len();
    w.s(UtpType::State, r_next, 1 << 20, None, &[]);
    assert_eq!(w.to_r.len(), before + 1, "first mapped ack is passed on");
    assert_eq!(w.to_r.last().unwrap().ack, r_next.wrapping_sub(1));
    w.s(UtpType::State, r_next.wrapping_add(1), 1 << 20, None, &[]);
    assert_eq!(
        w.to_r.len(),
        before + 1,
        "an ack of inserted packets only is absorbed"
    );
    assert_eq!(w.sp.counters().utp.acks_absorbed, 1);
    // S acks R's HAVE (S's number r_next + n): R hears its own number r_next.
    w.s(UtpType::State, r_next.wrapping_add(n), 1 << 20, None, &[]);
    let g = w.to_r.last().unwrap();
    assert_eq!(g.ack, r_next);
    // everything acked: nothing left to resend, the window is S's own again
    assert_eq!(g.wnd, 1 << 20);
    w.tick(10_000_000);
    assert_eq!(w.sp.counters().utp.retransmitted_packets, 0);
}

#[test]
fn serves_blocks_over_utp_v4_and_v6() {
    serve_two_blocks(false, 100, 5000);
    serve_two_blocks(true, 100, 5000);
}

#[test]
fn numbers_wrap_around() {
    // R's numbers cross 65535 -> 0 inside the inserted run, S's at its REQUEST.
    serve_two_blocks(false, 65533, 65530);
    serve_two_blocks(false, 65534, 65534);
}

use super::super::framer::NOOP17;

#[test]
fn window_to_r_shrinks_by_unacked_inserted_bytes() {
    let mut w = Wire::new(false, 10, 20, InlineConfig::default());
    w.open();
    let r_next = w.r_seq;
    w.s(
        UtpType::Data,
        r_next.wrapping_sub(1),
        1 << 20,
        None,
        &request(3, 0, 16384),
    );
    // S acks nothing new but sends data: its window reaches R less our 16 KiB in flight.
    w.s(
        UtpType::Data,
        r_next.wrapping_sub(1),
        1 << 20,
        None,
        &HAVE_5,
    );
    let g = w.to_r.last().unwrap();
    assert_eq!(g.wnd, (1 << 20) - (16384 + 13));
    assert_eq!(g.ack, r_next.wrapping_sub(1));
}

#[test]
fn selective_acks_map_and_a_missing_inserted_packet_is_resent() {
    let mut w = Wire::new(false, 10, 20, InlineConfig::default());
    w.open();
    let r_next = w.r_seq;
    w.s(
        UtpType::Data,
        r_next.wrapping_sub(1),
        1 << 20,
        None,
        &request(3, 0, 16384),
    );
    let n = (16384u16 + 13).div_ceil(1200);
    // R sends two more packets (S numbers them r_next+n, +n+1).
    let s_last = w.s_seq.wrapping_sub(1);
    w.r(UtpType::Data, s_last, &HAVE_5);
    w.r(UtpType::Data, s_last, &HAVE_5);
    let sent_before = w.to_s.len();
    // S lost the first inserted packet (r_next) and has everything else: ack r_next-1,
    // mask bits from r_next+1: n-1 inserted ones, then R's two.
    let bits = n as usize - 1 + 2;
    let mut mask = vec![0u8; 4];
    for i in 0..bits {
        mask[i / 8] |= 1 << (i % 8);
    }
    w.s(
        UtpType::State,
        r_next.wrapping_sub(1),
        1 << 20,
        Some(&mask),
        &[],
    );
    // resent at once (S reports later packets), numbered as before
    let resent: Vec<&Got> = w.to_s[sent_before..].iter().collect();
    assert_eq!(resent.len(), 1);
    assert_eq!(resent[0].seq, r_next);
    assert_eq!(w.sp.counters().utp.retransmitted_packets, 1);
    // R hears: S has everything of R's to r_next+1 (the only hole is ours), empty mask.
    let g = w.to_r.last().unwrap();
    assert_eq!(g.ack, r_next.wrapping_add(1));
    assert_eq!(g.sack.as_deref(), Some(&[0u8; 4][..]));
    // S gets the packet and acks everything: nothing more is resent later
    w.s(
        UtpType::State,
        r_next.wrapping_add(n + 1),
        1 << 20,
        None,
        &[],
    );
    w.tick(10_000_000);
    assert_eq!(w.sp.counters().utp.retransmitted_packets, 1);
}

#[test]
fn unacked_inserted_packets_are_resent_on_timeout_then_abandoned() {
    let cfg = InlineConfig {
        max_retransmits: 2,
        ..InlineConfig::default()
    };
    let mut w = Wire::new(false, 10, 20, cfg);
    w.open();
    let r_next = w.r_seq;
    w.s(
        UtpType::Data,
        r_next.wrapping_sub(1),
        1 << 20,
        None,
        &request(3, 0, 1024),
    );
    assert_eq!(w.sp.counters().utp.injected_packets, 1);
    let deadline = w.sp.poll_timeout().expect("a retransmission is due later");
    assert!(deadline > w.now);
    for _ in 0..4 {
        w.tick(5_000_000);
    }
    let c = w.sp.counters();
    assert_eq!(c.utp.retransmitted_packets, 2);
    assert_eq!(c.utp.retransmits_abandoned, 1);
    let resent: Vec<&Got> = w.to_s.iter().filter(|g| g.seq == r_next).collect();
    assert_eq!(resent.len(), 3);
    assert!(resent.windows(2).all(|p| p[0].payload == p[1].payload));
}

#[test]
fn a_gap_in_r_numbering_stops_serving() {
    let mut w = Wire::new(false, 10, 20, InlineConfig::default());
    w.open();
    // R's next packet is lost before the box: it sees the one after.
    w.r_seq = w.r_seq.wrapping_add(1);
    let s_last = w.s_seq.wrapping_sub(1);
    w.r(UtpType::Data, s_last, &HAVE_5);
    let r_next = w.r_seq;
    w.s(
        UtpType::Data,
        r_next.wrapping_sub(1),
        1 << 20,
        None,
        &request(3, 0, 16384),
    );
    let c = w.sp.counters();
    assert_eq!(c.utp.served_blocks, 0);
    assert_eq!(c.utp_bypassed.get("gap"), Some(&1));
    assert_eq!(c.utp_connections_bypassed.get("gap"), Some(&1));
    // the REQUEST went to R untouched
    assert_eq!(w.to_r.last().unwrap().payload, request(3, 0, 16384));
}

#[test]
fn a_block_the_cache_lacks_goes_to_r() {
    let mut w = Wire::new(false, 10, 20, InlineConfig::default());
    w.open();
    let r_next = w.r_seq;
    w.s(
        UtpType::Data,
        r_next.wrapping_sub(1),
        1 << 20,
        None,
        &request(9, 0, 16384),
    );
    assert_eq!(w.to_r.last().unwrap().payload, request(9, 0, 16384));
    assert_eq!(w.sp.counters().utp.misses, 1);
    // nothing translated: R's packets pass as they came
    let s_last = w.s_seq.wrapping_sub(1);
    w.r(UtpType::Data, s_last, &HAVE_5);
    assert_eq!(w.to_s.last().unwrap().seq, r_next);
}

#[test]
fn dht_and_unknown_datagrams_pass_untouched() {
    let mut w = Wire::new(false, 10, 20, InlineConfig::default());
    w.open();
    let dht = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe";
    let b = PacketBuilder::ethernet2([2; 6], [3; 6])
        .ipv4([198, 18, 0, 2], [198, 19, 0, 2], 64)
        .udp(SUB_PORT, REM_PORT);
    let mut f = Vec::new();
    b.write(&mut f, dht).unwrap();
    let mut out = Vec::new();
    w.sp.on_frame(w.now, Port::Subscriber, &f, &mut out);
    assert_eq!(out, vec![Emit::Original]);
    // a uTP packet of a connection never seen opening
    let f = frame(
        false,
        true,
        UtpType::Data,
        777,
        5,
        5,
        1 << 20,
        None,
        &HAVE_5,
    );
    let mut out = Vec::new();
    w.sp.on_frame(w.now, Port::Subscriber, &f, &mut out);
    assert_eq!(out, vec![Emit::Original]);
}

#[test]
fn a_cancel_of_an_answered_block_is_absorbed() {
    let mut w = Wire::new(false, 10, 20, InlineConfig::default());
    w.open();
    let r_next = w.r_seq;
    // R is busy mid-message: blocks wait for a boundary
    let s_last = w.s_seq.wrapping_sub(1);
    w.r(UtpType::Data, s_last, &HAVE_5[..6]);
    w.s(UtpType::Data, r_next, 1 << 20, None, &request(3, 0, 16384));
    assert_eq!(w.sp.counters().utp.injected_packets, 0, "not at a boundary");
    let mut cancel = request(3, 0, 16384);
    cancel[4] = 8;
    w.s(UtpType::Data, r_next, 1 << 20, None, &cancel);
    assert_eq!(w.to_r.last().unwrap().payload, NOOP17.to_vec());
    assert_eq!(w.sp.counters().cancels_absorbed, 1);
    // R finishes its message: nothing goes in (the block was cancelled)
    w.r(UtpType::Data, s_last, &HAVE_5[6..]);
    assert_eq!(w.sp.counters().utp.injected_packets, 0);
}
