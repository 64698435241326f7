//! `vaelab compress` / `vaelab decompress`: a finished run's model as a lossless image codec
//! (bits-back coding with ANS, `vaelab-codec`), with the rate set beside the run's bits/dim.

use crate::config::{validate, RunKeys};
use crate::output::note;
use anyhow::{anyhow, bail, Context};
use std::path::{Path, PathBuf};
use vaelab_codec::{Coder, File};
use vaelab_data::{read_idx, SplitKind};
use vaelab_track as track;
use vaelab_vae::{ImageShape, TrainConfig};

/// Latent buckets per dimension: 2^16 (each is then far narrower than any posterior's σ).
const BUCKET_BITS: u8 = 16;

/// A run folder's model and how it reads images.
struct RunModel {
    dir: PathBuf,
    cfg: TrainConfig,
    data: vaelab_data::DataSource,
    checkpoint: PathBuf,
    digest: [u8; 32],
}

fn open_run(dir: &Path) -> anyhow::Result<RunModel> {
    let config = dir.join(track::CONFIG);
    if !config.exists() {
        bail!("{}: not a run folder (no {})", dir.display(), track::CONFIG);
    }
    // A sweep's run folder holds its resolved keys without a name: they were checked when
    // the run was planned, and are checked again here.
    let text = std::fs::read_to_string(&config)
        .with_context(|| format!("reading {}", config.display()))?;
    let keys: RunKeys =
        toml::from_str(&text).with_context(|| format!("{}: not a run's keys", config.display()))?;
    validate(&keys).map_err(|(key, value, allowed)| {
        anyhow!(
            "{}: key `{key}` = {value}: allowed {allowed}",
            config.display()
        )
    })?;
    let checkpoint = dir.join(track::CHECKPOINT);
    let hex = track::sha256_of(&checkpoint)
        .with_context(|| format!("{}: the run has no checkpoint", checkpoint.display()))?;
    let mut digest = [0u8; 32];
    for (i, d) in digest.iter_mut().enumerate() {
        *d = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)?;
    }
    Ok(RunModel {
        dir: dir.to_path_buf(),
        cfg: keys.train_config(),
        data: keys.data_source(),
        checkpoint,
        digest,
    })
}

impl RunModel {
    fn coder(&self, image: ImageShape) -> anyhow::Result<Coder> {
        let arch = self.cfg.architecture_for(image);
        Coder::load(
            &self.checkpoint,
            arch,
            self.cfg.data_levels(),
            self.digest,
            BUCKET_BITS,
        )
        .map_err(|e| match e {
            vaelab_codec::CodecError::Candle(c) => anyhow!(
                "{}: the checkpoint does not fit images of {image} ({})",
                self.checkpoint.display(),
                c.to_string().lines().next().unwrap_or_default()
            ),
            other => anyhow!("{}: {other}", self.dir.display()),
        })
    }

    /// The run's summary value of `column`, if it has one.
    fn summary(&self, column: &str) -> Option<f64> {
        let df = track::read_frame(&self.dir.join(track::SUMMARY)).ok()?;
        df.column(column).ok()?.f64().ok()?.get(0)
    }
}

/// Images to code: a raw or gzipped IDX file, or `test` / `test:N`, the run's own test images
/// (binarized as the run evaluates them).
struct Images {
    levels: Vec<u8>,
    shape: ImageShape,
    idx_dims: Vec<u32>,
}

fn read_images(run: &RunModel, spec: &str) -> anyhow::Result<Images> {
    let levels = run.cfg.data_levels();
    let path = Path::new(spec);
    if path.exists() {
        return read_idx_images(path, levels);
    }
    let n = match spec.strip_prefix("test") {
        Some("") => None,
        Some(rest) => Some(
            rest.strip_prefix(':')
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| {
                    anyhow!("IMAGES {spec:?}: `test:N` takes a count of images, e.g. test:1000")
                })?,
        ),
        None => bail!("IMAGES {spec:?}: no such file, and not `test` or `test:N`"),
    };
    let data = vaelab_data::load(&run.data).context("the run's dataset")?;
    let split = data.split(SplitKind::Test, run.cfg.binarize);
    let n = n.unwrap_or(run.cfg.images(&data, SplitKind::Test));
    if n == 0 || n > split.len() {
        bail!(
            "IMAGES {spec:?}: the run's test set has {} images",
            split.len()
        );
    }
    let last = f32::from(levels - 1);
    let mut out = Vec::with_capacity(n * split.dim());
    for i in 0..n {
        out.extend(split.image(i).iter().map(|&x| (x * last).round() as u8));
    }
    let s = split.shape();
    let mut idx_dims = vec![n as u32];
    if s.channels > 1 {
        idx_dims.push(s.channels as u32);
    }
    idx_dims.extend([s.height as u32, s.width as u32]);
    Ok(Images {
        levels: out,
        shape: s,
        idx_dims,
    })
}

