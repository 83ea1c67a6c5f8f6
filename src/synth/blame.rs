//! What a poisoned run's copies imply, derived from the order they were sent in: which pieces
//! verify, which hash failures happen (and who took part), who is proven to have lied.
//!
//! The rules are those the engine documents (`swarm::assembly`), applied to the copies of
//! the piece in progress (copies of one block with the same bytes are one copy with every
//! sender; a sender repeating bytes it sent is nothing new):
//! - A piece is judged first when every block has a copy: that arrival is the first copy of
//!   the last block missing, and the first combination hashed is its sender's own copies if
//!   they cover the piece (no other sender's can yet), else the latest copy of every block.
//!   If that combination holds a bad copy, the piece fails once: every sender of a copy in
//!   it took part (honest ones too).
//! - A piece verifies when a combination of honest copies exists: here, when the honest
//!   seeder's own copies cover it (one honest sender per flow, and each flow's copies of a
//!   piece come after the previous flow's have verified it). Verified after a failure, it
//!   is recovered.
//! - At the verdict every sender of a bad copy held is proven bad for it (blocks + 1,
//!   bytes + its length); after the verdict every bad copy is, as it arrives.
//!
//! Memory: the copies of one piece (its blocks times its senders), and a few counters per
//! peer.

use std::collections::BTreeMap;
use std::net::SocketAddr;

/// One distinct copy of a block.
struct Copy {
    /// What its sender XORed the block with: 0 for the right bytes.
    lie: u8,
    len: u32,
    /// Every sender of these bytes, first one first.
    from: Vec<SocketAddr>,
    /// Arrival number (within the piece) of the latest sight of these bytes.
    last: u64,
}

/// The run's blame, piece by piece.
#[derive(Default)]
pub(super) struct Ledger {
    /// The piece in progress: the distinct copies of each of its blocks, in order of first
    /// sight.
    blocks: Vec<Vec<Copy>>,
    arrivals: u64,
    judged: bool,
    failed: bool,
    verified: bool,
    pub(super) pieces_verified: u64,
    pub(super) pieces_failed: u64,
    pub(super) pieces_recovered: u64,
    pub(super) failed_by_peer: BTreeMap<SocketAddr, u64>,
    /// Per peer: (bad copies, their bytes).
    pub(super) proven_bad: BTreeMap<SocketAddr, (u64, u64)>,
}

impl Ledger {
    /// The next piece, of `n` blocks, starts (the previous one is done with).
    pub(super) fn piece(&mut self, n: u32) {
        self.blocks.clear();
        self.blocks.resize_with(n as usize, Vec::new);
        self.arrivals = 0;
        self.judged = false;
        self.failed = false;
        self.verified = false;
    }

    /// A copy of block `block` (`len` bytes) of the piece in progress, from `from`, XORed
    /// with `lie` (0: the right bytes).
    pub(super) fn copy(&mut self, block: u32, len: u32, lie: u8, from: SocketAddr) {
        if self.verified {
            if lie != 0 {
                self.bad(from, len);
            }
            return;
        }
        self.arrivals += 1;
        let now = self.arrivals;
        let Some(copies) = self.blocks.get_mut(block as usize) else {
            return;
        };
        let new_copy = match copies.iter_mut().find(|c| c.lie == lie) {
            Some(c) => {
                c.last = now;
                if c.from.contains(&from) {
                    return; // a repeat: nothing to judge anew
                }
                c.from.push(from);
                false
            }
            None => {
                copies.push(Copy {
                    lie,
                    len,
                    from: vec![from],
                    last: now,
                });
                true
            }
        };
        if self.blocks.iter().any(|c| c.is_empty()) {
            return;
        }
        if !self.judged {
            // Complete only now: this was the first copy of the last block missing.
            debug_assert!(new_copy);
            self.judged = true;
            let pick = match self.own(from) {
                Some(own) => own,
                None => self.latest(),
            };
            let good = pick.iter().all(|c| c.lie == 0);
            let mut took_part: Vec<SocketAddr> = Vec::new();
            for c in &pick {
                for f in &c.from {
                    if !took_part.contains(f) {
                        took_part.push(*f);
                    }
                }
            }
            if good {
                self.verify();
                return;
            }
            self.failed = true;
            self.pieces_failed += 1;
            for f in took_part {
                *self.failed_by_peer.entry(f).or_default() += 1;
            }
        }
        if self
            .own(from)
            .is_some_and(|own| own.iter().all(|c| c.lie == 0))
        {
            self.verify();
        }
    }

