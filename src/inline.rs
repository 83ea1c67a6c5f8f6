//! Inline mode: the box bridges its two ports and answers subscribers' block requests from
//! the cache. Each forwarding worker (`inline.workers`, 1 by default) is a thread that owns
//! its capture sockets on both ports and its splice, with no locks on the forwarding path;
//! with several, the kernel shares connections out among them by IP address pair
//! (`capture::fanout`). Each worker has an analysis engine thread of its own, fed copies of
//! its frames through a bounded queue, so the cache keeps filling from what passes. When
//! that queue backs up the worker's splice stops answering new requests (fail-open) and, if
//! it is full, frames are forwarded without analysis (counted): forwarding never waits for
//! the engine. The calling thread supervises: rules reloads, metrics, stopping.
//!
//! Signals: SIGINT/SIGTERM stop (the engines drain their queues, the cache writer flushes);
//! SIGHUP re-reads the policy rules.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::capture::bridge::{wait_readable, BridgePort, PortStats};
use crate::capture::fanout;
use crate::capture::tx::TxQueue;
use crate::capture::CaptureError;
use crate::config::Config;
use crate::engine::Engine;
use crate::metrics::{CaptureCounters, Live};
use crate::report::Stats;
use crate::runtime::{log_reload, now_unix, reload_rules, snapshot, Control, Shared};
use crate::serve::{BlockSource, Emit, Port, ServeCounters, Splicer};
use crate::wire::link::LinkType;

/// What the bridge did, for the report: per port, summed over the workers.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BridgeCounters {
    pub subscriber: PortStats,
    pub upstream: PortStats,
    /// Forwarding workers (`inline.workers`).
    pub workers: usize,
}

impl BridgeCounters {
    fn add(&mut self, o: &BridgeCounters) {
        self.subscriber.add(&o.subscriber);
        self.upstream.add(&o.upstream);
        self.workers += o.workers;
    }

    /// Both ports' capture counters summed, as the metrics report them.
    fn capture(&self, engine_dropped: u64) -> CaptureCounters {
        let (a, b) = (&self.subscriber, &self.upstream);
        CaptureCounters {
            received: a.received + b.received,
            kernel_dropped: a.kernel_dropped + b.kernel_dropped,
            interface_dropped: a.interface_dropped + b.interface_dropped,
            engine_dropped,
        }
    }
}

pub struct InlineOutcome {
    pub stats: Stats,
    pub serve: ServeCounters,
    pub bridge: BridgeCounters,
    /// Both ports' capture counters summed, as the metrics report them.
    pub capture: CaptureCounters,
}

/// One worker's latest figures, for the supervisor's metrics (written about once a second:
/// the bridge part by the forwarding thread, the engine part by its engine thread).
#[derive(Default)]
struct Slot {
    bridge: BridgeCounters,
    serve: ServeCounters,
    engine: Stats,
}

/// Frames for the engine, handed over together: one wake-up of the engine thread per batch
/// rather than per frame (per-frame hand-off was most of the bridge's CPU: futex wake-ups
/// and context switches), and one allocation for all their bytes.
#[derive(Default)]
struct Batch {
    /// Per frame: capture time and where its bytes end in `bytes`.
    frames: Vec<(u64, usize)>,
    bytes: Vec<u8>,
}

impl Batch {
    fn push(&mut self, ts: u64, frame: &[u8]) {
        self.bytes.extend_from_slice(frame);
        self.frames.push((ts, self.bytes.len()));
    }

    /// Empty, keeping its allocations for the next batch.
    fn clear(&mut self) {
        self.frames.clear();
        self.bytes.clear();
    }

    fn iter(&self) -> impl Iterator<Item = (u64, &[u8])> {
        let mut start = 0;
        self.frames.iter().map(move |&(ts, end)| {
            let f = self.bytes.get(start..end).unwrap_or_default();
            start = end;
            (ts, f)
        })
    }
}

