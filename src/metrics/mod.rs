//! Verification scores: RMSE, spread, fair CRPS, rank histograms, and time
//! averages with confidence intervals that account for autocorrelation.
//!
//! Definitions follow WeatherBench 2 (Rasp et al. 2024) and DAPPER.

pub mod downscaling;

use nalgebra::{DMatrix, DVector};

/// Root-mean-square difference over the state variables.
pub fn rmse(estimate: &[f64], truth: &[f64]) -> f64 {
    debug_assert_eq!(estimate.len(), truth.len());
    let sum: f64 = estimate
        .iter()
        .zip(truth)
        .map(|(e, t)| (e - t) * (e - t))
        .sum();
    (sum / truth.len() as f64).sqrt()
}

/// Ensemble mean of an `n x members` ensemble.
pub fn ensemble_mean(ensemble: &DMatrix<f64>) -> DVector<f64> {
    ensemble.column_mean()
}

/// Per-variable ensemble variance with `ddof = 1`.
pub fn ensemble_variance(ensemble: &DMatrix<f64>) -> DVector<f64> {
    let members = ensemble.ncols();
    let mean = ensemble.column_mean();
    let mut var = DVector::zeros(ensemble.nrows());
    for member in ensemble.column_iter() {
        for ((v, x), m) in var.iter_mut().zip(member.iter()).zip(mean.iter()) {
            let d = x - m;
            *v += d * d;
        }
    }
    var / (members as f64 - 1.0).max(1.0)
}

/// Spread: the square root of the variance averaged over the variables
/// (so that it compares with the RMSE of the mean).
pub fn spread_from_variance(variance: &[f64]) -> f64 {
    (variance.iter().sum::<f64>() / variance.len() as f64).sqrt()
}

/// Fair CRPS of an ensemble for one scalar (Ferro 2014; WeatherBench 2):
/// `mean_i |x_i - y| - 1/(2 M (M-1)) sum_{i,j} |x_i - x_j|`.
///
/// Small ensembles sum the pairs directly; large ones sort `members` in
/// place and use `sum_{i,j} |x_i - x_j| = 2 sum_k (2k - M + 1) x_(k)`
/// over the sorted values, `O(M log M)`.
pub fn crps_fair(members: &mut [f64], y: f64) -> f64 {
    let m = members.len();
    assert!(m >= 2, "the fair CRPS needs at least two members");
    let skill: f64 = members.iter().map(|x| (x - y).abs()).sum::<f64>() / m as f64;
    let pairs = if m <= 64 {
        // Every ordered pair, in eight lanes so that the loop vectorises.
        let mut lanes = [0.0; 8];
        for &a in members.iter() {
            let mut chunks = members.chunks_exact(8);
            for c in &mut chunks {
                for (l, b) in lanes.iter_mut().zip(c) {
                    *l += (a - b).abs();
                }
            }
            for (l, b) in lanes.iter_mut().zip(chunks.remainder()) {
                *l += (a - b).abs();
            }
        }
        lanes.iter().sum::<f64>()
    } else {
        members.sort_unstable_by(f64::total_cmp);
        members
            .iter()
            .enumerate()
            .map(|(k, x)| (2.0 * k as f64 - m as f64 + 1.0) * x)
            .sum::<f64>()
            * 2.0
    };
    skill - pairs / (2.0 * m as f64 * (m as f64 - 1.0))
}

/// Fair CRPS of an `n x members` ensemble averaged over the variables.
pub fn crps_ensemble(ensemble: &DMatrix<f64>, truth: &[f64]) -> f64 {
    let mut buffer = vec![0.0; ensemble.ncols()];
    let mut total = 0.0;
    for (i, &y) in truth.iter().enumerate() {
        for (b, x) in buffer.iter_mut().zip(ensemble.row(i).iter()) {
            *b = *x;
        }
        total += crps_fair(&mut buffer, y);
    }
    total / truth.len() as f64
}

/// Per-variable statistics of an ensemble, from one pass over each
/// variable's members.
#[derive(Clone, Debug, PartialEq)]
pub struct EnsembleStats {
    /// Ensemble mean.
    pub mean: DVector<f64>,
    /// Variance with `ddof = 1`.
    pub variance: DVector<f64>,
    /// Fair CRPS averaged over the variables (NaN unless asked for with a
    /// truth).
    pub crps: f64,
}

