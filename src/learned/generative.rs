//! Generative surrogates: a conditional diffusion model with EDM
//! preconditioning and a Heun sampler (Karras et al. 2022), and a
//! conditional flow-matching model (straight optimal-transport paths), each
//! sampling the next state given the current one, every member of an
//! ensemble in one batched call.
//!
//! Both model the normalised increment `y = (x_{t+1} - x_t - mu_d) /
//! sigma_d` given the normalised state `c = (x_t - mu) / sigma`
//! (normalisation as the deterministic emulator's). The network sees three
//! channels: the noisy increment, the condition and the noise level
//! broadcast along the state.
//!
//! - Diffusion: `D(y; s) = c_skip(s) y + c_out(s) F(c_in(s) y, c, c_noise(s))`
//!   with `c_in = 1/sqrt(s^2 + s_d^2)`, `c_out = s s_d / sqrt(s^2 + s_d^2)`,
//!   `c_skip = s_d^2 / (s^2 + s_d^2)`, `c_noise = ln(s) / 4`; trained on
//!   `ln s ~ N(p_mean, p_std^2)` with the weight `(s^2 + s_d^2) / (s s_d)^2`;
//!   sampled by Heun's method on the probability-flow ODE from `sigma_max`
//!   to `sigma_min` along the `rho` schedule, then to 0 (EDM Algorithm 1,
//!   deterministic: the randomness is the initial noise).
//! - Flow matching: `y_t = (1 - (1 - s_min) t) z + t y`, velocity target
//!   `y - (1 - s_min) z`, `t ~ U(0, 1)`; sampled by Heun's method from `t = 0`
//!   (noise) to 1.
//!
//! Randomness comes from the caller's [`NoiseKeys`] (one generator per
//! member and step), so samples are the same for a seed whatever the
//! thread count and the batching. `Model::step` (the deterministic part)
//! samples from zero noise.
//!
//! Bounded variables are censored (as GenSIM): with `lower` or `upper`, the
//! sampled state is clipped to them; each is one number for every variable
//! or a list with one per field of a multi-field state (`inf` or `-inf`
//! where a field has no bound), e.g. a sea ice's thickness `h >= 0` and
//! concentration `0 <= a <= 1`: `lower = [0.0, 0.0]`, `upper = [inf, 1.0]`.

use burn::tensor::{Device, FloatDType, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::emulator::{Normalisation, Scaling, float_dtype};
use super::net::{Network, f32_tensor};
use crate::core::{Geometry, Model, NoiseKeys, StochasticModel};

/// The `[generative]` table of a training file: which generative model and
/// how it samples.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum GenerativeConfig {
    /// EDM diffusion.
    Diffusion {
        /// Smallest noise level of the sampler.
        #[serde(default = "sigma_min")]
        sigma_min: f64,
        /// Largest noise level of the sampler.
        #[serde(default = "sigma_max")]
        sigma_max: f64,
        /// Schedule exponent.
        #[serde(default = "rho")]
        rho: f64,
        /// Heun steps of the sampler.
        #[serde(default = "steps")]
        steps: usize,
        /// Standard deviation of the (normalised) data.
        #[serde(default = "one")]
        sigma_data: f64,
        /// Mean of the training `ln sigma`.
        #[serde(default = "p_mean")]
        p_mean: f64,
        /// Standard deviation of the training `ln sigma`.
        #[serde(default = "p_std")]
        p_std: f64,
        /// Censor sampled states below this (one value, or one per field).
        #[serde(default)]
        lower: Option<Bound>,
        /// Censor sampled states above this (one value, or one per field).
        #[serde(default)]
        upper: Option<Bound>,
    },
    /// Flow matching.
    FlowMatching {
        /// Width of the path at the data end.
        #[serde(default = "s_min")]
        s_min: f64,
        /// Heun steps of the sampler.
        #[serde(default = "steps")]
        steps: usize,
        /// Censor sampled states below this (one value, or one per field).
        #[serde(default)]
        lower: Option<Bound>,
        /// Censor sampled states above this (one value, or one per field).
        #[serde(default)]
        upper: Option<Bound>,
    },
}

