//! The mEVP sub-iterations as one CPU kernel with its own backward,
//! registered in burn's autodiff (a custom operation, as JAX's
//! `custom_vjp`).
//!
//! # Why
//! Written in burn ops ([`mevp::solve`](super::mevp::solve)), one
//! sub-iteration is about fifty tensor operations, each a pass over memory
//! with its own allocation and, under autodiff, its own graph node: at 256²
//! the step ran 5x from what a copy of the same bytes reaches, and 3x
//! behind JAX, whose XLA fuses the stencil. Here the whole solve is two
//! passes per sub-iteration (stresses at the cells, then velocities at the
//! nodes) in plain Rust over `f64` slices, and its gradient a hand-written
//! adjoint of those passes.
//!
//! # The operation
//! One tensor in, one out, so that it is a single node in burn's graph:
//! `x = [u^n, v^n, sxx, syy, sxy, P, dt/m, tau_x, tau_y, rho_o C_o]` per
//! member (`[m, 5 N + 4 C + 1]`, `N` nodes and `C` cells) gives
//! `y = [u, v, sxx, syy, sxy]` after the sub-iterations
//! (`[m, 2 N + 3 C]`). The ocean current, the masks and a moving wall are
//! constants of the [`Plan`]. Packing and unpacking are ordinary burn ops,
//! so gradients reach the thickness, the concentration, `P*`, `C_o` and the
//! wind stress through them as before.
//!
//! # Backward
//! The adjoint of a sub-iteration needs the velocity it started from and
//! the stress divergence it computed; the stresses enter linearly and are
//! not needed. The backward pass reruns the forward from the inputs,
//! keeping the full state every `ceil(sqrt K)` sub-iterations, then for
//! each segment, last first, reruns it keeping `u, v` and the force of
//! each sub-iteration and pulls the adjoint back through it. Memory is
//! `O(sqrt K)` states per member; the cost about two forward solves plus
//! the adjoint's three passes per sub-iteration.
//!
//! The kernel runs on the Flex (CPU) backend, plain or under autodiff;
//! anywhere else [`mevp::solve`](super::mevp::solve) uses the burn ops.
//! Members run in parallel; one member runs its rows in parallel when the
//! grid is large. Every value is computed by one thread and every sum is
//! taken in a fixed order, so the numbers do not depend on the thread count.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, DispatchTensorKind, Flex, backend_extension};
use burn::tensor::{DType, Tensor, TensorData};
use rayon::prelude::*;

use super::mevp::SQRT_FLOOR;

/// Cells per member above which one member's rows run in parallel.
const PARALLEL_CELLS: usize = 16_384;

/// The constants of one solve.
#[derive(Debug)]
pub(crate) struct Plan {
    pub ny: usize,
    pub nx: usize,
    /// `0.5 / dx`, `0.5 / dy`.
    pub kx: f64,
    pub ky: f64,
    /// `1 / alpha`.
    pub ra: f64,
    pub beta: f64,
    /// `1 / e^2`.
    pub e2: f64,
    pub delta_min: f64,
    /// `f dt`.
    pub b: f64,
    pub iterations: usize,
    pub nodes: Arc<NodeConstants>,
    /// When given, the RMS velocity change of every sub-iteration, over the
    /// members and the active nodes (m/s).
    pub residuals: Option<Mutex<Vec<f64>>>,
}

/// What a solve takes from the model at the nodes and never changes.
#[derive(Debug)]
pub(crate) struct NodeConstants {
    pub uo: Vec<f64>,
    pub vo: Vec<f64>,
    /// 1 at active nodes, 0 elsewhere.
    pub mask: Vec<f64>,
    /// A moving wall's velocities (zero elsewhere, and everywhere without
    /// one).
    pub wall: [Vec<f64>; 2],
    /// Whether there is a moving wall.
    pub moving_wall: bool,
}

impl Plan {
    fn n(&self) -> usize {
        (self.ny + 1) * (self.nx + 1)
    }
    fn c(&self) -> usize {
        self.ny * self.nx
    }
    /// Length of one member's input.
    pub fn input_len(&self) -> usize {
        5 * self.n() + 4 * self.c() + 1
    }
    /// Length of one member's output.
    pub fn output_len(&self) -> usize {
        2 * self.n() + 3 * self.c()
    }
    fn parallel_rows(&self) -> bool {
        self.c() >= PARALLEL_CELLS
    }
}

/// The shared handle the backend extension passes around.
#[derive(Clone, Debug)]
pub(crate) struct PlanRef(pub Arc<Plan>);

