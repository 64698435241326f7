use crate::failure::Failure;
use crate::run;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Train VAEs and autoencoders from TOML files; every metric lands in Parquet.
#[derive(Debug, Parser)]
#[command(name = "vaelab", version, about)]
struct Cli {
    /// Threads for candle's kernels (default: all cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train one run described by a TOML file.
    Run {
        /// The run file (name plus run keys).
        file: PathBuf,
        /// Where run folders go.
        #[arg(long, default_value = "results")]
        results_dir: PathBuf,
    },
}

/// Parses the command line and does what it says.
pub fn main() -> Result<(), Failure> {
    let cli = Cli::parse();
    vaelab_vae::threads::configure(cli.threads);
    match cli.command {
        Command::Run { file, results_dir } => run::run_file(&file, &results_dir),
    }
}
