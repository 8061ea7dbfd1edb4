//! Cycles every method of an experiment, cycle by cycle over one truth (or
//! one file of observations), scores it and streams its outputs.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use nalgebra::DVector;
use rayon::prelude::*;
use serde::Serialize;

use super::config::{ConfigError, Expected, ExperimentConfig, MethodEntry};
use super::output;
use super::twin::{Built, Chronology, ObsSource, TruthRun, Verification, climate};
use crate::core::{Forecaster, ObsBatch, apply_to_state};
use crate::da::var::MinimisationSummary;
use crate::da::{ClimateStats, Context, DaError, Estimate, Filter, Gaussian};
use crate::device::DeviceChoice;
use crate::io::IoError;
use crate::metrics::{self, MeanWithCi, RankHistogram};
use crate::rng::stream;

/// Overrides from the command line.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Replace `run.cycles`.
    pub cycles: Option<usize>,
    /// Replace `run.seed`.
    pub seed: Option<u64>,
    /// Show a progress bar (only drawn when stderr is a terminal).
    pub progress: bool,
    /// Replace `run.device`.
    pub device: Option<DeviceChoice>,
    /// Stream the outputs into this directory as the run goes.
    pub output: Option<output::OutputTarget>,
    /// Keep no per-cycle scores in memory (they are in the NetCDF files):
    /// the run's memory then does not grow with its length at all, and
    /// [`MethodReport::series`] is empty. The CLI sets it.
    pub drop_series: bool,
}

/// Why a run could not be done.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The experiment cannot be built (models, network, device).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A method cannot start.
    #[error(transparent)]
    Method(#[from] DaError),
    /// An output file cannot be written.
    #[error(transparent)]
    Output(#[from] IoError),
}

/// How a method ended.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    /// Every cycle ran, every minimisation converged, and (with a truth)
    /// the analysis beat climatology.
    Ok,
    /// Every cycle ran, but some minimisations stopped before meeting the
    /// gradient tolerance (iteration cap or no further progress); their
    /// best iterate was used as the analysis.
    NotConverged {
        /// How many minimisations did not converge.
        minimisations: usize,
        /// The most iterations one of them took.
        max_iterations: u64,
        /// The largest final gradient norm among them.
        gradient_norm: f64,
    },
    /// Every cycle ran, but the time-mean analysis RMSE exceeds the
    /// climatological standard deviation of the truth: a forecast of the
    /// climate mean would have done better.
    WorseThanClimatology {
        /// Time-mean analysis RMSE (several fields: the normalised RMSE of
        /// [`Summary::rmse_a_normalised`]).
        rmse_a: f64,
        /// Climatological standard deviation (root of the mean variance;
        /// 1 for the normalised RMSE of several fields).
        climatology: f64,
        /// Several fields: those whose own analysis RMSE exceeds their
        /// climatological standard deviation (`None` for one field).
        fields: Option<Vec<String>>,
    },
    /// Every cycle ran without a truth to score against, but the
    /// innovations contradict the errors the method assumed: the
    /// Desroziers estimate of the observation-error variance,
    /// `mean(d_a d_b)`, is more than [`MAX_DESROZIERS_RATIO`] times the
    /// assumed `R` or less than its inverse (the analysis is not to be
    /// trusted as it stands: R, B or the inflation is mis-specified).
    InconsistentInnovations {
        /// Desroziers `mean(d_a d_b)` over the assumed variance.
        r_ratio: f64,
    },
    /// Stopped at `cycle` (0-based): the forecast or analysis became
    /// non-finite or its error exceeded the divergence limit.
    Diverged {
        /// The cycle at which the method was stopped.
        cycle: usize,
        /// Why.
        reason: String,
    },
    /// Stopped at `cycle` by a failure that is not a divergence (a
    /// minimisation with no iterate better than its background, a failed
    /// decomposition).
    Failed {
        /// The cycle at which the method was stopped.
        cycle: usize,
        /// Why.
        reason: String,
    },
}

impl Status {
    /// The name used in summary.json and the table.
    pub fn name(&self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::NotConverged { .. } => "not_converged",
            Status::WorseThanClimatology { .. } => "worse_than_climatology",
            Status::InconsistentInnovations { .. } => "inconsistent_innovations",
            Status::Diverged { .. } => "diverged",
            Status::Failed { .. } => "failed",
        }
    }

    /// The cycle a method was stopped at, if it was.
    pub fn stopped_at(&self) -> Option<usize> {
        match self {
            Status::Diverged { cycle, .. } | Status::Failed { cycle, .. } => Some(*cycle),
            _ => None,
        }
    }

    /// A short description for the table and warnings.
    pub fn describe(&self) -> String {
        match self {
            Status::Ok => "ok".into(),
            Status::NotConverged {
                minimisations,
                max_iterations,
                gradient_norm,
            } => format!(
                "not converged ({minimisations} minimisation(s), up to {max_iterations} iterations, gradient norm up to {gradient_norm:.2e})"
            ),
            Status::WorseThanClimatology {
                rmse_a,
                climatology,
                fields: None,
            } => format!(
                "worse than climatology (RMSE {rmse_a:.4} > climatological std {climatology:.4})"
            ),
            Status::WorseThanClimatology {
                rmse_a,
                fields: Some(fields),
                ..
            } => format!(
                "worse than climatology (RMSE / climatological std {rmse_a:.4} > 1 over the fields; worse on {})",
                if fields.is_empty() {
                    "none alone".to_string()
                } else {
                    fields.join(", ")
                }
            ),
            Status::InconsistentInnovations { r_ratio } => format!(
                "inconsistent innovations (Desroziers R / assumed R = {r_ratio:.3}, outside [1/{MAX_DESROZIERS_RATIO}, {MAX_DESROZIERS_RATIO}]: R, B or the inflation is mis-specified)"
            ),
            Status::Diverged { cycle, .. } => format!("diverged at cycle {cycle}"),
            Status::Failed { cycle, .. } => format!("failed at cycle {cycle}"),
        }
    }
}

/// How far the Desroziers estimate of `R` may stray from the assumed one
/// (as a factor on the variance, either way) before a run without a truth
/// calls its analyses inconsistent. Sampling alone moves the ratio by a
/// few per cent over a run of a hundred cycles; a factor 2 on the variance
/// is a mis-specification any centre would act on.
pub const MAX_DESROZIERS_RATIO: f64 = 2.0;

/// The scores of one cycle. With a truth: RMSE, spread and CRPS of the
/// forecast and analysis. Always: the innovation statistics operational
/// centres monitor, over the cycle's observations: observation minus
/// background (`omb`, `d_b = y - H(x_f)`) and minus analysis (`oma`,
/// `d_a = y - H(x_a)`) with their mean and root mean square, and the
/// Desroziers et al. (2005) consistency diagnostics `mean(d_a d_b)` (which
/// estimates the observation-error variance R) and `mean((d_b - d_a) d_b)`
/// (which estimates HBH^T), next to the values the method assumed: the
/// mean R and the mean forecast variance in observation space. NaN where a
/// value is not defined (no truth, no observation, no ensemble).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CycleScores {
    /// Forecast RMSE.
    pub rmse_f: f64,
    /// Analysis RMSE.
    pub rmse_a: f64,
    /// Forecast spread.
    pub spread_f: f64,
    /// Analysis spread.
    pub spread_a: f64,
    /// Analysis CRPS.
    pub crps_a: f64,
    /// Observations assimilated.
    pub obs_count: f64,
    /// Mean of `d_b`.
    pub omb_mean: f64,
    /// Root mean square of `d_b`.
    pub omb_rms: f64,
    /// Mean of `d_a`.
    pub oma_mean: f64,
    /// Root mean square of `d_a`.
    pub oma_rms: f64,
    /// Desroziers estimate of the observation-error variance.
    pub desroziers_r: f64,
    /// Desroziers estimate of the background variance in observation space.
    pub desroziers_hbh: f64,
    /// Mean observation-error variance assumed.
    pub assumed_r: f64,
    /// Mean forecast variance in observation space (ensembles, or a
    /// Gaussian estimate under a selection).
    pub assumed_hbh: f64,
}

