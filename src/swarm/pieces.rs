//! Block -> piece assembly and verification. Blocks arrive from PIECE messages in either
//! direction of any connection of a swarm. Copies of the same range with different bytes are
//! kept apart until the piece hash decides which is right; a piece that fails its hash goes
//! back to assembly and its search goes on with later copies (see `assembly`), within a
//! hash budget per piece. Senders of copies differing from the verified bytes are proven
//! bad; copies arriving after the verdict are compared with the verified blocks' digests.
//! Blocks of swarms whose metainfo is not known yet wait in a bounded quarantine.
//!
//! Memory: every held block is charged to one budget per worker (`max_assembly_bytes`);
//! when it is full the oldest incomplete piece is dropped (counted). Quarantine has its own,
//! smaller cap.
//!
//! Hashing may run on a thread of its own ([`Pieces::verify_on_thread`]), pipelined with
//! parsing: a complete piece leaves assembly for the hash thread, and its verdict (counters,
//! admission to the sink) takes effect only at points the packet stream decides, in the
//! order the pieces completed: when the bytes in flight pass their cap, and before
//! anything whose answer the verdict could change (a block or would-be hit of that piece,
//! a REQUEST the sink's rules watch, the end of input). So a replay gives the same results
//! on every run and with hashing on the engine thread.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use super::assembly::{block_digest, judge, sender_tag, Added, Assembly, Verdict, VerifiedBlock};
use super::verify::Worker;
use super::Metainfo;
use crate::wire::infohash::InfoHash;

// The sink's types, where they were before `sink.rs` took them.
pub use super::sink::{FlowContext, PieceSink, PurgeError};

pub use crate::stats::PieceCounters;

type Key = (InfoHash, u32);

/// Per-worker assembly state for all swarms.
pub struct Pieces {
    open: HashMap<Key, Assembly>,
    /// Eviction order: oldest first. Quarantined pieces are also listed in `q_order`.
    order: BTreeMap<u64, Key>,
    q_order: BTreeMap<u64, Key>,
    next_seq: u64,
    held: usize,
    max_bytes: usize,
    quarantine_max: usize,
    quarantined: usize,
    /// Swarms with quarantined pieces here: when their metainfo shows up (possibly learnt
    /// by another worker) the quarantine is released on the next block.
    q_swarms: std::collections::HashSet<InfoHash>,
    /// Pieces known good in this run (so later copies are not re-assembled), as bitsets.
    done: HashMap<InfoHash, Vec<u64>>,
    /// Pieces that verified but that the sink asked to see again (policy rules waiting for
    /// popularity): counted as verified once, assembled again from later copies.
    retry: std::collections::HashSet<Key>,
    /// Cap of `retry` (`swarms.max_retry_pieces`; the engine sets it).
    pub max_retry: usize,
    /// Different copies of one block start kept (`swarms.max_block_copies`; the engine
    /// sets it).
    pub max_copies: usize,
    /// Hashes one piece's search may spend (`swarms.max_hash_attempts_per_piece`).
    pub max_attempts: u32,
    /// Bytes of alternative copies held over all pieces (`swarms.max_alternative_bytes`).
    pub max_alt_bytes: usize,
    alt_held: usize,
    /// Verified pieces' block digests, to judge copies that arrive after the verdict
    /// (`swarms.max_blame_pieces` pieces; then forgotten, counted).
    blame: HashMap<Key, Vec<VerifiedBlock>>,
    pub max_blame_pieces: usize,
    blame_seed: u64,
    pub counters: HashMap<InfoHash, PieceCounters>,
    /// The hash thread, when there is one, and the bytes it may hold.
    worker: Option<Worker<Job, Judged>>,
    ahead_max: usize,
    /// Threads to start with the first complete piece (0: none, or started already).
    hash_threads: usize,
    /// Pieces in flight per swarm, so settling is a look-up when a swarm has none.
    /// Per swarm: pieces in flight, and the serial of the newest.
    judging: HashMap<InfoHash, (u32, u64)>,
    /// Serial of the newest job in flight for each piece, so settling a piece is a look-up
    /// (never a scan of what is in flight), and the serials given and taken so far
    /// (results come back in the order given).
    in_flight: HashMap<Key, u64>,
    submitted: u64,
    taken: u64,
}

