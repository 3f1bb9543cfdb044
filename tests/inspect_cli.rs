//! `graft inspect` and `graft logme` through the binary.
mod common;
use common::{graft, json_of, make_folder, tiny_backbone};

#[test]
fn inspect_reports_every_field_per_group() {
    let t = tempfile::tempdir().unwrap();
    let bb = tiny_backbone(t.path());
    assert!(bb.with_extension("stats.safetensors").is_file(), "pretrain writes source statistics");
    let data = t.path().join("task");
    make_folder(&data, &[("train", 8), ("test", 2)], 3, 32);
    std::fs::create_dir_all(data.join("unlabelled")).unwrap();
    common::synth_image(1, 99, 32).save(data.join("unlabelled/u.png")).unwrap();
    let j = json_of(&graft().args(["inspect", "--json", "--data"]).arg(&data).arg("--backbone").arg(&bb).output().unwrap());
    let d = &j["dataset"];
    assert_eq!(d["n_classes"], 3);
    assert_eq!(d["n_labelled"], 24);
    assert_eq!(d["n_unlabelled"], 1);
    assert_eq!(d["images_per_class"]["min"], 8);
    assert_eq!(d["image_width"], 32);
    // the stored images' traits: 32 x 32 synthetic colour images
    assert_eq!(d["native_size"], 32.0);
    assert!(d["colourfulness"].as_f64().is_some_and(|c| c > 0.0 && c <= 1.0), "{}", d["colourfulness"]);
    assert_eq!(d["colour_mean"].as_array().unwrap().len(), 3);
    assert!(d["pixel_separability"].as_f64().unwrap() > 0.5);
    let groups = j["groups"].as_array().unwrap();
    assert_eq!(groups.iter().map(|g| g["name"].as_str().unwrap()).collect::<Vec<_>>(), vec!["stem", "stage1", "stage2", "stage3"]);
    for g in groups {
        for k in ["logme", "hscore", "probe_accuracy"] {
            assert!(g[k].as_f64().unwrap().is_finite(), "{k} {g}");
        }
    }
    assert!(j["leep"].as_f64().unwrap() < 0.0);
    assert!(j["nce"].as_f64().unwrap() <= 0.0);
    assert!(j["frechet_distance"].as_f64().unwrap() >= 0.0);
    // the label curve on the last group: 1, 2, 4 and 7 training images a class (one held out
    // from the smallest class of 8), each a mean of held-out balanced accuracies, and the power
    // law fitted to it read at the 8 images a class and at twice that
    let c = &j["label_curve"];
    let pts = c["points"].as_array().unwrap();
    assert_eq!(pts.iter().map(|p| p["shots"].as_u64().unwrap()).collect::<Vec<_>>(), vec![1, 2, 4, 7]);
    assert!(pts.iter().all(|p| (0.0..=1.0).contains(&p["accuracy"].as_f64().unwrap()) && p["draws"].as_u64().unwrap() >= 20), "{c}");
    assert_eq!(pts[3]["draws"], 200, "one image a class left to score: 200 draws");
    let f = &c["fit"];
    let law = |m: f64| {
        (f["asymptote"].as_f64().unwrap() - f["scale"].as_f64().unwrap() * m.powf(-f["exponent"].as_f64().unwrap())).clamp(0.0, 1.0)
    };
    assert_eq!(c["shots"], 8);
    assert!((law(8.0) - c["at_shots"].as_f64().unwrap()).abs() < 1e-9, "{c}");
    assert!((law(16.0) - law(8.0) - c["gain_from_twice"].as_f64().unwrap()).abs() < 1e-9, "{c}");
}

#[test]
fn logme_cli_matches_library_and_checks_input() {
    let t = tempfile::tempdir().unwrap();
    let n = 30;
    let y: Vec<i64> = (0..n).map(|i| (i % 3) as i64 * 10).collect();
    let f = ndarray::Array2::from_shape_fn((n, 5), |(i, j)| {
        ((i * 31 + j * 17) % 13) as f32 / 13.0 + if j as i64 == y[i] / 10 { 1.0 } else { 0.0 }
    });
    ndarray_npy::write_npy(t.path().join("x.npy"), &f).unwrap();
    ndarray_npy::write_npy(t.path().join("y.npy"), &ndarray::Array1::from(y.clone())).unwrap();
    let j = json_of(
        &graft()
            .args(["logme", "--json", "--features"])
            .arg(t.path().join("x.npy"))
            .arg("--labels")
            .arg(t.path().join("y.npy"))
            .output()
            .unwrap(),
    );
    let labels: Vec<usize> = y.iter().map(|&v| (v / 10) as usize).collect();
    let want = graft::metafeatures::transfer::logme(&f.mapv(|v| v as f64), &labels);
    assert!((j["logme"].as_f64().unwrap() - want).abs() < 1e-12);
    ndarray_npy::write_npy(t.path().join("short.npy"), &ndarray::Array1::from(vec![0i64, 1])).unwrap();
    let out =
        graft().args(["logme", "--features"]).arg(t.path().join("x.npy")).arg("--labels").arg(t.path().join("short.npy")).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has 2 labels"));
}
