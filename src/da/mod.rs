//! Data assimilation methods.
//!
//! A method is a value ([`MethodConfig`]): plain data read from the
//! `[[methods]]` tables of an experiment file, so a list of values is a
//! sweep. [`MethodConfig::build`] turns it into a [`Filter`] that the runner
//! cycles: forecast, then analysis, at every observation time.
//!
//! Ensemble algebra (ETKF transforms, LETKF local solves) runs in f64 on the
//! host with nalgebra; the forecast runs on the burn device with one
//! transfer each way per cycle.

pub mod baseline;
pub mod covariance;
pub mod eigen;
pub mod ensemble;
pub mod ienks;
mod letkf_device;
pub mod linalg;
pub mod localisation;
pub mod var;

use std::sync::OnceLock;

use nalgebra::{DMatrix, DVector};
use serde::{Deserialize, Serialize};

use crate::core::{ForecastError, Forecaster, Model, ObsBatch};
use crate::rng::Rng;
use covariance::CovarianceSqrt;

pub use localisation::Taper;

/// Settings shared by the ensemble filters of the EnKF family.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnsembleConfig {
    /// Number of members N (at least 2).
    pub ensemble_size: usize,
    /// Multiplicative inflation of the analysis anomalies (1 = none).
    #[serde(default = "one")]
    pub inflation: f64,
    /// Random rotation of the analysis anomalies that preserves the mean
    /// (DAPPER `rot=True`).
    #[serde(default)]
    pub rotation: bool,
    /// Relaxation to prior perturbations (Zhang et al. 2004), `alpha` in [0, 1].
    #[serde(default)]
    pub rtpp: Option<f64>,
    /// Relaxation to prior spread (Whitaker & Hamill 2012), `alpha` in [0, 1].
    #[serde(default)]
    pub rtps: Option<f64>,
    /// Localisation radius in model distance units (LETKF only): the taper
    /// equals `exp(-1/2)` at this distance, as in DAPPER.
    #[serde(default)]
    pub localisation_radius: Option<f64>,
    /// The taper function (LETKF only).
    #[serde(default)]
    pub taper: Option<Taper>,
    /// LETKF only: analyse blocks of `batch x batch` grid points (`batch`
    /// consecutive points of a 1-D field) with one transform, tapered by
    /// the mean distance to the block (DAPPER's `batch_shape`); absent or 1:
    /// every point its own. Not written when absent, so the random streams
    /// of existing settings stay as they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<usize>,
    /// LETKF only: where the local analyses run (absent: `threads`). Not
    /// written when absent, as `batch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<Engine>,
}

/// Where the LETKF's local analyses run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// On the host, in parallel over grid points (rayon), each by an
    /// eigendecomposition.
    #[default]
    Threads,
    /// On the run's device, all points of a chunk in batched tensor
    /// operations (an inverse square root by Newton-Schulz iterations).
    Device,
}

fn one() -> f64 {
    1.0
}

/// A DA method and its settings, selected by `name`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum MethodConfig {
    /// The climatological mean and covariance, no observations used.
    Climatology(NoSettings),
    /// The free run: the initial mean forecast with no observation used,
    /// the baseline every twin's analysis has to beat.
    Free(NoSettings),
    /// Optimal interpolation: the climatological mean updated with the
    /// climatological covariance at every observation time, not cycled.
    Oi(NoSettings),
    /// 3D-Var: the variational analysis at each observation time with a
    /// static background covariance, minimised by L-BFGS with autodiff (or
    /// adjoint) gradients.
    Var3d(var::VarConfig),
    /// 4D-Var, strong or weak constraint, over a window of observation cycles.
    Var4d(var::VarConfig),
    /// Extended Kalman filter, tangent-linear model by autodiff.
    Ekf(EkfConfig),
    /// Stochastic EnKF with perturbed observations (Burgers et al. 1998).
    Enkf(EnsembleConfig),
    /// Ensemble transform Kalman filter, symmetric square root (Hunt et al. 2007).
    Etkf(EnsembleConfig),
    /// Deterministic EnKF (Sakov & Oke 2008).
    Denkf(EnsembleConfig),
    /// Serial ensemble square-root filter, one observation at a time
    /// (Whitaker & Hamill 2002).
    Ensrf(EnsembleConfig),
    /// Local ETKF with tapered observation errors (Hunt et al. 2007).
    Letkf(EnsembleConfig),
    /// Iterative ensemble Kalman smoother, square root (Bocquet & Sakov 2013).
    Ienks(ienks::IenksConfig),
    /// 4D-Var with a localised ensemble covariance and an ensemble of
    /// perturbed analyses.
    En4dvar(var::envar::En4dvarConfig),
}

