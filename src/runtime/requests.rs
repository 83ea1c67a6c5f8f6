//! `--requests-out FILE`: every subscriber REQUEST the box saw, written as a request trace
//! (`sim::trace`, docs/sim.md) that all engines (workers) of a mode share.
//!
//! Memory is bounded: the writer keeps the ids it handed out (one per swarm and per
//! client) and one buffer of about 64 KiB; everything else goes to the file as it comes. A
//! write error does not stop the engine: it is logged once with the path, the trace stops
//! there, and what is lost from then on is counted.

use std::fs::File;
use std::io::{self, BufWriter};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::sim::trace::TraceWriter;
use crate::stats::RequestsOutCounters;
use crate::wire::infohash::InfoHash;

/// One subscriber REQUEST, as the engine hands it over.
#[derive(Clone, Copy, Debug)]
pub struct SeenRequest {
    /// Packet time of the frame that completed the REQUEST, microseconds.
    pub time_us: u64,
    pub info_hash: InfoHash,
    /// From the metainfo, 0 when the swarm's metainfo is unknown.
    pub piece_length: u32,
    pub total_length: u64,
    pub client: IpAddr,
    pub piece: u32,
    pub begin: u32,
    pub length: u32,
}

/// The shared request trace.
pub struct RequestLog {
    path: PathBuf,
    /// None once finished or failed.
    writer: Mutex<Option<TraceWriter<BufWriter<File>>>>,
    written: AtomicU64,
    skipped_unknown_swarm: AtomicU64,
    skipped_closed: AtomicU64,
    write_errors: AtomicU64,
}

impl RequestLog {
    /// Create (truncate) `path` and write the trace header.
    pub fn create(path: &Path) -> io::Result<RequestLog> {
        let f = File::create(path)?;
        let w = TraceWriter::new(BufWriter::new(f))?;
        Ok(RequestLog {
            path: path.to_owned(),
            writer: Mutex::new(Some(w)),
            written: AtomicU64::new(0),
            skipped_unknown_swarm: AtomicU64::new(0),
            skipped_closed: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One subscriber REQUEST of a known swarm.
    pub fn request(&self, r: &SeenRequest) {
        let mut g = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let Some(w) = g.as_mut() else {
            // Failed (or already closed): lost, counted.
            self.skipped_closed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let res = w.request(
            r.time_us,
            &r.info_hash,
            r.piece_length,
            r.total_length,
            r.client,
            r.piece,
            r.begin,
            r.length,
        );
        match res {
            Ok(()) => {
                self.written.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                *g = None;
                self.skipped_closed.fetch_add(1, Ordering::Relaxed);
                self.fail(&e);
            }
        }
    }

    /// A subscriber REQUEST on a connection whose info-hash was never seen (picked up
    /// mid-stream): it cannot be written.
    pub fn skipped_unknown_swarm(&self) {
        self.skipped_unknown_swarm.fetch_add(1, Ordering::Relaxed);
    }

    fn fail(&self, e: &io::Error) {
        self.write_errors.fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            "--requests-out {}: {e}; no more requests are written (the trace ends at the last complete write)",
            self.path.display()
        );
    }

    /// Write out what is buffered and close the file (end of a replay, SIGTERM in tap and
    /// inline). Requests handed in afterwards are counted as skipped. Idempotent.
    pub fn finish(&self) {
        let mut g = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = g.take() {
            let res = w
                .finish()
                .and_then(|b| b.into_inner().map_err(|e| e.into_error()))
                .map(drop);
            if let Err(e) = res {
                self.fail(&e);
            }
        }
    }

    pub fn counters(&self) -> RequestsOutCounters {
        RequestsOutCounters {
            written: self.written.load(Ordering::Relaxed),
            skipped_unknown_swarm: self.skipped_unknown_swarm.load(Ordering::Relaxed),
            skipped_closed: self.skipped_closed.load(Ordering::Relaxed),
            write_errors: self.write_errors.load(Ordering::Relaxed),
        }
    }
}

impl Drop for RequestLog {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::trace::{Item, TraceReader};

    fn req(t: u64, piece: u32) -> SeenRequest {
        SeenRequest {
            time_us: t,
            info_hash: InfoHash::new([7; 20]),
            piece_length: 1 << 16,
            total_length: 1 << 20,
            client: "198.18.0.2".parse().unwrap(),
            piece,
            begin: 16384,
            length: 16384,
        }
    }

    #[test]
    fn writes_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.trace");
        let log = RequestLog::create(&p).unwrap();
        log.request(&req(1_000_000, 3));
        log.request(&req(1_000_250, 4));
        log.skipped_unknown_swarm();
        log.finish();
        log.request(&req(1_000_300, 5));
        let c = log.counters();
        let got = (
            c.written,
            c.skipped_unknown_swarm,
            c.skipped_closed,
            c.write_errors,
        );
        assert_eq!(got, (2, 1, 1, 0));
        let mut r = TraceReader::new(std::io::BufReader::new(File::open(&p).unwrap())).unwrap();
        let mut got = Vec::new();
        while let Some(i) = r.next_item().unwrap() {
            if let Item::Request(q) = i {
                got.push((q.time_us, q.piece, q.begin, q.length));
            }
        }
        assert_eq!(got, vec![(0, 3, 16384, 16384), (250, 4, 16384, 16384)]);
    }

    /// A full disk: logged once, counted, the engine goes on.
    #[test]
    fn write_error_stops_writing_and_counts() {
        let p = Path::new("/dev/full");
        if !p.exists() {
            return;
        }
        let log = RequestLog::create(p).unwrap();
        // Enough to overflow the writer's buffer (about 60 KiB) and hit the device.
        for i in 0..20_000 {
            log.request(&req(i, i as u32));
        }
        log.finish();
        let c = log.counters();
        assert_eq!(c.write_errors, 1, "{c:?}");
        assert_eq!(c.written + c.skipped_closed, 20_000, "{c:?}");
        assert!(c.skipped_closed > 0, "{c:?}");
    }

    /// A failure only at the end (everything fit the buffer): still a write error.
    #[test]
    fn write_error_at_finish_counts() {
        let p = Path::new("/dev/full");
        if !p.exists() {
            return;
        }
        let log = RequestLog::create(p).unwrap();
        log.request(&req(0, 1));
        log.finish();
        let c = log.counters();
        assert_eq!((c.written, c.write_errors), (1, 1), "{c:?}");
    }
}
