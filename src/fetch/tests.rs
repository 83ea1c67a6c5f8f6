//! The session against scripted peers built with the wire layer's emitters; what it sends
//! is read back with the wire layer's views.

use super::*;
use crate::swarm::metadata::METADATA_PIECE;
use crate::synth::Torrent;
use crate::wire::bencode::{self, Value};
use crate::wire::infohash::InfoHash;
use crate::wire::peerwire::{self, emit, Handshake, Kind, HANDSHAKE_LEN};

const SEC: u64 = 1_000_000;
/// The id the scripted peer wants ut_metadata under (not ours, so a mix-up shows).
const PEER_UT: u8 = 3;

fn our_id() -> [u8; 20] {
    our_peer_id([7; 12])
}

/// One small torrent (one metadata piece) and one whose metadata is 4 pieces, the last short.
fn small() -> Torrent {
    Torrent::generate(1, 0, 100_000, 16384).expect("torrent")
}
fn multi() -> Torrent {
    let t = Torrent::generate(2, 0, 3 << 20, 1024).expect("torrent");
    assert_eq!(t.info.len().div_ceil(METADATA_PIECE), 4);
    assert_ne!(t.info.len() % METADATA_PIECE, 0);
    t
}

fn handshake(ih: &InfoHash, bep10: bool) -> Vec<u8> {
    let mut v = Vec::new();
    let reserved = [0, 0, 0, 0, 0, if bep10 { 0x10 } else { 0 }, 0, 4];
    emit::handshake(&mut v, reserved, ih.as_bytes(), b"-LT2000-abcdefghijkl");
    v
}

fn ext_handshake(ut: Option<u8>, size: Option<u64>) -> Vec<u8> {
    let mut d = b"d1:md".to_vec();
    if let Some(id) = ut {
        d.extend_from_slice(format!("11:ut_metadatai{id}e").as_bytes());
    }
    d.extend_from_slice(b"6:ut_pexi2ee");
    if let Some(n) = size {
        d.extend_from_slice(format!("13:metadata_sizei{n}e").as_bytes());
    }
    d.extend_from_slice(b"1:v12:libtorrent/2e");
    let mut v = Vec::new();
    emit::extended(&mut v, 0, &[&d]);
    v
}

fn opening(t: &Torrent) -> Vec<u8> {
    let mut v = handshake(&t.info_hash, true);
    v.extend(ext_handshake(Some(PEER_UT), Some(t.info.len() as u64)));
    v
}

fn data_msg(piece: u32, total: usize, bytes: &[u8]) -> Vec<u8> {
    let d = format!("d8:msg_typei1e5:piecei{piece}e10:total_sizei{total}ee");
    let mut v = Vec::new();
    emit::extended(&mut v, UT_METADATA_ID, &[d.as_bytes(), bytes]);
    v
}

fn ut_msg(msg_type: i64, piece: u32) -> Vec<u8> {
    let d = format!("d8:msg_typei{msg_type}e5:piecei{piece}ee");
    let mut v = Vec::new();
    emit::extended(&mut v, UT_METADATA_ID, &[d.as_bytes()]);
    v
}

fn piece_of(info: &[u8], p: u32) -> &[u8] {
    let start = p as usize * METADATA_PIECE;
    &info[start..(start + METADATA_PIECE).min(info.len())]
}

/// One message we sent: its kind and body after the id.
#[derive(Debug)]
struct Sent {
    kind: Kind,
    body: Vec<u8>,
}

/// Our bytes read back: the handshake, then whole messages and nothing left over.
fn read_ours(bytes: &[u8]) -> ([u8; HANDSHAKE_LEN], Vec<Sent>) {
    let hs = Handshake::new_checked(bytes).expect("our handshake");
    let mut h = [0u8; HANDSHAKE_LEN];
    h.copy_from_slice(&bytes[..HANDSHAKE_LEN]);
    assert!(hs.extension_protocol() && !hs.fast_extension());
    let mut rest = &bytes[HANDSHAKE_LEN..];
    let mut out = Vec::new();
    while !rest.is_empty() {
        let len = peerwire::length_prefix(rest).expect("length prefix") as usize;
        assert!(len >= 1, "no keep-alives from us");
        let msg = &rest[4..4 + len];
        let kind = Kind::from_id(msg[0]).expect("known id");
        assert!(
            peerwire::parse_body(kind, &msg[1..]).is_some(),
            "{kind:?} body"
        );
        out.push(Sent {
            kind,
            body: msg[1..].to_vec(),
        });
        rest = &rest[4 + len..];
    }
    (h, out)
}