impl Pieces {
    pub fn new(max_bytes: usize, quarantine_max: usize) -> Self {
        Pieces {
            open: HashMap::new(),
            order: BTreeMap::new(),
            q_order: BTreeMap::new(),
            next_seq: 0,
            held: 0,
            max_bytes,
            quarantine_max,
            quarantined: 0,
            q_swarms: Default::default(),
            done: HashMap::new(),
            retry: Default::default(),
            max_retry: usize::MAX,
            max_copies: usize::MAX,
            max_attempts: 64,
            max_alt_bytes: usize::MAX,
            alt_held: 0,
            blame: HashMap::new(),
            max_blame_pieces: 65_536,
            blame_seed: fastrand::u64(..),
            counters: HashMap::new(),
            worker: None,
            ahead_max: 0,
            hash_threads: 0,
            judging: HashMap::new(),
            in_flight: HashMap::new(),
            submitted: 0,
            taken: 0,
        }
    }

    fn is_done(&self, ih: &InfoHash, index: u32) -> bool {
        self.done
            .get(ih)
            .and_then(|b| b.get(index as usize / 64))
            .is_some_and(|w| w & (1 << (index % 64)) != 0)
    }

    fn mark_done(&mut self, ih: InfoHash, index: u32, num_pieces: u32) {
        let bits = self
            .done
            .entry(ih)
            .or_insert_with(|| vec![0; (num_pieces as usize).div_ceil(64)]);
        if let Some(w) = bits.get_mut(index as usize / 64) {
            *w |= 1 << (index % 64);
        }
    }

    /// A complete block of swarm `ih` from `from`. `meta` is its metainfo when known.
    /// An owned buffer is kept as it is (no copy on the packet path).
    #[allow(clippy::too_many_arguments)]
    pub fn block(
        &mut self,
        ih: InfoHash,
        meta: Option<&Arc<Metainfo>>,
        index: u32,
        begin: u32,
        data: impl Into<Vec<u8>>,
        from: SocketAddr,
        sink: &dyn PieceSink,
    ) {
        let data: Vec<u8> = data.into();
        // A copy of a piece being verified: as if the verdict had come first.
        self.settle_piece(&ih, index, sink);
        if let Some(m) = meta {
            // Metainfo learnt elsewhere (another worker, a later file): release this
            // swarm's quarantine before anything else is charged to it.
            if self.q_swarms.contains(&ih) {
                self.metainfo_arrived(m, sink);
            }
            let Some(len) = m.piece_len(index) else {
                return;
            };
            if begin as u64 + data.len() as u64 > len as u64 {
                return; // Outside its piece: no valid piece contains it.
            }
            if self.is_done(&ih, index) || sink.contains(&ih, index) {
                self.late_copy(&ih, index, begin, &data, from, sink);
                return;
            }
        }
        let key = (ih, index);
        let quarantine = meta.is_none();
        if quarantine {
            while self.quarantined + data.len() > self.quarantine_max && self.evict_oldest(true) {}
            if self.quarantined + data.len() > self.quarantine_max {
                self.counters
                    .entry(ih)
                    .or_default()
                    .quarantine_evicted_bytes += data.len() as u64;
                return;
            }
        }
        while self.held + data.len() > self.max_bytes && self.evict_oldest(false) {}
        if self.held + data.len() > self.max_bytes {
            return;
        }
        if !self.open.contains_key(&key) {
            let seq = self.next_seq;
            self.next_seq += 1;
            self.order.insert(seq, key);
            if quarantine {
                self.q_order.insert(seq, key);
            }
            self.open.insert(key, Assembly::new(seq, quarantine));
        }
        let Some(a) = self.open.get_mut(&key) else {
            return;
        };
        let n = data.len();
        let room = self.max_alt_bytes.saturating_sub(self.alt_held);
        let alt0 = a.alt_bytes;
        let added = a.add(begin, data, from, self.max_copies, |len| len <= room);
        self.alt_held += a.alt_bytes - alt0;
        match added {
            Added::Full => self.counters.entry(ih).or_default().copies_overflow += 1,
            Added::NoRoom => self.counters.entry(ih).or_default().alternatives_overflow += 1,
            Added::Yes => {
                self.held += n;
                if a.quarantined {
                    self.q_swarms.insert(ih);
                    self.quarantined += n;
                    self.counters.entry(ih).or_default().quarantined_bytes += n as u64;
                }
            }
            Added::NewSender | Added::Duplicate => {}
        }
        // Only new bytes, or a sender who may now hold a whole set, can change a verdict.
        if matches!(added, Added::Yes | Added::NewSender) {
            if let Some(m) = meta {
                self.try_complete(m, index, sink);
            }
        }
    }

    /// What a block about to arrive needs, asked at its PIECE header so that a copy of a
    /// block already verified in this run is never copied (a repeat-heavy link carries
    /// mostly such copies): see [`Late`].
    pub fn late_block(
        &self,
        ih: &InfoHash,
        index: u32,
        begin: u32,
        len: u32,
        from: &SocketAddr,
    ) -> Late {
        if !self.is_done(ih, index) {
            Late::No
        } else if self.judges(ih, index, begin, len, from) {
            Late::Digest(self.blame_seed)
        } else {
            Late::Ignore
        }
    }

