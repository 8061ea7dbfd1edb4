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
//! A model with an external forcing (the sea ice's wind) is emulated with
//! the forcing as input: each forcing field at the start and the end of the
//! step enters as extra channels, normalised by its moments over the
//! training records, and as a [`Model`] the emulator reads it by model time
//! from a trajectory file ([`ForcingSource`]).
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
    /// Variables that never changed in the training data (land, a fixed
    /// boundary such as QG's `psi = 0`): a learned model leaves them as
    /// they are.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fixed: Vec<usize>,
    /// Mean of each forcing variable (an emulator of a forced model).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forcing_mean: Vec<f64>,
    /// Standard deviation of each forcing variable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forcing_std: Vec<f64>,
}

impl Normalisation {
    /// Moments pooled over all variables that change (a homogeneous field,
    /// such as a Lorenz-96 ring, where every variable has the same
    /// statistics), so that a shift-equivariant network stays equivariant;
    /// variables whose increments are exactly zero in the training data are
    /// [`fixed`](Normalisation::fixed) and left out of the pool.
    pub fn pooled(stats: &super::data::Statistics) -> Self {
        Self::pooled_by(stats, &[stats.mean.len()])
    }

    /// [`pooled`](Self::pooled) within each of consecutive `blocks` of
    /// variables (the fields of a multi-field state, such as a sea ice's
    /// thickness and concentration, each with its own units).
    pub fn pooled_by(stats: &super::data::Statistics, blocks: &[usize]) -> Self {
        let len = stats.mean.len();
        assert_eq!(blocks.iter().sum::<usize>(), len, "blocks cover the state");
        let fixed: Vec<usize> = (0..len)
            .filter(|&i| stats.increment_std[i] == 0.0 && stats.increment_mean[i] == 0.0)
            .collect();
        let mut out = Self {
            mean: Vec::with_capacity(len),
            std: Vec::with_capacity(len),
            increment_mean: Vec::with_capacity(len),
            increment_std: Vec::with_capacity(len),
            fixed: Vec::new(),
            forcing_mean: Vec::new(),
            forcing_std: Vec::new(),
        };
        let mut start = 0;
        for &b in blocks {
            let free: Vec<usize> = (start..start + b).filter(|i| !fixed.contains(i)).collect();
            let n = free.len().max(1) as f64;
            let pool = |m: &[f64], s: &[f64]| -> (f64, f64) {
                let mean = free.iter().map(|&i| m[i]).sum::<f64>() / n;
                let var = free
                    .iter()
                    .map(|&i| s[i] * s[i] + (m[i] - mean) * (m[i] - mean))
                    .sum::<f64>()
                    / n;
                (mean, var.sqrt().max(1e-12))
            };
            let (mu, sigma) = pool(&stats.mean, &stats.std);
            let (dmu, dsigma) = pool(&stats.increment_mean, &stats.increment_std);
            out.mean.extend(std::iter::repeat_n(mu, b));
            out.std.extend(std::iter::repeat_n(sigma, b));
            out.increment_mean.extend(std::iter::repeat_n(dmu, b));
            out.increment_std.extend(std::iter::repeat_n(dsigma, b));
            start += b;
        }
        // Every variable fixed: nothing to learn, nothing to mask.
        if fixed.len() < len {
            out.fixed = fixed;
        }
        out
    }

