//! The tap-side TCP reassembler, driven by a sequence of operations on the two directions
//! of one connection, which share one global out-of-order budget (as in the engine).
//!
//! Input: `[flags][isn0: u32 BE][isn1: u32 BE]` then operations, each `[op]` + arguments;
//! direction `d = op & 1`, kind `(op >> 1) & 7`:
//! - 0..=3 segment: `[sflags][off: u32 BE][len: u16 BE]`, seq = isn[d] + off, `len` bytes
//!   (capped at 16 KiB); sflags bit 0 SYN, bit 1 FIN, bit 2 corrupt the bytes;
//! - 4, 5 ack: `[off: u32 BE]`, `on_ack(isn[d] + off)` for direction d;
//! - 6 flush direction d;
//! - 7 short segment: `[delta: i8][len: u8]`, starting `delta` bytes after the end of the
//!   previous segment of direction d (reordering and overlap without guessing u32s).
//! `flags` bit 0 allows the corrupt bit (else it is ignored), bit 1 sets conflict_window to
//! 0, bit 2 a small max_ahead. Payload byte at sequence number s is a fixed function of s,
//! so retransmissions carry the same bytes unless corrupted on purpose.
//!
//! Limits are small (4096 bytes, 16 segments per direction, 8192 bytes of budget) so the
//! eviction paths run. Checks, after every operation:
//! - delivered data + gaps == next_offset, `delivered` == the data seen by the sink, and
//!   neither passes the furthest byte any segment carried; data chunks are never empty, gaps
//!   never zero; without corruption every delivered byte is the byte sent at its sequence
//!   number and no overlap is reported as conflicting;
//! - buffered() <= max_ooo_bytes, budget.used <= budget.cap, budget.used == sum of buffered;
//! - counters agree with the chunks (gaps, gap_bytes);
//! - after flushing both directions: budget.used == 0 and nothing is buffered.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peercache::flow::tcp::{Budget, Chunk, ReasmCounters, ReasmLimits, Reassembler};
use peercache::wire::seq::SeqNum;

const MAX_OOO: usize = 4096;
const BUDGET: usize = 8192;

fn pat(s: u32) -> u8 {
    (s.wrapping_mul(0x9E37_79B1) >> 24) as u8
}

#[derive(Default, Clone, Copy)]
struct Side {
    base: Option<u32>,
    /// Stream offset the sink has reached (data + gaps).
    pos: u64,
    data: u64,
    gaps: u64,
    gap_bytes: u64,
    /// Furthest stream offset any segment reached.
    max_end: i64,
    last_end_seq: u32,
}

struct Sink<'a> {
    side: &'a mut Side,
    check_content: bool,
}

