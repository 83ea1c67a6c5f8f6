//! One connection to one peer: the handshakes, the ut_metadata requests and answers, the
//! deadlines. Input is cut into messages by the wire layer's framing core; only the peer's
//! BEP 10 handshake and ut_metadata messages are buffered (up to `max_message_len`), every
//! other message is skipped as it streams past.

use std::collections::BTreeMap;

use super::{FetchLimits, Outcome, Reason};
use crate::swarm::metadata::METADATA_PIECE;
use crate::swarm::metainfo::{info_hash_of, Metainfo, MetainfoError};
use crate::wire::infohash::InfoHash;
use crate::wire::peerwire::emit;
use crate::wire::peerwire::framing::{Framed, Framing};
use crate::wire::peerwire::{self, Handshake, Kind};

/// Azureus-style client prefix, so a peer (and its operator) can tell who is asking.
pub const PEER_ID_PREFIX: &[u8; 8] = b"-PC0001-";
/// The id we ask peers to send ut_metadata messages to us under.
pub const UT_METADATA_ID: u8 = 1;
/// BEP 10: the extension protocol bit, 0x10 in reserved byte 5.
const RESERVED: [u8; 8] = [0, 0, 0, 0, 0, 0x10, 0, 0];
/// Queued output past which requests made to us go unanswered: answering is a courtesy
/// (BEP 9 lets a peer wait), and a peer asking faster than the caller drains must not grow
/// the queue.
pub const MAX_QUEUED: usize = 16 * 1024;

/// A peer id with our prefix and 12 bytes the caller chose at random, as alphanumerics
/// (clients print peer ids).
pub fn our_peer_id(random: [u8; 12]) -> [u8; 20] {
    const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut id = [0u8; 20];
    id[..8].copy_from_slice(PEER_ID_PREFIX);
    for (o, r) in id[8..].iter_mut().zip(random) {
        *o = ALPHABET[usize::from(r) % ALPHABET.len()];
    }
    id
}

#[derive(Debug)]
enum State {
    /// Waiting for the peer's 68-byte handshake.
    Handshake,
    /// Waiting for the peer's BEP 10 handshake.
    ExtHandshake,
    Fetching(Fetch),
    Done(Outcome),
}

#[derive(Debug)]
struct Fetch {
    /// The peer's id for ut_metadata: our requests and rejects go under it.
    peer_id: u8,
    size: usize,
    pieces: u32,
    /// Next piece never requested.
    next: u32,
    /// Requested, not yet answered.
    outstanding: Vec<u32>,
    got: BTreeMap<u32, Vec<u8>>,
}

/// The message being read: skipped, or collected whole (extended id, body).
#[derive(Debug)]
enum Reading {
    Skip,
    Collect { ext_id: u8, body: Vec<u8> },
}

#[derive(Debug)]
pub struct FetchSession {
    /// Apart from the rest so the framing's views can be handed to `Core` while borrowed.
    framing: Framing,
    core: Core,
}

#[derive(Debug)]
struct Core {
    info_hash: InfoHash,
    limits: FetchLimits,
    reading: Reading,
    state: State,
    out: Vec<u8>,
    started_us: u64,
    last_rx_us: u64,
}

impl FetchSession {
    /// A session that has just connected at `now_us`; our handshake and BEP 10 handshake
    /// are queued at once (the peer may wait for ours before sending its own).
    pub fn new(
        info_hash: InfoHash,
        our_peer_id: [u8; 20],
        now_us: u64,
        limits: FetchLimits,
    ) -> FetchSession {
        let mut out = Vec::with_capacity(128);
        emit::handshake(&mut out, RESERVED, info_hash.as_bytes(), &our_peer_id);
        // No `metadata_size` (we have none to give) and no `p`: nobody is to connect to us.
        let ext = format!("d1:md11:ut_metadatai{UT_METADATA_ID}ee1:v9:peercachee");
        emit::extended(&mut out, 0, &[ext.as_bytes()]);
        FetchSession {
            framing: Framing::at_handshake(),
            core: Core {
                info_hash,
                limits,
                reading: Reading::Skip,
                state: State::Handshake,
                out,
                started_us: now_us,
                last_rx_us: now_us,
            },
        }
    }

