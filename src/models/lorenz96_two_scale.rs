//! Two-scale Lorenz-96 (Lorenz 1996; Wilks 2005) and its truncated
//! single-scale counterpart with Wilks' polynomial parametrisation.
//!
//! Slow variables `X_k`, `k = 1..K`, each coupled to `J` fast variables
//! `Y_{j,k}` that form one periodic chain of length `J K`:
//!
//! ```text
//! dX_k/dt = -X_{k-1} (X_{k-2} - X_{k+1}) - X_k + F - (h c / b) sum_j Y_{j,k}
//! dY_m/dt = -c b Y_{m+1} (Y_{m+2} - Y_{m-1}) - c Y_m + (h c / b) X_{k(m)}
//! ```
//!
//! Wilks (2005) uses K = 8, J = 32, F = 20 (or 18), h = 1, b = c = 10, and
//! replaces the fast variables in the truncated model by
//! `g_U(X) = 0.262 + 1.45 X - 0.0121 X^2 - 0.00713 X^3 + 0.000296 X^4`:
//! `dX_k/dt = -X_{k-1} (X_{k-2} - X_{k+1}) - X_k + F - g_U(X_k)`.
//!
//! The state vector is `[X_1..X_K, Y_1..Y_{JK}]` with `Y_{j,k}` at index
//! `K + (k - 1) J + (j - 1)`, so the slow variables come first and a truncated
//! model's state is the leading `K` entries of the two-scale state.

use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::adjoint::HostTendency;
use super::{BuildError, Integrator, ModelSpec, Neighbours, OdeModel, Tendency, positive};
use crate::core::{CoordinateUnits, Coordinates, Field, Geometry, Model};

/// Wilks (2005) deterministic polynomial fit of the unresolved tendency, F = 20.
pub const WILKS_2005: [f64; 5] = [0.262, 1.45, -0.0121, -0.00713, 0.000296];

/// The two-scale right-hand side.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TwoScaleTendency {
    /// Number of slow variables K.
    pub slow: usize,
    /// Fast variables per slow one, J.
    pub fast_per_slow: usize,
    /// Forcing F.
    pub forcing: f64,
    /// Coupling h.
    pub coupling: f64,
    /// Time-scale ratio c.
    pub time_scale: f64,
    /// Amplitude ratio b.
    pub amplitude: f64,
}

impl Tendency for TwoScaleTendency {
    fn tendency(&self, state: Tensor<2>, _time: f64) -> Tensor<2> {
        let [members, _] = state.dims();
        let (k, j) = (self.slow, self.fast_per_slow);
        let x = state.clone().narrow(1, 0, k);
        let y = state.narrow(1, k, k * j);
        let hcb = self.coupling * self.time_scale / self.amplitude;
        let fast_sum: Tensor<2> = y
            .clone()
            .reshape([members, k, j])
            .sum_dim(2)
            .reshape([members, k]);
        let xs = Neighbours::new(x.clone(), 2, 1);
        let dx = (xs.at(1) - xs.at(-2)) * xs.at(-1) - x.clone() + self.forcing - fast_sum * hcb;
        let x_per_fast: Tensor<2> = x
            .reshape([members, k, 1])
            .expand([members, k, j])
            .reshape([members, k * j]);
        let cb = self.time_scale * self.amplitude;
        let ys = Neighbours::new(y.clone(), 1, 2);
        let dy = (ys.at(-1) - ys.at(2)) * ys.at(1) * cb - y * self.time_scale + x_per_fast * hcb;
        Tensor::cat(vec![dx, dy], 1)
    }
}

/// The full two-scale model; it needs dt of about 0.005 with RK4.
pub type Lorenz96TwoScale = OdeModel<TwoScaleTendency>;

impl Lorenz96TwoScale {
    /// The two-scale model with the given parameters.
    pub fn two_scale(tendency: TwoScaleTendency, dt: f64, integrator: Integrator) -> Self {
        let (k, j) = (tendency.slow, tendency.fast_per_slow);
        // The slow field at positions 0..K; the fast field at the centres of
        // J equal sub-intervals around each slow variable.
        let slow = Field::chain("x", "slow variables X", k);
        let fast = Field {
            coordinates: Coordinates::Points(
                (0..k * j)
                    .map(|m| [(m as f64 + 0.5) / j as f64 - 0.5, 0.0])
                    .collect(),
            ),
            ..Field::chain("y", "fast variables Y", k * j)
        };
        let geometry = Geometry::new(
            vec![slow, fast],
            [Some(k as f64), None],
            CoordinateUnits::Model,
        );
        OdeModel::new(tendency, integrator, dt, geometry, "lorenz96_two_scale")
    }
}

