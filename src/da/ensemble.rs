//! The EnKF family: perturbed-observation EnKF, ETKF, DEnKF, serial EnSRF
//! and LETKF, with multiplicative inflation, RTPP, RTPS and random rotation.
//!
//! Layout: an ensemble is an `n x N` matrix, one member per column, which is
//! also the memory layout of the `[N, n]` tensor the model steps. With `A`
//! the state anomalies, `Y` the observed anomalies (`p x N`) and `R` the
//! observation error covariance (diagonal or full), every update works with
//! whitened quantities `R^{-1/2} Y` and `R^{-1/2} (y - H x)`; the
//! ensemble-space formulas are those of DAPPER's `EnKF_analysis` (Raanes et
//! al.), transposed.

use nalgebra::{DMatrix, DVector};

use super::eigen::symmetric_eigen;
use super::linalg::{
    inverse_and_inverse_sqrt, ones_reflection, random_mean_preserving_orthogonal, random_orthogonal,
};
use super::localisation::{LocalIndex, LocalObservations, Taper};
use super::{Context, DaError, EnsembleConfig, Estimate, Filter, Gaussian};
use crate::core::ObsBatch;
use crate::rng::{Rng, standard_normal};

/// Which analysis update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Stochastic EnKF with centred perturbed observations.
    PerturbedObs,
    /// ETKF, symmetric square root.
    Sqrt,
    /// Deterministic EnKF (Sakov & Oke 2008).
    Deterministic,
    /// Serial EnSRF in random observation order.
    Serial,
    /// LETKF with tapered observation precision.
    Local,
}

/// An ensemble filter and its state.
pub struct EnsembleFilter {
    kind: Kind,
    config: EnsembleConfig,
    ensemble: DMatrix<f64>,
    rng: Rng,
    /// Local observations and taper coefficients of each state variable,
    /// for the network they were computed for.
    local: Option<(u64, LocalObservations)>,
    /// The state points bucketed for the serial local EAKF.
    state_index: Option<LocalIndex>,
    /// The LETKF's batches of points, where it analyses batches.
    batches: Option<Vec<Vec<usize>>>,
}

impl EnsembleFilter {
    /// Draws the initial ensemble from `initial`.
    pub fn new(kind: Kind, config: &EnsembleConfig, initial: &Gaussian, mut rng: Rng) -> Self {
        let ensemble = initial.sample(config.ensemble_size, &mut rng);
        Self {
            kind,
            config: config.clone(),
            ensemble,
            rng,
            local: None,
            state_index: None,
            batches: None,
        }
    }

    /// The current ensemble, `n x N`.
    pub fn ensemble(&self) -> &DMatrix<f64> {
        &self.ensemble
    }
}

/// Splits an `n x N` ensemble into its mean and anomalies.
pub fn mean_and_anomalies(e: &DMatrix<f64>) -> (DVector<f64>, DMatrix<f64>) {
    let mu = e.column_mean();
    let mut a = e.clone();
    for mut c in a.column_iter_mut() {
        c -= &mu;
    }
    (mu, a)
}

/// `mu + A[:, j]` for every column.
pub fn recompose(mu: &DVector<f64>, a: &DMatrix<f64>) -> DMatrix<f64> {
    let mut e = a.clone();
    for mut c in e.column_iter_mut() {
        c += mu;
    }
    e
}

fn numerical(what: &str) -> DaError {
    DaError::Numerical(what.to_string())
}

impl Filter for EnsembleFilter {
    fn forecast(&mut self, context: &Context<'_>, time: f64) -> Result<(), DaError> {
        self.ensemble = context.forecast_ensemble(&self.ensemble, time, context.steps_per_cycle)?;
        Ok(())
    }

