//! `rime map`: PNG maps of one record of a trajectory file, drawn from the
//! model that wrote it (the file's `rime_model` attribute), so that derived
//! fields (the sea ice's shear and divergence) come with the state's own.

use std::path::{Path, PathBuf};

use super::registry::ModelConfig;
use crate::core::CoordinateUnits;
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
) -> anyhow::Result<MapReport> {
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
    std::fs::create_dir_all(out).map_err(|e| anyhow::anyhow!("{}: {e}", out.display()))?;
    let mut written = Vec::new();
    for field in model.maps(state.clone()) {
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

/// Draws the maps of a twin run's folder (`rime run`'s output with
/// `[output] states = true`) for one field at record `record` (default:
/// the last): `truth_<field>.png`, and for each method file,
/// `<method>_<field>.png` (its analysis mean) and `<method>_<field>_error.png`
/// (analysis mean minus truth, on a colour range symmetric about zero).
/// Returns the paths.
///
/// # Errors
/// A folder without `truth.nc` or without the field, an unreadable file,
/// or a record out of range; messages name the file.
pub fn draw_run_maps(
    dir: &Path,
    field: &str,
    record: Option<usize>,
    out: &Path,
) -> anyhow::Result<Vec<PathBuf>> {
    use crate::core::{MapField, MapScale};
    let read = |path: &Path| {
        crate::io::read_classic(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    };
    let truth_path = dir.join("truth.nc");
    let truth = read(&truth_path)?;
    let name = format!("truth_{field}");
    let var = truth.variable(&name).ok_or_else(|| {
        anyhow::anyhow!(
            "{}: no variable `{name}` (is `{field}` a 2-D field, and did the run keep `[output] states`?)",
            truth_path.display()
        )
    })?;
    let [_, ydim, xdim] = var.dimensions.as_slice() else {
        anyhow::bail!(
            "{}: `{name}` is not a (time, y, x) field",
            truth_path.display()
        );
    };
    let coordinate = |d: &str| {
        truth
            .variable(d)
            .map(|v| v.data.to_f64())
            .ok_or_else(|| anyhow::anyhow!("{}: no coordinate `{d}`", truth_path.display()))
    };
    let (x, y) = (coordinate(xdim)?, coordinate(ydim)?);
    let size = x.len() * y.len();
    let truth_all = var.data.to_f64();
    let records = truth_all.len() / size.max(1);
    let t = record.unwrap_or(records.saturating_sub(1));
    if t >= records {
        anyhow::bail!(
            "{}: record {t} requested, the file has {records}",
            truth_path.display()
        );
    }
    let units = match var.attributes.iter().find(|(k, _)| k == "units") {
        Some((_, crate::io::AttrValue::Text(u))) => u.clone(),
        _ => String::new(),
    };
    let mask = truth
        .variable(&format!("mask_{field}"))
        .map(|m| m.data.to_f64().iter().map(|v| *v != 0.0).collect());
    let record_of = |all: &[f64]| all[t * size..(t + 1) * size].to_vec();
    let truth_values = record_of(&truth_all);
    let time = truth
        .variable("time")
        .map_or(f64::NAN, |v| v.data.to_f64()[t]);
    let when = format!("t = {:.1} h", time / 3600.0);
    let map = |name: String, long_name: String, values: Vec<f64>, scale| MapField {
        name,
        long_name,
        units: units.clone(),
        x: x.clone(),
        y: y.clone(),
        values,
        mask: mask.clone(),
        scale,
    };
    let mut methods: Vec<(String, Vec<f64>)> = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "nc"))
        .collect();
    entries.sort();
    for path in entries {
        let stem = path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if ["truth", "observations"].contains(&stem.as_str()) {
            continue;
        }
        let ds = read(&path)?;
        if let Some(v) = ds.variable(&format!("analysis_mean_{field}")) {
            let all = v.data.to_f64();
            if all.len() >= (t + 1) * size {
                methods.push((stem, record_of(&all)));
            }
        }
    }
    std::fs::create_dir_all(out).map_err(|e| anyhow::anyhow!("{}: {e}", out.display()))?;
    let mut written = Vec::new();
    let mut draw = |f: MapField| -> anyhow::Result<()> {
        let path = out.join(format!("{}.png", f.name));
        let title = f.long_name.clone();
        crate::plot::map(&f, &title, true, &path)?;
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
        simulate(&config, &file, &out, false).unwrap();
        let report = draw_maps(&out, &dir.join("maps"), None, 0).unwrap();
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
        let e = draw_maps(&out, &dir.join("maps"), Some(7), 0).unwrap_err();
        assert!(e.to_string().contains("record 7"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
