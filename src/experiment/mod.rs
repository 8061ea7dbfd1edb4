//! Twin experiments: configuration, simulation of truth and observations,
//! the cycling runner and its outputs.

pub mod config;
pub mod output;
pub mod runner;
pub mod twin;

pub use config::{ConfigError, ExperimentConfig};
pub use runner::{Report, RunOptions, run};
pub use twin::Twin;
