//! The modes as commands: configuration and shared state from the options, the mode run,
//! then the report (JSON, or the readable summary).

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use crate::cli::{InlineArgs, ReplayArgs, TapArgs};
use crate::summary::{human, print_inline_summary, print_summary};
use crate::wiring::{signal_control, start_content, start_http};
use peercache::metrics::Live;
use peercache::replay::{self, ReplayOptions};
use peercache::report::Report;
use peercache::runtime::{self, annotate};

pub(crate) fn replay(a: ReplayArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = a.engine.config()?;
    cfg.record_streams |= a.record_streams;
    let (mut shared, store) = runtime::open_shared(&cfg)?;
    a.engine.open_requests(&cfg, &mut shared)?;
    let live = a.http.map(|_| Arc::new(Live::new(3600)));
    let server = match (a.http, &live) {
        (Some(addr), Some(live)) => {
            let catalog = peercache::http::Catalog {
                store,
                registry: shared.registry.clone(),
                served: shared.served.clone(),
            };
            let srv = peercache::http::serve(addr, live.clone(), None, Some(catalog))?;
            tracing::info!("dashboard and metrics at http://{}/", srv.local_addr);
            Some(srv)
        }
        _ => None,
    };
    let opts = ReplayOptions {
        workers: a.workers.max(1),
        progress: !a.no_progress && !a.json,
        live: live.clone(),
    };
    let out = replay::replay_with(&a.files, &cfg, &opts, &shared);
    for e in &out.errors {
        tracing::error!("{e}");
    }
    let text = serde_json::to_string_pretty(&out.report).context("serialising the report")?;
    write_report(a.report.as_deref(), &text)?;
    if a.json {
        println!("{text}");
    } else {
        print_summary(
            &out.report,
            !cfg.subscriber_nets.is_empty(),
            cfg.cache.dir.is_some(),
        );
    }
    if let Some(srv) = server {
        if a.http_linger {
            tracing::info!(
                "replay done; serving http://{}/ until Ctrl-C",
                srv.local_addr
            );
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                signal_hook::flag::register(sig, stop.clone())
                    .context("installing signal handlers")?;
            }
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
        srv.shutdown();
    }
    // Pieces proven but not stored are work lost: the run did not do what was asked.
    let write_errors = out.report.cache.store.write_errors;
    if write_errors > 0 {
        tracing::error!(
            "{write_errors} cache write errors: verified pieces were not all stored (reasons above)"
        );
    }
    // So is a request trace that could not be written (the error was logged with its path).
    let trace_errors = out.report.requests_out.map_or(0, |r| r.write_errors);
    let ok = out.errors.is_empty() && write_errors == 0 && trace_errors == 0;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub(crate) fn tap(a: TapArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = a.engine.config()?;
    if a.filter.is_some() {
        cfg.capture.filter = a.filter.clone();
    }
    let (mut shared, store) = runtime::open_shared(&cfg)?;
    a.engine.open_requests(&cfg, &mut shared)?;
    let _watch = watch_metainfo(&cfg, &shared)?;
    let _fetch = start_fetch(&cfg, &mut shared)?;
    let content = start_content(&cfg, &shared, store.as_ref())?;
    match &cfg.cache.dir {
        Some(d) => tracing::info!(
            "cache {} (capacity {})",
            d.display(),
            human(cfg.cache.capacity_bytes)
        ),
        None => tracing::warn!("no cache directory: pieces are verified and counted only"),
    }
    let ctl = signal_control()?;
    let live = Arc::new(Live::new(3600));
    let server = start_http(
        a.http.or(cfg.http.listen),
        &live,
        &shared,
        store.clone(),
        cfg.http.metainfo_token.clone(),
    )?;
    let out = peercache::tap::run(
        &a.iface,
        cfg.clone(),
        a.engine.config.clone(),
        &shared,
        Some(&live),
        &ctl,
    )?;
    if let Some(srv) = server {
        srv.shutdown();
    }
    if let Some(c) = content {
        c.shutdown();
    }
    let mut report = Report::new(&out.stats, Vec::new());
    annotate(&mut report, &shared);
    let text = serde_json::to_string_pretty(&report).context("serialising the report")?;
    write_report(a.report.as_deref(), &text)?;
    if a.json {
        println!("{text}");
    } else {
        print_summary(
            &report,
            !cfg.subscriber_nets.is_empty(),
            cfg.cache.dir.is_some(),
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn inline(a: InlineArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = a.engine.config()?;
    if let Some(n) = a.workers {
        cfg.inline.workers = usize::from(n);
    }
    if cfg.cache.dir.is_none() {
        anyhow::bail!(
            "inline mode needs a cache directory (--cache-dir DIR, or cache.dir in the config)"
        );
    }
    let (mut shared, store) = runtime::open_shared(&cfg)?;
    a.engine.open_requests(&cfg, &mut shared)?;
    let Some(store) = store else {
        anyhow::bail!("inline mode needs a cache directory");
    };
    let _watch = watch_metainfo(&cfg, &shared)?;
    let _fetch = start_fetch(&cfg, &mut shared)?;
    tracing::info!(
        "cache {} (capacity {}, {} pieces held)",
        cfg.cache
            .dir
            .as_deref()
            .unwrap_or(std::path::Path::new(""))
            .display(),
        human(cfg.cache.capacity_bytes),
        store
            .swarms()
            .iter()
            .map(|s| u64::from(s.pieces_cached))
            .sum::<u64>()
    );
    let ctl = signal_control()?;
    let live = Arc::new(Live::new(3600));
    let server = start_http(
        a.http.or(cfg.http.listen),
        &live,
        &shared,
        Some(store.clone()),
        cfg.http.metainfo_token.clone(),
    )?;
    let content = start_content(&cfg, &shared, Some(&store))?;
    let source = peercache::serve::source::StoreBlocks::new(
        store,
        shared.rules.clone(),
        cfg.inline.piece_memory_bytes,
    )
    .with_ledger(shared.served.clone());
    let started = runtime::now_unix();
    let out = peercache::inline::run(
        &a.subscriber_iface,
        &a.upstream_iface,
        cfg.clone(),
        &shared,
        source,
        Some(&live),
        &ctl,
        a.engine.config.clone(),
    )?;
    let mut snap = runtime::snapshot(
        "inline",
        &format!("{}<->{}", a.subscriber_iface, a.upstream_iface),
        started,
        &out.stats.counters(),
        &shared,
        out.capture,
        &cfg,
        (0, 0),
        true,
    );
    snap.inline = Some(out.serve.clone());
    live.publish(snap);
    if let Some(srv) = server {
        srv.shutdown();
    }
    if let Some(c) = content {
        c.shutdown();
    }
    let mut report = Report::new(&out.stats, Vec::new());
    annotate(&mut report, &shared);
    let mut doc = serde_json::to_value(&report).context("serialising the report")?;
    if let Some(obj) = doc.as_object_mut() {
        obj.insert("inline".into(), serde_json::to_value(&out.serve)?);
        obj.insert("bridge".into(), serde_json::to_value(&out.bridge)?);
    }
    let text = serde_json::to_string_pretty(&doc).context("serialising the report")?;
    write_report(a.report.as_deref(), &text)?;
    if a.json {
        println!("{text}");
    } else {
        print_inline_summary(&out);
        print_summary(&report, !cfg.subscriber_nets.is_empty(), true);
    }
    Ok(ExitCode::SUCCESS)
}

/// The metadata fetcher (unless `metainfo_fetch.enabled` is false), with a log line saying
/// where its connections come from; it stops when the result is dropped.
fn start_fetch(
    cfg: &peercache::config::Config,
    shared: &mut runtime::Shared,
) -> anyhow::Result<Option<peercache::fetch::FetchService>> {
    let f = &cfg.metainfo_fetch;
    if !f.enabled {
        tracing::info!("metainfo fetch off (metainfo_fetch.enabled: false)");
    }
    let svc = runtime::start_fetch(cfg, shared).context("starting the metadata fetcher")?;
    if svc.is_some() {
        tracing::info!(
            "metainfo fetch on: swarms without metainfo after {} PIECE bytes or {} subscribers are fetched from their peers, from {}",
            f.min_piece_bytes,
            f.min_subscribers,
            f.bind
                .map_or("the address the host routes by".to_string(), |a| a.to_string())
        );
    }
    Ok(svc)
}

/// The .torrent directory read now, and looked at again while the mode runs (unless
/// `metainfo_watch.interval_secs` is 0); the watcher stops when the result is dropped.
fn watch_metainfo(
    cfg: &peercache::config::Config,
    shared: &runtime::Shared,
) -> anyhow::Result<Option<runtime::MetainfoWatch>> {
    let seen = runtime::load_metainfo(cfg, shared);
    let (Some(seen), Some(dir)) = (seen, &cfg.metainfo_dir) else {
        return Ok(None);
    };
    if cfg.metainfo_watch.interval_secs == 0 {
        return Ok(None);
    }
    let w = runtime::watch_metainfo(
        dir.clone(),
        seen,
        shared.registry.clone(),
        std::time::Duration::from_secs(cfg.metainfo_watch.interval_secs),
    )
    .context("starting the .torrent directory watcher")?;
    Ok(Some(w))
}

/// `--report FILE`: the JSON report written there too (every mode).
fn write_report(path: Option<&std::path::Path>, text: &str) -> anyhow::Result<()> {
    if let Some(path) = path {
        std::fs::write(path, format!("{text}\n"))
            .with_context(|| format!("writing the report to {}", path.display()))?;
    }
    Ok(())
}
