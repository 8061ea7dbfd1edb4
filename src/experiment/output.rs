//! Run outputs, streamed as the run goes: one CF NetCDF file per method,
//! `truth.nc` (twins) and `observations.nc`, each appended cycle by cycle
//! along an unlimited `time` dimension and flushed every
//! `output.flush_every` cycles (at most once a second); then `summary.json` and the results table.
//!
//! Memory does not grow with the run's length: a file holds one record in
//! memory at a time. While the run goes each file is `<name>.partial.nc`,
//! a valid classic NetCDF file holding every cycle up to its last flush (a
//! killed run leaves it readable by xarray); when the method ends it is
//! renamed to `<name>.nc` (or converted to NetCDF-4), so an earlier run's
//! file of the same name is only replaced by a complete one.
//!
//! Schema. Every file has `time` (model time of the observations). State
//! variables follow the forecast model's [`Geometry`]: one variable per
//! field, named `<kind>` when one field is written and `<kind>_<field>`
//! otherwise, over the field's own dimensions (`x` or `y, x` for axes,
//! shared between fields on the same axes; `point_<field>` with auxiliary
//! coordinates `<dim>_x`, `<dim>_y` for scattered points; none for a
//! single-point field such as Lorenz-63's `x`), with the field's
//! units and grid position; masked fields have an integer `mask[_<field>]`
//! (1 = active).
//! - `truth.nc`: `truth`.
//! - `observations.nc`: over `(time, obs)`, padded with NaN past each
//!   cycle's count: `observations`, `obs_error_std`, `obs_x`, `obs_y` and
//!   the integer `obs_index` (the state index a selection reads; -1
//!   otherwise, without a `_FillValue` so that xarray keeps it integer), the
//!   integer `obs_set` (the observation set of each value, in the order of
//!   `[[observations]]`, named by its `set_names` attribute); and
//!   `obs_count`, `obs_missing` per cycle.
//! - `<label>.nc`: `forecast_mean`, `forecast_spread`, `analysis_mean`,
//!   `analysis_spread` (unless `output.states = false`),
//!   `analysis_members` over `(time, member, ...)` with `output.members`;
//!   the per-cycle scores of [`CycleScores::NAMES`]; for L-BFGS
//!   methods the minimisation ending at each cycle (`minimiser_iterations`,
//!   `cost_initial`, `cost_final`, `cost_background_final`,
//!   `cost_observation_final`, `gradient_norm_final`, `minimiser_converged`);
//!   for ensembles the
//!   analysis `rank_histogram` after burn-in; and `stopped_at_cycle`
//!   (-1 if the method ran to the end). The last three are written when
//!   the method ends.

use std::path::{Path, PathBuf};

use nalgebra::{DMatrix, DVector};
use serde::Serialize;

use super::config::{Expected, ExperimentConfig, MethodEntry};
use super::runner::{CycleScores, Moments, Report, Status};
use super::twin::{Built, Chronology, ObsSource};
use crate::core::{CoordinateUnits, Coordinates, Geometry, ObsBatch};
use crate::da::var::MinimisationSummary;
use crate::io::folder::OutputFolder;
use crate::io::stream::{StreamAttr, StreamHeader, StreamType, StreamVar, StreamWriter};
use crate::io::{self, IoError, NetcdfFormat};
use crate::metrics::RankHistogram;

/// Where and how a run writes its files.
#[derive(Clone, Debug)]
pub struct OutputTarget {
    /// The output directory (created if needed).
    pub dir: PathBuf,
    /// Classic (streamed) or NetCDF-4 (streamed as classic, converted when
    /// each file is complete; needs the `netcdf` feature).
    pub format: NetcdfFormat,
    /// Replace files in the folder that no recorded rime command wrote
    /// (`--overwrite`); without it the run refuses to start.
    pub overwrite: bool,
}

/// One written field: where it sits in the state and its dimensions.
#[derive(Clone, Debug)]
struct FieldLayout {
    name: String,
    long_name: String,
    units: String,
    position: &'static str,
    offset: usize,
    len: usize,
    /// Dimension names, slowest first, without `time` or `member`.
    dims: Vec<String>,
    /// `""` when one field is written, else `_<field>`.
    suffix: String,
    /// `coordinates` attribute for scattered points.
    coordinates: Option<String>,
}

/// The dimensions, coordinate variables and fields of the written state.
#[derive(Clone, Debug)]
struct Layout {
    dims: Vec<(String, usize)>,
    fixed: Vec<(StreamVar, Vec<f64>)>,
    fields: Vec<FieldLayout>,
    /// Units of `time`: seconds for models laid out in metres (the
    /// physical models), else the model's own time units (`1`).
    time_units: &'static str,
}

