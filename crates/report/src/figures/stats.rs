//! Statistics over seeds shared by the figures.

/// Mean and sample std of the runs at one point (over seeds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Stat {
    pub mean: f64,
    pub std: f64,
}

/// The [`Stat`] of `v` (std 0 for a single value); `v` must not be empty.
pub(crate) fn stat(v: &[f64]) -> Stat {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    Stat {
        mean,
        std: var.sqrt(),
    }
}
