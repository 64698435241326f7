//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

use polars::prelude::*;
use std::path::Path;
use std::process::Output;

/// Where Debian's `dataset-fashion-mnist` puts its IDX files.
pub const FASHION: &str = "/usr/share/datasets/fashion-mnist";

/// Fails the test with how to get the data when Fashion-MNIST is not installed.
pub fn require_fashion() {
    assert!(
        Path::new(FASHION)
            .join("train-images-idx3-ubyte.gz")
            .exists(),
        "Fashion-MNIST is missing: run `just data` (installs Debian's dataset-fashion-mnist)"
    );
}

/// A process's stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Reads a Parquet file, failing the test with the path when it cannot.
pub fn read(path: &Path) -> DataFrame {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    ParquetReader::new(f)
        .finish()
        .unwrap_or_else(|e| panic!("{}: unreadable: {e}", path.display()))
}

/// A string column's values ("" for nulls).
pub fn strings(df: &DataFrame, col: &str) -> Vec<String> {
    df.column(col)
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|s| s.unwrap_or("").to_string())
        .collect()
}

/// A u32 column's values (nulls skipped).
pub fn u32s(df: &DataFrame, col: &str) -> Vec<u32> {
    df.column(col)
        .unwrap()
        .u32()
        .unwrap()
        .iter()
        .flatten()
        .collect()
}

/// Writes a u8 IDX file (magic 0x08, the given dimensions, then the data).
pub fn write_idx(path: &Path, dims: &[u32], data: &[u8]) {
    let mut bytes = (0x0800u32 | dims.len() as u32).to_be_bytes().to_vec();
    dims.iter().for_each(|d| bytes.extend(d.to_be_bytes()));
    bytes.extend(data);
    std::fs::write(path, bytes).unwrap();
}

/// A folder of raw IDX files: `n_train` and `n_test` images of `train_side`² and `test_side`²
/// pixels, with labels.
pub fn idx_folder(dir: &Path, (n_train, train_side): (u32, u32), (n_test, test_side): (u32, u32)) {
    std::fs::create_dir_all(dir).unwrap();
    for (prefix, n, side) in [("train", n_train, train_side), ("t10k", n_test, test_side)] {
        let pixels: Vec<u8> = (0..n * side * side).map(|i| (i * 37 % 251) as u8).collect();
        write_idx(
            &dir.join(format!("{prefix}-images-idx3-ubyte")),
            &[n, side, side],
            &pixels,
        );
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        write_idx(
            &dir.join(format!("{prefix}-labels-idx1-ubyte")),
            &[n],
            &labels,
        );
    }
}

/// Checks a refusal of bad input in `case.toml`: exit 2, the file and every needle named in
/// the message, and no panic or backtrace.
pub fn assert_refused<S: AsRef<str>>(case: &str, out: &Output, needles: &[S]) {
    let msg = stderr(out);
    assert_eq!(out.status.code(), Some(2), "{case}: {msg}");
    assert!(
        msg.contains(&format!("{case}.toml")),
        "{case}: the error does not name the file: {msg}"
    );
    for n in needles {
        assert!(
            msg.contains(n.as_ref()),
            "{case}: the error lacks {:?}: {msg}",
            n.as_ref()
        );
    }
    assert!(
        !msg.contains("panicked") && !msg.contains("RUST_BACKTRACE"),
        "{case}: {msg}"
    );
}

/// Sends SIGINT to `child` (what Ctrl-C sends), waits, and checks it exited 130; returns its
/// output.
pub fn interrupt(child: std::process::Child) -> Output {
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    out
}
