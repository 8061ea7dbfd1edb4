//! `rime map`: PNG maps of one record of a trajectory file, drawn from the
//! model that wrote it (the file's `rime_model` attribute), so that derived
//! fields (the sea ice's shear and divergence) come with the state's own.

use std::path::{Path, PathBuf};

use super::registry::ModelConfig;
use crate::core::CoordinateUnits;
use crate::io::folder::OutputFolder;
use crate::learned::data::Trajectories;

/// Draws the maps of record `record` (default: the last) of trajectory
/// `trajectory` of `file` into the folder `out`, one `<field>.png` each,
/// and returns their paths with the model's diagnostics of that record.
///
/// # Errors
/// An unreadable file, one without the model that wrote it, a record or
/// trajectory out of range, or a failed drawing; messages name the file.
pub fn draw_maps(
    file: &Path,
    out: &Path,
    record: Option<usize>,
    trajectory: usize,
    overwrite: bool,
) -> anyhow::Result<MapReport> {
    let mut folder = OutputFolder::claim(out, MAP_COMMAND, overwrite)?;
    let data = Trajectories::read(file, [1.0, 0.0]).map_err(|e| anyhow::anyhow!(e))?;
    let text = data.model.as_deref().ok_or_else(|| {
        anyhow::anyhow!(
            "{}: no `rime_model` attribute; maps need the model that wrote the file (a `rime simulate` output)",
            file.display()
        )
    })?;
    let mut config = ModelConfig::from_toml(text)
        .map_err(|e| anyhow::anyhow!("{}: rime_model: {e}", file.display()))?;
    if let Some(dir) = file.parent() {
        config
            .resolve_paths(dir)
            .map_err(|e| anyhow::anyhow!("{}: rime_model: {e}", file.display()))?;
    }
    let device = crate::device::cpu_f64();
    let model = config
        .init(&device)
        .map_err(|e| anyhow::anyhow!("{}: rime_model: {e}", file.display()))?;
    if model.size() != data.n {
        anyhow::bail!(
            "{}: the state has {} values but its model has {}",
            file.display(),
            data.n,
            model.size()
        );
    }
    let records = data.records();
    let t = record.unwrap_or(records - 1);
    if t >= records {
        anyhow::bail!(
            "{}: record {t} requested, the file has {records} (0 to {})",
            file.display(),
            records - 1
        );
    }
    if trajectory >= data.runs {
        anyhow::bail!(
            "{}: trajectory {trajectory} requested, the file has {} (0 to {})",
            file.display(),
            data.runs,
            data.runs - 1
        );
    }
    let state = crate::device::tensor_from_rows(data.state(t, trajectory), 1, data.n, &device);
    let metres = model.geometry().coordinate_units == CoordinateUnits::Metres;
    let time = data.times[t];
    // Physical models in metres count time in seconds.
    let when = if metres {
        format!("t = {:.1} h", time / 3600.0)
    } else {
        format!("t = {time}")
    };
    let fields = model.maps(state.clone());
    folder.prepare(
        &fields
            .iter()
            .map(|f| format!("{}.png", f.name))
            .collect::<Vec<_>>(),
    )?;
    let mut written = Vec::new();
    for field in fields {
        let path = out.join(format!("{}.png", field.name));
        let title = format!("{}, {when}", field.long_name);
        crate::plot::map(&field, &title, metres, &path)?;
        written.push(path);
    }
    let diagnostics = model
        .diagnostics(state, time)
        .into_iter()
        .map(|(name, v)| (name.to_string(), v[0]))
        .collect();
    if written.is_empty() {
        anyhow::bail!(
            "{}: the model `{}` has no 2-D field to map",
            file.display(),
            model.name()
        );
    }
    Ok(MapReport {
        maps: written,
        time,
        diagnostics,
    })
}

/// The command name `rime map` records in its folder's manifest.
pub const MAP_COMMAND: &str = "rime map";