impl CycleScores {
    /// Names and CF long names, in the order of [`values`](Self::values).
    pub const NAMES: [(&'static str, &'static str); 14] = [
        ("rmse_f", "RMSE of the forecast mean"),
        ("rmse_a", "RMSE of the analysis mean"),
        ("spread_f", "forecast spread, root of the mean variance"),
        ("spread_a", "analysis spread, root of the mean variance"),
        ("crps_a", "analysis CRPS averaged over variables"),
        ("obs_count", "number of observations assimilated"),
        (
            "omb_mean",
            "mean observation minus background (forecast mean)",
        ),
        ("omb_rms", "root mean square observation minus background"),
        ("oma_mean", "mean observation minus analysis mean"),
        ("oma_rms", "root mean square observation minus analysis"),
        (
            "desroziers_r",
            "Desroziers estimate of the observation-error variance, mean of d_a d_b",
        ),
        (
            "desroziers_hbh",
            "Desroziers estimate of the background variance in observation space, mean of (d_b - d_a) d_b",
        ),
        ("assumed_r", "mean observation-error variance assumed"),
        (
            "assumed_hbh",
            "mean forecast variance in observation space assumed",
        ),
    ];

    /// All NaN.
    pub fn nan() -> Self {
        let n = f64::NAN;
        Self {
            rmse_f: n,
            rmse_a: n,
            spread_f: n,
            spread_a: n,
            crps_a: n,
            obs_count: n,
            omb_mean: n,
            omb_rms: n,
            oma_mean: n,
            oma_rms: n,
            desroziers_r: n,
            desroziers_hbh: n,
            assumed_r: n,
            assumed_hbh: n,
        }
    }

    /// The values in the order of [`NAMES`](Self::NAMES).
    pub fn values(&self) -> [f64; 14] {
        [
            self.rmse_f,
            self.rmse_a,
            self.spread_f,
            self.spread_a,
            self.crps_a,
            self.obs_count,
            self.omb_mean,
            self.omb_rms,
            self.oma_mean,
            self.oma_rms,
            self.desroziers_r,
            self.desroziers_hbh,
            self.assumed_r,
            self.assumed_hbh,
        ]
    }
}

/// The per-cycle scores of one method (scalars only: the fields go to the
/// NetCDF stream as they are made); cycles past a divergence are NaN.
#[derive(Clone, Debug)]
pub struct Series {
    /// One entry per cycle.
    pub scores: Vec<CycleScores>,
}

impl Series {
    fn new(cycles: usize) -> Self {
        Self {
            scores: vec![CycleScores::nan(); cycles],
        }
    }

    /// One score over the cycles, e.g. `series.column(|s| s.rmse_a)`.
    pub fn column(&self, f: impl Fn(&CycleScores) -> f64) -> Vec<f64> {
        self.scores.iter().map(f).collect()
    }
}

/// The RMSE of each field of a state with more than one field, over the
/// field's active points: a pooled RMSE over thickness in metres,
/// concentration and stresses in pascals says little, so models with
/// several fields are also scored field by field.
#[derive(Clone, Debug)]
pub struct FieldScorer {
    fields: Vec<(String, String)>,
    indices: Vec<Vec<usize>>,
    /// Climatological standard deviation of each field (empty until
    /// [`with_climate`](Self::with_climate)).
    climate_std: Vec<f64>,
    /// Divergence limit of each field's analysis RMSE.
    limits: Vec<f64>,
}

impl FieldScorer {
    /// The scorer of `geometry`'s fields; `None` for a single field.
    pub fn new(geometry: &crate::core::Geometry) -> Option<Self> {
        if geometry.fields.len() < 2 {
            return None;
        }
        let mut fields = Vec::new();
        let mut indices = Vec::new();
        for (k, f) in geometry.fields.iter().enumerate() {
            let o = geometry.offset(k);
            fields.push((f.name.clone(), f.units.clone()));
            indices.push(
                (0..f.len())
                    .filter(|&i| f.is_active(i))
                    .map(|i| o + i)
                    .collect(),
            );
        }
        Some(Self {
            fields,
            indices,
            climate_std: Vec::new(),
            limits: Vec::new(),
        })
    }

    /// Each field's climatological standard deviation (root of its mean
    /// variance over its active points) and divergence limit: ten of them,
    /// never below ten times the field's mean initial spread (a short run's
    /// climatology is a few samples; a constant field, such as a parameter
    /// in the state, has none), infinite where both are zero.
    pub fn with_climate(mut self, variance: &DVector<f64>, initial_std: &DVector<f64>) -> Self {
        let mean = |idx: &[usize], v: &DVector<f64>| {
            idx.iter().map(|&i| v[i]).sum::<f64>() / idx.len().max(1) as f64
        };
        self.climate_std = self
            .indices
            .iter()
            .map(|idx| mean(idx, variance).sqrt())
            .collect();
        self.limits = self
            .indices
            .iter()
            .zip(&self.climate_std)
            .map(|(idx, c)| match 10.0 * c.max(mean(idx, initial_std)) {
                0.0 => f64::INFINITY,
                l => l,
            })
            .collect();
        self
    }

    /// Whether the fields have different units (the sea ice's metres and
    /// newtons per metre), so that one RMSE over all variables would add
    /// them: the headline, the status and divergence are then judged field
    /// by field. Lorenz-63's x, y and z share theirs.
    pub fn mixed_units(&self) -> bool {
        self.fields.iter().any(|(_, u)| *u != self.fields[0].1)
    }

    /// Each field's climatological standard deviation (empty before
    /// [`with_climate`](Self::with_climate)).
    pub fn climate_std(&self) -> &[f64] {
        &self.climate_std
    }

    /// `(name, units)` of each field.
    pub fn fields(&self) -> &[(String, String)] {
        &self.fields
    }

    /// The RMSE of `estimate` against `truth` on each field (NaN for a
    /// field without active points).
    pub fn rmse(&self, estimate: &[f64], truth: &[f64]) -> Vec<f64> {
        self.indices
            .iter()
            .map(|idx| {
                let sum: f64 = idx.iter().map(|&i| (estimate[i] - truth[i]).powi(2)).sum();
                (sum / idx.len() as f64).sqrt()
            })
            .collect()
    }
}

/// Time-averaged RMSE of one field.
#[derive(Clone, Debug, Serialize)]
pub struct FieldSummary {
    /// Field name.
    pub field: String,
    /// Its units.
    pub units: String,
    /// Mean forecast RMSE.
    pub rmse_f: Option<f64>,
    /// Mean analysis RMSE.
    pub rmse_a: Option<f64>,
    /// Analysis RMSE of the last cycle run.
    pub rmse_a_last: Option<f64>,
    /// The truth's climatological standard deviation of the field (runs of
    /// at least 10 scored cycles; absent for a constant field).
    pub climatological_std: Option<f64>,
    /// `rmse_a` over `climatological_std`: below 1, the analysis beats a
    /// forecast of the field's climate mean.
    pub rmse_a_normalised: Option<f64>,
}

/// The time-averaged innovation statistics of one observation set.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SetSummary {
    /// The set's name.
    pub set: String,
    /// Mean number of its observations assimilated per cycle.
    pub obs_count: Option<f64>,
    /// Mean observation minus background.
    pub omb_mean: Option<f64>,
    /// Mean root mean square observation minus background.
    pub omb_rms: Option<f64>,
    /// Mean root mean square observation minus analysis.
    pub oma_rms: Option<f64>,
    /// Desroziers estimate of the set's R over its assumed R.
    pub desroziers_r_ratio: Option<f64>,
}

/// The scores of a verification set over the cycles after the burn-in:
/// the error of the estimates seen through the set's operator, against
/// the truth seen through the set's (truth) operator without noise.
#[derive(Clone, Debug, Default, Serialize)]
pub struct VerificationSummary {
    /// The set's name.
    pub set: String,
    /// Its sites per cycle.
    pub obs_count: Option<f64>,
    /// Mean RMSE of `H(forecast mean)` against `H_truth(truth)`.
    pub rmse_f: Option<f64>,
    /// Mean RMSE of `H(analysis mean)` against `H_truth(truth)`.
    pub rmse_a: Option<f64>,
    /// Half-width of the 95 % interval of `rmse_a` (autocorrelation
    /// counted).
    pub rmse_a_ci95: Option<f64>,
}

