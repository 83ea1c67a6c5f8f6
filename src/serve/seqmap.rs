//! The splice's number mapping, pure (no frames, no I/O): where the box inserted data into
//! the stream a remote peer R sends a subscriber S, and how numbers translate between R's
//! numbering and S's because of it.
//!
//! An insertion at point `p` (in R's numbering) of `n` units puts `n` new units in front of
//! R's unit `p`: from then on R's unit `r >= p` is S's unit `r + n` (plus whatever was
//! inserted earlier). Going back, S's acknowledgement `a` (the next unit S expects) maps to
//! R's numbering by taking away what was inserted before it; an ack that lands inside
//! inserted units maps to the insertion point (R has sent everything before it).
//!
//! Generic over the numbering ([`SeqSpace`]): TCP numbers bytes with 32-bit wrapping
//! [`SeqNum`]s; uTP numbers packets with 16-bit wrapping `seq_nr`s ([`UtpSeq`]), where one
//! insertion is k whole packets. uTP's `ack_nr` names the last packet received rather than
//! the next expected: [`SeqMap::back_last`] maps those (an ack of an inserted packet maps to
//! the last R packet before it). A selective ack maps unit by unit with
//! [`SeqMap::classify`]: inserted units leave the mask, the rest map back; TCP's SACK blocks
//! map by [`SeqMap::back_block`].
//!
//! Numbers compare by signed distance, so everything in flight must lie within half the
//! space (2^31 bytes, 2^15 packets) of everything else, as TCP and uTP require anyway.

use std::collections::VecDeque;
use std::fmt::Debug;

use crate::wire::seq::SeqNum;

/// A wrapping sequence space. Amounts are `u32` and reduced modulo the space's size, so a
/// running total that wraps stays right in a 16-bit space too (2^32 is a multiple of 2^16).
pub trait SeqSpace: Copy + Eq + Debug {
    /// `self + n`, wrapping.
    fn plus(self, n: u32) -> Self;
    /// `self - n`, wrapping.
    fn minus(self, n: u32) -> Self;
    /// Signed distance `self - other`, correct across the wrap.
    fn dist(self, other: Self) -> i32;
}

/// `a` comes before `b`.
fn lt<N: SeqSpace>(a: N, b: N) -> bool {
    a.dist(b) < 0
}

impl SeqSpace for SeqNum {
    fn plus(self, n: u32) -> SeqNum {
        self + n
    }
    fn minus(self, n: u32) -> SeqNum {
        SeqNum(self.0.wrapping_sub(n))
    }
    fn dist(self, other: SeqNum) -> i32 {
        self.diff(other)
    }
}

/// A uTP `seq_nr`/`ack_nr` (BEP 29): packets, 16-bit, wrapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct UtpSeq(pub u16);

impl SeqSpace for UtpSeq {
    fn plus(self, n: u32) -> UtpSeq {
        UtpSeq(self.0.wrapping_add(n as u16))
    }
    fn minus(self, n: u32) -> UtpSeq {
        UtpSeq(self.0.wrapping_sub(n as u16))
    }
    fn dist(self, other: UtpSeq) -> i32 {
        i32::from(self.0.wrapping_sub(other.0) as i16)
    }
}

/// Where one of S's units comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Back<N> {
    /// R's unit of this number.
    Original(N),
    /// Inserted by the box in front of R's unit `at`.
    Inserted { at: N },
}

/// Insertion points of one stream and the translation they imply.
#[derive(Clone, Debug)]
pub struct SeqMap<N> {
    /// (point in R's numbering, total inserted up to and including it), ascending. Points R
    /// can no longer send below are folded into `base` (see [`SeqMap::retire`]).
    points: VecDeque<(N, u32)>,
    /// Inserted before the first point still kept.
    base: u32,
}

impl<N: SeqSpace> Default for SeqMap<N> {
    fn default() -> Self {
        SeqMap::new()
    }
}

