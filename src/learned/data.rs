//! Training data: trajectories of any [`Model`] written to NetCDF by
//! `rime simulate`, and read back (from that file or any NetCDF file with the
//! same layout) as [`Trajectories`].
//!
//! Layout of a trajectory file (CF, classic NetCDF):
//! - `time(time)`: model time of each record;
//! - `split(time)`: 0 train, 1 validation, 2 test (contiguous blocks in
//!   time, so a validation sample never sits between two training samples);
//! - one variable per field of the model's geometry, `state` (one field) or
//!   `state_<field>`, over `(time, trajectory, field dims...)`: independent
//!   runs from different initial states, stepped as one batch;
//! - global attributes `rime_model` (the `[model]` table as TOML, so an
//!   emulator can rebuild the geometry it emulates), `record_interval`
//!   (model time between records) and `time_step`.
//!
//! A user's own file works if its state variables are over `(time,
//! [trajectory,] ...)`: every such variable (other than `split`) is a field,
//! concatenated in file order; without `split` the records are split by
//! time with the fractions the caller gives.

use std::path::{Path, PathBuf};

use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};

use crate::core::Forecaster;
use crate::device::{DeviceChoice, Precision};
use crate::experiment::config::InitialConfig;
use crate::experiment::registry::ModelConfig;
use crate::io::stream::StreamAttr;
use crate::io::{AttrValue, NetcdfFormat};

use super::progress::Progress;

/// The `[simulate]` table of a simulation file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulateSettings {
    /// Independent runs, stepped together as one batch.
    #[serde(default = "one")]
    pub trajectories: usize,
    /// Records kept per trajectory (after the spin-up).
    pub records: usize,
    /// Model steps between records.
    #[serde(default = "one")]
    pub steps_per_record: usize,
    /// Model steps run and discarded before the first record.
    #[serde(default)]
    pub spinup_steps: usize,
    /// Seed of the initial states (and of the model's noise, if stochastic).
    #[serde(default)]
    pub seed: u64,
    /// Fractions of the records (in time order) for training and validation;
    /// the rest is the test split.
    #[serde(default = "default_split")]
    pub split: [f64; 2],
    /// Where the model runs.
    #[serde(default)]
    pub device: DeviceChoice,
    /// Its float type (default: the device's).
    #[serde(default)]
    pub precision: Option<Precision>,
    /// Use the model's hand-written host path where it has one.
    #[serde(default = "yes")]
    pub host_fast_path: bool,
}

fn one() -> usize {
    1
}

fn yes() -> bool {
    true
}

fn default_split() -> [f64; 2] {
    [0.8, 0.1]
}

/// A published range that a diagnostic of the last record should fall in
/// (`[expected.<diagnostic>]` of a simulation file), and where it comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedRange {
    /// Lower end.
    pub min: f64,
    /// Upper end.
    pub max: f64,
    /// The publication and how the range was read from it.
    #[serde(default)]
    pub source: Option<String>,
}

/// A diagnostic of the last record against its expected range.
#[derive(Clone, Debug, PartialEq)]
pub struct ExpectedCheck {
    /// The diagnostic's name (e.g. `boundary_layer_height`).
    pub name: String,
    /// Its values, one per trajectory (and column).
    pub values: Vec<f64>,
    /// The range.
    pub range: ExpectedRange,
}

impl ExpectedCheck {
    /// Whether every value falls in the range.
    pub fn inside(&self) -> bool {
        self.values
            .iter()
            .all(|v| *v >= self.range.min && *v <= self.range.max)
    }
}

/// A simulation file (`rime simulate FILE`): the model, its initial states
/// and how long to run it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulateConfig {
    /// Free text, written to the file's `comment`.
    #[serde(default)]
    pub description: Option<String>,
    /// The model, as in an experiment file.
    pub model: ModelConfig,
    /// Initial states: draws of `N(mean, std^2 I)`, one per trajectory.
    pub initial: InitialConfig,
    /// Length and splits.
    pub simulate: SimulateSettings,
    /// Published ranges of the model's diagnostics at the last record,
    /// keyed by diagnostic name; reported by `rime simulate`.
    #[serde(default)]
    pub expected: std::collections::BTreeMap<String, ExpectedRange>,
}

