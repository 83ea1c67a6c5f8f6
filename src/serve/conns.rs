//! The splice's connection table: connections by key, a cap on how many, expiry of idle
//! ones, and each connection's next deadline (so the splice can say when it next needs time
//! without looking at every connection).
//!
//! Live connections are never evicted to make room, so a spliced one keeps its translation
//! to the end; a slot frees up only when its connection closes or idles past the timeout.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;

/// What the table needs to know of a connection.
pub(super) trait Tracked {
    /// When the connection last carried a frame (microseconds).
    fn last_seen(&self) -> u64;
    /// Bytes it holds against the box-wide queue budget (freed with it).
    fn queued_bytes(&self) -> usize;
}

/// How often idle connections are looked for while frames flow (microseconds).
const SWEEP_EVERY: u64 = 1_000_000;

pub(super) struct ConnTable<K, V> {
    /// Each connection with the deadline it is filed under in `timers`.
    map: HashMap<K, (V, Option<u64>)>,
    timers: BTreeSet<(u64, K)>,
    max: usize,
    idle: u64,
    last_sweep: u64,
}

impl<K: Copy + Eq + Hash + Ord, V: Tracked> ConnTable<K, V> {
    /// At most `max` connections; idle ones dropped after `idle_secs`.
    pub fn new(max: usize, idle_secs: u64) -> ConnTable<K, V> {
        ConnTable {
            map: HashMap::new(),
            timers: BTreeSet::new(),
            max,
            idle: idle_secs.saturating_mul(1_000_000),
            last_sweep: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn contains(&self, k: &K) -> bool {
        self.map.contains_key(k)
    }

    /// Whether one more connection fits, dropping idle ones first if the table is full;
    /// with the queued bytes the dropped ones held.
    pub fn make_room(&mut self, now: u64) -> (bool, usize) {
        let mut freed = 0;
        if self.map.len() >= self.max {
            freed = self.sweep(now);
        }
        (self.map.len() < self.max, freed)
    }

    /// Take a connection out to work on it; [`ConnTable::put`] files it again.
    pub fn take(&mut self, k: &K) -> Option<V> {
        let (v, at) = self.map.remove(k)?;
        if let Some(at) = at {
            self.timers.remove(&(at, *k));
        }
        Some(v)
    }

    /// File a connection (new or taken) with its next deadline, if it has one.
    pub fn put(&mut self, k: K, v: V, deadline: Option<u64>) {
        if let Some(at) = deadline {
            self.timers.insert((at, k));
        }
        if let Some((_, Some(old))) = self.map.insert(k, (v, deadline)) {
            // Filed twice without a take in between: keep one timer.
            if Some(old) != deadline {
                self.timers.remove(&(old, k));
            }
        }
    }

    /// The earliest deadline of any connection.
    pub fn next_deadline(&self) -> Option<u64> {
        self.timers.first().map(|&(at, _)| at)
    }

    /// Connections whose deadline is at or before `now`, earliest first.
    pub fn due(&self, now: u64) -> Vec<K> {
        self.timers
            .iter()
            .take_while(|&&(at, _)| at <= now)
            .map(|&(_, k)| k)
            .collect()
    }

    /// Once a second of frame time: drop idle connections; the queued bytes freed.
    pub fn periodic_sweep(&mut self, now: u64) -> usize {
        if now.saturating_sub(self.last_sweep) < SWEEP_EVERY {
            return 0;
        }
        self.last_sweep = now;
        self.sweep(now)
    }

    /// Drop connections idle past the timeout; the queued bytes they held.
    fn sweep(&mut self, now: u64) -> usize {
        let idle = self.idle;
        let mut freed = 0;
        let timers = &mut self.timers;
        self.map.retain(|k, (v, at)| {
            let keep = now.saturating_sub(v.last_seen()) < idle;
            if !keep {
                freed += v.queued_bytes();
                if let Some(at) = at {
                    timers.remove(&(*at, *k));
                }
            }
            keep
        });
        freed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct C(u64, usize);

    impl Tracked for C {
        fn last_seen(&self) -> u64 {
            self.0
        }
        fn queued_bytes(&self) -> usize {
            self.1
        }
    }

    #[test]
    fn cap_and_expiry() {
        let mut t: ConnTable<u32, C> = ConnTable::new(2, 10);
        t.put(1, C(0, 100), None);
        t.put(2, C(5_000_000, 7), None);
        // full, nobody idle long enough
        assert_eq!(t.make_room(9_000_000), (false, 0));
        // connection 1 idle 10 s: dropped to make room, its bytes freed
        assert_eq!(t.make_room(10_000_000), (true, 100));
        assert!(!t.contains(&1) && t.contains(&2));
        // the periodic sweep runs at most once a second
        assert_eq!(t.periodic_sweep(15_000_000), 7);
        assert_eq!(t.len(), 0);
        t.put(3, C(15_000_001, 1), None);
        assert_eq!(t.periodic_sweep(15_999_999), 0);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn deadlines_follow_take_and_put() {
        let mut t: ConnTable<u32, C> = ConnTable::new(8, 10);
        assert_eq!(t.next_deadline(), None);
        t.put(1, C(0, 0), Some(500));
        t.put(2, C(0, 0), Some(300));
        t.put(3, C(0, 0), None);
        assert_eq!(t.next_deadline(), Some(300));
        assert_eq!(t.due(400), vec![2]);
        assert_eq!(t.due(500), vec![2, 1]);
        // taken: its timer goes with it; put back later
        let c = t.take(&2).unwrap();
        assert_eq!(t.next_deadline(), Some(500));
        t.put(2, c, Some(900));
        assert_eq!(t.due(600), vec![1]);
        // filed twice: one timer
        t.put(1, C(0, 0), Some(700));
        assert_eq!(t.due(800), vec![1]);
        // expiry removes timers too
        assert_eq!(t.periodic_sweep(20_000_000), 0);
        assert_eq!((t.len(), t.next_deadline()), (0, None));
    }
}
