//! End-to-end: the real `vaelab` binary on real (small) data, read back from its Parquet files.
//!
//! Fashion-MNIST comes from Debian's `dataset-fashion-mnist` (`just data` installs it).

mod common;

use common::{read, stderr, write_idx, FASHION};
use polars::prelude::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fashion_dir() -> &'static str {
    assert!(
        Path::new(FASHION)
            .join("train-images-idx3-ubyte.gz")
            .exists(),
        "Fashion-MNIST is missing: run `just data` (installs Debian's dataset-fashion-mnist)"
    );
    FASHION
}

fn vaelab(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vaelab"));
    cmd.args(args).env("RAYON_NUM_THREADS", "1");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("vaelab runs")
}

/// Writes a run file and returns its path.
fn run_file(dir: &Path, name: &str, body: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, format!("name = \"{name}\"\n{body}")).unwrap();
    p
}

/// A small real run: Fashion-MNIST subsets, a narrow MLP.
fn small(extra: &str) -> String {
    format!(
        "data_dir = \"{}\"\nhidden = [64]\nlatent_dim = 5\nepochs = 2\ntrain_subset = 1000\ntest_subset = 300\niw_samples = 20\niw_test_n = 40\n{extra}",
        fashion_dir()
    )
}

/// The `kl_per_dim` list of a metrics row.
fn kl_dims(metrics: &DataFrame, row: usize) -> Series {
    metrics
        .column("kl_per_dim")
        .unwrap()
        .list()
        .unwrap()
        .get_as_series(row)
        .unwrap()
}

fn f64s(df: &DataFrame, col: &str) -> Vec<Option<f64>> {
    df.column(col).unwrap().f64().unwrap().iter().collect()
}

fn train(dir: &Path, name: &str, body: &str) -> PathBuf {
    let file = run_file(dir, name, body);
    let results = dir.join("results");
    let out = vaelab(
        &[
            "run",
            file.to_str().unwrap(),
            "--results-dir",
            results.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "vaelab failed: {}", stderr(&out));
    results.join(name)
}

#[test]
fn vae_run_writes_config_metrics_summary_and_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let run = train(
        tmp.path(),
        "vae",
        &small("").replace("iw_samples = 20", "iw_samples = 100"),
    );
    let m = read(&run.join("metrics.parquet"));
    assert_eq!(m.height(), 4, "2 epochs x 2 splits");
    let epochs = common::u32s(&m, "epoch");
    assert_eq!(epochs, [1, 1, 2, 2]);
    let splits: Vec<_> = m
        .column("split")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .flatten()
        .map(String::from)
        .collect();
    assert_eq!(splits, ["train", "test", "train", "test"]);
    for ((e, r), k) in f64s(&m, "neg_elbo")
        .iter()
        .zip(f64s(&m, "recon"))
        .zip(f64s(&m, "kl"))
    {
        // The sum itself is checked against an f64 recomputation from the checkpoint in
        // `the_test_elbo_matches_a_recomputation_from_the_checkpoint_in_f64`.
        let (e, r, k) = (e.unwrap(), r.unwrap(), k.unwrap());
        assert!(k > 0.0 && r > 0.0 && e > r);
    }
    for col in ["kl_weighted", "seconds", "samples_per_sec"] {
        assert!(
            f64s(&m, col).iter().all(|v| v.is_some_and(|v| v > 0.0)),
            "{col}"
        );
    }
    let dims = kl_dims(&m, 1);
    assert_eq!(dims.len(), 5, "one KL per latent dimension");

    let s = read(&run.join("summary.parquet"));
    assert_eq!(s.height(), 1);
    for key in [
        "run_id",
        "dataset",
        "model",
        "likelihood",
        "latent_dim",
        "beta",
        "epochs",
        "seed",
        "iw_samples",
    ] {
        assert!(s.column(key).is_ok(), "summary lacks config key {key}");
    }
    assert_eq!(
        s.column("latent_dim").unwrap().i64().unwrap().get(0),
        Some(5)
    );
    let get = |c: &str| f64s(&s, c)[0].unwrap_or_else(|| panic!("{c} is null"));
    let (log_px, elbo_iw, gap) = (get("log_px_iw"), get("elbo_iw"), get("elbo_gap"));
    // The K-sample bound is at least the mean of its own log weights (Jensen, per image).
    assert!(
        log_px < 0.0 && log_px >= elbo_iw && gap >= 0.0,
        "{log_px} {elbo_iw} {gap}"
    );
    assert!((get("test_neg_elbo") - f64s(&m, "neg_elbo")[3].unwrap()).abs() < 1e-9);
    assert!(get("wall_seconds") > 0.0);
    // PSIS k̂ of the bound's weights: K = 100 fits a 20-weight tail, and the bound is
    // 1 − 1/log₁₀ 100 = 0.5; the share above it is of the 40 images.
    let (bound, share, max) = (
        get("iw_khat_bound"),
        get("iw_khat_share"),
        get("iw_khat_max"),
    );
    assert_eq!(bound, 0.5);
    assert!(
        (0.0..=1.0).contains(&share) && max.is_finite(),
        "{share} {max}"
    );
    assert_eq!((share * 40.0).fract(), 0.0, "{share}");
    assert_eq!(share > 0.0, max > bound, "share {share}, largest k̂ {max}");
    assert!(
        std::fs::metadata(run.join("checkpoint.safetensors"))
            .unwrap()
            .len()
            > 1000
    );
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(
        config.contains("kl_warmup_epochs = 0") && config.contains("likelihood = \"bernoulli\""),
        "{config}"
    );
    // Nothing but the run's files and its lock: every write went through a renamed temp file.
    assert_eq!(
        std::fs::read_dir(&run).unwrap().count(),
        7,
        "config, manifest, metrics, summary, checkpoint, estep, .lock"
    );
}

/// Bits/dim of real runs, read back from the Parquet tables: a model trained on the 8-bit mass,
/// a Bernoulli scored as a continuous Bernoulli, a binarized run on its own 2-level scale.
#[test]
fn bits_per_dim_land_in_both_tables_with_their_setting() {
    let tmp = tempfile::tempdir().unwrap();
    // The IWAE bound on the same 300 images as the test ELBO.
    let same = |body: String| body.replace("iw_test_n = 40", "iw_test_n = 300");
    let runs = [
        (
            "logistic",
            "likelihood = \"discretized-logistic\"\n",
            256,
            "discretized logistic",
        ),
        (
            "gauss",
            "likelihood = \"gaussian-learned\"\ndiscretized = true\n",
            256,
            "discretized gaussian-learned",
        ),
        (
            "bern",
            "likelihood = \"bernoulli\"\n",
            256,
            "continuous-bernoulli (of the bernoulli's λ)",
        ),
        (
            "binary",
            "likelihood = \"bernoulli\"\nbinarize = \"dynamic\"\n",
            2,
            "bernoulli pmf, 2 levels",
        ),
    ];
    for (name, keys, levels, scored) in runs {
        let run = train(tmp.path(), name, &same(small(keys)));
        let s = read(&run.join("summary.parquet"));
        let one = |c: &str| f64s(&s, c)[0].unwrap_or_else(|| panic!("{name}: null {c}"));
        let (elbo, nll, recon) = (one("test_elbo_bpd"), one("nll_bpd"), one("test_recon_bpd"));
        let uniform = (levels as f64).log2();
        assert!(
            nll < elbo && recon < elbo,
            "{name}: nll {nll} recon {recon} elbo {elbo}"
        );
        assert!(nll > 0.0 && elbo.is_finite(), "{name}: {nll} {elbo}");
        // Models of their data beat the uniform; the Bernoulli's λ read as a continuous Bernoulli
        // need not (8.4 bits/dim after these 2 short epochs; 6.5 after 20 full ones).
        if name != "bern" {
            assert!(elbo < uniform, "{name}: {elbo} vs uniform {uniform}");
        }
        let lv = s.column("data_levels").unwrap().i64().unwrap().get(0);
        assert_eq!(lv, Some(levels), "{name}");
        let how = s
            .column("bpd_scored_as")
            .unwrap()
            .str()
            .unwrap()
            .get(0)
            .unwrap()
            .to_string();
        assert!(how.contains(scored), "{name}: {how}");
        // Per epoch: test rows carry bits/dim, training rows do not.
        let m = read(&run.join("metrics.parquet"));
        let split: Vec<String> = m
            .column("split")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .map(|v| v.unwrap().to_string())
            .collect();
        for (sp, v) in split.iter().zip(f64s(&m, "elbo_bpd")) {
            assert_eq!(v.is_some(), sp == "test", "{name} {sp}");
        }
        assert_eq!(f64s(&m, "elbo_bpd").last().unwrap(), &Some(elbo));
    }
}

