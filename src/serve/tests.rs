//! The splice on hand-built connections: what the subscriber receives must be exactly the
//! remote's stream with our PIECE messages at message boundaries, what the remote receives
//! exactly the subscriber's stream with answered REQUESTs as no-ops, and acks must map back.

use std::collections::{BTreeMap, HashMap};

use etherparse::{PacketBuilder, TcpOptionElement};

use super::*;

const SUB_PORT: u16 = 50_000;
const REM_PORT: u16 = 6881;
const MSS: u16 = 1460;

/// Cached pieces by index; also records the VLAN of every flow asked about.
struct Cached(HashMap<u32, Vec<u8>>, std::sync::Mutex<Vec<Option<u16>>>);

impl BlockSource for Cached {
    fn lookup(&self, _ih: &[u8; 20], b: BlockRef, f: &FlowContext) -> Lookup {
        if let Ok(mut v) = self.1.lock() {
            v.push(f.vlan);
        }
        match self.0.get(&b.index) {
            Some(p) => Lookup::Hit(p[b.begin as usize..(b.begin + b.length) as usize].to_vec()),
            None => Lookup::Miss,
        }
    }
}

pub(super) fn piece_data(i: u32) -> Vec<u8> {
    (0..32768u32)
        .map(|k| (k.wrapping_mul(31) ^ i) as u8)
        .collect()
}

struct Seg<'a> {
    seq: u32,
    ack: Option<u32>,
    syn: bool,
    fin: bool,
    win: u16,
    ts: Option<(u32, u32)>,
    payload: &'a [u8],
}

fn seg(v6: bool, from_sub: bool, s: Seg<'_>) -> Vec<u8> {
    let (sub4, rem4) = ([198, 18, 0, 2], [198, 19, 0, 2]);
    let mut sub6 = [0u8; 16];
    sub6[..4].copy_from_slice(&[0x20, 0x01, 0x00, 0x02]);
    let mut rem6 = sub6;
    sub6[15] = 2;
    rem6[15] = 3;
    let (src_mac, dst_mac) = if from_sub {
        ([2; 6], [3; 6])
    } else {
        ([3; 6], [2; 6])
    };
    let b = PacketBuilder::ethernet2(src_mac, dst_mac);
    let b = match (v6, from_sub) {
        (false, true) => b.ipv4(sub4, rem4, 64),
        (false, false) => b.ipv4(rem4, sub4, 64),
        (true, true) => b.ipv6(sub6, rem6, 64),
        (true, false) => b.ipv6(rem6, sub6, 64),
    };
    let (sp, dp) = if from_sub {
        (SUB_PORT, REM_PORT)
    } else {
        (REM_PORT, SUB_PORT)
    };
    let mut b = b.tcp(sp, dp, s.seq, s.win);
    if s.syn {
        b = b.syn();
    }
    if s.fin {
        b = b.fin();
    }
    if let Some(a) = s.ack {
        b = b.ack(a);
    }
    let mut opts = Vec::new();
    if s.syn {
        opts.push(TcpOptionElement::MaximumSegmentSize(MSS));
        opts.push(TcpOptionElement::WindowScale(7));
    }
    if let Some((v, e)) = s.ts {
        opts.push(TcpOptionElement::Timestamp(v, e));
    }
    let b = b.options(&opts).unwrap();
    let mut out = Vec::new();
    b.write(&mut out, s.payload).unwrap();
    out
}

pub(super) fn handshake(ih: u8, id: u8) -> Vec<u8> {
    let mut h = crate::wire::peerwire::PROTOCOL.to_vec();
    h.extend_from_slice(&[0; 8]);
    h.extend_from_slice(&[ih; 20]);
    h.extend_from_slice(&[id; 20]);
    h
}

pub(super) fn request(i: u32, b: u32, l: u32) -> Vec<u8> {
    let mut m = vec![0, 0, 0, 13, 6];
    for v in [i, b, l] {
        m.extend_from_slice(&v.to_be_bytes());
    }
    m
}

pub(super) fn piece_msg(i: u32, b: u32, data: &[u8]) -> Vec<u8> {
    let mut m = (9 + data.len() as u32).to_be_bytes().to_vec();
    m.push(7);
    m.extend_from_slice(&i.to_be_bytes());
    m.extend_from_slice(&b.to_be_bytes());
    m.extend_from_slice(data);
    m
}

