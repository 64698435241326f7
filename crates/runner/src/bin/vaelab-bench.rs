//! `vaelab-bench`: epoch time of the classic VAE (784-400-20, Bernoulli, batch 128, Adam 1e-3)
//! on Fashion-MNIST, or with `--conv` of the anchor's conv VAE, as images/s and GFLOP/s; with
//! `--whole-run` the run as the shipped sweeps configure it, final evaluation included; with
//! `--sweep-file` a whole sweep through the real binary, broken into its parts. Every report
//! starts with the CPU line (model, family/model, AVX-512 flags). Threads come from
//! RAYON_NUM_THREADS.

use anyhow::Context;
use candle_core::Device;
use clap::Parser;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;
use vaelab::config::RunKeys;
use vaelab::dispatch::{run_plan, Dispatch};
use vaelab::plan::{Plan, PlannedRun};
use vaelab_data::{DataSource, Dataset, DatasetName, SplitKind};
use vaelab_vae::BodyKind;
use vaelab_vae::{Kernels, Trainer};

#[global_allocator]
static GLOBAL: vaelab::alloc::Allocator = vaelab::alloc::Allocator {};

/// Times training epochs of the classic VAE.
#[derive(Parser)]
struct Args {
    /// Epochs to train; the first is reported apart as warm-up.
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// A folder of Fashion-MNIST IDX files (default: the Debian package, then hf-hub).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Latent size.
    #[arg(long, default_value_t = 20)]
    latent: usize,
    /// Also time the IWAE bound with this many samples on 1000 test images (0: skip).
    #[arg(long, default_value_t = 0)]
    iw_samples: usize,
    /// Also time a sweep of this many runs (seeds 0..N) under both dispatch strategies.
    #[arg(long, default_value_t = 0)]
    sweep_runs: usize,
    /// After training, split the ELBO gap with the explicit E-step on this many independent
    /// draws of the estimators (IWAE, E-step ε, ELBO* samples): their spread is the Monte-Carlo
    /// error of each gap. Prints the E-step's convergence curve of the first draw.
    #[arg(long, default_value_t = 0)]
    gap_draws: usize,
    /// Adam steps of the E-step for --gap-draws.
    #[arg(long, default_value_t = 200)]
    estep_iters: usize,
    /// The E-step's early stop (the run key `estep_tol`; 0: all --estep-iters steps).
    #[arg(long, default_value_t = 0.0)]
    estep_tol: f64,
    /// Test images of the gap split for --gap-draws (and of its IWAE bound).
    #[arg(long, default_value_t = 1000)]
    gap_test_n: usize,
    /// The training objective (`elbo` or `iwae`), as the run key.
    #[arg(long, default_value = "elbo")]
    objective: String,
    /// z draws per image and step (k), as the run key `train_samples`.
    #[arg(long, default_value_t = 1)]
    train_samples: usize,
    /// Stochastic layers, as the run key `latent_layers` (e.g. `20,10`: the two-layer model on
    /// the classic body; replaces --latent).
    #[arg(long, value_delimiter = ',')]
    latent_layers: Vec<usize>,
    /// Time the DCGAN-style conv VAE of the anchor (`torch_vae.py --arch conv`) instead.
    #[arg(long)]
    conv: bool,
    /// Run candle's stock ops instead of the fused kernels (what the fusing buys).
    #[arg(long)]
    reference: bool,
    /// Only time the fused per-pixel likelihood kernels (ns per pixel, forward and with the
    /// gradient), every family as a density and as an 8-bit mass, on the current pool.
    #[arg(long)]
    pixel_kernels: bool,
    /// Time the whole run as experiments/latent_dims.toml configures one (its IWAE bound,
    /// K = 1000 unless --iw-samples says otherwise, on 1000 test images, and the E-step gap
    /// split after the epochs): prints the seconds of training, per-epoch tests, IWAE and
    /// E-step, and their sum.
    #[arg(long)]
    whole_run: bool,
    /// Only time this sweep file end to end with the real `vaelab sweep` (build excluded, into a
    /// temporary folder), then break the runs' seconds into training, per-epoch tests, IWAE
    /// and E-step from their Parquet tables.
    #[arg(long)]
    sweep_file: Option<PathBuf>,
}