#[test]
fn autoencoder_leaves_undefined_figures_null() {
    let tmp = tempfile::tempdir().unwrap();
    let run = train(tmp.path(), "ae", &small("model = \"ae\"\n"));
    let m = read(&run.join("metrics.parquet"));
    for col in ["neg_elbo", "kl", "kl_weighted"] {
        assert!(f64s(&m, col).iter().all(Option::is_none), "AE has no {col}");
    }
    assert!(f64s(&m, "recon").iter().all(|v| v.is_some_and(|v| v > 0.0)));
    let s = read(&run.join("summary.parquet"));
    for col in [
        "log_px_iw",
        "elbo_gap",
        "test_kl",
        "test_neg_elbo",
        "test_elbo_bpd",
        "nll_bpd",
        "iw_khat_share",
        "iw_khat_max",
    ] {
        assert_eq!(f64s(&s, col)[0], None, "AE summary {col}");
    }
    assert!(f64s(&s, "test_recon")[0].is_some());
    // The AE's reconstruction has a mass, in bits/dim: its only bits/dim. (A Bernoulli's λ read
    // as a continuous Bernoulli may score worse than the uniform 8: no bound on it here.)
    assert!(f64s(&s, "test_recon_bpd")[0].is_some_and(|b| b > 0.0 && b.is_finite()));
    // Keys that mean nothing for an AE are null too, not their defaults.
    for col in ["beta", "free_bits", "sigma"] {
        assert_eq!(f64s(&s, col)[0], None, "AE summary key {col}");
    }
    let iw = s.column("iw_samples").unwrap().i64().unwrap().get(0);
    assert_eq!(iw, None, "AE summary key iw_samples");
}

#[test]
fn a_short_run_learns() {
    // The classic model on 10k images for 3 epochs (237 Adam steps), tested on 2k images.
    // At initialization the test -ELBO is about 784·ln 2 ≈ 543 nats; PyTorch's reference
    // reaches 262.5 after one full epoch (469 steps). Measured here on 2026-11-24: 302.1,
    // 280.7, 272.1 after epochs 1-3, the same with 1 or 2 threads. The bound leaves 13 nats for
    // float differences between machines; a model that stops learning after epoch 1 fails it.
    const BOUND: f64 = 285.0;
    let tmp = tempfile::tempdir().unwrap();
    let body = format!(
        "data_dir = \"{}\"\nepochs = 3\ntrain_subset = 10000\ntest_subset = 2000\niw_test_n = 0\n",
        fashion_dir()
    );
    let run = train(tmp.path(), "learn", &body);
    let m = read(&run.join("metrics.parquet"));
    let test: Vec<f64> = f64s(&m, "neg_elbo")
        .iter()
        .skip(1)
        .step_by(2)
        .map(|v| v.unwrap())
        .collect();
    eprintln!("test -ELBO per epoch: {test:?}");
    assert!(
        test[2] < BOUND,
        "test -ELBO after 3 epochs {} ≥ {BOUND}",
        test[2]
    );
    assert!(test[2] < test[0], "it keeps learning: {test:?}");
}

#[test]
fn same_config_and_seed_give_identical_metrics_in_two_processes() {
    let tmp = tempfile::tempdir().unwrap();
    let body = small("binarize = \"dynamic\"\nseed = 3\n");
    let a = read(&train(&tmp.path().join("a"), "r", &body).join("metrics.parquet"));
    let b = read(&train(&tmp.path().join("b"), "r", &body).join("metrics.parquet"));
    let keep = |df: DataFrame| df.drop_many(["seconds", "samples_per_sec"]);
    assert!(
        keep(a).equals_missing(&keep(b)),
        "metrics differ between two identical runs"
    );
}

#[test]
fn mnist_from_the_hf_hub_cache_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    hub_cache::write(&cache, 256, 64);
    let file = run_file(tmp.path(), "hubrun", "dataset = \"mnist\"\nhidden = [32]\nlatent_dim = 2\nepochs = 1\niw_samples = 5\niw_test_n = 8\n");
    let results = tmp.path().join("results");
    let cache_s = cache.to_str().unwrap();
    let out = vaelab(
        &[
            "run",
            file.to_str().unwrap(),
            "--results-dir",
            results.to_str().unwrap(),
        ],
        &[("HF_HUB_CACHE", cache_s), ("HF_HUB_OFFLINE", "1")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("hf-hub ylecun/mnist"),
        "{}",
        stderr(&out)
    );
    assert_eq!(read(&results.join("hubrun/metrics.parquet")).height(), 2);

    // An empty cache offline: exit 2, and the message says how to get the data.
    let empty = tmp.path().join("empty");
    let out = vaelab(
        &[
            "run",
            file.to_str().unwrap(),
            "--results-dir",
            results.to_str().unwrap(),
        ],
        &[
            ("HF_HUB_CACHE", empty.to_str().unwrap()),
            ("HF_HUB_OFFLINE", "1"),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let msg = stderr(&out);
    assert!(
        msg.contains("hubrun.toml")
            && msg.contains("dataset")
            && msg.contains("Offline:")
            && msg.contains("Online:"),
        "{msg}"
    );
}

#[test]
fn bad_input_exits_2_naming_file_key_and_allowed_values_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    let truncated = tmp.path().join("truncated");
    std::fs::create_dir_all(&truncated).unwrap();
    for (prefix, n) in [("train", 10u32), ("t10k", 5)] {
        write_idx(
            &truncated.join(format!("{prefix}-images-idx3-ubyte")),
            &[n, 28, 28],
            &vec![7; (n * 784) as usize],
        );
        write_idx(
            &truncated.join(format!("{prefix}-labels-idx1-ubyte")),
            &[n],
            &vec![1; n as usize],
        );
    }
    common::idx_folder(&tmp.path().join("truncated-whole"), (20, 28), (5, 28));
    let img = truncated.join("train-images-idx3-ubyte");
    let bytes = std::fs::read(&img).unwrap();
    std::fs::write(&img, &bytes[..bytes.len() / 2]).unwrap();
    let t = truncated.display();
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "unknown_key",
            "latent_size = 3\n".into(),
            vec!["latent_size", "latent_dim"],
        ),
        (
            "wrong_type",
            "epochs = \"ten\"\n".into(),
            vec!["epochs", "integer"],
        ),
        (
            "latent_zero",
            "latent_dim = 0\n".into(),
            vec!["`latent_dim`", "from 1 to 1024"],
        ),
        ("neg_beta", "beta = -0.5\n".into(), vec!["`beta`", "≥ 0"]),
        (
            "bad_likelihood",
            "likelihood = \"poisson\"\n".into(),
            vec!["poisson", "gaussian-learned"],
        ),
        (
            "discretized_bernoulli",
            "likelihood = \"bernoulli\"\ndiscretized = true\n".into(),
            vec!["`discretized`", "gaussian-learned", "bernoulli"],
        ),
        (
            "discretized_binarized",
            "likelihood = \"discretized-logistic\"\nbinarize = \"dynamic\"\n".into(),
            vec!["`binarize`", "8-bit masses", "2 levels"],
        ),
        (
            "bad_dataset",
            "dataset = \"cifar10\"\n".into(),
            vec!["cifar10", "fashion-mnist", "idx"],
        ),
        (
            "missing_dir",
            "data_dir = \"/no/such/folder\"\n".into(),
            vec!["`data_dir`", "/no/such/folder", "does not exist"],
        ),
        (
            "no_draws",
            "train_samples = 0\n".into(),
            vec!["no_draws.toml:2:", "`train_samples` = 0", "from 1 to 5000"],
        ),
        (
            "iwae_ae",
            "model = \"ae\"\nobjective = \"iwae\"\n".into(),
            vec!["iwae_ae.toml:3:", "`objective`", "model = \"ae\""],
        ),
        (
            "iwae_beta",
            "objective = \"iwae\"\ntrain_samples = 5\nbeta = 4.0\n".into(),
            vec!["iwae_beta.toml:2:", "`objective`", "beta set"],
        ),
        (
            "empty_layer",
            "latent_layers = [100, 0]\n".into(),
            vec![
                "empty_layer.toml:2:",
                "`latent_layers` = [100, 0]",
                "from 1 to 1024",
            ],
        ),
        (
            "ae_layers",
            "model = \"ae\"\nlatent_layers = [10, 5]\n".into(),
            vec!["ae_layers.toml:3:", "`latent_layers`", "model = \"ae\""],
        ),
        (
            "vamp_ae",
            "model = \"ae\"\nprior = \"vamp\"\n".into(),
            vec!["vamp_ae.toml:3:", "`prior`", "model = \"ae\""],
        ),
        (
            "vamp_layers",
            "latent_layers = [10, 5]\nprior = \"vamp\"\n".into(),
            vec![
                "vamp_layers.toml:3:",
                "`prior`",
                "more than one latent layer",
            ],
        ),
        (
            "vamp_free_bits",
            "free_bits = 0.5\nprior = \"vamp\"\n".into(),
            vec!["vamp_free_bits.toml:3:", "`prior`", "free_bits"],
        ),
        (
            "vamp_subset",
            "prior = \"vamp\"\ntrain_subset = 100\npseudo_inputs = 200\n".into(),
            vec![
                "vamp_subset.toml:4:",
                "`pseudo_inputs` = 200",
                "train_subset = 100",
            ],
        ),
        (
            "vamp_images",
            format!("data_dir = \"{t}-whole\"\nprior = \"vamp\"\npseudo_inputs = 50\n"),
            vec![
                "vamp_images.toml:4:",
                "`pseudo_inputs` = 50",
                "at most the 20 training images",
            ],
        ),
        (
            "ais_layers",
            "latent_layers = [10, 5]\nais_test_n = 10\n".into(),
            vec![
                "ais_layers.toml:3:",
                "`ais_test_n`",
                "more than one latent layer",
            ],
        ),
        (
            "bdmc_layers",
            "latent_layers = [10, 5]\nbdmc_n = 4\n".into(),
            vec![
                "bdmc_layers.toml:3:",
                "`bdmc_n`",
                "more than one latent layer",
            ],
        ),
        (
            "ais_steps",
            "ais_test_n = 5\nais_steps = 1\n".into(),
            vec!["ais_steps.toml:3:", "`ais_steps`", "from 2 to 100000"],
        ),
        (
            "ais_images",
            "test_subset = 10\nais_test_n = 50\n".into(),
            vec![
                "ais_images.toml:3:",
                "`ais_test_n` = 50",
                "at most the 10 test images",
            ],
        ),
        (
            "truncated",
            format!("data_dir = \"{t}\"\n"),
            vec!["`data_dir`", "train-images-idx3-ubyte", "truncated"],
        ),
    ];
    let results = tmp.path().join("results");
    for (name, body, needles) in cases {
        let file = run_file(tmp.path(), name, &body);
        let out = vaelab(
            &[
                "run",
                file.to_str().unwrap(),
                "--results-dir",
                results.to_str().unwrap(),
            ],
            &[],
        );
        common::assert_refused(name, &out, &needles);
        assert!(
            !results.join(name).exists(),
            "{name}: a run folder was made"
        );
    }
}

