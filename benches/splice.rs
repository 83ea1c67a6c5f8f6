//! Frames per second `Splicer::on_frame` sustains on one connection (no I/O: frames in
//! memory, the block source a function). Three cases, each a whole download of an 8 MiB
//! torrent of 64 KiB pieces in 16 KiB blocks (128 pieces, 512 blocks), the subscriber S
//! asking one piece (4 REQUESTs) per packet:
//!
//! - `tcp_served`: a TCP connection, every block cached: REQUESTs overwritten, PIECEs
//!   inserted; S acks every second inserted segment (and the last of a burst), R is idle.
//! - `utp_served`: the same over uTP (BEP 29); S acks every inserted packet with a STATE.
//! - `utp_passthrough`: the same uTP connection with nothing cached: R sends the PIECEs
//!   itself in 1200-byte DATA packets, S acks each.
//!
//! The frames are built once, outside the timed loop. In the served cases S's acks depend
//! on what the splice sent, so each iteration drives a closed loop: S reads the numbers of
//! what the box sent it (fixed offsets) and acks them with a copy of a prebuilt ack frame,
//! its numbers and checksum patched (a ~70-byte copy and checksum per ack, inside the
//! timed loop). Throughput counts the frames given to `on_frame` (inserted frames are
//! output, not counted). Figures: docs/benchmarks.md, "Inline splice: frames per second".

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use etherparse::{PacketBuilder, TcpOptionElement};
use peercache::serve::{BlockSource, Emit, InlineConfig, Lookup, Port, Splicer};
use peercache::swarm::pieces::FlowContext;
use peercache::wire::checksum::{pseudo_header, PROTO_TCP, PROTO_UDP};
use peercache::wire::peerwire::{emit, BlockRef, Kind};

const IH: [u8; 20] = [7; 20];
const PIECE: u32 = 64 << 10;
const BLOCK: u32 = 16 << 10;
const PIECES: u32 = (8 << 20) / PIECE;
const SUB: [u8; 4] = [198, 18, 0, 2];
const REM: [u8; 4] = [198, 19, 0, 2];
const SUB_PORT: u16 = 50_000;
const REM_PORT: u16 = 6881;
/// Ethernet + IPv4 (no options): where the transport header starts in every frame here.
const L4: usize = 14 + 20;
/// uTP header in a UDP frame.
const UTP: usize = L4 + 8;
/// R's uTP DATA payload in the pass-through case.
const UTP_PAYLOAD: usize = 1200;

/// Every block cached, or none.
struct Source {
    cached: bool,
    block: Vec<u8>,
}

impl BlockSource for Source {
    fn lookup(&self, _ih: &[u8; 20], b: BlockRef, _f: &FlowContext) -> Lookup {
        if self.cached && b.length as usize == self.block.len() {
            Lookup::Hit(self.block.clone())
        } else {
            Lookup::Miss
        }
    }
}

fn source(cached: bool) -> Source {
    Source {
        cached,
        block: (0..BLOCK).map(|k| (k * 31) as u8).collect(),
    }
}

fn requests(piece: u32) -> Vec<u8> {
    let mut m = Vec::new();
    for b in 0..PIECE / BLOCK {
        emit::request(
            &mut m,
            BlockRef {
                index: piece,
                begin: b * BLOCK,
                length: BLOCK,
            },
        );
    }
    m
}

fn handshake(id: u8, unchoke: bool) -> Vec<u8> {
    let mut h = Vec::new();
    emit::handshake(&mut h, [0; 8], &IH, &[id; 20]);
    if unchoke {
        emit::message(&mut h, Kind::Unchoke, &[]);
    }
    h
}

fn be16(f: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([f[at], f[at + 1]])
}

fn be32(f: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([f[at], f[at + 1], f[at + 2], f[at + 3]])
}

