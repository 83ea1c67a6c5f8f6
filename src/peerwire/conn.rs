//! What one TCP (later uTP) connection is, learnt from both directions: plain BitTorrent
//! (handshake or mid-stream framing), MSE/PE encrypted, or something else to stop tracking;
//! and the BEP 10 extension ids each side announced, needed to read the other side's
//! extended messages.

use crate::flow::Dir;
use crate::wire::entropy;
use crate::wire::infohash::InfoHash;
use crate::wire::peerwire::{self, Handshake, PROTOCOL};

/// MSE/PE: the initiator's first flight is Ya (96 bytes) plus 0..512 bytes of PadA, sent
/// before it hears anything back.
pub const MSE_FLIGHT_MIN: usize = 96;
pub const MSE_FLIGHT_MAX: usize = 608;
/// Over uTP the first flight may span more bytes before the responder's first DATA (the
/// public corpus analysis used 96..808).
pub const MSE_FLIGHT_MAX_UTP: usize = 808;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Unknown,
    BitTorrent,
    Encrypted,
    NotBitTorrent,
}

#[derive(Debug)]
pub struct ConnState {
    pub class: Class,
    pub info_hash: Option<InfoHash>,
    pub peer_id: [Option<[u8; 20]>; 2],
    /// Extension ids announced by the sender of each direction: messages travelling the
    /// other way use them.
    pub ext_ids: [Vec<(String, u8)>; 2],
    pub metadata_size: Option<u64>,
    /// The TCP port each direction's sender said it listens on (BEP 10 `p`).
    pub listen_port: [Option<u16>; 2],
    /// Who sent the SYN, when seen.
    pub initiator: Option<Dir>,
    /// The start of the initiator's stream until the responder sends data.
    flight: Vec<u8>,
    flight_done: bool,
    flight_max: usize,
    pub midstream: bool,
    /// A mid-stream connection without info-hash was counted under "unattributed".
    pub midstream_counted: bool,
}

impl ConnState {
    pub fn new(initiator: Option<Dir>) -> Self {
        ConnState {
            class: Class::Unknown,
            info_hash: None,
            peer_id: [None, None],
            ext_ids: [Vec::new(), Vec::new()],
            metadata_size: None,
            listen_port: [None, None],
            initiator,
            flight: Vec::new(),
            flight_done: initiator.is_none(),
            flight_max: MSE_FLIGHT_MAX,
            midstream: initiator.is_none(),
            midstream_counted: false,
        }
    }

    pub fn for_utp(initiator: Option<Dir>) -> Self {
        ConnState {
            flight_max: MSE_FLIGHT_MAX_UTP,
            ..Self::new(initiator)
        }
    }

    /// Record stream bytes for the first-flight test. Returns a verdict once one is due.
    pub fn observe(&mut self, dir: Dir, data: &[u8]) -> Option<Class> {
        if self.flight_done || self.class != Class::Unknown {
            return None;
        }
        if Some(dir) == self.initiator {
            let room = (self.flight_max + 1).saturating_sub(self.flight.len());
            self.flight.extend_from_slice(&data[..room.min(data.len())]);
            if self.flight.len() > self.flight_max {
                return self.end_flight();
            }
            None
        } else {
            // The responder spoke: the initiator's first flight is complete.
            self.end_flight()
        }
    }

    /// Decide on the first flight (also called when the flow ends).
    pub fn end_flight(&mut self) -> Option<Class> {
        if self.flight_done {
            return None;
        }
        self.flight_done = true;
        let f = std::mem::take(&mut self.flight);
        let n = f.len().min(PROTOCOL.len());
        if n > 0 && f[..n] == PROTOCOL[..n] {
            return None; // A handshake: the parser will say.
        }
        if (MSE_FLIGHT_MIN..=self.flight_max).contains(&f.len()) && entropy::looks_random(&f) {
            return Some(Class::Encrypted);
        }
        None
    }

    pub fn flight_decided(&self) -> bool {
        self.flight_done
    }

    pub fn on_handshake(&mut self, dir: Dir, h: &Handshake<'_>) -> bool {
        self.peer_id[dir.idx()] = Some(h.peer_id());
        self.class = match self.class {
            Class::Encrypted => Class::Encrypted,
            _ => Class::BitTorrent,
        };
        if self.info_hash.is_none() {
            self.info_hash = Some(h.info_hash());
            return true;
        }
        false
    }

    /// Name of an extended message travelling in `dir`, from the ids its receiver announced.
    pub fn ext_name(&self, dir: Dir, id: u8) -> Option<&str> {
        self.ext_ids[dir.rev().idx()]
            .iter()
            .find(|(_, i)| *i == id)
            .map(|(n, _)| n.as_str())
    }

    pub fn on_ext_handshake(&mut self, dir: Dir, payload: &[u8]) {
        if let Some(hs) = peerwire::parse_ext_handshake(payload) {
            self.ext_ids[dir.idx()] = hs.ids;
            if hs.port.is_some() {
                self.listen_port[dir.idx()] = hs.port;
            }
            if hs.metadata_size.is_some() {
                self.metadata_size = hs.metadata_size;
            }
        }
    }
}