#[backend_extension(Flex, Autodiff)]
pub(crate) trait MevpKernel: Backend {
    /// The mEVP sub-iterations on a packed `[m, input_len]` batch.
    fn mevp_fused(x: FloatTensor<Self>, plan: PlanRef) -> FloatTensor<Self>;
}

impl MevpKernel for Flex {
    fn mevp_fused(x: FloatTensor<Self>, plan: PlanRef) -> FloatTensor<Self> {
        forward_flex(&x, &plan.0)
    }
}

impl<C: CheckpointStrategy> MevpKernel for Autodiff<Flex, C> {
    fn mevp_fused(x: FloatTensor<Self>, plan: PlanRef) -> FloatTensor<Self> {
        match MevpBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let input = x.primitive().clone();
                let out = forward_flex(&input, &plan.0);
                prep.finish((input, plan), out)
            }
            OpsKind::UnTracked(prep) => {
                let out = forward_flex(x.primitive(), &plan.0);
                prep.finish(out)
            }
        }
    }
}

#[derive(Debug)]
struct MevpBackward;

impl Backward<Flex, 1> for MevpBackward {
    type State = (FlexTensor, PlanRef);

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [parent] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        if let Some(node) = parent {
            let (x, plan) = ops.state;
            let dtype = x.dtype();
            let (x, dims) = host(&x);
            let (gy, _) = host(&grad);
            let gx = adjoint(&plan.0, &x, &gy, dims[0]);
            grads.register::<Flex>(node.id, device_tensor(gx, dims, dtype));
        }
    }
}

/// Whether the fused kernel can run on this tensor's backend.
pub(crate) fn available<const D: usize>(x: &Tensor<D>) -> bool {
    match x.clone().into_dispatch().kind {
        DispatchTensorKind::Flex(_) => true,
        DispatchTensorKind::Autodiff(inner) => matches!(*inner, DispatchTensorKind::Flex(_)),
        #[allow(unreachable_patterns)]
        _ => false,
    }
}

/// The solve on a packed batch (see the module doc for the layout).
pub(crate) fn solve(x: Tensor<2>, plan: Arc<Plan>) -> Tensor<2> {
    use burn::backend::Dispatch;
    Tensor::from_dispatch(<Dispatch as MevpKernel>::mevp_fused(
        x.into_dispatch(),
        PlanRef(plan),
    ))
}

/// A Flex tensor's values as `f64` (borrowed when they are already) and
/// its shape.
pub(crate) fn host(t: &FlexTensor) -> (Cow<'_, [f64]>, Vec<usize>) {
    let dims = t.layout().shape().to_vec();
    let values = match t.as_slice::<f64>() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(
            t.clone()
                .into_data()
                .convert::<f64>()
                .try_to_vec::<f64>()
                .expect("f64 values"),
        ),
    };
    (values, dims)
}

/// `values` of shape `dims` as a Flex tensor of `dtype`.
pub(crate) fn device_tensor(values: Vec<f64>, dims: Vec<usize>, dtype: DType) -> FlexTensor {
    let data = TensorData::new(values, dims);
    let data = if dtype == DType::F64 {
        data
    } else {
        data.convert_dtype(dtype)
    };
    FlexTensor::from_data(data)
}

fn forward_flex(x: &FlexTensor, plan: &Plan) -> FlexTensor {
    let dtype = x.dtype();
    let (values, dims) = host(x);
    let members = dims[0];
    assert_eq!(dims[1], plan.input_len(), "packed mEVP input length");
    let out_len = plan.output_len();
    let mut out = vec![0.0; members * out_len];
    let residuals = plan.residuals.is_some();
    let sums: Vec<Vec<f64>> = if members > 1 {
        values
            .par_chunks(plan.input_len())
            .zip(out.par_chunks_mut(out_len))
            .map(|(x, y)| forward_member(plan, x, y, false, residuals))
            .collect()
    } else {
        vec![forward_member(
            plan,
            &values,
            &mut out,
            plan.parallel_rows(),
            residuals,
        )]
    };
    if let Some(sink) = &plan.residuals {
        let active = plan.nodes.mask.iter().sum::<f64>().max(1.0);
        let mut sink = sink.lock().expect("residual sink");
        for k in 0..plan.iterations {
            let total: f64 = sums.iter().map(|s| s[k]).sum();
            sink.push((total / (members as f64 * active)).sqrt());
        }
    }
    device_tensor(out, vec![members, out_len], dtype)
}

/// One member's inputs, split.
struct Inputs<'a> {
    strength: &'a [f64],
    dtm: &'a [f64],
    tx: &'a [f64],
    ty: &'a [f64],
    drag: f64,
    /// `u^n + dtm tau_x - f dt v_o` and `v^n + dtm tau_y + f dt u_o`.
    rhs_u: Vec<f64>,
    rhs_v: Vec<f64>,
}

