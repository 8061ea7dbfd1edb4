//! Downscaling emulators (Doury et al. 2023, 2024): a network from coarse
//! predictor fields, a vector of scalars and fine static fields (terrain)
//! to one fine surface field, trained by `rime train`, judged by
//! `rime evaluate` with the CORDEX-ML-Bench scores, and used in DA as the
//! observation operator `kind = "learned"` (`obs::learned`).
//!
//! # The network ([`DownscalingArchitecture`])
//! Doury's design on rime's grids: a U-Net on the coarse grid (two 3x3
//! convolutions with GELU per level, 2x2 averages down, nearest-neighbour
//! doubling up, skips), the scalars through a dense layer joined as
//! constant channels at the bottleneck, its features (through a 1x1
//! convolution to the fine stage's width) and the predictors themselves
//! interpolated linearly to the fine grid (two taps per axis from the
//! grids' coordinates, so any pair of regular grids fits: the twin's
//! node-aligned 65 -> 257, CORDEX's 150 km -> 12 km), the static fine fields
//! joined there, and a second U-Net on the fine grid before a 1x1
//! convolution to the outputs. Weights in f32, seeded from rime's streams.
//!
//! # Losses ([`Loss`])
//! On the target normalised as `(y - offset) / scale` (per-point training
//! mean for `mse` and `mae`, none for the precipitation losses; `scale` the
//! pooled standard deviation), over the valid (non-NaN) points:
//! - `mse`, `mae`;
//! - `asymmetric` (Doury et al. 2024): `MAE + mean[w max(0, y - yhat)]`
//!   with `w = F(y - t)^2`, `F` the CDF of a gamma law fitted by moments at
//!   each fine point to the training excesses `y - t > 0` over the wet
//!   threshold `t` (`wet_threshold`); under-predicting heavy amounts costs
//!   more;
//! - `bernoulli_gamma`: the negative log-likelihood of "dry with
//!   probability `1 - p`, else `t` plus a gamma excess (shape `a`, scale
//!   `b`)", three outputs per point (`p = sigmoid`, `a, b = softplus +
//!   1e-3`); the emulated value is the mean `p (t + a b)`, and the law's
//!   variance is the operator's spread.
//!
//! # The operator's error
//! After training, the best network is run over the validation split and
//! the checkpoint stores, per fine point, the operator's error standard
//! deviation: the RMSE of the emulated value for `mse`, `mae` and
//! `asymmetric`; for `bernoulli_gamma` the root of the mean predicted
//! variance. `obs::learned` adds it to R.
//!
//! # Data ([`DownscalingData`])
//! Perfect-model training from a rime twin (`kind = "twin"`): the
//! predictors are the coarse model's fields from a `rime simulate`
//! trajectory file and the targets the fine field of an observation
//! operator (the twin's exact chain, `kind = "orographic"`) applied to
//! every record at all its candidate points; its static fields (terrain)
//! are the static inputs. Or the CORDEX-ML-Bench files (`kind = "cordex"`,
//! [`super::cordex`]).
//!
//! Checkpoint file (`downscaling.ckpt`), written atomically: `RIMEDSCL`
//! (8 bytes), then two sections, each a little-endian `u64` length and its
//! bytes: the JSON header ([`DownscalingHeader`]) and the weights
//! (burnpack, f32).

use std::path::{Path, PathBuf};

use burn::module::{Module, Param};
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::activation::{gelu, log_sigmoid, sigmoid, softplus};
use burn::tensor::{Device, FloatDType, Tensor};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::net::{Conv2dSame, DoubleConv, f32_tensor, unet_pass, uniform_init};
use super::progress::Progress;
use crate::device::{DeviceChoice, DeviceError, Precision, to_vec};

/// Downscaling samples in memory: coarse predictor fields, a vector of
/// scalars and fine static fields in, one fine target field out, per time.
#[derive(Clone, Debug, PartialEq)]
pub struct DownscalingData {
    /// Names of the coarse predictor fields, in channel order (e.g. `z_500`).
    pub predictor_names: Vec<String>,
    /// `[ny, nx]` of the coarse grid.
    pub coarse_shape: [usize; 2],
    /// Coarse grid coordinates along x (length nx), strictly ascending.
    pub coarse_x: Vec<f64>,
    /// Coarse grid coordinates along y (length ny), strictly ascending.
    pub coarse_y: Vec<f64>,
    /// `[time, predictor, ny, nx]`, row-major.
    pub predictors: Vec<f32>,
    /// Names of the scalars joined at the bottleneck (e.g. `cos_season`).
    pub scalar_names: Vec<String>,
    /// `[time, scalar]`.
    pub scalars: Vec<f32>,
    /// Names of the static fine fields (e.g. `orog`).
    pub static_names: Vec<String>,
    /// `[ny, nx]` of the fine grid.
    pub fine_shape: [usize; 2],
    /// Fine grid coordinates along x (same units as the coarse ones).
    pub fine_x: Vec<f64>,
    /// Fine grid coordinates along y.
    pub fine_y: Vec<f64>,
    /// `[static, ny, nx]`.
    pub statics: Vec<f32>,
    /// The target variable's name (`tasmax`, `pr`, `temperature`).
    pub target_name: String,
    /// Its units (`K`, `mm/day`, `mm h-1`).
    pub target_units: String,
    /// `[time, ny, nx]`; NaN where the target is missing (masked).
    pub targets: Vec<f32>,
    /// Time of each sample, in days since `time_units`' origin.
    pub time: Vec<f64>,
    /// 0 train, 1 validation, 2 test, per time.
    pub split: Vec<i32>,
}

impl DownscalingData {
    /// Number of samples.
    pub fn times(&self) -> usize {
        self.time.len()
    }

    /// Points of one coarse field.
    pub fn coarse_len(&self) -> usize {
        self.coarse_shape[0] * self.coarse_shape[1]
    }

    /// Points of one fine field.
    pub fn fine_len(&self) -> usize {
        self.fine_shape[0] * self.fine_shape[1]
    }

    /// The samples of split `code`.
    pub fn samples(&self, code: i32) -> Vec<usize> {
        (0..self.times())
            .filter(|&t| self.split[t] == code)
            .collect()
    }

    /// Checks that every array has the length its shape says, that the
    /// grids ascend, and that predictors, scalars and statics are finite.
    ///
    /// # Errors
    /// The first inconsistency, named.
    pub fn check(&self) -> Result<(), String> {
        let t = self.times();
        let (p, k, s) = (
            self.predictor_names.len(),
            self.scalar_names.len(),
            self.static_names.len(),
        );
        let lens = [
            (
                "predictors",
                self.predictors.len(),
                t * p * self.coarse_len(),
            ),
            ("scalars", self.scalars.len(), t * k),
            ("statics", self.statics.len(), s * self.fine_len()),
            ("targets", self.targets.len(), t * self.fine_len()),
            ("split", self.split.len(), t),
            ("coarse x", self.coarse_x.len(), self.coarse_shape[1]),
            ("coarse y", self.coarse_y.len(), self.coarse_shape[0]),
            ("fine x", self.fine_x.len(), self.fine_shape[1]),
            ("fine y", self.fine_y.len(), self.fine_shape[0]),
        ];
        for (what, got, want) in lens {
            if got != want {
                return Err(format!("{what}: {got} values, the shapes say {want}"));
            }
        }
        if p == 0 {
            return Err("no predictor fields".into());
        }
        for (what, axis) in [
            ("coarse x", &self.coarse_x),
            ("coarse y", &self.coarse_y),
            ("fine x", &self.fine_x),
            ("fine y", &self.fine_y),
        ] {
            if axis.len() < 2 || axis.windows(2).any(|w| !(w[1] > w[0])) {
                return Err(format!(
                    "the {what} axis must have at least 2 strictly ascending values"
                ));
            }
        }
        for (what, values) in [
            ("predictors", &self.predictors),
            ("scalars", &self.scalars),
            ("statics", &self.statics),
        ] {
            if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                return Err(format!("{what}: value {i} is {}", values[i]));
            }
        }
        if self.targets.iter().any(|v| v.is_infinite()) {
            return Err("targets: an infinite value".into());
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Gamma functions (host)
// ---------------------------------------------------------------------------

/// `ln Γ(x)` for `x > 0` (Lanczos, g = 7, 9 terms; relative error < 1e-13).
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection.
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + G + 0.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// The regularised lower incomplete gamma function `P(a, x)`, the CDF of
/// a gamma law of shape `a` and unit scale at `x` (series below `a + 1`,
/// Lentz's continued fraction above; to 1e-14).
pub fn gamma_p(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    let lead = a * x.ln() - x - ln_gamma(a);
    if x < a + 1.0 {
        let (mut sum, mut term, mut n) = (1.0 / a, 1.0 / a, a);
        for _ in 0..1000 {
            n += 1.0;
            term *= x / n;
            sum += term;
            if term.abs() < sum.abs() * 1e-16 {
                break;
            }
        }
        (sum.ln() + lead).exp().min(1.0)
    } else {
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..1000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() < 1e-16 {
                break;
            }
        }
        (1.0 - (lead.exp() * h)).max(0.0)
    }
}

/// `ln Γ` of a tensor of values > 0, differentiable: `ln Γ(a) = ln Γ(a +
/// 6) - ln(a (a+1) ... (a+5))` and Stirling's series at `z = a + 6`
/// (absolute error < 1e-9 in f64, f32 round-off in f32).
pub fn ln_gamma_tensor<const D: usize>(a: Tensor<D>) -> Tensor<D> {
    let mut product = a.clone();
    for k in 1..6 {
        product = product * (a.clone() + k as f64);
    }
    let z = a + 6.0;
    let inv = z.clone().recip();
    let inv2 = inv.clone() * inv.clone();
    // 1/(12 z) - 1/(360 z^3) + 1/(1260 z^5)
    let series =
        inv.clone() * ((inv2.clone() * (inv2 * (1.0 / 1260.0) - 1.0 / 360.0)) + 1.0 / 12.0);
    (z.clone() - 0.5) * z.clone().log() - z + 0.5 * (2.0 * std::f64::consts::PI).ln() + series
        - product.log()
}

// ---------------------------------------------------------------------------
// The network
// ---------------------------------------------------------------------------

/// The `[network]` table of a downscaling emulator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownscalingArchitecture {
    /// Channels of the coarse U-Net's finest level (doubled at each
    /// coarser one).
    #[serde(default = "default_channels")]
    pub channels: usize,
    /// Resolutions of the coarse U-Net, 1 to 6.
    #[serde(default = "default_levels")]
    pub levels: usize,
    /// Channels of the fine U-Net's finest level.
    #[serde(default = "default_fine_channels")]
    pub fine_channels: usize,
    /// Resolutions of the fine U-Net, 1 to 6.
    #[serde(default = "default_fine_levels")]
    pub fine_levels: usize,
    /// Width of the dense layer the scalars go through before the
    /// bottleneck.
    #[serde(default = "default_scalar_width")]
    pub scalar_width: usize,
}

fn default_channels() -> usize {
    16
}
fn default_levels() -> usize {
    3
}
fn default_fine_channels() -> usize {
    8
}
fn default_fine_levels() -> usize {
    2
}
fn default_scalar_width() -> usize {
    8
}

impl Default for DownscalingArchitecture {
    fn default() -> Self {
        Self {
            channels: default_channels(),
            levels: default_levels(),
            fine_channels: default_fine_channels(),
            fine_levels: default_fine_levels(),
            scalar_width: default_scalar_width(),
        }
    }
}

impl DownscalingArchitecture {
    /// Checks the sizes; the error names the key.
    ///
    /// # Errors
    /// A size out of range.
    pub fn check(&self) -> Result<(), (String, String)> {
        for (key, v) in [
            ("channels", self.channels),
            ("fine_channels", self.fine_channels),
            ("scalar_width", self.scalar_width),
        ] {
            if v == 0 {
                return Err((key.into(), "must be at least 1".into()));
            }
        }
        for (key, v) in [("levels", self.levels), ("fine_levels", self.fine_levels)] {
            if !(1..=6).contains(&v) {
                return Err((key.into(), format!("must be 1 to 6, got {v}")));
            }
        }
        Ok(())
    }
}

