//! Building an experiment (models, network, projection: once per run, on
//! the chosen device) and simulating its twin: a truth trajectory and noisy
//! observations from a seed.

use std::path::Path;

use burn::tensor::Device;
use nalgebra::{DMatrix, DVector};

use super::config::{ConfigError, ExperimentConfig};
use crate::core::{Forecaster, Geometry, Model, ObsBatch};
use crate::da::{ClimateStats, Gaussian};
use crate::obs::file::FileObservations;
use crate::obs::network::ObsNetwork;
use crate::obs::set::{SetNetwork, Stack};
use crate::rng::{Rng, stream};

/// Observation timing: the model time step, the steps between observations,
/// the number of cycles and the burn-in excluded from averages.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Chronology {
    /// Forecast-model time step.
    pub dt: f64,
    /// Forecast-model steps between observations.
    pub steps_per_cycle: usize,
    /// Number of observation cycles.
    pub cycles: usize,
    /// Leading cycles left out of time averages.
    pub burn_in: usize,
}

impl Chronology {
    /// Time between observations.
    pub fn interval(&self) -> f64 {
        self.dt * self.steps_per_cycle as f64
    }

    /// The time of observation `k` (the first is one interval after 0).
    pub fn time(&self, k: usize) -> f64 {
        (k + 1) as f64 * self.interval()
    }

    /// The cycles after the burn-in, which time averages use.
    pub fn kept(&self) -> usize {
        self.cycles.saturating_sub(self.burn_in)
    }
}

/// How a truth state becomes a forecast-model state: field by field, by
/// name, copied where the shapes agree and block-averaged where the truth
/// is an integer multiple finer on every axis (a coarser forecast grid).
#[derive(Clone, Debug, PartialEq)]
pub struct Projection {
    /// Per model field: the truth field's offset, its shape, the model
    /// field's offset and shape.
    parts: Vec<(usize, Vec<usize>, usize, Vec<usize>)>,
    n_model: usize,
}

