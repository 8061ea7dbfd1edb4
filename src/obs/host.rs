//! Nonlinear observation operators written on the host, with a
//! hand-written vector-Jacobian product, as one node in burn's graph (a
//! custom operation, as JAX's `custom_vjp`; the fused mEVP kernel is the
//! same pattern).
//!
//! # Why
//! Some operators are plain numerical code, not tensor algebra: an FFT
//! model of orographic precipitation, a radiative transfer. Written in burn
//! ops they would be slow or impossible; written on the host they would
//! give variational methods no gradient. A [`HostMap`] gives the map of
//! one member, `y = f(x)`, and its adjoint, `g_x = (df/dx)^T g_y`;
//! [`HostObs`] makes it an [`ObsOperator`] whose `apply` is one burn
//! operation with that backward. Members run in parallel; each member's
//! numbers are computed by one thread, so they do not depend on the thread
//! count.
//!
//! The operation runs on the CPU backend (Flex), plain or under autodiff;
//! an operator built on another device is refused at build time
//! ([`available_on`]).

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, DispatchTensorKind, Flex, backend_extension};
use burn::tensor::{Device, Tensor};
use rayon::prelude::*;

use crate::core::{Location, ObsOperator};
use crate::models::sea_ice::fused::{device_tensor, host};

/// A map of one member's state to its observations, with its adjoint.
pub trait HostMap: Send + Sync + std::fmt::Debug {
    /// Length of the input `x` (the state size `n`).
    fn input_len(&self) -> usize;
    /// Length of the output `y` (the observations `p`).
    fn output_len(&self) -> usize;
    /// `y = f(x)`; `y` has [`output_len`](Self::output_len) values.
    fn forward(&self, x: &[f64], y: &mut [f64]);
    /// `g_x = (df/dx at x)^T g_y`, written (not accumulated) into `g_x`.
    fn vjp(&self, x: &[f64], g_y: &[f64], g_x: &mut [f64]);
}

/// The shared handle the backend extension passes around.
#[derive(Clone, Debug)]
pub(crate) struct MapRef(pub Arc<dyn HostMap>);

#[backend_extension(Flex, Autodiff)]
pub(crate) trait HostMapKernel: Backend {
    /// `f` applied to each row of a `[members, n]` batch.
    fn host_map(x: FloatTensor<Self>, map: MapRef) -> FloatTensor<Self>;
}

impl HostMapKernel for Flex {
    fn host_map(x: FloatTensor<Self>, map: MapRef) -> FloatTensor<Self> {
        forward_flex(&x, map.0.as_ref())
    }
}

impl<C: CheckpointStrategy> HostMapKernel for Autodiff<Flex, C> {
    fn host_map(x: FloatTensor<Self>, map: MapRef) -> FloatTensor<Self> {
        match HostMapBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let input = x.primitive().clone();
                let out = forward_flex(&input, map.0.as_ref());
                prep.finish((input, map), out)
            }
            OpsKind::UnTracked(prep) => {
                let out = forward_flex(x.primitive(), map.0.as_ref());
                prep.finish(out)
            }
        }
    }
}

#[derive(Debug)]
struct HostMapBackward;

impl Backward<Flex, 1> for HostMapBackward {
    type State = (FlexTensor, MapRef);

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [parent] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        if let Some(node) = parent {
            let (x, map) = ops.state;
            let dtype = x.dtype();
            let (x, dims) = host(&x);
            let (gy, _) = host(&grad);
            let map = map.0.as_ref();
            let (n, p) = (map.input_len(), map.output_len());
            let mut gx = vec![0.0; dims[0] * n];
            gx.par_chunks_mut(n.max(1))
                .zip(x.par_chunks(n.max(1)))
                .zip(gy.par_chunks(p.max(1)))
                .for_each(|((gx, x), gy)| map.vjp(x, gy, gx));
            grads.register::<Flex>(node.id, device_tensor(gx, dims, dtype));
        }
    }
}

/// Whether a host map can run on tensors of `device` (the CPU backend,
/// plain or under autodiff).
pub fn available_on(device: &Device) -> bool {
    let probe = Tensor::<2>::zeros([1, 1], device);
    match probe.into_dispatch().kind {
        DispatchTensorKind::Flex(_) => true,
        DispatchTensorKind::Autodiff(inner) => matches!(*inner, DispatchTensorKind::Flex(_)),
        #[allow(unreachable_patterns)]
        _ => false,
    }
}

/// `map` applied to each row of `x` (`[members, n] -> [members, p]`), one
/// node in burn's graph whose backward is [`HostMap::vjp`].
///
/// # Panics
/// If `x` is not on the CPU backend (operators check [`available_on`]
/// when they are built) or its rows are not `map.input_len()` long.
pub fn apply_map(x: Tensor<2>, map: Arc<dyn HostMap>) -> Tensor<2> {
    use burn::backend::Dispatch;
    assert_eq!(x.dims()[1], map.input_len(), "host map input length");
    Tensor::from_dispatch(<Dispatch as HostMapKernel>::host_map(
        x.into_dispatch(),
        MapRef(map),
    ))
}

