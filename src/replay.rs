//! Replay: capture files through the engine, in order, as if they were one link. With more
//! than one worker, frames are sharded by a symmetric hash of the IP pair (both directions
//! and all fragments of a datagram land on the same worker) and each worker owns its flows.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread;

use indicatif::{ProgressBar, ProgressStyle};

use crate::capture::PcapFile;
use crate::config::Config;
use crate::engine::Engine;
use crate::flow::key::ip_pair_shard;
use crate::metrics::{CaptureCounters, Live};
use crate::report::{FileReport, Report, Stats};
use crate::runtime::{annotate, now_unix, snapshot, Shared};
use crate::wire::link::{self, Decoded, LinkType};

#[derive(Clone, Default)]
pub struct ReplayOptions {
    pub workers: usize,
    /// Draw a progress bar on stderr (only when it is a terminal).
    pub progress: bool,
    /// Publish a snapshot about once a second for the metrics service (one worker only;
    /// with several, only the final state is published).
    pub live: Option<std::sync::Arc<Live>>,
}

pub struct Outcome {
    pub report: Report,
    /// One line per file that could not be read (fully).
    pub errors: Vec<String>,
}

/// Frames handed to a worker: (timestamp, link, bytes, original length).
type Batch = Vec<(u64, LinkType, Vec<u8>, u32)>;
const BATCH: usize = 512;

enum Sink {
    Direct(Box<Engine>),
    Sharded {
        txs: Vec<mpsc::SyncSender<Batch>>,
        pending: Vec<Batch>,
        handles: Vec<thread::JoinHandle<Stats>>,
    },
}

impl Sink {
    fn new(cfg: &Config, workers: usize, shared: &Shared) -> Sink {
        if workers <= 1 {
            return Sink::Direct(Box::new(Engine::with_shared(cfg.clone(), shared.clone())));
        }
        let mut txs = Vec::new();
        let mut handles = Vec::new();
        for _ in 0..workers {
            let (tx, rx) = mpsc::sync_channel::<Batch>(16);
            let cfg = cfg.clone();
            let shared = shared.clone();
            handles.push(thread::spawn(move || {
                let mut e = Engine::with_shared(cfg, shared);
                for batch in rx {
                    for (ts, link, data, len) in batch {
                        e.handle(ts, link, &data, len);
                    }
                }
                e.finish()
            }));
            txs.push(tx);
        }
        Sink::Sharded {
            pending: (0..workers).map(|_| Vec::with_capacity(BATCH)).collect(),
            txs,
            handles,
        }
    }

    fn push(&mut self, ts: u64, link: LinkType, data: &[u8], orig_len: u32) {
        match self {
            Sink::Direct(e) => {
                e.handle(ts, link, data, orig_len);
            }
            Sink::Sharded { txs, pending, .. } => {
                let n = txs.len();
                let w = match link::decode(link, data, orig_len) {
                    Ok(Decoded::Packet(p)) => ip_pair_shard(p.src, p.dst, n),
                    Ok(Decoded::Fragment(f)) => ip_pair_shard(f.src, f.dst, n),
                    // Errors and non-IP frames are only counted: any worker will do.
                    _ => 0,
                };
                pending[w].push((ts, link, data.to_vec(), orig_len));
                if pending[w].len() >= BATCH {
                    let b = std::mem::replace(&mut pending[w], Vec::with_capacity(BATCH));
                    // A worker only goes away by panicking; its stats are then lost anyway.
                    let _ = txs[w].send(b);
                }
            }
        }
    }

    /// Counters so far, when they can be read without stopping the workers.
    fn snapshot(&self) -> Option<Stats> {
        match self {
            Sink::Direct(e) => Some(e.snapshot()),
            Sink::Sharded { .. } => None,
        }
    }

    fn finish(self) -> Stats {
        match self {
            Sink::Direct(e) => e.finish(),
            Sink::Sharded {
                txs,
                pending,
                handles,
            } => {
                for (tx, b) in txs.iter().zip(pending) {
                    let _ = tx.send(b);
                }
                drop(txs);
                let mut total = Stats::default();
                for h in handles {
                    if let Ok(s) = h.join() {
                        total.merge(s);
                    }
                }
                total
            }
        }
    }
}

pub fn replay(paths: &[PathBuf], cfg: &Config, opts: &ReplayOptions) -> Outcome {
    replay_with(paths, cfg, opts, &Shared::default())
}

/// Replay with a given shared state (metainfo registry, piece cache). Metainfo files named
/// by the config are loaded into the registry first; a bad one is an error line, the rest
/// still load.
pub fn replay_with(
    paths: &[PathBuf],
    cfg: &Config,
    opts: &ReplayOptions,
    shared: &Shared,
) -> Outcome {
    let mut errors = Vec::new();
    if let Some(dir) = &cfg.metainfo_dir {
        let (_, errs) = shared.registry.load_dir(dir);
        errors.extend(errs);
    }
    let mut sink = Sink::new(cfg, opts.workers, shared);
    let mut files = Vec::new();
    let total: u64 = paths
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let bar = if opts.progress && std::io::stderr().is_terminal() {
        let b = ProgressBar::new(total);
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Some(b)
    } else {
        None
    };
    let mut done_before = 0u64;
    let started = now_unix();
    let mut last_publish = std::time::Instant::now();
    let source = paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(" ");
    let publish = |stats: &Stats, read: u64, finished: bool| {
        if let Some(live) = &opts.live {
            live.publish(snapshot(
                "replay",
                &source,
                started,
                stats,
                shared,
                CaptureCounters::default(),
                cfg,
                (read, total),
                finished,
            ));
        }
    };
    for path in paths {
        let name = path.display().to_string();
        if let Some(b) = &bar {
            b.set_message(name.clone());
        }
        let mut file = match PcapFile::open(path) {
            Ok(f) => f,
            Err(e) => {
                errors.push(e.to_string());
                files.push(FileReport {
                    path: name,
                    frames: 0,
                    error: Some(e.to_string()),
                });
                continue;
            }
        };
        let link = file.link;
        // Position in the file, estimated as frames plus their 16-byte record headers.
        let mut pos = 0u64;
        let mut error = None;
        loop {
            match file.next_frame() {
                Ok(Some(f)) => {
                    pos += f.data.len() as u64 + 16;
                    sink.push(f.ts_micros, link, f.data, f.orig_len);
                }
                Ok(None) => break,
                Err(e) => {
                    error = Some(e.to_string());
                    break;
                }
            }
            if file.frames % 4096 == 0 {
                if let Some(b) = &bar {
                    b.set_position(done_before + pos.min(file.file_size));
                }
                if opts.live.is_some()
                    && last_publish.elapsed() >= std::time::Duration::from_secs(1)
                {
                    last_publish = std::time::Instant::now();
                    if let Some(st) = sink.snapshot() {
                        publish(&st, done_before + pos.min(file.file_size), false);
                    }
                }
            }
        }
        done_before += file.file_size;
        if let Some(e) = &error {
            errors.push(e.clone());
        }
        files.push(FileReport {
            path: name,
            frames: file.frames,
            error,
        });
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let stats = sink.finish();
    // Pieces still queued for the disk are written before the cache is reported on.
    shared.sink.flush();
    shared.finish_requests();
    publish(&stats.counters(), total, true);
    let mut report = Report::new(&stats, files);
    annotate(&mut report, shared);
    Outcome { report, errors }
}