/// The sizes a network is built for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DownscalingShapes {
    /// Predictor fields.
    pub predictors: usize,
    /// Scalars.
    pub scalars: usize,
    /// Static fine fields.
    pub statics: usize,
    /// Output channels (1, or 3 for `bernoulli_gamma`).
    pub outputs: usize,
    /// Coarse grid coordinates.
    pub coarse_x: Vec<f64>,
    /// Coarse grid coordinates.
    pub coarse_y: Vec<f64>,
    /// Fine grid coordinates.
    pub fine_x: Vec<f64>,
    /// Fine grid coordinates.
    pub fine_y: Vec<f64>,
}

/// A dense layer `[batch, in] -> [batch, out]`.
#[derive(Module, Debug)]
pub struct Dense {
    weight: Param<Tensor<2>>,
    bias: Param<Tensor<1>>,
}

impl Dense {
    fn new(inputs: usize, outputs: usize, seed: u64, name: &str, device: &Device) -> Self {
        let w = uniform_init(seed, name, "weight", inputs * outputs, inputs);
        let b = uniform_init(seed, name, "bias", outputs, inputs);
        Self {
            weight: Param::from_tensor(f32_tensor(w, [inputs, outputs], device)),
            bias: Param::from_tensor(f32_tensor(b, [outputs], device)),
        }
    }

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        x.matmul(self.weight.val()) + self.bias.val().unsqueeze::<2>()
    }
}

/// The two taps of linear interpolation from the `from` axis at each point
/// of the `to` axis: `(lower, upper, weight of upper)`; beyond `from`'s
/// ends, the end value.
pub fn interpolation_taps(from: &[f64], to: &[f64]) -> Vec<(usize, usize, f32)> {
    let n = from.len();
    to.iter()
        .map(|&v| {
            if n == 1 || v <= from[0] {
                return (0, 0, 0.0);
            }
            if v >= from[n - 1] {
                return (n - 1, n - 1, 0.0);
            }
            let i = from.partition_point(|&f| f <= v) - 1;
            (i, i + 1, ((v - from[i]) / (from[i + 1] - from[i])) as f32)
        })
        .collect()
}

/// The downscaling network of [`DownscalingArchitecture`].
#[derive(Module, Debug)]
pub struct DownscalingNet {
    down: Vec<DoubleConv>,
    up: Vec<DoubleConv>,
    dense: Vec<Dense>,
    fine_down: Vec<DoubleConv>,
    fine_up: Vec<DoubleConv>,
    last: Conv2dSame,
    nyc: usize,
    nxc: usize,
    nyf: usize,
    nxf: usize,
    statics_count: usize,
    /// 1x1 convolution from the coarse U-Net's channels to the fine
    /// stage's, before the interpolation.
    project: Conv2dSame,
    /// Per fine column: the two coarse columns and their weights.
    #[module(skip)]
    taps_x: Vec<(usize, usize, f32)>,
    /// Per fine row: the two coarse rows and their weights.
    #[module(skip)]
    taps_y: Vec<(usize, usize, f32)>,
    /// Normalised static fields `[statics, nyf, nxf]`.
    #[module(skip)]
    statics: Vec<f32>,
}

fn unet_blocks(
    inputs: usize,
    extra_at_bottom: usize,
    channels: usize,
    levels: usize,
    seed: u64,
    prefix: &str,
    device: &Device,
) -> (Vec<DoubleConv>, Vec<DoubleConv>) {
    let width = |l: usize| channels << l;
    let down = (0..levels)
        .map(|l| {
            let mut i = if l == 0 { inputs } else { width(l - 1) };
            if l == levels - 1 {
                i += extra_at_bottom;
            }
            DoubleConv::new(i, width(l), seed, &format!("{prefix}down{l}"), device)
        })
        .collect();
    let up = (0..levels.saturating_sub(1))
        .map(|l| {
            DoubleConv::new(
                width(l + 1) + width(l),
                width(l),
                seed,
                &format!("{prefix}up{l}"),
                device,
            )
        })
        .collect();
    (down, up)
}

impl DownscalingNet {
    /// The network for `shapes`, with `statics` (normalised, `[statics,
    /// nyf, nxf]`), weights from the streams of `seed`.
    pub fn new(
        arch: &DownscalingArchitecture,
        shapes: &DownscalingShapes,
        statics: Vec<f32>,
        seed: u64,
        device: &Device,
    ) -> Self {
        let scalar_width = if shapes.scalars > 0 {
            arch.scalar_width
        } else {
            0
        };
        let (down, up) = unet_blocks(
            shapes.predictors,
            scalar_width,
            arch.channels,
            arch.levels,
            seed,
            "",
            device,
        );
        let dense = if shapes.scalars > 0 {
            vec![Dense::new(
                shapes.scalars,
                arch.scalar_width,
                seed,
                "dense",
                device,
            )]
        } else {
            Vec::new()
        };
        let project = Conv2dSame::new(
            arch.channels,
            arch.fine_channels,
            1,
            seed,
            "project",
            device,
        );
        let (fine_down, fine_up) = unet_blocks(
            arch.fine_channels + shapes.predictors + shapes.statics,
            0,
            arch.fine_channels,
            arch.fine_levels,
            seed,
            "fine/",
            device,
        );
        let last = Conv2dSame::new(arch.fine_channels, shapes.outputs, 1, seed, "last", device);
        let (nyc, nxc, nyf, nxf) = (
            shapes.coarse_y.len(),
            shapes.coarse_x.len(),
            shapes.fine_y.len(),
            shapes.fine_x.len(),
        );
        assert_eq!(statics.len(), shapes.statics * nyf * nxf, "static fields");
        Self {
            down,
            up,
            dense,
            fine_down,
            fine_up,
            last,
            nyc,
            nxc,
            nyf,
            nxf,
            statics_count: shapes.statics,
            project,
            taps_x: interpolation_taps(&shapes.coarse_x, &shapes.fine_x),
            taps_y: interpolation_taps(&shapes.coarse_y, &shapes.fine_y),
            statics,
        }
    }

    /// Coarse features `[b, c, nyc, nxc]` to the fine grid: two taps per
    /// axis (gathers and weights, not dense matrices).
    fn interpolate(&self, h: Tensor<4>) -> Tensor<4> {
        let device = h.device();
        let along = |h: Tensor<4>, dim: usize, taps: &[(usize, usize, f32)]| -> Tensor<4> {
            let n = taps.len();
            let idx = |f: fn(&(usize, usize, f32)) -> usize| {
                Tensor::<1, burn::tensor::Int>::from_data(
                    burn::tensor::TensorData::new(
                        taps.iter().map(|t| f(t) as i64).collect::<Vec<_>>(),
                        [n],
                    ),
                    &device,
                )
            };
            let mut shape = [1usize; 4];
            shape[dim] = n;
            let w1: Vec<f32> = taps.iter().map(|t| t.2).collect();
            let w0: Vec<f32> = w1.iter().map(|w| 1.0 - w).collect();
            let w0 = f32_tensor(w0, shape, &device);
            let w1 = f32_tensor(w1, shape, &device);
            h.clone().select(dim, idx(|t| t.0)) * w0 + h.select(dim, idx(|t| t.1)) * w1
        };
        let h = along(h, 3, &self.taps_x);
        along(h, 2, &self.taps_y)
    }

    /// `[b, predictors, nyc, nxc]` (normalised) and `[b, scalars]` (or
    /// `None` without scalars) to `[b, outputs, nyf, nxf]`, in f32.
    pub fn forward(&self, predictors: Tensor<4>, scalars: Option<Tensor<2>>) -> Tensor<4> {
        let predictors = predictors.cast(FloatDType::F32);
        let [b, _, nyc, nxc] = predictors.dims();
        assert_eq!(
            [nyc, nxc],
            [self.nyc, self.nxc],
            "a network built for a {} x {} coarse grid",
            self.nyc,
            self.nxc
        );
        let bottom = match (self.dense.first(), scalars) {
            (Some(d), Some(s)) => Some(gelu(d.forward(s.cast(FloatDType::F32)))),
            (None, _) => None,
            (Some(_), None) => panic!("a network built with scalars called without them"),
        };
        let h = unet_pass(&self.down, &self.up, predictors.clone(), bottom);
        // The coarse features and the predictors themselves, interpolated.
        let h = self.interpolate(Tensor::cat(vec![self.project.forward(h), predictors], 1));
        let h = if self.statics_count > 0 {
            let device = h.device();
            let s = f32_tensor(
                self.statics.clone(),
                [1, self.statics_count, self.nyf, self.nxf],
                &device,
            )
            .repeat_dim(0, b);
            Tensor::cat(vec![h, s], 1)
        } else {
            h
        };
        let h = unet_pass(&self.fine_down, &self.fine_up, h, None);
        self.last.forward(h)
    }
}

// ---------------------------------------------------------------------------
// Losses and heads
// ---------------------------------------------------------------------------

/// The training loss (and with it the output head).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// Mean squared error.
    #[default]
    Mse,
    /// Mean absolute error.
    Mae,
    /// Doury et al. (2024): MAE plus the gamma-CDF-weighted
    /// under-prediction.
    Asymmetric,
    /// Bernoulli-gamma negative log-likelihood (three outputs).
    BernoulliGamma,
}

impl Loss {
    /// Output channels.
    pub fn outputs(self) -> usize {
        match self {
            Loss::BernoulliGamma => 3,
            _ => 1,
        }
    }

    /// Whether the target is centred at each point before scaling (not
    /// for the precipitation losses, whose zero must stay zero).
    pub fn centred(self) -> bool {
        matches!(self, Loss::Mse | Loss::Mae)
    }
}

/// A batch on a device: normalised inputs and targets.
pub struct Batch {
    /// `[b, p, nyc, nxc]`.
    pub predictors: Tensor<4>,
    /// `[b, k]`.
    pub scalars: Option<Tensor<2>>,
    /// `[b, nf]`, normalised, 0 where missing.
    pub targets: Tensor<2>,
    /// `[b, nf]`, 1 where valid.
    pub mask: Tensor<2>,
    /// `[b, nf]`: the asymmetric loss's weights, or the wet indicator of
    /// the Bernoulli-gamma loss.
    pub aux: Option<Tensor<2>>,
}

/// The Bernoulli-gamma parameters `(p, a, b)` of the outputs `[b, 3, ...]`
/// flattened to `[b, nf]` each, with `ln p`, `ln(1 - p)`.
fn bernoulli_gamma(out: Tensor<4>) -> [Tensor<2>; 5] {
    let [b, _, ny, nx] = out.dims();
    let c = |k: usize| out.clone().narrow(1, k, 1).reshape([b, ny * nx]);
    let logit = c(0);
    let a = softplus(c(1), 1.0) + 1e-3;
    let s = softplus(c(2), 1.0) + 1e-3;
    [
        sigmoid(logit.clone()),
        a,
        s,
        log_sigmoid(logit.clone()),
        log_sigmoid(-logit),
    ]
}

/// The loss of outputs `out` `[b, outputs, nyf, nxf]` on `batch`, a mean
/// over valid points; `threshold` is the wet threshold in normalised
/// units.
pub fn loss(loss: Loss, out: Tensor<4>, batch: &Batch, threshold: f64) -> Tensor<1> {
    let [b, _, ny, nx] = out.dims();
    let y = batch.targets.clone();
    let m = batch.mask.clone();
    let count = m.clone().sum();
    let mean = |t: Tensor<2>| (t * m.clone()).sum() / count.clone();
    match loss {
        Loss::Mse | Loss::Mae | Loss::Asymmetric => {
            let yhat = out.reshape([b, ny * nx]);
            let e = yhat - y;
            match loss {
                Loss::Mse => mean(e.square()),
                Loss::Mae => mean(e.abs()),
                _ => {
                    let w = batch.aux.clone().expect("weights of the asymmetric loss");
                    mean(e.clone().abs()) + mean(w * (-e).clamp_min(0.0))
                }
            }
        }
        Loss::BernoulliGamma => {
            let [_, a, s, log_p, log_q] = bernoulli_gamma(out);
            let wet = batch.aux.clone().expect("wet indicator");
            let dry = wet.clone().neg() + 1.0;
            let e = (y - threshold).clamp_min(1e-6);
            let log_wet = log_p + (a.clone() - 1.0) * e.clone().log()
                - e / s.clone()
                - a.clone() * s.log()
                - ln_gamma_tensor(a);
            mean(-(wet * log_wet + dry * log_q))
        }
    }
}

