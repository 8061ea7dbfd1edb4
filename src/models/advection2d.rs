//! Linear advection of a tracer on a doubly periodic 2-D grid, first-order
//! upwind in space: `dc/dt = -u dc/dx - v dc/dy`, with `u`, `v` constant.
//!
//! The standard cheap gridded test model of DA (a 2-D version of Evensen's
//! and DAPPER's `LA` model): any size up to millions of points, linear (so
//! the Kalman filter is exact), with numerical diffusion from the upwind
//! differences. With forward Euler, one step at Courant numbers
//! `|u| dt / dx = 1` and `v = 0` is an exact shift by one cell. Stable
//! for `|u| dt / dx + |v| dt / dy <= 1` with Euler (checked at build). The
//! state is one field `c` of shape `[ny, nx]`, row-major.

use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::adjoint::HostTendency;
use super::{BuildError, Integrator, ModelSpec, OdeModel, Tendency, positive};
use crate::core::{CoordinateUnits, Field, Geometry, Model};

/// The upwind tendency with velocities in cells per unit time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdvectionTendency {
    /// Columns.
    pub nx: usize,
    /// Rows.
    pub ny: usize,
    /// `u / dx`.
    pub ax: f64,
    /// `v / dy`.
    pub ay: f64,
}

impl Tendency for AdvectionTendency {
    fn tendency(&self, c: Tensor<2>, _time: f64) -> Tensor<2> {
        let [m, n] = c.dims();
        let grid = c.reshape([m, self.ny, self.nx]);
        // Upwind: the difference with the neighbour the flow comes from.
        // `roll_dim(s, d)[i] = x[i - s]`.
        let upwind = |g: Tensor<3>, a: f64, dim: usize| -> Tensor<3> {
            if a == 0.0 {
                return g.zeros_like();
            }
            let shift: i64 = if a > 0.0 { 1 } else { -1 };
            let neighbour = g.clone().roll_dim(shift, dim);
            (g - neighbour) * (-a.abs())
        };
        let tx = upwind(grid.clone(), self.ax, 2);
        let ty = upwind(grid, self.ay, 1);
        (tx + ty).reshape([m, n])
    }

    fn host(&self) -> Option<&dyn HostTendency> {
        Some(self)
    }
}

impl HostTendency for AdvectionTendency {
    fn eval(&self, c: &[f64], _t: f64, out: &mut [f64]) {
        let (nx, ny) = (self.nx, self.ny);
        let (sx, sy) = (self.ax.signum() as isize, self.ay.signum() as isize);
        let (ax, ay) = (self.ax.abs(), self.ay.abs());
        for j in 0..ny {
            let jn = (j as isize - sy).rem_euclid(ny as isize) as usize;
            let (row, up_row) = (&c[j * nx..(j + 1) * nx], &c[jn * nx..(jn + 1) * nx]);
            let out = &mut out[j * nx..(j + 1) * nx];
            for i in 0..nx {
                let iw = (i as isize - sx).rem_euclid(nx as isize) as usize;
                out[i] = -ax * (row[i] - row[iw]) - ay * (row[i] - up_row[i]);
            }
        }
    }

    /// The tendency is linear, `f = A c`; this is `A^T lambda`: each cell
    /// gives `-a lambda_i` to itself and `+a lambda_i` to its upwind
    /// neighbour.
    fn vjp(&self, _c: &[f64], _t: f64, lambda: &[f64], out: &mut [f64]) {
        let (nx, ny) = (self.nx, self.ny);
        let (sx, sy) = (self.ax.signum() as isize, self.ay.signum() as isize);
        let (ax, ay) = (self.ax.abs(), self.ay.abs());
        for (o, l) in out.iter_mut().zip(lambda) {
            *o = -(ax + ay) * l;
        }
        for j in 0..ny {
            let jn = (j as isize - sy).rem_euclid(ny as isize) as usize;
            for i in 0..nx {
                let l = lambda[j * nx + i];
                let iw = (i as isize - sx).rem_euclid(nx as isize) as usize;
                out[j * nx + iw] += ax * l;
                out[jn * nx + i] += ay * l;
            }
        }
    }
}

/// The model.
pub type Advection2d = OdeModel<AdvectionTendency>;

/// The `[model]` table of `name = "advection2d"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Advection2dConfig {
    /// Grid columns.
    #[serde(default = "cells")]
    pub nx: usize,
    /// Grid rows.
    #[serde(default = "cells")]
    pub ny: usize,
    /// Grid spacing along x, model length units.
    #[serde(default = "one")]
    pub dx: f64,
    /// Grid spacing along y.
    #[serde(default = "one")]
    pub dy: f64,
    /// Velocity along x, length per unit time.
    #[serde(default = "one")]
    pub u: f64,
    /// Velocity along y.
    #[serde(default = "half")]
    pub v: f64,
    /// Time step.
    #[serde(default = "dt")]
    pub dt: f64,
    /// Integrator (forward Euler is the classical upwind scheme).
    #[serde(default = "euler")]
    pub integrator: Integrator,
    /// Additive noise per unit time (a stochastic model when positive).
    #[serde(default)]
    pub noise_std: Option<f64>,
}

fn cells() -> usize {
    64
}
fn one() -> f64 {
    1.0
}
fn half() -> f64 {
    0.5
}
fn dt() -> f64 {
    0.5
}
fn euler() -> Integrator {
    Integrator::Euler
}

impl Advection2dConfig {
    /// The Courant sum `|u| dt / dx + |v| dt / dy`.
    pub fn courant(&self) -> f64 {
        self.u.abs() * self.dt / self.dx + self.v.abs() * self.dt / self.dy
    }
}

