//! `swarm::Metainfo::from_info` (a raw info dictionary, as BEP 9 carries it) and
//! `from_torrent` (a whole .torrent file), on the same input.
//!
//! Input: the bytes, given to both.
//!
//! Checks: no panic; when parsed:
//! - `from_info`: the info-hash is the SHA-1 of the input and `info` is the input;
//!   `from_torrent`: `info` is a sub-slice of the input and the info-hash is its SHA-1, and
//!   `from_info(info)` gives the same metainfo;
//! - `piece_length` within [MIN_PIECE_LEN, MAX_PIECE_LEN]; total_length is the sum of the
//!   file lengths; `num_pieces() * 20` hashes, num_pieces == ceil(total / piece_length);
//!   `piece_hash(i)` is Some exactly for i < num_pieces;
//! - `piece_len(i)` for i in 0..num_pieces is > 0 and <= piece_length, and they sum to
//!   total_length; `piece_len(num_pieces)` is None;
//! - `pad_ranges(i)` are non-empty, ordered, non-overlapping ranges within [0, piece_len(i)]
//!   and lie in pad files;
//! - `verify_piece` refuses data of the wrong length and past the end.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peercache::swarm::metainfo::{MAX_PIECE_LEN, MIN_PIECE_LEN};
use peercache::swarm::Metainfo;
use peercache::wire::infohash::InfoHash;
use sha1::{Digest, Sha1};

fn sha1(b: &[u8]) -> InfoHash {
    InfoHash::from(<[u8; 20]>::from(Sha1::digest(b)))
}

fn check(m: &Metainfo) {
    assert!((MIN_PIECE_LEN..=MAX_PIECE_LEN).contains(&m.piece_length));
    let sum: u64 = m.files.iter().map(|f| f.length).sum();
    assert_eq!(sum, m.total_length, "total_length is not the sum of the files");
    let n = m.num_pieces();
    assert_eq!(n as u64, m.total_length.div_ceil(m.piece_length), "piece count");
    assert!(m.piece_hash(n.saturating_sub(1)).is_some() || n == 0);
    assert!(m.piece_hash(n).is_none());
    assert!(m.piece_len(n).is_none());
    assert!(!m.verify_piece(n, &[]));
    let mut total = 0u64;
    for i in 0..n {
        let len = m.piece_len(i).expect("piece in range has a length");
        assert!(len > 0, "piece {i} is empty");
        assert!(len as u64 <= m.piece_length, "piece {i} longer than piece length");
        if i + 1 < n {
            assert_eq!(len as u64, m.piece_length, "only the last piece may be short");
        }
        total += len as u64;
        assert!(m.piece_hash(i).is_some());
        let mut prev_end = 0u32;
        for (s, e) in m.pad_ranges(i) {
            assert!(s < e, "piece {i}: empty or inverted pad range {s}..{e}");
            assert!(e <= len, "piece {i}: pad range {s}..{e} past {len}");
            assert!(s >= prev_end, "piece {i}: pad ranges overlap or are unordered");
            prev_end = e;
        }
        if i < 4 {
            assert!(!m.verify_piece(i, &vec![0; len as usize + 1]));
        }
    }
    assert_eq!(total, m.total_length, "piece lengths do not add up");
    // Pad ranges of all pieces together are exactly the pad files.
    if n <= 4096 {
        let pad_total: u64 = (0..n)
            .flat_map(|i| m.pad_ranges(i))
            .map(|(s, e)| (e - s) as u64)
            .sum();
        let pad_files: u64 = m.files.iter().filter(|f| f.pad).map(|f| f.length).sum();
        assert_eq!(pad_total, pad_files, "pad ranges do not cover the pad files");
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Metainfo::from_info(data) {
        assert_eq!(m.info, data, "info is not the input");
        assert_eq!(m.info_hash, sha1(data), "info-hash is not the SHA-1 of the input");
        check(&m);
    }
    if let Ok(m) = Metainfo::from_torrent(data) {
        assert!(m.info.len() <= data.len());
        let pos = data
            .windows(m.info.len().max(1))
            .position(|w| w == &m.info[..]);
        assert!(pos.is_some() || m.info.is_empty(), "info is not in the input");
        assert_eq!(m.info_hash, sha1(&m.info), "info-hash is not the SHA-1 of info");
        let again = Metainfo::from_info(&m.info).expect("info dict parses alone");
        assert_eq!(again.info_hash, m.info_hash);
        assert_eq!(
            (again.piece_length, again.total_length, &again.files, again.hybrid),
            (m.piece_length, m.total_length, &m.files, m.hybrid)
        );
        check(&m);
    }
});