/// The emulated value (normalised: `(y - offset) / scale`) and, for
/// `bernoulli_gamma`, the variance of the law (normalised units squared),
/// each `[b, nf]`.
pub fn head(loss: Loss, out: Tensor<4>, threshold: f64) -> (Tensor<2>, Option<Tensor<2>>) {
    let [b, _, ny, nx] = out.dims();
    match loss {
        Loss::BernoulliGamma => {
            let [p, a, s, _, _] = bernoulli_gamma(out);
            let wet_mean = a.clone() * s.clone() + threshold;
            let mean = p.clone() * wet_mean.clone();
            let second = p * (wet_mean.square() + a * s.square());
            let var = (second - mean.clone().square()).clamp_min(0.0);
            (mean, Some(var))
        }
        _ => (out.reshape([b, ny * nx]), None),
    }
}

// ---------------------------------------------------------------------------
// Normalisation and prepared data
// ---------------------------------------------------------------------------

/// Moments of the inputs and the target's transform, fitted on the
/// training split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DownscalingNorm {
    /// Per predictor field.
    pub predictor_mean: Vec<f64>,
    /// Per predictor field (1 for a constant one).
    pub predictor_std: Vec<f64>,
    /// Per scalar.
    pub scalar_mean: Vec<f64>,
    /// Per scalar.
    pub scalar_std: Vec<f64>,
    /// Per static field.
    pub static_mean: Vec<f64>,
    /// Per static field.
    pub static_std: Vec<f64>,
    /// Per fine point: subtracted from the target (zeros for the
    /// precipitation losses).
    pub target_offset: Vec<f32>,
    /// The target's scale.
    pub target_scale: f64,
}

fn moments(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut n, mut s, mut q) = (0.0f64, 0.0f64, 0.0f64);
    for v in values {
        n += 1.0;
        s += v;
        q += v * v;
    }
    let mean = s / n.max(1.0);
    let var = (q / n.max(1.0) - mean * mean).max(0.0);
    let std = var.sqrt();
    (mean, if std > 0.0 { std } else { 1.0 })
}

impl DownscalingNorm {
    /// Fits the moments on the samples `train` of `data`.
    pub fn fit(data: &DownscalingData, train: &[usize], loss: Loss) -> Self {
        let (p, k, s) = (
            data.predictor_names.len(),
            data.scalar_names.len(),
            data.static_names.len(),
        );
        let (nc, nf) = (data.coarse_len(), data.fine_len());
        let pred = |c: usize| {
            train.iter().flat_map(move |&t| {
                data.predictors[(t * p + c) * nc..(t * p + c + 1) * nc]
                    .iter()
                    .map(|&v| f64::from(v))
            })
        };
        let (predictor_mean, predictor_std) = (0..p).map(|c| moments(pred(c))).unzip();
        let (scalar_mean, scalar_std) = (0..k)
            .map(|c| moments(train.iter().map(|&t| f64::from(data.scalars[t * k + c]))))
            .unzip();
        let (static_mean, static_std) = (0..s)
            .map(|c| {
                moments(
                    data.statics[c * nf..(c + 1) * nf]
                        .iter()
                        .map(|&v| f64::from(v)),
                )
            })
            .unzip();
        let mut target_offset = vec![0.0f32; nf];
        if loss.centred() {
            let mut count = vec![0usize; nf];
            let mut sum = vec![0.0f64; nf];
            for &t in train {
                for (i, &v) in data.targets[t * nf..(t + 1) * nf].iter().enumerate() {
                    if v.is_finite() {
                        count[i] += 1;
                        sum[i] += f64::from(v);
                    }
                }
            }
            for i in 0..nf {
                target_offset[i] = if count[i] > 0 {
                    (sum[i] / count[i] as f64) as f32
                } else {
                    0.0
                };
            }
        }
        let (_, target_scale) = moments(train.iter().flat_map(|&t| {
            let offset = &target_offset;
            data.targets[t * nf..(t + 1) * nf]
                .iter()
                .zip(offset)
                .filter(|(v, _)| v.is_finite())
                .map(|(&v, &o)| f64::from(v - o))
        }));
        Self {
            predictor_mean,
            predictor_std,
            scalar_mean,
            scalar_std,
            static_mean,
            static_std,
            target_offset,
            target_scale,
        }
    }

    /// The static fields normalised.
    pub fn statics(&self, data: &DownscalingData) -> Vec<f32> {
        let nf = data.fine_len();
        data.statics
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let c = i / nf;
                ((f64::from(v) - self.static_mean[c]) / self.static_std[c]) as f32
            })
            .collect()
    }
}

/// Fits a gamma law by moments to the excesses over `threshold` at each
/// point of `[time, nf]` targets (the `train` samples): `(shape, scale)`,
/// or `None` where fewer than 3 excesses or no spread.
pub fn fit_gamma_per_point(
    targets: &[f32],
    nf: usize,
    train: &[usize],
    threshold: f64,
) -> Vec<Option<(f64, f64)>> {
    (0..nf)
        .map(|i| {
            let excess: Vec<f64> = train
                .iter()
                .map(|&t| f64::from(targets[t * nf + i]) - threshold)
                .filter(|e| e.is_finite() && *e > 0.0)
                .collect();
            if excess.len() < 3 {
                return None;
            }
            let n = excess.len() as f64;
            let mean = excess.iter().sum::<f64>() / n;
            let var = excess.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / (n - 1.0);
            (var > 0.0).then(|| (mean * mean / var, var / mean))
        })
        .collect()
}

/// Data normalised for training, on the host.
struct Prepared {
    p: usize,
    k: usize,
    nc: usize,
    nf: usize,
    shape_c: [usize; 2],
    predictors: Vec<f32>,
    scalars: Vec<f32>,
    targets: Vec<f32>,
    mask: Vec<f32>,
    aux: Option<Vec<f32>>,
    /// Raw targets (physical, NaN where missing).
    raw: Vec<f32>,
}

impl Prepared {
    fn new(
        data: &DownscalingData,
        norm: &DownscalingNorm,
        loss: Loss,
        threshold: f64,
        train: &[usize],
    ) -> Self {
        let (p, k, nc, nf) = (
            data.predictor_names.len(),
            data.scalar_names.len(),
            data.coarse_len(),
            data.fine_len(),
        );
        let predictors = data
            .predictors
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let c = (i / nc) % p;
                ((f64::from(v) - norm.predictor_mean[c]) / norm.predictor_std[c]) as f32
            })
            .collect();
        let scalars = data
            .scalars
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let c = i % k.max(1);
                ((f64::from(v) - norm.scalar_mean[c]) / norm.scalar_std[c]) as f32
            })
            .collect();
        let inv = 1.0 / norm.target_scale;
        let mut targets = Vec::with_capacity(data.targets.len());
        let mut mask = Vec::with_capacity(data.targets.len());
        for (i, &v) in data.targets.iter().enumerate() {
            if v.is_finite() {
                targets.push(((f64::from(v - norm.target_offset[i % nf])) * inv) as f32);
                mask.push(1.0);
            } else {
                targets.push(0.0);
                mask.push(0.0);
            }
        }
        let aux = match loss {
            Loss::Asymmetric => {
                let fits = fit_gamma_per_point(&data.targets, nf, train, threshold);
                Some(
                    data.targets
                        .iter()
                        .enumerate()
                        .map(|(i, &v)| match fits[i % nf] {
                            Some((shape, scale)) if v.is_finite() => {
                                let f = gamma_p(shape, (f64::from(v) - threshold).max(0.0) / scale);
                                (f * f) as f32
                            }
                            _ => 0.0,
                        })
                        .collect(),
                )
            }
            Loss::BernoulliGamma => Some(
                data.targets
                    .iter()
                    .map(|&v| f32::from(u8::from(v.is_finite() && f64::from(v) > threshold)))
                    .collect(),
            ),
            _ => None,
        };
        Self {
            p,
            k,
            nc,
            nf,
            shape_c: data.coarse_shape,
            predictors,
            scalars,
            targets,
            mask,
            aux,
            raw: data.targets.clone(),
        }
    }

    fn batch(&self, samples: &[usize], device: &Device) -> Batch {
        let b = samples.len();
        let gather = |values: &[f32], len: usize| -> Vec<f32> {
            let mut out = Vec::with_capacity(b * len);
            for &t in samples {
                out.extend_from_slice(&values[t * len..(t + 1) * len]);
            }
            out
        };
        let [nyc, nxc] = self.shape_c;
        Batch {
            predictors: f32_tensor(
                gather(&self.predictors, self.p * self.nc),
                [b, self.p, nyc, nxc],
                device,
            ),
            scalars: (self.k > 0)
                .then(|| f32_tensor(gather(&self.scalars, self.k), [b, self.k], device)),
            targets: f32_tensor(gather(&self.targets, self.nf), [b, self.nf], device),
            mask: f32_tensor(gather(&self.mask, self.nf), [b, self.nf], device),
            aux: self
                .aux
                .as_ref()
                .map(|a| f32_tensor(gather(a, self.nf), [b, self.nf], device)),
        }
    }
}

// ---------------------------------------------------------------------------
// Checkpoints and the emulator
// ---------------------------------------------------------------------------

/// The header of a downscaling checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DownscalingHeader {
    /// 1.
    pub format: u32,
    /// The rime that wrote it.
    pub rime_version: String,
    /// The network.
    pub architecture: DownscalingArchitecture,
    /// What it was built for.
    pub shapes: DownscalingShapes,
    /// The loss (and head).
    pub loss: Loss,
    /// Wet threshold (target units).
    pub wet_threshold: f64,
    /// Seed of the initial weights.
    pub seed: u64,
    /// Predictor field names.
    pub predictor_names: Vec<String>,
    /// Scalar names.
    pub scalar_names: Vec<String>,
    /// Static field names.
    pub static_names: Vec<String>,
    /// The static fields as trained with (raw, `[statics, nyf, nxf]`).
    pub statics: Vec<f32>,
    /// The normalisation.
    pub norm: DownscalingNorm,
    /// Target name.
    pub target_name: String,
    /// Target units.
    pub target_units: String,
    /// Per fine point, the operator's error standard deviation on the
    /// validation split (target units).
    pub error_std: Vec<f32>,
    /// The data it was trained on, in words.
    pub data: String,
    /// The training file.
    pub config: String,
    /// Epochs, in order.
    pub history: Vec<super::emulator::EpochRecord>,
    /// The epoch of these weights.
    pub best_epoch: usize,
    /// FNV-1a of the weights.
    pub checksum: Option<String>,
}

const MAGIC: &[u8; 8] = b"RIMEDSCL";

/// A trained downscaling emulator: header and network.
pub struct Downscaler {
    /// What it is.
    pub header: DownscalingHeader,
    /// The network.
    pub net: DownscalingNet,
}

