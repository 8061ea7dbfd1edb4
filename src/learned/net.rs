//! Networks, in burn, in f32 whatever the device's float type: inputs are
//! cast to f32 at the first layer and outputs stay f32 (the caller casts
//! back at the seam).
//!
//! Weights are initialised from rime's seeded streams (not the device's
//! generator), so the same seed gives the same network on any device and
//! thread count.

use burn::module::{Module, Param};
use burn::tensor::activation::gelu;
use burn::tensor::{Device, FloatDType, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::rng::stream;

/// The architecture of a network: stored in checkpoints, so a checkpoint
/// rebuilds its own network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Architecture {
    /// A 1-D convolutional network on a periodic line (the Lorenz-96
    /// family): every layer pads circularly, so the network commutes with
    /// shifts of the state, as the dynamics do.
    Cnn1d {
        /// Hidden channels.
        #[serde(default = "default_channels")]
        channels: usize,
        /// Convolution layers (input and output layers included), ≥ 2.
        #[serde(default = "default_layers")]
        layers: usize,
        /// Odd kernel width of the hidden layers.
        #[serde(default = "default_kernel")]
        kernel: usize,
        /// A bilinear first layer (Brajard et al. 2020): the first
        /// convolution gives three groups of channels `a, b, c`, and the
        /// next layer sees `a` and the product `b c`, so quadratic
        /// advection terms are one layer away.
        #[serde(default = "yes")]
        bilinear: bool,
    },
    /// A U-Net for one 2-D field (Ronneberger et al. 2015): at each of
    /// `levels` resolutions two 3x3 convolutions with GELU, halving the grid
    /// by 2x2 averages on the way down and doubling it (nearest neighbour,
    /// then the two convolutions on the skip connection's channels beside
    /// the upsampled ones) on the way up; `channels` at the finest level,
    /// doubled at each coarser one. Zero padding (a closed domain such as
    /// the QG basin); the field is padded with zeros to a multiple of
    /// `2^(levels - 1)` and cropped back.
    Unet2d {
        /// Channels at the finest level.
        #[serde(default = "default_unet_channels")]
        channels: usize,
        /// Resolutions, ≥ 1 (1: no downsampling).
        #[serde(default = "default_levels")]
        levels: usize,
    },
}

fn default_unet_channels() -> usize {
    16
}
fn default_levels() -> usize {
    3
}

fn default_channels() -> usize {
    32
}
fn default_layers() -> usize {
    4
}
fn default_kernel() -> usize {
    5
}
fn yes() -> bool {
    true
}

impl Architecture {
    /// Checks the sizes; the error names the key.
    ///
    /// # Errors
    /// A size out of range, named by its key.
    pub fn check(&self) -> Result<(), (String, String)> {
        match self {
            Architecture::Cnn1d {
                channels,
                layers,
                kernel,
                ..
            } => {
                if *channels == 0 {
                    return Err(("channels".into(), "must be at least 1".into()));
                }
                if *layers < 2 {
                    return Err(("layers".into(), format!("must be at least 2, got {layers}")));
                }
                if kernel % 2 == 0 {
                    return Err(("kernel".into(), format!("must be odd, got {kernel}")));
                }
                Ok(())
            }
            Architecture::Unet2d { channels, levels } => {
                if *channels == 0 {
                    return Err(("channels".into(), "must be at least 1".into()));
                }
                if !(1..=6).contains(levels) {
                    return Err(("levels".into(), format!("must be 1 to 6, got {levels}")));
                }
                Ok(())
            }
        }
    }

    /// Whether the network takes states of this shape (a field's
    /// dimensions, `[n]` for a line or several fields).
    ///
    /// # Errors
    /// A 2-D network on a state that is not one 2-D field, named by what it
    /// is.
    pub fn fits(&self, shape: &[usize]) -> Result<(), String> {
        match self {
            Architecture::Cnn1d { .. } => Ok(()),
            Architecture::Unet2d { .. }
                if (shape.len() == 2 || shape.len() == 3) && shape.iter().all(|&d| d > 0) =>
            {
                Ok(())
            }
            Architecture::Unet2d { .. } => Err(format!(
                "kind = \"unet2d\" needs a state of 2-D fields of one shape; this one has shape {shape:?}"
            )),
        }
    }