impl SimulateConfig {
    /// Reads and checks a simulation file; errors name the file and key.
    ///
    /// # Errors
    /// An unreadable file, malformed TOML, an unknown key or a bad value.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let config: Self = super::read_toml(path)?;
        let s = &config.simulate;
        let bad = |key: &str, reason: String| {
            format!("{}: key `simulate.{key}`: {reason}", path.display())
        };
        if s.records < 2 {
            return Err(bad(
                "records",
                format!("must be at least 2, got {}", s.records),
            ));
        }
        if s.trajectories == 0 {
            return Err(bad("trajectories", "must be at least 1".into()));
        }
        if s.steps_per_record == 0 {
            return Err(bad("steps_per_record", "must be at least 1".into()));
        }
        let [a, b] = s.split;
        // [0, 0]: a file of test records only (a held-out forcing).
        if !(a >= 0.0 && b >= 0.0 && a + b <= 1.0) {
            return Err(bad(
                "split",
                format!(
                    "[train, validation] fractions must be at least 0 and sum to at most 1, got [{a}, {b}]"
                ),
            ));
        }
        for (name, r) in &config.expected {
            if !(r.min.is_finite() && r.max.is_finite() && r.min <= r.max) {
                return Err(format!(
                    "{}: key `expected.{name}`: needs finite min <= max, got [{}, {}]",
                    path.display(),
                    r.min,
                    r.max
                ));
            }
        }
        if let Err((key, reason)) = config.initial.std.check() {
            return Err(format!("{}: key `{key}`: {reason}", path.display()));
        }
        Ok(config)
    }
}

/// The split code of record `k` of `records` for `[train, validation]`
/// fractions: 0, 1 or 2.
pub fn split_code(k: usize, records: usize, split: [f64; 2]) -> i32 {
    let train = (split[0] * records as f64).round() as usize;
    let valid = ((split[0] + split[1]) * records as f64).round() as usize;
    if k < train {
        0
    } else if k < valid {
        1
    } else {
        2
    }
}

/// What a simulation wrote.
#[derive(Clone, Debug)]
pub struct SimulateReport {
    /// The file.
    pub path: PathBuf,
    /// State size.
    pub n: usize,
    /// Records per trajectory.
    pub records: usize,
    /// Trajectories.
    pub trajectories: usize,
    /// Model time between records.
    pub interval: f64,
    /// Wall time in seconds.
    pub seconds: f64,
    /// The model's diagnostics of the last record against `[expected]`.
    pub checks: Vec<ExpectedCheck>,
    /// Every diagnostic of the last record (name, one value per trajectory
    /// and column), whether expected or not.
    pub diagnostics: Vec<(String, Vec<f64>)>,
}

