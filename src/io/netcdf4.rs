//! NetCDF-4 backend through libnetcdf (cargo feature `netcdf`).

use std::cell::Cell;
use std::ffi::{c_int, c_void};
use std::path::Path;
use std::sync::OnceLock;

use netcdf::types::{FloatType, IntType, NcVariableType};
use netcdf::{AttributeValue, Options};

use super::{AttrValue, Dataset, IoError, VarData, Variable, attr_from_floats, attr_from_ints};

// HDF5 (≥ 1.10, so `hid_t` is 64-bit) is always linked: netcdf-sys depends on hdf5-sys.
unsafe extern "C" {
    fn H5Eset_auto2(
        estack_id: i64,
        func: Option<unsafe extern "C" fn(i64, *mut c_void) -> c_int>,
        client_data: *mut c_void,
    ) -> c_int;
    fn H5is_library_threadsafe(is_ts: *mut bool) -> c_int;
}

/// Turns off HDF5's automatic printing of error stacks for this thread.
///
/// libnetcdf does this only on the thread that first initialises it, and
/// libnetcdf 4.9.0 provokes (harmless) HDF5 errors while opening files, so
/// without this every read from another thread dumps `HDF5-DIAG` traces on
/// stderr. In a non-threadsafe HDF5 the setting is global and libnetcdf's
/// own call covers every thread, so nothing is done.
fn quiet_hdf5_errors() {
    static THREADSAFE: OnceLock<bool> = OnceLock::new();
    thread_local!(static DONE: Cell<bool> = const { Cell::new(false) });
    if DONE.get() {
        return;
    }
    let threadsafe = *THREADSAFE.get_or_init(|| {
        let mut ts = false;
        // SAFETY: plain query writing one `hbool_t` (C `bool`) through a valid pointer.
        unsafe { H5is_library_threadsafe(&mut ts) >= 0 && ts }
    });
    if threadsafe {
        // SAFETY: `H5E_DEFAULT` (0) with a null handler disables auto-printing
        // on this thread's default error stack; thread-local in a threadsafe HDF5.
        unsafe {
            H5Eset_auto2(0, None, std::ptr::null_mut());
        }
    }
    DONE.set(true);
}

fn nc_error(path: &Path, context: impl Into<String>, e: netcdf::Error) -> IoError {
    IoError::Netcdf {
        path: path.to_path_buf(),
        context: context.into(),
        message: e.to_string(),
    }
}

fn to_nc(value: &AttrValue) -> AttributeValue {
    match value {
        AttrValue::Text(s) => AttributeValue::Str(s.clone()),
        AttrValue::F64(x) => AttributeValue::Double(*x),
        AttrValue::F64s(xs) => AttributeValue::Doubles(xs.clone()),
        AttrValue::I32(i) => AttributeValue::Int(*i),
    }
}

/// Writes `ds` as a new NetCDF-4 file at `tmp`; errors name `target`.
pub(super) fn write(tmp: &Path, target: &Path, ds: &Dataset) -> Result<(), IoError> {
    quiet_hdf5_errors();
    let mut file =
        netcdf::create_with(tmp, Options::NETCDF4 | Options::NOCLOBBER).map_err(|e| {
            nc_error(
                target,
                format!("cannot create temporary file {}", tmp.display()),
                e,
            )
        })?;
    for (name, value) in &ds.attributes {
        file.add_attribute(name, to_nc(value))
            .map_err(|e| nc_error(target, format!("global attribute `{name}`"), e))?;
    }
    for (name, len) in &ds.dimensions {
        file.add_dimension(name, *len)
            .map_err(|e| nc_error(target, format!("dimension `{name}`"), e))?;
    }
    // Define every variable and attribute before writing data: NetCDF-4
    // rejects e.g. `_FillValue` once data has been written.
    for v in &ds.variables {
        if matches!(v.data, VarData::Char(_)) {
            return Err(unsupported(
                target,
                format!(
                    "variable `{}` is text (NC_CHAR), which rime writes to classic files only",
                    v.name
                ),
            ));
        }
        let dims: Vec<&str> = v.dimensions.iter().map(String::as_str).collect();
        let mut var = match v.data {
            VarData::F64(_) => file.add_variable::<f64>(&v.name, &dims),
            VarData::F32(_) => file.add_variable::<f32>(&v.name, &dims),
            VarData::I32(_) => file.add_variable::<i32>(&v.name, &dims),
            VarData::Char(_) => unreachable!("refused above"),
        }
        .map_err(|e| nc_error(target, format!("variable `{}`", v.name), e))?;
        for (name, value) in &v.attributes {
            var.put_attribute(name, to_nc(value)).map_err(|e| {
                nc_error(
                    target,
                    format!("attribute `{name}` of variable `{}`", v.name),
                    e,
                )
            })?;
        }
    }
    for v in &ds.variables {
        let context = || format!("cannot write variable `{}`", v.name);
        let mut var = file.variable_mut(&v.name).ok_or_else(|| IoError::Netcdf {
            path: target.to_path_buf(),
            context: context(),
            message: "variable vanished after definition".into(),
        })?;
        match &v.data {
            VarData::F64(d) => var.put_values(d, ..),
            VarData::F32(d) => var.put_values(d, ..),
            VarData::I32(d) => var.put_values(d, ..),
            VarData::Char(_) => unreachable!("refused above"),
        }
        .map_err(|e| nc_error(target, context(), e))?;
    }
    file.close()
        .map_err(|e| nc_error(target, "cannot close file", e))
}

