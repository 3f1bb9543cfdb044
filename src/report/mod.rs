//! Self-contained HTML reports with hand-made inline SVG (no network, no font libraries):
//! learning curves of one or more runs overlaid, per-group action / learning rate / weight
//! change beside per-group transferability from `graft inspect`, and the test confusion matrix.
pub mod stats;
pub mod svg;

use crate::error::{GraftError, Result};
use crate::executor::train::EpochMetrics;
use crate::executor::RunRecord;
use crate::metafeatures::InspectReport;
use std::fmt::Write;
use std::path::{Path, PathBuf};

pub use svg::{bar_chart, line_chart, Series};

/// A run directory read back: its record and per-epoch metrics.
pub struct LoadedRun {
    pub dir: PathBuf,
    pub record: RunRecord,
    pub epochs: Vec<EpochMetrics>,
    /// Each test image's true and predicted class (`predictions.csv`; None for runs from
    /// before it was written).
    pub predictions: Option<Vec<stats::Prediction>>,
}

pub fn load_run(dir: &Path) -> Result<LoadedRun> {
    let rp = dir.join("run.json");
    if !rp.is_file() {
        return Err(GraftError::Data(format!("{}: no run.json; pass run directories written by `graft run`", dir.display())));
    }
    let record: RunRecord = serde_json::from_str(&crate::util::read_to_string(&rp)?)
        .map_err(|e| GraftError::Data(format!("{}: not a graft run record: {e}", rp.display())))?;
    let mp = dir.join("metrics.csv");
    let epochs = EpochMetrics::from_csv(&crate::util::read_to_string(&mp)?, &mp)?;
    let predictions = stats::read_predictions(dir)?;
    Ok(LoadedRun { dir: dir.to_path_buf(), record, epochs, predictions })
}

pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const STYLE: &str = "body{font-family:sans-serif;margin:24px;color:#222;max-width:1100px}h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}\
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;font-size:13px}th{background:#f3f3f3}\
td.l,th.l{text-align:left}.grid{display:flex;flex-wrap:wrap;gap:16px}.muted{color:#777;font-size:12px}";