/// Runs the model of `config` and streams its trajectories to `out`.
///
/// # Errors
/// A model that cannot be built, a run that blows up (named by its record
/// and time), or a file that cannot be written.
pub fn simulate(
    config: &SimulateConfig,
    file: &Path,
    out: &Path,
    progress: bool,
    overwrite: bool,
) -> anyhow::Result<SimulateReport> {
    let started = std::time::Instant::now();
    // The output first: a file that cannot be written, or that rime did
    // not write, is refused before any computing.
    let _folder = crate::io::folder::OutputFolder::claim_file(out, "rime simulate", overwrite)?;
    let s = &config.simulate;
    let device = crate::device::select(s.device, s.precision)?;
    let model = config
        .model
        .init(&device)
        .map_err(|e| anyhow::anyhow!("{}: [model]: {e}", file.display()))?;
    let n = model.size();
    let dt = model.dt();
    let forecaster = Forecaster {
        device: device.clone(),
        host_path: s.host_fast_path,
        noise_stream: crate::rng::key(s.seed, "simulate-noise"),
    };
    config
        .initial
        .check_model(model.as_ref())
        .map_err(|(key, e)| anyhow::anyhow!("{}: key `{key}`: {e}", file.display()))?;
    // Keys of a twin's [initial] that a simulation has no use for would
    // otherwise be read and ignored.
    for (key, set) in [
        ("initial.truth_std", config.initial.truth_std.is_some()),
        ("initial.sample", config.initial.sample.is_some()),
    ] {
        if set {
            anyhow::bail!(
                "{}: key `{key}`: does not apply to rime simulate (every trajectory starts from a draw of mean and std)",
                file.display()
            );
        }
    }
    let mut states = config.initial.distribution(model.as_ref()).sample(
        s.trajectories,
        &mut crate::rng::stream(s.seed, "simulate-initial"),
    );
    let step = |x: &DMatrix<f64>, time: f64, steps: usize| {
        forecaster.ensemble(model.as_ref(), x, time, steps).map_err(|e| {
            anyhow::anyhow!(
                "{}: {e}; the model's dt = {dt} may be too large, or the initial state too far from the attractor",
                file.display()
            )
        })
    };
    let mut time = 0.0;
    if s.spinup_steps > 0 {
        states = step(&states, time, s.spinup_steps)?;
        time += s.spinup_steps as f64 * dt;
    }
    let interval = s.steps_per_record as f64 * dt;
    let model_toml = toml::to_string(&config.model).unwrap_or_default();
    let mut attributes: Vec<(String, StreamAttr)> = vec![
        ("Conventions".into(), "CF-1.8".into()),
        (
            "title".into(),
            format!("rime trajectories of {}", model.name())
                .as_str()
                .into(),
        ),
        (
            "source".into(),
            format!("rime {}", env!("CARGO_PKG_VERSION"))
                .as_str()
                .into(),
        ),
        (
            "simulation".into(),
            file.display().to_string().as_str().into(),
        ),
        ("model".into(), model.name().into()),
        ("rime_model".into(), model_toml.as_str().into()),
        ("seed".into(), s.seed.to_string().as_str().into()),
        ("time_step".into(), dt.into()),
        ("record_interval".into(), interval.into()),
        ("spinup_steps".into(), (s.spinup_steps as i32).into()),
        (
            "split_fractions".into(),
            StreamAttr::F64(vec![s.split[0], s.split[1]]),
        ),
    ];
    if let Some(d) = &config.description {
        attributes.push(("comment".into(), d.as_str().into()));
    }
    let forcing_at = |time: f64| model.forcing(time);
    let mut writer = crate::experiment::output::TrajectoryFile::create(
        out,
        model.geometry(),
        s.trajectories,
        attributes,
        NetcdfFormat::Classic,
        &forcing_at(time),
    )?;
    let mut bar = Progress::new(progress, s.records, "records");
    for k in 0..s.records {
        if k > 0 {
            states = step(&states, time, s.steps_per_record)
                .map_err(|e| e.context(format!("record {k} of {}", s.records)))?;
            time += interval;
        }
        let forcing = forcing_at(time);
        let slices: Vec<&[f64]> = forcing.iter().map(|f| f.values.as_slice()).collect();
        writer.append(k, time, split_code(k, s.records, s.split), &states, &slices)?;
        bar.set(k + 1, "");
    }
    bar.finish();
    let path = writer.finish()?;
    let diagnostics: Vec<(String, Vec<f64>)> = model
        .diagnostics(crate::device::ensemble_to_tensor(&states, &device), time)
        .into_iter()
        .map(|(name, values)| (name.to_string(), values))
        .collect();
    let checks = expected_checks(config, model.as_ref(), &diagnostics)?;
    Ok(SimulateReport {
        path,
        n,
        records: s.records,
        trajectories: s.trajectories,
        interval,
        seconds: started.elapsed().as_secs_f64(),
        checks,
        diagnostics,
    })
}

/// The model's `diagnostics` named in `[expected]`.
///
/// # Errors
/// An expected diagnostic the model does not compute.
fn expected_checks(
    config: &SimulateConfig,
    model: &dyn crate::core::Model,
    diagnostics: &[(String, Vec<f64>)],
) -> anyhow::Result<Vec<ExpectedCheck>> {
    config
        .expected
        .iter()
        .map(|(name, range)| {
            let values = diagnostics
                .iter()
                .find(|(d, _)| d == name)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| {
                    let known: Vec<&str> = diagnostics.iter().map(|(d, _)| d.as_str()).collect();
                    anyhow::anyhow!(
                        "key `expected.{name}`: model `{}` has no such diagnostic (it has: {})",
                        model.name(),
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    )
                })?;
            Ok(ExpectedCheck {
                name: name.clone(),
                values,
                range: range.clone(),
            })
        })
        .collect()
}

