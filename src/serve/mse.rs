//! Where the plain peer wire starts in one direction of an MSE/PE connection that selected
//! plaintext (crypto_select 0x01). The box holds no DH secret, so it cannot read the RC4
//! parts of the exchange; it can only recognise the first plaintext bytes. This is the
//! search, over the bytes held so far; `framer.rs` holds them and frames from the start
//! found.
//!
//! The two layouts (<https://wiki.vuze.com/w/Message_Stream_Encryption>):
//!
//! - initiator A: Ya (96), PadA (0..=512), HASH('req1', S) (20), HASH('req2', SKEY) xor
//!   HASH('req3', S) (20), RC4(VC (8), crypto_provide (4), len(PadC) (2), PadC (0..=512),
//!   len(IA) (2)), RC4(IA), then plaintext. IA usually holds A's handshake (aria2); libtorrent
//!   sends an empty IA and its handshake in the clear.
//! - responder B: Yb (96), PadB (0..=512), RC4(VC, crypto_select (4), len(PadD) (2), PadD
//!   (0..=512)), then plaintext, starting with B's handshake.
//!
//! Everything before the plaintext is random to us (DH keys, random pads, hashes, RC4
//! output). A start is accepted at offset `o` (at least [`MIN_START_RESPONDER`], or
//! [`MIN_START_INITIATOR`] for the initiator's direction, at most [`MAX_START`]) when either
//!
//! 1. the 20-byte protocol string `\x13BitTorrent protocol` begins at `o`: 160 fixed bits;
//! 2. or the held bytes from `o` are a chain of complete messages the splice accepts,
//!    ending exactly at the end of the bytes fed so far, whose first message is one a client
//!    sends first (an extended handshake with a complete bencoded dictionary, HAVE_ALL,
//!    HAVE_NONE, BITFIELD, INTERESTED, UNCHOKE, or a REQUEST of at most 16 KiB at a 16 KiB
//!    aligned offset), carrying at least [`MIN_EVIDENCE`] bits of evidence (below);
//!
//! and no earlier candidate is still possible (one whose first message is a sender's first
//! message and whose chain has not failed yet). The true start is such a candidate whenever
//! rule 2 could accept a later offset, so a start inside the plaintext (a REQUEST-looking run
//! inside a BITFIELD, say) is never taken over it.
//!
//! **Why a false start is astronomically unlikely.** Before the true start every byte is, to
//! us, uniformly random. Each message of a chain passes a test that random bytes pass with
//! probability at most 2^-e, e being its evidence: a fixed-length message (exact 32-bit
//! length, one of at most 15 ids that have it) 36 bits; a variable-length one (length below
//! 2^18, one of 4 ids) 20 bits; an extended handshake as first message 44 bits (20, the
//! extension id 0, the dictionary's opening `d` and closing `e`; everything else the bencode
//! decoder demands is extra margin); a REQUEST of at most 16 KiB at a 16 KiB aligned offset
//! 68 bits (36, 14 zero bits of the offset, 18 of the length). Keep-alives count nothing
//! (runs of zeros are common in plaintext and in zero pads). The messages of a chain occupy
//! disjoint bytes, so a chain whose evidence reaches T has probability at most 2^-T for each
//! sequence of message classes; the shortest chains reaching 96 bits have at most 6
//! messages of 4 classes, at most 2^12 sequences. Over at most 2^11 candidate offsets one
//! direction is falsely located with probability below 2^11 × 2^12 × 2^-96 = 2^-73, and
//! through rule 1 below 2^-149. RC4 connections therefore stay unlocated (and end `Broken`,
//! never served), whatever crypto_select bytes they carry.
//!
//! What real streams show: the responder's plaintext starts with its handshake (rule 1);
//! aria2 as initiator starts with an extended handshake and a BITFIELD or HAVE_ALL (64 or 80
//! bits) and reaches 96 with its INTERESTED, before its first REQUEST.
//!
//! Bounds: candidates stop at [`MAX_START`] (the longest prefix with an IA of up to
//! [`MAX_IA`] bytes), so a direction with no candidate left is given up after about
//! 1.7 KiB; and at most [`MSE_HOLD`] bytes are held in all (the start's chain must reach
//! its evidence within them: an extended handshake, a BITFIELD of up to 50 000 pieces and an
//! INTERESTED fit).