/// Velocity and stress invariants `s1 = sxx + syy`, `s2 = sxx - syy`.
#[derive(Clone)]
struct State {
    u: Vec<f64>,
    v: Vec<f64>,
    s1: Vec<f64>,
    s2: Vec<f64>,
    sxy: Vec<f64>,
}

fn split<'a>(plan: &Plan, x: &'a [f64]) -> (State, Inputs<'a>) {
    let (n, c) = (plan.n(), plan.c());
    let mut at = 0;
    let mut take = |len: usize| {
        let s = &x[at..at + len];
        at += len;
        s
    };
    let (u, v) = (take(n), take(n));
    let (sxx, syy, sxy) = (take(c), take(c), take(c));
    let strength = take(c);
    let dtm = take(n);
    let (tx, ty) = (take(n), take(n));
    let drag = take(1)[0];
    let k = &plan.nodes;
    let rhs_u = (0..n)
        .map(|i| u[i] + dtm[i] * tx[i] - k.vo[i] * plan.b)
        .collect();
    let rhs_v = (0..n)
        .map(|i| v[i] + dtm[i] * ty[i] + k.uo[i] * plan.b)
        .collect();
    let state = State {
        u: u.to_vec(),
        v: v.to_vec(),
        s1: sxx.iter().zip(syy).map(|(a, b)| a + b).collect(),
        s2: sxx.iter().zip(syy).map(|(a, b)| a - b).collect(),
        sxy: sxy.to_vec(),
    };
    let inputs = Inputs {
        strength,
        dtm,
        tx,
        ty,
        drag,
        rhs_u,
        rhs_v,
    };
    (state, inputs)
}

/// Runs `f(row, chunks...)` over the rows of equally long arrays, in
/// parallel when asked; returns what each row gives, in row order.
macro_rules! rows {
    ($par:expr, $w:expr, [$($a:expr),+], $f:expr) => {{
        let f = $f;
        if $par {
            rows!(@zip par_chunks_mut, $w, [$($a),+])
                .enumerate()
                .map(|(j, t)| f(j, t))
                .collect::<Vec<_>>()
        } else {
            rows!(@zip chunks_mut, $w, [$($a),+])
                .enumerate()
                .map(|(j, t)| f(j, t))
                .collect::<Vec<_>>()
        }
    }};
    (@zip $m:ident, $w:expr, [$a:expr]) => { $a.$m($w) };
    (@zip $m:ident, $w:expr, [$a:expr, $b:expr]) => { $a.$m($w).zip($b.$m($w)) };
    (@zip $m:ident, $w:expr, [$a:expr, $b:expr, $c:expr]) => {
        $a.$m($w).zip($b.$m($w)).zip($c.$m($w))
    };
    (@zip $m:ident, $w:expr, [$a:expr, $b:expr, $c:expr, $d:expr]) => {
        $a.$m($w).zip($b.$m($w)).zip($c.$m($w)).zip($d.$m($w))
    };
}

/// Strain rates `(d, d_t, d_s)` of cell `(j, i)` and the node indices of
/// its corners `(sw, se, nw, ne)`.
#[inline(always)]
fn strain(plan: &Plan, u: &[f64], v: &[f64], j: usize, i: usize) -> ([f64; 3], [usize; 4]) {
    let w = plan.nx + 1;
    let (sw, se, nw, ne) = (
        j * w + i,
        j * w + i + 1,
        (j + 1) * w + i,
        (j + 1) * w + i + 1,
    );
    let (pu, qu) = (u[ne] - u[sw], u[se] - u[nw]);
    let (pv, qv) = (v[ne] - v[sw], v[se] - v[nw]);
    let (ux, uy) = ((pu + qu) * plan.kx, (pu - qu) * plan.ky);
    let (vx, vy) = ((pv + qv) * plan.kx, (pv - qv) * plan.ky);
    ([ux + vy, ux - vy, uy + vx], [sw, se, nw, ne])
}

// The forward passes are written row by row over exactly sliced rows, with
// no branches, so that they vectorise (`wide_fn!`: AVX2 where the CPU has
// it); each element is the IEEE operation of the burn-ops solve, in its
// order, so the two give the same bits.