impl Sink<'_> {
    fn chunk(&mut self, c: Chunk<'_>) {
        let s = &mut *self.side;
        match c {
            Chunk::Data(d) => {
                assert!(!d.is_empty(), "empty data chunk");
                let base = s.base.expect("data before the stream has a base");
                if self.check_content {
                    for (i, &b) in d.iter().enumerate() {
                        let seq = base.wrapping_add((s.pos + i as u64) as u32);
                        assert_eq!(b, pat(seq), "wrong byte at stream offset {}", s.pos + i as u64);
                    }
                }
                s.pos += d.len() as u64;
                s.data += d.len() as u64;
            }
            Chunk::Gap(n) => {
                assert!(n > 0, "zero gap");
                s.pos += n;
                s.gaps += 1;
                s.gap_bytes += n;
            }
            // Lost (unknown length) is uTP's; TCP always knows how many bytes are missing.
            Chunk::Lost => panic!("TCP reassembly delivered Chunk::Lost"),
        }
    }
}

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes([self.u8()?, self.u8()?]))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes([self.u8()?, self.u8()?, self.u8()?, self.u8()?]))
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let (Some(flags), Some(isn0), Some(isn1)) = (inp.u8(), inp.u32(), inp.u32()) else {
        return;
    };
    let isn = [isn0, isn1];
    let corrupt_ok = flags & 1 != 0;
    let limits = ReasmLimits {
        max_ooo_bytes: MAX_OOO,
        max_ooo_segments: 16,
        conflict_window: if flags & 2 != 0 { 0 } else { 256 },
        max_ahead: if flags & 4 != 0 { 8192 } else { 1 << 24 },
    };
    let mut budget = Budget::new(BUDGET);
    let mut c = ReasmCounters::default();
    let mut r = [Reassembler::default(), Reassembler::default()];
    let mut side = [Side::default(); 2];
    let mut payload = Vec::new();

    while let Some(op) = inp.u8() {
        let d = (op & 1) as usize;
        let kind = (op >> 1) & 7;
        let mut sink = Sink {
            side: &mut side[d],
            check_content: !corrupt_ok,
        };
        match kind {
            0..=3 | 7 => {
                let (seq, syn, fin, corrupt, len) = if kind == 7 {
                    let (Some(delta), Some(len)) = (inp.u8(), inp.u8()) else {
                        break;
                    };
                    let seq = sink.side.last_end_seq.wrapping_add(delta as i8 as i32 as u32);
                    (seq, false, false, false, len as usize)
                } else {
                    let (Some(sf), Some(off), Some(len)) = (inp.u8(), inp.u32(), inp.u16()) else {
                        break;
                    };
                    let seq = isn[d].wrapping_add(off);
                    (seq, sf & 1 != 0, sf & 2 != 0, sf & 4 != 0 && corrupt_ok, (len as usize).min(16384))
                };
                let data_seq = if syn { seq.wrapping_add(1) } else { seq };
                payload.clear();
                payload.extend((0..len as u32).map(|i| {
                    let b = pat(data_seq.wrapping_add(i));
                    if corrupt { b ^ 0x5A } else { b }
                }));
                // Mirror where the reassembler puts stream offset 0, and how far this
                // segment reaches.
                let s = &mut *sink.side;
                if s.base.is_none() && (syn || len > 0 || fin) {
                    s.base = Some(data_seq);
                }
                if let Some(base) = s.base {
                    let next = r[d].next_offset();
                    let rel = data_seq.wrapping_sub(base.wrapping_add(next as u32)) as i32;
                    let end = next as i64 + rel as i64 + len as i64;
                    if len > 0 {
                        s.max_end = s.max_end.max(end);
                    }
                }
                s.last_end_seq = data_seq.wrapping_add(len as u32);
                r[d].segment(
                    SeqNum(seq),
                    syn,
                    fin,
                    &payload,
                    &limits,
                    &mut c,
                    &mut budget,
                    &mut |ch| sink.chunk(ch),
                );
            }
            4 | 5 => {
                let Some(off) = inp.u32() else { break };
                r[d].on_ack(
                    SeqNum(isn[d].wrapping_add(off)),
                    &limits,
                    &mut c,
                    &mut budget,
                    &mut |ch| sink.chunk(ch),
                );
            }
            _ => {
                r[d].flush(&mut c, &mut budget, &mut |ch| sink.chunk(ch));
                assert_eq!(r[d].buffered(), 0, "flush left bytes buffered");
            }
        }
        check(&r, &side, &budget, &c, corrupt_ok);
    }

    for d in 0..2 {
        let mut sink = Sink {
            side: &mut side[d],
            check_content: !corrupt_ok,
        };
        r[d].flush(&mut c, &mut budget, &mut |ch| sink.chunk(ch));
    }
    check(&r, &side, &budget, &c, corrupt_ok);
    assert_eq!(budget.used, 0, "budget not returned after flushing everything");
    assert_eq!(r[0].buffered() + r[1].buffered(), 0);
});

fn check(r: &[Reassembler; 2], side: &[Side; 2], budget: &Budget, c: &ReasmCounters, corrupt_ok: bool) {
    for d in 0..2 {
        let (r, s) = (&r[d], &side[d]);
        assert_eq!(s.pos, r.next_offset(), "data + gaps != next offset (dir {d})");
        assert_eq!(s.data, r.delivered, "delivered counter (dir {d})");
        assert!(
            r.next_offset() as i64 <= s.max_end.max(0),
            "delivered/skipped to {} but no segment reached past {} (dir {d})",
            r.next_offset(),
            s.max_end
        );
        assert!(r.buffered() <= MAX_OOO, "buffered {} > cap (dir {d})", r.buffered());
    }
    assert!(budget.used <= budget.cap, "budget {} > cap", budget.used);
    assert_eq!(
        budget.used,
        r[0].buffered() + r[1].buffered(),
        "global budget out of step with what the directions hold"
    );
    assert_eq!(c.gaps, side[0].gaps + side[1].gaps, "gap counter");
    assert_eq!(c.gap_bytes, side[0].gap_bytes + side[1].gap_bytes, "gap_bytes counter");
    if !corrupt_ok {
        assert_eq!(c.conflicting_overlaps, 0, "conflict reported for identical bytes");
    }
}