/// How the truncated model represents the missing fast variables.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Parametrisation {
    /// Wilks (2005) quartic polynomial, [`WILKS_2005`].
    #[default]
    Wilks2005,
    /// No parametrisation: plain single-scale Lorenz-96.
    None,
}

/// The truncated single-scale right-hand side `... + F - g_U(X)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TruncatedTendency {
    /// Forcing F.
    pub forcing: f64,
    /// Polynomial coefficients of `g_U`, constant term first.
    pub coefficients: [f64; 5],
}

impl Tendency for TruncatedTendency {
    fn tendency(&self, x: Tensor<2>, _time: f64) -> Tensor<2> {
        let c = &self.coefficients;
        // Horner: c0 + X (c1 + X (c2 + X (c3 + X c4))).
        let mut g = x.clone() * c[4] + c[3];
        for &ci in c[..3].iter().rev() {
            g = g * x.clone() + ci;
        }
        let xs = Neighbours::new(x.clone(), 2, 1);
        (xs.at(1) - xs.at(-2)) * xs.at(-1) - x + self.forcing - g
    }

    fn host(&self) -> Option<&dyn HostTendency> {
        Some(self)
    }
}

impl TruncatedTendency {
    fn polynomial(&self, x: f64) -> (f64, f64) {
        let c = &self.coefficients;
        let value = c[0] + x * (c[1] + x * (c[2] + x * (c[3] + x * c[4])));
        let slope = c[1] + x * (2.0 * c[2] + x * (3.0 * c[3] + x * 4.0 * c[4]));
        (value, slope)
    }
}

impl HostTendency for TruncatedTendency {
    fn eval(&self, x: &[f64], _t: f64, out: &mut [f64]) {
        super::lorenz96::advection(x, out);
        for (o, &xi) in out.iter_mut().zip(x) {
            *o += self.forcing - xi - self.polynomial(xi).0;
        }
    }

    fn vjp(&self, x: &[f64], _t: f64, lambda: &[f64], out: &mut [f64]) {
        for ((o, l), &xi) in out.iter_mut().zip(lambda).zip(x) {
            *o = -l * (1.0 + self.polynomial(xi).1);
        }
        super::lorenz96::advection_vjp(x, lambda, out);
    }

    fn eval_members(&self, x: &[f64], members: usize, _t: f64, out: &mut [f64]) {
        super::lorenz96::advection_members(x, members, out);
        for (o, &xi) in out.iter_mut().zip(x) {
            *o += self.forcing - xi - self.polynomial(xi).0;
        }
    }

    fn vectorises_members(&self) -> bool {
        true
    }
}

/// The truncated single-scale model; it runs at dt = 0.05.
pub type Lorenz96Truncated = OdeModel<TruncatedTendency>;

impl Lorenz96Truncated {
    /// The truncated model with `size` slow variables.
    pub fn truncated(
        size: usize,
        forcing: f64,
        parametrisation: Parametrisation,
        dt: f64,
        integrator: Integrator,
    ) -> Self {
        let coefficients = match parametrisation {
            Parametrisation::Wilks2005 => WILKS_2005,
            Parametrisation::None => [0.0; 5],
        };
        OdeModel::new(
            TruncatedTendency {
                forcing,
                coefficients,
            },
            integrator,
            dt,
            Geometry::chain(size, true, "x"),
            "lorenz96_truncated",
        )
    }
}

/// The `[model]` table of `name = "lorenz96_two_scale"`, Wilks (2005)
/// parameters by default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lorenz96TwoScaleConfig {
    /// Slow variables K.
    #[serde(default = "slow")]
    pub slow: usize,
    /// Fast variables per slow one, J.
    #[serde(default = "fast")]
    pub fast_per_slow: usize,
    /// Forcing F.
    #[serde(default = "forcing_wilks")]
    pub forcing: f64,
    /// Coupling h.
    #[serde(default = "one")]
    pub coupling: f64,
    /// Time-scale ratio c.
    #[serde(default = "ten")]
    pub time_scale: f64,
    /// Amplitude ratio b.
    #[serde(default = "ten")]
    pub amplitude: f64,
    /// Time step.
    #[serde(default = "dt_two_scale")]
    pub dt: f64,
    /// Integrator.
    #[serde(default)]
    pub integrator: Integrator,
    /// Additive noise per unit time (a stochastic model when positive).
    #[serde(default)]
    pub noise_std: Option<f64>,
}

