//! Observations read from a file instead of simulated: station data as CSV,
//! or the same table as NetCDF.
//!
//! One row per observation, with columns (CSV header, or NetCDF variables
//! along one dimension) `time`, `value`, `error` (standard deviation) and
//! where it was taken: `index` (a state column) or `x` (and `y`), mapped to
//! the nearest state point of the model's geometry. Rows are grouped by
//! time into cycles: cycle `k` is observed at `(k + 1) * interval`; a time
//! between two cycles is an error naming its row, and rows after the run's
//! last cycle are ignored (a shortened run). Cycles without a row have no
//! observation. A `value` of NaN (or an empty CSV field) is a missing one.
//!
//! NetCDF variables are decoded following the CF conventions
//! ([`io::Variable::decoded_f64`]): packed data are unpacked as
//! `raw * scale_factor + add_offset`, and a raw value equal to `_FillValue`
//! or `missing_value`, or outside `valid_range` / `valid_min` / `valid_max`,
//! is missing. A missing `value` is a missing observation; a missing `time`,
//! `error`, `index`, `x` or `y` (or an empty CSV field in those columns) is
//! an error naming the file, the variable and the row, since such a row
//! cannot be placed or weighted. A malformed attribute is an error naming
//! the variable and the attribute.
//!
//! Two rows of one cycle at the same place, the same `index` or the same
//! `x`/`y`, are refused (naming both rows): a duplicated observation would
//! be counted twice, with an error it does not have. Rows at distinct `x`/`y`
//! that map to one nearest state point are accepted: they are distinct
//! stations, independent observations of one state variable. Rows whose
//! `value` is missing assimilate nothing and are not checked.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use nalgebra::DVector;

use super::Selection;
use crate::core::{Geometry, Location, ObsBatch, ObsError};
use crate::io;

/// The observations of one cycle: state columns, values, error std.
#[derive(Clone, Debug, Default, PartialEq)]
struct CycleRows {
    indices: Vec<usize>,
    values: Vec<f64>,
    errors: Vec<f64>,
}

/// Observations of a whole run, read from a file and grouped by cycle.
#[derive(Clone, Debug)]
pub struct FileObservations {
    cycles: BTreeMap<usize, CycleRows>,
    locations: Vec<Location>,
    rows: usize,
}

/// One parsed row before it is placed.
struct Row {
    /// Where the row is in its file, for errors: `line 7` or `observation 6`.
    line: String,
    time: f64,
    place: Place,
    value: f64,
    error: f64,
}

enum Place {
    Index(f64),
    At(Location),
}

/// Where a row is, for finding duplicates: its state column, or its exact
/// coordinates (`-0.0` as `0.0`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum PlaceKey {
    Index(usize),
    At(u64, u64),
}

impl FileObservations {
    /// The mean error standard deviation over every row (0 without rows).
    pub fn mean_error(&self) -> f64 {
        let (sum, n) = self
            .cycles
            .values()
            .flat_map(|c| &c.errors)
            .fold((0.0, 0usize), |(s, n), e| (s + e, n + 1));
        if n == 0 { 0.0 } else { sum / n as f64 }
    }

