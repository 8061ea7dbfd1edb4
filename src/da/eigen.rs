//! A fast symmetric eigendecomposition for the small matrices of ensemble
//! transforms (`N x N`, N up to a few hundred).
//!
//! Householder tridiagonalisation followed by the implicit QL algorithm with
//! Wilkinson-style shifts: the EISPACK routines `tred2` and `tql2` as
//! published in the public-domain JAMA library, written for a dense
//! row-major buffer. nalgebra's generic `SymmetricEigen` spends most of its
//! time in bounds checks and reflection bookkeeping at these sizes; this
//! version is several times faster and is checked against it in the tests.

// The EISPACK loops index several arrays at once; iterators would hide that.
#![allow(clippy::needless_range_loop)]

use nalgebra::{DMatrix, DVector};

crate::wide_fn! {
    /// Eigenvalues (ascending) and orthonormal eigenvectors (columns) of a
    /// symmetric matrix. Only the lower triangle of `a` is read.
    ///
    /// Returns `None` if the QL iteration does not converge (non-finite input).
    /// Compiled with AVX2 where the CPU has it (the same bits: the wider
    /// loops are elementwise).
    pub fn symmetric_eigen(a: &DMatrix<f64>) -> Option<(DVector<f64>, DMatrix<f64>)> {
        let n = a.nrows();
        assert_eq!(n, a.ncols(), "symmetric_eigen needs a square matrix");
        // v is row-major: v[i * n + j].
        let mut v = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..=i {
                v[i * n + j] = a[(i, j)];
                v[j * n + i] = a[(i, j)];
            }
        }
        let mut d = vec![0.0; n];
        let mut e = vec![0.0; n];
        tred2(n, &mut v, &mut d, &mut e);
        // tql2 rotates pairs of eigenvector columns; keep them as contiguous
        // rows (w = v^T) so that the rotations stream through memory.
        let mut w = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                w[j * n + i] = v[i * n + j];
            }
        }
        if !tql2(n, &mut w, &mut d, &mut e) {
            return None;
        }
        // Row j of w is eigenvector j: exactly column j of a column-major matrix.
        Some((DVector::from_vec(d), DMatrix::from_vec(n, n, w)))
    }
}

/// `sqrt(a^2 + b^2)`, directly where the squares neither overflow nor
/// underflow (libm's `hypot` guards against both on every call and was a
/// third of the cost of a 7 x 7 decomposition), else by `f64::hypot`.
#[inline]
fn hypot(a: f64, b: f64) -> f64 {
    let s = a * a + b * b;
    if s < 1e300 && s > 1e-300 {
        s.sqrt()
    } else {
        a.hypot(b)
    }
}

/// Householder reduction to tridiagonal form; on return `v` holds the
/// orthogonal transformation, `d` the diagonal and `e[1..]` the sub-diagonal.
#[inline(always)]
fn tred2(n: usize, v: &mut [f64], d: &mut [f64], e: &mut [f64]) {
    if n == 0 {
        return;
    }
    for j in 0..n {
        d[j] = v[(n - 1) * n + j];
    }
    for i in (1..n).rev() {
        // Scale to avoid under/overflow.
        let mut scale = 0.0;
        let mut h = 0.0;
        for k in 0..i {
            scale += d[k].abs();
        }
        if scale == 0.0 {
            e[i] = d[i - 1];
            for j in 0..i {
                d[j] = v[(i - 1) * n + j];
                v[i * n + j] = 0.0;
                v[j * n + i] = 0.0;
            }
        } else {
            // Generate the Householder vector.
            for k in 0..i {
                d[k] /= scale;
                h += d[k] * d[k];
            }
            let mut f = d[i - 1];
            let mut g = h.sqrt();
            if f > 0.0 {
                g = -g;
            }
            e[i] = scale * g;
            h -= f * g;
            d[i - 1] = f - g;
            for j in 0..i {
                e[j] = 0.0;
            }
            // Apply the similarity transformation to the remaining columns.
            for j in 0..i {
                f = d[j];
                v[j * n + i] = f;
                g = e[j] + v[j * n + j] * f;
                for k in (j + 1)..i {
                    g += v[k * n + j] * d[k];
                    e[k] += v[k * n + j] * f;
                }
                e[j] = g;
            }
            f = 0.0;
            for j in 0..i {
                e[j] /= h;
                f += e[j] * d[j];
            }
            let hh = f / (h + h);
            for j in 0..i {
                e[j] -= hh * d[j];
            }
            for j in 0..i {
                f = d[j];
                g = e[j];
                for k in j..i {
                    v[k * n + j] -= f * e[k] + g * d[k];
                }
                d[j] = v[(i - 1) * n + j];
                v[i * n + j] = 0.0;
            }
        }
        d[i] = h;
    }
    // Accumulate the transformations.
    for i in 0..n - 1 {
        v[(n - 1) * n + i] = v[i * n + i];
        v[i * n + i] = 1.0;
        let h = d[i + 1];
        if h != 0.0 {
            for k in 0..=i {
                d[k] = v[k * n + i + 1] / h;
            }
            for j in 0..=i {
                let mut g = 0.0;
                for k in 0..=i {
                    g += v[k * n + i + 1] * v[k * n + j];
                }
                for k in 0..=i {
                    v[k * n + j] -= g * d[k];
                }
            }
        }
        for k in 0..=i {
            v[k * n + i + 1] = 0.0;
        }
    }
    for j in 0..n {
        d[j] = v[(n - 1) * n + j];
        v[(n - 1) * n + j] = 0.0;
    }
    v[(n - 1) * n + n - 1] = 1.0;
    e[0] = 0.0;
}

