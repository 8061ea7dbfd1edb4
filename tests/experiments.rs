//! Integration tests: shortened reproductions of the published setups in
//! `experiments/`, the command line, outputs, faults and determinism.
//!
//! The full-length runs are `just reproduce`; here each published score is
//! checked on a shorter run with the file's tolerance widened by the 95 %
//! sampling half-width of the shorter time average (`rmse_a_ci95`, which
//! accounts for autocorrelation), so a shorter run is not held to a
//! precision it cannot have.

use std::path::{Path, PathBuf};
use std::process::Command;

use rime::experiment::runner::Status;
use rime::experiment::{ExperimentConfig, RunOptions, output, run};
use rime::io::NetcdfFormat;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Run options that stream the outputs into `dir`.
fn to(dir: &Path) -> RunOptions {
    RunOptions {
        output: Some(output::OutputTarget {
            dir: dir.to_path_buf(),
            format: NetcdfFormat::Classic,
            overwrite: false,
        }),
        ..Default::default()
    }
}

/// The command `rime run FILE --out OUT ARGS...`.
fn rime_run(file: &Path, out: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rime"));
    c.arg("run").arg(file).arg("--out").arg(out).args(args);
    c
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rime-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `file` for `cycles` and checks every method with an expectation
/// (methods listed in `skip` are left out to keep the test short).
fn reproduce(file: &str, cycles: usize, skip: &[&str]) {
    let mut config = ExperimentConfig::from_file(root().join(file)).unwrap();
    config.methods.retain(|m| !skip.contains(&m.label.as_str()));
    check_scores(file, &config, cycles);
}

/// Runs `config` for `cycles` and checks every method with an expectation
/// against it, within its tolerance plus the run's 95 % interval.
fn check_scores(file: &str, config: &ExperimentConfig, cycles: usize) {
    let report = run(
        config,
        &RunOptions {
            cycles: Some(cycles),
            ..Default::default()
        },
    )
    .unwrap();
    print!("{}", output::table(&report));
    let mut failures = Vec::new();
    for m in &report.methods {
        let Some(expected) = m.expected else { continue };
        assert_eq!(m.status, Status::Ok, "{} diverged", m.label);
        let rmse = m.summary.rmse_a.unwrap();
        let ci = m.summary.rmse_a_ci95.unwrap();
        let allowed = expected.tolerance + ci;
        if (rmse - expected.rmse_a).abs() > allowed {
            failures.push(format!(
                "{}: rmse_a {rmse:.4} vs published {:.3} (allowed ±{allowed:.4})",
                m.label, expected.rmse_a
            ));
        }
    }
    assert!(failures.is_empty(), "{file}:\n{}", failures.join("\n"));
}

#[test]
fn sakov2008_lorenz96_table_shortened() {
    // 2000 cycles, 1600 after the 400-cycle burn-in.
    reproduce("experiments/lorenz96/sakov2008.toml", 2000, &[]);
}

#[test]
fn sakov2012_lorenz63_table_shortened() {
    reproduce("experiments/lorenz63/sakov2012.toml", 2000, &[]);
}

#[test]
fn sakov2008_qg_letkf_and_serial_local_eakf_shortened() {
    // DAPPER's QG twin, 150 cycles: the 100 after the file's burn-in of 50
    // are averaged (the analyses settle within those 50 cycles, as DAPPER's
    // burn-in of 250 time units assumes). LETKF (2 x 2 batches, as DAPPER)
    // and SL_EAKF with N = 25 (DAPPER: 0.64 and 0.62); the N = 45 LETKF and
    // SL_EAKF with inflation 1.03 run in `just reproduce`.
    let mut config =
        ExperimentConfig::from_file(root().join("experiments/qg/sakov2008.toml")).unwrap();
    config
        .methods
        .retain(|m| ["letkf_n25", "sl_eakf_n25"].contains(&m.label.as_str()));
    check_scores("experiments/qg/sakov2008.toml", &config, 150);
}

#[test]
fn bocquet2013_variational_table_shortened() {
    // 4D-Var windows 1, 2, 4 and the iEnKS, observations every 4 steps;
    // 1000 cycles, 900 after the burn-in. En4DVar (21 minimisations a
    // cycle) runs in `just reproduce` only; its own test is below.
    reproduce(
        "experiments/lorenz96/bocquet2013.toml",
        1000,
        &["en4dvar", "var4d_weak_w4"],
    );
}

#[test]
fn en4dvar_beats_static_b_4dvar_on_the_same_window() {
    let mut config =
        ExperimentConfig::from_file(root().join("experiments/lorenz96/bocquet2013.toml")).unwrap();
    config
        .methods
        .retain(|m| ["var4d_w4", "en4dvar", "var4d_weak_w4"].contains(&m.label.as_str()));
    let report = run(
        &config,
        &RunOptions {
            // 320 cycles: at cycle 303 a member's first line-search step
            // overflows the trajectory (NaN cost); the minimiser must back
            // off rather than stop the method or hang.
            cycles: Some(320),
            ..Default::default()
        },
    )
    .unwrap();
    print!("{}", output::table(&report));
    for m in &report.methods {
        assert_eq!(m.status, Status::Ok, "{}", m.label);
    }
    let rmse = |l: &str| {
        report
            .methods
            .iter()
            .find(|m| m.label == l)
            .unwrap()
            .summary
            .rmse_a
            .unwrap()
    };
    assert!(
        rmse("en4dvar") < rmse("var4d_w4"),
        "{} vs {}",
        rmse("en4dvar"),
        rmse("var4d_w4")
    );
    // A tiny model-error term changes little: weak and strong agree to 10 %.
    assert!((rmse("var4d_weak_w4") - rmse("var4d_w4")).abs() < 0.1 * rmse("var4d_w4"));
    // Every minimisation is recorded, one per cycle.
    let var = report
        .methods
        .iter()
        .find(|m| m.label == "var4d_w4")
        .unwrap();
    assert_eq!(var.minimisations.len(), 320 - 3);
    assert!(
        var.minimisations
            .iter()
            .all(|r| r.last.cost < r.cost_initial)
    );
}

#[test]
fn wilks_parametrisation_beats_plain_truncation() {
    let mut config =
        ExperimentConfig::from_file(root().join("experiments/lorenz96_two_scale/wilks2005.toml"))
            .unwrap();
    config
        .methods
        .retain(|m| ["climatology", "etkf"].contains(&m.label.as_str()));
    let options = RunOptions {
        cycles: Some(1000),
        ..Default::default()
    };
    let with = run(&config, &options).unwrap();
    let rmse = |r: &rime::experiment::Report, label: &str| {
        r.methods
            .iter()
            .find(|m| m.label == label)
            .unwrap()
            .summary
            .rmse_a
            .unwrap()
    };
    let forecast = config
        .forecast_model
        .as_ref()
        .expect("wilks2005.toml cycles the truncated model");
    assert_eq!(forecast.name(), "lorenz96_truncated");
    let mut table = forecast.table().clone();
    table.insert("name".into(), "lorenz96_truncated".into());
    table.insert("parametrisation".into(), "none".into());
    config.forecast_model = Some(rime::experiment::ModelConfig::from_table(table).unwrap());
    let without = run(&config, &options).unwrap();
    let (w, wo, clim) = (
        rmse(&with, "etkf"),
        rmse(&without, "etkf"),
        rmse(&with, "climatology"),
    );
    println!("etkf rmse_a: wilks {w:.4}, none {wo:.4}; climatology {clim:.4}");
    assert!(w < wo, "the parametrisation should help: {w} vs {wo}");
    assert!(
        w < 0.5 * clim,
        "the filter should beat climatology: {w} vs {clim}"
    );
}

#[test]
fn same_seed_same_numbers() {
    let config =
        ExperimentConfig::from_file(root().join("experiments/lorenz96/sakov2008.toml")).unwrap();
    let mut config = config;
    config
        .methods
        .retain(|m| ["enkf", "letkf", "ensrf"].contains(&m.label.as_str()));
    let options = RunOptions {
        cycles: Some(100),
        ..Default::default()
    };
    let a = run(&config, &options).unwrap();
    let b = run(&config, &options).unwrap();
    let c = run(
        &config,
        &RunOptions {
            seed: Some(1),
            ..options.clone()
        },
    )
    .unwrap();
    for ((x, y), z) in a.methods.iter().zip(&b.methods).zip(&c.methods) {
        let rmse = |m: &rime::experiment::runner::MethodReport| m.series.column(|s| s.rmse_a);
        assert_eq!(rmse(x), rmse(y), "{}", x.label);
        assert_ne!(rmse(x), rmse(z), "{}", x.label);
    }
    // A method's numbers do not depend on the other methods in the file.
    let mut alone = config.clone();
    alone.methods.retain(|m| m.label == "letkf");
    let d = run(&alone, &options).unwrap();
    assert_eq!(
        d.methods[0].series.column(|s| s.rmse_a),
        a.methods
            .iter()
            .find(|m| m.label == "letkf")
            .unwrap()
            .series
            .column(|s| s.rmse_a)
    );
}

const SMALL: &str = r#"
[model]
name = "lorenz96"
size = 40
[observations]
operator = "every"
stride = 2
error_std = 1.0
[run]
cycles = 60
burn_in = 10
seed = 5
divergence_rmse = 2.0
[initial]
mean = [1.0]
std = 0.0316
[[methods]]
name = "climatology"
[[methods]]
name = "etkf"
ensemble_size = 20
inflation = 1.05
rotation = true
"#;

#[test]
fn the_letkf_on_the_device_gives_the_threaded_letkf_numbers() {
    // Same settings but the engine: the same random draws (the engine is
    // not part of the streams' key) and the same analyses to round-off.
    let text = SMALL.split("[[methods]]").next().unwrap().to_string()
        + r#"
[[methods]]
name = "letkf"
label = "threads"
ensemble_size = 10
inflation = 1.05
rotation = true
localisation_radius = 3.0
[[methods]]
name = "letkf"
label = "device"
ensemble_size = 10
inflation = 1.05
rotation = true
localisation_radius = 3.0
engine = "device"
"#;
    let config = ExperimentConfig::from_toml(&text, Path::new("device.toml")).unwrap();
    let dir = scratch("device-letkf");
    let report = run(&config, &to(&dir)).unwrap();
    let (threads, device) = (&report.methods[0], &report.methods[1]);
    assert_eq!(threads.status, Status::Ok);
    assert_eq!(device.status, Status::Ok);
    for (name, a, b) in [
        ("rmse_a", threads.summary.rmse_a, device.summary.rmse_a),
        (
            "spread_a",
            threads.summary.spread_a,
            device.summary.spread_a,
        ),
    ] {
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!((a - b).abs() < 1e-9 * a, "{name}: {a} vs {b}");
    }
    assert!(
        threads.summary.rmse_a.unwrap() < 1.0,
        "the LETKF tracks the truth"
    );
}

#[test]
fn a_diverging_method_is_reported_and_the_others_finish() {
    // Climatology's RMSE (about 3.6) exceeds the divergence limit of 2.
    let config = ExperimentConfig::from_toml(SMALL, Path::new("small.toml")).unwrap();
    let dir = scratch("diverge");
    let mut report = run(&config, &to(&dir)).unwrap();
    assert!(
        matches!(report.methods[0].status, Status::Diverged { cycle: 0, .. }),
        "{:?}",
        report.methods[0].status
    );
    assert_eq!(report.methods[1].status, Status::Ok);
    assert!(report.methods[1].summary.rmse_a.unwrap() < 2.0);
    output::write_summary(&report, &dir).unwrap();
    // The folder's lock goes with the report.
    drop(report.lock.take());
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["methods"][0]["status"], "diverged");
    assert_eq!(summary["methods"][0]["stopped_at_cycle"], 0);
    assert!(summary["methods"][0]["rmse_a"].is_null());
    assert_eq!(summary["methods"][1]["status"], "ok");
    assert!(dir.join("climatology.nc").exists() && dir.join("etkf.nc").exists());
    // The diverged method's file holds its cycles up to the divergence.
    let ds = rime::io::read_classic(&dir.join("climatology.nc")).unwrap();
    assert_eq!(ds.dim_len("time"), Some(1));
    let rime::io::VarData::I32(at) = &ds.variable("stopped_at_cycle").unwrap().data else {
        panic!("stopped_at_cycle is an int")
    };
    assert_eq!(at, &[0]);
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name != rime::io::folder::MANIFEST
                && (name.starts_with('.') || name.contains(".partial"))
        })
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary files left behind: {leftovers:?}"
    );
}

