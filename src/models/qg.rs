//! The 2-D quasi-geostrophic ocean model of Sakov & Oke (2008b), as in
//! DAPPER's `mods/QG` and EnKF-Matlab: a wind-driven double gyre with a
//! western boundary current, the standard gridded test bed of ensemble DA
//! beyond Lorenz-96.
//!
//! # Equations
//! On the unit square, with stream function `psi` (zero on the boundary)
//! and potential vorticity `q = lap(psi) - F psi`,
//!
//! ```text
//! dq/dt = -beta dpsi/dx - r J(psi, q) - rkb zeta + rkh lap(zeta)
//!         - rkh2 lap^2(zeta) - 2 pi sin(2 pi y),      zeta = lap(psi),
//! ```
//!
//! with the same second-order finite differences as the Fortran code
//! (5-point Laplacians that vanish on the boundary, Arakawa's Jacobian, a
//! centred `dpsi/dx`). The state is `psi` on the whole `size x size` grid,
//! boundary included (zero there), as in DAPPER: its index is
//! `iy * size + ix` (DAPPER's Fortran order).
//!
//! # Inversion
//! `q` is a linear function of `psi`, `q = A psi`, so stepping `q` by
//! Runge-Kutta and inverting at the end (the Fortran code) equals stepping
//! `psi` by the same Runge-Kutta with the tendency `A^{-1} (dq/dt)`; that is
//! how it is written here, so every integrator, the hand-written adjoint
//! and autodiff apply unchanged. The Helmholtz problem `(lap - F) psi = f`
//! with `psi = 0` on the boundary is solved exactly by a discrete sine
//! transform in both directions (the eigenvectors of the 5-point operator),
//! `O(n log n)` per solve on the host (FFT) and four matrix products in burn
//! ops (differentiable, batched over members). The Fortran code uses three
//! multigrid cycles from the previous solution, an approximate inverse; the
//! dynamics are the same up to that solver error.
//!
//! # Defaults
//! DAPPER's `sakov2008` setup: 129 x 129 points, `dt = 1.25`, `F = 1600`,
//! `r = 1e-5`, `rkh2 = 2e-12`, RK4. `size` 65 and 257 give the coarse and
//! fine grids of the same square (downscaling pairs); finer grids may need
//! a smaller `dt`.

use std::sync::Arc;

use burn::tensor::{Tensor, TensorData};
use rustfft::{Fft, FftPlanner, num_complex::Complex};
use serde::{Deserialize, Serialize};

use super::adjoint::HostTendency;
use super::{BuildError, Integrator, ModelSpec, OdeModel, Tendency, finite, positive};
use crate::core::{CoordinateUnits, Field, Geometry, Model};

/// A grid offset `(dx, dy)` in points.
type Offset = (isize, isize);

/// Arakawa's (1966) Jacobian `J(a, b)` as eight terms `b(o) * sum_k c_k a(o_k)`,
/// offsets `(dx, dy)` in grid points, before the factor `1 / (12 dx dy)`.
/// The host tendency is written out by hand; its adjoint walks this table,
/// and the tests check both against burn autodiff of the tensor version.
const ARAKAWA: [(Offset, &[(Offset, f64)]); 8] = [
    ((-1, -1), &[((-1, 0), 1.0), ((0, -1), -1.0)]),
    (
        (0, -1),
        &[
            ((-1, -1), 1.0),
            ((-1, 0), 1.0),
            ((1, -1), -1.0),
            ((1, 0), -1.0),
        ],
    ),
    ((1, -1), &[((0, -1), 1.0), ((1, 0), -1.0)]),
    (
        (-1, 0),
        &[
            ((-1, 1), 1.0),
            ((0, 1), 1.0),
            ((-1, -1), -1.0),
            ((0, -1), -1.0),
        ],
    ),
    (
        (1, 0),
        &[
            ((0, -1), 1.0),
            ((1, -1), 1.0),
            ((0, 1), -1.0),
            ((1, 1), -1.0),
        ],
    ),
    ((-1, 1), &[((0, 1), 1.0), ((-1, 0), -1.0)]),
    (
        (0, 1),
        &[
            ((1, 0), 1.0),
            ((1, 1), 1.0),
            ((-1, 0), -1.0),
            ((-1, 1), -1.0),
        ],
    ),
    ((1, 1), &[((1, 0), 1.0), ((0, 1), -1.0)]),
];

/// The exact solver of `(lap - F) psi = f` with `psi = 0` on the boundary,
/// by the type-I discrete sine transform of the interior.
struct Helmholtz {
    /// Points per side, boundary included.
    n: usize,
    /// `1 / lambda_kl`, the inverse eigenvalues, interior `k x k`, row `l`.
    inverse_eigenvalues: Vec<f64>,
    /// A complex FFT of length `2 (n - 1)`: the odd extension of an
    /// interior line.
    fft: Arc<dyn Fft<f64>>,
    /// The orthonormal sine matrix `sqrt(2 / (k + 1)) sin(pi a b / (k + 1))`
    /// (`k x k`, symmetric), for the inversion in burn ops.
    sine: Vec<f64>,
}

