//! The uTP packet reassembler (`flow::utp::UtpReasm`), both directions of one connection
//! sharing one out-of-order `Budget` (as in the engine), driven by operations.
//!
//! Input: `[flags]` then operations, each `[op]` + arguments; direction `d = op & 1`,
//! kind `(op >> 1) & 7`:
//! - 0, 1 data: `[seq: u16 BE][len: u16 BE]` (len capped at 6000);
//! - 2 repeat: `[seq: u16 BE]`, the last payload given for `seq` in direction d, byte for
//!   byte (a fresh 16-byte one if there is none);
//! - 3 short data: `[delta: i8][len: u8]`, seq = last data seq of d + delta;
//! - 4 ack: `[seq: u16 BE]`, `ack(seq)` on direction d (the other side acknowledging it);
//! - 5 short ack: `[delta: i8]`, ack = last data seq of d + delta;
//! - 6 start_at: `[seq: u16 BE]`;
//! - 7 flush direction d.
//! `flags` bit 0: budget cap 6000 instead of 8192 (so the shared budget, not the per
//! direction cap, runs out first). Limits: 8 packets and 4096 bytes per direction.
//!
//! Payloads of length `len` (0 means empty; else at least 6) carry a tag, `[id: u32 BE]
//! [seq: u16 BE]` (id numbers the data operations), then filler that is a function of the
//! id, so every delivered payload names the operation that gave it.
//!
//! Checks, after every operation:
//! - `buffered() <= max_ooo_bytes` per direction, `budget.used <= budget.cap`, and
//!   `budget.used` == the sum of both directions' `buffered()`;
//! - every Data chunk is non-empty and byte-for-byte a payload that was given and accepted
//!   (not counted as duplicate / out of window), the first accepted copy for its seq, and is
//!   delivered once; `delivered` matches the sink;
//! - order: consecutive deliveries move forward in sequence space (by exactly 1 when no
//!   `Lost` and no empty packet came between them); the first one, without a Lost before
//!   it, is at the sequence number the direction started at;
//! - after flush(d): direction d holds nothing and every accepted payload was delivered;
//!   after flushing both: `budget.used == 0`.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use peercache::flow::tcp::{Budget, Chunk};
use peercache::flow::utp::{UtpCounters, UtpLimits, UtpReasm};

const MAX_PACKETS: usize = 8;
const MAX_OOO: usize = 4096;

fn filler(id: u32, i: usize) -> u8 {
    ((id as usize).wrapping_mul(31).wrapping_add(i.wrapping_mul(7)) >> 1) as u8
}

fn payload(id: u32, seq: u16, len: usize) -> Vec<u8> {
    if len == 0 {
        return Vec::new();
    }
    let len = len.max(6);
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&id.to_be_bytes());
    v.extend_from_slice(&seq.to_be_bytes());
    for i in 6..len {
        v.push(filler(id, i));
    }
    v
}

#[derive(Default)]
struct Side {
    /// Sequence number the direction started at (first start_at or data).
    base: Option<u16>,
    /// Accepted payloads not yet delivered: seq -> (id, len).
    pending: HashMap<u16, (u32, usize)>,
    /// Last payload given per seq (for repeats).
    last_given: HashMap<u16, Vec<u8>>,
    last_seq: u16,
    last_delivered: Option<u16>,
    lost_since: bool,
    empties: bool,
    delivered_bytes: u64,
    lost: u64,
}

