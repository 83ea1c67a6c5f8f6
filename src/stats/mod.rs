//! What the engine counts, mergeable across workers. Every counter is declared once with
//! [`counters!`] (name, kind, labels, help): the struct, its merge, its JSON key and its
//! `/metrics` series follow from that line. Groups that stages keep for themselves are
//! declared beside them (`flow::tcp::ReasmCounters`, `flow::utp::UtpCounters`,
//! `flow::ipfrag::FragCounters`, `metrics::CaptureCounters`); the report (`crate::report`)
//! places the groups in the JSON schema and `metrics::prometheus` renders them.
//!
//! To add a counter: add its line to the group it belongs to and count it. A group that the
//! report embeds as it is needs nothing else; one whose fields the report places one by one
//! (`EngineCounters`, `HitCounters`, `SwarmCounters`) has them listed in `report.rs` by
//! exhaustive patterns, so the build fails until the new field has a place in the JSON.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};

use serde::Serialize;

// The mechanism lives in `crate::counter` (below flow/ and stats/ alike); re-exported here
// for the layers above.
pub(crate) use crate::counter::counters;
pub use crate::counter::{Counter, Counters, Kind};

use crate::flow::ipfrag::FragCounters;
use crate::flow::tcp::ReasmCounters;
use crate::flow::utp::UtpCounters;
use crate::wire::infohash::InfoHash;

counters! {
    /// Totals of one engine that are not about one stage: frames in, and what the engine
    /// could not keep (every cap it hits is counted here or in the group of its stage).
    pub struct EngineCounters {
        frames: counter "frames_total" "Frames handed to the engine.",
        bytes: counter "bytes_total" "Bytes on the wire of those frames (original length).",
        swarms_overflow: counter "swarms_overflow_messages_total"
            "Messages of swarms past swarms.max_swarms, counted as unattributed.",
        blocks_unbuffered: counter "blocks_unbuffered_total"
            "PIECE blocks not held for assembly because swarms.max_block_buffer_bytes was reached.",
        metadata_failed: counter "metadata_failed_total"
            "BEP 9 metadata that assembled but did not hash to its info-hash.",
        metadata_refused: counter "metadata_refused_total"
            "BEP 9 metadata pieces refused: inconsistent size or offset, or past swarms.max_metadata_swarms.",
    }
}

counters! {
    /// The flow tables.
    pub struct FlowCounters {
        tcp: counter "flows_total" [proto = "tcp"] "Flows seen, by transport protocol.",
        udp: counter "flows_total" [proto = "udp"] "Flows seen, by transport protocol.",
        evicted: counter "flows_evicted_total"
            "Flows pushed out of a full flow table (flows.max_flows).",
        expired: counter "flows_expired_total" "Flows finished after their idle timeout.",
        ignored: counter "flows_ignored_total"
            "TCP flows found not to be plain BitTorrent and no longer followed.",
    }
}

counters! {
    /// BitTorrent connections by transport and encryption.
    pub struct BtCounters {
        tcp_connections: counter "bt_connections_total" [transport = "tcp"]
            "Plain BitTorrent connections, by transport.",
        utp_connections: counter "bt_connections_total" [transport = "utp"]
            "Plain BitTorrent connections, by transport.",
        encrypted_connections: total_of "bt_encrypted_connections_total"
            "MSE/PE connections over any transport.",
        encrypted_tcp_connections: counter "bt_encrypted_connections_total" [transport = "tcp"]
            "MSE/PE encrypted connections (not cacheable), by transport.",
        encrypted_utp_connections: counter "bt_encrypted_connections_total" [transport = "utp"]
            "MSE/PE encrypted connections (not cacheable), by transport.",
        midstream_connections: counter "bt_midstream_connections_total"
            "Plain TCP connections picked up mid-stream (start not captured).",
        encrypted_then_plain: counter "bt_encrypted_then_plain_total"
            "MSE connections that negotiated plaintext and were parsed after it.",
    }
}

