//! Lorenz-63 (Lorenz 1963).
//!
//! `x' = sigma (y - x)`, `y' = x (rho - z) - y`, `z' = x y - beta z`.

use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::adjoint::HostTendency;
use super::{BuildError, Integrator, ModelSpec, OdeModel, Tendency, positive};
use crate::core::{CoordinateUnits, Coordinates, Field, Geometry, Model};

/// The Lorenz-63 right-hand side.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Lorenz63Tendency {
    /// Prandtl number, 10 in the classic setting.
    pub sigma: f64,
    /// Rayleigh number, 28.
    pub rho: f64,
    /// Geometric factor, 8/3.
    pub beta: f64,
}

impl Tendency for Lorenz63Tendency {
    fn tendency(&self, state: Tensor<2>, _time: f64) -> Tensor<2> {
        let x = state.clone().narrow(1, 0, 1);
        let y = state.clone().narrow(1, 1, 1);
        let z = state.narrow(1, 2, 1);
        let dx = (y.clone() - x.clone()) * self.sigma;
        let dy = x.clone() * (z.clone().neg() + self.rho) - y.clone();
        let dz = x * y - z * self.beta;
        Tensor::cat(vec![dx, dy, dz], 1)
    }

    fn host(&self) -> Option<&dyn HostTendency> {
        Some(self)
    }
}

impl HostTendency for Lorenz63Tendency {
    fn eval(&self, s: &[f64], _t: f64, out: &mut [f64]) {
        let (x, y, z) = (s[0], s[1], s[2]);
        out[0] = self.sigma * (y - x);
        out[1] = x * (self.rho - z) - y;
        out[2] = x * y - self.beta * z;
    }

    fn vjp(&self, s: &[f64], _t: f64, l: &[f64], out: &mut [f64]) {
        // Jacobian [[-sigma, sigma, 0], [rho - z, -1, -x], [y, x, -beta]], transposed.
        let (x, y, z) = (s[0], s[1], s[2]);
        out[0] = -self.sigma * l[0] + (self.rho - z) * l[1] + y * l[2];
        out[1] = self.sigma * l[0] - l[1] + x * l[2];
        out[2] = -x * l[1] - self.beta * l[2];
    }

    fn eval_members(&self, s: &[f64], members: usize, _t: f64, out: &mut [f64]) {
        let (x, rest) = s.split_at(members);
        let (y, z) = rest.split_at(members);
        let (o0, rest) = out.split_at_mut(members);
        let (o1, o2) = rest.split_at_mut(members);
        for m in 0..members {
            let (x, y, z) = (x[m], y[m], z[m]);
            o0[m] = self.sigma * (y - x);
            o1[m] = x * (self.rho - z) - y;
            o2[m] = x * y - self.beta * z;
        }
    }

    fn vectorises_members(&self) -> bool {
        true
    }
}

/// The three-variable Lorenz-63 system.
pub type Lorenz63 = OdeModel<Lorenz63Tendency>;

impl Lorenz63 {
    /// Lorenz-63 with the given parameters and time step.
    pub fn lorenz63(sigma: f64, rho: f64, beta: f64, dt: f64, integrator: Integrator) -> Self {
        // Three one-point fields. They are not spatially arranged: they sit
        // far apart so that no localisation radius couples them by accident.
        let fields = ["x", "y", "z"]
            .iter()
            .enumerate()
            .map(|(i, name)| Field {
                coordinates: Coordinates::Points(vec![[1e6 * i as f64, 0.0]]),
                ..Field::chain(name, &format!("Lorenz-63 {name}"), 1)
            })
            .collect();
        let geometry = Geometry::new(fields, [None, None], CoordinateUnits::Model);
        OdeModel::new(
            Lorenz63Tendency { sigma, rho, beta },
            integrator,
            dt,
            geometry,
            "lorenz63",
        )
    }
}

/// The `[model]` table of `name = "lorenz63"`: Lorenz (1963) with the
/// classic parameters by default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lorenz63Config {
    /// Prandtl number.
    #[serde(default = "sigma")]
    pub sigma: f64,
    /// Rayleigh number.
    #[serde(default = "rho")]
    pub rho: f64,
    /// Geometric factor.
    #[serde(default = "beta")]
    pub beta: f64,
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

fn sigma() -> f64 {
    10.0
}
fn rho() -> f64 {
    28.0
}
fn beta() -> f64 {
    8.0 / 3.0
}
fn dt() -> f64 {
    0.01
}

impl ModelSpec for Lorenz63Config {
    fn init(&self, _device: &Device) -> Result<Box<dyn Model>, BuildError> {
        positive("dt", self.dt)?;
        for (key, v) in [
            ("sigma", self.sigma),
            ("rho", self.rho),
            ("beta", self.beta),
        ] {
            super::finite(key, v)?;
        }
        super::check_noise(self.noise_std)?;
        Ok(Box::new(
            Lorenz63::lorenz63(self.sigma, self.rho, self.beta, self.dt, self.integrator)
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
        let f = Lorenz63Tendency {
            sigma: 10.0,
            rho: 28.0,
            beta: 8.0 / 3.0,
        };
        let x = Tensor::<2>::from_floats([[1.0, 2.0, 3.0], [-4.0, 0.5, 20.0]], &device);
        let got = to_vec(f.tendency(x, 0.0));
        let want = [
            10.0,
            1.0 * 25.0 - 2.0,
            2.0 - 8.0,
            10.0 * 4.5,
            -4.0 * 8.0 - 0.5,
            -2.0 - 8.0 / 3.0 * 20.0,
        ];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{g} vs {w}");
        }
    }
}
