/// Why `vaelab` stops, which decides its exit code.
#[derive(Debug)]
pub enum Failure {
    /// Bad input: a config, data or results-folder problem found before training (exit 2).
    Input(anyhow::Error),
    /// A run failed while training or writing its results (exit 1).
    Run(anyhow::Error),
    /// Ctrl-C: runs were stopped after their current epoch and marked interrupted (exit 130).
    Interrupted(anyhow::Error),
}

impl Failure {
    /// The documented exit code.
    pub fn code(&self) -> u8 {
        match self {
            Failure::Run(_) => 1,
            Failure::Input(_) => 2,
            Failure::Interrupted(_) => 130,
        }
    }

    /// Says why on stderr and returns the exit code; a closed stdout (the reader, say `head`,
    /// had what it wanted) is a quiet exit 0.
    pub fn report(&self) -> u8 {
        if crate::output::is_closed(self.error()) {
            return 0;
        }
        crate::output::note!("error: {:#}", self.error());
        self.code()
    }

    /// The error with its context chain.
    pub fn error(&self) -> &anyhow::Error {
        match self {
            Failure::Input(e) | Failure::Run(e) | Failure::Interrupted(e) => e,
        }
    }
}
