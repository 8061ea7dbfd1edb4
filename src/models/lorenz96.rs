//! Lorenz-96 (Lorenz 1996; Lorenz & Emanuel 1998).
//!
//! `dx_i/dt = (x_{i+1} - x_{i-2}) x_{i-1} - x_i + F`, periodic in `i`.

use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::adjoint::HostTendency;
use super::{BuildError, Integrator, ModelSpec, Neighbours, OdeModel, Tendency, positive};
use crate::core::{Geometry, Model};

/// The Lorenz-96 right-hand side with forcing `F`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Lorenz96Tendency {
    /// Forcing `F` (8 gives chaos with about 13 positive Lyapunov exponents for n = 40).
    pub forcing: f64,
}

impl Tendency for Lorenz96Tendency {
    fn tendency(&self, x: Tensor<2>, _time: f64) -> Tensor<2> {
        let xs = Neighbours::new(x.clone(), 2, 1);
        (xs.at(1) - xs.at(-2)) * xs.at(-1) - x + self.forcing
    }

    fn host(&self) -> Option<&dyn HostTendency> {
        Some(self)
    }
}

/// `x[(i + k) mod n]` for `|k| <= n` (no division: stencils call this in
/// the innermost loops).
#[inline]
pub(crate) fn wrap(x: &[f64], i: usize, k: isize) -> f64 {
    let n = x.len() as isize;
    let mut j = i as isize + k;
    if j < 0 {
        j += n;
    } else if j >= n {
        j -= n;
    }
    x[j as usize]
}

/// The indices within two of either end, where the stencils wrap.
fn edges(n: usize) -> impl Iterator<Item = usize> {
    [0, 1, n - 2, n - 1]
        .into_iter()
        .enumerate()
        .filter(move |&(k, i)| k < 2 || i >= 2)
        .map(|(_, i)| i)
}

/// Lorenz-96 advection `(x_{i+1} - x_{i-2}) x_{i-1}` on the host (n >= 4).
/// The interior is written over shifted slices so that it vectorises.
pub(crate) fn advection(x: &[f64], out: &mut [f64]) {
    let n = x.len();
    let interior = out[2..n - 1]
        .iter_mut()
        .zip(&x[3..])
        .zip(&x[..n - 3])
        .zip(&x[1..n - 2]);
    for (((o, xp1), xm2), xm1) in interior {
        *o = (xp1 - xm2) * xm1;
    }
    for i in edges(n) {
        out[i] = (wrap(x, i, 1) - wrap(x, i, -2)) * wrap(x, i, -1);
    }
}

crate::wide_fn! {
    /// The advection of [`advection`] for `members` states stored
    /// members-innermost (`x[i * members + m]`): each variable's row is one
    /// vector operation across the members, the wrap-around is resolved once
    /// per row, and every element is computed as `advection` computes it.
    pub(crate) fn advection_members(x: &[f64], members: usize, out: &mut [f64]) {
        let n = x.len() / members;
        let row = |j: usize| &x[j * members..(j + 1) * members];
        for (i, o) in out.chunks_exact_mut(members).enumerate() {
            let (xp1, xm2, xm1) = (row((i + 1) % n), row((i + n - 2) % n), row((i + n - 1) % n));
            for m in 0..o.len() {
                o[m] = (xp1[m] - xm2[m]) * xm1[m];
            }
        }
    }
}

crate::wide_fn! {
    /// The Lorenz-96 tendency for `members` states stored members-innermost,
    /// each element as [`Lorenz96Tendency::eval`] computes it.
    fn tendency_members(forcing: f64, x: &[f64], members: usize, out: &mut [f64]) {
        advection_members(x, members, out);
        for (o, xi) in out.iter_mut().zip(x) {
            *o += forcing - xi;
        }
    }
}

/// Adjoint of the advection, accumulated into `out` (n >= 4):
/// `out_j += l_{j-1} x_{j-2} - l_{j+2} x_{j+1} + l_{j+1} (x_{j+2} - x_{j-1})`.
pub(crate) fn advection_vjp(x: &[f64], lambda: &[f64], out: &mut [f64]) {
    let n = x.len();
    let l = lambda;
    // Interior j in 2..n-2, over shifted slices so that it vectorises.
    let interior = out[2..n - 2]
        .iter_mut()
        .zip(l[1..n - 3].iter().zip(&x[..n - 4]))
        .zip(l[4..].iter().zip(&x[3..n - 1]))
        .zip(l[3..n - 1].iter().zip(x[4..].iter().zip(&x[1..n - 3])));
    for (((o, (lm1, xm2)), (lp2, xp1)), (lp1, (xp2, xm1))) in interior {
        *o += lm1 * xm2 - lp2 * xp1 + lp1 * (xp2 - xm1);
    }
    for j in edges(n) {
        out[j] += wrap(l, j, -1) * wrap(x, j, -2) - wrap(l, j, 2) * wrap(x, j, 1)
            + wrap(l, j, 1) * (wrap(x, j, 2) - wrap(x, j, -1));
    }
}

