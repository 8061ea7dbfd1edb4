//! `operator = { kind = "block_average", factor = k }`: observes the means
//! of `k x k` blocks of grid points (`k` points on a 1-D chain): a coarse
//! sensor footprint, or a coarse model's view of a fine field.
//!
//! Masked points are left out of a block's mean; a block without an
//! active point is not observable. The observation sits at the mean
//! location of the block's active points.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::sparse::SparseRows;
use super::spec::{
    BuildContext, Candidate, KeyError, OperatorBuilder, OperatorSpec, SpecDoc, SpecKey, key_error,
};
use crate::core::{Coordinates, Location, ObsOperator};

/// The `block_average` operator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockAverageSpec {
    /// Points per block along each axis.
    pub factor: usize,
}

impl SpecDoc for BlockAverageSpec {
    const DOC: &'static str = "observes the means of factor x factor blocks of grid points (factor points on a 1-D chain) of the set's fields, masked points left out; networks choose among the blocks";
    const KEYS: &'static [SpecKey] = &[SpecKey {
        key: "factor",
        kind: "integer ≥ 1 dividing every axis of the observed fields",
        doc: "points per block along each axis",
        required: Some("2"),
    }];
}

struct BlockBuilder {
    rows: Vec<Vec<(usize, f64)>>,
    candidates: Vec<Candidate>,
}

impl OperatorSpec for BlockAverageSpec {
    fn check(&self) -> Result<(), KeyError> {
        if self.factor == 0 {
            return Err(key_error("factor", "must be at least 1"));
        }
        Ok(())
    }

    fn init(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn OperatorBuilder>, KeyError> {
        let g = ctx.geometry;
        let k = self.factor;
        let mut rows = Vec::new();
        let mut candidates = Vec::new();
        for &fi in &ctx.fields {
            let f = &g.fields[fi];
            if !matches!(f.coordinates, Coordinates::Axes { .. }) {
                return Err(key_error(
                    "operator.kind",
                    format!(
                        "\"block_average\" needs a gridded field, and `{}` has scattered points",
                        f.name
                    ),
                ));
            }
            let (ny, nx) = match f.shape.as_slice() {
                [nx] => (1, *nx),
                [ny, nx] => (*ny, *nx),
                _ => return Err(key_error("operator", "fields have one or two axes")),
            };
            let ky = if f.shape.len() == 2 { k } else { 1 };
            if nx % k != 0 || ny % ky != 0 {
                return Err(key_error(
                    "operator.factor",
                    format!(
                        "{k} does not divide the shape {:?} of field `{}`",
                        f.shape, f.name
                    ),
                ));
            }
            let offset = g.offset(fi);
            for by in 0..ny / ky {
                for bx in 0..nx / k {
                    let cells: Vec<usize> = (0..ky)
                        .flat_map(|dy| (0..k).map(move |dx| (by * ky + dy) * nx + bx * k + dx))
                        .filter(|&j| f.is_active(j))
                        .collect();
                    if cells.is_empty() {
                        continue;
                    }
                    let w = 1.0 / cells.len() as f64;
                    let mut location: Location = [0.0, 0.0];
                    for &j in &cells {
                        let l = f.location(j);
                        location[0] += w * l[0];
                        location[1] += w * l[1];
                    }
                    rows.push(cells.iter().map(|&j| (offset + j, w)).collect());
                    candidates.push(Candidate {
                        field: fi,
                        location,
                    });
                }
            }
        }
        Ok(Box::new(BlockBuilder { rows, candidates }))
    }
}

impl OperatorBuilder for BlockBuilder {
    fn candidates(&self) -> &[Candidate] {
        &self.candidates
    }

    fn at_candidates(&self, chosen: &[usize], name: &str) -> Arc<dyn ObsOperator> {
        let rows = chosen.iter().map(|&c| self.rows[c].clone()).collect();
        let locations = chosen
            .iter()
            .map(|&c| self.candidates[c].location)
            .collect();
        Arc::new(SparseRows::new(rows, locations, name))
    }

    fn at_points(
        &self,
        _points: &[Location],
        _name: &str,
    ) -> Result<(Arc<dyn ObsOperator>, Vec<usize>), KeyError> {
        Err(key_error(
            "operator.kind",
            "\"block_average\" observes its blocks, and this network gives arbitrary points: choose blocks with network identity, every, indices, random, tracks or swath",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{CoordinateUnits, Field, Geometry};

    #[test]
    fn blocks_average_their_active_points() {
        let mut f = Field::grid("h", "h", "m", vec![0.0, 1.0, 2.0, 3.0], vec![0.0, 1.0]);
        f.mask = Some(vec![true, true, true, false, true, true, true, true]);
        let g = Geometry::new(vec![f], [None, None], CoordinateUnits::Metres);
        let device = crate::device::cpu_f64();
        let ctx = BuildContext {
            geometry: &g,
            device: &device,
            seed: 1,
            stream_prefix: String::new(),
            base: std::path::Path::new("."),
            fields: vec![0],
            named_fields: true,
        };
        let b = BlockAverageSpec { factor: 2 }.init(&ctx).unwrap();
        assert_eq!(b.candidates().len(), 2);
        assert_eq!(b.candidates()[0].location, [0.5, 0.5]);
        // The second block has three active points: (2,0), (2,1), (3,1).
        let l = b.candidates()[1].location;
        assert!((l[0] - 7.0 / 3.0).abs() < 1e-12 && (l[1] - 2.0 / 3.0).abs() < 1e-12);
        let op = b.at_candidates(&[0, 1], "coarse");
        let x: Vec<f64> = (0..8).map(f64::from).collect();
        let hx = op
            .linear()
            .unwrap()
            .apply_host(&nalgebra::DMatrix::from_column_slice(8, 1, &x));
        assert!((hx[0] - (0.0 + 1.0 + 4.0 + 5.0) / 4.0).abs() < 1e-12);
        assert!((hx[1] - (2.0 + 6.0 + 7.0) / 3.0).abs() < 1e-12);
        let err = BlockAverageSpec { factor: 3 }.init(&ctx).err().unwrap();
        assert_eq!(err.0, "operator.factor");
    }
}
