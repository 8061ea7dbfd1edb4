//! One Lorenz-96 forecast + analysis cycle on the Sakov & Oke (2008) setup
//! (n = 40, all variables observed, R = I): ETKF with N = 24 and LETKF with
//! N = 7, the two settings `benches/peers/dapper_cycle.py` times in DAPPER.
//! Also the forecast alone, to show how the cycle splits, and one 4D-Var
//! gradient through 100 steps with each gradient strategy. The QG model and
//! its two localised filters at DAPPER's 129 x 129 size. The boundary
//! layer's batched tridiagonal solve alone, and its whole GABLS1 step. One
//! sea-ice step (mEVP, BBM) against grid size and members, its gradient,
//! and a large memory copy for the bandwidth limit. The observation
//! operators (selection along tracks, bilinear interpolation to stations,
//! 4 x 4 block averages, the three stacked, and the downscaling twin's
//! orographic precipitation at 200 stations of the 257 x 257 fine grid) on
//! 25 members of a 65 x 65 grid: host path, tensor path and the
//! vector-Jacobian product by autodiff (the orographic operator's own
//! adjoint through its burn node).

use criterion::{Criterion, criterion_group, criterion_main};
use std::sync::Arc;

use nalgebra::{DMatrix, DVector};
use rime::core::Model;
use rime::core::{Forecaster, Location, ObsBatch, ObsError};
use rime::da::var::{GradientStrategy, Window};
use rime::da::{ClimateStats, Context, EnsembleConfig, Gaussian, MethodConfig};
use rime::device::cpu_f64;
use rime::models::{Integrator, Lorenz96};
use rime::obs::Selection;
use rime::rng::{standard_normal, stream};

/// All 40 variables observed with unit error at `time`.
fn observe_all(model: &Lorenz96, values: DVector<f64>, cycle: usize, time: f64) -> ObsBatch {
    let locations: Vec<Location> = model.geometry().locations().collect();
    let selection = Selection::new((0..40).collect(), &locations, "all").unwrap();
    ObsBatch::new(
        cycle,
        time,
        values,
        ObsError::uniform(1.0, 40),
        Arc::new(selection),
        0,
    )
}

