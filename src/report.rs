//! The replay report: the JSON schema documented in docs/report.md, built from the counters
//! of `crate::stats`. Groups the report embeds as they are (`flows`, `reassembly`, ...)
//! follow their declarations; the fields of `EngineCounters`, `HitCounters` and
//! `SwarmCounters` are placed here one by one, by patterns that name every field, so a
//! counter added to them does not build until it has its place in the JSON.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::flow::ipfrag::FragCounters;
use crate::flow::tcp::ReasmCounters;
use crate::flow::utp::UtpCounters;
use crate::stats::{EngineCounters, PolicyCounters, StoreCounters, SwarmCounters};

// The counters lived here before `crate::stats`; their users still name them here.
pub use crate::stats::{
    BtCounters, FlowCounters, HitCounters, PeerwireCounters, Stats, StreamRecord, SwarmStats,
};

#[derive(Debug, Clone, Serialize)]
pub struct SwarmReport {
    pub info_hash: String,
    pub connections: u64,
    pub piece_messages: u64,
    pub piece_bytes: u64,
    pub piece_bytes_lost: u64,
    pub request_messages: u64,
    pub distinct_blocks: u64,
    /// Blocks not remembered for `distinct_blocks` (`swarms.max_distinct_blocks`).
    pub blocks_overflow: u64,
    pub messages: BTreeMap<&'static str, u64>,
    pub extended: BTreeMap<String, u64>,
    pub metadata_size: Option<u64>,
    pub subscriber_piece_bytes_in: u64,
    pub subscriber_piece_bytes_out: u64,
    pub subscriber_requests: u64,
    /// Where the metainfo came from: "wire" (BEP 9), "file" (.torrent), "cache", "posted" (the HTTP API), "fetched" (from a peer, BEP 9) or "none".
    pub metainfo: &'static str,
    pub name: Option<String>,
    pub piece_length: Option<u64>,
    /// Pieces in the torrent.
    pub pieces: Option<u32>,
    pub pieces_verified: u64,
    pub pieces_failed: u64,
    /// Verified pieces the cache (and the policy rules) admitted.
    pub pieces_admitted: u64,
    pub pieces_dropped: u64,
    pub pieces_dropped_bytes: u64,
    /// Verified pieces refused for now that `swarms.max_retry_pieces` left no room to retry.
    pub pieces_retry_overflow: u64,
    /// Differing block copies dropped by `swarms.max_block_copies`.
    pub block_copies_overflow: u64,
    /// Differing block copies refused by `swarms.max_alternative_bytes`.
    pub alternatives_overflow: u64,
    /// Pieces verified after a combination of their blocks had failed.
    pub pieces_recovered: u64,
    /// Piece hashes computed, every combination tried included.
    pub piece_hashes: u64,
    /// Pieces whose search spent `swarms.max_hash_attempts_per_piece`.
    pub pieces_search_capped: u64,
    /// Block copies proven bad (differing from their verified piece), each sender counted.
    pub proven_bad_blocks: u64,
    pub proven_bad_bytes: u64,
    /// Times the late-copy digests reached `swarms.max_blame_pieces` and were forgotten.
    pub blame_resets: u64,
    /// Hash failures each sender took part in (a piece that failed with its blocks in it;
    /// an honest co-sender is counted too: see `proven_bad_peers`), once per piece.
    pub failed_by_peer: BTreeMap<String, u64>,
    /// Peers proven to have sent bad data: block copies differing from the verified piece
    /// (or from its digest, for copies after the verdict), and their bytes.
    pub proven_bad_peers: BTreeMap<String, ProvenBad>,
    /// Pieces of this swarm in the cache at the end.
    pub pieces_cached: u64,
    /// Bytes that waited in quarantine for metainfo.
    pub quarantined_bytes: u64,
    /// Quarantined bytes refused or evicted by `swarms.max_quarantine_bytes`.
    pub quarantine_evicted_bytes: u64,
}

/// One peer's proven-bad data in a swarm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ProvenBad {
    pub blocks: u64,
    pub bytes: u64,
}