/// Frames drained from one port before looking at the other (fairness under load); also
/// the most frames a batch for the engine holds.
const BURST: usize = 64;

/// The longest the bridge waits for a frame before looking at its other duties (stopping),
/// in milliseconds.
const MAX_WAIT_MS: u64 = 5;

/// How often the supervisor looks at signals and the workers.
const SUPERVISE_EVERY: Duration = Duration::from_millis(20);

/// How long to wait for frames: until the splice's deadline (microseconds, rounded up to
/// whole milliseconds so it has passed on waking), at most `MAX_WAIT_MS`.
fn wait_ms(deadline: Option<u64>, now: u64) -> i32 {
    deadline.map_or(MAX_WAIT_MS, |at| {
        at.saturating_sub(now).div_ceil(1000).min(MAX_WAIT_MS)
    }) as i32
}

/// What a worker ends with.
struct WorkerOut {
    stats: Stats,
    serve: ServeCounters,
    bridge: BridgeCounters,
    engine_dropped: u64,
    result: Result<(), CaptureError>,
}

#[allow(clippy::too_many_arguments)]
pub fn run<S: BlockSource + Send + Sync + 'static>(
    sub_if: &str,
    up_if: &str,
    cfg: Config,
    shared: &Shared,
    source: S,
    live: Option<&Arc<Live>>,
    ctl: &Control,
    config_path: Option<PathBuf>,
) -> Result<InlineOutcome, CaptureError> {
    let n = cfg.inline.workers.max(1);
    let bypass = cfg.inline.qdisc_bypass;
    // `capture.buffer_bytes` is each port's ring; the workers' sockets share it out.
    let ring = (cfg.capture.buffer_bytes / n).max(1 << 20);
    // All sockets join their port's group before any worker starts, in worker order, so
    // member i of both groups is worker i.
    let (mut sub_group, mut up_group) = (fanout::Group::new(), fanout::Group::new());
    let mut ports = Vec::with_capacity(n);
    for _ in 0..n {
        let sub = BridgePort::open(sub_if, ring, bypass, (n > 1).then_some(&mut sub_group))?;
        let up = BridgePort::open(up_if, ring, bypass, (n > 1).then_some(&mut up_group))?;
        ports.push((sub, up));
    }
    if n > 1 {
        tracing::info!(
            "{n} forwarding workers, connections shared out by IP address pair{}",
            if sub_group.ignore_outgoing && up_group.ignore_outgoing {
                ""
            } else {
                " (this kernel copies sent frames into the fanout groups too: more work per frame)"
            }
        );
    }
    let source = Arc::new(source);
    let slots: Arc<Vec<Mutex<Slot>>> = Arc::new((0..n).map(|_| Mutex::default()).collect());
    let halt = Arc::new(AtomicBool::new(false));
    let label = format!("{sub_if}<->{up_if}");
    let mut workers: Vec<JoinHandle<WorkerOut>> = Vec::with_capacity(n);
    for (i, (sub, up)) in ports.into_iter().enumerate() {
        let w = Worker {
            sub,
            up,
            splicer: Splicer::new(cfg.inline.clone(), source.clone()),
            cfg: cfg.clone(),
            shared: shared.clone(),
            slot: slots.clone(),
            index: i,
            stop: ctl.stop.clone(),
            halt: halt.clone(),
        };
        let spawned = std::thread::Builder::new()
            .name(format!("peercache-fwd{i}"))
            .spawn(move || w.run());
        match spawned {
            Ok(h) => workers.push(h),
            Err(e) => {
                halt.store(true, Ordering::Relaxed);
                for h in workers {
                    let _ = h.join();
                }
                return Err(CaptureError::Open {
                    path: sub_if.into(),
                    msg: format!("cannot start forwarding worker {i}: {e}"),
                });
            }
        }
    }
    tracing::info!(
        "bridging {sub_if} (subscribers) <-> {up_if} (upstream); serving cached blocks inline"
    );

    // Supervise: rules reloads, metrics once a second, until every worker has ended (on a
    // stop signal, or when one fails: it halts the others).
    let started = now_unix();
    let mut last_publish = Instant::now();
    while !workers.iter().all(|h| h.is_finished()) {
        std::thread::sleep(SUPERVISE_EVERY);
        // Workers end only when told to, unless one failed or panicked: then all stop.
        if workers.iter().any(|h| h.is_finished()) {
            halt.store(true, Ordering::Relaxed);
        }
        if ctl.reload.swap(false, Ordering::Relaxed) {
            match reload_rules(shared, &cfg, config_path.as_deref()) {
                Some(outcome) => {
                    log_reload(outcome);
                }
                None => tracing::info!("SIGHUP: no rules in force; nothing to reload"),
            }
        }
        if let Some(live) = live {
            if last_publish.elapsed() >= Duration::from_secs(1) {
                last_publish = Instant::now();
                publish(live, &slots, &label, started, shared, &cfg);
            }
        }
    }

    let mut stats = Stats::default();
    let mut serve = ServeCounters::default();
    let mut bridge = BridgeCounters::default();
    let mut engine_dropped = 0;
    let mut result = Ok(());
    for (i, h) in workers.into_iter().enumerate() {
        let Ok(out) = h.join() else {
            result = Err(CaptureError::Open {
                path: sub_if.into(),
                msg: format!("forwarding worker {i} failed"),
            });
            continue;
        };
        stats.merge(out.stats);
        serve.merge(&out.serve);
        bridge.add(&out.bridge);
        engine_dropped += out.engine_dropped;
        if result.is_ok() {
            result = out.result;
        }
    }
    shared.sink.flush();
    shared.finish_requests();
    tracing::info!(
        "stopping: forwarded {} + {} frames; served {} blocks ({} bytes) to subscribers, {} misses",
        bridge.subscriber.sent,
        bridge.upstream.sent,
        serve.served_blocks,
        serve.served_bytes,
        serve.misses
    );
    result?;
    let capture = bridge.capture(engine_dropped);
    Ok(InlineOutcome {
        stats,
        serve,
        bridge,
        capture,
    })
}

