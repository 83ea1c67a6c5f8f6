//! The few distributions the workload draws from, on `fastrand` (a `rand_distr` would be
//! one more crate for three formulas).

/// A standard normal deviate (Box–Muller; one of the pair is dropped: simpler than keeping
/// state, and sizes are drawn once per torrent, not per request).
pub fn normal(rng: &mut fastrand::Rng) -> f64 {
    // 1 - f64() lies in (0, 1], so the logarithm is finite.
    let u1 = 1.0 - rng.f64();
    let u2 = rng.f64();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Mandelbrot-Zipf over ranks 1..=n: p(i) ∝ 1/(i+q)^α (Hefeeda and Saleh, IEEE/ACM ToN
/// 2008). Sampled by inverse transform on the cumulative weights: n floats, a binary search
/// per draw.
#[derive(Debug)]
pub struct MandelbrotZipf {
    cumulative: Vec<f64>,
}

impl MandelbrotZipf {
    pub fn new(n: usize, alpha: f64, q: f64) -> MandelbrotZipf {
        let mut sum = 0.0;
        let cumulative = (1..=n)
            .map(|i| {
                sum += Self::weight(i, alpha, q);
                sum
            })
            .collect();
        MandelbrotZipf { cumulative }
    }

    /// The unnormalised weight of rank `i` (1-based).
    pub fn weight(i: usize, alpha: f64, q: f64) -> f64 {
        (i as f64 + q).powf(-alpha)
    }

    /// A 0-based index (rank - 1).
    pub fn sample(&self, rng: &mut fastrand::Rng) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let u = rng.f64() * total;
        let i = self.cumulative.partition_point(|&c| c <= u);
        // u < total always, but rounding in the sum must not index past the end.
        i.min(self.cumulative.len().saturating_sub(1))
    }
}

/// `n` independent uniforms on [0, 1) handed out in ascending order, one at a time, without
/// storing or sorting them: the next is the minimum of the ones left, which given the last
/// value x is 1 - (1 - x)·V^(1/left) (Bentley and Saxe, "Generating sorted lists of random
/// numbers", ACM TOMS 1980). The download start times, so their number is exact.
#[derive(Debug)]
pub struct SortedUniforms {
    left: u64,
    last: f64,
}

impl SortedUniforms {
    pub fn new(n: u64) -> SortedUniforms {
        SortedUniforms { left: n, last: 0.0 }
    }

    pub fn next(&mut self, rng: &mut fastrand::Rng) -> Option<f64> {
        if self.left == 0 {
            return None;
        }
        let v = 1.0 - rng.f64();
        self.last = 1.0 - (1.0 - self.last) * v.powf(1.0 / self.left as f64);
        self.left -= 1;
        // Rounding may reach 1.0; keep the promise of [0, 1) and of ascending order.
        self.last = self.last.min(1.0 - f64::EPSILON);
        Some(self.last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_uniforms_ascend_and_average_a_half() {
        let mut rng = fastrand::Rng::with_seed(3);
        let mut s = SortedUniforms::new(100_000);
        let mut last = 0.0;
        let mut sum = 0.0;
        let mut n = 0;
        while let Some(u) = s.next(&mut rng) {
            assert!(u >= last && u < 1.0);
            last = u;
            sum += u;
            n += 1;
        }
        assert_eq!(n, 100_000);
        // Mean of 10^5 uniforms: standard error 1/sqrt(12·10^5) ≈ 0.0009; 5 of them.
        assert!((sum / n as f64 - 0.5).abs() < 0.0046, "{}", sum / n as f64);
    }

    #[test]
    fn zipf_first_rank_has_its_share() {
        let z = MandelbrotZipf::new(100, 1.0, 0.0);
        let mut rng = fastrand::Rng::with_seed(5);
        let hits = (0..100_000).filter(|_| z.sample(&mut rng) == 0).count();
        // p(1) = 1/H(100) = 0.19278; binomial sd for 10^5 draws ≈ 125; 5 of them.
        assert!((hits as f64 - 19_278.0).abs() < 625.0, "{hits}");
    }

    #[test]
    fn normal_has_unit_variance() {
        let mut rng = fastrand::Rng::with_seed(7);
        let xs: Vec<f64> = (0..100_000).map(|_| normal(&mut rng)).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        // Standard errors: mean 0.0032, variance ≈ sqrt(2/10^5) = 0.0045; 5 of them.
        assert!(
            mean.abs() < 0.016 && (var - 1.0).abs() < 0.023,
            "{mean} {var}"
        );
    }
}
