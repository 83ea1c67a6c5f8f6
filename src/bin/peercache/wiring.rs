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
    store: Option<Arc<peercache::cache::PieceStore>>,
    token: Option<String>,
) -> anyhow::Result<Option<peercache::http::HttpServer>> {
    let Some(addr) = addr else { return Ok(None) };
    let intake = peercache::http::Intake {
        registry: shared.registry.clone(),
        sink: shared.sink.clone(),
        token,
        fetch: shared.fetch.clone(),
    };
    let catalog = peercache::http::Catalog {
        store,
        registry: shared.registry.clone(),
        served: shared.served.clone(),
    };
    let srv = peercache::http::serve(addr, live.clone(), Some(intake), Some(catalog))?;
    tracing::info!("dashboard and metrics at http://{}/", srv.local_addr);
    Ok(Some(srv))
}

/// The content listener (pieces, block URIs and the web seed over HTTP) when
/// `content.listen` is set: it needs the cache it serves from.
pub(crate) fn start_content(
    cfg: &peercache::config::Config,
    shared: &peercache::runtime::Shared,
    store: Option<&Arc<peercache::cache::PieceStore>>,
) -> anyhow::Result<Option<peercache::content::ContentServer>> {
    let Some(addr) = cfg.content.listen else {
        return Ok(None);
    };
    let Some(store) = store else {
        anyhow::bail!("content.listen ({addr}) needs a cache directory to serve from (--cache-dir DIR, or cache.dir in the config)");
    };
    let src = peercache::serve::source::StoreBlocks::new(
        store.clone(),
        shared.rules.clone(),
        cfg.content.piece_memory_bytes,
    )
    .with_ledger(shared.served.clone());
    let srv = peercache::content::serve(
        &cfg.content,
        &cfg.subscriber_nets,
        Arc::new(src),
        shared.registry.clone(),
    )?;
    if let Some(s) = &srv {
        tracing::info!(
            "content listener at http://{}/ (pieces /v1/{{info-hash}}/{{piece}}, web seed /ws/{{info-hash}}/)",
            s.local_addr
        );
    }
    Ok(srv)
}
