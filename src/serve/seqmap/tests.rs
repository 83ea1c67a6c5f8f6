//! The mapping's laws, for TCP's 32-bit byte numbers and uTP's 16-bit packet numbers, across
//! the wrap; and the TCP mapping against the splice's code before it was pulled out.

use proptest::prelude::*;

use super::*;

/// Insertions as (gap after the previous point, amount), from a start in R's numbering.
fn build<N: SeqSpace>(start: N, ins: &[(u32, u32)]) -> (SeqMap<N>, Vec<(N, u32, u32)>) {
    let mut m = SeqMap::new();
    // (point, inserted before it, inserted up to and including it)
    let mut pts: Vec<(N, u32, u32)> = Vec::new();
    let mut p = start;
    for &(gap, n) in ins {
        p = p.plus(gap);
        let before = m.total();
        assert!(m.insert(p, n));
        match pts.last_mut() {
            Some(last) if last.0 == p => last.2 += n,
            _ => pts.push((p, before, before + n)),
        }
    }
    (m, pts)
}

/// Forward-then-back is the identity on R's units; forward is strictly increasing, back
/// non-decreasing; acks inside (and at the edges of) inserted units map to the point; a
/// selective-ack block is removed exactly when it holds no unit of R's.
fn laws<N: SeqSpace>(start: N, ins: &[(u32, u32)]) {
    let (m, pts) = build(start, ins);
    let span: u32 = ins.iter().map(|&(g, _)| g).sum::<u32>() + 8;
    let first = start.minus(4);
    let mut prev: Option<N> = None;
    for k in 0..span {
        let r = first.plus(k);
        let s = m.forward(r);
        assert_eq!(m.back(s), r, "back(forward({r:?}))");
        assert_eq!(m.classify(s), Back::Original(r));
        if let Some(q) = prev {
            assert!(s.dist(q) > 0, "forward is monotone at {r:?}");
        }
        prev = Some(s);
    }
    for &(p, before, after) in &pts {
        for k in before..=after {
            let a = p.plus(k);
            assert_eq!(m.back(a), p, "ack inside the insert at {p:?}");
            if k < after {
                assert_eq!(m.classify(a), Back::Inserted { at: p });
            }
        }
    }
    // back is monotone over all of S's units, and selective-ack blocks over any of them
    let s_span = span + m.total();
    let mut last = m.back(first);
    for k in 0..s_span {
        let s = first.plus(k);
        let b = m.back(s);
        assert!(b.dist(last) >= 0, "back is monotone at {s:?}");
        last = b;
        for len in 1..4u32 {
            let e = s.plus(len);
            let any_original = (0..len).any(|j| matches!(m.classify(s.plus(j)), Back::Original(_)));
            let mapped = m.back_block(s, e);
            assert_eq!(mapped.is_some(), any_original, "block {s:?}..{e:?}");
            if let Some((l, r)) = mapped {
                assert_eq!((l, r), (m.back(s), m.back(e)));
            }
        }
    }
}

fn ins_strategy(
    max_gap: u32,
    max_n: u32,
    max_len: usize,
) -> impl Strategy<Value = Vec<(u32, u32)>> {
    prop::collection::vec((0..max_gap, 1..max_n), 0..max_len)
}

proptest! {
    #[test]
    fn tcp_laws(start in any::<u32>(), ins in ins_strategy(300, 200, 6)) {
        laws(SeqNum(start), &ins);
    }

    #[test]
    fn tcp_laws_across_the_wrap(before in 0u32..2000, ins in ins_strategy(400, 300, 6)) {
        laws(SeqNum(0u32.wrapping_sub(before)), &ins);
    }

    #[test]
    fn utp_laws(start in any::<u16>(), ins in ins_strategy(40, 6, 8)) {
        laws(UtpSeq(start), &ins);
    }

    #[test]
    fn utp_laws_across_the_wrap(before in 0u16..100, ins in ins_strategy(40, 6, 8)) {
        laws(UtpSeq(0u16.wrapping_sub(before)), &ins);
    }

    /// uTP acks name the last packet received: an ack of an inserted packet maps to the last
    /// R packet before it; an ack of R's packet to that packet.
    #[test]
    fn utp_last_received(start in any::<u16>(), ins in ins_strategy(40, 6, 8)) {
        let (m, pts) = build(UtpSeq(start), &ins);
        for &(p, before, after) in &pts {
            for k in before..after {
                prop_assert_eq!(m.back_last(p.plus(k)), p.minus(1));
            }
        }
        for k in 0..100 {
            let r = UtpSeq(start).plus(k);
            prop_assert_eq!(m.back_last(m.forward(r)), r);
        }
    }

    /// The TCP mapping does what the splice's hand-written code did (kept below verbatim),
    /// through insertions, retirement and probes anywhere near the points.
    #[test]
    fn tcp_matches_the_old_code(
        start in any::<u32>(),
        ops in prop::collection::vec((0u32..3000, 1u32..3000, any::<bool>()), 0..10),
        probes in prop::collection::vec(0u32..40_000, 1..40),
    ) {
        let mut m = SeqMap::new();
        let mut old = Old::default();
        let mut p = SeqNum(start);
        for &(gap, n, retire) in &ops {
            if retire {
                let una = p + gap / 2;
                m.retire(una);
                old.fold(una);
            } else {
                p = p + gap;
                prop_assert!(m.insert(p, n));
                old.insert(p, n);
            }
            prop_assert_eq!(m.is_identity(), !old.translating());
            prop_assert_eq!(m.total(), old.total_delta());
            prop_assert_eq!(m.points(), old.inserts.len());
            for &q in &probes {
                let x = SeqNum(start.wrapping_sub(2000)) + q;
                prop_assert_eq!(m.forward(x), old.s_of(x));
                prop_assert_eq!(m.back(x), old.r_of_ack(x));
                let y = x + (q % 50);
                prop_assert_eq!(m.back_block(x, y).is_some(), old.r_of_ack(x) < old.r_of_ack(y));
                let cuts: Vec<usize> = m.points_inside(x, 5000).collect();
                prop_assert_eq!(cuts, old.cuts(x, 5000));
            }
        }
    }
}