crate::wide_fn! {
    /// The stress relaxation of cell row `j` from node rows `j` (`u0, v0`)
    /// and `j + 1` (`u1, v1`), in place.
    #[allow(clippy::too_many_arguments)]
    fn stress_row(
        plan: &Plan,
        u0: &[f64],
        u1: &[f64],
        v0: &[f64],
        v1: &[f64],
        strength: &[f64],
        s1: &mut [f64],
        s2: &mut [f64],
        sxy: &mut [f64],
    ) {
        let nx = s1.len();
        let (s2, sxy, strength) = (&mut s2[..nx], &mut sxy[..nx], &strength[..nx]);
        let (usw, use_, unw, une) = (&u0[..nx], &u0[1..=nx], &u1[..nx], &u1[1..=nx]);
        let (vsw, vse, vnw, vne) = (&v0[..nx], &v0[1..=nx], &v1[..nx], &v1[1..=nx]);
        let (ra, e2, kx, ky, dmin) = (plan.ra, plan.e2, plan.kx, plan.ky, plan.delta_min);
        let (keep, c2, c3) = (1.0 - ra, e2 * ra, 0.5 * e2 * ra);
        for i in 0..nx {
            let (pu, qu) = (une[i] - usw[i], use_[i] - unw[i]);
            let (pv, qv) = (vne[i] - vsw[i], vse[i] - vnw[i]);
            let (ux, uy) = ((pu + qu) * kx, (pu - qu) * ky);
            let (vx, vy) = ((pv + qv) * kx, (pv - qv) * ky);
            let (d, dt, ds) = (ux + vy, ux - vy, uy + vx);
            let delta = (d * d + (dt * dt + ds * ds) * e2 + SQRT_FLOOR).sqrt();
            let tz = strength[i] * (delta + dmin).recip();
            s1[i] = s1[i] * keep + tz * (d - delta) * ra;
            s2[i] = s2[i] * keep + tz * dt * c2;
            sxy[i] = sxy[i] * keep + tz * ds * c3;
        }
    }
}

crate::wide_fn! {
    /// The stress divergence at the nodes of an interior node row from the
    /// cell rows below (`*0`) and above (`*1`) it; zero at the row's two
    /// wall nodes.
    #[allow(clippy::too_many_arguments)]
    fn force_row(
        kx: f64,
        ky: f64,
        a0: &[f64],
        a1: &[f64],
        b0: &[f64],
        b1: &[f64],
        x0: &[f64],
        x1: &[f64],
        fx: &mut [f64],
        fy: &mut [f64],
    ) {
        let w = fx.len();
        let m = w - 2;
        fx[0] = 0.0;
        fy[0] = 0.0;
        fx[w - 1] = 0.0;
        fy[w - 1] = 0.0;
        let (fx, fy) = (&mut fx[1..=m], &mut fy[1..=m]);
        // s1 (a), s2 (b), sxy (x) at the south-west, south-east, north-west
        // and north-east cells of each node.
        let (asw, ase, anw, ane) = (&a0[..m], &a0[1..=m], &a1[..m], &a1[1..=m]);
        let (bsw, bse, bnw, bne) = (&b0[..m], &b0[1..=m], &b1[..m], &b1[1..=m]);
        let (xsw, xse, xnw, xne) = (&x0[..m], &x0[1..=m], &x1[..m], &x1[1..=m]);
        for k in 0..m {
            let sxx = |a: f64, b: f64| (a + b) * 0.5;
            let syy = |a: f64, b: f64| (a - b) * 0.5;
            let pxx = sxx(ane[k], bne[k]) - sxx(asw[k], bsw[k]);
            let qxx = sxx(ase[k], bse[k]) - sxx(anw[k], bnw[k]);
            let pyy = syy(ane[k], bne[k]) - syy(asw[k], bsw[k]);
            let qyy = syy(ase[k], bse[k]) - syy(anw[k], bnw[k]);
            let (pxy, qxy) = (xne[k] - xsw[k], xse[k] - xnw[k]);
            fx[k] = (pxx + qxx) * kx + (pxy - qxy) * ky;
            fy[k] = (pxy + qxy) * kx + (pyy - qyy) * ky;
        }
    }
}

/// Four arrays' chunks of one row, as [`rows!`] zips them.
type Rows4<'a> = (
    ((&'a mut [f64], &'a mut [f64]), &'a mut [f64]),
    &'a mut [f64],
);

/// A row's node constants and inputs for [`velocity_row`].
struct NodeRow<'a> {
    u: &'a [f64],
    v: &'a [f64],
    rhs_u: &'a [f64],
    rhs_v: &'a [f64],
    dtm: &'a [f64],
    uo: &'a [f64],
    vo: &'a [f64],
    mask: &'a [f64],
    wu: &'a [f64],
    wv: &'a [f64],
}