impl Layout {
    /// The layout of `names` (absent: every field) of `geometry`.
    fn new(geometry: &Geometry, names: Option<&[String]>) -> Self {
        let selected: Vec<usize> = match names {
            Some(names) => names
                .iter()
                .filter_map(|n| geometry.field(n).map(|(k, _)| k))
                .collect(),
            None => (0..geometry.fields.len()).collect(),
        };
        let single = selected.len() == 1;
        let (ux, uy) = geometry.coordinate_units.cf_units();
        let (sx, sy) = match geometry.coordinate_units {
            CoordinateUnits::Degrees => (Some("longitude"), Some("latitude")),
            CoordinateUnits::Metres => (
                Some("projection_x_coordinate"),
                Some("projection_y_coordinate"),
            ),
            CoordinateUnits::Model => (None, None),
        };
        let mut layout = Layout {
            dims: Vec::new(),
            fixed: Vec::new(),
            fields: Vec::new(),
            time_units: if geometry.coordinate_units == CoordinateUnits::Metres {
                "s"
            } else {
                "1"
            },
        };
        // An axis dimension: an existing one holding the same values, else
        // `base` if free, `base_<position>` (staggered fields), or
        // `base_<field>`.
        let axis = |layout: &mut Layout,
                    base: &str,
                    field: &str,
                    position: &str,
                    values: &[f64]|
         -> String {
            if let Some((v, _)) = layout.fixed.iter().find(|(v, existing)| {
                (v.name == base || v.name.starts_with(&format!("{base}_")))
                    && layout.dims.iter().any(|(d, _)| *d == v.name)
                    && existing == values
            }) {
                return v.name.clone();
            }
            let mut names = vec![base.to_string()];
            if position != "centre" {
                names.push(format!("{base}_{position}"));
            }
            names.push(format!("{base}_{field}"));
            for name in names {
                match layout.fixed.iter().find(|(v, _)| v.name == name) {
                    Some((_, existing)) if existing == values => return name,
                    Some(_) => continue,
                    None => {
                        let (units, standard, axis_name, long) = if base == "x" {
                            (ux, sx, "X", "x coordinate of the grid points")
                        } else {
                            (uy, sy, "Y", "y coordinate of the grid points")
                        };
                        let var =
                            coordinate(&name, &name, long, units, standard).attr("axis", axis_name);
                        layout.dims.push((name.clone(), values.len()));
                        layout.fixed.push((var, values.to_vec()));
                        return name;
                    }
                }
            }
            unreachable!("a field's own axis name is free or its own")
        };
        for k in selected {
            let f = &geometry.fields[k];
            let suffix = if single {
                String::new()
            } else {
                format!("_{}", f.name)
            };
            let (dims, coordinates) = match &f.coordinates {
                Coordinates::Axes { x, y } => {
                    let dx = axis(&mut layout, "x", &f.name, f.position.name(), x);
                    if y.is_empty() {
                        (vec![dx], None)
                    } else {
                        let dy = axis(&mut layout, "y", &f.name, f.position.name(), y);
                        (vec![dy, dx], None)
                    }
                }
                // A single point (a variable of a low-order system such
                // as Lorenz-63's x, y, z) is a scalar per time.
                Coordinates::Points(points) if points.len() == 1 => (Vec::new(), None),
                Coordinates::Points(points) => {
                    let dim = format!("point_{}", f.name);
                    layout.dims.push((dim.clone(), points.len()));
                    for (c, (units, standard)) in [(ux, sx), (uy, sy)].into_iter().enumerate() {
                        let name = format!("{dim}_{}", ["x", "y"][c]);
                        let long =
                            format!("{} coordinate of the points of `{}`", ["x", "y"][c], f.name);
                        let var = coordinate(&name, &dim, &long, units, standard);
                        layout
                            .fixed
                            .push((var, points.iter().map(|p| p[c]).collect()));
                    }
                    (vec![dim.clone()], Some(format!("{dim}_x {dim}_y")))
                }
            };
            if let Some(mask) = &f.mask {
                let dim_refs: Vec<&str> = dims.iter().map(String::as_str).collect();
                let var = StreamVar::new(&format!("mask{suffix}"), &dim_refs, StreamType::I32)
                    .attr(
                        "long_name",
                        format!("active points of `{}`", f.name).as_str(),
                    )
                    .attr("flag_values", StreamAttr::I32(vec![0, 1]))
                    .attr("flag_meanings", "inactive active");
                layout.fixed.push((
                    var,
                    mask.iter().map(|&m| if m { 1.0 } else { 0.0 }).collect(),
                ));
            }
            layout.fields.push(FieldLayout {
                name: f.name.clone(),
                long_name: f.long_name.clone(),
                units: f.units.clone(),
                position: f.position.name(),
                offset: geometry.offset(k),
                len: f.len(),
                dims,
                suffix,
                coordinates,
            });
        }
        layout
    }

    /// One record variable per field: `<kind>[_<field>]` over
    /// `(time, [member,] field dims)`.
    fn state_vars(&self, kind: &str, long: &str, member: Option<&str>) -> Vec<StreamVar> {
        self.fields
            .iter()
            .map(|f| {
                let mut dims = vec!["time"];
                if let Some(m) = member {
                    dims.push(m);
                }
                dims.extend(f.dims.iter().map(String::as_str));
                let mut var =
                    StreamVar::new(&format!("{kind}{}", f.suffix), &dims, StreamType::F64)
                        .attr(
                            "long_name",
                            format!("{long} of {} ({})", f.name, f.long_name).as_str(),
                        )
                        .attr("units", f.units.as_str())
                        .attr("field", f.name.as_str())
                        .attr("grid_position", f.position);
                if let Some(c) = &f.coordinates {
                    var = var.attr("coordinates", c.as_str());
                }
                var
            })
            .collect()
    }

    /// The slices of one state, field by field.
    fn slices<'a>(&self, state: &'a [f64]) -> impl Iterator<Item = &'a [f64]> + use<'a, '_> {
        self.fields
            .iter()
            .map(|f| &state[f.offset..f.offset + f.len])
    }
}

/// A coordinate variable `name` over `dim`, with its CF units and, where
/// the units have one, its standard name.
fn coordinate(name: &str, dim: &str, long: &str, units: &str, standard: Option<&str>) -> StreamVar {
    let var = StreamVar::new(name, &[dim], StreamType::F64)
        .attr("long_name", long)
        .attr("units", units);
    match standard {
        Some(s) => var.attr("standard_name", s),
        None => var,
    }
}

fn time_var(layout: &Layout) -> StreamVar {
    time_var_named("model time of the observations", layout)
}

/// The CF `time` coordinate with its long name.
fn time_var_named(long_name: &str, layout: &Layout) -> StreamVar {
    StreamVar::new("time", &["time"], StreamType::F64)
        .attr("long_name", long_name)
        .attr("units", layout.time_units)
        .attr("axis", "T")
        .attr("standard_name", "time")
}

fn global_attributes(
    config: &ExperimentConfig,
    model: &str,
    title: &str,
    chronology: Chronology,
) -> Vec<(String, StreamAttr)> {
    let mut a: Vec<(String, StreamAttr)> = vec![
        ("Conventions".into(), "CF-1.8".into()),
        ("title".into(), title.into()),
        (
            "source".into(),
            format!("rime {}", env!("CARGO_PKG_VERSION"))
                .as_str()
                .into(),
        ),
        (
            "experiment".into(),
            config.path.display().to_string().as_str().into(),
        ),
        ("model".into(), model.into()),
        // Text: a u64 seed does not fit a double or an int attribute.
        ("seed".into(), config.run.seed.to_string().as_str().into()),
        ("burn_in_cycles".into(), (chronology.burn_in as i32).into()),
        ("time_step".into(), chronology.dt.into()),
        (
            "steps_per_cycle".into(),
            (chronology.steps_per_cycle as i32).into(),
        ),
    ];
    if let Some(d) = &config.description {
        a.push(("comment".into(), d.as_str().into()));
    }
    if let Some(r) = &config.reference {
        a.push(("references".into(), r.as_str().into()));
    }
    a
}

/// A file being streamed: `<name>.partial.nc` until [`finish`](Self::finish).
struct Stream {
    writer: StreamWriter,
    partial: PathBuf,
    path: PathBuf,
    format: NetcdfFormat,
    flush_every: usize,
    last_flush: std::time::Instant,
}

/// Flushes are at least this far apart: each one syncs the file twice,
/// which costs about a millisecond, as much as tens of cycles of a small
/// model.
const MIN_FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

impl Stream {
    fn create(
        dir: &Path,
        name: &str,
        header: StreamHeader,
        format: NetcdfFormat,
        flush_every: usize,
    ) -> Result<Self, IoError> {
        let partial = dir.join(format!("{name}.partial.nc"));
        let writer = StreamWriter::create(&partial, header)?;
        Ok(Self {
            writer,
            partial,
            path: dir.join(format!("{name}.nc")),
            format,
            flush_every: flush_every.max(1),
            last_flush: std::time::Instant::now(),
        })
    }

