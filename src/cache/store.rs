//! `PieceStore`: layout, fsync policy, LRU and locking are described in the module doc.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::SystemTime;

use dashmap::DashMap;

use super::disk::{
    canonical_info_hash, clear_dir, direct_io_fits, load_info, read_dir, remove_file_if_exists,
    restore_pieces, sync_dir, sync_file, write_direct,
};
use super::policy::{Access, Policy, PolicySpec};
use super::{CacheError, OpenReport, PieceKey, StoreCounters, SwarmEntry, VerifyReport};
use crate::swarm::Metainfo;
use crate::wire::infohash::InfoHash;

/// Per-key locks ordering "rename into place + index" against "unlink": enough stripes that
/// unrelated pieces rarely wait on each other.
const STRIPES: usize = 64;

/// The eviction policy (`cache.policy`): what is kept, in what order it goes, and the byte
/// total, all under one mutex.
type Held = Box<dyn Policy<PieceKey> + Send>;

/// The policy's guess of how many pieces a store holds (S3-FIFO's ghost list, TinyLFU's
/// sketch): the capacity over a typical piece (512 KiB), within bounds that keep the
/// sketch's memory small (at most 4 Mi entries: 16 MiB) and useful (at least 1024).
fn estimated_pieces(capacity: u64) -> usize {
    (capacity / (512 << 10)).clamp(1024, 4 << 20) as usize
}

#[derive(Default)]
struct Counts {
    evicted_bytes: AtomicU64,
    evicted_pieces: AtomicU64,
    inserted: AtomicU64,
    refused: AtomicU64,
    /// Verified and written, but the policy's admission declined it (its file is deleted).
    declined: AtomicU64,
    read_failures: AtomicU64,
    write_errors: AtomicU64,
    /// The last write failed, and none has succeeded since (`/healthz` says so).
    failing: AtomicBool,
}

/// Write failures as log lines: one at once, then at most one per `FAIL_LOG_EVERY` (a full
/// disk fails every write), each saying how many were not logged since.
#[derive(Default)]
struct FailLog {
    last: Option<std::time::Instant>,
    unlogged: u64,
}