crate::wide_fn! {
    /// The implicit velocity update of a node row.
    #[allow(clippy::too_many_arguments)]
    fn velocity_row(
        beta: f64,
        b: f64,
        drag: f64,
        r: &NodeRow,
        fx: &[f64],
        fy: &[f64],
        u1: &mut [f64],
        v1: &mut [f64],
    ) {
        let w = u1.len();
        let v1 = &mut v1[..w];
        let (fx, fy) = (&fx[..w], &fy[..w]);
        let (u, v, rhs_u, rhs_v) = (&r.u[..w], &r.v[..w], &r.rhs_u[..w], &r.rhs_v[..w]);
        let (dtm, uo, vo, mask) = (&r.dtm[..w], &r.uo[..w], &r.vo[..w], &r.mask[..w]);
        let (wu, wv) = (&r.wu[..w], &r.wv[..w]);
        for i in 0..w {
            let (du, dv) = (uo[i] - u[i], vo[i] - v[i]);
            let speed = (du * du + dv * dv + SQRT_FLOOR).sqrt();
            let cwd = drag * speed * dtm[i];
            let a = cwd + (beta + 1.0);
            let rx = u[i] * beta + rhs_u[i] + dtm[i] * fx[i] + cwd * uo[i];
            let ry = v[i] * beta + rhs_v[i] + dtm[i] * fy[i] + cwd * vo[i];
            let inv = (a * a + b * b).recip() * mask[i];
            u1[i] = (a * rx + ry * b) * inv + wu[i];
            v1[i] = (a * ry - rx * b) * inv + wv[i];
        }
    }
}

/// The coefficients of the implicit velocity update at node `k` from
/// velocity `(u, v)`: `(C_w dt/m, A = C_w dt/m + beta + 1, speed, u_o - u,
/// v_o - v)`.
#[inline(always)]
fn drag_terms(plan: &Plan, inp: &Inputs, u: f64, v: f64, k: usize) -> (f64, f64, f64, f64, f64) {
    let (uo, vo) = (plan.nodes.uo[k], plan.nodes.vo[k]);
    let (du, dv) = (uo - u, vo - v);
    let speed = (du * du + dv * dv + SQRT_FLOOR).sqrt();
    let cwd = inp.drag * speed * inp.dtm[k];
    (cwd, cwd + (plan.beta + 1.0), speed, du, dv)
}

/// Velocities and the force of a sub-iteration at the nodes: the next
/// velocities while it runs ([`iterate`]'s scratch), or the velocities it
/// started from on the backward pass's tape.
struct NodeFields {
    u: Vec<f64>,
    v: Vec<f64>,
    fx: Vec<f64>,
    fy: Vec<f64>,
}

impl NodeFields {
    fn new(n: usize) -> Self {
        Self {
            u: vec![0.0; n],
            v: vec![0.0; n],
            fx: vec![0.0; n],
            fy: vec![0.0; n],
        }
    }
}

/// `len` values of `a` from `start`.
fn span(a: &[f64], start: usize, len: usize) -> &[f64] {
    &a[start..start + len]
}

/// One sub-iteration in place (the force is left in `scratch`); returns
/// the sum of the squared velocity change when `residual`.
fn iterate(
    plan: &Plan,
    s: &mut State,
    inp: &Inputs,
    scratch: &mut NodeFields,
    residual: bool,
    par: bool,
) -> f64 {
    let (ny, nx) = (plan.ny, plan.nx);
    let w = nx + 1;
    {
        let (u, v) = (&s.u, &s.v);
        rows!(par, nx, [s.s1, s.s2, s.sxy], |j: usize,
                                             ((s1, s2), sxy): (
            (&mut [f64], &mut [f64]),
            &mut [f64]
        )| {
            let (n0, n1) = (j * w, (j + 1) * w);
            stress_row(
                plan,
                &u[n0..n0 + w],
                &u[n1..n1 + w],
                &v[n0..n0 + w],
                &v[n1..n1 + w],
                &inp.strength[j * nx..(j + 1) * nx],
                s1,
                s2,
                sxy,
            );
        });
    }
    let k = &plan.nodes;
    let sums = rows!(
        par,
        w,
        [scratch.u, scratch.v, scratch.fx, scratch.fy],
        |jj: usize, (((u1, v1), fx), fy): Rows4<'_>| {
            if jj == 0 || jj == ny {
                fx.fill(0.0);
                fy.fill(0.0);
            } else {
                let (c0, c1) = ((jj - 1) * nx, jj * nx);
                let row = |a, c| span(a, c, nx);
                force_row(
                    plan.kx,
                    plan.ky,
                    row(&s.s1, c0),
                    row(&s.s1, c1),
                    row(&s.s2, c0),
                    row(&s.s2, c1),
                    row(&s.sxy, c0),
                    row(&s.sxy, c1),
                    fx,
                    fy,
                );
            }
            let at = |a| span(a, jj * w, w);
            let r = NodeRow {
                u: at(&s.u),
                v: at(&s.v),
                rhs_u: at(&inp.rhs_u),
                rhs_v: at(&inp.rhs_v),
                dtm: at(inp.dtm),
                uo: at(&k.uo),
                vo: at(&k.vo),
                mask: at(&k.mask),
                wu: at(&k.wall[0]),
                wv: at(&k.wall[1]),
            };
            velocity_row(plan.beta, plan.b, inp.drag, &r, fx, fy, u1, v1);
            if residual {
                let mut sum = 0.0;
                for i in 0..w {
                    let (du, dv) = (u1[i] - r.u[i], v1[i] - r.v[i]);
                    sum += du * du + dv * dv;
                }
                sum
            } else {
                0.0
            }
        }
    );
    std::mem::swap(&mut s.u, &mut scratch.u);
    std::mem::swap(&mut s.v, &mut scratch.v);
    sums.iter().sum()
}

