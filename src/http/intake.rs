//! `POST /api/v1/metainfo`: an operator hands the box a .torrent (the request body), and
//! its swarm's pieces are proven from then on, as if the file had been in `--metainfo`
//! (issue 14's operator intake). The metainfo is kept in the cache's metadata too, so a
//! restart does not need it again.
//!
//! Who may post: anyone who can reach the service when it listens on loopback only (the
//! default; reaching it means being on the box); otherwise only a request carrying
//! `Authorization: Bearer <http.metainfo_token>`. Without a token configured, a service
//! listening beyond loopback refuses every post.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use serde::Serialize;

use super::routes::{error, json};
use crate::fetch::{magnet, Candidate};
use crate::swarm::{Metainfo, PieceSink, Registry, Source};

/// The largest .torrent accepted (a 16 MiB info dictionary holds ~800,000 piece hashes).
pub const MAX_TORRENT_BYTES: usize = 16 << 20;

/// Where posted metainfo goes, and who may post.
pub struct Intake {
    pub registry: Arc<Registry>,
    /// Where the metainfo is persisted (the piece cache learns it).
    pub sink: Arc<dyn PieceSink + Send + Sync>,
    /// The bearer token a post must carry; None: posts only while listening on loopback.
    pub token: Option<String>,
    /// The metadata fetcher, for magnet links; None when `metainfo_fetch` is off.
    pub fetch: Option<Arc<crate::fetch::Wants>>,
}

/// The intake's state: itself, and whether the service listens on loopback only.
pub(super) struct IntakeState {
    pub intake: Intake,
    pub loopback: bool,
}

/// A magnet link taken: its swarm is being fetched from the peers given.
#[derive(Serialize)]
struct Fetching {
    info_hash: String,
    status: &'static str,
    peers: usize,
}

#[derive(Serialize)]
struct Posted {
    info_hash: String,
    name: String,
    pieces: u32,
    /// "loaded" (new to the box) or "known" (its metainfo was already known: from where).
    status: &'static str,
    source: &'static str,
}

pub(super) fn router(intake: Intake, loopback: bool) -> Router {
    Router::new()
        .route("/api/v1/metainfo", post(post_metainfo))
        .layer(DefaultBodyLimit::max(MAX_TORRENT_BYTES))
        .with_state(Arc::new(IntakeState { intake, loopback }))
}

async fn post_metainfo(
    State(st): State<Arc<IntakeState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let i = &st.intake;
    match &i.token {
        Some(t) => {
            let given = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            if given != Some(t.as_str()) {
                tracing::warn!("metainfo post refused: no or wrong bearer token");
                return error(
                    StatusCode::UNAUTHORIZED,
                    "a post needs Authorization: Bearer <http.metainfo_token>",
                );
            }
        }
        None if !st.loopback => {
            tracing::warn!("metainfo post refused: no token configured and not on loopback");
            return error(
                StatusCode::FORBIDDEN,
                "posting metainfo needs http.metainfo_token when the service listens beyond loopback",
            );
        }
        None => {}
    }
    if body.starts_with(b"magnet:") {
        return post_magnet(i, &body);
    }
    let m = match Metainfo::from_torrent(&body) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!("metainfo post refused: {e}");
            return error(
                StatusCode::BAD_REQUEST,
                &format!("not a usable .torrent: {e}"),
            );
        }
    };
    let (ih, name, pieces) = (m.info_hash, m.name.clone(), m.num_pieces());
    if let Some((_, source)) = i.registry.get(&ih) {
        let body = Posted {
            info_hash: ih.to_string(),
            name,
            pieces,
            status: "known",
            source: source.as_str(),
        };
        return json(StatusCode::OK, &body);
    }
    let m = i.registry.insert(m, Source::Posted);
    i.sink.learn(&m);
    tracing::info!("metainfo: posted {name} loaded (swarm {ih})");
    json(
        StatusCode::CREATED,
        &Posted {
            info_hash: ih.to_string(),
            name,
            pieces,
            status: "loaded",
            source: Source::Posted.as_str(),
        },
    )
}

/// A magnet link: its swarm goes to the fetcher with the link's `x.pe` peers, in their
/// order, at once (an operator asking is demand enough). Without peers in the link, the
/// swarm waits for peers seen on the wire.
fn post_magnet(i: &Intake, body: &[u8]) -> Response {
    let m = match std::str::from_utf8(body)
        .map_err(|_| magnet::MagnetError::NotMagnet)
        .and_then(magnet::parse)
    {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!("metainfo post refused: {e}");
            return error(
                StatusCode::BAD_REQUEST,
                &format!("not a usable magnet link: {e}"),
            );
        }
    };
    let ih = m.info_hash;
    if let Some((meta, source)) = i.registry.get(&ih) {
        return json(
            StatusCode::OK,
            &Posted {
                info_hash: ih.to_string(),
                name: meta.name.clone(),
                pieces: meta.num_pieces(),
                status: "known",
                source: source.as_str(),
            },
        );
    }
    let Some(fetch) = &i.fetch else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "magnet links need metainfo_fetch.enabled: post the .torrent instead",
        );
    };
    let peers = m.peers.len();
    fetch.offer(
        ih,
        m.peers
            .into_iter()
            .map(|addr| Candidate { addr, remote: true })
            .collect(),
    );
    tracing::info!("metainfo: magnet for swarm {ih} posted with {peers} peers: fetching");
    json(
        StatusCode::ACCEPTED,
        &Fetching {
            info_hash: ih.to_string(),
            status: "fetching",
            peers,
        },
    )
}
