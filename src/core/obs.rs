//! The `ObsOperator` seam, observation errors and observation batches.
//!
//! An operator maps a state batch `[members, n]` to observation space
//! `[members, p]` in burn ops, so variational methods differentiate through
//! it. Linear operators also offer a host path ([`LinearObs`]) for the
//! ensemble filters and hand adjoints. What was observed at one time, with
//! which errors and through which operator, is an [`ObsBatch`]: the network
//! may change from one batch to the next.

use std::sync::{Arc, Mutex};

use burn::tensor::{Int, Tensor, TensorData};
use nalgebra::{DMatrix, DVector};

use super::geometry::Location;
use crate::rng::{Rng, standard_normal};

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

    /// The host path and adjoint of a linear operator; `None` for
    /// nonlinear operators (DA then goes through [`apply`](Self::apply) and
    /// autodiff).
    fn linear(&self) -> Option<&dyn LinearObs> {
        None
    }

    /// The operator's own error standard deviation per observation (the
    /// spread of a learned operator, a representation error), added in
    /// quadrature to the instrument error; `None` when it has none.
    fn error_std(&self, _time: f64) -> Option<Vec<f64>> {
        None
    }

    /// For each observation, the state index it reads where it reads one
    /// variable directly (a selection), for output; `None` otherwise.
    fn state_indices(&self) -> Vec<Option<usize>> {
        match self.linear().and_then(|l| l.selected_indices()) {
            Some(idx) => idx.iter().copied().map(Some).collect(),
            None => vec![None; self.size()],
        }
    }
}

/// A linear operator's host path: `H E` on a host ensemble and `H^T r`.
pub trait LinearObs: Send + Sync {
    /// `H E` for an `n x members` ensemble, giving `p x members`.
    fn apply_host(&self, ensemble: &DMatrix<f64>) -> DMatrix<f64>;

    /// Accumulates `H^T r` into `out` (length `n`).
    fn adjoint_host(&self, r: &[f64], out: &mut [f64]);

    /// For a selection, the state index each observation reads.
    fn selected_indices(&self) -> Option<&[usize]> {
        None
    }

    /// The dense matrix `H` (`p x n`); for small states only.
    fn matrix(&self, n: usize) -> DMatrix<f64> {
        self.apply_host(&DMatrix::identity(n, n))
    }
}

/// Applies an operator to an `n x members` host ensemble: on the host where
/// the operator is linear, otherwise through the device (one transfer each
/// way).
pub fn apply_to_ensemble(
    op: &dyn ObsOperator,
    ensemble: &DMatrix<f64>,
    time: f64,
    device: &burn::tensor::Device,
) -> DMatrix<f64> {
    match op.linear() {
        Some(linear) => linear.apply_host(ensemble),
        None => {
            let t = crate::device::ensemble_to_tensor(ensemble, device);
            crate::device::tensor_to_ensemble(op.apply(t, time))
        }
    }
}

/// Applies an operator to one host state: `H(x)`, as
/// [`apply_to_ensemble`] with one member.
pub fn apply_to_state(
    op: &dyn ObsOperator,
    x: &DVector<f64>,
    time: f64,
    device: &burn::tensor::Device,
) -> DVector<f64> {
    let m = DMatrix::from_column_slice(x.len(), 1, x.as_slice());
    apply_to_ensemble(op, &m, time, device)
        .column(0)
        .into_owned()
}

/// The errors of a batch of observations: `R`.
#[derive(Clone, Debug, PartialEq)]
pub enum ObsError {
    /// Independent errors with one standard deviation per observation.
    Diagonal(DVector<f64>),
    /// Correlated errors: the covariance `R` and its lower Cholesky factor
    /// `L` (`R = L L^T`); whitening applies `L^{-1}`.
    Correlated {
        /// `R`, `p x p`.
        covariance: DMatrix<f64>,
        /// `L`.
        cholesky: DMatrix<f64>,
    },
}

impl ObsError {
    /// The same standard deviation for `p` observations.
    pub fn uniform(std: f64, p: usize) -> Self {
        ObsError::Diagonal(DVector::from_element(p, std))
    }

    /// Correlated errors from a covariance.
    ///
    /// # Errors
    /// If `R` is not symmetric positive definite.
    pub fn correlated(covariance: DMatrix<f64>) -> Result<Self, String> {
        let cholesky = covariance
            .clone()
            .cholesky()
            .ok_or("the observation error covariance is not positive definite")?
            .l();
        Ok(ObsError::Correlated {
            covariance,
            cholesky,
        })
    }

