//! Variational and ensemble-variational DA through autodiff: 3D-Var,
//! strong- and weak-constraint 4D-Var, and En4DVar; the iEnKS lives in
//! [`crate::da::ienks`].
//!
//! Windows follow DAPPER's convention (Bocquet & Sakov 2013): the control
//! state sits at the window start, `window` observation cycles before the
//! newest observation; a minimisation runs when the window is full and
//! assimilates every observation that arrived since the previous one, then
//! the window moves forward by `shift` cycles. `shift = 1` is single data
//! assimilation with overlapping windows; `shift = window` gives
//! back-to-back windows. Between minimisations the estimate is the
//! background forecast, so analysis scores are those available in real
//! time.

pub mod envar;
pub mod minimise;
pub mod window;

use nalgebra::{DMatrix, DVector};
use serde::{Deserialize, Serialize};

pub use minimise::{IterationRecord, Minimised, MinimiserConfig, VarProblem, minimise};
pub use window::{GradientStrategy, Window};

use super::covariance::{CovarianceSqrt, DenseSqrt, FieldCovariance};
use super::eigen::symmetric_eigen;
use super::{Context, DaError, Estimate, Filter, Gaussian};
use crate::core::ObsBatch;

/// Which covariance the static background error covariance scales.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackgroundCovariance {
    /// The climatological covariance of the truth (DAPPER's `B = "clim"`).
    #[default]
    Climatology,
    /// The identity (DAPPER's `B = "eye"`, its default in 2019 when the
    /// Bocquet & Sakov 4D-Var scores were recorded).
    Identity,
    /// The covariance the initial ensembles and the twin's background are
    /// drawn from: `[initial] std` per field with its `length_scale`,
    /// applied as a sparse operator (never `n x n`), controlling only the
    /// variables with a non-zero standard deviation. The choice for
    /// gridded models (the sea ice), and for estimating parameters that
    /// sit in the state.
    Initial,
    /// A homogeneous Gaussian covariance of its own: `background_std` on
    /// every variable, Gaussian correlations of length
    /// `background_length_scale` within each field (a sparse operator, as
    /// for `initial`). The static B of a gridded model whose ensemble comes
    /// from a climatological sample (the QG twins), where the climatological
    /// covariance is `n x n` and estimated from the truth itself.
    Gaussian,
}

/// Settings of 3D-Var and 4D-Var. Unknown keys are refused by the
/// experiment reader (serde cannot deny them next to a flattened table).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VarConfig {
    /// Observation cycles between the window start and the newest
    /// observation (0 for 3D-Var).
    #[serde(default)]
    pub window: usize,
    /// Cycles the window moves after each minimisation (1 to `window`).
    #[serde(default = "one")]
    pub shift: usize,
    /// Factor on the static background covariance.
    #[serde(default = "one_f")]
    pub background_scale: f64,
    /// The covariance it scales.
    #[serde(default)]
    pub background_covariance: BackgroundCovariance,
    /// Standard deviation of `background_covariance = "gaussian"`.
    #[serde(default)]
    pub background_std: Option<f64>,
    /// Correlation length of `background_covariance = "gaussian"`, in the
    /// model's coordinates.
    #[serde(default)]
    pub background_length_scale: Option<f64>,
    /// Weak constraint: standard deviation of the model error added at each
    /// cycle boundary inside the window (`Q = q^2 I`); absent = strong.
    #[serde(default)]
    pub model_error_std: Option<f64>,
    /// How gradients are computed.
    #[serde(default)]
    pub gradient: GradientStrategy,
    /// Segment length (model steps) for `gradient = "checkpointed"`.
    #[serde(default = "four")]
    pub checkpoint_steps: usize,
    /// The minimiser: `max_iterations`, `gradient_tolerance`, `memory`.
    #[serde(flatten)]
    pub minimiser: MinimiserConfig,
}

fn one() -> usize {
    1
}
fn one_f() -> f64 {
    1.0
}
fn four() -> usize {
    4
}