/// The Hub's parquet layout of MNIST in an hf-hub cache folder, written by the test.
mod hub_cache {
    use std::path::Path;
    use vaelab_data::fixtures::{pattern, FakeHubRepo};

    pub fn write(cache: &Path, n_train: usize, n_test: usize) {
        let repo = FakeHubRepo::new("ylecun/mnist", "mnist");
        for (split, n) in [("train", n_train), ("test", n_test)] {
            let images: Vec<_> = (0..n).map(|i| pattern(i, 28, 28, false)).collect();
            let labels: Vec<i64> = (0..n as i64).map(|i| i % 10).collect();
            repo.write(cache, split, &images, &labels);
        }
    }
}

/// A colour dataset through `hub:`: 20×20 RGB PNGs written by the test, resized to 16×16
/// (`image_size`), trained by a conv VAE and an MLP VAE; the tables carry the new keys and the
/// reconstructions figure is in colour.
#[test]
fn colour_hub_dataset_trains_conv_and_mlp_and_draws_in_colour() {
    use vaelab_data::fixtures::{pattern, FakeHubRepo};
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    let repo = FakeHubRepo {
        image_column: "img".into(),
        ..FakeHubRepo::new("test-org/colour", "plain_text")
    };
    for (split, n) in [("train", 128), ("test", 32)] {
        let images: Vec<_> = (0..n).map(|i| pattern(i, 20, 20, true)).collect();
        repo.write(&cache, split, &images, &vec![3; n]);
    }
    let sweep = tmp.path().join("colour.toml");
    std::fs::write(
        &sweep,
        "[sweep]\nname = \"colour\"\n[base]\ndataset = \"hub:test-org/colour\"\nimage_size = 16\nchannels = [8, 16]\nhidden = [32]\nlatent_dim = 4\nepochs = 1\nbatch_size = 32\niw_samples = 4\niw_test_n = 8\n[grid]\narchitecture = [\"mlp\", \"conv\"]\n",
    )
    .unwrap();
    let results = tmp.path().join("results");
    let out = vaelab(
        &[
            "sweep",
            sweep.to_str().unwrap(),
            "--results-dir",
            results.to_str().unwrap(),
        ],
        &[
            ("HF_HUB_CACHE", cache.to_str().unwrap()),
            ("HF_HUB_OFFLINE", "1"),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let runs = read(&results.join("colour/runs.parquet"));
    assert_eq!(
        common::strings(&runs, "dataset"),
        ["hub:test-org/colour", "hub:test-org/colour"]
    );
    let sizes: Vec<Option<i64>> = runs
        .column("image_size")
        .unwrap()
        .i64()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(sizes, [Some(16), Some(16)]);
    // Bits per dimension count all 3 × 16 × 16 values of an image.
    let bpd = runs.column("test_elbo_bpd").unwrap().f64().unwrap();
    assert!(
        bpd.iter()
            .all(|b| b.is_some_and(|b| b.is_finite() && b > 0.0)),
        "{bpd:?}"
    );
    let img = image_rgb(&results.join("colour/figures/reconstructions.png"));
    let coloured = img.iter().filter(|p| p[0] != p[1] || p[1] != p[2]).count();
    assert!(coloured > 1000, "only {coloured} coloured pixels");
}

/// The RGB pixels of a PNG.
fn image_rgb(path: &Path) -> Vec<[u8; 3]> {
    let mut decoder =
        png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb, "{}", path.display());
    buf[..info.buffer_size()]
        .chunks(3)
        .map(|p| [p[0], p[1], p[2]])
        .collect()
}

/// A Hub dataset that cannot be read as asked: exit 2 before any run, naming the run file's
/// dataset and the column, and what to set.
#[test]
fn unreadable_hub_dataset_exits_2_naming_dataset_and_column() {
    use vaelab_data::fixtures::{pattern, FakeHubRepo};
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    let repo = FakeHubRepo::new("test-org/sizes", "default");
    let mut train: Vec<_> = (0..4).map(|i| pattern(i, 16, 16, true)).collect();
    train.push(pattern(4, 24, 16, true));
    repo.write(&cache, "train", &train, &[0, 1, 2, 3, 4]);
    repo.write(&cache, "test", &[pattern(0, 16, 16, true)], &[0]);
    let results = tmp.path().join("results");
    let cases = [
        (
            "mixed",
            "",
            vec![
                "hub:test-org/sizes",
                "`image`",
                "row 4",
                "24×16",
                "image_size",
            ],
        ),
        (
            "nocolumn",
            "image_column = \"picture\"\n",
            vec![
                "hub:test-org/sizes",
                "`picture`",
                "no such column",
                "image (struct",
            ],
        ),
    ];
    for (name, extra, needles) in cases {
        let file = run_file(
            tmp.path(),
            name,
            &format!("dataset = \"hub:test-org/sizes\"\n{extra}epochs = 1\n"),
        );
        let out = vaelab(
            &[
                "run",
                file.to_str().unwrap(),
                "--results-dir",
                results.to_str().unwrap(),
            ],
            &[
                ("HF_HUB_CACHE", cache.to_str().unwrap()),
                ("HF_HUB_OFFLINE", "1"),
            ],
        );
        common::assert_refused(name, &out, &needles);
        assert!(
            !results.join(name).exists(),
            "{name}: a run folder was made"
        );
    }
}

/// `--device cuda` on a build without the `cuda` feature is bad input: exit 2, and the message
/// says how to build one, before any data is read or any folder is made.
#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_without_the_feature_is_refused_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let file = run_file(tmp.path(), "gpu", &small(""));
    let results = tmp.path().join("results");
    let args = [
        "--device",
        "cuda",
        "run",
        file.to_str().unwrap(),
        "--results-dir",
        results.to_str().unwrap(),
    ];
    let out = vaelab(&args, &[]);
    let msg = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{msg}");
    assert!(
        msg.contains("--device cuda") && msg.contains("--features cuda"),
        "{msg}"
    );
    assert!(!results.exists(), "{msg}");
}

