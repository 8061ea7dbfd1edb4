//! One Lorenz-96 forecast + analysis cycle on the Sakov & Oke (2008) setup
//! (n = 40, all variables observed, R = I): ETKF with N = 24 and LETKF with
//! N = 7, the two settings `benches/peers/dapper_cycle.py` times in DAPPER.
//! Also the forecast alone, to show how the cycle splits, and one 4D-Var
//! gradient through 100 steps with each gradient strategy.

use criterion::{Criterion, criterion_group, criterion_main};
use nalgebra::{DMatrix, DVector};
use rime::da::var::{GradientStrategy, Trajectory};
use rime::da::{ClimateStats, EnsembleConfig, Gaussian, MethodConfig, Setting};
use rime::device::cpu_f64;
use rime::models::{Integrator, Lorenz96, Model};
use rime::obs::Selection;
use rime::rng::{standard_normal, stream};

fn filter_cycle(c: &mut Criterion) {
    let device = cpu_f64();
    let model = Lorenz96::lorenz96(40, 8.0, 0.05, Integrator::Rk4);
    let obs = Selection::identity(model.geometry());
    let climate = ClimateStats {
        mean: DVector::zeros(40),
        covariance: DMatrix::identity(40, 40),
    };
    let setting = Setting {
        model: &model,
        obs: &obs,
        obs_error_std: 1.0,
        steps_per_cycle: 1,
        device: device.clone(),
        climate: &climate,
        host_path: false,
    };
    // Start on the attractor: spin up one state, then spread members around it.
    let spin = rime::device::ensemble_to_tensor(
        &DMatrix::from_fn(40, 1, |i, _| if i == 0 { 1.0 } else { 0.0 }),
        &device,
    );
    let x = rime::device::tensor_to_ensemble(model.forecast(spin, 0.0, 1000));
    let initial = Gaussian {
        mean: x.column(0).into_owned(),
        std: DVector::from_element(40, 1.0),
    };
    let y = DVector::from_vec(standard_normal(&mut stream(1, "bench"), 40)) + x.column(0);

    let settings = [
        ("etkf_n24", MethodConfig::Etkf(ens(24, None))),
        ("letkf_n7", MethodConfig::Letkf(ens(7, Some(4.0)))),
    ];
    for (name, method) in settings {
        let mut filter = method.build(&setting, &initial, stream(2, name)).unwrap();
        c.bench_function(&format!("lorenz96_cycle/{name}"), |b| {
            b.iter(|| {
                filter.forecast(&setting, 0.0).unwrap();
                filter.analyse(&setting, &y, 0.05).unwrap();
            })
        });
    }
    let e = initial.sample(24, &mut stream(3, "bench"));
    c.bench_function("lorenz96_forecast/n24_rk4_step", |b| {
        b.iter(|| {
            let t = rime::device::ensemble_to_tensor(&e, &device);
            rime::device::tensor_to_ensemble(model.step(t, 0.0))
        })
    });
}

/// One strong-constraint 4D-Var gradient through 100 Lorenz-96 steps
/// (n = 40, RK4, dt = 0.05), all variables observed every 4 steps (25
/// observation times, R = I): the problem `benches/peers/jax_gradient.py`
/// times in JAX. Each gradient strategy is one bench.
fn gradient(c: &mut Criterion) {
    let model = Lorenz96::lorenz96(40, 8.0, 0.05, Integrator::Rk4);
    let obs = Selection::identity(model.geometry());
    let x0: Vec<f64> = (0..40).map(|i| 8.0 + (i as f64 * 0.37).sin()).collect();
    let observations = (1..=25)
        .map(|k| {
            (
                k,
                DVector::from_vec(standard_normal(&mut stream(k as u64, "y"), 40)),
            )
        })
        .collect();
    let window = Trajectory {
        model: &model,
        obs: &obs,
        device: cpu_f64(),
        time0: 0.0,
        steps_per_cycle: 4,
        cycles: 25,
        observations,
        obs_error_std: 1.0,
        model_error_std: None,
        checkpoint_steps: 4,
    };
    for strategy in [
        GradientStrategy::Adjoint,
        GradientStrategy::Tape,
        GradientStrategy::Checkpointed,
    ] {
        c.bench_function(
            &format!("lorenz96_4dvar_gradient_100_steps/{strategy:?}"),
            |b| b.iter(|| window.gradient(&x0, &[], strategy).unwrap()),
        );
    }
    // The same tape on a device with burn's own (Balanced) gradient
    // checkpointing, which recomputes memory-bound operations in backward.
    let burn_checkpointing = Trajectory {
        device: cpu_f64().autodiff().gradient_checkpointing(),
        ..window
    };
    c.bench_function(
        "lorenz96_4dvar_gradient_100_steps/TapeBurnCheckpointing",
        |b| {
            b.iter(|| {
                burn_checkpointing
                    .gradient(&x0, &[], GradientStrategy::Tape)
                    .unwrap()
            })
        },
    );
}

fn ens(ensemble_size: usize, localisation_radius: Option<f64>) -> EnsembleConfig {
    EnsembleConfig {
        ensemble_size,
        inflation: 1.04,
        rotation: true,
        rtpp: None,
        rtps: None,
        localisation_radius,
        taper: None,
    }
}

criterion_group!(benches, filter_cycle, gradient);
criterion_main!(benches);
