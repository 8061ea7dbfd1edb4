//! A reader of the CORDEX ML-Bench downscaling benchmark's NetCDF files
//! into [`DownscalingData`].
//!
//! # The benchmark's layout
//!
//! As described by the repository `WCRP-CORDEX/ml-benchmark` on GitHub
//! (`README.md`, `data/README.md`, `data/experiments.ipynb`,
//! `training/training.py`, `training/training.ipynb`,
//! `submission/submission.py` and the NetCDF templates in
//! `format_predictions/templates/`). The data are on Zenodo (record
//! 17957264), one zip per domain: New Zealand (`NZ`), the Alps (`ALPS`) and
//! South Africa (`SA`):
//!
//! ```text
//! {domain}_domain/
//!   train/ESD_pseudo_reality/predictors/{GCM}_1961-1980.nc
//!   train/ESD_pseudo_reality/predictors/Static_fields.nc
//!   train/ESD_pseudo_reality/target/pr_tasmax_{GCM}_1961-1980.nc
//!   train/Emulator_hist_future/...   (the same, period 1961-1980_2080-2099)
//!   test/{historical,mid_century,end_century}/predictors/{perfect,imperfect}/{GCM}_{period}.nc
//! ```
//!
//! - Predictors (`{GCM}_{period}.nc`): daily fields on 16 x 16 coarse points
//!   (about 150 to 200 km; 2° in SA), 15 `float` variables `z_850`,
//!   `z_700`, `z_500` and the same for `u`, `v`, `t` and `q`, each over
//!   `(time, lat, lon)`: one variable per pressure level, no level
//!   dimension. `lat` and `lon` are 1-D coordinate variables (SA: `lat`
//!   from -40 to -10, ascending). SA files also hold `time_bnds`.
//! - Targets (`pr_tasmax_{GCM}_{period}.nc`): both `pr` (daily
//!   precipitation, `double` in SA) and `tasmax` (`float`) on a 128 x 128
//!   grid of about 10 km, over `(time, lat, lon)` on a regular lon/lat grid
//!   (NZ 0.11°, SA 0.1°) or, in ALPS, over `(time, y, x)` on the regional
//!   model's Lambert conformal grid, with 1-D projection coordinates `x`,
//!   `y` and 2-D `lat(y, x)`, `lon(y, x)` for plotting. `tasmax` is in K
//!   (the templates' `units = "K"`); `pr` is in mm/day (SA template
//!   `units = "mm/day"`; the evaluation's wet-day threshold is 1 mm).
//! - Orography: `Static_fields.nc` (called `static.nc` in the tree of
//!   `data/README.md`), variable `orog(lat, lon)` on the target grid.
//! - Time: daily at 12:00, CF units such as `days since 1961-01-01`
//!   (`proleptic_gregorian`, NZ) or `days since 1949-12-01` (`gregorian`,
//!   ALPS). GCM-driven files may use other calendars, and times need not be
//!   contiguous: the SA emulator files hold 14600 days for 40 years.
//! - Splits: by file, none inside the files. Training is on 1961–1980
//!   (`ESD_pseudo_reality`) or 1961–1980 plus 2080–2099
//!   (`Emulator_hist_future`); the tests give predictors of 1981–2000,
//!   2041–2060 and 2080–2099 (perfect: upscaled from the regional model;
//!   imperfect: from the driving GCM) whose targets are not published. The
//!   example notebook holds out the last training years (1975–1980).
//!
//! # What the reader does
//!
//! [`read`] reads the files named in a [`CordexFiles`] (paths relative to a
//! base folder) with [`read_dataset`]; [`from_datasets`] turns the
//! in-memory datasets into a [`DownscalingData`]:
//!
//! - Predictor channels: every `float` variable over `(time, y, x)` or
//!   `(time, level, y, x)` on the file's coarse grid (the grid of its first
//!   such variable), in file order; or those named in
//!   [`CordexFiles::predictor_variables`], in that order. A variable with a
//!   level dimension (`plev`, `level`, `pressure`, `lev`, `pressure_level`
//!   or `isobaricInhPa`) gives one channel per level, named `{var}_{hPa}`
//!   (level values above 2000 are taken as Pa); a name such as `z_500` also
//!   picks that level of a variable `z` with a level dimension. Predictors
//!   must be finite.
//! - Several predictor files: consecutive files with the same times form a
//!   group whose variables are merged by name (a channel may come from only
//!   one file of the group); groups are concatenated in time and must give
//!   the same channels. So a period split over files, variables split over
//!   files, or both, all work.
//! - Targets: the variable [`CordexFiles::target`] of each target file,
//!   over `(time, y, x)`, the files concatenated in order. Missing values
//!   (fill values, a sea mask) stay NaN. Units: `kg m-2 s-1` (or `mm/s`)
//!   is multiplied by 86400 and recorded as `mm/day`; `degC` is converted
//!   to `K`; other units are kept and recorded as found.
//! - Times: CF `days|hours|minutes|seconds since DATE[ TIME]` with the
//!   `calendar` attribute (`standard`, `gregorian`, `proleptic_gregorian`,
//!   `noleap`/`365_day`, `all_leap`/`366_day`, `360_day`). All times are
//!   taken in days since the origin of the first target file's `time`
//!   ([`DownscalingData::time`]), and the predictors' times must equal the
//!   targets' (count and values, to 0.01 day).
//! - Scalars `cos_season`, `sin_season`: cosine and sine of 2π d / L, with
//!   d the day of year (the origin's day of year plus the time, modulo L)
//!   and L = 365.25 days for the standard calendars (365 for `noleap`, 366
//!   for `all_leap`, 360 for `360_day`). 1 January is d = 0.
//! - Statics: the orography (`orog`, else `orography`, `topography` or
//!   `elevation`) of the orography file, checked to be on the target grid.
//! - Grids: the last two dimensions of a variable are y then x; each needs
//!   a 1-D coordinate variable of its own name (`lat`/`lon`, `y`/`x`,
//!   `rlat`/`rlon`, ...), strictly monotonic. A descending coordinate
//!   (latitudes from north to south, as in many files) is reversed and the
//!   data flipped along it, so coordinates always ascend and row 0 is the
//!   southernmost. A grid with only 2-D `lat`/`lon` is refused: rime needs
//!   a regular grid. In ALPS the targets' coordinates are the projection's
//!   `y`/`x` while the predictors' are (as far as the examples show)
//!   degrees.
//! - Split: a `split(time)` variable (0 train, 1 validation, 2 test) in
//!   every target file, else [`CordexFiles::split`]'s fractions of all
//!   times in time order (the benchmark's files have none).
//!
//! Whole files are read into memory (a benchmark target file is about
//! 3 GB), and each variable is decoded to `f64` before it is stored as
//! `f32`.

use std::collections::HashSet;
use std::f64::consts::TAU;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::data::split_code;
use super::downscaling::DownscalingData;
use crate::io::{AttrValue, Dataset, VarData, Variable};

/// The time dimension and coordinate variable.
const TIME: &str = "time";

/// Names a level (vertical) dimension may have.
const LEVEL_DIMS: [&str; 6] = [
    "plev",
    "level",
    "pressure",
    "lev",
    "pressure_level",
    "isobaricInhPa",
];

/// Names of the orography variable, tried in order.
const OROGRAPHY_NAMES: [&str; 4] = ["orog", "orography", "topography", "elevation"];

/// Predictor and target times closer than this (in days) are the same.
const TIME_TOLERANCE_DAYS: f64 = 1e-2;

/// Which files hold a CORDEX ML-Bench data set and what to take from them
/// (a table of a TOML file, say).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CordexFiles {
    /// Predictor files (`{GCM}_{period}.nc`) in time order: consecutive
    /// files with the same times are merged by variable, the others
    /// concatenated in time.
    pub predictors: Vec<PathBuf>,
    /// Target files (`pr_tasmax_{GCM}_{period}.nc`), concatenated in time.
    pub targets: Vec<PathBuf>,
    /// The file with the fine orography (`Static_fields.nc`), if the model
    /// takes it.
    #[serde(default)]
    pub orography: Option<PathBuf>,
    /// The target variable: `tasmax` or `pr`.
    pub target: String,
    /// Predictor variables or channels (`z`, `z_500`), in channel order;
    /// empty: every float variable over `(time, [level,] y, x)` on the
    /// coarse grid with a time dimension, in file order.
    #[serde(default)]
    pub predictor_variables: Vec<String>,
    /// Train and validation fractions of the times, in time order, used
    /// when the target files have no `split` variable; the rest is test.
    #[serde(default = "default_split")]
    pub split: [f64; 2],
}

fn default_split() -> [f64; 2] {
    [0.8, 0.1]
}

/// Reads a NetCDF file: through libnetcdf (any format) when rime is built
/// with the `netcdf` feature, else in pure Rust (classic formats only).
///
/// # Errors
/// An unreadable file, naming it; a NetCDF-4 (HDF5) file without the
/// `netcdf` feature says how to build rime with it.
pub fn read_dataset(path: &Path) -> Result<Dataset, String> {
    read_file(path).map_err(|e| {
        let shown = path.display().to_string();
        if e.contains(&shown) {
            e
        } else {
            format!("{shown}: {e}")
        }
    })
}

#[cfg(feature = "netcdf")]
fn read_file(path: &Path) -> Result<Dataset, String> {
    crate::io::read_netcdf(path).map_err(|e| e.to_string())
}

