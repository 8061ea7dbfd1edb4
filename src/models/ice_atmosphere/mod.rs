//! The sea ice coupled to an atmospheric boundary layer: one column of
//! [`BoundaryLayer`] above every ice cell, and a zero-layer ice
//! thermodynamics, as one [`Model`] (so every DA method runs on it and
//! autodiff differentiates through the coupling).
//!
//! # Coupling (every ice step)
//! 1. The columns see the ice below them: its concentration (the ice
//!    fraction), its velocity at the cell centre (the mean of the four
//!    corners; the stress over ice acts on the wind relative to it), the
//!    ice surface temperature `T_s` (a state field), and open water at
//!    freezing. Above them the configured `wind` of the ice is the
//!    large-scale (geostrophic) wind of each column, evaluated at its
//!    centre and the step's time.
//! 2. The columns take `atmosphere_steps` steps of `dt / atmosphere_steps`.
//! 3. The ice moves under the air stress `rho_a gamma_m (u_1 - u_ice)`
//!    over ice, averaged over those steps and from the cells to the nodes.
//! 4. Zero-layer thermodynamics (Semtner 1976, with Hibler's 1979 open
//!    water): the surface temperature balances conduction through the ice,
//!    `k (T_f - T_s) / h_i`, against the loss to the air, `F = rho_a c_p
//!    gamma_h (T_s - theta_1) + Q`, with `Q` a net radiative loss, and is
//!    capped at melting; the ice grows (or melts) by `(F - F_o) / (rho_i
//!    L)` per unit ice area, with `F_o` the ocean's heat flux (at `T_s`
//!    below melting `F` equals the conduction; at melting the surplus melts
//!    the top, and the formula covers both). Open water losing heat at
//!    freezing makes new ice, of volume `(1 - A) F_w dt / (rho_i L)`,
//!    which closes leads as `(1 - A) dV / h_0`; melting thins the
//!    concentration as `A dh / (2 h)`. Open water gaining heat warms the
//!    mixed layer, which is not modelled (the gain is lost).
//!
//! There is no land surface: a column above a land cell sees open water at
//! freezing. The columns do not exchange air with each other (no
//! horizontal advection); the large-scale wind carries the horizontal
//! structure.
//!
//! # State
//! The sea ice's fields and parameters, then `ts` (K, at the cells), then
//! the air `air_u, air_v, air_theta, air_q, air_tke`, each `[cells,
//! levels]` (the column of cell `k` is row `k`), located at the cell
//! centres so that the LETKF localises the air with the ice; then the
//! estimated boundary-layer parameters (`estimate = ["ice_roughness"]`),
//! one value per member at the domain's centre.

use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::boundary_layer::{BoundaryLayer, BoundaryLayerConfig, Columns, PerColumn, Surface};
use super::sea_ice::{IceFields, SeaIce, SeaIceConfig};
use super::{BuildError, ModelSpec, positive};
use crate::core::{
    CoordinateUnits, Coordinates, Field, Geometry, GridPosition, MapField, MapScale, Model,
};

/// The `[model.thermodynamics]` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThermodynamicsConfig {
    /// Whether the ice grows and melts.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Thermal conductivity of ice (W m^-1 K^-1).
    #[serde(default = "conductivity")]
    pub conductivity: f64,
    /// Latent heat of fusion (J/kg).
    #[serde(default = "latent_heat")]
    pub latent_heat: f64,
    /// Freezing point of sea water, the base of the ice and open water (K).
    #[serde(default = "freezing")]
    pub freezing: f64,
    /// Heat flux from the ocean into the ice base (W/m^2).
    #[serde(default = "ocean_heat_flux")]
    pub ocean_heat_flux: f64,
    /// Net radiative loss at the surface, upward (W/m^2).
    #[serde(default = "radiative_loss")]
    pub radiative_loss: f64,
    /// Heat capacity of air (J kg^-1 K^-1).
    #[serde(default = "heat_capacity")]
    pub air_heat_capacity: f64,
    /// Thickness of new ice in leads, `h_0` (m).
    #[serde(default = "lead_thickness")]
    pub lead_thickness: f64,
    /// Initial ice surface temperature (K).
    #[serde(default = "surface_temperature")]
    pub initial_surface_temperature: f64,
}