/// Both ends of one connection through the splice, recording what each end receives.
struct Wire {
    v6: bool,
    sp: Splicer<Cached>,
    now: u64,
    s_next: u32,
    r_next: u32,
    /// What S received (S-space seq -> payload), and R likewise.
    at_sub: BTreeMap<u32, Vec<u8>>,
    at_rem: BTreeMap<u32, Vec<u8>>,
    /// Acks R received.
    acks_at_rem: Vec<u32>,
    frames_to_sub: usize,
    /// 802.1Q tag on every frame both ways, when set; emitted frames must carry it too.
    vlan: Option<u16>,
}

/// The frame with an 802.1Q tag (VLAN `vid`) after its MAC addresses.
fn tagged(frame: &[u8], vid: u16) -> Vec<u8> {
    let mut f = frame[..12].to_vec();
    f.extend_from_slice(&[0x81, 0x00]);
    f.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
    f.extend_from_slice(&frame[12..]);
    f
}

impl Wire {
    fn new(v6: bool) -> Wire {
        Wire::with_config(v6, InlineConfig::default())
    }

    fn with_config(v6: bool, cfg: InlineConfig) -> Wire {
        let mut cached = HashMap::new();
        cached.insert(0, piece_data(0));
        cached.insert(2, piece_data(2));
        Wire {
            v6,
            sp: Splicer::new(cfg, Cached(cached, Default::default())),
            vlan: None,
            now: 1_000_000,
            s_next: 1000,
            r_next: 5000,
            at_sub: BTreeMap::new(),
            at_rem: BTreeMap::new(),
            acks_at_rem: Vec::new(),
            frames_to_sub: 0,
        }
    }

    fn deliver(&mut self, from: Port, frame: &[u8]) {
        let frame = match self.vlan {
            Some(v) => tagged(frame, v),
            None => frame.to_vec(),
        };
        let mut out = Vec::new();
        self.now += 100;
        self.sp.on_frame(self.now, from, &frame, &mut out);
        self.take(from, &frame, out);
    }

    fn take(&mut self, from: Port, frame: &[u8], out: Vec<Emit>) {
        for e in out {
            let (port, f) = match e {
                Emit::Original => (from.other(), frame.to_vec()),
                Emit::Frame(p, f) => (p, f),
            };
            let t = TcpFrame::new_checked(&f).expect("emitted frame parses");
            assert!(t.checksum_ok(), "emitted frame has a good checksum");
            assert_eq!(
                t.vlan(),
                self.vlan,
                "emitted frame on the connection's VLAN"
            );
            let data = t.payload().to_vec();
            match port {
                Port::Subscriber => {
                    self.frames_to_sub += 1;
                    if !data.is_empty() {
                        self.at_sub.insert(t.tcp().seq().0, data);
                    }
                }
                Port::Upstream => {
                    if t.tcp().flags().ack {
                        self.acks_at_rem.push(t.tcp().ack().0);
                    }
                    if !data.is_empty() {
                        self.at_rem.insert(t.tcp().seq().0, data);
                    }
                }
            }
        }
    }

    fn tick(&mut self, dt: u64) {
        self.now += dt;
        let mut out = Vec::new();
        self.sp.handle_timeout(self.now, &mut out);
        self.take(Port::Upstream, &[], out);
    }

    fn open(&mut self) {
        let f = seg(
            self.v6,
            true,
            Seg {
                seq: 999,
                ack: None,
                syn: true,
                fin: false,
                win: 65535,
                ts: Some((1, 0)),
                payload: &[],
            },
        );
        self.deliver(Port::Subscriber, &f);
        let f = seg(
            self.v6,
            false,
            Seg {
                seq: 4999,
                ack: Some(1000),
                syn: true,
                fin: false,
                win: 65535,
                ts: Some((100, 1)),
                payload: &[],
            },
        );
        self.deliver(Port::Upstream, &f);
        self.sub_ack(5000);
    }

    fn sub_send(&mut self, payload: &[u8]) {
        let f = seg(
            self.v6,
            true,
            Seg {
                seq: self.s_next,
                ack: Some(5000),
                syn: false,
                fin: false,
                win: 512,
                ts: Some((2, 100)),
                payload,
            },
        );
        self.s_next += payload.len() as u32;
        self.deliver(Port::Subscriber, &f);
    }

