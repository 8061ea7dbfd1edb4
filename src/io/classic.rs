//! Classic NetCDF (CDF-1/CDF-2) backend in pure Rust, via `netcdf3`.

use std::cell::RefCell;
use std::fs::OpenOptions;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::rc::Rc;

use netcdf3::{DataSet, DataType, DataVector, FileReader, FileWriter, ReadError, Version};

use super::atomic::io_error;
use super::{AttrValue, Dataset, IoError, VarData, Variable, attr_from_floats, attr_from_ints};

/// Buffer size for the output file; netcdf3 writes value by value.
const BUF_SIZE: usize = 1 << 20;

/// A `Write + Seek` handle shared with `netcdf3::FileWriter`, so the file can
/// be flushed with error reporting after the writer is closed.
struct Shared(Rc<RefCell<BufWriter<std::fs::File>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.0.borrow_mut().write_all(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.borrow_mut().flush()
    }
}

impl Seek for Shared {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.0.borrow_mut().seek(pos)
    }
}

fn nc_error(path: &Path, context: impl Into<String>, message: impl std::fmt::Debug) -> IoError {
    IoError::Netcdf {
        path: path.to_path_buf(),
        context: context.into(),
        message: format!("{message:?}"),
    }
}

/// Adds one attribute through the matching typed `netcdf3` call.
fn add_attr(
    nc: &mut DataSet,
    var: Option<&str>,
    name: &str,
    value: &AttrValue,
) -> Result<(), netcdf3::InvalidDataSet> {
    match (var, value) {
        (None, AttrValue::Text(s)) => nc.add_global_attr_string(name, s),
        (None, AttrValue::F64(x)) => nc.add_global_attr_f64(name, vec![*x]),
        (None, AttrValue::F64s(xs)) => nc.add_global_attr_f64(name, xs.clone()),
        (None, AttrValue::I32(i)) => nc.add_global_attr_i32(name, vec![*i]),
        (Some(v), AttrValue::Text(s)) => nc.add_var_attr_string(v, name, s),
        (Some(v), AttrValue::F64(x)) => nc.add_var_attr_f64(v, name, vec![*x]),
        (Some(v), AttrValue::F64s(xs)) => nc.add_var_attr_f64(v, name, xs.clone()),
        (Some(v), AttrValue::I32(i)) => nc.add_var_attr_i32(v, name, vec![*i]),
    }
}

/// Translates a validated [`Dataset`] into a `netcdf3` header definition.
fn to_netcdf3(target: &Path, ds: &Dataset) -> Result<DataSet, IoError> {
    let mut nc = DataSet::new();
    for (name, len) in &ds.dimensions {
        nc.add_fixed_dim(name, *len)
            .map_err(|e| nc_error(target, format!("dimension `{name}`"), e))?;
    }
    for (name, value) in &ds.attributes {
        add_attr(&mut nc, None, name, value)
            .map_err(|e| nc_error(target, format!("global attribute `{name}`"), e))?;
    }
    for v in &ds.variables {
        let dtype = match v.data {
            VarData::F64(_) => DataType::F64,
            VarData::F32(_) => DataType::F32,
            VarData::I32(_) => DataType::I32,
            VarData::Char(_) => DataType::U8,
        };
        nc.add_var(&v.name, &v.dimensions, dtype)
            .map_err(|e| nc_error(target, format!("variable `{}`", v.name), e))?;
        for (name, value) in &v.attributes {
            add_attr(&mut nc, Some(&v.name), name, value).map_err(|e| {
                nc_error(
                    target,
                    format!("attribute `{name}` of variable `{}`", v.name),
                    e,
                )
            })?;
        }
    }
    Ok(nc)
}

/// Writes `ds` as a new CDF-2 (64-bit offset) file at `tmp`; errors name `target`.
pub(super) fn write(tmp: &Path, target: &Path, ds: &Dataset) -> Result<(), IoError> {
    let nc = to_netcdf3(target, ds)?;
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)
        .map_err(|e| {
            io_error(
                target,
                format!("cannot create temporary file {}", tmp.display()),
                e,
            )
        })?;
    let shared = Rc::new(RefCell::new(BufWriter::with_capacity(BUF_SIZE, file)));
    {
        let tmp_name = tmp.to_string_lossy();
        let mut writer = FileWriter::open_seek_write(&tmp_name, Box::new(Shared(shared.clone())))
            .map_err(|e| nc_error(target, "cannot open writer", e))?;
        writer
            .set_def(&nc, Version::Offset64Bit, 0)
            .map_err(|e| nc_error(target, "cannot write header", e))?;
        for v in &ds.variables {
            match &v.data {
                VarData::F64(d) => writer.write_var_f64(&v.name, d),
                VarData::F32(d) => writer.write_var_f32(&v.name, d),
                VarData::I32(d) => writer.write_var_i32(&v.name, d),
                VarData::Char(d) => writer.write_var_u8(&v.name, d),
            }
            .map_err(|e| nc_error(target, format!("cannot write variable `{}`", v.name), e))?;
        }
        writer
            .close()
            .map_err(|e| nc_error(target, "cannot finish file", e))?;
    }
    let buffered = Rc::try_unwrap(shared)
        .map_err(|_| {
            nc_error(
                target,
                "internal error",
                "netcdf3 writer still holds the file",
            )
        })?
        .into_inner();
    buffered.into_inner().map_err(|e| {
        io_error(
            target,
            format!("cannot write temporary file {}", tmp.display()),
            e.into_error(),
        )
    })?;
    Ok(())
}

