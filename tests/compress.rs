//! End-to-end: `vaelab compress` and `decompress` with real trained runs on Fashion-MNIST: exact
//! round trips, the rate against the run's own bits/dim, and every refusal with exit 2.

mod common;

use common::{read, require_fashion, stderr, write_idx, FASHION};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn vaelab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vaelab"))
        .args(args)
        .env("RAYON_NUM_THREADS", "2")
        .output()
        .expect("vaelab runs")
}

/// Trains a small real run (a narrow MLP, 2 epochs on 1000 images, `test` test images).
fn train(dir: &Path, name: &str, test: usize, extra: &str) -> PathBuf {
    require_fashion();
    std::fs::create_dir_all(dir).unwrap();
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(
        &file,
        format!(
            "name = \"{name}\"\ndata_dir = \"{FASHION}\"\nhidden = [64]\nlatent_dim = 5\nepochs = 2\ntrain_subset = 1000\ntest_subset = {test}\niw_test_n = 0\n{extra}"
        ),
    )
    .unwrap();
    let results = dir.join("results");
    let out = vaelab(&[
        "run",
        file.to_str().unwrap(),
        "--results-dir",
        results.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    results.join(name)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The first `n` Fashion-MNIST test images as a raw IDX file.
fn test_images(dir: &Path, n: usize) -> PathBuf {
    let all =
        vaelab_data::read_idx(&Path::new(FASHION).join("t10k-images-idx3-ubyte.gz"), 3).unwrap();
    let path = dir.join("images-idx3-ubyte");
    write_idx(&path, &[n as u32, 28, 28], &all.data[..n * 784]);
    path
}

/// The rate in the compress report ("… = 3.2000 bits/dim; …").
fn bpd_in(report: &str) -> f64 {
    let at = report.find(" bits/dim;").expect("the rate line");
    let head = &report[..at];
    head[head.rfind(' ').unwrap() + 1..].parse().unwrap()
}

fn summary_f64(run: &Path, col: &str) -> f64 {
    read(&run.join("summary.parquet"))
        .column(col)
        .unwrap()
        .f64()
        .unwrap()
        .get(0)
        .unwrap()
}

#[test]
fn eight_bit_images_round_trip_byte_for_byte_at_the_runs_elbo_rate() {
    let tmp = tempfile::tempdir().unwrap();
    let run = train(
        tmp.path(),
        "dl",
        100,
        "likelihood = \"discretized-logistic\"\n",
    );
    let images = test_images(tmp.path(), 100);
    let file = tmp.path().join("test.bb");
    let out = vaelab(&["compress", s(&run), s(&images), "--out", s(&file)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let dec = tmp.path().join("dec");
    let back = vaelab(&["decompress", s(&run), s(&file), "--out", s(&dec)]);
    assert!(back.status.success(), "{}", stderr(&back));
    assert_eq!(
        std::fs::read(dec.join("images-idx3-ubyte")).unwrap(),
        std::fs::read(&images).unwrap()
    );
    // The same 100 images the run's test_elbo_bpd is over: the file's real length is a
    // one-sample −ELBO, within 2 % of the run's (several-sample) estimate.
    let bpd = 8.0 * std::fs::metadata(&file).unwrap().len() as f64 / (100.0 * 784.0);
    let elbo = summary_f64(&run, "test_elbo_bpd");
    assert!(
        (bpd / elbo - 1.0).abs() < 0.02,
        "file {bpd} bits/dim, ELBO {elbo}"
    );
    assert!(
        (bpd_in(&stderr(&out)) - bpd).abs() < 1e-4,
        "{}",
        stderr(&out)
    );
    // `test:N` names the same images.
    let again = tmp.path().join("again.bb");
    let out = vaelab(&["compress", s(&run), "test:100", "--out", s(&again)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(&again).unwrap(),
        std::fs::read(&file).unwrap()
    );
}

#[test]
fn binarized_images_round_trip_and_every_refusal_exits_2() {
    let tmp = tempfile::tempdir().unwrap();
    let run = train(tmp.path(), "bin", 300, "binarize = \"dynamic\"\n");
    let file = tmp.path().join("bin.bb");
    let out = vaelab(&["compress", s(&run), "test", "--out", s(&file)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let dec = tmp.path().join("dec");
    let back = vaelab(&["decompress", s(&run), s(&file), "--out", s(&dec)]);
    assert!(back.status.success(), "{}", stderr(&back));
    let idx = dec.join("images-idx3-ubyte");
    let pixels = std::fs::read(&idx).unwrap();
    assert_eq!(pixels.len(), 16 + 300 * 784);
    assert!(pixels[16..].iter().all(|&p| p == 0 || p == 255));
    assert!(pixels[16..].contains(&255));
    // The decoded file coded again is the same file: the images were the run's binary ones.
    let again = tmp.path().join("again.bb");
    let out = vaelab(&["compress", s(&run), s(&idx), "--out", s(&again)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(&again).unwrap(),
        std::fs::read(&file).unwrap()
    );

    let refused = |args: &[&str], says: &str| {
        let out = vaelab(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    };
    let out_dir = tmp.path().join("nowhere");
    // Another run's model.
    let other = train(
        tmp.path(),
        "other",
        300,
        "binarize = \"dynamic\"\nseed = 5\n",
    );
    refused(
        &["decompress", s(&other), s(&file), "--out", s(&out_dir)],
        "another model",
    );
    // A truncated file, a foreign one, a flipped byte.
    let bytes = std::fs::read(&file).unwrap();
    let cut = tmp.path().join("cut.bb");
    std::fs::write(&cut, &bytes[..bytes.len() - 3]).unwrap();
    refused(
        &["decompress", s(&run), s(&cut), "--out", s(&out_dir)],
        "truncated",
    );
    let foreign = tmp.path().join("foreign.bb");
    std::fs::write(&foreign, b"PK\x03\x04 not ours").unwrap();
    refused(
        &["decompress", s(&run), s(&foreign), "--out", s(&out_dir)],
        "not a vaelab compressed file",
    );
    let mut flipped = bytes.clone();
    let last = flipped.len() - 9;
    flipped[last] ^= 0x10;
    let flip = tmp.path().join("flip.bb");
    std::fs::write(&flip, &flipped).unwrap();
    refused(
        &["decompress", s(&run), s(&flip), "--out", s(&out_dir)],
        "flip.bb",
    );
    assert!(!out_dir.exists(), "a refused decompression wrote images");
    // Grey images for a binarized model, images of another shape, no such images, an AE.
    let grey = test_images(tmp.path(), 10);
    refused(
        &["compress", s(&run), s(&grey), "--out", s(&out_dir)],
        "every pixel 0 or 255",
    );
    let small = tmp.path().join("small-idx3-ubyte");
    write_idx(&small, &[4, 10, 10], &[0u8; 400]);
    refused(
        &["compress", s(&run), s(&small), "--out", s(&out_dir)],
        "does not fit images of 1×10×10",
    );
    refused(
        &["compress", s(&run), "test:10001", "--out", s(&out_dir)],
        "test set has 10000 images",
    );
    refused(
        &["compress", s(&run), "nope.idx", "--out", s(&out_dir)],
        "no such file",
    );
    let ae = train(tmp.path(), "ae", 300, "model = \"ae\"\n");
    refused(
        &["compress", s(&ae), "test:5", "--out", s(&out_dir)],
        "autoencoder",
    );
}
