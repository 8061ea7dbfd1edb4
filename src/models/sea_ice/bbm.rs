//! The brittle Bingham-Maxwell rheology, BBM (Olason et al. 2022, JAMES;
//! the rheology of neXtSIM), with explicit sub-steps of the momentum
//! equation.
//!
//! # Rheology
//! A Maxwell elasto-brittle material whose elastic stiffness and viscous
//! relaxation time fall with the damage `d` (0: intact, 1: broken) and
//! the concentration, with `x = (1 - d) exp(-C (1 - A))`:
//! ```text
//! E = H E0 x,   lambda = lambda0 x^(alpha - 1),
//! d sigma/dt = E/(1 - nu^2) K : eps - (1 - P~) sigma / lambda,
//! ```
//! `K` the plane-stress stiffness (`[1, nu, 0; nu, 1, 0; 0, 0, 1 - nu]` on
//! `(e11, e22, e12)`), and `P~ = min(1, P_max / |sigma_n|)` under
//! compression (0 otherwise), `P_max = P0 H^(3/2) exp(-C (1 - A))`: the
//! Bingham term that lets ridging ice flow once the compressive stress
//! exceeds `P_max`. The stress update is semi-implicit in the relaxation:
//! `sigma <- (sigma + dt E/(1 - nu^2) K : eps) lambda / (lambda + (1 - P~) dt)`.
//!
//! # Damage
//! Mohr-Coulomb: with `sigma_n = (s11 + s22)/2` (tension positive) and
//! `tau = sqrt(((s11 - s22)/2)^2 + s12^2)`, the stress is outside the
//! envelope where `tau + mu sigma_n > c`, the cohesion
//! `c = c_lab sqrt(0.1 m / dx) H` (scaled from the laboratory as Olason
//! et al. do). There `d_crit = c / (tau + mu sigma_n) < 1`, and in a
//! sub-step both the damage and the stress move towards the envelope over
//! the time `t_d = dx / c_E` an elastic wave takes to cross a cell,
//! `c_E = sqrt(E0 x / (2 (1 + nu) rho_i))`:
//! `d <- d + (1 - d)(1 - d_crit) dt / t_d`, `sigma <- sigma (1 - (1 -
//! d_crit) dt / t_d)`. Healing relaxes the damage to zero over
//! `healing_time`, once per model step (a constant time scale, where
//! neXtSIM ties it to the temperature). Damage is advected with the ice
//! (weighted by thickness, so it stays within its bounds).
//!
//! # Momentum sub-steps
//! The model step is split into `substeps` steps of
//! `dtau = dt / substeps`, each a stress update then the momentum
//! equation with drag and Coriolis implicit (the mEVP velocity update with
//! `beta = 0`). Explicit elastic waves need `dtau c_E sqrt(1/dx^2 +
//! 1/dy^2) < 1`, checked at build with intact, fully packed ice.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::super::{BuildError, positive};
use super::grid::Grid;
use super::mevp::{Dynamics, MomentumInputs, SQRT_FLOOR, velocity_update};

/// The `[model.bbm]` table (defaults: ../shared/REFERENCES.md and Olason
/// et al. 2022).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BbmConfig {
    /// Young's modulus of intact ice, `E0` (Pa).
    #[serde(default = "young")]
    pub young: f64,
    /// Poisson's ratio.
    #[serde(default = "poisson")]
    pub poisson: f64,
    /// Viscous relaxation time of intact ice, `lambda0` (s).
    #[serde(default = "relaxation_time")]
    pub relaxation_time: f64,
    /// Exponent of the relaxation time's dependence on damage, `alpha`.
    #[serde(default = "exponent")]
    pub alpha: f64,
    /// Ridging strength, `P0` (Pa).
    #[serde(default = "p0")]
    pub p0: f64,
    /// Internal friction coefficient, `mu`.
    #[serde(default = "friction")]
    pub friction: f64,
    /// Laboratory-scale cohesion, `c_lab` (Pa), scaled by
    /// `sqrt(0.1 m / dx)` and the thickness (Olason et al. 2022: 2 MPa;
    /// not in REFERENCES.md).
    #[serde(default = "cohesion")]
    pub cohesion: f64,
    /// Compaction parameter `C` of `exp(-C (1 - A))`.
    #[serde(default = "compaction")]
    pub c: f64,
    /// Healing time of the damage (s).
    #[serde(default = "healing_time")]
    pub healing_time: f64,
    /// Momentum sub-steps per model step.
    #[serde(default = "substeps")]
    pub substeps: usize,
}