/// The state variable of `kind` (`truth`, `analysis_mean`) in `ds` for
/// `field` (its `field` attribute; `<kind>` alone when the run wrote one
/// field, `<kind>_<field>` otherwise), with the names of the fields there
/// are when none matches.
fn field_variable<'a>(
    ds: &'a crate::io::Dataset,
    kind: &str,
    field: Option<&str>,
) -> Result<&'a crate::io::Variable, Vec<String>> {
    let of_kind: Vec<&crate::io::Variable> = ds
        .variables
        .iter()
        .filter(|v| v.name == kind || v.name.starts_with(&format!("{kind}_")))
        .filter(|v| v.attribute("field").is_some())
        .collect();
    let name_of = |v: &crate::io::Variable| match v.attribute("field") {
        Some(crate::io::AttrValue::Text(f)) => f.clone(),
        _ => String::new(),
    };
    let found = match field {
        Some(f) => of_kind.iter().find(|v| name_of(v) == f),
        None if of_kind.len() == 1 => of_kind.first(),
        None => None,
    };
    found
        .copied()
        .ok_or_else(|| of_kind.iter().map(|v| name_of(v)).collect())
}

/// Draws the maps of a twin run's folder (`rime run`'s output with
/// `[output] states = true`) for one field (optional when the run has
/// one): for a 2-D field at record `record` (default: the last),
/// `truth_<field>.png`, and for each method file, `<method>_<field>.png`
/// (its analysis mean) and `<method>_<field>_error.png` (analysis mean
/// minus truth, on a colour range symmetric about zero); for a 1-D field
/// (Lorenz-96), the same as time-space (Hovmoller) diagrams over the whole
/// run. The method files are those the folder's manifest records as the
/// run's (every `*.nc` but the truth and observations in a folder from
/// before manifests). Returns the paths.
///
/// # Errors
/// A folder without `truth.nc` or without the field, a field with no
/// spatial dimension, an unreadable file, or a record out of range;
/// messages name the file and the fields there are.
pub fn draw_run_maps(
    dir: &Path,
    field: Option<&str>,
    record: Option<usize>,
    out: &Path,
    overwrite: bool,
) -> anyhow::Result<Vec<PathBuf>> {
    use crate::core::{MapField, MapScale};
    let read = |path: &Path| {
        crate::io::read_classic(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    };
    let truth_path = dir.join("truth.nc");
    let truth = read(&truth_path)?;
    let var = field_variable(&truth, "truth", field).map_err(|fields| match field {
        None if fields.len() > 1 => anyhow::anyhow!(
            "{}: the run has several fields ({}): give one with --field",
            truth_path.display(),
            fields.join(", ")
        ),
        _ => anyhow::anyhow!(
            "{}: no variable `truth_{}` or truth of that field (the run's fields: {}; did it keep `[output] states`?)",
            truth_path.display(),
            field.unwrap_or(""),
            if fields.is_empty() {
                "none".to_string()
            } else {
                fields.join(", ")
            }
        ),
    })?;
    let field = match var.attribute("field") {
        Some(crate::io::AttrValue::Text(f)) => f.clone(),
        _ => unreachable!("field_variable returns variables with a `field`"),
    };
    let coordinate = |d: &str| {
        truth
            .variable(d)
            .map(|v| v.data.to_f64())
            .ok_or_else(|| anyhow::anyhow!("{}: no coordinate `{d}`", truth_path.display()))
    };
    let times = truth
        .variable("time")
        .map(|v| v.data.to_f64())
        .unwrap_or_default();
    // A 2-D field is mapped at one record; a 1-D one over time.
    let (x, y, hovmoller) = match var.dimensions.as_slice() {
        [_, ydim, xdim] => (coordinate(xdim)?, coordinate(ydim)?, false),
        [_, xdim] => (coordinate(xdim)?, times.clone(), true),
        // A point field (Lorenz-63's x, y, z): its time series.
        [_] => return draw_run_series(dir, &times, var, &field, out, overwrite),
        _ => anyhow::bail!(
            "{}: `{}` has more dimensions than a map shows; read it with xarray",
            truth_path.display(),
            var.name
        ),
    };
    let size = if hovmoller {
        x.len()
    } else {
        x.len() * y.len()
    };
    let truth_all = var.data.to_f64();
    let records = truth_all.len() / size.max(1);
    let t = record.unwrap_or(records.saturating_sub(1));
    if t >= records {
        anyhow::bail!(
            "{}: record {t} requested, the file has {records}",
            truth_path.display()
        );
    }
    let units = match var.attribute("units") {
        Some(crate::io::AttrValue::Text(u)) => u.clone(),
        _ => String::new(),
    };
    let mask_name = var.name.replacen("truth", "mask", 1);
    let mask = truth.variable(&mask_name).map(|m| {
        let m: Vec<bool> = m.data.to_f64().iter().map(|v| *v != 0.0).collect();
        if hovmoller { m.repeat(records) } else { m }
    });
    let metres = truth
        .variable(match var.dimensions.last() {
            Some(d) => d.as_str(),
            None => "x",
        })
        .and_then(|v| v.attribute("units").cloned())
        .is_some_and(|u| matches!(u, crate::io::AttrValue::Text(u) if u == "m"));
    let record_of = |all: &[f64]| {
        if hovmoller {
            all[..records * size].to_vec()
        } else {
            all[t * size..(t + 1) * size].to_vec()
        }
    };
    let truth_values = record_of(&truth_all);
    let when = if hovmoller {
        "over time".to_string()
    } else if metres {
        format!(
            "t = {:.1} h",
            times.get(t).copied().unwrap_or(f64::NAN) / 3600.0
        )
    } else {
        format!("t = {}", times.get(t).copied().unwrap_or(f64::NAN))
    };
    let map = |name: String, long_name: String, values: Vec<f64>, scale| MapField {
        name,
        long_name,
        units: units.clone(),
        x: x.clone(),
        y: if hovmoller {
            y[..records].to_vec()
        } else {
            y.clone()
        },
        values,
        mask: mask.clone(),
        scale,
    };
    let mut methods: Vec<(String, Vec<f64>)> = Vec::new();
    for (stem, all) in method_analyses(dir, &field)? {
        if all.len() >= records * size {
            methods.push((stem, record_of(&all)));
        }
    }
    let mut names = vec![format!("truth_{field}.png")];
    for (method, _) in &methods {
        names.push(format!("{method}_{field}.png"));
        names.push(format!("{method}_{field}_error.png"));
    }
    let mut folder = OutputFolder::claim(out, MAP_COMMAND, overwrite)?;
    folder.prepare(&names)?;
    let mut written = Vec::new();
    let mut draw = |f: MapField| -> anyhow::Result<()> {
        let path = out.join(format!("{}.png", f.name));
        let title = f.long_name.clone();
        crate::plot::map(&f, &title, metres, &path)?;
        written.push(path);
        Ok(())
    };
    draw(map(
        format!("truth_{field}"),
        format!("truth {field}, {when}"),
        truth_values.clone(),
        MapScale::Linear,
    ))?;
    for (method, values) in methods {
        let error: Vec<f64> = values
            .iter()
            .zip(&truth_values)
            .map(|(a, b)| a - b)
            .collect();
        draw(map(
            format!("{method}_{field}"),
            format!("{method} analysis {field}, {when}"),
            values,
            MapScale::Linear,
        ))?;
        draw(map(
            format!("{method}_{field}_error"),
            format!("{method} analysis minus truth, {field}, {when}"),
            error,
            MapScale::Diverging,
        ))?;
    }
    Ok(written)
}

/// Each method file of a run's folder (those its manifest records as the
/// run's; every `*.nc` but the truth and observations in a folder from
/// before manifests) with the analysis mean of `field` over all records,
/// sorted by label.
fn method_analyses(dir: &Path, field: &str) -> anyhow::Result<Vec<(String, Vec<f64>)>> {
    let recorded = OutputFolder::recorded_by(dir, super::output::RUN_COMMAND)?;
    let mut entries: Vec<PathBuf> = match recorded {
        Some(names) => names
            .iter()
            .filter(|n| n.ends_with(".nc"))
            .map(|n| dir.join(n))
            .filter(|p| p.exists())
            .collect(),
        None => std::fs::read_dir(dir)
            .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "nc"))
            .collect(),
    };
    entries.sort();
    let mut methods = Vec::new();
    for path in entries {
        let stem = path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if ["truth", "observations"].contains(&stem.as_str()) {
            continue;
        }
        let ds = crate::io::read_classic(&path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        if let Ok(v) = field_variable(&ds, "analysis_mean", Some(field)) {
            methods.push((stem, v.data.to_f64()));
        }
    }
    Ok(methods)
}

