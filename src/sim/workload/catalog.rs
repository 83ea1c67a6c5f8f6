//! The torrents an ISP's subscribers fetch: sizes, piece lengths, release times, popularity,
//! and who has fetched what (as a count per torrent: see `Catalog::pick`).

use std::net::Ipv4Addr;

use super::dist::{normal, MandelbrotZipf};
use super::perm::{mix, Permutation};
use crate::wire::infohash::InfoHash;

pub const BLOCK: u32 = 16 << 10;
pub const MIN_PIECE: u32 = 16 << 10;
pub const MAX_PIECE: u32 = 16 << 20;
/// The most pieces a torrent gets before its piece length doubles: current clients aim for
/// one to two thousand pieces (libtorrent's `create_torrent` and qBittorrent's "auto" piece
/// size choose a power of two by total size in that spirit).
pub const MAX_PIECES: u64 = 2000;

/// 198.18.0.0/15 (RFC 2544's benchmarking range, the one the project's tests use); the
/// network and broadcast addresses are left out.
pub const SUBSCRIBER_BASE: u32 = u32::from_be_bytes([198, 18, 0, 1]);
pub const MAX_SUBSCRIBERS: u32 = (1 << 17) - 2;

// Salts keep each use of the seed independent of the others.
const SALT_SPEC: u64 = 0x5eed_0001;
const SALT_HASH: u64 = 0x5eed_0002;
const SALT_SUBSCRIBERS: u64 = 0x5eed_0003;
pub const SALT_PIECES: u64 = 0x5eed_0004;

/// The piece length a client would choose for `size` bytes: the smallest power of two that
/// keeps the count at or under `MAX_PIECES`, within 16 KiB..=16 MiB.
pub fn piece_length_for(size: u64) -> u32 {
    let want = size.div_ceil(MAX_PIECES).next_power_of_two();
    want.clamp(u64::from(MIN_PIECE), u64::from(MAX_PIECE)) as u32
}

/// Torrent `index`'s info-hash under `seed`: random-looking, as real ones are, and the
/// same whatever the other options (tests map a trace's swarms back to ranks with it).
pub fn info_hash(seed: u64, index: u32) -> InfoHash {
    let mut b = [0u8; 20];
    let base = mix(seed ^ SALT_HASH) ^ u64::from(index);
    for (n, chunk) in b.chunks_mut(8).enumerate() {
        let w = mix(base.wrapping_add(mix(n as u64))).to_be_bytes();
        chunk.copy_from_slice(&w[..chunk.len()]);
    }
    InfoHash::from(b)
}

