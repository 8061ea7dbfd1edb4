//! Baselines: climatology, optimal interpolation / 3D-Var with a static
//! background covariance, and the extended Kalman filter.

use burn::tensor::Tensor;
use nalgebra::{DMatrix, DVector};

use super::{Context, DaError, Estimate, Filter, Gaussian};
use crate::core::{Model, ObsBatch, ObsError, ObsOperator, apply_to_state};
use crate::device::{ensemble_to_tensor, tensor_to_ensemble};

/// The climatological mean and variance at every time; ignores observations.
pub struct Climatology {
    mean: DVector<f64>,
    variance: DVector<f64>,
}

impl Climatology {
    /// From the experiment's climatology.
    pub fn new(context: &Context<'_>) -> Self {
        Self {
            mean: context.climate.mean.clone(),
            variance: context.climate.variance.clone(),
        }
    }
}

impl Filter for Climatology {
    fn forecast(&mut self, _: &Context<'_>, _: f64) -> Result<(), DaError> {
        Ok(())
    }
    fn analyse(&mut self, _: &Context<'_>, _: &ObsBatch) -> Result<(), DaError> {
        Ok(())
    }
    fn estimate(&self) -> Estimate<'_> {
        Estimate::Gaussian {
            mean: &self.mean,
            variance: self.variance.clone(),
        }
    }
}

/// The free run: the initial mean forecast by the model, observations
/// ignored. Its variance is unknown (NaN), as for a variational method.
pub struct FreeRun {
    mean: DVector<f64>,
}

impl FreeRun {
    /// From the initial mean.
    pub fn new(initial: &Gaussian) -> Self {
        Self {
            mean: initial.mean.clone(),
        }
    }
}

impl Filter for FreeRun {
    fn forecast(&mut self, context: &Context<'_>, time: f64) -> Result<(), DaError> {
        self.mean = context.forecast_state(&self.mean, time, context.steps_per_cycle)?;
        Ok(())
    }
    fn analyse(&mut self, _: &Context<'_>, _: &ObsBatch) -> Result<(), DaError> {
        Ok(())
    }
    fn estimate(&self) -> Estimate<'_> {
        Estimate::Gaussian {
            mean: &self.mean,
            variance: DVector::from_element(self.mean.len(), f64::NAN),
        }
    }
}

/// The dense `H` (`p x n`) of a linear operator.
fn linear_h(op: &dyn ObsOperator, n: usize, method: &'static str) -> Result<DMatrix<f64>, DaError> {
    op.linear()
        .map(|l| l.matrix(n))
        .ok_or(DaError::Unsupported {
            method,
            what: format!(
                "a linear observation operator; `{}` is nonlinear",
                op.name()
            ),
        })
}

/// The dense observation error covariance `R`.
fn covariance(error: &ObsError) -> DMatrix<f64> {
    match error {
        ObsError::Diagonal(s) => DMatrix::from_diagonal(&s.map(|v| v * v)),
        ObsError::Correlated { covariance, .. } => covariance.clone(),
    }
}

/// The background of a static-covariance analysis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Background {
    /// The climatological mean at every analysis: optimal interpolation in
    /// its classical, non-cycled form (DAPPER's `OptInterp`).
    Climatology,
    /// The forecast of the previous analysis: cycled 3D-Var.
    Forecast,
}

/// Gain and variances of a static-covariance analysis for one network.
struct StaticGain {
    network_id: u64,
    gain: DMatrix<f64>,
    analysis_variance: DVector<f64>,
}

/// Optimal interpolation and 3D-Var: a static background covariance
/// `B = scale x` the climatological covariance and the gain
/// `K = B H^T (H B H^T + R)^{-1}`, computed once per observation network.
/// For a linear `H` the 3D-Var cost `J(x) = |x - x_b|^2_B + |y - Hx|^2_R`
/// is minimised exactly by `x_b + K (y - H x_b)`. The reported variances
/// are the diagonals of `B` (forecast) and `(I - KH) B` (analysis).
pub struct StaticB {
    background: Background,
    climate_mean: DVector<f64>,
    mean: DVector<f64>,
    b: DMatrix<f64>,
    cached: Option<StaticGain>,
    background_variance: DVector<f64>,
    analysed: bool,
}

impl StaticB {
    /// Takes `B` from the climatology; a cycled method starts from the
    /// initial mean.
    pub fn new(
        context: &Context<'_>,
        initial: &Gaussian,
        scale: f64,
        background: Background,
    ) -> Result<Self, DaError> {
        let b = context.climate.covariance()? * scale;
        let mean = match background {
            Background::Climatology => context.climate.mean.clone(),
            Background::Forecast => initial.mean.clone(),
        };
        Ok(Self {
            background,
            climate_mean: context.climate.mean.clone(),
            mean,
            background_variance: b.diagonal(),
            b,
            cached: None,
            analysed: false,
        })
    }

