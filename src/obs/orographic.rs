//! `operator = { kind = "orographic", quantity = "precipitation" }`: the
//! fine-scale surface fields of a downscaling twin, seen from a coarse
//! stream-function state. The *exact* operator of the twin (what a
//! learned downscaling operator emulates), and with `resolution =
//! "coarse"` the naive one (the same physics on the coarse grid,
//! interpolated).
//!
//! # The twin world
//! The DA state is a coarse stream function `psi` on a rectilinear grid
//! (the QG model's, on the unit square). The set's single field is that
//! grid; the operator refines it `refinement` times (a 65 x 65 state gives
//! a 257 x 257 fine grid), lays a synthetic terrain `h` on the fine grid
//! (ridges and valleys at scales the coarse grid cannot see, inside a flat
//! margin: [`synthetic_terrain`]), and makes two surface fields:
//!
//! ```text
//! wind           (u, v) = (U_0, V_0) + s_w (-dpsi/dy, dpsi/dx)           m s^-1
//! precipitation  P = 3600 max(P_b + sum_b w_b(x) (P_SB(x; U_b, V_b) - P_b), 0)   mm h^-1
//! temperature    T = T_0 + Gamma h(x) + s_T psi(x)                        K
//! ```
//!
//! The wind is the geostrophic wind of `psi` (centred differences on the
//! coarse grid, in the grid's coordinate units, one-sided at the edges)
//! scaled by `wind_scale` `s_w`, plus a uniform `background_wind`
//! `(U_0, V_0)`, interpolated bilinearly to the fine grid. Precipitation is
//! the linear theory of Smith & Barstad (2004) ([`OrographicModel`]) on the
//! fine terrain; that theory holds for a uniform wind, so the grid is split
//! into `blocks x blocks` tent-weighted blocks ([`BlockedOrographic`]),
//! each with the weighted mean wind `(U_b, V_b)` over its tent, and the
//! fields of the blocks are blended with the tents' weights (a partition
//! of unity); `P_b` is the background precipitation. The theory's moisture
//! (`C_w`, `H_w`) is that of the mean surface state `T_0` at 1000 hPa with
//! a free-atmosphere lapse rate `gamma = Gamma_m + N_m^2 T_0 / g`
//! consistent with its moist stability `N_m = 0.005 s^-1` (about
//! -4.0 K/km at 288 K: the station lapse rate `Gamma` of -6.5 K/km would
//! be moist-unstable there); its delays are the defaults (1000 s). The
//! moisture does not follow the temperature anomaly. The blocks are large
//! (4 x 4 over the domain by default, 256 km tents on a 1024 km square):
//! precipitation at a site depends on the state through the block winds,
//! wider than a typical localisation radius. The wind derivative of the
//! theory is singular where a mode's intrinsic frequency equals `N_m`
//! (`|T'| ~ |sigma - N_m|^(-1/2)`), inside the ridge band at 20 m/s:
//! the Jacobian is rough there. Observation errors are additive Gaussian
//! on a field truncated at zero: simulated observations can be negative.
//! Near-surface
//! temperature is a sea-level temperature `T_0` cooled by the lapse rate
//! `Gamma` over the terrain, plus the large-scale anomaly `s_T psi`
//! (the interface displacement of a reduced-gravity layer is proportional
//! to `psi`; `temperature_scale` `s_T`), with `psi` interpolated
//! bilinearly. Physical distances: the grid's `x` extent is
//! `domain_length` metres.
//!
//! With `resolution = "coarse"` the same chain runs on the coarse grid: the
//! terrain averaged over each coarse cell (the mean of the piecewise-linear
//! fine terrain over the cell centred on the coarse point), the coarse
//! winds, Smith-Barstad on the coarse grid with the same blocks (tents in
//! physical coordinates), and the fields interpolated bilinearly to the
//! sites. That is the naive operator: what a coarse model's own surface
//! fields say at a station. Its temperature differs from the exact one by
//! `Gamma (h_fine - h_coarse)` at each site, a constant of the site: the
//! temperature part of an exact-against-naive twin measures that
//! elevation bias (a naive operator corrected for station height would be
//! exact); precipitation differs through the state. `representation_error_std`
//! gives an imperfect operator its own error, added to R.
//!
//! # Sites
//! The candidates are the fine grid's points (a choosing network picks
//! among them); a `points` or `stations` network gives arbitrary points in
//! the domain, where the fine field is interpolated bilinearly. Both
//! resolutions offer the same candidates, so one can simulate a twin's
//! observations (`truth_operator`) that the other assimilates.
//!
//! # Gradients
//! The operator is a [`HostMap`]: the chain on the host, with its exact
//! adjoint (the temperature is affine in `psi`; precipitation's adjoint
//! runs back through the truncation, the blend, the transfer functions'
//! derivatives in the wind ([`BlockedOrographic::winds_vjp`]) and the
//! linear map from `psi` to the block winds). Tests check it against
//! finite differences and by the dot-product test through burn autodiff.
//! It runs on the CPU device.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::host::{HostMap, HostObs, available_on};
use super::spec::{
    BuildContext, Candidate, KeyError, OperatorBuilder, OperatorSpec, SpecDoc, SpecKey,
    StaticField, key_error,
};
use crate::core::{Coordinates, Location, ObsOperator};
use crate::models::orographic::{
    BlockedOrographic, DEFAULT_MOIST_STABILITY, DEFAULT_SURFACE_PRESSURE, GRAVITY, OrographicModel,
    OrographicParams, SECONDS_PER_HOUR, TerrainParams, moist_adiabatic_lapse_rate,
    synthetic_terrain, uplift_sensitivity, water_vapour_scale_height,
};

/// What the operator observes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quantity {
    /// Precipitation rate (mm h^-1).
    Precipitation,
    /// Near-surface temperature (K).
    Temperature,
}

/// Where the chain runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resolution {
    /// On the fine grid (the exact operator of the twin).
    #[default]
    Fine,
    /// On the coarse grid, interpolated (the naive operator).
    Coarse,
}