/// A censoring bound: one value for every variable, or one per field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Bound {
    /// The same for every variable.
    All(f64),
    /// One per field, in the state's field order; `inf` (a TOML float) or
    /// absent (`null`, as JSON writes an infinite number in a checkpoint's
    /// header) where a field has no bound on this side.
    Fields(Vec<Option<f64>>),
}

impl Bound {
    /// The bound of each of `n` variables in `fields` equal fields, `none`
    /// (an infinity) where a field has none.
    fn per_variable(&self, n: usize, fields: usize, none: f64) -> Vec<f32> {
        match self {
            Bound::All(v) => vec![*v as f32; n],
            Bound::Fields(vs) => {
                assert_eq!(vs.len(), fields, "one bound per field");
                let len = n / fields.max(1);
                vs.iter()
                    .flat_map(|v| std::iter::repeat_n(v.unwrap_or(none) as f32, len))
                    .collect()
            }
        }
    }

    /// The values, `none` where a field has none.
    fn values(&self, none: f64) -> Vec<f64> {
        match self {
            Bound::All(v) => vec![*v],
            Bound::Fields(vs) => vs.iter().map(|v| v.unwrap_or(none)).collect(),
        }
    }
}

fn sigma_min() -> f64 {
    0.002
}
fn sigma_max() -> f64 {
    80.0
}
fn rho() -> f64 {
    7.0
}
fn steps() -> usize {
    20
}
fn one() -> f64 {
    1.0
}
fn p_mean() -> f64 {
    -1.2
}
fn p_std() -> f64 {
    1.2
}
fn s_min() -> f64 {
    1e-4
}

impl GenerativeConfig {
    /// Checks the values; the error is `(key, reason)`.
    pub fn check(&self) -> Result<(), (String, String)> {
        let positive = |k: &str, v: f64| {
            if v > 0.0 && v.is_finite() {
                Ok(())
            } else {
                Err((k.to_string(), format!("must be a positive number, got {v}")))
            }
        };
        let (steps, lower, upper) = match self {
            GenerativeConfig::Diffusion {
                sigma_min,
                sigma_max,
                rho,
                steps,
                sigma_data,
                p_std,
                lower,
                upper,
                ..
            } => {
                positive("sigma_min", *sigma_min)?;
                positive("sigma_max", *sigma_max)?;
                positive("rho", *rho)?;
                positive("sigma_data", *sigma_data)?;
                positive("p_std", *p_std)?;
                if sigma_min >= sigma_max {
                    return Err((
                        "sigma_min".into(),
                        format!("must be below sigma_max = {sigma_max}, got {sigma_min}"),
                    ));
                }
                (*steps, lower, upper)
            }
            GenerativeConfig::FlowMatching {
                s_min,
                steps,
                lower,
                upper,
            } => {
                if !(*s_min >= 0.0 && *s_min < 1.0) {
                    return Err(("s_min".into(), format!("must lie in [0, 1), got {s_min}")));
                }
                (*steps, lower, upper)
            }
        };
        if steps == 0 {
            return Err(("steps".into(), "must be at least 1".into()));
        }
        for (key, b, none) in [
            ("lower", lower, f64::NEG_INFINITY),
            ("upper", upper, f64::INFINITY),
        ] {
            if let Some(b) = b
                && (b.values(none).is_empty() || b.values(none).iter().any(|v| v.is_nan()))
            {
                return Err((key.into(), "needs numbers (inf or -inf for none)".into()));
            }
        }
        if let (Some(l), Some(u)) = (lower, upper) {
            let (l, u) = (l.values(f64::NEG_INFINITY), u.values(f64::INFINITY));
            let pairs: Vec<(f64, f64)> = if l.len() == u.len() {
                l.iter().copied().zip(u.iter().copied()).collect()
            } else if l.len() == 1 {
                u.iter().map(|&v| (l[0], v)).collect()
            } else if u.len() == 1 {
                l.iter().map(|&v| (v, u[0])).collect()
            } else {
                return Err((
                    "lower".into(),
                    format!("has {} values, upper {}", l.len(), u.len()),
                ));
            };
            if let Some((l, u)) = pairs.iter().find(|(l, u)| !(l < u)) {
                return Err((
                    "lower".into(),
                    format!("must be below upper = {u}, got {l}"),
                ));
            }
        }
        Ok(())
    }