impl Downscaler {
    /// Writes the checkpoint atomically.
    ///
    /// # Errors
    /// A file that cannot be written.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let weights = self
            .net
            .clone()
            .into_record()
            .into_bytes()
            .map_err(|e| e.to_string())?
            .to_vec();
        let mut header = self.header.clone();
        header.checksum = Some(super::emulator::checksum(&[&weights]));
        let header = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
        super::emulator::write_sections(path, MAGIC, &[&header, &weights])
    }

    /// Reads a checkpoint onto `device`; errors name the file.
    ///
    /// # Errors
    /// A missing, truncated, foreign or damaged file.
    pub fn load(path: &Path, device: &Device) -> Result<Self, String> {
        let err = |what: &str| format!("{}: {what}", path.display());
        let sections = super::emulator::read_sections(
            path,
            MAGIC,
            &["header", "weights"],
            "not a rime downscaling checkpoint (it does not start with RIMEDSCL; `rime train` with a [downscaling] table writes one)",
        )?;
        let header: DownscalingHeader =
            serde_json::from_slice(&sections[0]).map_err(|e| err(&format!("bad header: {e}")))?;
        if header.format != 1 {
            return Err(err(&format!(
                "downscaling checkpoint format {} is not supported (format 1)",
                header.format
            )));
        }
        if let Some(stored) = &header.checksum {
            let actual = super::emulator::checksum(&[&sections[1]]);
            if &actual != stored {
                return Err(err(&format!(
                    "the weights fail their checksum ({actual}, the header says {stored}): the file was changed or damaged after it was written"
                )));
            }
        }
        let record = burn::store::ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(
            sections[1].clone(),
        ))
        .map_err(|e| err(&e.to_string()))?;
        let statics = header.norm.statics_of(&header);
        let net = DownscalingNet::new(
            &header.architecture,
            &header.shapes,
            statics,
            header.seed,
            device,
        )
        .try_load_record(record)
        .map_err(|e| err(&e.to_string()))?;
        Ok(Self { header, net })
    }

    /// The emulated fine field (target units, `[b, nf]`, f32) and for
    /// `bernoulli_gamma` its variance, from raw predictors `[b, p nc]` (any
    /// float type) and raw scalars `[b, k]`.
    pub fn predict(
        &self,
        predictors: Tensor<2>,
        scalars: Option<Tensor<2>>,
    ) -> (Tensor<2>, Option<Tensor<2>>) {
        let h = &self.header;
        let device = predictors.device();
        let [b, _] = predictors.dims();
        let p = h.shapes.predictors;
        let (nyc, nxc) = (h.shapes.coarse_y.len(), h.shapes.coarse_x.len());
        let col = |v: &[f64], f: fn(f64) -> f64| -> Tensor<3> {
            f32_tensor(
                v.iter().map(|&x| f(x) as f32).collect(),
                [1, v.len(), 1],
                &device,
            )
        };
        let x = predictors.cast(FloatDType::F32).reshape([b, p, nyc * nxc]);
        let x = (x - col(&h.norm.predictor_mean, |v| v)) * col(&h.norm.predictor_std, |v| 1.0 / v);
        let x = x.reshape([b, p, nyc, nxc]);
        let s = scalars.map(|s| {
            let k = h.shapes.scalars;
            let m = f32_tensor(
                h.norm.scalar_mean.iter().map(|&v| v as f32).collect(),
                [1, k],
                &device,
            );
            let r = f32_tensor(
                h.norm
                    .scalar_std
                    .iter()
                    .map(|&v| (1.0 / v) as f32)
                    .collect(),
                [1, k],
                &device,
            );
            (s.cast(FloatDType::F32) - m) * r
        });
        let out = self.net.forward(x, s);
        let threshold = h.wet_threshold / h.norm.target_scale;
        let (mean, var) = head(h.loss, out, threshold);
        let nf = h.norm.target_offset.len();
        let offset = f32_tensor(h.norm.target_offset.clone(), [1, nf], &device);
        let scale = h.norm.target_scale;
        (mean * scale + offset, var.map(|v| v * (scale * scale)))
    }
}

impl DownscalingNorm {
    /// The header's static fields, normalised.
    fn statics_of(&self, h: &DownscalingHeader) -> Vec<f32> {
        let nf = h.shapes.fine_x.len() * h.shapes.fine_y.len();
        h.statics
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let c = i / nf.max(1);
                ((f64::from(v) - self.static_mean[c]) / self.static_std[c]) as f32
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

/// Where the samples come from (`[data]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DownscalingSource {
    /// Perfect-model samples from a rime twin.
    Twin(TwinData),
    /// The CORDEX-ML-Bench files.
    Cordex(super::cordex::CordexFiles),
}

/// `[data] kind = "twin"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwinData {
    /// The `rime simulate` trajectory file of the coarse model (relative to
    /// the configuration file's folder).
    pub file: PathBuf,
    /// The coarse fields that are predictors (default: all the model's).
    #[serde(default)]
    pub fields: Vec<String>,
    /// The observation operator whose fine field is the target, applied at
    /// all its candidate points (`{ kind = "orographic", quantity =
    /// "temperature" }`); its static fields are the static inputs.
    pub target: toml::Table,
    /// At most this many records (evenly thinned), all by default.
    #[serde(default)]
    pub max_records: Option<usize>,
    /// `[train, validation]` fractions of the records when the file has no
    /// `split`.
    #[serde(default = "default_split")]
    pub split: [f64; 2],
}

fn default_split() -> [f64; 2] {
    [0.8, 0.1]
}

impl DownscalingSource {
    /// Reads the samples; relative paths start at `base`.
    ///
    /// # Errors
    /// Unreadable or inconsistent data, naming the file and key.
    pub fn load(&self, base: &Path) -> Result<DownscalingData, String> {
        let data = match self {
            DownscalingSource::Twin(t) => t.load(base)?,
            DownscalingSource::Cordex(c) => super::cordex::read(c, base)?,
        };
        data.check()?;
        Ok(data)
    }