/// The `orographic` operator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrographicSpec {
    /// What is observed.
    pub quantity: Quantity,
    /// Fine points per coarse grid interval.
    #[serde(default = "default_refinement")]
    pub refinement: usize,
    /// Fine (exact) or coarse (naive).
    #[serde(default)]
    pub resolution: Resolution,
    /// The grid's `x` extent in metres.
    #[serde(default = "default_domain_length")]
    pub domain_length: f64,
    /// Wind (m s^-1) per unit of the stream function's gradient (in the
    /// grid's coordinate units).
    #[serde(default = "default_wind_scale")]
    pub wind_scale: f64,
    /// A uniform wind `[U_0, V_0]` (m s^-1) added to the geostrophic one.
    #[serde(default = "default_background_wind")]
    pub background_wind: [f64; 2],
    /// Blocks of uniform wind along each axis.
    #[serde(default = "default_blocks")]
    pub blocks: usize,
    /// Seed of the synthetic terrain.
    #[serde(default = "default_terrain_seed")]
    pub terrain_seed: u64,
    /// The terrain's highest point (m).
    #[serde(default = "default_max_height")]
    pub max_height: f64,
    /// Gaussian massifs of the terrain (80-200 km wide, ridges carved
    /// into them).
    #[serde(default = "default_massifs")]
    pub massifs: usize,
    /// The operator's own error standard deviation (its representation
    /// error: what an imperfect operator misses), added in quadrature to
    /// the set's `error_std` (K or mm/h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub representation_error_std: Option<f64>,
    /// Sea-level temperature `T_0` (K).
    #[serde(default = "default_sea_level_temperature")]
    pub sea_level_temperature: f64,
    /// Lapse rate `Gamma = dT/dz` (K m^-1, negative).
    #[serde(default = "default_lapse_rate")]
    pub lapse_rate: f64,
    /// Temperature anomaly (K) per unit of the stream function.
    #[serde(default = "default_temperature_scale")]
    pub temperature_scale: f64,
    /// Background precipitation (mm h^-1), added before the truncation.
    #[serde(default)]
    pub background_precipitation: f64,
}

fn default_refinement() -> usize {
    4
}
fn default_domain_length() -> f64 {
    1.024e6
}
fn default_wind_scale() -> f64 {
    0.5
}
fn default_background_wind() -> [f64; 2] {
    [10.0, 0.0]
}
fn default_blocks() -> usize {
    4
}
fn default_terrain_seed() -> u64 {
    1
}
fn default_max_height() -> f64 {
    2000.0
}
fn default_massifs() -> usize {
    12
}
fn default_sea_level_temperature() -> f64 {
    288.15
}
fn default_lapse_rate() -> f64 {
    -6.5e-3
}
fn default_temperature_scale() -> f64 {
    0.5
}

impl SpecDoc for OrographicSpec {
    const DOC: &'static str = "the fine-scale surface fields of a downscaling twin from a coarse stream-function state (one 2-D field): a synthetic terrain on a grid `refinement` times finer, the geostrophic wind, precipitation by the linear theory of Smith & Barstad (2004) in blocks of uniform wind, temperature by a lapse rate over the terrain plus the large-scale anomaly; resolution = \"coarse\" runs the same physics on the coarse grid and interpolates (the naive operator). Candidates are the fine grid's points; stations and points are interpolated bilinearly. Nonlinear, with its exact adjoint; CPU device";
    const KEYS: &'static [SpecKey] = &[
        SpecKey {
            key: "quantity",
            kind: "\"precipitation\" (mm/h) or \"temperature\" (K)",
            doc: "the surface field observed",
            required: Some("\"precipitation\""),
        },
        SpecKey {
            key: "refinement",
            kind: "integer ≥ 1",
            doc: "fine points per coarse grid interval (default 4)",
            required: None,
        },
        SpecKey {
            key: "resolution",
            kind: "\"fine\" or \"coarse\"",
            doc: "fine: the exact chain of the twin; coarse: the chain on the coarse grid with the terrain averaged over each cell, interpolated bilinearly (the naive operator); default fine",
            required: None,
        },
        SpecKey {
            key: "domain_length",
            kind: "number > 0, m",
            doc: "the grid's x extent in metres (default 1.024e6: 16 km coarse and 4 km fine cells on a 65-point grid)",
            required: None,
        },
        SpecKey {
            key: "wind_scale",
            kind: "number ≥ 0, m/s per unit stream-function gradient",
            doc: "the geostrophic wind (-dpsi/dy, dpsi/dx) in the grid's coordinate units times this (default 0.5: on the 65 x 65 QG model, block-mean winds of about 6 m/s around the background, with a temporal std of about 3 m/s)",
            required: None,
        },
        SpecKey {
            key: "background_wind",
            kind: "[u, v], m/s",
            doc: "a uniform wind added to the geostrophic one (default [10, 0], a westerly)",
            required: None,
        },
        SpecKey {
            key: "blocks",
            kind: "integer ≥ 1",
            doc: "blocks of uniform wind along each axis for the linear precipitation theory (default 4)",
            required: None,
        },
        SpecKey {
            key: "terrain_seed",
            kind: "integer",
            doc: "seed of the synthetic terrain (default 1); the same in every set of a twin",
            required: None,
        },
        SpecKey {
            key: "max_height",
            kind: "number > 0, m",
            doc: "the terrain's highest point (default 2000)",
            required: None,
        },
        SpecKey {
            key: "massifs",
            kind: "integer ≥ 0",
            doc: "Gaussian massifs 80-200 km wide with ridges 3-12 fine cells across carved into them (default 12: a third of a 1024 km square above 10 % of the peak)",
            required: None,
        },
        SpecKey {
            key: "representation_error_std",
            kind: "number > 0, K or mm/h",
            doc: "the operator's own error (what an imperfect operator such as resolution = \"coarse\" misses), added in quadrature to the set's error_std; absent: none",
            required: None,
        },
        SpecKey {
            key: "sea_level_temperature",
            kind: "number, K",
            doc: "temperature at sea level without anomaly (default 288.15); also the surface temperature of the precipitation theory's moisture (C_w ~ 9e-3 kg m^-3, H_w ~ 2.3 km at the defaults)",
            required: None,
        },
        SpecKey {
            key: "lapse_rate",
            kind: "number < 0, K/m",
            doc: "dT/dz over the terrain (default -6.5e-3); with sea_level_temperature it also sets the moisture of the precipitation theory (C_w, H_w)",
            required: None,
        },
        SpecKey {
            key: "temperature_scale",
            kind: "number, K per unit stream function",
            doc: "the large-scale temperature anomaly per unit psi (default 0.5: on the QG model, a temporal std of about 1 K, up to 8 K in the jet)",
            required: None,
        },
        SpecKey {
            key: "background_precipitation",
            kind: "number ≥ 0, mm/h",
            doc: "non-orographic precipitation added before the truncation at zero (default 0)",
            required: None,
        },
    ];
}