    /// Builds the network for states of `n` variables on a line, weights
    /// drawn from the streams of `seed`.
    pub fn init(&self, n: usize, seed: u64, device: &Device) -> Network {
        self.init_with_inputs(1, &[n], seed, device)
    }

    /// The network with `inputs` channels in (a generative model's noisy
    /// state, condition and noise level), one out, for states of `shape`
    /// (see [`Architecture::fits`]).
    ///
    /// # Panics
    /// A shape the network does not fit.
    pub fn init_with_inputs(
        &self,
        inputs: usize,
        shape: &[usize],
        seed: u64,
        device: &Device,
    ) -> Network {
        self.init_with_extra(inputs, 0, shape, seed, device)
    }

    /// [`init_with_inputs`](Self::init_with_inputs) with `extra` channels
    /// more (forcing fields, each the size of one field of the state; see
    /// [`Network::forward_extra`]).
    ///
    /// # Panics
    /// A shape the network does not fit.
    pub fn init_with_extra(
        &self,
        inputs: usize,
        extra: usize,
        shape: &[usize],
        seed: u64,
        device: &Device,
    ) -> Network {
        if let Err(e) = self.fits(shape) {
            panic!("{e}");
        }
        match self {
            Architecture::Cnn1d {
                channels,
                layers,
                kernel,
                bilinear,
            } => Network::Cnn1d(Cnn1d::new(
                inputs + extra,
                *channels,
                *layers,
                *kernel,
                *bilinear,
                shape.iter().product(),
                seed,
                device,
            )),
            Architecture::Unet2d { channels, levels } => {
                let (fields, grid) = match shape {
                    [f, ny, nx] => (*f, [*ny, *nx]),
                    _ => (1, [shape[0], shape[1]]),
                };
                Network::Unet2d(Unet2d::new(
                    inputs * fields + extra,
                    fields,
                    *channels,
                    *levels,
                    grid,
                    seed,
                    device,
                ))
            }
        }
    }
}

/// PyTorch's default initialisation, uniform in `±1/sqrt(fan_in)`, from
/// the stream `init/{name}/{what}` of `seed`.
pub(crate) fn uniform_init(
    seed: u64,
    name: &str,
    what: &str,
    len: usize,
    fan_in: usize,
) -> Vec<f32> {
    use rand::Rng;
    let bound = 1.0 / (fan_in as f64).sqrt();
    let mut rng = stream(seed, &format!("init/{name}/{what}"));
    (0..len)
        .map(|_| rng.random_range(-bound..bound) as f32)
        .collect()
}

/// One periodic 1-D convolution: weights `[out, in, kernel]`, bias `[out]`.
#[derive(Module, Debug)]
pub struct PeriodicConv1d {
    weight: Param<Tensor<3>>,
    bias: Param<Tensor<1>>,
    kernel: usize,
}

impl PeriodicConv1d {
    /// PyTorch's default initialisation: uniform in `±1/sqrt(fan_in)`.
    fn new(
        inputs: usize,
        outputs: usize,
        kernel: usize,
        seed: u64,
        name: &str,
        device: &Device,
    ) -> Self {
        let fan_in = inputs * kernel;
        let w = uniform_init(seed, name, "weight", outputs * inputs * kernel, fan_in);
        let b = uniform_init(seed, name, "bias", outputs, fan_in);
        Self {
            weight: Param::from_tensor(f32_tensor(w, [outputs, inputs, kernel], device)),
            bias: Param::from_tensor(f32_tensor(b, [outputs], device)),
            kernel,
        }
    }

