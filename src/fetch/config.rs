//! The `metainfo_fetch` section: every bound of the box's own metadata fetches, with its
//! default. The session's bounds (`FetchLimits`) are keys of the same section.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::trigger::TriggerLimits;
use super::FetchLimits;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FetchConfig {
    /// Fetch metainfo from the swarm in tap and inline mode (replay never does: it is
    /// offline by design).
    pub enabled: bool,
    /// Source address of the box's own connections: its management address. None: the
    /// host's routing picks one. Inline bridge ports have no address, so a fetch always
    /// leaves by the host's routes, never through the bridge.
    pub bind: Option<IpAddr>,
    /// A swarm without metainfo is fetched once this many PIECE payload bytes of it were
    /// seen ...
    #[serde(deserialize_with = "crate::size::bytes")]
    pub min_piece_bytes: u64,
    /// ... or this many distinct subscriber addresses took part in it (0: never by
    /// subscribers alone).
    pub min_subscribers: u32,
    /// Fetch connections open at once, over all swarms.
    pub max_concurrent: usize,
    /// Peers tried per swarm before it is given up (until the box restarts).
    pub max_attempts_per_swarm: u32,
    /// Seconds between two attempts in one swarm.
    pub backoff_secs: u64,
    /// New fetch connections per second, over all swarms (0: none at all).
    pub max_starts_per_sec: u32,
    pub connect_timeout_secs: u64,
    /// Swarms waiting for a fetch (the engine's watch list and the fetcher's queue each);
    /// offers past it are dropped and counted.
    pub max_swarms: usize,
    /// Candidate peers remembered per swarm.
    pub max_peers_per_swarm: usize,
    /// Largest `metadata_size` a peer may announce (bytes).
    #[serde(deserialize_with = "crate::size::bytes")]
    pub max_metadata_size: u64,
    /// Largest peer message buffered whole (its BEP 10 handshake, a ut_metadata piece).
    #[serde(deserialize_with = "crate::size::bytes")]
    pub max_message_len: u32,
    /// ut_metadata requests in flight on one connection.
    pub max_outstanding: u32,
    /// Seconds without a byte from the peer before giving up on it.
    pub idle_timeout_secs: u64,
    /// Seconds from connect before giving up on it, however it trickles.
    pub total_timeout_secs: u64,
}

impl Default for FetchConfig {
    fn default() -> Self {
        let s = FetchLimits::default();
        let t = TriggerLimits::default();
        FetchConfig {
            enabled: true,
            bind: None,
            min_piece_bytes: t.min_piece_bytes,
            min_subscribers: t.min_subscribers,
            max_concurrent: 8,
            max_attempts_per_swarm: 8,
            backoff_secs: 5,
            max_starts_per_sec: 10,
            connect_timeout_secs: 5,
            max_swarms: t.max_swarms,
            max_peers_per_swarm: t.max_peers_per_swarm,
            max_metadata_size: s.max_metadata_size,
            max_message_len: s.max_message_len,
            max_outstanding: s.max_outstanding,
            idle_timeout_secs: s.idle_timeout_secs,
            total_timeout_secs: s.total_timeout_secs,
        }
    }
}

impl FetchConfig {
    pub fn limits(&self) -> FetchLimits {
        FetchLimits {
            max_metadata_size: self.max_metadata_size,
            max_message_len: self.max_message_len,
            max_outstanding: self.max_outstanding,
            idle_timeout_secs: self.idle_timeout_secs,
            total_timeout_secs: self.total_timeout_secs,
        }
    }

    pub fn trigger(&self) -> TriggerLimits {
        TriggerLimits {
            min_piece_bytes: self.min_piece_bytes,
            min_subscribers: self.min_subscribers,
            max_swarms: self.max_swarms,
            max_peers_per_swarm: self.max_peers_per_swarm,
        }
    }
}
