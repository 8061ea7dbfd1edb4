//! Streaming writer for classic NetCDF files (CDF-2, "64-bit offset") with
//! an unlimited record dimension.
//!
//! [`StreamWriter::create`] writes the header and the fixed (non-record)
//! variables; [`StreamWriter::append`] then adds one record at a time along
//! the record dimension (typically `time`). Memory use is bounded by one
//! record plus a write buffer, however many records are written.
//!
//! [`StreamWriter::flush`] writes the pending records and syncs them, then
//! sets the record count (`numrecs`) in the header and syncs again, so a run
//! killed at any point leaves a valid file with every record up to its last
//! flush (later bytes lie beyond `numrecs`, where readers ignore them).
//! Dropping the writer flushes too, ignoring errors; [`StreamWriter::finish`]
//! reports them.
//!
//! Layout (NetCDF classic format specification): magic `CDF\x02`, `numrecs`
//! (big-endian `u32` at byte 4), dimensions (the record dimension first, with
//! length 0), global attributes, variables (fixed ones first, with 64-bit
//! `begin` offsets); the fixed data, contiguous; then the records, each one
//! slice of every record variable in declared order. Slots are padded to 4
//! bytes, but a lone record variable is not (a no-op for the 4- and 8-byte
//! types here). A variable over 2^32 − 4 bytes (per record, for a record
//! variable) must be the last record variable, or the last fixed variable
//! when there are none. A variable's `_FillValue`, `missing_value`,
//! `valid_min`, `valid_max` and `valid_range` are written in its own type, as
//! CF requires.
//!
//! ```no_run
//! use rime::io::stream::{StreamHeader, StreamType, StreamVar, StreamWriter};
//!
//! let x: Vec<f64> = (0..40).map(f64::from).collect();
//! let header = StreamHeader {
//!     record_dim: "time".into(),
//!     dims: vec![("x".into(), 40)],
//!     attributes: vec![("Conventions".into(), "CF-1.8".into())],
//!     fixed: vec![(StreamVar::new("x", &["x"], StreamType::F64).attr("units", "1"), x)],
//!     records: vec![
//!         StreamVar::new("time", &["time"], StreamType::F64).attr("units", "1"),
//!         StreamVar::new("truth", &["time", "x"], StreamType::F64),
//!     ],
//! };
//! let mut out = StreamWriter::create("out.nc".as_ref(), header)?;
//! for k in 0..100 {
//!     out.append(&[&[0.05 * f64::from(k)], &vec![f64::from(k); 40]])?;
//!     if k % 10 == 9 {
//!         out.flush()?;
//!     }
//! }
//! out.finish()?;
//! # Ok::<(), rime::io::stream::StreamError>(())
//! ```

use std::collections::HashSet;
use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const NC_DIMENSION: u32 = 0x0A;
const NC_VARIABLE: u32 = 0x0B;
const NC_ATTRIBUTE: u32 = 0x0C;
const NC_CHAR: u32 = 2;
/// Largest `vsize` stored as is; larger ones are stored as `u32::MAX`.
const VSIZE_MAX: u64 = u32::MAX as u64 - 3;
/// Largest dimension length, record count or attribute length: common
/// readers (scipy, NetCDF-Java) read these 32-bit fields as signed.
const MAX_LEN: u64 = i32::MAX as u64;
/// Variable attributes that CF requires to have the variable's type.
const TYPED_ATTRS: [&str; 5] = [
    "_FillValue",
    "missing_value",
    "valid_min",
    "valid_max",
    "valid_range",
];

/// Element type of a variable on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamType {
    /// `NC_DOUBLE`, 64-bit float.
    F64,
    /// `NC_FLOAT`, 32-bit float (values are rounded to the nearest `f32`).
    F32,
    /// `NC_INT`, 32-bit integer (values are rounded half away from zero and
    /// must be finite and in range).
    I32,
}

impl StreamType {
    fn size(self) -> u64 {
        if self == StreamType::F64 { 8 } else { 4 }
    }

    fn nc_type(self) -> u32 {
        match self {
            StreamType::I32 => 4,
            StreamType::F32 => 5,
            StreamType::F64 => 6,
        }
    }
}

/// The value of a global or variable attribute.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamAttr {
    /// Text (`NC_CHAR`), without NUL bytes.
    Text(String),
    /// `NC_DOUBLE` values.
    F64(Vec<f64>),
    /// `NC_INT` values.
    I32(Vec<i32>),
}

impl From<&str> for StreamAttr {
    fn from(s: &str) -> Self {
        StreamAttr::Text(s.to_owned())
    }
}

