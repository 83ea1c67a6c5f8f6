//! One piece being assembled from blocks, and the hash's judgement of it. Copies of the
//! same block start with different bytes are kept apart, each with every peer that sent it,
//! until the piece hash decides which is right; the senders of copies that differ from the
//! verified piece are proven to have sent bad data.
//!
//! A piece whose first combination fails its hash is not thrown away: it stays, and every
//! new copy (or a peer completing its own set) lets the search go on, in this order, each
//! combination hashed at most once and at most `max_attempts` hashes per piece:
//! 1. each sender's own complete set (an honest peer that re-sent the whole piece);
//! 2. the latest copy of every block (what a client's re-request brought);
//! 3. the first copy of every block;
//! 4. the latest copies with one block swapped for each of its other copies, block by
//!    block.
//!
//! The budget bounds steps 2 to 4. Step 1 is always tried: there is at most one complete
//! set per sender (its first copy of each block), and it is what a peer that re-sent the
//! whole piece delivered, so a budget spent on swaps must never cost it.
//!
//! On a clean capture every block has one copy and all of these are the same combination:
//! one hash, as before.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;

use super::{Metainfo, VerifiedPiece};

/// Senders remembered per distinct copy (more are counted for blame up to this many).
pub(super) const MAX_SENDERS: usize = 16;

struct Copy {
    data: Vec<u8>,
    /// Every peer that sent these bytes, first sender first.
    from: Vec<SocketAddr>,
    /// Arrival number within the piece of the latest sight of these bytes (copies are
    /// kept in order of their first sight).
    last: u64,
}

/// One piece being assembled: candidate copies per block start.
pub(super) struct Assembly {
    blocks: BTreeMap<u32, Vec<Copy>>,
    pub(super) bytes: usize,
    /// Bytes of copies beyond the first of their block start (alternatives).
    pub(super) alt_bytes: usize,
    /// Position in eviction order (older first).
    pub(super) seq: u64,
    /// Held without metainfo: counted against the quarantine cap.
    pub(super) quarantined: bool,
    arrivals: u64,
    /// Combinations already hashed (by a digest of their picks).
    tried: HashSet<u64>,
    /// Hashes spent on this piece.
    pub(super) attempts: u32,
    /// A combination of it failed its hash already.
    pub(super) failed: bool,
    /// The budget for combinations other than own sets is spent.
    pub(super) exhausted: bool,
}

/// What `Assembly::add` did with a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Added {
    /// A copy with bytes not held before.
    Yes,
    /// Bytes held already; the sender is new for them.
    NewSender,
    /// Bytes held already, from this sender too.
    Duplicate,
    /// `max_copies` other copies of this block start are held already.
    Full,
    /// An alternative copy refused: the caller's alternative-bytes budget is spent.
    NoRoom,
}

/// A combination: the copy picked at each block start.
type Pick = BTreeMap<u32, usize>;

impl Assembly {
    /// Frees the copies' bytes, keeping the counts (`bytes`, `alt_bytes`: what was charged).
    pub(super) fn drop_copies(&mut self) {
        self.blocks = BTreeMap::new();
        self.tried = HashSet::new();
    }

    /// An empty assembly, `seq` in eviction order, held in quarantine or not.
    pub(super) fn new(seq: u64, quarantined: bool) -> Assembly {
        Assembly {
            blocks: BTreeMap::new(),
            bytes: 0,
            alt_bytes: 0,
            seq,
            quarantined,
            arrivals: 0,
            tried: HashSet::new(),
            attempts: 0,
            failed: false,
            exhausted: false,
        }
    }

