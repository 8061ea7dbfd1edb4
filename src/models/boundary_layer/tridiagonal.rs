//! Batched tridiagonal solves (the Thomas algorithm) in burn ops, real and
//! complex, so that implicit vertical diffusion is differentiable.
//!
//! Row `k` of every system in the batch reads
//! `lower_k x_{k-1} + diag_k x_k + upper_k x_{k+1} = rhs_k`; `lower_0` and
//! `upper_{n-1}` are ignored. The loop runs over the `n` rows; each
//! operation acts on the whole batch (every column of every member), so the
//! cost is `O(n)` burn operations whatever the batch size. No pivoting: the
//! systems of implicit diffusion are diagonally dominant M-matrices.

use burn::tensor::Tensor;

/// Solves a batch of real tridiagonal systems.
///
/// # Shapes
/// `lower`, `diag`, `upper`, `rhs`: `[batch, n]` -> `[batch, n]`.
pub fn solve_tridiagonal(
    lower: Tensor<2>,
    diag: Tensor<2>,
    upper: Tensor<2>,
    rhs: Tensor<2>,
) -> Tensor<2> {
    let n = diag.dims()[1];
    let a = lower.split(1, 1);
    let b = diag.split(1, 1);
    let c = upper.split(1, 1);
    let r = rhs.split(1, 1);
    // Forward sweep: c'_k = c_k / m_k, d'_k = (r_k - a_k d'_{k-1}) / m_k,
    // m_k = b_k - a_k c'_{k-1}.
    let mut cp: Vec<Tensor<2>> = Vec::with_capacity(n);
    let mut dp: Vec<Tensor<2>> = Vec::with_capacity(n);
    let inv = b[0].clone().recip();
    cp.push(c[0].clone() * inv.clone());
    dp.push(r[0].clone() * inv);
    for k in 1..n {
        let inv = (b[k].clone() - a[k].clone() * cp[k - 1].clone()).recip();
        cp.push(c[k].clone() * inv.clone());
        dp.push((r[k].clone() - a[k].clone() * dp[k - 1].clone()) * inv);
    }
    // Back substitution: x_k = d'_k - c'_k x_{k+1}.
    let mut x: Vec<Tensor<2>> = vec![dp[n - 1].clone(); n];
    for k in (0..n - 1).rev() {
        x[k] = dp[k].clone() - cp[k].clone() * x[k + 1].clone();
    }
    Tensor::cat(x, 1)
}

/// A batch of complex numbers as two real tensors.
#[derive(Clone, Debug)]
pub struct Complex {
    /// Real part.
    pub re: Tensor<2>,
    /// Imaginary part.
    pub im: Tensor<2>,
}

impl Complex {
    fn mul(&self, other: &Complex) -> Complex {
        Complex {
            re: self.re.clone() * other.re.clone() - self.im.clone() * other.im.clone(),
            im: self.re.clone() * other.im.clone() + self.im.clone() * other.re.clone(),
        }
    }

    fn scale(&self, s: &Tensor<2>) -> Complex {
        Complex {
            re: self.re.clone() * s.clone(),
            im: self.im.clone() * s.clone(),
        }
    }

    fn recip(&self) -> Complex {
        let norm = (self.re.clone().square() + self.im.clone().square()).recip();
        Complex {
            re: self.re.clone() * norm.clone(),
            im: -self.im.clone() * norm,
        }
    }

    fn sub(&self, other: &Complex) -> Complex {
        Complex {
            re: self.re.clone() - other.re.clone(),
            im: self.im.clone() - other.im.clone(),
        }
    }

    fn split(self) -> Vec<Complex> {
        self.re
            .split(1, 1)
            .into_iter()
            .zip(self.im.split(1, 1))
            .map(|(re, im)| Complex { re, im })
            .collect()
    }
}

