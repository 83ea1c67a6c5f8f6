//! The peer-wire conversation of one session, as a lazy sequence of application writes.
//!
//! The script is a state machine rather than a list so memory stays constant in the torrent
//! size; it is run once "dry" (lengths only) to plan impairments, then again for real.

use std::collections::VecDeque;

use crate::wire::peerwire::{emit, BlockRef, Kind};

use super::torrent::{bint, bstr, fill_content, Torrent, BLOCK_LEN};

/// Extended-message ids each side announces in its BEP 10 handshake. They differ on purpose:
/// a BEP 9 message carries the id the RECEIVER announced, and equal ids would hide an engine
/// that looks up the wrong side's table.
pub const LEECHER_UT_METADATA: u8 = 3;
pub const SEEDER_UT_METADATA: u8 = 2;
pub const UT_PEX: u8 = 1;
/// BEP 9 metadata piece size.
pub const METADATA_PIECE: u32 = 16384;
/// Requests a leecher keeps in flight (a typical client default is 4..=500; small keeps the
/// c2s stream interleaved with the s2c one).
const PIPELINE: usize = 8;
const CLIENT_VERSION: &[u8] = b"peercache-synth 0.1";

/// An MSE/PE key exchange (<https://wiki.vuze.com/w/Message_Stream_Encryption>) before the
/// peer wire, selecting plaintext: the leecher initiates, its handshake travels encrypted
/// in IA, the seeder's handshake follows its crypto_select in the clear. Every part is
/// random bytes of its exact length (DH values, random pads, hashes, RC4 output), as they
/// look to anyone without the DH secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mse {
    /// PadA, PadB, PadC, PadD: each 0..=512 bytes.
    pub pads: [u16; 4],
    /// Where the random bytes come from.
    pub seed: u64,
}

impl Mse {
    /// Ya and PadA.
    fn initiator_key(&self) -> u32 {
        96 + u32::from(self.pads[0])
    }
    /// Yb and PadB.
    fn responder_key(&self) -> u32 {
        96 + u32::from(self.pads[1])
    }
    /// HASH('req1', S), HASH('req2', SKEY) xor HASH('req3', S), RC4(VC, crypto_provide,
    /// len(PadC), PadC, len(IA)), RC4(IA = the leecher's 68-byte handshake).
    fn initiator_sync(&self) -> u32 {
        20 + 20 + 8 + 4 + 2 + u32::from(self.pads[2]) + 2 + 68
    }
    /// RC4(VC, crypto_select, len(PadD), PadD).
    fn responder_select(&self) -> u32 {
        8 + 4 + 2 + u32::from(self.pads[3])
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    pub index: u32,
    pub begin: u32,
    pub len: u32,
}

#[derive(Clone, Debug)]
pub enum Msg {
    /// Part of an MSE/PE exchange: `len` random bytes drawn from `seed`. Not a message (not
    /// counted in the truth).
    Mse {
        len: u32,
        seed: u64,
    },
    Handshake {
        peer_id: [u8; 20],
    },
    ExtHandshake {
        ut_metadata: u8,
        metadata_size: Option<u64>,
    },
    Bitfield,
    HaveAll,
    Interested,
    Unchoke,
    Request(Block),
    Piece(Block),
    Have(u32),
    /// BEP 9 request; `ext_id` is the id the receiving seeder announced.
    MetaRequest {
        ext_id: u8,
        piece: u32,
    },
    /// BEP 9 data; `ext_id` is the id the receiving leecher announced.
    MetaData {
        ext_id: u8,
        piece: u32,
    },
}

impl Msg {
    /// Truth key of the message type.
    pub fn kind(&self) -> &'static str {
        match self {
            Msg::Mse { .. } => "mse",
            Msg::Handshake { .. } => "handshake",
            Msg::ExtHandshake { .. } | Msg::MetaRequest { .. } | Msg::MetaData { .. } => "extended",
            Msg::Bitfield => "bitfield",
            Msg::HaveAll => "have_all",
            Msg::Interested => "interested",
            Msg::Unchoke => "unchoke",
            Msg::Request(_) => "request",
            Msg::Piece(_) => "piece",
            Msg::Have(_) => "have",
        }
    }

    /// Bytes that must be delivered for the engine to count the message: the 13-byte header
    /// of a PIECE (the block may be partly lost), the whole message otherwise.
    pub fn header_len(&self, total: u64) -> u64 {
        match self {
            Msg::Piece(_) => 13,
            _ => total,
        }
    }

    /// Encoded length; cheap for the large messages so the dry run never builds content.
    pub fn encoded_len(&self, t: &Torrent) -> u64 {
        match self {
            Msg::Piece(b) => 13 + u64::from(b.len),
            Msg::Mse { len, .. } => u64::from(*len),
            _ => {
                let mut v = Vec::new();
                self.encode(t, &mut v);
                v.len() as u64
            }
        }
    }