impl OperatorSpec for OrographicSpec {
    fn check(&self) -> Result<(), KeyError> {
        if self.refinement == 0 {
            return Err(key_error("refinement", "must be at least 1"));
        }
        if self.blocks == 0 {
            return Err(key_error("blocks", "must be at least 1"));
        }
        let positive = [
            ("domain_length", self.domain_length),
            ("max_height", self.max_height),
            ("sea_level_temperature", self.sea_level_temperature),
        ];
        for (key, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return Err(key_error(
                    key,
                    format!("must be finite and positive, got {v}"),
                ));
            }
        }
        let non_negative = [
            ("wind_scale", self.wind_scale),
            ("background_precipitation", self.background_precipitation),
        ];
        for (key, v) in non_negative {
            if !(v.is_finite() && v >= 0.0) {
                return Err(key_error(key, format!("must be finite and ≥ 0, got {v}")));
            }
        }
        if !(self.lapse_rate.is_finite() && self.lapse_rate < 0.0) {
            return Err(key_error(
                "lapse_rate",
                format!(
                    "must be finite and negative (dT/dz, K/m: temperature falls with height), got {}",
                    self.lapse_rate
                ),
            ));
        }
        if let Some(v) = self.representation_error_std
            && !(v.is_finite() && v > 0.0)
        {
            return Err(key_error(
                "representation_error_std",
                format!("must be finite and positive, got {v}"),
            ));
        }
        if !(173.15..=373.15).contains(&self.sea_level_temperature) {
            return Err(key_error(
                "sea_level_temperature",
                format!(
                    "must lie in [173.15, 373.15] K (the range of the saturation formula), got {}",
                    self.sea_level_temperature
                ),
            ));
        }
        if !self.temperature_scale.is_finite() {
            return Err(key_error("temperature_scale", "must be finite"));
        }
        if let Some(w) = self.background_wind.iter().find(|w| !w.is_finite()) {
            return Err(key_error(
                "background_wind",
                format!("must be finite, got {w}"),
            ));
        }
        Ok(())
    }

    fn init(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn OperatorBuilder>, KeyError> {
        Ok(Box::new(self.build(ctx)?))
    }
}

impl OrographicSpec {
    /// A spec for `quantity` with every other key at its default.
    pub fn new(quantity: Quantity) -> Self {
        Self {
            quantity,
            refinement: default_refinement(),
            resolution: Resolution::Fine,
            domain_length: default_domain_length(),
            wind_scale: default_wind_scale(),
            background_wind: default_background_wind(),
            blocks: default_blocks(),
            terrain_seed: default_terrain_seed(),
            max_height: default_max_height(),
            massifs: default_massifs(),
            representation_error_std: None,
            sea_level_temperature: default_sea_level_temperature(),
            lapse_rate: default_lapse_rate(),
            temperature_scale: default_temperature_scale(),
            background_precipitation: 0.0,
        }
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<OrographicBuilder, KeyError> {
        if !available_on(ctx.device) {
            return Err(key_error(
                "operator.kind",
                "\"orographic\" runs on the CPU device (a host chain with its own adjoint): run with --device cpu",
            ));
        }
        let g = ctx.geometry;
        let [field] = ctx.fields.as_slice() else {
            return Err(key_error(
                "fields",
                format!(
                    "\"orographic\" reads one 2-D stream-function field; name it (fields = [\"...\"]), the set has {}",
                    ctx.fields.len()
                ),
            ));
        };
        let f = &g.fields[*field];
        let Coordinates::Axes { x, y } = &f.coordinates else {
            return Err(key_error(
                "fields",
                format!(
                    "\"orographic\" needs a gridded field, and `{}` has scattered points",
                    f.name
                ),
            ));
        };
        if y.is_empty() || x.len() < 2 || y.len() < 2 {
            return Err(key_error(
                "fields",
                format!(
                    "\"orographic\" needs a 2-D grid of at least 2 x 2 points, and `{}` is {:?}",
                    f.name, f.shape
                ),
            ));
        }
        if f.mask.is_some() {
            return Err(key_error(
                "fields",
                format!(
                    "\"orographic\" needs a field without a land mask, and `{}` has one",
                    f.name
                ),
            ));
        }
        for (axis, values) in [("x", x), ("y", y)] {
            let d = values[1] - values[0];
            if !(d > 0.0)
                || values
                    .windows(2)
                    .any(|w| ((w[1] - w[0]) - d).abs() > 1e-9 * d)
            {
                return Err(key_error(
                    "fields",
                    format!(
                        "\"orographic\" needs an evenly spaced, ascending {axis} axis, and field `{}` has none",
                        f.name
                    ),
                ));
            }
        }
        let chain = Chain::new(self, x, y, g.offset(*field), g.size())
            .map_err(|why| key_error("operator", why))?;
        let candidates = chain
            .fine_locations()
            .map(|location| Candidate {
                field: *field,
                location,
            })
            .collect();
        Ok(OrographicBuilder {
            chain: Arc::new(chain),
            quantity: self.quantity,
            representation_error_std: self.representation_error_std,
            candidates,
        })
    }
}

/// A 1-D grid axis: first coordinate and spacing.
#[derive(Clone, Copy, Debug)]
struct Axis {
    start: f64,
    step: f64,
    len: usize,
}

impl Axis {
    fn end(&self) -> f64 {
        self.start + self.step * (self.len - 1) as f64
    }
    /// The cell holding `v` and the weight of its upper point, `None`
    /// outside.
    fn bracket(&self, v: f64) -> Option<(usize, f64)> {
        let tol = 1e-9 * self.step;
        if !(v >= self.start - tol && v <= self.end() + tol) {
            return None;
        }
        let s = ((v - self.start) / self.step).clamp(0.0, (self.len - 1) as f64);
        let i = (s.floor() as usize).min(self.len - 2);
        Some((i, s - i as f64))
    }
}

/// Trapezoid weights (offset, weight) of the mean of a piecewise-linear
/// function over `r` intervals centred on a point (`r + 1` points, or
/// `r + 2` for odd `r`, half weights at the ends), summing to 1.
fn cell_mean_weights(r: usize) -> Vec<(isize, f64)> {
    if r <= 1 {
        return vec![(0, 1.0)];
    }
    // The cell spans [-r/2, r/2] fine intervals around the point.
    let half = r as f64 / 2.0;
    let reach = half.ceil() as isize;
    let mut w: Vec<(isize, f64)> = (-reach..=reach)
        .map(|d| {
            // Integral over the cell of the hat function of point d.
            let (lo, hi) = ((d - 1) as f64, (d + 1) as f64);
            let overlap = |a: f64, b: f64| -> f64 {
                // integral of max(0, 1 - |x - d|) over [a, b]
                let hat = |x: f64| {
                    let t = x - d as f64;
                    if t <= -1.0 {
                        0.0
                    } else if t <= 0.0 {
                        (t + 1.0) * (t + 1.0) / 2.0
                    } else if t <= 1.0 {
                        0.5 + t - t * t / 2.0
                    } else {
                        1.0
                    }
                };
                hat(b) - hat(a)
            };
            (d, overlap((-half).max(lo), half.min(hi)).max(0.0))
        })
        .filter(|&(_, w)| w > 0.0)
        .collect();
    let total: f64 = w.iter().map(|&(_, v)| v).sum();
    for e in &mut w {
        e.1 /= total;
    }
    w
}

/// The smallest `m >= n` whose only prime factors are 2, 3 and 5 (fast
/// FFT sizes).
fn smooth_size(n: usize) -> usize {
    (n..)
        .find(|&m| {
            let mut m = m;
            for p in [2, 3, 5] {
                while m % p == 0 {
                    m /= p;
                }
            }
            m == 1
        })
        .expect("a 5-smooth number follows every n")
}

/// Everything the maps share: the grids, the terrain, the precipitation
/// model and the linear map from the state to the block winds.
struct Chain {
    /// The coarse grid (the state's field).
    coarse: [Axis; 2],
    /// The fine grid.
    fine: [Axis; 2],
    /// The grid the fields are computed on (fine or coarse), unpadded.
    grid: [Axis; 2],
    /// Row length of the padded computation grid.
    padded_nx: usize,
    /// Terrain on the computation grid (padded, row-major).
    terrain: Vec<f64>,
    /// Terrain on the fine grid (row-major, the candidates' order).
    fine_terrain: Vec<f64>,
    /// Offset of the field in the state and the state size.
    offset: usize,
    n: usize,
    blocked: BlockedOrographic,
    /// Block winds: `U_b = u0[b] + a_u[b] . x`, `V_b = v0[b] + a_v[b] . x`.
    a_u: Vec<Vec<f64>>,
    a_v: Vec<Vec<f64>>,
    u0: Vec<f64>,
    v0: Vec<f64>,
    sea_level_temperature: f64,
    lapse_rate: f64,
    temperature_scale: f64,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field("coarse", &self.coarse)
            .field("grid", &self.grid)
            .field("blocks", &self.a_u.len())
            .finish_non_exhaustive()
    }
}

