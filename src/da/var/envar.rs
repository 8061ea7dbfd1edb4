//! En4DVar: 4D-Var with a localised, ensemble-derived background
//! covariance, and an ensemble of perturbed 4D-Var analyses (an ensemble of
//! data assimilations, EDA) for the uncertainty.
//!
//! In each window, `B = (X X^T / (N - 1)) o L` with `X` the anomalies of
//! the ensemble at the window start and `L` a Gaspari-Cohn taper of the
//! model's distances (Schur product, covariance localisation). The control
//! analysis minimises the 4D-Var cost from the ensemble mean with the real
//! observations; each member minimises it from its own state with
//! observations perturbed by `N(0, R)` draws (centred over the members).
//! The members are recentred on the control analysis and their anomalies
//! inflated, then the ensemble moves one cycle on, as in [`super::Var`].

use nalgebra::{DMatrix, DVector};
use serde::{Deserialize, Serialize};

use super::{
    GradientStrategy, MinimisationSummary, MinimiserConfig, VarProblem, Window, WindowClock,
    minimise, sqrt_psd,
};
use crate::core::ObsBatch;
use crate::da::ensemble::{mean_and_anomalies, recompose};
use crate::da::localisation::Taper;
use crate::da::{Context, DaError, Estimate, Filter, Gaussian};
use crate::rng::{Rng, standard_normal};

/// Settings of En4DVar. Unknown keys are refused by the experiment reader.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct En4dvarConfig {
    /// Members N (the EDA runs N + 1 minimisations per window).
    pub ensemble_size: usize,
    /// Observation cycles between the window start and the newest observation.
    #[serde(default = "one")]
    pub window: usize,
    /// Localisation radius of the covariance taper (DAPPER convention).
    pub localisation_radius: f64,
    /// Taper shape.
    #[serde(default)]
    pub taper: Taper,
    /// Multiplicative inflation of the analysis anomalies.
    #[serde(default = "one_f")]
    pub inflation: f64,
    /// Gradient strategy.
    #[serde(default)]
    pub gradient: GradientStrategy,
    /// Segment length for `gradient = "checkpointed"`.
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

impl En4dvarConfig {
    /// Checks the values; the error is `(key, reason)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let err = |k: &str, r: String| Err((k.to_string(), r));
        if self.ensemble_size < 2 {
            return err(
                "ensemble_size",
                format!("must be at least 2, got {}", self.ensemble_size),
            );
        }
        if self.window == 0 {
            return err("window", "must be at least 1".into());
        }
        if !(self.localisation_radius > 0.0 && self.localisation_radius.is_finite()) {
            return err(
                "localisation_radius",
                format!("must be positive, got {}", self.localisation_radius),
            );
        }
        if !(self.inflation >= 1.0 && self.inflation.is_finite()) {
            return err(
                "inflation",
                format!(
                    "must be at least 1 (below 1 it deflates the ensemble), got {}",
                    self.inflation
                ),
            );
        }
        if self.checkpoint_steps == 0 {
            return err("checkpoint_steps", "must be at least 1".into());
        }
        self.minimiser.validate()
    }
}

/// En4DVar and its state.
pub struct En4dvar {
    config: En4dvarConfig,
    taper: Option<DMatrix<f64>>,
    start: DMatrix<f64>,
    clock: WindowClock,
    current: DMatrix<f64>,
    rng: Rng,
    minimisations: Vec<MinimisationSummary>,
}

impl En4dvar {
    /// Draws the initial ensemble.
    pub fn new(config: &En4dvarConfig, initial: &Gaussian, mut rng: Rng) -> Self {
        let e = initial.sample(config.ensemble_size, &mut rng);
        Self {
            config: config.clone(),
            taper: None,
            start: e.clone(),
            clock: WindowClock::default(),
            current: e,
            rng,
            minimisations: Vec::new(),
        }
    }
}

impl Filter for En4dvar {
    fn forecast(&mut self, context: &Context<'_>, time: f64) -> Result<(), DaError> {
        self.current = context.forecast_ensemble(&self.current, time, context.steps_per_cycle)?;
        self.clock.tick();
        Ok(())
    }

    fn analyse(&mut self, context: &Context<'_>, obs: &ObsBatch) -> Result<(), DaError> {
        let Some(cycles) = self.clock.observe(obs, self.config.window) else {
            return Ok(());
        };
        let n_members = self.config.ensemble_size;
        let (mean, anomalies) = mean_and_anomalies(&self.start);
        let (radius, taper) = (self.config.localisation_radius, self.config.taper);
        let localisation = self.taper.get_or_insert_with(|| {
            let g = context.model.geometry();
            let locations: Vec<_> = g.locations().collect();
            let n = locations.len();
            DMatrix::from_fn(n, n, |i, j| {
                taper.coefficient(g.distance(&locations[i], &locations[j]), radius)
            })
        });
        let b = (&anomalies * anomalies.transpose() / (n_members as f64 - 1.0))
            .component_mul(localisation);
        let b_sqrt = crate::da::covariance::DenseSqrt(sqrt_psd(&b)?);
        // Observation perturbations N(0, R), centred over the members, one
        // matrix per pending batch.
        let perturbations: Vec<DMatrix<f64>> = self
            .clock
            .observations()
            .map(|(_, batch)| {
                let p = batch.len();
                let z =
                    DMatrix::from_vec(p, n_members, standard_normal(&mut self.rng, p * n_members));
                batch.error.colour(&mean_and_anomalies(&z).1)
            })
            .collect();
        let solve = |background: &DVector<f64>,
                     member: Option<usize>|
         -> Result<(DVector<f64>, super::Minimised), DaError> {
            let observations = self
                .clock
                .observations()
                .zip(&perturbations)
                .map(|((c, batch), d)| {
                    let mut batch = batch.clone();
                    if let Some(m) = member {
                        batch.values += d.column(m);
                    }
                    (c, batch)
                })
                .collect();
            let window = Window::new(
                context,
                self.clock.start,
                cycles,
                observations,
                None,
                self.config.checkpoint_steps,
            );
            let problem = VarProblem {
                window: &window,
                background,
                b_sqrt: &b_sqrt,
                strategy: self.config.gradient,
            };
            let result = minimise(
                problem.clone(),
                vec![0.0; background.len()],
                &self.config.minimiser,
            )?;
            Ok((problem.initial_state(&result.control), result))
        };
        let (control, record) = solve(&mean, None)?;
        let mut analysis = DMatrix::zeros(mean.len(), n_members);
        let mut members_converged = true;
        for m in 0..n_members {
            let (x, r) = solve(&self.start.column(m).into_owned(), Some(m))?;
            members_converged &= r.converged;
            analysis.set_column(m, &x);
        }
        // Recentre on the control analysis and inflate.
        let (_, a) = mean_and_anomalies(&analysis);
        let a = recompose(&control, &(a * self.config.inflation));
        let t0 = self.clock.start as f64 * context.interval();
        self.current = context.forecast_ensemble(&a, t0, cycles * context.steps_per_cycle)?;
        self.start = context.forecast_ensemble(&a, t0, context.steps_per_cycle)?;
        self.clock.shift(1);
        self.minimisations.push(MinimisationSummary {
            cycle: self.clock.now - 1,
            iterations: record.iterations(),
            cost_initial: record.history[0].cost,
            last: *record
                .history
                .last()
                .expect("history starts at the background"),
            converged: record.converged && members_converged,
        });
        Ok(())
    }

    fn estimate(&self) -> Estimate<'_> {
        Estimate::Ensemble(&self.current)
    }

    fn minimisations(&self) -> &[MinimisationSummary] {
        &self.minimisations
    }
}
