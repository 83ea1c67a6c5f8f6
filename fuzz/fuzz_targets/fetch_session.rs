//! The metadata fetcher: `fetch::FetchSession` talking to a peer whose bytes are partly
//! honest (built from a real info dictionary) and partly the input's, with time steps.
//!
//! Input: `[cfg]` then operations.
//! - `cfg` bit 0: the info dictionary spans 3 metadata pieces (else 1); bit 1: the session
//!   asks for another info-hash than the dictionary's; bit 2: tiny limits
//!   (`max_metadata_size` 40000, `max_message_len` 512, 1 request in flight, timeouts 2 s
//!   idle / 5 s total; else the defaults); bits 4..7: feed runs of `1 + (cfg >> 4) * 7`.
//! - operations, each `[op][arg]`, `op & 7`:
//!   0: `arg` bytes of the input, as they are; 1: the peer's handshake and BEP 10
//!   handshake (`arg` bit 0: no BEP 10 bit, bit 1: no ut_metadata, bit 2: metadata_size
//!   off by `arg >> 3`, bit 3..: otherwise honest); 2: the data of piece `arg % 4` (honest);
//!   3: the same with byte `arg` flipped; 4: a reject of piece `arg & 3`, or a request to
//!   us (`arg & 4`); 5: `on_timeout(now)`; 6: `on_timeout(poll_timeout())`; 7: drain what
//!   the session sent. `op >> 3` seconds pass before the operation (times 0..31), and
//!   `op & 0x80` makes it milliseconds.
//!
//! Checks: no panic; the bytes held for a message stay within `max_message_len` and the
//! output queue within `MAX_QUEUED` plus what a handshake, requests and one reject take;
//! a call made at or after the announced deadline ends the session (with `Timeout` unless
//! it was already over); metadata is returned only when it hashes to the info-hash asked
//! for; once over, the outcome never changes and nothing more is sent or scheduled;
//! everything sent reads back as our handshake followed by BEP 10 messages only.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peercache::fetch::{FetchLimits, FetchSession, Outcome, Reason, MAX_QUEUED, UT_METADATA_ID};
use peercache::swarm::metainfo::info_hash_of;
use peercache::wire::infohash::InfoHash;
use peercache::wire::peerwire::{self, emit, Handshake, Kind, HANDSHAKE_LEN};

const PIECE: usize = 16 * 1024;

fn info_dict(pieces: usize) -> Vec<u8> {
    let name = vec![b'x'; (pieces - 1) * PIECE + 100];
    let mut v = format!("d6:lengthi40000e4:name{}:", name.len()).into_bytes();
    v.extend_from_slice(&name);
    v.extend_from_slice(b"12:piece lengthi16384e6:pieces60:");
    v.extend((0..60u8).collect::<Vec<_>>());
    v.push(b'e');
    v
}

fn ut(to: u8, dict: &str, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    emit::extended(&mut v, to, &[dict.as_bytes(), data]);
    v
}

