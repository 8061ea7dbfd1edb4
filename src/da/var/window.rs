//! The observation term of a variational window and its gradient, with the
//! gradient strategy as a separate choice (as diffrax separates the adjoint
//! method from the solver): a full burn autodiff tape, checkpointed
//! recomputation, or a hand-written adjoint on the host.
//!
//! A window starts at `time0` with state `x0` and runs `cycles` observation
//! cycles of `steps_per_cycle` model steps. Model-error forcings
//! `q eta_c` (weak constraint) are added at the start of cycles `1..cycles`.
//! Observation batches sit at cycle offsets `0..=cycles` (0 = the window
//! start), each with its own operator, errors and time. The observation
//! term is `J_o = 1/2 sum_k |R_k^{-1/2} (y_k - H_k(x_k))|^2`.

use burn::tensor::{Device, Tensor, TensorData};
use nalgebra::{DMatrix, DVector};
use serde::{Deserialize, Serialize};

use crate::core::{Model, ObsBatch};
use crate::da::{Context, DaError};
use crate::device::{ensemble_to_tensor, to_vec};

/// How the gradient of the cost is obtained.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GradientStrategy {
    /// One burn autodiff tape over the whole window.
    Tape,
    /// Forward without a tape, keeping states every `checkpoint_steps`;
    /// backward by recomputing each segment under autodiff. Memory is one
    /// segment's tape whatever the window length.
    Checkpointed,
    /// The model's hand-written host adjoint (verified against autodiff);
    /// needs a model with a host path and a linear observation operator.
    #[default]
    Adjoint,
}

/// One variational window: the model, where it starts, how long it runs
/// and the observations inside it.
pub struct Window<'a> {
    /// The model.
    pub model: &'a dyn Model,
    /// Where burn runs.
    pub device: Device,
    /// Use the model's host path for forward runs where it has one.
    pub host_path: bool,
    /// Time of the window start.
    pub time0: f64,
    /// Model steps per observation cycle.
    pub steps_per_cycle: usize,
    /// Observation cycles in the window.
    pub cycles: usize,
    /// `(cycle offset, batch)` pairs, offsets in `0..=cycles`.
    pub observations: Vec<(usize, ObsBatch)>,
    /// Model-error standard deviation `q` (weak constraint), scaling the
    /// whitened forcings.
    pub model_error_std: Option<f64>,
    /// Segment length for [`GradientStrategy::Checkpointed`].
    pub checkpoint_steps: usize,
}

/// `J_o` and its gradients.
pub struct ObsTermGradient {
    /// The observation term.
    pub cost: f64,
    /// Gradient with respect to the window-start state.
    pub x0: Vec<f64>,
    /// Gradient with respect to each whitened model-error forcing
    /// (cycles `1..cycles`); empty under strong constraint.
    pub eta: Vec<Vec<f64>>,
}

impl<'a> Window<'a> {
    /// The window of `cycles` cycles starting at cycle `start` of the
    /// assimilation, holding `observations` (offsets from `start`): the one
    /// place every variational method builds its window.
    pub fn new(
        context: &Context<'a>,
        start: usize,
        cycles: usize,
        observations: Vec<(usize, ObsBatch)>,
        model_error_std: Option<f64>,
        checkpoint_steps: usize,
    ) -> Self {
        Self {
            model: context.model,
            device: context.device().clone(),
            host_path: context.forecaster.host_path,
            time0: start as f64 * context.interval(),
            steps_per_cycle: context.steps_per_cycle,
            cycles,
            observations,
            model_error_std,
            checkpoint_steps,
        }
    }
}

