use crate::TrackError;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically: readers see the old file or the new one, never half.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrackError> {
    write_atomic_with(path, |tmp| {
        std::fs::write(tmp, bytes).map_err(|e| e.to_string())
    })
}

/// Copies the file `from` to `to` atomically (the sweep file's copy beside its results).
pub fn copy_atomic(from: &Path, to: &Path) -> Result<(), TrackError> {
    let bytes = std::fs::read(from).map_err(|e| TrackError::Read {
        path: from.into(),
        reason: e.to_string(),
    })?;
    write_atomic(to, &bytes)
}

/// Creates a temp file beside `path` (same extension, so writers that go by it work), lets
/// `fill` write it (given its path), syncs it, renames it over `path` and syncs the folder, so
/// the rename itself survives a power cut. A failure leaves `path` as it was and removes the
/// temp file. Every file vaelab writes comes through here (`tests/architecture.rs` checks).
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<(), TrackError> {
    stage_with(path, fill)?.commit()
}

/// A filled and synced temp file that will replace `path` on [`Staged::commit`]; dropped
/// uncommitted, it is removed and `path` stays as it was. Staging several files before
/// committing any lets a run record their hashes in its manifest before they replace the old
/// ones, so every file on disk matches a recorded hash whenever a crash strikes.
pub struct Staged {
    tmp: tempfile::NamedTempFile,
    path: PathBuf,
}

/// Fills a temp file for `path` as [`write_atomic_with`] does, without the rename.
pub fn stage_with(
    path: &Path,
    fill: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<Staged, TrackError> {
    let io = |source: std::io::Error| TrackError::Io {
        path: path.into(),
        source,
    };
    // Results are for sharing: rw-r--r-- (less the umask), not the temp file's private 0600.
    let mut builder = tempfile::Builder::new();
    builder.prefix(".tmp-");
    let suffix = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    builder.suffix(&suffix);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o644));
    }
    let tmp = builder.tempfile_in(folder_of(path)).map_err(io)?;
    let nth = fault::before_write().map_err(io)?;
    fill(tmp.path()).map_err(|reason| TrackError::Other {
        path: path.into(),
        reason,
    })?;
    fault::after_write(nth, path);
    std::fs::File::open(tmp.path())
        .and_then(|f| f.sync_all())
        .map_err(io)?;
    Ok(Staged {
        tmp,
        path: path.into(),
    })
}

impl Staged {
    /// The SHA-256 of the staged bytes, as lowercase hex.
    pub fn sha256(&self) -> Result<String, TrackError> {
        sha256_of(self.tmp.path()).map_err(|e| TrackError::Io {
            path: self.path.clone(),
            source: e,
        })
    }

    /// Renames the temp file over its target and syncs the folder.
    pub fn commit(self) -> Result<(), TrackError> {
        let io = |source: std::io::Error| TrackError::Io {
            path: self.path.clone(),
            source,
        };
        self.tmp.persist(&self.path).map_err(|e| io(e.error))?;
        sync_folder(folder_of(&self.path)).map_err(io)
    }
}

