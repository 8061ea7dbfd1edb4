//! Small dense algebra for the ensemble transforms.

use nalgebra::{DMatrix, DVector, SymmetricEigen};

use crate::rng::{Rng, standard_normal};

/// For a symmetric positive-definite `c`, returns `(c^{-1}, c^{-1/2})` from
/// one eigendecomposition.
///
/// # Errors
/// `None` if an eigenvalue is not positive and finite.
pub fn inverse_and_inverse_sqrt(c: DMatrix<f64>) -> Option<(DMatrix<f64>, DMatrix<f64>)> {
    let eig = SymmetricEigen::new(c);
    if eig.eigenvalues.iter().any(|&d| !(d > 0.0 && d.is_finite())) {
        return None;
    }
    let v = &eig.eigenvectors;
    let inv = scale_columns(v, eig.eigenvalues.map(|d| 1.0 / d)) * v.transpose();
    let inv_sqrt = scale_columns(v, eig.eigenvalues.map(|d| 1.0 / d.sqrt())) * v.transpose();
    Some((inv, inv_sqrt))
}

fn scale_columns(v: &DMatrix<f64>, s: DVector<f64>) -> DMatrix<f64> {
    let mut out = v.clone();
    for (mut col, f) in out.column_iter_mut().zip(s.iter()) {
        col *= *f;
    }
    out
}

/// A Haar-distributed random orthogonal `m x m` matrix: QR of a Gaussian
/// matrix with the signs of `diag(R)` moved into `Q` (Mezzadri 2007).
pub fn random_orthogonal(m: usize, rng: &mut Rng) -> DMatrix<f64> {
    let z = DMatrix::from_vec(m, m, standard_normal(rng, m * m));
    let qr = z.qr();
    let (mut q, r) = (qr.q(), qr.r());
    for j in 0..m {
        if r[(j, j)] < 0.0 {
            q.column_mut(j).neg_mut();
        }
    }
    q
}

/// A random orthogonal `n x n` matrix that maps the ones-vector to itself,
/// so rotating anomalies with it keeps them centred (DAPPER's `genOG_1`).
///
/// Built as `V diag(1, Q) V^T` with `V` a Householder reflection taking
/// `e_1` to `1/sqrt(n)` and `Q` Haar on the orthogonal complement.
pub fn random_mean_preserving_orthogonal(n: usize, rng: &mut Rng) -> DMatrix<f64> {
    if n == 1 {
        return DMatrix::identity(1, 1);
    }
    let mut v = DVector::from_element(n, -1.0 / (n as f64).sqrt());
    v[0] += 1.0;
    let householder = DMatrix::identity(n, n) - &v * v.transpose() * (2.0 / v.norm_squared());
    let mut block = DMatrix::identity(n, n);
    block
        .view_mut((1, 1), (n - 1, n - 1))
        .copy_from(&random_orthogonal(n - 1, rng));
    &householder * block * householder.transpose()
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
        let a = DMatrix::from_fn(4, 4, |i, j| if i == j { 3.0 } else { 0.5 / (1.0 + (i + j) as f64) });
        let (inv, s) = inverse_and_inverse_sqrt(a.clone()).unwrap();
        assert!((&s * &s - &inv).abs().max() < 1e-12);
        assert!((inv * a - DMatrix::identity(4, 4)).abs().max() < 1e-12);
    }
}
