//! `rime evaluate FILE`: forecasts of learned (or physical) models from
//! states of the test split of a trajectory file, scored against the
//! trajectories lead by lead, beside persistence and climatology.
//!
//! For every model and lead (in records of the data): the RMSE of the
//! forecast (of the ensemble mean for a stochastic model) and the anomaly
//! correlation with respect to the training climatology; for a stochastic
//! model (a generative surrogate, whose own samples are the ensemble) also
//! the fair CRPS, the spread, the spread-skill ratio (WeatherBench 2
//! definitions, `../shared/REFERENCES.md`) and the rank histogram; the power
//! spectrum of the forecasts (along the state, or radially binned over each
//! 2-D field) with that of the truth, to see whether small scales survive the rollout; and
//! a free run's climatological mean and variance against the data's
//! (does the model stay on the attractor?).
//!
//! Writes `evaluation.csv`, `evaluation.nc` and PNG plots (`rmse.png`,
//! `acc.png`, `crps.png`, `spread_skill.png`, `spectra.png`,
//! `rank_histogram.png`) into the output folder.

use std::path::{Path, PathBuf};

use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};

use super::train::DataConfig;
use crate::core::Forecaster;
use crate::device::DeviceChoice;
use crate::experiment::registry::ModelConfig;
use crate::metrics::{RankHistogram, crps_ensemble, spread_skill};

/// The `[evaluate]` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluateSettings {
    /// Forecast length, in records of the data.
    pub leads: usize,
    /// Initial states, evenly spaced in the test split.
    #[serde(default = "default_starts")]
    pub starts: usize,
    /// Ensemble size of stochastic models.
    #[serde(default = "default_members")]
    pub members: usize,
    /// Records of the free run (0: none).
    #[serde(default)]
    pub free_run: usize,
    /// Seed of the stochastic models' noise.
    #[serde(default)]
    pub seed: u64,
    /// Where the models run.
    #[serde(default)]
    pub device: DeviceChoice,
    /// The split the forecasts start from and are scored on: `"test"`
    /// (default), or `"validation"` to choose a setting (a surrogate's
    /// `temperature`) without looking at the test split.
    #[serde(default)]
    pub split: EvaluationSplit,
}

/// The split an evaluation uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvaluationSplit {
    /// Records never trained or validated on.
    #[default]
    Test,
    /// The validation records.
    Validation,
}

impl EvaluationSplit {
    fn code(self) -> i32 {
        match self {
            EvaluationSplit::Test => 2,
            EvaluationSplit::Validation => 1,
        }
    }

    fn name(self) -> &'static str {
        match self {
            EvaluationSplit::Test => "test",
            EvaluationSplit::Validation => "validation",
        }
    }
}

