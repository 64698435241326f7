//! The `vaelab` command as a library: run and sweep files, planning, dispatch, tables and
//! inspection. `main.rs` only maps [`failure::Failure`] to exit codes.

pub mod alloc;
pub mod cli;
pub mod compress;
pub mod conclude;
pub mod config;
pub mod data;
pub mod dispatch;
pub mod early_stop;
pub mod failure;
pub mod inspect;
pub mod keys;
pub mod manifest;
pub mod output;
pub mod plan;
pub mod query;
pub mod report;
pub mod run;
pub mod slurm;
pub mod sweep_file;
pub mod tables;

#[cfg(test)]
mod ids_test;
#[cfg(test)]
mod mutants_test;