impl Helmholtz {
    fn new(n: usize, dx: f64, froude: f64) -> Self {
        let k = n - 2;
        let line = |m: usize| {
            (2.0 * (std::f64::consts::PI * m as f64 / (k + 1) as f64).cos() - 2.0) / (dx * dx)
        };
        let mut inverse_eigenvalues = Vec::with_capacity(k * k);
        for l in 1..=k {
            for m in 1..=k {
                inverse_eigenvalues.push(1.0 / (line(m) + line(l) - froude));
            }
        }
        let fft = FftPlanner::new().plan_fft_forward(2 * (n - 1));
        let norm = (2.0 / (k + 1) as f64).sqrt();
        let mut sine = Vec::with_capacity(k * k);
        for a in 1..=k {
            for b in 1..=k {
                sine.push(norm * (std::f64::consts::PI * (a * b) as f64 / (k + 1) as f64).sin());
            }
        }
        Self {
            n,
            inverse_eigenvalues,
            fft,
            sine,
        }
    }

    /// Unnormalised sine transform `X_m = sum_j x_j sin(pi j m / (k + 1))`
    /// of every row of the `k x k` interior block `a` (row-major), in place.
    /// Two rows share one complex FFT: the odd extensions of real rows have
    /// purely imaginary transforms.
    fn sine_rows(&self, a: &mut [f64], work: &mut Vec<Complex<f64>>) {
        let k = self.n - 2;
        let len = 2 * (k + 1);
        let pairs = k.div_ceil(2);
        work.clear();
        work.resize(pairs * len, Complex::new(0.0, 0.0));
        for p in 0..pairs {
            let line = &mut work[p * len..(p + 1) * len];
            let re = &a[2 * p * k..(2 * p + 1) * k];
            for (j, &v) in re.iter().enumerate() {
                line[j + 1].re = v;
                line[len - 1 - j].re = -v;
            }
            if 2 * p + 1 < k {
                let im = &a[(2 * p + 1) * k..(2 * p + 2) * k];
                for (j, &v) in im.iter().enumerate() {
                    line[j + 1].im = v;
                    line[len - 1 - j].im = -v;
                }
            }
        }
        self.fft.process(work);
        // FFT(odd(a) + i odd(b))_m = -2i S a + 2 S b.
        for p in 0..pairs {
            let line = &work[p * len..(p + 1) * len];
            for m in 0..k {
                a[2 * p * k + m] = -0.5 * line[m + 1].im;
            }
            if 2 * p + 1 < k {
                for m in 0..k {
                    a[(2 * p + 1) * k + m] = 0.5 * line[m + 1].re;
                }
            }
        }
    }

    /// Solves for `psi` (whole grid, zero boundary) from the interior of
    /// `f` (whole grid; its boundary is ignored). The operator is
    /// symmetric, so this is also its own adjoint.
    fn solve(&self, f: &[f64], psi: &mut [f64], work: &mut Workspace) {
        let n = self.n;
        let k = n - 2;
        let block = &mut work.block;
        block.clear();
        for iy in 1..n - 1 {
            block.extend_from_slice(&f[iy * n + 1..iy * n + n - 1]);
        }
        let transposed = &mut work.transposed;
        transposed.resize(k * k, 0.0);
        // S F S: rows, transpose, rows (S is symmetric).
        self.sine_rows(block, &mut work.fft);
        transpose(block, transposed, k);
        self.sine_rows(transposed, &mut work.fft);
        // Divide by the eigenvalues (transposed layout: row m, column l) and
        // scale by the inverse transform's (2 / (k + 1))^2.
        let scale = (2.0 / (k + 1) as f64).powi(2);
        for m in 0..k {
            for l in 0..k {
                transposed[m * k + l] *= scale * self.inverse_eigenvalues[l * k + m];
            }
        }
        self.sine_rows(transposed, &mut work.fft);
        transpose(transposed, block, k);
        self.sine_rows(block, &mut work.fft);
        psi.fill(0.0);
        for iy in 1..n - 1 {
            psi[iy * n + 1..iy * n + n - 1].copy_from_slice(&block[(iy - 1) * k..iy * k]);
        }
    }
}

fn transpose(a: &[f64], out: &mut [f64], k: usize) {
    const TILE: usize = 16;
    for i0 in (0..k).step_by(TILE) {
        for j0 in (0..k).step_by(TILE) {
            for i in i0..(i0 + TILE).min(k) {
                for j in j0..(j0 + TILE).min(k) {
                    out[j * k + i] = a[i * k + j];
                }
            }
        }
    }
}

/// Per-thread buffers of the host tendency: a forecast evaluates it four
/// times per step, and allocation would dominate.
#[derive(Default)]
struct Workspace {
    block: Vec<f64>,
    transposed: Vec<f64>,
    fft: Vec<Complex<f64>>,
    grids: Vec<f64>,
}

