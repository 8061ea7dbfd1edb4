//! The observation term of a variational window and its gradient, with the
//! gradient strategy as a separate choice (as diffrax separates the adjoint
//! method from the solver): a full burn autodiff tape, checkpointed
//! recomputation, or a hand-written adjoint on the host.
//!
//! A window starts at `time0` with state `x0` and runs `cycles` observation
//! cycles of `steps_per_cycle` model steps. Model-error forcings
//! `q eta_c` (weak constraint) are added at the start of cycles `1..cycles`.
//! Observations sit at cycle offsets `0..=cycles` (0 = the window start).
//! The observation term is `J_o = 1/2 sum_k |R^{-1/2} (y_k - H(x_k))|^2`.

use burn::tensor::{Device, Tensor, TensorData};
use nalgebra::{DMatrix, DVector};
use serde::{Deserialize, Serialize};

use crate::da::DaError;
use crate::device::{ensemble_to_tensor, tensor_to_ensemble, to_vec};
use crate::models::Model;
use crate::obs::ObsOperator;

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

/// One variational window.
pub struct Trajectory<'a> {
    /// The model.
    pub model: &'a dyn Model,
    /// The observation operator.
    pub obs: &'a dyn ObsOperator,
    /// Where burn runs.
    pub device: Device,
    /// Time of the window start.
    pub time0: f64,
    /// Model steps per observation cycle.
    pub steps_per_cycle: usize,
    /// Observation cycles in the window.
    pub cycles: usize,
    /// `(cycle offset, y)` pairs, offsets in `0..=cycles`.
    pub observations: Vec<(usize, DVector<f64>)>,
    /// Observation error standard deviation.
    pub obs_error_std: f64,
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