    /// Number of observations.
    pub fn len(&self) -> usize {
        match self {
            ObsError::Diagonal(s) => s.len(),
            ObsError::Correlated { covariance, .. } => covariance.nrows(),
        }
    }

    /// Whether there are no observations.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `R` is diagonal.
    pub fn is_diagonal(&self) -> bool {
        matches!(self, ObsError::Diagonal(_))
    }

    /// The standard deviation of each observation (`sqrt(diag R)`).
    pub fn std(&self) -> DVector<f64> {
        match self {
            ObsError::Diagonal(s) => s.clone(),
            ObsError::Correlated { covariance, .. } => covariance.diagonal().map(f64::sqrt),
        }
    }

    /// The errors restricted to the observations `keep`.
    pub fn subset(&self, keep: &[usize]) -> Self {
        match self {
            ObsError::Diagonal(s) => ObsError::Diagonal(s.select_rows(keep.iter())),
            ObsError::Correlated { covariance, .. } => {
                let c = covariance
                    .select_rows(keep.iter())
                    .select_columns(keep.iter());
                ObsError::correlated(c).expect("a principal submatrix of an SPD matrix is SPD")
            }
        }
    }

    /// Adds independent variances `extra^2` (an operator's own error).
    pub fn with_extra_std(&self, extra: &[f64]) -> Self {
        match self {
            ObsError::Diagonal(s) => ObsError::Diagonal(DVector::from_iterator(
                s.len(),
                s.iter().zip(extra).map(|(a, b)| (a * a + b * b).sqrt()),
            )),
            ObsError::Correlated { covariance, .. } => {
                let mut c = covariance.clone();
                for (i, e) in extra.iter().enumerate() {
                    c[(i, i)] += e * e;
                }
                ObsError::correlated(c).expect("adding variances keeps R positive definite")
            }
        }
    }

    /// `R^{-1/2} v` for a vector.
    pub fn whiten(&self, v: &DVector<f64>) -> DVector<f64> {
        match self {
            ObsError::Diagonal(s) => v.component_div(s),
            ObsError::Correlated { cholesky, .. } => cholesky
                .solve_lower_triangular(v)
                .expect("the Cholesky factor is invertible"),
        }
    }

    /// `R^{-1/2} Y` for a `p x N` matrix.
    pub fn whiten_matrix(&self, y: &DMatrix<f64>) -> DMatrix<f64> {
        match self {
            ObsError::Diagonal(s) => {
                let mut out = y.clone();
                for (mut row, si) in out.row_iter_mut().zip(s.iter()) {
                    row /= *si;
                }
                out
            }
            ObsError::Correlated { cholesky, .. } => cholesky
                .solve_lower_triangular(y)
                .expect("the Cholesky factor is invertible"),
        }
    }

    /// `R^{-T/2} r`, the adjoint of the whitening (`L^{-T} r`).
    pub fn whiten_adjoint(&self, r: &DVector<f64>) -> DVector<f64> {
        match self {
            ObsError::Diagonal(s) => r.component_div(s),
            ObsError::Correlated { cholesky, .. } => cholesky
                .tr_solve_lower_triangular(r)
                .expect("the Cholesky factor is invertible"),
        }
    }

    /// The whitening as a dense matrix `W` (`p x p`, `W R W^T = I`), for
    /// tensor code.
    pub fn whitening_matrix(&self) -> DMatrix<f64> {
        match self {
            ObsError::Diagonal(s) => DMatrix::from_diagonal(&s.map(|v| 1.0 / v)),
            ObsError::Correlated { cholesky, .. } => cholesky
                .clone()
                .try_inverse()
                .expect("the Cholesky factor is invertible"),
        }
    }

    /// A draw of the errors, `N(0, R)`.
    pub fn sample(&self, rng: &mut Rng) -> DVector<f64> {
        let z = DVector::from_vec(standard_normal(rng, self.len()));
        match self {
            ObsError::Diagonal(s) => z.component_mul(s),
            ObsError::Correlated { cholesky, .. } => cholesky * z,
        }
    }

    /// `(R^{1/2} Z)` for a `p x N` matrix of standard normal draws.
    pub fn colour(&self, z: &DMatrix<f64>) -> DMatrix<f64> {
        match self {
            ObsError::Diagonal(s) => {
                let mut out = z.clone();
                for (mut row, si) in out.row_iter_mut().zip(s.iter()) {
                    row *= *si;
                }
                out
            }
            ObsError::Correlated { cholesky, .. } => cholesky * z,
        }
    }

