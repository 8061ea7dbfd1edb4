//! The `ObsOperator` seam and the linear selection operators.
//!
//! An operator maps a batch of states `[members, n]` to observation space
//! `[members, p]` in burn ops, so variational methods differentiate through
//! it. Linear operators also give their matrix and a fast host path for the
//! ensemble filters.

use burn::tensor::{Int, Tensor, TensorData};
use nalgebra::DMatrix;

use crate::models::{Geometry, Location};

/// Maps model states to observation space.
pub trait ObsOperator: Send + Sync {
    /// # Shapes
    /// `[members, n] -> [members, p]`.
    fn apply(&self, state: Tensor<2>, time: f64) -> Tensor<2>;

    /// Number of observations `p`.
    fn size(&self) -> usize;

    /// Where each observation sits, for localisation.
    fn locations(&self) -> &[Location];

    /// A short name for output.
    fn name(&self) -> &str;

    /// The matrix `H` (`p x n`) of a linear operator; `None` for nonlinear ones.
    fn as_matrix(&self) -> Option<DMatrix<f64>> {
        None
    }

    /// Applies the operator on the host to an `n x members` ensemble, giving
    /// `p x members`, where the operator has a host path (linear selections
    /// do); `None` sends the caller to [`apply`](ObsOperator::apply).
    fn apply_host(&self, _ensemble: &DMatrix<f64>, _time: f64) -> Option<DMatrix<f64>> {
        None
    }

    /// For a selection operator, the state index each observation reads.
    fn selected_indices(&self) -> Option<&[usize]> {
        None
    }
}

/// Observes a subset of the state variables directly: identity, a list of
/// indices, or every `stride`-th variable.
#[derive(Clone, Debug)]
pub struct Selection {
    indices: Vec<usize>,
    index_data: Vec<i64>,
    locations: Vec<Location>,
    n: usize,
    name: String,
}

impl Selection {
    /// Observes `indices` of a state of size `geometry.size()`.
    ///
    /// # Errors
    /// An index out of range, as `(index, n)`.
    pub fn new(
        indices: Vec<usize>,
        geometry: &Geometry,
        name: &str,
    ) -> Result<Self, (usize, usize)> {
        let n = geometry.size();
        if let Some(&bad) = indices.iter().find(|&&i| i >= n) {
            return Err((bad, n));
        }
        Ok(Self {
            index_data: indices.iter().map(|&i| i as i64).collect(),
            locations: indices.iter().map(|&i| geometry.coordinates[i]).collect(),
            indices,
            n,
            name: name.to_string(),
        })
    }

    /// Every variable.
    pub fn identity(geometry: &Geometry) -> Self {
        Self::new((0..geometry.size()).collect(), geometry, "identity").expect("indices in range")
    }

    /// Every `stride`-th variable, starting at 0.
    pub fn every(stride: usize, geometry: &Geometry) -> Self {
        Self::new(
            (0..geometry.size()).step_by(stride.max(1)).collect(),
            geometry,
            "every",
        )
        .expect("indices in range")
    }

    /// The observed state indices.
    pub fn indices(&self) -> &[usize] {
        &self.indices
    }
}

impl ObsOperator for Selection {
    fn apply(&self, state: Tensor<2>, _time: f64) -> Tensor<2> {
        if self.indices.len() == self.n && self.indices.iter().enumerate().all(|(k, &i)| k == i) {
            return state;
        }
        let device = state.device();
        let idx = Tensor::<1, Int>::from_data(
            TensorData::new(self.index_data.clone(), [self.indices.len()]),
            &device,
        );
        state.select(1, idx)
    }

    fn size(&self) -> usize {
        self.indices.len()
    }

    fn locations(&self) -> &[Location] {
        &self.locations
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn as_matrix(&self) -> Option<DMatrix<f64>> {
        let mut h = DMatrix::zeros(self.indices.len(), self.n);
        for (row, &i) in self.indices.iter().enumerate() {
            h[(row, i)] = 1.0;
        }
        Some(h)
    }

    fn apply_host(&self, ensemble: &DMatrix<f64>, _time: f64) -> Option<DMatrix<f64>> {
        Some(ensemble.select_rows(self.indices.iter()))
    }

    fn selected_indices(&self) -> Option<&[usize]> {
        Some(&self.indices)
    }
}

/// Applies an operator to an `n x members` host ensemble, on the host where
/// the operator allows, otherwise through the device.
pub fn apply_to_ensemble(
    op: &dyn ObsOperator,
    ensemble: &DMatrix<f64>,
    time: f64,
    device: &burn::tensor::Device,
) -> DMatrix<f64> {
    op.apply_host(ensemble, time).unwrap_or_else(|| {
        let t = crate::device::ensemble_to_tensor(ensemble, device);
        crate::device::tensor_to_ensemble(op.apply(t, time))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{cpu_f64, ensemble_to_tensor, tensor_to_ensemble};

    #[test]
    fn device_host_and_matrix_paths_agree() {
        let g = Geometry::chain(10, true, "x");
        let ops = [
            Selection::identity(&g),
            Selection::every(3, &g),
            Selection::new(vec![7, 2, 2, 9], &g, "partial").unwrap(),
        ];
        let e = DMatrix::from_fn(10, 4, |i, j| (i * 4 + j) as f64 * 0.1);
        let device = cpu_f64();
        for op in &ops {
            let host = op.apply_host(&e, 0.0).unwrap();
            let dev = tensor_to_ensemble(op.apply(ensemble_to_tensor(&e, &device), 0.0));
            let mat = op.as_matrix().unwrap() * &e;
            assert_eq!(host, dev, "{}", op.name());
            assert_eq!(host, mat, "{}", op.name());
        }
    }

    #[test]
    fn out_of_range_index_is_refused() {
        let g = Geometry::chain(5, true, "x");
        assert_eq!(
            Selection::new(vec![1, 5], &g, "partial").unwrap_err(),
            (5, 5)
        );
    }
}
