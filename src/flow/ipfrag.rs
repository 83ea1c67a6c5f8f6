//! Bounded IP fragment reassembly. etherparse's `IpDefragBuf` does the range bookkeeping for
//! one datagram; its pool is unbounded (its own docs say so), so the pool is ours: a cap on
//! datagrams in progress, on their bytes, and a timeout by packet time.

use std::collections::HashMap;
use std::net::IpAddr;

use etherparse::defrag::IpDefragBuf;
use etherparse::{IpFragOffset, IpNumber};

use crate::wire::link::Fragment;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FragKey {
    vlan: Option<u16>,
    src: IpAddr,
    dst: IpAddr,
    ident: u32,
    protocol: u8,
}

struct Pending {
    buf: IpDefragBuf,
    bytes: usize,
    first_seen: u64,
}

crate::counter::counters! {
    /// IP fragment reassembly.
    pub struct FragCounters {
        fragments: counter "ip_fragments_total" "IP fragments seen.",
        reassembled: counter "ip_fragments_reassembled_total"
            "IP datagrams reassembled from fragments.",
        timed_out: counter "ip_fragments_timed_out_total"
            "Datagrams given up incomplete after ip_fragments.timeout_secs.",
        dropped_cap: counter "ip_fragments_dropped_cap_total"
            "Fragments refused because ip_fragments.max_datagrams or max_bytes was reached.",
        invalid: counter "ip_fragments_invalid_total"
            "Fragments inconsistent with their datagram, dropped.",
    }
}

pub struct Defragmenter {
    pending: HashMap<FragKey, Pending>,
    max_datagrams: usize,
    max_bytes: usize,
    bytes: usize,
    timeout_micros: u64,
    pub counters: FragCounters,
}

/// Outcome of offering one fragment.
pub enum FragResult {
    /// Datagram complete: (protocol, payload). The transport header is at its start.
    Complete(u8, Vec<u8>),
    Pending,
    /// Refused: the caps are full or the fragment is inconsistent. Counted.
    Dropped,
}

impl Defragmenter {
    pub fn new(max_datagrams: usize, max_bytes: usize, timeout_micros: u64) -> Self {
        Defragmenter {
            pending: HashMap::new(),
            max_datagrams,
            max_bytes,
            bytes: 0,
            timeout_micros,
            counters: FragCounters::default(),
        }
    }

    pub fn offer(&mut self, f: &Fragment<'_>, now: u64) -> FragResult {
        self.counters.fragments += 1;
        self.expire(now);
        let key = FragKey {
            vlan: f.vlan,
            src: f.src,
            dst: f.dst,
            ident: f.ident,
            protocol: f.protocol,
        };
        if !self.pending.contains_key(&key) {
            if self.pending.len() >= self.max_datagrams {
                self.counters.dropped_cap += 1;
                return FragResult::Dropped;
            }
            self.pending.insert(
                key,
                Pending {
                    buf: IpDefragBuf::new(IpNumber(f.protocol), Vec::new(), Vec::new()),
                    bytes: 0,
                    first_seen: now,
                },
            );
        }
        if self.bytes + f.data.len() > self.max_bytes {
            self.counters.dropped_cap += 1;
            self.drop_key(&key);
            return FragResult::Dropped;
        }
        let Ok(offset) = u16::try_from(f.offset / 8)
            .ok()
            .and_then(|o| IpFragOffset::try_new(o).ok())
            .ok_or(())
        else {
            self.counters.invalid += 1;
            self.drop_key(&key);
            return FragResult::Dropped;
        };
        let Some(p) = self.pending.get_mut(&key) else {
            return FragResult::Dropped;
        };
        if p.buf.add(offset, f.more, f.data).is_err() {
            self.counters.invalid += 1;
            self.drop_key(&key);
            return FragResult::Dropped;
        }
        p.bytes += f.data.len();
        self.bytes += f.data.len();
        if p.buf.is_complete() {
            if let Some(p) = self.pending.remove(&key) {
                self.bytes -= p.bytes;
                self.counters.reassembled += 1;
                let (data, _) = p.buf.take_bufs();
                return FragResult::Complete(f.protocol, data);
            }
        }
        FragResult::Pending
    }

    fn drop_key(&mut self, key: &FragKey) {
        if let Some(p) = self.pending.remove(key) {
            self.bytes -= p.bytes;
        }
    }

    fn expire(&mut self, now: u64) {
        if self.pending.is_empty() {
            return;
        }
        let timeout = self.timeout_micros;
        let before = self.pending.len();
        let mut freed = 0;
        self.pending.retain(|_, p| {
            let keep = p.first_seen.saturating_add(timeout) >= now;
            if !keep {
                freed += p.bytes;
            }
            keep
        });
        self.bytes -= freed;
        self.counters.timed_out += (before - self.pending.len()) as u64;
    }
}