    /// `[batch, in, n] -> [batch, out, n]`, padding circularly.
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let p = self.kernel / 2;
        let x = if p > 0 {
            let n = x.dims()[2];
            let parts = if p <= n {
                vec![x.clone().narrow(2, n - p, p), x.clone(), x.narrow(2, 0, p)]
            } else {
                // Wider than the state: wrap as many times as needed.
                let reps = p.div_ceil(n);
                let tiled = Tensor::cat(vec![x; 2 * reps + 1], 2);
                vec![tiled.narrow(2, reps * n - p, n + 2 * p)]
            };
            Tensor::cat(parts, 2)
        } else {
            x
        };
        let options = burn::tensor::ops::ConvOptions::new([1], [0], [1], 1);
        burn::tensor::module::conv1d(x, self.weight.val(), Some(self.bias.val()), options)
    }
}

/// The periodic 1-D CNN of [`Architecture::Cnn1d`].
#[derive(Module, Debug)]
pub struct Cnn1d {
    first: PeriodicConv1d,
    hidden: Vec<PeriodicConv1d>,
    last: PeriodicConv1d,
    channels: usize,
    bilinear: bool,
}

impl Cnn1d {
    #[allow(clippy::too_many_arguments)]
    fn new(
        inputs: usize,
        channels: usize,
        layers: usize,
        kernel: usize,
        bilinear: bool,
        _n: usize,
        seed: u64,
        device: &Device,
    ) -> Self {
        let c = channels;
        let (first_out, after_first) = if bilinear { (3 * c, 2 * c) } else { (c, c) };
        let first = PeriodicConv1d::new(inputs, first_out, kernel, seed, "first", device);
        let hidden = (0..layers - 2)
            .map(|l| {
                let inputs = if l == 0 { after_first } else { c };
                PeriodicConv1d::new(inputs, c, kernel, seed, &format!("hidden{l}"), device)
            })
            .collect();
        let last_in = if layers == 2 { after_first } else { c };
        let last = PeriodicConv1d::new(last_in, 1, 1, seed, "last", device);
        Self {
            first,
            hidden,
            last,
            channels,
            bilinear,
        }
    }

    /// `[batch, n] -> [batch, n]`, in f32.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let [b, n] = x.dims();
        self.forward_channels(x.reshape([b, 1, n])).reshape([b, n])
    }

    /// `[batch, inputs, n] -> [batch, 1, n]`, in f32.
    pub fn forward_channels(&self, x: Tensor<3>) -> Tensor<3> {
        let x = x.cast(FloatDType::F32);
        let h = self.first.forward(x);
        let mut h = if self.bilinear {
            let c = self.channels;
            let a = h.clone().narrow(1, 0, c);
            let p = h.clone().narrow(1, c, c) * h.narrow(1, 2 * c, c);
            Tensor::cat(vec![a, p], 1)
        } else {
            gelu(h)
        };
        for layer in &self.hidden {
            h = gelu(layer.forward(h));
        }
        self.last.forward(h)
    }

    /// [`forward_channels`](Self::forward_channels) with `extra` channels
    /// `[batch, extra, n]` beside the inputs.
    pub fn forward_extra(&self, x: Tensor<3>, extra: Option<Tensor<3>>) -> Tensor<3> {
        match extra {
            Some(e) => self.forward_channels(Tensor::cat(vec![x.cast(FloatDType::F32), e], 1)),
            None => self.forward_channels(x),
        }
    }
}

/// A 2-D convolution with zero padding that keeps the grid: weights
/// `[out, in, k, k]`, bias `[out]`.
#[derive(Module, Debug)]
pub struct Conv2dSame {
    weight: Param<Tensor<4>>,
    bias: Param<Tensor<1>>,
    kernel: usize,
}

impl Conv2dSame {
    pub(crate) fn new(
        inputs: usize,
        outputs: usize,
        kernel: usize,
        seed: u64,
        name: &str,
        device: &Device,
    ) -> Self {
        let fan_in = inputs * kernel * kernel;
        let w = uniform_init(seed, name, "weight", outputs * fan_in, fan_in);
        let b = uniform_init(seed, name, "bias", outputs, fan_in);
        Self {
            weight: Param::from_tensor(f32_tensor(w, [outputs, inputs, kernel, kernel], device)),
            bias: Param::from_tensor(f32_tensor(b, [outputs], device)),
            kernel,
        }
    }