#[cfg(not(feature = "netcdf"))]
fn read_file(path: &Path) -> Result<Dataset, String> {
    crate::io::read_classic(path).map_err(|e| {
        if is_hdf5(path) {
            "a NetCDF-4 (HDF5) file: rime reads these only when built with \
             `--features netcdf` (needs libnetcdf, e.g. `apt-get install libnetcdf-dev`); \
             or convert it to 64-bit offset NetCDF with `nccopy -k 2 IN OUT`"
                .to_string()
        } else {
            e.to_string()
        }
    })
}

/// Whether the file starts with the HDF5 signature.
#[cfg(not(feature = "netcdf"))]
fn is_hdf5(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"\x89HDF"
}

/// Reads the files of `files` (paths relative to `base`, absolute ones as
/// they are) and assembles them with [`from_datasets`].
///
/// # Errors
/// An unreadable file, or any error of [`from_datasets`]; each names the
/// file.
pub fn read(files: &CordexFiles, base: &Path) -> Result<DownscalingData, String> {
    let under =
        |paths: &[PathBuf]| -> Vec<PathBuf> { paths.iter().map(|p| base.join(p)).collect() };
    let resolved = CordexFiles {
        predictors: under(files.predictors.as_slice()),
        targets: under(files.targets.as_slice()),
        orography: files.orography.as_ref().map(|p| base.join(p)),
        target: files.target.clone(),
        predictor_variables: files.predictor_variables.clone(),
        split: files.split,
    };
    let predictors = resolved
        .predictors
        .iter()
        .map(|p| read_dataset(p.as_path()))
        .collect::<Result<Vec<_>, _>>()?;
    let targets = resolved
        .targets
        .iter()
        .map(|p| read_dataset(p.as_path()))
        .collect::<Result<Vec<_>, _>>()?;
    let orography = resolved
        .orography
        .as_deref()
        .map(read_dataset)
        .transpose()?;
    from_datasets(&predictors, &targets, orography.as_ref(), &resolved)
}

/// Assembles downscaling samples from datasets in the benchmark's layout
/// (see the module documentation): `predictors[k]` and `targets[k]` were
/// read from `files.predictors[k]` and `files.targets[k]` (the names used
/// in errors), `orography` from `files.orography`.
///
/// # Errors
/// Each names the file and the variable, dimension or key: bad `split`
/// fractions, no file given, a missing target or predictor variable (with
/// what the file has), a variable without a time dimension or with
/// unexpected dimensions, a predictor not on the coarse grid, non-finite
/// predictor or orography values, a grid without 1-D coordinates, grids
/// that differ between files, predictor times that differ from the target
/// times (the first difference), an unsupported time unit or calendar, and
/// shapes that do not match.
pub fn from_datasets(
    predictors: &[Dataset],
    targets: &[Dataset],
    orography: Option<&Dataset>,
    files: &CordexFiles,
) -> Result<DownscalingData, String> {
    let [train, validation] = files.split;
    if !(train >= 0.0 && validation >= 0.0 && train + validation <= 1.0) {
        return Err(format!(
            "key `split`: [train, validation] fractions must be at least 0 and sum to at most 1, \
             got [{train}, {validation}]"
        ));
    }
    if files.target.trim().is_empty() {
        return Err("key `target`: no target variable given (e.g. `tasmax` or `pr`)".to_string());
    }
    if predictors.is_empty() {
        return Err("key `predictors`: no predictor file given".to_string());
    }
    if targets.is_empty() {
        return Err("key `targets`: no target file given".to_string());
    }
    let predictor_labels: Vec<String> = (0..predictors.len())
        .map(|k| label(&files.predictors, k, "predictor"))
        .collect();
    let target_labels: Vec<String> = (0..targets.len())
        .map(|k| label(&files.targets, k, "target"))
        .collect();

    let fine = read_targets(targets, &target_labels, &files.target, files.split)?;
    let coarse = read_predictors(
        predictors,
        &predictor_labels,
        &files.predictor_variables,
        &fine.reference,
        &target_labels[0],
    )?;
    check_times(&coarse, &fine, &predictor_labels, &target_labels)?;
    let (static_names, statics) = match orography {
        None => (Vec::new(), Vec::new()),
        Some(ds) => {
            let file = files.orography.as_ref().map_or_else(
                || "orography dataset".to_string(),
                |p| p.display().to_string(),
            );
            let (name, values) = read_orography(ds, &file, &fine.grid, &target_labels[0])?;
            (vec![name], values)
        }
    };
    let scalars: Vec<f32> = fine
        .times
        .iter()
        .flat_map(|&t| {
            season(
                fine.reference.calendar,
                fine.reference.origin_day_of_year,
                t,
            )
        })
        .map(|v| v as f32)
        .collect();

    Ok(DownscalingData {
        predictor_names: coarse.names,
        coarse_shape: [coarse.grid.y.len(), coarse.grid.x.len()],
        coarse_x: coarse.grid.x,
        coarse_y: coarse.grid.y,
        predictors: coarse.values,
        scalar_names: vec!["cos_season".to_string(), "sin_season".to_string()],
        scalars,
        static_names,
        fine_shape: [fine.grid.y.len(), fine.grid.x.len()],
        fine_x: fine.grid.x,
        fine_y: fine.grid.y,
        statics,
        target_name: files.target.clone(),
        target_units: fine.units,
        targets: fine.values,
        time: fine.times,
        split: fine.split,
    })
}

/// The name of file `k` in errors.
fn label(paths: &[PathBuf], k: usize, kind: &str) -> String {
    paths.get(k).map_or_else(
        || format!("{kind} dataset {k}"),
        |p| p.display().to_string(),
    )
}

/// The names of a dataset's variables, for errors.
fn variable_names(ds: &Dataset) -> String {
    ds.variables
        .iter()
        .map(|v| v.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A text attribute of a variable.
fn text_attr<'a>(v: &'a Variable, name: &str) -> Option<&'a str> {
    match v.attribute(name) {
        Some(AttrValue::Text(s)) => Some(s.as_str()),
        _ => None,
    }
}

/// The 1-D coordinate variable `dim(dim)`, if any.
fn coordinate_variable<'a>(ds: &'a Dataset, dim: &str) -> Option<&'a Variable> {
    ds.variable(dim)
        .filter(|v| v.dimensions.len() == 1 && v.dimensions[0] == dim)
}

// ---------------------------------------------------------------- targets

/// The targets of all target files, concatenated in time.
struct TargetSet {
    /// The fine grid (of the first file; the others match it).
    grid: Grid,
    /// The first file's time axis: all times count from its origin.
    reference: TimeAxis,
    /// Times, in days since `reference`'s origin.
    times: Vec<f64>,
    /// The target file of each time.
    file_of: Vec<usize>,
    units: String,
    /// `[time, ny, nx]`, coordinates ascending.
    values: Vec<f32>,
    split: Vec<i32>,
}

fn read_targets(
    datasets: &[Dataset],
    labels: &[String],
    name: &str,
    fractions: [f64; 2],
) -> Result<TargetSet, String> {
    let mut reference: Option<TimeAxis> = None;
    let mut first_grid: Option<Grid> = None;
    let mut first_units: Option<String> = None;
    let mut times = Vec::new();
    let mut file_of = Vec::new();
    let mut values: Vec<f32> = Vec::new();
    let mut splits: Vec<Option<Vec<i32>>> = Vec::with_capacity(datasets.len());
    for (k, (ds, file)) in datasets.iter().zip(labels).enumerate() {
        let var = ds.variable(name).ok_or_else(|| {
            format!(
                "{file}: no target variable `{name}` (the file has: {})",
                variable_names(ds)
            )
        })?;
        let dims = &var.dimensions;
        if !dims.iter().any(|d| d == TIME) {
            return Err(format!(
                "{file}: target `{name}` has no `{TIME}` dimension (its dimensions: ({}))",
                dims.join(", ")
            ));
        }
        if dims.len() != 3 || dims[0] != TIME {
            return Err(format!(
                "{file}: target `{name}` is over ({}); expected (time, y, x)",
                dims.join(", ")
            ));
        }
        let axis = time_axis(ds, file)?;
        let first_axis = reference.get_or_insert_with(|| axis.clone());
        let shifted = axis
            .relative_to(first_axis)
            .map_err(|e| format!("{file}: variable `time`: {e} of {}", labels[0]))?;
        let grid = grid_of(ds, var, file)?;
        let reference_grid = first_grid.get_or_insert_with(|| grid.clone());
        if !reference_grid.same_coords(&grid) {
            return Err(format!(
                "{file}: target grid ({}) differs from that of {} ({})",
                grid.describe(),
                labels[0],
                reference_grid.describe()
            ));
        }
        let (conversion, units) = target_units(text_attr(var, "units").unwrap_or_default());
        let reference_units = first_units.get_or_insert_with(|| units.clone());
        if *reference_units != units {
            return Err(format!(
                "{file}: target `{name}` is in `{units}`, but in `{reference_units}` in {}",
                labels[0]
            ));
        }
        let data = var.decoded_f64().map_err(|e| format!("{file}: {e}"))?;
        let nt = shifted.len();
        let size = grid.size();
        if data.len() != nt * size {
            return Err(format!(
                "{file}: target `{name}` has {} values, but time ({nt}) x {} x {} needs {}",
                data.len(),
                grid.y.len(),
                grid.x.len(),
                nt * size
            ));
        }
        let start = values.len();
        values.resize(start + nt * size, 0.0);
        for (src, dst) in data
            .chunks_exact(size)
            .zip(values[start..].chunks_exact_mut(size))
        {
            grid.copy_into(src, dst, conversion);
        }
        splits.push(split_variable(ds, nt, file)?);
        times.extend(shifted);
        file_of.extend(std::iter::repeat_n(k, nt));
    }
    let (Some(reference), Some(grid), Some(units)) = (reference, first_grid, first_units) else {
        return Err("key `targets`: no target file given".to_string());
    };
    let total = times.len();
    let with_split = splits.iter().flatten().count();
    let split: Vec<i32> = if with_split == 0 {
        (0..total)
            .map(|k| split_code(k, total, fractions))
            .collect()
    } else if with_split == splits.len() {
        splits.into_iter().flatten().flatten().collect()
    } else {
        let k = splits.iter().position(Option::is_none).unwrap_or(0);
        return Err(format!(
            "{}: no `split` variable, while other target files have one: \
             give every target file a `split(time)`, or none",
            labels[k]
        ));
    };
    Ok(TargetSet {
        grid,
        reference,
        times,
        file_of,
        units,
        values,
        split,
    })
}