    fn analyse(&mut self, context: &Context<'_>, obs: &ObsBatch) -> Result<(), DaError> {
        if obs.is_empty() {
            return Ok(());
        }
        let hx = obs.apply_to_ensemble(&self.ensemble, context.device());
        let n1 = (self.config.ensemble_size - 1) as f64;
        let (mu, a) = mean_and_anomalies(&self.ensemble);
        let (hmu, hy) = mean_and_anomalies(&hx);
        // Whitened observed anomalies and innovation: R^{-1/2} Y, R^{-1/2} dy.
        let ys = obs.error.whiten_matrix(&hy);
        let dys = obs.error.whiten(&(&obs.values - &hmu));
        let mut settings = PostProcess::from(&self.config);
        let analysis = match self.kind {
            // The rotation commutes with RTPS and inflation (both act on
            // rows), not with RTPP.
            Kind::Sqrt if settings.rotation && settings.rtpp.is_none() => {
                settings.rotation = false;
                sqrt_update_rotated(&mu, &a, &ys, &dys, n1, &mut self.rng)?
            }
            Kind::Sqrt => sqrt_update(&mu, &a, &ys, &dys, n1)?,
            Kind::PerturbedObs => {
                let p = obs.len();
                let n = self.config.ensemble_size;
                let z = DMatrix::from_vec(p, n, standard_normal(&mut self.rng, p * n));
                // Centred and rescaled by sqrt(N / (N - 1)) so that the
                // perturbations have the observation-error covariance;
                // whitened, they are the centred standard draws themselves.
                let (_, d) = mean_and_anomalies(&z);
                let d = d * (n as f64 / (n as f64 - 1.0)).sqrt();
                // E + K (y - D - HE), in whitened form:
                // K_w = A Ys^T (Ys Ys^T + N1 I)^{-1} applied to R^{-1/2} (y - HE) - D.
                let mut innov = -hx.clone();
                for mut c in innov.column_iter_mut() {
                    c += &obs.values;
                }
                let innov = obs.error.whiten_matrix(&innov) - d;
                let k = gain(&a, &ys, n1)?;
                &self.ensemble + k * innov
            }
            Kind::Deterministic => {
                let k = gain(&a, &ys, n1)?;
                let mean = &mu + &k * &dys;
                recompose(&mean, &(&a - (k * &ys) * 0.5))
            }
            Kind::Serial => match self.config.localisation_radius {
                None => serial_update(&mu, &a, ys, dys, n1, &mut self.rng),
                Some(radius) => {
                    if !obs.error.is_diagonal() {
                        return Err(DaError::Unsupported {
                            method: "ensrf",
                            what:
                                "independent observation errors (serial updates need a diagonal R)"
                                    .into(),
                        });
                    }
                    let taper = self.config.taper.unwrap_or(Taper::GaspariCohn);
                    let geometry = context.model.geometry();
                    if self.state_index.is_none() {
                        let points: Vec<_> = geometry.locations().collect();
                        self.state_index = Some(LocalIndex::new(geometry, &points, radius, taper));
                    }
                    let state_index = self.state_index.as_ref().expect("set above");
                    let obs_index =
                        LocalIndex::new(geometry, obs.operator.locations(), radius, taper);
                    serial_local_update(
                        mu,
                        &a,
                        ys,
                        dys,
                        n1,
                        geometry,
                        obs.operator.locations(),
                        state_index,
                        &obs_index,
                        &mut self.rng,
                    )
                }
            },
            Kind::Local => {
                if !obs.error.is_diagonal() {
                    return Err(DaError::Unsupported {
                        method: "letkf",
                        what: "independent observation errors (R-localisation needs a diagonal R)"
                            .into(),
                    });
                }
                let radius = self
                    .config
                    .localisation_radius
                    .expect("validated: letkf has a radius");
                let taper = self.config.taper.unwrap_or(Taper::GaspariCohn);
                let stale = self
                    .local
                    .as_ref()
                    .is_none_or(|(id, _)| *id != obs.network_id);
                if stale {
                    let geometry = context.model.geometry();
                    let index = if self.config.batch.is_some_and(|b| b > 1) {
                        // Batches query the index itself.
                        LocalObservations::Index(LocalIndex::new(
                            geometry,
                            obs.operator.locations(),
                            radius,
                            taper,
                        ))
                    } else {
                        LocalObservations::new(geometry, obs.operator.locations(), radius, taper)
                    };
                    self.local = Some((obs.network_id, index));
                }
                let (_, index) = self.local.as_ref().expect("set above");
                match (self.config.batch.filter(|&b| b > 1), index) {
                    (Some(side), LocalObservations::Index(index)) => {
                        let geometry = context.model.geometry();
                        let batches = self
                            .batches
                            .get_or_insert_with(|| super::localisation::batches(geometry, side));
                        local_update_batched(&mu, &a, &ys, &dys, n1, geometry, index, batches)?
                    }
                    _ if self.config.engine == Some(super::Engine::Device) => {
                        super::letkf_device::local_update_device(
                            &mu,
                            &a,
                            &ys,
                            &dys,
                            n1,
                            context.model.geometry(),
                            index,
                            context.device(),
                        )?
                    }
                    _ => local_update(&mu, &a, &ys, &dys, n1, context.model.geometry(), index)?,
                }
            }
        };
        self.ensemble = settings.apply(analysis, Some(&a), &mut self.rng);
        Ok(())
    }

    fn estimate(&self) -> Estimate<'_> {
        Estimate::Ensemble(&self.ensemble)
    }
}

/// What is done to an analysis ensemble after the update, shared by every
/// ensemble method: relaxation to the prior (RTPP, RTPS), multiplicative
/// inflation and a random mean-preserving rotation, in that order.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PostProcess {
    /// Multiplicative inflation of the anomalies.
    pub inflation: f64,
    /// Relaxation to prior perturbations.
    pub rtpp: Option<f64>,
    /// Relaxation to prior spread.
    pub rtps: Option<f64>,
    /// Random rotation.
    pub rotation: bool,
}

impl From<&EnsembleConfig> for PostProcess {
    fn from(c: &EnsembleConfig) -> Self {
        Self {
            inflation: c.inflation,
            rtpp: c.rtpp,
            rtps: c.rtps,
            rotation: c.rotation,
        }
    }
}

impl PostProcess {
    /// Inflation and rotation only.
    pub fn inflation_and_rotation(inflation: f64, rotation: bool) -> Self {
        Self {
            inflation,
            rtpp: None,
            rtps: None,
            rotation,
        }
    }

    /// Whether applying it changes anything.
    pub fn is_identity(&self) -> bool {
        self.inflation == 1.0 && !self.rotation && self.rtpp.is_none() && self.rtps.is_none()
    }

