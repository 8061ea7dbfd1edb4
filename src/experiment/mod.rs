//! Twin experiments: configuration, the model registry, simulation of
//! truth and observations, the cycling runner and its outputs.

pub mod config;
pub mod maps;
pub mod output;
pub mod registry;
pub mod runner;
pub mod schema;
pub mod twin;

pub use config::{ConfigError, ExperimentConfig};
pub use registry::ModelConfig;
pub use runner::{Report, RunOptions, run};
pub use twin::{Built, ObsSource, TruthRun};