    fn sub_ack(&mut self, ack: u32) {
        let f = seg(
            self.v6,
            true,
            Seg {
                seq: self.s_next,
                ack: Some(ack),
                syn: false,
                fin: false,
                win: 512,
                ts: Some((3, 100)),
                payload: &[],
            },
        );
        self.deliver(Port::Subscriber, &f);
    }

    fn rem_send(&mut self, payload: &[u8]) {
        for chunk in payload.chunks(usize::from(MSS) - 12) {
            self.rem_segment(chunk, 101);
        }
    }

    /// One segment from R carrying `payload` whole, with TSval `tsval`.
    fn rem_segment(&mut self, payload: &[u8], tsval: u32) {
        let f = seg(
            self.v6,
            false,
            Seg {
                seq: self.r_next,
                ack: Some(self.s_next),
                syn: false,
                fin: false,
                win: 1000,
                ts: Some((tsval, 2)),
                payload,
            },
        );
        self.r_next += payload.len() as u32;
        self.deliver(Port::Upstream, &f);
    }

    /// S's view of R's stream: contiguous from 5000 (panics on a hole or a conflict).
    fn sub_stream(&self) -> Vec<u8> {
        contiguous(&self.at_sub, 5000)
    }

    fn rem_stream(&self) -> Vec<u8> {
        contiguous(&self.at_rem, 1000)
    }
}

fn contiguous(m: &BTreeMap<u32, Vec<u8>>, start: u32) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::new();
    for (&seq, data) in m {
        let off = (seq - start) as usize;
        assert!(off <= out.len(), "hole before {seq}");
        let overlap = (out.len() - off).min(data.len());
        assert_eq!(
            &out[off..off + overlap],
            &data[..overlap],
            "conflicting bytes at {seq}"
        );
        out.extend_from_slice(&data[overlap..]);
    }
    out
}

#[test]
fn answers_a_cached_block_and_translates_the_rest() {
    for v6 in [false, true] {
        let mut w = Wire::new(v6);
        w.open();
        let hs_s = handshake(7, 1);
        let hs_r = handshake(7, 2);
        w.sub_send(&hs_s);
        w.rem_send(&hs_r);
        let unchoke = [0, 0, 0, 1, 1];
        w.rem_send(&unchoke);
        w.sub_ack(5000 + 73);
        // interested, a request we answer (piece 0), one we do not have (piece 1)
        let mut reqs = vec![0, 0, 0, 1, 2];
        reqs.extend(request(0, 16384, 16384));
        reqs.extend(request(1, 0, 16384));
        w.sub_send(&reqs);
        let block = piece_data(0)[16384..].to_vec();
        assert_eq!(w.sp.counters().served_blocks, 1, "v6={v6}");
        assert_eq!(w.sp.counters().misses, 1);
        // R got the same number of bytes, the answered REQUEST as no-ops
        let mut expect_rem = hs_s.clone();
        expect_rem.extend_from_slice(&[0, 0, 0, 1, 2]);
        expect_rem.extend_from_slice(&framer::NOOP17);
        expect_rem.extend(request(1, 0, 16384));
        assert_eq!(w.rem_stream(), expect_rem);
        // R answers the other request; S acks everything it got
        let other = piece_data(9)[..16384].to_vec();
        w.rem_send(&piece_msg(1, 0, &other));
        let mut expect_sub = hs_r.clone();
        expect_sub.extend_from_slice(&unchoke);
        expect_sub.extend(piece_msg(0, 16384, &block));
        expect_sub.extend(piece_msg(1, 0, &other));
        assert_eq!(w.sub_stream(), expect_sub, "v6={v6}");
        let all = 5000 + expect_sub.len() as u32;
        w.sub_ack(all);
        // R sees the ack of its own bytes only
        assert_eq!(*w.acks_at_rem.last().unwrap(), w.r_next);
        // an ack inside the inserted bytes maps to the insertion point
        w.sub_ack(5000 + 73 + 100);
        assert_eq!(*w.acks_at_rem.last().unwrap(), 5000 + 73);
        assert_eq!(w.sp.counters().served_bytes, 16384);
        assert_eq!(w.sp.counters().connections_spliced, 1);
    }
}