    /// The files, in words.
    pub fn describe(&self, base: &Path) -> String {
        match self {
            DownscalingSource::Twin(t) => format!(
                "{} through {}",
                base.join(&t.file).display(),
                toml::to_string(&t.target)
                    .unwrap_or_default()
                    .replace('\n', ", ")
            ),
            DownscalingSource::Cordex(c) => format!(
                "CORDEX-ML-Bench {} from {}",
                c.target,
                c.predictors
                    .iter()
                    .chain(&c.targets)
                    .map(|p| base.join(p).display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

impl TwinData {
    /// The predictors from the trajectory file, the targets from the
    /// operator applied to every (kept) record.
    ///
    /// # Errors
    /// An unreadable file, a model that cannot be built, an operator that
    /// does not fit or whose candidates are not a regular grid.
    pub fn load(&self, base: &Path) -> Result<DownscalingData, String> {
        use crate::core::Coordinates;
        use crate::obs::spec::{BuildContext, Part};
        let path = base.join(&self.file);
        let traj = super::data::Trajectories::read(&path, self.split)
            .map_err(|e| format!("key `data.file`: {e}"))?;
        let model_text = traj.model.clone().ok_or_else(|| {
            format!(
                "key `data.file`: {} does not record its model (rime_model); simulate it with `rime simulate`",
                path.display()
            )
        })?;
        let device = crate::device::cpu_f64();
        let model_config = crate::experiment::registry::ModelConfig::from_toml(&model_text)
            .map_err(|e| format!("{}: the recorded model: {e}", path.display()))?;
        let model = model_config
            .init(&device)
            .map_err(|e| format!("{}: the recorded model: {e}", path.display()))?;
        let g = model.geometry().clone();
        if g.size() != traj.n {
            return Err(format!(
                "{}: records of {} values, the recorded model has {}",
                path.display(),
                traj.n,
                g.size()
            ));
        }
        let names: Vec<String> = if self.fields.is_empty() {
            g.fields.iter().map(|f| f.name.clone()).collect()
        } else {
            self.fields.clone()
        };
        let mut fields = Vec::new();
        for name in &names {
            let (k, _) = g
                .field_named(name)
                .map_err(|e| format!("key `data.fields`: {e}"))?;
            fields.push(k);
        }
        let (cx, cy) = match &g.fields[fields[0]].coordinates {
            Coordinates::Axes { x, y } if !y.is_empty() => (x.clone(), y.clone()),
            _ => {
                return Err(format!(
                    "key `data.fields`: `{}` is not a 2-D gridded field",
                    names[0]
                ));
            }
        };
        for (&k, name) in fields.iter().zip(&names) {
            if g.fields[k].coordinates != g.fields[fields[0]].coordinates {
                return Err(format!(
                    "key `data.fields`: `{name}` is not on the grid of `{}`",
                    names[0]
                ));
            }
        }
        let part = Part::<dyn crate::obs::spec::OperatorSpec>::from_table(
            self.target.clone(),
            crate::obs::OPERATORS,
            "operator",
        )
        .map_err(|(k, r)| format!("key `data.target.{k}`: {r}"))?;
        part.spec()
            .check()
            .map_err(|(k, r)| format!("key `data.target.{k}`: {r}"))?;
        let ctx = BuildContext {
            geometry: &g,
            device: &device,
            seed: 0,
            stream_prefix: String::new(),
            base,
            fields: fields.clone(),
            named_fields: true,
        };
        let builder = part
            .spec()
            .init(&ctx)
            .map_err(|(k, r)| format!("key `data.target.{k}`: {r}"))?;
        let candidates = builder.candidates();
        let (fx, fy) = regular_grid(candidates.iter().map(|c| c.location)).ok_or_else(|| {
            "key `data.target`: the operator's candidate points are not a regular grid in row-major order; a downscaling target needs one".to_string()
        })?;
        let statics = builder.static_fields();
        let all: Vec<usize> = (0..candidates.len()).collect();
        let op = builder.at_candidates(&all, "target");
        // The records kept, evenly thinned.
        // Samples run by run, each in time order (so that series scores
        // such as consecutive dry days see one trajectory at a time), thinned
        // evenly.
        let total = traj.records() * traj.runs;
        let keep: Vec<usize> = match self.max_records {
            Some(m) if m < total => (0..m).map(|i| i * total / m).collect(),
            _ => (0..total).collect(),
        };
        let (p, nc, nf) = (fields.len(), cx.len() * cy.len(), fx.len() * fy.len());
        let mut predictors = Vec::with_capacity(keep.len() * p * nc);
        let mut targets = Vec::with_capacity(keep.len() * nf);
        let mut time = Vec::new();
        let mut split = Vec::new();
        let chunk = 16;
        for group in keep.chunks(chunk) {
            let mut states = Vec::with_capacity(group.len() * traj.n);
            for &r in group {
                let (run, t) = (r / traj.records(), r % traj.records());
                let x = traj.state(t, run);
                states.extend_from_slice(x);
                for &k in &fields {
                    let o = g.offset(k);
                    predictors.extend(x[o..o + nc].iter().map(|&v| v as f32));
                }
                time.push(traj.times[t]);
                split.push(traj.split[t]);
            }
            let xs = crate::device::tensor_from_rows(&states, group.len(), traj.n, &device);
            let y = to_vec(op.apply(xs, 0.0));
            targets.extend(y.iter().map(|&v| v as f32));
        }
        let target_name = match self.target.get("quantity") {
            Some(toml::Value::String(q)) => q.clone(),
            _ => part.kind().to_string(),
        };
        let target_units = match target_name.as_str() {
            "temperature" => "K",
            "precipitation" => "mm h-1",
            _ => "1",
        }
        .to_string();
        Ok(DownscalingData {
            predictor_names: names,
            coarse_shape: [cy.len(), cx.len()],
            coarse_x: cx,
            coarse_y: cy,
            predictors,
            scalar_names: Vec::new(),
            scalars: Vec::new(),
            static_names: statics.iter().map(|s| s.name.clone()).collect(),
            fine_shape: [fy.len(), fx.len()],
            fine_x: fx,
            fine_y: fy,
            statics: statics
                .iter()
                .flat_map(|s| s.values.iter().map(|&v| v as f32))
                .collect(),
            target_name,
            target_units,
            targets,
            time,
            split,
        })
    }
}

/// The axes of points laid out as a regular grid in row-major order (`x`
/// fastest), or `None`.
pub fn regular_grid(
    points: impl Iterator<Item = crate::core::Location>,
) -> Option<(Vec<f64>, Vec<f64>)> {
    let points: Vec<_> = points.collect();
    let first_y = points.first()?[1];
    let nx = points.iter().take_while(|p| p[1] == first_y).count();
    if nx < 2 || points.len() % nx != 0 {
        return None;
    }
    let ny = points.len() / nx;
    let x: Vec<f64> = points[..nx].iter().map(|p| p[0]).collect();
    let y: Vec<f64> = (0..ny).map(|j| points[j * nx][1]).collect();
    let ok = points
        .iter()
        .enumerate()
        .all(|(k, p)| p[0] == x[k % nx] && p[1] == y[k / nx]);
    let ascending = |a: &[f64]| a.windows(2).all(|w| w[1] > w[0]);
    (ok && ny >= 2 && ascending(&x) && ascending(&y)).then_some((x, y))
}

/// The `[downscaling]` table of a training file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownscalingTarget {
    /// The loss: `mse`, `mae`, `asymmetric` (Doury et al. 2024) or
    /// `bernoulli_gamma`.
    #[serde(default)]
    pub loss: Loss,
    /// Wet threshold, in target units (amounts above it are wet).
    #[serde(default)]
    pub wet_threshold: f64,
}

/// A downscaling training file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownscalingConfig {
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// The target's loss.
    pub downscaling: DownscalingTarget,
    /// The samples.
    pub data: DownscalingSource,
    /// The network.
    #[serde(default)]
    pub network: DownscalingArchitecture,
    /// The optimisation (as for emulators; `rollout` must be 1).
    pub training: super::train::TrainingSettings,
}

/// Whether a training or evaluation file is a downscaling one (it has a
/// `[downscaling]` table).
pub fn is_downscaling_file(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .is_some_and(|t| t.contains_key("downscaling"))
}

impl DownscalingConfig {
    /// Reads and checks a training file; errors name the file and key.
    ///
    /// # Errors
    /// Unreadable, malformed or out-of-range values.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let config: Self = super::read_toml(path)?;
        let bad = |key: &str, reason: String| format!("{}: key `{key}`: {reason}", path.display());
        config
            .network
            .check()
            .map_err(|(k, r)| bad(&format!("network.{k}"), r))?;
        let t = &config.training;
        t.check()
            .map_err(|(k, r)| bad(&format!("training.{k}"), r))?;
        if t.rollout != 1 {
            return Err(bad(
                "training.rollout",
                format!(
                    "a downscaling emulator maps fields, not steps: rollout must be 1, got {}",
                    t.rollout
                ),
            ));
        }
        if t.max_batches == Some(0) {
            return Err(bad("training.max_batches", "must be at least 1".into()));
        }
        let w = config.downscaling.wet_threshold;
        if !(w.is_finite() && w >= 0.0) {
            return Err(bad(
                "downscaling.wet_threshold",
                format!("must be finite and ≥ 0, got {w}"),
            ));
        }
        if let DownscalingSource::Twin(d) = &config.data {
            let [a, b] = d.split;
            if !(a > 0.0 && b > 0.0 && a + b <= 1.0) {
                return Err(bad(
                    "data.split",
                    format!(
                        "[train, validation] fractions must be positive and sum to at most 1, got [{a}, {b}]"
                    ),
                ));
            }
            if d.max_records.is_some_and(|m| m < 4) {
                return Err(bad("data.max_records", "must be at least 4".into()));
            }
        }
        Ok(config)
    }
}

// ---------------------------------------------------------------------------
// Training
// ---------------------------------------------------------------------------

/// The device networks run on: configured for f32 where the process can
/// still choose (a command), else as it is (a process whose device already
/// runs f64: the network computes in f32 all the same).
///
/// # Errors
/// A device that cannot be built.
pub fn network_device(choice: DeviceChoice) -> Result<Device, DeviceError> {
    match crate::device::select(choice, Some(Precision::F32)) {
        Ok(d) => Ok(d),
        Err(DeviceError::Precision { .. }) => crate::device::select(choice, None),
        Err(e) => Err(e),
    }
}

/// The files a downscaling training writes.
pub const DOWNSCALING_TRAIN_FILES: [&str; 3] = ["downscaling.ckpt", "training.csv", "training.png"];

/// What a training did.
#[derive(Clone, Debug)]
pub struct DownscalingReport {
    /// The checkpoint.
    pub checkpoint: PathBuf,
    /// The header written.
    pub header: DownscalingHeader,
    /// Training samples per second.
    pub samples_per_second: f64,
}

/// Trains the emulator of `config` (read from `file`) into `out`.
///
/// # Errors
/// Unreadable data, too few samples, a diverging loss, an unwritable file.
pub fn train(
    config: &DownscalingConfig,
    file: &Path,
    out: &Path,
    progress: bool,
    overwrite: bool,
) -> anyhow::Result<DownscalingReport> {
    let mut folder = crate::io::folder::OutputFolder::claim(out, "rime train", overwrite)?;
    folder.prepare(&DOWNSCALING_TRAIN_FILES.map(String::from))?;
    let base = file.parent().unwrap_or(Path::new("."));
    let data = config
        .data
        .load(base)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    train_on(
        config,
        &data,
        &config.data.describe(base),
        file,
        out,
        progress,
    )
}

/// Trains on samples in memory (what [`train`] does after loading).
///
/// # Errors
/// Too few samples, a diverging loss, an unwritable file.
pub fn train_on(
    config: &DownscalingConfig,
    data: &DownscalingData,
    described: &str,
    file: &Path,
    out: &Path,
    progress: bool,
) -> anyhow::Result<DownscalingReport> {
    let t = &config.training;
    let loss_kind = config.downscaling.loss;
    let threshold = config.downscaling.wet_threshold;
    let train_samples = data.samples(0);
    let valid_samples = data.samples(1);
    if train_samples.is_empty() {
        anyhow::bail!("{}: the data have no training samples", file.display());
    }
    if valid_samples.len() < 2 {
        anyhow::bail!(
            "{}: the validation split has {} sample(s); at least 2 are needed to choose the best epoch",
            file.display(),
            valid_samples.len()
        );
    }
    let device = network_device(t.device)?;
    let ad = device.clone().autodiff();
    let norm = DownscalingNorm::fit(data, &train_samples, loss_kind);
    let shapes = DownscalingShapes {
        predictors: data.predictor_names.len(),
        scalars: data.scalar_names.len(),
        statics: data.static_names.len(),
        outputs: loss_kind.outputs(),
        coarse_x: data.coarse_x.clone(),
        coarse_y: data.coarse_y.clone(),
        fine_x: data.fine_x.clone(),
        fine_y: data.fine_y.clone(),
    };
    let prepared = Prepared::new(data, &norm, loss_kind, threshold, &train_samples);
    let thr_n = threshold / norm.target_scale;
    let mut net = DownscalingNet::new(&config.network, &shapes, norm.statics(data), t.seed, &ad);
    let mut header = DownscalingHeader {
        format: 1,
        rime_version: env!("CARGO_PKG_VERSION").into(),
        architecture: config.network.clone(),
        shapes,
        loss: loss_kind,
        wet_threshold: threshold,
        seed: t.seed,
        predictor_names: data.predictor_names.clone(),
        scalar_names: data.scalar_names.clone(),
        static_names: data.static_names.clone(),
        statics: data.statics.clone(),
        norm,
        target_name: data.target_name.clone(),
        target_units: data.target_units.clone(),
        error_std: Vec::new(),
        data: described.to_string(),
        config: file.display().to_string(),
        history: Vec::new(),
        best_epoch: 0,
        checksum: None,
    };
    let mut optimizer: ModuleOptimizer = AdamConfig::new().init();
    let batches_per_epoch = train_samples
        .len()
        .div_ceil(t.batch_size)
        .min(t.max_batches.unwrap_or(usize::MAX));
    let mut bar = Progress::new(progress, t.epochs * batches_per_epoch, "batches");
    let started = std::time::Instant::now();
    let mut trained = 0usize;
    let mut best = f64::INFINITY;
    let mut best_net: Option<DownscalingNet> = None;
    let checkpoint = out.join("downscaling.ckpt");
    for epoch in 1..=t.epochs {
        let epoch_start = std::time::Instant::now();
        let lr = config.training.learning_rate_at(epoch);
        let mut order = train_samples.clone();
        order.shuffle(&mut crate::rng::stream(t.seed, &format!("epoch/{epoch}")));
        let mut total = 0.0;
        for (b, chunk) in order
            .chunks(t.batch_size)
            .take(batches_per_epoch)
            .enumerate()
        {
            let batch = prepared.batch(chunk, &ad);
            let out_t = net.forward(batch.predictors.clone(), batch.scalars.clone());
            let l = loss(loss_kind, out_t, &batch, thr_n);
            let grads = l.backward();
            let value = to_vec(l)[0];
            if !value.is_finite() {
                anyhow::bail!(
                    "{}: training diverged at epoch {epoch}, batch {b}: the loss is {value}; lower training.learning_rate",
                    file.display()
                );
            }
            total += value;
            let grads = GradientsParams::from_grads(grads, &net);
            net = optimizer.step(lr, net, grads);
            trained += chunk.len();
            bar.set(
                (epoch - 1) * batches_per_epoch + b + 1,
                &format!("epoch {epoch}, loss {value:.3e}"),
            );
        }
        let plain = net.valid();
        let (validation_loss, validation_rmse, _) =
            validate(&plain, &prepared, &header, &valid_samples, &device);
        let record = super::emulator::EpochRecord {
            epoch,
            train_loss: total / batches_per_epoch as f64,
            validation_loss,
            validation_rmse,
            learning_rate: lr,
            seconds: epoch_start.elapsed().as_secs_f64(),
        };
        bar.println(&format!(
            "epoch {epoch}: train loss {:.4e}, validation loss {:.4e}, validation RMSE {:.4e} {}",
            record.train_loss, validation_loss, validation_rmse, header.target_units
        ));
        header.history.push(record);
        if validation_loss < best {
            best = validation_loss;
            header.best_epoch = epoch;
            best_net = Some(plain);
        }
        write_curve(&header.history, out)?;
        if t.patience > 0 && epoch - header.best_epoch >= t.patience {
            break;
        }
    }
    bar.finish();
    let net = best_net.ok_or_else(|| {
        anyhow::anyhow!("{}: no epoch gave a finite validation loss", file.display())
    })?;
    let (_, _, error_std) = validate(&net, &prepared, &header, &valid_samples, &device);
    header.error_std = error_std;
    let emulator = Downscaler { header, net };
    emulator.save(&checkpoint).map_err(anyhow::Error::msg)?;
    plot_curve(&emulator.header.history, out)?;
    Ok(DownscalingReport {
        checkpoint,
        header: emulator.header,
        samples_per_second: trained as f64 / started.elapsed().as_secs_f64().max(1e-9),
    })
}

/// Validation loss, RMSE (target units, valid points) and the operator's
/// error standard deviation per fine point.
fn validate(
    net: &DownscalingNet,
    prepared: &Prepared,
    header: &DownscalingHeader,
    samples: &[usize],
    device: &Device,
) -> (f64, f64, Vec<f32>) {
    let nf = prepared.nf;
    let scale = header.norm.target_scale;
    let thr_n = header.wet_threshold / scale;
    let (mut loss_sum, mut weight) = (0.0, 0.0);
    let mut sq = vec![0.0f64; nf];
    let mut var = vec![0.0f64; nf];
    let mut count = vec![0usize; nf];
    for chunk in samples.chunks(8) {
        let batch = prepared.batch(chunk, device);
        let out = net.forward(batch.predictors.clone(), batch.scalars.clone());
        let valid = to_vec(batch.mask.clone().sum())[0];
        loss_sum += to_vec(loss(header.loss, out.clone(), &batch, thr_n))[0] * valid;
        weight += valid;
        let (mean, v) = head(header.loss, out, thr_n);
        let mean = to_vec(mean);
        let v = v.map(to_vec);
        for (r, &t) in chunk.iter().enumerate() {
            for i in 0..nf {
                let y = prepared.raw[t * nf + i];
                if !y.is_finite() {
                    continue;
                }
                let e = mean[r * nf + i] * scale + f64::from(header.norm.target_offset[i])
                    - f64::from(y);
                sq[i] += e * e;
                count[i] += 1;
                if let Some(v) = &v {
                    var[i] += v[r * nf + i] * scale * scale;
                }
            }
        }
    }
    let total: f64 = sq.iter().sum();
    let n: usize = count.iter().sum();
    let error_std = (0..nf)
        .map(|i| {
            let c = count[i].max(1) as f64;
            match header.loss {
                Loss::BernoulliGamma => (var[i] / c).sqrt() as f32,
                _ => (sq[i] / c).sqrt() as f32,
            }
        })
        .collect();
    (
        loss_sum / weight.max(1.0),
        (total / n.max(1) as f64).sqrt(),
        error_std,
    )
}

fn write_curve(history: &[super::emulator::EpochRecord], out: &Path) -> anyhow::Result<()> {
    let csv = super::train::curve_csv(history);
    crate::io::write_atomic(&out.join("training.csv"), csv.as_bytes())?;
    Ok(())
}

fn plot_curve(history: &[super::emulator::EpochRecord], out: &Path) -> anyhow::Result<()> {
    super::train::draw_curve(
        history,
        "downscaling emulator training",
        false,
        &out.join("training.png"),
    )
}

// ---------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------

/// Which samples an evaluation scores.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScoreSplit {
    /// The test split (default).
    #[default]
    Test,
    /// The validation split.
    Validation,
    /// Every sample.
    All,
}

/// `[downscaling]` of an evaluation file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownscalingEvaluate {
    /// The checkpoint, relative to the evaluation file's folder.
    pub checkpoint: PathBuf,
    /// The samples scored.
    #[serde(default)]
    pub split: ScoreSplit,
    /// Score the precipitation indices (Rx1day, SDII, CDD, CWD, dry-day
    /// frequency; wet day ≥ 1 mm/day); default: when the target is a
    /// precipitation (`pr`, `precipitation`). A target in mm h-1 is
    /// converted to mm/day for them.
    #[serde(default)]
    pub precipitation: Option<bool>,
    /// Grid spacing for the spectra, in the grid's units (default: the
    /// fine x spacing).
    #[serde(default)]
    pub dx: Option<f64>,
}

