//! Distance-based tapering for localised filters.
//!
//! The radius convention is DAPPER's: whatever the taper, its value at a
//! distance equal to the radius is `exp(-1/2)`, so radii are comparable
//! across taper shapes. For Gaspari-Cohn this puts the half-support at
//! `1.82 x radius` (zero beyond twice that).

use serde::{Deserialize, Serialize};

use crate::core::{Geometry, Location};

/// Taper shapes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Taper {
    /// Gaspari & Cohn (1999) eq. 4.10, compactly supported fifth-order piecewise rational.
    #[default]
    GaspariCohn,
    /// Gaussian `exp(-d^2 / (2 r^2))`.
    Gauss,
    /// One within the radius, zero beyond.
    Step,
}

/// Coefficients below this are dropped from local analyses (DAPPER's cutoff).
pub const CUTOFF: f64 = 1e-3;

impl Taper {
    /// The taper coefficient at distance `d` for radius `radius`.
    pub fn coefficient(self, d: f64, radius: f64) -> f64 {
        match self {
            Taper::GaspariCohn => gaspari_cohn(d / (radius * 1.82)),
            Taper::Gauss => (-0.5 * (d / radius).powi(2)).exp(),
            Taper::Step => {
                if d <= radius {
                    1.0
                } else {
                    0.0
                }
            }
        }
    }
}

/// Gaspari-Cohn correlation function of `z = d / c`, `c` the half-support.
pub fn gaspari_cohn(z: f64) -> f64 {
    let z = z.abs();
    if z <= 1.0 {
        let (z2, z3) = (z * z, z * z * z);
        1.0 + z2 * (-z3 / 4.0 + z2 / 2.0) + z3 * (5.0 / 8.0) - z2 * (5.0 / 3.0)
    } else if z <= 2.0 {
        let (z2, z3) = (z * z, z * z * z);
        z2 * (z3 / 12.0 - z2 / 2.0) + z3 * (5.0 / 8.0) + z2 * (5.0 / 3.0) - 5.0 * z + 4.0
            - (2.0 / 3.0) / z
    } else {
        0.0
    }
}

impl Taper {
    /// The largest distance at which the coefficient can exceed
    /// [`CUTOFF`]: the Gaspari-Cohn support (`2 x 1.82 x radius`), where the
    /// Gaussian falls to the cutoff, or the step's radius.
    pub fn reach(self, radius: f64) -> f64 {
        let d = match self {
            Taper::GaspariCohn => 2.0 * 1.82 * radius,
            Taper::Gauss => radius * (2.0 * (1.0 / CUTOFF).ln()).sqrt(),
            Taper::Step => radius,
        };
        d * (1.0 + 1e-9)
    }
}

/// One axis of the bucket grid: cells at least `reach` wide, wrapped on a
/// periodic axis.
#[derive(Clone, Copy, Debug)]
struct Axis {
    origin: f64,
    width: f64,
    cells: usize,
    period: Option<f64>,
}

