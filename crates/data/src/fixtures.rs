//! Test fixtures: an hf-hub cache laid out as hf-hub writes it (`refs/<revision>` names a
//! commit, `snapshots/<commit>/` holds the files), with a parquet conversion written here, so
//! tests read Hub datasets without the network.

use image::{DynamicImage, GrayImage, ImageOutputFormat, RgbImage};
use polars::prelude::*;
use std::path::{Path, PathBuf};

/// The commit the fake `refs/convert/parquet` points at.
const COMMIT: &str = "89abcdef0123456789abcdef0123456789abcdef";

/// One dataset repository in a fake hf-hub cache.
#[derive(Debug, Clone)]
pub struct FakeHubRepo {
    /// `owner/name`.
    pub repo_id: String,
    /// The config folder of the parquet conversion.
    pub config: String,
    /// The name of the column of {bytes, path} image structs.
    pub image_column: String,
    /// The name of the integer label column; None writes no labels.
    pub label_column: Option<String>,
}

impl FakeHubRepo {
    /// A repository with the Hub's usual column names, `image` and `label`.
    pub fn new(repo_id: &str, config: &str) -> Self {
        Self {
            repo_id: repo_id.into(),
            config: config.into(),
            image_column: "image".into(),
            label_column: Some("label".into()),
        }
    }

    /// Writes `images` and `labels` as shard 0 of `split` into `cache`, with the ref that makes
    /// hf-hub (and vaelab) find it; returns the parquet file.
    pub fn write(
        &self,
        cache: &Path,
        split: &str,
        images: &[DynamicImage],
        labels: &[i64],
    ) -> PathBuf {
        let file = self.shard(cache, split);
        let mut df = self.frame(images, labels);
        let out = std::fs::File::create(&file).expect("parquet file");
        ParquetWriter::new(out).finish(&mut df).expect("parquet");
        file
    }

    /// Writes already encoded images (PNG or JPEG bytes) as shard 0 of `split`, as [`write`].
    ///
    /// [`write`]: FakeHubRepo::write
    pub fn write_encoded(
        &self,
        cache: &Path,
        split: &str,
        encoded: &[Vec<u8>],
        labels: &[i64],
    ) -> PathBuf {
        let file = self.shard(cache, split);
        let mut df = self.frame_of(encoded, labels);
        let out = std::fs::File::create(&file).expect("parquet file");
        ParquetWriter::new(out).finish(&mut df).expect("parquet");
        file
    }

    fn shard(&self, cache: &Path, split: &str) -> PathBuf {
        let (owner, name) = hf_hub::split_id(&self.repo_id);
        let repo = cache.join(format!("datasets--{owner}--{name}"));
        let refs = repo.join("refs/refs/convert/parquet");
        std::fs::create_dir_all(refs.parent().expect("refs folder")).expect("refs folder");
        std::fs::write(&refs, COMMIT).expect("ref");
        let file = repo
            .join("snapshots")
            .join(COMMIT)
            .join(&self.config)
            .join(split)
            .join("0000.parquet");
        std::fs::create_dir_all(file.parent().expect("split folder")).expect("split folder");
        file
    }

    fn frame(&self, images: &[DynamicImage], labels: &[i64]) -> DataFrame {
        let pngs: Vec<Vec<u8>> = images.iter().map(png).collect();
        self.frame_of(&pngs, labels)
    }

    fn frame_of(&self, pngs: &[Vec<u8>], labels: &[i64]) -> DataFrame {
        let n = pngs.len();
        let bytes = Series::new(
            "bytes".into(),
            pngs.iter().map(Vec::as_slice).collect::<Vec<_>>(),
        );
        let paths = Series::new("path".into(), vec![None::<&str>; n]);
        let image =
            StructChunked::from_series(self.image_column.as_str().into(), n, [bytes, paths].iter())
                .expect("image struct")
                .into_series();
        let mut columns = vec![image.into()];
        if let Some(l) = &self.label_column {
            columns.push(Series::new(l.as_str().into(), labels).into());
        }
        DataFrame::new(n, columns).expect("frame")
    }
}

/// PNG bytes of `img`.
pub fn png(img: &DynamicImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, ImageOutputFormat::Png).expect("png");
    out.into_inner()
}

/// A deterministic test image `i` of `width` × `height`: stripes that move with `i`, in colour
/// (each channel its own pattern) or grey.
pub fn pattern(i: usize, width: u32, height: u32, rgb: bool) -> DynamicImage {
    let v = |x: u32, y: u32, c: u32| -> u8 {
        if (y as usize + i + c as usize).is_multiple_of(5) {
            255
        } else {
            ((x * 7 + c * 50) % 200) as u8
        }
    };
    if rgb {
        DynamicImage::ImageRgb8(RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([v(x, y, 0), v(x, y, 1), v(x, y, 2)])
        }))
    } else {
        DynamicImage::ImageLuma8(GrayImage::from_fn(width, height, |x, y| {
            image::Luma([v(x, y, 0)])
        }))
    }
}