/// Trajectories read back from a NetCDF file.
#[derive(Clone, Debug)]
pub struct Trajectories {
    /// The file.
    pub path: PathBuf,
    /// Model time of each record.
    pub times: Vec<f64>,
    /// Split code of each record (0 train, 1 validation, 2 test).
    pub split: Vec<i32>,
    /// Independent runs.
    pub runs: usize,
    /// State size.
    pub n: usize,
    /// The state's shape: the dimensions of its one field (after time and
    /// trajectory), `[fields, ny, nx]` for several 2-D fields of one shape,
    /// or `[n]`.
    pub shape: Vec<usize>,
    /// The state variables read, in order.
    pub variables: Vec<String>,
    /// Values, `values[(t * runs + r) * n + i]`.
    pub values: Vec<f64>,
    /// Model time between records.
    pub interval: f64,
    /// The `[model]` table the file was simulated with (`rime_model`), if any.
    pub model: Option<String>,
    /// The forcing variables (`forcing_<name>` over `time` and a field's
    /// dimensions, shared by the runs), in file order.
    pub forcing_variables: Vec<String>,
    /// Values of each forcing variable per record (all the same length),
    /// `forcing[(t * forcing_variables.len() + g) * forcing_len + i]`.
    pub forcing: Vec<f64>,
    /// Length of one forcing variable.
    pub forcing_len: usize,
    /// Which file each record came from: records of different files
    /// (read together by [`Trajectories::read_files`]) never make one
    /// sample.
    pub segment: Vec<usize>,
}

impl Trajectories {
    /// Reads a trajectory file. Records are split by the file's `split`
    /// variable, or by time with `fallback_split` where it has none.
    ///
    /// # Errors
    /// A missing or unreadable file, or one without state variables over
    /// `(time, ...)`; messages name the file and variable.
    pub fn read(path: &Path, fallback_split: [f64; 2]) -> Result<Self, String> {
        Self::read_variables(path, fallback_split, &[])
    }

