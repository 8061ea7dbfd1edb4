//! The observation seam as parts: a *network* says where and when
//! observations are taken, an *operator* says what `H` does there.
//!
//! Both are serde-tagged specs read from a table with a `kind` key
//! (`network = { kind = "random", count = 20 }`, `operator = { kind =
//! "bilinear" }`), registered in one list each ([`super::NETWORKS`],
//! [`super::OPERATORS`]). A spec checks its own keys ([`NetworkSpec::check`],
//! [`OperatorSpec::check`]) and builds itself on the model's geometry
//! (`init`), returning errors that name its key; nothing is validated in
//! one place and used in another.
//!
//! An operator built on a geometry offers *candidate sites*: the discrete
//! things it can observe (grid points of its fields for `select`, coarse
//! blocks for `block_average`). A network either chooses among those
//! candidates at each cycle (identity, every, indices, random, tracks,
//! swath) or gives arbitrary points (points, stations) that operators able
//! to interpolate accept.
//!
//! Adding an operator: its file in `obs/` with a config type implementing
//! [`OperatorSpec`] and [`SpecDoc`], and one line in [`super::OPERATORS`].

use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::tensor::Device;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::core::{Geometry, Location, ObsOperator};

/// An error of a spec: the key (relative to the spec's table, empty for
/// the table itself) and the reason.
pub type KeyError = (String, String);

/// A key error for `key`.
pub fn key_error(key: &str, reason: impl Into<String>) -> KeyError {
    (key.to_string(), reason.into())
}

/// One documented key of a spec: name, type, meaning, and an example
/// value when it is required.
#[derive(Clone, Copy, Debug)]
pub struct SpecKey {
    /// The key.
    pub key: &'static str,
    /// Its type and unit, in words.
    pub kind: &'static str,
    /// What it does.
    pub doc: &'static str,
    /// `Some(example)` (TOML) when the key is required.
    pub required: Option<&'static str>,
}

/// A spec's own documentation, read by `rime schema`.
pub trait SpecDoc {
    /// What the part does, in a sentence or two.
    const DOC: &'static str;
    /// Its keys besides `kind`.
    const KEYS: &'static [SpecKey];
}

/// What building a part needs besides its own keys.
pub struct BuildContext<'a> {
    /// The model the observations see (the cycled model's geometry).
    pub geometry: &'a Geometry,
    /// Where tensors live.
    pub device: &'a Device,
    /// The run's seed; networks draw from `stream(seed, prefix + ...)`.
    pub seed: u64,
    /// Prefix of the set's random streams (empty for the first set, so
    /// files of one set keep their numbers).
    pub stream_prefix: String,
    /// The folder of the experiment file (relative paths).
    pub base: &'a Path,
    /// The fields the set observes, by index (all fields when the set
    /// names none).
    pub fields: Vec<usize>,
    /// Whether the set named its fields (`fields = [...]`): then only
    /// their active points are candidates.
    pub named_fields: bool,
}

/// A discrete site an operator can observe.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    /// The field observed (index in the geometry).
    pub field: usize,
    /// Where the observation sits.
    pub location: Location,
}

/// An operator built on a geometry: its candidate sites and the operator
/// for the sites chosen at one cycle.
pub trait OperatorBuilder: Send + Sync {
    /// The sites a choosing network picks from, in a fixed order.
    fn candidates(&self) -> &[Candidate];

    /// The operator observing candidates `chosen` (indices into
    /// [`candidates`](Self::candidates)).
    fn at_candidates(&self, chosen: &[usize], name: &str) -> Arc<dyn ObsOperator>;

    /// The operator observing arbitrary `points` (in the geometry's
    /// coordinates), each in every field of the set; with the field of
    /// each observation.
    ///
    /// # Errors
    /// An operator that only observes its candidates, or a point outside
    /// the domain or where the field is masked (the key is the network's
    /// point list, as `points`).
    fn at_points(
        &self,
        points: &[Location],
        name: &str,
    ) -> Result<(Arc<dyn ObsOperator>, Vec<usize>), KeyError>;