    /// `(f - mean) / std` of the forcing variables laid end to end
    /// (`values.len() / forcing_mean.len()` values each), in f32.
    pub fn normalise_forcing(&self, values: &[f64], out: &mut Vec<f32>) {
        let g = self.forcing_mean.len();
        let len = values.len() / g.max(1);
        for (k, f) in values.chunks(len.max(1)).enumerate() {
            let (m, inv) = (self.forcing_mean[k], 1.0 / self.forcing_std[k]);
            out.extend(f.iter().map(|v| ((v - m) * inv) as f32));
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
    /// The training data file(s), comma-separated.
    pub data: String,
    /// The training configuration file.
    pub config: String,
    /// Where training stands.
    pub training: TrainingState,
    /// The generative model, for a surrogate (absent: a deterministic
    /// emulator).
    #[serde(default)]
    pub generative: Option<super::generative::GenerativeConfig>,
    /// The physical model and coupling, for a hybrid (absent: a pure
    /// emulator); the normalisation's increments are then the physical
    /// model's one-interval errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hybrid: Option<super::hybrid::HybridConfig>,
    /// The shape of the state the network sees (one field's dimensions,
    /// `[n]` if absent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shape: Vec<usize>,
    /// The forcing variables the network takes (`forcing_<name>` of the
    /// data), each at the start and the end of a step; their moments are
    /// in the normalisation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forcing: Vec<String>,
    /// FNV-1a (64-bit, hex) of the weights and the optimiser state as
    /// saved, checked at load: a changed byte is refused (any single-byte
    /// change alters it). Absent in checkpoints written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
}

/// FNV-1a, 64 bits, over `sections` in order, as 16 hex digits. Each byte
/// maps the state through a bijection, so changing any one byte always
/// changes the result.
pub fn checksum(sections: &[&[u8]]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for section in sections {
        for &b in *section {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

impl CheckpointHeader {
    /// Input channels of the network: 1 for an emulator, 3 for a
    /// generative surrogate (noisy sample, condition, noise level).
    pub fn inputs(&self) -> usize {
        if self.generative.is_some() { 3 } else { 1 }
    }

    /// Extra input channels: each forcing variable at the start and the
    /// end of the step.
    pub fn extra(&self) -> usize {
        2 * self.forcing.len()
    }

    /// Fields of the state (`[fields, ny, nx]` states have several).
    pub fn fields(&self) -> usize {
        match self.shape.as_slice() {
            [f, _, _] => *f,
            _ => 1,
        }
    }

    /// The shape of the state the network sees.
    pub fn shape(&self) -> Vec<usize> {
        if self.shape.is_empty() {
            vec![self.n]
        } else {
            self.shape.clone()
        }
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

/// Writes `magic` then each section as a little-endian `u64` length and
/// its bytes, atomically (a killed write leaves the old file).
///
/// # Errors
/// A file that cannot be written.
pub(crate) fn write_sections(
    path: &Path,
    magic: &[u8; 8],
    sections: &[&[u8]],
) -> Result<(), String> {
    let total: usize = sections.iter().map(|s| s.len() + 8).sum();
    let mut bytes = Vec::with_capacity(8 + total);
    bytes.extend_from_slice(magic);
    for section in sections {
        bytes.extend_from_slice(&(section.len() as u64).to_le_bytes());
        bytes.extend_from_slice(section);
    }
    crate::io::write_atomic(path, &bytes).map_err(|e| e.to_string())
}

/// Reads the sections named `names` of a file written by
/// [`write_sections`]; errors name the file (`foreign` when it does not
/// start with `magic`) and the section where it is truncated.
///
/// # Errors
/// A missing, foreign or truncated file.
pub(crate) fn read_sections(
    path: &Path,
    magic: &[u8; 8],
    names: &[&str],
    foreign: &str,
) -> Result<Vec<Vec<u8>>, String> {
    let err = |what: &str| format!("{}: {what}", path.display());
    let bytes = std::fs::read(path).map_err(|e| err(&e.to_string()))?;
    if bytes.len() < 8 || &bytes[..8] != magic {
        return Err(err(foreign));
    }
    let mut at = 8;
    let mut sections = Vec::new();
    for name in names {
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
    Ok(sections)
}

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
        let mut header = self.header.clone();
        header.checksum = Some(checksum(&[&self.weights, &self.optimizer]));
        let header = serde_json::to_vec_pretty(&header).map_err(|e| e.to_string())?;
        write_sections(path, MAGIC, &[&header, &self.weights, &self.optimizer])
    }

    /// Reads a checkpoint; errors name the file.
    ///
    /// # Errors
    /// A missing, truncated or foreign file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let err = |what: &str| format!("{}: {what}", path.display());
        let mut sections = read_sections(
            path,
            MAGIC,
            &["header", "weights", "optimiser state"],
            "not a rime checkpoint (it does not start with RIMECKPT)",
        )?;
        let optimizer = sections.pop().expect("three sections");
        let weights = sections.pop().expect("three sections");
        let header: CheckpointHeader =
            serde_json::from_slice(&sections[0]).map_err(|e| err(&format!("bad header: {e}")))?;
        if let Some(stored) = &header.checksum {
            let actual = checksum(&[&weights, &optimizer]);
            if &actual != stored {
                return Err(err(&format!(
                    "the weights or optimiser state fail their checksum ({actual}, the header says {stored}): the file was changed or damaged after it was written; train again or restore a copy"
                )));
            }
        }
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
        let shape = self.header.shape();
        self.header.architecture.fits(&shape)?;
        self.header
            .architecture
            .init_with_extra(
                self.header.inputs(),
                self.header.extra(),
                &shape,
                self.header.seed,
                device,
            )
            .try_load_record(record)
            .map_err(|e| e.to_string())
            .and_then(|network| {
                // A NaN or infinite weight would only show as a forecast
                // that blows up at its first step.
                let mut finite = FiniteWeights::default();
                network.visit(&mut finite);
                match finite.bad {
                    0 => Ok(network),
                    bad => Err(format!(
                        "{bad} of {} weights are not finite (NaN or infinite): the network cannot forecast; train again",
                        finite.count
                    )),
                }
            })
    }
}

/// Counts the weights of a network and the non-finite ones among them.
#[derive(Default)]
struct FiniteWeights {
    count: usize,
    bad: usize,
}

impl burn::module::ModuleVisitor for FiniteWeights {
    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
        let values = param.val().into_data().convert::<f32>();
        let values = values.as_slice::<f32>().unwrap_or(&[]);
        self.count += values.len();
        self.bad += values.iter().filter(|v| !v.is_finite()).count();
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
    /// 1 where a variable may change, 0 where it is fixed; `None` when
    /// none is fixed (no extra operation).
    free: Option<Vec<f32>>,
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
            free: (!norm.fixed.is_empty()).then(|| {
                let mut free = vec![1.0; norm.mean.len()];
                for &i in &norm.fixed {
                    free[i] = 0.0;
                }
                free
            }),
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
    /// Fixed variables keep their value.
    pub fn advance(&self, x: Tensor<2>, y: Tensor<2>) -> Tensor<2> {
        let device = x.device();
        match &self.free {
            // `x + mu_d + sigma_d y` in this order, the arithmetic the
            // emulators were trained and scored with.
            None => {
                x + Self::row(&self.increment_mean, &device)
                    + y * Self::row(&self.increment_std, &device)
            }
            Some(_) => x + self.correction(y),
        }
    }

    /// `mu_d + sigma_d y`: the increment of the normalised increment `y`
    /// (zero at fixed variables).
    pub fn correction(&self, y: Tensor<2>) -> Tensor<2> {
        let device = y.device();
        let c =
            Self::row(&self.increment_mean, &device) + y * Self::row(&self.increment_std, &device);
        match &self.free {
            None => c,
            Some(free) => c * Self::row(free, &device),
        }
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
        self.step_forced(network, x, None)
    }

    /// One step under normalised forcing channels `[batch, extra, m]`
    /// (see [`Network::forward_extra`]).
    pub fn step_forced(
        &self,
        network: &Network,
        x: Tensor<2>,
        forcing: Option<Tensor<3>>,
    ) -> Tensor<2> {
        let z = self.scaling.normalise(x.clone());
        let y = match forcing {
            None => network.forward(z),
            Some(f) => {
                let [b, n] = z.dims();
                network
                    .forward_extra(z.reshape([b, 1, n]), Some(f))
                    .reshape([b, n])
            }
        };
        self.scaling.advance(x, y)
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

/// The forcing of a forced emulator or surrogate through an experiment:
/// the `forcing_*` variables of a trajectory file, looked up by time.
#[derive(Clone, Debug)]
pub struct ForcingSource {
    path: PathBuf,
    times: Vec<f64>,
    /// Normalised, f32, per record.
    values: Vec<Vec<f32>>,
    len: usize,
    tolerance: f64,
}

impl ForcingSource {
    /// Reads the forcing variables `header.forcing` of `path`, normalised
    /// as the network was trained.
    ///
    /// # Errors
    /// An unreadable file, or one without those variables or sizes.
    pub fn load(path: &Path, header: &CheckpointHeader) -> Result<Self, String> {
        let data = super::data::Trajectories::read(path, [1.0, 0.0])?;
        if data.forcing_variables != header.forcing {
            return Err(format!(
                "{}: forcing variables {:?}; the network takes {:?}",
                path.display(),
                data.forcing_variables,
                header.forcing
            ));
        }
        let len = data.forcing_len;
        let expected = header.n / header.fields();
        if !matches!(header.architecture, Architecture::Cnn1d { .. }) && len != expected {
            return Err(format!(
                "{}: forcing fields of {len} values; the network's fields have {expected}",
                path.display()
            ));
        }
        let values = (0..data.records())
            .map(|t| {
                let mut v = Vec::with_capacity(header.forcing.len() * len);
                header
                    .normalisation
                    .normalise_forcing(data.forcing_at(t), &mut v);
                v
            })
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            tolerance: 1e-6 * header.interval.abs().max(1e-12),
            times: data.times,
            values,
            len,
        })
    }

    /// The normalised forcing record at `time`.
    ///
    /// # Panics
    /// A time the file does not hold (the message names the file and
    /// its times): the experiment runs past the forcing it was given.
    fn at(&self, time: f64) -> &[f32] {
        let k = self
            .times
            .iter()
            .position(|t| (t - time).abs() <= self.tolerance)
            .unwrap_or_else(|| {
                panic!(
                    "{}: no forcing record at model time {time} (the file holds {} records from {} to {}); give `forcing` a file that covers the run",
                    self.path.display(),
                    self.times.len(),
                    self.times[0],
                    self.times[self.times.len() - 1]
                )
            });
        &self.values[k]
    }

    /// The forcing channels `[batch, 2 g, len]` of a step from `time` to
    /// `time + dt`, the same for every member.
    pub fn channels(&self, time: f64, dt: f64, batch: usize, device: &Device) -> Tensor<3> {
        let (a, b) = (self.at(time), self.at(time + dt));
        let mut v = Vec::with_capacity(a.len() + b.len());
        v.extend_from_slice(a);
        v.extend_from_slice(b);
        let c = v.len() / self.len;
        f32_tensor(v, [1, c, self.len], device).expand([batch, c, self.len])
    }
}

/// The `[model] name = "emulator"` table: a trained checkpoint (a
/// deterministic emulator, a generative surrogate or a hybrid model,
/// whichever the checkpoint holds).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmulatorConfig {
    /// The checkpoint (`rime train` writes `emulator.ckpt`); a relative path
    /// is taken from the experiment file's folder.
    pub checkpoint: PathBuf,
    /// For a generative surrogate: the scale of its sampling noise (1: as
    /// trained; below 1 narrows the ensemble). A calibration chosen on
    /// validation data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// For a network trained with forcing (a sea ice's wind): a trajectory
    /// file whose `forcing_*` variables give it at every step of the run
    /// (`rime simulate` of the physical model under that forcing writes
    /// one); relative to the experiment file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forcing: Option<PathBuf>,
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
        if let Some(t) = self.temperature
            && (checkpoint.header.generative.is_none() || !(t > 0.0 && t.is_finite()))
        {
            return Err(BuildError::invalid(
                "temperature",
                format!(
                    "must be a positive number for a generative surrogate; got {t} for {} checkpoint",
                    if checkpoint.header.generative.is_some() {
                        "a generative"
                    } else {
                        "a deterministic"
                    }
                ),
            ));
        }
        let forcing = match (&self.forcing, checkpoint.header.forcing.is_empty()) {
            (None, true) => None,
            (Some(path), false) => Some(
                ForcingSource::load(path, &checkpoint.header)
                    .map_err(|e| BuildError::invalid("forcing", e))?,
            ),
            (None, false) => {
                return Err(BuildError::invalid(
                    "forcing",
                    format!(
                        "the network takes the forcing {:?}: give a trajectory file holding it over the run",
                        checkpoint.header.forcing
                    ),
                ));
            }
            (Some(_), true) => {
                return Err(BuildError::invalid(
                    "forcing",
                    "the network was trained without forcing",
                ));
            }
        };
        if let Some(config) = &checkpoint.header.generative {
            let geometry = source_geometry(&checkpoint.header, device).map_err(&file)?;
            let network = checkpoint.network(device).map_err(&file)?;
            let generative = super::generative::Generative::with_fields(
                config.clone(),
                &checkpoint.header.normalisation,
                checkpoint.header.fields(),
            );
            return Ok(Box::new(
                super::generative::Surrogate::new(
                    network,
                    generative,
                    geometry,
                    checkpoint.header.interval,
                )
                .with_temperature(self.temperature.unwrap_or(1.0))
                .with_forcing(forcing),
            ));
        }
        if checkpoint.header.hybrid.is_some() {
            return Ok(Box::new(
                super::hybrid::Hybrid::new(&checkpoint, device).map_err(file)?,
            ));
        }
        let mut emulator = Emulator::new(&checkpoint, device).map_err(file)?;
        emulator.forcing = forcing;
        Ok(Box::new(emulator))
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
    forcing: Option<ForcingSource>,
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
        if h.hybrid.is_some() {
            return Err("a hybrid model (load it with `Hybrid::new`), not a pure emulator".into());
        }
        let network = checkpoint.network(device)?;
        let geometry = source_geometry(h, device)?;
        Ok(Self {
            network,
            residual: ResidualStep::new(&h.normalisation),
            geometry,
            dt: h.interval,
            name: "emulator".into(),
            forcing: None,
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
            forcing: None,
        }
    }

    /// The network.
    pub fn network(&self) -> &Network {
        &self.network
    }
}

impl Model for Emulator {
    fn step(&self, state: Tensor<2>, time: f64) -> Tensor<2> {
        let dtype = float_dtype(&state);
        let x = state.cast(FloatDType::F32);
        let forcing = self
            .forcing
            .as_ref()
            .map(|f| f.channels(time, self.dt, x.dims()[0], &x.device()));
        self.residual
            .step_forced(&self.network, x, forcing)
            .cast(dtype)
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
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{cpu_f64, tensor_from_rows, to_vec};
    use crate::learned::data::Statistics;

    /// A variable that never changed in the data (a fixed boundary, land)
    /// is left out of the pooled moments and kept as it is by the emulator.
    #[test]
    fn variables_fixed_in_the_data_stay_fixed() {
        let stats = Statistics {
            mean: vec![1.0, 3.0, 0.0, 2.0],
            std: vec![1.0, 1.0, 0.0, 1.0],
            increment_mean: vec![0.1, 0.3, 0.0, 0.2],
            increment_std: vec![0.5, 0.5, 0.0, 0.5],
        };
        let norm = Normalisation::pooled(&stats);
        assert_eq!(norm.fixed, vec![2]);
        assert!((norm.mean[0] - 2.0).abs() < 1e-12, "{:?}", norm.mean);
        assert!((norm.increment_mean[2] - 0.2).abs() < 1e-12);
        let device = cpu_f64();
        let network = Architecture::Cnn1d {
            channels: 4,
            layers: 2,
            kernel: 3,
            bilinear: false,
        }
        .init(4, 1, &device);
        let emulator = Emulator::from_parts(network, &norm, Geometry::chain(4, true, "x"), 1.0);
        let x = [0.5, -1.0, 0.25, 2.0];
        let y = to_vec(emulator.step(tensor_from_rows(&x, 1, 4, &device), 0.0));
        assert_eq!(y[2], 0.25);
        assert!(y.iter().zip(&x).filter(|(a, b)| a != b).count() == 3);
    }
}