    /// The bounds' lists that need a number of fields (the longer of the
    /// two lists; 1 for single values).
    pub fn bound_fields(&self) -> usize {
        let (l, u) = self.bounds();
        l.into_iter()
            .chain(u)
            .map(|b| match b {
                Bound::All(_) => 1,
                Bound::Fields(v) => v.len(),
            })
            .max()
            .unwrap_or(1)
    }

    fn bounds(&self) -> (Option<&Bound>, Option<&Bound>) {
        match self {
            GenerativeConfig::Diffusion { lower, upper, .. }
            | GenerativeConfig::FlowMatching { lower, upper, .. } => {
                (lower.as_ref(), upper.as_ref())
            }
        }
    }
}

/// A `[batch, 1]` f32 column.
fn column(values: Vec<f32>, device: &Device) -> Tensor<2> {
    let b = values.len();
    f32_tensor(values, [b, 1], device)
}

/// A generative model: its network, its kind and the normalisation of
/// states and increments.
#[derive(Clone, Debug)]
pub struct Generative {
    /// Which model and its sampler.
    pub config: GenerativeConfig,
    scaling: Scaling,
    /// The censoring bounds per variable (`[1, n]` rows), where given.
    lower: Option<Vec<f32>>,
    upper: Option<Vec<f32>>,
}

/// What a generative model's sample is conditioned on: the normalised
/// current state and, for a forced model, the normalised forcing channels
/// (see [`Network::forward_extra`]).
#[derive(Clone, Debug)]
pub struct Condition {
    state: Tensor<2>,
    forcing: Option<Tensor<3>>,
}

impl Generative {
    /// A generative model of `config` with `norm`, for a state of `fields`
    /// fields of one size (a per-field bound needs one value each).
    pub fn new(config: GenerativeConfig, norm: &Normalisation) -> Self {
        Self::with_fields(config, norm, 1)
    }

    /// [`new`](Self::new) for a state of `fields` equal fields.
    ///
    /// # Panics
    /// A per-field bound without one value per field (the training file's
    /// check refuses it first).
    pub fn with_fields(config: GenerativeConfig, norm: &Normalisation, fields: usize) -> Self {
        let n = norm.mean.len();
        let (lower, upper) = config.bounds();
        let (lower, upper) = (
            lower.map(|b| b.per_variable(n, fields, f64::NEG_INFINITY)),
            upper.map(|b| b.per_variable(n, fields, f64::INFINITY)),
        );
        Self {
            config,
            scaling: Scaling::new(norm),
            lower,
            upper,
        }
    }

    /// The normalised condition of f32 states `[B, n]`.
    pub fn condition(&self, x: Tensor<2>) -> Tensor<2> {
        self.scaling.normalise(x)
    }

    /// The normalised increment from `x` to `next` (f32 `[B, n]`).
    pub fn target(&self, x: Tensor<2>, next: Tensor<2>) -> Tensor<2> {
        self.scaling.increment(x, next)
    }

