//! Deterministic torrent content, the bencoded info dictionary that hashes it, and the
//! `.torrent` file around it.
//!
//! Content is random-access: any byte range can be rebuilt from `(seed, torrent_index,
//! offset)` alone, so the generator never holds a whole file and tests can rebuild the
//! original file without a copy on disk.

use sha1::{Digest, Sha1};

use super::SynthError;

/// Block size leechers request; the de-facto standard every client uses.
pub const BLOCK_LEN: u32 = 16384;

/// Announce URL written into `--torrent-out` files (benchmarking range, never routable).
pub const ANNOUNCE_URL: &str = "http://198.19.0.1:6969/announce";

/// SplitMix64 finaliser: a strong, cheap 64-bit mixer, used as a counter-mode PRNG so that
/// content can be produced at any offset without generating everything before it.
fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Per-torrent key so torrents of one seed differ from each other and from other seeds.
fn content_key(seed: u64, torrent_index: u32) -> u64 {
    mix64(seed ^ mix64(u64::from(torrent_index) ^ 0x7065_6572_6361_6368))
}

/// Fills `out` with the content bytes of torrent `torrent_index` starting at `offset`.
/// Byte `o` of the content is byte `o % 8` (little endian) of `mix64(key ^ mix64(o / 8))`.
pub fn fill_content(seed: u64, torrent_index: u32, offset: u64, out: &mut [u8]) {
    let key = content_key(seed, torrent_index);
    let mut pos = offset;
    let mut i = 0usize;
    while i < out.len() {
        let word = mix64(key ^ mix64(pos / 8)).to_le_bytes();
        let within = (pos % 8) as usize;
        let take = (8 - within).min(out.len() - i);
        out[i..i + take].copy_from_slice(&word[within..within + take]);
        i += take;
        pos += take as u64;
    }
}

/// The content bytes `[offset, offset + len)` of torrent `torrent_index` generated from
/// `seed` (the `--seed` of the run; every flow of a run shares torrent 0). Offsets beyond the
/// torrent's length still produce bytes: the caller knows the length from the Truth.
pub fn content_byte_range(seed: u64, torrent_index: u32, offset: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    fill_content(seed, torrent_index, offset, &mut out);
    out
}

pub use crate::wire::infohash::hex;
use crate::wire::infohash::InfoHash;

// Minimal bencode writer: the generator only ever emits a handful of fixed-shape dicts, so
// keys are written by hand in sorted order (BEP 3 requires sorted keys; the info-hash depends
// on the exact bytes).
pub(crate) fn bstr(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(s.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(s);
}

pub(crate) fn bint(out: &mut Vec<u8>, v: u64) {
    out.push(b'i');
    out.extend_from_slice(v.to_string().as_bytes());
    out.push(b'e');
}

/// A v1 single-file torrent over generated content.
#[derive(Clone, Debug)]
pub struct Torrent {
    pub seed: u64,
    pub index: u32,
    pub name: String,
    pub total_length: u64,
    pub piece_length: u32,
    pub num_pieces: u32,
    /// The bencoded info dictionary exactly as hashed (also served over ut_metadata).
    pub info: Vec<u8>,
    pub info_hash: InfoHash,
    /// Where the 20-byte piece hashes start inside `info`.
    pieces_at: usize,
}

impl Torrent {
    /// Hashes the content piece by piece (streaming, 64 KiB at a time) and builds the info
    /// dict. Memory is the info dict itself: 20 bytes per piece, inherent to the format.
    pub fn generate(
        seed: u64,
        index: u32,
        total_length: u64,
        piece_length: u32,
    ) -> Result<Self, SynthError> {
        if total_length == 0 {
            return Err(SynthError::InvalidArgs(
                "--size must be at least 1 byte".into(),
            ));
        }
        if piece_length == 0 {
            return Err(SynthError::InvalidArgs(
                "--piece-length must be at least 1".into(),
            ));
        }
        let num_pieces = total_length.div_ceil(u64::from(piece_length));
        // Piece indices travel as u32 on the wire.
        let num_pieces = u32::try_from(num_pieces).map_err(|_| {
            SynthError::InvalidArgs(format!(
                "{total_length} bytes in pieces of {piece_length} is more than 2^32 pieces"
            ))
        })?;
        let name = format!("synth-{seed}-{index}.bin");

        let mut info = Vec::with_capacity(96 + 20 * num_pieces as usize);
        info.push(b'd');
        bstr(&mut info, b"length");
        bint(&mut info, total_length);
        bstr(&mut info, b"name");
        bstr(&mut info, name.as_bytes());
        bstr(&mut info, b"piece length");
        bint(&mut info, u64::from(piece_length));
        bstr(&mut info, b"pieces");
        info.extend_from_slice((20 * num_pieces as u64).to_string().as_bytes());
        info.push(b':');
        let pieces_at = info.len();

        let mut chunk = vec![0u8; 65536];
        for p in 0..num_pieces {
            let start = u64::from(p) * u64::from(piece_length);
            let end = (start + u64::from(piece_length)).min(total_length);
            let mut h = Sha1::new();
            let mut at = start;
            while at < end {
                let n = ((end - at) as usize).min(chunk.len());
                fill_content(seed, index, at, &mut chunk[..n]);
                h.update(&chunk[..n]);
                at += n as u64;
            }
            info.extend_from_slice(&h.finalize());
        }
        info.push(b'e');
        let info_hash = InfoHash::from(<[u8; 20]>::from(Sha1::digest(&info)));
        Ok(Torrent {
            seed,
            index,
            name,
            total_length,
            piece_length,
            num_pieces,
            info,
            info_hash,
            pieces_at,
        })
    }

    /// Length of piece `index` (the last one may be short).
    pub fn piece_len(&self, index: u32) -> u32 {
        let start = u64::from(index) * u64::from(self.piece_length);
        let rest = self.total_length.saturating_sub(start);
        rest.min(u64::from(self.piece_length)) as u32
    }

    /// SHA-1 of piece `index` as listed in the info dict.
    pub fn piece_hash(&self, index: u32) -> Option<&[u8]> {
        let at = self.pieces_at + 20 * index as usize;
        if index >= self.num_pieces {
            return None;
        }
        self.info.get(at..at + 20)
    }

    /// Number of 16 KiB blocks in a full piece; block ids are `index * this + begin / 16384`.
    pub fn blocks_per_piece(&self) -> u64 {
        u64::from(self.piece_length.div_ceil(BLOCK_LEN))
    }

    /// Total number of distinct block ids (upper bound, used to size the seen-blocks bitset).
    pub fn block_id_space(&self) -> u64 {
        u64::from(self.num_pieces) * self.blocks_per_piece()
    }

    /// A complete `.torrent` file whose info dict is byte-identical to the hashed one.
    pub fn torrent_file(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.info.len() + 64);
        out.push(b'd');
        bstr(&mut out, b"announce");
        bstr(&mut out, ANNOUNCE_URL.as_bytes());
        bstr(&mut out, b"info");
        out.extend_from_slice(&self.info);
        out.push(b'e');
        out
    }
}