    /// Reads the state variables `variables` of a trajectory file, in that
    /// order (all of them, in file order, if empty): the slow variables of a
    /// two-scale run, for instance. A file's `rime_model` then describes a
    /// larger state, so it is kept only when every state variable is read.
    ///
    /// # Errors
    /// As [`Trajectories::read`], and a requested variable that is not a
    /// state variable of the file (the message lists those there are).
    pub fn read_variables(
        path: &Path,
        fallback_split: [f64; 2],
        variables: &[String],
    ) -> Result<Self, String> {
        #[cfg(feature = "netcdf")]
        let ds = crate::io::read_netcdf(path).map_err(|e| e.to_string())?;
        #[cfg(not(feature = "netcdf"))]
        let ds = crate::io::read_classic(path).map_err(|e| e.to_string())?;
        let err = |what: String| format!("{}: {what}", path.display());
        let times = ds
            .variable("time")
            .ok_or_else(|| err("no `time` variable".into()))?
            .data
            .to_f64();
        let records = times.len();
        if records < 2 {
            return Err(err(format!("{records} record(s): at least 2 are needed")));
        }
        // Records one interval apart in increasing time: a reversed,
        // repeated or missing record would pair states that are not one
        // step apart.
        let step = times[1] - times[0];
        for k in 1..records {
            let dt = times[k] - times[k - 1];
            if !(dt > 0.0) {
                return Err(err(format!(
                    "`time` does not increase at record {k} ({} after {}): records must be in time order without repeats",
                    times[k],
                    times[k - 1]
                )));
            }
            if (dt - step).abs() > 1e-6 * step.abs() {
                return Err(err(format!(
                    "`time` jumps by {dt} at record {k} where the records are {step} apart: a gap (or uneven records) would pair states that are not one step apart"
                )));
            }
        }
        let runs = ds.dim_len("trajectory").unwrap_or(1);
        let wanted = variables;
        let mut variables = Vec::new();
        let mut fields: Vec<(usize, Vec<f64>)> = Vec::new();
        let mut shapes: Vec<Vec<usize>> = Vec::new();
        let mut forcing_variables = Vec::new();
        let mut forcing_fields: Vec<Vec<f64>> = Vec::new();
        for v in &ds.variables {
            if v.dimensions.first().map(String::as_str) != Some("time")
                || v.dimensions.len() < 2
                || v.name == "split"
            {
                continue;
            }
            let with_runs = v.dimensions.get(1).map(String::as_str) == Some("trajectory");
            if v.name.starts_with("forcing_") {
                if with_runs {
                    return Err(err(format!(
                        "forcing variable `{}` has a `trajectory` dimension; forcing is one field per record, shared by the trajectories",
                        v.name
                    )));
                }
                forcing_variables.push(v.name.clone());
                forcing_fields.push(v.data.to_f64());
                continue;
            }
            let dims: Vec<usize> = v.dimensions[if with_runs { 2 } else { 1 }..]
                .iter()
                .map(|d| ds.dim_len(d).unwrap_or(1))
                .collect();
            let inner: usize = dims.iter().product();
            if !with_runs && runs > 1 {
                return Err(err(format!(
                    "variable `{}` has no `trajectory` dimension but the file has {runs} trajectories",
                    v.name
                )));
            }
            variables.push(v.name.clone());
            fields.push((inner, v.data.to_f64()));
            shapes.push(dims);
        }
        if fields.is_empty() {
            return Err(err(
                "no state variable over (time, [trajectory,] ...) found".into(),
            ));
        }
        let every_variable = wanted.is_empty() || {
            let mut all = variables.clone();
            let mut some = wanted.to_vec();
            all.sort();
            some.sort();
            all == some
        };
        if !wanted.is_empty() {
            let mut picked = Vec::with_capacity(wanted.len());
            for name in wanted {
                if picked.iter().any(|(p, _): &(String, _)| p == name) {
                    return Err(err(format!("variable `{name}` is asked for twice")));
                }
                let k = variables.iter().position(|v| v == name).ok_or_else(|| {
                    err(format!(
                        "no state variable `{name}`; the file has {}",
                        variables.join(", ")
                    ))
                })?;
                picked.push((
                    name.clone(),
                    (
                        std::mem::take(&mut fields[k]),
                        std::mem::take(&mut shapes[k]),
                    ),
                ));
            }
            let (names, parts): (Vec<_>, Vec<_>) = picked.into_iter().unzip();
            variables = names;
            (fields, shapes) = parts.into_iter().unzip();
        }
        let n: usize = fields.iter().map(|f| f.0).sum();
        // One field: its shape; several 2-D fields of one shape: `[fields,
        // ny, nx]` (channels of a 2-D network); otherwise a line.
        let shape = match shapes.as_slice() {
            [one] if !one.is_empty() => one.clone(),
            [first, rest @ ..] if first.len() == 2 && rest.iter().all(|s| s == first) => {
                let mut s = vec![shapes.len()];
                s.extend(first);
                s
            }
            _ => vec![n],
        };
        let forcing_len = forcing_fields.first().map_or(0, |f| f.len() / records);
        if let Some(k) = forcing_fields
            .iter()
            .position(|f| f.len() != forcing_len * records)
        {
            return Err(err(format!(
                "forcing variable `{}` has {} values a record, `{}` {forcing_len}: all forcing variables must have one size",
                forcing_variables[k],
                forcing_fields[k].len() / records,
                forcing_variables[0]
            )));
        }
        let g = forcing_fields.len();
        let mut forcing = vec![0.0; records * g * forcing_len];
        for (k, f) in forcing_fields.iter().enumerate() {
            for t in 0..records {
                forcing[(t * g + k) * forcing_len..(t * g + k + 1) * forcing_len]
                    .copy_from_slice(&f[t * forcing_len..(t + 1) * forcing_len]);
            }
        }
        if let Some(bad) = forcing.iter().position(|v| !v.is_finite()) {
            return Err(err(format!(
                "non-finite forcing at record {}",
                bad / (g * forcing_len).max(1)
            )));
        }
        let mut values = vec![0.0; records * runs * n];
        let mut offset = 0;
        for (len, data) in &fields {
            for tr in 0..records * runs {
                values[tr * n + offset..tr * n + offset + len]
                    .copy_from_slice(&data[tr * len..(tr + 1) * len]);
            }
            offset += len;
        }
        if let Some(bad) = values.iter().position(|v| !v.is_finite()) {
            return Err(err(format!(
                "non-finite value at record {} (a fill value or a blown-up run?)",
                bad / (runs * n)
            )));
        }
        let split = match ds.variable("split") {
            Some(v) => v.data.to_f64().iter().map(|&c| c as i32).collect(),
            None => (0..records)
                .map(|k| split_code(k, records, fallback_split))
                .collect(),
        };
        let interval = match ds.attribute("record_interval") {
            Some(&AttrValue::F64(v)) => v,
            _ => times[1] - times[0],
        };
        let model = match ds.attribute("rime_model") {
            Some(AttrValue::Text(t)) if !t.is_empty() && every_variable => Some(t.clone()),
            _ => None,
        };
        Ok(Self {
            path: path.to_path_buf(),
            times,
            split,
            runs,
            n,
            shape,
            variables,
            values,
            interval,
            model,
            forcing_variables,
            forcing,
            forcing_len,
            segment: vec![0; records],
        })
    }