    /// The state after an increment `y` (normalised) from `x`, censored.
    pub fn state(&self, x: Tensor<2>, y: Tensor<2>) -> Tensor<2> {
        let mut out = self.scaling.advance(x, y);
        let device = out.device();
        let row = |v: &Vec<f32>| f32_tensor(v.clone(), [1, v.len()], &device);
        match (&self.lower, &self.upper) {
            (None, None) => {}
            // One bound each: a scalar clamp, as before per-field bounds.
            (lo, hi)
                if lo.as_ref().is_none_or(|v| v.iter().all(|&a| a == v[0]))
                    && hi.as_ref().is_none_or(|v| v.iter().all(|&a| a == v[0])) =>
            {
                out = out.clamp(
                    lo.as_ref().map_or(f32::NEG_INFINITY, |v| v[0]),
                    hi.as_ref().map_or(f32::INFINITY, |v| v[0]),
                );
            }
            (lo, hi) => {
                let b = out.dims()[0];
                if let Some(lo) = lo {
                    out = out.max_pair(row(lo).expand([b, lo.len()]));
                }
                if let Some(hi) = hi {
                    out = out.min_pair(row(hi).expand([b, hi.len()]));
                }
            }
        }
        out
    }

    /// The condition of f32 states `x` `[B, n]` under normalised forcing
    /// channels (none for an unforced model).
    pub fn condition_on(&self, x: Tensor<2>, forcing: Option<Tensor<3>>) -> Condition {
        Condition {
            state: self.condition(x),
            forcing,
        }
    }

    /// The network's input channels: noisy sample, condition, level (and
    /// the forcing channels).
    fn evaluate(network: &Network, z: Tensor<2>, cond: &Condition, level: Tensor<2>) -> Tensor<2> {
        let [b, n] = z.dims();
        let level = level.expand([b, n]);
        let input: Tensor<3> = Tensor::stack(vec![z, cond.state.clone(), level], 1);
        network
            .forward_extra(input, cond.forcing.clone())
            .reshape([b, n])
    }

    /// The EDM denoiser `D(y; sigma)` for per-sample levels `sigma` `[B]`.
    fn denoise(
        &self,
        network: &Network,
        y: Tensor<2>,
        cond: &Condition,
        sigma: &[f64],
    ) -> Tensor<2> {
        let GenerativeConfig::Diffusion { sigma_data: sd, .. } = self.config else {
            unreachable!("denoise is the diffusion model's")
        };
        let device = y.device();
        let col =
            |f: &dyn Fn(f64) -> f64| column(sigma.iter().map(|&s| f(s) as f32).collect(), &device);
        let c_in = col(&|s| 1.0 / (s * s + sd * sd).sqrt());
        let c_out = col(&|s| s * sd / (s * s + sd * sd).sqrt());
        let c_skip = col(&|s| sd * sd / (s * s + sd * sd));
        let c_noise = col(&|s| s.ln() / 4.0);
        let f = Self::evaluate(network, y.clone() * c_in, cond, c_noise);
        y * c_skip + f * c_out
    }

    /// The training loss of a batch: `x` and `next` are f32 `[B, n]`
    /// states; `eps` holds `B` draws for the noise level or time and `noise`
    /// `[B, n]` standard normal draws (both from the caller's seeded streams).
    pub fn loss(
        &self,
        network: &Network,
        x: Tensor<2>,
        next: Tensor<2>,
        levels: &[f64],
        noise: Tensor<2>,
    ) -> Tensor<1> {
        self.loss_forced(network, x, next, None, levels, noise)
    }

