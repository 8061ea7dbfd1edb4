//! The `Model` seam and its optional capabilities: a hand-written host
//! fast path with its adjoint, and seeded randomness for stochastic models.

use burn::tensor::{Device, Tensor, TensorData};

use super::geometry::Geometry;
use crate::rng::{Rng, standard_normal};

/// One field of a model's external forcing at one time
/// ([`Model::forcing`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ForcingField {
    /// Short name, e.g. `wind_u`; files call it `forcing_<name>`.
    pub name: String,
    /// What it is.
    pub long_name: String,
    /// CF units.
    pub units: String,
    /// The geometry field whose shape and coordinates it has.
    pub like: usize,
    /// The values, laid out as that field.
    pub values: Vec<f64>,
}

/// A forecast model: advances every member of a batch at once.
///
/// Physics models and learned models (emulators, generative surrogates)
/// fill this one seam; DA code never knows which it drives. The state batch
/// is a `[members, n]` tensor laid out as [`Model::geometry`] says.
pub trait Model: Send + Sync {
    /// Advances every member by one step of [`dt`](Model::dt). A stochastic
    /// model advances its deterministic part here (no noise); the noisy step
    /// is [`StochasticModel::step_with_noise`].
    ///
    /// # Shapes
    /// `[members, n] -> [members, n]`.
    fn step(&self, state: Tensor<2>, time: f64) -> Tensor<2>;

    /// The model time step.
    fn dt(&self) -> f64;

    /// Where the state variables sit: fields, shapes, coordinates, mask.
    fn geometry(&self) -> &Geometry;

    /// A short name for output, e.g. `"lorenz96"`.
    fn name(&self) -> &str;

    /// Number of state variables.
    fn size(&self) -> usize {
        self.geometry().size()
    }

    /// Advances `steps` steps from `time` (deterministic part only).
    fn forecast(&self, mut state: Tensor<2>, time: f64, steps: usize) -> Tensor<2> {
        for k in 0..steps {
            state = self.step(state, time + k as f64 * self.dt());
        }
        state
    }

    /// The hand-written host fast path, where the model has one.
    fn host(&self) -> Option<&dyn HostStepper> {
        None
    }

    /// The noisy step, where the model is stochastic.
    fn stochastic(&self) -> Option<&dyn StochasticModel> {
        None
    }

    /// The model's own initial state (one member, `n` values), where its
    /// config carries one (a column's initial profiles); `[initial] mean =
    /// "model"` starts from it.
    fn initial_state(&self) -> Option<Vec<f64>> {
        None
    }

    /// Named diagnostics of a state batch at `time`, each with one value
    /// per member (and per column, member-major, for a column model), e.g.
    /// a boundary layer's height and friction velocity. `rime simulate`
    /// compares them with a simulation file's `[expected]` ranges.
    fn diagnostics(&self, _state: Tensor<2>, _time: f64) -> Vec<(&'static str, Vec<f64>)> {
        Vec::new()
    }

    /// The largest stable time step, where the model knows one (explicit
    /// schemes on the toy models); experiments check `dt` against it.
    fn max_stable_dt(&self) -> Option<f64> {
        None
    }

    /// The model as an ordinary differential equation, where it is one:
    /// its tendency and integrator (stepped at [`dt`](Model::dt)). A hybrid
    /// model adds a learned term to this tendency
    /// ([`crate::learned::hybrid`]).
    fn ode(&self) -> Option<crate::models::integrator::Ode<'_>> {
        None
    }

    /// The model's external forcing at `time` (a sea ice's wind), each
    /// field laid out like one field of the geometry: `rime simulate`
    /// writes it beside the states (`forcing_<name>`) so that an emulator
    /// can be trained to take it as input. Empty for a model without one.
    fn forcing(&self, _time: f64) -> Vec<ForcingField> {
        Vec::new()
    }

    /// Whether a step depends on the time only through the state (true for
    /// the Lorenz family); false where a forcing or a moving source
    /// changes with time, so that forecasts from states at different times
    /// must be stepped apart.
    fn autonomous(&self) -> bool {
        true
    }

    /// The 2-D maps of one state (`[1, n]`) a researcher looks at
    /// (`rime map`): by default every field of the geometry on a
    /// rectilinear 2-D grid; a model adds fields derived from its state
    /// (the sea ice its shear and divergence).
    fn maps(&self, state: Tensor<2>) -> Vec<MapField> {
        let state = crate::device::to_vec(state);
        let g = self.geometry();
        let mut out = Vec::new();
        for (k, f) in g.fields.iter().enumerate() {
            if let (crate::core::Coordinates::Axes { x, y }, [_, _]) =
                (&f.coordinates, &f.shape[..])
            {
                let o = g.offset(k);
                out.push(MapField {
                    name: f.name.clone(),
                    long_name: f.long_name.clone(),
                    units: f.units.clone(),
                    x: x.clone(),
                    y: y.clone(),
                    values: state[o..o + f.len()].to_vec(),
                    mask: f.mask.clone(),
                    scale: MapScale::Linear,
                });
            }
        }
        out
    }
}

