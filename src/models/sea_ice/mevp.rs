//! The viscous-plastic rheology (Hibler 1979) solved by the modified
//! elastic-viscous-plastic iteration, mEVP (Bouillon et al. 2013; Kimmritz
//! et al. 2015, 2016).
//!
//! # Rheology
//! With strain rates `D = e11 + e22` (divergence), `D_T = e11 - e22` and
//! `D_S = 2 e12` (the two shear components) and ellipse ratio `e`,
//! `Delta = sqrt(D^2 + (D_T^2 + D_S^2) / e^2)`. The ice strength is
//! `P = P* H exp(-C (1 - A))`; viscosities `zeta = P / (2 (Delta +
//! Delta_min))`, `eta = zeta / e^2`; the replacement pressure `P_r = P
//! Delta / (Delta + Delta_min) = 2 zeta Delta` (Kreyscher et al. 2000), so
//! that the stress vanishes at rest. In the invariants `s1 = sxx + syy`,
//! `s2 = sxx - syy`:
//! ```text
//! s1 = 2 zeta (D - Delta),   s2 = 2 eta D_T,   sxy = eta D_S.
//! ```
//!
//! # Iteration
//! From `(u, sigma)` at the start of the step, each sub-iteration `p`
//! relaxes the stress towards the viscous-plastic stress of the current
//! velocity and the velocity towards the solution of the momentum
//! equation, with ocean drag and Coriolis implicit:
//! ```text
//! alpha (sigma^{p+1} - sigma^p) = sigma_VP(u^p) - sigma^p
//! beta (u^{p+1} - u^p) = -(u^{p+1} - u^n)
//!     + dt/m [div sigma^{p+1} + tau_a + C_w (u_o - u^{p+1})]
//!     - dt f k x (u^{p+1} - u_o)
//! ```
//! with `C_w = rho_o C_o |u_o - u^p|`. The Coriolis term acts on the
//! velocity relative to the ocean: the sea-surface tilt is taken to be in
//! geostrophic balance with the current, `-m g grad(eta) = m f k x u_o`.
//! The iteration converges, as `p` grows, to the implicit (backward Euler)
//! VP solution when `alpha beta` is large against the stiffness of the
//! problem; at a fixed number of sub-iterations it is a stable
//! approximation to it (Kimmritz et al. 2015).
//!
//! # Two implementations
//! [`solve`] is written in burn ops (`kernel = "ops"`), which run on any
//! backend and which burn's autodiff differentiates op by op. On the CPU
//! backend the default `kernel = "fused"` runs the same arithmetic, in the
//! same order, as one kernel with a hand-written backward registered in
//! burn's autodiff ([`fused`](super::fused)): the fields are the same bits,
//! the gradients agree to round-off, and a test holds both to that.

use std::sync::{Arc, Mutex};

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::fused;

use super::super::{BuildError, positive};
use super::grid::Grid;

/// The `[model.mevp]` table: the sub-iteration's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MevpConfig {
    /// Relaxation of the stress, `alpha` (hundreds).
    #[serde(default = "relaxation")]
    pub alpha: f64,
    /// Relaxation of the velocity, `beta` (hundreds).
    #[serde(default = "relaxation")]
    pub beta: f64,
    /// Sub-iterations per time step.
    #[serde(default = "iterations")]
    pub iterations: usize,
    /// How the sub-iterations run: `"fused"` (one CPU kernel with a
    /// hand-written backward, on the CPU backend; burn ops elsewhere) or
    /// `"ops"` (burn ops, differentiated by burn's autodiff).
    #[serde(default)]
    pub kernel: Kernel,
}

/// How the mEVP sub-iterations run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kernel {
    /// One CPU kernel with its own backward (burn ops off the CPU backend).
    #[default]
    Fused,
    /// Burn ops, one per stencil term.
    Ops,
}

fn relaxation() -> f64 {
    300.0
}
fn iterations() -> usize {
    500
}

impl Default for MevpConfig {
    fn default() -> Self {
        Self {
            alpha: relaxation(),
            beta: relaxation(),
            iterations: iterations(),
            kernel: Kernel::default(),
        }
    }
}

