//! Baselines: climatology, optimal interpolation / 3D-Var with a static
//! background covariance, and the extended Kalman filter.

use burn::tensor::Tensor;
use nalgebra::{DMatrix, DVector};

use super::{DaError, Estimate, Filter, Gaussian, Setting};
use crate::device::{ensemble_to_tensor, tensor_to_ensemble};
use crate::models::Model;
use crate::obs::apply_to_ensemble;

/// The climatological mean and variance at every time; ignores observations.
pub struct Climatology {
    mean: DVector<f64>,
    variance: DVector<f64>,
}

impl Climatology {
    /// From the experiment's climatology.
    pub fn new(setting: &Setting<'_>) -> Self {
        Self {
            mean: setting.climate.mean.clone(),
            variance: setting.climate.covariance.diagonal(),
        }
    }
}

impl Filter for Climatology {
    fn forecast(&mut self, _: &Setting<'_>, _: f64) -> Result<(), DaError> {
        Ok(())
    }
    fn analyse(&mut self, _: &Setting<'_>, _: &DVector<f64>, _: f64) -> Result<(), DaError> {
        Ok(())
    }
    fn estimate(&self) -> Estimate<'_> {
        Estimate::Gaussian {
            mean: &self.mean,
            variance: self.variance.clone(),
        }
    }
}

fn linear_h(setting: &Setting<'_>, method: &'static str) -> Result<DMatrix<f64>, DaError> {
    setting.obs.as_matrix().ok_or(DaError::Unsupported {
        method,
        what: format!(
            "a linear observation operator; `{}` gives no matrix",
            setting.obs.name()
        ),
    })
}

/// Runs one state through the model (host fast path where the model has one).
fn forecast_state(
    model: &dyn Model,
    x: &DVector<f64>,
    time: f64,
    steps: usize,
    device: &burn::tensor::Device,
) -> DVector<f64> {
    let mut host = x.clone();
    if model.host_forecast(host.as_mut_slice(), time, steps) {
        return host;
    }
    let m = DMatrix::from_column_slice(x.len(), 1, x.as_slice());
    let out = tensor_to_ensemble(model.forecast(ensemble_to_tensor(&m, device), time, steps));
    out.column(0).into_owned()
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

/// Optimal interpolation and 3D-Var: a static background covariance
/// `B = scale x` the climatological covariance and the gain
/// `K = B H^T (H B H^T + R)^{-1}`, computed once. For a linear `H` the
/// 3D-Var cost `J(x) = |x - x_b|^2_B + |y - Hx|^2_R` is minimised exactly by
/// `x_b + K (y - H x_b)`. The reported variances are the diagonals of `B`
/// (forecast) and `(I - KH) B` (analysis).
pub struct StaticB {
    background: Background,
    climate_mean: DVector<f64>,
    mean: DVector<f64>,
    gain: DMatrix<f64>,
    background_variance: DVector<f64>,
    analysis_variance: DVector<f64>,
    analysed: bool,
}

impl StaticB {
    /// Builds the gain from the climatology; a cycled method starts from
    /// the initial mean.
    pub fn new(
        setting: &Setting<'_>,
        initial: &Gaussian,
        scale: f64,
        background: Background,
    ) -> Result<Self, DaError> {
        let method = match background {
            Background::Climatology => "oi",
            Background::Forecast => "var3d",
        };
        let h = linear_h(setting, method)?;
        let b = &setting.climate.covariance * scale;
        let p = h.nrows();
        let s = &h * &b * h.transpose() + DMatrix::identity(p, p) * setting.obs_error_std.powi(2);
        let chol = s
            .cholesky()
            .ok_or_else(|| DaError::Numerical("H B H^T + R is not positive definite".into()))?;
        let gain = chol.solve(&(&h * &b)).transpose();
        let posterior = (DMatrix::identity(b.nrows(), b.nrows()) - &gain * &h) * &b;
        let mean = match background {
            Background::Climatology => setting.climate.mean.clone(),
            Background::Forecast => initial.mean.clone(),
        };
        Ok(Self {
            background,
            climate_mean: setting.climate.mean.clone(),
            mean,
            background_variance: b.diagonal(),
            analysis_variance: posterior.diagonal(),
            gain,
            analysed: false,
        })
    }
}

impl Filter for StaticB {
    fn forecast(&mut self, setting: &Setting<'_>, time: f64) -> Result<(), DaError> {
        self.mean = match self.background {
            Background::Climatology => self.climate_mean.clone(),
            Background::Forecast => forecast_state(
                setting.model,
                &self.mean,
                time,
                setting.steps_per_cycle,
                &setting.device,
            ),
        };
        self.analysed = false;
        Ok(())
    }

    fn analyse(
        &mut self,
        setting: &Setting<'_>,
        y: &DVector<f64>,
        time: f64,
    ) -> Result<(), DaError> {
        let x = DMatrix::from_column_slice(self.mean.len(), 1, self.mean.as_slice());
        let hx = apply_to_ensemble(setting.obs, &x, time, &setting.device);
        self.mean += &self.gain * (y - hx.column(0));
        self.analysed = true;
        Ok(())
    }

    fn estimate(&self) -> Estimate<'_> {
        let variance = if self.analysed {
            &self.analysis_variance
        } else {
            &self.background_variance
        };
        Estimate::Gaussian {
            mean: &self.mean,
            variance: variance.clone(),
        }
    }
}