/// The gap split on `draws` independent estimator streams: each draw's numbers, their mean and
/// standard deviation, and the first draw's E-step curve.
fn gap_draws(trainer: &Trainer, draws: usize) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for draw in 0..draws {
        let iw = trainer
            .iwae_with(None, draw)?
            .context("the gap split needs a VAE and iw_samples > 0")?;
        let gap = trainer
            .gap_split_with(&iw, draw)?
            .context("gap_test_n is 0")?;
        if draw == 0 {
            let c = &gap.curve;
            let at: Vec<String> = [0, 10, 25, 50, 100, 200, 300, 500, 750, 1000, 1500, 2000]
                .iter()
                .filter(|&&t| t < c.len())
                .map(|&t| format!("{t}:{:.3}", c[t]))
                .collect();
            println!("ESTEP_CURVE {}", at.join(" "));
        }
        println!(
            "GAP draw={draw} images={} elbo={:.3} elbo_star={:.3} log_px={:.3} amortization={:.3} approximation={:.3} steps={:.1} seconds={:.1}",
            gap.images, gap.elbo, gap.elbo_star, gap.log_px, gap.amortization_gap, gap.approximation_gap, gap.estep_steps, gap.seconds
        );
        rows.push([
            gap.elbo,
            gap.elbo_star,
            gap.log_px,
            gap.amortization_gap,
            gap.approximation_gap,
        ]);
    }
    let stat = |j: usize| {
        let v: Vec<f64> = rows.iter().map(|r| r[j]).collect();
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (v.len().max(2) - 1) as f64;
        format!("{mean:.3}±{:.3}", var.sqrt())
    };
    println!(
        "GAP_SPREAD draws={draws} elbo={} elbo_star={} log_px={} amortization={} approximation={}",
        stat(0),
        stat(1),
        stat(2),
        stat(3),
        stat(4)
    );
    Ok(())
}

/// ns per pixel of every likelihood kernel on 2000 × 784 decoder outputs.
fn pixel_kernels() -> anyhow::Result<()> {
    use candle_core::{Tensor, Var};
    use vaelab_vae::{Likelihood, Mass};
    let dev = Device::Cpu;
    let (rows, d) = (2000, 784);
    let on = |mass| Likelihood::Discretized { mass, levels: 256 };
    let floor = vaelab_vae::LOG_SCALE_FLOOR;
    for lik in [
        Likelihood::Bernoulli,
        Likelihood::Gaussian { sigma: 0.1 },
        Likelihood::GaussianLearned,
        Likelihood::Laplace { scale: 0.1 },
        Likelihood::ContinuousBernoulli,
        on(Mass::ContinuousBernoulli),
        on(Mass::Gaussian { sigma: 0.1 }),
        on(Mass::GaussianLearned {
            log_sigma_min: floor,
        }),
        on(Mass::Laplace { scale: 0.1 }),
        on(Mass::Logistic),
    ] {
        let p = lik.params_per_pixel();
        let params: Vec<f32> = (0..rows * p * d)
            .map(|i| ((i % 97) as f32 / 97.0 - 0.5) * 6.0)
            .collect();
        let x: Vec<f32> = (0..d).map(|i| (i % 256) as f32 / 255.0).collect();
        let xt = Tensor::from_vec(x, (1, d), &dev)?;
        let var = Var::from_vec(params, (rows, p * d), &dev)?;
        let reps = 5;
        let time = |f: &dyn Fn() -> anyhow::Result<()>| -> anyhow::Result<f64> {
            f()?;
            let start = Instant::now();
            for _ in 0..reps {
                f()?;
            }
            Ok(start.elapsed().as_secs_f64() * 1e9 / (reps * rows * d) as f64)
        };
        let fwd = time(&|| {
            vaelab_vae::likelihood::log_prob(
                vaelab_vae::Kernels::Fused,
                lik,
                &var.as_tensor().detach(),
                &xt,
            )?;
            Ok(())
        })?;
        let grad = time(&|| {
            vaelab_vae::likelihood::log_prob(
                vaelab_vae::Kernels::Fused,
                lik,
                var.as_tensor(),
                &xt,
            )?
            .sum_all()?
            .backward()?;
            Ok(())
        })?;
        println!("PIXEL {lik:?}: forward {fwd:.2} ns/pixel, with gradient {grad:.2} ns/pixel");
    }
    Ok(())
}

/// Times the real sweep dispatcher: `runs` classic runs (seeds 0..runs, no IWAE), `jobs` at a
/// time with `threads` each, results written to a temporary folder; returns the wall seconds.
fn sweep(
    data: Dataset,
    keys: &RunKeys,
    runs: usize,
    jobs: usize,
    threads: usize,
) -> anyhow::Result<(f64, Dataset)> {
    let plan = Plan {
        name: "bench".into(),
        description: String::new(),
        jobs: Some(jobs),
        runs: (0..runs as u64)
            .map(|seed| {
                let keys = RunKeys {
                    seed,
                    ..keys.clone()
                };
                PlannedRun {
                    id: keys.run_id(),
                    keys,
                }
            })
            .collect(),
        merged: 0,
        excluded: 0,
        notes: Vec::new(),
        source: "vaelab-bench".into(),
        slurm: Default::default(),
        early_stop: None,
    };
    let tmp = tempfile::tempdir()?;
    let data = HashMap::from([(keys.data_source(), data)]);
    let how = Dispatch {
        jobs,
        threads,
        force: true,
        device: Device::Cpu,
        resume_pruned: false,
    };
    let start = Instant::now();
    run_plan(&plan, tmp.path(), &data, &how, &AtomicBool::new(false))?;
    let wall = start.elapsed().as_secs_f64();
    let data = data
        .into_values()
        .next()
        .ok_or_else(|| anyhow::anyhow!("dataset lost"))?;
    Ok((wall, data))
}

