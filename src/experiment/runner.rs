//! Cycles every method of an experiment over one twin and scores it.

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use nalgebra::{DMatrix, DVector};
use rayon::prelude::*;
use serde::Serialize;

use super::config::{ConfigError, Expected, ExperimentConfig, MethodEntry};
use super::twin::{Built, Twin};
use crate::core::{Forecaster, Model};
use crate::da::var::MinimisationSummary;
use crate::da::{Context, DaError, Estimate};
use crate::device::DeviceChoice;
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
}

/// How a method ended.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Status {
    /// Every cycle ran.
    Ok,
    /// Stopped at `cycle` (0-based) for `reason`.
    Diverged {
        /// The cycle at which the method was stopped.
        cycle: usize,
        /// Why.
        reason: String,
    },
}

/// Per-cycle output of one method; rows past a divergence are NaN.
#[derive(Clone, Debug)]
pub struct Series {
    /// Forecast mean, `n x cycles`.
    pub forecast_mean: DMatrix<f64>,
    /// Forecast standard deviation per variable, `n x cycles`.
    pub forecast_spread: DMatrix<f64>,
    /// Analysis mean, `n x cycles`.
    pub analysis_mean: DMatrix<f64>,
    /// Analysis standard deviation per variable, `n x cycles`.
    pub analysis_spread: DMatrix<f64>,
    /// RMSE of the forecast mean.
    pub rmse_f: Vec<f64>,
    /// RMSE of the analysis mean.
    pub rmse_a: Vec<f64>,
    /// Forecast spread (root of the mean variance).
    pub spread_f: Vec<f64>,
    /// Analysis spread.
    pub spread_a: Vec<f64>,
    /// Analysis CRPS averaged over the variables (fair for ensembles).
    pub crps_a: Vec<f64>,
}

impl Series {
    fn new(n: usize, cycles: usize) -> Self {
        let m = || DMatrix::from_element(n, cycles, f64::NAN);
        let v = || vec![f64::NAN; cycles];
        Self {
            forecast_mean: m(),
            forecast_spread: m(),
            analysis_mean: m(),
            analysis_spread: m(),
            rmse_f: v(),
            rmse_a: v(),
            spread_f: v(),
            spread_a: v(),
            crps_a: v(),
        }
    }
}

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
    /// Per-cycle values.
    pub series: Series,
    /// Analysis rank histogram over the cycles after burn-in (ensembles only).
    pub rank_histogram: Option<RankHistogram>,
    /// One summary per minimisation (variational methods), in cycle order.
    pub minimisations: Vec<MinimisationSummary>,
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
    /// The twin.
    pub twin: Twin,
    /// One report per method, in file order.
    pub methods: Vec<MethodReport>,
    /// The forecast model's name, for output.
    pub model_name: String,
    /// The forecast model's geometry, for output.
    pub geometry: crate::core::Geometry,
}

/// Applies the command-line overrides to a configuration.
pub fn with_options(config: &ExperimentConfig, options: &RunOptions) -> ExperimentConfig {
    let mut config = config.clone();
    if let Some(c) = options.cycles {
        config = config.with_cycles(c);
    }
    if let Some(s) = options.seed {
        config.run.seed = s;
    }
    if let Some(d) = options.device {
        config.run.device = d;
    }
    config
}

/// Builds the experiment on its device: every model once, the network,
/// and the checks that need them.
///
/// # Errors
/// A device that is not available, or an experiment that does not fit its
/// models.
pub fn build(config: &ExperimentConfig) -> Result<Built, ConfigError> {
    let device = crate::device::select(config.run.device, config.run.precision)
        .map_err(|e| config.invalid("run.device", e.to_string()))?;
    Built::new(config, device)
}

/// Runs an experiment: builds it, simulates the twin, then every method
/// (in parallel across methods, each with its own random stream).
///
/// # Errors
/// An experiment that cannot be built, or a method that cannot start.
pub fn run(config: &ExperimentConfig, options: &RunOptions) -> Result<Report, RunError> {
    let config = with_options(config, options);
    let built = build(&config)?;
    let twin = Twin::simulate(&config, &built);
    let model = built.model();

    let total = (config.run.cycles * config.methods.len()) as u64;
    let bar = if options.progress && std::io::stderr().is_terminal() {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{bar:40}] {pos}/{len} cycles ({eta} left)",
            )
            .expect("valid template"),
        );
        bar
    } else {
        ProgressBar::hidden()
    };

    let divergence_rmse = config
        .run
        .divergence_rmse
        .unwrap_or_else(|| 10.0 * twin.climate.variance.mean().sqrt());
    let methods = config
        .methods
        .par_iter()
        .map(|entry| run_method(&config, entry, &twin, &built, model, divergence_rmse, &bar))
        .collect::<Result<Vec<_>, _>>()?;
    bar.finish_and_clear();
    Ok(Report {
        model_name: model.name().to_string(),
        geometry: model.geometry().clone(),
        config,
        twin,
        methods,
    })
}