fn young() -> f64 {
    5.96e8
}
fn poisson() -> f64 {
    1.0 / 3.0
}
fn relaxation_time() -> f64 {
    1e7
}
fn exponent() -> f64 {
    5.0
}
fn p0() -> f64 {
    10e3
}
fn friction() -> f64 {
    0.7
}
fn cohesion() -> f64 {
    2e6
}
fn compaction() -> f64 {
    20.0
}
fn healing_time() -> f64 {
    30.0 * 86_400.0
}
fn substeps() -> usize {
    120
}

impl Default for BbmConfig {
    fn default() -> Self {
        toml::from_str("").expect("every key has a default")
    }
}

impl BbmConfig {
    /// Checks the values; `dt` and the spacings for the elastic waves.
    pub(crate) fn check(&self, dt: f64, dx: f64, dy: f64, rho_ice: f64) -> Result<(), BuildError> {
        for (key, v) in [
            ("bbm.young", self.young),
            ("bbm.relaxation_time", self.relaxation_time),
            ("bbm.cohesion", self.cohesion),
            ("bbm.healing_time", self.healing_time),
        ] {
            positive(key, v)?;
        }
        for (key, v) in [
            ("bbm.alpha", self.alpha),
            ("bbm.p0", self.p0),
            ("bbm.friction", self.friction),
            ("bbm.c", self.c),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(BuildError::invalid(
                    key,
                    format!("must be a non-negative number, got {v}"),
                ));
            }
        }
        if !(0.0..0.5).contains(&self.poisson) {
            return Err(BuildError::invalid(
                "bbm.poisson",
                format!("must lie in [0, 0.5), got {}", self.poisson),
            ));
        }
        if self.substeps == 0 {
            return Err(BuildError::invalid("bbm.substeps", "must be at least 1"));
        }
        let dtau = dt / self.substeps as f64;
        let speed = self.wave_speed(1.0, rho_ice);
        let courant = dtau * speed * (1.0 / (dx * dx) + 1.0 / (dy * dy)).sqrt();
        if courant > 0.7 {
            let needed = (dt * speed * (1.0 / (dx * dx) + 1.0 / (dy * dy)).sqrt() / 0.7).ceil();
            return Err(BuildError::invalid(
                "bbm.substeps",
                format!(
                    "{} sub-steps of {dtau:.2} s are too long for elastic waves at {speed:.0} m/s (Courant number {courant:.2}, at most 0.7): use at least {needed}",
                    self.substeps
                ),
            ));
        }
        Ok(())
    }

    /// The elastic (shear) wave speed for `x = (1 - d) exp(-C (1 - A))`.
    pub fn wave_speed(&self, x: f64, rho_ice: f64) -> f64 {
        (self.young * x / (2.0 * (1.0 + self.poisson) * rho_ice)).sqrt()
    }
}

/// Floor of the integrity `1 - d` (broken ice keeps a trace of stiffness).
const MIN_INTEGRITY: f64 = 1e-12;

