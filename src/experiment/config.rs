//! The experiment file schema (TOML).
//!
//! ```toml
//! [model]             # name = "lorenz63" | "lorenz96" | "lorenz96_two_scale" | "lorenz96_truncated"
//! name = "lorenz96"
//! size = 40
//! forcing = 8.0
//! dt = 0.05
//! [[observations]]        # one or more sets (crate::obs::set)
//! network = { kind = "identity" }   # | "every" | "indices" | "random" | "tracks" | "swath"
//!                                   # | "points" | "stations" | "file"
//! operator = { kind = "select" }    # | "bilinear" | "block_average" (default select)
//! error_std = 1.0         # or one value per observation: [0.5, 1.0, ...], or per field
//! # error_correlation_length = 2.0   # Gaussian-correlated errors (full R)
//! # missing_fraction = 0.1           # each observation missing with this probability
//! [run]
//! steps_per_cycle = 1     # model steps between observations
//! cycles = 10000
//! burn_in = 400           # cycles excluded from averages
//! seed = 3000
//! device = "cpu"          # | "wgpu" | "cuda" (features); `--device` overrides
//! [initial]
//! mean = [1.0, 0.0]       # padded with zeros, or a scalar for all variables
//! std = 0.0316
//! [[methods]]
//! name = "etkf"
//! ensemble_size = 24
//! inflation = 1.013
//! rotation = true
//! [expected]              # published scores, keyed by method label
//! etkf = { rmse_a = 0.18, tolerance = 0.02 }
//! ```
//!
//! A single flat `[observations]` table of older files (`operator =
//! "random"`, `count = 20`, `steps_per_cycle = 2`) is read as one set.
//!
//! An optional `[forecast_model]` table gives the model the methods cycle
//! when it differs from the truth's (imperfect-model twins, e.g. the
//! two-scale truth with a truncated forecast model, or a coarser grid); the
//! truth is projected onto the forecast model's fields by name, copied
//! where the shapes agree and block-averaged where the truth is finer
//! ([`super::twin::Projection`]). Unknown keys are errors that name the file
//! and the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::registry::ModelConfig;
use crate::core::Model;
use crate::da::MethodConfig;
use crate::device::{DeviceChoice, Precision};

/// A bad experiment file: which file, which key, what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read experiment file {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why (not a `source`: the message already says it, once).
        reason: std::io::Error,
    },
    /// Malformed TOML, an unknown key or a value of the wrong type.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (names the key and line).
        message: String,
    },
    /// A well-formed but impossible value.
    #[error("{path}: key `{key}`: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The dotted key, e.g. `methods[2].ensemble_size`.
        key: String,
        /// Why.
        reason: String,
    },
}

pub use crate::obs::set::{ErrorStd, LegacyObservations, ObservationSet};

/// The `[output]` table: what is streamed to NetCDF and how often.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// Records are flushed to disk every this many cycles, and at most
    /// once a second: a killed run leaves files readable up to the last
    /// flush.
    #[serde(default = "fifty")]
    pub flush_every: usize,
    /// The fields written (absent: all of them).
    #[serde(default)]
    pub fields: Option<Vec<String>>,
    /// Write the state fields (truth, means, spreads) at all; `false`
    /// keeps only the per-cycle scores.
    #[serde(default = "yes")]
    pub states: bool,
    /// Also write every analysis member of ensemble methods.
    #[serde(default)]
    pub members: bool,
}

fn fifty() -> usize {
    50
}

impl Default for OutputConfig {
    fn default() -> Self {
        Self {
            flush_every: fifty(),
            fields: None,
            states: true,
            members: false,
        }
    }
}

/// The `[run]` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Number of observation cycles.
    pub cycles: usize,
    /// Leading cycles excluded from time averages.
    pub burn_in: usize,
    /// Seed of every random stream.
    pub seed: u64,
    /// A method whose analysis RMSE exceeds this is stopped and reported as
    /// diverged (non-finite values always are). Default: 10 times the
    /// climatological standard deviation of the truth.
    #[serde(default)]
    pub divergence_rmse: Option<f64>,
    /// Ensemble forecasts use the model's hand-written host path where it
    /// has one (the toy models do); `false` runs every forecast as batched
    /// burn tensor ops on the device (the path GPUs and learned models use).
    #[serde(default = "yes")]
    pub host_fast_path: bool,
    /// Where models run (`cpu`, `wgpu`, `cuda`); `--device` overrides.
    #[serde(default)]
    pub device: DeviceChoice,
    /// Their float type (`f64` on the CPU, `f32` on GPUs by default).
    #[serde(default)]
    pub precision: Option<Precision>,
    /// Forecast-model steps between observation times (one cycle; default
    /// 1). Older files give it in `[observations]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps_per_cycle: Option<usize>,
}

