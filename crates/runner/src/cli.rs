//! Command-line parsing and the commands' top level.

use crate::conclude::conclude;
use crate::config::{load_run_file, RunSpec};
use crate::data::load_data;
use crate::dispatch::{run_plan, Dispatch};
use crate::failure::Failure;
use crate::inspect;
use crate::manifest::Provenance;
use crate::output::{self, note};
use crate::run::{execute, Outcome, RunJob};
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
#[command(name = "vaelab", version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("VAELAB_BUILD"), ")"), about)]
struct Cli {
    /// Threads for each run's kernels (default: all cores for `run`, cores / jobs for `sweep`).
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// Where runs train (default cpu): `cuda` needs a build with `--features cuda` and a GPU.
    #[arg(long, global = true, value_enum)]
    device: Option<DeviceArg>,
    #[command(subcommand)]
    command: Command,
}

/// The `--device` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum DeviceArg {
    Cpu,
    Cuda,
}

/// Where a sweep's runs train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Backend {
    /// On this machine, `jobs` runs at a time.
    Local,
    /// As a Slurm job array, one task per run, submitted with sbatch.
    Slurm,
}

/// `[slurm]` keys given on the command line; they override the sweep file's.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Slurm (with --backend slurm; override the file's [slurm])")]
struct SlurmFlags {
    /// Return right after submitting; a dependent job collects the tables and the report.
    #[arg(long)]
    detach: bool,
    #[arg(long)]
    partition: Option<String>,
    /// Time limit of each task, e.g. 30, 1:00:00 or 1-00:00:00.
    #[arg(long)]
    time: Option<String>,
    /// CPUs of each task, also its --threads.
    #[arg(long)]
    cpus_per_task: Option<u32>,
    /// Memory of each task, e.g. 8G.
    #[arg(long)]
    mem: Option<String>,
    /// Generic resources, e.g. gpu:1 (tasks then train on CUDA).
    #[arg(long)]
    gres: Option<String>,
    #[arg(long)]
    account: Option<String>,
    #[arg(long)]
    qos: Option<String>,
    /// Submit with --requeue; a task warned of its time limit checkpoints and requeues itself.
    #[arg(long)]
    requeue: bool,
}

impl SlurmFlags {
    fn settings(&self) -> vaelab_slurm::Settings {
        vaelab_slurm::Settings {
            partition: self.partition.clone(),
            time: self.time.clone(),
            cpus_per_task: self.cpus_per_task,
            mem: self.mem.clone(),
            gres: self.gres.clone(),
            account: self.account.clone(),
            qos: self.qos.clone(),
            requeue: self.requeue,
            ..Default::default()
        }
    }
}