/// Recompute the TCP or UDP checksum of a frame built here (IPv4, no options).
fn fix_checksum(f: &mut [u8], proto: u8) {
    let ck_at = L4 + if proto == PROTO_TCP { 16 } else { 6 };
    f[ck_at..ck_at + 2].copy_from_slice(&[0, 0]);
    let (src, dst) = (
        IpAddr::V4(Ipv4Addr::new(f[26], f[27], f[28], f[29])),
        IpAddr::V4(Ipv4Addr::new(f[30], f[31], f[32], f[33])),
    );
    let seg = &f[L4..];
    let mut ck = pseudo_header(src, dst, proto, seg.len())
        .expect("ipv4")
        .add_bytes(seg)
        .field();
    if proto == PROTO_UDP && ck == [0, 0] {
        ck = [0xff, 0xff];
    }
    f[ck_at..ck_at + 2].copy_from_slice(&ck);
}

/// One run's frames on a fresh splice: returns the frames given to `on_frame`.
trait Run {
    fn run(&self, sp: &mut Splicer<Source>) -> u64;
}

// ---- TCP ----

const S_ISN: u32 = 1000;
const R_ISN: u32 = 5000;

fn tcp(from_sub: bool, seq: u32, ack: Option<u32>, syn: bool, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2; 6], [3; 6]);
    let (b, sp, dp) = if from_sub {
        (b.ipv4(SUB, REM, 64), SUB_PORT, REM_PORT)
    } else {
        (b.ipv4(REM, SUB, 64), REM_PORT, SUB_PORT)
    };
    // Window 8192 << 7 = 1 MiB once scaling applies.
    let mut b = b.tcp(sp, dp, seq, if syn { 65535 } else { 8192 });
    if syn {
        b = b.syn();
    }
    if let Some(a) = ack {
        b = b.ack(a);
    }
    let mut opts = Vec::new();
    if syn {
        opts.push(TcpOptionElement::MaximumSegmentSize(1460));
        opts.push(TcpOptionElement::WindowScale(7));
    }
    opts.push(TcpOptionElement::Timestamp(
        if from_sub { 10 } else { 20 },
        1,
    ));
    let b = b.options(&opts).expect("options");
    let mut out = Vec::new();
    b.write(&mut out, payload).expect("frame");
    out
}

struct TcpServed {
    /// SYN, SYN-ACK, ACK, S's handshake, R's handshake + UNCHOKE, S's ack of it.
    prologue: Vec<(Port, Vec<u8>)>,
    /// S's REQUESTs, one piece a segment (ack patched when sent).
    requests: Vec<Vec<u8>>,
    /// S's pure ack (ack patched), with S's sequence number after its last REQUEST.
    ack: Vec<u8>,
    /// R's next sequence number after its handshake: S-space of the first insertion.
    r_next: u32,
}

impl TcpServed {
    fn new() -> TcpServed {
        let hs_s = handshake(1, false);
        let hs_r = handshake(2, true);
        let s_next = S_ISN + 1 + hs_s.len() as u32;
        let r_next = R_ISN + 1 + hs_r.len() as u32;
        let prologue = vec![
            (Port::Subscriber, tcp(true, S_ISN, None, true, &[])),
            (
                Port::Upstream,
                tcp(false, R_ISN, Some(S_ISN + 1), true, &[]),
            ),
            (
                Port::Subscriber,
                tcp(true, S_ISN + 1, Some(R_ISN + 1), false, &[]),
            ),
            (
                Port::Subscriber,
                tcp(true, S_ISN + 1, Some(R_ISN + 1), false, &hs_s),
            ),
            (
                Port::Upstream,
                tcp(false, R_ISN + 1, Some(s_next), false, &hs_r),
            ),
            (
                Port::Subscriber,
                tcp(true, s_next, Some(r_next), false, &[]),
            ),
        ];
        let mut seq = s_next;
        let mut reqs = Vec::new();
        for p in 0..PIECES {
            let m = requests(p);
            reqs.push(tcp(true, seq, Some(r_next), false, &m));
            seq += m.len() as u32;
        }
        TcpServed {
            prologue,
            requests: reqs,
            ack: tcp(true, seq, Some(r_next), false, &[]),
            r_next,
        }
    }
}

