//! Routes and handlers. Every handler only reads `Live`: a snapshot is an `Arc`, so a
//! request never holds a lock while it serializes.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};

use super::swarms::SwarmView;
use crate::metrics::top::top_swarms;
use crate::metrics::{prometheus, Live};

/// Content type of the Prometheus text format this service writes.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const DASHBOARD: &str = include_str!("dashboard.html");

pub fn router(live: Arc<Live>) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/summary", get(summary))
        .route("/api/swarms", get(swarms))
        .route("/api/history", get(history))
        .fallback(not_found)
        .with_state(live)
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

/// JSON with `no-store`: the dashboard polls, and a cached answer would freeze it.
pub(super) fn json<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (
            status,
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            bytes,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

pub(super) fn error(status: StatusCode, msg: &str) -> Response {
    json(status, &ErrorBody { error: msg })
}

/// Before the driver's first publish there is nothing to show; say so rather than zeros,
/// which a NOC would read as "the link is idle".
fn not_yet() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "no snapshot published yet: the engine is starting",
    )
}

async fn dashboard() -> Html<&'static str> {
    Html(DASHBOARD)
}

/// Liveness, and whether the box can do its job: unhealthy (503, with the reason) while
/// the cache cannot be written.
async fn healthz(State(live): State<Arc<Live>>) -> Response {
    match live.latest() {
        Some(s) if s.report.cache.store.writes_failing > 0 => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "cache writes failing: verified pieces are not being stored (see the log)",
        ),
        _ => "ok\n".into_response(),
    }
}

async fn metrics(State(live): State<Arc<Live>>) -> Response {
    match live.latest() {
        Some(s) => (
            [
                (header::CONTENT_TYPE, METRICS_CONTENT_TYPE),
                (header::CACHE_CONTROL, "no-store"),
            ],
            prometheus::render(&s),
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
            "# no snapshot published yet\n",
        )
            .into_response(),
    }
}

async fn summary(State(live): State<Arc<Live>>) -> Response {
    match live.latest() {
        Some(s) => json(StatusCode::OK, &*s),
        None => not_yet(),
    }
}

#[derive(Deserialize)]
struct SwarmsQuery {
    limit: Option<usize>,
}

async fn swarms(
    State(live): State<Arc<Live>>,
    q: Result<Query<SwarmsQuery>, QueryRejection>,
) -> Response {
    let limit = match q {
        Ok(Query(q)) => q.limit.unwrap_or(usize::MAX),
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("limit: {}", e.body_text()),
            )
        }
    };
    let Some(s) = live.latest() else {
        return not_yet();
    };
    let views: Vec<SwarmView> = top_swarms(&s.report, limit)
        .into_iter()
        .map(SwarmView::of)
        .collect();
    json(StatusCode::OK, &views)
}

async fn history(State(live): State<Arc<Live>>) -> Response {
    json(StatusCode::OK, &live.history())
}

async fn not_found(uri: Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        &format!("no such route: {}", uri.path()),
    )
}