/// One HTML report for the given runs; `inspect` adds transferability by depth for the first.
pub fn render(runs: &[LoadedRun], inspect: Option<&InspectReport>) -> String {
    let mut h = String::new();
    let _ = write!(h, "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>graft report</title><style>{STYLE}</style></head><body>");
    let _ = write!(h, "<h1>graft report: {} run{}</h1>", runs.len(), if runs.len() == 1 { "" } else { "s" });
    // summary
    h.push_str("<section id=\"summary\"><h2>Runs</h2><table><tr><th class=\"l\">run</th><th class=\"l\">backbone</th><th class=\"l\">strategy</th><th class=\"l\">status</th><th>test accuracy</th><th>95% interval</th><th>val accuracy</th><th>n_train</th><th>n_test</th><th>classes</th><th>train s</th><th>seed</th></tr>");
    for r in runs {
        let x = &r.record;
        let _ = write!(
            h,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"acc\">{:.4}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{}</td></tr>",
            esc(&x.run_id),
            esc(&x.backbone),
            esc(x.strategy.as_str()),
            esc(x.status.as_str()),
            x.test_accuracy,
            x.test_accuracy_interval.map(|[l, h]| format!("[{l:.3}, {h:.3}]")).unwrap_or_else(|| "–".into()),
            x.val_accuracy.map(|v| format!("{v:.4}")).unwrap_or_else(|| "–".into()),
            x.n_train,
            x.n_test,
            x.n_classes,
            x.train_seconds,
            x.seed
        );
    }
    h.push_str("</table></section>");
    if runs.len() > 1 {
        h.push_str(&comparison_html(&stats::compare(runs)));
    }
    // learning curves
    h.push_str("<section id=\"curves\"><h2>Learning curves</h2>");
    if runs.iter().all(|r| r.epochs.is_empty()) {
        h.push_str("<p class=\"muted\">No epochs: probes fit on fixed features in one step.</p>");
    } else {
        let mk = |f: &dyn Fn(&EpochMetrics) -> Option<f64>, label: &str| -> Vec<Series> {
            runs.iter()
                .filter(|r| !r.epochs.is_empty())
                .map(|r| Series {
                    name: format!("{} {label}", short(&r.record.run_id)),
                    points: r.epochs.iter().filter_map(|e| f(e).map(|v| (e.epoch as f64, v))).collect(),
                })
                .filter(|s| !s.points.is_empty())
                .collect()
        };
        let mut loss = mk(&|e| Some(e.train_loss), "train");
        loss.extend(mk(&|e| e.val_loss, "val"));
        let mut acc = mk(&|e| Some(e.train_accuracy), "train");
        acc.extend(mk(&|e| e.val_accuracy, "val"));
        h.push_str("<div class=\"grid\">");
        h.push_str(&line_chart("Loss per epoch", "epoch", "loss", &loss, None));
        h.push_str(&line_chart("Accuracy per epoch", "epoch", "accuracy", &acc, Some((0.0, 1.0))));
        h.push_str("</div>");
    }
    h.push_str("</section>");
    // groups
    h.push_str("<section id=\"groups\"><h2>Layer groups</h2>");
    for r in runs {
        let x = &r.record;
        let _ = write!(
            h,
            "<h3>{}</h3><table><tr><th class=\"l\">group</th><th class=\"l\">action</th><th>lr</th><th>weight change</th></tr>",
            esc(&x.run_id)
        );
        for g in &x.groups {
            let _ = write!(
                h,
                "<tr class=\"group\"><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{:.3e}</td><td class=\"wc\">{:.6}</td></tr>",
                esc(&g.name),
                esc(&g.action),
                g.lr,
                g.weight_change
            );
        }
        h.push_str("</table><div class=\"grid\">");
        let names: Vec<String> = x.groups.iter().map(|g| g.name.clone()).collect();
        h.push_str(&bar_chart(
            "Weight change ‖w_end − w_start‖ / ‖w_start‖",
            &names,
            &x.groups.iter().map(|g| g.weight_change).collect::<Vec<_>>(),
        ));
        h.push_str(&bar_chart("Learning rate", &names, &x.groups.iter().map(|g| g.lr).collect::<Vec<_>>()));
        h.push_str("</div>");
    }
    h.push_str("</section>");
    // transferability
    h.push_str("<section id=\"transferability\"><h2>Transferability by depth</h2>");
    match inspect {
        Some(ins) => {
            let _ = write!(
                h,
                "<p>backbone {} on {}: LEEP {}, NCE {}, Fréchet distance to the source {}</p>",
                esc(&ins.backbone),
                esc(&ins.dataset.root),
                fmt_opt(ins.leep),
                fmt_opt(ins.nce),
                fmt_opt(ins.frechet_distance)
            );
            h.push_str("<table><tr><th class=\"l\">group</th><th>dim</th><th>LogME</th><th>H-score</th><th>probe accuracy</th></tr>");
            for g in &ins.groups {
                let _ = write!(
                    h,
                    "<tr><td class=\"l\">{}</td><td>{}</td><td>{:.4}</td><td>{:.4}</td><td>{}</td></tr>",
                    esc(&g.name),
                    g.dim,
                    g.logme,
                    g.hscore,
                    fmt_opt(g.probe_accuracy)
                );
            }
            h.push_str("</table><div class=\"grid\">");
            let names: Vec<String> = ins.groups.iter().map(|g| g.name.clone()).collect();
            h.push_str(
                &line_chart(
                    "LogME by depth",
                    "group",
                    "LogME",
                    &[Series { name: "LogME".into(), points: ins.groups.iter().enumerate().map(|(i, g)| (i as f64, g.logme)).collect() }],
                    None,
                )
                .replace("</svg>", &svg::x_labels(&names)),
            );
            h.push_str(
                &line_chart(
                    "Nearest-centroid probe accuracy by depth",
                    "group",
                    "accuracy",
                    &[Series {
                        name: "probe".into(),
                        points: ins.groups.iter().enumerate().filter_map(|(i, g)| g.probe_accuracy.map(|a| (i as f64, a))).collect(),
                    }],
                    Some((0.0, 1.0)),
                )
                .replace("</svg>", &svg::x_labels(&names)),
            );
            h.push_str("</div>");
        }
        None => h.push_str("<p class=\"muted\">Not computed (pass --inspect).</p>"),
    }
    h.push_str("</section>");
    h.push_str(&mistakes_html(runs));
    // confusion
    h.push_str("<section id=\"confusion\"><h2>Confusion matrix (test split)</h2>");
    for r in runs {
        let x = &r.record;
        let _ = write!(h, "<h3>{}</h3>", esc(&x.run_id));
        h.push_str(&svg::confusion(&x.dataset.classes, &x.confusion));
    }
    h.push_str("</section><p class=\"muted\">Written by graft ");
    h.push_str(env!("CARGO_PKG_VERSION"));
    h.push_str(".</p></body></html>\n");
    h
}

