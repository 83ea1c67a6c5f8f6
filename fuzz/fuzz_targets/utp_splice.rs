//! One uTP (BEP 29) connection through the inline splice, packet by packet.
//!
//! The subscriber S is 198.18.0.2:50000, the remote R 198.19.0.2:6881 (IPv6: 2001:2::2 and
//! 2001:2:0:1::2). The target opens the connection itself (S SYN with connection id X and
//! seq s0, R's STATE acking it, S's handshake for info-hash [7; 20], R's handshake and
//! UNCHOKE), then plays the input's packets.
//!
//! Input: `[cfg][x: u16][s0: u16][r0: u16]` (big-endian), then operations
//! `[ctl][a][b][dt]` followed by the optional parts `ctl` announces:
//! - `cfg` bit 0: IPv6; bit 1: tiny caps (40 KiB queued per connection, 1 retransmit, 8
//!   packets in flight, 4 insertion points, 1 s idle timeout); bit 2: the engine is
//!   overloaded; bit 3: IPv4 datagrams carry no UDP checksum (zero).
//! - `ctl` bit 0: R sends (else S); bits 1-3: 0 DATA, 1 STATE, 2 FIN, 3 RESET, 4 SYN,
//!   5 a DHT datagram on the same 5-tuple, 6 DATA, 7 no packet: time jumps to the splice's
//!   deadline; bit 4: a selective ack follows, `[n]` then (n & 7) + 1 mask bytes: the
//!   receiver's real one when n bit 7 is set, else the fuzz bytes that follow; bits 5-6,
//!   DATA only: the payload (below); bit 7: `[w]` follows, wnd_size = w^2 * 64 (else 1 MiB).
//! - `a`, `b`: seq_nr and ack_nr offsets: 0 when even, else `(x as i8) >> 3` (-16..15), so
//!   reordering, repeats and gaps happen. seq_nr is the sender's next number plus the offset
//!   (DATA/FIN at or after the next one move it on); ack_nr is the last packet the sender
//!   has in order plus the offset. Start numbers come from the input, so 16-bit wrap runs.
//! - `dt`: time advances dt^2 * 100 us first; due timers run (`handle_timeout` when
//!   `poll_timeout` has come), as the bridge does.
//! - Payload (DATA): 0 `[len]` fuzz bytes; 1 REQUESTs, 2 CANCELs: `[m]` then (m & 3) + 1
//!   times `[index][blk]` (begin (blk & 3) * 16 KiB, length 16 KiB, or (blk & 0x7f) * 129 + 1
//!   when blk bit 7 is set), appended to the sender's stream; 3 `[n]`: the sender's stream
//!   goes on (R: a PIECE of an uncached block when it has nothing to send; S: INTERESTED).
//!   Every kind but 0 sends the next `8 * split` bytes of the stream (split = m >> 2, or
//!   n; 0: all of it, at most 1400 bytes), so messages cross packets.
//!
//! The block source holds blocks of even pieces (Hit, deterministic bytes) and no others.
//! S acks what the box delivered to it (R's packets as rewritten, and the inserted ones);
//! R acks what S's packets that reached it.
//!
//! Checks (no panic, and): every emitted frame is UDP with a correct checksum (or none
//! over IPv4, as sent) carrying a uTP header `UtpPacket::new_checked` accepts; a frame from
//! S goes upstream at most once, its length unchanged; a frame from R reaches S first and at
//! most once, its length unchanged; inserted packets are DATA toward S; DHT datagrams are
//! `Emit::Original` alone; after `handle_timeout(now)` the next `poll_timeout()` is later
//! than `now`; at most two connections are tracked; inserted payload S has not acked stays
//! within the per-connection queue cap; served blocks never exceed REQUESTs.
#![no_main]

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use peercache::serve::{BlockSource, Emit, InlineConfig, Lookup, Port, Splicer};
use peercache::swarm::pieces::FlowContext;
use peercache::wire::checksum::{self, PROTO_UDP};
use peercache::wire::ether::EthernetRepr;
use peercache::wire::ip::{IpRepr, Ipv4Repr, Ipv6Repr};
use peercache::wire::peerwire::{emit, BlockRef, Kind};
use peercache::wire::udp::UdpRepr;
use peercache::wire::udpframe::UdpFrame;
use peercache::wire::utp::{UtpPacket, UtpRepr, UtpType};

