//! BitTorrent peer-wire framing (BEP 3), fast extension (BEP 6), extension protocol (BEP 10)
//! and the v2 hash messages (BEP 52): checked views over complete messages; `framing`, the
//! core that cuts a byte stream into them (driven by `crate::peerwire::stream` and
//! `crate::serve::framer`); `emit`, the messages the program writes.

use super::bencode::{self, Value};
use super::infohash::InfoHash;

pub mod emit;
pub mod framing;

pub const PROTOCOL: &[u8; 20] = b"\x13BitTorrent protocol";
pub const HANDSHAKE_LEN: usize = 68;
/// Largest block any client sends or accepts (libtorrent and others reject more than 128 KiB).
pub const MAX_BLOCK: u32 = 128 * 1024;

/// The 68-byte handshake, checked on construction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handshake<'a>(&'a [u8; HANDSHAKE_LEN]);

impl<'a> Handshake<'a> {
    pub fn new_checked(buf: &'a [u8]) -> Option<Handshake<'a>> {
        let hs: &[u8; HANDSHAKE_LEN] = buf.get(..HANDSHAKE_LEN)?.try_into().ok()?;
        (hs[..20] == PROTOCOL[..]).then_some(Handshake(hs))
    }
    pub fn reserved(&self) -> [u8; 8] {
        let mut r = [0u8; 8];
        r.copy_from_slice(&self.0[20..28]);
        r
    }
    pub fn info_hash(&self) -> InfoHash {
        let mut r = [0u8; 20];
        r.copy_from_slice(&self.0[28..48]);
        InfoHash::from(r)
    }
    pub fn peer_id(&self) -> [u8; 20] {
        let mut r = [0u8; 20];
        r.copy_from_slice(&self.0[48..68]);
        r
    }
    /// BEP 10: bit 20 from the right, i.e. 0x10 in reserved byte 5.
    pub fn extension_protocol(&self) -> bool {
        self.0[25] & 0x10 != 0
    }
    /// BEP 6: 0x04 in reserved byte 7.
    pub fn fast_extension(&self) -> bool {
        self.0[27] & 0x04 != 0
    }
}

/// Message ids. The numeric values are the wire values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    KeepAlive,
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have,
    Bitfield,
    Request,
    Piece,
    Cancel,
    Port,
    Suggest,
    HaveAll,
    HaveNone,
    Reject,
    AllowedFast,
    Extended,
    HashRequest,
    Hashes,
    HashReject,
}

impl Kind {
    pub fn from_id(id: u8) -> Option<Kind> {
        Some(match id {
            0 => Kind::Choke,
            1 => Kind::Unchoke,
            2 => Kind::Interested,
            3 => Kind::NotInterested,
            4 => Kind::Have,
            5 => Kind::Bitfield,
            6 => Kind::Request,
            7 => Kind::Piece,
            8 => Kind::Cancel,
            9 => Kind::Port,
            13 => Kind::Suggest,
            14 => Kind::HaveAll,
            15 => Kind::HaveNone,
            16 => Kind::Reject,
            17 => Kind::AllowedFast,
            20 => Kind::Extended,
            21 => Kind::HashRequest,
            22 => Kind::Hashes,
            23 => Kind::HashReject,
            _ => return None,
        })
    }

    /// The id byte on the wire. KEEPALIVE has none (it is a bare zero prefix): 0 here, and
    /// `emit::message` writes no id for it.
    pub fn id(self) -> u8 {
        match self {
            Kind::KeepAlive => 0,
            Kind::Choke => 0,
            Kind::Unchoke => 1,
            Kind::Interested => 2,
            Kind::NotInterested => 3,
            Kind::Have => 4,
            Kind::Bitfield => 5,
            Kind::Request => 6,
            Kind::Piece => 7,
            Kind::Cancel => 8,
            Kind::Port => 9,
            Kind::Suggest => 13,
            Kind::HaveAll => 14,
            Kind::HaveNone => 15,
            Kind::Reject => 16,
            Kind::AllowedFast => 17,
            Kind::Extended => 20,
            Kind::HashRequest => 21,
            Kind::Hashes => 22,
            Kind::HashReject => 23,
        }
    }

