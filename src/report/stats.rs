//! How much a run's test accuracy can be trusted, and whether two runs differ: the Wilson score
//! interval of a binomial proportion, and the exact McNemar test on two runs' per-image test
//! predictions (the paired test for two classifiers scored on one test set; Dietterich 1998
//! recommends it over a t-test on resampled splits). A test set of 60 images gives an accuracy
//! of 0.90 a 95% interval about [0.80, 0.95]: two recipes 3 points apart on it are usually not
//! distinguishable, and this is the arithmetic that says so.
pub use crate::executor::predictions::{predictions_csv, read_predictions, wilson_interval, Prediction, PREDICTIONS_FILE, Z95};
use serde::Serialize;

/// The exact (binomial) McNemar test: of the `b + c` images the two classifiers disagree on
/// correctness, `b` only the first got right and `c` only the second. Under "equally accurate"
/// each such image is a fair coin; the two-sided p-value is twice the smaller tail of
/// Binomial(b + c, 1/2), capped at 1 (1 when they never disagree).
pub fn mcnemar_exact(b: usize, c: usize) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let k = b.min(c);
    // sum_{i<=k} C(n, i) / 2^n in log space (2^-n underflows past n = 1074)
    let ln2n = n as f64 * std::f64::consts::LN_2;
    let mut ln_c = 0.0; // ln C(n, 0)
    let mut terms = Vec::with_capacity(k + 1);
    for i in 0..=k {
        terms.push(ln_c - ln2n);
        ln_c += ((n - i) as f64).ln() - ((i + 1) as f64).ln();
    }
    let m = terms.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let tail = m.exp() * terms.iter().map(|t| (t - m).exp()).sum::<f64>();
    (2.0 * tail).min(1.0)
}

/// Two runs compared on the images of one test set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Paired {
    /// Test images both runs were scored on.
    pub n: usize,
    pub accuracy_a: f64,
    pub accuracy_b: f64,
    /// Images only run A classified correctly.
    pub only_a: usize,
    /// Images only run B classified correctly.
    pub only_b: usize,
    /// Exact McNemar two-sided p-value of "A and B are equally accurate".
    pub p_value: f64,
}

/// Pair two runs' predictions by image name. Both must hold the same images with the same
/// labels (the same test set); otherwise an error says how they differ, since a paired test on
/// different test sets means nothing.
pub fn paired(a: &[Prediction], b: &[Prediction]) -> std::result::Result<Paired, String> {
    use std::collections::HashMap;
    let index: HashMap<&str, &Prediction> = b.iter().map(|p| (p.image.as_str(), p)).collect();
    if index.len() != b.len() || a.len() != b.len() {
        return Err(format!("the runs were scored on different test sets ({} and {} images)", a.len(), b.len()));
    }
    let mut matched = Vec::with_capacity(a.len());
    for pa in a {
        let Some(pb) = index.get(pa.image.as_str()) else {
            return Err(format!("the runs were scored on different test sets: {} is in one only", pa.image));
        };
        matched.push((pa, *pb));
    }
    tally(&matched)
}

/// Pair two runs' predictions row by row: for runs whose test splits have the same
/// fingerprint (the same images' contents and labels in the same order), wherever the files
/// were read from.
pub fn paired_in_order(a: &[Prediction], b: &[Prediction]) -> std::result::Result<Paired, String> {
    if a.len() != b.len() {
        return Err(format!("the runs' {PREDICTIONS_FILE} have {} and {} rows for one test set", a.len(), b.len()));
    }
    tally(&a.iter().zip(b).collect::<Vec<_>>())
}

fn tally(matched: &[(&Prediction, &Prediction)]) -> std::result::Result<Paired, String> {
    let (mut only_a, mut only_b, mut right_a, mut right_b) = (0, 0, 0, 0);
    for (pa, pb) in matched {
        if pa.label != pb.label {
            return Err(format!("{} has label `{}` in one run and `{}` in the other", pa.image, pa.label, pb.label));
        }
        let (ca, cb) = (pa.correct(), pb.correct());
        right_a += ca as usize;
        right_b += cb as usize;
        only_a += (ca && !cb) as usize;
        only_b += (cb && !ca) as usize;
    }
    let n = matched.len();
    let acc = |k: usize| if n == 0 { 0.0 } else { k as f64 / n as f64 };
    Ok(Paired { n, accuracy_a: acc(right_a), accuracy_b: acc(right_b), only_a, only_b, p_value: mcnemar_exact(only_a, only_b) })
}

/// Holm's step-down adjustment of p-values for testing several pairs at once (Holm 1979): it
/// keeps the chance of any false "they differ" at the level, without Bonferroni's full cost.
/// Returns the adjusted p-values in the input's order.
pub fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut out = vec![0.0; m];
    let mut running: f64 = 0.0;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * p[i]).min(1.0));
        out[i] = running;
    }
    out
}