#[test]
fn netcdf_output_reads_back() {
    let config = ExperimentConfig::from_toml(
        &SMALL.replace("divergence_rmse = 2.0", ""),
        Path::new("small.toml"),
    )
    .unwrap();
    let dir = scratch("netcdf");
    let report = run(&config, &to(&dir)).unwrap();
    assert_eq!(report.files.len(), 4, "{:?}", report.files);
    let read = |name: &str| rime::io::read_classic(&dir.join(name)).unwrap();
    let f64s = |ds: &rime::io::Dataset, name: &str| match &ds
        .variable(name)
        .unwrap_or_else(|| panic!("no {name}"))
        .data
    {
        rime::io::VarData::F64(v) => v.clone(),
        other => panic!("{name} is {}", other.type_name()),
    };
    let etkf = read("etkf.nc");
    let truth = read("truth.nc");
    let obs = read("observations.nc");
    for ds in [&etkf, &truth] {
        assert_eq!(ds.dim_len("time"), Some(60));
        assert_eq!(ds.dim_len("x"), Some(40));
    }
    assert_eq!(obs.dim_len("obs"), Some(20));
    // The stored per-cycle RMSE is the RMSE of the stored fields.
    let (t, a) = (f64s(&truth, "truth"), f64s(&etkf, "analysis_mean"));
    let rmse = f64s(&etkf, "rmse_a");
    for k in [0, 7, 59] {
        let r = (0..40)
            .map(|i| (a[40 * k + i] - t[40 * k + i]).powi(2))
            .sum::<f64>()
            / 40.0;
        assert!((r.sqrt() - rmse[k]).abs() < 1e-12, "cycle {k}");
        assert_eq!(rmse[k], report.methods[1].series.scores[k].rmse_a);
    }
    let rime::io::VarData::I32(idx) = &obs.variable("obs_index").unwrap().data else {
        panic!("obs_index is an int")
    };
    assert_eq!(idx[..3], [0, 2, 4]);
    assert_eq!(f64s(&obs, "obs_x")[..3], [0.0, 2.0, 4.0]);
    let omb = f64s(&etkf, "omb_rms");
    assert!(omb.iter().all(|v| v.is_finite() && *v > 0.0));
    // Ensembles carry a rank histogram over the cycles after burn-in.
    let rime::io::VarData::I32(ranks) = &etkf.variable("rank_histogram").unwrap().data else {
        panic!()
    };
    assert_eq!(ranks.len(), 21);
    assert_eq!(ranks.iter().sum::<i32>(), 50 * 40);
}

#[test]
fn cli_runs_an_experiment_and_reports_bad_input() {
    let dir = scratch("cli");
    let file = dir.join("small.toml");
    std::fs::write(&file, SMALL.replace("divergence_rmse = 2.0", "")).unwrap();
    let out = dir.join("out");
    let status = rime_run(&file, &out, &["--cycles", "30", "--seed", "9"])
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert!(stdout.contains("| etkf |"), "{stdout}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["seed"], 9);
    assert_eq!(summary["cycles"], 30);
    let m = &summary["methods"][1];
    for key in [
        "label",
        "name",
        "status",
        "rmse_a",
        "rmse_a_ci95",
        "rmse_f",
        "spread_a",
        "crps_a",
        "time_per_cycle_s",
        "expected",
        "netcdf",
    ] {
        assert!(m.get(key).is_some(), "summary.json lacks {key}");
    }
    assert_eq!(m["netcdf"], "etkf.nc");

    // An unknown key: exit status 2 and a message naming file and key.
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, SMALL.replace("inflation = 1.05", "inflaton = 1.05")).unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_rime"))
        .args(["run", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&status.stderr);
    assert!(
        stderr.contains("bad.toml") && stderr.contains("inflaton"),
        "{stderr}"
    );
}

/// Reads a variable of a classic NetCDF file as f64.
fn read_f64(ds: &rime::io::Dataset, name: &str) -> Vec<f64> {
    ds.variable(name)
        .unwrap_or_else(|| panic!("no variable {name}"))
        .data
        .to_f64()
}

#[test]
fn observations_from_a_file_are_assimilated_like_the_twins() {
    // A twin writes its observations; the same observations read back from
    // a CSV file and from a NetCDF file give the same analyses, without a
    // truth: the run reports innovation statistics instead of errors.
    let text = SMALL
        .replace("divergence_rmse = 2.0", "")
        .replace("[[methods]]\nname = \"climatology\"\n", "");
    let config = ExperimentConfig::from_toml(&text, Path::new("small.toml")).unwrap();
    let dir = scratch("file-obs");
    let twin = run(&config, &to(&dir.join("twin"))).unwrap();
    let obs = rime::io::read_classic(&dir.join("twin/observations.nc")).unwrap();
    let (time, values, errors, index) = (
        read_f64(&obs, "time"),
        read_f64(&obs, "observations"),
        read_f64(&obs, "obs_error_std"),
        read_f64(&obs, "obs_index"),
    );
    let p = obs.dim_len("obs").unwrap();
    let mut csv = String::from("# written from a twin's observations.nc\ntime,index,value,error\n");
    let mut columns: [Vec<f64>; 4] = Default::default();
    for (k, t) in time.iter().enumerate() {
        for j in 0..p {
            let v = values[k * p + j];
            if v.is_nan() {
                continue;
            }
            // `{}` prints the shortest text that reads back to the same f64.
            csv += &format!("{t},{},{v},{}\n", index[k * p + j], errors[k * p + j]);
            for (c, x) in columns
                .iter_mut()
                .zip([*t, index[k * p + j], v, errors[k * p + j]])
            {
                c.push(x);
            }
        }
    }
    std::fs::write(dir.join("obs.csv"), csv).unwrap();
    let mut nc = rime::io::Dataset::new();
    nc.dim("row", columns[0].len());
    for (name, c) in ["time", "index", "value", "error"].iter().zip(&columns) {
        nc.var_f64(name, &["row"], c.clone(), &[("units", "1")]);
    }
    rime::io::write_netcdf(&dir.join("obs.nc"), &nc, NetcdfFormat::Classic).unwrap();

    for file in ["obs.csv", "obs.nc"] {
        let text = text.replace(
            "operator = \"every\"\nstride = 2\nerror_std = 1.0",
            &format!("operator = \"file\"\nfile = \"{file}\""),
        );
        let config = ExperimentConfig::from_toml(&text, &dir.join("from-file.toml")).unwrap();
        let out = dir.join(file.replace('.', "-"));
        let report = run(&config, &to(&out)).unwrap();
        assert!(!report.has_truth);
        let (a, b) = (&twin.methods[0], &report.methods[0]);
        assert_eq!(b.status, Status::Ok);
        assert!(b.summary.rmse_a.is_none(), "no truth, no error");
        for k in 0..60 {
            let (x, y) = (&a.series.scores[k], &b.series.scores[k]);
            assert_eq!(x.obs_count, y.obs_count, "{file}, cycle {k}");
            assert!((x.omb_rms - y.omb_rms).abs() < 1e-12, "{file}, cycle {k}");
            assert!((x.oma_rms - y.oma_rms).abs() < 1e-12, "{file}, cycle {k}");
            assert!((x.spread_a - y.spread_a).abs() < 1e-12, "{file}, cycle {k}");
        }
        let (ma, mb) = (
            read_f64(
                &rime::io::read_classic(&dir.join("twin/etkf.nc")).unwrap(),
                "analysis_mean",
            ),
            read_f64(
                &rime::io::read_classic(&out.join("etkf.nc")).unwrap(),
                "analysis_mean",
            ),
        );
        let worst = ma
            .iter()
            .zip(&mb)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max);
        assert!(worst < 1e-10, "{file}: analyses differ by {worst}");
        // With R = 1 and a consistent filter, Desroziers' estimate of R is
        // near the assumed value.
        let ratio = b.summary.desroziers_r_ratio.unwrap();
        assert!(
            (0.6..1.4).contains(&ratio),
            "{file}: Desroziers R ratio {ratio}"
        );
        assert!(!out.join("truth.nc").exists());
        print!("{}", output::table(&report));
    }
    // The same observations with errors claimed ten times too small: no
    // truth to score against, but the innovations contradict R, and the
    // status says so instead of "ok" (issue 31, point 4).
    let mut understated = String::from("time,index,value,error\n");
    for i in 0..columns[0].len() {
        understated += &format!(
            "{},{},{},{}\n",
            columns[0][i],
            columns[1][i],
            columns[2][i],
            0.1 * columns[3][i]
        );
    }
    std::fs::write(dir.join("understated.csv"), understated).unwrap();
    let text_bad = text.replace(
        "operator = \"every\"\nstride = 2\nerror_std = 1.0",
        "operator = \"file\"\nfile = \"understated.csv\"",
    );
    let config = ExperimentConfig::from_toml(&text_bad, &dir.join("understated.toml")).unwrap();
    let report = run(&config, &to(&dir.join("understated"))).unwrap();
    let m = &report.methods[0];
    assert!(
        matches!(m.status, Status::InconsistentInnovations { r_ratio } if r_ratio > 2.0),
        "{:?}",
        m.status
    );
    assert_eq!(m.status.name(), "inconsistent_innovations");
    // An ETKF blown up by absurd inflation on the file's observations: no
    // truth to measure it by, and yet it ends "diverged" with its cycle,
    // not "failed" in some decomposition (issue 31, point 7).
    let text_wild = text
        .replace(
            "operator = \"every\"\nstride = 2\nerror_std = 1.0",
            "operator = \"file\"\nfile = \"obs.csv\"",
        )
        .replace("inflation = 1.05", "inflation = 1000.0");
    let config = ExperimentConfig::from_toml(&text_wild, &dir.join("wild.toml")).unwrap();
    let report = run(&config, &to(&dir.join("wild"))).unwrap();
    assert!(
        matches!(report.methods[0].status, Status::Diverged { .. }),
        "{:?}",
        report.methods[0].status
    );
    // A method that needs a truth's climatology is refused up front.
    let bad = SMALL.replace("divergence_rmse = 2.0", "").replace(
        "operator = \"every\"\nstride = 2\nerror_std = 1.0",
        "operator = \"file\"\nfile = \"obs.csv\"",
    );
    let config = ExperimentConfig::from_toml(&bad, &dir.join("bad.toml")).unwrap();
    let e = run(&config, &RunOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("climatology") && e.contains("bad.toml"), "{e}");
}