    /// Fixed fields at the candidates, in their order, that the operator
    /// reads besides the state (a terrain): what an emulator of the
    /// operator takes as static inputs. None by default.
    fn static_fields(&self) -> Vec<StaticField> {
        Vec::new()
    }
}

/// A fixed field at an operator's candidates ([`OperatorBuilder::static_fields`]).
#[derive(Clone, Debug, PartialEq)]
pub struct StaticField {
    /// Its name (`orography`).
    pub name: String,
    /// Its units.
    pub units: String,
    /// One value per candidate.
    pub values: Vec<f64>,
}

/// The config of an operator (a registered `kind`).
pub trait OperatorSpec: Send + Sync + Debug {
    /// Checks of the keys alone.
    ///
    /// # Errors
    /// A bad value, naming its key.
    fn check(&self) -> Result<(), KeyError> {
        Ok(())
    }

    /// Builds the operator on the model's geometry.
    ///
    /// # Errors
    /// Keys that do not fit the model, naming the key.
    fn init(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn OperatorBuilder>, KeyError>;
}

/// A network that chooses candidates cycle by cycle.
pub trait Choice: Send + Sync {
    /// The candidates observed at `cycle`.
    fn at(&self, cycle: usize) -> Vec<usize>;
    /// Whether the choice is the same at every cycle.
    fn is_fixed(&self) -> bool;
    /// The most candidates chosen at one cycle.
    fn max_len(&self) -> usize;
}

/// Where a network observes.
pub enum Sites {
    /// Candidates of the operator, chosen at each cycle.
    Choose(Box<dyn Choice>),
    /// The same arbitrary points at every cycle.
    Points(Vec<Location>),
}

/// The config of a network (a registered `kind`).
pub trait NetworkSpec: Send + Sync + Debug {
    /// Checks of the keys alone.
    ///
    /// # Errors
    /// A bad value, naming its key.
    fn check(&self) -> Result<(), KeyError> {
        Ok(())
    }

    /// Whether the sites change from cycle to cycle (such a network takes
    /// one error_std for all observations, or one per field).
    fn moving(&self) -> bool {
        false
    }

    /// The file the observations are read from, for a network that reads
    /// them instead of simulating them (no truth, no operator).
    fn file(&self) -> Option<&Path> {
        None
    }

    /// Builds the network on the operator's candidates.
    ///
    /// # Errors
    /// Keys that do not fit the model or the operator, naming the key.
    fn init(&self, ctx: &BuildContext<'_>, candidates: &[Candidate]) -> Result<Sites, KeyError>;
}

type Parse<S> = fn(toml::Table) -> Result<Arc<S>, String>;
type ReadJson = fn(toml::Table) -> Result<serde_json::Value, String>;

/// One registered part: its `kind`, how its table is read, and its
/// documentation.
pub struct SpecEntry<S: ?Sized> {
    /// The `kind` in the file.
    pub kind: &'static str,
    parse: Parse<S>,
    /// The table read into the config type and written back as JSON with
    /// every default filled in (for `rime schema`).
    pub read_json: ReadJson,
    /// What the part does.
    pub doc: &'static str,
    /// Its keys.
    pub keys: &'static [SpecKey],
}

/// A table read into the config type `T`, with serde's message on
/// failure.
pub(crate) fn parse_config<T: DeserializeOwned>(table: toml::Table) -> Result<T, String> {
    toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| e.message().trim_end().to_string())
}

/// A table read into the config type `T` and written back as JSON, with
/// every default filled in.
pub(crate) fn read_json<T: DeserializeOwned + Serialize>(
    table: toml::Table,
) -> Result<serde_json::Value, String> {
    serde_json::to_value(parse_config::<T>(table)?).map_err(|e| e.to_string())
}

fn parse_operator<T: OperatorSpec + DeserializeOwned + 'static>(
    table: toml::Table,
) -> Result<Arc<dyn OperatorSpec>, String> {
    Ok(Arc::new(parse_config::<T>(table)?))
}