/// ut_metadata (msg_type, piece) of one of our messages sent under the peer's id.
fn ut_of(m: &Sent) -> (i64, i64) {
    assert_eq!(m.kind, Kind::Extended);
    assert_eq!(m.body[0], PEER_UT, "ut_metadata under the peer's id");
    let u = peerwire::parse_ut_metadata(&m.body[1..]).expect("ut_metadata");
    assert!(u.data.is_empty());
    (u.msg_type, u.piece)
}

#[derive(Clone, Copy, PartialEq)]
enum Answer {
    Honest,
    /// The right lengths, one byte changed in every piece.
    Corrupt,
    Reject,
}

/// Plays a peer that answers each batch of our requests (reversed when `reverse`), feeding
/// its bytes in runs of `run`. Returns everything we sent.
fn drive(s: &mut FetchSession, t: &Torrent, answer: Answer, reverse: bool, run: usize) -> Vec<u8> {
    let mut sent = Vec::new();
    let mut inbound = opening(t);
    let mut now = SEC;
    let mut seen = 0;
    for _ in 0..100 {
        for chunk in inbound.chunks(run) {
            s.on_bytes(now, chunk);
        }
        if let Some(b) = s.poll_transmit() {
            sent.extend(b);
        }
        if s.is_done() {
            break;
        }
        let (_, msgs) = read_ours(&sent);
        let mut reqs: Vec<u32> = msgs[1..]
            .iter()
            .map(ut_of)
            .filter(|&(ty, _)| ty == 0)
            .map(|(_, p)| p as u32)
            .collect();
        let new: Vec<u32> = reqs.split_off(seen);
        seen += new.len();
        assert!(!new.is_empty(), "stalled");
        inbound = Vec::new();
        let order: Vec<u32> = if reverse {
            new.into_iter().rev().collect()
        } else {
            new
        };
        for p in order {
            match answer {
                Answer::Reject => inbound.extend(ut_msg(2, p)),
                Answer::Honest => inbound.extend(data_msg(p, t.info.len(), piece_of(&t.info, p))),
                Answer::Corrupt => {
                    let mut b = piece_of(&t.info, p).to_vec();
                    let mid = b.len() / 2;
                    b[mid] ^= 1;
                    inbound.extend(data_msg(p, t.info.len(), &b));
                }
            }
        }
        now += SEC;
    }
    sent
}

fn session(t: &Torrent, limits: FetchLimits) -> FetchSession {
    FetchSession::new(t.info_hash, our_id(), 0, limits)
}

fn metadata(s: &FetchSession) -> &Metainfo {
    match s.outcome() {
        Some(Outcome::Metadata(m)) => m,
        other => panic!("no metadata: {other:?}"),
    }
}

fn failure(s: &FetchSession) -> Reason {
    match s.outcome() {
        Some(Outcome::Failed(r)) => r.clone(),
        other => panic!("not failed: {other:?}"),
    }
}

#[test]
fn honest_peer_in_one_lump() {
    let t = small();
    let mut s = session(&t, FetchLimits::default());
    drive(&mut s, &t, Answer::Honest, false, usize::MAX);
    let m = metadata(&s);
    assert_eq!(m.info, t.info);
    assert_eq!(m.info_hash, t.info_hash);
    assert_eq!(m.name, t.name);
    assert_eq!(s.poll_timeout(), None);
    assert_eq!(s.poll_transmit(), None);
}

#[test]
fn honest_multi_piece_one_byte_at_a_time() {
    let t = multi();
    let mut s = session(&t, FetchLimits::default());
    drive(&mut s, &t, Answer::Honest, false, 1);
    assert_eq!(metadata(&s).info, t.info);
}

