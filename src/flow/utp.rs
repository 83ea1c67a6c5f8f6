//! One direction of a uTP connection (BEP 29): packets ordered by a 16-bit wrapping
//! sequence number, each DATA payload a unit. Like TCP on a tap: reordered, duplicated and
//! lost packets; a hole is permanent once the receiver's cumulative ack_nr passes it, or
//! when a cap is reached. A lost packet's length is unknown, so holes are `Chunk::Lost`.

use std::collections::{BTreeMap, VecDeque};
use std::hash::{Hash, Hasher};

use super::tcp::{Budget, Chunk, SEGMENT_OVERHEAD};

#[derive(Clone, Copy, Debug)]
pub struct UtpLimits {
    /// Out-of-order packets held per direction.
    pub max_ooo_packets: usize,
    /// Out-of-order bytes (plus overhead) held per direction.
    pub max_ooo_bytes: usize,
}

impl Default for UtpLimits {
    fn default() -> Self {
        UtpLimits {
            max_ooo_packets: 512,
            max_ooo_bytes: 1 << 20,
        }
    }
}

crate::counter::counters! {
    /// uTP flows and their reassembly, summed over all directions by the engine.
    pub struct UtpCounters {
        flows: counter "utp_flows_total" "UDP flows recognised as uTP.",
        packets: counter "utp_packets_total" "uTP packets of those flows.",
        data_packets: counter "utp_data_packets_total" "uTP DATA packets.",
        out_of_order: counter "utp_out_of_order_total"
            "uTP DATA packets beyond the next expected seq_nr.",
        duplicates: counter "utp_duplicates_total" "uTP DATA packets already received.",
        conflicting: counter "utp_conflicting_total"
            "uTP DATA packets already received with a different payload (the first copy wins).",
        gaps: counter "utp_gaps_total" "uTP holes proven permanent and skipped.",
        gap_packets: counter "utp_gap_packets_total" "uTP packets in those holes.",
        evictions: counter "utp_reassembly_evictions_total"
            "uTP holes given up because a reassembly cap was reached.",
        resets: counter "utp_resets_total" "uTP RESET packets.",
        out_of_window: counter "utp_out_of_window_total"
            "uTP DATA packets implausibly far ahead, refused.",
    }
}

/// Packets further ahead than this are not taken as this connection's.
const MAX_AHEAD: i64 = 4096;

/// Delivered packets remembered (by digest) to tell a conflicting duplicate.
const RECENT: usize = 128;

fn digest(b: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    b.hash(&mut h);
    h.finish()
}

#[derive(Default)]
pub struct UtpReasm {
    /// Index of the next packet to deliver (indices are unwrapped sequence numbers).
    next: Option<u64>,
    next_seq: u16,
    held: BTreeMap<u64, Vec<u8>>,
    charged: usize,
    /// Highest index the receiver has acknowledged (cumulatively).
    acked: Option<u64>,
    recent: VecDeque<(u64, u64)>,
    pub delivered: u64,
}

impl UtpReasm {
    /// Start at a known sequence number (the SYN's seq_nr + 1 for the initiator).
    pub fn start_at(&mut self, seq: u16) {
        if self.next.is_none() {
            self.next = Some(0);
            self.next_seq = seq;
        }
    }

    fn index_of(&self, seq: u16) -> Option<i64> {
        let next = self.next? as i64;
        Some(next + seq.wrapping_sub(self.next_seq) as i16 as i64)
    }

    pub fn buffered(&self) -> usize {
        self.charged
    }

