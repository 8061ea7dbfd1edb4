//! Host fast path: a model step and its hand-written adjoint in plain Rust.
//!
//! burn autodiff gives every model its adjoint for free; for the small toy
//! models the per-operation overhead of a tape dominates, so a model may
//! also give its tendency and the tendency's vector-Jacobian product on the
//! host ([`HostTendency`]). The explicit Runge-Kutta step and its exact
//! discrete adjoint are then generic over the Butcher tableau. Every
//! hand-written adjoint is checked against burn autodiff in the tests.

use super::Integrator;

/// A tendency evaluated on one host state, with its adjoint.
pub trait HostTendency: Send + Sync {
    /// `out = f(x, t)`.
    fn eval(&self, x: &[f64], t: f64, out: &mut [f64]);
    /// `out = (df/dx at x)^T lambda`.
    fn vjp(&self, x: &[f64], t: f64, lambda: &[f64], out: &mut [f64]);

    /// `out = f(x, t)` for `members` states stored members-innermost:
    /// `x[i * members + m]` is variable `i` of member `m`. Each element must
    /// come out bit for bit as [`eval`](Self::eval) computes it. The default
    /// gathers one member at a time and calls `eval`; a model whose stencil
    /// vectorises across members overrides it and
    /// [`vectorises_members`](Self::vectorises_members).
    fn eval_members(&self, x: &[f64], members: usize, t: f64, out: &mut [f64]) {
        let n = x.len() / members;
        let (mut state, mut slope) = (vec![0.0; n], vec![0.0; n]);
        for m in 0..members {
            for (i, s) in state.iter_mut().enumerate() {
                *s = x[i * members + m];
            }
            self.eval(&state, t, &mut slope);
            for (i, s) in slope.iter().enumerate() {
                out[i * members + m] = *s;
            }
        }
    }

    /// Whether [`eval_members`](Self::eval_members) is faster than one
    /// [`eval`](Self::eval) per member.
    fn vectorises_members(&self) -> bool {
        false
    }
}

/// Butcher tableau of an explicit method: `(a, b, c)` with `a` strictly
/// lower triangular, row-major over stages.
fn tableau(integrator: Integrator) -> (&'static [&'static [f64]], &'static [f64], &'static [f64]) {
    match integrator {
        Integrator::Euler => (&[&[]], &[1.0], &[0.0]),
        Integrator::Heun => (&[&[], &[1.0]], &[0.5, 0.5], &[0.0, 1.0]),
        Integrator::Rk4 => (
            &[&[], &[0.5], &[0.0, 0.5], &[0.0, 0.0, 1.0]],
            &[1.0 / 6.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 6.0],
            &[0.0, 0.5, 0.5, 1.0],
        ),
    }
}

/// An explicit Runge-Kutta step of a host tendency.
pub struct RungeKutta<'a> {
    /// The tendency.
    pub tendency: &'a dyn HostTendency,
    /// The method.
    pub integrator: Integrator,
    /// Time step.
    pub dt: f64,
}

impl RungeKutta<'_> {
    /// Stage inputs `X_i = x + h sum_j a_ij k_j` and slopes `k_i = f(X_i)`,
    /// written into `inputs` and `slopes` (`stages x n`, row per stage).
    fn stages_into(&self, x: &[f64], t: f64, inputs: &mut [f64], slopes: &mut [f64]) {
        self.stages_with(x, t, inputs, slopes, |x, t, out| {
            self.tendency.eval(x, t, out)
        });
    }

    /// [`stages_into`](Self::stages_into) with the tendency evaluated by
    /// `eval`; the stage arithmetic is elementwise, so `x` may hold a batch.
    fn stages_with(
        &self,
        x: &[f64],
        t: f64,
        inputs: &mut [f64],
        slopes: &mut [f64],
        eval: impl Fn(&[f64], f64, &mut [f64]),
    ) {
        let (a, _, c) = tableau(self.integrator);
        let n = x.len();
        let h = self.dt;
        for (i, row) in a.iter().enumerate() {
            let (done, rest) = slopes.split_at_mut(i * n);
            let xi = &mut inputs[i * n..(i + 1) * n];
            xi.copy_from_slice(x);
            for (j, &aij) in row.iter().enumerate() {
                if aij != 0.0 {
                    crate::simd::axpy(xi, h * aij, &done[j * n..(j + 1) * n]);
                }
            }
            eval(xi, t + c[i] * h, &mut rest[..n]);
        }
    }

    /// Advances `x` by `steps` steps, allocating the stage buffers once.
    pub fn forecast(&self, x: &mut [f64], t: f64, steps: usize) {
        self.forecast_with(x, t, steps, |x, t, out| self.tendency.eval(x, t, out));
    }

    /// Advances `members` states stored members-innermost
    /// (`x[i * members + m]`) by `steps` steps, all members at once: the same arithmetic per
    /// element as [`forecast`](Self::forecast) member by member, so the same
    /// numbers to the last bit.
    pub fn forecast_members(&self, x: &mut [f64], members: usize, t: f64, steps: usize) {
        self.forecast_with(x, t, steps, |x, t, out| {
            self.tendency.eval_members(x, members, t, out)
        });
    }

    fn forecast_with(
        &self,
        x: &mut [f64],
        t: f64,
        steps: usize,
        eval: impl Fn(&[f64], f64, &mut [f64]),
    ) {
        let (a, b, _) = tableau(self.integrator);
        let n = x.len();
        let mut inputs = vec![0.0; a.len() * n];
        let mut slopes = vec![0.0; a.len() * n];
        for k in 0..steps {
            self.stages_with(x, t + k as f64 * self.dt, &mut inputs, &mut slopes, &eval);
            for (i, bi) in b.iter().enumerate() {
                crate::simd::axpy(x, self.dt * bi, &slopes[i * n..(i + 1) * n]);
            }
        }
    }
}