    /// Add a block: one more sender of bytes held already, or one more alternative copy of
    /// its start (up to `max_copies`, and only if `alt_room` says its bytes fit).
    pub(super) fn add(
        &mut self,
        begin: u32,
        data: Vec<u8>,
        from: SocketAddr,
        max_copies: usize,
        alt_room: impl FnOnce(usize) -> bool,
    ) -> Added {
        self.arrivals += 1;
        let now = self.arrivals;
        let copies = self.blocks.entry(begin).or_default();
        if let Some(c) = copies.iter_mut().find(|c| c.data == data) {
            c.last = now;
            if c.from.contains(&from) || c.from.len() >= MAX_SENDERS {
                return Added::Duplicate;
            }
            c.from.push(from);
            return Added::NewSender;
        }
        if copies.len() >= max_copies {
            return Added::Full;
        }
        let alt = !copies.is_empty();
        if alt && !alt_room(data.len()) {
            return Added::NoRoom;
        }
        self.bytes += data.len();
        if alt {
            self.alt_bytes += data.len();
        }
        copies.push(Copy {
            data,
            from: vec![from],
            last: now,
        });
        Added::Yes
    }

    /// Whether first copies (and pads) cover [0, len) exactly: a walk over block starts,
    /// so checking after every block costs nothing like building the piece would.
    pub(super) fn complete(&self, len: u32, pads: &[(u32, u32)]) -> bool {
        self.walk(len, pads, |_, c| (!c.is_empty()).then_some(0))
            .is_some()
    }

    /// The block starts a combination covering [0, len) uses, each with its pick, choosing
    /// at each start with `choose` (None: this combination has no copy there).
    fn walk(
        &self,
        len: u32,
        pads: &[(u32, u32)],
        mut choose: impl FnMut(u32, &[Copy]) -> Option<usize>,
    ) -> Option<Pick> {
        let mut pick = Pick::new();
        let mut covered = 0u32;
        let mut pads = pads.iter().peekable();
        loop {
            while let Some(&&(ps, pe)) = pads.peek() {
                if ps > covered {
                    break;
                }
                covered = covered.max(pe);
                pads.next();
            }
            if covered >= len {
                return Some(pick);
            }
            let copies = self.blocks.get(&covered)?;
            let k = choose(covered, copies)?;
            let c = copies.get(k)?;
            if c.data.is_empty() {
                return None;
            }
            pick.insert(covered, k);
            covered = covered.checked_add(c.data.len() as u32)?;
        }
    }

    /// The piece from the picked copies, if they fit [0, len) exactly (pads are
    /// zero-filled). Returns a buffer holding the piece from an offset that puts it at a
    /// [`super::PIECE_ALIGN`]-aligned address, and the offset.
    fn build(&self, len: u32, pads: &[(u32, u32)], pick: &Pick) -> Option<(Vec<u8>, usize)> {
        // Filled front to back (pads as zeros), so never zeroed first: the piece so far is
        // out[start..], and covered == out.len() - start.
        let mut out: Vec<u8> = Vec::with_capacity(len as usize + super::PIECE_ALIGN);
        let start = out.as_ptr().align_offset(super::PIECE_ALIGN);
        if start > super::PIECE_ALIGN {
            return None; // cannot happen for bytes; never index past the capacity
        }
        out.resize(start, 0);
        let mut covered = 0u32;
        let mut pads = pads.iter().peekable();
        loop {
            while let Some(&&(ps, pe)) = pads.peek() {
                if ps <= covered && pe > covered {
                    covered = pe.min(len);
                    out.resize(start + covered as usize, 0);
                }
                if ps <= covered {
                    pads.next();
                } else {
                    break;
                }
            }
            if covered >= len {
                return Some((out, start));
            }
            let c = self.blocks.get(&covered)?.get(*pick.get(&covered)?)?;
            let end = covered as usize + c.data.len();
            if end > len as usize || c.data.is_empty() {
                return None;
            }
            out.extend_from_slice(&c.data);
            covered = end as u32;
        }
    }

