//! NetCDF output (and read-back) for rime experiments.
//!
//! A [`Dataset`] is a small in-memory, CF-style description of one NetCDF
//! file: global attributes, fixed-length dimensions and variables holding
//! row-major (C order) data. [`write_netcdf`] writes it as
//!
//! - [`NetcdfFormat::Classic`]: CDF-2 ("64-bit offset") classic NetCDF, in
//!   pure Rust through the `netcdf3` crate; always available;
//! - [`NetcdfFormat::Netcdf4`]: NetCDF-4 (HDF5) through libnetcdf; needs the
//!   cargo feature `netcdf`.
//!
//! Types map as `f64` ↔ `NC_DOUBLE`, `f32` ↔ `NC_FLOAT`, `i32` ↔ `NC_INT`,
//! text attributes ↔ `NC_CHAR`. Unlimited dimensions are not written.
//!
//! Every write is atomic ([`write_atomic`] for plain bytes): data goes to a
//! hidden temporary file in the target's directory, is fsynced and renamed
//! over the target, so readers see the old file or the complete new one.
//!
//! ```no_run
//! use rime::io::{AttrValue, Dataset, NetcdfFormat, write_netcdf};
//!
//! let mut ds = Dataset::new();
//! ds.attr("Conventions", "CF-1.8")
//!     .attr("seed", 42)
//!     .dim("time", 3)
//!     .var_f64("time", &["time"], vec![0.0, 0.05, 0.1], &[("units", "1"), ("long_name", "model time")])
//!     .var_attr("time", "valid_range", AttrValue::F64s(vec![0.0, 1.0]));
//! write_netcdf("out.nc".as_ref(), &ds, NetcdfFormat::Classic)?;
//! # Ok::<(), rime::io::IoError>(())
//! ```

mod atomic;
mod classic;
pub mod folder;
#[cfg(feature = "netcdf")]
mod netcdf4;
pub mod stream;

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

/// An in-memory description of a NetCDF dataset (CF-style), written by one of the backends.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Dataset {
    /// Global attributes, in file order.
    pub attributes: Vec<(String, AttrValue)>,
    /// Dimension names and lengths (all fixed, length ≥ 1), in file order.
    pub dimensions: Vec<(String, usize)>,
    /// Variables, in file order.
    pub variables: Vec<Variable>,
}

/// One NetCDF variable: its dimensions, data and attributes.
#[derive(Clone, Debug, PartialEq)]
pub struct Variable {
    /// Variable name.
    pub name: String,
    /// Names of the dimensions, slowest-varying first; empty for a scalar.
    pub dimensions: Vec<String>,
    /// Values, row-major (C order) over `dimensions`.
    pub data: VarData,
    /// Variable attributes (e.g. `units`, `long_name`), in file order.
    pub attributes: Vec<(String, AttrValue)>,
}

/// The values of a variable, row-major (C order) over its dimensions.
#[derive(Clone, Debug, PartialEq)]
pub enum VarData {
    /// `NC_DOUBLE` values.
    F64(Vec<f64>),
    /// `NC_FLOAT` values.
    F32(Vec<f32>),
    /// `NC_INT` values.
    I32(Vec<i32>),
    /// `NC_CHAR` values: fixed-length text, one byte each, the last
    /// dimension the string length (a label coordinate, NUL-padded).
    Char(Vec<u8>),
}

impl VarData {
    /// Labels as an `NC_CHAR` array of `labels.len() x width` bytes
    /// (`width` the longest label), NUL-padded: the classic NetCDF way to
    /// write a string coordinate (xarray decodes it with `_Encoding`).
    pub fn labels(labels: &[String]) -> (Self, usize) {
        let width = labels.iter().map(String::len).max().unwrap_or(0).max(1);
        let mut bytes = vec![0u8; labels.len() * width];
        for (row, l) in bytes.chunks_mut(width).zip(labels) {
            row[..l.len()].copy_from_slice(l.as_bytes());
        }
        (VarData::Char(bytes), width)
    }
}

/// The value of a global or variable attribute.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    /// Text (`NC_CHAR`), UTF-8 without NUL bytes.
    Text(String),
    /// One `NC_DOUBLE`.
    F64(f64),
    /// Several `NC_DOUBLE`s. A one-element list reads back as [`AttrValue::F64`].
    F64s(Vec<f64>),
    /// One `NC_INT`.
    I32(i32),
}

/// On-disk NetCDF format written by [`write_netcdf`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetcdfFormat {
    /// Classic NetCDF, CDF-2 (64-bit offset) variant; pure Rust.
    #[default]
    Classic,
    /// NetCDF-4 (HDF5-based); needs the cargo feature `netcdf`.
    Netcdf4,
}

impl fmt::Display for NetcdfFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NetcdfFormat::Classic => "classic",
            NetcdfFormat::Netcdf4 => "netcdf4",
        })
    }
}

/// Errors of this module; every message names the file and, where relevant,
/// the variable, dimension or attribute.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IoError {
    /// The dataset is inconsistent (see [`validate`]); `path` is `None` when
    /// [`validate`] is called directly.
    #[error("invalid dataset{}: {reason}", for_path(.path.as_deref()))]
    InvalidDataset {
        /// File that was about to be written, if any.
        path: Option<PathBuf>,
        /// What is wrong, naming the variable, dimension or attribute.
        reason: String,
    },
    /// An operating-system I/O error.
    #[error("{}: {action}: {reason}", .path.display())]
    Io {
        /// File concerned (the target, not the temporary file).
        path: PathBuf,
        /// What was being done.
        action: String,
        /// Underlying error (in the message; not chained, so that it is
        /// printed once).
        reason: std::io::Error,
    },
    /// The NetCDF library (`netcdf3` or libnetcdf) reported an error.
    #[error("{}: {context}: {message}", .path.display())]
    Netcdf {
        /// File concerned.
        path: PathBuf,
        /// What was being done, naming the variable, dimension or attribute.
        context: String,
        /// The library's message.
        message: String,
    },
    /// The file holds something a [`Dataset`] cannot represent.
    #[error("{}: unsupported: {what}", .path.display())]
    Unsupported {
        /// File concerned.
        path: PathBuf,
        /// What is not supported.
        what: String,
    },
    /// NetCDF-4 was requested but rime was built without the `netcdf` feature.
    #[error(
        "{}: cannot write NetCDF-4: rime was built without the `netcdf` cargo feature; \
         rebuild with `--features netcdf` (needs libnetcdf, e.g. `apt-get install libnetcdf-dev`) \
         or use the classic format",
        .path.display()
    )]
    FeatureDisabled {
        /// File that was to be written.
        path: PathBuf,
    },
    /// rime refuses to touch a file or folder (another command's lock,
    /// files it did not write).
    #[error("{}: {reason}", .path.display())]
    Refused {
        /// File or folder concerned.
        path: PathBuf,
        /// Why, and what to do.
        reason: String,
    },
}