thread_local! {
    static WORKSPACE: std::cell::RefCell<Workspace> = std::cell::RefCell::new(Workspace::default());
}

/// The QG tendency `d psi / dt` on a batch of stream functions.
#[derive(Clone)]
pub struct QgTendency {
    n: usize,
    dx: f64,
    froude: f64,
    rossby: f64,
    bottom_friction: f64,
    viscosity: f64,
    biharmonic: f64,
    beta: f64,
    /// Wind-stress curl on each row `iy`.
    curl: Vec<f64>,
    helmholtz: Arc<Helmholtz>,
}

impl std::fmt::Debug for QgTendency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QgTendency")
            .field("n", &self.n)
            .field("froude", &self.froude)
            .field("rossby", &self.rossby)
            .field("biharmonic", &self.biharmonic)
            .finish_non_exhaustive()
    }
}

impl QgTendency {
    fn new(config: &QgConfig) -> Self {
        let n = config.size;
        let dx = 1.0 / (n - 1) as f64;
        let curl = (0..n)
            .map(|iy| {
                -config.forcing
                    * 2.0
                    * std::f64::consts::PI
                    * (2.0 * std::f64::consts::PI * iy as f64 / (n - 1) as f64).sin()
            })
            .collect();
        Self {
            n,
            dx,
            froude: config.froude,
            rossby: config.rossby,
            bottom_friction: config.bottom_friction,
            viscosity: config.viscosity,
            biharmonic: config.biharmonic_viscosity,
            beta: config.beta,
            curl,
            helmholtz: Arc::new(Helmholtz::new(n, dx, config.froude)),
        }
    }

    /// The 5-point Laplacian on the interior, zero on the boundary.
    fn laplacian(&self, a: &[f64], out: &mut [f64]) {
        let n = self.n;
        let c = 1.0 / (self.dx * self.dx);
        out[..n].fill(0.0);
        out[(n - 1) * n..].fill(0.0);
        for iy in 1..n - 1 {
            let row = iy * n;
            out[row] = 0.0;
            out[row + n - 1] = 0.0;
            for ix in 1..n - 1 {
                let i = row + ix;
                out[i] = c * (a[i - 1] + a[i + 1] + a[i - n] + a[i + n] - 4.0 * a[i]);
            }
        }
    }

    /// The transpose of [`laplacian`](Self::laplacian), added to `out`
    /// times `scale`.
    fn add_laplacian_transpose(&self, mu: &[f64], scale: f64, out: &mut [f64]) {
        let n = self.n;
        let c = scale / (self.dx * self.dx);
        for iy in 1..n - 1 {
            for ix in 1..n - 1 {
                let i = iy * n + ix;
                let m = c * mu[i];
                out[i - 1] += m;
                out[i + 1] += m;
                out[i - n] += m;
                out[i + n] += m;
                out[i] -= 4.0 * m;
            }
        }
    }

    /// Arakawa's Jacobian `J(a, b)` on the interior (boundary untouched).
    fn arakawa(&self, a: &[f64], b: &[f64], out: &mut [f64]) {
        let n = self.n;
        let c = 1.0 / (12.0 * self.dx * self.dx);
        for iy in 1..n - 1 {
            for ix in 1..n - 1 {
                let i = iy * n + ix;
                // Offsets: x -> +-1, y -> +-n.
                let (w, e, s, nn) = (i - 1, i + 1, i - n, i + n);
                let (sw, se, nw, ne) = (s - 1, s + 1, nn - 1, nn + 1);
                let j = (a[w] - a[s]) * b[sw]
                    + (a[sw] + a[w] - a[se] - a[e]) * b[s]
                    + (a[s] - a[e]) * b[se]
                    + (a[nw] + a[nn] - a[sw] - a[s]) * b[w]
                    + (a[s] + a[se] - a[nn] - a[ne]) * b[e]
                    + (a[nn] - a[w]) * b[nw]
                    + (a[e] + a[ne] - a[w] - a[nw]) * b[nn]
                    + (a[e] - a[nn]) * b[ne];
                out[i] = c * j;
            }
        }
    }