    /// The combinations to try, in the documented order (duplicates included; the caller
    /// skips what was tried), each saying whether it is a sender's own set.
    fn candidates(&self, len: u32, pads: &[(u32, u32)]) -> Vec<(Pick, bool)> {
        let mut out = Vec::new();
        // 1. each sender's own complete set, senders in order of first appearance
        let mut senders: Vec<SocketAddr> = Vec::new();
        for c in self.blocks.values().flatten() {
            for f in &c.from {
                if !senders.contains(f) {
                    senders.push(*f);
                }
            }
        }
        for s in &senders {
            if let Some(p) = self.walk(len, pads, |_, cs| {
                cs.iter().position(|c| c.from.contains(s))
            }) {
                out.push((p, true));
            }
        }
        // 2. the latest copy of every block; 3. the first
        let latest = |_: u32, cs: &[Copy]| {
            cs.iter()
                .enumerate()
                .max_by_key(|(_, c)| c.last)
                .map(|(k, _)| k)
        };
        let base = self.walk(len, pads, latest);
        if let Some(p) = &base {
            out.push((p.clone(), false));
        }
        if let Some(p) = self.walk(len, pads, |_, cs| (!cs.is_empty()).then_some(0)) {
            out.push((p, false));
        }
        // 4. one block swapped, from the latest copies
        if let Some(base) = base {
            for (&begin, &k) in &base {
                let n = self.blocks.get(&begin).map_or(0, |c| c.len());
                for alt in (0..n).filter(|&a| a != k) {
                    let mut p = base.clone();
                    p.insert(begin, alt);
                    // The swapped copy may have another length: the rest must still fit.
                    if let Some(q) = self.walk(len, pads, |at, cs| {
                        p.get(&at).copied().or_else(|| latest(at, cs))
                    }) {
                        out.push((q, false));
                    }
                }
            }
        }
        out
    }

    /// Every sender of a copy differing from the verified bytes, with that copy's length:
    /// proven bad. Copies equal to the verified bytes (or under a pad) blame nobody; the
    /// copies of `pick`, which the verified piece was built from, are equal without a look.
    fn proven_bad(&self, v: &VerifiedPiece, pick: &Pick) -> Vec<(SocketAddr, u64)> {
        let mut bad = Vec::new();
        for (&begin, copies) in &self.blocks {
            for (k, c) in copies.iter().enumerate() {
                if pick.get(&begin) == Some(&k) {
                    continue;
                }
                let end = begin as usize + c.data.len();
                if v.data().get(begin as usize..end) != Some(&c.data[..]) {
                    for f in &c.from {
                        bad.push((*f, c.data.len() as u64));
                    }
                }
            }
        }
        bad
    }

    /// Every block span held (start, length, one per distinct length at a start) with the
    /// digest of the verified bytes there and the senders of copies equal to them: what
    /// judges copies that arrive after the verdict.
    fn verified_blocks(&self, v: &[u8], pick: &Pick, seed: u64) -> Vec<VerifiedBlock> {
        let mut out: Vec<VerifiedBlock> = Vec::with_capacity(self.blocks.len());
        for (&b, cs) in &self.blocks {
            for (k, c) in cs.iter().enumerate() {
                let len = c.data.len() as u32;
                let Some(want) = v.get(b as usize..b as usize + c.data.len()) else {
                    continue;
                };
                let i = match out.iter().rposition(|x| x.begin == b && x.len == len) {
                    Some(i) => i,
                    None => {
                        out.push(VerifiedBlock {
                            begin: b,
                            len,
                            digest: block_digest(seed, want),
                            good: [0; 4],
                        });
                        out.len() - 1
                    }
                };
                if pick.get(&b) == Some(&k) || want == &c.data[..] {
                    for f in &c.from {
                        let tag = sender_tag(seed, f);
                        let good = &mut out[i].good;
                        if !good.contains(&tag) {
                            if let Some(slot) = good.iter_mut().find(|t| **t == 0) {
                                *slot = tag;
                            }
                        }
                    }
                }
            }
        }
        out
    }