impl From<stream::StreamError> for IoError {
    fn from(e: stream::StreamError) -> Self {
        match e {
            stream::StreamError::Io { path, source } => IoError::Io {
                path,
                action: "streaming records".into(),
                reason: source,
            },
            stream::StreamError::Invalid(reason) => IoError::InvalidDataset { path: None, reason },
        }
    }
}

fn for_path(path: Option<&Path>) -> String {
    path.map(|p| format!(" for {}", p.display()))
        .unwrap_or_default()
}

fn invalid(reason: String) -> IoError {
    IoError::InvalidDataset { path: None, reason }
}

impl From<&str> for AttrValue {
    fn from(s: &str) -> Self {
        AttrValue::Text(s.to_owned())
    }
}

impl From<String> for AttrValue {
    fn from(s: String) -> Self {
        AttrValue::Text(s)
    }
}

impl From<f64> for AttrValue {
    fn from(x: f64) -> Self {
        AttrValue::F64(x)
    }
}

impl From<Vec<f64>> for AttrValue {
    fn from(xs: Vec<f64>) -> Self {
        AttrValue::F64s(xs)
    }
}

impl From<&[f64]> for AttrValue {
    fn from(xs: &[f64]) -> Self {
        AttrValue::F64s(xs.to_vec())
    }
}

impl From<i32> for AttrValue {
    fn from(i: i32) -> Self {
        AttrValue::I32(i)
    }
}

impl From<Vec<f64>> for VarData {
    fn from(d: Vec<f64>) -> Self {
        VarData::F64(d)
    }
}

impl From<Vec<f32>> for VarData {
    fn from(d: Vec<f32>) -> Self {
        VarData::F32(d)
    }
}

impl From<Vec<i32>> for VarData {
    fn from(d: Vec<i32>) -> Self {
        VarData::I32(d)
    }
}

impl VarData {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            VarData::F64(d) => d.len(),
            VarData::F32(d) => d.len(),
            VarData::I32(d) => d.len(),
            VarData::Char(d) => d.len(),
        }
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values as `f64` (floats widened, integers converted exactly).
    pub fn to_f64(&self) -> Vec<f64> {
        match self {
            VarData::F64(d) => d.clone(),
            VarData::F32(d) => d.iter().map(|&x| f64::from(x)).collect(),
            VarData::I32(d) => d.iter().map(|&x| f64::from(x)).collect(),
            VarData::Char(d) => d.iter().map(|&x| f64::from(x)).collect(),
        }
    }

    /// NetCDF type name: `"double"`, `"float"` or `"int"`.
    pub fn type_name(&self) -> &'static str {
        match self {
            VarData::F64(_) => "double",
            VarData::F32(_) => "float",
            VarData::I32(_) => "int",
            VarData::Char(_) => "char",
        }
    }
}

/// Sets `name` to `value` in an attribute list, replacing an existing entry in place.
fn set_attr(list: &mut Vec<(String, AttrValue)>, name: &str, value: AttrValue) {
    match list.iter_mut().find(|(n, _)| n == name) {
        Some(slot) => slot.1 = value,
        None => list.push((name.to_owned(), value)),
    }
}

fn get_attr<'a>(list: &'a [(String, AttrValue)], name: &str) -> Option<&'a AttrValue> {
    list.iter().find(|(n, _)| n == name).map(|(_, v)| v)
}

impl Variable {
    /// A variable without attributes.
    pub fn new(name: &str, dims: &[&str], data: impl Into<VarData>) -> Self {
        Variable {
            name: name.to_owned(),
            dimensions: dims.iter().map(|d| (*d).to_owned()).collect(),
            data: data.into(),
            attributes: Vec::new(),
        }
    }

    /// Sets an attribute (replacing one of the same name).
    pub fn attr(&mut self, name: &str, value: impl Into<AttrValue>) -> &mut Self {
        set_attr(&mut self.attributes, name, value.into());
        self
    }

    /// The attribute called `name`, if any.
    pub fn attribute(&self, name: &str) -> Option<&AttrValue> {
        get_attr(&self.attributes, name)
    }