/// The closed loop's subscriber: what it received in order, and what it has not acked.
struct TcpSub {
    rcv_next: u32,
    unacked_segs: u32,
}

impl TcpSub {
    /// Take in what the box sent S; true when an ack is due (every second segment).
    fn receive(&mut self, out: &mut Vec<Emit>) {
        for e in out.drain(..) {
            if let Emit::Frame(Port::Subscriber, f) = e {
                let seq = be32(&f, L4 + 4);
                let doff = usize::from(f[L4 + 12] >> 4) * 4;
                let len = usize::from(be16(&f, 14 + 2)) - 20 - doff;
                let end = seq.wrapping_add(len as u32);
                if len > 0 && end.wrapping_sub(self.rcv_next) as i32 > 0 {
                    self.rcv_next = end;
                    self.unacked_segs += 1;
                }
            }
        }
    }
}

impl Run for TcpServed {
    fn run(&self, sp: &mut Splicer<Source>) -> u64 {
        let mut out = Vec::new();
        let mut now = 1_000_000u64;
        let mut frames = 0u64;
        for (port, f) in &self.prologue {
            now += 10;
            sp.on_frame(now, *port, f, &mut out);
            frames += 1;
        }
        out.clear();
        let mut sub = TcpSub {
            rcv_next: self.r_next,
            unacked_segs: 0,
        };
        let mut s_seq = be32(&self.requests[0], L4 + 4);
        let send = |sp: &mut Splicer<Source>,
                    now: &mut u64,
                    frames: &mut u64,
                    tmpl: &[u8],
                    seq: u32,
                    ack: u32,
                    out: &mut Vec<Emit>| {
            let mut f = tmpl.to_vec();
            f[L4 + 4..L4 + 8].copy_from_slice(&seq.to_be_bytes());
            f[L4 + 8..L4 + 12].copy_from_slice(&ack.to_be_bytes());
            fix_checksum(&mut f, PROTO_TCP);
            *now += 10;
            sp.on_frame(*now, Port::Subscriber, &f, out);
            *frames += 1;
        };
        for r in &self.requests {
            send(sp, &mut now, &mut frames, r, s_seq, sub.rcv_next, &mut out);
            s_seq = s_seq.wrapping_add(PIECE / BLOCK * 17);
            sub.receive(&mut out);
            // S acks every second segment, and the rest of a burst, until the box is idle.
            while sub.unacked_segs > 0 {
                sub.unacked_segs = sub.unacked_segs.saturating_sub(2);
                send(
                    sp,
                    &mut now,
                    &mut frames,
                    &self.ack,
                    s_seq,
                    sub.rcv_next,
                    &mut out,
                );
                sub.receive(&mut out);
                if sp.poll_timeout().is_some_and(|t| t <= now) {
                    sp.handle_timeout(now, &mut out);
                    sub.receive(&mut out);
                }
            }
        }
        frames
    }
}

// ---- uTP ----

const CONN_ID: u16 = 0x4242;
const S_SEQ: u16 = 65_000; // wraps during the run
const R_SEQ: u16 = 30_000;
const WND: u32 = 1 << 20;

fn utp(from_sub: bool, kind: u8, seq: u16, ack: u16, payload: &[u8]) -> Vec<u8> {
    let conn_id = if from_sub && kind != 4 {
        CONN_ID + 1
    } else {
        CONN_ID
    };
    let mut p = vec![kind << 4 | 1, 0];
    p.extend_from_slice(&conn_id.to_be_bytes());
    p.extend_from_slice(&1000u32.to_be_bytes());
    p.extend_from_slice(&500u32.to_be_bytes());
    p.extend_from_slice(&WND.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ack.to_be_bytes());
    p.extend_from_slice(payload);
    let b = PacketBuilder::ethernet2([2; 6], [3; 6]);
    let b = if from_sub {
        b.ipv4(SUB, REM, 64).udp(SUB_PORT, REM_PORT)
    } else {
        b.ipv4(REM, SUB, 64).udp(REM_PORT, SUB_PORT)
    };
    let mut out = Vec::new();
    b.write(&mut out, &p).expect("frame");
    out
}

