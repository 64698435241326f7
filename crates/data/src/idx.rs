//! IDX files (LeCun's MNIST format), raw or gzip-compressed.

use crate::{split::Split, DataError, ImageShape};
use flate2::read::GzDecoder;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Magic of a u8 IDX file with `ndim` dimensions: 0x0000_08_ndim.
const fn magic_u8(ndim: u32) -> u32 {
    0x0800 | ndim
}

/// A u8 IDX array: its dimensions and its data in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Reads one u8 IDX file with `ndim` dimensions; gzip is detected from the content.
pub fn read_idx(path: &Path, ndim: u32) -> Result<IdxArray, DataError> {
    let raw = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(raw.len() * 4);
        GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| DataError::Malformed {
                path: path.into(),
                reason: format!("broken gzip stream ({e})"),
            })?;
        out
    } else {
        raw
    };
    parse_idx(path, &bytes, ndim)
}

fn parse_idx(path: &Path, bytes: &[u8], ndim: u32) -> Result<IdxArray, DataError> {
    let word = |i: usize| -> Option<u32> {
        bytes
            .get(4 * i..4 * i + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let header = 4 * (1 + ndim as usize);
    let Some(magic) = word(0) else {
        return Err(DataError::Truncated {
            path: path.into(),
            expected: header,
            found: bytes.len(),
        });
    };
    if magic != magic_u8(ndim) {
        return Err(DataError::BadMagic {
            path: path.into(),
            found: magic,
            expected: magic_u8(ndim),
        });
    }
    let dims: Vec<usize> = (1..=ndim as usize)
        .map(|i| word(i).map(|d| d as usize))
        .collect::<Option<_>>()
        .ok_or(DataError::Truncated {
            path: path.into(),
            expected: header,
            found: bytes.len(),
        })?;
    let expected: usize = dims.iter().product();
    let found = bytes.len() - header;
    if found != expected {
        return Err(DataError::Truncated {
            path: path.into(),
            expected,
            found,
        });
    }
    Ok(IdxArray {
        dims,
        data: bytes[header..].to_vec(),
    })
}

/// Finds `stem` or `stem.gz` in `folder`.
fn find(folder: &Path, stem: &str) -> Result<PathBuf, DataError> {
    [stem.to_string(), format!("{stem}.gz")]
        .iter()
        .map(|name| folder.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| DataError::MissingFile {
            folder: folder.into(),
            stem: stem.into(),
        })
}

fn read_split(folder: &Path, prefix: &str) -> Result<Split, DataError> {
    let images_path = find(folder, &format!("{prefix}-images-idx3-ubyte"))?;
    let labels_path = find(folder, &format!("{prefix}-labels-idx1-ubyte"))?;
    let images = read_idx(&images_path, 3)?;
    let labels = read_idx(&labels_path, 1)?;
    if images.dims[0] != labels.dims[0] {
        return Err(DataError::Malformed {
            path: labels_path,
            reason: format!(
                "{} labels for {} images in {}",
                labels.dims[0],
                images.dims[0],
                images_path.display()
            ),
        });
    }
    if images.dims[0] == 0 {
        return Err(DataError::Malformed {
            path: images_path,
            reason: "holds no images".into(),
        });
    }
    Ok(Split::from_u8(
        images.data,
        labels.data,
        ImageShape::grey(images.dims[1], images.dims[2]),
    ))
}

/// The four files an IDX folder is read from (train and t10k images and labels, raw or .gz).
pub(crate) fn folder_files(folder: &Path) -> Result<Vec<PathBuf>, DataError> {
    if !folder.is_dir() {
        return Err(DataError::MissingFolder(folder.into()));
    }
    ["train", "t10k"]
        .iter()
        .flat_map(|p| {
            [
                format!("{p}-images-idx3-ubyte"),
                format!("{p}-labels-idx1-ubyte"),
            ]
        })
        .map(|stem| find(folder, &stem))
        .collect()
}

/// Loads a folder of IDX files: `train-*` and `t10k-*` images and labels, raw or `.gz`.
pub fn load_idx_folder(folder: &Path) -> Result<(Split, Split), DataError> {
    if !folder.is_dir() {
        return Err(DataError::MissingFolder(folder.into()));
    }
    Ok((read_split(folder, "train")?, read_split(folder, "t10k")?))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// Writes a u8 IDX file (gzip-compressed when `gz`).
    pub fn write_idx(path: &Path, dims: &[u32], data: &[u8], gz: bool) {
        let mut bytes = magic_u8(dims.len() as u32).to_be_bytes().to_vec();
        for d in dims {
            bytes.extend(d.to_be_bytes());
        }
        bytes.extend(data);
        if gz {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(&bytes).unwrap();
            bytes = enc.finish().unwrap();
        }
        std::fs::write(path, bytes).unwrap();
    }

    /// A tiny IDX folder: `n_train` and `n_test` 28x28 images with a ramp pattern.
    pub fn write_folder(dir: &Path, n_train: u32, n_test: u32, gz: bool) {
        let ext = if gz { ".gz" } else { "" };
        for (prefix, n) in [("train", n_train), ("t10k", n_test)] {
            let pixels: Vec<u8> = (0..n * 784).map(|i| (i % 251) as u8).collect();
            let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
            write_idx(
                &dir.join(format!("{prefix}-images-idx3-ubyte{ext}")),
                &[n, 28, 28],
                &pixels,
                gz,
            );
            write_idx(
                &dir.join(format!("{prefix}-labels-idx1-ubyte{ext}")),
                &[n],
                &labels,
                gz,
            );
        }
    }

    #[test]
    fn reads_raw_and_gz_alike() {
        let raw = tempfile::tempdir().unwrap();
        let gz = tempfile::tempdir().unwrap();
        write_folder(raw.path(), 5, 3, false);
        write_folder(gz.path(), 5, 3, true);
        let (a_train, a_test) = load_idx_folder(raw.path()).unwrap();
        let (b_train, b_test) = load_idx_folder(gz.path()).unwrap();
        assert_eq!(a_train.len(), 5);
        assert_eq!(a_test.len(), 3);
        assert_eq!(a_train, b_train);
        assert_eq!(a_test.labels(), b_test.labels());
        assert_eq!(a_train.levels().map(<[u8]>::len), Some(5 * 28 * 28));
        let first = a_train.image(0);
        assert_eq!(first[1], 1.0 / 255.0);
        assert_eq!(first[250], 250.0 / 255.0);
    }

    #[test]
    fn truncated_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        write_folder(dir.path(), 5, 3, false);
        let p = dir.path().join("train-images-idx3-ubyte");
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 100]).unwrap();
        let err = load_idx_folder(dir.path()).unwrap_err();
        assert!(matches!(err, DataError::Truncated { .. }), "{err}");
        assert!(err.to_string().contains("train-images-idx3-ubyte"));
    }

    #[test]
    fn wrong_magic_is_named() {
        let dir = tempfile::tempdir().unwrap();
        write_folder(dir.path(), 5, 3, false);
        std::fs::write(dir.path().join("t10k-labels-idx1-ubyte"), b"hello world").unwrap();
        let err = load_idx_folder(dir.path()).unwrap_err();
        assert!(matches!(err, DataError::BadMagic { .. }), "{err}");
        assert!(err.to_string().contains("t10k-labels-idx1-ubyte"));
    }

    #[test]
    fn missing_folder_and_file() {
        let err = load_idx_folder(Path::new("/definitely/not/here")).unwrap_err();
        assert!(matches!(err, DataError::MissingFolder(_)));
        let dir = tempfile::tempdir().unwrap();
        let err = load_idx_folder(dir.path()).unwrap_err();
        assert!(err.to_string().contains("train-images-idx3-ubyte"), "{err}");
    }
}
