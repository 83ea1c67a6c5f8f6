//! One direction of a TCP connection as a tap sees it: reordered, duplicated, overlapping and
//! with holes the capture dropped. Delivers the contiguous byte stream to a sink, with
//! explicit gaps where bytes are proven lost (docs/design.md, "TCP reassembly on a tap").
//!
//! Stream offsets are u64 counted from the first byte after the SYN (or from the first byte
//! seen, mid-stream), so the buffer never deals with wrapping; only the conversion from a
//! `SeqNum` does, and it is relative to the next expected byte.

use std::collections::BTreeMap;

use crate::wire::seq::SeqNum;

/// Bookkeeping charged per buffered segment on top of its bytes, so a flood of one-byte
/// segments runs into the cap as surely as a flood of big ones (quinn-proto's lesson).
pub const SEGMENT_OVERHEAD: usize = 64;

#[derive(Clone, Copy, Debug)]
pub struct ReasmLimits {
    /// Out-of-order bytes (plus overhead) held per direction.
    pub max_ooo_bytes: usize,
    /// Out-of-order segments (after coalescing) held per direction.
    pub max_ooo_segments: usize,
    /// Bytes of delivered data kept to check retransmissions for conflicting content.
    pub conflict_window: usize,
    /// Segments starting further than this beyond the next expected byte are refused.
    pub max_ahead: u64,
}

impl Default for ReasmLimits {
    fn default() -> Self {
        ReasmLimits {
            max_ooo_bytes: 4 << 20,
            max_ooo_segments: 1024,
            conflict_window: 4096,
            max_ahead: 64 << 20,
        }
    }
}

crate::counter::counters! {
    /// Counters, summed over all directions by the engine.
    pub struct ReasmCounters {
        segments: counter "tcp_segments_total" "TCP data segments of BitTorrent flows.",
        gaps: counter "tcp_gaps_total" "TCP holes proven permanent (capture loss) and skipped.",
        gap_bytes: counter "tcp_gap_bytes_total" "Bytes in those holes.",
        overlaps: counter "tcp_overlaps_total" "TCP segments carrying bytes already received.",
        conflicting_overlaps: counter "tcp_conflicting_overlaps_total"
            "Overlaps whose bytes differ from the first copy (evasion or poisoning signal).",
        out_of_order: counter "tcp_out_of_order_total"
            "TCP segments starting beyond the next expected byte.",
        /// A per-direction or global cap forced a hole to be skipped.
        evictions: counter "tcp_reassembly_evictions_total"
            "Holes skipped because a reassembly memory cap was reached.",
        out_of_window: counter "tcp_out_of_window_total"
            "TCP segments too far ahead of the stream to be plausible (reassembly.max_ahead), refused.",
    }
}

/// Out-of-order bytes held across all flows of one engine, capped.
#[derive(Debug)]
pub struct Budget {
    pub used: usize,
    pub cap: usize,
}

impl Budget {
    pub fn new(cap: usize) -> Self {
        Budget { used: 0, cap }
    }
    fn give(&mut self, n: usize) {
        self.used = self.used.saturating_sub(n);
    }
}

/// What the reassembler hands to the next stage, in stream order.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk<'a> {
    Data(&'a [u8]),
    /// `n` bytes that will never arrive.
    Gap(u64),
    /// Data that will never arrive, of unknown length (uTP packets lost by the capture).
    Lost,
}

#[derive(Default)]
pub struct Reassembler {
    /// Sequence number of stream offset 0.
    base: Option<SeqNum>,
    pub syn_seen: bool,
    pub midstream: bool,
    /// Next offset to deliver; everything before it was delivered or skipped.
    next: u64,
    /// Held segments by start offset: non-overlapping, and none starts at `next`.
    ooo: BTreeMap<u64, Vec<u8>>,
    charged: usize,
    /// Highest offset the other side has acknowledged.
    acked: u64,
    /// The last delivered bytes, ending at `next`, for conflict checks.
    tail: Vec<u8>,
    pub fin: Option<u64>,
    pub delivered: u64,
}

/// The stream offset of `seq` in a direction that starts at `base` and has delivered `next`
/// bytes (sequence numbers wrap; the offset is taken nearest `next`).
fn offset_at(next: u64, base: SeqNum, seq: SeqNum) -> i64 {
    next as i64 + seq.diff(base + next as u32) as i64
}