fn short(id: &str) -> &str {
    id.rsplit('-').next().unwrap_or(id)
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.4}")).unwrap_or_else(|| "–".into())
}

/// The recommendation section: the recipe as a table, the prediction with its interval, the
/// alternatives, the rationale and the nearest past tasks.
pub fn recommendation_html(rec: &crate::metalearner::search::Recommendation) -> String {
    let mut h = String::new();
    h.push_str("<section id=\"recommendation\"><h2>Recommendation</h2>");
    let _ = write!(
        h,
        "<p>Backbone <b>{}</b>, predicted test accuracy <b class=\"pred\">{:.3}</b>, 80% interval [{:.3}, {:.3}] ({} meta-learner{}).</p>",
        esc(&rec.backbone),
        rec.predicted_accuracy,
        rec.interval[0],
        rec.interval[1],
        esc(rec.learner.as_str()),
        if rec.far_from_past_tasks { "; <b>far from every past task</b>" } else { "" }
    );
    h.push_str("<table id=\"recipe\"><tr><th class=\"l\">field</th><th class=\"l\">value</th></tr>");
    if let serde_json::Value::Object(m) = serde_json::to_value(&rec.recipe).expect("serialises") {
        for (k, v) in m {
            let _ = write!(h, "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td></tr>", esc(&k), esc(&v.to_string()));
        }
    }
    h.push_str("</table><h3>Why</h3><ul>");
    for l in &rec.rationale {
        let _ = write!(h, "<li>{}</li>", esc(l));
    }
    h.push_str("</ul><h3>Alternatives</h3><table id=\"alternatives\"><tr><th class=\"l\">recipe</th><th class=\"l\">backbone</th><th>predicted</th><th>80% interval</th></tr>");
    for a in &rec.alternatives {
        let _ = write!(
            h,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{:.3}</td><td>[{:.3}, {:.3}]</td></tr>",
            esc(&a.recipe.name.clone().unwrap_or_default()),
            esc(&a.backbone),
            a.predicted_accuracy,
            a.interval[0],
            a.interval[1]
        );
    }
    h.push_str("</table><h3>Nearest past tasks</h3><table id=\"nearest\"><tr><th class=\"l\">task</th><th class=\"l\">family</th><th>classes</th><th>shots</th><th class=\"l\">shift</th><th>distance</th><th class=\"l\">best recipe there</th><th>its accuracy</th></tr>");
    for t in &rec.nearest_tasks {
        let g = |k: &str| t.get(k).cloned().unwrap_or_default();
        let _ = write!(
            h,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td class=\"l\">{}</td><td>{:.2}</td><td class=\"l\">{}</td><td>{:.3}</td></tr>",
            esc(g("task_id").as_str().unwrap_or("")),
            esc(g("family").as_str().unwrap_or("")),
            g("n_classes"),
            g("shots"),
            esc(g("shift").as_str().unwrap_or("")),
            g("distance").as_f64().unwrap_or(0.0),
            esc(g("best_config").as_str().unwrap_or("")),
            g("best_accuracy").as_f64().unwrap_or(0.0)
        );
    }
    h.push_str("</table></section>");
    h
}

/// `graft auto --report`: the recommendation, then the usual run report of the runs it made.
/// A p-value for a table cell: three decimals, or "<0.001".
fn p_cell(p: f64) -> String {
    if p < 0.001 {
        "&lt;0.001".into()
    } else {
        format!("{p:.3}")
    }
}

/// Misclassified test images shown per run, at most this many.
pub const MISTAKES_SHOWN: usize = 24;
/// The longest side of a thumbnail, in pixels.
const THUMB_PX: u32 = 72;