fn read_idx_images(path: &Path, levels: u16) -> anyhow::Result<Images> {
    // The IDX magic's last byte says how many dimensions: 3 for grey, 4 for colour images.
    let ndim = match read_idx(path, 3) {
        Ok(a) => a,
        Err(_) => read_idx(path, 4)?,
    };
    let shape = match ndim.dims.as_slice() {
        [_, h, w] => ImageShape::grey(*h, *w),
        [_, c, h, w] => ImageShape {
            channels: *c,
            height: *h,
            width: *w,
        },
        _ => bail!("{}: not an IDX file of images", path.display()),
    };
    let mut out = ndim.data;
    if levels == 2 {
        // Binarized images come as 0 and 255.
        if let Some((i, v)) = out.iter().enumerate().find(|(_, &v)| v != 0 && v != 255) {
            bail!(
                "{}: pixel {} of image {} is {v}; the run models binarized images, every pixel 0 or 255",
                path.display(),
                i % shape.dim(),
                i / shape.dim()
            );
        }
        out.iter_mut().for_each(|v| *v /= 255);
    }
    Ok(Images {
        levels: out,
        shape,
        idx_dims: ndim.dims.iter().map(|&d| d as u32).collect(),
    })
}

/// An IDX file of the levels (back to 0/255 for binarized images).
fn idx_bytes(dims: &[u32], levels: u16, pixels: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    let scale = 255 / (levels - 1) as u8;
    out.extend(pixels.iter().map(|&k| k * scale));
    out
}

/// `vaelab compress RUN_DIR IMAGES --out FILE`.
pub fn compress(run_dir: &Path, images: &str, out: &Path) -> anyhow::Result<()> {
    let run = open_run(run_dir)?;
    let imgs = read_images(&run, images)?;
    let coder = run.coder(imgs.shape)?;
    let (file, stats) = coder
        .compress(&imgs.levels, imgs.idx_dims.clone())
        .map_err(|e| anyhow!("{images}: {e}"))?;
    let bytes = file.to_bytes();
    track::write_atomic(out, &bytes)?;
    let n = file.header.count();
    let pixels = (n * imgs.shape.dim()) as f64;
    let bpd = 8.0 * bytes.len() as f64 / pixels;
    let threads = rayon::current_num_threads();
    note!(
        "{}: {n} images of {} ({} levels) coded by run {} in {:.1} s ({:.0} images/s, {threads} thread(s))",
        out.display(),
        imgs.shape,
        run.cfg.data_levels(),
        run_dir.display(),
        stats.seconds,
        n as f64 / stats.seconds.max(1e-9),
    );
    note!(
        "  {} bytes = {bpd:.4} bits/dim; the coded latents' ideal rate {:.4} bits/dim",
        bytes.len(),
        stats.ideal_bits / pixels
    );
    if let Some(elbo) = run.summary("test_elbo_bpd") {
        note!(
            "  the run's test_elbo_bpd: {elbo:.4} (its test set; the file is {:+.2} % off it)",
            100.0 * (bpd / elbo - 1.0)
        );
    }
    Ok(())
}

/// `vaelab decompress RUN_DIR FILE --out DIR`: writes DIR/images-idx3-ubyte (idx4 for colour).
pub fn decompress(run_dir: &Path, file: &Path, out: &Path) -> anyhow::Result<()> {
    let run = open_run(run_dir)?;
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let parsed = File::from_bytes(&bytes).map_err(|e| anyhow!("{}: {e}", file.display()))?;
    let h = &parsed.header;
    let shape = match h.idx_dims.as_slice() {
        [_, hh, w] => ImageShape::grey(*hh as usize, *w as usize),
        [_, c, hh, w] => ImageShape {
            channels: *c as usize,
            height: *hh as usize,
            width: *w as usize,
        },
        _ => bail!("{}: a corrupt header", file.display()),
    };
    let start = std::time::Instant::now();
    let pixels = run
        .coder(shape)?
        .decompress(&parsed)
        .map_err(|e| anyhow!("{}: {e}", file.display()))?;
    let name = format!("images-idx{}-ubyte", h.idx_dims.len());
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    track::write_atomic(&out.join(&name), &idx_bytes(&h.idx_dims, h.levels, &pixels))?;
    note!(
        "{}: {} images decoded in {:.1} s",
        out.join(name).display(),
        h.count(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