/// Per verification set: its size and the RMSE of the forecast and
/// analysis means at its sites against the truth's values.
fn check_scores(
    v: &Verification,
    forecast: &DVector<f64>,
    analysis: &DVector<f64>,
    device: &burn::tensor::Device,
) -> Vec<[f64; 3]> {
    let hf = apply_to_state(v.operator.as_ref(), forecast, v.time, device);
    let ha = apply_to_state(v.operator.as_ref(), analysis, v.time, device);
    let mut start = 0;
    v.sets
        .iter()
        .map(|&n| {
            let range = start..start + n;
            start += n;
            if n == 0 {
                return [0.0, f64::NAN, f64::NAN];
            }
            let rms = |h: &DVector<f64>| {
                (range
                    .clone()
                    .map(|i| (h[i] - v.values[i]).powi(2))
                    .sum::<f64>()
                    / n as f64)
                    .sqrt()
            };
            [n as f64, rms(&hf), rms(&ha)]
        })
        .collect()
}

/// Per-set innovation statistics of one cycle, in the order of
/// [`SET_SCORES`]: NaN for a set without observations at the cycle.
fn set_scores(obs: &ObsBatch, d_b: &DVector<f64>, d_a: &DVector<f64>) -> Vec<[f64; 6]> {
    let r = obs.error.std();
    let mut start = 0;
    obs.sets
        .iter()
        .map(|&n| {
            let range = start..start + n;
            start += n;
            if n == 0 || d_b.len() < range.end || d_a.len() < range.end {
                return [0.0, f64::NAN, f64::NAN, f64::NAN, f64::NAN, f64::NAN];
            }
            let m = n as f64;
            let b = d_b.rows(range.start, n);
            let a = d_a.rows(range.start, n);
            let assumed = r.rows(range.start, n).iter().map(|s| s * s).sum::<f64>() / m;
            [
                m,
                b.mean(),
                (b.norm_squared() / m).sqrt(),
                (a.norm_squared() / m).sqrt(),
                a.dot(&b) / m,
                assumed,
            ]
        })
        .collect()
}

/// The names of the per-set scores of [`set_scores`].
const SET_SCORES: [&str; 6] = [
    "obs_count",
    "omb_mean",
    "omb_rms",
    "oma_rms",
    "desroziers_r",
    "assumed_r",
];

/// Time averages over the cycles after the burn-in.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    /// Mean analysis RMSE.
    pub rmse_a: Option<f64>,
    /// Its 95 % confidence half-width (AR(1) effective sample size).
    pub rmse_a_ci95: Option<f64>,
    /// Mean forecast RMSE.
    pub rmse_f: Option<f64>,
    /// Mean analysis spread.
    pub spread_a: Option<f64>,
    /// Mean forecast spread.
    pub spread_f: Option<f64>,
    /// Mean analysis CRPS.
    pub crps_a: Option<f64>,
    /// Spread-skill ratio of the analysis, `sqrt((M+1)/M)`-corrected for ensembles.
    pub spread_skill_a: Option<f64>,
    /// Mean root mean square observation minus background.
    pub omb_rms: Option<f64>,
    /// Mean root mean square observation minus analysis.
    pub oma_rms: Option<f64>,
    /// Desroziers estimate of R over the assumed R (1 when consistent).
    pub desroziers_r_ratio: Option<f64>,
    /// Desroziers estimate of HBH^T over the assumed one (1 when consistent).
    pub desroziers_hbh_ratio: Option<f64>,
    /// Per-field RMSE, for models with more than one field (twins only).
    pub fields: Vec<FieldSummary>,
    /// Innovation statistics of each observation set, for runs with more
    /// than one set.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sets: Vec<SetSummary>,
    /// The scores of each verification set (`assimilate = false`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub verification: Vec<VerificationSummary>,
    /// For models whose fields have different units: the root mean square
    /// over the fields of each field's analysis RMSE over its
    /// climatological standard deviation, a headline free of mixed units
    /// (1: as good as the climate mean).
    pub rmse_a_normalised: Option<f64>,
}

/// The outcome of one method.
#[derive(Clone, Debug)]
pub struct MethodReport {
    /// Label from the file.
    pub label: String,
    /// The method's configuration.
    pub entry: MethodEntry,
    /// How it ended.
    pub status: Status,
    /// Time averages.
    pub summary: Summary,
    /// Per-cycle values (empty with [`RunOptions::drop_series`]).
    pub series: Series,
    /// Analysis rank histogram over the cycles after burn-in (ensembles only).
    pub rank_histogram: Option<RankHistogram>,
    /// One summary per minimisation (variational methods), in cycle order.
    pub minimisations: Vec<MinimisationSummary>,
    /// Per-field RMSE (forecast per field, then analysis per field) at the
    /// cycle each minimisation ended (models with several fields, twins).
    pub window_fields: Vec<(usize, Vec<f64>)>,
    /// Wall time per cycle, seconds (forecast + analysis + scoring).
    pub time_per_cycle_s: f64,
    /// The published score, if the file gives one.
    pub expected: Option<Expected>,
}

impl MethodReport {
    /// Whether the time-averaged analysis RMSE is within the expected
    /// tolerance; `None` without an expectation.
    pub fn meets_expectation(&self) -> Option<bool> {
        let e = self.expected?;
        Some(
            self.summary
                .rmse_a
                .is_some_and(|r| (r - e.rmse_a).abs() <= e.tolerance),
        )
    }
}

/// Everything a run produced.
pub struct Report {
    /// The configuration actually run (after overrides).
    pub config: ExperimentConfig,
    /// The run's timing.
    pub chronology: Chronology,
    /// Whether the run had a truth (scores) or only observations.
    pub has_truth: bool,
    /// The files written, if the run had an output directory.
    pub files: Vec<std::path::PathBuf>,
    /// Things the user should know that are not errors (files removed).
    pub notes: Vec<String>,
    /// The output folder's lock, held until the report is dropped (after
    /// summary.json is written).
    pub lock: Option<crate::io::folder::OutputFolder>,
    /// One report per method, in file order.
    pub methods: Vec<MethodReport>,
    /// The forecast model's name, for output.
    pub model_name: String,
    /// The forecast model's geometry, for output.
    pub geometry: crate::core::Geometry,
    /// Peak resident memory of the process at the end of the run, bytes
    /// (Linux only).
    pub peak_memory_bytes: Option<u64>,
}

/// The peak resident set size of this process so far (`VmHWM` of
/// `/proc/self/status`), in bytes; `None` where the system does not say.
pub fn peak_memory_bytes() -> Option<u64> {
    proc_bytes("/proc/self/status", "VmHWM:")
}

/// A `Name:  value kB` line of a `/proc` file, in bytes.
fn proc_bytes(file: &str, name: &str) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    let line = text.lines().find(|l| l.starts_with(name))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// Applies the command-line overrides to a configuration. A `cycles`
/// override at or below `run.burn_in` shortens the burn-in to a fifth of
/// the run (the CLI says so).
///
/// # Errors
/// An override that is not valid (`--cycles 0`).
pub fn with_options(
    config: &ExperimentConfig,
    options: &RunOptions,
) -> Result<ExperimentConfig, ConfigError> {
    let mut config = config.clone();
    if let Some(c) = options.cycles {
        if c == 0 {
            return Err(config.invalid("--cycles", "must be at least 1, got 0"));
        }
        config = config.with_cycles(c);
    }
    if let Some(s) = options.seed {
        config.run.seed = s;
    }
    if let Some(d) = options.device {
        config.run.device = d;
    }
    // A window or lag longer than the run would never see an analysis: the
    // method would run no minimisation and be scored on its background.
    for (i, m) in config.methods.iter().enumerate() {
        if let Some((key, w)) = m.method.window_cycles()
            && w > config.run.cycles
        {
            return Err(config.invalid(
                &format!("methods[{i}].{key}"),
                format!(
                    "`{}`: a {key} of {w} cycles in a run of {} cycles would never complete one analysis; shorten it or run more cycles",
                    m.label, config.run.cycles
                ),
            ));
        }
    }
    Ok(config)
}