impl HostTendency for Lorenz96Tendency {
    fn eval(&self, x: &[f64], _t: f64, out: &mut [f64]) {
        advection(x, out);
        for (o, xi) in out.iter_mut().zip(x) {
            *o += self.forcing - xi;
        }
    }

    fn vjp(&self, x: &[f64], _t: f64, lambda: &[f64], out: &mut [f64]) {
        for (o, l) in out.iter_mut().zip(lambda) {
            *o = -l;
        }
        advection_vjp(x, lambda, out);
    }

    fn eval_members(&self, x: &[f64], members: usize, _t: f64, out: &mut [f64]) {
        tendency_members(self.forcing, x, members, out);
    }

    fn vectorises_members(&self) -> bool {
        true
    }
}

/// Lorenz-96 on a periodic chain of `size` variables.
pub type Lorenz96 = OdeModel<Lorenz96Tendency>;

impl Lorenz96 {
    /// Lorenz-96 with `size` variables, forcing `F` and time step `dt`.
    pub fn lorenz96(size: usize, forcing: f64, dt: f64, integrator: Integrator) -> Self {
        OdeModel::new(
            Lorenz96Tendency { forcing },
            integrator,
            dt,
            Geometry::chain(size, true, "x"),
            "lorenz96",
        )
    }
}

/// The `[model]` table of `name = "lorenz96"`: any size and forcing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lorenz96Config {
    /// Number of variables (at least 4); required: there is no standard
    /// size to fall back on silently.
    pub size: usize,
    /// Forcing F.
    #[serde(default = "forcing")]
    pub forcing: f64,
    /// Time step.
    #[serde(default = "dt")]
    pub dt: f64,
    /// Integrator.
    #[serde(default)]
    pub integrator: Integrator,
    /// Additive noise per unit time (a stochastic model when positive).
    #[serde(default)]
    pub noise_std: Option<f64>,
}

fn forcing() -> f64 {
    8.0
}
fn dt() -> f64 {
    0.05
}

impl ModelSpec for Lorenz96Config {
    fn state_size(&self) -> Option<(u128, &'static str)> {
        Some((self.size as u128, "size"))
    }

    fn init(&self, _device: &Device) -> Result<Box<dyn Model>, BuildError> {
        positive("dt", self.dt)?;
        super::finite("forcing", self.forcing)?;
        super::check_noise(self.noise_std)?;
        if self.size < 4 {
            return Err(BuildError::invalid(
                "size",
                format!("Lorenz-96 needs at least 4 variables, got {}", self.size),
            ));
        }
        Ok(Box::new(
            Lorenz96::lorenz96(self.size, self.forcing, self.dt, self.integrator)
                .with_noise(self.noise_std),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{cpu_f64, to_vec};

    #[test]
    fn tendency_matches_the_formula() {
        let device = cpu_f64();
        let values: Vec<f64> = (0..6).map(|i| (i as f64 * 1.3).sin() * 3.0).collect();
        let x = Tensor::<2>::from_data(
            burn::tensor::TensorData::new(values.clone(), [1, 6]),
            &device,
        );
        let got = to_vec(Lorenz96Tendency { forcing: 8.0 }.tendency(x, 0.0));
        let n = 6;
        for i in 0..n {
            let xm = |k: isize| values[((i as isize + k).rem_euclid(n as isize)) as usize];
            let want = (xm(1) - xm(-2)) * xm(-1) - xm(0) + 8.0;
            assert!((got[i] - want).abs() < 1e-13, "i={i}: {} vs {want}", got[i]);
        }
    }

    #[test]
    fn fixed_point_stays_put() {
        let device = cpu_f64();
        let model = Lorenz96::lorenz96(40, 8.0, 0.05, Integrator::Rk4);
        let x = Tensor::<2>::full([3, 40], 8.0, &device);
        let y = to_vec(model.forecast(x, 0.0, 10));
        assert!(y.iter().all(|v| (v - 8.0).abs() < 1e-12));
    }
}