/// A method without settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoSettings {}

/// Settings of [`MethodConfig::Ekf`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EkfConfig {
    /// Inflation per unit model time: the forecast covariance is multiplied
    /// by `inflation^dt` each model step (as DAPPER's `ExtKF`).
    #[serde(default = "one")]
    pub inflation: f64,
}

impl MethodConfig {
    /// The method's name as written in the file.
    pub fn name(&self) -> &'static str {
        match self {
            MethodConfig::Climatology(_) => "climatology",
            MethodConfig::Free(_) => "free",
            MethodConfig::Oi(_) => "oi",
            MethodConfig::Var3d(_) => "var3d",
            MethodConfig::Var4d(_) => "var4d",
            MethodConfig::Ekf(_) => "ekf",
            MethodConfig::Enkf(_) => "enkf",
            MethodConfig::Etkf(_) => "etkf",
            MethodConfig::Denkf(_) => "denkf",
            MethodConfig::Ensrf(_) => "ensrf",
            MethodConfig::Letkf(_) => "letkf",
            MethodConfig::Ienks(_) => "ienks",
            MethodConfig::En4dvar(_) => "en4dvar",
        }
    }

    /// The same settings with the LETKF's `engine` unset (which engine
    /// runs the analyses does not change what they compute).
    pub fn without_engine(&self) -> MethodConfig {
        let mut out = self.clone();
        if let MethodConfig::Letkf(c) = &mut out {
            c.engine = None;
        }
        out
    }

    /// The ensemble size, for ensemble methods.
    pub fn ensemble_size(&self) -> Option<usize> {
        match self {
            MethodConfig::Enkf(c)
            | MethodConfig::Etkf(c)
            | MethodConfig::Denkf(c)
            | MethodConfig::Ensrf(c)
            | MethodConfig::Letkf(c) => Some(c.ensemble_size),
            MethodConfig::Ienks(c) => Some(c.ensemble_size),
            MethodConfig::En4dvar(c) => Some(c.ensemble_size),
            _ => None,
        }
    }

    /// The observation cycles one analysis spans, with the key that sets
    /// it: 4D-Var's and En4DVar's `window`, the iEnKS's `lag`; `None` for
    /// methods that analyse each cycle on its own.
    pub fn window_cycles(&self) -> Option<(&'static str, usize)> {
        match self {
            MethodConfig::Var4d(c) => Some(("window", c.window)),
            MethodConfig::En4dvar(c) => Some(("window", c.window)),
            MethodConfig::Ienks(c) => Some(("lag", c.lag)),
            _ => None,
        }
    }

    /// Checks the values; the error is `(key, reason)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let err = |k: &str, r: String| Err((k.to_string(), r));
        match self {
            MethodConfig::Var3d(c) | MethodConfig::Var4d(c) => c.validate(self.name()),
            MethodConfig::Ienks(c) => c.validate(),
            MethodConfig::En4dvar(c) => c.validate(),
            MethodConfig::Ekf(c) if !(c.inflation >= 1.0 && c.inflation.is_finite()) => err(
                "inflation",
                format!("must be at least 1, got {}", c.inflation),
            ),
            MethodConfig::Enkf(c)
            | MethodConfig::Etkf(c)
            | MethodConfig::Denkf(c)
            | MethodConfig::Ensrf(c)
            | MethodConfig::Letkf(c) => {
                if c.ensemble_size < 2 {
                    return err(
                        "ensemble_size",
                        format!("must be at least 2, got {}", c.ensemble_size),
                    );
                }
                if !(c.inflation >= 1.0 && c.inflation.is_finite()) {
                    return err(
                        "inflation",
                        format!(
                            "must be at least 1 (below 1 it deflates the ensemble, which then collapses), got {}",
                            c.inflation
                        ),
                    );
                }
                for (key, v) in [("rtpp", c.rtpp), ("rtps", c.rtps)] {
                    if let Some(a) = v
                        && !(0.0..=1.0).contains(&a)
                    {
                        return err(key, format!("must lie in [0, 1], got {a}"));
                    }
                }
                let is_letkf = matches!(self, MethodConfig::Letkf(_));
                match c.batch {
                    Some(0) => return err("batch", "must be at least 1".into()),
                    Some(_) if !is_letkf => {
                        return err("batch", format!("does not apply to {}", self.name()));
                    }
                    _ => {}
                }
                match c.engine {
                    Some(_) if !is_letkf => {
                        return err("engine", format!("does not apply to {}", self.name()));
                    }
                    Some(Engine::Device) if c.batch.is_some_and(|b| b > 1) => {
                        return err(
                            "engine",
                            "\"device\" analyses every point on its own (no batch)".into(),
                        );
                    }
                    _ => {}
                }
                let localisable = is_letkf || matches!(self, MethodConfig::Ensrf(_));
                match (is_letkf, localisable, c.localisation_radius) {
                    (true, _, None) => err("localisation_radius", "is required by letkf".into()),
                    (_, true, Some(r)) if !(r > 0.0 && r.is_finite()) => {
                        err("localisation_radius", format!("must be positive, got {r}"))
                    }
                    (_, false, Some(_)) => err(
                        "localisation_radius",
                        format!(
                            "does not apply to {} (letkf and ensrf are localised)",
                            self.name()
                        ),
                    ),
                    (_, _, None) if c.taper.is_some() => err(
                        "taper",
                        format!(
                            "does not apply to {} without localisation_radius",
                            self.name()
                        ),
                    ),
                    _ => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }

    /// Whether the method minimises a cost function with L-BFGS and so
    /// records its minimisations (3D-Var, 4D-Var, En4DVar; the iEnKS
    /// iterates Gauss-Newton and records none).
    pub fn minimises(&self) -> bool {
        matches!(
            self,
            MethodConfig::Var3d(_) | MethodConfig::Var4d(_) | MethodConfig::En4dvar(_)
        )
    }

    /// Whether the method needs the climatology of a truth run at all.
    pub fn needs_climate(&self) -> bool {
        matches!(self, MethodConfig::Climatology(_)) || self.needs_climate_covariance()
    }

    /// Whether the method needs the climatological covariance (`n x n`).
    pub fn needs_climate_covariance(&self) -> bool {
        match self {
            MethodConfig::Oi(_) => true,
            MethodConfig::Var3d(c) | MethodConfig::Var4d(c) => {
                c.background_covariance == var::BackgroundCovariance::Climatology
            }
            _ => false,
        }
    }

    /// Builds the filter, drawing its initial state from `initial`.
    pub fn build(
        &self,
        context: &Context<'_>,
        initial: &Gaussian,
        rng: Rng,
    ) -> Result<Box<dyn Filter>, DaError> {
        Ok(match self {
            MethodConfig::Climatology(_) => Box::new(baseline::Climatology::new(context)),
            MethodConfig::Free(_) => Box::new(baseline::FreeRun::new(initial)),
            MethodConfig::Oi(_) => Box::new(baseline::StaticB::new(
                context,
                initial,
                1.0,
                baseline::Background::Climatology,
            )?),
            MethodConfig::Var3d(c) | MethodConfig::Var4d(c) => {
                Box::new(var::Var::new(context, initial, c)?)
            }
            MethodConfig::Ienks(c) => Box::new(ienks::Ienks::new(c, initial, rng)),
            MethodConfig::En4dvar(c) => Box::new(var::envar::En4dvar::new(c, initial, rng)),
            MethodConfig::Ekf(c) => Box::new(baseline::Ekf::new(initial, c.inflation)),
            MethodConfig::Enkf(c) => Box::new(ensemble::EnsembleFilter::new(
                ensemble::Kind::PerturbedObs,
                c,
                initial,
                rng,
            )),
            MethodConfig::Etkf(c) => Box::new(ensemble::EnsembleFilter::new(
                ensemble::Kind::Sqrt,
                c,
                initial,
                rng,
            )),
            MethodConfig::Denkf(c) => Box::new(ensemble::EnsembleFilter::new(
                ensemble::Kind::Deterministic,
                c,
                initial,
                rng,
            )),
            MethodConfig::Ensrf(c) => Box::new(ensemble::EnsembleFilter::new(
                ensemble::Kind::Serial,
                c,
                initial,
                rng,
            )),
            MethodConfig::Letkf(c) => Box::new(ensemble::EnsembleFilter::new(
                ensemble::Kind::Local,
                c,
                initial,
                rng,
            )),
        })
    }
}

/// The distribution initial conditions are drawn from: a Gaussian with
/// diagonal covariance, or a climatological sample of model states (then
/// `mean` and `std` are the sample's, for the methods that start from a
/// mean and a variance).
#[derive(Clone, Debug, PartialEq)]
pub struct Gaussian {
    /// Mean.
    pub mean: DVector<f64>,
    /// Standard deviation of each variable.
    pub std: DVector<f64>,
    /// States to draw from instead (`n x count`), where given.
    pub draws: Option<std::sync::Arc<DMatrix<f64>>>,
    /// A correlated square root of the covariance (`[initial]
    /// length_scale`); absent: `diag(std^2)`.
    pub sqrt: Option<std::sync::Arc<covariance::FieldCovariance>>,
}

impl Gaussian {
    /// `N(mean, diag(std^2))`.
    pub fn new(mean: DVector<f64>, std: DVector<f64>) -> Self {
        Self {
            mean,
            std,
            draws: None,
            sqrt: None,
        }
    }

    /// `N(mean, S S^T)` for the correlated square root `sqrt`.
    pub fn correlated(mean: DVector<f64>, sqrt: covariance::FieldCovariance) -> Self {
        let std = DVector::from_vec(sqrt.row_norms());
        Self {
            mean,
            std,
            draws: None,
            sqrt: Some(std::sync::Arc::new(sqrt)),
        }
    }

    /// The square root of the covariance as an operator: the correlated
    /// one if given, else `diag(std)` over the variables with a non-zero
    /// standard deviation.
    pub fn covariance_sqrt(&self, geometry: &crate::core::Geometry) -> covariance::FieldCovariance {
        match &self.sqrt {
            Some(s) => (**s).clone(),
            None => covariance::FieldCovariance::new(geometry, self.std.as_slice(), None),
        }
    }

    /// The empirical distribution of the columns of `states` (`n x count`).
    pub fn from_sample(states: DMatrix<f64>) -> Self {
        let count = states.ncols();
        let mean = states.column_mean();
        let std = DVector::from_fn(states.nrows(), |i, _| {
            let row = states.row(i);
            let ss: f64 = row.iter().map(|v| (v - mean[i]).powi(2)).sum();
            (ss / (count.max(2) - 1) as f64).sqrt()
        });
        Self {
            mean,
            std,
            draws: Some(std::sync::Arc::new(states)),
            sqrt: None,
        }
    }

    /// `members` draws as an `n x members` matrix. From a sample, distinct
    /// states are drawn while there are enough (an ensemble with two equal
    /// members keeps them equal forever under a deterministic model and a
    /// square-root filter), then again from the whole sample.
    pub fn sample(&self, members: usize, rng: &mut Rng) -> DMatrix<f64> {
        if let Some(states) = &self.draws {
            let count = states.ncols();
            let mut picks = Vec::with_capacity(members);
            while picks.len() < members {
                let take = (members - picks.len()).min(count);
                picks.extend(rand::seq::index::sample(rng, count, take));
            }
            return DMatrix::from_fn(states.nrows(), members, |i, j| states[(i, picks[j])]);
        }
        let n = self.mean.len();
        if let Some(s) = &self.sqrt {
            let m = s.control_size();
            let z = crate::rng::standard_normal(rng, m * members);
            let mut out = DMatrix::zeros(n, members);
            for j in 0..members {
                let x = s.apply(&z[j * m..(j + 1) * m]);
                out.set_column(j, &(&self.mean + x));
            }
            return out;
        }
        let z = crate::rng::standard_normal(rng, n * members);
        DMatrix::from_fn(n, members, |i, j| self.mean[i] + self.std[i] * z[j * n + i])
    }
}

/// Climatological statistics of the truth, for the climatology, OI and
/// 3D/4D-Var baselines. The mean and variances are O(n); the covariance
/// (`n x n`) is computed the first time a method asks for it, so a run
/// whose methods never need it never holds it.
#[derive(Debug)]
pub struct ClimateStats {
    /// Mean state.
    pub mean: DVector<f64>,
    /// Variance of each variable (ddof 1).
    pub variance: DVector<f64>,
    states: Option<DMatrix<f64>>,
    covariance: OnceLock<DMatrix<f64>>,
}

impl Clone for ClimateStats {
    fn clone(&self) -> Self {
        let covariance = OnceLock::new();
        if let Some(c) = self.covariance.get() {
            let _ = covariance.set(c.clone());
        }
        Self {
            mean: self.mean.clone(),
            variance: self.variance.clone(),
            states: self.states.clone(),
            covariance,
        }
    }
}

impl ClimateStats {
    /// Statistics of a sample of states (one per column); the sample is
    /// kept for the covariance on demand.
    pub fn from_states(states: DMatrix<f64>) -> Self {
        let (mean, variance) = mean_and_variance(&states);
        Self {
            mean,
            variance,
            states: Some(states),
            covariance: OnceLock::new(),
        }
    }

    /// Mean and variance only (no covariance available).
    pub fn from_moments(mean: DVector<f64>, variance: DVector<f64>) -> Self {
        Self {
            mean,
            variance,
            states: None,
            covariance: OnceLock::new(),
        }
    }

    /// The covariance (`n x n`, ddof 1), computed on first use.
    ///
    /// # Errors
    /// When the statistics were built from moments only.
    pub fn covariance(&self) -> Result<&DMatrix<f64>, DaError> {
        if let Some(c) = self.covariance.get() {
            return Ok(c);
        }
        let states = self.states.as_ref().ok_or_else(|| DaError::Unsupported {
            method: "climatological covariance",
            what: "the truth sample, which this run did not keep".into(),
        })?;
        let mut anomalies = states.clone();
        for mut c in anomalies.column_iter_mut() {
            c -= &self.mean;
        }
        let c = &anomalies * anomalies.transpose() / (states.ncols() as f64 - 1.0).max(1.0);
        Ok(self.covariance.get_or_init(|| c))
    }

    /// Whether the covariance has been computed.
    pub fn has_covariance(&self) -> bool {
        self.covariance.get().is_some()
    }
}

fn mean_and_variance(states: &DMatrix<f64>) -> (DVector<f64>, DVector<f64>) {
    let n = states.nrows();
    let m = states.ncols() as f64;
    let mean = states.column_mean();
    let mut variance = DVector::zeros(n);
    for col in states.column_iter() {
        for i in 0..n {
            let d = col[i] - mean[i];
            variance[i] += d * d;
        }
    }
    variance /= (m - 1.0).max(1.0);
    (mean, variance)
}

/// The assimilation context: what a method needs to know about the
/// experiment besides the observations, which arrive as [`ObsBatch`]es.
pub struct Context<'a> {
    /// The forecast model.
    pub model: &'a dyn Model,
    /// How forecasts run (device, host path, noise stream).
    pub forecaster: Forecaster,
    /// Model steps between observations.
    pub steps_per_cycle: usize,
    /// Climatology of the truth.
    pub climate: &'a ClimateStats,
}