#[test]
fn a_moving_network_is_assimilated() {
    // 20 of 40 variables, drawn anew every cycle.
    let text = SMALL.replace("divergence_rmse = 2.0", "").replace(
        "operator = \"every\"\nstride = 2",
        "operator = \"random\"\ncount = 20",
    );
    let config = ExperimentConfig::from_toml(&text, Path::new("moving.toml")).unwrap();
    let dir = scratch("moving");
    let report = run(&config, &to(&dir)).unwrap();
    let etkf = &report.methods[1];
    assert_eq!(etkf.status, Status::Ok);
    let rmse = etkf.summary.rmse_a.unwrap();
    let clim = report.methods[0].summary.rmse_a.unwrap();
    assert!(rmse < 0.3 * clim, "etkf {rmse} vs climatology {clim}");
    let obs = rime::io::read_classic(&dir.join("observations.nc")).unwrap();
    let index = read_f64(&obs, "obs_index");
    let distinct: std::collections::BTreeSet<Vec<u64>> = index
        .chunks(20)
        .map(|c| c.iter().map(|&v| v as u64).collect())
        .collect();
    assert!(
        distinct.len() > 50,
        "{} networks in 60 cycles",
        distinct.len()
    );
}

#[test]
fn ensembles_drawn_from_a_climatological_sample_start_at_the_climate_and_track_the_truth() {
    // Lorenz-96 from a free run (100 spin-up cycles, 30 states 3 cycles
    // apart), every other variable observed. (With the observations
    // alternating between the even and the odd variables, `tracks`, and
    // inflation 1.05, this ETKF loses the truth after about 100 cycles from
    // the climatological start, and tracks it from the near-truth start of
    // SMALL or with inflation 1.1: a marginal filter, not a test.)
    let text = SMALL
        .replace("divergence_rmse = 2.0", "")
        // From a climatological ensemble the filter needs longer to settle.
        .replace("cycles = 60\nburn_in = 10", "cycles = 400\nburn_in = 150")
        + "[initial.sample]\nspinup_cycles = 100\ncount = 30\nspacing = 3\n";
    let config = ExperimentConfig::from_toml(&text, Path::new("sample.toml")).unwrap();
    let dir = scratch("sample");
    let report = run(&config, &to(&dir)).unwrap();
    let (clim, etkf) = (&report.methods[0], &report.methods[1]);
    assert_eq!(etkf.status, Status::Ok);
    let rmse = etkf.summary.rmse_a.unwrap();
    let clim_rmse = clim.summary.rmse_a.unwrap();
    assert!(
        rmse < 0.3 * clim_rmse,
        "etkf {rmse} vs climatology {clim_rmse}"
    );
    // The first forecast is a climatological ensemble: its spread is of
    // the climate's size (about 3.6), not the 0.03 of `initial.std`.
    let ds = rime::io::read_classic(&dir.join("etkf.nc")).unwrap();
    let spread_f = read_f64(&ds, "spread_f");
    assert!(spread_f[0] > 2.0, "first forecast spread {}", spread_f[0]);
    // A sample of one state is refused, named by its key.
    let bad = text.replace("count = 30", "count = 1");
    let e = ExperimentConfig::from_toml(&bad, Path::new("bad.toml"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("initial.sample.count"), "{e}");
}

#[test]
fn a_stochastic_model_gives_the_same_numbers_on_one_and_two_threads() {
    let text = SMALL.replace("divergence_rmse = 2.0", "").replace(
        "name = \"lorenz96\"",
        "name = \"lorenz96\"\nnoise_std = 0.3",
    ) + "\n[[methods]]\nlabel = \"enkf\"\nname = \"enkf\"\nensemble_size = 20\ninflation = 1.05\n";
    let config = ExperimentConfig::from_toml(&text, Path::new("stochastic.toml")).unwrap();
    let on = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| run(&config, &RunOptions::default()).unwrap())
    };
    let (one, two) = (on(1), on(2));
    let deterministic = run(
        &ExperimentConfig::from_toml(
            &SMALL.replace("divergence_rmse = 2.0", ""),
            Path::new("d.toml"),
        )
        .unwrap(),
        &RunOptions::default(),
    )
    .unwrap();
    for ((a, b), d) in one
        .methods
        .iter()
        .zip(&two.methods)
        .zip(&deterministic.methods)
    {
        let rmse = |m: &rime::experiment::runner::MethodReport| m.series.column(|s| s.rmse_a);
        assert_eq!(rmse(a), rmse(b), "{}", a.label);
        assert_ne!(
            rmse(a),
            rmse(d),
            "{}: the noise must change the run",
            a.label
        );
        assert_eq!(a.status, Status::Ok, "{}", a.label);
    }
}

#[test]
fn a_million_variable_grid_cycles_in_bounded_memory() {
    // 10^6 variables, ETKF with 20 members, outputs streamed: the peak
    // resident memory of 32 cycles is that of 16 (the ensemble and its
    // transients, not the run's length), and both are printed.
    let dir = scratch("million");
    let file = root().join("experiments/advection2d/million.toml");
    let mut peaks = Vec::new();
    for cycles in ["16", "32"] {
        let out = dir.join(cycles);
        let status = rime_run(&file, &out, &["--cycles", cycles])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&status.stdout);
        assert!(
            status.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&status.stderr)
        );
        println!("{cycles} cycles:\n{stdout}");
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap())
                .unwrap();
        let m = &summary["methods"][0];
        // A global ETKF of 20 members barely constrains 10^6 variables
        // (no localisation): this is a scaling test, not a skill test.
        assert!(m["stopped_at_cycle"].is_null(), "{m}");
        assert!(m["rmse_a"].as_f64().unwrap().is_finite(), "{m}");
        peaks.push(summary["peak_memory_mib"].as_f64().unwrap());
        // Four state fields of 8 MB per cycle, all streamed to disk.
        let size = std::fs::metadata(out.join("etkf.nc")).unwrap().len();
        let cycles: u64 = cycles.parse().unwrap();
        assert!(size > cycles * 4 * 8_000_000, "etkf.nc has {size} bytes");
        std::fs::remove_dir_all(&out).unwrap();
    }
    println!(
        "peak resident memory: {:.0} MiB (16 cycles), {:.0} MiB (32 cycles)",
        peaks[0], peaks[1]
    );
    assert!(
        peaks[1] < peaks[0] * 1.05 + 16.0,
        "memory grew with the run's length: {peaks:?} MiB"
    );
    assert!(
        peaks[1] < 2048.0,
        "peak {} MiB for a 160 MB ensemble",
        peaks[1]
    );
}

