//! Bad input by the thousand: seeded mutants of every shipped run and sweep file go through
//! the loaders `vaelab run` and `vaelab plan` use. Each must load (and print its plan) or be
//! refused with a message that names the file; none may panic. `VAELAB_MUTANT_SEED` replays a
//! seed; the seed in use is printed.

use crate::config::load_run_file;
use crate::sweep_file::load_sweep_file;
use std::path::Path;

/// How many mutants in all (spread over the shipped files).
const CASES: usize = 12_000;

/// splitmix64: a tiny seeded stream, enough to pick mutations.
struct Stream(u64);

impl Stream {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

/// Values of the wrong type or out of range, and strays.
const VALUES: &[&str] = &[
    "0",
    "-1",
    "1e308",
    "-1e308",
    "nan",
    "inf",
    "99999999999999999999",
    "0.0",
    "\"\"",
    "\"x\"",
    "[]",
    "[1, \"a\"]",
    "{}",
    "{ a = 1 }",
    "true",
    "1979-05-27",
    "[[1]]",
    "2000",
    "\"../escape\"",
    "\"/tmp/x\"",
    "\"a/b\"",
    "-0.0",
    "1.5",
    "\"vae\"",
    "[0, 1, 2, 3, 4]",
];

/// Headers and lines that may not belong.
const STRAYS: &[&str] = &[
    "[sweep]",
    "[base]",
    "[grid]",
    "[[exclude]]",
    "[slurm]",
    "[run]",
    "[[grid]]",
    "x = 1",
    "name = \"n\"",
    "seeds = []",
    "[grid.latent_dim]",
    "latent_dim = [2, 2]",
    "model = \"ae\"",
    "likelihood = \"gaussian\"",
    "architecture = \"conv\"",
    "schedule = \"aggressive\"",
    "= 3",
    "[",
    "\"unterminated",
    "binarize = \"static\"",
    "dataset = \"hub:\"",
    "epochs = [1, 2]",
];

fn mutate(text: &str, s: &mut Stream) -> Vec<u8> {
    let mut lines: Vec<Vec<u8>> = text.lines().map(|l| l.as_bytes().to_vec()).collect();
    for _ in 0..1 + s.below(3) {
        let n = lines.len().max(1);
        let i = s.below(n);
        match s.below(8) {
            0 if !lines.is_empty() => {
                lines.remove(i);
            }
            1 if !lines.is_empty() => {
                let l = lines[i].clone();
                lines.insert(i, l);
            }
            2 if !lines.is_empty() => {
                let cut = s.below(lines[i].len() + 1);
                lines[i].truncate(cut);
            }
            3 if !lines.is_empty() => {
                // Swap the value of a `key = value` line.
                if let Some(eq) = lines[i].iter().position(|&b| b == b'=') {
                    let mut l = lines[i][..=eq].to_vec();
                    l.push(b' ');
                    l.extend_from_slice(s.pick(VALUES).as_bytes());
                    lines[i] = l;
                }
            }
            4 => lines.insert(s.below(n + 1), s.pick(STRAYS).as_bytes().to_vec()),
            5 if !lines.is_empty() => {
                // Invalid UTF-8 or a control byte inside a line.
                let at = s.below(lines[i].len() + 1);
                let bad: &[u8] = [&[0xff, 0xfe][..], &[0xc3], &[0], &[b'\t', 0x80]][s.below(4)];
                lines[i].splice(at..at, bad.iter().copied());
            }
            6 => {
                // Truncate the whole file at a byte.
                let flat = lines.join(&b'\n');
                let cut = s.below(flat.len() + 1);
                return flat[..cut].to_vec();
            }
            _ if !lines.is_empty() => {
                // A number nudged out of range.
                let l = String::from_utf8_lossy(&lines[i]).into_owned();
                lines[i] = l
                    .replace('1', s.pick(&["0", "-1", "1000000", "1e-30"]))
                    .into_bytes();
            }
            _ => {}
        }
    }
    let mut out = lines.join(&b'\n');
    out.push(b'\n');
    out
}

/// What one mutant did.
#[derive(Default, Debug)]
struct Tally {
    loaded: usize,
    refused: usize,
}

#[test]
fn mutants_of_the_shipped_files_load_or_are_refused_naming_the_file_and_never_panic() {
    let seed: u64 = std::env::var("VAELAB_MUTANT_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_261_202);
    eprintln!("mutant seed {seed} (replay: VAELAB_MUTANT_SEED={seed})");
    let experiments = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&experiments)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    files.sort();
    assert!(files.len() >= 10, "{} shipped files", files.len());
    let tmp = tempfile::tempdir().unwrap();
    let mut s = Stream(seed);
    let mut tally = Tally::default();
    let mut problems = Vec::new();
    for case in 0..CASES {
        let (name, text) = &files[case % files.len()];
        let path = tmp.path().join(format!("mutant-{case}-{name}"));
        let bytes = mutate(text, &mut s);
        std::fs::write(&path, &bytes).unwrap();
        let shown = path.display().to_string();
        let sweep = text.contains("[sweep]");
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if sweep {
                load_sweep_file(&path)
                    .map(|plan| drop((plan.table(), plan.summary())))
                    .map_err(|e| e.to_string())
            } else {
                load_run_file(&path).map(drop).map_err(|e| e.to_string())
            }
        }));
        match result {
            Ok(Ok(())) => tally.loaded += 1,
            Ok(Err(msg)) if msg.contains(&shown) => tally.refused += 1,
            Ok(Err(msg)) => problems.push(format!("case {case} ({name}): {msg}")),
            Err(_) => problems.push(format!(
                "case {case} ({name}) panicked on:\n{}",
                String::from_utf8_lossy(&bytes)
            )),
        }
        let _ = std::fs::remove_file(&path);
    }
    eprintln!(
        "{CASES} mutants of {} shipped files: {} loaded, {} refused naming the file",
        files.len(),
        tally.loaded,
        tally.refused
    );
    assert!(
        problems.is_empty(),
        "seed {seed}: {} of {CASES} mutants went wrong:\n{}",
        problems.len(),
        problems[..problems.len().min(10)].join("\n\n")
    );
    // The mutator must reach both outcomes, or it tests nothing.
    assert!(
        tally.refused > CASES / 4 && tally.loaded > CASES / 50,
        "{tally:?}"
    );
}