#[test]
fn vlan_tagged_connections_are_spliced_on_their_vlan() {
    let mut w = Wire::new(false);
    w.vlan = Some(7);
    w.open();
    w.sub_send(&handshake(7, 1));
    w.rem_send(&handshake(7, 2));
    w.sub_ack(5000 + 68);
    w.sub_send(&request(0, 0, 16384));
    // Answered, with the PIECE on VLAN 7 (checked in `take`), and the policy saw VLAN 7.
    assert_eq!(w.sp.counters().served_blocks, 1);
    assert_eq!(*w.sp.source.1.lock().unwrap(), vec![Some(7)]);
    let mut expect = handshake(7, 2);
    expect.extend(piece_msg(0, 0, &piece_data(0)[..16384]));
    assert_eq!(w.sub_stream(), expect);
    // The same addresses and ports on VLAN 8 are another connection, followed from its SYN.
    w.vlan = Some(8);
    w.open();
    assert_eq!(w.sp.connections(), 2);
}

#[test]
fn inserts_at_the_next_boundary_splitting_a_segment() {
    let mut w = Wire::new(false);
    w.open();
    w.sub_send(&handshake(7, 1));
    w.rem_send(&handshake(7, 2));
    w.sub_ack(5068);
    // R is in the middle of a PIECE when S asks for a cached block
    let other = piece_data(9)[..16384].to_vec();
    let mut rstream = piece_msg(1, 0, &other);
    rstream.extend_from_slice(&[0, 0, 0, 5, 4, 0, 0, 0, 3]); // HAVE 3
    let first = 4000;
    w.rem_send(&rstream[..first]);
    w.sub_send(&request(2, 0, 16384));
    // answered, but waiting for the end of R's PIECE
    assert_eq!(w.sp.counters().served_blocks, 0);
    assert_eq!(w.rem_stream()[68..], framer::NOOP17);
    let before = w.frames_to_sub;
    w.rem_segment(&rstream[first..first + 1000], 102);
    w.rem_send(&rstream[first + 1000..]);
    assert!(w.frames_to_sub > before);
    let mut expect = handshake(7, 2);
    expect.extend_from_slice(&rstream[..piece_msg(1, 0, &other).len()]);
    expect.extend(piece_msg(2, 0, &piece_data(2)[..16384]));
    expect.extend_from_slice(&[0, 0, 0, 5, 4, 0, 0, 0, 3]);
    assert_eq!(w.sub_stream(), expect);
    assert_eq!(w.sp.counters().served_blocks, 1);
    // the PIECE ends inside one of the later segments: that one was split
    assert_eq!(w.sp.counters().split_segments, 1);
}

#[test]
fn splits_a_segment_that_straddles_the_boundary() {
    let mut w = Wire::new(false);
    w.open();
    w.sub_send(&handshake(7, 1));
    w.rem_send(&handshake(7, 2));
    w.sub_ack(5068);
    let have = [0u8, 0, 0, 5, 4, 0, 0, 0, 3];
    let mut rstream = vec![0u8, 0, 0, 1, 1]; // unchoke
    let other = piece_data(9)[..1000].to_vec();
    rstream.extend(piece_msg(1, 0, &other));
    rstream.extend_from_slice(&have);
    w.rem_send(&rstream[..500]);
    w.sub_send(&request(0, 0, 16384));
    // rest of the PIECE and the HAVE in one segment: the boundary is inside it
    w.rem_segment(&rstream[500..], 102);
    assert_eq!(w.sp.counters().split_segments, 1);
    let mut expect = handshake(7, 2);
    expect.extend_from_slice(&rstream[..rstream.len() - have.len()]);
    expect.extend(piece_msg(0, 0, &piece_data(0)[..16384]));
    expect.extend_from_slice(&have);
    assert_eq!(w.sub_stream(), expect);
}

#[test]
fn retransmits_what_the_subscriber_did_not_ack() {
    let mut w = Wire::new(false);
    w.open();
    w.sub_send(&handshake(7, 1));
    w.rem_send(&handshake(7, 2));
    w.sub_ack(5068);
    w.sub_send(&request(0, 0, 16384));
    let injected = w.sp.counters().injected_segments;
    assert_eq!(injected, 16397u64.div_ceil(u64::from(MSS) - 12));
    // S acks the first segment only; after the timeout the rest goes again, once
    w.sub_ack(5068 + u32::from(MSS) - 12);
    w.at_sub.clear();
    w.tick(150_000);
    assert_eq!(w.sp.counters().retransmitted_segments, 0);
    w.tick(100_000);
    assert_eq!(w.sp.counters().retransmitted_segments, injected - 1);
    assert_eq!(
        w.sp.counters().retransmitted_bytes,
        16397 - u64::from(MSS - 12)
    );
    // all acked: nothing more
    w.sub_ack(5068 + 16397);
    w.tick(10_000_000);
    assert_eq!(w.sp.counters().retransmitted_segments, injected - 1);
}

