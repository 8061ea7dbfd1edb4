//! A single-column atmospheric boundary layer in the spirit of NEMO's ABL1d
//! (Lemarié et al. 2021, GMD 14, 543), one column per grid cell, every
//! column of every member stepped as one batch in burn ops (so the whole
//! step is differentiable).
//!
//! # Equations
//! Prognostic wind `(u, v)`, potential temperature `theta` and specific
//! humidity `q` at the cell centres `z_t`, turbulent kinetic energy `e` at
//! the interfaces `z_w` between cells:
//! ```text
//! du/dt = f (v - v_g) + d/dz(K_m du/dz) - (u - u_g)/tau(z)
//! dv/dt = -f (u - u_g) + d/dz(K_m dv/dz) - (v - v_g)/tau(z)
//! dtheta/dt = d/dz(K_h dtheta/dz) - (theta - theta_LS)/tau(z),  q alike
//! de/dt = K_m S^2 - K_h N^2 + d/dz(K_e de/dz) - C_eps e^(3/2)/l
//! K_m = C_m l sqrt(e),  K_h = C_t l sqrt(e) / (1 + max(phi_max, Ri_c l^2 N^2/e)),
//! K_e = C_e l sqrt(e),  N^2 = g (dtheta/dz / theta_ref + 0.608 dq/dz)
//! ```
//! with NEMO's constants ([`TkeConstants::NEMO`]). The mixing length is
//! Deardorff's (1980) `sqrt(2 e / N^2)`, bounded as NEMO's `nn_amxl = 0`
//! by the distance to the top (growing one metre per metre) and to the
//! surface (growing `L_sfc = kappa (C_m C_eps)^(1/4) / C_m` metres per
//! metre, so that the log layer is reproduced: `K_m = kappa u_* z` where
//! `e = u_*^2 / sqrt(C_m C_eps)`); we take the smaller of the two bounds
//! for mixing and dissipation alike.
//!
//! # Time stepping (as NEMO)
//! 1. TKE with `K` and `l` from the state at the start of the step:
//!    production explicit, dissipation and negative buoyancy flux implicit
//!    and linearised (Patankar), so `e` stays positive; vertical diffusion
//!    implicit; `e = E_sfc u_*^2` at the surface, `e_min` at the top; then
//!    `max(e, e_min)`.
//! 2. `K_m`, `K_h` from the new `e` (and the old `N^2`).
//! 3. Backward-Euler vertical diffusion of `u + i v` with Coriolis
//!    semi-implicit (implicitness 0.55), of `theta` and of `q`, each one
//!    tridiagonal solve batched over every column and member
//!    ([`tridiagonal`]). Surface fluxes enter the lowest cell, linearised
//!    in its value (`rho tau = gamma_m u_1`, `w'theta' = gamma_h (theta_s -
//!    theta_1)`), with `gamma` from the state at the start of the step.
//!
//! Surface exchange coefficients come from Monin-Obukhov bulk formulae
//! (Businger-Dyer/Paulson unstable, log-linear `beta = 5` stable, four fixed
//! iterations), over ice (fixed roughness) and over open water (Charnock),
//! blended by the ice fraction of the column.
//!
//! # State layout
//! `[members, n]`, `n = 5 * columns * levels`: fields `u, v, theta, q, tke`
//! in that order, each `[columns, levels]` row-major (lowest level first).
//! `tke` sits at the top interface of each cell (its last value, at the
//! model top, is held at `e_min`).

pub mod tridiagonal;

use std::f64::consts::PI;

use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

pub use tridiagonal::{Complex, solve_tridiagonal, solve_tridiagonal_complex};

use super::{BuildError, ModelSpec, positive};
use crate::core::{CoordinateUnits, Field, Geometry, Model};

/// von Kármán's constant.
pub const KARMAN: f64 = 0.4;
/// Gravity (m s^-2).
pub const GRAVITY: f64 = 9.81;
/// Number of prognostic fields.
pub const FIELDS: usize = 5;
/// Stable log-linear coefficient of the stability functions (momentum and heat).
const BETA_STABLE: f64 = 5.0;
/// Bounds of the surface-layer stability parameter `z_1 / L`.
const ZETA_RANGE: (f64, f64) = (-2.0, 1.0);
/// Fixed iterations of the Monin-Obukhov fixed point.
const SURFACE_ITERATIONS: usize = 4;
/// Wind-speed floor in the bulk formulae (m/s), squared.
const GUST2: f64 = 0.01;
/// Surface pressure for saturation humidity (Pa).
const SURFACE_PRESSURE: f64 = 101_325.0;

/// Constants of the TKE closure.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TkeConstants {
    /// `C_m` of `K_m = C_m l sqrt(e)`.
    pub c_m: f64,
    /// `C_t` of `K_h`.
    pub c_t: f64,
    /// `C_e` of `K_e` (TKE diffusivity).
    pub c_e: f64,
    /// `C_eps` of the dissipation `C_eps e^(3/2) / l`.
    pub c_eps: f64,
    /// Minimum TKE (m^2 s^-2).
    pub e_min: f64,
    /// Background viscosity (m^2/s).
    pub k_m_background: f64,
    /// Background diffusivity (m^2/s).
    pub k_h_background: f64,
    /// Critical Richardson number of the stability function.
    pub ri_c: f64,
    /// Lower bound of `Ri_c l^2 N^2 / e` (bounds `K_h / (C_t l sqrt e)` by 2.2).
    pub phi_max: f64,
}

impl TkeConstants {
    /// NEMO's defaults (`par_abl.F90`, Lemarié et al. 2021).
    pub const NEMO: Self = Self {
        c_m: 0.0667,
        c_t: 0.1667,
        c_e: 0.40,
        c_eps: 0.70,
        e_min: 1e-6,
        k_m_background: 1e-4,
        k_h_background: 1e-5,
        ri_c: 0.139,
        phi_max: (1.0 - 2.2) / 2.2,
    };

    /// `E_sfc = 1 / sqrt(C_m C_eps)`: surface TKE per `u_*^2`.
    pub fn surface_tke(&self) -> f64 {
        1.0 / (self.c_m * self.c_eps).sqrt()
    }

    /// `L_sfc = kappa (C_m C_eps)^(1/4) / C_m`: mixing length per height
    /// in the surface layer.
    pub fn surface_length(&self) -> f64 {
        KARMAN * (self.c_m * self.c_eps).powf(0.25) / self.c_m
    }

    /// The smallest mixing length, `K_m,bak / (C_m sqrt(e_min))`.
    pub fn min_length(&self) -> f64 {
        self.k_m_background / (self.c_m * self.e_min.sqrt())
    }
}

/// A stretched vertical grid: cell thickness grows geometrically from the
/// surface to the top.
#[derive(Clone, Debug, PartialEq)]
pub struct ColumnGrid {
    /// Interface heights `z_w` (m), `levels + 1` values from 0 to the top.
    pub interfaces: Vec<f64>,
    /// Cell-centre heights `z_t` (m), `levels` values.
    pub centres: Vec<f64>,
}

