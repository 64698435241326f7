//! The decoded cache: the first load of a dataset writes its 8-bit pixels and labels to one file;
//! every later load (other runs, `vaelab report`, Slurm tasks on other nodes over a shared
//! folder) maps that file instead of decoding, and the page cache shares it between processes.
//!
//! A file is read only when its header names the same source (the dataset, how it is read, and
//! each source file's path, size and modification time), the same format and vaelab version,
//! its length is the header's, and the BLAKE3 of its payload is the header's. Anything else is
//! rebuilt. A file is written under a temporary name and renamed into place, so two processes
//! building at once leave one good file and neither reads a half-written one; it is not synced
//! to disk (a file a crash cut short fails its checks and is rebuilt).

use crate::pixels::{Bytes, Pixels};
use crate::{DataError, ImageShape, Split};
use memmap2::Mmap;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The environment variable naming the cache folder (`off` disables the cache).
pub const CACHE_ENV: &str = "VAELAB_CACHE_DIR";

const MAGIC: &[u8; 8] = b"VAELABPX";
/// Bumped whenever the layout below changes.
const FORMAT: u32 = 1;
/// The payload starts at a multiple of this (page-aligned pixels).
const ALIGN: usize = 4096;

/// What a load found in the cache, for the one line the runner prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheStatus {
    /// Mapped from this file.
    Mapped(PathBuf),
    /// Decoded, then written to this file (why: absent, stale or damaged).
    Built { path: PathBuf, why: String },
    /// Decoded and kept in memory: the cache could not be written (why).
    Unwritable { path: PathBuf, why: String },
    /// No cache (`VAELAB_CACHE_DIR=off`, no home folder, or pixels that are not 8-bit).
    Off,
}

impl std::fmt::Display for CacheStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheStatus::Mapped(p) => write!(f, "mapped from the decoded cache {}", p.display()),
            CacheStatus::Built { path, why } => {
                write!(f, "decoded and cached in {} ({why})", path.display())
            }
            CacheStatus::Unwritable { path, why } => write!(
                f,
                "decoded into memory: the cache {} cannot be written ({why}); set {CACHE_ENV} to a writable folder",
                path.display()
            ),
            CacheStatus::Off => f.write_str("decoded into memory (no cache)"),
        }
    }
}

/// The cache folder: `$VAELAB_CACHE_DIR`, else `$XDG_CACHE_HOME/vaelab/datasets`, else
/// `~/.cache/vaelab/datasets`; None when turned off.
pub fn cache_dir() -> Option<PathBuf> {
    match std::env::var_os(CACHE_ENV) {
        Some(v) if v == "off" => None,
        Some(v) if !v.is_empty() => Some(PathBuf::from(v)),
        _ => std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
            .map(|c| c.join("vaelab").join("datasets")),
    }
}

/// Where a dataset's pixels came from: what makes a cache file this dataset's and current.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The dataset and how it is read (e.g. `idx`, or a Hub repo with its columns and size).
    pub what: String,
    /// Each source file: path, size in bytes, modification time in ns since the epoch.
    pub files: Vec<(String, u64, u128)>,
    vaelab: String,
    format: u32,
}

impl Identity {
    /// The identity of `what` read from `files` (each stat'ed now).
    pub fn of(what: String, files: &[PathBuf]) -> Result<Self, DataError> {
        let files = files
            .iter()
            .map(|p| {
                let meta = std::fs::metadata(p).map_err(|e| DataError::io(p, e))?;
                let mtime = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                let path = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
                Ok((path.display().to_string(), meta.len(), mtime))
            })
            .collect::<Result<_, DataError>>()?;
        Ok(Self {
            what,
            files,
            vaelab: env!("CARGO_PKG_VERSION").into(),
            format: FORMAT,
        })
    }

    /// The cache file's name: a readable stem and 16 hex chars of the identity's BLAKE3.
    fn file_name(&self, stem: &str) -> String {
        let json = serde_json::to_string(self).unwrap_or_default();
        let hash = blake3::hash(json.as_bytes()).to_hex();
        let stem: String = stem
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        format!("{stem}-{}.pixels", &hash[..16])
    }
}

