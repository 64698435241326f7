//! Search spaces over run keys, and the trials drawn from them.
//!
//! A space is a few keys, each with a distribution; a method (seeded random draws, or an
//! Owen-scrambled Sobol sequence) turns it into `trials` tables of key → value. The same space
//! and seed give the same tables on every machine: floats are rounded to four significant digits
//! after drawing, so no last-bit difference between two `libm`s can change a run id.
//!
//! [`prune`] holds the early-stopping rules (ASHA, the median rule) that judge trials by their
//! metric at a rung against their peers'.

mod dist;
mod draw;
pub mod prune;

pub use dist::Dist;
pub use draw::{Method, Space, MAX_TRIALS};
pub use prune::{Direction, Pruner, Rule, Verdict};

/// A space that cannot be drawn from.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SearchError {
    /// A key's distribution is malformed (the key, and what is wrong with it).
    #[error("`{key}`: {message}")]
    Dist { key: String, message: String },
    /// The space as a whole cannot give the trials asked for.
    #[error("{0}")]
    Space(String),
}
