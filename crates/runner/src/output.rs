//! Where `vaelab` prints, and what a closed pipe means. Results (`plan`, `status`, `ls`,
//! `show`, `compare`) go to stdout; progress and diagnostics go to stderr. Neither panics when
//! its reader has gone (`vaelab plan f.toml | head -1`), as `rg … | head` does not:
//!
//! - stdout closed: [`print`] fails with [`Closed`], the command stops, and `vaelab` exits 0
//!   quietly: the reader had all it wanted. [`install`] does the same for std's `print!` and
//!   `println!`, which panic on a closed stdout.
//! - stderr closed: [`note!`] drops the line and stops training as Ctrl-C does (each run keeps
//!   its last finished epoch; exit 130, and the sweep resumes when run again).

use std::fmt;
use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Stdout was closed by its reader: not a failure; `vaelab` exits 0 without a word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("stdout closed")
    }
}

impl std::error::Error for Closed {}

/// Whether `e` (or its cause) is a closed stdout.
pub fn is_closed(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<Closed>())
}

/// Writes to stdout (locked, flushed); a closed stdout is [`Closed`], other failures are
/// errors that say so.
pub fn print(args: fmt::Arguments) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)
        .and_then(|()| out.flush())
        .map_err(|e| match e.kind() {
            ErrorKind::BrokenPipe => anyhow::Error::new(Closed),
            _ => anyhow::Error::new(e).context("writing to stdout"),
        })
}

/// Set once a write to stderr failed: the remaining lines are dropped.
static STDERR_CLOSED: AtomicBool = AtomicBool::new(false);

/// What a closed stderr stops (the Ctrl-C flag of the command that runs).
static STOP: Mutex<Option<Arc<AtomicBool>>> = Mutex::new(None);

/// A closed stderr sets `flag` from now on, as Ctrl-C does.
pub fn stop_when_stderr_closes(flag: Arc<AtomicBool>) {
    *STOP.lock().unwrap_or_else(|e| e.into_inner()) = Some(flag);
}

/// One line on stderr; when stderr is closed, it is dropped and training stops.
pub fn note_line(args: fmt::Arguments) {
    if STDERR_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut err = std::io::stderr().lock();
    if err
        .write_fmt(args)
        .and_then(|()| err.write_all(b"\n"))
        .is_err()
    {
        STDERR_CLOSED.store(true, Ordering::Relaxed);
        if let Some(flag) = &*STOP.lock().unwrap_or_else(|e| e.into_inner()) {
            flag.store(true, Ordering::SeqCst);
        }
    }
}

/// `eprintln!` that neither panics nor keeps training when stderr is gone.
macro_rules! note {
    ($($arg:tt)*) => {
        $crate::output::note_line(format_args!($($arg)*))
    };
}
pub(crate) use note;

/// A guard for a `print!`/`println!` added outside [`print`]: their panic on a closed stdout
/// ("failed printing to stdout: Broken pipe") becomes a quiet exit 0 too; every other panic is
/// reported as before. Every command prints through [`print`] today.
pub fn install() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let text = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if text.starts_with("failed printing to stdout") && text.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info)
    }));
}
