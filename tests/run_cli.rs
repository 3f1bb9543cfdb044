//! `graft run` end to end through the binary: presets, freezing, layer-wise learning rates,
//! the SVM probe, the run record, the Parquet append, determinism and every bad input.
mod common;
use common::{graft, json_of, make_folder, tiny_backbone};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

struct Fixture {
    _dir: tempfile::TempDir,
    backbone: PathBuf,
    data: PathBuf,
    root: PathBuf,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let backbone = tiny_backbone(dir.path());
        let data = dir.path().join("target-task");
        make_folder(&data, &[("train", 8), ("test", 6)], 3, 32);
        let root = dir.path().to_path_buf();
        Fixture { _dir: dir, backbone, data, root }
    })
}

fn run_args(f: &Fixture, extra: &[&str], runs: &Path) -> std::process::Output {
    graft().args(["run", "--data"]).arg(&f.data).arg("--backbone").arg(&f.backbone).arg("--runs").arg(runs).args(extra).output().unwrap()
}

fn write_recipe(dir: &Path, name: &str, v: &serde_json::Value) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_string_pretty(v).unwrap()).unwrap();
    p
}

fn preset_json(name: &str) -> serde_json::Value {
    json_of(&graft().args(["recipe", "preset", name]).output().unwrap())
}

#[test]
fn finetune_run_record_and_meta_append() {
    let f = fixture();
    let t = tempfile::tempdir().unwrap();
    let meta = t.path().join("meta");
    let out = run_args(
        f,
        &["--preset", "finetune-all", "--epochs", "3", "--json", "--meta", meta.to_str().unwrap(), "--family", "synth"],
        t.path(),
    );
    let j = json_of(&out);
    for k in [
        "run_id",
        "run_dir",
        "test_accuracy",
        "val_accuracy",
        "n_train",
        "n_test",
        "n_classes",
        "train_seconds",
        "backbone",
        "recipe",
        "groups",
    ] {
        assert!(j.get(k).is_some(), "missing {k}");
    }
    assert_eq!(j["n_train"], 24);
    assert_eq!(j["n_test"], 18);
    assert_eq!(j["n_classes"], 3);
    let acc = j["test_accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc));
    let groups = j["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 5);
    assert_eq!(groups[4]["action"], "reinit");
    for g in groups {
        assert!(g["weight_change"].as_f64().unwrap() > 0.0, "{g}");
    }
    let run_dir = PathBuf::from(j["run_dir"].as_str().unwrap());
    for file in ["recipe.json", "metrics.csv", "run.json"] {
        assert!(run_dir.join(file).is_file(), "{file}");
    }
    let csv = std::fs::read_to_string(run_dir.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4, "{csv}");
    let on_disk: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run_dir.join("run.json")).unwrap()).unwrap();
    assert_eq!(on_disk["test_accuracy"], j["test_accuracy"]);
    // the meta-dataset row reads back with the SPEC's columns
    let df = graft::metadataset::read_all(&meta).unwrap();
    assert_eq!(df.height(), 1);
    for c in [
        "run_id",
        "task_id",
        "family",
        "backbone",
        "strategy",
        "test_accuracy",
        "seed",
        "train_seconds",
        "schema_version",
        "recipe",
        "mf_n_classes",
        "r_lr",
    ] {
        assert!(df.column(c).is_ok(), "missing column {c}");
    }
    assert_eq!(df.column("family").unwrap().str().unwrap().get(0), Some("synth"));
    assert_eq!(df.column("run_id").unwrap().str().unwrap().get(0), j["run_id"].as_str());
    // a second run appends a second row, leaving the first intact
    let out = run_args(f, &["--preset", "linear-probe", "--json", "--meta", meta.to_str().unwrap()], t.path());
    json_of(&out);
    let df = graft::metadataset::read_all(&meta).unwrap();
    assert_eq!(df.height(), 2);
    assert!(
        std::fs::read_dir(&meta).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().starts_with('.')),
        "temporary file left behind"
    );
}

