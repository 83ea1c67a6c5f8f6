//! BEP 9: the info dictionary assembled from ut_metadata `data` messages seen on the wire
//! (either direction), accepted only when its SHA-1 is the info-hash. Bounded: the
//! advertised size is capped, and so is the number of swarms assembling at once.

use std::collections::{BTreeMap, HashMap};

use super::metainfo::{Metainfo, MetainfoError, MAX_INFO_LEN};
use crate::wire::infohash::InfoHash;

/// BEP 9 metadata pieces are 16 KiB; only the last may be shorter.
pub const METADATA_PIECE: usize = 16 * 1024;

struct Partial {
    total: usize,
    pieces: BTreeMap<u32, Vec<u8>>,
}

pub struct MetadataAssembler {
    partial: HashMap<InfoHash, Partial>,
    max_swarms: usize,
    pub failed: u64,
    pub refused: u64,
}

impl MetadataAssembler {
    pub fn new(max_swarms: usize) -> Self {
        MetadataAssembler {
            partial: HashMap::new(),
            max_swarms,
            failed: 0,
            refused: 0,
        }
    }

    /// One `data` message. Returns the metainfo once the dictionary is complete and hashes
    /// to `ih`; a complete dictionary that does not is dropped and counted in `failed`.
    pub fn data(
        &mut self,
        ih: InfoHash,
        piece: i64,
        total_size: Option<i64>,
        data: &[u8],
    ) -> Option<Metainfo> {
        let (Ok(piece), Some(Ok(total))) = (u32::try_from(piece), total_size.map(usize::try_from))
        else {
            self.refused += 1;
            return None;
        };
        let pieces = total.div_ceil(METADATA_PIECE);
        let want = if piece as usize + 1 == pieces {
            total - piece as usize * METADATA_PIECE
        } else {
            METADATA_PIECE
        };
        if total == 0 || total > MAX_INFO_LEN || piece as usize >= pieces || data.len() != want {
            self.refused += 1;
            return None;
        }
        if !self.partial.contains_key(&ih) && self.partial.len() >= self.max_swarms {
            self.refused += 1;
            return None;
        }
        let p = self.partial.entry(ih).or_insert_with(|| Partial {
            total,
            pieces: BTreeMap::new(),
        });
        if p.total != total {
            // Peers disagree on the size: start over with the newest claim.
            *p = Partial {
                total,
                pieces: BTreeMap::new(),
            };
        }
        p.pieces.entry(piece).or_insert_with(|| data.to_vec());
        if p.pieces.len() < pieces {
            return None;
        }
        let p = self.partial.remove(&ih)?;
        let raw: Vec<u8> = p.pieces.into_values().flatten().collect();
        match Metainfo::from_info_checked(&raw, &ih) {
            Ok(m) => Some(m),
            Err(MetainfoError::HashMismatch) | Err(_) => {
                self.failed += 1;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha1::{Digest, Sha1};

    #[test]
    fn assembles_and_checks_the_hash() {
        let mut info = b"d6:lengthi100e4:name5:hello12:piece lengthi16384e6:pieces20:".to_vec();
        info.extend_from_slice(&[7u8; 20]);
        info.push(b'e');
        let ih = InfoHash::from(<[u8; 20]>::from(Sha1::digest(&info)));
        let mut a = MetadataAssembler::new(4);
        let total = Some(info.len() as i64);
        assert!(
            a.data([1; 20].into(), 0, total, &info).is_none(),
            "wrong info-hash"
        );
        assert_eq!(a.failed, 1);
        let m = a.data(ih, 0, total, &info).expect("verified metadata");
        assert_eq!(m.name, "hello");
        assert!(a.data(ih, 1, total, &info).is_none());
        assert_eq!(a.refused, 1, "piece past the end");
        assert!(a.data(ih, 0, Some(1 << 40), &info).is_none());
    }
}
