//! Architecture checks that fail on a new import circle, and on a file write that bypasses
//! the atomic write path (`every_file_write_goes_through_the_atomic_path`).
//!
//! An import circle is a set of files of one crate that name each other's items: A uses an
//! item defined in B and B (directly or through more files) uses an item defined in A. Each
//! such set is a strongly connected component of the file graph built here, without `syn`, by
//! a small text-level scanner:
//!
//! - comments, strings and char literals are blanked, and every `#[cfg(test)]` item (the
//!   `mod tests` blocks, test-only helpers, `#[cfg(test)] mod testing;` with its file) is
//!   dropped: only code that ships counts;
//! - the module tree comes from the `mod x;` declarations, from `lib.rs` down (`x.rs` or
//!   `x/mod.rs`; inline `mod x { .. }` blocks belong to their file); the declarations
//!   themselves are not edges;
//! - every `use` tree (braces, `self`, `as`, globs, `crate::`, `super::`, `self::`, paths
//!   relative to the module) and every inline path that starts with `crate::`, `super::`,
//!   `self::`, a child module or an imported module is resolved to the file that *defines* the
//!   item it names: an item re-exported by `pub use` resolves through the re-export, a name
//!   that is a module resolves to that module's file. A `pub use` is a re-export, not an edge
//!   of the file it sits in.
//!
//! Across crates: the workspace crates' `vaelab-*` dependencies (every dependency table of
//! each `crates/*/Cargo.toml`) must not form a cycle, and `crates/kernels` (the compute
//! kernels, below the model) must not depend on `vaelab-vae`.
//!
//! `just circles` runs this file alone.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Circles tolerated for a while, each the exact set of files of one circle (none today: keep
/// it so). A circle that grows, or any other circle, fails; so does an entry that no longer
/// matches a circle.
const ALLOWED_CIRCLES: &[&[&str]] = &[];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The workspace's crate folders (`crates/*` with a Cargo.toml), by name.
fn crate_dirs() -> Vec<(String, PathBuf)> {
    let mut dirs: Vec<(String, PathBuf)> = std::fs::read_dir(workspace().join("crates"))
        .expect("crates/ is readable")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("Cargo.toml").exists())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    dirs.sort();
    dirs
}

