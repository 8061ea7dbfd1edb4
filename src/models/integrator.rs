//! Explicit Runge-Kutta integrators for batched tendencies.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::adjoint::{HostTendency, RungeKutta};
use crate::core::{Geometry, HostStepper, Model, NoiseKeys, StochasticModel};

/// The right-hand side `dx/dt = f(x, t)` of an ordinary differential equation,
/// evaluated on a batch.
pub trait Tendency: Send + Sync {
    /// # Shapes
    /// `[members, n] -> [members, n]`.
    fn tendency(&self, state: Tensor<2>, time: f64) -> Tensor<2>;

    /// The same tendency on one host state, with its hand-written adjoint,
    /// where the model provides one (the fast path for variational DA).
    fn host(&self) -> Option<&dyn HostTendency> {
        None
    }
}

/// Explicit one-step integrators.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Integrator {
    /// Forward Euler, order 1.
    Euler,
    /// Heun's method (explicit trapezoid), order 2.
    Heun,
    /// Classical fourth-order Runge-Kutta.
    #[default]
    Rk4,
}

impl Integrator {
    /// Order of accuracy of the global error.
    pub fn order(self) -> usize {
        match self {
            Integrator::Euler => 1,
            Integrator::Heun => 2,
            Integrator::Rk4 => 4,
        }
    }

    /// One step of length `dt` from `(x, t)`.
    pub fn step(self, f: &dyn Tendency, x: Tensor<2>, t: f64, dt: f64) -> Tensor<2> {
        match self {
            Integrator::Euler => {
                let k1 = f.tendency(x.clone(), t);
                x + k1 * dt
            }
            Integrator::Heun => {
                let k1 = f.tendency(x.clone(), t);
                let k2 = f.tendency(x.clone() + k1.clone() * dt, t + dt);
                x + (k1 + k2) * (dt / 2.0)
            }
            Integrator::Rk4 => {
                let k1 = f.tendency(x.clone(), t);
                let k2 = f.tendency(x.clone() + k1.clone() * (dt / 2.0), t + dt / 2.0);
                let k3 = f.tendency(x.clone() + k2.clone() * (dt / 2.0), t + dt / 2.0);
                let k4 = f.tendency(x.clone() + k3.clone() * dt, t + dt);
                x + (k1 + (k2 + k3) * 2.0 + k4) * (dt / 6.0)
            }
        }
    }
}

/// A model's right-hand side and integrator, lent to whoever steps it with
/// an extra term (see [`Model::ode`]).
#[derive(Clone, Copy)]
pub struct Ode<'a> {
    /// The right-hand side.
    pub tendency: &'a dyn Tendency,
    /// How it is stepped.
    pub integrator: Integrator,
}

/// A model defined by a tendency, an integrator and a time step, with
/// optional additive noise: with `noise_std = s`, each step adds
/// `s sqrt(dt) z`, `z ~ N(0, I)` drawn from the caller's keys (an
/// Euler-Maruyama splitting of `dx = f dt + s dW`).
#[derive(Clone, Debug)]
pub struct OdeModel<T> {
    /// The right-hand side.
    pub tendency: T,
    /// How it is stepped.
    pub integrator: Integrator,
    /// Time step.
    pub dt: f64,
    /// Standard deviation of the additive noise per unit time (`None`:
    /// deterministic).
    pub noise_std: Option<f64>,
    geometry: Geometry,
    name: String,
}

impl<T: Tendency> OdeModel<T> {
    /// Wraps a tendency into a model.
    pub fn new(
        tendency: T,
        integrator: Integrator,
        dt: f64,
        geometry: Geometry,
        name: &str,
    ) -> Self {
        Self {
            tendency,
            integrator,
            dt,
            noise_std: None,
            geometry,
            name: name.to_string(),
        }
    }

    /// The same model with additive noise of `std` per unit time (none
    /// for `None` or 0).
    pub fn with_noise(mut self, std: Option<f64>) -> Self {
        self.noise_std = std.filter(|&s| s > 0.0);
        self
    }
}

