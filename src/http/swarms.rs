//! `/api/swarms`: the cache's open metadata, one object per swarm. The field names are a
//! stable API (docs/metrics.md); they reuse the replay report's names where
//! the meaning is the same.

use serde::Serialize;

use crate::report::SwarmReport;

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SwarmView {
    pub info_hash: String,
    /// Torrent name from the metainfo; null until metainfo is known.
    pub name: Option<String>,
    /// pieces × piece_length: an upper bound (the last piece is usually shorter), null
    /// without metainfo. The report does not carry the exact total length.
    pub size_bytes: Option<u64>,
    pub piece_length: Option<u64>,
    pub pieces: Option<u32>,
    pub pieces_cached: u64,
    pub connections: u64,
    /// REQUEST messages seen, both directions: popularity, the sort key.
    pub requests: u64,
    /// REQUESTs sent by subscriber addresses.
    pub subscriber_requests: u64,
    pub piece_bytes: u64,
    pub pieces_verified: u64,
    pub pieces_failed: u64,
    /// Where the metainfo came from: "wire", "file", "cache", "posted", "fetched" or "none".
    pub metainfo: &'static str,
    /// Pieces verified after a combination of their blocks had failed (poisoning).
    pub pieces_recovered: u64,
    /// Peers proven to have sent bad blocks ("ip:port" -> blocks and bytes).
    pub proven_bad_peers: std::collections::BTreeMap<String, crate::report::ProvenBad>,
}

impl SwarmView {
    pub fn of(s: &SwarmReport) -> SwarmView {
        SwarmView {
            info_hash: s.info_hash.clone(),
            name: s.name.clone(),
            size_bytes: match (s.pieces, s.piece_length) {
                (Some(n), Some(len)) => u64::from(n).checked_mul(len),
                _ => None,
            },
            piece_length: s.piece_length,
            pieces: s.pieces,
            pieces_cached: s.pieces_cached,
            connections: s.connections,
            requests: s.request_messages,
            subscriber_requests: s.subscriber_requests,
            piece_bytes: s.piece_bytes,
            pieces_verified: s.pieces_verified,
            pieces_failed: s.pieces_failed,
            metainfo: s.metainfo,
            pieces_recovered: s.pieces_recovered,
            proven_bad_peers: s.proven_bad_peers.clone(),
        }
    }
}
