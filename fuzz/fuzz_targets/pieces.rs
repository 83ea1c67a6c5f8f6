//! Block -> piece assembly and verification (`swarm::Pieces`) over two small real torrents
//! built here, with a sink that only accepts pieces that verify.
//!
//! Torrents (piece length 2048): A, one 11 000-byte file (6 pieces, the last short); B, a
//! file of 3000 bytes, a BEP 47 pad file of 1096 (to the piece boundary), a file of 2500:
//! pieces 0 and 1 of B are partly padding (zeros peers never send). A third info-hash C has
//! no metainfo ever (quarantine only).
//!
//! Input: `[flags]` then operations, each `[op][index][begin: u8][len: u8][x]`:
//! - `op & 3` the swarm (0 A, 1 B, 2/3 C); `op >> 2 & 1` metainfo withheld (quarantine)
//!   for A/B; `op >> 3 & 3` the sender (4 peers);
//! - `op >> 5 & 3`: 0 block of `len * 16` bytes at `begin * 16`, 1 the same with byte `x`
//!   corrupted, 2 the honest block `[begin * 256, +256)` (aligned, likely to complete),
//!   3 release: `metainfo_arrived` for the swarm (also with a swarm never quarantined);
//! - `op & 0x80`: a whole honest piece `index` in 512-byte blocks (corrupted at `x` if
//!   `len` is odd).
//! `index` is taken modulo 8 (past the end of both torrents sometimes).
//! Caps: assembly 8192 / 4096 / 1 MiB bytes and quarantine 2048 / 4096 bytes by `flags`.
//!
//! Checks: no panic; `held()` stays within both caps and quarantined <= held; the sink only
//! ever gets pieces that verify, once each; counters: admitted <= verified; after feeding a
//! whole honest piece with the metainfo known, to a piece no other operation touched (and an
//! assembly cap of at least one piece), it is in the sink.
#![no_main]

use std::cell::RefCell;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use peercache::swarm::{Metainfo, PieceSink, Pieces, VerifiedPiece};
use peercache::wire::infohash::InfoHash;
use sha1::{Digest, Sha1};

const PL: usize = 2048;

#[derive(Default)]
struct Sink(RefCell<HashSet<(InfoHash, u32)>>);

impl PieceSink for Sink {
    fn contains(&self, ih: &InfoHash, i: u32) -> bool {
        self.0.borrow().contains(&(*ih, i))
    }
    fn admit(&self, m: &Metainfo, p: VerifiedPiece) -> bool {
        let (i, d) = (p.index(), p.data());
        assert_eq!(p.info_hash(), &m.info_hash, "piece of another swarm");
        assert!(m.verify_piece(i, d), "unverified piece {i} reached the sink");
        assert_eq!(Some(*p.hash()), m.piece_hash(i), "hash matched is not the listed one");
        assert!(
            self.0.borrow_mut().insert((m.info_hash, i)),
            "piece {i} admitted twice"
        );
        true
    }
    fn touch(&self, _: &InfoHash, _: u32) {}
}

fn hashes(content: &[u8]) -> Vec<u8> {
    content.chunks(PL).flat_map(|p| Sha1::digest(p).to_vec()).collect()
}

fn bstr(v: &mut Vec<u8>, s: &[u8]) {
    v.extend_from_slice(format!("{}:", s.len()).as_bytes());
    v.extend_from_slice(s);
}

/// (metainfo, content as hashed, with pad files as zeros).
fn torrents() -> [(Arc<Metainfo>, Vec<u8>); 2] {
    let a: Vec<u8> = (0..11000u32).map(|i| (i.wrapping_mul(7) % 251) as u8).collect();
    let mut info = format!("d6:lengthi{}e4:name1:a12:piece lengthi{PL}e6:pieces", a.len())
        .into_bytes();
    bstr(&mut info, &hashes(&a));
    info.push(b'e');
    let ma = Metainfo::from_info(&info).expect("torrent A");

    let f1: Vec<u8> = (0..3000u32).map(|i| (i % 253) as u8 ^ 0x55).collect();
    let f2: Vec<u8> = (0..2500u32).map(|i| (i.wrapping_mul(13) % 241) as u8).collect();
    let mut b = f1.clone();
    b.extend(std::iter::repeat(0).take(1096));
    b.extend_from_slice(&f2);
    let mut info = b"d5:filesl".to_vec();
    info.extend_from_slice(b"d6:lengthi3000e4:pathl2:f1ee");
    info.extend_from_slice(b"d4:attr1:p6:lengthi1096e4:pathl4:.pad4:1096ee");
    info.extend_from_slice(b"d6:lengthi2500e4:pathl2:f2ee");
    info.extend_from_slice(format!("e4:name1:b12:piece lengthi{PL}e6:pieces").as_bytes());
    bstr(&mut info, &hashes(&b));
    info.push(b'e');
    let mb = Metainfo::from_info(&info).expect("torrent B");
    assert_eq!(mb.pad_ranges(1), vec![(952, 2048)]);
    [(Arc::new(ma), a), (Arc::new(mb), b)]
}