fn unsupported(path: &Path, what: String) -> IoError {
    IoError::Unsupported {
        path: path.to_path_buf(),
        what,
    }
}

/// Converts an attribute value read by libnetcdf.
fn attr_value(path: &Path, what: &str, value: AttributeValue) -> Result<AttrValue, IoError> {
    fn ints<T: Into<i128>>(v: Vec<T>) -> Option<AttrValue> {
        attr_from_ints(v.into_iter().map(Into::into))
    }
    let converted = match value {
        AttributeValue::Str(s) => Some(AttrValue::Text(s)),
        AttributeValue::Strs(mut v) if v.len() == 1 => v.pop().map(AttrValue::Text),
        AttributeValue::Strs(_) => None,
        AttributeValue::Double(x) => Some(AttrValue::F64(x)),
        AttributeValue::Doubles(v) => Some(attr_from_floats(v)),
        AttributeValue::Float(x) => Some(AttrValue::F64(x.into())),
        AttributeValue::Floats(v) => Some(attr_from_floats(v.into_iter().map(f64::from))),
        AttributeValue::Uchar(x) => ints(vec![x]),
        AttributeValue::Uchars(v) => ints(v),
        AttributeValue::Schar(x) => ints(vec![x]),
        AttributeValue::Schars(v) => ints(v),
        AttributeValue::Ushort(x) => ints(vec![x]),
        AttributeValue::Ushorts(v) => ints(v),
        AttributeValue::Short(x) => ints(vec![x]),
        AttributeValue::Shorts(v) => ints(v),
        AttributeValue::Uint(x) => ints(vec![x]),
        AttributeValue::Uints(v) => ints(v),
        AttributeValue::Int(x) => Some(AttrValue::I32(x)),
        AttributeValue::Ints(v) => ints(v),
        AttributeValue::Ulonglong(x) => ints(vec![x]),
        AttributeValue::Ulonglongs(v) => ints(v),
        AttributeValue::Longlong(x) => ints(vec![x]),
        AttributeValue::Longlongs(v) => ints(v),
    };
    converted.ok_or_else(|| unsupported(path, format!("{what}: values cannot be represented")))
}

fn read_data(path: &Path, var: &netcdf::Variable<'_>, name: &str) -> Result<VarData, IoError> {
    let err = |e| nc_error(path, format!("cannot read variable `{name}`"), e);
    fn widen<T: Into<i32>>(v: Vec<T>) -> VarData {
        VarData::I32(v.into_iter().map(Into::into).collect())
    }
    Ok(match var.vartype() {
        NcVariableType::Float(FloatType::F64) => VarData::F64(var.get_values(..).map_err(err)?),
        NcVariableType::Float(FloatType::F32) => VarData::F32(var.get_values(..).map_err(err)?),
        NcVariableType::Int(IntType::I32) => VarData::I32(var.get_values(..).map_err(err)?),
        NcVariableType::Int(IntType::I16) => widen(var.get_values::<i16, _>(..).map_err(err)?),
        NcVariableType::Int(IntType::U16) => widen(var.get_values::<u16, _>(..).map_err(err)?),
        NcVariableType::Int(IntType::I8) => widen(var.get_values::<i8, _>(..).map_err(err)?),
        NcVariableType::Int(IntType::U8) => widen(var.get_values::<u8, _>(..).map_err(err)?),
        other => {
            return Err(unsupported(
                path,
                format!(
                    "variable `{name}` has type {other:?} (supported: double, float, int and narrower integers)"
                ),
            ));
        }
    })
}

/// Reads a NetCDF file of any format libnetcdf understands (root group only).
pub(super) fn read(path: &Path) -> Result<Dataset, IoError> {
    quiet_hdf5_errors();
    let file = netcdf::open(path).map_err(|e| nc_error(path, "cannot open", e))?;
    let mut ds = Dataset::new();
    for dim in file.dimensions() {
        ds.dimensions.push((dim.name(), dim.len()));
    }
    for a in file.attributes() {
        let what = format!("global attribute `{}`", a.name());
        let value = a.value().map_err(|e| nc_error(path, what.clone(), e))?;
        ds.attributes
            .push((a.name().to_string(), attr_value(path, &what, value)?));
    }
    for var in file.variables() {
        let name = var.name();
        let mut attributes = Vec::new();
        for a in var.attributes() {
            let what = format!("attribute `{}` of variable `{name}`", a.name());
            let value = a.value().map_err(|e| nc_error(path, what.clone(), e))?;
            attributes.push((a.name().to_string(), attr_value(path, &what, value)?));
        }
        ds.variables.push(Variable {
            dimensions: var.dimensions().iter().map(|d| d.name()).collect(),
            data: read_data(path, &var, &name)?,
            name,
            attributes,
        });
    }
    Ok(ds)
}
