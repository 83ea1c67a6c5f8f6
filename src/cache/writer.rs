//! Cache writes off the packet path. The engine hands verified pieces to this writer thread
//! through a bounded queue and goes on (when the queue is full it waits: a replay must not
//! lose pieces). Until a queued piece is on disk it counts as cached, so would-be hits do not
//! depend on disk latency.
//!
//! The thread works in batches: it waits for one piece, then takes whatever else is queued
//! (at most the queue size, and [`MAX_BATCH`]). Each piece goes to its temp file at once and
//! its buffer is freed; then the batch is made durable together and only then indexed
//! ([`PieceStore::commit`]: one sync of the files, renames, one fsync per directory). The
//! busier the disk, the longer the queue, the larger the batches and the fewer the syncs per
//! piece; when the disk keeps up, batches are small and a piece is on disk sooner.

use std::collections::HashSet;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::store::Staging;
use super::{PieceKey, PieceStore};
use crate::swarm::{Metainfo, PieceSink, VerifiedPiece};

pub struct StoreWriter {
    store: Arc<PieceStore>,
    tx: Mutex<Option<SyncSender<VerifiedPiece>>>,
    pending: Arc<Mutex<HashSet<PieceKey>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Pieces per batch at most, whatever the queue size: each holds an open file until its batch
/// is committed.
pub const MAX_BATCH: usize = 64;

fn key_of(p: &VerifiedPiece) -> PieceKey {
    PieceKey {
        info_hash: *p.info_hash(),
        index: p.index(),
    }
}

impl StoreWriter {
    /// `queue`: pieces waiting for the disk at most (memory: queue x piece length).
    pub fn new(store: Arc<PieceStore>, queue: usize) -> StoreWriter {
        let queue = queue.max(1);
        let (tx, rx) = sync_channel::<VerifiedPiece>(queue);
        let pending: Arc<Mutex<HashSet<PieceKey>>> = Arc::default();
        let (st, pe) = (store.clone(), pending.clone());
        let most = queue.min(MAX_BATCH);
        let thread = std::thread::spawn(move || {
            let mut keys = Vec::with_capacity(most);
            let mut batch = Vec::with_capacity(most);
            while let Ok(first) = rx.recv() {
                let mut next = Some(first);
                while let Some(piece) = next.take() {
                    keys.push(key_of(&piece));
                    // Not durable yet, so not indexed: `pending` keeps it counted as cached.
                    if let Ok(Staging::Staged(s)) = st.stage_verified(&piece) {
                        batch.push(s);
                    }
                    drop(piece);
                    if keys.len() < most {
                        next = rx.try_recv().ok();
                    }
                }
                // Durable, then indexed. Errors are counted by the store; such pieces are
                // simply not cached.
                let _ = st.commit(std::mem::take(&mut batch));
                if let Ok(mut p) = pe.lock() {
                    for k in keys.drain(..) {
                        p.remove(&k);
                    }
                }
            }
        });
        StoreWriter {
            store,
            tx: Mutex::new(Some(tx)),
            pending,
            thread: Mutex::new(Some(thread)),
        }
    }

    pub fn store(&self) -> &Arc<PieceStore> {
        &self.store
    }
}

impl PieceSink for StoreWriter {
    fn contains(&self, info_hash: &[u8; 20], index: u32) -> bool {
        let key = PieceKey {
            info_hash: *info_hash,
            index,
        };
        self.store.contains(&key) || self.pending.lock().is_ok_and(|p| p.contains(&key))
    }

    fn admit(&self, m: &Metainfo, piece: VerifiedPiece) -> bool {
        if self.store.metainfo(&m.info_hash).is_none() && self.store.put_metainfo(m).is_err() {
            return false;
        }
        let Ok(tx) = self.tx.lock().map(|t| t.clone()) else {
            return false;
        };
        let Some(tx) = tx else { return false };
        if let Ok(mut p) = self.pending.lock() {
            p.insert(key_of(&piece));
        }
        tx.send(piece).is_ok()
    }

    fn touch(&self, info_hash: &[u8; 20], index: u32) {
        PieceSink::touch(&*self.store, info_hash, index)
    }

    fn learn(&self, m: &Metainfo) {
        let _ = self.store.put_metainfo(m);
    }

    fn cached_pieces(&self, info_hash: &[u8; 20]) -> u64 {
        PieceSink::cached_pieces(&*self.store, info_hash)
    }

    fn stored_bytes(&self) -> (u64, u64) {
        PieceSink::stored_bytes(&*self.store)
    }

    /// Pieces still queued may land after this; rules refuse new ones of a purged swarm.
    fn purge(&self, info_hash: &[u8; 20]) -> Result<u64, crate::swarm::pieces::PurgeError> {
        PieceSink::purge(&*self.store, info_hash)
    }

    /// Close the queue and wait for the writer to store everything in it.
    fn flush(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

impl Drop for StoreWriter {
    fn drop(&mut self) {
        self.flush();
    }
}
