//! `graft predict`: a run's saved classifier applied to images reproduces the run's own test
//! predictions for every strategy, and every bad input (a missing, changed or unsaved
//! classifier, a folder without images, an unreadable image) is a clear error.
mod common;
use common::{graft, json_of, make_folder, TinyTask};
use std::path::Path;
use std::sync::OnceLock;

type Fixture = TinyTask;

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| TinyTask::new(8, 6))
}

/// `graft run --json` with a recipe (a preset, edited by `edit`); the run record.
fn run(f: &Fixture, runs: &Path, preset: &str, edit: impl Fn(&mut serde_json::Value), extra: &[&str]) -> serde_json::Value {
    let mut r = json_of(&graft().args(["recipe", "preset", preset]).output().unwrap());
    r["epochs"] = serde_json::json!(2);
    edit(&mut r);
    let p = runs.join(format!("recipe-{}.json", std::fs::read_dir(runs).map(|d| d.count()).unwrap_or(0)));
    std::fs::create_dir_all(runs).unwrap();
    std::fs::write(&p, serde_json::to_string(&r).unwrap()).unwrap();
    let out = graft()
        .args(["run", "--no-meta", "--json", "--data"])
        .arg(&f.data)
        .arg("--backbone")
        .arg(&f.backbone)
        .arg("--runs")
        .arg(runs)
        .arg("--recipe")
        .arg(&p)
        .args(extra)
        .output()
        .unwrap();
    json_of(&out)
}

fn predict(run_dir: &str, data: &Path, extra: &[&str]) -> std::process::Output {
    graft().args(["predict", "--json", "--run", run_dir, "--data"]).arg(data).args(extra).output().unwrap()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// For a fine-tune (float32 and bfloat16), a fine-tune at another input size, each probe, and
/// pretraining first (its own modules are not part of the classifier), the saved classifier's
/// predictions on the test folder give the run's confusion matrix
/// exactly, and its card carries the run's weight digest and classes.
#[test]
fn the_saved_classifier_reproduces_each_runs_test_predictions() {
    let f = fixture();
    let t = tempfile::tempdir().unwrap();
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(&str, &str, Edit, Vec<&str>)> = vec![
        ("finetune", "finetune-all", Box::new(|_| {}), vec![]),
        ("finetune bf16", "finetune-all", Box::new(|r| r["precision"] = "bf16".into()), vec![]),
        ("finetune at 40 px", "finetune-all", Box::new(|_| {}), vec!["--input-size", "40"]),
        ("linear-svm", "linear-probe", Box::new(|_| {}), vec![]),
        ("softmax", "linear-probe", Box::new(|r| r["strategy"] = "softmax-probe".into()), vec![]),
        ("centroid", "linear-probe", Box::new(|r| r["strategy"] = "centroid-probe".into()), vec![]),
        (
            "simclr, then finetune",
            "finetune-all",
            Box::new(|r| r["pretrain"] = serde_json::json!({"method": "simclr", "epochs": 1})),
            vec![],
        ),
        (
            "denoising autoencoder, then linear-svm",
            "linear-probe",
            Box::new(|r| r["pretrain"] = serde_json::json!({"method": "denoising-autoencoder", "epochs": 1})),
            vec![],
        ),
    ];
    let test = f.data.join("test");
    for (name, preset, edit, extra) in cases {
        let rec = run(f, t.path(), preset, edit, &extra);
        let dir = rec["run_dir"].as_str().unwrap();
        assert_eq!(rec["saved_model"], "classifier.json", "{name}");
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |f: &str| std::fs::metadata(Path::new(dir).join(f)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode("model.safetensors"), mode("run.json"), "{name}: the weights are as readable as the record");
        }
        let card: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(Path::new(dir).join("classifier.json")).unwrap()).unwrap();
        assert_eq!(card["weights_sha256"], rec["final_weights_sha256"], "{name}");
        assert_eq!(card["classes"], rec["dataset"]["classes"], "{name}");
        let p = json_of(&predict(dir, &test, &[]));
        let classes: Vec<String> = p["classes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();
        let k = classes.len();
        let mut confusion = vec![vec![0u64; k]; k];
        let mut nll = 0.0;
        for q in p["predictions"].as_array().unwrap() {
            let ix = |v: &serde_json::Value| classes.iter().position(|c| c == v.as_str().unwrap()).unwrap();
            confusion[ix(&q["truth"])][ix(&q["class"])] += 1;
            if let Some(ps) = q["probabilities"].as_array() {
                nll -= ps[ix(&q["truth"])].as_f64().unwrap().ln();
            }
            let prob = &q["probability"];
            match name {
                "linear-svm" | "centroid" | "denoising autoencoder, then linear-svm" => assert!(prob.is_null(), "{name}: {prob}"),
                _ => assert!(prob.as_f64().is_some_and(|v| v > 1.0 / k as f64 - 1e-9 && v <= 1.0), "{name}: {prob}"),
            }
        }
        let want: Vec<Vec<u64>> = serde_json::from_value(rec["confusion"].clone()).unwrap();
        assert_eq!(confusion, want, "{name}: predict's confusion matrix against the run's");
        assert_eq!(p["confusion"], rec["confusion"], "{name}: the confusion predict reports");
        let counts: Vec<u64> = (0..k).map(|j| confusion.iter().map(|r| r[j]).sum()).collect();
        assert_eq!(p["counts"], serde_json::json!(counts), "{name}");
        // a fine-tune's test loss is the mean cross-entropy of the same logits
        if let Some(loss) = rec["test_loss"].as_f64() {
            let n = rec["n_test"].as_f64().unwrap();
            assert!((nll / n - loss).abs() <= 1e-5 * loss.max(1e-3), "{name}: predict's test loss {} against the run's {loss}", nll / n);
        }
        assert_eq!(p["n_images"], rec["n_test"], "{name}");
        assert_eq!(p["n_labelled"], rec["n_test"], "{name}");
        assert!((p["accuracy"].as_f64().unwrap() - rec["test_accuracy"].as_f64().unwrap()).abs() < 1e-12, "{name}");
        let bal = rec["test_balanced_accuracy"].as_f64().unwrap();
        assert!((p["balanced_accuracy"].as_f64().unwrap() - bal).abs() < 1e-12, "{name}");
    }
}