    /// Appends cycle `k`'s record; flushes after every `flush_every`-th
    /// cycle, but not within [`MIN_FLUSH_INTERVAL`] of the last flush.
    fn append(&mut self, k: usize, record: &[&[f64]]) -> Result<(), IoError> {
        self.writer.append(record)?;
        if (k + 1).is_multiple_of(self.flush_every)
            && self.last_flush.elapsed() >= MIN_FLUSH_INTERVAL
        {
            self.writer.flush()?;
            self.last_flush = std::time::Instant::now();
        }
        Ok(())
    }

    /// Flushes and moves the file to its final name (converting it to
    /// NetCDF-4 if asked).
    fn finish(self) -> Result<PathBuf, IoError> {
        let Stream {
            writer,
            partial,
            path,
            format,
            ..
        } = self;
        writer.finish()?;
        match format {
            NetcdfFormat::Classic => {
                std::fs::rename(&partial, &path).map_err(|source| IoError::Io {
                    path: path.clone(),
                    action: format!("renaming {} into place", partial.display()),
                    reason: source,
                })?;
            }
            NetcdfFormat::Netcdf4 => {
                let ds = io::read_classic(&partial)?;
                io::write_netcdf(&path, &ds, NetcdfFormat::Netcdf4)?;
                std::fs::remove_file(&partial).map_err(|source| IoError::Io {
                    path: partial.clone(),
                    action: "removing the streamed classic file".into(),
                    reason: source,
                })?;
            }
        }
        Ok(path)
    }
}

/// Creates the output folder (and its parents) if needed.
fn create_folder(dir: &Path) -> Result<(), IoError> {
    std::fs::create_dir_all(dir).map_err(|reason| IoError::Io {
        path: dir.to_path_buf(),
        action: "creating the output folder".into(),
        reason,
    })
}

/// The bytes a run's files will take, from the size of one record of
/// each (states, observations, scores, members) times the cycles: an
/// estimate within a few per cent for runs longer than a few cycles.
pub fn disk_estimate(config: &ExperimentConfig, built: &Built) -> u64 {
    let geometry = built.model().geometry();
    let n = match &config.output.fields {
        Some(names) => names
            .iter()
            .filter_map(|f| geometry.field(f))
            .map(|(_, f)| f.len())
            .sum::<usize>(),
        None => geometry.size(),
    } as u64;
    let states = config.output.states;
    let p = built.source.max_len().max(1) as u64;
    let mut record = 6 * p + 3;
    if built.has_truth() && states {
        record += n;
    }
    for m in &config.methods {
        // Time, the per-cycle scores and the minimisation's record.
        record += 40;
        if states {
            record += 4 * n;
        }
        if config.output.members {
            record += m.method.ensemble_size().unwrap_or(0) as u64 * n;
        }
    }
    record
        .saturating_mul(8)
        .saturating_mul(config.run.cycles as u64)
}

/// Refuses a run whose files would not fit the free space of the output
/// folder's file system, naming `run.cycles` (or `--cycles`), before any
/// file is written; returns the estimate.
///
/// # Errors
/// The estimate and the space there is.
fn check_disk(
    target: &OutputTarget,
    config: &ExperimentConfig,
    built: &Built,
) -> Result<u64, IoError> {
    let bytes = disk_estimate(config, built);
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    if let Some(free) = crate::io::folder::free_bytes(&target.dir)
        && bytes > free
    {
        return Err(IoError::Refused {
            path: target.dir.clone(),
            reason: format!(
                "run.cycles = {} (or --cycles) would write about {:.1} GiB here, and the file system has {:.1} GiB free; run fewer cycles, keep fewer fields ([output] fields, states, members) or write elsewhere",
                config.run.cycles,
                gib(bytes),
                gib(free)
            ),
        });
    }
    Ok(bytes)
}

/// The command name a run records in its folder's manifest.
pub const RUN_COMMAND: &str = "rime run";

/// Claims a run's output folder before any file is made: its lock and
/// manifest ([`OutputFolder`]); declares `truth.nc` (with `truth`),
/// `observations.nc`, one `<label>.nc` per method and `summary.json`;
/// refuses NetCDF files that no recorded rime command wrote (they would
/// sit beside this run's outputs and be taken for them), unless
/// `--overwrite`; retires an earlier run's files that this run does not
/// rewrite. Returns the folder and notes of what was removed.
///
/// # Errors
/// A folder another command holds, foreign files in the way, or one that
/// cannot be written.
pub fn claim_run_folder(
    target: &OutputTarget,
    config: &ExperimentConfig,
    truth: bool,
) -> Result<(OutputFolder, Vec<String>), IoError> {
    let mut folder = OutputFolder::claim(&target.dir, RUN_COMMAND, target.overwrite)?;
    let mut names: Vec<String> = Vec::new();
    if truth {
        names.push("truth.nc".into());
    }
    names.push("observations.nc".into());
    names.extend(config.methods.iter().map(|m| format!("{}.nc", m.label)));
    names.push("summary.json".into());
    // Not a `*.partial.nc` of another program: no method label ends in
    // `.partial`, so it cannot be taken for this run's.
    let foreign: Vec<String> = folder
        .unrecorded(".nc", &names)
        .into_iter()
        .filter(|n| !n.ends_with(".partial.nc"))
        .collect();
    if !foreign.is_empty() && !target.overwrite {
        return Err(IoError::Refused {
            path: target.dir.clone(),
            reason: format!(
                "holds {} that no recorded rime command wrote here; beside this run's outputs such files would be taken for its own: move them, choose another --out, or pass --overwrite to leave them there",
                foreign.join(", ")
            ),
        });
    }
    folder.prepare(&names)?;
    let mut notes = Vec::new();
    if !folder.removed().is_empty() {
        notes.push(format!(
            "removed what an interrupted earlier run left in the output folder: {}",
            folder.removed().join(", ")
        ));
    }
    let retired = folder.retire(&names)?;
    if !retired.is_empty() {
        notes.push(format!(
            "removed an earlier run's files that this run does not rewrite: {}",
            retired.join(", ")
        ));
    }
    if !foreign.is_empty() {
        notes.push(format!(
            "left files that no recorded rime command wrote (--overwrite): {}",
            foreign.join(", ")
        ));
    }
    Ok((folder, notes))
}

/// The files of a run that are not a method's: `truth.nc` and
/// `observations.nc`; and what method files share.
pub struct RunFiles {
    /// Held until the run's files are all written.
    folder: OutputFolder,
    /// What claiming the folder removed or left, for the user.
    pub notes: Vec<String>,
    /// The estimate of the bytes the run's files will take.
    pub disk_bytes: u64,
    target: OutputTarget,
    config: ExperimentConfig,
    model: String,
    chronology: Chronology,
    layout: Layout,
    truth: Option<Stream>,
    observations: Stream,
    max_obs: usize,
    two_dimensional: bool,
    buffer: Vec<Vec<f64>>,
    /// `(name, units)` of the fields scored one by one (models with more
    /// than one field; empty otherwise).
    score_fields: Vec<(String, String)>,
}

