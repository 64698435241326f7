//! How a split's pixels are held: 8-bit levels (one byte per pixel, owned or mapped from the
//! decoded cache) read as x/255 when a batch is gathered, or f32 values for sources that are not
//! 8-bit.

use memmap2::Mmap;
use std::ops::Range;
use std::sync::Arc;

/// x/255 for every 8-bit level, the same floats as dividing at the point of use.
pub(crate) static LEVELS: [f32; 256] = levels();

const fn levels() -> [f32; 256] {
    let mut table = [0f32; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = i as f32 / 255.0;
        i += 1;
    }
    table
}

/// Bytes held in memory or mapped from a file (the page cache shares those between processes).
#[derive(Debug, Clone)]
pub(crate) enum Bytes {
    Owned(Vec<u8>),
    Mapped { map: Arc<Mmap>, range: Range<usize> },
}

impl std::ops::Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Owned(v) => v,
            Bytes::Mapped { map, range } => &map[range.clone()],
        }
    }
}

/// A split's pixels, image after image (CHW).
#[derive(Debug, Clone)]
pub(crate) enum Pixels {
    /// 8-bit levels: pixel value = level / 255.
    Levels(Bytes),
    /// Values in [0, 1] that need not be 8-bit (generated data, tests).
    Floats(Vec<f32>),
}

impl Pixels {
    /// Values stored.
    pub(crate) fn len(&self) -> usize {
        match self {
            Pixels::Levels(b) => b.len(),
            Pixels::Floats(v) => v.len(),
        }
    }

    /// Appends the values at `range` to `out`, through `f` (identity, or a binarizing draw).
    pub(crate) fn extend(
        &self,
        range: Range<usize>,
        out: &mut Vec<f32>,
        f: impl FnMut(f32) -> f32,
    ) {
        match self {
            Pixels::Levels(b) => {
                out.extend(b[range].iter().map(|&l| LEVELS[usize::from(l)]).map(f))
            }
            Pixels::Floats(v) => out.extend(v[range].iter().copied().map(f)),
        }
    }

    /// Asks the CPU to start loading the values at `range` into its cache: a hint, which
    /// changes no value.
    pub(crate) fn prefetch(&self, range: Range<usize>) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let (start, len) = match self {
                Pixels::Levels(b) => {
                    let s = &b[range];
                    (s.as_ptr(), s.len())
                }
                Pixels::Floats(v) => {
                    let s = &v[range];
                    (s.as_ptr().cast::<u8>(), std::mem::size_of_val(s))
                }
            };
            // Every 64-byte line, the last one too when `start` is not at a line's start.
            for offset in (0..len).step_by(64).chain(len.checked_sub(1)) {
                // A prefetch reads nothing the program sees and cannot fault.
                #[allow(unused_unsafe)]
                unsafe {
                    _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(offset).cast::<i8>())
                };
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = range;
    }

    /// Bytes in memory for these pixels (none for a mapped file's, which the page cache holds).
    pub(crate) fn resident_bytes(&self) -> usize {
        match self {
            Pixels::Levels(Bytes::Owned(v)) => v.len(),
            Pixels::Levels(Bytes::Mapped { .. }) => 0,
            Pixels::Floats(v) => v.len() * 4,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_holds_the_division_done_at_run_time() {
        for l in 0..=255u8 {
            let runtime = f32::from(std::hint::black_box(l)) / std::hint::black_box(255.0);
            assert_eq!(
                LEVELS[usize::from(l)].to_bits(),
                runtime.to_bits(),
                "level {l}"
            );
        }
    }

    #[test]
    fn levels_and_floats_gather_the_same_values() {
        let bytes = vec![0u8, 1, 128, 255];
        let floats: Vec<f32> = bytes.iter().map(|&b| f32::from(b) / 255.0).collect();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        Pixels::Levels(Bytes::Owned(bytes)).extend(1..4, &mut a, |x| x);
        Pixels::Floats(floats).extend(1..4, &mut b, |x| x);
        assert_eq!(a, b);
        assert_eq!(a[2], 1.0);
    }
}
