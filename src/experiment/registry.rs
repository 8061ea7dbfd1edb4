//! The registry: model names to the config types that build them.
//!
//! A model table (`[model]`, `[forecast_model]`) is kept as plain TOML with
//! its `name`; the registry parses it into that model's own config type
//! (which rejects unknown keys) and that config builds the model with
//! `init(&device)`. Adding a model means writing its file in `models/`
//! (the model, its config, `ModelSpec::init`) and adding one line to
//! [`MODELS`].

use std::sync::Arc;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::core::Model;
use crate::learned::EmulatorConfig;
use crate::models::{
    Advection2dConfig, BoundaryLayerConfig, BuildError, IceAtmosphereConfig, Lorenz63Config,
    Lorenz96Config, Lorenz96TruncatedConfig, Lorenz96TwoScaleConfig, ModelSpec, QgConfig,
    SeaIceConfig,
};

type Parse = fn(toml::Table) -> Result<Arc<dyn ModelSpec>, String>;
type ReadJson = fn(toml::Table) -> Result<serde_json::Value, String>;

fn parse<T: ModelSpec + serde::de::DeserializeOwned + 'static>(
    table: toml::Table,
) -> Result<Arc<dyn ModelSpec>, String> {
    Ok(Arc::new(parse_config::<T>(table)?))
}

pub(crate) use crate::obs::spec::{parse_config, read_json};

/// One registered model: its `name` and how its table is read.
pub struct ModelEntry {
    /// The `name` in the file.
    pub name: &'static str,
    parse: Parse,
    /// The table read into the config type and written back as JSON, with
    /// every default filled in (for `rime schema`).
    pub read_json: ReadJson,
}

const fn model<T: ModelSpec + serde::de::DeserializeOwned + Serialize + 'static>(
    name: &'static str,
) -> ModelEntry {
    ModelEntry {
        name,
        parse: parse::<T>,
        read_json: read_json::<T>,
    }
}

/// Every model rime can build, one line each.
pub const MODELS: &[ModelEntry] = &[
    model::<Lorenz63Config>("lorenz63"),
    model::<Lorenz96Config>("lorenz96"),
    model::<Lorenz96TwoScaleConfig>("lorenz96_two_scale"),
    model::<Lorenz96TruncatedConfig>("lorenz96_truncated"),
    model::<Advection2dConfig>("advection2d"),
    model::<QgConfig>("qg"),
    model::<BoundaryLayerConfig>("boundary_layer"),
    model::<SeaIceConfig>("sea_ice"),
    model::<IceAtmosphereConfig>("sea_ice_abl"),
    model::<EmulatorConfig>("emulator"),
];

/// Keys of model tables that name files; a relative path is taken from the
/// folder of the file that holds the table.
const FILE_KEYS: &[&str] = &["checkpoint", "forcing"];

/// The names of the registered models.
pub fn model_names() -> Vec<&'static str> {
    MODELS.iter().map(|m| m.name).collect()
}

/// The registered model called `name`.
pub fn model_entry(name: &str) -> Option<&'static ModelEntry> {
    MODELS.iter().find(|m| m.name == name)
}

/// A model table: the model's name, its keys as written, and the parsed
/// config that builds it.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    name: String,
    table: toml::Table,
    spec: Arc<dyn ModelSpec>,
}

impl PartialEq for ModelConfig {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.table == other.table
    }
}

impl ModelConfig {
    /// Parses a model table (with its `name` key).
    ///
    /// # Errors
    /// A missing or unknown name, or the model config's own parse error
    /// (unknown key, wrong type).
    pub fn from_table(mut table: toml::Table) -> Result<Self, String> {
        let name = match table.remove("name") {
            Some(toml::Value::String(s)) => s,
            Some(other) => return Err(format!("`name` must be a string, got {other}")),
            None => {
                return Err(format!(
                    "missing key `name` (one of {})",
                    model_names().join(", ")
                ));
            }
        };
        let parse = model_entry(&name).map(|m| m.parse).ok_or_else(|| {
            format!(
                "unknown model `{name}`, expected one of {}",
                model_names().join(", ")
            )
        })?;
        let spec = parse(table.clone()).map_err(|e| {
            // serde names the type but not the key: find the key whose
            // value alone fails (model configs need no key).
            let culprit = table.iter().find(|(k, v)| {
                let mut one = toml::Table::new();
                one.insert((*k).clone(), (*v).clone());
                parse(one).is_err()
            });
            match culprit {
                Some((k, _)) => format!("model `{name}`, key `{k}`: {e}"),
                None => format!("model `{name}`: {e}"),
            }
        })?;
        Ok(Self { name, table, spec })
    }

