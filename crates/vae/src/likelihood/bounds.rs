//! The bounds every likelihood shares: clamps of learned scales and the 8-bit grey levels.

/// Learned Gaussian log σ is clamped to [ln 0.01, ln e]: below σ = 0.01 the density of flat
/// background pixels grows without bound and training diverges.
pub const LOG_SIGMA_MIN: f32 = -4.605_170_2;
/// Upper clamp of the learned log σ.
pub const LOG_SIGMA_MAX: f32 = 1.0;

/// Lowest log-scale of a family trained on masses: σ = 1e-4, a twentieth of a bin's half-width,
/// where a bin around the mean already holds all but 1e-80 of the mass. Unlike the density's
/// clamp at σ = 0.01 this is a numerical guard, not a limit training runs into.
pub const LOG_SCALE_FLOOR: f32 = -9.210_340_4;

/// Grey levels of 8-bit images.
pub const LEVELS_8BIT: u16 = 256;