impl Chain {
    fn new(
        spec: &OrographicSpec,
        x: &[f64],
        y: &[f64],
        offset: usize,
        n: usize,
    ) -> Result<Self, String> {
        let r = spec.refinement;
        let coarse = [
            Axis {
                start: x[0],
                step: x[1] - x[0],
                len: x.len(),
            },
            Axis {
                start: y[0],
                step: y[1] - y[0],
                len: y.len(),
            },
        ];
        let fine = coarse.map(|a| Axis {
            start: a.start,
            step: a.step / r as f64,
            len: (a.len - 1) * r + 1,
        });
        let metres = spec.domain_length / (coarse[0].end() - coarse[0].start);
        // The terrain on the fine grid, zero in its margin.
        let (nyf, nxf) = (fine[1].len, fine[0].len);
        if nyf.saturating_mul(nxf) > 1 << 24 {
            return Err(format!(
                "the fine grid of {nyf} x {nxf} points is too large (refinement {r}): at most 2^24 points"
            ));
        }
        let fine_terrain = synthetic_terrain(
            nyf,
            nxf,
            fine[0].step * metres,
            fine[1].step * metres,
            &TerrainParams {
                max_height: spec.max_height,
                massifs: spec.massifs,
                massif_min_width: 80e3,
                massif_max_width: 200e3,
                ..TerrainParams::for_grid_spacing(fine[0].step.max(fine[1].step) * metres)
            },
            spec.terrain_seed,
        )?;
        let (grid, grid_terrain) = match spec.resolution {
            Resolution::Fine => (fine, fine_terrain.clone()),
            Resolution::Coarse => {
                // Each coarse point's cell: the mean of the fine terrain
                // (piecewise linear between the fine points) over the
                // coarse cell centred on it, trapezoid weights, clipped at
                // the domain's edges.
                let weights = cell_mean_weights(r);
                let (nyc, nxc) = (coarse[1].len, coarse[0].len);
                let mut t = vec![0.0; nyc * nxc];
                for j in 0..nyc {
                    for i in 0..nxc {
                        let mut sum = 0.0;
                        let mut total = 0.0;
                        for &(dj, wj) in &weights {
                            let Some(jj) = (j * r).checked_add_signed(dj).filter(|&v| v < nyf)
                            else {
                                continue;
                            };
                            for &(di, wi) in &weights {
                                let Some(ii) = (i * r).checked_add_signed(di).filter(|&v| v < nxf)
                                else {
                                    continue;
                                };
                                sum += wj * wi * fine_terrain[jj * nxf + ii];
                                total += wj * wi;
                            }
                        }
                        t[j * nxc + i] = sum / total;
                    }
                }
                (coarse, t)
            }
        };
        let (ny, nx) = (grid[1].len, grid[0].len);
        let (py, px) = (smooth_size(ny), smooth_size(nx));
        let mut terrain = vec![0.0; py * px];
        for j in 0..ny {
            terrain[j * px..j * px + nx].copy_from_slice(&grid_terrain[j * nx..(j + 1) * nx]);
        }
        // The moisture of the theory at the mean surface state T_0, with
        // the free atmosphere's lapse rate consistent with the theory's
        // moist stability: N_m^2 = g / T_0 (gamma - Gamma_m), so
        // gamma = Gamma_m + N_m^2 T_0 / g (about -4.0 K/km at 288 K, where
        // the station lapse rate of -6.5 K/km would be moist-unstable).
        let t0 = spec.sea_level_temperature;
        let gamma_m = moist_adiabatic_lapse_rate(t0, DEFAULT_SURFACE_PRESSURE)?;
        let gamma = gamma_m + DEFAULT_MOIST_STABILITY.powi(2) * t0 / GRAVITY;
        let params = OrographicParams {
            nm: DEFAULT_MOIST_STABILITY,
            cw: uplift_sensitivity(t0, gamma, DEFAULT_SURFACE_PRESSURE)?,
            hw: water_vapour_scale_height(t0, gamma)?,
            background: spec.background_precipitation / SECONDS_PER_HOUR,
            ..OrographicParams::default()
        };
        let model = OrographicModel::new(
            &terrain,
            py,
            px,
            grid[0].step * metres,
            grid[1].step * metres,
            params,
        )?;
        let blocks = spec.blocks.min(ny).min(nx);
        // Tents in physical coordinates over the unpadded domain: the same
        // blocks at both resolutions.
        let blocked = BlockedOrographic::over_domain(model, blocks, blocks, ny, nx)?;
        // The geostrophic wind at each padded cell as rows over psi: the
        // coarse centred differences, interpolated bilinearly (padding
        // takes the nearest edge value).
        let nb = blocked.blocks();
        let mut a_u = vec![vec![0.0; n]; nb];
        let mut a_v = vec![vec![0.0; n]; nb];
        let mut weights = vec![0.0; py * px];
        for b in 0..nb {
            let mut cot = vec![0.0; nb];
            cot[b] = 1.0;
            weights.fill(0.0);
            blocked.block_means_adjoint(&cot, &mut weights)?;
            for jp in 0..py {
                for ip in 0..px {
                    let w = weights[jp * px + ip];
                    if w == 0.0 {
                        continue;
                    }
                    let location = [
                        grid[0].start + grid[0].step * ip.min(nx - 1) as f64,
                        grid[1].start + grid[1].step * jp.min(ny - 1) as f64,
                    ];
                    for (ci, cw) in bilinear(&coarse, location).expect("inside the grid") {
                        for (k, d) in gradient_rows(&coarse, ci) {
                            // u = -dpsi/dy, v = dpsi/dx.
                            a_u[b][offset + k] -= spec.wind_scale * w * cw * d[1];
                            a_v[b][offset + k] += spec.wind_scale * w * cw * d[0];
                        }
                    }
                }
            }
        }
        Ok(Self {
            coarse,
            fine,
            grid,
            padded_nx: px,
            terrain,
            fine_terrain,
            offset,
            n,
            u0: vec![spec.background_wind[0]; nb],
            v0: vec![spec.background_wind[1]; nb],
            blocked,
            a_u,
            a_v,
            sea_level_temperature: spec.sea_level_temperature,
            lapse_rate: spec.lapse_rate,
            temperature_scale: spec.temperature_scale,
        })
    }

