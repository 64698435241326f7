//! Image datasets through hf-hub: the Hub's parquet conversion (`refs/convert/parquet`) of any
//! image dataset (MNIST and Fashion-MNIST included), read from the local cache first and
//! downloaded only when allowed.

use crate::cache::{self, Identity};
use crate::{DataError, Dataset, ImageShape, Split};
use hf_hub::repository::RepoTreeEntry;
use hf_hub::{HFClientBuilder, HFClientSync, HFError};
use image::imageops::FilterType;
use polars::prelude::*;
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The Hub's parquet conversion lives on this revision.
const PARQUET_REVISION: &str = "refs/convert/parquet";

/// What `hub:` accepts, for error messages.
const HUB_FORM: &str = "hub:<owner>/<name>[/<config>] with letters, digits, `.`, `_` and `-` (e.g. hub:uoft-cs/cifar10)";

/// A Hub dataset repository and, optionally, which of its configs to read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HubRepo {
    /// `owner/name`.
    pub repo_id: String,
    /// The config (a folder of the parquet conversion); by default the only one.
    pub config: Option<String>,
}

impl HubRepo {
    /// LeCun's MNIST as the Hub has it.
    pub fn mnist() -> Self {
        Self {
            repo_id: "ylecun/mnist".into(),
            config: Some("mnist".into()),
        }
    }

    /// Zalando's Fashion-MNIST as the Hub has it.
    pub fn fashion_mnist() -> Self {
        Self {
            repo_id: "zalando-datasets/fashion_mnist".into(),
            config: Some("fashion_mnist".into()),
        }
    }
}

impl std::fmt::Display for HubRepo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.config {
            Some(c) => write!(f, "{}/{c}", self.repo_id),
            None => f.write_str(&self.repo_id),
        }
    }
}

impl std::str::FromStr for HubRepo {
    type Err = String;

    fn from_str(id: &str) -> Result<Self, String> {
        let parts: Vec<&str> = id.split('/').collect();
        let ok = |p: &&str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        };
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(ok) {
            return Err(format!(
                "dataset \"hub:{id}\" is not a Hub dataset id; allowed: {HUB_FORM}"
            ));
        }
        Ok(Self {
            repo_id: format!("{}/{}", parts[0], parts[1]),
            config: parts.get(2).map(|c| c.to_string()),
        })
    }
}

/// Keys that say how to read a Hub dataset's parquet files; all optional.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct HubColumns {
    /// The column of encoded images; by default the one column of {bytes, path} structs.
    pub image_column: Option<String>,
    /// The column of integer labels; by default `label`, else `labels`, else none.
    pub label_column: Option<String>,
    /// Resize every image to this square side (shorter side to the side with a triangle
    /// filter, then a centre crop); without it every image must have the same size.
    pub image_size: Option<usize>,
}

/// True when `HF_HUB_OFFLINE` asks for no network.
pub(crate) fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// Loads `repo` (called `name` in messages) from the hf-hub cache (`cache_dir`, else
/// `HF_HUB_CACHE` / `HF_HOME/hub` / `~/.cache/huggingface/hub`), downloading its parquet files
/// when the cache lacks them and `download` allows.
pub fn load_from_hub(
    name: &str,
    repo: &HubRepo,
    columns: &HubColumns,
    cache_dir: Option<&Path>,
    download: bool,
) -> Result<Dataset, DataError> {
    let mut builder = HFClientBuilder::new();
    if let Some(dir) = cache_dir {
        builder = builder.cache_dir(dir);
    }
    let client = builder.build().map_err(hub_err)?;
    let cache = client.cache_dir().to_path_buf();
    let client = HFClientSync::from_inner(client).map_err(hub_err)?;
    let files = match cached(&cache, repo) {
        Some(Ok(files)) => files,
        Some(Err(why)) if !download => return Err(DataError::Hub(why)),
        None if !download => {
            return Err(DataError::Hub(format!(
                "{repo} is not in the hf-hub cache {} (no {PARQUET_REVISION} snapshot) and downloads are off (HF_HUB_OFFLINE)",
                cache.display()
            )))
        }
        _ => fetch(&client, repo)?,
    };
    let sources: Vec<PathBuf> = files.train.iter().chain(&files.test).cloned().collect();
    let what = format!(
        "hub {repo} image_column={:?} label_column={:?} image_size={:?}",
        columns.image_column, columns.label_column, columns.image_size
    );
    let identity = Identity::of(what, &sources)?;
    let (train, test, cache) =
        cache::load_or_decode(cache::cache_dir().as_deref(), name, &identity, || {
            let train = read_split(name, &files.train, columns)?;
            let test = read_split(name, &files.test, columns)?;
            agree(name, &files.test[0], train, test)
        })?;
    let origin = format!("hf-hub {repo} ({})", files.train[0].display());
    Ok(Dataset::new(name, origin, train, test).with_cache(cache))
}