    pub fn encode(&self, t: &Torrent, out: &mut Vec<u8>) {
        match self {
            Msg::Mse { len, seed } => {
                let mut rng = fastrand::Rng::with_seed(*seed);
                out.extend((0..*len).map(|_| rng.u8(..)));
            }
            Msg::Handshake { peer_id } => {
                // BEP 10 extension protocol: bit 0x10 of reserved byte 5; BEP 6 fast
                // extension: bit 0x04 of reserved byte 7.
                emit::handshake(
                    out,
                    [0, 0, 0, 0, 0, 0x10, 0, 0x04],
                    t.info_hash.as_bytes(),
                    peer_id,
                );
            }
            Msg::ExtHandshake {
                ut_metadata,
                metadata_size,
            } => {
                let mut d = vec![b'd'];
                bstr(&mut d, b"m");
                d.push(b'd');
                bstr(&mut d, b"ut_metadata");
                bint(&mut d, u64::from(*ut_metadata));
                bstr(&mut d, b"ut_pex");
                bint(&mut d, u64::from(UT_PEX));
                d.push(b'e');
                if let Some(size) = metadata_size {
                    bstr(&mut d, b"metadata_size");
                    bint(&mut d, *size);
                }
                bstr(&mut d, b"v");
                bstr(&mut d, CLIENT_VERSION);
                d.push(b'e');
                emit::extended(out, 0, &[&d]);
            }
            Msg::Bitfield => {
                let n = t.num_pieces as usize;
                let bytes = n.div_ceil(8);
                emit::header(out, Kind::Bitfield, bytes as u32);
                out.extend(std::iter::repeat_n(0xffu8, n / 8));
                // Spare bits of the last byte must be zero (BEP 3: clients drop peers
                // otherwise).
                if !n.is_multiple_of(8) {
                    out.push(0xffu8 << (8 - n % 8));
                }
            }
            Msg::HaveAll => emit::message(out, Kind::HaveAll, &[]),
            Msg::Interested => emit::message(out, Kind::Interested, &[]),
            Msg::Unchoke => emit::message(out, Kind::Unchoke, &[]),
            Msg::Request(b) => emit::request(
                out,
                BlockRef {
                    index: b.index,
                    begin: b.begin,
                    length: b.len,
                },
            ),
            Msg::Piece(b) => {
                // The header through the library; the content generated in place (a
                // block's bytes are never built twice).
                out.extend_from_slice(&emit::piece_header(b.index, b.begin, b.len));
                let at = out.len();
                out.resize(at + b.len as usize, 0);
                let offset = u64::from(b.index) * u64::from(t.piece_length) + u64::from(b.begin);
                fill_content(t.seed, t.index, offset, &mut out[at..]);
            }
            Msg::Have(i) => emit::have(out, *i),
            Msg::MetaRequest { ext_id, piece } => {
                let mut d = vec![b'd'];
                bstr(&mut d, b"msg_type");
                bint(&mut d, 0);
                bstr(&mut d, b"piece");
                bint(&mut d, u64::from(*piece));
                d.push(b'e');
                emit::extended(out, *ext_id, &[&d]);
            }
            Msg::MetaData { ext_id, piece } => {
                let start = *piece as usize * METADATA_PIECE as usize;
                let end = (start + METADATA_PIECE as usize).min(t.info.len());
                let chunk = t.info.get(start..end).unwrap_or(&[]);
                let mut d = vec![b'd'];
                bstr(&mut d, b"msg_type");
                bint(&mut d, 1);
                bstr(&mut d, b"piece");
                bint(&mut d, u64::from(*piece));
                bstr(&mut d, b"total_size");
                bint(&mut d, t.info.len() as u64);
                d.push(b'e');
                emit::extended(out, *ext_id, &[&d, chunk]);
            }
        }
    }
}

/// One application write: the messages a side hands to its socket at once.
#[derive(Clone, Debug)]
pub struct Write {
    pub from_leecher: bool,
    pub msgs: Vec<Msg>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// MSE/PE only: Ya + PadA, then Yb + PadB, then the rest of the initiator's side (the
    /// responder's rest goes with its handshake).
    MseInitiatorKey,
    MseResponderKey,
    MseInitiatorSync,
    LeecherHandshake,
    SeederHandshake,
    LeecherExt,
    SeederExtAndHaves,
    MetaRequests,
    MetaData(u32),
    Interested,
    Unchoke,
    InitialRequests,
    /// Directed (`--poison`): the leecher asks for what it is told, one block at a time;
    /// with nothing to do the script waits (see [`Script::waiting`]).
    Directed,
    /// Directed: the peer answers the REQUEST just sent.
    DirectedPiece(Block),
    /// Seeder answers the oldest outstanding request.
    SendPiece,
    /// Leecher reacts to the block it just got: HAVE if it completed a piece, next REQUEST.
    AfterPiece(Block),
    Done,
}

