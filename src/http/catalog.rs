//! `/api/v1/swarms` and `/api/v1/swarms/{info-hash}`: the cache's open metadata, versioned
//! and described by the OpenAPI document at `/api/v1/openapi.json` (docs/content.md). Read from
//! the piece store, the metainfo registry and the served ledger, not from the engine's
//! snapshot: a swarm is listed as long as the cache holds it, served or not.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};

use super::routes::{error, json};
use crate::cache::{PieceStore, SwarmEntry};
use crate::serve::ledger::{RouteCount, ServedLedger};
use crate::swarm::Registry;
use crate::wire::infohash::{hex, InfoHash};

/// The OpenAPI 3 description of the v1 API and the content listener's routes.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Page size when `limit` is not given, and the most one page holds.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// What the catalog reads.
pub struct Catalog {
    /// None without a cache directory: the list is then empty.
    pub store: Option<Arc<PieceStore>>,
    pub registry: Arc<Registry>,
    pub served: Arc<ServedLedger>,
}

#[derive(Serialize)]
struct Served {
    inline: RouteCount,
    http: RouteCount,
    web_seed: RouteCount,
}

/// One swarm in a page of the list.
#[derive(Serialize)]
struct Summary {
    info_hash: String,
    name: String,
    piece_length: u64,
    pieces: u32,
    pieces_cached: u32,
    bytes_cached: u64,
    served: Served,
    last_access_unix: Option<f64>,
}

#[derive(Serialize)]
struct Page {
    swarms: Vec<Summary>,
    /// Pass as `after` for the next page; null on the last.
    next: Option<String>,
}

/// One swarm in full.
#[derive(Serialize)]
struct Detail {
    #[serde(flatten)]
    summary: Summary,
    total_length: u64,
    files: usize,
    /// Where the metainfo came from: "wire", "file", "cache", "posted", "fetched".
    metainfo_source: &'static str,
    /// The cached pieces as a BEP 3 bitfield (piece 0 is the high bit of the first byte),
    /// in hex.
    bitfield: String,
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<usize>,
    after: Option<String>,
}

pub(super) fn router(c: Catalog) -> Router {
    Router::new()
        .route("/api/v1/swarms", get(list))
        .route("/api/v1/swarms/{info_hash}", get(one))
        .route("/api/v1/openapi.json", get(openapi))
        .with_state(Arc::new(c))
}

async fn openapi() -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        OPENAPI,
    )
        .into_response()
}

impl Catalog {
    fn summary(&self, e: &SwarmEntry) -> Summary {
        let s = self.served.swarm(&e.info_hash);
        Summary {
            info_hash: e.info_hash.to_string(),
            name: e.name.clone(),
            piece_length: e.piece_length,
            pieces: e.pieces,
            pieces_cached: e.pieces_cached,
            bytes_cached: e.bytes,
            served: Served {
                inline: s.inline,
                http: s.http,
                web_seed: s.web_seed,
            },
            last_access_unix: s.last_access_unix,
        }
    }
}

async fn list(
    State(c): State<Arc<Catalog>>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.body_text()),
    };
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("limit: give 1 to {MAX_LIMIT}"),
        );
    }
    let after = match q.after.as_deref().map(str::parse::<InfoHash>) {
        None => None,
        Some(Ok(ih)) => Some(ih),
        Some(Err(_)) => return error(StatusCode::BAD_REQUEST, "after: give 40 hex digits"),
    };
    let entries = c.store.as_ref().map(|s| s.swarms()).unwrap_or_default();
    // Sorted by info-hash: a page starts after the last one of the page before.
    let rest: Vec<&SwarmEntry> = entries
        .iter()
        .filter(|e| after.is_none_or(|a| e.info_hash > a))
        .collect();
    let page: Vec<Summary> = rest.iter().take(limit).map(|e| c.summary(e)).collect();
    let next = (rest.len() > limit)
        .then(|| page.last().map(|s| s.info_hash.clone()))
        .flatten();
    json(StatusCode::OK, &Page { swarms: page, next })
}

async fn one(State(c): State<Arc<Catalog>>, Path(ih): Path<String>) -> Response {
    let Ok(ih) = ih.parse::<InfoHash>() else {
        return error(StatusCode::BAD_REQUEST, "info-hash: give 40 hex digits");
    };
    let Some(store) = &c.store else {
        return error(
            StatusCode::NOT_FOUND,
            "no cache directory: nothing is cached",
        );
    };
    let Some(m) = store.metainfo(&ih) else {
        return error(StatusCode::NOT_FOUND, "swarm not in the cache");
    };
    let held = store.pieces(&ih);
    let n = m.num_pieces();
    let mut bits = vec![0u8; (n as usize).div_ceil(8)];
    for &i in &held {
        if let Some(b) = bits.get_mut(i as usize / 8) {
            *b |= 0x80 >> (i % 8);
        }
    }
    let bytes_cached = held
        .iter()
        .filter_map(|&i| m.piece_len(i))
        .map(u64::from)
        .sum();
    let entry = SwarmEntry {
        info_hash: ih,
        name: m.name.clone(),
        piece_length: m.piece_length,
        pieces: n,
        pieces_cached: held.len() as u32,
        bytes: bytes_cached,
    };
    let source = c.registry.get(&ih).map_or("cache", |(_, s)| s.as_str());
    json(
        StatusCode::OK,
        &Detail {
            summary: c.summary(&entry),
            total_length: m.total_length,
            files: m.files.len(),
            metainfo_source: source,
            bitfield: hex(&bits),
        },
    )
}
