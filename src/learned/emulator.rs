//! A deterministic neural emulator as a [`Model`]: one step of the network
//! advances the state by one record interval of its training data,
//!
//! `x_{t+1} = x_t + mu_d + sigma_d * net((x_t - mu) / sigma)`
//!
//! (residual or tendency learning: the network predicts the normalised
//! increment), with the normalisation (`mu`, `sigma` of the states,
//! `mu_d`, `sigma_d` of the one-record increments, from the training split)
//! stored in the checkpoint beside the weights.
//!
//! The network runs in f32; the state enters and leaves in the device's
//! float type (f64 for DA), cast once at each step. Under autodiff the
//! weights are constants and gradients flow to the state, which is what
//! 4D-Var through the emulator needs.
//!
//! Checkpoint file (`.ckpt`), one file written atomically:
//! `RIMECKPT` (8 bytes), then three sections, each a little-endian `u64`
//! length followed by its bytes: the JSON header ([`CheckpointHeader`]:
//! architecture, normalisation, state size, step, source model, training
//! state), the weights (burnpack, f32), and the optimiser state (burnpack,
//! empty in a file written for inference).

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::{DType, Device, FloatDType, Tensor};
use serde::{Deserialize, Serialize};

use super::net::{Architecture, Network, f32_tensor};
use crate::core::{Geometry, Model};
use crate::experiment::registry::ModelConfig;
use crate::models::{BuildError, ModelSpec};

/// Normalisation of inputs and outputs, per variable.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalisation {
    /// Mean of the states.
    pub mean: Vec<f64>,
    /// Standard deviation of the states.
    pub std: Vec<f64>,
    /// Mean of the one-step increments.
    pub increment_mean: Vec<f64>,
    /// Standard deviation of the one-step increments.
    pub increment_std: Vec<f64>,
}

impl Normalisation {
    /// Moments pooled over all variables (a homogeneous field, such as a
    /// Lorenz-96 ring, where every variable has the same statistics), so
    /// that a shift-equivariant network stays equivariant.
    pub fn pooled(stats: &super::data::Statistics) -> Self {
        let n = stats.mean.len().max(1) as f64;
        let pool = |m: &[f64], s: &[f64]| -> (f64, f64) {
            let mean = m.iter().sum::<f64>() / n;
            let var = m
                .iter()
                .zip(s)
                .map(|(m, s)| s * s + (m - mean) * (m - mean))
                .sum::<f64>()
                / n;
            (mean, var.sqrt().max(1e-12))
        };
        let (mu, sigma) = pool(&stats.mean, &stats.std);
        let (dmu, dsigma) = pool(&stats.increment_mean, &stats.increment_std);
        let len = stats.mean.len();
        Self {
            mean: vec![mu; len],
            std: vec![sigma; len],
            increment_mean: vec![dmu; len],
            increment_std: vec![dsigma; len],
        }
    }
}

/// One epoch of training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Epoch number, from 1.
    pub epoch: usize,
    /// Mean training loss over the epoch's batches.
    pub train_loss: f64,
    /// Validation loss (the same rollout loss).
    pub validation_loss: f64,
    /// One-step root-mean-square error on the validation split, in the
    /// state's units.
    pub validation_rmse: f64,
    /// Learning rate.
    pub learning_rate: f64,
    /// Wall time of the epoch, seconds.
    pub seconds: f64,
}

/// Where training stands, for resuming and for the record.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainingState {
    /// Epochs done.
    pub epoch: usize,
    /// Epoch of the best validation loss.
    pub best_epoch: usize,
    /// The best validation loss.
    pub best_validation: f64,
    /// Every epoch so far.
    pub history: Vec<EpochRecord>,
    /// Whether early stopping ended the training.
    pub stopped_early: bool,
}