impl RunFiles {
    /// Creates the output directory, `truth.nc` (twins) and
    /// `observations.nc`.
    ///
    /// # Errors
    /// A directory or file that cannot be created.
    pub fn create(
        target: &OutputTarget,
        config: &ExperimentConfig,
        built: &Built,
        chronology: Chronology,
    ) -> Result<Self, IoError> {
        // Checked before any file is made, not when the first one is
        // converted at the end of the run.
        if target.format == NetcdfFormat::Netcdf4 && !cfg!(feature = "netcdf") {
            return Err(IoError::FeatureDisabled {
                path: target.dir.clone(),
            });
        }
        let write_states = config.output.states;
        let (folder, notes) = claim_run_folder(target, config, built.has_truth() && write_states)?;
        // Before the first file: a run that would fill the disk.
        let disk_bytes = check_disk(target, config, built)?;
        let model = built.model();
        let geometry = model.geometry();
        let layout = Layout::new(geometry, config.output.fields.as_deref());
        let score_fields = super::runner::FieldScorer::new(geometry)
            .map(|s| s.fields().to_vec())
            .unwrap_or_default();
        let flush = config.output.flush_every;
        let truth = if built.has_truth() && write_states {
            let mut records = vec![time_var(&layout)];
            records.extend(layout.state_vars("truth", "true state", None));
            let header = StreamHeader {
                record_dim: "time".into(),
                dims: layout.dims.clone(),
                attributes: global_attributes(
                    config,
                    model.name(),
                    &format!("rime twin experiment: truth of {}", model.name()),
                    chronology,
                ),
                fixed: layout.fixed.clone(),
                records,
            };
            Some(Stream::create(
                &target.dir,
                "truth",
                header,
                target.format,
                flush,
            )?)
        } else {
            None
        };
        let max_obs = built.source.max_len().max(1);
        let set_names: Vec<String> = config.observations.iter().map(|o| o.name.clone()).collect();
        let two_dimensional =
            geometry.fields.iter().any(|f| f.shape.len() == 2) || geometry.period[1].is_some();
        let (ux, uy) = geometry.coordinate_units.cf_units();
        let obs_var = |name: &str, long: &str, units: &str| {
            StreamVar::new(name, &["time", "obs"], StreamType::F64)
                .attr("long_name", long)
                .attr("units", units)
        };
        let mut records = vec![
            time_var(&layout),
            StreamVar::new("obs_count", &["time"], StreamType::I32)
                .attr("long_name", "number of observations at this time"),
            StreamVar::new("obs_missing", &["time"], StreamType::I32).attr(
                "long_name",
                "observations of the network missing at this time",
            ),
            obs_var("observations", "observed values (NaN past obs_count)", "1"),
            obs_var("obs_error_std", "observation-error standard deviation", "1"),
            StreamVar::new("obs_index", &["time", "obs"], StreamType::I32)
                .attr(
                    "long_name",
                    "state index read by each observation (-1: the operator is not a selection, or past obs_count)",
                )
                // No _FillValue: xarray would mask it and turn the integer
                // index into float64 (issue 31); -1 is documented instead.
                .attr("valid_min", 0),
            StreamVar::new("obs_set", &["time", "obs"], StreamType::I32)
                .attr(
                    "long_name",
                    "observation set of each observation (0-based, in the order of [[observations]]; -1 past obs_count)",
                )
                .attr("set_names", set_names.join(" ").as_str())
                .attr("valid_min", 0),
            obs_var("obs_x", "x coordinate of each observation", ux),
        ];
        if two_dimensional {
            records.push(obs_var("obs_y", "y coordinate of each observation", uy));
        }
        let source = match &built.source {
            ObsSource::Twin(_) => "simulated from the truth",
            ObsSource::File(_) => "read from a file",
        };
        let mut attributes = global_attributes(
            config,
            model.name(),
            &format!("rime observations ({source})"),
            chronology,
        );
        attributes.push(("observation_source".into(), source.into()));
        let header = StreamHeader {
            record_dim: "time".into(),
            dims: vec![("obs".into(), max_obs)],
            attributes,
            fixed: Vec::new(),
            records,
        };
        let observations =
            Stream::create(&target.dir, "observations", header, target.format, flush)?;
        Ok(Self {
            folder,
            notes,
            disk_bytes,
            target: target.clone(),
            config: config.clone(),
            model: model.name().to_string(),
            chronology,
            layout,
            truth,
            observations,
            max_obs,
            two_dimensional,
            buffer: vec![vec![f64::NAN; max_obs]; 6],
            score_fields,
        })
    }

    /// Opens the file of one method.
    ///
    /// # Errors
    /// A file that cannot be created.
    pub fn method(&self, entry: &MethodEntry) -> Result<MethodWriter, IoError> {
        MethodWriter::create(self, entry)
    }

    /// Appends cycle `k`: the truth (twins) and the observations.
    ///
    /// # Errors
    /// A write that fails.
    pub fn record(
        &mut self,
        k: usize,
        time: f64,
        truth: Option<&DVector<f64>>,
        batch: &ObsBatch,
    ) -> Result<(), IoError> {
        if let (Some(stream), Some(x)) = (&mut self.truth, truth) {
            let mut record: Vec<&[f64]> = vec![std::slice::from_ref(&time)];
            record.extend(self.layout.slices(x.as_slice()));
            stream.append(k, &record)?;
        }
        let p = batch.len().min(self.max_obs);
        for column in &mut self.buffer {
            column.fill(f64::NAN);
        }
        self.buffer[2].fill(-1.0);
        self.buffer[3].fill(-1.0);
        let std = batch.error.std();
        let locations = batch.operator.locations();
        let indices = batch.operator.state_indices();
        let set_of: Vec<usize> = batch
            .sets
            .iter()
            .enumerate()
            .flat_map(|(s, &n)| std::iter::repeat_n(s, n))
            .collect();
        for j in 0..p {
            self.buffer[0][j] = batch.values[j];
            self.buffer[1][j] = std[j];
            self.buffer[2][j] = indices.get(j).copied().flatten().map_or(-1.0, |i| i as f64);
            self.buffer[3][j] = set_of.get(j).map_or(0.0, |&s| s as f64);
            if let Some(l) = locations.get(j) {
                self.buffer[4][j] = l[0];
                self.buffer[5][j] = l[1];
            }
        }
        let count = batch.len() as f64;
        let missing = batch.missing as f64;
        let mut record: Vec<&[f64]> = vec![
            std::slice::from_ref(&time),
            std::slice::from_ref(&count),
            std::slice::from_ref(&missing),
        ];
        let columns = if self.two_dimensional { 6 } else { 5 };
        record.extend(self.buffer[..columns].iter().map(Vec::as_slice));
        self.observations.append(k, &record)
    }