fn forward_member(plan: &Plan, x: &[f64], y: &mut [f64], par: bool, residuals: bool) -> Vec<f64> {
    let (mut s, inp) = split(plan, x);
    let mut scratch = NodeFields::new(plan.n());
    let mut sums = Vec::with_capacity(if residuals { plan.iterations } else { 0 });
    for _ in 0..plan.iterations {
        let sum = iterate(plan, &mut s, &inp, &mut scratch, residuals, par);
        if residuals {
            sums.push(sum);
        }
    }
    let (n, c) = (plan.n(), plan.c());
    y[..n].copy_from_slice(&s.u);
    y[n..2 * n].copy_from_slice(&s.v);
    for k in 0..c {
        y[2 * n + k] = (s.s1[k] + s.s2[k]) * 0.5;
        y[2 * n + c + k] = (s.s1[k] - s.s2[k]) * 0.5;
    }
    y[2 * n + 2 * c..].copy_from_slice(&s.sxy);
    sums
}

/// The gradient of a scalar with respect to the packed input `x`, given its
/// gradient `gy` with respect to the output.
fn adjoint(plan: &Plan, x: &[f64], gy: &[f64], members: usize) -> Vec<f64> {
    let (lin, lout) = (plan.input_len(), plan.output_len());
    let mut gx = vec![0.0; members * lin];
    if members > 1 {
        gx.par_chunks_mut(lin)
            .zip(x.par_chunks(lin))
            .zip(gy.par_chunks(lout))
            .for_each(|((g, x), gy)| adjoint_member(plan, x, gy, g, false));
    } else {
        adjoint_member(plan, x, gy, &mut gx, plan.parallel_rows());
    }
    gx
}

/// Adjoint variables at a node.
#[derive(Clone, Copy, Default)]
struct NodeAdjoint {
    /// Of the velocity of the current sub-iteration.
    u: f64,
    v: f64,
    /// Of the force (scratch, one sub-iteration).
    fx: f64,
    fy: f64,
    /// Accumulated over the sub-iterations.
    rhs_u: f64,
    rhs_v: f64,
    dtm: f64,
}

/// Adjoint variables at a cell.
#[derive(Clone, Copy, Default)]
struct CellAdjoint {
    /// Of the stress invariants of the current sub-iteration.
    s1: f64,
    s2: f64,
    sxy: f64,
    /// Accumulated over the sub-iterations.
    strength: f64,
    /// Of the corner differences `(p_u, q_u, p_v, q_v)` of the strain
    /// rates (scratch, one sub-iteration).
    diff: [f64; 4],
}