impl ColumnGrid {
    /// `levels` cells up to `top`, the lowest `bottom` thick, the others
    /// growing by a constant ratio (uniform when `bottom = top / levels`).
    ///
    /// # Errors
    /// Fewer than 4 levels, or a bottom thickness that is not in
    /// `(0, top / levels]` or would need a ratio above 1.5.
    pub fn stretched(levels: usize, top: f64, bottom: f64) -> Result<Self, String> {
        if levels < 4 {
            return Err(format!("at least 4 levels are needed, got {levels}"));
        }
        let uniform = top / levels as f64;
        if !(bottom > 0.0 && bottom <= uniform * (1.0 + 1e-12)) {
            return Err(format!(
                "the bottom thickness must be in (0, top / levels = {uniform}], got {bottom}"
            ));
        }
        let height = |r: f64| bottom * (0..levels).map(|k| r.powi(k as i32)).sum::<f64>();
        let ratio = if (uniform - bottom).abs() <= 1e-12 * uniform {
            1.0
        } else {
            let (mut lo, mut hi) = (1.0, 1.5);
            if height(hi) < top {
                return Err(format!(
                    "a bottom thickness of {bottom} m needs cells growing by more than 50 % per level to reach {top} m in {levels} levels"
                ));
            }
            for _ in 0..200 {
                let mid = 0.5 * (lo + hi);
                if height(mid) < top {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            0.5 * (lo + hi)
        };
        let mut interfaces = vec![0.0];
        let mut dz = bottom;
        for _ in 0..levels {
            interfaces.push(interfaces.last().unwrap() + dz);
            dz *= ratio;
        }
        interfaces[levels] = top;
        let centres = interfaces.windows(2).map(|w| 0.5 * (w[0] + w[1])).collect();
        Ok(Self {
            interfaces,
            centres,
        })
    }

    /// Number of cells.
    pub fn levels(&self) -> usize {
        self.centres.len()
    }

    /// Cell thicknesses `h_k`.
    pub fn thickness(&self) -> Vec<f64> {
        self.interfaces.windows(2).map(|w| w[1] - w[0]).collect()
    }

    /// Distances between adjacent centres, one per interior interface.
    pub fn centre_spacing(&self) -> Vec<f64> {
        self.centres.windows(2).map(|w| w[1] - w[0]).collect()
    }

    /// Heights of the interior interfaces (`z_w[1..levels]`).
    pub fn interior_interfaces(&self) -> Vec<f64> {
        self.interfaces[1..self.levels()].to_vec()
    }
}

/// One value for every column, or one per column.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PerColumn {
    /// The same value in every column.
    Same(f64),
    /// One value per column.
    Each(Vec<f64>),
}

impl PerColumn {
    fn values(&self, key: &str, columns: usize) -> Result<Vec<f64>, BuildError> {
        let v = match self {
            PerColumn::Same(x) => vec![*x; columns],
            PerColumn::Each(v) if v.len() == columns => v.clone(),
            PerColumn::Each(v) => {
                return Err(BuildError::invalid(
                    key,
                    format!("has {} values for {columns} columns", v.len()),
                ));
            }
        };
        if let Some(bad) = v.iter().find(|x| !x.is_finite()) {
            return Err(BuildError::invalid(
                key,
                format!("must be finite, got {bad}"),
            ));
        }
        Ok(v)
    }
}

/// What happens at the ground.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SurfaceKind {
    /// Bulk fluxes of momentum, heat and moisture over ice and open water.
    #[default]
    Bulk,
    /// Wind zero at the ground (exchange `K_m / z_1`), no heat or moisture
    /// flux: the Ekman layer.
    NoSlip,
    /// No flux of anything (free slip, insulated, dry): conservation checks.
    Insulated,
}

/// The `[model]` table of `name = "boundary_layer"`. The defaults are the
/// GABLS1 case (Beare et al. 2006) on a uniform 64-level grid.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoundaryLayerConfig {
    /// Number of cells in each column.
    #[serde(default = "levels")]
    pub levels: usize,
    /// Model top (m).
    #[serde(default = "top")]
    pub top: f64,
    /// Thickness of the lowest cell (m); absent: a uniform grid.
    #[serde(default)]
    pub bottom_thickness: Option<f64>,
    /// Number of columns (grid cells).
    #[serde(default = "one")]
    pub columns: usize,
    /// Time step (s).
    #[serde(default = "dt")]
    pub dt: f64,
    /// Coriolis parameter f (1/s).
    #[serde(default = "coriolis")]
    pub coriolis: f64,
    /// Implicitness of the Coriolis term (NEMO: 0.55).
    #[serde(default = "implicitness")]
    pub coriolis_implicitness: f64,
    /// Geostrophic wind `[u_g, v_g]` (m/s), the large-scale forcing.
    #[serde(default = "geostrophic")]
    pub geostrophic_wind: [f64; 2],
    /// A constant viscosity and diffusivity (m^2/s) instead of the TKE
    /// closure (TKE then stays as it is).
    #[serde(default)]
    pub constant_viscosity: Option<f64>,
    /// The lower boundary.
    #[serde(default)]
    pub surface: SurfaceKind,
    /// Ice fraction of each column, in [0, 1].
    #[serde(default = "full_ice")]
    pub ice_fraction: PerColumn,
    /// Ice surface temperature at time 0 (K).
    #[serde(default = "ice_temperature")]
    pub ice_temperature: PerColumn,
    /// Cooling of the ice surface (K per hour; negative warms).
    #[serde(default)]
    pub ice_cooling_rate: f64,
    /// Roughness length of ice, momentum and heat (m).
    #[serde(default = "ice_roughness")]
    pub ice_roughness: f64,
    /// Temperature of open water (K).
    #[serde(default = "water_temperature")]
    pub water_temperature: PerColumn,
    /// Surface humidity as a fraction of saturation (0: a dry surface; 0.98 over sea water).
    #[serde(default)]
    pub surface_saturation: f64,
    /// A prescribed upward kinematic heat flux (K m/s) instead of the bulk one.
    #[serde(default)]
    pub surface_heat_flux: Option<f64>,
    /// Reference potential temperature of the buoyancy (K).
    #[serde(default = "reference_temperature")]
    pub reference_temperature: f64,
    /// Initial wind (m/s); absent: the geostrophic wind.
    #[serde(default)]
    pub initial_wind: Option<[f64; 2]>,
    /// Initial potential temperature below `initial_mixed_height` (K).
    #[serde(default = "initial_theta")]
    pub initial_theta: f64,
    /// Top of the initial well-mixed layer (m).
    #[serde(default = "mixed_height")]
    pub initial_mixed_height: f64,
    /// Initial lapse rate of potential temperature above it (K/m).
    #[serde(default = "lapse_rate")]
    pub initial_lapse_rate: f64,
    /// Initial specific humidity (kg/kg).
    #[serde(default)]
    pub initial_humidity: f64,
    /// Initial surface TKE `e_0` of `e_0 (1 - z/d)^3` (m^2 s^-2).
    #[serde(default = "initial_tke")]
    pub initial_tke: f64,
    /// Depth `d` of the initial TKE profile (m).
    #[serde(default = "initial_tke_depth")]
    pub initial_tke_depth: f64,
    /// Relaxation time (s) towards the large-scale state (geostrophic wind,
    /// initial theta and q) above `relaxation_height`; absent: none.
    #[serde(default)]
    pub relaxation_time_above: Option<f64>,
    /// Relaxation time (s) below `relaxation_height`; absent: none.
    #[serde(default)]
    pub relaxation_time_inside: Option<f64>,
    /// Height separating the two relaxation times (m).
    #[serde(default = "relaxation_height")]
    pub relaxation_height: f64,
}