    /// Reads several trajectory files of the same layout (variables, runs,
    /// record interval, forcing variables) as one: the records of each
    /// file follow those of the one before, each file's split as its own
    /// `split` variable (or `fallback_split`) says, and no sample spans
    /// two files. Runs under different forcing (cyclones on other tracks)
    /// go in different files: the files' splits then keep whole forcings
    /// out of training.
    ///
    /// # Errors
    /// As [`read_variables`](Self::read_variables), and files that do not
    /// match the first (named, with what differs).
    pub fn read_files(
        paths: &[PathBuf],
        fallback_split: [f64; 2],
        variables: &[String],
    ) -> Result<Self, String> {
        let (first, rest) = paths
            .split_first()
            .ok_or_else(|| "no trajectory file given".to_string())?;
        let mut all = Self::read_variables(first, fallback_split, variables)?;
        for (k, path) in rest.iter().enumerate() {
            let next = Self::read_variables(path, fallback_split, variables)?;
            let differ = |what: &str, a: String, b: String| -> Result<(), String> {
                if a == b {
                    Ok(())
                } else {
                    Err(format!(
                        "{}: {what} {b} does not match {}'s {a}",
                        path.display(),
                        first.display()
                    ))
                }
            };
            differ(
                "variables",
                format!("{:?} {:?}", all.variables, all.shape),
                format!("{:?} {:?}", next.variables, next.shape),
            )?;
            differ("trajectories", all.runs.to_string(), next.runs.to_string())?;
            differ(
                "forcing",
                format!("{:?} of {}", all.forcing_variables, all.forcing_len),
                format!("{:?} of {}", next.forcing_variables, next.forcing_len),
            )?;
            if (next.interval - all.interval).abs() > 1e-9 * all.interval.abs() {
                differ(
                    "record interval",
                    all.interval.to_string(),
                    next.interval.to_string(),
                )?;
            }
            if all.model != next.model {
                all.model = None;
            }
            all.times.extend(next.times);
            all.split.extend(next.split);
            all.values.extend(next.values);
            all.forcing.extend(next.forcing);
            all.segment
                .extend(std::iter::repeat_n(k + 1, next.segment.len()));
        }
        Ok(all)
    }

    /// The forcing fields at record `t`, one after the other (empty
    /// without forcing).
    pub fn forcing_at(&self, t: usize) -> &[f64] {
        let m = self.forcing_variables.len() * self.forcing_len;
        &self.forcing[t * m..(t + 1) * m]
    }

    /// Fields of the state: several for `[fields, ny, nx]` data, else 1.
    pub fn fields(&self) -> usize {
        match self.shape.as_slice() {
            [f, _, _] => *f,
            _ => 1,
        }
    }

    /// Whether records `t` and `t + 1` follow each other in one file.
    fn continues(&self, t: usize) -> bool {
        t + 1 < self.records() && self.segment[t + 1] == self.segment[t]
    }

    /// Mean and standard deviation of each forcing variable over the
    /// training records (pooled over its points).
    pub fn forcing_statistics(&self) -> (Vec<f64>, Vec<f64>) {
        let g = self.forcing_variables.len();
        let (mut sum, mut sq) = (vec![0.0; g], vec![0.0; g]);
        let mut count = 0;
        for t in (0..self.records()).filter(|&t| self.split[t] == 0) {
            for (k, f) in self
                .forcing_at(t)
                .chunks(self.forcing_len.max(1))
                .enumerate()
            {
                sum[k] += f.iter().sum::<f64>();
                sq[k] += f.iter().map(|v| v * v).sum::<f64>();
            }
            count += self.forcing_len;
        }
        moments(&sum, &sq, count)
    }

    /// Number of records.
    pub fn records(&self) -> usize {
        self.times.len()
    }

    /// The state of run `r` at record `t`.
    pub fn state(&self, t: usize, r: usize) -> &[f64] {
        let at = (t * self.runs + r) * self.n;
        &self.values[at..at + self.n]
    }

    /// The samples `(t, r)` of split `code` whose records `t..=t + lead`
    /// all belong to that split.
    pub fn samples(&self, code: i32, lead: usize) -> Vec<(usize, usize)> {
        let records = self.records();
        let mut out = Vec::new();
        for t in 0..records.saturating_sub(lead) {
            if (t..=t + lead).all(|k| self.split[k] == code)
                && (t..t + lead).all(|k| self.continues(k))
            {
                out.extend((0..self.runs).map(|r| (t, r)));
            }
        }
        out
    }

