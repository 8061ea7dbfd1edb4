//! Differentiable sea-ice dynamics on a 2-D grid: momentum with air and
//! ocean drag, Coriolis and the divergence of the internal stress; a
//! viscous-plastic rheology solved by mEVP ([`mevp`]); transport of
//! thickness and concentration by conservative upwind fluxes. Every
//! operation is a burn op over all members at once, so the step runs under
//! autodiff (gradients with respect to the initial state and, as tensors,
//! to `P*` and the ocean drag coefficient).
//!
//! # Grid: Arakawa B
//! Velocities at the cell corners, tracers and stresses at the centres
//! ([`grid`]). We chose B over C because no-slip walls and land are then
//! exact and local (a node touching land or a wall does not move), the
//! three strain rates and the viscosities share one position (a C grid
//! averages the shear strain and the viscosities between centres and
//! corners every sub-iteration: more passes over memory in an unfused
//! backend), and the stress divergence is the exact negative transpose of
//! the strain rates. The B grid's known cost: its strain rates do not see a
//! checkerboard of the velocity, which only drag and Coriolis damp, and
//! Mehlmann et al. (2021) find it resolves linear kinematic features less
//! sharply than a C grid at the same spacing.
//!
//! # Momentum
//! ```text
//! m du/dt = div(sigma) + tau_a + C_w (u_o - u) - m f k x (u - u_o),
//! tau_a = rho_a C_a |u_a| u_a,  C_w = rho_o C_o |u_o - u|,
//! ```
//! with `m = rho_i H` at the nodes (the mean of the four cells around,
//! floored at 1 mm of ice) and the sea-surface tilt in geostrophic balance
//! with the current. Wind and current are functions of space and time from
//! the experiment file ([`forcing`]); the wind is taken at the end of the
//! step (the momentum solve is implicit).
//!
//! # Transport and ridging
//! After the momentum solve, `H` and `A` are advected with the new
//! velocities (face-normal velocities from the two nodes of each face) by
//! first-order upwind fluxes: conservative (the ice volume is conserved to
//! round-off inside closed walls), and positive below a Courant number of
//! one (checked at build for ice speeds up to 1 m/s). Ridging: where `A`
//! would exceed 1 it is set to 1 and the volume stays in `H`.
//! Thermodynamics is not modelled.
//!
//! # State layout (`[members, n]`)
//! Fields in order: `h` (thickness, m) and `a` (concentration) at the
//! cells, `u`, `v` (m/s) at the nodes, the stresses `sxx`, `syy`, `sxy`
//! (N/m) at the cells (the stress is prognostic in mEVP: each step starts
//! from the last), then one value per estimated parameter (`estimate`),
//! which the step carries unchanged and uses member by member.

pub mod bbm;
pub mod forcing;
pub(crate) mod fused;
pub mod grid;
pub mod mevp;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

pub use bbm::BbmConfig;
pub use forcing::{Ocean, Profile, Wind};
pub use grid::Grid;
pub use mevp::{Kernel, MevpConfig, ViscousPlasticConfig};

use super::{BuildError, ModelSpec, positive};
use crate::core::{
    CoordinateUnits, Coordinates, Field, ForcingField, Geometry, GridPosition, MapField, MapScale,
    Model,
};

/// The fastest ice the transport's Courant check allows for (m/s).
pub const MAX_ICE_SPEED: f64 = 1.0;
/// Seconds per day.
pub const DAY: f64 = 86_400.0;
/// The thickness below which the nodal mass is floored (m).
const MIN_THICKNESS: f64 = 1e-3;

/// The rheology.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rheology {
    /// Viscous-plastic, solved by mEVP.
    #[default]
    Mevp,
    /// Brittle Bingham-Maxwell, with damage ([`bbm`]).
    Bbm,
}

/// A parameter that can be estimated with the state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Parameter {
    /// The ice strength `P*` (N/m^2).
    PStar,
    /// The ocean drag coefficient `C_o`.
    COcean,
    /// BBM's laboratory-scale cohesion `c_lab` (Pa).
    Cohesion,
}

impl Parameter {
    fn name(self) -> &'static str {
        match self {
            Parameter::PStar => "p_star",
            Parameter::COcean => "c_ocean",
            Parameter::Cohesion => "cohesion",
        }
    }
}

/// A side of the domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// y = 0.
    South,
    /// y = L_y.
    North,
    /// x = 0.
    West,
    /// x = L_x.
    East,
}

/// A wall that moves at a prescribed velocity (a press for compression
/// tests): its nodes, corners excepted, take the velocity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MovingWall {
    /// Which wall.
    pub side: Side,
    /// Its velocity `[u, v]` (m/s).
    pub velocity: [f64; 2],
}

