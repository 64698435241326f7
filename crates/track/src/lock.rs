//! Advisory file locks, so two vaelab processes never train the same run at once. The kernel
//! releases a lock when its process dies, so a killed sweep never leaves a run locked.

use crate::TrackError;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::Path;

/// The lock file of a run folder.
pub const LOCK: &str = ".lock";

/// A held lock; released on drop (or when the process ends, however it ends).
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

impl Lock {
    /// Takes the lock at `path` if it is free; `None` when another process holds it.
    pub fn try_acquire(path: &Path) -> Result<Option<Self>, TrackError> {
        let file = open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Self::held(file, path)?)),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(source)) => Err(TrackError::Io {
                path: path.into(),
                source,
            }),
        }
    }

    /// Waits for the lock at `path`.
    pub fn acquire(path: &Path) -> Result<Self, TrackError> {
        let file = open(path)?;
        file.lock().map_err(|source| TrackError::Io {
            path: path.into(),
            source,
        })?;
        Self::held(file, path)
    }

    /// Records the holder's pid in the file, for messages about who holds it.
    fn held(mut file: File, path: &Path) -> Result<Self, TrackError> {
        let io = |source| TrackError::Io {
            path: path.into(),
            source,
        };
        file.set_len(0).map_err(io)?;
        write!(file, "{}", std::process::id()).map_err(io)?;
        Ok(Self { _file: file })
    }
}

fn open(path: &Path) -> Result<File, TrackError> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(|source| TrackError::Io {
            path: path.into(),
            source,
        })
}

/// The pid written by the holder of the lock at `path`, if readable.
pub fn holder(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_is_refused_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCK);
        let first = Lock::try_acquire(&path).unwrap().expect("free at first");
        // flock locks belong to the open file, so a second open in this process contends too.
        assert!(Lock::try_acquire(&path).unwrap().is_none());
        assert_eq!(holder(&path), Some(std::process::id()));
        drop(first);
        assert!(Lock::try_acquire(&path).unwrap().is_some());
    }
}
