//! Peer-wire messages to send: the handshake and the messages the splice and the synthetic
//! sessions write, each appended to a buffer with its length prefix.

use super::{BlockRef, Kind, PROTOCOL};

/// 17 bytes a peer treats as nothing: INTERESTED (the subscriber is interested, or it would
/// not be requesting) and three keep-alives. A REQUEST or CANCEL the box answers becomes
/// this, so the stream keeps its length and no sequence number moves.
pub const NOOP17: [u8; 17] = [0, 0, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/// Length of a PIECE message's prefix, id, index and begin.
pub const PIECE_HEADER_LEN: usize = 13;

/// The 68-byte handshake.
pub fn handshake(out: &mut Vec<u8>, reserved: [u8; 8], info_hash: &[u8; 20], peer_id: &[u8; 20]) {
    out.extend_from_slice(PROTOCOL);
    out.extend_from_slice(&reserved);
    out.extend_from_slice(info_hash);
    out.extend_from_slice(peer_id);
}

/// A length prefix for `body_len` bytes after the id, and the id.
pub fn header(out: &mut Vec<u8>, kind: Kind, body_len: u32) {
    out.extend_from_slice(&body_len.saturating_add(1).to_be_bytes());
    out.push(kind.id());
}

/// A message of `kind` whose body is `body` (for KEEPALIVE: nothing at all but the prefix).
pub fn message(out: &mut Vec<u8>, kind: Kind, body: &[u8]) {
    if kind == Kind::KeepAlive {
        out.extend_from_slice(&[0, 0, 0, 0]);
        return;
    }
    header(out, kind, body.len() as u32);
    out.extend_from_slice(body);
}

pub fn have(out: &mut Vec<u8>, index: u32) {
    message(out, Kind::Have, &index.to_be_bytes());
}

fn block_message(out: &mut Vec<u8>, kind: Kind, b: BlockRef) {
    header(out, kind, 12);
    out.extend_from_slice(&b.index.to_be_bytes());
    out.extend_from_slice(&b.begin.to_be_bytes());
    out.extend_from_slice(&b.length.to_be_bytes());
}

pub fn request(out: &mut Vec<u8>, b: BlockRef) {
    block_message(out, Kind::Request, b);
}

pub fn cancel(out: &mut Vec<u8>, b: BlockRef) {
    block_message(out, Kind::Cancel, b);
}

pub fn reject(out: &mut Vec<u8>, b: BlockRef) {
    block_message(out, Kind::Reject, b);
}

/// A PIECE message's first 13 bytes, for a block of `block_len` bytes that follows.
pub fn piece_header(index: u32, begin: u32, block_len: u32) -> [u8; PIECE_HEADER_LEN] {
    let mut h = [0u8; PIECE_HEADER_LEN];
    h[..4].copy_from_slice(&block_len.saturating_add(9).to_be_bytes());
    h[4] = Kind::Piece.id();
    h[5..9].copy_from_slice(&index.to_be_bytes());
    h[9..13].copy_from_slice(&begin.to_be_bytes());
    h
}

/// A whole PIECE message.
pub fn piece(out: &mut Vec<u8>, index: u32, begin: u32, block: &[u8]) {
    out.extend_from_slice(&piece_header(index, begin, block.len() as u32));
    out.extend_from_slice(block);
}

/// BEP 10 extended message: id 20, the extended id, then `parts` (a bencoded dictionary,
/// and for BEP 9 data the raw bytes after it).
pub fn extended(out: &mut Vec<u8>, ext_id: u8, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    header(out, Kind::Extended, (1 + len) as u32);
    out.push(ext_id);
    for p in parts {
        out.extend_from_slice(p);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse_body, piece_header as read_piece_header, Handshake, Message};
    use super::*;

    #[test]
    fn messages_read_back() {
        let b = BlockRef {
            index: 3,
            begin: 16384,
            length: 16384,
        };
        for (f, kind) in [
            (request as fn(&mut Vec<u8>, BlockRef), Kind::Request),
            (cancel, Kind::Cancel),
            (reject, Kind::Reject),
        ] {
            let mut m = Vec::new();
            f(&mut m, b);
            assert_eq!(m.len(), 17);
            assert_eq!(Kind::from_id(m[4]), Some(kind));
            assert_eq!(u32::from_be_bytes([m[0], m[1], m[2], m[3]]), 13);
            let msg = parse_body(kind, &m[5..]).unwrap();
            assert!(
                matches!(msg, Message::Request(x) | Message::Cancel(x) | Message::Reject(x) if x == b)
            );
        }
        let mut p = Vec::new();
        piece(&mut p, 3, 16384, b"data");
        assert_eq!(&p[..4], &13u32.to_be_bytes());
        assert_eq!(read_piece_header(&p[5..]), Some((3, 16384)));
        assert_eq!(&p[13..], b"data");
        let mut h = Vec::new();
        handshake(&mut h, [0, 0, 0, 0, 0, 0x10, 0, 4], &[7; 20], &[8; 20]);
        let hs = Handshake::new_checked(&h).unwrap();
        assert!(hs.extension_protocol() && hs.fast_extension());
        assert_eq!(
            (*hs.info_hash().as_bytes(), hs.peer_id()),
            ([7; 20], [8; 20])
        );
        let mut e = Vec::new();
        extended(&mut e, 3, &[b"d1:ai1ee", b"raw"]);
        assert_eq!(
            parse_body(Kind::Extended, &e[5..]),
            Some(Message::Extended {
                id: 3,
                payload: b"d1:ai1eeraw"
            })
        );
        let mut k = Vec::new();
        message(&mut k, Kind::KeepAlive, &[]);
        message(&mut k, Kind::Interested, &[]);
        have(&mut k, 9);
        assert_eq!(k, [0, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 5, 4, 0, 0, 0, 9]);
    }

    #[test]
    fn noop_is_interested_and_three_keepalives() {
        let mut n = Vec::new();
        message(&mut n, Kind::Interested, &[]);
        for _ in 0..3 {
            message(&mut n, Kind::KeepAlive, &[]);
        }
        assert_eq!(n, NOOP17);
    }
}