impl Window<'_> {
    fn dt(&self) -> f64 {
        self.model.dt()
    }

    fn cycle_time(&self, c: usize) -> f64 {
        self.time0 + (c * self.steps_per_cycle) as f64 * self.dt()
    }

    fn obs_at(&self, c: usize) -> Option<&ObsBatch> {
        self.observations
            .iter()
            .find(|(k, _)| *k == c)
            .map(|(_, y)| y)
    }

    fn q(&self) -> f64 {
        self.model_error_std.unwrap_or(0.0)
    }

    fn host(&self) -> Option<&dyn crate::core::HostStepper> {
        self.model.host().filter(|_| self.host_path)
    }

    /// The states at each cycle offset `0..=cycles` (the end of each cycle,
    /// before the next forcing is added), by the fastest forward path.
    pub fn states(&self, x0: &[f64], eta: &[Vec<f64>]) -> Vec<DVector<f64>> {
        let n = x0.len();
        let mut out = Vec::with_capacity(self.cycles + 1);
        let mut x = x0.to_vec();
        out.push(DVector::from_column_slice(&x));
        if let Some(host) = self.host() {
            for c in 0..self.cycles {
                self.add_forcing(&mut x, eta, c);
                host.forecast(&mut x, self.cycle_time(c), self.steps_per_cycle, self.dt());
                out.push(DVector::from_column_slice(&x));
            }
        } else {
            let mut state = ensemble_to_tensor(&DMatrix::from_column_slice(n, 1, &x), &self.device);
            for c in 0..self.cycles {
                if c > 0 && !eta.is_empty() {
                    let f: Vec<f64> = eta[c - 1].iter().map(|e| self.q() * e).collect();
                    state =
                        state + Tensor::<2>::from_data(TensorData::new(f, [1, n]), &self.device);
                }
                state = self
                    .model
                    .forecast(state, self.cycle_time(c), self.steps_per_cycle);
                out.push(DVector::from_vec(to_vec(state.clone())));
            }
        }
        out
    }

    fn add_forcing(&self, x: &mut [f64], eta: &[Vec<f64>], c: usize) {
        if c > 0 && !eta.is_empty() {
            let q = self.q();
            for (v, e) in x.iter_mut().zip(&eta[c - 1]) {
                *v += q * e;
            }
        }
    }

    /// `J_o` only (forward pass).
    pub fn cost(&self, x0: &[f64], eta: &[Vec<f64>]) -> f64 {
        let states = self.states(x0, eta);
        self.observations
            .iter()
            .map(|(c, obs)| {
                let hx = self.apply_h(obs, &states[*c]);
                0.5 * obs.error.whiten(&(&obs.values - hx)).norm_squared()
            })
            .sum()
    }

    /// `H(x)` for one state, at the batch's own time.
    pub(crate) fn apply_h(&self, obs: &ObsBatch, x: &DVector<f64>) -> DVector<f64> {
        crate::core::apply_to_state(obs.operator.as_ref(), x, obs.time, &self.device)
    }

    /// `H'(x)^T R^{-1} (H(x) - y)` and the cost contribution, through the
    /// operator's host adjoint when it is linear, otherwise through autodiff.
    fn obs_forcing(&self, x: &DVector<f64>, obs: &ObsBatch) -> (f64, DVector<f64>) {
        if let Some(linear) = obs.operator.linear() {
            let hx = self.apply_h(obs, x);
            let r = obs.error.whiten(&(hx - &obs.values));
            let weights = obs.error.whiten_adjoint(&r);
            let mut g = DVector::zeros(x.len());
            linear.adjoint_host(weights.as_slice(), g.as_mut_slice());
            return (0.5 * r.norm_squared(), g);
        }
        let ad = self.device.clone().autodiff();
        let xt = ensemble_to_tensor(&DMatrix::from_column_slice(x.len(), 1, x.as_slice()), &ad)
            .require_grad();
        let cost = self.whitened_misfit(obs, xt.clone(), &ad);
        let grads = cost.clone().backward();
        let g = to_vec(xt.grad(&grads).expect("input requires grad"));
        (to_vec(cost)[0], DVector::from_vec(g))
    }

    /// `1/2 |R^{-1/2} (H(x) - y)|^2` in tensor ops for a `[1, n]` state.
    fn whitened_misfit(&self, obs: &ObsBatch, x: Tensor<2>, device: &Device) -> Tensor<1> {
        let p = obs.len();
        let yt = Tensor::<2>::from_data(
            TensorData::new(obs.values.as_slice().to_vec(), [1, p]),
            device,
        );
        let d = obs.operator.apply(x, obs.time) - yt;
        // burn 0.22's autodiff differentiates `tensor / scalar` with the
        // scalar rounded to f32: whitening multiplies, in f64.
        let r = match &obs.error {
            crate::core::ObsError::Diagonal(s) => {
                let inv = Tensor::<2>::from_data(
                    TensorData::new(s.iter().map(|v| 1.0 / v).collect::<Vec<_>>(), [1, p]),
                    device,
                );
                d * inv
            }
            error => {
                let w = error.whitening_matrix();
                // Row vector: r^T = d^T W^T; W^T is the transpose, row-major.
                let wt =
                    Tensor::<2>::from_data(TensorData::new(w.as_slice().to_vec(), [p, p]), device);
                d.matmul(wt)
            }
        };
        (r.clone() * r).sum() * 0.5
    }

    /// `J_o` and its gradients by the chosen strategy.
    pub fn gradient(
        &self,
        x0: &[f64],
        eta: &[Vec<f64>],
        strategy: GradientStrategy,
    ) -> Result<ObsTermGradient, DaError> {
        match strategy {
            GradientStrategy::Adjoint => self.gradient_adjoint(x0, eta),
            GradientStrategy::Tape => Ok(self.gradient_tape(x0, eta)),
            GradientStrategy::Checkpointed => Ok(self.gradient_checkpointed(x0, eta)),
        }
    }

    /// The reverse sweep shared by the hand-adjoint and checkpointed
    /// strategies: from the last cycle back to the window start, add each
    /// batch's observation forcing to `lambda`, pull `lambda` back through
    /// cycle `c - 1` with `back_through_cycle(c - 1, lambda)` (the strategy's
    /// vector-Jacobian product), and read the model-error gradients off it.
    fn reverse_sweep(
        &self,
        ends: &[DVector<f64>],
        weak: bool,
        mut back_through_cycle: impl FnMut(usize, &mut DVector<f64>),
    ) -> ObsTermGradient {
        let n = ends[0].len();
        let mut cost = 0.0;
        let mut lambda = DVector::<f64>::zeros(n);
        let mut grad_eta = vec![
            Vec::new();
            if weak {
                self.cycles.saturating_sub(1)
            } else {
                0
            }
        ];
        for c in (0..=self.cycles).rev() {
            if let Some(obs) = self.obs_at(c) {
                let (j, g) = self.obs_forcing(&ends[c], obs);
                cost += j;
                lambda += g;
            }
            if c == 0 {
                break;
            }
            back_through_cycle(c - 1, &mut lambda);
            if weak && c - 1 > 0 {
                grad_eta[c - 2] = lambda.iter().map(|l| self.q() * l).collect();
            }
        }
        ObsTermGradient {
            cost,
            x0: lambda.as_slice().to_vec(),
            eta: grad_eta,
        }
    }

    fn gradient_adjoint(&self, x0: &[f64], eta: &[Vec<f64>]) -> Result<ObsTermGradient, DaError> {
        let Some(host) = self.model.host() else {
            return Err(DaError::Unsupported {
                method: "gradient = \"adjoint\"",
                what: format!(
                    "a model with a hand-written adjoint; `{}` has none (use \"tape\" or \"checkpointed\")",
                    self.model.name()
                ),
            });
        };
        let spc = self.steps_per_cycle;
        // Forward: every step's input state (the adjoint needs them).
        let mut inputs: Vec<Vec<f64>> = Vec::with_capacity(self.cycles * spc);
        let mut ends = Vec::with_capacity(self.cycles + 1);
        let mut x = x0.to_vec();
        ends.push(DVector::from_column_slice(&x));
        for c in 0..self.cycles {
            self.add_forcing(&mut x, eta, c);
            for s in 0..spc {
                inputs.push(x.clone());
                host.step(&mut x, self.cycle_time(c) + s as f64 * self.dt());
            }
            ends.push(DVector::from_column_slice(&x));
        }
        Ok(self.reverse_sweep(&ends, !eta.is_empty(), |c, lambda| {
            for s in (0..spc).rev() {
                host.step_vjp(
                    &inputs[c * spc + s],
                    self.cycle_time(c) + s as f64 * self.dt(),
                    lambda.as_mut_slice(),
                );
            }
        }))
    }

    fn gradient_tape(&self, x0: &[f64], eta: &[Vec<f64>]) -> ObsTermGradient {
        let n = x0.len();
        let ad = self.device.clone().autodiff();
        let leaf = |v: &[f64]| {
            Tensor::<2>::from_data(TensorData::new(v.to_vec(), [1, n]), &ad).require_grad()
        };
        let x0t = leaf(x0);
        let etat: Vec<Tensor<2>> = eta.iter().map(|e| leaf(e)).collect();
        let mut x = x0t.clone();
        let mut cost: Option<Tensor<1>> = None;
        let mut add_cost = |x: &Tensor<2>, c: usize| {
            if let Some(obs) = self.obs_at(c) {
                let j = self.whitened_misfit(obs, x.clone(), &ad);
                cost = Some(match cost.take() {
                    Some(acc) => acc + j,
                    None => j,
                });
            }
        };
        add_cost(&x, 0);
        for c in 0..self.cycles {
            if c > 0 && !etat.is_empty() {
                x = x + etat[c - 1].clone() * self.q();
            }
            x = self
                .model
                .forecast(x, self.cycle_time(c), self.steps_per_cycle);
            add_cost(&x, c + 1);
        }
        let Some(cost) = cost else {
            return ObsTermGradient {
                cost: 0.0,
                x0: vec![0.0; n],
                eta: vec![vec![0.0; n]; eta.len()],
            };
        };
        let grads = cost.backward();
        let grad_of = |t: &Tensor<2>| t.grad(&grads).map(to_vec).unwrap_or_else(|| vec![0.0; n]);
        ObsTermGradient {
            cost: to_vec(cost)[0],
            x0: grad_of(&x0t),
            eta: etat.iter().map(grad_of).collect(),
        }
    }

    fn gradient_checkpointed(&self, x0: &[f64], eta: &[Vec<f64>]) -> ObsTermGradient {
        let n = x0.len();
        let spc = self.steps_per_cycle;
        let seg = self.checkpoint_steps.clamp(1, spc.max(1));
        let to_t =
            |v: &[f64], d: &Device| ensemble_to_tensor(&DMatrix::from_column_slice(n, 1, v), d);
        // Forward without a tape: checkpoints at segment starts, ends of cycles.
        let mut checkpoints: Vec<Vec<(usize, Vec<f64>)>> = Vec::with_capacity(self.cycles);
        let mut ends = vec![DVector::from_column_slice(x0)];
        let mut x = x0.to_vec();
        for c in 0..self.cycles {
            self.add_forcing(&mut x, eta, c);
            let mut cycle = Vec::new();
            let mut state = to_t(&x, &self.device);
            let mut s = 0;
            while s < spc {
                let len = seg.min(spc - s);
                cycle.push((s, to_vec(state.clone())));
                state = self
                    .model
                    .forecast(state, self.cycle_time(c) + s as f64 * self.dt(), len);
                s += len;
            }
            x = to_vec(state);
            ends.push(DVector::from_column_slice(&x));
            checkpoints.push(cycle);
        }
        // Backward: recompute each segment under autodiff and pull lambda through it.
        let ad = self.device.clone().autodiff();
        self.reverse_sweep(&ends, !eta.is_empty(), |c, lambda| {
            for (s, start) in checkpoints[c].iter().rev() {
                let len = seg.min(spc - s);
                let xt = to_t(start, &ad).require_grad();
                let out = self.model.forecast(
                    xt.clone(),
                    self.cycle_time(c) + *s as f64 * self.dt(),
                    len,
                );
                let weights = to_t(lambda.as_slice(), &ad);
                let grads = (out * weights).sum().backward();
                *lambda = DVector::from_vec(to_vec(xt.grad(&grads).expect("input requires grad")));
            }
        })
    }
}
