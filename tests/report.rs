//! End-to-end tests of the report: a tiny real sweep on Fashion-MNIST subsets, every figure
//! decoded and checked for content, redrawn from the folder alone, and the page opened in
//! headless Chromium.

mod common;

use common::{read, stderr, strings};

use polars::prelude::{ParquetReader, SerReader};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn vaelab(args: &[&str]) -> Output {
    common::require_fashion();
    Command::new(env!("CARGO_BIN_EXE_vaelab"))
        .args(args)
        .output()
        .expect("vaelab runs")
}

/// Runs a sweep file written from `body` into `<tmp>/results`; returns the sweep folder.
fn sweep(tmp: &Path, name: &str, body: &str) -> PathBuf {
    let file = tmp.join(format!("{name}.toml"));
    std::fs::write(&file, body).unwrap();
    let results = tmp.join("results");
    let out = vaelab(&[
        "sweep",
        file.to_str().unwrap(),
        "--results-dir",
        results.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    results.join(name)
}

const BASE: &str = "data_dir = \"/usr/share/datasets/fashion-mnist\"\nhidden = [32]\nepochs = 2\ntrain_subset = 600\ntest_subset = 200\niw_samples = 100\niw_test_n = 20\n";

fn files(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Decodes a PNG to 8-bit samples; returns (width, height, std of the samples).
fn png_stats(path: &Path) -> (u32, u32, f64) {
    let mut decoder =
        png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder
        .read_info()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader
        .next_frame(&mut buf)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let px = &buf[..info.buffer_size()];
    let n = px.len() as f64;
    let mean = px.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = px
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n;
    (info.width, info.height, var.sqrt())
}

/// Parses an SVG to the end; returns how many elements it has.
fn svg_elements(path: &Path) -> usize {
    let text = std::fs::read_to_string(path).unwrap();
    let mut reader = quick_xml::Reader::from_str(&text);
    let (mut elements, mut root) = (0, None);
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Start(e)) | Ok(quick_xml::events::Event::Empty(e)) => {
                elements += 1;
                root.get_or_insert_with(|| String::from_utf8_lossy(e.name().as_ref()).into_owned());
            }
            Ok(quick_xml::events::Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!("{}: not well-formed XML: {e}", path.display()),
        }
    }
    assert_eq!(root.as_deref(), Some("svg"), "{}", path.display());
    elements
}

/// The Chromium binary: `$VAELAB_CHROMIUM`, else `chromium` (Debian's package) on the PATH.
fn chromium() -> String {
    let bin = std::env::var("VAELAB_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let found = Command::new(&bin).arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "headless Chromium is needed for this test: apt-get install -y chromium (or set VAELAB_CHROMIUM)"
    );
    bin
}

/// Runs headless Chromium on a page with its own throwaway profile.
fn headless(page: &Path, extra: &[&str]) -> Output {
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}", page.display());
    Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("chromium runs")
}