impl SwarmReport {
    fn new(info_hash: String, s: &SwarmStats) -> Self {
        let SwarmCounters {
            connections,
            piece_messages,
            piece_bytes,
            piece_bytes_lost,
            request_messages,
            blocks_overflow,
            subscriber_piece_bytes_in,
            subscriber_piece_bytes_out,
            subscriber_requests,
            pieces_verified,
            pieces_failed,
            pieces_admitted,
            pieces_dropped,
            pieces_dropped_bytes,
            pieces_retry_overflow,
            block_copies_overflow,
            alternatives_overflow,
            pieces_recovered,
            piece_hashes,
            pieces_search_capped,
            proven_bad_blocks,
            proven_bad_bytes,
            blame_resets,
            quarantined_bytes,
            quarantine_evicted_bytes,
        } = s.counts;
        SwarmReport {
            info_hash,
            connections,
            piece_messages,
            piece_bytes,
            piece_bytes_lost,
            request_messages,
            distinct_blocks: s.distinct,
            blocks_overflow,
            messages: s.messages.clone(),
            extended: s.extended.clone(),
            metadata_size: s.metadata_size,
            subscriber_piece_bytes_in,
            subscriber_piece_bytes_out,
            subscriber_requests,
            metainfo: "none",
            name: None,
            piece_length: None,
            pieces: None,
            pieces_verified,
            pieces_failed,
            pieces_admitted,
            pieces_dropped,
            pieces_dropped_bytes,
            pieces_retry_overflow,
            block_copies_overflow,
            alternatives_overflow,
            pieces_recovered,
            piece_hashes,
            pieces_search_capped,
            proven_bad_blocks,
            proven_bad_bytes,
            blame_resets,
            failed_by_peer: s
                .failed_by_peer
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            proven_bad_peers: s
                .proven_bad_by_peer
                .iter()
                .map(|(k, &(blocks, bytes))| (k.to_string(), ProvenBad { blocks, bytes }))
                .collect(),
            pieces_cached: 0,
            quarantined_bytes,
            quarantine_evicted_bytes,
        }
    }