    /// Reads `path` (`.csv`, or NetCDF for any other extension) for a run of
    /// `cycles` cycles `interval` apart on `geometry`.
    ///
    /// # Errors
    /// A message naming the file and the row, column or variable at fault.
    pub fn read(
        path: &Path,
        geometry: &Geometry,
        interval: f64,
        cycles: usize,
    ) -> Result<Self, String> {
        let rows = if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
        {
            read_csv(path)?
        } else {
            read_nc(path)?
        };
        let locations: Vec<Location> = geometry.locations().collect();
        let n = locations.len();
        let what = |r: &Row| format!("{}: {}", path.display(), r.line);
        let mut grouped: BTreeMap<usize, CycleRows> = BTreeMap::new();
        let mut used = 0;
        let mut seen: HashMap<(usize, PlaceKey), &Row> = HashMap::new();
        for r in &rows {
            if !(r.time.is_finite() && r.time > 0.0) {
                return Err(format!(
                    "{}: time {} must be positive (cycle k is observed at (k + 1) x {interval})",
                    what(r),
                    r.time
                ));
            }
            let slot = (r.time / interval).round();
            if (r.time - slot * interval).abs() > 1e-6 * interval || slot < 1.0 {
                return Err(format!(
                    "{}: time {} is not an observation time (a multiple of the interval {interval})",
                    what(r),
                    r.time
                ));
            }
            let k = slot as usize - 1;
            if k >= cycles {
                continue;
            }
            if !(r.error > 0.0 && r.error.is_finite()) {
                return Err(format!(
                    "{}: error {} must be a positive standard deviation",
                    what(r),
                    r.error
                ));
            }
            let (index, key) = match r.place {
                Place::Index(i) => {
                    if !(i >= 0.0 && i.fract() == 0.0 && (i as usize) < n) {
                        return Err(format!(
                            "{}: index {i} is not a state column (0..{n})",
                            what(r)
                        ));
                    }
                    (i as usize, PlaceKey::Index(i as usize))
                }
                Place::At(at) => (
                    nearest(geometry, &locations, &at)
                        .ok_or_else(|| format!("{}: location {at:?} is not finite", what(r)))?,
                    PlaceKey::At((at[0] + 0.0).to_bits(), (at[1] + 0.0).to_bits()),
                ),
            };
            if !r.value.is_nan()
                && let Some(first) = seen.insert((k, key), r)
            {
                let place = match r.place {
                    Place::Index(_) => format!("state index {index}"),
                    Place::At(at) => format!("location {at:?}, nearest state index {index}"),
                };
                return Err(format!(
                    "{}: {} repeats {} (time {}, {place}; values {} and {}): a duplicated \
                     observation would be counted twice; remove one or average them",
                    path.display(),
                    r.line,
                    first.line,
                    r.time,
                    first.value,
                    r.value
                ));
            }
            let c = grouped.entry(k).or_default();
            c.indices.push(index);
            c.values.push(r.value);
            c.errors.push(r.error);
            used += 1;
        }
        Ok(Self {
            cycles: grouped,
            locations,
            rows: used,
        })
    }

    /// Number of rows that fall in the run.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether no row falls in the run.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The largest number of observations in one cycle.
    pub fn max_count(&self) -> usize {
        self.cycles
            .values()
            .map(|c| c.indices.len())
            .max()
            .unwrap_or(0)
    }

    /// The batch of cycle `k` at `time` (empty where the file has none);
    /// missing values are dropped.
    pub fn batch(&self, k: usize, time: f64) -> ObsBatch {
        let rows = self.cycles.get(&k).cloned().unwrap_or_default();
        let mut id = 0xcbf2_9ce4_8422_2325_u64;
        for &i in &rows.indices {
            id = (id ^ i as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
        // Indices were checked against the geometry on reading.
        let selection = Selection::in_range(rows.indices, &self.locations, "file");
        ObsBatch::new(
            k,
            time,
            DVector::from_vec(rows.values),
            ObsError::Diagonal(DVector::from_vec(rows.errors)),
            Arc::new(selection),
            id,
        )
    }
}

/// `network = { kind = "file", file = "obs.csv" }`: observations read from
/// a file instead of simulated (a run without truth).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// The file, relative to the experiment file.
    pub file: std::path::PathBuf,
}

impl super::spec::SpecDoc for FileSpec {
    const DOC: &'static str = "observations read from a file (a run without truth): CSV with columns time, index (or x and y), value, error; or NetCDF with those variables along one dimension, CF-decoded; rows grouped into cycles by time; the file gives each error, so the set takes no error keys, and it is the run's only set";
    const KEYS: &'static [super::spec::SpecKey] = &[super::spec::SpecKey {
        key: "file",
        kind: "path, relative to the experiment file",
        doc: "the observation file",
        required: Some("\"obs.csv\""),
    }];
}

