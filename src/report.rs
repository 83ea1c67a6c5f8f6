//! Counters every stage keeps, mergeable across workers, and the replay report built from
//! them. Field names here are the stable JSON schema documented in the README.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use crate::flow::ipfrag::FragCounters;
use crate::flow::tcp::ReasmCounters;
use crate::flow::utp::UtpCounters;

/// Per-swarm (or unattributed) message accounting.
#[derive(Debug, Default, Clone)]
pub struct SwarmStats {
    pub connections: u64,
    pub piece_messages: u64,
    pub piece_bytes: u64,
    pub piece_bytes_lost: u64,
    pub request_messages: u64,
    pub blocks: HashSet<(u32, u32, u32)>,
    /// `blocks.len()`, kept so a snapshot can carry it without the set.
    pub distinct: u64,
    pub blocks_overflow: u64,
    pub messages: BTreeMap<&'static str, u64>,
    pub extended: BTreeMap<String, u64>,
    pub metadata_size: Option<u64>,
    pub subscriber_piece_bytes_in: u64,
    pub subscriber_piece_bytes_out: u64,
    pub subscriber_requests: u64,
    pub pieces_verified: u64,
    pub pieces_failed: u64,
    /// Incomplete pieces dropped to stay within the assembly budget.
    pub pieces_dropped: u64,
    pub failed_by_peer: BTreeMap<std::net::SocketAddr, u64>,
    pub quarantined_bytes: u64,
}

impl SwarmStats {
    fn clone_counters(&self) -> SwarmStats {
        SwarmStats {
            blocks: HashSet::new(),
            messages: self.messages.clone(),
            extended: self.extended.clone(),
            failed_by_peer: self.failed_by_peer.clone(),
            ..*self
        }
    }

    pub fn merge(&mut self, o: SwarmStats) {
        self.connections += o.connections;
        self.piece_messages += o.piece_messages;
        self.piece_bytes += o.piece_bytes;
        self.piece_bytes_lost += o.piece_bytes_lost;
        self.request_messages += o.request_messages;
        if self.blocks.is_empty() && o.blocks.is_empty() {
            self.distinct += o.distinct; // snapshots: no sets, an approximate sum
        } else {
            self.blocks.extend(o.blocks);
            self.distinct = self.blocks.len() as u64;
        }
        self.blocks_overflow += o.blocks_overflow;
        for (k, v) in o.messages {
            *self.messages.entry(k).or_default() += v;
        }
        for (k, v) in o.extended {
            *self.extended.entry(k).or_default() += v;
        }
        self.metadata_size = self.metadata_size.or(o.metadata_size);
        self.subscriber_piece_bytes_in += o.subscriber_piece_bytes_in;
        self.subscriber_piece_bytes_out += o.subscriber_piece_bytes_out;
        self.subscriber_requests += o.subscriber_requests;
        self.pieces_verified += o.pieces_verified;
        self.pieces_failed += o.pieces_failed;
        self.pieces_dropped += o.pieces_dropped;
        for (k, v) in o.failed_by_peer {
            *self.failed_by_peer.entry(k).or_default() += v;
        }
        self.quarantined_bytes += o.quarantined_bytes;
    }
}

/// Would-be hits: subscriber REQUESTs for blocks of pieces cached at that moment.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct HitCounters {
    pub hits: u64,
    pub misses: u64,
    pub hit_bytes: u64,
    pub miss_bytes: u64,
}

#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct FlowCounters {
    pub tcp: u64,
    pub udp: u64,
    /// Flows pushed out of a full table.
    pub evicted: u64,
    /// Flows finished after their idle timeout.
    pub expired: u64,
    /// TCP flows found not to be plain BitTorrent and no longer followed.
    pub ignored: u64,
}

#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct BtCounters {
    pub tcp_connections: u64,
    pub utp_connections: u64,
    /// MSE/PE connections over any transport, and the split.
    pub encrypted_connections: u64,
    pub encrypted_tcp_connections: u64,
    pub encrypted_utp_connections: u64,
    /// Connections whose start was not captured, recognised from their framing.
    pub midstream_connections: u64,
    /// Encrypted (MSE) connections that went on in plaintext (crypto_provide plaintext).
    pub encrypted_then_plain: u64,
}

#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct PeerwireCounters {
    pub handshakes: u64,
    pub messages: u64,
    pub resyncs: u64,
    pub resync_skipped_bytes: u64,
    pub skipped_messages: u64,
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