impl<T: Tendency> OdeModel<T> {
    /// The host stepper, where the tendency has a host path.
    fn runge_kutta(&self) -> Option<RungeKutta<'_>> {
        self.tendency.host().map(|tendency| RungeKutta {
            tendency,
            integrator: self.integrator,
            dt: self.dt,
        })
    }
}

impl<T: Tendency> Model for OdeModel<T> {
    fn step(&self, state: Tensor<2>, time: f64) -> Tensor<2> {
        self.integrator.step(&self.tendency, state, time, self.dt)
    }
    fn dt(&self) -> f64 {
        self.dt
    }
    fn geometry(&self) -> &Geometry {
        &self.geometry
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn host(&self) -> Option<&dyn HostStepper> {
        self.tendency.host().map(|_| self as &dyn HostStepper)
    }
    fn stochastic(&self) -> Option<&dyn StochasticModel> {
        self.noise_std.map(|_| self as &dyn StochasticModel)
    }
    fn ode(&self) -> Option<Ode<'_>> {
        Some(Ode {
            tendency: &self.tendency,
            integrator: self.integrator,
        })
    }
}

impl<T: Tendency> HostStepper for OdeModel<T> {
    fn step(&self, x: &mut [f64], t: f64) {
        self.runge_kutta()
            .expect("host() is Some only with a host tendency")
            .forecast(x, t, 1);
    }
    fn forecast(&self, x: &mut [f64], t: f64, steps: usize, _dt: f64) {
        self.runge_kutta()
            .expect("host() is Some only with a host tendency")
            .forecast(x, t, steps);
    }
    fn forecast_members(
        &self,
        x: &mut [f64],
        members: usize,
        t: f64,
        steps: usize,
        _dt: f64,
    ) -> bool {
        match self.runge_kutta() {
            Some(rk) if rk.tendency.vectorises_members() => {
                rk.forecast_members(x, members, t, steps);
                true
            }
            _ => false,
        }
    }
    fn step_vjp(&self, x: &[f64], t: f64, lambda: &mut [f64]) {
        self.runge_kutta()
            .expect("host() is Some only with a host tendency")
            .step_vjp(x, t, lambda);
    }
}

impl<T: Tendency> StochasticModel for OdeModel<T> {
    fn step_with_noise(&self, state: Tensor<2>, time: f64, keys: &NoiseKeys) -> Tensor<2> {
        let [members, n] = state.dims();
        let next = Model::step(self, state, time);
        match self.noise_std {
            Some(s) => {
                let z = keys.standard_normal(members, n, &next.device());
                next + z * (s * self.dt.sqrt())
            }
            None => next,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{cpu_f64, to_vec};

    /// dx/dt = -x + sin(t) on two members: a smooth, time-dependent test
    /// problem with exact solution x(t) = (x0 + 1/2) e^{-t} + (sin t - cos t)/2.
    struct Forced;
    impl Tendency for Forced {
        fn tendency(&self, x: Tensor<2>, t: f64) -> Tensor<2> {
            x.neg().add_scalar(t.sin())
        }
    }

    fn exact(x0: f64, t: f64) -> f64 {
        (x0 + 0.5) * (-t).exp() + (t.sin() - t.cos()) / 2.0
    }

    fn error(integrator: Integrator, steps: usize) -> f64 {
        let device = cpu_f64();
        let t_end = 1.0;
        let dt = t_end / steps as f64;
        let mut x = Tensor::<2>::from_floats([[1.0], [-2.0]], &device);
        for k in 0..steps {
            x = integrator.step(&Forced, x, k as f64 * dt, dt);
        }
        let v = to_vec(x);
        (v[0] - exact(1.0, t_end))
            .abs()
            .max((v[1] - exact(-2.0, t_end)).abs())
    }

    #[test]
    fn empirical_convergence_orders() {
        for integrator in [Integrator::Euler, Integrator::Heun, Integrator::Rk4] {
            let (coarse, fine) = (error(integrator, 20), error(integrator, 40));
            let observed = (coarse / fine).log2();
            let expected = integrator.order() as f64;
            assert!(
                (observed - expected).abs() < 0.15,
                "{integrator:?}: observed order {observed:.3}, expected {expected}"
            );
        }
    }
}