impl super::spec::NetworkSpec for FileSpec {
    fn file(&self) -> Option<&Path> {
        Some(&self.file)
    }

    fn init(
        &self,
        _ctx: &super::spec::BuildContext<'_>,
        _candidates: &[super::spec::Candidate],
    ) -> Result<super::spec::Sites, super::spec::KeyError> {
        Err(super::spec::key_error(
            "kind",
            "a file network is read with its values (FileObservations), not simulated",
        ))
    }
}

/// The state column nearest to `at`.
fn nearest(geometry: &Geometry, locations: &[Location], at: &Location) -> Option<usize> {
    if !(at[0].is_finite() && at[1].is_finite()) {
        return None;
    }
    (0..locations.len()).min_by(|&a, &b| {
        geometry
            .distance(&locations[a], at)
            .total_cmp(&geometry.distance(&locations[b], at))
    })
}

fn read_csv(path: &Path) -> Result<Vec<Row>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
    let (_, header) = lines
        .next()
        .ok_or_else(|| format!("{}: empty file (expected a header line)", path.display()))?;
    let names: Vec<String> = header.split(',').map(|h| h.trim().to_lowercase()).collect();
    let column = |name: &str| names.iter().position(|h| h == name);
    let need = |name: &str| {
        column(name).ok_or_else(|| {
            format!(
                "{}: the header has no `{name}` column (columns: time, value, error, and index or x[,y])",
                path.display()
            )
        })
    };
    let (time, value, error) = (need("time")?, need("value")?, need("error")?);
    let index = column("index");
    let (x, y) = (column("x"), column("y"));
    if index.is_none() && x.is_none() {
        return Err(format!(
            "{}: the header needs an `index` or an `x` column",
            path.display()
        ));
    }
    let mut rows = Vec::new();
    for (i, line) in lines {
        let line_no = i + 1;
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        let cell = |c: usize, name: &str, missing_ok: bool| -> Result<f64, String> {
            match cells.get(c) {
                Some(s) if s.is_empty() && missing_ok => Ok(f64::NAN),
                Some(s) if s.is_empty() => Err(format!(
                    "{}: line {line_no}: column `{name}` is empty: only `value` may be missing \
                     (a row whose time, place or error is unknown cannot be assimilated)",
                    path.display()
                )),
                Some(s) => s.parse::<f64>().map_err(|_| {
                    format!(
                        "{}: line {line_no}: column `{name}`: `{s}` is not a number",
                        path.display()
                    )
                }),
                None => Err(format!(
                    "{}: line {line_no}: has {} fields, the header {}",
                    path.display(),
                    cells.len(),
                    names.len()
                )),
            }
        };
        let place = match (index, x) {
            (Some(c), _) => Place::Index(cell(c, "index", false)?),
            (None, Some(cx)) => Place::At([
                cell(cx, "x", false)?,
                y.map_or(Ok(0.0), |cy| cell(cy, "y", false))?,
            ]),
            (None, None) => unreachable!("checked above"),
        };
        rows.push(Row {
            line: format!("line {line_no}"),
            time: cell(time, "time", false)?,
            place,
            value: cell(value, "value", true)?,
            error: cell(error, "error", false)?,
        });
    }
    Ok(rows)
}

