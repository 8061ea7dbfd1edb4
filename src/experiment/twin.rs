//! Twin simulation: a truth trajectory and noisy observations from a seed.

use burn::tensor::Device;
use nalgebra::{DMatrix, DVector};

use super::config::{ExperimentConfig, OperatorKind};
use crate::da::{ClimateStats, Gaussian};
use crate::device::{ensemble_to_tensor, tensor_to_ensemble};
use crate::models::{Geometry, Model};
use crate::obs::{ObsOperator, Selection, apply_to_ensemble};
use crate::rng::{standard_normal, stream};

/// Observation timing: the model time step, the steps between observations,
/// the number of cycles and the burn-in excluded from averages.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Chronology {
    /// Forecast-model time step.
    pub dt: f64,
    /// Forecast-model steps between observations.
    pub steps_per_cycle: usize,
    /// Number of observation cycles.
    pub cycles: usize,
    /// Leading cycles left out of time averages.
    pub burn_in: usize,
}

impl Chronology {
    /// Time between observations.
    pub fn interval(&self) -> f64 {
        self.dt * self.steps_per_cycle as f64
    }

    /// The time of observation `k` (the first is one interval after 0).
    pub fn time(&self, k: usize) -> f64 {
        (k + 1) as f64 * self.interval()
    }
}

/// Builds the observation operator of an experiment for a model geometry.
pub fn observation_operator(
    config: &ExperimentConfig,
    geometry: &Geometry,
) -> Box<dyn ObsOperator> {
    let o = &config.observations;
    Box::new(match o.operator {
        OperatorKind::Identity => Selection::identity(geometry),
        OperatorKind::Every => Selection::every(o.stride.unwrap_or(1), geometry),
        OperatorKind::Partial => {
            Selection::new(o.indices.clone().unwrap_or_default(), geometry, "partial")
                .expect("indices validated with the config")
        }
    })
}

/// Truth, observations and climatology of one twin experiment.
#[derive(Clone, Debug)]
pub struct Twin {
    /// Timing.
    pub chronology: Chronology,
    /// The truth at each observation time, in forecast-model space: `n x cycles`.
    pub truth: DMatrix<f64>,
    /// The observations: `p x cycles`.
    pub observations: DMatrix<f64>,
    /// Standard deviation of the observation noise.
    pub obs_error_std: f64,
    /// The initial truth, in forecast-model space.
    pub initial_truth: DVector<f64>,
    /// The distribution initial ensembles are drawn from.
    pub initial: Gaussian,
    /// Mean and covariance of the truth after the burn-in.
    pub climate: ClimateStats,
}

impl Twin {
    /// Runs the truth model from a draw of the initial distribution and
    /// observes it with noise. Randomness comes from the `truth` and
    /// `observations` streams of `seed`.
    pub fn simulate(
        config: &ExperimentConfig,
        truth_model: &dyn Model,
        forecast_model: &dyn Model,
        obs: &dyn ObsOperator,
        device: &Device,
    ) -> Twin {
        let seed = config.run.seed;
        let n_truth = truth_model.size();
        let n = forecast_model.size();
        let steps_per_cycle = config.observations.every;
        let chronology = Chronology {
            dt: forecast_model.dt(),
            steps_per_cycle,
            cycles: config.run.cycles,
            burn_in: config.run.burn_in,
        };
        let truth_steps = (chronology.interval() / truth_model.dt()).round() as usize;

        let initial_truth_distribution = Gaussian {
            mean: DVector::from_vec(config.initial.mean_vector(n_truth)),
            std: DVector::from_element(n_truth, config.initial.std),
        };
        let x0 = initial_truth_distribution.sample(1, &mut stream(seed, "truth"));
        let mut state = ensemble_to_tensor(&x0, device);
        let mut truth = DMatrix::zeros(n, chronology.cycles);
        for k in 0..chronology.cycles {
            let t0 = k as f64 * chronology.interval();
            state = truth_model.forecast(state, t0, truth_steps);
            let host = tensor_to_ensemble(state.clone());
            truth.column_mut(k).copy_from(&host.view((0, 0), (n, 1)));
        }

        let p = obs.size();
        let mut observations = DMatrix::zeros(p, chronology.cycles);
        for k in 0..chronology.cycles {
            let x = truth.columns(k, 1).into_owned();
            observations.set_column(
                k,
                &apply_to_ensemble(obs, &x, chronology.time(k), device).column(0),
            );
        }
        let noise = standard_normal(&mut stream(seed, "observations"), p * chronology.cycles);
        for (y, e) in observations.iter_mut().zip(noise) {
            *y += config.observations.error_std * e;
        }

        let after_burn_in = truth
            .columns(chronology.burn_in, chronology.cycles - chronology.burn_in)
            .into_owned();
        let climate = ClimateStats::from_states(&after_burn_in);
        let initial = Gaussian {
            mean: DVector::from_vec(config.initial.mean_vector(n)),
            std: DVector::from_element(n, config.initial.std),
        };
        Twin {
            chronology,
            truth,
            observations,
            obs_error_std: config.observations.error_std,
            initial_truth: x0.column(0).rows(0, n).into_owned(),
            initial,
            climate,
        }
    }
}