impl From<f64> for StreamAttr {
    fn from(x: f64) -> Self {
        StreamAttr::F64(vec![x])
    }
}

impl From<i32> for StreamAttr {
    fn from(i: i32) -> Self {
        StreamAttr::I32(vec![i])
    }
}

/// A variable: name, dimensions, on-disk type and attributes.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamVar {
    /// Variable name.
    pub name: String,
    /// Dimension names, slowest-varying first (the record dimension first
    /// for a record variable); empty for a scalar.
    pub dims: Vec<String>,
    /// Element type on disk.
    pub dtype: StreamType,
    /// Attributes (`units`, `long_name`, …), in file order.
    pub attributes: Vec<(String, StreamAttr)>,
}

impl StreamVar {
    /// A variable without attributes.
    pub fn new(name: &str, dims: &[&str], dtype: StreamType) -> Self {
        let dims = dims.iter().map(|d| (*d).to_owned()).collect();
        let (name, attributes) = (name.to_owned(), Vec::new());
        StreamVar {
            name,
            dims,
            dtype,
            attributes,
        }
    }

    /// Adds an attribute (builder style).
    pub fn attr(mut self, name: &str, value: impl Into<StreamAttr>) -> Self {
        self.attributes.push((name.to_owned(), value.into()));
        self
    }
}

/// Everything written when the file is created.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StreamHeader {
    /// Name of the unlimited (record) dimension, e.g. `time`.
    pub record_dim: String,
    /// Fixed dimensions: names and lengths (≥ 1), in file order.
    pub dims: Vec<(String, usize)>,
    /// Global attributes, in file order.
    pub attributes: Vec<(String, StreamAttr)>,
    /// Fixed (non-record) variables with their values, row-major, converted
    /// to the variable's type on write.
    pub fixed: Vec<(StreamVar, Vec<f64>)>,
    /// Record variables, whose first dimension is `record_dim`, in the order
    /// [`StreamWriter::append`] takes them.
    pub records: Vec<StreamVar>,
}

/// Errors of [`StreamWriter`].
#[derive(Debug)]
pub enum StreamError {
    /// An operating-system I/O error.
    Io {
        /// The file being written.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// Invalid header or record; the message names the file and the
    /// offending variable, dimension or attribute.
    Invalid(String),
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            StreamError::Invalid(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for StreamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StreamError::Io { source, .. } => Some(source),
            StreamError::Invalid(_) => None,
        }
    }
}

/// A record variable as [`StreamWriter::append`] needs it.
#[derive(Debug)]
struct RecVar {
    name: String,
    dtype: StreamType,
    /// Values per record.
    len: usize,
    /// Zero bytes after its slice in each record.
    pad: usize,
}

/// A fixed variable as [`StreamWriter::rewrite_fixed`] needs it.
#[derive(Debug)]
struct FixedVar {
    name: String,
    dtype: StreamType,
    len: usize,
    begin: u64,
}

/// Writes a CDF-2 file record by record; see the [module docs](self).
#[derive(Debug)]
pub struct StreamWriter {
    path: PathBuf,
    out: BufWriter<File>,
    rec_vars: Vec<RecVar>,
    fixed: Vec<FixedVar>,
    /// File offset of the first record.
    begin_rec: u64,
    /// Bytes per record.
    recsize: u64,
    /// Records appended.
    records: usize,
    /// Records counted by `numrecs` on disk.
    flushed: usize,
    /// Reusable buffer for one record's big-endian bytes.
    scratch: Vec<u8>,
    /// Set by an I/O error, after which the file position is unknown.
    failed: bool,
}

impl StreamWriter {
    /// Validates `header` and creates (or truncates) the file at `path` with
    /// no records; the header and fixed data are written and synced.
    ///
    /// Checked: names valid and unique, fixed dimension lengths ≥ 1, every
    /// dimension used exists, record variables start with the record
    /// dimension and fixed variables do not use it, fixed data lengths match
    /// their dimensions, `I32` values fit, sizes fit the format. Errors name
    /// the offending variable, dimension or attribute.
    pub fn create(path: &Path, header: StreamHeader) -> Result<Self, StreamError> {
        let plan = Plan::new(&header)
            .map_err(|m| StreamError::Invalid(format!("{}: {m}", path.display())))?;
        let io = |source| StreamError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut out = BufWriter::with_capacity(1 << 20, File::create(path).map_err(io)?);
        out.write_all(&plan.header).map_err(io)?;
        let mut scratch = Vec::new();
        for (var, data) in &header.fixed {
            scratch.clear();
            put_values(&mut scratch, var.dtype, data);
            scratch.resize(scratch.len().next_multiple_of(4), 0);
            out.write_all(&scratch).map_err(io)?;
        }
        out.flush().map_err(io)?;
        out.get_ref().sync_data().map_err(io)?;
        Ok(StreamWriter {
            path: path.to_path_buf(),
            out,
            rec_vars: plan.rec_vars,
            fixed: plan.fixed,
            begin_rec: plan.begin_rec,
            recsize: plan.recsize,
            records: 0,
            flushed: 0,
            scratch: Vec::new(),
            failed: false,
        })
    }

