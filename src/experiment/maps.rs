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