/// Every `.rs` file under `dir`, keyed by its path relative to `dir` with `/` separators.
fn read_sources(dir: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(root).unwrap();
                let key = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                out.insert(key, std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

#[test]
fn no_import_circles() {
    let mut found: Vec<(BTreeSet<String>, String)> = Vec::new();
    for (_, dir) in crate_dirs() {
        let src = dir.join("src");
        if !src.is_dir() {
            continue;
        }
        let prefix = format!("crates/{}/src/", dir.file_name().unwrap().to_string_lossy());
        let graph = scan::Crate::parse(&read_sources(&src)).edges();
        for circle in scan::circles(&graph) {
            let files: BTreeSet<String> = circle
                .files
                .iter()
                .map(|f| format!("{prefix}{f}"))
                .collect();
            found.push((files, circle.describe(&prefix)));
        }
    }
    let allowed: Vec<BTreeSet<String>> = ALLOWED_CIRCLES
        .iter()
        .map(|c| c.iter().map(|f| f.to_string()).collect())
        .collect();
    let mut problems: Vec<String> = found
        .iter()
        .filter(|(files, _)| !allowed.contains(files))
        .map(|(_, text)| text.clone())
        .collect();
    for a in &allowed {
        if !found.iter().any(|(files, _)| files == a) {
            problems.push(format!(
                "ALLOWED_CIRCLES names a circle that is gone (remove the entry): {}",
                a.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    for (files, text) in &found {
        if allowed.contains(files) {
            eprintln!("allowed for now (ALLOWED_CIRCLES):\n{text}");
        }
    }
    assert!(
        problems.is_empty(),
        "import circles (files that name each other's items; move what they share into a \
         file that both use and that uses neither):\n\n{}",
        problems.join("\n")
    );
}

#[test]
fn crate_dependencies_form_no_cycle() {
    let mut names = Vec::new();
    let mut deps = Vec::new();
    for (_, dir) in crate_dirs() {
        let toml = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        let (name, d) = cargo::package_and_deps(&toml);
        names.push(name);
        deps.push(d);
    }
    let index = |n: &str| names.iter().position(|x| x == n);
    let edges: Vec<Vec<usize>> = deps
        .iter()
        .map(|d| d.iter().filter_map(|n| index(n)).collect())
        .collect();
    let cycles: Vec<String> = scan::strongly_connected(&edges)
        .into_iter()
        .filter(|c| c.len() > 1)
        .map(|c| {
            c.iter()
                .map(|&i| names[i].clone())
                .collect::<Vec<_>>()
                .join(" <-> ")
        })
        .collect();
    assert!(
        cycles.is_empty(),
        "workspace crates depend on each other in a cycle: {}",
        cycles.join("; ")
    );
}

#[test]
fn kernels_crate_does_not_depend_on_the_model_crate() {
    let path = workspace().join("crates/kernels/Cargo.toml");
    let Ok(toml) = std::fs::read_to_string(&path) else {
        return; // no kernels crate yet
    };
    let (name, deps) = cargo::package_and_deps(&toml);
    assert!(
        !deps.contains("vaelab-vae"),
        "crates/kernels/Cargo.toml: {name} depends on vaelab-vae; the kernels sit below the \
         model, so the model depends on them and never the other way"
    );
}

/// Calls that write or replace a file, as token sequences of shipped code.
const FILE_WRITES: &[&[&str]] = &[
    &["fs", "::", "write"],
    &["fs", "::", "copy"],
    &["fs", "::", "rename"],
    &["File", "::", "create"],
    &["OpenOptions"],
    &["BitMapBackend", "::", "new"],
    &["persist"],
];

/// The files allowed to make such calls, each with how many and why. Every other write goes
/// through `vaelab_track::write_atomic*` (fill a temp file, fsync, rename, fsync the folder),
/// where the fault injector reaches it.
const ALLOWED_WRITES: &[(&str, &str, usize, &str)] = &[
    (
        "crates/data/src/cache.rs",
        "persist",
        1,
        "the decoded dataset cache, not a result: a temp file renamed into place (a lost one is rebuilt), outside the crash tests' count of result writes",
    ),
    (
        "crates/track/src/atomic.rs",
        "fs::write",
        1,
        "the atomic path itself",
    ),
    (
        "crates/track/src/atomic.rs",
        "persist",
        1,
        "the atomic path itself",
    ),
    (
        "crates/track/src/table.rs",
        "File::create",
        1,
        "fills write_atomic_with's temp file",
    ),
    (
        "crates/report/src/canvas.rs",
        "BitMapBackend::new",
        1,
        "draws into write_atomic_with's temp file",
    ),
    (
        "crates/track/src/lock.rs",
        "OpenOptions",
        2,
        "the run's lock file, which holds no result (its import and its open)",
    ),
    (
        "crates/runner/src/slurm/submit.rs",
        "fs::rename",
        1,
        "a staged Slurm folder (of atomic writes) renamed whole to its job id",
    ),
];

/// Whether `file` is a module only tests compile: declared under `#[cfg(test)]` or
/// `#[cfg(any(test, …))]` (a test-fixtures feature) in its crate.
fn test_only(sources: &BTreeMap<String, String>, file: &str) -> bool {
    let stem = file
        .rsplit('/')
        .next()
        .unwrap_or(file)
        .trim_end_matches(".rs");
    sources.values().any(|text| {
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        lines.windows(2).any(|w| {
            w[0].starts_with("#[cfg(")
                && (w[0].contains("(test") || w[0].contains(" test"))
                && w[1]
                    .trim_start_matches("pub ")
                    .starts_with(&format!("mod {stem};"))
        })
    })
}

#[test]
fn every_file_write_goes_through_the_atomic_path() {
    let mut found: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (_, dir) in crate_dirs() {
        let src = dir.join("src");
        if !src.is_dir() {
            continue;
        }
        let prefix = format!("crates/{}/src/", dir.file_name().unwrap().to_string_lossy());
        let sources = read_sources(&src);
        for (file, text) in &sources {
            if test_only(&sources, file) {
                continue;
            }
            let toks: Vec<String> = scan::tokens(text)
                .into_iter()
                .map(|t| match t {
                    scan::Tok::Ident(w) => w,
                    scan::Tok::Sep => "::".into(),
                    scan::Tok::Punct(c) => c.to_string(),
                    scan::Tok::Lit => "\"\"".into(),
                })
                .collect();
            for call in FILE_WRITES {
                let n = toks.windows(call.len()).filter(|w| w == call).count();
                if n > 0 {
                    found.insert((format!("{prefix}{file}"), call.concat()), n);
                }
            }
        }
    }
    let mut problems = Vec::new();
    for ((file, call), n) in &found {
        match ALLOWED_WRITES.iter().find(|a| a.0 == file && a.1 == call) {
            Some(a) if a.2 == *n => {}
            Some(a) => problems.push(format!(
                "{file}: {n} × {call}, {} allowed ({}); write through vaelab_track::write_atomic*",
                a.2, a.3
            )),
            None => problems.push(format!(
                "{file}: {n} × {call} outside the atomic path; write through \
                 vaelab_track::write_atomic, write_atomic_with or copy_atomic"
            )),
        }
    }
    for (file, call, _, why) in ALLOWED_WRITES {
        if !found.contains_key(&(file.to_string(), call.to_string())) {
            problems.push(format!(
                "ALLOWED_WRITES names {call} in {file} ({why}), gone: remove it"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The `vaelab-*` dependencies of a Cargo.toml, read line by line.
mod cargo {
    use std::collections::BTreeSet;

    /// The package name and the `vaelab*` crates of every dependency table (normal, dev,
    /// build, target-specific).
    pub fn package_and_deps(toml: &str) -> (String, BTreeSet<String>) {
        let mut name = String::new();
        let mut deps = BTreeSet::new();
        let mut section = String::new();
        for line in toml.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            if let Some(header) = line.strip_prefix('[') {
                section = header
                    .trim_matches(|c| c == '[' || c == ']')
                    .trim()
                    .to_string();
                // `[dependencies.vaelab-vae]`
                if let Some((table, dep)) = section.rsplit_once('.') {
                    if table.ends_with("dependencies") && dep.starts_with("vaelab") {
                        deps.insert(dep.trim_matches('"').to_string());
                    }
                }
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let key = key.trim();
            if section == "package" && key == "name" {
                name = value.trim().trim_matches('"').to_string();
            } else if section.ends_with("dependencies") {
                // `vaelab-vae.workspace = true`, `vaelab-vae = { .. }`, or a renamed
                // `vae = { package = "vaelab-vae", .. }`.
                let dep = key.split('.').next().unwrap_or("").trim_matches('"');
                if let Some(i) = value.find("package") {
                    let renamed = value[i..].split('"').nth(1).unwrap_or("");
                    if renamed.starts_with("vaelab") {
                        deps.insert(renamed.to_string());
                        continue;
                    }
                }
                if dep.starts_with("vaelab") {
                    deps.insert(dep.to_string());
                }
            }
        }
        (name, deps)
    }

    #[test]
    fn reads_every_dependency_form() {
        let toml = r#"
[package]
name = "vaelab-x" # a comment

[dependencies]
vaelab-data.workspace = true
vaelab-track = { workspace = true, features = ["a"] }
serde.workspace = true
kern = { package = "vaelab-kernels", path = "../kernels" }

[features]
cuda = ["vaelab-vae/cuda"]

[dev-dependencies.vaelab-report]
path = "../report"

[target.'cfg(unix)'.build-dependencies]
vaelab-slurm = { path = "../slurm" }
"#;
        let (name, deps) = package_and_deps(toml);
        assert_eq!(name, "vaelab-x");
        let deps: Vec<&str> = deps.iter().map(String::as_str).collect();
        assert_eq!(
            deps,
            [
                "vaelab-data",
                "vaelab-kernels",
                "vaelab-report",
                "vaelab-slurm",
                "vaelab-track"
            ]
        );
    }
}

/// The text-level scanner: sources to tokens, tokens to a module tree with its items, uses
/// and inline paths, those resolved to the files that define what they name.
mod scan {
    use std::collections::{BTreeMap, BTreeSet};

    #[derive(Debug, Clone, PartialEq)]
    pub enum Tok {
        Ident(String),
        /// `::`
        Sep,
        Punct(char),
        /// A number, string or char literal (its text does not matter).
        Lit,
    }

    fn is_ident_char(c: char) -> bool {
        c.is_alphanumeric() || c == '_'
    }

    /// Blanks comments (nested block comments too), strings (raw ones included) and char
    /// literals; lifetimes stay.
    pub fn strip(src: &str) -> String {
        let c: Vec<char> = src.chars().collect();
        let mut out = String::with_capacity(src.len());
        let mut i = 0;
        let starts_token = |i: usize| i == 0 || !is_ident_char(c[i - 1]);
        while i < c.len() {
            let ch = c[i];
            let next = c.get(i + 1).copied();
            if ch == '/' && next == Some('/') {
                while i < c.len() && c[i] != '\n' {
                    i += 1;
                }
            } else if ch == '/' && next == Some('*') {
                let mut depth = 0;
                while i < c.len() {
                    if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                        depth += 1;
                        i += 2;
                    } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        if c[i] == '\n' {
                            out.push('\n');
                        }
                        i += 1;
                    }
                }
                out.push(' ');
            } else if ch == '"' {
                i += 1;
                while i < c.len() && c[i] != '"' {
                    i += if c[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str(" \"\" ");
            } else if starts_token(i)
                && (ch == 'r' || (ch == 'b' && next == Some('r')))
                && raw_string_start(&c, i).is_some()
            {
                let (hashes, open) = raw_string_start(&c, i).unwrap();
                i = open + 1;
                loop {
                    if i >= c.len() {
                        break;
                    }
                    if c[i] == '"' && (1..=hashes).all(|k| c.get(i + k) == Some(&'#')) {
                        i += 1 + hashes;
                        break;
                    }
                    i += 1;
                }
                out.push_str(" \"\" ");
            } else if ch == '\'' {
                if next == Some('\\') {
                    // '\n', '\'', '\u{..}': skip the escaped char, then up to the closing quote.
                    i += 3;
                    while i < c.len() && c[i] != '\'' {
                        i += 1;
                    }
                    i += 1;
                    out.push_str(" \"\" ");
                } else if c.get(i + 2) == Some(&'\'') {
                    i += 3;
                    out.push_str(" \"\" ");
                } else {
                    out.push('\''); // a lifetime
                    i += 1;
                }
            } else {
                out.push(ch);
                i += 1;
            }
        }
        out
    }

    /// `r"`, `r#"`, `br##"`…: the number of hashes and the index of the opening quote.
    fn raw_string_start(c: &[char], i: usize) -> Option<(usize, usize)> {
        let mut j = i + if c[i] == 'b' { 2 } else { 1 };
        let mut hashes = 0;
        while c.get(j) == Some(&'#') {
            hashes += 1;
            j += 1;
        }
        (c.get(j) == Some(&'"')).then_some((hashes, j))
    }

    /// Tokens of stripped source.
    pub fn tokens(src: &str) -> Vec<Tok> {
        let c: Vec<char> = strip(src).chars().collect();
        let mut out = Vec::new();
        let mut i = 0;
        while i < c.len() {
            let ch = c[i];
            if ch.is_whitespace() {
                i += 1;
            } else if ch == '"' {
                // The blanked literal `""`.
                i += 2;
                out.push(Tok::Lit);
            } else if ch.is_ascii_digit() {
                while i < c.len() && is_ident_char(c[i]) {
                    i += 1;
                }
                out.push(Tok::Lit);
            } else if is_ident_char(ch) {
                let start = i;
                while i < c.len() && is_ident_char(c[i]) {
                    i += 1;
                }
                let mut word: String = c[start..i].iter().collect();
                // A raw identifier `r#type`.
                if word == "r"
                    && c.get(i) == Some(&'#')
                    && c.get(i + 1).is_some_and(|&x| is_ident_char(x))
                {
                    let s = i + 1;
                    i = s;
                    while i < c.len() && is_ident_char(c[i]) {
                        i += 1;
                    }
                    word = c[s..i].iter().collect();
                }
                out.push(Tok::Ident(word));
            } else if ch == ':' && c.get(i + 1) == Some(&':') {
                i += 2;
                out.push(Tok::Sep);
            } else {
                i += 1;
                out.push(Tok::Punct(ch));
            }
        }
        drop_cfg_test(out)
    }

    fn is(t: Option<&Tok>, word: &str) -> bool {
        matches!(t, Some(Tok::Ident(w)) if w == word)
    }

    fn punct(t: Option<&Tok>, p: char) -> bool {
        t == Some(&Tok::Punct(p))
    }

    /// The index just past the group that opens at `i` (`(`, `[` or `{`), nesting counted.
    fn close(toks: &[Tok], i: usize) -> usize {
        let mut depth = 0i32;
        let mut j = i;
        while j < toks.len() {
            match toks[j] {
                Tok::Punct('(' | '[' | '{') => depth += 1,
                Tok::Punct(')' | ']' | '}') => {
                    depth -= 1;
                    if depth == 0 {
                        return j + 1;
                    }
                }
                _ => {}
            }
            j += 1;
        }
        toks.len()
    }

    /// Drops every item (or statement) marked `#[cfg(test)]`, and the whole file when it is
    /// `#![cfg(test)]`.
    fn drop_cfg_test(toks: Vec<Tok>) -> Vec<Tok> {
        let cfg_test = |toks: &[Tok], i: usize| -> Option<usize> {
            // `#` [`!`] `[` cfg ( test ) `]`
            let mut j = i;
            if !punct(toks.get(j), '#') {
                return None;
            }
            j += 1;
            let inner = punct(toks.get(j), '!');
            if inner {
                j += 1;
            }
            let want = [
                Tok::Punct('['),
                Tok::Ident("cfg".into()),
                Tok::Punct('('),
                Tok::Ident("test".into()),
                Tok::Punct(')'),
                Tok::Punct(']'),
            ];
            (toks.get(j..j + want.len())? == want).then_some(if inner {
                usize::MAX
            } else {
                j + want.len()
            })
        };
        let mut out = Vec::with_capacity(toks.len());
        let mut i = 0;
        while i < toks.len() {
            match cfg_test(&toks, i) {
                Some(usize::MAX) => return Vec::new(),
                Some(mut j) => {
                    // Further attributes of the same item.
                    while punct(toks.get(j), '#') && punct(toks.get(j + 1), '[') {
                        j = close(&toks, j + 1);
                    }
                    // The item: up to a `;` outside groups, or through its `{ .. }` body.
                    let mut depth = 0i32;
                    while j < toks.len() {
                        match toks[j] {
                            Tok::Punct('(' | '[') => depth += 1,
                            Tok::Punct(')' | ']') => depth -= 1,
                            Tok::Punct(';') if depth == 0 => {
                                j += 1;
                                break;
                            }
                            Tok::Punct('{') if depth == 0 => {
                                j = close(&toks, j);
                                break;
                            }
                            _ => {}
                        }
                        j += 1;
                    }
                    i = j;
                }
                None => {
                    out.push(toks[i].clone());
                    i += 1;
                }
            }
        }
        out
    }

    /// One binding of a `use` tree: the full path and the name it brings into scope (`None`
    /// for a glob, `_` for `as _`).
    #[derive(Debug, Clone, PartialEq)]
    pub struct UseEntry {
        pub path: Vec<String>,
        pub name: Option<String>,
    }

    /// Parses the use tree starting at `i` (just after `use`) up to its `;`; returns the
    /// entries and the index after the `;`.
    pub fn parse_use(toks: &[Tok], i: usize) -> (Vec<UseEntry>, usize) {
        fn tree(toks: &[Tok], mut i: usize, prefix: &[String], out: &mut Vec<UseEntry>) -> usize {
            let mut path = prefix.to_vec();
            if toks.get(i) == Some(&Tok::Sep) {
                i += 1; // a leading `::`
            }
            loop {
                match toks.get(i) {
                    Some(Tok::Ident(w)) => {
                        let w = w.clone();
                        i += 1;
                        if toks.get(i) == Some(&Tok::Sep) {
                            path.push(w);
                            i += 1;
                            continue;
                        }
                        let mut name = if w == "self" {
                            path.last().cloned().unwrap_or_default()
                        } else {
                            path.push(w.clone());
                            w
                        };
                        if is(toks.get(i), "as") {
                            if let Some(Tok::Ident(a)) = toks.get(i + 1) {
                                name = a.clone();
                            }
                            i += 2;
                        }
                        out.push(UseEntry {
                            path,
                            name: Some(name),
                        });
                        return i;
                    }
                    Some(Tok::Punct('*')) => {
                        out.push(UseEntry { path, name: None });
                        return i + 1;
                    }
                    Some(Tok::Punct('{')) => {
                        i += 1;
                        loop {
                            match toks.get(i) {
                                Some(Tok::Punct('}')) => return i + 1,
                                Some(Tok::Punct(',')) => i += 1,
                                None => return i,
                                _ => i = tree(toks, i, &path, out),
                            }
                        }
                    }
                    _ => return i,
                }
            }
        }
        let mut out = Vec::new();
        let mut j = tree(toks, i, &[], &mut out);
        while j < toks.len() && !punct(toks.get(j), ';') {
            j += 1;
        }
        (out, j + 1)
    }

    /// One module of the tree.
    #[derive(Debug, Default)]
    pub struct Module {
        pub file: String,
        pub parent: Option<usize>,
        /// Where the files of its `mod x;` children live, relative to src.
        child_dir: String,
        pub children: BTreeMap<String, usize>,
        /// Items defined at its top level (fn, struct, enum, trait, type, const, static, macro).
        pub items: BTreeSet<String>,
        /// `(entry, is a pub use)`.
        pub uses: Vec<(UseEntry, bool)>,
        /// Inline paths (`crate::a::b`, `super::x`, `child::f`) in its code.
        pub paths: Vec<Vec<String>>,
    }

    /// A crate's module tree.
    #[derive(Debug, Default)]
    pub struct Crate {
        pub modules: Vec<Module>,
    }

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Target {
        Module(usize),
        /// An item defined in that module.
        Item(usize),
    }

    const ITEM_KEYWORDS: [&str; 9] = [
        "fn",
        "struct",
        "enum",
        "union",
        "trait",
        "type",
        "const",
        "static",
        "macro_rules",
    ];

    impl Crate {
        /// The tree from `lib.rs` (else `main.rs`) of `files` (paths relative to src).
        pub fn parse(files: &BTreeMap<String, String>) -> Crate {
            let mut krate = Crate::default();
            let root = if files.contains_key("lib.rs") {
                "lib.rs"
            } else {
                "main.rs"
            };
            let Some(src) = files.get(root) else {
                return krate;
            };
            krate.modules.push(Module {
                file: root.into(),
                ..Default::default()
            });
            let mut queue = vec![(0usize, src.clone())];
            while let Some((m, src)) = queue.pop() {
                for (child, name) in krate.scan_file(m, &tokens(&src)) {
                    let dir = krate.modules[child].child_dir.clone();
                    let flat = format!("{dir}.rs");
                    let nested = format!("{dir}/mod.rs");
                    let file = if files.contains_key(&flat) {
                        flat
                    } else {
                        nested
                    };
                    match files.get(&file) {
                        Some(text) => {
                            krate.modules[child].file = file;
                            queue.push((child, text.clone()));
                        }
                        None => panic!(
                            "mod {name}; declared in {}, but no file",
                            krate.modules[m].file
                        ),
                    }
                }
            }
            krate
        }

        fn add_child(&mut self, parent: usize, name: &str, file: Option<String>) -> usize {
            let pdir = &self.modules[parent].child_dir;
            let child_dir = if pdir.is_empty() {
                name.to_string()
            } else {
                format!("{pdir}/{name}")
            };
            let id = self.modules.len();
            self.modules.push(Module {
                file: file.unwrap_or_default(),
                parent: Some(parent),
                child_dir,
                ..Default::default()
            });
            self.modules[parent].children.insert(name.to_string(), id);
            id
        }

        /// Scans one file whose top module is `m`; returns its `mod x;` children to load.
        fn scan_file(&mut self, m: usize, toks: &[Tok]) -> Vec<(usize, String)> {
            let file = self.modules[m].file.clone();
            // Children of `a.rs` live in `a/`; children of lib.rs, main.rs or mod.rs beside it.
            let base = file.rsplit_once('/').map_or("", |(d, _)| d).to_string();
            let stem = file.trim_end_matches(".rs");
            let stem = stem.rsplit('/').next().unwrap_or(stem);
            self.modules[m].child_dir = if ["lib", "main", "mod"].contains(&stem) {
                base
            } else {
                file.trim_end_matches(".rs").to_string()
            };
            let mut external = Vec::new();
            // (module, the brace depth of its item level)
            let mut stack: Vec<(usize, i32)> = vec![(m, 0)];
            let mut depth = 0i32;
            let mut i = 0;
            while i < toks.len() {
                let (cur, level) = *stack.last().unwrap();
                let at_item_level = depth == level;
                match &toks[i] {
                    Tok::Punct('{') => depth += 1,
                    Tok::Punct('}') => {
                        depth -= 1;
                        if depth < level {
                            stack.pop();
                        }
                    }
                    Tok::Ident(w) if w == "mod" && at_item_level => {
                        if let Some(Tok::Ident(name)) = toks.get(i + 1) {
                            if punct(toks.get(i + 2), ';') {
                                let child = self.add_child(cur, name, None);
                                external.push((child, name.clone()));
                                i += 3;
                                continue;
                            }
                            if punct(toks.get(i + 2), '{') {
                                let child = self.add_child(cur, name, Some(file.clone()));
                                depth += 1;
                                stack.push((child, depth));
                                i += 3;
                                continue;
                            }
                        }
                    }
                    Tok::Ident(w) if w == "use" => {
                        let public = at_item_level && is_pub_before(toks, i);
                        let (entries, next) = parse_use(toks, i + 1);
                        self.modules[cur]
                            .uses
                            .extend(entries.into_iter().map(|e| (e, public)));
                        i = next;
                        continue;
                    }
                    Tok::Ident(w) if at_item_level && ITEM_KEYWORDS.contains(&w.as_str()) => {
                        let mut j = i + 1;
                        if w == "macro_rules" && punct(toks.get(j), '!') {
                            j += 1;
                        }
                        if is(toks.get(j), "mut") {
                            j += 1; // `static mut X`
                        }
                        if let Some(Tok::Ident(name)) = toks.get(j) {
                            // `const fn f`, `unsafe fn`… are caught at the `fn`.
                            if !["fn", "unsafe", "async", "extern", "_"].contains(&name.as_str()) {
                                self.modules[cur].items.insert(name.clone());
                            }
                        }
                    }
                    Tok::Ident(first)
                        if toks.get(i + 1) == Some(&Tok::Sep)
                            && (i == 0 || toks[i - 1] != Tok::Sep) =>
                    {
                        let mut path = vec![first.clone()];
                        let mut j = i + 1;
                        while toks.get(j) == Some(&Tok::Sep) {
                            match toks.get(j + 1) {
                                Some(Tok::Ident(s)) => {
                                    path.push(s.clone());
                                    j += 2;
                                }
                                _ => break,
                            }
                        }
                        self.modules[cur].paths.push(path);
                        i = j;
                        continue;
                    }
                    _ => {}
                }
                i += 1;
            }
            external
        }

        fn lookup(&self, m: usize, name: &str, budget: &mut u32) -> Option<Target> {
            if *budget == 0 {
                return None;
            }
            *budget -= 1;
            let module = &self.modules[m];
            if let Some(&c) = module.children.get(name) {
                return Some(Target::Module(c));
            }
            if module.items.contains(name) {
                return Some(Target::Item(m));
            }
            for (u, _) in &module.uses {
                if u.name.as_deref() == Some(name) {
                    if let Some((t, _)) = self.resolve(m, &u.path, budget) {
                        return Some(t);
                    }
                }
            }
            for (u, _) in module.uses.iter().filter(|(u, _)| u.name.is_none()) {
                if let Some((Target::Module(g), _)) = self.resolve(m, &u.path, budget) {
                    if g != m {
                        if let Some(t) = self.lookup(g, name, budget) {
                            return Some(t);
                        }
                    }
                }
            }
            None
        }

        /// What `path`, written in module `m`, names, and the segment that named it; `None`
        /// for paths outside the crate.
        fn resolve(&self, m: usize, path: &[String], budget: &mut u32) -> Option<(Target, String)> {
            let first = path.first()?;
            let mut cur = match first.as_str() {
                "crate" => Target::Module(0),
                "self" => Target::Module(m),
                "super" => Target::Module(self.modules[m].parent?),
                name => self.lookup(m, name, budget)?,
            };
            let mut label = first.clone();
            for seg in &path[1..] {
                let Target::Module(c) = cur else {
                    break; // an item's variants or associated items: the item's file
                };
                cur = match seg.as_str() {
                    "super" => Target::Module(self.modules[c].parent?),
                    "self" => Target::Module(c),
                    // A name the scanner does not see defined (a macro's item): the module.
                    name => self.lookup(c, name, budget).unwrap_or(Target::Item(c)),
                };
                label = seg.clone();
            }
            Some((cur, label))
        }

        fn file_of(&self, t: Target) -> &str {
            match t {
                Target::Module(m) | Target::Item(m) => &self.modules[m].file,
            }
        }

        /// The file graph: (from, to) → the names that tie them.
        pub fn edges(&self) -> BTreeMap<(String, String), BTreeSet<String>> {
            let mut edges: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
            for (m, module) in self.modules.iter().enumerate() {
                let mut add = |path: &[String], glob: bool| {
                    let mut budget = 256;
                    let Some((t, label)) = self.resolve(m, path, &mut budget) else {
                        return;
                    };
                    let to = self.file_of(t);
                    if to != module.file && !to.is_empty() {
                        let label = if glob { format!("{label}::*") } else { label };
                        edges
                            .entry((module.file.clone(), to.to_string()))
                            .or_default()
                            .insert(label);
                    }
                };
                for (u, public) in &module.uses {
                    if !public {
                        add(&u.path, u.name.is_none());
                    }
                }
                for p in &module.paths {
                    // `Type::method` or `std::x`: only paths through this crate's modules.
                    let mut budget = 256;
                    let through_module = is_rooted(p)
                        || matches!(self.lookup(m, &p[0], &mut budget), Some(Target::Module(_)));
                    if through_module {
                        add(p, false);
                    }
                }
            }
            edges
        }
    }

    fn is_rooted(path: &[String]) -> bool {
        matches!(
            path.first().map(String::as_str),
            Some("crate" | "self" | "super")
        )
    }

    /// Whether the `use` at `i` is preceded by `pub` or `pub(..)`.
    fn is_pub_before(toks: &[Tok], i: usize) -> bool {
        if i == 0 {
            return false;
        }
        if is(toks.get(i - 1), "pub") {
            return true;
        }
        if punct(toks.get(i - 1), ')') {
            let mut j = i - 1;
            while j > 0 && !punct(toks.get(j), '(') {
                j -= 1;
            }
            return j > 0 && is(toks.get(j - 1), "pub");
        }
        false
    }

    /// Tarjan's strongly connected components of a graph given as adjacency lists.
    pub fn strongly_connected(adj: &[Vec<usize>]) -> Vec<Vec<usize>> {
        struct State<'a> {
            adj: &'a [Vec<usize>],
            index: Vec<Option<usize>>,
            low: Vec<usize>,
            on_stack: Vec<bool>,
            stack: Vec<usize>,
            next: usize,
            out: Vec<Vec<usize>>,
        }
        fn visit(s: &mut State, v: usize) {
            s.index[v] = Some(s.next);
            s.low[v] = s.next;
            s.next += 1;
            s.stack.push(v);
            s.on_stack[v] = true;
            for &w in &s.adj[v] {
                match s.index[w] {
                    None => {
                        visit(s, w);
                        s.low[v] = s.low[v].min(s.low[w]);
                    }
                    Some(iw) if s.on_stack[w] => s.low[v] = s.low[v].min(iw),
                    _ => {}
                }
            }
            if Some(s.low[v]) == s.index[v] {
                let mut comp = Vec::new();
                while let Some(w) = s.stack.pop() {
                    s.on_stack[w] = false;
                    comp.push(w);
                    if w == v {
                        break;
                    }
                }
                comp.sort();
                s.out.push(comp);
            }
        }
        let n = adj.len();
        let mut s = State {
            adj,
            index: vec![None; n],
            low: vec![0; n],
            on_stack: vec![false; n],
            stack: Vec::new(),
            next: 0,
            out: Vec::new(),
        };
        for v in 0..n {
            if s.index[v].is_none() {
                visit(&mut s, v);
            }
        }
        s.out
    }

    /// One import circle: its files and the edges between them with the names on each.
    #[derive(Debug)]
    pub struct Circle {
        pub files: Vec<String>,
        pub edges: Vec<(String, String, Vec<String>)>,
    }

    impl Circle {
        /// `prefix`-qualified lines, one per edge: `a.rs -> b.rs: x, y`.
        pub fn describe(&self, prefix: &str) -> String {
            let mut s = format!("circle of {} files:\n", self.files.len());
            for (from, to, names) in &self.edges {
                s.push_str(&format!(
                    "  {prefix}{from} -> {prefix}{to}: {}\n",
                    names.join(", ")
                ));
            }
            s
        }
    }

    /// The import circles of a file graph.
    pub fn circles(edges: &BTreeMap<(String, String), BTreeSet<String>>) -> Vec<Circle> {
        let files: Vec<&String> = edges
            .keys()
            .flat_map(|(a, b)| [a, b])
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let id = |f: &String| files.iter().position(|x| *x == f).unwrap();
        let mut adj = vec![Vec::new(); files.len()];
        for (a, b) in edges.keys() {
            adj[id(a)].push(id(b));
        }
        strongly_connected(&adj)
            .into_iter()
            .filter(|c| c.len() > 1)
            .map(|c| {
                let set: BTreeSet<&String> = c.iter().map(|&i| files[i]).collect();
                Circle {
                    files: set.iter().map(|f| f.to_string()).collect(),
                    edges: edges
                        .iter()
                        .filter(|((a, b), _)| set.contains(a) && set.contains(b))
                        .map(|((a, b), n)| (a.clone(), b.clone(), n.iter().cloned().collect()))
                        .collect(),
                }
            })
            .collect()
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn files(list: &[(&str, &str)]) -> BTreeMap<String, String> {
            list.iter()
                .map(|(p, s)| (p.to_string(), s.to_string()))
                .collect()
        }

        fn edges(list: &[(&str, &str)]) -> Vec<String> {
            Crate::parse(&files(list))
                .edges()
                .into_iter()
                .map(|((a, b), n)| {
                    format!(
                        "{a} -> {b}: {}",
                        n.into_iter().collect::<Vec<_>>().join(", ")
                    )
                })
                .collect()
        }

        fn entry(path: &str, name: Option<&str>) -> UseEntry {
            UseEntry {
                path: path.split("::").map(String::from).collect(),
                name: name.map(String::from),
            }
        }

        #[test]
        fn use_tree_with_nested_braces_self_alias_and_glob() {
            let toks = tokens("use crate::a::{b, c::{self, D as E}, f::*, g::h}; fn x() {}");
            let (entries, next) = parse_use(&toks, 1);
            assert_eq!(
                entries,
                [
                    entry("crate::a::b", Some("b")),
                    entry("crate::a::c", Some("c")),
                    entry("crate::a::c::D", Some("E")),
                    entry("crate::a::f", None),
                    entry("crate::a::g::h", Some("h")),
                ]
            );
            assert!(is(toks.get(next), "fn"));
        }

        #[test]
        fn a_re_export_resolves_to_the_defining_file() {
            let e = edges(&[
                ("lib.rs", "mod a; mod b; pub use a::Thing; pub use b::*;"),
                ("a.rs", "pub struct Thing; pub fn helper() {}"),
                (
                    "b.rs",
                    "use crate::Thing;\npub fn f() -> Thing { crate::a::helper(); Thing }",
                ),
            ]);
            // No edge from lib.rs (its `pub use` re-exports) and none into it.
            assert_eq!(e, ["b.rs -> a.rs: Thing, helper"]);
        }

        #[test]
        fn super_paths_child_modules_and_module_imports() {
            let e = edges(&[
                ("lib.rs", "pub mod x; pub mod z; pub fn top() {}"),
                ("x.rs", "mod y;\npub fn f() { y::g(); }"),
                (
                    "x/y.rs",
                    "use super::f;\npub fn g() { super::super::top(); f() }",
                ),
                (
                    "z/mod.rs",
                    "use crate::x::{self as ex};\nfn h() { ex::f(); }",
                ),
            ]);
            assert_eq!(
                e,
                [
                    "x.rs -> x/y.rs: g",
                    "x/y.rs -> lib.rs: top",
                    "x/y.rs -> x.rs: f",
                    "z/mod.rs -> x.rs: f, x",
                ]
            );
            let c = circles(
                &Crate::parse(&files(&[
                    ("lib.rs", "pub mod x;"),
                    ("x.rs", "mod y;\npub fn f() { y::g(); }"),
                    ("x/y.rs", "pub fn g() { super::f() }"),
                ]))
                .edges(),
            );
            assert_eq!(c.len(), 1);
            assert_eq!(
                c[0].describe("src/"),
                "circle of 2 files:\n  src/x.rs -> src/x/y.rs: g\n  src/x/y.rs -> src/x.rs: f\n"
            );
        }

        #[test]
        fn comments_strings_and_test_code_are_not_edges() {
            let e = edges(&[
                ("lib.rs", "mod a; mod b; #[cfg(test)] mod testing;"),
                ("a.rs", "pub fn f() {}"),
                ("testing.rs", "use crate::b::g;"),
                (
                    "b.rs",
                    r##"
                    // use crate::a::f;
                    /* crate::a::f() /* nested */ crate::a::f() */
                    pub fn g() -> (&'static str, char, &'static str) {
                        ("crate::a::f", '"', r#"crate::a::f "# )
                    }
                    #[cfg(test)]
                    #[allow(unused)]
                    fn only_in_tests() { crate::a::f() }
                    #[cfg(test)]
                    mod tests { use crate::a::f; }
                    "##,
                ),
            ]);
            assert!(e.is_empty(), "{e:?}");
        }

        #[test]
        fn inline_modules_belong_to_their_file() {
            let e = edges(&[
                ("lib.rs", "mod a; mod b;"),
                ("a.rs", "mod inner { pub fn f() {} }\npub use inner::f;"),
                ("b.rs", "fn g() { crate::a::f(); crate::a::inner::f(); }"),
            ]);
            assert_eq!(e, ["b.rs -> a.rs: f"]);
        }
    }
}
