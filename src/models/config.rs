//! The `[model]` table of an experiment file.

use serde::{Deserialize, Serialize};

use super::lorenz96_two_scale::TwoScaleTendency;
use super::{
    Integrator, Lorenz63, Lorenz96, Lorenz96Truncated, Lorenz96TwoScale, Model, Parametrisation,
};

/// A model and its parameters, selected by `name`. Every key has the
/// published default, so `[model] name = "lorenz96"` is the Lorenz & Emanuel
/// (1998) setup.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case", deny_unknown_fields)]
pub enum ModelConfig {
    /// Lorenz (1963).
    Lorenz63 {
        /// Prandtl number.
        #[serde(default = "default_sigma")]
        sigma: f64,
        /// Rayleigh number.
        #[serde(default = "default_rho")]
        rho: f64,
        /// Geometric factor.
        #[serde(default = "default_beta")]
        beta: f64,
        /// Time step.
        #[serde(default = "default_dt_l63")]
        dt: f64,
        /// Integrator.
        #[serde(default)]
        integrator: Integrator,
    },
    /// Lorenz (1996), any size and forcing.
    Lorenz96 {
        /// Number of variables.
        #[serde(default = "default_size")]
        size: usize,
        /// Forcing F.
        #[serde(default = "default_forcing")]
        forcing: f64,
        /// Time step.
        #[serde(default = "default_dt_l96")]
        dt: f64,
        /// Integrator.
        #[serde(default)]
        integrator: Integrator,
    },
    /// Two-scale Lorenz-96, Wilks (2005) parameters by default.
    Lorenz96TwoScale {
        /// Slow variables K.
        #[serde(default = "default_slow")]
        slow: usize,
        /// Fast variables per slow one, J.
        #[serde(default = "default_fast")]
        fast_per_slow: usize,
        /// Forcing F.
        #[serde(default = "default_forcing_wilks")]
        forcing: f64,
        /// Coupling h.
        #[serde(default = "default_one")]
        coupling: f64,
        /// Time-scale ratio c.
        #[serde(default = "default_ten")]
        time_scale: f64,
        /// Amplitude ratio b.
        #[serde(default = "default_ten")]
        amplitude: f64,
        /// Time step.
        #[serde(default = "default_dt_two_scale")]
        dt: f64,
        /// Integrator.
        #[serde(default)]
        integrator: Integrator,
    },
    /// Truncated single-scale Lorenz-96 with a parametrised fast tendency.
    Lorenz96Truncated {
        /// Number of slow variables.
        #[serde(default = "default_slow")]
        size: usize,
        /// Forcing F.
        #[serde(default = "default_forcing_wilks")]
        forcing: f64,
        /// The parametrisation of the missing fast variables.
        #[serde(default)]
        parametrisation: Parametrisation,
        /// Time step.
        #[serde(default = "default_dt_l96")]
        dt: f64,
        /// Integrator.
        #[serde(default)]
        integrator: Integrator,
    },
}

fn default_sigma() -> f64 {
    10.0
}
fn default_rho() -> f64 {
    28.0
}
fn default_beta() -> f64 {
    8.0 / 3.0
}
fn default_dt_l63() -> f64 {
    0.01
}
fn default_size() -> usize {
    40
}
fn default_forcing() -> f64 {
    8.0
}
fn default_dt_l96() -> f64 {
    0.05
}
fn default_slow() -> usize {
    8
}
fn default_fast() -> usize {
    32
}
fn default_forcing_wilks() -> f64 {
    20.0
}
fn default_one() -> f64 {
    1.0
}
fn default_ten() -> f64 {
    10.0
}
fn default_dt_two_scale() -> f64 {
    0.005
}

impl ModelConfig {
    /// The model's name as written in the file.
    pub fn name(&self) -> &'static str {
        match self {
            ModelConfig::Lorenz63 { .. } => "lorenz63",
            ModelConfig::Lorenz96 { .. } => "lorenz96",
            ModelConfig::Lorenz96TwoScale { .. } => "lorenz96_two_scale",
            ModelConfig::Lorenz96Truncated { .. } => "lorenz96_truncated",
        }
    }

    /// The time step.
    pub fn dt(&self) -> f64 {
        match self {
            ModelConfig::Lorenz63 { dt, .. }
            | ModelConfig::Lorenz96 { dt, .. }
            | ModelConfig::Lorenz96TwoScale { dt, .. }
            | ModelConfig::Lorenz96Truncated { dt, .. } => *dt,
        }
    }

    /// Checks the values; the error is `(key, reason)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let positive = |key: &str, v: f64| {
            if v > 0.0 && v.is_finite() {
                Ok(())
            } else {
                Err((
                    key.to_string(),
                    format!("must be a positive number, got {v}"),
                ))
            }
        };
        positive("dt", self.dt())?;
        match self {
            ModelConfig::Lorenz96 { size, .. } | ModelConfig::Lorenz96Truncated { size, .. }
                if *size < 4 =>
            {
                Err((
                    "size".into(),
                    format!("Lorenz-96 needs at least 4 variables, got {size}"),
                ))
            }
            ModelConfig::Lorenz96TwoScale {
                slow,
                fast_per_slow,
                time_scale,
                amplitude,
                ..
            } => {
                if *slow < 4 {
                    return Err((
                        "slow".into(),
                        format!("needs at least 4 slow variables, got {slow}"),
                    ));
                }
                if *fast_per_slow < 1 {
                    return Err(("fast_per_slow".into(), "must be at least 1".into()));
                }
                positive("time_scale", *time_scale)?;
                positive("amplitude", *amplitude)
            }
            _ => Ok(()),
        }
    }

    /// Builds the model.
    pub fn build(&self) -> Box<dyn Model> {
        match *self {
            ModelConfig::Lorenz63 {
                sigma,
                rho,
                beta,
                dt,
                integrator,
            } => Box::new(Lorenz63::lorenz63(sigma, rho, beta, dt, integrator)),
            ModelConfig::Lorenz96 {
                size,
                forcing,
                dt,
                integrator,
            } => Box::new(Lorenz96::lorenz96(size, forcing, dt, integrator)),
            ModelConfig::Lorenz96TwoScale {
                slow,
                fast_per_slow,
                forcing,
                coupling,
                time_scale,
                amplitude,
                dt,
                integrator,
            } => Box::new(Lorenz96TwoScale::two_scale(
                TwoScaleTendency {
                    slow,
                    fast_per_slow,
                    forcing,
                    coupling,
                    time_scale,
                    amplitude,
                },
                dt,
                integrator,
            )),
            ModelConfig::Lorenz96Truncated {
                size,
                forcing,
                parametrisation,
                dt,
                integrator,
            } => Box::new(Lorenz96Truncated::truncated(
                size,
                forcing,
                parametrisation,
                dt,
                integrator,
            )),
        }
    }
}