const FAIL_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// One process per cache directory: an exclusive lock on `DIR/lock`, which then holds
/// the owner's pid (for the error a second process gets).
fn take_ownership(dir: &Path) -> Result<File, CacheError> {
    let path = dir.join("lock");
    let mut f = match fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
    {
        Ok(f) => f,
        // Made by another user (root ran `cache ls` on the service's cache): a lock
        // needs no write access, only the pid note does, and that is best effort.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            File::open(&path).map_err(CacheError::io("opening", &path))?
        }
        Err(e) => return Err(CacheError::io("opening", &path)(e)),
    };
    let start = std::time::Instant::now();
    loop {
        match f.try_lock() {
            Ok(()) => break,
            Err(fs::TryLockError::WouldBlock) => {
                let pid: Option<u32> = fs::read_to_string(&path)
                    .ok()
                    .and_then(|s| s.trim().parse().ok());
                // Held in this very process: a store just dropped whose lock a child
                // process forked meanwhile still shares until its exec closes it (the lock
                // belongs to the open file, which fork duplicates). That passes in moments.
                let ours = pid == Some(std::process::id());
                if ours && start.elapsed() < std::time::Duration::from_secs(2) {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    continue;
                }
                return Err(CacheError::InUse {
                    path: dir.to_owned(),
                    pid,
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(CacheError::io("locking", &path)(e)),
        }
    }
    // Best effort: the pid only makes a second process's error more useful, and a full
    // disk must not keep the box from opening its cache (to serve what it has).
    let _ = f
        .set_len(0)
        .and_then(|()| writeln!(f, "{}", std::process::id()));
    Ok(f)
}

/// A piece whose bytes are in a temp file, not yet durable nor indexed.
pub(crate) struct Staged {
    key: PieceKey,
    len: u32,
    tmp: PathBuf,
}

/// What [`PieceStore::stage_verified`] did with a piece.
pub(crate) enum Staging {
    /// Not for this store (see `insert_verified`); counted as refused.
    Refused,
    /// Indexed already (counted as a use by the policy); nothing to commit.
    Present,
    /// Written to `tmp/`; pass it to [`PieceStore::commit`].
    Staged(Staged),
}

/// Outcome of reading a piece again under its stripe lock.
enum Recheck {
    Good(Vec<u8>),
    /// Bad or missing: unindexed and deleted.
    Dropped,
    /// No longer indexed (removed or evicted meanwhile): not a failure.
    Gone,
}

pub struct PieceStore {
    v1: PathBuf,
    tmp: PathBuf,
    capacity: u64,
    /// Mirrors what `held` holds (updated under its mutex) so `contains` takes no global
    /// lock.
    index: DashMap<PieceKey, u32>,
    held: Mutex<Held>,
    policy: PolicySpec,
    metas: DashMap<InfoHash, Arc<Metainfo>>,
    stripes: Box<[Mutex<()>]>,
    /// Inserts and put_metainfo hold it shared while touching a swarm directory;
    /// remove_swarm holds it exclusively, so no write lands in a swarm being removed.
    swarm_gate: RwLock<()>,
    tmp_seq: AtomicU64,
    /// Write aligned pieces with O_DIRECT (cleared for good when the file system refuses).
    direct: AtomicBool,
    /// `tmp/` itself, open for the store's life: what `syncfs` is called on.
    tmp_fd: Option<File>,
    counts: Counts,
    fail_log: Mutex<FailLog>,
    /// The cache directory's lock, held while the store is open (released when the
    /// process ends, however it ends).
    _owner: File,
    opened: OpenReport,
}

impl PieceStore {
    /// Opens (creating if needed) the cache at `dir` under the default policy
    /// ([`PolicySpec::store_default`]); see [`Self::open_with`].
    pub fn open(dir: &Path, capacity_bytes: u64) -> Result<PieceStore, CacheError> {
        Self::open_with(dir, capacity_bytes, &PolicySpec::store_default())
    }

    /// Opens (creating if needed) the cache at `dir`, restoring its index; see the module doc
    /// for what is checked and cleaned up. The result of that is in [`Self::open_report`].
    /// `policy` decides what is evicted (and, for admission policies, what is kept at all).
    pub fn open_with(
        dir: &Path,
        capacity_bytes: u64,
        policy: &PolicySpec,
    ) -> Result<PieceStore, CacheError> {
        if !policy.store_can_run() {
            return Err(CacheError::Policy(policy.to_string()));
        }
        let existed = dir.is_dir();
        fs::create_dir_all(dir).map_err(CacheError::io("creating directory", dir))?;
        // Before anything is touched (open clears tmp/, which a running owner writes into).
        let owner = take_ownership(dir)?;
        let (v1, tmp) = (dir.join("v1"), dir.join("tmp"));
        for d in [&v1, &tmp] {
            fs::create_dir_all(d).map_err(CacheError::io("creating directory", d))?;
        }
        sync_dir(dir)?;
        if !existed {
            // Best effort: the parent may not be readable, and a lost entry for a fresh,
            // empty cache costs nothing.
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                let _ = sync_dir(parent);
            }
        }
        let mut opened = OpenReport {
            removed_tmp: clear_dir(&tmp)?,
            ..OpenReport::default()
        };
        let tmp_fd = File::open(&tmp).ok();
        let store = PieceStore {
            v1,
            tmp,
            capacity: capacity_bytes,
            index: DashMap::new(),
            held: Mutex::new(policy.build(capacity_bytes, estimated_pieces(capacity_bytes), 1)),
            policy: policy.clone(),
            metas: DashMap::new(),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            swarm_gate: RwLock::new(()),
            tmp_seq: AtomicU64::new(0),
            direct: AtomicBool::new(cfg!(target_os = "linux")),
            tmp_fd,
            counts: Counts::default(),
            fail_log: Mutex::new(FailLog::default()),
            _owner: owner,
            opened: OpenReport::default(),
        };

        let mut found: Vec<(SystemTime, PieceKey, u32)> = Vec::new();
        for entry in read_dir(&store.v1)? {
            let entry = entry.map_err(CacheError::io("reading directory", &store.v1))?;
            let Some(ih) = canonical_info_hash(&entry.file_name()) else {
                continue;
            };
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let sdir = entry.path();
            match load_info(&sdir, &ih)? {
                Some(m) => {
                    restore_pieces(&m, &sdir.join("pieces"), &mut found, &mut opened)?;
                    store.metas.insert(ih, Arc::new(m));
                }
                None => {
                    // Pieces of a swarm we cannot verify can never be served: drop them all.
                    fs::remove_dir_all(&sdir)
                        .map_err(CacheError::io("removing invalid swarm directory", &sdir))?;
                    opened.removed_invalid += 1;
                }
            }
        }

        // Oldest first, each as a fresh admission: the policy's state is rebuilt from the
        // files' last use (see the module doc). The capacity may have shrunk since the last
        // run; what no longer fits goes, oldest first.
        found.sort_unstable();
        let mut victims = Vec::new();
        {
            let mut held = lock(&store.held);
            for &(_, key, len) in &found {
                store.index.insert(key, len);
                store.admit(&mut held, key, len, &mut victims);
            }
            opened.restored_pieces = held.len() as u64;
            opened.restored_bytes = held.used();
        }
        for key in victims {
            store.unlink_evicted(&key);
        }
        Ok(PieceStore { opened, ..store })
    }

    pub fn open_report(&self) -> OpenReport {
        self.opened
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The eviction policy in use.
    pub fn policy(&self) -> &PolicySpec {
        &self.policy
    }

    /// Persists the raw info dictionary so pieces can be verified after a restart. Idempotent.
    pub fn put_metainfo(&self, m: &Metainfo) -> Result<(), CacheError> {
        if self.metas.contains_key(&m.info_hash) {
            return Ok(());
        }
        // Re-derived from the raw bytes: Metainfo's fields are public, and only what chains
        // to the info-hash is trusted here.
        let m = Metainfo::from_info_checked(&m.info, &m.info_hash).map_err(|source| {
            CacheError::Metainfo {
                info_hash: m.info_hash,
                source,
            }
        })?;
        let _gate = read(&self.swarm_gate);
        let sdir = self.swarm_dir(&m.info_hash);
        let pdir = sdir.join("pieces");
        fs::create_dir_all(&pdir).map_err(CacheError::io("creating directory", &pdir))?;
        let tmp = self.write_tmp(&m.info)?;
        if let Err(e) = sync_file(&tmp) {
            let _ = fs::remove_file(&tmp);
            let e = CacheError::io("writing", &tmp)(e);
            self.write_failed(&e);
            return Err(e);
        }
        // The swarm dir's fsync covers both new entries (pieces/, info); v1's covers the dir.
        self.place(&tmp, &sdir.join("info"), &sdir)?;
        sync_dir(&self.v1)?;
        self.metas.insert(m.info_hash, Arc::new(m));
        Ok(())
    }

    pub fn metainfo(&self, ih: &InfoHash) -> Option<Arc<Metainfo>> {
        self.metas.get(ih).map(|r| Arc::clone(r.value()))
    }

    /// Stores a piece if, and only if, it verifies against the stored metainfo. Ok(false):
    /// refused (no metainfo, wrong bytes, or larger than the whole capacity) or declined by
    /// the policy's admission. Ok(true): stored, or already present (then counted as a use).
    pub fn insert(&self, key: PieceKey, data: &[u8]) -> Result<bool, CacheError> {
        let verified = self
            .metainfo(&key.info_hash)
            .is_some_and(|m| m.verify_piece(key.index, data));
        self.store_piece(key, data, verified)
    }

    /// Insert a piece the engine has already verified. No second SHA-1: the hash the bytes
    /// matched must be the one this store's own copy of the info dictionary lists (which
    /// it re-derived from the raw dictionary), and the length must fit.
    pub fn insert_verified(&self, p: &crate::swarm::VerifiedPiece) -> Result<bool, CacheError> {
        self.commit_one(self.stage_verified(p)?)
    }

    fn store_piece(&self, key: PieceKey, data: &[u8], verified: bool) -> Result<bool, CacheError> {
        self.commit_one(self.stage(key, data, verified)?)
    }

    fn commit_one(&self, staging: Staging) -> Result<bool, CacheError> {
        match staging {
            Staging::Refused => Ok(false),
            Staging::Present => Ok(true),
            Staging::Staged(s) => self.commit(vec![s]).map(|stored| stored == 1),
        }
    }

    /// First half of [`Self::insert_verified`], same checks: the bytes go to a new file in
    /// `tmp/`, neither synced nor indexed yet. The writer thread stages a batch of pieces,
    /// then commits them together with [`Self::commit`].
    pub(crate) fn stage_verified(
        &self,
        p: &crate::swarm::VerifiedPiece,
    ) -> Result<Staging, CacheError> {
        let key = PieceKey {
            info_hash: *p.info_hash(),
            index: p.index(),
        };
        let ok = self.metainfo(&key.info_hash).is_some_and(|m| {
            m.piece_hash(key.index).as_ref() == Some(p.hash())
                && m.piece_len(key.index) == Some(p.data().len() as u32)
        });
        self.stage(key, p.data(), ok)
    }

    fn stage(&self, key: PieceKey, data: &[u8], verified: bool) -> Result<Staging, CacheError> {
        if !verified || data.len() as u64 > self.capacity {
            self.counts.refused.fetch_add(1, Relaxed);
            return Ok(Staging::Refused);
        }
        if self.index.contains_key(&key) {
            self.touch(&key);
            return Ok(Staging::Present);
        }
        let tmp = self.write_tmp(data)?;
        Ok(Staging::Staged(Staged {
            key,
            len: data.len() as u32, // the caller checked it equals piece_len (a u32)
            tmp,
        }))
    }

    /// Second half of an insert: makes a batch of staged pieces durable, then indexes them.
    /// In order: the temp files are synced (one `syncfs` for the batch, else one fsync each),
    /// all are renamed into place, each `pieces/` directory they went to is fsynced once, and
    /// only then are they indexed (so served).
    /// Returns how many of the batch are now in the store (inserted, or already present).
    /// A failure drops only the pieces it concerns (their files are removed, the error is
    /// counted and the first one returned); the rest of the batch is still committed.
    pub(crate) fn commit(&self, batch: Vec<Staged>) -> Result<usize, CacheError> {
        let mut first_err = None;
        let mut note = |e: CacheError| {
            self.write_failed(&e);
            first_err.get_or_insert(e);
        };
        // The slow part (waiting for the disk) runs before any lock is taken.
        let synced: Vec<Staged> = if batch.is_empty() || self.sync_tmp_fs() {
            batch
        } else {
            batch
                .into_iter()
                .filter_map(|s| match sync_file(&s.tmp) {
                    Ok(()) => Some(s),
                    Err(e) => {
                        let _ = fs::remove_file(&s.tmp);
                        note(CacheError::io("writing", &s.tmp)(e));
                        None
                    }
                })
                .collect()
        };
        let (mut stored, mut written) = (0, 0);
        let mut victims = Vec::new();
        {
            let _gate = read(&self.swarm_gate);
            // Every stripe of the batch, in ascending order (so no two committers deadlock),
            // from the first rename to the last index update.
            let mut ids: Vec<usize> = synced.iter().map(|s| self.stripe_id(&s.key)).collect();
            ids.sort_unstable();
            ids.dedup();
            let _stripes: Vec<_> = ids.iter().map(|&i| lock(&self.stripes[i])).collect();
            let mut placed: Vec<(PieceKey, u32, PathBuf)> = Vec::with_capacity(synced.len());
            for s in synced {
                if !self.metas.contains_key(&s.key.info_hash) {
                    // The swarm was removed while we were writing.
                    let _ = fs::remove_file(&s.tmp);
                    self.counts.refused.fetch_add(1, Relaxed);
                    continue;
                }
                if self.index.contains_key(&s.key) || placed.iter().any(|p| p.0 == s.key) {
                    // A concurrent insert (or this batch) has it already.
                    let _ = fs::remove_file(&s.tmp);
                    self.touch(&s.key);
                    stored += 1;
                    continue;
                }
                let dst = self.piece_path(&s.key);
                match fs::rename(&s.tmp, &dst) {
                    Ok(()) => placed.push((s.key, s.len, dst)),
                    Err(e) => {
                        let _ = fs::remove_file(&s.tmp);
                        note(CacheError::io("renaming into place", &dst)(e));
                    }
                }
            }
            let mut dirs: Vec<InfoHash> = placed.iter().map(|p| p.0.info_hash).collect();
            dirs.sort_unstable();
            dirs.dedup();
            for ih in dirs {
                let dir = self.pieces_dir(&ih);
                if let Err(e) = sync_dir(&dir) {
                    // Not durable, so never indexed; the files go too (best effort).
                    placed.retain(|p| {
                        let keep = p.0.info_hash != ih;
                        if !keep {
                            let _ = fs::remove_file(&p.2);
                        }
                        keep
                    });
                    note(e);
                }
            }
            // Durable: now they may be indexed, hence served, if the policy keeps them.
            let mut held = lock(&self.held);
            for (key, len, _) in placed {
                self.index.insert(key, len);
                if self.admit(&mut held, key, len, &mut victims) {
                    self.counts.inserted.fetch_add(1, Relaxed);
                    stored += 1;
                } else {
                    self.counts.declined.fetch_add(1, Relaxed);
                }
                written += 1;
            }
        }
        for victim in victims {
            self.unlink_evicted(&victim);
        }
        match first_err {
            Some(e) => Err(e),
            None => {
                if written > 0 {
                    self.write_succeeded();
                }
                Ok(stored)
            }
        }
    }

    /// Whether the last write failed and none has succeeded since.
    pub fn writes_failing(&self) -> bool {
        self.counts.failing.load(Relaxed)
    }

    /// A write (or removal) failed: counted, `failing` until one succeeds, and logged with
    /// its path and reason (rate-limited: see `FailLog`).
    fn write_failed(&self, e: &CacheError) {
        self.counts.write_errors.fetch_add(1, Relaxed);
        self.counts.failing.store(true, Relaxed);
        let mut f = lock(&self.fail_log);
        let now = std::time::Instant::now();
        if f.last
            .is_some_and(|t| now.duration_since(t) < FAIL_LOG_EVERY)
        {
            f.unlogged += 1;
            return;
        }
        let since = match std::mem::take(&mut f.unlogged) {
            0 => String::new(),
            n => format!(" ({n} more failures since the last line)"),
        };
        f.last = Some(now);
        drop(f);
        tracing::error!("cache write failed: {e}{since}");
    }

    /// A write succeeded: if writes were failing, that is over (logged).
    fn write_succeeded(&self) {
        if self.counts.failing.swap(false, Relaxed) {
            let unlogged = std::mem::take(&mut lock(&self.fail_log).unlogged);
            tracing::info!("cache writes succeed again ({unlogged} failures not logged meanwhile)");
        }
    }

    pub fn contains(&self, key: &PieceKey) -> bool {
        self.index.contains_key(key)
    }

    /// The piece, read from disk and verified again. A file that fails its hash is deleted,
    /// counted in `read_failures`, and reported as absent. A hit promotes the piece.
    pub fn get(&self, key: &PieceKey) -> Result<Option<Vec<u8>>, CacheError> {
        if !self.index.contains_key(key) {
            return Ok(None);
        }
        let data = match self.read_verified(key, true)? {
            Some(d) => d,
            None => match self.recheck_or_drop(key)? {
                Recheck::Good(d) => d,
                Recheck::Dropped | Recheck::Gone => return Ok(None),
            },
        };
        self.touch(key);
        Ok(Some(data))
    }

    /// A subscriber asked for this piece, held or not: a use for the policy (recency,
    /// frequency), without reading anything. Memory only.
    pub fn touch(&self, key: &PieceKey) {
        lock(&self.held).get(key, NO_ONE);
    }

    pub fn remove(&self, key: &PieceKey) -> Result<bool, CacheError> {
        let _stripe = lock(self.stripe(key));
        if self.unindex(key).is_none() {
            return Ok(false);
        }
        remove_file_if_exists(&self.piece_path(key))?;
        Ok(true)
    }

    /// Removes a swarm (metainfo and all its pieces); returns the piece bytes it held.
    pub fn remove_swarm(&self, ih: &InfoHash) -> Result<u64, CacheError> {
        let doomed = {
            let _gate = write(&self.swarm_gate);
            // Pieces are unindexed before the metainfo goes, so a concurrent get never sees
            // an indexed piece it cannot verify (which would count as a read failure).
            let keys: Vec<PieceKey> = self
                .index
                .iter()
                .map(|e| *e.key())
                .filter(|k| k.info_hash == *ih)
                .collect();
            let mut bytes = 0;
            {
                let mut held = lock(&self.held);
                for k in &keys {
                    if let Some(len) = held.remove(k) {
                        bytes += len;
                        self.index.remove(k);
                    }
                }
            }
            self.metas.remove(ih);
            // A rename is one quick step under the gate; the slow recursive delete runs
            // after it, from tmp/ (which open clears, should we die half-way).
            let sdir = self.swarm_dir(ih);
            let doomed = self.tmp.join(format!("{ih}-{}.removing", self.next_seq()));
            match fs::rename(&sdir, &doomed) {
                Ok(()) => sync_dir(&self.v1)?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(bytes),
                Err(e) => return Err(CacheError::io("moving swarm directory", &sdir)(e)),
            }
            (doomed, bytes)
        };
        fs::remove_dir_all(&doomed.0).map_err(CacheError::io("removing", &doomed.0))?;
        Ok(doomed.1)
    }

    /// Every swarm with metainfo in the store, sorted by info-hash. Scans the whole index.
    pub fn swarms(&self) -> Vec<SwarmEntry> {
        let mut per: HashMap<InfoHash, (u32, u64)> = HashMap::new();
        for e in self.index.iter() {
            let c = per.entry(e.key().info_hash).or_default();
            c.0 += 1;
            c.1 += u64::from(*e.value());
        }
        let mut out: Vec<SwarmEntry> = self
            .metas
            .iter()
            .map(|m| {
                let (pieces_cached, bytes) = per.get(m.key()).copied().unwrap_or_default();
                SwarmEntry {
                    info_hash: *m.key(),
                    name: m.name.clone(),
                    piece_length: m.piece_length,
                    pieces: m.num_pieces(),
                    pieces_cached,
                    bytes,
                }
            })
            .collect();
        out.sort_by_key(|e| e.info_hash);
        out
    }

    /// Indices of the stored pieces of a swarm, ascending. Scans the whole index.
    pub fn pieces(&self, ih: &InfoHash) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .index
            .iter()
            .map(|e| *e.key())
            .filter(|k| k.info_hash == *ih)
            .map(|k| k.index)
            .collect();
        v.sort_unstable();
        v
    }

    /// Reads and hashes every stored piece, removing those that fail. Does not count as a
    /// use for the policy (checking is not use).
    pub fn verify_all(&self) -> VerifyReport {
        let keys: Vec<PieceKey> = self.index.iter().map(|e| *e.key()).collect();
        let mut r = VerifyReport::default();
        for key in keys {
            let outcome = match self.read_verified(&key, false) {
                Ok(Some(_)) => Ok(Recheck::Good(Vec::new())),
                Ok(None) => self.recheck_or_drop(&key),
                Err(e) => Err(e),
            };
            match outcome {
                Ok(Recheck::Good(_)) => r.ok += 1,
                Ok(Recheck::Dropped) => r.removed += 1,
                Ok(Recheck::Gone) => continue,
                Err(_) => r.errors += 1,
            }
            r.checked += 1;
        }
        r
    }

    pub fn counters(&self) -> StoreCounters {
        let (stored_bytes, stored_pieces) = {
            let h = lock(&self.held);
            (h.used(), h.len() as u64)
        };
        let c = &self.counts;
        StoreCounters {
            stored_bytes,
            stored_pieces,
            evicted_bytes: c.evicted_bytes.load(Relaxed),
            evicted_pieces: c.evicted_pieces.load(Relaxed),
            inserted_pieces: c.inserted.load(Relaxed),
            refused_pieces: c.refused.load(Relaxed),
            declined_pieces: c.declined.load(Relaxed),
            read_failures: c.read_failures.load(Relaxed),
            write_errors: c.write_errors.load(Relaxed),
            writes_failing: u64::from(c.failing.load(Relaxed)),
        }
    }

    pub(crate) fn piece_path(&self, key: &PieceKey) -> PathBuf {
        self.pieces_dir(&key.info_hash)
            .join(format!("{:08x}", key.index))
    }

    /// Eviction order, first victim first (LRU and FIFO; empty for other policies).
    #[cfg(test)]
    pub(crate) fn lru_order(&self) -> Vec<PieceKey> {
        lock(&self.held).eviction_order()
    }

    fn swarm_dir(&self, ih: &InfoHash) -> PathBuf {
        self.v1.join(ih.to_string())
    }

    fn pieces_dir(&self, ih: &InfoHash) -> PathBuf {
        self.swarm_dir(ih).join("pieces")
    }

    fn stripe(&self, key: &PieceKey) -> &Mutex<()> {
        &self.stripes[self.stripe_id(key)]
    }

    fn stripe_id(&self, key: &PieceKey) -> usize {
        let ih = key.info_hash.as_bytes();
        let h =
            u32::from_le_bytes([ih[0], ih[1], ih[2], ih[3]]) ^ key.index.wrapping_mul(0x9E37_79B9);
        h as usize % STRIPES
    }

    fn next_seq(&self) -> u64 {
        self.tmp_seq.fetch_add(1, Relaxed)
    }

    /// A new file in tmp/ holding `data`, not yet synced.
    /// Makes the temp files of a group durable with one `syncfs(2)` on their filesystem: it
    /// writes back every dirty inode at once, so the metadata blocks several files share are
    /// written, and the disk cache flushed, once per group instead of once per file. (It
    /// also writes back whatever else is dirty on that filesystem, which is why the cache
    /// should have its own.) Since Linux 5.8 it reports write-back errors that happened since
    /// the previous call on the same descriptor, which is why `tmp_fd` is opened with the
    /// store and kept: an error in the background write-back of a staged file is not missed.
    /// false: it failed or is not available, and the caller syncs file by file, which says
    /// which ones failed.
    fn sync_tmp_fs(&self) -> bool {
        #[cfg(target_os = "linux")]
        return self
            .tmp_fd
            .as_ref()
            .is_some_and(|d| rustix::fs::syncfs(d).is_ok());
        #[cfg(not(target_os = "linux"))]
        false
    }

    /// Whether pieces whose bytes are aligned for it are written with O_DIRECT (the
    /// default on Linux): the disk reads them from the piece buffer itself, with no copy
    /// into the page cache, which a cache filling at line rate would only churn. A file
    /// system that refuses O_DIRECT turns it off by itself.
    pub fn set_direct_io(&self, on: bool) {
        self.direct.store(on && cfg!(target_os = "linux"), Relaxed);
    }

    /// The bytes to a new file in `tmp/`, closed at once (a batch may hold thousands of
    /// pieces; it is synced by file system, or reopened one by one in the fallback).
    fn write_tmp(&self, data: &[u8]) -> Result<PathBuf, CacheError> {
        let path = self
            .tmp
            .join(format!("{}-{}.part", std::process::id(), self.next_seq()));
        if self.direct.load(Relaxed) && direct_io_fits(data) {
            match write_direct(&path, data) {
                Ok(()) => return Ok(path),
                Err(e) => {
                    // EINVAL: not on this file system (tmpfs, some FUSE). Either way the
                    // buffered write below decides whether this piece fails.
                    if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) {
                        self.direct.store(false, Relaxed);
                    }
                    let _ = fs::remove_file(&path);
                }
            }
        }
        let written = File::create_new(&path).and_then(|mut f| f.write_all(data));
        match written {
            Ok(()) => Ok(path),
            Err(e) => {
                let _ = fs::remove_file(&path);
                let e = CacheError::io("writing", &path)(e);
                self.write_failed(&e);
                Err(e)
            }
        }
    }

    /// Renames `tmp` to `dst` and fsyncs `dir` (the directory holding `dst`).
    fn place(&self, tmp: &Path, dst: &Path, dir: &Path) -> Result<(), CacheError> {
        let placed = fs::rename(tmp, dst)
            .map_err(CacheError::io("renaming into place", dst))
            .and_then(|()| sync_dir(dir));
        if let Err(e) = &placed {
            let _ = fs::remove_file(tmp);
            self.write_failed(e);
        }
        placed
    }

    /// Offers an indexed, durable piece to the policy. Every piece it drops to make room
    /// is unindexed, counted and added to `victims`, whose files the caller unlinks outside
    /// the policy's lock (`unlink_evicted`). false: the policy declined `key` itself, which is
    /// unindexed and added to `victims` too, but not counted as an eviction.
    fn admit(&self, held: &mut Held, key: PieceKey, len: u32, victims: &mut Vec<PieceKey>) -> bool {
        let mut dropped = Vec::new();
        held.admit(key, u64::from(len), NO_ONE, &mut dropped);
        for k in dropped {
            if let Some((_, l)) = self.index.remove(&k) {
                if k != key {
                    self.counts.evicted_pieces.fetch_add(1, Relaxed);
                    self.counts.evicted_bytes.fetch_add(u64::from(l), Relaxed);
                }
            }
            victims.push(k);
        }
        if held.contains(&key) {
            return true;
        }
        if self.index.remove(&key).is_some() {
            victims.push(key);
        }
        false
    }

    fn unlink_evicted(&self, key: &PieceKey) {
        let _stripe = lock(self.stripe(key));
        // Re-inserted since it was popped: that file is the new copy, keep it.
        if self.index.contains_key(key) {
            return;
        }
        // An unlink that fails leaves a verifiable file behind; it is re-indexed at the next
        // open, so counting it is enough.
        let path = self.piece_path(key);
        if let Err(e) = remove_file_if_exists(&path) {
            self.write_failed(&e);
        }
    }

    fn unindex(&self, key: &PieceKey) -> Option<u32> {
        let mut held = lock(&self.held);
        let len = held.remove(key)?;
        self.index.remove(key);
        u32::try_from(len).ok()
    }

    /// Reads the piece file and returns it only if it hashes right. Ok(None): missing,
    /// unreadable, wrong length or wrong hash. Err: the file could not even be opened for a
    /// reason that says nothing about the piece (permissions, file descriptors).
    fn read_verified(
        &self,
        key: &PieceKey,
        refresh_mtime: bool,
    ) -> Result<Option<Vec<u8>>, CacheError> {
        // No metainfo, no verification, no bytes.
        let Some(meta) = self.metainfo(&key.info_hash) else {
            return Ok(None);
        };
        let Some(len) = meta.piece_len(key.index) else {
            return Ok(None);
        };
        let path = self.piece_path(key);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(CacheError::io("opening", &path)(e)),
        };
        let mut data = Vec::with_capacity(len as usize);
        // One byte past the piece, so an over-long file shows without reading all of it. A
        // read error (EIO) means the piece cannot be served: treated like corruption.
        if (&file)
            .take(u64::from(len) + 1)
            .read_to_end(&mut data)
            .is_err()
            || !meta.verify_piece(key.index, &data)
        {
            return Ok(None);
        }
        if refresh_mtime {
            // Recency for the next open's LRU order; losing it costs nothing.
            let _ = file.set_modified(SystemTime::now());
        }
        Ok(Some(data))
    }

    /// After a failed read: read again under the stripe lock (a remove + re-insert may have
    /// replaced the file since), and drop the piece if it is still bad.
    fn recheck_or_drop(&self, key: &PieceKey) -> Result<Recheck, CacheError> {
        let _stripe = lock(self.stripe(key));
        if !self.index.contains_key(key) {
            return Ok(Recheck::Gone);
        }
        if let Some(d) = self.read_verified(key, false)? {
            return Ok(Recheck::Good(d));
        }
        if self.unindex(key).is_none() {
            return Ok(Recheck::Gone);
        }
        self.counts.read_failures.fetch_add(1, Relaxed);
        remove_file_if_exists(&self.piece_path(key))?;
        Ok(Recheck::Dropped)
    }
}

/// Who asked, as the store tells its policy: nobody in particular. Only P2P-aware admission
/// reads it (subscribers per swarm), and the store does not see subscribers, which is why
/// that policy is for the simulator only (`store_can_run`); so no hash is computed per use.
const NO_ONE: Access = Access {
    swarm: 0,
    client: 0,
};

// A panic while holding one of these leaves nothing half-updated that matters more than
// staying up, so poisoning is ignored rather than spread to every worker.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read(l: &RwLock<()>) -> std::sync::RwLockReadGuard<'_, ()> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

fn write(l: &RwLock<()>) -> std::sync::RwLockWriteGuard<'_, ()> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}