    fn gain_for(&mut self, obs: &ObsBatch) -> Result<&StaticGain, DaError> {
        let fresh = self
            .cached
            .as_ref()
            .is_some_and(|g| g.network_id == obs.network_id);
        if !fresh {
            let method = match self.background {
                Background::Climatology => "oi",
                Background::Forecast => "var3d",
            };
            let h = linear_h(obs.operator.as_ref(), self.b.nrows(), method)?;
            let s = &h * &self.b * h.transpose() + covariance(&obs.error);
            let chol = s
                .cholesky()
                .ok_or_else(|| DaError::Numerical("H B H^T + R is not positive definite".into()))?;
            let gain = chol.solve(&(&h * &self.b)).transpose();
            let n = self.b.nrows();
            let posterior = (DMatrix::identity(n, n) - &gain * &h) * &self.b;
            self.cached = Some(StaticGain {
                network_id: obs.network_id,
                gain,
                analysis_variance: posterior.diagonal(),
            });
        }
        Ok(self.cached.as_ref().expect("set above"))
    }
}

impl Filter for StaticB {
    fn forecast(&mut self, context: &Context<'_>, time: f64) -> Result<(), DaError> {
        self.mean = match self.background {
            Background::Climatology => self.climate_mean.clone(),
            Background::Forecast => {
                context.forecast_state(&self.mean, time, context.steps_per_cycle)?
            }
        };
        self.analysed = false;
        Ok(())
    }

    fn analyse(&mut self, context: &Context<'_>, obs: &ObsBatch) -> Result<(), DaError> {
        if obs.is_empty() {
            self.analysed = false;
            return Ok(());
        }
        let hx = apply_to_state(
            obs.operator.as_ref(),
            &self.mean,
            obs.time,
            context.device(),
        );
        let innovation = &obs.values - hx;
        let increment = &self.gain_for(obs)?.gain * innovation;
        self.mean += increment;
        self.analysed = true;
        Ok(())
    }

    fn estimate(&self) -> Estimate<'_> {
        let variance = match (&self.cached, self.analysed) {
            (Some(g), true) => g.analysis_variance.clone(),
            _ => self.background_variance.clone(),
        };
        Estimate::Gaussian {
            mean: &self.mean,
            variance,
        }
    }
}

/// The extended Kalman filter. The tangent-linear model of each step comes
/// from the model's hand-written adjoint or from burn autodiff
/// ([`jacobian`]); a nonlinear observation operator is linearised by
/// autodiff at the forecast mean ([`obs_jacobian`]). The forecast
/// covariance is inflated by `inflation^dt` per step, as in DAPPER's `ExtKF`.
pub struct Ekf {
    mean: DVector<f64>,
    covariance: DMatrix<f64>,
    inflation: f64,
}

impl Ekf {
    /// Starts from the initial mean and covariance.
    pub fn new(initial: &Gaussian, inflation: f64) -> Self {
        Self {
            mean: initial.mean.clone(),
            covariance: DMatrix::from_diagonal(&initial.std.map(|s| s * s)),
            inflation,
        }
    }
}

/// The Jacobian of a batched map `f: [rows, n] -> [rows, m]` at `x`, by
/// reverse-mode autodiff on a batch of `m` copies of `x`: with
/// `Y = f(X)`, the gradient of `sum_k Y[k, k]` with respect to `X` has row
/// `k` equal to row `k` of the Jacobian, so one backward pass gives all of it.
fn autodiff_jacobian(
    f: impl Fn(Tensor<2>) -> Tensor<2>,
    x: &DVector<f64>,
    m: usize,
    device: &burn::tensor::Device,
) -> DMatrix<f64> {
    let n = x.len();
    let ad = device.clone().autodiff();
    let copies = DMatrix::from_fn(n, m, |i, _| x[i]);
    let input = ensemble_to_tensor(&copies, &ad).require_grad();
    let output = f(input.clone());
    let eye = Tensor::<2>::eye(m, &ad);
    let grads = (output * eye).sum().backward();
    // n x m with column k = d Y[k, k] / d X[k, :], i.e. row k of J.
    tensor_to_ensemble(input.grad(&grads).expect("the input requires grad")).transpose()
}

/// The Jacobian `d step(x) / dx` of one model step at `x`: from the model's
/// hand-written adjoint where it has one, otherwise by autodiff.
pub fn jacobian(
    model: &dyn Model,
    x: &DVector<f64>,
    time: f64,
    device: &burn::tensor::Device,
) -> DMatrix<f64> {
    let n = x.len();
    if let Some(host) = model.host() {
        // Row i of J is the hand-written adjoint applied to e_i.
        let mut j = DMatrix::zeros(n, n);
        let mut row = vec![0.0; n];
        for i in 0..n {
            row.iter_mut().for_each(|r| *r = 0.0);
            row[i] = 1.0;
            host.step_vjp(x.as_slice(), time, &mut row);
            for (k, v) in row.iter().enumerate() {
                j[(i, k)] = *v;
            }
        }
        return j;
    }
    autodiff_jacobian(|t| model.step(t, time), x, n, device)
}

