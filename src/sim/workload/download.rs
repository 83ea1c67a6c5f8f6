//! One subscriber fetching one torrent: its requests in order, a constant number of words
//! of state whatever the torrent's size.

use super::catalog::{Torrent, BLOCK};
use super::perm::Permutation;

/// One REQUEST's (piece, begin, length).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    pub piece: u32,
    pub begin: u32,
    pub length: u32,
}

/// The request sequence: pieces in a pseudo-random order (what rarest-first looks like from
/// one client when the swarm's availability is even: no piece is preferred), the blocks of a
/// piece in order (clients finish a piece before starting many others), then the endgame:
/// the last `endgame` blocks requested again, as a client re-requests what is still in
/// flight from other peers and the cache sees the copies.
#[derive(Clone, Debug)]
pub struct Download {
    size: u64,
    piece_length: u32,
    pieces: u32,
    order: Permutation,
    /// Position in the piece order, and the block within that piece.
    k: u32,
    block: u32,
    sent: u64,
    total: u64,
    endgame: u64,
    /// Where the endgame copies start, once the first pass reaches it.
    mark: Option<(u32, u32)>,
    replaying: bool,
}

impl Download {
    pub fn new(t: &Torrent, order_key: u64, endgame: u32) -> Download {
        let pieces = t.pieces();
        let total = t.size.div_ceil(u64::from(BLOCK));
        Download {
            size: t.size,
            piece_length: t.piece_length,
            pieces,
            order: Permutation::new(u64::from(pieces), order_key),
            k: 0,
            block: 0,
            sent: 0,
            total,
            endgame: u64::from(endgame).min(total),
            mark: None,
            replaying: false,
        }
    }

    /// Requests this download makes in all, endgame copies included.
    pub fn requests(&self) -> u64 {
        self.total + self.endgame
    }

    fn piece_len(&self, piece: u32) -> u32 {
        let start = u64::from(piece) * u64::from(self.piece_length);
        // The last piece is what is left; pieces < `pieces` so start < size.
        self.size
            .saturating_sub(start)
            .min(u64::from(self.piece_length)) as u32
    }

    pub fn next_block(&mut self) -> Option<Block> {
        if self.k >= self.pieces {
            match (self.replaying, self.mark) {
                (false, Some((k, b))) => {
                    self.replaying = true;
                    (self.k, self.block) = (k, b);
                }
                _ => return None,
            }
        }
        if !self.replaying && self.endgame > 0 && self.sent == self.total - self.endgame {
            self.mark = Some((self.k, self.block));
        }
        let piece = self.order.at(u64::from(self.k)) as u32;
        let len = self.piece_len(piece);
        let begin = self.block * BLOCK;
        let length = BLOCK.min(len - begin);
        if begin + length >= len {
            self.k += 1;
            self.block = 0;
        } else {
            self.block += 1;
        }
        self.sent += 1;
        Some(Block {
            piece,
            begin,
            length,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(t: &Torrent, endgame: u32) -> Vec<Block> {
        let mut d = Download::new(t, 42, endgame);
        let n = d.requests();
        let v: Vec<Block> = std::iter::from_fn(|| d.next_block()).collect();
        assert_eq!(v.len() as u64, n);
        v
    }

    #[test]
    fn every_block_once_then_the_endgame_copies() {
        // 3 pieces of 64 KiB, the last one 20000 bytes: 4 + 4 + 2 blocks.
        let t = Torrent {
            size: 2 * 65536 + 20000,
            piece_length: 65536,
            release_us: None,
        };
        let v = all(&t, 3);
        assert_eq!(v.len(), 13);
        let mut first: Vec<Block> = v[..10].to_vec();
        // The endgame repeats the last three of the first pass, in order.
        assert_eq!(&v[10..], &v[7..10]);
        // Blocks of a piece are consecutive and in order.
        for w in v[..10].windows(2) {
            if w[0].piece == w[1].piece {
                assert_eq!(w[1].begin, w[0].begin + BLOCK);
            }
        }
        first.sort_by_key(|b| (b.piece, b.begin));
        let mut want = Vec::new();
        for piece in 0..3 {
            let len = if piece == 2 { 20000 } else { 65536 };
            let mut begin = 0;
            while begin < len {
                let length = BLOCK.min(len - begin);
                want.push(Block {
                    piece,
                    begin,
                    length,
                });
                begin += length;
            }
        }
        assert_eq!(first, want);
        assert_eq!(want.last().map(|b| b.length), Some(20000 - 16384));
    }

    #[test]
    fn endgame_longer_than_the_torrent_repeats_it_once() {
        let t = Torrent {
            size: 1,
            piece_length: 16384,
            release_us: None,
        };
        let one = Block {
            piece: 0,
            begin: 0,
            length: 1,
        };
        assert_eq!(all(&t, 8), vec![one, one]);
        assert_eq!(all(&t, 0), vec![one]);
    }
}
