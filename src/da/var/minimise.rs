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
use nalgebra::DVector;
use serde::{Deserialize, Serialize};

use super::window::{GradientStrategy, Window};
use crate::da::DaError;
use crate::da::covariance::CovarianceSqrt;

/// Settings of the minimiser, embedded (flattened) in every variational
/// method's table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MinimiserConfig {
    /// Iteration cap; a minimisation that reaches it uses its best iterate
    /// and is recorded as not converged.
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
    /// Square root of the background covariance (`n x m`), as an operator.
    pub b_sqrt: &'a dyn CovarianceSqrt,
    /// Gradient strategy.
    pub strategy: GradientStrategy,
}

impl VarProblem<'_> {
    fn n(&self) -> usize {
        self.background.len()
    }

    /// Control variables of the initial state.
    fn m(&self) -> usize {
        self.b_sqrt.control_size()
    }

    fn split<'p>(&self, p: &'p [f64]) -> (&'p [f64], Vec<Vec<f64>>) {
        let (m, n) = (self.m(), self.n());
        let eta = p[m..].chunks(n).map(<[f64]>::to_vec).collect();
        (&p[..m], eta)
    }

    /// The window-start state of control vector `p`.
    pub fn initial_state(&self, p: &[f64]) -> DVector<f64> {
        let (w, _) = self.split(p);
        self.background + self.b_sqrt.apply(w)
    }

    /// Number of control variables.
    pub fn size(&self) -> usize {
        self.m()
            + self.n()
                * self.window.cycles.saturating_sub(1)
                * usize::from(self.window.model_error_std.is_some())
    }

    /// `(J_b, J_q)` of a control vector.
    pub fn prior_terms(&self, p: &[f64]) -> (f64, f64) {
        prior_terms(p, self.m())
    }

    /// Total cost and gradient.
    pub fn cost_and_gradient(&self, p: &[f64]) -> Result<(f64, Vec<f64>), DaError> {
        let (w, eta) = self.split(p);
        let x0 = self.initial_state(p);
        let obs = self.window.gradient(x0.as_slice(), &eta, self.strategy)?;
        let (jb, jq) = self.prior_terms(p);
        let mut g = Vec::with_capacity(p.len());
        let gw = self.b_sqrt.apply_transpose(&obs.x0);
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
        let x0 = self.background + self.b_sqrt.apply(w);
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
        let (cost_b, cost_q) = prior_terms(p, self.n);
        let cost = state.get_cost();
        let gradient_norm = state.get_gradient().map_or(f64::NAN, |g| norm(g));
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
    /// The minimising control vector (the best iterate when the
    /// minimisation stopped before converging).
    pub control: Vec<f64>,
    /// Per-iteration record, starting with the initial point and ending
    /// with the returned control.
    pub history: Vec<IterationRecord>,
    /// Whether the gradient tolerance was met; `false` when the iteration
    /// cap was reached, or the line search could make no more progress,
    /// and the best iterate (with a cost below the background's) is used.
    pub converged: bool,
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

/// Largest step, in whitened control units (background standard
/// deviations), of the first safeguarded line search; each further failure
/// without progress divides it by ten, down to [`SMALLEST_STEP`].
const FIRST_STEP_CAP: f64 = 1.0;
const SMALLEST_STEP: f64 = 1e-6;
/// Restarts after which a minimisation stops anyway (each one either
/// improves the cost or shrinks the step cap, so this is rarely reached).
const MAX_RESTARTS: usize = 60;

/// Minimises from `p0` with L-BFGS (More-Thuente line search).
///
/// Robust to what chaotic models do to a line search. L-BFGS can stop on
/// a direction that is not a descent direction (a curvature pair with
/// `y.s < 0` after a line search that ended without the Wolfe conditions),
/// and a trial step far along a direction can make the trajectory
/// overflow. Either way the minimisation restarts from its best point with
/// an empty memory (a steepest-descent step); after a failure that made no
/// progress the line search is restarted with its step capped at
/// [`FIRST_STEP_CAP`] background standard deviations, then ten times less
/// at each further failure, so a first trial step that leaves the attractor
/// shrinks instead of ending the method.
///
/// Reaching `max_iterations`, or a step cap too small to make progress,
/// is not a failure when the cost went down: as in operational 4D-Var,
/// the best iterate is the analysis, and [`Minimised::converged`] is
/// `false`. Errors: a non-finite cost or gradient at the background, or
/// no iterate better than the background, with the iteration count and
/// the cost history.
pub fn minimise(
    problem: VarProblem<'_>,
    p0: Vec<f64>,
    config: &MinimiserConfig,
) -> Result<Minimised, DaError> {
    let n = problem.m();
    let (j0, g0) = problem.cost_and_gradient(&p0)?;
    let g0_norm = norm(&g0);
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
            converged: true,
        });
    }
    let log = Arc::new(Mutex::new(vec![start]));
    let best = Arc::new(Mutex::new((j0, p0.clone())));
    let mut start_param = p0;
    let mut start_cost = j0;
    let mut start_grad_norm = g0_norm;
    let mut step_cap: Option<f64> = None;
    let mut why_stopped = String::new();
    for attempt in 1..=MAX_RESTARTS {
        let offset = log
            .lock()
            .expect("recorder lock")
            .last()
            .map_or(0, |r| r.iteration);
        if offset >= config.max_iterations {
            why_stopped = format!("reached max_iterations = {}", config.max_iterations);
            break;
        }
        let mut linesearch = MoreThuenteLineSearch::new();
        if let Some(cap) = step_cap {
            linesearch = linesearch
                .with_bounds(
                    f64::EPSILON.sqrt().min(0.5 * cap / start_grad_norm),
                    cap / start_grad_norm,
                )
                .map_err(|e| DaError::Numerical(e.to_string()))?;
        }
        let solver = LBFGS::new(linesearch, config.memory)
            .with_tolerance_grad(tolerance)
            .and_then(|s| s.with_tolerance_cost(0.0))
            .map_err(|e| DaError::Numerical(e.to_string()))?;
        let budgeted = Budgeted {
            inner: problem.clone(),
            evaluations: std::sync::atomic::AtomicU64::new(0),
            limit: 20 * config.max_iterations + 100,
        };
        let remaining = config.max_iterations - offset;
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
        let final_grad = history.last().map_or(f64::NAN, |r| r.gradient_norm);
        let (best_cost, best_param) = best.lock().expect("recorder lock").clone();
        let (status, stopped, solver_best) = match result {
            Ok(result) => {
                let status = result.state.get_termination_status().clone();
                let text = match &status {
                    TerminationStatus::Terminated(r) => r.text().to_string(),
                    TerminationStatus::NotTerminated => "not terminated".to_string(),
                };
                (Some(status), text, result.state.get_best_param().cloned())
            }
            Err(e) => (None, e.to_string(), None),
        };
        // A trial point whose trajectory blew up carries a zero gradient
        // (see `Budgeted`): that is not convergence.
        let blown_up = history.last().is_some_and(|r| r.cost >= BLOWN_UP);
        let converged = !blown_up
            && (matches!(
                status,
                Some(TerminationStatus::Terminated(
                    TerminationReason::SolverConverged
                ))
            ) || final_grad <= tolerance);
        if converged && best_cost < BLOWN_UP {
            return Ok(Minimised {
                control: solver_best.unwrap_or(best_param),
                history,
                converged: true,
            });
        }
        why_stopped = format!("{stopped} (after {attempt} attempt(s))");
        if matches!(
            status,
            Some(TerminationStatus::Terminated(
                TerminationReason::MaxItersReached
            ))
        ) {
            break;
        }
        // Restart from the best point with an empty memory; if this
        // attempt made no progress, cap (or shrink) the first step.
        if best_cost < start_cost {
            start_param = best_param;
            start_cost = best_cost;
        } else {
            let cap = step_cap.map_or(FIRST_STEP_CAP, |c| 0.1 * c);
            if cap < SMALLEST_STEP {
                break;
            }
            step_cap = Some(cap);
        }
        start_grad_norm = problem
            .cost_and_gradient(&start_param)
            .map_or(f64::NAN, |(_, g)| norm(&g));
        if !(start_grad_norm.is_finite() && start_grad_norm > 0.0) {
            break;
        }
    }
    let history = log.lock().expect("recorder lock").clone();
    let (best_cost, best_param) = best.lock().expect("recorder lock").clone();
    if best_cost < j0 && best_cost.is_finite() && best_cost < BLOWN_UP {
        return Ok(Minimised {
            history: with_final(&problem, history, &best_param, best_cost),
            control: best_param,
            converged: false,
        });
    }
    let iterations = history.last().map_or(0, |r| r.iteration);
    Err(DaError::Minimisation {
        reason: format!("no iterate improved on the background: {why_stopped}"),
        iterations,
        history: history_text(&history),
    })
}

/// The Euclidean norm.
fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// `(J_b, J_q) = (1/2 |w|^2, 1/2 |eta|^2)` of a control vector whose first
/// `n` entries are `w`.
fn prior_terms(p: &[f64], n: usize) -> (f64, f64) {
    let half_sq = |v: &[f64]| 0.5 * v.iter().map(|x| x * x).sum::<f64>();
    (half_sq(&p[..n]), half_sq(&p[n..]))
}

/// The history, ending with the record of the returned control (the best
/// iterate, which need not be the last one the solver visited).
fn with_final(
    problem: &VarProblem<'_>,
    mut history: Vec<IterationRecord>,
    control: &[f64],
    cost: f64,
) -> Vec<IterationRecord> {
    let last = history
        .last()
        .copied()
        .expect("history starts at the background");
    if last.cost == cost {
        return history;
    }
    let (cost_b, cost_q) = problem.prior_terms(control);
    let gradient_norm = problem
        .cost_and_gradient(control)
        .map_or(f64::NAN, |(_, g)| norm(&g));
    history.push(IterationRecord {
        iteration: last.iteration,
        cost,
        cost_b,
        cost_q,
        cost_o: cost - cost_b - cost_q,
        gradient_norm,
    });
    history
}
