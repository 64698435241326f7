//! The in-memory dataset every run shares.

use crate::cache::CacheStatus;
use crate::split::{Split, SplitKind};
use crate::{Binarize, ImageShape};
use std::sync::OnceLock;

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
    cache: CacheStatus,
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
            cache: CacheStatus::Off,
        }
    }

    /// The same dataset, noting how the decoded cache served it.
    pub fn with_cache(self, cache: CacheStatus) -> Self {
        Self { cache, ..self }
    }

    /// How the decoded cache served this load (mapped, built, unwritable or off).
    pub fn cache(&self) -> &CacheStatus {
        &self.cache
    }

    /// Bytes of pixels held in memory by both splits (mapped pixels count 0).
    pub fn resident_bytes(&self) -> usize {
        self.train.resident_bytes() + self.test.resident_bytes()
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
    use crate::split::tests::split;

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