/// Everything one engine (one worker) counted.
#[derive(Debug, Default)]
pub struct Stats {
    pub frames: u64,
    pub bytes: u64,
    pub decode_errors: BTreeMap<&'static str, u64>,
    pub flows: FlowCounters,
    pub bittorrent: BtCounters,
    pub reassembly: ReasmCounters,
    pub utp: UtpCounters,
    pub peerwire: PeerwireCounters,
    pub ip_fragments: FragCounters,
    pub swarms: HashMap<[u8; 20], SwarmStats>,
    pub swarms_overflow: u64,
    pub unattributed: SwarmStats,
    pub streams: Vec<StreamRecord>,
    pub hits: HitCounters,
    /// PIECE blocks not held for assembly because `max_block_buffer_bytes` was reached.
    pub blocks_unbuffered: u64,
    /// BEP 9 metadata that assembled but did not hash to its info-hash.
    pub metadata_failed: u64,
    pub first_ts: Option<u64>,
    pub last_ts: Option<u64>,
}

impl Stats {
    /// A copy of the counters without the per-block sets and stream records: cheap enough
    /// to take every second for live metrics.
    pub fn counters(&self) -> Stats {
        Stats {
            frames: self.frames,
            bytes: self.bytes,
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
                .map(|(k, v)| {
                    let mut c = SwarmStats {
                        blocks: HashSet::new(),
                        ..v.clone_counters()
                    };
                    c.distinct = v.distinct;
                    (*k, c)
                })
                .collect(),
            swarms_overflow: self.swarms_overflow,
            unattributed: self.unattributed.clone_counters(),
            streams: Vec::new(),
            hits: self.hits,
            blocks_unbuffered: self.blocks_unbuffered,
            metadata_failed: self.metadata_failed,
            first_ts: self.first_ts,
            last_ts: self.last_ts,
        }
    }

