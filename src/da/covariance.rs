//! Square roots of covariances applied as operators, so that a background
//! or initial covariance on a gridded model is never an `n x n` matrix.
//!
//! A covariance `B = S S^T` is given by its square root `S` (`n x m`): a
//! control vector `w` of `m` values maps to the state increment `S w`, and
//! a standard normal `w` gives a draw of `N(0, B)`. Two square roots:
//! - [`DenseSqrt`], a matrix (climatological covariances of small models);
//! - [`FieldCovariance`], one standard deviation per field and a Gaussian
//!   correlation of length `L` in the model's coordinates (metres on a
//!   grid): `S = diag(std) D K`, where `K` is the Gaussian kernel of width
//!   `L / sqrt 2` between the field's active points (so `K K^T` is the
//!   Gaussian correlation of width `L` away from walls) and `D` rescales
//!   each row to unit variance (so near walls and land the variance is
//!   still `std^2`). Fields whose standard deviation is zero are not
//!   controlled at all: a 4D-Var of the sea-ice thickness has one control
//!   variable per ocean cell of the thickness field, not per state variable.
//!   Kernel entries below the localisation cutoff (1e-3) are dropped, and
//!   the neighbours are found by the localisation's bucket index, so
//!   building and applying `S` is O(n L^2 / dx^2), never O(n^2).

use std::fmt::Debug;

use nalgebra::{DMatrix, DVector};

use super::localisation::{LocalIndex, Taper};
use crate::core::Geometry;

/// A square root `S` of a covariance `S S^T`.
pub trait CovarianceSqrt: Send + Sync + Debug {
    /// State size `n` (rows of `S`).
    fn size(&self) -> usize;
    /// Control size `m` (columns of `S`).
    fn control_size(&self) -> usize;
    /// `S w` for a control vector of length `m`.
    fn apply(&self, w: &[f64]) -> DVector<f64>;
    /// `S^T g` for a state-space vector of length `n`.
    fn apply_transpose(&self, g: &[f64]) -> DVector<f64>;
}

/// A dense square root.
#[derive(Clone, Debug)]
pub struct DenseSqrt(pub DMatrix<f64>);

impl CovarianceSqrt for DenseSqrt {
    fn size(&self) -> usize {
        self.0.nrows()
    }
    fn control_size(&self) -> usize {
        self.0.ncols()
    }
    fn apply(&self, w: &[f64]) -> DVector<f64> {
        &self.0 * DVector::from_column_slice(w)
    }
    fn apply_transpose(&self, g: &[f64]) -> DVector<f64> {
        self.0.tr_mul(&DVector::from_column_slice(g))
    }
}

/// One controlled field: its state indices and the sparse rows of
/// `diag(std) D K` over them.
#[derive(Clone, Debug, PartialEq)]
struct Block {
    /// State index of each controlled point.
    indices: Vec<usize>,
    /// First control variable of the block.
    start: usize,
    /// Row `r` (state point `indices[r]`): `(control column within the
    /// block, weight)`.
    rows: Vec<Vec<(usize, f64)>>,
}

/// Per-field standard deviations with an optional Gaussian correlation
/// length (see the module documentation).
#[derive(Clone, Debug, PartialEq)]
pub struct FieldCovariance {
    n: usize,
    m: usize,
    blocks: Vec<Block>,
    length_scale: Option<f64>,
}

impl FieldCovariance {
    /// The square root for standard deviations `std` (one per state
    /// variable; a field's active points are correlated with each other,
    /// never across fields) and correlation length `length_scale` (absent
    /// or zero: uncorrelated). Variables with zero standard deviation are
    /// not controlled.
    pub fn new(geometry: &Geometry, std: &[f64], length_scale: Option<f64>) -> Self {
        assert_eq!(
            std.len(),
            geometry.size(),
            "one standard deviation per variable"
        );
        let length_scale = length_scale.filter(|l| *l > 0.0);
        let mut blocks = Vec::new();
        let mut m = 0;
        for (k, field) in geometry.fields.iter().enumerate() {
            let offset = geometry.offset(k);
            let indices: Vec<usize> = (0..field.len())
                .filter(|&i| field.is_active(i) && std[offset + i] > 0.0)
                .map(|i| offset + i)
                .collect();
            if indices.is_empty() {
                continue;
            }
            let rows = match length_scale {
                None => (0..indices.len())
                    .map(|r| vec![(r, std[indices[r]])])
                    .collect(),
                Some(l) => {
                    let points: Vec<_> = indices.iter().map(|&i| geometry.location(i)).collect();
                    let index = LocalIndex::new(
                        geometry,
                        &points,
                        l * std::f64::consts::FRAC_1_SQRT_2,
                        Taper::Gauss,
                    );
                    let (mut scratch, mut out) = (Vec::new(), Vec::new());
                    points
                        .iter()
                        .enumerate()
                        .map(|(r, x)| {
                            index.query(geometry, *x, &mut scratch, &mut out);
                            let norm = out.iter().map(|(_, c)| c * c).sum::<f64>().sqrt();
                            let scale = std[indices[r]] / norm;
                            out.iter().map(|&(j, c)| (j, c * scale)).collect()
                        })
                        .collect()
                }
            };
            blocks.push(Block {
                start: m,
                rows,
                indices,
            });
            m += blocks.last().map_or(0, |b| b.indices.len());
        }
        Self {
            n: geometry.size(),
            m,
            blocks,
            length_scale,
        }
    }