    /// `d/dt q` on the interior (zero on the boundary), from `psi`; `grids`
    /// holds three scratch grids.
    fn q_flux(&self, psi: &[f64], flux: &mut [f64], grids: &mut [f64]) {
        let n = self.n;
        let size = n * n;
        let (q, rest) = grids.split_at_mut(size);
        let (zeta, rest) = rest.split_at_mut(size);
        let zeta2 = &mut rest[..size];
        self.laplacian(psi, zeta);
        for ((qi, z), p) in q.iter_mut().zip(zeta.iter()).zip(psi) {
            *qi = z - self.froude * p;
        }
        flux.fill(0.0);
        self.arakawa(psi, q, flux);
        for v in flux.iter_mut() {
            *v *= -self.rossby;
        }
        let beta = self.beta / (2.0 * self.dx);
        for iy in 1..n - 1 {
            let curl = self.curl[iy];
            for ix in 1..n - 1 {
                let i = iy * n + ix;
                flux[i] += curl - beta * (psi[i + 1] - psi[i - 1]) - self.bottom_friction * zeta[i];
            }
        }
        if self.viscosity != 0.0 || self.biharmonic != 0.0 {
            self.laplacian(zeta, zeta2);
            if self.viscosity != 0.0 {
                for (f, z) in flux.iter_mut().zip(zeta2.iter()) {
                    *f += self.viscosity * z;
                }
            }
            if self.biharmonic != 0.0 {
                // zeta4 = lap(zeta2), into q (no longer needed).
                self.laplacian(zeta2, q);
                for (f, z) in flux.iter_mut().zip(q.iter()) {
                    *f -= self.biharmonic * z;
                }
            }
        }
    }

    /// The tensor version of [`q_flux`](Self::q_flux) on `[m, n, n]` grids.
    fn q_flux_tensor(&self, psi: Tensor<3>) -> Tensor<3> {
        let n = self.n;
        let k = n - 2;
        let interior = |g: &Tensor<3>, dx: isize, dy: isize| -> Tensor<3> {
            g.clone()
                .narrow(1, (1 + dy) as usize, k)
                .narrow(2, (1 + dx) as usize, k)
        };
        let pad = |g: Tensor<3>| g.pad([(1, 1), (1, 1)], burn::tensor::ops::PadMode::Constant(0.0));
        let c = 1.0 / (self.dx * self.dx);
        let laplacian = |g: &Tensor<3>| -> Tensor<3> {
            pad(
                (interior(g, -1, 0) + interior(g, 1, 0) + interior(g, 0, -1) + interior(g, 0, 1)
                    - interior(g, 0, 0) * 4.0)
                    * c,
            )
        };
        let zeta = laplacian(&psi);
        let q = zeta.clone() - psi.clone() * self.froude;
        // Arakawa from the table: sum over terms of b(o) * (sum c_k a(o_k)).
        let mut jacobian: Option<Tensor<3>> = None;
        for (ob, terms) in ARAKAWA {
            let mut combo: Option<Tensor<3>> = None;
            for &((ax, ay), coef) in terms {
                let t = interior(&psi, ax, ay) * coef;
                combo = Some(match combo {
                    Some(s) => s + t,
                    None => t,
                });
            }
            let term = combo.expect("terms are non-empty") * interior(&q, ob.0, ob.1);
            jacobian = Some(match jacobian {
                Some(s) => s + term,
                None => term,
            });
        }
        let jacobian = jacobian.expect("eight terms") * (1.0 / (12.0 * self.dx * self.dx));
        let device = psi.device();
        let curl =
            Tensor::<1>::from_data(TensorData::new(self.curl[1..n - 1].to_vec(), [k]), &device)
                .reshape([1, k, 1]);
        let mut flux = jacobian * (-self.rossby) + curl
            - (interior(&psi, 1, 0) - interior(&psi, -1, 0)) * (self.beta / (2.0 * self.dx));
        if self.bottom_friction != 0.0 {
            flux = flux - interior(&zeta, 0, 0) * self.bottom_friction;
        }
        if self.viscosity != 0.0 || self.biharmonic != 0.0 {
            let zeta2 = laplacian(&zeta);
            if self.viscosity != 0.0 {
                flux = flux + interior(&zeta2, 0, 0) * self.viscosity;
            }
            if self.biharmonic != 0.0 {
                let zeta4 = laplacian(&zeta2);
                flux = flux - interior(&zeta4, 0, 0) * self.biharmonic;
            }
        }
        flux
    }

    /// The inversion in tensor ops on the `[m, k, k]` interior: four
    /// matrix products with the symmetric sine matrix; the result is padded
    /// with the zero boundary.
    fn solve_tensor(&self, f: Tensor<3>) -> Tensor<3> {
        let [m, k, _] = f.dims();
        let device = f.device();
        let sine = Tensor::<2>::from_data(
            TensorData::new(self.helmholtz.sine.clone(), [k, k]),
            &device,
        );
        // Orthonormal S: A^{-1} = S diag(1/lambda) S.
        let along_rows = |g: Tensor<3>| -> Tensor<3> {
            g.reshape([m * k, k])
                .matmul(sine.clone())
                .reshape([m, k, k])
        };
        let both = |g: Tensor<3>| along_rows(along_rows(g).swap_dims(1, 2)).swap_dims(1, 2);
        let inverse = Tensor::<2>::from_data(
            TensorData::new(self.helmholtz.inverse_eigenvalues.clone(), [k, k]),
            &device,
        )
        .reshape([1, k, k]);
        let psi = both(both(f) * inverse);
        psi.pad([(1, 1), (1, 1)], burn::tensor::ops::PadMode::Constant(0.0))
    }
}