/// Each run's misclassified test images as inline thumbnails (PNG data URIs), captioned true →
/// predicted: at most [`MISTAKES_SHOWN`], taken in test order with each true class given an
/// equal share first, so one bad class does not fill the page. Images that can no longer be
/// read (moved, or inside an IDX file) are counted, not shown.
fn mistakes_html(runs: &[LoadedRun]) -> String {
    let mut h = String::from("<section id=\"mistakes\"><h2>Misclassified test images</h2>");
    for r in runs {
        let _ = write!(h, "<h3>{}</h3>", esc(&r.record.run_id));
        let Some(preds) = &r.predictions else {
            h.push_str("<p class=\"muted\">No per-image predictions (a run from before they were recorded, or one that diverged).</p>");
            continue;
        };
        let wrong: Vec<&stats::Prediction> = preds.iter().filter(|p| !p.correct()).collect();
        if wrong.is_empty() {
            h.push_str("<p class=\"muted\">Every test image was classified correctly.</p>");
            continue;
        }
        let picked = spread_over_classes(&wrong, MISTAKES_SHOWN);
        let (mut shown, mut unreadable) = (String::new(), 0);
        for p in &picked {
            match thumbnail_data_uri(std::path::Path::new(&p.image)) {
                Some(uri) => {
                    let _ = write!(
                        shown,
                        "<figure class=\"mistake\" style=\"margin:0;text-align:center;font-size:11px;width:{w}px\"><img src=\"{uri}\" width=\"{THUMB_PX}\" style=\"image-rendering:pixelated\" alt=\"{alt}\" title=\"{alt}\"><figcaption>{t} → <b>{pr}</b></figcaption></figure>",
                        w = THUMB_PX + 24,
                        alt = esc(&p.image),
                        t = esc(&p.label),
                        pr = esc(&p.predicted)
                    );
                }
                None => unreadable += 1,
            }
        }
        let _ = write!(
            h,
            "<p class=\"muted\">{} of {} test images misclassified; {} shown (true class → predicted){}.</p><div class=\"grid\" style=\"gap:8px\">{shown}</div>",
            wrong.len(),
            preds.len(),
            picked.len() - unreadable,
            if unreadable > 0 { format!("; {unreadable} could not be read from where the run read them") } else { String::new() }
        );
    }
    h.push_str("</section>");
    h
}

/// Up to `max` items, in their order, taking from each true class in turn (round robin), so the
/// classes share the space.
fn spread_over_classes<'a>(wrong: &[&'a stats::Prediction], max: usize) -> Vec<&'a stats::Prediction> {
    let mut classes: Vec<&str> = Vec::new();
    for p in wrong {
        if !classes.contains(&p.label.as_str()) {
            classes.push(&p.label);
        }
    }
    let queues: Vec<Vec<usize>> = classes.iter().map(|c| (0..wrong.len()).filter(|&i| wrong[i].label == *c).collect()).collect();
    let mut take: Vec<usize> = Vec::new();
    for round in 0.. {
        let before = take.len();
        for q in &queues {
            if take.len() < max {
                if let Some(&i) = q.get(round) {
                    take.push(i);
                }
            }
        }
        if take.len() == before || take.len() >= max {
            break;
        }
    }
    take.sort_unstable();
    take.into_iter().map(|i| wrong[i]).collect()
}

/// A PNG thumbnail (longest side [`THUMB_PX`]) of an image file as a data URI; None when the
/// file cannot be read or decoded.
fn thumbnail_data_uri(path: &std::path::Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    let img = crate::data::images::decode_upright(&bytes).ok()?;
    // large images are shrunk; small ones are kept as they are (the page enlarges them without
    // smoothing), which keeps the report small
    let img =
        if img.width().max(img.height()) > THUMB_PX { img.resize(THUMB_PX, THUMB_PX, image::imageops::FilterType::Triangle) } else { img };
    let img = if img.color().has_alpha() {
        image::DynamicImage::ImageRgba8(img.to_rgba8())
    } else {
        image::DynamicImage::ImageRgb8(img.to_rgb8())
    };
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).ok()?;
    Some(format!("data:image/png;base64,{}", base64(&png)))
}

/// Standard base64 (RFC 4648, with padding).
pub fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        out.push(A[(n >> 18) as usize & 63] as char);
        out.push(A[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 { A[(n >> 6) as usize & 63] as char } else { '=' });
        out.push(if c.len() > 2 { A[n as usize & 63] as char } else { '=' });
    }
    out
}

