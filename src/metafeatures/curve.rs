//! A task's label curve, measured on its own training images (`graft inspect`'s
//! `label_curve`): a nearest-centroid probe on a backbone's frozen last-group features (the
//! probe `graft run` fits for `centroid-probe`) trained on 1, 2, 4, ... images of each class (up
//! to one fewer than the smallest class has) and scored on the class's other images, over
//! repeated seeded draws; and a power law fitted to those points.
//!
//! It describes the probe on the images at hand. It does not say what more labels would buy:
//! on 24 pairs of tasks with S and 2S images a class (`docs/label-curve.md`), the fitted law's
//! gain from S to 2S missed the probe's measured gain by more than a constant guess did, and the
//! fine-tune's gain was several times the probe's. `recommend` does not use it.
use super::stats::{balanced_accuracy, NearestCentroid};
use ndarray::{Array2, Axis};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

/// Random draws of the training images at each point of the curve, at least.
pub const CURVE_DRAWS: usize = 20;
/// Held-out images a class summed over a point's draws, at least: near the top of the curve
/// few images of a class are left to score, so those points take more draws (up to 400).
const SCORED_PER_CLASS: usize = 200;
/// Held-out images scored per class and draw, at most (bounds the cost on large classes).
const HELD_OUT_PER_CLASS: usize = 50;

/// One point of the curve: the probe trained on `shots` images a class.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CurvePoint {
    pub shots: usize,
    /// Mean over the draws of the balanced accuracy (mean per-class recall) on the held-out
    /// training images.
    pub accuracy: f64,
    /// Standard error of that mean over the draws.
    pub se: f64,
    /// Random draws of the training images.
    pub draws: usize,
}

/// The label curve of a task under one backbone's features.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LabelCurve {
    pub points: Vec<CurvePoint>,
    /// The power law fitted to the points: accuracy(m) = asymptote − scale · m^(−exponent).
    pub fit: PowerLaw,
    /// Images a class in the training set (its median class): where the curve is read.
    pub shots: usize,
    /// The fitted curve at `shots` images a class.
    pub at_shots: f64,
    /// The fitted curve at twice `shots`, less `at_shots`: an extrapolation, which on held-out
    /// task pairs did not foretell the measured gain (`docs/label-curve.md`).
    pub gain_from_twice: f64,
    /// Images in the smallest class of the training set (the curve stops one below it).
    pub smallest_class: usize,
}

/// The label curve of features `f` (one row per image) with labels `y`; None when a class has
/// fewer than three images (no curve of two points with an image held out) or there is one class.
/// accuracy(m) = asymptote − scale · m^(−exponent): the usual shape of a learning curve
/// (Cortes et al. 1994; Hestness et al. 2017), rising and flattening towards an asymptote.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct PowerLaw {
    pub asymptote: f64,
    pub scale: f64,
    pub exponent: f64,
}

impl PowerLaw {
    pub fn at(&self, m: f64) -> f64 {
        (self.asymptote - self.scale * m.powf(-self.exponent)).clamp(0.0, 1.0)
    }