/// A rectangle of land (m).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rectangle {
    /// `[west, east]`.
    pub x: [f64; 2],
    /// `[south, north]`.
    pub y: [f64; 2],
}

/// The `[model]` table of `name = "sea_ice"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeaIceConfig {
    /// Cells along x.
    #[serde(default = "cells")]
    pub nx: usize,
    /// Cells along y (default: `nx`).
    #[serde(default)]
    pub ny: Option<usize>,
    /// Cell width (m).
    #[serde(default = "spacing")]
    pub dx: f64,
    /// Cell height (m; default: `dx`).
    #[serde(default)]
    pub dy: Option<f64>,
    /// Time step (s).
    #[serde(default = "dt")]
    pub dt: f64,
    /// Land: cells whose centre lies in one of these rectangles (m). The
    /// outer boundary is a closed, no-slip wall.
    #[serde(default)]
    pub land: Vec<Rectangle>,
    /// A wall moving at a prescribed velocity.
    #[serde(default)]
    pub moving_wall: Option<MovingWall>,
    /// The rheology.
    #[serde(default)]
    pub rheology: Rheology,
    /// mEVP settings.
    #[serde(default)]
    pub mevp: MevpConfig,
    /// Viscous-plastic parameters.
    #[serde(default)]
    pub vp: ViscousPlasticConfig,
    /// BBM parameters.
    #[serde(default)]
    pub bbm: BbmConfig,
    /// The wind.
    #[serde(default = "calm")]
    pub wind: Wind,
    /// The ocean current.
    #[serde(default)]
    pub ocean: Ocean,
    /// Initial thickness (m).
    #[serde(default = "one_metre")]
    pub thickness: Profile,
    /// Initial concentration.
    #[serde(default = "full_cover")]
    pub concentration: Profile,
    /// Initial damage (BBM), in [0, 1].
    #[serde(default = "intact")]
    pub damage: Profile,
    /// Ice density (kg/m^3).
    #[serde(default = "rho_ice")]
    pub rho_ice: f64,
    /// Air density (kg/m^3).
    #[serde(default = "rho_air")]
    pub rho_air: f64,
    /// Sea-water density (kg/m^3).
    #[serde(default = "rho_ocean")]
    pub rho_ocean: f64,
    /// Air drag coefficient.
    #[serde(default = "c_air")]
    pub c_air: f64,
    /// Ocean drag coefficient.
    #[serde(default = "c_ocean")]
    pub c_ocean: f64,
    /// Coriolis parameter (1/s).
    #[serde(default = "coriolis")]
    pub coriolis: f64,
    /// Parameters appended to the state, to be estimated with it by DA.
    #[serde(default)]
    pub estimate: Vec<Parameter>,
}

fn cells() -> usize {
    64
}
fn spacing() -> f64 {
    8_000.0
}
fn dt() -> f64 {
    120.0
}
fn calm() -> Wind {
    Wind::Uniform { u: 0.0, v: 0.0 }
}
fn one_metre() -> Profile {
    Profile::Uniform { value: 1.0 }
}
fn full_cover() -> Profile {
    Profile::Uniform { value: 1.0 }
}
fn intact() -> Profile {
    Profile::Uniform { value: 0.0 }
}
fn rho_ice() -> f64 {
    900.0
}
fn rho_air() -> f64 {
    1.3
}
fn rho_ocean() -> f64 {
    1026.0
}
fn c_air() -> f64 {
    1.2e-3
}
fn c_ocean() -> f64 {
    5.5e-3
}
fn coriolis() -> f64 {
    1.46e-4
}

impl Default for SeaIceConfig {
    fn default() -> Self {
        toml::from_str("").expect("every key has a default")
    }
}

impl ModelSpec for SeaIceConfig {
    /// About a dozen fields on the cells and nodes (a lower bound).
    fn state_size(&self) -> Option<(u128, &'static str)> {
        let (nx, ny) = (self.nx as u128, self.ny.unwrap_or(self.nx) as u128);
        Some((8 * (nx + 1) * (ny + 1), "nx"))
    }

    fn init(&self, _device: &Device) -> Result<Box<dyn Model>, BuildError> {
        Ok(Box::new(self.build()?))
    }
}