    /// [`loss`](Self::loss) under normalised forcing channels.
    pub fn loss_forced(
        &self,
        network: &Network,
        x: Tensor<2>,
        next: Tensor<2>,
        forcing: Option<Tensor<3>>,
        levels: &[f64],
        noise: Tensor<2>,
    ) -> Tensor<1> {
        let device = x.device();
        let y = self.target(x.clone(), next);
        let cond = self.condition_on(x, forcing);
        match self.config {
            GenerativeConfig::Diffusion {
                sigma_data: sd,
                p_mean,
                p_std,
                ..
            } => {
                let sigma: Vec<f64> = levels.iter().map(|e| (p_mean + p_std * e).exp()).collect();
                let weight = column(
                    sigma
                        .iter()
                        .map(|s| ((s * s + sd * sd) / (s * sd * s * sd)) as f32)
                        .collect(),
                    &device,
                );
                let s = column(sigma.iter().map(|&s| s as f32).collect(), &device);
                let noisy = y.clone() + noise * s;
                let d = self.denoise(network, noisy, &cond, &sigma);
                ((d - y).square() * weight).mean()
            }
            GenerativeConfig::FlowMatching { s_min, .. } => {
                // `levels` are uniform draws in (0, 1) here.
                let t = column(levels.iter().map(|&t| t as f32).collect(), &device);
                let keep = column(
                    levels
                        .iter()
                        .map(|&t| (1.0 - (1.0 - s_min) * t) as f32)
                        .collect(),
                    &device,
                );
                let yt = noise.clone() * keep + y.clone() * t.clone();
                let target = y - noise * ((1.0 - s_min) as f32);
                let v = Self::evaluate(network, yt, &cond, t);
                (v - target).square().mean()
            }
        }
    }

    /// Samples the next state of every f32 state in `x` `[B, n]` from the
    /// standard normal draws `z` `[B, n]` (zeros: the deterministic sample).
    pub fn sample(&self, network: &Network, x: Tensor<2>, z: Tensor<2>) -> Tensor<2> {
        self.sample_forced(network, x, None, z)
    }

    /// [`sample`](Self::sample) under normalised forcing channels.
    pub fn sample_forced(
        &self,
        network: &Network,
        x: Tensor<2>,
        forcing: Option<Tensor<3>>,
        z: Tensor<2>,
    ) -> Tensor<2> {
        let b = x.dims()[0];
        let device = x.device();
        let cond = self.condition_on(x.clone(), forcing);
        let y = match self.config {
            GenerativeConfig::Diffusion {
                sigma_min,
                sigma_max,
                rho,
                steps,
                ..
            } => {
                let (a, c) = (sigma_max.powf(1.0 / rho), sigma_min.powf(1.0 / rho));
                let mut levels: Vec<f64> = (0..steps)
                    .map(|i| {
                        let f = if steps > 1 {
                            i as f64 / (steps - 1) as f64
                        } else {
                            0.0
                        };
                        (a + f * (c - a)).powf(rho)
                    })
                    .collect();
                levels.push(0.0);
                let mut y = z * (levels[0] as f32);
                for i in 0..steps {
                    let (s, s_next) = (levels[i], levels[i + 1]);
                    let d = (y.clone() - self.denoise(network, y.clone(), &cond, &vec![s; b]))
                        * ((1.0 / s) as f32);
                    let euler = y.clone() + d.clone() * ((s_next - s) as f32);
                    y = if s_next > 0.0 {
                        let d2 = (euler.clone()
                            - self.denoise(network, euler, &cond, &vec![s_next; b]))
                            * ((1.0 / s_next) as f32);
                        y + (d + d2) * ((0.5 * (s_next - s)) as f32)
                    } else {
                        euler
                    };
                }
                y
            }
            GenerativeConfig::FlowMatching { steps, .. } => {
                let h = 1.0 / steps as f64;
                let velocity = |y: Tensor<2>, t: f64| {
                    Self::evaluate(network, y, &cond, column(vec![t as f32; b], &device))
                };
                let mut y = z;
                for i in 0..steps {
                    let t = i as f64 * h;
                    let v1 = velocity(y.clone(), t);
                    let euler = y.clone() + v1.clone() * (h as f32);
                    let v2 = velocity(euler, t + h);
                    y = y + (v1 + v2) * ((0.5 * h) as f32);
                }
                y
            }
        };
        self.state(x, y)
    }
}

/// A trained generative surrogate as a stochastic [`Model`].
pub struct Surrogate {
    network: Network,
    generative: Generative,
    geometry: Geometry,
    dt: f64,
    temperature: f64,
    forcing: Option<super::emulator::ForcingSource>,
}