fn adjoint_member(plan: &Plan, x: &[f64], gy: &[f64], gx: &mut [f64], par: bool) {
    let (n, c) = (plan.n(), plan.c());
    let k = plan.iterations;
    let (start, inp) = split(plan, x);
    let seg = ((k as f64).sqrt().ceil() as usize).max(1);
    // Forward, keeping the state at the start of every segment.
    let mut checkpoints = Vec::with_capacity(k.div_ceil(seg));
    let mut s = start;
    let mut scratch = NodeFields::new(n);
    for p in 0..k {
        if p % seg == 0 {
            checkpoints.push(s.clone());
        }
        iterate(plan, &mut s, &inp, &mut scratch, false, par);
    }
    drop(s);
    let mut nodes: Vec<NodeAdjoint> = (0..n)
        .map(|i| NodeAdjoint {
            u: gy[i],
            v: gy[n + i],
            ..Default::default()
        })
        .collect();
    let mut cells: Vec<CellAdjoint> = (0..c)
        .map(|i| {
            let (gxx, gyy) = (gy[2 * n + i], gy[2 * n + c + i]);
            CellAdjoint {
                s1: (gxx + gyy) * 0.5,
                s2: (gxx - gyy) * 0.5,
                sxy: gy[2 * n + 2 * c + i],
                ..Default::default()
            }
        })
        .collect();
    let mut drag = 0.0;
    // Each segment, last first: rerun it keeping velocities and forces.
    let mut tape: Vec<NodeFields> = (0..seg.min(k)).map(|_| NodeFields::new(n)).collect();
    for (index, checkpoint) in checkpoints.into_iter().enumerate().rev() {
        let first = index * seg;
        let len = (first + seg).min(k) - first;
        let mut s = checkpoint;
        for t in tape.iter_mut().take(len) {
            t.u.copy_from_slice(&s.u);
            t.v.copy_from_slice(&s.v);
            iterate(plan, &mut s, &inp, &mut scratch, false, par);
            std::mem::swap(&mut t.fx, &mut scratch.fx);
            std::mem::swap(&mut t.fy, &mut scratch.fy);
        }
        for t in tape.iter().take(len).rev() {
            drag += adjoint_velocity(plan, &inp, t, &mut nodes, par);
            adjoint_stress(plan, &inp, t, &nodes, &mut cells, par);
            adjoint_strain(plan, &cells, &mut nodes, par);
        }
    }
    // The inputs: u^n enters as the first iterate and in the right-hand side.
    let mut at = 0;
    let mut put = |values: &mut dyn Iterator<Item = f64>| {
        for value in values {
            gx[at] = value;
            at += 1;
        }
    };
    put(&mut nodes.iter().map(|a| a.u + a.rhs_u));
    put(&mut nodes.iter().map(|a| a.v + a.rhs_v));
    put(&mut cells.iter().map(|a| a.s1 + a.s2));
    put(&mut cells.iter().map(|a| a.s1 - a.s2));
    put(&mut cells.iter().map(|a| a.sxy));
    put(&mut cells.iter().map(|a| a.strength));
    put(&mut (0..n).map(|i| {
        let a = &nodes[i];
        a.dtm + a.rhs_u * inp.tx[i] + a.rhs_v * inp.ty[i]
    }));
    put(&mut nodes.iter().zip(inp.dtm).map(|(a, d)| a.rhs_u * d));
    put(&mut nodes.iter().zip(inp.dtm).map(|(a, d)| a.rhs_v * d));
    put(&mut std::iter::once(drag));
}

/// Back through the velocity update of a taped sub-iteration: each node's
/// `u, v` go from the adjoint of the new velocity to the part of the old
/// velocity's through the update, `fx, fy` receive the force's adjoint, and
/// the right-hand side's and `dt/m`'s accumulate. Returns the drag
/// coefficient's adjoint.
fn adjoint_velocity(
    plan: &Plan,
    inp: &Inputs,
    t: &NodeFields,
    nodes: &mut [NodeAdjoint],
    par: bool,
) -> f64 {
    let w = plan.nx + 1;
    let k = &plan.nodes;
    let b = plan.b;
    let sums = rows!(par, w, [nodes], |jj: usize, row: &mut [NodeAdjoint]| {
        let mut drag = 0.0;
        for (ii, a) in row.iter_mut().enumerate() {
            let n = jj * w + ii;
            if k.mask[n] == 0.0 {
                (a.u, a.v, a.fx, a.fy) = (0.0, 0.0, 0.0, 0.0);
                continue;
            }
            let (u, v) = (t.u[n], t.v[n]);
            let (cwd, aa, speed, du, dv) = drag_terms(plan, inp, u, v, n);
            let dtm = inp.dtm[n];
            let rx = u * plan.beta + inp.rhs_u[n] + dtm * t.fx[n] + cwd * k.uo[n];
            let ry = v * plan.beta + inp.rhs_v[n] + dtm * t.fy[n] + cwd * k.vo[n];
            let inv = (aa * aa + b * b).recip();
            let (u0, v0) = ((aa * rx + ry * b) * inv, (aa * ry - rx * b) * inv);
            let lrx = (a.u * aa - a.v * b) * inv;
            let lry = (a.u * b + a.v * aa) * inv;
            let la = (a.u * (rx - 2.0 * aa * u0) + a.v * (ry - 2.0 * aa * v0)) * inv;
            let lcwd = lrx * k.uo[n] + lry * k.vo[n] + la;
            drag += lcwd * speed * dtm;
            // d speed / d u = -du / speed.
            let lspeed = lcwd * inp.drag * dtm / speed;
            a.u = plan.beta * lrx - lspeed * du;
            a.v = plan.beta * lry - lspeed * dv;
            a.fx = lrx * dtm;
            a.fy = lry * dtm;
            a.rhs_u += lrx;
            a.rhs_v += lry;
            a.dtm += lrx * t.fx[n] + lry * t.fy[n] + lcwd * inp.drag * speed;
        }
        drag
    });
    sums.iter().sum()
}

