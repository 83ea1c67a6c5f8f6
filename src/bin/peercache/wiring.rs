//! What the long-running modes share on the binary side: the signal handlers, and the metrics/JSON/dashboard service.

use std::sync::Arc;

use anyhow::Context;

use peercache::metrics::Live;
use peercache::runtime::Control;

/// Stop on SIGINT/SIGTERM, reload on SIGHUP (the long-running modes).
pub(crate) fn signal_control() -> anyhow::Result<Control> {
    let ctl = Control::default();
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, ctl.stop.clone()).context("installing signal handlers")?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, ctl.reload.clone())
        .context("installing SIGHUP handler")?;
    Ok(ctl)
}

/// The metrics, JSON API and dashboard service at `addr`, when one is configured; tap and
/// inline also take .torrent files posted to it (into `shared`).
pub(crate) fn start_http(
    addr: Option<std::net::SocketAddr>,
    live: &Arc<Live>,
    shared: &peercache::runtime::Shared,
    token: Option<String>,
) -> anyhow::Result<Option<peercache::http::HttpServer>> {
    let Some(addr) = addr else { return Ok(None) };
    let intake = peercache::http::Intake {
        registry: shared.registry.clone(),
        sink: shared.sink.clone(),
        token,
        fetch: shared.fetch.clone(),
    };
    let srv = peercache::http::serve(addr, live.clone(), Some(intake))?;
    tracing::info!("dashboard and metrics at http://{}/", srv.local_addr);
    Ok(Some(srv))
}