fn yes() -> bool {
    true
}
fn conductivity() -> f64 {
    2.03
}
fn latent_heat() -> f64 {
    3.34e5
}
fn freezing() -> f64 {
    271.35
}
fn ocean_heat_flux() -> f64 {
    2.0
}
fn radiative_loss() -> f64 {
    30.0
}
fn heat_capacity() -> f64 {
    1005.0
}
fn lead_thickness() -> f64 {
    0.5
}
fn surface_temperature() -> f64 {
    258.0
}

impl Default for ThermodynamicsConfig {
    fn default() -> Self {
        toml::from_str("").expect("every key has a default")
    }
}

/// Melting point of the ice surface (K).
const MELTING: f64 = 273.15;
/// Thinnest ice the conduction sees (m).
const MIN_ICE: f64 = 0.05;

/// The `[model]` table of `name = "sea_ice_abl"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IceAtmosphereConfig {
    /// The sea ice (`[model.ice]`, as `name = "sea_ice"`); its `wind` is the
    /// large-scale wind above the boundary layer.
    #[serde(default)]
    pub ice: SeaIceConfig,
    /// The boundary layer (`[model.atmosphere]`, as `name =
    /// "boundary_layer"`): one column per ice cell; `columns`, `dt`,
    /// `geostrophic_wind`, `ice_fraction` and `ice_temperature` come from the
    /// coupling.
    #[serde(default)]
    pub atmosphere: BoundaryLayerConfig,
    /// Boundary-layer steps per ice step (the ice and the air exchange
    /// stress and heat once per ice step).
    #[serde(default = "four")]
    pub atmosphere_steps: usize,
    /// The ice's growth and melt.
    #[serde(default)]
    pub thermodynamics: ThermodynamicsConfig,
    /// What drives the ice: `"boundary_layer"` (the columns' stress) or
    /// `"wind"` (the ice's prescribed `wind` through its own bulk formula,
    /// as the uncoupled sea ice; the columns still run above it and the
    /// thermodynamics still exchange heat with them). The second is the
    /// uncoupled forecast model of a twin whose truth is coupled.
    #[serde(default)]
    pub ice_forcing: IceForcing,
    /// Boundary-layer parameters appended to the state (after the air),
    /// one value per member, to be estimated with it by DA (the ice's own
    /// go in `ice.estimate`).
    #[serde(default)]
    pub estimate: Vec<AirParameter>,
}

/// A boundary-layer parameter that can be estimated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AirParameter {
    /// The roughness length of the ice, `atmosphere.ice_roughness` (m):
    /// it sets the ice-atmosphere drag coefficient.
    IceRoughness,
}

/// What drives the ice of the coupled model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IceForcing {
    /// The stress of the boundary layer's lowest level.
    #[default]
    BoundaryLayer,
    /// The prescribed wind (`ice.wind`) through `rho_a C_a |u_a| u_a`.
    Wind,
}

fn four() -> usize {
    4
}