    /// Whether a copy of block (`begin`, `len`) of a piece verified in this run, from
    /// `from`, is to be judged: the piece is remembered, one of its verified copies had
    /// that span, and `from` is not known to have sent exactly those bytes.
    fn judges(&self, ih: &InfoHash, index: u32, begin: u32, len: u32, from: &SocketAddr) -> bool {
        self.blame
            .get(&(*ih, index))
            .and_then(|b| b.iter().find(|s| s.begin == begin && s.len == len))
            .is_some_and(|s| !s.good.contains(&sender_tag(self.blame_seed, from)))
    }

    /// A copy of a block of a piece verified in this run, whole (it was held before the
    /// verdict came): judged by its digest (see `late_digest`). (A piece verified in an
    /// earlier run, or forgotten past `max_blame_pieces`, has no digests: nothing said.)
    fn late_copy(
        &mut self,
        ih: &InfoHash,
        index: u32,
        begin: u32,
        data: &[u8],
        from: SocketAddr,
        sink: &dyn PieceSink,
    ) {
        let Ok(len) = u32::try_from(data.len()) else {
            return;
        };
        if self.judges(ih, index, begin, len, &from) {
            let digest = block_digest(self.blame_seed, data);
            self.late_digest(ih, index, begin, len, digest, from, sink);
        }
    }

    /// The digest of a late copy of block (`begin`, `len`) from `from`, taken with the seed
    /// `late_block` gave: equal to the verified bytes' digest, `from` becomes a known-good
    /// sender of that block (its repeats are not read again); different, it is proven to
    /// have sent bad data.
    #[allow(clippy::too_many_arguments)]
    pub fn late_digest(
        &mut self,
        ih: &InfoHash,
        index: u32,
        begin: u32,
        len: u32,
        digest: u64,
        from: SocketAddr,
        sink: &dyn PieceSink,
    ) {
        let tag = sender_tag(self.blame_seed, &from);
        let Some(seen) = self
            .blame
            .get_mut(&(*ih, index))
            .and_then(|b| b.iter_mut().find(|s| s.begin == begin && s.len == len))
        else {
            return; // forgotten meanwhile
        };
        if digest == seen.digest {
            if let Some(slot) = seen.good.iter_mut().find(|t| **t == 0 || **t == tag) {
                *slot = tag;
            }
            return;
        }
        self.proven_bad(ih, from, u64::from(len), sink);
    }

    /// `from` is proven to have sent a bad copy of `len` bytes: counted, and told to the
    /// sink (rules on liars) at once.
    fn proven_bad(&mut self, ih: &InfoHash, from: SocketAddr, len: u64, sink: &dyn PieceSink) {
        let c = self.counters.entry(*ih).or_default();
        let e = c.proven_bad_by_peer.entry(from).or_default();
        (e.0, e.1) = (e.0 + 1, e.1 + len);
        sink.proven_bad(from, len);
    }

    /// Metainfo learnt outside this engine (a fetch, a post, a file dropped in): every
    /// quarantined swarm `known` has metainfo for is released now, not at its next block
    /// (which may never come: the download that carried it may be over).
    pub fn release_known(
        &mut self,
        known: impl Fn(&InfoHash) -> Option<Arc<Metainfo>>,
        sink: &dyn PieceSink,
    ) {
        let ready: Vec<Arc<Metainfo>> = self.q_swarms.iter().filter_map(&known).collect();
        for m in ready {
            self.metainfo_arrived(&m, sink);
        }
    }

    /// Metainfo for `ih` became known: its quarantined pieces leave quarantine and are
    /// checked (and verified if complete).
    pub fn metainfo_arrived(&mut self, m: &Arc<Metainfo>, sink: &dyn PieceSink) {
        let ih = m.info_hash;
        if !self.q_swarms.remove(&ih) {
            return;
        }
        let indices: Vec<u32> = self
            .open
            .keys()
            .filter(|(h, _)| *h == ih)
            .map(|(_, i)| *i)
            .collect();
        for index in indices {
            if let Some(a) = self.open.get_mut(&(ih, index)) {
                if a.quarantined {
                    a.quarantined = false;
                    self.quarantined = self.quarantined.saturating_sub(a.bytes);
                    self.q_order.remove(&a.seq);
                }
            }
            if m.piece_len(index).is_none() {
                self.discard(&(ih, index));
                continue;
            }
            self.try_complete(m, index, sink);
        }
    }

