//! What the splice counted (exported in the inline report and `/metrics`).
//!
//! The scalar counts are declared once ([`SpliceCounts`], by `crate::counter::counters!`), so
//! their merge, JSON keys and `/metrics` series follow from the declaration. The two
//! by-reason maps stay beside them by hand: their reasons are added as they occur (a series
//! appears with its first count), which a fixed declaration cannot express.

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};

use serde::ser::{Serialize, SerializeMap, Serializer};

use super::Bypass;
use crate::counter::Counters;

crate::counter::counters! {
    /// The splice's scalar counts, in the order of the inline report's keys.
    pub struct SpliceCounts {
        /// TCP connections seen opening (SYN) and tracked.
        connections: counter "inline_connections_total"
            "TCP connections the bridge saw open and tracked.",
        /// Of those, connections into which at least one block was inserted.
        connections_spliced: counter "inline_connections_spliced_total"
            "Connections into which at least one cached block was inserted.",
        /// REQUESTs from subscribers seen on tracked connections.
        requests: counter "inline_requests_total"
            "REQUESTs from subscribers on tracked connections.",
        /// REQUESTs answered from the cache (= hits).
        served_blocks: counter "inline_served_blocks_total"
            "REQUESTs answered from the cache (hits): blocks inserted toward subscribers.",
        served_bytes: counter "inline_served_bytes_total"
            "Block payload bytes served from the cache (bytes that did not cross transit).",
        /// REQUESTs for blocks not in the cache (forwarded upstream).
        misses: counter "inline_misses_total"
            "REQUESTs for blocks the cache does not hold (forwarded upstream).",
        miss_bytes: counter "inline_miss_bytes_total"
            "Block bytes requested but not cached.",
        // (The report's `bypassed` and `connections_bypassed` maps come here.)
        /// The first part of such a REQUEST was already forwarded, so the remote peer may
        /// send the block as well.
        split_requests_answered: counter "inline_split_requests_answered_total"
            "REQUESTs split across segments: answered from the cache and also left to the remote.",
        cancels_absorbed: counter "inline_cancels_absorbed_total"
            "CANCELs of answered blocks replaced by no-ops.",
        injected_segments: counter "inline_injected_segments_total"
            "Segments sent toward subscribers carrying inserted bytes (first sends).",
        retransmitted_segments: counter "inline_retransmitted_segments_total"
            "Inserted segments sent again because the subscriber had not acked them.",
        retransmitted_bytes: counter "inline_retransmitted_bytes_total"
            "Bytes of inserted segments sent again.",
        /// The subscriber stopped acking.
        retransmits_abandoned: counter "inline_retransmits_abandoned_total"
            "Inserted segments given up after inline.max_retransmits.",
        rewritten_segments: counter "inline_rewritten_segments_total"
            "Segments rewritten in place (sequence/ack translation, substitutions).",
        split_segments: counter "inline_split_segments_total"
            "Remote segments split at an insertion point.",
        /// Dropped, as the subscriber would have dropped them.
        bad_checksum_dropped: counter "inline_bad_checksum_dropped_total"
            "Remote segments that had to be split but arrived with a bad checksum (dropped).",
        /// A piece that no longer verifies is not served.
        read_failures: counter "inline_read_failures_total"
            "Cached blocks that could not be read back verified (not served).",
        /// Exported by `/metrics` with the capture counters, as
        /// `capture_dropped_frames_total{reason="engine"}`.
        engine_dropped: elsewhere "capture_dropped_frames_total"
            "Frames that could not be analysed because the engine queue was full (forwarded).",
        /// A later CANCEL of a forgotten block goes to the remote as the subscriber sent it.
        answered_evicted: counter "inline_answered_evicted_total"
            "Answered blocks forgotten because a connection already remembered inline.max_answered_per_connection of them.",
        /// Also counted in `bypassed` as `queue_full`.
        insertion_points_full: counter "inline_insertion_points_full_total"
            "REQUESTs forwarded because their connection had inline.max_insertion_points insertion points outstanding.",
        /// Of `connections_spliced`, those that began with MSE/PE key exchanges and selected
        /// plaintext (each direction framed from its located start).
        mse_connections_served: counter "inline_mse_connections_served_total"
            "Connections that opened with MSE/PE and negotiated plaintext, served (at least one block inserted).",
        /// Of `served_blocks`, those served on such connections.
        mse_served_blocks: counter "inline_mse_served_blocks_total"
            "Blocks served on connections that opened with MSE/PE and negotiated plaintext.",
    }
}