fn yes() -> bool {
    true
}

/// The initial mean: a scalar for every variable, a list padded with
/// zeros, or `"model"`: the model's own initial state (a column model's
/// initial profiles, from its `[model]` table).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum InitialMean {
    /// The same value everywhere.
    Scalar(f64),
    /// Leading values; the rest are zero.
    Values(Vec<f64>),
    /// `"model"`: [`Model::initial_state`].
    Model(FromModel),
}

/// The word `"model"` of `[initial] mean = "model"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FromModel {
    /// The model's own initial state.
    Model,
}

/// The `[initial]` table: truth and ensembles start from draws of
/// `N(mean, std^2 I)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitialConfig {
    /// Mean.
    pub mean: InitialMean,
    /// Standard deviation: one number for every variable, or one per field
    /// (`{ h = 0.3, a = 0.05 }`; fields not named get 0), in each field's
    /// units.
    pub std: InitialStd,
    /// Correlation length of the draws within each field (Gaussian), in
    /// the model's coordinate units; absent: uncorrelated.
    #[serde(default)]
    pub length_scale: Option<f64>,
    /// The standard deviation of the truth's draw, where it differs from
    /// the ensembles' (same forms as `std`): `{ h = 0.3 }` with `std`
    /// also naming estimated parameters keeps the truth's parameters at
    /// its model's values while the methods start from uncertain ones.
    #[serde(default)]
    pub truth_std: Option<InitialStd>,
    /// Draw the truth and the ensembles from a climatological sample of the
    /// truth model instead: a free run from a draw of `N(mean, std^2)`.
    #[serde(default)]
    pub sample: Option<InitialSample>,
}

/// The initial standard deviation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum InitialStd {
    /// The same for every variable.
    Uniform(f64),
    /// One per field, by name; fields not named get 0.
    Fields(std::collections::BTreeMap<String, f64>),
}

/// One value per state variable of `geometry` from values by field name
/// (`fill` for the fields not named); an unknown name is an error whose
/// key is `key.name` and whose reason lists the fields.
pub fn per_field(
    map: &std::collections::BTreeMap<String, f64>,
    geometry: &crate::core::Geometry,
    key: &str,
    fill: f64,
) -> Result<Vec<f64>, (String, String)> {
    let mut out = vec![fill; geometry.size()];
    for (name, v) in map {
        let (k, f) = geometry
            .field_named(name)
            .map_err(|reason| (format!("{key}.{name}"), reason))?;
        let o = geometry.offset(k);
        out[o..o + f.len()].fill(*v);
    }
    Ok(out)
}

impl InitialStd {
    /// Checks every value is a non-negative finite number; returns the
    /// key and reason otherwise.
    pub fn check(&self) -> Result<(), (String, String)> {
        let bad = |key: String, v: f64| {
            if !(v >= 0.0 && v.is_finite()) {
                Some((key, format!("must be non-negative, got {v}")))
            } else if v > 1e150 {
                // Its variance (and every covariance built from it) must
                // be a finite f64; no model state spans such a range.
                Some((
                    key,
                    format!(
                        "{v:e} is beyond 1e150: its variance overflows f64 (the draws would be infinite)"
                    ),
                ))
            } else {
                None
            }
        };
        let found = match self {
            InitialStd::Uniform(v) => bad("initial.std".into(), *v),
            InitialStd::Fields(map) => map
                .iter()
                .find_map(|(name, v)| bad(format!("initial.std.{name}"), *v)),
        };
        found.map_or(Ok(()), Err)
    }

    /// The standard deviation of every variable of `geometry`; an unknown
    /// field name is an error (key, reason) listing the fields.
    pub fn vector(&self, geometry: &crate::core::Geometry) -> Result<Vec<f64>, (String, String)> {
        match self {
            InitialStd::Uniform(v) => Ok(vec![*v; geometry.size()]),
            InitialStd::Fields(map) => per_field(map, geometry, "initial.std", 0.0),
        }
    }