fn read_nc(path: &Path) -> Result<Vec<Row>, String> {
    #[cfg(feature = "netcdf")]
    let ds = io::read_netcdf(path);
    #[cfg(not(feature = "netcdf"))]
    let ds = io::read_classic(path);
    let ds = ds.map_err(|e| e.to_string())?;
    let var = |name: &str| -> Result<Option<Vec<f64>>, String> {
        ds.variable(name)
            .map(|v| {
                v.decoded_f64()
                    .map_err(|e| format!("{}: {e}", path.display()))
            })
            .transpose()
    };
    let need = |name: &str| {
        var(name)?.ok_or_else(|| {
            format!(
                "{}: no variable `{name}` (variables: time, value, error, and index or x[,y])",
                path.display()
            )
        })
    };
    let (time, value, error) = (need("time")?, need("value")?, need("error")?);
    let index = var("index")?;
    let (x, y) = (var("x")?, var("y")?);
    let m = time.len();
    for (name, v) in [
        ("value", Some(&value)),
        ("error", Some(&error)),
        ("index", index.as_ref()),
        ("x", x.as_ref()),
        ("y", y.as_ref()),
    ] {
        if let Some(v) = v
            && v.len() != m
        {
            return Err(format!(
                "{}: variable `{name}` has {} values, `time` {m}",
                path.display(),
                v.len()
            ));
        }
    }
    // The place is `index` where there is one, else `x` (and `y`).
    let at = index.is_none();
    for (name, v) in [
        ("time", Some(&time)),
        ("error", Some(&error)),
        ("index", index.as_ref()),
        ("x", x.as_ref().filter(|_| at)),
        ("y", y.as_ref().filter(|_| at)),
    ] {
        if let Some(i) = v.and_then(|v| v.iter().position(|x| x.is_nan())) {
            return Err(format!(
                "{}: observation {i} (0-based): variable `{name}` is missing (its _FillValue or \
                 missing_value, outside its valid range, or NaN): only `value` may be missing \
                 (a row whose time, place or error is unknown cannot be assimilated)",
                path.display()
            ));
        }
    }
    let place = |i: usize| -> Result<Place, String> {
        match (&index, &x) {
            (Some(idx), _) => Ok(Place::Index(idx[i])),
            (None, Some(x)) => Ok(Place::At([x[i], y.as_ref().map_or(0.0, |y| y[i])])),
            (None, None) => Err(format!(
                "{}: needs an `index` or an `x` variable",
                path.display()
            )),
        }
    };
    (0..m)
        .map(|i| {
            Ok(Row {
                line: format!("observation {i} (0-based)"),
                time: time[i],
                place: place(i)?,
                value: value[i],
                error: error[i],
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("rime-obsfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn csv_rows_become_batches_per_cycle() {
        let g = Geometry::chain(10, true, "x");
        let path = write(
            "ok.csv",
            "# station data\ntime,index,value,error\n0.1,3,1.5,0.5\n0.1,7,,0.5\n0.3,2,-1.0,1.0\n0.5,0,9,1\n",
        );
        let obs = FileObservations::read(&path, &g, 0.1, 4).unwrap();
        assert_eq!(obs.len(), 3, "the row at cycle 4 is past the run");
        let b0 = obs.batch(0, 0.1);
        assert_eq!((b0.len(), b0.missing), (1, 1));
        assert_eq!(b0.values[0], 1.5);
        assert_eq!(b0.error.std()[0], 0.5);
        assert!(obs.batch(1, 0.2).is_empty());
        let b2 = obs.batch(2, 0.3);
        let sel = b2.operator.linear().unwrap().selected_indices().unwrap();
        assert_eq!(sel, vec![2]);
    }

    #[test]
    fn locations_map_to_the_nearest_point_and_bad_rows_are_named() {
        let g = Geometry::chain(10, true, "x");
        let path = write("xy.csv", "time,x,value,error\n0.2,9.8,1,1\n");
        let obs = FileObservations::read(&path, &g, 0.1, 3).unwrap();
        let b = obs.batch(1, 0.2);
        let sel = b.operator.linear().unwrap().selected_indices().unwrap();
        assert_eq!(sel, vec![0], "9.8 wraps to 0 on a periodic chain");
        let bad = write("bad.csv", "time,index,value,error\n0.15,1,1,1\n");
        let e = FileObservations::read(&bad, &g, 0.1, 3).unwrap_err();
        assert!(e.contains("line 2") && e.contains("0.15"), "{e}");
        let bad = write("bad2.csv", "time,index,value,error\n0.1,12,1,1\n");
        let e = FileObservations::read(&bad, &g, 0.1, 3).unwrap_err();
        assert!(e.contains("index 12"), "{e}");
        let bad = write("bad3.csv", "time,value,error\n0.1,1,1\n");
        assert!(
            FileObservations::read(&bad, &g, 0.1, 3)
                .unwrap_err()
                .contains("`index`")
        );
    }

    /// Writes `ds` as a classic NetCDF file `name` in the test directory.
    fn write_nc(name: &str, ds: &io::Dataset) -> std::path::PathBuf {
        let path = write(name, "");
        io::write_netcdf(&path, ds, io::NetcdfFormat::Classic).unwrap();
        path
    }

    /// An observation dataset: `index` (int) and `time`, `value`, `error` (double).
    fn obs_nc(time: &[f64], index: &[i32], value: &[f64], error: &[f64]) -> io::Dataset {
        let mut ds = io::Dataset::new();
        ds.dim("obs", time.len())
            .var_f64("time", &["obs"], time.to_vec(), &[])
            .var_i32("index", &["obs"], index.to_vec(), &[])
            .var_f64("value", &["obs"], value.to_vec(), &[])
            .var_f64("error", &["obs"], error.to_vec(), &[]);
        ds
    }

    /// The values and missing count of cycle `k` (time `(k + 1) / 10`).
    fn cycle(obs: &FileObservations, k: usize) -> (Vec<f64>, usize) {
        let b = obs.batch(k, (k + 1) as f64 * 0.1);
        (b.values.iter().copied().collect(), b.missing)
    }

    #[test]
    fn nc_fill_value_in_value_is_a_missing_observation() {
        let g = Geometry::chain(10, true, "x");
        let mut ds = obs_nc(&[0.1, 0.1], &[1, 2], &[1.5, -999.0], &[1.0, 1.0]);
        ds.var_attr("value", "_FillValue", -999.0);
        let obs = FileObservations::read(&write_nc("fill.nc", &ds), &g, 0.1, 2).unwrap();
        assert_eq!(cycle(&obs, 0), (vec![1.5], 1), "-999 is the fill value");
    }

    #[test]
    fn nc_missing_value_in_value_is_a_missing_observation() {
        let g = Geometry::chain(10, true, "x");
        let mut ds = obs_nc(
            &[0.1, 0.1, 0.1],
            &[1, 2, 3],
            &[-99.0, 2.5, -98.0],
            &[1.0; 3],
        );
        ds.var_attr("value", "missing_value", vec![-99.0, -98.0]);
        let obs = FileObservations::read(&write_nc("missing.nc", &ds), &g, 0.1, 2).unwrap();
        assert_eq!(cycle(&obs, 0), (vec![2.5], 2));
    }

    #[test]
    fn nc_packed_short_value_is_unpacked() {
        let g = Geometry::chain(10, true, "x");
        let path = write("packed.nc", "");
        let mut def = netcdf3::DataSet::new();
        def.add_fixed_dim("obs", 3).unwrap();
        def.add_var_f64("time", &["obs"]).unwrap();
        def.add_var_i32("index", &["obs"]).unwrap();
        def.add_var_f64("error", &["obs"]).unwrap();
        def.add_var_i16("value", &["obs"]).unwrap();
        def.add_var_attr_f64("value", "scale_factor", vec![0.01])
            .unwrap();
        def.add_var_attr_f64("value", "add_offset", vec![1.0])
            .unwrap();
        // Two shorts: `netcdf3` 0.6 pads a one-short attribute with the
        // value instead of zeros, which its own reader then refuses.
        def.add_var_attr_i16("value", "missing_value", vec![-32767, -32768])
            .unwrap();
        let mut w = netcdf3::FileWriter::open(&path).unwrap();
        w.set_def(&def, netcdf3::Version::Classic, 0).unwrap();
        w.write_var_f64("time", &[0.1; 3]).unwrap();
        w.write_var_i32("index", &[1, 2, 3]).unwrap();
        w.write_var_f64("error", &[0.5; 3]).unwrap();
        w.write_var_i16("value", &[383, -32767, 483]).unwrap();
        w.close().unwrap();
        let obs = FileObservations::read(&path, &g, 0.1, 2).unwrap();
        let (values, missing) = cycle(&obs, 0);
        assert_eq!(missing, 1, "-32767 is a packed missing value");
        assert_eq!(values.len(), 2);
        for (got, want) in values.iter().zip([4.83, 5.83]) {
            assert!((got - want).abs() <= 1e-12 * want, "{got} for {want}");
        }
    }

    #[test]
    fn nc_values_outside_the_valid_range_are_missing() {
        let g = Geometry::chain(10, true, "x");
        let ds = || {
            obs_nc(
                &[0.1; 4],
                &[1, 2, 3, 4],
                &[-5.0, 0.0, 50.0, 101.0],
                &[1.0; 4],
            )
        };
        let mut range = ds();
        range.var_attr("value", "valid_range", vec![0.0, 100.0]);
        let obs = FileObservations::read(&write_nc("range.nc", &range), &g, 0.1, 1).unwrap();
        assert_eq!(cycle(&obs, 0), (vec![0.0, 50.0], 2));
        let mut min = ds();
        min.var_attr("value", "valid_min", 0.0);
        let obs = FileObservations::read(&write_nc("vmin.nc", &min), &g, 0.1, 1).unwrap();
        assert_eq!(cycle(&obs, 0), (vec![0.0, 50.0, 101.0], 1));
        let mut max = ds();
        max.var_attr("value", "valid_max", 10.0);
        let obs = FileObservations::read(&write_nc("vmax.nc", &max), &g, 0.1, 1).unwrap();
        assert_eq!(cycle(&obs, 0), (vec![-5.0, 0.0], 2));
    }

    #[test]
    fn nc_missing_error_or_index_is_an_error_naming_the_variable() {
        let g = Geometry::chain(10, true, "x");
        let mut ds = obs_nc(&[0.1, 0.1], &[1, 2], &[1.0, 2.0], &[1.0, -999.0]);
        ds.var_attr("error", "_FillValue", -999.0);
        let e = FileObservations::read(&write_nc("fillerr.nc", &ds), &g, 0.1, 1).unwrap_err();
        assert!(
            e.contains("fillerr.nc") && e.contains("`error`") && e.contains("observation 1"),
            "{e}"
        );
        let mut ds = obs_nc(&[0.1, 0.1], &[-1, 2], &[1.0, 2.0], &[1.0, 1.0]);
        ds.var_attr("index", "_FillValue", -1);
        let e = FileObservations::read(&write_nc("fillidx.nc", &ds), &g, 0.1, 1).unwrap_err();
        assert!(
            e.contains("fillidx.nc") && e.contains("`index`") && e.contains("observation 0"),
            "{e}"
        );
        let mut ds = obs_nc(&[0.1, 0.1], &[1, 2], &[1.0, 2.0], &[1.0, 1.0]);
        ds.var_attr("time", "valid_max", 0.05);
        let e = FileObservations::read(&write_nc("filltime.nc", &ds), &g, 0.1, 1).unwrap_err();
        assert!(e.contains("`time`") && e.contains("is missing"), "{e}");
    }

    #[test]
    fn nc_malformed_attribute_is_an_error_naming_it() {
        let g = Geometry::chain(10, true, "x");
        let mut ds = obs_nc(&[0.1], &[1], &[483.0], &[1.0]);
        ds.var_attr("value", "scale_factor", "0.01");
        let e = FileObservations::read(&write_nc("badattr.nc", &ds), &g, 0.1, 1).unwrap_err();
        assert!(
            e.contains("badattr.nc") && e.contains("`value`") && e.contains("`scale_factor`"),
            "{e}"
        );
        let mut ds = obs_nc(&[0.1], &[1], &[1.0], &[1.0]);
        ds.var_attr("error", "valid_range", vec![0.0]);
        let e = FileObservations::read(&write_nc("badrange.nc", &ds), &g, 0.1, 1).unwrap_err();
        assert!(e.contains("`error`") && e.contains("`valid_range`"), "{e}");
    }

    #[test]
    fn csv_duplicated_row_is_refused_naming_both_lines() {
        let g = Geometry::chain(20, true, "x");
        let path = write(
            "dup.csv",
            "time,index,value,error\n0.2,12,1.5,0.5\n0.2,3,1,1\n0.3,12,2,1\n# again\n0.2,12,1.5,0.5\n",
        );
        let e = FileObservations::read(&path, &g, 0.1, 4).unwrap_err();
        assert!(
            e.contains("dup.csv: line 6 repeats line 2")
                && e.contains("time 0.2")
                && e.contains("state index 12"),
            "{e}"
        );
        let path = write(
            "dupxy.csv",
            "time,x,y,value,error\n0.1,3.2,0,1,1\n0.1,3.2,0,2,1\n",
        );
        let e = FileObservations::read(&path, &g, 0.1, 4).unwrap_err();
        assert!(e.contains("line 3 repeats line 2"), "{e}");
    }

    #[test]
    fn nc_duplicated_observation_is_refused() {
        let g = Geometry::chain(10, true, "x");
        let ds = obs_nc(&[0.1, 0.2, 0.1], &[4, 4, 4], &[1.0, 2.0, 3.0], &[1.0; 3]);
        let e = FileObservations::read(&write_nc("dup.nc", &ds), &g, 0.1, 2).unwrap_err();
        assert!(
            e.contains("dup.nc")
                && e.contains("observation 2 (0-based) repeats observation 0")
                && e.contains("state index 4"),
            "{e}"
        );
    }

    #[test]
    fn same_point_at_two_times_or_from_two_stations_is_accepted() {
        let g = Geometry::chain(20, true, "x");
        let path = write(
            "twice.csv",
            "time,index,value,error\n0.1,5,1,1\n0.2,5,2,1\n0.2,6,,1\n0.2,6,3,1\n",
        );
        let obs = FileObservations::read(&path, &g, 0.1, 2).unwrap();
        assert_eq!(obs.len(), 4);
        assert_eq!(
            cycle(&obs, 1),
            (vec![2.0, 3.0], 1),
            "a missing row is no duplicate"
        );
        // Two stations whose nearest point is the same: both are used.
        let path = write("near.csv", "time,x,value,error\n0.1,3.1,1,1\n0.1,2.9,2,1\n");
        let obs = FileObservations::read(&path, &g, 0.1, 2).unwrap();
        let b = obs.batch(0, 0.1);
        let sel = b.operator.linear().unwrap().selected_indices().unwrap();
        assert_eq!(sel, vec![3, 3]);
        let ds = obs_nc(&[0.1, 0.2], &[4, 4], &[1.0, 2.0], &[1.0; 2]);
        let obs = FileObservations::read(&write_nc("twice.nc", &ds), &g, 0.1, 2).unwrap();
        assert_eq!((cycle(&obs, 0).0, cycle(&obs, 1).0), (vec![1.0], vec![2.0]));
    }

    #[test]
    fn csv_empty_time_place_or_error_is_named() {
        let g = Geometry::chain(10, true, "x");
        let path = write("emptyerr.csv", "time,index,value,error\n0.1,3,1,\n");
        let e = FileObservations::read(&path, &g, 0.1, 2).unwrap_err();
        assert!(
            e.contains("line 2") && e.contains("column `error` is empty"),
            "{e}"
        );
    }
}