crate::counter::counters! {
    /// The uTP share of the splice's counts (the TCP share is the total less this), and
    /// what only uTP has.
    pub struct UtpSpliceCounts {
        connections: counter "inline_utp_connections_total"
            "uTP connections the bridge saw open (SYN) and tracked.",
        connections_spliced: counter "inline_utp_connections_spliced_total"
            "uTP connections into which at least one cached block was inserted.",
        requests: counter "inline_utp_requests_total"
            "REQUESTs from subscribers on tracked uTP connections.",
        served_blocks: counter "inline_utp_served_blocks_total"
            "REQUESTs on uTP connections answered from the cache.",
        served_bytes: counter "inline_utp_served_bytes_total"
            "Block payload bytes served from the cache over uTP.",
        misses: counter "inline_utp_misses_total"
            "REQUESTs on uTP connections for blocks the cache does not hold.",
        injected_packets: counter "inline_utp_injected_packets_total"
            "uTP DATA packets the box sent toward subscribers carrying inserted bytes (first sends).",
        retransmitted_packets: counter "inline_utp_retransmitted_packets_total"
            "Inserted uTP packets sent again (timeout, or the subscriber's selective ack showed one missing).",
        retransmitted_bytes: counter "inline_utp_retransmitted_bytes_total"
            "Payload bytes of inserted uTP packets sent again.",
        retransmits_abandoned: counter "inline_utp_retransmits_abandoned_total"
            "Inserted uTP packets given up after inline.max_retransmits.",
        acks_absorbed: counter "inline_utp_acks_absorbed_total"
            "Subscriber STATE packets that only acked inserted packets, kept from the remote (it would read them as duplicate acks).",
        rewritten_packets: counter "inline_utp_rewritten_packets_total"
            "uTP packets rewritten in place (numbers, acks, selective acks, window, substitutions).",
    }
}

/// What the splice did (exported in the inline report and `/metrics`).
///
/// The scalar counts are reached through `Deref` (`counters.served_blocks`), so the splice
/// counts the same way whether a count is declared or not.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServeCounters {
    pub counts: SpliceCounts,
    /// REQUESTs forwarded although they might have been answered, by reason.
    pub bypassed: BTreeMap<String, u64>,
    /// Connections that stopped being served, by reason (each connection once).
    pub connections_bypassed: BTreeMap<String, u64>,
    /// The uTP share, with its own by-reason maps (also counted in the two above).
    pub utp: UtpSpliceCounts,
    pub utp_bypassed: BTreeMap<String, u64>,
    pub utp_connections_bypassed: BTreeMap<String, u64>,
}

/// The declared key after which the report shows the two by-reason maps.
const MAPS_AFTER: &str = "miss_bytes";

impl ServeCounters {
    /// Add another worker's counts (inline with `inline.workers` above 1).
    pub fn merge(&mut self, o: &ServeCounters) {
        self.counts.merge(&o.counts);
        self.utp.merge(&o.utp);
        for (mine, theirs) in [
            (&mut self.bypassed, &o.bypassed),
            (&mut self.connections_bypassed, &o.connections_bypassed),
            (&mut self.utp_bypassed, &o.utp_bypassed),
            (
                &mut self.utp_connections_bypassed,
                &o.utp_connections_bypassed,
            ),
        ] {
            for (k, v) in theirs {
                *mine.entry(k.clone()).or_default() += v;
            }
        }
    }

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

    /// A uTP REQUEST forwarded although it might have been answered (in both maps).
    pub(super) fn utp_bypass(&mut self, why: Bypass) {
        self.bypass(why);
        *self.utp_bypassed.entry(why.as_str().into()).or_default() += 1;
    }

    /// A uTP connection stopped being served (in both maps).
    pub(super) fn utp_connection_bypassed(&mut self, why: Bypass) {
        self.connection_bypassed(why);
        *self
            .utp_connections_bypassed
            .entry(why.as_str().into())
            .or_default() += 1;
    }
}

impl Deref for ServeCounters {
    type Target = SpliceCounts;

    fn deref(&self) -> &SpliceCounts {
        &self.counts
    }
}

impl DerefMut for ServeCounters {
    fn deref_mut(&mut self) -> &mut SpliceCounts {
        &mut self.counts
    }
}

/// One flat object: the declared counts in declaration order, with the two maps after
/// `miss_bytes` (where the report has always had them), then `utp`: the uTP share and its
/// two maps.
impl Serialize for ServeCounters {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use crate::stats::Counters;
        let mut fields = Vec::with_capacity(SpliceCounts::DECLARED.len());
        self.counts.for_each(&mut |d, v| fields.push((d.key, v)));
        let mut m = s.serialize_map(Some(fields.len() + 3))?;
        for (key, v) in fields {
            m.serialize_entry(key, &v)?;
            if key == MAPS_AFTER {
                m.serialize_entry("bypassed", &self.bypassed)?;
                m.serialize_entry("connections_bypassed", &self.connections_bypassed)?;
            }
        }
        m.serialize_entry(
            "utp",
            &UtpJson {
                counts: &self.utp,
                bypassed: &self.utp_bypassed,
                connections_bypassed: &self.utp_connections_bypassed,
            },
        )?;
        m.end()
    }
}

#[derive(serde::Serialize)]
struct UtpJson<'a> {
    #[serde(flatten)]
    counts: &'a UtpSpliceCounts,
    bypassed: &'a BTreeMap<String, u64>,
    connections_bypassed: &'a BTreeMap<String, u64>,
}