    /// Closes `truth.nc` and `observations.nc`; returns their paths and
    /// the claimed folder, to be released when the method files are done.
    ///
    /// # Errors
    /// A write or rename that fails.
    pub fn finish(self) -> Result<(Vec<PathBuf>, OutputFolder), IoError> {
        let mut paths = Vec::new();
        if let Some(t) = self.truth {
            paths.push(t.finish()?);
        }
        paths.push(self.observations.finish()?);
        Ok((paths, self.folder))
    }
}

/// What a method's file records at one cycle.
pub struct CycleRecord<'a> {
    /// Model time.
    pub time: f64,
    /// Forecast moments.
    pub forecast: &'a Moments,
    /// Analysis moments.
    pub analysis: &'a Moments,
    /// Analysis members, `n x N`, if the file keeps them.
    pub members: Option<&'a DMatrix<f64>>,
    /// The cycle's scores.
    pub scores: &'a CycleScores,
    /// Per-field RMSE: forecast for each field, then analysis for each
    /// field (empty for a single-field model).
    pub field_scores: &'a [f64],
    /// The minimisation that ended at this cycle, if any.
    pub minimisation: Option<&'a MinimisationSummary>,
}

/// The streamed file of one method.
pub struct MethodWriter {
    stream: Stream,
    layout: Layout,
    states: bool,
    members: Option<usize>,
    variational: bool,
    ranks: Option<usize>,
    member_buffer: Vec<Vec<f64>>,
    /// Per-field RMSE values per record (forecast then analysis per field).
    field_scores: usize,
}

const MINIMISATION_VARS: [(&str, &str); 7] = [
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
    (
        "minimiser_converged",
        "1 if the gradient tolerance was met, 0 if the best iterate was used (iteration cap or no further progress)",
    ),
];

impl MethodWriter {
    fn create(files: &RunFiles, entry: &MethodEntry) -> Result<Self, IoError> {
        let config = &files.config;
        let layout = files.layout.clone();
        let ensemble = entry.method.ensemble_size();
        let members = ensemble.filter(|_| config.output.members && config.output.states);
        let variational = entry.method.minimises();
        let mut dims = layout.dims.clone();
        let mut fixed = layout.fixed.clone();
        if let Some(m) = members {
            dims.push(("member".into(), m));
        }
        if let Some(m) = ensemble {
            dims.push(("rank".into(), m + 1));
            fixed.push((
                StreamVar::new("rank_histogram", &["rank"], StreamType::I32)
                    .attr(
                        "long_name",
                        "rank of the truth among the analysis members, after burn-in",
                    )
                    .attr("units", "1"),
                vec![0.0; m + 1],
            ));
        }
        fixed.push((
            StreamVar::new("stopped_at_cycle", &[], StreamType::I32).attr(
                "long_name",
                "cycle (0-based) at which the method was stopped; -1 if it ran to the end",
            ),
            vec![-1.0],
        ));
        let mut records = vec![time_var(&layout)];
        if config.output.states {
            records.extend(layout.state_vars("forecast_mean", "forecast (prior) mean", None));
            records.extend(layout.state_vars(
                "forecast_spread",
                "forecast standard deviation",
                None,
            ));
            records.extend(layout.state_vars("analysis_mean", "analysis (posterior) mean", None));
            records.extend(layout.state_vars(
                "analysis_spread",
                "analysis standard deviation",
                None,
            ));
            if members.is_some() {
                records.extend(layout.state_vars(
                    "analysis_members",
                    "analysis member",
                    Some("member"),
                ));
            }
        }
        for (name, long) in CycleScores::NAMES {
            records.push(
                StreamVar::new(name, &["time"], StreamType::F64)
                    .attr("long_name", long)
                    .attr("units", "1"),
            );
        }
        // Per-field RMSE (forecast, then analysis), in the field's units.
        for (stage, long) in [("f", "forecast"), ("a", "analysis")] {
            for (field, units) in &files.score_fields {
                records.push(
                    StreamVar::new(&format!("rmse_{stage}_{field}"), &["time"], StreamType::F64)
                        .attr(
                            "long_name",
                            format!("RMSE of the {long} mean over the active points of {field}")
                                .as_str(),
                        )
                        .attr("units", units.as_str()),
                );
            }
        }
        if variational {
            for (name, long) in MINIMISATION_VARS {
                records.push(
                    StreamVar::new(name, &["time"], StreamType::F64)
                        .attr("long_name", long)
                        .attr("units", "1"),
                );
            }
        }
        let method_json = serde_json::to_string(&entry.method).expect("method serialises");
        let mut attributes = global_attributes(
            config,
            &files.model,
            &format!("rime experiment: {} with {}", files.model, entry.label),
            files.chronology,
        );
        for (k, v) in [
            ("method_label", entry.label.as_str()),
            ("method_name", entry.method.name()),
            ("method_config", method_json.as_str()),
        ] {
            attributes.push((k.into(), v.into()));
        }
        let header = StreamHeader {
            record_dim: "time".into(),
            dims,
            attributes,
            fixed,
            records,
        };
        let stream = Stream::create(
            &files.target.dir,
            &entry.label,
            header,
            files.target.format,
            config.output.flush_every,
        )?;
        let member_buffer = layout
            .fields
            .iter()
            .map(|f| vec![0.0; f.len * members.unwrap_or(0)])
            .collect();
        Ok(Self {
            stream,
            layout,
            states: config.output.states,
            members,
            variational,
            ranks: ensemble.map(|m| m + 1),
            member_buffer,
            field_scores: 2 * files.score_fields.len(),
        })
    }

    /// Whether the file keeps the analysis members.
    pub fn has_members(&self) -> bool {
        self.members.is_some()
    }

    /// Appends cycle `k`.
    ///
    /// # Errors
    /// A write that fails.
    pub fn record(&mut self, k: usize, r: &CycleRecord<'_>) -> Result<(), IoError> {
        let mut record: Vec<&[f64]> = vec![std::slice::from_ref(&r.time)];
        if self.states {
            for v in [
                &r.forecast.mean,
                &r.forecast.std,
                &r.analysis.mean,
                &r.analysis.std,
            ] {
                record.extend(self.layout.slices(v.as_slice()));
            }
            if let Some(m) = self.members {
                let e = r.members.filter(|e| e.ncols() == m);
                for (f, buffer) in self.layout.fields.iter().zip(&mut self.member_buffer) {
                    for j in 0..m {
                        let out = &mut buffer[j * f.len..(j + 1) * f.len];
                        match e {
                            Some(e) => out.copy_from_slice(
                                &e.column(j).as_slice()[f.offset..f.offset + f.len],
                            ),
                            None => out.fill(f64::NAN),
                        }
                    }
                }
                record.extend(self.member_buffer.iter().map(Vec::as_slice));
            }
        }
        let scores = r.scores.values();
        record.extend(scores.iter().map(std::slice::from_ref));
        const NAN: [f64; 1] = [f64::NAN];
        for i in 0..self.field_scores {
            record.push(r.field_scores.get(i..=i).unwrap_or(&NAN));
        }
        let minimisation = r.minimisation.map_or([f64::NAN; 7], |m| {
            [
                m.iterations as f64,
                m.cost_initial,
                m.last.cost,
                m.last.cost_b + m.last.cost_q,
                m.last.cost_o,
                m.last.gradient_norm,
                f64::from(u8::from(m.converged)),
            ]
        });
        if self.variational {
            record.extend(minimisation.iter().map(std::slice::from_ref));
        }
        self.stream.append(k, &record)
    }