impl Axis {
    fn new(values: impl Iterator<Item = f64> + Clone, reach: f64, period: Option<f64>) -> Self {
        match period {
            Some(p) => {
                let cells = ((p / reach).floor() as usize).max(1);
                Axis {
                    origin: 0.0,
                    width: p / cells as f64,
                    cells,
                    period,
                }
            }
            None => {
                let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                    (lo.min(v), hi.max(v))
                });
                let span = if lo.is_finite() { hi - lo } else { 0.0 };
                let cells = (((span / reach).floor() as usize) + 1).min(1 << 20);
                Axis {
                    origin: if lo.is_finite() { lo } else { 0.0 },
                    width: (span / cells as f64).max(reach),
                    cells,
                    period: None,
                }
            }
        }
    }

    /// The cell of coordinate `x` (may lie outside `0..cells` for a
    /// non-periodic axis).
    fn cell(&self, x: f64) -> isize {
        match self.period {
            Some(p) => {
                ((x.rem_euclid(p) / self.width).floor() as isize).min(self.cells as isize - 1)
            }
            None => ((x - self.origin) / self.width).floor() as isize,
        }
    }

    /// The cells within one of `c`, existing and distinct.
    fn around(&self, c: isize) -> Vec<usize> {
        let n = self.cells as isize;
        let mut out: Vec<usize> = if self.period.is_some() {
            (c - 1..=c + 1).map(|k| k.rem_euclid(n) as usize).collect()
        } else {
            (c - 1..=c + 1)
                .filter(|k| (0..n).contains(k))
                .map(|k| k as usize)
                .collect()
        };
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// The observations of one network bucketed on a grid of cells at least
/// the taper's reach wide (wrapped on periodic axes), so that each state
/// point looks at the observations of its own and the eight neighbouring
/// cells only: a query costs O(local observations), not O(p), and the
/// index itself O(p) memory, so a localised filter never holds an
/// `n x local` table.
#[derive(Clone, Debug)]
pub struct LocalIndex {
    locations: Vec<Location>,
    radius: f64,
    taper: Taper,
    ax: Axis,
    ay: Axis,
    buckets: Vec<Vec<usize>>,
}

impl LocalIndex {
    /// The index of `obs_locations` for `radius` and `taper` on the axes
    /// (and periods) of `geometry`.
    pub fn new(geometry: &Geometry, obs_locations: &[Location], radius: f64, taper: Taper) -> Self {
        let reach = taper.reach(radius);
        let xs = obs_locations.iter().map(|o| o[0]);
        let ys = obs_locations.iter().map(|o| o[1]);
        let ax = Axis::new(xs, reach, geometry.period[0]);
        let ay = Axis::new(ys, reach, geometry.period[1]);
        let mut buckets: Vec<Vec<usize>> = vec![Vec::new(); ax.cells * ay.cells];
        for (j, o) in obs_locations.iter().enumerate() {
            // Observations of a non-periodic axis lie within its range.
            let cx = ax.cell(o[0]).clamp(0, ax.cells as isize - 1) as usize;
            let cy = ay.cell(o[1]).clamp(0, ay.cells as isize - 1) as usize;
            buckets[cy * ax.cells + cx].push(j);
        }
        Self {
            locations: obs_locations.to_vec(),
            radius,
            taper,
            ax,
            ay,
            buckets,
        }
    }

    /// Every point's local observations.
    pub fn table(&self, geometry: &Geometry) -> Vec<Vec<(usize, f64)>> {
        let (mut candidates, mut out) = (Vec::new(), Vec::new());
        geometry
            .locations()
            .map(|x| {
                self.query(geometry, x, &mut candidates, &mut out);
                out.clone()
            })
            .collect()
    }

    /// The observations within reach of `x` and their taper coefficients
    /// (above [`CUTOFF`]), in observation order (as a scan would give
    /// them, so the sums of a local analysis are the same to the last
    /// bit), written into `out`; `candidates` is scratch space.
    pub fn query(
        &self,
        geometry: &Geometry,
        x: Location,
        candidates: &mut Vec<usize>,
        out: &mut Vec<(usize, f64)>,
    ) {
        // The mean distance to one point is its distance, exactly.
        self.query_batch(geometry, std::slice::from_ref(&x), candidates, out);
    }

    /// The observations within reach of any of `points` and their taper
    /// coefficients at the mean distance to the points (DAPPER's batches),
    /// in observation order, written into `out`.
    pub fn query_batch(
        &self,
        geometry: &Geometry,
        points: &[Location],
        candidates: &mut Vec<usize>,
        out: &mut Vec<(usize, f64)>,
    ) {
        candidates.clear();
        out.clear();
        for x in points {
            for cy in self.ay.around(self.ay.cell(x[1])) {
                for cx in self.ax.around(self.ax.cell(x[0])) {
                    candidates.extend_from_slice(&self.buckets[cy * self.ax.cells + cx]);
                }
            }
        }
        candidates.sort_unstable();
        candidates.dedup();
        let count = points.len() as f64;
        out.extend(candidates.iter().filter_map(|&j| {
            let o = &self.locations[j];
            let d = points.iter().map(|x| geometry.distance(x, o)).sum::<f64>() / count;
            let c = self.taper.coefficient(d, self.radius);
            (c > CUTOFF).then_some((j, c))
        }));
    }
}

/// Blocks of `side` x `side` neighbouring grid points of each 2-D field
/// (`side` consecutive points of a 1-D field; the last block of a row or
/// column may be smaller), in flat state indices: the batches a localised
/// filter analyses with one transform (DAPPER's `rectangular_partitioning`).
pub fn batches(geometry: &Geometry, side: usize) -> Vec<Vec<usize>> {
    let side = side.max(1);
    let mut out = Vec::new();
    for (k, field) in geometry.fields.iter().enumerate() {
        let offset = geometry.offset(k);
        match field.shape.as_slice() {
            [ny, nx] => {
                for by in (0..*ny).step_by(side) {
                    for bx in (0..*nx).step_by(side) {
                        let mut batch = Vec::with_capacity(side * side);
                        for y in by..(by + side).min(*ny) {
                            for x in bx..(bx + side).min(*nx) {
                                batch.push(offset + y * nx + x);
                            }
                        }
                        out.push(batch);
                    }
                }
            }
            shape => {
                let len: usize = shape.iter().product();
                for start in (0..len).step_by(side) {
                    out.push((offset + start..offset + (start + side).min(len)).collect());
                }
            }
        }
    }
    out
}

/// The local observations of a network as a filter keeps them: a table
/// for every point when the state is small (queried once per network), the
/// index alone, queried point by point, when it is large (the table would
/// be `n x local` entries).
#[derive(Clone, Debug)]
pub enum LocalObservations {
    /// Every point's list.
    Table(Vec<Vec<(usize, f64)>>),
    /// Queried when needed.
    Index(LocalIndex),
}

/// States up to this size keep the table.
pub const TABLE_LIMIT: usize = 1 << 16;

impl LocalObservations {
    /// The local observations of `obs_locations` on `geometry`.
    pub fn new(geometry: &Geometry, obs_locations: &[Location], radius: f64, taper: Taper) -> Self {
        let index = LocalIndex::new(geometry, obs_locations, radius, taper);
        if geometry.size() <= TABLE_LIMIT {
            LocalObservations::Table(index.table(geometry))
        } else {
            LocalObservations::Index(index)
        }
    }

    /// The local observations of state variable `i`: a row of the table,
    /// or queried into `out` (`candidates` is scratch space).
    pub fn of<'s>(
        &'s self,
        geometry: &Geometry,
        i: usize,
        candidates: &mut Vec<usize>,
        out: &'s mut Vec<(usize, f64)>,
    ) -> &'s [(usize, f64)] {
        match self {
            LocalObservations::Table(t) => &t[i],
            LocalObservations::Index(index) => {
                index.query(geometry, geometry.location(i), candidates, out);
                out
            }
        }
    }
}