/// One model step of BBM sub-steps from `start`; returns the dynamics and
/// the damage (before healing and transport). `thickness`,
/// `concentration` at the cells; `cohesion` the laboratory cohesion per
/// member (`[m or 1, 1, 1]`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn solve(
    grid: &Grid,
    cfg: &BbmConfig,
    dt: f64,
    rho_ice: f64,
    inputs: &MomentumInputs,
    thickness: &Tensor<3>,
    concentration: &Tensor<3>,
    cohesion: &Tensor<3>,
    start: Dynamics,
    damage: Tensor<3>,
) -> (Dynamics, Tensor<3>) {
    let nu = cfg.poisson;
    let dtau = dt / cfg.substeps as f64;
    let Dynamics {
        mut u,
        mut v,
        mut sxx,
        mut syy,
        mut sxy,
    } = start;
    let mut d = damage;
    let [uo, vo] = inputs.ocean.clone();
    let [tx, ty] = inputs.tau.clone();
    // dt/m was computed for the model step; the sub-step's is a fraction.
    let dtm = inputs.dt_over_mass.clone() * (1.0 / cfg.substeps as f64);
    let b = inputs.coriolis_dt / cfg.substeps as f64;
    let packing = (concentration.clone() * cfg.c - cfg.c).exp();
    let h = thickness.clone();
    let p_max = h.clone() * (h.clone() + SQRT_FLOOR).sqrt() * packing.clone() * cfg.p0;
    let c = h.clone() * cohesion.clone() * (0.1 / (grid.dx * grid.dy).sqrt()).sqrt();
    let stiffness = h * cfg.young * (dtau / (1.0 - nu * nu));
    let wave = cfg.young / (2.0 * (1.0 + nu) * rho_ice);
    let cell = (grid.dx * grid.dy).sqrt();
    let rhs_u = dtm.clone() * tx - vo.clone() * b;
    let rhs_v = dtm.clone() * ty + uo.clone() * b;
    for _ in 0..cfg.substeps {
        // Stress: elastic increment, then relaxation with the Bingham term.
        let (ux, uy) = grid.node_gradient(&u);
        let (vx, vy) = grid.node_gradient(&v);
        let e12 = (uy + vx) * 0.5;
        let x = (d.clone().neg() + 1.0).clamp_min(MIN_INTEGRITY) * packing.clone();
        let lambda = x.clone().powf_scalar(cfg.alpha - 1.0) * cfg.relaxation_time;
        let sigma_n = (sxx.clone() + syy.clone()) * 0.5;
        let compression = sigma_n.clone().neg().clamp_min(0.0);
        let bingham = (p_max.clone() * (compression.clone() + SQRT_FLOOR).recip()).clamp_max(1.0)
            * compression.greater_elem(0.0).float();
        let keep = lambda.clone() * (lambda + (bingham.neg() + 1.0) * dtau).recip();
        let k = stiffness.clone() * x.clone();
        sxx = (sxx + k.clone() * (ux.clone() + vy.clone() * nu)) * keep.clone();
        syy = (syy + k.clone() * (ux * nu + vy)) * keep.clone();
        sxy = (sxy + k * e12 * (1.0 - nu)) * keep;
        // Damage where the stress leaves the Mohr-Coulomb envelope.
        let sigma_n = (sxx.clone() + syy.clone()) * 0.5;
        let half_diff = (sxx.clone() - syy.clone()) * 0.5;
        let tau = (half_diff.clone() * half_diff + sxy.clone() * sxy.clone() + SQRT_FLOOR).sqrt();
        let envelope = tau + sigma_n * cfg.friction;
        let d_crit = (c.clone() * envelope.clamp_min(1e-20).recip()).clamp_max(1.0);
        let inv_td = (x * wave).sqrt() * (1.0 / cell);
        let rate = (d_crit.neg() + 1.0) * inv_td * dtau;
        d = d.clone() + (d.neg() + 1.0) * rate.clone();
        let relax = rate.neg() + 1.0;
        sxx = sxx * relax.clone();
        syy = syy * relax.clone();
        sxy = sxy * relax;
        // Momentum, drag and Coriolis implicit (mEVP's update with beta = 0).
        let force = grid.stress_divergence(sxx.clone(), syy.clone(), sxy.clone());
        let rhs = (u.clone() + rhs_u.clone(), v.clone() + rhs_v.clone());
        (u, v) = velocity_update(inputs, &u, &v, force, rhs, &dtm, 0.0, b);
    }
    (
        Dynamics {
            u,
            v,
            sxx,
            syy,
            sxy,
        },
        d,
    )
}