#[test]
fn leaves_unknown_and_midstream_connections_alone() {
    // no SYN seen: everything forwarded as it came
    let mut w = Wire::new(false);
    w.sub_send(&handshake(7, 1));
    w.rem_send(&handshake(7, 2));
    w.sub_send(&request(0, 0, 16384));
    assert_eq!(w.sp.counters().served_blocks, 0);
    assert_eq!(w.sp.connections(), 0);
    // An MSE-looking first flight is held while its plaintext start is looked for: nothing
    // in it is a REQUEST; with none found in 2 KiB (later than any MSE prefix) the
    // connection is counted as not BitTorrent, and nothing was rewritten.
    let mut w = Wire::new(false);
    w.open();
    w.sub_send(&[0x5a; 96]);
    w.rem_send(&[0xa5; 96]);
    w.sub_send(&request(0, 0, 16384));
    assert_eq!(w.sp.counters().requests, 0);
    assert_eq!(
        w.sp.counters().connections_bypassed.get("not_bittorrent"),
        None
    );
    let mut rng = fastrand::Rng::with_seed(9);
    let junk = crate::serve::mse::fake::rc4(&mut rng, 2048);
    w.sub_send(&junk);
    w.sub_send(&request(0, 0, 16384));
    assert_eq!(
        w.sp.counters().connections_bypassed.get("not_bittorrent"),
        Some(&1)
    );
    let mut sent = vec![0x5a; 96];
    sent.extend(request(0, 0, 16384));
    sent.extend(&junk);
    sent.extend(request(0, 0, 16384));
    assert_eq!(w.rem_stream(), sent);
    assert_eq!(w.sp.counters().served_blocks, 0);
    assert_eq!(w.sp.counters().rewritten_segments, 0);
}

#[test]
fn overload_forwards_requests() {
    let mut w = Wire::new(false);
    w.open();
    w.sub_send(&handshake(7, 1));
    w.rem_send(&handshake(7, 2));
    w.sp.set_overloaded(true);
    w.sub_send(&request(0, 0, 16384));
    assert_eq!(w.sp.counters().served_blocks, 0);
    assert_eq!(w.sp.counters().bypassed.get("overload"), Some(&1));
    let mut expect = handshake(7, 1);
    expect.extend(request(0, 0, 16384));
    assert_eq!(w.rem_stream(), expect);
}

#[test]
fn the_deadline_is_the_next_retransmission() {
    let mut w = Wire::new(false);
    w.open();
    w.sub_send(&handshake(7, 1));
    w.rem_send(&handshake(7, 2));
    w.sub_ack(5068);
    assert_eq!(
        w.sp.poll_timeout(),
        None,
        "nothing inserted: only frames wake it"
    );
    w.sub_send(&request(0, 0, 16384));
    let sent = w.now;
    assert_eq!(w.sp.poll_timeout(), Some(sent + 200_000));
    // not due: nothing happens, the deadline stays
    w.tick(199_000);
    assert_eq!(w.sp.counters().retransmitted_segments, 0);
    assert_eq!(w.sp.poll_timeout(), Some(sent + 200_000));
    // S has it all: no deadline
    w.sub_ack(5068 + 16397);
    assert_eq!(w.sp.poll_timeout(), None);
}

#[test]
fn caps_on_answered_blocks_and_insertion_points_are_counted() {
    let cfg = InlineConfig {
        max_answered_per_connection: 1,
        max_insertion_points: 1,
        ..InlineConfig::default()
    };
    let mut w = Wire::with_config(false, cfg);
    w.open();
    w.sub_send(&handshake(7, 1));
    w.rem_send(&handshake(7, 2));
    w.sub_ack(5068);
    // two answered in one segment: both go in at one point; the first is forgotten
    let mut reqs = request(0, 0, 16384);
    reqs.extend(request(0, 16384, 16384));
    w.sub_send(&reqs);
    assert_eq!(w.sp.counters().served_blocks, 2);
    assert_eq!(w.sp.counters().answered_evicted, 1);
    // R moves on: a new point would be needed, and the cap is reached
    w.rem_send(&[0, 0, 0, 1, 1]);
    w.sub_send(&request(2, 0, 16384));
    assert_eq!(w.sp.counters().served_blocks, 2);
    assert_eq!(w.sp.counters().insertion_points_full, 1);
    assert_eq!(w.sp.counters().bypassed.get("queue_full"), Some(&1));
    let mut expect = handshake(7, 1);
    expect.extend_from_slice(&framer::NOOP17);
    expect.extend_from_slice(&framer::NOOP17);
    expect.extend(request(2, 0, 16384));
    assert_eq!(w.rem_stream(), expect);
}

