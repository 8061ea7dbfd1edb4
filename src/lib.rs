//! # rime
//!
//! Differentiable programming and data assimilation (DA) for the geosciences.
//!
//! Physics and learned models implement one [`Model`](core::Model) seam,
//! observation operators implement one [`ObsOperator`](core::ObsOperator)
//! seam, and DA methods ([`da`]) consume those two seams without knowing which
//! concrete model they drive. The seams live in [`core`], which depends on
//! nothing else in rime. Models are written in burn tensor ops, so the
//! same code runs on the CPU, on a GPU and under automatic differentiation.
//!
//! A twin experiment is described by a TOML file (see
//! [`experiment::config`]), simulated by [`experiment::twin`], run by
//! [`experiment::runner`] and written as NetCDF plus `summary.json` by
//! [`io`].
//!
//! ```no_run
//! use rime::experiment::{config::ExperimentConfig, runner};
//! let config = ExperimentConfig::from_file("experiments/lorenz96/sakov2008.toml").unwrap();
//! let report = runner::run(&config, &runner::RunOptions::default()).unwrap();
//! for method in &report.methods {
//!     println!("{}: {:?}", method.label, method.summary.rmse_a);
//! }
//! ```

// Validation reads `!(x > 0.0)` on purpose: it also rejects NaN.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

pub mod core;
pub mod da;
pub mod device;
pub mod experiment;
pub mod io;
pub mod learned;
pub mod metrics;
pub mod models;
pub mod obs;
pub mod plot;
pub mod rng;
pub mod simd;

pub use crate::core::{Geometry, Model, ObsBatch, ObsOperator};