/// Builds the experiment on its device: every model once, the network,
/// and the checks that need them.
///
/// # Errors
/// A device that is not available, or an experiment that does not fit its
/// models.
pub fn build(config: &ExperimentConfig) -> Result<Built, ConfigError> {
    // The run's memory from the sizes the model files give, before any
    // model allocates (the estimate is repeated on the built models).
    if let Some((n, key)) = config.cycled_model().state_size() {
        let table = if config.forecast_model.is_some() {
            "forecast_model"
        } else {
            "model"
        };
        crate::models::check_state_size(n, key, machine_memory())
            .map_err(|e| config.invalid(table, e.to_string()))?;
        let kept = config.run.cycles.saturating_sub(config.run.burn_in) as u64;
        let estimate = memory_estimate_for(config, u64::try_from(n).unwrap_or(u64::MAX), kept);
        refuse_above_machine(config, &estimate)?;
    }
    let device = crate::device::select(config.run.device, config.run.precision)
        .map_err(|e| config.invalid("run.device", e.to_string()))?;
    Built::new(config, device)
}

/// What a run will hold in memory at its peak, roughly, by part: the
/// checks before computing compare it with the machine's memory.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MemoryEstimate {
    /// `(what, bytes)`, largest first.
    pub parts: Vec<(String, u64)>,
}

impl MemoryEstimate {
    /// The sum of the parts.
    pub fn total(&self) -> u64 {
        self.parts
            .iter()
            .fold(0u64, |sum, (_, b)| sum.saturating_add(*b))
    }
}

/// A rough upper estimate of a run's memory: each ensemble and the few
/// copies its update makes (six), the `n x n` matrices of methods that ask
/// for them (three for the climatological covariance, its square root and
/// the eigendecomposition; four for the EKF; three for En4DVar's localised
/// B), the climatology sample, and one output record per file.
pub fn memory_estimate(config: &ExperimentConfig, built: &Built) -> MemoryEstimate {
    memory_estimate_for(
        config,
        built.model().size() as u64,
        built.chronology(config).kept() as u64,
    )
}

/// [`memory_estimate`] for a state of `n` variables and `kept` scored
/// cycles, before any model is built.
fn memory_estimate_for(config: &ExperimentConfig, n: u64, kept: u64) -> MemoryEstimate {
    let f = 8u64;
    let mut parts = Vec::new();
    for m in &config.methods {
        if let Some(members) = m.method.ensemble_size() {
            parts.push((
                format!(
                    "method `{}`: {members} members x {n} variables, with update copies",
                    m.label
                ),
                (6 * members as u64).saturating_mul(n).saturating_mul(f),
            ));
        }
        let copies: u64 = match m.method.name() {
            "ekf" => 4,
            "en4dvar" => 3,
            _ if m.method.needs_climate_covariance() => 3,
            _ => 0,
        };
        if copies > 0 {
            parts.push((
                format!("method `{}`: {copies} matrices of {n} x {n}", m.label),
                copies.saturating_mul(n).saturating_mul(n).saturating_mul(f),
            ));
        }
    }
    let sample = if config
        .methods
        .iter()
        .any(|m| m.method.needs_climate_covariance())
    {
        kept.saturating_mul(n)
            .saturating_mul(f)
            .saturating_add(n.saturating_mul(n).saturating_mul(f))
    } else {
        kept.saturating_mul(n).min(1 << 22) * f
    };
    parts.push(("climatology sample of the truth run".into(), sample));
    if let Some(spec) = &config.initial.sample {
        parts.push((
            format!("initial sample: {} states x {n} variables", spec.count),
            (spec.count as u64).saturating_mul(n).saturating_mul(f),
        ));
    }
    parts.push((
        "truth, forecasts and one output record per file".into(),
        ((4 + config.methods.len() as u64) * 5)
            .saturating_mul(n)
            .saturating_mul(f),
    ));
    parts.sort_by_key(|p| std::cmp::Reverse(p.1));
    MemoryEstimate { parts }
}

/// The machine's total memory (`MemTotal` of `/proc/meminfo`), bytes.
pub fn machine_memory() -> Option<u64> {
    proc_bytes("/proc/meminfo", "MemTotal:")
}

/// Refuses a run whose estimated memory exceeds the machine's, naming
/// what dominates.
///
/// # Errors
/// The estimate above the machine's total memory.
pub fn check_memory(
    config: &ExperimentConfig,
    built: &Built,
) -> Result<MemoryEstimate, ConfigError> {
    let estimate = memory_estimate(config, built);
    refuse_above_machine(config, &estimate)?;
    Ok(estimate)
}

/// The error for an estimate above the machine's memory, naming its
/// largest part.
fn refuse_above_machine(
    config: &ExperimentConfig,
    estimate: &MemoryEstimate,
) -> Result<(), ConfigError> {
    if let Some(total) = machine_memory()
        && estimate.total() > total
    {
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        let (what, bytes) = &estimate.parts[0];
        return Err(config.invalid(
            "methods",
            format!(
                "the run needs about {:.1} GiB and the machine has {:.1} GiB; the largest part is {what} ({:.1} GiB)",
                gib(estimate.total()),
                gib(total),
                gib(*bytes)
            ),
        ));
    }
    Ok(())
}