use crate::wire::bencode::{self, Value};
use crate::wire::peerwire::{Kind, PROTOCOL};

/// Ya/Yb: a 768-bit Diffie-Hellman public value.
const DH_KEY: usize = 96;
/// PadA, PadB, PadC, PadD are each at most 512 bytes.
const MAX_PAD: usize = 512;
/// VC (8), crypto_provide/crypto_select (4), len(PadC/PadD) (2).
const VC_CRYPTO_LEN: usize = 8 + 4 + 2;
/// The two 20-byte hashes of the initiator's third step.
const SYNC_HASHES: usize = 20 + 20;
/// The responder's plaintext starts at least this far in (no pads).
pub const MIN_START_RESPONDER: usize = DH_KEY + VC_CRYPTO_LEN;
/// The initiator's: also the two hashes and len(IA) (and an empty IA).
pub const MIN_START_INITIATOR: usize = DH_KEY + SYNC_HASHES + VC_CRYPTO_LEN + 2;
/// The initial payload we allow for: every client we know puts its handshake (68 bytes) or
/// nothing there; a longer IA is not located (the connection is then not served).
pub const MAX_IA: usize = 512;
/// The latest plaintext start of either layout.
pub const MAX_START: usize = DH_KEY + MAX_PAD + SYNC_HASHES + VC_CRYPTO_LEN + MAX_PAD + 2 + MAX_IA;
/// Bytes held at most while locating (plus the run being fed): the latest start and room
/// for the first messages to reach their evidence.
pub const MSE_HOLD: usize = 8192;
/// Bits of evidence a chain of messages needs (see the module documentation).
pub const MIN_EVIDENCE: u32 = 96;
/// Candidate starts followed at once; random bytes yield one about every 2^26 offsets, so
/// this is reached only by a stream built to look like many starts (it is then not served).
const MAX_CANDIDATES: usize = 32;

const EV_FIXED: u32 = 36;
const EV_VARIABLE: u32 = 20;
const EV_EXT_HANDSHAKE: u32 = EV_VARIABLE + 8 + 16;
const EV_ALIGNED_REQUEST: u32 = EV_FIXED + 14 + 18;
const BLOCK: u32 = 16 * 1024;

/// Where the plaintext starts, as an offset into the held bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// A plaintext handshake begins here.
    Handshake(usize),
    /// A message begins here.
    Message(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not decided: hold the bytes and wait for more.
    Hold,
    Located(Start),
    /// No start can be found any more: not an MSE/PE connection that selected plaintext.
    NotFound,
}

/// The search over one direction's first bytes.
#[derive(Clone, Debug)]
pub struct Locator {
    held: Vec<u8>,
    min_start: usize,
    /// The first offset not yet looked at as a candidate.
    next: usize,
    /// Candidates whose chain has not failed, in stream order, with how far their chain
    /// was followed (held bytes only grow, so each is framed once in all).
    live: Vec<(usize, Progress)>,
    /// Where the protocol string begins, once seen.
    handshake: Option<usize>,
}

impl Locator {
    /// `seen`: the stream's first bytes, already fed; `initiator`: this direction opened the
    /// connection (its plaintext starts later).
    pub fn new(seen: &[u8], initiator: bool) -> Locator {
        let min_start = if initiator {
            MIN_START_INITIATOR
        } else {
            MIN_START_RESPONDER
        };
        Locator {
            held: seen.to_vec(),
            min_start,
            next: min_start,
            live: Vec::new(),
            handshake: None,
        }
    }

    /// The bytes held: the stream from its first byte.
    pub fn held(&self) -> &[u8] {
        &self.held
    }