/// LP-FT (`head_init: probe`): the head starts as a softmax probe on the frozen head inputs, so
/// the first training step's loss is far below a random head's (ln 3 ≈ 1.10 for three classes);
/// the run records the probe, and the recipe as run says `head_init`.
#[test]
fn a_head_started_from_a_probe_starts_with_a_lower_loss() {
    let f = fixture();
    let t = tempfile::tempdir().unwrap();
    let mut r = preset_json("finetune-all");
    r["epochs"] = 2.into();
    r["augment"] = serde_json::json!({});
    let random = write_recipe(t.path(), "random.json", &r);
    r["head_init"] = "probe".into();
    r["probe"]["l2"] = 0.01.into();
    let probe = write_recipe(t.path(), "probe.json", &r);
    let a = json_of(&run_args(f, &["--recipe", random.to_str().unwrap(), "--no-meta", "--json"], t.path()));
    let b = json_of(&run_args(f, &["--recipe", probe.to_str().unwrap(), "--no-meta", "--json"], t.path()));
    let (la, lb) = (a["first_step_loss"].as_f64().unwrap(), b["first_step_loss"].as_f64().unwrap());
    assert!(lb < 0.8 * la, "first-step loss with the probe head {lb}, with a random head {la}");
    assert!(a["probe"].is_null(), "{}", a["probe"]);
    assert_eq!(b["probe"]["kind"], "softmax head init");
    assert!(b["probe"]["train_accuracy"].as_f64().unwrap() > 0.9, "{}", b["probe"]);
    assert_eq!(b["recipe"]["head_init"], "probe");
    assert!(a["recipe"].get("head_init").is_none(), "the default is not written: {}", a["recipe"]);
    // the same seed gives the same run
    let c = json_of(&run_args(f, &["--recipe", probe.to_str().unwrap(), "--no-meta", "--json"], t.path()));
    assert_eq!(b["final_weights_sha256"], c["final_weights_sha256"]);
    // a convnet4's head reads its flattened maps (64 channels of 1x1 at 28 px)
    let o = graft()
        .args(["run", "--json", "--no-meta", "--backbone", "convnet4-mnist", "--data"])
        .arg(&f.data)
        .arg("--recipe")
        .arg(&probe)
        .arg("--runs")
        .arg(t.path())
        .output()
        .unwrap();
    let d = json_of(&o);
    assert_eq!(d["probe"]["feature_dim"], 64, "{}", d["probe"]);
    assert!(d["first_step_loss"].as_f64().unwrap() < 0.8 * (3f64).ln(), "{}", d["first_step_loss"]);
}

