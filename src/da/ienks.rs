//! The iterative ensemble Kalman smoother, square-root flavour (Bocquet &
//! Sakov 2013, 2014; DAPPER's `iEnKS('Sqrt')`), with optional finite-size
//! inflation (the primal EnKF-N, `xN`).
//!
//! The ensemble sits at the window start, `lag` observation cycles before
//! the newest observation. Each window assimilates the newest observation
//! by Gauss-Newton iterations in ensemble space on
//! `J(w) = zeta/2 |w|^2 + 1/2 |R^{-1/2} (y - H(M(x0 + X0 w)))|^2`, using
//! the ensemble itself to estimate the sensitivities (transform version,
//! no bundle), then moves one cycle forward. With `lag = 0` and one
//! iteration it is exactly the ETKF.

use nalgebra::{DMatrix, DVector};
use serde::{Deserialize, Serialize};

use super::eigen::symmetric_eigen;
use super::ensemble::{PostProcess, mean_and_anomalies};
use super::{Context, DaError, Estimate, Filter, Gaussian};
use crate::core::{ObsBatch, apply_to_ensemble};
use crate::rng::Rng;

/// Settings of the iEnKS.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IenksConfig {
    /// Members N.
    pub ensemble_size: usize,
    /// Observation cycles between the window start and the newest observation.
    #[serde(default = "one")]
    pub lag: usize,
    /// Gauss-Newton iterations per window (at most).
    #[serde(default = "ten")]
    pub iterations: usize,
    /// Stop iterating when `|dw|^2 < weight_tolerance * N` (0: always run
    /// every iteration, as DAPPER).
    #[serde(default)]
    pub weight_tolerance: f64,
    /// Finite-size inflation: the EnKF-N hyperprior factor `xN` (absent: none).
    #[serde(default)]
    pub finite_size: Option<f64>,
    /// Multiplicative inflation of the smoothed anomalies.
    #[serde(default = "one_f")]
    pub inflation: f64,
    /// Random mean-preserving rotation of the smoothed anomalies.
    #[serde(default)]
    pub rotation: bool,
}

fn one() -> usize {
    1
}
fn ten() -> usize {
    10
}
fn one_f() -> f64 {
    1.0
}

impl IenksConfig {
    /// Checks the values; the error is `(key, reason)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let err = |k: &str, r: String| Err((k.to_string(), r));
        if self.ensemble_size < 2 {
            return err(
                "ensemble_size",
                format!("must be at least 2, got {}", self.ensemble_size),
            );
        }
        if self.iterations == 0 {
            return err("iterations", "must be at least 1".into());
        }
        if !(self.weight_tolerance >= 0.0) {
            return err("weight_tolerance", "must be non-negative".into());
        }
        if let Some(x) = self.finite_size
            && !(x > 0.0 && x.is_finite())
        {
            return err("finite_size", format!("must be positive, got {x}"));
        }
        if !(self.inflation >= 1.0 && self.inflation.is_finite()) {
            return err(
                "inflation",
                format!(
                    "must be at least 1 (below 1 it deflates the ensemble), got {}",
                    self.inflation
                ),
            );
        }
        Ok(())
    }
}

/// The iEnKS and its state.
pub struct Ienks {
    config: IenksConfig,
    /// Ensemble at the window start.
    start: DMatrix<f64>,
    start_cycle: usize,
    /// Ensemble at the latest time (forecast, then analysis).
    current: DMatrix<f64>,
    current_cycle: usize,
    rng: Rng,
    /// Iterations used per window.
    pub iterations_used: Vec<usize>,
}

impl Ienks {
    /// Draws the initial ensemble.
    pub fn new(config: &IenksConfig, initial: &Gaussian, mut rng: Rng) -> Self {
        let e = initial.sample(config.ensemble_size, &mut rng);
        Self {
            config: config.clone(),
            start: e.clone(),
            start_cycle: 0,
            current: e,
            current_cycle: 0,
            rng,
            iterations_used: Vec::new(),
        }
    }
}

/// EnKF-N hyperprior coefficients `(eN, cL)` (Bocquet, Raanes & Hannart
/// 2015), mode-corrected and scaled by `xN`, from the squared singular
/// values `s2` (N of them, zero-padded) of the whitened anomalies.
fn hyperprior(s2: &[f64], n: usize, x_n: f64) -> (f64, f64) {
    let nf = n as f64;
    let n1 = nf - 1.0;
    let (mut e_n, mut c_l) = ((nf + 1.0) / nf, nf / n1);
    let prior_mode = e_n / c_l;
    let i_kh = s2.iter().map(|s| 1.0 / (s + n1)).sum::<f64>() / nf * n1;
    let mc = prior_mode.powf(i_kh).sqrt();
    e_n /= mc;
    c_l *= mc;
    (e_n * x_n, c_l * x_n)
}