pub fn subscriber_addr(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(SUBSCRIBER_BASE + i)
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Torrent {
    pub size: u64,
    pub piece_length: u32,
    /// None for the catalogue present from the start, whose popularity holds.
    pub release_us: Option<u64>,
}

impl Torrent {
    pub fn pieces(&self) -> u32 {
        // At most MAX_PIECES unless the size is clamped at 16 MiB pieces; u32 holds it
        // for any size below 64 PiB.
        self.size.div_ceil(u64::from(self.piece_length)) as u32
    }
}

/// How torrents are made and how popular they are.
#[derive(Clone, Debug)]
pub struct Model {
    pub seed: u64,
    pub torrents: u32,
    pub subscribers: u32,
    pub alpha: f64,
    pub q: f64,
    pub size_median: u64,
    pub size_sigma: f64,
    pub size_min: u64,
    pub size_max: u64,
    pub duration_us: u64,
    pub new_share: f64,
    pub half_life_us: f64,
}

pub struct Catalog {
    pub model: Model,
    torrents: Vec<Torrent>,
    popularity: MandelbrotZipf,
    /// Per torrent, how many subscribers have fetched it: the next one is the subscriber
    /// permutation's image of this count, so nobody fetches a torrent twice.
    fetched: Vec<u32>,
}

/// Draws per torrent before `pick` gives up: only a population nearly exhausted (most
/// torrents fetched by every subscriber) or releases whose popularity has decayed to
/// nothing get there.
const MAX_TRIES: u32 = 1_000_000;

impl Catalog {
    pub fn new(model: Model) -> Catalog {
        let torrents = (0..model.torrents).map(|i| Self::spec(&model, i)).collect();
        Catalog {
            popularity: MandelbrotZipf::new(model.torrents as usize, model.alpha, model.q),
            fetched: vec![0; model.torrents as usize],
            torrents,
            model,
        }
    }

    /// Torrent `i` (rank i + 1) from its own generator, so it does not depend on how many
    /// torrents there are or on the order of draws elsewhere.
    fn spec(m: &Model, i: u32) -> Torrent {
        let mut rng = fastrand::Rng::with_seed(mix(m.seed ^ SALT_SPEC) ^ mix(u64::from(i)));
        let ln = (m.size_median as f64).ln() + m.size_sigma * normal(&mut rng);
        // exp of a huge deviate saturates to inf, which the clamp then bounds.
        let size = (ln.exp() as u64).clamp(m.size_min, m.size_max);
        let new = rng.f64() < m.new_share;
        let release_us = new.then(|| (rng.f64() * m.duration_us as f64) as u64);
        Torrent {
            size,
            piece_length: piece_length_for(size),
            release_us,
        }
    }

    pub fn torrent(&self, i: u32) -> Option<&Torrent> {
        self.torrents.get(i as usize)
    }

    /// Torrents fetched at least once so far.
    pub fn distinct(&self) -> usize {
        self.fetched.iter().filter(|&&c| c > 0).count()
    }

    /// A download starting at `t_us`: (torrent, subscriber). Torrents are drawn by
    /// Mandelbrot-Zipf rank, and a draw is refused (rejection sampling) when the torrent
    /// is not released yet, with probability 1 - 2^(-age/half-life) once it is, or when
    /// every subscriber already has it. So a new torrent at release is exactly as popular
    /// as its rank says and then fades, and the refusals never need the distribution
    /// rebuilt. None when `MAX_TRIES` draws were all refused.
    pub fn pick(&mut self, t_us: u64, rng: &mut fastrand::Rng) -> Option<(u32, u32)> {
        for _ in 0..MAX_TRIES {
            let k = self.popularity.sample(rng);
            let (Some(t), Some(done)) = (self.torrents.get(k), self.fetched.get_mut(k)) else {
                continue;
            };
            if *done >= self.model.subscribers {
                continue;
            }
            if let Some(release) = t.release_us {
                let Some(age) = t_us.checked_sub(release) else {
                    continue;
                };
                let keep = (-(age as f64) / self.model.half_life_us).exp2();
                if rng.f64() >= keep {
                    continue;
                }
            }
            let key = mix(self.model.seed ^ SALT_SUBSCRIBERS) ^ mix(k as u64);
            let who = Permutation::new(u64::from(self.model.subscribers), key).at(u64::from(*done));
            *done += 1;
            return Some((k as u32, who as u32));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn piece_lengths_like_clients() {
        assert_eq!(piece_length_for(1), 16 << 10);
        assert_eq!(piece_length_for(32 << 20), 32 << 10); // 2048 pieces of 16 KiB is too many
        assert_eq!(piece_length_for(2000 * 16384), 16 << 10);
        assert_eq!(piece_length_for(2000 * 16384 + 1), 32 << 10);
        assert_eq!(piece_length_for(700 << 20), 512 << 10); // 1400 pieces
        assert_eq!(piece_length_for(4 << 30), 4 << 20); // 1024 pieces
        assert_eq!(piece_length_for(1 << 40), 16 << 20); // clamped: 65536 pieces
    }

    #[test]
    fn subscribers_stay_in_the_range() {
        assert_eq!(subscriber_addr(0), Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(
            subscriber_addr(MAX_SUBSCRIBERS - 1),
            Ipv4Addr::new(198, 19, 255, 254)
        );
    }
}
