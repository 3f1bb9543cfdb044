//! Transferability scores on features: LogME (You et al. 2021), H-score with Ledoit-Wolf
//! shrinkage (Bao et al. 2019; Ibrahim et al. 2022), LEEP (Nguyen et al. 2020), NCE (Tran et
//! al. 2019), a cross-validated nearest-centroid probe, and the Fréchet distance between two
//! Gaussians. Written from the papers' formulas; tests/golden/metafeatures_golden.py holds an
//! independent numpy implementation they are checked against.
use nalgebra::{DMatrix, SymmetricEigen};
use ndarray::{Array1, Array2, Axis};

fn to_na(x: &Array2<f64>) -> DMatrix<f64> {
    DMatrix::from_fn(x.nrows(), x.ncols(), |i, j| x[[i, j]])
}

/// LogME: the mean over classes of the maximised log evidence per sample of a Bayesian linear
/// model from features to the one-hot label, found by MacKay's fixed-point iteration on
/// (alpha, beta): at most 11 iterations, stopping when alpha/beta changes by < 1% relative.
pub fn logme(f: &Array2<f64>, y: &[usize]) -> f64 {
    let (n, d) = (f.nrows(), f.ncols());
    let k = y.iter().copied().max().map(|m| m + 1).unwrap_or(0);
    let fm = to_na(f);
    // eigen-decomposition of the smaller Gram matrix
    type Projection = Box<dyn Fn(&DMatrix<f64>) -> Vec<f64>>;
    let (sigma, proj): (Vec<f64>, Projection) = if n >= d {
        let e = SymmetricEigen::new(fm.transpose() * &fm);
        let lam: Vec<f64> = e.eigenvalues.iter().map(|&v| v.max(0.0)).collect();
        let v = e.eigenvectors.clone();
        let fm2 = fm.clone();
        let lam2 = lam.clone();
        (
            lam,
            Box::new(move |yv: &DMatrix<f64>| {
                let fty = fm2.transpose() * yv; // d x 1
                (0..lam2.len()).map(|j| if lam2[j] > 1e-10 { v.column(j).dot(&fty.column(0)) / lam2[j].sqrt() } else { 0.0 }).collect()
            }),
        )
    } else {
        let e = SymmetricEigen::new(&fm * fm.transpose());
        let lam: Vec<f64> = e.eigenvalues.iter().map(|&v| v.max(0.0)).collect();
        let u = e.eigenvectors.clone();
        let lam2 = lam.clone();
        (
            lam,
            Box::new(move |yv: &DMatrix<f64>| {
                (0..lam2.len()).map(|j| if lam2[j] > 1e-10 { u.column(j).dot(&yv.column(0)) } else { 0.0 }).collect()
            }),
        )
    };
    // the d - min(n, d) zero eigenvalues of F^T F enter only log|A| (as log alpha)
    let extra_zero = d.saturating_sub(sigma.len()) as f64;
    let nf = n as f64;
    let mut total = 0.0;
    for c in 0..k {
        let yv = DMatrix::from_fn(n, 1, |i, _| if y[i] == c { 1.0 } else { 0.0 });
        let x = proj(&yv);
        let x2: Vec<f64> = x.iter().map(|v| v * v).collect();
        let res_x2 = (yv.norm_squared() - x2.iter().sum::<f64>()).max(0.0);
        let (mut alpha, mut beta) = (1.0f64, 1.0f64);
        let (mut m2, mut res2) = (0.0, 0.0);
        for _ in 0..11 {
            let t = alpha / beta;
            let gamma: f64 = sigma.iter().map(|s| s / (s + t)).sum();
            m2 = sigma.iter().zip(&x2).map(|(s, x)| s * x / ((t + s) * (t + s))).sum();
            res2 = sigma.iter().zip(&x2).map(|(s, x)| x / ((1.0 + s / t) * (1.0 + s / t))).sum::<f64>() + res_x2;
            alpha = gamma / (m2 + 1e-5);
            beta = (nf - gamma) / (res2 + 1e-5);
            if ((alpha / beta - t) / t).abs() < 0.01 {
                break;
            }
        }
        // the evidence at the last (alpha, beta), with m'm and the residual of the last step
        let logdet: f64 = sigma.iter().map(|s| (alpha + beta * s).ln()).sum::<f64>() + extra_zero * alpha.ln();
        let evidence = d as f64 / 2.0 * alpha.ln() + nf / 2.0 * beta.ln()
            - 0.5 * logdet
            - beta / 2.0 * (res2 + 1e-5)
            - alpha / 2.0 * (m2 + 1e-5)
            - nf / 2.0 * (2.0 * std::f64::consts::PI).ln();
        total += evidence / nf;
    }
    total / k.max(1) as f64
}

