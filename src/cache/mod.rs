//! The piece store: verified pieces on disk, keyed by (info-hash, piece index), within a
//! byte budget kept by an eviction policy (`cache.policy`). It is the only place bytes are kept for serving or export, so it enforces
//! Invariant 1 itself: a piece is admitted only if it hashes to the SHA-1 listed for it in an
//! info dictionary the store holds (and which hashes to the info-hash), and it is hashed again
//! on every read. It never trusts its caller nor its disk.
//!
//! # On-disk layout
//!
//! ```text
//! <dir>/v1/<info-hash as 40 lowercase hex>/info            raw info dictionary (bencoded)
//! <dir>/v1/<info-hash>/pieces/<index as 8 lowercase hex>   piece bytes, exactly piece_len(index)
//! <dir>/tmp/                                               in-flight writes, deleted at open
//! ```
//!
//! The `v1` level leaves room for a later layout (v2 merkle pieces) next to this one. Entries
//! whose names are not in the canonical form above are not ours and are left alone.
//!
//! # Crash safety (fsync policy)
//!
//! A piece is written to a fresh file in `tmp/`, made durable, renamed into `pieces/`, and the
//! `pieces/` directory is `fsync`ed; only then is it indexed (and so served). The writer
//! threads do this by group ([`StoreWriter`], group commit): each piece is written to its temp
//! file as it comes (with O_DIRECT when it is aligned for it, see `write_tmp`), and a group
//! of up to `cache.commit_bytes`, or `cache.commit_interval_ms` old, is then committed
//! together: one `syncfs(2)` on the cache's filesystem (if it fails, or off Linux, one
//! `fsync` per file, so a failure drops only its own piece), then all renames, then one
//! `fsync` per `pieces/` directory involved, then all of them indexed. The info file goes the
//! same way (alone, with `fsync`), and the directories created for a new swarm are fsynced up
//! to `v1/`. After `kill -9` or a power cut, every piece that was indexed is therefore on
//! disk whole; anything half-written is a temp file, deleted at the next open. Deletions
//! (eviction, removal) are not fsynced: after a power cut a deleted piece may reappear, which
//! costs space, never correctness, since it is verified like any other.
//!
//! `syncfs` writes back everything dirty on the filesystem, not only the cache's files: give
//! the cache a filesystem of its own, or other writers' data lengthens its commits (never
//! the packet path, which only waits when the queue is full). It reports write-back errors
//! since Linux 5.8; on an older kernel a failed write-back could go unnoticed, and such a
//! piece would then fail its SHA-1 on the next read and be dropped, never served.
//!
//! Open does not re-hash pieces (that would take hours on a multi-terabyte cache): it checks
//! that each info file hashes to its directory name (else the whole swarm directory is
//! removed, since none of its pieces can be verified) and that each piece file has the exact
//! length of its piece (else the file is dropped). Full SHA-1 verification happens on every
//! [`PieceStore::get`] (a mismatch deletes the file and counts a read failure) and in
//! [`PieceStore::verify_all`].
//!
//! # The policy across restarts
//!
//! What is kept and what goes is decided by `cache.policy` (`policy`, the code the
//! simulator replays; LRU, FIFO, S3-FIFO, TinyLFU or GDSF), whose state lives in memory. At
//! open it is rebuilt from file modification times: every piece is offered to the policy
//! again, oldest first (ties by key), as a fresh admission. Files get their mtime when
//! written, and [`PieceStore::get`] refreshes it (best effort, not fsynced);
//! [`PieceStore::touch`] only tells the policy, since it is called for every subscriber
//! REQUEST on the hot path. So after a restart, recency is approximately "last written or
//! read", exact for LRU's order; frequencies (S3-FIFO's and GDSF's hit counts, TinyLFU's
//! sketch) start again from zero and are relearnt from the traffic. That approximation is
//! sound: it changes which pieces go first, never the byte bound or what is verified.
//!
//! # Concurrency
//!
//! The store is `Send + Sync` and shared by engine workers. `contains` is a dashmap lookup.
//! The policy (with the byte total) sits under one mutex held only for in-memory updates. File
//! I/O runs outside it; a per-key stripe lock orders "rename into place + index" against
//! "unlink an evicted or corrupt file", so a re-insert racing an eviction never loses its
//! file. `remove_swarm` excludes in-flight inserts of any swarm for its short duration.
//!
//! One process per cache directory: open deletes `tmp/`, which would break another live
//! process writing there. (The `cache` CLI commands are for a cache no daemon is using.)
//!
//! # Testing crash safety (kill -9)
//!
//! Run a child that inserts pieces (e.g. `peercache replay --cache-dir D trace.pcap`), kill it
//! with SIGKILL at random points mid-run, then `PieceStore::open(D, ..)`: open must succeed,
//! and `verify_all()` must report `removed == 0` (every indexed piece was whole, and torn
//! writes only ever exist as temp files, which open deletes: see `OpenReport::removed_tmp`).
//! Power loss cannot be simulated that way; the fsync policy above is what covers it.

pub mod cli;
mod disk;
pub mod policy;
mod store;
#[cfg(test)]
mod tests;
mod writer;

use std::path::PathBuf;

