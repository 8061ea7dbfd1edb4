//! The one forecast helper: every method, the twin and the runner advance
//! states through [`Forecaster`], which honours the model's optional host
//! path (only where the run allows it) and its randomness.

use burn::tensor::{Device, Tensor};
use nalgebra::{DMatrix, DVector};

use super::model::{Model, NoiseKeys};
use crate::device::{ensemble_to_tensor, tensor_to_ensemble};

/// States at least this large forecast their members on several threads.
const PARALLEL_MEMBERS_FROM: usize = 4096;

/// A forecast produced a non-finite value.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("the {model} forecast from time {time} over {steps} steps blew up (non-finite values)")]
pub struct ForecastError {
    /// The model's name.
    pub model: String,
    /// Start time of the forecast.
    pub time: f64,
    /// Its length in steps.
    pub steps: usize,
}

/// How forecasts run: where, whether a model's hand-written host path may
/// be used, and the random stream of stochastic models.
#[derive(Clone, Debug)]
pub struct Forecaster {
    /// Where burn runs the model.
    pub device: Device,
    /// Use the model's host path where it has one (`[run] host_fast_path`);
    /// `false` sends every forecast through burn on `device`.
    pub host_path: bool,
    /// Seed of the noise stream of stochastic models (one per consumer).
    pub noise_stream: u64,
}

impl Forecaster {
    /// A forecaster on `device` with the host path allowed and noise stream 0.
    pub fn new(device: Device) -> Self {
        Self {
            device,
            host_path: true,
            noise_stream: 0,
        }
    }

    /// The same forecaster with another noise stream.
    pub fn with_noise_stream(&self, stream: u64) -> Self {
        Self {
            noise_stream: stream,
            ..self.clone()
        }
    }

    /// Advances a `[members, n]` tensor by `steps` steps from `time`; a
    /// stochastic model draws its noise for members
    /// `member_offset..member_offset + members`.
    pub fn tensor(
        &self,
        model: &dyn Model,
        mut state: Tensor<2>,
        time: f64,
        steps: usize,
        member_offset: u64,
    ) -> Tensor<2> {
        let Some(stochastic) = model.stochastic() else {
            return model.forecast(state, time, steps);
        };
        let dt = model.dt();
        let first = (time / dt).round() as u64;
        for k in 0..steps {
            let keys = NoiseKeys {
                stream: self.noise_stream,
                member_offset,
                step: first + k as u64,
            };
            state = stochastic.step_with_noise(state, time + k as f64 * dt, &keys);
        }
        state
    }

    /// Advances an `n x members` host ensemble (members `0..members` for the
    /// noise keys).
    ///
    /// # Errors
    /// If the forecast produced a non-finite value.
    pub fn ensemble(
        &self,
        model: &dyn Model,
        ensemble: &DMatrix<f64>,
        time: f64,
        steps: usize,
    ) -> Result<DMatrix<f64>, ForecastError> {
        let out = match model
            .host()
            .filter(|_| self.host_path && model.stochastic().is_none())
        {
            Some(host) => {
                let (n, members) = ensemble.shape();
                let dt = model.dt();
                // Small states step all members at once, members innermost
                // (the transpose of the n x members layout), where the
                // model vectorises across members; the same numbers as
                // member by member.
                let batched = (members > 1 && n < PARALLEL_MEMBERS_FROM)
                    .then(|| {
                        let mut t = ensemble.transpose();
                        host.forecast_members(t.as_mut_slice(), members, time, steps, dt)
                            .then(|| t.transpose())
                    })
                    .flatten();
                match batched {
                    Some(out) => out,
                    None => {
                        let mut out = ensemble.clone();
                        let n = n.max(1);
                        // Members are independent: on all cores for large
                        // states (the same arithmetic per member whatever
                        // the thread).
                        if n >= PARALLEL_MEMBERS_FROM {
                            use rayon::prelude::*;
                            out.as_mut_slice()
                                .par_chunks_mut(n)
                                .for_each(|member| host.forecast(member, time, steps, dt));
                        } else {
                            for member in out.as_mut_slice().chunks_mut(n) {
                                host.forecast(member, time, steps, dt);
                            }
                        }
                        out
                    }
                }
            }
            None => tensor_to_ensemble(self.tensor(
                model,
                ensemble_to_tensor(ensemble, &self.device),
                time,
                steps,
                0,
            )),
        };
        if out.iter().all(|v| v.is_finite()) {
            Ok(out)
        } else {
            Err(ForecastError {
                model: model.name().to_string(),
                time,
                steps,
            })
        }
    }

    /// Advances one state deterministically (a mean or a control state:
    /// no model noise).
    ///
    /// # Errors
    /// If the forecast produced a non-finite value.
    pub fn state(
        &self,
        model: &dyn Model,
        x: &DVector<f64>,
        time: f64,
        steps: usize,
    ) -> Result<DVector<f64>, ForecastError> {
        let out = match model.host().filter(|_| self.host_path) {
            Some(host) => {
                let mut out = x.clone();
                host.forecast(out.as_mut_slice(), time, steps, model.dt());
                out
            }
            None => {
                let m = DMatrix::from_column_slice(x.len(), 1, x.as_slice());
                let t = model.forecast(ensemble_to_tensor(&m, &self.device), time, steps);
                DVector::from_vec(crate::device::to_vec(t))
            }
        };
        if out.iter().all(|v| v.is_finite()) {
            Ok(out)
        } else {
            Err(ForecastError {
                model: model.name().to_string(),
                time,
                steps,
            })
        }
    }
}