    /// The mean of the standard deviations over `geometry`'s variables.
    pub fn mean(&self, geometry: &crate::core::Geometry) -> f64 {
        self.vector(geometry)
            .map(|v| v.iter().sum::<f64>() / v.len().max(1) as f64)
            .unwrap_or(0.0)
    }
}

/// The `[initial.sample]` table: a free run of the truth model whose states,
/// every `spacing` cycles after `spinup_cycles`, are the climatological
/// sample ensembles are drawn from (DAPPER's QG `gen_sample`); the truth
/// starts from the state `spacing` cycles after the last one, so it is not
/// in the sample.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitialSample {
    /// Cycles run before the first kept state.
    pub spinup_cycles: usize,
    /// States kept.
    pub count: usize,
    /// Cycles between kept states.
    pub spacing: usize,
}

impl InitialSample {
    /// Cycles of the whole free run, truth start included.
    pub fn cycles(&self) -> usize {
        self.spinup_cycles + self.count * self.spacing
    }
}

impl InitialConfig {
    /// The mean vector for the states of `model`.
    ///
    /// # Panics
    /// With `mean = "model"` for a model without an initial state of its
    /// own: [`InitialConfig::check_model`] refuses that first.
    pub fn mean_vector(&self, model: &dyn Model) -> Vec<f64> {
        let n = model.size();
        match &self.mean {
            InitialMean::Scalar(v) => vec![*v; n],
            InitialMean::Values(v) => (0..n).map(|i| v.get(i).copied().unwrap_or(0.0)).collect(),
            InitialMean::Model(_) => model
                .initial_state()
                .expect("checked by InitialConfig::check_model"),
        }
    }

    /// Whether the mean fits `model`: a list no longer than its state, and
    /// `"model"` only for a model with an initial state of its own.
    ///
    /// # Errors
    /// The reason, for the key `initial.mean`.
    pub fn check_model(&self, model: &dyn Model) -> Result<(), (String, String)> {
        self.std.vector(model.geometry())?;
        if let Some(t) = &self.truth_std {
            t.check()
                .map_err(|(k, r)| (k.replace("initial.std", "initial.truth_std"), r))?;
            t.vector(model.geometry())
                .map_err(|(k, r)| (k.replace("initial.std", "initial.truth_std"), r))?;
        }
        if let Some(l) = self.length_scale
            && !(l > 0.0 && l.is_finite())
        {
            return Err((
                "initial.length_scale".into(),
                format!("must be a positive length, got {l}"),
            ));
        }
        match &self.mean {
            InitialMean::Values(v) if v.len() > model.size() => Err((
                "initial.mean".into(),
                format!(
                    "has {} values for a state of size {}",
                    v.len(),
                    model.size()
                ),
            )),
            InitialMean::Model(_) if model.initial_state().is_none() => Err((
                "initial.mean".into(),
                format!(
                    "\"model\": model `{}` has no initial state of its own; give numbers",
                    model.name()
                ),
            )),
            _ => Ok(()),
        }
    }

    /// `N(mean, diag(std^2))` for the states of `model`.
    ///
    /// # Panics
    /// With a `std` naming a field the model does not have:
    /// [`InitialConfig::check_model`] refuses that first.
    pub fn distribution(&self, model: &dyn Model) -> crate::da::Gaussian {
        self.distribution_with(model, &self.std)
    }

    /// The distribution the truth starts from: with `truth_std` where
    /// given, else the ensembles' ([`InitialConfig::distribution`]).
    ///
    /// # Panics
    /// As [`InitialConfig::distribution`].
    pub fn truth_distribution(&self, model: &dyn Model) -> crate::da::Gaussian {
        self.distribution_with(model, self.truth_std.as_ref().unwrap_or(&self.std))
    }

    fn distribution_with(&self, model: &dyn Model, std: &InitialStd) -> crate::da::Gaussian {
        let std = std
            .vector(model.geometry())
            .expect("check_model refuses unknown fields");
        let mean = nalgebra::DVector::from_vec(self.mean_vector(model));
        match self.length_scale {
            Some(l) => crate::da::Gaussian::correlated(
                mean,
                crate::da::covariance::FieldCovariance::new(model.geometry(), &std, Some(l)),
            ),
            None => crate::da::Gaussian::new(mean, nalgebra::DVector::from_vec(std)),
        }
    }
}

