//! An output folder that one rime command owns at a time, and in which rime
//! deletes or overwrites only what it can prove it wrote.
//!
//! Every command that writes into a folder (`rime run`, `simulate`,
//! `train`, `evaluate`, `map`) first claims it ([`OutputFolder::claim`]):
//! - **One writer.** `.rime.lock` holds the writer's process id, created
//!   exclusively; a second writer of any kind is refused while the first
//!   lives (a lock left by a killed process is taken over).
//! - **A manifest, written first.** `.rime-manifest.json` records, file by
//!   file, which command wrote it. A command declares the files it will
//!   write ([`OutputFolder::prepare`]) before it creates any; the manifest
//!   is saved (atomically) before the first byte of them is written.
//! - **Nothing foreign touched.** A file that a command would write but that
//!   no recorded rime command wrote (the user's, another program's, a
//!   folder from before manifests) is refused, named, unless the user
//!   passes `--overwrite`. Leftovers of an interrupted earlier command, the
//!   streamed `<stem>.partial.nc` of a recorded `<stem>.nc` and the hidden
//!   `.<name>.tmp-*` of an atomic write, are removed only when `<name>` is
//!   in the manifest; any other `*.partial.nc` stays where it is.
//! - **No stale outputs.** A command whose outputs depend on its
//!   configuration (a run's methods, an evaluation's plots) retires
//!   ([`OutputFolder::retire`]) the files an earlier run of the same command
//!   recorded and this one did not write, so a folder never shows an older
//!   method's file beside the new truth.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::IoError;

/// The manifest's file name in an output folder.
pub const MANIFEST: &str = ".rime-manifest.json";
/// The lock's file name in an output folder.
pub const LOCK: &str = ".rime.lock";
/// The suffix of a file streamed while a command runs (`<stem>.partial.nc`
/// becomes `<stem>.nc` when complete); no label or file name may end in it.
pub const PARTIAL_SUFFIX: &str = ".partial";

/// What `.rime-manifest.json` holds: each file rime wrote in the folder and
/// the command that wrote it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
struct Manifest {
    /// File name -> command (`"rime run"`, `"rime train"`, ...).
    files: BTreeMap<String, String>,
}

/// A folder claimed by one command: its lock, held until dropped, and its
/// manifest.
#[derive(Debug)]
pub struct OutputFolder {
    dir: PathBuf,
    command: String,
    overwrite: bool,
    manifest: Manifest,
    lock: PathBuf,
    /// Leftovers of interrupted earlier commands removed on claiming.
    removed: Vec<String>,
}

fn io_error(path: &Path, action: &str, reason: std::io::Error) -> IoError {
    IoError::Io {
        path: path.to_path_buf(),
        action: action.into(),
        reason,
    }
}

fn refused(path: &Path, reason: String) -> IoError {
    IoError::Refused {
        path: path.to_path_buf(),
        reason,
    }
}

/// The streamed twin of `name`: `<stem>.partial.nc` for `<stem>.nc`.
pub fn partial_name(name: &str) -> Option<String> {
    name.strip_suffix(".nc")
        .map(|stem| format!("{stem}{PARTIAL_SUFFIX}.nc"))
}

/// Creates `dir` and takes its lock; returns the lock's path.
fn acquire_lock(dir: &Path) -> Result<PathBuf, IoError> {
    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, "creating the output folder", e))?;
    let path = dir.join(LOCK);
    for _ in 0..2 {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut f) => {
                use std::io::Write as _;
                writeln!(f, "{}", std::process::id())
                    .map_err(|e| io_error(dir, "writing into the output folder", e))?;
                return Ok(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let owner = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|t| t.trim().parse::<u32>().ok());
                let alive = owner.is_some_and(|pid| {
                    pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists()
                });
                if alive {
                    return Err(refused(
                        dir,
                        format!(
                            "another rime command (process {}) is writing into this folder; wait for it to end or choose another output",
                            owner.unwrap_or(0)
                        ),
                    ));
                }
                // The owner is gone (a killed command): take its lock over.
                let _ = std::fs::remove_file(&path);
            }
            Err(source) => return Err(io_error(dir, "writing into the output folder", source)),
        }
    }
    Err(refused(&path, "the lock file keeps coming back".into()))
}