/// `vaelab keys` prints every run key with its default and what it allows, and what it prints
/// is what a run file accepts: a file of every printed default trains the default run's keys.
#[test]
fn keys_prints_every_key_with_its_default_and_allowed_values() {
    let out = vaelab(&["keys"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let heads: Vec<&str> = text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with(' '))
        .collect();
    let names: Vec<&str> = heads.iter().map(|h| h.split(' ').next().unwrap()).collect();
    assert_eq!(names, vaelab::config::RUN_KEYS, "{text}");
    for needle in [
        "latent_dim = 20\n",
        "allowed: an integer from 1 to 1024\n",
        "hidden = [400]\n",
        "channels = [32, 64]\n",
        "schedule = \"joint\"\n",
        "allowed: \"joint\" | \"alternating\" | \"aggressive\"",
        "image_size (unset by default)\n",
        "allowed: \"fashion-mnist\", \"mnist\", \"idx\"",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
    assert_eq!(
        text.matches("\n    allowed: ").count(),
        vaelab::config::RUN_KEYS.len()
    );
    // The printed defaults, as a run file, are the defaults.
    let settings: String = heads
        .iter()
        .filter(|h| h.contains(" = "))
        .map(|h| format!("{h}\n"))
        .collect();
    let file: vaelab::config::RunKeys = toml::from_str(&settings).unwrap();
    assert_eq!(file, vaelab::config::RunKeys::default());
}

/// What a closed pipe on stdout leaves: the exit code and stderr. `early` closes the pipe before
/// vaelab writes anything (its first write fails: deterministic); otherwise one line is read
/// first, as `| head -1` does.
fn with_stdout_closed(args: &[&str], early: bool) -> (Option<i32>, String) {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vaelab"));
    cmd.args(args).stderr(Stdio::piped());
    let child = if early {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        cmd.stdout(writer).spawn().unwrap()
    } else {
        let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(!first.is_empty(), "vaelab {args:?} printed nothing");
        child
    };
    let out = child.wait_with_output().unwrap();
    (out.status.code(), stderr(&out))
}

/// `vaelab plan FILE | head -1` (and `show`, printing with `println!`): a reader that stops
/// early ends the command quietly with exit 0, as `rg … | head` does: no panic, no backtrace,
/// no error line.
#[test]
fn a_closed_stdout_is_a_quiet_exit_0() {
    let sweep = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments/latent_dims.toml");
    let plan = ["plan", sweep.to_str().unwrap()];
    // A run folder for `show` (a manifest is all it needs to find the run).
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("r");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(
        run.join("manifest.json"),
        r#"{"id": "abc123", "status": "done", "seed": 0, "started_at": "2024-01-01T00:00:00Z",
            "ended_at": null, "duration_seconds": null, "epochs": 1, "epochs_done": 1,
            "last_good_epoch": 1, "vaelab_version": "0", "git_commit": null, "host": "h",
            "error": null}"#,
    )
    .unwrap();
    std::fs::write(run.join("config.toml"), "name = \"r\"\n").unwrap();
    let show = ["show", "abc", "--results-dir", tmp.path().to_str().unwrap()];
    for (args, early) in [(&plan[..], false), (&plan[..], true), (&show[..], true)] {
        let (code, err) = with_stdout_closed(args, early);
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe") && !err.contains("error"),
            "vaelab {args:?} (pipe closed {}): {err}",
            if early { "at once" } else { "after a line" }
        );
        assert_eq!(code, Some(0), "vaelab {args:?}: {err}");
    }
}