/// The file's `split(time)` codes, if it has them.
fn split_variable(ds: &Dataset, nt: usize, file: &str) -> Result<Option<Vec<i32>>, String> {
    let Some(v) = ds.variable("split") else {
        return Ok(None);
    };
    if v.dimensions.len() != 1 || v.dimensions[0] != TIME || v.data.len() != nt {
        return Err(format!(
            "{file}: variable `split` must be over (time), one code per time"
        ));
    }
    let codes = v.decoded_f64().map_err(|e| format!("{file}: {e}"))?;
    codes
        .iter()
        .enumerate()
        .map(|(t, &c)| {
            let code = c as i32;
            if (f64::from(code) - c).abs() < 1e-9 && (0..=2).contains(&code) {
                Ok(code)
            } else {
                Err(format!(
                    "{file}: variable `split` is {c} at time index {t}; \
                     expected 0 (train), 1 (validation) or 2 (test)"
                ))
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// How target values are converted.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Conversion {
    Same,
    Scale(f64),
    Shift(f64),
}

impl Conversion {
    fn apply(self, x: f64) -> f64 {
        match self {
            Self::Same => x,
            Self::Scale(s) => x * s,
            Self::Shift(s) => x + s,
        }
    }
}

/// The conversion of a target in `units` and the units it ends in:
/// precipitation fluxes to mm/day, degrees Celsius to kelvin, other units
/// as they are.
fn target_units(units: &str) -> (Conversion, String) {
    let compact = units
        .chars()
        .filter(|&c| !c.is_whitespace() && !matches!(c, '*' | '^' | '.'))
        .collect::<String>()
        .to_lowercase();
    match compact.as_str() {
        "kgm-2s-1" | "kg/m2/s" | "kg/(m2s)" | "kg/m2s" | "mm/s" | "mms-1" => {
            (Conversion::Scale(86400.0), "mm/day".to_string())
        }
        "mm/day" | "mmday-1" | "mm/d" | "mmd-1" | "kgm-2day-1" | "kgm-2d-1" | "kg/m2/day"
        | "kg/m2/d" => (Conversion::Same, "mm/day".to_string()),
        "k" | "kelvin" | "degk" | "deg_k" | "degreesk" | "degrees_k" => {
            (Conversion::Same, "K".to_string())
        }
        "degc" | "deg_c" | "°c" | "c" | "celsius" | "degreec" | "degreesc" | "degree_c"
        | "degrees_c" | "degree_celsius" | "degrees_celsius" => {
            (Conversion::Shift(273.15), "K".to_string())
        }
        _ => (Conversion::Same, units.to_string()),
    }
}

// ------------------------------------------------------------- predictors

/// The predictors of all predictor files, in time order.
struct PredictorSet {
    names: Vec<String>,
    /// The coarse grid (of the first file; the others match it).
    grid: Grid,
    /// `[time, channel, ny, nx]`, coordinates ascending.
    values: Vec<f32>,
    /// Times, in days since the target reference origin.
    times: Vec<f64>,
    /// The first file of the group holding each time.
    file_of: Vec<usize>,
}

/// A predictor channel: variable `var` (an index into the file's variables)
/// of predictor file `file`, or one of its levels.
#[derive(Clone, Debug)]
struct Channel {
    name: String,
    file: usize,
    var: usize,
    /// `(levels, index)` for a variable with a level dimension.
    level: Option<(usize, usize)>,
}

fn read_predictors(
    datasets: &[Dataset],
    labels: &[String],
    wanted: &[String],
    reference: &TimeAxis,
    target_label: &str,
) -> Result<PredictorSet, String> {
    let mut file_times: Vec<Vec<f64>> = Vec::with_capacity(datasets.len());
    for (ds, file) in datasets.iter().zip(labels) {
        let axis = time_axis(ds, file)?;
        let times = axis
            .relative_to(reference)
            .map_err(|e| format!("{file}: variable `time`: {e} of {target_label}"))?;
        file_times.push(times);
    }
    // Consecutive files with the same times form a group (merged by name).
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (k, times) in file_times.iter().enumerate() {
        let last = groups.len().checked_sub(1);
        match last {
            Some(g) if same_times(&file_times[groups[g][0]], times) => groups[g].push(k),
            _ => groups.push(vec![k]),
        }
    }

    let mut grids: Vec<Option<Grid>> = vec![None; datasets.len()];
    let mut reference_grid: Option<(Grid, String)> = None;
    let mut names: Option<(Vec<String>, usize)> = None;
    let mut values: Vec<f32> = Vec::new();
    let mut times: Vec<f64> = Vec::new();
    let mut file_of: Vec<usize> = Vec::new();
    for group in &groups {
        let channels = group_channels(datasets, group, labels, wanted)?;
        let group_names: Vec<String> = channels.iter().map(|c| c.name.clone()).collect();
        match &names {
            Some((first, from)) => {
                if *first != group_names {
                    return Err(format!(
                        "{}: predictor channels [{}] differ from those of {} [{}]",
                        labels[group[0]],
                        group_names.join(", "),
                        labels[*from],
                        first.join(", ")
                    ));
                }
            }
            None => names = Some((group_names, group[0])),
        }
        // Each file's grid is that of its first channel.
        for ch in &channels {
            if grids[ch.file].is_some() {
                continue;
            }
            let ds = &datasets[ch.file];
            let file = &labels[ch.file];
            let grid = grid_of(ds, &ds.variables[ch.var], file)?;
            match &reference_grid {
                Some((first, from)) => {
                    if !first.same_coords(&grid) {
                        return Err(format!(
                            "{file}: coarse grid ({}) differs from that of {from} ({})",
                            grid.describe(),
                            first.describe()
                        ));
                    }
                }
                None => reference_grid = Some((grid.clone(), file.clone())),
            }
            grids[ch.file] = Some(grid);
        }

        let nt = file_times[group[0]].len();
        let nc = channels.len();
        let size = reference_grid.as_ref().map_or(0, |(g, _)| g.size());
        let mut block = vec![0.0f32; nt * nc * size];
        // The last decoded variable: (file, variable, values).
        let mut cache: (usize, usize, Vec<f64>) = (usize::MAX, usize::MAX, Vec::new());
        for (c, ch) in channels.iter().enumerate() {
            let ds = &datasets[ch.file];
            let var = &ds.variables[ch.var];
            let file = &labels[ch.file];
            let Some(grid) = grids[ch.file].as_ref() else {
                return Err(format!(
                    "{file}: internal error: no grid for predictor `{}`",
                    var.name
                ));
            };
            let n = var.dimensions.len();
            if var.dimensions[n - 2..] != grid.dims[..] {
                return Err(format!(
                    "{file}: predictor `{}` is over ({}), not on the coarse grid ({}, {}) \
                     of the file's first predictor",
                    var.name,
                    var.dimensions.join(", "),
                    grid.dims[0],
                    grid.dims[1]
                ));
            }
            if cache.0 != ch.file || cache.1 != ch.var {
                let decoded = var.decoded_f64().map_err(|e| format!("{file}: {e}"))?;
                cache = (ch.file, ch.var, decoded);
            }
            let data = &cache.2;
            let (levels, level) = ch.level.unwrap_or((1, 0));
            if data.len() != nt * levels * size {
                return Err(format!(
                    "{file}: predictor `{}` has {} values, but time ({nt}) x levels ({levels}) \
                     x grid ({size}) needs {}",
                    var.name,
                    data.len(),
                    nt * levels * size
                ));
            }
            for t in 0..nt {
                let start = (t * levels + level) * size;
                let src = &data[start..start + size];
                if let Some(p) = src.iter().position(|x| !x.is_finite()) {
                    return Err(format!(
                        "{file}: predictor `{}` (channel `{}`) has a non-finite value \
                         (missing or a fill value) at time index {t}, point {p}",
                        var.name, ch.name
                    ));
                }
                let at = (t * nc + c) * size;
                grid.copy_into(src, &mut block[at..at + size], Conversion::Same);
            }
        }
        values.extend_from_slice(&block);
        times.extend_from_slice(&file_times[group[0]]);
        file_of.extend(std::iter::repeat_n(group[0], nt));
    }
    let (Some((names, _)), Some((grid, _))) = (names, reference_grid) else {
        return Err("key `predictors`: no predictor file given".to_string());
    };
    Ok(PredictorSet {
        names,
        grid,
        values,
        times,
        file_of,
    })
}

/// Whether two time axes are the same.
fn same_times(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= TIME_TOLERANCE_DAYS)
}

/// The channels of a group of predictor files with the same times.
fn group_channels(
    datasets: &[Dataset],
    group: &[usize],
    labels: &[String],
    wanted: &[String],
) -> Result<Vec<Channel>, String> {
    let mut channels = Vec::new();
    if wanted.is_empty() {
        for &k in group {
            let ds = &datasets[k];
            let mut grid_dims: Option<&[String]> = None;
            for (index, v) in ds.variables.iter().enumerate() {
                if !is_candidate(v) {
                    continue;
                }
                let dims = &v.dimensions[v.dimensions.len() - 2..];
                if *grid_dims.get_or_insert(dims) != dims {
                    continue;
                }
                channels.extend(channels_of(ds, index, k, &labels[k])?);
            }
        }
    } else {
        for name in wanted {
            let mut found = None;
            for &k in group {
                if let Some(c) = find_channels(&datasets[k], name, k, &labels[k])? {
                    found = Some(c);
                    break;
                }
            }
            let Some(c) = found else {
                let shown: Vec<&str> = group.iter().map(|&k| labels[k].as_str()).collect();
                let has: Vec<String> = group
                    .iter()
                    .map(|&k| variable_names(&datasets[k]))
                    .collect();
                return Err(format!(
                    "predictor variable `{name}` not found in {} (the file has: {})",
                    shown.join(", "),
                    has.join("; ")
                ));
            };
            channels.extend(c);
        }
    }
    let shown: Vec<&str> = group.iter().map(|&k| labels[k].as_str()).collect();
    if channels.is_empty() {
        return Err(format!(
            "{}: no predictor variable over (time, y, x) or (time, level, y, x)",
            shown.join(", ")
        ));
    }
    let mut seen = HashSet::new();
    for c in &channels {
        if !seen.insert(c.name.as_str()) {
            return Err(format!(
                "{}: predictor channel `{}` appears twice (in several files or variables)",
                labels[c.file], c.name
            ));
        }
    }
    Ok(channels)
}

/// Whether a variable is a predictor when none are named: a float over
/// `(time, y, x)` or `(time, level, y, x)`.
fn is_candidate(v: &Variable) -> bool {
    let d = &v.dimensions;
    matches!(v.data, VarData::F32(_) | VarData::F64(_))
        && d.first().is_some_and(|t| t == TIME)
        && (d.len() == 3 || (d.len() == 4 && LEVEL_DIMS.contains(&d[1].as_str())))
}

/// The channels of variable `var` of predictor file `k`: itself, or one per
/// level.
fn channels_of(ds: &Dataset, var: usize, k: usize, file: &str) -> Result<Vec<Channel>, String> {
    let v = &ds.variables[var];
    let dims = &v.dimensions;
    if !dims.iter().any(|d| d == TIME) {
        return Err(format!(
            "{file}: predictor `{}` has no `{TIME}` dimension (its dimensions: ({}))",
            v.name,
            dims.join(", ")
        ));
    }
    if matches!(v.data, VarData::Char(_)) {
        return Err(format!(
            "{file}: predictor `{}` is text, not numbers",
            v.name
        ));
    }
    match dims.len() {
        3 if dims[0] == TIME => Ok(vec![Channel {
            name: v.name.clone(),
            file: k,
            var,
            level: None,
        }]),
        4 if dims[0] == TIME && LEVEL_DIMS.contains(&dims[1].as_str()) => {
            let levels = levels_hpa(ds, v, &dims[1], file)?;
            let n = levels.len();
            Ok(levels
                .iter()
                .enumerate()
                .map(|(l, hpa)| Channel {
                    name: format!("{}_{hpa}", v.name),
                    file: k,
                    var,
                    level: Some((n, l)),
                })
                .collect())
        }
        _ => Err(format!(
            "{file}: predictor `{}` is over ({}); expected (time, y, x) or (time, level, y, x) \
             with the level dimension one of {}",
            v.name,
            dims.join(", "),
            LEVEL_DIMS.join(", ")
        )),
    }
}

/// The channels called `name` in predictor file `k`: a variable of that
/// name, or level `L` of a variable `V` with a level dimension for
/// `name = V_L`; `None` if there is neither.
fn find_channels(
    ds: &Dataset,
    name: &str,
    k: usize,
    file: &str,
) -> Result<Option<Vec<Channel>>, String> {
    if let Some(var) = ds.variables.iter().position(|v| v.name == name) {
        return channels_of(ds, var, k, file).map(Some);
    }
    let Some((base, _)) = name.rsplit_once('_') else {
        return Ok(None);
    };
    let Some(var) = ds.variables.iter().position(|v| v.name == base) else {
        return Ok(None);
    };
    let v = &ds.variables[var];
    if v.dimensions.len() != 4 || !LEVEL_DIMS.contains(&v.dimensions[1].as_str()) {
        return Ok(None);
    }
    let all = channels_of(ds, var, k, file)?;
    Ok(all.into_iter().find(|c| c.name == name).map(|c| vec![c]))
}

/// The levels of dimension `dim` in whole hPa (values above 2000 are Pa).
fn levels_hpa(ds: &Dataset, var: &Variable, dim: &str, file: &str) -> Result<Vec<i64>, String> {
    let c = coordinate_variable(ds, dim).ok_or_else(|| {
        format!(
            "{file}: predictor `{}`: level dimension `{dim}` has no coordinate variable `{dim}({dim})`",
            var.name
        )
    })?;
    let values = c.decoded_f64().map_err(|e| format!("{file}: {e}"))?;
    if values.iter().any(|v| !v.is_finite()) {
        return Err(format!(
            "{file}: level coordinate `{dim}` has missing or non-finite values"
        ));
    }
    let pascal = values.iter().any(|v| v.abs() > 2000.0);
    Ok(values
        .iter()
        .map(|&v| (if pascal { v / 100.0 } else { v }).round() as i64)
        .collect())
}

fn check_times(
    coarse: &PredictorSet,
    fine: &TargetSet,
    predictor_labels: &[String],
    target_labels: &[String],
) -> Result<(), String> {
    let (p, t) = (&coarse.times, &fine.times);
    let differ = p
        .iter()
        .zip(t)
        .position(|(a, b)| (a - b).abs() > TIME_TOLERANCE_DAYS);
    if let Some(k) = differ {
        return Err(format!(
            "predictor file {} and target file {} differ in time at index {k}: {} vs {} \
             (days since the origin of `{}` in {})",
            predictor_labels[coarse.file_of[k]],
            target_labels[fine.file_of[k]],
            p[k],
            t[k],
            fine.reference.units,
            target_labels[0]
        ));
    }
    if p.len() != t.len() {
        return Err(format!(
            "the predictor files ({}) hold {} times but the target files ({}) hold {}; \
             the first {} agree",
            predictor_labels.join(", "),
            p.len(),
            target_labels.join(", "),
            t.len(),
            p.len().min(t.len())
        ));
    }
    Ok(())
}

// -------------------------------------------------------------- orography

/// The orography of `ds` on the fine grid: its name and `[ny, nx]` values.
fn read_orography(
    ds: &Dataset,
    file: &str,
    fine: &Grid,
    target_file: &str,
) -> Result<(String, Vec<f32>), String> {
    let var = OROGRAPHY_NAMES
        .iter()
        .find_map(|n| ds.variable(n))
        .ok_or_else(|| {
            format!(
                "{file}: no orography variable (looked for {}; the file has: {})",
                OROGRAPHY_NAMES.join(", "),
                variable_names(ds)
            )
        })?;
    let spatial = match var.dimensions.len() {
        2 => true,
        3 => ds.dim_len(&var.dimensions[0]) == Some(1),
        _ => false,
    };
    if !spatial {
        return Err(format!(
            "{file}: orography `{}` is over ({}); expected (y, x)",
            var.name,
            var.dimensions.join(", ")
        ));
    }
    let grid = grid_of(ds, var, file)?;
    if !grid.same_coords(fine) {
        return Err(format!(
            "{file}: orography `{}` grid ({}) differs from the target grid ({}) of {target_file}",
            var.name,
            grid.describe(),
            fine.describe()
        ));
    }
    let data = var.decoded_f64().map_err(|e| format!("{file}: {e}"))?;
    let size = grid.size();
    if data.len() != size {
        return Err(format!(
            "{file}: orography `{}` has {} values, but its grid has {size} points",
            var.name,
            data.len()
        ));
    }
    if let Some(p) = data.iter().position(|v| !v.is_finite()) {
        return Err(format!(
            "{file}: orography `{}` has a missing or non-finite value at point {p}",
            var.name
        ));
    }
    let mut out = vec![0.0f32; size];
    grid.copy_into(&data, &mut out, Conversion::Same);
    Ok((var.name.clone(), out))
}

// ------------------------------------------------------------------ grids

/// A regular grid: the names of a variable's last two dimensions and their
/// coordinates, made ascending (`flip_*`: the file's were descending).
#[derive(Clone, Debug)]
struct Grid {
    dims: [String; 2],
    y: Vec<f64>,
    x: Vec<f64>,
    flip_y: bool,
    flip_x: bool,
}

impl Grid {
    fn size(&self) -> usize {
        self.y.len() * self.x.len()
    }

    /// Same coordinates (to 1e-5 relative).
    fn same_coords(&self, other: &Grid) -> bool {
        close(&self.y, &other.y) && close(&self.x, &other.x)
    }

    fn describe(&self) -> String {
        let span = |v: &[f64]| {
            format!(
                "{} .. {}",
                v.first().copied().unwrap_or(f64::NAN),
                v.last().copied().unwrap_or(f64::NAN)
            )
        };
        format!(
            "{} {} x {} {}: {} {}, {} {}",
            self.y.len(),
            self.dims[0],
            self.x.len(),
            self.dims[1],
            self.dims[0],
            span(self.y.as_slice()),
            self.dims[1],
            span(self.x.as_slice())
        )
    }

    /// Copies one `[ny, nx]` field from file order to ascending coordinates.
    fn copy_into(&self, src: &[f64], dst: &mut [f32], conversion: Conversion) {
        let (ny, nx) = (self.y.len(), self.x.len());
        for (j, row) in dst.chunks_exact_mut(nx).take(ny).enumerate() {
            let sj = if self.flip_y { ny - 1 - j } else { j };
            let from = &src[sj * nx..(sj + 1) * nx];
            for (i, out) in row.iter_mut().enumerate() {
                let si = if self.flip_x { nx - 1 - i } else { i };
                *out = conversion.apply(from[si]) as f32;
            }
        }
    }
}

fn close(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(p, q)| (p - q).abs() <= 1e-5 * p.abs().max(q.abs()).max(1.0))
}

fn is_x_like(dim: &str) -> bool {
    matches!(
        dim.to_ascii_lowercase().as_str(),
        "lon" | "longitude" | "x" | "rlon"
    )
}

fn is_y_like(dim: &str) -> bool {
    matches!(
        dim.to_ascii_lowercase().as_str(),
        "lat" | "latitude" | "y" | "rlat"
    )
}

/// The grid of a variable's last two dimensions (y, then x).
fn grid_of(ds: &Dataset, var: &Variable, file: &str) -> Result<Grid, String> {
    let n = var.dimensions.len();
    if n < 2 {
        return Err(format!(
            "{file}: variable `{}` has fewer than two dimensions: no grid",
            var.name
        ));
    }
    let (dy, dx) = (&var.dimensions[n - 2], &var.dimensions[n - 1]);
    if is_x_like(dy) && is_y_like(dx) {
        return Err(format!(
            "{file}: variable `{}` is over (..., {dy}, {dx}): rime needs y before x (..., {dx}, {dy})",
            var.name
        ));
    }
    let (y, flip_y) = coordinate(ds, var, dy, file)?;
    let (x, flip_x) = coordinate(ds, var, dx, file)?;
    Ok(Grid {
        dims: [dy.clone(), dx.clone()],
        y,
        x,
        flip_y,
        flip_x,
    })
}

/// The ascending coordinates of dimension `dim` of `var`, and whether the
/// file's were descending.
fn coordinate(
    ds: &Dataset,
    var: &Variable,
    dim: &str,
    file: &str,
) -> Result<(Vec<f64>, bool), String> {
    let Some(c) = coordinate_variable(ds, dim) else {
        if let Some(aux) = two_d_coordinate(ds, var) {
            return Err(format!(
                "{file}: variable `{}`: dimension `{dim}` has no 1-D coordinate variable, and `{}` \
                 is 2-D ({}): rime needs a regular (1-D) grid, with coordinate variables such as \
                 lat/lon, y/x or rlat/rlon",
                var.name,
                aux.name,
                aux.dimensions.join(", ")
            ));
        }
        return Err(format!(
            "{file}: variable `{}`: dimension `{dim}` has no coordinate variable `{dim}({dim})`",
            var.name
        ));
    };
    let mut values = c.decoded_f64().map_err(|e| format!("{file}: {e}"))?;
    if values.is_empty() {
        return Err(format!("{file}: coordinate `{dim}` is empty"));
    }
    let finite = values.iter().all(|v| v.is_finite());
    let ascending = values.windows(2).all(|w| w[1] > w[0]);
    let descending = values.windows(2).all(|w| w[1] < w[0]);
    let monotonic = ascending || descending;
    if !(finite && monotonic) {
        return Err(format!(
            "{file}: coordinate `{dim}` is not strictly monotonic (or has missing values)"
        ));
    }
    let flip = descending && !ascending;
    if flip {
        values.reverse();
    }
    Ok((values, flip))
}

/// A 2-D latitude or longitude of `var`, if the dataset has one.
fn two_d_coordinate<'a>(ds: &'a Dataset, var: &Variable) -> Option<&'a Variable> {
    let listed = text_attr(var, "coordinates").unwrap_or_default();
    listed
        .split_whitespace()
        .chain(["lat", "lon", "latitude", "longitude", "nav_lat", "nav_lon"])
        .filter_map(|n| ds.variable(n))
        .find(|v| v.dimensions.len() >= 2)
}