const IH: [u8; 20] = [7; 20];
const BLOCK: u32 = 16 << 10;
const S_PORT: u16 = 50000;
const R_PORT: u16 = 6881;
/// The most stream bytes one packet carries.
const MAX_PAYLOAD: usize = 1400;
/// Start of the inserted packets' retransmission timeout, and its cap (`utp/inject.rs`).
const MAX_RTO: u64 = 4_000_000;

struct Source;

impl BlockSource for Source {
    fn lookup(&self, ih: &[u8; 20], b: BlockRef, _f: &FlowContext) -> Lookup {
        if *ih != IH || b.length == 0 || b.length > 1 << 17 || b.index % 2 == 1 {
            return Lookup::Miss;
        }
        Lookup::Hit(
            (0..b.length)
                .map(|k| (b.index ^ b.begin.wrapping_add(k)) as u8)
                .collect(),
        )
    }
}

fn dist(a: u16, b: u16) -> i16 {
    a.wrapping_sub(b) as i16
}

/// What one end has received of the other's numbered packets.
struct Rx {
    /// The last packet received with everything before it.
    cum: u16,
    /// Received past `cum`.
    ahead: HashSet<u16>,
}

impl Rx {
    fn new(cum: u16) -> Rx {
        Rx {
            cum,
            ahead: HashSet::new(),
        }
    }

    fn got(&mut self, q: u16) {
        if dist(q, self.cum) <= 0 || dist(q, self.cum) > 4096 {
            return;
        }
        self.ahead.insert(q);
        while self.ahead.remove(&self.cum.wrapping_add(1)) {
            self.cum = self.cum.wrapping_add(1);
        }
    }

    /// The selective-ack mask of `len` bytes (bit i: packet cum + 2 + i).
    fn mask(&self, len: usize) -> Vec<u8> {
        let mut m = vec![0u8; len];
        for i in 0..len * 8 {
            if self.ahead.contains(&self.cum.wrapping_add(2 + i as u16)) {
                m[i / 8] |= 1 << (i % 8);
            }
        }
        m
    }
}

/// One end: its next packet number, its peer-wire bytes not sent yet, what it received.
struct End {
    next: u16,
    stream: Vec<u8>,
    rx: Rx,
}

/// An inserted packet S has not acked, as the target sees it (S's numbering).
struct Unacked {
    len: usize,
    sent: u64,
    rto: u64,
}

struct Harness {
    sp: Splicer<Source>,
    cfg: InlineConfig,
    v6: bool,
    zero_ck: bool,
    x: u16,
    now: u64,
    s: End,
    r: End,
    /// Inserted payload S has not acked, by S-space number.
    unacked: BTreeMap<u16, Unacked>,
    piece_counter: u32,
    out: Vec<Emit>,
}

/// The UDP checksum of the datagram in `frame` verifies, or is zero over IPv4 (none).
fn udp_checksum_ok(u: &UdpFrame, frame: &[u8]) -> bool {
    let payload = u.payload();
    let at = payload.as_ptr() as usize - frame.as_ptr() as usize;
    let Some(udp) = at
        .checked_sub(8)
        .and_then(|s| frame.get(s..at + payload.len()))
    else {
        return false;
    };
    if udp[6..8] == [0, 0] {
        return u.src().is_ipv4();
    }
    checksum::pseudo_header(u.src(), u.dst(), PROTO_UDP, udp.len())
        .is_some_and(|s| s.add_bytes(udp).verifies())
}

