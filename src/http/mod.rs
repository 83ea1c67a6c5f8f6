//! The operator-facing HTTP service: Prometheus `/metrics`, a small JSON API and the NOC
//! dashboard, all read from `metrics::Live`. It runs on its own thread with a current-thread
//! tokio runtime, so the packet path never shares a scheduler with HTTP clients, and a slow
//! scraper can only ever slow down this thread. Routes are documented in
//! docs/metrics.md.

mod catalog;
mod intake;
mod routes;
mod swarms;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;

use crate::metrics::Live;

pub use catalog::{Catalog, OPENAPI};
pub use intake::{Intake, MAX_TORRENT_BYTES};
pub use swarms::SwarmView;

/// After a shutdown request, connections get this long to finish before they are dropped
/// (a scraper holding a keep-alive connection must not keep the process alive).
const GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP service on {addr}: {source}")]
    Setup {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running service. Dropping it stops it too; `shutdown` is the explicit, joining form.
pub struct HttpServer {
    /// The bound address (the real port when 0 was asked for).
    pub local_addr: SocketAddr,
    stop: Option<watch::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
}

/// Bind `addr` now, on the caller's thread, so a bad or busy address is an immediate error
/// naming it; then serve on a thread of its own until shutdown. With `intake`, the service
/// also takes .torrent files posted to `/api/v1/metainfo` (see `intake`); with `catalog`,
/// it answers the cache-metadata API (`/api/v1/swarms`, see `catalog`).
pub fn serve(
    addr: SocketAddr,
    live: Arc<Live>,
    intake: Option<Intake>,
    catalog: Option<Catalog>,
) -> Result<HttpServer, HttpError> {
    let listener =
        std::net::TcpListener::bind(addr).map_err(|source| HttpError::Bind { addr, source })?;
    let setup = |source| HttpError::Setup { addr, source };
    let local_addr = listener.local_addr().map_err(setup)?;
    // tokio requires a non-blocking socket to adopt it.
    listener.set_nonblocking(true).map_err(setup)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(setup)?;
    // Adopting the socket needs the runtime's reactor; done here so a failure is reported
    // to the caller instead of silently ending the thread.
    let listener = {
        let _ctx = rt.enter();
        tokio::net::TcpListener::from_std(listener).map_err(setup)?
    };
    let mut app = routes::router(live);
    if let Some(i) = intake {
        app = app.merge(intake::router(i, local_addr.ip().is_loopback()));
    }
    if let Some(c) = catalog {
        app = app.merge(catalog::router(c));
    }
    spawn(
        "peercache-http",
        rt,
        local_addr,
        move |stopped| async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(signalled(stopped))
                .await;
        },
    )
    .map_err(setup)
}

/// Run a server on a thread of its own, on `rt`, until shutdown: `serve` gets the shutdown
/// signal for its graceful shutdown (see `signalled`); once shutdown is asked for, open
/// requests get `GRACE`, then the runtime goes (work still on its blocking pool is not
/// waited for long). The operator's service and the content listener both run this way.
pub(crate) fn spawn<F, Fut>(
    name: &str,
    rt: tokio::runtime::Runtime,
    local_addr: SocketAddr,
    serve: F,
) -> std::io::Result<HttpServer>
where
    F: FnOnce(watch::Receiver<bool>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let (stop, stopped) = watch::channel(false);
    let thread = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            rt.block_on(async move {
                let graceful = serve(stopped.clone());
                let deadline = async {
                    signalled(stopped).await;
                    tokio::time::sleep(GRACE).await;
                };
                tokio::select! {
                    () = graceful => {}
                    () = deadline => {}
                }
            });
            rt.shutdown_timeout(Duration::from_secs(1));
        })?;
    Ok(HttpServer {
        local_addr,
        stop: Some(stop),
        thread: Some(thread),
    })
}

/// Resolves once shutdown is asked for, or the server handle is gone.
pub(crate) async fn signalled(mut rx: watch::Receiver<bool>) {
    // An error means the sender was dropped: treat it as the signal.
    let _ = rx.wait_for(|stop| *stop).await;
}

impl HttpServer {
    /// Stop accepting, let open requests finish (at most a few seconds), join the thread.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(t) = self.thread.take() {
            // A panic in a handler is already contained by the runtime; nothing to add.
            let _ = t.join();
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}
