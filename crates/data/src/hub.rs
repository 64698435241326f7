//! MNIST and Fashion-MNIST through hf-hub: the Hub's parquet conversion (PNG images + labels),
//! read from the local cache first and downloaded only when allowed.

use crate::{DataError, Dataset, Split};
use hf_hub::{HFClientBuilder, HFError};
use polars::prelude::*;
use std::path::{Path, PathBuf};

/// The Hub's parquet conversion lives on this revision.
const PARQUET_REVISION: &str = "refs/convert/parquet";

/// A dataset vaelab knows how to fetch from the Hugging Face Hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HubDataset {
    Mnist,
    FashionMnist,
}

impl HubDataset {
    /// The Hub repository id.
    pub fn repo_id(self) -> &'static str {
        match self {
            HubDataset::Mnist => "ylecun/mnist",
            HubDataset::FashionMnist => "zalando-datasets/fashion_mnist",
        }
    }

    /// The parquet file of a split inside the repository.
    pub fn file(self, split: &str) -> String {
        let config = match self {
            HubDataset::Mnist => "mnist",
            HubDataset::FashionMnist => "fashion_mnist",
        };
        format!("{config}/{split}/0000.parquet")
    }

    fn name(self) -> &'static str {
        match self {
            HubDataset::Mnist => "mnist",
            HubDataset::FashionMnist => "fashion-mnist",
        }
    }
}

/// True when `HF_HUB_OFFLINE` asks for no network.
pub(crate) fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// Loads `which` from the hf-hub cache (`cache_dir`, else `HF_HUB_CACHE` / `HF_HOME/hub` /
/// `~/.cache/huggingface/hub`), downloading the two parquet files when `download` allows.
pub fn load_from_hub(
    which: HubDataset,
    cache_dir: Option<&Path>,
    download: bool,
) -> Result<Dataset, DataError> {
    let mut builder = HFClientBuilder::new();
    if let Some(dir) = cache_dir {
        builder = builder.cache_dir(dir);
    }
    let client = builder.build_sync().map_err(hub_err)?;
    let (owner, name) = hf_hub::split_id(which.repo_id());
    let repo = client.dataset(owner, name);
    let fetch = |split: &str| -> Result<PathBuf, DataError> {
        let request = repo
            .download_file()
            .filename(which.file(split))
            .revision(PARQUET_REVISION);
        match request.clone().local_files_only(true).send() {
            Err(HFError::LocalEntryNotFound { .. }) if download => request.send().map_err(hub_err),
            other => other.map_err(hub_err),
        }
    };
    let train_path = fetch("train")?;
    let test_path = fetch("test")?;
    let train = read_parquet_split(&train_path)?;
    let test = read_parquet_split(&test_path)?;
    let origin = format!("hf-hub {} ({})", which.repo_id(), train_path.display());
    Ok(Dataset::new(which.name(), origin, train, test))
}

fn hub_err(e: HFError) -> DataError {
    DataError::Hub(e.to_string())
}

