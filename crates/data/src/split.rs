//! A split of a dataset: its images (8-bit levels or f32 values) and labels, gathered into
//! batches.

use crate::pixels::{Bytes, Pixels, LEVELS};
use crate::ImageShape;
use rand::Rng;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// How many images ahead [`Split::gather`] asks the CPU to load.
const PREFETCH_AHEAD: usize = 2;

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

/// Images (CHW, values in [0, 1]: 8-bit levels or f32) and their labels.
#[derive(Debug, Clone)]
pub struct Split {
    pixels: Pixels,
    labels: Vec<u8>,
    shape: ImageShape,
}

impl PartialEq for Split {
    /// The same images (value for value), labels and shape, however they are stored.
    fn eq(&self, other: &Self) -> bool {
        let all = |s: &Split| {
            let mut v = Vec::new();
            s.pixels.extend(0..s.pixels.len(), &mut v, |x| x);
            v
        };
        self.shape == other.shape && self.labels == other.labels && all(self) == all(other)
    }
}

impl Split {
    /// Builds a split from 8-bit pixels (read as level / 255), one byte per pixel in memory.
    pub fn from_u8(pixels: Vec<u8>, labels: Vec<u8>, shape: ImageShape) -> Self {
        Self::stored(Pixels::Levels(Bytes::Owned(pixels)), labels, shape)
    }

    /// Builds a split from f32 pixels; `images.len()` must be `labels.len() * shape.dim()`.
    pub fn new(images: Vec<f32>, labels: Vec<u8>, shape: ImageShape) -> Self {
        Self::stored(Pixels::Floats(images), labels, shape)
    }

    pub(crate) fn stored(pixels: Pixels, labels: Vec<u8>, shape: ImageShape) -> Self {
        debug_assert_eq!(pixels.len(), labels.len() * shape.dim());
        Self {
            pixels,
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

    /// All labels.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// The 8-bit pixels, image after image, when the split holds levels.
    pub fn levels(&self) -> Option<&[u8]> {
        match &self.pixels {
            Pixels::Levels(b) => Some(b),
            Pixels::Floats(_) => None,
        }
    }

    /// Bytes of pixels this split holds in memory (0 when they are mapped from the cache).
    pub fn resident_bytes(&self) -> usize {
        self.pixels.resident_bytes()
    }

    /// The pixel values of image `i`.
    pub fn image(&self, i: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.dim());
        self.pixels.extend(self.rows(i), &mut out, |x| x);
        out
    }

    fn rows(&self, i: usize) -> std::ops::Range<usize> {
        let d = self.dim();
        i * d..(i + 1) * d
    }

    /// Appends the images at `indices` to `out`; with `dynamic` every pixel is replaced by a
    /// Bernoulli draw with its intensity as probability (dynamic binarization).
    pub fn gather(
        &self,
        indices: &[usize],
        mut dynamic: Option<&mut ChaCha8Rng>,
        out: &mut Vec<f32>,
    ) {
        out.clear();
        out.reserve(indices.len() * self.dim());
        for (j, &i) in indices.iter().enumerate() {
            // Shuffled images lie far apart in an array larger than the cache: ask for the
            // one a few ahead while this one is copied.
            if let Some(&ahead) = indices.get(j + PREFETCH_AHEAD) {
                self.pixels.prefetch(self.rows(ahead));
            }
            match dynamic.as_deref_mut() {
                None => self.pixels.extend(self.rows(i), out, |x| x),
                Some(rng) => self.pixels.extend(self.rows(i), out, |p| bernoulli(p, rng)),
            }
        }
    }

    /// One fixed Bernoulli draw of every pixel (static binarization), seeded by `seed`; 8-bit
    /// splits stay 8-bit (levels 0 and 255, read as exactly 0 and 1).
    pub(crate) fn binarized(&self, seed: u64) -> Split {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut values = Vec::with_capacity(self.pixels.len());
        let pixels = match &self.pixels {
            Pixels::Levels(b) => Pixels::Levels(Bytes::Owned(
                b.iter()
                    .map(|&l| 255 * u8::from(bernoulli(LEVELS[usize::from(l)], &mut rng) == 1.0))
                    .collect(),
            )),
            Pixels::Floats(_) => {
                self.pixels.extend(0..self.pixels.len(), &mut values, |p| {
                    bernoulli(p, &mut rng)
                });
                Pixels::Floats(values)
            }
        };
        Split::stored(pixels, self.labels.clone(), self.shape)
    }
}

fn bernoulli(p: f32, rng: &mut ChaCha8Rng) -> f32 {
    if rng.random::<f32>() < p {
        1.0
    } else {
        0.0
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Three 1×2 images of f32 pixels (shared with the dataset's tests).
    pub(crate) fn split() -> Split {
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

    /// Batches longer than the prefetch distance, of images larger than a cache line, 8-bit and
    /// f32: each image as `image` reads it, in the batch's order, whatever lies ahead.
    #[test]
    fn gather_of_many_images_matches_them_one_by_one() {
        let (n, shape) = (9, ImageShape::grey(10, 10));
        let levels: Vec<u8> = (0..n * 100).map(|i| (i * 37 % 256) as u8).collect();
        let floats = levels.iter().map(|&l| f32::from(l) / 255.0).collect();
        for s in [
            Split::from_u8(levels.clone(), vec![0; n], shape),
            Split::new(floats, vec![0; n], shape),
        ] {
            let order = [8, 0, 3, 3, 7, 1, 8, 2];
            let mut out = vec![];
            s.gather(&order, None, &mut out);
            let one_by_one: Vec<f32> = order.iter().flat_map(|&i| s.image(i)).collect();
            assert_eq!(out, one_by_one);
        }
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

    /// The 8-bit split binarizes (statically and per batch) to exactly what the same pixels as
    /// f32 values do: one byte per pixel changes no draw.
    #[test]
    fn levels_binarize_like_their_float_values() {
        let levels: Vec<u8> = (0..=255).chain(0..=255).collect();
        let floats: Vec<f32> = levels.iter().map(|&l| f32::from(l) / 255.0).collect();
        let shape = ImageShape::grey(16, 16);
        let a = Split::from_u8(levels, vec![0, 1], shape);
        let b = Split::new(floats, vec![0, 1], shape);
        assert_eq!(a, b);
        assert_eq!(a.binarized(7), b.binarized(7));
        assert!(
            a.binarized(7).levels().is_some(),
            "static copies stay 8-bit"
        );
        let (mut x, mut y) = (Vec::new(), Vec::new());
        a.gather(&[1, 0], Some(&mut ChaCha8Rng::seed_from_u64(3)), &mut x);
        b.gather(&[1, 0], Some(&mut ChaCha8Rng::seed_from_u64(3)), &mut y);
        assert_eq!(x, y);
    }
}
