//! `vaelab`: train VAEs and autoencoders from TOML files and keep every number in Parquet.
//!
//! Exit codes: 0 every run done (or stdout closed by its reader, as with `| head`), 1 a run
//! failed or diverged, 2 bad input (config, data or results folder, found before any training
//! starts), 130 interrupted by Ctrl-C or by the reader of stderr going away.

use std::process::ExitCode;

// candle allocates a fresh buffer for nearly every op; mimalloc makes that cheap (2.5x per
// epoch), and keeping what it frees saves the page faults (`vaelab::alloc`).
#[global_allocator]
static GLOBAL: vaelab::alloc::Allocator = vaelab::alloc::Allocator {};

fn main() -> ExitCode {
    vaelab::alloc::keep_freed_memory();
    vaelab::output::install();
    match vaelab::cli::main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => ExitCode::from(failure.report()),
    }
}