    /// Applies the post-processing to an `n x N` analysis (recomposed from
    /// its mean and anomalies); the relaxations need the prior anomalies.
    pub fn apply(
        &self,
        analysis: DMatrix<f64>,
        prior_anomalies: Option<&DMatrix<f64>>,
        rng: &mut Rng,
    ) -> DMatrix<f64> {
        let (mu, mut a) = mean_and_anomalies(&analysis);
        if let Some(prior) = prior_anomalies {
            if let Some(alpha) = self.rtpp {
                a = a * (1.0 - alpha) + prior * alpha;
            }
            if let Some(alpha) = self.rtps {
                let n1 = (a.ncols() - 1) as f64;
                for i in 0..a.nrows() {
                    let sa = (a.row(i).norm_squared() / n1).sqrt();
                    let sf = (prior.row(i).norm_squared() / n1).sqrt();
                    if sa > 0.0 {
                        let factor = 1.0 + alpha * (sf - sa) / sa;
                        a.row_mut(i).scale_mut(factor);
                    }
                }
            }
        }
        if self.inflation != 1.0 {
            a *= self.inflation;
        }
        if self.rotation {
            let q = random_mean_preserving_orthogonal(a.ncols(), rng);
            a *= q.transpose();
        }
        recompose(&mu, &a)
    }
}

/// Kalman gain for whitened innovations, `K_w = A Ys^T (Ys Ys^T + N1 I)^{-1}`
/// (`n x p`), with `Ys = R^{-1/2} Y`: the state-space gain is `K_w R^{-1/2}`.
fn gain(a: &DMatrix<f64>, y: &DMatrix<f64>, n1: f64) -> Result<DMatrix<f64>, DaError> {
    let p = y.nrows();
    let c = y * y.transpose() + DMatrix::identity(p, p) * n1;
    let chol = c
        .cholesky()
        .ok_or_else(|| numerical("the innovation covariance is not positive definite"))?;
    // K = A Y^T C^{-1} = (C^{-1} Y A^T)^T.
    Ok(chol.solve(&(y * a.transpose())).transpose())
}

/// ETKF with the symmetric square root (Hunt et al. 2007; DAPPER `Sqrt`,
/// `eig`): with whitened `Y` and `dy`,
/// `Pw = (Y^T Y + N1 I)^{-1}`, `T = sqrt(N1) Pw^{1/2}`, `w = Pw Y^T dy`,
/// analysis `mu + A w + A T`.
fn sqrt_update(
    mu: &DVector<f64>,
    a: &DMatrix<f64>,
    ys: &DMatrix<f64>,
    dys: &DVector<f64>,
    n1: f64,
) -> Result<DMatrix<f64>, DaError> {
    let n = a.ncols();
    let c = ys.transpose() * ys + DMatrix::identity(n, n) * n1;
    let (pw, pw_sqrt) = inverse_and_inverse_sqrt(c).ok_or_else(|| numerical("ETKF transform"))?;
    let w = &pw * (ys.transpose() * dys);
    let mean = mu + a * w;
    Ok(recompose(&mean, &(a * pw_sqrt * n1.sqrt())))
}

/// The ETKF followed by the random mean-preserving rotation, without an
/// eigendecomposition.
///
/// `C = Ys^T Ys + N1 I` maps the ones-vector to `N1` times itself, so it
/// splits into that direction and its complement, spanned by the columns of
/// `Om` (`N x (N-1)`, orthonormal, orthogonal to the ones: the last `N - 1`
/// columns of the Householder reflection `V` taking `e_1` to the ones over
/// `sqrt N`). With `C' = Om^T C Om = (Ys Om)^T (Ys Om) + N1 I = L L^T`
/// (Cholesky), the weights are `w = Om C'^{-1} (Ys Om)^T dys` and the
/// symmetric-root anomalies rotated by `V diag(1, Q) V` (DAPPER's
/// `genOG_1`, `Q` Haar on `N - 1` dimensions) are
/// `sqrt(N1) A Om C'^{-1/2} Q^T Om^T`. Here `C'^{-1/2}` is replaced by the
/// Cholesky root `L^{-T} = C'^{-1/2} U` (`U` orthogonal, fixed by the prior):
/// `U Q^T` is Haar when `Q` is, so the analysis has exactly the law of the
/// symmetric root followed by the rotation, the same mean and covariance,
/// and uses the same random draws. Cost: one `(N-1)^3 / 6` Cholesky and
/// triangular solves instead of an `N x N` eigendecomposition and its two
/// reconstructions, and one `n x N x N` product instead of two.
fn sqrt_update_rotated(
    mu: &DVector<f64>,
    a: &DMatrix<f64>,
    ys: &DMatrix<f64>,
    dys: &DVector<f64>,
    n1: f64,
    rng: &mut Rng,
) -> Result<DMatrix<f64>, DaError> {
    let n = a.ncols();
    let (v, scale) = ones_reflection(n);
    // X V = X - scale (X v) v^T.
    let reflect = |x: &mut DMatrix<f64>| {
        let xv = &*x * &v;
        x.ger(-scale, &xv, &v, 1.0);
    };
    let mut yv = ys.clone();
    reflect(&mut yv);
    let y_om = yv.columns(1, n - 1);
    let mut c = y_om.tr_mul(&y_om);
    for i in 0..n - 1 {
        c[(i, i)] += n1;
    }
    let chol = c
        .cholesky()
        .ok_or_else(|| numerical("ETKF transform (Cholesky)"))?;
    // w = V [0; C'^{-1} (Ys Om)^T dys].
    let z = chol.solve(&y_om.tr_mul(dys));
    let mut w = DVector::zeros(n);
    w.rows_mut(1, n - 1).copy_from(&z);
    let vw = v.dot(&w);
    w.axpy(-scale * vw, &v, 1.0);
    let mean = mu + a * w;
    // sqrt(N1) A Om L^{-T} Q^T Om^T = [0 | A Om X^T] V with X = sqrt(N1) Q L^{-1},
    // solved column by column from the last (contiguous column updates).
    let l = chol.l_dirty();
    let d = n - 1;
    let mut x = random_orthogonal(d, rng) * n1.sqrt();
    let cols = x.as_mut_slice();
    for i in (0..d).rev() {
        let (head, tail) = cols.split_at_mut((i + 1) * d);
        let xi = &mut head[i * d..];
        for (k, xk) in tail.chunks_exact(d).enumerate() {
            let lki = l[(i + 1 + k, i)];
            for (a, b) in xi.iter_mut().zip(xk) {
                *a -= lki * b;
            }
        }
        let lii = l[(i, i)];
        for a in xi.iter_mut() {
            *a /= lii;
        }
    }
    let m = x.transpose();
    let mut av = a.clone();
    reflect(&mut av);
    let mut out = DMatrix::zeros(a.nrows(), n);
    out.columns_mut(1, n - 1)
        .copy_from(&(av.columns(1, n - 1) * m));
    reflect(&mut out);
    Ok(recompose(&mean, &out))
}