const DATA: u8 = 0;
const STATE: u8 = 2;
const SYN: u8 = 4;

/// SYN, STATE, S's handshake, R's handshake + UNCHOKE, S's ack; and S's numbers after.
fn utp_prologue() -> (Vec<(Port, Vec<u8>)>, u16, u16) {
    let (s1, r1) = (S_SEQ.wrapping_add(1), R_SEQ.wrapping_add(1));
    let v = vec![
        (Port::Subscriber, utp(true, SYN, S_SEQ, 0, &[])),
        (Port::Upstream, utp(false, STATE, R_SEQ, S_SEQ, &[])),
        (
            Port::Subscriber,
            utp(true, DATA, s1, R_SEQ.wrapping_sub(1), &handshake(1, false)),
        ),
        (
            Port::Upstream,
            utp(false, DATA, R_SEQ, s1, &handshake(2, true)),
        ),
        (
            Port::Subscriber,
            utp(true, STATE, s1.wrapping_add(1), R_SEQ, &[]),
        ),
    ];
    (v, s1.wrapping_add(1), r1)
}

fn patch_utp(f: &mut [u8], seq: u16, ack: u16) {
    f[UTP + 16..UTP + 18].copy_from_slice(&seq.to_be_bytes());
    f[UTP + 18..UTP + 20].copy_from_slice(&ack.to_be_bytes());
    fix_checksum(f, PROTO_UDP);
}

struct UtpServed {
    prologue: Vec<(Port, Vec<u8>)>,
    /// S's REQUEST packets (numbered; ack patched when sent).
    requests: Vec<Vec<u8>>,
    /// S's STATE (seq and ack patched).
    state: Vec<u8>,
    s_next: u16,
    /// R's last packet S has (S-space) before anything is inserted.
    r_last: u16,
}

impl UtpServed {
    fn new() -> UtpServed {
        let (prologue, mut s_next, _) = utp_prologue();
        let requests = (0..PIECES)
            .map(|p| {
                let f = utp(true, DATA, s_next, R_SEQ, &requests(p));
                s_next = s_next.wrapping_add(1);
                f
            })
            .collect();
        let s_first = utp_prologue().1;
        UtpServed {
            prologue,
            requests,
            state: utp(true, STATE, s_first, R_SEQ, &[]),
            s_next: s_first,
            r_last: R_SEQ,
        }
    }
}

impl Run for UtpServed {
    fn run(&self, sp: &mut Splicer<Source>) -> u64 {
        let mut out = Vec::new();
        let mut now = 1_000_000u64;
        let mut frames = 0u64;
        for (port, f) in &self.prologue {
            now += 10;
            sp.on_frame(now, *port, f, &mut out);
            frames += 1;
        }
        out.clear();
        let mut s_next = self.s_next;
        // S's cumulative ack (S-space): every packet arrives in order here.
        let mut cum = self.r_last;
        let mut got: Vec<u16> = Vec::new();
        let take = |out: &mut Vec<Emit>, got: &mut Vec<u16>| {
            for e in out.drain(..) {
                if let Emit::Frame(Port::Subscriber, f) = e {
                    got.push(be16(&f, UTP + 16));
                }
            }
        };
        for r in &self.requests {
            let mut f = r.clone();
            patch_utp(&mut f, s_next, cum);
            s_next = s_next.wrapping_add(1);
            now += 10;
            sp.on_frame(now, Port::Subscriber, &f, &mut out);
            frames += 1;
            take(&mut out, &mut got);
            // One STATE per packet received, as libtorrent acks.
            while !got.is_empty() {
                for q in std::mem::take(&mut got) {
                    if q.wrapping_sub(cum) as i16 > 0 {
                        cum = q;
                    }
                    let mut a = self.state.clone();
                    patch_utp(&mut a, s_next, cum);
                    now += 10;
                    sp.on_frame(now, Port::Subscriber, &a, &mut out);
                    frames += 1;
                    take(&mut out, &mut got);
                }
                if sp.poll_timeout().is_some_and(|t| t <= now) {
                    sp.handle_timeout(now, &mut out);
                    take(&mut out, &mut got);
                }
            }
        }
        frames
    }
}