    /// Appends one record: one slice per record variable, in declared order,
    /// each holding the variable's values for one record (the product of its
    /// other dimensions). Floats are written as is (NaN included); `I32`
    /// values are rounded and must fit. An invalid record writes nothing.
    /// The data may stay buffered until [`flush`](Self::flush).
    pub fn append(&mut self, record: &[&[f64]]) -> Result<(), StreamError> {
        let invalid = |m: String| StreamError::Invalid(format!("{}: {m}", self.path.display()));
        if self.failed {
            return Err(invalid("unusable after an earlier I/O error".into()));
        }
        if record.len() != self.rec_vars.len() {
            let names: Vec<&str> = self.rec_vars.iter().map(|v| v.name.as_str()).collect();
            return Err(invalid(format!(
                "append: got {} slices, expected one per record variable ({})",
                record.len(),
                names.join(", ")
            )));
        }
        if self.records as u64 >= MAX_LEN {
            return Err(invalid(format!("append: at most {MAX_LEN} records")));
        }
        self.scratch.clear();
        for (var, data) in self.rec_vars.iter().zip(record) {
            let (name, len) = (&var.name, var.len);
            if data.len() != len {
                let got = data.len();
                let msg = format!("append: variable `{name}` takes {len} values, got {got}");
                return Err(invalid(msg));
            }
            if var.dtype == StreamType::I32
                && let Some(i) = bad_int(data)
            {
                let msg = format!(
                    "append: variable `{name}`: value {} at index {i} does not fit an int",
                    data[i]
                );
                return Err(invalid(msg));
            }
            put_values(&mut self.scratch, var.dtype, data);
            self.scratch.resize(self.scratch.len() + var.pad, 0);
        }
        debug_assert_eq!(self.scratch.len() as u64, self.recsize);
        self.out
            .write_all(&self.scratch)
            .map_err(|e| self.fail(e))?;
        self.records += 1;
        Ok(())
    }

    /// Writes the pending records and syncs them, then sets `numrecs` in the
    /// header and syncs again, so that readers see exactly the records
    /// appended so far, even if the process dies right after. Does nothing
    /// if no record was appended since the last flush.
    pub fn flush(&mut self) -> Result<(), StreamError> {
        if self.failed {
            let path = self.path.display();
            return Err(StreamError::Invalid(format!(
                "{path}: unusable after an I/O error"
            )));
        }
        if self.flushed == self.records {
            return Ok(());
        }
        let numrecs = u32::try_from(self.records).expect("at most MAX_LEN records");
        let end = self.begin_rec + self.records as u64 * self.recsize;
        let out = &mut self.out;
        let result = (|| {
            out.flush()?;
            out.get_ref().sync_data()?;
            out.seek(SeekFrom::Start(4))?;
            out.write_all(&numrecs.to_be_bytes())?;
            out.flush()?;
            out.get_ref().sync_data()?;
            out.seek(SeekFrom::Start(end))
        })();
        result.map_err(|e| self.fail(e))?;
        self.flushed = self.records;
        Ok(())
    }

    /// Overwrites the values of a fixed variable (one known only at the end
    /// of a run, such as a histogram); written and synced with the next
    /// [`flush`](Self::flush). The header is unchanged.
    pub fn rewrite_fixed(&mut self, name: &str, values: &[f64]) -> Result<(), StreamError> {
        let invalid = |m: String| StreamError::Invalid(format!("{}: {m}", self.path.display()));
        if self.failed {
            return Err(invalid("unusable after an earlier I/O error".into()));
        }
        let Some(var) = self.fixed.iter().find(|v| v.name == name) else {
            return Err(invalid(format!("no fixed variable `{name}`")));
        };
        if values.len() != var.len {
            let need = var.len;
            let got = values.len();
            return Err(invalid(format!(
                "fixed variable `{name}` has {need} values, got {got}"
            )));
        }
        if var.dtype == StreamType::I32
            && let Some(i) = bad_int(values)
        {
            let x = values[i];
            return Err(invalid(format!(
                "fixed variable `{name}`: value {x} at index {i} does not fit an int"
            )));
        }
        self.scratch.clear();
        put_values(&mut self.scratch, var.dtype, values);
        let (begin, end) = (
            var.begin,
            self.begin_rec + self.records as u64 * self.recsize,
        );
        let out = &mut self.out;
        let scratch = &self.scratch;
        let result = (|| {
            out.seek(SeekFrom::Start(begin))?;
            out.write_all(scratch)?;
            out.seek(SeekFrom::Start(end))
        })();
        result.map_err(|e| self.fail(e))?;
        // Forces the next flush to sync even without new records.
        self.flushed = usize::MAX;
        Ok(())
    }