impl SeaIceConfig {
    /// The model, checked.
    ///
    /// # Errors
    /// A value the model cannot use, named by its key.
    pub fn build(&self) -> Result<SeaIce, BuildError> {
        let ny = self.ny.unwrap_or(self.nx);
        let dy = self.dy.unwrap_or(self.dx);
        for (key, n) in [("nx", self.nx), ("ny", ny)] {
            if n < 3 {
                return Err(BuildError::invalid(
                    key,
                    format!("the grid needs at least 3 cells per axis, got {n}"),
                ));
            }
        }
        for (key, v) in [
            ("dx", self.dx),
            ("dy", dy),
            ("dt", self.dt),
            ("rho_ice", self.rho_ice),
            ("rho_air", self.rho_air),
            ("rho_ocean", self.rho_ocean),
        ] {
            positive(key, v)?;
        }
        for (key, v) in [("c_air", self.c_air), ("c_ocean", self.c_ocean)] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(BuildError::invalid(
                    key,
                    format!("must be a non-negative number, got {v}"),
                ));
            }
        }
        super::finite("coriolis", self.coriolis)?;
        self.mevp.check()?;
        self.vp.check()?;
        if self.rheology == Rheology::Bbm {
            self.bbm.check(self.dt, self.dx, dy, self.rho_ice)?;
        }
        if self.rheology != Rheology::Bbm && self.estimate.contains(&Parameter::Cohesion) {
            return Err(BuildError::invalid(
                "estimate",
                "`cohesion` is a parameter of `rheology = \"bbm\"`",
            ));
        }
        self.wind.check()?;
        self.ocean.check()?;
        let courant = self.dt * MAX_ICE_SPEED * (1.0 / self.dx + 1.0 / dy);
        if courant > 1.0 {
            return Err(BuildError::invalid(
                "dt",
                format!(
                    "{} s is too long for the upwind transport: ice at {MAX_ICE_SPEED} m/s would cross {courant:.2} cells a step (at most 1; dt <= {:.0} s)",
                    self.dt,
                    self.dt / courant
                ),
            ));
        }
        for (k, r) in self.land.iter().enumerate() {
            if !(r.x[0] < r.x[1] && r.y[0] < r.y[1]) {
                return Err(BuildError::invalid(
                    &format!("land[{k}]"),
                    format!(
                        "a rectangle needs x[0] < x[1] and y[0] < y[1], got x = {:?}, y = {:?}",
                        r.x, r.y
                    ),
                ));
            }
        }
        let mut seen = Vec::new();
        for p in &self.estimate {
            if seen.contains(p) {
                return Err(BuildError::invalid(
                    "estimate",
                    format!("`{}` is listed twice", p.name()),
                ));
            }
            seen.push(*p);
        }
        let land = self.land.clone();
        let grid = Grid::new(self.nx, ny, self.dx, dy, |x, y| {
            land.iter()
                .any(|r| (r.x[0]..=r.x[1]).contains(&x) && (r.y[0]..=r.y[1]).contains(&y))
        });
        if !grid.node_mask.iter().any(|&m| m) {
            return Err(BuildError::invalid(
                "land",
                "no node of the grid can move: every node touches land or the wall",
            ));
        }
        // Initial fields, checked against their bounds.
        let (width, height) = (grid.width(), grid.height());
        let mut h0 = Vec::with_capacity(grid.cells());
        let mut a0 = Vec::with_capacity(grid.cells());
        let mut d0 = Vec::with_capacity(grid.cells());
        for (j, y) in grid.cell_y().into_iter().enumerate() {
            for (i, x) in grid.cell_x().into_iter().enumerate() {
                let ocean = grid.cell_mask[j * grid.nx + i];
                let h = self.thickness.at(x, y, width);
                let a = self.concentration.at(x, y, width);
                let d = self.damage.at(x, y, width);
                if !(0.0..=1.0).contains(&d) {
                    return Err(BuildError::invalid(
                        "damage",
                        format!("is {d} at x = {x} m, y = {y} m; it must lie in [0, 1]"),
                    ));
                }
                d0.push(if ocean { d } else { 0.0 });
                if !(h >= 0.0 && h.is_finite()) {
                    return Err(BuildError::invalid(
                        "thickness",
                        format!("is {h} at x = {x} m, y = {y} m; it must be non-negative"),
                    ));
                }
                if !(0.0..=1.0).contains(&a) {
                    return Err(BuildError::invalid(
                        "concentration",
                        format!("is {a} at x = {x} m, y = {y} m; it must lie in [0, 1]"),
                    ));
                }
                h0.push(if ocean { h } else { 0.0 });
                a0.push(if ocean { a } else { 0.0 });
            }
        }
        let mut ocean = [
            Vec::with_capacity(grid.nodes()),
            Vec::with_capacity(grid.nodes()),
        ];
        for y in grid.node_y() {
            for x in grid.node_x() {
                let o = self.ocean.at(x, y, width, height);
                ocean[0].push(o[0]);
                ocean[1].push(o[1]);
            }
        }
        let wall = match &self.moving_wall {
            None => None,
            Some(w) => {
                for v in w.velocity {
                    super::finite("moving_wall.velocity", v)?;
                }
                let (nx, ny) = (grid.nx, grid.ny);
                let mut wu = vec![0.0; grid.nodes()];
                let mut wv = vec![0.0; grid.nodes()];
                let nodes: Vec<usize> = match w.side {
                    Side::South => (1..nx).collect(),
                    Side::North => (1..nx).map(|i| ny * (nx + 1) + i).collect(),
                    Side::West => (1..ny).map(|j| j * (nx + 1)).collect(),
                    Side::East => (1..ny).map(|j| j * (nx + 1) + nx).collect(),
                };
                for k in nodes {
                    wu[k] = w.velocity[0];
                    wv[k] = w.velocity[1];
                }
                Some([wu, wv])
            }
        };
        let geometry = geometry(&grid, self.rheology, &self.estimate);
        let [uo, vo] = ocean;
        let moving_wall = wall.is_some();
        let wall = wall.unwrap_or_else(|| [vec![0.0; grid.nodes()], vec![0.0; grid.nodes()]]);
        let nodes = Arc::new(fused::NodeConstants {
            uo,
            vo,
            mask: grid.node_weights(),
            wall,
            moving_wall,
        });
        Ok(SeaIce {
            config: self.clone(),
            grid,
            geometry,
            initial: [h0, a0, d0],
            nodes,
        })
    }
}

