//! Choosing which seeder->leecher data segments get which capture impairment.
//!
//! Impairments are placed so their expected effect is unambiguous for a reassembler: never
//! on the first or last 3 data segments of the direction, never before a midstream cut + 3,
//! never on the last segment of an application write (so reorder / overlap-conflict always
//! pair a segment with its successor of the same write, and a loss is always followed by a
//! data segment of the same write), and at least 4 segments from any other impairment.

use std::collections::BTreeSet;

use super::SynthError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Reorder,
    Duplicate,
    Loss,
    Conflict,
    OverlapConflict,
}

/// Per-flow schedule: impairment kinds keyed by ordinal among ELIGIBLE segments (see module
/// docs). Ordinals, not segment indices, because eligibility (last-in-write) is only known
/// while walking the script; spacing >= 4 between ordinals implies spacing >= 4 between the
/// underlying segment indices, which only grow faster.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    picks: Vec<(u64, Kind)>,
    next: usize,
}

/// How many of each kind a session gets.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    pub reorder: u32,
    pub duplicate: u32,
    pub loss: u32,
    pub conflict: u32,
    pub overlap_conflict: u32,
}

impl Counts {
    pub fn total(&self) -> u64 {
        [
            self.reorder,
            self.duplicate,
            self.loss,
            self.conflict,
            self.overlap_conflict,
        ]
        .iter()
        .map(|&c| u64::from(c))
        .sum()
    }
}

/// Minimum distance between two impaired segments.
pub const SPACING: u64 = 4;

impl Plan {
    /// Places `counts` among `eligible` candidate segments.
    pub fn choose(
        rng: &mut fastrand::Rng,
        counts: &Counts,
        eligible: u64,
        data_segments: u64,
    ) -> Result<Self, SynthError> {
        let m = counts.total();
        if m == 0 {
            return Ok(Plan::default());
        }
        // Pick m distinct values in [0, room) and spread them by SPACING-1 each: sorted
        // distinct values differ by >= 1, so spread ones differ by >= SPACING.
        let spread = (SPACING - 1) * (m - 1);
        let room = eligible
            .checked_sub(spread)
            .filter(|&r| r >= m)
            .ok_or_else(|| {
                SynthError::InvalidArgs(format!(
                    "{m} impairments per session do not fit in {data_segments} seeder data \
                 segments ({eligible} eligible, {SPACING} apart); raise --size or lower counts"
                ))
            })?;
        // Floyd's sampling: exactly m draws, no rejection loop whatever the density.
        let mut set = BTreeSet::new();
        for j in (room - m)..room {
            let t = rng.u64(0..=j);
            if !set.insert(t) {
                set.insert(j);
            }
        }
        let mut kinds = Vec::with_capacity(m as usize);
        for (kind, n) in [
            (Kind::Reorder, counts.reorder),
            (Kind::Duplicate, counts.duplicate),
            (Kind::Loss, counts.loss),
            (Kind::Conflict, counts.conflict),
            (Kind::OverlapConflict, counts.overlap_conflict),
        ] {
            kinds.extend(std::iter::repeat_n(kind, n as usize));
        }
        rng.shuffle(&mut kinds);
        let picks = set
            .into_iter()
            .enumerate()
            .map(|(i, v)| v + (SPACING - 1) * i as u64)
            .zip(kinds)
            .collect();
        Ok(Plan { picks, next: 0 })
    }

    /// The impairment for the eligible segment with this ordinal (ordinals are visited in
    /// increasing order).
    pub fn take(&mut self, ordinal: u64) -> Option<Kind> {
        match self.picks.get(self.next) {
            Some(&(o, kind)) if o == ordinal => {
                self.next += 1;
                Some(kind)
            }
            _ => None,
        }
    }

    #[cfg(test)]
    pub fn ordinals(&self) -> Vec<u64> {
        self.picks.iter().map(|p| p.0).collect()
    }
}