/// The runs' paired comparisons: every pair scored on the same test images, by the exact
/// McNemar test with Holm's adjustment; pairs that cannot be tested say why.
fn comparison_html(c: &stats::Comparison) -> String {
    let mut h = String::from(
        "<section id=\"compare\"><h2>Are the differences real?</h2><p class=\"muted\">Each pair of runs scored on the same test images: the images only one of them classified correctly, and the exact McNemar test of equal accuracy (two-sided; Holm-adjusted over the pairs tested). A 95% interval of a test accuracy is on the runs table.</p><table><tr><th class=\"l\">run A</th><th class=\"l\">run B</th><th>accuracy A</th><th>accuracy B</th><th>images</th><th>only A right</th><th>only B right</th><th>p</th><th>p (Holm)</th></tr>",
    );
    for p in &c.pairs {
        match &p.paired {
            Some(x) => {
                let _ = write!(
                    h,
                    "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{:.4}</td><td>{:.4}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&p.a),
                    esc(&p.b),
                    x.accuracy_a,
                    x.accuracy_b,
                    x.n,
                    x.only_a,
                    x.only_b,
                    p_cell(x.p_value),
                    p_cell(p.p_holm.unwrap_or(1.0))
                );
            }
            None => {
                let _ = write!(
                    h,
                    "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\" colspan=\"7\">not tested: {}</td></tr>",
                    esc(&p.a),
                    esc(&p.b),
                    esc(p.not_tested.as_deref().unwrap_or(""))
                );
            }
        }
    }
    h.push_str("</table></section>");
    h
}

pub fn render_auto(rec: &crate::metalearner::search::Recommendation, runs: &[LoadedRun], best_run: &str) -> String {
    let body = render(runs, None);
    let mut sec = recommendation_html(rec);
    let _ =
        write!(sec, "<p id=\"winner\">Winner (chosen on validation accuracy when several runs were made; on validation balanced accuracy, the mean per-class recall, for class-weighted recipes): <b>{}</b>.</p>", esc(best_run));
    if let Some(r) = runs.iter().find(|r| r.record.run_id == best_run && r.record.saved_model.is_some()) {
        let _ = write!(
            sec,
            "<p id=\"predict\">Its trained classifier is saved in the run directory; classify new images with <code>graft predict --run {} --data IMAGES</code>.</p>",
            esc(&r.dir.display().to_string())
        );
    }
    match body.find("<section id=\"summary\">") {
        Some(i) => format!("{}{}{}", &body[..i], sec, &body[i..]),
        None => body + &sec,
    }
}

/// `graft meta eval`'s HTML report: regret, accuracy gap and rank per method and budget, regret
/// vs budget, and predicted vs actual accuracy (calibration).
pub fn render_meta_eval(r: &crate::metalearner::eval::EvalReport) -> String {
    use crate::metalearner::eval::METHODS;
    let mut h = String::new();
    let _ =
        write!(h, "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>graft meta eval</title><style>{STYLE}</style></head><body>");
    let _ = write!(
        h,
        "<h1>graft meta eval</h1><p>Leave-one-family-out over {} families ({}), {} held-out tasks; normalised regret = (best − chosen) / (best − worst) over the configurations logged on each task.</p>",
        r.families.len(),
        esc(&r.families.join(", ")),
        r.n_tasks
    );
    h.push_str("<section id=\"regret\"><h2>Regret vs budget</h2><table><tr><th class=\"l\">method</th>");
    for b in 1..=r.budgets {
        let _ = write!(h, "<th>regret@{b}</th>");
    }
    h.push_str("<th>gap@1 (points)</th><th>rank@1</th></tr>");
    for m in METHODS {
        let rg = &r.mean_regret[*m];
        if rg.iter().all(|v| v.is_nan()) {
            continue;
        }
        let _ = write!(h, "<tr><td class=\"l\">{}</td>", esc(m));
        for v in rg {
            let _ = write!(h, "<td>{v:.3}</td>");
        }
        let _ = write!(h, "<td>{:.2}</td><td>{:.2}</td></tr>", r.mean_gap[*m][0] * 100.0, r.mean_rank[*m][0]);
    }
    let (regret, cal) = meta_eval_plots(r);
    let _ = write!(h, "</table><div class=\"grid\">{regret}</div></section>");
    let _ = write!(
        h,
        "<section id=\"calibration\"><h2>Calibration</h2><p>{:.1}% of {} held-out runs fell inside the advisor's stated 80% interval.</p><div class=\"grid\">{cal}</div></section>",
        r.coverage80 * 100.0,
        r.n_calibration_runs
    );
    h.push_str(&label_pairs_section(&r.label_pairs));
    h.push_str("</body></html>\n");
    h
}

