//! Variational problems as argmin problems, minimised by L-BFGS, with an
//! observer that records the cost split per iteration.

use std::sync::{Arc, Mutex};

use argmin::core::observers::{Observe, ObserverMode};
use argmin::core::{
    CostFunction, Error, Executor, Gradient, IterState, KV, State, TerminationReason,
    TerminationStatus,
};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use nalgebra::{DMatrix, DVector};
use serde::{Deserialize, Serialize};

use super::window::{GradientStrategy, Window};
use crate::da::DaError;

/// Settings of the minimiser, embedded (flattened) in every variational
/// method's table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MinimiserConfig {
    /// Iteration cap; reaching it without convergence is an error.
    #[serde(default = "default_iterations")]
    pub max_iterations: u64,
    /// Converged when the gradient norm falls below this times its initial value.
    #[serde(default = "default_tolerance")]
    pub gradient_tolerance: f64,
    /// L-BFGS memory.
    #[serde(default = "default_memory")]
    pub memory: usize,
}

fn default_iterations() -> u64 {
    200
}
fn default_tolerance() -> f64 {
    1e-6
}
fn default_memory() -> usize {
    10
}

impl MinimiserConfig {
    /// Checks the values; the error is `(key, reason)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.max_iterations == 0 {
            return Err(("max_iterations".into(), "must be at least 1".into()));
        }
        if !(self.gradient_tolerance > 0.0 && self.gradient_tolerance < 1.0) {
            return Err((
                "gradient_tolerance".into(),
                format!("must lie in (0, 1), got {}", self.gradient_tolerance),
            ));
        }
        if self.memory == 0 {
            return Err(("memory".into(), "must be at least 1".into()));
        }
        Ok(())
    }
}

impl Default for MinimiserConfig {
    fn default() -> Self {
        Self {
            max_iterations: default_iterations(),
            gradient_tolerance: default_tolerance(),
            memory: default_memory(),
        }
    }
}

/// One iteration of a minimisation.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct IterationRecord {
    /// Iteration number (0 is the starting point).
    pub iteration: u64,
    /// Total cost.
    pub cost: f64,
    /// Background term `1/2 |w|^2`.
    pub cost_b: f64,
    /// Model-error term (weak constraint), 0 otherwise.
    pub cost_q: f64,
    /// Observation term.
    pub cost_o: f64,
    /// Gradient norm.
    pub gradient_norm: f64,
}

/// The strong- or weak-constraint cost in whitened control variables:
/// `x0 = x_b + S w`, forcings `q eta_c`, and
/// `J = 1/2 |w|^2 + 1/2 sum_c |eta_c|^2 + J_o(x0, eta)`.
#[derive(Clone)]
pub struct VarProblem<'a> {
    /// The window.
    pub window: &'a Window<'a>,
    /// Background at the window start.
    pub background: &'a DVector<f64>,
    /// Square root of the background covariance, `n x n`.
    pub b_sqrt: &'a DMatrix<f64>,
    /// Gradient strategy.
    pub strategy: GradientStrategy,
}

impl VarProblem<'_> {
    fn n(&self) -> usize {
        self.background.len()
    }

    fn split<'p>(&self, p: &'p [f64]) -> (&'p [f64], Vec<Vec<f64>>) {
        let n = self.n();
        let eta = p[n..].chunks(n).map(<[f64]>::to_vec).collect();
        (&p[..n], eta)
    }

    /// The window-start state of control vector `p`.
    pub fn initial_state(&self, p: &[f64]) -> DVector<f64> {
        let (w, _) = self.split(p);
        self.background + self.b_sqrt * DVector::from_column_slice(w)
    }

    /// Number of control variables.
    pub fn size(&self) -> usize {
        self.n()
            * (1 + self.window.cycles.saturating_sub(1)
                * usize::from(self.window.model_error_std.is_some()))
    }

    /// `(J_b, J_q)` of a control vector.
    pub fn prior_terms(&self, p: &[f64]) -> (f64, f64) {
        let n = self.n();
        let half_sq = |v: &[f64]| 0.5 * v.iter().map(|x| x * x).sum::<f64>();
        (half_sq(&p[..n]), half_sq(&p[n..]))
    }

    /// Total cost and gradient.
    pub fn cost_and_gradient(&self, p: &[f64]) -> Result<(f64, Vec<f64>), DaError> {
        let (w, eta) = self.split(p);
        let x0 = self.initial_state(p);
        let obs = self.window.gradient(x0.as_slice(), &eta, self.strategy)?;
        let (jb, jq) = self.prior_terms(p);
        let mut g = Vec::with_capacity(p.len());
        let gw = self.b_sqrt.tr_mul(&DVector::from_vec(obs.x0));
        g.extend(w.iter().zip(gw.iter()).map(|(a, b)| a + b));
        for (e, ge) in eta.iter().zip(&obs.eta) {
            g.extend(e.iter().zip(ge).map(|(a, b)| a + b));
        }
        Ok((jb + jq + obs.cost, g))
    }
}