    pub fn merge(&mut self, o: Stats) {
        self.frames += o.frames;
        self.bytes += o.bytes;
        for (k, v) in o.decode_errors {
            *self.decode_errors.entry(k).or_default() += v;
        }
        let (f, g) = (&mut self.flows, o.flows);
        f.tcp += g.tcp;
        f.udp += g.udp;
        f.evicted += g.evicted;
        f.expired += g.expired;
        f.ignored += g.ignored;
        let (b, c) = (&mut self.bittorrent, o.bittorrent);
        b.tcp_connections += c.tcp_connections;
        b.utp_connections += c.utp_connections;
        b.encrypted_connections += c.encrypted_connections;
        b.encrypted_tcp_connections += c.encrypted_tcp_connections;
        b.encrypted_utp_connections += c.encrypted_utp_connections;
        b.midstream_connections += c.midstream_connections;
        b.encrypted_then_plain += c.encrypted_then_plain;
        let (r, s) = (&mut self.reassembly, o.reassembly);
        r.segments += s.segments;
        r.gaps += s.gaps;
        r.gap_bytes += s.gap_bytes;
        r.overlaps += s.overlaps;
        r.conflicting_overlaps += s.conflicting_overlaps;
        r.out_of_order += s.out_of_order;
        r.evictions += s.evictions;
        r.out_of_window += s.out_of_window;
        let (u, v) = (&mut self.utp, o.utp);
        u.flows += v.flows;
        u.packets += v.packets;
        u.data_packets += v.data_packets;
        u.out_of_order += v.out_of_order;
        u.duplicates += v.duplicates;
        u.conflicting += v.conflicting;
        u.gaps += v.gaps;
        u.gap_packets += v.gap_packets;
        u.evictions += v.evictions;
        u.resets += v.resets;
        u.out_of_window += v.out_of_window;
        let (p, q) = (&mut self.peerwire, o.peerwire);
        p.handshakes += q.handshakes;
        p.messages += q.messages;
        p.resyncs += q.resyncs;
        p.resync_skipped_bytes += q.resync_skipped_bytes;
        p.skipped_messages += q.skipped_messages;
        let (i, j) = (&mut self.ip_fragments, o.ip_fragments);
        i.fragments += j.fragments;
        i.reassembled += j.reassembled;
        i.timed_out += j.timed_out;
        i.dropped_cap += j.dropped_cap;
        i.invalid += j.invalid;
        for (k, v) in o.swarms {
            self.swarms.entry(k).or_default().merge(v);
        }
        self.swarms_overflow += o.swarms_overflow;
        self.unattributed.merge(o.unattributed);
        self.streams.extend(o.streams);
        self.hits.hits += o.hits.hits;
        self.hits.misses += o.hits.misses;
        self.hits.hit_bytes += o.hits.hit_bytes;
        self.hits.miss_bytes += o.hits.miss_bytes;
        self.metadata_failed += o.metadata_failed;
        self.blocks_unbuffered += o.blocks_unbuffered;
        self.first_ts = match (self.first_ts, o.first_ts) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_ts = self.last_ts.max(o.last_ts);
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SwarmReport {
    pub info_hash: String,
    pub connections: u64,
    pub piece_messages: u64,
    pub piece_bytes: u64,
    pub piece_bytes_lost: u64,
    pub request_messages: u64,
    pub distinct_blocks: u64,
    pub messages: BTreeMap<&'static str, u64>,
    pub extended: BTreeMap<String, u64>,
    pub metadata_size: Option<u64>,
    pub subscriber_piece_bytes_in: u64,
    pub subscriber_piece_bytes_out: u64,
    pub subscriber_requests: u64,
    /// Where the metainfo came from: "wire" (BEP 9), "file" (.torrent) or "none".
    pub metainfo: &'static str,
    pub name: Option<String>,
    pub piece_length: Option<u64>,
    /// Pieces in the torrent.
    pub pieces: Option<u32>,
    pub pieces_verified: u64,
    pub pieces_failed: u64,
    pub pieces_dropped: u64,
    /// Pieces that failed their hash, or copies that lost to the right one, per sender.
    pub failed_by_peer: BTreeMap<String, u64>,
    /// Pieces of this swarm in the cache at the end.
    pub pieces_cached: u64,
    /// Bytes that waited in quarantine for metainfo.
    pub quarantined_bytes: u64,
}

impl SwarmReport {
    fn new(info_hash: String, s: &SwarmStats) -> Self {
        SwarmReport {
            info_hash,
            connections: s.connections,
            piece_messages: s.piece_messages,
            piece_bytes: s.piece_bytes,
            piece_bytes_lost: s.piece_bytes_lost,
            request_messages: s.request_messages,
            distinct_blocks: s.distinct,
            messages: s.messages.clone(),
            extended: s.extended.clone(),
            metadata_size: s.metadata_size,
            subscriber_piece_bytes_in: s.subscriber_piece_bytes_in,
            subscriber_piece_bytes_out: s.subscriber_piece_bytes_out,
            subscriber_requests: s.subscriber_requests,
            metainfo: "none",
            name: None,
            piece_length: None,
            pieces: None,
            pieces_verified: s.pieces_verified,
            pieces_failed: s.pieces_failed,
            pieces_dropped: s.pieces_dropped,
            failed_by_peer: s
                .failed_by_peer
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            pieces_cached: 0,
            quarantined_bytes: s.quarantined_bytes,
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
}

fn ratio(hit: u64, miss: u64) -> f64 {
    if hit + miss == 0 {
        0.0
    } else {
        hit as f64 / (hit + miss) as f64
    }
}

impl Report {
    /// Fill in what the shared state knows: metainfo per swarm and the cache's contents.
    pub fn annotate(&mut self, shared: &crate::engine::Shared) {
        for s in &mut self.swarms {
            let Some(ih) = parse_hex20(&s.info_hash) else {
                continue;
            };
            if let Some((m, src)) = shared.registry.get(&ih) {
                s.metainfo = src.as_str();
                s.name = Some(m.name.clone());
                s.piece_length = Some(m.piece_length);
                s.pieces = Some(m.num_pieces());
            }
            s.pieces_cached = shared.sink.cached_pieces(&ih);
        }
        let (stored, evicted) = shared.sink.stored_bytes();
        self.cache.stored_bytes = stored;
        self.cache.evicted_bytes = evicted;
        if let Some(r) = &shared.rules {
            self.rules = r.counters();
        }
    }
}

/// 40 hex digits to 20 bytes.
pub fn parse_hex20(s: &str) -> Option<[u8; 20]> {
    if s.len() != 40 {
        return None;
    }
    let mut out = [0u8; 20];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

pub fn hex(b: &[u8]) -> String {
    use std::fmt::Write;
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}

impl Report {
    pub fn new(stats: &Stats, files: Vec<FileReport>) -> Report {
        let mut swarms: Vec<SwarmReport> = stats
            .swarms
            .iter()
            .map(|(ih, s)| SwarmReport::new(hex(ih), s))
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
        Report {
            frames: stats.frames,
            bytes: stats.bytes,
            duration_secs: duration,
            decode_errors: stats.decode_errors.clone(),
            flows: stats.flows,
            bittorrent: stats.bittorrent,
            swarms,
            unattributed: SwarmReport::new(String::new(), &stats.unattributed),
            swarms_overflow: stats.swarms_overflow,
            reassembly: stats.reassembly,
            utp: stats.utp,
            peerwire: stats.peerwire,
            ip_fragments: stats.ip_fragments,
            cache: CacheReport {
                hits: stats.hits.hits,
                misses: stats.hits.misses,
                hit_bytes: stats.hits.hit_bytes,
                miss_bytes: stats.hits.miss_bytes,
                hit_ratio: ratio(stats.hits.hits, stats.hits.misses),
                hit_ratio_bytes: ratio(stats.hits.hit_bytes, stats.hits.miss_bytes),
                metadata_failed: stats.metadata_failed,
                ..Default::default()
            },
            files,
            streams,
            rules: BTreeMap::new(),
        }
    }
}
