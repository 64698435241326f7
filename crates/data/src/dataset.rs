//! The in-memory dataset every run shares.

use crate::{Binarize, ImageShape};
use rand::Rng;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::sync::OnceLock;

/// Which half of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SplitKind {
    Train,
    Test,
}

impl SplitKind {
    /// The name used in tables: "train" or "test".
    pub fn as_str(self) -> &'static str {
        match self {
            SplitKind::Train => "train",
            SplitKind::Test => "test",
        }
    }
}

/// Images (CHW, f32 in [0, 1]) and their labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    images: Vec<f32>,
    labels: Vec<u8>,
    shape: ImageShape,
}

impl Split {
    /// Builds a split from u8 pixels (scaled to [0, 1]).
    pub fn from_u8(pixels: &[u8], labels: Vec<u8>, shape: ImageShape) -> Self {
        let images = pixels.iter().map(|&p| f32::from(p) / 255.0).collect();
        Self::new(images, labels, shape)
    }

    /// Builds a split from f32 pixels; `images.len()` must be `labels.len() * shape.dim()`.
    pub fn new(images: Vec<f32>, labels: Vec<u8>, shape: ImageShape) -> Self {
        debug_assert_eq!(images.len(), labels.len() * shape.dim());
        Self {
            images,
            labels,
            shape,
        }
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the split holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Channels, height and width of one image.
    pub fn shape(&self) -> ImageShape {
        self.shape
    }

    /// Values per image (channels × height × width).
    pub fn dim(&self) -> usize {
        self.shape.dim()
    }

    /// All pixels, image after image.
    pub fn images(&self) -> &[f32] {
        &self.images
    }

    /// All labels.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// The pixels of image `i`.
    pub fn image(&self, i: usize) -> &[f32] {
        let d = self.dim();
        &self.images[i * d..(i + 1) * d]
    }

    /// Appends the images at `indices` to `out`; with `dynamic` every pixel is replaced by a
    /// Bernoulli draw with its intensity as probability (dynamic binarization).
    pub fn gather(&self, indices: &[usize], dynamic: Option<&mut ChaCha8Rng>, out: &mut Vec<f32>) {
        out.clear();
        out.reserve(indices.len() * self.dim());
        match dynamic {
            None => indices
                .iter()
                .for_each(|&i| out.extend_from_slice(self.image(i))),
            Some(rng) => {
                for &i in indices {
                    out.extend(self.image(i).iter().map(|&p| bernoulli(p, rng)));
                }
            }
        }
    }

    /// One fixed Bernoulli draw of every pixel (static binarization), seeded by `seed`.
    fn binarized(&self, seed: u64) -> Split {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let images = self
            .images
            .iter()
            .map(|&p| bernoulli(p, &mut rng))
            .collect();
        Split::new(images, self.labels.clone(), self.shape)
    }
}

fn bernoulli(p: f32, rng: &mut ChaCha8Rng) -> f32 {
    if rng.random::<f32>() < p {
        1.0
    } else {
        0.0
    }
}

/// Seeds of the fixed binarized copies: the same for every run, so runs compare on one dataset.
const STATIC_SEED_TRAIN: u64 = 0x5eed_0001;
const STATIC_SEED_TEST: u64 = 0x5eed_0002;

/// A dataset: train and test splits, plus lazily built binarized copies shared by all runs.
#[derive(Debug)]
pub struct Dataset {
    name: String,
    origin: String,
    train: Split,
    test: Split,
    binarized: OnceLock<(Split, Split)>,
}

impl Dataset {
    /// A dataset from its two splits; `origin` says where it was read from.
    pub fn new(
        name: impl Into<String>,
        origin: impl Into<String>,
        train: Split,
        test: Split,
    ) -> Self {
        Self {
            name: name.into(),
            origin: origin.into(),
            train,
            test,
            binarized: OnceLock::new(),
        }
    }

    /// The dataset's name (e.g. "fashion-mnist").
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the files came from (a folder or the hf-hub cache).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Values per image (channels × height × width).
    pub fn dim(&self) -> usize {
        self.train.dim()
    }

    /// Channels, height and width of one image.
    pub fn shape(&self) -> ImageShape {
        self.train.shape()
    }

    /// The split as a run sees it under `binarize`: static binarization uses one fixed binary
    /// copy of both splits; dynamic binarization samples train batches afresh (see
    /// [`Split::gather`]) and evaluates on the fixed binary test copy, so test numbers are
    /// comparable across epochs and runs.
    pub fn split(&self, kind: SplitKind, binarize: Binarize) -> &Split {
        let fixed = || {
            self.binarized.get_or_init(|| {
                (
                    self.train.binarized(STATIC_SEED_TRAIN),
                    self.test.binarized(STATIC_SEED_TEST),
                )
            })
        };
        match (kind, binarize) {
            (SplitKind::Train, Binarize::None | Binarize::Dynamic) => &self.train,
            (SplitKind::Test, Binarize::None) => &self.test,
            (SplitKind::Train, Binarize::Static) => &fixed().0,
            (SplitKind::Test, Binarize::Static | Binarize::Dynamic) => &fixed().1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split() -> Split {
        Split::new(
            vec![0.0, 0.5, 1.0, 0.25, 0.75, 1.0],
            vec![0, 1, 2],
            ImageShape::grey(1, 2),
        )
    }

    #[test]
    fn gather_copies_rows() {
        let s = split();
        let mut out = vec![];
        s.gather(&[2, 0], None, &mut out);
        assert_eq!(out, vec![0.75, 1.0, 0.0, 0.5]);
    }

    #[test]
    fn dynamic_binarization_is_binary_and_follows_intensity() {
        let s = Split::new(vec![0.0, 0.3, 1.0], vec![0], ImageShape::grey(1, 3));
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut out = vec![];
        let mut ones = 0.0;
        for _ in 0..2000 {
            s.gather(&[0], Some(&mut rng), &mut out);
            assert!(out.iter().all(|&p| p == 0.0 || p == 1.0));
            assert_eq!((out[0], out[2]), (0.0, 1.0));
            ones += out[1];
        }
        let freq = ones / 2000.0;
        assert!((freq - 0.3).abs() < 0.04, "{freq}");
    }

    #[test]
    fn static_copy_is_shared_and_fixed() {
        let d = Dataset::new("t", "mem", split(), split());
        let a = d.split(SplitKind::Test, Binarize::Static) as *const Split;
        let b = d.split(SplitKind::Test, Binarize::Dynamic) as *const Split;
        assert_eq!(a, b);
        assert!(std::ptr::eq(
            d.split(SplitKind::Train, Binarize::Dynamic),
            d.split(SplitKind::Train, Binarize::None)
        ));
    }
}