fn hub_err(e: HFError) -> DataError {
    DataError::Hub(e.to_string())
}

/// The parquet shards of the train and test splits of one config.
#[derive(Debug, PartialEq)]
struct SplitFiles<P> {
    train: Vec<P>,
    test: Vec<P>,
}

/// The split folders read as "train", then as "test", in order of preference.
const TRAIN_SPLITS: [&str; 2] = ["train", "partial-train"];
const TEST_SPLITS: [&str; 4] = ["test", "partial-test", "validation", "partial-validation"];

/// Picks the config and its train and test shards among the paths of the parquet conversion
/// (`<config>/<split>/<shard>.parquet`).
fn pick_files(repo: &HubRepo, paths: &[String]) -> Result<SplitFiles<String>, String> {
    let mut configs: BTreeMap<&str, BTreeMap<&str, Vec<String>>> = BTreeMap::new();
    for p in paths {
        if let [config, split, shard] = p.split('/').collect::<Vec<_>>()[..] {
            if shard.ends_with(".parquet") {
                let shards = configs.entry(config).or_default().entry(split).or_default();
                shards.push(p.clone());
            }
        }
    }
    let names = |keys: Vec<&str>| keys.join(", ");
    let id = &repo.repo_id;
    let (config, splits) = match &repo.config {
        Some(c) => configs.get_key_value(c.as_str()).ok_or_else(|| {
            format!(
                "{id} has no config `{c}` in its parquet conversion; it has: {}",
                names(configs.keys().copied().collect())
            )
        })?,
        None if configs.len() == 1 => configs.iter().next().expect("one config"),
        None if configs.is_empty() => {
            return Err(format!(
                "{id}'s parquet conversion holds no <config>/<split>/*.parquet files"
            ))
        }
        None => {
            return Err(format!(
                "{id} has {} configs ({}); name one: dataset = \"hub:{id}/<config>\"",
                configs.len(),
                names(configs.keys().copied().collect())
            ))
        }
    };
    let pick = |wanted: &[&str]| -> Result<Vec<String>, String> {
        let mut shards = wanted
            .iter()
            .find_map(|w| splits.get(w))
            .cloned()
            .ok_or_else(|| {
                format!(
                    "{id}/{config} has splits {}; vaelab reads {} as train and the first of {} as test",
                    names(splits.keys().copied().collect()),
                    TRAIN_SPLITS.join(" or "),
                    TEST_SPLITS.join(", ")
                )
            })?;
        shards.sort();
        Ok(shards)
    };
    Ok(SplitFiles {
        train: pick(&TRAIN_SPLITS)?,
        test: pick(&TEST_SPLITS)?,
    })
}

