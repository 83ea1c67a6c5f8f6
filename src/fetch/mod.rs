//! Fetching a swarm's metainfo from one of its peers (BEP 9 over BEP 10), for swarms whose
//! metainfo never crossed the wire (issue 14). Three parts:
//! - [`FetchSession`] (`session`): one connection to one peer, sans-IO like the engine and
//!   the splice: fed the peer's bytes and the time, drained of the bytes to send and its
//!   next deadline;
//! - [`Trigger`] (`trigger`): the engine's side, sans-IO too: which swarms lack metainfo
//!   and have shown enough demand, and which peers were seen in them (remote first);
//! - [`service`]: the thread that owns the sockets: it takes the engine's offers, picks a
//!   peer per swarm within every bound of [`FetchConfig`], runs a session over TCP from the
//!   box's own address, and hands verified metainfo to the registry and the cache exactly
//!   as wire metadata is handed (the engine then judges the swarm's quarantined pieces).
//!
//! The box is a guest in the swarm: it sends a handshake, a BEP 10 handshake and ut_metadata
//! requests, refuses every request made to it, never asks for or offers a piece, and stops
//! as soon as it has an answer. Metadata is accepted only when it hashes to the info-hash.

use thiserror::Error;

use crate::swarm::metainfo::{Metainfo, MetainfoError};

mod config;
pub mod magnet;
pub mod service;
mod session;
#[cfg(test)]
mod tests;
pub mod trigger;

pub use crate::stats::FetchCounters;
pub use config::FetchConfig;
pub use service::{FetchService, Wants};
pub use session::{our_peer_id, FetchSession, MAX_QUEUED, PEER_ID_PREFIX, UT_METADATA_ID};
pub use trigger::{Candidate, Trigger};

/// Every bound of one session (one peer); set from [`FetchConfig`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchLimits {
    /// Largest `metadata_size` accepted. The biggest real info dictionaries are a few MiB
    /// (20 bytes per piece); a claim past this is refused before anything is allocated.
    pub max_metadata_size: u64,
    /// Largest message buffered whole: the peer's BEP 10 handshake and ut_metadata messages
    /// (a 16 KiB piece and its header). Other messages are skipped, never buffered.
    pub max_message_len: u32,
    /// ut_metadata requests in flight at once.
    pub max_outstanding: u32,
    /// Seconds without a byte from the peer before giving up.
    pub idle_timeout_secs: u64,
    /// Seconds from the start before giving up, however the peer trickles.
    pub total_timeout_secs: u64,
}

impl Default for FetchLimits {
    fn default() -> Self {
        FetchLimits {
            max_metadata_size: 16 << 20,
            max_message_len: 64 * 1024,
            max_outstanding: 4,
            idle_timeout_secs: 20,
            total_timeout_secs: 60,
        }
    }
}

/// Why a fetch from this peer ended without metadata.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum Reason {
    /// The assembled dictionary does not hash to the info-hash: this peer is bad for this
    /// swarm and is not to be asked again.
    #[error("metadata does not hash to the info-hash")]
    HashMismatch,
    #[error("timed out")]
    Timeout,
    /// No BEP 10 bit in the handshake, or no ut_metadata / metadata_size in the extended one.
    #[error("peer does not offer ut_metadata")]
    NoExtensionSupport,
    #[error("peer's handshake names another info-hash")]
    WrongInfoHash,
    #[error("peer rejected a metadata request")]
    Rejected,
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
    /// The peer closed the connection before we had an answer.
    #[error("peer closed the connection")]
    Closed,
    /// The peer's claimed metadata size is over `max_metadata_size`.
    #[error("metadata of {0} bytes is over the cap")]
    TooLarge(u64),
    /// The dictionary hashes to the info-hash but is not one we can use (v2-only, say): no
    /// other peer can do better.
    #[error("metadata hashes right but is unusable: {0}")]
    Unusable(MetainfoError),
}

/// How a session ended.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Verified metadata: its `info` hashes to the info-hash asked for.
    Metadata(Metainfo),
    Failed(Reason),
}