use serde::Serialize;
use thiserror::Error;

use crate::swarm::MetainfoError;
use crate::wire::infohash::{InfoHash, InfoHashError};

pub use store::PieceStore;
pub use writer::{CommitPolicy, StoreWriter};

/// One piece of one swarm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PieceKey {
    pub info_hash: InfoHash,
    pub index: u32,
}

#[derive(Debug, Error)]
pub enum CacheError {
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cache directory {} does not exist", path.display())]
    NoCacheDir { path: PathBuf },
    #[error("{} is not a directory (a cache is one)", path.display())]
    NotADir { path: PathBuf },
    #[error("no cache directory: give --cache-dir DIR, or --config FILE with cache.dir")]
    NoDirGiven,
    #[error("{} is not a peercache cache directory (no v1/ inside)", path.display())]
    NotACache { path: PathBuf },
    #[error("cache directory {} is in use by {} (one process per cache: stop it first)", path.display(), holder(*pid))]
    InUse { path: PathBuf, pid: Option<u32> },
    #[error("info-hash must be 40 hex digits, got {0:?}")]
    BadInfoHash(String),
    #[error("metainfo for {info_hash} is inconsistent: {source}")]
    Metainfo {
        info_hash: InfoHash,
        #[source]
        source: MetainfoError,
    },
    #[error("encoding JSON for stdout: {0}")]
    Json(#[from] serde_json::Error),
    #[error("torrent {}: {msg}", path.display())]
    Torrent { path: PathBuf, msg: String },
    #[error("the torrent names a file {0:?}, which is not a safe path component")]
    UnsafeName(String),
    #[error("policy {0}: P2P-aware admission counts the subscribers of each swarm, which the store does not see; it is for `sim run` (the store runs lru, fifo, s3fifo, tinylfu, gdsf)")]
    Policy(String),
}

fn holder(pid: Option<u32>) -> String {
    match pid {
        Some(p) => format!("peercache pid {p}"),
        None => "another peercache".into(),
    }
}

impl CacheError {
    fn io(what: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| CacheError::Io { what, path, source }
    }
}

/// Running totals since open (stored_* are the current contents); declared in `stats`.
pub use crate::stats::StoreCounters;

/// What open found on disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OpenReport {
    /// Pieces indexed from disk (before any eviction down to a smaller capacity, which is
    /// counted in `StoreCounters::evicted_*`).
    pub restored_pieces: u64,
    pub restored_bytes: u64,
    /// Swarm directories removed: info file missing, unparsable, or not hashing to the name.
    pub removed_invalid: u64,
    /// Piece files removed: wrong length for their piece, or an index past the torrent's end.
    pub dropped_pieces: u64,
    /// Leftover temp files (interrupted writes) deleted.
    pub removed_tmp: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub checked: u64,
    pub ok: u64,
    /// Failed their hash (or were unreadable or missing): deleted and unindexed.
    pub removed: u64,
    /// Could not be opened for a reason unrelated to their content (permissions, file
    /// descriptors): left in place, checked again next time.
    pub errors: u64,
}

/// One swarm as `cache ls --json` prints it: these field names are a stable schema.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SwarmEntry {
    /// Serialized as 40 lowercase hex digits.
    pub info_hash: InfoHash,
    pub name: String,
    pub piece_length: u64,
    /// Pieces in the torrent.
    pub pieces: u32,
    pub pieces_cached: u32,
    pub bytes: u64,
}

/// Text that does not parse as an info-hash, as the CLI reports it.
impl From<InfoHashError> for CacheError {
    fn from(e: InfoHashError) -> CacheError {
        CacheError::BadInfoHash(e.0)
    }
}

/// The engine's view of the store. `admit` goes through `insert`, which re-verifies the
/// piece against the stored info dictionary: the store trusts no caller.
impl crate::swarm::PieceSink for PieceStore {
    fn contains(&self, info_hash: &InfoHash, index: u32) -> bool {
        PieceStore::contains(
            self,
            &PieceKey {
                info_hash: *info_hash,
                index,
            },
        )
    }

    fn admit(&self, m: &crate::swarm::Metainfo, piece: crate::swarm::VerifiedPiece) -> bool {
        if self.metainfo(&m.info_hash).is_none() && self.put_metainfo(m).is_err() {
            return false;
        }
        // I/O errors are counted by the store (write_errors); the piece is simply not cached.
        self.insert_verified(&piece).unwrap_or(false)
    }

    fn touch(&self, info_hash: &InfoHash, index: u32) {
        PieceStore::touch(
            self,
            &PieceKey {
                info_hash: *info_hash,
                index,
            },
        )
    }

    fn learn(&self, m: &crate::swarm::Metainfo) {
        let _ = self.put_metainfo(m);
    }

    fn cached_pieces(&self, info_hash: &InfoHash) -> u64 {
        self.pieces(info_hash).len() as u64
    }

    fn store_counters(&self) -> StoreCounters {
        self.counters()
    }

    fn purge(&self, info_hash: &InfoHash) -> Result<u64, crate::swarm::pieces::PurgeError> {
        self.remove_swarm(info_hash)
            .map_err(|e| crate::swarm::pieces::PurgeError(e.to_string()))
    }
}