/// The repository's parquet files in the hf-hub cache (`refs/<revision>` names the commit,
/// `snapshots/<commit>/` holds the files): None when nothing is cached.
fn cached(cache: &Path, repo: &HubRepo) -> Option<Result<SplitFiles<PathBuf>, String>> {
    let (owner, name) = hf_hub::split_id(&repo.repo_id);
    let folder = cache.join(format!("datasets--{owner}--{name}"));
    let commit = std::fs::read_to_string(folder.join("refs").join(PARQUET_REVISION)).ok()?;
    let snapshot = folder.join("snapshots").join(commit.trim());
    let mut paths = Vec::new();
    walk(&snapshot, "", &mut paths);
    let within = |v: Vec<String>| v.iter().map(|p| snapshot.join(p)).collect();
    Some(
        pick_files(repo, &paths)
            .map(|f| SplitFiles {
                train: within(f.train),
                test: within(f.test),
            })
            .map_err(|why| format!("in the hf-hub cache {}: {why}", snapshot.display())),
    )
}

/// Collects the files under `dir` as `/`-separated paths relative to the walk's root.
fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let path = entry.path();
        if path.is_dir() {
            walk(&path, &rel, out);
        } else if path.is_file() {
            out.push(rel);
        }
    }
}

/// Lists the parquet conversion on the Hub and downloads the chosen shards into the cache.
fn fetch(client: &HFClientSync, repo: &HubRepo) -> Result<SplitFiles<PathBuf>, DataError> {
    let (owner, name) = hf_hub::split_id(&repo.repo_id);
    let hub = client.dataset(owner, name);
    let entries = hub
        .list_tree()
        .revision(PARQUET_REVISION)
        .recursive(true)
        .send()
        .map_err(hub_err)?;
    let paths: Vec<String> = entries
        .into_iter()
        .filter_map(|e| match e {
            RepoTreeEntry::File { path, .. } => Some(path),
            _ => None,
        })
        .collect();
    let files = pick_files(repo, &paths).map_err(DataError::Hub)?;
    let get = |shards: Vec<String>| -> Result<Vec<PathBuf>, DataError> {
        shards
            .into_iter()
            .map(|p| {
                hub.download_file()
                    .filename(p)
                    .revision(PARQUET_REVISION)
                    .send()
                    .map_err(hub_err)
            })
            .collect()
    };
    Ok(SplitFiles {
        train: get(files.train)?,
        test: get(files.test)?,
    })
}

/// One decoded image: grey (one byte per pixel) or RGB (three, interleaved).
struct Decoded {
    width: u32,
    height: u32,
    rgb: bool,
    bytes: Vec<u8>,
}

/// A split's pixels as they are decoded, CHW in the channel count of the images so far (a
/// colour image after grey ones widens the grey ones to three planes).
struct RawSplit {
    pixels: Vec<u8>,
    channels: usize,
    /// Width and height of the first image (none yet: no image); every other must match.
    size: Option<(u32, u32)>,
    labels: Vec<u8>,
    image_column: String,
}

impl RawSplit {
    fn plane(&self) -> usize {
        self.size.map_or(0, |(w, h)| w as usize * h as usize)
    }

    /// Every image so far as three planes (a grey image repeated), and three from now on.
    fn widen(&mut self) {
        if self.channels == 3 {
            return;
        }
        let mut wide = Vec::with_capacity(self.pixels.len() * 3);
        for img in self.pixels.chunks_exact(self.plane().max(1)) {
            (0..3).for_each(|_| wide.extend_from_slice(img));
        }
        self.pixels = wide;
        self.channels = 3;
    }

    /// Appends one decoded image as CHW planes; the image is freed here.
    fn push(&mut self, img: Decoded) {
        if self.size.is_none() {
            self.size = Some((img.width, img.height));
            self.channels = if img.rgb { 3 } else { 1 };
        }
        if img.rgb {
            self.widen();
        }
        match (img.rgb, self.channels) {
            (true, _) => {
                (0..3).for_each(|c| self.pixels.extend(img.bytes.iter().skip(c).step_by(3)))
            }
            (false, 3) => (0..3).for_each(|_| self.pixels.extend_from_slice(&img.bytes)),
            (false, _) => self.pixels.extend_from_slice(&img.bytes),
        }
    }
}

