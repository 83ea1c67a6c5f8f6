//! The offline bound: Belady's MIN over 16 KiB blocks, O(n log n).
//!
//! The cache holds at most `capacity` blocks; a block can enter only at a request for it
//! (it must pass the box first, so a first request is always a miss). On a miss with a full
//! cache, evict the block whose next request is farthest (never-again first). With bypass,
//! a missed block whose next use is farther than every cached block's is not admitted
//! (and a never-again block never is): that variant is optimal for hit count (any schedule
//! can be exchanged into it without losing hits, the classic MIN argument). Without
//! bypass it is demand paging's optimum: every missed block enters.
//!
//! Why it bounds the policies (docs/sim.md): a piece policy keeps whole pieces within its
//! byte capacity, piece sizes rounded up to whole blocks, and a block of a cached piece is
//! served only after that block passed the box (`run.rs`). So at every moment the blocks it
//! can serve number at most capacity / 16 KiB, each entered at a request for it: a block
//! schedule MIN (with bypass) can do at least as well as.
//!
//! Memory: `NextUse` keeps one map entry per distinct block (its last position) while it
//! is built and one u32 per request (the next use), 4 bytes a request: 10^8 requests take
//! 400 MB plus the distinct blocks' map. Each MIN run adds one bit per request (which
//! positions are a cached block's next use) and a heap of at most 2 × capacity entries.

use std::collections::{BinaryHeap, HashMap};
use std::hash::Hash;

/// No next request.
pub const NEVER: u32 = u32::MAX;

/// Each request's next request for the same block, built in one forward pass: when a block
/// comes again, its previous position learns where.
pub struct NextUse<K> {
    last: HashMap<K, u32, foldhash::fast::FixedState>,
    pub next: Vec<u32>,
}

impl<K: Hash + Eq> NextUse<K> {
    pub fn new() -> Self {
        NextUse {
            last: HashMap::with_hasher(crate::cache::policy::hasher()),
            next: Vec::new(),
        }
    }

    /// The next request is for `block`. None when positions no longer fit in u32.
    pub fn push(&mut self, block: K) -> Option<()> {
        let i = u32::try_from(self.next.len())
            .ok()
            .filter(|&i| i != NEVER)?;
        if let Some(prev) = self.last.insert(block, i) {
            self.next[prev as usize] = i;
        }
        self.next.push(NEVER);
        Some(())
    }

    pub fn distinct(&self) -> usize {
        self.last.len()
    }

    /// The next-use array; the map of last positions is dropped.
    pub fn finish(self) -> Vec<u32> {
        self.next
    }
}

impl<K: Hash + Eq> Default for NextUse<K> {
    fn default() -> Self {
        Self::new()
    }
}

/// One MIN run at one capacity, fed the requests in order.
pub struct Min {
    capacity: u64,
    bypass: bool,
    /// Next-use positions of the cached blocks that will be requested again (max first);
    /// entries for positions already reached are stale and skipped.
    heap: BinaryHeap<u32>,
    /// Whether position i is the next use of a cached block.
    pending: Vec<u64>,
    live: u64,
    /// Cached blocks never requested again (only without bypass: they had to enter).
    dead: u64,
    pub hits: u64,
}

impl Min {
    pub fn new(capacity_blocks: u64, requests: usize, bypass: bool) -> Min {
        Min {
            capacity: capacity_blocks,
            bypass,
            heap: BinaryHeap::new(),
            pending: vec![0; requests.div_ceil(64)],
            live: 0,
            dead: 0,
            hits: 0,
        }
    }

    fn is_pending(&self, i: u32) -> bool {
        self.pending[i as usize / 64] & (1 << (i % 64)) != 0
    }

    fn set_pending(&mut self, i: u32, on: bool) {
        let (w, b) = (i as usize / 64, 1u64 << (i % 64));
        if on {
            self.pending[w] |= b;
        } else {
            self.pending[w] &= !b;
        }
    }

    fn keep(&mut self, next: u32) {
        if next == NEVER {
            // A never-again block can always be dropped at once: MIN would evict it first.
            // Without bypass it still takes the slot it had to enter.
            if !self.bypass {
                self.dead += 1;
            }
            return;
        }
        self.set_pending(next, true);
        self.heap.push(next);
        self.live += 1;
        if self.heap.len() as u64 > 2 * self.live + 64 {
            let pending = std::mem::take(&mut self.heap);
            self.heap = pending
                .into_iter()
                .filter(|&p| self.is_pending(p))
                .collect();
        }
    }

    /// The farthest cached next use, skipping stale entries.
    fn farthest(&mut self) -> Option<u32> {
        while let Some(&top) = self.heap.peek() {
            if self.is_pending(top) {
                return Some(top);
            }
            self.heap.pop();
        }
        None
    }

    fn evict_farthest(&mut self) {
        if let Some(top) = self.farthest() {
            self.heap.pop();
            self.set_pending(top, false);
            self.live -= 1;
        }
    }

    /// Request `i`, whose block is next requested at `next`: whether it hit.
    pub fn step(&mut self, i: u32, next: u32) -> bool {
        if self.is_pending(i) {
            self.set_pending(i, false);
            self.live -= 1;
            self.hits += 1;
            self.keep(next);
            return true;
        }
        if self.capacity == 0 {
            return false;
        }
        if self.bypass {
            if next == NEVER {
                return false;
            }
            if self.live >= self.capacity {
                match self.farthest() {
                    Some(far) if far > next => self.evict_farthest(),
                    _ => return false,
                }
            }
        } else if self.live + self.dead >= self.capacity {
            if self.dead > 0 {
                self.dead -= 1;
            } else {
                self.evict_farthest();
            }
        }
        self.keep(next);
        false
    }
}

/// MIN's hit count over a sequence of block keys (tests, small traces).
pub fn min_hits<K: Hash + Eq + Clone>(blocks: &[K], capacity: u64, bypass: bool) -> u64 {
    let mut nu = NextUse::new();
    for b in blocks {
        if nu.push(b.clone()).is_none() {
            break;
        }
    }
    let next = nu.finish();
    let mut m = Min::new(capacity, next.len(), bypass);
    for (i, &n) in next.iter().enumerate() {
        m.step(i as u32, n);
    }
    m.hits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_use_by_hand() {
        let mut nu = NextUse::new();
        for b in [1, 2, 1, 3, 2, 1] {
            nu.push(b).unwrap();
        }
        assert_eq!(nu.distinct(), 3);
        assert_eq!(nu.finish(), vec![2, 4, 5, NEVER, NEVER, NEVER]);
    }

    #[test]
    fn min_by_hand() {
        // Capacity 2. 1 2 in; 3 (next @6) is farther than 1 (@3) and 2 (@5): with bypass
        // skipped; 1 hit; 4 never again: skipped; 2 hit; 3 miss: 2 hits. Demand paging:
        // 3 evicts 2 (@5); 1 hit (then never again: dead); 4 replaces the dead 1 and is
        // dead itself; 2 replaces 4; 3 hit: 2 hits.
        let seq = [1, 2, 3, 1, 4, 2, 3];
        assert_eq!(min_hits(&seq, 2, true), 2);
        assert_eq!(min_hits(&seq, 2, false), 2);
        assert_eq!(min_hits(&seq, 0, true), 0);
        assert_eq!(min_hits(&seq, 10, false), 3);
    }
}