impl OutputFolder {
    /// Creates `dir` if needed, locks it for `command` (e.g. `"rime run"`)
    /// and reads its manifest; removes the leftovers (partial and temporary
    /// files) of recorded files that an interrupted command left.
    /// With `overwrite`, files this command declares are replaced even if
    /// no recorded command wrote them.
    ///
    /// # Errors
    /// A folder that cannot be created or written, one that another live
    /// rime command holds, or a manifest that cannot be read.
    pub fn claim(dir: &Path, command: &str, overwrite: bool) -> Result<Self, IoError> {
        let lock = acquire_lock(dir)?;
        let mut folder = Self {
            dir: dir.to_path_buf(),
            command: command.to_string(),
            overwrite,
            manifest: Manifest::default(),
            lock,
            removed: Vec::new(),
        };
        let path = dir.join(MANIFEST);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                folder.manifest = serde_json::from_str(&text).map_err(|e| {
                    refused(
                        &path,
                        format!(
                            "the manifest of rime's files in this folder cannot be read ({e}); rime cannot tell its files from others: delete it only if no file here is to be kept, or choose another output"
                        ),
                    )
                })?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&path, "reading the manifest", e)),
        }
        folder.remove_leftovers();
        Ok(folder)
    }

    /// Claims the folder of the single file `path` for `command` and
    /// declares the file (see [`claim`](Self::claim) and
    /// [`prepare`](Self::prepare)).
    ///
    /// # Errors
    /// As those two.
    pub fn claim_file(path: &Path, command: &str, overwrite: bool) -> Result<Self, IoError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| refused(path, "has no file name".into()))?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut folder = Self::claim(&dir, command, overwrite)?;
        folder.prepare(&[name])?;
        Ok(folder)
    }

    /// The files `command` is recorded to have written in `dir`, read
    /// without claiming the folder; `None` for a folder without a manifest.
    ///
    /// # Errors
    /// A manifest that cannot be read.
    pub fn recorded_by(dir: &Path, command: &str) -> Result<Option<Vec<String>>, IoError> {
        let path = dir.join(MANIFEST);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(&path, "reading the manifest", e)),
        };
        let manifest: Manifest = serde_json::from_str(&text)
            .map_err(|e| refused(&path, format!("cannot be read: {e}")))?;
        Ok(Some(
            manifest
                .files
                .into_iter()
                .filter(|(_, c)| c == command)
                .map(|(n, _)| n)
                .collect(),
        ))
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Leftovers of interrupted earlier commands removed when the folder
    /// was claimed, by name.
    pub fn removed(&self) -> &[String] {
        &self.removed
    }

    /// Whether `name` is recorded as written by a rime command.
    pub fn recorded(&self, name: &str) -> bool {
        self.manifest.files.contains_key(name)
    }

    /// The recorded files written by `command`, sorted.
    pub fn written_by(&self, command: &str) -> Vec<String> {
        self.manifest
            .files
            .iter()
            .filter(|(_, c)| c.as_str() == command)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Removes the partial and temporary siblings of recorded files, and
    /// forgets recorded files that are gone.
    fn remove_leftovers(&mut self) {
        let names: Vec<String> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        let mut removed = Vec::new();
        let mut owned: Vec<String> = self.manifest.files.keys().cloned().collect();
        owned.push(MANIFEST.to_string());
        for name in &names {
            let leftover = owned.iter().any(|o| {
                partial_name(o).as_deref() == Some(name.as_str())
                    || name
                        .strip_prefix('.')
                        .and_then(|n| n.strip_prefix(o.as_str()))
                        .is_some_and(|rest| rest.starts_with(".tmp-"))
            });
            if leftover && std::fs::remove_file(self.dir.join(name)).is_ok() {
                removed.push(name.clone());
            }
        }
        removed.sort();
        self.removed = removed;
        let dir = self.dir.clone();
        self.manifest.files.retain(|n, _| {
            dir.join(n).exists() || partial_name(n).is_some_and(|p| dir.join(p).exists())
        });
    }

    /// Files (not folders, not hidden) in the folder ending in `suffix`
    /// that no recorded command wrote and that are not in `except`, sorted.
    pub fn unrecorded(&self, suffix: &str, except: &[String]) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(suffix) && !n.starts_with('.'))
            .filter(|n| !self.recorded(n) && !except.contains(n))
            .collect();
        names.sort();
        names
    }

    /// Declares files this command is about to write (names in the
    /// folder), before any is created: refuses, naming them all, those that
    /// exist (or whose streamed `.partial.nc` exists) without a record of a
    /// rime command having written them, unless the folder was claimed with
    /// `overwrite`; records the others in the manifest, saved at once.
    ///
    /// # Errors
    /// Unrecorded files in the way, or a manifest that cannot be written.
    pub fn prepare(&mut self, names: &[String]) -> Result<(), IoError> {
        let mut foreign = Vec::new();
        for name in names {
            if self.recorded(name) {
                continue;
            }
            for n in std::iter::once(name.clone()).chain(partial_name(name)) {
                if self.dir.join(&n).exists() && !foreign.contains(&n) {
                    foreign.push(n);
                }
            }
        }
        if !foreign.is_empty() && !self.overwrite {
            return Err(refused(
                &self.dir,
                format!(
                    "{} would be overwritten, and no rime command is recorded to have written {} ({MANIFEST}); rime does not overwrite files it did not create: move {}, choose another output, or pass --overwrite",
                    foreign.join(", "),
                    if foreign.len() == 1 { "it" } else { "them" },
                    if foreign.len() == 1 { "it" } else { "them" },
                ),
            ));
        }
        let mut changed = false;
        for name in names {
            if self.manifest.files.get(name) != Some(&self.command) {
                self.manifest
                    .files
                    .insert(name.clone(), self.command.clone());
                changed = true;
            }
        }
        if changed {
            self.save()?;
        }
        Ok(())
    }

    /// Removes the files that earlier runs of this command recorded and
    /// that this one does not write (`kept`); returns their names.
    ///
    /// # Errors
    /// A file or the manifest that cannot be removed or written.
    pub fn retire(&mut self, kept: &[String]) -> Result<Vec<String>, IoError> {
        let stale: Vec<String> = self
            .written_by(&self.command)
            .into_iter()
            .filter(|n| !kept.contains(n))
            .collect();
        for name in &stale {
            let path = self.dir.join(name);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(&path, "removing an earlier run's file", e)),
            }
            self.manifest.files.remove(name);
        }
        if !stale.is_empty() {
            self.save()?;
        }
        Ok(stale)
    }

    fn save(&self) -> Result<(), IoError> {
        let text = serde_json::to_string_pretty(&self.manifest).unwrap_or_default();
        super::write_atomic(&self.dir.join(MANIFEST), text.as_bytes())
    }
}