    /// Number of records appended so far, flushed or not.
    pub fn records(&self) -> usize {
        self.records
    }

    /// Flushes (see [`flush`](Self::flush)) and closes the file.
    pub fn finish(mut self) -> Result<(), StreamError> {
        self.flush()
    }

    fn fail(&mut self, source: std::io::Error) -> StreamError {
        self.failed = true;
        StreamError::Io {
            path: self.path.clone(),
            source,
        }
    }
}

impl Drop for StreamWriter {
    /// Flushes the records appended since the last flush, ignoring errors.
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// Appends `values` to `buf` as big-endian `dtype` (`I32`: rounded, saturating).
fn put_values(buf: &mut Vec<u8>, dtype: StreamType, values: &[f64]) {
    let start = buf.len();
    buf.resize(start + values.len() * dtype.size() as usize, 0);
    let out = &mut buf[start..];
    match dtype {
        StreamType::F64 => {
            for (o, v) in out.chunks_exact_mut(8).zip(values) {
                o.copy_from_slice(&v.to_be_bytes());
            }
        }
        StreamType::F32 => {
            for (o, v) in out.chunks_exact_mut(4).zip(values) {
                o.copy_from_slice(&(*v as f32).to_be_bytes());
            }
        }
        StreamType::I32 => {
            for (o, v) in out.chunks_exact_mut(4).zip(values) {
                o.copy_from_slice(&(v.round() as i32).to_be_bytes());
            }
        }
    }
}

/// Index of the first value an `I32` cannot hold: non-finite, or out of
/// range after rounding.
fn bad_int(values: &[f64]) -> Option<usize> {
    let range = f64::from(i32::MIN)..=f64::from(i32::MAX);
    values.iter().position(|v| !range.contains(&v.round()))
}

/// Checks a name against the netCDF-C rules: at most 256 bytes, first a
/// letter, digit, `_` or non-ASCII character, no `/` or control characters,
/// no trailing whitespace.
fn check_name(kind: &str, name: &str) -> Result<(), String> {
    let first = name.chars().next().unwrap_or('/');
    if (first.is_ascii_alphanumeric() || first == '_' || !first.is_ascii())
        && name.len() <= 256
        && !name.contains(|c: char| c == '/' || c.is_ascii_control())
        && !name.ends_with(|c: char| c.is_ascii_whitespace())
    {
        Ok(())
    } else {
        Err(format!("{kind} name `{name}` is not a valid NetCDF name"))
    }
}

/// A variable's dimension ids and size.
struct Shape {
    dimids: Vec<u32>,
    /// Values (per record, for a record variable).
    len: u64,
    /// Bytes of those values, unpadded.
    bytes: u64,
}

/// The validated header, encoded, and the record layout.
struct Plan {
    header: Vec<u8>,
    /// Fixed variables: name, type, values and file offset.
    fixed: Vec<FixedVar>,
    begin_rec: u64,
    recsize: u64,
    rec_vars: Vec<RecVar>,
}

impl Plan {
    fn new(h: &StreamHeader) -> Result<Plan, String> {
        // Dimension id 0 is the record dimension (stored with length 0).
        check_name("dimension", &h.record_dim)?;
        let mut dims: Vec<(&str, u64)> = vec![(&h.record_dim, 0)];
        for (name, len) in &h.dims {
            check_name("dimension", name)?;
            if dims.iter().any(|(n, _)| n == name) {
                return Err(format!("duplicate dimension `{name}`"));
            }
            if *len == 0 || *len as u64 > MAX_LEN {
                return Err(format!("dimension `{name}` has length {len} (need ≥ 1)"));
            }
            dims.push((name, *len as u64));
        }

        let mut names = HashSet::new();
        let mut shape = |var: &StreamVar, record: bool| -> Result<Shape, String> {
            let v = &var.name;
            check_name("variable", v)?;
            if !names.insert(v.clone()) {
                return Err(format!("duplicate variable `{v}`"));
            }
            if record && var.dims.first() != Some(&h.record_dim) {
                let r = &h.record_dim;
                return Err(format!(
                    "record variable `{v}` must start with dimension `{r}`"
                ));
            }
            let (mut dimids, mut len) = (Vec::new(), 1u64);
            for (k, d) in var.dims.iter().enumerate() {
                let id = (dims.iter().position(|(n, _)| n == d))
                    .ok_or_else(|| format!("variable `{v}`: unknown dimension `{d}`"))?;
                if id == 0 && (!record || k > 0) {
                    let msg = "may only be the first dimension of a record variable";
                    return Err(format!("variable `{v}`: record dimension `{d}` {msg}"));
                }
                dimids.push(id as u32);
                len = (len.checked_mul(dims[id].1.max(1)))
                    .filter(|&n| n <= 1 << 60)
                    .ok_or_else(|| format!("variable `{v}` is too large"))?;
            }
            let bytes = len * var.dtype.size();
            Ok(Shape { dimids, len, bytes })
        };
        let mut vars = Vec::new();
        for (var, data) in &h.fixed {
            let (s, v, n) = (shape(var, false)?, &var.name, data.len());
            if n as u64 != s.len {
                let need = s.len;
                return Err(format!("fixed variable `{v}` has {n} values, not {need}"));
            }
            if var.dtype == StreamType::I32
                && let Some(i) = bad_int(data)
            {
                let x = data[i];
                return Err(format!(
                    "fixed variable `{v}`: value {x} at index {i} does not fit an int"
                ));
            }
            vars.push((var, s));
        }
        let nfixed = vars.len();
        for var in &h.records {
            vars.push((var, shape(var, true)?));
        }
        let (fixed, records) = vars.split_at(nfixed);
        for (list, last_ok) in [(fixed, records.is_empty()), (records, true)] {
            for (k, (var, s)) in list.iter().enumerate() {
                if s.bytes > VSIZE_MAX && !(last_ok && k + 1 == list.len()) {
                    return Err(format!(
                        "variable `{}` takes {} bytes: CDF-2 allows over {VSIZE_MAX} only for \
                         the last record variable, or the last fixed one if there are none",
                        var.name, s.bytes
                    ));
                }
            }
        }

        // The header's length does not depend on the offsets it holds.
        let vsize = |s: &Shape| s.bytes.next_multiple_of(4);
        let mut at = encode(h, &dims, &vars, &[])?.len() as u64;
        let mut begins = Vec::new();
        for (_, s) in &vars {
            begins.push(at);
            at += vsize(s);
        }
        let begin_rec = begins.get(nfixed).copied().unwrap_or(at);
        // A lone record variable is not padded.
        let (recsize, single) = match records {
            [(_, s)] => (s.bytes, true),
            _ => (at - begin_rec, false),
        };
        let rec_vars = (records.iter())
            .map(|(var, s)| RecVar {
                name: var.name.clone(),
                dtype: var.dtype,
                len: s.len as usize,
                pad: if single { 0 } else { vsize(s) - s.bytes } as usize,
            })
            .collect();
        let header = encode(h, &dims, &vars, &begins)?;
        let fixed = (fixed.iter().zip(&begins))
            .map(|((var, s), &begin)| FixedVar {
                name: var.name.clone(),
                dtype: var.dtype,
                len: s.len as usize,
                begin,
            })
            .collect();
        Ok(Plan {
            header,
            fixed,
            begin_rec,
            recsize,
            rec_vars,
        })
    }
}

fn put_u32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_be_bytes());
}