impl IceAtmosphereConfig {
    /// Builds the coupled model.
    ///
    /// # Errors
    /// A value either model refuses (its key prefixed `ice.` or
    /// `atmosphere.`), or a bad coupling or thermodynamic value.
    pub fn build(&self) -> Result<IceAtmosphere, BuildError> {
        let prefix = |p: &'static str| {
            move |e: BuildError| match e {
                BuildError::Invalid { key, reason } => {
                    BuildError::invalid(&format!("{p}.{key}"), reason)
                }
                other => other,
            }
        };
        let ice = self.ice.build().map_err(prefix("ice"))?;
        if self.atmosphere_steps == 0 {
            return Err(BuildError::invalid(
                "atmosphere_steps",
                "must be at least 1",
            ));
        }
        let t = &self.thermodynamics;
        for (key, v) in [
            ("thermodynamics.conductivity", t.conductivity),
            ("thermodynamics.latent_heat", t.latent_heat),
            ("thermodynamics.freezing", t.freezing),
            ("thermodynamics.air_heat_capacity", t.air_heat_capacity),
            ("thermodynamics.lead_thickness", t.lead_thickness),
            (
                "thermodynamics.initial_surface_temperature",
                t.initial_surface_temperature,
            ),
        ] {
            positive(key, v)?;
        }
        for (key, v) in [
            ("thermodynamics.ocean_heat_flux", t.ocean_heat_flux),
            ("thermodynamics.radiative_loss", t.radiative_loss),
        ] {
            super::finite(key, v)?;
        }
        let grid = ice.grid().clone();
        let mut atmosphere = self.atmosphere.clone();
        atmosphere.columns = grid.cells();
        atmosphere.dt = self.ice.dt / self.atmosphere_steps as f64;
        atmosphere.ice_fraction = PerColumn::Same(1.0);
        atmosphere.ice_temperature = PerColumn::Same(t.initial_surface_temperature);
        atmosphere.water_temperature = PerColumn::Same(t.freezing);
        let air = atmosphere.build().map_err(prefix("atmosphere"))?;
        let mut seen = std::collections::BTreeSet::new();
        if let Some(p) = self.estimate.iter().find(|p| !seen.insert(**p)) {
            return Err(BuildError::invalid(
                "estimate",
                format!("{p:?} is listed twice"),
            ));
        }
        let geometry = coupled_geometry(&ice, &air, &self.estimate);
        Ok(IceAtmosphere {
            config: self.clone(),
            ocean_cells: ice.grid().cell_weights(),
            ice,
            air,
            geometry,
        })
    }
}

impl ModelSpec for IceAtmosphereConfig {
    fn init(&self, _device: &Device) -> Result<Box<dyn Model>, BuildError> {
        Ok(Box::new(self.build()?))
    }
}

/// The ice's geometry, `ts`, and the air's fields at the cell centres.
fn coupled_geometry(ice: &SeaIce, air: &BoundaryLayer, estimate: &[AirParameter]) -> Geometry {
    let g = ice.grid();
    let levels = air.grid().levels();
    let mut fields = ice.geometry().fields.clone();
    // Parameters stay last in the ice's state; `ts` and the air follow them.
    let mut ts = Field::grid("ts", "ice surface temperature", "K", g.cell_x(), g.cell_y());
    ts.mask = Some(g.cell_mask.clone());
    fields.push(ts);
    let centres: Vec<[f64; 2]> = g
        .cell_y()
        .iter()
        .flat_map(|&y| g.cell_x().into_iter().map(move |x| [x, y]))
        .collect();
    for field in &air.geometry().fields {
        let points: Vec<[f64; 2]> = centres
            .iter()
            .flat_map(|&c| std::iter::repeat_n(c, levels))
            .collect();
        fields.push(Field {
            name: format!("air_{}", field.name),
            long_name: format!("{} (boundary layer)", field.long_name),
            units: field.units.clone(),
            shape: vec![points.len()],
            position: GridPosition::Centre,
            coordinates: Coordinates::Points(points),
            mask: None,
        });
    }
    let centre = [0.5 * g.width(), 0.5 * g.height()];
    for p in estimate {
        match p {
            AirParameter::IceRoughness => fields.push(Field {
                coordinates: Coordinates::Points(vec![centre]),
                units: "m".into(),
                ..Field::chain("ice_roughness", "roughness length of the ice", 1)
            }),
        }
    }
    Geometry::new(fields, [None, None], CoordinateUnits::Metres)
}