fn check_chunk(s: &mut Side, c: Chunk<'_>) {
    match c {
        Chunk::Data(d) => {
            assert!(!d.is_empty(), "empty Data chunk");
            assert!(d.len() >= 6, "untagged payload delivered: {d:02x?}");
            let id = u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
            let seq = u16::from_be_bytes([d[4], d[5]]);
            assert_eq!(d, &payload(id, seq, d.len())[..], "payload bytes altered");
            let Some((want, _)) = s.pending.remove(&seq) else {
                panic!("delivered seq {seq} (op {id}) that is not pending (never accepted or delivered twice)");
            };
            assert_eq!(want, id, "seq {seq}: delivered op {id}, the first accepted copy was op {want}");
            match s.last_delivered {
                Some(prev) => {
                    let step = seq.wrapping_sub(prev);
                    assert!(
                        (1..0x8000).contains(&step),
                        "delivered seq {seq} after {prev}: not forward"
                    );
                    if !s.lost_since && !s.empties {
                        assert_eq!(step, 1, "seq {seq} after {prev} with nothing lost between");
                    }
                }
                None => {
                    if !s.lost_since && !s.empties {
                        assert_eq!(Some(seq), s.base, "first delivery is not at the start");
                    }
                }
            }
            s.last_delivered = Some(seq);
            s.lost_since = false;
            s.delivered_bytes += d.len() as u64;
        }
        Chunk::Lost => {
            s.lost += 1;
            s.lost_since = true;
        }
        Chunk::Gap(n) => panic!("uTP delivered a byte gap ({n})"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut ops)) = data.split_first() else {
        return;
    };
    let lim = UtpLimits {
        max_ooo_packets: MAX_PACKETS,
        max_ooo_bytes: MAX_OOO,
    };
    let mut budget = Budget::new(if flags & 1 != 0 { 6000 } else { 8192 });
    let mut r = [UtpReasm::default(), UtpReasm::default()];
    let mut c = UtpCounters::default();
    let mut sides = [Side::default(), Side::default()];
    let mut next_id = 0u32;

    let take = |ops: &mut &[u8], n: usize| -> Option<Vec<u8>> {
        let v = ops.get(..n)?.to_vec();
        *ops = &ops[n..];
        Some(v)
    };

    while let Some((&op, rest)) = ops.split_first() {
        ops = rest;
        let d = (op & 1) as usize;
        let kind = (op >> 1) & 7;
        // (seq, payload) for data-like operations.
        let mut give: Option<(u16, Vec<u8>)> = None;
        match kind {
            0 | 1 => {
                let Some(a) = take(&mut ops, 4) else { break };
                let seq = u16::from_be_bytes([a[0], a[1]]);
                let len = (u16::from_be_bytes([a[2], a[3]]) as usize).min(6000);
                give = Some((seq, payload(next_id, seq, len)));
            }
            2 => {
                let Some(a) = take(&mut ops, 2) else { break };
                let seq = u16::from_be_bytes([a[0], a[1]]);
                let p = sides[d]
                    .last_given
                    .get(&seq)
                    .cloned()
                    .unwrap_or_else(|| payload(next_id, seq, 16));
                give = Some((seq, p));
            }
            3 => {
                let Some(a) = take(&mut ops, 2) else { break };
                let seq = sides[d].last_seq.wrapping_add(a[0] as i8 as u16);
                give = Some((seq, payload(next_id, seq, a[1] as usize)));
            }
            4 | 5 => {
                let ack = if kind == 4 {
                    let Some(a) = take(&mut ops, 2) else { break };
                    u16::from_be_bytes([a[0], a[1]])
                } else {
                    let Some(a) = take(&mut ops, 1) else { break };
                    sides[d].last_seq.wrapping_add(a[0] as i8 as u16)
                };
                let s = &mut sides[d];
                r[d].ack(ack, &mut c, &mut budget, &mut |ch| check_chunk(s, ch));
            }
            6 => {
                let Some(a) = take(&mut ops, 2) else { break };
                let seq = u16::from_be_bytes([a[0], a[1]]);
                sides[d].base.get_or_insert(seq);
                r[d].start_at(seq);
            }
            _ => {
                let s = &mut sides[d];
                r[d].flush(&mut c, &mut budget, &mut |ch| check_chunk(s, ch));
                assert_eq!(r[d].buffered(), 0, "flush left bytes buffered");
                assert!(
                    s.pending.is_empty(),
                    "flush: accepted payloads never delivered: {:?}",
                    s.pending
                );
            }
        }
        if let Some((seq, p)) = give {
            next_id += 1;
            let s = &mut sides[d];
            s.base.get_or_insert(seq);
            s.last_seq = seq;
            s.last_given.insert(seq, p.clone());
            let before = (c.duplicates, c.out_of_window);
            // Record the copy as pending before the call: it may be delivered inside it.
            let had = s.pending.get(&seq).copied();
            let tagged = p.len() >= 6;
            if tagged && had.is_none() {
                let id = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
                s.pending.insert(seq, (id, p.len()));
            }
            // An empty packet may be taken and released inside the call (its successors
            // then follow with a step of 2): relax the step check before, not after.
            if !tagged {
                s.empties = true;
            }
            r[d].data(seq, &p, &lim, &mut c, &mut budget, &mut |ch| check_chunk(s, ch));
            let refused = (c.duplicates, c.out_of_window) != before;
            if refused {
                // Not taken: forget it again (unless it was delivered, which is a bug).
                if tagged && had.is_none() {
                    let id = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
                    assert_eq!(
                        s.pending.remove(&seq).map(|x| x.0),
                        Some(id),
                        "a refused packet (seq {seq}) was delivered"
                    );
                }
            } else {
                if had.is_some() {
                    panic!("seq {seq} accepted again while an earlier copy is still held");
                }
            }
        }
        for (i, s) in sides.iter().enumerate() {
            assert!(r[i].buffered() <= MAX_OOO, "dir {i}: buffered {} > {MAX_OOO}", r[i].buffered());
            assert_eq!(r[i].delivered, s.delivered_bytes, "dir {i}: delivered counter");
        }
        assert!(budget.used <= budget.cap, "budget {} > cap {}", budget.used, budget.cap);
        assert_eq!(
            budget.used,
            r[0].buffered() + r[1].buffered(),
            "budget does not match what the directions hold"
        );
    }
    for (d, s) in sides.iter_mut().enumerate() {
        r[d].flush(&mut c, &mut budget, &mut |ch| check_chunk(s, ch));
        assert_eq!(r[d].buffered(), 0);
        assert!(s.pending.is_empty(), "final flush: never delivered: {:?}", s.pending);
    }
    assert_eq!(budget.used, 0, "budget not released after flushing both directions");
});
