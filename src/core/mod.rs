//! The seams, and nothing else: the [`Model`] and [`ObsOperator`] traits,
//! the [`Geometry`] that describes a state's fields, observation batches
//! with their errors, and the one [`Forecaster`] every consumer advances
//! states with. No concrete model, no configuration and no DA lives here;
//! everything else depends on this module, never the other way round.
//!
//! States cross the seam as `[members, n]` tensors on a burn device (host
//! ensembles are `n x members` nalgebra matrices, the same memory layout);
//! [`crate::device`] holds the transfers, which cast explicitly between the
//! device's float type and the f64 of DA algebra.

pub mod forecast;
pub mod geometry;
pub mod model;
pub mod obs;

pub use forecast::{ForecastError, Forecaster};
pub use geometry::{CoordinateUnits, Coordinates, Field, Geometry, GridPosition, Location};
pub use model::{ForcingField, HostStepper, MapField, MapScale, Model, NoiseKeys, StochasticModel};
pub use obs::{
    LinearObs, ObsBatch, ObsError, ObsOperator, Subset, apply_to_ensemble, apply_to_state,
};