/// Serial EnSRF (Whitaker & Hamill 2002) in ensemble space: observations,
/// whitened so each has unit error variance, are assimilated one at a time
/// in a random order. For observation `j` with prior variance
/// `s = |Y_j|^2 / N1`, the gain weights are `k = Y_j^T / (N1 (1 + s))`, the
/// mean moves by `A k dy_j` and the anomalies by the reduced gain
/// `alpha = 1 / (1 + sqrt(1 / (1 + s)))`; the observed anomalies and the
/// remaining innovations are updated alike.
fn serial_update(
    mu: &DVector<f64>,
    a: &DMatrix<f64>,
    mut ys: DMatrix<f64>,
    mut dys: DVector<f64>,
    n1: f64,
    rng: &mut Rng,
) -> DMatrix<f64> {
    use rand::seq::SliceRandom;
    let n = a.ncols();
    let mut order: Vec<usize> = (0..ys.nrows()).collect();
    order.shuffle(rng);
    // Analysis = mu + A w + A T, with T the accumulated anomaly transform.
    let mut t = DMatrix::<f64>::identity(n, n);
    let mut w = DVector::<f64>::zeros(n);
    for j in order {
        let yj = ys.row(j).transpose();
        let s = yj.norm_squared() / n1;
        let k = &yj / (n1 * (1.0 + s));
        let innovation = dys[j];
        // Mean: A_current k dy_j, with A_current = A T.
        w += &t * &k * innovation;
        // Remaining innovations: dy -= Y_current k dy_j.
        dys -= &ys * &k * innovation;
        // Anomalies: X <- X (I - alpha k y_j^T), as rank-one updates.
        let alpha = 1.0 / (1.0 + (1.0 / (1.0 + s)).sqrt());
        let tk = &t * &k;
        t.ger(-alpha, &tk, &yj, 1.0);
        let yk = &ys * &k;
        ys.ger(-alpha, &yk, &yj, 1.0);
    }
    recompose(&(mu + a * w), &(a * t))
}

/// Serial local EAKF (Anderson 2001 with covariance localisation;
/// Karspeck & Anderson 2007; DAPPER's `SL_EAKF`): the whitened
/// observations, in a random order, are assimilated one at a time; each
/// moves the state and the other observations within the taper's reach by
/// a tapered regression on its observed anomalies, the mean by the scalar
/// Kalman update and the anomalies by the EAKF contraction
/// `sqrt(N1 / (N1 + s))`. The other observations' anomalies and innovations
/// are updated in observation space, so any operator works; for point
/// observations of state variables this is exactly DAPPER's recomputation
/// of `H(E)` after every observation. Cost: O(p (n_local + p_local) N), no
/// matrix larger than the ensemble.
#[allow(clippy::too_many_arguments)]
fn serial_local_update(
    mut mu: DVector<f64>,
    a: &DMatrix<f64>,
    ys: DMatrix<f64>,
    mut dys: DVector<f64>,
    n1: f64,
    geometry: &crate::core::Geometry,
    obs_locations: &[crate::core::Location],
    state_index: &LocalIndex,
    obs_index: &LocalIndex,
    rng: &mut Rng,
) -> DMatrix<f64> {
    use rand::seq::SliceRandom;
    let (nx, n) = a.shape();
    let p = ys.nrows();
    // Row-major copies: the member values of one variable (or one
    // observation) are contiguous.
    let mut ar = a.transpose();
    let mut yr = ys.transpose();
    let mut order: Vec<usize> = (0..p).collect();
    order.shuffle(rng);
    let (mut candidates, mut near) = (Vec::new(), Vec::new());
    let mut yj = vec![0.0; n];
    let dot = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(u, v)| u * v).sum::<f64>();
    for j in order {
        yj.copy_from_slice(yr.column(j).as_slice());
        let s2 = dot(&yj, &yj);
        if s2 < 1e-9 {
            continue;
        }
        // Scalar update in observation space: posterior variance, the mean
        // increment of the observation and the anomaly contraction.
        let mean_step = s2 / (s2 + n1) * dys[j];
        let shrink = (n1 / (n1 + s2)).sqrt() - 1.0;
        let location = obs_locations[j];
        state_index.query(geometry, location, &mut candidates, &mut near);
        for &(i, c) in &near {
            let row = &mut ar.as_mut_slice()[i * n..(i + 1) * n];
            let regression = c * dot(row, &yj) / s2;
            mu[i] += regression * mean_step;
            for (x, y) in row.iter_mut().zip(&yj) {
                *x += shrink * regression * y;
            }
        }
        obs_index.query(geometry, location, &mut candidates, &mut near);
        for &(k, c) in &near {
            let row = &mut yr.as_mut_slice()[k * n..(k + 1) * n];
            let regression = c * dot(row, &yj) / s2;
            dys[k] -= regression * mean_step;
            for (x, y) in row.iter_mut().zip(&yj) {
                *x += shrink * regression * y;
            }
        }
    }
    debug_assert_eq!(ar.shape(), (n, nx));
    recompose(&mu, &ar.transpose())
}