impl Context<'_> {
    /// Model time between observations.
    pub fn interval(&self) -> f64 {
        self.model.dt() * self.steps_per_cycle as f64
    }

    /// The device models run on.
    pub fn device(&self) -> &burn::tensor::Device {
        &self.forecaster.device
    }

    /// Advances an `n x members` ensemble by `steps` model steps.
    ///
    /// # Errors
    /// A forecast that blew up.
    pub fn forecast_ensemble(
        &self,
        ensemble: &DMatrix<f64>,
        time: f64,
        steps: usize,
    ) -> Result<DMatrix<f64>, DaError> {
        Ok(self
            .forecaster
            .ensemble(self.model, ensemble, time, steps)?)
    }

    /// Advances one state deterministically by `steps` model steps.
    ///
    /// # Errors
    /// A forecast that blew up.
    pub fn forecast_state(
        &self,
        x: &DVector<f64>,
        time: f64,
        steps: usize,
    ) -> Result<DVector<f64>, DaError> {
        Ok(self.forecaster.state(self.model, x, time, steps)?)
    }
}

/// The current estimate of a filter, for verification.
pub enum Estimate<'a> {
    /// An ensemble, `n x members`.
    Ensemble(&'a DMatrix<f64>),
    /// A Gaussian with the given mean and per-variable variance.
    Gaussian {
        /// Mean.
        mean: &'a DVector<f64>,
        /// Variance of each variable.
        variance: DVector<f64>,
    },
}