    /// A model config from TOML text such as `name = "lorenz96"\nsize = 40`.
    ///
    /// # Errors
    /// As [`ModelConfig::from_table`].
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        Self::from_table(table)
    }

    /// Takes relative file paths of the table (a checkpoint) from `base`,
    /// the folder of the file the table was read from.
    ///
    /// # Errors
    /// As [`ModelConfig::from_table`].
    pub fn resolve_paths(&mut self, base: &std::path::Path) -> Result<(), String> {
        let mut table = self.table.clone();
        let mut changed = false;
        for key in FILE_KEYS {
            if let Some(toml::Value::String(p)) = table.get(*key)
                && std::path::Path::new(p).is_relative()
            {
                let joined = base.join(p).display().to_string();
                table.insert((*key).to_string(), toml::Value::String(joined));
                changed = true;
            }
        }
        if changed {
            table.insert("name".into(), toml::Value::String(self.name.clone()));
            *self = Self::from_table(table)?;
        }
        Ok(())
    }

    /// The model's name as written in the file.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The keys as written (without `name`).
    pub fn table(&self) -> &toml::Table {
        &self.table
    }

    /// The state size the model's keys give, with the key that sets it,
    /// before anything is built (`None` where the model cannot tell).
    pub fn state_size(&self) -> Option<(u128, &'static str)> {
        self.spec.state_size()
    }

    /// What a user must know about starting the model (see
    /// [`crate::models::ModelSpec::start_hint`]).
    pub fn start_hint(&self) -> Option<&'static str> {
        self.spec.start_hint()
    }

    /// Builds the model on `device`.
    ///
    /// # Errors
    /// A value the model cannot use, or a file it cannot read.
    pub fn init(&self, device: &Device) -> Result<Box<dyn Model>, BuildError> {
        if let Some((n, key)) = self.spec.state_size() {
            crate::models::check_state_size(n, key, super::runner::machine_memory())?;
        }
        self.spec.init(device)
    }
}

impl Serialize for ModelConfig {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut table = self.table.clone();
        table.insert("name".into(), toml::Value::String(self.name.clone()));
        table.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ModelConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let table = toml::Table::deserialize(deserializer)?;
        Self::from_table(table).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::cpu_f64;

    #[test]
    fn every_registered_model_builds_with_its_required_keys_only() {
        // A model built from a file (the emulator's checkpoint) is built in
        // its own tests.
        for name in model_names().into_iter().filter(|n| *n != "emulator") {
            let header = format!("[model] name = \"{name}\"");
            let doc = super::super::schema::tables()
                .into_iter()
                .find(|t| t.header == header)
                .unwrap();
            let mut text = format!("name = \"{name}\"\n");
            for k in doc.keys.iter().filter(|k| k.required.is_some()) {
                text += &format!("{} = {}\n", k.key, k.required.unwrap());
            }
            let config = ModelConfig::from_toml(&text).unwrap();
            let model = config.init(&cpu_f64()).unwrap();
            assert!(model.size() > 0, "{name}");
        }
    }

    #[test]
    fn bad_tables_name_the_problem() {
        let e = ModelConfig::from_toml("name = \"lorenz97\"").unwrap_err();
        assert!(e.contains("lorenz97") && e.contains("lorenz96"), "{e}");
        let e = ModelConfig::from_toml("name = \"lorenz96\"\nsise = 3").unwrap_err();
        assert!(e.contains("sise"), "{e}");
        let e = ModelConfig::from_toml("name = \"lorenz96\"\nsize = 3")
            .unwrap()
            .init(&cpu_f64())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("size") && e.contains('3'), "{e}");
    }
}