    fn try_complete(&mut self, m: &Arc<Metainfo>, index: u32, sink: &dyn PieceSink) {
        let key = (m.info_hash, index);
        let Some(len) = m.piece_len(index) else {
            return;
        };
        if self.is_done(&m.info_hash, index) || sink.contains(&m.info_hash, index) {
            // Verified already (e.g. copies that waited in quarantine): never twice.
            self.discard(&key);
            return;
        }
        let Some(a) = self.open.get(&key) else { return };
        if !a.complete(len, &m.pad_ranges(index)) {
            return;
        }
        // Complete: out of assembly, to be judged by its hash.
        let Some(a) = self.discard(&key) else { return };
        if let Err(mut a) = self.hand_to_hash_thread(m, index, a, sink) {
            let verdict = judge(m, index, &mut a, self.max_attempts, self.blame());
            self.apply(m, index, verdict, a, sink);
        }
    }

    /// Hand a complete piece to the hash thread, first taking verdicts while the bytes in
    /// flight would pass their cap. Err gives the piece back to be judged here: no thread
    /// (or it died).
    fn hand_to_hash_thread(
        &mut self,
        m: &Arc<Metainfo>,
        index: u32,
        a: Assembly,
        sink: &dyn PieceSink,
    ) -> Result<(), Assembly> {
        self.start_hashing();
        // Held until judged: its blocks, then the piece built from them.
        let weight = a.bytes.saturating_mul(2);
        while self.worker.as_ref().is_some_and(|w| {
            w.alive() && w.len() > 0 && w.weight().saturating_add(weight) > self.ahead_max
        }) {
            self.settle_one(sink);
        }
        let job = Job {
            meta: m.clone(),
            index,
            assembly: a,
            max_attempts: self.max_attempts,
            blame: self.blame(),
        };
        let Some(w) = self.worker.as_mut() else {
            return Err(job.assembly);
        };
        match w.submit(weight, job) {
            Ok(()) => {
                let serial = self.submitted;
                self.submitted += 1;
                let j = self.judging.entry(m.info_hash).or_default();
                *j = (j.0 + 1, serial);
                self.in_flight.insert((m.info_hash, index), serial);
                Ok(())
            }
            Err(job) => Err(job.assembly),
        }
    }

    /// A verdict takes effect: counters, blame, admission to the sink, done or retried
    /// later. A piece that did not verify goes back to assembly with its copies (later ones
    /// may complete a right combination), unless its hash budget is spent.
    fn apply(
        &mut self,
        m: &Metainfo,
        index: u32,
        verdict: Option<Verdict>,
        a: Assembly,
        sink: &dyn PieceSink,
    ) {
        let key = (m.info_hash, index);
        // No verdict: nothing new to try (or blocks that cannot make the piece): it waits.
        let Some(v) = verdict else {
            self.reopen(key, a);
            return;
        };
        // Before the piece is offered: rules on liars see this very proof.
        for &(p, n) in &v.proven_bad {
            self.proven_bad(&m.info_hash, p, n, sink);
        }
        let c = self.counters.entry(m.info_hash).or_default();
        c.hashes += u64::from(v.hashes);
        if !v.failed_with.is_empty() {
            c.failed += 1;
            for p in &v.failed_with {
                *c.failed_by_peer.entry(*p).or_default() += 1;
            }
        }
        if v.exhausted {
            c.search_capped += 1;
        }
        let Some(good) = v.good else {
            // Kept either way: an own complete set may still come (tried past the budget);
            // the assembly budget frees it, oldest first, when the room is needed.
            self.reopen(key, a);
            return;
        };
        self.alt_held = self.alt_held.saturating_sub(a.alt_bytes);
        if a.failed {
            c.recovered += 1;
        }
        self.remember_blocks(key, v.blocks);
        let c = self.counters.entry(m.info_hash).or_default();
        if !self.retry.remove(&key) {
            c.verified += 1;
        }
        if sink.admit(m, good) {
            c.admitted += 1;
            self.mark_done(m.info_hash, index, m.num_pieces());
        } else {
            let later = sink.retry_later(&m.info_hash);
            if later && self.retry.len() < self.max_retry {
                // Refused for now (popularity): later copies may be admitted.
                self.retry.insert(key);
            } else {
                // Past the cap, a piece that could have been retried is done.
                c.retry_overflow += u64::from(later);
                self.mark_done(m.info_hash, index, m.num_pieces());
            }
        }
    }

    /// The seed of the verified blocks' digests, when late copies are judged at all
    /// (`max_blame_pieces` > 0).
    fn blame(&self) -> Option<u64> {
        (self.max_blame_pieces > 0).then_some(self.blame_seed)
    }