    /// Writes the end-of-run values (rank histogram, divergence), closes
    /// the file and moves it into place; returns its path.
    ///
    /// # Errors
    /// A write or rename that fails.
    pub fn finish(
        mut self,
        status: &Status,
        histogram: Option<&RankHistogram>,
    ) -> Result<PathBuf, IoError> {
        if let (Some(ranks), Some(h)) = (self.ranks, histogram) {
            let counts: Vec<f64> = h
                .counts
                .iter()
                .map(|&c| c.min(i32::MAX as u64) as f64)
                .collect();
            if counts.len() == ranks {
                self.stream
                    .writer
                    .rewrite_fixed("rank_histogram", &counts)?;
            }
        }
        if let Some(cycle) = status.stopped_at() {
            self.stream
                .writer
                .rewrite_fixed("stopped_at_cycle", &[cycle as f64])?;
        }
        self.stream.finish()
    }
}

/// One entry of `summary.json`. The shape is stable: scripts read it.
#[derive(Serialize)]
struct MethodSummary<'a> {
    label: &'a str,
    name: &'a str,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    stopped_at_cycle: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    rmse_a: Option<f64>,
    rmse_a_ci95: Option<f64>,
    rmse_f: Option<f64>,
    spread_a: Option<f64>,
    crps_a: Option<f64>,
    spread_skill_a: Option<f64>,
    omb_rms: Option<f64>,
    oma_rms: Option<f64>,
    desroziers_r_ratio: Option<f64>,
    desroziers_hbh_ratio: Option<f64>,
    /// Per-field RMSE (models with more than one field).
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    fields: &'a [super::runner::FieldSummary],
    /// Several observation sets: each set's innovation statistics.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    sets: &'a [super::runner::SetSummary],
    /// Verification sets: the error of the estimates at their sites.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    verification: &'a [super::runner::VerificationSummary],
    /// Several fields: the unit-free headline (RMS over the fields of
    /// each field's RMSE over its climatological std).
    #[serde(skip_serializing_if = "Option::is_none")]
    rmse_a_normalised: Option<f64>,
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
    /// Minimisations that stopped before meeting the gradient tolerance
    /// (their best iterate was used).
    not_converged: usize,
    mean_iterations: f64,
    max_iterations: u64,
}

#[derive(Serialize)]
struct RunSummary<'a> {
    experiment: String,
    seed: u64,
    cycles: usize,
    burn_in: usize,
    has_truth: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    truth: Option<&'static str>,
    observations: &'static str,
    /// Peak resident memory of the run's process, MiB.
    peak_memory_mib: Option<f64>,
    /// Exactly the files this run wrote (besides summary.json).
    files: Vec<String>,
    rime_version: &'static str,
    methods: Vec<MethodSummary<'a>>,
}

fn netcdf_name(label: &str) -> String {
    format!("{label}.nc")
}

/// Writes `summary.json` into `dir` (created if needed), atomically;
/// returns its path.
///
/// # Errors
/// A directory or file that cannot be written.
pub fn write_summary(report: &Report, dir: &Path) -> Result<PathBuf, IoError> {
    create_folder(dir)?;
    let path = dir.join("summary.json");
    io::write_atomic(&path, summary_json(report).as_bytes())?;
    Ok(path)
}