/// Where `ack` falls, if it acknowledges bytes beyond the `next` delivered but no more than
/// `max_ahead` past them: the acknowledgements `on_ack` acts on.
fn ack_beyond(next: u64, base: SeqNum, ack: SeqNum, limits: &ReasmLimits) -> Option<u64> {
    let off = offset_at(next, base, ack);
    (off > next as i64 && off as u64 <= next + limits.max_ahead).then_some(off as u64)
}

impl Reassembler {
    /// A direction that so far carried only a SYN (or nothing): what a flow that never saw
    /// a byte of payload keeps, rebuilt into a whole reassembler when data comes.
    pub fn after_syn(base: Option<SeqNum>) -> Self {
        Reassembler {
            base,
            syn_seen: base.is_some(),
            ..Reassembler::default()
        }
    }

    /// Whether `on_ack` of a direction in the `after_syn(Some(base))` state would change
    /// anything: only an acknowledgement of bytes beyond the SYN does.
    pub fn ack_moves_fresh(base: SeqNum, ack: SeqNum, limits: &ReasmLimits) -> bool {
        ack_beyond(0, base, ack, limits).is_some()
    }

    pub fn next_offset(&self) -> u64 {
        self.next
    }

    pub fn has_base(&self) -> bool {
        self.base.is_some()
    }

    pub fn buffered(&self) -> usize {
        self.charged
    }

    /// Stream offset of sequence number `seq`, relative to the next expected byte so it is
    /// right across wraps. Negative means before the start of the stream.
    fn offset_of(&self, base: SeqNum, seq: SeqNum) -> i64 {
        offset_at(self.next, base, seq)
    }

    /// The other direction acknowledged up to `ack`: bytes before it reached the receiver,
    /// so a hole before it is capture loss and will not be retransmitted.
    pub fn on_ack<F: FnMut(Chunk<'_>)>(
        &mut self,
        ack: SeqNum,
        limits: &ReasmLimits,
        c: &mut ReasmCounters,
        budget: &mut Budget,
        sink: &mut F,
    ) {
        let Some(base) = self.base else { return };
        let Some(off) = ack_beyond(self.next, base, ack, limits) else {
            return;
        };
        self.acked = self.acked.max(off);
        self.skip_proven_holes(c, limits.conflict_window, budget, sink);
    }

    fn skip_proven_holes<F: FnMut(Chunk<'_>)>(
        &mut self,
        c: &mut ReasmCounters,
        window: usize,
        budget: &mut Budget,
        sink: &mut F,
    ) {
        while self.acked > self.next {
            let Some(&first) = self.ooo.keys().next() else {
                break;
            };
            self.skip_to(first, c, sink);
            self.drain(window, budget, sink);
        }
    }

    fn skip_to<F: FnMut(Chunk<'_>)>(&mut self, to: u64, c: &mut ReasmCounters, sink: &mut F) {
        if to <= self.next {
            return;
        }
        let n = to - self.next;
        c.gaps += 1;
        c.gap_bytes += n;
        sink(Chunk::Gap(n));
        self.next = to;
        self.tail.clear();
    }