    /// `[batch, in, ny, nx] -> [batch, out, ny, nx]`.
    pub(crate) fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let p = self.kernel / 2;
        let options = burn::tensor::ops::ConvOptions::new([1, 1], [p, p], [1, 1], 1);
        burn::tensor::module::conv2d(x, self.weight.val(), Some(self.bias.val()), options)
    }
}

/// Two 3x3 convolutions, each followed by GELU.
#[derive(Module, Debug)]
pub struct DoubleConv {
    a: Conv2dSame,
    b: Conv2dSame,
}

impl DoubleConv {
    pub(crate) fn new(
        inputs: usize,
        outputs: usize,
        seed: u64,
        name: &str,
        device: &Device,
    ) -> Self {
        Self {
            a: Conv2dSame::new(inputs, outputs, 3, seed, &format!("{name}/a"), device),
            b: Conv2dSame::new(outputs, outputs, 3, seed, &format!("{name}/b"), device),
        }
    }

    pub(crate) fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        gelu(self.b.forward(gelu(self.a.forward(x))))
    }
}

/// The U-Net of [`Architecture::Unet2d`].
#[derive(Module, Debug)]
pub struct Unet2d {
    down: Vec<DoubleConv>,
    up: Vec<DoubleConv>,
    last: Conv2dSame,
    ny: usize,
    nx: usize,
    /// Fields of the state: channels out, and channels in per input.
    fields: usize,
}

impl Unet2d {
    #[allow(clippy::too_many_arguments)]
    fn new(
        inputs: usize,
        fields: usize,
        channels: usize,
        levels: usize,
        [ny, nx]: [usize; 2],
        seed: u64,
        device: &Device,
    ) -> Self {
        let width = |l: usize| channels << l;
        let down = (0..levels)
            .map(|l| {
                let inputs = if l == 0 { inputs } else { width(l - 1) };
                DoubleConv::new(inputs, width(l), seed, &format!("down{l}"), device)
            })
            .collect();
        // Up level l sees the upsampled level l + 1 beside the skip of l.
        let up = (0..levels.saturating_sub(1))
            .map(|l| {
                DoubleConv::new(
                    width(l + 1) + width(l),
                    width(l),
                    seed,
                    &format!("up{l}"),
                    device,
                )
            })
            .collect();
        let last = Conv2dSame::new(channels, fields, 1, seed, "last", device);
        Self {
            down,
            up,
            last,
            ny,
            nx,
            fields,
        }
    }

    /// `[batch, n] -> [batch, n]`, `n = fields ny nx` in row-major order
    /// (fields slowest), in f32.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let [b, n] = x.dims();
        self.forward_channels(x.reshape([b, 1, n])).reshape([b, n])
    }

    /// `[batch, inputs, n] -> [batch, 1, n]`, in f32: each input's fields
    /// are channels.
    pub fn forward_channels(&self, x: Tensor<3>) -> Tensor<3> {
        self.forward_extra(x, None)
    }

    /// [`forward_channels`](Self::forward_channels) with `extra` channels
    /// `[batch, extra, ny nx]` (forcing fields) beside the inputs' fields.
    pub fn forward_extra(&self, x: Tensor<3>, extra: Option<Tensor<3>>) -> Tensor<3> {
        let [b, c, n] = x.dims();
        let (ny, nx, f) = (self.ny, self.nx, self.fields);
        assert_eq!(
            n,
            f * ny * nx,
            "a U-Net built for {f} fields of {ny} x {nx} got {n} values"
        );
        let x = x.cast(FloatDType::F32).reshape([b, c * f, ny, nx]);
        let x = match extra {
            Some(e) => {
                let e_channels = e.dims()[1];
                Tensor::cat(
                    vec![x, e.cast(FloatDType::F32).reshape([b, e_channels, ny, nx])],
                    1,
                )
            }
            None => x,
        };
        let h = unet_pass(&self.down, &self.up, x, None);
        let y = self.last.forward(h);
        y.reshape([b, 1, n])
    }
}