/// Class weights: on the fixture's balanced training set `balanced` is the unweighted run bit
/// for bit (every weight is 1); on an imbalanced copy it changes the first step's loss, the
/// weights and the probes' fits, records the balanced test accuracy, and the recipe says it.
#[test]
fn class_weights_act_only_on_an_imbalanced_training_set() {
    let f = fixture();
    let t = tempfile::tempdir().unwrap();
    let mut r = preset_json("finetune-all");
    r["epochs"] = 2.into();
    let none = write_recipe(t.path(), "none.json", &r);
    r["class_weights"] = "balanced".into();
    let balanced = write_recipe(t.path(), "balanced.json", &r);
    let go = |data: &Path, recipe: &Path| {
        let o = graft()
            .args(["run", "--json", "--no-meta", "--data"])
            .arg(data)
            .arg("--backbone")
            .arg(&f.backbone)
            .arg("--recipe")
            .arg(recipe)
            .arg("--runs")
            .arg(t.path())
            .output()
            .unwrap();
        json_of(&o)
    };
    let (a, b) = (go(&f.data, &none), go(&f.data, &balanced));
    assert_eq!(a["final_weights_sha256"], b["final_weights_sha256"], "balanced training set: the same run");
    assert_eq!(a["first_step_loss"], b["first_step_loss"]);
    assert_eq!(b["recipe"]["class_weights"], "balanced");
    assert!(a["recipe"].get("class_weights").is_none(), "the default is not written: {}", a["recipe"]);
    // the test split is balanced: its balanced accuracy is the accuracy
    assert_eq!(a["test_balanced_accuracy"], a["test_accuracy"]);
    // 8, 8 and 2 training images a class
    let data = t.path().join("imbalanced");
    make_folder(&data, &[("train", 8), ("test", 6)], 3, 32);
    for i in 2..8 {
        std::fs::remove_file(data.join(format!("train/class2/img{i:03}.png"))).unwrap();
    }
    let (a, b) = (go(&data, &none), go(&data, &balanced));
    assert_eq!(b["dataset"]["train_per_class"], serde_json::json!([8, 8, 2]));
    assert_ne!(a["final_weights_sha256"], b["final_weights_sha256"]);
    assert_ne!(a["first_step_loss"], b["first_step_loss"]);
    for j in [&a, &b] {
        let bal = j["test_balanced_accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&bal), "{j}");
    }
    // the probes: the SVM's C per image and the softmax probe's loss follow the weights
    for strategy in ["linear-probe", "softmax-probe"] {
        let mut p = preset_json("linear-probe");
        p["strategy"] = strategy.into();
        let pn = write_recipe(t.path(), "pn.json", &p);
        p["class_weights"] = "balanced".into();
        let pb = write_recipe(t.path(), "pb.json", &p);
        let (x, y) = (go(&data, &pn), go(&data, &pb));
        assert_eq!(y["recipe"]["class_weights"], "balanced", "{strategy}");
        if strategy == "linear-probe" {
            assert!(y["probe"]["c_selection"].as_str().unwrap().contains("by balanced accuracy"), "{}", y["probe"]);
            assert!(!x["probe"]["c_selection"].as_str().unwrap().contains("balanced"), "{}", x["probe"]);
        }
        // on the balanced training set the weighted probe is the unweighted one
        let (x2, y2) = (go(&f.data, &pn), go(&f.data, &pb));
        assert_eq!(x2["confusion"], y2["confusion"], "{strategy}");
        assert_eq!(x2["probe"], y2["probe"], "{strategy}");
        let _ = x;
    }
}

#[test]
fn frozen_groups_do_not_move_and_layerwise_rates_apply() {
    let f = fixture();
    let t = tempfile::tempdir().unwrap();
    let mut r = preset_json("finetune-all");
    r["epochs"] = 2.into();
    r["lr"] = 0.01.into();
    r["layer_decay"] = 0.5.into();
    r["groups"]["stem"] = serde_json::json!({"action": "freeze"});
    r["groups"]["stage1"] = serde_json::json!({"action": "freeze"});
    r["groups"]["stage3"] = serde_json::json!({"lr": 0.002});
    let p = write_recipe(t.path(), "r.json", &r);
    let j = json_of(&run_args(f, &["--recipe", p.to_str().unwrap(), "--json", "--no-meta"], t.path()));
    let g = j["groups"].as_array().unwrap();
    let by = |n: &str| g.iter().find(|x| x["name"] == n).unwrap().clone();
    assert_eq!(by("stem")["weight_change"].as_f64().unwrap(), 0.0);
    assert_eq!(by("stage1")["weight_change"].as_f64().unwrap(), 0.0);
    assert_eq!(by("stem")["action"], "freeze");
    assert!(by("stage2")["weight_change"].as_f64().unwrap() > 0.0);
    assert!((by("stage2")["lr"].as_f64().unwrap() - 0.0025).abs() < 1e-12);
    assert!((by("stage3")["lr"].as_f64().unwrap() - 0.002).abs() < 1e-12);
    assert!((by("head")["lr"].as_f64().unwrap() - 0.01).abs() < 1e-12);
}

#[test]
fn same_seed_same_result_and_weights() {
    let f = fixture();
    let t = tempfile::tempdir().unwrap();
    let go =
        |seed: &str| json_of(&run_args(f, &["--preset", "finetune-all", "--epochs", "2", "--seed", seed, "--json", "--no-meta"], t.path()));
    let (a, b, c) = (go("7"), go("7"), go("8"));
    assert_eq!(a["test_accuracy"], b["test_accuracy"]);
    assert_eq!(a["final_weights_sha256"], b["final_weights_sha256"]);
    assert_eq!(a["groups"], b["groups"]);
    assert_ne!(a["final_weights_sha256"], c["final_weights_sha256"]);
    assert_ne!(a["run_id"], b["run_id"]);
}

#[test]
fn linear_softmax_and_centroid_probes() {
    let f = fixture();
    let t = tempfile::tempdir().unwrap();
    let j = json_of(&run_args(f, &["--preset", "linear-probe", "--json", "--no-meta"], t.path()));
    assert_eq!(j["probe"]["kind"], "linear-svm");
    assert_eq!(j["probe"]["group"], "stage3");
    assert!(j["groups"].as_array().unwrap().iter().all(|g| g["action"] == "freeze" && g["weight_change"] == 0.0));
    // learnable synthetic classes: the probe on the tiny backbone is far above chance (1/3)
    assert!(j["test_accuracy"].as_f64().unwrap() > 0.6, "{}", j["test_accuracy"]);
    let mut r = preset_json("linear-probe");
    r["strategy"] = "softmax-probe".into();
    r["probe"]["group"] = "stage2".into();
    let p = write_recipe(t.path(), "s.json", &r);
    let j = json_of(&run_args(f, &["--recipe", p.to_str().unwrap(), "--json", "--no-meta"], t.path()));
    assert_eq!(j["probe"]["kind"], "softmax");
    assert_eq!(j["probe"]["group"], "stage2");
    assert_eq!(j["probe"]["feature_dim"], 32);
    // the nearest-centroid probe on the same features: no C to choose, and far above chance
    r["strategy"] = "centroid-probe".into();
    let p = write_recipe(t.path(), "c.json", &r);
    let j = json_of(&run_args(f, &["--recipe", p.to_str().unwrap(), "--json", "--no-meta"], t.path()));
    assert_eq!(j["probe"]["kind"], "centroid");
    assert_eq!(j["probe"]["group"], "stage2");
    assert!(j["probe"]["c"].is_null(), "{}", j["probe"]["c"]);
    assert!(j["test_accuracy"].as_f64().unwrap() > 0.5, "{}", j["test_accuracy"]);
}

fn expect_exit(out: &std::process::Output, code: i32, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert!(err.contains(needle), "expected `{needle}` in: {err}");
}

#[test]
fn bad_recipes_exit_2_naming_the_field() {
    let f = fixture();
    let t = tempfile::tempdir().unwrap();
    let cases: Vec<(serde_json::Value, &str)> = vec![
        (
            {
                let mut r = preset_json("finetune-all");
                r["groups"]["stage7"] = serde_json::json!({"action": "freeze"});
                r
            },
            "groups.stage7",
        ),
        (
            {
                let mut r = preset_json("finetune-all");
                r["lr"] = (-0.1).into();
                r
            },
            "`lr`",
        ),
        (
            {
                let mut r = preset_json("finetune-all");
                r["lr"] = 0.0.into();
                r
            },
            "`lr`",
        ),
        (
            {
                let mut r = preset_json("finetune-all");
                r["lerning_rate"] = 0.1.into();
                r
            },
            "lerning_rate",
        ),
        (
            {
                let mut r = preset_json("finetune-all");
                r["schema_version"] = 99.into();
                r
            },
            "schema_version",
        ),
        (
            {
                let mut r = preset_json("linear-probe");
                r["head_init"] = "probe".into();
                r
            },
            "head_init",
        ),
        (
            {
                let mut r = preset_json("finetune-all");
                r["head_init"] = "lp".into();
                r
            },
            "head_init",
        ),
    ];
    for (i, (r, needle)) in cases.into_iter().enumerate() {
        let p = write_recipe(t.path(), &format!("bad{i}.json"), &r);
        expect_exit(&run_args(f, &["--recipe", p.to_str().unwrap(), "--no-meta"], t.path()), 2, needle);
    }
    expect_exit(&run_args(f, &["--preset", "nope", "--no-meta"], t.path()), 2, "unknown preset");
}

#[test]
fn bad_data_and_backbone_exit_2() {
    let f = fixture();
    let t = tempfile::tempdir().unwrap();
    let out = graft()
        .args(["run", "--preset", "linear-probe", "--no-meta", "--data"])
        .arg(t.path().join("missing"))
        .arg("--backbone")
        .arg(&f.backbone)
        .output()
        .unwrap();
    expect_exit(&out, 2, "does not exist");
    let one = t.path().join("one");
    make_folder(&one, &[("", 4)], 1, 32);
    let out = graft()
        .args(["run", "--preset", "linear-probe", "--no-meta", "--data"])
        .arg(&one)
        .arg("--backbone")
        .arg(&f.backbone)
        .output()
        .unwrap();
    expect_exit(&out, 2, "only one class");
    // corrupt image: named, then skipped with --skip-bad
    let bad = t.path().join("bad");
    make_folder(&bad, &[("train", 4), ("test", 2)], 2, 32);
    std::fs::write(bad.join("train/class0/zz.jpg"), b"garbage").unwrap();
    let base = |extra: &[&str]| {
        graft()
            .args(["run", "--preset", "linear-probe", "--no-meta", "--json", "--runs"])
            .arg(t.path())
            .arg("--data")
            .arg(&bad)
            .arg("--backbone")
            .arg(&f.backbone)
            .args(extra)
            .output()
            .unwrap()
    };
    expect_exit(&base(&[]), 2, "zz.jpg");
    let j = json_of(&base(&["--skip-bad"]));
    assert_eq!(j["dataset"]["skipped"].as_array().unwrap().len(), 1);
    assert_eq!(j["n_train"], 8);
    // a backbone file that does not match its card
    let copy = t.path().join("tampered.safetensors");
    std::fs::copy(&f.backbone, &copy).unwrap();
    std::fs::copy(f.backbone.with_extension("json"), copy.with_extension("json")).unwrap();
    let mut bytes = std::fs::read(&copy).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 0xff;
    std::fs::write(&copy, bytes).unwrap();
    let out = graft()
        .args(["run", "--preset", "linear-probe", "--no-meta", "--data"])
        .arg(&f.data)
        .arg("--backbone")
        .arg(&copy)
        .output()
        .unwrap();
    expect_exit(&out, 2, "does not match its card");
    let out = graft()
        .args(["run", "--preset", "linear-probe", "--no-meta", "--data"])
        .arg(&f.data)
        .args(["--backbone", "no-such-model"])
        .output()
        .unwrap();
    expect_exit(&out, 2, "unknown model");
}

#[test]
fn diverging_run_exits_3_and_is_recorded() {
    let f = fixture();
    let t = tempfile::tempdir().unwrap();
    let meta = t.path().join("meta");
    let mut r = preset_json("finetune-all");
    r["lr"] = 1e38.into();
    r["epochs"] = 3.into();
    r["optimizer"] = serde_json::json!({"kind": "sgd", "momentum": 0.0, "weight_decay": 0.0});
    r["schedule"] = serde_json::json!({"kind": "constant", "warmup_epochs": 0.0});
    let p = write_recipe(t.path(), "div.json", &r);
    let out = run_args(f, &["--recipe", p.to_str().unwrap(), "--json", "--meta", meta.to_str().unwrap()], t.path());
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["status"], "diverged");
    let df = graft::metadataset::read_all(&meta).unwrap();
    assert_eq!(df.column("status").unwrap().str().unwrap().get(0), Some("diverged"));
    let _ = &f.root;
}

