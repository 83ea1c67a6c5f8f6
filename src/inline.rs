//! Inline mode: the box bridges its two ports and answers subscribers' block requests from
//! the cache. One thread owns the bridge and the splice (no locks on the forwarding path);
//! a second runs the analysis engine, fed copies of every frame through a bounded queue, so
//! the cache keeps filling from what passes. When that queue backs up the splice stops
//! answering new requests (fail-open) and, if it is full, frames are forwarded without
//! analysis (counted): forwarding never waits for the engine.
//!
//! Signals: SIGINT/SIGTERM stop (the engine drains its queue, the cache writer flushes);
//! SIGHUP re-reads the policy rules.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::capture::bridge::{wait_readable, BridgePort, PortStats};
use crate::capture::CaptureError;
use crate::config::Config;
use crate::engine::Engine;
use crate::metrics::{CaptureCounters, Live};
use crate::report::Stats;
use crate::runtime::{log_reload, now_unix, reload_rules, snapshot, Control, Shared};
use crate::serve::{BlockSource, Emit, Port, ServeCounters, Splicer};
use crate::wire::link::LinkType;

/// What the bridge thread did, for the report.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BridgeCounters {
    pub subscriber: PortStats,
    pub upstream: PortStats,
}

pub struct InlineOutcome {
    pub stats: Stats,
    pub serve: ServeCounters,
    pub bridge: BridgeCounters,
    /// Both ports' capture counters summed, as the metrics report them.
    pub capture: CaptureCounters,
}