// ------------------------------------------------------------------- time

/// A CF calendar, as far as days of year go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Calendar {
    /// `standard`, `gregorian`, `proleptic_gregorian` (proleptic Gregorian
    /// dates throughout).
    Standard,
    NoLeap,
    AllLeap,
    Day360,
}

impl Calendar {
    fn parse(name: Option<&str>) -> Result<Self, String> {
        let name = name
            .map(|s| s.trim().to_ascii_lowercase())
            .unwrap_or_default();
        match name.as_str() {
            "" | "standard" | "gregorian" | "proleptic_gregorian" => Ok(Self::Standard),
            "noleap" | "no_leap" | "365_day" => Ok(Self::NoLeap),
            "all_leap" | "366_day" => Ok(Self::AllLeap),
            "360_day" => Ok(Self::Day360),
            other => Err(format!(
                "calendar `{other}` is not supported (standard, gregorian, proleptic_gregorian, \
                 noleap, 365_day, all_leap, 366_day or 360_day)"
            )),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::NoLeap => "noleap",
            Self::AllLeap => "all_leap",
            Self::Day360 => "360_day",
        }
    }

    /// The length of the seasonal cycle, in days.
    fn year_length(self) -> f64 {
        match self {
            Self::Standard => 365.25,
            Self::NoLeap => 365.0,
            Self::AllLeap => 366.0,
            Self::Day360 => 360.0,
        }
    }