#[test]
fn pretraining_resumes_to_the_same_weights() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    make_folder(&src, &[("train", 10), ("test", 3)], 3, 32);
    let pre = |out: &Path, extra: &[&str]| {
        let o = graft()
            .args(["pretrain", "--arch", "resnet8", "--epochs", "3", "--batch-size", "8", "--seed", "4", "--data"])
            .arg(&src)
            .arg("--out")
            .arg(out)
            .args(extra)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stderr).to_string()
    };
    let card =
        |out: &Path| -> serde_json::Value { serde_json::from_str(&std::fs::read_to_string(out.with_extension("json")).unwrap()).unwrap() };
    let straight = t.path().join("a.safetensors");
    pre(&straight, &[]);
    let resumed = t.path().join("b.safetensors");
    let msg = pre(&resumed, &["--stop-after-epoch", "1"]);
    assert!(msg.contains("stopped after epoch 1"), "{msg}");
    assert!(!resumed.exists());
    assert!(PathBuf::from(format!("{}.ckpt", resumed.display())).join("state.json").is_file());
    pre(&resumed, &["--resume"]);
    assert_eq!(card(&straight)["sha256"], card(&resumed)["sha256"], "resumed pretraining differs from an uninterrupted one");
    assert_eq!(card(&resumed)["epochs"], 3);
    assert!(!PathBuf::from(format!("{}.ckpt", resumed.display())).exists(), "checkpoint folder removed after success");
}

