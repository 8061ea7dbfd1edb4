//! Atomic file replacement: write a temporary sibling, fsync, rename.

use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::IoError;

/// Distinguishes temporary files of concurrent writes within one process.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Longest prefix (in bytes) of the target's file name kept in the
/// temporary name, so that the temporary name stays below `NAME_MAX` (255).
const MAX_NAME_PREFIX: usize = 200;

/// Removes the temporary file when dropped, unless disarmed (also on panic).
struct TempGuard {
    path: PathBuf,
    armed: bool,
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Builds an OS error naming `path`.
pub(crate) fn io_error(path: &Path, action: impl Into<String>, source: std::io::Error) -> IoError {
    IoError::Io {
        path: path.to_path_buf(),
        action: action.into(),
        reason: source,
    }
}

/// The temporary sibling used while writing `path`: `.{name}.tmp-{pid}-{n}`.
pub(crate) fn temp_path_for(path: &Path) -> Result<PathBuf, IoError> {
    let name = path.file_name().ok_or_else(|| {
        io_error(
            path,
            "cannot write",
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "path has no file name"),
        )
    })?;
    let name = name.to_string_lossy();
    let mut end = name.len().min(MAX_NAME_PREFIX);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut tmp = OsString::from(".");
    tmp.push(&name[..end]);
    tmp.push(format!(".tmp-{}-{n}", std::process::id()));
    Ok(match path.parent() {
        Some(dir) => dir.join(tmp),
        None => PathBuf::from(tmp),
    })
}

/// Runs `write` on a fresh temporary path next to `path`, fsyncs the file it
/// produced and renames it over `path`.
///
/// `write` must create the file at the path it is given. On any error (or
/// panic) the temporary file is removed and `path` is left untouched.
pub(crate) fn write_with<F>(path: &Path, write: F) -> Result<(), IoError>
where
    F: FnOnce(&Path) -> Result<(), IoError>,
{
    let tmp = temp_path_for(path)?;
    let mut guard = TempGuard {
        path: tmp.clone(),
        armed: true,
    };
    write(&tmp)?;
    // Reopen to fsync whatever the backend wrote (netcdf3 or libnetcdf own
    // their file handles). `write(true)` so that this also works on Windows.
    OpenOptions::new()
        .write(true)
        .open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| {
            io_error(
                path,
                format!("cannot fsync temporary file {}", tmp.display()),
                e,
            )
        })?;
    fs::rename(&tmp, path).map_err(|e| {
        io_error(
            path,
            format!("cannot rename temporary file {} over", tmp.display()),
            e,
        )
    })?;
    guard.armed = false;
    sync_parent_dir(path);
    Ok(())
}

/// Best-effort fsync of the directory holding `path`, so the rename itself
/// survives a crash. Errors are ignored: the data is already in place.
fn sync_parent_dir(path: &Path) {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Writes `bytes` to `path` atomically (see [`write_with`]).
pub(crate) fn write_bytes(path: &Path, bytes: &[u8]) -> Result<(), IoError> {
    write_with(path, |tmp| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(tmp)
            .map_err(|e| {
                io_error(
                    path,
                    format!("cannot create temporary file {}", tmp.display()),
                    e,
                )
            })?;
        f.write_all(bytes).map_err(|e| {
            io_error(
                path,
                format!("cannot write temporary file {}", tmp.display()),
                e,
            )
        })
    })
}