/// A downscaling evaluation file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownscalingEvaluateConfig {
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// What is scored.
    pub downscaling: DownscalingEvaluate,
    /// The samples (as in training).
    pub data: DownscalingSource,
}

impl DownscalingEvaluateConfig {
    /// Reads an evaluation file.
    ///
    /// # Errors
    /// Unreadable or malformed, naming the file and key.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let config: Self = super::read_toml(path)?;
        if let Some(dx) = config.downscaling.dx
            && !(dx.is_finite() && dx > 0.0)
        {
            return Err(format!(
                "{}: key `downscaling.dx`: must be finite and positive, got {dx}",
                path.display()
            ));
        }
        Ok(config)
    }
}

/// The files an evaluation writes.
pub const DOWNSCALING_EVALUATION_FILES: [&str; 9] = [
    "scores.json",
    "evaluation.nc",
    "spectra.csv",
    "spectra.png",
    "map_reference_mean.png",
    "map_emulated_mean.png",
    "map_bias.png",
    "map_rmse.png",
    "map_std_ratio.png",
];

/// What an evaluation found.
pub struct DownscalingEvaluation {
    /// The scores.
    pub scores: crate::metrics::downscaling::DownscalingScores,
    /// The target, its units, the samples scored.
    pub target: String,
    /// Units.
    pub units: String,
    /// Samples scored.
    pub samples: usize,
    /// The checkpoint.
    pub checkpoint: PathBuf,
    /// Whether a rate per hour was scaled to daily amounts for the indices.
    pub per_hour: bool,
    /// The training's seed and best epoch.
    pub trained: (u64, usize),
    /// Files written.
    pub files: Vec<PathBuf>,
}

/// The emulated fine fields of `samples`, `[samples, nf]` in target units
/// (with the network on `device`).
pub fn emulate(
    ds: &Downscaler,
    data: &DownscalingData,
    samples: &[usize],
    device: &Device,
) -> Vec<f64> {
    let (p, k, nc) = (
        data.predictor_names.len(),
        data.scalar_names.len(),
        data.coarse_len(),
    );
    let mut out = Vec::with_capacity(samples.len() * data.fine_len());
    for chunk in samples.chunks(8) {
        let b = chunk.len();
        let mut x = Vec::with_capacity(b * p * nc);
        let mut s = Vec::with_capacity(b * k);
        for &t in chunk {
            x.extend_from_slice(&data.predictors[t * p * nc..(t + 1) * p * nc]);
            s.extend_from_slice(&data.scalars[t * k..(t + 1) * k]);
        }
        let x = f32_tensor(x, [b, p * nc], device);
        let s = (k > 0).then(|| f32_tensor(s, [b, k], device));
        let (mean, _) = ds.predict(x, s);
        out.extend(to_vec(mean));
    }
    out
}

/// Scores the checkpoint of `config` (read from `file`) on its data into
/// `out`: CORDEX-ML-Bench scores (`scores.json`), maps and spectra.
///
/// # Errors
/// Unreadable data or checkpoint, a checkpoint trained for other data,
/// masked targets, an unwritable file.
pub fn evaluate(
    config: &DownscalingEvaluateConfig,
    file: &Path,
    out: &Path,
    overwrite: bool,
) -> anyhow::Result<DownscalingEvaluation> {
    use crate::metrics::downscaling as m;
    let mut folder = crate::io::folder::OutputFolder::claim(out, "rime evaluate", overwrite)?;
    folder.prepare(&DOWNSCALING_EVALUATION_FILES.map(String::from))?;
    let base = file.parent().unwrap_or(Path::new("."));
    let bad = |key: &str, e: String| anyhow::anyhow!("{}: key `{key}`: {e}", file.display());
    let checkpoint = base.join(&config.downscaling.checkpoint);
    if !checkpoint.is_file() {
        return Err(bad(
            "downscaling.checkpoint",
            format!("{} is not a file", checkpoint.display()),
        ));
    }
    // The data first: a twin's exact chain configures the CPU device for
    // f64 before the network picks its device.
    let data = config
        .data
        .load(base)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let device = network_device(DeviceChoice::Cpu)?;
    let ds =
        Downscaler::load(&checkpoint, &device).map_err(|e| bad("downscaling.checkpoint", e))?;
    let h = &ds.header;
    if h.predictor_names != data.predictor_names
        || h.scalar_names != data.scalar_names
        || h.shapes.coarse_x != data.coarse_x
        || h.shapes.coarse_y != data.coarse_y
        || h.shapes.fine_x != data.fine_x
        || h.shapes.fine_y != data.fine_y
        || h.target_name != data.target_name
    {
        return Err(bad(
            "downscaling.checkpoint",
            format!(
                "{} was trained for {} from {:?} (+ scalars {:?}) on a {} x {} -> {} x {} grid; the data give {} from {:?} (+ {:?}) on {:?} -> {:?}",
                checkpoint.display(),
                h.target_name,
                h.predictor_names,
                h.scalar_names,
                h.shapes.coarse_y.len(),
                h.shapes.coarse_x.len(),
                h.shapes.fine_y.len(),
                h.shapes.fine_x.len(),
                data.target_name,
                data.predictor_names,
                data.scalar_names,
                data.coarse_shape,
                data.fine_shape
            ),
        ));
    }
    let samples = match config.downscaling.split {
        ScoreSplit::Test => data.samples(2),
        ScoreSplit::Validation => data.samples(1),
        ScoreSplit::All => (0..data.times()).collect(),
    };
    if samples.len() < 2 {
        return Err(bad(
            "downscaling.split",
            format!(
                "{} sample(s) in the split; the scores need at least 2",
                samples.len()
            ),
        ));
    }
    let nf = data.fine_len();
    let reference: Vec<f64> = samples
        .iter()
        .flat_map(|&t| {
            data.targets[t * nf..(t + 1) * nf]
                .iter()
                .map(|&v| f64::from(v))
        })
        .collect();
    if reference.iter().any(|v| !v.is_finite()) {
        return Err(bad(
            "data",
            "the targets have missing (masked) points; the CORDEX-ML-Bench scores here need full fields (spectra are on the whole grid)".into(),
        ));
    }
    let emulated = emulate(&ds, &data, &samples, &device);
    let precipitation = config
        .downscaling
        .precipitation
        .unwrap_or_else(|| matches!(data.target_name.as_str(), "pr" | "precipitation"));
    // The indices are defined on daily amounts in mm/day.
    let per_hour = matches!(data.target_units.as_str(), "mm h-1" | "mm/h");
    let to_daily = if precipitation && per_hour { 24.0 } else { 1.0 };
    let (em, re): (Vec<f64>, Vec<f64>) = (
        emulated.iter().map(|v| v * to_daily).collect(),
        reference.iter().map(|v| v * to_daily).collect(),
    );
    let [ny, nx] = data.fine_shape;
    let dx = config
        .downscaling
        .dx
        .unwrap_or(data.fine_x[1] - data.fine_x[0]);
    let scores = m::scores(&em, &re, samples.len(), ny, nx, dx, precipitation)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let units = if to_daily != 1.0 {
        "mm/day".to_string()
    } else {
        data.target_units.clone()
    };
    let files = write_evaluation(&scores, &data, &em, &re, samples.len(), &units, out)?;
    Ok(DownscalingEvaluation {
        scores,
        target: data.target_name.clone(),
        units,
        samples: samples.len(),
        checkpoint,
        per_hour: to_daily != 1.0,
        trained: (ds.header.seed, ds.header.best_epoch),
        files,
    })
}

fn write_evaluation(
    scores: &crate::metrics::downscaling::DownscalingScores,
    data: &DownscalingData,
    em: &[f64],
    re: &[f64],
    times: usize,
    units: &str,
    out: &Path,
) -> anyhow::Result<Vec<PathBuf>> {
    use crate::core::{MapField, MapScale};
    let nf = data.fine_len();
    let mean_over_time = |s: &[f64]| -> Vec<f64> {
        let mut m = vec![0.0; nf];
        for row in s.chunks_exact(nf) {
            for (a, v) in m.iter_mut().zip(row) {
                *a += v / times as f64;
            }
        }
        m
    };
    let mut files = Vec::new();
    // scores.json: the scalar scores.
    let rows: Vec<serde_json::Value> = scores
        .rows()
        .iter()
        .map(|(name, value, meaning)| {
            serde_json::json!({"score": name, "value": if value.is_finite() { serde_json::json!(value) } else { serde_json::Value::Null }, "meaning": meaning})
        })
        .collect();
    let json = serde_json::json!({
        "target": data.target_name,
        "units": units,
        "samples": times,
        "scores": rows,
    });
    let path = out.join("scores.json");
    crate::io::write_atomic(&path, serde_json::to_string_pretty(&json)?.as_bytes())?;
    files.push(path);
    // Maps.
    let (ref_mean, em_mean) = (mean_over_time(re), mean_over_time(em));
    let map = |name: &str, long: &str, units: &str, values: Vec<f64>, scale: MapScale| MapField {
        name: name.into(),
        long_name: long.into(),
        units: units.into(),
        x: data.fine_x.clone(),
        y: data.fine_y.clone(),
        values,
        mask: None,
        scale,
    };
    let maps = [
        map(
            "map_reference_mean",
            &format!("reference {} (time mean)", data.target_name),
            units,
            ref_mean.clone(),
            MapScale::Linear,
        ),
        map(
            "map_emulated_mean",
            &format!("emulated {} (time mean)", data.target_name),
            units,
            em_mean.clone(),
            MapScale::Linear,
        ),
        map(
            "map_bias",
            "bias (emulated - reference)",
            units,
            scores.bias_per_point.map.clone(),
            MapScale::Diverging,
        ),
        map(
            "map_rmse",
            "RMSE over time",
            units,
            scores.rmse_per_point.map.clone(),
            MapScale::Linear,
        ),
        map(
            "map_std_ratio",
            "ratio of standard deviations (emulated / reference)",
            "1",
            scores.std_ratio.map.clone(),
            MapScale::Linear,
        ),
    ];
    let km = data.fine_x[data.fine_x.len() - 1] - data.fine_x[0] > 1e4;
    for f in &maps {
        let path = out.join(format!("{}.png", f.name));
        crate::plot::map(f, &f.long_name, km, &path)?;
        files.push(path);
    }
    // Spectra.
    let mut csv = String::from("wavenumber,power,series\n");
    for (name, s) in [
        ("reference", &scores.spectrum_reference),
        ("emulated", &scores.spectrum_emulated),
    ] {
        for (k, p) in s.wavenumbers.iter().zip(&s.power) {
            csv += &format!("{k},{p},{name}\n");
        }
    }
    let path = out.join("spectra.csv");
    crate::io::write_atomic(&path, csv.as_bytes())?;
    files.push(path);
    let curve = |name: &str, s: &crate::metrics::downscaling::RadialSpectrum| crate::plot::Curve {
        name: name.into(),
        points: s
            .wavenumbers
            .iter()
            .zip(&s.power)
            .filter(|(k, p)| **k > 0.0 && **p > 0.0)
            .map(|(k, p)| (*k, *p))
            .collect(),
        exponent: None,
    };
    let spec = crate::plot::PlotSpec {
        x: "wavenumber (cycles per grid unit)".into(),
        y: "power".into(),
        group: None,
        log: true,
        log_y: false,
        title: format!(
            "{}: radially averaged power spectra (LSD {:.2} dB)",
            data.target_name, scores.log_spectral_distance
        ),
    };
    let path = out.join("spectra.png");
    crate::plot::draw(
        &[
            curve("reference", &scores.spectrum_reference),
            curve("emulated", &scores.spectrum_emulated),
        ],
        &spec,
        &path,
    )?;
    files.push(path);
    // evaluation.nc: the maps, CF.
    let [ny, nx] = data.fine_shape;
    let mut ds = crate::io::Dataset::new();
    ds.attr("Conventions", "CF-1.8")
        .attr("title", "rime downscaling evaluation")
        .attr("target", data.target_name.as_str())
        .attr("samples", times as i32)
        .dim("y", ny)
        .dim("x", nx)
        .var_f64(
            "x",
            &["x"],
            data.fine_x.clone(),
            &[("long_name", "x coordinate")],
        )
        .var_f64(
            "y",
            &["y"],
            data.fine_y.clone(),
            &[("long_name", "y coordinate")],
        );
    for f in &maps {
        ds.var_f64(
            f.name.trim_start_matches("map_"),
            &["y", "x"],
            f.values.clone(),
            &[
                ("long_name", f.long_name.as_str()),
                ("units", f.units.as_str()),
            ],
        );
    }
    let path = out.join("evaluation.nc");
    crate::io::write_netcdf(&path, &ds, crate::io::NetcdfFormat::Classic)?;
    files.push(path);
    Ok(files)
}