/// The header stored in front of the payload.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    identity: Identity,
    shape: (usize, usize, usize),
    train: usize,
    test: usize,
    /// BLAKE3 of the payload, hex.
    checksum: String,
}

/// The two splits of `identity`, from the cache in `dir` when it holds them, else from
/// `decode` (then written there for the next load).
pub fn load_or_decode(
    dir: Option<&Path>,
    stem: &str,
    identity: &Identity,
    decode: impl FnOnce() -> Result<(Split, Split), DataError>,
) -> Result<(Split, Split, CacheStatus), DataError> {
    let Some(dir) = dir else {
        let (train, test) = decode()?;
        return Ok((train, test, CacheStatus::Off));
    };
    let path = dir.join(identity.file_name(stem));
    let why = match read(&path, identity, true) {
        Ok(Some((train, test))) => return Ok((train, test, CacheStatus::Mapped(path))),
        Ok(None) => "first load".to_string(),
        Err(why) => why,
    };
    let (train, test) = decode()?;
    let (Some(a), Some(b)) = (train.levels(), test.levels()) else {
        return Ok((train, test, CacheStatus::Off));
    };
    if let Err(e) = write(&path, identity, (&train, a), (&test, b)) {
        let why = e.to_string();
        return Ok((train, test, CacheStatus::Unwritable { path, why }));
    }
    // Map what was written (its checksum was computed from these very bytes), so this process
    // shares the pages with the next ones.
    match read(&path, identity, false) {
        Ok(Some((train, test))) => Ok((train, test, CacheStatus::Built { path, why })),
        _ => Ok((train, test, CacheStatus::Built { path, why })),
    }
}

/// The splits in the cache file at `path`: None when there is none, Err(why) when it is not
/// this identity's or is damaged (the payload's checksum is checked when `verify`).
fn read(path: &Path, identity: &Identity, verify: bool) -> Result<Option<(Split, Split)>, String> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("unreadable: {e}")),
    };
    // SAFETY: the file is only ever replaced by rename, never written in place, so the mapped
    // bytes do not change under us; a file truncated by someone else is caught by the length
    // check below before any pixel is read.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| format!("cannot be mapped: {e}"))?;
    let damaged = |what: &str| format!("damaged: {what}");
    if map.len() < 20 || &map[..8] != MAGIC {
        return Err(damaged("no vaelab header"));
    }
    let word = |at: usize| u32::from_le_bytes([map[at], map[at + 1], map[at + 2], map[at + 3]]);
    if word(8) != FORMAT {
        return Err(format!("format {} (this vaelab writes {FORMAT})", word(8)));
    }
    let header_len =
        u64::from_le_bytes(map[12..20].try_into().map_err(|_| damaged("header"))?) as usize;
    let header_end = 20usize.saturating_add(header_len);
    let header: Header = map
        .get(20..header_end)
        .and_then(|h| serde_json::from_slice(h).ok())
        .ok_or_else(|| damaged("header"))?;
    if header.identity != *identity {
        return Err("stale: another source, version or setting".into());
    }
    let (c, h, w) = header.shape;
    let shape = ImageShape {
        channels: c,
        height: h,
        width: w,
    };
    let start = header_end.div_ceil(ALIGN) * ALIGN;
    let pixels = (header.train + header.test) * shape.dim();
    let end = start + pixels + header.train + header.test;
    if map.len() != end {
        return Err(damaged(&format!("{} bytes where {end} belong", map.len())));
    }
    if verify && checksum(&map, start..end) != header.checksum {
        return Err(damaged("checksum mismatch"));
    }
    let map = Arc::new(map);
    let labels_at = start + pixels;
    let split = |first: usize, n: usize, labels: usize| {
        let range = start + first * shape.dim()..start + (first + n) * shape.dim();
        let bytes = Bytes::Mapped {
            map: Arc::clone(&map),
            range,
        };
        Split::stored(
            Pixels::Levels(bytes),
            map[labels..labels + n].to_vec(),
            shape,
        )
    };
    let train = split(0, header.train, labels_at);
    let test = split(header.train, header.test, labels_at + header.train);
    Ok(Some((train, test)))
}