/// One run in a comparison.
#[derive(Debug, Clone, Serialize)]
pub struct RunLine {
    pub run_id: String,
    pub run_dir: String,
    pub backbone: String,
    pub recipe: String,
    pub test_accuracy: f64,
    pub n_test: usize,
    /// 95% Wilson interval of the test accuracy.
    pub interval: Option<[f64; 2]>,
}

/// One pair of runs in a comparison: the paired test when both were scored on the same test
/// images, else why not.
#[derive(Debug, Clone, Serialize)]
pub struct PairLine {
    pub a: String,
    pub b: String,
    #[serde(flatten)]
    pub paired: Option<Paired>,
    /// The p-value after Holm's adjustment over every pair tested.
    pub p_holm: Option<f64>,
    /// Why the pair was not tested (different test sets, no per-image predictions).
    pub not_tested: Option<String>,
}

/// Runs side by side: each test accuracy with its interval, then every pair by McNemar's test.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub runs: Vec<RunLine>,
    pub pairs: Vec<PairLine>,
}

/// Compare runs read back from their directories.
pub fn compare(runs: &[super::LoadedRun]) -> Comparison {
    let lines = runs
        .iter()
        .map(|r| {
            let x = &r.record;
            let correct = (x.test_accuracy * x.n_test as f64).round() as usize;
            RunLine {
                run_id: x.run_id.clone(),
                run_dir: r.dir.display().to_string(),
                backbone: x.backbone.clone(),
                recipe: x.recipe.name.clone().unwrap_or_else(|| x.strategy.as_str().to_string()),
                test_accuracy: x.test_accuracy,
                n_test: x.n_test,
                interval: x.test_accuracy_interval.or_else(|| wilson_interval(correct, x.n_test, Z95).map(|(l, h)| [l, h])),
            }
        })
        .collect();
    let mut pairs = Vec::new();
    for i in 0..runs.len() {
        for j in i + 1..runs.len() {
            let (ra, rb) = (&runs[i], &runs[j]);
            let (a, b) = (ra.record.run_id.clone(), rb.record.run_id.clone());
            let fingerprints = (&ra.record.dataset.test_fingerprint, &rb.record.dataset.test_fingerprint);
            let (paired_result, not_tested) = match (&ra.predictions, &rb.predictions) {
                (Some(pa), Some(pb)) => {
                    // the same fingerprint: the same images in the same order, wherever they
                    // were read from; different ones: different test sets; else by file name
                    let r = match fingerprints {
                        (Some(x), Some(y)) if x == y => paired_in_order(pa, pb),
                        (Some(_), Some(_)) => Err("the runs were scored on different test sets (their test fingerprints differ)".into()),
                        _ => paired(pa, pb),
                    };
                    match r {
                        Ok(p) => (Some(p), None),
                        Err(why) => (None, Some(why)),
                    }
                }
                _ => {
                    let missing: Vec<&str> =
                        [ra, rb].iter().filter(|r| r.predictions.is_none()).map(|r| r.record.run_id.as_str()).collect();
                    (
                        None,
                        Some(format!(
                            "no per-image predictions ({PREDICTIONS_FILE}) for {}: a run from before they were recorded",
                            missing.join(", ")
                        )),
                    )
                }
            };
            pairs.push(PairLine { a, b, paired: paired_result, p_holm: None, not_tested });
        }
    }
    let tested: Vec<usize> = (0..pairs.len()).filter(|&i| pairs[i].paired.is_some()).collect();
    let adj = holm(&tested.iter().map(|&i| pairs[i].paired.as_ref().map(|p| p.p_value).unwrap_or(1.0)).collect::<Vec<_>>());
    for (&i, q) in tested.iter().zip(adj) {
        pairs[i].p_holm = Some(q);
    }
    Comparison { runs: lines, pairs }
}