    fn fine_locations(&self) -> impl Iterator<Item = Location> + '_ {
        let [ax, ay] = self.fine;
        (0..ay.len).flat_map(move |j| {
            (0..ax.len).map(move |i| [ax.start + ax.step * i as f64, ay.start + ay.step * j as f64])
        })
    }

    /// The bilinear weights of `location` on the computation grid, as
    /// indices into the padded field.
    fn grid_rows(&self, location: Location) -> Option<Vec<(usize, f64)>> {
        let px = self.padded_nx;
        let nx = self.grid[0].len;
        bilinear(&self.grid, location).map(|row| {
            row.into_iter()
                .map(|(k, w)| ((k / nx) * px + k % nx, w))
                .collect()
        })
    }

    fn winds(&self, x: &[f64]) -> Vec<(f64, f64)> {
        let dot = |a: &[f64]| a.iter().zip(x).map(|(a, x)| a * x).sum::<f64>();
        (0..self.a_u.len())
            .map(|b| {
                (
                    self.u0[b] + dot(&self.a_u[b]),
                    self.v0[b] + dot(&self.a_v[b]),
                )
            })
            .collect()
    }
}

/// Bilinear weights of `location` on `grid` (row-major indices), `None`
/// outside.
fn bilinear(grid: &[Axis; 2], location: Location) -> Option<Vec<(usize, f64)>> {
    let (i, wx) = grid[0].bracket(location[0])?;
    let (j, wy) = grid[1].bracket(location[1])?;
    let nx = grid[0].len;
    let mut row = Vec::with_capacity(4);
    for (jj, wj) in [(j, 1.0 - wy), (j + 1, wy)] {
        for (ii, wi) in [(i, 1.0 - wx), (i + 1, wx)] {
            let w = wj * wi;
            if w != 0.0 {
                row.push((jj * nx + ii, w));
            }
        }
    }
    Some(row)
}

/// The centred differences `(d/dx, d/dy)` at grid point `k` (one-sided at
/// the edges), as (index, [coefficient along x, along y]) pairs.
fn gradient_rows(grid: &[Axis; 2], k: usize) -> Vec<(usize, [f64; 2])> {
    let nx = grid[0].len;
    let (i, j) = (k % nx, k / nx);
    let mut out = Vec::with_capacity(4);
    for (axis, pos, len, stride) in [(0, i, nx, 1), (1, j, grid[1].len, nx)] {
        // Axes have at least two points, so hi > lo.
        let (lo, hi) = (pos.saturating_sub(1), (pos + 1).min(len - 1));
        let c = 1.0 / ((hi - lo) as f64 * grid[axis].step);
        let (mut d_lo, mut d_hi) = ([0.0; 2], [0.0; 2]);
        d_lo[axis] = -c;
        d_hi[axis] = c;
        out.push((k - (pos - lo) * stride, d_lo));
        out.push((k + (hi - pos) * stride, d_hi));
    }
    out
}

struct OrographicBuilder {
    chain: Arc<Chain>,
    quantity: Quantity,
    representation_error_std: Option<f64>,
    candidates: Vec<Candidate>,
}

