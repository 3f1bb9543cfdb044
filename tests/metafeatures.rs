//! LogME, H-score, LEEP, NCE and the Fréchet distance against the independent numpy
//! implementations in tests/golden/metafeatures_golden.py, on random and real features
//! (pooled resnet8 features of the example images): 1e-6 relative.
use graft::metafeatures::transfer;
use ndarray::{Array1, Array2};
use ndarray_npy::read_npy;
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn close(got: f64, want: f64, what: &str) {
    let rel = (got - want).abs() / want.abs().max(1e-12);
    assert!(rel < 1e-6, "{what}: graft {got} vs numpy {want} (relative {rel:e})");
}

fn golden() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join("metafeatures.json")).unwrap()).unwrap()
}

fn labels(p: PathBuf) -> Vec<usize> {
    let y: Array1<i64> = read_npy(p).unwrap();
    y.iter().map(|&v| v as usize).collect()
}

#[test]
fn random_features_match_numpy() {
    let g = golden();
    for case in g["random"].as_array().unwrap() {
        let name = case["case"].as_str().unwrap();
        let p = |s: &str| dir().join("random").join(format!("{name}_{s}.npy"));
        let f: Array2<f64> = read_npy(p("f")).unwrap();
        let y = labels(p("y"));
        let theta: Array2<f64> = read_npy(p("theta")).unwrap();
        let other: Array2<f64> = read_npy(p("g")).unwrap();
        close(transfer::logme(&f, &y), case["logme"].as_f64().unwrap(), &format!("{name} LogME"));
        close(transfer::hscore(&f, &y), case["hscore"].as_f64().unwrap(), &format!("{name} H-score"));
        close(transfer::leep(&theta, &y), case["leep"].as_f64().unwrap(), &format!("{name} LEEP"));
        close(transfer::nce(&theta, &y), case["nce"].as_f64().unwrap(), &format!("{name} NCE"));
        let (m1, s1) = transfer::mean_cov(&f);
        let (m2, s2) = transfer::mean_cov(&other);
        close(transfer::frechet(&m1, &s1, &m2, &s2), case["frechet"].as_f64().unwrap(), &format!("{name} Frechet"));
    }
}

#[test]
fn real_features_match_numpy() {
    let g = golden();
    let real = dir().join("real");
    let y = labels(real.join("labels.npy"));
    let cases = g["real"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    for case in cases {
        let file = case["file"].as_str().unwrap();
        let f: Array2<f64> = read_npy(real.join(file)).unwrap();
        close(transfer::logme(&f, &y), case["logme"].as_f64().unwrap(), &format!("{file} LogME"));
        close(transfer::hscore(&f, &y), case["hscore"].as_f64().unwrap(), &format!("{file} H-score"));
    }
    let theta: Array2<f64> = read_npy(real.join("theta.npy")).unwrap();
    close(transfer::leep(&theta, &y), g["real_leep"].as_f64().unwrap(), "real LEEP");
    close(transfer::nce(&theta, &y), g["real_nce"].as_f64().unwrap(), "real NCE");
}

#[test]
fn logme_ranks_separable_features_higher() {
    let n = 90;
    let y: Vec<usize> = (0..n).map(|i| i % 3).collect();
    let sep = Array2::from_shape_fn((n, 4), |(i, j)| if j == y[i] { 3.0 } else { 0.0 } + ((i * 7 + j * 13) % 11) as f64 * 0.05);
    let noise = Array2::from_shape_fn((n, 4), |(i, j)| ((i * 7 + j * 13) % 11) as f64 * 0.05);
    assert!(transfer::logme(&sep, &y) > transfer::logme(&noise, &y));
    assert!(transfer::hscore(&sep, &y) > transfer::hscore(&noise, &y));
}

/// The centroid probe's cross-validated accuracy is balanced (mean per-class recall): a small
/// class half of whose images sit inside the large class's cluster scores 0.5 recall, whatever
/// its share of the images. Class 0: 20 images in [-0.5, 0.5]; class 1: two at 10, two at 0.
/// With 4 folds each fold holds one class-1 image out: a far one is recalled (the other three
/// put the centroid at 3.3), a near one is not (centroid 6.7), every class-0 image is.
#[test]
fn centroid_probe_cv_is_balanced_accuracy() {
    let mut x: Vec<f64> = (0..20).map(|i| -0.5 + i as f64 / 19.0).collect();
    let mut y = vec![0usize; 20];
    x.extend([10.0, 0.0, 10.0, 0.0]);
    y.extend([1, 1, 1, 1]);
    let f = Array2::from_shape_vec((x.len(), 1), x).unwrap();
    let got = transfer::nearest_centroid_cv(&f, &y, 0).unwrap();
    assert!((got - 0.75).abs() < 1e-12, "balanced accuracy (1 + 0.5) / 2, not plain 22/24: got {got}");
    // equal class sizes: the same figure as correct / n (one class-1 image inside class 0's
    // cluster is the only miss)
    let xb: Vec<f64> = (0..8).map(|i| -0.5 + i as f64 / 7.0).chain([10.0, 11.0, 12.0, 9.0, 10.5, 9.5, 11.5, 0.0]).collect();
    let yb: Vec<usize> = (0..16).map(|i| usize::from(i >= 8)).collect();
    let fb = Array2::from_shape_vec((16, 1), xb).unwrap();
    assert_eq!(transfer::nearest_centroid_cv(&fb, &yb, 0), Some(15.0 / 16.0));
    // fewer than two images in a class: no cross-validation
    assert_eq!(transfer::nearest_centroid_cv(&fb, &[vec![0; 15], vec![1]].concat(), 0), None);
}
