//! Pseudo-random permutations of `0..n` computed one index at a time, so a download's
//! piece order or a torrent's subscriber order costs a few words however large `n` is.

/// The splitmix64 finaliser (Steele, Lea and Flood, "Fast splittable pseudorandom number
/// generators", OOPSLA 2014): every input bit affects every output bit, which is all the
/// Feistel rounds and the per-torrent seeds need.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const ROUNDS: usize = 4;

/// A bijection of `0..n`: a balanced Feistel network over the smallest even number of bits
/// that covers `n`, with cycle walking (an output at or past `n` is encrypted again until it
/// lands inside), as in format-preserving encryption (Black and Rogaway, "Ciphers with
/// arbitrary finite domains", CT-RSA 2002). The Feistel domain is under 4n, so a lookup
/// takes under four walks on average.
#[derive(Clone, Debug)]
pub struct Permutation {
    n: u64,
    half: u32,
    mask: u64,
    keys: [u64; ROUNDS],
}

impl Permutation {
    /// `n` must be at least 1.
    pub fn new(n: u64, key: u64) -> Permutation {
        let bits = 64 - n.saturating_sub(1).leading_zeros();
        let half = bits.div_ceil(2).max(1);
        let mut keys = [0; ROUNDS];
        for (r, k) in keys.iter_mut().enumerate() {
            *k = mix(key ^ mix(r as u64));
        }
        Permutation {
            n: n.max(1),
            half,
            mask: (1u64 << half) - 1,
            keys,
        }
    }

    fn feistel(&self, x: u64) -> u64 {
        let (mut l, mut r) = (x >> self.half, x & self.mask);
        for k in self.keys {
            let f = mix(k ^ r) & self.mask;
            (l, r) = (r, l ^ f);
        }
        (l << self.half) | r
    }

    /// The image of `i` (taken modulo `n`, so any index is safe).
    pub fn at(&self, i: u64) -> u64 {
        let mut x = i % self.n;
        loop {
            x = self.feistel(x);
            if x < self.n {
                return x;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_a_bijection_for_awkward_sizes() {
        for n in [1u64, 2, 3, 5, 16, 17, 1000, 4097] {
            for key in [0, 1, 0xdead_beef] {
                let p = Permutation::new(n, key);
                let mut seen = vec![false; n as usize];
                for i in 0..n {
                    let j = p.at(i) as usize;
                    assert!(!seen[j], "n {n} key {key}: {j} twice");
                    seen[j] = true;
                }
            }
        }
    }

    #[test]
    fn keys_give_different_orders() {
        let a: Vec<u64> = (0..64).map(|i| Permutation::new(64, 1).at(i)).collect();
        let b: Vec<u64> = (0..64).map(|i| Permutation::new(64, 2).at(i)).collect();
        assert_ne!(a, b);
        // Not the identity either: a piece order that is not one.
        assert_ne!(a, (0..64).collect::<Vec<_>>());
    }
}
