//! The LETKF's local analyses as batched tensor operations on the device
//! (`engine = "device"`), beside the threaded host path.
//!
//! Points are analysed in chunks. For each point the tapered local
//! observations are gathered on the host into `G` (`p_max x N`, rows
//! `sqrt(c_j) Y_j`, zero-padded) and `d` (`sqrt(c_j) dy_j`); on the device,
//! for the whole chunk at once, `C = G^T G + N1 I` and `b = G^T d` (batched
//! matrix products). burn has no batched eigendecomposition, so the
//! symmetric inverse square root `C^{-1/2}` comes from the coupled
//! Newton-Schulz iteration (Higham 2008, ch. 6): with `A = C / |C|_F`,
//! whose eigenvalues lie in `(0, 1]`, `Y_0 = A`, `Z_0 = I`,
//! `T_k = (3 I - Z_k Y_k) / 2`, `Y_{k+1} = Y_k T_k`, `Z_{k+1} = T_k Z_k`;
//! `Z_k` tends to `A^{-1/2}` quadratically once near, and every `Z_k` is a
//! polynomial in `A`, so it stays symmetric. The iteration stops when
//! `max |I - Z_k Y_k|` over the chunk is below the precision's tolerance.
//! Then `C^{-1} b = C^{-1/2} (C^{-1/2} b)` and the analysis row is
//! `mu_i + a_i w + sqrt(N1) a_i C^{-1/2}`: the host LETKF's analysis to the
//! iteration's tolerance (tested). Memory: one chunk's `G` and four `N x N`
//! matrices per point, at most [`CHUNK_VALUES`] values for `G`.

use burn::tensor::{DType, Device, Tensor, TensorData};
use nalgebra::{DMatrix, DVector};

use super::DaError;
use super::localisation::LocalObservations;
use crate::core::Geometry;
use crate::device::to_vec;

/// Points per chunk at most.
const CHUNK_POINTS: usize = 4096;
/// Values of a chunk's gathered observations `G` at most (2^24: 128 MiB in f64).
const CHUNK_VALUES: usize = 1 << 24;
/// Newton-Schulz iterations at most (each halves the distance to the
/// spectrum's far end until close, then squares the error).
const MAX_ITERATIONS: usize = 100;

fn numerical(what: &str) -> DaError {
    DaError::Numerical(format!("LETKF on the device: {what}"))
}

/// The LETKF analysis (`nx x N`) of every state variable from its local
/// observations, with the local transforms computed on `device`.
#[allow(clippy::too_many_arguments)]
pub(super) fn local_update_device(
    mu: &DVector<f64>,
    a: &DMatrix<f64>,
    ys: &DMatrix<f64>,
    dys: &DVector<f64>,
    n1: f64,
    geometry: &Geometry,
    index: &LocalObservations,
    device: &Device,
) -> Result<DMatrix<f64>, DaError> {
    let (nx, n) = a.shape();
    let yt = ys.transpose();
    let mut rows = vec![0.0; nx * n];
    let (mut candidates, mut scratch) = (Vec::new(), Vec::new());
    let mut start = 0;
    while start < nx {
        // Gather the chunk's local observations.
        let mut lists: Vec<Vec<(usize, f64)>> = Vec::new();
        let mut p_max = 1;
        while start + lists.len() < nx && lists.len() < CHUNK_POINTS {
            let i = start + lists.len();
            let obs = index
                .of(geometry, i, &mut candidates, &mut scratch)
                .to_vec();
            let wider = p_max.max(obs.len());
            if !lists.is_empty() && (lists.len() + 1) * wider * n > CHUNK_VALUES {
                break;
            }
            p_max = wider;
            lists.push(obs);
        }
        let m = lists.len();
        let mut g = vec![0.0; m * p_max * n];
        let mut d = vec![0.0; m * p_max];
        let mut arow = vec![0.0; m * n];
        for (r, obs) in lists.iter().enumerate() {
            for (k, &(j, c)) in obs.iter().enumerate() {
                let s = c.sqrt();
                let at = (r * p_max + k) * n;
                for (gv, y) in g[at..at + n].iter_mut().zip(yt.column(j).iter()) {
                    *gv = s * y;
                }
                d[r * p_max + k] = s * dys[j];
            }
            for (q, v) in arow[r * n..(r + 1) * n].iter_mut().enumerate() {
                *v = a[(start + r, q)];
            }
        }
        let out = chunk(&g, &d, &arow, m, p_max, n, n1, device)?;
        for r in 0..m {
            let i = start + r;
            for q in 0..n {
                rows[i * n + q] = mu[i] + out[r * n + q];
            }
        }
        start += m;
    }
    Ok(DMatrix::from_row_slice(nx, n, &rows))
}