impl Tendency for QgTendency {
    fn tendency(&self, state: Tensor<2>, _time: f64) -> Tensor<2> {
        let [m, size] = state.dims();
        let n = self.n;
        let psi = state.reshape([m, n, n]);
        self.solve_tensor(self.q_flux_tensor(psi))
            .reshape([m, size])
    }

    fn host(&self) -> Option<&dyn HostTendency> {
        Some(self)
    }
}

impl HostTendency for QgTendency {
    fn eval(&self, psi: &[f64], _t: f64, out: &mut [f64]) {
        let size = self.n * self.n;
        WORKSPACE.with(|cell| {
            let mut work = cell.borrow_mut();
            let mut grids = std::mem::take(&mut work.grids);
            grids.resize(4 * size, 0.0);
            let (flux, scratch) = grids.split_at_mut(size);
            self.q_flux(psi, flux, scratch);
            self.helmholtz.solve(flux, out, &mut work);
            work.grids = grids;
        });
    }

    /// `out = (d tendency / d psi)^T lambda`: the inversion is symmetric, so
    /// `mu = A^{-1} lambda`, then the transpose of each term of the flux.
    fn vjp(&self, psi: &[f64], _t: f64, lambda: &[f64], out: &mut [f64]) {
        let n = self.n;
        let size = n * n;
        WORKSPACE.with(|cell| {
            let mut work = cell.borrow_mut();
            let mut grids = std::mem::take(&mut work.grids);
            grids.resize(4 * size, 0.0);
            let (mu, rest) = grids.split_at_mut(size);
            let (q, rest) = rest.split_at_mut(size);
            let (bar_q, rest) = rest.split_at_mut(size);
            let (t1, _) = rest.split_at_mut(size);
            self.helmholtz.solve(lambda, mu, &mut work);
            out.fill(0.0);
            // -beta (psi[i+1] - psi[i-1]) / (2 dx).
            let beta = self.beta / (2.0 * self.dx);
            for iy in 1..n - 1 {
                for ix in 1..n - 1 {
                    let i = iy * n + ix;
                    out[i + 1] -= beta * mu[i];
                    out[i - 1] += beta * mu[i];
                }
            }
            if self.bottom_friction != 0.0 {
                self.add_laplacian_transpose(mu, -self.bottom_friction, out);
            }
            if self.viscosity != 0.0 || self.biharmonic != 0.0 {
                // t1 = L^T mu (interior read only), then L^T L^T mu, ...
                t1.fill(0.0);
                self.add_laplacian_transpose(mu, 1.0, t1);
                if self.viscosity != 0.0 {
                    self.add_laplacian_transpose(t1, self.viscosity, out);
                }
                if self.biharmonic != 0.0 {
                    bar_q.fill(0.0);
                    self.add_laplacian_transpose(t1, 1.0, bar_q);
                    self.add_laplacian_transpose(bar_q, -self.biharmonic, out);
                }
            }
            // -r J(psi, q(psi)), q = lap(psi) - F psi.
            self.laplacian(psi, q);
            for (qi, p) in q.iter_mut().zip(psi) {
                *qi -= self.froude * p;
            }
            bar_q.fill(0.0);
            let c = -self.rossby / (12.0 * self.dx * self.dx);
            let n_i = n as isize;
            for iy in 1..n - 1 {
                for ix in 1..n - 1 {
                    let i = (iy * n + ix) as isize;
                    let w = c * mu[i as usize];
                    if w == 0.0 {
                        continue;
                    }
                    for ((bx, by), terms) in ARAKAWA {
                        let ib = (i + bx + by * n_i) as usize;
                        let mut combo = 0.0;
                        for &((ax, ay), coef) in terms {
                            let ia = (i + ax + ay * n_i) as usize;
                            combo += coef * psi[ia];
                            out[ia] += w * coef * q[ib];
                        }
                        bar_q[ib] += w * combo;
                    }
                }
            }
            // q-bar back to psi: L^T (on the interior of q-bar) - F.
            for (o, b) in out.iter_mut().zip(bar_q.iter()) {
                *o -= self.froude * b;
            }
            self.add_laplacian_transpose(bar_q, 1.0, out);
            work.grids = grids;
        });
    }
}

/// The model.
pub type Qg = OdeModel<QgTendency>;

