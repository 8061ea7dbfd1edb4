//! Hybrid models: a physical model with a learned part, trained end to end
//! through the physics and used as a [`Model`] like any other.
//!
//! Two couplings ([`Coupling`]), over one record interval `T` of the
//! training data (a whole number `s` of the physical model's steps):
//!
//! - `tendency`: the network adds a term to the physical tendency inside the
//!   physical model's own integrator,
//!
//!   `dx/dt = f(x, t) + c(x)`, `c(x) = (mu_r + sigma_r net((x - mu) / sigma)) / T`.
//!
//!   With the physical model configured *without* one of its terms (for
//!   example `lorenz96_truncated` with `parametrisation = "none"`), the
//!   network *replaces* that term: a learned parametrisation of the
//!   unresolved scales, in the place of Wilks' (2005) polynomial. With the
//!   full physics it *corrects* the tendency, the slot that online
//!   model-error correction fills (the "tendency correction" of Farchi et
//!   al. 2021, QJRMS 147, 3067). Needs a model defined by a tendency
//!   ([`Model::ode`]).
//! - `resolvent`: the network corrects the state after the physical model's
//!   `s` steps, `x_{t+T} = M^s(x_t) + mu_r + sigma_r net((x_t - mu) / sigma)`
//!   (Brajard et al. 2021, Phil. Trans. R. Soc. A 379, 20200086; the
//!   "resolvent correction" of Farchi et al. 2021). Any model.
//!
//! `mu, sigma` are the pooled moments of the training states and
//! `mu_r, sigma_r` those of the physical model's one-interval error
//! `x_{t+T} - M^s(x_t)` on the training split: the network starts at the
//! scale of what the physics misses, and the training loss is measured in
//! units of `sigma_r`.
//!
//! Training (`rime train` with a `[hybrid]` table) differentiates the
//! rollout loss through the physical steps by burn autodiff; the physics and
//! the network both run in f32 there. As a forecast model the physics runs
//! in the caller's float type (f64 in DA) and only the network in f32, cast
//! at the seam; under autodiff (4D-Var) the gradient flows to the state
//! through both. Training steps every sample from time 0: the physical
//! model must be autonomous (all of rime's ODE models are).

use burn::tensor::{Device, FloatDType, Tensor};
use serde::{Deserialize, Serialize};

use super::data::{Statistics, Trajectories};
use super::emulator::{Checkpoint, Normalisation, Scaling, float_dtype};
use super::net::{Network, f32_tensor};
use crate::core::{Geometry, Model};
use crate::experiment::registry::ModelConfig;
use crate::models::Tendency;

/// Where the network enters a hybrid model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Coupling {
    /// A learned term in the tendency, inside the integrator.
    #[default]
    Tendency,
    /// A learned correction of the state after the physical steps.
    Resolvent,
}

/// The `[hybrid]` table of a training file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HybridConfig {
    /// The physical model, as a `[model]` table; the data's record interval
    /// must be a whole number of its steps, and its state the data's.
    pub physics: ModelConfig,
    /// Where the network enters.
    #[serde(default)]
    pub coupling: Coupling,
}

/// The physical model of a hybrid with the number of its steps per record
/// interval, checked against the data.
fn physics(
    config: &HybridConfig,
    n: usize,
    interval: f64,
    device: &Device,
) -> Result<(Box<dyn Model>, usize), String> {
    let model = config
        .physics
        .init(device)
        .map_err(|e| format!("key `hybrid.physics`: {e}"))?;
    let substeps = substeps(model.as_ref(), config.coupling, n, interval)?;
    Ok((model, substeps))
}

