//! Run outputs: `summary.json`, one NetCDF file per method, and the table
//! printed on the terminal (also written as Markdown by `rime reproduce`).

use std::path::{Path, PathBuf};

use nalgebra::DMatrix;
use serde::Serialize;

use super::config::Expected;
use super::runner::{MethodReport, Report, Status};
use crate::io::{self, AttrValue, Dataset, IoError, NetcdfFormat, VarData, Variable};

/// One entry of `summary.json`. The shape is stable: scripts read it.
#[derive(Serialize)]
struct MethodSummary<'a> {
    label: &'a str,
    name: &'a str,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    diverged_at_cycle: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    rmse_a: Option<f64>,
    rmse_a_ci95: Option<f64>,
    rmse_f: Option<f64>,
    spread_a: Option<f64>,
    crps_a: Option<f64>,
    spread_skill_a: Option<f64>,
    time_per_cycle_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    minimisation: Option<MinimisationStats>,
    expected: Option<Expected>,
    within_tolerance: Option<bool>,
    netcdf: String,
}

/// Iteration counts of a variational method's minimisations.
#[derive(Serialize)]
struct MinimisationStats {
    count: usize,
    mean_iterations: f64,
    max_iterations: u64,
}

#[derive(Serialize)]
struct RunSummary<'a> {
    experiment: String,
    seed: u64,
    cycles: usize,
    burn_in: usize,
    rime_version: &'static str,
    methods: Vec<MethodSummary<'a>>,
}

fn netcdf_name(label: &str) -> String {
    format!("{label}.nc")
}

/// Writes `summary.json` and one NetCDF file per method into `dir`
/// (created if needed); every file is written atomically. Returns the paths.
pub fn write(report: &Report, dir: &Path, format: NetcdfFormat) -> Result<Vec<PathBuf>, IoError> {
    std::fs::create_dir_all(dir).map_err(|source| IoError::Io {
        path: dir.to_path_buf(),
        action: "creating the output directory".into(),
        source,
    })?;
    let mut written = Vec::new();
    for method in &report.methods {
        let path = dir.join(netcdf_name(&method.label));
        io::write_netcdf(&path, &method_dataset(report, method), format)?;
        written.push(path);
    }
    let summary = summary_json(report);
    let path = dir.join("summary.json");
    io::write_atomic(&path, summary.as_bytes())?;
    written.push(path);
    Ok(written)
}

/// The `summary.json` text.
pub fn summary_json(report: &Report) -> String {
    let methods = report
        .methods
        .iter()
        .map(|m| {
            let (status, cycle, reason) = match &m.status {
                Status::Ok => ("ok", None, None),
                Status::Diverged { cycle, reason } => {
                    ("diverged", Some(*cycle), Some(reason.as_str()))
                }
            };
            MethodSummary {
                label: &m.label,
                name: m.entry.method.name(),
                status,
                diverged_at_cycle: cycle,
                reason,
                rmse_a: m.summary.rmse_a,
                rmse_a_ci95: m.summary.rmse_a_ci95,
                rmse_f: m.summary.rmse_f,
                spread_a: m.summary.spread_a,
                crps_a: m.summary.crps_a,
                spread_skill_a: m.summary.spread_skill_a,
                time_per_cycle_s: m.time_per_cycle_s,
                minimisation: (!m.minimisations.is_empty()).then(|| MinimisationStats {
                    count: m.minimisations.len(),
                    mean_iterations: m
                        .minimisations
                        .iter()
                        .map(|r| r.iterations as f64)
                        .sum::<f64>()
                        / m.minimisations.len() as f64,
                    max_iterations: m
                        .minimisations
                        .iter()
                        .map(|r| r.iterations)
                        .max()
                        .unwrap_or(0),
                }),
                expected: m.expected,
                within_tolerance: m.meets_expectation(),
                netcdf: netcdf_name(&m.label),
            }
        })
        .collect();
    let summary = RunSummary {
        experiment: report.config.path.display().to_string(),
        seed: report.config.run.seed,
        cycles: report.config.run.cycles,
        burn_in: report.config.run.burn_in,
        rime_version: env!("CARGO_PKG_VERSION"),
        methods,
    };
    serde_json::to_string_pretty(&summary).expect("summary serialises") + "\n"
}

/// Row-major `[time, n]` data from an `n x cycles` matrix: nalgebra is
/// column-major, so its memory already is that layout.
fn time_major(m: &DMatrix<f64>) -> Vec<f64> {
    m.as_slice().to_vec()
}