    /// The mean error variance, `tr(R) / p`.
    pub fn mean_variance(&self) -> f64 {
        let s = self.std();
        s.iter().map(|v| v * v).sum::<f64>() / s.len().max(1) as f64
    }
}

/// Observations valid at one time: values, their errors and the operator
/// that maps a state to them. Missing values never reach a method: they are
/// dropped when the batch is made ([`ObsBatch::new`]).
#[derive(Clone)]
pub struct ObsBatch {
    /// Observation cycle (0-based).
    pub cycle: usize,
    /// Model time of the observations.
    pub time: f64,
    /// The observed values, `p`.
    pub values: DVector<f64>,
    /// Their errors.
    pub error: ObsError,
    /// The operator mapping a state to these `p` values.
    pub operator: Arc<dyn ObsOperator>,
    /// Batches with the same id share operator and locations, so
    /// per-network work (localisation, gains) can be cached.
    pub network_id: u64,
    /// Entries of the full network that were missing (NaN) and dropped.
    pub missing: usize,
    /// How many of the (present) observations each observation set holds,
    /// in order: the values are the sets' one after the other.
    pub sets: Vec<usize>,
    /// The last ensemble a nonlinear operator was applied to and its image
    /// (see [`ObsBatch::apply_to_ensemble`]); shared by the batch's clones.
    memo: Arc<Mutex<Option<(DMatrix<f64>, DMatrix<f64>)>>>,
}

impl std::fmt::Debug for ObsBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObsBatch")
            .field("cycle", &self.cycle)
            .field("time", &self.time)
            .field("p", &self.values.len())
            .field("operator", &self.operator.name())
            .field("network_id", &self.network_id)
            .field("missing", &self.missing)
            .finish()
    }
}

impl ObsBatch {
    /// A batch from the full network's values, where NaN marks a missing
    /// value: missing entries are dropped from the values, the errors and
    /// the operator. The operator's own error, if any, is added to `error`.
    ///
    /// # Panics
    /// If the lengths of `values`, `error` and the operator disagree.
    pub fn new(
        cycle: usize,
        time: f64,
        values: DVector<f64>,
        error: ObsError,
        operator: Arc<dyn ObsOperator>,
        network_id: u64,
    ) -> Self {
        let sets = vec![values.len()];
        Self::in_sets(cycle, time, values, error, operator, network_id, &sets)
    }

    /// As [`ObsBatch::new`], for observations of several sets: `sets`
    /// gives how many of `values` each set holds, in order.
    ///
    /// # Panics
    /// As [`ObsBatch::new`], or if `sets` does not add up to the values.
    pub fn in_sets(
        cycle: usize,
        time: f64,
        values: DVector<f64>,
        error: ObsError,
        operator: Arc<dyn ObsOperator>,
        network_id: u64,
        sets: &[usize],
    ) -> Self {
        assert_eq!(sets.iter().sum::<usize>(), values.len(), "set sizes");
        assert_eq!(values.len(), operator.size(), "values vs operator size");
        assert_eq!(values.len(), error.len(), "values vs error size");
        let error = match operator.error_std(time) {
            Some(extra) => error.with_extra_std(&extra),
            None => error,
        };
        let keep: Vec<usize> = (0..values.len())
            .filter(|&j| values[j].is_finite())
            .collect();
        if keep.len() == values.len() {
            return Self {
                cycle,
                time,
                values,
                error,
                operator,
                network_id,
                missing: 0,
                sets: sets.to_vec(),
                memo: Arc::default(),
            };
        }
        let mut kept_sets = Vec::with_capacity(sets.len());
        let mut start = 0;
        for &n in sets {
            kept_sets.push(
                (start..start + n)
                    .filter(|&j| values[j].is_finite())
                    .count(),
            );
            start += n;
        }
        let missing = values.len() - keep.len();
        let mut hasher = network_id ^ 0x9e37_79b9_7f4a_7c15;
        for &k in &keep {
            hasher = hasher.rotate_left(5) ^ k as u64;
            hasher = hasher.wrapping_mul(0x0000_0100_0000_01b3);
        }
        Self {
            cycle,
            time,
            values: values.select_rows(keep.iter()),
            error: error.subset(&keep),
            operator: Arc::new(Subset::new(operator, keep)),
            network_id: hasher,
            missing,
            sets: kept_sets,
            memo: Arc::default(),
        }
    }