/// The workers' latest figures summed into one snapshot for the metrics service.
fn publish(
    live: &Live,
    slots: &[Mutex<Slot>],
    label: &str,
    started: f64,
    shared: &Shared,
    cfg: &Config,
) {
    let mut stats = Stats::default();
    let mut serve = ServeCounters::default();
    let mut bridge = BridgeCounters::default();
    for slot in slots {
        if let Ok(s) = slot.lock() {
            stats.merge(s.engine.clone());
            serve.merge(&s.serve);
            bridge.add(&s.bridge);
        }
    }
    let capture = bridge.capture(serve.engine_dropped);
    let mut snap = snapshot(
        "inline",
        label,
        started,
        &stats,
        shared,
        capture,
        cfg,
        (0, 0),
        false,
    );
    snap.inline = Some(serve);
    live.publish(snap);
}

/// One forwarding worker: its two ports' sockets, its splice, and (started by `run`) its
/// engine thread.
struct Worker<S: BlockSource> {
    sub: BridgePort,
    up: BridgePort,
    splicer: Splicer<Arc<S>>,
    cfg: Config,
    shared: Shared,
    slot: Arc<Vec<Mutex<Slot>>>,
    index: usize,
    stop: Arc<AtomicBool>,
    /// Set by a worker that failed, so the others stop too.
    halt: Arc<AtomicBool>,
}

impl<S: BlockSource> Worker<S> {
    fn run(self) -> WorkerOut {
        let halt = self.halt.clone();
        let out = self.forward();
        if out.result.is_err() {
            halt.store(true, Ordering::Relaxed);
        }
        out
    }