    pub fn into_held(self) -> Vec<u8> {
        self.held
    }

    /// The next in-order bytes; `max_len` bounds messages as the framer does.
    pub fn push(&mut self, run: &[u8], max_len: u32) -> Verdict {
        // The protocol string may straddle the previous run's end.
        let search_from = self
            .held
            .len()
            .saturating_sub(PROTOCOL.len() - 1)
            .max(self.min_start);
        self.held.extend_from_slice(run);
        if self.handshake.is_none() {
            self.handshake = self
                .held
                .get(search_from..)
                .and_then(|h| h.windows(PROTOCOL.len()).position(|w| w == PROTOCOL))
                .map(|p| p + search_from)
                .filter(|&p| p <= MAX_START);
        }
        loop {
            self.scan();
            match self.judge(max_len) {
                Some(v) => return v,
                // Every candidate failed but the scan stopped at the cap: look further.
                None if self.scan_blocked() => continue,
                None => break,
            }
        }
        if let Some(h) = self.handshake {
            return Verdict::Located(Start::Handshake(h));
        }
        let no_more_starts = self.next > MAX_START && self.held.len() >= MAX_START + PROTOCOL.len();
        if self.held.len() >= MSE_HOLD || no_more_starts {
            return Verdict::NotFound;
        }
        Verdict::Hold
    }

    /// The last offset worth looking at: 5 bytes (length and id) needed, none past the
    /// latest start or at or past a handshake.
    fn scan_end(&self) -> usize {
        let mut end = self.held.len().saturating_sub(4).min(MAX_START + 1);
        if let Some(h) = self.handshake {
            end = end.min(h);
        }
        end
    }

    fn scan_blocked(&self) -> bool {
        self.live.is_empty() && self.next < self.scan_end()
    }

    /// New candidates: offsets whose first 5 bytes could begin a sender's first message.
    fn scan(&mut self) {
        let end = self.scan_end();
        while self.next < end && self.live.len() < MAX_CANDIDATES {
            let o = self.next;
            if self.held.get(o..o + 5).is_some_and(first_head) {
                self.live.push((o, Progress::default()));
            }
            self.next += 1;
        }
    }