/// The mean, variance and (with `truth` and `crps`) fair CRPS of an
/// `n x members` ensemble, adding the truth's ranks to `histogram` if
/// given: the same values as [`ensemble_mean`], [`ensemble_variance`],
/// [`crps_ensemble`] and [`RankHistogram::add`] up to round-off, from one
/// transposed copy so that each variable's members are contiguous.
pub fn ensemble_stats(
    ensemble: &DMatrix<f64>,
    truth: Option<&[f64]>,
    crps: bool,
    mut histogram: Option<&mut RankHistogram>,
) -> EnsembleStats {
    let (n, members) = ensemble.shape();
    let mut by_variable = ensemble.transpose();
    let mut mean = DVector::zeros(n);
    let mut variance = DVector::zeros(n);
    let mut crps_sum = 0.0;
    let inv_m = 1.0 / members as f64;
    let inv_m1 = 1.0 / (members as f64 - 1.0).max(1.0);
    for (i, x) in by_variable
        .as_mut_slice()
        .chunks_exact_mut(members)
        .enumerate()
    {
        let mu = x.iter().sum::<f64>() * inv_m;
        mean[i] = mu;
        variance[i] = x.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() * inv_m1;
        if let Some(y) = truth.map(|t| t[i]) {
            if let Some(h) = histogram.as_deref_mut() {
                h.counts[rank(x.iter().copied(), y)] += 1;
            }
            if crps {
                crps_sum += crps_fair(x, y);
            }
        }
    }
    let crps = if crps && truth.is_some() && n > 0 {
        crps_sum / n as f64
    } else {
        f64::NAN
    };
    EnsembleStats {
        mean,
        variance,
        crps,
    }
}

/// CRPS of a Gaussian forecast `N(mu, sigma^2)` for `y` (Gneiting et al.
/// 2005): `sigma [z (2 Phi(z) - 1) + 2 phi(z) - 1/sqrt(pi)]`, `z = (y-mu)/sigma`.
/// With `sigma = 0` it is the absolute error.
pub fn crps_gaussian(mu: f64, sigma: f64, y: f64) -> f64 {
    if sigma <= 0.0 {
        return (y - mu).abs();
    }
    let z = (y - mu) / sigma;
    let pdf = (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt();
    let cdf = 0.5 * erfc(-z / std::f64::consts::SQRT_2);
    sigma * (z * (2.0 * cdf - 1.0) + 2.0 * pdf - 1.0 / std::f64::consts::PI.sqrt())
}

/// Complementary error function, relative error below 1.2e-7 everywhere
/// (Chebyshev fit, Press et al., Numerical Recipes 6.2).
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// Rank of `y` among the members: how many members are below it
/// (`0..=members`). Ties count half, rounded down, so that a constant
/// ensemble equal to the truth does not pile up in one bin.
pub fn rank(members: impl Iterator<Item = f64>, y: f64) -> usize {
    let (mut below, mut equal) = (0usize, 0usize);
    for x in members {
        if x < y {
            below += 1;
        } else if x == y {
            equal += 1;
        }
    }
    below + equal / 2
}

/// Accumulates a rank histogram with `members + 1` bins.
#[derive(Clone, Debug, PartialEq)]
pub struct RankHistogram {
    /// Counts per bin.
    pub counts: Vec<u64>,
}

impl RankHistogram {
    /// An empty histogram for an ensemble of `members`.
    pub fn new(members: usize) -> Self {
        Self {
            counts: vec![0; members + 1],
        }
    }

    /// Adds the rank of each variable's truth in an `n x members` ensemble.
    pub fn add(&mut self, ensemble: &DMatrix<f64>, truth: &[f64]) {
        for (i, &y) in truth.iter().enumerate() {
            self.counts[rank(ensemble.row(i).iter().copied(), y)] += 1;
        }
    }

    /// Frequencies summing to one (all zero for an empty histogram).
    pub fn frequencies(&self) -> Vec<f64> {
        let total: u64 = self.counts.iter().sum();
        self.counts
            .iter()
            .map(|&c| {
                if total == 0 {
                    0.0
                } else {
                    c as f64 / total as f64
                }
            })
            .collect()
    }
}

/// Spread-skill ratio (WeatherBench 2): spread over RMSE of the mean, times
/// `sqrt((M + 1) / M)`, so that 1 means calibrated.
pub fn spread_skill(spread: f64, rmse: f64, members: usize) -> f64 {
    let m = members as f64;
    spread / rmse * ((m + 1.0) / m).sqrt()
}

/// A time average with its uncertainty.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct MeanWithCi {
    /// The sample mean.
    pub mean: f64,
    /// Half-width of the 95 % confidence interval.
    pub ci95: f64,
    /// Lag-one autocorrelation used for the effective sample size.
    pub autocorrelation: f64,
    /// Effective number of independent samples.
    pub effective_samples: f64,
}