#[test]
fn a_finished_sweep_draws_every_figure_redraws_them_and_the_page_loads_in_chromium() {
    let tmp = tempfile::tempdir().unwrap();
    let body = format!(
        "[sweep]\nname = \"figs\"\ndescription = \"<script>alert('x')</script> & more\"\njobs = 2\n\n[base]\n{BASE}\n[grid]\nmodel = [\"vae\", \"ae\"]\nlatent_dim = [2, 3]\n"
    );
    let dir = sweep(tmp.path(), "figs", &body);
    let figures = dir.join("figures");
    let expected: BTreeSet<String> = [
        "elbo_vs_latent_dim",
        "bits_per_dim",
        "rate_distortion",
        "learning_curves",
        "elbo_gap",
        "estep_curve",
        "mi_active_units",
        "kl_per_dim",
        "latent_space",
    ]
    .iter()
    .flat_map(|n| [format!("{n}.png"), format!("{n}.svg")])
    .chain(["reconstructions.png", "samples.png", "manifold.png"].map(String::from))
    .collect();
    assert_eq!(files(&figures), expected);
    for name in &expected {
        let path = figures.join(name);
        if name.ends_with(".png") {
            let (w, h, std) = png_stats(&path);
            assert!(w >= 300 && h >= 200, "{name}: {w}x{h}");
            assert!(std > 10.0, "{name}: looks blank (pixel std {std:.1})");
        } else {
            let n = svg_elements(&path);
            assert!(n > 30, "{name}: only {n} elements");
        }
    }

    // The page: every PNG shown, the sweep file escaped, skipped figures explained.
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    for name in expected.iter().filter(|n| n.ends_with(".png")) {
        assert!(
            html.contains(&format!("src=\"figures/{name}\"")),
            "{name} not on the page"
        );
    }
    assert!(
        !html.contains("<script>alert"),
        "TOML text reached the page unescaped"
    );
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more"));
    // The PSIS warning names exactly the runs whose share of images with k̂ above the bound
    // passes 5 % (read back from runs.parquet, not from the page's own table).
    let file = std::fs::File::open(dir.join("runs.parquet")).unwrap();
    let runs = ParquetReader::new(file).finish().unwrap();
    let ids = runs.column("run_id").unwrap().str().unwrap().clone();
    let shares = runs.column("iw_khat_share").unwrap().f64().unwrap().clone();
    let flagged: Vec<&str> = ids
        .iter()
        .zip(shares.iter())
        .filter(|(_, s)| s.is_some_and(|s| s > 0.05))
        .map(|(id, _)| id.unwrap())
        .collect();
    assert_eq!(
        shares.iter().flatten().count(),
        2,
        "the two VAE runs have a k̂ share"
    );
    let warning = html.lines().find(|l| l.contains("id=\"khat-warning\""));
    assert_eq!(warning.is_some(), !flagged.is_empty(), "{warning:?}");
    for id in &flagged {
        assert!(warning.unwrap().contains(id), "{id} not in {warning:?}");
    }

    // Redraw from the folder alone: the same files come back.
    std::fs::remove_dir_all(&figures).unwrap();
    let out = vaelab(&["report", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(files(&figures), expected);

    // Headless Chromium: every image loaded (the page's own check), and the screenshot is not blank.
    let dom = headless(&dir.join("report.html"), &["--dump-dom"]);
    let dom_text = String::from_utf8_lossy(&dom.stdout);
    let pngs = expected.iter().filter(|n| n.ends_with(".png")).count();
    assert!(
        dom_text.contains(&format!("data-images=\"ok {pngs}/{pngs}\"")),
        "not every image loaded: {}",
        dom_text
            .lines()
            .find(|l| l.contains("<body"))
            .unwrap_or("(no body)")
    );
    let shot = tmp.path().join("shot.png");
    let out = headless(
        &dir.join("report.html"),
        &[
            "--window-size=1200,2000",
            &format!("--screenshot={}", shot.display()),
        ],
    );
    assert!(shot.exists(), "no screenshot: {}", stderr(&out));
    let (_, _, std) = png_stats(&shot);
    assert!(
        std > 10.0,
        "the screenshot looks blank (pixel std {std:.1})"
    );
}

#[test]
fn figures_a_sweep_cannot_show_are_skipped_with_a_reason_not_drawn_empty() {
    // Autoencoders only, nothing but the seed varies: no axis, no rate, no ELBO, no IWAE.
    let tmp = tempfile::tempdir().unwrap();
    let body = format!(
        "[sweep]\nname = \"aes\"\nseeds = [0, 1]\n\n[base]\n{BASE}model = \"ae\"\nlatent_dim = 3\n"
    );
    let dir = sweep(tmp.path(), "aes", &body);
    let drawn = files(&dir.join("figures"));
    for absent in [
        "elbo_vs_key",
        "bits_per_dim",
        "rate_distortion",
        "elbo_gap",
        "kl_per_dim",
        "manifold",
        "pseudo_inputs",
    ] {
        assert!(
            !drawn.iter().any(|f| f.starts_with(absent)),
            "{absent} was drawn: {drawn:?}"
        );
    }
    for present in [
        "learning_curves.png",
        "reconstructions.png",
        "samples.png",
        "latent_space.png",
    ] {
        assert!(drawn.contains(present), "{present} missing: {drawn:?}");
    }
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    for why in [
        "no config key varies in this sweep",
        "the rate (KL) exists only for VAEs",
        "no finished VAE run has an IWAE estimate",
        "no finished VAE run has bits/dim",
        "no run has latent_dim = 2",
        "only a VampPrior learns pseudo-inputs",
        "not a search: the sweep file has no [search] table",
    ] {
        assert!(html.contains(why), "the page does not say {why:?}");
    }
}

/// A search with early stopping: the three search figures are drawn, and the totals in their
/// titles are the epochs and trials counted from metrics.parquet here.
#[test]
fn a_search_draws_its_progress_parallel_coordinates_and_key_importance() {
    let tmp = tempfile::tempdir().unwrap();
    let body = format!(
        "[sweep]\nname = \"find\"\njobs = 2\n\n[base]\n{BASE}latent_dim = 3\n\n[search]\nmethod = \"random\"\ntrials = 6\nseed = 2\nlr = {{ log_uniform = [1e-4, 1e-2] }}\nbeta = {{ uniform = [0.5, 2.0] }}\n\n[early_stop]\nrule = \"asha\"\nmin_epochs = 1\nreduction_factor = 2\n"
    ).replace("epochs = 2", "epochs = 3");
    let dir = sweep(tmp.path(), "find", &body);
    let figures = dir.join("figures");
    for name in ["search_progress", "search_parallel", "search_importance"] {
        let (w, h, std) = png_stats(&figures.join(format!("{name}.png")));
        assert!(
            w >= 300 && h >= 200 && std > 10.0,
            "{name}: {w}x{h}, std {std:.1}"
        );
    }
    let metrics = read(&dir.join("metrics.parquet"));
    let mut per_run: std::collections::BTreeMap<String, usize> = Default::default();
    for (id, split) in strings(&metrics, "run_id")
        .into_iter()
        .zip(strings(&metrics, "split"))
    {
        if split == "test" {
            *per_run.entry(id).or_default() += 1;
        }
    }
    let test_rows: usize = per_run.values().sum();
    let common_epoch = per_run.values().min().unwrap();
    let svg = std::fs::read_to_string(figures.join("search_progress.svg")).unwrap();
    assert!(
        svg.contains(&format!(
            "Best run so far ({test_rows} epochs trained in all)"
        )),
        "{test_rows} epochs"
    );
    let runs = read(&dir.join("runs.parquet"));
    assert!(strings(&runs, "status").iter().any(|s| s == "pruned"));
    let svg = std::fs::read_to_string(figures.join("search_importance.svg")).unwrap();
    assert!(
        svg.contains(&format!(
            "at epoch {common_epoch} ({} trials)",
            runs.height()
        )),
        "epoch {common_epoch}"
    );
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("src=\"figures/search_parallel.png\""));
}

/// A VampPrior run beside a standard one: the pseudo-inputs figure shows the VampPrior's
/// learned pseudo-inputs (and only its), the KL-per-dimension figure the standard run's.
#[test]
fn a_vampprior_sweep_draws_its_pseudo_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let body = format!(
        "[sweep]\nname = \"vamp\"\njobs = 2\n\n[base]\n{BASE}latent_dim = 3\npseudo_inputs = 16\n\n[grid]\nprior = [\"standard\", \"vamp\"]\n"
    );
    let dir = sweep(tmp.path(), "vamp", &body);
    let figures = dir.join("figures");
    let drawn = files(&figures);
    for name in ["pseudo_inputs.png", "kl_per_dim.png", "samples.png"] {
        assert!(drawn.contains(name), "{name} missing: {drawn:?}");
    }
    let (w, h, std) = png_stats(&figures.join("pseudo_inputs.png"));
    // One panel of 8 × 8 images would need 64 pseudo-inputs: 16 fill two rows of the grid.
    assert!(w >= 300 && h >= 100, "{w}x{h}");
    assert!(std > 10.0, "looks blank (pixel std {std:.1})");
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("src=\"figures/pseudo_inputs.png\""));
}