    pub fn data<F: FnMut(Chunk<'_>)>(
        &mut self,
        seq: u16,
        payload: &[u8],
        lim: &UtpLimits,
        c: &mut UtpCounters,
        budget: &mut Budget,
        sink: &mut F,
    ) {
        c.data_packets += 1;
        // First sight of this direction (no SYN seen): start here.
        self.start_at(seq);
        let Some(i) = self.index_of(seq) else { return };
        let next = self.next.unwrap_or(0) as i64;
        if i < next {
            c.duplicates += 1;
            let d = digest(payload);
            if self.recent.iter().any(|&(k, h)| k == i as u64 && h != d) {
                c.conflicting += 1;
            }
            return;
        }
        if i > next + MAX_AHEAD {
            // Not this connection's numbering (a stray or a new connection's packet).
            c.out_of_window += 1;
            return;
        }
        let i = i as u64;
        if let Some(held) = self.held.get(&i) {
            c.duplicates += 1;
            if held.as_slice() != payload {
                c.conflicting += 1;
            }
            return;
        }
        if i as i64 > next {
            c.out_of_order += 1;
        } else {
            // The next expected packet: deliver it now, whatever is held behind it.
            self.deliver(i, payload, sink);
            self.drain(budget, sink);
            self.skip_proven(c, budget, sink);
            return;
        }
        let charge = payload.len() + SEGMENT_OVERHEAD;
        let full = |s: &Self, b: &Budget| {
            s.held.len() >= lim.max_ooo_packets
                || s.charged + charge > lim.max_ooo_bytes
                || b.used + charge > b.cap
        };
        if full(self, budget) {
            c.evictions += 1;
            // Give up holes in front of held packets, but only those before this one: the
            // stream never moves backwards.
            while full(self, budget) {
                let Some(&k) = self.held.keys().next().filter(|&&k| k < i) else {
                    break;
                };
                self.skip_to(k, c, sink);
                self.drain(budget, sink);
            }
            if full(self, budget) {
                // Beyond everything held and still no room: give up on the hole before it.
                self.skip_to(i, c, sink);
                self.deliver(i, payload, sink);
                self.drain(budget, sink);
                return;
            }
        }
        self.charged += charge;
        budget.used += charge;
        self.held.insert(i, payload.to_vec());
        self.drain(budget, sink);
        self.skip_proven(c, budget, sink);
    }

    /// The other direction acknowledged up to `ack` (cumulative): packets up to it reached
    /// the receiver, so a hole at or before it is capture loss.
    pub fn ack<F: FnMut(Chunk<'_>)>(
        &mut self,
        ack: u16,
        c: &mut UtpCounters,
        budget: &mut Budget,
        sink: &mut F,
    ) {
        let Some(i) = self.index_of(ack) else { return };
        let next = self.next.unwrap_or(0) as i64;
        // Acks far behind or implausibly far ahead say nothing useful.
        if i < next || i > next + MAX_AHEAD {
            return;
        }
        self.acked = Some(self.acked.map_or(i as u64, |a| a.max(i as u64)));
        self.skip_proven(c, budget, sink);
    }

    fn skip_proven<F: FnMut(Chunk<'_>)>(
        &mut self,
        c: &mut UtpCounters,
        budget: &mut Budget,
        sink: &mut F,
    ) {
        while let (Some(acked), Some(next)) = (self.acked, self.next) {
            if acked < next {
                break;
            }
            let Some(&k) = self.held.keys().next() else {
                break;
            };
            self.skip_to(k, c, sink);
            self.drain(budget, sink);
        }
    }

    fn skip_to<F: FnMut(Chunk<'_>)>(&mut self, to: u64, c: &mut UtpCounters, sink: &mut F) {
        let Some(next) = self.next else { return };
        if to <= next {
            return;
        }
        c.gaps += 1;
        c.gap_packets += to - next;
        sink(Chunk::Lost);
        self.next_seq = self.next_seq.wrapping_add((to - next) as u16);
        self.next = Some(to);
    }

    fn deliver<F: FnMut(Chunk<'_>)>(&mut self, i: u64, payload: &[u8], sink: &mut F) {
        if !payload.is_empty() {
            sink(Chunk::Data(payload));
        }
        self.delivered += payload.len() as u64;
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back((i, digest(payload)));
        self.next = Some(i + 1);
        self.next_seq = self.next_seq.wrapping_add(1);
    }