    /// Whole days from 1 January of the date's year to the date.
    fn day_of_year(self, d: &Date) -> i64 {
        const BEFORE: [i64; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
        let m = d.month.clamp(1, 12) as usize - 1;
        let before = match self {
            Self::Day360 => 30 * m as i64,
            Self::NoLeap => BEFORE[m],
            Self::AllLeap => BEFORE[m] + i64::from(m >= 2),
            Self::Standard => BEFORE[m] + i64::from(m >= 2 && is_leap(d.year)),
        };
        before + i64::from(d.day) - 1
    }

    /// The day number of a date, counted from a fixed day of the calendar.
    fn day_number(self, d: &Date) -> i64 {
        match self {
            Self::Standard => days_from_civil(d.year, d.month, d.day),
            Self::NoLeap => d.year * 365 + self.day_of_year(d),
            Self::AllLeap => d.year * 366 + self.day_of_year(d),
            Self::Day360 => d.year * 360 + self.day_of_year(d),
        }
    }
}

fn is_leap(year: i64) -> bool {
    year.rem_euclid(4) == 0 && (year.rem_euclid(100) != 0 || year.rem_euclid(400) == 0)
}

/// Days from 1970-01-01 to a proleptic Gregorian date.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The origin of CF time units.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Date {
    year: i64,
    month: u32,
    day: u32,
    /// Time of day, in seconds.
    seconds: f64,
}

/// Days per unit and origin of CF time units
/// `<days|hours|minutes|seconds> since YYYY-MM-DD[( |T)hh:mm:ss]`.
fn parse_time_units(units: &str) -> Result<(f64, Date), String> {
    let bad = || {
        format!(
            "time units {units:?} are not `<days|hours|minutes|seconds> since YYYY-MM-DD[ hh:mm:ss]`"
        )
    };
    let lower = units.to_ascii_lowercase();
    let at = lower.find(" since ").ok_or_else(bad)?;
    let per_unit = match lower[..at].trim() {
        "days" | "day" | "d" => 1.0,
        "hours" | "hour" | "hrs" | "hr" | "h" => 1.0 / 24.0,
        "minutes" | "minute" | "mins" | "min" => 1.0 / 1440.0,
        "seconds" | "second" | "secs" | "sec" | "s" => 1.0 / 86400.0,
        _ => return Err(bad()),
    };
    let rest = units[at + " since ".len()..].trim();
    let mut parts = rest
        .split(|c: char| c == 'T' || c.is_whitespace())
        .filter(|s| !s.is_empty());
    let date = parts.next().ok_or_else(bad)?;
    let mut fields = date.split('-');
    let (Some(y), Some(m), Some(d), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(bad());
    };
    let (Ok(year), Ok(month), Ok(day)) = (y.parse::<i64>(), m.parse::<u32>(), d.parse::<u32>())
    else {
        return Err(bad());
    };
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return Err(bad());
    }
    let seconds = match parts.next() {
        Some(clock) if clock.starts_with(|c: char| c.is_ascii_digit()) => {
            let clock = clock.trim_end_matches(['Z', 'z']);
            let clock = clock.split('+').next().unwrap_or(clock);
            let mut seconds = 0.0;
            let mut scale = 3600.0;
            for (k, field) in clock.split(':').enumerate() {
                if k >= 3 {
                    return Err(bad());
                }
                let value: f64 = field.parse().map_err(|_| bad())?;
                seconds += value * scale;
                scale /= 60.0;
            }
            seconds
        }
        _ => 0.0,
    };
    Ok((
        per_unit,
        Date {
            year,
            month,
            day,
            seconds,
        },
    ))
}