    /// One segment of this direction. `seq` is the segment's sequence number as on the wire.
    #[allow(clippy::too_many_arguments)]
    pub fn segment<F: FnMut(Chunk<'_>)>(
        &mut self,
        seq: SeqNum,
        syn: bool,
        fin: bool,
        payload: &[u8],
        limits: &ReasmLimits,
        c: &mut ReasmCounters,
        budget: &mut Budget,
        sink: &mut F,
    ) {
        let data_seq = if syn { seq + 1 } else { seq };
        if syn {
            self.syn_seen = true;
            if self.base.is_none() {
                self.base = Some(data_seq);
            }
        }
        if self.base.is_none() {
            if payload.is_empty() && !fin {
                return;
            }
            // First sight of this direction is mid-stream: start here.
            self.base = Some(data_seq);
            self.midstream = true;
        }
        let Some(base) = self.base else { return };
        let start = self.offset_of(base, data_seq);
        let end = start + payload.len() as i64;
        if fin && end >= 0 {
            self.fin.get_or_insert(end as u64);
        }
        if payload.is_empty() {
            return;
        }
        c.segments += 1;
        if end <= 0 {
            // Entirely before the start of the stream (e.g. before a mid-stream pick-up).
            c.overlaps += 1;
            return;
        }
        let (mut start, mut payload) = (start, payload);
        if start < 0 {
            payload = &payload[(-start) as usize..];
            start = 0;
        }
        let mut start = start as u64;
        let mut overlapped = false;
        let mut conflict = false;
        if start < self.next {
            // Retransmission of something delivered: first copy wins; compare what we still
            // remember of it.
            overlapped = true;
            let old_end = self.next.min(start + payload.len() as u64);
            conflict = self.conflicts_with_tail(start, &payload[..(old_end - start) as usize]);
            let cut = (self.next - start) as usize;
            if cut >= payload.len() {
                c.overlaps += 1;
                c.conflicting_overlaps += conflict as u64;
                return;
            }
            payload = &payload[cut..];
            start = self.next;
        }
        if start > self.next + limits.max_ahead {
            c.out_of_window += 1;
            return;
        }
        if start > self.next {
            c.out_of_order += 1;
        }
        if start == self.next && self.ooo.is_empty() {
            // The common case: in order, nothing held. Zero copy.
            c.overlaps += overlapped as u64;
            c.conflicting_overlaps += conflict as u64;
            self.deliver(payload, limits.conflict_window, sink);
            return;
        }
        // Make room first: when a cap is reached, the holes in front of held data are not
        // waited for any longer (skipped, counted) and what becomes contiguous is delivered.
        let charge = payload.len() + SEGMENT_OVERHEAD;
        if !self.has_room(charge, limits, budget) {
            c.evictions += 1;
            while !self.has_room(charge, limits, budget) {
                let Some(&first) = self.ooo.keys().next() else {
                    break;
                };
                if first > start {
                    break;
                }
                self.skip_to(first, c, sink);
                self.drain(limits.conflict_window, budget, sink);
            }
            if !self.has_room(charge, limits, budget) {
                // Still no room (the segment is beyond all held data, or other flows hold
                // the global budget): give up on everything before it.
                self.flush_held(c, limits.conflict_window, budget, sink);
                if start > self.next {
                    self.skip_to(start, c, sink);
                }
                if start < self.next {
                    // Flushing delivered held data past `start`: the rest overlaps it.
                    let cut = ((self.next - start) as usize).min(payload.len());
                    payload = &payload[cut..];
                    overlapped = true;
                }
                c.overlaps += overlapped as u64;
                c.conflicting_overlaps += conflict as u64;
                self.deliver(payload, limits.conflict_window, sink);
                return;
            }
        }
        let (o, k) = self.insert(start, payload, budget);
        c.overlaps += (overlapped || o) as u64;
        c.conflicting_overlaps += (conflict || k) as u64;
        self.drain(limits.conflict_window, budget, sink);
        self.skip_proven_holes(c, limits.conflict_window, budget, sink);
    }

    fn has_room(&self, charge: usize, limits: &ReasmLimits, budget: &Budget) -> bool {
        self.charged + charge <= limits.max_ooo_bytes
            && self.ooo.len() < limits.max_ooo_segments
            && budget.used + charge <= budget.cap
    }

    fn deliver<F: FnMut(Chunk<'_>)>(&mut self, data: &[u8], window: usize, sink: &mut F) {
        if data.is_empty() {
            return;
        }
        sink(Chunk::Data(data));
        self.next += data.len() as u64;
        self.delivered += data.len() as u64;
        self.remember(data, window);
    }

    /// Keep the last `window` delivered bytes (amortised: trimmed when twice as long).
    fn remember(&mut self, data: &[u8], window: usize) {
        if window == 0 {
            return;
        }
        if data.len() >= window {
            self.tail.clear();
            self.tail.extend_from_slice(&data[data.len() - window..]);
            return;
        }
        if self.tail.len() + data.len() > 2 * window {
            let cut = (self.tail.len() + data.len() - window).min(self.tail.len());
            self.tail.drain(..cut);
        }
        self.tail.extend_from_slice(data);
    }

