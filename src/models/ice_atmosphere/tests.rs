//! The coupled ice and boundary layer on small grids: the surface seam of
//! the boundary layer, the air driving the ice, the stress on moving ice,
//! the thermodynamics' signs and balance, and gradients through the
//! coupling against differences.

use burn::tensor::{Tensor, TensorData};

use super::*;
use crate::device::{cpu_f64, cpu_f64_autodiff, to_vec};
use crate::models::sea_ice::{Ocean, Profile, Wind};

fn batch(values: &[f64], device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(values.to_vec(), [1, values.len()]), device)
}

/// A 10 x 10 ice grid at 20 km under a uniform 15 m/s large-scale wind,
/// 12 air levels up to 1 km, 2 air steps per 20-minute ice step.
fn small(thermodynamics: bool) -> IceAtmosphere {
    let text = format!(
        r#"
        atmosphere_steps = 2
        [ice]
        nx = 10
        dx = 20000.0
        dt = 1200.0
        wind = {{ kind = "uniform", u = 15.0, v = 5.0 }}
        [ice.mevp]
        iterations = 50
        [atmosphere]
        ice_roughness = 1e-3
        levels = 12
        top = 1000.0
        bottom_thickness = 10.0
        initial_theta = 255.0
        initial_mixed_height = 200.0
        [thermodynamics]
        enabled = {thermodynamics}
        "#
    );
    let config: IceAtmosphereConfig = toml::from_str(&text).unwrap();
    config.build().unwrap()
}

/// Thickness 0.6-1.4 m and concentration 0.7-1 varying over the grid.
fn lumpy(model: &IceAtmosphere) -> Vec<f64> {
    let mut x = model.initial_state().unwrap();
    let g = model.ice().grid();
    for j in 0..g.ny {
        for i in 0..g.nx {
            let k = j * g.nx + i;
            x[k] = 1.0 + 0.4 * (0.9 * i as f64 + 0.4 * j as f64).sin();
            x[g.cells() + k] = 0.85 + 0.15 * (1.3 * i as f64 - 0.7 * j as f64).cos();
        }
    }
    x
}

/// The boundary layer over a surface passed as tensors equal to its
/// configured one steps exactly as it does by itself.
#[test]
fn a_surface_given_as_tensors_steps_as_the_configured_one() {
    let config = BoundaryLayerConfig {
        columns: 3,
        levels: 16,
        ice_fraction: PerColumn::Each(vec![1.0, 0.6, 0.0]),
        ..Default::default()
    };
    let air = config.build().unwrap();
    let device = cpu_f64();
    let x = air.initial_state(2, &device);
    let reference = to_vec(air.forecast(x.clone(), 0.0, 5));
    let configured = air.configured_surface(2, 0.0, &device);
    let below = Surface::new(
        configured.ice_fraction.clone(),
        configured.ice_temperature.clone(),
        configured.water_temperature.clone(),
        None,
    );
    let mut columns = air.split(x);
    for _ in 0..5 {
        columns = air.step_over(columns, &below, None).0;
    }
    let ours = to_vec(air.join(columns));
    let gap = ours
        .iter()
        .zip(&reference)
        .map(|(a, b)| (a - b).abs() / b.abs().max(1e-3))
        .fold(0.0, f64::max);
    assert!(gap < 1e-12, "{gap:e}");
}

/// Ice moving with the lowest wind feels no stress; at rest it feels the
/// wind's direction; moving against the wind, more.
#[test]
fn the_stress_on_ice_acts_on_the_relative_wind() {
    let air = BoundaryLayerConfig {
        columns: 1,
        levels: 16,
        ..Default::default()
    }
    .build()
    .unwrap();
    let device = cpu_f64();
    let x = air.split(air.initial_state(1, &device));
    let one = |v: f64| Tensor::<2>::from_data(TensorData::new(vec![v], [1, 1]), &device);
    let stress = |ui: f64, vi: f64| {
        // The stress is computed with the wind at the step's end: hold the
        // ice at the lowest level's wind after the step by iterating.
        let below = Surface::new(one(1.0), one(250.0), one(271.35), Some([one(ui), one(vi)]));
        let (after, flux) = air.step_over(x.clone(), &below, None);
        let u1 = to_vec(after.u.narrow(1, 0, 1))[0];
        let v1 = to_vec(after.v.narrow(1, 0, 1))[0];
        let [sx, sy] = flux.ice_stress;
        ((to_vec(sx)[0], to_vec(sy)[0]), (u1, v1))
    };
    let ((sx, sy), (u1, v1)) = stress(0.0, 0.0);
    assert!(sx * u1 + sy * v1 > 0.0, "stress along the wind");
    // Ice at the lowest wind: the relative wind is the change over one step.
    let (mut ui, mut vi) = (u1, v1);
    for _ in 0..20 {
        let (_, (a, b)) = stress(ui, vi);
        (ui, vi) = (a, b);
    }
    let ((mx, my), _) = stress(ui, vi);
    assert!(mx.hypot(my) < 1e-6 * sx.hypot(sy), "{mx} {my} vs {sx} {sy}");
    let ((ax, ay), _) = stress(-u1, -v1);
    assert!(ax.hypot(ay) > 2.0 * sx.hypot(sy));
}

