use crate::TrackError;
use std::path::Path;

/// Writes `bytes` to `path` atomically: readers see the old file or the new one, never half.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrackError> {
    write_atomic_with(path, |tmp| {
        std::fs::write(tmp, bytes).map_err(|e| e.to_string())
    })
}

/// Creates a temp file beside `path`, lets `fill` write it (given its path), syncs it and
/// renames it over `path`. A failure leaves `path` as it was and removes the temp file.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<(), TrackError> {
    let io = |source: std::io::Error| TrackError::Io {
        path: path.into(),
        source,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // Results are for sharing: rw-r--r-- (less the umask), not the temp file's private 0600.
    let mut builder = tempfile::Builder::new();
    builder.prefix(".tmp-");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o644));
    }
    let tmp = builder.tempfile_in(dir).map_err(io)?;
    let nth = fault::before_write().map_err(io)?;
    fill(tmp.path()).map_err(|reason| TrackError::Other {
        path: path.into(),
        reason,
    })?;
    fault::after_write(nth);
    std::fs::File::open(tmp.path())
        .and_then(|f| f.sync_all())
        .map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

/// Fault injection for the crash tests (RELIABILITY.md), counted over this process's atomic
/// writes: `VAELAB_FAULT_ABORT_AT=N` aborts the process at the Nth write, after its temp file
/// is filled and before the rename (the worst moment to die); `VAELAB_FAULT_ENOSPC_AT=N` makes
/// the Nth write and every later one fail as on a full disk. Unset, they cost one relaxed
/// atomic add per write.
mod fault {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::OnceLock;

    static WRITES: AtomicUsize = AtomicUsize::new(0);

    fn at(var: &'static str, cell: &'static OnceLock<Option<usize>>) -> Option<usize> {
        *cell.get_or_init(|| std::env::var(var).ok().and_then(|v| v.parse().ok()))
    }

    fn enospc_at() -> Option<usize> {
        static CELL: OnceLock<Option<usize>> = OnceLock::new();
        at("VAELAB_FAULT_ENOSPC_AT", &CELL)
    }

    fn abort_at() -> Option<usize> {
        static CELL: OnceLock<Option<usize>> = OnceLock::new();
        at("VAELAB_FAULT_ABORT_AT", &CELL)
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
    pub fn after_write(n: usize) {
        if abort_at() == Some(n) {
            eprintln!("vaelab: injected crash (VAELAB_FAULT_ABORT_AT)");
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
