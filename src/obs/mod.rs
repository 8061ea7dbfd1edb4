//! Observation operators and networks, as registered parts.
//!
//! An observation set (`[[observations]]`, [`set`]) is a *network* (where
//! and when: [`NETWORKS`]) and an *operator* (what `H` does there:
//! [`OPERATORS`]), each a config type read from a table with a `kind` key
//! and built on the model's geometry ([`spec`]). [`Selection`] observes
//! state variables directly; [`sparse::SparseRows`] reads a few with
//! weights (interpolation, block means).
//!
//! Adding an operator: its file here (a config type implementing
//! [`spec::OperatorSpec`] and [`spec::SpecDoc`]) and one line in
//! [`OPERATORS`].

pub mod bilinear;
pub mod block_average;
pub mod choose;
pub mod file;
pub mod host;
pub mod learned;
pub mod network;
pub mod orographic;
pub mod points;
pub mod select;
pub mod set;
pub mod sparse;
pub mod spec;

use spec::{NetworkSpec, OperatorSpec, SpecEntry, network, operator};

/// Every observation operator, one line each.
pub const OPERATORS: &[SpecEntry<dyn OperatorSpec>] = &[
    operator::<select::SelectSpec>("select"),
    operator::<bilinear::BilinearSpec>("bilinear"),
    operator::<block_average::BlockAverageSpec>("block_average"),
    operator::<orographic::OrographicSpec>("orographic"),
    operator::<learned::LearnedSpec>("learned"),
];

/// Every observation network, one line each.
pub const NETWORKS: &[SpecEntry<dyn NetworkSpec>] = &[
    network::<choose::IdentitySpec>("identity"),
    network::<choose::EverySpec>("every"),
    network::<choose::IndicesSpec>("indices"),
    network::<choose::RandomSpec>("random"),
    network::<choose::TracksSpec>("tracks"),
    network::<choose::SwathSpec>("swath"),
    network::<points::PointsSpec>("points"),
    network::<points::StationsSpec>("stations"),
    network::<file::FileSpec>("file"),
];

use burn::tensor::{Int, Tensor, TensorData};
use nalgebra::DMatrix;

use crate::core::{LinearObs, Location, ObsOperator};

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
    /// Observes `indices` of a state whose column locations are `locations`.
    ///
    /// # Errors
    /// An index out of range, as `(index, n)`.
    pub fn new(
        indices: Vec<usize>,
        locations: &[Location],
        name: &str,
    ) -> Result<Self, (usize, usize)> {
        let n = locations.len();
        if let Some(&bad) = indices.iter().find(|&&i| i >= n) {
            return Err((bad, n));
        }
        Ok(Self {
            index_data: indices.iter().map(|&i| i as i64).collect(),
            locations: indices.iter().map(|&i| locations[i]).collect(),
            indices,
            n,
            name: name.to_string(),
        })
    }

    /// A selection of indices known to be in range (candidates built from
    /// the geometry).
    pub(crate) fn in_range(indices: Vec<usize>, locations: &[Location], name: &str) -> Self {
        debug_assert!(indices.iter().all(|&i| i < locations.len()));
        Self {
            index_data: indices.iter().map(|&i| i as i64).collect(),
            locations: indices.iter().map(|&i| locations[i]).collect(),
            indices,
            n: locations.len(),
            name: name.to_string(),
        }
    }

    /// The observed state indices.
    pub fn indices(&self) -> &[usize] {
        &self.indices
    }

    /// Where each observation sits.
    pub fn locations_slice(&self) -> &[Location] {
        &self.locations
    }

    fn is_identity(&self) -> bool {
        self.indices.len() == self.n && self.indices.iter().enumerate().all(|(k, &i)| k == i)
    }
}

impl ObsOperator for Selection {
    fn apply(&self, state: Tensor<2>, _time: f64) -> Tensor<2> {
        if self.is_identity() {
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

    fn linear(&self) -> Option<&dyn LinearObs> {
        Some(self)
    }
}

impl LinearObs for Selection {
    fn apply_host(&self, ensemble: &DMatrix<f64>) -> DMatrix<f64> {
        if self.is_identity() {
            return ensemble.clone();
        }
        ensemble.select_rows(self.indices.iter())
    }

    fn adjoint_host(&self, r: &[f64], out: &mut [f64]) {
        for (&i, v) in self.indices.iter().zip(r) {
            out[i] += v;
        }
    }

    fn selected_indices(&self) -> Option<&[usize]> {
        Some(&self.indices)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Geometry;
    use crate::device::{cpu_f64, ensemble_to_tensor, tensor_to_ensemble};

    fn locs(n: usize) -> Vec<Location> {
        Geometry::chain(n, true, "x").locations().collect()
    }

    #[test]
    fn device_host_and_matrix_paths_agree() {
        let l = locs(10);
        let ops = [
            Selection::new((0..10).collect(), &l, "identity").unwrap(),
            Selection::new((0..10).step_by(3).collect(), &l, "every").unwrap(),
            Selection::new(vec![7, 2, 2, 9], &l, "partial").unwrap(),
        ];
        let e = DMatrix::from_fn(10, 4, |i, j| (i * 4 + j) as f64 * 0.1);
        let device = cpu_f64();
        for op in &ops {
            let host = op.apply_host(&e);
            let dev = tensor_to_ensemble(op.apply(ensemble_to_tensor(&e, &device), 0.0));
            let mat = LinearObs::matrix(op, 10) * &e;
            assert_eq!(host, dev, "{}", op.name());
            assert_eq!(host, mat, "{}", op.name());
        }
    }

    #[test]
    fn out_of_range_index_is_refused() {
        assert_eq!(
            Selection::new(vec![1, 5], &locs(5), "partial").unwrap_err(),
            (5, 5)
        );
    }
}