/// Mean of a time series and a 95 % confidence half-width that accounts for
/// serial correlation through an AR(1) model: the effective sample size is
/// `N (1 - rho) / (1 + rho)` with `rho` the lag-one autocorrelation (clamped
/// to `[0, 0.99]`; Wilks, Statistical Methods in the Atmospheric Sciences, 5.2).
pub fn mean_with_ci(series: &[f64]) -> MeanWithCi {
    let n = series.len();
    if n == 0 {
        return MeanWithCi {
            mean: f64::NAN,
            ci95: f64::NAN,
            autocorrelation: f64::NAN,
            effective_samples: 0.0,
        };
    }
    let mean = series.iter().sum::<f64>() / n as f64;
    if n < 3 {
        return MeanWithCi {
            mean,
            ci95: f64::NAN,
            autocorrelation: f64::NAN,
            effective_samples: n as f64,
        };
    }
    let var = series.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
    let rho = if var > 0.0 {
        let cov: f64 = series
            .windows(2)
            .map(|w| (w[0] - mean) * (w[1] - mean))
            .sum::<f64>()
            / n as f64;
        (cov / var).clamp(0.0, 0.99)
    } else {
        0.0
    };
    let effective = (n as f64 * (1.0 - rho) / (1.0 + rho)).max(1.0);
    let sample_var = var * n as f64 / (n as f64 - 1.0);
    MeanWithCi {
        mean,
        ci95: 1.96 * (sample_var / effective).sqrt(),
        autocorrelation: rho,
        effective_samples: effective,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crps_fair_matches_the_double_sum() {
        let members: [f64; 5] = [0.3, -1.2, 2.5, 0.9, 0.0];
        let y: f64 = 0.4;
        let m = members.len() as f64;
        let skill: f64 = members.iter().map(|x| (x - y).abs()).sum::<f64>() / m;
        let mut pairs = 0.0;
        for a in members {
            for b in members {
                pairs += (a - b).abs();
            }
        }
        let want = skill - pairs / (2.0 * m * (m - 1.0));
        let mut buf = members;
        assert!((crps_fair(&mut buf, y) - want).abs() < 1e-14);
        // The sorted path for large ensembles agrees with the direct sum.
        let big: Vec<f64> = crate::rng::standard_normal(&mut crate::rng::stream(5, "crps"), 100);
        let direct: f64 = big
            .iter()
            .map(|a| big.iter().map(|b| (a - b).abs()).sum::<f64>())
            .sum();
        let skill_big: f64 = big.iter().map(|x| (x - y).abs()).sum::<f64>() / 100.0;
        let mut buf = big.clone();
        assert!(
            (crps_fair(&mut buf, y) - (skill_big - direct / (2.0 * 100.0 * 99.0))).abs() < 1e-12
        );
    }

    #[test]
    fn crps_gaussian_limits() {
        // For y = mu the CRPS is sigma (sqrt(2) - 1) / sqrt(pi).
        let want = (2f64.sqrt() - 1.0) / std::f64::consts::PI.sqrt();
        assert!((crps_gaussian(0.0, 1.0, 0.0) - want).abs() < 1e-7);
        assert!((crps_gaussian(1.0, 1e-9, 3.0) - 2.0).abs() < 1e-6);
    }

    #[test]
    fn erfc_values() {
        assert!((erfc(0.0) - 1.0).abs() < 1e-7);
        assert!((erfc(1.0) - 0.157_299_207_050_285_1).abs() < 2e-8);
        assert!((erfc(-1.0) - 1.842_700_792_949_715).abs() < 2e-8);
    }

    #[test]
    fn ci_widens_with_autocorrelation() {
        let white = crate::rng::standard_normal(&mut crate::rng::stream(2, "white"), 1000);
        let mut red = vec![0.0; 1000];
        for i in 1..1000 {
            red[i] = 0.9 * red[i - 1] + white[i];
        }
        let w = mean_with_ci(&white);
        let r = mean_with_ci(&red);
        assert!(r.autocorrelation > 0.8);
        assert!(r.effective_samples < 0.1 * 1000.0);
        assert!(w.effective_samples > 500.0);
    }

    #[test]
    fn one_pass_stats_equal_the_separate_scores() {
        use crate::rng::{standard_normal, stream};
        let mut rng = stream(4, "stats");
        for members in [2, 7, 24, 100] {
            let n = 13;
            let e = DMatrix::from_vec(n, members, standard_normal(&mut rng, n * members));
            let truth = standard_normal(&mut rng, n);
            let mut one = RankHistogram::new(members);
            let mut separate = RankHistogram::new(members);
            let stats = ensemble_stats(&e, Some(&truth), true, Some(&mut one));
            separate.add(&e, &truth);
            assert_eq!(one, separate);
            assert!((stats.mean - ensemble_mean(&e)).abs().max() < 1e-14);
            assert!((stats.variance - ensemble_variance(&e)).abs().max() < 1e-13);
            assert!((stats.crps - crps_ensemble(&e, &truth)).abs() < 1e-13);
            let no_crps = ensemble_stats(&e, Some(&truth), false, None);
            assert!(no_crps.crps.is_nan());
            assert!(ensemble_stats(&e, None, true, None).crps.is_nan());
        }
    }

    #[test]
    fn rank_histogram_of_exchangeable_draws_is_flat() {
        // Truth and members drawn from the same distribution: every rank is
        // equally likely.
        use crate::rng::{standard_normal, stream};
        let mut rng = stream(1, "rank");
        let mut h = RankHistogram::new(4);
        for _ in 0..20000 {
            let v = standard_normal(&mut rng, 5);
            let e = DMatrix::from_row_slice(1, 4, &v[..4]);
            h.add(&e, &v[4..]);
        }
        for f in h.frequencies() {
            assert!((f - 0.2).abs() < 0.015, "{f}");
        }
    }
}