/// A point field's maps: `<field>_series.png`, the truth and each method's
/// analysis mean against time, and `<field>_error.png`, each analysis mean
/// minus the truth (a method stopped early shows its cycles).
fn draw_run_series(
    dir: &Path,
    times: &[f64],
    truth: &crate::io::Variable,
    field: &str,
    out: &Path,
    overwrite: bool,
) -> anyhow::Result<Vec<PathBuf>> {
    let t = truth.data.to_f64();
    let methods = method_analyses(dir, field)?;
    let names = [format!("{field}_series.png"), format!("{field}_error.png")];
    let mut folder = OutputFolder::claim(out, MAP_COMMAND, overwrite)?;
    folder.prepare(&names)?;
    let curve = |name: &str, values: Vec<f64>| crate::plot::Curve {
        name: name.to_string(),
        points: times
            .iter()
            .zip(values)
            .filter(|(_, v)| v.is_finite())
            .map(|(&x, v)| (x, v))
            .collect(),
        exponent: None,
    };
    let mut series = vec![curve("truth", t.clone())];
    let mut errors = Vec::new();
    for (label, a) in &methods {
        series.push(curve(label, a.clone()));
        errors.push(curve(label, a.iter().zip(&t).map(|(a, t)| a - t).collect()));
    }
    let spec = |title: String, y: String| crate::plot::PlotSpec {
        title,
        x: "time".into(),
        y,
        group: None,
        log: false,
        log_y: false,
    };
    let mut written = Vec::new();
    for (name, mut curves, title, y) in [
        (
            &names[0],
            series,
            format!("{field}: truth and analysis means"),
            field.to_string(),
        ),
        (
            &names[1],
            errors,
            format!("{field}: analysis mean minus truth"),
            format!("{field} error"),
        ),
    ] {
        curves.retain(|c| !c.points.is_empty());
        if curves.is_empty() {
            continue;
        }
        let path = out.join(name);
        crate::plot::draw(&curves, &spec(title, y), &path)?;
        written.push(path);
    }
    Ok(written)
}

