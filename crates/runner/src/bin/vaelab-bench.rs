//! `vaelab-bench`: epoch time of the classic VAE (784-400-20, Bernoulli, batch 128, Adam 1e-3)
//! on Fashion-MNIST, as images/s and GFLOP/s. Threads come from RAYON_NUM_THREADS.

use anyhow::Context;
use candle_core::Device;
use clap::Parser;
use mimalloc::MiMalloc;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Instant;
use vaelab::config::RunKeys;
use vaelab::dispatch::{run_plan, Dispatch};
use vaelab::plan::{Plan, PlannedRun};
use vaelab_data::{DataSource, Dataset, DatasetName, SplitKind};
use vaelab_vae::{Kernels, Trainer};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

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
    /// Run candle's stock ops instead of the fused kernels (what the fusing buys).
    #[arg(long)]
    reference: bool,
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
        source: "vaelab-bench".into(),
    };
    let tmp = tempfile::tempdir()?;
    let data = HashMap::from([(keys.data_source(), data)]);
    let how = Dispatch {
        jobs,
        threads,
        force: true,
        device: Device::Cpu,
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

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    vaelab_vae::threads::configure(None);
    let data = vaelab_data::load(&DataSource {
        name: DatasetName::FashionMnist,
        data_dir: args.data_dir.clone(),
    })
    .context("loading Fashion-MNIST")?;
    // The defaults of a run file are the classic model: 784-400-latent, Bernoulli, batch 128, Adam 1e-3.
    let keys = RunKeys {
        data_dir: args.data_dir.clone(),
        latent_dim: args.latent,
        epochs: args.epochs,
        iw_samples: args.iw_samples.max(1),
        iw_test_n: 1000,
        ..RunKeys::default()
    };
    let cfg = keys.train_config();
    let arch = cfg.architecture(data.dim());
    let macs: usize = arch.layers().iter().map(|l| l.fan_in * l.fan_out).sum();
    let n = data.split(SplitKind::Train, cfg.binarize).len();
    // Forward + backward ≈ 3× the forward's multiply-adds, 2 FLOP each.
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
    for epoch in 1..=cfg.epochs {
        let m = trainer.train_epoch(epoch)?;
        let test = trainer.evaluate(SplitKind::Test, epoch)?;
        println!(
            "threads={threads} epoch={epoch} seconds={:.3} images_per_s={:.0} gflop_per_s={:.1} test_neg_elbo={:.2}",
            m.seconds,
            m.samples_per_sec,
            gflop_per_epoch / m.seconds,
            test.neg_elbo.unwrap_or(f64::NAN)
        );
        secs.push(m.seconds);
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
    if args.iw_samples > 0 {
        if let Some(iw) = trainer.iwae()? {
            println!(
                "IWAE threads={threads} K={} images={} seconds={:.2} log_px={:.2}",
                iw.samples, iw.images, iw.seconds, iw.log_px
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