    /// The senders of a combination.
    fn senders(&self, pick: &Pick) -> Vec<SocketAddr> {
        let mut out: Vec<SocketAddr> = Vec::new();
        for (begin, &k) in pick {
            if let Some(c) = self.blocks.get(begin).and_then(|cs| cs.get(k)) {
                for f in &c.from {
                    if !out.contains(f) {
                        out.push(*f);
                    }
                }
            }
        }
        out
    }
}

/// A block of a verified piece, kept to judge copies that arrive later: its span, the
/// digest of its verified bytes, and tags of up to four peers known to have sent exactly
/// those bytes (0: free; see `sender_tag`), whose repeats are not read again.
pub(super) struct VerifiedBlock {
    pub(super) begin: u32,
    pub(super) len: u32,
    pub(super) digest: u64,
    pub(super) good: [u32; 4],
}

/// A peer's tag among a block's known-good senders (a collision can only spare a liar a
/// check, never blame anyone).
pub(super) fn sender_tag(seed: u64, p: &SocketAddr) -> u32 {
    let mut b = [0u8; 18];
    match p.ip() {
        std::net::IpAddr::V4(a) => b[..4].copy_from_slice(&a.octets()),
        std::net::IpAddr::V6(a) => b[..16].copy_from_slice(&a.octets()),
    }
    b[16..].copy_from_slice(&p.port().to_be_bytes());
    (twox_hash::XxHash3_64::oneshot_with_seed(seed, &b) as u32).max(1)
}

/// A fast digest of a block for late-copy blame (XXH3: late copies must cost about a memory
/// read). A differing digest proves differing bytes (never a false blame); a collision could
/// only let a liar go unnamed, and the seed is drawn per run so a liar cannot aim for one.
pub(super) fn block_digest(seed: u64, data: &[u8]) -> u64 {
    twox_hash::XxHash3_64::oneshot_with_seed(seed, data)
}

fn digest(p: &Pick) -> u64 {
    let mut h = DefaultHasher::new();
    p.hash(&mut h);
    h.finish()
}

/// What a complete piece's hash decided.
pub(super) struct Verdict {
    pub(super) good: Option<VerifiedPiece>,
    /// Peers proven to have sent bad data: one entry per bad block copy they sent, with
    /// its length (empty unless the piece verified).
    pub(super) proven_bad: Vec<(SocketAddr, u64)>,
    /// First failure of this piece: the senders of the combination that failed (they took
    /// part in a hash failure; an honest co-sender among them is not proven anything).
    pub(super) failed_with: Vec<SocketAddr>,
    /// For a verified piece, its blocks as they were sent (see `verified_blocks`).
    pub(super) blocks: Vec<VerifiedBlock>,
    /// Hashes computed for this verdict.
    pub(super) hashes: u32,
    /// The hash budget ran out in this search (first time only): from now on only own
    /// sets are tried.
    pub(super) exhausted: bool,
}