/// A file's time coordinate.
#[derive(Clone, Debug)]
struct TimeAxis {
    calendar: Calendar,
    /// The `units` attribute, for errors.
    units: String,
    /// The origin's day number in the calendar plus its time of day, in days.
    origin: f64,
    /// The origin's day of year (0 at 1 January 00:00), in days.
    origin_day_of_year: f64,
    /// Times, in days since the origin.
    values: Vec<f64>,
}

impl TimeAxis {
    /// The times in days since `reference`'s origin.
    fn relative_to(&self, reference: &TimeAxis) -> Result<Vec<f64>, String> {
        if self.calendar != reference.calendar {
            return Err(format!(
                "calendar `{}` differs from the calendar `{}`",
                self.calendar.name(),
                reference.calendar.name()
            ));
        }
        let shift = self.origin - reference.origin;
        Ok(self.values.iter().map(|t| t + shift).collect())
    }
}

/// The `time(time)` coordinate of a file.
fn time_axis(ds: &Dataset, file: &str) -> Result<TimeAxis, String> {
    if ds.dim_len(TIME).is_none() {
        let dims: Vec<&str> = ds.dimensions.iter().map(|(n, _)| n.as_str()).collect();
        return Err(format!(
            "{file}: no `{TIME}` dimension (the file's dimensions: {})",
            dims.join(", ")
        ));
    }
    let var = coordinate_variable(ds, TIME)
        .ok_or_else(|| format!("{file}: no coordinate variable `time(time)`"))?;
    let units = text_attr(var, "units").ok_or_else(|| {
        format!(
            "{file}: variable `time` has no text attribute `units` (CF: \"days since YYYY-MM-DD\")"
        )
    })?;
    let (per_unit, origin) =
        parse_time_units(units).map_err(|e| format!("{file}: variable `time`: {e}"))?;
    let calendar = Calendar::parse(text_attr(var, "calendar"))
        .map_err(|e| format!("{file}: variable `time`: {e}"))?;
    if calendar == Calendar::Day360 && origin.day > 30 {
        return Err(format!(
            "{file}: variable `time`: units {units:?} name day {} in a 360_day calendar",
            origin.day
        ));
    }
    let raw = var.decoded_f64().map_err(|e| format!("{file}: {e}"))?;
    if let Some(k) = raw.iter().position(|t| !t.is_finite()) {
        return Err(format!(
            "{file}: variable `time` is missing or not finite at index {k}"
        ));
    }
    let of_day = origin.seconds / 86400.0;
    Ok(TimeAxis {
        calendar,
        units: units.to_string(),
        origin: calendar.day_number(&origin) as f64 + of_day,
        origin_day_of_year: calendar.day_of_year(&origin) as f64 + of_day,
        values: raw.iter().map(|t| t * per_unit).collect(),
    })
}

