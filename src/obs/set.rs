//! Observation sets: `[[observations]]` entries, each a network, an
//! operator, the fields it observes and its errors; and the network of a
//! run that stacks them.
//!
//! ```toml
//! [[observations]]
//! name = "buoys"
//! fields = ["h"]
//! error_std = 0.1
//! network = { kind = "points", x = [1.5e5, 3.2e5], y = [2.0e5, 1.1e5] }
//! operator = { kind = "bilinear" }
//!
//! [[observations]]
//! name = "swaths"
//! fields = ["h"]
//! error_std = 0.2
//! network = { kind = "swath", width = 1.0e5 }
//! ```
//!
//! A single `[observations]` table in the older flat form (`operator =
//! "random"`, `count = 20`, ...) is read as one set: old experiment files
//! run unchanged, and their errors name the keys as written.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use burn::tensor::Tensor;
use nalgebra::{DMatrix, DVector};
use serde::{Deserialize, Serialize};

use super::network::{ErrorModel, NetworkAt, ObsNetwork};
use super::spec::{
    BuildContext, KeyError, NetworkSpec, OperatorBuilder, OperatorSpec, Part, Sites, key_error,
};
use super::{NETWORKS, OPERATORS};
use crate::core::{Geometry, LinearObs, Location, ObsError, ObsOperator};

/// One error standard deviation for all observations, one each, or one
/// per field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ErrorStd {
    /// The same for every observation.
    Scalar(f64),
    /// One per observation of the network.
    PerObservation(Vec<f64>),
    /// One per observed field, by name (`{ h = 0.1, a = 0.02 }`), in the
    /// field's units.
    Fields(BTreeMap<String, f64>),
}

impl ErrorStd {
    /// The values (one, one per observation, or one per named field).
    pub fn values(&self) -> Vec<f64> {
        match self {
            ErrorStd::Scalar(v) => vec![*v],
            ErrorStd::PerObservation(v) => v.clone(),
            ErrorStd::Fields(map) => map.values().copied().collect(),
        }
    }
}

/// The keys of a set besides `network` and `operator`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetKeys {
    /// The set's name in outputs (unique; default: the network's kind).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Observe only these fields (absent: every field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<String>>,
    /// Observation-error standard deviation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_std: Option<ErrorStd>,
    /// Gaussian correlation length of the errors, in model distance units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_correlation_length: Option<f64>,
    /// Probability that an observation is missing at a cycle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_fraction: Option<f64>,
    /// `false`: a verification set, simulated and scored against the
    /// truth at its sites but not assimilated (default `true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assimilate: Option<bool>,
    /// The network table, as written (read by [`super::NETWORKS`] into
    /// [`ObservationSet::network`]; `None` once read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<toml::Value>,
    /// The operator table, as written (`None` once read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<toml::Value>,
    /// The operator that simulates a twin's observations, when it is not
    /// the one DA assimilates them with (`None` once read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truth_operator: Option<toml::Value>,
}

/// One observation set.
#[derive(Clone, Debug, PartialEq)]
pub struct ObservationSet {
    /// Its name in outputs and errors.
    pub name: String,
    /// Where and when.
    pub network: Part<dyn NetworkSpec>,
    /// What `H` does.
    pub operator: Part<dyn OperatorSpec>,
    /// What makes a twin's observations from the truth, when it is not
    /// `operator` (an imperfect or learned operator assimilating
    /// observations of the exact one); at the same sites.
    pub truth_operator: Option<Part<dyn OperatorSpec>>,
    /// The other keys.
    pub keys: SetKeys,
    /// How its keys are named in errors.
    style: KeyStyle,
}

impl Serialize for ObservationSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = match toml::Value::try_from(&self.keys) {
            Ok(toml::Value::Table(t)) => t,
            _ => toml::Table::new(),
        };
        t.insert("name".into(), toml::Value::String(self.name.clone()));
        t.insert(
            "network".into(),
            toml::Value::Table(self.network.to_table()),
        );
        t.insert(
            "operator".into(),
            toml::Value::Table(self.operator.to_table()),
        );
        if let Some(truth) = &self.truth_operator {
            t.insert(
                "truth_operator".into(),
                toml::Value::Table(truth.to_table()),
            );
        }
        t.serialize(s)
    }
}

#[derive(Clone, Debug, PartialEq)]
enum KeyStyle {
    /// A flat `[observations]` table of older files.
    Legacy,
    /// The `i`-th `[[observations]]` entry.
    Entry(usize),
}

