//! A run's per-image test predictions (`predictions.csv` in its run directory), and the
//! interval its test accuracy carries: what `graft run` writes and `graft compare` and
//! `graft report` read (`report::stats` tests pairs of runs on them).
use crate::error::{GraftError, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// z for a two-sided 95% interval.
pub const Z95: f64 = 1.959_963_984_540_054;

/// The Wilson score interval for `correct` successes out of `n` at normal quantile `z`
/// (Wilson 1927): unlike the normal approximation it stays inside [0, 1] and keeps near its
/// nominal coverage at small n and at accuracies near 0 or 1. None when n is 0.
pub fn wilson_interval(correct: usize, n: usize, z: f64) -> Option<(f64, f64)> {
    if n == 0 || correct > n {
        return None;
    }
    let (k, n) = (correct as f64, n as f64);
    let p = k / n;
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = z / denom * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    // at p = 0 or 1 the bound is exact (0 or 1); clamp rounding
    let lo = if correct == 0 { 0.0 } else { (centre - half).max(0.0) };
    let hi = if correct as f64 == n { 1.0 } else { (centre + half).min(1.0) };
    Some((lo, hi))
}

/// One test image's outcome, as `predictions.csv` in a run directory holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// The image's source: its path, or `file#index` for an image inside a file.
    pub image: String,
    /// The true class's name.
    pub label: String,
    /// The predicted class's name.
    pub predicted: String,
}

impl Prediction {
    pub fn correct(&self) -> bool {
        self.label == self.predicted
    }
}

/// The file in a run directory with one row per test image.
pub const PREDICTIONS_FILE: &str = "predictions.csv";

/// `predictions.csv`: a header `image,label,predicted,correct`, then one row per test image in
/// test order (fields quoted where they hold a comma, quote or newline).
pub fn predictions_csv(rows: &[Prediction]) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let io = |e: csv::Error| GraftError::Data(format!("writing {PREDICTIONS_FILE}: {e}"));
    w.write_record(["image", "label", "predicted", "correct"]).map_err(io)?;
    for r in rows {
        w.write_record([r.image.as_str(), r.label.as_str(), r.predicted.as_str(), if r.correct() { "1" } else { "0" }]).map_err(io)?;
    }
    w.into_inner().map_err(|e| GraftError::Data(format!("writing {PREDICTIONS_FILE}: {e}")))
}

/// A run directory's `predictions.csv` read back (None when the run predates it).
pub fn read_predictions(run_dir: &Path) -> Result<Option<Vec<Prediction>>> {
    let p = run_dir.join(PREDICTIONS_FILE);
    if !p.is_file() {
        return Ok(None);
    }
    let bad = |e: String| GraftError::Data(format!("{}: {e}; it is written by `graft run`, delete it to ignore it", p.display()));
    let mut r = csv::Reader::from_path(&p).map_err(|e| bad(e.to_string()))?;
    let headers = r.headers().map_err(|e| bad(e.to_string()))?.clone();
    let col = |name: &str| headers.iter().position(|h| h == name).ok_or_else(|| bad(format!("no `{name}` column")));
    let (ci, cl, cp) = (col("image")?, col("label")?, col("predicted")?);
    let mut out = Vec::new();
    for (i, rec) in r.records().enumerate() {
        let rec = rec.map_err(|e| bad(format!("row {}: {e}", i + 2)))?;
        let get = |c: usize| rec.get(c).map(str::to_string).ok_or_else(|| bad(format!("row {}: too few fields", i + 2)));
        out.push(Prediction { image: get(ci)?, label: get(cl)?, predicted: get(cp)? });
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden values: the Wilson bounds from the closed form evaluated in Python (statsmodels'
    /// `proportion_confint(method="wilson")` gives the same), and its limits at 0 and n.
    #[test]
    fn wilson_interval_matches_the_closed_form() {
        let (lo, hi) = wilson_interval(54, 60, Z95).unwrap();
        assert!((lo - 0.79853).abs() < 1e-4 && (hi - 0.95336).abs() < 1e-4, "{lo} {hi}");
        let (lo, hi) = wilson_interval(0, 10, Z95).unwrap();
        assert_eq!(lo, 0.0);
        assert!((hi - 0.27753).abs() < 1e-4, "{hi}");
        let (lo, hi) = wilson_interval(10, 10, Z95).unwrap();
        assert!((lo - 0.72247).abs() < 1e-4 && hi == 1.0, "{lo}");
        assert!(wilson_interval(0, 0, Z95).is_none());
        assert!(wilson_interval(3, 2, Z95).is_none());
        // more images, a narrower interval around the same accuracy
        let w = |k, n| wilson_interval(k, n, Z95).map(|(l, h)| h - l).unwrap();
        assert!(w(900, 1000) < w(90, 100) && w(90, 100) < w(9, 10));
    }

    fn row(image: &str, label: &str, predicted: &str) -> Prediction {
        Prediction { image: image.into(), label: label.into(), predicted: predicted.into() }
    }

    /// Names with commas and quotes survive the CSV round trip.
    #[test]
    fn predictions_round_trip_through_csv() {
        let rows = vec![row("d/a, \"b\".png", "cl,1", "cl,1"), row("d/é.png", "two", "cl,1")];
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(PREDICTIONS_FILE), predictions_csv(&rows).unwrap()).unwrap();
        assert_eq!(read_predictions(dir.path()).unwrap().unwrap(), rows);
        let text = std::fs::read_to_string(dir.path().join(PREDICTIONS_FILE)).unwrap();
        assert!(text.starts_with("image,label,predicted,correct\n") && text.lines().nth(2).unwrap().ends_with(",0"));
        assert!(read_predictions(&dir.path().join("none")).unwrap().is_none());
        std::fs::write(dir.path().join(PREDICTIONS_FILE), "image,label\nx,y\n").unwrap();
        assert!(read_predictions(dir.path()).unwrap_err().to_string().contains("predicted"));
    }
}