counters! {
    /// The peer-wire parsers.
    pub struct PeerwireCounters {
        handshakes: counter "peerwire_handshakes_total" "Peer-wire handshakes parsed.",
        messages: counter "peerwire_messages_total" "Peer-wire messages parsed, both directions.",
        resyncs: counter "peerwire_resyncs_total"
            "Times the peer-wire parser lost framing and hunted for the next message.",
        resync_skipped_bytes: counter "peerwire_resync_skipped_bytes_total"
            "Bytes skipped while hunting for the next message boundary.",
        skipped_messages: counter "peerwire_skipped_messages_total"
            "Non-PIECE messages longer than peerwire.max_message_len, skipped unbuffered.",
    }
}

counters! {
    /// Would-be hits: subscriber REQUESTs for blocks of pieces cached at that moment.
    pub struct HitCounters {
        hits: counter "cache_hits_total" "Subscriber REQUESTs for blocks of pieces in the cache.",
        misses: counter "cache_misses_total"
            "Subscriber REQUESTs for blocks of pieces not in the cache.",
        hit_bytes: counter "cache_hit_bytes_total"
            "Bytes of those hits: what a box in the path saves the transit link.",
        miss_bytes: counter "cache_miss_bytes_total"
            "Bytes of those misses: what still comes from upstream.",
    }
}

counters! {
    /// Per-swarm (or unattributed) message and piece accounting. `/metrics` shows the sums
    /// over identified swarms.
    pub struct SwarmCounters {
        connections: counter "swarm_connections_total"
            "BitTorrent connections of identified swarms.",
        piece_messages: counter "swarm_piece_messages_total"
            "PIECE messages in identified swarms.",
        piece_bytes: counter "piece_bytes_total" "PIECE block bytes seen in identified swarms.",
        piece_bytes_lost: counter "piece_bytes_lost_total"
            "PIECE block bytes of identified swarms lost in capture gaps.",
        request_messages: counter "swarm_request_messages_total"
            "REQUEST messages in identified swarms.",
        blocks_overflow: counter "swarm_blocks_overflow_total"
            "Blocks not remembered for distinct_blocks once swarms.max_distinct_blocks was reached.",
        subscriber_piece_bytes_in: counter "subscriber_piece_bytes_total" [direction = "in"]
            "PIECE bytes of identified swarms to (in) and from (out) subscriber networks.",
        subscriber_piece_bytes_out: counter "subscriber_piece_bytes_total" [direction = "out"]
            "PIECE bytes of identified swarms to (in) and from (out) subscriber networks.",
        subscriber_requests: counter "subscriber_requests_total"
            "REQUESTs sent by subscribers in identified swarms.",
        pieces_verified: counter "pieces_verified_total"
            "Pieces whose SHA-1 matched the info dictionary.",
        pieces_failed: counter "pieces_failed_total"
            "Pieces whose SHA-1 did not match (corrupt or hostile senders).",
        pieces_admitted: counter "pieces_admitted_total"
            "Verified pieces the cache (and the policy rules) admitted.",
        pieces_dropped: counter "pieces_dropped_total"
            "Incomplete pieces dropped to stay within the assembly budget.",
        pieces_dropped_bytes: counter "pieces_dropped_bytes_total"
            "Block bytes of those dropped pieces.",
        pieces_retry_overflow: counter "pieces_retry_overflow_total"
            "Verified pieces refused for now (waiting for popularity) not kept for another offer because swarms.max_retry_pieces was reached.",
        block_copies_overflow: counter "block_copies_overflow_total"
            "Differing copies of a block dropped because swarms.max_block_copies were held for its piece.",
        alternatives_overflow: counter "block_alternatives_overflow_total"
            "Differing copies of a block refused because swarms.max_alternative_bytes of alternatives were held.",
        pieces_recovered: counter "pieces_recovered_total"
            "Pieces verified after a combination of their blocks had failed its hash (a poisoned swarm's honest bytes found).",
        piece_hashes: counter "piece_hashes_total"
            "SHA-1 computations of assembled pieces, every combination tried included.",
        pieces_search_capped: counter "pieces_search_capped_total"
            "Pieces whose search spent swarms.max_hash_attempts_per_piece hashes; from then on only each sender's own complete set is tried.",
        proven_bad_blocks: counter "proven_bad_blocks_total"
            "Block copies proven bad: they differ from the bytes of their verified piece (each sender counted).",
        proven_bad_bytes: counter "proven_bad_bytes_total"
            "Bytes of those block copies.",
        blame_resets: counter "blame_resets_total"
            "Times the digests kept to judge late copies of verified pieces reached swarms.max_blame_pieces and were forgotten.",
        quarantined_bytes: counter "quarantined_bytes_total"
            "Block bytes that waited in quarantine for metainfo.",
        quarantine_evicted_bytes: counter "quarantine_evicted_bytes_total"
            "Block bytes refused or evicted to stay within swarms.max_quarantine_bytes.",
    }
}