/// The boundary layer drives the ice: the lowest wind is slower than the
/// flow aloft, the ice drifts with it at a few per cent of its speed, the
/// mean air stress is of the usual size, and everything stays finite.
#[test]
fn the_columns_drive_the_ice() {
    let model = small(false);
    let device = cpu_f64();
    let x0 = lumpy(&model);
    let y = to_vec(model.forecast(batch(&x0, &device), 0.0, 9));
    assert!(y.iter().all(|v| v.is_finite()));
    let g = model.ice().grid();
    let (cells, nodes) = (g.cells(), g.nodes());
    let u = &y[2 * cells..2 * cells + nodes];
    let v = &y[2 * cells + nodes..2 * cells + 2 * nodes];
    let centre = (g.ny / 2) * (g.nx + 1) + g.nx / 2;
    // The lowest air wind, slowed by the ice below the 15.8 m/s flow aloft.
    let n_ice = model.ice().geometry().size();
    let levels = model.atmosphere().grid().levels();
    let column = (g.ny / 2 * g.nx + g.nx / 2) * levels;
    let air = |k: usize, level: usize| y[n_ice + cells + k * cells * levels + column + level];
    let (u_low, v_low) = (air(0, 0), air(1, 0));
    let top = air(0, levels - 1).hypot(air(1, levels - 1));
    assert!(
        u_low.hypot(v_low) > 1.0 && u_low.hypot(v_low) < top,
        "{u_low} {v_low} {top}"
    );
    // The ice drifts within 90 degrees of that wind at a few per cent of
    // its speed (the rest goes to the ocean drag and Coriolis).
    let (ui, vi) = (u[centre], v[centre]);
    assert!(
        ui * u_low + vi * v_low > 0.0,
        "ice ({ui}, {vi}) vs wind ({u_low}, {v_low})"
    );
    let ratio = ui.hypot(vi) / u_low.hypot(v_low);
    assert!((0.005..0.1).contains(&ratio), "{ratio}");
    let d = model.diagnostics(batch(&y, &device), 9.0 * 1200.0);
    let stress = d.iter().find(|(n, _)| *n == "mean_air_stress").unwrap().1[0];
    assert!(stress > 0.01 && stress < 1.0, "{stress} N/m2");
}

/// Air colder than the ice grows it and closes leads; the surface
/// temperature balances conduction and the loss to the air; warm air
/// melts it.
#[test]
fn thermodynamics_grow_and_melt_the_ice() {
    let model = small(true);
    let device = cpu_f64();
    let g = model.ice().grid();
    let cells = g.cells();
    let x0 = lumpy(&model);
    let volume = |x: &[f64]| x[..cells].iter().sum::<f64>();
    let cover = |x: &[f64]| x[cells..2 * cells].iter().sum::<f64>();
    let y = to_vec(model.forecast(batch(&x0, &device), 0.0, 6));
    assert!(volume(&y) > volume(&x0), "cold air grows ice");
    assert!(cover(&y) > cover(&x0), "leads freeze");
    let n_ice = model.ice().geometry().size();
    let ts = &y[n_ice..n_ice + cells];
    assert!(ts.iter().all(|t| (240.0..=MELTING).contains(t)), "{ts:?}");
    // Growth of a day of 2 cm-ish: a loss of tens of W/m^2 over 2 hours.
    let growth = (volume(&y) - volume(&x0)) / cells as f64;
    assert!(growth > 1e-4 && growth < 0.05, "{growth} m in 2 hours");
    // Warm air (280 K) melts it.
    let mut warm = model.config.clone();
    warm.atmosphere.initial_theta = 280.0;
    warm.atmosphere.initial_lapse_rate = 0.0;
    warm.thermodynamics.radiative_loss = -50.0;
    let warm = warm.build().unwrap();
    let x0 = lumpy(&warm);
    let y = to_vec(warm.forecast(batch(&x0, &device), 0.0, 6));
    assert!(volume(&y) < volume(&x0), "warm air melts ice");
    let ts = &y[n_ice..n_ice + cells];
    assert!(
        ts.iter().all(|t| (*t - MELTING).abs() < 1e-9),
        "melting surface"
    );
}