/// Solves a batch of complex tridiagonal systems with real off-diagonals:
/// the implicit step of `u + i v` under diffusion and Coriolis.
///
/// # Shapes
/// `lower`, `upper`: `[batch, n]`; `diag`, `rhs`: two `[batch, n]` parts;
/// returns the solution's two `[batch, n]` parts.
pub fn solve_tridiagonal_complex(
    lower: Tensor<2>,
    diag: Complex,
    upper: Tensor<2>,
    rhs: Complex,
) -> Complex {
    let n = lower.dims()[1];
    let a = lower.split(1, 1);
    let c = upper.split(1, 1);
    let b = diag.split();
    let r = rhs.split();
    let mut cp: Vec<Complex> = Vec::with_capacity(n);
    let mut dp: Vec<Complex> = Vec::with_capacity(n);
    let inv = b[0].recip();
    cp.push(inv.scale(&c[0]));
    dp.push(r[0].mul(&inv));
    for k in 1..n {
        let inv = b[k].sub(&cp[k - 1].scale(&a[k])).recip();
        cp.push(inv.scale(&c[k]));
        dp.push(r[k].sub(&dp[k - 1].scale(&a[k])).mul(&inv));
    }
    let mut x: Vec<Complex> = vec![dp[n - 1].clone(); n];
    for k in (0..n - 1).rev() {
        x[k] = dp[k].sub(&cp[k].mul(&x[k + 1]));
    }
    let (re, im): (Vec<_>, Vec<_>) = x.into_iter().map(|z| (z.re, z.im)).unzip();
    Complex {
        re: Tensor::cat(re, 1),
        im: Tensor::cat(im, 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{cpu_f64, tensor_from_rows, to_vec};
    use crate::rng::{standard_normal, stream};
    use nalgebra::{DMatrix, DVector};

    /// Random diagonally dominant systems, `[batch, n]` row-major each.
    fn systems(batch: usize, n: usize, seed: &str) -> [Vec<f64>; 4] {
        let mut rng = stream(7, seed);
        let lower = standard_normal(&mut rng, batch * n);
        let upper = standard_normal(&mut rng, batch * n);
        let rhs = standard_normal(&mut rng, batch * n);
        let diag: Vec<f64> = standard_normal(&mut rng, batch * n)
            .iter()
            .zip(lower.iter().zip(&upper))
            .map(|(d, (l, u))| 0.1 * d + 1.0 + l.abs() + u.abs())
            .collect();
        [lower, diag, upper, rhs]
    }

    fn dense(lower: &[f64], diag: &[f64], upper: &[f64], n: usize, b: usize) -> DMatrix<f64> {
        DMatrix::from_fn(n, n, |i, j| {
            let k = b * n + i;
            if i == j {
                diag[k]
            } else if j + 1 == i {
                lower[k]
            } else if j == i + 1 {
                upper[k]
            } else {
                0.0
            }
        })
    }

    #[test]
    fn thomas_matches_a_dense_solve() {
        let device = cpu_f64();
        let (batch, n) = (4, 9);
        let [lower, diag, upper, rhs] = systems(batch, n, "real");
        let t = |v: &[f64]| tensor_from_rows(v, batch, n, &device);
        let x = to_vec(solve_tridiagonal(t(&lower), t(&diag), t(&upper), t(&rhs)));
        for b in 0..batch {
            let want = dense(&lower, &diag, &upper, n, b)
                .lu()
                .solve(&DVector::from_column_slice(&rhs[b * n..(b + 1) * n]))
                .unwrap();
            for i in 0..n {
                assert!((x[b * n + i] - want[i]).abs() < 1e-12, "{b} {i}");
            }
        }
    }

    #[test]
    fn complex_thomas_matches_a_dense_solve() {
        use nalgebra::Complex as C;
        let device = cpu_f64();
        let (batch, n) = (3, 8);
        let [lower, diag, upper, rhs] = systems(batch, n, "complex");
        let mut rng = stream(7, "imaginary");
        let diag_im = standard_normal(&mut rng, batch * n);
        let rhs_im = standard_normal(&mut rng, batch * n);
        let t = |v: &[f64]| tensor_from_rows(v, batch, n, &device);
        let x = solve_tridiagonal_complex(
            t(&lower),
            Complex {
                re: t(&diag),
                im: t(&diag_im),
            },
            t(&upper),
            Complex {
                re: t(&rhs),
                im: t(&rhs_im),
            },
        );
        let (re, im) = (to_vec(x.re), to_vec(x.im));
        for b in 0..batch {
            let mut m = dense(&lower, &diag, &upper, n, b).map(|v| C::new(v, 0.0));
            for i in 0..n {
                m[(i, i)].im = diag_im[b * n + i];
            }
            let r = DVector::from_fn(n, |i, _| C::new(rhs[b * n + i], rhs_im[b * n + i]));
            let want = m.lu().solve(&r).unwrap();
            for i in 0..n {
                let got = C::new(re[b * n + i], im[b * n + i]);
                assert!((got - want[i]).norm() < 1e-12, "{b} {i}");
            }
        }
    }
}