fn parse_network<T: NetworkSpec + DeserializeOwned + 'static>(
    table: toml::Table,
) -> Result<Arc<dyn NetworkSpec>, String> {
    Ok(Arc::new(parse_config::<T>(table)?))
}

/// A registry line for operator `T`.
pub const fn operator<T: OperatorSpec + SpecDoc + DeserializeOwned + Serialize + 'static>(
    kind: &'static str,
) -> SpecEntry<dyn OperatorSpec> {
    SpecEntry {
        kind,
        parse: parse_operator::<T>,
        read_json: read_json::<T>,
        doc: T::DOC,
        keys: T::KEYS,
    }
}

/// A registry line for network `T`.
pub const fn network<T: NetworkSpec + SpecDoc + DeserializeOwned + Serialize + 'static>(
    kind: &'static str,
) -> SpecEntry<dyn NetworkSpec> {
    SpecEntry {
        kind,
        parse: parse_network::<T>,
        read_json: read_json::<T>,
        doc: T::DOC,
        keys: T::KEYS,
    }
}

/// A part read from its table: the `kind`, the keys as written, and the
/// parsed spec.
#[derive(Debug)]
pub struct Part<S: ?Sized> {
    kind: String,
    table: toml::Table,
    spec: Arc<S>,
}

impl<S: ?Sized> Clone for Part<S> {
    fn clone(&self) -> Self {
        Self {
            kind: self.kind.clone(),
            table: self.table.clone(),
            spec: Arc::clone(&self.spec),
        }
    }
}

impl<S: ?Sized> PartialEq for Part<S> {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.table == other.table
    }
}

impl<S: ?Sized> Part<S> {
    /// Reads a part from a table with a `kind` among `registry`'s; `what`
    /// ("network", "operator") names the part in errors.
    ///
    /// # Errors
    /// A missing or unknown kind, or the spec's own parse error naming the
    /// key.
    pub fn from_table(
        mut table: toml::Table,
        registry: &'static [SpecEntry<S>],
        what: &str,
    ) -> Result<Self, KeyError> {
        let kinds = || {
            registry
                .iter()
                .map(|e| format!("\"{}\"", e.kind))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let kind = match table.remove("kind") {
            Some(toml::Value::String(s)) => s,
            Some(other) => {
                return Err(key_error("kind", format!("must be a string, got {other}")));
            }
            None => {
                return Err(key_error(
                    "kind",
                    format!("is required: the {what}'s kind, one of {}", kinds()),
                ));
            }
        };
        let entry = registry.iter().find(|e| e.kind == kind).ok_or_else(|| {
            key_error(
                "kind",
                format!("unknown {what} \"{kind}\", expected one of {}", kinds()),
            )
        })?;
        let spec = (entry.parse)(table.clone()).map_err(|e| {
            // serde names the type, not the key: find the key whose value
            // alone fails, or the unknown key.
            let culprit = table.keys().find(|k| {
                let mut one = table.clone();
                one.remove(*k);
                (entry.parse)(one).is_ok()
            });
            match culprit {
                Some(k) => key_error(k, e),
                None => key_error("", format!("{what} \"{kind}\": {e}")),
            }
        })?;
        Ok(Self { kind, table, spec })
    }

    /// The kind as written.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The keys as written (without `kind`).
    pub fn table(&self) -> &toml::Table {
        &self.table
    }

    /// The parsed spec.
    pub fn spec(&self) -> &S {
        &self.spec
    }

    /// The part as a table with its kind, as written.
    pub fn to_table(&self) -> toml::Table {
        let mut t = self.table.clone();
        t.insert("kind".into(), toml::Value::String(self.kind.clone()));
        t
    }
}

impl<S: ?Sized> Serialize for Part<S> {
    fn serialize<Se: serde::Serializer>(&self, s: Se) -> Result<Se::Ok, Se::Error> {
        self.to_table().serialize(s)
    }
}

/// A path of a spec taken from the experiment file's folder when relative.
pub fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_relative() {
        base.join(path)
    } else {
        path.to_path_buf()
    }
}