/// Runs an experiment: builds it; for a twin, runs the truth once for its
/// climatology; then advances the truth (or reads the observations) and
/// every method cycle by cycle, in parallel across methods (each with its
/// own random streams, so the numbers do not depend on the thread count),
/// streaming each cycle to `output` when given.
///
/// # Errors
/// An experiment that cannot be built, a method that cannot start, or an
/// output file that cannot be written.
pub fn run(config: &ExperimentConfig, options: &RunOptions) -> Result<Report, RunError> {
    let config = with_options(config, options)?;
    let built = build(&config)?;
    let model = built.model();
    let chronology = built.chronology(&config);
    let has_truth = built.has_truth();
    check_memory(&config, &built)?;

    if !has_truth
        && let Some((i, m)) = config
            .methods
            .iter()
            .enumerate()
            .find(|(_, m)| m.method.needs_climate())
    {
        return Err(config
            .invalid(
                &format!("methods[{i}]"),
                format!(
                    "`{}` needs the climatology of a truth run, which observations from a file do not have",
                    m.label
                ),
            )
            .into());
    }
    let mut notes = Vec::new();
    if config.initial.sample.is_none()
        && let Some(hint) = config.model.start_hint()
    {
        // Said before the run (a long one) when it reports progress, else
        // with the report's notes.
        if options.progress {
            eprintln!("note: {hint}");
        } else {
            notes.push(hint.to_string());
        }
    }
    // The output files first: a folder that cannot be written, or too
    // small for the run, is reported before any computing.
    let mut outputs = match &options.output {
        Some(target) => Some(output::RunFiles::create(
            target, &config, &built, chronology,
        )?),
        None => None,
    };
    if let Some(files) = &outputs
        && files.disk_bytes > 1 << 30
        && options.progress
    {
        eprintln!(
            "note: the run will write about {:.1} GiB",
            files.disk_bytes as f64 / (1u64 << 30) as f64
        );
    }
    built.draw_initial_sample(&config, options.progress)?;
    let initial = built.initial(&config);
    let climate = if has_truth {
        let covariance = config
            .methods
            .iter()
            .any(|m| m.method.needs_climate_covariance());
        climate(&config, &built, covariance)?
    } else {
        // Never read: no method needs it (checked above) and divergence
        // is judged on non-finite values only.
        ClimateStats::from_moments(initial.mean.clone(), initial.std.map(|s| s * s))
    };
    // The climatological spread of the truth, once enough of it was seen
    // to estimate it (at least 10 cycles after the burn-in).
    let climate_std = climate.variance.mean().sqrt();
    let climatology_std = (has_truth && chronology.kept() >= 10).then_some(climate_std);
    // Divergence: ten climatological standard deviations, but never below
    // ten times the initial spread or the observation error, so that a
    // short run (whose climatology is a few samples) is not held to a
    // limit near zero.
    let divergence_rmse = match (config.run.divergence_rmse, has_truth) {
        (Some(d), _) => d,
        // Fields of different units: each against its own limit (MethodRun).
        (None, true) if FieldScorer::new(model.geometry()).is_some_and(|s| s.mixed_units()) => {
            f64::INFINITY
        }
        (None, true) => {
            let floor = initial.std.mean().max(built.source.typical_error_std());
            10.0 * climate_std.max(floor)
        }
        (None, false) => f64::INFINITY,
    };

    let mut runs = Vec::with_capacity(config.methods.len());
    for entry in &config.methods {
        let writer = match &outputs {
            Some(files) => Some(files.method(entry)?),
            None => None,
        };
        runs.push(MethodRun::start(
            &config,
            entry,
            &built,
            &climate,
            &initial,
            writer,
            !options.drop_series,
        )?);
    }

    let mut progress = Progress::new(options.progress, chronology.cycles);
    let mut truth_run = has_truth.then(|| TruthRun::new(&config, &built));
    for k in 0..chronology.cycles {
        let time = chronology.time(k);
        let (truth, batch, check) = match (&mut truth_run, &built.source) {
            (Some(t), _) => {
                let x = t.advance();
                let y = t.observe(&x);
                let check = t.verify(&x);
                (Some(x), y, check)
            }
            (None, ObsSource::File(f)) => (None, f.batch(k, time), None),
            (None, ObsSource::Twin(_)) => unreachable!("a twin has a truth run"),
        };
        if let Some(files) = &mut outputs {
            files.record(k, time, truth.as_ref(), &batch)?;
        }
        runs.par_iter_mut()
            .filter(|r| r.status.stopped_at().is_none())
            .for_each(|r| r.cycle(k, truth.as_ref(), &batch, check.as_ref(), divergence_rmse));
        for r in &mut runs {
            if let Some(e) = r.write_error.take() {
                return Err(e.into());
            }
        }
        progress.cycle(k + 1, &runs);
    }
    progress.finish();
    let mut files = Vec::new();
    let mut lock = None;
    if let Some(mut f) = outputs {
        notes.append(&mut f.notes);
        let (paths, l) = f.finish()?;
        files.extend(paths);
        lock = Some(l);
    }
    let mut methods = Vec::with_capacity(runs.len());
    for r in runs {
        let (report, path) = r.finish(has_truth, climatology_std)?;
        files.extend(path);
        methods.push(report);
    }
    // The lock is released by the caller once summary.json is written.
    Ok(Report {
        model_name: model.name().to_string(),
        geometry: model.geometry().clone(),
        config,
        chronology,
        has_truth,
        files,
        notes,
        lock,
        methods,
        peak_memory_bytes: peak_memory_bytes(),
    })
}

/// Progress of the cycling: a bar when stderr is a terminal; otherwise
/// (batch jobs, `nohup`, logs) one line every [`PROGRESS_EVERY`], naming
/// the methods still running and those stopped.
struct Progress {
    bar: Option<ProgressBar>,
    lines: bool,
    cycles: usize,
    started: Instant,
    last_line: Instant,
}

/// Interval between progress lines when stderr is not a terminal.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