/// The analysis increments-plus-anomalies `a_i w + sqrt(N1) a_i C^{-1/2}`
/// of one chunk of `m` points, row-major `m x N`.
#[allow(clippy::too_many_arguments)]
fn chunk(
    g: &[f64],
    d: &[f64],
    arow: &[f64],
    m: usize,
    p: usize,
    n: usize,
    n1: f64,
    device: &Device,
) -> Result<Vec<f64>, DaError> {
    let g = Tensor::<3>::from_data(TensorData::new(g.to_vec(), [m, p, n]), device);
    let d = Tensor::<3>::from_data(TensorData::new(d.to_vec(), [m, p, 1]), device);
    let arow = Tensor::<3>::from_data(TensorData::new(arow.to_vec(), [m, 1, n]), device);
    let eye = Tensor::<2>::eye(n, device)
        .unsqueeze::<3>()
        .expand([m, n, n]);
    let gt = g.clone().swap_dims(1, 2);
    let c = gt.clone().matmul(g) + eye.clone() * n1;
    let b = gt.matmul(d);
    // Scale each matrix by its Frobenius norm (at least its largest eigenvalue).
    let norm = (c.clone() * c.clone()).sum_dim(2).sum_dim(1).sqrt();
    let inv_norm = norm.recip();
    let mut y = c * inv_norm.clone();
    let mut z = eye.clone();
    let tolerance = if y.dtype() == DType::F64 { 1e-11 } else { 1e-4 };
    let mut converged = false;
    for _ in 0..MAX_ITERATIONS {
        let zy = z.clone().matmul(y.clone());
        let residual = to_vec((eye.clone() - zy.clone()).abs().max())[0];
        if !residual.is_finite() {
            return Err(numerical("the local matrices are not finite"));
        }
        if residual < tolerance {
            converged = true;
            break;
        }
        let t = (eye.clone() * 3.0 - zy) * 0.5;
        y = y.matmul(t.clone());
        z = t.matmul(z);
    }
    if !converged {
        return Err(numerical(
            "the Newton-Schulz inverse square root did not converge",
        ));
    }
    // C^{-1/2} = Z / sqrt(|C|_F).
    let root = z * inv_norm.sqrt();
    let w = root.clone().matmul(root.clone().matmul(b));
    let out = arow.clone().matmul(w) + arow.matmul(root) * n1.sqrt();
    Ok(to_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::da::ensemble::mean_and_anomalies;
    use crate::da::localisation::Taper;
    use crate::device::cpu_f64;
    use crate::rng::{standard_normal, stream};

    /// On a periodic chain with every second variable observed, the device
    /// analysis equals the host LETKF's (eigendecomposition) to 1e-9, for
    /// two radii and with points that see no observation.
    #[test]
    fn device_letkf_equals_the_host_letkf() {
        let device = cpu_f64();
        let (nx, n) = (30, 6);
        let geometry = Geometry::chain(nx, true, "x");
        let observed: Vec<usize> = (0..nx).step_by(2).collect();
        let mut rng = stream(5, "device-letkf");
        let e = DMatrix::from_vec(nx, n, standard_normal(&mut rng, nx * n));
        let (mu, a) = mean_and_anomalies(&e);
        let ys = DMatrix::from_fn(observed.len(), n, |r, q| a[(observed[r], q)] / 0.8);
        let dys = DVector::from_vec(standard_normal(&mut rng, observed.len()));
        let locations: Vec<_> = observed.iter().map(|&i| geometry.location(i)).collect();
        for radius in [0.4, 3.0] {
            let index = LocalObservations::new(&geometry, &locations, radius, Taper::GaspariCohn);
            let n1 = (n - 1) as f64;
            let host =
                super::super::ensemble::local_update(&mu, &a, &ys, &dys, n1, &geometry, &index)
                    .unwrap();
            let dev =
                local_update_device(&mu, &a, &ys, &dys, n1, &geometry, &index, &device).unwrap();
            let diff = (&host - &dev).abs().max();
            assert!(diff < 1e-9, "radius {radius}: {diff}");
            // The observations moved the ensemble (the comparison is not
            // of two copies of the prior).
            assert!((&dev - &e).abs().max() > 0.05, "radius {radius}");
            eprintln!("radius {radius}: max |host - device| = {diff:.2e}");
        }
    }
}