/// LETKF (Hunt et al. 2007): for every state variable, an ETKF with the
/// local observations whose whitened anomalies and innovations are scaled by
/// the square root of their taper coefficients (R-localisation).
/// States at least this large run their local analyses on several threads.
const PARALLEL_ROWS: usize = 512;

pub(super) fn local_update(
    mu: &DVector<f64>,
    a: &DMatrix<f64>,
    ys: &DMatrix<f64>,
    dys: &DVector<f64>,
    n1: f64,
    geometry: &crate::core::Geometry,
    index: &LocalObservations,
) -> Result<DMatrix<f64>, DaError> {
    use rayon::prelude::*;
    let (nx, n) = a.shape();
    // Observation j's member anomalies as a contiguous column.
    let yt = ys.transpose();
    // The local analyses are independent: rows in parallel (in chunks, so
    // that small states stay on one thread); each row's arithmetic is the
    // same whichever thread does it.
    // Row-major results, one chunk of N per state variable.
    let mut rows = vec![0.0; nx * n];
    // Per worker: the N x N matrix, and scratch for the local observations
    // of the point being analysed (queried, not stored for every point).
    let scratch = || (DMatrix::<f64>::zeros(n, n), Vec::new(), Vec::new());
    type Scratch = (DMatrix<f64>, Vec<usize>, Vec<(usize, f64)>);
    let row = |(c, candidates, obs): &mut Scratch, (i, out): (usize, &mut [f64])| {
        let obs = index.of(geometry, i, candidates, obs);
        local_row(mu[i], a, i, &yt, dys, n1, obs, c, out)
    };
    if nx < PARALLEL_ROWS {
        let mut s = scratch();
        rows.chunks_mut(n)
            .enumerate()
            .try_for_each(|job| row(&mut s, job))?;
    } else {
        rows.par_chunks_mut(n)
            .enumerate()
            .with_min_len(PARALLEL_ROWS / 2)
            .try_for_each_init(scratch, row)?;
    }
    let out = DMatrix::from_row_slice(nx, n, &rows);
    Ok(out)
}

/// The analysis of state variable `i` (mean `mu_i`, anomaly row `i` of
/// `a`) updated by its local observations, written to `out` (N values).
#[allow(clippy::too_many_arguments)]
fn local_row(
    mu_i: f64,
    a: &DMatrix<f64>,
    i: usize,
    yt: &DMatrix<f64>,
    dys: &DVector<f64>,
    n1: f64,
    obs: &[(usize, f64)],
    c: &mut DMatrix<f64>,
    out: &mut [f64],
) -> Result<(), DaError> {
    let ai = a.row(i);
    if obs.is_empty() {
        for (o, x) in out.iter_mut().zip(ai.iter()) {
            *o = mu_i + x;
        }
        return Ok(());
    }
    let t = local_transform(yt, dys, n1, obs, c)?;
    t.apply(mu_i, t.v.tr_mul(&ai.transpose()), out);
    Ok(())
}

/// The local ETKF transform of a set of tapered observations: with
/// `C = sum_j c_j Y_j^T Y_j + N1 I = V diag(l) V^T` and
/// `b = sum_j c_j Y_j^T dy_j`, what every analysed row needs: `l`, `V` and
/// `z = V^T b`.
struct LocalTransform {
    l: DVector<f64>,
    v: DMatrix<f64>,
    z: DVector<f64>,
    n1: f64,
}

fn local_transform(
    yt: &DMatrix<f64>,
    dys: &DVector<f64>,
    n1: f64,
    obs: &[(usize, f64)],
    c: &mut DMatrix<f64>,
) -> Result<LocalTransform, DaError> {
    let n = c.nrows();
    // C = sum_j c_j Y_j^T Y_j + N1 I, b = sum_j c_j Y_j^T dy_j.
    c.fill(0.0);
    let mut b = DVector::<f64>::zeros(n);
    for &(j, coeff) in obs {
        let yj = yt.column(j);
        b.axpy(coeff * dys[j], &yj, 1.0);
        // Whole columns (fixed length, so the loop vectorises); the
        // eigendecomposition reads the lower triangle.
        for (q, col) in c.as_mut_slice().chunks_exact_mut(n).enumerate() {
            let f = coeff * yj[q];
            for (cr, yr) in col.iter_mut().zip(yj.iter()) {
                *cr += f * yr;
            }
        }
    }
    for q in 0..n {
        c[(q, q)] += n1;
    }
    let (l, v) = symmetric_eigen(c).ok_or_else(|| numerical("LETKF local transform"))?;
    if l.iter().any(|&x| !(x > 0.0 && x.is_finite())) {
        return Err(numerical("LETKF local transform"));
    }
    let z = v.tr_mul(&b);
    Ok(LocalTransform { l, v, z, n1 })
}