fn forward_flex(x: &FlexTensor, map: &dyn HostMap) -> FlexTensor {
    let dtype = x.dtype();
    let (values, dims) = host(x);
    let members = dims[0];
    let (n, p) = (map.input_len(), map.output_len());
    assert_eq!(dims[1], n, "host map input length");
    let mut out = vec![0.0; members * p];
    out.par_chunks_mut(p.max(1))
        .zip(values.par_chunks(n.max(1)))
        .for_each(|(y, x)| map.forward(x, y));
    device_tensor(out, vec![members, p], dtype)
}

/// An observation operator given by a [`HostMap`].
#[derive(Debug)]
pub struct HostObs {
    map: Arc<dyn HostMap>,
    locations: Vec<Location>,
    name: String,
    error_std: Option<Vec<f64>>,
    state_indices: Vec<Option<usize>>,
}

impl HostObs {
    /// The operator `map`, its observations at `locations` (one per
    /// output).
    ///
    /// # Panics
    /// If `locations` is not one per output of `map`.
    pub fn new(map: Arc<dyn HostMap>, locations: Vec<Location>, name: &str) -> Self {
        assert_eq!(locations.len(), map.output_len(), "one location per output");
        let p = locations.len();
        Self {
            map,
            locations,
            name: name.to_string(),
            error_std: None,
            state_indices: vec![None; p],
        }
    }

    /// The operator's own error standard deviation per observation (a
    /// representation error), added in quadrature to the instrument's.
    pub fn with_error_std(mut self, std: Vec<f64>) -> Self {
        assert_eq!(std.len(), self.locations.len(), "one error_std per output");
        self.error_std = Some(std);
        self
    }

    /// The map.
    pub fn map(&self) -> &Arc<dyn HostMap> {
        &self.map
    }
}

impl ObsOperator for HostObs {
    fn apply(&self, state: Tensor<2>, _time: f64) -> Tensor<2> {
        apply_map(state, Arc::clone(&self.map))
    }

    fn size(&self) -> usize {
        self.locations.len()
    }

    fn locations(&self) -> &[Location] {
        &self.locations
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn error_std(&self, _time: f64) -> Option<Vec<f64>> {
        self.error_std.clone()
    }

    fn state_indices(&self) -> Vec<Option<usize>> {
        self.state_indices.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{cpu_f64, cpu_f64_autodiff, tensor_from_rows, to_vec};

    /// `y_0 = x_0 x_1`, `y_1 = sin(x_2)`, `y_2 = x_0^3`.
    #[derive(Debug)]
    struct Toy;

    impl HostMap for Toy {
        fn input_len(&self) -> usize {
            3
        }
        fn output_len(&self) -> usize {
            3
        }
        fn forward(&self, x: &[f64], y: &mut [f64]) {
            y[0] = x[0] * x[1];
            y[1] = x[2].sin();
            y[2] = x[0].powi(3);
        }
        fn vjp(&self, x: &[f64], g: &[f64], gx: &mut [f64]) {
            gx[0] = g[0] * x[1] + g[2] * 3.0 * x[0] * x[0];
            gx[1] = g[0] * x[0];
            gx[2] = g[1] * x[2].cos();
        }
    }

    fn op() -> HostObs {
        HostObs::new(Arc::new(Toy), vec![[0.0, 0.0]; 3], "toy")
    }

    #[test]
    fn forward_runs_each_member_plain_and_under_autodiff() {
        let x = [0.5, -2.0, 1.0, 1.5, 3.0, -0.25];
        for device in [cpu_f64(), cpu_f64_autodiff()] {
            let y = to_vec(op().apply(tensor_from_rows(&x, 2, 3, &device), 0.0));
            let mut want = vec![0.0; 6];
            Toy.forward(&x[..3], &mut want[..3]);
            Toy.forward(&x[3..], &mut want[3..]);
            assert_eq!(y, want);
        }
        assert!(available_on(&cpu_f64()) && available_on(&cpu_f64_autodiff()));
    }

    #[test]
    fn gradient_through_the_node_matches_finite_differences() {
        let device = cpu_f64_autodiff();
        let x0 = [0.5, -2.0, 1.0, 1.5, 3.0, -0.25];
        let w = [0.3, -1.2, 0.7, 2.0, 0.1, -0.4];
        let loss = |x: &[f64]| -> f64 {
            let mut y = [0.0; 6];
            Toy.forward(&x[..3], &mut y[..3]);
            Toy.forward(&x[3..], &mut y[3..]);
            // sum w * y^2: a nonlinear loss after the node.
            y.iter().zip(&w).map(|(y, w)| w * y * y).sum()
        };
        let x = tensor_from_rows(&x0, 2, 3, &device).require_grad();
        let y = op().apply(x.clone(), 0.0);
        let l = (y.clone() * y * tensor_from_rows(&w, 2, 3, &device)).sum();
        let grads = l.backward();
        let g = to_vec(x.grad(&grads).expect("gradient reaches the input"));
        for i in 0..6 {
            let h = 1e-6;
            let (mut p, mut m) = (x0, x0);
            p[i] += h;
            m[i] -= h;
            let fd = (loss(&p) - loss(&m)) / (2.0 * h);
            assert!(
                (g[i] - fd).abs() < 1e-6 * (1.0 + fd.abs()),
                "{i}: {} vs {fd}",
                g[i]
            );
        }
    }
}