    /// Least squares weighted by 1/se² (se at least 0.005): for each exponent on a grid of 0.05
    /// to 2, the asymptote and scale in closed form, the scale at least 0 (a curve that does
    /// not fall); the exponent with the smallest weighted error wins.
    pub fn fit(points: &[CurvePoint]) -> PowerLaw {
        let w: Vec<f64> = points.iter().map(|p| 1.0 / p.se.max(0.005).powi(2)).collect();
        let ys: Vec<f64> = points.iter().map(|p| p.accuracy).collect();
        let sw: f64 = w.iter().sum();
        let my = w.iter().zip(&ys).map(|(w, y)| w * y).sum::<f64>() / sw;
        let mut best = (f64::INFINITY, PowerLaw { asymptote: my, scale: 0.0, exponent: 1.0 });
        for e in (1..=40).map(|i| i as f64 * 0.05) {
            let xs: Vec<f64> = points.iter().map(|p| (p.shots as f64).powf(-e)).collect();
            let mx = w.iter().zip(&xs).map(|(w, x)| w * x).sum::<f64>() / sw;
            let sxy: f64 = w.iter().zip(xs.iter().zip(&ys)).map(|(w, (x, y))| w * (x - mx) * (y - my)).sum();
            let sxx: f64 = w.iter().zip(&xs).map(|(w, x)| w * (x - mx).powi(2)).sum();
            // y = a - b x: the slope on x is -b
            let mut b = if sxx > 0.0 { (-sxy / sxx).max(0.0) } else { 0.0 };
            let mut a = my + b * mx;
            if a > 1.0 {
                // no accuracy above 1: the asymptote held at 1, the scale refitted
                let (num, den) =
                    w.iter().zip(xs.iter().zip(&ys)).fold((0.0, 0.0), |(n, d), (w, (x, y))| (n + w * (1.0 - y) * x, d + w * x * x));
                (a, b) = (1.0, if den > 0.0 { (num / den).max(0.0) } else { 0.0 });
            }
            let law = PowerLaw { asymptote: a, scale: b, exponent: e };
            let err: f64 = w.iter().zip(points).map(|(w, p)| w * (p.accuracy - (a - b * (p.shots as f64).powf(-e))).powi(2)).sum();
            if err < best.0 - 1e-12 {
                best = (err, law);
            }
        }
        best.1
    }
}

pub fn label_curve(f: &Array2<f64>, y: &[usize], seed: u64) -> Option<LabelCurve> {
    let k = y.iter().copied().max()? + 1;
    let by_class: Vec<Vec<usize>> = (0..k).map(|c| (0..y.len()).filter(|&i| y[i] == c).collect()).collect();
    let smallest = by_class.iter().map(Vec::len).min()?;
    if k < 2 || smallest < 3 || f.nrows() != y.len() {
        return None;
    }
    let top = smallest - 1;
    let mut grid: Vec<usize> = std::iter::successors(Some(1usize), |&m| Some(m * 2)).take_while(|&m| m < top).collect();
    grid.push(top);
    let mut rng = crate::util::rng_for(seed, "label-curve");
    let mut points = Vec::with_capacity(grid.len());
    for &m in &grid {
        let held_out = (smallest - m).min(HELD_OUT_PER_CLASS);
        let draws = SCORED_PER_CLASS.div_ceil(held_out).clamp(CURVE_DRAWS, 400);
        let mut accs = Vec::with_capacity(draws);
        for _ in 0..draws {
            let (mut tr, mut te) = (Vec::new(), Vec::new());
            for idx in &by_class {
                let mut idx = idx.clone();
                idx.shuffle(&mut rng);
                tr.extend_from_slice(&idx[..m]);
                te.extend(idx[m..].iter().take(HELD_OUT_PER_CLASS));
            }
            accs.push(centroid_balanced_accuracy(f, y, &tr, &te, k));
        }
        let mean = accs.iter().sum::<f64>() / accs.len() as f64;
        let var = accs.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / (accs.len() - 1).max(1) as f64;
        points.push(CurvePoint { shots: m, accuracy: mean, se: (var / accs.len() as f64).sqrt(), draws });
    }
    let fit = PowerLaw::fit(&points);
    let mut sizes: Vec<usize> = by_class.iter().map(Vec::len).collect();
    sizes.sort_unstable();
    let shots = sizes[sizes.len() / 2];
    let at_shots = fit.at(shots as f64);
    Some(LabelCurve { points, fit, shots, at_shots, gain_from_twice: fit.at(2.0 * shots as f64) - at_shots, smallest_class: smallest })
}