    /// Mean and standard deviation of every variable over the training
    /// records (in f64), and those of the one-record increments.
    pub fn statistics(&self) -> Statistics {
        let n = self.n;
        let mut sum = vec![0.0; n];
        let mut sq = vec![0.0; n];
        let mut dsum = vec![0.0; n];
        let mut dsq = vec![0.0; n];
        let (mut count, mut dcount) = (0usize, 0usize);
        for t in 0..self.records() {
            if self.split[t] != 0 {
                continue;
            }
            let next = self.continues(t) && self.split[t + 1] == 0;
            for r in 0..self.runs {
                let x = self.state(t, r);
                for i in 0..n {
                    sum[i] += x[i];
                    sq[i] += x[i] * x[i];
                }
                count += 1;
                if next {
                    let y = self.state(t + 1, r);
                    for i in 0..n {
                        let d = y[i] - x[i];
                        dsum[i] += d;
                        dsq[i] += d * d;
                    }
                    dcount += 1;
                }
            }
        }
        let (mean, std) = moments(&sum, &sq, count);
        let (increment_mean, increment_std) = moments(&dsum, &dsq, dcount);
        Statistics {
            mean,
            std,
            increment_mean,
            increment_std,
        }
    }
}

/// Mean and standard deviation, per variable, from sums and sums of
/// squares over `count` values.
pub(crate) fn moments(sum: &[f64], sq: &[f64], count: usize) -> (Vec<f64>, Vec<f64>) {
    let c = count.max(1) as f64;
    let mean: Vec<f64> = sum.iter().map(|v| v / c).collect();
    let std = sq
        .iter()
        .zip(&mean)
        .map(|(q, m)| (q / c - m * m).max(0.0).sqrt())
        .collect();
    (mean, std)
}