    /// Whether `old` (bytes at offset `start`, all before `next`) differs from what was
    /// delivered, as far as the tail remembers.
    fn conflicts_with_tail(&self, start: u64, old: &[u8]) -> bool {
        let tail_start = self.next - self.tail.len() as u64;
        let from = start.max(tail_start);
        let to = start + old.len() as u64;
        if from >= to {
            return false;
        }
        let mine = &self.tail[(from - tail_start) as usize..(to - tail_start) as usize];
        let theirs = &old[(from - start) as usize..(to - start) as usize];
        mine != theirs
    }

    /// Hold `payload` at `start` (>= next), keeping earlier copies where they overlap.
    /// Returns (overlapped anything held, with different bytes). The caller made room.
    fn insert(&mut self, start: u64, payload: &[u8], budget: &mut Budget) -> (bool, bool) {
        let end = start + payload.len() as u64;
        let mut overlapped = false;
        let mut conflict = false;
        // Uncovered sub-ranges of [start, end), found by walking held segments in order.
        let mut pieces: Vec<(u64, u64)> = Vec::new();
        let mut cursor = start;
        let first_key = self
            .ooo
            .range(..start)
            .next_back()
            .filter(|(k, v)| **k + v.len() as u64 > start)
            .map(|(k, _)| *k)
            .unwrap_or(start);
        for (&ks, v) in self.ooo.range(first_key..end) {
            let ke = ks + v.len() as u64;
            if ks > cursor {
                pieces.push((cursor, ks));
            }
            let (os, oe) = (ks.max(start), ke.min(end));
            if os < oe {
                overlapped = true;
                let held = &v[(os - ks) as usize..(oe - ks) as usize];
                let new = &payload[(os - start) as usize..(oe - start) as usize];
                conflict |= held != new;
            }
            cursor = cursor.max(ke);
        }
        if cursor < end {
            pieces.push((cursor, end));
        }
        for (ps, pe) in pieces {
            self.hold(
                ps,
                &payload[(ps - start) as usize..(pe - start) as usize],
                budget,
            );
        }
        (overlapped, conflict)
    }

    fn hold(&mut self, start: u64, bytes: &[u8], budget: &mut Budget) {
        // Coalesce with a held segment ending exactly here: a one-byte flood then costs one
        // entry, not thousands.
        let prev = self
            .ooo
            .range(..start)
            .next_back()
            .filter(|(k, v)| **k + v.len() as u64 == start)
            .map(|(k, _)| *k);
        let charge = bytes.len() + if prev.is_some() { 0 } else { SEGMENT_OVERHEAD };
        self.charged += charge;
        budget.used += charge;
        match prev.and_then(|k| self.ooo.get_mut(&k)) {
            Some(v) => v.extend_from_slice(bytes),
            None => {
                self.ooo.insert(start, bytes.to_vec());
            }
        }
    }

    /// Deliver held segments that are now contiguous.
    fn drain<F: FnMut(Chunk<'_>)>(&mut self, window: usize, budget: &mut Budget, sink: &mut F) {
        while let Some(entry) = self.ooo.first_entry() {
            let k = *entry.key();
            if k > self.next {
                break;
            }
            let v = entry.remove();
            let n = v.len() + SEGMENT_OVERHEAD;
            self.charged = self.charged.saturating_sub(n);
            budget.give(n);
            let skip = ((self.next - k) as usize).min(v.len());
            self.deliver(&v[skip..], window, sink);
        }
        if self.ooo.is_empty() {
            // Coalesced segments were charged one overhead for several; settle the books.
            budget.give(self.charged);
            self.charged = 0;
        }
    }

    fn flush_held<F: FnMut(Chunk<'_>)>(
        &mut self,
        c: &mut ReasmCounters,
        window: usize,
        budget: &mut Budget,
        sink: &mut F,
    ) {
        while let Some(&first) = self.ooo.keys().next() {
            self.skip_to(first, c, sink);
            self.drain(window, budget, sink);
        }
    }

    /// End of the connection or of the capture: whatever is held is delivered, with the holes
    /// in front of it reported as gaps.
    pub fn flush<F: FnMut(Chunk<'_>)>(
        &mut self,
        c: &mut ReasmCounters,
        budget: &mut Budget,
        sink: &mut F,
    ) {
        self.flush_held(c, 0, budget, sink);
        budget.give(self.charged);
        self.charged = 0;
        self.tail = Vec::new();
    }
}
