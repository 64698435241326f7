//! Command-line parsing and the commands' top level.

use crate::config::{load_run_file, RunSpec};
use crate::dispatch::{run_plan, Dispatch};
use crate::failure::Failure;
use crate::inspect;
use crate::run::{execute, Outcome, Provenance, RunJob};
use crate::sweep_file::load_sweep_file;
use anyhow::{anyhow, Context};
use candle_core::Device;
use clap::{Parser, Subcommand};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use vaelab_data::{DataSource, Dataset};
use vaelab_track::RunDir;

/// Train VAEs and autoencoders from TOML files; every metric lands in Parquet.
#[derive(Debug, Parser)]
#[command(name = "vaelab", version, about)]
struct Cli {
    /// Threads for each run's kernels (default: all cores for `run`, cores / jobs for `sweep`).
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// Where runs train: `cuda` needs a build with `--features cuda` and a GPU.
    #[arg(long, global = true, value_enum, default_value_t = DeviceArg::Cpu)]
    device: DeviceArg,
    #[command(subcommand)]
    command: Command,
}

/// The `--device` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum DeviceArg {
    Cpu,
    Cuda,
}

impl DeviceArg {
    /// Opens the device; a build without CUDA or a machine without a GPU is bad input.
    fn open(self) -> Result<Device, Failure> {
        match self {
            DeviceArg::Cpu => Ok(Device::Cpu),
            DeviceArg::Cuda => Device::new_cuda(0).map_err(|e| {
                let hint = if candle_core::utils::cuda_is_available() {
                    ""
                } else {
                    " (this vaelab was built without the `cuda` feature: \
                     cargo build --release --features cuda)"
                };
                Failure::Input(anyhow!("--device cuda: {e}{hint}"))
            }),
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train one run described by a TOML file (into DIR/<name>/).
    Run {
        file: PathBuf,
        #[arg(long, default_value = "results")]
        results_dir: PathBuf,
        /// Retrain even if the run is done.
        #[arg(long)]
        force: bool,
    },
    /// Print the runs a sweep file expands to, without training.
    Plan { file: PathBuf },
    /// Train every run of a sweep file (into DIR/<sweep name>/runs/<run id>/).
    Sweep {
        file: PathBuf,
        #[arg(long, default_value = "results")]
        results_dir: PathBuf,
        /// Runs trained at once (default: the file's `jobs`, else one per core).
        #[arg(long)]
        jobs: Option<usize>,
        /// Retrain runs that are done.
        #[arg(long)]
        force: bool,
    },
    /// Redraw a sweep's figures and report.html from its Parquet tables and checkpoints.
    Report { sweep_dir: PathBuf },
    /// List the sweeps and runs of a results folder, or the runs of one sweep.
    Ls {
        #[arg(default_value = "results")]
        dir: PathBuf,
    },
    /// Show one run: manifest, config and its last epoch (an id prefix is enough).
    Show {
        run_id: String,
        #[arg(long, default_value = "results")]
        results_dir: PathBuf,
    },
    /// Mean ± std over seeds of a sweep's final metrics, grouped by the keys given.
    Compare {
        sweep_dir: PathBuf,
        /// Comma-separated keys, e.g. latent_dim,model.
        #[arg(long, value_delimiter = ',')]
        by: Vec<String>,
    },
}

/// Parses the command line and does what it says.
pub fn main() -> Result<(), Failure> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            file,
            results_dir,
            force,
        } => {
            vaelab_vae::threads::configure(cli.threads);
            run_one(&file, &results_dir, force, &cli.device.open()?)
        }
        Command::Plan { file } => {
            let plan = load_sweep_file(&file).map_err(|e| Failure::Input(e.into()))?;
            print!("{}", plan.table());
            println!("{}", plan.summary());
            Ok(())
        }
        Command::Sweep {
            file,
            results_dir,
            jobs,
            force,
        } => {
            let device = cli.device.open()?;
            sweep(&file, &results_dir, jobs, cli.threads, force, device)
        }
        Command::Report { sweep_dir } => {
            if !sweep_dir.join("runs.parquet").exists() {
                return Err(Failure::Input(anyhow!(
                    "{}: no runs.parquet here; give a sweep folder such as results/<sweep name>",
                    sweep_dir.display()
                )));
            }
            crate::report::draw(&sweep_dir)
                .map(|_| ())
                .map_err(Failure::Run)
        }
        Command::Ls { dir } => inspect::ls(&dir).map_err(Failure::Input),
        Command::Show {
            run_id,
            results_dir,
        } => inspect::show(&results_dir, &run_id).map_err(Failure::Input),
        Command::Compare { sweep_dir, by } => {
            inspect::compare(&sweep_dir, &by).map_err(Failure::Input)
        }
    }
}

/// Loads each distinct data source once; errors say which key of which file to change.
fn load_data<'a>(
    sources: impl Iterator<Item = (DataSource, &'a Path)>,
) -> anyhow::Result<HashMap<DataSource, Dataset>> {
    let mut data = HashMap::new();
    for (src, file) in sources {
        if data.contains_key(&src) {
            continue;
        }
        let key = if src.data_dir.is_some() {
            "data_dir"
        } else {
            "dataset"
        };
        let d =
            vaelab_data::load(&src).with_context(|| format!("{}: key `{key}`", file.display()))?;
        eprintln!(
            "{}: {} images from {}",
            d.name(),
            d.split(vaelab_data::SplitKind::Train, vaelab_data::Binarize::None)
                .len(),
            d.origin()
        );
        data.insert(src, d);
    }
    Ok(data)
}