    fn forward(self) -> WorkerOut {
        let Worker {
            mut sub,
            mut up,
            mut splicer,
            cfg,
            shared,
            slot,
            index,
            stop,
            halt,
        } = self;
        let icfg = cfg.inline.clone();
        // Capacity in batches; `depth` counts the frames in them against the caps.
        let (tx, rx) = sync_channel::<Batch>((icfg.engine_queue_frames / BURST).max(1));
        let depth = Arc::new(AtomicUsize::new(0));
        let engine_thread = {
            let (cfg, depth, slot) = (cfg.clone(), depth.clone(), slot.clone());
            std::thread::Builder::new()
                .name(format!("peercache-eng{index}"))
                .spawn(move || engine_loop(rx, cfg, shared, depth, &slot[index]))
        };
        let engine_thread = match engine_thread {
            Ok(t) => t,
            Err(e) => {
                return WorkerOut {
                    stats: Stats::default(),
                    serve: ServeCounters::default(),
                    bridge: BridgeCounters::default(),
                    engine_dropped: 0,
                    result: Err(CaptureError::Open {
                        path: sub.iface.clone().into(),
                        msg: format!("cannot start the engine thread: {e}"),
                    }),
                }
            }
        };

        let t0 = Instant::now();
        let mut out: Vec<Emit> = Vec::new();
        let mut last_report = Instant::now();
        let mut engine_dropped = 0u64;
        let mut batch = Batch::default();
        // Hand the batch to the engine; a full queue drops it (forwarding never waits).
        let hand_over = |batch: &mut Batch, engine_dropped: &mut u64| {
            let n = batch.frames.len();
            if n == 0 {
                return;
            }
            if depth.load(Ordering::Relaxed) + n > icfg.engine_queue_frames.max(1) {
                *engine_dropped += n as u64;
                batch.clear();
                return;
            }
            depth.fetch_add(n, Ordering::Relaxed);
            match tx.try_send(std::mem::take(batch)) {
                Ok(()) => {}
                Err(TrySendError::Full(mut b)) | Err(TrySendError::Disconnected(mut b)) => {
                    depth.fetch_sub(n, Ordering::Relaxed);
                    *engine_dropped += n as u64;
                    b.clear();
                    *batch = b; // keep its allocations
                }
            }
        };
        let bridge = |sub: &mut BridgePort, up: &mut BridgePort| BridgeCounters {
            subscriber: sub.stats(),
            upstream: up.stats(),
            workers: 1,
        };
        let mut result = Ok(());
        'run: while !stop.load(Ordering::Relaxed) && !halt.load(Ordering::Relaxed) {
            // Until a frame arrives or the splice's next deadline, at most MAX_WAIT_MS.
            let now = t0.elapsed().as_micros() as u64;
            wait_readable(&sub, &up, wait_ms(splicer.poll_timeout(), now));
            for from in [Port::Subscriber, Port::Upstream] {
                let (port, other) = match from {
                    Port::Subscriber => (&mut sub, &mut up),
                    Port::Upstream => (&mut up, &mut sub),
                };
                for _ in 0..BURST {
                    // The frame is read where the kernel put it (the capture ring); it is
                    // copied once for the engine and once into a transmit queue.
                    let got = port.next_with(|ts, frame, own| {
                        // Analysis first: the engine sees frames as they were on the wire.
                        batch.push(ts, frame);
                        if batch.frames.len() >= BURST {
                            hand_over(&mut batch, &mut engine_dropped);
                        }
                        splicer.set_overloaded(
                            depth.load(Ordering::Relaxed) + batch.frames.len()
                                > icfg.overload_queue_frames,
                        );
                        let now = t0.elapsed().as_micros() as u64;
                        splicer.on_frame(now, from, frame, &mut out);
                        send_all(&mut out, from, frame, own, other.queue());
                    });
                    match got {
                        Ok(true) => {}
                        Ok(false) => break,
                        Err(e) => {
                            result = Err(e);
                            break 'run;
                        }
                    }
                }
                // This burst's frames leave now, together: one sendmmsg per port.
                sub.flush();
                up.flush();
            }
            // Whatever this pass read goes to the engine now, however few frames.
            hand_over(&mut batch, &mut engine_dropped);
            let now = t0.elapsed().as_micros() as u64;
            if splicer.poll_timeout().is_some_and(|at| at <= now) {
                splicer.handle_timeout(now, &mut out);
                send_all(&mut out, Port::Upstream, &[], up.queue(), sub.queue());
                sub.flush();
                up.flush();
            }
            if last_report.elapsed() >= Duration::from_secs(1) {
                last_report = Instant::now();
                for p in [&mut sub, &mut up] {
                    if let Some(e) = p.take_error() {
                        tracing::error!("{}: send failed: {e}", p.iface);
                    }
                }
                splicer.counters_mut().engine_dropped = engine_dropped;
                if let Ok(mut s) = slot[index].lock() {
                    s.bridge = bridge(&mut sub, &mut up);
                    s.serve = splicer.counters().clone();
                }
            }
        }
        // Whatever was queued when the loop ended still goes out.
        sub.flush();
        up.flush();
        hand_over(&mut batch, &mut engine_dropped);
        splicer.counters_mut().engine_dropped = engine_dropped;
        drop(tx);
        let stats = engine_thread.join().unwrap_or_default();
        WorkerOut {
            stats,
            serve: splicer.counters().clone(),
            bridge: bridge(&mut sub, &mut up),
            engine_dropped,
            result,
        }
    }
}