/// Walks blocks piece by piece, starting at `start_piece` and wrapping, so flows sharing a
/// torrent fetch in different orders (as rarest-first spreads real leechers).
#[derive(Clone, Debug)]
struct BlockWalk {
    start_piece: u32,
    done_pieces: u32,
    begin: u32,
}

impl BlockWalk {
    fn next(&mut self, t: &Torrent) -> Option<Block> {
        if self.done_pieces >= t.num_pieces {
            return None;
        }
        let index = ((u64::from(self.start_piece) + u64::from(self.done_pieces))
            % u64::from(t.num_pieces)) as u32;
        let plen = t.piece_len(index);
        let len = (plen - self.begin).min(BLOCK_LEN);
        let b = Block {
            index,
            begin: self.begin,
            len,
        };
        self.begin += len;
        if self.begin >= plen {
            self.begin = 0;
            self.done_pieces += 1;
        }
        Some(b)
    }
}

/// What a directed script is told to do next (`--poison`: the run decides which peer sends
/// which block when).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// The leecher REQUESTs the block, the peer answers with its PIECE.
    Piece(Block),
    /// The leecher announces a piece it has.
    Have(u32),
}

/// The orders of a directed script not carried out yet, and whether more will come.
#[derive(Clone, Debug, Default)]
struct Directions {
    pending: VecDeque<Order>,
    finished: bool,
}

/// The conversation of one session.
#[derive(Clone, Debug)]
pub struct Script {
    phase: Phase,
    magnet: bool,
    have_all: bool,
    leecher_id: [u8; 20],
    seeder_id: [u8; 20],
    walk: BlockWalk,
    outstanding: VecDeque<Block>,
    mse: Option<Mse>,
    /// Some: directed, block by block, instead of walking the torrent with a pipeline.
    directed: Option<Directions>,
}

impl Script {
    pub fn new(
        magnet: bool,
        have_all: bool,
        leecher_id: [u8; 20],
        seeder_id: [u8; 20],
        start_piece: u32,
    ) -> Self {
        Script {
            phase: Phase::LeecherHandshake,
            magnet,
            have_all,
            leecher_id,
            seeder_id,
            walk: BlockWalk {
                start_piece,
                done_pieces: 0,
                begin: 0,
            },
            outstanding: VecDeque::with_capacity(PIPELINE),
            mse: None,
            directed: None,
        }
    }

    /// After the unchoke, wait for orders ([`Script::order`]) instead of walking the
    /// torrent; the conversation ends after [`Script::finish`].
    pub fn directed(mut self) -> Self {
        self.directed = Some(Directions::default());
        self
    }

    /// Queue an order for a directed script (ignored by an undirected one).
    pub fn order(&mut self, o: Order) {
        if let Some(d) = self.directed.as_mut() {
            d.pending.push_back(o);
        }
    }

    /// A directed script ends once its orders are carried out.
    pub fn finish(&mut self) {
        if let Some(d) = self.directed.as_mut() {
            d.finished = true;
        }
    }

    /// A directed script with nothing to do until its next order: `next_write` said None
    /// without the conversation being over.
    pub fn waiting(&self) -> bool {
        self.phase == Phase::Directed && self.directed.as_ref().is_some_and(|d| !d.finished)
    }

    /// Open with an MSE/PE exchange that selects plaintext.
    pub fn with_mse(mut self, mse: Option<Mse>) -> Self {
        if mse.is_some() {
            self.phase = Phase::MseInitiatorKey;
        }
        self.mse = mse;
        self
    }

    /// MSE part `part` of `len` bytes (each part its own random bytes).
    fn mse_part(&self, part: u64, len: impl Fn(&Mse) -> u32) -> Vec<Msg> {
        self.mse
            .iter()
            .map(|m| Msg::Mse {
                len: len(m),
                seed: m.seed.wrapping_add(part),
            })
            .collect()
    }

    fn metadata_pieces(t: &Torrent) -> u32 {
        (t.info.len() as u64).div_ceil(u64::from(METADATA_PIECE)) as u32
    }

