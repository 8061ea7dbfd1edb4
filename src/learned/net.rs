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
        }
    }

    /// Builds the network for states of `n` variables, weights drawn from
    /// the streams of `seed`.
    pub fn init(&self, n: usize, seed: u64, device: &Device) -> Network {
        self.init_with_inputs(1, n, seed, device)
    }

    /// The network with `inputs` channels in (a generative model's noisy
    /// state, condition and noise level), one out.
    pub fn init_with_inputs(&self, inputs: usize, n: usize, seed: u64, device: &Device) -> Network {
        match self {
            Architecture::Cnn1d {
                channels,
                layers,
                kernel,
                bilinear,
            } => Network::Cnn1d(Cnn1d::new(
                inputs, *channels, *layers, *kernel, *bilinear, n, seed, device,
            )),
        }
    }
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
        let bound = 1.0 / ((inputs * kernel) as f64).sqrt();
        let uniform = |what: &str, len: usize| -> Vec<f32> {
            use rand::Rng;
            let mut rng = stream(seed, &format!("init/{name}/{what}"));
            (0..len)
                .map(|_| rng.random_range(-bound..bound) as f32)
                .collect()
        };
        let w = uniform("weight", outputs * inputs * kernel);
        let b = uniform("bias", outputs);
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
}

/// A network of any architecture.
#[derive(Module, Debug)]
pub enum Network {
    /// [`Architecture::Cnn1d`].
    Cnn1d(Cnn1d),
}

impl Network {
    /// `[batch, n] -> [batch, n]`, in f32.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        match self {
            Network::Cnn1d(net) => net.forward(x),
        }
    }

    /// `[batch, inputs, n] -> [batch, 1, n]`, in f32.
    pub fn forward_channels(&self, x: Tensor<3>) -> Tensor<3> {
        match self {
            Network::Cnn1d(net) => net.forward_channels(x),
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
        };
        assert_eq!(w(&net), w(&again));
        assert_ne!(w(&net), w(&other));
    }
}
