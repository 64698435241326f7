use super::*;
use candle_nn::VarMap;
use vaelab_vae::model::init;
use vaelab_vae::{Body, ImageShape, LikelihoodKind, Stack, LEVELS_8BIT};

const SIDE: usize = 4;
const LATENT: usize = 3;

fn arch(likelihood: Likelihood) -> Architecture {
    Architecture {
        kind: ModelKind::Vae,
        image: ImageShape::grey(SIDE, SIDE),
        body: Body::Mlp { hidden: vec![16] },
        latent_dim: LATENT,
        likelihood,
        stack: Stack::default(),
        prior: Prior::Standard,
    }
}

/// A seeded, untrained model coding `levels` grey levels.
fn coder(likelihood: Likelihood, levels: u16, seed: u64) -> Coder {
    let a = arch(likelihood);
    let varmap = VarMap::new();
    init::seeded(&a, &varmap, seed, &Device::Cpu).unwrap();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    Coder::new(Model::new(a, vb).unwrap(), levels, [seed as u8; 32], 16).unwrap()
}

fn logistic() -> Likelihood {
    Likelihood::new(LikelihoodKind::DiscretizedLogistic, 0.1, true)
}

/// `n` images of levels with some structure (a ramp plus a per-image offset).
fn images(n: usize, levels: u16) -> Vec<u8> {
    (0..n * SIDE * SIDE)
        .map(|i| {
            let (img, px) = (i / (SIDE * SIDE), i % (SIDE * SIDE));
            ((img * 37 + px * 11) % usize::from(levels)) as u8
        })
        .collect()
}

fn dims(n: usize) -> Vec<u32> {
    vec![n as u32, SIDE as u32, SIDE as u32]
}

#[test]
fn eight_bit_images_round_trip_exactly_over_several_chunks() {
    let c = coder(logistic(), LEVELS_8BIT, 1);
    let n = CHUNK_IMAGES + 50;
    let x = images(n, LEVELS_8BIT);
    let (file, _) = c.compress(&x, dims(n)).unwrap();
    assert_eq!(file.chunks.len(), 2);
    let bytes = file.to_bytes();
    let back = c.decompress(&File::from_bytes(&bytes).unwrap()).unwrap();
    assert_eq!(back, x);
}

#[test]
fn binary_images_round_trip_exactly() {
    let c = coder(Likelihood::Bernoulli, 2, 2);
    let x = images(200, 2);
    let (file, _) = c.compress(&x, dims(200)).unwrap();
    assert_eq!(c.decompress(&file).unwrap(), x);
}

#[test]
fn the_file_is_the_same_on_one_thread_and_on_three() {
    let c = coder(logistic(), LEVELS_8BIT, 3);
    let n = 2 * CHUNK_IMAGES + 10;
    let x = images(n, LEVELS_8BIT);
    let on = |threads| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| c.compress(&x, dims(n)).unwrap().0.to_bytes())
    };
    assert_eq!(on(1), on(3));
}

/// The file's length against −ELBO by another route: the model's own fused log-likelihood
/// kernel at many z ~ q (continuous, not bucketed) and the closed-form KL to N(0, I).
#[test]
fn the_file_costs_the_negative_elbo() {
    let c = coder(logistic(), LEVELS_8BIT, 4);
    let n = 600;
    let x = images(n, LEVELS_8BIT);
    let (file, stats) = c.compress(&x, dims(n)).unwrap();
    let coded_bits = 32.0 * file.chunks.iter().map(Vec::len).sum::<usize>() as f64;

    let d = SIDE * SIDE;
    let xs: Vec<f32> = x.iter().map(|&k| f32::from(k) / 255.0).collect();
    let xt = Tensor::from_vec(xs, (n, d), &Device::Cpu).unwrap();
    let q = c.model.encode(&xt).unwrap();
    let (mu, logvar) = (q.mu, q.logvar.unwrap());
    let kl: f64 = {
        let m = mu.to_vec2::<f32>().unwrap();
        let lv = logvar.to_vec2::<f32>().unwrap();
        m.iter()
            .flatten()
            .zip(lv.iter().flatten())
            .map(|(&m, &lv)| 0.5 * f64::from(m * m + lv.exp() - 1.0 - lv))
            .sum()
    };
    let draws = 200;
    let mut recon = 0.0;
    let sd = (logvar * 0.5).unwrap().exp().unwrap();
    let mut r = vaelab_vae::rng::stream(9, vaelab_vae::rng::Stream::Eval, 0);
    for _ in 0..draws {
        let eps = vaelab_vae::rng::normal_tensor(&mut r, (n, LATENT), &Device::Cpu).unwrap();
        let z = (&mu + (&sd * eps).unwrap()).unwrap();
        let params = c.model.decode(&z).unwrap();
        let lp = c.model.log_prob_as(c.mass, &params, &xt).unwrap();
        recon += f64::from(lp.sum_all().unwrap().to_scalar::<f32>().unwrap());
    }
    let neg_elbo_bits = (kl - recon / f64::from(draws)) / std::f64::consts::LN_2;
    // One z per image: the sum over 600 images scatters by under 1 %; the clean start adds
    // LATENT·16 bits. The coder itself comes within 0.1 % of the ideal rate of its own models.
    assert!(
        (coded_bits / neg_elbo_bits - 1.0).abs() < 0.02,
        "coded {coded_bits} bits, −ELBO {neg_elbo_bits}"
    );
    assert!(
        (coded_bits / stats.ideal_bits - 1.0).abs() < 1e-3,
        "{coded_bits} {}",
        stats.ideal_bits
    );
}

#[test]
fn another_models_file_and_a_corrupt_one_are_refused() {
    let (a, b) = (
        coder(logistic(), LEVELS_8BIT, 5),
        coder(logistic(), LEVELS_8BIT, 6),
    );
    let x = images(40, LEVELS_8BIT);
    let (file, _) = a.compress(&x, dims(40)).unwrap();
    let e = b.decompress(&file).unwrap_err().to_string();
    assert!(e.contains("another model"), "{e}");
    // Every single flipped bit in the coded words: an error, never other images.
    let mut refused = 0;
    for w in 0..file.chunks[0].len() {
        let mut bad = file.clone();
        bad.chunks[0][w] ^= 1 << (w % 32);
        match a.decompress(&bad) {
            Err(_) => refused += 1,
            Ok(y) => panic!("word {w}: decoded {} images without an error", y.len() / 16),
        }
    }
    assert_eq!(refused, file.chunks[0].len());
}

#[test]
fn pixels_outside_the_models_levels_are_refused() {
    let c = coder(Likelihood::Bernoulli, 2, 7);
    let e = c.compress(&images(3, LEVELS_8BIT), dims(3)).unwrap_err();
    assert!(e.to_string().contains("levels 0..1"), "{e}");
}
