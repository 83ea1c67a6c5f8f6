//! Who may use the content listener, and how much: client networks (`content.allow`),
//! connections open at once (`content.max_connections`), both decided at accept, before a
//! byte is read; and requests per second per client address (`content.requests_per_second`
//! with `content.burst`), a token bucket per address in a bounded table.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use ipnet::IpNet;
use lru::LruCache;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::serve::ledger::ServedLedger;

/// Accepts only allowed clients, and no more than the cap at once: a refused connection
/// is closed at once (counted), which is all a client outside the subscriber networks or a
/// connection flood costs the box.
pub(super) struct GatedListener {
    pub inner: TcpListener,
    pub allow: Vec<IpNet>,
    pub max_connections: usize,
    pub open: Arc<AtomicUsize>,
    pub ledger: Arc<ServedLedger>,
}

/// `::ffff:a.b.c.d` is the IPv4 client on a dual-stack socket: judged as a.b.c.d.
pub(super) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl axum::serve::Listener for GatedListener {
    type Io = Gated;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Gated, SocketAddr) {
        loop {
            // TcpListener's own accept retries on errors (EMFILE and the like) itself.
            let (stream, addr) = axum::serve::Listener::accept(&mut self.inner).await;
            let ip = canonical(addr.ip());
            if !self.allow.iter().any(|n| n.contains(&ip)) {
                self.ledger.content(|c| c.refused_not_allowed += 1);
                continue;
            }
            if self.open.fetch_add(1, Ordering::AcqRel) >= self.max_connections {
                self.open.fetch_sub(1, Ordering::AcqRel);
                self.ledger.content(|c| c.refused_connection_cap += 1);
                continue;
            }
            // Block answers are small writes: do not let Nagle hold them back.
            let _ = stream.set_nodelay(true);
            self.ledger.content(|c| {
                c.connections += 1;
                c.open_connections = self.open.load(Ordering::Acquire) as u64;
            });
            let gated = Gated {
                stream,
                open: self.open.clone(),
                ledger: self.ledger.clone(),
            };
            return (gated, addr);
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// The client's address, as handlers see it (`ConnectInfo<Client>`).
#[derive(Clone, Copy, Debug)]
pub(super) struct Client(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, GatedListener>>
    for Client
{
    fn connect_info(s: axum::serve::IncomingStream<'_, GatedListener>) -> Client {
        Client(*s.remote_addr())
    }
}

/// An accepted connection; closing it frees its place under the cap.
pub(super) struct Gated {
    stream: TcpStream,
    open: Arc<AtomicUsize>,
    ledger: Arc<ServedLedger>,
}

impl Drop for Gated {
    fn drop(&mut self) {
        let now = self.open.fetch_sub(1, Ordering::AcqRel).saturating_sub(1);
        self.ledger.content(|c| c.open_connections = now as u64);
    }
}

impl AsyncRead for Gated {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Gated {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Requests per second per client address: a token bucket each, `burst` deep, refilled at
/// `rate` per second. At most `max_clients` addresses are remembered; the least recently
/// seen is forgotten first (it starts again with a full bucket: counted).
pub(super) struct RateLimiter {
    rate: f64,
    burst: f64,
    clients: Mutex<LruCache<IpAddr, Bucket>>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    pub fn new(rate: u32, burst: u32, max_clients: usize) -> RateLimiter {
        let cap =
            std::num::NonZeroUsize::new(max_clients.max(1)).unwrap_or(std::num::NonZeroUsize::MIN);
        RateLimiter {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            clients: Mutex::new(LruCache::new(cap)),
        }
    }

    /// Whether one more request from `ip` is allowed now; `forgot` is told when a client
    /// had to be forgotten to make room.
    pub fn admit(&self, ip: IpAddr, now: Instant, forgot: impl FnOnce()) -> bool {
        let mut t = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if !t.contains(&ip) && t.len() == t.cap().get() {
            forgot();
        }
        let b = t.get_or_insert_mut(ip, || Bucket {
            tokens: self.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Seconds until `ip` may send again (for Retry-After), at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        if self.rate <= 0.0 {
            return 60;
        }
        (1.0 / self.rate).ceil().max(1.0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_allows_the_burst_then_the_rate() {
        let l = RateLimiter::new(10, 3, 2);
        let ip: IpAddr = "198.18.0.5".parse().unwrap();
        let t0 = Instant::now();
        let mut forgotten = 0;
        let admitted = (0..5)
            .filter(|_| l.admit(ip, t0, || forgotten += 1))
            .count();
        assert_eq!(admitted, 3);
        // 10 per second: one more token after 100 ms, not before.
        assert!(!l.admit(ip, t0 + Duration::from_millis(50), || ()));
        assert!(l.admit(ip, t0 + Duration::from_millis(160), || ()));
        // A third client pushes out the least recently seen.
        let (b, c): (IpAddr, IpAddr) =
            ("198.18.0.6".parse().unwrap(), "198.18.0.7".parse().unwrap());
        assert!(l.admit(b, t0, || forgotten += 1));
        assert!(l.admit(c, t0, || forgotten += 1));
        assert_eq!(forgotten, 1);
    }

    #[test]
    fn mapped_v4_is_judged_as_v4() {
        let m: IpAddr = "::ffff:198.18.0.9".parse().unwrap();
        assert_eq!(canonical(m), "198.18.0.9".parse::<IpAddr>().unwrap());
    }
}