/// One U-Net pass `[b, c, ny, nx] -> [b, width(0), ny, nx]`, zero-padded to
/// a multiple of `2^(levels - 1)` and cropped back; `bottom` (`[b, w]`)
/// joins the deepest level as `w` constant channels.
pub(crate) fn unet_pass(
    down: &[DoubleConv],
    up: &[DoubleConv],
    x: Tensor<4>,
    bottom: Option<Tensor<2>>,
) -> Tensor<4> {
    let [_, _, ny, nx] = x.dims();
    let m = 1usize << (down.len() - 1);
    let (py, px) = (ny.next_multiple_of(m), nx.next_multiple_of(m));
    let x = if (py, px) != (ny, nx) {
        x.pad([(0, py - ny), (0, px - nx)], 0.0)
    } else {
        x
    };
    let mut skips = Vec::with_capacity(down.len());
    let mut h = x;
    let last = down.len() - 1;
    for (l, block) in down.iter().enumerate() {
        if l > 0 {
            let options = burn::tensor::ops::AvgPoolOptions::new([2, 2]);
            h = burn::tensor::module::avg_pool2d(h, options);
        }
        if l == last
            && let Some(f) = &bottom
        {
            let [b, _, hh, ww] = h.dims();
            let w = f.dims()[1];
            let planes = f
                .clone()
                .reshape([b, w, 1, 1])
                .repeat_dim(2, hh)
                .repeat_dim(3, ww);
            h = Tensor::cat(vec![h, planes], 1);
        }
        h = block.forward(h);
        skips.push(h.clone());
    }
    skips.pop();
    for block in up.iter().rev() {
        let skip = skips.pop().expect("one skip per up level");
        h = Tensor::cat(vec![upsample2(h), skip], 1);
        h = block.forward(h);
    }
    if (py, px) != (ny, nx) {
        h.narrow(2, 0, ny).narrow(3, 0, nx)
    } else {
        h
    }
}

/// Nearest-neighbour doubling of the last two dimensions.
pub(crate) fn upsample2(x: Tensor<4>) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    let x = x.reshape([b, c, h, 1, w, 1]);
    let x = Tensor::cat(vec![x.clone(), x], 3);
    let x = Tensor::cat(vec![x.clone(), x], 5);
    x.reshape([b, c, 2 * h, 2 * w])
}

/// A network of any architecture.
#[derive(Module, Debug)]
pub enum Network {
    /// [`Architecture::Cnn1d`].
    Cnn1d(Cnn1d),
    /// [`Architecture::Unet2d`].
    Unet2d(Unet2d),
}

impl Network {
    /// `[batch, n] -> [batch, n]`, in f32.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        match self {
            Network::Cnn1d(net) => net.forward(x),
            Network::Unet2d(net) => net.forward(x),
        }
    }

    /// `[batch, inputs, n] -> [batch, 1, n]`, in f32.
    pub fn forward_channels(&self, x: Tensor<3>) -> Tensor<3> {
        match self {
            Network::Cnn1d(net) => net.forward_channels(x),
            Network::Unet2d(net) => net.forward_channels(x),
        }
    }

    /// [`forward_channels`](Self::forward_channels) with `extra` input
    /// channels (forcing fields): `[batch, extra, m]`, with `m = n` for a
    /// 1-D network and one field's size for a U-Net.
    pub fn forward_extra(&self, x: Tensor<3>, extra: Option<Tensor<3>>) -> Tensor<3> {
        match self {
            Network::Cnn1d(net) => net.forward_extra(x, extra),
            Network::Unet2d(net) => net.forward_extra(x, extra),
        }
    }
}