    /// The values decoded following the CF conventions (section 2.5 and
    /// 8.1), as `f64`, a missing one as NaN:
    ///
    /// - a raw (packed) value equal to `_FillValue` or to one of
    ///   `missing_value` (one number or a list), or outside `valid_range`
    ///   (`[min, max]`) or `valid_min` / `valid_max`, is missing; these
    ///   attributes are compared with the raw value in the variable's type (a
    ///   `float` variable's attribute rounded to `float`), before unpacking,
    ///   as CF says; a raw NaN is missing too;
    /// - the other values are unpacked as `raw * scale_factor + add_offset`
    ///   (an absent one is 1 or 0), for every data type (bytes and shorts
    ///   are read as `int`).
    ///
    /// The unpacked type would be the attributes' type; it is computed in
    /// `f64` here, which holds any of them (a `float` `scale_factor` reads
    /// back as the `f64` of its `float` value).
    ///
    /// # Errors
    /// A malformed attribute, naming the variable and the attribute: text
    /// where numbers are due, `scale_factor` or `add_offset` not one finite
    /// number (or a zero `scale_factor`), `_FillValue`, `valid_min` or
    /// `valid_max` not one number, an empty `missing_value`, `valid_range`
    /// not two numbers with min ≤ max, or `valid_range` given together with
    /// `valid_min` / `valid_max` (CF forbids it).
    pub fn decoded_f64(&self) -> Result<Vec<f64>, String> {
        let bad = |attr: &str, what: String| {
            format!("variable `{}`: attribute `{attr}` {what}", self.name)
        };
        let numbers = |attr: &str| -> Result<Option<Vec<f64>>, String> {
            match self.attribute(attr) {
                None => Ok(None),
                Some(AttrValue::Text(s)) => {
                    Err(bad(attr, format!("is text ({s:?}), not a number")))
                }
                Some(AttrValue::F64(x)) => Ok(Some(vec![*x])),
                Some(AttrValue::I32(i)) => Ok(Some(vec![f64::from(*i)])),
                Some(AttrValue::F64s(xs)) => Ok(Some(xs.clone())),
            }
        };
        let one = |attr: &str| -> Result<Option<f64>, String> {
            match numbers(attr)? {
                None => Ok(None),
                Some(xs) if xs.len() == 1 && !xs[0].is_nan() => Ok(Some(xs[0])),
                Some(xs) => Err(bad(attr, format!("must be one number, not {xs:?}"))),
            }
        };
        // Packed-side attributes compare in the variable's own type.
        let typed = |x: f64| match self.data {
            VarData::F32(_) => f64::from(x as f32),
            _ => x,
        };
        let unpack = |attr: &str, default: f64| -> Result<f64, String> {
            match one(attr)? {
                None => Ok(default),
                Some(x) if x.is_finite() && (attr != "scale_factor" || x != 0.0) => Ok(x),
                Some(x) => Err(bad(
                    attr,
                    format!(
                        "must be a finite{} number, not {x}",
                        if attr == "scale_factor" {
                            " non-zero"
                        } else {
                            ""
                        }
                    ),
                )),
            }
        };
        let scale = unpack("scale_factor", 1.0)?;
        let offset = unpack("add_offset", 0.0)?;
        let fill = match numbers("_FillValue")? {
            None => None,
            Some(xs) if xs.len() == 1 => Some(typed(xs[0])),
            Some(xs) => return Err(bad("_FillValue", format!("must be one number, not {xs:?}"))),
        };
        let missing: Vec<f64> = match numbers("missing_value")? {
            None => Vec::new(),
            Some(xs) if xs.is_empty() => {
                return Err(bad("missing_value", "is an empty list".into()));
            }
            Some(xs) => xs.into_iter().map(typed).collect(),
        };
        let (mut lo, mut hi) = (one("valid_min")?.map(typed), one("valid_max")?.map(typed));
        if let Some(range) = numbers("valid_range")? {
            if lo.is_some() || hi.is_some() {
                return Err(bad(
                    "valid_range",
                    "is given together with `valid_min` or `valid_max` (CF allows one or the other)".into(),
                ));
            }
            match range[..] {
                [a, b] if a <= b => (lo, hi) = (Some(typed(a)), Some(typed(b))),
                _ => {
                    return Err(bad(
                        "valid_range",
                        format!("must be two numbers [min, max] with min <= max, not {range:?}"),
                    ));
                }
            }
        }
        Ok(self
            .data
            .to_f64()
            .into_iter()
            .map(|raw| {
                let is_missing = raw.is_nan()
                    || fill == Some(raw)
                    || missing.contains(&raw)
                    || lo.is_some_and(|lo| raw < lo)
                    || hi.is_some_and(|hi| raw > hi);
                if is_missing {
                    f64::NAN
                } else {
                    raw * scale + offset
                }
            })
            .collect())
    }
}

impl Dataset {
    /// An empty dataset.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a global attribute (replacing one of the same name).
    pub fn attr(&mut self, name: &str, value: impl Into<AttrValue>) -> &mut Self {
        set_attr(&mut self.attributes, name, value.into());
        self
    }

    /// Appends a fixed dimension.
    pub fn dim(&mut self, name: &str, len: usize) -> &mut Self {
        self.dimensions.push((name.to_owned(), len));
        self
    }

    /// Appends a variable.
    pub fn var(&mut self, var: Variable) -> &mut Self {
        self.variables.push(var);
        self
    }

    fn push_var(
        &mut self,
        name: &str,
        dims: &[&str],
        data: VarData,
        attrs: &[(&str, &str)],
    ) -> &mut Self {
        let mut v = Variable::new(name, dims, data);
        for (k, val) in attrs {
            v.attr(k, *val);
        }
        self.var(v)
    }

    /// Appends an `f64` variable with text attributes (`units`, `long_name`, …).
    pub fn var_f64(
        &mut self,
        name: &str,
        dims: &[&str],
        data: Vec<f64>,
        attrs: &[(&str, &str)],
    ) -> &mut Self {
        self.push_var(name, dims, VarData::F64(data), attrs)
    }

    /// Appends an `f32` variable with text attributes.
    pub fn var_f32(
        &mut self,
        name: &str,
        dims: &[&str],
        data: Vec<f32>,
        attrs: &[(&str, &str)],
    ) -> &mut Self {
        self.push_var(name, dims, VarData::F32(data), attrs)
    }

    /// Appends an `i32` variable with text attributes.
    pub fn var_i32(
        &mut self,
        name: &str,
        dims: &[&str],
        data: Vec<i32>,
        attrs: &[(&str, &str)],
    ) -> &mut Self {
        self.push_var(name, dims, VarData::I32(data), attrs)
    }

    /// Sets an attribute of any kind on the variable `var`.
    ///
    /// # Panics
    /// If there is no variable called `var` (a programming error).
    pub fn var_attr(&mut self, var: &str, name: &str, value: impl Into<AttrValue>) -> &mut Self {
        match self.variable_mut(var) {
            Some(v) => {
                v.attr(name, value);
            }
            None => panic!("Dataset::var_attr: no variable `{var}` (add it first)"),
        }
        self
    }

    /// The global attribute called `name`, if any.
    pub fn attribute(&self, name: &str) -> Option<&AttrValue> {
        get_attr(&self.attributes, name)
    }

    /// Length of the dimension called `name`, if any.
    pub fn dim_len(&self, name: &str) -> Option<usize> {
        self.dimensions
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, l)| *l)
    }

    /// The variable called `name`, if any.
    pub fn variable(&self, name: &str) -> Option<&Variable> {
        self.variables.iter().find(|v| v.name == name)
    }

    /// The variable called `name`, mutably, if any.
    pub fn variable_mut(&mut self, name: &str) -> Option<&mut Variable> {
        self.variables.iter_mut().find(|v| v.name == name)
    }
}

/// Checks a NetCDF name: non-empty, at most 256 bytes, starts with a letter,
/// digit, `_` or non-ASCII character, no `/` or control characters, no
/// trailing whitespace (the netCDF-C rules).
fn check_name(name: &str) -> Result<(), String> {
    if netcdf3::is_valid_name(name) && !name.ends_with(char::is_whitespace) {
        Ok(())
    } else {
        Err(format!("`{name}` is not a valid NetCDF name"))
    }
}