/// The JSON header of a checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointHeader {
    /// Format version (1).
    pub format: u32,
    /// rime version that wrote it.
    pub rime_version: String,
    /// The network.
    pub architecture: Architecture,
    /// Seed of the initial weights and of the batches.
    pub seed: u64,
    /// Normalisation.
    pub normalisation: Normalisation,
    /// State size.
    pub n: usize,
    /// Model time advanced by one network step.
    pub interval: f64,
    /// The `[model]` table (TOML) of the model that produced the data, if
    /// known: the emulator takes its geometry.
    pub model: Option<String>,
    /// The training data file.
    pub data: String,
    /// The training configuration file.
    pub config: String,
    /// Where training stands.
    pub training: TrainingState,
    /// The generative model, for a surrogate (absent: a deterministic
    /// emulator).
    #[serde(default)]
    pub generative: Option<super::generative::GenerativeConfig>,
}

impl CheckpointHeader {
    /// Input channels of the network: 1 for an emulator, 3 for a
    /// generative surrogate (noisy sample, condition, noise level).
    pub fn inputs(&self) -> usize {
        if self.generative.is_some() { 3 } else { 1 }
    }
}

/// A checkpoint in memory.
pub struct Checkpoint {
    /// What the weights are.
    pub header: CheckpointHeader,
    /// The weights (burnpack).
    pub weights: Vec<u8>,
    /// The optimiser state (burnpack), empty when absent.
    pub optimizer: Vec<u8>,
}

const MAGIC: &[u8; 8] = b"RIMECKPT";

impl Checkpoint {
    /// Takes `network`'s weights.
    ///
    /// # Errors
    /// If burn cannot serialise the weights.
    pub fn new(
        header: CheckpointHeader,
        network: &Network,
        optimizer: Vec<u8>,
    ) -> Result<Self, String> {
        let weights = network
            .clone()
            .into_record()
            .into_bytes()
            .map_err(|e| e.to_string())?
            .to_vec();
        Ok(Self {
            header,
            weights,
            optimizer,
        })
    }

    /// Writes the file atomically (a killed write leaves the old file).
    ///
    /// # Errors
    /// A file that cannot be written.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let header = serde_json::to_vec_pretty(&self.header).map_err(|e| e.to_string())?;
        let mut bytes =
            Vec::with_capacity(8 + 24 + header.len() + self.weights.len() + self.optimizer.len());
        bytes.extend_from_slice(MAGIC);
        for section in [&header, &self.weights, &self.optimizer] {
            bytes.extend_from_slice(&(section.len() as u64).to_le_bytes());
            bytes.extend_from_slice(section);
        }
        crate::io::write_atomic(path, &bytes).map_err(|e| e.to_string())
    }

    /// Reads a checkpoint; errors name the file.
    ///
    /// # Errors
    /// A missing, truncated or foreign file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let err = |what: &str| format!("{}: {what}", path.display());
        let bytes = std::fs::read(path).map_err(|e| err(&e.to_string()))?;
        if bytes.len() < 8 || &bytes[..8] != MAGIC {
            return Err(err(
                "not a rime checkpoint (it does not start with RIMECKPT)",
            ));
        }
        let mut at = 8;
        let mut sections = Vec::new();
        for name in ["header", "weights", "optimiser state"] {
            let len = bytes
                .get(at..at + 8)
                .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
                .ok_or_else(|| err(&format!("truncated before the {name}")))?;
            at += 8;
            let section = bytes
                .get(at..at + len)
                .ok_or_else(|| err(&format!("truncated in the {name}")))?;
            sections.push(section.to_vec());
            at += len;
        }
        let optimizer = sections.pop().expect("three sections");
        let weights = sections.pop().expect("three sections");
        let header: CheckpointHeader =
            serde_json::from_slice(&sections[0]).map_err(|e| err(&format!("bad header: {e}")))?;
        if header.format != 1 {
            return Err(err(&format!(
                "checkpoint format {} is not supported by this rime (format 1)",
                header.format
            )));
        }
        Ok(Self {
            header,
            weights,
            optimizer,
        })
    }

    /// The network with these weights, on `device`.
    ///
    /// # Errors
    /// Weights that do not fit the architecture.
    pub fn network(&self, device: &Device) -> Result<Network, String> {
        let record = burn::store::ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(
            self.weights.clone(),
        ))
        .map_err(|e| e.to_string())?;
        self.header
            .architecture
            .init_with_inputs(
                self.header.inputs(),
                self.header.n,
                self.header.seed,
                device,
            )
            .try_load_record(record)
            .map_err(|e| e.to_string())
    }
}