impl Surrogate {
    /// A surrogate from its parts.
    pub fn new(network: Network, generative: Generative, geometry: Geometry, dt: f64) -> Self {
        Self {
            network,
            generative,
            geometry,
            dt,
            temperature: 1.0,
            forcing: None,
        }
    }

    /// The same surrogate under `forcing` (for a network trained with it).
    pub fn with_forcing(mut self, forcing: Option<super::emulator::ForcingSource>) -> Self {
        self.forcing = forcing;
        self
    }

    /// The same surrogate sampling from noise scaled by `temperature`
    /// (1: the trained model; below 1 the samples draw in towards the
    /// zero-noise one). A post-hoc calibration of the ensemble's spread,
    /// to be chosen on validation data (`rime evaluate` with
    /// `[evaluate] split = "validation"`), never on the test split.
    pub fn with_temperature(mut self, temperature: f64) -> Self {
        self.temperature = temperature;
        self
    }

    fn sample_as(&self, state: Tensor<2>, time: f64, z: Tensor<2>) -> Tensor<2> {
        let z = if self.temperature == 1.0 {
            z
        } else {
            z * self.temperature
        };
        let dtype = float_dtype(&state);
        let x = state.cast(FloatDType::F32);
        let forcing = self
            .forcing
            .as_ref()
            .map(|f| f.channels(time, self.dt, x.dims()[0], &x.device()));
        self.generative
            .sample_forced(&self.network, x, forcing, z.cast(FloatDType::F32))
            .cast(dtype)
    }
}

impl Model for Surrogate {
    /// The deterministic sample (zero noise).
    fn step(&self, state: Tensor<2>, time: f64) -> Tensor<2> {
        let [b, n] = state.dims();
        let device = state.device();
        let z = Tensor::<2>::from_data(TensorData::new(vec![0.0f32; b * n], [b, n]), &device);
        self.sample_as(state, time, z)
    }

    fn autonomous(&self) -> bool {
        self.forcing.is_none()
    }

    fn dt(&self) -> f64 {
        self.dt
    }

    fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    fn name(&self) -> &str {
        "surrogate"
    }

    fn stochastic(&self) -> Option<&dyn StochasticModel> {
        Some(self)
    }
}

impl StochasticModel for Surrogate {
    fn step_with_noise(&self, state: Tensor<2>, time: f64, keys: &NoiseKeys) -> Tensor<2> {
        let [b, n] = state.dims();
        let z = keys.standard_normal(b, n, &state.device());
        self.sample_as(state, time, z)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{cpu_f64, to_vec};
    use crate::learned::net::Architecture;
    use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};

    fn identity(n: usize) -> Normalisation {
        Normalisation {
            mean: vec![0.0; n],
            std: vec![1.0; n],
            increment_mean: vec![0.0; n],
            increment_std: vec![1.0; n],
            fixed: Vec::new(),
            forcing_mean: Vec::new(),
            forcing_std: Vec::new(),
        }
    }

    /// Draws of the mixture 0.5 N(-2, 0.5^2) + 0.5 N(2, 0.5^2).
    fn mixture(rng: &mut crate::rng::Rng, count: usize) -> Vec<f32> {
        use rand::Rng;
        let z = crate::rng::standard_normal(rng, count);
        z.into_iter()
            .map(|e| {
                let m = if rng.random::<bool>() { 2.0 } else { -2.0 };
                (m + 0.5 * e) as f32
            })
            .collect()
    }