fn default_starts() -> usize {
    50
}
fn default_members() -> usize {
    20
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvaluate {
    #[serde(default)]
    description: Option<String>,
    data: DataConfig,
    evaluate: EvaluateSettings,
    models: Vec<toml::Table>,
}

/// An evaluation file: the data, the settings and the models (`[[models]]`:
/// a `label` and any model table, e.g. `name = "emulator"` with its
/// checkpoint).
#[derive(Clone, Debug)]
pub struct EvaluateConfig {
    /// The file.
    pub path: PathBuf,
    /// Free text.
    pub description: Option<String>,
    /// The trajectories (their test split is used).
    pub data: DataConfig,
    /// Lengths and sizes.
    pub evaluate: EvaluateSettings,
    /// Labelled models.
    pub models: Vec<(String, ModelConfig)>,
}

impl EvaluateConfig {
    /// Reads and checks an evaluation file; errors name the file and key.
    ///
    /// # Errors
    /// An unreadable file, malformed TOML, an unknown key or a bad value.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let raw: RawEvaluate = super::read_toml(path)?;
        let bad = |key: &str, reason: String| format!("{}: key `{key}`: {reason}", path.display());
        let e = &raw.evaluate;
        if e.leads == 0 {
            return Err(bad("evaluate.leads", "must be at least 1".into()));
        }
        if e.starts == 0 {
            return Err(bad("evaluate.starts", "must be at least 1".into()));
        }
        if e.members < 2 {
            return Err(bad(
                "evaluate.members",
                format!("must be at least 2, got {}", e.members),
            ));
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let mut models = Vec::new();
        for (i, mut table) in raw.models.into_iter().enumerate() {
            let label = match table.remove("label") {
                Some(toml::Value::String(s)) => s,
                _ => {
                    return Err(bad(
                        &format!("models[{i}].label"),
                        "a text label is required".into(),
                    ));
                }
            };
            crate::experiment::config::check_label(&label)
                .map_err(|r| bad(&format!("models[{i}].label"), r))?;
            if ["persistence", "climatology"].contains(&label.as_str())
                || models
                    .iter()
                    .any(|(l, _): &(String, ModelConfig)| *l == label)
            {
                return Err(bad(
                    &format!("models[{i}].label"),
                    format!("\"{label}\" is taken (persistence and climatology are always scored)"),
                ));
            }
            let mut model =
                ModelConfig::from_table(table).map_err(|r| bad(&format!("models[{i}]"), r))?;
            model
                .resolve_paths(base)
                .map_err(|r| bad(&format!("models[{i}]"), r))?;
            models.push((label, model));
        }
        if models.is_empty() {
            return Err(bad("models", "list at least one [[models]] entry".into()));
        }
        Ok(Self {
            path: path.to_path_buf(),
            description: raw.description,
            data: raw.data,
            evaluate: raw.evaluate,
            models,
        })
    }
}

/// The scores of one model (or baseline) at every lead.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelScores {
    /// The label.
    pub label: String,
    /// RMSE of the forecast (ensemble mean) per lead.
    pub rmse: Vec<f64>,
    /// Anomaly correlation per lead.
    pub acc: Vec<f64>,
    /// Fair CRPS per lead (stochastic models; NaN otherwise).
    pub crps: Vec<f64>,
    /// Ensemble spread per lead (NaN for deterministic forecasts).
    pub spread: Vec<f64>,
    /// Spread-skill ratio per lead (NaN for deterministic forecasts).
    pub spread_skill: Vec<f64>,
    /// Rank-histogram frequencies per lead (empty for deterministic).
    pub rank_histogram: Vec<Vec<f64>>,
    /// Power spectrum of the forecasts per lead: along the state, or radial
    /// over 2-D fields ([`spectrum_of`]).
    pub spectrum: Vec<Vec<f64>>,
    /// Mean and variance (pooled) of the free run, where one was asked.
    pub free_run: Option<(f64, f64)>,
    /// For a state of several 2-D fields: per field (in the data's
    /// variable order) the RMSE per lead and, for an ensemble, the
    /// spread-skill ratio per lead (NaN otherwise).
    pub fields: Vec<FieldScores>,
}

/// The scores of one field of a multi-field state.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldScores {
    /// The variable.
    pub name: String,
    /// RMSE of the forecast (ensemble mean) per lead.
    pub rmse: Vec<f64>,
    /// Spread-skill ratio per lead (NaN for deterministic forecasts).
    pub spread_skill: Vec<f64>,
}

/// RMSE of `f` against `truth` over the rows `rows` (one field).
fn rmse_rows(f: &DMatrix<f64>, truth: &DMatrix<f64>, rows: std::ops::Range<usize>) -> f64 {
    let mut sq = 0.0;
    for j in 0..f.ncols() {
        for i in rows.clone() {
            sq += (f[(i, j)] - truth[(i, j)]).powi(2);
        }
    }
    (sq / (rows.len() * f.ncols()).max(1) as f64).sqrt()
}

/// The result of an evaluation.
#[derive(Clone, Debug)]
pub struct Evaluation {
    /// Model time of one lead.
    pub interval: f64,
    /// Scores: persistence, climatology, then the models in file order.
    pub models: Vec<ModelScores>,
    /// Power spectrum of the truth per lead.
    pub truth_spectrum: Vec<Vec<f64>>,
    /// Mean and variance (pooled) of the training split.
    pub climate: (f64, f64),
    /// The files written.
    pub files: Vec<PathBuf>,
}

/// Mean power spectrum of the columns of `x` (`n x k`) for states of
/// `shape`: of 2-D fields (`[ny, nx]` or `[fields, ny, nx]`) the 2-D
/// spectrum of each field, summed over rings of radial wavenumber (in
/// cycles per domain along the longer side) and over the fields;
/// otherwise along the state.
fn spectrum_of(x: &DMatrix<f64>, shape: &[usize]) -> Vec<f64> {
    match *shape {
        [ny, nx] => spectrum_2d(x, 1, ny, nx),
        [f, ny, nx] => spectrum_2d(x, f, ny, nx),
        _ => spectrum(x),
    }
}