/// The Jacobian `H'(x)` (`p x n`) of an observation operator: its matrix
/// when linear, otherwise by autodiff at `x`.
pub fn obs_jacobian(
    op: &dyn ObsOperator,
    x: &DVector<f64>,
    time: f64,
    device: &burn::tensor::Device,
) -> DMatrix<f64> {
    match op.linear() {
        Some(l) => l.matrix(x.len()),
        None => autodiff_jacobian(|t| op.apply(t, time), x, op.size(), device),
    }
}

impl Filter for Ekf {
    fn forecast(&mut self, context: &Context<'_>, time: f64) -> Result<(), DaError> {
        let dt = context.model.dt();
        let factor = self.inflation.powf(dt);
        for k in 0..context.steps_per_cycle {
            let t = time + k as f64 * dt;
            let m = jacobian(context.model, &self.mean, t, context.device());
            self.covariance = (&m * &self.covariance * m.transpose()) * factor;
            self.mean = context.forecast_state(&self.mean, t, 1)?;
        }
        Ok(())
    }

    fn analyse(&mut self, context: &Context<'_>, obs: &ObsBatch) -> Result<(), DaError> {
        if obs.is_empty() {
            return Ok(());
        }
        let h = obs_jacobian(
            obs.operator.as_ref(),
            &self.mean,
            obs.time,
            context.device(),
        );
        let s = &h * &self.covariance * h.transpose() + covariance(&obs.error);
        let chol = s.cholesky().ok_or_else(|| {
            DaError::Numerical("EKF innovation covariance is not positive definite".into())
        })?;
        let gain = chol.solve(&(&h * &self.covariance)).transpose();
        let hx = apply_to_state(
            obs.operator.as_ref(),
            &self.mean,
            obs.time,
            context.device(),
        );
        self.mean += &gain * (&obs.values - hx);
        let n = self.mean.len();
        let p_a = (DMatrix::identity(n, n) - &gain * &h) * &self.covariance;
        self.covariance = (&p_a + p_a.transpose()) * 0.5;
        Ok(())
    }

    fn estimate(&self) -> Estimate<'_> {
        Estimate::Gaussian {
            mean: &self.mean,
            variance: self.covariance.diagonal(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Forecaster;
    use crate::device::cpu_f64;
    use crate::models::{Integrator, Lorenz96};

    fn forecast_state(
        model: &dyn Model,
        x: &DVector<f64>,
        time: f64,
        steps: usize,
        device: &burn::tensor::Device,
    ) -> DVector<f64> {
        Forecaster::new(device.clone())
            .state(model, x, time, steps)
            .unwrap()
    }

    #[test]
    fn autodiff_jacobian_matches_finite_differences() {
        let device = cpu_f64();
        let model = Lorenz96::lorenz96(10, 8.0, 0.05, Integrator::Rk4);
        let x = DVector::from_fn(10, |i, _| 8.0 + (i as f64 * 1.7).sin() * 3.0);
        let j = jacobian(&model, &x, 0.0, &device);
        // The autodiff path (a model without a host path) agrees with it.
        let two_scale = crate::models::Lorenz96TwoScale::two_scale(
            crate::models::lorenz96_two_scale::TwoScaleTendency {
                slow: 4,
                fast_per_slow: 2,
                forcing: 20.0,
                coupling: 1.0,
                time_scale: 10.0,
                amplitude: 10.0,
            },
            0.005,
            Integrator::Rk4,
        );
        let xs = DVector::from_fn(12, |i, _| {
            if i < 4 {
                3.0 + i as f64
            } else {
                0.1 * (i as f64).cos()
            }
        });
        let js = jacobian(&two_scale, &xs, 0.0, &device);
        for col in 0..12 {
            let mut xp = xs.clone();
            let mut xm = xs.clone();
            xp[col] += 1e-6;
            xm[col] -= 1e-6;
            let fd = (forecast_state(&two_scale, &xp, 0.0, 1, &device)
                - forecast_state(&two_scale, &xm, 0.0, 1, &device))
                / 2e-6;
            assert!(
                (fd - js.column(col)).abs().max() < 1e-7,
                "two-scale column {col}"
            );
        }
        let eps = 1e-6;
        for col in 0..10 {
            let mut xp = x.clone();
            let mut xm = x.clone();
            xp[col] += eps;
            xm[col] -= eps;
            let fd = (forecast_state(&model, &xp, 0.0, 1, &device)
                - forecast_state(&model, &xm, 0.0, 1, &device))
                / (2.0 * eps);
            let err = (fd - j.column(col)).abs().max();
            assert!(err < 1e-8, "column {col}: {err}");
        }
    }
}