    fn drain<F: FnMut(Chunk<'_>)>(&mut self, budget: &mut Budget, sink: &mut F) {
        while let (Some(next), Some(entry)) = (self.next, self.held.first_entry()) {
            if *entry.key() < next {
                // Already passed (delivered or skipped): release it, never deliver it twice.
                let v = entry.remove();
                let n = v.len() + SEGMENT_OVERHEAD;
                self.charged = self.charged.saturating_sub(n);
                budget.used = budget.used.saturating_sub(n);
                continue;
            }
            if *entry.key() != next {
                break;
            }
            let v = entry.remove();
            let n = v.len() + SEGMENT_OVERHEAD;
            self.charged = self.charged.saturating_sub(n);
            budget.used = budget.used.saturating_sub(n);
            self.deliver(next, &v, sink);
        }
    }

    /// End of the connection or capture: deliver what is held, holes as `Lost`.
    pub fn flush<F: FnMut(Chunk<'_>)>(
        &mut self,
        c: &mut UtpCounters,
        budget: &mut Budget,
        sink: &mut F,
    ) {
        while let Some(&k) = self.held.keys().next() {
            self.skip_to(k, c, sink);
            self.drain(budget, sink);
        }
        budget.used = budget.used.saturating_sub(self.charged);
        self.charged = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(ops: &[(char, u16, &[u8])]) -> (Vec<u8>, u64, UtpCounters) {
        let mut r = UtpReasm::default();
        let mut c = UtpCounters::default();
        let mut b = Budget::new(1 << 20);
        let mut out = Vec::new();
        let mut lost = 0;
        let lim = UtpLimits::default();
        for &(op, seq, data) in ops {
            let mut sink = |ch: Chunk<'_>| match ch {
                Chunk::Data(d) => out.extend_from_slice(d),
                _ => lost += 1,
            };
            match op {
                'd' => r.data(seq, data, &lim, &mut c, &mut b, &mut sink),
                _ => r.ack(seq, &mut c, &mut b, &mut sink),
            }
        }
        r.flush(&mut c, &mut b, &mut |ch| {
            if let Chunk::Data(d) = ch {
                out.extend_from_slice(d)
            }
        });
        assert_eq!(b.used, 0);
        (out, lost, c)
    }

    #[test]
    fn wraps_reorders_and_dedups() {
        let (out, lost, c) = run(&[
            ('d', 65534, b"ab"),
            ('d', 0, b"ef"),
            ('d', 65535, b"cd"),
            ('d', 65535, b"cd"),
            ('d', 65535, b"XX"),
            ('d', 1, b"gh"),
        ]);
        assert_eq!(out, b"abcdefgh");
        assert_eq!(lost, 0);
        assert_eq!(
            (c.out_of_order, c.duplicates, c.conflicting, c.gaps),
            (1, 2, 1, 0)
        );
    }

    #[test]
    fn in_order_packet_is_delivered_even_with_others_held() {
        // 65535 delivered; 255 held far ahead; 0 (the next) arrives too big to hold.
        let big = vec![7u8; 6000];
        let (out, _, c) = run(&[('d', 65535, b"a"), ('d', 255, b"z"), ('d', 0, &big)]);
        assert_eq!(out[0], b'a');
        assert_eq!(&out[1..6001], &big[..]);
        assert_eq!(out.last(), Some(&b'z'));
        assert_eq!(c.gaps, 1);
    }

    #[test]
    fn flush_terminates_after_evictions() {
        let mut ops: Vec<(char, u16, &[u8])> = vec![('d', 100, b"x")];
        for s in 105..113 {
            ops.push(('d', s, b"y"));
        }
        ops.push(('d', 102, b"w"));
        let (out, _, _) = run(&ops);
        assert!(out.starts_with(b"x"));
    }

    #[test]
    fn ack_proves_loss() {
        let (out, lost, c) = run(&[
            ('d', 10, b"a"),
            ('d', 12, b"c"),
            ('a', 11, b""),
            ('d', 13, b"d"),
        ]);
        assert_eq!(out, b"acd");
        assert_eq!(lost, 1);
        assert_eq!((c.gaps, c.gap_packets, c.out_of_order), (1, 1, 1));
    }
}