/// Checks an attribute list (names valid and unique, text without NUL).
fn check_attrs(owner: &str, attrs: &[(String, AttrValue)]) -> Result<(), IoError> {
    let mut seen = HashSet::new();
    for (name, value) in attrs {
        check_name(name).map_err(|e| invalid(format!("{owner}: attribute name {e}")))?;
        if !seen.insert(name.as_str()) {
            return Err(invalid(format!("{owner}: duplicate attribute `{name}`")));
        }
        if let AttrValue::Text(s) = value
            && s.contains('\0')
        {
            return Err(invalid(format!(
                "{owner}: attribute `{name}`: text contains a NUL byte"
            )));
        }
    }
    Ok(())
}

/// Checks that `_FillValue`, if present, is one value of the variable's type
/// (libnetcdf rejects a mismatch, and readers misinterpret it).
fn check_fill_value(v: &Variable) -> Result<(), IoError> {
    let Some(fill) = v.attribute("_FillValue") else {
        return Ok(());
    };
    let ok = matches!(
        (&v.data, fill),
        (VarData::F64(_), AttrValue::F64(_)) | (VarData::I32(_), AttrValue::I32(_))
    );
    if ok {
        return Ok(());
    }
    let reason = match v.data {
        VarData::F32(_) => "is not supported on float variables (no f32 attribute kind)".to_owned(),
        _ => format!("must be a single {} value", v.data.type_name()),
    };
    Err(invalid(format!(
        "variable `{}`: attribute `_FillValue` {reason}",
        v.name
    )))
}

/// Checks consistency before writing: names valid and unique, dimensions of
/// length ≥ 1, every variable's dimensions defined and not repeated, data
/// length equal to the product of its dimension lengths, text attributes
/// without NUL bytes, and `_FillValue` of the variable's type.
///
/// The error names the offending variable, dimension or attribute.
pub fn validate(ds: &Dataset) -> Result<(), IoError> {
    check_attrs("global attributes", &ds.attributes)?;
    let mut dims = std::collections::HashMap::new();
    for (name, len) in &ds.dimensions {
        check_name(name).map_err(|e| invalid(format!("dimension name {e}")))?;
        if *len == 0 {
            return Err(invalid(format!(
                "dimension `{name}` has length 0 (unlimited dimensions are not supported)"
            )));
        }
        if dims.insert(name.as_str(), *len).is_some() {
            return Err(invalid(format!("duplicate dimension `{name}`")));
        }
    }
    let mut vars = HashSet::new();
    for v in &ds.variables {
        check_name(&v.name).map_err(|e| invalid(format!("variable name {e}")))?;
        if !vars.insert(v.name.as_str()) {
            return Err(invalid(format!("duplicate variable `{}`", v.name)));
        }
        let mut expected: usize = 1;
        let mut used = HashSet::new();
        for d in &v.dimensions {
            let Some(&len) = dims.get(d.as_str()) else {
                return Err(invalid(format!(
                    "variable `{}`: unknown dimension `{d}`",
                    v.name
                )));
            };
            if !used.insert(d.as_str()) {
                return Err(invalid(format!(
                    "variable `{}`: dimension `{d}` is used twice",
                    v.name
                )));
            }
            expected = expected
                .checked_mul(len)
                .ok_or_else(|| invalid(format!("variable `{}`: size overflows usize", v.name)))?;
        }
        if v.data.len() != expected {
            let shape: Vec<String> = v
                .dimensions
                .iter()
                .map(|d| format!("{d}={}", dims[d.as_str()]))
                .collect();
            return Err(invalid(format!(
                "variable `{}`: data has {} values but dimensions ({}) need {expected}",
                v.name,
                v.data.len(),
                shape.join(", ")
            )));
        }
        check_attrs(&format!("variable `{}`", v.name), &v.attributes)?;
        check_fill_value(v)?;
    }
    Ok(())
}

/// Writes `ds` to `path` in `format`, atomically: to a temporary file in the
/// same directory, fsync, then rename over `path`.
///
/// The dataset is [`validate`]d first. On any error the temporary file is
/// removed and an existing file at `path` is left untouched.
pub fn write_netcdf(path: &Path, ds: &Dataset, format: NetcdfFormat) -> Result<(), IoError> {
    #[cfg(not(feature = "netcdf"))]
    if format == NetcdfFormat::Netcdf4 {
        return Err(IoError::FeatureDisabled {
            path: path.to_path_buf(),
        });
    }
    validate(ds).map_err(|e| match e {
        IoError::InvalidDataset { reason, .. } => IoError::InvalidDataset {
            path: Some(path.to_path_buf()),
            reason,
        },
        other => other,
    })?;
    match format {
        NetcdfFormat::Classic => atomic::write_with(path, |tmp| classic::write(tmp, path, ds)),
        #[cfg(feature = "netcdf")]
        NetcdfFormat::Netcdf4 => atomic::write_with(path, |tmp| netcdf4::write(tmp, path, ds)),
        #[cfg(not(feature = "netcdf"))]
        NetcdfFormat::Netcdf4 => unreachable!("handled above"),
    }
}

/// Writes `bytes` to `path` with the same atomic scheme as [`write_netcdf`]
/// (for `summary.json`, tables, …).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), IoError> {
    atomic::write_bytes(path, bytes)
}

/// Reads a classic (CDF-1 or CDF-2) NetCDF file in pure Rust.
///
/// Unlimited dimensions come back as fixed ones of their current length.
/// `NC_BYTE`/`NC_SHORT` data are widened to `i32`. Numeric attributes come
/// back as [`AttrValue::I32`] (one integer), [`AttrValue::F64`] (one float)
/// or [`AttrValue::F64s`] (any other count). Text (`NC_CHAR`) variables come
/// back as [`VarData::Char`].
pub fn read_classic(path: &Path) -> Result<Dataset, IoError> {
    classic::read(path)
}

/// Reads any NetCDF file libnetcdf understands (classic, 64-bit offset,
/// CDF-5, NetCDF-4), root group only; sub-groups are ignored.
///
/// Conversions as for [`read_classic`]; also unsigned integer data up to 16
/// bits are widened to `i32`. Other types (64-bit integers, strings, …)
/// give [`IoError::Unsupported`].
#[cfg(feature = "netcdf")]
pub fn read_netcdf(path: &Path) -> Result<Dataset, IoError> {
    netcdf4::read(path)
}

