//! Stateless peer-wire views: the handshake, message ids, message bodies, PIECE headers and
//! length prefixes.
//!
//! Input: a TCP payload of a BitTorrent connection (or any bytes). It is read three ways:
//! as a handshake; as a run of length-prefixed messages (after a handshake if there is
//! one), each body parsed by its kind; and as `[id][body...]` for every kind.
//!
//! Checks: no panic; a parsed message is of the kind asked for and its length is valid for
//! it; a handshake's fields are the bytes at their offsets.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peercache::wire::peerwire::{
    length_prefix, parse_body, piece_header, Handshake, Kind, Message, HANDSHAKE_LEN, MAX_BLOCK,
};

fn check_body(kind: Kind, body: &[u8]) {
    if let Some(m) = parse_body(kind, body) {
        assert_eq!(m.kind(), kind);
        assert!(kind.valid_len(body.len() as u32 + 1, u32::MAX));
        match m {
            Message::Bitfield(b) => assert_eq!(b, body),
            Message::Extended { id, payload } => {
                assert_eq!(id, body[0]);
                assert_eq!(payload, &body[1..]);
            }
            Message::Request(b) | Message::Cancel(b) | Message::Reject(b) => {
                assert_eq!(b.index.to_be_bytes(), body[0..4]);
                assert_eq!(b.length.to_be_bytes(), body[8..12]);
            }
            _ => {}
        }
    }
    let _ = kind.as_str();
}

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    if let Some(h) = Handshake::new_checked(data) {
        assert_eq!(h.info_hash().as_bytes()[..], data[28..48]);
        assert_eq!(h.peer_id(), data[48..68]);
        assert_eq!(h.reserved(), data[20..28]);
        let _ = (h.extension_protocol(), h.fast_extension());
        rest = &data[HANDSHAKE_LEN..];
    } else if data.len() >= HANDSHAKE_LEN {
        assert_ne!(data[..20], b"\x13BitTorrent protocol"[..]);
    }

    // A run of framed messages, as a segment carries them.
    while let Some(len) = length_prefix(rest) {
        assert_eq!(len.to_be_bytes(), rest[..4]);
        if len == 0 {
            rest = &rest[4..];
            continue;
        }
        let Some(frame) = rest.get(4..4 + len as usize) else {
            break;
        };
        rest = &rest[4 + len as usize..];
        let Some(kind) = Kind::from_id(frame[0]) else {
            continue;
        };
        let body = &frame[1..];
        if kind == Kind::Piece {
            if kind.valid_len(len, 1 << 20) {
                assert!(len - 9 <= MAX_BLOCK);
                let (index, begin) = piece_header(body).expect("valid PIECE has a header");
                assert_eq!(index.to_be_bytes(), body[0..4]);
                assert_eq!(begin.to_be_bytes(), body[4..8]);
            }
            assert!(parse_body(kind, body).is_none(), "PIECE is never parsed whole");
        } else {
            check_body(kind, body);
        }
    }

    // `[id][body]` for the id given, and the body under every kind.
    if let Some((&id, body)) = data.split_first() {
        if let Some(kind) = Kind::from_id(id) {
            check_body(kind, body);
        }
        for id in (0u8..=23).chain([255]) {
            if let Some(kind) = Kind::from_id(id) {
                if kind != Kind::Piece {
                    check_body(kind, body);
                }
            }
        }
        check_body(Kind::KeepAlive, body);
        let _ = piece_header(body);
    }
});
