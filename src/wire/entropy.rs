//! Shannon entropy of a byte sample, used to tell an MSE/PE key exchange (random bytes)
//! from a plaintext first flight. Entropy alone is never the verdict: compressed media in
//! PIECE messages is just as random, so callers also require "no handshake" and a size window.

/// Bits per byte, 0.0..=8.0.
pub fn shannon(sample: &[u8]) -> f64 {
    if sample.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in sample {
        counts[b as usize] += 1;
    }
    let n = sample.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// True when `sample` is about as random as `sample.len()` uniform bytes would be. The bar
/// scales with the length because a short sample cannot reach 8 bits/byte: 96 random
/// bytes average about 6.3.
pub fn looks_random(sample: &[u8]) -> bool {
    if sample.len() < 32 {
        return false;
    }
    let max = (sample.len() as f64).log2().min(8.0);
    shannon(sample) >= 0.85 * max
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_vs_text() {
        let mut rng = fastrand::Rng::with_seed(7);
        for n in [96usize, 200, 608] {
            let r: Vec<u8> = (0..n).map(|_| rng.u8(..)).collect();
            assert!(looks_random(&r), "n={n} e={}", shannon(&r));
        }
        let text = b"GET /announce?info_hash=%12%34&peer_id=-UT3000-abcdefghijkl&port=6881&uploaded=0 HTTP/1.1\r\nHost: x\r\n\r\n";
        assert!(!looks_random(text));
        assert!(!looks_random(&[0u8; 200]));
    }
}