counters! {
    /// The piece store: running totals since open (`stored_*` are its contents now).
    pub struct StoreCounters {
        stored_bytes: gauge "cache_stored_bytes" "Bytes of verified pieces in the cache now.",
        stored_pieces: gauge "cache_stored_pieces" "Verified pieces in the cache now.",
        evicted_bytes: counter "cache_evicted_bytes_total"
            "Bytes of pieces evicted from the cache (by cache.policy) to stay within capacity.",
        evicted_pieces: counter "cache_evicted_pieces_total"
            "Pieces evicted from the cache (by cache.policy) to stay within capacity.",
        inserted_pieces: counter "cache_inserted_pieces_total" "Pieces written to the cache.",
        refused_pieces: counter "cache_refused_pieces_total"
            "Inserts refused: no metainfo for the swarm, bytes not matching the piece hash, or a piece larger than the whole capacity.",
        declined_pieces: counter "cache_declined_pieces_total"
            "Verified pieces that cache.policy's admission declined to keep (their files were deleted).",
        read_failures: counter "cache_read_failures_total"
            "Stored pieces that failed their hash (or vanished) on read; they were removed.",
        write_errors: counter "cache_write_errors_total"
            "I/O errors writing, committing or removing pieces (a piece that hit one is not cached).",
        writes_failing: gauge "cache_writes_failing"
            "1 while the cache cannot be written: the last write failed and none has succeeded since.",
    }
}

counters! {
    /// The policy rules' own bookkeeping (per-rule decisions are `rules::RuleCounters`).
    pub struct PolicyCounters {
        audit_write_errors: counter "rule_audit_write_errors_total"
            "Audit log lines that could not be written.",
        audit_seen_resets: counter "rule_audit_seen_resets_total"
            "Times the refusals remembered for the audit log reached policy.max_audit_seen and were forgotten (a refusal may be logged again).",
        requesters_resets: counter "rule_requesters_resets_total"
            "Times popularity tracking reached policy.max_tracked_swarms swarms and was cleared (popularity restarts from zero).",
        waiting_resets: counter "rule_waiting_resets_total"
            "Times the swarms waiting for popularity reached policy.max_tracked_swarms and were forgotten.",
        liars_resets: counter "rule_liars_resets_total"
            "Times the proven-bad bytes tracked per peer reached policy.max_tracked_peers and were forgotten.",
    }
}