/// Cycles one method. A failure inside the method (divergence, a failed
/// decomposition) ends that method with `Status::Diverged`; only a method
/// that cannot start at all is an error.
fn run_method(
    config: &ExperimentConfig,
    entry: &MethodEntry,
    twin: &Twin,
    built: &Built,
    model: &dyn Model,
    divergence_rmse: f64,
    bar: &ProgressBar,
) -> Result<MethodReport, DaError> {
    let chronology = twin.chronology;
    let name = format!("method/{}", entry.label);
    let context = Context {
        model,
        forecaster: Forecaster {
            device: built.device.clone(),
            host_path: config.run.host_fast_path,
            noise_stream: crate::rng::key(config.run.seed, &format!("{name}/model-noise")),
        },
        steps_per_cycle: chronology.steps_per_cycle,
        climate: &twin.climate,
    };
    let rng = stream(config.run.seed, &name);
    let mut filter = entry.method.build(&context, &twin.initial, rng)?;
    let n = model.size();
    let mut series = Series::new(n, chronology.cycles);
    let mut histogram = entry.method.ensemble_size().map(RankHistogram::new);
    let mut status = Status::Ok;
    let start = Instant::now();
    let mut cycles_run = 0;
    for k in 0..chronology.cycles {
        let time = k as f64 * chronology.interval();
        let truth: Vec<f64> = twin.truth.column(k).iter().copied().collect();
        let outcome = filter.forecast(&context, time).and_then(|()| {
            let f = score(filter.estimate(), &truth, None);
            store(
                &mut series.forecast_mean,
                &mut series.forecast_spread,
                k,
                &f,
            );
            series.rmse_f[k] = f.rmse;
            series.spread_f[k] = f.spread;
            filter.analyse(&context, &twin.observations[k])
        });
        cycles_run = k + 1;
        if let Err(e) = outcome {
            status = Status::Diverged {
                cycle: k,
                reason: e.to_string(),
            };
            break;
        }
        let histogram_now = if k >= chronology.burn_in {
            histogram.as_mut()
        } else {
            None
        };
        let a = score(filter.estimate(), &truth, histogram_now);
        store(
            &mut series.analysis_mean,
            &mut series.analysis_spread,
            k,
            &a,
        );
        series.rmse_a[k] = a.rmse;
        series.spread_a[k] = a.spread;
        series.crps_a[k] = a.crps;
        bar.inc(1);
        if !a.rmse.is_finite() || a.rmse > divergence_rmse {
            status = Status::Diverged {
                cycle: k,
                reason: format!(
                    "analysis RMSE {:.4e} exceeds the divergence limit {divergence_rmse:.4}",
                    a.rmse
                ),
            };
            break;
        }
    }
    let time_per_cycle_s = start.elapsed().as_secs_f64() / cycles_run.max(1) as f64;
    bar.inc((chronology.cycles - cycles_run) as u64);
    let summary = if status == Status::Ok {
        summarise(&series, chronology.burn_in, entry.method.ensemble_size())
    } else {
        Summary::default()
    };
    Ok(MethodReport {
        label: entry.label.clone(),
        entry: entry.clone(),
        status,
        summary,
        series,
        rank_histogram: histogram,
        minimisations: filter.minimisations().to_vec(),
        time_per_cycle_s,
        expected: config.expected.get(&entry.label).copied(),
    })
}

struct Scores {
    mean: DVector<f64>,
    std: DVector<f64>,
    rmse: f64,
    spread: f64,
    crps: f64,
}

fn score(estimate: Estimate<'_>, truth: &[f64], histogram: Option<&mut RankHistogram>) -> Scores {
    match estimate {
        Estimate::Ensemble(e) => {
            let mean = metrics::ensemble_mean(e);
            let var = metrics::ensemble_variance(e);
            if let Some(h) = histogram {
                h.add(e, truth);
            }
            Scores {
                rmse: metrics::rmse(mean.as_slice(), truth),
                spread: metrics::spread_from_variance(var.as_slice()),
                crps: metrics::crps_ensemble(e, truth),
                std: var.map(f64::sqrt),
                mean,
            }
        }
        Estimate::Gaussian { mean, variance } => {
            let std = variance.map(|v| v.max(0.0).sqrt());
            let crps = truth
                .iter()
                .enumerate()
                .map(|(i, &y)| metrics::crps_gaussian(mean[i], std[i], y))
                .sum::<f64>()
                / truth.len() as f64;
            Scores {
                rmse: metrics::rmse(mean.as_slice(), truth),
                spread: metrics::spread_from_variance(variance.as_slice()),
                crps,
                std,
                mean: mean.clone(),
            }
        }
    }
}

fn store(mean: &mut DMatrix<f64>, spread: &mut DMatrix<f64>, k: usize, s: &Scores) {
    mean.set_column(k, &s.mean);
    spread.set_column(k, &s.std);
}

fn summarise(series: &Series, burn_in: usize, members: Option<usize>) -> Summary {
    let avg = |v: &[f64]| -> MeanWithCi { metrics::mean_with_ci(&v[burn_in..]) };
    let rmse_a = avg(&series.rmse_a);
    let spread_a = avg(&series.spread_a).mean;
    let finite = |x: f64| x.is_finite().then_some(x);
    Summary {
        rmse_a: finite(rmse_a.mean),
        rmse_a_ci95: finite(rmse_a.ci95),
        rmse_f: finite(avg(&series.rmse_f).mean),
        spread_a: finite(spread_a),
        spread_f: finite(avg(&series.spread_f).mean),
        crps_a: finite(avg(&series.crps_a).mean),
        spread_skill_a: finite(match members {
            Some(m) => metrics::spread_skill(spread_a, rmse_a.mean, m),
            None => spread_a / rmse_a.mean,
        }),
    }
}
