//! `report.html`: one page that opens from disk with no server and no network. Figures are
//! linked relatively (`figures/…`), styles and the table-sorting script are inline, and every
//! string that came from a TOML file or a table is HTML-escaped.

use crate::figure::{Figure, Inputs, Outcome};
use crate::sweep::Sweep;
use crate::ReportError;
use std::fmt::Write;

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;\
padding:0 1em;color:#222}h1{margin-bottom:0}table{border-collapse:collapse;font-size:14px;\
margin:1em 0}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f0f0f0;\
cursor:pointer;user-select:none}td.t,th.t{text-align:left}tr.failed,tr.diverged{background:#fde}\
figure{margin:2em 0}figure img{max-width:100%;border:1px solid #ddd}figcaption{color:#444;\
max-width:900px}.skipped{color:#866;font-style:italic}pre{background:#f6f6f6;padding:1em;\
overflow:auto}#broken{display:none;background:#fcc;padding:.5em 1em}.warn{background:#fff3cd;\
padding:.5em 1em}";

/// Sorts a table by the clicked column (numbers numerically), and checks every image loaded:
/// the result lands in `body[data-images]` ("ok N/N" or "broken K/N") and a visible banner.
const SCRIPT: &str = r#"
document.querySelectorAll('table.runs th').forEach(function (th, col) {
  th.addEventListener('click', function () {
    var body = th.closest('table').tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var asc = th.dataset.dir !== 'asc';
    th.dataset.dir = asc ? 'asc' : 'desc';
    rows.sort(function (a, b) {
      var x = a.cells[col].textContent, y = b.cells[col].textContent;
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return asc ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var bad = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); });
  document.body.dataset.images = (bad.length ? 'broken ' + bad.length : 'ok ' + imgs.length) + '/' + imgs.length;
  if (bad.length) {
    var b = document.getElementById('broken');
    b.textContent = bad.length + ' figure(s) did not load: run `just report` on this sweep to redraw them.';
    b.style.display = 'block';
  }
});
"#;

/// Metric columns of the runs table: (column, header, decimals).
const COLUMNS: [(&str, &str, usize); 11] = [
    ("test_neg_elbo", "test −ELBO", 2),
    ("test_elbo_bpd", "−ELBO bits/dim", 3),
    ("nll_bpd", "IWAE bits/dim", 3),
    ("test_recon", "recon", 2),
    ("test_kl", "KL", 2),
    ("log_px_iw", "log p(x) IWAE", 2),
    ("elbo_gap", "ELBO gap", 2),
    ("iw_khat_share", "share k̂ > bound", 2),
    ("active_units", "active units", 0),
    ("train_neg_elbo", "train −ELBO", 2),
    ("wall_seconds", "wall s", 1),
];

/// Writes `<sweep_dir>/report.html` atomically.
pub fn write(inputs: &Inputs, sweep: &Sweep, figures: &[Figure]) -> Result<(), ReportError> {
    let page = page(inputs, sweep, figures);
    let path = inputs.sweep_dir.join("report.html");
    vaelab_track::write_atomic(&path, page.as_bytes())?;
    Ok(())
}

fn page(inputs: &Inputs, sweep: &Sweep, figures: &[Figure]) -> String {
    let mut h = String::new();
    let name = escape(&sweep.name);
    let done = sweep.done().count();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>vaelab report: {name}</title><style>{STYLE}</style></head>\n<body>\n\
         <div id=\"broken\"></div>\n<h1>{name}</h1>\n<p>{done} of {} runs done. Varying: {}. \
         Figures are redrawn from <code>runs.parquet</code>, <code>metrics.parquet</code> and the \
         checkpoints by <code>just report</code>; each PNG has an SVG beside it.</p>\n",
        sweep.runs.len(),
        escape(&sweep.label_keys()),
    );
    h.push_str(&runs_table(sweep));
    h.push_str(&khat_warning(sweep));
    for f in figures {
        let _ = writeln!(
            h,
            "<section id=\"{0}\"><h2>{1}</h2>",
            escape(&f.name),
            escape(&f.title)
        );
        match &f.outcome {
            Outcome::Drawn(files) => {
                for png in files
                    .iter()
                    .filter(|p| p.extension().is_some_and(|e| e == "png"))
                {
                    let file = png
                        .file_name()
                        .map_or(String::new(), |n| n.to_string_lossy().into_owned());
                    let svg = files
                        .iter()
                        .find(|p| p.extension().is_some_and(|e| e == "svg"))
                        .and_then(|p| p.file_name())
                        .map(|n| {
                            format!(
                                " <a href=\"figures/{}\">SVG</a>",
                                escape(&n.to_string_lossy())
                            )
                        })
                        .unwrap_or_default();
                    let _ = writeln!(
                        h,
                        "<figure><img src=\"figures/{0}\" alt=\"{1}\"><figcaption>{2}{svg}</figcaption></figure>",
                        escape(&file),
                        escape(&f.title),
                        escape(&f.caption),
                    );
                }
            }
            Outcome::Skipped(why) => {
                let _ = writeln!(
                    h,
                    "<p class=\"skipped\">Not drawn for this sweep: {}.</p>",
                    escape(why)
                );
            }
        }
        h.push_str("</section>\n");
    }
    let _ = write!(
        h,
        "<section id=\"sweep-file\"><h2>The sweep file</h2><pre>{}</pre></section>\n\
         <script>{SCRIPT}</script>\n</body></html>\n",
        escape(&inputs.sweep_toml)
    );
    h
}