impl LocalTransform {
    /// The analysis of a variable with mean `mu_i` and anomalies `a_i`,
    /// given `u = V^T a_i^T`: the mean weights `Pw b = V diag(1/l) V^T b`
    /// and the anomaly row `a_i T = sqrt(N1) (V diag(l^{-1/2}) V^T a_i^T)^T`,
    /// both O(N^2) once `V` is known, written to `out`.
    fn apply(&self, mu_i: f64, u: DVector<f64>, out: &mut [f64]) {
        let n = u.len();
        let mut u = u;
        let mut mean = mu_i;
        for k in 0..n {
            let inv = 1.0 / self.l[k];
            mean += u[k] * self.z[k] * inv;
            u[k] *= (self.n1 * inv).sqrt();
        }
        out.fill(mean);
        for (column, &uk) in self.v.column_iter().zip(u.iter()) {
            for (o, vk) in out.iter_mut().zip(column.iter()) {
                *o += vk * uk;
            }
        }
    }
}

/// The LETKF on batches of points (DAPPER's `batch_shape`): one transform
/// per batch, from the observations tapered by their mean distance to the
/// batch, applied to each of its points' own mean and anomalies. Batches
/// run in parallel above [`PARALLEL_ROWS`] variables.
#[allow(clippy::too_many_arguments)]
fn local_update_batched(
    mu: &DVector<f64>,
    a: &DMatrix<f64>,
    ys: &DMatrix<f64>,
    dys: &DVector<f64>,
    n1: f64,
    geometry: &crate::core::Geometry,
    index: &LocalIndex,
    batches: &[Vec<usize>],
) -> Result<DMatrix<f64>, DaError> {
    use rayon::prelude::*;
    let (nx, n) = a.shape();
    let yt = ys.transpose();
    type Scratch = (
        DMatrix<f64>,
        Vec<usize>,
        Vec<(usize, f64)>,
        Vec<crate::core::Location>,
    );
    let scratch = || -> Scratch { (DMatrix::zeros(n, n), Vec::new(), Vec::new(), Vec::new()) };
    let one = |(c, candidates, obs, points): &mut Scratch,
               batch: &Vec<usize>|
     -> Result<Vec<f64>, DaError> {
        points.clear();
        points.extend(batch.iter().map(|&i| geometry.location(i)));
        index.query_batch(geometry, points, candidates, obs);
        let mut out = vec![0.0; batch.len() * n];
        if obs.is_empty() {
            for (k, &i) in batch.iter().enumerate() {
                for (o, x) in out[k * n..(k + 1) * n].iter_mut().zip(a.row(i).iter()) {
                    *o = mu[i] + x;
                }
            }
            return Ok(out);
        }
        let t = local_transform(&yt, dys, n1, obs, c)?;
        for (k, &i) in batch.iter().enumerate() {
            t.apply(
                mu[i],
                t.v.tr_mul(&a.row(i).transpose()),
                &mut out[k * n..(k + 1) * n],
            );
        }
        Ok(out)
    };
    let results: Vec<Vec<f64>> = if nx < PARALLEL_ROWS {
        let mut s = scratch();
        batches
            .iter()
            .map(|b| one(&mut s, b))
            .collect::<Result<_, _>>()?
    } else {
        batches
            .par_iter()
            .with_min_len(16)
            .map_init(scratch, one)
            .collect::<Result<_, _>>()?
    };
    let mut out = DMatrix::zeros(nx, n);
    for (batch, values) in batches.iter().zip(&results) {
        for (k, &i) in batch.iter().enumerate() {
            for (q, v) in values[k * n..(k + 1) * n].iter().enumerate() {
                out[(i, q)] = *v;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::stream;

    /// A random ensemble and observations of the first `p` variables.
    fn problem(n: usize, members: usize, p: usize) -> (DMatrix<f64>, DMatrix<f64>, DVector<f64>) {
        let mut rng = stream(11, "problem");
        let e = DMatrix::from_vec(n, members, standard_normal(&mut rng, n * members));
        let h = DMatrix::from_fn(p, n, |i, j| if i == j { 1.0 } else { 0.0 });
        let y = DVector::from_vec(standard_normal(&mut rng, p));
        (e, h, y)
    }

    /// The exact Kalman analysis mean and covariance for the ensemble's
    /// sample covariance.
    fn kalman(
        e: &DMatrix<f64>,
        h: &DMatrix<f64>,
        y: &DVector<f64>,
        sigma: f64,
    ) -> (DVector<f64>, DMatrix<f64>) {
        let (mu, a) = mean_and_anomalies(e);
        let n1 = (e.ncols() - 1) as f64;
        let p = &a * a.transpose() / n1;
        let s = h * &p * h.transpose() + DMatrix::identity(h.nrows(), h.nrows()) * sigma * sigma;
        let k = &p * h.transpose() * s.try_inverse().unwrap();
        let mean = &mu + &k * (y - h * &mu);
        let cov = (DMatrix::identity(e.nrows(), e.nrows()) - &k * h) * p;
        (mean, cov)
    }

    fn moments(e: &DMatrix<f64>) -> (DVector<f64>, DMatrix<f64>) {
        let (mu, a) = mean_and_anomalies(e);
        let cov = &a * a.transpose() / (e.ncols() - 1) as f64;
        (mu, cov)
    }

    #[test]
    fn square_root_filters_give_the_kalman_moments() {
        let (e, h, y) = problem(6, 10, 4);
        let sigma = 0.7;
        let (km, kc) = kalman(&e, &h, &y, sigma);
        let (mu, a) = mean_and_anomalies(&e);
        let hy = &h * &a;
        let dys = (&y - &h * &mu) / sigma;
        let ys = &hy / sigma;
        let mut rng = stream(1, "serial");
        let results = [
            ("etkf", sqrt_update(&mu, &a, &ys, &dys, 9.0).unwrap()),
            (
                "ensrf",
                serial_update(&mu, &a, ys.clone(), dys.clone(), 9.0, &mut rng),
            ),
        ];
        for (name, ea) in results {
            let (m, c) = moments(&ea);
            assert!((m - &km).abs().max() < 1e-10, "{name} mean");
            assert!((c - &kc).abs().max() < 1e-10, "{name} covariance");
        }
    }

    /// The rotated ETKF by Cholesky has the Kalman moments of the symmetric
    /// root, centred anomalies and a random rotation: another stream gives
    /// another ensemble, and the anomalies average to zero over rotations,
    /// as those of the symmetric root rotated by a Haar mean-preserving
    /// rotation do. Also with fewer observations than members (rank-deficient
    /// `Ys`) and more members than variables.
    #[test]
    fn rotated_etkf_by_cholesky_has_the_symmetric_root_law() {
        for (n, members, p) in [(6, 10, 4), (12, 5, 12), (3, 8, 3)] {
            let (e, h, y) = problem(n, members, p);
            let sigma = 0.7;
            let n1 = (members - 1) as f64;
            let (km, kc) = kalman(&e, &h, &y, sigma);
            let (mu, a) = mean_and_anomalies(&e);
            let dys = (&y - &h * &mu) / sigma;
            let ys = &h * &a / sigma;
            let symmetric = sqrt_update(&mu, &a, &ys, &dys, n1).unwrap();
            let mut rng = stream(2, "rotation");
            let one = sqrt_update_rotated(&mu, &a, &ys, &dys, n1, &mut rng).unwrap();
            let (m, c) = moments(&one);
            assert!((&m - &km).abs().max() < 1e-10, "mean, n={n} N={members}");
            assert!(
                (&c - &kc).abs().max() < 1e-10,
                "covariance, n={n} N={members}"
            );
            let (_, a_one) = mean_and_anomalies(&one);
            assert!(a_one.column_sum().abs().max() < 1e-12, "centred");
            let other = sqrt_update_rotated(&mu, &a, &ys, &dys, n1, &mut rng).unwrap();
            assert!((&other - &one).abs().max() > 1e-3, "rotated");
            // E[A T Q] = 0 for Haar Q on the complement of the ones; the
            // symmetric root alone is far from zero.
            let draws = 2000;
            let mut sum = DMatrix::zeros(n, members);
            for _ in 0..draws {
                let ea = sqrt_update_rotated(&mu, &a, &ys, &dys, n1, &mut rng).unwrap();
                sum += mean_and_anomalies(&ea).1;
            }
            let (_, a_sym) = mean_and_anomalies(&symmetric);
            let scale = a_sym.abs().max();
            assert!(
                (sum / draws as f64).abs().max() < 0.1 * scale,
                "Haar average, n={n}"
            );
        }
    }

    #[test]
    fn letkf_without_taper_is_the_etkf() {
        // A step taper wider than the domain: every point sees every
        // observation. 5 points (one thread) and 600 (the parallel path).
        for n in [5, 600] {
            let (e, h, y) = problem(n, 6, n);
            let (mu, a) = mean_and_anomalies(&e);
            let ys = &h * &a / 0.5;
            let dys = (&y - &h * &mu) / 0.5;
            let g = crate::core::Geometry::chain(n, false, "x");
            let locations: Vec<_> = g.locations().collect();
            let index = LocalObservations::Index(super::super::localisation::LocalIndex::new(
                &g,
                &locations,
                10.0 * n as f64,
                Taper::Step,
            ));
            let local = local_update(&mu, &a, &ys, &dys, 5.0, &g, &index).unwrap();
            let global = sqrt_update(&mu, &a, &ys, &dys, 5.0).unwrap();
            assert!((local - global).abs().max() < 1e-10, "n = {n}");
        }
    }

    /// Without a taper the serial local EAKF is the serial EnSRF (the same
    /// observation order from the same stream); with one, observations
    /// beyond reach change nothing, and the first observation's update is
    /// the scalar Kalman update at its own location.
    #[test]
    fn serial_local_eakf_without_taper_is_the_serial_ensrf_and_tapers_act_locally() {
        let n = 30;
        // Observe every third variable.
        let (e, h_full, y_full) = problem(n, 8, n);
        let keep: Vec<usize> = (0..n).step_by(3).collect();
        let h = DMatrix::from_fn(keep.len(), n, |r, c| h_full[(keep[r], c)]);
        let y = DVector::from_fn(keep.len(), |r, _| y_full[keep[r]]);
        let (mu, a) = mean_and_anomalies(&e);
        let ys = &h * &a / 0.5;
        let dys = (&y - &h * &mu) / 0.5;
        let g = crate::core::Geometry::chain(n, true, "x");
        let points: Vec<_> = g.locations().collect();
        let obs_locations: Vec<_> = keep.iter().map(|&i| points[i]).collect();
        let wide = 10.0 * n as f64;
        let local = serial_local_update(
            mu.clone(),
            &a,
            ys.clone(),
            dys.clone(),
            7.0,
            &g,
            &obs_locations,
            &LocalIndex::new(&g, &points, wide, Taper::Step),
            &LocalIndex::new(&g, &obs_locations, wide, Taper::Step),
            &mut stream(3, "order"),
        );
        let global = serial_update(
            &mu,
            &a,
            ys.clone(),
            dys.clone(),
            7.0,
            &mut stream(3, "order"),
        );
        assert!((&local - &global).abs().max() < 1e-10);
        // Localised: a single observation moves only the variables within
        // the taper's reach, and its own variable by the scalar Kalman update.
        let one = [obs_locations[2]];
        let ys1 = ys.rows(2, 1).into_owned();
        let dys1 = dys.rows(2, 1).into_owned();
        let radius = 2.0;
        let out = serial_local_update(
            mu.clone(),
            &a,
            ys1.clone(),
            dys1.clone(),
            7.0,
            &g,
            &one,
            &LocalIndex::new(&g, &points, radius, Taper::GaspariCohn),
            &LocalIndex::new(&g, &one, radius, Taper::GaspariCohn),
            &mut stream(3, "order"),
        );
        let (mu_a, _) = mean_and_anomalies(&out);
        let reach = Taper::GaspariCohn.reach(radius);
        let i0 = keep[2];
        for i in 0..n {
            let d = g.distance(&points[i], &points[i0]);
            if d > reach {
                // Unchanged up to the round-off of splitting and recomposing.
                assert!(
                    (mu_a[i] - mu[i]).abs() < 1e-14,
                    "variable {i} at distance {d}"
                );
                assert!((out.row(i) - e.row(i)).abs().max() < 1e-14, "variable {i}");
            } else if d < 2.5 {
                assert!(
                    (mu_a[i] - mu[i]).abs() > 1e-6,
                    "variable {i} at distance {d}"
                );
            }
        }
        let s2 = ys1.row(0).norm_squared();
        let want = mu[i0] + 0.5 * (s2 / (s2 + 7.0)) * dys1[0];
        assert!((mu_a[i0] - want).abs() < 1e-12, "{} vs {want}", mu_a[i0]);
    }

    /// Batches of points with a taper wider than the domain: every batch
    /// has the global transform, so the batched LETKF is the ETKF too; the
    /// batches cover every point once, on a grid and on a chain.
    #[test]
    fn batched_letkf_without_taper_is_the_etkf_and_batches_partition_the_state() {
        use super::super::localisation::batches;
        let axis = |n: usize| (0..n).map(|i| i as f64).collect::<Vec<_>>();
        let grid = crate::core::Geometry::new(
            vec![crate::core::Field::grid("c", "c", "1", axis(7), axis(5))],
            [None, None],
            crate::core::CoordinateUnits::Model,
        );
        for (g, side) in [
            (grid.clone(), 2),
            (grid, 3),
            (crate::core::Geometry::chain(600, true, "x"), 4),
        ] {
            let n = g.size();
            let b = batches(&g, side);
            let mut seen: Vec<usize> = b.iter().flatten().copied().collect();
            seen.sort_unstable();
            assert_eq!(seen, (0..n).collect::<Vec<_>>());
            assert!(b.iter().all(|x| x.len() <= side * side));
            let (e, h, y) = problem(n, 6, n);
            let (mu, a) = mean_and_anomalies(&e);
            let ys = &h * &a / 0.5;
            let dys = (&y - &h * &mu) / 0.5;
            let locations: Vec<_> = g.locations().collect();
            let index = LocalIndex::new(&g, &locations, 10.0 * n as f64, Taper::Step);
            let local = local_update_batched(&mu, &a, &ys, &dys, 5.0, &g, &index, &b).unwrap();
            let global = sqrt_update(&mu, &a, &ys, &dys, 5.0).unwrap();
            assert!((local - global).abs().max() < 1e-10, "n = {n}, side {side}");
        }
    }

    #[test]
    fn denkf_mean_is_kalman_and_perturbed_obs_mean_is_unbiased() {
        let (e, h, y) = problem(6, 12, 6);
        let sigma = 0.5;
        let (km, _) = kalman(&e, &h, &y, sigma);
        let (mu, a) = mean_and_anomalies(&e);
        let ys = &h * &a / sigma;
        let k = gain(&a, &ys, 11.0).unwrap();
        let mean = &mu + &k * ((&y - &h * &mu) / sigma);
        assert!((mean - km).abs().max() < 1e-10);
    }
}