impl Trajectory<'_> {
    fn dt(&self) -> f64 {
        self.model.dt()
    }

    fn cycle_time(&self, c: usize) -> f64 {
        self.time0 + (c * self.steps_per_cycle) as f64 * self.dt()
    }

    fn obs_at(&self, c: usize) -> Option<&DVector<f64>> {
        self.observations
            .iter()
            .find(|(k, _)| *k == c)
            .map(|(_, y)| y)
    }

    fn q(&self) -> f64 {
        self.model_error_std.unwrap_or(0.0)
    }

    /// The states at each cycle offset `0..=cycles` (the end of each cycle,
    /// before the next forcing is added), by the fastest forward path.
    pub fn states(&self, x0: &[f64], eta: &[Vec<f64>]) -> Vec<DVector<f64>> {
        let n = x0.len();
        let mut out = Vec::with_capacity(self.cycles + 1);
        let mut x = x0.to_vec();
        out.push(DVector::from_column_slice(&x));
        if self.model.has_host_path() {
            for c in 0..self.cycles {
                self.add_forcing(&mut x, eta, c);
                self.model
                    .host_forecast(&mut x, self.cycle_time(c), self.steps_per_cycle);
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
            .map(|(c, y)| {
                let hx = self.apply_h(&states[*c]);
                0.5 * ((y - hx) / self.obs_error_std).norm_squared()
            })
            .sum()
    }

    fn apply_h(&self, x: &DVector<f64>) -> DVector<f64> {
        let m = DMatrix::from_column_slice(x.len(), 1, x.as_slice());
        crate::obs::apply_to_ensemble(self.obs, &m, 0.0, &self.device)
            .column(0)
            .into_owned()
    }

    /// `H'(x)^T R^{-1} (H(x) - y)` and the cost contribution, through the
    /// operator's matrix when it has one, otherwise through autodiff.
    fn obs_forcing(&self, x: &DVector<f64>, y: &DVector<f64>, time: f64) -> (f64, DVector<f64>) {
        let r2 = self.obs_error_std * self.obs_error_std;
        if let Some(indices) = self.obs.selected_indices() {
            let mut g = DVector::zeros(x.len());
            let mut cost = 0.0;
            for (&i, yj) in indices.iter().zip(y.iter()) {
                let d = x[i] - yj;
                cost += d * d;
                g[i] += d / r2;
            }
            return (0.5 * cost / r2, g);
        }
        if let Some(h) = self.obs.as_matrix() {
            let d = &h * x - y;
            return (0.5 * d.norm_squared() / r2, h.tr_mul(&d) / r2);
        }
        let ad = self.device.clone().autodiff();
        let xt = ensemble_to_tensor(&DMatrix::from_column_slice(x.len(), 1, x.as_slice()), &ad)
            .require_grad();
        let yt = ensemble_to_tensor(&DMatrix::from_column_slice(y.len(), 1, y.as_slice()), &ad);
        // burn 0.22's autodiff differentiates `tensor / scalar` with the scalar
        // rounded to f32; multiplying by the reciprocal stays in f64.
        let r = (self.obs.apply(xt.clone(), time) - yt) * (1.0 / self.obs_error_std);
        let cost = (r.clone() * r).sum() * 0.5;
        let grads = cost.backward();
        let g = to_vec(xt.grad(&grads).expect("input requires grad"));
        (to_vec(cost)[0], DVector::from_vec(g))
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

    fn gradient_adjoint(&self, x0: &[f64], eta: &[Vec<f64>]) -> Result<ObsTermGradient, DaError> {
        if !self.model.has_host_path() {
            return Err(DaError::Unsupported {
                method: "gradient = \"adjoint\"",
                what: format!(
                    "a model with a hand-written adjoint; `{}` has none (use \"tape\" or \"checkpointed\")",
                    self.model.name()
                ),
            });
        }
        let n = x0.len();
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
                self.model
                    .host_step(&mut x, self.cycle_time(c) + s as f64 * self.dt());
            }
            ends.push(DVector::from_column_slice(&x));
        }
        // Backward sweep.
        let mut cost = 0.0;
        let mut lambda = vec![0.0; n];
        let mut grad_eta = vec![Vec::new(); self.cycles.saturating_sub(1)];
        for c in (0..=self.cycles).rev() {
            if let Some(y) = self.obs_at(c) {
                let (j, g) = self.obs_forcing(&ends[c], y, self.cycle_time(c));
                cost += j;
                for (l, gi) in lambda.iter_mut().zip(g.iter()) {
                    *l += gi;
                }
            }
            if c == 0 {
                break;
            }
            // Back through cycle c - 1.
            for s in (0..spc).rev() {
                let k = (c - 1) * spc + s;
                self.model.host_step_vjp(
                    &inputs[k],
                    self.cycle_time(c - 1) + s as f64 * self.dt(),
                    &mut lambda,
                );
            }
            if c - 1 > 0 && !eta.is_empty() {
                grad_eta[c - 2] = lambda.iter().map(|l| self.q() * l).collect();
            }
        }
        if eta.is_empty() {
            grad_eta.clear();
        }
        Ok(ObsTermGradient {
            cost,
            x0: lambda,
            eta: grad_eta,
        })
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
            if let Some(y) = self.obs_at(c) {
                let yt = Tensor::<2>::from_data(
                    TensorData::new(y.as_slice().to_vec(), [1, y.len()]),
                    &ad,
                );
                let r = (self.obs.apply(x.clone(), self.cycle_time(c)) - yt)
                    * (1.0 / self.obs_error_std);
                let j = (r.clone() * r).sum() * 0.5;
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
        let mut cost = 0.0;
        let mut lambda = DVector::<f64>::zeros(n);
        let mut grad_eta = vec![Vec::new(); self.cycles.saturating_sub(1)];
        for c in (0..=self.cycles).rev() {
            if let Some(y) = self.obs_at(c) {
                let (j, g) = self.obs_forcing(&ends[c], y, self.cycle_time(c));
                cost += j;
                lambda += g;
            }
            if c == 0 {
                break;
            }
            for (s, start) in checkpoints[c - 1].iter().rev() {
                let len = seg.min(spc - s);
                let xt = to_t(start, &ad).require_grad();
                let out = self.model.forecast(
                    xt.clone(),
                    self.cycle_time(c - 1) + *s as f64 * self.dt(),
                    len,
                );
                let weights = to_t(lambda.as_slice(), &ad);
                let grads = (out * weights).sum().backward();
                lambda = DVector::from_vec(to_vec(xt.grad(&grads).expect("input requires grad")));
            }
            if c - 1 > 0 && !eta.is_empty() {
                grad_eta[c - 2] = lambda.iter().map(|l| self.q() * l).collect();
            }
        }
        if eta.is_empty() {
            grad_eta.clear();
        }
        ObsTermGradient {
            cost,
            x0: lambda.as_slice().to_vec(),
            eta: grad_eta,
        }
    }
}

/// The analysis ensemble at the end of a window forecast on the device.
pub fn forecast_states(
    model: &dyn Model,
    states: &DMatrix<f64>,
    time: f64,
    steps: usize,
    device: &Device,
) -> DMatrix<f64> {
    tensor_to_ensemble(model.forecast(ensemble_to_tensor(states, device), time, steps))
}