/// The radially binned 2-D power spectrum of [`spectrum_of`].
fn spectrum_2d(x: &DMatrix<f64>, fields: usize, ny: usize, nx: usize) -> Vec<f64> {
    use rustfft::{FftPlanner, num_complex::Complex};
    let mut planner = FftPlanner::<f64>::new();
    let (row_fft, col_fft) = (planner.plan_fft_forward(nx), planner.plan_fft_forward(ny));
    let long = nx.max(ny);
    let mut power = vec![0.0; long / 2 + 1];
    let mut field = vec![Complex::new(0.0, 0.0); ny * nx];
    let mut column = vec![Complex::new(0.0, 0.0); ny];
    let norm = ((ny * nx) as f64).powi(2);
    for state in x.column_iter() {
        for f in 0..fields {
            for (c, v) in field
                .iter_mut()
                .zip(&state.as_slice()[f * ny * nx..(f + 1) * ny * nx])
            {
                *c = Complex::new(*v, 0.0);
            }
            for row in field.chunks_mut(nx) {
                row_fft.process(row);
            }
            for i in 0..nx {
                for j in 0..ny {
                    column[j] = field[j * nx + i];
                }
                col_fft.process(&mut column);
                for j in 0..ny {
                    field[j * nx + i] = column[j];
                }
            }
            for j in 0..ny {
                let ky = j.min(ny - j) as f64 / ny as f64;
                for i in 0..nx {
                    let kx = i.min(nx - i) as f64 / nx as f64;
                    let k = ((kx * kx + ky * ky).sqrt() * long as f64).round() as usize;
                    if k < power.len() {
                        power[k] += field[j * nx + i].norm_sqr() / norm;
                    }
                }
            }
        }
    }
    power.iter().map(|p| p / x.ncols().max(1) as f64).collect()
}

/// Mean power spectrum along the state of the columns of `x` (`n x k`).
fn spectrum(x: &DMatrix<f64>) -> Vec<f64> {
    use rustfft::{FftPlanner, num_complex::Complex};
    let n = x.nrows();
    let fft = FftPlanner::<f64>::new().plan_fft_forward(n);
    let mut power = vec![0.0; n / 2 + 1];
    let mut buffer = vec![Complex::new(0.0, 0.0); n];
    for column in x.column_iter() {
        for (b, v) in buffer.iter_mut().zip(column.iter()) {
            *b = Complex::new(*v, 0.0);
        }
        fft.process(&mut buffer);
        for (p, b) in power.iter_mut().zip(&buffer) {
            *p += b.norm_sqr() / (n * n) as f64;
        }
    }
    power.iter().map(|p| p / x.ncols().max(1) as f64).collect()
}

/// Scores of a deterministic forecast (or ensemble mean) `f` against `truth`
/// (`n x starts`) with the climatological mean `clim`.
fn rmse_acc(f: &DMatrix<f64>, truth: &DMatrix<f64>, clim: &[f64]) -> (f64, f64) {
    let (mut sq, mut af, mut aa, mut ff) = (0.0, 0.0, 0.0, 0.0);
    for j in 0..f.ncols() {
        for i in 0..f.nrows() {
            let (x, y) = (f[(i, j)], truth[(i, j)]);
            sq += (x - y) * (x - y);
            let (fa, ta) = (x - clim[i], y - clim[i]);
            af += fa * ta;
            aa += ta * ta;
            ff += fa * fa;
        }
    }
    let count = (f.nrows() * f.ncols()).max(1) as f64;
    let acc = if ff > 0.0 && aa > 0.0 {
        af / (aa.sqrt() * ff.sqrt())
    } else {
        f64::NAN
    };
    ((sq / count).sqrt(), acc)
}

/// The files `rime evaluate` may write into its folder (the plots only
/// where they apply).
pub const EVALUATION_FILES: [&str; 8] = [
    "evaluation.csv",
    "evaluation.nc",
    "rmse.png",
    "acc.png",
    "crps.png",
    "spread_skill.png",
    "spectra.png",
    "rank_histogram.png",
];