    /// Bytes received from the peer, in runs of any size.
    pub fn on_bytes(&mut self, now_us: u64, mut data: &[u8]) {
        if self.is_done() {
            return;
        }
        // A deadline passed before these bytes counts, whether or not `on_timeout` ran.
        self.on_timeout(now_us);
        if self.is_done() || data.is_empty() {
            return;
        }
        let core = &mut self.core;
        core.last_rx_us = core.last_rx_us.max(now_us);
        while !data.is_empty() && !core.is_done() {
            let (used, framed) =
                self.framing
                    .step(data, |_, id| if id == Kind::Extended.id() { 2 } else { 1 });
            data = &data[used..];
            let event = match framed {
                Framed::Partial | Framed::KeepAlive | Framed::Prefix(_) => continue,
                Framed::NotHandshake => Event::Fail(Reason::Protocol("not a BitTorrent handshake")),
                Framed::Handshake(h) => core.handshake(h),
                Framed::Header { len, head, body } => core.header(len, head, body),
                Framed::Body { data, end } => {
                    if let Reading::Collect { body, .. } = &mut core.reading {
                        body.extend_from_slice(data);
                    }
                    if end {
                        core.message_end()
                    } else {
                        Event::None
                    }
                }
            };
            if let Event::Fail(r) = event {
                core.finish(Outcome::Failed(r));
            }
        }
    }

    /// The peer closed the connection (or it broke): over, unless it already was.
    pub fn on_closed(&mut self) {
        if !self.is_done() {
            self.core.finish(Outcome::Failed(Reason::Closed));
        }
    }

    /// Time passes; past a deadline the session fails with `Timeout`.
    pub fn on_timeout(&mut self, now_us: u64) {
        if self.poll_timeout().is_some_and(|t| now_us >= t) {
            self.core.finish(Outcome::Failed(Reason::Timeout));
        }
    }

    /// The earliest deadline (idle or total), while the session is open.
    pub fn poll_timeout(&self) -> Option<u64> {
        let c = &self.core;
        if c.is_done() {
            return None;
        }
        let idle = c
            .last_rx_us
            .saturating_add(c.limits.idle_timeout_secs.saturating_mul(1_000_000));
        let total = c
            .started_us
            .saturating_add(c.limits.total_timeout_secs.saturating_mul(1_000_000));
        Some(idle.min(total))
    }

    /// Bytes to send to the peer, all that is queued.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        (!self.core.out.is_empty()).then(|| std::mem::take(&mut self.core.out))
    }

    /// Bytes queued and not yet taken by `poll_transmit`.
    pub fn queued(&self) -> usize {
        self.core.out.len()
    }

    /// Bytes of the peer's message being collected (at most `max_message_len`).
    pub fn buffered(&self) -> usize {
        match &self.core.reading {
            Reading::Collect { body, .. } => body.len(),
            Reading::Skip => 0,
        }
    }

    /// Set once the session is over: the connection is to be closed.
    pub fn outcome(&self) -> Option<&Outcome> {
        match &self.core.state {
            State::Done(o) => Some(o),
            _ => None,
        }
    }

    pub fn into_outcome(self) -> Option<Outcome> {
        match self.core.state {
            State::Done(o) => Some(o),
            _ => None,
        }
    }

    pub fn is_done(&self) -> bool {
        self.core.is_done()
    }
}

impl Core {
    fn is_done(&self) -> bool {
        matches!(self.state, State::Done(_))
    }

    fn finish(&mut self, outcome: Outcome) {
        // Closing: whatever was still queued is not sent.
        self.out = Vec::new();
        self.reading = Reading::Skip;
        self.state = State::Done(outcome);
    }

    fn handshake(&mut self, h: Handshake<'_>) -> Event {
        if h.info_hash() != self.info_hash {
            return Event::Fail(Reason::WrongInfoHash);
        }
        if !h.extension_protocol() {
            return Event::Fail(Reason::NoExtensionSupport);
        }
        self.state = State::ExtHandshake;
        Event::None
    }

    fn header(&mut self, len: u32, head: &[u8], body: u32) -> Event {
        self.reading = Reading::Skip;
        let (Some(&id), Some(&ext_id)) = (head.first(), head.get(1)) else {
            return Event::None;
        };
        let wanted = match self.state {
            State::ExtHandshake => ext_id == 0,
            State::Fetching(_) => ext_id == UT_METADATA_ID,
            _ => false,
        };
        if id != Kind::Extended.id() || !wanted {
            return Event::None;
        }
        if len > self.limits.max_message_len {
            return Event::Fail(Reason::Protocol("extended message over the length cap"));
        }
        self.reading = Reading::Collect {
            ext_id,
            body: Vec::with_capacity(body as usize),
        };
        if body == 0 {
            self.message_end()
        } else {
            Event::None
        }
    }

    fn message_end(&mut self) -> Event {
        let Reading::Collect { ext_id, body } = std::mem::replace(&mut self.reading, Reading::Skip)
        else {
            return Event::None;
        };
        if ext_id == 0 {
            self.ext_handshake(&body)
        } else {
            self.ut_metadata(&body)
        }
    }

