//! Blocks for the splice, from the piece store. Every piece is read through
//! `PieceStore::get`, which hashes it again against the stored metainfo, so a torn or
//! corrupted file is never served; the last pieces read stay in memory (bounded) so the
//! other blocks of a piece do not cost another read and hash.

use std::sync::{Arc, Mutex};

use lru::LruCache;

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
        }
    }

    fn piece(&self, key: PieceKey) -> Option<Arc<Vec<u8>>> {
        if let Ok(mut r) = self.recent.lock() {
            if let Some(p) = r.pieces.get(&key) {
                return Some(p.clone());
            }
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
        let Some(sink) = &self.rules else {
            return true;
        };
        let rules = sink.rules();
        let m = self.store.metainfo(info_hash);
        let d = rules.decide(&Context {
            info_hash,
            name: m.as_ref().map(|m| m.name.as_str()),
            piece_length: m.as_ref().map_or(0, |m| m.piece_length),
            total_length: m.as_ref().map_or(0, |m| m.total_length),
            index,
            flow: Some(flow),
            subscribers: u32::MAX,
            peer_proven_bad_bytes: crate::swarm::PieceSink::peer_proven_bad_bytes(
                &**sink,
                &flow.upstream,
            ),
        });
        d.action == Action::Serve && !d.waiting
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
            Some(b) if len > 0 => Lookup::Hit(b.to_vec()),
            // A request outside the piece: the remote peer would refuse it too; let it.
            _ => Lookup::Miss,
        }
    }
}