/// Ctrl-C sets the returned flag; runs stop after their current epoch.
fn cancel_on_ctrl_c() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    // If a handler is already set (tests calling twice), Ctrl-C keeps its default meaning.
    let _ = ctrlc::set_handler(move || {
        eprintln!(
            "\ninterrupted: finishing the current epochs, then stopping (Ctrl-C again is ignored)"
        );
        f.store(true, Ordering::SeqCst);
    });
    flag
}

fn run_one(file: &Path, results_dir: &Path, force: bool, device: &Device) -> Result<(), Failure> {
    let spec: RunSpec = load_run_file(file).map_err(|e| Failure::Input(e.into()))?;
    let data =
        load_data(std::iter::once((spec.keys.data_source(), file))).map_err(Failure::Input)?;
    let dir = RunDir::create(results_dir, &spec.name)
        .with_context(|| format!("results folder {} (--results-dir)", results_dir.display()))
        .map_err(Failure::Input)?;
    let cancel = cancel_on_ctrl_c();
    let provenance = Provenance::detect();
    let id = spec.keys.run_id();
    let job = RunJob {
        id: &id,
        label: spec.name.clone(),
        keys: &spec.keys,
        source: file,
        dir,
        data: data
            .values()
            .next()
            .ok_or_else(|| Failure::Input(anyhow!("no data")))?,
        device,
        force,
        cancel: &cancel,
        wait_for_lock: false,
        provenance: &provenance,
    };
    let epochs = spec.keys.epochs;
    let name = spec.name.clone();
    let on_epoch = move |train: &vaelab_vae::EpochMetrics, test: &vaelab_vae::EpochMetrics| {
        eprintln!(
            "{name} epoch {}/{epochs}: train loss {:.2}, test -ELBO {}, recon {:.2}  ({:.1} s, {:.0} img/s)",
            train.epoch,
            train.loss,
            test.neg_elbo.map_or("n/a".into(), |v| format!("{v:.2}")),
            test.recon,
            train.seconds,
            train.samples_per_sec
        );
    };
    let outcome = execute(&job, &on_epoch);
    let where_ = job.dir.path().display();
    match outcome {
        Outcome::Done => {
            eprintln!("{}: done -> {where_}", spec.name);
            Ok(())
        }
        Outcome::Skipped => {
            eprintln!("{}: already done in {where_} (--force retrains)", spec.name);
            Ok(())
        }
        Outcome::Interrupted => Err(Failure::Interrupted(anyhow!(
            "{} interrupted; run again to resume",
            spec.name
        ))),
        Outcome::Failed(e) | Outcome::Diverged(e) => {
            Err(Failure::Run(anyhow!("{}: {e} (see {where_})", spec.name)))
        }
        Outcome::Busy(pid) => Err(Failure::Run(anyhow!(
            "{}: another vaelab process{} is training this run in {where_}; wait for it to end",
            spec.name,
            pid.map_or(String::new(), |p| format!(" (pid {p})"))
        ))),
    }
}

fn sweep(
    file: &Path,
    results_dir: &Path,
    jobs: Option<usize>,
    threads: Option<usize>,
    force: bool,
    device: Device,
) -> Result<(), Failure> {
    let plan = load_sweep_file(file).map_err(|e| Failure::Input(e.into()))?;
    eprintln!("{}", plan.summary());
    let data = load_data(plan.runs.iter().map(|r| (r.keys.data_source(), file)))
        .map_err(Failure::Input)?;
    let sweep_dir = results_dir.join(&plan.name);
    std::fs::create_dir_all(sweep_dir.join("runs"))
        .and_then(|_| std::fs::copy(file, sweep_dir.join("sweep.toml")).map(|_| ()))
        .with_context(|| format!("results folder {} (--results-dir)", sweep_dir.display()))
        .map_err(Failure::Input)?;
    let mut how = Dispatch::default_for(plan.runs.len(), jobs.or(plan.jobs), threads);
    how.force = force;
    how.device = device;
    // Each run sizes its kernels from its own pool; element-wise ops stay on the run's thread.
    vaelab_vae::threads::configure(Some(how.threads));
    eprintln!(
        "{} runs at a time, {} thread(s) each -> {}",
        how.jobs,
        how.threads,
        sweep_dir.display()
    );
    let cancel = cancel_on_ctrl_c();
    let outcomes = run_plan(&plan, &sweep_dir, &data, &how, &cancel).map_err(Failure::Run)?;
    let count = |f: fn(&Outcome) -> bool| outcomes.iter().filter(|o| f(o)).count();
    let (done, skipped) = (
        count(|o| *o == Outcome::Done),
        count(|o| *o == Outcome::Skipped),
    );
    let bad: Vec<String> = outcomes
        .iter()
        .zip(&plan.runs)
        .filter_map(|(o, r)| match o {
            Outcome::Failed(e) => Some(format!("  {} failed: {e}", r.id)),
            Outcome::Diverged(e) => Some(format!("  {} diverged: {e}", r.id)),
            _ => None,
        })
        .collect();
    eprintln!(
        "{}: {done} trained, {skipped} already done, {} failed or diverged, {} interrupted -> {}",
        plan.name,
        bad.len(),
        count(|o| *o == Outcome::Interrupted),
        sweep_dir.join("runs.parquet").display()
    );
    if cancel.load(Ordering::SeqCst) {
        return Err(Failure::Interrupted(anyhow!(
            "sweep {} interrupted; run it again to resume",
            plan.name
        )));
    }
    eprintln!("drawing the report of {}", plan.name);
    let report = crate::report::draw(&sweep_dir);
    if !bad.is_empty() {
        return Err(Failure::Run(anyhow!(
            "{} run(s) did not finish:\n{}",
            bad.len(),
            bad.join("\n")
        )));
    }
    report
        .map(|_| ())
        .map_err(|e| Failure::Run(e.context("every run finished, but the report failed")))
}