/// What `rime map` drew.
#[derive(Clone, Debug)]
pub struct MapReport {
    /// The PNG files.
    pub maps: Vec<PathBuf>,
    /// The record's model time.
    pub time: f64,
    /// The model's diagnostics of the record (first value of each).
    pub diagnostics: Vec<(String, f64)>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learned::data::{SimulateConfig, simulate};

    #[test]
    fn a_sea_ice_run_is_mapped_with_its_derived_fields() {
        let dir = std::env::temp_dir().join(format!("rime-maps-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("ice.toml");
        std::fs::write(
            &file,
            "[model]\nname = \"sea_ice\"\nnx = 8\ndx = 10000.0\ndt = 600.0\n\
             [model.mevp]\niterations = 20\n\
             [model.wind]\nkind = \"uniform\"\nu = 10.0\nv = 3.0\n\
             [initial]\nmean = \"model\"\nstd = 0.0\n\
             [simulate]\nrecords = 3\nsteps_per_record = 2\nsplit = [1.0, 0.0]\n",
        )
        .unwrap();
        let config = SimulateConfig::from_file(&file).unwrap();
        let out = dir.join("ice.nc");
        simulate(&config, &file, &out, false, false).unwrap();
        let report = draw_maps(&out, &dir.join("maps"), None, 0, false).unwrap();
        assert!(
            report
                .diagnostics
                .iter()
                .any(|(n, v)| n == "volume" && *v > 0.0)
        );
        let written = report.maps;
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["h", "a", "shear", "divergence", "speed"]);
        for p in &written {
            let bytes = std::fs::read(p).unwrap();
            assert_eq!(&bytes[1..4], b"PNG", "{}", p.display());
        }
        let e = draw_maps(&out, &dir.join("maps"), Some(7), 0, false).unwrap_err();
        assert!(e.to_string().contains("record 7"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