    /// Report key; stable schema.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::KeepAlive => "keepalive",
            Kind::Choke => "choke",
            Kind::Unchoke => "unchoke",
            Kind::Interested => "interested",
            Kind::NotInterested => "not_interested",
            Kind::Have => "have",
            Kind::Bitfield => "bitfield",
            Kind::Request => "request",
            Kind::Piece => "piece",
            Kind::Cancel => "cancel",
            Kind::Port => "port",
            Kind::Suggest => "suggest",
            Kind::HaveAll => "have_all",
            Kind::HaveNone => "have_none",
            Kind::Reject => "reject",
            Kind::AllowedFast => "allowed_fast",
            Kind::Extended => "extended",
            Kind::HashRequest => "hash_request",
            Kind::Hashes => "hashes",
            Kind::HashReject => "hash_reject",
        }
    }

    /// Whether a length prefix of `len` (id byte included) is valid for this kind, with
    /// `max_len` bounding the variable-length ones.
    pub fn valid_len(self, len: u32, max_len: u32) -> bool {
        match self {
            Kind::KeepAlive => len == 0,
            Kind::Choke
            | Kind::Unchoke
            | Kind::Interested
            | Kind::NotInterested
            | Kind::HaveAll
            | Kind::HaveNone => len == 1,
            Kind::Have | Kind::Suggest | Kind::AllowedFast => len == 5,
            Kind::Request | Kind::Cancel | Kind::Reject => len == 13,
            Kind::Port => len == 3,
            Kind::Piece => len > 9 && len <= 9 + MAX_BLOCK,
            Kind::Bitfield | Kind::Extended => len >= 2 && len <= max_len,
            // BEP 52: pieces root (32) + base layer, index, length, proof layers (4 x u32).
            Kind::HashRequest | Kind::HashReject => len == 49,
            Kind::Hashes => len >= 49 && len <= max_len,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockRef {
    pub index: u32,
    pub begin: u32,
    pub length: u32,
}

/// A complete message other than PIECE (PIECE blocks are streamed, never buffered whole).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    KeepAlive,
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have(u32),
    Bitfield(&'a [u8]),
    Request(BlockRef),
    Cancel(BlockRef),
    Reject(BlockRef),
    Port(u16),
    Suggest(u32),
    HaveAll,
    HaveNone,
    AllowedFast(u32),
    Extended { id: u8, payload: &'a [u8] },
    Hash { kind: Kind, payload: &'a [u8] },
}

fn be32(b: &[u8], at: usize) -> u32 {
    // Callers have checked the length through `Kind::valid_len`.
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}

/// The 4-byte big-endian length prefix at the start of `buf`, if present.
pub fn length_prefix(buf: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(buf.get(..4)?.try_into().ok()?))
}

/// Parse a message body: `id` followed by the payload (`len - 1` bytes), for any kind but
/// PIECE. Returns None when the length does not fit the kind.
pub fn parse_body(kind: Kind, body: &[u8]) -> Option<Message<'_>> {
    let len = u32::try_from(body.len() + 1).ok()?;
    if !kind.valid_len(len, u32::MAX) {
        return None;
    }
    let block = |b: &[u8]| BlockRef {
        index: be32(b, 0),
        begin: be32(b, 4),
        length: be32(b, 8),
    };
    Some(match kind {
        Kind::KeepAlive => Message::KeepAlive,
        Kind::Choke => Message::Choke,
        Kind::Unchoke => Message::Unchoke,
        Kind::Interested => Message::Interested,
        Kind::NotInterested => Message::NotInterested,
        Kind::Have => Message::Have(be32(body, 0)),
        Kind::Bitfield => Message::Bitfield(body),
        Kind::Request => Message::Request(block(body)),
        Kind::Cancel => Message::Cancel(block(body)),
        Kind::Reject => Message::Reject(block(body)),
        Kind::Port => Message::Port(u16::from_be_bytes([body[0], body[1]])),
        Kind::Suggest => Message::Suggest(be32(body, 0)),
        Kind::HaveAll => Message::HaveAll,
        Kind::HaveNone => Message::HaveNone,
        Kind::AllowedFast => Message::AllowedFast(be32(body, 0)),
        Kind::Extended => Message::Extended {
            id: body[0],
            payload: &body[1..],
        },
        Kind::HashRequest | Kind::Hashes | Kind::HashReject => Message::Hash {
            kind,
            payload: body,
        },
        Kind::Piece => return None,
    })
}

/// The 8 bytes after a PIECE id: index and begin.
pub fn piece_header(b: &[u8]) -> Option<(u32, u32)> {
    Some((be32(b.get(..8)?, 0), be32(b, 4)))
}

/// BEP 10 extended handshake (extended id 0): the extension names and the ids the sender
/// wants to receive them under, and the advertised metadata size.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExtHandshake {
    pub ids: Vec<(String, u8)>,
    pub metadata_size: Option<u64>,
    pub client: Option<String>,
    /// `p`: the TCP port the sender listens on.
    pub port: Option<u16>,
}

pub fn parse_ext_handshake(payload: &[u8]) -> Option<ExtHandshake> {
    let (v, _) = bencode::decode_prefix(payload, bencode::Limits::default()).ok()?;
    let mut hs = ExtHandshake::default();
    if let Some(m) = v.get(b"m") {
        for (name, id) in m.entries() {
            let id = id.as_int().and_then(|i| u8::try_from(i).ok());
            if let (Ok(name), Some(id)) = (std::str::from_utf8(name), id) {
                hs.ids.push((name.to_owned(), id));
            }
        }
    }
    hs.metadata_size = v
        .get(b"metadata_size")
        .and_then(Value::as_int)
        .and_then(|n| u64::try_from(n).ok());
    hs.port = v
        .get(b"p")
        .and_then(Value::as_int)
        .and_then(|n| u16::try_from(n).ok())
        .filter(|p| *p != 0);
    hs.client = v
        .get(b"v")
        .and_then(Value::as_bytes)
        .map(|b| String::from_utf8_lossy(b).into_owned());
    Some(hs)
}

/// BEP 9 ut_metadata message: the header dictionary, and for `data` the bytes after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UtMetadata<'a> {
    pub msg_type: i64,
    pub piece: i64,
    pub total_size: Option<i64>,
    pub data: &'a [u8],
}