/// The physical steps per record interval, if `model` can be the physics of
/// a hybrid with `coupling` on data of `n` variables every `interval`.
fn substeps(
    model: &dyn Model,
    coupling: Coupling,
    n: usize,
    interval: f64,
) -> Result<usize, String> {
    if model.size() != n {
        return Err(format!(
            "key `hybrid.physics`: {} has {} variables, the data {n}",
            model.name(),
            model.size()
        ));
    }
    let ratio = interval / model.dt();
    let substeps = ratio.round();
    if substeps < 1.0 || (ratio - substeps).abs() > 1e-6 * ratio {
        return Err(format!(
            "key `hybrid.physics`: the data's record interval {interval} is not a whole number of the model's steps (dt = {})",
            model.dt()
        ));
    }
    if coupling == Coupling::Tendency && model.ode().is_none() {
        return Err(format!(
            "key `hybrid.coupling`: \"tendency\" needs a model defined by a tendency (an ODE model such as lorenz96); {} is not one: use \"resolvent\"",
            model.name()
        ));
    }
    Ok(substeps as usize)
}

/// The physical tendency plus the network's term.
struct Corrected<'a> {
    physics: &'a dyn Tendency,
    network: &'a Network,
    scaling: &'a Scaling,
    inv_interval: f64,
}

impl Tendency for Corrected<'_> {
    fn tendency(&self, x: Tensor<2>, time: f64) -> Tensor<2> {
        let learned = learned(self.network, self.scaling, x.clone()) * self.inv_interval;
        self.physics.tendency(x, time) + learned
    }
}

/// `mu_r + sigma_r net((x - mu) / sigma)` in `x`'s float type; the network
/// runs in f32.
fn learned(network: &Network, scaling: &Scaling, x: Tensor<2>) -> Tensor<2> {
    let dtype = float_dtype(&x);
    let z = scaling.normalise(x.cast(FloatDType::F32));
    scaling.correction(network.forward(z)).cast(dtype)
}

/// One record interval of a hybrid model (the piece training and the
/// [`Hybrid`] model share).
pub struct HybridStep {
    physics: Box<dyn Model>,
    coupling: Coupling,
    scaling: Scaling,
    substeps: usize,
    interval: f64,
}

impl HybridStep {
    /// The step of `config` on `device`, for data of `n` variables recorded
    /// every `interval`.
    ///
    /// # Errors
    /// A physical model that cannot be built or does not fit the data,
    /// named under `hybrid.physics` or `hybrid.coupling`.
    pub fn new(
        config: &HybridConfig,
        normalisation: &Normalisation,
        n: usize,
        interval: f64,
        device: &Device,
    ) -> Result<Self, String> {
        let (physics, substeps) = physics(config, n, interval, device)?;
        Ok(Self {
            physics,
            coupling: config.coupling,
            scaling: Scaling::new(normalisation),
            substeps,
            interval,
        })
    }

    /// The physical model.
    pub fn physics(&self) -> &dyn Model {
        self.physics.as_ref()
    }

    /// Advances `[batch, n]` states by one record interval from `time`.
    pub fn step(&self, network: &Network, x: Tensor<2>, time: f64) -> Tensor<2> {
        match self.coupling {
            Coupling::Resolvent => {
                let next = self.physics.forecast(x.clone(), time, self.substeps);
                next + learned(network, &self.scaling, x)
            }
            Coupling::Tendency => {
                let ode = self.physics.ode().expect("checked when built");
                let f = Corrected {
                    physics: ode.tendency,
                    network,
                    scaling: &self.scaling,
                    inv_interval: 1.0 / self.interval,
                };
                let dt = self.physics.dt();
                let mut x = x;
                for k in 0..self.substeps {
                    x = ode.integrator.step(&f, x, time + k as f64 * dt, dt);
                }
                x
            }
        }
    }

    /// `1 / sigma_r` as a row, to measure errors in units of the physical
    /// model's one-interval error.
    pub fn inverse_increment_std(&self, device: &Device) -> Tensor<2> {
        self.scaling.inverse_increment_std(device)
    }
}