/// The geometry: fields with their units, positions, coordinates (m) and
/// masks.
fn geometry(grid: &Grid, rheology: Rheology, estimate: &[Parameter]) -> Geometry {
    let cell = |name: &str, long: &str, units: &str| {
        let mut f = Field::grid(name, long, units, grid.cell_x(), grid.cell_y());
        f.mask = Some(grid.cell_mask.clone());
        f
    };
    let node = |name: &str, long: &str| {
        let mut f = Field::grid(name, long, "m s-1", grid.node_x(), grid.node_y());
        f.position = GridPosition::Corner;
        f.mask = Some(grid.node_mask.clone());
        f
    };
    let mut fields = vec![
        cell("h", "sea ice thickness", "m"),
        cell("a", "sea ice area fraction", "1"),
        node("u", "sea ice x velocity"),
        node("v", "sea ice y velocity"),
        cell("sxx", "vertically integrated internal stress, xx", "N m-1"),
        cell("syy", "vertically integrated internal stress, yy", "N m-1"),
        cell("sxy", "vertically integrated internal stress, xy", "N m-1"),
    ];
    if rheology == Rheology::Bbm {
        fields.push(cell("damage", "sea ice damage", "1"));
    }
    let centre = [grid.width() / 2.0, grid.height() / 2.0];
    for p in estimate {
        let (long, units) = match p {
            Parameter::PStar => ("ice strength parameter P*", "N m-2"),
            Parameter::COcean => ("ice-ocean drag coefficient", "1"),
            Parameter::Cohesion => ("laboratory-scale cohesion", "Pa"),
        };
        fields.push(Field {
            name: p.name().to_string(),
            long_name: long.to_string(),
            units: units.to_string(),
            shape: vec![1],
            position: GridPosition::Centre,
            coordinates: Coordinates::Points(vec![centre]),
            mask: None,
        });
    }
    Geometry::new(fields, [None, None], CoordinateUnits::Metres)
}

/// The sea-ice model.
#[derive(Debug)]
pub struct SeaIce {
    config: SeaIceConfig,
    grid: Grid,
    geometry: Geometry,
    /// Initial thickness, concentration and damage at the cells.
    initial: [Vec<f64>; 3],
    /// Ocean current, active nodes and a moving wall's velocities.
    nodes: Arc<fused::NodeConstants>,
}

/// The prognostic fields of a batch, `[members, rows, columns]` each.
#[derive(Clone)]
pub struct IceFields {
    /// Thickness (cells).
    pub h: Tensor<3>,
    /// Concentration (cells).
    pub a: Tensor<3>,
    /// x velocity (nodes).
    pub u: Tensor<3>,
    /// y velocity (nodes).
    pub v: Tensor<3>,
    /// Stress xx (cells).
    pub sxx: Tensor<3>,
    /// Stress yy (cells).
    pub syy: Tensor<3>,
    /// Stress xy (cells).
    pub sxy: Tensor<3>,
    /// Damage (cells; BBM only).
    pub damage: Option<Tensor<3>>,
}

/// Parameters of a step as tensors `[members or 1, 1, 1]`, so that they
/// can be differentiated or differ between members.
#[derive(Clone)]
pub struct IceParameters {
    /// `P*` (N/m^2).
    pub p_star: Tensor<3>,
    /// `C_o`.
    pub c_ocean: Tensor<3>,
    /// BBM's laboratory cohesion (Pa).
    pub cohesion: Tensor<3>,
}

