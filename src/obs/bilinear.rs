//! `operator = { kind = "bilinear" }`: interpolates the set's fields to
//! arbitrary points (stations, buoys, a fine grid's points), bilinearly on
//! a 2-D grid and linearly on a 1-D chain, in the geometry's coordinates.
//!
//! A point is placed in the cell of its field's axes that holds it (axes
//! ascending; a periodic axis wraps, interpolating across the seam between
//! its last and first points). Points outside a non-periodic axis, or with
//! a masked point among the corners that weigh in, are refused at build,
//! naming the point. On a choosing network (identity, random, ...) the
//! candidates are the grid points themselves and the operator is the
//! selection.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::select::GridSites;
use super::sparse::SparseRows;
use super::spec::{
    BuildContext, Candidate, KeyError, OperatorBuilder, OperatorSpec, SpecDoc, SpecKey, key_error,
};
use crate::core::{Coordinates, Geometry, Location, ObsOperator};

/// The `bilinear` operator.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BilinearSpec {}

impl SpecDoc for BilinearSpec {
    const DOC: &'static str = "interpolates the set's fields (all fields if it names none) to arbitrary points: bilinear on 2-D grids, linear on 1-D chains, wrapping periodic axes; a point outside the domain or next to a masked point is refused. With a choosing network the candidates are the grid points (a selection)";
    const KEYS: &'static [SpecKey] = &[];
}

struct BilinearBuilder {
    geometry: Geometry,
    fields: Vec<usize>,
    grid: GridSites,
}

impl OperatorSpec for BilinearSpec {
    fn init(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn OperatorBuilder>, KeyError> {
        let g = ctx.geometry;
        for &k in &ctx.fields {
            let f = &g.fields[k];
            let Coordinates::Axes { x, y } = &f.coordinates else {
                return Err(key_error(
                    "operator.kind",
                    format!(
                        "\"bilinear\" interpolates on rectilinear grids, and field `{}` has scattered points",
                        f.name
                    ),
                ));
            };
            for (axis, values) in [("x", x), ("y", y)] {
                if values.windows(2).any(|w| !(w[1] > w[0])) {
                    return Err(key_error(
                        "operator.kind",
                        format!(
                            "\"bilinear\" needs ascending axes, and the {axis} axis of field `{}` is not",
                            f.name
                        ),
                    ));
                }
            }
        }
        Ok(Box::new(BilinearBuilder {
            geometry: g.clone(),
            fields: ctx.fields.clone(),
            grid: GridSites::new(ctx),
        }))
    }
}

/// The two neighbours of `v` on an ascending `axis` and the weight of the
/// upper one, wrapping with `period`; `None` outside a non-periodic axis.
pub fn bracket(axis: &[f64], period: Option<f64>, v: f64) -> Option<(usize, usize, f64)> {
    let n = axis.len();
    if n == 1 {
        return (period.is_some() || (v - axis[0]).abs() <= 1e-9 * axis[0].abs().max(1.0))
            .then_some((0, 0, 0.0));
    }
    let (first, last) = (axis[0], axis[n - 1]);
    let v = match period {
        Some(p) => first + (v - first).rem_euclid(p),
        None => {
            let tol = 1e-9 * (last - first);
            if v < first - tol || v > last + tol {
                return None;
            }
            v.clamp(first, last)
        }
    };
    if v >= last {
        return match period {
            // Between the last point and the first one a period on.
            Some(p) => {
                let gap = first + p - last;
                Some((n - 1, 0, if gap > 0.0 { (v - last) / gap } else { 0.0 }))
            }
            None => Some((n - 2, n - 1, 1.0)),
        };
    }
    let hi = axis.partition_point(|&a| a <= v).clamp(1, n - 1);
    let lo = hi - 1;
    Some((lo, hi, (v - axis[lo]) / (axis[hi] - axis[lo])))
}

impl BilinearBuilder {
    /// The row of field `k` at `point`: (state index, weight) pairs.
    fn row(&self, k: usize, point: Location) -> Result<Vec<(usize, f64)>, String> {
        let g = &self.geometry;
        let f = &g.fields[k];
        let Coordinates::Axes { x, y } = &f.coordinates else {
            return Err(format!("field `{}` is not on a grid", f.name));
        };
        let outside = |axis: &str, v: f64, a: &[f64]| {
            format!(
                "lies outside field `{}` ({axis} = {v} is not within [{}, {}])",
                f.name,
                a[0],
                a[a.len() - 1]
            )
        };
        let (x0, x1, wx) =
            bracket(x, g.period[0], point[0]).ok_or_else(|| outside("x", point[0], x))?;
        let offset = g.offset(k);
        let mut row: Vec<(usize, f64)> = Vec::with_capacity(4);
        if y.is_empty() {
            row.push((x0, 1.0 - wx));
            row.push((x1, wx));
        } else {
            let (y0, y1, wy) =
                bracket(y, g.period[1], point[1]).ok_or_else(|| outside("y", point[1], y))?;
            let nx = x.len();
            for (j, wj) in [(y0, 1.0 - wy), (y1, wy)] {
                for (i, wi) in [(x0, 1.0 - wx), (x1, wx)] {
                    row.push((j * nx + i, wj * wi));
                }
            }
        }
        // Merge repeated corners (one-point axes), drop zero weights.
        let mut merged: Vec<(usize, f64)> = Vec::with_capacity(4);
        for (j, w) in row {
            match merged.iter_mut().find(|(i, _)| *i == j) {
                Some(entry) => entry.1 += w,
                None => merged.push((j, w)),
            }
        }
        merged.retain(|&(_, w)| w != 0.0);
        if merged.is_empty() {
            merged.push((0, 0.0));
        }
        if let Some(&(j, _)) = merged.iter().find(|&&(j, w)| w > 0.0 && !f.is_active(j)) {
            return Err(format!(
                "falls next to a masked point of field `{}` (point {j}, at {:?}): it observes land",
                f.name,
                f.location(j)
            ));
        }
        Ok(merged.into_iter().map(|(j, w)| (offset + j, w)).collect())
    }
}

impl OperatorBuilder for BilinearBuilder {
    fn candidates(&self) -> &[Candidate] {
        self.grid.candidates()
    }