fn filter_cycle(c: &mut Criterion) {
    let device = cpu_f64();
    let model = Lorenz96::lorenz96(40, 8.0, 0.05, Integrator::Rk4);
    let climate = ClimateStats::from_moments(DVector::zeros(40), DVector::from_element(40, 1.0));
    let context = Context {
        model: &model,
        forecaster: Forecaster {
            host_path: false,
            ..Forecaster::new(device.clone())
        },
        steps_per_cycle: 1,
        climate: &climate,
    };
    // Start on the attractor: spin up one state, then spread members around it.
    let spin = rime::device::ensemble_to_tensor(
        &DMatrix::from_fn(40, 1, |i, _| if i == 0 { 1.0 } else { 0.0 }),
        &device,
    );
    let x = rime::device::tensor_to_ensemble(model.forecast(spin, 0.0, 1000));
    let initial = Gaussian::new(x.column(0).into_owned(), DVector::from_element(40, 1.0));
    let y = DVector::from_vec(standard_normal(&mut stream(1, "bench"), 40)) + x.column(0);
    let y = observe_all(&model, y, 1, 0.05);

    let settings = [
        ("etkf_n24", MethodConfig::Etkf(ens(24, None))),
        ("letkf_n7", MethodConfig::Letkf(ens(7, Some(4.0)))),
    ];
    for (name, method) in settings {
        let mut filter = method.build(&context, &initial, stream(2, name)).unwrap();
        c.bench_function(&format!("lorenz96_cycle/{name}"), |b| {
            b.iter(|| {
                filter.forecast(&context, 0.0).unwrap();
                filter.analyse(&context, &y).unwrap();
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
    let x0: Vec<f64> = (0..40).map(|i| 8.0 + (i as f64 * 0.37).sin()).collect();
    let observations = (1..=25)
        .map(|k| {
            let y = DVector::from_vec(standard_normal(&mut stream(k as u64, "y"), 40));
            (k, observe_all(&model, y, k, k as f64 * 0.2))
        })
        .collect();
    let window = Window {
        model: &model,
        device: cpu_f64(),
        host_path: true,
        time0: 0.0,
        steps_per_cycle: 4,
        cycles: 25,
        observations,
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
    let burn_checkpointing = Window {
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
        batch: None,
        engine: None,
    }
}

/// The QG model (129 x 129): one member over one DAPPER cycle (4 RK4
/// steps) on the host path and through burn ops, one RK4 step's adjoint,
/// and one analysis of 25 members with 300 track observations by the
/// LETKF (2 x 2 batches, as DAPPER) and the serial local EAKF.
fn qg(c: &mut Criterion) {
    use rime::core::HostStepper;
    use rime::models::QgConfig;
    let model = QgConfig::default().build().unwrap();
    let n = model.size();
    let mut x = vec![0.0; n];
    HostStepper::forecast(&model, &mut x, 0.0, 4 * 300, 1.25);
    c.bench_function("qg129/host_cycle_one_member", |b| {
        b.iter(|| {
            let mut y = x.clone();
            HostStepper::forecast(&model, &mut y, 0.0, 4, 1.25);
            y
        })
    });
    let device = cpu_f64();
    let t = rime::device::tensor_from_rows(&x, 1, n, &device);
    c.bench_function("qg129/burn_cycle_one_member", |b| {
        b.iter(|| rime::device::to_vec(Model::forecast(&model, t.clone(), 0.0, 4)))
    });
    c.bench_function("qg129/host_step_adjoint", |b| {
        b.iter(|| {
            let mut l = x.clone();
            model.step_vjp(&x, 0.0, &mut l);
            l
        })
    });
    // 25 members around x (smooth perturbations from the model itself).
    let mut members = DMatrix::zeros(n, 25);
    let mut m = x.clone();
    for j in 0..25 {
        HostStepper::forecast(&model, &mut m, 0.0, 8, 1.25);
        members.set_column(j, &DVector::from_column_slice(&m));
    }
    let climate = ClimateStats::from_moments(DVector::zeros(n), DVector::from_element(n, 1.0));
    let context = Context {
        model: &model,
        forecaster: Forecaster::new(device.clone()),
        steps_per_cycle: 4,
        climate: &climate,
    };
    let locations: Vec<Location> = model.geometry().locations().collect();
    let indices: Vec<usize> = (0..300).map(|k| k * n / 300 + 7).collect();
    let truth = DVector::from_column_slice(&x);
    let values = DVector::from_fn(300, |k, _| truth[indices[k]] + 1.0);
    let batch = ObsBatch::new(
        1,
        5.0,
        values,
        ObsError::uniform(2.0, 300),
        Arc::new(Selection::new(indices, &locations, "tracks").unwrap()),
        1,
    );
    let initial = Gaussian::from_sample(members);
    let radius = Some(10.0 / 128.0);
    let letkf = EnsembleConfig {
        batch: Some(2),
        ..ens(25, radius)
    };
    let letkf_device = EnsembleConfig {
        engine: Some(rime::da::Engine::Device),
        ..ens(25, radius)
    };
    for (name, method) in [
        ("letkf_n25_batch2", MethodConfig::Letkf(letkf)),
        ("letkf_n25_device", MethodConfig::Letkf(letkf_device)),
        ("sl_eakf_n25", MethodConfig::Ensrf(ens(25, radius))),
    ] {
        let mut filter = method.build(&context, &initial, stream(2, name)).unwrap();
        c.bench_function(&format!("qg129/analysis/{name}"), |b| {
            b.iter(|| filter.analyse(&context, &batch).unwrap())
        });
    }
}

/// The Lorenz-96 emulator of experiments/lorenz96/emulator_train.toml
/// (periodic CNN, 32 channels, 4 layers, bilinear; untrained weights time
/// the same): one ensemble forecast step of 24 members (the ETKF's), a
/// 4-step gradient through it under autodiff (a 4D-Var window of one
/// Bocquet cycle), and one training step (batch 128, rollout 2).
fn emulator(c: &mut Criterion) {
    use burn::module::Module;
    use rime::learned::emulator::{Normalisation, ResidualStep};
    use rime::learned::{Architecture, Emulator};
    let device = cpu_f64();
    let arch = Architecture::Cnn1d {
        channels: 32,
        layers: 4,
        kernel: 5,
        bilinear: true,
    };
    let norm = Normalisation {
        mean: vec![2.3; 40],
        std: vec![3.6; 40],
        increment_mean: vec![0.0; 40],
        increment_std: vec![0.9; 40],
        fixed: Vec::new(),
        forcing_mean: Vec::new(),
        forcing_std: Vec::new(),
    };
    let emulator = Emulator::from_parts(
        arch.init(40, 1, &device),
        &norm,
        rime::core::Geometry::chain(40, true, "x"),
        0.05,
    );
    let x: Vec<f64> = (0..24 * 40)
        .map(|i| 8.0 * ((i as f64) * 0.37).sin())
        .collect();
    c.bench_function("emulator forecast step, 24 members", |b| {
        b.iter(|| {
            let t = rime::device::tensor_from_rows(&x, 24, 40, &device);
            rime::device::to_vec(emulator.step(t, 0.0))
        })
    });
    let ad = device.clone().autodiff();
    c.bench_function("emulator 4-step gradient, 1 state (autodiff)", |b| {
        b.iter(|| {
            let t = rime::device::tensor_from_rows(&x[..40], 1, 40, &ad).require_grad();
            let y = emulator.forecast(t.clone(), 0.0, 4).sum();
            rime::device::to_vec(t.grad(&y.backward()).unwrap())
        })
    });
    let residual = ResidualStep::new(&norm);
    let mut net = arch.init(40, 1, &ad);
    let mut optim: burn::optim::ModuleOptimizer = burn::optim::AdamConfig::new().init();
    let batch: Vec<f32> = (0..128 * 40)
        .map(|i| 8.0 * ((i as f32) * 0.37).sin())
        .collect();
    c.bench_function("emulator training step, batch 128, rollout 2", |b| {
        b.iter(|| {
            let x0 = rime::learned::net::f32_tensor(batch.clone(), [128, 40], &ad);
            let y = rime::learned::net::f32_tensor(batch.clone(), [128, 40], &ad);
            let x1 = residual.step(&net, x0);
            let x2 = residual.step(&net, x1.clone());
            let loss = (x1 - y.clone()).square().mean() + (x2 - y).square().mean();
            let grads = burn::optim::GradientsParams::from_grads(loss.backward(), &net);
            net = optim.step(1e-4, net.clone(), grads);
        })
    });
    let _ = net.num_params();
}

/// The QG U-Net of experiments/qg/emulator_train.toml (8 channels, 3
/// levels, 65 x 65; untrained weights time the same): one forecast step of
/// 25 members (the LETKF's ensemble) and one training step of a batch of
/// 16 (samples per second = 16 / its time).
fn unet(c: &mut Criterion) {
    use rime::learned::Architecture;
    use rime::learned::emulator::{Normalisation, ResidualStep};
    let device = cpu_f64();
    let arch = Architecture::Unet2d {
        channels: 8,
        levels: 3,
    };
    let n = 65 * 65;
    let norm = Normalisation {
        mean: vec![0.0; n],
        std: vec![5.6; n],
        increment_mean: vec![0.0; n],
        increment_std: vec![0.6; n],
        fixed: Vec::new(),
        forcing_mean: Vec::new(),
        forcing_std: Vec::new(),
    };
    let residual = ResidualStep::new(&norm);
    let net = arch.init_with_inputs(1, &[65, 65], 1, &device);
    let x: Vec<f32> = (0..25 * n)
        .map(|i| 5.0 * ((i as f32) * 0.37).sin())
        .collect();
    c.bench_function("qg unet forecast step, 25 members, 65x65", |b| {
        b.iter(|| {
            let t = rime::learned::net::f32_tensor(x.clone(), [25, n], &device);
            rime::device::to_vec(residual.step(&net, t))
        })
    });
    let ad = device.clone().autodiff();
    let mut net = arch.init_with_inputs(1, &[65, 65], 1, &ad);
    let mut optim: burn::optim::ModuleOptimizer = burn::optim::AdamConfig::new().init();
    c.bench_function("qg unet training step, batch 16, 65x65", |b| {
        b.iter(|| {
            let x0 = rime::learned::net::f32_tensor(x[..16 * n].to_vec(), [16, n], &ad);
            let y = rime::learned::net::f32_tensor(x[n..17 * n].to_vec(), [16, n], &ad);
            let loss = (residual.step(&net, x0) - y).square().mean();
            let grads = burn::optim::GradientsParams::from_grads(loss.backward(), &net);
            net = optim.step(1e-4, net.clone(), grads);
        })
    });

    // The sea-ice emulator's network (experiments/sea_ice/emulator):
    // 16 channels, 3 levels, h and a on 32 x 32 cells as two channels and
    // the wind at both ends of the step as four more.
    let arch = Architecture::Unet2d {
        channels: 16,
        levels: 3,
    };
    let (fields, pix) = (2, 32 * 32);
    let n = fields * pix;
    let norm = Normalisation {
        mean: vec![0.5; n],
        std: vec![0.15; n],
        increment_mean: vec![0.0; n],
        increment_std: vec![0.01; n],
        fixed: Vec::new(),
        forcing_mean: vec![0.0; 2],
        forcing_std: vec![3.0; 2],
    };
    let residual = ResidualStep::new(&norm);
    let shape = [fields, 32, 32];
    let x: Vec<f32> = (0..18 * n)
        .map(|i| 0.5 + 0.1 * ((i as f32) * 0.37).sin())
        .collect();
    let f: Vec<f32> = (0..3 * 4 * pix)
        .map(|i| ((i as f32) * 0.11).sin())
        .collect();
    let forcing = |k: usize, b: usize, device: &burn::tensor::Device| {
        rime::learned::net::f32_tensor(
            f[k * 4 * pix..(k + 1) * 4 * pix].to_vec(),
            [1, 4, pix],
            device,
        )
        .expand([b, 4, pix])
    };
    let net = arch.init_with_extra(1, 4, &shape, 1, &device);
    c.bench_function("sea ice unet forecast step, 16 members, 2x32x32", |b| {
        b.iter(|| {
            let t = rime::learned::net::f32_tensor(x[..16 * n].to_vec(), [16, n], &device);
            rime::device::to_vec(residual.step_forced(&net, t, Some(forcing(0, 16, &device))))
        })
    });
    let mut net = arch.init_with_extra(1, 4, &shape, 1, &ad);
    let mut optim: burn::optim::ModuleOptimizer = burn::optim::AdamConfig::new().init();
    c.bench_function("sea ice unet training step, batch 16, rollout 2", |b| {
        b.iter(|| {
            let mut xk = rime::learned::net::f32_tensor(x[..16 * n].to_vec(), [16, n], &ad);
            let mut loss = None;
            for k in 1..=2 {
                xk = residual.step_forced(&net, xk, Some(forcing(k - 1, 16, &ad)));
                let y =
                    rime::learned::net::f32_tensor(x[k * n..(k + 16) * n].to_vec(), [16, n], &ad);
                let term = (xk.clone() - y).square().mean();
                loss = Some(match loss {
                    Some(l) => l + term,
                    None => term,
                });
            }
            let loss = loss.unwrap() * 0.5;
            let grads = burn::optim::GradientsParams::from_grads(loss.backward(), &net);
            net = optim.step(1e-4, net.clone(), grads);
        })
    });

    // The sea-ice model it emulates, one 12-hour record (36 steps of
    // 20 min, 100 mEVP sub-iterations) of 16 members at 32 x 32.
    let text = std::fs::read_to_string("experiments/sea_ice/emulator/test.toml").unwrap();
    let table: toml::Table = toml::from_str(&text).unwrap();
    let model_table = toml::to_string(&table["model"]).unwrap();
    let model = rime::experiment::registry::ModelConfig::from_toml(&model_table)
        .unwrap()
        .init(&device)
        .unwrap();
    let x0 = model.initial_state().unwrap();
    let members = 16;
    let batch: Vec<f64> = (0..members).flat_map(|_| x0.clone()).collect();
    c.bench_function("sea ice model 12-hour record, 16 members, 32x32", |b| {
        b.iter(|| {
            let t = rime::device::tensor_from_rows(&batch, members, x0.len(), &device);
            rime::device::to_vec(model.forecast(t, 0.0, 36))
        })
    });
}

/// The column solver alone (Thomas algorithm in burn ops, 64 levels, a
/// batch of 1024 columns), and one GABLS1 step of the boundary layer (64
/// levels) for one column and for 256 columns.
fn boundary_layer(c: &mut Criterion) {
    use rime::models::BoundaryLayerConfig;
    use rime::models::boundary_layer::solve_tridiagonal;
    let device = cpu_f64();
    let mut solves = vec![(1024, 64)];
    // The column solver at the coupled model's size: 128 x 128 columns of
    // 30 levels.
    solves.push((128 * 128, 30));
    for (batch, n) in solves {
        let values = |f: &dyn Fn(usize) -> f64| {
            let v: Vec<f64> = (0..batch * n).map(f).collect();
            rime::device::tensor_from_rows(&v, batch, n, &device)
        };
        let lower = values(&|i| -0.3 - 0.1 * ((i as f64) * 0.11).sin().abs());
        let upper = values(&|i| -0.3 - 0.1 * ((i as f64) * 0.13).cos().abs());
        let diag = values(&|_| 1.8);
        let rhs = values(&|i| ((i as f64) * 0.37).sin());
        c.bench_function(
            &format!("boundary_layer/tridiagonal_{n}_levels_{batch}_columns"),
            |b| {
                b.iter(|| {
                    rime::device::to_vec(solve_tridiagonal(
                        lower.clone(),
                        diag.clone(),
                        upper.clone(),
                        rhs.clone(),
                    ))
                })
            },
        );
    }
    for columns in [1, 256] {
        let model = BoundaryLayerConfig {
            columns,
            bottom_thickness: Some(2.0),
            ice_cooling_rate: 0.25,
            ..Default::default()
        }
        .build()
        .unwrap();
        let x = model.initial_state(1, &device);
        c.bench_function(
            &format!("boundary_layer/gabls1_step_64_levels_{columns}_columns"),
            |b| b.iter(|| rime::device::to_vec(model.step(x.clone(), 0.0))),
        );
    }
    // One step of the sea ice coupled to its columns (issue 9, point 6):
    // 128 x 128 cells, 30 levels, one column step per ice step, mEVP with
    // 100 sub-iterations, thermodynamics on; and the columns alone.
    let text = r#"
        atmosphere_steps = 1
        [ice]
        nx = 128
        dx = 4000.0
        dt = 120.0
        wind = { kind = "cyclone", amplitude = 30.0, centre = [256000.0, 256000.0], velocity = [0.6, 0.6], decay = 100000.0, scale = 100000.0, angle = 72.0 }
        [ice.mevp]
        iterations = 100
        [atmosphere]
        levels = 30
        top = 1500.0
        bottom_thickness = 10.0
    "#;
    let config: rime::models::IceAtmosphereConfig = toml::from_str(text).unwrap();
    let model = config.build().unwrap();
    let x0 = model.initial_state().unwrap();
    let x = model.step(
        rime::device::tensor_from_rows(&x0, 1, x0.len(), &device),
        0.0,
    );
    c.bench_function("sea_ice_abl/step_128x128_30_levels/1", |b| {
        b.iter(|| rime::device::to_vec(model.step(x.clone(), 120.0)))
    });
    let air = model.atmosphere();
    let columns = air.split(x.clone().narrow(
        1,
        x0.len() - air.geometry().size(),
        air.geometry().size(),
    ));
    let below = air.configured_surface(1, 0.0, &device);
    c.bench_function("boundary_layer/step_30_levels_16384_columns", |b| {
        b.iter(|| rime::device::to_vec(air.join(air.step_over(columns.clone(), &below, None).0)))
    });
}

/// One sea-ice step (mEVP with 20 sub-iterations, BBM with 20 sub-steps)
/// at 64, 128 and 256 cells a side for 1 and 20 members; at 256 also mEVP
/// with 120 sub-iterations, so that the time of one sub-iteration is the
/// difference over 100 (the note divides the bytes a sub-iteration must
/// move by it); the gradient (forward and backward) of one mEVP step at
/// 64 and 128 against its forward step; the burn-ops mEVP (`kernel =
/// "ops"`) beside the fused kernel at 128 and 256; and a 64 MiB copy, the
/// memory bandwidth a stencil code can reach.
fn sea_ice(c: &mut Criterion) {
    use rime::models::sea_ice::{BbmConfig, Kernel, MevpConfig, Rheology, SeaIceConfig, Wind};
    let device = cpu_f64();
    let config = |n: usize, rheology: Rheology, iterations: usize, kernel: Kernel| SeaIceConfig {
        nx: n,
        dx: 4_000.0,
        dt: 60.0,
        rheology,
        mevp: MevpConfig {
            iterations,
            kernel,
            ..Default::default()
        },
        bbm: BbmConfig {
            substeps: 20,
            ..Default::default()
        },
        wind: Wind::Uniform { u: 12.0, v: 5.0 },
        ..SeaIceConfig::default()
    };
    let mut cases = Vec::new();
    for (rheology, name) in [(Rheology::Mevp, "mevp"), (Rheology::Bbm, "bbm")] {
        for n in [64, 128, 256] {
            for members in [1, 20] {
                cases.push((rheology, name, 20, Kernel::Fused, n, members));
            }
        }
    }
    for members in [1, 20] {
        cases.push((Rheology::Mevp, "mevp", 120, Kernel::Fused, 256, members));
    }
    for n in [128, 256] {
        cases.push((Rheology::Mevp, "mevp_ops", 20, Kernel::Ops, n, 1));
    }
    for (rheology, name, iterations, kernel, n, members) in cases {
        let model = config(n, rheology, iterations, kernel).build().unwrap();
        let x0 = model.initial_state().unwrap();
        let mut all = Vec::with_capacity(members * x0.len());
        for _ in 0..members {
            all.extend(&x0);
        }
        let x = rime::device::tensor_from_rows(&all, members, x0.len(), &device);
        // Start from a moving, stressed state.
        let x = model.step(x, 0.0);
        c.bench_function(
            &format!("sea_ice/{name}_step_{iterations}/{n}x{n}/{members}"),
            |b| b.iter(|| rime::device::to_vec(model.step(x.clone(), 60.0))),
        );
    }
    let ad = device.clone().autodiff();
    for (kernel, name, n) in [
        (Kernel::Fused, "mevp", 64),
        (Kernel::Fused, "mevp", 128),
        (Kernel::Ops, "mevp_ops", 128),
    ] {
        let model = config(n, Rheology::Mevp, 20, kernel).build().unwrap();
        let x0 = model.initial_state().unwrap();
        let w: Vec<f64> = (0..x0.len()).map(|k| ((k as f64) * 0.37).sin()).collect();
        c.bench_function(&format!("sea_ice/{name}_step_20_gradient/{n}x{n}/1"), |b| {
            b.iter(|| {
                let x = rime::device::tensor_from_rows(&x0, 1, x0.len(), &ad).require_grad();
                let j = (model.step(x.clone(), 0.0)
                    * rime::device::tensor_from_rows(&w, 1, w.len(), &ad))
                .sum();
                rime::device::to_vec(x.grad(&j.backward()).unwrap())
            })
        });
    }
    let source = vec![1.0f64; 8 << 20];
    let mut target = vec![0.0f64; 8 << 20];
    c.bench_function("memory/copy_64MiB", |b| {
        b.iter(|| {
            target.copy_from_slice(std::hint::black_box(&source));
            std::hint::black_box(&target);
        })
    });
}

/// One observation set of `text` built on `geometry`.
fn obs_set(
    text: &str,
    geometry: &rime::core::Geometry,
    index: usize,
) -> rime::obs::set::SetNetwork {
    let table: toml::Table = toml::from_str(text).unwrap();
    let set = rime::obs::set::ObservationSet::from_table(table, index).unwrap();
    set.check().unwrap();
    set.build(geometry, &cpu_f64(), 7, index, std::path::Path::new("."))
        .unwrap()
}

fn observation_operators(c: &mut Criterion) {
    use burn::tensor::{Tensor, TensorData};
    use rime::obs::network::ObsNetwork;
    let axis: Vec<f64> = (0..65).map(|i| i as f64).collect();
    let geometry = rime::core::Geometry::new(
        vec![rime::core::Field::grid(
            "psi",
            "stream function",
            "1",
            axis.clone(),
            axis,
        )],
        [None, None],
        rime::core::CoordinateUnits::Model,
    );
    let sets = [
        (
            "tracks_select",
            "error_std = 1.0\nnetwork = { kind = \"tracks\", count = 300 }",
        ),
        (
            "stations_bilinear",
            "name = \"st\"\nerror_std = 1.0\nnetwork = { kind = \"stations\", count = 300 }\noperator = { kind = \"bilinear\" }",
        ),
        (
            "blocks_average",
            "name = \"bl\"\nerror_std = 1.0\nnetwork = { kind = \"identity\" }\noperator = { kind = \"block_average\", factor = 5 }",
        ),
    ];
    let mut built: Vec<(String, Box<dyn ObsNetwork>)> = sets
        .iter()
        .map(|(label, text)| {
            (
                label.to_string(),
                Box::new(obs_set(text, &geometry, 0)) as Box<dyn ObsNetwork>,
            )
        })
        .collect();
    built.push((
        "stacked".into(),
        Box::new(rime::obs::set::Stack::new(
            sets.iter()
                .enumerate()
                .map(|(i, (_, t))| obs_set(t, &geometry, i))
                .collect(),
        )),
    ));
    // The downscaling twin's exact operator: 200 precipitation stations
    // on the 257 x 257 fine terrain (Smith-Barstad in 4 x 4 wind blocks).
    built.push((
        "stations_orographic_precipitation".into(),
        Box::new(obs_set(
            "name = \"pr\"\nerror_std = 0.1\nnetwork = { kind = \"stations\", count = 200 }\noperator = { kind = \"orographic\", quantity = \"precipitation\" }",
            &geometry,
            4,
        )),
    ));
    let n = geometry.size();
    let e = DMatrix::from_fn(n, 25, |i, j| ((i * 7 + j * 3) as f64 * 0.01).sin());
    let device = cpu_f64();
    let ad = device.clone().autodiff();
    let mut group = c.benchmark_group("obs_operator_25_members_65x65");
    for (label, net) in &built {
        let op = net.at(3, 1.0).operator;
        if let Some(lin) = op.linear() {
            group.bench_function(format!("{label}/host"), |b| b.iter(|| lin.apply_host(&e)));
        }
        group.bench_function(format!("{label}/tensor"), |b| {
            b.iter(|| {
                let x = rime::device::ensemble_to_tensor(&e, &device);
                rime::device::tensor_to_ensemble(op.apply(x, 1.0))
            })
        });
        let p = op.size();
        let weights = Tensor::<2>::from_data(TensorData::new(vec![0.5f64; 25 * p], [25, p]), &ad);
        group.bench_function(format!("{label}/vjp"), |b| {
            b.iter(|| {
                let x =
                    Tensor::<2>::from_data(TensorData::new(e.as_slice().to_vec(), [25, n]), &ad)
                        .require_grad();
                let grads = (op.apply(x.clone(), 1.0) * weights.clone())
                    .sum()
                    .backward();
                x.grad(&grads).map(|g| g.into_data())
            })
        });
    }
    group.finish();
}

/// The twin's downscaling emulator (experiments/qg/downscaling/
/// train_temperature.toml: channels 8, levels 3, fine_channels 8,
/// fine_levels 1; the 65 x 65 stream function and the terrain to the
/// 257 x 257 fine field; untrained weights time the same): the network on
/// 25 members (the LETKF's ensemble through the learned operator), its
/// vector-Jacobian product (what 4D-Var's gradient costs through it), and
/// one Adam training step on a batch of 4 (MSE).
fn downscaling(c: &mut Criterion) {
    use rime::learned::downscaling::{
        Batch, DownscalingArchitecture, DownscalingNet, DownscalingShapes, Loss, loss,
    };
    use rime::learned::net::f32_tensor;
    let device = cpu_f64();
    let arch = DownscalingArchitecture {
        channels: 8,
        levels: 3,
        fine_channels: 8,
        fine_levels: 1,
        scalar_width: 8,
    };
    let coarse: Vec<f64> = (0..65).map(|i| i as f64).collect();
    let fine: Vec<f64> = (0..257).map(|i| i as f64 * 0.25).collect();
    let shapes = DownscalingShapes {
        predictors: 1,
        scalars: 0,
        statics: 1,
        outputs: 1,
        coarse_x: coarse.clone(),
        coarse_y: coarse,
        fine_x: fine.clone(),
        fine_y: fine,
    };
    let (nc, nf) = (65 * 65, 257 * 257);
    let terrain: Vec<f32> = (0..nf).map(|i| ((i as f32) * 0.013).sin()).collect();
    let x: Vec<f32> = (0..25 * nc).map(|i| ((i as f32) * 0.37).sin()).collect();
    let net = DownscalingNet::new(&arch, &shapes, terrain.clone(), 1, &device);
    c.bench_function("downscaling network, 25 members, 65x65 to 257x257", |b| {
        b.iter(|| {
            let t = f32_tensor(x.clone(), [25, 1, 65, 65], &device);
            rime::device::to_vec(net.forward(t, None).sum())
        })
    });
    let ad = device.clone().autodiff();
    let net_ad = DownscalingNet::new(&arch, &shapes, terrain.clone(), 1, &ad);
    let w: Vec<f32> = (0..25 * nf).map(|i| ((i as f32) * 0.71).cos()).collect();
    c.bench_function("downscaling network vjp, 25 members", |b| {
        b.iter(|| {
            let t = f32_tensor(x.clone(), [25, 1, 65, 65], &ad).require_grad();
            let y = net_ad.forward(t.clone(), None).reshape([25, nf]);
            let j = (y * f32_tensor(w.clone(), [25, nf], &ad)).sum();
            t.grad(&j.backward()).map(|g| g.into_data())
        })
    });
    let mut net = DownscalingNet::new(&arch, &shapes, terrain, 1, &ad);
    let mut optim: burn::optim::ModuleOptimizer = burn::optim::AdamConfig::new().init();
    c.bench_function("downscaling training step, batch 4", |b| {
        b.iter(|| {
            let batch = Batch {
                predictors: f32_tensor(x[..4 * nc].to_vec(), [4, 1, 65, 65], &ad),
                scalars: None,
                targets: f32_tensor(w[..4 * nf].to_vec(), [4, nf], &ad),
                mask: f32_tensor(vec![1.0; 4 * nf], [4, nf], &ad),
                aux: None,
            };
            let out = net.forward(batch.predictors.clone(), None);
            let l = loss(Loss::Mse, out, &batch, 0.0);
            let grads = burn::optim::GradientsParams::from_grads(l.backward(), &net);
            net = optim.step(1e-3, net.clone(), grads);
        })
    });
}

criterion_group!(
    benches,
    filter_cycle,
    gradient,
    emulator,
    observation_operators
);
criterion_group! {
    name = qg_benches;
    config = Criterion::default().sample_size(10);
    targets = qg, unet, downscaling, boundary_layer, sea_ice
}
criterion_main!(benches, qg_benches);