/// Autodiff gradients of `<w, x(T)>` through the coupled steps match
/// central differences, along the initial thickness, the initial air
/// temperature and the estimated roughness length of the ice.
#[test]
fn gradients_through_the_coupling_match_differences() {
    let mut config = small(true).config.clone();
    config.estimate = vec![AirParameter::IceRoughness];
    let model = config.build().unwrap();
    let mut x0 = lumpy(&model);
    let n = x0.len();
    let steps = 3;
    // A generic point: the initial air profiles have exact ties (N^2 = 0
    // in the mixed layer, e = e_min aloft) at kinks of the closure's
    // clamps, which central differences would straddle.
    let air_at = model.ice().geometry().size() + model.ice().grid().cells();
    let per_field = (n - 1 - air_at) / 5;
    for (i, x) in x0.iter_mut().enumerate().skip(air_at).take(n - 1 - air_at) {
        let wobble = ((i as f64) * 0.731).sin();
        *x += match (i - air_at) / per_field {
            0 | 1 => 0.3 * wobble,
            2 => 0.05 * wobble,
            3 => 0.0,
            _ => 1e-3 * wobble.abs(),
        };
    }
    let w: Vec<f64> = (0..n).map(|k| ((k as f64) * 0.37).sin()).collect();
    let j = |x: &[f64]| -> f64 {
        to_vec(model.forecast(batch(x, &cpu_f64()), 0.0, steps))
            .iter()
            .zip(&w)
            .map(|(a, b)| a * b)
            .sum()
    };
    let ad = cpu_f64_autodiff();
    let xt = batch(&x0, &ad).require_grad();
    let y = model.forecast(xt.clone(), 0.0, steps);
    let grads = (y * batch(&w, &ad)).sum().backward();
    let g = to_vec(xt.grad(&grads).unwrap());
    let cells = model.ice().grid().cells();
    let n_ice = model.ice().geometry().size();
    let levels = model.atmosphere().grid().levels();
    let theta_at = n_ice + cells + 2 * cells * levels;
    let mut thickness = vec![0.0; n];
    let mut theta = vec![0.0; n];
    for k in 0..cells {
        thickness[k] = 1.0 + 0.5 * ((k as f64) * 1.7).cos();
        for l in 0..levels {
            theta[theta_at + k * levels + l] = 1.0 + 0.3 * ((k + l) as f64).sin();
        }
    }
    for (dir, eps, what) in [
        (thickness, 1e-6, "thickness"),
        (theta, 1e-5, "air temperature"),
    ] {
        let plus: Vec<f64> = x0.iter().zip(&dir).map(|(a, d)| a + eps * d).collect();
        let minus: Vec<f64> = x0.iter().zip(&dir).map(|(a, d)| a - eps * d).collect();
        let fd = (j(&plus) - j(&minus)) / (2.0 * eps);
        let ad: f64 = g.iter().zip(&dir).map(|(a, d)| a * d).sum();
        let rel = (fd - ad).abs() / fd.abs();
        assert!(fd.abs() > 0.0, "{what}: no sensitivity");
        assert!(
            rel < 1e-5,
            "{what}: autodiff {ad:e} vs differences {fd:e} ({rel:e})"
        );
    }
}

/// Bad values name their key, prefixed by the part they belong to.
#[test]
fn bad_values_are_named() {
    let bad = |text: &str| -> String {
        let config: IceAtmosphereConfig = toml::from_str(text).unwrap();
        config.build().unwrap_err().to_string()
    };
    let base = "[ice]\nnx = 6\n";
    assert!(bad(&format!("atmosphere_steps = 0\n{base}")).contains("atmosphere_steps"));
    assert!(bad(&format!("{base}dx = -1.0\n")).contains("ice.dx"));
    assert!(
        bad(&format!("{base}[atmosphere]\nlevels = 1\n")).contains("atmosphere.levels"),
        "{}",
        bad(&format!("{base}[atmosphere]\nlevels = 1\n"))
    );
    assert!(
        bad(&format!("{base}[thermodynamics]\nconductivity = 0.0\n"))
            .contains("thermodynamics.conductivity")
    );
    let _ = (
        Ocean::Rest,
        Profile::Uniform { value: 1.0 },
        Wind::Uniform { u: 0.0, v: 0.0 },
    );
}

/// With `ice_forcing = "wind"` and no thermodynamics the ice of the coupled
/// model is the uncoupled sea ice, value for value, while the columns run.
#[test]
fn ice_forced_by_the_wind_is_the_uncoupled_sea_ice() {
    let mut config = small(false).config.clone();
    config.ice_forcing = IceForcing::Wind;
    let model = config.build().unwrap();
    let device = cpu_f64();
    let x0 = lumpy(&model);
    let n_ice = model.ice().geometry().size();
    let y = to_vec(model.forecast(batch(&x0, &device), 0.0, 4));
    let alone = config.ice.build().unwrap();
    let z = to_vec(alone.forecast(batch(&x0[..n_ice], &device), 0.0, 4));
    assert_eq!(&y[..n_ice], &z[..]);
    // The air moved on.
    let air = n_ice + model.ice().grid().cells();
    assert!(y[air..].iter().zip(&x0[air..]).any(|(a, b)| a != b));
}
