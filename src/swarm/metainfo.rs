//! The info dictionary: the root of trust. Its SHA-1 is the v1 info-hash; it lists the SHA-1
//! of every piece. Nothing here trusts its input: lengths, counts and nesting are checked
//! before use, and a dictionary whose hash is not the expected info-hash is refused.

use std::path::Path;

use sha1::{Digest, Sha1};
use thiserror::Error;

use crate::wire::bencode::{self, Value};
use crate::wire::infohash::InfoHash;

/// Largest info dictionary accepted (BEP 9 metadata of even huge torrents is a few MB).
pub const MAX_INFO_LEN: usize = 32 << 20;
/// Piece length bounds: BEP 3 uses powers of two, 16 KiB and up in practice.
pub const MIN_PIECE_LEN: u64 = 1 << 10;
pub const MAX_PIECE_LEN: u64 = 1 << 28;

#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum MetainfoError {
    #[error("not bencoded: {0}")]
    Bencode(#[from] bencode::BencodeError),
    #[error("no info dictionary")]
    NoInfo,
    #[error("info dictionary larger than {MAX_INFO_LEN} bytes")]
    TooLarge,
    #[error("missing or invalid field '{0}'")]
    Field(&'static str),
    #[error("pieces field is {got} bytes, expected {want} for {count} pieces")]
    PieceCount { got: usize, want: usize, count: u64 },
    #[error("v2-only torrent (no v1 piece hashes): not supported yet")]
    V2Only,
    #[error("SHA-1 of the info dictionary does not match the info-hash")]
    HashMismatch,
    #[error("{0}")]
    Io(String),
}

/// The v1 info-hash of an info dictionary's exact bytes: the one definition of it, so a
/// caller that must tell "does not hash to the info-hash" from "hashes right but is not a
/// dictionary we can use" compares the same thing `from_info_checked` does.
pub fn info_hash_of(raw: &[u8]) -> InfoHash {
    InfoHash::from(<[u8; 20]>::from(Sha1::digest(raw)))
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    pub path: Vec<String>,
    pub length: u64,
    /// BEP 47 pad file (attr "p"): zeros that peers never send; pieces hash over them.
    pub pad: bool,
}

#[derive(Clone, Debug)]
pub struct Metainfo {
    pub info_hash: InfoHash,
    pub name: String,
    pub piece_length: u64,
    pub total_length: u64,
    pub files: Vec<FileEntry>,
    /// A single-file torrent (`length` in the info dictionary): its one file is `name`
    /// itself, not a file inside a directory `name` (a web seed's URLs differ).
    pub single_file: bool,
    /// Hybrid v1+v2 torrent ("meta version" 2 next to v1 fields).
    pub hybrid: bool,
    piece_hashes: Vec<u8>,
    /// The raw info dictionary, byte for byte.
    pub info: Vec<u8>,
}

impl Metainfo {
    /// From a raw info dictionary (BEP 9 metadata, or cut out of a .torrent).
    pub fn from_info(raw: &[u8]) -> Result<Metainfo, MetainfoError> {
        if raw.len() > MAX_INFO_LEN {
            return Err(MetainfoError::TooLarge);
        }
        let (v, used) = bencode::decode_prefix(raw, bencode::Limits::default())?;
        if used != raw.len() || !matches!(v, Value::Dict { .. }) {
            return Err(MetainfoError::NoInfo);
        }
        let info_hash = info_hash_of(raw);
        Self::from_value(&v, info_hash, raw)
    }

    /// From an info dictionary that must hash to `expected` (metadata from the wire).
    pub fn from_info_checked(raw: &[u8], expected: &InfoHash) -> Result<Metainfo, MetainfoError> {
        let m = Self::from_info(raw)?;
        if &m.info_hash != expected {
            return Err(MetainfoError::HashMismatch);
        }
        Ok(m)
    }

    /// From the bytes of a .torrent file.
    pub fn from_torrent(bytes: &[u8]) -> Result<Metainfo, MetainfoError> {
        let (v, _) = bencode::decode_prefix(bytes, bencode::Limits::default())?;
        match v.get(b"info") {
            Some(Value::Dict { raw, .. }) => Self::from_info(raw),
            _ => Err(MetainfoError::NoInfo),
        }
    }

    pub fn from_torrent_file(path: &Path) -> Result<Metainfo, MetainfoError> {
        let bytes = std::fs::read(path).map_err(|e| MetainfoError::Io(e.to_string()))?;
        Self::from_torrent(&bytes)
    }

    fn from_value(
        v: &Value<'_>,
        info_hash: InfoHash,
        raw: &[u8],
    ) -> Result<Metainfo, MetainfoError> {
        let name = v
            .get(b"name")
            .and_then(Value::as_bytes)
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .ok_or(MetainfoError::Field("name"))?;
        let hybrid = v.get(b"meta version").and_then(Value::as_int) == Some(2);
        let piece_length = v
            .get(b"piece length")
            .and_then(Value::as_int)
            .and_then(|n| u64::try_from(n).ok())
            .filter(|n| (MIN_PIECE_LEN..=MAX_PIECE_LEN).contains(n))
            .ok_or(MetainfoError::Field("piece length"))?;
        let single_file = v.get(b"length").is_some();
        let files = match (v.get(b"length"), v.get(b"files")) {
            (Some(len), None) => vec![FileEntry {
                path: vec![name.clone()],
                length: len
                    .as_int()
                    .and_then(|n| u64::try_from(n).ok())
                    .ok_or(MetainfoError::Field("length"))?,
                pad: false,
            }],
            (None, Some(Value::List(list))) => {
                list.iter().map(file_entry).collect::<Result<_, _>>()?
            }
            _ => {
                return Err(
                    if v.get(b"file tree").is_some() && v.get(b"pieces").is_none() {
                        MetainfoError::V2Only
                    } else {
                        MetainfoError::Field("length/files")
                    },
                )
            }
        };
        let total_length = files
            .iter()
            .try_fold(0u64, |a, f| a.checked_add(f.length))
            .ok_or(MetainfoError::Field("length"))?;
        let pieces = match v.get(b"pieces") {
            Some(p) => p.as_bytes().ok_or(MetainfoError::Field("pieces"))?,
            None => return Err(MetainfoError::V2Only),
        };
        let count = total_length.div_ceil(piece_length);
        let want = usize::try_from(count.saturating_mul(20))
            .map_err(|_| MetainfoError::Field("pieces"))?;
        if pieces.len() != want {
            return Err(MetainfoError::PieceCount {
                got: pieces.len(),
                want,
                count,
            });
        }
        Ok(Metainfo {
            info_hash,
            name,
            piece_length,
            total_length,
            files,
            single_file,
            hybrid,
            piece_hashes: pieces.to_vec(),
            info: raw.to_vec(),
        })
    }

    pub fn num_pieces(&self) -> u32 {
        (self.piece_hashes.len() / 20) as u32
    }

    /// Length of piece `index` (the last one may be shorter); None past the end.
    pub fn piece_len(&self, index: u32) -> Option<u32> {
        if index >= self.num_pieces() {
            return None;
        }
        let start = index as u64 * self.piece_length;
        Some((self.total_length - start).min(self.piece_length) as u32)
    }

    pub fn piece_hash(&self, index: u32) -> Option<[u8; 20]> {
        let i = index as usize * 20;
        self.piece_hashes.get(i..i + 20)?.try_into().ok()
    }

    /// Whether `data` is piece `index`, by SHA-1 against the info dictionary.
    pub fn verify_piece(&self, index: u32, data: &[u8]) -> bool {
        match (self.piece_len(index), self.piece_hash(index)) {
            (Some(len), Some(h)) => {
                data.len() == len as usize && <[u8; 20]>::from(Sha1::digest(data)) == h
            }
            _ => false,
        }
    }

    /// Byte ranges of piece `index` (relative to the piece) that fall in pad files: peers
    /// never send them, so assembly fills them with zeros.
    pub fn pad_ranges(&self, index: u32) -> Vec<(u32, u32)> {
        let Some(len) = self.piece_len(index) else {
            return Vec::new();
        };
        let (ps, pe) = (
            index as u64 * self.piece_length,
            index as u64 * self.piece_length + len as u64,
        );
        let mut out = Vec::new();
        let mut off = 0u64;
        for f in &self.files {
            let (fs, fe) = (off, off + f.length);
            off = fe;
            if f.pad && fs < pe && fe > ps {
                out.push(((fs.max(ps) - ps) as u32, (fe.min(pe) - ps) as u32));
            }
        }
        out
    }
}

fn file_entry(v: &Value<'_>) -> Result<FileEntry, MetainfoError> {
    let length = v
        .get(b"length")
        .and_then(Value::as_int)
        .and_then(|n| u64::try_from(n).ok())
        .ok_or(MetainfoError::Field("files.length"))?;
    let path = match v.get(b"path") {
        Some(Value::List(parts)) => parts
            .iter()
            .map(|p| {
                p.as_bytes()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
            })
            .collect::<Option<Vec<_>>>()
            .ok_or(MetainfoError::Field("files.path"))?,
        _ => return Err(MetainfoError::Field("files.path")),
    };
    let pad = v
        .get(b"attr")
        .and_then(Value::as_bytes)
        .is_some_and(|a| a.contains(&b'p'));
    Ok(FileEntry { path, length, pad })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public_torrent(name: &str) -> Metainfo {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/pcaps-public/bittorrentreconstituter-torrents")
            .join(name);
        Metainfo::from_torrent_file(&p).unwrap()
    }

    #[test]
    fn real_torrents() {
        // The public corpus beside the repo (a fresh clone has none: tests/common explains).
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/pcaps-public");
        if !dir.is_dir() && std::env::var_os("PEERCACHE_REQUIRE_PUBLIC").is_none() {
            eprintln!("NOTICE: skipped, {} is absent", dir.display());
            return;
        }
        // _analysis/piece_sha1_verification.txt: pieces, piece length and total per torrent.
        let m = public_torrent("lookaway.mp3.torrent");
        assert_eq!(
            m.info_hash.to_string(),
            "4aa10386e70174864eaeaa54237d37f93e18458f"
        );
        assert_eq!(
            (m.num_pieces(), m.piece_length, m.total_length),
            (60, 32768, 1_945_472)
        );
        assert_eq!(m.piece_len(59), Some((1_945_472 - 59 * 32768) as u32));
        assert_eq!(m.piece_len(60), None);
        let m = public_torrent("test.txt.torrent");
        assert_eq!((m.num_pieces(), m.total_length), (1, 58));
        let m = public_torrent("Code Monkey.mp3.torrent");
        assert_eq!((m.num_pieces(), m.total_length), (115, 3_741_361));
    }

    #[test]
    fn refuses_bad_dicts() {
        assert_eq!(
            Metainfo::from_info(b"de").unwrap_err(),
            MetainfoError::Field("name")
        );
        let bad = b"d6:lengthi100e4:name1:a12:piece lengthi16384e6:pieces3:abce";
        assert!(matches!(
            Metainfo::from_info(bad),
            Err(MetainfoError::PieceCount { .. })
        ));
        let ok = b"d6:lengthi100e4:name1:a12:piece lengthi16384e6:pieces20:abcdefghijklmnopqrste";
        let m = Metainfo::from_info(ok).unwrap();
        assert_eq!(
            Metainfo::from_info_checked(ok, &InfoHash::default()).unwrap_err(),
            MetainfoError::HashMismatch
        );
        assert!(Metainfo::from_info_checked(ok, &m.info_hash).is_ok());
        assert!(!m.verify_piece(0, &[0; 100]));
    }

    #[test]
    fn pad_files() {
        let info = b"d5:filesld6:lengthi10e4:pathl1:aeed4:attr1:p6:lengthi16374e4:pathl4:.pad5:16374eed6:lengthi5e4:pathl1:beee4:name1:t12:piece lengthi16384e6:pieces40:0123456789012345678901234567890123456789e";
        let m = Metainfo::from_info(info).unwrap();
        assert_eq!(m.num_pieces(), 2);
        assert_eq!(m.pad_ranges(0), vec![(10, 16384)]);
        assert_eq!(m.pad_ranges(1), vec![]);
    }
}

/// A piece whose bytes hashed to the SHA-1 its metainfo lists. Only `verify` makes one, so
/// holding one is the proof: the store takes it without hashing again (it only checks that
/// the hash matched is the one in its own copy of the info dictionary).
#[derive(Debug)]
pub struct VerifiedPiece {
    info_hash: InfoHash,
    index: u32,
    hash: [u8; 20],
    /// The piece is `buf[start..]` (see [`Self::verify_at`]).
    buf: Vec<u8>,
    start: usize,
    /// The peers whose copies make up the piece, when assembly knows them (policy rules
    /// judge the piece by its senders).
    senders: Vec<std::net::SocketAddr>,
}

impl VerifiedPiece {
    /// Hash `data` against piece `index` of `m`; the bytes come back on failure.
    pub fn verify(m: &Metainfo, index: u32, data: Vec<u8>) -> Result<VerifiedPiece, Vec<u8>> {
        Self::verify_at(m, index, data, 0)
    }

    /// The same for the piece in `buf[start..]`: what comes before is only there to put
    /// the piece at an aligned address (see `PIECE_ALIGN`).
    pub fn verify_at(
        m: &Metainfo,
        index: u32,
        buf: Vec<u8>,
        start: usize,
    ) -> Result<VerifiedPiece, Vec<u8>> {
        let Some(data) = buf.get(start..) else {
            return Err(buf);
        };
        match m.piece_hash(index) {
            Some(hash) if m.verify_piece(index, data) => Ok(VerifiedPiece {
                info_hash: m.info_hash,
                index,
                hash,
                buf,
                start,
                senders: Vec::new(),
            }),
            _ => Err(buf),
        }
    }
    /// The same piece, said to be made of these peers' copies.
    pub fn with_senders(mut self, senders: Vec<std::net::SocketAddr>) -> VerifiedPiece {
        self.senders = senders;
        self
    }

    /// The peers whose copies make up the piece (empty when not known, e.g. read back
    /// from the cache).
    pub fn senders(&self) -> &[std::net::SocketAddr] {
        &self.senders
    }

    pub fn info_hash(&self) -> &InfoHash {
        &self.info_hash
    }
    pub fn index(&self) -> u32 {
        self.index
    }
    /// The SHA-1 the bytes matched.
    pub fn hash(&self) -> &[u8; 20] {
        &self.hash
    }
    pub fn data(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or_default()
    }
}