impl SeaIce {
    /// The grid.
    pub fn grid(&self) -> &Grid {
        &self.grid
    }

    /// The configuration.
    pub fn config(&self) -> &SeaIceConfig {
        &self.config
    }

    /// The configured parameters as constants on `device`.
    pub fn parameters(&self, device: &Device) -> IceParameters {
        let scalar = |v: f64| Tensor::<3>::from_data(TensorData::new(vec![v], [1, 1, 1]), device);
        IceParameters {
            p_star: scalar(self.config.vp.p_star),
            c_ocean: scalar(self.config.c_ocean),
            cohesion: scalar(self.config.bbm.cohesion),
        }
    }

    /// Splits a `[members, n]` batch into its fields and parameters.
    pub fn unpack(&self, state: Tensor<2>) -> (IceFields, IceParameters) {
        let members = state.dims()[0];
        let (nx, ny) = (self.grid.nx, self.grid.ny);
        let (cells, nodes) = (self.grid.cells(), self.grid.nodes());
        let mut offset = 0;
        let mut take = |len: usize, rows: usize, cols: usize| {
            let t = state
                .clone()
                .narrow(1, offset, len)
                .reshape([members, rows, cols]);
            offset += len;
            t
        };
        let h = take(cells, ny, nx);
        let a = take(cells, ny, nx);
        let u = take(nodes, ny + 1, nx + 1);
        let v = take(nodes, ny + 1, nx + 1);
        let sxx = take(cells, ny, nx);
        let syy = take(cells, ny, nx);
        let sxy = take(cells, ny, nx);
        let damage = (self.config.rheology == Rheology::Bbm).then(|| take(cells, ny, nx));
        let mut params = self.parameters(&state.device());
        for p in &self.config.estimate {
            let t = take(1, 1, 1);
            match p {
                Parameter::PStar => params.p_star = t,
                Parameter::COcean => params.c_ocean = t,
                Parameter::Cohesion => params.cohesion = t,
            }
        }
        (
            IceFields {
                h,
                a,
                u,
                v,
                sxx,
                syy,
                sxy,
                damage,
            },
            params,
        )
    }

    /// Joins fields and parameters into a `[members, n]` batch.
    pub fn pack(&self, f: IceFields, p: &IceParameters) -> Tensor<2> {
        let members = f.h.dims()[0];
        let flat = |t: Tensor<3>| {
            let n: usize = t.dims()[1..].iter().product();
            t.reshape([members, n])
        };
        let mut parts = vec![
            flat(f.h),
            flat(f.a),
            flat(f.u),
            flat(f.v),
            flat(f.sxx),
            flat(f.syy),
            flat(f.sxy),
        ];
        if let Some(d) = f.damage {
            parts.push(flat(d));
        }
        for q in &self.config.estimate {
            let t = match q {
                Parameter::PStar => p.p_star.clone(),
                Parameter::COcean => p.c_ocean.clone(),
                Parameter::Cohesion => p.cohesion.clone(),
            };
            parts.push(t.reshape([members, 1]));
        }
        Tensor::cat(parts, 1)
    }

    /// Wind stress at the nodes at time `t`, `[1, ny + 1, nx + 1]` each.
    fn wind_stress(&self, t: f64, device: &Device) -> [Tensor<3>; 2] {
        let (width, height) = (self.grid.width(), self.grid.height());
        let k = self.config.rho_air * self.config.c_air;
        let mut tx = Vec::with_capacity(self.grid.nodes());
        let mut ty = Vec::with_capacity(self.grid.nodes());
        for y in self.grid.node_y() {
            for x in self.grid.node_x() {
                let [u, v] = self.config.wind.at(x, y, t, width, height);
                let speed = (u * u + v * v).sqrt();
                tx.push(k * speed * u);
                ty.push(k * speed * v);
            }
        }
        let shape = [1, self.grid.ny + 1, self.grid.nx + 1];
        [
            Tensor::from_data(TensorData::new(tx, shape), device),
            Tensor::from_data(TensorData::new(ty, shape), device),
        ]
    }

    /// One step of the fields from `t` with parameters `p`; the RMS
    /// velocity change of each mEVP sub-iteration goes to `residuals` when
    /// given.
    pub fn advance(
        &self,
        f: IceFields,
        p: &IceParameters,
        t: f64,
        residuals: Option<&mut Vec<f64>>,
    ) -> IceFields {
        let tau = self.wind_stress(t + self.config.dt, &f.h.device());
        self.advance_under(f, p, tau, residuals)
    }