/// The extended Kalman filter. The tangent-linear model of each step comes
/// from burn autodiff ([`jacobian`]); the forecast covariance is inflated by
/// `inflation^dt` per step, as in DAPPER's `ExtKF`.
pub struct Ekf {
    mean: DVector<f64>,
    covariance: DMatrix<f64>,
    inflation: f64,
    h: DMatrix<f64>,
}

impl Ekf {
    /// Starts from the initial mean and covariance.
    pub fn new(setting: &Setting<'_>, initial: &Gaussian, inflation: f64) -> Result<Self, DaError> {
        Ok(Self {
            mean: initial.mean.clone(),
            covariance: DMatrix::from_diagonal(&initial.std.map(|s| s * s)),
            inflation,
            h: linear_h(setting, "ekf")?,
        })
    }
}

/// The Jacobian `d step(x) / dx` of one model step at `x`: from the model's
/// hand-written adjoint where it has one, otherwise by reverse-mode
/// autodiff on a batch of `n` copies of `x`: with `Y = step(X)`, the
/// gradient of `sum_m Y[m, m]` with respect to `X` has row `m` equal to row
/// `m` of the Jacobian, so one backward pass gives all of it.
pub fn jacobian(
    model: &dyn Model,
    x: &DVector<f64>,
    time: f64,
    device: &burn::tensor::Device,
) -> DMatrix<f64> {
    let n = x.len();
    if model.has_host_path() {
        // Row i of J is the hand-written adjoint applied to e_i.
        let mut j = DMatrix::zeros(n, n);
        let mut row = vec![0.0; n];
        for i in 0..n {
            row.iter_mut().for_each(|r| *r = 0.0);
            row[i] = 1.0;
            model.host_step_vjp(x.as_slice(), time, &mut row);
            for (k, v) in row.iter().enumerate() {
                j[(i, k)] = *v;
            }
        }
        return j;
    }
    let ad = device.clone().autodiff();
    let copies = DMatrix::from_fn(n, n, |i, _| x[i]);
    let input = ensemble_to_tensor(&copies, &ad).require_grad();
    let output = model.step(input.clone(), time);
    let eye = Tensor::<2>::eye(n, &ad);
    let grads = (output * eye).sum().backward();
    let g = tensor_to_ensemble(input.grad(&grads).expect("the input requires grad"));
    // g is n x n with column m = d Y[m, m] / d X[m, :], i.e. row m of J.
    g.transpose()
}

impl Filter for Ekf {
    fn forecast(&mut self, setting: &Setting<'_>, time: f64) -> Result<(), DaError> {
        let dt = setting.model.dt();
        let factor = self.inflation.powf(dt);
        for k in 0..setting.steps_per_cycle {
            let t = time + k as f64 * dt;
            let m = jacobian(setting.model, &self.mean, t, &setting.device);
            self.covariance = (&m * &self.covariance * m.transpose()) * factor;
            self.mean = forecast_state(setting.model, &self.mean, t, 1, &setting.device);
        }
        Ok(())
    }

    fn analyse(
        &mut self,
        setting: &Setting<'_>,
        y: &DVector<f64>,
        time: f64,
    ) -> Result<(), DaError> {
        let h = &self.h;
        let p = h.nrows();
        let s = h * &self.covariance * h.transpose()
            + DMatrix::identity(p, p) * setting.obs_error_std.powi(2);
        let chol = s.cholesky().ok_or_else(|| {
            DaError::Numerical("EKF innovation covariance is not positive definite".into())
        })?;
        let gain = chol.solve(&(h * &self.covariance)).transpose();
        let x = DMatrix::from_column_slice(self.mean.len(), 1, self.mean.as_slice());
        let hx = apply_to_ensemble(setting.obs, &x, time, &setting.device);
        self.mean += &gain * (y - hx.column(0));
        let n = self.mean.len();
        let p_a = (DMatrix::identity(n, n) - &gain * h) * &self.covariance;
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
    use crate::device::cpu_f64;
    use crate::models::{Integrator, Lorenz96};

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