/// One file, a folder that is not split by class (no ground truth), and the CSV, whose paths
/// with commas and quotes are quoted.
#[test]
fn predict_takes_a_file_or_any_folder_and_writes_csv() {
    let f = fixture();
    let t = tempfile::tempdir().unwrap();
    let rec = run(f, &t.path().join("runs"), "finetune-all", |_| {}, &[]);
    let dir = rec["run_dir"].as_str().unwrap();
    // one file: its folder names its class
    let one = f.data.join("test/class1/img000.png");
    let p = json_of(&predict(dir, &one, &[]));
    assert_eq!(p["n_images"], 1);
    assert_eq!(p["n_labelled"], 1);
    assert_eq!(p["predictions"][0]["truth"], "class1");
    // the dataset's root: train/ and test/ images, each labelled by its class folder
    let p = json_of(&predict(dir, &f.data, &[]));
    assert_eq!(p["n_images"], 3 * (8 + 6));
    assert_eq!(p["n_labelled"], p["n_images"]);
    // a class folder given as --data labels its images
    let p = json_of(&predict(dir, &f.data.join("test/class2"), &[]));
    assert_eq!((p["n_images"].as_u64(), p["n_labelled"].as_u64()), (Some(6), Some(6)));
    // a flat folder with an awkward name: nothing counts as labelled
    let flat = t.path().join("new, \"unsorted\" photos");
    std::fs::create_dir_all(&flat).unwrap();
    for (i, c) in ["class0", "class2"].iter().enumerate() {
        std::fs::copy(f.data.join(format!("test/{c}/img001.png")), flat.join(format!("{i}.png"))).unwrap();
    }
    std::fs::write(flat.join("notes.txt"), "not an image").unwrap();
    let p = json_of(&predict(dir, &flat, &[]));
    assert_eq!(p["n_labelled"], 0);
    assert!(p["accuracy"].is_null() && p["confusion"].is_null() && p["balanced_accuracy"].is_null());
    assert_eq!(p["counts"].as_array().unwrap().iter().map(|c| c.as_u64().unwrap()).sum::<u64>(), 2);
    let csv = t.path().join("pred.csv");
    let o = graft().args(["predict", "--run", dir, "--data"]).arg(&flat).arg("--out").arg(&csv).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<String> = String::from_utf8_lossy(&o.stdout).lines().map(String::from).collect();
    assert_eq!(lines.len(), 2, "one line an image: {lines:?}");
    let text = std::fs::read_to_string(&csv).unwrap();
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows[0], "path,class,probability,truth");
    assert_eq!(rows.len(), 3);
    assert!(rows[1].starts_with('"') && rows[1].contains("\"\"unsorted\"\""), "quoted path: {}", rows[1]);
}