#[test]
fn points_behind_the_last_are_refused() {
    let mut m = SeqMap::new();
    assert!(m.insert(SeqNum(100), 10));
    assert!(!m.accepts(SeqNum(99)));
    assert!(!m.insert(SeqNum(99), 5));
    assert_eq!(m.total(), 10);
    // the same point again grows that insertion
    assert!(m.insert(SeqNum(100), 5));
    assert_eq!((m.points(), m.total()), (1, 15));
    assert_eq!(m.back(SeqNum(112)), SeqNum(100));
    assert_eq!(m.forward(SeqNum(100)), SeqNum(115));
    assert_eq!(m.forward(SeqNum(99)), SeqNum(99));
}

#[test]
fn retire_keeps_the_last_point_at_or_below_una() {
    let mut m = SeqMap::new();
    for (p, n) in [(100u32, 10u32), (200, 20), (300, 30)] {
        m.insert(SeqNum(p), n);
    }
    m.retire(SeqNum(250));
    assert_eq!(m.points(), 2);
    // S may still ack inside the bytes inserted at 200 (S-space 210..230)
    assert_eq!(m.back(SeqNum(220)), SeqNum(200));
    m.retire(SeqNum(300));
    assert_eq!(m.points(), 1);
    assert_eq!(m.total(), 60);
    assert_eq!(m.back(SeqNum(340)), SeqNum(300));
    assert_eq!(m.forward(SeqNum(400)), SeqNum(460));
}

/// The splice's mapping as it was written in serve/mod.rs before this module.
#[derive(Default)]
struct Old {
    inserts: std::collections::VecDeque<(SeqNum, u32)>,
    base_delta: u32,
}

impl Old {
    fn translating(&self) -> bool {
        self.base_delta != 0 || !self.inserts.is_empty()
    }
    fn total_delta(&self) -> u32 {
        self.inserts.back().map_or(self.base_delta, |&(_, d)| d)
    }
    fn delta_at(&self, r: SeqNum) -> u32 {
        self.inserts
            .iter()
            .rev()
            .find(|&&(p, _)| p <= r)
            .map_or(self.base_delta, |&(_, d)| d)
    }
    fn s_of(&self, r: SeqNum) -> SeqNum {
        r + self.delta_at(r)
    }
    fn r_of_ack(&self, a: SeqNum) -> SeqNum {
        let mut before = self.base_delta;
        for &(p, after) in &self.inserts {
            let (start, end) = (p + before, p + after);
            if a < start {
                break;
            }
            if a < end {
                return p;
            }
            before = after;
        }
        SeqNum(a.0.wrapping_sub(before))
    }
    fn insert(&mut self, p: SeqNum, n: u32) {
        let total = self.delta_at(p).wrapping_add(n);
        match self.inserts.back_mut() {
            Some(last) if last.0 == p => last.1 = total,
            _ => self.inserts.push_back((p, total)),
        }
    }
    fn fold(&mut self, una: SeqNum) {
        while self.inserts.len() >= 2 && self.inserts[1].0 <= una {
            if let Some((_, d)) = self.inserts.pop_front() {
                self.base_delta = d;
            }
        }
    }
    fn cuts(&self, a: SeqNum, len: usize) -> Vec<usize> {
        self.inserts
            .iter()
            .filter_map(|&(p, _)| {
                let d = p.diff(a);
                (d > 0 && (d as usize) < len).then_some(d as usize)
            })
            .collect()
    }
}