/// The coupled model (see the module docs).
#[derive(Debug)]
pub struct IceAtmosphere {
    config: IceAtmosphereConfig,
    ice: SeaIce,
    air: BoundaryLayer,
    geometry: Geometry,
    /// Ocean cells as ones and zeros (no ice grows on land).
    ocean_cells: Vec<f64>,
}

/// What one coupled step returns besides the state: the mean air stress
/// on the ice at the cells (N/m^2).
struct Exchange {
    stress: [Tensor<3>; 2],
}

impl IceAtmosphere {
    /// The sea ice.
    pub fn ice(&self) -> &SeaIce {
        &self.ice
    }

    /// The boundary layer.
    pub fn atmosphere(&self) -> &BoundaryLayer {
        &self.air
    }

    fn ice_len(&self) -> usize {
        self.ice.geometry().size()
    }

    /// Splits a batch into the ice's state, `ts` `[members, ny, nx]`, the
    /// columns and the estimated air parameters `[members, k]`.
    fn split(&self, state: Tensor<2>) -> (Tensor<2>, Tensor<3>, Columns, Option<Tensor<2>>) {
        let [members, _] = state.dims();
        let g = self.ice.grid();
        let (n_ice, cells) = (self.ice_len(), g.cells());
        let ice = state.clone().narrow(1, 0, n_ice);
        let ts = state
            .clone()
            .narrow(1, n_ice, cells)
            .reshape([members, g.ny, g.nx]);
        let air_len = self.air.geometry().size();
        let air = self
            .air
            .split(state.clone().narrow(1, n_ice + cells, air_len));
        let k = self.config.estimate.len();
        let params = (k > 0).then(|| state.narrow(1, n_ice + cells + air_len, k));
        (ice, ts, air, params)
    }

    fn join(
        &self,
        ice: Tensor<2>,
        ts: Tensor<3>,
        air: Columns,
        params: Option<Tensor<2>>,
    ) -> Tensor<2> {
        let members = ice.dims()[0];
        let cells = self.ice.grid().cells();
        let mut parts = vec![ice, ts.reshape([members, cells]), self.air.join(air)];
        parts.extend(params);
        Tensor::cat(parts, 1)
    }

    /// The configured wind at the cell centres at `t`, `[members * cells,
    /// 1]` each.
    fn geostrophic(&self, t: f64, members: usize, device: &Device) -> [Tensor<2>; 2] {
        let g = self.ice.grid();
        let (w, h) = (g.width(), g.height());
        let (mut u, mut v) = (Vec::new(), Vec::new());
        for y in g.cell_y() {
            for x in g.cell_x() {
                let [a, b] = self.config.ice.wind.at(x, y, t, w, h);
                u.push(a);
                v.push(b);
            }
        }
        // The same for every member.
        let (u, v) = (u.repeat(members), v.repeat(members));
        let n = u.len();
        [
            Tensor::from_data(TensorData::new(u, [n, 1]), device),
            Tensor::from_data(TensorData::new(v, [n, 1]), device),
        ]
    }