fn levels() -> usize {
    64
}
fn top() -> f64 {
    400.0
}
fn one() -> usize {
    1
}
fn dt() -> f64 {
    30.0
}
fn coriolis() -> f64 {
    1.39e-4
}
fn implicitness() -> f64 {
    0.55
}
fn geostrophic() -> [f64; 2] {
    [8.0, 0.0]
}
fn full_ice() -> PerColumn {
    PerColumn::Same(1.0)
}
fn ice_temperature() -> PerColumn {
    PerColumn::Same(265.0)
}
fn ice_roughness() -> f64 {
    0.1
}
fn water_temperature() -> PerColumn {
    PerColumn::Same(271.35)
}
fn reference_temperature() -> f64 {
    263.5
}
fn initial_theta() -> f64 {
    265.0
}
fn mixed_height() -> f64 {
    100.0
}
fn lapse_rate() -> f64 {
    0.01
}
fn initial_tke() -> f64 {
    0.4
}
fn initial_tke_depth() -> f64 {
    250.0
}
fn relaxation_height() -> f64 {
    1000.0
}

impl Default for BoundaryLayerConfig {
    fn default() -> Self {
        toml::from_str("").expect("every key has a default")
    }
}

impl BoundaryLayerConfig {
    /// Builds the model (on no particular device: tensors are made on the
    /// device of the state each step).
    ///
    /// # Errors
    /// A value the model cannot use, named by its key.
    pub fn build(&self) -> Result<BoundaryLayer, BuildError> {
        positive("top", self.top)?;
        positive("dt", self.dt)?;
        positive("reference_temperature", self.reference_temperature)?;
        positive("ice_roughness", self.ice_roughness)?;
        positive("initial_tke_depth", self.initial_tke_depth)?;
        for (key, v) in [
            ("coriolis", self.coriolis),
            ("ice_cooling_rate", self.ice_cooling_rate),
            ("initial_theta", self.initial_theta),
            ("initial_mixed_height", self.initial_mixed_height),
            ("initial_lapse_rate", self.initial_lapse_rate),
            ("relaxation_height", self.relaxation_height),
            ("geostrophic_wind", self.geostrophic_wind[0]),
            ("geostrophic_wind", self.geostrophic_wind[1]),
        ] {
            super::finite(key, v)?;
        }
        if self.columns == 0 {
            return Err(BuildError::invalid("columns", "must be at least 1"));
        }
        if !(0.5..=1.0).contains(&self.coriolis_implicitness) {
            return Err(BuildError::invalid(
                "coriolis_implicitness",
                format!(
                    "must be in [0.5, 1] for a stable step, got {}",
                    self.coriolis_implicitness
                ),
            ));
        }
        for (key, v) in [
            ("surface_saturation", self.surface_saturation),
            ("initial_humidity", self.initial_humidity),
            ("initial_tke", self.initial_tke),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(BuildError::invalid(
                    key,
                    format!("must be a non-negative number, got {v}"),
                ));
            }
        }
        if self.surface_saturation > 1.0 {
            return Err(BuildError::invalid(
                "surface_saturation",
                format!(
                    "is a fraction of saturation, at most 1, got {}",
                    self.surface_saturation
                ),
            ));
        }
        if let Some(k) = self.constant_viscosity {
            positive("constant_viscosity", k)?;
        }
        if let Some(q) = self.surface_heat_flux {
            super::finite("surface_heat_flux", q)?;
        }
        for (key, t) in [
            ("relaxation_time_above", self.relaxation_time_above),
            ("relaxation_time_inside", self.relaxation_time_inside),
        ] {
            if let Some(t) = t {
                positive(key, t)?;
            }
        }
        let bottom = self
            .bottom_thickness
            .unwrap_or(self.top / self.levels.max(1) as f64);
        let grid = ColumnGrid::stretched(self.levels, self.top, bottom).map_err(|e| {
            let key = if self.levels < 4 {
                "levels"
            } else {
                "bottom_thickness"
            };
            BuildError::invalid(key, e)
        })?;
        if self.ice_roughness >= grid.centres[0] {
            return Err(BuildError::invalid(
                "ice_roughness",
                format!(
                    "must be below the lowest level ({} m), got {}",
                    grid.centres[0], self.ice_roughness
                ),
            ));
        }
        let ice_fraction = self.ice_fraction.values("ice_fraction", self.columns)?;
        if let Some(a) = ice_fraction.iter().find(|a| !(0.0..=1.0).contains(*a)) {
            return Err(BuildError::invalid(
                "ice_fraction",
                format!("must be in [0, 1], got {a}"),
            ));
        }
        let ice_temperature = self
            .ice_temperature
            .values("ice_temperature", self.columns)?;
        let water_temperature = self
            .water_temperature
            .values("water_temperature", self.columns)?;
        if let Some(t) = ice_temperature
            .iter()
            .chain(&water_temperature)
            .find(|t| **t <= 0.0)
        {
            return Err(BuildError::invalid(
                "ice_temperature",
                format!("temperatures are in kelvin, got {t}"),
            ));
        }
        Ok(BoundaryLayer::new(
            self.clone(),
            grid,
            ice_fraction,
            ice_temperature,
            water_temperature,
        ))
    }
}

impl ModelSpec for BoundaryLayerConfig {
    fn init(&self, _device: &Device) -> Result<Box<dyn Model>, BuildError> {
        Ok(Box::new(self.build()?))
    }
}

/// The prognostic fields of a batch of columns, each `[batch, levels]`
/// (`batch = members * columns`, member-major).
#[derive(Clone, Debug)]
pub struct Columns {
    /// Eastward wind at the centres (m/s).
    pub u: Tensor<2>,
    /// Northward wind at the centres (m/s).
    pub v: Tensor<2>,
    /// Potential temperature at the centres (K).
    pub theta: Tensor<2>,
    /// Specific humidity at the centres (kg/kg).
    pub q: Tensor<2>,
    /// TKE at the top interface of each cell (m^2 s^-2).
    pub tke: Tensor<2>,
}

/// Turbulence at the interior interfaces, each `[batch, levels - 1]`.
struct Turbulence {
    length: Tensor<2>,
    k_m: Tensor<2>,
    k_h: Tensor<2>,
    k_e: Tensor<2>,
}

/// The surface exchange of a batch of columns, each `[batch, 1]`: the
/// flux into the lowest cell is `source - coefficient * value_1`.
struct SurfaceExchange {
    /// `gamma_m` (m/s): kinematic stress `gamma_m (u_1, v_1)`.
    momentum: Tensor<2>,
    heat_coefficient: Tensor<2>,
    heat_source: Tensor<2>,
    moisture_coefficient: Tensor<2>,
    moisture_source: Tensor<2>,
    /// `u_*^2` (m^2 s^-2).
    ustar2: Tensor<2>,
    /// `gamma_m` over ice times the ice fraction times the ice velocity:
    /// the momentum flux `gamma_m u_1 - source` acts on the wind relative
    /// to moving ice.
    momentum_source: Option<[Tensor<2>; 2]>,
    /// Per unit area of ice, `gamma_m` and `gamma_h`, and of open water,
    /// `gamma_h` (m/s): for the fluxes a coupled model takes back.
    ice: Option<(Tensor<2>, Tensor<2>)>,
    water: Option<Tensor<2>>,
}