/// A [`Normalisation`] as f32 rows for tensor ops on `[batch, n]` f32
/// states: what the deterministic emulator and the generative models share.
#[derive(Clone, Debug)]
pub struct Scaling {
    mean: Vec<f32>,
    inv_std: Vec<f32>,
    increment_mean: Vec<f32>,
    increment_std: Vec<f32>,
    inv_increment_std: Vec<f32>,
}

impl Scaling {
    /// From a normalisation.
    pub fn new(norm: &Normalisation) -> Self {
        let f = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<_>>();
        let increment_std = f(&norm.increment_std);
        Self {
            mean: f(&norm.mean),
            inv_std: norm.std.iter().map(|&s| (1.0 / s) as f32).collect(),
            increment_mean: f(&norm.increment_mean),
            inv_increment_std: increment_std.iter().map(|s| 1.0 / s).collect(),
            increment_std,
        }
    }

    fn row(v: &[f32], device: &Device) -> Tensor<2> {
        f32_tensor(v.to_vec(), [1, v.len()], device)
    }

    /// `(x - mu) / sigma`.
    pub fn normalise(&self, x: Tensor<2>) -> Tensor<2> {
        let device = x.device();
        (x - Self::row(&self.mean, &device)) * Self::row(&self.inv_std, &device)
    }

    /// `x + mu_d + sigma_d y`: the state after the normalised increment `y`.
    pub fn advance(&self, x: Tensor<2>, y: Tensor<2>) -> Tensor<2> {
        let device = x.device();
        x + Self::row(&self.increment_mean, &device) + y * Self::row(&self.increment_std, &device)
    }

    /// `(next - x - mu_d) / sigma_d`: the normalised increment.
    pub fn increment(&self, x: Tensor<2>, next: Tensor<2>) -> Tensor<2> {
        let device = x.device();
        (next - x - Self::row(&self.increment_mean, &device)) * self.inverse_increment_std(&device)
    }

    /// `1 / sigma_d` as a row, to measure errors in increment units.
    pub fn inverse_increment_std(&self, device: &Device) -> Tensor<2> {
        Self::row(&self.inv_increment_std, device)
    }
}

/// The residual step of a network with its normalisation, in f32 tensor
/// ops (the piece training and the [`Emulator`] share).
#[derive(Clone, Debug)]
pub struct ResidualStep {
    scaling: Scaling,
}

impl ResidualStep {
    /// From a normalisation.
    pub fn new(norm: &Normalisation) -> Self {
        Self {
            scaling: Scaling::new(norm),
        }
    }

    /// One step of `[batch, n]` f32 states.
    pub fn step(&self, network: &Network, x: Tensor<2>) -> Tensor<2> {
        let z = self.scaling.normalise(x.clone());
        self.scaling.advance(x, network.forward(z))
    }

    /// `1 / sigma_d` as a row, to measure errors in increment units.
    pub fn inverse_increment_std(&self, device: &Device) -> Tensor<2> {
        self.scaling.inverse_increment_std(device)
    }
}

/// The float type of a tensor, to cast a network's f32 output back to the
/// caller's at the seam.
pub fn float_dtype(t: &Tensor<2>) -> FloatDType {
    match t.dtype() {
        DType::F64 => FloatDType::F64,
        DType::F16 => FloatDType::F16,
        DType::BF16 => FloatDType::BF16,
        _ => FloatDType::F32,
    }
}