impl Progress {
    fn new(show: bool, cycles: usize) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let bar = (show && terminal).then(|| {
            let bar =
                ProgressBar::with_draw_target(Some(cycles as u64), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:40}] {pos}/{len} cycles ({eta} left) {msg}",
                )
                .expect("valid template"),
            );
            bar
        });
        Self {
            bar,
            lines: show && !terminal,
            cycles,
            started: Instant::now(),
            last_line: Instant::now(),
        }
    }

    fn cycle(&mut self, done: usize, runs: &[MethodRun<'_>]) {
        let stopped: Vec<&str> = runs
            .iter()
            .filter(|r| r.status.stopped_at().is_some())
            .map(|r| r.entry.label.as_str())
            .collect();
        let running = runs.len() - stopped.len();
        let stopped_text = if stopped.is_empty() {
            String::new()
        } else {
            format!(", stopped: {}", stopped.join(", "))
        };
        if let Some(bar) = &self.bar {
            bar.set_position(done as u64);
            bar.set_message(format!("{running} method(s) running{stopped_text}"));
        } else if self.lines && (self.last_line.elapsed() >= PROGRESS_EVERY || done == self.cycles)
        {
            self.last_line = Instant::now();
            let elapsed = self.started.elapsed().as_secs_f64();
            let left = elapsed / done as f64 * (self.cycles - done) as f64;
            eprintln!(
                "rime: cycle {done}/{} ({:.0} %), {elapsed:.0} s elapsed, about {left:.0} s left; {running} method(s) running{stopped_text}",
                self.cycles,
                100.0 * done as f64 / self.cycles as f64
            );
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// One method being cycled: its filter, scores and output stream. A
/// failure inside the method (divergence, a failed decomposition) ends it
/// with `Status::Diverged` while the others go on.
struct MethodRun<'a> {
    entry: &'a MethodEntry,
    expected: Option<Expected>,
    context: Context<'a>,
    filter: Box<dyn Filter>,
    series: Series,
    keep_series: bool,
    averages: Averages,
    scorer: Option<FieldScorer>,
    /// Divergence is judged field by field (several fields, a truth, no
    /// `run.divergence_rmse`): a limit in mixed units means nothing.
    field_divergence: bool,
    /// Per-field scores of the latest cycle.
    field_scores: Vec<f64>,
    /// Per-field scores at the cycles where a minimisation ended.
    window_fields: Vec<(usize, Vec<f64>)>,
    histogram: Option<RankHistogram>,
    burn_in: usize,
    status: Status,
    elapsed: Duration,
    cycles_run: usize,
    minimisations_seen: usize,
    writer: Option<output::MethodWriter>,
    write_error: Option<IoError>,
    /// The names of the observation sets.
    set_names: Vec<String>,
    /// The verification sets' names.
    check_names: Vec<String>,
}

impl<'a> MethodRun<'a> {
    fn start(
        config: &'a ExperimentConfig,
        entry: &'a MethodEntry,
        built: &'a Built,
        climate: &'a ClimateStats,
        initial: &Gaussian,
        writer: Option<output::MethodWriter>,
        keep_series: bool,
    ) -> Result<Self, DaError> {
        let model = built.model();
        // The random streams are keyed by the method's settings, not its
        // label: renaming a label changes nothing, and two entries with the
        // same settings give the same numbers. Where the LETKF runs
        // (`engine`) is not part of the key: both engines draw the same.
        let settings = serde_json::to_string(&entry.method.without_engine())
            .expect("method settings serialise");
        let name = format!("method/{settings}");
        let chronology = built.chronology(config);
        let context = Context {
            model,
            forecaster: Forecaster {
                device: built.device.clone(),
                host_path: config.run.host_fast_path,
                noise_stream: crate::rng::key(config.run.seed, &format!("{name}/model-noise")),
            },
            steps_per_cycle: chronology.steps_per_cycle,
            climate,
        };
        let scorer = FieldScorer::new(model.geometry())
            .map(|s| s.with_climate(&context.climate.variance, &initial.std));
        let field_divergence = scorer.as_ref().is_some_and(FieldScorer::mixed_units)
            && built.has_truth()
            && config.run.divergence_rmse.is_none();
        let filter = entry
            .method
            .build(&context, initial, stream(config.run.seed, &name))?;
        Ok(Self {
            entry,
            expected: config.expected.get(&entry.label).copied(),
            context,
            filter,
            series: Series::new(if keep_series { chronology.cycles } else { 0 }),
            keep_series,
            averages: Averages::new(scorer.as_ref().map_or(0, |s| 2 * s.fields().len())),
            field_scores: Vec::new(),
            window_fields: Vec::new(),
            scorer,
            field_divergence,
            histogram: entry.method.ensemble_size().map(RankHistogram::new),
            burn_in: chronology.burn_in,
            status: Status::Ok,
            elapsed: Duration::ZERO,
            cycles_run: 0,
            minimisations_seen: 0,
            writer,
            write_error: None,
            set_names: config
                .observations
                .iter()
                .filter(|o| o.assimilated())
                .map(|o| o.name.clone())
                .collect(),
            check_names: config
                .observations
                .iter()
                .filter(|o| !o.assimilated())
                .map(|o| o.name.clone())
                .collect(),
        })
    }

    /// Forecast, analysis, scores and output of cycle `k`.
    fn cycle(
        &mut self,
        k: usize,
        truth: Option<&DVector<f64>>,
        obs: &ObsBatch,
        check: Option<&Verification>,
        limit: f64,
    ) {
        let start = Instant::now();
        let time = k as f64 * self.context.interval();
        let mut scores = CycleScores::nan();
        let device = self.context.device().clone();
        let outcome = self.filter.forecast(&self.context, time).map(|()| {
            // Only the mean, spread and RMSE of the forecast are kept.
            let f = Moments::of(self.filter.estimate(), truth, None, false);
            scores.rmse_f = f.rmse;
            scores.spread_f = f.spread;
            let (d_b, hbh) = innovation(self.filter.estimate(), obs, &device, true);
            (f, d_b, hbh)
        });
        let outcome = outcome.and_then(|(f, d_b, hbh)| {
            self.filter.analyse(&self.context, obs)?;
            Ok((f, d_b, hbh))
        });
        self.cycles_run = k + 1;
        let (forecast, d_b, hbh) = match outcome {
            Ok(v) => v,
            Err(e) => {
                // A decomposition that fails on an ensemble gone non-finite,
                // astronomically large, or spread a thousand times beyond
                // the scale of the observations (their rms value plus their
                // error) is the divergence's symptom, not a failure of its
                // own: without a truth no RMSE limit sees it first.
                let blown_up = || {
                    let spread = match self.filter.estimate() {
                        crate::da::Estimate::Ensemble(e) => {
                            if e.iter().any(|v| !(v.abs() < 1e100)) {
                                return true;
                            }
                            let m = e.ncols().max(2) as f64;
                            let var: f64 = e
                                .row_iter()
                                .map(|r| {
                                    let mean = r.mean();
                                    r.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (m - 1.0)
                                })
                                .sum();
                            (var / e.nrows().max(1) as f64).sqrt()
                        }
                        crate::da::Estimate::Gaussian { mean, variance } => {
                            if mean.iter().any(|v| !(v.abs() < 1e100)) {
                                return true;
                            }
                            variance.mean().sqrt()
                        }
                    };
                    if obs.values.is_empty() {
                        return false;
                    }
                    let p = obs.values.len() as f64;
                    let rms = (obs
                        .values
                        .iter()
                        .filter(|v| v.is_finite())
                        .map(|v| v * v)
                        .sum::<f64>()
                        / p)
                        .sqrt();
                    let sigma = obs.error.std().mean();
                    !(spread <= 1e3 * (rms + sigma))
                };
                self.status = match e {
                    DaError::Forecast(f) => Status::Diverged {
                        cycle: k,
                        reason: format!("the forecast blew up: {f}"),
                    },
                    DaError::Numerical(what) if blown_up() => Status::Diverged {
                        cycle: k,
                        reason: format!(
                            "the ensemble blew up (non-finite or beyond 1e100) and the analysis broke down in {what}"
                        ),
                    },
                    other => Status::Failed {
                        cycle: k,
                        reason: other.to_string(),
                    },
                };
                self.elapsed += start.elapsed();
                return;
            }
        };
        let histogram = if k >= self.burn_in {
            self.histogram.as_mut()
        } else {
            None
        };
        let a = Moments::of(self.filter.estimate(), truth, histogram, true);
        self.field_scores.clear();
        if let (Some(scorer), Some(t)) = (&self.scorer, truth) {
            self.field_scores
                .extend(scorer.rmse(forecast.mean.as_slice(), t.as_slice()));
            self.field_scores
                .extend(scorer.rmse(a.mean.as_slice(), t.as_slice()));
        }
        scores.rmse_a = a.rmse;
        scores.spread_a = a.spread;
        scores.crps_a = a.crps;
        let (d_a, _) = innovation(self.filter.estimate(), obs, &device, false);
        innovation_scores(&mut scores, obs, &d_b, &d_a, hbh);
        if k >= self.burn_in && obs.sets.len() > 1 {
            self.averages.push_sets(&set_scores(obs, &d_b, &d_a));
        }
        if let (Some(v), true) = (check, k >= self.burn_in) {
            self.averages
                .push_checks(&check_scores(v, &forecast.mean, &a.mean, &device));
        }
        if self.keep_series {
            self.series.scores[k] = scores;
        }
        if k >= self.burn_in {
            self.averages.push(&scores, &self.field_scores);
        }
        // One entry per minimisation (as the minimisation summaries), so
        // the record grows with windows, not cycles.
        if !self.field_scores.is_empty()
            && self
                .filter
                .minimisations()
                .last()
                .is_some_and(|m| m.cycle == k)
        {
            self.window_fields.push((k, self.field_scores.clone()));
        }

        if let Some(w) = &mut self.writer {
            let members = match self.filter.estimate() {
                Estimate::Ensemble(e) if w.has_members() => Some(e),
                _ => None,
            };
            let new = &self.filter.minimisations()[self.minimisations_seen..];
            let minimisation = new.iter().rev().find(|m| m.cycle == k).cloned();
            self.minimisations_seen += new.len();
            let record = output::CycleRecord {
                time: obs.time,
                forecast: &forecast,
                analysis: &a,
                members,
                scores: &scores,
                field_scores: &self.field_scores,
                minimisation: minimisation.as_ref(),
            };
            if let Err(e) = w.record(k, &record) {
                self.write_error = Some(e);
            }
        }
        self.elapsed += start.elapsed();

        if let (true, Some(scorer)) = (self.field_divergence, &self.scorer) {
            let nf = scorer.fields().len();
            let over = scorer
                .fields()
                .iter()
                .zip(&scorer.limits)
                .zip(self.field_scores.get(nf..).unwrap_or(&[]))
                .find(|((_, l), e)| **e > **l);
            if let Some((((name, units), l), e)) = over {
                self.status = Status::Diverged {
                    cycle: k,
                    reason: format!(
                        "analysis RMSE of `{name}` {e:.4e} {units} exceeds its divergence limit {l:.4e} (ten climatological standard deviations of the field)"
                    ),
                };
                return;
            }
        }
        let finite = a.mean.iter().all(|v| v.is_finite());
        if !finite || !(a.rmse.is_nan() || a.rmse <= limit) {
            self.status = Status::Diverged {
                cycle: k,
                reason: if finite {
                    format!(
                        "analysis RMSE {:.4e} exceeds the divergence limit {limit:.4}",
                        a.rmse
                    )
                } else {
                    "the analysis mean is not finite".into()
                },
            };
        }
    }

    fn finish(
        mut self,
        has_truth: bool,
        climatology: Option<f64>,
    ) -> Result<(MethodReport, Option<std::path::PathBuf>), IoError> {
        let summary = if self.status.stopped_at().is_none() {
            let mut s = summarise(&self.averages, self.entry.method.ensemble_size(), has_truth);
            s.sets = self.averages.set_summaries(&self.set_names);
            s.verification = self.averages.check_summaries(&self.check_names);
            if let (Some(scorer), true) = (&self.scorer, has_truth) {
                let nf = scorer.fields().len();
                let finite = |x: f64| x.is_finite().then_some(x);
                s.fields = scorer
                    .fields()
                    .iter()
                    .enumerate()
                    .map(|(i, (field, units))| {
                        let rmse_a = finite(self.averages.fields[nf + i].mean_with_ci().mean);
                        // As the one-field climatology: only once enough of
                        // the truth was seen, and not for a constant field.
                        let climatological_std = scorer
                            .climate_std()
                            .get(i)
                            .copied()
                            .filter(|c| climatology.is_some() && *c > 0.0);
                        FieldSummary {
                            field: field.clone(),
                            units: units.clone(),
                            rmse_f: finite(self.averages.fields[i].mean_with_ci().mean),
                            rmse_a,
                            rmse_a_last: self.field_scores.get(nf + i).copied().and_then(finite),
                            climatological_std,
                            rmse_a_normalised: rmse_a.zip(climatological_std).map(|(r, c)| r / c),
                        }
                    })
                    .collect();
                let normalised: Vec<f64> = s
                    .fields
                    .iter()
                    .filter_map(|f| f.rmse_a_normalised)
                    .collect();
                if scorer.mixed_units() && !normalised.is_empty() {
                    s.rmse_a_normalised = Some(
                        (normalised.iter().map(|x| x * x).sum::<f64>() / normalised.len() as f64)
                            .sqrt(),
                    );
                }
            }
            s
        } else {
            Summary::default()
        };
        if self.status == Status::Ok {
            let unconverged: Vec<_> = self
                .filter
                .minimisations()
                .iter()
                .filter(|m| !m.converged)
                .collect();
            let is_climatology = self.entry.method.name() == "climatology";
            if let Some(normalised) = summary.rmse_a_normalised {
                // Several fields: judged without mixing their units.
                if !is_climatology && normalised > 1.0 {
                    self.status = Status::WorseThanClimatology {
                        rmse_a: normalised,
                        climatology: 1.0,
                        fields: Some(
                            summary
                                .fields
                                .iter()
                                .filter(|f| f.rmse_a_normalised.is_some_and(|x| x > 1.0))
                                .map(|f| f.field.clone())
                                .collect(),
                        ),
                    };
                }
            } else if let (Some(rmse_a), Some(clim)) = (summary.rmse_a, climatology)
                && !is_climatology
                && rmse_a > clim
            {
                self.status = Status::WorseThanClimatology {
                    rmse_a,
                    climatology: clim,
                    fields: None,
                };
            } else if let Some(r_ratio) = summary
                .sets
                .iter()
                .filter_map(|s| s.desroziers_r_ratio)
                .chain(summary.desroziers_r_ratio)
                .max_by(|a, b| a.ln().abs().total_cmp(&b.ln().abs()))
                && !has_truth
                && !is_climatology
                && self.entry.method.name() != "free"
                && !(1.0 / MAX_DESROZIERS_RATIO..=MAX_DESROZIERS_RATIO).contains(&r_ratio)
            {
                self.status = Status::InconsistentInnovations { r_ratio };
            } else if !unconverged.is_empty() {
                self.status = Status::NotConverged {
                    minimisations: unconverged.len(),
                    max_iterations: unconverged.iter().map(|m| m.iterations).max().unwrap_or(0),
                    gradient_norm: unconverged
                        .iter()
                        .map(|m| m.last.gradient_norm)
                        .fold(0.0, f64::max),
                };
            }
        }
        let path = match self.writer {
            Some(w) => Some(w.finish(&self.status, self.histogram.as_ref())?),
            None => None,
        };
        let report = MethodReport {
            label: self.entry.label.clone(),
            entry: self.entry.clone(),
            status: self.status,
            summary,
            series: self.series,
            rank_histogram: self.histogram,
            minimisations: self.filter.minimisations().to_vec(),
            window_fields: self.window_fields,
            time_per_cycle_s: self.elapsed.as_secs_f64() / self.cycles_run.max(1) as f64,
            expected: self.expected,
        };
        Ok((report, path))
    }
}

/// Mean and standard deviation of an estimate, and its scores against the
/// truth (NaN without one; the CRPS also NaN unless asked for).
pub struct Moments {
    /// Mean state.
    pub mean: DVector<f64>,
    /// Standard deviation of each variable.
    pub std: DVector<f64>,
    /// RMSE of the mean.
    pub rmse: f64,
    /// Root of the mean variance.
    pub spread: f64,
    /// CRPS averaged over variables.
    pub crps: f64,
}

impl Moments {
    fn of(
        estimate: Estimate<'_>,
        truth: Option<&DVector<f64>>,
        histogram: Option<&mut RankHistogram>,
        with_crps: bool,
    ) -> Self {
        let truth = truth.map(|t| t.as_slice());
        let crps_truth = truth.filter(|_| with_crps);
        match estimate {
            Estimate::Ensemble(e) => {
                let stats = metrics::ensemble_stats(e, truth, with_crps, histogram);
                Moments {
                    rmse: truth.map_or(f64::NAN, |t| metrics::rmse(stats.mean.as_slice(), t)),
                    spread: metrics::spread_from_variance(stats.variance.as_slice()),
                    crps: stats.crps,
                    std: stats.variance.map(f64::sqrt),
                    mean: stats.mean,
                }
            }
            Estimate::Gaussian { mean, variance } => {
                let std = variance.map(|v| v.max(0.0).sqrt());
                let crps = crps_truth.map_or(f64::NAN, |t| {
                    t.iter()
                        .enumerate()
                        .map(|(i, &y)| metrics::crps_gaussian(mean[i], std[i], y))
                        .sum::<f64>()
                        / t.len() as f64
                });
                Moments {
                    rmse: truth.map_or(f64::NAN, |t| metrics::rmse(mean.as_slice(), t)),
                    spread: metrics::spread_from_variance(variance.as_slice()),
                    crps,
                    std,
                    mean: mean.clone(),
                }
            }
        }
    }
}

/// `y - H(mean)` of an estimate and, if `variance`, the mean variance of
/// the estimate in observation space (ensembles: of `H` of the members;
/// Gaussian estimates under a selection: of the selected variables).
fn innovation(
    estimate: Estimate<'_>,
    obs: &ObsBatch,
    device: &burn::tensor::Device,
    variance: bool,
) -> (DVector<f64>, f64) {
    if obs.is_empty() {
        return (DVector::zeros(0), f64::NAN);
    }
    let op = obs.operator.as_ref();
    match estimate {
        Estimate::Ensemble(e) => {
            let he = obs.apply_to_ensemble(e, device);
            let mean = metrics::ensemble_mean(&he);
            let hbh = if variance {
                metrics::ensemble_variance(&he).mean()
            } else {
                f64::NAN
            };
            (&obs.values - mean, hbh)
        }
        Estimate::Gaussian { mean, variance: v } => {
            let hx = apply_to_state(op, mean, obs.time, device);
            let hbh = match op.linear().and_then(|l| l.selected_indices()) {
                Some(idx) if variance => idx.iter().map(|&i| v[i]).sum::<f64>() / idx.len() as f64,
                _ => f64::NAN,
            };
            (&obs.values - hx, hbh)
        }
    }
}

fn innovation_scores(
    s: &mut CycleScores,
    obs: &ObsBatch,
    d_b: &DVector<f64>,
    d_a: &DVector<f64>,
    hbh: f64,
) {
    let p = obs.len();
    s.obs_count = p as f64;
    if p == 0 {
        return;
    }
    let m = p as f64;
    s.omb_mean = d_b.mean();
    s.omb_rms = (d_b.norm_squared() / m).sqrt();
    s.oma_mean = d_a.mean();
    s.oma_rms = (d_a.norm_squared() / m).sqrt();
    s.desroziers_r = d_a.dot(d_b) / m;
    s.desroziers_hbh = (d_b - d_a).dot(d_b) / m;
    s.assumed_r = obs.error.mean_variance();
    s.assumed_hbh = hbh;
}

/// Running sums of one score over the cycles after burn-in, enough for
/// its mean, the AR(1) confidence interval of [`metrics::mean_with_ci`]
/// and the mean of its finite values, in O(1) memory. Values are shifted
/// by the first one before squaring, so the variance does not lose digits
/// to cancellation.
#[derive(Clone, Copy, Debug, Default)]
struct Running {
    n: usize,
    shift: f64,
    sum: f64,
    sum_sq: f64,
    sum_lag: f64,
    first: f64,
    last: f64,
    finite_n: usize,
    finite_sum: f64,
}

impl Running {
    fn push(&mut self, x: f64) {
        if x.is_finite() {
            self.finite_n += 1;
            self.finite_sum += x;
        }
        if self.n == 0 {
            self.shift = x;
            self.first = 0.0;
        } else {
            self.sum_lag += self.last * (x - self.shift);
        }
        let y = x - self.shift;
        self.n += 1;
        self.sum += x;
        self.sum_sq += y * y;
        self.last = y;
    }

    /// As [`metrics::mean_with_ci`] over the pushed values.
    fn mean_with_ci(&self) -> MeanWithCi {
        let n = self.n;
        if n == 0 {
            return metrics::mean_with_ci(&[]);
        }
        let nf = n as f64;
        let mean = self.sum / nf;
        if n < 3 || !mean.is_finite() {
            return MeanWithCi {
                mean,
                ci95: f64::NAN,
                autocorrelation: f64::NAN,
                effective_samples: nf,
            };
        }
        // Centred sums from the shifted ones (m: the shifted mean).
        let m = mean - self.shift;
        let var = (self.sum_sq / nf - m * m).max(0.0);
        let rho = if var > 0.0 {
            let shifted_sum = self.sum - self.shift * nf;
            let cov =
                (self.sum_lag - m * (shifted_sum - self.last) - m * (shifted_sum - self.first)
                    + (nf - 1.0) * m * m)
                    / nf;
            (cov / var).clamp(0.0, 0.99)
        } else {
            0.0
        };
        let effective = (nf * (1.0 - rho) / (1.0 + rho)).max(1.0);
        let sample_var = var * nf / (nf - 1.0);
        MeanWithCi {
            mean,
            ci95: 1.96 * (sample_var / effective).sqrt(),
            autocorrelation: rho,
            effective_samples: effective,
        }
    }

    /// The mean of the finite values (cycles without observations skipped).
    fn finite_mean(&self) -> Option<f64> {
        (self.finite_n > 0).then(|| self.finite_sum / self.finite_n as f64)
    }
}

/// Running sums of every score of [`CycleScores`], after burn-in.
#[derive(Clone, Debug, Default)]
struct Averages {
    scores: [Running; 14],
    /// Per-field RMSE (forecast per field, then analysis per field).
    fields: Vec<Running>,
    /// Per observation set, the scores of [`SET_SCORES`].
    sets: Vec<[Running; 6]>,
    /// Per verification set: count, forecast and analysis RMSE at its
    /// sites.
    checks: Vec<[Running; 3]>,
}

impl Averages {
    fn new(fields: usize) -> Self {
        Self {
            fields: vec![Running::default(); fields],
            ..Self::default()
        }
    }

    fn push(&mut self, s: &CycleScores, fields: &[f64]) {
        for (r, v) in self.scores.iter_mut().zip(s.values()) {
            r.push(v);
        }
        if fields.len() == self.fields.len() {
            for (r, &v) in self.fields.iter_mut().zip(fields) {
                r.push(v);
            }
        }
    }

    fn push_sets(&mut self, sets: &[[f64; 6]]) {
        if self.sets.len() < sets.len() {
            self.sets.resize(sets.len(), Default::default());
        }
        for (r, v) in self.sets.iter_mut().zip(sets) {
            for (ri, vi) in r.iter_mut().zip(v) {
                ri.push(*vi);
            }
        }
    }

    fn push_checks(&mut self, checks: &[[f64; 3]]) {
        if self.checks.len() < checks.len() {
            self.checks.resize(checks.len(), Default::default());
        }
        for (r, v) in self.checks.iter_mut().zip(checks) {
            for (ri, vi) in r.iter_mut().zip(v) {
                ri.push(*vi);
            }
        }
    }

    /// The summaries of the verification sets named `names`.
    fn check_summaries(&self, names: &[String]) -> Vec<VerificationSummary> {
        names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let at = |j: usize| self.checks.get(i).and_then(|r| r[j].finite_mean());
                let ci = |j: usize| {
                    self.checks
                        .get(i)
                        .map(|r| r[j].mean_with_ci().ci95)
                        .filter(|v| v.is_finite())
                };
                VerificationSummary {
                    set: name.clone(),
                    obs_count: at(0),
                    rmse_f: at(1),
                    rmse_a: at(2),
                    rmse_a_ci95: ci(2),
                }
            })
            .collect()
    }

    /// The summaries of the observation sets named `names`.
    fn set_summaries(&self, names: &[String]) -> Vec<SetSummary> {
        if names.len() < 2 {
            return Vec::new();
        }
        let at = |i: usize, name: &str| {
            let j = SET_SCORES.iter().position(|n| *n == name).unwrap_or(0);
            self.sets.get(i).and_then(|r| r[j].finite_mean())
        };
        names
            .iter()
            .enumerate()
            .map(|(i, name)| SetSummary {
                set: name.clone(),
                obs_count: at(i, "obs_count"),
                omb_mean: at(i, "omb_mean"),
                omb_rms: at(i, "omb_rms"),
                oma_rms: at(i, "oma_rms"),
                desroziers_r_ratio: match (at(i, "desroziers_r"), at(i, "assumed_r")) {
                    (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                    _ => None,
                },
            })
            .collect()
    }

    /// The running sums of the score named `name` in [`CycleScores::NAMES`].
    fn of(&self, name: &str) -> &Running {
        let i = CycleScores::NAMES
            .iter()
            .position(|(n, _)| *n == name)
            .expect("a score name");
        &self.scores[i]
    }
}

fn summarise(averages: &Averages, members: Option<usize>, has_truth: bool) -> Summary {
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    let finite = |x: f64| x.is_finite().then_some(x);
    let mean = |name: &str| averages.of(name).mean_with_ci().mean;
    let innovation = |name: &str| averages.of(name).finite_mean();
    let spread_a = mean("spread_a");
    let mut summary = Summary {
        spread_a: finite(spread_a),
        spread_f: finite(mean("spread_f")),
        omb_rms: innovation("omb_rms"),
        oma_rms: innovation("oma_rms"),
        desroziers_r_ratio: ratio(innovation("desroziers_r"), innovation("assumed_r")),
        desroziers_hbh_ratio: ratio(innovation("desroziers_hbh"), innovation("assumed_hbh")),
        ..Summary::default()
    };
    if has_truth {
        let rmse_a = averages.of("rmse_a").mean_with_ci();
        summary.rmse_a = finite(rmse_a.mean);
        summary.rmse_a_ci95 = finite(rmse_a.ci95);
        summary.rmse_f = finite(mean("rmse_f"));
        summary.crps_a = finite(mean("crps_a"));
        summary.spread_skill_a = finite(match members {
            Some(m) => metrics::spread_skill(spread_a, rmse_a.mean, m),
            None => spread_a / rmse_a.mean,
        });
    }
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_sums_give_the_two_pass_mean_and_interval() {
        // An AR(1) series around 5 with autocorrelation 0.6.
        let mut rng = crate::rng::stream(1, "ar1");
        let z = crate::rng::standard_normal(&mut rng, 2000);
        let mut x = vec![5.0];
        for k in 1..2000 {
            x.push(5.0 + 0.6 * (x[k - 1] - 5.0) + 0.1 * z[k]);
        }
        for n in [0, 1, 2, 3, 10, 2000] {
            let mut r = Running::default();
            for &v in &x[..n] {
                r.push(v);
            }
            let (a, b) = (r.mean_with_ci(), metrics::mean_with_ci(&x[..n]));
            let close =
                |p: f64, q: f64| (p.is_nan() && q.is_nan()) || (p - q).abs() <= 1e-10 * q.abs();
            assert!(close(a.mean, b.mean), "n={n}: {} vs {}", a.mean, b.mean);
            assert!(close(a.ci95, b.ci95), "n={n}: {} vs {}", a.ci95, b.ci95);
            assert!(close(a.autocorrelation, b.autocorrelation), "n={n}");
        }
        let mut r = Running::default();
        for v in [1.0, f64::NAN, 3.0] {
            r.push(v);
        }
        assert!(r.mean_with_ci().mean.is_nan());
        assert_eq!(r.finite_mean(), Some(2.0));
    }
}