    /// One coupled step of the fields from `t`.
    fn advance(&self, state: Tensor<2>, t: f64) -> (Tensor<2>, Exchange) {
        let device = state.device();
        let members = state.dims()[0];
        let g = self.ice.grid();
        let (ny, nx, cells) = (g.ny, g.nx, g.cells());
        let batch = members * cells;
        let (ice_state, ts, mut air, params) = self.split(state);
        let (f, p) = self.ice.unpack(ice_state);
        let column = |x: Tensor<3>| x.reshape([batch, 1]);
        // The ice velocity at the centres: the mean of the four corners.
        let centre = |n: &Tensor<3>| g.node_to_cell(n);
        let thermo = &self.config.thermodynamics;
        let mut below = Surface::new(
            column(f.a.clone()),
            column(ts.clone()),
            column(f.a.zeros_like() + thermo.freezing),
            Some([column(centre(&f.u)), column(centre(&f.v))]),
        );
        for (k, p) in self.config.estimate.iter().enumerate() {
            // One value per member, for each of its columns; kept above
            // a micrometre, so that a trial point of a minimisation stays
            // in the formula's domain.
            let value = params
                .clone()
                .expect("estimated parameters are in the state")
                .narrow(1, k, 1)
                .reshape([members, 1, 1])
                .expand([members, cells, 1])
                .reshape([batch, 1]);
            match p {
                AirParameter::IceRoughness => {
                    below = below.with_ice_roughness(value.clamp_min(1e-6));
                }
            }
        }
        let steps = self.config.atmosphere_steps;
        let dt_air = self.config.ice.dt / steps as f64;
        let mut stress: Option<[Tensor<2>; 2]> = None;
        let mut fluxes = None;
        for k in 0..steps {
            let geo = self.geostrophic(t + k as f64 * dt_air, members, &device);
            let (next, flux) = self.air.step_over(air, &below, Some(&geo));
            air = next;
            let [sx, sy] = flux.ice_stress.clone();
            stress = Some(match stress {
                Some([ax, ay]) => [ax + sx, ay + sy],
                None => [sx, sy],
            });
            fluxes = Some(flux);
        }
        let flux = fluxes.expect("at least one atmosphere step");
        let rho_air = self.config.ice.rho_air;
        let [sx, sy] = stress.expect("at least one atmosphere step");
        let at_cells = |s: Tensor<2>| s.reshape([members, ny, nx]) * (rho_air / steps as f64);
        let cell_stress = [at_cells(sx), at_cells(sy)];
        let moved = match self.config.ice_forcing {
            IceForcing::BoundaryLayer => {
                let tau = cell_stress.clone().map(|s| g.cell_to_node(s));
                self.ice.advance_under(f, &p, tau, None)
            }
            IceForcing::Wind => self.ice.advance(f, &p, t, None),
        };
        let theta1 = air.theta.clone().narrow(1, 0, 1).reshape([members, ny, nx]);
        let cells_of = |x: Tensor<2>| x.reshape([members, ny, nx]);
        let (moved, ts) = if thermo.enabled {
            self.thermodynamics(
                moved,
                theta1,
                cells_of(flux.ice_heat_coefficient),
                cells_of(flux.water_heat),
            )
        } else {
            (moved, ts)
        };
        let ice = self.ice.pack(moved, &p);
        (
            self.join(ice, ts, air, params),
            Exchange {
                stress: cell_stress,
            },
        )
    }

    /// Growth and melt over one step (module docs), and the new surface
    /// temperature; `gamma_h` over ice and the kinematic heat flux over
    /// open water from the atmosphere's step.
    fn thermodynamics(
        &self,
        f: IceFields,
        theta1: Tensor<3>,
        gamma_h: Tensor<3>,
        water_heat: Tensor<3>,
    ) -> (IceFields, Tensor<3>) {
        let c = &self.config.thermodynamics;
        let ice = &self.config.ice;
        let dt = ice.dt;
        let rho_cp = ice.rho_air * c.air_heat_capacity;
        let per_latent = dt / (ice.rho_ice * c.latent_heat);
        let g = self.ice.grid();
        let mask = Tensor::<3>::from_data(
            TensorData::new(self.ocean_cells.clone(), [1, g.ny, g.nx]),
            &f.h.device(),
        );
        let a = f.a.clone();
        // Thickness of the ice itself.
        let hi = (f.h.clone() * a.clone().clamp_min(1e-6).recip()).clamp_min(MIN_ICE);
        let conduct = hi.recip() * c.conductivity;
        let exchange = gamma_h * rho_cp;
        // k (T_f - T_s) / h_i = rho c_p gamma_h (T_s - theta_1) + Q.
        let balance = (conduct.clone() * c.freezing + exchange.clone() * theta1.clone()
            - c.radiative_loss)
            * (conduct + exchange.clone()).recip();
        let ts = balance.clamp_max(MELTING);
        let loss = exchange * (ts.clone() - theta1) + c.radiative_loss;
        // Per unit ice area, then over the cell.
        let dh_ice = (loss - c.ocean_heat_flux) * per_latent * a.clone();
        let open = (water_heat * rho_cp + c.radiative_loss).clamp_min(0.0) * per_latent;
        let dh_open = open * (a.clone().neg() + 1.0);
        let h_new = (f.h.clone() + dh_ice.clone() + dh_open.clone()).clamp_min(0.0) * mask.clone();
        let melt = dh_ice.clamp_max(0.0);
        let a_new = (a.clone()
            + dh_open * (a.clone().neg() + 1.0) * (1.0 / c.lead_thickness)
            + melt * a * f.h.clone().clamp_min(1e-3).recip() * 0.5)
            .clamp(0.0, 1.0)
            * mask;
        (
            IceFields {
                h: h_new,
                a: a_new,
                ..f
            },
            ts,
        )
    }
}

