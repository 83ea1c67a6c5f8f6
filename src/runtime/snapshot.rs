//! Reports joined with what the shared state knows, for the metrics service and the final
//! report of every mode.

use super::{now_unix, Shared};
use crate::config::Config;
use crate::metrics::{CaptureCounters, Snapshot};
use crate::report::{Report, Stats};
use crate::wire::infohash::InfoHash;

/// Build a snapshot for the metrics service.
#[allow(clippy::too_many_arguments)]
pub fn snapshot(
    mode: &str,
    source: &str,
    started: f64,
    stats: &Stats,
    shared: &Shared,
    capture: CaptureCounters,
    cfg: &Config,
    progress: (u64, u64),
    finished: bool,
) -> Snapshot {
    let mut report = Report::new(stats, Vec::new());
    annotate(&mut report, shared);
    Snapshot {
        mode: mode.to_string(),
        unix_time: now_unix(),
        started_unix: started,
        source: source.to_string(),
        input_read_bytes: progress.0,
        input_total_bytes: progress.1,
        capture,
        cache_capacity_bytes: cfg.cache.dir.as_ref().map(|_| cfg.cache.capacity_bytes),
        report,
        finished,
        inline: None,
    }
}

/// Fill in what the shared state knows: metainfo per swarm and the cache's contents. (Here
/// rather than on `Report`, so the report layer need not know the runtime's wiring.)
pub fn annotate(report: &mut Report, shared: &Shared) {
    for s in &mut report.swarms {
        let Ok(ih) = s.info_hash.parse::<InfoHash>() else {
            continue;
        };
        if let Some((m, src)) = shared.registry.get(&ih) {
            s.metainfo = src.as_str();
            s.name = Some(m.name.clone());
            s.piece_length = Some(m.piece_length);
            s.pieces = Some(m.num_pieces());
        }
        s.pieces_cached = shared.sink.cached_pieces(&ih);
    }
    let store = shared.sink.store_counters();
    report.cache.stored_bytes = store.stored_bytes;
    report.cache.evicted_bytes = store.evicted_bytes;
    report.cache.store = store;
    report.metainfo_fetch = shared.fetch.as_ref().map(|f| f.counters());
    // Only where something can serve (a cache to serve from): replay's reports stay as
    // they were.
    if shared.served.totals() != Default::default() || shared.served.content_counters().is_some() {
        report.served = Some(shared.served.totals());
    }
    report.content = shared.served.content_counters();
    report.requests_out = shared.requests.as_ref().map(|r| r.counters());
    if let Some(r) = &shared.rules {
        report.rules = r.counters();
        report.policy = Some(r.policy_counters());
    }
}