/// Every bad input is an error (exit 2) that names the file or flag and the fix; a run saved
/// without its classifier says so.
#[test]
fn predict_refuses_a_missing_changed_or_unsaved_classifier_and_bad_images() {
    let f = fixture();
    let t = tempfile::tempdir().unwrap();
    let test = f.data.join("test");
    let fails = |o: &std::process::Output, needles: &[&str]| {
        assert_eq!(o.status.code(), Some(2), "{}", stderr(o));
        let e = stderr(o);
        for n in needles {
            assert!(e.contains(n), "`{n}` not in: {e}");
        }
    };
    // not saved
    let rec = run(f, &t.path().join("a"), "finetune-all", |_| {}, &["--no-save-model"]);
    let dir = rec["run_dir"].as_str().unwrap();
    assert!(rec.get("saved_model").is_none() && !Path::new(dir).join("model.safetensors").exists());
    fails(&predict(dir, &test, &[]), &["classifier.json", "did not save its classifier", "--no-save-model"]);
    fails(&predict("/nonexistent/run", &test, &[]), &["--run", "not a directory"]);
    // a file of the run directory stands for it
    let rec = run(f, &t.path().join("a2"), "finetune-all", |_| {}, &[]);
    let card = Path::new(rec["run_dir"].as_str().unwrap()).join("run.json");
    assert_eq!(json_of(&predict(card.to_str().unwrap(), &test, &[]))["run_id"], rec["run_id"]);

    // a changed weight file: its digest no longer matches
    let rec = run(f, &t.path().join("b"), "finetune-all", |_| {}, &[]);
    let dir = rec["run_dir"].as_str().unwrap().to_string();
    let w = Path::new(&dir).join("model.safetensors");
    let mut bytes = std::fs::read(&w).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x40;
    std::fs::write(&w, &bytes).unwrap();
    fails(&predict(&dir, &test, &[]), &["model.safetensors", "sha256", "changed"]);

    // a hand-edited card: an input size that would decode every image at 100 000 px
    let card = Path::new(&dir).join("classifier.json");
    let text = std::fs::read_to_string(&card).unwrap();
    std::fs::write(&card, text.replacen("\"height\": 32", "\"height\": 100000", 1)).unwrap();
    fails(&predict(&dir, &test, &[]), &["classifier.json", "field `input`"]);
    std::fs::write(&card, "{\"format\": 1}").unwrap();
    fails(&predict(&dir, &test, &[]), &["classifier.json", "not a classifier card"]);

    // a changed or missing probe file
    let rec = run(f, &t.path().join("c"), "linear-probe", |_| {}, &[]);
    let dir = rec["run_dir"].as_str().unwrap().to_string();
    let pf = Path::new(&dir).join("probe.safetensors");
    let mut bytes = std::fs::read(&pf).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&pf, &bytes).unwrap();
    fails(&predict(&dir, &test, &[]), &["probe.safetensors", "sha256"]);
    std::fs::remove_file(&pf).unwrap();
    fails(&predict(&dir, &test, &[]), &["probe.safetensors", "missing"]);

    // data: nothing there, no images, an unreadable image (named; --skip-bad skips it)
    let rec = run(f, &t.path().join("d"), "finetune-all", |_| {}, &[]);
    let dir = rec["run_dir"].as_str().unwrap().to_string();
    fails(&predict(&dir, &t.path().join("nowhere"), &[]), &["--data", "no such file or folder"]);
    let empty = t.path().join("empty");
    std::fs::create_dir_all(empty.join("sub")).unwrap();
    std::fs::write(empty.join("sub/readme.txt"), "x").unwrap();
    fails(&predict(&dir, &empty, &[]), &["--data", "no image files"]);
    let mixed = t.path().join("mixed/class0");
    std::fs::create_dir_all(&mixed).unwrap();
    std::fs::copy(test.join("class0/img000.png"), mixed.join("good.png")).unwrap();
    std::fs::write(mixed.join("broken.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    fails(&predict(&dir, &t.path().join("mixed"), &[]), &["broken.png", "--skip-bad"]);
    let p = json_of(&predict(&dir, &t.path().join("mixed"), &["--skip-bad"]));
    assert_eq!(p["n_images"], 1);
    assert_eq!(p["n_labelled"], 1);
    let skipped = p["skipped"].as_array().unwrap();
    assert!(skipped.len() == 1 && skipped[0].as_str().unwrap().contains("broken.png"), "{skipped:?}");
}

/// `--tta flip` averages each image's probabilities with its mirror image's: the same as
/// averaging `predict` on the folder and on a mirrored copy of it. A run that did not train
/// with flips gets a warning.
#[test]
fn flip_tta_is_the_mean_over_the_image_and_its_mirror() {
    let f = fixture();
    let t = tempfile::tempdir().unwrap();
    let rec = run(f, &t.path().join("runs"), "finetune-all", |_| {}, &[]);
    let dir = rec["run_dir"].as_str().unwrap();
    let test = f.data.join("test");
    let mirrored = t.path().join("mirrored");
    for c in ["class0", "class1", "class2"] {
        std::fs::create_dir_all(mirrored.join(c)).unwrap();
        for e in std::fs::read_dir(test.join(c)).unwrap() {
            let p = e.unwrap().path();
            image::open(&p).unwrap().fliph().save(mirrored.join(c).join(p.file_name().unwrap())).unwrap();
        }
    }
    let probs = |o: &std::process::Output| -> Vec<Vec<f64>> {
        json_of(o)["predictions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| q["probabilities"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect())
            .collect()
    };
    let plain = probs(&predict(dir, &test, &[]));
    let mirror = probs(&predict(dir, &mirrored, &[]));
    let o = predict(dir, &test, &["--tta", "flip"]);
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
    let tta = probs(&o);
    assert_eq!(tta.len(), plain.len());
    let mut differs = false;
    for ((a, b), m) in plain.iter().zip(&mirror).zip(&tta) {
        for ((x, y), z) in a.iter().zip(b).zip(m) {
            assert!(((x + y) / 2.0 - z).abs() < 1e-6, "{x} {y} {z}");
            differs |= (x - z).abs() > 1e-6;
        }
    }
    assert!(differs, "the mirror images changed no probability: the test is vacuous");
    // a run without flips in training: the prediction runs, with a warning
    let rec = run(f, &t.path().join("runs2"), "finetune-all", |r| r["augment"]["hflip"] = false.into(), &[]);
    let o = predict(rec["run_dir"].as_str().unwrap(), &test, &["--tta", "flip"]);
    assert!(o.status.success() && stderr(&o).contains("did not train with augment.hflip"), "{}", stderr(&o));
}

/// A folder larger than one decoding chunk (1 024 images): every image is classified once, a
/// copy of an image gets the same probabilities wherever it falls, and an unreadable file in
/// the second chunk is skipped and listed under --skip-bad.
#[test]
fn predict_classifies_a_folder_larger_than_a_chunk() {
    let f = fixture();
    let t = tempfile::tempdir().unwrap();
    let rec = run(f, &t.path().join("runs"), "finetune-all", |_| {}, &[]);
    let dir = rec["run_dir"].as_str().unwrap();
    let big = t.path().join("big");
    let mut n = 0;
    for c in ["class0", "class1", "class2"] {
        std::fs::create_dir_all(big.join(c)).unwrap();
        for e in std::fs::read_dir(f.data.join("test").join(c)).unwrap() {
            let p = e.unwrap().path();
            for k in 0..58 {
                std::fs::hard_link(&p, big.join(c).join(format!("{}-{k:02}.png", p.file_stem().unwrap().to_string_lossy()))).unwrap();
                n += 1;
            }
        }
    }
    std::fs::write(big.join("class2/zz-broken.png"), b"not a png").unwrap();
    let p = json_of(&predict(dir, &big, &["--skip-bad"]));
    assert!(n > 1024);
    assert_eq!(p["n_images"].as_u64(), Some(n as u64));
    assert!(p["skipped"][0].as_str().unwrap().contains("zz-broken.png"));
    let mut by_source: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    for q in p["predictions"].as_array().unwrap() {
        let path = q["path"].as_str().unwrap();
        let source = path.rsplit_once('-').unwrap().0.to_string();
        let probs: Vec<f64> = q["probabilities"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let first = by_source.entry(source).or_insert_with(|| probs.clone());
        for (a, b) in first.iter().zip(&probs) {
            assert!((a - b).abs() < 1e-6, "{path}: {first:?} against {probs:?}");
        }
    }
    assert_eq!(by_source.len(), 18);
    // the run's own accuracy, as every source image is copied equally often
    assert!((p["accuracy"].as_f64().unwrap() - rec["test_accuracy"].as_f64().unwrap()).abs() < 1e-9);
}

/// Several --run: the mean of the runs' probabilities (here a fine-tune at 32 px, one at 40 px
/// and a softmax probe); runs without probabilities or on other classes are refused.
#[test]
fn several_runs_predict_as_the_mean_of_their_probabilities() {
    let f = fixture();
    let t = tempfile::tempdir().unwrap();
    let runs = t.path().join("runs");
    let a = run(f, &runs, "finetune-all", |_| {}, &[]);
    let b = run(f, &runs, "finetune-all", |r| r["seed"] = 7.into(), &["--input-size", "40"]);
    let c = run(f, &runs, "linear-probe", |r| r["strategy"] = "softmax-probe".into(), &[]);
    let dirs: Vec<&str> = [&a, &b, &c].iter().map(|r| r["run_dir"].as_str().unwrap()).collect();
    let test = f.data.join("test");
    let probs = |v: &serde_json::Value| -> Vec<Vec<f64>> {
        v["predictions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| q["probabilities"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect())
            .collect()
    };
    let single: Vec<Vec<Vec<f64>>> = dirs.iter().map(|d| probs(&json_of(&predict(d, &test, &[])))).collect();
    let o =
        graft().args(["predict", "--json", "--run", dirs[0], "--run", dirs[1], "--run", dirs[2], "--data"]).arg(&test).output().unwrap();
    let e = json_of(&o);
    assert_eq!(e["run_ids"].as_array().unwrap().len(), 3);
    let mean = probs(&e);
    for (i, row) in mean.iter().enumerate() {
        for (j, p) in row.iter().enumerate() {
            let want = (single[0][i][j] + single[1][i][j] + single[2][i][j]) / 3.0;
            assert!((p - want).abs() < 1e-9, "image {i} class {j}: {p} against {want}");
        }
        let pick = row.iter().enumerate().fold(0, |b, (j, &v)| if v > row[b] { j } else { b });
        assert_eq!(e["predictions"][i]["class"].as_str().unwrap(), e["classes"][pick].as_str().unwrap());
    }
    // an SVM probe has no probabilities to average
    let svm = run(f, &runs, "linear-probe", |_| {}, &[]);
    let o = graft().args(["predict", "--run", dirs[0], "--run", svm["run_dir"].as_str().unwrap(), "--data"]).arg(&test).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("linear-svm") && stderr(&o).contains("probabilities"), "{}", stderr(&o));
    // a run on other classes
    let other = t.path().join("two");
    make_folder(&other, &[("train", 8), ("test", 4)], 2, 32);
    let out = graft()
        .args(["run", "--no-meta", "--json", "--preset", "finetune-all", "--epochs", "1", "--data"])
        .arg(&other)
        .arg("--backbone")
        .arg(&f.backbone)
        .arg("--runs")
        .arg(&runs)
        .output()
        .unwrap();
    let two = json_of(&out);
    let o = graft().args(["predict", "--run", dirs[0], "--run", two["run_dir"].as_str().unwrap(), "--data"]).arg(&test).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("same classes"), "{}", stderr(&o));
}