/// Runs the evaluation of `config` into `out`.
///
/// # Errors
/// Unreadable data, a model that cannot be built or whose step does not
/// divide the record interval, a forecast that blows up (named by model and
/// lead), or a file that cannot be written.
pub fn evaluate(
    config: &EvaluateConfig,
    out: &Path,
    progress: bool,
    overwrite: bool,
) -> anyhow::Result<Evaluation> {
    // The folder first, before any computing: one writer, no file
    // overwritten that rime did not write.
    let mut folder = crate::io::folder::OutputFolder::claim(out, "rime evaluate", overwrite)?;
    folder.prepare(&EVALUATION_FILES.map(String::from))?;
    let file = &config.path;
    let e = &config.evaluate;
    let (data_path, data) = config.data.load(file)?;
    let candidates = data.samples(e.split.code(), e.leads);
    if candidates.is_empty() {
        anyhow::bail!(
            "{}: the {} split of {} has no run of {} records (evaluate.leads + 1)",
            file.display(),
            e.split.name(),
            data_path.display(),
            e.leads + 1
        );
    }
    let starts: Vec<(usize, usize)> = (0..e.starts.min(candidates.len()))
        .map(|k| candidates[k * candidates.len() / e.starts.min(candidates.len())])
        .collect();
    let n = data.n;
    let s = starts.len();
    if !data.split.contains(&0) {
        anyhow::bail!(
            "{}: {} has no training records for the climatology and the anomalies; list the training file(s) in `data.file` too (a list: the training files, then the held-out one)",
            file.display(),
            data_path.display()
        );
    }
    // The fields of a multi-field state, scored apart as well.
    let blocks: Vec<(String, std::ops::Range<usize>)> =
        if data.fields() > 1 && data.variables.len() == data.fields() {
            let len = n / data.fields();
            data.variables
                .iter()
                .enumerate()
                .map(|(k, v)| (v.clone(), k * len..(k + 1) * len))
                .collect()
        } else {
            Vec::new()
        };
    let stats = data.statistics();
    let clim = stats.mean.clone();
    let climate = {
        let m = clim.iter().sum::<f64>() / n as f64;
        let v = stats
            .std
            .iter()
            .zip(&clim)
            .map(|(sd, c)| sd * sd + (c - m) * (c - m))
            .sum::<f64>()
            / n as f64;
        (m, v)
    };
    let states_at =
        |k: usize| DMatrix::from_fn(n, s, |i, j| data.state(starts[j].0 + k, starts[j].1)[i]);
    let truth: Vec<DMatrix<f64>> = (0..=e.leads).map(states_at).collect();
    let truth_spectrum: Vec<Vec<f64>> = truth[1..]
        .iter()
        .map(|t| spectrum_of(t, &data.shape))
        .collect();
    let device = crate::device::select(e.device, None)?;
    let mut models = Vec::new();

    // Baselines.
    let persistence: Vec<(f64, f64)> = (1..=e.leads)
        .map(|k| rmse_acc(&truth[0], &truth[k], &clim))
        .collect();
    let deterministic = |label: &str, scores: Vec<(f64, f64)>, spec: Vec<Vec<f64>>| ModelScores {
        label: label.into(),
        rmse: scores.iter().map(|x| x.0).collect(),
        acc: scores.iter().map(|x| x.1).collect(),
        crps: vec![f64::NAN; e.leads],
        spread: vec![f64::NAN; e.leads],
        spread_skill: vec![f64::NAN; e.leads],
        rank_histogram: Vec::new(),
        spectrum: spec,
        free_run: None,
        fields: Vec::new(),
    };
    models.push(deterministic(
        "persistence",
        persistence,
        vec![spectrum_of(&truth[0], &data.shape); e.leads],
    ));
    let clim_matrix = DMatrix::from_fn(n, s, |i, _| clim[i]);
    models.push(deterministic(
        "climatology",
        (1..=e.leads)
            .map(|k| (rmse_acc(&clim_matrix, &truth[k], &clim).0, f64::NAN))
            .collect(),
        vec![spectrum_of(&clim_matrix, &data.shape); e.leads],
    ));

    // The baselines by field.
    for (k, base) in [&truth[0], &clim_matrix].into_iter().enumerate() {
        models[k].fields = blocks
            .iter()
            .map(|(name, rows)| FieldScores {
                name: name.clone(),
                rmse: (1..=e.leads)
                    .map(|l| rmse_rows(base, &truth[l], rows.clone()))
                    .collect(),
                spread_skill: vec![f64::NAN; e.leads],
            })
            .collect();
    }
    let mut bar = super::progress::Progress::new(progress, config.models.len() * e.leads, "leads");
    for (index, (label, model_config)) in config.models.iter().enumerate() {
        let model = model_config
            .init(&device)
            .map_err(|m| anyhow::anyhow!("{}: model `{label}`: {m}", file.display()))?;
        if model.size() != n {
            anyhow::bail!(
                "{}: model `{label}` has {} variables, the data {n}",
                file.display(),
                model.size()
            );
        }
        let ratio = data.interval / model.dt();
        let steps = ratio.round() as usize;
        if steps == 0 || (ratio - steps as f64).abs() > 1e-6 * ratio {
            anyhow::bail!(
                "{}: model `{label}` steps dt = {}, which does not divide the data's record interval {}",
                file.display(),
                model.dt(),
                data.interval
            );
        }
        let stochastic = model.stochastic().is_some();
        let m = if stochastic { e.members } else { 1 };
        let forecaster = Forecaster::new(device.clone())
            .with_noise_stream(crate::rng::key(e.seed, &format!("evaluate/{label}")));
        // Every start repeated m times: columns j * m .. (j + 1) * m.
        let mut x = DMatrix::from_fn(n, s * m, |i, c| truth[0][(i, c / m)]);
        let mut scores = ModelScores {
            label: label.clone(),
            rmse: Vec::new(),
            acc: Vec::new(),
            crps: Vec::new(),
            spread: Vec::new(),
            spread_skill: Vec::new(),
            rank_histogram: Vec::new(),
            spectrum: Vec::new(),
            free_run: None,
            fields: blocks
                .iter()
                .map(|(name, _)| FieldScores {
                    name: name.clone(),
                    rmse: Vec::new(),
                    spread_skill: Vec::new(),
                })
                .collect(),
        };
        // A model that is not autonomous (forced) steps each start from its
        // own time; an autonomous one all at once.
        let groups: Vec<(f64, Vec<usize>)> = if model.autonomous() {
            vec![(data.times[0], (0..s).collect())]
        } else {
            let mut g: Vec<(f64, Vec<usize>)> = Vec::new();
            for (j, &(t, _)) in starts.iter().enumerate() {
                match g.iter_mut().find(|(time, _)| *time == data.times[t]) {
                    Some((_, js)) => js.push(j),
                    None => g.push((data.times[t], vec![j])),
                }
            }
            g
        };
        for (k, truth_k) in truth.iter().enumerate().skip(1) {
            let lead_time = (k - 1) as f64 * data.interval;
            if groups.len() == 1 {
                x = forecaster
                    .ensemble(model.as_ref(), &x, groups[0].0 + lead_time, steps)
                    .map_err(|err| anyhow::anyhow!("model `{label}` at lead {k}: {err}"))?;
            } else {
                for (time, js) in &groups {
                    let cols: Vec<usize> = js.iter().flat_map(|&j| j * m..(j + 1) * m).collect();
                    let part = x.select_columns(cols.iter());
                    let next = forecaster
                        .ensemble(model.as_ref(), &part, time + lead_time, steps)
                        .map_err(|err| anyhow::anyhow!("model `{label}` at lead {k}: {err}"))?;
                    for (c, &col) in cols.iter().enumerate() {
                        x.set_column(col, &next.column(c));
                    }
                }
            }
            let mean = DMatrix::from_fn(n, s, |i, j| {
                (0..m).map(|r| x[(i, j * m + r)]).sum::<f64>() / m as f64
            });
            let (rmse, acc) = rmse_acc(&mean, truth_k, &clim);
            for (fs, (_, rows)) in scores.fields.iter_mut().zip(&blocks) {
                let r = rmse_rows(&mean, truth_k, rows.clone());
                fs.rmse.push(r);
                fs.spread_skill.push(if stochastic {
                    let mut var = 0.0;
                    for j in 0..s {
                        let members = x.view((rows.start, j * m), (rows.len(), m)).into_owned();
                        var +=
                            crate::metrics::ensemble_variance(&members).sum() / rows.len() as f64;
                    }
                    spread_skill((var / s as f64).sqrt(), r, m)
                } else {
                    f64::NAN
                });
            }
            scores.rmse.push(rmse);
            scores.acc.push(acc);
            scores.spectrum.push(spectrum_of(&x, &data.shape));
            if stochastic {
                let (mut crps, mut var) = (0.0, 0.0);
                let mut hist = RankHistogram::new(m);
                for j in 0..s {
                    let members = x.columns(j * m, m).into_owned();
                    let y: Vec<f64> = truth_k.column(j).iter().copied().collect();
                    crps += crps_ensemble(&members, &y);
                    hist.add(&members, &y);
                    var += crate::metrics::ensemble_variance(&members).sum() / n as f64;
                }
                let spread = (var / s as f64).sqrt();
                scores.crps.push(crps / s as f64);
                scores.spread.push(spread);
                scores.spread_skill.push(spread_skill(spread, rmse, m));
                scores.rank_histogram.push(hist.frequencies());
            } else {
                scores.crps.push(f64::NAN);
                scores.spread.push(f64::NAN);
                scores.spread_skill.push(f64::NAN);
            }
            bar.set(index * e.leads + k, label);
        }
        if e.free_run > 0 {
            let mut x = truth[0].columns(0, 1).into_owned();
            let (mut sum, mut sq, mut count) = (0.0, 0.0, 0usize);
            let mut finite = true;
            for k in 0..e.free_run {
                let time = data.times[starts[0].0] + k as f64 * data.interval;
                match forecaster.ensemble(model.as_ref(), &x, time, steps) {
                    Ok(next) => x = next,
                    Err(_) => {
                        finite = false;
                        break;
                    }
                }
                if k >= e.free_run / 2 {
                    sum += x.sum();
                    sq += x.iter().map(|v| v * v).sum::<f64>();
                    count += n;
                }
            }
            scores.free_run = Some(if finite && count > 0 {
                let mean = sum / count as f64;
                (mean, sq / count as f64 - mean * mean)
            } else {
                (f64::NAN, f64::NAN)
            });
        }
        models.push(scores);
    }
    bar.finish();
    let mut evaluation = Evaluation {
        interval: data.interval,
        models,
        truth_spectrum,
        climate,
        files: Vec::new(),
    };
    evaluation.files = write(&evaluation, config, out)?;
    // An earlier evaluation's plots that this one did not draw (e.g. the
    // rank histogram of an ensemble no longer evaluated) would be taken
    // for this one's.
    let kept: Vec<String> = evaluation
        .files
        .iter()
        .filter_map(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    folder.retire(&kept)?;
    Ok(evaluation)
}

/// The CSV, NetCDF and PNG files.
fn write(ev: &Evaluation, config: &EvaluateConfig, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let leads = ev.models[0].rmse.len();
    let mut files = Vec::new();
    let mut csv = String::from("model,lead,time,rmse,acc,crps,spread,spread_skill\n");
    for m in &ev.models {
        for k in 0..leads {
            csv += &format!(
                "{},{},{},{},{},{},{},{}\n",
                m.label,
                k + 1,
                (k + 1) as f64 * ev.interval,
                m.rmse[k],
                m.acc[k],
                m.crps[k],
                m.spread[k],
                m.spread_skill[k]
            );
        }
    }
    let path = out.join("evaluation.csv");
    crate::io::write_atomic(&path, csv.as_bytes())?;
    files.push(path);

    let labels: Vec<&str> = ev.models.iter().map(|m| m.label.as_str()).collect();
    let nm = ev.models.len();
    let bins = ev
        .models
        .iter()
        .find(|m| !m.rank_histogram.is_empty())
        .map_or(0, |m| m.rank_histogram[0].len());
    let wavenumbers = ev.truth_spectrum.first().map_or(0, Vec::len);
    let mut ds = crate::io::Dataset::new();
    ds.attr("Conventions", "CF-1.8")
        .attr(
            "title",
            "rime evaluation of forecast models against trajectories",
        )
        .attr("evaluation", config.path.display().to_string().as_str())
        .attr("model_labels", labels.join(" ").as_str())
        .attr("climate_mean", ev.climate.0)
        .attr("climate_variance", ev.climate.1)
        .dim("model", nm)
        .dim("lead", leads)
        .dim("wavenumber", wavenumbers.max(1));
    // The models' labels as a string coordinate of `model` (NC_CHAR over
    // `label_length`, which xarray decodes to text).
    let (chars, width) =
        crate::io::VarData::labels(&labels.iter().map(|l| l.to_string()).collect::<Vec<_>>());
    ds.dim("label_length", width);
    let mut model = crate::io::Variable::new("model", &["model", "label_length"], chars);
    model.attributes.extend([
        (
            "long_name".to_string(),
            crate::io::AttrValue::Text("model label".into()),
        ),
        (
            "_Encoding".to_string(),
            crate::io::AttrValue::Text("utf-8".into()),
        ),
    ]);
    ds.variables.push(model);
    ds.var_f64(
        "lead_time",
        &["lead"],
        (1..=leads).map(|k| k as f64 * ev.interval).collect(),
        &[("long_name", "forecast lead time"), ("units", "1")],
    );
    let per = |f: fn(&ModelScores) -> &Vec<f64>| -> Vec<f64> {
        ev.models
            .iter()
            .flat_map(|m| f(m).iter().copied())
            .collect()
    };
    for (name, long, values) in [
        (
            "rmse",
            "RMSE of the forecast (ensemble mean)",
            per(|m| &m.rmse),
        ),
        (
            "acc",
            "anomaly correlation with respect to the training climatology",
            per(|m| &m.acc),
        ),
        ("crps", "fair CRPS of the ensemble", per(|m| &m.crps)),
        (
            "spread",
            "ensemble spread (standard deviation, ddof 1)",
            per(|m| &m.spread),
        ),
        (
            "spread_skill",
            "spread-skill ratio times sqrt((M + 1) / M)",
            per(|m| &m.spread_skill),
        ),
    ] {
        ds.var_f64(
            name,
            &["model", "lead"],
            values,
            &[("long_name", long), ("units", "1")],
        );
    }
    if wavenumbers > 0 {
        let spectra: Vec<f64> = ev
            .models
            .iter()
            .flat_map(|m| m.spectrum.iter().flat_map(|s| s.iter().copied()))
            .collect();
        ds.var_f64(
            "spectrum",
            &["model", "lead", "wavenumber"],
            spectra,
            &[(
                "long_name",
                "mean power spectrum of the forecast states along the state",
            )],
        );
        ds.var_f64(
            "truth_spectrum",
            &["lead", "wavenumber"],
            ev.truth_spectrum.iter().flatten().copied().collect(),
            &[("long_name", "mean power spectrum of the true states")],
        );
    }
    if bins > 0 {
        ds.dim("bin", bins);
        let mut values = Vec::with_capacity(nm * leads * bins);
        for m in &ev.models {
            for k in 0..leads {
                match m.rank_histogram.get(k) {
                    Some(h) => values.extend(h),
                    None => values.extend(std::iter::repeat_n(f64::NAN, bins)),
                }
            }
        }
        ds.var_f64(
            "rank_histogram",
            &["model", "lead", "bin"],
            values,
            &[(
                "long_name",
                "frequency of the truth's rank among the members",
            )],
        );
    }
    let free: Vec<f64> = ev
        .models
        .iter()
        .flat_map(|m| {
            let (a, b) = m.free_run.unwrap_or((f64::NAN, f64::NAN));
            [a, b]
        })
        .collect();
    ds.dim("moment", 2);
    ds.var_f64(
        "free_run",
        &["model", "moment"],
        free,
        &[(
            "long_name",
            "mean and variance of the second half of a free run (NaN: not run or blew up)",
        )],
    );
    let path = out.join("evaluation.nc");
    crate::io::write_netcdf(&path, &ds, crate::io::NetcdfFormat::Classic)?;
    files.push(path);

    // Plots.
    // Log axes leave out zeros (a perfect model's RMSE).
    let lead_curves = |f: fn(&ModelScores) -> &Vec<f64>, log: bool| -> Vec<crate::plot::Curve> {
        ev.models
            .iter()
            .map(|m| crate::plot::Curve {
                name: m.label.clone(),
                points: f(m)
                    .iter()
                    .enumerate()
                    .map(|(k, v)| ((k + 1) as f64 * ev.interval, *v))
                    .filter(|p| p.1.is_finite() && (!log || p.1 > 0.0))
                    .collect(),
                exponent: None,
            })
            .filter(|c| !c.points.is_empty())
            .collect()
    };
    let spec = |y: &str, title: &str, log_y: bool| crate::plot::PlotSpec {
        x: "lead time".into(),
        y: y.into(),
        group: None,
        log: false,
        log_y,
        title: title.into(),
    };
    for (name, f, y, title, log_y) in [
        (
            "rmse.png",
            (|m: &ModelScores| &m.rmse) as fn(&ModelScores) -> &Vec<f64>,
            "RMSE",
            "forecast RMSE",
            true,
        ),
        (
            "acc.png",
            |m: &ModelScores| &m.acc,
            "anomaly correlation",
            "anomaly correlation",
            false,
        ),
        (
            "crps.png",
            |m: &ModelScores| &m.crps,
            "CRPS",
            "ensemble CRPS",
            true,
        ),
        (
            "spread_skill.png",
            |m: &ModelScores| &m.spread_skill,
            "spread / skill",
            "spread-skill ratio",
            false,
        ),
    ] {
        let curves = lead_curves(f, log_y);
        if curves.is_empty() {
            continue;
        }
        let path = out.join(name);
        crate::plot::draw(&curves, &spec(y, title, log_y), &path)?;
        files.push(path);
    }
    if wavenumbers > 1 {
        let last = leads - 1;
        let mut curves: Vec<crate::plot::Curve> = ev
            .models
            .iter()
            .filter(|m| m.label != "climatology")
            .map(|m| crate::plot::Curve {
                name: m.label.clone(),
                points: m.spectrum[last]
                    .iter()
                    .enumerate()
                    .skip(1)
                    .map(|(k, p)| (k as f64, *p))
                    .collect(),
                exponent: None,
            })
            .collect();
        curves.push(crate::plot::Curve {
            name: "truth".into(),
            points: ev.truth_spectrum[last]
                .iter()
                .enumerate()
                .skip(1)
                .map(|(k, p)| (k as f64, *p))
                .collect(),
            exponent: None,
        });
        let path = out.join("spectra.png");
        crate::plot::draw(
            &curves,
            &crate::plot::PlotSpec {
                x: "wavenumber".into(),
                y: "power".into(),
                group: None,
                log: false,
                log_y: true,
                title: format!("power spectra at lead {:.3}", leads as f64 * ev.interval),
            },
            &path,
        )?;
        files.push(path);
    }
    let hist: Vec<crate::plot::Curve> = ev
        .models
        .iter()
        .filter_map(|m| {
            m.rank_histogram.last().map(|h| crate::plot::Curve {
                name: m.label.clone(),
                points: h.iter().enumerate().map(|(b, f)| (b as f64, *f)).collect(),
                exponent: None,
            })
        })
        .collect();
    if !hist.is_empty() {
        let path = out.join("rank_histogram.png");
        crate::plot::draw(
            &hist,
            &crate::plot::PlotSpec {
                x: "rank of the truth".into(),
                y: "frequency".into(),
                group: None,
                log: false,
                log_y: false,
                title: format!("rank histogram at lead {:.3}", leads as f64 * ev.interval),
            },
            &path,
        )?;
        files.push(path);
    }
    Ok(files)
}

/// Distance of a histogram from flat: half the sum of `|f_i - 1/bins|`
/// (0 flat, towards 1 all in one bin).
pub fn departure_from_flat(frequencies: &[f64]) -> f64 {
    let b = frequencies.len().max(1) as f64;
    0.5 * frequencies.iter().map(|f| (f - 1.0 / b).abs()).sum::<f64>()
}

/// A Markdown table: per model the RMSE at the first, middle and last lead,
/// and for ensembles the spread-skill ratio, CRPS and the rank histogram's
/// departure from flat at the last lead.
pub fn table(ev: &Evaluation) -> String {
    let leads = ev.models[0].rmse.len();
    let mid = leads.div_ceil(2);
    let t = |k: usize| k as f64 * ev.interval;
    let mut s = format!(
        "| model | RMSE at {:.3} | RMSE at {:.3} | RMSE at {:.3} | ACC at {:.3} | spread-skill | CRPS | rank departure | free-run mean, variance |\n|---|---|---|---|---|---|---|---|---|\n",
        t(1),
        t(mid),
        t(leads),
        t(leads)
    );
    let f = |v: f64| {
        if v.is_finite() {
            format!("{v:.4}")
        } else {
            "—".into()
        }
    };
    for m in &ev.models {
        s += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            m.label,
            f(m.rmse[0]),
            f(m.rmse[mid - 1]),
            f(m.rmse[leads - 1]),
            f(m.acc[leads - 1]),
            f(m.spread_skill[leads - 1]),
            f(m.crps[leads - 1]),
            m.rank_histogram
                .last()
                .map_or("—".into(), |h| format!("{:.3}", departure_from_flat(h))),
            m.free_run
                .map_or("—".into(), |(a, b)| format!("{}, {}", f(a), f(b)))
        );
    }
    s += &format!(
        "\nClimate of the training split: mean {:.4}, variance {:.4}.\n",
        ev.climate.0, ev.climate.1
    );
    if ev.models.iter().any(|m| !m.fields.is_empty()) {
        s += &format!(
            "\nBy field:\n\n| model | field | RMSE at {:.3} | RMSE at {:.3} | RMSE at {:.3} | spread-skill at {:.3} |\n|---|---|---|---|---|---|\n",
            t(1),
            t(mid),
            t(leads),
            t(leads)
        );
        for m in &ev.models {
            for fs in &m.fields {
                s += &format!(
                    "| {} | {} | {} | {} | {} | {} |\n",
                    m.label,
                    fs.name,
                    f(fs.rmse[0]),
                    f(fs.rmse[mid - 1]),
                    f(fs.rmse[leads - 1]),
                    f(fs.spread_skill[leads - 1])
                );
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plane wave of 3 cycles across a 16 x 12 field puts its power
    /// (half its squared amplitude) in ring 3; on two fields the rings add,
    /// and a 1-D state keeps the spectrum along the state.
    #[test]
    fn two_dimensional_spectra_are_radial_and_add_over_fields() {
        let (ny, nx) = (12, 16);
        let wave: Vec<f64> = (0..ny * nx)
            .map(|p| (2.0 * std::f64::consts::PI * 3.0 * (p % nx) as f64 / nx as f64).cos())
            .collect();
        let x = DMatrix::from_column_slice(ny * nx, 1, &wave);
        let s = spectrum_of(&x, &[ny, nx]);
        assert_eq!(s.len(), 9);
        assert!((s[3] - 0.5).abs() < 1e-12, "{s:?}");
        assert!(s.iter().enumerate().all(|(k, p)| k == 3 || p.abs() < 1e-20));
        let two: Vec<f64> = wave.iter().chain(&wave).copied().collect();
        let s2 = spectrum_of(
            &DMatrix::from_column_slice(2 * ny * nx, 1, &two),
            &[2, ny, nx],
        );
        assert!((s2[3] - 1.0).abs() < 1e-12, "{s2:?}");
        assert_eq!(spectrum_of(&x, &[ny * nx]).len(), ny * nx / 2 + 1);
    }
}