impl SurfaceExchange {
    /// No exchange at all, shaped like `zero` (`[batch, 1]`).
    fn none(zero: Tensor<2>) -> Self {
        Self {
            momentum: zero.clone(),
            heat_coefficient: zero.clone(),
            heat_source: zero.clone(),
            moisture_coefficient: zero.clone(),
            moisture_source: zero.clone(),
            ustar2: zero,
            momentum_source: None,
            ice: None,
            water: None,
        }
    }
}

/// What lies below the columns, `[members * columns, 1]` each (member-major),
/// as tensors so that a coupled model differentiates through it.
#[derive(Clone, Debug)]
pub struct Surface {
    /// Ice fraction, in [0, 1].
    pub ice_fraction: Tensor<2>,
    /// Ice surface temperature (K).
    pub ice_temperature: Tensor<2>,
    /// Open-water temperature (K).
    pub water_temperature: Tensor<2>,
    /// Ice velocity `(u, v)` (m/s): the stress over ice acts on the wind
    /// relative to it. `None`: ice at rest.
    pub ice_velocity: Option<[Tensor<2>; 2]>,
    /// Roughness length of the ice (m); `None`: the configured one.
    pub ice_roughness: Option<Tensor<2>>,
    /// Which of ice and open water are anywhere present (a host hint that
    /// skips a surface's bulk formulae where its fraction is zero
    /// everywhere).
    present: [bool; 2],
}

impl Surface {
    /// A surface from tensors; both kinds are treated as present.
    pub fn new(
        ice_fraction: Tensor<2>,
        ice_temperature: Tensor<2>,
        water_temperature: Tensor<2>,
        ice_velocity: Option<[Tensor<2>; 2]>,
    ) -> Self {
        Self {
            ice_fraction,
            ice_temperature,
            water_temperature,
            ice_velocity,
            ice_roughness: None,
            present: [true, true],
        }
    }

    /// The same surface with the ice's roughness length given per column
    /// (`[members * columns, 1]`, m), e.g. a parameter being estimated.
    pub fn with_ice_roughness(mut self, roughness: Tensor<2>) -> Self {
        self.ice_roughness = Some(roughness);
        self
    }
}

/// The fluxes at the surface over one step, from the exchange coefficients
/// at its start and the wind and temperature at its end, `[members *
/// columns, 1]` each, per unit area of each surface.
#[derive(Clone, Debug)]
pub struct SurfaceFluxes {
    /// Kinematic stress of the air on the ice, `gamma_m (u_1 - u_ice)`
    /// (m^2 s^-2; times the air density, N/m^2).
    pub ice_stress: [Tensor<2>; 2],
    /// Upward kinematic heat flux over ice, `gamma_h (T_ice - theta_1)`
    /// (K m/s; times `rho_a c_p`, W/m^2).
    pub ice_heat: Tensor<2>,
    /// Upward kinematic heat flux over open water (K m/s).
    pub water_heat: Tensor<2>,
    /// The exchange coefficient for heat over ice, `gamma_h` (m/s): a
    /// zero-layer ice model balances its conduction against it.
    pub ice_heat_coefficient: Tensor<2>,
}

/// Diagnostics of one column, as Beare et al. (2006) define them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ColumnDiagnostics {
    /// `u_* = sqrt(|tau_0|)` (m/s).
    pub friction_velocity: f64,
    /// Height where the stress falls to 5 % of its surface value, divided
    /// by 0.95 (m).
    pub boundary_layer_height: f64,
    /// Largest wind speed in the column (m/s).
    pub jet_speed: f64,
    /// Its height (m).
    pub jet_height: f64,
    /// Upward kinematic heat flux at the surface (K m/s).
    pub surface_heat_flux: f64,
    /// Height of the most negative heat flux (the entrainment level of a
    /// convective layer), between levels by a parabola through the three
    /// values around the minimum (m).
    pub heat_flux_minimum_height: f64,
    /// `-(minimum heat flux) / (surface heat flux)`: the entrainment ratio
    /// `A` of a convective layer (about 0.2 in LES).
    pub entrainment_ratio: f64,
}

/// The single-column boundary-layer model (see the module docs).
#[derive(Clone, Debug)]
pub struct BoundaryLayer {
    config: BoundaryLayerConfig,
    grid: ColumnGrid,
    constants: TkeConstants,
    ice_fraction: Vec<f64>,
    ice_temperature: Vec<f64>,
    water_temperature: Vec<f64>,
    relaxation: Vec<f64>,
    large_scale_theta: Vec<f64>,
    initial: Vec<f64>,
    geometry: Geometry,
}

/// Field names, long names and units.
const FIELD_NAMES: [(&str, &str, &str); FIELDS] = [
    ("u", "eastward wind", "m s-1"),
    ("v", "northward wind", "m s-1"),
    ("theta", "potential temperature", "K"),
    ("q", "specific humidity", "kg kg-1"),
    ("tke", "turbulent kinetic energy", "m2 s-2"),
];

fn row(values: &[f64], device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(values.to_vec(), [1, values.len()]), device)
}

/// Saturation specific humidity (kg/kg) at the surface pressure of a
/// tensor of temperatures (K), Tetens' formula over ice or over water.
fn saturation_humidity_tensor(temperature: Tensor<2>, over_ice: bool) -> Tensor<2> {
    let (a, b) = if over_ice {
        (22.46, 0.53)
    } else {
        (17.67, 29.65)
    };
    let t = temperature.clone() - 273.15;
    let e = (t * a * (temperature - b).recip()).exp() * 611.2;
    e.clone() * 0.622 * (e * (-0.378) + SURFACE_PRESSURE).recip()
}

/// Monin-Obukhov stability corrections `(psi_m, psi_h)` of `zeta = z/L`:
/// Paulson (1970) for `zeta < 0`, log-linear `-beta zeta` for `zeta > 0`.
fn stability(zeta: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
    let stable = zeta.clone().clamp_min(0.0) * (-BETA_STABLE);
    let x = (zeta.clamp_max(0.0) * (-16.0) + 1.0).powf_scalar(0.25);
    let x2 = x.clone().square();
    let half_1x2 = ((x2 + 1.0) * 0.5).log();
    let psi_m = ((x.clone() + 1.0) * 0.5).log() * 2.0 + half_1x2.clone() - x.atan() * 2.0
        + PI / 2.0
        + stable.clone();
    let psi_h = half_1x2 * 2.0 + stable;
    (psi_m, psi_h)
}