/// The older flat `[observations]` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegacyObservations {
    /// `identity`, `partial`, `every`, `random`, `tracks`, `swath`, `file`.
    pub operator: String,
    /// `partial`.
    #[serde(default)]
    pub indices: Option<Vec<usize>>,
    /// `every`.
    #[serde(default)]
    pub stride: Option<usize>,
    /// `random`, `tracks`.
    #[serde(default)]
    pub count: Option<usize>,
    /// `swath`.
    #[serde(default)]
    pub swath: Option<toml::Table>,
    /// Observation-error standard deviation.
    #[serde(default)]
    pub error_std: Option<ErrorStd>,
    /// `file`.
    #[serde(default)]
    pub file: Option<std::path::PathBuf>,
    /// Gaussian correlation length of the errors.
    #[serde(default)]
    pub error_correlation_length: Option<f64>,
    /// Probability that an observation is missing.
    #[serde(default)]
    pub missing_fraction: Option<f64>,
    /// Observe only these fields.
    #[serde(default)]
    pub fields: Option<Vec<String>>,
    /// Forecast-model steps between observation times (`every` in older
    /// files still).
    #[serde(default, alias = "every")]
    pub steps_per_cycle: Option<usize>,
}

/// The network kind and keys of each older operator name.
const LEGACY: &[(&str, &str, &[&str])] = &[
    ("identity", "identity", &[]),
    ("partial", "indices", &["indices"]),
    ("every", "every", &["stride"]),
    ("random", "random", &["count"]),
    ("tracks", "tracks", &["count"]),
    ("swath", "swath", &["swath"]),
    ("file", "file", &["file"]),
];

fn part<S: ?Sized>(
    table: toml::Table,
    registry: &'static [super::spec::SpecEntry<S>],
    what: &str,
) -> Result<Part<S>, KeyError> {
    Part::from_table(table, registry, what).map_err(|(k, e)| {
        let key = if k.is_empty() {
            what.to_string()
        } else {
            format!("{what}.{k}")
        };
        (key, e)
    })
}

impl ObservationSet {
    /// Reads the `index`-th `[[observations]]` entry.
    ///
    /// # Errors
    /// A missing network, an unknown kind or key, naming it (relative to
    /// the entry).
    pub fn from_table(table: toml::Table, index: usize) -> Result<Self, KeyError> {
        let mut keys: SetKeys =
            toml::Value::Table(table.clone())
                .try_into()
                .map_err(|e: toml::de::Error| {
                    let culprit = table.keys().find(|k| {
                        let mut one = table.clone();
                        one.remove(*k);
                        toml::Value::Table(one).try_into::<SetKeys>().is_ok()
                    });
                    key_error(
                        culprit.map_or("", String::as_str),
                        e.message().trim_end().to_string(),
                    )
                })?;
        let network = match keys.network.take() {
            Some(toml::Value::Table(t)) => part(t, NETWORKS, "network")?,
            Some(other) => {
                return Err(key_error(
                    "network",
                    format!(
                        "must be a table such as {{ kind = \"random\", count = 10 }}, got {other}"
                    ),
                ));
            }
            None => {
                return Err(key_error(
                    "network",
                    "is required: where observations are, e.g. network = { kind = \"identity\" }",
                ));
            }
        };
        let operator = match keys.operator.take() {
            Some(toml::Value::Table(t)) => part(t, OPERATORS, "operator")?,
            Some(toml::Value::String(s)) => {
                return Err(key_error(
                    "operator",
                    format!(
                        "is a table in [[observations]] (operator = {{ kind = \"select\" }}); \"{s}\" is the older flat form, where it names the network: write network = {{ kind = \"...\" }}"
                    ),
                ));
            }
            Some(other) => {
                return Err(key_error(
                    "operator",
                    format!("must be a table such as {{ kind = \"bilinear\" }}, got {other}"),
                ));
            }
            None => default_operator()?,
        };
        let truth_operator = match keys.truth_operator.take() {
            Some(toml::Value::Table(t)) => Some(
                Part::from_table(t, OPERATORS, "operator")
                    .map_err(|e| prefixed("truth_operator", e))?,
            ),
            Some(other) => {
                return Err(key_error(
                    "truth_operator",
                    format!("must be a table such as {{ kind = \"bilinear\" }}, got {other}"),
                ));
            }
            None => None,
        };
        let name = keys
            .name
            .clone()
            .unwrap_or_else(|| network.kind().to_string());
        Ok(Self {
            name,
            network,
            operator,
            truth_operator,
            keys,
            style: KeyStyle::Entry(index),
        })
    }