counters! {
    /// The box's own metadata fetches (BEP 9), over all swarms (`crate::fetch`).
    pub struct FetchCounters {
        attempts: counter "metainfo_fetch_attempts_total"
            "Fetch connections the box opened to peers (one per attempt).",
        successes: counter "metainfo_fetch_results_total" [result = "success"]
            "How fetch attempts ended: success (metadata hashed to the info-hash), hash_mismatch (the peer is marked bad for the swarm), timeout, connect_failed, peer_error (no ut_metadata, reject, wrong info-hash, protocol error, closed, over the size cap), unusable (hashes right, but not a torrent the box can use).",
        hash_mismatches: counter "metainfo_fetch_results_total" [result = "hash_mismatch"]
            "How fetch attempts ended: success (metadata hashed to the info-hash), hash_mismatch (the peer is marked bad for the swarm), timeout, connect_failed, peer_error (no ut_metadata, reject, wrong info-hash, protocol error, closed, over the size cap), unusable (hashes right, but not a torrent the box can use).",
        timeouts: counter "metainfo_fetch_results_total" [result = "timeout"]
            "How fetch attempts ended: success (metadata hashed to the info-hash), hash_mismatch (the peer is marked bad for the swarm), timeout, connect_failed, peer_error (no ut_metadata, reject, wrong info-hash, protocol error, closed, over the size cap), unusable (hashes right, but not a torrent the box can use).",
        connect_failures: counter "metainfo_fetch_results_total" [result = "connect_failed"]
            "How fetch attempts ended: success (metadata hashed to the info-hash), hash_mismatch (the peer is marked bad for the swarm), timeout, connect_failed, peer_error (no ut_metadata, reject, wrong info-hash, protocol error, closed, over the size cap), unusable (hashes right, but not a torrent the box can use).",
        peer_errors: counter "metainfo_fetch_results_total" [result = "peer_error"]
            "How fetch attempts ended: success (metadata hashed to the info-hash), hash_mismatch (the peer is marked bad for the swarm), timeout, connect_failed, peer_error (no ut_metadata, reject, wrong info-hash, protocol error, closed, over the size cap), unusable (hashes right, but not a torrent the box can use).",
        unusable: counter "metainfo_fetch_results_total" [result = "unusable"]
            "How fetch attempts ended: success (metadata hashed to the info-hash), hash_mismatch (the peer is marked bad for the swarm), timeout, connect_failed, peer_error (no ut_metadata, reject, wrong info-hash, protocol error, closed, over the size cap), unusable (hashes right, but not a torrent the box can use).",
        refused_by_policy: counter "metainfo_fetch_policy_refusals_total"
            "Swarms the policy rules did not allow to be fetched (blocklist, allowlist).",
        metadata_bytes: counter "metainfo_fetch_metadata_bytes_total"
            "Bytes of verified info dictionaries fetched.",
        received_bytes: counter "metainfo_fetch_received_bytes_total"
            "Bytes received on fetch connections (all peers, all messages).",
        swarms_given_up: counter "metainfo_fetch_swarms_given_up_total"
            "Swarms given up: metainfo_fetch.max_attempts_per_swarm reached, or their metadata is unusable.",
        dropped: counter "metainfo_fetch_dropped_total"
            "Offers of swarms or peers not taken: metainfo_fetch.max_swarms reached, or the fetcher's queue full.",
        in_flight: gauge "metainfo_fetch_in_flight"
            "Fetch connections open now.",
    }
}

/// What piece assembly counts per swarm; the engine adds it to the swarm's
/// [`SwarmCounters`] ([`SwarmStats::add_pieces`]).
#[derive(Debug, Default, Clone)]
pub struct PieceCounters {
    pub verified: u64,
    pub failed: u64,
    pub admitted: u64,
    /// Incomplete pieces dropped to stay within the assembly budget.
    pub dropped: u64,
    pub dropped_bytes: u64,
    /// Verified pieces refused for now that the retry set had no room for.
    pub retry_overflow: u64,
    /// Block copies dropped because `max_block_copies` others were held.
    pub copies_overflow: u64,
    /// Alternative copies refused by `max_alternative_bytes`.
    pub alternatives_overflow: u64,
    pub recovered: u64,
    pub hashes: u64,
    pub search_capped: u64,
    pub blame_resets: u64,
    /// Per peer: block copies proven bad and their bytes.
    pub proven_bad_by_peer: BTreeMap<SocketAddr, (u64, u64)>,
    pub quarantined_bytes: u64,
    pub quarantine_evicted_bytes: u64,
    pub failed_by_peer: BTreeMap<SocketAddr, u64>,
}