/// One MSE/PE connection that selected plaintext, through the splice: the initiator's
/// handshake travelled in IA (encrypted, never seen), the responder's in the clear. `s_opens`:
/// S is the initiator (else R is, and opens the connection). S asks for a cached block once
/// R unchoked it; what each end receives must be the other's stream byte for byte (the MSE
/// bytes untouched), but for the answered REQUEST (no-ops toward R) and the PIECE (inserted
/// at R's boundary toward S).
fn mse_then_plaintext(s_opens: bool, seed: u64) {
    use crate::serve::mse::fake;
    use crate::wire::peerwire::emit;
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut w = Wire::new(false);
    if s_opens {
        w.open();
    } else {
        // R's SYN, S's SYN-ACK, R's ACK.
        for (from_sub, seq, ack) in [(false, 4999, None), (true, 999, Some(5000))] {
            let f = seg(
                false,
                from_sub,
                Seg {
                    seq,
                    ack,
                    syn: true,
                    fin: false,
                    win: 65535,
                    ts: Some((1, 1)),
                    payload: &[],
                },
            );
            w.deliver(
                if from_sub {
                    Port::Subscriber
                } else {
                    Port::Upstream
                },
                &f,
            );
        }
        w.rem_segment(&[], 100);
        w.sub_ack(5000);
    }
    let (pad_1, pad_2) = (rng.usize(..=512), rng.usize(..=512));
    let (pad_3, pad_4) = (rng.usize(..=512), rng.usize(..=512));
    // Initiator: Ya + PadA, then the hashes, RC4(VC .. len(IA)) and RC4(IA = handshake).
    let a = fake::initiator(&mut rng, pad_1, pad_2, 68);
    let a_first = 96 + pad_1;
    // Responder: Yb + PadB, then RC4(VC, select, PadD) and its handshake in the clear.
    let b = fake::responder(&mut rng, pad_3, pad_4);
    let b_first = 96 + pad_3;
    let mut ext = Vec::new();
    emit::extended(&mut ext, 0, &[b"d1:md11:ut_metadatai3eee"]);
    let mut bitfield = Vec::new();
    emit::message(
        &mut bitfield,
        crate::wire::peerwire::Kind::Bitfield,
        &[0xe0],
    );
    let interested = [0u8, 0, 0, 1, 2];
    let unchoke = [0u8, 0, 0, 1, 1];
    let hs_b = handshake(7, 2);
    // The initiator's plaintext: no handshake (it was in IA); the responder's: handshake.
    let mut init_plain = ext.clone();
    init_plain.extend_from_slice(&bitfield);
    let mut resp_plain = hs_b.clone();
    resp_plain.extend_from_slice(&ext);
    resp_plain.extend_from_slice(&bitfield);

    let (s_pre, r_pre, s_first, r_first) = if s_opens {
        (&a, &b, a_first, b_first)
    } else {
        (&b, &a, b_first, a_first)
    };
    let (s_plain, r_plain) = if s_opens {
        (&init_plain, &resp_plain)
    } else {
        (&resp_plain, &init_plain)
    };
    // What each end sent: [S, R].
    let mut sent: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
    let send = |w: &mut Wire, sent: &mut [Vec<u8>; 2], from_sub: bool, bytes: &[u8]| {
        if from_sub {
            sent[0].extend_from_slice(bytes);
            w.sub_send(bytes);
        } else {
            sent[1].extend_from_slice(bytes);
            w.rem_send(bytes);
        }
    };
    // The exchange: the initiator's DH value first, the responder's, the rest of each.
    let init_is_sub = s_opens;
    let (init_pre, resp_pre) = if s_opens {
        (s_pre, r_pre)
    } else {
        (r_pre, s_pre)
    };
    let (init_first, resp_first) = if s_opens {
        (s_first, r_first)
    } else {
        (r_first, s_first)
    };
    send(&mut w, &mut sent, init_is_sub, &init_pre[..init_first]);
    send(&mut w, &mut sent, !init_is_sub, &resp_pre[..resp_first]);
    send(&mut w, &mut sent, init_is_sub, &init_pre[init_first..]);
    // The responder's step 4 and its plaintext in one write: the start inside a segment.
    let mut resp_rest = resp_pre[resp_first..].to_vec();
    resp_rest.extend_from_slice(if s_opens { r_plain } else { s_plain });
    send(&mut w, &mut sent, !init_is_sub, &resp_rest);
    send(
        &mut w,
        &mut sent,
        init_is_sub,
        if s_opens { s_plain } else { r_plain },
    );
    // R unchokes S (an initiator R proves its start with it: 44 + 20 + 36 bits).
    send(&mut w, &mut sent, false, &unchoke);
    send(&mut w, &mut sent, true, &interested);
    assert!(w.sp.counters().connections_bypassed.is_empty());
    let r_at_request = sent[1].len();
    w.sub_ack(5000 + r_at_request as u32);
    let mut reqs = request(0, 16384, 16384);
    reqs.extend(request(1, 0, 16384));
    send(&mut w, &mut sent, true, &reqs);
    let other = piece_data(9)[..16384].to_vec();
    send(&mut w, &mut sent, false, &piece_msg(1, 0, &other));

    let [s_stream, r_stream] = sent;
    let c = w.sp.counters();
    assert_eq!(c.served_blocks, 1, "s_opens={s_opens} seed={seed}");
    assert_eq!(c.misses, 1);
    assert_eq!(c.mse_served_blocks, 1);
    assert_eq!(c.mse_connections_served, 1);
    assert_eq!(c.connections_spliced, 1);
    // R got S's stream, MSE bytes and all, with the answered REQUEST as no-ops.
    let mut expect_rem = s_stream.clone();
    let at = s_stream.len() - 34;
    expect_rem[at..at + 17].copy_from_slice(&framer::NOOP17);
    assert_eq!(w.rem_stream(), expect_rem);
    // S got R's stream with the PIECE where R's stream stood when S asked.
    let mut expect_sub = r_stream[..r_at_request].to_vec();
    expect_sub.extend(piece_msg(0, 16384, &piece_data(0)[16384..]));
    expect_sub.extend_from_slice(&r_stream[r_at_request..]);
    assert_eq!(w.sub_stream(), expect_sub, "s_opens={s_opens} seed={seed}");
}

