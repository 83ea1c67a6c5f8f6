//! A flow table with a hard cap on entries and idle expiry by packet time. The `lru` crate
//! keeps entries in last-seen order, so both expiry (pop the oldest while it is idle) and
//! eviction under pressure (pop the oldest) are O(1) per entry.

use std::hash::Hash;

use lru::LruCache;

pub struct Entry<V> {
    pub last_seen: u64,
    pub value: V,
}

pub struct FlowTable<K: Hash + Eq, V> {
    map: LruCache<K, Entry<V>>,
    cap: usize,
    idle_micros: u64,
}

impl<K: Hash + Eq + Clone, V> FlowTable<K, V> {
    pub fn new(cap: usize, idle_micros: u64) -> Self {
        FlowTable {
            map: LruCache::unbounded(),
            cap: cap.max(1),
            idle_micros,
        }
    }

    /// New cap and idle timeout; a smaller cap takes effect as flows come and go.
    pub fn set_limits(&mut self, cap: usize, idle_micros: u64) {
        self.cap = cap.max(1);
        self.idle_micros = idle_micros;
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Look up and mark as seen at `now`.
    pub fn get_mut(&mut self, key: &K, now: u64) -> Option<&mut V> {
        let e = self.map.get_mut(key)?;
        e.last_seen = e.last_seen.max(now);
        Some(&mut e.value)
    }

    /// Insert a new flow. When the table is full the least recently seen flow is evicted and
    /// handed to `on_evict` so its work can be finished and counted.
    pub fn insert(&mut self, key: K, value: V, now: u64, mut on_evict: impl FnMut(K, V)) -> &mut V {
        while self.map.len() >= self.cap {
            match self.map.pop_lru() {
                Some((k, e)) => on_evict(k, e.value),
                None => break,
            }
        }
        // Callers insert only keys they did not find, so this always inserts.
        &mut self
            .map
            .get_or_insert_mut(key, || Entry {
                last_seen: now,
                value,
            })
            .value
    }

    /// Remove flows idle since before `now - idle`, oldest first.
    pub fn expire(&mut self, now: u64, mut on_expire: impl FnMut(K, V)) {
        while let Some((_, e)) = self.map.peek_lru() {
            if e.last_seen.saturating_add(self.idle_micros) >= now {
                break;
            }
            if let Some((k, e)) = self.map.pop_lru() {
                on_expire(k, e.value);
            }
        }
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        self.map.pop(key).map(|e| e.value)
    }

    /// Empty the table (end of input), oldest first.
    pub fn drain(&mut self, mut f: impl FnMut(K, V)) {
        while let Some((k, e)) = self.map.pop_lru() {
            f(k, e.value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_and_expiry() {
        let mut t: FlowTable<u32, &str> = FlowTable::new(2, 10);
        let mut gone = Vec::new();
        t.insert(1, "a", 0, |k, _| gone.push(k));
        t.insert(2, "b", 5, |k, _| gone.push(k));
        t.get_mut(&1, 6);
        t.insert(3, "c", 7, |k, _| gone.push(k));
        assert_eq!(gone, vec![2]);
        t.expire(17, |k, _| gone.push(k));
        assert_eq!(gone, vec![2, 1]);
        assert_eq!(t.len(), 1);
    }
}
