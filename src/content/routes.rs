//! The content listener's routes. Each answer is decided before its body is produced:
//! the status, the headers and the exact length come from the metainfo and the cache's
//! index, then `body` streams the verified bytes.

// Early answers travel as `Err(Response)`: one per request, so its size does not matter.
#![allow(clippy::result_large_err)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;

use super::body::{self, piece_bytes, Part};
use super::gate::{canonical, Client, RateLimiter};
use super::layout::{self, PathError};
use super::range::{self, ByteRange, RangeError};
use super::ContentConfig;
use crate::cache::PieceKey;
use crate::serve::ledger::Route;
use crate::serve::source::{Policy, StoreBlocks};
use crate::swarm::{Metainfo, Registry};
use crate::wire::infohash::{hex, InfoHash};

pub(super) struct Content {
    pub src: Arc<StoreBlocks>,
    pub registry: Arc<Registry>,
    pub cfg: ContentConfig,
    pub limiter: RateLimiter,
    pub local_addr: SocketAddr,
}

type St = State<Arc<Content>>;

pub(super) fn router(c: Arc<Content>) -> Router {
    Router::new()
        .route("/v1/{ih}/{piece}", get(piece))
        .route("/ws/{*rest}", get(web_seed))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(c.clone(), gatekeep))
        .with_state(c)
}

/// The rate cap per client address, and the count of answers by status class.
async fn gatekeep(
    State(c): St,
    ConnectInfo(Client(peer)): ConnectInfo<Client>,
    req: Request,
    next: Next,
) -> Response {
    let ledger = c.src.ledger();
    let admitted = c.limiter.admit(canonical(peer.ip()), Instant::now(), || {
        ledger.content(|k| k.clients_forgotten += 1)
    });
    let resp = if admitted {
        next.run(req).await
    } else {
        ledger.content(|k| k.rate_limited += 1);
        let mut r = fail(
            StatusCode::TOO_MANY_REQUESTS,
            "too many requests from this address",
        );
        r.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(c.limiter.retry_after_secs()),
        );
        r
    };
    let s = resp.status();
    ledger.content(|k| match s.as_u16() {
        304 => k.responses_304 += 1,
        200..=299 => k.responses_2xx += 1,
        500..=599 => k.responses_5xx += 1,
        _ => k.responses_4xx += 1,
    });
    resp
}

/// An error answer: a short JSON body, never stored by a cache (absence is not forever).
fn fail(status: StatusCode, msg: &str) -> Response {
    let body = serde_json::json!({ "error": msg }).to_string();
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

async fn not_found(uri: Uri) -> Response {
    fail(
        StatusCode::NOT_FOUND,
        &format!("no such route: {}", uri.path()),
    )
}

impl Content {
    fn metainfo(&self, ih: &InfoHash) -> Option<Arc<Metainfo>> {
        self.registry
            .get(ih)
            .map(|(m, _)| m)
            .or_else(|| self.src.store().metainfo(ih))
    }

    /// The policy's refusal as an answer, or None when it serves.
    fn refused(&self, ih: &InfoHash, index: u32) -> Option<Response> {
        match self.src.policy(ih, index, None) {
            Policy::Serve => None,
            Policy::Blocked => Some(fail(
                StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS,
                "this swarm is blocked by the operator's policy",
            )),
            Policy::NotServed => Some(fail(
                StatusCode::FORBIDDEN,
                "the operator's policy does not serve this swarm",
            )),
        }
    }

    fn cache_control(&self) -> HeaderValue {
        HeaderValue::from_str(&format!(
            "public, max-age={}, immutable",
            self.cfg.max_age_secs
        ))
        .unwrap_or(HeaderValue::from_static("public, immutable"))
    }
}

/// The swarm named in a URL, or the answer for a bad or unknown one.
fn swarm(c: &Content, raw: &str) -> Result<(InfoHash, Arc<Metainfo>), Response> {
    let ih: InfoHash = raw
        .parse()
        .map_err(|_| fail(StatusCode::BAD_REQUEST, "info-hash: give 40 hex digits"))?;
    let m = c
        .metainfo(&ih)
        .ok_or_else(|| fail(StatusCode::NOT_FOUND, "swarm not known to this cache"))?;
    Ok((ih, m))
}

/// `If-None-Match` (weak comparison, as RFC 9110 asks for it) naming `etag`, or `*`.
fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        .any(|t| t == "*" || t.trim_start_matches("W/") == etag)
}