/// The `[model]` table of `name = "lorenz96_truncated"`: single-scale
/// Lorenz-96 with a parametrised fast tendency.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lorenz96TruncatedConfig {
    /// Number of slow variables.
    #[serde(default = "slow")]
    pub size: usize,
    /// Forcing F.
    #[serde(default = "forcing_wilks")]
    pub forcing: f64,
    /// The parametrisation of the missing fast variables.
    #[serde(default)]
    pub parametrisation: Parametrisation,
    /// Time step.
    #[serde(default = "dt_truncated")]
    pub dt: f64,
    /// Integrator.
    #[serde(default)]
    pub integrator: Integrator,
    /// Additive noise per unit time (a stochastic parametrisation when positive).
    #[serde(default)]
    pub noise_std: Option<f64>,
}

fn slow() -> usize {
    8
}
fn fast() -> usize {
    32
}
fn forcing_wilks() -> f64 {
    20.0
}
fn one() -> f64 {
    1.0
}
fn ten() -> f64 {
    10.0
}
fn dt_two_scale() -> f64 {
    0.005
}
fn dt_truncated() -> f64 {
    0.05
}

impl ModelSpec for Lorenz96TwoScaleConfig {
    fn state_size(&self) -> Option<(u128, &'static str)> {
        Some((self.slow as u128 * (1 + self.fast_per_slow as u128), "slow"))
    }

    fn init(&self, _device: &Device) -> Result<Box<dyn Model>, BuildError> {
        positive("dt", self.dt)?;
        positive("time_scale", self.time_scale)?;
        positive("amplitude", self.amplitude)?;
        super::finite("forcing", self.forcing)?;
        super::finite("coupling", self.coupling)?;
        super::check_noise(self.noise_std)?;
        if self.slow < 4 {
            return Err(BuildError::invalid(
                "slow",
                format!("needs at least 4 slow variables, got {}", self.slow),
            ));
        }
        if self.fast_per_slow < 1 {
            return Err(BuildError::invalid("fast_per_slow", "must be at least 1"));
        }
        let tendency = TwoScaleTendency {
            slow: self.slow,
            fast_per_slow: self.fast_per_slow,
            forcing: self.forcing,
            coupling: self.coupling,
            time_scale: self.time_scale,
            amplitude: self.amplitude,
        };
        Ok(Box::new(
            Lorenz96TwoScale::two_scale(tendency, self.dt, self.integrator)
                .with_noise(self.noise_std),
        ))
    }
}

impl ModelSpec for Lorenz96TruncatedConfig {
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
            Lorenz96Truncated::truncated(
                self.size,
                self.forcing,
                self.parametrisation,
                self.dt,
                self.integrator,
            )
            .with_noise(self.noise_std),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{cpu_f64, to_vec};
    use burn::tensor::TensorData;

    #[test]
    fn two_scale_tendency_matches_the_formula() {
        let (k, j) = (4usize, 3usize);
        let f = TwoScaleTendency {
            slow: k,
            fast_per_slow: j,
            forcing: 20.0,
            coupling: 1.0,
            time_scale: 10.0,
            amplitude: 10.0,
        };
        let n = k + k * j;
        let values: Vec<f64> = (0..n).map(|i| (i as f64 * 0.77).cos() * 2.0).collect();
        let device = cpu_f64();
        let got = to_vec(f.tendency(
            Tensor::from_data(TensorData::new(values.clone(), [1, n]), &device),
            0.0,
        ));
        let xs = &values[..k];
        let ys = &values[k..];
        let xi = |i: isize| xs[i.rem_euclid(k as isize) as usize];
        let yi = |i: isize| ys[i.rem_euclid((k * j) as isize) as usize];
        for kk in 0..k as isize {
            let sum: f64 = (0..j).map(|jj| ys[kk as usize * j + jj]).sum();
            let want = -xi(kk - 1) * (xi(kk - 2) - xi(kk + 1)) - xi(kk) + 20.0 - sum;
            assert!((got[kk as usize] - want).abs() < 1e-12);
        }
        for m in 0..(k * j) as isize {
            let want =
                -100.0 * yi(m + 1) * (yi(m + 2) - yi(m - 1)) - 10.0 * yi(m) + xs[m as usize / j];
            assert!((got[k + m as usize] - want).abs() < 1e-12, "m={m}");
        }
    }

    #[test]
    fn truncated_polynomial_is_wilks() {
        let device = cpu_f64();
        let f = TruncatedTendency {
            forcing: 20.0,
            coefficients: WILKS_2005,
        };
        let x = Tensor::<2>::full([1, 8], 2.0, &device);
        let got = to_vec(f.tendency(x, 0.0));
        let g = 0.262 + 1.45 * 2.0 - 0.0121 * 4.0 - 0.00713 * 8.0 + 0.000296 * 16.0;
        assert!((got[0] - (-2.0 + 20.0 - g)).abs() < 1e-12);
    }
}
