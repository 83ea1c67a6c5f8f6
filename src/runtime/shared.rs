//! [`Shared`]: what every engine (worker) of a mode shares, and how a mode builds it from
//! the configuration: the metainfo registry, the piece sink (the disk cache or an
//! in-memory record), and the policy rules in front of that sink.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;

use crate::cache::{CacheError, CommitPolicy, PieceStore, StoreWriter};
use crate::clock::now_unix;
use crate::config::Config;
use crate::rules::{Reload, RuleLimits, RulesError, RulesSink};
use crate::swarm::torrents::TorrentDir;
use crate::swarm::{MemorySink, PieceSink, Registry, Source};

/// What engines (workers) share: metainfo learnt anywhere, and the piece cache.
#[derive(Clone)]
pub struct Shared {
    pub registry: Arc<Registry>,
    pub sink: Arc<dyn PieceSink + Send + Sync>,
    /// The policy rules in front of `sink` (the same object), when a rules file is in
    /// force: for reloads and the per-rule counts.
    pub rules: Option<Arc<RulesSink>>,
    /// The metadata fetcher's handle, in tap and inline mode when enabled: engines offer
    /// it the peers of swarms that need metainfo.
    pub fetch: Option<Arc<crate::fetch::Wants>>,
    /// What the cache served, per swarm and route (the splice and the content listener
    /// count into it; the API and the report read it).
    pub served: Arc<crate::serve::ledger::ServedLedger>,
    /// `--requests-out`: the request trace every engine writes subscriber REQUESTs to.
    pub requests: Option<Arc<super::requests::RequestLog>>,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            registry: Arc::new(Registry::default()),
            sink: Arc::new(MemorySink::default()),
            rules: None,
            fetch: None,
            served: Arc::default(),
            requests: None,
        }
    }
}

#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error("opening cache {}", dir.display())]
    Cache {
        dir: PathBuf,
        #[source]
        source: CacheError,
    },
    #[error(transparent)]
    Rules(#[from] RulesError),
}

impl Shared {
    /// End of a mode's run: the request trace written out and closed (when there is one).
    pub fn finish_requests(&self) {
        if let Some(r) = &self.requests {
            r.finish();
        }
    }
}

/// Put the rules of `path` in front of `shared`'s sink (purging what the blocklist names).
pub fn install_rules(
    shared: &mut Shared,
    path: &Path,
    limits: RuleLimits,
) -> Result<Reload, RulesError> {
    let (sink, reload) = RulesSink::with_limits(shared.sink.clone(), path, limits, now_unix)?;
    let sink = Arc::new(sink);
    shared.sink = sink.clone();
    shared.rules = Some(sink);
    Ok(reload)
}

/// The shared state the configuration asks for: the disk cache as the sink when configured
/// (its metainfo preloaded into the registry), otherwise an in-memory record of verified
/// pieces; then the policy rules the config names in front of it (one log line). The store
/// itself is handed back too when there is one (inline mode reads from it).
pub fn open_shared(cfg: &Config) -> Result<(Shared, Option<Arc<PieceStore>>), RuntimeError> {
    let (mut shared, store) = open_store(cfg)?;
    if let Some(path) = &cfg.rules {
        let r = install_rules(&mut shared, path, cfg.policy)?;
        tracing::info!("rules {}: {r}", path.display());
    }
    Ok((shared, store))
}

fn open_store(cfg: &Config) -> Result<(Shared, Option<Arc<PieceStore>>), RuntimeError> {
    let Some(dir) = &cfg.cache.dir else {
        return Ok((Shared::default(), None));
    };
    let store = PieceStore::open_with(dir, cfg.cache.capacity_bytes, &cfg.cache.policy).map_err(
        |source| RuntimeError::Cache {
            dir: dir.clone(),
            source,
        },
    )?;
    let registry = Registry::default();
    for s in store.swarms() {
        if let Some(m) = store.metainfo(&s.info_hash) {
            registry.insert((*m).clone(), Source::Cache);
        }
    }
    let store = Arc::new(store);
    let sink = StoreWriter::new(
        store.clone(),
        cfg.cache.write_queue_pieces,
        CommitPolicy {
            bytes: cfg.cache.commit_bytes.max(1),
            interval: std::time::Duration::from_millis(cfg.cache.commit_interval_ms),
        },
    );
    let shared = Shared {
        registry: Arc::new(registry),
        sink: Arc::new(sink),
        rules: None,
        fetch: None,
        served: Arc::new(crate::serve::ledger::ServedLedger::new(
            cfg.swarms.max_swarms,
        )),
        requests: None,
    };
    Ok((shared, Some(store)))
}

/// The .torrent files of `metainfo_dir` into the registry; each bad file gets a log line.
/// Returns what was read, for [`watch_metainfo`] to go on from.
pub fn load_metainfo(cfg: &Config, shared: &Shared) -> Option<TorrentDir> {
    let dir = cfg.metainfo_dir.as_ref()?;
    let mut td = TorrentDir::new();
    let s = td.scan(&shared.registry, dir);
    for e in &s.errors {
        tracing::warn!("metainfo: {e} (skipped)");
    }
    tracing::info!(
        "{} .torrent files loaded from {}",
        s.loaded.len() + s.known,
        dir.display()
    );
    Some(td)
}

/// Start the metadata fetcher when the configuration enables it, and hand its offers
/// handle to `shared` (before the engines are built from it). Tap and inline only.
pub fn start_fetch(
    cfg: &Config,
    shared: &mut Shared,
) -> std::io::Result<Option<crate::fetch::FetchService>> {
    if !cfg.metainfo_fetch.enabled {
        return Ok(None);
    }
    let svc = crate::fetch::service::start(
        cfg.metainfo_fetch.clone(),
        shared.registry.clone(),
        shared.sink.clone(),
    )?;
    shared.fetch = Some(svc.wants.clone());
    Ok(Some(svc))
}
