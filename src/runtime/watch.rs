//! The .torrent directory looked at again while tap or inline runs (issue 14's operator
//! intake): a file dropped in is read without a restart, and its swarm's pieces are proven
//! from then on (pieces held in quarantine are judged with the next block of that swarm).
//! A thread of its own, so a slow or network-mounted directory never holds up capture.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::swarm::torrents::TorrentDir;
use crate::swarm::Registry;

/// The watching thread; it stops (and is joined) when this is dropped.
pub struct MetainfoWatch {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Look at `dir` every `every`, going on from `seen` (what the start already read). New
/// swarms and bad files get one log line each.
pub fn watch_metainfo(
    dir: PathBuf,
    mut seen: TorrentDir,
    registry: Arc<Registry>,
    every: Duration,
) -> std::io::Result<MetainfoWatch> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name("metainfo-watch".into())
        .spawn(move || loop {
            std::thread::park_timeout(every);
            if flag.load(Ordering::Relaxed) {
                return;
            }
            let s = seen.scan(&registry, &dir);
            for (path, ih) in &s.loaded {
                tracing::info!("metainfo: {} loaded (swarm {ih})", path.display());
            }
            for e in &s.errors {
                tracing::warn!("metainfo: {e} (skipped)");
            }
        })?;
    Ok(MetainfoWatch {
        stop,
        thread: Some(thread),
    })
}

impl Drop for MetainfoWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn picks_up_a_file_dropped_in_and_stops_promptly() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Arc::new(Registry::default());
        let w = watch_metainfo(
            dir.path().to_path_buf(),
            TorrentDir::new(),
            reg.clone(),
            Duration::from_millis(20),
        )
        .unwrap();
        // A broken file beside a good one: skipped, and the good one still read.
        std::fs::write(dir.path().join("broken.torrent"), b"d4:infoi3ee").unwrap();
        let good =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps/lab-tcp-plain.torrent");
        std::fs::copy(&good, dir.path().join("good.torrent")).unwrap();
        let want = crate::swarm::Metainfo::from_torrent_file(&good)
            .unwrap()
            .info_hash;
        let t0 = Instant::now();
        while reg.is_empty() && t0.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(reg.len(), 1);
        assert!(reg.get(&want).is_some());
        drop(w);
        // dropping wakes the thread: with an hour between looks this returns at once
        // rather than hanging the test
        let w = watch_metainfo(
            dir.path().to_path_buf(),
            TorrentDir::new(),
            reg,
            Duration::from_secs(3600),
        )
        .unwrap();
        drop(w);
    }
}