/// An f32 tensor on `device`, whatever its default float type.
pub fn f32_tensor<const D: usize>(
    values: Vec<f32>,
    shape: [usize; D],
    device: &Device,
) -> Tensor<D> {
    Tensor::<D>::from_data(TensorData::new(values, shape), device).cast(FloatDType::F32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{cpu_f64, to_vec};

    /// Circular padding makes the network commute with shifts of the
    /// state, and the same seed gives the same weights.
    #[test]
    fn the_periodic_cnn_commutes_with_shifts_and_is_seeded() {
        let device = cpu_f64();
        let arch = Architecture::Cnn1d {
            channels: 4,
            layers: 3,
            kernel: 5,
            bilinear: true,
        };
        let net = arch.init(10, 7, &device);
        let x: Vec<f32> = (0..10).map(|i| ((i * 7 % 10) as f32 - 4.5) / 3.0).collect();
        let shifted: Vec<f32> = (0..10).map(|i| x[(i + 3) % 10]).collect();
        let y = to_vec(net.forward(f32_tensor(x, [1, 10], &device)));
        let ys = to_vec(net.forward(f32_tensor(shifted, [1, 10], &device)));
        for i in 0..10 {
            assert!(
                (ys[i] - y[(i + 3) % 10]).abs() < 1e-6,
                "{i}: {ys:?} vs {y:?}"
            );
        }
        let again = arch.init(10, 7, &device);
        let other = arch.init(10, 8, &device);
        let w = |n: &Network| match n {
            Network::Cnn1d(c) => to_vec(c.first.weight.val()),
            Network::Unet2d(_) => unreachable!("a 1-D network"),
        };
        assert_eq!(w(&net), w(&again));
        assert_ne!(w(&net), w(&other));
    }

    /// The U-Net takes a field whose sides are not multiples of its
    /// coarsest grid (padded and cropped back), is seeded, and its autodiff
    /// gradient with respect to the input matches central differences.
    #[test]
    fn the_unet_pads_crops_and_differentiates() {
        use crate::device::cpu_f64_autodiff;
        let device = cpu_f64();
        let arch = Architecture::Unet2d {
            channels: 4,
            levels: 3,
        };
        assert!(arch.fits(&[40]).is_err());
        let (ny, nx) = (9, 7);
        let n = ny * nx;
        let net = arch.init_with_inputs(1, &[ny, nx], 3, &device);
        let x: Vec<f32> = (0..2 * n)
            .map(|i| ((i * 7 % 11) as f32 - 5.0) / 4.0)
            .collect();
        let y = to_vec(net.forward(f32_tensor(x.clone(), [2, n], &device)));
        assert_eq!(y.len(), 2 * n);
        // Members are independent: the second row alone gives its output.
        let y1 = to_vec(net.forward(f32_tensor(x[n..].to_vec(), [1, n], &device)));
        for (a, b) in y1.iter().zip(&y[n..]) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        let again = arch.init_with_inputs(1, &[ny, nx], 3, &device);
        assert_eq!(
            to_vec(again.forward(f32_tensor(x.clone(), [2, n], &device))),
            y
        );

        let ad = cpu_f64_autodiff();
        let net = arch.init_with_inputs(1, &[ny, nx], 3, &ad);
        let w: Vec<f32> = (0..n).map(|i| ((i * 5 % 7) as f32 - 3.0) / 3.0).collect();
        let x0: Vec<f32> = x[..n].to_vec();
        let f = |x: &[f32]| -> f64 {
            let y = to_vec(net.forward(f32_tensor(x.to_vec(), [1, n], &ad)));
            y.iter().zip(&w).map(|(a, b)| a * *b as f64).sum()
        };
        let xt = f32_tensor(x0.clone(), [1, n], &ad).require_grad();
        let j = (net.forward(xt.clone()) * f32_tensor(w.clone(), [1, n], &ad)).sum();
        let g = to_vec(xt.grad(&j.backward()).unwrap());
        let h = 1e-2;
        for i in [0, 8, 31, n - 1] {
            let mut p = x0.clone();
            let mut m = x0.clone();
            p[i] += h;
            m[i] -= h;
            let fd = (f(&p) - f(&m)) / (2.0 * h as f64);
            assert!(
                (fd - g[i]).abs() < 2e-2 * (1e-2 + g[i].abs()),
                "{i}: autodiff {} vs differences {fd}",
                g[i]
            );
        }
    }
}