impl Model for IceAtmosphere {
    fn step(&self, state: Tensor<2>, time: f64) -> Tensor<2> {
        self.advance(state, time).0
    }

    fn dt(&self) -> f64 {
        self.config.ice.dt
    }

    fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    fn name(&self) -> &str {
        "sea_ice_abl"
    }

    /// The large-scale (geostrophic) wind at the cell centres.
    fn forcing(&self, time: f64) -> Vec<crate::core::ForcingField> {
        self.ice.forcing(time)
    }

    fn autonomous(&self) -> bool {
        false
    }

    fn initial_state(&self) -> Option<Vec<f64>> {
        let mut x = self.ice.initial_state()?;
        let cells = self.ice.grid().cells();
        x.extend(std::iter::repeat_n(
            self.config.thermodynamics.initial_surface_temperature,
            cells,
        ));
        x.extend(self.air.initial_vector());
        for p in &self.config.estimate {
            x.push(match p {
                AirParameter::IceRoughness => self.config.atmosphere.ice_roughness,
            });
        }
        Some(x)
    }

    fn maps(&self, state: Tensor<2>) -> Vec<MapField> {
        let g = self.ice.grid();
        let n_ice = self.ice_len();
        let mut maps = self.ice.maps(state.clone().narrow(1, 0, n_ice));
        let (_, ts, air, _) = self.split(state);
        let host = crate::device::to_vec::<2>;
        let lowest = |f: &Tensor<2>| host(f.clone().narrow(1, 0, 1));
        let (u1, v1, theta1) = (lowest(&air.u), lowest(&air.v), lowest(&air.theta));
        // The air is drawn over land too.
        let map = |name, long, units, values| MapField {
            mask: None,
            ..g.cell_map(name, long, units, values, MapScale::Linear)
        };
        maps.push(map(
            "air_speed",
            "wind speed at the lowest level",
            "m s-1",
            u1.iter().zip(&v1).map(|(a, b)| a.hypot(*b)).collect(),
        ));
        maps.push(map(
            "air_theta",
            "potential temperature at the lowest level",
            "K",
            theta1,
        ));
        maps.push(g.cell_map(
            "ts",
            "ice surface temperature",
            "K",
            crate::device::to_vec(ts),
            MapScale::Linear,
        ));
        maps
    }

    fn diagnostics(&self, state: Tensor<2>, time: f64) -> Vec<(&'static str, Vec<f64>)> {
        let n_ice = self.ice_len();
        let mut d = self
            .ice
            .diagnostics(state.clone().narrow(1, 0, n_ice), time);
        let members = state.dims()[0];
        let (_, exchange) = self.advance(state, time);
        let cells = self.ice.grid().cells() as f64;
        let [sx, sy] = exchange.stress;
        let magnitude = (sx.square() + sy.square())
            .sqrt()
            .reshape([members, self.ice.grid().cells()]);
        let mean = crate::device::to_vec(magnitude.sum_dim(1))
            .into_iter()
            .map(|s| s / cells)
            .collect();
        d.push(("mean_air_stress", mean));
        d
    }
}

#[cfg(test)]
mod tests;