/// Integer attribute values read from a file: one value fitting `i32` →
/// [`AttrValue::I32`], otherwise floats if exactly representable, else `None`.
pub(crate) fn attr_from_ints(values: impl IntoIterator<Item = i128>) -> Option<AttrValue> {
    let values: Vec<i128> = values.into_iter().collect();
    if let [x] = values[..]
        && let Ok(i) = i32::try_from(x)
    {
        return Some(AttrValue::I32(i));
    }
    const EXACT: i128 = 1 << 53;
    if values.iter().any(|x| x.abs() > EXACT) {
        return None;
    }
    Some(attr_from_floats(values.into_iter().map(|x| x as f64)))
}

/// Float attribute values read from a file: one → [`AttrValue::F64`], else [`AttrValue::F64s`].
pub(crate) fn attr_from_floats(values: impl IntoIterator<Item = f64>) -> AttrValue {
    let mut values: Vec<f64> = values.into_iter().collect();
    if values.len() == 1 {
        AttrValue::F64(values.remove(0))
    } else {
        AttrValue::F64s(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A fresh directory under the system temp dir, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Self {
            static N: AtomicU64 = AtomicU64::new(0);
            let dir = std::env::temp_dir().join(format!(
                "rime-io-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        fn path(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }

        /// Names of all entries (including hidden temporary files).
        fn entries(&self) -> Vec<String> {
            let mut names: Vec<String> = fs::read_dir(&self.0)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// A dataset exercising every data and attribute kind, with awkward values.
    fn sample() -> Dataset {
        let state = vec![
            f64::NAN,
            f64::from_bits(0x7ff8_0000_dead_beef), // NaN with a payload
            -0.0,
            f64::MIN_POSITIVE / 8.0, // subnormal
            f64::INFINITY,
            f64::NEG_INFINITY,
            1.0 / 3.0,
            f64::MAX,
            f64::MIN,
            2.5,
            -7.0,
            std::f64::consts::PI,
        ];
        let mut ds = Dataset::new();
        ds.attr("title", "rime io test — Lorenz–96, °C")
            .attr("comment", "")
            .attr("Conventions", "CF-1.8")
            .attr("seed", 42)
            .attr("dt", 0.05)
            .attr("forcing", vec![8.0, 8.5, -1e-300])
            .attr("empty_list", AttrValue::F64s(vec![]))
            .dim("time", 3)
            .dim("x", 4)
            .var_f64(
                "time",
                &["time"],
                vec![0.0, 0.05, 0.1],
                &[
                    ("units", "days since 2000-01-01"),
                    ("standard_name", "time"),
                ],
            )
            .var_f64(
                "state",
                &["time", "x"],
                state,
                &[("units", "1"), ("long_name", "Lorenz-96 state")],
            )
            .var_attr("state", "valid_range", vec![-1e300, 1e300])
            .var_attr("state", "_FillValue", 9.96921e36)
            .var_attr("state", "member", -3)
            .var_f32(
                "x_f32",
                &["x"],
                vec![f32::NAN, -0.0, f32::MIN_POSITIVE / 2.0, 1.5e38],
                &[("long_name", "single precision")],
            )
            .var_i32("obs_index", &["x"], vec![i32::MIN, -1, 0, i32::MAX], &[])
            .var_attr("obs_index", "_FillValue", -2_147_483_647)
            .var(Variable::new("rmse", &[], vec![0.25]))
            .var_attr("rmse", "units", "1");
        ds
    }

    fn bits(d: &VarData) -> Vec<u64> {
        match d {
            VarData::F64(v) => v.iter().map(|x| x.to_bits()).collect(),
            VarData::F32(v) => v.iter().map(|x| u64::from(x.to_bits())).collect(),
            VarData::I32(v) => v.iter().map(|&x| x as u32 as u64).collect(),
            VarData::Char(v) => v.iter().map(|&x| u64::from(x)).collect(),
        }
    }

    /// Equality with data compared bit for bit (NaN-safe).
    fn assert_same(a: &Dataset, b: &Dataset) {
        assert_eq!(a.attributes, b.attributes);
        assert_eq!(a.dimensions, b.dimensions);
        assert_eq!(a.variables.len(), b.variables.len());
        for (x, y) in a.variables.iter().zip(&b.variables) {
            assert_eq!(x.name, y.name);
            assert_eq!(x.dimensions, y.dimensions, "{}", x.name);
            assert_eq!(x.attributes, y.attributes, "{}", x.name);
            assert_eq!(x.data.type_name(), y.data.type_name(), "{}", x.name);
            assert_eq!(bits(&x.data), bits(&y.data), "{}", x.name);
        }
    }

    #[test]
    fn classic_round_trip_is_exact() {
        let dir = Scratch::new("classic");
        let path = dir.path("out.nc");
        let ds = sample();
        write_netcdf(&path, &ds, NetcdfFormat::Classic).unwrap();
        let bytes = fs::read(&path).unwrap();
        assert_eq!(&bytes[..4], b"CDF\x02", "64-bit offset (CDF-2) expected");
        assert_same(&ds, &read_classic(&path).unwrap());
        assert_eq!(dir.entries(), ["out.nc"]);
    }

    #[test]
    fn one_element_list_reads_back_as_scalar() {
        let dir = Scratch::new("onelist");
        let path = dir.path("a.nc");
        let mut ds = Dataset::new();
        ds.attr("single", vec![1.5]);
        write_netcdf(&path, &ds, NetcdfFormat::Classic).unwrap();
        let back = read_classic(&path).unwrap();
        assert_eq!(back.attribute("single"), Some(&AttrValue::F64(1.5)));
    }

    #[test]
    fn rewrite_replaces_file_and_leaves_no_temp() {
        let dir = Scratch::new("rewrite");
        let path = dir.path("out.nc");
        write_netcdf(&path, &sample(), NetcdfFormat::Classic).unwrap();
        let mut small = Dataset::new();
        small.dim("n", 1).var_i32("k", &["n"], vec![7], &[]);
        write_netcdf(&path, &small, NetcdfFormat::Classic).unwrap();
        assert_same(&small, &read_classic(&path).unwrap());
        write_atomic(&dir.path("summary.json"), b"{\"ok\":true}").unwrap();
        write_atomic(&dir.path("summary.json"), b"{\"ok\":false}").unwrap();
        assert_eq!(
            fs::read(dir.path("summary.json")).unwrap(),
            b"{\"ok\":false}"
        );
        assert_eq!(dir.entries(), ["out.nc", "summary.json"]);
    }

    #[test]
    fn invalid_dataset_leaves_existing_target_untouched() {
        let dir = Scratch::new("invalid");
        let path = dir.path("out.nc");
        fs::write(&path, b"previous contents").unwrap();
        let mut ds = sample();
        ds.var_f64("bad", &["time", "x"], vec![1.0; 5], &[]);
        let err = write_netcdf(&path, &ds, NetcdfFormat::Classic).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("`bad`") && msg.contains(&*path.to_string_lossy()),
            "{msg}"
        );
        assert_eq!(fs::read(&path).unwrap(), b"previous contents");
        assert_eq!(dir.entries(), ["out.nc"]);
    }

    #[test]
    fn failing_backend_removes_temp_and_keeps_target() {
        let dir = Scratch::new("backend");
        let path = dir.path("out.nc");
        fs::write(&path, b"previous contents").unwrap();
        let err = atomic::write_with(&path, |tmp| {
            fs::write(tmp, b"half a file").unwrap();
            Err(IoError::Netcdf {
                path: path.clone(),
                context: "test".into(),
                message: "simulated failure".into(),
            })
        })
        .unwrap_err();
        assert!(err.to_string().contains("simulated failure"));
        assert_eq!(fs::read(&path).unwrap(), b"previous contents");
        assert_eq!(dir.entries(), ["out.nc"]);
        // Also on panic inside the backend.
        let result = std::panic::catch_unwind(|| {
            let _ = atomic::write_with(&path, |tmp| {
                fs::write(tmp, b"half a file").unwrap();
                panic!("backend panicked");
            });
        });
        assert!(result.is_err());
        assert_eq!(dir.entries(), ["out.nc"]);
    }

    #[test]
    fn missing_directory_is_an_error_naming_the_path() {
        let dir = Scratch::new("missing");
        let path = dir.path("no/such/dir/out.nc");
        let err = write_netcdf(&path, &sample(), NetcdfFormat::Classic).unwrap_err();
        assert!(matches!(err, IoError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
        let err = write_atomic(&path, b"x").unwrap_err();
        assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
        assert!(dir.entries().is_empty());
    }

    #[test]
    fn target_that_is_a_directory_fails_cleanly() {
        let dir = Scratch::new("isdir");
        fs::create_dir(dir.path("out.nc")).unwrap();
        let err = write_atomic(&dir.path("out.nc"), b"x").unwrap_err();
        assert!(err.to_string().contains("out.nc"), "{err}");
        assert_eq!(dir.entries(), ["out.nc"]);
    }

    #[test]
    fn validate_rejects_length_mismatch_naming_the_variable() {
        let mut ds = Dataset::new();
        ds.dim("time", 3)
            .dim("x", 4)
            .var_f64("temp", &["time", "x"], vec![0.0; 10], &[]);
        let msg = validate(&ds).unwrap_err().to_string();
        assert!(msg.contains("`temp`"), "{msg}");
        assert!(msg.contains("10") && msg.contains("12"), "{msg}");
    }

    #[test]
    fn validate_rejects_other_inconsistencies() {
        let base = || {
            let mut ds = Dataset::new();
            ds.dim("x", 2).var_f64("u", &["x"], vec![1.0, 2.0], &[]);
            ds
        };
        assert!(validate(&base()).is_ok());
        type Edit = fn(&mut Dataset);
        let cases: Vec<(&str, Edit)> = vec![
            ("`y`", |d| d.variables[0].dimensions[0] = "y".into()),
            ("duplicate variable `u`", |d| {
                d.var_f64("u", &["x"], vec![0.0; 2], &[]);
            }),
            ("duplicate dimension `x`", |d| {
                d.dim("x", 2);
            }),
            ("`z` has length 0", |d| {
                d.dim("z", 0);
            }),
            ("`x` is used twice", |d| {
                d.dim("x2", 1).var_f64("m", &["x", "x"], vec![0.0; 4], &[]);
            }),
            ("`a/b`", |d| {
                d.var_f64("a/b", &["x"], vec![0.0; 2], &[]);
            }),
            ("`trailing `", |d| {
                d.attr("trailing ", 1);
            }),
            ("NUL", |d| {
                d.var_attr("u", "units", "m\0s");
            }),
            ("`_FillValue`", |d| {
                d.var_attr("u", "_FillValue", 1);
            }),
            ("`_FillValue`", |d| {
                d.var_f32("f", &["x"], vec![0.0; 2], &[])
                    .var_attr("f", "_FillValue", 1.0);
            }),
            ("duplicate attribute `units`", |d| {
                let attrs = &mut d.variables[0].attributes;
                attrs.push(("units".into(), "m".into()));
                attrs.push(("units".into(), "s".into()));
            }),
        ];
        for (needle, edit) in cases {
            let mut ds = base();
            edit(&mut ds);
            let msg = validate(&ds).unwrap_err().to_string();
            assert!(msg.contains(needle), "expected {needle:?} in {msg:?}");
        }
    }

    /// A one-dimensional variable `v` with the given attributes.
    fn cf_var(data: impl Into<VarData>, attrs: &[(&str, AttrValue)]) -> Variable {
        let mut v = Variable::new("v", &["n"], data);
        for (name, value) in attrs {
            v.attr(name, value.clone());
        }
        v
    }

    /// Decoded values with NaN as `None`, for comparing.
    fn decoded(v: &Variable) -> Vec<Option<f64>> {
        v.decoded_f64()
            .unwrap()
            .into_iter()
            .map(|x| (!x.is_nan()).then_some(x))
            .collect()
    }

    #[test]
    fn cf_fill_value_is_missing() {
        let v = cf_var(vec![1.5, -999.0, 2.0], &[("_FillValue", (-999.0).into())]);
        assert_eq!(decoded(&v), [Some(1.5), None, Some(2.0)]);
        let v = cf_var(vec![3i32, -1, 4], &[("_FillValue", (-1).into())]);
        assert_eq!(decoded(&v), [Some(3.0), None, Some(4.0)]);
        // A float variable's fill compares as float.
        let v = cf_var(vec![-999.9f32, 1.0], &[("_FillValue", (-999.9).into())]);
        assert_eq!(decoded(&v), [None, Some(1.0)]);
        // A raw NaN is missing; no attribute decodes to itself.
        let v = cf_var(vec![f64::NAN, 7.0], &[]);
        assert_eq!(decoded(&v), [None, Some(7.0)]);
    }

    #[test]
    fn cf_missing_value_scalar_or_list_is_missing() {
        let v = cf_var(vec![1.0, -99.0, 2.0], &[("missing_value", (-99.0).into())]);
        assert_eq!(decoded(&v), [Some(1.0), None, Some(2.0)]);
        let v = cf_var(
            vec![1.0, -99.0, -98.0, 2.0],
            &[("missing_value", vec![-99.0, -98.0].into())],
        );
        assert_eq!(decoded(&v), [Some(1.0), None, None, Some(2.0)]);
    }

    #[test]
    fn cf_packed_values_are_unpacked_and_fill_compares_packed() {
        let v = cf_var(
            vec![483i32, 383, -32767],
            &[
                ("scale_factor", 0.01.into()),
                ("add_offset", 1.0.into()),
                ("_FillValue", (-32767).into()),
            ],
        );
        let d = decoded(&v);
        assert!((d[0].unwrap() - 5.83).abs() <= 1e-12 * 5.83, "{d:?}");
        assert!((d[1].unwrap() - 4.83).abs() <= 1e-12 * 4.83, "{d:?}");
        assert_eq!(d[2], None, "the fill is the packed value");
        let v = cf_var(vec![2.0f32], &[("add_offset", 10.into())]);
        assert_eq!(decoded(&v), [Some(12.0)]);
    }

    #[test]
    fn cf_values_outside_the_valid_range_are_missing() {
        let data = vec![-5i32, 0, 50, 100, 101];
        let v = cf_var(data.clone(), &[("valid_range", vec![0.0, 100.0].into())]);
        assert_eq!(
            decoded(&v),
            [None, Some(0.0), Some(50.0), Some(100.0), None]
        );
        let v = cf_var(data.clone(), &[("valid_min", 0.into())]);
        assert_eq!(
            decoded(&v),
            [None, Some(0.0), Some(50.0), Some(100.0), Some(101.0)]
        );
        let v = cf_var(
            data,
            &[("valid_max", 50.into()), ("scale_factor", 2.into())],
        );
        assert_eq!(
            decoded(&v),
            [Some(-10.0), Some(0.0), Some(100.0), None, None]
        );
    }

    #[test]
    fn cf_malformed_attributes_name_the_variable_and_attribute() {
        let cases: Vec<(&str, AttrValue)> = vec![
            ("scale_factor", "0.01".into()),
            ("scale_factor", vec![0.1, 0.2].into()),
            ("scale_factor", 0.0.into()),
            ("add_offset", f64::INFINITY.into()),
            ("_FillValue", "none".into()),
            ("_FillValue", vec![1.0, 2.0].into()),
            ("missing_value", AttrValue::F64s(vec![])),
            ("valid_range", vec![1.0].into()),
            ("valid_range", vec![2.0, 1.0].into()),
            ("valid_min", "0".into()),
            ("valid_max", f64::NAN.into()),
        ];
        for (name, value) in cases {
            let v = cf_var(vec![1.0], &[(name, value.clone())]);
            let e = v.decoded_f64().unwrap_err();
            assert!(
                e.contains("variable `v`") && e.contains(&format!("attribute `{name}`")),
                "{name} = {value:?}: {e}"
            );
        }
        let v = cf_var(
            vec![1.0],
            &[
                ("valid_range", vec![0.0, 2.0].into()),
                ("valid_min", 0.0.into()),
            ],
        );
        let e = v.decoded_f64().unwrap_err();
        assert!(
            e.contains("`valid_range`") && e.contains("`valid_min`"),
            "{e}"
        );
    }

    #[test]
    fn builder_attr_replaces_in_place() {
        let mut ds = Dataset::new();
        ds.attr("a", 1).attr("b", 2).attr("a", "x");
        assert_eq!(
            ds.attributes,
            [
                ("a".into(), AttrValue::Text("x".into())),
                ("b".into(), AttrValue::I32(2))
            ]
        );
    }

    #[test]
    fn read_classic_errors_name_the_file() {
        let dir = Scratch::new("readerr");
        let missing = dir.path("missing.nc");
        let err = read_classic(&missing).unwrap_err();
        assert!(err.to_string().contains("missing.nc"), "{err}");
        let garbage = dir.path("garbage.nc");
        fs::write(&garbage, b"this is not netcdf").unwrap();
        let err = read_classic(&garbage).unwrap_err();
        assert!(err.to_string().contains("garbage.nc"), "{err}");
        let hdf5 = dir.path("fake4.nc");
        fs::write(&hdf5, b"\x89HDF\r\n\x1a\n and then some").unwrap();
        let err = read_classic(&hdf5).unwrap_err();
        // In the user's words (issue 31): how to convert it or which
        // feature to build, not an internal function's name.
        let e = err.to_string();
        assert!(
            e.contains("nccopy") && e.contains("--features netcdf"),
            "{e}"
        );
        assert!(!e.contains("read_netcdf"), "{e}");
    }

    #[test]
    fn format_serde_names() {
        assert_eq!(
            serde_json::to_string(&NetcdfFormat::Netcdf4).unwrap(),
            "\"netcdf4\""
        );
        let f: NetcdfFormat = serde_json::from_str("\"classic\"").unwrap();
        assert_eq!(f, NetcdfFormat::Classic);
        assert_eq!(NetcdfFormat::default(), NetcdfFormat::Classic);
    }

    #[cfg(not(feature = "netcdf"))]
    #[test]
    fn netcdf4_without_feature_is_a_clear_error() {
        let dir = Scratch::new("nofeature");
        let path = dir.path("out.nc");
        let err = write_netcdf(&path, &sample(), NetcdfFormat::Netcdf4).unwrap_err();
        assert!(matches!(err, IoError::FeatureDisabled { .. }));
        let msg = err.to_string();
        assert!(
            msg.contains("--features netcdf") && msg.contains("out.nc"),
            "{msg}"
        );
        assert!(dir.entries().is_empty());
    }

    #[cfg(feature = "netcdf")]
    #[test]
    fn netcdf4_round_trip_is_exact() {
        let dir = Scratch::new("nc4");
        let path = dir.path("out.nc");
        let ds = sample();
        write_netcdf(&path, &ds, NetcdfFormat::Netcdf4).unwrap();
        assert_eq!(&fs::read(&path).unwrap()[..4], b"\x89HDF");
        assert_same(&ds, &read_netcdf(&path).unwrap());
        assert_eq!(dir.entries(), ["out.nc"]);
    }

    #[cfg(feature = "netcdf")]
    #[test]
    fn read_netcdf_reads_classic_files() {
        let dir = Scratch::new("nc4classic");
        let path = dir.path("out.nc");
        let ds = sample();
        write_netcdf(&path, &ds, NetcdfFormat::Classic).unwrap();
        assert_same(&ds, &read_netcdf(&path).unwrap());
    }

    #[cfg(feature = "netcdf")]
    #[test]
    fn netcdf4_library_error_keeps_target() {
        let dir = Scratch::new("nc4err");
        let path = dir.path("out.nc");
        fs::write(&path, b"previous contents").unwrap();
        let mut ds = sample();
        // Passes `validate` but libnetcdf refuses reserved attribute names.
        ds.attr("_NCProperties", "forged");
        let err = write_netcdf(&path, &ds, NetcdfFormat::Netcdf4).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("_NCProperties") && msg.contains("out.nc"),
            "{msg}"
        );
        assert_eq!(fs::read(&path).unwrap(), b"previous contents");
        assert_eq!(dir.entries(), ["out.nc"]);
    }

    /// A 2.4 GB file whose last variables start beyond 2 GiB (needs CDF-2).
    #[test]
    #[ignore = "writes 2.4 GB"]
    fn classic_offsets_beyond_2gib() {
        let dir = Scratch::new("big");
        let path = dir.path("big.nc");
        let n_a = 200_000_000; // 1.6 GB, so `b` starts at 1.6 GB and `c` at 2.4 GB
        let n_b = 100_000_000;
        let mut ds = Dataset::new();
        ds.dim("na", n_a).dim("nb", n_b).dim("nc", 3);
        ds.var_f64("a", &["na"], (0..n_a).map(|i| i as f64).collect(), &[])
            .var_f64("b", &["nb"], (0..n_b).map(|i| -(i as f64)).collect(), &[])
            .var_f64("c", &["nc"], vec![1.0, 2.0, 3.0], &[("units", "1")]);
        write_netcdf(&path, &ds, NetcdfFormat::Classic).unwrap();
        assert!(fs::metadata(&path).unwrap().len() > 2_400_000_000);
        let check = |back: &Dataset| {
            assert_eq!(
                back.variable("c").unwrap().data,
                VarData::F64(vec![1.0, 2.0, 3.0])
            );
            let VarData::F64(b) = &back.variable("b").unwrap().data else {
                panic!()
            };
            assert_eq!((b[0], b[n_b - 1]), (0.0, -((n_b - 1) as f64)));
            let VarData::F64(a) = &back.variable("a").unwrap().data else {
                panic!()
            };
            assert_eq!(a[n_a - 1], (n_a - 1) as f64);
        };
        check(&read_classic(&path).unwrap());
        #[cfg(feature = "netcdf")]
        check(&read_netcdf(&path).unwrap());
    }

    /// Writes `io-check.nc` (classic) and, with feature `netcdf`,
    /// `io-check4.nc` into `$RIME_IO_CHECK_DIR` (default: the temp dir) for
    /// checking with an external reader such as xarray.
    #[test]
    #[ignore = "writes fixtures for an external reader"]
    fn write_external_check_files() {
        let dir = std::env::var_os("RIME_IO_CHECK_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let mut ds = Dataset::new();
        ds.attr("title", "rime io check")
            .attr("Conventions", "CF-1.8")
            .attr("seed", 42)
            .attr("dt", 0.05)
            .attr("forcing", vec![8.0, 8.5])
            .dim("time", 3)
            .dim("x", 4)
            .var_f64(
                "time",
                &["time"],
                vec![0.0, 0.05, 0.1],
                &[("units", "1"), ("long_name", "model time")],
            )
            .var_f64(
                "state",
                &["time", "x"],
                (0..12).map(|i| f64::from(i) * 0.5).collect(),
                &[("units", "m s-1"), ("long_name", "Lorenz-96 state")],
            )
            .var_attr("state", "valid_range", vec![-20.0, 20.0])
            .var_attr("state", "member", 3)
            .var_f32("x_f32", &["x"], vec![0.5, 1.5, 2.5, 3.5], &[])
            .var_i32("obs_index", &["x"], vec![-1, 0, 7, i32::MAX], &[])
            .var(Variable::new("rmse", &[], vec![0.25]))
            .var_attr("rmse", "long_name", "analysis RMSE");
        write_netcdf(&dir.join("io-check.nc"), &ds, NetcdfFormat::Classic).unwrap();
        #[cfg(feature = "netcdf")]
        write_netcdf(&dir.join("io-check4.nc"), &ds, NetcdfFormat::Netcdf4).unwrap();
    }
}

#[cfg(test)]
mod label_tests {
    use super::*;

    /// Issue 31: labels are written as an `NC_CHAR` coordinate (the
    /// evaluation's `model`) and read back byte for byte.
    #[test]
    fn labels_round_trip_as_a_char_coordinate() {
        let labels: Vec<String> = ["persistence", "emulator", "a"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (chars, width) = VarData::labels(&labels);
        assert_eq!(width, 11);
        let mut ds = Dataset::new();
        ds.dim("model", 3).dim("label_length", width);
        ds.variables.push(Variable::new(
            "model",
            &["model", "label_length"],
            chars.clone(),
        ));
        let path = std::env::temp_dir().join(format!("rime-labels-{}.nc", std::process::id()));
        write_netcdf(&path, &ds, NetcdfFormat::Classic).unwrap();
        let back = read_classic(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let v = back.variable("model").unwrap();
        assert_eq!(v.data, chars);
        assert_eq!(v.data.type_name(), "char");
        let VarData::Char(bytes) = &v.data else {
            unreachable!()
        };
        let read: Vec<String> = bytes
            .chunks(width)
            .map(|r| {
                String::from_utf8_lossy(r)
                    .trim_end_matches('\0')
                    .to_string()
            })
            .collect();
        assert_eq!(read, labels);
    }
}