impl RungeKutta<'_> {
    /// The exact discrete adjoint of one step: `lambda <- M'(x)^T lambda`.
    pub fn step_vjp(&self, x: &[f64], t: f64, lambda: &mut [f64]) {
        // x' = x + h sum_i b_i k_i, k_i = f(X_i), X_i = x + h sum_{j<i} a_ij k_j.
        // Reverse sweep over the stages: lambda_k_i collects h b_i lambda'
        // and h a_ji lambda_X_j from later stages; lambda_X_i = J(X_i)^T lambda_k_i.
        // The buffers live in a per-thread workspace: an adjoint sweep calls
        // this once per model step, and allocation would dominate.
        thread_local! {
            static WORKSPACE: std::cell::RefCell<Vec<f64>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let (a, b, c) = tableau(self.integrator);
        let h = self.dt;
        let n = x.len();
        let s = a.len();
        WORKSPACE.with(|cell| {
            let mut buffer = cell.borrow_mut();
            buffer.resize((3 * s + 1) * n, 0.0);
            let (inputs, rest) = buffer.split_at_mut(s * n);
            let (slopes, rest) = rest.split_at_mut(s * n);
            let (lambda_k, lambda_stage) = rest.split_at_mut(s * n);
            self.stages_into(x, t, inputs, slopes);
            for (i, bi) in b.iter().enumerate() {
                for (lk, l) in lambda_k[i * n..(i + 1) * n].iter_mut().zip(lambda.iter()) {
                    *lk = h * bi * l;
                }
            }
            // lambda itself accumulates lambda_x, starting from the identity path.
            for i in (0..s).rev() {
                self.tendency.vjp(
                    &inputs[i * n..(i + 1) * n],
                    t + c[i] * h,
                    &lambda_k[i * n..(i + 1) * n],
                    lambda_stage,
                );
                for (lx, ls) in lambda.iter_mut().zip(lambda_stage.iter()) {
                    *lx += ls;
                }
                for (j, &aij) in a[i].iter().enumerate() {
                    if aij != 0.0 {
                        for (lk, ls) in lambda_k[j * n..(j + 1) * n]
                            .iter_mut()
                            .zip(lambda_stage.iter())
                        {
                            *lk += h * aij * ls;
                        }
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Tensor, TensorData};

    use super::HostTendency;
    use crate::core::Model;
    use crate::device::{cpu_f64, cpu_f64_autodiff, to_vec};
    use crate::models::lorenz96::Lorenz96Tendency;
    use crate::models::{Integrator, Lorenz63, Lorenz96, Lorenz96Truncated, Parametrisation};
    use crate::rng::{standard_normal, stream};

    fn models() -> Vec<Box<dyn Model>> {
        let mut out: Vec<Box<dyn Model>> = Vec::new();
        for integrator in [Integrator::Euler, Integrator::Heun, Integrator::Rk4] {
            out.push(Box::new(Lorenz63::lorenz63(
                10.0,
                28.0,
                8.0 / 3.0,
                0.01,
                integrator,
            )));
            out.push(Box::new(Lorenz96::lorenz96(40, 8.0, 0.05, integrator)));
            out.push(Box::new(Lorenz96::lorenz96(5, 8.0, 0.05, integrator)));
            out.push(Box::new(Lorenz96Truncated::truncated(
                8,
                20.0,
                Parametrisation::Wilks2005,
                0.05,
                integrator,
            )));
        }
        out
    }

    fn state(n: usize, name: &str) -> Vec<f64> {
        let z = standard_normal(&mut stream(8, name), n);
        z.iter()
            .map(|v| {
                if n == 3 {
                    5.0 * v + 10.0
                } else {
                    3.0 * v + 2.0
                }
            })
            .collect()
    }

    #[test]
    fn host_step_matches_the_burn_step() {
        let device = cpu_f64();
        for model in models() {
            let n = model.size();
            let x = state(n, "step");
            let mut host = x.clone();
            model
                .host()
                .expect("toy models have a host path")
                .step(&mut host, 0.3);
            let t = Tensor::<2>::from_data(TensorData::new(x, [1, n]), &device);
            let dev = to_vec(model.step(t, 0.3));
            for (a, b) in host.iter().zip(&dev) {
                assert!(
                    (a - b).abs() < 1e-12 * b.abs().max(1.0),
                    "{}: {a} vs {b}",
                    model.name()
                );
            }
        }
    }

    /// Stepping all members at once, members innermost, gives the numbers of
    /// stepping them one by one, bit for bit (so that the batched forecast
    /// changes no score); n = 5 exercises the wrap-around at both ends.
    #[test]
    fn batched_members_forecast_equals_member_by_member() {
        for model in models() {
            let (n, members) = (model.size(), 6);
            let host = model.host().expect("toy models have a host path");
            let states: Vec<Vec<f64>> = (0..members)
                .map(|m| state(n, &format!("member{m}")))
                .collect();
            let mut batch = vec![0.0; n * members];
            for (m, x) in states.iter().enumerate() {
                for (i, v) in x.iter().enumerate() {
                    batch[i * members + m] = *v;
                }
            }
            assert!(
                host.forecast_members(&mut batch, members, 0.3, 7, model.dt()),
                "{} has a batched path",
                model.name()
            );
            for (m, x) in states.iter().enumerate() {
                let mut one = x.clone();
                host.forecast(&mut one, 0.3, 7, model.dt());
                for (i, v) in one.iter().enumerate() {
                    assert_eq!(
                        batch[i * members + m],
                        *v,
                        "{} member {m} variable {i}",
                        model.name()
                    );
                }
            }
        }
    }

    /// The default batched tendency (gather, evaluate, scatter) is the
    /// tendency of each member.
    #[test]
    fn default_members_tendency_gathers_each_member() {
        struct Plain(Lorenz96Tendency);
        impl HostTendency for Plain {
            fn eval(&self, x: &[f64], t: f64, out: &mut [f64]) {
                self.0.eval(x, t, out)
            }
            fn vjp(&self, x: &[f64], t: f64, lambda: &[f64], out: &mut [f64]) {
                self.0.vjp(x, t, lambda, out)
            }
        }
        let tendency = Lorenz96Tendency { forcing: 8.0 };
        let (n, members) = (9, 4);
        let x = state(n * members, "gather");
        let (mut fast, mut plain) = (vec![0.0; n * members], vec![0.0; n * members]);
        tendency.eval_members(&x, members, 0.0, &mut fast);
        Plain(tendency).eval_members(&x, members, 0.0, &mut plain);
        assert_eq!(fast, plain);
        assert!(!Plain(tendency).vectorises_members());
    }

    /// The hand-written adjoint equals burn autodiff's vector-Jacobian
    /// product, and both satisfy the dot-product test against a centred
    /// finite difference of the step: <M' dx, l> = <dx, M'^T l>.
    #[test]
    fn hand_adjoint_matches_autodiff_and_passes_the_dot_product_test() {
        let ad = cpu_f64_autodiff();
        for model in models() {
            let n = model.size();
            let x = state(n, "vjp");
            let lambda = standard_normal(&mut stream(9, "lambda"), n);
            let mut hand = lambda.clone();
            let stepper = model.host().expect("toy models have a host path");
            stepper.step_vjp(&x, 0.0, &mut hand);
            let xt = Tensor::<2>::from_data(TensorData::new(x.clone(), [1, n]), &ad).require_grad();
            let lt = Tensor::<2>::from_data(TensorData::new(lambda.clone(), [1, n]), &ad);
            let grads = (model.step(xt.clone(), 0.0) * lt).sum().backward();
            let auto = to_vec(xt.grad(&grads).unwrap());
            for (a, b) in hand.iter().zip(&auto) {
                assert!(
                    (a - b).abs() < 1e-12 * b.abs().max(1.0),
                    "{}: {a} vs {b}",
                    model.name()
                );
            }
            let dx = standard_normal(&mut stream(10, "dx"), n);
            let eps = 1e-6;
            let step = |s: f64| {
                let mut y: Vec<f64> = x.iter().zip(&dx).map(|(a, d)| a + s * d).collect();
                stepper.step(&mut y, 0.0);
                y
            };
            let (plus, minus) = (step(eps), step(-eps));
            let tangent_dot: f64 = plus
                .iter()
                .zip(&minus)
                .zip(&lambda)
                .map(|((p, m), l)| (p - m) / (2.0 * eps) * l)
                .sum();
            let adjoint_dot: f64 = dx.iter().zip(&hand).map(|(d, g)| d * g).sum();
            let rel = (tangent_dot - adjoint_dot).abs() / adjoint_dot.abs().max(1e-12);
            assert!(
                rel < 1e-7,
                "{}: {tangent_dot} vs {adjoint_dot} ({rel:e})",
                model.name()
            );
        }
    }
}