    fn ext_handshake(&mut self, payload: &[u8]) -> Event {
        let Some(hs) = peerwire::parse_ext_handshake(payload) else {
            return Event::Fail(Reason::Protocol("extended handshake is not bencode"));
        };
        // BEP 10: id 0 means the extension is disabled.
        let peer_id = hs
            .ids
            .iter()
            .find(|(name, id)| name == "ut_metadata" && *id != 0)
            .map(|&(_, id)| id);
        let (Some(peer_id), Some(size)) = (peer_id, hs.metadata_size) else {
            return Event::Fail(Reason::NoExtensionSupport);
        };
        if size > self.limits.max_metadata_size {
            return Event::Fail(Reason::TooLarge(size));
        }
        let Ok(size) = usize::try_from(size) else {
            return Event::Fail(Reason::TooLarge(size));
        };
        let Ok(pieces) = u32::try_from(size.div_ceil(METADATA_PIECE)) else {
            return Event::Fail(Reason::TooLarge(size as u64));
        };
        if size == 0 {
            return Event::Fail(Reason::Protocol("metadata_size 0"));
        }
        self.state = State::Fetching(Fetch {
            peer_id,
            size,
            pieces,
            next: 0,
            outstanding: Vec::new(),
            got: BTreeMap::new(),
        });
        self.request_more();
        Event::None
    }

    fn request_more(&mut self) {
        let State::Fetching(f) = &mut self.state else {
            return;
        };
        while f.next < f.pieces
            && (f.outstanding.len() as u64) < u64::from(self.limits.max_outstanding.max(1))
        {
            let dict = format!("d8:msg_typei0e5:piecei{}ee", f.next);
            emit::extended(&mut self.out, f.peer_id, &[dict.as_bytes()]);
            f.outstanding.push(f.next);
            f.next += 1;
        }
    }

    fn ut_metadata(&mut self, payload: &[u8]) -> Event {
        let State::Fetching(f) = &mut self.state else {
            return Event::None;
        };
        let Some(m) = peerwire::parse_ut_metadata(payload) else {
            return Event::Fail(Reason::Protocol("ut_metadata message is not bencode"));
        };
        match m.msg_type {
            0 => {
                // A request to us: we hold nothing to give. Answer with a reject, unless
                // the peer is asking faster than our output is drained.
                if self.out.len() < MAX_QUEUED {
                    let dict = format!("d8:msg_typei2e5:piecei{}ee", m.piece);
                    emit::extended(&mut self.out, f.peer_id, &[dict.as_bytes()]);
                }
                Event::None
            }
            1 => {
                let Some(at) = u32::try_from(m.piece)
                    .ok()
                    .and_then(|p| f.outstanding.iter().position(|&o| o == p))
                else {
                    return Event::Fail(Reason::Protocol("metadata piece not asked for"));
                };
                let Some(total) = m.total_size else {
                    return Event::Fail(Reason::Protocol("metadata piece without total_size"));
                };
                if u64::try_from(total).is_ok_and(|t| t > self.limits.max_metadata_size) {
                    return Event::Fail(Reason::TooLarge(total as u64));
                }
                if usize::try_from(total) != Ok(f.size) {
                    return Event::Fail(Reason::Protocol("total_size differs from metadata_size"));
                }
                let piece = f.outstanding.swap_remove(at);
                let start = piece as usize * METADATA_PIECE;
                let want = (f.size - start).min(METADATA_PIECE);
                if m.data.len() != want {
                    return Event::Fail(Reason::Protocol("metadata piece of the wrong length"));
                }
                f.got.insert(piece, m.data.to_vec());
                if f.got.len() as u64 == u64::from(f.pieces) {
                    let raw: Vec<u8> = std::mem::take(&mut f.got).into_values().flatten().collect();
                    self.finish(self.verify(&raw));
                    return Event::None;
                }
                self.request_more();
                Event::None
            }
            2 => match u32::try_from(m.piece) {
                Ok(p) if f.outstanding.contains(&p) => Event::Fail(Reason::Rejected),
                _ => Event::None,
            },
            // BEP 9: unknown message types are ignored.
            _ => Event::None,
        }
    }

    fn verify(&self, raw: &[u8]) -> Outcome {
        match Metainfo::from_info_checked(raw, &self.info_hash) {
            Ok(m) => Outcome::Metadata(m),
            Err(MetainfoError::HashMismatch) => Outcome::Failed(Reason::HashMismatch),
            // Not a dictionary we can read: a peer's garbage unless it hashes right.
            Err(e) if info_hash_of(raw) == self.info_hash => Outcome::Failed(Reason::Unusable(e)),
            Err(_) => Outcome::Failed(Reason::HashMismatch),
        }
    }
}

enum Event {
    None,
    Fail(Reason),
}
