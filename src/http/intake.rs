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
    /// Called with one line per accepted or refused post (the program's log).
    pub log: Box<dyn Fn(String) + Send + Sync>,
}

/// The intake's state: itself, and whether the service listens on loopback only.
pub(super) struct IntakeState {
    pub intake: Intake,
    pub loopback: bool,
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
                (i.log)("metainfo post refused: no or wrong bearer token".into());
                return error(
                    StatusCode::UNAUTHORIZED,
                    "a post needs Authorization: Bearer <http.metainfo_token>",
                );
            }
        }
        None if !st.loopback => {
            (i.log)("metainfo post refused: no token configured and not on loopback".into());
            return error(
                StatusCode::FORBIDDEN,
                "posting metainfo needs http.metainfo_token when the service listens beyond loopback",
            );
        }
        None => {}
    }
    if body.starts_with(b"magnet:") {
        return error(
            StatusCode::NOT_IMPLEMENTED,
            "magnet links need the metadata fetch from the swarm, which is not built yet: post the .torrent",
        );
    }
    let m = match Metainfo::from_torrent(&body) {
        Ok(m) => m,
        Err(e) => {
            (i.log)(format!("metainfo post refused: {e}"));
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
    (i.log)(format!("metainfo: posted {name} loaded (swarm {ih})"));
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