    /// [`advance`](Self::advance) under the air stress `tau` at the nodes
    /// (`[members or 1, ny + 1, nx + 1]` each, N/m^2) instead of the
    /// configured wind's: what a coupled atmosphere gives.
    pub fn advance_under(
        &self,
        f: IceFields,
        p: &IceParameters,
        tau: [Tensor<3>; 2],
        residuals: Option<&mut Vec<f64>>,
    ) -> IceFields {
        let c = &self.config;
        let grid = &self.grid;
        let device = f.h.device();
        let node_shape = [1, grid.ny + 1, grid.nx + 1];
        let node_field = |values: &[f64]| {
            Tensor::from_data(TensorData::new(values.to_vec(), node_shape), &device)
        };
        let ocean = [node_field(&self.nodes.uo), node_field(&self.nodes.vo)];
        let strength = f.h.clone() * p.p_star.clone() * (f.a.clone() * c.vp.c - c.vp.c).exp();
        let mass = grid.cell_to_node(f.h.clone()).clamp_min(MIN_THICKNESS) * c.rho_ice;
        let inputs = mevp::MomentumInputs {
            strength,
            dt_over_mass: mass.recip() * c.dt,
            tau,
            ocean,
            drag: p.c_ocean.clone() * c.rho_ocean,
            coriolis_dt: c.coriolis * c.dt,
            node_mask: node_field(&self.nodes.mask),
            wall: self.nodes.moving_wall.then(|| {
                let [wu, wv] = &self.nodes.wall;
                [node_field(wu), node_field(wv)]
            }),
            nodes: self.nodes.clone(),
        };
        let start = mevp::Dynamics {
            u: f.u,
            v: f.v,
            sxx: f.sxx,
            syy: f.syy,
            sxy: f.sxy,
        };
        let (d, damage) = match c.rheology {
            Rheology::Mevp => (
                mevp::solve(grid, &c.mevp, &c.vp, &inputs, start, residuals),
                None,
            ),
            Rheology::Bbm => {
                let damage = f.damage.clone().expect("a BBM state carries its damage");
                let (d, damage) = bbm::solve(
                    grid,
                    &c.bbm,
                    c.dt,
                    c.rho_ice,
                    &inputs,
                    &f.h,
                    &f.a,
                    &p.cohesion,
                    start,
                    damage,
                );
                // Healing over the step.
                (d, Some(damage * (-c.dt / c.bbm.healing_time).exp()))
            }
        };
        let (uf, vf) = grid.face_velocities(&d.u, &d.v);
        let h = f.h.clone() + grid.upwind_increment(&f.h, &uf, &vf, c.dt);
        let a = f.a.clone() + grid.upwind_increment(&f.a, &uf, &vf, c.dt);
        // Damage moves with the ice: its thickness-weighted content is
        // advected, so the new damage is a weighted mean of the old (within
        // its bounds).
        let damage = damage.map(|dmg| {
            let content = dmg * f.h.clone();
            let content = content.clone() + grid.upwind_increment(&content, &uf, &vf, c.dt);
            let ice = h.clone().greater_elem(MIN_THICKNESS * 1e-3).float();
            (content * (h.clone().clamp_min(MIN_THICKNESS * 1e-3)).recip() * ice).clamp(0.0, 1.0)
        });
        // Ridging: concentration above one is closed, its volume stays in h.
        let a = a.clamp(0.0, 1.0);
        IceFields {
            h,
            a,
            u: d.u,
            v: d.v,
            sxx: d.sxx,
            syy: d.syy,
            sxy: d.sxy,
            damage,
        }
    }

    /// One step of a `[members, n]` batch, with the RMS velocity change of
    /// each mEVP sub-iteration (m/s).
    pub fn step_with_residuals(&self, state: Tensor<2>, time: f64) -> (Tensor<2>, Vec<f64>) {
        let (f, p) = self.unpack(state);
        let mut residuals = Vec::new();
        let f = self.advance(f, &p, time, Some(&mut residuals));
        (self.pack(f, &p), residuals)
    }

    /// Divergence and maximum shear rate `sqrt(D_T^2 + D_S^2)` (1/s) at
    /// the cells.
    pub fn deformation(&self, f: &IceFields) -> (Tensor<3>, Tensor<3>) {
        let [d, dt, ds] = mevp::strain_rates(&self.grid, &f.u, &f.v);
        (d, (dt.clone() * dt + ds.clone() * ds).sqrt())
    }
}

impl Model for SeaIce {
    fn step(&self, state: Tensor<2>, time: f64) -> Tensor<2> {
        let (f, p) = self.unpack(state);
        let f = self.advance(f, &p, time, None);
        self.pack(f, &p)
    }

    fn dt(&self) -> f64 {
        self.config.dt
    }

    fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    fn name(&self) -> &str {
        "sea_ice"
    }