#[test]
fn validation_split_and_early_stopping() {
    let f = fixture();
    let t = tempfile::tempdir().unwrap();
    let mut r = preset_json("finetune-all");
    r["epochs"] = 12.into();
    r["val_fraction"] = 0.25.into();
    r["early_stopping"] = serde_json::json!({"patience": 2});
    r["label_smoothing"] = 0.1.into();
    let p = write_recipe(t.path(), "es.json", &r);
    let j = json_of(&run_args(f, &["--recipe", p.to_str().unwrap(), "--json", "--no-meta"], t.path()));
    assert_eq!(j["n_train"], 18, "a quarter of each class held out for validation");
    assert_eq!(j["dataset"]["n_val"], 6);
    let va = j["val_accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&va));
    let best = j["best_epoch"].as_u64().unwrap() as usize;
    let run = j["epochs_run"].as_u64().unwrap() as usize;
    assert!(best >= 1 && best <= run && run <= 12);
    if run < 12 {
        assert_eq!(run, best + 2, "stopped after `patience` epochs without improvement");
    }
    let csv = std::fs::read_to_string(PathBuf::from(j["run_dir"].as_str().unwrap()).join("metrics.csv")).unwrap();
    assert!(csv.lines().nth(1).unwrap().split(',').nth(5).unwrap().parse::<f64>().is_ok(), "val accuracy logged per epoch");
}

/// `pretrain --out` into a folder that does not exist yet creates it; a path that cannot be a
/// folder is refused before any training (exit 2, naming --out).
#[test]
fn pretrain_out_folder_is_made_or_refused_before_training() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    make_folder(&src, &[("train", 6), ("test", 2)], 2, 32);
    let out = t.path().join("new").join("deeper").join("ae.safetensors");
    let o = graft()
        .args(["pretrain", "--arch", "resnet8", "--method", "autoencoder", "--epochs", "1", "--batch-size", "4", "--data"])
        .arg(&src)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.is_file() && out.with_extension("json").is_file());
    let blocker = t.path().join("a-file");
    std::fs::write(&blocker, "x").unwrap();
    let o = graft()
        .args(["pretrain", "--arch", "resnet8", "--method", "simclr", "--epochs", "50", "--data"])
        .arg(&src)
        .arg("--out")
        .arg(blocker.join("x.safetensors"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--out") && err.contains("cannot create its folder"), "{err}");
    assert!(!err.contains("epoch"), "refused before training: {err}");
}
