//! BEP 9 metadata assembly: `swarm::metadata::MetadataAssembler::data`, fed input-derived
//! `data` messages for a few info-hashes, some of them the real hash of an info dictionary.
//!
//! Input: `[flags][n: u8]` then an info dictionary source, then operations.
//! - `flags` bit 0: the dictionary is a synthetic valid one (`name` padded to
//!   `n * 512` bytes, so it spans several 16 KiB metadata pieces), else the next `n * 8`
//!   input bytes are taken raw as the dictionary;
//! - `flags` bits 1..3: max_swarms = 1 + (flags >> 1 & 3).
//! - operations, each `[op][piece: u8][arg: u8]`: `op & 3` picks the info-hash (0: the real
//!   one of the dictionary, 1..3: fixed others), `op >> 2 & 3` the size claimed
//!   (0: the dictionary's, 1: it + arg - 128, 2: None, 3: a wild i64 from `arg`),
//!   `op >> 4 & 3` the data (0: the dictionary's bytes of that piece, 1: the same with
//!   byte `arg` flipped, 2: `arg` bytes of the input, 3: the right length of zeros);
//!   `op & 0x40` makes the piece index negative or huge.
//!
//! Checks: never panics; a returned metainfo hashes to the info-hash asked for, its `info`
//! is as long as the size claimed; at the end, a fresh assembler fed every piece of the
//! dictionary (in an input-chosen order) returns it exactly when `Metainfo::from_info`
//! accepts it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peercache::swarm::metadata::{MetadataAssembler, METADATA_PIECE};
use peercache::swarm::metainfo::MAX_INFO_LEN;
use peercache::swarm::Metainfo;
use peercache::wire::infohash::InfoHash;
use sha1::{Digest, Sha1};

fn sha1(b: &[u8]) -> InfoHash {
    InfoHash::from(<[u8; 20]>::from(Sha1::digest(b)))
}

fn synthetic(n: usize) -> Vec<u8> {
    let name = vec![b'x'; n * 512 + 1];
    let length = 40000u64;
    let count = length.div_ceil(16384);
    let mut v = format!("d6:lengthi{length}e4:name{}:", name.len()).into_bytes();
    v.extend_from_slice(&name);
    v.extend_from_slice(format!("12:piece lengthi16384e6:pieces{}:", count * 20).as_bytes());
    for i in 0..count * 20 {
        v.push(i as u8);
    }
    v.push(b'e');
    v
}

fuzz_target!(|data: &[u8]| {
    let Some((&[flags, n], mut rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let info = if flags & 1 != 0 {
        synthetic(n as usize)
    } else {
        let k = (n as usize * 8).min(rest.len());
        let v = rest[..k].to_vec();
        rest = &rest[k..];
        v
    };
    let real = sha1(&info);
    let others = [[1u8; 20], [2u8; 20], [3u8; 20]].map(InfoHash::from);
    let mut a = MetadataAssembler::new(1 + (flags as usize >> 1 & 3));
    let total = info.len();
    let npieces = total.div_ceil(METADATA_PIECE).max(1);
    let mut order = Vec::new();
    let mut ops = rest;
    while let Some((&[op, piece, arg], tail)) = ops.split_first_chunk::<3>() {
        ops = tail;
        order.push(piece as usize % npieces);
        let ih = match op & 3 {
            0 => real,
            k => others[k as usize - 1],
        };
        let size: Option<i64> = match op >> 2 & 3 {
            0 => Some(total as i64),
            1 => Some(total as i64 + arg as i64 - 128),
            2 => None,
            _ => Some(i64::from_be_bytes([arg, arg, 0, arg, 0, 0, arg ^ 0x5a, arg])),
        };
        let mut index = piece as i64;
        if op & 0x40 != 0 {
            index = if arg & 1 != 0 { -(piece as i64) - 1 } else { (piece as i64) << 32 };
        }
        let want = size
            .and_then(|s| usize::try_from(s).ok())
            .filter(|&s| s <= MAX_INFO_LEN)
            .map_or(0, |s| {
                let start = (index.max(0) as usize).saturating_mul(METADATA_PIECE);
                s.saturating_sub(start).min(METADATA_PIECE)
            });
        let piece_bytes: Vec<u8> = match op >> 4 & 3 {
            0 | 1 => {
                let start = (index.max(0) as usize).saturating_mul(METADATA_PIECE).min(total);
                let mut v = info[start..(start + METADATA_PIECE).min(total)].to_vec();
                if op >> 4 & 3 == 1 && !v.is_empty() {
                    let i = arg as usize % v.len();
                    v[i] ^= 0x20;
                }
                v
            }
            2 => {
                let k = (arg as usize).min(ops.len());
                let v = ops[..k].to_vec();
                ops = &ops[k..];
                v
            }
            _ => vec![0; want],
        };
        if let Some(m) = a.data(ih, index, size, &piece_bytes) {
            assert_eq!(m.info_hash, ih, "metainfo for the wrong info-hash");
            assert_eq!(sha1(&m.info), ih, "metainfo does not hash to its info-hash");
            assert_eq!(Some(m.info.len() as i64), size, "metainfo of another size");
        }
    }
    // Honest peers: every piece of the dictionary, in an input-chosen order with repeats.
    if total == 0 || total > MAX_INFO_LEN {
        return;
    }
    let mut a = MetadataAssembler::new(1);
    let mut got = None;
    let mut fed = vec![false; npieces];
    let all = order.into_iter().chain(0..npieces);
    for p in all {
        if fed.iter().all(|&f| f) {
            break;
        }
        fed[p] = true;
        let start = p * METADATA_PIECE;
        let chunk = &info[start..(start + METADATA_PIECE).min(total)];
        let r = a.data(real, p as i64, Some(total as i64), chunk);
        if r.is_some() {
            assert!(fed.iter().all(|&f| f), "metainfo before every piece arrived");
            got = r;
        }
    }
    let expect = Metainfo::from_info(&info);
    assert_eq!(
        got.is_some(),
        expect.is_ok(),
        "assembled metadata vs from_info: {:?}",
        expect.err()
    );
    if let Some(m) = got {
        assert_eq!(m.info, info);
        assert_eq!(a.failed, 0);
    }
});