impl BoundaryLayer {
    fn new(
        config: BoundaryLayerConfig,
        grid: ColumnGrid,
        ice_fraction: Vec<f64>,
        ice_temperature: Vec<f64>,
        water_temperature: Vec<f64>,
    ) -> Self {
        let constants = TkeConstants::NEMO;
        let columns = config.columns;
        let n = grid.levels();
        let relaxation: Vec<f64> = grid
            .centres
            .iter()
            .map(|&z| {
                let tau = if z >= config.relaxation_height {
                    config.relaxation_time_above
                } else {
                    config.relaxation_time_inside
                };
                tau.map_or(0.0, |t| config.dt / t)
            })
            .collect();
        let large_scale_theta: Vec<f64> = grid
            .centres
            .iter()
            .map(|&z| {
                config.initial_theta
                    + config.initial_lapse_rate * (z - config.initial_mixed_height).max(0.0)
            })
            .collect();
        let [u0, v0] = config.initial_wind.unwrap_or(config.geostrophic_wind);
        let tke0: Vec<f64> = grid.interfaces[1..]
            .iter()
            .enumerate()
            .map(|(j, &z)| {
                let shape = (1.0 - z / config.initial_tke_depth).max(0.0).powi(3);
                if j + 1 == n {
                    constants.e_min
                } else {
                    (config.initial_tke * shape).max(constants.e_min)
                }
            })
            .collect();
        let profiles: [Vec<f64>; FIELDS] = [
            vec![u0; n],
            vec![v0; n],
            large_scale_theta.clone(),
            vec![config.initial_humidity; n],
            tke0,
        ];
        let initial: Vec<f64> = profiles
            .iter()
            .flat_map(|p| (0..columns).flat_map(move |_| p.iter().copied()))
            .collect();
        let column_index: Vec<f64> = (0..columns).map(|c| c as f64).collect();
        let fields = FIELD_NAMES
            .iter()
            .enumerate()
            .map(|(k, (name, long, units))| {
                let heights = if k == FIELDS - 1 {
                    grid.interfaces[1..].to_vec()
                } else {
                    grid.centres.clone()
                };
                Field::grid(name, long, units, heights, column_index.clone())
            })
            .collect();
        let geometry = Geometry::new(fields, [None, None], CoordinateUnits::Metres);
        Self {
            config,
            grid,
            constants,
            ice_fraction,
            ice_temperature,
            water_temperature,
            relaxation,
            large_scale_theta,
            initial,
            geometry,
        }
    }

    /// The vertical grid.
    pub fn grid(&self) -> &ColumnGrid {
        &self.grid
    }

    /// The configuration it was built from.
    pub fn config(&self) -> &BoundaryLayerConfig {
        &self.config
    }

    /// The closure constants.
    pub fn constants(&self) -> &TkeConstants {
        &self.constants
    }

    /// The initial state of one member (`n` values), from the config's
    /// profiles.
    pub fn initial_vector(&self) -> Vec<f64> {
        self.initial.clone()
    }

    /// The initial state of `members` identical members on `device`.
    ///
    /// # Shapes
    /// `-> [members, n]`.
    pub fn initial_state(&self, members: usize, device: &Device) -> Tensor<2> {
        let n = self.initial.len();
        let values: Vec<f64> = (0..members)
            .flat_map(|_| self.initial.iter().copied())
            .collect();
        Tensor::from_data(TensorData::new(values, [members, n]), device)
    }

    /// Ice surface temperature of each column at `time` (s).
    pub fn ice_surface_temperature(&self, time: f64) -> Vec<f64> {
        self.ice_temperature
            .iter()
            .map(|t| t - self.config.ice_cooling_rate * time / 3600.0)
            .collect()
    }

    /// Splits a state batch into its fields.
    ///
    /// # Shapes
    /// `[members, n] -> 5 x [members * columns, levels]`.
    pub fn split(&self, state: Tensor<2>) -> Columns {
        let [members, _] = state.dims();
        let (c, nl) = (self.config.columns, self.grid.levels());
        let x = state.reshape([members, FIELDS, c, nl]);
        let f = |k: usize| x.clone().narrow(1, k, 1).reshape([members * c, nl]);
        Columns {
            u: f(0),
            v: f(1),
            theta: f(2),
            q: f(3),
            tke: f(4),
        }
    }

    /// Joins fields back into a state batch (inverse of [`split`](Self::split)).
    ///
    /// # Shapes
    /// `5 x [members * columns, levels] -> [members, n]`.
    pub fn join(&self, columns: Columns) -> Tensor<2> {
        let [batch, nl] = columns.u.dims();
        let c = self.config.columns;
        let members = batch / c;
        let parts = [columns.u, columns.v, columns.theta, columns.q, columns.tke]
            .into_iter()
            .map(|f| f.reshape([members, 1, c, nl]))
            .collect();
        Tensor::cat(parts, 1).reshape([members, FIELDS * c * nl])
    }

    /// A per-column value repeated over `members`, `[members * columns, 1]`.
    fn per_column(&self, values: &[f64], members: usize, device: &Device) -> Tensor<2> {
        let all: Vec<f64> = (0..members).flat_map(|_| values.iter().copied()).collect();
        let b = all.len();
        Tensor::from_data(TensorData::new(all, [b, 1]), device)
    }

    /// Differences across the interior interfaces divided by the centre
    /// spacing: `(x_{k+1} - x_k) / dz`, `[batch, levels - 1]`.
    fn gradient(&self, x: &Tensor<2>, dz: &Tensor<2>) -> Tensor<2> {
        let nl = self.grid.levels();
        (x.clone().narrow(1, 1, nl - 1) - x.clone().narrow(1, 0, nl - 1)) / dz.clone()
    }

    /// Squared shear and buoyancy frequency at the interior interfaces.
    fn shear_and_stratification(&self, x: &Columns, dz: &Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        let du = self.gradient(&x.u, dz);
        let dv = self.gradient(&x.v, dz);
        let s2 = du.square() + dv.square();
        let n2 = (self.gradient(&x.theta, dz) / self.config.reference_temperature
            + self.gradient(&x.q, dz) * 0.608)
            * GRAVITY;
        (s2, n2)
    }

    /// Mixing length and coefficients from the TKE at the interior
    /// interfaces and `N^2` there.
    fn turbulence(&self, tke: Tensor<2>, n2: Tensor<2>) -> Turbulence {
        let device = tke.device();
        let c = &self.constants;
        if let Some(k) = self.config.constant_viscosity {
            let k = tke.zeros_like() + k;
            return Turbulence {
                length: tke.ones_like(),
                k_m: k.clone(),
                k_h: k.clone(),
                k_e: k,
            };
        }
        let zw = row(&self.grid.interior_interfaces(), &device);
        let ls = c.surface_length();
        // Deardorff (1980): sqrt(2 e / N^2) in stable stratification.
        let deardorff = (tke.clone() * 2.0 / n2.clone().clamp_min(1e-12)).sqrt();
        // Bounded below: l_dw(z) = min over z' <= z of l_D(z') + L_sfc (z - z'),
        // with l_dw = 0 at the ground; above: l_up(z) = min over z' >= z of
        // l_D(z') + (z' - z), with the distance to the top.
        let down = (deardorff.clone() - zw.clone() * ls)
            .cummin(1)
            .clamp_max(0.0)
            + zw.clone() * ls;
        let up = (deardorff + zw.clone())
            .flip([1])
            .cummin(1)
            .flip([1])
            .clamp_max(self.config.top)
            - zw;
        let length = down.min_pair(up).clamp_min(c.min_length());
        let l_sqrt_e = length.clone() * tke.clone().sqrt();
        let k_m = (l_sqrt_e.clone() * c.c_m).clamp_min(c.k_m_background);
        let ratio = (length.clone().square() * n2 / tke * c.ri_c).clamp_min(c.phi_max);
        let k_h = (l_sqrt_e.clone() * c.c_t / (ratio + 1.0)).clamp_min(c.k_h_background);
        let k_e = l_sqrt_e * c.c_e;
        Turbulence {
            length,
            k_m,
            k_h,
            k_e,
        }
    }