impl MevpConfig {
    /// Checks the values.
    pub(crate) fn check(&self) -> Result<(), BuildError> {
        for (key, v) in [("mevp.alpha", self.alpha), ("mevp.beta", self.beta)] {
            if !(v >= 1.0 && v.is_finite()) {
                return Err(BuildError::invalid(
                    key,
                    format!("must be at least 1 (hundreds are usual), got {v}"),
                ));
            }
        }
        if self.iterations == 0 {
            return Err(BuildError::invalid("mevp.iterations", "must be at least 1"));
        }
        Ok(())
    }
}

/// The `[model.vp]` table: the viscous-plastic rheology's parameters
/// (defaults from Mehlmann et al. 2021).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViscousPlasticConfig {
    /// Ice strength per metre of thickness, `P*` (N/m^2).
    #[serde(default = "p_star")]
    pub p_star: f64,
    /// Concentration parameter of the strength, `C`.
    #[serde(default = "strength_c")]
    pub c: f64,
    /// Ratio of the yield ellipse's axes, `e`.
    #[serde(default = "ellipse")]
    pub ellipse: f64,
    /// Regularisation of `Delta` (1/s).
    #[serde(default = "delta_min")]
    pub delta_min: f64,
}

fn p_star() -> f64 {
    27_500.0
}
fn strength_c() -> f64 {
    20.0
}
fn ellipse() -> f64 {
    2.0
}
fn delta_min() -> f64 {
    2e-9
}

impl Default for ViscousPlasticConfig {
    fn default() -> Self {
        Self {
            p_star: p_star(),
            c: strength_c(),
            ellipse: ellipse(),
            delta_min: delta_min(),
        }
    }
}

impl ViscousPlasticConfig {
    /// Checks the values.
    pub(crate) fn check(&self) -> Result<(), BuildError> {
        if !(self.p_star >= 0.0 && self.p_star.is_finite()) {
            return Err(BuildError::invalid(
                "vp.p_star",
                format!("must be a non-negative number, got {}", self.p_star),
            ));
        }
        if !(self.c >= 0.0 && self.c.is_finite()) {
            return Err(BuildError::invalid(
                "vp.c",
                format!("must be a non-negative number, got {}", self.c),
            ));
        }
        positive("vp.ellipse", self.ellipse)?;
        positive("vp.delta_min", self.delta_min)
    }
}

/// Everything one mEVP solve needs besides the grid and the settings; node
/// fields `[m or 1, ny + 1, nx + 1]`, cell fields `[m, ny, nx]`.
pub(crate) struct MomentumInputs {
    /// Ice strength `P` at the cells.
    pub strength: Tensor<3>,
    /// `dt / m` at the nodes.
    pub dt_over_mass: Tensor<3>,
    /// Wind stress at the nodes.
    pub tau: [Tensor<3>; 2],
    /// Ocean current at the nodes.
    pub ocean: [Tensor<3>; 2],
    /// `rho_o C_o`, per member (`[m or 1, 1, 1]`).
    pub drag: Tensor<3>,
    /// `f dt`.
    pub coriolis_dt: f64,
    /// Active nodes (ones and zeros).
    pub node_mask: Tensor<3>,
    /// Prescribed velocities of a moving wall's nodes (zero elsewhere).
    pub wall: Option<[Tensor<3>; 2]>,
    /// The ocean current, node mask and wall on the host, for the fused
    /// kernel.
    pub nodes: Arc<fused::NodeConstants>,
}

impl MomentumInputs {
    /// Adds the moving wall's prescribed velocities to masked velocities.
    pub(crate) fn with_wall(&self, u: Tensor<3>, v: Tensor<3>) -> (Tensor<3>, Tensor<3>) {
        match &self.wall {
            Some([wu, wv]) => (u + wu.clone(), v + wv.clone()),
            None => (u, v),
        }
    }
}

/// Velocity and stress.
#[derive(Clone)]
pub(crate) struct Dynamics {
    pub u: Tensor<3>,
    pub v: Tensor<3>,
    pub sxx: Tensor<3>,
    pub syy: Tensor<3>,
    pub sxy: Tensor<3>,
}

/// The strain-rate invariants of a velocity field at the cell centres:
/// `(D, D_T, D_S)`.
pub(crate) fn strain_rates(grid: &Grid, u: &Tensor<3>, v: &Tensor<3>) -> [Tensor<3>; 3] {
    let (ux, uy) = grid.node_gradient(u);
    let (vx, vy) = grid.node_gradient(v);
    [ux.clone() + vy.clone(), ux - vy, uy + vx]
}