/// Per-variable moments of the training split.
#[derive(Clone, Debug, PartialEq)]
pub struct Statistics {
    /// Mean of the states.
    pub mean: Vec<f64>,
    /// Standard deviation of the states.
    pub std: Vec<f64>,
    /// Mean of the one-record increments.
    pub increment_mean: Vec<f64>,
    /// Standard deviation of the one-record increments.
    pub increment_std: Vec<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// `rime simulate` writes what the model produces: the records read
    /// back equal a direct forecast of the same initial states, the split is
    /// contiguous in time, and the model table survives for the emulator.
    #[test]
    fn simulated_trajectories_read_back_as_the_model_ran_them() {
        let dir = std::env::temp_dir().join(format!("rime-sim-{}", std::process::id()));
        let file = write(
            &dir,
            "sim.toml",
            "[model]\nname = \"lorenz96\"\nsize = 8\n\
             [initial]\nmean = 8.0\nstd = 1.0\n\
             [simulate]\ntrajectories = 3\nrecords = 20\nsteps_per_record = 2\nspinup_steps = 5\nseed = 4\nsplit = [0.5, 0.25]\n",
        );
        let config = SimulateConfig::from_file(&file).unwrap();
        let out = dir.join("data/l96.nc");
        let report = simulate(&config, &file, &out, false, false).unwrap();
        assert_eq!(report.path, out);
        let data = Trajectories::read(&out, [0.8, 0.1]).unwrap();
        assert_eq!((data.records(), data.runs, data.n), (20, 3, 8));
        assert_eq!(data.variables, vec!["state".to_string()]);
        assert_eq!(data.split[..10], [0; 10]);
        assert_eq!(data.split[10..15], [1; 5]);
        assert_eq!(data.split[15..], [2; 5]);
        assert!((data.interval - 0.1).abs() < 1e-15);
        let model_toml = data.model.clone().unwrap();
        assert!(model_toml.contains("lorenz96"), "{model_toml}");

        // The same states from a direct run.
        let device = crate::device::cpu_f64();
        let model = config.model.init(&device).unwrap();
        let f = Forecaster::new(device);
        let x0 = config
            .initial
            .distribution(model.as_ref())
            .sample(3, &mut crate::rng::stream(4, "simulate-initial"));
        let x = f.ensemble(model.as_ref(), &x0, 0.0, 5).unwrap();
        let x = f.ensemble(model.as_ref(), &x, 0.25, 2 * 7).unwrap();
        for r in 0..3 {
            assert_eq!(data.state(7, r), x.column(r).as_slice());
        }
        assert!((data.times[7] - (0.25 + 0.7)).abs() < 1e-12);
        // Samples stay inside their split.
        let valid = data.samples(1, 2);
        assert_eq!(valid.len(), 3 * 3);
        assert!(valid.iter().all(|&(t, _)| (10..=12).contains(&t)));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn bad_simulation_files_name_the_key() {
        let dir = std::env::temp_dir().join(format!("rime-sim-bad-{}", std::process::id()));
        let base = "[model]\nname = \"lorenz96\"\nsize = 40\n[initial]\nmean = 8.0\nstd = 1.0\n";
        let f = write(&dir, "a.toml", &format!("{base}[simulate]\nrecords = 1\n"));
        let e = SimulateConfig::from_file(&f).unwrap_err();
        assert!(
            e.contains("simulate.records") && e.contains("a.toml"),
            "{e}"
        );
        let f = write(
            &dir,
            "b.toml",
            &format!("{base}[simulate]\nrecords = 5\nsplit = [0.9, 0.2]\n"),
        );
        let e = SimulateConfig::from_file(&f).unwrap_err();
        assert!(e.contains("simulate.split"), "{e}");
        let f = write(
            &dir,
            "c.toml",
            &format!("{base}[simulate]\nrecords = 5\nrecord = 3\n"),
        );
        let e = SimulateConfig::from_file(&f).unwrap_err();
        assert!(e.contains("record"), "{e}");
        let e = Trajectories::read(&dir.join("missing.nc"), [0.8, 0.1]).unwrap_err();
        assert!(e.contains("missing.nc"), "{e}");
        let f = write(
            &dir,
            "d.toml",
            &format!("{base}[simulate]\nrecords = 5\n[expected.x]\nmin = 2.0\nmax = 1.0\n"),
        );
        let e = SimulateConfig::from_file(&f).unwrap_err();
        assert!(e.contains("expected.x"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }

    /// `[initial] mean = "model"` starts from the model's own profiles, and
    /// `[expected]` ranges are checked against the model's diagnostics of
    /// the last record; a model without them, or an unknown diagnostic, is
    /// an error that names the key.
    #[test]
    fn expected_ranges_are_checked_against_the_model_diagnostics() {
        let dir = std::env::temp_dir().join(format!("rime-sim-expected-{}", std::process::id()));
        let column = "[model]\nname = \"boundary_layer\"\nlevels = 8\n\
             [initial]\nmean = \"model\"\nstd = 0.0\n\
             [simulate]\nrecords = 2\nsteps_per_record = 5\nsplit = [1.0, 0.0]\n";
        let f = write(
            &dir,
            "column.toml",
            &format!(
                "{column}[expected.friction_velocity]\nmin = 0.0\nmax = 10.0\n\
                 [expected.jet_speed]\nmin = 100.0\nmax = 200.0\n"
            ),
        );
        let config = SimulateConfig::from_file(&f).unwrap();
        let report = simulate(&config, &f, &dir.join("column.nc"), false, false).unwrap();
        assert_eq!(report.checks.len(), 2);
        let check = |name: &str| report.checks.iter().find(|c| c.name == name).unwrap();
        assert!(check("friction_velocity").inside());
        assert!(check("friction_velocity").values[0] > 0.0);
        assert!(!check("jet_speed").inside());
        let f = write(
            &dir,
            "unknown.toml",
            &format!("{column}[expected.rmse]\nmin = 0.0\nmax = 1.0\n"),
        );
        let config = SimulateConfig::from_file(&f).unwrap();
        let e = simulate(&config, &f, &dir.join("unknown.nc"), false, false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("expected.rmse") && e.contains("jet_speed"),
            "{e}"
        );
        let f = write(
            &dir,
            "l96.toml",
            "[model]\nname = \"lorenz96\"\nsize = 8\n[initial]\nmean = \"model\"\nstd = 0.0\n\
             [simulate]\nrecords = 2\n",
        );
        let config = SimulateConfig::from_file(&f).unwrap();
        let e = simulate(&config, &f, &dir.join("l96.nc"), false, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("initial.mean") && e.contains("lorenz96"), "{e}");
        // A twin's [initial] keys that a simulation would ignore.
        let f = write(
            &dir,
            "sampled.toml",
            "[model]\nname = \"lorenz96\"\nsize = 8\n[initial]\nmean = 8.0\nstd = 1.0\n\
             [initial.sample]\nspinup_cycles = 2\ncount = 4\nspacing = 1\n\
             [simulate]\nrecords = 2\n",
        );
        let config = SimulateConfig::from_file(&f).unwrap();
        let e = simulate(&config, &f, &dir.join("sampled.nc"), false, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("initial.sample"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