impl DeviceArg {
    /// Opens the device; a build without CUDA or a machine without a GPU is bad input.
    fn open(self) -> Result<Device, Failure> {
        match self {
            DeviceArg::Cpu => Ok(Device::Cpu),
            DeviceArg::Cuda => Device::new_cuda(0).map_err(|e| {
                let hint = if candle_core::utils::cuda_is_available() {
                    " (no usable GPU here: run on a machine with an NVIDIA GPU and its driver)"
                } else {
                    " (this vaelab was built without `--features cuda`: `just build-cuda`)"
                };
                // candle's error text carries a backtrace; its first line says what failed.
                let text = e.to_string();
                let what = text.lines().next().unwrap_or_default();
                Failure::Input(anyhow!("--device cuda: {what}{hint}"))
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
        /// Train pruned runs on to their last epoch, and prune nothing (the `[early_stop]`
        /// decisions already made stay recorded).
        #[arg(long)]
        no_prune: bool,
        /// Where the runs train.
        #[arg(long, value_enum, default_value_t = Backend::Local)]
        backend: Backend,
        #[command(flatten)]
        slurm: SlurmFlags,
    },
    /// Rewrite a sweep's tables from its run folders, then redraw its figures and report.html.
    Report { sweep_dir: PathBuf },
    /// Each run of a sweep folder: status, epochs and, for Slurm sweeps, its task's state.
    Status { sweep_dir: PathBuf },
    /// Train task INDEX of a Slurm array folder (what each array task runs).
    #[command(hide = true)]
    Task {
        dir: PathBuf,
        index: usize,
        /// Train a pruned run on to its last epoch; judge nothing.
        #[arg(long)]
        no_prune: bool,
    },
    /// List the sweeps and runs of a results folder, or the runs of one sweep.
    Ls {
        #[arg(default_value = "results")]
        dir: PathBuf,
        /// Keep the runs where this SQL expression holds, e.g. "status = 'done' AND latent_dim >= 10".
        #[arg(long = "where")]
        filter: Option<String>,
        /// Order by this column, ascending; `-column` for descending (nulls last).
        #[arg(long, allow_hyphen_values = true)]
        sort: Option<String>,
        /// Show at most N runs.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Run SQL over a sweep folder's tables `runs` (runs.parquet) and `metrics` (metrics.parquet).
    Query { sweep_dir: PathBuf, sql: String },
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
    /// Every run key: its default, what it allows and what it does.
    Keys,
    /// Code images losslessly with a finished VAE run's model (bits-back coding with ANS).
    Compress {
        /// The run's folder (holding config.toml and checkpoint.safetensors).
        run_dir: PathBuf,
        /// An IDX file of 8-bit images, or `test` / `test:N`: the run's own test images.
        images: String,
        /// The compressed file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Decode a file written by `vaelab compress` with the same run's model.
    Decompress {
        run_dir: PathBuf,
        file: PathBuf,
        /// The folder to write images-idx3-ubyte into.
        #[arg(long)]
        out: PathBuf,
    },
}

/// Runs one run's work on a rayon pool of the threads `configure` settled on, as each local
/// sweep worker does: called from outside a pool, every parallel kernel would hand its work
/// to the global pool's threads and wait, a thread switch per call.
fn in_own_pool<R: Send>(f: impl FnOnce() -> Result<R, Failure> + Send) -> Result<R, Failure> {
    vaelab_vae::threads::in_pool(vaelab_vae::threads::configured(), f)
        .map_err(|e| Failure::Run(anyhow!("cannot start the training threads: {e}")))?
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
            let device = device(cli.device)?;
            in_own_pool(|| run_one(&file, &results_dir, force, &device))
        }
        Command::Plan { file } => {
            let plan = load_sweep_file(&file).map_err(|e| Failure::Input(e.into()))?;
            output::print(format_args!("{}{}\n", plan.table(), plan.summary()))
                .map_err(Failure::Run)
        }
        Command::Sweep {
            file,
            results_dir,
            jobs,
            force,
            no_prune,
            backend,
            slurm,
        } => match backend {
            Backend::Local => {
                let device = device(cli.device)?;
                let how = LocalSweep {
                    jobs,
                    threads: cli.threads,
                    force,
                    no_prune,
                    device,
                };
                sweep(&file, &results_dir, how)
            }
            Backend::Slurm => slurm_sweep(
                &file,
                &results_dir,
                jobs,
                force,
                no_prune,
                cli.device,
                &slurm,
            ),
        },
        Command::Report { sweep_dir } => report(&sweep_dir),
        Command::Status { sweep_dir } => {
            crate::slurm::status::status(&sweep_dir).map_err(Failure::Input)
        }
        Command::Task {
            dir,
            index,
            no_prune,
        } => {
            vaelab_vae::threads::configure(cli.threads);
            let device = device(cli.device)?;
            in_own_pool(|| crate::slurm::task::run_task(&dir, index, no_prune, &device))
        }
        Command::Ls {
            dir,
            filter,
            sort,
            limit,
        } => {
            let sel = crate::query::Selection {
                filter,
                sort,
                limit,
            };
            inspect::ls(&dir, &sel).map_err(Failure::Input)
        }
        Command::Query { sweep_dir, sql } => {
            inspect::query(&sweep_dir, &sql).map_err(Failure::Input)
        }
        Command::Show {
            run_id,
            results_dir,
        } => inspect::show(&results_dir, &run_id).map_err(Failure::Input),
        Command::Compare { sweep_dir, by } => {
            inspect::compare(&sweep_dir, &by).map_err(Failure::Input)
        }
        Command::Keys => {
            output::print(format_args!("{}", crate::keys::reference())).map_err(Failure::Input)
        }
        Command::Compress {
            run_dir,
            images,
            out,
        } => {
            vaelab_vae::threads::configure(cli.threads);
            crate::compress::compress(&run_dir, &images, &out).map_err(Failure::Input)
        }
        Command::Decompress { run_dir, file, out } => {
            vaelab_vae::threads::configure(cli.threads);
            crate::compress::decompress(&run_dir, &file, &out).map_err(Failure::Input)
        }
    }
}

/// Opens `--device` (cpu when not given), after checking the CPU kernels' widths
/// (`VAELAB_CONV_SIMD`, `VAELAB_LOOP_SIMD`): a value this CPU cannot run is bad input, refused
/// before any run.
fn device(arg: Option<DeviceArg>) -> Result<Device, Failure> {
    vaelab_vae::conv_simd().map_err(|e| Failure::Input(e.into()))?;
    vaelab_vae::loop_simd().map_err(|e| Failure::Input(e.into()))?;
    arg.unwrap_or(DeviceArg::Cpu).open()
}

/// Brings the tables up to date with the run folders (and Slurm, for a Slurm sweep), then
/// draws the figures and report.html.
fn report(sweep_dir: &Path) -> Result<(), Failure> {
    if !sweep_dir.join("runs.parquet").exists() && !sweep_dir.join("sweep.toml").exists() {
        return Err(Failure::Input(anyhow!(
            "{}: no runs.parquet or sweep.toml here; give a sweep folder such as results/<sweep name>",
            sweep_dir.display()
        )));
    }
    if let Ok(plan) = load_sweep_file(&sweep_dir.join("sweep.toml")) {
        let collected = match vaelab_slurm::Cluster::detect() {
            Ok(cluster) => crate::slurm::sweep::collect(&plan, sweep_dir, &cluster),
            Err(_) => crate::tables::write_sweep_tables(sweep_dir, &plan),
        };
        collected.map_err(Failure::Run)?;
    }
    crate::report::draw(sweep_dir, None)
        .map(|_| ())
        .map_err(Failure::Run)
}

/// Refuses a network that cannot read the dataset's images (a conv body whose stride-2 layers
/// do not divide the image sides), more VampPrior pseudo-inputs than training images, and
/// more AIS images than test images, naming the file and the key.
fn check_fits(keys: &crate::config::RunKeys, data: &Dataset, file: &Path) -> Result<(), Failure> {
    let cfg = keys.train_config();
    if let vaelab_vae::Prior::Vamp { pseudo_inputs } = cfg.prior {
        let images = cfg.images(data, vaelab_data::SplitKind::Train);
        if pseudo_inputs > images {
            let line = std::fs::read_to_string(file)
                .ok()
                .and_then(|text| crate::config::line_of(&text, "pseudo_inputs"))
                .map(|l| format!(":{l}"))
                .unwrap_or_default();
            return Err(Failure::Input(anyhow!(
                "{}{line}: key `pseudo_inputs` = {pseudo_inputs} is not allowed; allowed: at most the {images} training images of {} (the VampPrior's components are learned images)",
                file.display(),
                data.name()
            )));
        }
    }
    let tests = cfg.images(data, vaelab_data::SplitKind::Test);
    if cfg.model == vaelab_vae::ModelKind::Vae && cfg.ais_test_n > tests {
        let line = std::fs::read_to_string(file)
            .ok()
            .and_then(|text| crate::config::line_of(&text, "ais_test_n"))
            .map(|l| format!(":{l}"))
            .unwrap_or_default();
        return Err(Failure::Input(anyhow!(
            "{}{line}: key `ais_test_n` = {} is not allowed; allowed: at most the {tests} test images of {} (test_subset, if set)",
            file.display(),
            cfg.ais_test_n,
            data.name()
        )));
    }
    cfg.architecture(data).check().map_err(|e| {
        Failure::Input(anyhow!(
            "{}: key `channels` = {:?} does not fit {}'s images: {e}",
            file.display(),
            keys.channels,
            data.name()
        ))
    })
}

/// Ctrl-C sets the returned flag after printing `what` happens next.
fn cancel_on_ctrl_c(what: &'static str) -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    output::stop_when_stderr_closes(flag.clone());
    let f = flag.clone();
    // If a handler is already set (tests calling twice), Ctrl-C keeps its default meaning.
    let _ = ctrlc::set_handler(move || {
        note!("\ninterrupted: {what} (Ctrl-C again is ignored)");
        f.store(true, Ordering::SeqCst);
    });
    flag
}

/// What Ctrl-C does to training on this machine.
const STOP_TRAINING: &str = "stopping; each run keeps its last finished epoch";

fn run_one(file: &Path, results_dir: &Path, force: bool, device: &Device) -> Result<(), Failure> {
    let spec: RunSpec = load_run_file(file).map_err(|e| Failure::Input(e.into()))?;
    let data =
        load_data(std::iter::once((spec.keys.data_source(), file))).map_err(Failure::Input)?;
    if let Some(d) = data.values().next() {
        check_fits(&spec.keys, d, file)?;
    }
    let dir = RunDir::create(results_dir, &spec.name)
        .with_context(|| format!("results folder {} (--results-dir)", results_dir.display()))
        .map_err(Failure::Input)?;
    let cancel = cancel_on_ctrl_c(STOP_TRAINING);
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
        pruning: crate::early_stop::Pruning::Off,
    };
    let epochs = spec.keys.epochs;
    let name = spec.name.clone();
    let on_epoch = move |train: &vaelab_vae::EpochMetrics, test: &vaelab_vae::EpochMetrics| {
        note!(
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
            note!("{}: done -> {where_}", spec.name);
            Ok(())
        }
        Outcome::Skipped => {
            note!("{}: already done in {where_} (--force retrains)", spec.name);
            Ok(())
        }
        // `run` judges nothing; only a sweep's early stopping prunes.
        Outcome::Pruned(epoch) => {
            note!("{}: pruned after epoch {epoch} -> {where_}", spec.name);
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

/// Checks a sweep file and its data, and makes its folder: everything a sweep does on either
/// backend before any run starts.
fn prepare_sweep(
    file: &Path,
    results_dir: &Path,
) -> Result<(crate::plan::Plan, HashMap<DataSource, Dataset>, PathBuf), Failure> {
    let plan = load_sweep_file(file).map_err(|e| Failure::Input(e.into()))?;
    note!("{}", plan.summary());
    let data = load_data(plan.runs.iter().map(|r| (r.keys.data_source(), file)))
        .map_err(Failure::Input)?;
    for run in &plan.runs {
        if let Some(d) = data.get(&run.keys.data_source()) {
            check_fits(&run.keys, d, file)?;
        }
    }
    let sweep_dir = results_dir.join(&plan.name);
    std::fs::create_dir_all(sweep_dir.join("runs"))
        .map_err(anyhow::Error::from)
        .and_then(|_| {
            Ok(vaelab_track::copy_atomic(
                file,
                &sweep_dir.join("sweep.toml"),
            )?)
        })
        .with_context(|| format!("results folder {} (--results-dir)", sweep_dir.display()))
        .map_err(Failure::Input)?;
    Ok((plan, data, sweep_dir))
}

/// A local sweep's command-line settings.
struct LocalSweep {
    jobs: Option<usize>,
    threads: Option<usize>,
    force: bool,
    no_prune: bool,
    device: Device,
}

fn sweep(file: &Path, results_dir: &Path, flags: LocalSweep) -> Result<(), Failure> {
    let (plan, data, sweep_dir) = prepare_sweep(file, results_dir)?;
    let mut how = Dispatch::default_for(plan.runs.len(), flags.jobs.or(plan.jobs), flags.threads);
    how.force = flags.force;
    how.device = flags.device;
    how.resume_pruned = flags.no_prune;
    // Each run sizes its kernels from its own pool; element-wise ops stay on the run's thread.
    vaelab_vae::threads::configure(Some(how.threads));
    note!(
        "{} runs at a time, {} thread(s) each -> {}",
        how.jobs,
        how.threads,
        sweep_dir.display()
    );
    let cancel = cancel_on_ctrl_c(STOP_TRAINING);
    let outcomes = run_plan(&plan, &sweep_dir, &data, &how, &cancel).map_err(Failure::Run)?;
    let outcomes: Vec<(usize, Outcome)> = outcomes.into_iter().enumerate().collect();
    conclude(&plan, &sweep_dir, &outcomes, 0, Some(cancel))
}

fn slurm_sweep(
    file: &Path,
    results_dir: &Path,
    jobs: Option<usize>,
    force: bool,
    no_prune: bool,
    device: Option<DeviceArg>,
    flags: &SlurmFlags,
) -> Result<(), Failure> {
    if force {
        return Err(Failure::Input(anyhow!(
            "--force with --backend slurm: a requeued task would start over again; to retrain, remove the runs' folders (results/<sweep>/runs/<id>) and submit again"
        )));
    }
    let (plan, _data, sweep_dir) = prepare_sweep(file, results_dir)?;
    let how = crate::slurm::sweep::SlurmSweep {
        settings: plan.slurm.clone().overridden_by(flags.settings()),
        jobs: jobs.or(plan.jobs),
        detach: flags.detach,
        resume_pruned: no_prune,
        device: match device {
            Some(DeviceArg::Cuda) => vaelab_slurm::settings::TaskDevice::Cuda,
            _ => vaelab_slurm::settings::TaskDevice::Cpu,
        },
    };
    if let Err((key, value, allowed)) = how.settings.validate() {
        return Err(Failure::Input(anyhow!(
            "--{} {value}: not allowed; allowed: {allowed}",
            key.replace('_', "-")
        )));
    }
    let cancel = cancel_on_ctrl_c("detaching: the tasks keep running on the cluster");
    crate::slurm::sweep::sweep(&plan, &sweep_dir, &how, &cancel)
}