#[test]
fn honest_multi_piece_out_of_order_with_bounded_requests() {
    let t = multi();
    let limits = FetchLimits {
        max_outstanding: 3,
        ..FetchLimits::default()
    };
    let mut s = session(&t, limits);
    let sent = drive(&mut s, &t, Answer::Honest, true, 7);
    assert_eq!(metadata(&s).info, t.info);
    let (_, msgs) = read_ours(&sent);
    let reqs: Vec<(i64, i64)> = msgs[1..].iter().map(ut_of).collect();
    // Three asked at once; the fourth only after answers came back.
    assert_eq!(reqs, vec![(0, 0), (0, 1), (0, 2), (0, 3)]);
}

#[test]
fn sends_handshakes_and_requests_only() {
    let t = multi();
    let mut s = session(&t, FetchLimits::default());
    let sent = drive(&mut s, &t, Answer::Honest, false, usize::MAX);
    let (hs, msgs) = read_ours(&sent);
    let hs = Handshake::new_checked(&hs).expect("handshake");
    assert_eq!(hs.info_hash(), t.info_hash);
    assert_eq!(hs.reserved(), [0, 0, 0, 0, 0, 0x10, 0, 0]);
    assert_eq!(&hs.peer_id()[..8], PEER_ID_PREFIX);
    assert_eq!(hs.peer_id(), our_id());
    // Our BEP 10 handshake: ut_metadata under our id, who we are, and nothing else.
    assert_eq!(msgs[0].kind, Kind::Extended);
    assert_eq!(msgs[0].body[0], 0);
    let (v, used) =
        bencode::decode_prefix(&msgs[0].body[1..], bencode::Limits::default()).expect("bencode");
    assert_eq!(used, msgs[0].body.len() - 1);
    let keys: Vec<&[u8]> = v.entries().iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, vec![&b"m"[..], b"v"]);
    let ext = peerwire::parse_ext_handshake(&msgs[0].body[1..]).expect("ext handshake");
    assert_eq!(ext.ids, vec![("ut_metadata".to_string(), UT_METADATA_ID)]);
    assert_eq!(ext.metadata_size, None);
    assert_eq!(ext.client.as_deref(), Some("peercache"));
    assert_eq!(v.get(b"p").and_then(Value::as_int), None);
    // Then exactly one request per metadata piece, nothing else.
    let reqs: Vec<(i64, i64)> = msgs[1..].iter().map(ut_of).collect();
    assert_eq!(reqs, (0..4).map(|p| (0, p)).collect::<Vec<_>>());
    assert!(msgs.iter().all(|m| m.kind == Kind::Extended));
}

#[test]
fn wrong_bytes_are_a_hash_mismatch() {
    for t in [small(), multi()] {
        let mut s = session(&t, FetchLimits::default());
        drive(&mut s, &t, Answer::Corrupt, false, usize::MAX);
        assert_eq!(failure(&s), Reason::HashMismatch);
        assert_eq!(s.poll_transmit(), None);
    }
}

#[test]
fn reject_fails_the_fetch() {
    let t = multi();
    let mut s = session(&t, FetchLimits::default());
    drive(&mut s, &t, Answer::Reject, false, usize::MAX);
    assert_eq!(failure(&s), Reason::Rejected);
}

#[test]
fn silent_peer_times_out_exactly_when_announced() {
    let t = small();
    let limits = FetchLimits {
        idle_timeout_secs: 5,
        total_timeout_secs: 60,
        ..FetchLimits::default()
    };
    let mut s = session(&t, limits);
    assert_eq!(s.poll_timeout(), Some(5 * SEC));
    s.on_bytes(2 * SEC, &opening(&t));
    assert!(s.poll_transmit().is_some(), "handshakes and a request");
    let deadline = s.poll_timeout().expect("deadline");
    assert_eq!(deadline, 7 * SEC, "idle timer from the last byte received");
    s.on_timeout(deadline - 1);
    assert!(s.outcome().is_none());
    s.on_timeout(deadline);
    assert_eq!(failure(&s), Reason::Timeout);
    assert_eq!(s.poll_timeout(), None);
    s.on_bytes(deadline + 1, &data_msg(0, t.info.len(), &t.info));
    assert_eq!(failure(&s), Reason::Timeout, "closed: nothing more read");
    assert_eq!(s.poll_transmit(), None);
}