    /// `from`'s own copies, one per block, if they cover the piece.
    fn own(&self, from: SocketAddr) -> Option<Vec<&Copy>> {
        self.blocks
            .iter()
            .map(|cs| cs.iter().find(|c| c.from.contains(&from)))
            .collect()
    }

    /// The latest copy of every block.
    fn latest(&self) -> Vec<&Copy> {
        self.blocks
            .iter()
            .filter_map(|cs| cs.iter().max_by_key(|c| c.last))
            .collect()
    }

    fn verify(&mut self) {
        self.verified = true;
        self.pieces_verified += 1;
        if self.failed {
            self.pieces_recovered += 1;
        }
        let bad: Vec<(SocketAddr, u32)> = self
            .blocks
            .iter()
            .flatten()
            .filter(|c| c.lie != 0)
            .flat_map(|c| c.from.iter().map(move |f| (*f, c.len)))
            .collect();
        for (f, len) in bad {
            self.bad(f, len);
        }
    }

    fn bad(&mut self, from: SocketAddr, len: u32) {
        let e = self.proven_bad.entry(from).or_default();
        e.0 += 1;
        e.1 += u64::from(len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u8) -> SocketAddr {
        SocketAddr::from(([198, 19, 0, n], 6881))
    }

    const L: u32 = 16384;

    /// Issue 20's capture in small: a liar's two blocks, the honest peer's other two (the
    /// piece fails with both in it), then the honest peer's whole piece again: it verifies
    /// when its re-sent block 1 completes its own set; only the liar is proven bad.
    #[test]
    fn refetch_fails_once_then_recovers() {
        let (s, h) = (peer(1), peer(2));
        let mut l = Ledger::default();
        l.piece(4);
        l.copy(0, L, 0x5a, h);
        l.copy(1, L, 0x5a, h);
        l.copy(2, L, 0, s);
        l.copy(3, L, 0, s);
        assert_eq!((l.pieces_failed, l.pieces_verified), (1, 0));
        l.copy(0, L, 0, s);
        assert_eq!(l.pieces_verified, 0, "block 1 is still only the liar's");
        l.copy(1, L, 0, s);
        l.copy(2, L, 0, s);
        l.copy(3, L, 0, s);
        assert_eq!((l.pieces_verified, l.pieces_recovered), (1, 1));
        assert_eq!(l.failed_by_peer, BTreeMap::from([(s, 1), (h, 1)]));
        assert_eq!(l.proven_bad, BTreeMap::from([(h, (2, 2 * u64::from(L)))]));
    }

    /// Identical bytes from two liars are one copy with two senders: the first liar's
    /// complete set fails with the second one taking part, and both are proven bad for every
    /// copy they sent. When no sender's own copies cover the piece, the latest copy of each
    /// block is the first combination judged.
    #[test]
    fn own_set_or_latest_and_shared_copies() {
        let (s, h1, h2) = (peer(1), peer(2), peer(3));
        let mut l = Ledger::default();
        l.piece(2);
        l.copy(0, L, 0x5a, h1);
        l.copy(0, L, 0x5a, h2);
        l.copy(1, L, 0x5a, h1);
        // h1's own set: its copy of block 0 is h2's too.
        assert_eq!(l.failed_by_peer, BTreeMap::from([(h1, 1), (h2, 1)]));
        l.copy(0, L, 0, s);
        l.copy(1, L, 0x5a, h2);
        l.copy(1, L, 0, s);
        assert_eq!((l.pieces_verified, l.pieces_recovered), (1, 1));
        assert_eq!(
            l.proven_bad,
            BTreeMap::from([(h1, (2, 2 * u64::from(L))), (h2, (2, 2 * u64::from(L)))])
        );
        // Latest: the honest copy of block 0 came after the liar's, block 1 is the liar's
        // only; neither sender's own copies cover the piece.
        let mut l = Ledger::default();
        l.piece(2);
        l.copy(0, L, 0x5a, h1);
        l.copy(0, L, 0, s);
        l.copy(1, L, 0x5a, h2);
        assert_eq!(l.failed_by_peer, BTreeMap::from([(s, 1), (h2, 1)]));
        // After the verdict a bad copy is blamed as it comes, a good one is nothing.
        l.copy(1, L, 0, s);
        l.copy(1, L, 0xa5, h1);
        l.copy(0, L, 0, h2);
        assert_eq!(
            l.proven_bad,
            BTreeMap::from([(h1, (2, 2 * u64::from(L))), (h2, (1, u64::from(L)))])
        );
    }
}