/// Per-swarm (or unattributed) accounting: the declared counters (reached through
/// `Deref`, so `sw.connections += 1` reads as a field of the swarm) and what is not a sum.
#[derive(Debug, Default, Clone)]
pub struct SwarmStats {
    pub counts: SwarmCounters,
    pub blocks: HashSet<(u32, u32, u32)>,
    /// `blocks.len()`, kept so a snapshot can carry it without the set.
    pub distinct: u64,
    pub messages: BTreeMap<&'static str, u64>,
    pub extended: BTreeMap<String, u64>,
    pub metadata_size: Option<u64>,
    pub failed_by_peer: BTreeMap<SocketAddr, u64>,
    /// Per peer: block copies proven bad and their bytes.
    pub proven_bad_by_peer: BTreeMap<SocketAddr, (u64, u64)>,
}

impl Deref for SwarmStats {
    type Target = SwarmCounters;
    fn deref(&self) -> &SwarmCounters {
        &self.counts
    }
}

impl DerefMut for SwarmStats {
    fn deref_mut(&mut self) -> &mut SwarmCounters {
        &mut self.counts
    }
}

impl SwarmStats {
    /// A copy without the per-block set (`distinct` stays).
    fn clone_counters(&self) -> SwarmStats {
        SwarmStats {
            counts: self.counts,
            blocks: HashSet::new(),
            distinct: self.distinct,
            messages: self.messages.clone(),
            extended: self.extended.clone(),
            metadata_size: self.metadata_size,
            failed_by_peer: self.failed_by_peer.clone(),
            proven_bad_by_peer: self.proven_bad_by_peer.clone(),
        }
    }

    pub fn merge(&mut self, o: SwarmStats) {
        self.counts.merge(&o.counts);
        if self.blocks.is_empty() && o.blocks.is_empty() {
            self.distinct += o.distinct; // snapshots: no sets, an approximate sum
        } else {
            self.blocks.extend(o.blocks);
            self.distinct = self.blocks.len() as u64;
        }
        for (k, v) in o.messages {
            *self.messages.entry(k).or_default() += v;
        }
        for (k, v) in o.extended {
            *self.extended.entry(k).or_default() += v;
        }
        self.metadata_size = self.metadata_size.or(o.metadata_size);
        for (k, v) in o.failed_by_peer {
            *self.failed_by_peer.entry(k).or_default() += v;
        }
        for (k, (b, n)) in o.proven_bad_by_peer {
            let e = self.proven_bad_by_peer.entry(k).or_default();
            (e.0, e.1) = (e.0 + b, e.1 + n);
        }
    }

    /// Add what assembly counted for this swarm. The pattern names every field, so a
    /// counter added to `PieceCounters` does not build until it has a place here.
    pub fn add_pieces(&mut self, c: &PieceCounters) {
        let PieceCounters {
            verified,
            failed,
            admitted,
            dropped,
            dropped_bytes,
            retry_overflow,
            copies_overflow,
            alternatives_overflow,
            recovered,
            hashes,
            search_capped,
            blame_resets,
            quarantined_bytes,
            quarantine_evicted_bytes,
            failed_by_peer,
            proven_bad_by_peer,
        } = c;
        let s = &mut self.counts;
        s.pieces_verified += verified;
        s.pieces_failed += failed;
        s.pieces_admitted += admitted;
        s.pieces_dropped += dropped;
        s.pieces_dropped_bytes += dropped_bytes;
        s.pieces_retry_overflow += retry_overflow;
        s.block_copies_overflow += copies_overflow;
        s.alternatives_overflow += alternatives_overflow;
        s.pieces_recovered += recovered;
        s.piece_hashes += hashes;
        s.pieces_search_capped += search_capped;
        s.blame_resets += blame_resets;
        s.quarantined_bytes += quarantined_bytes;
        s.quarantine_evicted_bytes += quarantine_evicted_bytes;
        for (peer, n) in failed_by_peer {
            *self.failed_by_peer.entry(*peer).or_default() += n;
        }
        for (peer, (b, n)) in proven_bad_by_peer {
            let e = self.proven_bad_by_peer.entry(*peer).or_default();
            (e.0, e.1) = (e.0 + b, e.1 + n);
            s.proven_bad_blocks += b;
            s.proven_bad_bytes += n;
        }
    }
}