    /// The swarm's declared counters, back from the report (what `/metrics` sums).
    pub fn counters(&self) -> SwarmCounters {
        SwarmCounters {
            connections: self.connections,
            piece_messages: self.piece_messages,
            piece_bytes: self.piece_bytes,
            piece_bytes_lost: self.piece_bytes_lost,
            request_messages: self.request_messages,
            blocks_overflow: self.blocks_overflow,
            subscriber_piece_bytes_in: self.subscriber_piece_bytes_in,
            subscriber_piece_bytes_out: self.subscriber_piece_bytes_out,
            subscriber_requests: self.subscriber_requests,
            pieces_verified: self.pieces_verified,
            pieces_failed: self.pieces_failed,
            pieces_admitted: self.pieces_admitted,
            pieces_dropped: self.pieces_dropped,
            pieces_dropped_bytes: self.pieces_dropped_bytes,
            pieces_retry_overflow: self.pieces_retry_overflow,
            block_copies_overflow: self.block_copies_overflow,
            alternatives_overflow: self.alternatives_overflow,
            pieces_recovered: self.pieces_recovered,
            piece_hashes: self.piece_hashes,
            pieces_search_capped: self.pieces_search_capped,
            proven_bad_blocks: self.proven_bad_blocks,
            proven_bad_bytes: self.proven_bad_bytes,
            blame_resets: self.blame_resets,
            quarantined_bytes: self.quarantined_bytes,
            quarantine_evicted_bytes: self.quarantine_evicted_bytes,
        }
    }
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct CacheReport {
    pub stored_bytes: u64,
    pub evicted_bytes: u64,
    pub hits: u64,
    pub misses: u64,
    pub hit_bytes: u64,
    pub miss_bytes: u64,
    /// hits / (hits + misses), by requests and by bytes; 0 when there were none.
    pub hit_ratio: f64,
    pub hit_ratio_bytes: f64,
    pub metadata_failed: u64,
    /// BEP 9 metadata pieces refused (inconsistent, or past `swarms.max_metadata_swarms`).
    pub metadata_refused: u64,
    /// What the piece store counted (zero but `stored_*` without a cache directory).
    pub store: StoreCounters,
}

impl CacheReport {
    /// The would-be hit counters, back from the report.
    pub fn hit_counters(&self) -> HitCounters {
        HitCounters {
            hits: self.hits,
            misses: self.misses,
            hit_bytes: self.hit_bytes,
            miss_bytes: self.miss_bytes,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub path: String,
    pub frames: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub frames: u64,
    pub bytes: u64,
    pub duration_secs: f64,
    pub decode_errors: BTreeMap<&'static str, u64>,
    pub flows: FlowCounters,
    pub bittorrent: BtCounters,
    pub swarms: Vec<SwarmReport>,
    /// Messages of connections whose info-hash is not known (picked up mid-stream).
    pub unattributed: SwarmReport,
    pub swarms_overflow: u64,
    /// PIECE blocks not held for assembly (`swarms.max_block_buffer_bytes`).
    pub blocks_unbuffered: u64,
    pub reassembly: ReasmCounters,
    /// uTP flows and their reassembly (BEP 29).
    pub utp: UtpCounters,
    pub peerwire: PeerwireCounters,
    pub ip_fragments: FragCounters,
    pub cache: CacheReport,
    pub files: Vec<FileReport>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<StreamRecord>,
    /// Policy rule decisions per rule name; empty without a rules file.
    pub rules: BTreeMap<String, crate::rules::RuleCounters>,
    /// The rules' bookkeeping (audit log errors, caps hit); absent without a rules file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyCounters>,
    /// The box's own metadata fetches (tap and inline with `metainfo_fetch.enabled`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metainfo_fetch: Option<crate::stats::FetchCounters>,
    /// What left the box verified, by route (tap and inline).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub served: Option<crate::stats::ServedCounters>,
    /// The content listener, when `content.listen` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<crate::stats::ContentCounters>,
    /// `--requests-out`: subscriber REQUESTs written to the request trace, and not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_out: Option<crate::stats::RequestsOutCounters>,
}

fn ratio(hit: u64, miss: u64) -> f64 {
    if hit + miss == 0 {
        0.0
    } else {
        hit as f64 / (hit + miss) as f64
    }
}

impl Report {
    pub fn new(stats: &Stats, files: Vec<FileReport>) -> Report {
        let mut swarms: Vec<SwarmReport> = stats
            .swarms
            .iter()
            .map(|(ih, s)| SwarmReport::new(ih.to_string(), s))
            .collect();
        // Biggest first: what an operator looks at; ties by info-hash for stable output.
        swarms.sort_by(|a, b| {
            b.piece_bytes
                .cmp(&a.piece_bytes)
                .then(b.connections.cmp(&a.connections))
                .then(a.info_hash.cmp(&b.info_hash))
        });
        let mut streams = stats.streams.clone();
        streams.sort_by(|a, b| (&a.client, &a.server).cmp(&(&b.client, &b.server)));
        let duration = match (stats.first_ts, stats.last_ts) {
            (Some(a), Some(b)) => b.saturating_sub(a) as f64 / 1e6,
            _ => 0.0,
        };
        let EngineCounters {
            frames,
            bytes,
            swarms_overflow,
            blocks_unbuffered,
            metadata_failed,
            metadata_refused,
        } = stats.totals;
        let HitCounters {
            hits,
            misses,
            hit_bytes,
            miss_bytes,
        } = stats.hits;
        Report {
            frames,
            bytes,
            duration_secs: duration,
            decode_errors: stats.decode_errors.clone(),
            flows: stats.flows,
            bittorrent: stats.bittorrent,
            swarms,
            unattributed: SwarmReport::new(String::new(), &stats.unattributed),
            swarms_overflow,
            blocks_unbuffered,
            reassembly: stats.reassembly,
            utp: stats.utp,
            peerwire: stats.peerwire,
            ip_fragments: stats.ip_fragments,
            cache: CacheReport {
                hits,
                misses,
                hit_bytes,
                miss_bytes,
                hit_ratio: ratio(hits, misses),
                hit_ratio_bytes: ratio(hit_bytes, miss_bytes),
                metadata_failed,
                metadata_refused,
                ..Default::default()
            },
            files,
            streams,
            rules: BTreeMap::new(),
            served: None,
            content: None,
            policy: None,
            metainfo_fetch: None,
            requests_out: None,
        }
    }

    /// The engine's totals, back from the report (what `/metrics` shows).
    pub fn totals(&self) -> EngineCounters {
        EngineCounters {
            frames: self.frames,
            bytes: self.bytes,
            swarms_overflow: self.swarms_overflow,
            blocks_unbuffered: self.blocks_unbuffered,
            metadata_failed: self.cache.metadata_failed,
            metadata_refused: self.cache.metadata_refused,
        }
    }
}