/// A list's tag and count, or `ABSENT` for an empty list.
fn put_list(b: &mut Vec<u8>, tag: u32, n: usize) {
    put_u32(b, if n == 0 { 0 } else { tag });
    put_u32(b, n as u32);
}

/// Bytes, zero-padded to a multiple of 4.
fn put_padded(b: &mut Vec<u8>, bytes: &[u8]) {
    b.extend_from_slice(bytes);
    b.resize(b.len().next_multiple_of(4), 0);
}

fn put_name(b: &mut Vec<u8>, name: &str) {
    put_u32(b, name.len() as u32);
    put_padded(b, name.as_bytes());
}

/// Checks and encodes an attribute list; `var` is the owning variable.
fn put_attrs(
    b: &mut Vec<u8>,
    attrs: &[(String, StreamAttr)],
    var: Option<&StreamVar>,
) -> Result<(), String> {
    let owner = var.map_or("global".into(), |v| format!("variable `{}`", v.name));
    let mut seen = HashSet::new();
    put_list(b, NC_ATTRIBUTE, attrs.len());
    for (name, value) in attrs {
        check_name(&format!("{owner}: attribute"), name)?;
        if !seen.insert(name) {
            return Err(format!("{owner}: duplicate attribute `{name}`"));
        }
        put_name(b, name);
        let typed = var.map(|v| v.dtype);
        let typed = typed.filter(|_| TYPED_ATTRS.contains(&name.as_str()));
        let (ty, values) = match (value, typed) {
            (StreamAttr::Text(s), None) if !s.contains('\0') && s.len() as u64 <= MAX_LEN => {
                put_u32(b, NC_CHAR);
                put_u32(b, s.len() as u32);
                put_padded(b, s.as_bytes());
                continue;
            }
            (StreamAttr::F64(v), _) => (typed.unwrap_or(StreamType::F64), v.clone()),
            (StreamAttr::I32(v), _) => (
                typed.unwrap_or(StreamType::I32),
                v.iter().map(|&i| f64::from(i)).collect(),
            ),
            (StreamAttr::Text(_), _) => {
                return Err(format!("{owner}: attribute `{name}`: invalid text"));
            }
        };
        let not_int = |x: &f64| x.fract() != 0.0 || bad_int(&[*x]).is_some();
        if (ty == StreamType::I32 && values.iter().any(not_int))
            || (typed.is_some() && name == "_FillValue" && values.len() != 1)
            || values.len() as u64 > MAX_LEN
        {
            return Err(format!("{owner}: attribute `{name}` does not fit its type"));
        }
        put_u32(b, ty.nc_type());
        put_u32(b, values.len() as u32);
        let mut bytes = Vec::new();
        put_values(&mut bytes, ty, &values);
        put_padded(b, &bytes);
    }
    Ok(())
}