/// A cycled assimilation method.
pub trait Filter: Send {
    /// Advances the estimate by `context.steps_per_cycle` model steps from `time`.
    fn forecast(&mut self, context: &Context<'_>, time: f64) -> Result<(), DaError>;
    /// Assimilates one batch of observations (valid at `obs.time`).
    fn analyse(&mut self, context: &Context<'_>, obs: &ObsBatch) -> Result<(), DaError>;
    /// The current estimate.
    fn estimate(&self) -> Estimate<'_>;
    /// Summaries of the minimisations so far (variational methods only).
    fn minimisations(&self) -> &[var::MinimisationSummary] {
        &[]
    }
}

/// Why a method could not go on.
#[derive(Debug, thiserror::Error)]
pub enum DaError {
    /// The method needs something the experiment does not provide.
    #[error("{method} needs {what}")]
    Unsupported {
        /// The method.
        method: &'static str,
        /// What it needs.
        what: String,
    },
    /// A linear solve or decomposition failed, typically after divergence.
    #[error("numerical failure in {0}")]
    Numerical(String),
    /// The forecast produced non-finite values.
    #[error(transparent)]
    Forecast(#[from] ForecastError),
    /// A variational minimisation failed or did not converge.
    #[error("minimisation failed after {iterations} iterations: {reason}; cost history {history}")]
    Minimisation {
        /// What went wrong.
        reason: String,
        /// Iterations taken.
        iterations: u64,
        /// The cost at each iteration.
        history: String,
    },
}