impl<N: SeqSpace> SeqMap<N> {
    pub fn new() -> SeqMap<N> {
        SeqMap {
            points: VecDeque::new(),
            base: 0,
        }
    }

    /// Nothing inserted yet: numbers pass unchanged.
    pub fn is_identity(&self) -> bool {
        self.base == 0 && self.points.is_empty()
    }

    /// All units inserted so far (what R's next unit is shifted by).
    pub fn total(&self) -> u32 {
        self.points.back().map_or(self.base, |&(_, d)| d)
    }

    /// Insertion points kept (each costs memory; the caller caps them).
    pub fn points(&self) -> usize {
        self.points.len()
    }

    /// An insertion at `p` is possible: it is at or after every earlier point.
    pub fn accepts(&self, p: N) -> bool {
        !self.points.back().is_some_and(|&(q, _)| lt(p, q))
    }

    /// Units inserted before R's unit `r`.
    pub fn shift_at(&self, r: N) -> u32 {
        self.points
            .iter()
            .rev()
            .find(|&&(p, _)| !lt(r, p))
            .map_or(self.base, |&(_, d)| d)
    }

    /// R's unit `r` in S's numbering.
    pub fn forward(&self, r: N) -> N {
        r.plus(self.shift_at(r))
    }

    /// Where S's unit `s` comes from.
    pub fn classify(&self, s: N) -> Back<N> {
        let mut before = self.base;
        for &(p, after) in &self.points {
            let (start, end) = (p.plus(before), p.plus(after));
            if lt(s, start) {
                break;
            }
            if lt(s, end) {
                return Back::Inserted { at: p };
            }
            before = after;
        }
        Back::Original(s.minus(before))
    }

    /// S's ack `a` (the next unit it expects) in R's numbering; an ack inside inserted
    /// units maps to their insertion point.
    pub fn back(&self, a: N) -> N {
        match self.classify(a) {
            Back::Original(r) => r,
            Back::Inserted { at } => at,
        }
    }

    /// An ack naming the last unit received (uTP's `ack_nr`) in R's numbering: an ack of an
    /// inserted unit maps to the last R unit before it.
    pub fn back_last(&self, a: N) -> N {
        self.back(a.plus(1)).minus(1)
    }

    /// A selective-ack block `[left, right)` of S's in R's numbering; None when it maps to
    /// nothing (it lies within inserted units) and must be removed.
    pub fn back_block(&self, left: N, right: N) -> Option<(N, N)> {
        let (l, r) = (self.back(left), self.back(right));
        lt(l, r).then_some((l, r))
    }

    /// Offsets `d` with `0 < d < len` of the points inside R's run `start..start+len`
    /// (where a segment carrying that run must be cut).
    pub fn points_inside(&self, start: N, len: usize) -> impl Iterator<Item = usize> + '_ {
        self.points.iter().filter_map(move |&(p, _)| {
            let d = p.dist(start);
            (d > 0 && (d as usize) < len).then_some(d as usize)
        })
    }

    /// Record `n` units inserted in front of R's unit `p`. False (and nothing recorded)
    /// when `p` is before an earlier point (see [`SeqMap::accepts`]).
    pub fn insert(&mut self, p: N, n: u32) -> bool {
        if !self.accepts(p) {
            return false;
        }
        let total = self.shift_at(p).wrapping_add(n);
        match self.points.back_mut() {
            Some(last) if last.0 == p => last.1 = total,
            _ => self.points.push_back((p, total)),
        }
        true
    }

    /// R has been acked up to `una` (R's numbering) and never sends below it again: points
    /// it cannot reach fold into the base shift. The last point at or below `una` is kept,
    /// since S may still ack inside the units inserted there.
    pub fn retire(&mut self, una: N) {
        while self.points.len() >= 2 && !lt(una, self.points[1].0) {
            if let Some((_, d)) = self.points.pop_front() {
                self.base = d;
            }
        }
    }
}

#[cfg(test)]
mod tests;