    /// The standard deviation of each state variable: the norms of the
    /// rows of `S` (zero where not controlled).
    pub fn row_norms(&self) -> Vec<f64> {
        let mut out = vec![0.0; self.n];
        for b in &self.blocks {
            for (&i, row) in b.indices.iter().zip(&b.rows) {
                out[i] = row.iter().map(|(_, c)| c * c).sum::<f64>().sqrt();
            }
        }
        out
    }

    /// The correlation length, if any.
    pub fn length_scale(&self) -> Option<f64> {
        self.length_scale
    }

    /// The same square root for covariance `factor x B`.
    pub fn scaled(mut self, factor: f64) -> Self {
        let s = factor.sqrt();
        for b in &mut self.blocks {
            for row in &mut b.rows {
                for (_, w) in row {
                    *w *= s;
                }
            }
        }
        self
    }
}

impl CovarianceSqrt for FieldCovariance {
    fn size(&self) -> usize {
        self.n
    }
    fn control_size(&self) -> usize {
        self.m
    }
    fn apply(&self, w: &[f64]) -> DVector<f64> {
        let mut out = DVector::zeros(self.n);
        for b in &self.blocks {
            let w = &w[b.start..b.start + b.indices.len()];
            for (&i, row) in b.indices.iter().zip(&b.rows) {
                out[i] = row.iter().map(|&(j, c)| c * w[j]).sum();
            }
        }
        out
    }
    fn apply_transpose(&self, g: &[f64]) -> DVector<f64> {
        let mut out = DVector::zeros(self.m);
        for b in &self.blocks {
            for (&i, row) in b.indices.iter().zip(&b.rows) {
                let gi = g[i];
                if gi != 0.0 {
                    for &(j, c) in row {
                        out[b.start + j] += c * gi;
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Field, Geometry};

    fn grid(nx: usize, ny: usize, dx: f64) -> Geometry {
        let x = (0..nx).map(|i| (i as f64 + 0.5) * dx).collect();
        let y = (0..ny).map(|j| (j as f64 + 0.5) * dx).collect();
        let mut a = Field::grid("a", "field a", "m", x, y);
        // Land in one corner.
        let mut mask = vec![true; nx * ny];
        mask[0] = false;
        a.mask = Some(mask);
        let b = Field::chain("b", "field b", 3);
        Geometry::new(
            vec![a, b],
            [None, None],
            crate::core::CoordinateUnits::Metres,
        )
    }

    #[test]
    fn the_square_root_and_its_transpose_pass_the_dot_product_test_and_give_the_stated_variances() {
        let g = grid(12, 9, 10e3);
        let n = g.size();
        let mut std = vec![0.5; n];
        std[n - 3..].fill(0.0); // field b not controlled
        let s = FieldCovariance::new(&g, &std, Some(25e3));
        assert_eq!(s.control_size(), 12 * 9 - 1);
        let mut rng = crate::rng::stream(3, "cov");
        let w = DVector::from_vec(crate::rng::standard_normal(&mut rng, s.control_size()));
        let y = DVector::from_vec(crate::rng::standard_normal(&mut rng, n));
        let sw = s.apply(w.as_slice());
        let sty = s.apply_transpose(y.as_slice());
        let (lhs, rhs) = (sw.dot(&y), w.dot(&sty));
        assert!(
            (lhs - rhs).abs() <= 1e-12 * lhs.abs().max(1.0),
            "{lhs} vs {rhs}"
        );
        // Land and uncontrolled variables get no increment.
        assert_eq!(sw[0], 0.0);
        assert!(sw.as_slice()[n - 3..].iter().all(|v| *v == 0.0));
        // Variance std^2 at every controlled point, walls included:
        // the diagonal of S S^T from its columns.
        let dense = DMatrix::from_fn(n, s.control_size(), |i, j| {
            let mut e = vec![0.0; s.control_size()];
            e[j] = 1.0;
            s.apply(&e)[i]
        });
        let b = &dense * dense.transpose();
        for i in 1..12 * 9 {
            assert!((b[(i, i)] - 0.25).abs() < 1e-12, "{i}: {}", b[(i, i)]);
        }
        // Away from walls the correlation at lag d is exp(-d^2 / (2 L^2)).
        let (i, j) = (4 * 12 + 5, 4 * 12 + 6); // neighbours 10 km apart
        let expected = (-0.5f64 * (10.0f64 / 25.0).powi(2)).exp();
        assert!(
            (b[(i, j)] / 0.25 - expected).abs() < 0.01,
            "{}",
            b[(i, j)] / 0.25
        );
    }

    #[test]
    fn without_a_length_scale_the_covariance_is_diagonal() {
        let g = grid(4, 3, 1.0);
        let std: Vec<f64> = (0..g.size()).map(|i| i as f64 * 0.1).collect();
        let s = FieldCovariance::new(&g, &std, None);
        let mut w = vec![0.0; s.control_size()];
        w[2] = 1.0;
        let x = s.apply(&w);
        assert_eq!(x.iter().filter(|v| **v != 0.0).count(), 1);
        // Point 0 is land and point 1 has std 0.1: control 2 is point 3.
        assert!((x[3] - 0.3).abs() < 1e-15);
    }
}