/// The normalisation of a hybrid trained on `data`: pooled moments of the
/// training states, and of the physical model's error over one record
/// interval, `x_{t+T} - M^s(x_t)`, on the training split (computed in f32 on
/// `device`, in batches).
///
/// # Errors
/// A physical model that does not fit the data, or no training pair.
pub fn hybrid_normalisation(
    config: &HybridConfig,
    data: &Trajectories,
    device: &Device,
) -> Result<Normalisation, String> {
    let (model, substeps) = physics(config, data.n, data.interval, device)?;
    let samples = data.samples(0, 1);
    if samples.is_empty() {
        return Err("the training split has no pair of consecutive records".into());
    }
    let n = data.n;
    let (mut sum, mut sq) = (vec![0.0; n], vec![0.0; n]);
    for chunk in samples.chunks(4096) {
        let rows = |k: usize| {
            let v: Vec<f32> = chunk
                .iter()
                .flat_map(|&(t, r)| data.state(t + k, r).iter().map(|&x| x as f32))
                .collect();
            f32_tensor(v, [chunk.len(), n], device)
        };
        let error = rows(1) - model.forecast(rows(0), 0.0, substeps);
        let error = crate::device::to_vec(error);
        for row in error.chunks(n) {
            for (i, &e) in row.iter().enumerate() {
                sum[i] += e;
                sq[i] += e * e;
            }
        }
    }
    let (increment_mean, increment_std) = super::data::moments(&sum, &sq, samples.len());
    let states = data.statistics();
    Ok(Normalisation::pooled(&Statistics {
        increment_mean,
        increment_std,
        ..states
    }))
}

/// A trained hybrid as a forecast model: one step is one record interval
/// of its training data.
pub struct Hybrid {
    step: HybridStep,
    network: Network,
    geometry: Geometry,
    name: String,
}

impl Hybrid {
    /// The hybrid of a checkpoint on `device`.
    ///
    /// # Errors
    /// A checkpoint without a `[hybrid]` table, weights that do not fit, or
    /// a physical model that cannot be built.
    pub fn new(checkpoint: &Checkpoint, device: &Device) -> Result<Self, String> {
        let h = &checkpoint.header;
        let config = h
            .hybrid
            .as_ref()
            .ok_or("not a hybrid model (the checkpoint has no [hybrid] table)")?;
        let network = checkpoint.network(device)?;
        let step = HybridStep::new(config, &h.normalisation, h.n, h.interval, device)?;
        let geometry = step.physics().geometry().clone();
        let name = format!("hybrid({})", step.physics().name());
        Ok(Self {
            step,
            network,
            geometry,
            name,
        })
    }

    /// A hybrid from its parts (tests, a network trained outside
    /// `rime train`).
    pub fn from_parts(step: HybridStep, network: Network) -> Self {
        let geometry = step.physics().geometry().clone();
        let name = format!("hybrid({})", step.physics().name());
        Self {
            step,
            network,
            geometry,
            name,
        }
    }
}

impl Model for Hybrid {
    fn step(&self, state: Tensor<2>, time: f64) -> Tensor<2> {
        self.step.step(&self.network, state, time)
    }

    fn dt(&self) -> f64 {
        self.step.interval
    }

    fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{cpu_f64, tensor_from_rows, to_vec};
    use crate::learned::net::Architecture;

    fn config(coupling: Coupling, parametrisation: &str) -> HybridConfig {
        HybridConfig {
            physics: ModelConfig::from_toml(&format!(
                "name = \"lorenz96_truncated\"\nsize = 8\nparametrisation = \"{parametrisation}\"\ndt = 0.025"
            ))
            .unwrap(),
            coupling,
        }
    }

    fn normalisation() -> Normalisation {
        Normalisation {
            mean: vec![2.0; 8],
            std: vec![5.0; 8],
            increment_mean: vec![0.1; 8],
            increment_std: vec![0.3; 8],
            fixed: Vec::new(),
            forcing_mean: Vec::new(),
            forcing_std: Vec::new(),
        }
    }

    fn network(device: &Device) -> Network {
        Architecture::Cnn1d {
            channels: 6,
            layers: 3,
            kernel: 3,
            bilinear: true,
        }
        .init(8, 5, device)
    }