/// The `summary.json` text.
pub fn summary_json(report: &Report) -> String {
    let methods = report
        .methods
        .iter()
        .map(|m| {
            let reason = match &m.status {
                Status::Diverged { reason, .. } | Status::Failed { reason, .. } => {
                    Some(reason.clone())
                }
                Status::Ok => None,
                other => Some(other.describe()),
            };
            let (status, cycle) = (m.status.name(), m.status.stopped_at());
            let s = &m.summary;
            MethodSummary {
                label: &m.label,
                name: m.entry.method.name(),
                status,
                stopped_at_cycle: cycle,
                reason,
                rmse_a: s.rmse_a,
                rmse_a_ci95: s.rmse_a_ci95,
                rmse_f: s.rmse_f,
                spread_a: s.spread_a,
                crps_a: s.crps_a,
                spread_skill_a: s.spread_skill_a,
                omb_rms: s.omb_rms,
                oma_rms: s.oma_rms,
                desroziers_r_ratio: s.desroziers_r_ratio,
                desroziers_hbh_ratio: s.desroziers_hbh_ratio,
                fields: &s.fields,
                sets: &s.sets,
                verification: &s.verification,
                rmse_a_normalised: s.rmse_a_normalised,
                time_per_cycle_s: m.time_per_cycle_s,
                minimisation: (!m.minimisations.is_empty()).then(|| MinimisationStats {
                    count: m.minimisations.len(),
                    not_converged: m.minimisations.iter().filter(|r| !r.converged).count(),
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
        has_truth: report.has_truth,
        truth: (report.has_truth && report.config.output.states).then_some("truth.nc"),
        observations: "observations.nc",
        peak_memory_mib: report
            .peak_memory_bytes
            .map(|b| (b as f64 / 1048576.0 * 10.0).round() / 10.0),
        files: report
            .files
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect(),
        rime_version: env!("CARGO_PKG_VERSION"),
        methods,
    };
    serde_json::to_string_pretty(&summary).expect("summary serialises") + "\n"
}

/// The results table as Markdown (also printed by the CLI). With a truth:
/// analysis RMSE and its interval, spread, CRPS and the published score;
/// without: the innovation statistics.
pub fn table(report: &Report) -> String {
    let f = |x: Option<f64>| x.map_or("—".to_string(), |v| format!("{v:.4}"));
    let status = |s: &Status| match s {
        Status::NotConverged { minimisations, .. } => {
            format!("not converged ({minimisations})")
        }
        Status::WorseThanClimatology { .. } => "worse than climatology".into(),
        other => other.describe(),
    };
    // Several fields: the headline is each field's RMSE over its
    // climatological std, combined; an RMSE over all variables would add
    // metres to newtons per metre.
    let normalised = report
        .methods
        .iter()
        .any(|m| m.summary.rmse_a_normalised.is_some());
    let header: &[&str] = if report.has_truth {
        &[
            "method",
            if normalised {
                "analysis RMSE / clim. std (fields)"
            } else {
                "analysis RMSE"
            },
            "±95%",
            "spread",
            "CRPS",
            "expected",
        ]
    } else {
        &[
            "method",
            "O−B rms",
            "O−A rms",
            "Desroziers R / assumed R",
            "spread",
        ]
    };
    let mut out = format!(
        "| {} | status | ms/cycle |\n|{}\n",
        header.join(" | "),
        "---|".repeat(header.len() + 2)
    );
    for m in &report.methods {
        let s = &m.summary;
        let mut cells = vec![m.label.clone()];
        if report.has_truth {
            let expected = m.expected.map_or("—".to_string(), |e| {
                let mark = if m.meets_expectation() == Some(true) {
                    "✓"
                } else {
                    "✗"
                };
                format!("{:.2} ± {:.2} {mark}", e.rmse_a, e.tolerance)
            });
            let (headline, interval) = if normalised {
                (s.rmse_a_normalised, None)
            } else {
                (s.rmse_a, s.rmse_a_ci95)
            };
            cells.extend([
                f(headline),
                f(interval),
                f(s.spread_a),
                f(s.crps_a),
                expected,
            ]);
        } else {
            cells.extend([
                f(s.omb_rms),
                f(s.oma_rms),
                f(s.desroziers_r_ratio),
                f(s.spread_a),
            ]);
        }
        cells.push(status(&m.status));
        cells.push(format!("{:.3}", m.time_per_cycle_s * 1e3));
        out += &format!("| {} |\n", cells.join(" | "));
    }
    out + &field_tables(report) + &set_tables(report) + &verification_tables(report)
}

/// Verification sets: the RMSE of each method's forecast and analysis
/// means at the sets' sites against the truth there.
fn verification_tables(report: &Report) -> String {
    per_set_table(
        report,
        "Verification sets (not assimilated), RMSE against the truth at their sites, time means after burn-in (forecast → analysis ± 95 %)",
        |m| &m.summary.verification,
        |s| &s.set,
        |s| {
            format!(
                "{} → {} ± {}",
                significant(s.rmse_f),
                significant(s.rmse_a),
                significant(s.rmse_a_ci95)
            )
        },
    )
}

/// A table with one row per method and one column per set: the sets named
/// by the first method that has any, each cell `cell` of the method's
/// summary of that set (a dash where it has none); empty without sets.
fn per_set_table<S>(
    report: &Report,
    title: &str,
    sets: impl Fn(&super::runner::MethodReport) -> &[S],
    name: impl Fn(&S) -> &str,
    cell: impl Fn(&S) -> String,
) -> String {
    let Some(names): Option<Vec<String>> = report
        .methods
        .iter()
        .find(|m| !sets(m).is_empty())
        .map(|m| sets(m).iter().map(|s| name(s).to_string()).collect())
    else {
        return String::new();
    };
    let mut out = format!(
        "\n{title}:\n\n| method | {} |\n|{}\n",
        names.join(" | "),
        "---|".repeat(names.len() + 1)
    );
    for m in &report.methods {
        let cells: Vec<String> = names
            .iter()
            .map(|n| {
                sets(m)
                    .iter()
                    .find(|s| name(s) == n)
                    .map_or("—".to_string(), &cell)
            })
            .collect();
        out += &format!("| {} | {} |\n", m.label, cells.join(" | "));
    }
    out
}

/// Several observation sets: each set's O-B and O-A rms and Desroziers
/// ratio per method.
fn set_tables(report: &Report) -> String {
    per_set_table(
        report,
        "Innovations per observation set, time means after burn-in (O−B rms → O−A rms, Desroziers R / assumed R)",
        |m| &m.summary.sets,
        |s| &s.set,
        |s| {
            format!(
                "{} → {}, {}",
                significant(s.omb_rms),
                significant(s.oma_rms),
                significant(s.desroziers_r_ratio)
            )
        },
    )
}

/// Four significant digits, or a dash.
fn significant(x: Option<f64>) -> String {
    match x {
        Some(v) if v.is_finite() => {
            let a = v.abs();
            if a != 0.0 && !(1e-2..1e5).contains(&a) {
                format!("{v:.3e}")
            } else {
                let decimals = if a == 0.0 {
                    3
                } else {
                    (3 - a.log10().floor() as i32).max(0) as usize
                };
                format!("{v:.decimals$}")
            }
        }
        _ => "—".into(),
    }
}

/// For twins of models with several fields: the time-mean forecast
/// (background) and analysis RMSE of every method field by field, and,
/// where a variational method ran, every method's analysis RMSE per field
/// at the cycles its windows ended (the parameter error per window when
/// parameters sit in the state).
fn field_tables(report: &Report) -> String {
    let Some(names): Option<Vec<(String, String)>> = report
        .methods
        .iter()
        .find(|m| !m.summary.fields.is_empty())
        .map(|m| {
            m.summary
                .fields
                .iter()
                .map(|f| (f.field.clone(), f.units.clone()))
                .collect()
        })
    else {
        return String::new();
    };
    let heads: Vec<String> = names.iter().map(|(n, u)| format!("{n} ({u})")).collect();
    let mut out = format!(
        "\nRMSE per field, time means after burn-in (background → analysis):\n\n| method | {} |\n|{}\n",
        heads.join(" | "),
        "---|".repeat(names.len() + 1)
    );
    for m in &report.methods {
        let cells: Vec<String> = names
            .iter()
            .map(|(n, _)| {
                m.summary
                    .fields
                    .iter()
                    .find(|f| &f.field == n)
                    .map_or("—".to_string(), |f| {
                        format!("{} → {}", significant(f.rmse_f), significant(f.rmse_a))
                    })
            })
            .collect();
        out += &format!("| {} | {} |\n", m.label, cells.join(" | "));
    }
    // The scale each field's error is judged against.
    if let Some(m) = report.methods.iter().find(|m| {
        m.summary
            .fields
            .iter()
            .any(|f| f.climatological_std.is_some())
    }) {
        let cells: Vec<String> = names
            .iter()
            .map(|(n, _)| {
                significant(
                    m.summary
                        .fields
                        .iter()
                        .find(|f| &f.field == n)
                        .and_then(|f| f.climatological_std),
                )
            })
            .collect();
        out += &format!("| climatological std | {} |\n", cells.join(" | "));
    }
    let nf = names.len();
    let rows: Vec<(usize, &str, &[f64])> = report
        .methods
        .iter()
        .flat_map(|m| {
            m.window_fields
                .iter()
                .filter(|(_, v)| v.len() == 2 * nf)
                .map(|(c, v)| (*c, m.label.as_str(), &v[nf..]))
        })
        .collect();
    if rows.is_empty() {
        return out;
    }
    out += &format!(
        "\nAnalysis RMSE per field at the end of each variational window:\n\n| cycle | method | {} |\n|{}\n",
        heads.join(" | "),
        "---|".repeat(names.len() + 2)
    );
    for (c, label, values) in rows {
        let cells: Vec<String> = values.iter().map(|v| significant(Some(*v))).collect();
        out += &format!("| {c} | {label} | {} |\n", cells.join(" | "));
    }
    out
}

/// A file of model trajectories, as `rime simulate` writes it: the
/// state over `(time, trajectory, field dims)` (the layout of `truth.nc`
/// with a `trajectory` dimension: independent runs stepped together), an
/// integer `split` per time (0 train, 1 validation, 2 test) and the
/// caller's global attributes. Streamed record by record as
/// `<name>.partial.nc`, renamed to `<name>.nc` when complete.
pub struct TrajectoryFile {
    stream: Stream,
    layout: Layout,
    buffers: Vec<Vec<f64>>,
    /// Forcing variables per record.
    forcing: usize,
}

impl TrajectoryFile {
    /// Creates `path` (which must end in `.nc`) for `runs` trajectories of
    /// states laid out as `geometry` says (variables `state` or
    /// `state_<field>`), and the model's forcing fields (their names, units
    /// and layouts, from [`crate::core::Model::forcing`]; none for an
    /// unforced model) as variables `forcing_<name>` over `time` and the
    /// dimensions of the field each is laid out like (one value per record,
    /// shared by the trajectories).
    ///
    /// # Errors
    /// A path without a `.nc` name, or a file that cannot be created.
    pub fn create(
        path: &Path,
        geometry: &Geometry,
        runs: usize,
        attributes: Vec<(String, StreamAttr)>,
        format: NetcdfFormat,
        forcing: &[crate::core::ForcingField],
    ) -> Result<Self, IoError> {
        let bad = || IoError::InvalidDataset {
            path: Some(path.to_path_buf()),
            reason: "the output file's name must end in `.nc`".into(),
        };
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".nc"))
            .filter(|n| !n.is_empty())
            .ok_or_else(bad)?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if format == NetcdfFormat::Netcdf4 && !cfg!(feature = "netcdf") {
            return Err(IoError::FeatureDisabled { path: dir });
        }
        create_folder(&dir)?;
        let layout = Layout::new(geometry, None);
        let mut dims = layout.dims.clone();
        dims.insert(0, ("trajectory".into(), runs.max(1)));
        let mut fixed = layout.fixed.clone();
        fixed.push((
            StreamVar::new("trajectory", &["trajectory"], StreamType::I32)
                .attr("long_name", "index of the independent run"),
            (0..runs).map(|r| r as f64).collect(),
        ));
        let mut records = vec![
            time_var_named("model time", &layout),
            StreamVar::new("split", &["time"], StreamType::I32)
                .attr("long_name", "which split the time belongs to")
                .attr("flag_values", StreamAttr::I32(vec![0, 1, 2]))
                .attr("flag_meanings", "train validation test"),
        ];
        records.extend(layout.state_vars("state", "model state", Some("trajectory")));
        for f in forcing {
            let like = &layout.fields[f.like];
            let mut dims = vec!["time"];
            dims.extend(like.dims.iter().map(String::as_str));
            let mut var = StreamVar::new(&format!("forcing_{}", f.name), &dims, StreamType::F64)
                .attr("long_name", f.long_name.as_str())
                .attr("units", f.units.as_str())
                .attr("rime_role", "forcing")
                .attr("grid_position", like.position);
            if let Some(c) = &like.coordinates {
                var = var.attr("coordinates", c.as_str());
            }
            records.push(var);
        }
        let header = StreamHeader {
            record_dim: "time".into(),
            dims,
            attributes,
            fixed,
            records,
        };
        let stream = Stream::create(&dir, name, header, format, 100)?;
        let buffers = layout
            .fields
            .iter()
            .map(|f| vec![0.0; f.len * runs])
            .collect();
        Ok(Self {
            stream,
            layout,
            buffers,
            forcing: forcing.len(),
        })
    }

    /// Appends record `k`: its time, split code, the states, `n x runs`
    /// (one trajectory per column), and the forcing at its time (one slice
    /// per forcing field given to [`create`](Self::create)).
    ///
    /// # Errors
    /// A write that fails.
    pub fn append(
        &mut self,
        k: usize,
        time: f64,
        split: i32,
        states: &DMatrix<f64>,
        forcing: &[&[f64]],
    ) -> Result<(), IoError> {
        assert_eq!(forcing.len(), self.forcing, "one slice per forcing field");
        for (f, buffer) in self.layout.fields.iter().zip(&mut self.buffers) {
            for (r, column) in states.column_iter().enumerate() {
                buffer[r * f.len..(r + 1) * f.len]
                    .copy_from_slice(&column.as_slice()[f.offset..f.offset + f.len]);
            }
        }
        let split = f64::from(split);
        let mut record: Vec<&[f64]> =
            vec![std::slice::from_ref(&time), std::slice::from_ref(&split)];
        record.extend(self.buffers.iter().map(Vec::as_slice));
        record.extend(forcing);
        self.stream.append(k, &record)
    }

    /// Flushes the file and moves it to its final name.
    ///
    /// # Errors
    /// A write or rename that fails.
    pub fn finish(self) -> Result<PathBuf, IoError> {
        self.stream.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Field, GridPosition};

    #[test]
    fn fields_share_equal_axes_and_get_their_own_otherwise() {
        let mut u = Field::grid(
            "u",
            "velocity x",
            "m s-1",
            vec![0.5, 1.5, 2.5],
            vec![0.0, 1.0],
        );
        u.position = GridPosition::FaceX;
        let mut h = Field::grid("h", "thickness", "m", vec![0.0, 1.0, 2.0], vec![0.0, 1.0]);
        h.mask = Some(vec![true, false, true, true, true, true]);
        let a = Field::grid(
            "a",
            "concentration",
            "1",
            vec![0.0, 1.0, 2.0],
            vec![0.0, 1.0],
        );
        let g = Geometry::new(vec![h, a, u], [None, None], CoordinateUnits::Metres);
        let l = Layout::new(&g, None);
        let dims: Vec<_> = l.dims.iter().map(|(n, len)| (n.as_str(), *len)).collect();
        assert_eq!(dims, [("x", 3), ("y", 2), ("x_face_x", 3)]);
        assert_eq!(l.fields[0].dims, ["y", "x"]);
        assert_eq!(l.fields[1].dims, ["y", "x"]);
        assert_eq!(l.fields[2].dims, ["y", "x_face_x"]);
        assert_eq!(l.fields[2].suffix, "_u");
        assert!(
            l.fixed
                .iter()
                .any(|(v, d)| v.name == "mask_h" && d[1] == 0.0)
        );
        let vars = l.state_vars("truth", "true state", None);
        assert_eq!(vars[2].name, "truth_u");
        // One field written: no suffix, its own axes named x and y.
        let l = Layout::new(&g, Some(&["u".to_string()]));
        assert_eq!(l.fields[0].suffix, "");
        assert_eq!(l.fields[0].dims, ["y", "x"]);
        let state: Vec<f64> = (0..18).map(f64::from).collect();
        assert_eq!(l.slices(&state).next().unwrap(), &state[12..18]);
    }
}