    /// What a verified piece's blocks look like, to judge copies that come later (the
    /// digests and known-good senders were taken on the hash thread, with the verdict).
    fn remember_blocks(&mut self, key: Key, blocks: Vec<VerifiedBlock>) {
        if self.max_blame_pieces == 0 {
            return;
        }
        if self.blame.len() >= self.max_blame_pieces && !self.blame.contains_key(&key) {
            self.blame.clear();
            self.counters.entry(key.0).or_default().blame_resets += 1;
        }
        self.blame.insert(key, blocks);
    }

    /// A piece that did not verify back in assembly, charged again (it left when it was
    /// handed to be judged). If the piece was started again meanwhile, that one stays.
    fn reopen(&mut self, key: Key, a: Assembly) {
        if self.open.contains_key(&key) {
            self.alt_held = self.alt_held.saturating_sub(a.alt_bytes);
            return;
        }
        self.held += a.bytes;
        self.order.insert(a.seq, key);
        if a.quarantined {
            self.quarantined += a.bytes;
            self.q_order.insert(a.seq, key);
        }
        self.open.insert(key, a);
    }

    /// Hash on `threads` threads of their own from now on, with at most `ahead_bytes` held
    /// by pieces waiting for or under verification (at least one piece, however large).
    /// The threads start with the first complete piece (an engine that never verifies one
    /// costs none); if they cannot, hashing stays on the caller's thread.
    pub fn verify_on_threads(&mut self, threads: usize, ahead_bytes: usize) {
        self.ahead_max = ahead_bytes;
        self.hash_threads = threads;
    }

    fn start_hashing(&mut self) {
        if self.worker.is_none() && self.hash_threads > 0 {
            self.worker = Worker::start("peercache-hash", self.hash_threads, |mut j: Job| {
                let verdict = judge(&j.meta, j.index, &mut j.assembly, j.max_attempts, j.blame);
                if verdict.as_ref().is_some_and(|v| v.good.is_some()) {
                    // Freed here, off the packet path: the verified bytes went with the
                    // verdict, and a verified piece's copies are not needed again.
                    j.assembly.drop_copies();
                }
                (j.meta, j.index, verdict, j.assembly)
            });
            self.hash_threads = 0; // started, or never will be
        }
    }

    /// Take the oldest verdict from the hash thread (waiting for it) and apply it.
    fn settle_one(&mut self, sink: &dyn PieceSink) -> bool {
        match self.worker.as_mut().and_then(|w| w.next()) {
            Some(judged) => {
                self.take_verdict(judged, sink);
                true
            }
            None => {
                self.forget_in_flight(); // nothing in flight, or lost with a dead thread
                false
            }
        }
    }

    /// Nothing is in flight any more (or what was is lost with a dead thread).
    fn forget_in_flight(&mut self) {
        self.judging.clear();
        self.in_flight.clear();
        self.taken = self.submitted;
    }

    fn take_verdict(&mut self, (m, index, verdict, a): Judged, sink: &dyn PieceSink) {
        let (ih, serial) = (m.info_hash, self.taken);
        self.taken += 1;
        if let Some(j) = self.judging.get_mut(&ih) {
            j.0 -= 1;
            if j.0 == 0 {
                self.judging.remove(&ih);
            }
        }
        if self.in_flight.get(&(ih, index)) == Some(&serial) {
            self.in_flight.remove(&(ih, index));
        }
        self.apply(&m, index, verdict, a, sink);
    }

    /// Verdicts take effect up to that of the job `serial` (with those given before it).
    fn settle_through(&mut self, serial: u64, sink: &dyn PieceSink) {
        while self.taken <= serial {
            if !self.settle_one(sink) {
                break;
            }
        }
    }

    /// Before anything that asks whether this piece is cached or done: its verdict, if it
    /// is being verified, takes effect (with those of pieces completed before it). Called
    /// for every block: a look-up unless the piece is in flight.
    pub fn settle_piece(&mut self, ih: &InfoHash, index: u32, sink: &dyn PieceSink) {
        if self.in_flight.is_empty() {
            return;
        }
        if let Some(&serial) = self.in_flight.get(&(*ih, index)) {
            self.settle_through(serial, sink);
        }
    }

    /// The same for every piece of a swarm being verified.
    pub fn settle_swarm(&mut self, ih: &InfoHash, sink: &dyn PieceSink) {
        if let Some(&(_, serial)) = self.judging.get(ih) {
            self.settle_through(serial, sink);
        }
    }

    /// Verdicts already made take effect, in order, without waiting for the rest. For live
    /// capture, where a piece should be cached as soon as it is proven, not when the next
    /// settle point comes; replays leave it alone to stay deterministic.
    pub fn settle_ready(&mut self, sink: &dyn PieceSink) {
        while let Some(judged) = self.worker.as_mut().and_then(|w| w.try_next()) {
            self.take_verdict(judged, sink);
        }
        if !self.worker.as_ref().is_some_and(|w| w.alive()) {
            self.forget_in_flight();
        }
    }