    fn at_candidates(&self, chosen: &[usize], name: &str) -> Arc<dyn ObsOperator> {
        self.grid.select(chosen, name)
    }

    fn at_points(
        &self,
        points: &[Location],
        name: &str,
    ) -> Result<(Arc<dyn ObsOperator>, Vec<usize>), KeyError> {
        let mut rows = Vec::with_capacity(points.len() * self.fields.len());
        let mut locations = Vec::with_capacity(rows.capacity());
        let mut fields = Vec::with_capacity(rows.capacity());
        for &k in &self.fields {
            for (p, &point) in points.iter().enumerate() {
                let row = self
                    .row(k, point)
                    .map_err(|why| key_error("network", format!("point {p} at {point:?} {why}")))?;
                rows.push(row);
                locations.push(point);
                fields.push(k);
            }
        }
        Ok((Arc::new(SparseRows::new(rows, locations, name)), fields))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{CoordinateUnits, Field};

    fn ctx(g: &Geometry) -> BuildContext<'_> {
        BuildContext {
            geometry: g,
            device: Box::leak(Box::new(crate::device::cpu_f64())),
            seed: 1,
            stream_prefix: String::new(),
            base: std::path::Path::new("."),
            fields: (0..g.fields.len()).collect(),
            named_fields: false,
        }
    }

    #[test]
    fn a_linear_field_is_interpolated_exactly() {
        // f(x, y) = 2 + 3x - y on a 4 x 5 grid: bilinear interpolation is
        // exact for it.
        let xs = vec![0.0, 1.0, 2.0, 3.0, 4.0];
        let ys = vec![0.0, 0.5, 1.0, 1.5];
        let g = Geometry::new(
            vec![Field::grid("t", "t", "K", xs.clone(), ys.clone())],
            [None, None],
            CoordinateUnits::Metres,
        );
        let state: Vec<f64> = ys
            .iter()
            .flat_map(|&y| xs.iter().map(move |&x| 2.0 + 3.0 * x - y))
            .collect();
        let b = BilinearSpec {}.init(&ctx(&g)).unwrap();
        let points = [[0.3, 0.2], [3.9, 1.5], [0.0, 0.0], [2.5, 0.75]];
        let (op, fields) = b.at_points(&points, "stations").unwrap();
        assert_eq!(fields, vec![0; 4]);
        let e = nalgebra::DMatrix::from_column_slice(20, 1, &state);
        let hx = op.linear().unwrap().apply_host(&e);
        for (j, p) in points.iter().enumerate() {
            assert!((hx[j] - (2.0 + 3.0 * p[0] - p[1])).abs() < 1e-12, "{p:?}");
        }
        // Outside, and next to land.
        let err = b.at_points(&[[4.5, 0.0]], "s").err().unwrap();
        assert!(
            err.1.contains("outside") && err.1.contains("x = 4.5"),
            "{err:?}"
        );
        let mut masked = g.clone();
        masked.fields[0].mask = Some((0..20).map(|i| i != 6).collect());
        let b = BilinearSpec {}.init(&ctx(&masked)).unwrap();
        let err = b.at_points(&[[1.2, 0.6]], "s").err().unwrap();
        assert!(err.1.contains("masked"), "{err:?}");
        assert!(b.at_points(&[[3.2, 1.2]], "s").is_ok());
    }

    #[test]
    fn periodic_axes_wrap_across_the_seam() {
        let g = Geometry::chain(8, true, "x");
        let state: Vec<f64> = (0..8).map(f64::from).collect();
        let b = BilinearSpec {}.init(&ctx(&g)).unwrap();
        let (op, _) = b
            .at_points(&[[7.5, 0.0], [-0.25, 0.0], [2.5, 0.0]], "s")
            .unwrap();
        let hx = op
            .linear()
            .unwrap()
            .apply_host(&nalgebra::DMatrix::from_column_slice(8, 1, &state));
        assert!((hx[0] - 3.5).abs() < 1e-12); // halfway between 7 and 0
        assert!((hx[1] - 1.75).abs() < 1e-12); // 7.75: 0.75 of the way from 7 to 0
        assert!((hx[2] - 2.5).abs() < 1e-12);
        assert_eq!(bracket(&[0.0, 1.0, 2.0], None, 2.0), Some((1, 2, 1.0)));
        assert_eq!(bracket(&[0.0, 1.0, 2.0], None, 2.1), None);
    }
}