/// Images decoded at once: enough to keep every core busy, few enough that the decoded copies
/// beside the split's buffer stay small (2,048 CelebA images are 25 MB).
const DECODE_CHUNK: usize = 2048;

/// Decodes PNG/JPEG bytes; with `size`, resizes to size × size the way torchvision's
/// `Resize(size)` + `CenterCrop(size)` does (shorter side to `size`, triangle filter, centre
/// crop). Alpha is dropped; colour stays colour, grey stays grey.
fn decode(bytes: &[u8], size: Option<usize>) -> Result<Decoded, String> {
    let img = image::load_from_memory(bytes).map_err(|e| format!("cannot decode ({e})"))?;
    let img = match size.map(|s| s as u32) {
        Some(s) if (img.width(), img.height()) != (s, s) => {
            img.resize_to_fill(s, s, FilterType::Triangle)
        }
        _ => img,
    };
    let (width, height) = (img.width(), img.height());
    let rgb = img.color().has_color();
    // Both conversions hand an image already in that layout back without copying.
    let bytes = if rgb {
        img.into_rgb8().into_raw()
    } else {
        img.into_luma8().into_raw()
    };
    Ok(Decoded {
        width,
        height,
        rgb,
        bytes,
    })
}

/// Reads every shard of one split: the image column (found or named), the labels when there
/// are any (0 when the dataset has none), every image decoded and of one size.
fn read_split(name: &str, files: &[PathBuf], columns: &HubColumns) -> Result<RawSplit, DataError> {
    let mut out = RawSplit {
        pixels: Vec::new(),
        channels: 1,
        size: None,
        labels: Vec::new(),
        image_column: String::new(),
    };
    for file in files {
        let column_err = |column: &str, reason: String| DataError::Column {
            dataset: name.into(),
            file: file.clone(),
            column: column.into(),
            reason,
        };
        let f = std::fs::File::open(file).map_err(|e| DataError::io(file, e))?;
        let df = ParquetReader::new(f)
            .finish()
            .map_err(|e| DataError::Malformed {
                path: file.clone(),
                reason: format!("not a readable parquet file ({e})"),
            })?;
        let image_column = image_column(&df, columns.image_column.as_deref())
            .map_err(|(c, r)| column_err(&c, r))?;
        let binary = image_bytes(&df, &image_column).map_err(|r| column_err(&image_column, r))?;
        let bytes: Vec<Option<&[u8]>> = binary.iter().collect();
        // Decoded a chunk at a time straight into the split's CHW buffer, sized once the first
        // image gives the shape: the decoded copies never pile up beside the buffer.
        for (c, chunk) in bytes.chunks(DECODE_CHUNK).enumerate() {
            let images: Vec<Decoded> = chunk
                .par_iter()
                .enumerate()
                .map(|(i, b)| {
                    let i = c * DECODE_CHUNK + i;
                    let b = b.ok_or_else(|| format!("row {i} has no image"))?;
                    decode(b, columns.image_size).map_err(|e| format!("row {i}: {e}"))
                })
                .collect::<Result<_, String>>()
                .map_err(|r| column_err(&image_column, r))?;
            for (i, img) in images.into_iter().enumerate() {
                if let Some((w, h)) = out.size.filter(|&s| s != (img.width, img.height)) {
                    return Err(column_err(
                        &image_column,
                        format!(
                            "row {} is {}×{} pixels, the first image {w}×{h}: the images differ in size; set image_size = N to bring every image to N×N (shorter side to N with a triangle filter, then a centre crop)",
                            c * DECODE_CHUNK + i, img.width, img.height
                        ),
                    ));
                }
                if i == 0 && c == 0 {
                    // This file's rows at this size, in the channels the split has after it.
                    let channels = match (img.rgb, out.size) {
                        (true, _) => 3,
                        (false, Some(_)) => out.channels,
                        (false, None) => 1,
                    };
                    let plane = img.width as usize * img.height as usize;
                    out.pixels.reserve_exact(bytes.len() * plane * channels);
                }
                out.push(img);
            }
        }
        let labels = labels(&df, columns.label_column.as_deref(), bytes.len())
            .map_err(|(c, r)| column_err(&c, r))?;
        out.labels.extend(labels);
        out.image_column = image_column;
    }
    if out.size.is_none() {
        return Err(DataError::Malformed {
            path: files[0].clone(),
            reason: "holds no images".into(),
        });
    }
    Ok(out)
}