impl OrographicBuilder {
    fn operator(
        &self,
        sites: &[Location],
        name: &str,
    ) -> Result<Arc<dyn ObsOperator>, (usize, String)> {
        let c = &self.chain;
        let mut rows = Vec::with_capacity(sites.len());
        for (p, &site) in sites.iter().enumerate() {
            let row = c.grid_rows(site).ok_or_else(|| {
                (
                    p,
                    format!(
                        "lies outside the domain [{}, {}] x [{}, {}]",
                        c.coarse[0].start,
                        c.coarse[0].end(),
                        c.coarse[1].start,
                        c.coarse[1].end()
                    ),
                )
            })?;
            rows.push(row);
        }
        let map: Arc<dyn HostMap> = match self.quantity {
            Quantity::Precipitation => Arc::new(PrecipitationMap {
                chain: Arc::clone(c),
                rows,
            }),
            Quantity::Temperature => {
                let mut constant = Vec::with_capacity(sites.len());
                let mut coefficients = Vec::with_capacity(sites.len());
                for (row, &site) in rows.iter().zip(sites) {
                    let h: f64 = row.iter().map(|&(k, w)| w * c.terrain[k]).sum();
                    constant.push(c.sea_level_temperature + c.lapse_rate * h);
                    let psi = bilinear(&c.coarse, site).expect("inside the grid");
                    coefficients.push(
                        psi.into_iter()
                            .map(|(k, w)| (c.offset + k, c.temperature_scale * w))
                            .collect(),
                    );
                }
                Arc::new(TemperatureMap {
                    n: c.n,
                    constant,
                    coefficients,
                })
            }
        };
        let op = HostObs::new(map, sites.to_vec(), name);
        Ok(Arc::new(match self.representation_error_std {
            Some(v) => op.with_error_std(vec![v; sites.len()]),
            None => op,
        }))
    }
}

impl OperatorBuilder for OrographicBuilder {
    fn candidates(&self) -> &[Candidate] {
        &self.candidates
    }

    fn static_fields(&self) -> Vec<StaticField> {
        vec![StaticField {
            name: "orography".into(),
            units: "m".into(),
            values: self.chain.fine_terrain.clone(),
        }]
    }

    fn at_candidates(&self, chosen: &[usize], name: &str) -> Arc<dyn ObsOperator> {
        let sites: Vec<Location> = chosen
            .iter()
            .map(|&c| self.candidates[c].location)
            .collect();
        self.operator(&sites, name)
            .expect("candidates lie on the fine grid, inside the domain")
    }

    fn at_points(
        &self,
        points: &[Location],
        name: &str,
    ) -> Result<(Arc<dyn ObsOperator>, Vec<usize>), KeyError> {
        let op = self.operator(points, name).map_err(|(p, why)| {
            key_error("network", format!("point {p} at {:?} {why}", points[p]))
        })?;
        let field = self.candidates[0].field;
        Ok((op, vec![field; points.len()]))
    }
}

/// Precipitation at sites (mm h^-1).
#[derive(Debug)]
struct PrecipitationMap {
    chain: Arc<Chain>,
    /// Bilinear rows of each site into the padded computation grid.
    rows: Vec<Vec<(usize, f64)>>,
}

impl PrecipitationMap {
    fn unclipped(&self, x: &[f64]) -> (Vec<(f64, f64)>, Vec<f64>) {
        let c = &self.chain;
        let winds = c.winds(x);
        let mut field = vec![0.0; c.terrain.len()];
        let mut ws = c.blocked.workspace();
        c.blocked
            .precipitation_unclipped_into(&winds, &mut ws, &mut field)
            .expect("finite winds give a finite field");
        (winds, field)
    }
}

impl HostMap for PrecipitationMap {
    fn input_len(&self) -> usize {
        self.chain.n
    }
    fn output_len(&self) -> usize {
        self.rows.len()
    }
    fn forward(&self, x: &[f64], y: &mut [f64]) {
        if x.iter().any(|v| !v.is_finite()) {
            y.fill(f64::NAN);
            return;
        }
        let (_, field) = self.unclipped(x);
        for (y, row) in y.iter_mut().zip(&self.rows) {
            *y = SECONDS_PER_HOUR * row.iter().map(|&(k, w)| w * field[k].max(0.0)).sum::<f64>();
        }
    }
    fn vjp(&self, x: &[f64], g_y: &[f64], g_x: &mut [f64]) {
        g_x.fill(0.0);
        if x.iter().any(|v| !v.is_finite()) {
            g_x.fill(f64::NAN);
            return;
        }
        let c = &self.chain;
        let (winds, field) = self.unclipped(x);
        let mut lambda = vec![0.0; field.len()];
        for (g, row) in g_y.iter().zip(&self.rows) {
            for &(k, w) in row {
                if field[k] > 0.0 {
                    lambda[k] += SECONDS_PER_HOUR * w * g;
                }
            }
        }
        let mut ws = c.blocked.workspace();
        // The derivative is infinite where a mode's intrinsic frequency is
        // exactly N_m (a resonance, probability ~1e-11 per call): the
        // gradient a relative 1e-12 away stands in for it there.
        let gw = c.blocked.winds_vjp(&winds, &lambda, &mut ws).or_else(|_| {
            let nudged: Vec<(f64, f64)> = winds
                .iter()
                .map(|&(u, v)| (u * (1.0 + 1e-12) + 1e-12, v * (1.0 + 1e-12) + 1e-12))
                .collect();
            c.blocked.winds_vjp(&nudged, &lambda, &mut ws)
        });
        let Ok(gw) = gw else {
            g_x.fill(f64::NAN);
            return;
        };
        for (b, (gu, gv)) in gw.into_iter().enumerate() {
            for ((g, au), av) in g_x.iter_mut().zip(&c.a_u[b]).zip(&c.a_v[b]) {
                *g += gu * au + gv * av;
            }
        }
    }
}

/// Temperature at sites (K): affine in the state.
#[derive(Debug)]
struct TemperatureMap {
    n: usize,
    constant: Vec<f64>,
    coefficients: Vec<Vec<(usize, f64)>>,
}