    /// The tendency coupling is the physical integrator applied to
    /// `f + c`: with the same network, one RK4 step of the hybrid equals an
    /// RK4 step written out by hand; the resolvent coupling is `M^s(x) + c`.
    #[test]
    fn couplings_are_the_equations_they_document() {
        let device = cpu_f64();
        let net = network(&device);
        let x0: Vec<f64> = (0..8).map(|i| 3.0 + (i as f64).sin() * 4.0).collect();
        let x = || tensor_from_rows(&x0, 1, 8, &device);
        let norm = normalisation();
        let scaling = Scaling::new(&norm);
        let c = |x: Tensor<2>| learned(&net, &scaling, x);

        // Tendency coupling, interval 0.05 = two RK4 steps of 0.025.
        let cfg = config(Coupling::Tendency, "none");
        let step = HybridStep::new(&cfg, &norm, 8, 0.05, &device).unwrap();
        let got = to_vec(step.step(&net, x(), 0.0));
        let phys = step.physics().ode().unwrap().tendency;
        let f = |x: Tensor<2>| phys.tendency(x.clone(), 0.0) + c(x) * (1.0 / 0.05);
        let mut y = x();
        for _ in 0..2 {
            let h = 0.025;
            let k1 = f(y.clone());
            let k2 = f(y.clone() + k1.clone() * (h / 2.0));
            let k3 = f(y.clone() + k2.clone() * (h / 2.0));
            let k4 = f(y.clone() + k3.clone() * h);
            y = y + (k1 + (k2 + k3) * 2.0 + k4) * (h / 6.0);
        }
        let want = to_vec(y);
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
        // The learned term matters (the test would pass trivially if c = 0).
        let plain = to_vec(step.physics().forecast(x(), 0.0, 2));
        assert!(got.iter().zip(&plain).any(|(a, b)| (a - b).abs() > 1e-3));

        // Resolvent coupling.
        let cfg = config(Coupling::Resolvent, "none");
        let step = HybridStep::new(&cfg, &norm, 8, 0.05, &device).unwrap();
        let got = to_vec(step.step(&net, x(), 0.0));
        let want = to_vec(step.physics().forecast(x(), 0.0, 2) + c(x()));
        assert_eq!(got, want);
    }

    /// The hybrid is differentiable end to end: the autodiff gradient of
    /// `<w, M^3(x0)>` with respect to the state, through the physics and the
    /// network, matches central differences, for both couplings.
    #[test]
    fn hybrid_gradients_match_finite_differences() {
        let device = cpu_f64();
        let x0: Vec<f64> = (0..8).map(|i| 3.0 + (i as f64 * 0.9).sin() * 4.0).collect();
        let w: Vec<f64> = (0..8).map(|i| ((i * 5 % 7) as f64 - 3.0) / 3.0).collect();
        for coupling in [Coupling::Tendency, Coupling::Resolvent] {
            let step = HybridStep::new(
                &config(coupling, "none"),
                &normalisation(),
                8,
                0.05,
                &device,
            )
            .unwrap();
            let model = Hybrid::from_parts(step, network(&device));
            assert_eq!(model.dt(), 0.05);
            let all: Vec<usize> = (0..8).collect();
            crate::learned::assert_gradient_matches_differences(
                &model,
                &x0,
                &w,
                3,
                &all,
                &format!("{coupling:?}"),
            );
        }
    }

    /// Bad combinations are named by their key.
    #[test]
    fn a_hybrid_that_does_not_fit_its_data_is_refused() {
        let device = cpu_f64();
        let norm = normalisation();
        let e = HybridStep::new(&config(Coupling::Tendency, "none"), &norm, 8, 0.06, &device)
            .err()
            .unwrap();
        assert!(
            e.contains("hybrid.physics") && e.contains("whole number"),
            "{e}"
        );
        let e = HybridStep::new(&config(Coupling::Tendency, "none"), &norm, 9, 0.05, &device)
            .err()
            .unwrap();
        assert!(e.contains("8 variables, the data 9"), "{e}");
        // A model without a tendency (an emulator) cannot take a learned
        // tendency term.
        let emulator = crate::learned::Emulator::from_parts(
            network(&device),
            &norm,
            Geometry::chain(8, true, "x"),
            0.05,
        );
        let e = substeps(&emulator, Coupling::Tendency, 8, 0.05)
            .err()
            .unwrap();
        assert_eq!(substeps(&emulator, Coupling::Resolvent, 8, 0.1), Ok(2));
        assert!(
            e.contains("hybrid.coupling") && e.contains("resolvent"),
            "{e}"
        );
    }
}