/// True for a column of encoded images: the Hub's {bytes, path} structs, or plain binary.
fn holds_images(dtype: &DataType) -> bool {
    match dtype {
        DataType::Struct(fields) => fields
            .iter()
            .any(|f| f.name() == "bytes" && f.dtype() == &DataType::Binary),
        DataType::Binary => true,
        _ => false,
    }
}

/// The column list of `df` with dtypes, for error messages.
fn column_list(df: &DataFrame) -> String {
    df.columns()
        .iter()
        .map(|c| format!("{} ({})", c.name(), c.dtype()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The image column: the one named, or the only column of encoded images.
fn image_column(df: &DataFrame, named: Option<&str>) -> Result<String, (String, String)> {
    if let Some(name) = named {
        let c = df.column(name).map_err(|_| {
            (
                name.to_string(),
                format!("no such column; the columns are {}", column_list(df)),
            )
        })?;
        if !holds_images(c.dtype()) {
            return Err((
                name.to_string(),
                format!(
                    "holds {}, not encoded images (a struct with binary `bytes`, or binary)",
                    c.dtype()
                ),
            ));
        }
        return Ok(name.to_string());
    }
    let found: Vec<&str> = df
        .columns()
        .iter()
        .filter(|c| holds_images(c.dtype()))
        .map(|c| c.name().as_str())
        .collect();
    match found[..] {
        [one] => Ok(one.to_string()),
        [] => Err((
            "image_column".into(),
            format!(
                "no column holds encoded images (a struct with binary `bytes`, or binary); the columns are {}",
                column_list(df)
            ),
        )),
        _ => Err((
            "image_column".into(),
            format!(
                "several columns hold images ({}); name one with image_column",
                found.join(", ")
            ),
        )),
    }
}

/// The encoded bytes of the image column, one row per image.
fn image_bytes(df: &DataFrame, column: &str) -> Result<BinaryChunked, String> {
    let c = df.column(column).map_err(|e| e.to_string())?;
    let err = |e: PolarsError| e.to_string();
    let series = match c.dtype() {
        DataType::Struct(_) => c
            .struct_()
            .and_then(|s| s.field_by_name("bytes"))
            .map_err(err)?,
        _ => c.as_materialized_series().clone(),
    };
    series.binary().cloned().map_err(err)
}

/// The labels: the named column, else `label` or `labels` when present, else zeros. Labels
/// must be integers from 0 to 255.
fn labels(df: &DataFrame, named: Option<&str>, n: usize) -> Result<Vec<u8>, (String, String)> {
    let column = match named {
        Some(name) => {
            if df.column(name).is_err() {
                return Err((
                    name.to_string(),
                    format!("no such column; the columns are {}", column_list(df)),
                ));
            }
            name
        }
        None => match ["label", "labels"]
            .into_iter()
            .find(|c| df.column(c).is_ok_and(|c| c.dtype().is_integer()))
        {
            Some(c) => c,
            None => return Ok(vec![0; n]),
        },
    };
    let fail = |reason: String| (column.to_string(), reason);
    let values = df
        .column(column)
        .ok()
        .filter(|c| c.dtype().is_integer())
        .and_then(|c| c.cast(&DataType::Int64).ok())
        .ok_or_else(|| fail("holds no integer labels".into()))?;
    let values = values.i64().map_err(|e| fail(e.to_string()))?.clone();
    values
        .iter()
        .enumerate()
        .map(|(i, l)| {
            l.and_then(|l| u8::try_from(l).ok()).ok_or_else(|| {
                fail(format!(
                    "row {i} has label {l:?}; labels must be integers from 0 to 255"
                ))
            })
        })
        .collect()
}

/// Settles the dataset's shape: train and test must have one image size, and a dataset with
/// any colour image is RGB throughout (grey images repeated on the three channels).
fn agree(
    name: &str,
    test_file: &Path,
    mut train: RawSplit,
    mut test: RawSplit,
) -> Result<(Split, Split), DataError> {
    let ((w, h), (tw, th)) = (
        train.size.unwrap_or_default(),
        test.size.unwrap_or_default(),
    );
    if (w, h) != (tw, th) {
        return Err(DataError::Column {
            dataset: name.into(),
            file: test_file.into(),
            column: test.image_column,
            reason: format!("test images are {tw}×{th} pixels, train images {w}×{h}; set image_size = N to bring every image to N×N"),
        });
    }
    // One channel count for the dataset: colour if any image of either split is.
    if train.channels == 3 || test.channels == 3 {
        train.widen();
        test.widen();
    }
    let shape = ImageShape {
        channels: train.channels,
        height: h as usize,
        width: w as usize,
    };
    let split = |r: RawSplit| Split::from_u8(r.pixels, r.labels, shape);
    Ok((split(train), split(test)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{pattern, FakeHubRepo};
    use crate::{Binarize, SplitKind};
    use image::DynamicImage;

    fn images(n: usize, w: u32, h: u32, rgb: bool) -> Vec<DynamicImage> {
        (0..n).map(|i| pattern(i, w, h, rgb)).collect()
    }

    fn labels(n: usize) -> Vec<i64> {
        (0..n as i64).map(|i| i % 10).collect()
    }

    fn repo(id: &str) -> HubRepo {
        id.parse().unwrap()
    }

    fn load(cache: &Path, id: &str, columns: &HubColumns) -> Result<Dataset, DataError> {
        load_from_hub(&format!("hub:{id}"), &repo(id), columns, Some(cache), false)
    }

    #[test]
    fn reads_fashion_mnist_from_the_cache_offline() {
        let cache = tempfile::tempdir().unwrap();
        let fake = FakeHubRepo::new("zalando-datasets/fashion_mnist", "fashion_mnist");
        fake.write(cache.path(), "train", &images(6, 28, 28, false), &labels(6));
        fake.write(cache.path(), "test", &images(3, 28, 28, false), &labels(3));
        let d = load_from_hub(
            "fashion-mnist",
            &HubRepo::fashion_mnist(),
            &HubColumns::default(),
            Some(cache.path()),
            false,
        )
        .unwrap();
        let train = d.split(SplitKind::Train, Binarize::None);
        assert_eq!((train.len(), train.shape()), (6, ImageShape::grey(28, 28)));
        assert_eq!(train.labels()[5], 5);
        let first = pattern(1, 28, 28, false).into_luma8();
        assert_eq!(
            train.image(1)[3],
            f32::from(first.get_pixel(3, 0)[0]) / 255.0
        );
        assert_eq!(d.name(), "fashion-mnist");
    }

    /// Colour PNGs keep their three channels, stored CHW, and labels follow the rows.
    #[test]
    fn colour_dataset_loads_as_three_channels_chw() {
        let cache = tempfile::tempdir().unwrap();
        let fake = FakeHubRepo {
            image_column: "img".into(),
            ..FakeHubRepo::new("uoft-cs/cifar10", "plain_text")
        };
        let train = images(5, 32, 32, true);
        fake.write(cache.path(), "train", &train, &labels(5));
        fake.write(cache.path(), "test", &images(2, 32, 32, true), &[7, 3]);
        let d = load(cache.path(), "uoft-cs/cifar10", &HubColumns::default()).unwrap();
        let shape = ImageShape {
            channels: 3,
            height: 32,
            width: 32,
        };
        assert_eq!(d.shape(), shape);
        let s = d.split(SplitKind::Train, Binarize::None);
        assert_eq!(s.len(), 5);
        let rgb = train[4].to_rgb8();
        for (c, (x, y)) in [(0, (3, 1)), (1, (30, 2)), (2, (5, 31))] {
            let at = c * 32 * 32 + y * 32 + x;
            let want = f32::from(rgb.get_pixel(x as u32, y as u32)[c]) / 255.0;
            assert_eq!(s.image(4)[at], want, "channel {c} at ({x}, {y})");
        }
        assert_eq!(d.split(SplitKind::Test, Binarize::None).labels(), &[7, 3]);
    }

    #[test]
    fn a_grey_image_in_a_colour_dataset_is_repeated_on_three_channels() {
        let cache = tempfile::tempdir().unwrap();
        let fake = FakeHubRepo::new("a/mixed", "default");
        let mut train = images(2, 8, 8, true);
        train.push(pattern(0, 8, 8, false));
        fake.write(cache.path(), "train", &train, &labels(3));
        fake.write(cache.path(), "test", &images(1, 8, 8, false), &labels(1));
        let d = load(cache.path(), "a/mixed", &HubColumns::default()).unwrap();
        assert_eq!(d.shape().channels, 3);
        let grey = d.split(SplitKind::Test, Binarize::None).image(0);
        assert_eq!(&grey[..64], &grey[64..128]);
        assert_eq!(&grey[..64], &grey[128..]);
    }

    /// Grey images first, then a colour one in the same split: the grey ones already decoded are
    /// widened to three planes, and every pixel is where CHW puts it (read from the image).
    #[test]
    fn a_colour_image_after_grey_ones_widens_them_in_place() {
        let cache = tempfile::tempdir().unwrap();
        let fake = FakeHubRepo::new("a/late", "default");
        let train = vec![
            pattern(0, 8, 8, false),
            pattern(1, 8, 8, false),
            pattern(2, 8, 8, true),
        ];
        fake.write(cache.path(), "train", &train, &labels(3));
        fake.write(cache.path(), "test", &images(1, 8, 8, false), &labels(1));
        let d = load(cache.path(), "a/late", &HubColumns::default()).unwrap();
        assert_eq!(d.shape().channels, 3);
        let split = d.split(SplitKind::Train, Binarize::None);
        for (i, img) in train.iter().enumerate() {
            let rgb = img.to_rgb8();
            let got = split.image(i);
            for c in 0..3 {
                for y in 0..8 {
                    for x in 0..8 {
                        let want = rgb.get_pixel(x, y)[c] as f32 / 255.0;
                        assert_eq!(
                            got[c * 64 + y as usize * 8 + x as usize],
                            want,
                            "{i} {c} {x} {y}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn mixed_sizes_without_image_size_name_the_dataset_and_column() {
        let cache = tempfile::tempdir().unwrap();
        let fake = FakeHubRepo::new("a/sizes", "default");
        let mut train = images(2, 32, 32, true);
        train.push(pattern(2, 40, 30, true));
        fake.write(cache.path(), "train", &train, &labels(3));
        fake.write(cache.path(), "test", &images(1, 32, 32, true), &labels(1));
        let err = load(cache.path(), "a/sizes", &HubColumns::default()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, DataError::Column { .. }), "{msg}");
        for needle in ["hub:a/sizes", "`image`", "row 2", "40×30", "image_size"] {
            assert!(msg.contains(needle), "{needle} missing from: {msg}");
        }
        // With image_size every image is resized (shorter side) and centre-cropped.
        let columns = HubColumns {
            image_size: Some(16),
            ..HubColumns::default()
        };
        let d = load(cache.path(), "a/sizes", &columns).unwrap();
        assert_eq!((d.shape().height, d.shape().width), (16, 16));
    }

    #[test]
    fn missing_image_or_label_column_names_it() {
        let cache = tempfile::tempdir().unwrap();
        let fake = FakeHubRepo::new("a/cols", "default");
        fake.write(cache.path(), "train", &images(2, 8, 8, true), &labels(2));
        fake.write(cache.path(), "test", &images(1, 8, 8, true), &labels(1));
        for columns in [
            HubColumns {
                image_column: Some("picture".into()),
                ..HubColumns::default()
            },
            HubColumns {
                label_column: Some("picture".into()),
                ..HubColumns::default()
            },
        ] {
            let msg = load(cache.path(), "a/cols", &columns)
                .unwrap_err()
                .to_string();
            for needle in ["hub:a/cols", "`picture`", "no such column", "image (struct"] {
                assert!(msg.contains(needle), "{needle} missing from: {msg}");
            }
        }
    }

    #[test]
    fn no_label_column_gives_zeros() {
        let cache = tempfile::tempdir().unwrap();
        let fake = FakeHubRepo {
            label_column: None,
            ..FakeHubRepo::new("a/faces", "default")
        };
        fake.write(cache.path(), "train", &images(2, 8, 8, true), &[]);
        fake.write(cache.path(), "validation", &images(1, 8, 8, true), &[]);
        let d = load(cache.path(), "a/faces", &HubColumns::default()).unwrap();
        assert_eq!(d.split(SplitKind::Train, Binarize::None).labels(), &[0, 0]);
        assert_eq!(d.split(SplitKind::Test, Binarize::None).len(), 1);
    }

    #[test]
    fn configs_are_picked_or_named() {
        let paths: Vec<String> = [
            "a/train/0001.parquet",
            "a/train/0000.parquet",
            "a/test/0000.parquet",
            "b/train/0000.parquet",
            "b/validation/0000.parquet",
            "README.md",
        ]
        .map(String::from)
        .to_vec();
        let e = pick_files(&repo("o/n"), &paths).unwrap_err();
        assert!(
            e.contains("2 configs (a, b)") && e.contains("hub:o/n/<config>"),
            "{e}"
        );
        let a = pick_files(&repo("o/n/a"), &paths).unwrap();
        assert_eq!(a.train, ["a/train/0000.parquet", "a/train/0001.parquet"]);
        let b = pick_files(&repo("o/n/b"), &paths).unwrap();
        assert_eq!(b.test, ["b/validation/0000.parquet"]);
        let e = pick_files(&repo("o/n/c"), &paths).unwrap_err();
        assert!(e.contains("no config `c`") && e.contains("a, b"), "{e}");
    }

    #[test]
    fn empty_cache_without_download_is_an_error() {
        let cache = tempfile::tempdir().unwrap();
        let err = load(cache.path(), "ylecun/mnist", &HubColumns::default()).unwrap_err();
        assert!(matches!(err, DataError::Hub(_)), "{err}");
        assert!(err.to_string().contains("HF_HUB_OFFLINE"), "{err}");
    }

    #[test]
    fn corrupt_cached_file_is_an_error_not_a_panic() {
        let cache = tempfile::tempdir().unwrap();
        let fake = FakeHubRepo::new("ylecun/mnist", "mnist");
        fake.write(cache.path(), "train", &images(2, 28, 28, false), &labels(2));
        let test = fake.write(cache.path(), "test", &images(2, 28, 28, false), &labels(2));
        std::fs::write(test, b"garbage").unwrap();
        let err = load(cache.path(), "ylecun/mnist", &HubColumns::default()).unwrap_err();
        assert!(matches!(err, DataError::Malformed { .. }), "{err}");
    }
}