struct UtpPassThrough {
    frames: Vec<(Port, Vec<u8>)>,
}

impl UtpPassThrough {
    fn new() -> UtpPassThrough {
        let (mut frames, mut s_next, mut r_next) = utp_prologue();
        let mut r_last = R_SEQ;
        for p in 0..PIECES {
            frames.push((
                Port::Subscriber,
                utp(true, DATA, s_next, r_last, &requests(p)),
            ));
            let s_last = s_next;
            s_next = s_next.wrapping_add(1);
            let mut stream = Vec::new();
            let block: Vec<u8> = (0..BLOCK).map(|k| (k * 7) as u8).collect();
            for b in 0..PIECE / BLOCK {
                emit::piece(&mut stream, p, b * BLOCK, &block);
            }
            for chunk in stream.chunks(UTP_PAYLOAD) {
                frames.push((Port::Upstream, utp(false, DATA, r_next, s_last, chunk)));
                r_last = r_next;
                r_next = r_next.wrapping_add(1);
                frames.push((Port::Subscriber, utp(true, STATE, s_next, r_last, &[])));
            }
        }
        UtpPassThrough { frames }
    }
}

impl Run for UtpPassThrough {
    fn run(&self, sp: &mut Splicer<Source>) -> u64 {
        let mut out = Vec::new();
        let mut now = 1_000_000u64;
        for (port, f) in &self.frames {
            now += 10;
            sp.on_frame(now, *port, f, &mut out);
            out.clear();
        }
        self.frames.len() as u64
    }
}

fn bench_case(
    c: &mut Criterion,
    name: &str,
    cached: bool,
    case: &dyn Run,
    check: impl Fn(&Splicer<Source>),
) {
    // A dry run: the frame count (the same every run: the splice is deterministic), and
    // the proof that the case does what it says.
    let mut sp = Splicer::new(InlineConfig::default(), source(cached));
    let frames = case.run(&mut sp);
    check(&sp);
    let mut g = c.benchmark_group("splice");
    g.throughput(Throughput::Elements(frames));
    g.sample_size(10);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(3));
    g.bench_function(name, |b| {
        b.iter(|| {
            let mut sp = Splicer::new(InlineConfig::default(), source(cached));
            case.run(&mut sp)
        })
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    let blocks = u64::from(PIECES * PIECE / BLOCK);
    bench_case(c, "tcp_served", true, &TcpServed::new(), |sp| {
        assert_eq!(
            sp.counters().served_blocks,
            blocks,
            "TCP: every block served"
        );
    });
    bench_case(c, "utp_served", true, &UtpServed::new(), |sp| {
        let u = &sp.counters().utp;
        assert_eq!(u.served_blocks, blocks, "uTP: every block served");
        assert_eq!(u.retransmitted_packets, 0, "uTP: nothing resent");
    });
    bench_case(c, "utp_passthrough", false, &UtpPassThrough::new(), |sp| {
        let u = &sp.counters().utp;
        assert_eq!(
            (u.served_blocks, u.misses),
            (0, blocks),
            "uTP: every block a miss"
        );
    });
}

criterion_group!(group, benches);
criterion_main!(group);