fn outcome_key(o: Option<&Outcome>) -> Option<String> {
    o.map(|o| match o {
        Outcome::Metadata(m) => format!("meta {}", m.info_hash),
        Outcome::Failed(r) => format!("{r:?}"),
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&cfg, mut rest)) = data.split_first() else {
        return;
    };
    let info = info_dict(if cfg & 1 != 0 { 3 } else { 1 });
    let real = info_hash_of(&info);
    let ih = if cfg & 2 != 0 {
        InfoHash::from([5; 20])
    } else {
        real
    };
    let limits = if cfg & 4 != 0 {
        FetchLimits {
            max_metadata_size: 40_000,
            max_message_len: 512,
            max_outstanding: 1,
            idle_timeout_secs: 2,
            total_timeout_secs: 5,
        }
    } else {
        FetchLimits::default()
    };
    let run = 1 + usize::from(cfg >> 4) * 7;
    let mut s = FetchSession::new(
        ih,
        peercache::fetch::our_peer_id([1; 12]),
        1000,
        limits.clone(),
    );
    let mut now = 1000u64;
    let mut sent = Vec::new();
    let mut done: Option<String> = None;
    while let Some((&[op, arg], tail)) = rest.split_first_chunk::<2>() {
        rest = tail;
        let step = u64::from(op >> 3 & 0x0f);
        now += if op & 0x80 != 0 {
            step * 1000
        } else {
            step * 1_000_000
        };
        let deadline = s.poll_timeout();
        let mut called_at = Some(now);
        match op & 7 {
            0 => {
                let k = usize::from(arg).min(rest.len());
                // No bytes is still a call: it must notice a passed deadline too.
                s.on_bytes(now, &[]);
                for c in rest[..k].chunks(run) {
                    s.on_bytes(now, c);
                }
                rest = &rest[k..];
            }
            1 => {
                let mut v = Vec::new();
                let reserved = [0, 0, 0, 0, 0, if arg & 1 != 0 { 0 } else { 0x10 }, 0, 0];
                emit::handshake(&mut v, reserved, real.as_bytes(), b"-XX0000-000000000000");
                let size = info.len() as u64 + u64::from(arg >> 3) * u64::from(arg & 4 != 0);
                let m = if arg & 2 != 0 {
                    "d6:ut_pexi2ee"
                } else {
                    "d11:ut_metadatai3ee"
                };
                let d = format!("d1:m{m}13:metadata_sizei{size}ee");
                v.extend(ut(0, &d, &[]));
                for c in v.chunks(run) {
                    s.on_bytes(now, c);
                }
            }
            2 | 3 => {
                let p = usize::from(arg) % 4;
                let start = (p * PIECE).min(info.len());
                let mut b = info[start..(start + PIECE).min(info.len())].to_vec();
                if op & 7 == 3 && !b.is_empty() {
                    let i = usize::from(arg) % b.len();
                    b[i] ^= 0x40;
                }
                let d = format!("d8:msg_typei1e5:piecei{p}e10:total_sizei{}ee", info.len());
                for c in ut(UT_METADATA_ID, &d, &b).chunks(run) {
                    s.on_bytes(now, c);
                }
            }
            4 => {
                let ty = if arg & 4 != 0 { 0 } else { 2 };
                let d = format!("d8:msg_typei{ty}e5:piecei{}ee", arg & 3);
                s.on_bytes(now, &ut(UT_METADATA_ID, &d, &[]));
            }
            5 => s.on_timeout(now),
            6 => match deadline {
                Some(t) => {
                    now = now.max(t);
                    called_at = Some(now);
                    s.on_timeout(now);
                }
                None => called_at = None,
            },
            _ => {
                called_at = None;
                if let Some(b) = s.poll_transmit() {
                    assert!(done.is_none(), "sent after the end");
                    sent.extend(b);
                }
            }
        }
        assert!(s.buffered() <= limits.max_message_len as usize);
        // Handshakes, a few requests (at most 4 pieces here) and one reject past the cap.
        assert!(s.queued() <= MAX_QUEUED + 512 + 64 * 4);
        if let (Some(d), Some(at)) = (deadline, called_at) {
            if at >= d {
                let o = s.outcome();
                assert!(o.is_some(), "deadline passed, session open");
                if done.is_none() {
                    assert!(matches!(o, Some(Outcome::Failed(Reason::Timeout))), "{o:?}");
                }
            }
        }
        if let Some(Outcome::Metadata(m)) = s.outcome() {
            assert_eq!(m.info_hash, ih);
            assert_eq!(info_hash_of(&m.info), ih);
        }
        let key = outcome_key(s.outcome());
        match &done {
            Some(d) => {
                assert_eq!(Some(d), key.as_ref(), "outcome changed");
                assert_eq!(s.poll_timeout(), None);
                assert_eq!(s.queued(), 0);
            }
            None => done = key,
        }
        if done.is_none() {
            if let Some(t) = s.poll_timeout() {
                assert!(
                    t > now || called_at.is_none(),
                    "deadline not after a timer run"
                );
            }
        }
    }
    if let Some(b) = s.poll_transmit() {
        sent.extend(b);
    }
    // What we sent: our handshake, then BEP 10 messages only.
    if sent.is_empty() {
        return;
    }
    let hs = Handshake::new_checked(&sent).expect("our handshake first");
    assert_eq!(hs.info_hash(), ih);
    let mut at = HANDSHAKE_LEN;
    while at < sent.len() {
        let len = peerwire::length_prefix(&sent[at..]).expect("prefix") as usize;
        let body = &sent[at + 4..at + 4 + len];
        assert_eq!(Kind::from_id(body[0]), Some(Kind::Extended));
        at += 4 + len;
    }
});