impl HostMap for TemperatureMap {
    fn input_len(&self) -> usize {
        self.n
    }
    fn output_len(&self) -> usize {
        self.constant.len()
    }
    fn forward(&self, x: &[f64], y: &mut [f64]) {
        for ((y, c), row) in y.iter_mut().zip(&self.constant).zip(&self.coefficients) {
            *y = c + row.iter().map(|&(k, w)| w * x[k]).sum::<f64>();
        }
    }
    fn vjp(&self, _x: &[f64], g_y: &[f64], g_x: &mut [f64]) {
        g_x.fill(0.0);
        for (g, row) in g_y.iter().zip(&self.coefficients) {
            for &(k, w) in row {
                g_x[k] += w * g;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{CoordinateUnits, Field, Geometry};
    use crate::device::{cpu_f64, cpu_f64_autodiff, tensor_from_rows, to_vec};
    use crate::rng::{standard_normal, stream};

    /// A QG-like geometry: one `n x n` field on the unit square.
    fn geometry(n: usize) -> Geometry {
        let axis: Vec<f64> = (0..n).map(|i| i as f64 / (n - 1) as f64).collect();
        Geometry::new(
            vec![Field::grid(
                "psi",
                "stream function",
                "1",
                axis.clone(),
                axis,
            )],
            [None, None],
            CoordinateUnits::Model,
        )
    }

    fn ctx(g: &Geometry) -> BuildContext<'_> {
        BuildContext {
            geometry: g,
            device: Box::leak(Box::new(cpu_f64())),
            seed: 1,
            stream_prefix: String::new(),
            base: std::path::Path::new("."),
            fields: vec![0],
            named_fields: true,
        }
    }

    /// A 33 x 33 coarse grid of 16 km cells (4 km fine cells).
    fn spec(quantity: Quantity) -> OrographicSpec {
        OrographicSpec {
            domain_length: 512e3,
            blocks: 2,
            ..OrographicSpec::new(quantity)
        }
    }

    /// A smooth random stream function with the QG model's magnitudes
    /// (a few units, gradients of tens per unit length).
    fn psi(n: usize, seed: u64) -> Vec<f64> {
        let mut rng = stream(seed, "psi");
        let a: Vec<f64> = standard_normal(&mut rng, 6)
            .iter()
            .map(|v| 5.0 * v)
            .collect();
        (0..n * n)
            .map(|k| {
                let (x, y) = (
                    (k % n) as f64 / (n - 1) as f64,
                    (k / n) as f64 / (n - 1) as f64,
                );
                let pi = std::f64::consts::PI;
                a[0] * (pi * x).sin() * (pi * y).sin()
                    + a[1] * (2.0 * pi * x).sin() * (pi * y).sin()
                    + a[2] * (pi * x).sin() * (3.0 * pi * y).sin()
                    + a[3] * (3.0 * pi * x + a[5]).cos() * (2.0 * pi * y).sin()
                    + a[4] * x * y
            })
            .collect()
    }

    /// Sites: a fine grid point, a point between fine points, a coarse
    /// grid point, and points near the ridges.
    fn sites() -> Vec<Location> {
        vec![
            [0.5, 0.5],
            [0.4321, 0.6789],
            [0.25, 0.75],
            [0.3, 0.3],
            [0.61, 0.37],
            [0.7, 0.55],
            [0.45, 0.52],
        ]
    }

    #[test]
    fn temperature_is_the_lapse_rate_over_the_terrain_plus_the_anomaly() {
        let g = geometry(33);
        let x = psi(33, 1);
        for resolution in [Resolution::Fine, Resolution::Coarse] {
            let s = OrographicSpec {
                resolution,
                ..spec(Quantity::Temperature)
            };
            let b = s.build(&ctx(&g)).unwrap();
            let c = &b.chain;
            // A grid point of the computation grid: its own terrain, psi
            // interpolated from the coarse grid.
            let (i, j) = match resolution {
                Resolution::Fine => (50, 70),
                Resolution::Coarse => (12, 17),
            };
            let site = [
                c.grid[0].start + c.grid[0].step * i as f64,
                c.grid[1].start + c.grid[1].step * j as f64,
            ];
            let (op, _) = b.at_points(&[site], "t").unwrap();
            let t = to_vec(op.apply(tensor_from_rows(&x, 1, x.len(), &cpu_f64()), 0.0));
            let h = c.terrain[j * c.padded_nx + i];
            let psi_here: f64 = bilinear(&c.coarse, site)
                .unwrap()
                .iter()
                .map(|&(k, w)| w * x[k])
                .sum();
            let want = 288.15 - 6.5e-3 * h + 0.5 * psi_here;
            assert!(
                (t[0] - want).abs() < 1e-9,
                "{resolution:?}: {} vs {want}",
                t[0]
            );
        }
    }

    #[test]
    fn naive_operator_misses_the_terrain_the_coarse_grid_cannot_see() {
        let g = geometry(33);
        let x = psi(33, 2);
        let fine = spec(Quantity::Temperature).build(&ctx(&g)).unwrap();
        let coarse = OrographicSpec {
            resolution: Resolution::Coarse,
            ..spec(Quantity::Temperature)
        }
        .build(&ctx(&g))
        .unwrap();
        assert_eq!(fine.candidates(), coarse.candidates());
        let all: Vec<usize> = (0..fine.candidates().len()).collect();
        let apply = |b: &OrographicBuilder| {
            let op = b.at_candidates(&all, "t");
            to_vec(op.apply(tensor_from_rows(&x, 1, x.len(), &cpu_f64()), 0.0))
        };
        let (tf, tc) = (apply(&fine), apply(&coarse));
        let c = &fine.chain;
        let nx = c.grid[0].len;
        let height = |k: usize| c.terrain[(k / nx) * c.padded_nx + k % nx];
        let diff: Vec<f64> = tf.iter().zip(&tc).map(|(a, b)| a - b).collect();
        let rms = |keep: &dyn Fn(usize) -> bool| {
            let d: Vec<f64> = (0..diff.len())
                .filter(|&k| keep(k))
                .map(|k| diff[k])
                .collect();
            (
                (d.iter().map(|d| d * d).sum::<f64>() / d.len() as f64).sqrt(),
                d.iter().sum::<f64>() / d.len() as f64,
            )
        };
        // In the mountains the ridges (12-48 km across) fall between the
        // 16 km coarse points: the coarse terrain misses their relief.
        let (mountains, _) = rms(&|k| height(k) > 500.0);
        let (plains, _) = rms(&|k| height(k) == 0.0);
        let (_, mean) = rms(&|_| true);
        // 0.69 K measured (the ridges' std is about 100 m there).
        assert!(
            mountains > 0.5,
            "rms difference {mountains} K in the mountains"
        );
        // Where the terrain is flat both see nearly the same temperature
        // (a coarse cell next to a slope takes in some of it: 0.035 K
        // measured).
        assert!(plains < 0.1, "{plains} K on the plains");
        // The cell means keep the mean height: the large scales agree
        // (1e-16 K measured).
        assert!(mean.abs() < 0.01, "mean difference {mean} K");
    }

    #[test]
    fn a_state_of_rest_gives_the_uniform_wind_precipitation() {
        let g = geometry(33);
        let b = spec(Quantity::Precipitation).build(&ctx(&g)).unwrap();
        let c = &b.chain;
        let x = vec![0.0; 33 * 33];
        let all: Vec<usize> = (0..b.candidates().len()).collect();
        let op = b.at_candidates(&all, "p");
        let p = to_vec(op.apply(tensor_from_rows(&x, 1, x.len(), &cpu_f64()), 0.0));
        let model = OrographicModel::new(
            &c.terrain,
            c.terrain.len() / c.padded_nx,
            c.padded_nx,
            c.grid[0].step * 512e3,
            c.grid[1].step * 512e3,
            *c.blocked.model().params(),
        )
        .unwrap();
        let want = model.precipitation_mm_per_hour(10.0, 0.0).unwrap();
        let nx = c.grid[0].len;
        let mut wet = 0;
        for (k, v) in p.iter().enumerate() {
            let w = want[(k / nx) * c.padded_nx + k % nx];
            assert!((v - w).abs() < 1e-9 * (1.0 + w), "{k}: {v} vs {w}");
            wet += usize::from(*v > 0.0);
        }
        // Rain on the windward slopes, dry lees.
        assert!(
            wet > p.len() / 20 && wet < p.len() * 9 / 10,
            "{wet} wet of {}",
            p.len()
        );
        let max = p.iter().copied().fold(0.0, f64::max);
        assert!(max > 0.5 && max < 50.0, "peak rate {max} mm/h");
    }

    #[test]
    fn precipitation_adjoint_matches_finite_differences_and_autodiff() {
        let g = geometry(33);
        let n = 33 * 33;
        let b = spec(Quantity::Precipitation).build(&ctx(&g)).unwrap();
        let (map, _) = b.at_points(&sites(), "p").unwrap();
        assert!(map.linear().is_none(), "precipitation is nonlinear");
        let x = psi(33, 3);
        let mut rng = stream(4, "direction");
        let d: Vec<f64> = standard_normal(&mut rng, n);
        let w: Vec<f64> = standard_normal(&mut rng, sites().len());
        // J^T w through burn autodiff (the HostObs node's backward).
        let device = cpu_f64_autodiff();
        let xt = tensor_from_rows(&x, 1, n, &device).require_grad();
        let y = map.apply(xt.clone(), 0.0);
        let loss = (y * tensor_from_rows(&w, 1, w.len(), &device)).sum();
        let jtw = to_vec(xt.grad(&loss.backward()).unwrap());
        // J d by central differences of the forward map.
        let p = |x: &[f64]| to_vec(map.apply(tensor_from_rows(x, 1, n, &cpu_f64()), 0.0));
        let y0 = p(&x);
        assert!(y0.iter().any(|v| *v > 0.0), "some sites are wet: {y0:?}");
        let eps = 1e-5;
        let shifted = |s: f64| -> Vec<f64> { x.iter().zip(&d).map(|(a, b)| a + s * b).collect() };
        let (yp, ym) = (p(&shifted(eps)), p(&shifted(-eps)));
        let jd: Vec<f64> = yp
            .iter()
            .zip(&ym)
            .map(|(a, b)| (a - b) / (2.0 * eps))
            .collect();
        let lhs: f64 = jd.iter().zip(&w).map(|(a, b)| a * b).sum();
        let rhs: f64 = jtw.iter().zip(&d).map(|(a, b)| a * b).sum();
        assert!(
            (lhs - rhs).abs() < 1e-6 * lhs.abs().max(1e-3),
            "<J d, w> = {lhs}, <d, J^T w> = {rhs}"
        );
        assert!(rhs.abs() > 1e-4, "the wind moves the rain: {rhs}");
    }

    #[test]
    fn temperature_adjoint_passes_the_dot_product_test() {
        let g = geometry(33);
        let n = 33 * 33;
        let b = spec(Quantity::Temperature).build(&ctx(&g)).unwrap();
        let op = b.operator(&sites(), "t").unwrap();
        let mut rng = stream(5, "dot");
        let d: Vec<f64> = standard_normal(&mut rng, n);
        let w: Vec<f64> = standard_normal(&mut rng, sites().len());
        let device = cpu_f64_autodiff();
        let xt = tensor_from_rows(&d, 1, n, &device).require_grad();
        let zero = to_vec(op.apply(tensor_from_rows(&vec![0.0; n], 1, n, &cpu_f64()), 0.0));
        let y = op.apply(xt.clone(), 0.0);
        let loss = (y * tensor_from_rows(&w, 1, w.len(), &device)).sum();
        let jtw = to_vec(xt.grad(&loss.backward()).unwrap());
        let yd = to_vec(op.apply(tensor_from_rows(&d, 1, n, &cpu_f64()), 0.0));
        let lhs: f64 = yd
            .iter()
            .zip(&zero)
            .zip(&w)
            .map(|((a, z), b)| (a - z) * b)
            .sum();
        let rhs: f64 = jtw.iter().zip(&d).map(|(a, b)| a * b).sum();
        assert!(
            (lhs - rhs).abs() < 1e-12 * lhs.abs().max(1.0),
            "{lhs} vs {rhs}"
        );
    }

    #[test]
    fn bad_keys_and_sites_are_refused_by_name() {
        let bad = [
            (
                OrographicSpec {
                    refinement: 0,
                    ..spec(Quantity::Temperature)
                },
                "refinement",
            ),
            (
                OrographicSpec {
                    blocks: 0,
                    ..spec(Quantity::Temperature)
                },
                "blocks",
            ),
            (
                OrographicSpec {
                    lapse_rate: 0.01,
                    ..spec(Quantity::Temperature)
                },
                "lapse_rate",
            ),
            (
                OrographicSpec {
                    domain_length: -1.0,
                    ..spec(Quantity::Temperature)
                },
                "domain_length",
            ),
            (
                OrographicSpec {
                    background_wind: [f64::NAN, 0.0],
                    ..spec(Quantity::Temperature)
                },
                "background_wind",
            ),
        ];
        for (s, key) in bad {
            assert_eq!(s.check().unwrap_err().0, key);
        }
        let g = geometry(33);
        let b = spec(Quantity::Temperature).build(&ctx(&g)).unwrap();
        let err = b.at_points(&[[0.5, 0.5], [1.2, 0.5]], "t").err().unwrap();
        assert_eq!(err.0, "network");
        assert!(
            err.1.contains("point 1") && err.1.contains("outside"),
            "{}",
            err.1
        );
        // A 1-D model has no terrain to refine.
        let chain = Geometry::chain(40, true, "x");
        let err = spec(Quantity::Temperature)
            .build(&ctx(&chain))
            .err()
            .unwrap();
        assert_eq!(err.0, "fields");
        let t: toml::Table = toml::from_str("quantity = \"snow\"").unwrap();
        assert!(crate::obs::spec::parse_config::<OrographicSpec>(t).is_err());
    }
}