/// The `[model] name = "emulator"` table: a trained checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmulatorConfig {
    /// The checkpoint (`rime train` writes `emulator.ckpt`); a relative path
    /// is taken from the experiment file's folder.
    pub checkpoint: PathBuf,
}

impl ModelSpec for EmulatorConfig {
    fn init(&self, device: &Device) -> Result<Box<dyn Model>, BuildError> {
        let file = |reason: String| BuildError::File {
            path: self.checkpoint.clone(),
            reason,
        };
        // The loader's message already names the file.
        let checkpoint = Checkpoint::load(&self.checkpoint).map_err(|e| {
            BuildError::invalid(
                "checkpoint",
                format!("{e} (`rime train` writes checkpoints)"),
            )
        })?;
        if let Some(config) = &checkpoint.header.generative {
            let geometry = source_geometry(&checkpoint.header, device).map_err(&file)?;
            let network = checkpoint.network(device).map_err(&file)?;
            let generative = super::generative::Generative::new(
                config.clone(),
                &checkpoint.header.normalisation,
            );
            return Ok(Box::new(super::generative::Surrogate::new(
                network,
                generative,
                geometry,
                checkpoint.header.interval,
            )));
        }
        Ok(Box::new(Emulator::new(&checkpoint, device).map_err(file)?))
    }
}

/// The geometry of the model a checkpoint's data came from, or a periodic
/// chain of `n` points where the data did not say.
///
/// # Errors
/// A source model that cannot be built or does not have `n` variables.
pub fn source_geometry(h: &CheckpointHeader, device: &Device) -> Result<Geometry, String> {
    match &h.model {
        Some(text) => {
            let source = ModelConfig::from_toml(text)
                .map_err(|e| format!("the source model in the checkpoint: {e}"))?;
            let model = source
                .init(device)
                .map_err(|e| format!("the source model in the checkpoint: {e}"))?;
            if model.size() != h.n {
                return Err(format!(
                    "the source model has {} variables, the network {}",
                    model.size(),
                    h.n
                ));
            }
            Ok(model.geometry().clone())
        }
        None => Ok(Geometry::chain(h.n, true, "x")),
    }
}

/// A trained network as a forecast model.
pub struct Emulator {
    network: Network,
    residual: ResidualStep,
    geometry: Geometry,
    dt: f64,
    name: String,
}

impl Emulator {
    /// The emulator of a checkpoint on `device`; its geometry is that of the
    /// model named in the checkpoint, or a periodic chain of `n` points.
    ///
    /// # Errors
    /// Weights that do not fit, or a source model that cannot be built.
    pub fn new(checkpoint: &Checkpoint, device: &Device) -> Result<Self, String> {
        let h = &checkpoint.header;
        if h.generative.is_some() {
            return Err("a generative surrogate, not a deterministic emulator".into());
        }
        let network = checkpoint.network(device)?;
        let geometry = source_geometry(h, device)?;
        Ok(Self {
            network,
            residual: ResidualStep::new(&h.normalisation),
            geometry,
            dt: h.interval,
            name: "emulator".into(),
        })
    }

    /// An emulator from its parts (benches, hybrid models, a network
    /// trained outside `rime train`).
    pub fn from_parts(
        network: Network,
        normalisation: &Normalisation,
        geometry: Geometry,
        dt: f64,
    ) -> Self {
        Self {
            network,
            residual: ResidualStep::new(normalisation),
            geometry,
            dt,
            name: "emulator".into(),
        }
    }

    /// The network.
    pub fn network(&self) -> &Network {
        &self.network
    }
}

impl Model for Emulator {
    fn step(&self, state: Tensor<2>, _time: f64) -> Tensor<2> {
        let dtype = float_dtype(&state);
        let x = state.cast(FloatDType::F32);
        self.residual.step(&self.network, x).cast(dtype)
    }

    fn dt(&self) -> f64 {
        self.dt
    }

    fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    fn name(&self) -> &str {
        &self.name
    }
}
