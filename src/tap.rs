//! Tap mode: frames from a live interface (a tap or SPAN port) through the same engine as
//! replay. Nothing is ever sent. Signals: SIGINT/SIGTERM finish in-flight work, flush the
//! cache writer and return; SIGHUP reloads the configuration file (a bad file is refused
//! and the previous configuration stays in force); the cache is never dropped.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::capture::live::{LiveCapture, LiveOptions};
use crate::capture::CaptureError;
use crate::config::Config;
use crate::engine::Engine;
use crate::metrics::{CaptureCounters, Live};
use crate::report::Stats;
use crate::runtime::{log_reload, now_unix, reload_rules, snapshot, Control, ReloadLine, Shared};

pub struct TapOutcome {
    pub stats: Stats,
    pub capture: CaptureCounters,
    /// One line per reload: what happened.
    pub reloads: Vec<String>,
}

/// Capture on `iface` until stopped. `config_path` is re-read on SIGHUP.
pub fn run(
    iface: &str,
    cfg: Config,
    config_path: Option<PathBuf>,
    shared: &Shared,
    live: Option<&Arc<Live>>,
    ctl: &Control,
) -> Result<TapOutcome, CaptureError> {
    let opts = LiveOptions {
        iface: iface.to_string(),
        promiscuous: cfg.capture.promiscuous,
        buffer_bytes: cfg.capture.buffer_bytes,
        snaplen: cfg.capture.snaplen,
        filter: cfg.capture.filter.clone(),
        timeout_ms: 50,
    };
    let mut cap = LiveCapture::open(&opts)?;
    let link = cap.link;
    tracing::info!("capturing on {iface} ({link:?}), nothing is ever sent");
    let mut engine = Engine::with_shared(cfg, shared.clone());
    let started = now_unix();
    let mut last_publish = Instant::now();
    let mut reloads = Vec::new();
    while !ctl.stop.load(Ordering::Relaxed) {
        match cap.next_frame()? {
            Some(f) => {
                engine.handle(f.ts_micros, link, f.data, f.orig_len);
            }
            // Idle link: a short nap instead of a busy loop; under load frames are always
            // waiting and this is never reached.
            None => std::thread::sleep(Duration::from_millis(2)),
        }
        // Pieces proven on the hash thread are cached now, not at the next settle point.
        engine.settle_ready();
        if ctl.reload.swap(false, Ordering::Relaxed) {
            let outcome: ReloadLine = match &config_path {
                None => Ok("SIGHUP: no --config file to reload".to_string()),
                Some(p) => match Config::load(p) {
                    Ok(new) => {
                        let note = if new.cache.dir != engine.config().cache.dir
                            || new.cache.capacity_bytes != engine.config().cache.capacity_bytes
                        {
                            " (cache directory and capacity changes need a restart; kept)"
                        } else {
                            ""
                        };
                        let mut new = new;
                        new.cache = engine.config().cache.clone();
                        new.metainfo_dir = engine.config().metainfo_dir.clone();
                        engine.reconfigure(new);
                        Ok(format!("SIGHUP: reloaded {}{note}", p.display()))
                    }
                    Err(e) => Err(format!(
                        "SIGHUP: refused, previous configuration stays: {e}"
                    )),
                },
            };
            reloads.push(log_reload(outcome));
            if let Some(outcome) = reload_rules(shared, engine.config(), config_path.as_deref()) {
                reloads.push(log_reload(outcome));
            }
        }
        if let Some(live) = live {
            if last_publish.elapsed() >= Duration::from_secs(1) {
                last_publish = Instant::now();
                let counters = capture_counters(&mut cap);
                live.publish(snapshot(
                    "tap",
                    iface,
                    started,
                    &engine.snapshot(),
                    shared,
                    counters,
                    engine.config(),
                    (0, 0),
                    false,
                ));
            }
        }
    }
    let counters = capture_counters(&mut cap);
    tracing::info!(
        "stopping: {} frames received, {} dropped by the kernel, {} by the interface",
        counters.received,
        counters.kernel_dropped,
        counters.interface_dropped
    );
    let cfg = engine.config().clone();
    let stats = engine.finish();
    shared.sink.flush();
    shared.finish_requests();
    if let Some(live) = live {
        live.publish(snapshot(
            "tap",
            iface,
            started,
            &stats.counters(),
            shared,
            counters,
            &cfg,
            (0, 0),
            true,
        ));
    }
    Ok(TapOutcome {
        stats,
        capture: counters,
        reloads,
    })
}

fn capture_counters(cap: &mut LiveCapture) -> CaptureCounters {
    let s = cap.stats();
    CaptureCounters {
        received: s.received,
        kernel_dropped: s.kernel_dropped,
        interface_dropped: s.interface_dropped,
        engine_dropped: 0,
    }
}