#[test]
fn trickling_peer_hits_the_total_timeout() {
    let t = small();
    let limits = FetchLimits {
        idle_timeout_secs: 5,
        total_timeout_secs: 10,
        ..FetchLimits::default()
    };
    let mut s = session(&t, limits);
    s.on_bytes(SEC, &opening(&t));
    for k in 1..=2u64 {
        s.on_bytes(SEC + 4 * SEC * k, &[0, 0, 0, 0]);
        assert!(s.outcome().is_none());
    }
    assert_eq!(s.poll_timeout(), Some(10 * SEC));
    // Bytes arriving at the deadline are too late even without on_timeout.
    s.on_bytes(10 * SEC, &[0, 0, 0, 0]);
    assert_eq!(failure(&s), Reason::Timeout);
}

#[test]
fn peer_without_bep10_or_ut_metadata() {
    let t = small();
    let size = Some(t.info.len() as u64);
    let cases = [
        handshake(&t.info_hash, false),
        [handshake(&t.info_hash, true), ext_handshake(None, size)].concat(),
        [handshake(&t.info_hash, true), ext_handshake(Some(0), size)].concat(),
        [
            handshake(&t.info_hash, true),
            ext_handshake(Some(PEER_UT), None),
        ]
        .concat(),
    ];
    for (i, bytes) in cases.iter().enumerate() {
        let mut s = session(&t, FetchLimits::default());
        s.on_bytes(SEC, bytes);
        assert_eq!(failure(&s), Reason::NoExtensionSupport, "case {i}");
        assert_eq!(s.poll_transmit(), None, "case {i}");
    }
}

#[test]
fn handshake_for_another_swarm() {
    let t = small();
    let mut s = session(&t, FetchLimits::default());
    s.on_bytes(SEC, &handshake(&InfoHash::from([9; 20]), true));
    assert_eq!(failure(&s), Reason::WrongInfoHash);
    let mut s = session(&t, FetchLimits::default());
    s.on_bytes(SEC, b"\x13BitTorrent protocoX");
    assert!(matches!(failure(&s), Reason::Protocol(_)));
}

#[test]
fn metadata_over_the_cap() {
    let t = multi();
    let limits = FetchLimits {
        max_metadata_size: 40_000,
        ..FetchLimits::default()
    };
    let mut s = session(&t, limits.clone());
    s.on_bytes(SEC, &opening(&t));
    assert_eq!(failure(&s), Reason::TooLarge(t.info.len() as u64));
    // A size within the cap, then a data message claiming more.
    let mut s = session(&t, limits);
    let mut b = handshake(&t.info_hash, true);
    b.extend(ext_handshake(Some(PEER_UT), Some(20_000)));
    s.on_bytes(SEC, &b);
    assert!(s.outcome().is_none());
    s.on_bytes(SEC, &data_msg(0, 1 << 30, piece_of(&t.info, 0)));
    assert_eq!(failure(&s), Reason::TooLarge(1 << 30));
}

#[test]
fn bad_data_messages_are_protocol_errors() {
    let t = multi();
    let total = t.info.len();
    let cases = [
        data_msg(3, total, piece_of(&t.info, 3)), // not asked yet: two in flight
        data_msg(9, total, piece_of(&t.info, 0)),
        data_msg(0, total + 1, piece_of(&t.info, 0)),
        data_msg(0, total, &piece_of(&t.info, 0)[1..]),
        {
            let mut v = Vec::new();
            let d = b"d8:msg_typei1e5:piecei0ee";
            emit::extended(&mut v, UT_METADATA_ID, &[d, piece_of(&t.info, 0)]);
            v
        },
    ];
    let limits = FetchLimits {
        max_outstanding: 2,
        ..FetchLimits::default()
    };
    for (i, bytes) in cases.iter().enumerate() {
        let mut s = session(&t, limits.clone());
        s.on_bytes(SEC, &opening(&t));
        s.on_bytes(SEC, bytes);
        assert!(
            matches!(failure(&s), Reason::Protocol(_)),
            "case {i}: {:?}",
            s.outcome()
        );
    }
}