/// The SHA-256 of a file's bytes, as lowercase hex.
pub fn sha256_of(path: &Path) -> std::io::Result<String> {
    use sha2::Digest;
    Ok(sha2::Sha256::digest(std::fs::read(path)?)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn folder_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Makes a rename in `dir` durable (POSIX: fsync the folder).
#[cfg(unix)]
fn sync_folder(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Folders cannot be opened for fsync here; the rename is as durable as the platform makes it.
#[cfg(not(unix))]
fn sync_folder(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}

/// Fault injection for the crash tests (RELIABILITY.md), counted over this process's atomic
/// writes. `VAELAB_FAULT_ABORT_AT=N` aborts the process at the Nth write, after its temp file
/// is filled and before the rename (the worst moment to die); `VAELAB_FAULT_ABORT_AT=NAME:N`
/// at the Nth write of a file named NAME (or, for `.png`-style NAME, of that extension).
/// `VAELAB_FAULT_ENOSPC_AT=N` makes the Nth write and every later one fail as on a full disk.
/// `VAELAB_FAULT_TRACE=1` prints every write's number and path. Unset, they cost one relaxed
/// atomic add per write.
mod fault {
    use std::path::Path;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::OnceLock;

    static WRITES: AtomicUsize = AtomicUsize::new(0);
    static NAMED_WRITES: AtomicUsize = AtomicUsize::new(0);

    /// Where the injected crash strikes.
    enum AbortAt {
        Nth(usize),
        Named { name: String, nth: usize },
    }

    fn var(name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }

    fn enospc_at() -> Option<usize> {
        static CELL: OnceLock<Option<usize>> = OnceLock::new();
        *CELL.get_or_init(|| var("VAELAB_FAULT_ENOSPC_AT").and_then(|v| v.parse().ok()))
    }

    fn abort_at() -> Option<&'static AbortAt> {
        static CELL: OnceLock<Option<AbortAt>> = OnceLock::new();
        CELL.get_or_init(|| {
            let v = var("VAELAB_FAULT_ABORT_AT")?;
            match v.rsplit_once(':') {
                Some((name, nth)) => Some(AbortAt::Named {
                    name: name.to_string(),
                    nth: nth.parse().ok()?,
                }),
                None => v.parse().ok().map(AbortAt::Nth),
            }
        })
        .as_ref()
    }

    fn trace() -> bool {
        static CELL: OnceLock<bool> = OnceLock::new();
        *CELL.get_or_init(|| var("VAELAB_FAULT_TRACE").is_some())
    }

    fn is_named(path: &Path, name: &str) -> bool {
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy())
            .unwrap_or_default();
        match name.strip_prefix('.') {
            Some(ext) => path.extension().is_some_and(|e| e == ext),
            None => file == name,
        }
    }

    /// Counts a write and returns its number; the injected full disk fails it here.
    pub fn before_write() -> std::io::Result<usize> {
        let n = WRITES.fetch_add(1, Ordering::Relaxed) + 1;
        if enospc_at().is_some_and(|at| n >= at) {
            return Err(std::io::Error::from_raw_os_error(28)); // ENOSPC
        }
        Ok(n)
    }

    /// The injected crash of write `n`: its temp file is filled, the rename has not happened.
    /// It names the file it struck, so the crash tests can count kill points by file kind.
    pub fn after_write(n: usize, path: &Path) {
        if trace() {
            eprintln!("vaelab: write {n}: {}", path.display());
        }
        let strike = match abort_at() {
            None => false,
            Some(AbortAt::Nth(at)) => *at == n,
            Some(AbortAt::Named { name, nth }) => {
                is_named(path, name) && NAMED_WRITES.fetch_add(1, Ordering::Relaxed) + 1 == *nth
            }
        };
        if strike {
            eprintln!(
                "vaelab: injected crash (VAELAB_FAULT_ABORT_AT) at write {n}: {}",
                path.display()
            );
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_file_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        write_atomic(&p, b"first").unwrap();
        write_atomic(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn the_temp_file_keeps_the_extension_and_a_copy_is_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("figure.png");
        write_atomic_with(&p, |tmp| {
            assert!(tmp.to_string_lossy().ends_with(".png"), "{}", tmp.display());
            std::fs::write(tmp, b"png bytes").map_err(|e| e.to_string())
        })
        .unwrap();
        let copy = dir.path().join("copy.png");
        copy_atomic(&p, &copy).unwrap();
        assert_eq!(std::fs::read(&copy).unwrap(), b"png bytes");
        let missing = copy_atomic(&dir.path().join("absent.toml"), &copy).unwrap_err();
        assert!(missing.to_string().contains("absent.toml"), "{missing}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn a_staged_file_replaces_its_target_only_when_committed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("metrics.parquet");
        write_atomic(&p, b"old").unwrap();
        let staged = stage_with(&p, |tmp| {
            std::fs::write(tmp, b"new").map_err(|e| e.to_string())
        })
        .unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        // SHA-256("new"), from coreutils' sha256sum.
        assert_eq!(
            staged.sha256().unwrap(),
            "11507a0e2f5e69d5dfa40a62a1bd7b6ee57e6bcd85c67c9b8431b36fff21c437"
        );
        staged.commit().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        let dropped = stage_with(&p, |tmp| {
            std::fs::write(tmp, b"lost").map_err(|e| e.to_string())
        })
        .unwrap();
        drop(dropped);
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn failed_fill_keeps_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        write_atomic(&p, b"good").unwrap();
        let err = write_atomic_with(&p, |_| Err("disk full".into())).unwrap_err();
        assert!(err.to_string().contains("disk full"));
        assert_eq!(std::fs::read(&p).unwrap(), b"good");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
