//! Live state for the operator: the latest snapshot of every counter, and a bounded history
//! of the headline figures for charts. The drivers (replay, tap) publish; the HTTP service
//! (`crate::http`) reads. Nothing here touches the packet path: a snapshot is taken by the
//! driver between frames, at most once a second.

pub mod prometheus;
pub mod top;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;

use crate::report::Report;

crate::counter::counters! {
    /// What the capture layer counted (live capture only; zero on replay).
    pub struct CaptureCounters {
        /// Frames libpcap delivered to us.
        received: counter "capture_received_frames_total"
            "Frames the capture layer received (live capture only).",
        /// Dropped by the kernel because our buffer was full (pcap_stats ps_drop).
        kernel_dropped: counter "capture_dropped_frames_total" [reason = "kernel"]
            "Frames lost before the engine: kernel (buffer full), interface (NIC/driver), engine (queue full).",
        /// Dropped by the interface or driver (ps_ifdrop).
        interface_dropped: counter "capture_dropped_frames_total" [reason = "interface"]
            "Frames lost before the engine: kernel (buffer full), interface (NIC/driver), engine (queue full).",
        /// Frames we read but could not hand to the engine (queue full).
        engine_dropped: counter "capture_dropped_frames_total" [reason = "engine"]
            "Frames lost before the engine: kernel (buffer full), interface (NIC/driver), engine (queue full).",
    }
}

/// Everything the metrics endpoint and the dashboard show, at one moment.
#[derive(Clone, Debug, Serialize)]
pub struct Snapshot {
    /// "replay", "tap" or "inline".
    pub mode: String,
    /// Wall-clock seconds since the start (UNIX time of the snapshot, and of the start).
    pub unix_time: f64,
    pub started_unix: f64,
    /// What is being read: files for replay, the interface for tap.
    pub source: String,
    /// Replay progress: bytes of the input files read so far and in all.
    pub input_read_bytes: u64,
    pub input_total_bytes: u64,
    pub capture: CaptureCounters,
    /// Capacity of the piece cache when one is configured.
    pub cache_capacity_bytes: Option<u64>,
    /// Every engine counter, in the replay report's shape (schema: docs/report.md).
    pub report: Report,
    /// The run is over (replay done); the service may linger.
    pub finished: bool,
    /// Inline mode: what the splice did.
    pub inline: Option<crate::serve::ServeCounters>,
}

/// One point of the history: the figures the dashboard charts over time.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct Point {
    pub unix_time: f64,
    pub frames: u64,
    pub bytes: u64,
    pub hits: u64,
    pub misses: u64,
    pub hit_bytes: u64,
    pub miss_bytes: u64,
    pub stored_bytes: u64,
    pub pieces_verified: u64,
    pub pieces_failed: u64,
    pub bt_connections: u64,
    pub encrypted_connections: u64,
    pub drops: u64,
    /// Inline mode: block bytes served from the cache (the splice's `served_bytes`), for
    /// the dashboard's served-rate chart; None (JSON null) in the other modes, so the page
    /// can tell "not inline" from "inline, nothing served".
    pub inline_served_bytes: Option<u64>,
}

impl Point {
    pub fn of(s: &Snapshot) -> Point {
        let r = &s.report;
        let sum = |f: fn(&crate::report::SwarmReport) -> u64| r.swarms.iter().map(f).sum::<u64>();
        Point {
            unix_time: s.unix_time,
            frames: r.frames,
            bytes: r.bytes,
            hits: r.cache.hits,
            misses: r.cache.misses,
            hit_bytes: r.cache.hit_bytes,
            miss_bytes: r.cache.miss_bytes,
            stored_bytes: r.cache.stored_bytes,
            pieces_verified: sum(|s| s.pieces_verified),
            pieces_failed: sum(|s| s.pieces_failed),
            bt_connections: r.bittorrent.tcp_connections + r.bittorrent.utp_connections,
            encrypted_connections: r.bittorrent.encrypted_connections,
            drops: s.capture.kernel_dropped
                + s.capture.interface_dropped
                + s.capture.engine_dropped
                + r.decode_errors.values().sum::<u64>(),
            inline_served_bytes: s.inline.as_ref().map(|c| c.served_bytes),
        }
    }
}

/// The published state. Cheap to read from many HTTP requests at once.
pub struct Live {
    latest: RwLock<Option<Arc<Snapshot>>>,
    history: Mutex<VecDeque<Point>>,
    max_points: usize,
}

impl Live {
    /// `max_points`: history kept (one point per publish, normally one a second).
    pub fn new(max_points: usize) -> Live {
        Live {
            latest: RwLock::new(None),
            history: Mutex::new(VecDeque::new()),
            max_points: max_points.max(1),
        }
    }

    pub fn publish(&self, s: Snapshot) {
        let p = Point::of(&s);
        if let Ok(mut h) = self.history.lock() {
            if h.len() == self.max_points {
                h.pop_front();
            }
            h.push_back(p);
        }
        if let Ok(mut l) = self.latest.write() {
            *l = Some(Arc::new(s));
        }
    }

    /// None until the first publish.
    pub fn latest(&self) -> Option<Arc<Snapshot>> {
        self.latest.read().ok()?.clone()
    }

    pub fn history(&self) -> Vec<Point> {
        self.history
            .lock()
            .map(|h| h.iter().copied().collect())
            .unwrap_or_default()
    }
}