/// The evaluation as a Markdown table.
pub fn evaluation_table(ev: &DownscalingEvaluation) -> String {
    let mut s = format!(
        "Downscaling emulator `{}`: {} ({}), {} samples.\n\n| score | value | meaning |\n|---|---|---|\n",
        ev.checkpoint.display(),
        ev.target,
        ev.units,
        ev.samples
    );
    for (name, value, meaning) in ev.scores.rows() {
        s += &format!("| {name} | {value:.4} | {meaning} |\n");
    }
    s += &format!(
        "\nOne emulator, trained once (seed {}, best epoch {}): no interval over training seeds; the scores are over these samples, which are correlated in time.\n",
        ev.trained.0, ev.trained.1
    );
    s += "Caveats: the std ratio is the spatial mean of per-point ratios, so points whose reference hardly varies (a wall where the stream function is fixed, a rarely wet point) dominate it (see map_std_ratio.png); the LSD weighs every radial bin equally, up to the partly filled corner bins beyond k = min(nx, ny) / 2, without a window, so the finest scales dominate it (see spectra.png).\n";
    if ev.per_hour {
        s += "The target is a rate in mm h-1 at records that are not days: the precipitation indices use the rate x 24 at each record as if it were a daily amount, with the 1 mm/day wet threshold; read them as relative scores, not climate indices.\n";
    }
    s
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::device::{cpu_f64, cpu_f64_autodiff};

    #[test]
    fn gamma_functions_match_closed_forms() {
        for (x, want) in [
            (1.0, 0.0),
            (5.0, 24f64.ln()),
            (0.5, std::f64::consts::PI.sqrt().ln()),
        ] {
            assert!((ln_gamma(x) - want).abs() < 1e-12, "lnΓ({x})");
        }
        for x in [0.01, 0.3, 1.0, 2.5, 7.0, 30.0] {
            let p1 = 1.0 - (-x as f64).exp();
            let p3 = 1.0 - (-x as f64).exp() * (1.0 + x + x * x / 2.0);
            assert!((gamma_p(1.0, x) - p1).abs() < 1e-13, "P(1, {x})");
            assert!((gamma_p(3.0, x) - p3).abs() < 1e-13, "P(3, {x})");
        }
        assert_eq!(gamma_p(2.0, 0.0), 0.0);
        // The tensor version (f64 device) against the host one.
        let device = cpu_f64();
        let a = [0.05, 0.4, 1.0, 3.3, 12.0];
        let t = crate::device::tensor_from_rows(&a, 1, a.len(), &device);
        let got = to_vec(ln_gamma_tensor(t));
        for (g, &x) in got.iter().zip(&a) {
            assert!((g - ln_gamma(x)).abs() < 1e-8, "lnΓ tensor at {x}: {g}");
        }
    }

    #[test]
    fn interpolation_taps_reproduce_linear_functions() {
        let from = [0.0, 1.0, 2.5, 4.0];
        let to = [-1.0, 0.0, 0.3, 1.0, 2.0, 3.9, 4.0, 5.0];
        let f = |x: f64| 3.0 * x - 1.0;
        for (&v, &(i, j, w)) in to.iter().zip(&interpolation_taps(&from, &to)) {
            let got = f(from[i]) * (1.0 - f64::from(w)) + f(from[j]) * f64::from(w);
            let want = f(v.clamp(0.0, 4.0));
            assert!((got - want).abs() < 1e-6, "at {v}: {got} vs {want}");
        }
    }

    /// The losses and the Bernoulli-gamma head against hand computations on
    /// two points.
    #[test]
    fn losses_and_heads_match_hand_computations() {
        let device = cpu_f64();
        let t = |v: Vec<f32>, n: usize| f32_tensor(v, [1, n], &device);
        let out = f32_tensor(vec![1.0, -0.5], [1, 1, 1, 2], &device);
        let batch = Batch {
            predictors: f32_tensor(vec![0.0], [1, 1, 1, 1], &device),
            scalars: None,
            targets: t(vec![0.0, 1.5], 2),
            mask: t(vec![1.0, 1.0], 2),
            aux: Some(t(vec![0.25, 0.5], 2)),
        };
        let v = |l: Loss| to_vec(loss(l, out.clone(), &batch, 0.0))[0];
        assert!((v(Loss::Mse) - (1.0 + 4.0) / 2.0).abs() < 1e-6);
        assert!((v(Loss::Mae) - (1.0 + 2.0) / 2.0).abs() < 1e-6);
        // MAE + mean(w max(0, y - yhat)): under-prediction only at point 2.
        assert!((v(Loss::Asymmetric) - (1.5 + 0.5 * 2.0 / 2.0)).abs() < 1e-6);
        // A masked point does not count.
        let masked = Batch {
            mask: t(vec![1.0, 0.0], 2),
            ..batch
        };
        assert!((to_vec(loss(Loss::Mse, out, &masked, 0.0))[0] - 1.0).abs() < 1e-6);

        // Bernoulli-gamma: logits 0 (p = 1/2), softplus^-1 chosen for a, s.
        let inv_softplus = |y: f64| (y.exp() - 1.0).ln();
        let (a, s, thr) = (2.0 - 1e-3, 0.5 - 1e-3, 0.1);
        let raw = vec![
            0.0,
            0.0,
            inv_softplus(a) as f32,
            inv_softplus(a) as f32,
            inv_softplus(s) as f32,
            inv_softplus(s) as f32,
        ];
        let out = f32_tensor(raw, [1, 3, 1, 2], &device);
        let (a, s) = (a + 1e-3, s + 1e-3);
        let y = [0.0, 1.1];
        let batch = Batch {
            predictors: f32_tensor(vec![0.0], [1, 1, 1, 1], &device),
            scalars: None,
            targets: t(y.iter().map(|&v| v as f32).collect(), 2),
            mask: t(vec![1.0, 1.0], 2),
            aux: Some(t(vec![0.0, 1.0], 2)),
        };
        let e: f64 = y[1] - thr;
        let nll_dry = -(0.5f64).ln();
        let nll_wet = -((0.5f64).ln() + (a - 1.0) * e.ln() - e / s - a * s.ln() - ln_gamma(a));
        let got = to_vec(loss(Loss::BernoulliGamma, out.clone(), &batch, thr))[0];
        assert!(((nll_dry + nll_wet) / 2.0 - got).abs() < 1e-4, "{got}");
        let (mean, var) = head(Loss::BernoulliGamma, out, thr);
        let (mean, var) = (to_vec(mean), to_vec(var.unwrap()));
        let m = 0.5 * (thr + a * s);
        let second = 0.5 * ((thr + a * s).powi(2) + a * s * s);
        assert!((mean[0] - m).abs() < 1e-5 && (var[0] - (second - m * m)).abs() < 1e-5);
    }

    /// Synthetic samples on a 9 x 9 coarse grid and a 17 x 17 fine one:
    /// the target is a smooth function of the interpolated predictor and
    /// the static field, `y = 2 x + 0.5 x^2 + s`.
    pub(crate) fn synthetic(times: usize) -> DownscalingData {
        let cx: Vec<f64> = (0..9).map(|i| i as f64).collect();
        let fx: Vec<f64> = (0..17).map(|i| i as f64 * 0.5).collect();
        let statics: Vec<f32> = (0..17 * 17)
            .map(|k| ((k % 17) as f32 * 0.7).sin() * ((k / 17) as f32 * 0.4).cos())
            .collect();
        let mut predictors = Vec::new();
        let mut targets = Vec::new();
        let taps = interpolation_taps(&cx, &fx);
        for t in 0..times {
            let (a, b, c) = (
                t as f64 * 0.37,
                (t as f64 * 0.21).cos(),
                (t as f64 * 0.13).sin(),
            );
            let field: Vec<f64> = (0..81)
                .map(|k| b * ((k % 9) as f64 * 0.5 + a).sin() + c * ((k / 9) as f64 * 0.3).cos())
                .collect();
            predictors.extend(field.iter().map(|&v| v as f32));
            for j in 0..17 {
                for i in 0..17 {
                    let (i0, i1, wx) = taps[i];
                    let (j0, j1, wy) = taps[j];
                    let (wx, wy) = (f64::from(wx), f64::from(wy));
                    let x = field[j0 * 9 + i0] * (1.0 - wx) * (1.0 - wy)
                        + field[j0 * 9 + i1] * wx * (1.0 - wy)
                        + field[j1 * 9 + i0] * (1.0 - wx) * wy
                        + field[j1 * 9 + i1] * wx * wy;
                    let y = 2.0 * x + 0.5 * x * x + f64::from(statics[j * 17 + i]);
                    targets.push(y as f32);
                }
            }
        }
        DownscalingData {
            predictor_names: vec!["psi".into()],
            coarse_shape: [9, 9],
            coarse_x: cx.clone(),
            coarse_y: cx,
            predictors,
            scalar_names: Vec::new(),
            scalars: Vec::new(),
            static_names: vec!["orography".into()],
            fine_shape: [17, 17],
            fine_x: fx.clone(),
            fine_y: fx,
            statics,
            target_name: "temperature".into(),
            target_units: "K".into(),
            targets,
            time: (0..times).map(|t| t as f64).collect(),
            split: (0..times)
                .map(|t| super::super::data::split_code(t, times, [0.7, 0.15]))
                .collect(),
        }
    }

    pub(crate) fn small_config(loss: Loss, epochs: usize) -> DownscalingConfig {
        DownscalingConfig {
            description: None,
            downscaling: DownscalingTarget {
                loss,
                wet_threshold: 0.0,
            },
            data: DownscalingSource::Twin(TwinData {
                file: "unused.nc".into(),
                fields: Vec::new(),
                target: toml::Table::new(),
                max_records: None,
                split: default_split(),
            }),
            network: DownscalingArchitecture {
                channels: 4,
                levels: 2,
                fine_channels: 4,
                fine_levels: 1,
                scalar_width: 4,
            },
            training: super::super::train::TrainingSettings {
                epochs,
                batch_size: 8,
                learning_rate: 1e-2,
                learning_rate_final: Some(1e-3),
                rollout: 1,
                patience: 0,
                seed: 3,
                max_batches: None,
                device: DeviceChoice::Cpu,
            },
        }
    }

    /// Trained on the synthetic samples, the emulator beats the per-point
    /// climatology by far on validation; the checkpoint reloads to the same
    /// predictions, carries the validation error per point, and a damaged
    /// byte is caught.
    #[test]
    fn the_emulator_learns_a_synthetic_downscaling_and_round_trips() {
        let data = synthetic(120);
        let dir = std::env::temp_dir().join(format!("rime-downscaling-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = small_config(Loss::Mse, 25);
        let report = train_on(
            &config,
            &data,
            "synthetic",
            Path::new("t.toml"),
            &dir,
            false,
        )
        .unwrap();
        let h = &report.header;
        let best = h.history.iter().find(|r| r.epoch == h.best_epoch).unwrap();
        // Climatology's RMSE (per-point mean) on the validation split.
        let nf = data.fine_len();
        let valid = data.samples(1);
        let mut sq = 0.0;
        for &t in &valid {
            for i in 0..nf {
                let e = data.targets[t * nf + i] - h.norm.target_offset[i];
                sq += f64::from(e * e);
            }
        }
        let climatology = (sq / (valid.len() * nf) as f64).sqrt();
        assert!(
            best.validation_rmse < 0.25 * climatology,
            "validation RMSE {} vs climatology {climatology}",
            best.validation_rmse
        );
        assert_eq!(h.error_std.len(), nf);
        let mean_error = h.error_std.iter().map(|&v| f64::from(v * v)).sum::<f64>() / nf as f64;
        assert!((mean_error.sqrt() - best.validation_rmse).abs() < 1e-3 * climatology);
        // Reloaded, the same numbers.
        let device = cpu_f64();
        let path = dir.join("downscaling.ckpt");
        let ds = Downscaler::load(&path, &device).unwrap();
        let a = emulate(&ds, &data, &valid[..3], &device);
        let again = Downscaler::load(&path, &device).unwrap();
        assert_eq!(a, emulate(&again, &data, &valid[..3], &device));
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 10;
        bytes[last] ^= 0x55;
        let damaged = dir.join("damaged.ckpt");
        std::fs::write(&damaged, &bytes).unwrap();
        let e = Downscaler::load(&damaged, &device).err().unwrap();
        assert!(e.contains("checksum") && e.contains("damaged.ckpt"), "{e}");
        std::fs::write(&damaged, b"not a checkpoint").unwrap();
        let e = Downscaler::load(&damaged, &device).err().unwrap();
        assert!(e.contains("RIMEDSCL"), "{e}");
        // The gradient of a weighted sum of the emulated field with respect
        // to the predictors, through the network (autodiff), against
        // central differences.
        let ad = cpu_f64_autodiff();
        let ds = Downscaler::load(&path, &ad).unwrap();
        let x0: Vec<f64> = data.predictors[..81]
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        let w: Vec<f64> = (0..nf).map(|i| ((i * 7 % 13) as f64 - 6.0) / 6.0).collect();
        let f = |x: &[f64]| -> f64 {
            let t = crate::device::tensor_from_rows(x, 1, 81, &device);
            let (m, _) = Downscaler::load(&path, &device).unwrap().predict(t, None);
            to_vec(m).iter().zip(&w).map(|(a, b)| a * b).sum()
        };
        let xt = crate::device::tensor_from_rows(&x0, 1, 81, &ad).require_grad();
        let (m, _) = ds.predict(xt.clone(), None);
        let j = (m * crate::device::tensor_from_rows(&w, 1, nf, &ad).cast(FloatDType::F32)).sum();
        let g = to_vec(xt.grad(&j.backward()).unwrap());
        for i in [0, 40, 80] {
            let h = 1e-2;
            let (mut p, mut q) = (x0.clone(), x0.clone());
            p[i] += h;
            q[i] -= h;
            let fd = (f(&p) - f(&q)) / (2.0 * h);
            assert!(
                (fd - g[i]).abs() < 2e-2 * (1.0 + g[i].abs()),
                "{i}: autodiff {} vs differences {fd}",
                g[i]
            );
        }
    }

    /// The precipitation losses train too (one epoch, finite), and the
    /// gamma fit recovers known moments.
    #[test]
    fn precipitation_losses_train_and_the_gamma_fit_recovers_moments() {
        // Gamma fit: excesses 1, 2, 3, 6 over threshold 0.5 at one point.
        let targets = [1.5f32, 2.5, 3.5, 6.5, f32::NAN, 0.0];
        let fits = fit_gamma_per_point(&targets, 1, &[0, 1, 2, 3, 4, 5], 0.5);
        let (k, theta) = fits[0].unwrap();
        let (mean, var) = (3.0, (4.0 + 1.0 + 0.0 + 9.0) / 3.0);
        assert!((k * theta - mean).abs() < 1e-12 && (k * theta * theta - var).abs() < 1e-12);
        assert!(fit_gamma_per_point(&targets[..2], 1, &[0, 1], 0.5)[0].is_none());
        let mut data = synthetic(40);
        for v in &mut data.targets {
            *v = (*v).max(0.0);
        }
        data.target_name = "precipitation".into();
        let dir = std::env::temp_dir().join(format!("rime-downscaling-p-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for l in [Loss::Asymmetric, Loss::BernoulliGamma] {
            let mut config = small_config(l, 2);
            config.downscaling.wet_threshold = 0.05;
            let report = train_on(
                &config,
                &data,
                "synthetic",
                Path::new("t.toml"),
                &dir,
                false,
            )
            .unwrap();
            let r = &report.header.history[1];
            assert!(
                r.train_loss.is_finite() && r.validation_rmse.is_finite(),
                "{l:?}: {r:?}"
            );
            assert!(
                report
                    .header
                    .error_std
                    .iter()
                    .all(|v| v.is_finite() && *v >= 0.0)
            );
        }
    }

    /// The commands' path end to end on files in the CORDEX-ML-Bench
    /// layout that the test writes: `rime train` with a `[downscaling]`
    /// table (the season scalars join at the bottleneck, the orography is
    /// static), then `rime evaluate` writing the scores, maps and spectra;
    /// a checkpoint scored on data of another target is refused.
    #[test]
    fn train_and_evaluate_run_from_files_in_the_benchmark_layout() {
        use crate::io::{Dataset, NetcdfFormat, write_netcdf};
        // The tests share one process, whose CPU device runs f64.
        let _ = cpu_f64();
        let dir = std::env::temp_dir().join(format!("rime-downscaling-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let nt = 60;
        let time: Vec<f64> = (0..nt).map(|k| k as f64 * 6.0 + 0.5).collect();
        let (clat, clon): (Vec<f64>, Vec<f64>) = (
            (0..6).map(|j| 40.0 + 2.0 * j as f64).collect(),
            (0..6).map(|i| 2.0 * i as f64).collect(),
        );
        let (flat, flon): (Vec<f64>, Vec<f64>) = (
            (0..12).map(|j| 40.0 + 10.0 * j as f64 / 11.0).collect(),
            (0..12).map(|i| 10.0 * i as f64 / 11.0).collect(),
        );
        let z =
            |t: usize, j: usize, i: usize| (t as f64 * 0.3 + j as f64 * 0.5).sin() + 0.2 * i as f64;
        let mut pred = Dataset::new();
        pred.dim("time", nt).dim("lat", 6).dim("lon", 6);
        pred.var_f64(
            "time",
            &["time"],
            time.clone(),
            &[
                ("units", "days since 1961-01-01"),
                ("calendar", "proleptic_gregorian"),
            ],
        )
        .var_f64("lat", &["lat"], clat.clone(), &[("units", "degrees_north")])
        .var_f64("lon", &["lon"], clon.clone(), &[("units", "degrees_east")]);
        let zs: Vec<f32> = (0..nt)
            .flat_map(|t| (0..36).map(move |k| z(t, k / 6, k % 6) as f32))
            .collect();
        pred.var_f32("z_500", &["time", "lat", "lon"], zs, &[]);
        let orog: Vec<f64> = (0..144)
            .map(|k| 500.0 * (((k % 12) as f64 * 0.8).sin() + 1.0))
            .collect();
        let mut stat = Dataset::new();
        stat.dim("lat", 12)
            .dim("lon", 12)
            .var_f64("lat", &["lat"], flat.clone(), &[])
            .var_f64("lon", &["lon"], flon.clone(), &[])
            .var_f64("orog", &["lat", "lon"], orog.clone(), &[("units", "m")]);
        let mut targ = Dataset::new();
        targ.dim("time", nt).dim("lat", 12).dim("lon", 12);
        targ.var_f64(
            "time",
            &["time"],
            time,
            &[
                ("units", "days since 1961-01-01"),
                ("calendar", "proleptic_gregorian"),
            ],
        )
        .var_f64("lat", &["lat"], flat, &[])
        .var_f64("lon", &["lon"], flon, &[]);
        let tas: Vec<f32> = (0..nt)
            .flat_map(|t| {
                let orog = orog.clone();
                (0..144).map(move |k| {
                    (285.0 + 3.0 * z(t, (k / 12) / 2, (k % 12) / 2) - 0.0065 * orog[k]) as f32
                })
            })
            .collect();
        targ.var_f32("tasmax", &["time", "lat", "lon"], tas, &[("units", "K")]);
        write_netcdf(&dir.join("pred.nc"), &pred, NetcdfFormat::Classic).unwrap();
        write_netcdf(&dir.join("static.nc"), &stat, NetcdfFormat::Classic).unwrap();
        write_netcdf(&dir.join("target.nc"), &targ, NetcdfFormat::Classic).unwrap();
        let data_table = "[data]\nkind = \"cordex\"\npredictors = [\"pred.nc\"]\ntargets = [\"target.nc\"]\norography = \"static.nc\"\ntarget = \"tasmax\"\nsplit = [0.7, 0.15]\n";
        let train_file = dir.join("train.toml");
        std::fs::write(
            &train_file,
            format!("[downscaling]\nloss = \"mae\"\n{data_table}[network]\nchannels = 4\nlevels = 2\nfine_channels = 4\nfine_levels = 1\n[training]\nepochs = 3\nbatch_size = 8\nlearning_rate = 5e-3\nseed = 2\n"),
        )
        .unwrap();
        assert!(is_downscaling_file(&train_file));
        let config = DownscalingConfig::from_file(&train_file).unwrap();
        let out = dir.join("emulator");
        let report = train(&config, &train_file, &out, false, false).unwrap();
        assert_eq!(report.header.scalar_names, ["cos_season", "sin_season"]);
        assert_eq!(report.header.static_names.len(), 1);
        assert!(out.join("training.png").exists() && out.join("training.csv").exists());
        let eval_file = dir.join("evaluate.toml");
        std::fs::write(
            &eval_file,
            format!("[downscaling]\ncheckpoint = \"emulator/downscaling.ckpt\"\nsplit = \"test\"\n{data_table}"),
        )
        .unwrap();
        let config = DownscalingEvaluateConfig::from_file(&eval_file).unwrap();
        let ev = evaluate(&config, &eval_file, &dir.join("evaluation"), false).unwrap();
        assert_eq!(ev.samples, 9);
        assert!(ev.scores.rmse.is_finite() && ev.scores.precipitation.is_none());
        for f in DOWNSCALING_EVALUATION_FILES {
            assert!(dir.join("evaluation").join(f).exists(), "{f}");
        }
        let json: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("evaluation/scores.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(json["target"], "tasmax");
        assert!(evaluation_table(&ev).contains("| RMSE |"));
        // The same checkpoint on data of another target.
        std::fs::write(
            &eval_file,
            format!(
                "[downscaling]\ncheckpoint = \"emulator/downscaling.ckpt\"\n{}",
                data_table.replace(
                    "target = \"tasmax\"",
                    "target = \"tasmax\"\npredictor_variables = [\"z_500\", \"z_500\"]"
                )
            ),
        )
        .unwrap();
        let config = DownscalingEvaluateConfig::from_file(&eval_file).unwrap();
        let e = evaluate(&config, &eval_file, &dir.join("evaluation2"), false)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("evaluate.toml")
                && (e.contains("downscaling.checkpoint") || e.contains("z_500")),
            "{e}"
        );
    }
}