    /// Trains `config` on the mixture (the condition is the zero state, so
    /// the "next state" is a draw of the mixture) and samples 4000 values.
    fn learn_the_mixture(config: GenerativeConfig, steps: usize) -> Vec<f64> {
        let n = 4;
        let device = cpu_f64();
        let ad = device.clone().autodiff();
        let arch = Architecture::Cnn1d {
            channels: 16,
            layers: 3,
            kernel: 1,
            bilinear: false,
        };
        let g = Generative::new(config.clone(), &identity(n));
        let mut net = arch.init_with_inputs(3, &[n], 1, &ad);
        let mut optim: ModuleOptimizer = AdamConfig::new().init();
        let b = 256;
        for k in 0..steps {
            let mut rng = crate::rng::stream(5, &format!("mixture/{k}"));
            let next = mixture(&mut rng, b * n);
            let levels: Vec<f64> = match config {
                GenerativeConfig::Diffusion { .. } => crate::rng::standard_normal(&mut rng, b),
                GenerativeConfig::FlowMatching { .. } => {
                    use rand::Rng;
                    (0..b).map(|_| rng.random::<f64>()).collect()
                }
            };
            let noise: Vec<f32> = crate::rng::standard_normal(&mut rng, b * n)
                .into_iter()
                .map(|v| v as f32)
                .collect();
            let loss = g.loss(
                &net,
                f32_tensor(vec![0.0; b * n], [b, n], &ad),
                f32_tensor(next, [b, n], &ad),
                &levels,
                f32_tensor(noise, [b, n], &ad),
            );
            let grads = GradientsParams::from_grads(loss.backward(), &net);
            let lr = if k < steps / 2 { 3e-3 } else { 1e-3 };
            net = optim.step(lr, net, grads);
        }
        let net = burn::module::Module::valid(&net);
        let m = 1000;
        let z: Vec<f32> = crate::rng::standard_normal(&mut crate::rng::stream(6, "z"), m * n)
            .into_iter()
            .map(|v| v as f32)
            .collect();
        to_vec(g.sample(
            &net,
            f32_tensor(vec![0.0; m * n], [m, n], &device),
            f32_tensor(z, [m, n], &device),
        ))
    }

    fn check_moments(name: &str, s: &[f64]) {
        let k = s.len() as f64;
        let mean = s.iter().sum::<f64>() / k;
        let var = s.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / k;
        let near_modes = s.iter().filter(|v| (v.abs() - 2.0).abs() < 0.5).count() as f64 / k;
        let between = s.iter().filter(|v| v.abs() < 1.0).count() as f64 / k;
        let pos: Vec<f64> = s.iter().copied().filter(|v| *v > 0.0).collect();
        let pos_mean = pos.iter().sum::<f64>() / pos.len() as f64;
        let pos_sd =
            (pos.iter().map(|v| (v - pos_mean).powi(2)).sum::<f64>() / pos.len() as f64).sqrt();
        eprintln!(
            "{name}: mean {mean:.3}, variance {var:.3}, near the modes {near_modes:.3}, between {between:.3}, positive {:.3} with mean {pos_mean:.3} sd {pos_sd:.3}",
            pos.len() as f64 / k
        );
        // The mixture: mean 0, variance 4.25, 68 % within 0.5 of a mode,
        // 2.3 % between -1 and 1. Sampling error of the mean with 4000
        // draws: 0.03.
        assert!(mean.abs() < 0.2, "{name}: mean {mean}");
        assert!((var - 4.25).abs() < 0.5, "{name}: variance {var}");
        assert!(near_modes > 0.55, "{name}: {near_modes} near the modes");
        assert!(between < 0.08, "{name}: {between} between the modes");
    }

    /// The CI check of issue 11: trained on a known 1-D Gaussian mixture,
    /// the diffusion model (EDM, 20 Heun steps) and the flow-matching model
    /// reproduce its mean, variance and two modes.
    #[test]
    fn generative_models_reproduce_a_gaussian_mixture() {
        let diffusion = learn_the_mixture(
            GenerativeConfig::Diffusion {
                sigma_min: 0.002,
                sigma_max: 80.0,
                rho: 7.0,
                steps: 20,
                sigma_data: 2.0,
                p_mean: -1.2,
                p_std: 1.2,
                lower: None,
                upper: None,
            },
            3000,
        );
        check_moments("diffusion", &diffusion);
        let flow = learn_the_mixture(
            GenerativeConfig::FlowMatching {
                s_min: 1e-4,
                steps: 20,
                lower: None,
                upper: None,
            },
            1200,
        );
        check_moments("flow matching", &flow);
    }