/// (kind, seq, payload length) of an emitted frame, after the checks every one passes.
fn check_emitted(f: &[u8]) -> (UtpType, u16, usize) {
    let u = UdpFrame::new_checked(f).expect("emitted frames parse as UDP");
    assert!(udp_checksum_ok(&u, f), "UDP checksum of an emitted frame");
    let p = UtpPacket::new_checked(u.payload()).expect("emitted frames carry uTP");
    (p.kind, p.seq, p.payload.len())
}

fn offset(x: u8) -> i16 {
    if x & 1 == 0 {
        0
    } else {
        i16::from((x as i8) >> 3)
    }
}

fn block(idx: u8, blk: u8) -> BlockRef {
    let length = if blk & 0x80 != 0 {
        u32::from(blk & 0x7f) * 129 + 1
    } else {
        BLOCK
    };
    BlockRef {
        index: u32::from(idx),
        begin: u32::from(blk & 3) * BLOCK,
        length,
    }
}

impl Harness {
    fn frame(&self, from_s: bool, udp_payload: &[u8]) -> Vec<u8> {
        let (s, r): (IpAddr, IpAddr) = if self.v6 {
            (
                Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2).into(),
                Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0, 2).into(),
            )
        } else {
            (
                Ipv4Addr::new(198, 18, 0, 2).into(),
                Ipv4Addr::new(198, 19, 0, 2).into(),
            )
        };
        let (src, dst, sp, dp) = if from_s {
            (s, r, S_PORT, R_PORT)
        } else {
            (r, s, R_PORT, S_PORT)
        };
        let ip = match (src, dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => IpRepr::V4(Ipv4Repr {
                src,
                dst,
                ident: 0,
                dont_fragment: true,
                ttl: 64,
                protocol: PROTO_UDP,
            }),
            (IpAddr::V6(src), IpAddr::V6(dst)) => IpRepr::V6(Ipv6Repr {
                src,
                dst,
                next_header: PROTO_UDP,
                hop_limit: 64,
            }),
            _ => unreachable!(),
        };
        let (smac, rmac) = ([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1]);
        let eth = EthernetRepr {
            src: if from_s { smac } else { rmac },
            dst: if from_s { rmac } else { smac },
            vlan: None,
            qinq: None,
        };
        let mut out = Vec::new();
        eth.emit(ip.ethertype(), &mut out);
        ip.emit(8 + udp_payload.len(), &mut out).expect("fits");
        UdpRepr {
            src_port: sp,
            dst_port: dp,
        }
        .emit(ip.src(), ip.dst(), udp_payload, &mut out)
        .expect("fits");
        if self.zero_ck && !self.v6 {
            let at = out.len() - udp_payload.len() - 2;
            out[at..at + 2].copy_from_slice(&[0, 0]);
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn utp(
        &mut self,
        from_s: bool,
        kind: UtpType,
        seq: u16,
        ack: u16,
        wnd: u32,
        sack: Option<&[u8]>,
        payload: &[u8],
    ) {
        let conn_id = match (kind, from_s) {
            (UtpType::Syn, _) | (_, false) => self.x,
            (_, true) => self.x.wrapping_add(1),
        };
        let h = UtpRepr {
            kind,
            conn_id,
            timestamp: self.now as u32,
            ts_diff: 1000,
            wnd,
            seq,
            ack,
        }
        .emit();
        let mut p = h.to_vec();
        if let Some(m) = sack {
            p[1] = 1;
            p.push(0);
            p.push(m.len() as u8);
            p.extend_from_slice(m);
        }
        p.extend_from_slice(payload);
        let f = self.frame(from_s, &p);
        self.feed(from_s, &f);
        // What the splice made of S's acks, mirrored (only once it inserted something).
        if from_s && !matches!(kind, UtpType::Syn | UtpType::Reset) {
            self.unacked.retain(|&q, _| dist(q, ack) > 0);
            if let Some(m) = sack {
                for i in 0..m.len() * 8 {
                    if m[i / 8] & (1 << (i % 8)) != 0 {
                        self.unacked.remove(&ack.wrapping_add(2 + i as u16));
                    }
                }
            }
        }
    }

    /// A frame into the splice from S or R, and the checks on what came out.
    fn feed(&mut self, from_s: bool, f: &[u8]) {
        let from = if from_s {
            Port::Subscriber
        } else {
            Port::Upstream
        };
        let mut out = std::mem::take(&mut self.out);
        self.sp.on_frame(self.now, from, f, &mut out);
        let (mut to_r, mut to_s) = (0, 0);
        let inp = UdpFrame::new_checked(f).and_then(|u| UtpPacket::new_checked(u.payload()));
        for e in out.drain(..) {
            match e {
                Emit::Original if from_s => {
                    to_r += 1;
                    if let Some(p) = inp {
                        if matches!(p.kind, UtpType::Data | UtpType::Fin) {
                            self.r.rx.got(p.seq);
                        }
                    }
                }
                Emit::Original => {
                    assert_eq!(to_s, 0, "R's packet goes first");
                    to_s += 1;
                    if let Some(p) = inp {
                        if matches!(p.kind, UtpType::Data | UtpType::Fin) {
                            self.s.rx.got(p.seq);
                        }
                    }
                }
                Emit::Frame(port, g) => {
                    let (kind, seq, len) = check_emitted(&g);
                    if port == Port::Upstream {
                        assert!(from_s, "only S's frames go upstream");
                        assert_eq!(g.len(), f.len(), "S's frame keeps its length");
                        to_r += 1;
                        if matches!(kind, UtpType::Data | UtpType::Fin) {
                            self.r.rx.got(seq);
                        }
                    } else if !from_s && to_s == 0 {
                        // R's own packet, renumbered.
                        assert_eq!(g.len(), f.len(), "R's frame keeps its length");
                        to_s += 1;
                        if matches!(kind, UtpType::Data | UtpType::Fin) {
                            self.s.rx.got(seq);
                        }
                    } else {
                        self.inserted(kind, seq, len);
                    }
                }
            }
        }
        self.out = out;
        assert!(to_r <= 1 && to_s <= 1, "a frame goes out at most once");
        if from_s {
            assert_eq!(to_s, 0);
        } else {
            assert_eq!(to_r, 0);
            assert_eq!(to_s, 1, "R's frames always reach S");
        }
    }

    /// A packet the box built toward S (first send or retransmission).
    fn inserted(&mut self, kind: UtpType, seq: u16, len: usize) {
        assert_eq!(kind, UtpType::Data, "inserted packets are DATA");
        assert!(len > 0);
        self.s.rx.got(seq);
        let first_rto = self.cfg.rto_ms.saturating_mul(1000).max(1000);
        let now = self.now;
        self.unacked
            .entry(seq)
            .and_modify(|u| {
                u.sent = now;
                u.rto = (u.rto * 2).min(MAX_RTO);
            })
            .or_insert(Unacked {
                len,
                sent: now,
                rto: first_rto,
            });
    }

    /// Due timers, as the bridge runs them.
    fn timers(&mut self, jump: bool) {
        let Some(at) = self.sp.poll_timeout() else {
            return;
        };
        if jump {
            self.now = self.now.max(at);
        }
        if at > self.now {
            return;
        }
        let mut out = std::mem::take(&mut self.out);
        self.sp.handle_timeout(self.now, &mut out);
        for e in out.drain(..) {
            match e {
                Emit::Frame(Port::Subscriber, g) => {
                    let (kind, seq, len) = check_emitted(&g);
                    self.inserted(kind, seq, len);
                }
                e => panic!("timers send only toward S: {e:?}"),
            }
        }
        self.out = out;
        assert!(
            self.sp.poll_timeout().is_none_or(|t| t > self.now),
            "deadline met at {}: {:?}",
            self.now,
            self.sp.poll_timeout()
        );
    }

    fn check_bounds(&mut self) {
        assert!(self.sp.connections() <= 2, "one connection (and R's SYN)");
        if self.sp.connections() == 0 {
            self.unacked.clear();
        }
        // Given up (or due and not resent): no longer held.
        let now = self.now;
        self.unacked
            .retain(|_, u| now < u.sent.saturating_add(u.rto));
        let held: usize = self.unacked.values().map(|u| u.len).sum();
        let cap = self.cfg.max_queued_bytes_per_connection;
        assert!(
            held <= 2 * cap + (64 << 10),
            "unacked inserted bytes {held} past the cap {cap}"
        );
        let c = self.sp.counters();
        assert!(c.utp.served_blocks <= c.utp.requests);
        // (Raw fuzz payloads may carry REQUESTs too: bounded by the source's largest block.)
        assert!(c.utp.served_bytes <= c.utp.requests << 17);
        assert!(c.served_blocks >= c.utp.served_blocks);
    }
}