    /// Whether pieces are waiting for or under verification.
    pub fn verifying(&self) -> bool {
        self.worker.as_ref().is_some_and(|w| w.len() > 0)
    }

    /// Every verdict pending takes effect (end of input, or before reporting).
    pub fn settle(&mut self, sink: &dyn PieceSink) {
        while self.settle_one(sink) {}
    }

    /// Out of assembly, charges released; the assembly is handed back.
    fn discard(&mut self, key: &Key) -> Option<Assembly> {
        let a = self.open.remove(key)?;
        self.held = self.held.saturating_sub(a.bytes);
        self.order.remove(&a.seq);
        if a.quarantined {
            self.quarantined = self.quarantined.saturating_sub(a.bytes);
            self.q_order.remove(&a.seq);
        }
        Some(a)
    }

    /// Drop the oldest incomplete piece (the oldest quarantined one if `quarantine_only`).
    fn evict_oldest(&mut self, quarantine_only: bool) -> bool {
        let first = if quarantine_only {
            self.q_order.first_key_value()
        } else {
            self.order.first_key_value()
        };
        let Some((_, &key)) = first else { return false };
        let bytes = self.open.get(&key).map_or(0, |a| a.bytes);
        self.discard(&key);
        let c = self.counters.entry(key.0).or_default();
        if quarantine_only {
            c.quarantine_evicted_bytes += bytes as u64;
        } else {
            c.dropped += 1;
            c.dropped_bytes += bytes as u64;
        }
        true
    }

    /// Bytes held for pieces in progress (assembling or being verified), and of those, in
    /// quarantine.
    pub fn held(&self) -> (usize, usize) {
        let judging = self.worker.as_ref().map_or(0, |w| w.weight());
        (self.held + judging, self.quarantined)
    }
}

/// What the hash thread hands back: the piece's swarm and index, the verdict, and the
/// assembly (with its search memory) for a piece that did not verify.
type Judged = (Arc<Metainfo>, u32, Option<Verdict>, Assembly);

/// A complete piece for the hash thread.
struct Job {
    meta: Arc<Metainfo>,
    index: u32,
    assembly: Assembly,
    max_attempts: u32,
    blame: Option<u64>,
}

