//! The experiment file schema (TOML).
//!
//! ```toml
//! [model]             # name = "lorenz63" | "lorenz96" | "lorenz96_two_scale" | "lorenz96_truncated"
//! name = "lorenz96"
//! size = 40
//! forcing = 8.0
//! dt = 0.05
//! [observations]
//! operator = "identity"   # | "partial" with indices = [...] | "every" with stride = k
//! error_std = 1.0
//! every = 1               # model steps between observations
//! [run]
//! cycles = 10000
//! burn_in = 400           # cycles excluded from averages
//! seed = 3000
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
//! An optional `[forecast_model]` table gives the model the methods cycle
//! when it differs from the truth's (imperfect-model twins, e.g. the
//! two-scale truth with a truncated forecast model); the forecast state is
//! then the leading entries of the truth state. Unknown keys are errors that
//! name the file and the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::da::MethodConfig;
use crate::models::ModelConfig;

/// A bad experiment file: which file, which key, what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read experiment file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
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

/// Which selection the observations make.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OperatorKind {
    /// Every variable.
    Identity,
    /// The variables listed in `indices`.
    Partial,
    /// Every `stride`-th variable.
    Every,
}

/// The `[observations]` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObservationConfig {
    /// The operator.
    pub operator: OperatorKind,
    /// Observed indices (`partial`).
    #[serde(default)]
    pub indices: Option<Vec<usize>>,
    /// Stride (`every`).
    #[serde(default)]
    pub stride: Option<usize>,
    /// Observation error standard deviation; `R = error_std^2 I`.
    pub error_std: f64,
    /// Forecast-model steps between observations.
    #[serde(default = "one_usize")]
    pub every: usize,
}

fn one_usize() -> usize {
    1
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
}

fn yes() -> bool {
    true
}

/// The initial mean: a scalar for every variable, or a list padded with zeros.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum InitialMean {
    /// The same value everywhere.
    Scalar(f64),
    /// Leading values; the rest are zero.
    Values(Vec<f64>),
}

/// The `[initial]` table: truth and ensembles start from draws of
/// `N(mean, std^2 I)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitialConfig {
    /// Mean.
    pub mean: InitialMean,
    /// Standard deviation.
    pub std: f64,
}

impl InitialConfig {
    /// The mean vector for a state of size `n`.
    pub fn mean_vector(&self, n: usize) -> Vec<f64> {
        match &self.mean {
            InitialMean::Scalar(v) => vec![*v; n],
            InitialMean::Values(v) => (0..n).map(|i| v.get(i).copied().unwrap_or(0.0)).collect(),
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
    observations: ObservationConfig,
    run: RunConfig,
    initial: InitialConfig,
    methods: Vec<toml::Table>,
    #[serde(default)]
    expected: BTreeMap<String, Expected>,
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
    /// Observations.
    pub observations: ObservationConfig,
    /// Run length and seed.
    pub run: RunConfig,
    /// Initial conditions.
    pub initial: InitialConfig,
    /// The methods, in file order.
    pub methods: Vec<MethodEntry>,
    /// Published scores by label.
    pub expected: BTreeMap<String, Expected>,
}

impl ExperimentConfig {
    /// Reads and validates an experiment file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
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
            let method: MethodConfig =
                toml::Value::Table(table)
                    .try_into()
                    .map_err(|e: toml::de::Error| {
                        let what = name.as_deref().unwrap_or("<no name>");
                        parse(format!(
                            "methods[{i}] (name = \"{what}\"): {}",
                            e.message().trim_end()
                        ))
                    })?;
            method
                .validate()
                .map_err(|(key, reason)| invalid(format!("methods[{i}].{key}"), reason))?;
            let label = label.unwrap_or_else(|| method.name().to_string());
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

        let config = ExperimentConfig {
            path: path.to_path_buf(),
            description: raw.description,
            reference: raw.reference,
            model: raw.model,
            forecast_model: raw.forecast_model,
            observations: raw.observations,
            run: raw.run,
            initial: raw.initial,
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
        self.model
            .validate()
            .map_err(|(k, r)| (format!("model.{k}"), r))?;
        if let Some(f) = &self.forecast_model {
            f.validate()
                .map_err(|(k, r)| (format!("forecast_model.{k}"), r))?;
        }
        let o = &self.observations;
        if !(o.error_std > 0.0 && o.error_std.is_finite()) {
            return Err((
                "observations.error_std".into(),
                format!("must be positive, got {}", o.error_std),
            ));
        }
        if o.every == 0 {
            return Err(("observations.every".into(), "must be at least 1".into()));
        }
        let n = self.cycled_model().build().size();
        match o.operator {
            OperatorKind::Partial => {
                let indices = o.indices.as_ref().ok_or((
                    "observations.indices".to_string(),
                    "is required by operator \"partial\"".to_string(),
                ))?;
                if indices.is_empty() {
                    return Err(("observations.indices".into(), "must not be empty".into()));
                }
                if let Some(bad) = indices.iter().find(|&&i| i >= n) {
                    return Err((
                        "observations.indices".into(),
                        format!(
                            "index {bad} is out of range for a state of size {n} (indices start at 0)"
                        ),
                    ));
                }
            }
            OperatorKind::Every => match o.stride {
                None => {
                    return Err((
                        "observations.stride".into(),
                        "is required by operator \"every\"".into(),
                    ));
                }
                Some(0) => return Err(("observations.stride".into(), "must be at least 1".into())),
                Some(s) if s > n => {
                    return Err((
                        "observations.stride".into(),
                        format!("{s} exceeds the state size {n}"),
                    ));
                }
                _ => {}
            },
            OperatorKind::Identity => {}
        }
        if o.operator != OperatorKind::Partial && o.indices.is_some() {
            return Err((
                "observations.indices".into(),
                "only applies to operator \"partial\"".into(),
            ));
        }
        if o.operator != OperatorKind::Every && o.stride.is_some() {
            return Err((
                "observations.stride".into(),
                "only applies to operator \"every\"".into(),
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
        if !(self.initial.std >= 0.0 && self.initial.std.is_finite()) {
            return Err((
                "initial.std".into(),
                format!("must be non-negative, got {}", self.initial.std),
            ));
        }
        if let InitialMean::Values(v) = &self.initial.mean
            && v.len() > self.model.build().size()
        {
            return Err((
                "initial.mean".into(),
                format!(
                    "has {} values for a state of size {}",
                    v.len(),
                    self.model.build().size()
                ),
            ));
        }
        if let Some(f) = &self.forecast_model {
            let truth = self.model.build();
            let forecast = f.build();
            if forecast.size() > truth.size() {
                return Err((
                    "forecast_model".into(),
                    format!(
                        "has {} variables, more than the truth's {}",
                        forecast.size(),
                        truth.size()
                    ),
                ));
            }
            let ratio = self.observations.every as f64 * forecast.dt() / truth.dt();
            if (ratio - ratio.round()).abs() > 1e-9 || ratio.round() < 1.0 {
                return Err((
                    "forecast_model.dt".into(),
                    format!(
                        "the observation interval ({} x {}) must be a whole number of truth steps ({})",
                        self.observations.every,
                        forecast.dt(),
                        truth.dt()
                    ),
                ));
            }
        }
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
        assert_eq!(c.initial.mean_vector(3), vec![1.0, 0.0, 0.0]);
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
            "operator = \"identity\"",
            "operator = \"partial\"\nindices = [0, 40]",
        ));
        assert!(
            e.contains("observations.indices") && e.contains("40"),
            "{e}"
        );
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