#[test]
fn a_killed_run_leaves_files_readable_up_to_the_last_flush() {
    let dir = scratch("killed");
    let file = dir.join("long.toml");
    let text = SMALL
        .replace("divergence_rmse = 2.0", "")
        .replace("[[methods]]\nname = \"climatology\"\n", "")
        .replace("cycles = 60", "cycles = 200000")
        + "\n[output]\nflush_every = 7\n";
    std::fs::write(&file, text).unwrap();
    let out = dir.join("out");
    /// Kills the run however the test ends.
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let child = Killed(
        rime_run(&file, &out, &[])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Wait until a few flushes have happened (numrecs, bytes 4..8 of the
    // header, is set by each flush), then kill the run mid-write.
    let partial = out.join("etkf.partial.nc");
    let numrecs = || {
        std::fs::read(&partial)
            .ok()
            .filter(|b| b.len() >= 8)
            .map_or(0, |b| u32::from_be_bytes([b[4], b[5], b[6], b[7]]))
    };
    let start = std::time::Instant::now();
    while numrecs() < 30 {
        assert!(start.elapsed().as_secs() < 120, "no flush within 2 minutes");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    drop(child);
    assert!(
        !out.join("etkf.nc").exists(),
        "an incomplete file must not take the final name"
    );
    for name in [
        "etkf.partial.nc",
        "truth.partial.nc",
        "observations.partial.nc",
    ] {
        let ds = rime::io::read_classic(&out.join(name)).unwrap();
        let records = ds.dim_len("time").unwrap();
        assert!(
            records >= 28 && records.is_multiple_of(7),
            "{name}: {records} records"
        );
        let time = read_f64(&ds, "time");
        assert!(time.iter().all(|t| t.is_finite()), "{name}");
    }
}

#[test]
fn a_first_trial_step_that_leaves_the_attractor_shrinks() {
    // 4D-Var on Lorenz-96 with 80 variables, F = 10, every second variable
    // observed every 2 steps with error std 0.5, window 2, climatological B
    // scaled by 0.1 (from the 950 cycles after burn-in), seed 7: at cycle
    // 153 the first L-BFGS trial step overflows the trajectory (argmin's
    // More-Thuente then stops on "NaN or Inf encountered"), and on shorter
    // runs other minimisations hit the iteration cap or a non-descent
    // direction. The line search must be restarted with a shorter step,
    // and a capped minimisation must use its best iterate, not end the
    // method.
    let text = r#"
[model]
name = "lorenz96"
size = 80
forcing = 10.0
[observations]
operator = "every"
stride = 2
error_std = 0.5
every = 2
[run]
cycles = 1000
burn_in = 50
seed = 7
[initial]
mean = [1.0]
std = 0.031622776601683794
[[methods]]
name = "var4d"
window = 2
background_scale = 0.1
background_covariance = "climatology"
[[methods]]
name = "climatology"
"#;
    let config = ExperimentConfig::from_toml(text, Path::new("var4d80.toml")).unwrap();
    let report = run(&config, &RunOptions::default()).unwrap();
    let m = &report.methods[0];
    // Every cycle runs; a few minimisations may end at the iteration cap
    // (status `not_converged`, their best iterate used).
    assert!(
        matches!(m.status, Status::Ok | Status::NotConverged { .. }),
        "{:?}",
        m.status
    );
    let at = m.minimisations.iter().find(|r| r.cycle == 153).unwrap();
    assert!(at.last.cost < at.cost_initial, "{at:?}");
    assert!(m.minimisations.iter().all(|r| r.last.cost < r.cost_initial));
    // Still far better than climatology (the spin-up from a poor first
    // guess is in the average).
    let clim = report.methods[1].summary.rmse_a.unwrap();
    assert!(
        m.summary.rmse_a.unwrap() < 0.5 * clim,
        "{:?} vs {clim}",
        m.summary
    );
}

#[test]
fn labels_are_names_not_paths_and_a_rename_changes_nothing() {
    for (label, why) in [
        ("../../escaped", "'/'"),
        ("/abs/path", "'/'"),
        ("", "empty"),
        (".hidden", "dot"),
        ("truth", "reserved"),
        ("a b", "' '"),
    ] {
        let text = SMALL.replace(
            "name = \"etkf\"",
            &format!("name = \"etkf\"\nlabel = {label:?}"),
        );
        let e = ExperimentConfig::from_toml(&text, Path::new("labels.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("labels.toml") && e.contains("methods[1].label") && e.contains(why),
            "{label:?}: {e}"
        );
    }
    // The random streams are keyed by the settings, not the label.
    let base = SMALL.replace("divergence_rmse = 2.0", "");
    let renamed = base.replace("name = \"etkf\"", "name = \"etkf\"\nlabel = \"my-etkf.v2\"");
    let scores = |text: &str| {
        let config = ExperimentConfig::from_toml(text, Path::new("r.toml")).unwrap();
        run(&config, &RunOptions::default()).unwrap().methods[1]
            .series
            .column(|s| s.rmse_a)
    };
    assert_eq!(scores(&base), scores(&renamed));
}

#[test]
fn bad_overrides_and_unwritable_outputs_fail_before_computing() {
    let dir = scratch("early");
    let file = dir.join("small.toml");
    std::fs::write(&file, SMALL.replace("cycles = 60", "cycles = 100000000")).unwrap();
    let started = std::time::Instant::now();
    // --cycles 0.
    let out = rime_run(&file, &dir.join("out"), &["--cycles", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--cycles") && stderr.contains("at least 1"),
        "{stderr}"
    );
    // An output "folder" that is a file: the run of 10^8 cycles must fail
    // at once, not after computing.
    let blocker = dir.join("not-a-dir");
    std::fs::write(&blocker, "x").unwrap();
    let out = rime_run(&file, &blocker, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not-a-dir"), "{stderr}");
    // NetCDF-4 without the feature: refused before the run.
    if !cfg!(feature = "netcdf") {
        let out = rime_run(&file, &dir.join("out-nc4"), &["--format", "netcdf4"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--features netcdf"), "{stderr}");
    }
    assert!(started.elapsed().as_secs() < 30, "the errors came late");
    // --check-expected fails on a stopped method even without [expected].
    let out = rime_run(
        &file,
        &dir.join("out2"),
        &["--cycles", "30", "--check-expected"],
    )
    .output()
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs the CLI on `text` written to `dir/name.toml`; returns exit code,
/// stdout and stderr.
fn cli(dir: &Path, name: &str, text: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(&file, text).unwrap();
    let out = rime_run(&file, &dir.join(format!("out-{name}")), args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_values_are_named_before_any_computing() {
    let dir = scratch("bad-values");
    let base = SMALL.replace("divergence_rmse = 2.0", "");
    for (name, text, words) in [
        (
            "nan_forcing",
            base.replace("name = \"lorenz96\"", "name = \"lorenz96\"\nforcing = nan"),
            vec!["forcing", "finite"],
        ),
        (
            "inf_forcing",
            base.replace("name = \"lorenz96\"", "name = \"lorenz96\"\nforcing = inf"),
            vec!["forcing", "finite"],
        ),
        (
            "nan_mean",
            base.replace("mean = [1.0]", "mean = [1.0, nan]"),
            vec!["initial.mean", "value 1", "NaN"],
        ),
        (
            "huge_dt",
            base.replace("name = \"lorenz96\"", "name = \"lorenz96\"\ndt = 10.0"),
            vec!["blew up at cycle", "dt = 10"],
        ),
        (
            "tiny_error",
            base.replace("error_std = 1.0", "error_std = 1e-300"),
            vec!["observations.error_std", "underflow"],
        ),
        (
            "unknown_error_field",
            base.replace("error_std = 1.0", "error_std = { z = 1.0 }"),
            vec!["observations.error_std.z", "no field `z`"],
        ),
        (
            "negative_length_scale",
            base.replace("[initial]\n", "[initial]\nlength_scale = -1.0\n"),
            vec!["initial.length_scale", "positive"],
        ),
        (
            "unknown_truth_std_field",
            base.replace("[initial]\n", "[initial]\ntruth_std = { q = 1.0 }\n"),
            vec!["initial.truth_std.q", "no field `q`"],
        ),
        (
            "deflation",
            base.replace("inflation = 1.05", "inflation = 0.5"),
            vec!["methods[1].inflation", "at least 1"],
        ),
        (
            "duplicates",
            base.replace(
                "operator = \"every\"\nstride = 2",
                "operator = \"partial\"\nindices = [0, 3, 3]",
            ),
            vec!["observations.indices", "index 3 is listed twice"],
        ),
        (
            "size_as_text",
            base.replace("size = 40", "size = \"40\""),
            vec!["key `size`", "expected usize"],
        ),
        (
            "no_size",
            base.replace("size = 40\n", ""),
            vec!["missing field `size`"],
        ),
        (
            "inflation_as_text",
            base.replace("inflation = 1.05", "inflation = \"1.05\""),
            vec!["methods[1].inflation", "expected f64"],
        ),
        (
            "too_big",
            base.replace(
                "name = \"lorenz96\"\nsize = 40",
                "name = \"advection2d\"\nnx = 512\nny = 512",
            )
            .replace(
                "[[methods]]\nname = \"climatology\"",
                "[[methods]]\nname = \"oi\"",
            ),
            vec!["GiB", "262144 x 262144"],
        ),
    ] {
        let started = std::time::Instant::now();
        let (code, _, stderr) = cli(&dir, name, &text, &[]);
        assert_eq!(code, Some(2), "{name}: {stderr}");
        for w in words {
            assert!(stderr.contains(w), "{name}: `{w}` not in: {stderr}");
        }
        assert!(stderr.contains(&format!("{name}.toml")), "{name}: {stderr}");
        assert!(
            started.elapsed().as_secs() < 20,
            "{name}: the error came late"
        );
    }
    // A file that does not exist: its reason once, not twice.
    let out = Command::new(env!("CARGO_BIN_EXE_rime"))
        .args(["run", dir.join("missing.toml").to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("No such file").count(), 1, "{stderr}");
}

#[test]
fn statuses_tell_the_truth() {
    let dir = scratch("statuses");
    // An ETKF of 2 members without inflation on Lorenz-96 runs every cycle
    // but does worse than climatology.
    let text = SMALL
        .replace("divergence_rmse = 2.0", "")
        .replace("cycles = 60", "cycles = 300")
        .replace(
            "ensemble_size = 20\ninflation = 1.05",
            "ensemble_size = 2\ninflation = 1.0",
        );
    let (code, stdout, stderr) = cli(&dir, "n2", &text, &["--check-expected"]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("out-n2/summary.json")).unwrap())
            .unwrap();
    let m = &summary["methods"][1];
    assert_eq!(m["status"], "worse_than_climatology", "{m}");
    assert!(m["stopped_at_cycle"].is_null());
    assert!(stdout.contains("worse than climatology"), "{stdout}");
    assert_eq!(
        summary["methods"][0]["status"], "ok",
        "climatology is its own reference"
    );
    // One cycle: nothing diverges, and the shortened burn-in is announced.
    let (code, stdout, stderr) = cli(
        &dir,
        "one",
        &SMALL.replace("divergence_rmse = 2.0", ""),
        &["--cycles", "1"],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stdout.contains("diverged"), "{stdout}");
    assert!(stderr.contains("burn-in is shortened to 0"), "{stderr}");
}

#[test]
fn a_second_run_into_a_busy_folder_is_refused_and_a_killed_one_cleaned_up() {
    let dir = scratch("busy");
    let file = dir.join("long.toml");
    std::fs::write(
        &file,
        SMALL
            .replace("divergence_rmse = 2.0", "")
            .replace("cycles = 60", "cycles = 200000")
            + "\n[output]\nflush_every = 5\n",
    )
    .unwrap();
    let out = dir.join("out");
    let mut first = rime_run(&file, &out, &[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !out.join("etkf.partial.nc").exists() {
        assert!(
            start.elapsed().as_secs() < 60,
            "the first run did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let second = rime_run(&file, &out, &["--cycles", "10"]).output().unwrap();
    let _ = first.kill();
    let _ = first.wait();
    assert_eq!(second.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("another rime command"), "{stderr}");
    // The first run was killed: its lock is stale, its partial files are
    // removed by the next run, which says so and lists only its own files.
    let third = rime_run(&file, &out, &["--cycles", "10"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&third.stderr);
    assert!(third.status.success(), "{stderr}");
    assert!(stderr.contains("etkf.partial.nc"), "{stderr}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let mut files: Vec<&str> = summary["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    files.sort();
    assert_eq!(
        files,
        ["climatology.nc", "etkf.nc", "observations.nc", "truth.nc"]
    );
    let left: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != rime::io::folder::MANIFEST)
        .filter(|n| n.starts_with('.') || n.contains("partial"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_write_error_is_reported_in_words_and_loses_no_earlier_data() {
    // A file-size limit makes writes fail as a full disk would (EFBIG
    // instead of ENOSPC), with SIGXFSZ ignored so the error reaches rime.
    let dir = scratch("full");
    let file = dir.join("small.toml");
    std::fs::write(
        &file,
        SMALL
            .replace("divergence_rmse = 2.0", "")
            .replace("cycles = 60", "cycles = 5000")
            + "\n[output]\nflush_every = 10\n",
    )
    .unwrap();
    let out = dir.join("out");
    // An earlier complete run's files must survive the failed one.
    let ok = rime_run(&file, &out, &["--cycles", "20"]).output().unwrap();
    assert!(ok.status.success());
    let before = std::fs::read(out.join("etkf.nc")).unwrap();
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -f 256; exec '{}' run '{}' --out '{}'",
            env!("CARGO_BIN_EXE_rime"),
            file.display(),
            out.display()
        ))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&status.stderr);
    assert_eq!(status.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("File too large"), "{stderr}");
    assert!(stderr.contains("partial.nc"), "names the file: {stderr}");
    assert!(!stderr.contains("IOErrorKind"), "{stderr}");
    assert_eq!(std::fs::read(out.join("etkf.nc")).unwrap(), before);
    assert!(!out.join(".rime.lock").exists());
}

/// Issue 11 from the command line: `rime simulate` writes Lorenz-96
/// trajectories, `rime train` trains a small emulator on them, a run stopped
/// after 12 epochs and resumed to 30 ends with the weights of an
/// uninterrupted 30-epoch run (bit for bit), and the checkpoint, named
/// relative to an experiment file, is the forecast model of an ETKF twin.
#[test]
fn an_emulator_is_simulated_trained_resumed_and_cycled_from_the_command_line() {
    let dir = scratch("emulator");
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let rime = |args: &[&std::ffi::OsStr]| {
        let out = Command::new(env!("CARGO_BIN_EXE_rime"))
            .args(args)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "rime {args:?}:\n{text}");
        text
    };
    let sim = write(
        "sim.toml",
        "[model]\nname = \"lorenz96\"\nsize = 40\n[initial]\nmean = 8.0\nstd = 1.0\n\
         [simulate]\ntrajectories = 4\nrecords = 500\nspinup_steps = 300\nseed = 5\n",
    );
    let data = dir.join("data/l96.nc");
    let text = rime(&[
        "simulate".as_ref(),
        sim.as_os_str(),
        "--out".as_ref(),
        data.as_os_str(),
    ]);
    assert!(
        text.contains("4 trajectories x 500 records of 40 variables"),
        "{text}"
    );
    let training = |epochs: usize| {
        format!(
            "[data]\nfile = \"data/l96.nc\"\n[network]\nkind = \"cnn1d\"\nchannels = 8\nlayers = 3\n\
             [training]\nepochs = {epochs}\nbatch_size = 32\nlearning_rate = 3e-3\n\
             learning_rate_final = 1e-4\nrollout = 2\nseed = 9\n"
        )
    };
    let six = write("train.toml", &training(30));
    let whole = dir.join("whole");
    let split = dir.join("split");
    let text = rime(&[
        "train".as_ref(),
        six.as_os_str(),
        "--out".as_ref(),
        whole.as_os_str(),
    ]);
    assert!(
        text.contains("samples per second") && text.contains("best epoch"),
        "{text}"
    );
    rime(&[
        "train".as_ref(),
        six.as_os_str(),
        "--out".as_ref(),
        split.as_os_str(),
        "--until-epoch".as_ref(),
        "12".as_ref(),
    ]);
    rime(&[
        "train".as_ref(),
        six.as_os_str(),
        "--out".as_ref(),
        split.as_os_str(),
        "--resume".as_ref(),
    ]);
    let a = rime::learned::Checkpoint::load(&whole.join("last.ckpt")).unwrap();
    let b = rime::learned::Checkpoint::load(&split.join("last.ckpt")).unwrap();
    assert_eq!(a.header.training.epoch, 30);
    assert_eq!(b.header.training.epoch, 30);
    // The weights' values (the files also hold parameter ids, which differ).
    let device = rime::device::cpu_f64();
    let forecast = |c: &rime::learned::Checkpoint| {
        use rime::core::Model;
        let e = rime::learned::Emulator::new(c, &device).unwrap();
        let x0: Vec<f64> = (0..80)
            .map(|i| 8.0 + 4.0 * (0.37 * i as f64).sin())
            .collect();
        rime::device::to_vec(e.forecast(
            rime::device::tensor_from_rows(&x0, 2, 40, &device),
            0.0,
            3,
        ))
    };
    assert_eq!(
        forecast(&a),
        forecast(&b),
        "a resumed run differs from an uninterrupted one"
    );
    let losses = |c: &rime::learned::Checkpoint| -> Vec<(f64, f64)> {
        let h = &c.header.training.history;
        h.iter()
            .map(|r| (r.train_loss, r.validation_loss))
            .collect()
    };
    assert_eq!(losses(&a), losses(&b));
    assert_eq!(a.header.training.history.len(), 30);
    for f in [
        "training.csv",
        "training.nc",
        "training.png",
        "emulator.ckpt",
    ] {
        assert!(whole.join(f).exists(), "{f}");
    }

    // The emulator drives an ETKF twin (truth: the physical model).
    let twin = write(
        "twin.toml",
        "[model]\nname = \"lorenz96\"\nsize = 40\n\
         [forecast_model]\nname = \"emulator\"\ncheckpoint = \"whole/emulator.ckpt\"\n\
         [observations]\noperator = \"identity\"\nerror_std = 1.0\nsteps_per_cycle = 1\n\
         [run]\ncycles = 300\nburn_in = 100\nseed = 1\n\
         [initial]\nmean = 8.0\nstd = 1.0\n\
         [[methods]]\nname = \"etkf\"\nensemble_size = 20\ninflation = 1.1\n",
    );
    let config = ExperimentConfig::from_file(&twin).unwrap();
    let report = run(&config, &RunOptions::default()).unwrap();
    let m = &report.methods[0];
    assert_eq!(m.status, Status::Ok);
    let rmse = m.summary.rmse_a.unwrap();
    println!("ETKF with the emulator: analysis RMSE {rmse:.3}");
    assert!(rmse < 0.5, "analysis RMSE {rmse} (observation error 1)");
    // A truth whose steps do not divide the network's: the error names the
    // checkpoint (the emulator has no `dt` key to blame; issue 31).
    let text = std::fs::read_to_string(&twin).unwrap().replacen(
        "size = 40\n",
        "size = 40\ndt = 0.03\n",
        1,
    );
    let bad = write("twin_dt.toml", &text);
    let config = ExperimentConfig::from_file(&bad).unwrap();
    let e = run(&config, &RunOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("forecast_model.checkpoint"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A sea-ice twin file shrunk for the test suite: the same 384 km domain
/// at 32 km (12 x 12 cells, which keeps the mEVP iteration's tangent
/// linear stable: see the file), 40 sub-iterations, 24 observations per
/// cycle, a one-window run of 4 cycles, 8 L-BFGS iterations.
fn small_sea_ice_twin(file: &str, extra: &[(&str, &str)]) -> ExperimentConfig {
    let path = root().join(file);
    let mut text = std::fs::read_to_string(&path).unwrap();
    let mut edits = vec![
        ("nx = 24", "nx = 12"),
        ("dx = 16000.0", "dx = 32000.0"),
        ("iterations = 100", "iterations = 40"),
        ("window = 8", "window = 4"),
        ("shift = 8", "shift = 4"),
        ("max_iterations = 25", "max_iterations = 8"),
    ];
    edits.extend_from_slice(extra);
    for (from, to) in edits {
        assert!(text.contains(from), "{file} has no `{from}`");
        text = text.replace(from, to);
    }
    let mut config = ExperimentConfig::from_toml(&text, &path).unwrap();
    config.output.states = false;
    config
}

fn field(m: &rime::experiment::runner::MethodReport, name: &str) -> (f64, f64, f64) {
    let f = m
        .summary
        .fields
        .iter()
        .find(|f| f.field == name)
        .unwrap_or_else(|| panic!("{}: no scores for field {name}", m.label));
    (f.rmse_f.unwrap(), f.rmse_a.unwrap(), f.rmse_a_last.unwrap())
}

/// Issue 8, point 8 (a): 4D-Var through the mEVP rheology (checkpointed
/// gradients, B as a sparse correlated operator on the thickness only)
/// reduces the thickness error of its window's end below the free run's,
/// from sparse thickness and concentration tracks; the per-field scores
/// reach summary and NetCDF.
#[test]
fn sea_ice_4dvar_recovers_the_initial_thickness() {
    let mut config = small_sea_ice_twin(
        "experiments/sea_ice/twin_thickness.toml",
        &[
            ("cycles = 16", "cycles = 4"),
            ("width = 32000.0", "width = 64000.0"),
        ],
    );
    config.methods.retain(|m| m.label != "letkf");
    config.output.states = true;
    let dir = scratch("sea-ice-4dvar");
    let report = run(&config, &to(&dir)).unwrap();
    print!("{}", output::table(&report));
    let by = |l: &str| report.methods.iter().find(|m| m.label == l).unwrap();
    let (free, var) = (by("free"), by("var4d"));
    let (hf_f, hf_a, hf_last) = field(free, "h");
    // The free run is never analysed.
    assert_eq!(hf_f, hf_a);
    let (_, _, hv_last) = field(var, "h");
    assert!(
        hv_last < 0.75 * hf_last,
        "4D-Var thickness error {hv_last:.4} m vs free run {hf_last:.4} m"
    );
    // Background error of the draw: std 0.3 m.
    assert!((0.15..0.45).contains(&hf_last), "{hf_last}");
    assert_eq!(var.minimisations.len(), 1);
    assert!(var.minimisations[0].last.cost < 0.5 * var.minimisations[0].cost_initial);
    // Per-field series in the NetCDF file, in the field's units.
    let ds = rime::io::read_classic(&dir.join("var4d.nc")).unwrap();
    let h = read_f64(&ds, "rmse_a_h");
    assert_eq!(h.len(), 4);
    assert!((h[3] - hv_last).abs() < 1e-12);
    assert!(read_f64(&ds, "rmse_f_sxy").iter().all(|v| v.is_finite()));
    // Maps of the run: truth, and each method's analysis and error.
    let maps =
        rime::experiment::maps::draw_run_maps(&dir, Some("h"), None, &dir.join("maps"), false)
            .unwrap();
    let names: Vec<String> = maps
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "truth_h",
            "free_h",
            "free_h_error",
            "var4d_h",
            "var4d_h_error"
        ]
    );
    for p in &maps {
        assert_eq!(&std::fs::read(p).unwrap()[1..4], b"PNG");
    }
    let e = rime::experiment::maps::draw_run_maps(&dir, Some("zz"), None, &dir.join("maps"), false)
        .unwrap_err();
    assert!(e.to_string().contains("truth_zz"), "{e}");
}

/// Issue 8, point 8 (b): the LETKF with correlated initial perturbations
/// beats the free run on the thickness.
#[test]
fn sea_ice_letkf_beats_the_free_run() {
    let mut config = small_sea_ice_twin(
        "experiments/sea_ice/twin_thickness.toml",
        &[
            ("ensemble_size = 20", "ensemble_size = 10"),
            (
                "localisation_radius = 40000.0",
                "localisation_radius = 64000.0",
            ),
            ("width = 32000.0", "width = 64000.0"),
        ],
    );
    config.methods.retain(|m| m.label != "var4d");
    let report = run(&config, &RunOptions::default()).unwrap();
    print!("{}", output::table(&report));
    let by = |l: &str| report.methods.iter().find(|m| m.label == l).unwrap();
    let (_, free_a, free_last) = field(by("free"), "h");
    let (_, letkf_a, letkf_last) = field(by("letkf"), "h");
    assert!(letkf_a < 0.9 * free_a, "{letkf_a} vs {free_a}");
    assert!(letkf_last < 0.6 * free_last, "{letkf_last} vs {free_last}");
}

/// Issue 8, point 8 (c): P* and C_o, 50 % off in the forecast model, are
/// corrected with the state by 4D-Var from drift observations; the truth
/// keeps its model's parameters (`truth_std`), so the free run's
/// parameter errors are exactly the 50 %.
#[test]
fn sea_ice_4dvar_corrects_the_ice_strength_and_ocean_drag() {
    let config = small_sea_ice_twin(
        "experiments/sea_ice/twin_parameters.toml",
        &[("cycles = 24", "cycles = 4"), ("count = 64", "count = 24")],
    );
    let report = run(&config, &RunOptions::default()).unwrap();
    print!("{}", output::table(&report));
    let by = |l: &str| report.methods.iter().find(|m| m.label == l).unwrap();
    let (free, var) = (by("free"), by("var4d"));
    assert!((field(free, "p_star").2 - 13750.0).abs() < 1e-9);
    assert!((field(free, "c_ocean").2 - 2.75e-3).abs() < 1e-15);
    let p = field(var, "p_star").2;
    let c = field(var, "c_ocean").2;
    assert!(p < 0.5 * 13750.0, "P* error {p} Pa");
    assert!(c < 2.75e-3, "C_o error {c}");
    // Drift is fitted better than by the free run.
    assert!(field(var, "u").2 < field(free, "u").2);
    // The parameter error at the window's end is in the report's table.
    assert_eq!(var.window_fields.len(), 1);
    assert_eq!(var.window_fields[0].0, 3);
    let table = output::table(&report);
    assert!(
        table.contains("end of each variational window") && table.contains("| 3 | var4d |"),
        "{table}"
    );
}

/// A coupled twin file shrunk for a test (8 x 8 cells at 48 km, 10 air
/// levels, one 4-cycle window, 8 L-BFGS iterations).
fn small_coupled_twin(file: &str) -> ExperimentConfig {
    let path = root().join(file);
    let mut text = std::fs::read_to_string(&path).unwrap();
    for (from, to) in [
        ("nx = 16", "nx = 8"),
        ("dx = 24000.0", "dx = 48000.0"),
        ("iterations = 100", "iterations = 40"),
        ("levels = 16", "levels = 10"),
        ("bottom_thickness = 10.0", "bottom_thickness = 20.0"),
        ("window = 8", "window = 4"),
        ("shift = 8", "shift = 4"),
        ("max_iterations = 25", "max_iterations = 8"),
        ("cycles = 16", "cycles = 4"),
        ("width = 48000.0", "width = 96000.0"),
    ] {
        assert!(text.contains(from), "{file} has no `{from}`");
        text = text.replace(from, to);
    }
    ExperimentConfig::from_toml(&text, &path).unwrap()
}

/// Issue 9, point 5 (a), shortened (8 x 8 cells at 48 km, 10 air levels, one
/// 4-cycle window, 8 L-BFGS iterations): 4D-Var through the coupled ice and
/// boundary layer cuts the thickness error at the window's end below the
/// free run's from ice observations only, with per-field scores for the
/// air; forecast with the prescribed wind (`ice_forcing = "wind"`) against
/// the same truth, the ice drifts wrongly.
#[test]
fn coupled_ice_atmosphere_4dvar_recovers_the_thickness() {
    let shrink = small_coupled_twin;
    let coupled = run(
        &shrink("experiments/sea_ice/twin_coupled.toml"),
        &RunOptions::default(),
    )
    .unwrap();
    print!("{}", output::table(&coupled));
    let by = |r: &rime::experiment::runner::Report, l: &str| {
        r.methods.iter().find(|m| m.label == l).unwrap().clone()
    };
    let (_, _, free_last) = field(&by(&coupled, "free"), "h");
    let (_, _, var_last) = field(&by(&coupled, "var4d"), "h");
    assert!(
        var_last < 0.75 * free_last,
        "coupled 4D-Var {var_last:.4} m vs free run {free_last:.4} m"
    );
    let (_, theta, _) = field(&by(&coupled, "var4d"), "air_theta");
    assert!(theta.is_finite() && theta > 0.0);
    let wind = run(
        &shrink("experiments/sea_ice/twin_coupled_wind.toml"),
        &RunOptions::default(),
    )
    .unwrap();
    print!("{}", output::table(&wind));
    // Against the same truth, the ice moved by the prescribed wind drifts
    // wrongly: its free run's drift error is several times the coupled one's.
    let (_, drift_wind, _) = field(&by(&wind, "free"), "u");
    let (_, drift_coupled, _) = field(&by(&coupled, "free"), "u");
    assert!(
        drift_wind > 2.0 * drift_coupled,
        "{drift_wind} vs {drift_coupled} m/s"
    );
}

/// Issue 9, point 5 (b), shortened as above: the roughness length of the
/// ice, 50 % too large in the forecast model, is corrected with the state
/// by 4D-Var through the coupled model from the ice's thickness,
/// concentration and drift.
#[test]
fn coupled_4dvar_corrects_the_roughness_of_the_ice() {
    let config = small_coupled_twin("experiments/sea_ice/twin_coupled_roughness.toml");
    let report = run(&config, &RunOptions::default()).unwrap();
    print!("{}", output::table(&report));
    let by = |l: &str| report.methods.iter().find(|m| m.label == l).unwrap();
    let (_, _, free) = field(by("free"), "ice_roughness");
    assert!(
        (free - 5e-4).abs() < 1e-12,
        "the free run keeps its 50 % error: {free}"
    );
    let (_, _, var) = field(by("var4d"), "ice_roughness");
    // Measured 0.76 of the free run's error after one window of 8 iterations.
    assert!(var < 0.85 * free, "roughness error {var} m vs {free} m");
}

/// Issue 31, point 1: a run never deletes or overwrites a file it did not
/// write: another program's `*.partial.nc` and the user's files survive,
/// a foreign file in the way (or a NetCDF file that would be taken for the
/// run's) is refused before any computing, and `--overwrite` replaces only
/// what the run writes.
#[test]
fn a_run_never_deletes_or_overwrites_files_it_did_not_write() {
    let dir = scratch("foreign");
    let file = dir.join("small.toml");
    std::fs::write(&file, SMALL).unwrap();
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("sim.partial.nc"), b"theirs").unwrap();
    std::fs::write(out.join("notes.txt"), b"mine").unwrap();
    let ok = rime_run(&file, &out, &["--cycles", "20"]).output().unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(
        std::fs::read(out.join("sim.partial.nc")).unwrap(),
        b"theirs"
    );
    assert_eq!(std::fs::read(out.join("notes.txt")).unwrap(), b"mine");

    // A file the run would write, which no rime command wrote.
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("etkf.nc"), b"mine").unwrap();
    let refused = rime_run(&file, &other, &["--cycles", "20"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("etkf.nc") && stderr.contains("--overwrite"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(other.join("etkf.nc")).unwrap(), b"mine");
    assert!(!other.join("truth.nc").exists() && !other.join("truth.partial.nc").exists());
    // A NetCDF file this run would not write but that would sit beside
    // its outputs (an older method's file from before manifests).
    std::fs::remove_file(other.join("etkf.nc")).unwrap();
    std::fs::write(other.join("letkf.nc"), b"old").unwrap();
    let refused = rime_run(&file, &other, &["--cycles", "20"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("letkf.nc"), "{stderr}");
    let forced = rime_run(&file, &other, &["--cycles", "20", "--overwrite"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&forced.stderr);
    assert!(forced.status.success(), "{stderr}");
    assert!(
        stderr.contains("letkf.nc"),
        "the note names the file left: {stderr}"
    );
    assert_eq!(std::fs::read(other.join("letkf.nc")).unwrap(), b"old");
    assert!(other.join("etkf.nc").exists());
}

/// Issue 31, point 2: a rerun with fewer methods removes the earlier run's
/// method file (recorded in the folder's manifest) instead of leaving it
/// beside the new truth, and `rime map` draws only the run's methods.
#[test]
fn a_rerun_removes_its_earlier_methods_and_maps_only_its_own() {
    let dir = scratch("rerun");
    let file = dir.join("small.toml");
    // No divergence limit: climatology runs every cycle, so its whole
    // run is drawn.
    let small = SMALL.replace("divergence_rmse = 2.0", "");
    std::fs::write(&file, &small).unwrap();
    let out = dir.join("out");
    let first = rime_run(&file, &out, &["--cycles", "20"]).output().unwrap();
    assert!(first.status.success());
    assert!(out.join("etkf.nc").exists());
    let fewer = small.split("[[methods]]\nname = \"etkf\"").next().unwrap();
    std::fs::write(&file, fewer).unwrap();
    let second = rime_run(&file, &out, &["--cycles", "20"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(second.status.success(), "{stderr}");
    assert!(stderr.contains("etkf.nc"), "{stderr}");
    assert!(!out.join("etkf.nc").exists());
    // Lorenz-96 has one 1-D field: `rime map` of the folder needs no
    // --field and draws time-space diagrams of the truth and the method.
    let maps = dir.join("maps");
    let drawn = Command::new(env!("CARGO_BIN_EXE_rime"))
        .arg("map")
        .arg(&out)
        .arg("--out")
        .arg(&maps)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&drawn.stderr);
    assert!(drawn.status.success(), "{stderr}");
    let mut names: Vec<String> = std::fs::read_dir(&maps)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".png"))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "climatology_x.png",
            "climatology_x_error.png",
            "truth_x.png"
        ]
    );
    for n in &names {
        assert_eq!(&std::fs::read(maps.join(n)).unwrap()[1..4], b"PNG");
    }
}

/// Issue 31, point 4: degenerate settings are refused before any computing,
/// each naming its key: a window or lag as long as the run, f32 asked of
/// the f64 host path, and correlated errors that make R nearly singular.
#[test]
fn degenerate_settings_are_refused_with_their_key() {
    let dir = scratch("degenerate");
    let methods = |m: &str| SMALL.split("[[methods]]").next().unwrap().to_string() + m;
    for (name, text, key) in [
        (
            "window",
            methods("[[methods]]\nname = \"var4d\"\nwindow = 1000\n"),
            "methods[0].window",
        ),
        (
            "lag",
            methods("[[methods]]\nname = \"ienks\"\nensemble_size = 10\nlag = 1000\n"),
            "methods[0].lag",
        ),
        (
            "precision",
            SMALL.replace("seed = 5", "seed = 5\nprecision = \"f32\""),
            "run.precision",
        ),
        (
            "singular-r",
            SMALL.replace(
                "error_std = 1.0",
                "error_std = 1.0\nerror_correlation_length = 1e6",
            ),
            "observations.error_correlation_length",
        ),
        (
            "huge",
            SMALL.replace("size = 40", "size = 1000000000000"),
            "`size`",
        ),
        (
            "swath-1d",
            SMALL.replace(
                "operator = \"every\"\nstride = 2",
                "operator = \"swath\"\nswath = { width = 4.0 }",
            ),
            "observations.operator",
        ),
    ] {
        let (code, stdout, stderr) = cli(&dir, name, &text, &[]);
        assert_eq!(code, Some(2), "{name}: {stdout}{stderr}");
        assert!(stderr.contains(key), "{name}: {stderr}");
        assert!(
            !dir.join(format!("out-{name}")).exists(),
            "{name}: no output"
        );
    }
    // Lorenz-96 of 10^8 variables fits as a model but not with an
    // ensemble of 20 (about 96 GiB): refused from the sizes alone, before
    // any model allocates (it used to reach 5 GB first).
    // Under a 4 GiB address-space limit an allocation of the state would
    // abort instead of this error.
    if rime::experiment::runner::machine_memory().is_some_and(|m| m < 90 << 30) {
        let file = dir.join("large.toml");
        std::fs::write(&file, SMALL.replace("size = 40", "size = 100000000")).unwrap();
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ulimit -v 4194304; exec '{}' check '{}'",
                env!("CARGO_BIN_EXE_rime"),
                file.display()
            ))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("the run needs about"), "{stderr}");
    }
    // Absurdly many cycles: refused from the estimate of memory or disk
    // before anything is written.
    let (code, _, stderr) = cli(&dir, "long", SMALL, &["--cycles", "99999999999999"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("GiB"), "{stderr}");
    let written: Vec<_> = std::fs::read_dir(dir.join("out-long"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".nc"))
        .collect();
    assert!(written.is_empty(), "{written:?}");
    let ok = SMALL.replace("[[methods]]\nname = \"climatology\"\n", "");
    let (code, _, stderr) = cli(&dir, "long-etkf", &ok, &["--cycles", "99999999999999"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("run.cycles") && stderr.contains("free"),
        "{stderr}"
    );
    // The host path off, f32 is what the forecasts run in: accepted.
    let text = SMALL.replace(
        "seed = 5",
        "seed = 5\nprecision = \"f32\"\nhost_fast_path = false",
    );
    let (code, _, stderr) = cli(&dir, "f32", &text, &["--cycles", "5"]);
    assert_eq!(code, Some(0), "{stderr}");
    // A moderate correlation length is accepted.
    let text = SMALL.replace(
        "error_std = 1.0",
        "error_std = 1.0\nerror_correlation_length = 1.0",
    );
    let (code, _, stderr) = cli(&dir, "short-r", &text, &["--cycles", "5"]);
    assert_eq!(code, Some(0), "{stderr}");
}

/// Issue 31, point 7: a QG experiment without a spun-up sample is told, at
/// `rime check`, that the model starts from rest; with one, nothing is said.
#[test]
fn a_qg_user_is_told_the_model_needs_a_spun_up_start() {
    let dir = scratch("qg-hint");
    let text = "[model]\nname = \"qg\"\nsize = 65\n\
                [observations]\noperator = \"every\"\nstride = 10\nerror_std = 1.0\n\
                [run]\ncycles = 10\nburn_in = 2\nseed = 1\n\
                [initial]\nmean = 0.0\nstd = 1.0\n\
                [[methods]]\nname = \"etkf\"\nensemble_size = 10\n";
    let check = |name: &str, text: &str| {
        let file = dir.join(name);
        std::fs::write(&file, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_rime"))
            .arg("check")
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let stderr = check("rest.toml", text);
    assert!(
        stderr.contains("spin up") && stderr.contains("[initial.sample]"),
        "{stderr}"
    );
    let sampled = text.replace(
        "[[methods]]",
        "[initial.sample]\nspinup_cycles = 2\ncount = 10\nspacing = 1\n[[methods]]",
    );
    let stderr = check("sampled.toml", &sampled);
    assert!(!stderr.contains("spin up"), "{stderr}");
}

/// Issue 31, point 7: `rime map` works on every twin folder; Lorenz-63's
/// point fields are drawn as time series of the truth and the analyses,
/// and their errors.
#[test]
fn a_lorenz63_twin_folder_is_mapped_as_time_series() {
    let dir = scratch("map-l63");
    let file = dir.join("l63.toml");
    std::fs::write(
        &file,
        "[model]\nname = \"lorenz63\"\n\
         [observations]\noperator = \"identity\"\nerror_std = 1.0\nsteps_per_cycle = 25\n\
         [run]\ncycles = 40\nburn_in = 10\nseed = 1\n\
         [initial]\nmean = [1.509, -1.531, 25.46]\nstd = 1.0\n\
         [[methods]]\nname = \"etkf\"\nensemble_size = 10\ninflation = 1.02\n",
    )
    .unwrap();
    let out = dir.join("out");
    let ran = rime_run(&file, &out, &[]).output().unwrap();
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    let map = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_rime"))
            .arg("map")
            .arg(&out)
            .args(args)
            .arg("--out")
            .arg(dir.join("maps"))
            .output()
            .unwrap()
    };
    // Three fields: --field is needed, and the error lists them.
    let none = map(&[]);
    let stderr = String::from_utf8_lossy(&none.stderr);
    assert_eq!(none.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--field") && stderr.contains("x, y, z"),
        "{stderr}"
    );
    let drawn = map(&["--field", "z"]);
    assert!(
        drawn.status.success(),
        "{}",
        String::from_utf8_lossy(&drawn.stderr)
    );
    for name in ["z_series.png", "z_error.png"] {
        let bytes = std::fs::read(dir.join("maps").join(name)).unwrap();
        assert_eq!(&bytes[1..4], b"PNG", "{name}");
    }
}

/// Two observation sets in one run: every fourth variable and 15 stations
/// between the grid points (interpolated). Every method sees both, the
/// summary carries each set's innovation statistics, observations.nc
/// tells the sets apart, and an older flat `[observations]` table gives
/// the numbers of the same set written as `[[observations]]`.
#[test]
fn several_observation_sets_are_assimilated_together() {
    let head = SMALL.split("[observations]").next().unwrap();
    let tail = "[run]".to_string() + SMALL.split("[run]").nth(1).unwrap();
    let tail = tail.replace("divergence_rmse = 2.0\n", "")
        + "[[methods]]\nname = \"letkf\"\nensemble_size = 20\ninflation = 1.05\nlocalisation_radius = 4.0\n";
    let grid = "[[observations]]\nname = \"grid\"\nerror_std = 1.0\nnetwork = { kind = \"every\", stride = 4 }\n";
    let buoys = "[[observations]]\nname = \"buoys\"\nerror_std = 0.5\nnetwork = { kind = \"stations\", count = 15 }\noperator = { kind = \"bilinear\" }\n";
    let both = format!("{head}{grid}{buoys}{tail}");
    let config = ExperimentConfig::from_toml(&both, Path::new("sets.toml")).unwrap();
    let dir = scratch("sets");
    let report = run(&config, &to(&dir)).unwrap();
    let alone = ExperimentConfig::from_toml(&format!("{head}{grid}{tail}"), Path::new("grid.toml"))
        .unwrap();
    let alone = run(&alone, &RunOptions::default()).unwrap();
    let clim = report.methods[0].summary.rmse_a.unwrap();
    for (m, g) in report.methods.iter().zip(&alone.methods).skip(1) {
        assert_eq!(m.status, Status::Ok, "{}", m.label);
        let (rmse, rmse_grid) = (m.summary.rmse_a.unwrap(), g.summary.rmse_a.unwrap());
        assert!(
            rmse < 0.5 * clim,
            "{}: {rmse} vs climatology {clim}",
            m.label
        );
        assert!(
            rmse < rmse_grid,
            "{}: the stations add information: {rmse} vs {rmse_grid} with the grid set alone",
            m.label
        );
        let sets = &m.summary.sets;
        assert_eq!(sets.len(), 2, "{}", m.label);
        assert_eq!(
            (sets[0].set.as_str(), sets[1].set.as_str()),
            ("grid", "buoys")
        );
        assert_eq!(sets[0].obs_count, Some(10.0));
        assert_eq!(sets[1].obs_count, Some(15.0));
        for s in sets {
            // Each set's O-B is of the size of its errors plus the
            // background's: larger than sigma, not wildly so.
            let sigma = if s.set == "grid" { 1.0 } else { 0.5 };
            let omb = s.omb_rms.unwrap();
            assert!(
                omb > 0.8 * sigma && omb < 4.0 * sigma,
                "{} {}: {omb}",
                m.label,
                s.set
            );
        }
        assert!(alone.methods[1].summary.sets.is_empty());
    }
    // A verification set (assimilate = false) observing every variable:
    // not assimilated (the same analyses), and its analysis RMSE at its
    // sites is the run's analysis RMSE.
    let check = "[[observations]]\nname = \"everywhere\"\nassimilate = false\nerror_std = 1.0\nnetwork = { kind = \"identity\" }\n";
    let verified = ExperimentConfig::from_toml(
        &format!("{head}{grid}{buoys}{check}{tail}"),
        Path::new("verified.toml"),
    )
    .unwrap();
    let verified = run(&verified, &RunOptions::default()).unwrap();
    for (m, v) in report.methods.iter().zip(&verified.methods) {
        assert_eq!(m.summary.rmse_a, v.summary.rmse_a, "{}", m.label);
        assert_eq!(m.summary.sets.len(), v.summary.sets.len());
        let c = &v.summary.verification;
        assert_eq!(c.len(), 1, "{}", m.label);
        assert_eq!(c[0].obs_count, Some(40.0));
        let (a, b) = (c[0].rmse_a.unwrap(), v.summary.rmse_a.unwrap());
        assert!((a - b).abs() < 1e-9 * b, "{}: {a} vs {b}", m.label);
        let (f, g) = (c[0].rmse_f.unwrap(), v.summary.rmse_f.unwrap());
        assert!((f - g).abs() < 1e-9 * g, "{}: {f} vs {g}", m.label);
    }
    let obs = rime::io::read_classic(&dir.join("observations.nc")).unwrap();
    let set = read_f64(&obs, "obs_set");
    assert_eq!(&set[..25], &[[0.0; 10].as_slice(), &[1.0; 15]].concat()[..]);
    let index = read_f64(&obs, "obs_index");
    assert_eq!(index[0], 0.0);
    assert_eq!(
        index[10], -1.0,
        "interpolated stations read no single index"
    );

    // The older flat table and the set form: the same numbers.
    let old = ExperimentConfig::from_toml(SMALL, Path::new("old.toml")).unwrap();
    let new = SMALL.replace(
        "[observations]\noperator = \"every\"\nstride = 2\nerror_std = 1.0\n",
        "[[observations]]\nerror_std = 1.0\nnetwork = { kind = \"every\", stride = 2 }\n",
    );
    assert_ne!(new, SMALL);
    let new = ExperimentConfig::from_toml(&new, Path::new("new.toml")).unwrap();
    let (a, b) = (
        run(&old, &RunOptions::default()).unwrap(),
        run(&new, &RunOptions::default()).unwrap(),
    );
    for (x, y) in a.methods.iter().zip(&b.methods) {
        assert_eq!(x.summary.rmse_a, y.summary.rmse_a, "{}", x.label);
    }
}

/// Observation sets that do not fit the model are refused before any
/// computing, naming the set and the key.
#[test]
fn observation_sets_that_do_not_fit_are_refused_with_the_key() {
    let head = SMALL.split("[observations]").next().unwrap();
    let tail = "[run]".to_string() + SMALL.split("[run]").nth(1).unwrap();
    let dir = scratch("bad-sets");
    let cases: [(&str, &[&str]); 10] = [
        (
            "[[observations]]\nerror_std = 1.0\nnetwork = { kind = \"identity\" }\n[[observations]]\nerror_std = 1.0\nnetwork = { kind = \"identity\" }\n",
            &["observations[1].name", "named \"identity\""],
        ),
        (
            "[[observations]]\nerror_std = 1.0\nnetwork = { kind = \"points\", x = [3.5, 3.5] }\noperator = { kind = \"bilinear\" }\n",
            &["observations[0].network.x", "listed twice"],
        ),
        (
            "[[observations]]\nerror_std = 1.0\nnetwork = { kind = \"points\", x = [3.5] }\n",
            &["observations[0].operator.kind", "bilinear"],
        ),
        (
            "[[observations]]\nerror_std = 1.0\nnetwork = { kind = \"swath\", width = 3.0 }\n",
            &["observations[0].network.kind", "2-D"],
        ),
        (
            "[[observations]]\nerror_std = 1.0\nnetwork = { kind = \"identity\" }\noperator = { kind = \"block_average\", factor = 3 }\n",
            &["observations[0].operator.factor", "does not divide"],
        ),
        (
            "[[observations]]\nerror_std = 1.0\nnetwork = { kind = \"identity\" }\noperator = { kind = \"nearest\" }\n",
            &[
                "observations[0].operator.kind",
                "unknown operator \"nearest\"",
            ],
        ),
        (
            "[[observations]]\nerror_std = 1.0\nnetwork = { kind = \"random\", count = 5 }\nfields = [\"h\"]\n",
            &["observations[0].fields", "no field `h`"],
        ),
        (
            "[[observations]]\nerror_std = 1.0\nnetwork = { kind = \"identity\" }\ntruth_operator = { kind = \"block_average\", factor = 2 }\n",
            &["observations[0].truth_operator", "other sites"],
        ),
        (
            "[[observations]]\nerror_std = 1.0\nnetwork = { kind = \"identity\" }\n[[observations]]\nname = \"check\"\nassimilate = false\nmissing_fraction = 0.1\nerror_std = 1.0\nnetwork = { kind = \"identity\" }\n",
            &["observations[1].missing_fraction", "verification set"],
        ),
        (
            "[[observations]]\nerror_std = 1.0\nnetwork = { kind = \"identity\" }\noperator = { kind = \"orographic\", quantity = \"temperature\" }\n",
            &["observations[0].fields", "2-D"],
        ),
    ];
    for (i, (sets, expected)) in cases.iter().enumerate() {
        let path = dir.join(format!("bad{i}.toml"));
        std::fs::write(&path, format!("{head}{sets}{tail}")).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_rime"))
            .arg("check")
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "case {i}: {stderr}");
        for e in *expected {
            assert!(stderr.contains(e), "case {i}: `{e}` not in {stderr}");
        }
    }
}