pub fn parse_ut_metadata(payload: &[u8]) -> Option<UtMetadata<'_>> {
    let (v, used) = bencode::decode_prefix(payload, bencode::Limits::default()).ok()?;
    Some(UtMetadata {
        msg_type: v.get(b"msg_type")?.as_int()?,
        piece: v.get(b"piece")?.as_int()?,
        total_size: v.get(b"total_size").and_then(Value::as_int),
        data: &payload[used..],
    })
}

/// BEP 11 ut_pex: number of peers added (IPv4 compact entries are 6 bytes, IPv6 18).
pub fn pex_added(payload: &[u8]) -> Option<u64> {
    let (v, _) = bencode::decode_prefix(payload, bencode::Limits::default()).ok()?;
    let v4 = v
        .get(b"added")
        .and_then(Value::as_bytes)
        .map_or(0, |b| b.len() / 6);
    let v6 = v
        .get(b"added6")
        .and_then(Value::as_bytes)
        .map_or(0, |b| b.len() / 18);
    Some((v4 + v6) as u64)
}

impl Message<'_> {
    pub fn kind(&self) -> Kind {
        match self {
            Message::KeepAlive => Kind::KeepAlive,
            Message::Choke => Kind::Choke,
            Message::Unchoke => Kind::Unchoke,
            Message::Interested => Kind::Interested,
            Message::NotInterested => Kind::NotInterested,
            Message::Have(_) => Kind::Have,
            Message::Bitfield(_) => Kind::Bitfield,
            Message::Request(_) => Kind::Request,
            Message::Cancel(_) => Kind::Cancel,
            Message::Reject(_) => Kind::Reject,
            Message::Port(_) => Kind::Port,
            Message::Suggest(_) => Kind::Suggest,
            Message::HaveAll => Kind::HaveAll,
            Message::HaveNone => Kind::HaveNone,
            Message::AllowedFast(_) => Kind::AllowedFast,
            Message::Extended { .. } => Kind::Extended,
            Message::Hash { kind, .. } => *kind,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_view() {
        let mut hs = Vec::from(&PROTOCOL[..]);
        hs.extend_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 0x04]);
        hs.extend_from_slice(&[0xab; 20]);
        hs.extend_from_slice(b"-LT2000-000000000000");
        let h = Handshake::new_checked(&hs).unwrap();
        assert!(h.extension_protocol() && h.fast_extension());
        assert_eq!(h.info_hash(), InfoHash::from([0xab; 20]));
        assert!(Handshake::new_checked(&hs[..67]).is_none());
    }

    #[test]
    fn ids_round_trip() {
        for id in 0..=255u8 {
            if let Some(k) = Kind::from_id(id) {
                assert_eq!(k.id(), id, "{k:?}");
            }
        }
    }

    #[test]
    fn bodies() {
        assert_eq!(
            parse_body(Kind::Request, &[0, 0, 0, 1, 0, 0, 0x40, 0, 0, 0, 0x40, 0]),
            Some(Message::Request(BlockRef {
                index: 1,
                begin: 16384,
                length: 16384
            }))
        );
        assert_eq!(parse_body(Kind::Have, &[0, 0, 1]), None);
        let ext = parse_ext_handshake(
            b"d1:md11:ut_metadatai3e6:ut_pexi1ee13:metadata_sizei175e1:pi51413ee",
        )
        .unwrap();
        assert_eq!(ext.metadata_size, Some(175));
        assert_eq!(ext.port, Some(51413));
        assert!(ext.ids.contains(&("ut_metadata".into(), 3)));
    }
}