    /// Drops failed candidates; a verdict when the earliest one left decides. None when none
    /// is left.
    fn judge(&mut self, max_len: u32) -> Option<Verdict> {
        while let Some((o, progress)) = self.live.first_mut() {
            let o = *o;
            match chain(self.held.get(o..).unwrap_or(&[]), max_len, progress) {
                Chain::Failed => {
                    self.live.remove(0);
                }
                Chain::Open {
                    evidence,
                    complete: true,
                } if evidence >= MIN_EVIDENCE => {
                    return Some(Verdict::Located(Start::Message(o)));
                }
                // The earliest live candidate blocks every later one, the handshake too.
                Chain::Open { .. } => return Some(Verdict::Hold),
            }
        }
        None
    }
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Length and id of a message a client may send first after the exchange. Lengths are
/// bounded by what can be held.
fn first_head(h: &[u8]) -> bool {
    let (Some(len), Some(&id)) = (be32(h, 0), h.get(4)) else {
        return false;
    };
    match Kind::from_id(id) {
        Some(Kind::Extended | Kind::Bitfield) => (2..=MSE_HOLD as u32).contains(&len),
        Some(Kind::HaveAll | Kind::HaveNone | Kind::Interested | Kind::Unchoke) => len == 1,
        Some(Kind::Request) => len == 13,
        _ => false,
    }
}

/// How far a candidate's chain was followed: the offset (from the candidate) of its first
/// message not complete yet, and the evidence of the messages before it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Progress {
    at: usize,
    evidence: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chain {
    /// A message the splice does not accept, or a first message no client sends first.
    Failed,
    /// Valid so far; `complete`: it ends exactly at the end of the bytes.
    Open { evidence: u32, complete: bool },
}

/// Frames `b` from its first byte as messages (resuming at `p`); what the framer would
/// accept, judged as evidence of a start.
fn chain(b: &[u8], max_len: u32, p: &mut Progress) -> Chain {
    loop {
        let (at, evidence) = (p.at, p.evidence);
        let open = |complete| Chain::Open { evidence, complete };
        if at == b.len() {
            return open(at > 0);
        }
        let Some(len) = be32(b, at) else {
            return open(false);
        };
        let first = at == 0;
        if len == 0 {
            if first {
                return Chain::Failed;
            }
            p.at += 4;
            continue;
        }
        let Some(&id) = b.get(at + 4) else {
            return open(false);
        };
        let Some(kind) = Kind::from_id(id).filter(|k| k.valid_len(len, max_len)) else {
            return Chain::Failed;
        };
        let end = at + 4 + len as usize;
        let Some(body) = b.get(at + 5..end) else {
            return open(false);
        };
        let sent_first = matches!(
            kind,
            Kind::Extended
                | Kind::Bitfield
                | Kind::HaveAll
                | Kind::HaveNone
                | Kind::Interested
                | Kind::Unchoke
                | Kind::Request
        );
        if first && !sent_first {
            return Chain::Failed;
        }
        let e = match kind {
            Kind::Extended if first => {
                if !ext_handshake(body) {
                    return Chain::Failed;
                }
                EV_EXT_HANDSHAKE
            }
            Kind::Request if aligned_request(body) => EV_ALIGNED_REQUEST,
            Kind::Request if first => return Chain::Failed,
            Kind::Bitfield | Kind::Extended | Kind::Piece | Kind::Hashes => EV_VARIABLE,
            _ => EV_FIXED,
        };
        p.evidence = evidence.saturating_add(e);
        p.at = end;
    }
}

/// A REQUEST body (index, begin, length) as clients send them: a block of at most 16 KiB at
/// a 16 KiB boundary.
fn aligned_request(body: &[u8]) -> bool {
    matches!((be32(body, 4), be32(body, 8)), (Some(begin), Some(len))
        if begin % BLOCK == 0 && (1..=BLOCK).contains(&len))
}

/// An extended message body that is a BEP 10 handshake: extension id 0, then exactly one
/// bencoded dictionary.
fn ext_handshake(body: &[u8]) -> bool {
    let Some((&0, dict)) = body.split_first() else {
        return false;
    };
    let limits = bencode::Limits {
        max_depth: 8,
        max_items: 4096,
    };
    matches!(bencode::decode_prefix(dict, limits),
        Ok((Value::Dict { .. }, used)) if used == dict.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::peerwire::{emit, BlockRef};

    fn random(rng: &mut fastrand::Rng, n: usize) -> Vec<u8> {
        (0..n).map(|_| rng.u8(..)).collect()
    }

    fn chain_of(b: &[u8], max_len: u32) -> Chain {
        chain(b, max_len, &mut Progress::default())
    }

    fn ext_hs() -> Vec<u8> {
        let mut m = Vec::new();
        emit::extended(&mut m, 0, &[b"d1:md11:ut_metadatai3eee"]);
        m
    }

    #[test]
    fn evidence_of_first_messages() {
        let max = 1 << 20;
        let mut s = ext_hs();
        assert_eq!(
            chain_of(&s, max),
            Chain::Open {
                evidence: EV_EXT_HANDSHAKE,
                complete: true
            }
        );
        s.extend_from_slice(&[0, 0, 0, 1, 2]);
        emit::request(
            &mut s,
            BlockRef {
                index: 3,
                begin: 32768,
                length: 16384,
            },
        );
        assert_eq!(
            chain_of(&s, max),
            Chain::Open {
                evidence: 44 + 36 + 68,
                complete: true
            }
        );
        assert_eq!(
            chain_of(&s[..s.len() - 1], max),
            Chain::Open {
                evidence: 80,
                complete: false
            }
        );
        // not a first message: HAVE, an unaligned REQUEST, a keep-alive, an extended
        // message that is not a handshake
        let mut have = Vec::new();
        emit::have(&mut have, 1);
        assert_eq!(chain_of(&have, max), Chain::Failed);
        let mut r = Vec::new();
        emit::request(
            &mut r,
            BlockRef {
                index: 0,
                begin: 100,
                length: 16384,
            },
        );
        assert_eq!(chain_of(&r, max), Chain::Failed);
        assert_eq!(chain_of(&[0, 0, 0, 0, 0, 0, 0, 1, 2], max), Chain::Failed);
        let mut x = Vec::new();
        emit::extended(&mut x, 0, &[b"d1:m"]);
        assert_eq!(chain_of(&x, max), Chain::Failed);
    }

    #[test]
    fn random_bytes_are_never_located() {
        // Far more candidates than a real stream offers, none accepted.
        for seed in 0..200 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut l = Locator::new(&[], seed % 2 == 0);
            let stream = random(&mut rng, MSE_HOLD);
            let mut v = Verdict::Hold;
            for run in stream.chunks(1 + rng.usize(..1460)) {
                v = l.push(run, 1 << 20);
                if v != Verdict::Hold {
                    break;
                }
            }
            assert_eq!(v, Verdict::NotFound, "seed {seed}");
            assert!(l.held().len() < MAX_START + 1500, "given up early");
        }
    }

    #[test]
    fn a_start_inside_the_plaintext_does_not_win_over_the_true_one() {
        // A BITFIELD whose body holds a chain of REQUEST-looking messages: from inside it the
        // bytes frame to the end with plenty of evidence, but the BITFIELD's own start is
        // earlier and still possible, so it is the one taken once the stream can prove it.
        let mut rng = fastrand::Rng::with_seed(5);
        let mut s = random(&mut rng, 300);
        let p = s.len();
        let mut inner = vec![0, 0, 0, 1, 2];
        for k in 0..4 {
            emit::request(
                &mut inner,
                BlockRef {
                    index: k,
                    begin: 0,
                    length: 16384,
                },
            );
        }
        emit::message(&mut s, Kind::Bitfield, &inner);
        let mut l = Locator::new(&[], false);
        assert_eq!(l.push(&s, 1 << 20), Verdict::Hold, "20 bits only");
        let mut more = vec![0, 0, 0, 1, 2];
        emit::request(
            &mut more,
            BlockRef {
                index: 9,
                begin: 0,
                length: 16384,
            },
        );
        assert_eq!(l.push(&more, 1 << 20), Verdict::Located(Start::Message(p)));
    }
}

/// MSE/PE prefixes of the exact layout, for tests: every part is random bytes to the box
/// (DH values, random pads, hashes, RC4 output), so only the lengths matter.
#[cfg(test)]
pub(crate) mod fake {
    fn random(rng: &mut fastrand::Rng, n: usize) -> Vec<u8> {
        (0..n).map(|_| rng.u8(..)).collect()
    }

    /// Ya, PadA, the two hashes, RC4(VC, crypto_provide, len(PadC), PadC, len(IA)), RC4(IA).
    pub(crate) fn initiator(
        rng: &mut fastrand::Rng,
        pad_a: usize,
        pad_c: usize,
        ia: usize,
    ) -> Vec<u8> {
        random(rng, 96 + pad_a + 20 + 20 + 8 + 4 + 2 + pad_c + 2 + ia)
    }

    /// Yb, PadB, RC4(VC, crypto_select, len(PadD), PadD).
    pub(crate) fn responder(rng: &mut fastrand::Rng, pad_b: usize, pad_d: usize) -> Vec<u8> {
        random(rng, 96 + pad_b + 8 + 4 + 2 + pad_d)
    }

    /// RC4 output standing for an encrypted peer wire.
    pub(crate) fn rc4(rng: &mut fastrand::Rng, n: usize) -> Vec<u8> {
        random(rng, n)
    }
}
