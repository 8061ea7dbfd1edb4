//! The `Model` seam, integrators and the toy models.
//!
//! A model advances a batch of states, shape `[members, n]`, in one call, in
//! burn tensor ops: the same code runs on the CPU, on a GPU and under
//! autodiff. Ordinary differential equations are written once as a
//! [`Tendency`] and stepped by any [`Integrator`]; the integrator is a
//! separate choice from the physics, as in diffrax.

pub mod adjoint;
pub mod config;
pub mod integrator;
pub mod lorenz63;
pub mod lorenz96;
pub mod lorenz96_two_scale;

use burn::tensor::Tensor;

pub use config::ModelConfig;
pub use integrator::{Integrator, OdeModel, Tendency};
pub use lorenz63::Lorenz63;
pub use lorenz96::Lorenz96;
pub use lorenz96_two_scale::{Lorenz96Truncated, Lorenz96TwoScale, Parametrisation};

/// A point in model space, used for localisation distances. One-dimensional
/// models use the first coordinate only.
pub type Location = [f64; 2];

/// Where the state variables sit and how far apart they are.
///
/// DA code asks the geometry for distances (localisation) and names (output);
/// it never needs to know the model's internal layout.
#[derive(Clone, Debug, PartialEq)]
pub struct Geometry {
    /// Coordinates of each state variable.
    pub coordinates: Vec<Location>,
    /// Period of each axis, `None` where the axis is not periodic.
    pub period: [Option<f64>; 2],
    /// Name of the state variable(s), e.g. `"x"`.
    pub variable: String,
    /// Units of the state, CF style (`"1"` for dimensionless).
    pub units: String,
}

impl Geometry {
    /// A one-dimensional chain of `n` variables at positions `0..n`,
    /// periodic if `periodic`.
    pub fn chain(n: usize, periodic: bool, variable: &str) -> Self {
        Self {
            coordinates: (0..n).map(|i| [i as f64, 0.0]).collect(),
            period: [periodic.then_some(n as f64), None],
            variable: variable.to_string(),
            units: "1".to_string(),
        }
    }

    /// Number of state variables.
    pub fn size(&self) -> usize {
        self.coordinates.len()
    }

    /// Euclidean distance, wrapped on periodic axes.
    pub fn distance(&self, a: &Location, b: &Location) -> f64 {
        let mut sum = 0.0;
        for axis in 0..2 {
            let mut d = (a[axis] - b[axis]).abs();
            if let Some(period) = self.period[axis] {
                d %= period;
                d = d.min(period - d);
            }
            sum += d * d;
        }
        sum.sqrt()
    }
}

/// A forecast model: advances every member of a batch at once.
pub trait Model: Send + Sync {
    /// Advances every member by one step of [`dt`](Model::dt).
    ///
    /// # Shapes
    /// `[members, n] -> [members, n]`.
    fn step(&self, state: Tensor<2>, time: f64) -> Tensor<2>;

    /// The model time step.
    fn dt(&self) -> f64;

    /// Where the state variables sit.
    fn geometry(&self) -> &Geometry;

    /// A short name for output, e.g. `"lorenz96"`.
    fn name(&self) -> &str;

    /// Number of state variables.
    fn size(&self) -> usize {
        self.geometry().size()
    }

    /// Whether [`host_step`](Model::host_step) and
    /// [`host_step_vjp`](Model::host_step_vjp) are available.
    fn has_host_path(&self) -> bool {
        self.host_step(&mut vec![0.0; self.size()], 0.0)
    }

    /// Host fast path: advances one state in place by one step; returns
    /// `false` (leaving `x` untouched) if the model has no host path.
    fn host_step(&self, _x: &mut [f64], _time: f64) -> bool {
        false
    }

    /// Host fast path over `steps` steps; returns `false` (leaving `x`
    /// untouched) if the model has no host path.
    fn host_forecast(&self, x: &mut [f64], time: f64, steps: usize) -> bool {
        for k in 0..steps {
            if !self.host_step(x, time + k as f64 * self.dt()) {
                return false;
            }
        }
        true
    }

    /// Host fast path of the adjoint: `lambda <- (d step / dx at x)^T lambda`;
    /// returns `false` if the model has no hand-written adjoint.
    fn host_step_vjp(&self, _x: &[f64], _time: f64, _lambda: &mut [f64]) -> bool {
        false
    }

    /// Advances `steps` steps from `time`.
    fn forecast(&self, mut state: Tensor<2>, time: f64, steps: usize) -> Tensor<2> {
        for k in 0..steps {
            state = self.step(state, time + k as f64 * self.dt());
        }
        state
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periodic_distance_wraps() {
        let g = Geometry::chain(40, true, "x");
        assert_eq!(g.distance(&[0.0, 0.0], &[39.0, 0.0]), 1.0);
        assert_eq!(g.distance(&[5.0, 0.0], &[25.0, 0.0]), 20.0);
        let open = Geometry::chain(40, false, "x");
        assert_eq!(open.distance(&[0.0, 0.0], &[39.0, 0.0]), 39.0);
    }
}