/// One reassembled TCP connection, when `record_streams` is on.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct StreamRecord {
    pub client: String,
    pub server: String,
    pub c2s_bytes: u64,
    pub c2s_sha1: String,
    pub s2c_bytes: u64,
    pub s2c_sha1: String,
}

/// Everything one engine (one worker) counted. The [`EngineCounters`] are reached through
/// `Deref` (`stats.frames`).
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub totals: EngineCounters,
    pub decode_errors: BTreeMap<&'static str, u64>,
    pub flows: FlowCounters,
    pub bittorrent: BtCounters,
    pub reassembly: ReasmCounters,
    pub utp: UtpCounters,
    pub peerwire: PeerwireCounters,
    pub ip_fragments: FragCounters,
    pub swarms: HashMap<InfoHash, SwarmStats>,
    pub unattributed: SwarmStats,
    pub streams: Vec<StreamRecord>,
    pub hits: HitCounters,
    pub first_ts: Option<u64>,
    pub last_ts: Option<u64>,
}

impl Deref for Stats {
    type Target = EngineCounters;
    fn deref(&self) -> &EngineCounters {
        &self.totals
    }
}

impl DerefMut for Stats {
    fn deref_mut(&mut self) -> &mut EngineCounters {
        &mut self.totals
    }
}

impl Stats {
    /// A copy of the counters without the per-block sets and stream records: cheap enough
    /// to take every second for live metrics.
    pub fn counters(&self) -> Stats {
        Stats {
            totals: self.totals,
            decode_errors: self.decode_errors.clone(),
            flows: self.flows,
            bittorrent: self.bittorrent,
            reassembly: self.reassembly,
            utp: self.utp,
            peerwire: self.peerwire,
            ip_fragments: self.ip_fragments,
            swarms: self
                .swarms
                .iter()
                .map(|(k, v)| (*k, v.clone_counters()))
                .collect(),
            unattributed: self.unattributed.clone_counters(),
            streams: Vec::new(),
            hits: self.hits,
            first_ts: self.first_ts,
            last_ts: self.last_ts,
        }
    }

