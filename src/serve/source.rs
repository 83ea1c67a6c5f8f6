//! Blocks for the splice, from the piece store. Every piece is read through
//! `PieceStore::get`, which hashes it again against the stored metainfo, so a torn or
//! corrupted file is never served; the last pieces read stay in memory (bounded) so the
//! other blocks of a piece do not cost another read and hash.

use std::sync::{Arc, Mutex};

use lru::LruCache;

use super::ledger::{Route, ServedLedger};
use super::{BlockSource, Lookup};
use crate::cache::{PieceKey, PieceStore};
use crate::rules::{Action, Context, RulesSink};
use crate::swarm::pieces::FlowContext;
use crate::wire::infohash::InfoHash;
use crate::wire::peerwire::BlockRef;

pub struct StoreBlocks {
    store: Arc<PieceStore>,
    rules: Option<Arc<RulesSink>>,
    recent: Mutex<Recent>,
    ledger: Arc<ServedLedger>,
}

/// What the policy says about serving a swarm's piece to someone outside a peer
/// connection (the content listener).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    Serve,
    /// A `block` rule: a takedown (HTTP 451).
    Blocked,
    /// Cached but not to be served (`cache`, `observe`, `ignore`, or `min_subscribers`
    /// not reached yet).
    NotServed,
}

struct Recent {
    pieces: LruCache<PieceKey, Arc<Vec<u8>>>,
    bytes: usize,
    max_bytes: usize,
}

impl StoreBlocks {
    /// `memory_bytes`: verified pieces kept in memory at most.
    pub fn new(
        store: Arc<PieceStore>,
        rules: Option<Arc<RulesSink>>,
        memory_bytes: usize,
    ) -> StoreBlocks {
        StoreBlocks {
            store,
            rules,
            recent: Mutex::new(Recent {
                pieces: LruCache::unbounded(),
                bytes: 0,
                max_bytes: memory_bytes,
            }),
            ledger: Arc::default(),
        }
    }

    /// Count what is served into `ledger` (shared with the other routes).
    pub fn with_ledger(mut self, ledger: Arc<ServedLedger>) -> StoreBlocks {
        self.ledger = ledger;
        self
    }

    pub fn ledger(&self) -> &Arc<ServedLedger> {
        &self.ledger
    }

    pub fn store(&self) -> &Arc<PieceStore> {
        &self.store
    }

    /// The piece if it is among those kept in memory (verified when read): no I/O, so an
    /// async caller can try this before handing the read to a blocking thread.
    pub fn piece_in_memory(&self, key: &PieceKey) -> Option<Arc<Vec<u8>>> {
        self.recent.lock().ok()?.pieces.get(key).cloned()
    }

    /// The verified piece: from memory, or read from disk and hashed again (then kept in
    /// memory). None when absent, or when the file failed its hash (it is then dropped).
    /// Blocking.
    pub fn piece(&self, key: PieceKey) -> Option<Arc<Vec<u8>>> {
        if let Some(p) = self.piece_in_memory(&key) {
            return Some(p);
        }
        let data = Arc::new(self.store.get(&key).ok()??);
        if let Ok(mut r) = self.recent.lock() {
            r.bytes += data.len();
            r.pieces.put(key, data.clone());
            while r.bytes > r.max_bytes {
                match r.pieces.pop_lru() {
                    Some((_, p)) => r.bytes -= p.len(),
                    None => break,
                }
            }
        }
        Some(data)
    }

    /// Whether the policy lets this swarm be served (no rules file: everything cached is).
    fn allowed(&self, info_hash: &InfoHash, index: u32, flow: &FlowContext) -> bool {
        self.policy(info_hash, index, Some(flow)) == Policy::Serve
    }

    /// The policy's word on serving piece `index`; `flow` is the peer connection asking,
    /// None for HTTP (rules that need a flow do not match it).
    pub fn policy(&self, info_hash: &InfoHash, index: u32, flow: Option<&FlowContext>) -> Policy {
        let Some(sink) = &self.rules else {
            return Policy::Serve;
        };
        let rules = sink.rules();
        let m = self.store.metainfo(info_hash);
        let d = rules.decide(&Context {
            info_hash,
            name: m.as_ref().map(|m| m.name.as_str()),
            piece_length: m.as_ref().map_or(0, |m| m.piece_length),
            total_length: m.as_ref().map_or(0, |m| m.total_length),
            index,
            flow,
            subscribers: u32::MAX,
            peer_proven_bad_bytes: flow.map_or(0, |f| {
                crate::swarm::PieceSink::peer_proven_bad_bytes(&**sink, &f.upstream)
            }),
        });
        match d.action {
            Action::Serve if !d.waiting => Policy::Serve,
            Action::Block => Policy::Blocked,
            _ => Policy::NotServed,
        }
    }
}

impl BlockSource for StoreBlocks {
    fn lookup(&self, info_hash: &[u8; 20], block: BlockRef, flow: &FlowContext) -> Lookup {
        // The splice still names swarms by their bytes; the store and rules by InfoHash.
        let info_hash = &InfoHash::from(*info_hash);
        let key = PieceKey {
            info_hash: *info_hash,
            index: block.index,
        };
        if !self.store.contains(&key) {
            return Lookup::Miss;
        }
        if !self.allowed(info_hash, block.index, flow) {
            return Lookup::Refused;
        }
        let Some(piece) = self.piece(key) else {
            return Lookup::Miss;
        };
        let (begin, len) = (block.begin as usize, block.length as usize);
        match piece.get(begin..begin.saturating_add(len)) {
            Some(b) if len > 0 => {
                self.ledger.record(info_hash, Route::Inline, b.len() as u64);
                Lookup::Hit(b.to_vec())
            }
            // A request outside the piece: the remote peer would refuse it too; let it.
            _ => Lookup::Miss,
        }
    }
}