/// Queue what the splice emitted for a frame that came in at `from`: the original goes on
/// out of the other port, the splice's own frames out of the port each names (`own` is
/// `from`'s queue, `other` the other port's).
fn send_all(
    out: &mut Vec<Emit>,
    from: Port,
    original: &[u8],
    own: &mut TxQueue,
    other: &mut TxQueue,
) {
    for e in out.drain(..) {
        let (port, bytes): (Port, &[u8]) = match &e {
            Emit::Original => (from.other(), original),
            Emit::Frame(p, f) => (*p, f),
        };
        // (An empty frame, as the timeout path's "original", is skipped by the queue.)
        if port == from {
            own.queue(bytes);
        } else {
            other.queue(bytes);
        }
    }
}

fn engine_loop(
    rx: Receiver<Batch>,
    cfg: Config,
    shared: Shared,
    depth: Arc<AtomicUsize>,
    slot: &Mutex<Slot>,
) -> Stats {
    let mut engine = Engine::with_shared(cfg, shared);
    let mut last_publish = Instant::now();
    let mut verifying = false;
    loop {
        // While pieces are on the hash thread, come back soon to cache them once proven.
        let wait = Duration::from_millis(if verifying { 2 } else { 250 });
        match rx.recv_timeout(wait) {
            Ok(b) => {
                for (ts, f) in b.iter() {
                    engine.handle(ts, LinkType::Ethernet, f, f.len() as u32);
                }
                depth.fetch_sub(b.frames.len(), Ordering::Relaxed);
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
        verifying = engine.settle_ready();
        if last_publish.elapsed() >= Duration::from_secs(1) {
            last_publish = Instant::now();
            let snap = engine.snapshot();
            if let Ok(mut s) = slot.lock() {
                s.engine = snap;
            }
        }
    }
    // The final snapshot is published by the caller, with the final counters.
    engine.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_until_the_splice_deadline_at_most_max_wait() {
        assert_eq!(wait_ms(None, 1_000), 5);
        assert_eq!(wait_ms(Some(900), 1_000), 0);
        assert_eq!(wait_ms(Some(1_000), 1_000), 0);
        assert_eq!(wait_ms(Some(1_001), 1_000), 1);
        assert_eq!(wait_ms(Some(3_500), 1_000), 3);
        assert_eq!(wait_ms(Some(60_000_000), 1_000), 5);
    }
}