#[test]
fn serves_mse_connections_that_selected_plaintext() {
    for seed in 0..8 {
        mse_then_plaintext(true, seed);
        mse_then_plaintext(false, seed);
    }
}

#[test]
fn rc4_connections_are_bypassed_untouched() {
    use crate::serve::mse::fake;
    for seed in 0..20 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut w = Wire::new(false);
        w.open();
        let pads: Vec<usize> = (0..4).map(|_| rng.usize(..=512)).collect();
        let a = fake::initiator(&mut rng, pads[0], pads[1], 68);
        let b = fake::responder(&mut rng, pads[2], pads[3]);
        let (s_rc4, r_rc4) = (fake::rc4(&mut rng, 3000), fake::rc4(&mut rng, 3000));
        w.sub_send(&a[..96]);
        w.rem_send(&b[..96]);
        w.sub_send(&a[96..]);
        w.rem_send(&b[96..]);
        for k in 0..3 {
            w.sub_send(&s_rc4[k * 1000..(k + 1) * 1000]);
            w.rem_send(&r_rc4[k * 1000..(k + 1) * 1000]);
        }
        let c = w.sp.counters();
        assert_eq!(
            c.connections_bypassed.get("not_bittorrent"),
            Some(&1),
            "seed {seed}"
        );
        assert_eq!(
            (c.requests, c.rewritten_segments, c.served_blocks),
            (0, 0, 0)
        );
        let mut s = a.clone();
        s.extend_from_slice(&s_rc4);
        assert_eq!(w.rem_stream(), s);
        let mut r = b.clone();
        r.extend_from_slice(&r_rc4);
        assert_eq!(w.sub_stream(), r);
    }
}