impl Comparison {
    /// The comparison as plain text lines (what `graft compare` prints).
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, r) in self.runs.iter().enumerate() {
            let iv = r.interval.map(|[l, h]| format!(" [{l:.3}, {h:.3}]")).unwrap_or_default();
            out.push(format!(
                "{}  {}  {} on {}: test accuracy {:.4}{iv} over {} images",
                letter(i),
                r.run_id,
                r.recipe,
                r.backbone,
                r.test_accuracy,
                r.n_test
            ));
        }
        let tested = self.pairs.iter().filter(|p| p.paired.is_some()).count();
        for p in &self.pairs {
            let (ia, ib) = (self.index(&p.a), self.index(&p.b));
            match (&p.paired, &p.not_tested) {
                (Some(x), _) => {
                    let verdict = match p.p_holm {
                        Some(q) if q < 0.05 => format!(
                            "{} is more accurate (p < 0.05{})",
                            if x.only_a > x.only_b { letter(ia) } else { letter(ib) },
                            if tested > 1 { " after adjustment" } else { "" }
                        ),
                        _ => "no detectable difference at 0.05".to_string(),
                    };
                    let holm = if tested > 1 {
                        format!(", Holm-adjusted over {tested} pairs {}", fmt_p(p.p_holm.unwrap_or(1.0)))
                    } else {
                        String::new()
                    };
                    out.push(format!(
                        "{} vs {}: {:.4} vs {:.4} on the same {} images; only {} right on {}, only {} right on {}; exact McNemar p {}{holm}: {verdict}",
                        letter(ia),
                        letter(ib),
                        x.accuracy_a,
                        x.accuracy_b,
                        x.n,
                        letter(ia),
                        x.only_a,
                        letter(ib),
                        x.only_b,
                        fmt_p(x.p_value)
                    ));
                }
                (None, why) => out.push(format!("{} vs {}: not tested: {}", letter(ia), letter(ib), why.clone().unwrap_or_default())),
            }
        }
        out
    }

    fn index(&self, run_id: &str) -> usize {
        self.runs.iter().position(|r| r.run_id == run_id).unwrap_or(0)
    }
}

/// "= 0.021", or "< 0.001" below that.
pub fn fmt_p(p: f64) -> String {
    if p < 0.001 {
        "< 0.001".into()
    } else {
        format!("= {p:.3}")
    }
}

/// A, B, ..., Z, then R27, R28, ...
pub fn letter(i: usize) -> String {
    if i < 26 {
        ((b'A' + i as u8) as char).to_string()
    } else {
        format!("R{}", i + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exact binomial tails worked by hand: b=10, c=2 gives 2 (C(12,0)+C(12,1)+C(12,2)) / 2^12.
    #[test]
    fn mcnemar_exact_matches_the_binomial_tail() {
        assert!((mcnemar_exact(10, 2) - 158.0 / 4096.0).abs() < 1e-12);
        assert!((mcnemar_exact(2, 10) - 158.0 / 4096.0).abs() < 1e-12);
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        assert_eq!(mcnemar_exact(5, 5), 1.0);
        // one-sided disagreement on 5 images: 2 / 32
        assert!((mcnemar_exact(5, 0) - 0.0625).abs() < 1e-12);
        // large n stays finite and tiny
        let p = mcnemar_exact(1500, 1000);
        assert!(p > 0.0 && p < 1e-20, "{p}");
        assert!(mcnemar_exact(2000, 2000) == 1.0);
    }

    fn row(image: &str, label: &str, predicted: &str) -> Prediction {
        Prediction { image: image.into(), label: label.into(), predicted: predicted.into() }
    }

    /// Holm's adjustment worked by hand: sorted p (0.01, 0.02, 0.04) times (3, 2, 1), made
    /// monotone: 0.03, 0.04, 0.04.
    #[test]
    fn holm_adjusts_step_down_and_keeps_the_order() {
        let q = holm(&[0.04, 0.01, 0.02]);
        let want = [0.04, 0.03, 0.04];
        for (a, b) in q.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{q:?}");
        }
        assert_eq!(holm(&[0.6, 0.9]), vec![1.0, 1.0]);
        assert!(holm(&[]).is_empty());
    }

    #[test]
    fn paired_counts_the_discordant_images_and_refuses_different_test_sets() {
        let a = vec![row("x/1.png", "cat", "cat"), row("x/2.png", "dog", "dog"), row("x/3.png", "dog", "cat")];
        // B in another order: wrong on 2, right on 3
        let b = vec![row("x/3.png", "dog", "dog"), row("x/1.png", "cat", "cat"), row("x/2.png", "dog", "cat")];
        let p = paired(&a, &b).unwrap();
        assert_eq!((p.n, p.only_a, p.only_b), (3, 1, 1));
        assert!((p.accuracy_a - 2.0 / 3.0).abs() < 1e-12 && p.p_value == 1.0);
        let other = vec![row("x/1.png", "cat", "cat"), row("x/2.png", "dog", "dog"), row("x/4.png", "dog", "cat")];
        assert!(paired(&a, &other).unwrap_err().contains("x/3.png"));
        let relabelled = vec![row("x/1.png", "cat", "cat"), row("x/2.png", "dog", "dog"), row("x/3.png", "cat", "cat")];
        assert!(paired(&a, &relabelled).unwrap_err().contains("label"));
        assert!(paired(&a, &a[..2]).unwrap_err().contains("3 and 2"));
        // in order: row i against row i, whatever the names
        let moved: Vec<Prediction> = a.iter().map(|p| Prediction { image: format!("/elsewhere/{}", p.image), ..p.clone() }).collect();
        assert_eq!(paired_in_order(&a, &moved).unwrap(), paired(&a, &a).unwrap());
        assert!(paired_in_order(&a, &relabelled).unwrap_err().contains("label"));
    }
}