    /// Exchange coefficients `(gamma_m, gamma_h)` (m/s) of the bulk
    /// formulae at the lowest level, given the wind speed, the
    /// temperature and humidity differences to the surface, and a fixed
    /// roughness, one per column (`Some`), or Charnock's over water
    /// (`None`).
    fn bulk(
        &self,
        wind: &Tensor<2>,
        dtheta: &Tensor<2>,
        dq: &Tensor<2>,
        roughness: Option<Tensor<2>>,
    ) -> (Tensor<2>, Tensor<2>) {
        let z1 = self.grid.centres[0];
        let theta_ref = self.config.reference_temperature;
        let charnock = roughness.is_none();
        let mut log_z = match roughness {
            Some(z0) => (z0.recip() * z1).log(),
            None => wind.zeros_like() + (z1 / 1e-4).ln(),
        };
        let mut zeta = wind.zeros_like();
        let friction = |log_z: &Tensor<2>, zeta: &Tensor<2>| {
            let (psi_m, psi_h) = stability(zeta.clone());
            let ustar = wind.clone() * KARMAN / (log_z.clone() - psi_m).clamp_min(0.5);
            let per_h = (log_z.clone() - psi_h).clamp_min(0.5).recip() * KARMAN;
            (ustar, per_h)
        };
        for _ in 0..SURFACE_ITERATIONS {
            let (ustar, per_h) = friction(&log_z, &zeta);
            let theta_star = match self.config.surface_heat_flux {
                Some(flux) => ustar.clone().recip() * (-flux),
                None => dtheta.clone() * per_h.clone(),
            };
            let q_star = dq.clone() * per_h;
            zeta = ((theta_star / theta_ref + q_star * 0.608) * (KARMAN * GRAVITY * z1)
                / ustar.clone().square())
            .clamp(ZETA_RANGE.0, ZETA_RANGE.1);
            if charnock {
                // Charnock (0.018) plus the smooth-flow term.
                let z0 =
                    ustar.clone().square() * (0.018 / GRAVITY) + ustar.recip() * (0.11 * 1.5e-5);
                log_z = (z0.recip() * z1).log();
            }
        }
        let (ustar, per_h) = friction(&log_z, &zeta);
        let gamma_m = ustar.clone().square() / wind.clone();
        (gamma_m, ustar * per_h)
    }

    /// The surface the configuration describes at `time`, for `members`.
    pub fn configured_surface(&self, members: usize, time: f64, device: &Device) -> Surface {
        Surface {
            ice_fraction: self.per_column(&self.ice_fraction, members, device),
            ice_temperature: self.per_column(&self.ice_surface_temperature(time), members, device),
            water_temperature: self.per_column(&self.water_temperature, members, device),
            ice_velocity: None,
            ice_roughness: None,
            present: [
                self.ice_fraction.iter().any(|w| *w != 0.0),
                self.ice_fraction.iter().any(|a| *a != 1.0),
            ],
        }
    }

    /// The surface exchange of a batch over `below`.
    fn surface(&self, x: &Columns, turbulence: &Turbulence, below: &Surface) -> SurfaceExchange {
        let first = |f: &Tensor<2>| f.clone().narrow(1, 0, 1);
        let (u1, v1, theta1, q1) = (first(&x.u), first(&x.v), first(&x.theta), first(&x.q));
        let speed2 = u1.clone().square() + v1.clone().square();
        let zero = u1.zeros_like();
        match self.config.surface {
            SurfaceKind::Insulated => SurfaceExchange::none(zero),
            SurfaceKind::NoSlip => {
                let gamma = turbulence.k_m.clone().narrow(1, 0, 1) / self.grid.centres[0];
                SurfaceExchange {
                    ustar2: gamma.clone() * speed2.sqrt(),
                    momentum: gamma,
                    ..SurfaceExchange::none(zero)
                }
            }
            SurfaceKind::Bulk => {
                let wind = (speed2 + GUST2).sqrt();
                // Over moving ice the bulk formulae see the relative wind.
                let ice_wind = below.ice_velocity.as_ref().map(|[ui, vi]| {
                    let (du, dv) = (u1.clone() - ui.clone(), v1.clone() - vi.clone());
                    (du.square() + dv.square() + GUST2).sqrt()
                });
                let s = self.config.surface_saturation;
                let ice_w = below.ice_fraction.clone();
                let surfaces = [
                    (
                        ice_w.clone(),
                        below.ice_temperature.clone(),
                        Some(match &below.ice_roughness {
                            Some(z0) => z0.clone(),
                            None => ice_w.zeros_like() + self.config.ice_roughness,
                        }),
                        true,
                    ),
                    (
                        ice_w.neg() + 1.0,
                        below.water_temperature.clone(),
                        None,
                        false,
                    ),
                ];
                let mut ex = SurfaceExchange::none(zero);
                let mut ustar2 = None;
                for (k, (w, ts, roughness, over_ice)) in surfaces.into_iter().enumerate() {
                    if !below.present[k] {
                        continue;
                    }
                    let qs = saturation_humidity_tensor(ts.clone(), over_ice) * s;
                    let speed = match (&ice_wind, over_ice) {
                        (Some(rel), true) => rel.clone(),
                        _ => wind.clone(),
                    };
                    let (gm, gh) = self.bulk(
                        &speed,
                        &(theta1.clone() - ts.clone()),
                        &(q1.clone() - qs.clone()),
                        roughness,
                    );
                    if over_ice {
                        ex.ice = Some((gm.clone(), gh.clone()));
                    } else {
                        ex.water = Some(gh.clone());
                    }
                    let weighted = gm * w.clone();
                    if ice_wind.is_some() {
                        let part = weighted.clone() * speed;
                        ustar2 = Some(match ustar2 {
                            Some(sum) => sum + part,
                            None => part,
                        });
                    }
                    if over_ice && let Some([ui, vi]) = &below.ice_velocity {
                        ex.momentum_source =
                            Some([weighted.clone() * ui.clone(), weighted.clone() * vi.clone()]);
                    }
                    let gh = gh * w;
                    ex.momentum = ex.momentum + weighted;
                    ex.heat_coefficient = ex.heat_coefficient + gh.clone();
                    ex.heat_source = ex.heat_source + gh.clone() * ts;
                    ex.moisture_coefficient = ex.moisture_coefficient + gh.clone();
                    ex.moisture_source = ex.moisture_source + gh * qs;
                }
                if let Some(flux) = self.config.surface_heat_flux {
                    ex.heat_coefficient = ex.heat_coefficient.zeros_like();
                    ex.heat_source = ex.heat_source.zeros_like() + flux;
                }
                ex.ustar2 = match ustar2 {
                    Some(u2) => u2,
                    None => ex.momentum.clone() * wind,
                };
                ex
            }
        }
    }

    /// One implicit diffusion step of a centre field `x` with interface
    /// coefficients `k` (`[batch, levels - 1]`), surface exchange
    /// `coefficient`/`source` and relaxation towards `target`: the
    /// tridiagonal system's `(lower, diag, upper, rhs)`.
    #[allow(clippy::too_many_arguments)]
    fn diffusion_system(
        &self,
        x: &Tensor<2>,
        k: &Tensor<2>,
        coefficient: &Tensor<2>,
        source: &Tensor<2>,
        relax: &Tensor<2>,
        h: &Tensor<2>,
        dz: &Tensor<2>,
    ) -> [Tensor<2>; 4] {
        let dt = self.config.dt;
        let nl = self.grid.levels();
        let pad = Tensor::cat(
            vec![
                coefficient.clone() * dt,
                k.clone() * dt / dz.clone(),
                coefficient.zeros_like(),
            ],
            1,
        );
        let below = pad.clone().narrow(1, 0, nl) / h.clone();
        let above = pad.narrow(1, 1, nl) / h.clone();
        let diag = below.clone() + above.clone() + relax.clone() + 1.0;
        let surface = Tensor::cat(
            vec![
                source.clone() * (dt / self.grid.thickness()[0]),
                x.zeros_like().narrow(1, 1, nl - 1),
            ],
            1,
        );
        [-below, diag, -above, x.clone() + surface]
    }