impl ModelSpec for Advection2dConfig {
    fn state_size(&self) -> Option<(u128, &'static str)> {
        Some((self.nx as u128 * self.ny as u128, "nx"))
    }

    fn init(&self, _device: &Device) -> Result<Box<dyn Model>, BuildError> {
        for (key, v) in [("dx", self.dx), ("dy", self.dy), ("dt", self.dt)] {
            positive(key, v)?;
        }
        super::finite("u", self.u)?;
        super::finite("v", self.v)?;
        super::check_noise(self.noise_std)?;
        for (key, n) in [("nx", self.nx), ("ny", self.ny)] {
            if n < 2 {
                return Err(BuildError::invalid(
                    key,
                    format!("the grid needs at least 2 cells per axis, got {n}"),
                ));
            }
        }
        // Forward Euler upwind is stable up to a Courant sum of 1; Heun and
        // RK4 are kept to the same bound.
        let courant = self.courant();
        if courant > 1.0 + 1e-12 {
            return Err(BuildError::invalid(
                "dt",
                format!(
                    "{} is unstable: |u| dt/dx + |v| dt/dy = {courant:.3} exceeds 1 (largest stable dt {:.4})",
                    self.dt,
                    self.dt / courant
                ),
            ));
        }
        let x = (0..self.nx).map(|i| i as f64 * self.dx).collect();
        let y = (0..self.ny).map(|j| j as f64 * self.dy).collect();
        let geometry = Geometry::new(
            vec![Field::grid("c", "tracer concentration", "1", x, y)],
            [
                Some(self.nx as f64 * self.dx),
                Some(self.ny as f64 * self.dy),
            ],
            CoordinateUnits::Model,
        );
        let tendency = AdvectionTendency {
            nx: self.nx,
            ny: self.ny,
            ax: self.u / self.dx,
            ay: self.v / self.dy,
        };
        Ok(Box::new(
            OdeModel::new(tendency, self.integrator, self.dt, geometry, "advection2d")
                .with_noise(self.noise_std),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{cpu_f64, to_vec};

    fn model(u: f64, v: f64, dt: f64) -> Box<dyn Model> {
        Advection2dConfig {
            nx: 5,
            ny: 4,
            u,
            v,
            dt,
            ..Advection2dConfig::from_defaults()
        }
        .init(&cpu_f64())
        .unwrap()
    }

    impl Advection2dConfig {
        fn from_defaults() -> Self {
            toml::from_str("").unwrap()
        }
    }

    #[test]
    fn courant_one_is_an_exact_shift_both_ways_and_mass_is_conserved() {
        let device = cpu_f64();
        let c: Vec<f64> = (0..20).map(|i| ((i * 7) % 11) as f64).collect();
        let x = Tensor::<2>::from_data(burn::tensor::TensorData::new(c.clone(), [1, 20]), &device);
        for (u, v, di, dj) in [
            (1.0, 0.0, 1, 0),
            (-1.0, 0.0, -1, 0),
            (0.0, 1.0, 0, 1),
            (0.0, -1.0, 0, -1),
        ] {
            let m = model(u, v, 1.0);
            let y = to_vec(m.forecast(x.clone(), 0.0, 3));
            for j in 0..4isize {
                for i in 0..5isize {
                    let from =
                        ((j - 3 * dj).rem_euclid(4) * 5 + (i - 3 * di).rem_euclid(5)) as usize;
                    assert_eq!(y[(j * 5 + i) as usize], c[from], "u={u} v={v} at ({j},{i})");
                }
            }
        }
        // Upwind at Courant 0.75: diffusive, but the total is conserved
        // and no new extremes appear.
        let m = model(1.0, 0.5, 0.5);
        let y = to_vec(m.forecast(x, 0.0, 20));
        let (sum0, sum1): (f64, f64) = (c.iter().sum(), y.iter().sum());
        assert!((sum0 - sum1).abs() < 1e-10 * sum0, "{sum0} vs {sum1}");
        assert!(y.iter().all(|&v| (0.0 - 1e-12..=10.0 + 1e-12).contains(&v)));
    }

    #[test]
    fn host_path_and_adjoint_agree_with_burn() {
        let device = cpu_f64();
        let t = AdvectionTendency {
            nx: 5,
            ny: 4,
            ax: 0.7,
            ay: -0.4,
        };
        let c: Vec<f64> = (0..20).map(|i| (i as f64 * 0.37).sin()).collect();
        let l: Vec<f64> = (0..20).map(|i| (i as f64 * 0.91).cos()).collect();
        let x = Tensor::<2>::from_data(burn::tensor::TensorData::new(c.clone(), [1, 20]), &device);
        let burn = to_vec(t.tendency(x, 0.0));
        let mut host = vec![0.0; 20];
        HostTendency::eval(&t, &c, 0.0, &mut host);
        for (a, b) in burn.iter().zip(&host) {
            assert!((a - b).abs() < 1e-14);
        }
        // Dot-product test: <A c, l> = <c, A^T l>.
        let mut atl = vec![0.0; 20];
        t.vjp(&c, 0.0, &l, &mut atl);
        let lhs: f64 = host.iter().zip(&l).map(|(a, b)| a * b).sum();
        let rhs: f64 = c.iter().zip(&atl).map(|(a, b)| a * b).sum();
        assert!(
            (lhs - rhs).abs() < 1e-13 * lhs.abs().max(1.0),
            "{lhs} vs {rhs}"
        );
    }

    #[test]
    fn an_unstable_step_is_refused() {
        let err = Advection2dConfig {
            dt: 1.0,
            ..Advection2dConfig::from_defaults()
        }
        .init(&cpu_f64())
        .err()
        .unwrap();
        assert!(err.to_string().contains("exceeds 1"), "{err}");
    }
}