/// A published score to reproduce.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    /// Time-averaged analysis RMSE.
    pub rmse_a: f64,
    /// Accepted absolute deviation.
    pub tolerance: f64,
}

/// Names of the run's shared output files, which no method may take.
pub const RESERVED_LABELS: [&str; 3] = ["truth", "observations", "summary"];

/// A label names a method's output file: letters, digits, `_`, `.` and
/// `-` only, not empty, not starting with a dot, and not one of
/// [`RESERVED_LABELS`], so that no file lands outside the output folder
/// or clashes with the run's own files.
pub fn check_label(label: &str) -> Result<(), String> {
    if label.is_empty() {
        return Err("is empty; a label names the method's output file".into());
    }
    if let Some(c) = label
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!(
            "\"{label}\" contains {c:?}; use only letters, digits, `_`, `.` and `-` (a label names the method's output file)"
        ));
    }
    if label.starts_with('.') {
        return Err(format!("\"{label}\" starts with a dot (a hidden file)"));
    }
    if label.ends_with(crate::io::folder::PARTIAL_SUFFIX) {
        return Err(format!(
            "\"{label}\" ends in `{}`, which marks a file still being written (`{label}.nc` would look unfinished)",
            crate::io::folder::PARTIAL_SUFFIX
        ));
    }
    if RESERVED_LABELS.contains(&label) {
        return Err(format!(
            "\"{label}\" is reserved for the run's own {label} file"
        ));
    }
    Ok(())
}

/// A method and its label (unique within the file).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MethodEntry {
    /// Label used in outputs and `[expected]`; defaults to the name.
    pub label: String,
    /// The method.
    pub method: MethodConfig,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    reference: Option<String>,
    model: ModelConfig,
    #[serde(default)]
    forecast_model: Option<ModelConfig>,
    observations: toml::Value,
    run: RunConfig,
    initial: InitialConfig,
    #[serde(default)]
    output: OutputConfig,
    methods: Vec<toml::Table>,
    #[serde(default)]
    expected: BTreeMap<String, Expected>,
}

/// The observation sets of a file: a list of `[[observations]]` tables,
/// one table in the set form (with a `network`), or one older flat
/// table; with the older table's `steps_per_cycle`.
fn read_observations(
    value: toml::Value,
    path: &Path,
) -> Result<(Vec<ObservationSet>, Option<usize>), ConfigError> {
    let invalid = |key: String, reason: String| ConfigError::Invalid {
        path: path.to_path_buf(),
        key,
        reason,
    };
    let entry = |(k, e): (String, String), i: usize| {
        invalid(
            if k.is_empty() {
                format!("observations[{i}]")
            } else {
                format!("observations[{i}].{k}")
            },
            e,
        )
    };
    match value {
        toml::Value::Array(entries) => {
            if entries.is_empty() {
                return Err(invalid(
                    "observations".into(),
                    "list at least one [[observations]] set".into(),
                ));
            }
            let mut sets = Vec::with_capacity(entries.len());
            for (i, e) in entries.into_iter().enumerate() {
                let toml::Value::Table(t) = e else {
                    return Err(invalid(
                        format!("observations[{i}]"),
                        "must be a table".into(),
                    ));
                };
                sets.push(ObservationSet::from_table(t, i).map_err(|e| entry(e, i))?);
            }
            Ok((sets, None))
        }
        toml::Value::Table(t) if t.contains_key("network") => {
            let set = ObservationSet::from_table(t, 0).map_err(|e| entry(e, 0))?;
            Ok((vec![set], None))
        }
        toml::Value::Table(t) => {
            let old: LegacyObservations =
                toml::Value::Table(t)
                    .try_into()
                    .map_err(|e: toml::de::Error| ConfigError::Parse {
                        path: path.to_path_buf(),
                        message: format!("[observations]: {}", e.message().trim_end()),
                    })?;
            let (set, steps) = ObservationSet::from_legacy(old)
                .map_err(|(k, e)| invalid(format!("observations.{k}"), e))?;
            Ok((vec![set], steps))
        }
        other => Err(invalid(
            "observations".into(),
            format!("must be a table or a list of [[observations]] tables, got {other}"),
        )),
    }
}

/// A key of the method table that the parsed method does not hold: serde
/// cannot deny unknown keys next to a flattened table (the minimiser
/// settings), so the parsed value is written back and the keys compared.
fn unknown_key(method: &MethodConfig, keys: &[String]) -> Option<String> {
    let back = toml::Value::try_from(method).ok()?;
    let table = back.as_table()?;
    keys.iter()
        .find(|k| !table.contains_key(k.as_str()))
        .cloned()
}