/// What a block about to arrive needs (see `Pieces::late_block`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Late {
    /// Not a copy of a block verified in this run: hold its bytes for assembly.
    No,
    /// A late copy with nothing to judge it by, or from a sender known to have sent these
    /// very bytes: let it pass.
    Ignore,
    /// A late copy to judge: its digest, taken with this seed as its bytes pass, goes to
    /// `Pieces::late_digest` (never copied).
    Digest(u64),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swarm::VerifiedPiece;
    use sha1::{Digest, Sha1};
    use std::cell::RefCell;
    use std::collections::HashSet;

    /// A torrent of 3 pieces of 32 KiB (the last 10 KiB) over deterministic content.
    fn torrent() -> (Arc<Metainfo>, Vec<u8>) {
        let content: Vec<u8> = (0..(2 * 32768 + 10240u32))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let mut pieces = Vec::new();
        for p in content.chunks(32768) {
            pieces.extend_from_slice(&Sha1::digest(p));
        }
        let mut info = format!(
            "d6:lengthi{}e4:name1:x12:piece lengthi32768e6:pieces{}:",
            content.len(),
            pieces.len()
        )
        .into_bytes();
        info.extend_from_slice(&pieces);
        info.push(b'e');
        (Arc::new(Metainfo::from_info(&info).unwrap()), content)
    }

    #[derive(Default)]
    struct Sink(RefCell<HashSet<u32>>);
    impl PieceSink for Sink {
        fn contains(&self, _: &InfoHash, i: u32) -> bool {
            self.0.borrow().contains(&i)
        }
        fn admit(&self, m: &Metainfo, p: VerifiedPiece) -> bool {
            assert!(
                m.verify_piece(p.index(), p.data()),
                "only verified pieces reach the sink"
            );
            self.0.borrow_mut().insert(p.index())
        }
        fn touch(&self, _: &InfoHash, _: u32) {}
    }

    fn peer(n: u8) -> SocketAddr {
        SocketAddr::from(([198, 19, 0, n], 6881))
    }

    #[allow(clippy::too_many_arguments)]
    fn feed(
        p: &mut Pieces,
        m: Option<&Arc<Metainfo>>,
        ih: InfoHash,
        content: &[u8],
        index: u32,
        from: SocketAddr,
        sink: &Sink,
        corrupt: Option<u32>,
    ) {
        let start = index as usize * 32768;
        let end = (start + 32768).min(content.len());
        for begin in (0..end - start).step_by(16384) {
            let mut b = content[start + begin..(start + begin + 16384).min(end)].to_vec();
            if corrupt == Some(begin as u32) {
                b[5] ^= 0xff;
            }
            p.block(ih, m, index, begin as u32, b.as_slice(), from, sink);
        }
    }

    #[test]
    fn good_bad_and_contested_pieces() {
        let (m, content) = torrent();
        let sink = Sink::default();
        let mut p = Pieces::new(1 << 20, 1 << 20);
        let ih = m.info_hash;
        feed(&mut p, Some(&m), ih, &content, 0, peer(1), &sink, None);
        // Piece 1: a liar's copy of block 0 arrives first, then the honest one, then block 1:
        // the piece completes with two candidates for block 0 and the hash picks.
        p.block(
            ih,
            Some(&m),
            1,
            0,
            {
                let mut b = content[32768..49152].to_vec();
                b[5] ^= 0xff;
                b
            },
            peer(2),
            &sink,
        );
        p.block(ih, Some(&m), 1, 0, &content[32768..49152], peer(1), &sink);
        p.block(
            ih,
            Some(&m),
            1,
            16384,
            &content[49152..65536],
            peer(1),
            &sink,
        );
        // Piece 2: only the liar.
        feed(&mut p, Some(&m), ih, &content, 2, peer(2), &sink, Some(0));
        let c = &p.counters[&ih];
        assert_eq!((c.verified, c.failed, c.admitted), (2, 1, 2));
        // Piece 1 verified: the liar's copy is proven bad, and no hash failed with it.
        // Piece 2 failed with only the liar's blocks in it.
        assert_eq!(c.failed_by_peer.get(&peer(2)), Some(&1));
        assert_eq!(c.failed_by_peer.get(&peer(1)), None);
        assert_eq!(c.proven_bad_by_peer.get(&peer(2)), Some(&(1, 16384)));
        assert_eq!(c.proven_bad_by_peer.get(&peer(1)), None);
        assert_eq!(*sink.0.borrow(), HashSet::from([0, 1]));
        // The failed piece 2 waits for better copies; the honest one then verifies it.
        assert_eq!(p.held(), (10240, 0), "piece 2 kept for its search");
        feed(&mut p, Some(&m), ih, &content, 2, peer(1), &sink, None);
        let c = &p.counters[&ih];
        assert_eq!((c.verified, c.recovered, c.failed), (3, 1, 1));
        assert_eq!(
            c.proven_bad_by_peer.get(&peer(2)),
            Some(&(2, 16384 + 10240))
        );
        assert_eq!(p.held(), (0, 0), "nothing left in assembly");
        // A late bad copy of a verified piece: its sender is named from the digest.
        let mut late = content[..16384].to_vec();
        late[0] ^= 1;
        p.block(ih, Some(&m), 0, 0, late, peer(3), &sink);
        p.block(ih, Some(&m), 0, 0, &content[..16384], peer(4), &sink);
        let c = &p.counters[&ih];
        assert_eq!(c.proven_bad_by_peer.get(&peer(3)), Some(&(1, 16384)));
        assert_eq!(c.proven_bad_by_peer.get(&peer(4)), None);
    }

    /// Late copies judged on the hash thread: the same verdicts, applied in order.
    #[test]
    fn late_copies_on_the_hash_thread() {
        let (m, content) = torrent();
        let sink = Sink::default();
        let mut p = Pieces::new(1 << 20, 1 << 20);
        p.verify_on_threads(1, 64 * 1024);
        let ih = m.info_hash;
        feed(&mut p, Some(&m), ih, &content, 0, peer(1), &sink, None);
        p.settle(&sink);
        for n in 0..20u8 {
            let mut late = content[..16384].to_vec();
            if n % 2 == 1 {
                late[n as usize] ^= 1;
            }
            p.block(ih, Some(&m), 0, 0, late, peer(10 + n % 4), &sink);
        }
        p.settle(&sink);
        let c = &p.counters[&ih];
        // Odd n are bad: peers 11 and 13, five copies each.
        assert_eq!(c.proven_bad_by_peer.get(&peer(11)), Some(&(5, 5 * 16384)));
        assert_eq!(c.proven_bad_by_peer.get(&peer(13)), Some(&(5, 5 * 16384)));
        assert_eq!(c.proven_bad_by_peer.len(), 2);
        assert_eq!(p.held(), (0, 0));
    }

    #[test]
    fn quarantine_until_metainfo() {
        let (m, content) = torrent();
        let sink = Sink::default();
        let mut p = Pieces::new(1 << 20, 1 << 20);
        let ih = m.info_hash;
        for i in 0..3 {
            feed(&mut p, None, ih, &content, i, peer(1), &sink, None);
        }
        assert_eq!(p.held(), (content.len(), content.len()));
        assert!(
            sink.0.borrow().is_empty(),
            "nothing admitted without metainfo"
        );
        p.metainfo_arrived(&m, &sink);
        assert_eq!(sink.0.borrow().len(), 3);
        assert_eq!(p.held(), (0, 0));
    }

    /// A swarm's metainfo shows up only as a registry entry (learnt by another worker):
    /// the next block releases its quarantine, so nothing more is charged against it.
    #[test]
    fn quarantine_released_when_metainfo_appears_elsewhere() {
        let (m, content) = torrent();
        let sink = Sink::default();
        let mut p = Pieces::new(1 << 20, 16384);
        p.block(m.info_hash, None, 0, 0, &content[..16384], peer(1), &sink);
        assert_eq!(p.held().1, 16384);
        p.block(
            m.info_hash,
            Some(&m),
            0,
            16384,
            &content[16384..32768],
            peer(1),
            &sink,
        );
        assert_eq!(p.held(), (0, 0), "released, completed, verified");
        assert!(sink.0.borrow().contains(&0));
    }

    #[test]
    fn budgets_drop_oldest() {
        let (m, content) = torrent();
        let sink = Sink::default();
        // Quarantine holds one block only: older quarantined blocks are evicted.
        let mut p = Pieces::new(1 << 20, 16384);
        feed(&mut p, None, m.info_hash, &content, 0, peer(1), &sink, None);
        assert_eq!(p.held().1, 16384);
        assert_eq!(p.counters[&m.info_hash].quarantine_evicted_bytes, 16384);
        // Assembly holds one block: incomplete pieces are dropped, oldest first.
        let mut p = Pieces::new(16384, 1 << 20);
        p.block(
            m.info_hash,
            Some(&m),
            0,
            0,
            &content[..16384],
            peer(1),
            &sink,
        );
        p.block(
            m.info_hash,
            Some(&m),
            1,
            0,
            &content[32768..49152],
            peer(1),
            &sink,
        );
        assert_eq!(p.counters[&m.info_hash].dropped, 1);
        assert!(p.held().0 <= 16384);
    }

    /// A sink that refuses everything and asks to see it again (rules waiting for
    /// popularity).
    struct RefuseLater;
    impl PieceSink for RefuseLater {
        fn contains(&self, _: &InfoHash, _: u32) -> bool {
            false
        }
        fn admit(&self, _: &Metainfo, _: VerifiedPiece) -> bool {
            false
        }
        fn touch(&self, _: &InfoHash, _: u32) {}
        fn retry_later(&self, _: &InfoHash) -> bool {
            true
        }
    }

    #[test]
    fn caps_on_copies_and_retries_count_their_hits() {
        let (m, content) = torrent();
        let ih = m.info_hash;
        // One copy per block start: the honest copy after a liar's is dropped (counted),
        // so the piece fails.
        let sink = Sink::default();
        let mut p = Pieces::new(1 << 20, 1 << 20);
        p.max_copies = 1;
        let mut liar = content[..16384].to_vec();
        liar[5] ^= 0xff;
        p.block(ih, Some(&m), 0, 0, liar, peer(2), &sink);
        p.block(ih, Some(&m), 0, 0, &content[..16384], peer(1), &sink);
        p.block(
            ih,
            Some(&m),
            0,
            16384,
            &content[16384..32768],
            peer(1),
            &sink,
        );
        let c = &p.counters[&ih];
        assert_eq!((c.copies_overflow, c.failed, c.verified), (1, 1, 0));
        // No room to retry: a refused piece is done, counted once per verification.
        let whole = |p: &mut Pieces, index: u32| {
            let start = index as usize * 32768;
            for begin in [0, 16384] {
                let b = &content[start + begin..start + begin + 16384];
                p.block(ih, Some(&m), index, begin as u32, b, peer(1), &RefuseLater);
            }
        };
        let mut p = Pieces::new(1 << 20, 1 << 20);
        p.max_retry = 0;
        whole(&mut p, 0);
        whole(&mut p, 1);
        let c = &p.counters[&ih];
        assert_eq!((c.verified, c.admitted, c.retry_overflow), (2, 0, 2));
        // With room, they wait for another offer instead.
        let mut p = Pieces::new(1 << 20, 1 << 20);
        whole(&mut p, 0);
        assert_eq!(p.counters[&ih].retry_overflow, 0);
    }
}
