//! Training schedules: how encoder (E-step) and decoder (M-step) updates interleave.

/// Encoder-only steps of the aggressive schedule's inner loop are compared in windows of this
/// many steps (He et al. 2019, image code).
pub const WINDOW: usize = 10;
/// At most this many encoder-only steps before each decoder step.
pub const MAX_INNER: usize = 100;
/// The aggressive phase ends after this many epochs without a new best test MI.
pub const PATIENCE: usize = 5;

/// How encoder and decoder updates interleave; every schedule optimizes the same ELBO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// One Adam step on every weight per batch.
    Joint,
    /// Per batch, `e_steps` encoder-only updates, then `m_steps` decoder-only updates, each
    /// with fresh ε and its own Adam: coordinate ascent on the ELBO, the plainest EM.
    Alternating { e_steps: usize, m_steps: usize },
    /// "Lagging inference networks" (He, Spokoyny, Neubig & Berg-Kirkpatrick, ICLR 2019): before
    /// each decoder step, encoder-only steps on fresh batches until the mean loss of a window
    /// of [`WINDOW`] steps stops falling (at most [`MAX_INNER`]); joint once the test MI has
    /// not improved for [`PATIENCE`] epochs.
    Aggressive,
}

/// The `schedule` key: which [`Schedule`], as named in config files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// One update of every weight per batch.
    #[default]
    Joint,
    /// `e_steps` encoder-only then `m_steps` decoder-only updates per batch.
    Alternating,
    /// He et al.'s lagging-inference-network schedule.
    Aggressive,
}

impl Schedule {
    /// The schedule of `kind`; only `alternating` reads the step counts.
    pub fn new(kind: ScheduleKind, e_steps: usize, m_steps: usize) -> Self {
        match kind {
            ScheduleKind::Joint => Schedule::Joint,
            ScheduleKind::Alternating => Schedule::Alternating { e_steps, m_steps },
            ScheduleKind::Aggressive => Schedule::Aggressive,
        }
    }

    /// True when encoder and decoder keep separate Adam states.
    pub fn splits_optimizers(&self) -> bool {
        !matches!(self, Schedule::Joint)
    }
}

/// Where the aggressive schedule stands; saved in checkpoints so a resumed run continues it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AggressiveState {
    /// Still in the aggressive phase.
    pub active: bool,
    /// The best test MI so far.
    pub best_mi: f64,
    /// Epochs since it last improved.
    pub since_best: usize,
}

impl Default for AggressiveState {
    fn default() -> Self {
        Self {
            active: true,
            best_mi: f64::NEG_INFINITY,
            since_best: 0,
        }
    }
}

impl AggressiveState {
    /// Records an epoch's test MI; the phase ends after [`PATIENCE`] epochs without a new best.
    pub fn observe(&mut self, mi: f64) {
        if mi > self.best_mi {
            self.best_mi = mi;
            self.since_best = 0;
        } else {
            self.since_best += 1;
            if self.since_best >= PATIENCE {
                self.active = false;
            }
        }
    }

    /// As numbers for a checkpoint.
    pub fn to_vec(self) -> Vec<f64> {
        vec![
            f64::from(u8::from(self.active)),
            self.best_mi,
            self.since_best as f64,
        ]
    }

    /// Back from [`AggressiveState::to_vec`].
    pub fn from_slice(v: &[f64]) -> Option<Self> {
        match v {
            [a, b, s] => Some(Self {
                active: *a != 0.0,
                best_mi: *b,
                since_best: *s as usize,
            }),
            _ => None,
        }
    }
}

/// The aggressive inner loop's stopping rule: sums the loss of each step and, every
/// [`WINDOW`] steps, stops when the window's mean did not fall below the previous window's.
#[derive(Debug, Clone)]
pub struct Plateau {
    steps: usize,
    window_sum: f64,
    previous: f64,
}

impl Default for Plateau {
    fn default() -> Self {
        Self {
            steps: 0,
            window_sum: 0.0,
            previous: f64::INFINITY,
        }
    }
}

impl Plateau {
    /// Records one step's loss; false when the inner loop should stop.
    pub fn go_on(&mut self, loss: f64) -> bool {
        self.steps += 1;
        self.window_sum += loss;
        if self.steps.is_multiple_of(WINDOW) {
            let mean = self.window_sum / WINDOW as f64;
            if mean >= self.previous {
                return false;
            }
            self.previous = mean;
            self.window_sum = 0.0;
        }
        self.steps < MAX_INNER
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plateau_stops_when_a_window_does_not_improve_or_at_the_cap() {
        let mut p = Plateau::default();
        // Falling for two windows, then flat: stops at the end of the third window.
        let losses = (0..30).map(|i| if i < 20 { 100.0 - i as f64 } else { 100.0 });
        let steps = losses.take_while(|&l| p.go_on(l)).count();
        assert_eq!(steps, 29);
        let mut p = Plateau::default();
        let steps = (0..1000).take_while(|&i| p.go_on(-(i as f64))).count();
        assert_eq!(steps, MAX_INNER - 1);
    }

    #[test]
    fn aggressive_phase_ends_after_patience_epochs_without_a_new_best() {
        let mut s = AggressiveState::default();
        for mi in [1.0, 2.0, 1.5, 1.9, 2.0, 1.0] {
            s.observe(mi);
            assert!(s.active);
        }
        s.observe(1.99);
        assert!(!s.active);
        assert_eq!(AggressiveState::from_slice(&s.to_vec()), Some(s));
    }
}