impl Drop for OutputFolder {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.lock);
    }
}

/// The bytes available to this user on the file system that holds `path`
/// (its nearest existing ancestor), or `None` where it cannot be told.
pub fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt as _;
    let mut p = if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    };
    while !p.exists() {
        p = match p.parent() {
            Some(q) if !q.as_os_str().is_empty() => q,
            _ => Path::new("."),
        };
        if p == Path::new(".") {
            break;
        }
    }
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).ok()?;
    // SAFETY: `c` is a NUL-terminated path and `stat` a plain-data struct
    // that statvfs fills; nothing is read from it unless the call succeeds.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::statvfs(c.as_ptr(), &mut stat) } == 0;
    ok.then(|| (stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
}

/// Checks before any computing that `path` (a file the user named, such
/// as `--table`) can be written: its folder exists or can be created and
/// takes a new file, and `path` is not a folder.
///
/// # Errors
/// The reason, naming the path.
pub fn check_writable(path: &Path) -> Result<(), IoError> {
    if path.is_dir() {
        return Err(refused(path, "is a folder, not a file".into()));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, "creating the folder", e))?;
    let probe = super::atomic::temp_path_for(path)?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(|e| io_error(path, "checking that the file can be written", e))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rime-folder-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn foreign_files_are_never_removed_or_overwritten() {
        let dir = folder("foreign");
        // Another program's partial file, a user's file that a run would
        // write, and a label-like `truth.partial.nc`.
        std::fs::write(dir.join("other.partial.nc"), b"theirs").unwrap();
        std::fs::write(dir.join("letkf.nc"), b"mine").unwrap();
        let mut f = OutputFolder::claim(&dir, "rime run", false).unwrap();
        assert!(f.removed().is_empty());
        let err = f
            .prepare(&names(&["truth.nc", "letkf.nc"]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("letkf.nc") && err.contains("--overwrite"),
            "{err}"
        );
        drop(f);
        assert_eq!(std::fs::read(dir.join("letkf.nc")).unwrap(), b"mine");
        assert_eq!(
            std::fs::read(dir.join("other.partial.nc")).unwrap(),
            b"theirs"
        );
        // With --overwrite the named file may be replaced; the other stays.
        let mut f = OutputFolder::claim(&dir, "rime run", true).unwrap();
        f.prepare(&names(&["truth.nc", "letkf.nc"])).unwrap();
        assert!(f.recorded("letkf.nc"));
        assert!(dir.join("other.partial.nc").exists());
        assert_eq!(f.unrecorded(".nc", &[]), names(&["other.partial.nc"]));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn leftovers_of_recorded_files_are_removed_and_stale_outputs_retired() {
        let dir = folder("stale");
        let mut f = OutputFolder::claim(&dir, "rime run", false).unwrap();
        f.prepare(&names(&["truth.nc", "letkf.nc", "etkf.nc"]))
            .unwrap();
        // An interrupted run: streamed files and an atomic write's
        // temporary file; and a file of another command.
        std::fs::write(dir.join("truth.nc"), b"t").unwrap();
        std::fs::write(dir.join("letkf.partial.nc"), b"p").unwrap();
        std::fs::write(dir.join("etkf.nc"), b"e").unwrap();
        std::fs::write(dir.join(".truth.nc.tmp-1-0"), b"x").unwrap();
        std::fs::write(dir.join("user.partial.nc"), b"u").unwrap();
        drop(f);
        // The next command of any kind clears them (its lock proves that
        // no rime command is writing them).
        let mut f = OutputFolder::claim(&dir, "rime simulate", false).unwrap();
        assert_eq!(
            f.removed(),
            &names(&[".truth.nc.tmp-1-0", "letkf.partial.nc"])
        );
        assert!(dir.join("user.partial.nc").exists());
        f.prepare(&names(&["data.nc"])).unwrap();
        std::fs::write(dir.join("data.nc"), b"d").unwrap();
        drop(f);
        let mut f = OutputFolder::claim(&dir, "rime run", false).unwrap();
        assert!(f.removed().is_empty());
        // The new run has the truth and the LETKF only: the earlier ETKF
        // file goes, the simulation's file (another command) stays.
        f.prepare(&names(&["truth.nc", "letkf.nc"])).unwrap();
        assert_eq!(
            f.retire(&names(&["truth.nc", "letkf.nc"])).unwrap(),
            names(&["etkf.nc"])
        );
        assert!(!dir.join("etkf.nc").exists());
        assert!(dir.join("data.nc").exists() && dir.join("truth.nc").exists());
        assert_eq!(f.written_by("rime simulate"), names(&["data.nc"]));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn one_writer_at_a_time_and_a_dead_lock_is_taken_over() {
        let dir = folder("lock");
        let f = OutputFolder::claim(&dir, "rime run", false).unwrap();
        let err = OutputFolder::claim(&dir, "rime train", false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("another rime command"), "{err}");
        drop(f);
        assert!(!dir.join(LOCK).exists());
        // A lock whose process is gone.
        std::fs::write(dir.join(LOCK), "4294967295\n").unwrap();
        OutputFolder::claim(&dir, "rime run", false).unwrap();
        // An unreadable manifest is refused, not ignored.
        std::fs::write(dir.join(MANIFEST), "{ not json").unwrap();
        let err = OutputFolder::claim(&dir, "rime run", false)
            .unwrap_err()
            .to_string();
        assert!(err.contains(MANIFEST), "{err}");
        assert!(!dir.join(LOCK).exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn named_targets_are_checked_before_the_work() {
        let dir = folder("target");
        check_writable(&dir.join("tables/t.md")).unwrap();
        assert!(dir.join("tables").is_dir());
        let err = check_writable(&dir).unwrap_err().to_string();
        assert!(err.contains("is a folder"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