/// Ledoit-Wolf shrunk covariance of already-centred rows (as scikit-learn computes it).
pub fn ledoit_wolf(xc: &Array2<f64>) -> (Array2<f64>, f64) {
    let (n, d) = (xc.nrows() as f64, xc.ncols());
    let emp = xc.t().dot(xc) / n;
    let x2 = xc.mapv(|v| v * v);
    let emp_trace: Array1<f64> = x2.sum_axis(Axis(0)) / n;
    let mu = emp_trace.sum() / d as f64;
    let beta_ = x2.t().dot(&x2).sum();
    let delta_ = xc.t().dot(xc).mapv(|v| v * v).sum() / (n * n);
    let beta = 1.0 / (d as f64 * n) * (beta_ / n - delta_);
    let delta = (delta_ - 2.0 * mu * emp_trace.sum() + d as f64 * mu * mu) / d as f64;
    let beta = beta.min(delta);
    let shrink = if beta == 0.0 { 0.0 } else { beta / delta };
    let mut s = emp * (1.0 - shrink);
    for i in 0..d {
        s[[i, i]] += shrink * mu;
    }
    (s, shrink)
}

/// H-score tr(cov(f)^-1 cov(E[f|y])) with the feature covariance shrunk (Ledoit-Wolf).
/// cov(E[f|y]) = sum_c (n_c / n) m_c m_c^T over the centred class means m_c, so with a Cholesky
/// factor of the (positive definite) shrunk covariance the trace is sum_c (n_c / n) m_c^T
/// cov(f)^-1 m_c: one d^3/3 factorisation and k solves, instead of a d x d pseudo-inverse by
/// SVD (the same value; 1280-d ImageNet features made the SVD most of `inspect`'s time).
/// Without shrinkage and with fewer samples than dimensions the covariance is singular, and
/// the pseudo-inverse is used.
pub fn hscore(f: &Array2<f64>, y: &[usize]) -> f64 {
    let n = f.nrows();
    let k = y.iter().copied().max().map(|m| m + 1).unwrap_or(0);
    let mean = f.mean_axis(Axis(0)).expect("rows");
    let xc = f - &mean;
    let (cov_f, _) = ledoit_wolf(&xc);
    let means: Vec<(f64, nalgebra::DVector<f64>)> = (0..k)
        .filter_map(|c| {
            let idx: Vec<usize> = (0..n).filter(|&i| y[i] == c).collect();
            if idx.is_empty() {
                return None;
            }
            let m = xc.select(Axis(0), &idx).mean_axis(Axis(0)).expect("rows");
            Some((idx.len() as f64 / n as f64, nalgebra::DVector::from_iterator(m.len(), m.iter().copied())))
        })
        .collect();
    let a = to_na(&cov_f);
    match a.clone().cholesky() {
        Some(ch) => means.iter().map(|(w, m)| w * m.dot(&ch.solve(m))).sum(),
        None => {
            let inv = a.pseudo_inverse(1e-12).expect("pseudo-inverse");
            means.iter().map(|(w, m)| w * m.dot(&(&inv * m))).sum()
        }
    }
}

/// LEEP: mean log of the expected empirical conditional P(y | z) under the source head's
/// softmax θ(x) (rows of `theta`, n x Z).
pub fn leep(theta: &Array2<f64>, y: &[usize]) -> f64 {
    let (n, z) = (theta.nrows(), theta.ncols());
    let k = y.iter().copied().max().map(|m| m + 1).unwrap_or(0);
    let mut joint = Array2::<f64>::zeros((k, z));
    for i in 0..n {
        for j in 0..z {
            joint[[y[i], j]] += theta[[i, j]] / n as f64;
        }
    }
    let pz = joint.sum_axis(Axis(0));
    let cond = Array2::from_shape_fn((k, z), |(a, b)| if pz[b] > 0.0 { joint[[a, b]] / pz[b] } else { 0.0 });
    (0..n).map(|i| (0..z).map(|j| cond[[y[i], j]] * theta[[i, j]]).sum::<f64>().max(1e-300).ln()).sum::<f64>() / n as f64
}