/// The `[model]` table of `name = "qg"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QgConfig {
    /// Grid points per side, boundary included: 65, 129 (DAPPER) or 257.
    #[serde(default = "size")]
    pub size: usize,
    /// Time step (DAPPER's `dt`; output every `dtout = 5` is four steps).
    #[serde(default = "dt")]
    pub dt: f64,
    /// `F`, the inverse squared deformation radius (Froude number).
    #[serde(default = "froude")]
    pub froude: f64,
    /// `r`, the factor of the nonlinear advection (DAPPER's `R`).
    #[serde(default = "rossby")]
    pub rossby: f64,
    /// Bottom friction `rkb`.
    #[serde(default)]
    pub bottom_friction: f64,
    /// Harmonic horizontal friction `rkh`.
    #[serde(default)]
    pub viscosity: f64,
    /// Biharmonic horizontal friction `rkh2` (2e-11 steadies small
    /// ensembles, Sakov's trick).
    #[serde(default = "biharmonic")]
    pub biharmonic_viscosity: f64,
    /// Planetary vorticity gradient (1 in the model's units).
    #[serde(default = "unit")]
    pub beta: f64,
    /// Amplitude of the wind-stress curl `-2 pi sin(2 pi y)` (1: DAPPER).
    #[serde(default = "unit")]
    pub forcing: f64,
    /// Integrator.
    #[serde(default)]
    pub integrator: Integrator,
    /// Additive noise per unit time (a stochastic model when positive).
    #[serde(default)]
    pub noise_std: Option<f64>,
}

fn size() -> usize {
    129
}
fn dt() -> f64 {
    1.25
}
fn froude() -> f64 {
    1600.0
}
fn rossby() -> f64 {
    1e-5
}
fn biharmonic() -> f64 {
    2e-12
}
fn unit() -> f64 {
    1.0
}

impl Default for QgConfig {
    fn default() -> Self {
        toml::from_str("").expect("every key has a default")
    }
}

impl ModelSpec for QgConfig {
    fn start_hint(&self) -> Option<&'static str> {
        Some(
            "the QG double gyre starts from rest and takes hundreds of cycles to spin up: without [initial.sample] the truth is still spinning up and the ensemble is drawn about rest; add [initial.sample] with spinup_cycles = 700 (DAPPER's), count and spacing, as experiments/qg/sakov2008.toml does",
        )
    }

    fn state_size(&self) -> Option<(u128, &'static str)> {
        Some(((self.size as u128).pow(2), "size"))
    }

    fn init(&self, _device: &burn::tensor::Device) -> Result<Box<dyn Model>, BuildError> {
        Ok(Box::new(self.build()?))
    }
}

impl QgConfig {
    /// The model, checked.
    ///
    /// # Errors
    /// A value the model cannot use, named by its key.
    pub fn build(&self) -> Result<Qg, BuildError> {
        if self.size < 5 {
            return Err(BuildError::invalid(
                "size",
                format!(
                    "the grid needs at least 5 points per side, got {}",
                    self.size
                ),
            ));
        }
        positive("dt", self.dt)?;
        positive("froude", self.froude)?;
        for (key, v) in [
            ("rossby", self.rossby),
            ("beta", self.beta),
            ("forcing", self.forcing),
        ] {
            finite(key, v)?;
        }
        for (key, v) in [
            ("bottom_friction", self.bottom_friction),
            ("viscosity", self.viscosity),
            ("biharmonic_viscosity", self.biharmonic_viscosity),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(BuildError::invalid(
                    key,
                    format!("must be a non-negative number, got {v}"),
                ));
            }
        }
        super::check_noise(self.noise_std)?;
        let n = self.size;
        let axis: Vec<f64> = (0..n).map(|i| i as f64 / (n - 1) as f64).collect();
        let geometry = Geometry::new(
            vec![Field::grid(
                "psi",
                "stream function",
                "1",
                axis.clone(),
                axis,
            )],
            [None, None],
            CoordinateUnits::Model,
        );
        Ok(OdeModel::new(
            QgTendency::new(self),
            self.integrator,
            self.dt,
            geometry,
            "qg",
        )
        .with_noise(self.noise_std))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::HostStepper;
    use crate::device::{cpu_f64, cpu_f64_autodiff, to_vec};
    use crate::rng::{standard_normal, stream};

    fn config(size: usize) -> QgConfig {
        QgConfig {
            size,
            ..QgConfig::default()
        }
    }

    /// A smooth random stream function, zero on the boundary, of the
    /// magnitude of the model's (tens).
    fn smooth_state(n: usize, seed: u64) -> Vec<f64> {
        let z = standard_normal(&mut stream(seed, "qg-state"), 12);
        let mut psi = vec![0.0; n * n];
        for iy in 1..n - 1 {
            for ix in 1..n - 1 {
                let (x, y) = (
                    ix as f64 / (n - 1) as f64 * std::f64::consts::PI,
                    iy as f64 / (n - 1) as f64 * std::f64::consts::PI,
                );
                let mut v = 0.0;
                for (m, c) in z.chunks(2).enumerate() {
                    let (a, b) = ((m % 3 + 1) as f64, (m / 3 + 1) as f64);
                    v += c[0] * (a * x).sin() * (b * y).sin()
                        + 0.3 * c[1] * (2.0 * a * x).sin() * (3.0 * b * y).sin();
                }
                psi[iy * n + ix] = 10.0 * v;
            }
        }
        psi
    }