    /// `H` applied to an `n x members` ensemble, as [`apply_to_ensemble`].
    /// A nonlinear operator's image of the last ensemble is kept: the run's
    /// O-B diagnostic and the filter's analysis both apply `H` to the same
    /// forecast ensemble, and an expensive operator (a network, the
    /// orographic precipitation chain) then runs once, not twice. The
    /// ensemble is compared value for value, so a different one is
    /// always recomputed.
    pub fn apply_to_ensemble(
        &self,
        ensemble: &DMatrix<f64>,
        device: &burn::tensor::Device,
    ) -> DMatrix<f64> {
        if self.operator.linear().is_some() {
            return apply_to_ensemble(self.operator.as_ref(), ensemble, self.time, device);
        }
        if let Ok(memo) = self.memo.lock()
            && let Some((e, hx)) = memo.as_ref()
            && e == ensemble
        {
            return hx.clone();
        }
        let hx = apply_to_ensemble(self.operator.as_ref(), ensemble, self.time, device);
        if let Ok(mut memo) = self.memo.lock() {
            *memo = Some((ensemble.clone(), hx.clone()));
        }
        hx
    }

    /// Number of (present) observations.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether nothing was observed.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// The observations `keep` of another operator.
pub struct Subset {
    inner: Arc<dyn ObsOperator>,
    keep: Vec<usize>,
    keep_data: Vec<i64>,
    locations: Vec<Location>,
    name: String,
    selected: Option<Vec<usize>>,
}

impl Subset {
    /// Keeps the observations `keep` (indices into `inner`'s outputs).
    pub fn new(inner: Arc<dyn ObsOperator>, keep: Vec<usize>) -> Self {
        let locations = keep.iter().map(|&k| inner.locations()[k]).collect();
        let selected = inner
            .linear()
            .and_then(|l| l.selected_indices())
            .map(|idx| keep.iter().map(|&k| idx[k]).collect());
        Self {
            keep_data: keep.iter().map(|&k| k as i64).collect(),
            name: inner.name().to_string(),
            inner,
            keep,
            locations,
            selected,
        }
    }
}

impl ObsOperator for Subset {
    fn apply(&self, state: Tensor<2>, time: f64) -> Tensor<2> {
        let full = self.inner.apply(state, time);
        let idx = Tensor::<1, Int>::from_data(
            TensorData::new(self.keep_data.clone(), [self.keep.len()]),
            &full.device(),
        );
        full.select(1, idx)
    }
    fn size(&self) -> usize {
        self.keep.len()
    }
    fn locations(&self) -> &[Location] {
        &self.locations
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn linear(&self) -> Option<&dyn LinearObs> {
        self.inner.linear().is_some().then_some(self)
    }
    fn error_std(&self, time: f64) -> Option<Vec<f64>> {
        // Already folded into the batch's errors when the subset was made.
        let _ = time;
        None
    }
    fn state_indices(&self) -> Vec<Option<usize>> {
        let all = self.inner.state_indices();
        self.keep.iter().map(|&k| all[k]).collect()
    }
}

impl LinearObs for Subset {
    fn apply_host(&self, ensemble: &DMatrix<f64>) -> DMatrix<f64> {
        let inner = self.inner.linear().expect("checked in linear()");
        inner.apply_host(ensemble).select_rows(self.keep.iter())
    }
    fn adjoint_host(&self, r: &[f64], out: &mut [f64]) {
        let inner = self.inner.linear().expect("checked in linear()");
        let mut full = vec![0.0; self.inner.size()];
        for (&k, v) in self.keep.iter().zip(r) {
            full[k] = *v;
        }
        inner.adjoint_host(&full, out);
    }
    fn selected_indices(&self) -> Option<&[usize]> {
        self.selected.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Geometry;
    use crate::obs::Selection;

    fn locs(n: usize) -> Vec<Location> {
        Geometry::chain(n, true, "x").locations().collect()
    }

    /// Squares every variable and counts its calls.
    struct Counted {
        locations: Vec<Location>,
        calls: std::sync::atomic::AtomicUsize,
    }

    impl ObsOperator for Counted {
        fn apply(&self, state: Tensor<2>, _time: f64) -> Tensor<2> {
            self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            state.clone() * state
        }
        fn size(&self) -> usize {
            self.locations.len()
        }
        fn locations(&self) -> &[Location] {
            &self.locations
        }
        fn name(&self) -> &str {
            "counted"
        }
    }

    /// A batch applies a nonlinear operator once to an ensemble it has just
    /// seen (its clones share the memo), gives the same values as a fresh
    /// application, and recomputes for a different ensemble.
    #[test]
    fn a_batch_applies_a_nonlinear_operator_once_per_ensemble() {
        let op = Arc::new(Counted {
            locations: locs(3),
            calls: 0.into(),
        });
        let batch = ObsBatch::new(
            0,
            0.0,
            DVector::from_element(3, 1.0),
            ObsError::uniform(1.0, 3),
            op.clone(),
            0,
        );
        let device = crate::device::cpu_f64();
        let e = DMatrix::from_fn(3, 4, |i, j| i as f64 - 0.5 * j as f64);
        let a = batch.apply_to_ensemble(&e, &device);
        let b = batch.clone().apply_to_ensemble(&e, &device);
        assert_eq!(a, b);
        assert_eq!(a, apply_to_ensemble(op.as_ref(), &e, 0.0, &device));
        assert_eq!(a[(2, 3)], (2.0f64 - 1.5).powi(2));
        assert_eq!(op.calls.load(std::sync::atomic::Ordering::SeqCst), 2);
        let mut f = e.clone();
        f[(1, 1)] += 1e-12;
        let c = batch.apply_to_ensemble(&f, &device);
        assert_eq!(op.calls.load(std::sync::atomic::Ordering::SeqCst), 3);
        assert_eq!(c, apply_to_ensemble(op.as_ref(), &f, 0.0, &device));
    }

    #[test]
    fn adjoints_pass_the_dot_product_test() {
        let l = locs(8);
        let sel: Arc<dyn ObsOperator> =
            Arc::new(Selection::new(vec![1, 5, 5, 7, 0], &l, "partial").unwrap());
        let sub = Subset::new(sel.clone(), vec![0, 2, 4]);
        let x = DMatrix::from_fn(8, 1, |i, _| (i as f64 * 0.9).sin());
        for op in [sel.as_ref(), &sub as &dyn ObsOperator] {
            let lin = op.linear().unwrap();
            let hx = lin.apply_host(&x);
            let r: Vec<f64> = (0..op.size()).map(|j| 1.0 + j as f64).collect();
            let mut htr = vec![0.0; 8];
            lin.adjoint_host(&r, &mut htr);
            let lhs: f64 = hx.iter().zip(&r).map(|(a, b)| a * b).sum();
            let rhs: f64 = x.iter().zip(&htr).map(|(a, b)| a * b).sum();
            assert!((lhs - rhs).abs() < 1e-12, "{lhs} vs {rhs}");
        }
        assert_eq!(sub.selected_indices(), Some(&[1, 5, 0][..]));
    }

    #[test]
    fn missing_values_are_dropped_with_their_errors() {
        let l = locs(6);
        let op: Arc<dyn ObsOperator> =
            Arc::new(Selection::new((0..6).collect(), &l, "identity").unwrap());
        let y = DVector::from_vec(vec![1.0, f64::NAN, 3.0, 4.0, f64::NAN, 6.0]);
        let err = ObsError::Diagonal(DVector::from_vec(vec![0.1, 0.2, 0.3, 0.4, 0.5, 0.6]));
        let b = ObsBatch::new(0, 1.0, y, err, op, 7);
        assert_eq!(b.len(), 4);
        assert_eq!(b.missing, 2);
        assert_eq!(b.values.as_slice(), &[1.0, 3.0, 4.0, 6.0]);
        assert_eq!(b.error.std().as_slice(), &[0.1, 0.3, 0.4, 0.6]);
        assert_eq!(
            b.operator.linear().unwrap().selected_indices(),
            Some(&[0, 2, 3, 5][..])
        );
        assert_ne!(b.network_id, 7);
    }

    #[test]
    fn correlated_whitening_gives_unit_covariance() {
        let r = DMatrix::from_row_slice(3, 3, &[1.0, 0.5, 0.1, 0.5, 2.0, 0.3, 0.1, 0.3, 0.5]);
        let e = ObsError::correlated(r.clone()).unwrap();
        let w = e.whitening_matrix();
        let i = &w * &r * w.transpose();
        assert!((i - DMatrix::identity(3, 3)).abs().max() < 1e-12);
        let v = DVector::from_vec(vec![0.3, -1.0, 2.0]);
        assert!((e.whiten(&v) - &w * &v).abs().max() < 1e-12);
        assert!((e.whiten_adjoint(&v) - w.transpose() * &v).abs().max() < 1e-12);
        assert!((e.std()[1] - 2f64.sqrt()).abs() < 1e-15);
    }
}