impl VarConfig {
    /// Checks the values; the error is `(key, reason)`.
    pub fn validate(&self, method: &str) -> Result<(), (String, String)> {
        let err = |k: &str, r: String| Err((k.to_string(), r));
        if method == "var3d" && (self.window != 0 || self.model_error_std.is_some()) {
            return err("window", "3D-Var has no window (use var4d)".into());
        }
        if method == "var4d" && self.window == 0 {
            return err(
                "window",
                "4D-Var needs a window of at least 1 cycle (window = 0 is var3d)".into(),
            );
        }
        if self.window > 0 && !(1..=self.window).contains(&self.shift) {
            return err(
                "shift",
                format!("must lie in 1..={}, got {}", self.window, self.shift),
            );
        }
        if !(self.background_scale > 0.0 && self.background_scale.is_finite()) {
            return err(
                "background_scale",
                format!("must be positive, got {}", self.background_scale),
            );
        }
        if let Some(q) = self.model_error_std
            && !(q > 0.0 && q.is_finite())
        {
            return err("model_error_std", format!("must be positive, got {q}"));
        }
        let gaussian = self.background_covariance == BackgroundCovariance::Gaussian;
        for (key, value) in [
            ("background_std", self.background_std),
            ("background_length_scale", self.background_length_scale),
        ] {
            match value {
                None if gaussian => {
                    return err(
                        key,
                        "background_covariance = \"gaussian\" needs background_std and background_length_scale".into(),
                    );
                }
                Some(_) if !gaussian => {
                    return err(
                        key,
                        "only applies to background_covariance = \"gaussian\"".into(),
                    );
                }
                Some(v) if !(v > 0.0 && v.is_finite()) => {
                    return err(key, format!("must be positive, got {v}"));
                }
                _ => {}
            }
        }
        if self.checkpoint_steps == 0 {
            return err("checkpoint_steps", "must be at least 1".into());
        }
        self.minimiser.validate()
    }
}

/// Symmetric square root of a positive semi-definite matrix (negative
/// eigenvalues from round-off are clipped to zero).
pub fn sqrt_psd(b: &DMatrix<f64>) -> Result<DMatrix<f64>, DaError> {
    let (values, v) =
        symmetric_eigen(b).ok_or_else(|| DaError::Numerical("square root of B".into()))?;
    let mut scaled = v.clone();
    for (mut col, &l) in scaled.column_iter_mut().zip(values.iter()) {
        col *= l.max(0.0).sqrt();
    }
    Ok(scaled * v.transpose())
}

/// A summary of one minimisation for the run's output.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct MinimisationSummary {
    /// Observation cycle (0-based) of the newest observation in the window.
    pub cycle: usize,
    /// Iterations.
    pub iterations: u64,
    /// Cost at the background.
    pub cost_initial: f64,
    /// Final cost split and gradient norm.
    pub last: IterationRecord,
    /// Whether the gradient tolerance was met (else the best iterate was
    /// used, see [`minimise`]).
    pub converged: bool,
}

/// The timing of a variational window, shared by 3D/4D-Var and En4DVar:
/// the cycle of the window start, the latest cycle, and the observations
/// that arrived since the last minimisation.
#[derive(Debug, Default)]
pub(crate) struct WindowClock {
    /// Cycle of the window start (the state there is at `start * interval`).
    pub(crate) start: usize,
    /// The latest cycle.
    pub(crate) now: usize,
    pending: Vec<(usize, ObsBatch)>,
}

impl WindowClock {
    /// One forecast cycle has passed.
    pub(crate) fn tick(&mut self) {
        self.now += 1;
    }

    /// Records the observation of the latest cycle; returns the window
    /// length in cycles once it has reached `window`.
    pub(crate) fn observe(&mut self, obs: &ObsBatch, window: usize) -> Option<usize> {
        self.pending.push((self.now, obs.clone()));
        let cycles = self.now - self.start;
        (cycles >= window).then_some(cycles)
    }

    /// The pending observations as `(cycle offset from the window start, batch)`.
    pub(crate) fn observations(&self) -> impl Iterator<Item = (usize, &ObsBatch)> {
        self.pending.iter().map(|(c, y)| (c - self.start, y))
    }

    /// Moves the window start by `cycles` after a minimisation, which
    /// assimilated every pending observation.
    pub(crate) fn shift(&mut self, cycles: usize) {
        self.start += cycles;
        self.pending.clear();
    }
}

/// 3D-Var (window 0) and 4D-Var (window >= 1), strong or weak constraint,
/// with a static background covariance.
pub struct Var {
    config: VarConfig,
    b_sqrt: Box<dyn CovarianceSqrt>,
    /// State at the window start.
    start: DVector<f64>,
    /// The current estimate (background or analysis) at the latest time.
    current: DVector<f64>,
    clock: WindowClock,
    /// One entry per minimisation.
    pub minimisations: Vec<MinimisationSummary>,
    /// Full per-iteration history of every minimisation.
    pub histories: Vec<Vec<IterationRecord>>,
}