/// A validated experiment.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExperimentConfig {
    /// The file it came from (or `<string>`).
    pub path: PathBuf,
    /// Free text: what the setup is.
    pub description: Option<String>,
    /// The publication it reproduces.
    pub reference: Option<String>,
    /// The truth model.
    pub model: ModelConfig,
    /// The model the methods cycle, when different from the truth's.
    pub forecast_model: Option<ModelConfig>,
    /// The observation sets (`[[observations]]`, or one older flat
    /// `[observations]` table).
    pub observations: Vec<ObservationSet>,
    /// Forecast-model steps between observation times (one cycle):
    /// `run.steps_per_cycle`, or the older `observations.steps_per_cycle`.
    pub steps_per_cycle: usize,
    /// Run length and seed.
    pub run: RunConfig,
    /// Initial conditions.
    pub initial: InitialConfig,
    /// What the run writes.
    pub output: OutputConfig,
    /// The methods, in file order.
    pub methods: Vec<MethodEntry>,
    /// Published scores by label.
    pub expected: BTreeMap<String, Expected>,
}

impl ExperimentConfig {
    /// Reads and validates an experiment file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|reason| ConfigError::Read {
            path: path.to_path_buf(),
            reason,
        })?;
        Self::from_toml(&text, path)
    }

    /// Parses and validates TOML text; `path` is used in messages.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let parse = |message: String| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        };
        let invalid = |key: String, reason: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key,
            reason,
        };
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| parse(e.to_string().trim_end().to_string()))?;

        let mut methods = Vec::with_capacity(raw.methods.len());
        for (i, mut table) in raw.methods.into_iter().enumerate() {
            let label = match table.remove("label") {
                None => None,
                Some(toml::Value::String(s)) => Some(s),
                Some(other) => {
                    return Err(invalid(
                        format!("methods[{i}].label"),
                        format!("must be a string, got {other}"),
                    ));
                }
            };
            let name = table
                .get("name")
                .and_then(|v| v.as_str())
                .map(str::to_string);
            let keys: Vec<String> = table.keys().cloned().collect();
            let method: MethodConfig =
                toml::Value::Table(table.clone())
                    .try_into()
                    .map_err(|e: toml::de::Error| {
                        let what = name.as_deref().unwrap_or("<no name>");
                        let key = name
                            .as_deref()
                            .and_then(|n| super::schema::bad_method_key(n, &table))
                            .map_or(String::new(), |k| format!(".{k}"));
                        parse(format!(
                            "methods[{i}]{key} (name = \"{what}\"): {}",
                            e.message().trim_end()
                        ))
                    })?;
            if let Some(key) = unknown_key(&method, &keys) {
                let what = name.as_deref().unwrap_or("<no name>");
                return Err(parse(format!(
                    "methods[{i}] (name = \"{what}\"): unknown field `{key}`"
                )));
            }
            method
                .validate()
                .map_err(|(key, reason)| invalid(format!("methods[{i}].{key}"), reason))?;
            let label = label.unwrap_or_else(|| method.name().to_string());
            check_label(&label).map_err(|reason| invalid(format!("methods[{i}].label"), reason))?;
            if methods.iter().any(|m: &MethodEntry| m.label == label) {
                return Err(invalid(
                    format!("methods[{i}].label"),
                    format!("label \"{label}\" is used twice; give one entry a distinct `label`"),
                ));
            }
            methods.push(MethodEntry { label, method });
        }
        if methods.is_empty() {
            return Err(invalid(
                "methods".into(),
                "list at least one [[methods]] entry".into(),
            ));
        }

        let base = path.parent().unwrap_or(Path::new("."));
        let mut model = raw.model;
        model
            .resolve_paths(base)
            .map_err(|e| parse(format!("[model]: {e}")))?;
        let mut forecast_model = raw.forecast_model;
        if let Some(m) = &mut forecast_model {
            m.resolve_paths(base)
                .map_err(|e| parse(format!("[forecast_model]: {e}")))?;
        }
        let (observations, legacy_steps) = read_observations(raw.observations, path)?;
        let steps_per_cycle = match (raw.run.steps_per_cycle, legacy_steps) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "observations.steps_per_cycle".into(),
                    "is given in [run] too: keep one (run.steps_per_cycle)".into(),
                ));
            }
            (Some(s), None) | (None, Some(s)) => s,
            (None, None) => 1,
        };
        let config = ExperimentConfig {
            path: path.to_path_buf(),
            description: raw.description,
            reference: raw.reference,
            model,
            forecast_model,
            observations,
            steps_per_cycle,
            run: raw.run,
            initial: raw.initial,
            output: raw.output,
            methods,
            expected: raw.expected,
        };
        config
            .validate()
            .map_err(|(key, reason)| invalid(key, reason))?;
        Ok(config)
    }

    /// The model the methods cycle.
    pub fn cycled_model(&self) -> &ModelConfig {
        self.forecast_model.as_ref().unwrap_or(&self.model)
    }

    fn validate(&self) -> Result<(), (String, String)> {
        let mut names = std::collections::BTreeSet::new();
        for set in &self.observations {
            set.check().map_err(|(k, e)| (set.key(&k), e))?;
            if !names.insert(set.name.as_str()) {
                return Err((
                    set.key("name"),
                    format!(
                        "two observation sets are named \"{}\": give each a distinct `name` (it names its scores in the outputs)",
                        set.name
                    ),
                ));
            }
            if set.file().is_some() {
                if self.observations.len() > 1 {
                    return Err((
                        set.key("network"),
                        "observations from a file cannot be combined with other sets (a run on a file has no truth to simulate them from)".into(),
                    ));
                }
                if self.forecast_model.is_some() {
                    return Err((
                        "forecast_model".into(),
                        "observations from a file have no truth model: give the cycled model as [model]"
                            .into(),
                    ));
                }
            }
        }
        if self.output.flush_every == 0 {
            return Err(("output.flush_every".into(), "must be at least 1".into()));
        }
        if self.steps_per_cycle == 0 {
            return Err((
                if self.run.steps_per_cycle.is_some() {
                    "run.steps_per_cycle"
                } else {
                    "observations.steps_per_cycle"
                }
                .into(),
                "must be at least 1".into(),
            ));
        }
        if self.run.cycles == 0 {
            return Err(("run.cycles".into(), "must be at least 1".into()));
        }
        if self.run.burn_in >= self.run.cycles {
            return Err((
                "run.burn_in".into(),
                format!(
                    "{} leaves no cycle to average out of {}",
                    self.run.burn_in, self.run.cycles
                ),
            ));
        }
        if let Some(d) = self.run.divergence_rmse
            && !(d > 0.0)
        {
            return Err((
                "run.divergence_rmse".into(),
                format!("must be positive, got {d}"),
            ));
        }
        let mean_values = match &self.initial.mean {
            InitialMean::Scalar(v) => vec![*v],
            InitialMean::Values(v) => v.clone(),
            InitialMean::Model(_) => Vec::new(),
        };
        if let Some((i, bad)) = mean_values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err((
                "initial.mean".into(),
                format!("value {i} is {bad}; every value must be finite"),
            ));
        }
        if let Some(sample) = &self.initial.sample {
            if sample.count < 2 {
                return Err((
                    "initial.sample.count".into(),
                    format!("must be at least 2, got {}", sample.count),
                ));
            }
            if sample.spacing == 0 {
                return Err(("initial.sample.spacing".into(), "must be at least 1".into()));
            }
        }
        self.initial.std.check()?;
        for (label, e) in &self.expected {
            if !self.methods.iter().any(|m| &m.label == label) {
                return Err((
                    format!("expected.{label}"),
                    "names no method label in [[methods]]".into(),
                ));
            }
            if !(e.tolerance >= 0.0) {
                return Err((
                    format!("expected.{label}.tolerance"),
                    "must be non-negative".into(),
                ));
            }
        }
        Ok(())
    }

    /// A bad value found when the experiment is built (it needs the built
    /// models): the error names this file.
    pub fn invalid(&self, key: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.clone(),
            key: key.to_string(),
            reason: reason.into(),
        }
    }

    /// Overrides the number of cycles (and shortens the burn-in to keep
    /// the same fraction of the run if it would leave nothing to average).
    pub fn with_cycles(mut self, cycles: usize) -> Self {
        if self.run.burn_in >= cycles {
            self.run.burn_in = cycles / 5;
        }
        self.run.cycles = cycles;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_plain_file_names() {
        for ok in ["etkf", "etkf_n20", "var4d-w2", "a.b"] {
            assert!(check_label(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".x",
            "..",
            "a/b",
            "../x",
            "a\\b",
            "é",
            "observations",
            "summary",
            "truth.partial",
        ] {
            assert!(check_label(bad).is_err(), "{bad:?}");
        }
    }

    const GOOD: &str = r#"
[model]
name = "lorenz96"
size = 40
[observations]
operator = "identity"
error_std = 1.0
[run]
cycles = 100
burn_in = 10
seed = 1
[initial]
mean = [1.0]
std = 0.1
[[methods]]
name = "etkf"
ensemble_size = 20
inflation = 1.04
[[methods]]
name = "etkf"
label = "etkf_rot"
ensemble_size = 20
rotation = true
[expected]
etkf = { rmse_a = 0.2, tolerance = 0.02 }
"#;

    fn err(text: &str) -> String {
        ExperimentConfig::from_toml(text, Path::new("bad.toml"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn reads_a_good_file() {
        let c = ExperimentConfig::from_toml(GOOD, Path::new("good.toml")).unwrap();
        assert_eq!(c.methods.len(), 2);
        assert_eq!(c.methods[1].label, "etkf_rot");
        let lorenz63 = super::super::registry::ModelConfig::from_toml("name = \"lorenz63\"")
            .unwrap()
            .init(&crate::device::cpu_f64())
            .unwrap();
        assert_eq!(
            c.initial.mean_vector(lorenz63.as_ref()),
            vec![1.0, 0.0, 0.0]
        );
        assert!(c.initial.check_model(lorenz63.as_ref()).is_ok());
        let mut from_model = c.initial.clone();
        from_model.mean = InitialMean::Model(FromModel::Model);
        let (key, e) = from_model.check_model(lorenz63.as_ref()).unwrap_err();
        assert_eq!(key, "initial.mean");
        assert!(e.contains("lorenz63") && e.contains("initial state"), "{e}");
        let mut by_field = c.initial.clone();
        by_field.std = InitialStd::Fields([("x".to_string(), 0.5)].into());
        assert_eq!(
            by_field.distribution(lorenz63.as_ref()).std.as_slice(),
            [0.5, 0.0, 0.0]
        );
        by_field.std = InitialStd::Fields([("w".to_string(), 0.5)].into());
        let (key, e) = by_field.check_model(lorenz63.as_ref()).unwrap_err();
        assert_eq!(key, "initial.std.w");
        assert!(e.contains("has: x, y, z"), "{e}");
    }

    #[test]
    fn unknown_keys_name_the_key_and_file() {
        let e = err(&GOOD
            .replace("forcing", "x")
            .replace("size = 40", "sise = 40"));
        assert!(e.contains("bad.toml") && e.contains("sise"), "{e}");
        let e = err(&GOOD.replace("inflation = 1.04", "inflaton = 1.04"));
        assert!(
            e.contains("bad.toml") && e.contains("inflaton") && e.contains("methods[0]"),
            "{e}"
        );
        let e = err(&GOOD.replace("burn_in = 10", "burn_in = 10\nspeed = 3"));
        assert!(e.contains("speed"), "{e}");
    }

    #[test]
    fn impossible_values_are_refused() {
        let e = err(&GOOD.replace(
            "ensemble_size = 20\ninflation",
            "ensemble_size = 1\ninflation",
        ));
        assert!(e.contains("methods[0].ensemble_size"), "{e}");
        let e = err(&GOOD.replace("error_std = 1.0", "error_std = -1.0"));
        assert!(e.contains("observations.error_std"), "{e}");
        let e = err(&GOOD.replace(
            "rotation = true",
            "rotation = true\nlocalisation_radius = 4.0",
        ));
        assert!(e.contains("localisation_radius"), "{e}");
        let e = err(&GOOD.replace(
            "name = \"etkf\"\nensemble_size = 20\ninflation",
            "name = \"letkf\"\nlocalisation_radius = 0.0\nensemble_size = 20\ninflation",
        ));
        assert!(e.contains("methods[0].localisation_radius"), "{e}");
        let e = err(&GOOD.replace("etkf = {", "etfk = {"));
        assert!(e.contains("expected.etfk"), "{e}");
        let e = err("[model\nname=");
        assert!(e.contains("bad.toml"), "{e}");
    }
}