/// For each state variable, the observations within reach and their taper
/// coefficients (above [`CUTOFF`]), in observation order: every query of a
/// [`LocalIndex`] at once (an `n x local` table; filters query point by
/// point instead).
pub fn local_observations(
    geometry: &Geometry,
    obs_locations: &[Location],
    radius: f64,
    taper: Taper,
) -> Vec<Vec<(usize, f64)>> {
    LocalIndex::new(geometry, obs_locations, radius, taper).table(geometry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{CoordinateUnits, Field};

    /// The plain scan the bucketed search must reproduce.
    fn scan(
        geometry: &Geometry,
        obs: &[Location],
        radius: f64,
        taper: Taper,
    ) -> Vec<Vec<(usize, f64)>> {
        geometry
            .locations()
            .map(|x| {
                obs.iter()
                    .enumerate()
                    .filter_map(|(j, o)| {
                        let c = taper.coefficient(geometry.distance(&x, o), radius);
                        (c > CUTOFF).then_some((j, c))
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn bucketed_search_equals_the_scan() {
        let mut rng = crate::rng::stream(4, "obs");
        let uniform = |rng: &mut crate::rng::Rng, hi: f64| {
            use rand::Rng as _;
            rng.random::<f64>() * hi
        };
        let x: Vec<f64> = (0..37).map(|i| i as f64 * 0.5).collect();
        let y: Vec<f64> = (0..23).map(|j| j as f64 * 0.5).collect();
        for period in [[Some(18.5), Some(11.5)], [None, None], [Some(18.5), None]] {
            let g = Geometry::new(
                vec![Field::grid("c", "c", "1", x.clone(), y.clone())],
                period,
                CoordinateUnits::Model,
            );
            let obs: Vec<Location> = (0..150)
                .map(|_| [uniform(&mut rng, 18.5), uniform(&mut rng, 11.5)])
                .collect();
            for taper in [Taper::GaspariCohn, Taper::Gauss, Taper::Step] {
                for radius in [0.3, 1.0, 2.5, 20.0] {
                    assert_eq!(
                        local_observations(&g, &obs, radius, taper),
                        scan(&g, &obs, radius, taper),
                        "{period:?} {taper:?} r={radius}"
                    );
                }
            }
        }
        // A periodic chain (Lorenz-96) with observations at grid points.
        let g = Geometry::chain(40, true, "x");
        let obs: Vec<Location> = (0..40).step_by(2).map(|i| [i as f64, 0.0]).collect();
        for radius in [1.0, 4.0, 11.0] {
            assert_eq!(
                local_observations(&g, &obs, radius, Taper::GaspariCohn),
                scan(&g, &obs, radius, Taper::GaspariCohn)
            );
        }
    }

    #[test]
    fn gaspari_cohn_is_continuous_and_compact() {
        assert!((gaspari_cohn(0.0) - 1.0).abs() < 1e-15);
        for z in [1.0, 2.0] {
            let (a, b) = (gaspari_cohn(z - 1e-9), gaspari_cohn(z + 1e-9));
            assert!((a - b).abs() < 1e-7, "jump at {z}: {a} vs {b}");
        }
        assert_eq!(gaspari_cohn(2.0 + 1e-12), 0.0);
    }

    #[test]
    fn radius_convention_matches_dapper() {
        // Gauss: exactly exp(-1/2) at the radius. Gaspari-Cohn with DAPPER's
        // half-width 1.82 r: 0.6336 at the radius (DAPPER's docstring says
        // exp(-1/2) = 0.6065; its code, which we follow, gives 0.6336).
        assert!((Taper::Gauss.coefficient(4.0, 4.0) - (-0.5f64).exp()).abs() < 1e-15);
        let gc = Taper::GaspariCohn.coefficient(4.0, 4.0);
        assert!((gc - 0.6336).abs() < 5e-5, "{gc}");
        assert_eq!(
            Taper::GaspariCohn.coefficient(2.0 * 1.82 * 4.0 + 1e-9, 4.0),
            0.0
        );
    }

    #[test]
    fn lorenz96_radius_four_reaches_twelve_neighbours_each_side() {
        // GC half-support 7.28; the coefficient at distance 12 is 4.3e-3 and
        // at 13 it is 6.2e-4, below the cutoff.
        let g = Geometry::chain(40, true, "x");
        let locs: Vec<Location> = g.locations().collect();
        let local = local_observations(&g, &locs, 4.0, Taper::GaspariCohn);
        assert_eq!(local[0].len(), 25);
        let reached = |j: usize| local[0].iter().any(|&(k, _)| k == j);
        assert!(reached(12) && reached(28));
        assert!(!reached(13) && !reached(27));
    }
}