impl Var {
    /// Starts from the initial mean.
    pub fn new(
        context: &Context<'_>,
        initial: &Gaussian,
        config: &VarConfig,
    ) -> Result<Self, DaError> {
        let n = initial.mean.len();
        let dense = |b: DMatrix<f64>| -> Result<Box<dyn CovarianceSqrt>, DaError> {
            Ok(Box::new(DenseSqrt(sqrt_psd(
                &(b * config.background_scale),
            )?)))
        };
        let b_sqrt = match config.background_covariance {
            BackgroundCovariance::Climatology => dense(context.climate.covariance()?.clone())?,
            BackgroundCovariance::Identity => dense(DMatrix::identity(n, n))?,
            BackgroundCovariance::Gaussian => {
                let std = config.background_std.unwrap_or(0.0);
                Box::new(
                    FieldCovariance::new(
                        context.model.geometry(),
                        &vec![std; n],
                        config.background_length_scale,
                    )
                    .scaled(config.background_scale),
                )
            }
            BackgroundCovariance::Initial => {
                let s = initial
                    .covariance_sqrt(context.model.geometry())
                    .scaled(config.background_scale);
                if s.control_size() == 0 {
                    return Err(DaError::Unsupported {
                        method: "var",
                        what: "a non-zero [initial] std for background_covariance = \"initial\""
                            .into(),
                    });
                }
                Box::new(s)
            }
        };
        Ok(Self {
            config: config.clone(),
            b_sqrt,
            start: initial.mean.clone(),
            current: initial.mean.clone(),
            clock: WindowClock::default(),
            minimisations: Vec::new(),
            histories: Vec::new(),
        })
    }
}

impl Filter for Var {
    fn forecast(&mut self, context: &Context<'_>, time: f64) -> Result<(), DaError> {
        self.current = context.forecast_state(&self.current, time, context.steps_per_cycle)?;
        self.clock.tick();
        if self.config.window == 0 {
            // 3D-Var: the window starts at the observation time.
            self.start = self.current.clone();
            self.clock.start = self.clock.now;
        }
        Ok(())
    }

    fn analyse(&mut self, context: &Context<'_>, obs: &ObsBatch) -> Result<(), DaError> {
        let Some(cycles) = self.clock.observe(obs, self.config.window) else {
            return Ok(());
        };
        let window = Window::new(
            context,
            self.clock.start,
            cycles,
            self.clock
                .observations()
                .map(|(c, y)| (c, y.clone()))
                .collect(),
            self.config.model_error_std,
            self.config.checkpoint_steps,
        );
        let problem = VarProblem {
            window: &window,
            background: &self.start,
            b_sqrt: self.b_sqrt.as_ref(),
            strategy: self.config.gradient,
        };
        let p0 = vec![0.0; problem.size()];
        let result = minimise(problem.clone(), p0, &self.config.minimiser)?;
        let x0 = problem.initial_state(&result.control);
        let (n, m) = (x0.len(), self.b_sqrt.control_size());
        let eta: Vec<Vec<f64>> = result.control[m..].chunks(n).map(<[f64]>::to_vec).collect();
        let states = window.states(x0.as_slice(), &eta);
        self.current = states[cycles].clone();
        let shift = if self.config.window == 0 {
            0
        } else {
            self.config.shift
        };
        self.start = states[shift].clone();
        self.clock.shift(shift);
        self.minimisations.push(MinimisationSummary {
            cycle: self.clock.now - 1,
            iterations: result.iterations(),
            cost_initial: result.history[0].cost,
            last: *result
                .history
                .last()
                .expect("history starts with the background"),
            converged: result.converged,
        });
        self.histories.push(result.history);
        Ok(())
    }