    fn tensor(v: &[f64], device: &burn::tensor::Device) -> Tensor<2> {
        Tensor::from_data(TensorData::new(v.to_vec(), [1, v.len()]), device)
    }

    #[test]
    fn the_inversion_solves_the_helmholtz_problem() {
        for n in [9, 17, 33] {
            let t = QgTendency::new(&config(n));
            let f: Vec<f64> = standard_normal(&mut stream(3, "f"), n * n);
            let mut psi = vec![0.0; n * n];
            let mut work = Workspace::default();
            t.helmholtz.solve(&f, &mut psi, &mut work);
            // Boundary zero; (lap - F) psi = f on the interior.
            let mut lap = vec![0.0; n * n];
            t.laplacian(&psi, &mut lap);
            let mut worst: f64 = 0.0;
            for iy in 0..n {
                for ix in 0..n {
                    let i = iy * n + ix;
                    if iy == 0 || ix == 0 || iy == n - 1 || ix == n - 1 {
                        assert_eq!(psi[i], 0.0);
                    } else {
                        let r = lap[i] - t.froude * psi[i] - f[i];
                        worst = worst.max(r.abs());
                    }
                }
            }
            assert!(worst < 1e-9, "n = {n}: residual {worst:e}");
            // The tensor inversion agrees.
            let device = cpu_f64();
            let k = n - 2;
            let mut interior = Vec::new();
            for iy in 1..n - 1 {
                interior.extend_from_slice(&f[iy * n + 1..iy * n + n - 1]);
            }
            let ft = Tensor::<1>::from_data(TensorData::new(interior, [k * k]), &device)
                .reshape([1, k, k]);
            let burn = to_vec(t.solve_tensor(ft));
            for (a, b) in burn.iter().zip(&psi) {
                assert!((a - b).abs() < 1e-12 * b.abs().max(1e-3), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn host_tendency_equals_the_burn_tendency_and_members_are_independent() {
        let device = cpu_f64();
        for n in [9, 33] {
            let t = QgTendency::new(&QgConfig {
                size: n,
                viscosity: 1e-4,
                bottom_friction: 0.1,
                biharmonic_viscosity: 2e-8,
                ..QgConfig::default()
            });
            let a = smooth_state(n, 1);
            let b = smooth_state(n, 2);
            let mut both = a.clone();
            both.extend_from_slice(&b);
            let batch = Tensor::<2>::from_data(TensorData::new(both, [2, n * n]), &device);
            let burn = to_vec(t.tendency(batch, 0.0));
            for (m, x) in [a, b].iter().enumerate() {
                let mut host = vec![0.0; n * n];
                t.eval(x, 0.0, &mut host);
                let scale = host.iter().fold(0.0f64, |s, v| s.max(v.abs()));
                for (h, g) in host.iter().zip(&burn[m * n * n..(m + 1) * n * n]) {
                    assert!((h - g).abs() < 1e-10 * scale, "member {m}: {h} vs {g}");
                }
            }
        }
    }

    /// The hand-written adjoint of the tendency equals burn autodiff of the
    /// tensor tendency; the adjoint of an RK4 step passes the dot-product
    /// test against a centred finite difference.
    #[test]
    fn hand_adjoint_matches_autodiff_and_the_dot_product_test() {
        let ad = cpu_f64_autodiff();
        let n = 17;
        let cfg = QgConfig {
            size: n,
            viscosity: 1e-4,
            bottom_friction: 0.1,
            biharmonic_viscosity: 2e-8,
            ..QgConfig::default()
        };
        let t = QgTendency::new(&cfg);
        let x = smooth_state(n, 4);
        let lambda = standard_normal(&mut stream(5, "lambda"), n * n);
        let mut hand = vec![0.0; n * n];
        t.vjp(&x, 0.0, &lambda, &mut hand);
        let xt = tensor(&x, &ad).require_grad();
        let grads = (t.tendency(xt.clone(), 0.0) * tensor(&lambda, &ad))
            .sum()
            .backward();
        let auto = to_vec(xt.grad(&grads).unwrap());
        let scale = auto.iter().fold(0.0f64, |s, v| s.max(v.abs()));
        for (a, b) in hand.iter().zip(&auto) {
            assert!((a - b).abs() < 1e-10 * scale, "{a} vs {b}");
        }
        // Dot-product test of one RK4 step with dt = 1.25.
        let model = cfg.build().unwrap();
        let mut adj = lambda.clone();
        model.step_vjp(&x, 0.0, &mut adj);
        let dx = smooth_state(n, 6);
        let eps = 1e-4;
        let step = |s: f64| {
            let mut y: Vec<f64> = x.iter().zip(&dx).map(|(a, d)| a + s * d).collect();
            HostStepper::step(&model, &mut y, 0.0);
            y
        };
        let (plus, minus) = (step(eps), step(-eps));
        let tangent: f64 = plus
            .iter()
            .zip(&minus)
            .zip(&lambda)
            .map(|((p, m), l)| (p - m) / (2.0 * eps) * l)
            .sum();
        let adjoint: f64 = dx.iter().zip(&adj).map(|(d, g)| d * g).sum();
        let rel = (tangent - adjoint).abs() / adjoint.abs();
        assert!(rel < 1e-7, "{tangent} vs {adjoint} ({rel:e})");
    }

    /// Without forcing and friction the energy `-1/2 sum psi q` is
    /// conserved (Arakawa's Jacobian and the centred beta term conserve it
    /// exactly in space; RK4 leaves an O(dt^4) drift); without beta, the
    /// enstrophy `1/2 sum q^2` too.
    #[test]
    fn energy_and_enstrophy_are_conserved_without_forcing_and_friction() {
        let n = 33;
        let budget = |beta: f64| {
            let cfg = QgConfig {
                size: n,
                forcing: 0.0,
                biharmonic_viscosity: 0.0,
                beta,
                rossby: 1e-3,
                froude: 10.0,
                dt: 1e-3,
                ..QgConfig::default()
            };
            let model = cfg.build().unwrap();
            let t = &model.tendency;
            let measures = |psi: &[f64]| {
                let mut q = vec![0.0; n * n];
                t.laplacian(psi, &mut q);
                let (mut e, mut z) = (0.0, 0.0);
                for (qi, p) in q.iter_mut().zip(psi) {
                    *qi -= t.froude * p;
                    e -= 0.5 * p * *qi;
                    z += 0.5 * *qi * *qi;
                }
                (e, z)
            };
            let mut psi = smooth_state(n, 7);
            // The budgets' tendencies, -sum psi dq/dt and sum q dq/dt: zero
            // to round-off in space.
            let mut flux = vec![0.0; n * n];
            let mut scratch = vec![0.0; 3 * n * n];
            t.q_flux(&psi, &mut flux, &mut scratch);
            let mut q = vec![0.0; n * n];
            t.laplacian(&psi, &mut q);
            for (qi, p) in q.iter_mut().zip(&psi) {
                *qi -= t.froude * p;
            }
            let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
            let norm = |a: &[f64]| dot(a, a).sqrt();
            let de_dt = dot(&psi, &flux) / (norm(&psi) * norm(&flux));
            let dz_dt = dot(&q, &flux) / (norm(&q) * norm(&flux));
            let (e0, z0) = measures(&psi);
            HostStepper::forecast(&model, &mut psi, 0.0, 100, cfg.dt);
            let (e1, z1) = measures(&psi);
            (de_dt, dz_dt, (e1 - e0) / e0, (z1 - z0) / z0)
        };
        let (rate, _, drift, _) = budget(1.0);
        assert!(rate.abs() < 1e-12, "energy tendency with beta {rate:e}");
        assert!(drift.abs() < 1e-10, "energy drift with beta {drift:e}");
        let (rate_e, rate_z, drift_e, drift_z) = budget(0.0);
        assert!(
            rate_e.abs() < 1e-12 && rate_z.abs() < 1e-12,
            "{rate_e:e} {rate_z:e}"
        );
        assert!(
            drift_e.abs() < 1e-10 && drift_z.abs() < 1e-10,
            "{drift_e:e} {drift_z:e}"
        );
    }

    /// The wind-driven double gyre is symmetric under
    /// `psi(x, y) -> -psi(x, 1 - y)`: a mirrored state steps to the
    /// mirrored step.
    #[test]
    fn the_mirror_symmetry_of_the_double_gyre_holds() {
        let n = 33;
        let model = config(n).build().unwrap();
        let mirror = |psi: &[f64]| {
            let mut out = vec![0.0; n * n];
            for iy in 0..n {
                for ix in 0..n {
                    out[(n - 1 - iy) * n + ix] = -psi[iy * n + ix];
                }
            }
            out
        };
        let psi = smooth_state(n, 8);
        let mut a = psi.clone();
        HostStepper::forecast(&model, &mut a, 0.0, 8, model.dt);
        let mut b = mirror(&psi);
        HostStepper::forecast(&model, &mut b, 0.0, 8, model.dt);
        let scale = a.iter().fold(0.0f64, |s, v| s.max(v.abs()));
        for (x, y) in mirror(&a).iter().zip(&b) {
            assert!((x - y).abs() < 1e-10 * scale, "{x} vs {y}");
        }
    }

    #[test]
    fn bad_values_are_named() {
        for (cfg, key) in [
            (
                QgConfig {
                    size: 3,
                    ..QgConfig::default()
                },
                "size",
            ),
            (
                QgConfig {
                    froude: 0.0,
                    ..QgConfig::default()
                },
                "froude",
            ),
            (
                QgConfig {
                    biharmonic_viscosity: -1.0,
                    ..QgConfig::default()
                },
                "biharmonic_viscosity",
            ),
        ] {
            let err = cfg.build().err().unwrap().to_string();
            assert!(err.contains(key), "{err}");
        }
    }
}