    pub fn merge(&mut self, o: Stats) {
        self.totals.merge(&o.totals);
        for (k, v) in o.decode_errors {
            *self.decode_errors.entry(k).or_default() += v;
        }
        self.flows.merge(&o.flows);
        self.bittorrent.merge(&o.bittorrent);
        self.reassembly.merge(&o.reassembly);
        self.utp.merge(&o.utp);
        self.peerwire.merge(&o.peerwire);
        self.ip_fragments.merge(&o.ip_fragments);
        for (k, v) in o.swarms {
            self.swarms.entry(k).or_default().merge(v);
        }
        self.unattributed.merge(o.unattributed);
        self.streams.extend(o.streams);
        self.hits.merge(&o.hits);
        self.first_ts = match (self.first_ts, o.first_ts) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_ts = self.last_ts.max(o.last_ts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Gives every field of `c` a value no other field has.
    fn fill<C: Counters>(c: &mut C, next: &mut u64) {
        c.for_each_mut(&mut |_, v| {
            *next += 1;
            *v = *next;
        });
    }

    fn values<C: Counters>(c: &C) -> Vec<u64> {
        let mut out = Vec::new();
        c.for_each(&mut |_, v| out.push(v));
        out
    }

    fn twice(v: Vec<u64>) -> Vec<u64> {
        v.into_iter().map(|x| 2 * x).collect()
    }

    #[test]
    fn swarm_merge_adds_counters_and_unions_blocks() {
        let mut n = 0;
        let mut a = SwarmStats::default();
        fill(&mut a.counts, &mut n);
        a.blocks.insert((1, 0, 16384));
        let mut b = a.clone();
        b.blocks.insert((2, 0, 16384));
        let want = twice(values(&a.counts));
        a.merge(b);
        assert_eq!(values(&a.counts), want);
        assert_eq!(a.distinct, 2);
    }

    #[test]
    fn add_pieces_reaches_every_swarm_counter_it_names() {
        let p = PieceCounters {
            verified: 1,
            failed: 2,
            admitted: 3,
            dropped: 4,
            dropped_bytes: 5,
            retry_overflow: 6,
            copies_overflow: 10,
            alternatives_overflow: 11,
            recovered: 12,
            hashes: 13,
            search_capped: 14,
            blame_resets: 15,
            quarantined_bytes: 7,
            quarantine_evicted_bytes: 8,
            failed_by_peer: [("192.0.2.1:6881".parse().unwrap(), 9)].into(),
            proven_bad_by_peer: [("192.0.2.2:6881".parse().unwrap(), (17, 18))].into(),
        };
        let mut s = SwarmStats::default();
        s.add_pieces(&p);
        s.add_pieces(&p);
        let c = s.counts;
        assert_eq!(
            [
                c.pieces_verified,
                c.pieces_failed,
                c.pieces_admitted,
                c.pieces_dropped,
                c.pieces_dropped_bytes,
                c.pieces_retry_overflow,
                c.block_copies_overflow,
                c.quarantined_bytes,
                c.quarantine_evicted_bytes,
                c.alternatives_overflow,
                c.pieces_recovered,
                c.piece_hashes,
                c.pieces_search_capped,
                c.blame_resets,
                c.proven_bad_blocks,
                c.proven_bad_bytes,
            ],
            [2, 4, 6, 8, 10, 12, 20, 14, 16, 22, 24, 26, 28, 30, 34, 36]
        );
        assert_eq!(s.failed_by_peer.values().sum::<u64>(), 18);
        assert_eq!(s.proven_bad_by_peer.values().next(), Some(&(34, 36)));
    }

    #[test]
    fn stats_merge_adds_every_group() {
        let mut n = 0;
        let mut a = Stats::default();
        fill(&mut a.totals, &mut n);
        fill(&mut a.flows, &mut n);
        fill(&mut a.bittorrent, &mut n);
        fill(&mut a.reassembly, &mut n);
        fill(&mut a.utp, &mut n);
        fill(&mut a.peerwire, &mut n);
        fill(&mut a.ip_fragments, &mut n);
        fill(&mut a.hits, &mut n);
        let mut sw = SwarmStats::default();
        fill(&mut sw.counts, &mut n);
        a.swarms.insert([1; 20].into(), sw);
        fill(&mut a.unattributed.counts, &mut n);
        let all = |s: &Stats| {
            [
                values(&s.totals),
                values(&s.flows),
                values(&s.bittorrent),
                values(&s.reassembly),
                values(&s.utp),
                values(&s.peerwire),
                values(&s.ip_fragments),
                values(&s.hits),
                values(&s.swarms[&InfoHash::from([1; 20])].counts),
                values(&s.unattributed.counts),
            ]
            .concat()
        };
        let want = twice(all(&a));
        let snap = a.counters();
        a.merge(snap);
        assert_eq!(all(&a), want);
    }
}

counters! {
    /// What left the box verified, by route, over all swarms (`serve::ledger`; per swarm in
    /// `/api/v1/swarms/{info-hash}`).
    pub struct ServedCounters {
        inline_hits: counter "served_answers_total" [route = "inline"]
            "Answers served from the cache, by route: inline (blocks answered in peer connections), http (GET /v1/{info-hash}/{piece} answers), web_seed (GET /ws/... answers).",
        http_hits: counter "served_answers_total" [route = "http"]
            "Answers served from the cache, by route: inline (blocks answered in peer connections), http (GET /v1/{info-hash}/{piece} answers), web_seed (GET /ws/... answers).",
        web_seed_hits: counter "served_answers_total" [route = "web_seed"]
            "Answers served from the cache, by route: inline (blocks answered in peer connections), http (GET /v1/{info-hash}/{piece} answers), web_seed (GET /ws/... answers).",
        inline_bytes: counter "served_bytes_total" [route = "inline"]
            "Verified bytes served from the cache, by route, as handed to the connection (HTTP: without multipart framing or pad files' zeros).",
        http_bytes: counter "served_bytes_total" [route = "http"]
            "Verified bytes served from the cache, by route, as handed to the connection (HTTP: without multipart framing or pad files' zeros).",
        web_seed_bytes: counter "served_bytes_total" [route = "web_seed"]
            "Verified bytes served from the cache, by route, as handed to the connection (HTTP: without multipart framing or pad files' zeros).",
        swarms_forgotten: counter "served_swarms_forgotten_total"
            "Swarms whose per-swarm served figures were forgotten to stay within swarms.max_swarms.",
    }
}

counters! {
    /// The content listener (`content.listen`): connections, refusals and answers.
    pub struct ContentCounters {
        connections: counter "content_connections_total"
            "Connections the content listener accepted and served.",
        open_connections: gauge "content_open_connections"
            "Connections open on the content listener now.",
        refused_not_allowed: counter "content_refused_connections_total" [reason = "not_allowed"]
            "Connections closed at once: not_allowed (client address outside content.allow), connection_cap (content.max_connections already open).",
        refused_connection_cap: counter "content_refused_connections_total" [reason = "connection_cap"]
            "Connections closed at once: not_allowed (client address outside content.allow), connection_cap (content.max_connections already open).",
        rate_limited: counter "content_rate_limited_total"
            "Requests answered 429: over content.requests_per_second for their client address.",
        clients_forgotten: counter "content_rate_clients_forgotten_total"
            "Client addresses the rate limiter forgot to stay within content.max_clients_tracked.",
        responses_2xx: counter "content_responses_total" [class = "2xx"]
            "Responses of the content listener by status: 2xx, 304, 4xx, 5xx.",
        responses_304: counter "content_responses_total" [class = "304"]
            "Responses of the content listener by status: 2xx, 304, 4xx, 5xx.",
        responses_4xx: counter "content_responses_total" [class = "4xx"]
            "Responses of the content listener by status: 2xx, 304, 4xx, 5xx.",
        responses_5xx: counter "content_responses_total" [class = "5xx"]
            "Responses of the content listener by status: 2xx, 304, 4xx, 5xx.",
        bodies_cut: counter "content_bodies_cut_total"
            "Response bodies ended early: a piece failed its hash when read, was evicted, or a reloaded policy refused it mid-answer (the client sees a short body, never a wrong one).",
    }
}

counters! {
    /// `--requests-out`: the subscriber REQUESTs written to the request trace, and not.
    pub struct RequestsOutCounters {
        written: counter "requests_out_written_total"
            "Subscriber REQUESTs handed to the --requests-out trace (after a write error, those not yet on disk are lost with it).",
        skipped_unknown_swarm: counter "requests_out_skipped_total" [reason = "unknown_swarm"]
            "Subscriber REQUESTs not written: unknown_swarm (their connection's info-hash was never seen: picked up mid-stream), closed (the trace had failed).",
        skipped_closed: counter "requests_out_skipped_total" [reason = "closed"]
            "Subscriber REQUESTs not written: unknown_swarm (their connection's info-hash was never seen: picked up mid-stream), closed (the trace had failed).",
        write_errors: counter "requests_out_write_errors_total"
            "Writes of the --requests-out trace that failed (the first one ends the trace).",
    }
}