/// NCE: the negative conditional entropy −H(Y | Z) of target labels given the source head's
/// hard predictions z = argmax θ(x).
pub fn nce(theta: &Array2<f64>, y: &[usize]) -> f64 {
    let (n, z) = (theta.nrows(), theta.ncols());
    let k = y.iter().copied().max().map(|m| m + 1).unwrap_or(0);
    let mut joint = Array2::<f64>::zeros((k, z));
    for i in 0..n {
        let zi = (0..z).fold(0, |b, j| if theta[[i, j]] > theta[[i, b]] { j } else { b });
        joint[[y[i], zi]] += 1.0 / n as f64;
    }
    let pz = joint.sum_axis(Axis(0));
    let mut s = 0.0;
    for a in 0..k {
        for b in 0..z {
            let p = joint[[a, b]];
            if p > 0.0 {
                s += p * (p / pz[b]).ln();
            }
        }
    }
    s
}

/// Fréchet distance between N(mu1, s1) and N(mu2, s2):
/// ‖mu1 − mu2‖² + tr(s1 + s2 − 2 (s1^½ s2 s1^½)^½).
pub fn frechet(mu1: &[f64], s1: &Array2<f64>, mu2: &[f64], s2: &Array2<f64>) -> f64 {
    let d2: f64 = mu1.iter().zip(mu2).map(|(a, b)| (a - b) * (a - b)).sum();
    let e = SymmetricEigen::new(to_na(s1));
    let sq = &e.eigenvectors * DMatrix::from_diagonal(&e.eigenvalues.map(|v| v.max(0.0).sqrt())) * e.eigenvectors.transpose();
    let m = &sq * to_na(s2) * &sq;
    let m = (&m + m.transpose()) * 0.5;
    let tr_sqrt: f64 = SymmetricEigen::new(m).eigenvalues.iter().map(|v| v.max(0.0).sqrt()).sum();
    let tr1: f64 = (0..s1.nrows()).map(|i| s1[[i, i]]).sum();
    let tr2: f64 = (0..s2.nrows()).map(|i| s2[[i, i]]).sum();
    d2 + tr1 + tr2 - 2.0 * tr_sqrt
}

/// Mean and (biased) covariance of rows.
pub fn mean_cov(f: &Array2<f64>) -> (Vec<f64>, Array2<f64>) {
    let mean = f.mean_axis(Axis(0)).expect("rows");
    let xc = f - &mean;
    let cov = xc.t().dot(&xc) / f.nrows() as f64;
    (mean.to_vec(), cov)
}

/// Nearest-centroid balanced accuracy (mean per-class recall) on standardised features, by
/// stratified k-fold cross-validation (k = min(5, smallest class)); None when a class has fewer
/// than two images.
///
/// Balanced, because graft's test sets are scored per class: on an imbalanced training set plain
/// accuracy is dominated by the large classes and overstates what a recipe reaches on a balanced
/// test set. Every image is held out exactly once, so when all classes are the same size the two
/// are the same number; that case is computed as correct / n, bit for bit the figure logged
/// before the change, so balanced tasks' meta-features are unchanged.
pub fn nearest_centroid_cv(f: &Array2<f64>, y: &[usize], seed: u64) -> Option<f64> {
    let k = y.iter().copied().max().map(|m| m + 1).unwrap_or(0);
    let counts: Vec<usize> = (0..k).map(|c| y.iter().filter(|&&l| l == c).count()).collect();
    let min_count = counts.iter().copied().min().unwrap_or(0);
    let folds = min_count.min(5);
    if folds < 2 {
        return None;
    }
    let assign = super::stats::stratified_folds(y, k, folds, seed);
    // true class x predicted, over every image's one held-out prediction
    let mut confusion = vec![vec![0usize; k]; k];
    for fo in 0..folds {
        let tr: Vec<usize> = (0..y.len()).filter(|&i| assign[i] != fo).collect();
        let xtr = f.select(Axis(0), &tr);
        let st = super::stats::Standardiser::fit(&xtr);
        let xtr = st.apply(&xtr);
        let ytr: Vec<usize> = tr.iter().map(|&i| y[i]).collect();
        let (cents, _) = super::stats::class_means(&xtr, &ytr, k);
        for i in (0..y.len()).filter(|&i| assign[i] == fo) {
            let x = st.apply(&f.select(Axis(0), &[i]));
            let best = (0..k)
                .map(|c| (c, (&x.row(0) - &cents.row(c)).mapv(|v| v * v).sum()))
                .fold((0, f64::INFINITY), |b, (c, dist)| if dist < b.1 { (c, dist) } else { b })
                .0;
            confusion[y[i]][best] += 1;
        }
    }
    if counts.iter().all(|&c| c == min_count) {
        let correct: usize = (0..k).map(|c| confusion[c][c]).sum();
        return Some(correct as f64 / y.len() as f64);
    }
    super::stats::balanced_accuracy_of(&confusion)
}