/// Reads one split of the Hub's parquet layout: `image` {bytes: PNG, path} and `label`.
fn read_parquet_split(path: &Path) -> Result<Split, DataError> {
    let malformed = |reason: String| DataError::Malformed {
        path: path.into(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let df = ParquetReader::new(file)
        .finish()
        .map_err(|e| malformed(format!("not a readable parquet file ({e})")))?;
    let polars_err = |e: PolarsError| malformed(format!("not the Hub's MNIST layout ({e})"));
    let images = df
        .column("image")
        .and_then(|c| c.struct_().cloned())
        .and_then(|s| s.field_by_name("bytes"))
        .map_err(polars_err)?;
    let images = images.binary().map_err(polars_err)?;
    let labels = df
        .column("label")
        .and_then(|c| c.cast(&DataType::Int64))
        .map_err(polars_err)?;
    let labels = labels.i64().map_err(polars_err)?;

    let mut pixels = Vec::new();
    let mut shape = None;
    for (i, png_bytes) in images.iter().enumerate() {
        let png_bytes = png_bytes.ok_or_else(|| malformed(format!("row {i} has no image")))?;
        let (img, dims) =
            decode_grey_png(png_bytes).map_err(|reason| malformed(format!("row {i}: {reason}")))?;
        if *shape.get_or_insert(dims) != dims {
            return Err(malformed(format!(
                "row {i} is {dims:?}, earlier rows {shape:?}"
            )));
        }
        pixels.extend(img);
    }
    let labels: Vec<u8> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| {
            l.and_then(|l| u8::try_from(l).ok())
                .ok_or_else(|| malformed(format!("row {i} has no label in 0..=255")))
        })
        .collect::<Result<_, _>>()?;
    let shape = shape.ok_or_else(|| malformed("holds no images".into()))?;
    Ok(Split::from_u8(&pixels, labels, shape))
}

/// Decodes an 8-bit greyscale PNG into its pixels and (rows, cols).
fn decode_grey_png(bytes: &[u8]) -> Result<(Vec<u8>, (usize, usize)), String> {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().map_err(|e| format!("bad PNG ({e})"))?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader
        .next_frame(&mut buf)
        .map_err(|e| format!("bad PNG ({e})"))?;
    if info.color_type != png::ColorType::Grayscale || info.bit_depth != png::BitDepth::Eight {
        return Err(format!(
            "PNG is {:?} {:?}, expected 8-bit greyscale",
            info.color_type, info.bit_depth
        ));
    }
    buf.truncate(info.buffer_size());
    Ok((buf, (info.height as usize, info.width as usize)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_of(pixels: &[u8], w: u32, h: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        enc.write_header()
            .unwrap()
            .write_image_data(pixels)
            .unwrap();
        out
    }

    /// Writes `n` images in the Hub's parquet layout.
    fn write_hub_parquet(path: &Path, n: usize) {
        let pngs: Vec<Vec<u8>> = (0..n)
            .map(|i| {
                let px: Vec<u8> = (0..784).map(|p| ((p + i) % 256) as u8).collect();
                png_of(&px, 28, 28)
            })
            .collect();
        let bytes = Series::new(
            "bytes".into(),
            pngs.iter().map(|v| v.as_slice()).collect::<Vec<_>>(),
        );
        let paths = Series::new("path".into(), vec![None::<&str>; n]);
        let image = StructChunked::from_series("image".into(), n, [bytes, paths].iter())
            .unwrap()
            .into_series();
        let label = Series::new(
            "label".into(),
            (0..n as i64).map(|i| i % 10).collect::<Vec<_>>(),
        );
        let mut df = DataFrame::new(n, vec![image.into(), label.into()]).unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let f = std::fs::File::create(path).unwrap();
        ParquetWriter::new(f).finish(&mut df).unwrap();
    }

    /// Lays out an hf-hub cache the way hf-hub writes it: refs/<revision> holds the commit,
    /// snapshots/<commit>/<file> the data.
    fn fake_cache(cache: &Path, which: HubDataset, n_train: usize, n_test: usize) {
        let (owner, name) = hf_hub::split_id(which.repo_id());
        let repo = cache.join(format!("datasets--{owner}--{name}"));
        let commit = "0123456789abcdef0123456789abcdef01234567";
        let refs = repo.join("refs").join(PARQUET_REVISION);
        std::fs::create_dir_all(refs.parent().unwrap()).unwrap();
        std::fs::write(&refs, commit).unwrap();
        let snap = repo.join("snapshots").join(commit);
        write_hub_parquet(&snap.join(which.file("train")), n_train);
        write_hub_parquet(&snap.join(which.file("test")), n_test);
    }

    #[test]
    fn reads_fashion_mnist_from_the_cache_offline() {
        let cache = tempfile::tempdir().unwrap();
        fake_cache(cache.path(), HubDataset::FashionMnist, 6, 3);
        let d = load_from_hub(HubDataset::FashionMnist, Some(cache.path()), false).unwrap();
        let train = d.split(crate::SplitKind::Train, crate::Binarize::None);
        assert_eq!((train.len(), train.shape()), (6, (28, 28)));
        assert_eq!(train.labels()[5], 5);
        assert_eq!(train.image(1)[0], 1.0 / 255.0);
        assert_eq!(d.name(), "fashion-mnist");
    }

    #[test]
    fn mnist_cache_layout_too() {
        let cache = tempfile::tempdir().unwrap();
        fake_cache(cache.path(), HubDataset::Mnist, 2, 2);
        let d = load_from_hub(HubDataset::Mnist, Some(cache.path()), false).unwrap();
        assert_eq!(
            d.split(crate::SplitKind::Test, crate::Binarize::None).len(),
            2
        );
    }

    #[test]
    fn empty_cache_without_download_is_an_error() {
        let cache = tempfile::tempdir().unwrap();
        let err = load_from_hub(HubDataset::Mnist, Some(cache.path()), false).unwrap_err();
        assert!(matches!(err, DataError::Hub(_)), "{err}");
    }

    #[test]
    fn corrupt_cached_file_is_an_error_not_a_panic() {
        let cache = tempfile::tempdir().unwrap();
        fake_cache(cache.path(), HubDataset::Mnist, 2, 2);
        let snap = cache
            .path()
            .join("datasets--ylecun--mnist/snapshots/0123456789abcdef0123456789abcdef01234567");
        std::fs::write(snap.join(HubDataset::Mnist.file("test")), b"garbage").unwrap();
        let err = load_from_hub(HubDataset::Mnist, Some(cache.path()), false).unwrap_err();
        assert!(matches!(err, DataError::Malformed { .. }), "{err}");
    }
}