/// BLAKE3 of `map[range]`, hex, read in chunks that are handed back after hashing, so the check
/// leaves this process's resident set holding only the images training touches later (the
/// page cache keeps them for the next process).
fn checksum(map: &Mmap, range: Range<usize>) -> String {
    const CHUNK: usize = 64 << 20;
    let mut hasher = blake3::Hasher::new();
    let mut at = range.start;
    while at < range.end {
        let end = (at + CHUNK).min(range.end);
        hasher.update(&map[at..end]);
        // Whole pages only: the first and last chunk may share a page with the header or
        // nothing.
        let (lo, hi) = (at.div_ceil(ALIGN) * ALIGN, end / ALIGN * ALIGN);
        #[cfg(unix)]
        if hi > lo {
            // SAFETY: a read-only file mapping: dropped pages are read back from the file.
            let _ = unsafe {
                map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, lo, hi - lo)
            };
        }
        at = end;
    }
    hasher.finalize().to_hex().to_string()
}

/// Writes the cache file for `identity` atomically (temporary file, then rename).
fn write(
    path: &Path,
    identity: &Identity,
    (train, train_px): (&Split, &[u8]),
    (test, test_px): (&Split, &[u8]),
) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut hasher = blake3::Hasher::new();
    for part in [train_px, test_px, train.labels(), test.labels()] {
        hasher.update(part);
    }
    let shape = train.shape();
    let header = Header {
        identity: identity.clone(),
        shape: (shape.channels, shape.height, shape.width),
        train: train.len(),
        test: test.len(),
        checksum: hasher.finalize().to_hex().to_string(),
    };
    let json = serde_json::to_vec(&header).map_err(std::io::Error::other)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".building-")
        .tempfile_in(dir)?;
    {
        let f = tmp.as_file_mut();
        let mut out = std::io::BufWriter::new(f);
        out.write_all(MAGIC)?;
        out.write_all(&FORMAT.to_le_bytes())?;
        out.write_all(&(json.len() as u64).to_le_bytes())?;
        out.write_all(&json)?;
        let header_end = 20 + json.len();
        out.write_all(&vec![0u8; header_end.div_ceil(ALIGN) * ALIGN - header_end])?;
        for part in [train_px, test_px, train.labels(), test.labels()] {
            out.write_all(part)?;
        }
        out.flush()?;
    }
    // Readable by everyone who can read the folder (a shared cache for Slurm tasks).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    // No fsync: a file cut short by a crash fails its length or checksum and is rebuilt.
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn splits(seed: u8) -> (Split, Split) {
        let shape = ImageShape::grey(3, 2);
        let px = |n: usize| {
            (0..n * 6)
                .map(|i| (i as u8).wrapping_mul(37).wrapping_add(seed))
                .collect()
        };
        (
            Split::from_u8(px(4), vec![1, 2, 3, 4], shape),
            Split::from_u8(px(2), vec![9, 8], shape),
        )
    }

    fn source(dir: &Path, bytes: &[u8]) -> Identity {
        let f = dir.join("source.bin");
        std::fs::write(&f, bytes).unwrap();
        Identity::of("test".into(), &[f]).unwrap()
    }

    fn load(dir: &Path, id: &Identity, seed: u8) -> (Split, Split, CacheStatus, bool) {
        let mut decoded = false;
        let (a, b, status) = load_or_decode(Some(dir), "t", id, || {
            decoded = true;
            Ok(splits(seed))
        })
        .unwrap();
        (a, b, status, decoded)
    }

    #[test]
    fn a_second_load_maps_the_same_pixels_without_decoding() {
        let tmp = tempfile::tempdir().unwrap();
        let id = source(tmp.path(), b"v1");
        let (a, b, status, decoded) = load(tmp.path(), &id, 0);
        assert!(
            decoded && matches!(status, CacheStatus::Built { .. }),
            "{status}"
        );
        let (c, d, status, decoded) = load(tmp.path(), &id, 99);
        assert!(
            !decoded && matches!(status, CacheStatus::Mapped(_)),
            "{status}"
        );
        assert_eq!((&c, &d), (&a, &b));
        assert_eq!((c.resident_bytes(), c.labels()), (0, &[1, 2, 3, 4][..]));
        assert_eq!(splits(0), (c, d));
    }

    #[test]
    fn a_changed_source_is_decoded_again() {
        let tmp = tempfile::tempdir().unwrap();
        let id = source(tmp.path(), b"v1");
        load(tmp.path(), &id, 0);
        let changed = source(tmp.path(), b"version 2");
        let (a, _, status, decoded) = load(tmp.path(), &changed, 5);
        assert!(decoded, "{status}");
        assert_eq!(a, splits(5).0);
    }

    /// A truncated, emptied or bit-flipped file, or another dataset's file put in its place,
    /// is rebuilt and never read.
    #[test]
    fn a_damaged_or_foreign_cache_file_is_rebuilt_not_read() {
        let tmp = tempfile::tempdir().unwrap();
        let id = source(tmp.path(), b"v1");
        let other = Identity::of("another dataset".into(), &id_files(&id)).unwrap();
        load(tmp.path(), &id, 0);
        let path = tmp.path().join(id.file_name("t"));
        let good = std::fs::read(&path).unwrap();
        let foreign = {
            let d = tempfile::tempdir().unwrap();
            load(d.path(), &other, 7);
            std::fs::read(d.path().join(other.file_name("t"))).unwrap()
        };
        let mut flipped = good.clone();
        let last = flipped.len() - 3;
        flipped[last] ^= 1;
        for (case, bytes, needle) in [
            ("truncated", good[..good.len() - 5].to_vec(), "damaged"),
            ("empty", vec![], "damaged"),
            ("flipped", flipped, "checksum"),
            ("foreign", foreign, "stale"),
        ] {
            std::fs::write(&path, &bytes).unwrap();
            let (a, b, status, decoded) = load(tmp.path(), &id, 0);
            assert!(decoded, "{case}: {status}");
            assert!(
                matches!(&status, CacheStatus::Built { why, .. } if why.contains(needle)),
                "{case}: {status}"
            );
            assert_eq!((a, b), splits(0), "{case}");
            assert_eq!(std::fs::read(&path).unwrap(), good, "{case}: not rewritten");
        }
    }

    fn id_files(id: &Identity) -> Vec<PathBuf> {
        id.files.iter().map(|(p, _, _)| PathBuf::from(p)).collect()
    }

    #[test]
    fn an_unwritable_folder_keeps_the_pixels_in_memory_and_says_so() {
        let tmp = tempfile::tempdir().unwrap();
        let id = source(tmp.path(), b"v1");
        // A file where the folder should be: nothing can be created under it.
        let blocked = tmp.path().join("blocked");
        std::fs::write(&blocked, b"x").unwrap();
        let (a, _, status, _) = load(&blocked.join("cache"), &id, 3);
        assert!(matches!(status, CacheStatus::Unwritable { .. }), "{status}");
        assert!(status.to_string().contains(CACHE_ENV));
        assert_eq!(a, splits(3).0);
    }

    #[test]
    fn processes_racing_to_build_each_get_the_right_pixels_and_one_good_file() {
        let tmp = tempfile::tempdir().unwrap();
        let id = source(tmp.path(), b"v1");
        std::thread::scope(|s| {
            for _ in 0..6 {
                s.spawn(|| {
                    let (a, b, _, _) = load(tmp.path(), &id, 0);
                    assert_eq!((a, b), splits(0));
                });
            }
        });
        let (_, _, status, decoded) = load(tmp.path(), &id, 0);
        assert!(!decoded, "{status}");
        let left: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".building"))
            .collect();
        assert!(left.is_empty(), "temporary files left: {left:?}");
    }
}
