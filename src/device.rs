//! Devices and host transfers.
//!
//! The device is the user's choice ([`DeviceChoice`]: `--device` or
//! `[run] device`), never hard-coded: the CPU (burn's `flex`, f64 by
//! default, as the published toy-model numbers need), or a GPU through the
//! `wgpu` or `cuda` features (f32 by default). burn silently casts f64 data
//! to f32 unless the device is configured before its first use, so every
//! device in rime comes from [`select`].
//!
//! The transfers below are the explicit cast at the seam between a model's
//! float type and the f64 of DA algebra: host data enters a device in the
//! device's float type and leaves it as f64.

use std::sync::OnceLock;

use burn::tensor::{Device, DeviceConfig, FloatDType, Tensor, TensorData};
use nalgebra::DMatrix;

/// The CPU device (burn's `flex` backend) configured for f64 floats.
///
/// Configuration happens once per process, before any tensor is created on
/// the device.
///
/// # Panics
/// If something created tensors on `Device::flex()` before the first call
/// and left it in f32 (burn then refuses to reconfigure it).
pub fn cpu_f64() -> Device {
    static DEVICE: OnceLock<Device> = OnceLock::new();
    DEVICE
        .get_or_init(|| {
            let mut device = Device::flex();
            // An error means the defaults were already set; the check below
            // tells whether they are usable.
            let _ = device.configure(DeviceConfig::default().float_dtype(FloatDType::F64));
            let probe = Tensor::<1>::zeros([1], &device);
            assert_eq!(
                probe.dtype(),
                burn::tensor::DType::F64,
                "the flex device was used before rime::device::cpu_f64() could configure it for f64"
            );
            device
        })
        .clone()
}

/// Where models run.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// burn's `flex` CPU backend.
    #[default]
    Cpu,
    /// A GPU through wgpu (Vulkan, Metal, WebGPU); needs the `wgpu` feature.
    Wgpu,
    /// An NVIDIA GPU through CUDA; needs the `cuda` feature.
    Cuda,
}

/// The float type models run in.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Double precision (the CPU default).
    F64,
    /// Single precision (the GPU default; networks train in it).
    F32,
}

impl DeviceChoice {
    /// The name as written in files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            DeviceChoice::Cpu => "cpu",
            DeviceChoice::Wgpu => "wgpu",
            DeviceChoice::Cuda => "cuda",
        }
    }

    /// The default float type on this device.
    pub fn default_precision(self) -> Precision {
        match self {
            DeviceChoice::Cpu => Precision::F64,
            DeviceChoice::Wgpu | DeviceChoice::Cuda => Precision::F32,
        }
    }
}

/// Why a device cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The build lacks the backend.
    #[error("device `{device}` needs rime built with `--features {device}`")]
    NotCompiled {
        /// The device's name.
        device: &'static str,
    },
    /// The device was already configured with another float type.
    #[error(
        "device `{device}` is already in use with another float type; use one precision per process"
    )]
    Precision {
        /// The device's name.
        device: &'static str,
    },
}

/// The device for a choice and precision, configured before first use.
///
/// # Errors
/// A backend not compiled in, or a device already configured otherwise.
pub fn select(choice: DeviceChoice, precision: Option<Precision>) -> Result<Device, DeviceError> {
    let precision = precision.unwrap_or(choice.default_precision());
    let mut device = match choice {
        DeviceChoice::Cpu if precision == Precision::F64 => return Ok(cpu_f64()),
        DeviceChoice::Cpu => Device::flex(),
        #[cfg(feature = "wgpu")]
        DeviceChoice::Wgpu => Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
        #[cfg(not(feature = "wgpu"))]
        DeviceChoice::Wgpu => return Err(DeviceError::NotCompiled { device: "wgpu" }),
        #[cfg(feature = "cuda")]
        DeviceChoice::Cuda => Device::cuda(0),
        #[cfg(not(feature = "cuda"))]
        DeviceChoice::Cuda => return Err(DeviceError::NotCompiled { device: "cuda" }),
    };
    let dtype = match precision {
        Precision::F64 => FloatDType::F64,
        Precision::F32 => FloatDType::F32,
    };
    let _ = device.configure(DeviceConfig::default().float_dtype(dtype));
    let probe = Tensor::<1>::zeros([1], &device);
    let want = match precision {
        Precision::F64 => burn::tensor::DType::F64,
        Precision::F32 => burn::tensor::DType::F32,
    };
    if probe.dtype() != want {
        return Err(DeviceError::Precision {
            device: choice.name(),
        });
    }
    Ok(device)
}

/// The f64 CPU device with autodiff enabled.
pub fn cpu_f64_autodiff() -> Device {
    cpu_f64().autodiff()
}

/// Copies an ensemble held as an `n x members` matrix (one member per
/// column) to a `[members, n]` tensor. nalgebra is column-major, so the
/// memory of the matrix is already the row-major layout of the tensor.
pub fn ensemble_to_tensor(ensemble: &DMatrix<f64>, device: &Device) -> Tensor<2> {
    let (n, members) = ensemble.shape();
    Tensor::from_data(
        TensorData::new(ensemble.as_slice().to_vec(), [members, n]),
        device,
    )
}

/// Copies a `[members, n]` tensor to the host as an `n x members` matrix.
pub fn tensor_to_ensemble(tensor: Tensor<2>) -> DMatrix<f64> {
    let [members, n] = tensor.dims();
    let values: Vec<f64> = tensor
        .into_data()
        .convert::<f64>()
        .try_into_vec()
        .expect("float tensor data converts to f64");
    DMatrix::from_vec(n, members, values)
}

/// Copies a row-major `[rows, cols]` slice to a tensor.
pub fn tensor_from_rows(values: &[f64], rows: usize, cols: usize, device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(values.to_vec(), [rows, cols]), device)
}

/// Reads any float tensor back as a flat row-major `Vec<f64>`.
pub fn to_vec<const D: usize>(tensor: Tensor<D>) -> Vec<f64> {
    tensor
        .into_data()
        .convert::<f64>()
        .try_into_vec()
        .expect("float tensor data converts to f64")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f64_survives_the_round_trip() {
        let device = cpu_f64();
        let x = DMatrix::from_fn(3, 2, |i, j| 1.0 + 1e-12 * (i * 2 + j) as f64);
        let t = ensemble_to_tensor(&x, &device);
        assert_eq!(t.dims(), [2, 3]);
        let back = tensor_to_ensemble(t);
        assert_eq!(back, x);
    }

    #[test]
    fn device_choices_are_honoured_or_refused() {
        assert!(select(DeviceChoice::Cpu, None).is_ok());
        #[cfg(not(feature = "wgpu"))]
        assert!(
            select(DeviceChoice::Wgpu, None)
                .unwrap_err()
                .to_string()
                .contains("--features wgpu")
        );
        #[cfg(not(feature = "cuda"))]
        assert!(select(DeviceChoice::Cuda, None).is_err());
    }

    #[test]
    fn autodiff_device_is_f64_too() {
        let device = cpu_f64_autodiff();
        let x = Tensor::<1>::from_data(TensorData::new(vec![1.0 + 1e-12, 2.0], [2]), &device)
            .require_grad();
        assert_eq!(x.dtype(), burn::tensor::DType::F64);
        let y = x.clone().mul(x.clone()).sum();
        let grads = y.backward();
        let g = x.grad(&grads).unwrap();
        assert_eq!(g.dtype(), burn::tensor::DType::F64);
        let g = to_vec(g);
        assert_eq!(g[0], 2.0 * (1.0 + 1e-12), "{g:?}");
    }
}