fn peer(n: u8) -> SocketAddr {
    SocketAddr::from(([198, 19, 0, n], 6881))
}

fuzz_target!(|data: &[u8]| {
    thread_local! {
        static T: [(Arc<Metainfo>, Vec<u8>); 2] = torrents();
    }
    T.with(|t| run(t, data));
});

fn run(t: &[(Arc<Metainfo>, Vec<u8>); 2], data: &[u8]) {
    let Some((&flags, mut ops)) = data.split_first() else {
        return;
    };
    let max_bytes = [8192, 4096, 1 << 20, 8192][(flags & 3) as usize];
    let q_max = if flags & 4 != 0 { 4096 } else { 2048 };
    let mut p = Pieces::new(max_bytes, q_max);
    let sink = Sink::default();
    let c_ih = InfoHash::from([0xCC; 20]);
    // (swarm, index) pieces that got anything but whole honest pieces with metainfo.
    let mut dirty: HashSet<(usize, u32)> = HashSet::new();
    let check = |p: &Pieces| {
        let (held, q) = p.held();
        assert!(held <= max_bytes, "held {held} > cap {max_bytes}");
        assert!(q <= q_max, "quarantined {q} > cap {q_max}");
        assert!(q <= held, "quarantined {q} > held {held}");
    };
    while let Some((&[op, index, begin, len, x], tail)) = ops.split_first_chunk::<5>() {
        ops = tail;
        let sw = (op & 3) as usize;
        let index = (index % 8) as u32;
        let from = peer(op >> 3 & 3);
        let (ih, meta, content) = if sw < 2 {
            let (m, c) = &t[sw];
            let meta = (op >> 2 & 1 == 0).then_some(m);
            (m.info_hash, meta, Some(c))
        } else {
            (c_ih, None, None)
        };
        let piece = |index: u32| -> Vec<u8> {
            match content {
                Some(c) => {
                    let s = (index as usize * PL).min(c.len());
                    c[s..(s + PL).min(c.len())].to_vec()
                }
                // Swarm C: content of A's shape, never verifiable.
                None => t[0].1[..PL].to_vec(),
            }
        };
        let pc = piece(index);
        if op & 0x80 != 0 {
            // A whole honest piece (pads included, as zeros peers would not send).
            let corrupt = len & 1 != 0;
            let clean = !dirty.contains(&(sw, index));
            if corrupt || meta.is_none() {
                dirty.insert((sw, index));
            }
            for (k, blk) in pc.chunks(512).enumerate() {
                let mut b = blk.to_vec();
                if corrupt && k == (x as usize / 128) % 4 {
                    let i = x as usize % b.len();
                    b[i] ^= 0x80;
                }
                p.block(ih, meta, index, (k * 512) as u32, b.as_slice(), from, &sink);
                check(&p);
            }
            if let (Some(m), false, true, true) = (meta, corrupt, clean, max_bytes >= PL) {
                if m.piece_len(index).is_some() {
                    assert!(
                        sink.contains(&ih, index),
                        "whole honest piece {index} of swarm {sw} fed but not admitted"
                    );
                }
            }
            continue;
        }
        if op >> 5 & 3 != 3 {
            dirty.insert((sw, index));
        }
        match op >> 5 & 3 {
            0 | 1 => {
                let b0 = begin as usize * 16;
                let n = len as usize * 16;
                let mut b: Vec<u8> = (b0..b0 + n)
                    .map(|i| pc.get(i).copied().unwrap_or(i as u8))
                    .collect();
                if op >> 5 & 3 == 1 && !b.is_empty() {
                    let i = x as usize % b.len();
                    b[i] ^= 1 << (x % 8);
                }
                p.block(ih, meta, index, b0 as u32, b.as_slice(), from, &sink);
            }
            2 => {
                let b0 = begin as usize % 8 * 256;
                let b: Vec<u8> = (b0..b0 + 256).filter_map(|i| pc.get(i).copied()).collect();
                p.block(ih, meta, index, b0 as u32, b.as_slice(), from, &sink);
            }
            _ => {
                if sw < 2 {
                    p.metainfo_arrived(&t[sw].0, &sink);
                }
            }
        }
        check(&p);
        for (m, _) in t.iter() {
            if let Some(c) = p.counters.get(&m.info_hash) {
                assert!(c.admitted <= c.verified);
            }
        }
    }
    // Everything that reached the sink verifies (checked in admit); and C never does.
    assert!(sink.0.borrow().iter().all(|(h, _)| *h != c_ih));
}