    /// The 10 m wind at the cell centres (`wind_u`, `wind_v`, m/s).
    fn forcing(&self, time: f64) -> Vec<ForcingField> {
        let (width, height) = (self.grid.width(), self.grid.height());
        let (mut u, mut v) = (Vec::new(), Vec::new());
        for y in self.grid.cell_y() {
            for x in self.grid.cell_x() {
                let [a, b] = self.config.wind.at(x, y, time, width, height);
                u.push(a);
                v.push(b);
            }
        }
        let field = |name: &str, long: &str, values| ForcingField {
            name: name.into(),
            long_name: long.into(),
            units: "m s-1".into(),
            like: 0,
            values,
        };
        vec![
            field("wind_u", "10 m wind, x component", u),
            field("wind_v", "10 m wind, y component", v),
        ]
    }

    fn autonomous(&self) -> bool {
        false
    }

    fn initial_state(&self) -> Option<Vec<f64>> {
        let mut x = Vec::with_capacity(self.geometry.size());
        x.extend(&self.initial[0]);
        x.extend(&self.initial[1]);
        x.resize(x.len() + 2 * self.grid.nodes() + 3 * self.grid.cells(), 0.0);
        if self.config.rheology == Rheology::Bbm {
            x.extend(&self.initial[2]);
        }
        for p in &self.config.estimate {
            x.push(match p {
                Parameter::PStar => self.config.vp.p_star,
                Parameter::COcean => self.config.c_ocean,
                Parameter::Cohesion => self.config.bbm.cohesion,
            });
        }
        Some(x)
    }

    /// Thickness, concentration, speed, and the shear and divergence rates
    /// (1/day) at the cells.
    fn maps(&self, state: Tensor<2>) -> Vec<MapField> {
        let g = &self.grid;
        let (cells, nodes) = (g.cells(), g.nodes());
        let (f, _) = self.unpack(state.clone());
        let (divergence, shear) = self.deformation(&f);
        let divergence = crate::device::to_vec(divergence * DAY);
        let shear = crate::device::to_vec(shear * DAY);
        let state = crate::device::to_vec(state);
        let u = &state[2 * cells..2 * cells + nodes];
        let v = &state[2 * cells + nodes..2 * cells + 2 * nodes];
        let speed: Vec<f64> = u.iter().zip(v).map(|(a, b)| a.hypot(*b)).collect();
        let cell = |name, long, units, values, scale| g.cell_map(name, long, units, values, scale);
        let mut maps = vec![
            cell(
                "h",
                "sea ice thickness",
                "m",
                state[..cells].to_vec(),
                MapScale::Linear,
            ),
            cell(
                "a",
                "sea ice concentration",
                "1",
                state[cells..2 * cells].to_vec(),
                MapScale::Linear,
            ),
            cell("shear", "shear rate", "1/day", shear, MapScale::Log),
            cell(
                "divergence",
                "divergence rate",
                "1/day",
                divergence,
                MapScale::Diverging,
            ),
            MapField {
                name: "speed".to_string(),
                long_name: "sea ice speed".to_string(),
                units: "m/s".to_string(),
                x: g.node_x(),
                y: g.node_y(),
                values: speed,
                mask: Some(g.node_mask.clone()),
                scale: MapScale::Linear,
            },
        ];
        if self.config.rheology == Rheology::Bbm {
            let o = 2 * cells + 2 * nodes + 3 * cells;
            maps.push(cell(
                "damage",
                "sea ice damage",
                "1",
                state[o..o + cells].to_vec(),
                MapScale::Linear,
            ));
        }
        maps
    }

