//! Small statistics on feature matrices shared by the transferability scores and the probes:
//! column standardisation, seeded stratified folds, balanced accuracy and the nearest-class-mean
//! probe (which the executor's probes and the label curve both fit).
use crate::error::{GraftError, Result};
use crate::util::rng_for;
use ndarray::{Array1, Array2, Axis};
use rand::seq::SliceRandom;

/// Standardise columns with the training mean and std.
pub struct Standardiser {
    mean: Array1<f64>,
    std: Array1<f64>,
}

impl Standardiser {
    pub fn fit(x: &Array2<f64>) -> Self {
        let mean = x.mean_axis(Axis(0)).expect("non-empty");
        let std = x.std_axis(Axis(0), 0.0).mapv(|s| if s > 1e-8 { s } else { 1.0 });
        Standardiser { mean, std }
    }
    pub fn apply(&self, x: &Array2<f64>) -> Array2<f64> {
        (x - &self.mean) / &self.std
    }
    /// The per-column mean and standard deviation (a constant column's is 1).
    pub fn parts(&self) -> (&Array1<f64>, &Array1<f64>) {
        (&self.mean, &self.std)
    }
    /// A standardiser with the given moments (as [`Standardiser::parts`] returned them).
    pub fn from_parts(mean: Array1<f64>, std: Array1<f64>) -> Self {
        Standardiser { mean, std }
    }
}

/// Nearest class mean on centred, L2-normalised features (SimpleShot's "CL2N", Wang et al. 2019):
/// subtract the training features' mean, scale every row to unit length, and assign a test image
/// to the class whose mean normalised training feature is nearest (Euclidean). Nothing is fitted
/// beyond the means, so it cannot overfit a handful of images a class the way a linear classifier
/// can; it is the standard few-shot baseline on frozen features.
pub struct NearestCentroid {
    centre: Array1<f64>,
    means: Array2<f64>,
}

impl NearestCentroid {
    /// The class means of the centred, L2-normalised rows of raw (not standardised) features `x`
    /// with labels `y` in 0..k. Every class needs at least one training image.
    pub fn fit_means(x: &Array2<f64>, y: &[usize], k: usize) -> Result<Self> {
        if x.nrows() == 0 || x.nrows() != y.len() {
            return Err(GraftError::Other(format!("centroid probe: {} feature rows for {} labels", x.nrows(), y.len())));
        }
        if let Some(c) = y.iter().find(|&&c| c >= k) {
            return Err(GraftError::Other(format!("centroid probe: label {c} outside 0..{k}")));
        }
        let centre = x.mean_axis(Axis(0)).expect("non-empty");
        let mut m = NearestCentroid { centre, means: Array2::zeros((0, 0)) };
        let (means, cnt) = class_means(&m.normalise(x), y, k);
        if let Some(c) = cnt.iter().position(|&n| n == 0) {
            return Err(GraftError::Data(format!("centroid probe: class {c} has no training image")));
        }
        m.means = means;
        Ok(m)
    }

    fn normalise(&self, x: &Array2<f64>) -> Array2<f64> {
        let mut z = x - &self.centre;
        for mut row in z.rows_mut() {
            let n = row.dot(&row).sqrt();
            if n > 1e-12 {
                row /= n;
            }
        }
        z
    }

    pub fn predict(&self, x: &Array2<f64>) -> Vec<usize> {
        argmax_rows(&self.scores(x))
    }
    /// Per class, 2 z·μ − ‖μ‖² for the normalised feature z: the larger, the nearer the mean.
    pub fn scores(&self, x: &Array2<f64>) -> Array2<f64> {
        let z = self.normalise(x);
        // nearest mean: argmin ‖z − μ‖² = argmax (2 z·μ − ‖μ‖²)
        let norms: Array1<f64> = self.means.rows().into_iter().map(|r| r.dot(&r)).collect();
        z.dot(&self.means.t()) * 2.0 - &norms
    }
    /// The centroid probe with the training features' mean `centre` (subtracted first) and the
    /// class means (classes × features), as [`ProbeHead::arrays`] saves them.
    pub fn from_parts(centre: Array1<f64>, means: Array2<f64>) -> Self {
        NearestCentroid { centre, means }
    }
    /// The training features' mean and the class means, as [`NearestCentroid::from_parts`] takes them.
    pub fn parts(&self) -> (&Array1<f64>, &Array2<f64>) {
        (&self.centre, &self.means)
    }
}

/// The index of each row's largest value (the first on ties).
pub fn argmax_rows(s: &Array2<f64>) -> Vec<usize> {
    s.outer_iter().map(|r| r.iter().enumerate().fold((0, f64::NEG_INFINITY), |b, (i, &v)| if v > b.1 { (i, v) } else { b }).0).collect()
}

/// Mean over the classes present in `y` of the share of their images predicted correctly (the
/// mean per-class recall). Equals the accuracy when every class has as many images.
pub fn balanced_accuracy(pred: &[usize], y: &[usize]) -> f64 {
    let k = y.iter().chain(pred).map(|&l| l + 1).max().unwrap_or(0);
    let mut confusion = vec![vec![0usize; k]; k];
    for (&p, &l) in pred.iter().zip(y) {
        confusion[l][p] += 1;
    }
    balanced_accuracy_of(&confusion).unwrap_or(0.0)
}

/// [`balanced_accuracy`] from a confusion matrix (true class × predicted); None without images.
pub fn balanced_accuracy_of(confusion: &[Vec<usize>]) -> Option<f64> {
    let recalls: Vec<f64> = confusion
        .iter()
        .enumerate()
        .filter_map(|(c, row)| {
            let n: usize = row.iter().sum();
            (n > 0).then(|| row.get(c).copied().unwrap_or(0) as f64 / n as f64)
        })
        .collect();
    (!recalls.is_empty()).then(|| recalls.iter().sum::<f64>() / recalls.len() as f64)
}

/// The mean row of each class 0..k of `x` (labels `y`, one per row; rows summed in order) and
/// each class's row count; a class without rows keeps a zero mean.
pub fn class_means(x: &Array2<f64>, y: &[usize], k: usize) -> (Array2<f64>, Vec<usize>) {
    let mut means = Array2::<f64>::zeros((k, x.ncols()));
    let mut cnt = vec![0usize; k];
    for (r, &c) in y.iter().enumerate() {
        let mut row = means.row_mut(c);
        row += &x.row(r);
        cnt[c] += 1;
    }
    for (c, &n) in cnt.iter().enumerate() {
        let mut row = means.row_mut(c);
        row /= n.max(1) as f64;
    }
    (means, cnt)
}

/// Stratified k-fold assignment (fold index per sample), seeded.
pub fn stratified_folds(y: &[usize], k: usize, folds: usize, seed: u64) -> Vec<usize> {
    let mut rng = rng_for(seed, "cv-folds");
    let mut out = vec![0; y.len()];
    for cls in 0..k {
        let mut idx: Vec<usize> = (0..y.len()).filter(|&i| y[i] == cls).collect();
        idx.shuffle(&mut rng);
        for (j, i) in idx.into_iter().enumerate() {
            out[i] = j % folds;
        }
    }
    out
}