impl CostFunction for VarProblem<'_> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, p: &Self::Param) -> Result<f64, Error> {
        let (w, eta) = self.split(p);
        let x0 = self.background + self.b_sqrt * DVector::from_column_slice(w);
        let (jb, jq) = self.prior_terms(p);
        Ok(jb + jq + self.window.cost(x0.as_slice(), &eta))
    }
}

impl Gradient for VarProblem<'_> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, p: &Self::Param) -> Result<Vec<f64>, Error> {
        Ok(self
            .cost_and_gradient(p)
            .map_err(|e| Error::msg(e.to_string()))?
            .1)
    }
}

/// Cost assigned to a trial point whose trajectory blew up.
const BLOWN_UP: f64 = 1e100;

/// A problem made safe for L-BFGS's line search. A trial step far along a
/// search direction can make a chaotic trajectory overflow; More-Thuente
/// turns a NaN cost into NaN steps and can then search forever. Here a
/// non-finite cost becomes a huge finite one (with a zero gradient), which
/// the line search rejects and backtracks from, and an evaluation budget
/// turns any remaining stall into an error instead of a hang.
struct Budgeted<'a> {
    inner: VarProblem<'a>,
    evaluations: std::sync::atomic::AtomicU64,
    limit: u64,
}

impl Budgeted<'_> {
    fn spend(&self) -> Result<(), Error> {
        let used = self
            .evaluations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        if used > self.limit {
            return Err(Error::msg(format!(
                "evaluation budget of {} cost/gradient calls exhausted: the line search makes no progress",
                self.limit
            )));
        }
        Ok(())
    }
}

impl CostFunction for Budgeted<'_> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, p: &Self::Param) -> Result<f64, Error> {
        self.spend()?;
        let c = self.inner.cost(p)?;
        Ok(if c.is_finite() { c } else { BLOWN_UP })
    }
}

impl Gradient for Budgeted<'_> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, p: &Self::Param) -> Result<Vec<f64>, Error> {
        self.spend()?;
        let g = self.inner.gradient(p)?;
        Ok(if g.iter().all(|x| x.is_finite()) {
            g
        } else {
            vec![0.0; g.len()]
        })
    }
}

type LbfgsState = IterState<Vec<f64>, Vec<f64>, (), (), (), f64>;

/// Records `J`, `J_b`, `J_q`, `J_o` and the gradient norm at every iteration.
struct Recorder {
    log: Arc<Mutex<Vec<IterationRecord>>>,
    n: usize,
    /// Iterations done by earlier attempts (restarts continue the count).
    offset: u64,
    /// The lowest-cost control seen so far and its cost.
    best: Arc<Mutex<(f64, Vec<f64>)>>,
}

impl Observe<LbfgsState> for Recorder {
    fn observe_iter(&mut self, state: &LbfgsState, _kv: &KV) -> Result<(), Error> {
        let Some(p) = state.get_param() else {
            return Ok(());
        };
        let half_sq = |v: &[f64]| 0.5 * v.iter().map(|x| x * x).sum::<f64>();
        let (cost_b, cost_q) = (half_sq(&p[..self.n]), half_sq(&p[self.n..]));
        let cost = state.get_cost();
        let gradient_norm = state
            .get_gradient()
            .map_or(f64::NAN, |g| g.iter().map(|x| x * x).sum::<f64>().sqrt());
        {
            let mut best = self.best.lock().expect("recorder lock");
            if cost < best.0 {
                *best = (cost, p.clone());
            }
        }
        // Observers run before argmin increments its counter: iteration k
        // of the log (k >= 1) is the state after k L-BFGS steps.
        self.log
            .lock()
            .expect("recorder lock")
            .push(IterationRecord {
                iteration: self.offset + state.get_iter() + 1,
                cost,
                cost_b,
                cost_q,
                cost_o: cost - cost_b - cost_q,
                gradient_norm,
            });
        Ok(())
    }
}

/// The outcome of one minimisation.
#[derive(Clone, Debug)]
pub struct Minimised {
    /// The minimising control vector.
    pub control: Vec<f64>,
    /// Per-iteration record, starting with the initial point.
    pub history: Vec<IterationRecord>,
}

impl Minimised {
    /// Iterations taken.
    pub fn iterations(&self) -> u64 {
        self.history.last().map_or(0, |r| r.iteration)
    }
}

