//! What the cache served, per swarm and by route (inline splice, HTTP block and piece
//! URIs, BEP 19 web seed), with the last time each swarm was served: the numbers an
//! operator (and the cache-metadata API) needs to judge what a cached swarm is worth.
//! Bounded: at most `max_swarms` swarms are remembered, the least recently served are
//! forgotten first and counted.

use std::sync::Mutex;

use lru::LruCache;
use serde::Serialize;

use crate::clock::now_unix;
use crate::stats::{ContentCounters, ServedCounters};
use crate::wire::infohash::InfoHash;

/// The ways a verified byte leaves the box.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Answered in a peer connection by the inline splice.
    Inline,
    /// `GET /v1/{info-hash}/{piece}` on the content listener.
    Http,
    /// `GET /ws/{info-hash}/...`: a BitTorrent client's web seed request.
    WebSeed,
}

/// Answers and their body bytes on one route.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RouteCount {
    /// Inline: blocks the splice took from the cache to answer a REQUEST (a CANCEL or a
    /// closing connection can still keep one from going in: `inline.served_blocks` counts
    /// those inserted); HTTP and web seed: 200/206 answers to GET.
    pub hits: u64,
    /// Verified bytes from the cache handed to the connection (HTTP: body bytes as they
    /// are sent, without multipart framing or pad files' zeros).
    pub bytes: u64,
}

impl RouteCount {
    fn add(&mut self, hits: u64, bytes: u64) {
        self.hits += hits;
        self.bytes += bytes;
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct SwarmServed {
    pub inline: RouteCount,
    pub http: RouteCount,
    pub web_seed: RouteCount,
    /// Unix time of the last answer on any route.
    pub last_access_unix: Option<f64>,
}

impl SwarmServed {
    fn route(&mut self, r: Route) -> &mut RouteCount {
        match r {
            Route::Inline => &mut self.inline,
            Route::Http => &mut self.http,
            Route::WebSeed => &mut self.web_seed,
        }
    }
}

pub struct ServedLedger {
    inner: Mutex<Inner>,
    /// The content listener's own counts; None while it is off (then not reported).
    content: Mutex<Option<ContentCounters>>,
}

struct Inner {
    swarms: LruCache<InfoHash, SwarmServed>,
    totals: SwarmServed,
    /// Swarms forgotten to stay within `max_swarms`.
    forgotten: u64,
}

/// Default number of swarms remembered (`swarms.max_swarms`' default: one entry per swarm
/// the engine can follow).
pub const DEFAULT_MAX_SWARMS: usize = 100_000;

impl Default for ServedLedger {
    fn default() -> Self {
        ServedLedger::new(DEFAULT_MAX_SWARMS)
    }
}

impl ServedLedger {
    pub fn new(max_swarms: usize) -> ServedLedger {
        let cap =
            std::num::NonZeroUsize::new(max_swarms.max(1)).unwrap_or(std::num::NonZeroUsize::MIN);
        ServedLedger {
            inner: Mutex::new(Inner {
                swarms: LruCache::new(cap),
                totals: SwarmServed::default(),
                forgotten: 0,
            }),
            content: Mutex::new(None),
        }
    }

    /// The content listener is on: its counts are reported from now on.
    pub fn content_on(&self) {
        self.content
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(ContentCounters::default);
    }

    /// Count on the content listener's counters (nothing while it is off).
    pub fn content(&self, f: impl FnOnce(&mut ContentCounters)) {
        if let Some(c) = self
            .content
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            f(c);
        }
    }

    pub fn content_counters(&self) -> Option<ContentCounters> {
        *self.content.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere while holding it leaves only counters: keep counting.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One answer of `bytes` on `route`.
    pub fn record(&self, ih: &InfoHash, route: Route, bytes: u64) {
        self.update(ih, route, 1, bytes);
    }

    /// An answer whose body is still to be sent: its bytes come with `sent`.
    pub fn answer(&self, ih: &InfoHash, route: Route) {
        self.update(ih, route, 1, 0);
    }

    /// Bytes of an answer's body handed to the connection.
    pub fn sent(&self, ih: &InfoHash, route: Route, bytes: u64) {
        self.update(ih, route, 0, bytes);
    }

    fn update(&self, ih: &InfoHash, route: Route, hits: u64, bytes: u64) {
        let now = now_unix();
        let mut g = self.lock();
        g.totals.route(route).add(hits, bytes);
        g.totals.last_access_unix = Some(now);
        let entry = match g.swarms.get_mut(ih) {
            Some(e) => e,
            None => {
                if g.swarms.len() == g.swarms.cap().get() {
                    g.forgotten += 1;
                }
                g.swarms.get_or_insert_mut(*ih, SwarmServed::default)
            }
        };
        entry.route(route).add(hits, bytes);
        entry.last_access_unix = Some(now);
    }

    /// One swarm's figures (zeros when never served, or forgotten). Does not count as use.
    pub fn swarm(&self, ih: &InfoHash) -> SwarmServed {
        self.lock().swarms.peek(ih).copied().unwrap_or_default()
    }

    /// Every route summed over all swarms (forgotten ones included).
    pub fn totals(&self) -> ServedCounters {
        let g = self.lock();
        let t = &g.totals;
        ServedCounters {
            inline_hits: t.inline.hits,
            http_hits: t.http.hits,
            web_seed_hits: t.web_seed.hits,
            inline_bytes: t.inline.bytes,
            http_bytes: t.http.bytes,
            web_seed_bytes: t.web_seed.bytes,
            swarms_forgotten: g.forgotten,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_route_and_forgets_the_least_recent() {
        let l = ServedLedger::new(2);
        let (a, b, c) = (
            InfoHash::from([1; 20]),
            InfoHash::from([2; 20]),
            InfoHash::from([3; 20]),
        );
        l.record(&a, Route::Inline, 16384);
        l.record(&a, Route::Inline, 16384);
        l.record(&a, Route::Http, 100);
        l.record(&b, Route::WebSeed, 7);
        l.record(&a, Route::WebSeed, 1);
        // b is the least recently served: c pushes it out.
        l.record(&c, Route::Http, 5);
        let sa = l.swarm(&a);
        assert_eq!(
            sa.inline,
            RouteCount {
                hits: 2,
                bytes: 32768
            }
        );
        assert_eq!(
            sa.http,
            RouteCount {
                hits: 1,
                bytes: 100
            }
        );
        assert_eq!(sa.web_seed, RouteCount { hits: 1, bytes: 1 });
        assert!(sa.last_access_unix.is_some());
        assert_eq!(l.swarm(&b), SwarmServed::default());
        let t = l.totals();
        assert_eq!(t.swarms_forgotten, 1);
        assert_eq!((t.web_seed_hits, t.web_seed_bytes), (2, 8));
        assert_eq!((t.http_hits, t.http_bytes), (2, 105));
        assert_eq!((t.inline_hits, t.inline_bytes), (2, 32768));
    }
}