    /// One step of a batch of columns from `time`.
    ///
    /// # Shapes
    /// Every field `[members * columns, levels]`, in and out.
    pub fn step_columns(&self, x: Columns, time: f64) -> Columns {
        let members = x.u.dims()[0] / self.config.columns;
        let below = self.configured_surface(members, time, &x.u.device());
        self.step_over(x, &below, None).0
    }

    /// One step of a batch of columns over the surface `below`, with the
    /// geostrophic wind of each column (`[members * columns, 1]` each;
    /// `None`: the configured one); also the fluxes the surface receives.
    /// This is what a coupled model calls: everything it passes in is
    /// differentiated through.
    ///
    /// # Shapes
    /// Every field `[members * columns, levels]`, in and out.
    pub fn step_over(
        &self,
        mut x: Columns,
        below: &Surface,
        geostrophic: Option<&[Tensor<2>; 2]>,
    ) -> (Columns, SurfaceFluxes) {
        let device = x.u.device();
        let c = &self.constants;
        // A state from elsewhere (an analysis) may carry TKE below e_min.
        x.tke = x.tke.clamp_min(c.e_min);
        let dt = self.config.dt;
        let nl = self.grid.levels();
        let h = row(&self.grid.thickness(), &device);
        let dz = row(&self.grid.centre_spacing(), &device);
        let (s2, n2) = self.shear_and_stratification(&x, &dz);
        let interior = |e: &Tensor<2>| e.clone().narrow(1, 0, nl - 1);
        let old = self.turbulence(interior(&x.tke), n2.clone());
        let surface = self.surface(&x, &old, below);

        // 1. TKE at the interior interfaces.
        let tke = if self.config.constant_viscosity.is_some() {
            x.tke.clone()
        } else {
            let e = interior(&x.tke);
            let production = old.k_m.clone() * s2;
            let buoyancy = -old.k_h.clone() * n2.clone();
            let sink = e.clone().sqrt() * c.c_eps / old.length.clone()
                + (-buoyancy.clone()).clamp_min(0.0) / e.clone();
            let source = production + buoyancy.clamp_min(0.0);
            let k_e = old.k_e.clone();
            let cells = Tensor::cat(
                vec![
                    k_e.clone().narrow(1, 0, 1),
                    (k_e.clone().narrow(1, 0, nl - 2) + k_e.clone().narrow(1, 1, nl - 2)) * 0.5,
                    k_e.narrow(1, nl - 2, 1),
                ],
                1,
            );
            let beta = cells * dt / h.clone();
            let below = beta.clone().narrow(1, 0, nl - 1) / dz.clone();
            let above = beta.narrow(1, 1, nl - 1) / dz.clone();
            let diag = below.clone() + above.clone() + sink * dt + 1.0;
            let e_surface = (surface.ustar2.clone() * c.surface_tke()).clamp_min(c.e_min);
            let boundary = Tensor::cat(
                vec![
                    below.clone().narrow(1, 0, 1) * e_surface,
                    e.zeros_like().narrow(1, 0, nl - 3),
                    above.clone().narrow(1, nl - 2, 1) * c.e_min,
                ],
                1,
            );
            let rhs = e.clone() + source * dt + boundary;
            let e_new = solve_tridiagonal(-below, diag, -above, rhs).clamp_min(c.e_min);
            Tensor::cat(
                vec![
                    e_new,
                    x.tke.clone().narrow(1, nl - 1, 1).zeros_like() + c.e_min,
                ],
                1,
            )
        };

        // 2. Coefficients from the new TKE.
        let turbulence = self.turbulence(interior(&tke), n2);
        let relax = row(&self.relaxation, &device);

        // 3. Momentum: u + i v with Coriolis.
        let f_dt = self.config.coriolis * dt;
        let theta_c = self.config.coriolis_implicitness;
        let [ug, vg] = self.config.geostrophic_wind;
        let zero = surface.momentum.zeros_like();
        let [lower, diag, upper, _] = self.diffusion_system(
            &x.u,
            &turbulence.k_m,
            &surface.momentum,
            &zero,
            &relax,
            &h,
            &dz,
        );
        // The configured geostrophic wind as one value for every column.
        let configured;
        let [ug, vg] = match geostrophic {
            Some(per_column) => per_column,
            None => {
                let one =
                    |v: f64| Tensor::<2>::from_data(TensorData::new(vec![v], [1, 1]), &device);
                configured = [one(ug), one(vg)];
                &configured
            }
        };
        let mut rhs_u = x.u.clone() + x.v.clone() * ((1.0 - theta_c) * f_dt) - vg.clone() * f_dt
            + relax.clone() * ug.clone();
        let mut rhs_v = x.v.clone() - x.u.clone() * ((1.0 - theta_c) * f_dt)
            + ug.clone() * f_dt
            + relax.clone() * vg.clone();
        // The part of the surface stress carried by moving ice.
        if let Some([su, sv]) = &surface.momentum_source {
            let k = dt / self.grid.thickness()[0];
            let lowest = |src: &Tensor<2>| {
                Tensor::cat(
                    vec![src.clone() * k, x.u.zeros_like().narrow(1, 1, nl - 1)],
                    1,
                )
            };
            rhs_u = rhs_u + lowest(su);
            rhs_v = rhs_v + lowest(sv);
        }
        let wind = solve_tridiagonal_complex(
            lower,
            Complex {
                im: diag.zeros_like() + theta_c * f_dt,
                re: diag,
            },
            upper,
            Complex {
                re: rhs_u,
                im: rhs_v,
            },
        );

        // 4. Tracers.
        let theta_ls = row(&self.large_scale_theta, &device);
        let [lower, diag, upper, rhs] = self.diffusion_system(
            &x.theta,
            &turbulence.k_h,
            &surface.heat_coefficient,
            &surface.heat_source,
            &relax,
            &h,
            &dz,
        );
        let theta = solve_tridiagonal(lower, diag, upper, rhs + relax.clone() * theta_ls);
        let [lower, diag, upper, rhs] = self.diffusion_system(
            &x.q,
            &turbulence.k_h,
            &surface.moisture_coefficient,
            &surface.moisture_source,
            &relax,
            &h,
            &dz,
        );
        let q = solve_tridiagonal(
            lower,
            diag,
            upper,
            rhs + relax * self.config.initial_humidity,
        );
        // The fluxes the surface receives, with the new lowest level.
        let first = |f: &Tensor<2>| f.clone().narrow(1, 0, 1);
        let (u1, v1, theta1) = (first(&wind.re), first(&wind.im), first(&theta));
        let zero = u1.zeros_like();
        let (ice_stress, ice_heat, ice_heat_coefficient) = match &surface.ice {
            Some((gm, gh)) => {
                let (du, dv) = match &below.ice_velocity {
                    Some([ui, vi]) => (u1.clone() - ui.clone(), v1.clone() - vi.clone()),
                    None => (u1.clone(), v1.clone()),
                };
                (
                    [gm.clone() * du, gm.clone() * dv],
                    gh.clone() * (below.ice_temperature.clone() - theta1.clone()),
                    gh.clone(),
                )
            }
            None => ([zero.clone(), zero.clone()], zero.clone(), zero.clone()),
        };
        let water_heat = match &surface.water {
            Some(gh) => gh.clone() * (below.water_temperature.clone() - theta1),
            None => zero,
        };
        (
            Columns {
                u: wind.re,
                v: wind.im,
                theta,
                q,
                tke,
            },
            SurfaceFluxes {
                ice_stress,
                ice_heat,
                water_heat,
                ice_heat_coefficient,
            },
        )
    }