impl Projection {
    /// The projection from `truth` onto `model`; a model field finds the
    /// truth field of the same name (or the only truth field when both
    /// geometries have one).
    ///
    /// # Errors
    /// A model field without a counterpart, or shapes that are not
    /// integer multiples.
    pub fn new(truth: &Geometry, model: &Geometry) -> Result<Self, String> {
        let mut parts = Vec::new();
        for (k, f) in model.fields.iter().enumerate() {
            let found = truth.field(&f.name).or_else(|| {
                (truth.fields.len() == 1 && model.fields.len() == 1).then(|| (0, &truth.fields[0]))
            });
            let Some((kt, t)) = found else {
                return Err(format!(
                    "the forecast model's field `{}` has no counterpart in the truth (fields: {})",
                    f.name,
                    truth
                        .fields
                        .iter()
                        .map(|t| t.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            };
            let fits = t.shape.len() == f.shape.len()
                && t.shape
                    .iter()
                    .zip(&f.shape)
                    .all(|(a, b)| *b > 0 && a % b == 0);
            if !fits {
                return Err(format!(
                    "field `{}`: truth shape {:?} is not an integer multiple of the forecast shape {:?}",
                    f.name, t.shape, f.shape
                ));
            }
            parts.push((
                truth.offset(kt),
                t.shape.clone(),
                model.offset(k),
                f.shape.clone(),
            ));
        }
        Ok(Self {
            parts,
            n_model: model.size(),
        })
    }

    /// Projects one truth state.
    pub fn apply(&self, truth: &[f64]) -> DVector<f64> {
        let mut out = DVector::zeros(self.n_model);
        for (to, ts, mo, ms) in &self.parts {
            let (tny, tnx) = if ts.len() == 2 {
                (ts[0], ts[1])
            } else {
                (1, ts[0])
            };
            let (mny, mnx) = if ms.len() == 2 {
                (ms[0], ms[1])
            } else {
                (1, ms[0])
            };
            let (ky, kx) = (tny / mny, tnx / mnx);
            let weight = 1.0 / (ky * kx) as f64;
            for my in 0..mny {
                for mx in 0..mnx {
                    let mut sum = 0.0;
                    for dy in 0..ky {
                        let row = to + (my * ky + dy) * tnx;
                        for dx in 0..kx {
                            sum += truth[row + mx * kx + dx];
                        }
                    }
                    out[mo + my * mnx + mx] = if ky * kx == 1 { sum } else { sum * weight };
                }
            }
        }
        out
    }
}

/// An experiment built for a run: its models (each built once, on the
/// run's device), the observation network and the truth projection.
pub struct Built {
    /// Where models run.
    pub device: Device,
    /// The truth model.
    pub truth_model: Box<dyn Model>,
    /// The model the methods cycle, where it differs from the truth's.
    pub forecast_model: Option<Box<dyn Model>>,
    /// Where the observations come from.
    pub source: ObsSource,
    /// The verification sets (`assimilate = false`), stacked: simulated
    /// from the truth, scored, never assimilated.
    pub verification: Option<Box<dyn ObsNetwork>>,
    /// Truth state to forecast-model state.
    pub projection: Projection,
    /// The climatological sample initial conditions are drawn from, once
    /// [`Built::draw_initial_sample`] has run (`[initial.sample]`).
    initial_sample: std::sync::OnceLock<InitialStates>,
}

/// Initial conditions from a free run: the sample ensembles draw from (in
/// forecast-model space) and the truth's start (in truth space).
struct InitialStates {
    ensembles: Gaussian,
    truth_start: DVector<f64>,
}

impl Built {
    /// Builds the models of `config` on `device` and checks everything
    /// that depends on them (observation indices, time steps, initial
    /// mean), before any computing.
    ///
    /// # Errors
    /// A model that cannot be built, or values that do not fit the models;
    /// the error names the file and key.
    pub fn new(config: &ExperimentConfig, device: Device) -> Result<Self, ConfigError> {
        let build = |key: &str, m: &super::ModelConfig| {
            m.init(&device)
                .map_err(|e| config.invalid(key, e.to_string()))
        };
        let truth_model = build("model", &config.model)?;
        let forecast_model = match &config.forecast_model {
            Some(f) => Some(build("forecast_model", f)?),
            None => None,
        };
        let model: &dyn Model = forecast_model.as_deref().unwrap_or(truth_model.as_ref());
        // The host fast path steps in f64 whatever the device's float type:
        // f32 asked for there would be silently ignored.
        if config.run.precision == Some(crate::device::Precision::F32)
            && config.run.host_fast_path
            && let Some(m) = [Some(truth_model.as_ref()), forecast_model.as_deref()]
                .into_iter()
                .flatten()
                .find(|m| m.host().is_some())
        {
            return Err(config.invalid(
                "run.precision",
                format!(
                    "\"f32\" is not honoured by the host fast path of `{}` (it steps in f64); set run.host_fast_path = false to run the forecasts as f32 tensor operations, or drop run.precision",
                    m.name()
                ),
            ));
        }
        let projection = Projection::new(truth_model.geometry(), model.geometry())
            .map_err(|e| config.invalid("forecast_model", e))?;
        if let Some(f) = &forecast_model {
            let ratio = config.steps_per_cycle as f64 * f.dt() / truth_model.dt();
            if (ratio - ratio.round()).abs() > 1e-9 || ratio.round() < 1.0 {
                // A learned model's step is its checkpoint's record
                // interval, not a `dt` key of the file.
                let learned = config
                    .forecast_model
                    .as_ref()
                    .is_some_and(|m| m.table().contains_key("checkpoint"));
                if learned {
                    return Err(config.invalid(
                        "forecast_model.checkpoint",
                        format!(
                            "the network steps {} model time (the record interval of its training data), and {} of its steps ({}) are not a whole number of truth steps ({}); train on records one observation interval apart or change observations.steps_per_cycle",
                            f.dt(),
                            config.steps_per_cycle,
                            config.steps_per_cycle as f64 * f.dt(),
                            truth_model.dt()
                        ),
                    ));
                }
                return Err(config.invalid(
                    "forecast_model.dt",
                    format!(
                        "the observation interval ({} x {}) must be a whole number of truth steps ({})",
                        config.steps_per_cycle,
                        f.dt(),
                        truth_model.dt()
                    ),
                ));
            }
        }
        config
            .initial
            .check_model(truth_model.as_ref())
            .map_err(|(key, e)| config.invalid(&key, e))?;
        let base = config.path.parent().unwrap_or(Path::new("."));
        let file = config
            .observations
            .iter()
            .find_map(|set| set.file().map(|f| (set, f)));
        let mut verification = None;
        let source = if let Some((set, file)) = file {
            let path = base.join(file);
            let interval = model.dt() * config.steps_per_cycle as f64;
            let key = set.key("network.file");
            let obs = FileObservations::read(&path, model.geometry(), interval, config.run.cycles)
                .map_err(|e| config.invalid(&key, e))?;
            if obs.is_empty() {
                return Err(config.invalid(
                    &key,
                    format!("{} has no observation within the run", path.display()),
                ));
            }
            ObsSource::File(obs)
        } else {
            let mut sets: Vec<SetNetwork> = Vec::with_capacity(config.observations.len());
            let mut checks: Vec<SetNetwork> = Vec::new();
            for (i, set) in config.observations.iter().enumerate() {
                let built = set
                    .build(model.geometry(), &device, config.run.seed, i, base)
                    .map_err(|(k, e)| config.invalid(&set.key(&k), e))?;
                if set.assimilated() {
                    check_error_conditioning(config, set, &built)?;
                    sets.push(built);
                } else {
                    checks.push(built);
                }
            }
            let network: Box<dyn ObsNetwork> = if sets.len() == 1 {
                Box::new(sets.remove(0))
            } else {
                Box::new(Stack::new(sets))
            };
            if !checks.is_empty() {
                verification = Some(Box::new(Stack::new(checks)) as Box<dyn ObsNetwork>);
            }
            ObsSource::Twin(network)
        };
        if let Some(fields) = &config.output.fields {
            for f in fields {
                if model.geometry().field(f).is_none() {
                    return Err(config.invalid(
                        "output.fields",
                        format!(
                            "no field `{f}` in the model (fields: {})",
                            model
                                .geometry()
                                .fields
                                .iter()
                                .map(|f| f.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(Self {
            device,
            truth_model,
            forecast_model,
            source,
            verification,
            projection,
            initial_sample: std::sync::OnceLock::new(),
        })
    }

    /// Runs the truth model freely for `[initial.sample]` (no-op without
    /// it, or when done already): the states every `spacing` cycles after
    /// the spin-up become the sample initial ensembles are drawn from.
    ///
    /// # Errors
    /// A free run that becomes non-finite, named with its cycle.
    pub fn draw_initial_sample(
        &self,
        config: &ExperimentConfig,
        progress: bool,
    ) -> Result<(), ConfigError> {
        let Some(spec) = &config.initial.sample else {
            return Ok(());
        };
        if self.initial_sample.get().is_some() {
            return Ok(());
        }
        let seed = config.run.seed;
        let model = self.truth_model.as_ref();
        let interval = self.chronology(config).interval();
        let steps = (interval / model.dt()).round() as usize;
        let forecaster = Forecaster::new(self.device.clone())
            .with_noise_stream(crate::rng::key(seed, "sample-noise"));
        let x0 = config
            .initial
            .distribution(model)
            .sample(1, &mut stream(seed, "sample"));
        let mut state: DVector<f64> = x0.column(0).into_owned();
        let total = spec.cycles();
        let mut kept = DMatrix::zeros(self.model().size(), spec.count);
        let started = std::time::Instant::now();
        let mut last_line = started;
        if progress {
            eprintln!(
                "rime: drawing the initial sample: a free run of {total} cycles ({} spin-up, then {} states {} cycles apart)",
                spec.spinup_cycles, spec.count, spec.spacing
            );
        }
        for c in 0..total {
            if c >= spec.spinup_cycles && (c - spec.spinup_cycles) % spec.spacing == 0 {
                let j = (c - spec.spinup_cycles) / spec.spacing;
                kept.set_column(j, &self.projection.apply(state.as_slice()));
            }
            let time = c as f64 * interval;
            // The forecaster takes the host path or, for a stochastic model,
            // draws its noise, and reports a non-finite state.
            let one = DMatrix::from_column_slice(state.len(), 1, state.as_slice());
            state = match forecaster.ensemble(model, &one, time, steps) {
                Ok(x) => x.column(0).into_owned(),
                Err(_) => {
                    return Err(config.invalid(
                        "initial.sample",
                        format!(
                            "the free run blew up at cycle {c} (time {time}): the model's dt = {} may be too large for it",
                            model.dt()
                        ),
                    ));
                }
            };
            if progress && last_line.elapsed() >= std::time::Duration::from_secs(10) {
                last_line = std::time::Instant::now();
                eprintln!("rime: initial sample: cycle {}/{total}", c + 1);
            }
        }
        if progress {
            eprintln!(
                "rime: initial sample drawn in {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
        let _ = self.initial_sample.set(InitialStates {
            ensembles: Gaussian::from_sample(kept),
            truth_start: state,
        });
        Ok(())
    }

    /// Whether the run has a truth (observations simulated, not read).
    pub fn has_truth(&self) -> bool {
        matches!(self.source, ObsSource::Twin(_))
    }

    /// The run's timing.
    pub fn chronology(&self, config: &ExperimentConfig) -> Chronology {
        Chronology {
            dt: self.model().dt(),
            steps_per_cycle: config.steps_per_cycle,
            cycles: config.run.cycles,
            burn_in: config.run.burn_in,
        }
    }

    /// The free-run sample of `[initial.sample]`, where the file has one.
    ///
    /// # Panics
    /// Before [`Built::draw_initial_sample`].
    fn sample(&self, config: &ExperimentConfig) -> Option<&InitialStates> {
        config.initial.sample.as_ref().map(|_| {
            self.initial_sample
                .get()
                .expect("draw_initial_sample runs before the truth and the ensembles start")
        })
    }

    /// The distribution initial ensembles are drawn from.
    ///
    /// # Panics
    /// With `[initial.sample]` before [`Built::draw_initial_sample`].
    pub fn initial(&self, config: &ExperimentConfig) -> Gaussian {
        match self.sample(config) {
            Some(s) => s.ensembles.clone(),
            None => config.initial.distribution(self.model()),
        }
    }

    /// The truth's first state.
    fn truth_start(&self, config: &ExperimentConfig) -> DVector<f64> {
        if let Some(s) = self.sample(config) {
            return s.truth_start.clone();
        }
        config
            .initial
            .truth_distribution(self.truth_model.as_ref())
            .sample(1, &mut stream(config.run.seed, "truth"))
            .column(0)
            .into_owned()
    }

    /// The model the methods cycle.
    pub fn model(&self) -> &dyn Model {
        self.forecast_model
            .as_deref()
            .unwrap_or(self.truth_model.as_ref())
    }
}

/// The largest condition number of a correlated `R` that a run accepts:
/// beyond it `R^{-1}` amplifies round-off in the innovations by more than
/// 1e8 and the analysis trusts combinations of observations far more than
/// their errors allow (the ensemble collapses while its error stays).
pub const MAX_R_CONDITION: f64 = 1e8;

/// Refuses correlated observation errors whose covariance at the first
/// cycle is nearly singular (condition number above [`MAX_R_CONDITION`]),
/// naming the correlation length.
fn check_error_conditioning(
    config: &ExperimentConfig,
    set: &crate::obs::set::ObservationSet,
    net: &dyn ObsNetwork,
) -> Result<(), ConfigError> {
    let Some(length) = set.keys.error_correlation_length else {
        return Ok(());
    };
    let at = net.at(0, 0.0);
    let crate::core::ObsError::Correlated { covariance, .. } = &at.error else {
        return Ok(());
    };
    let eigen = covariance.clone().symmetric_eigen();
    let (lo, hi) = eigen
        .eigenvalues
        .iter()
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let condition = if lo > 0.0 { hi / lo } else { f64::INFINITY };
    if condition > MAX_R_CONDITION {
        return Err(config.invalid(
            &set.key("error_correlation_length"),
            format!(
                "{length} makes the observation-error covariance R nearly singular (condition number {condition:.1e} over the {} observations of the first cycle, above {MAX_R_CONDITION:.0e}): the analysis would trust combinations of observations far beyond their errors; use a shorter length",
                covariance.nrows()
            ),
        ));
    }
    Ok(())
}

/// Where a run's observations come from.
pub enum ObsSource {
    /// Simulated from the truth through a network.
    Twin(Box<dyn ObsNetwork>),
    /// Read from a file; the run has no truth.
    File(FileObservations),
}

impl ObsSource {
    /// The largest number of observations at one cycle.
    pub fn max_len(&self) -> usize {
        match self {
            ObsSource::Twin(n) => n.max_len(),
            ObsSource::File(f) => f.max_count(),
        }
    }

    /// The mean observation-error standard deviation (of the first
    /// cycle's network for twins, of every row for files).
    pub fn typical_error_std(&self) -> f64 {
        match self {
            ObsSource::Twin(n) => {
                let std = n.at(0, 0.0).error.std();
                if std.is_empty() { 0.0 } else { std.mean() }
            }
            ObsSource::File(f) => f.mean_error(),
        }
    }
}

/// The truth run of a twin, advanced one cycle at a time so that nothing
/// of it is kept: the truth at each observation time (in forecast-model
/// space) and its noisy observations. Randomness comes from the `truth`,
/// `observations` and `missing` streams of the seed (and `truth-noise` for
/// a stochastic truth model), so two runs give the same truth.
pub struct TruthRun<'a> {
    config: &'a ExperimentConfig,
    built: &'a Built,
    chronology: Chronology,
    forecaster: Forecaster,
    truth_steps: usize,
    /// The truth, `n x 1`.
    state: DMatrix<f64>,
    noise: Rng,
    missing: Rng,
    cycle: usize,
}

impl<'a> TruthRun<'a> {
    /// Starts the truth from a draw of the initial distribution.
    pub fn new(config: &'a ExperimentConfig, built: &'a Built) -> Self {
        let seed = config.run.seed;
        let truth_model = built.truth_model.as_ref();
        let chronology = built.chronology(config);
        let truth_steps = (chronology.interval() / truth_model.dt()).round() as usize;
        // The model's host path where the run allows it, as the methods'
        // forecasts.
        let forecaster = Forecaster {
            host_path: config.run.host_fast_path,
            ..Forecaster::new(built.device.clone())
        }
        .with_noise_stream(crate::rng::key(seed, "truth-noise"));
        let x0 = built.truth_start(config);
        let x0 = DMatrix::from_column_slice(x0.len(), 1, x0.as_slice());
        Self {
            config,
            built,
            chronology,
            forecaster,
            truth_steps,
            state: x0,
            noise: stream(seed, "observations"),
            missing: stream(seed, "missing"),
            cycle: 0,
        }
    }

    /// Advances the truth to the next observation time; returns it in
    /// forecast-model space.
    pub fn advance(&mut self) -> DVector<f64> {
        let t0 = self.cycle as f64 * self.chronology.interval();
        let model = self.built.truth_model.as_ref();
        // A blow-up leaves a non-finite truth, which the callers report.
        self.state = self
            .forecaster
            .ensemble(model, &self.state, t0, self.truth_steps)
            .unwrap_or_else(|_| DMatrix::from_element(self.state.nrows(), 1, f64::NAN));
        self.cycle += 1;
        self.built.projection.apply(self.state.as_slice())
    }

    /// Observes `truth` (the state just returned by [`advance`](Self::advance))
    /// with noise through the network; missing values are dropped.
    pub fn observe(&mut self, truth: &DVector<f64>) -> ObsBatch {
        let k = self.cycle - 1;
        let time = self.chronology.time(k);
        let network = match &self.built.source {
            ObsSource::Twin(n) => n,
            // A run on a file has no truth to observe: its batches are the
            // file's.
            ObsSource::File(f) => return f.batch(k, time),
        };
        let at = network.at(k, time);
        let simulating = at.truth.as_ref().unwrap_or(&at.operator);
        let hx = crate::core::apply_to_state(simulating.as_ref(), truth, time, &self.built.device);
        let mut y = hx + at.error.sample(&mut self.noise);
        // Each set's values go missing with its own probability, drawn
        // in order from one stream.
        let mut start = 0;
        let assimilated = self.config.observations.iter().filter(|s| s.assimilated());
        for (set, &n) in assimilated.zip(&at.sets) {
            if let Some(f) = set.keys.missing_fraction {
                use rand::Rng as _;
                for v in y.rows_mut(start, n).iter_mut() {
                    if self.missing.random::<f64>() < f {
                        *v = f64::NAN;
                    }
                }
            }
            start += n;
        }
        ObsBatch::in_sets(k, time, y, at.error, at.operator, at.network_id, &at.sets)
    }

    /// The verification sets at the cycle just observed: their operator
    /// (what DA's estimates are seen through) and the noise-free values of
    /// the truth there (through `truth_operator` where a set has one).
    pub fn verify(&self, truth: &DVector<f64>) -> Option<Verification> {
        let network = self.built.verification.as_ref()?;
        let k = self.cycle - 1;
        let time = self.chronology.time(k);
        let at = network.at(k, time);
        let simulating = at.truth.as_ref().unwrap_or(&at.operator);
        let values =
            crate::core::apply_to_state(simulating.as_ref(), truth, time, &self.built.device);
        Some(Verification {
            time,
            values,
            operator: at.operator,
            sets: at.sets,
        })
    }
}

/// What the verification sets saw of the truth at one cycle.
pub struct Verification {
    /// Model time.
    pub time: f64,
    /// `H_truth(x_t)`, without noise.
    pub values: DVector<f64>,
    /// The sets' operators, stacked.
    pub operator: std::sync::Arc<dyn crate::core::ObsOperator>,
    /// Observations per set, in order.
    pub sets: Vec<usize>,
}

/// States above which the climatology is accumulated as running moments
/// instead of from the kept sample (2^22 values, 32 MiB).
const KEEP_SAMPLE_LIMIT: usize = 1 << 22;

/// The climatology of the truth after the burn-in, from a first truth run
/// (the same truth the assimilation later sees). The sample is kept for a
/// covariance when a method needs one or when it is small (exact two-pass
/// moments); otherwise mean and variance are accumulated by Welford's
/// recurrence in O(n) memory.
///
/// # Errors
/// A truth that becomes non-finite (a time step too large for the model,
/// a forcing that blows it up): named with its cycle, before any method
/// runs.
pub fn climate(
    config: &ExperimentConfig,
    built: &Built,
    covariance: bool,
) -> Result<ClimateStats, ConfigError> {
    let chronology = built.chronology(config);
    let n = built.model().size();
    let kept = chronology.kept();
    let keep = covariance || n.saturating_mul(kept) <= KEEP_SAMPLE_LIMIT;
    let mut run = TruthRun::new(config, built);
    let mut sample = if keep {
        DMatrix::zeros(n, kept)
    } else {
        DMatrix::zeros(0, 0)
    };
    let mut mean = DVector::zeros(n);
    let mut m2 = DVector::zeros(n);
    for k in 0..chronology.cycles {
        let x = run.advance();
        if !x.iter().all(|v| v.is_finite()) {
            return Err(config.invalid(
                "model",
                format!(
                    "the truth run blew up at cycle {k} (time {}): the model's dt = {} may be too large for it, or a parameter drives it out of range",
                    chronology.time(k),
                    built.truth_model.dt()
                ),
            ));
        }
        if k < chronology.burn_in {
            continue;
        }
        let j = k - chronology.burn_in;
        if keep {
            sample.set_column(j, &x);
        } else {
            let count = (j + 1) as f64;
            for i in 0..n {
                let d = x[i] - mean[i];
                mean[i] += d / count;
                m2[i] += d * (x[i] - mean[i]);
            }
        }
    }
    Ok(if keep {
        ClimateStats::from_states(sample)
    } else {
        let variance = m2 / (kept as f64 - 1.0).max(1.0);
        ClimateStats::from_moments(mean, variance)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{CoordinateUnits, Field};

    #[test]
    fn projection_copies_and_block_averages() {
        let truth = Geometry::new(
            vec![
                Field::chain("x", "slow", 4),
                Field::grid("h", "h", "m", vec![0.0, 1.0, 2.0, 3.0], vec![0.0, 1.0]),
            ],
            [None, None],
            CoordinateUnits::Model,
        );
        let model = Geometry::new(
            vec![
                Field::grid("h", "h", "m", vec![0.5, 2.5], vec![0.5]),
                Field::chain("x", "slow", 2),
            ],
            [None, None],
            CoordinateUnits::Model,
        );
        let p = Projection::new(&truth, &model).unwrap();
        let t: Vec<f64> = (0..12).map(f64::from).collect();
        // h (2 x 4) = [[4, 5, 6, 7], [8, 9, 10, 11]] -> [[6.5, 8.5]]; x -> [0.5, 2.5].
        assert_eq!(p.apply(&t).as_slice(), &[6.5, 8.5, 0.5, 2.5]);
        let bad = Geometry::chain(3, true, "x");
        assert!(
            Projection::new(&truth, &bad)
                .unwrap_err()
                .contains("multiple")
        );
    }
}
