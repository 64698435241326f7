//! Records the commit vaelab is built from, and whether its sources differed from it, so a
//! manifest names the build that trained a run (not the folder it was started in).

use std::path::Path;
use std::process::Command;

/// What a build is made of: a change here makes the build differ from its commit.
const SOURCES: &[&str] = &["crates", "Cargo.toml", "Cargo.lock"];

fn git(root: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(root)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    // Read when the script runs, not when it was compiled: a target folder shared by two
    // checkouts (or restored from another machine's) reuses the compiled script.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let root = Path::new(&manifest_dir).join("../..");
    let commit = git(&root, &["rev-parse", "--short=12", "HEAD"]);
    let mut status = vec!["status", "--porcelain", "--untracked-files=no", "--"];
    status.extend(SOURCES);
    let dirty = commit
        .as_ref()
        .and(git(&root, &status))
        .map(|s| !s.is_empty());
    let build = match (&commit, dirty) {
        (Some(c), Some(true)) => format!("{c}, dirty"),
        (Some(c), _) => c.clone(),
        (None, _) => "not built from a git checkout".into(),
    };
    println!("cargo:rustc-env=VAELAB_BUILD={build}");
    println!(
        "cargo:rustc-env=VAELAB_GIT_COMMIT={}",
        commit.unwrap_or_default()
    );
    println!(
        "cargo:rustc-env=VAELAB_GIT_DIRTY={}",
        dirty.map(|d| d.to_string()).unwrap_or_default()
    );
    // Rerun when HEAD moves (a commit, a checkout) or a source changes. The paths are relative
    // to this crate, so cargo checks them in whichever checkout builds: two checkouts sharing a
    // target folder share this script's output, which absolute paths would pin to one of them.
    if let Some(git_dir) = git(&root, &["rev-parse", "--git-dir"]) {
        let git_dir = if Path::new(&git_dir).is_absolute() {
            git_dir
        } else {
            format!("../../{git_dir}")
        };
        for f in ["HEAD", "index", "packed-refs"] {
            println!("cargo:rerun-if-changed={git_dir}/{f}");
        }
        if let Some(head_ref) = git(&root, &["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={git_dir}/{head_ref}");
        }
    }
    for s in SOURCES {
        println!("cargo:rerun-if-changed=../../{s}");
    }
}