/// A floor under the squared arguments of square roots, so that their
/// derivatives stay finite at rest (it changes nothing at double
/// precision otherwise: strain rates of 1e-15 1/s).
pub(crate) const SQRT_FLOOR: f64 = 1e-30;

/// The velocity update shared by mEVP's sub-iterations and BBM's sub-steps
/// (`beta = 0`, `rhs` then holding the current velocity): with ocean drag
/// `C_w = drag |u_o - u|` from the current velocity and Coriolis `b = f dt`
/// implicit,
/// `(beta + 1 + dtm C_w) u' - b v' = beta u + rhs_u + dtm (F_x + C_w u_o)`,
/// `b u' + (beta + 1 + dtm C_w) v' = beta v + rhs_v + dtm (F_y + C_w v_o)`,
/// masked, with a moving wall's velocities added.
#[allow(clippy::too_many_arguments)]
pub(crate) fn velocity_update(
    inputs: &MomentumInputs,
    u: &Tensor<3>,
    v: &Tensor<3>,
    force: (Tensor<3>, Tensor<3>),
    rhs: (Tensor<3>, Tensor<3>),
    dtm: &Tensor<3>,
    beta: f64,
    b: f64,
) -> (Tensor<3>, Tensor<3>) {
    let [uo, vo] = inputs.ocean.clone();
    let (fx, fy) = force;
    let (rhs_u, rhs_v) = if beta == 0.0 {
        rhs
    } else {
        (u.clone() * beta + rhs.0, v.clone() * beta + rhs.1)
    };
    let (du, dv) = (uo.clone() - u.clone(), vo.clone() - v.clone());
    let speed = (du.clone() * du + dv.clone() * dv + SQRT_FLOOR).sqrt();
    let cw_dtm = inputs.drag.clone() * speed * dtm.clone();
    let a = cw_dtm.clone() + (beta + 1.0);
    let rx = rhs_u + dtm.clone() * fx + cw_dtm.clone() * uo;
    let ry = rhs_v + dtm.clone() * fy + cw_dtm * vo;
    let inv = (a.clone() * a.clone() + b * b).recip() * inputs.node_mask.clone();
    inputs.with_wall(
        (a.clone() * rx.clone() + ry.clone() * b) * inv.clone(),
        (a * ry - rx * b) * inv,
    )
}

/// One time step's mEVP sub-iterations from `start`; the RMS change of the
/// velocity at each sub-iteration (m/s) is pushed to `residuals` when
/// given (a device-to-host read per sub-iteration).
pub(crate) fn solve(
    grid: &Grid,
    settings: &MevpConfig,
    vp: &ViscousPlasticConfig,
    inputs: &MomentumInputs,
    start: Dynamics,
    mut residuals: Option<&mut Vec<f64>>,
) -> Dynamics {
    if settings.kernel == Kernel::Fused && fused::available(&start.u) {
        return solve_fused(grid, settings, vp, inputs, start, residuals);
    }
    let e2 = 1.0 / (vp.ellipse * vp.ellipse);
    let ra = 1.0 / settings.alpha;
    let beta = settings.beta;
    let b = inputs.coriolis_dt;
    let Dynamics {
        mut u,
        mut v,
        sxx,
        syy,
        mut sxy,
    } = start;
    let (u_n, v_n) = (u.clone(), v.clone());
    let [uo, vo] = inputs.ocean.clone();
    let [tx, ty] = inputs.tau.clone();
    let dtm = inputs.dt_over_mass.clone();
    // The parts of the right-hand side that do not change in the loop:
    // u^n + dt/m tau_a - dt f v_o (the tilt), and v^n + dt/m tau_a + dt f u_o.
    let rhs_u = u_n + dtm.clone() * tx - vo.clone() * b;
    let rhs_v = v_n + dtm.clone() * ty + uo.clone() * b;
    let mut s1 = sxx.clone() + syy.clone();
    let mut s2 = sxx - syy;
    let n_active = grid.node_mask.iter().filter(|&&m| m).count().max(1);
    for _ in 0..settings.iterations {
        let [d, dt_, ds] = strain_rates(grid, &u, &v);
        let delta = (d.clone() * d.clone()
            + (dt_.clone() * dt_.clone() + ds.clone() * ds.clone()) * e2
            + SQRT_FLOOR)
            .sqrt();
        // 2 zeta = P / (Delta + Delta_min).
        let two_zeta = inputs.strength.clone() * (delta.clone() + vp.delta_min).recip();
        s1 = s1.clone() * (1.0 - ra) + two_zeta.clone() * (d - delta) * ra;
        s2 = s2.clone() * (1.0 - ra) + two_zeta.clone() * dt_ * (e2 * ra);
        sxy = sxy.clone() * (1.0 - ra) + two_zeta * ds * (0.5 * e2 * ra);
        let force = grid.stress_divergence(
            (s1.clone() + s2.clone()) * 0.5,
            (s1.clone() - s2.clone()) * 0.5,
            sxy.clone(),
        );
        let (u_new, v_new) = velocity_update(
            inputs,
            &u,
            &v,
            force,
            (rhs_u.clone(), rhs_v.clone()),
            &dtm,
            beta,
            b,
        );
        if let Some(r) = residuals.as_deref_mut() {
            let du = u_new.clone() - u.clone();
            let dv = v_new.clone() - v.clone();
            let members = du.dims()[0];
            let sum = crate::device::to_vec((du.clone() * du + dv.clone() * dv).sum())[0];
            r.push((sum / (members * n_active) as f64).sqrt());
        }
        u = u_new;
        v = v_new;
    }
    Dynamics {
        u,
        v,
        sxx: (s1.clone() + s2.clone()) * 0.5,
        syy: (s1 - s2) * 0.5,
        sxy,
    }
}