fn history_text(history: &[IterationRecord]) -> String {
    let costs: Vec<String> = history.iter().map(|r| format!("{:.6e}", r.cost)).collect();
    format!("[{}]", costs.join(", "))
}

/// Minimises from `p0` with L-BFGS (More-Thuente line search). A run that
/// stops without meeting the gradient tolerance, or meets a non-finite
/// cost, is an error carrying the iteration count and the cost history.
pub fn minimise(
    problem: VarProblem<'_>,
    p0: Vec<f64>,
    config: &MinimiserConfig,
) -> Result<Minimised, DaError> {
    let n = problem.n();
    let (j0, g0) = problem.cost_and_gradient(&p0)?;
    let g0_norm = g0.iter().map(|x| x * x).sum::<f64>().sqrt();
    let (jb0, jq0) = problem.prior_terms(&p0);
    let start = IterationRecord {
        iteration: 0,
        cost: j0,
        cost_b: jb0,
        cost_q: jq0,
        cost_o: j0 - jb0 - jq0,
        gradient_norm: g0_norm,
    };
    if !j0.is_finite() || !g0_norm.is_finite() {
        return Err(DaError::Minimisation {
            reason: "non-finite cost or gradient at the background".into(),
            iterations: 0,
            history: history_text(&[start]),
        });
    }
    let tolerance = config.gradient_tolerance * g0_norm;
    if g0_norm == 0.0 {
        return Ok(Minimised {
            control: p0,
            history: vec![start],
        });
    }
    let log = Arc::new(Mutex::new(vec![start]));
    let best = Arc::new(Mutex::new((j0, p0.clone())));
    // L-BFGS can stop on a non-descent direction where the cost is not
    // convex (curvature pairs with y.s < 0 far from the minimum); restarting
    // from the best point with an empty memory is the standard remedy.
    const ATTEMPTS: usize = 3;
    let mut start_param = p0;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let offset = log
            .lock()
            .expect("recorder lock")
            .last()
            .map_or(0, |r| r.iteration);
        let solver = LBFGS::new(MoreThuenteLineSearch::new(), config.memory)
            .with_tolerance_grad(tolerance)
            .and_then(|s| s.with_tolerance_cost(0.0))
            .map_err(|e| DaError::Numerical(e.to_string()))?;
        let budgeted = Budgeted {
            inner: problem.clone(),
            evaluations: std::sync::atomic::AtomicU64::new(0),
            limit: 20 * config.max_iterations + 100,
        };
        let remaining = config.max_iterations.saturating_sub(offset).max(1);
        let result = Executor::new(budgeted, solver)
            .configure(|state| state.param(start_param.clone()).max_iters(remaining))
            .add_observer(
                Recorder {
                    log: log.clone(),
                    n,
                    offset,
                    best: best.clone(),
                },
                ObserverMode::Always,
            )
            .timer(false)
            .run();
        let history = log.lock().expect("recorder lock").clone();
        let iterations = history.last().map_or(0, |r| r.iteration);
        let failure = |reason: String| DaError::Minimisation {
            reason,
            iterations,
            history: history_text(&history),
        };
        let (best_cost, best_param) = best.lock().expect("recorder lock").clone();
        let state = match result {
            Ok(result) => result.state,
            Err(e) => {
                let improved = best_param != start_param;
                if attempt < ATTEMPTS && improved && iterations < config.max_iterations {
                    start_param = best_param;
                    continue;
                }
                return Err(failure(format!("{e} (after {attempt} attempt(s))")));
            }
        };
        let final_grad = history.last().map_or(f64::NAN, |r| r.gradient_norm);
        let converged = matches!(
            state.get_termination_status(),
            TerminationStatus::Terminated(TerminationReason::SolverConverged)
        ) || final_grad <= tolerance;
        if best_cost < BLOWN_UP && converged {
            let control = state.get_best_param().cloned().unwrap_or(best_param);
            return Ok(Minimised { control, history });
        }
        let out_of_iterations = matches!(
            state.get_termination_status(),
            TerminationStatus::Terminated(TerminationReason::MaxItersReached)
        ) || iterations >= config.max_iterations;
        if attempt < ATTEMPTS && !out_of_iterations && best_param != start_param {
            start_param = best_param;
            continue;
        }
        let why = match state.get_termination_status() {
            TerminationStatus::Terminated(r) => r.text().to_string(),
            TerminationStatus::NotTerminated => "not terminated".to_string(),
        };
        return Err(failure(format!(
            "did not converge ({why}; gradient norm {final_grad:.3e} > tolerance {tolerance:.3e}; {attempt} attempt(s))"
        )));
    }
}