/// After ~1,100 Adam steps on real images, the first moments of weights whose pixels are
/// rarely lit (Fashion-MNIST's borders) have decayed for hundreds of steps since their last
/// gradient: unflushed, some sit at a few ulps above zero (120 here with the flush taken out;
/// 45.8% of `enc.0.weight`'s after 3 full epochs of the classic model), where Intel cores take
/// a microcode assist on every vector op (issue 25). Read back from the checkpoint file: no
/// tensor of the trained model or of its optimizer holds a subnormal float.
#[test]
fn a_trained_models_checkpoint_holds_no_subnormal_floats() {
    let tmp = tempfile::tempdir().unwrap();
    let body = format!(
        "data_dir = \"{}\"\nhidden = [64]\nlatent_dim = 2\nepochs = 3\nbatch_size = 16\ntrain_subset = 6000\ntest_subset = 100\niw_test_n = 0\n",
        fashion_dir()
    );
    let run = train(tmp.path(), "subnormal", &body);
    let ckpt = candle_core::safetensors::load(
        run.join("checkpoint.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let mut moments = 0;
    for (name, t) in &ckpt {
        if t.dtype() != candle_core::DType::F32 {
            continue;
        }
        let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let subnormal = v.iter().filter(|x| x.is_subnormal()).count();
        assert_eq!(subnormal, 0, "{name}: {subnormal} of {} subnormal", v.len());
        moments += usize::from(name.starts_with("optim.m."));
    }
    assert!(moments >= 4, "the checkpoint holds Adam's moments");
}

/// Ctrl-C during the final evaluation stops it as it stops an epoch: the process exits 130 in
/// seconds, not when an IWAE bound of hours ends; the trained epoch stays on disk and the run is
/// marked interrupted, so a rerun resumes at the evaluation.
#[test]
fn ctrl_c_during_the_final_evaluation_stops_it() {
    let tmp = tempfile::tempdir().unwrap();
    // One quick epoch, then K = 100000 samples on 5000 images: hours of IWAE.
    let body = format!(
        "data_dir = \"{}\"\nhidden = [64]\nlatent_dim = 5\nepochs = 1\ntrain_subset = 500\ntest_subset = 5000\niw_samples = 100000\niw_test_n = 5000\n",
        fashion_dir()
    );
    let file = run_file(tmp.path(), "evalstop", &body);
    let results = tmp.path().join("results");
    let child = Command::new(env!("CARGO_BIN_EXE_vaelab"))
        .args(["run", file.to_str().unwrap(), "--results-dir"])
        .arg(&results)
        .env("RAYON_NUM_THREADS", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let run = results.join("evalstop");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    // The epoch is on disk when its checkpoint is: from then on the run is in its evaluation.
    while !run.join("checkpoint.safetensors").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the epoch never finished"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    let sent = std::time::Instant::now();
    common::interrupt(child);
    let waited = sent.elapsed().as_secs_f64();
    assert!(
        waited < 30.0,
        "Ctrl-C waited {waited:.0} s for the evaluation"
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["status"], "interrupted", "{manifest}");
    assert_eq!(manifest["epochs_done"], 1, "{manifest}");
    let summary = read(&run.join("summary.parquet"));
    assert_eq!(
        f64s(&summary, "log_px_iw"),
        vec![None],
        "no bound was written"
    );
}

/// A conv or pixel kernel width that is misspelled, or that this CPU lacks, is bad input: exit 2
/// before any run, naming the variable and what is allowed; `none` (im2col + gemm, the portable
/// pixel loop) runs anywhere.
#[test]
fn a_bad_kernel_width_exits_2_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    let file = run_file(tmp.path(), "width", &small(""));
    let results = tmp.path().join("results");
    let args = [
        "run",
        file.to_str().unwrap(),
        "--results-dir",
        results.to_str().unwrap(),
    ];
    for var in ["VAELAB_CONV_SIMD", "VAELAB_LOOP_SIMD"] {
        let out = vaelab(&args, &[(var, "avx-512")]);
        let msg = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{msg}");
        for needle in [var, "\"avx-512\"", "avx512, avx2 and none"] {
            assert!(msg.contains(needle), "the error lacks {needle}: {msg}");
        }
        assert!(!msg.contains("panicked"), "{msg}");
        assert!(!results.exists(), "nothing may be written before the check");
    }
    let out = vaelab(
        &args,
        &[("VAELAB_CONV_SIMD", "none"), ("VAELAB_LOOP_SIMD", "none")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

/// `vaelab run FILE --results-dir RESULTS` with `envs`, to its end.
fn run_into(file: &Path, results: &Path, envs: &[(&str, &str)]) -> Output {
    vaelab(
        &[
            "run",
            file.to_str().unwrap(),
            "--results-dir",
            results.to_str().unwrap(),
        ],
        envs,
    )
}

/// A run folder's per-epoch metrics without the timing columns (which differ run to run).
fn metrics_without_timing(run: &Path) -> DataFrame {
    read(&run.join("metrics.parquet")).drop_many(["seconds", "samples_per_sec"])
}

/// Trains the PyTorch example's VAE (latent 20, Bernoulli, Adam 1e-3, batch 128) on all of
/// Fashion-MNIST for `epochs` on 2 threads; its test −ELBO per epoch and the manifest's CPU
/// line (which names the conv kernels' width).
fn headline_run(name: &str, architecture: &str, epochs: usize) -> (Vec<f64>, String) {
    let tmp = tempfile::tempdir().unwrap();
    let body = format!(
        "data_dir = \"{}\"\narchitecture = \"{architecture}\"\nlatent_dim = 20\nepochs = {epochs}\niw_test_n = 0\n",
        fashion_dir()
    );
    let file = run_file(tmp.path(), name, &body);
    let results = tmp.path().join("results");
    let out = run_into(&file, &results, &[("RAYON_NUM_THREADS", "2")]);
    assert!(out.status.success(), "vaelab failed: {}", stderr(&out));
    let m = read(&results.join(name).join("metrics.parquet"));
    let test = m
        .lazy()
        .filter(col("split").eq(lit("test")))
        .sort(["epoch"], Default::default())
        .collect()
        .unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(results.join(name).join("manifest.json")).unwrap())
            .unwrap();
    (
        f64s(&test, "neg_elbo")
            .into_iter()
            .map(Option::unwrap)
            .collect(),
        manifest["cpu"].as_str().unwrap_or("?").to_string(),
    )
}

/// The headline number: the classic model after 3 epochs lands where PyTorch's does
/// (`../shared/anchors/README.md`: test −ELBO 250.0 after epoch 3, 262.5 after epoch 1).
#[test]
fn the_classic_model_lands_within_1_nat_of_pytorch_after_3_epochs() {
    let (neg_elbo, cpu) = headline_run("classic", "mlp", 3);
    eprintln!("classic model on {cpu}: test −ELBO {neg_elbo:?} (PyTorch: 262.5, ~253, 250.0)");
    assert!((neg_elbo[2] - 250.0).abs() <= 1.0, "{neg_elbo:?}");
    assert!((neg_elbo[0] - 262.5).abs() <= 1.5, "{neg_elbo:?}");
}

/// The conv model after 2 epochs (the anchor's `--arch conv`: 257.2 / 250.7 after 1 / 2).
#[test]
fn the_conv_model_lands_within_1_5_nats_of_pytorch_after_2_epochs() {
    let (neg_elbo, cpu) = headline_run("conv", "conv", 2);
    eprintln!("conv model on {cpu}: test −ELBO {neg_elbo:?} (PyTorch: 257.2, 250.7)");
    assert!((neg_elbo[1] - 250.7).abs() <= 1.5, "{neg_elbo:?}");
}

/// A 3-epoch run killed by the fault injector at its 9th write (epoch 3's metrics), so epochs
/// 1–2 are on disk: config, manifest, then metrics, checkpoint and manifest per epoch.
fn crashed_after_two_epochs(dir: &Path, name: &str, seed: u64) -> (PathBuf, PathBuf) {
    let body = format!(
        "data_dir = \"{}\"\nhidden = [32]\nlatent_dim = 4\nepochs = 3\ntrain_subset = 500\ntest_subset = 100\niw_samples = 5\niw_test_n = 10\nseed = {seed}\n",
        fashion_dir()
    );
    let file = run_file(dir, name, &body);
    let results = dir.join("results");
    let out = run_into(&file, &results, &[("VAELAB_FAULT_ABORT_AT", "9")]);
    assert!(
        stderr(&out).contains("injected crash") && stderr(&out).contains("metrics.parquet"),
        "{}",
        stderr(&out)
    );
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(results.join(name).join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(m["epochs_done"], 2, "{m}");
    assert_eq!(m["checksums"].as_array().map(|c| c.len()), Some(2), "{m}");
    (file, results.join(name))
}

/// SHA-256 of a file, by coreutils (an independent route to the manifest's hashes).
fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn a_resume_refuses_a_corrupt_truncated_or_swapped_file_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let rerun = |file: &Path| {
        let results = tmp.path().join("results");
        run_into(file, &results, &[])
    };
    let (flipped, flipped_dir) = crashed_after_two_epochs(tmp.path(), "flipped", 0);
    let (truncated, truncated_dir) = crashed_after_two_epochs(tmp.path(), "truncated", 1);
    let (swapped, swapped_dir) = crashed_after_two_epochs(tmp.path(), "swapped", 2);
    let (older, older_dir) = crashed_after_two_epochs(tmp.path(), "older", 3);

    // The manifest's newest record is the files on disk, as sha256sum reads them.
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(flipped_dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["checksums"][0]["epoch"], 2);
    let ckpt = flipped_dir.join("checkpoint.safetensors");
    assert_eq!(m["checksums"][0]["checkpoint"], sha256sum(&ckpt));
    assert_eq!(
        m["checksums"][0]["metrics"],
        sha256sum(&flipped_dir.join("metrics.parquet"))
    );

    // Low mantissa bits of the last 8 floats: a change no loader notices.
    let mut bytes = std::fs::read(&ckpt).unwrap();
    let n = bytes.len();
    for i in (n - 32..n).step_by(4) {
        bytes[i] ^= 1;
    }
    std::fs::write(&ckpt, &bytes).unwrap();
    let metrics = truncated_dir.join("metrics.parquet");
    let len = std::fs::metadata(&metrics).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&metrics)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    std::fs::copy(
        flipped_dir.join("metrics.parquet"),
        swapped_dir.join("metrics.parquet"),
    )
    .unwrap();

    for (file, dir, bad) in [
        (&flipped, &flipped_dir, "checkpoint.safetensors"),
        (&truncated, &truncated_dir, "metrics.parquet"),
        (&swapped, &swapped_dir, "metrics.parquet"),
    ] {
        // Refused twice: the refusal keeps the records it checked against.
        for _ in 0..2 {
            let out = rerun(file);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(1), "{err}");
            assert!(
                err.contains(&dir.join(bad).display().to_string())
                    && err.contains("does not match the SHA-256")
                    && err.contains("--force"),
                "{err}"
            );
            let m: serde_json::Value =
                serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
            assert_eq!(m["status"], "failed", "{m}");
        }
    }
    // A run folder of a vaelab before hashes (no `checksums`, `sha256`, `cpu`, `git_dirty`)
    // resumes unchecked and finishes like an uninterrupted run.
    let path = older_dir.join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    for key in ["checksums", "sha256", "cpu", "git_dirty"] {
        m.as_object_mut().unwrap().remove(key);
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    let out = rerun(&older);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("epoch 3/3") && !stderr(&out).contains("epoch 1/3"),
        "resumed at epoch 3: {}",
        stderr(&out)
    );
    let resumed = metrics_without_timing(&older_dir);
    let body = std::fs::read_to_string(&older)
        .unwrap()
        .replace("name = \"older\"\n", "");
    let uninterrupted = metrics_without_timing(&train(&tmp.path().join("fresh"), "older", &body));
    assert!(
        resumed.equals_missing(&uninterrupted),
        "{resumed}\n{uninterrupted}"
    );

    // --force trains the run from the start and records fresh hashes.
    let results = tmp.path().join("results");
    let out = vaelab(
        &[
            "run",
            flipped.to_str().unwrap(),
            "--results-dir",
            results.to_str().unwrap(),
            "--force",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(flipped_dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["status"], "done");
    assert_eq!(m["checksums"][0]["epoch"], 3);
    assert_eq!(m["checksums"][0]["checkpoint"], sha256sum(&ckpt));
    assert_eq!(
        m["sha256"]["summary.parquet"],
        sha256sum(&flipped_dir.join("summary.parquet"))
    );
    // `show` checks a finished run's files against the manifest: all ok, then the changed one.
    let id = m["id"].as_str().unwrap().to_string();
    let show = |_: ()| {
        let out = vaelab(
            &["show", &id[..8], "--results-dir", results.to_str().unwrap()],
            &[],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let before = show(());
    for name in [
        "checkpoint.safetensors",
        "metrics.parquet",
        "summary.parquet",
        "estep.parquet",
    ] {
        assert!(
            before.contains(&format!("  {name}: ok")),
            "{name}: {before}"
        );
    }
    let mut bytes = std::fs::read(flipped_dir.join("summary.parquet")).unwrap();
    let last = bytes.len() - 20;
    bytes[last] ^= 0x40;
    std::fs::write(flipped_dir.join("summary.parquet"), &bytes).unwrap();
    let after = show(());
    assert!(
        after.contains("  summary.parquet: CHANGED since vaelab wrote it"),
        "{after}"
    );
    assert!(after.contains("  checkpoint.safetensors: ok"), "{after}");
}

/// y = W x + b for a candle-layout weight (out, in), in f64.
fn affine(w: &[Vec<f64>], b: &[f64], x: &[f64]) -> Vec<f64> {
    w.iter()
        .zip(b)
        .map(|(row, bi)| bi + row.iter().zip(x).map(|(a, c)| a * c).sum::<f64>())
        .collect()
}

fn relu(v: Vec<f64>) -> Vec<f64> {
    v.into_iter().map(|x| x.max(0.0)).collect()
}

/// The test −ELBO, recon and KL of a trained run, recomputed here in f64 from its checkpoint
/// and the IDX test images (not through vaelab's model, ops or metrics): the KL in closed
/// form, the recon by 64 fresh ε per image. The logged recon is one ε per image, so it may
/// differ from this by its Monte-Carlo error (4 standard errors allowed).
#[test]
fn the_test_elbo_matches_a_recomputation_from_the_checkpoint_in_f64() {
    let tmp = tempfile::tempdir().unwrap();
    let run = train(tmp.path(), "vae", &small(""));
    let ckpt = candle_core::safetensors::load(
        run.join("checkpoint.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let matrix = |name: &str| -> Vec<Vec<f64>> {
        let t = ckpt
            .get(name)
            .unwrap_or_else(|| panic!("no {name} in {:?}", ckpt.keys().collect::<Vec<_>>()));
        t.to_dtype(candle_core::DType::F64)
            .unwrap()
            .to_vec2()
            .unwrap()
    };
    let vector = |name: &str| -> Vec<f64> {
        ckpt[name]
            .to_dtype(candle_core::DType::F64)
            .unwrap()
            .to_vec1()
            .unwrap()
    };
    let (e0, e0b, eh, ehb) = (
        matrix("enc.0.weight"),
        vector("enc.0.bias"),
        matrix("enc.head.weight"),
        vector("enc.head.bias"),
    );
    let (d0, d0b, dh, dhb) = (
        matrix("dec.0.weight"),
        vector("dec.0.bias"),
        matrix("dec.head.weight"),
        vector("dec.head.bias"),
    );
    let latent = 5;
    let images =
        vaelab_data::read_idx(&Path::new(FASHION).join("t10k-images-idx3-ubyte.gz"), 3).unwrap();
    let n = 300;
    let mut state = 7u64;
    let mut normal = || {
        let mut u = || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        };
        let (a, b) = (u().max(1e-300), u());
        (-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos()
    };
    let samples = 64;
    let (mut kl, mut recon, mut recon_sq) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let x: Vec<f64> = images.data[i * 784..(i + 1) * 784]
            .iter()
            .map(|&p| f64::from(f32::from(p) / 255.0))
            .collect();
        let out = affine(&eh, &ehb, &relu(affine(&e0, &e0b, &x)));
        let (mu, logvar) = out.split_at(latent);
        kl += 0.5
            * mu.iter()
                .zip(logvar)
                .map(|(m, lv)| m * m + lv.exp() - 1.0 - lv)
                .sum::<f64>();
        for _ in 0..samples {
            let z: Vec<f64> = mu
                .iter()
                .zip(logvar)
                .map(|(m, lv)| m + (0.5 * lv).exp() * normal())
                .collect();
            let logits = affine(&dh, &dhb, &relu(affine(&d0, &d0b, &z)));
            // −log p(x|z) of the Bernoulli on [0, 1] pixels: softplus(l) − x·l per pixel.
            let r: f64 = logits
                .iter()
                .zip(&x)
                .map(|(l, xi)| l.max(0.0) + (-l.abs()).exp().ln_1p() - xi * l)
                .sum();
            recon += r;
            recon_sq += r * r;
        }
    }
    let draws = (n * samples) as f64;
    let (kl, recon) = (kl / n as f64, recon / draws);
    // The logged recon averages n single draws: its standard error.
    let se = ((recon_sq / draws - recon * recon) / n as f64).sqrt();
    let m = read(&run.join("metrics.parquet"));
    let last_test = 3; // rows: train 1, test 1, train 2, test 2
    let (logged_kl, logged_recon, logged_neg_elbo) = (
        f64s(&m, "kl")[last_test].unwrap(),
        f64s(&m, "recon")[last_test].unwrap(),
        f64s(&m, "neg_elbo")[last_test].unwrap(),
    );
    eprintln!(
        "f64 from the checkpoint: KL {kl:.5}, recon {recon:.3} ± {se:.3}; logged: KL {logged_kl:.5}, recon {logged_recon:.3}, −ELBO {logged_neg_elbo:.3}"
    );
    assert!(
        (logged_kl - kl).abs() < 1e-4 * kl,
        "KL {logged_kl} vs {kl} in f64"
    );
    assert!(
        (logged_recon - recon).abs() < 4.0 * se,
        "recon {logged_recon} vs {recon} ± {se}"
    );
    assert!(
        (logged_neg_elbo - (recon + kl)).abs() < 4.0 * se,
        "−ELBO {logged_neg_elbo} vs {} ± {se}",
        recon + kl
    );
}

/// The test split's last (epoch 2) row of a small run with `extra` keys, and its summary's
/// `data_levels` and `nll_bpd`.
fn last_test_row(dir: &Path, name: &str, extra: &str) -> (f64, f64, f64, i64, f64) {
    let run = train(dir, name, &small(extra));
    let m = read(&run.join("metrics.parquet"));
    let get = |c: &str| f64s(&m, c)[3].unwrap();
    let s = read(&run.join("summary.parquet"));
    let levels = s
        .column("data_levels")
        .unwrap()
        .i64()
        .unwrap()
        .get(0)
        .unwrap();
    (
        get("recon"),
        get("kl"),
        get("kl_weight"),
        levels,
        f64s(&s, "nll_bpd")[0].unwrap(),
    )
}

/// Free bits, KL warm-up and static binarization change training the way they should: free
/// bits let the KL grow (its gradient is off below λ per dimension), a warm-up's small early β
/// leaves more KL than β = 1 from the start and logs the ramp, and a statically binarized run
/// trains on other inputs than the grey one and is scored on 2 levels, under a fair coin's
/// 1 bit/dim. (Its recon stays near the grey run's: the Bernoulli's expected loss over a draw
/// b ~ Bernoulli(x) is the grey loss itself.)
#[test]
fn free_bits_warm_up_and_static_binarization_train_as_they_should() {
    let tmp = tempfile::tempdir().unwrap();
    let (plain_recon, plain_kl, plain_beta, plain_levels, plain_bpd) =
        last_test_row(tmp.path(), "plain", "");
    let (_, free_kl, ..) = last_test_row(tmp.path(), "free", "free_bits = 2.0\n");
    let (_, warm_kl, warm_beta, ..) = last_test_row(tmp.path(), "warm", "kl_warmup_epochs = 10\n");
    let (static_recon, _, _, static_levels, static_bpd) =
        last_test_row(tmp.path(), "static", "binarize = \"static\"\n");
    eprintln!(
        "KL plain {plain_kl:.2}, free bits 2 {free_kl:.2}, warm-up {warm_kl:.2} (β {warm_beta}); grey: recon {plain_recon:.2}, {plain_bpd:.3} bits/dim of {plain_levels} levels; static binary: recon {static_recon:.2}, {static_bpd:.3} bits/dim of {static_levels} levels"
    );
    assert_eq!(plain_beta, 1.0);
    assert!(
        free_kl > plain_kl + 1.0,
        "free bits: KL {free_kl} vs {plain_kl}"
    );
    assert!(
        warm_beta > 0.0 && warm_beta < 0.3,
        "β after 2 of 10 warm-up epochs: {warm_beta}"
    );
    assert!(warm_kl > plain_kl, "warm-up: KL {warm_kl} vs {plain_kl}");
    assert_ne!(static_recon, plain_recon, "binarization changed nothing");
    assert_eq!((plain_levels, static_levels), (256, 2));
    assert!(
        static_bpd > 0.0 && static_bpd < 1.0,
        "{static_bpd} bits/dim on binary pixels"
    );
    assert!(plain_bpd > 1.0, "{plain_bpd} bits/dim on 8-bit pixels");
}

/// A finished run is skipped untouched; `--force` retrains it, on `--threads 2`, to the same
/// numbers.
#[test]
fn a_finished_run_is_skipped_and_force_retrains_it_to_the_same_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let run = train(tmp.path(), "again", &small(""));
    let file = tmp.path().join("again.toml");
    let results = tmp.path().join("results");
    let manifest = std::fs::read(run.join("manifest.json")).unwrap();
    let metrics = metrics_without_timing(&run);
    let args = [
        "run",
        file.to_str().unwrap(),
        "--results-dir",
        results.to_str().unwrap(),
    ];
    let skip = vaelab(&args, &[]);
    assert!(
        skip.status.success() && stderr(&skip).contains("already done in"),
        "{}",
        stderr(&skip)
    );
    assert_eq!(
        std::fs::read(run.join("manifest.json")).unwrap(),
        manifest,
        "a done run is not touched"
    );
    let mut forced = args.to_vec();
    forced.extend(["--force", "--threads", "2"]);
    let out = vaelab(&forced, &[]);
    assert!(
        out.status.success() && stderr(&out).contains("done ->"),
        "{}",
        stderr(&out)
    );
    let again = metrics_without_timing(&run);
    assert!(again.equals_missing(&metrics), "{again}\n{metrics}");
}

/// Each conv path this CPU can run trains a small conv VAE: the direct kernels at 16 and at 8
/// lanes give the same numbers bit for bit, and im2col + gemm (`none`, another summation
/// order) the same up to rounding. The test says which paths ran.
#[test]
fn every_conv_path_this_cpu_runs_trains_the_same_model() {
    let tmp = tempfile::tempdir().unwrap();
    let body = format!(
        "data_dir = \"{}\"\narchitecture = \"conv\"\nlatent_dim = 4\nepochs = 1\ntrain_subset = 256\ntest_subset = 128\niw_test_n = 0\n",
        fashion_dir()
    );
    let mut ran = Vec::new();
    for width in ["avx512", "avx2", "none"] {
        let file = run_file(&tmp.path().join(width), "conv", &body);
        let results = tmp.path().join(width).join("results");
        let out = run_into(&file, &results, &[("VAELAB_CONV_SIMD", width)]);
        if out.status.code() == Some(2) && stderr(&out).contains("this CPU lacks it") {
            eprintln!(
                "conv path {width}: not on this CPU ({})",
                stderr(&out).trim()
            );
            continue;
        }
        assert!(out.status.success(), "{width}: {}", stderr(&out));
        let m = read(&results.join("conv/metrics.parquet"));
        let manifest = std::fs::read_to_string(results.join("conv/manifest.json")).unwrap();
        let cpu = manifest
            .lines()
            .find(|l| l.contains("\"cpu\""))
            .unwrap_or("")
            .trim()
            .to_string();
        eprintln!("conv path {width}: ran; {cpu}");
        ran.push((width, f64s(&m, "loss"), f64s(&m, "neg_elbo")));
    }
    assert!(
        ran.iter().any(|r| r.0 == "none"),
        "im2col runs on every CPU"
    );
    let direct: Vec<_> = ran.iter().filter(|r| r.0 != "none").collect();
    for pair in direct.windows(2) {
        assert_eq!(pair[0].1, pair[1].1, "{} vs {}: loss", pair[0].0, pair[1].0);
        assert_eq!(
            pair[0].2, pair[1].2,
            "{} vs {}: −ELBO",
            pair[0].0, pair[1].0
        );
    }
    let none = ran.iter().find(|r| r.0 == "none").unwrap();
    for d in &direct {
        for (a, b) in d.2.iter().zip(&none.2) {
            let (a, b) = (a.unwrap(), b.unwrap());
            assert!((a - b).abs() < 1e-3 * b.abs(), "{}: {a} vs none: {b}", d.0);
        }
    }
}

/// The manifest names the commit the binary was built from, not the folder it runs in: run
/// from a folder outside any git checkout, it still holds the build's commit, and
/// `vaelab --version` prints it.
#[test]
fn the_manifest_names_the_builds_commit_wherever_vaelab_runs() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(&repo)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let Some(head) = head else {
        eprintln!("not built from a git checkout: nothing to compare");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let file = run_file(
        tmp.path(),
        "where",
        &small("epochs = 1\n").replace("epochs = 2\n", ""),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_vaelab"))
        .args(["run", file.to_str().unwrap(), "--results-dir", "results"])
        .current_dir(tmp.path())
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let m: serde_json::Value = serde_json::from_slice(
        &std::fs::read(tmp.path().join("results/where/manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(m["git_commit"], head.as_str(), "{m}");
    assert!(m["git_dirty"].is_boolean(), "{m}");
    let version = Command::new(env!("CARGO_BIN_EXE_vaelab"))
        .arg("--version")
        .output()
        .unwrap();
    let version = String::from_utf8_lossy(&version.stdout).into_owned();
    assert!(version.contains(&head), "{version}");
}

/// A run file's name reused with other keys is another run (another id) in the same folder:
/// it trains from epoch 1, never on from the checkpoint the old run left there.
#[test]
fn a_folder_left_by_another_run_is_never_resumed_from() {
    let tmp = tempfile::tempdir().unwrap();
    let (file, dir) = crashed_after_two_epochs(tmp.path(), "reused", 5);
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("seed = 5", "seed = 6");
    std::fs::write(&file, &text).unwrap();
    let results = tmp.path().join("results");
    let out = run_into(&file, &results, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("epoch 1/3"),
        "trained on from the other run's checkpoint: {}",
        stderr(&out)
    );
    let got = metrics_without_timing(&dir);
    let body = text.replace("name = \"reused\"\n", "");
    let want = metrics_without_timing(&train(&tmp.path().join("fresh"), "reused", &body));
    assert!(got.equals_missing(&want), "{got}\n{want}");
}

/// An IWAE run through the binary: the summary names its objective and k, its training loss
/// is the k-draw bound (below the same epoch's −ELBO from those draws, by Jensen), its test
/// row reports the one-sample ELBO with β = 1 (loss = −ELBO), and the final IWAE bound is above
/// that ELBO.
#[test]
fn an_iwae_run_trains_on_the_bound_and_reports_the_common_yardsticks() {
    let tmp = tempfile::tempdir().unwrap();
    let run = train(
        tmp.path(),
        "iwae",
        &small("objective = \"iwae\"\ntrain_samples = 8\n"),
    );
    let s = read(&run.join("summary.parquet"));
    assert_eq!(common::strings(&s, "objective"), ["iwae"]);
    assert_eq!(
        s.column("train_samples").unwrap().i64().unwrap().get(0),
        Some(8)
    );
    let m = read(&run.join("metrics.parquet"));
    let (loss, neg_elbo) = (f64s(&m, "loss"), f64s(&m, "neg_elbo"));
    for row in 0..4 {
        let (l, e) = (loss[row].unwrap(), neg_elbo[row].unwrap());
        if row % 2 == 0 {
            assert!(l < e - 0.5, "train row {row}: IWAE loss {l} vs −ELBO {e}");
        } else {
            assert!(
                (l - e).abs() < 1e-6 * e,
                "test row {row}: loss {l} vs −ELBO {e}"
            );
        }
    }
    let (log_px, elbo) = (
        f64s(&s, "log_px_iw")[0].unwrap(),
        f64s(&s, "elbo_iw")[0].unwrap(),
    );
    assert!(log_px > elbo, "log p(x) {log_px} vs ELBO {elbo}");
}

/// A two-layer VAE trains through the binary and every measurement lands: the KL of each
/// layer's dimensions, the IWAE bound above the ELBO, bits/dim and the gap split from an
/// E-step over both layers; a crash after two epochs resumes to the uninterrupted numbers.
#[test]
fn a_two_layer_run_reports_every_measurement_and_resumes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let body =
        small("latent_layers = [6, 3]\nlatent_hidden = [16]\ngap_test_n = 20\nestep_iters = 20\n")
            .replace("epochs = 2", "epochs = 3");
    let run = train(tmp.path(), "two", &body);
    let m = read(&run.join("metrics.parquet"));
    let dims = kl_dims(&m, 1);
    assert_eq!(dims.len(), 9, "one KL per dimension of both layers");
    let s = read(&run.join("summary.parquet"));
    let get = |c: &str| f64s(&s, c)[0].unwrap_or_else(|| panic!("{c} is null"));
    let (log_px, elbo) = (get("log_px_iw"), get("elbo_iw"));
    assert!(log_px > elbo, "log p(x) {log_px} vs ELBO {elbo}");
    let (amortization, approximation) = (get("amortization_gap"), get("approximation_gap"));
    assert!(
        amortization > 0.0,
        "the E-step over both layers improves on the encoder: {amortization}"
    );
    assert!(approximation.is_finite() && get("nll_bpd") > 0.0);
    let by_layer = common::strings(&s, "active_units_by_layer");
    let counts: Vec<i64> = by_layer[0].split('+').map(|c| c.parse().unwrap()).collect();
    let total = s
        .column("active_units")
        .unwrap()
        .i64()
        .unwrap()
        .get(0)
        .unwrap();
    assert!(
        counts.len() == 2
            && counts[0] <= 6
            && counts[1] <= 3
            && counts.iter().sum::<i64>() == total,
        "{by_layer:?} vs {total} active units"
    );
    // The same run crashed after epoch 2 and resumed gives the same metrics.
    let results = tmp.path().join("crashed");
    let file = run_file(tmp.path(), "two", &body);
    let out = run_into(&file, &results, &[("VAELAB_FAULT_ABORT_AT", "9")]);
    assert!(stderr(&out).contains("injected crash"), "{}", stderr(&out));
    let out = run_into(&file, &results, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        metrics_without_timing(&results.join("two")),
        metrics_without_timing(&run)
    );
}

/// A VampPrior VAE trains through the binary: its KL is one sampled number per image (no
/// per-dimension split), the IWAE bound sits above the ELBO, the E-step splits the gap, and the
/// checkpoint holds the learned pseudo-inputs, which the run learned away from their start.
#[test]
fn a_vampprior_run_reports_a_sampled_kl_and_saves_its_pseudo_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let run = train(
        tmp.path(),
        "vamp",
        &small("prior = \"vamp\"\npseudo_inputs = 12\ngap_test_n = 20\nestep_iters = 20\n"),
    );
    let s = read(&run.join("summary.parquet"));
    assert_eq!(common::strings(&s, "prior"), ["vamp"]);
    assert_eq!(
        s.column("pseudo_inputs").unwrap().i64().unwrap().get(0),
        Some(12)
    );
    let m = read(&run.join("metrics.parquet"));
    assert_eq!(
        m.column("kl_per_dim").unwrap().null_count(),
        m.height(),
        "a mixture prior's KL does not split by dimension"
    );
    assert!(f64s(&m, "kl").iter().all(|k| k.is_some_and(f64::is_finite)));
    let get = |c: &str| f64s(&s, c)[0].unwrap_or_else(|| panic!("{c} is null"));
    let (log_px, elbo) = (get("log_px_iw"), get("elbo_iw"));
    assert!(log_px > elbo, "log p(x) {log_px} vs ELBO {elbo}");
    assert!(get("amortization_gap").is_finite() && get("approximation_gap").is_finite());
    assert!(get("nll_bpd") > 0.0);
    let ckpt = candle_core::safetensors::load(
        run.join("checkpoint.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let u = ckpt
        .get("prior.pseudo_inputs")
        .expect("the pseudo-inputs are saved");
    assert_eq!(u.dims(), [12, 784]);
    // They are trained: Adam's first moment of every pixel is nonzero (a frozen or detached
    // parameter keeps zeros), and 16 steps of lr 1e-3 spread them past the start's N(0.05, 0.01²).
    let m = ckpt
        .get("optim.m.prior.pseudo_inputs")
        .expect("Adam's state of the pseudo-inputs");
    let m: Vec<f32> = m.flatten_all().unwrap().to_vec1().unwrap();
    let zeros = m.iter().filter(|g| **g == 0.0).count();
    assert!(
        zeros < m.len() / 100,
        "{zeros} of {} moments are zero",
        m.len()
    );
    let v: Vec<f64> = u
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect();
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
    assert!(
        std > 0.0115,
        "the pseudo-inputs did not move: std {std:.4} around {mean:.4}"
    );
}

/// The decoded cache: a first run decodes Fashion-MNIST and writes it, a second process maps it,
/// a damaged file is rebuilt rather than read, and with the cache off the pixels are decoded
/// into memory; every way trains the same model to the same metrics.
#[test]
fn the_decoded_cache_is_mapped_by_the_next_process_and_changes_no_number() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let cache_env = cache.to_str().unwrap();
    let file = run_file(tmp.path(), "cached", &small(""));
    let run = |results: &str, env: &str, says: &str| {
        let results = tmp.path().join(results);
        let out = run_into(&file, &results, &[("VAELAB_CACHE_DIR", env)]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stderr(&out).contains(says),
            "not {says:?}: {}",
            stderr(&out)
        );
        let run = results.join("cached");
        let weights = std::fs::read(run.join("checkpoint.safetensors")).unwrap();
        (metrics_without_timing(&run), weights)
    };
    let first = run("first", cache_env, "decoded and cached in");
    let files: Vec<PathBuf> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(
        run("mapped", cache_env, "mapped from the decoded cache"),
        first
    );
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let at = bytes.len() - 1000;
    bytes[at] ^= 0x10;
    std::fs::write(&files[0], &bytes).unwrap();
    assert_eq!(run("rebuilt", cache_env, "checksum mismatch"), first);
    assert_eq!(run("off", "off", "decoded into memory (no cache)"), first);
}

/// AIS and BDMC in a real run: their columns in the summary, and the gap split against the
/// tightest of its three lower bounds.
#[test]
fn a_run_with_ais_and_bdmc_reports_them_and_splits_its_gap_against_the_tightest_bound() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = "gap_test_n = 8\nais_test_n = 8\nbdmc_n = 4\nais_steps = 20\nais_chains = 4\nais_leapfrog = 3\n";
    let run = train(
        tmp.path(),
        "ais",
        &small(keys).replace("iw_test_n = 40", "iw_test_n = 8"),
    );
    let s = read(&run.join("summary.parquet"));
    let get = |c: &str| f64s(&s, c)[0].unwrap_or_else(|| panic!("{c} is null"));
    let ais = get("log_px_ais");
    assert!(ais < 0.0 && ais.is_finite(), "{ais}");
    assert!(get("ais_chain_sd") >= 0.0 && get("ais_seconds") > 0.0);
    let acc = get("ais_acceptance");
    assert!(acc > 0.0 && acc <= 1.0, "{acc}");
    let (lo, up, width) = (get("bdmc_lower"), get("bdmc_upper"), get("bdmc_width"));
    assert!((up - lo - width).abs() < 1e-9 && lo.is_finite() && up.is_finite());
    // The split's log p(x): the largest of IWAE with q, IWAE with q* and AIS, on the same 8
    // images, and named.
    let from = common::strings(&s, "gap_log_px_from");
    let tightest = [
        ("iwae_q", get("log_px_iw")),
        ("iwae_qstar", get("log_px_iw_star")),
        ("ais", ais),
    ]
    .into_iter()
    .max_by(|a, b| a.1.total_cmp(&b.1))
    .unwrap();
    assert_eq!(from, [tightest.0]);
    assert_eq!(get("gap_log_px"), tightest.1);
    assert!(get("approximation_gap") >= 0.0);
    let sum = get("elbo_iw") + get("amortization_gap") + get("approximation_gap");
    assert!((sum - tightest.1).abs() < 1e-9, "{sum} vs {}", tightest.1);
}

/// A conv run is the same model on 1 thread and on 2, run after run: its weight gradients sum
/// the batch in a fixed grouping (before, a 2-thread conv run differed from itself).
#[test]
fn a_conv_run_gives_the_same_checkpoint_on_one_and_two_threads() {
    let tmp = tempfile::tempdir().unwrap();
    let file = run_file(
        tmp.path(),
        "conv",
        &small("architecture = \"conv\"\nchannels = [16, 32]\ngap_test_n = 0\n")
            .replace("iw_test_n = 40", "iw_test_n = 0"),
    );
    let train = |threads: &str, i: usize| {
        let results = tmp.path().join(format!("r{threads}-{i}"));
        let out = vaelab(
            &[
                "run",
                file.to_str().unwrap(),
                "--results-dir",
                results.to_str().unwrap(),
                "--threads",
                threads,
            ],
            &[],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let run = results.join("conv");
        let weights = std::fs::read(run.join("checkpoint.safetensors")).unwrap();
        (metrics_without_timing(&run), weights)
    };
    let one = train("1", 0);
    for i in 0..2 {
        assert!(train("2", i) == one, "2 threads, run {i}: another model");
    }
}