/// [`solve`] by the fused kernel: the inputs packed into one tensor, one
/// custom operation, the outputs unpacked.
fn solve_fused(
    grid: &Grid,
    settings: &MevpConfig,
    vp: &ViscousPlasticConfig,
    inputs: &MomentumInputs,
    start: Dynamics,
    residuals: Option<&mut Vec<f64>>,
) -> Dynamics {
    let members = [
        &start.u,
        &inputs.strength,
        &inputs.dt_over_mass,
        &inputs.drag,
    ]
    .iter()
    .map(|t| t.dims()[0])
    .max()
    .unwrap_or(1);
    let flat = |t: Tensor<3>| {
        let [_, rows, cols] = t.dims();
        t.expand([members, rows, cols])
            .reshape([members, rows * cols])
    };
    let [tx, ty] = inputs.tau.clone();
    let x = Tensor::cat(
        vec![
            flat(start.u),
            flat(start.v),
            flat(start.sxx),
            flat(start.syy),
            flat(start.sxy),
            flat(inputs.strength.clone()),
            flat(inputs.dt_over_mass.clone()),
            flat(tx),
            flat(ty),
            flat(inputs.drag.clone()),
        ],
        1,
    );
    let plan = Arc::new(fused::Plan {
        ny: grid.ny,
        nx: grid.nx,
        kx: 0.5 / grid.dx,
        ky: 0.5 / grid.dy,
        ra: 1.0 / settings.alpha,
        beta: settings.beta,
        e2: 1.0 / (vp.ellipse * vp.ellipse),
        delta_min: vp.delta_min,
        b: inputs.coriolis_dt,
        iterations: settings.iterations,
        nodes: inputs.nodes.clone(),
        residuals: residuals.is_some().then(|| Mutex::new(Vec::new())),
    });
    let y = fused::solve(x, plan.clone());
    if let (Some(out), Some(sink)) = (residuals, &plan.residuals) {
        out.extend(sink.lock().expect("residual sink").iter());
    }
    let (n, c) = (grid.nodes(), grid.cells());
    let (ny, nx) = (grid.ny, grid.nx);
    let mut at = 0;
    let mut take = |len: usize, rows: usize, cols: usize| {
        let t = y.clone().narrow(1, at, len).reshape([members, rows, cols]);
        at += len;
        t
    };
    Dynamics {
        u: take(n, ny + 1, nx + 1),
        v: take(n, ny + 1, nx + 1),
        sxx: take(c, ny, nx),
        syy: take(c, ny, nx),
        sxy: take(c, ny, nx),
    }
}