/// The ranges asked for, None for the whole representation (no `Range`, or an `If-Range`
/// that no longer matches), or the 416 answer.
fn ranges(
    headers: &HeaderMap,
    etag: &str,
    len: u64,
    max: usize,
) -> Result<Option<Vec<ByteRange>>, Response> {
    let Some(h) = headers.get(header::RANGE) else {
        return Ok(None);
    };
    if let Some(ir) = headers.get(header::IF_RANGE) {
        if ir.as_bytes() != etag.as_bytes() {
            return Ok(None);
        }
    }
    let parsed = h
        .to_str()
        .map_err(|_| RangeError::Malformed)
        .and_then(|h| range::parse(h, len, max));
    if parsed == Err(RangeError::OtherUnit) {
        return Ok(None);
    }
    parsed.map(Some).map_err(|e| {
        let mut r = fail(StatusCode::RANGE_NOT_SATISFIABLE, &format!("Range: {e}"));
        if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
            r.headers_mut().insert(header::CONTENT_RANGE, v);
        }
        r
    })
}

/// The answer's status, headers and body parts for `ranges` of a `len`-byte object whose
/// byte `a..b` is `part(a, b)`.
struct Answer {
    status: StatusCode,
    headers: Vec<(header::HeaderName, HeaderValue)>,
    parts: Vec<Part>,
    len: u64,
}

fn answer(
    ranges: Option<Vec<ByteRange>>,
    len: u64,
    mut part: impl FnMut(u64, u64) -> Part,
) -> Answer {
    let octets = HeaderValue::from_static("application/octet-stream");
    match ranges.as_deref() {
        None => Answer {
            status: StatusCode::OK,
            headers: vec![(header::CONTENT_TYPE, octets)],
            parts: vec![part(0, len)],
            len,
        },
        Some([r]) => Answer {
            status: StatusCode::PARTIAL_CONTENT,
            headers: vec![
                (header::CONTENT_TYPE, octets),
                (
                    header::CONTENT_RANGE,
                    HeaderValue::from_str(&format!("bytes {}-{}/{len}", r.start, r.end))
                        .unwrap_or(HeaderValue::from_static("bytes */0")),
                ),
            ],
            parts: vec![part(r.start, r.end + 1)],
            len: r.len(),
        },
        Some(many) => {
            // RFC 9110 §14.6: multipart/byteranges. The boundary is random so that no
            // body can contain it by design.
            let boundary = format!("peercache-{:016x}", fastrand::u64(..));
            let mut parts = Vec::with_capacity(many.len() * 2 + 1);
            let mut total = 0u64;
            for (i, r) in many.iter().enumerate() {
                let head = format!(
                    "{}--{boundary}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes {}-{}/{len}\r\n\r\n",
                    if i == 0 { "" } else { "\r\n" },
                    r.start,
                    r.end
                );
                total += head.len() as u64 + r.len();
                parts.push(Part::Head(Bytes::from(head)));
                parts.push(part(r.start, r.end + 1));
            }
            let tail = format!("\r\n--{boundary}--\r\n");
            total += tail.len() as u64;
            parts.push(Part::Head(Bytes::from(tail)));
            Answer {
                status: StatusCode::PARTIAL_CONTENT,
                headers: vec![(
                    header::CONTENT_TYPE,
                    HeaderValue::from_str(&format!("multipart/byteranges; boundary={boundary}"))
                        .unwrap_or(HeaderValue::from_static("multipart/byteranges")),
                )],
                parts,
                len: total,
            }
        }
    }
}

impl Content {
    /// Send `a`: an answer on `route` for GET, its bytes counted as they go out (HEAD
    /// sends no body).
    fn send(
        &self,
        a: Answer,
        method: &Method,
        etag: &str,
        m: Arc<Metainfo>,
        route: Route,
    ) -> Response {
        let counted = (method == Method::GET).then_some(route);
        if counted.is_some() {
            self.src.ledger().answer(&m.info_hash, route);
        }
        let mut r = body::body(a.parts, self.src.clone(), m, counted).into_response();
        *r.status_mut() = a.status;
        let h = r.headers_mut();
        for (k, v) in a.headers {
            h.insert(k, v);
        }
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(a.len));
        self.common_headers(h, etag);
        r
    }

    fn common_headers(&self, h: &mut HeaderMap, etag: &str) {
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        if let Ok(v) = HeaderValue::from_str(etag) {
            h.insert(header::ETAG, v);
        }
        h.insert(header::CACHE_CONTROL, self.cache_control());
    }

    fn not_modified(&self, etag: &str) -> Response {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        self.common_headers(r.headers_mut(), etag);
        r
    }
}

