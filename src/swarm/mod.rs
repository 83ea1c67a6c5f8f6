//! Per info-hash knowledge: the metainfo (from the wire or from .torrent files), piece
//! assembly from blocks, and verification against the hashes that chain to the info-hash.

mod assembly;
pub mod metadata;
pub mod metainfo;
pub mod pieces;
pub mod sink;
pub mod torrents;
mod verify;

use crate::wire::infohash::InfoHash;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

pub use metainfo::{Metainfo, MetainfoError, VerifiedPiece};
pub use pieces::Pieces;
pub use sink::{FlowContext, PieceSink, PurgeError};

/// Address alignment of the pieces `Pieces` builds, so the cache can hand them to the disk
/// with O_DIRECT as they are (4 KiB: the largest logical block of common devices).
pub const PIECE_ALIGN: usize = 4096;

/// Where a swarm's metainfo came from. The report names these "wire", "file", "cache",
/// "posted", "fetched" or "none".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Wire,
    File,
    /// Persisted by the piece cache in an earlier run (it came from the wire or a file then).
    Cache,
    /// Posted by an operator (`POST /api/v1/metainfo`).
    Posted,
    /// Fetched by the box from a peer of the swarm (BEP 9, `crate::fetch`).
    Fetched,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Wire => "wire",
            Source::File => "file",
            Source::Cache => "cache",
            Source::Posted => "posted",
            Source::Fetched => "fetched",
        }
    }
}

type Known = HashMap<InfoHash, (Arc<Metainfo>, Source)>;

/// Metainfo known to every worker: learnt on the wire by any of them, or loaded from files.
#[derive(Default)]
pub struct Registry {
    map: RwLock<Known>,
    /// Bumped by every insert that added a swarm: engines look at the map again only when
    /// it moved (one atomic load per frame).
    generation: AtomicU64,
}

impl Registry {
    /// Changes whenever a swarm's metainfo was added.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn get(&self, ih: &InfoHash) -> Option<(Arc<Metainfo>, Source)> {
        self.map.read().ok()?.get(ih).cloned()
    }

    /// Add; the first source wins. Returns the entry now in force.
    pub fn insert(&self, m: Metainfo, source: Source) -> Arc<Metainfo> {
        let Ok(mut map) = self.map.write() else {
            return Arc::new(m);
        };
        let gen = &self.generation;
        map.entry(m.info_hash)
            .or_insert_with(|| {
                gen.fetch_add(1, Ordering::Release);
                (Arc::new(m), source)
            })
            .0
            .clone()
    }

    pub fn len(&self) -> usize {
        self.map.read().map_or(0, |m| m.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Load every `.torrent` in `dir` once. Returns how many good files there were and one
    /// line per bad file. (tap and inline keep a [`torrents::TorrentDir`] to look again.)
    pub fn load_dir(&self, dir: &Path) -> (usize, Vec<String>) {
        let s = torrents::TorrentDir::new().scan(self, dir);
        (s.loaded.len() + s.known, s.errors)
    }
}

/// A cache without a disk: remembers which pieces verified, as if capacity were unlimited.
/// Used by replay without `--cache-dir`, so an operator still sees would-be hits.
#[derive(Default)]
#[allow(clippy::type_complexity)]
pub struct MemorySink {
    /// Verified (info-hash, index) pairs, and their bytes.
    inner: Mutex<(HashSet<(InfoHash, u32)>, u64)>,
}

impl PieceSink for MemorySink {
    fn contains(&self, ih: &InfoHash, index: u32) -> bool {
        self.inner.lock().is_ok_and(|g| g.0.contains(&(*ih, index)))
    }
    /// Keeps no bytes and serves nothing: records what assembly verified.
    fn admit(&self, _m: &Metainfo, piece: VerifiedPiece) -> bool {
        let Ok(mut g) = self.inner.lock() else {
            return false;
        };
        if g.0.insert((*piece.info_hash(), piece.index())) {
            g.1 += piece.data().len() as u64;
            return true;
        }
        false
    }
    fn touch(&self, _: &InfoHash, _: u32) {}
    fn cached_pieces(&self, ih: &InfoHash) -> u64 {
        self.inner
            .lock()
            .map_or(0, |g| g.0.iter().filter(|(h, _)| h == ih).count() as u64)
    }
    fn store_counters(&self) -> crate::stats::StoreCounters {
        let (pieces, bytes) = self
            .inner
            .lock()
            .map_or((0, 0), |g| (g.0.len() as u64, g.1));
        crate::stats::StoreCounters {
            stored_bytes: bytes,
            stored_pieces: pieces,
            ..Default::default()
        }
    }
}
