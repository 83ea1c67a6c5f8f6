//! The engine's side of the fetch, sans-IO: for swarms whose metainfo is unknown, how much
//! demand has been seen (PIECE bytes, distinct subscribers) and which peers were seen in
//! them with a port they listen on. Once a swarm passes either threshold, its peers are
//! handed out, each once, for the fetcher to try. Bounded: swarms and peers per swarm are
//! capped, and what does not fit is counted.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use crate::wire::infohash::InfoHash;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TriggerLimits {
    pub min_piece_bytes: u64,
    pub min_subscribers: u32,
    pub max_swarms: usize,
    pub max_peers_per_swarm: usize,
}

impl Default for TriggerLimits {
    fn default() -> Self {
        TriggerLimits {
            // Enough to know the swarm really carries data through this link (four 64 KiB
            // pieces), little enough that most of a first download is still ahead.
            min_piece_bytes: 256 * 1024,
            min_subscribers: 2,
            max_swarms: 1024,
            max_peers_per_swarm: 32,
        }
    }
}

/// A peer to ask: where it listens, and whether it is on the far side of the link (remote
/// peers are asked first: asking a subscriber costs it upload it pays for).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Candidate {
    pub addr: SocketAddr,
    pub remote: bool,
}

#[derive(Default)]
struct Watch {
    piece_bytes: u64,
    subscribers: Vec<IpAddr>,
    peers: Vec<Candidate>,
    /// Peers already handed out.
    sent: usize,
}

#[derive(Default)]
pub struct Trigger {
    limits: TriggerLimits,
    swarms: HashMap<InfoHash, Watch>,
    /// Swarms or peers not watched because a cap was reached.
    pub dropped: u64,
}

impl Trigger {
    pub fn new(limits: TriggerLimits) -> Trigger {
        Trigger {
            limits,
            ..Default::default()
        }
    }

    fn watch(&mut self, ih: InfoHash) -> Option<&mut Watch> {
        if !self.swarms.contains_key(&ih) && self.swarms.len() >= self.limits.max_swarms {
            self.dropped += 1;
            return None;
        }
        Some(self.swarms.entry(ih).or_default())
    }

    /// A peer of `ih` listening at `c.addr`.
    pub fn peer(&mut self, ih: InfoHash, c: Candidate) {
        let max = self.limits.max_peers_per_swarm;
        let Some(w) = self.watch(ih) else { return };
        if w.peers.iter().any(|p| p.addr == c.addr) {
            return;
        }
        if w.peers.len() >= max {
            self.dropped += 1;
            return;
        }
        w.peers.push(c);
    }

    /// A subscriber address took part in `ih`.
    pub fn subscriber(&mut self, ih: InfoHash, ip: IpAddr) {
        let need = self.limits.min_subscribers as usize;
        let Some(w) = self.watch(ih) else { return };
        // Only as many addresses as the threshold needs are kept.
        if w.subscribers.len() < need && !w.subscribers.contains(&ip) {
            w.subscribers.push(ip);
        }
    }

    pub fn piece_bytes(&mut self, ih: InfoHash, n: u64) {
        if let Some(w) = self.watch(ih) {
            w.piece_bytes = w.piece_bytes.saturating_add(n);
        }
    }

    /// Peers of `ih` not handed out yet, once the swarm has passed a threshold.
    pub fn ready(&mut self, ih: &InfoHash) -> Vec<Candidate> {
        let l = &self.limits;
        let Some(w) = self.swarms.get_mut(ih) else {
            return Vec::new();
        };
        let due = w.piece_bytes >= l.min_piece_bytes
            || (l.min_subscribers > 0 && w.subscribers.len() >= l.min_subscribers as usize);
        if !due || w.sent >= w.peers.len() {
            return Vec::new();
        }
        let new = w.peers[w.sent..].to_vec();
        w.sent = w.peers.len();
        new
    }

    /// Forget the swarms `known` says have metainfo now.
    pub fn retain_unknown(&mut self, known: impl Fn(&InfoHash) -> bool) {
        self.swarms.retain(|ih, _| !known(ih));
    }

    pub fn swarms(&self) -> usize {
        self.swarms.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(last: u8, remote: bool) -> Candidate {
        Candidate {
            addr: SocketAddr::from(([198, 19, 0, last], 6881)),
            remote,
        }
    }

    fn limits() -> TriggerLimits {
        TriggerLimits {
            min_piece_bytes: 1000,
            min_subscribers: 2,
            max_swarms: 2,
            max_peers_per_swarm: 3,
        }
    }

    #[test]
    fn peers_are_handed_out_once_after_piece_bytes() {
        let ih = InfoHash::from([1; 20]);
        let mut t = Trigger::new(limits());
        t.peer(ih, c(1, true));
        t.peer(ih, c(1, true));
        t.piece_bytes(ih, 999);
        assert!(t.ready(&ih).is_empty(), "below the threshold");
        t.piece_bytes(ih, 1);
        assert_eq!(t.ready(&ih), vec![c(1, true)]);
        assert!(t.ready(&ih).is_empty(), "each peer once");
        t.peer(ih, c(2, false));
        assert_eq!(t.ready(&ih), vec![c(2, false)]);
    }

    #[test]
    fn distinct_subscribers_trigger_too() {
        let ih = InfoHash::from([1; 20]);
        let mut t = Trigger::new(limits());
        t.peer(ih, c(1, true));
        let sub = IpAddr::from([198, 18, 0, 2]);
        t.subscriber(ih, sub);
        t.subscriber(ih, sub);
        assert!(t.ready(&ih).is_empty(), "one subscriber, twice");
        t.subscriber(ih, IpAddr::from([198, 18, 0, 3]));
        assert_eq!(t.ready(&ih), vec![c(1, true)]);
    }

    #[test]
    fn caps_are_counted() {
        let mut t = Trigger::new(limits());
        let (a, b, d) = (
            InfoHash::from([1; 20]),
            InfoHash::from([2; 20]),
            InfoHash::from([3; 20]),
        );
        for i in 1..=4 {
            t.peer(a, c(i, true));
        }
        assert_eq!(t.dropped, 1, "fourth peer over max_peers_per_swarm");
        t.piece_bytes(b, 1);
        t.piece_bytes(d, 1);
        assert_eq!(
            (t.swarms(), t.dropped),
            (2, 2),
            "third swarm over max_swarms"
        );
        t.retain_unknown(|ih| *ih == a);
        assert_eq!(t.swarms(), 1);
        t.piece_bytes(d, 1);
        assert_eq!(t.swarms(), 2, "room again once a swarm's metainfo is known");
    }
}