/// First bytes of an HDF5 file (and so of every NetCDF-4 file).
const HDF5_MAGIC: &[u8; 8] = b"\x89HDF\r\n\x1a\n";

fn read_error(path: &Path, context: impl Into<String>, e: ReadError) -> IoError {
    match e {
        ReadError::IOErrorKind(kind) => io_error(path, context, std::io::Error::from(kind)),
        ReadError::ParseHeader(h) if h.header_is_incomplete() => IoError::Netcdf {
            path: path.to_path_buf(),
            context: context.into(),
            message: "truncated header".into(),
        },
        ReadError::ParseHeader(h) => IoError::Netcdf {
            path: path.to_path_buf(),
            context: context.into(),
            message: format!("not a classic NetCDF file (invalid {:?} in header)", h.kind),
        },
        other => nc_error(path, context, other),
    }
}

/// Converts attribute data read by `netcdf3` (not an error for any type it can hold).
fn attr_value(path: &Path, what: &str, data: &netcdf3::Attribute) -> Result<AttrValue, IoError> {
    let value = match data.data_type() {
        DataType::U8 => {
            let bytes = data.get_u8().unwrap_or_default();
            let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
            Some(AttrValue::Text(
                String::from_utf8_lossy(&bytes[..end]).into_owned(),
            ))
        }
        DataType::I8 => attr_from_ints(data.get_i8().unwrap_or_default().iter().map(|&x| x.into())),
        DataType::I16 => {
            attr_from_ints(data.get_i16().unwrap_or_default().iter().map(|&x| x.into()))
        }
        DataType::I32 => {
            attr_from_ints(data.get_i32().unwrap_or_default().iter().map(|&x| x.into()))
        }
        DataType::F32 => Some(attr_from_floats(
            data.get_f32().unwrap_or_default().iter().map(|&x| x.into()),
        )),
        DataType::F64 => Some(attr_from_floats(
            data.get_f64().unwrap_or_default().iter().copied(),
        )),
    };
    value.ok_or_else(|| IoError::Unsupported {
        path: path.to_path_buf(),
        what: format!("{what}: values cannot be represented"),
    })
}

/// The data as rime holds them: bytes and shorts widened to `i32`, text
/// kept as bytes.
fn var_data(data: DataVector) -> VarData {
    match data {
        DataVector::F64(d) => VarData::F64(d),
        DataVector::F32(d) => VarData::F32(d),
        DataVector::I32(d) => VarData::I32(d),
        DataVector::I16(d) => VarData::I32(d.into_iter().map(i32::from).collect()),
        DataVector::I8(d) => VarData::I32(d.into_iter().map(i32::from).collect()),
        DataVector::U8(d) => VarData::Char(d),
    }
}

/// Reads a classic (CDF-1/CDF-2) file.
pub(super) fn read(path: &Path) -> Result<Dataset, IoError> {
    let mut file = std::fs::File::open(path).map_err(|e| io_error(path, "cannot open", e))?;
    let mut magic = [0u8; 8];
    if file.read_exact(&mut magic).is_ok() && &magic == HDF5_MAGIC {
        return Err(IoError::Unsupported {
            path: path.to_path_buf(),
            what: "this is a NetCDF-4/HDF5 file and this rime reads classic NetCDF only: \
                   convert it (`nccopy -k classic IN.nc OUT.nc`) or build rime with \
                   `--features netcdf` (needs libnetcdf, e.g. `apt-get install libnetcdf-dev`)"
                .into(),
        });
    }
    file.seek(SeekFrom::Start(0))
        .map_err(|e| io_error(path, "cannot read", e))?;
    let mut reader = FileReader::open_seek_read(&path.to_string_lossy(), Box::new(file))
        .map_err(|e| read_error(path, "cannot read classic NetCDF header", e))?;
    let nc = reader.data_set();
    let mut ds = Dataset::new();
    for dim in nc.get_dims() {
        ds.dimensions.push((dim.name(), dim.size()));
    }
    for a in nc.get_global_attrs() {
        let what = format!("global attribute `{}`", a.name());
        ds.attributes
            .push((a.name().to_string(), attr_value(path, &what, a)?));
    }
    let mut vars = Vec::with_capacity(nc.num_vars());
    for v in nc.get_vars() {
        let mut attributes = Vec::with_capacity(v.num_attrs());
        for a in v.get_attrs() {
            let what = format!("attribute `{}` of variable `{}`", a.name(), v.name());
            attributes.push((a.name().to_string(), attr_value(path, &what, a)?));
        }
        vars.push(Variable {
            name: v.name().to_string(),
            dimensions: v.dim_names(),
            data: VarData::F64(Vec::new()),
            attributes,
        });
    }
    for v in &mut vars {
        let data = reader
            .read_var(&v.name)
            .map_err(|e| read_error(path, format!("cannot read variable `{}`", v.name), e))?;
        v.data = var_data(data);
    }
    ds.variables = vars;
    Ok(ds)
}
