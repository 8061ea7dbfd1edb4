//! Small dense algebra for the ensemble transforms.

use nalgebra::{DMatrix, DVector};

use super::eigen::symmetric_eigen;

use crate::rng::{Rng, standard_normal};

/// For a symmetric positive-definite `c`, returns `(c^{-1}, c^{-1/2})` from
/// one eigendecomposition.
///
/// # Errors
/// `None` if an eigenvalue is not positive and finite.
pub fn inverse_and_inverse_sqrt(c: DMatrix<f64>) -> Option<(DMatrix<f64>, DMatrix<f64>)> {
    let (values, v) = symmetric_eigen(&c)?;
    if values.iter().any(|&d| !(d > 0.0 && d.is_finite())) {
        return None;
    }
    let inv = scale_columns(&v, values.map(|d| 1.0 / d)) * v.transpose();
    let inv_sqrt = scale_columns(&v, values.map(|d| 1.0 / d.sqrt())) * v.transpose();
    Some((inv, inv_sqrt))
}

fn scale_columns(v: &DMatrix<f64>, s: DVector<f64>) -> DMatrix<f64> {
    let mut out = v.clone();
    for (mut col, f) in out.column_iter_mut().zip(s.iter()) {
        col *= *f;
    }
    out
}

/// A Haar-distributed random orthogonal `m x m` matrix: the Q factor of a
/// Gaussian matrix with a positive diagonal in R (Mezzadri 2007), computed
/// by modified Gram-Schmidt, which yields that R directly.
pub fn random_orthogonal(m: usize, rng: &mut Rng) -> DMatrix<f64> {
    let mut q = DMatrix::from_vec(m, m, standard_normal(rng, m * m));
    for j in 0..m {
        for k in 0..j {
            let (done, mut rest) = q.columns_range_pair_mut(k, j..);
            let r = done.dot(&rest.column(0));
            rest.column_mut(0).axpy(-r, &done, 1.0);
        }
        let norm = q.column(j).norm();
        q.column_mut(j).unscale_mut(norm);
    }
    q
}

/// The Householder reflection `V = I - scale v v^T` that swaps `e_1` and
/// the ones-vector over `sqrt n`: its last `n - 1` columns are an
/// orthonormal basis of the vectors orthogonal to the ones.
pub fn ones_reflection(n: usize) -> (DVector<f64>, f64) {
    let mut v = DVector::from_element(n, -1.0 / (n as f64).sqrt());
    v[0] += 1.0;
    let scale = 2.0 / v.norm_squared();
    (v, scale)
}

/// A random orthogonal `n x n` matrix that maps the ones-vector to itself,
/// so rotating anomalies with it keeps them centred (DAPPER's `genOG_1`).
///
/// Built as `V diag(1, Q) V` with `V = I - 2 v v^T / |v|^2` the Householder
/// reflection taking `e_1` to `1/sqrt(n)` and `Q` Haar on the orthogonal
/// complement; the reflections are applied in `O(n^2)`.
pub fn random_mean_preserving_orthogonal(n: usize, rng: &mut Rng) -> DMatrix<f64> {
    if n == 1 {
        return DMatrix::identity(1, 1);
    }
    let (v, scale) = ones_reflection(n);
    let mut m = DMatrix::identity(n, n);
    m.view_mut((1, 1), (n - 1, n - 1))
        .copy_from(&random_orthogonal(n - 1, rng));
    // M <- V M: subtract scale v (v^T M).
    let vt_m = v.transpose() * &m;
    m.ger(-scale, &v, &vt_m.transpose(), 1.0);
    // M <- M V: subtract scale (M v) v^T.
    let m_v = &m * &v;
    m.ger(-scale, &m_v, &v, 1.0);
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::stream;

    #[test]
    fn mean_preserving_rotation_is_orthogonal_and_fixes_ones() {
        let mut rng = stream(3, "rot");
        let q = random_mean_preserving_orthogonal(7, &mut rng);
        let identity = DMatrix::<f64>::identity(7, 7);
        assert!((q.transpose() * &q - identity).abs().max() < 1e-12);
        let ones = DVector::from_element(7, 1.0);
        assert!((&q * &ones - ones).abs().max() < 1e-12);
    }

    #[test]
    fn inverse_sqrt_squares_to_inverse() {
        let a = DMatrix::from_fn(4, 4, |i, j| {
            if i == j {
                3.0
            } else {
                0.5 / (1.0 + (i + j) as f64)
            }
        });
        let (inv, s) = inverse_and_inverse_sqrt(a.clone()).unwrap();
        assert!((&s * &s - &inv).abs().max() < 1e-12);
        assert!((inv * a - DMatrix::identity(4, 4)).abs().max() < 1e-12);
    }
}
