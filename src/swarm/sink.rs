//! [`PieceSink`]: where verified pieces go, and what counts as "already cached". The disk
//! cache, the in-memory record and the policy rules implement it; the engine and piece
//! assembly only talk to it.

use std::net::SocketAddr;

use super::{Metainfo, VerifiedPiece};
use crate::wire::infohash::InfoHash;

/// Where verified pieces go, and what counts as "already cached".
pub trait PieceSink {
    fn contains(&self, info_hash: &InfoHash, index: u32) -> bool;
    /// A piece that verified (the type is the proof); returns whether it was admitted.
    fn admit(&self, m: &Metainfo, piece: VerifiedPiece) -> bool;
    /// A subscriber asked for this piece, held or not: a use for the cache policy.
    fn touch(&self, info_hash: &InfoHash, index: u32);
    /// Metainfo became known (a store persists it to re-verify pieces on its own).
    fn learn(&self, _m: &Metainfo) {}
    /// Pieces of this swarm held now.
    fn cached_pieces(&self, _info_hash: &InfoHash) -> u64 {
        0
    }
    /// What the store behind counted (stored and evicted bytes, write errors, ...).
    fn store_counters(&self) -> crate::stats::StoreCounters {
        Default::default()
    }
    /// Wait until everything admitted is stored (end of a replay).
    fn flush(&self) {}
    /// After a refused `admit`: whether this swarm's pieces should be offered again when
    /// they next verify (policy rules waiting for popularity). Default: never.
    fn retry_later(&self, _info_hash: &InfoHash) -> bool {
        false
    }
    /// A subscriber REQUESTed a block of this swarm (policy rules track popularity and the
    /// flow from it). Called once per subscriber REQUEST: keep it cheap.
    fn requested(&self, _info_hash: &InfoHash, _flow: &FlowContext) {}
    /// Whether `requested` can change what `admit` decides (so verdicts on a swarm's pieces
    /// must take effect before its next REQUEST is reported).
    fn watches_requests(&self) -> bool {
        false
    }
    /// A peer was proven to have sent a bad block copy of `bytes` bytes (it differs from
    /// its verified piece). Policy rules keep the running total per peer.
    fn proven_bad(&self, _peer: SocketAddr, _bytes: u64) {}
    /// Bad bytes proven against this peer so far (what rules on liars match).
    fn peer_proven_bad_bytes(&self, _peer: &SocketAddr) -> u64 {
        0
    }
    /// Whether the box may fetch this swarm's metainfo from its peers (policy rules).
    fn may_fetch(&self, _info_hash: &InfoHash) -> bool {
        true
    }
    /// Remove everything held for a swarm (a takedown); returns the piece bytes removed.
    fn purge(&self, _info_hash: &InfoHash) -> Result<u64, PurgeError> {
        Ok(0)
    }
}

/// The flow a subscriber REQUEST travelled on: what network, port and VLAN rules match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowContext {
    /// The requesting subscriber's address.
    pub subscriber: SocketAddr,
    /// The peer it asked.
    pub upstream: SocketAddr,
    pub vlan: Option<u16>,
}

/// A purge that could not complete (the store's own error, as text: sinks differ).
#[derive(Debug, thiserror::Error)]
#[error("purge failed: {0}")]
pub struct PurgeError(pub String);