/// `GET /v1/{info-hash}/{piece}`, and `/v1/{info-hash}/torrent`.
async fn piece(
    State(c): St,
    method: Method,
    Path((ih, piece)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let (ih, m) = match swarm(&c, &ih) {
        Ok(s) => s,
        Err(r) => return r,
    };
    if piece == "torrent" {
        return torrent(&c, &m, &headers);
    }
    let Ok(index) = piece.parse::<u32>() else {
        return fail(
            StatusCode::BAD_REQUEST,
            "piece: give a piece index (a decimal number) or \"torrent\"",
        );
    };
    let (Some(len), Some(hash)) = (m.piece_len(index), m.piece_hash(index)) else {
        return fail(
            StatusCode::NOT_FOUND,
            &format!(
                "piece {index} out of range: the swarm has {} pieces",
                m.num_pieces()
            ),
        );
    };
    if let Some(r) = c.refused(&ih, index) {
        return r;
    }
    let key = PieceKey {
        info_hash: ih,
        index,
    };
    if !c.src.store().contains(&key) {
        return fail(StatusCode::NOT_FOUND, "piece not in the cache");
    }
    let etag = format!("\"{}\"", hex(&hash));
    if not_modified(&headers, &etag) {
        return c.not_modified(&etag);
    }
    let ranges = match ranges(&headers, &etag, u64::from(len), c.cfg.max_ranges) {
        Ok(r) => r,
        Err(r) => return r,
    };
    // Read (and hash) the piece before answering: a file that fails its hash is a 404,
    // not a body cut short.
    let data = match c.src.piece_in_memory(&key) {
        // A use for the cache policy, as a REQUEST on the wire is (a read from disk
        // counts itself).
        Some(p) => {
            c.src.store().touch(&key);
            Some(p)
        }
        None => {
            let src = c.src.clone();
            tokio::task::spawn_blocking(move || src.piece(key))
                .await
                .ok()
                .flatten()
        }
    };
    let Some(data) = data else {
        return fail(StatusCode::NOT_FOUND, "piece not in the cache");
    };
    let data = piece_bytes(data);
    let a = answer(ranges, u64::from(len), |s, e| {
        Part::Bytes(data.slice(s as usize..e as usize))
    });
    c.send(a, &method, &etag, m, Route::Http)
}

/// A host[:port] as a client may write it in a URL; anything else is not echoed back.
fn plausible_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
}

/// `GET /v1/{info-hash}/torrent`: the swarm's .torrent with this box as its web seed.
fn torrent(c: &Content, m: &Metainfo, headers: &HeaderMap) -> Response {
    if let Some(r) = c.refused(&m.info_hash, 0) {
        return r;
    }
    let base = match &c.cfg.public_url {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .filter(|h| plausible_host(h))
                .map_or_else(|| c.local_addr.to_string(), str::to_string);
            format!("http://{host}")
        }
    };
    let t = layout::torrent_with_web_seed(m, &format!("{base}/ws/{}/", m.info_hash));
    (
        [
            (header::CONTENT_TYPE, "application/x-bittorrent".to_string()),
            // The URL inside depends on how the client reached the box.
            (header::CACHE_CONTROL, "no-cache".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}.torrent\"", m.info_hash),
            ),
        ],
        t,
    )
        .into_response()
}

/// `GET /ws/{info-hash}/{name}[/{path...}]`: a file of the swarm, by byte range (BEP 19).
async fn web_seed(State(c): St, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let rest = uri.path().strip_prefix("/ws/").unwrap_or_default();
    let Some((ih, path)) = rest.split_once('/') else {
        return fail(
            StatusCode::NOT_FOUND,
            "give /ws/{info-hash}/{name}[/{path}]",
        );
    };
    let (ih, m) = match swarm(&c, ih) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let file = match layout::locate(&m, path) {
        Ok(f) => f,
        Err(PathError::Unsafe) => {
            return fail(
                StatusCode::BAD_REQUEST,
                "path: empty, '.', '..', encoded '/' or NUL, or not UTF-8",
            )
        }
        Err(PathError::NoSuchFile) => {
            return fail(StatusCode::NOT_FOUND, "no such file in this torrent")
        }
    };
    let first_piece = (file.offset / m.piece_length) as u32;
    if let Some(r) = c.refused(&ih, first_piece) {
        return r;
    }
    let etag = format!("\"{ih}-{}\"", file.index);
    if not_modified(&headers, &etag) {
        return c.not_modified(&etag);
    }
    let ranges = match ranges(&headers, &etag, file.length, c.cfg.max_ranges) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let a = answer(ranges, file.length, |s, e| {
        if file.pad {
            Part::Zeros(e - s)
        } else {
            Part::Torrent {
                start: file.offset + s,
                end: file.offset + e,
            }
        }
    });
    // Every piece the answer needs must be held now; one missing is "come back later".
    let store = c.src.store();
    for p in &a.parts {
        if let Part::Torrent { start, end } = *p {
            if start < end
                && !layout::pieces_of(&m, start, end).all(|index| {
                    store.contains(&PieceKey {
                        info_hash: ih,
                        index,
                    })
                })
            {
                let mut r = fail(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "a piece of this range is not in the cache yet",
                );
                r.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(c.cfg.retry_after_secs),
                );
                return r;
            }
        }
    }
    c.send(a, &method, &etag, m, Route::WebSeed)
}
