//! The linear-probe score shared by the pretraining tests: a linear SVM on a model's
//! penultimate pooled features, by 5 x repeated 2-fold cross-validation.
use graft::backbones::Model;
use graft::data::{ImageSet, Normalisation};
use graft::executor::probe::{accuracy, fit_svm_cv, Standardiser};
use ndarray::{Array2, Axis};
use rand::seq::SliceRandom;
use rand::SeedableRng;

pub fn features(model: &Model, s: &ImageSet, norm: &Normalisation) -> Array2<f64> {
    let x = candle_core::Tensor::from_vec(
        s.batch(&(0..s.n).collect::<Vec<_>>(), norm, None),
        (s.n, s.spec.channels, s.spec.height, s.spec.width),
        &model.device,
    )
    .unwrap();
    let f = model.features(&x, model.n_groups() - 2).unwrap();
    let d = f.dim(1).unwrap();
    Array2::from_shape_vec((s.n, d), f.flatten_all().unwrap().to_vec1::<f32>().unwrap().into_iter().map(|v| v as f64).collect()).unwrap()
}

/// Mean test accuracy of a linear SVM (C in {0.01, 0.1, 1} by inner 3-fold CV) over 5 seeded
/// random halvings of the labelled images, each half testing the probe trained on the other.
pub fn probe_accuracy(model: &Model, labelled: &ImageSet, norm: &Normalisation) -> f64 {
    let x = features(model, labelled, norm);
    let y: Vec<usize> = labelled.labels.iter().map(|&l| l as usize).collect();
    let n = y.len();
    let mut accs = Vec::new();
    for r in 0..5u64 {
        let mut idx: Vec<usize> = (0..n).collect();
        idx.shuffle(&mut rand::rngs::StdRng::seed_from_u64(r));
        let (h1, h2) = idx.split_at(n / 2);
        for (tr, te) in [(h1, h2), (h2, h1)] {
            let (xtr, xte) = (x.select(Axis(0), tr), x.select(Axis(0), te));
            let ytr: Vec<usize> = tr.iter().map(|&i| y[i]).collect();
            let yte: Vec<usize> = te.iter().map(|&i| y[i]).collect();
            accs.push(fit_and_score(&xtr, &ytr, &xte, &yte));
        }
    }
    accs.iter().sum::<f64>() / accs.len() as f64
}

/// Test accuracy of a linear SVM (C in {0.01, 0.1, 1} by inner 3-fold CV) trained on `train`'s
/// penultimate pooled features and scored on `test`'s.
pub fn holdout_accuracy(model: &Model, train: &ImageSet, test: &ImageSet, norm: &Normalisation) -> f64 {
    let (xtr, xte) = (features(model, train, norm), features(model, test, norm));
    let ytr: Vec<usize> = train.labels.iter().map(|&l| l as usize).collect();
    let yte: Vec<usize> = test.labels.iter().map(|&l| l as usize).collect();
    fit_and_score(&xtr, &ytr, &xte, &yte)
}

/// Standardise on the training features, fit the SVM (C by inner 3-fold CV; classes 0..=max
/// label), and return its accuracy on the test features.
fn fit_and_score(xtr: &Array2<f64>, ytr: &[usize], xte: &Array2<f64>, yte: &[usize]) -> f64 {
    let k = ytr.iter().max().map_or(0, |m| m + 1);
    let st = Standardiser::fit(xtr);
    let (m, _) = fit_svm_cv(&st.apply(xtr), ytr, k, &[0.01, 0.1, 1.0], 3, 0).unwrap();
    accuracy(&m.predict(&st.apply(xte)), yte)
}