fn runs_table(sweep: &Sweep) -> String {
    let mut h = String::from(
        "<table class=\"runs\"><thead><tr><th class=\"t\">run</th><th class=\"t\">status</th>",
    );
    for k in sweep.varying.iter().map(String::as_str).chain(["seed"]) {
        let _ = write!(h, "<th class=\"t\">{}</th>", escape(k));
    }
    for (_, header, _) in COLUMNS {
        let _ = write!(h, "<th>{}</th>", escape(header));
    }
    h.push_str("</tr></thead><tbody>\n");
    for r in sweep.ordered(sweep.runs.iter()) {
        let _ = write!(
            h,
            "<tr class=\"{0}\"><td class=\"t\"><code>{1}</code></td><td class=\"t\">{0}</td>",
            escape(&r.status),
            escape(&r.id)
        );
        for k in sweep.varying.iter().map(String::as_str).chain(["seed"]) {
            let _ = write!(h, "<td class=\"t\">{}</td>", escape(&r.key(k).label()));
        }
        for (col, _, decimals) in COLUMNS {
            match r.metric(col) {
                Some(v) => {
                    let _ = write!(h, "<td>{v:.decimals$}</td>");
                }
                None => h.push_str("<td>–</td>"),
            }
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</tbody></table>\n");
    h
}

/// Above this share of test images with k̂ over the bound, a run's IWAE numbers are flagged.
pub const KHAT_SHARE_WARN: f64 = 0.05;

/// A warning naming the runs whose IWAE weights are too heavy-tailed on more than
/// [`KHAT_SHARE_WARN`] of their test images (empty when there are none).
fn khat_warning(sweep: &Sweep) -> String {
    let flagged: Vec<String> = sweep
        .ordered(sweep.runs.iter())
        .into_iter()
        .filter(|r| {
            r.metric("iw_khat_share")
                .is_some_and(|s| s > KHAT_SHARE_WARN)
        })
        .map(|r| {
            format!(
                "<code>{}</code> ({:.0} %, k̂ up to {:.2})",
                escape(&r.id),
                100.0 * r.metric("iw_khat_share").unwrap_or(0.0),
                r.metric("iw_khat_max").unwrap_or(f64::NAN),
            )
        })
        .collect();
    if flagged.is_empty() {
        return String::new();
    }
    let bound = sweep
        .runs
        .iter()
        .find_map(|r| r.metric("iw_khat_bound"))
        .unwrap_or(0.7);
    format!(
        "<p class=\"warn\" id=\"khat-warning\">IWAE bound not reliable: in {} run(s) more than \
         {:.0} % of the test images have a PSIS k̂ above {bound:.2} (min(1 − 1/log₁₀ K, 0.7); \
         Vehtari et al. 2024): the importance weights are so heavy-tailed there that log p(x) may \
         be far above the printed bound. Use more samples or a better proposal. {}.</p>\n",
        flagged.len(),
        100.0 * KHAT_SHARE_WARN,
        flagged.join(", ")
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            super::escape(r#"<script>"a" & 'b'</script>"#),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
    }
}