    /// The next write, or None when the conversation is over (then both sides close).
    pub fn next_write(&mut self, t: &Torrent) -> Option<Write> {
        loop {
            let (from_leecher, msgs, next) = match self.phase {
                Phase::Done => return None,
                Phase::MseInitiatorKey => (
                    true,
                    self.mse_part(0, Mse::initiator_key),
                    Phase::MseResponderKey,
                ),
                Phase::MseResponderKey => (
                    false,
                    self.mse_part(1, Mse::responder_key),
                    Phase::MseInitiatorSync,
                ),
                // The leecher's handshake is inside (IA): the seeder answers next.
                Phase::MseInitiatorSync => (
                    true,
                    self.mse_part(2, Mse::initiator_sync),
                    Phase::SeederHandshake,
                ),
                Phase::LeecherHandshake => (
                    true,
                    vec![Msg::Handshake {
                        peer_id: self.leecher_id,
                    }],
                    Phase::SeederHandshake,
                ),
                Phase::SeederHandshake => {
                    // After an MSE exchange the seeder's crypto_select goes in the same write.
                    let mut msgs = self.mse_part(3, Mse::responder_select);
                    msgs.push(Msg::Handshake {
                        peer_id: self.seeder_id,
                    });
                    (false, msgs, Phase::LeecherExt)
                }
                Phase::LeecherExt => (
                    true,
                    vec![Msg::ExtHandshake {
                        ut_metadata: LEECHER_UT_METADATA,
                        // A magnet leecher does not know the metadata yet.
                        metadata_size: (!self.magnet).then_some(t.info.len() as u64),
                    }],
                    Phase::SeederExtAndHaves,
                ),
                Phase::SeederExtAndHaves => (
                    false,
                    vec![
                        Msg::ExtHandshake {
                            ut_metadata: SEEDER_UT_METADATA,
                            metadata_size: Some(t.info.len() as u64),
                        },
                        if self.have_all {
                            Msg::HaveAll
                        } else {
                            Msg::Bitfield
                        },
                    ],
                    if self.magnet {
                        Phase::MetaRequests
                    } else {
                        Phase::Interested
                    },
                ),
                Phase::MetaRequests => (
                    true,
                    (0..Self::metadata_pieces(t))
                        .map(|piece| Msg::MetaRequest {
                            ext_id: SEEDER_UT_METADATA,
                            piece,
                        })
                        .collect(),
                    Phase::MetaData(0),
                ),
                Phase::MetaData(p) => {
                    let next = if p + 1 >= Self::metadata_pieces(t) {
                        Phase::Interested
                    } else {
                        Phase::MetaData(p + 1)
                    };
                    (
                        false,
                        vec![Msg::MetaData {
                            ext_id: LEECHER_UT_METADATA,
                            piece: p,
                        }],
                        next,
                    )
                }
                Phase::Interested => (true, vec![Msg::Interested], Phase::Unchoke),
                Phase::Unchoke => (
                    false,
                    vec![Msg::Unchoke],
                    if self.directed.is_some() {
                        Phase::Directed
                    } else {
                        Phase::InitialRequests
                    },
                ),
                Phase::Directed => {
                    let Some(d) = self.directed.as_mut() else {
                        self.phase = Phase::Done;
                        return None;
                    };
                    match d.pending.pop_front() {
                        Some(Order::Piece(b)) => {
                            (true, vec![Msg::Request(b)], Phase::DirectedPiece(b))
                        }
                        Some(Order::Have(i)) => (true, vec![Msg::Have(i)], Phase::Directed),
                        None if d.finished => {
                            self.phase = Phase::Done;
                            return None;
                        }
                        // Waiting: the phase stays, the next order resumes it.
                        None => return None,
                    }
                }
                Phase::DirectedPiece(b) => (false, vec![Msg::Piece(b)], Phase::Directed),
                Phase::InitialRequests => {
                    let mut msgs = Vec::with_capacity(PIPELINE);
                    while self.outstanding.len() < PIPELINE {
                        match self.walk.next(t) {
                            Some(b) => {
                                self.outstanding.push_back(b);
                                msgs.push(Msg::Request(b));
                            }
                            None => break,
                        }
                    }
                    (true, msgs, Phase::SendPiece)
                }
                Phase::SendPiece => match self.outstanding.pop_front() {
                    Some(b) => (false, vec![Msg::Piece(b)], Phase::AfterPiece(b)),
                    None => {
                        self.phase = Phase::Done;
                        return None;
                    }
                },
                Phase::AfterPiece(b) => {
                    let mut msgs = Vec::with_capacity(2);
                    if b.begin + b.len >= t.piece_len(b.index) {
                        msgs.push(Msg::Have(b.index));
                    }
                    if let Some(nb) = self.walk.next(t) {
                        self.outstanding.push_back(nb);
                        msgs.push(Msg::Request(nb));
                    }
                    (true, msgs, Phase::SendPiece)
                }
            };
            self.phase = next;
            // A reaction with nothing to say is no write at all.
            if !msgs.is_empty() {
                return Some(Write { from_leecher, msgs });
            }
        }
    }
}
