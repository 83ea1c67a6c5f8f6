//! What the splice counted (exported in the inline report and `/metrics`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Bypass;

/// What the splice did (exported in the inline report and `/metrics`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServeCounters {
    /// TCP connections seen opening (SYN) and tracked.
    pub connections: u64,
    /// Of those, connections into which at least one block was inserted.
    pub connections_spliced: u64,
    /// REQUESTs from subscribers seen on tracked connections.
    pub requests: u64,
    /// REQUESTs answered from the cache (= hits), their blocks and payload bytes.
    pub served_blocks: u64,
    pub served_bytes: u64,
    /// REQUESTs for blocks not in the cache (forwarded upstream).
    pub misses: u64,
    pub miss_bytes: u64,
    /// REQUESTs forwarded although they might have been answered, by reason.
    pub bypassed: BTreeMap<String, u64>,
    /// Connections that stopped being served, by reason (each connection once).
    pub connections_bypassed: BTreeMap<String, u64>,
    /// REQUESTs split across two segments (the first part already forwarded): answered
    /// from the cache and also left to the remote peer (which may send the block as well).
    pub split_requests_answered: u64,
    /// CANCELs of answered blocks replaced by no-ops.
    pub cancels_absorbed: u64,
    /// Segments the box sent toward subscribers carrying inserted bytes (first sends).
    pub injected_segments: u64,
    pub retransmitted_segments: u64,
    pub retransmitted_bytes: u64,
    /// Inserted segments given up after `max_retransmits` (the subscriber stopped acking).
    pub retransmits_abandoned: u64,
    /// Segments rewritten in place (sequence/ack translation, substitutions).
    pub rewritten_segments: u64,
    /// Remote segments split at an insertion point.
    pub split_segments: u64,
    /// Remote segments that had to be split but arrived with a bad checksum: dropped, as
    /// the subscriber would have dropped them.
    pub bad_checksum_dropped: u64,
    /// Block reads that failed (a piece that no longer verifies is not served).
    pub read_failures: u64,
    /// Frames that could not be analysed because the engine queue was full (forwarded).
    pub engine_dropped: u64,
    /// Answered blocks forgotten because a connection already remembered
    /// `max_answered_per_connection` of them: a later CANCEL of one goes to the remote as
    /// the subscriber sent it.
    pub answered_evicted: u64,
    /// REQUESTs forwarded because their connection had `max_insertion_points` insertion
    /// points outstanding (also counted in `bypassed` as `queue_full`).
    pub insertion_points_full: u64,
}

impl ServeCounters {
    pub(super) fn bypass(&mut self, why: Bypass) {
        *self.bypassed.entry(why.as_str().into()).or_default() += 1;
    }

    /// A connection stopped being served (counted once per connection by the caller).
    pub(super) fn connection_bypassed(&mut self, why: Bypass) {
        *self
            .connections_bypassed
            .entry(why.as_str().into())
            .or_default() += 1;
    }
}
