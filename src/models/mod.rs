//! The `Model` seam, integrators and the toy models.
//!
//! A model advances a batch of states, shape `[members, n]`, in one call, in
//! burn tensor ops: the same code runs on the CPU, on a GPU and under
//! autodiff. Ordinary differential equations are written once as a
//! [`Tendency`] and stepped by any [`Integrator`]; the integrator is a
//! separate choice from the physics, as in diffrax.

pub mod adjoint;
pub mod advection2d;
pub mod boundary_layer;
pub mod ice_atmosphere;
pub mod integrator;
pub mod lorenz63;
pub mod lorenz96;
pub mod lorenz96_two_scale;
pub mod orographic;
pub mod qg;
pub mod sea_ice;

use burn::tensor::{Device, Tensor};

pub use advection2d::{Advection2d, Advection2dConfig};
pub use boundary_layer::{BoundaryLayer, BoundaryLayerConfig};
pub use ice_atmosphere::{IceAtmosphere, IceAtmosphereConfig};
pub use integrator::{Integrator, Ode, OdeModel, Tendency};
pub use lorenz63::{Lorenz63, Lorenz63Config};
pub use lorenz96::{Lorenz96, Lorenz96Config};
pub use lorenz96_two_scale::{
    Lorenz96Truncated, Lorenz96TruncatedConfig, Lorenz96TwoScale, Lorenz96TwoScaleConfig,
    Parametrisation,
};
pub use qg::{Qg, QgConfig};
pub use sea_ice::{SeaIce, SeaIceConfig};

use crate::core::Model;

/// Why a model could not be built: a bad value (named by its key) or a
/// missing or unreadable file (weights, grids, forcing).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A well-formed but impossible value.
    #[error("key `{key}`: {reason}")]
    Invalid {
        /// The key within the model's table.
        key: String,
        /// Why.
        reason: String,
    },
    /// A file the model needs.
    #[error("{}: {reason}", path.display())]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        reason: String,
    },
}

impl BuildError {
    /// A bad value of `key`.
    pub fn invalid(key: &str, reason: impl Into<String>) -> Self {
        BuildError::Invalid {
            key: key.to_string(),
            reason: reason.into(),
        }
    }
}

/// The configuration of a model: plain serde data from the model's table
/// of an experiment file, which builds the model once per run on a device.
/// A new model implements this next to its code and adds one line to the
/// registry (`experiment::registry`).
pub trait ModelSpec: std::fmt::Debug + Send + Sync {
    /// Builds the model on `device`.
    ///
    /// # Errors
    /// A value the model cannot use, or a file it cannot read.
    fn init(&self, device: &Device) -> Result<Box<dyn Model>, BuildError>;

    /// The number of state variables the model would have, computed from
    /// its keys without allocating anything, with the key that sets it;
    /// `None` where it is not known before building. Checked against the
    /// machine's memory before [`init`](Self::init) allocates (a size of
    /// 10^12 is refused by its key, not by an aborted allocation).
    fn state_size(&self) -> Option<(u128, &'static str)> {
        None
    }

    /// What a user must know about starting the model, said when a run
    /// starts it without a climatological sample (`[initial.sample]`): a
    /// model that starts from rest and must spin up first.
    fn start_hint(&self) -> Option<&'static str> {
        None
    }
}

/// A lower bound on the state-sized f64 arrays a model holds while it
/// steps (its state, tendencies, stages of the integrator, scratch).
pub const MODEL_ARRAYS: u128 = 8;

/// Refuses a model whose state of `n` variables cannot fit the machine's
/// memory (`total` bytes, where known), naming `key`.
///
/// # Errors
/// The key, the size and the memory it would need.
pub fn check_state_size(n: u128, key: &str, total: Option<u64>) -> Result<(), BuildError> {
    let bytes = n.saturating_mul(8).saturating_mul(MODEL_ARRAYS);
    match total {
        Some(total) if bytes > u128::from(total) => Err(BuildError::invalid(
            key,
            format!(
                "a state of {n} variables needs at least {:.1} GiB for the model's own arrays, more than the machine's {:.1} GiB",
                bytes as f64 / (1u64 << 30) as f64,
                total as f64 / (1u64 << 30) as f64
            ),
        )),
        _ => Ok(()),
    }
}

/// Checks that `value` is a positive finite number.
pub(crate) fn positive(key: &str, value: f64) -> Result<(), BuildError> {
    if value > 0.0 && value.is_finite() {
        Ok(())
    } else {
        Err(BuildError::invalid(
            key,
            format!("must be a positive number, got {value}"),
        ))
    }
}

/// Checks that `value` is finite.
pub(crate) fn finite(key: &str, value: f64) -> Result<(), BuildError> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(BuildError::invalid(
            key,
            format!("must be finite, got {value}"),
        ))
    }
}

/// Periodic neighbours of a `[members, n]` batch along the state axis.
///
/// The batch is padded once with `before` wrapped columns on the left and
/// `after` on the right (one copy); [`Neighbours::at`] then returns
/// `x[:, (i + k) mod n]` as a zero-copy view. Three `roll`s would copy three
/// times; stencil tendencies are the hot path of every forecast.
pub(crate) struct Neighbours {
    padded: Tensor<2>,
    before: usize,
    n: usize,
}

impl Neighbours {
    /// Pads `x` for offsets in `-before..=after`.
    pub(crate) fn new(x: Tensor<2>, before: usize, after: usize) -> Self {
        let n = x.dims()[1];
        let padded = Tensor::cat(
            vec![
                x.clone().narrow(1, n - before, before),
                x.clone(),
                x.narrow(1, 0, after),
            ],
            1,
        );
        Self { padded, before, n }
    }

    /// `x[:, (i + k) mod n]` for every `i`.
    pub(crate) fn at(&self, k: isize) -> Tensor<2> {
        let start = (self.before as isize + k) as usize;
        self.padded.clone().narrow(1, start, self.n)
    }
}

/// Checks an optional noise level.
pub(crate) fn check_noise(noise_std: Option<f64>) -> Result<(), BuildError> {
    match noise_std {
        Some(s) if !(s >= 0.0 && s.is_finite()) => Err(BuildError::invalid(
            "noise_std",
            format!("must be a non-negative number, got {s}"),
        )),
        _ => Ok(()),
    }
}
