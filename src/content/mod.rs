//! The content listener: verified pieces over plain HTTP, for web caches, HTTP clients and
//! BitTorrent clients alike (docs/content.md).
//!
//! - `GET /v1/{info-hash}/{piece}`: one verified piece; a block is a `Range` of it. The
//!   name is the content's own (info-hash and index), so any web cache can keep it: strong
//!   `ETag` (the piece's SHA-1), `immutable`.
//! - `GET /v1/{info-hash}/torrent`: a .torrent whose only source is this box's web seed.
//! - `GET /ws/{info-hash}/{name}[/{path...}]`: the BEP 19 web seed, files by byte range.
//!
//! Every byte comes from `StoreBlocks`, which hashes each piece again when it reads it from
//! disk, as inline serving does. Off by default; its own listener, separate from the
//! operator's (metrics, API, dashboard), with a client-network allowlist, a connection cap
//! and a request-rate cap per client address (`gate`). Its own multi-threaded runtime on
//! its own threads, so a busy content listener never delays the packet path or the
//! operator's service.

mod body;
mod gate;
pub mod layout;
pub mod range;
mod routes;

use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::serve::source::StoreBlocks;
use crate::swarm::Registry;

/// Config section `content`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ContentConfig {
    /// Address of the content listener; none (the default) keeps it off.
    pub listen: Option<SocketAddr>,
    /// Client networks that may connect; empty (the default): the `subscriber_nets`.
    /// Others are disconnected at once (counted).
    pub allow: Vec<IpNet>,
    /// Connections open at once; more are closed at once (counted).
    pub max_connections: usize,
    /// Requests per second per client address (a token bucket `burst` deep); more get 429
    /// with Retry-After (counted). A web-seed download asks about one request per piece.
    pub requests_per_second: u32,
    pub burst: u32,
    /// Client addresses the rate limiter remembers; the least recently seen is forgotten
    /// first (counted).
    pub max_clients_tracked: usize,
    /// Ranges one `Range` header may ask for; more get 416.
    pub max_ranges: usize,
    /// `Cache-Control: max-age` of pieces and web-seed files (content named by its hash
    /// never changes: a year, `immutable`).
    pub max_age_secs: u64,
    /// `Retry-After` of a web-seed answer that needs a piece the cache does not hold (503).
    pub retry_after_secs: u64,
    /// Verified pieces kept in memory for the next request (blocks of one piece come as
    /// separate requests), separate from inline serving's.
    #[serde(deserialize_with = "crate::size::bytes")]
    pub piece_memory_bytes: usize,
    /// Threads answering requests (disk reads and hashing go to a blocking pool of at most
    /// four per thread).
    pub threads: usize,
    /// Base URL the box's web seed is reached at, as clients must write it
    /// (`http://cache.example.net:8080`); none: from the request's Host header.
    pub public_url: Option<String>,
}

impl Default for ContentConfig {
    fn default() -> Self {
        ContentConfig {
            listen: None,
            allow: Vec::new(),
            max_connections: 1024,
            requests_per_second: 200,
            burst: 400,
            max_clients_tracked: 65_536,
            max_ranges: 16,
            max_age_secs: 365 * 24 * 3600,
            retry_after_secs: 30,
            piece_memory_bytes: 256 << 20,
            threads: 2,
            public_url: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("content.{0}")]
    Config(&'static str),
    #[error("content listener: cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("content listener on {addr}: {source}")]
    Setup {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

impl ContentConfig {
    /// Caps that 0 would turn into "refuse everything", and an allowlist that is empty
    /// after falling back to the subscriber networks: refused with what to write instead.
    pub fn check(&self, subscriber_nets: &[IpNet]) -> Result<Vec<IpNet>, ContentError> {
        for (v, msg) in [
            (
                self.max_connections,
                "max_connections: 0 would refuse every connection; give at least 1",
            ),
            (
                self.requests_per_second as usize,
                "requests_per_second: 0 would refuse every request; give at least 1",
            ),
            (
                self.burst as usize,
                "burst: 0 would refuse every request; give at least 1",
            ),
            (
                self.max_clients_tracked,
                "max_clients_tracked: 0 is not allowed; give at least 1",
            ),
            (
                self.max_ranges,
                "max_ranges: 0 would refuse every Range; give at least 1",
            ),
            (
                self.threads,
                "threads: 0 would answer nothing; give at least 1",
            ),
        ] {
            if v == 0 {
                return Err(ContentError::Config(msg));
            }
        }
        if let Some(u) = &self.public_url {
            if !(u.starts_with("http://") || u.starts_with("https://"))
                || u.contains(char::is_whitespace)
            {
                return Err(ContentError::Config(
                    "public_url: give an http:// or https:// URL without spaces",
                ));
            }
        }
        let allow = if self.allow.is_empty() {
            subscriber_nets.to_vec()
        } else {
            self.allow.clone()
        };
        if allow.is_empty() {
            return Err(ContentError::Config(
                "allow: no client network may use the content listener: list them in content.allow, or set subscriber_nets",
            ));
        }
        Ok(allow)
    }
}

/// A running content listener: the same handle as the operator's service (stop with
/// `shutdown`, or by dropping it).
pub type ContentServer = crate::http::HttpServer;

/// Bind `cfg.listen` now (a bad or busy address is an immediate error naming it) and serve
/// on threads of its own until shutdown. None when the listener is off.
pub fn serve(
    cfg: &ContentConfig,
    subscriber_nets: &[IpNet],
    src: Arc<StoreBlocks>,
    registry: Arc<Registry>,
) -> Result<Option<ContentServer>, ContentError> {
    let Some(addr) = cfg.listen else {
        return Ok(None);
    };
    let allow = cfg.check(subscriber_nets)?;
    let listener =
        std::net::TcpListener::bind(addr).map_err(|source| ContentError::Bind { addr, source })?;
    let setup = |source| ContentError::Setup { addr, source };
    let local_addr = listener.local_addr().map_err(setup)?;
    listener.set_nonblocking(true).map_err(setup)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.threads)
        .max_blocking_threads(cfg.threads * 4)
        .thread_name("peercache-content")
        .enable_io()
        .enable_time()
        .build()
        .map_err(setup)?;
    let listener = {
        let _ctx = rt.enter();
        tokio::net::TcpListener::from_std(listener).map_err(setup)?
    };
    let ledger = src.ledger().clone();
    ledger.content_on();
    let gated = gate::GatedListener {
        inner: listener,
        allow,
        max_connections: cfg.max_connections,
        open: Arc::new(AtomicUsize::new(0)),
        ledger,
    };
    let state = Arc::new(routes::Content {
        limiter: gate::RateLimiter::new(
            cfg.requests_per_second,
            cfg.burst,
            cfg.max_clients_tracked,
        ),
        src,
        registry,
        cfg: cfg.clone(),
        local_addr,
    });
    let app = routes::router(state).into_make_service_with_connect_info::<gate::Client>();
    let srv = crate::http::spawn(
        "peercache-content",
        rt,
        local_addr,
        move |stopped| async move {
            let _ = axum::serve(gated, app)
                .with_graceful_shutdown(crate::http::signalled(stopped))
                .await;
        },
    )
    .map_err(setup)?;
    Ok(Some(srv))
}