/// Implicit QL iterations on the tridiagonal matrix; eigenvalues end in `d`
/// (sorted ascending) and eigenvectors in the rows of `w` (the transpose of
/// the accumulated transformation).
#[inline(always)]
fn tql2(n: usize, w: &mut [f64], d: &mut [f64], e: &mut [f64]) -> bool {
    if n == 0 {
        return true;
    }
    for i in 1..n {
        e[i - 1] = e[i];
    }
    e[n - 1] = 0.0;
    let mut f = 0.0;
    let mut tst1: f64 = 0.0;
    let eps = f64::EPSILON;
    for l in 0..n {
        // Find a small sub-diagonal element.
        tst1 = tst1.max(d[l].abs() + e[l].abs());
        let mut m = l;
        while m < n {
            if e[m].abs() <= eps * tst1 {
                break;
            }
            m += 1;
        }
        if m == n {
            m = n - 1;
        }
        // If m == l, d[l] is an eigenvalue; otherwise iterate.
        if m > l {
            let mut iterations = 0;
            loop {
                iterations += 1;
                if iterations > 60 || !d[l].is_finite() {
                    return false;
                }
                // Compute the implicit shift.
                let mut g = d[l];
                let mut p = (d[l + 1] - g) / (2.0 * e[l]);
                let mut r = hypot(p, 1.0);
                if p < 0.0 {
                    r = -r;
                }
                d[l] = e[l] / (p + r);
                d[l + 1] = e[l] * (p + r);
                let dl1 = d[l + 1];
                let mut h = g - d[l];
                for i in (l + 2)..n {
                    d[i] -= h;
                }
                f += h;
                // Implicit QL transformation.
                p = d[m];
                let mut c = 1.0;
                let mut c2 = c;
                let mut c3 = c;
                let el1 = e[l + 1];
                let mut s = 0.0;
                let mut s2 = 0.0;
                for i in (l..m).rev() {
                    c3 = c2;
                    c2 = c;
                    s2 = s;
                    g = c * e[i];
                    h = c * p;
                    r = hypot(p, e[i]);
                    e[i + 1] = s * r;
                    let inv_r = 1.0 / r;
                    s = e[i] * inv_r;
                    c = p * inv_r;
                    p = c * d[i] - s * g;
                    d[i + 1] = h + s * (c * g + s * d[i]);
                    // Accumulate the transformation on rows i and i + 1.
                    let (lower, upper) = w.split_at_mut((i + 1) * n);
                    let row_i = &mut lower[i * n..];
                    for (a, b) in row_i.iter_mut().zip(upper[..n].iter_mut()) {
                        let hb = *b;
                        *b = s * *a + c * hb;
                        *a = c * *a - s * hb;
                    }
                }
                p = -s * s2 * c3 * el1 * e[l] / dl1;
                e[l] = s * p;
                d[l] = c * p;
                if e[l].abs() <= eps * tst1 {
                    break;
                }
            }
        }
        d[l] += f;
        e[l] = 0.0;
    }
    // Sort eigenvalues and vectors ascending.
    for i in 0..n.saturating_sub(1) {
        let mut k = i;
        let mut p = d[i];
        for j in (i + 1)..n {
            if d[j] < p {
                k = j;
                p = d[j];
            }
        }
        if k != i {
            d[k] = d[i];
            d[i] = p;
            for j in 0..n {
                w.swap(i * n + j, k * n + j);
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{standard_normal, stream};

    #[test]
    fn matches_the_definition_and_nalgebra() {
        let mut rng = stream(4, "eigen");
        for n in [1usize, 2, 3, 7, 24, 41] {
            let z = DMatrix::from_vec(n, n, standard_normal(&mut rng, n * n));
            let a = &z * z.transpose() + DMatrix::identity(n, n) * (n as f64);
            let (values, vectors) = symmetric_eigen(&a).unwrap();
            // A V = V diag(values), V orthonormal.
            let residual = &a * &vectors - &vectors * DMatrix::from_diagonal(&values);
            assert!(residual.abs().max() < 1e-10 * a.abs().max(), "n={n}");
            let orth = vectors.transpose() * &vectors - DMatrix::identity(n, n);
            assert!(orth.abs().max() < 1e-12, "n={n}");
            let mut reference: Vec<f64> = nalgebra::SymmetricEigen::new(a.clone())
                .eigenvalues
                .iter()
                .copied()
                .collect();
            reference.sort_by(f64::total_cmp);
            for (x, y) in values.iter().zip(&reference) {
                assert!(
                    (x - y).abs() < 1e-10 * y.abs().max(1.0),
                    "n={n}: {x} vs {y}"
                );
            }
            assert!(values.as_slice().windows(2).all(|w| w[0] <= w[1]));
        }
    }

    #[test]
    fn handles_degenerate_and_diagonal_matrices() {
        let a = DMatrix::from_diagonal(&DVector::from_vec(vec![3.0, 1.0, 2.0, 1.0]));
        let (values, vectors) = symmetric_eigen(&a).unwrap();
        assert_eq!(values.as_slice(), &[1.0, 1.0, 2.0, 3.0]);
        assert!(
            ((&a * &vectors) - &vectors * DMatrix::from_diagonal(&values))
                .abs()
                .max()
                < 1e-14
        );
        assert!(symmetric_eigen(&DMatrix::from_element(2, 2, f64::NAN)).is_none());
    }
}