    fn estimate(&self) -> Estimate<'_> {
        // A variational analysis carries no covariance estimate here: NaN
        // spread makes the summary say so (null) instead of inventing one.
        Estimate::Gaussian {
            mean: &self.current,
            variance: DVector::from_element(self.current.len(), f64::NAN),
        }
    }

    fn minimisations(&self) -> &[MinimisationSummary] {
        &self.minimisations
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Tensor, TensorData};
    use nalgebra::{DMatrix, DVector};

    use std::sync::Arc;

    use super::*;
    use crate::core::{Forecaster, Geometry, Location, Model, ObsError, ObsOperator};
    use crate::da::ensemble::{EnsembleFilter, Kind};
    use crate::da::ienks::{Ienks, IenksConfig};
    use crate::da::{ClimateStats, Context, EnsembleConfig, Filter};
    use crate::device::{cpu_f64, cpu_f64_autodiff, to_vec};
    use crate::models::adjoint::HostTendency;
    use crate::models::lorenz96_two_scale::TwoScaleTendency;
    use crate::models::{Integrator, Lorenz63, Lorenz96, Lorenz96TwoScale, OdeModel, Tendency};
    use crate::obs::Selection;
    use crate::rng::{standard_normal, stream};

    fn selection(g: &Geometry, indices: Vec<usize>) -> Arc<dyn ObsOperator> {
        let locations: Vec<Location> = g.locations().collect();
        Arc::new(Selection::new(indices, &locations, "selection").unwrap())
    }

    fn every(g: &Geometry, stride: usize) -> Arc<dyn ObsOperator> {
        selection(g, (0..g.size()).step_by(stride).collect())
    }

    fn batch(op: &Arc<dyn ObsOperator>, y: DVector<f64>, std: f64, time: f64) -> ObsBatch {
        let p = y.len();
        ObsBatch::new(0, time, y, ObsError::uniform(std, p), op.clone(), 0)
    }

    /// `H(x, t) = (1 + t) x^2 / 10` on every variable: nonlinear and time
    /// dependent, so it goes through autodiff and needs the batch's time.
    struct TimeScaledSquares {
        locations: Vec<Location>,
    }

    impl ObsOperator for TimeScaledSquares {
        fn apply(&self, state: Tensor<2>, time: f64) -> Tensor<2> {
            state.clone() * state * ((1.0 + time) * 0.1)
        }
        fn size(&self) -> usize {
            self.locations.len()
        }
        fn locations(&self) -> &[Location] {
            &self.locations
        }
        fn name(&self) -> &str {
            "time_scaled_squares"
        }
    }

    /// `dx/dt = A x`: with forward Euler, the step is the matrix `I + dt A`.
    struct Linear {
        a: DMatrix<f64>,
    }

    impl Tendency for Linear {
        fn tendency(&self, x: Tensor<2>, _t: f64) -> Tensor<2> {
            let n = self.a.nrows();
            let at = Tensor::<2>::from_data(
                TensorData::new(self.a.transpose().as_slice().to_vec(), [n, n]),
                &x.device(),
            );
            x.matmul(at.transpose())
        }
        fn host(&self) -> Option<&dyn HostTendency> {
            Some(self)
        }
    }

    impl HostTendency for Linear {
        fn eval(&self, x: &[f64], _t: f64, out: &mut [f64]) {
            out.copy_from_slice((&self.a * DVector::from_column_slice(x)).as_slice());
        }
        fn vjp(&self, _x: &[f64], _t: f64, l: &[f64], out: &mut [f64]) {
            out.copy_from_slice(self.a.tr_mul(&DVector::from_column_slice(l)).as_slice());
        }
    }

    fn linear_model(n: usize) -> OdeModel<Linear> {
        let a = DMatrix::from_fn(n, n, |i, j| {
            if i == j {
                -0.3
            } else {
                0.2 * ((i + 2 * j) as f64).sin()
            }
        });
        OdeModel::new(
            Linear { a },
            Integrator::Euler,
            0.1,
            Geometry::chain(n, true, "x"),
            "linear",
        )
    }

    fn window<'a>(
        model: &'a dyn Model,
        obs: &Arc<dyn ObsOperator>,
        cycles: usize,
        q: Option<f64>,
    ) -> Window<'a> {
        let p = obs.size();
        let observations = (1..=cycles)
            .map(|c| {
                let y = DVector::from_vec(standard_normal(&mut stream(c as u64, "y"), p))
                    .add_scalar(2.0);
                (c, batch(obs, y, 0.7, (c * 3) as f64 * model.dt()))
            })
            .collect();
        Window {
            model,
            device: cpu_f64(),
            host_path: true,
            time0: 0.0,
            steps_per_cycle: 3,
            cycles,
            observations,
            model_error_std: q,
            checkpoint_steps: 2,
        }
    }

    fn state(n: usize) -> Vec<f64> {
        standard_normal(&mut stream(3, "x0"), n)
            .iter()
            .map(|v| 2.0 * v + 1.0)
            .collect()
    }

    /// Centred finite differences of `J_o` along a random direction against
    /// the gradient, relative error below 1e-6 in f64.
    fn check_gradient(t: &Window<'_>, strategy: GradientStrategy) {
        let n = t.model.size();
        let mut x0 = state(n);
        if t.model.name() == "lorenz96_two_scale" {
            // Fast variables of realistic (small) amplitude: the stiff fast
            // scale overflows from O(1) values at dt = 0.005.
            for v in &mut x0[4..] {
                *v *= 0.05;
            }
        }
        let eta: Vec<Vec<f64>> = if t.model_error_std.is_some() {
            (1..t.cycles)
                .map(|c| standard_normal(&mut stream(c as u64, "eta"), n))
                .collect()
        } else {
            Vec::new()
        };
        let g = t.gradient(&x0, &eta, strategy).unwrap();
        let c = t.cost(&x0, &eta);
        assert!(
            (g.cost - c).abs() < 1e-10 * g.cost.max(1.0),
            "{} {strategy:?} q={:?}: {} vs {c}",
            t.model.name(),
            t.model_error_std,
            g.cost
        );
        let dx = standard_normal(&mut stream(4, "dx"), n);
        let deta: Vec<Vec<f64>> = eta
            .iter()
            .enumerate()
            .map(|(c, _)| standard_normal(&mut stream(c as u64, "de"), n))
            .collect();
        let eps = 1e-5;
        let shifted = |s: f64| {
            let x: Vec<f64> = x0.iter().zip(&dx).map(|(a, d)| a + s * d).collect();
            let e: Vec<Vec<f64>> = eta
                .iter()
                .zip(&deta)
                .map(|(a, d)| a.iter().zip(d).map(|(u, v)| u + s * v).collect())
                .collect();
            t.cost(&x, &e)
        };
        let fd = (shifted(eps) - shifted(-eps)) / (2.0 * eps);
        let mut analytic: f64 = g.x0.iter().zip(&dx).map(|(a, b)| a * b).sum();
        for (ge, de) in g.eta.iter().zip(&deta) {
            analytic += ge.iter().zip(de).map(|(a, b)| a * b).sum::<f64>();
        }
        let rel = (fd - analytic).abs() / analytic.abs();
        assert!(
            rel < 1e-6,
            "{} {strategy:?}: fd {fd} vs gradient {analytic} (relative {rel:e})",
            t.model.name()
        );
    }

    #[test]
    fn gradients_match_finite_differences_for_every_model_operator_and_strategy() {
        let l96 = Lorenz96::lorenz96(12, 8.0, 0.05, Integrator::Rk4);
        let l63 = Lorenz63::lorenz63(10.0, 28.0, 8.0 / 3.0, 0.01, Integrator::Rk4);
        let two_scale = Lorenz96TwoScale::two_scale(
            TwoScaleTendency {
                slow: 4,
                fast_per_slow: 3,
                forcing: 20.0,
                coupling: 1.0,
                time_scale: 10.0,
                amplitude: 10.0,
            },
            0.005,
            Integrator::Rk4,
        );
        let models: [&dyn Model; 3] = [&l96, &l63, &two_scale];
        for model in models {
            let g = model.geometry();
            let ops = [
                every(g, 1),
                every(g, 2),
                selection(g, vec![0, g.size() - 1]),
                Arc::new(TimeScaledSquares {
                    locations: g.locations().collect(),
                }),
            ];
            for op in &ops {
                for q in [None, Some(0.3)] {
                    let t = window(model, op, 3, q);
                    check_gradient(&t, GradientStrategy::Tape);
                    check_gradient(&t, GradientStrategy::Checkpointed);
                    if model.host().is_some() {
                        check_gradient(&t, GradientStrategy::Adjoint);
                    }
                }
            }
        }
    }

    /// The forward cost evaluates each batch's operator at the batch's own
    /// time, as the gradients do (it once used time 0, which this catches:
    /// the costs of a time-dependent operator differed).
    #[test]
    fn forward_cost_and_gradient_cost_agree_for_a_time_dependent_operator() {
        let model = Lorenz96::lorenz96(8, 8.0, 0.05, Integrator::Rk4);
        let op: Arc<dyn ObsOperator> = Arc::new(TimeScaledSquares {
            locations: model.geometry().locations().collect(),
        });
        let t = window(&model, &op, 3, None);
        let x0 = state(8);
        let forward = t.cost(&x0, &[]);
        for s in [
            GradientStrategy::Tape,
            GradientStrategy::Checkpointed,
            GradientStrategy::Adjoint,
        ] {
            let g = t.gradient(&x0, &[], s).unwrap();
            assert!(
                (g.cost - forward).abs() < 1e-12 * forward,
                "{s:?}: {} vs {forward}",
                g.cost
            );
        }
    }

    #[test]
    fn the_three_gradient_strategies_agree() {
        let model = Lorenz96::lorenz96(40, 8.0, 0.05, Integrator::Rk4);
        let op = every(model.geometry(), 2);
        let t = window(&model, &op, 4, Some(0.1));
        let x0 = state(40);
        let eta: Vec<Vec<f64>> = (1..4)
            .map(|c| standard_normal(&mut stream(c, "eta"), 40))
            .collect();
        let a = t.gradient(&x0, &eta, GradientStrategy::Adjoint).unwrap();
        for s in [GradientStrategy::Tape, GradientStrategy::Checkpointed] {
            let b = t.gradient(&x0, &eta, s).unwrap();
            assert!((a.cost - b.cost).abs() < 1e-10 * a.cost);
            let scale = a.x0.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            for (u, v) in
                a.x0.iter()
                    .zip(&b.x0)
                    .chain(a.eta.iter().flatten().zip(b.eta.iter().flatten()))
            {
                assert!((u - v).abs() < 1e-10 * scale, "{s:?}: {u} vs {v}");
            }
        }
    }

    /// <H x, y> = <x, H^T y> with H^T y from burn autodiff, for each linear operator.
    #[test]
    fn observation_operator_adjoints_pass_the_dot_product_test() {
        let g = Geometry::chain(9, true, "x");
        let ad = cpu_f64_autodiff();
        for op in [every(&g, 1), every(&g, 4), selection(&g, vec![8, 1, 1])] {
            let x = standard_normal(&mut stream(1, "x"), 9);
            let y = standard_normal(&mut stream(2, "y"), op.size());
            let xt = Tensor::<2>::from_data(TensorData::new(x.clone(), [1, 9]), &ad).require_grad();
            let yt = Tensor::<2>::from_data(TensorData::new(y.clone(), [1, op.size()]), &ad);
            let hx = op.apply(xt.clone(), 0.0);
            let lhs: f64 = to_vec(hx.clone()).iter().zip(&y).map(|(a, b)| a * b).sum();
            let grads = (hx * yt).sum().backward();
            let hty = to_vec(xt.grad(&grads).unwrap());
            let rhs: f64 = x.iter().zip(&hty).map(|(a, b)| a * b).sum();
            assert!(
                (lhs - rhs).abs() < 1e-13 * lhs.abs().max(1.0),
                "{}",
                op.name()
            );
            let matrix = op.linear().unwrap().matrix(9).transpose() * DVector::from_vec(y);
            assert!((matrix - DVector::from_vec(hty)).abs().max() < 1e-15);
        }
    }

    fn context<'a>(model: &'a dyn Model, climate: &'a ClimateStats, steps: usize) -> Context<'a> {
        Context {
            model,
            forecaster: Forecaster::new(cpu_f64()),
            steps_per_cycle: steps,
            climate,
        }
    }

    /// Climatological statistics whose covariance is `covariance`: a
    /// sample with exactly that covariance and mean zero.
    fn climate_with(covariance: &DMatrix<f64>) -> ClimateStats {
        let n = covariance.nrows();
        // Columns +-sqrt(n) L e_i have mean zero and covariance L L^T (ddof 1
        // over 2n columns gives 2n/(2n-1) n/n: rescale).
        let l = covariance.clone().cholesky().unwrap().l();
        let scale = ((2 * n - 1) as f64 / 2.0).sqrt();
        let mut states = DMatrix::zeros(n, 2 * n);
        for i in 0..n {
            let c = l.column(i) * scale;
            states.set_column(2 * i, &c);
            states.set_column(2 * i + 1, &(-c));
        }
        ClimateStats::from_states(states)
    }

    fn var_config(window: usize) -> VarConfig {
        VarConfig {
            window,
            shift: 1,
            background_scale: 0.5,
            background_covariance: BackgroundCovariance::Climatology,
            background_std: None,
            background_length_scale: None,
            model_error_std: None,
            gradient: GradientStrategy::Adjoint,
            checkpoint_steps: 4,
            minimiser: MinimiserConfig {
                max_iterations: 500,
                gradient_tolerance: 1e-10,
                memory: 10,
            },
        }
    }

    /// 3D-Var by L-BFGS equals the closed-form BLUE; 4D-Var with a window
    /// of one cycle and a linear model equals the Kalman analysis with the
    /// propagated covariance `M B M^T`.
    #[test]
    fn variational_analyses_match_the_kalman_formulas() {
        let n = 6;
        let model = linear_model(n);
        let obs = every(model.geometry(), 2);
        let h = obs.linear().unwrap().matrix(n);
        let z = DMatrix::from_vec(n, n, standard_normal(&mut stream(5, "b"), n * n));
        let climate =
            climate_with(&(&z * z.transpose() / n as f64 + DMatrix::identity(n, n) * 0.1));
        let s = context(&model, &climate, 2);
        let initial = Gaussian::new(DVector::from_vec(state(n)), DVector::from_element(n, 1.0));
        let y = DVector::from_vec(standard_normal(&mut stream(6, "y"), obs.size()));
        let r = DMatrix::identity(obs.size(), obs.size()) * 0.25;
        let b = climate.covariance().unwrap() * 0.5;
        let kalman = |xf: &DVector<f64>, pf: &DMatrix<f64>| {
            let k = pf * h.transpose() * (&h * pf * h.transpose() + &r).try_inverse().unwrap();
            xf + k * (&y - &h * xf)
        };
        // The linear propagator of one cycle (two Euler steps).
        let step = DMatrix::identity(n, n) + &model.tendency.a * 0.1;
        let m = &step * &step;
        for window in [0usize, 1] {
            let mut var = Var::new(&s, &initial, &var_config(window)).unwrap();
            var.forecast(&s, 0.0).unwrap();
            var.analyse(&s, &batch(&obs, y.clone(), 0.5, 0.2)).unwrap();
            let Estimate::Gaussian { mean, .. } = var.estimate() else {
                panic!()
            };
            let want = if window == 0 {
                kalman(&(&m * &initial.mean), &b)
            } else {
                kalman(&(&m * &initial.mean), &(&m * &b * m.transpose()))
            };
            let err = (mean - &want).abs().max();
            assert!(err < 1e-7, "window {window}: {err:e}");
        }
    }

    /// 3D-Var with `background_covariance = "gaussian"` is the BLUE with
    /// `B = std^2 C`, `C` the Gaussian correlations of the given length
    /// (assembled densely from the square root here); the two keys are
    /// required with it and refused without it, by name.
    #[test]
    fn gaussian_background_gives_the_blue_and_its_keys_are_checked() {
        let n = 6;
        let model = linear_model(n);
        let obs = every(model.geometry(), 2);
        let h = obs.linear().unwrap().matrix(n);
        let climate = ClimateStats::from_moments(DVector::zeros(n), DVector::from_element(n, 1.0));
        let s = context(&model, &climate, 2);
        let initial = Gaussian::new(DVector::from_vec(state(n)), DVector::from_element(n, 1.0));
        let y = DVector::from_vec(standard_normal(&mut stream(6, "y"), obs.size()));
        let config = VarConfig {
            background_covariance: BackgroundCovariance::Gaussian,
            background_std: Some(1.5),
            background_length_scale: Some(1.2),
            ..var_config(0)
        };
        config.validate("var3d").unwrap();
        let sqrt = FieldCovariance::new(model.geometry(), &[1.5; 6], Some(1.2)).scaled(0.5);
        let mut root = DMatrix::zeros(n, sqrt.control_size());
        for j in 0..sqrt.control_size() {
            let mut e = vec![0.0; sqrt.control_size()];
            e[j] = 1.0;
            root.set_column(j, &sqrt.apply(&e));
        }
        let b = &root * root.transpose();
        assert!((b[(0, 0)] - 0.5 * 1.5 * 1.5).abs() < 1e-12, "{}", b[(0, 0)]);
        assert!(
            b[(0, 1)] > 0.1 && b[(0, 1)] < b[(0, 0)],
            "correlated neighbours"
        );
        let r = DMatrix::identity(obs.size(), obs.size()) * 0.25;
        let step = DMatrix::identity(n, n) + &model.tendency.a * 0.1;
        let xf = &step * &step * &initial.mean;
        let k = &b * h.transpose() * (&h * &b * h.transpose() + &r).try_inverse().unwrap();
        let want = &xf + k * (&y - &h * &xf);
        let mut var = Var::new(&s, &initial, &config).unwrap();
        var.forecast(&s, 0.0).unwrap();
        var.analyse(&s, &batch(&obs, y.clone(), 0.5, 0.2)).unwrap();
        let Estimate::Gaussian { mean, .. } = var.estimate() else {
            panic!()
        };
        let err = (mean - &want).abs().max();
        assert!(err < 1e-7, "{err:e}");
        for (bad, key) in [
            (
                VarConfig {
                    background_std: None,
                    ..config.clone()
                },
                "background_std",
            ),
            (
                VarConfig {
                    background_length_scale: Some(-1.0),
                    ..config.clone()
                },
                "background_length_scale",
            ),
            (
                VarConfig {
                    background_std: Some(1.0),
                    ..var_config(0)
                },
                "background_std",
            ),
        ] {
            let (k, why) = bad.validate("var3d").unwrap_err();
            assert_eq!(k, key, "{why}");
        }
    }

    #[test]
    fn ienks_with_lag_zero_and_one_iteration_is_the_etkf() {
        let model = Lorenz96::lorenz96(40, 8.0, 0.05, Integrator::Rk4);
        let obs = every(model.geometry(), 2);
        let climate =
            ClimateStats::from_moments(DVector::zeros(40), DVector::from_element(40, 1.0));
        let s = context(&model, &climate, 2);
        let initial = Gaussian::new(DVector::from_vec(state(40)), DVector::from_element(40, 1.0));
        let y = DVector::from_vec(standard_normal(&mut stream(7, "y"), obs.size()));
        let config = IenksConfig {
            ensemble_size: 15,
            lag: 0,
            iterations: 1,
            weight_tolerance: 0.0,
            finite_size: None,
            inflation: 1.0,
            rotation: false,
        };
        let mut ienks = Ienks::new(&config, &initial, stream(1, "same"));
        let ens = EnsembleConfig {
            ensemble_size: 15,
            inflation: 1.0,
            rotation: false,
            rtpp: None,
            rtps: None,
            localisation_radius: None,
            taper: None,
            batch: None,
            engine: None,
        };
        let mut etkf = EnsembleFilter::new(Kind::Sqrt, &ens, &initial, stream(1, "same"));
        for filter in [&mut ienks as &mut dyn Filter, &mut etkf] {
            filter.forecast(&s, 0.0).unwrap();
            filter
                .analyse(&s, &batch(&obs, y.clone(), 0.5, 0.1))
                .unwrap();
        }
        let (Estimate::Ensemble(a), Estimate::Ensemble(b)) = (ienks.estimate(), etkf.estimate())
        else {
            panic!()
        };
        let err = (a - b).abs().max();
        assert!(err < 1e-10, "{err:e}");
    }

    #[test]
    fn a_minimisation_at_its_iteration_cap_uses_its_best_iterate_and_says_so() {
        let model = Lorenz96::lorenz96(40, 8.0, 0.05, Integrator::Rk4);
        let obs = every(model.geometry(), 1);
        let climate =
            ClimateStats::from_moments(DVector::zeros(40), DVector::from_element(40, 1.0));
        let s = context(&model, &climate, 4);
        let initial = Gaussian::new(DVector::from_vec(state(40)), DVector::from_element(40, 1.0));
        let mut config = var_config(4);
        config.background_covariance = BackgroundCovariance::Identity;
        config.minimiser.max_iterations = 2;
        let mut var = Var::new(&s, &initial, &config).unwrap();
        for k in 0..4 {
            var.forecast(&s, 0.2 * k as f64).unwrap();
            let y = DVector::from_element(40, 3.0);
            var.analyse(&s, &batch(&obs, y, 0.5, 0.2 * (k + 1) as f64))
                .expect("a capped minimisation is not a failure");
        }
        let m = var.minimisations();
        assert!(!m.is_empty());
        for r in m {
            assert!(
                !r.converged,
                "two iterations cannot reach a 1e-6 relative gradient"
            );
            assert!(r.iterations <= 2, "{r:?}");
            assert!(r.last.cost < r.cost_initial, "{r:?}");
        }
    }
}
