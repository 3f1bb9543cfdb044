//! Small statistics on feature matrices shared by the transferability scores and the probes:
//! column standardisation and seeded stratified folds.
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
