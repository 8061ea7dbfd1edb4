//! A linear operator whose rows each read a few state variables with
//! weights (interpolation, block averages): `y_j = sum_k w_jk x_{i_jk}`.
//!
//! The tensor path gathers the `K` variables of every row at once (rows
//! padded to the longest with zero weights), so one `select`, one product
//! and one sum serve a whole batch of members, and autodiff gives the
//! adjoint; the host path is the same sums on an ensemble matrix.

use burn::tensor::{Int, Tensor, TensorData};
use nalgebra::DMatrix;

use crate::core::{LinearObs, Location, ObsOperator};

/// Rows of (state index, weight) pairs.
#[derive(Clone, Debug)]
pub struct SparseRows {
    rows: Vec<Vec<(usize, f64)>>,
    width: usize,
    index_data: Vec<i64>,
    weight_data: Vec<f64>,
    locations: Vec<Location>,
    name: String,
}

impl SparseRows {
    /// An operator of `rows`, the observation `j` sitting at
    /// `locations[j]`.
    ///
    /// # Panics
    /// If `rows` and `locations` differ in length, or a row is empty (a
    /// construction bug of the operator that builds it).
    pub fn new(rows: Vec<Vec<(usize, f64)>>, locations: Vec<Location>, name: &str) -> Self {
        assert_eq!(rows.len(), locations.len(), "one location per row");
        assert!(rows.iter().all(|r| !r.is_empty()), "rows read something");
        let width = rows.iter().map(Vec::len).max().unwrap_or(1);
        let mut index_data = Vec::with_capacity(rows.len() * width);
        let mut weight_data = Vec::with_capacity(rows.len() * width);
        for row in &rows {
            for k in 0..width {
                // Padding repeats the row's first variable with weight 0.
                let (i, w) = row.get(k).copied().unwrap_or((row[0].0, 0.0));
                index_data.push(i as i64);
                weight_data.push(w);
            }
        }
        Self {
            rows,
            width,
            index_data,
            weight_data,
            locations,
            name: name.to_string(),
        }
    }

    /// The rows.
    pub fn rows(&self) -> &[Vec<(usize, f64)>] {
        &self.rows
    }
}

impl ObsOperator for SparseRows {
    fn apply(&self, state: Tensor<2>, _time: f64) -> Tensor<2> {
        let device = state.device();
        let [members, _] = state.dims();
        let p = self.rows.len();
        let idx = Tensor::<1, Int>::from_data(
            TensorData::new(self.index_data.clone(), [p * self.width]),
            &device,
        );
        let weights = Tensor::<1>::from_data(
            TensorData::new(self.weight_data.clone(), [p * self.width]),
            &device,
        )
        .reshape([1, p * self.width]);
        (state.select(1, idx) * weights)
            .reshape([members, p, self.width])
            .sum_dim(2)
            .reshape([members, p])
    }

    fn size(&self) -> usize {
        self.rows.len()
    }

    fn locations(&self) -> &[Location] {
        &self.locations
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn linear(&self) -> Option<&dyn LinearObs> {
        Some(self)
    }
}

impl LinearObs for SparseRows {
    fn apply_host(&self, ensemble: &DMatrix<f64>) -> DMatrix<f64> {
        let members = ensemble.ncols();
        DMatrix::from_fn(self.rows.len(), members, |j, m| {
            self.rows[j]
                .iter()
                .map(|&(i, w)| w * ensemble[(i, m)])
                .sum()
        })
    }

    fn adjoint_host(&self, r: &[f64], out: &mut [f64]) {
        for (row, v) in self.rows.iter().zip(r) {
            for &(i, w) in row {
                out[i] += w * v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{cpu_f64, ensemble_to_tensor, tensor_to_ensemble};

    #[test]
    fn tensor_host_and_adjoint_paths_agree() {
        let op = SparseRows::new(
            vec![
                vec![(0, 0.25), (1, 0.75)],
                vec![(4, 1.0)],
                vec![(2, 0.1), (3, 0.2), (5, 0.3), (6, 0.4)],
            ],
            vec![[0.0, 0.0]; 3],
            "sparse",
        );
        let e = DMatrix::from_fn(7, 3, |i, j| ((i * 3 + j) as f64 * 0.7).sin());
        let host = op.apply_host(&e);
        let dev = tensor_to_ensemble(op.apply(ensemble_to_tensor(&e, &cpu_f64()), 0.0));
        assert!((&host - &dev).abs().max() < 1e-14);
        assert!((host[(0, 1)] - (0.25 * e[(0, 1)] + 0.75 * e[(1, 1)])).abs() < 1e-15);
        // <H x, r> = <x, H^T r>.
        let x = e.column(0).into_owned();
        let r = [0.3, -1.2, 2.0];
        let hx = op.apply_host(&DMatrix::from_column_slice(7, 1, x.as_slice()));
        let mut htr = vec![0.0; 7];
        op.adjoint_host(&r, &mut htr);
        let lhs: f64 = hx.iter().zip(&r).map(|(a, b)| a * b).sum();
        let rhs: f64 = x.iter().zip(&htr).map(|(a, b)| a * b).sum();
        assert!((lhs - rhs).abs() < 1e-13, "{lhs} vs {rhs}");
    }
}