    /// Diagnostics of every column of every member at `time`, member-major.
    pub fn diagnose(&self, state: Tensor<2>, time: f64) -> Vec<ColumnDiagnostics> {
        let device = state.device();
        let nl = self.grid.levels();
        let x = self.split(state);
        let dz = row(&self.grid.centre_spacing(), &device);
        let (_, n2) = self.shear_and_stratification(&x, &dz);
        let turbulence = self.turbulence(x.tke.clone().narrow(1, 0, nl - 1), n2);
        let members = x.u.dims()[0] / self.config.columns;
        let below = self.configured_surface(members, time, &device);
        let surface = self.surface(&x, &turbulence, &below);
        let host = crate::device::to_vec::<2>;
        let (u, v, theta) = (host(x.u), host(x.v), host(x.theta));
        let (k_m, k_h) = (host(turbulence.k_m), host(turbulence.k_h));
        let (gamma_m, gamma_h, source) = (
            host(surface.momentum),
            host(surface.heat_coefficient),
            host(surface.heat_source),
        );
        let spacing = self.grid.centre_spacing();
        let zw = self.grid.interior_interfaces();
        (0..gamma_m.len())
            .map(|b| {
                let at = |f: &[f64], k: usize| f[b * nl + k];
                let speed = |k: usize| at(&u, k).hypot(at(&v, k));
                let tau0 = gamma_m[b] * speed(0);
                let mut heights = vec![0.0];
                let mut stress = vec![tau0];
                let mut heat = vec![source[b] - gamma_h[b] * at(&theta, 0)];
                for i in 0..nl - 1 {
                    let shear = (at(&u, i + 1) - at(&u, i)).hypot(at(&v, i + 1) - at(&v, i));
                    heights.push(zw[i]);
                    stress.push(k_m[b * (nl - 1) + i] * shear / spacing[i]);
                    heat.push(
                        -k_h[b * (nl - 1) + i] * (at(&theta, i + 1) - at(&theta, i)) / spacing[i],
                    );
                }
                let threshold = 0.05 * tau0;
                let mut h = *heights.last().unwrap();
                for i in 1..stress.len() {
                    if stress[i] <= threshold {
                        let w = (stress[i - 1] - threshold) / (stress[i - 1] - stress[i]);
                        h = heights[i - 1] + w * (heights[i] - heights[i - 1]);
                        break;
                    }
                }
                let (jet, jet_speed) = (0..nl)
                    .map(|k| (k, speed(k)))
                    .fold((0, f64::MIN), |a, b| if b.1 > a.1 { b } else { a });
                let minimum = (1..heat.len()).fold(1, |a, i| if heat[i] < heat[a] { i } else { a });
                // The vertex of the parabola through the minimum and its
                // neighbours: the diagnostic is not quantised to the grid.
                let minimum_height = if minimum + 1 < heat.len() {
                    let (z0, z1, z2) =
                        (heights[minimum - 1], heights[minimum], heights[minimum + 1]);
                    let (h0, h1, h2) = (heat[minimum - 1], heat[minimum], heat[minimum + 1]);
                    let num = (z1 - z0).powi(2) * (h1 - h2) - (z1 - z2).powi(2) * (h1 - h0);
                    let den = (z1 - z0) * (h1 - h2) - (z1 - z2) * (h1 - h0);
                    if den != 0.0 { z1 - 0.5 * num / den } else { z1 }
                } else {
                    heights[minimum]
                };
                ColumnDiagnostics {
                    friction_velocity: tau0.sqrt(),
                    boundary_layer_height: h / 0.95,
                    jet_speed,
                    jet_height: self.grid.centres[jet],
                    surface_heat_flux: heat[0],
                    heat_flux_minimum_height: minimum_height,
                    entrainment_ratio: -heat[minimum] / heat[0],
                }
            })
            .collect()
    }

    /// The explicit (forward Euler) limit of the vertical diffusion of the
    /// state: `min_k h_k / (K_{k-1/2}/dz_{k-1/2} + K_{k+1/2}/dz_{k+1/2})`
    /// with the larger of `K_m` and `K_h`, over every column of `state`.
    pub fn explicit_diffusion_limit(&self, state: Tensor<2>) -> f64 {
        let device = state.device();
        let nl = self.grid.levels();
        let x = self.split(state);
        let dz = row(&self.grid.centre_spacing(), &device);
        let (_, n2) = self.shear_and_stratification(&x, &dz);
        let t = self.turbulence(x.tke.narrow(1, 0, nl - 1), n2);
        let k = crate::device::to_vec(t.k_m.max_pair(t.k_h));
        let (h, spacing) = (self.grid.thickness(), self.grid.centre_spacing());
        let mut limit = f64::INFINITY;
        for b in 0..k.len() / (nl - 1) {
            for cell in 0..nl {
                let mut rate = 0.0;
                if cell > 0 {
                    rate += k[b * (nl - 1) + cell - 1] / spacing[cell - 1];
                }
                if cell + 1 < nl {
                    rate += k[b * (nl - 1) + cell] / spacing[cell];
                }
                limit = limit.min(h[cell] / rate);
            }
        }
        limit
    }
}

impl Model for BoundaryLayer {
    fn step(&self, state: Tensor<2>, time: f64) -> Tensor<2> {
        let columns = self.split(state);
        self.join(self.step_columns(columns, time))
    }

    fn dt(&self) -> f64 {
        self.config.dt
    }

    fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    fn name(&self) -> &str {
        "boundary_layer"
    }

    fn initial_state(&self) -> Option<Vec<f64>> {
        Some(self.initial_vector())
    }

    fn diagnostics(&self, state: Tensor<2>, time: f64) -> Vec<(&'static str, Vec<f64>)> {
        let d = self.diagnose(state, time);
        let pick = |f: fn(&ColumnDiagnostics) -> f64| d.iter().map(f).collect::<Vec<f64>>();
        vec![
            ("friction_velocity", pick(|c| c.friction_velocity)),
            ("boundary_layer_height", pick(|c| c.boundary_layer_height)),
            ("jet_speed", pick(|c| c.jet_speed)),
            ("jet_height", pick(|c| c.jet_height)),
            ("surface_heat_flux", pick(|c| c.surface_heat_flux)),
            (
                "heat_flux_minimum_height",
                pick(|c| c.heat_flux_minimum_height),
            ),
            ("entrainment_ratio", pick(|c| c.entrainment_ratio)),
        ]
    }
}

#[cfg(test)]
mod tests;