/// Figures the bridge thread hands to the engine thread's metrics publisher.
#[derive(Default)]
struct Latest {
    capture: CaptureCounters,
    serve: ServeCounters,
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

/// The longest the bridge waits for a frame before looking at its other duties (signals,
/// reports), in milliseconds.
const MAX_WAIT_MS: u64 = 5;

/// How long to wait for frames: until the splice's deadline (microseconds, rounded up to
/// whole milliseconds so it has passed on waking), at most `MAX_WAIT_MS`.
fn wait_ms(deadline: Option<u64>, now: u64) -> i32 {
    deadline.map_or(MAX_WAIT_MS, |at| {
        at.saturating_sub(now).div_ceil(1000).min(MAX_WAIT_MS)
    }) as i32
}

#[allow(clippy::too_many_arguments)]
pub fn run<S: BlockSource>(
    sub_if: &str,
    up_if: &str,
    cfg: Config,
    shared: &Shared,
    source: S,
    live: Option<&Arc<Live>>,
    ctl: &Control,
    config_path: Option<PathBuf>,
) -> Result<InlineOutcome, CaptureError> {
    let bypass = cfg.inline.qdisc_bypass;
    let mut sub = BridgePort::open(sub_if, cfg.capture.buffer_bytes, bypass)?;
    let mut up = BridgePort::open(up_if, cfg.capture.buffer_bytes, bypass)?;
    let icfg = cfg.inline.clone();
    let mut splicer = Splicer::new(icfg.clone(), source);

    // Capacity in batches; `depth` counts the frames in them against the caps.
    let (tx, rx) = sync_channel::<Batch>((icfg.engine_queue_frames / BURST).max(1));
    let depth = Arc::new(AtomicUsize::new(0));
    let latest = Arc::new(Mutex::new(Latest::default()));
    let engine_thread = {
        let (cfg, shared, depth, latest, live) = (
            cfg.clone(),
            shared.clone(),
            depth.clone(),
            latest.clone(),
            live.cloned(),
        );
        let label = format!("{sub_if}<->{up_if}");
        std::thread::Builder::new()
            .name("peercache-engine".into())
            .spawn(move || engine_loop(rx, cfg, shared, depth, latest, live, label))
            .map_err(|e| CaptureError::Open {
                path: sub_if.into(),
                msg: format!("cannot start the engine thread: {e}"),
            })?
    };

    tracing::info!(
        "bridging {sub_if} (subscribers) <-> {up_if} (upstream); serving cached blocks inline"
    );
    let t0 = Instant::now();
    let mut out: Vec<Emit> = Vec::new();
    let mut buf: Vec<u8> = Vec::with_capacity(65_536);
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
    let mut result = Ok(());
    'run: while !ctl.stop.load(Ordering::Relaxed) {
        // Until a frame arrives or the splice's next deadline, at most MAX_WAIT_MS.
        let now = t0.elapsed().as_micros() as u64;
        wait_readable(&sub, &up, wait_ms(splicer.poll_timeout(), now));
        for from in [Port::Subscriber, Port::Upstream] {
            for _ in 0..BURST {
                let port = match from {
                    Port::Subscriber => &mut sub,
                    Port::Upstream => &mut up,
                };
                let ts = match port.next_into(&mut buf) {
                    Ok(Some(ts)) => ts,
                    Ok(None) => break,
                    Err(e) => {
                        result = Err(e);
                        break 'run;
                    }
                };
                // Analysis first (a copy): the engine sees frames as they were on the wire.
                batch.push(ts, &buf);
                if batch.frames.len() >= BURST {
                    hand_over(&mut batch, &mut engine_dropped);
                }
                splicer.set_overloaded(
                    depth.load(Ordering::Relaxed) + batch.frames.len() > icfg.overload_queue_frames,
                );
                let now = t0.elapsed().as_micros() as u64;
                splicer.on_frame(now, from, &buf, &mut out);
                send_all(&mut out, from, &buf, &mut sub, &mut up);
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
            send_all(&mut out, Port::Upstream, &[], &mut sub, &mut up);
            sub.flush();
            up.flush();
        }
        if ctl.reload.swap(false, Ordering::Relaxed) {
            match reload_rules(shared, &cfg, config_path.as_deref()) {
                Some(outcome) => {
                    log_reload(outcome);
                }
                None => tracing::info!("SIGHUP: no rules in force; nothing to reload"),
            }
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            for p in [&mut sub, &mut up] {
                if let Some(e) = p.take_error() {
                    tracing::error!("{}: send failed: {e}", p.iface);
                }
            }
            splicer.counters_mut().engine_dropped = engine_dropped;
            if let Ok(mut l) = latest.lock() {
                l.capture = capture_counters(&mut sub, &mut up, engine_dropped);
                l.serve = splicer.counters().clone();
            }
        }
    }
    // Whatever was queued when the loop ended still goes out.
    sub.flush();
    up.flush();
    splicer.counters_mut().engine_dropped = engine_dropped;
    let capture = capture_counters(&mut sub, &mut up, engine_dropped);
    if let Ok(mut l) = latest.lock() {
        l.capture = capture;
        l.serve = splicer.counters().clone();
    }
    hand_over(&mut batch, &mut engine_dropped);
    drop(tx);
    let stats = engine_thread.join().unwrap_or_default();
    shared.sink.flush();
    let bridge = BridgeCounters {
        subscriber: sub.stats(),
        upstream: up.stats(),
    };
    let s = splicer.counters();
    tracing::info!(
        "stopping: forwarded {} + {} frames; served {} blocks ({} bytes) to subscribers, {} misses",
        bridge.subscriber.sent,
        bridge.upstream.sent,
        s.served_blocks,
        s.served_bytes,
        s.misses
    );
    result?;
    Ok(InlineOutcome {
        stats,
        serve: splicer.counters().clone(),
        bridge,
        capture,
    })
}

fn send_all(
    out: &mut Vec<Emit>,
    from: Port,
    original: &[u8],
    sub: &mut BridgePort,
    up: &mut BridgePort,
) {
    for e in out.drain(..) {
        let (port, bytes): (Port, &[u8]) = match &e {
            Emit::Original => (from.other(), original),
            Emit::Frame(p, f) => (*p, f),
        };
        if bytes.is_empty() {
            continue;
        }
        match port {
            Port::Subscriber => sub.send(bytes),
            Port::Upstream => up.send(bytes),
        }
    }
}

fn capture_counters(
    sub: &mut BridgePort,
    up: &mut BridgePort,
    engine_dropped: u64,
) -> CaptureCounters {
    let (a, b) = (sub.stats(), up.stats());
    CaptureCounters {
        received: a.received + b.received,
        kernel_dropped: a.kernel_dropped + b.kernel_dropped,
        interface_dropped: a.interface_dropped + b.interface_dropped,
        engine_dropped,
    }
}

fn engine_loop(
    rx: Receiver<Batch>,
    cfg: Config,
    shared: Shared,
    depth: Arc<AtomicUsize>,
    latest: Arc<Mutex<Latest>>,
    live: Option<Arc<Live>>,
    label: String,
) -> Stats {
    let mut engine = Engine::with_shared(cfg, shared.clone());
    let started = now_unix();
    let mut last_publish = Instant::now();
    let publish = |engine: &Engine| {
        let Some(live) = &live else { return };
        let (capture, serve) = latest
            .lock()
            .map(|l| (l.capture, l.serve.clone()))
            .unwrap_or_default();
        let mut snap = snapshot(
            "inline",
            &label,
            started,
            &engine.snapshot(),
            &shared,
            capture,
            engine.config(),
            (0, 0),
            false,
        );
        snap.inline = Some(serve);
        live.publish(snap);
    };
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
            publish(&engine);
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