fn text(s: &str) -> AttrValue {
    AttrValue::Text(s.to_string())
}

fn variable(name: &str, dims: &[&str], data: Vec<f64>, attrs: &[(&str, &str)]) -> Variable {
    Variable {
        name: name.to_string(),
        dimensions: dims.iter().map(|d| d.to_string()).collect(),
        data: VarData::F64(data),
        attributes: attrs
            .iter()
            .map(|(k, v)| (k.to_string(), text(v)))
            .collect(),
    }
}

/// The CF dataset of one method: truth, observations, forecast and analysis
/// mean and spread per cycle, and the score series.
pub fn method_dataset(report: &Report, method: &MethodReport) -> Dataset {
    let twin = &report.twin;
    let chronology = twin.chronology;
    let cycles = chronology.cycles;
    let n = twin.truth.nrows();
    let p = twin
        .observations
        .iter()
        .map(|b| b.len())
        .max()
        .unwrap_or(0)
        .max(1);
    let units = "1";
    let mut ds = Dataset::new();
    let status = match &method.status {
        Status::Ok => "ok".to_string(),
        Status::Diverged { cycle, reason } => format!("diverged at cycle {cycle}: {reason}"),
    };
    let method_json = serde_json::to_string(&method.entry.method).expect("method serialises");
    for (k, v) in [
        ("Conventions", "CF-1.8"),
        (
            "title",
            &format!(
                "rime twin experiment: {} with {}",
                report.model_name, method.label
            ),
        ),
        ("source", &format!("rime {}", env!("CARGO_PKG_VERSION"))),
        ("experiment", &report.config.path.display().to_string()),
        ("model", &report.model_name),
        ("method_label", &method.label),
        ("method_name", method.entry.method.name()),
        ("method_config", &method_json),
        ("status", &status),
    ] {
        ds.attributes.push((k.to_string(), text(v)));
    }
    ds.attributes
        .push(("seed".into(), AttrValue::F64(report.config.run.seed as f64)));
    ds.attributes.push((
        "burn_in_cycles".into(),
        AttrValue::I32(chronology.burn_in as i32),
    ));
    let (sum, count) = twin.observations.iter().fold((0.0, 0usize), |(s, c), b| {
        (s + b.error.mean_variance() * b.len() as f64, c + b.len())
    });
    ds.attributes.push((
        "observation_error_std".into(),
        AttrValue::F64((sum / count.max(1) as f64).sqrt()),
    ));
    if let Some(r) = method.summary.rmse_a {
        ds.attributes
            .push(("rmse_a_time_mean".into(), AttrValue::F64(r)));
    }
    ds.dimensions = vec![("time".into(), cycles), ("x".into(), n), ("obs".into(), p)];

    let times: Vec<f64> = (0..cycles).map(|k| chronology.time(k)).collect();
    ds.variables.push(variable(
        "time",
        &["time"],
        times,
        &[
            ("long_name", "model time of the observation"),
            ("units", units),
            ("axis", "T"),
        ],
    ));
    ds.variables.push(variable(
        "x",
        &["x"],
        (0..n).map(|i| i as f64).collect(),
        &[("long_name", "state variable index"), ("units", "1")],
    ));
    // The observed state index of each observation (NaN where the
    // operator is not a selection, or past the batch's length): one row
    // when the network is fixed, one per cycle when it moves.
    let fixed = twin
        .observations
        .windows(2)
        .all(|w| w[0].network_id == w[1].network_id);
    let index_row = |b: &crate::core::ObsBatch| -> Vec<f64> {
        let idx = super::twin::selected_indices(b.operator.as_ref());
        (0..p)
            .map(|j| match &idx {
                Some(idx) if j < idx.len() => idx[j] as f64,
                _ => f64::NAN,
            })
            .collect()
    };
    let index_attrs = [
        ("long_name", "state index observed by each observation"),
        ("units", "1"),
    ];
    if fixed {
        let row = twin
            .observations
            .first()
            .map_or_else(|| vec![f64::NAN; p], index_row);
        ds.variables
            .push(variable("obs_index", &["obs"], row, &index_attrs));
    } else {
        let data = twin.observations.iter().flat_map(index_row).collect();
        ds.variables
            .push(variable("obs_index", &["time", "obs"], data, &index_attrs));
    }
    let state_vars = [
        ("truth", &twin.truth, "true state"),
        (
            "forecast_mean",
            &method.series.forecast_mean,
            "forecast (prior) mean",
        ),
        (
            "forecast_spread",
            &method.series.forecast_spread,
            "forecast standard deviation",
        ),
        (
            "analysis_mean",
            &method.series.analysis_mean,
            "analysis (posterior) mean",
        ),
        (
            "analysis_spread",
            &method.series.analysis_spread,
            "analysis standard deviation",
        ),
    ];
    for (name, m, long) in state_vars {
        ds.variables.push(variable(
            name,
            &["time", "x"],
            time_major(m),
            &[("long_name", long), ("units", units)],
        ));
    }
    let observations = twin
        .observations
        .iter()
        .flat_map(|b| (0..p).map(move |j| b.values.get(j).copied().unwrap_or(f64::NAN)))
        .collect();
    ds.variables.push(variable(
        "observations",
        &["time", "obs"],
        observations,
        &[
            (
                "long_name",
                "observations with noise (NaN: missing or no observation)",
            ),
            ("units", units),
        ],
    ));
    let scores = [
        ("rmse_f", &method.series.rmse_f, "RMSE of the forecast mean"),
        ("rmse_a", &method.series.rmse_a, "RMSE of the analysis mean"),
        (
            "spread_f",
            &method.series.spread_f,
            "forecast spread, root of the mean variance",
        ),
        (
            "spread_a",
            &method.series.spread_a,
            "analysis spread, root of the mean variance",
        ),
        (
            "crps_a",
            &method.series.crps_a,
            "analysis CRPS averaged over variables",
        ),
    ];
    for (name, v, long) in scores {
        ds.variables.push(variable(
            name,
            &["time"],
            v.clone(),
            &[("long_name", long), ("units", units)],
        ));
    }
    if !method.minimisations.is_empty() {
        // Per-cycle record of the minimisation that ended at that cycle (NaN
        // where none did): the observer's J, J_b, J_o and gradient norm.
        let mut columns = vec![vec![f64::NAN; cycles]; 6];
        for r in &method.minimisations {
            let values = [
                r.iterations as f64,
                r.cost_initial,
                r.last.cost,
                r.last.cost_b + r.last.cost_q,
                r.last.cost_o,
                r.last.gradient_norm,
            ];
            for (col, v) in columns.iter_mut().zip(values) {
                col[r.cycle] = v;
            }
        }
        let names = [
            (
                "minimiser_iterations",
                "L-BFGS iterations of the minimisation ending at this cycle",
            ),
            ("cost_initial", "cost function at the background"),
            ("cost_final", "cost function at the minimum"),
            (
                "cost_background_final",
                "background (and model-error) term at the minimum",
            ),
            ("cost_observation_final", "observation term at the minimum"),
            ("gradient_norm_final", "gradient norm at the minimum"),
        ];
        for ((name, long), data) in names.into_iter().zip(columns) {
            ds.variables.push(variable(
                name,
                &["time"],
                data,
                &[("long_name", long), ("units", "1")],
            ));
        }
    }
    if let Some(h) = &method.rank_histogram {
        ds.dimensions.push(("rank".into(), h.counts.len()));
        ds.variables.push(Variable {
            name: "rank_histogram".into(),
            dimensions: vec!["rank".into()],
            data: VarData::I32(
                h.counts
                    .iter()
                    .map(|&c| c.min(i32::MAX as u64) as i32)
                    .collect(),
            ),
            attributes: vec![
                (
                    "long_name".into(),
                    text("rank of the truth among the analysis members, after burn-in"),
                ),
                ("units".into(), text("1")),
            ],
        });
    }
    ds
}

/// The results table as Markdown (also printed by the CLI).
pub fn table(report: &Report) -> String {
    let mut out = String::from(
        "| method | analysis RMSE | ±95% | spread | CRPS | expected | status | ms/cycle |\n|---|---|---|---|---|---|---|---|\n",
    );
    let f = |x: Option<f64>| x.map_or("—".to_string(), |v| format!("{v:.4}"));
    for m in &report.methods {
        let expected = m.expected.map_or("—".to_string(), |e| {
            let mark = if m.meets_expectation() == Some(true) {
                "✓"
            } else {
                "✗"
            };
            format!("{:.2} ± {:.2} {mark}", e.rmse_a, e.tolerance)
        });
        let status = match &m.status {
            Status::Ok => "ok".to_string(),
            Status::Diverged { cycle, .. } => format!("diverged at cycle {cycle}"),
        };
        out += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.3} |\n",
            m.label,
            f(m.summary.rmse_a),
            f(m.summary.rmse_a_ci95),
            f(m.summary.spread_a),
            f(m.summary.crps_a),
            expected,
            status,
            m.time_per_cycle_s * 1e3
        );
    }
    out
}