    /// Per member: `volume` (m^3), `area` (m^2), `min_thickness` (m),
    /// `max_concentration`, `max_speed` (m/s), `shear_fraction` (of ocean
    /// cells with shear above 0.1/day), `strong_shear_fraction` (above
    /// 1/day), `mean_shear` (1/day), and
    /// `mevp_residual` (m/s, mEVP: the RMS velocity change of the last
    /// sub-iteration of one step from this state), `mean_damage` and
    /// `damaged_fraction` (BBM: of ocean cells with damage above 0.5),
    /// `fault_angle` (BBM: degrees between the faults and the y axis,
    /// [`fault_angle`]).
    fn diagnostics(&self, state: Tensor<2>, time: f64) -> Vec<(&'static str, Vec<f64>)> {
        let members = state.dims()[0];
        let (f, _) = self.unpack(state.clone());
        let cell_area = self.grid.dx * self.grid.dy;
        let h = crate::device::to_vec(f.h.clone());
        let a = crate::device::to_vec(f.a.clone());
        let (_, shear) = self.deformation(&f);
        let shear = crate::device::to_vec(shear);
        let u = crate::device::to_vec(f.u.clone());
        let v = crate::device::to_vec(f.v.clone());
        let (cells, nodes) = (self.grid.cells(), self.grid.nodes());
        let ocean = self.grid.cell_mask.iter().filter(|&&m| m).count().max(1) as f64;
        let mut out: Vec<(&'static str, Vec<f64>)> = vec![
            ("volume", Vec::new()),
            ("area", Vec::new()),
            ("min_thickness", Vec::new()),
            ("max_concentration", Vec::new()),
            ("max_speed", Vec::new()),
            ("shear_fraction", Vec::new()),
            ("strong_shear_fraction", Vec::new()),
            ("mean_shear", Vec::new()),
        ];
        for m in 0..members {
            let hs = &h[m * cells..(m + 1) * cells];
            let as_ = &a[m * cells..(m + 1) * cells];
            let ss = &shear[m * cells..(m + 1) * cells];
            let wet = |k: usize| self.grid.cell_mask[k];
            out[0].1.push(hs.iter().sum::<f64>() * cell_area);
            out[1].1.push(as_.iter().sum::<f64>() * cell_area);
            out[2].1.push(
                (0..cells)
                    .filter(|&k| wet(k))
                    .map(|k| hs[k])
                    .fold(f64::INFINITY, f64::min),
            );
            out[3].1.push(as_.iter().copied().fold(0.0, f64::max));
            let speed = (0..nodes)
                .map(|k| u[m * nodes + k].hypot(v[m * nodes + k]))
                .fold(0.0, f64::max);
            out[4].1.push(speed);
            let lkf = (0..cells).filter(|&k| wet(k) && ss[k] * DAY > 0.1).count();
            out[5].1.push(lkf as f64 / ocean);
            let strong = (0..cells).filter(|&k| wet(k) && ss[k] * DAY > 1.0).count();
            out[6].1.push(strong as f64 / ocean);
            let mean = (0..cells).filter(|&k| wet(k)).map(|k| ss[k]).sum::<f64>() / ocean;
            out[7].1.push(mean * DAY);
        }
        if let Some(d) = &f.damage {
            let d = crate::device::to_vec(d.clone());
            let (mean, broken): (Vec<f64>, Vec<f64>) = (0..members)
                .map(|m| {
                    let ds = &d[m * cells..(m + 1) * cells];
                    let wet = (0..cells).filter(|&k| self.grid.cell_mask[k]);
                    let (sum, over) = wet.fold((0.0, 0usize), |(s, o), k| {
                        (s + ds[k], o + usize::from(ds[k] > 0.5))
                    });
                    (sum / ocean, over as f64 / ocean)
                })
                .unzip();
            out.push(("mean_damage", mean));
            out.push(("damaged_fraction", broken));
            let h = crate::device::to_vec(f.h.clone());
            let angles = (0..members)
                .map(|m| {
                    fault_angle(
                        &d[m * cells..(m + 1) * cells],
                        &h[m * cells..(m + 1) * cells],
                        self.grid.nx,
                        self.grid.ny,
                    )
                })
                .collect();
            out.push(("fault_angle", angles));
        }
        if self.config.rheology == Rheology::Mevp {
            let (_, residuals) = self.step_with_residuals(state, time);
            let last = residuals.last().copied().unwrap_or(0.0);
            out.push(("mevp_residual", vec![last; members]));
        }
        out
    }
}

/// The angle (degrees) between the faults of a damage field `[ny, nx]` and
/// the y axis: from the structure tensor of the damage gradient with
/// conjugate faults folded together (`|g_x g_y|`), since the normal of a
/// fault at `theta` to the y axis is at `theta` to the x axis. Cells count
/// where they and their four neighbours hold ice (`h > 0`). Isotropic noise
/// gives 45 degrees; faults along y give 0.
pub fn fault_angle(d: &[f64], h: &[f64], nx: usize, ny: usize) -> f64 {
    let (mut jxx, mut jyy, mut jxy) = (0.0, 0.0, 0.0);
    for j in 1..ny.saturating_sub(1) {
        for i in 1..nx.saturating_sub(1) {
            let k = j * nx + i;
            if [k, k - 1, k + 1, k - nx, k + nx]
                .iter()
                .any(|&c| h[c] <= 0.0)
            {
                continue;
            }
            let gx = 0.5 * (d[k + 1] - d[k - 1]);
            let gy = 0.5 * (d[k + nx] - d[k - nx]);
            jxx += gx * gx;
            jyy += gy * gy;
            jxy += (gx * gy).abs();
        }
    }
    0.5 * (2.0 * jxy).atan2(jxx - jyy).to_degrees()
}