/// Mean per-class recall on `te` of the nearest class mean fitted on `tr`: the centroid probe
/// `graft run` fits (centred, L2-normalised features; [`NearestCentroid`]),
/// so the curve describes the probe a run of `centroid-probe` on the same group would be.
fn centroid_balanced_accuracy(f: &Array2<f64>, y: &[usize], tr: &[usize], te: &[usize], k: usize) -> f64 {
    let ytr: Vec<usize> = tr.iter().map(|&i| y[i]).collect();
    let Ok(m) = NearestCentroid::fit_means(&f.select(Axis(0), tr), &ytr, k) else {
        return 0.0; // unreachable: every class has `m` >= 1 training images
    };
    let yte: Vec<usize> = te.iter().map(|&i| y[i]).collect();
    balanced_accuracy(&m.predict(&f.select(Axis(0), te)), &yte)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    /// Two Gaussian classes in 20 dimensions, `n` images each, means `sep` apart along every axis.
    fn blobs(n: usize, sep: f64, seed: u64) -> (Array2<f64>, Vec<usize>) {
        let mut rng = crate::util::rng_for(seed, "test-blobs");
        let d = 20;
        let mut f = Array2::zeros((2 * n, d));
        let mut y = Vec::new();
        for i in 0..2 * n {
            let c = i % 2;
            for j in 0..d {
                let z: f64 = rng.sample(rand_distr::StandardNormal);
                f[[i, j]] = z + c as f64 * sep;
            }
            y.push(c);
        }
        (f, y)
    }

    /// On overlapping classes the curve rises with the shots (a centroid from more images is
    /// nearer the true mean), so the last doubling gains; on separated classes it is flat at 1;
    /// the grid is 1, 2, 4, ... and the smallest class less one; the same seed, the same curve.
    #[test]
    fn the_curve_rises_where_labels_help_and_is_flat_where_they_do_not() {
        let (f, y) = blobs(40, 0.25, 1);
        let c = label_curve(&f, &y, 0).unwrap();
        assert_eq!(c.points.iter().map(|p| p.shots).collect::<Vec<_>>(), vec![1, 2, 4, 8, 16, 32, 39]);
        assert!(c.points[0].accuracy < c.points.last().unwrap().accuracy - 0.05, "{c:?}");
        assert!(c.gain_from_twice > 0.0 && c.at_shots > c.points[0].accuracy, "{c:?}");
        assert_eq!(c.shots, 40);
        assert_eq!(c, label_curve(&f, &y, 0).unwrap());
        let (f, y) = blobs(12, 10.0, 2);
        let c = label_curve(&f, &y, 0).unwrap();
        assert!(c.points.iter().all(|p| p.accuracy == 1.0 && p.se == 0.0), "{c:?}");
        assert!(c.gain_from_twice.abs() < 1e-9 && (c.at_shots - 1.0).abs() < 1e-9, "{c:?}");
        assert_eq!(c.smallest_class, 12);
    }

    /// Points drawn from a known power law are fitted back (the exponent on the grid), and a
    /// falling curve is fitted flat.
    #[test]
    fn the_power_law_is_fitted_back() {
        let truth = PowerLaw { asymptote: 0.9, scale: 0.5, exponent: 0.5 };
        let pts: Vec<CurvePoint> =
            [1, 2, 4, 8, 16, 29].iter().map(|&m| CurvePoint { shots: m, accuracy: truth.at(m as f64), se: 0.01, draws: 20 }).collect();
        let f = PowerLaw::fit(&pts);
        assert!((f.asymptote - 0.9).abs() < 1e-9 && (f.scale - 0.5).abs() < 1e-9 && (f.exponent - 0.5).abs() < 1e-9, "{f:?}");
        let falling: Vec<CurvePoint> = pts.iter().map(|p| CurvePoint { accuracy: 1.0 - p.accuracy, ..p.clone() }).collect();
        let f = PowerLaw::fit(&falling);
        assert_eq!(f.scale, 0.0);
        assert!((f.at(100.0) - f.at(1.0)).abs() < 1e-12);
    }

    #[test]
    fn too_few_images_give_no_curve() {
        let (f, y) = blobs(2, 1.0, 3);
        assert!(label_curve(&f, &y, 0).is_none());
        let (f, y) = blobs(3, 1.0, 3);
        let c = label_curve(&f, &y, 0).unwrap();
        assert_eq!(c.points.iter().map(|p| p.shots).collect::<Vec<_>>(), vec![1, 2]);
        assert!(label_curve(&f.select(Axis(0), &[0, 2, 4]), &[0, 0, 0], 0).is_none());
    }
}