    /// Reads the older flat `[observations]` table as one set; returns it
    /// with its `steps_per_cycle`.
    ///
    /// # Errors
    /// An unknown operator or a key of another operator, naming it.
    pub fn from_legacy(old: LegacyObservations) -> Result<(Self, Option<usize>), KeyError> {
        let Some(&(_, kind, own)) = LEGACY.iter().find(|(name, _, _)| *name == old.operator) else {
            return Err(key_error(
                "operator",
                format!(
                    "unknown operator \"{}\", expected one of {}",
                    old.operator,
                    LEGACY
                        .iter()
                        .map(|(n, _, _)| format!("\"{n}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        };
        let given: [(&str, bool); 5] = [
            ("indices", old.indices.is_some()),
            ("stride", old.stride.is_some()),
            ("count", old.count.is_some()),
            ("swath", old.swath.is_some()),
            ("file", old.file.is_some()),
        ];
        for (key, set) in given {
            if set && !own.contains(&key) {
                let users: Vec<&str> = LEGACY
                    .iter()
                    .filter(|(_, _, keys)| keys.contains(&key))
                    .map(|(n, _, _)| *n)
                    .collect();
                return Err(key_error(
                    key,
                    format!("only applies to operator \"{}\"", users.join("\" or \"")),
                ));
            }
        }
        for key in own {
            let missing = match *key {
                "indices" => old.indices.is_none(),
                "stride" => old.stride.is_none(),
                "count" => old.count.is_none(),
                "swath" => old.swath.is_none(),
                _ => old.file.is_none(),
            };
            if missing {
                return Err(key_error(
                    key,
                    format!("is required by operator \"{}\"", old.operator),
                ));
            }
        }
        let mut net = toml::Table::new();
        net.insert("kind".into(), toml::Value::String(kind.into()));
        if let Some(i) = &old.indices {
            net.insert(
                "indices".into(),
                toml::Value::Array(i.iter().map(|&v| toml::Value::Integer(v as i64)).collect()),
            );
        }
        if let Some(s) = old.stride {
            net.insert("stride".into(), toml::Value::Integer(s as i64));
        }
        if let Some(c) = old.count {
            net.insert("count".into(), toml::Value::Integer(c as i64));
        }
        if let Some(sw) = &old.swath {
            net.extend(sw.clone());
        }
        if let Some(f) = &old.file {
            net.insert("file".into(), toml::Value::String(f.display().to_string()));
        }
        let legacy_key = |k: String| legacy_name(&format!("network.{k}"));
        let network =
            Part::from_table(net, NETWORKS, "network").map_err(|(k, e)| (legacy_key(k), e))?;
        let operator = default_operator()?;
        if old.fields.is_some() && matches!(kind, "indices" | "file") {
            return Err(key_error(
                "fields",
                "only applies to operator \"identity\", \"every\", \"random\", \"tracks\" or \"swath\"",
            ));
        }
        let set = Self {
            name: old.operator.clone(),
            network,
            operator,
            keys: SetKeys {
                name: None,
                fields: old.fields,
                error_std: old.error_std,
                error_correlation_length: old.error_correlation_length,
                missing_fraction: old.missing_fraction,
                assimilate: None,
                network: None,
                operator: None,
                truth_operator: None,
            },
            truth_operator: None,
            style: KeyStyle::Legacy,
        };
        Ok((set, old.steps_per_cycle))
    }

    /// The full name of `key` (relative to the set) in the file.
    pub fn key(&self, key: &str) -> String {
        match self.style {
            KeyStyle::Legacy => format!("observations.{}", legacy_name(key)),
            KeyStyle::Entry(i) if key.is_empty() => format!("observations[{i}]"),
            KeyStyle::Entry(i) => format!("observations[{i}].{key}"),
        }
    }

    /// Whether the set is assimilated (not a verification set).
    pub fn assimilated(&self) -> bool {
        self.keys.assimilate.unwrap_or(true)
    }

    /// The file a `file` network reads.
    pub fn file(&self) -> Option<&Path> {
        self.network.spec().file()
    }

    /// Checks of the set's keys alone (keys relative to the set).
    ///
    /// # Errors
    /// A bad value, naming its key.
    pub fn check(&self) -> Result<(), KeyError> {
        self.network
            .spec()
            .check()
            .map_err(|e| prefixed("network", e))?;
        self.operator
            .spec()
            .check()
            .map_err(|e| prefixed("operator", e))?;
        if let Some(truth) = &self.truth_operator {
            truth
                .spec()
                .check()
                .map_err(|e| prefixed("truth_operator", e))?;
        }
        let k = &self.keys;
        if self.file().is_some() {
            if k.assimilate.is_some() {
                return Err(key_error(
                    "assimilate",
                    "does not apply to observations from a file (a run on a file has no truth to verify against)",
                ));
            }
            if self.truth_operator.is_some() {
                return Err(key_error(
                    "truth_operator",
                    "does not apply to observations from a file (they are not simulated)",
                ));
            }
            if self.operator.kind() != "select" || !self.operator.table().is_empty() {
                return Err(key_error(
                    "operator",
                    "does not apply to observations from a file (rows give state indices or coordinates)",
                ));
            }
            for (key, set) in [
                ("error_std", k.error_std.is_some()),
                (
                    "error_correlation_length",
                    k.error_correlation_length.is_some(),
                ),
                ("missing_fraction", k.missing_fraction.is_some()),
            ] {
                if set {
                    return Err(key_error(
                        key,
                        "does not apply to observations from a file (the file gives each error)",
                    ));
                }
            }
            if k.fields.is_some() {
                return Err(key_error(
                    "fields",
                    "does not apply to observations from a file (each row gives its state index or place)",
                ));
            }
            return Ok(());
        }
        let Some(error_std) = &k.error_std else {
            return Err(key_error(
                "error_std",
                "is required (one value, or one per observation)",
            ));
        };
        let values = error_std.values();
        if values.is_empty() {
            return Err(key_error("error_std", "must not be empty"));
        }
        if let Some(bad) = values.iter().find(|v| !(**v > 0.0 && v.is_finite())) {
            return Err(key_error(
                "error_std",
                format!("must be positive, got {bad}"),
            ));
        }
        // R = std^2 and its inverse must be normal f64 numbers.
        if let Some(bad) = values.iter().find(|v| !(1e-150..=1e150).contains(*v)) {
            return Err(key_error(
                "error_std",
                format!(
                    "{bad:e} is out of the range f64 can invert (1e-150 to 1e150): the error variance would underflow or overflow"
                ),
            ));
        }
        if let Some(l) = k.error_correlation_length
            && !(l > 0.0 && l.is_finite())
        {
            return Err(key_error(
                "error_correlation_length",
                format!("must be positive, got {l}"),
            ));
        }
        if k.missing_fraction.is_some() && !self.assimilated() {
            return Err(key_error(
                "missing_fraction",
                "does not apply to a verification set (assimilate = false): it is scored at every site",
            ));
        }
        if let Some(f) = k.missing_fraction
            && !(0.0..1.0).contains(&f)
        {
            return Err(key_error(
                "missing_fraction",
                format!("must lie in [0, 1), got {f}"),
            ));
        }
        if self.network.spec().moving()
            && matches!(error_std, ErrorStd::PerObservation(v) if v.len() > 1)
        {
            return Err(key_error(
                "error_std",
                format!(
                    "a {} network takes one error_std for all observations (or one per field)",
                    self.network.kind()
                ),
            ));
        }
        if let Some(fields) = &k.fields
            && fields.is_empty()
        {
            return Err(key_error("fields", "must not be empty"));
        }
        Ok(())
    }

    /// Builds the set on the model's geometry.
    ///
    /// # Errors
    /// Keys that do not fit the model (fields, points, sizes), naming the
    /// key relative to the set.
    pub fn build(
        &self,
        geometry: &Geometry,
        device: &burn::tensor::Device,
        seed: u64,
        index: usize,
        base: &Path,
    ) -> Result<SetNetwork, KeyError> {
        let fields: Vec<usize> = match &self.keys.fields {
            None => (0..geometry.fields.len()).collect(),
            Some(names) => names
                .iter()
                .map(|n| geometry.field_named(n).map(|(k, _)| k))
                .collect::<Result<_, _>>()
                .map_err(|why| key_error("fields", why))?,
        };
        let ctx = BuildContext {
            geometry,
            device,
            seed,
            stream_prefix: if index == 0 {
                String::new()
            } else {
                format!("{}/", self.name)
            },
            base,
            named_fields: self.keys.fields.is_some(),
            fields,
        };
        let builder = self.operator.spec().init(&ctx)?;
        let truth_builder = match &self.truth_operator {
            None => None,
            Some(truth) => {
                let b = truth
                    .spec()
                    .init(&ctx)
                    .map_err(|e| prefixed("truth_operator", e))?;
                if b.candidates() != builder.candidates() {
                    return Err(key_error(
                        "truth_operator",
                        format!(
                            "offers other sites ({} candidates) than the operator ({}): a twin's observations must be simulated where they are assimilated",
                            b.candidates().len(),
                            builder.candidates().len()
                        ),
                    ));
                }
                Some(b)
            }
        };
        let sites = self
            .network
            .spec()
            .init(&ctx, builder.candidates())
            .map_err(|e| prefixed("network", e))?;
        let rule = match self.keys.error_std.clone() {
            // A file set (no error keys) never simulates: any rule serves.
            None => StdRule::Uniform(1.0),
            Some(ErrorStd::Scalar(v)) => StdRule::Uniform(v),
            Some(ErrorStd::PerObservation(v)) if v.len() == 1 => StdRule::Uniform(v[0]),
            Some(ErrorStd::PerObservation(v)) => StdRule::PerObservation(v),
            // Per-field errors: every field the set may observe needs one.
            Some(ErrorStd::Fields(map)) => {
                for name in map.keys() {
                    geometry
                        .field_named(name)
                        .map_err(|why| key_error(&format!("error_std.{name}"), why))?;
                }
                let observed: std::collections::BTreeSet<usize> = match &sites {
                    Sites::Choose(_) => builder.candidates().iter().map(|c| c.field).collect(),
                    Sites::Points(_) => ctx.fields.iter().copied().collect(),
                };
                if let Some(&k) = observed
                    .iter()
                    .find(|&&k| !map.contains_key(&geometry.fields[k].name))
                {
                    return Err(key_error(
                        "error_std",
                        format!(
                            "field `{}` may be observed but has no error_std (name it, or restrict `fields`)",
                            geometry.fields[k].name
                        ),
                    ));
                }
                StdRule::ByField(
                    geometry
                        .fields
                        .iter()
                        .map(|f| map.get(&f.name).copied().unwrap_or(f64::NAN))
                        .collect(),
                )
            }
        };
        let mut set = SetNetwork {
            name: self.name.clone(),
            geometry: geometry.clone(),
            builder,
            truth_builder,
            rule,
            correlation_length: self.keys.error_correlation_length,
            kind: self.network.kind().to_string(),
            // Replaced below, once the builder can make the operator.
            sites: SetSites::Fixed(None),
        };
        // A fixed network is built once, here, so that its errors surface
        // before any computing.
        set.sites = match sites {
            Sites::Points(points) => {
                let (op, fields) = set.builder.at_points(&points, &set.kind)?;
                let truth = match &set.truth_builder {
                    None => None,
                    Some(b) => {
                        let (t, _) = b
                            .at_points(&points, &set.kind)
                            .map_err(|e| prefixed("truth_operator", e))?;
                        if t.size() != op.size() {
                            return Err(key_error(
                                "truth_operator",
                                format!(
                                    "gives {} observations at the network's points, the operator {}",
                                    t.size(),
                                    op.size()
                                ),
                            ));
                        }
                        Some(t)
                    }
                };
                SetSites::Fixed(Some(set.network_at(op, truth, &fields, 0)?))
            }
            Sites::Choose(choice) if choice.is_fixed() => {
                let (op, truth, fields) = set.chosen(&choice.at(0));
                SetSites::Fixed(Some(set.network_at(op, truth, &fields, 0)?))
            }
            Sites::Choose(choice) => {
                if let StdRule::PerObservation(v) = &set.rule {
                    return Err(key_error(
                        "error_std",
                        format!(
                            "has {} values, and a moving network's size changes from cycle to cycle: give one value (or one per field)",
                            v.len()
                        ),
                    ));
                }
                SetSites::Moving(choice)
            }
        };
        Ok(set)
    }
}

/// A key of a part's table as a key of the set.
fn prefixed(what: &str, (k, e): KeyError) -> KeyError {
    if k.is_empty() {
        (what.to_string(), e)
    } else {
        (format!("{what}.{k}"), e)
    }
}

/// An operator table with only `kind = "select"` (the default).
fn select_table() -> toml::Table {
    let mut t = toml::Table::new();
    t.insert("kind".into(), toml::Value::String("select".into()));
    t
}

/// The default operator of an entry that names none.
fn default_operator() -> Result<Part<dyn OperatorSpec>, KeyError> {
    Part::from_table(select_table(), OPERATORS, "operator")
}

/// A set key as the older flat table names it.
fn legacy_name(key: &str) -> String {
    match key {
        "network" | "network.kind" | "operator" | "operator.kind" => "operator".into(),
        "network.width" | "network.angle" | "network.shift" => {
            format!("swath.{}", &key["network.".len()..])
        }
        k => k.strip_prefix("network.").unwrap_or(k).to_string(),
    }
}

/// The operator at chosen sites, the truth operator there, and the field
/// of each observation.
type Chosen = (
    Arc<dyn ObsOperator>,
    Option<Arc<dyn ObsOperator>>,
    Vec<usize>,
);

/// How a set's error standard deviations are given, resolved on the
/// geometry.
enum StdRule {
    Uniform(f64),
    /// One per field of the geometry.
    ByField(Vec<f64>),
    /// One per observation of a fixed network (length checked at build).
    PerObservation(Vec<f64>),
}

/// A built set's sites: one network for every cycle, or a choice made
/// each cycle.
enum SetSites {
    Fixed(Option<NetworkAt>),
    Moving(Box<dyn super::spec::Choice>),
}

/// A built observation set: its sites, its operator builder and errors.
pub struct SetNetwork {
    name: String,
    geometry: Geometry,
    builder: Box<dyn OperatorBuilder>,
    /// The builder of `truth_operator`, on the same candidates.
    truth_builder: Option<Box<dyn OperatorBuilder>>,
    sites: SetSites,
    rule: StdRule,
    correlation_length: Option<f64>,
    kind: String,
}

impl SetNetwork {
    /// The set's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The operator of candidates `chosen`, the truth operator there (if
    /// the set has one), and the field of each observation.
    fn chosen(&self, chosen: &[usize]) -> Chosen {
        let fields = chosen
            .iter()
            .map(|&c| self.builder.candidates()[c].field)
            .collect();
        let truth = self
            .truth_builder
            .as_ref()
            .map(|b| b.at_candidates(chosen, &self.kind));
        (
            self.builder.at_candidates(chosen, &self.kind),
            truth,
            fields,
        )
    }

    /// The errors of `operator`'s observations, whose fields are `fields`.
    fn error(&self, operator: &dyn ObsOperator, fields: &[usize]) -> ObsError {
        let p = operator.size();
        let std: Vec<f64> = match &self.rule {
            StdRule::Uniform(v) => vec![*v; p],
            StdRule::ByField(by_field) => fields.iter().map(|&k| by_field[k]).collect(),
            StdRule::PerObservation(v) => v.clone(),
        };
        let model = ErrorModel {
            std,
            correlation_length: self.correlation_length,
        };
        model.errors(
            &self.geometry,
            operator.locations(),
            &(0..p).collect::<Vec<_>>(),
        )
    }

    /// A fixed network's batch (its per-observation errors checked).
    fn network_at(
        &self,
        operator: Arc<dyn ObsOperator>,
        truth: Option<Arc<dyn ObsOperator>>,
        fields: &[usize],
        network_id: u64,
    ) -> Result<NetworkAt, KeyError> {
        let p = operator.size();
        if let StdRule::PerObservation(v) = &self.rule
            && v.len() != p
        {
            return Err(key_error(
                "error_std",
                format!("has {} values for {p} observations", v.len()),
            ));
        }
        Ok(NetworkAt {
            sets: vec![p],
            error: self.error(operator.as_ref(), fields),
            operator,
            truth,
            network_id,
        })
    }
}

impl ObsNetwork for SetNetwork {
    fn at(&self, cycle: usize, _time: f64) -> NetworkAt {
        match &self.sites {
            SetSites::Fixed(Some(at)) => at.clone(),
            SetSites::Fixed(None) => NetworkAt {
                operator: Arc::new(Stacked::new(Vec::new())),
                truth: None,
                error: ObsError::Diagonal(DVector::zeros(0)),
                network_id: 0,
                sets: vec![0],
            },
            SetSites::Moving(choice) => {
                let (operator, truth, fields) = self.chosen(&choice.at(cycle));
                NetworkAt {
                    sets: vec![operator.size()],
                    error: self.error(operator.as_ref(), &fields),
                    operator,
                    truth,
                    network_id: cycle as u64 + 1,
                }
            }
        }
    }

    fn is_fixed(&self) -> bool {
        matches!(self.sites, SetSites::Fixed(_))
    }

    fn max_len(&self) -> usize {
        match &self.sites {
            SetSites::Fixed(at) => at.as_ref().map_or(0, |a| a.operator.size()),
            SetSites::Moving(choice) => choice.max_len(),
        }
    }
}

/// The network of several sets: their operators stacked, their errors
/// block-diagonal.
pub struct Stack {
    sets: Vec<SetNetwork>,
}

impl Stack {
    /// Stacks `sets` (none gives a network without observations).
    pub fn new(sets: Vec<SetNetwork>) -> Self {
        Self { sets }
    }
}

impl ObsNetwork for Stack {
    fn at(&self, cycle: usize, time: f64) -> NetworkAt {
        let parts: Vec<NetworkAt> = self.sets.iter().map(|s| s.at(cycle, time)).collect();
        let sets = parts.iter().map(|a| a.operator.size()).collect();
        let network_id = if self.is_fixed() {
            0
        } else {
            parts.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, a| {
                (h ^ a.network_id).wrapping_mul(0x0000_0100_0000_01b3)
            })
        };
        let error = block_diagonal(parts.iter().map(|a| &a.error));
        let truth: Option<Arc<dyn ObsOperator>> =
            parts.iter().any(|a| a.truth.is_some()).then(|| {
                Arc::new(Stacked::new(
                    parts
                        .iter()
                        .map(|a| a.truth.clone().unwrap_or_else(|| Arc::clone(&a.operator)))
                        .collect(),
                )) as Arc<dyn ObsOperator>
            });
        let operator = Arc::new(Stacked::new(
            parts.into_iter().map(|a| a.operator).collect(),
        ));
        NetworkAt {
            operator,
            truth,
            error,
            network_id,
            sets,
        }
    }

    fn is_fixed(&self) -> bool {
        self.sets.iter().all(ObsNetwork::is_fixed)
    }

    fn max_len(&self) -> usize {
        self.sets.iter().map(ObsNetwork::max_len).sum()
    }
}

/// The errors of stacked sets: `R` block-diagonal, and its Cholesky
/// factor the blocks' factors.
fn block_diagonal<'a>(parts: impl Iterator<Item = &'a ObsError> + Clone) -> ObsError {
    if parts.clone().all(ObsError::is_diagonal) {
        let std: Vec<f64> = parts
            .flat_map(|e| e.std().iter().copied().collect::<Vec<_>>())
            .collect();
        return ObsError::Diagonal(DVector::from_vec(std));
    }
    let p: usize = parts.clone().map(ObsError::len).sum();
    let mut covariance = DMatrix::zeros(p, p);
    let mut cholesky = DMatrix::zeros(p, p);
    let mut o = 0;
    for e in parts {
        let n = e.len();
        let (r, l) = match e {
            ObsError::Diagonal(s) => (
                DMatrix::from_diagonal(&s.map(|v| v * v)),
                DMatrix::from_diagonal(s),
            ),
            ObsError::Correlated {
                covariance,
                cholesky,
            } => (covariance.clone(), cholesky.clone()),
        };
        covariance.view_mut((o, o), (n, n)).copy_from(&r);
        cholesky.view_mut((o, o), (n, n)).copy_from(&l);
        o += n;
    }
    ObsError::Correlated {
        covariance,
        cholesky,
    }
}

/// Several operators' outputs, one after the other.
pub struct Stacked {
    parts: Vec<Arc<dyn ObsOperator>>,
    offsets: Vec<usize>,
    locations: Vec<Location>,
    selected: Option<Vec<usize>>,
    linear: bool,
}

impl Stacked {
    /// Stacks `parts`.
    pub fn new(parts: Vec<Arc<dyn ObsOperator>>) -> Self {
        let mut offsets = vec![0];
        for p in &parts {
            offsets.push(offsets.last().copied().unwrap_or(0) + p.size());
        }
        let locations = parts.iter().flat_map(|p| p.locations().to_vec()).collect();
        let linear = parts.iter().all(|p| p.linear().is_some());
        let selected = parts
            .iter()
            .map(|p| {
                p.linear()
                    .and_then(|l| l.selected_indices())
                    .map(<[usize]>::to_vec)
            })
            .collect::<Option<Vec<_>>>()
            .map(|v| v.concat());
        Self {
            parts,
            offsets,
            locations,
            selected,
            linear,
        }
    }
}

impl ObsOperator for Stacked {
    fn apply(&self, state: Tensor<2>, time: f64) -> Tensor<2> {
        let outs: Vec<Tensor<2>> = self
            .parts
            .iter()
            .map(|p| p.apply(state.clone(), time))
            .collect();
        Tensor::cat(outs, 1)
    }

    fn size(&self) -> usize {
        self.offsets.last().copied().unwrap_or(0)
    }

    fn locations(&self) -> &[Location] {
        &self.locations
    }

    fn name(&self) -> &str {
        "sets"
    }

    fn linear(&self) -> Option<&dyn LinearObs> {
        self.linear.then_some(self)
    }

    fn state_indices(&self) -> Vec<Option<usize>> {
        self.indices()
    }

    fn error_std(&self, time: f64) -> Option<Vec<f64>> {
        let parts: Vec<Option<Vec<f64>>> = self.parts.iter().map(|p| p.error_std(time)).collect();
        if parts.iter().all(Option::is_none) {
            return None;
        }
        Some(
            parts
                .into_iter()
                .zip(&self.parts)
                .flat_map(|(e, p)| e.unwrap_or_else(|| vec![0.0; p.size()]))
                .collect(),
        )
    }
}

impl Stacked {
    /// The state index each observation reads, part by part.
    fn indices(&self) -> Vec<Option<usize>> {
        self.parts.iter().flat_map(|p| p.state_indices()).collect()
    }
}

impl LinearObs for Stacked {
    fn apply_host(&self, ensemble: &DMatrix<f64>) -> DMatrix<f64> {
        let mut out = DMatrix::zeros(self.size(), ensemble.ncols());
        for (k, p) in self.parts.iter().enumerate() {
            if let Some(l) = p.linear() {
                let block = l.apply_host(ensemble);
                out.rows_mut(self.offsets[k], p.size()).copy_from(&block);
            }
        }
        out
    }

    fn adjoint_host(&self, r: &[f64], out: &mut [f64]) {
        for (k, p) in self.parts.iter().enumerate() {
            if let Some(l) = p.linear() {
                l.adjoint_host(&r[self.offsets[k]..self.offsets[k + 1]], out);
            }
        }
    }

    fn selected_indices(&self) -> Option<&[usize]> {
        self.selected.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{cpu_f64, ensemble_to_tensor, tensor_to_ensemble};

    fn set(text: &str) -> ObservationSet {
        let table: toml::Table = toml::from_str(text).unwrap();
        let s = ObservationSet::from_table(table, 0).unwrap();
        s.check().unwrap();
        s
    }

    #[test]
    fn stacked_sets_apply_adjoin_and_weigh_as_their_parts() {
        let g = Geometry::chain(12, true, "x");
        let device = cpu_f64();
        let base = Path::new(".");
        let a = set("error_std = 1.0\nnetwork = { kind = \"every\", stride = 3 }")
            .build(&g, &device, 1, 0, base)
            .unwrap();
        let b = set(
            "name = \"b\"\nerror_std = 0.5\nerror_correlation_length = 1.0\nnetwork = { kind = \"points\", x = [0.5, 11.5, 6.25] }\noperator = { kind = \"bilinear\" }",
        )
        .build(&g, &device, 1, 1, base)
        .unwrap();
        let stack = Stack::new(vec![a, b]);
        assert!(stack.is_fixed());
        assert_eq!(stack.max_len(), 7);
        let at = stack.at(0, 1.0);
        assert_eq!(at.sets, vec![4, 3]);
        // R block-diagonal: no correlation across sets, the second set's
        // errors correlated among themselves.
        let ObsError::Correlated { covariance, .. } = &at.error else {
            panic!("a correlated block makes R correlated");
        };
        assert_eq!(covariance[(0, 4)], 0.0);
        assert!((covariance[(4, 4)] - 0.25).abs() < 1e-12 && covariance[(4, 5)] > 0.0);
        // The tensor and host paths agree; the adjoint passes the dot test.
        let e = DMatrix::from_fn(12, 3, |i, j| ((i + 5 * j) as f64 * 0.37).cos());
        let op = at.operator.as_ref();
        let host = op.linear().unwrap().apply_host(&e);
        let dev = tensor_to_ensemble(op.apply(ensemble_to_tensor(&e, &device), 0.0));
        assert!((&host - &dev).abs().max() < 1e-13);
        assert!((host[(0, 0)] - e[(0, 0)]).abs() < 1e-15);
        assert!((host[(5, 0)] - 0.5 * (e[(11, 0)] + e[(0, 0)])).abs() < 1e-13);
        let r: Vec<f64> = (0..7).map(|k| 1.0 - 0.3 * k as f64).collect();
        let mut htr = vec![0.0; 12];
        op.linear().unwrap().adjoint_host(&r, &mut htr);
        let lhs: f64 = host.column(1).iter().zip(&r).map(|(a, b)| a * b).sum();
        let rhs: f64 = e.column(1).iter().zip(&htr).map(|(a, b)| a * b).sum();
        assert!((lhs - rhs).abs() < 1e-12, "{lhs} vs {rhs}");
        assert_eq!(op.linear().unwrap().selected_indices(), None);
    }

    #[test]
    fn older_flat_tables_read_as_one_set_with_their_key_names() {
        let old: LegacyObservations =
            toml::from_str("operator = \"swath\"\nerror_std = 1.0\nswath = { width = -1.0 }")
                .unwrap();
        let (s, steps) = ObservationSet::from_legacy(old).unwrap();
        assert_eq!(steps, None);
        assert_eq!(s.network.kind(), "swath");
        let (k, _) = s.check().unwrap_err();
        assert_eq!(s.key(&k), "observations.swath.width");
        let old: LegacyObservations =
            toml::from_str("operator = \"every\"\nerror_std = 1.0\ncount = 3").unwrap();
        let (k, e) = ObservationSet::from_legacy(old).unwrap_err();
        assert_eq!(k, "count");
        assert!(e.contains("\"random\" or \"tracks\""), "{e}");
        let table: toml::Table =
            toml::from_str("error_std = 1.0\nnetwork = { kind = \"random\", count = 0 }").unwrap();
        let s = ObservationSet::from_table(table, 0).unwrap();
        let err = s.check().unwrap_err();
        assert_eq!(s.key(&err.0), "observations[0].network.count");
    }
}