/// `[cos, sin]` of the season at `t` days after an origin on day of year
/// `origin_day_of_year`.
fn season(calendar: Calendar, origin_day_of_year: f64, t: f64) -> [f64; 2] {
    let year = calendar.year_length();
    let angle = TAU * (origin_day_of_year + t).rem_euclid(year) / year;
    [angle.cos(), angle.sin()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{NetcdfFormat, write_netcdf};

    /// Times in the test files.
    const NT: usize = 10;
    /// Pressure levels of the predictors, in Pa (as in many files).
    const LEVELS_PA: [f64; 2] = [85000.0, 50000.0];
    /// Coarse latitudes, north to south (flipped by the reader).
    const COARSE_LAT: [f64; 4] = [-10.0, -12.0, -14.0, -16.0];
    const COARSE_LON: [f64; 5] = [11.0, 13.0, 15.0, 17.0, 19.0];
    /// The benchmark's predictor variables, in file order.
    const VARS: [&str; 5] = ["z", "u", "v", "t", "q"];

    /// A folder under the system temp dir, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("rime-cordex-{}-{tag}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn fine_lat() -> Vec<f64> {
        (0..8).map(|j| -16.0 + 0.5 * j as f64).collect()
    }

    fn fine_lon() -> Vec<f64> {
        (0..10).map(|i| 11.0 + 0.5 * i as f64).collect()
    }

    /// Daily times at 12:00 from day `start`.
    fn times(n: usize, start: f64) -> Vec<f64> {
        (0..n).map(|k| start + k as f64 + 0.5).collect()
    }

    fn time_var(ds: &mut Dataset, values: Vec<f64>) {
        ds.var_f64(
            "time",
            &["time"],
            values,
            &[
                ("units", "days since 1961-01-01 00:00:00"),
                ("calendar", "proleptic_gregorian"),
            ],
        );
    }

    /// Predictor value of variable `v` at time `t`, level `l`, file row `j`
    /// and column `i`.
    fn pval(v: usize, t: usize, l: usize, j: usize, i: usize) -> f32 {
        (v * 10000 + t * 1000 + l * 100 + j * 10 + i) as f32
    }

    /// Predictors `z, u, v, t, q (time, plev, lat, lon)` for times
    /// `t0..t0 + nt`, with `time_bnds` as in the SA files.
    fn predictor_ds(t0: usize, nt: usize) -> Dataset {
        let mut ds = Dataset::new();
        ds.dim("time", nt)
            .dim("plev", 2)
            .dim("lat", 4)
            .dim("lon", 5)
            .dim("bnds", 2);
        time_var(&mut ds, times(nt, t0 as f64));
        ds.var_f64("time_bnds", &["time", "bnds"], vec![0.0; nt * 2], &[])
            .var_f64("plev", &["plev"], LEVELS_PA.to_vec(), &[("units", "Pa")])
            .var_f64(
                "lat",
                &["lat"],
                COARSE_LAT.to_vec(),
                &[("units", "degrees_north")],
            )
            .var_f64(
                "lon",
                &["lon"],
                COARSE_LON.to_vec(),
                &[("units", "degrees_east")],
            );
        for (v, name) in VARS.iter().enumerate() {
            let mut data = Vec::with_capacity(nt * 40);
            for t in t0..t0 + nt {
                for l in 0..2 {
                    for j in 0..4 {
                        for i in 0..5 {
                            data.push(pval(v, t, l, j, i));
                        }
                    }
                }
            }
            ds.var_f32(name, &["time", "plev", "lat", "lon"], data, &[]);
        }
        ds
    }

    /// `pr` as stored (kg m-2 s-1), the fill value -999 at the sea point
    /// (ascending row 0, column 0).
    fn pr_raw(t: usize, j: usize, i: usize) -> f64 {
        if j == 0 && i == 0 {
            -999.0
        } else {
            (t * 100 + j * 10 + i) as f64 * 1e-6
        }
    }

    fn tasmax_raw(t: usize, j: usize, i: usize) -> f32 {
        270.0 + t as f32 + 0.5 * j as f32 + 0.25 * i as f32
    }

    /// Targets `pr`, `tasmax (time, lat, lon)` on the 8 x 10 fine grid, with
    /// latitudes ascending or descending.
    fn target_ds(nt: usize, descending: bool) -> Dataset {
        let mut lat = fine_lat();
        if descending {
            lat.reverse();
        }
        let row = |r: usize| if descending { 7 - r } else { r };
        let (mut pr, mut tx) = (Vec::new(), Vec::new());
        for t in 0..nt {
            for r in 0..8 {
                for i in 0..10 {
                    pr.push(pr_raw(t, row(r), i));
                    tx.push(tasmax_raw(t, row(r), i));
                }
            }
        }
        let mut ds = Dataset::new();
        ds.dim("time", nt).dim("lat", 8).dim("lon", 10);
        time_var(&mut ds, times(nt, 0.0));
        ds.var_f64("lat", &["lat"], lat, &[("units", "degrees_north")])
            .var_f64("lon", &["lon"], fine_lon(), &[("units", "degrees_east")])
            .var_f64(
                "pr",
                &["time", "lat", "lon"],
                pr,
                &[("units", "kg m-2 s-1")],
            )
            .var_attr("pr", "_FillValue", -999.0)
            .var_f32("tasmax", &["time", "lat", "lon"], tx, &[("units", "K")]);
        ds
    }

    /// `orog(lat, lon)` = 100 j + i on the fine grid, longitudes shifted.
    fn static_ds(lon_shift: f64) -> Dataset {
        let orog: Vec<f32> = (0..80).map(|p| (100 * (p / 10) + p % 10) as f32).collect();
        let lon: Vec<f64> = fine_lon().iter().map(|x| x + lon_shift).collect();
        let mut ds = Dataset::new();
        ds.dim("lat", 8)
            .dim("lon", 10)
            .var_f64("lat", &["lat"], fine_lat(), &[])
            .var_f64("lon", &["lon"], lon, &[])
            .var_f32("orog", &["lat", "lon"], orog, &[("units", "m")]);
        ds
    }

    fn files(target: &str) -> CordexFiles {
        CordexFiles {
            predictors: vec![PathBuf::from("pred.nc")],
            targets: vec![PathBuf::from("target.nc")],
            orography: Some(PathBuf::from("static.nc")),
            target: target.to_string(),
            predictor_variables: Vec::new(),
            split: [0.8, 0.1],
        }
    }

    /// The channel names of all five variables on both levels.
    fn all_names() -> Vec<String> {
        VARS.iter()
            .flat_map(|v| [format!("{v}_850"), format!("{v}_500")])
            .collect()
    }

    /// Predictor at time `t`, channel `c`, ascending row `j`, column `i`.
    fn at(d: &DownscalingData, t: usize, c: usize, j: usize, i: usize) -> f32 {
        let [ny, nx] = d.coarse_shape;
        let nc = d.predictor_names.len();
        d.predictors[((t * nc + c) * ny + j) * nx + i]
    }

    fn has(e: &str, parts: &[&str]) {
        for p in parts {
            assert!(e.contains(p), "{e:?} lacks {p:?}");
        }
    }

    fn near(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn reads_the_benchmark_layout_from_files() {
        let dir = Scratch::new("layout");
        write_netcdf(
            &dir.0.join("pred.nc"),
            &predictor_ds(0, NT),
            NetcdfFormat::Classic,
        )
        .unwrap();
        write_netcdf(
            &dir.0.join("target.nc"),
            &target_ds(NT, false),
            NetcdfFormat::Classic,
        )
        .unwrap();
        write_netcdf(
            &dir.0.join("static.nc"),
            &static_ds(0.0),
            NetcdfFormat::Classic,
        )
        .unwrap();
        let d = read(&files("pr"), &dir.0).unwrap();

        // Channels: each variable's levels, in file order, named in hPa.
        assert_eq!(d.predictor_names, all_names());
        assert_eq!(d.coarse_shape, [4, 5]);
        assert_eq!(d.coarse_y, [-16.0, -14.0, -12.0, -10.0]);
        assert_eq!(d.coarse_x, COARSE_LON);
        assert_eq!(d.predictors.len(), NT * 10 * 20);
        // Latitudes descended in the file: ascending row j is file row 3 - j.
        assert_eq!(at(&d, 2, 3, 0, 4), pval(1, 2, 1, 3, 4)); // u_500
        assert_eq!(at(&d, 0, 0, 3, 0), pval(0, 0, 0, 0, 0)); // z_850 at -10°
        assert_eq!(at(&d, 9, 9, 1, 2), pval(4, 9, 1, 2, 2)); // q_500 at -14°

        // Targets: pr converted to mm/day, the sea point NaN.
        assert_eq!(d.target_name, "pr");
        assert_eq!(d.target_units, "mm/day");
        assert_eq!(d.fine_shape, [8, 10]);
        assert_eq!(d.fine_y, fine_lat());
        assert_eq!(d.fine_x, fine_lon());
        for (t, j, i) in [(0, 3, 4), (5, 7, 9), (9, 0, 1)] {
            let got = f64::from(d.targets[(t * 8 + j) * 10 + i]);
            let want = pr_raw(t, j, i) * 86400.0;
            assert!(
                near(got, want, 1e-6 * want.abs().max(1.0)),
                "{got} vs {want}"
            );
        }
        for t in 0..NT {
            assert!(d.targets[t * 80].is_nan());
        }
        assert_eq!(d.targets.iter().filter(|x| x.is_nan()).count(), NT);

        // Orography, times, season, split.
        assert_eq!(d.static_names, ["orog"]);
        assert_eq!(d.statics[3 * 10 + 7], 307.0);
        assert_eq!(d.time, times(NT, 0.0));
        assert_eq!(d.scalar_names, ["cos_season", "sin_season"]);
        assert_eq!(d.scalars.len(), 2 * NT);
        let angle = TAU * 0.5 / 365.25;
        assert!(near(f64::from(d.scalars[0]), angle.cos(), 1e-6));
        assert!(near(f64::from(d.scalars[1]), angle.sin(), 1e-6));
        let mut split = vec![0; 8];
        split.extend([1, 2]);
        assert_eq!(d.split, split);
    }

    #[test]
    fn season_scalars_follow_the_day_of_year() {
        let axis = |units: &str, calendar: &str, values: Vec<f64>| {
            let mut ds = Dataset::new();
            ds.dim("time", values.len()).var_f64(
                "time",
                &["time"],
                values,
                &[("units", units), ("calendar", calendar)],
            );
            time_axis(&ds, "t.nc").unwrap()
        };
        let at = |a: &TimeAxis, k: usize| season(a.calendar, a.origin_day_of_year, a.values[k]);
        // 1 January, a quarter and a half of a year later.
        let a = axis(
            "days since 1961-01-01",
            "standard",
            vec![0.0, 91.3125, 182.625],
        );
        let [c, s] = at(&a, 0);
        assert!(near(c, 1.0, 1e-9) && near(s, 0.0, 1e-9));
        let [c, s] = at(&a, 1);
        assert!(near(c, 0.0, 1e-6) && near(s, 1.0, 1e-6));
        let [c, s] = at(&a, 2);
        assert!(near(c, -1.0, 1e-6) && near(s, 0.0, 1e-6));
        // Hours from 1 December: day 31 is 1 January.
        let a = axis(
            "hours since 1949-12-01 00:00:00",
            "gregorian",
            vec![31.0 * 24.0],
        );
        let [c, s] = at(&a, 0);
        assert!(near(c, 1.0, 1e-3) && near(s, 0.0, 1e-2), "{c} {s}");
        // Seconds, ISO origin.
        let a = axis(
            "seconds since 1961-01-01T00:00:00Z",
            "proleptic_gregorian",
            vec![91.3125 * 86400.0],
        );
        let [c, s] = at(&a, 0);
        assert!(near(c, 0.0, 1e-6) && near(s, 1.0, 1e-6));
        // Calendars with their own year.
        let a = axis("days since 2000-01-01", "noleap", vec![365.0, 730.0]);
        assert!(near(at(&a, 1)[0], 1.0, 1e-9) && near(at(&a, 1)[1], 0.0, 1e-9));
        let a = axis("days since 2000-01-01", "360_day", vec![90.0, 360.0]);
        assert!(near(at(&a, 0)[1], 1.0, 1e-9));
        assert!(near(at(&a, 1)[0], 1.0, 1e-9));
        // An origin at noon counts half a day.
        let a = axis("days since 1961-01-01 12:00", "standard", vec![0.0]);
        assert!(near(a.origin_day_of_year, 0.5, 1e-12));
    }

    #[test]
    fn bad_time_units_and_calendars_are_named() {
        let mut ds = Dataset::new();
        ds.dim("time", 1).var_f64(
            "time",
            &["time"],
            vec![0.0],
            &[("units", "fortnights since 1961-01-01")],
        );
        has(
            &time_axis(&ds, "t.nc").unwrap_err(),
            &["t.nc", "`time`", "fortnights"],
        );
        let mut ds = Dataset::new();
        ds.dim("time", 1).var_f64(
            "time",
            &["time"],
            vec![0.0],
            &[("units", "days since 1961-01-01"), ("calendar", "julian")],
        );
        has(&time_axis(&ds, "t.nc").unwrap_err(), &["t.nc", "julian"]);
    }

    #[test]
    fn degrees_celsius_become_kelvin_and_unknown_units_stay() {
        let mut t = target_ds(NT, false);
        t.variable_mut("tasmax").unwrap().attr("units", "degC");
        let d = from_datasets(&[predictor_ds(0, NT)], &[t], None, &files("tasmax")).unwrap();
        assert_eq!(d.target_units, "K");
        let want = (f64::from(tasmax_raw(3, 2, 1)) + 273.15) as f32;
        assert_eq!(d.targets[(3 * 8 + 2) * 10 + 1], want);
        assert!(d.static_names.is_empty() && d.statics.is_empty());

        let d = from_datasets(
            &[predictor_ds(0, NT)],
            &[target_ds(NT, false)],
            None,
            &files("tasmax"),
        )
        .unwrap();
        assert_eq!(d.target_units, "K");
        assert_eq!(d.targets[(3 * 8 + 2) * 10 + 1], tasmax_raw(3, 2, 1));

        let mut t = target_ds(NT, false);
        t.variable_mut("tasmax").unwrap().attr("units", "furlongs");
        let d = from_datasets(&[predictor_ds(0, NT)], &[t], None, &files("tasmax")).unwrap();
        assert_eq!(d.target_units, "furlongs");
        assert_eq!(d.targets[5], tasmax_raw(0, 0, 5));
    }

    #[test]
    fn descending_fine_latitudes_are_flipped() {
        let up = from_datasets(
            &[predictor_ds(0, NT)],
            &[target_ds(NT, false)],
            Some(&static_ds(0.0)),
            &files("pr"),
        )
        .unwrap();
        let down = from_datasets(
            &[predictor_ds(0, NT)],
            &[target_ds(NT, true)],
            Some(&static_ds(0.0)),
            &files("pr"),
        )
        .unwrap();
        assert_eq!(down.fine_y, fine_lat());
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(down.targets.as_slice()), bits(up.targets.as_slice()));
        assert_eq!(down.statics, up.statics);
    }

    #[test]
    fn a_split_variable_is_used() {
        let codes = vec![0, 0, 0, 1, 1, 2, 0, 0, 2, 2];
        let mut t = target_ds(NT, false);
        t.var_i32("split", &["time"], codes.clone(), &[]);
        let d = from_datasets(&[predictor_ds(0, NT)], &[t], None, &files("pr")).unwrap();
        assert_eq!(d.split, codes);

        let mut t = target_ds(NT, false);
        t.var_i32("split", &["time"], vec![3; NT], &[]);
        let e = from_datasets(&[predictor_ds(0, NT)], &[t], None, &files("pr")).unwrap_err();
        has(&e, &["target.nc", "`split`"]);
    }

    #[test]
    fn predictor_files_merge_by_name_and_concatenate_in_time() {
        // Variables split over two files with the same times.
        let mut a = predictor_ds(0, NT);
        a.variables
            .retain(|v| !["v", "t", "q"].contains(&v.name.as_str()));
        let mut b = predictor_ds(0, NT);
        b.variables
            .retain(|v| !["z", "u"].contains(&v.name.as_str()));
        let mut f = files("pr");
        f.predictors = vec!["a.nc".into(), "b.nc".into()];
        let d = from_datasets(&[a, b], &[target_ds(NT, false)], None, &f).unwrap();
        assert_eq!(d.predictor_names, all_names());
        assert_eq!(at(&d, 4, 7, 2, 1), pval(3, 4, 1, 1, 1)); // t_500, from b.nc

        // A period split over two files.
        f.predictors = vec!["early.nc".into(), "late.nc".into()];
        let d = from_datasets(
            &[predictor_ds(0, 6), predictor_ds(6, 4)],
            &[target_ds(NT, false)],
            None,
            &f,
        )
        .unwrap();
        assert_eq!(d.predictors.len(), NT * 10 * 20);
        assert_eq!(at(&d, 7, 0, 0, 0), pval(0, 7, 0, 3, 0));
        assert_eq!(at(&d, 5, 1, 0, 0), pval(0, 5, 1, 3, 0));

        // Files with different channels cannot follow one another.
        let mut late = predictor_ds(6, 4);
        late.variables.retain(|v| v.name != "q");
        let e = from_datasets(
            &[predictor_ds(0, 6), late],
            &[target_ds(NT, false)],
            None,
            &f,
        )
        .unwrap_err();
        has(&e, &["late.nc", "early.nc", "q_500"]);
    }

    #[test]
    fn named_predictors_and_levels_come_in_the_order_given() {
        let mut f = files("pr");
        f.predictor_variables = vec!["t_500".into(), "z".into()];
        let d = from_datasets(&[predictor_ds(0, NT)], &[target_ds(NT, false)], None, &f).unwrap();
        assert_eq!(d.predictor_names, ["t_500", "z_850", "z_500"]);
        assert_eq!(at(&d, 1, 0, 0, 0), pval(3, 1, 1, 3, 0));
        assert_eq!(at(&d, 1, 2, 3, 4), pval(0, 1, 1, 0, 4));
    }

    #[test]
    fn one_variable_per_level_as_in_the_benchmark() {
        let mut ds = Dataset::new();
        ds.dim("time", NT).dim("lat", 4).dim("lon", 5);
        time_var(&mut ds, times(NT, 0.0));
        ds.var_f64("lat", &["lat"], COARSE_LAT.to_vec(), &[])
            .var_f64("lon", &["lon"], COARSE_LON.to_vec(), &[])
            .var_f32("z_500", &["time", "lat", "lon"], vec![5.0; NT * 20], &[])
            .var_f32("t_850", &["time", "lat", "lon"], vec![8.0; NT * 20], &[]);
        let d = from_datasets(&[ds], &[target_ds(NT, false)], None, &files("pr")).unwrap();
        assert_eq!(d.predictor_names, ["z_500", "t_850"]);
        assert_eq!(at(&d, 3, 1, 2, 2), 8.0);
    }

    #[test]
    fn predictor_times_in_other_units_align_with_the_targets() {
        let mut p = predictor_ds(0, NT);
        let hours: Vec<f64> = times(NT, 0.0).iter().map(|t| (t + 1.0) * 24.0).collect();
        let time = p.variable_mut("time").unwrap();
        time.data = VarData::F64(hours);
        time.attr("units", "hours since 1960-12-31");
        let d = from_datasets(&[p], &[target_ds(NT, false)], None, &files("pr")).unwrap();
        assert_eq!(d.time, times(NT, 0.0));
    }

    #[test]
    fn bad_inputs_name_the_file_and_variable() {
        let pred = || predictor_ds(0, NT);
        let target = || target_ds(NT, false);
        let run = |p: Dataset, t: Dataset, o: Option<&Dataset>, f: &CordexFiles| {
            from_datasets(&[p], &[t], o, f).unwrap_err()
        };

        // A missing target variable lists what the file has.
        let e = run(pred(), target(), None, &files("tasmin"));
        has(&e, &["target.nc", "`tasmin`", "pr", "tasmax"]);

        // A predictor variable that is not there.
        let mut f = files("pr");
        f.predictor_variables = vec!["w".into()];
        has(
            &run(pred(), target(), None, &f),
            &["pred.nc", "`w`", "not found"],
        );

        // A predictor off the coarse grid.
        let mut p = pred();
        p.dim("lat2", 3).dim("lon2", 3);
        p.var_f64("lat2", &["lat2"], vec![1.0, 2.0, 3.0], &[])
            .var_f64("lon2", &["lon2"], vec![1.0, 2.0, 3.0], &[])
            .var_f32("hires", &["time", "lat2", "lon2"], vec![0.0; NT * 9], &[]);
        f.predictor_variables = vec!["z".into(), "hires".into()];
        has(
            &run(p, target(), None, &f),
            &["pred.nc", "`hires`", "coarse grid"],
        );

        // Non-finite predictor values.
        let mut p = pred();
        if let VarData::F32(data) = &mut p.variable_mut("z").unwrap().data {
            data[7] = f32::NAN;
        }
        has(
            &run(p, target(), None, &files("pr")),
            &["pred.nc", "`z`", "non-finite", "time index 0"],
        );

        // A target without a time dimension.
        let mut t = target();
        let pr = t.variable_mut("pr").unwrap();
        pr.dimensions = vec!["lat".into(), "lon".into()];
        pr.data = VarData::F64(vec![0.0; 80]);
        has(
            &run(pred(), t, None, &files("pr")),
            &["target.nc", "`pr`", "`time`"],
        );

        // Times that differ, and counts that differ.
        let mut t = target();
        t.variable_mut("time").unwrap().data = VarData::F64(times(NT, 1.0));
        has(
            &run(pred(), t, None, &files("pr")),
            &["pred.nc", "target.nc", "index 0", "0.5", "1.5"],
        );
        has(
            &run(predictor_ds(0, NT - 1), target(), None, &files("pr")),
            &["pred.nc", "target.nc", "9", "10"],
        );

        // A curvilinear target grid (2-D lat/lon only).
        let mut t = Dataset::new();
        t.dim("time", NT).dim("y", 8).dim("x", 10);
        time_var(&mut t, times(NT, 0.0));
        let lat: Vec<f64> = (0..80).map(|p| 40.0 + 0.1 * (p / 10) as f64).collect();
        let lon: Vec<f64> = (0..80).map(|p| 5.0 + 0.1 * (p % 10) as f64).collect();
        t.var_f64("lat", &["y", "x"], lat, &[])
            .var_f64("lon", &["y", "x"], lon, &[])
            .var_f32(
                "tasmax",
                &["time", "y", "x"],
                vec![280.0; NT * 80],
                &[("units", "K"), ("coordinates", "lat lon")],
            );
        has(
            &run(pred(), t, None, &files("tasmax")),
            &["target.nc", "`tasmax`", "`lat`", "regular (1-D) grid"],
        );

        // Orography on another grid.
        has(
            &run(pred(), target(), Some(&static_ds(0.1)), &files("pr")),
            &["static.nc", "`orog`", "target grid"],
        );

        // Bad split fractions.
        let mut f = files("pr");
        f.split = [0.9, 0.2];
        has(&run(pred(), target(), None, &f), &["`split`"]);
    }

    #[test]
    fn files_parse_from_toml_with_defaults() {
        let f: CordexFiles =
            toml::from_str("predictors = [\"p.nc\"]\ntargets = [\"t.nc\"]\ntarget = \"pr\"\n")
                .unwrap();
        assert_eq!(f.split, [0.8, 0.1]);
        assert_eq!(f.orography, None);
        assert!(f.predictor_variables.is_empty());
        let e = toml::from_str::<CordexFiles>(
            "predictors = []\ntargets = []\ntarget = \"pr\"\nsplits = [0.5, 0.5]\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("splits"), "{e}");
    }

    #[test]
    fn an_unreadable_file_is_named() {
        let e = read_dataset(Path::new("/nonexistent-rime-cordex/none.nc")).unwrap_err();
        has(&e, &["none.nc"]);
    }

    #[cfg(not(feature = "netcdf"))]
    #[test]
    fn a_netcdf4_file_asks_for_the_feature() {
        let dir = Scratch::new("hdf5");
        let path = dir.0.join("hdf5.nc");
        let mut bytes = b"\x89HDF\r\n\x1a\n".to_vec();
        bytes.resize(64, 0);
        std::fs::write(&path, &bytes).unwrap();
        let e = read_dataset(&path).unwrap_err();
        has(&e, &["hdf5.nc", "--features netcdf", "libnetcdf-dev"]);
    }
}