/// Append messages to `stream` and return how many bytes to send now.
fn take(stream: &mut Vec<u8>, split: u8) -> Vec<u8> {
    let n = if split == 0 {
        MAX_PAYLOAD
    } else {
        usize::from(split) * 8
    };
    let n = n.min(stream.len());
    stream.drain(..n).collect()
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 7 {
        return;
    }
    let be = |i: usize| u16::from_be_bytes([data[i], data[i + 1]]);
    let (cfg, x, s0, r0) = (data[0], be(1), be(3), be(5));
    let mut rest = &data[7..];
    let mut c = InlineConfig::default();
    if cfg & 2 != 0 {
        c.max_queued_bytes_per_connection = 40 << 10;
        c.max_queued_bytes = 60 << 10;
        c.max_retransmits = 1;
        c.utp_max_inflight_packets = 8;
        c.max_insertion_points = 4;
        c.max_answered_per_connection = 4;
        c.idle_timeout_secs = 1;
    }
    let mut sp = Splicer::new(c.clone(), Source);
    sp.set_overloaded(cfg & 4 != 0);
    let mut h = Harness {
        sp,
        cfg: c,
        v6: cfg & 1 != 0,
        zero_ck: cfg & 8 != 0,
        x,
        now: 1_000_000,
        s: End {
            next: s0.wrapping_add(1),
            stream: Vec::new(),
            rx: Rx::new(r0.wrapping_sub(1)),
        },
        r: End {
            next: r0,
            stream: Vec::new(),
            rx: Rx::new(s0),
        },
        unacked: BTreeMap::new(),
        piece_counter: 1,
        out: Vec::new(),
    };
    const WND: u32 = 1 << 20;
    // The prologue: S opens, R answers, both handshake, R unchokes.
    h.utp(true, UtpType::Syn, s0, 0, WND, None, &[]);
    h.utp(false, UtpType::State, r0, s0, WND, None, &[]);
    let mut hs = Vec::new();
    emit::handshake(&mut hs, [0; 8], &IH, &[1; 20]);
    h.utp(
        true,
        UtpType::Data,
        s0.wrapping_add(1),
        r0.wrapping_sub(1),
        WND,
        None,
        &hs,
    );
    h.s.next = s0.wrapping_add(2);
    let mut hs = Vec::new();
    emit::handshake(&mut hs, [0; 8], &IH, &[2; 20]);
    emit::message(&mut hs, Kind::Unchoke, &[]);
    h.utp(false, UtpType::Data, r0, s0.wrapping_add(1), WND, None, &hs);
    h.r.next = r0.wrapping_add(1);
    h.check_bounds();

    while rest.len() >= 4 {
        let (ctl, a, b, dt) = (rest[0], rest[1], rest[2], rest[3]);
        rest = &rest[4..];
        let mut byte = || -> u8 {
            let (&v, tail) = rest.split_first().unwrap_or((&0, &[]));
            rest = tail;
            v
        };
        let from_s = ctl & 1 == 0;
        let op = (ctl >> 1) & 7;
        let wnd = if ctl & 0x80 != 0 {
            let w = u32::from(byte());
            w * w * 64
        } else {
            WND
        };
        let sack_spec = (ctl & 0x10 != 0).then(|| byte());
        let mut sack_bytes = Vec::new();
        if let Some(n) = sack_spec {
            let len = usize::from(n & 7) + 1;
            if n & 0x80 == 0 {
                for _ in 0..len {
                    sack_bytes.push(byte());
                }
            }
        }
        let kind = match op {
            0 | 6 => UtpType::Data,
            1 => UtpType::State,
            2 => UtpType::Fin,
            3 => UtpType::Reset,
            4 => UtpType::Syn,
            _ => UtpType::Data,
        };
        // The payload, read before time moves (the input's layout does not depend on it).
        let mut payload = Vec::new();
        if matches!(op, 0 | 6) {
            let end = if from_s { &mut h.s } else { &mut h.r };
            match (ctl >> 5) & 3 {
                0 => {
                    let len = usize::from(byte());
                    for _ in 0..len {
                        payload.push(byte());
                    }
                }
                k @ (1 | 2) => {
                    let m = byte();
                    for _ in 0..(m & 3) + 1 {
                        let blk = block(byte(), byte());
                        if k == 1 {
                            emit::request(&mut end.stream, blk);
                        } else {
                            emit::cancel(&mut end.stream, blk);
                        }
                    }
                    payload = take(&mut end.stream, m >> 2);
                }
                _ => {
                    let n = byte();
                    if end.stream.is_empty() {
                        if from_s {
                            emit::message(&mut end.stream, Kind::Interested, &[]);
                        } else {
                            // R sends a block nobody here caches (odd pieces).
                            let blk = (0..BLOCK)
                                .map(|k| k as u8 ^ h.piece_counter as u8)
                                .collect::<Vec<_>>();
                            emit::piece(&mut end.stream, h.piece_counter, 0, &blk);
                            h.piece_counter = h.piece_counter.wrapping_add(2);
                        }
                    }
                    payload = take(&mut end.stream, n);
                }
            }
        }
        h.now += u64::from(dt) * u64::from(dt) * 100;
        h.timers(op == 7);
        if op == 7 {
            h.check_bounds();
            continue;
        }
        if op == 5 {
            // DHT on the same socket: not uTP, forwarded as it came.
            let mut d = b"d1:ad2:id20:".to_vec();
            d.extend((0..20).map(|i| a ^ i));
            d.extend_from_slice(b"e1:q4:ping1:t2:");
            d.extend_from_slice(&[a, b]);
            d.extend_from_slice(b"1:y1:qe");
            let f = h.frame(from_s, &d);
            let mut out = std::mem::take(&mut h.out);
            h.sp.on_frame(
                h.now,
                if from_s {
                    Port::Subscriber
                } else {
                    Port::Upstream
                },
                &f,
                &mut out,
            );
            assert_eq!(out, vec![Emit::Original], "DHT passes untouched");
            out.clear();
            h.out = out;
            h.check_bounds();
            continue;
        }
        // Each end acks what it has received in order.
        let end = if from_s { &mut h.s } else { &mut h.r };
        let rx_cum = end.rx.cum;
        let seq = end.next.wrapping_add_signed(offset(a));
        if matches!(kind, UtpType::Data | UtpType::Fin) && dist(seq, end.next) >= 0 {
            end.next = seq.wrapping_add(1);
        }
        let ack = rx_cum.wrapping_add_signed(offset(b));
        let sack = sack_spec.map(|n| {
            if n & 0x80 != 0 {
                let rx = if from_s { &h.s.rx } else { &h.r.rx };
                rx.mask(usize::from(n & 7) + 1)
            } else {
                sack_bytes.clone()
            }
        });
        h.utp(from_s, kind, seq, ack, wnd, sack.as_deref(), &payload);
        h.check_bounds();
    }
});