    /// Samples depend on the noise keys only: the same keys give the same
    /// ensemble, other keys another; zero noise is `step`; censoring keeps
    /// states in their bounds.
    #[test]
    fn samplers_are_deterministic_under_a_seed_and_censor_bounds() {
        let device = cpu_f64();
        let n = 8;
        let arch = Architecture::Cnn1d {
            channels: 4,
            layers: 2,
            kernel: 3,
            bilinear: true,
        };
        let config = GenerativeConfig::FlowMatching {
            s_min: 1e-4,
            steps: 4,
            lower: Some(Bound::All(-0.5)),
            upper: Some(Bound::All(0.5)),
        };
        let mut norm = identity(n);
        norm.increment_std = vec![3.0; n];
        let surrogate = Surrogate::new(
            arch.init_with_inputs(3, &[n], 2, &device),
            Generative::new(config, &norm),
            Geometry::chain(n, true, "x"),
            0.1,
        );
        let x = crate::device::tensor_from_rows(&vec![0.1; 5 * n], 5, n, &device);
        let keys = |stream| NoiseKeys {
            stream,
            member_offset: 0,
            step: 3,
        };
        let a = to_vec(surrogate.step_with_noise(x.clone(), 0.0, &keys(1)));
        let b = to_vec(surrogate.step_with_noise(x.clone(), 0.0, &keys(1)));
        let c = to_vec(surrogate.step_with_noise(x.clone(), 0.0, &keys(2)));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(
            a.iter().chain(&c).all(|v| (-0.5..=0.5).contains(v)),
            "{a:?}"
        );
        assert!(
            a.iter().any(|v| v.abs() < 0.5),
            "everything censored: {a:?}"
        );
        // Members differ (their own generators).
        assert_ne!(a[..n], a[n..2 * n]);
        let d1 = to_vec(surrogate.step(x.clone(), 0.0));
        let d2 = to_vec(surrogate.step(x.clone(), 0.0));
        assert_eq!(d1, d2);
        assert_eq!(d1[..n], d1[n..2 * n], "zero noise: one sample per state");

        // Per-field bounds (two fields of 4, as a sea ice's h >= 0 and
        // 0 <= a <= 1): each field censored to its own range.
        let config: GenerativeConfig = toml::from_str(
            "kind = \"flow_matching\"\nsteps = 4\nlower = [0.0, -0.25]\nupper = [inf, 0.25]\n",
        )
        .unwrap();
        assert_eq!(config.check(), Ok(()));
        assert_eq!(config.bound_fields(), 2);
        // A checkpoint's JSON header writes inf as null and reads it back
        // as no bound.
        let json = serde_json::to_string(&config).unwrap();
        let back: GenerativeConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(
            back.bounds().1,
            Some(&Bound::Fields(vec![None, Some(0.25)]))
        );
        let surrogate = Surrogate::new(
            arch.init_with_inputs(3, &[n], 2, &device),
            Generative::with_fields(config, &norm, 2),
            Geometry::chain(n, true, "x"),
            0.1,
        );
        let a = to_vec(surrogate.step_with_noise(x, 0.0, &keys(1)));
        for (i, v) in a.iter().enumerate() {
            let range = if i % n < 4 {
                0.0..=f64::INFINITY
            } else {
                -0.25..=0.25
            };
            assert!(range.contains(v), "variable {i}: {v}");
        }
        assert!(
            a.iter().any(|&v| v > 0.25),
            "the first field is not capped: {a:?}"
        );
        let bad: GenerativeConfig =
            toml::from_str("kind = \"flow_matching\"\nlower = [0.0, 1.0]\nupper = [1.0, 0.5]\n")
                .unwrap();
        assert_eq!(bad.check().unwrap_err().0, "lower");
    }
}