/// Runs `vaelab sweep FILE` (the binary beside this one) into a temporary folder, timed, then
/// sums each run's seconds by part from its metrics and summary tables.
fn sweep_end_to_end(file: &Path) -> anyhow::Result<()> {
    let bin = std::env::current_exe()?.with_file_name("vaelab");
    let tmp = tempfile::tempdir()?;
    let start = Instant::now();
    let status = std::process::Command::new(&bin)
        .arg("sweep")
        .arg(file)
        .arg("--results-dir")
        .arg(tmp.path())
        .stdout(std::process::Stdio::null())
        .status()
        .with_context(|| format!("starting {}", bin.display()))?;
    let wall = start.elapsed().as_secs_f64();
    anyhow::ensure!(status.success(), "vaelab sweep {} failed", file.display());
    let (mut runs, mut parts) = (0, [0f64; 5]);
    for sweep in std::fs::read_dir(tmp.path())?.flatten() {
        let Ok(dirs) = std::fs::read_dir(sweep.path().join("runs")) else {
            continue;
        };
        for run in dirs.flatten().map(|d| d.path()) {
            runs += 1;
            for row in vaelab_track::read_metrics(&run.join(vaelab_track::METRICS))? {
                parts[usize::from(row.split == "test")] += row.seconds;
            }
            let summary = vaelab_track::read_frame(&run.join(vaelab_track::SUMMARY))?;
            for (i, col) in ["iw_seconds", "estep_seconds", "wall_seconds"]
                .iter()
                .enumerate()
            {
                let v = summary.column(col)?.f64()?.get(0).unwrap_or(0.0);
                parts[2 + i] += v;
            }
        }
    }
    println!(
        "SWEEP_E2E file={} runs={runs} wall_seconds={wall:.1} | summed over runs: train={:.1} tests={:.1} iwae={:.1} estep={:.1} run_walls={:.1}",
        file.display(),
        parts[0],
        parts[1],
        parts[2],
        parts[3],
        parts[4]
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    vaelab::alloc::keep_freed_memory();
    let args = Args::parse();
    // A figure holds only on the CPU it was measured on: every report names it.
    println!("{}", vaelab_vae::cpu_line());
    vaelab_vae::conv_simd()?;
    vaelab_vae::loop_simd()?;
    if args.pixel_kernels {
        return pixel_kernels();
    }
    if let Some(file) = &args.sweep_file {
        return sweep_end_to_end(file);
    }
    vaelab_vae::threads::configure(None);
    // Inside a pool of its threads, as `vaelab run` and every sweep worker train.
    let threads = vaelab_vae::threads::configured();
    vaelab_vae::threads::in_pool(threads, move || classic(args))?
}

/// The classic model's epochs, whole run, IWAE bound and sweep, as `args` asks.
fn classic(args: Args) -> anyhow::Result<()> {
    let data = vaelab_data::load(&DataSource {
        name: DatasetName::FashionMnist,
        data_dir: args.data_dir.clone(),
        ..DataSource::default()
    })
    .context("loading Fashion-MNIST")?;
    // The defaults of a run file are the classic model: 784-400-latent, Bernoulli, batch 128, Adam 1e-3.
    let keys = RunKeys {
        data_dir: args.data_dir.clone(),
        latent_dim: args.latent,
        epochs: args.epochs,
        // A whole run without --iw-samples keeps the run keys' default K (1000).
        iw_samples: match (args.iw_samples, args.whole_run) {
            (0, true) => RunKeys::default().iw_samples,
            (k, _) => k.max(1),
        },
        iw_test_n: args.gap_test_n,
        gap_test_n: args.gap_test_n,
        estep_iters: args.estep_iters,
        estep_tol: args.estep_tol,
        architecture: if args.conv {
            BodyKind::Conv
        } else {
            BodyKind::Mlp
        },
        objective: toml::Value::String(args.objective.clone())
            .try_into()
            .context("--objective: \"elbo\" or \"iwae\"")?,
        train_samples: args.train_samples,
        latent_layers: args.latent_layers.clone(),
        ..RunKeys::default()
    };
    vaelab::config::validate(&keys)
        .map_err(|(key, value, allowed)| anyhow::anyhow!("{key} = {value}: allowed: {allowed}"))?;
    let cfg = keys.train_config();
    let macs = cfg.architecture(&data).macs();
    let n = data.split(SplitKind::Train, cfg.binarize).len();
    // Forward + backward ≈ 3× the forward's multiply-adds, 2 FLOP each (the decoder's k-fold
    // rows are not counted: GFLOP/s stays the one-draw model's).
    let gflop_per_epoch = 3.0 * 2.0 * macs as f64 * n as f64 / 1e9;
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "default".into());
    let kernels = if args.reference {
        Kernels::Reference
    } else {
        Kernels::Fused
    };
    println!("kernels={kernels:?}");
    let mut trainer = Trainer::with_kernels(cfg.clone(), &data, Device::Cpu, kernels)?;
    let mut secs = Vec::new();
    let mut test_secs = 0.0;
    let whole = Instant::now();
    for epoch in 1..=cfg.epochs {
        let m = trainer.train_epoch(epoch)?;
        let test = trainer.evaluate(SplitKind::Test, epoch)?;
        println!(
            "threads={threads} epoch={epoch} seconds={:.3} images_per_s={:.0} gflop_per_s={:.1} test_seconds={:.3} test_neg_elbo={:.2}",
            m.seconds,
            m.samples_per_sec,
            gflop_per_epoch / m.seconds,
            test.seconds,
            test.neg_elbo.unwrap_or(f64::NAN)
        );
        secs.push(m.seconds);
        test_secs += test.seconds;
    }
    if args.whole_run {
        // The final evaluation exactly as a run does it: the bound with the mass, then the split.
        let iw = trainer.iwae()?;
        let gap = match &iw {
            Some(iw) => trainer.gap_split(iw)?,
            None => None,
        };
        println!(
            "WHOLE_RUN threads={threads} epochs={} seconds={:.1} train={:.1} tests={test_secs:.1} iwae={:.1} estep={:.1} estep_steps={:.1} log_px={:.2} amortization={:.3} approximation={:.3}",
            cfg.epochs,
            whole.elapsed().as_secs_f64(),
            secs.iter().sum::<f64>(),
            iw.as_ref().map_or(0.0, |i| i.seconds),
            gap.as_ref().map_or(0.0, |g| g.seconds),
            gap.as_ref().map_or(0.0, |g| g.estep_steps),
            iw.as_ref().map_or(f64::NAN, |i| i.log_px),
            gap.as_ref().map_or(f64::NAN, |g| g.amortization_gap),
            gap.as_ref().map_or(f64::NAN, |g| g.approximation_gap),
        );
    }
    let steady = if secs.len() > 1 {
        &mut secs[1..]
    } else {
        &mut secs[..]
    };
    steady.sort_by(f64::total_cmp);
    let median = steady[steady.len() / 2];
    println!(
        "SUMMARY threads={threads} epoch_seconds={median:.3} images_per_s={:.0} gflop_per_s={:.1} (median of epochs 2..{}; {gflop_per_epoch:.0} GFLOP per epoch)",
        n as f64 / median,
        gflop_per_epoch / median,
        cfg.epochs
    );
    if args.gap_draws > 0 {
        gap_draws(&trainer, args.gap_draws)?;
    }
    if args.iw_samples > 0 {
        // The bound alone (what the PyTorch reference computes), then as a run computes it:
        // the same samples also scored as the mass of the 8-bit images (bits/dim).
        if let Some(iw) = trainer.iwae_with(None, 0)? {
            println!(
                "IWAE threads={threads} K={} images={} seconds={:.2} log_px={:.2}",
                iw.samples, iw.images, iw.seconds, iw.log_px
            );
        }
        if let Some(iw) = trainer.iwae()? {
            let bpd = iw
                .log_px_mass
                .map(|l| vaelab_vae::bits_per_dim(-l, data.dim()));
            println!(
                "IWAE+MASS threads={threads} K={} images={} seconds={:.2} log_px={:.2} nll_bpd={:.4}",
                iw.samples,
                iw.images,
                iw.seconds,
                iw.log_px,
                bpd.unwrap_or(f64::NAN)
            );
        }
    }
    // The trainer borrows the dataset, which the sweep takes over.
    drop(trainer);
    if args.sweep_runs > 0 {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let runs = args.sweep_runs;
        let keys = RunKeys {
            iw_test_n: 0,
            ..keys
        };
        let (serial, data) = sweep(data, &keys, runs, 1, cores)?;
        println!("SWEEP runs={runs} epochs={} strategy=one-run-at-a-time-{cores}-threads wall_seconds={serial:.2}", cfg.epochs);
        let (parallel, _) = sweep(data, &keys, runs, cores, 1)?;
        println!("SWEEP runs={runs} epochs={} strategy={cores}-runs-at-a-time-1-thread wall_seconds={parallel:.2} (the default)", cfg.epochs);
    }
    Ok(())
}
