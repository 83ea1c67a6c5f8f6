//! One piece being assembled from blocks, and the hash's judgement of it. Copies of the
//! same block start with different bytes are kept apart until the piece hash decides which
//! is right; the senders of copies that are not in the good piece are the liars.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::{Metainfo, VerifiedPiece};

struct Copy {
    data: Vec<u8>,
    from: SocketAddr,
}

/// One piece being assembled: candidate copies per block start.
pub(super) struct Assembly {
    blocks: BTreeMap<u32, Vec<Copy>>,
    pub(super) bytes: usize,
    /// Position in eviction order (older first).
    pub(super) seq: u64,
    /// Held without metainfo: counted against the quarantine cap.
    pub(super) quarantined: bool,
}

/// What `Assembly::add` did with a block.
#[derive(PartialEq, Eq)]
pub(super) enum Added {
    Yes,
    /// An identical copy is already held.
    Duplicate,
    /// `max_copies` other copies of this block start are held already.
    Full,
}

impl Assembly {
    /// An empty assembly, `seq` in eviction order, held in quarantine or not.
    pub(super) fn new(seq: u64, quarantined: bool) -> Assembly {
        Assembly {
            blocks: BTreeMap::new(),
            bytes: 0,
            seq,
            quarantined,
        }
    }

    /// Add a block, as one more alternative copy of its start if it differs from those
    /// held (tried when the first assembly fails its hash), up to `max_copies`.
    pub(super) fn add(
        &mut self,
        begin: u32,
        data: Vec<u8>,
        from: SocketAddr,
        max_copies: usize,
    ) -> Added {
        let copies = self.blocks.entry(begin).or_default();
        if copies.iter().any(|c| c.data == data) {
            return Added::Duplicate;
        }
        if copies.len() >= max_copies {
            return Added::Full;
        }
        self.bytes += data.len();
        copies.push(Copy { data, from });
        Added::Yes
    }

    /// Whether first copies (and pads) cover [0, len) exactly: a walk over block starts,
    /// so checking after every block costs nothing like building the piece would.
    pub(super) fn complete(&self, len: u32, pads: &[(u32, u32)]) -> bool {
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
                return true;
            }
            let Some(c) = self.blocks.get(&covered).and_then(|c| c.first()) else {
                return false;
            };
            if c.data.is_empty() {
                return false;
            }
            covered += c.data.len() as u32;
        }
    }

    /// The piece from the first copy of each block, if [0, len) is covered with blocks
    /// that fit exactly (pads are zero-filled). Returns a buffer holding the piece from an
    /// offset that puts it at a [`super::PIECE_ALIGN`]-aligned address, the offset, and the
    /// senders used.
    fn build(
        &self,
        len: u32,
        pads: &[(u32, u32)],
        pick: &BTreeMap<u32, usize>,
    ) -> Option<(Vec<u8>, usize, Vec<SocketAddr>)> {
        // Filled front to back (pads as zeros), so never zeroed first: the piece so far is
        // out[start..], and covered == out.len() - start.
        let mut out: Vec<u8> = Vec::with_capacity(len as usize + super::PIECE_ALIGN);
        let start = out.as_ptr().align_offset(super::PIECE_ALIGN);
        if start > super::PIECE_ALIGN {
            return None; // cannot happen for bytes; never index past the capacity
        }
        out.resize(start, 0);
        let mut covered = 0u32;
        let mut from = Vec::new();
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
                return Some((out, start, from));
            }
            let copies = self.blocks.get(&covered)?;
            let c = &copies[pick
                .get(&covered)
                .copied()
                .unwrap_or(0)
                .min(copies.len() - 1)];
            let end = covered as usize + c.data.len();
            if end > len as usize || c.data.is_empty() {
                return None;
            }
            out.extend_from_slice(&c.data);
            if !from.contains(&c.from) {
                from.push(c.from);
            }
            covered = end as u32;
        }
    }
}

/// What a complete piece's hash decided.
pub(super) struct Verdict {
    pub(super) good: Option<VerifiedPiece>,
    /// Senders of copies that are not in the good piece (all of the senders when none
    /// verified): the hostile-peer signal.
    pub(super) liars: Vec<SocketAddr>,
}

/// The hash decides, trying alternative copies of contested blocks. Pure: runs on the
/// engine thread or the hash thread alike. None when the blocks cannot make the piece.
pub(super) fn judge(m: &Metainfo, index: u32, a: &Assembly) -> Option<Verdict> {
    let len = m.piece_len(index)?;
    let pads = m.pad_ranges(index);
    let (data, start, from) = a.build(len, &pads, &BTreeMap::new())?;
    let mut good = VerifiedPiece::verify_at(m, index, data, start).ok();
    if good.is_none() {
        'alt: for (&begin, copies) in &a.blocks {
            for k in 1..copies.len() {
                let pick = BTreeMap::from([(begin, k)]);
                if let Some((d, at, _)) = a.build(len, &pads, &pick) {
                    if let Ok(v) = VerifiedPiece::verify_at(m, index, d, at) {
                        good = Some(v);
                        break 'alt;
                    }
                }
            }
        }
    }
    let mut liars: Vec<SocketAddr> = Vec::new();
    match &good {
        Some(v) => {
            // A block's only copy is in the good piece by construction: compare the rest.
            for (&begin, copies) in a.blocks.iter().filter(|(_, c)| c.len() > 1) {
                for c in copies {
                    let end = begin as usize + c.data.len();
                    if v.data().get(begin as usize..end) != Some(&c.data[..])
                        && !liars.contains(&c.from)
                    {
                        liars.push(c.from);
                    }
                }
            }
        }
        None => liars = from,
    }
    Some(Verdict { good, liars })
}