/// Back through the stress divergence and the stress relaxation of a taped
/// sub-iteration: each cell's invariants' adjoint goes from the new
/// stresses' (plus what the force gives) to the old stresses', the
/// strength's accumulates, and `diff` receives the strain's corner
/// differences' adjoint.
fn adjoint_stress(
    plan: &Plan,
    inp: &Inputs,
    t: &NodeFields,
    nodes: &[NodeAdjoint],
    cells: &mut [CellAdjoint],
    par: bool,
) {
    let nx = plan.nx;
    let (ra, e2, kx, ky) = (plan.ra, plan.e2, plan.kx, plan.ky);
    rows!(par, nx, [cells], |j: usize, row: &mut [CellAdjoint]| {
        for (i, a) in row.iter_mut().enumerate() {
            let ([d, dt, ds], [sw, se, nw, ne]) = strain(plan, &t.u, &t.v, j, i);
            // The force's adjoint, gathered (the negative transpose of the
            // divergence is the strain-rate stencil).
            let (fsw, fse, fnw, fne) = (&nodes[sw], &nodes[se], &nodes[nw], &nodes[ne]);
            let lxx = kx * (fsw.fx - fne.fx + fnw.fx - fse.fx);
            let lxy =
                ky * (fsw.fx - fne.fx - fnw.fx + fse.fx) + kx * (fsw.fy - fne.fy + fnw.fy - fse.fy);
            let lyy = ky * (fsw.fy - fne.fy - fnw.fy + fse.fy);
            let ls1 = a.s1 + (lxx + lyy) * 0.5;
            let ls2 = a.s2 + (lxx - lyy) * 0.5;
            let lsxy = a.sxy + lxy;
            let delta = (d * d + (dt * dt + ds * ds) * e2 + SQRT_FLOOR).sqrt();
            let inv = (delta + plan.delta_min).recip();
            let tz = inp.strength[j * nx + i] * inv;
            let ltz = ls1 * (d - delta) * ra + ls2 * dt * (e2 * ra) + lsxy * ds * (0.5 * e2 * ra);
            a.strength += ltz * inv;
            let ldelta = -ls1 * tz * ra - ltz * tz * inv;
            let ld = ls1 * tz * ra + ldelta * d / delta;
            let ldt = ls2 * tz * (e2 * ra) + ldelta * dt * e2 / delta;
            let lds = lsxy * tz * (0.5 * e2 * ra) + ldelta * ds * e2 / delta;
            let (lux, lvy, luy, lvx) = (ld + ldt, ld - ldt, lds, lds);
            a.diff = [
                lux * kx + luy * ky,
                lux * kx - luy * ky,
                lvx * kx + lvy * ky,
                lvx * kx - lvy * ky,
            ];
            a.s1 = ls1 * (1.0 - ra);
            a.s2 = ls2 * (1.0 - ra);
            a.sxy = lsxy * (1.0 - ra);
        }
    });
}

/// Adds the strain rates' part to the old velocity's adjoint: node `(J,
/// I)` is the north-east corner of cell `(J - 1, I - 1)`, the south-west of
/// `(J, I)`, the south-east of `(J, I - 1)` and the north-west of
/// `(J - 1, I)`, with `p = ne - sw` and `q = se - nw`.
fn adjoint_strain(plan: &Plan, cells: &[CellAdjoint], nodes: &mut [NodeAdjoint], par: bool) {
    let (ny, nx) = (plan.ny, plan.nx);
    let w = nx + 1;
    rows!(par, w, [nodes], |jj: usize, row: &mut [NodeAdjoint]| {
        for (ii, a) in row.iter_mut().enumerate() {
            let cell = |j: usize, i: usize| &cells[j * nx + i].diff;
            let (mut lu, mut lv) = (0.0, 0.0);
            if jj >= 1 && ii >= 1 {
                let d = cell(jj - 1, ii - 1);
                lu += d[0];
                lv += d[2];
            }
            if jj < ny && ii < nx {
                let d = cell(jj, ii);
                lu -= d[0];
                lv -= d[2];
            }
            if jj < ny && ii >= 1 {
                let d = cell(jj, ii - 1);
                lu += d[1];
                lv += d[3];
            }
            if jj >= 1 && ii < nx {
                let d = cell(jj - 1, ii);
                lu -= d[1];
                lv -= d[3];
            }
            a.u += lu;
            a.v += lv;
        }
    });
}