/// The forecasts of twice the labels against the measured gains, one point per held-out pair
/// ([`crate::metalearner::eval::LabelPair`]); empty without pairs.
fn label_pairs_section(pairs: &[crate::metalearner::eval::LabelPair]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let pts = Series { name: "held-out pair".into(), points: pairs.iter().map(|p| (p.forecast_gain, p.measured_gain)).collect() };
    let (lo, hi) = pts.points.iter().fold((0.0f64, 0.0f64), |(lo, hi), &(x, y)| (lo.min(x).min(y), hi.max(x).max(y)));
    let chart = svg::scatter_chart(
        "Twice the labels: shots-only forecast vs measured gain",
        "forecast gain (shots doubled)",
        "measured gain",
        &pts,
        "forecast = measured",
        (lo, hi),
    );
    let families: std::collections::BTreeSet<&str> = pairs.iter().map(|p| p.family.as_str()).collect();
    format!(
        "<section id=\"more-labels\"><h2>Twice the labels</h2><p>{} pairs from {} held-out families: a configuration logged on tasks of one kind at S and at 2S labelled images a class; the gain the meta-learner forecasts from the S-shot tasks' features with only the shots doubled, against the gain measured. meta-eval.md tabulates the errors by kind of recipe and by S.</p><div class=\"grid\">{chart}</div></section>",
        pairs.len(),
        families.len()
    )
}

/// SVG plots: regret vs budget per method, and predicted vs actual accuracy.
pub fn meta_eval_plots(r: &crate::metalearner::eval::EvalReport) -> (String, String) {
    use crate::metalearner::eval::METHODS;
    use svg::{line_chart, Series};
    let series: Vec<Series> = METHODS
        .iter()
        .filter(|m| !r.mean_regret[**m].iter().all(|v| v.is_nan()))
        .map(|m| Series { name: m.to_string(), points: r.mean_regret[*m].iter().enumerate().map(|(i, v)| ((i + 1) as f64, *v)).collect() })
        .collect();
    let regret =
        line_chart("Normalised regret vs budget (held-out families)", "budget (runs)", "mean normalised regret", &series, Some((0.0, 1.0)));
    let pts = Series { name: "held-out runs".into(), points: r.calibration.clone() };
    let cal = svg::scatter_chart("Predicted vs actual test accuracy", "predicted", "actual", &pts, "y = x", (0.0, 1.0));
    (regret, cal)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4648's test vectors.
    #[test]
    fn base64_matches_rfc_4648() {
        for (i, o) in
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE="), ("foobar", "Zm9vYmFy")]
        {
            assert_eq!(base64(i.as_bytes()), o);
        }
        assert_eq!(base64(&[0xff, 0xfe, 0x00]), "//4A");
    }

    /// Each class gets its turn before any gets a second; the order stays the test order.
    #[test]
    fn mistakes_are_spread_over_the_true_classes() {
        let p = |img: &str, label: &str| stats::Prediction { image: img.into(), label: label.into(), predicted: "x".into() };
        let rows = [p("1", "a"), p("2", "a"), p("3", "a"), p("4", "b"), p("5", "c"), p("6", "c")];
        let refs: Vec<&stats::Prediction> = rows.iter().collect();
        let names = |v: Vec<&stats::Prediction>| v.iter().map(|p| p.image.clone()).collect::<Vec<_>>().join(",");
        assert_eq!(names(spread_over_classes(&refs, 3)), "1,4,5");
        assert_eq!(names(spread_over_classes(&refs, 5)), "1,2,4,5,6");
        assert_eq!(names(spread_over_classes(&refs, 10)), "1,2,3,4,5,6");
        assert!(spread_over_classes(&refs, 0).is_empty());
    }
}
