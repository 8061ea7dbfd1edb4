//! Devices and host transfers.
//!
//! Toy-model experiments that reproduce published numbers run in f64 on the
//! CPU ([`cpu_f64`]). burn silently casts f64 data to f32 unless the device is
//! configured before its first use, so every f64 device in rime comes from
//! here.

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