#[test]
fn requests_to_us_are_rejected_and_other_messages_ignored() {
    let t = small();
    let mut s = session(&t, FetchLimits::default());
    let mut b = opening(&t);
    emit::message(&mut b, Kind::Bitfield, &[0xff; 7]);
    emit::have(&mut b, 3);
    emit::message(&mut b, Kind::Unchoke, &[]);
    emit::message(&mut b, Kind::KeepAlive, &[]);
    emit::extended(&mut b, 2, &[b"d5:added6:\x01\x02\x03\x04\x1a\xe1e"]); // ut_pex, not ours
    emit::piece(&mut b, 0, 0, &[0; 100]); // unsolicited: skipped
    b.extend_from_slice(&[0, 0, 0, 1, 99]); // an id nobody defined
    b.extend(ut_msg(0, 0));
    b.extend(ut_msg(0, 5));
    s.on_bytes(SEC, &b);
    assert!(s.outcome().is_none());
    let sent = s.poll_transmit().expect("bytes");
    let (_, msgs) = read_ours(&sent);
    let ut: Vec<(i64, i64)> = msgs[1..].iter().map(ut_of).collect();
    assert_eq!(
        ut,
        vec![(0, 0), (2, 0), (2, 5)],
        "our request, then two rejects"
    );
    s.on_bytes(2 * SEC, &data_msg(0, t.info.len(), &t.info));
    assert_eq!(metadata(&s).info, t.info);
    // Done: the connection is closed, nothing more is read or sent.
    s.on_bytes(3 * SEC, &ut_msg(0, 0));
    assert_eq!(s.poll_transmit(), None);
}

#[test]
fn peer_id_has_our_prefix() {
    let id = our_peer_id([0, 35, 36, 255, 1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(&id, b"-PC0001-0z0312345678");
}

#[test]
fn config_deserializes_with_defaults_and_refuses_unknown_fields() {
    let c: super::FetchConfig =
        serde_yaml::from_str("idle_timeout_secs: 3\nbind: 198.19.1.1").expect("yaml");
    let l = c.limits();
    assert_eq!(l.idle_timeout_secs, 3);
    assert_eq!(
        l.total_timeout_secs,
        FetchLimits::default().total_timeout_secs
    );
    assert_eq!(c.bind, Some([198, 19, 1, 1].into()));
    assert!(c.enabled);
    assert!(serde_yaml::from_str::<super::FetchConfig>("idle_timeout: 3").is_err());
}

#[test]
fn message_over_the_length_cap() {
    let t = multi();
    let limits = FetchLimits {
        max_message_len: 1000,
        ..FetchLimits::default()
    };
    let mut s = session(&t, limits);
    s.on_bytes(SEC, &opening(&t));
    // Messages we skip may be any length: they are never buffered.
    let mut b = Vec::new();
    emit::message(&mut b, Kind::Bitfield, &[0; 5000]);
    s.on_bytes(SEC, &b);
    assert!(s.outcome().is_none());
    assert_eq!(s.buffered(), 0);
    let msg = data_msg(0, t.info.len(), piece_of(&t.info, 0));
    s.on_bytes(SEC, &msg[..10]);
    assert_eq!(
        failure(&s),
        Reason::Protocol("extended message over the length cap")
    );
}

#[test]
fn right_hash_but_unusable_dictionary() {
    // Hashes to its info-hash, but has no piece length: no peer can do better.
    let info = b"d4:name1:xe".to_vec();
    let ih = crate::swarm::metainfo::info_hash_of(&info);
    let mut s = FetchSession::new(ih, our_id(), 0, FetchLimits::default());
    let mut b = handshake(&ih, true);
    b.extend(ext_handshake(Some(PEER_UT), Some(info.len() as u64)));
    b.extend(data_msg(0, info.len(), &info));
    s.on_bytes(SEC, &b);
    assert_eq!(
        failure(&s),
        Reason::Unusable(crate::swarm::MetainfoError::Field("piece length"))
    );
}