/// Checks the attributes and encodes the header with the variables'
/// `begins` (zeros if empty).
fn encode(
    h: &StreamHeader,
    dims: &[(&str, u64)],
    vars: &[(&StreamVar, Shape)],
    begins: &[u64],
) -> Result<Vec<u8>, String> {
    let mut b = b"CDF\x02".to_vec();
    put_u32(&mut b, 0); // numrecs
    put_list(&mut b, NC_DIMENSION, dims.len());
    for (name, len) in dims {
        put_name(&mut b, name);
        put_u32(&mut b, *len as u32);
    }
    put_attrs(&mut b, &h.attributes, None)?;
    put_list(&mut b, NC_VARIABLE, vars.len());
    for (k, (var, shape)) in vars.iter().enumerate() {
        put_name(&mut b, &var.name);
        put_u32(&mut b, shape.dimids.len() as u32);
        for id in &shape.dimids {
            put_u32(&mut b, *id);
        }
        put_attrs(&mut b, &var.attributes, Some(var))?;
        put_u32(&mut b, var.dtype.nc_type());
        // A multiple of 4: it fits exactly when it is at most VSIZE_MAX.
        let vsize = shape.bytes.next_multiple_of(4);
        put_u32(&mut b, u32::try_from(vsize).unwrap_or(u32::MAX));
        b.extend_from_slice(&begins.get(k).copied().unwrap_or(0).to_be_bytes());
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh directory under the system temporary directory, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            static COUNT: AtomicUsize = AtomicUsize::new(0);
            let n = COUNT.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("rime-stream-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn be32(bytes: &[u8], at: u64) -> u32 {
        let at = at as usize;
        u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap())
    }

    fn be64(bytes: &[u8], at: u64) -> f64 {
        let at = at as usize;
        f64::from_be_bytes(bytes[at..at + 8].try_into().unwrap())
    }

    /// `time(time)` F64, `truth(time, x)` F64, `obs_index(time, obs)` I32,
    /// with x = 3 and obs = 5: 8 + 24 + 20 = 52 bytes per record.
    fn header() -> StreamHeader {
        StreamHeader {
            record_dim: "time".into(),
            dims: vec![("x".into(), 3), ("obs".into(), 5)],
            attributes: vec![("Conventions".into(), "CF-1.8".into())],
            fixed: vec![(
                StreamVar::new("x", &["x"], StreamType::F64),
                vec![0., 1., 2.],
            )],
            records: vec![
                StreamVar::new("time", &["time"], StreamType::F64),
                StreamVar::new("truth", &["time", "x"], StreamType::F64),
                StreamVar::new("obs_index", &["time", "obs"], StreamType::I32),
            ],
        }
    }

    fn append(w: &mut StreamWriter, k: usize) {
        let t = k as f64;
        w.append(&[&[t], &[t, t + 0.5, f64::NAN], &[t; 5]]).unwrap();
    }

    #[test]
    fn header_bytes_by_hand() {
        let dir = TempDir::new();
        let path = dir.0.join("tiny.nc");
        let h = StreamHeader {
            record_dim: "t".into(),
            dims: vec![("x".into(), 2)],
            attributes: vec![("a".into(), "hi".into())],
            fixed: vec![(StreamVar::new("x", &["x"], StreamType::F64), vec![1., 2.])],
            records: vec![StreamVar::new("v", &["t"], StreamType::I32)],
        };
        let mut w = StreamWriter::create(&path, h).unwrap();
        let w4 = |s: &[u8; 4]| u32::from_be_bytes(*s);
        #[rustfmt::skip]
        let words = [
            w4(b"CDF\x02"), 0,                                  // magic, numrecs
            NC_DIMENSION, 2, 1, w4(b"t\0\0\0"), 0, 1, w4(b"x\0\0\0"), 2,
            NC_ATTRIBUTE, 1, 1, w4(b"a\0\0\0"), NC_CHAR, 2, w4(b"hi\0\0"),
            NC_VARIABLE, 2,
            1, w4(b"x\0\0\0"), 1, 1, 0, 0, 6, 16, 0, 156,       // x(x): double, begin 156
            1, w4(b"v\0\0\0"), 1, 0, 0, 0, 4, 4, 0, 172,        // v(t): int, begin 172
        ];
        let mut expected: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
        assert_eq!(expected.len(), 156);
        expected.extend(1f64.to_be_bytes());
        expected.extend(2f64.to_be_bytes());
        assert_eq!(std::fs::read(&path).unwrap(), expected);

        w.append(&[&[3.6]]).unwrap();
        w.finish().unwrap();
        expected[4..8].copy_from_slice(&1u32.to_be_bytes());
        expected.extend(4i32.to_be_bytes());
        assert_eq!(std::fs::read(&path).unwrap(), expected);
    }

    #[test]
    fn a_fixed_variable_is_rewritten_in_place() {
        let dir = TempDir::new();
        let path = dir.0.join("rewrite.nc");
        let mut w = StreamWriter::create(&path, header()).unwrap();
        append(&mut w, 0);
        w.rewrite_fixed("x", &[7., 8., 9.]).unwrap();
        append(&mut w, 1);
        assert!(
            w.rewrite_fixed("x", &[1.])
                .unwrap_err()
                .to_string()
                .contains("`x`")
        );
        assert!(
            w.rewrite_fixed("nope", &[1.])
                .unwrap_err()
                .to_string()
                .contains("`nope`")
        );
        let begin_x = w.fixed[0].begin;
        let (begin, recsize) = (w.begin_rec, w.recsize);
        w.finish().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(be32(&bytes, 4), 2);
        assert_eq!(be64(&bytes, begin_x + 16), 9.0);
        assert_eq!(be64(&bytes, begin + recsize), 1.0, "records intact");
        assert_eq!(bytes.len() as u64, begin + 2 * recsize);
    }

    #[test]
    fn numrecs_counts_flushed_records_only() {
        let dir = TempDir::new();
        let path = dir.0.join("flush.nc");
        let mut w = StreamWriter::create(&path, header()).unwrap();
        assert_eq!(w.recsize, 52);
        let begin = w.begin_rec;
        for k in 0..3 {
            append(&mut w, k);
        }
        w.flush().unwrap();
        append(&mut w, 3);
        append(&mut w, 4);
        assert_eq!(w.records(), 5);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(be32(&bytes, 4), 3);
        assert!(bytes.len() as u64 >= begin + 3 * 52);
        assert_eq!(be64(&bytes, begin + 2 * 52 + 16), 2.5); // truth[2, 1]

        w.finish().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(be32(&bytes, 4), 5);
        assert_eq!(bytes.len() as u64, begin + 5 * 52);
        assert_eq!(be64(&bytes, begin + 4 * 52), 4.0); // time[4]
        assert!(be64(&bytes, begin + 4 * 52 + 24).is_nan()); // truth[4, 2]
        assert_eq!(be32(&bytes, begin + 4 * 52 + 32), 4); // obs_index[4, 0]
    }

    #[test]
    fn record_size_arithmetic() {
        let dir = TempDir::new();
        let mut h = header();
        h.records = vec![StreamVar::new("y", &["time", "x"], StreamType::F32)];
        let path = dir.0.join("single.nc");
        let mut w = StreamWriter::create(&path, h.clone()).unwrap();
        let begin = w.begin_rec;
        for _ in 0..3 {
            w.append(&[&[1., 2., 3.]]).unwrap();
        }
        w.finish().unwrap();
        // One record variable of 3 floats: 12 bytes per record.
        assert_eq!(std::fs::metadata(&path).unwrap().len(), begin + 3 * 12);

        h.records
            .push(StreamVar::new("n", &["time", "x"], StreamType::I32));
        h.records
            .push(StreamVar::new("time", &["time"], StreamType::F64));
        let path = dir.0.join("multi.nc");
        let mut w = StreamWriter::create(&path, h).unwrap();
        let begin = w.begin_rec;
        for _ in 0..3 {
            w.append(&[&[1., 2., 3.], &[1., 2., 3.], &[0.]]).unwrap();
        }
        drop(w); // flushes too
        // 12 + 12 + 8 bytes, 4-byte slots: no padding, no 8-byte alignment.
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!((bytes.len() as u64, be32(&bytes, 4)), (begin + 3 * 32, 3));
        assert_eq!(be32(&bytes, begin + 32 + 12), 1); // n[1, 0]
    }

    #[test]
    fn invalid_headers_name_the_culprit() {
        let dir = TempDir::new();
        let path = dir.0.join("bad.nc");
        type Edit = fn(&mut StreamHeader);
        let cases: [(Edit, &str); 10] = [
            (
                |h| h.records[1].dims[1] = "y".into(),
                "`truth`: unknown dimension `y`",
            ),
            (
                |h| h.records[1].dims.reverse(),
                "record variable `truth` must start with dimension `time`",
            ),
            (
                |h| h.fixed[0].0.dims = vec!["time".into()],
                "variable `x`: record dimension `time` may only be the first",
            ),
            (
                |h| h.fixed[0].1.pop().map(drop).unwrap(),
                "fixed variable `x` has 2 values",
            ),
            (
                |h| h.records[2].name = "time".into(),
                "duplicate variable `time`",
            ),
            (|h| h.dims[1].1 = 0, "dimension `obs` has length 0"),
            (|h| h.dims[0].0 = "a/b".into(), "`a/b` is not a valid"),
            (|h| h.record_dim = "x".into(), "duplicate dimension `x`"),
            (
                |h| {
                    h.records[2]
                        .attributes
                        .push(("_FillValue".into(), 0.5.into()))
                },
                "variable `obs_index`: attribute `_FillValue`",
            ),
            (
                |h| {
                    h.records[2]
                        .attributes
                        .push(("_FillValue".into(), f64::NAN.into()))
                },
                "variable `obs_index`: attribute `_FillValue`",
            ),
        ];
        for (edit, expected) in cases {
            let mut h = header();
            edit(&mut h);
            let err = StreamWriter::create(&path, h).unwrap_err().to_string();
            assert!(err.contains(expected), "{err:?} lacks {expected:?}");
        }
        assert!(!path.exists());

        let mut w = StreamWriter::create(&path, header()).unwrap();
        let bad: [(&[&[f64]], &str); 3] = [
            (&[&[0.]], "got 1 slices"),
            (
                &[&[0.], &[0.; 2], &[0.; 5]],
                "variable `truth` takes 3 values, got 2",
            ),
            (
                &[&[0.], &[0.; 3], &[0., f64::NAN, 0., 0., 0.]],
                "`obs_index`: value NaN at index 1",
            ),
        ];
        for (record, expected) in bad {
            let err = w.append(record).unwrap_err().to_string();
            assert!(err.contains(expected), "{err:?} lacks {expected:?}");
        }
        append(&mut w, 0);
        w.finish().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(be32(&bytes, 4), 1);
    }

    #[test]
    fn only_the_last_variable_may_exceed_4_gib() {
        let dir = TempDir::new();
        let path = dir.0.join("big.nc");
        let mut h = header();
        h.dims.push(("big".into(), 1 << 30)); // 8 GiB of doubles per record
        h.records[0].dims.push("big".into());
        let err = StreamWriter::create(&path, h.clone())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("variable `time` takes 8589934592 bytes"),
            "{err}"
        );
        h.records.rotate_left(1); // `time` last: allowed
        let w = StreamWriter::create(&path, h).unwrap();
        assert_eq!(w.recsize, 24 + 20 + (8 << 30));
        // The header ends with `time`'s vsize and begin, then x's 24 bytes.
        let bytes = std::fs::read(&path).unwrap();
        let end = w.begin_rec - 24;
        assert_eq!(be32(&bytes, end - 12), u32::MAX);
        assert_eq!(
            u64::from_be_bytes(bytes[end as usize - 8..][..8].try_into().unwrap()),
            w.begin_rec + 44
        );
    }
}