/// The columns `x0 + X0 (w + T[:, j])`.
fn compose(
    x0: &DVector<f64>,
    a0: &DMatrix<f64>,
    w: &DVector<f64>,
    t: &DMatrix<f64>,
) -> DMatrix<f64> {
    let mut weights = t.clone();
    for mut col in weights.column_iter_mut() {
        col += w;
    }
    let mut e = a0 * weights;
    for mut col in e.column_iter_mut() {
        col += x0;
    }
    e
}

impl Filter for Ienks {
    fn forecast(&mut self, context: &Context<'_>, time: f64) -> Result<(), DaError> {
        self.current = context.forecast_ensemble(&self.current, time, context.steps_per_cycle)?;
        self.current_cycle += 1;
        if self.config.lag == 0 {
            self.start = self.current.clone();
            self.start_cycle = self.current_cycle;
        }
        Ok(())
    }

    fn analyse(&mut self, context: &Context<'_>, obs: &ObsBatch) -> Result<(), DaError> {
        let n = self.config.ensemble_size;
        let n1 = (n - 1) as f64;
        let cycles = self.current_cycle - self.start_cycle;
        let steps = cycles * context.steps_per_cycle;
        let interval = context.interval();
        let t0 = self.start_cycle as f64 * interval;
        let (x0, a0) = mean_and_anomalies(&self.start);
        let mut w = DVector::<f64>::zeros(n);
        let mut t = DMatrix::<f64>::identity(n, n);
        let mut t_inv = DMatrix::<f64>::identity(n, n);
        let mut used = 0;
        for _ in 0..self.config.iterations {
            used += 1;
            let e = compose(&x0, &a0, &w, &t);
            let ef = if steps == 0 {
                e
            } else {
                context.forecast_ensemble(&e, t0, steps)?
            };
            let eo = apply_to_ensemble(obs.operator.as_ref(), &ef, obs.time, context.device());
            let (xo, yy) = mean_and_anomalies(&eo);
            let dy = obs.error.whiten(&(&obs.values - xo));
            // De-condition the sensitivities: Y0 = Y T^{-1}.
            let y0 = obs.error.whiten_matrix(&yy) * &t_inv;
            let (s2, v) = symmetric_eigen(&y0.tr_mul(&y0))
                .ok_or_else(|| DaError::Numerical("iEnKS Hessian".into()))?;
            let s2: Vec<f64> = s2.iter().map(|s| s.max(0.0)).collect();
            let zeta = match self.config.finite_size {
                None => n1,
                Some(x_n) => {
                    let (e_n, c_l) = hyperprior(&s2, n, x_n);
                    n1 * c_l / (e_n + w.norm_squared())
                }
            };
            let power = |e: f64| {
                let mut scaled = v.clone();
                for (mut col, s) in scaled.column_iter_mut().zip(&s2) {
                    col *= (s + zeta).powf(-e);
                }
                scaled * v.transpose()
            };
            let grad = y0.tr_mul(&dy) - &w * zeta;
            // dw = V diag(1 / (s2 + zeta)) V^T grad, without forming the matrix.
            let mut g = v.tr_mul(&grad);
            for (gk, s) in g.iter_mut().zip(&s2) {
                *gk /= s + zeta;
            }
            let dw = &v * g;
            t = power(0.5) * n1.sqrt();
            t_inv = power(-0.5) / n1.sqrt();
            w += &dw;
            if !w.iter().all(|x| x.is_finite()) {
                return Err(DaError::Numerical("iEnKS weights are not finite".into()));
            }
            if dw.norm_squared() < self.config.weight_tolerance * n as f64 {
                break;
            }
        }
        self.iterations_used.push(used);
        let post = PostProcess::inflation_and_rotation(self.config.inflation, self.config.rotation);
        let mut smoothed = compose(&x0, &a0, &w, &t);
        if !post.is_identity() {
            smoothed = post.apply(smoothed, None, &mut self.rng);
        }
        self.current = if steps == 0 {
            smoothed.clone()
        } else {
            context.forecast_ensemble(&smoothed, t0, steps)?
        };
        if self.config.lag == 0 {
            self.start = self.current.clone();
        } else if cycles == self.config.lag {
            self.start = context.forecast_ensemble(&smoothed, t0, context.steps_per_cycle)?;
            self.start_cycle += 1;
        } else {
            self.start = smoothed;
        }
        Ok(())
    }

    fn estimate(&self) -> Estimate<'_> {
        Estimate::Ensemble(&self.current)
    }
}
