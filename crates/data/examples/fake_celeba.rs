//! Writes a CelebA-sized dataset into a fake hf-hub cache, for the load and memory benchmarks
//! (`just bench-celeba`): 162,770 training and 19,962 test images, 64×64 RGB JPEGs of smooth
//! random colour fields (a few low-frequency waves each), as `hub:fake/celeba`.
//!
//! `cargo run -p vaelab-data --features fixtures --example fake_celeba -- CACHE_DIR [SCALE]`
//! (SCALE divides both counts, for a quick try).

use image::{codecs::jpeg::JpegEncoder, ColorType};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use vaelab_data::fixtures::FakeHubRepo;

const SIDE: u32 = 64;

/// One smooth random image: three waves per channel with random frequencies and phases.
fn jpeg(i: usize) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(i as u64);
    let waves: Vec<[f32; 4]> = (0..9)
        .map(|_| {
            [
                rng.random_range(0.5..3.0f32),
                rng.random_range(0.5..3.0f32),
                rng.random_range(0.0..6.3f32),
                rng.random_range(20.0..60.0f32),
            ]
        })
        .collect();
    let mut px = Vec::with_capacity((SIDE * SIDE * 3) as usize);
    for y in 0..SIDE {
        for x in 0..SIDE {
            let (u, v) = (x as f32 / SIDE as f32, y as f32 / SIDE as f32);
            for c in 0..3 {
                let s: f32 = waves[c * 3..c * 3 + 3]
                    .iter()
                    .map(|[fx, fy, ph, amp]| {
                        amp * (std::f32::consts::TAU * (fx * u + fy * v) + ph).sin()
                    })
                    .sum();
                px.push((128.0 + s).clamp(0.0, 255.0) as u8);
            }
        }
    }
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, 90)
        .encode(&px, SIDE, SIDE, ColorType::Rgb8)
        .expect("jpeg");
    out
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(cache) = args.next() else {
        eprintln!("usage: fake_celeba CACHE_DIR [SCALE]");
        std::process::exit(2);
    };
    let scale: usize = args
        .next()
        .map_or(1, |s| s.parse().expect("SCALE is an integer"));
    let repo = FakeHubRepo {
        label_column: None,
        ..FakeHubRepo::new("fake/celeba", "default")
    };
    let mut first = 0;
    for (split, n) in [("train", 162_770 / scale), ("test", 19_962 / scale)] {
        let images: Vec<Vec<u8>> = (first..first + n).into_par_iter().map(jpeg).collect();
        let bytes: usize = images.iter().map(Vec::len).sum();
        let file = repo.write_encoded(std::path::Path::new(&cache), split, &images, &[]);
        println!(
            "{split}: {n} JPEGs, {} MB -> {}",
            bytes >> 20,
            file.display()
        );
        first += n;
    }
}