/// How a map's values map to colours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapScale {
    /// Linear between the minimum and maximum (sequential colours).
    Linear,
    /// Symmetric about zero (diverging colours), e.g. divergence.
    Diverging,
    /// Logarithmic over the positive values, e.g. shear.
    Log,
}

/// A 2-D field to draw as a map: a field of the state or one derived from
/// it, on a rectilinear grid.
#[derive(Clone, Debug, PartialEq)]
pub struct MapField {
    /// Short name (the file name of its map).
    pub name: String,
    /// Long name (the map's title).
    pub long_name: String,
    /// Units.
    pub units: String,
    /// x of the columns.
    pub x: Vec<f64>,
    /// y of the rows.
    pub y: Vec<f64>,
    /// Values, `[y.len(), x.len()]` row-major.
    pub values: Vec<f64>,
    /// Points to draw (`None`: all).
    pub mask: Option<Vec<bool>>,
    /// Colour scale.
    pub scale: MapScale,
}

/// A model step and its adjoint on the host, one state at a time: the fast
/// path for small models, where burn's per-operation overhead dominates.
/// Every implementation is checked against burn autodiff in the tests.
pub trait HostStepper: Send + Sync {
    /// Advances `x` in place by one step from time `t`.
    fn step(&self, x: &mut [f64], t: f64);

    /// Advances `x` in place by `steps` steps from `t`.
    fn forecast(&self, x: &mut [f64], t: f64, steps: usize, dt: f64) {
        for k in 0..steps {
            self.step(x, t + k as f64 * dt);
        }
    }

    /// Advances `members` states stored members-innermost
    /// (`x[i * members + m]` is variable `i` of member `m`) by `steps` steps, with the same
    /// numbers as [`forecast`](Self::forecast) member by member, and returns
    /// `true`; or returns `false`, with `x` untouched, where the stepper has
    /// no batched path that is faster than one member at a time.
    fn forecast_members(
        &self,
        _x: &mut [f64],
        _members: usize,
        _t: f64,
        _steps: usize,
        _dt: f64,
    ) -> bool {
        false
    }

    /// Given `x` (the state at the start of the step) and `lambda` (the
    /// gradient with respect to the state at the end), overwrites `lambda`
    /// with the gradient with respect to `x`: `lambda <- M'(x)^T lambda`.
    fn step_vjp(&self, x: &[f64], t: f64, lambda: &mut [f64]);
}

/// The random keys of one stochastic step: a stream key (the run's seed and
/// the consumer, e.g. one method), the global index of the first member of
/// the batch, and the step index. Member `m` of the batch draws from a
/// generator keyed by `(stream, member_offset + m, step)`, so its noise is
/// the same whichever thread runs it and however members are batched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoiseKeys {
    /// Seed of the consumer's stream.
    pub stream: u64,
    /// Global index of the batch's first member.
    pub member_offset: u64,
    /// Index of the model step (time / dt, rounded).
    pub step: u64,
}

impl NoiseKeys {
    /// The generator of member `m` of the batch.
    pub fn rng(&self, m: usize) -> Rng {
        let name = format!("noise/{}/{}", self.member_offset + m as u64, self.step);
        crate::rng::stream(self.stream, &name)
    }

    /// Standard normal draws of shape `[members, n]`, one generator per
    /// member, as a tensor on `device`.
    pub fn standard_normal(&self, members: usize, n: usize, device: &Device) -> Tensor<2> {
        let mut values = Vec::with_capacity(members * n);
        for m in 0..members {
            values.extend(standard_normal(&mut self.rng(m), n));
        }
        Tensor::from_data(TensorData::new(values, [members, n]), device)
    }
}

/// A model with randomness in its step: stochastic parametrisations,
/// model-error noise, generative surrogates. The caller supplies the keys
/// ([`NoiseKeys`]); the model draws its noise from them and from nothing
/// else, so results are identical for a seed whatever the thread count.
pub trait StochasticModel: Send + Sync {
    /// One noisy step of every member.
    ///
    /// # Shapes
    /// `[members, n] -> [members, n]`.
    fn step_with_noise(&self, state: Tensor<2>, time: f64, keys: &NoiseKeys) -> Tensor<2>;
}