/// The hash decides, searching the combinations not tried yet (at most `max_attempts`
/// hashes over the piece's life). Pure but for the assembly's own search memory: runs on
/// the engine thread or the hash thread alike. None when the blocks cannot make the piece.
/// `blame`: the seed of the verified blocks' digests that judge later copies (None: late
/// copies are not judged, and the digests cost nothing).
pub(super) fn judge(
    m: &Metainfo,
    index: u32,
    a: &mut Assembly,
    max_attempts: u32,
    blame: Option<u64>,
) -> Option<Verdict> {
    let len = m.piece_len(index)?;
    let pads = m.pad_ranges(index);
    let mut verdict = Verdict {
        good: None,
        proven_bad: Vec::new(),
        failed_with: Vec::new(),
        blocks: Vec::new(),
        hashes: 0,
        exhausted: false,
    };
    let mut any = false;
    // One copy of every block (a clean capture): one combination, without the search.
    let candidates = if a.blocks.values().all(|cs| cs.len() == 1) {
        let first = a.walk(len, &pads, |_, cs| (!cs.is_empty()).then_some(0));
        first.map(|p| vec![(p, true)]).unwrap_or_default()
    } else {
        a.candidates(len, &pads)
    };
    for (pick, own) in candidates {
        if !own && a.attempts >= max_attempts {
            if !a.exhausted {
                a.exhausted = true;
                verdict.exhausted = true;
            }
            continue;
        }
        if !a.tried.insert(digest(&pick)) {
            continue;
        }
        let Some((data, at)) = a.build(len, &pads, &pick) else {
            continue;
        };
        any = true;
        a.attempts += 1;
        verdict.hashes += 1;
        match VerifiedPiece::verify_at(m, index, data, at) {
            Ok(v) => {
                verdict.proven_bad = a.proven_bad(&v, &pick);
                if let Some(seed) = blame {
                    verdict.blocks = a.verified_blocks(v.data(), &pick, seed);
                }
                verdict.good = Some(v.with_senders(a.senders(&pick)));
                return Some(verdict);
            }
            Err(_) if !a.failed => {
                a.failed = true;
                verdict.failed_with = a.senders(&pick);
            }
            Err(_) => {}
        }
    }
    // Nothing new to try is no verdict, unless the budget is what stopped the search.
    (any || verdict.exhausted).then_some(verdict)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha1::{Digest, Sha1};

    /// A one-piece torrent of 4 blocks of 16 KiB.
    fn torrent() -> (Metainfo, Vec<u8>) {
        let content: Vec<u8> = (0..65536u32).map(|i| (i * 13 % 251) as u8).collect();
        let mut info = b"d6:lengthi65536e4:name1:x12:piece lengthi65536e6:pieces20:".to_vec();
        info.extend_from_slice(&Sha1::digest(&content));
        info.push(b'e');
        (Metainfo::from_info(&info).unwrap(), content)
    }

    fn peer(n: u8) -> SocketAddr {
        SocketAddr::from(([198, 19, 0, n], 6881))
    }

    fn block(content: &[u8], i: u32, bad: bool, salt: u8) -> (u32, Vec<u8>) {
        let mut b = content[i as usize * 16384..(i as usize + 1) * 16384].to_vec();
        if bad {
            b[7] ^= 0x55 ^ salt;
        }
        (i * 16384, b)
    }

    fn add(a: &mut Assembly, content: &[u8], i: u32, bad: bool, from: u8) -> Added {
        let (begin, b) = block(content, i, bad, from);
        a.add(begin, b, peer(from), 8, |_| true)
    }

    /// The case from the issue: a liar's first blocks, then an honest peer's whole piece
    /// after the first combination failed. Its own set verifies; the liar is proven bad
    /// for exactly its two blocks.
    #[test]
    fn an_honest_peers_own_set_wins_and_the_liar_is_named() {
        let (m, content) = torrent();
        let mut a = Assembly::new(0, false);
        add(&mut a, &content, 0, true, 2);
        add(&mut a, &content, 1, true, 2);
        add(&mut a, &content, 2, false, 1);
        add(&mut a, &content, 3, false, 1);
        let v = judge(&m, 0, &mut a, 64, Some(0)).unwrap();
        assert!(v.good.is_none());
        assert_eq!(v.failed_with, vec![peer(2), peer(1)]);
        assert_eq!(
            v.hashes, 1,
            "one sender set, latest and first are one combination"
        );
        // The honest peer re-sends all four: 0 and 1 are new bytes, 2 and 3 repeats.
        assert_eq!(add(&mut a, &content, 0, false, 1), Added::Yes);
        let v = judge(&m, 0, &mut a, 64, Some(0)).unwrap();
        assert!(v.good.is_none(), "block 1 is still only the liar's");
        assert_eq!(add(&mut a, &content, 1, false, 1), Added::Yes);
        assert_eq!(add(&mut a, &content, 2, false, 1), Added::Duplicate);
        let v = judge(&m, 0, &mut a, 64, Some(0)).unwrap();
        let good = v.good.expect("the honest set verifies");
        assert_eq!(good.data(), &content[..]);
        assert_eq!(v.proven_bad, vec![(peer(2), 16384), (peer(2), 16384)]);
        assert!(
            v.failed_with.is_empty(),
            "a failure is reported once per piece"
        );
    }

    /// Two liars with the same bad bytes for a block: both proven bad for it; the honest
    /// copy, found by a one-block swap, is blamed on nobody.
    #[test]
    fn identical_bad_copies_blame_every_sender() {
        let (m, content) = torrent();
        let mut a = Assembly::new(0, false);
        for i in 0..4 {
            add(&mut a, &content, i, false, 1);
        }
        // Both liars send the same bad block 2 after the honest one: latest is bad.
        let (b, bad) = block(&content, 2, true, 0);
        assert_eq!(a.add(b, bad.clone(), peer(2), 8, |_| true), Added::Yes);
        assert_eq!(a.add(b, bad, peer(3), 8, |_| true), Added::NewSender);
        let v = judge(&m, 0, &mut a, 64, Some(0)).unwrap();
        assert!(v.good.is_some(), "peer 1's own set");
        assert_eq!(v.proven_bad, vec![(peer(2), 16384), (peer(3), 16384)]);
    }

    /// No single sender and no latest/first combination is right: the one-block swaps find
    /// it, within the budget; with a budget of 2 hashes they cannot.
    #[test]
    fn swaps_find_mixed_pieces_within_the_budget() {
        let (m, content) = torrent();
        let build = || {
            let mut a = Assembly::new(0, false);
            // Block 0: good from peer 1 first, then bad from peer 2 (latest is bad).
            add(&mut a, &content, 0, false, 1);
            add(&mut a, &content, 0, true, 2);
            // Block 1..3: good only from peer 3, so peer 1 has no complete set.
            for i in 1..4 {
                add(&mut a, &content, i, false, 3);
            }
            // Block 3: a bad one from peer 1 first seen... after: latest bad.
            add(&mut a, &content, 3, true, 4);
            a
        };
        let mut a = build();
        let v = judge(&m, 0, &mut a, 64, Some(0)).unwrap();
        let good = v.good.expect("first copies of every block");
        assert_eq!(good.data(), &content[..]);
        let mut names: Vec<_> = v.proven_bad.iter().map(|(p, _)| *p).collect();
        names.sort();
        assert_eq!(names, vec![peer(2), peer(4)]);
        // Latest has two bad blocks, so only the first-copies combination is right: it is
        // the second combination hashed (latest, then first); a budget of 1 stops before.
        let mut a = build();
        let v = judge(&m, 0, &mut a, 1, Some(0)).unwrap();
        assert!(v.good.is_none() && v.exhausted && v.hashes == 1);
        assert!(
            judge(&m, 0, &mut a, 1, Some(0)).is_none(),
            "nothing more once the budget is spent (and said once)"
        );
        // Own sets are tried past the budget: peer 3 sends block 0 and has a whole set.
        assert_eq!(add(&mut a, &content, 0, false, 3), Added::NewSender);
        let v = judge(&m, 0, &mut a, 1, Some(0)).unwrap();
        assert!(v.good.is_some() && v.hashes == 1 && !v.exhausted);
    }

    #[test]
    fn alternatives_respect_their_budget() {
        let (_, content) = torrent();
        let mut a = Assembly::new(0, false);
        add(&mut a, &content, 0, false, 1);
        let (b, bad) = block(&content, 0, true, 0);
        assert_eq!(a.add(b, bad, peer(2), 8, |_| false), Added::NoRoom);
        assert_eq!((a.bytes, a.alt_bytes), (16384, 0));
    }
}
