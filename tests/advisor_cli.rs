//! The advisor through the binary: `meta fit` on a real (tiny) sweep, `recommend`, `auto` with
//! a budget (runs logged back), `meta eval`, the shipped meta-learner, and every bad input.
mod common;
use common::{graft, json_of, make_folder};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    meta: PathBuf,
    model: PathBuf,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let plan = common::tiny_plan(&root, "adv", 3);
        let meta = root.join("meta");
        let o = graft()
            .args(["--threads", "1", "sweep", "--plan"])
            .arg(&plan)
            .arg("--out")
            .arg(&meta)
            .arg("--runs")
            .arg(root.join("runs"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let model = root.join("ml.json");
        let o = graft().args(["meta", "fit", "--json", "--gp-iters", "15", "--meta"]).arg(&meta).arg("--out").arg(&model).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v = json_of(&o);
        assert_eq!(v["n_runs"], 36);
        assert!(v["cv"]["gp_rmse"].as_f64().unwrap().is_finite());
        assert!(["gp", "knn"].contains(&v["learner"].as_str().unwrap()));
        Fixture { _dir: dir, root, meta, model }
    })
}

/// `graft auto --json --budget 1` on `data` with the fixture's model, logging into `dir`'s
/// `meta/` and `runs/`.
fn auto_once(f: &Fixture, data: &Path, dir: &Path) -> std::process::Output {
    graft()
        .args(["auto", "--json", "--budget", "1", "--data"])
        .arg(data)
        .arg("--model")
        .arg(&f.model)
        .arg("--meta")
        .arg(dir.join("meta"))
        .arg("--runs")
        .arg(dir.join("runs"))
        .output()
        .unwrap()
}

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/cifar3")
}

/// On the photos example the shipped GP's mean for the best candidates is above 1 (1.02 in
/// session 17); the stated accuracy is the mean clamped to [0, 1], inside its interval.
#[test]
fn shipped_advisor_states_accuracies_in_the_unit_interval() {
    let photos = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/photos");
    let o = graft().args(["recommend", "--json", "--data"]).arg(&photos).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = json_of(&o);
    check_recommendation(&v);
    for a in v["alternatives"].as_array().unwrap() {
        let p = a["predicted_accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p), "alternative predicted {p}: {a}");
    }
}

/// The probability a rationale line states ("... with probability 0.83 ...").
fn stated_probability(line: &str) -> f64 {
    let rest = &line[line.find("with probability ").expect("a probability") + "with probability ".len()..];
    rest.split([' ', ')']).next().unwrap().parse().unwrap()
}

/// The standard ImageNet recipe is the default the pick must beat with probability >= 0.90: the
/// rationale says which way it went, and the recommended recipe agrees with what it says.
fn check_standard_default(v: &serde_json::Value) {
    let lines: Vec<&str> = v["rationale"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    let kept = lines.iter().find(|l| l.starts_with("Kept the standard ImageNet recipe"));
    let chose = lines.iter().find(|l| l.starts_with("Chose ") && l.contains("over the standard ImageNet recipe"));
    let r = &v["recipe"];
    let is_standard = v["backbone"] == "efficientnet-lite0-imagenet"
        && v["input_size"] == 224
        && r["strategy"] == "finetune"
        && r["epochs"] == 30
        && (r["lr"].as_f64().unwrap() - 3e-4).abs() < 1e-12;
    // the same decision in the JSON, unrounded
    let d = &v["standard_default"];
    let (p, needed) = (d["p_challenger_beats_it"].as_f64().unwrap(), d["needed"].as_f64().unwrap());
    assert_eq!(d["kept"].as_bool().unwrap(), p < needed || d["challenger"] == d["config"], "{d}");
    assert_eq!(d["kept"].as_bool().unwrap(), is_standard, "{d} but recommends {r}");
    // the shipped model (fitted since session 27) says what such a P meant on held-out tasks,
    // whenever a pick other than the recipe was weighed against it
    if d["challenger"] != d["config"] {
        assert!(d["held_out"]["decisions"].is_u64(), "{d}");
    }
    match (kept, chose) {
        (Some(l), None) => {
            assert!(stated_probability(l) <= needed + 0.005, "{l}");
            assert!(is_standard, "kept the standard recipe but recommends {r}");
        }
        (None, Some(l)) => {
            assert!(stated_probability(l) >= needed - 0.005, "{l}");
            assert!(!is_standard, "{l}");
        }
        other => panic!("no single line on the standard recipe: {other:?} in {lines:?}"),
    }
}

/// On the photos example with 2 and with 8 training images a class, and on CIFAR-3, the
/// rationale, the JSON's `standard_default` and the pick agree whichever way the rule went; a
/// time budget the recipe overruns leaves it out and says so.
#[test]
fn the_standard_recipe_is_the_default_the_pick_must_beat() {
    let dir = tempfile::tempdir().unwrap();
    let photos = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/photos");
    let two = dir.path().join("photos-2");
    for split in ["train", "test"] {
        for class in std::fs::read_dir(photos.join(split)).unwrap() {
            let class = class.unwrap().path();
            let to = two.join(split).join(class.file_name().unwrap());
            std::fs::create_dir_all(&to).unwrap();
            let mut files: Vec<PathBuf> = std::fs::read_dir(&class).unwrap().map(|e| e.unwrap().path()).collect();
            files.sort();
            for f in files.iter().take(if split == "train" { 2 } else { usize::MAX }) {
                std::fs::copy(f, to.join(f.file_name().unwrap())).unwrap();
            }
        }
    }
    for data in [two.as_path(), photos.as_path(), example().as_path()] {
        let o = graft().args(["recommend", "--json", "--data"]).arg(data).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v = json_of(&o);
        check_recommendation(&v);
        check_standard_default(&v);
        // Session 25 also asserted that on the 2-a-class cut the recipe is kept. The model refitted
        // in session 26 left it there (centroid-mid on Lite2 at 160 px, P 0.94) and lost (0.370
        // against 0.630 on the 27 test photos); session 27's keeps it (its threshold, chosen on
        // held-out decisions, is 0.99). Which way it goes is the model's fit, not a property.
        // What holds for every model is checked above: the stated P, the threshold and the
        // decision agree.
    }
    // a time budget the recipe is predicted to overrun leaves it out, and the rationale says so
    let o = graft().args(["recommend", "--json", "--time-budget", "20", "--data"]).arg(&two).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = json_of(&o);
    assert!(v.get("standard_default").is_none(), "{}", v["standard_default"]);
    let lines: Vec<&str> = v["rationale"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    assert!(lines.iter().any(|l| l.starts_with("The standard ImageNet recipe") && l.contains("over --time-budget 20")), "{lines:?}");
    assert!(v["predicted_seconds"].as_f64().is_none_or(|s| s <= 20.0), "{}", v["predicted_seconds"]);
}

/// By default the pick and its alternatives are of kinds (strategy, probe depth, frozen and
/// re-initialised groups, pretraining) logged on their backbone, and the rationale says how many
/// of the search grid's candidates were left out for never having run; `--allow-unlogged` weighs
/// them too.
#[test]
fn recipes_of_a_kind_never_logged_are_left_out_unless_asked_for() {
    let logged = |v: &serde_json::Value| -> Vec<u64> {
        std::iter::once(&v["logged_tasks"])
            .chain(v["alternatives"].as_array().unwrap().iter().map(|a| &a["logged_tasks"]))
            .map(|n| n.as_u64().expect("logged_tasks"))
            .collect()
    };
    let left_out = |v: &serde_json::Value| v["rationale"].as_array().unwrap().iter().any(|l| l.as_str().unwrap().starts_with("Left out "));
    let o = graft().args(["recommend", "--json", "--top", "60", "--data"]).arg(example()).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = json_of(&o);
    let n = logged(&v);
    assert_eq!(n.len(), 61);
    assert!(n.iter().all(|&k| k > 0), "{n:?}");
    assert!(left_out(&v), "{}", v["rationale"]);
    let o = graft().args(["recommend", "--json", "--top", "60", "--allow-unlogged", "--data"]).arg(example()).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = json_of(&o);
    assert!(logged(&v).contains(&0), "{:?}", logged(&v));
    assert!(!left_out(&v), "{}", v["rationale"]);
}

/// `meta score` states a fitted model's errors on logged runs; whether a run's recipe kind was
/// logged comes from the model's portfolio, and the predictions do not depend on it.
#[test]
fn meta_score_states_errors_by_whether_the_kind_was_logged() {
    let f = fixture();
    let score = |model: &Path| {
        let o = graft().args(["meta", "score", "--json", "--meta"]).arg(&f.meta).arg("--model").arg(model).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        json_of(&o)
    };
    let v = score(&f.model);
    assert_eq!(v["runs"], 36);
    let groups: Vec<&str> = v["groups"].as_array().unwrap().iter().map(|g| g[0].as_str().unwrap()).collect();
    assert_eq!(groups, ["all", "kind logged on its backbone", "configuration seen", "task seen"]);
    let all = &v["groups"][0][1];
    assert_eq!(all["runs"], 36);
    let (rmse, cov, bias) = (all["rmse"].as_f64().unwrap(), all["coverage80"].as_f64().unwrap(), all["bias"].as_f64().unwrap());
    assert!(rmse > 0.0 && rmse < 1.0 && (0.0..=1.0).contains(&cov) && bias.abs() <= rmse, "{all}");
    let configs = v["configs"].as_array().unwrap();
    assert_eq!(configs.iter().map(|c| c["runs"].as_u64().unwrap()).sum::<u64>(), 36);
    // a model whose portfolio forgets one configuration: its runs become a kind never logged
    // (unless another configuration shares the kind), with the same predictions
    let mut m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&f.model).unwrap()).unwrap();
    let gone = m["portfolio"].as_array_mut().unwrap().remove(0);
    let key = format!("{}::{}", gone["backbone"].as_str().unwrap(), gone["r_name"].as_str().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let forgot = dir.path().join("forgot.json");
    std::fs::write(&forgot, m.to_string()).unwrap();
    let w = score(&forgot);
    let row = |v: &serde_json::Value| v["configs"].as_array().unwrap().iter().find(|c| c["config"] == key.as_str()).unwrap().clone();
    let (before, after) = (row(&v), row(&w));
    assert_eq!(before["config_seen"], true);
    assert_eq!(after["config_seen"], false);
    for k in ["runs", "mean_predicted", "mean_actual", "rmse", "coverage80"] {
        assert_eq!(before[k], after[k], "{k}");
    }
    let names: Vec<&str> = w["groups"].as_array().unwrap().iter().map(|g| g[0].as_str().unwrap()).collect();
    assert!(names.contains(&"configuration new"), "{names:?}");
    if after["kind_logged_tasks"] == 0 {
        assert!(names.contains(&"kind never logged on its backbone"), "{names:?}");
    }
    // the Markdown report, and a folder that is not there
    let o = graft().args(["meta", "score", "--meta"]).arg(&f.meta).arg("--model").arg(&f.model).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("| all | 36 |"), "{}", String::from_utf8_lossy(&o.stdout));
    let o = graft().args(["meta", "score", "--meta"]).arg(dir.path().join("nope")).arg("--model").arg(&f.model).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--meta"), "{}", String::from_utf8_lossy(&o.stderr));
}

fn check_recommendation(v: &serde_json::Value) {
    assert!(v["logged_tasks"].as_u64().is_some_and(|n| n > 0), "{}", v["logged_tasks"]);
    let p = v["predicted_accuracy"].as_f64().unwrap();
    let iv = v["interval"].as_array().unwrap();
    let (lo, hi) = (iv[0].as_f64().unwrap(), iv[1].as_f64().unwrap());
    assert!(lo <= p && p <= hi && hi <= 1.0 && lo >= 0.0, "{p} {lo} {hi}");
    assert!(!v["alternatives"].as_array().unwrap().is_empty());
    let lines: Vec<&str> = v["rationale"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    assert!(lines.len() >= 3);
    // every figure stated is a number (a kind with no candidate says so, not "NaN")
    assert!(lines.iter().all(|l| !l.contains("NaN") && !l.contains(" inf")), "{lines:?}");
    // what the prediction rests on: the task's own cross-validated evidence beside the GP's
    let basis = lines.iter().find(|l| l.starts_with("Basis:")).expect("a basis line");
    assert!(basis.contains("predicted") && basis.contains("past tasks"), "{basis}");
    // with several backbones, why this one: its predicted recipe, LogME, the probe's CV accuracy
    // and the domain distance, per backbone
    if v["features"].as_object().unwrap().len() > 1 {
        let b = lines.iter().find(|l| l.starts_with("Backbone:")).expect("a backbone line");
        assert!(b.contains("LogME") && b.contains("cross-validated nearest-centroid accuracy") && b.contains("domain distance"), "{b}");
    }
    assert!(v["features"].as_object().unwrap().values().next().unwrap().get("logme_last").is_some());
    assert!(v["recipe"]["strategy"].is_string());
    // the backbone is a model name; the input size is stated, and in the recipe when it is not
    // the card's, so the recipe runs as recommended
    let name = v["backbone"].as_str().unwrap();
    assert!(!name.contains('@'), "{name}");
    let size = v["input_size"].as_u64().unwrap();
    assert!((16..=1024).contains(&size));
    let card = graft::backbones::card::resolve(&format!("{}/models/{name}.safetensors", env!("CARGO_MANIFEST_DIR"))).unwrap();
    match v["recipe"].get("input_size") {
        Some(s) => assert_eq!(s.as_u64().unwrap(), size),
        None => assert_eq!(card.card.input.height as u64, size),
    }
    for a in v["alternatives"].as_array().unwrap() {
        assert!(a["input_size"].as_u64().unwrap() >= 16 && !a["backbone"].as_str().unwrap().contains('@'));
    }
    // the forecast with twice the labels: the task's median shots doubled, stated as the accuracy
    // now is (inside its interval), its gain the difference of the two
    let forecast = v.get("more_labels").is_some();
    for e in std::iter::once(v).chain(v["alternatives"].as_array().unwrap()) {
        let m = &e["more_labels"];
        assert_eq!(m.is_object(), forecast, "a forecast with twice the labels for some listed recipes only: {e}");
        if !forecast {
            continue;
        }
        let shots = m["shots"].as_f64().unwrap();
        assert!(shots >= 1.0 && (m["forecast_shots"].as_f64().unwrap() - 2.0 * shots).abs() < 1e-9, "{m}");
        let (p2, lo2, hi2) =
            (m["predicted_accuracy"].as_f64().unwrap(), m["interval"][0].as_f64().unwrap(), m["interval"][1].as_f64().unwrap());
        assert!((0.0..=1.0).contains(&lo2) && lo2 <= p2 && p2 <= hi2 && hi2 <= 1.0, "{m}");
        assert!((m["gain"].as_f64().unwrap() - (p2 - e["predicted_accuracy"].as_f64().unwrap())).abs() < 1e-9, "{m}");
    }
    if forecast {
        let shots = v["more_labels"]["shots"].as_f64().unwrap();
        let logged = v["features"].as_object().unwrap().values().map(|f| f["log_shots"].as_f64().unwrap().exp());
        assert!(logged.into_iter().all(|s| (s - shots).abs() < 1e-6 * shots), "shots {shots} is not the task's: {}", v["features"]);
        assert!(lines.iter().any(|l| l.starts_with("More labels (experimental forecast)")), "{lines:?}");
    }
    // a decision's stated P comes with what such a P meant on held-out tasks: the band it falls
    // in, counted consistently, and said in the rationale
    for key in ["anchor_decision", "standard_default"] {
        let Some(b) = v.get(key).and_then(|d| d.get("held_out")).filter(|b| !b.is_null()) else { continue };
        let p = v[key]["p_challenger_beats_it"].as_f64().unwrap();
        let (lo, hi) = (b["lo"].as_f64().unwrap(), b["hi"].as_f64().unwrap());
        assert!(lo <= p && (p < hi || (hi == 1.0 && p <= 1.0)), "{key}: P {p} outside its band [{lo}, {hi})");
        let n = b["decisions"].as_u64().unwrap();
        assert!(b["challenger_higher"].as_u64().unwrap() + b["ties"].as_u64().unwrap() <= n, "{b}");
        let band = format!("[{lo:.2}, {hi:.2})");
        assert!(
            lines.iter().any(|l| l.contains(&band) && l.contains("cross-validation")),
            "{key}: no rationale line states {band}: {lines:?}"
        );
    }
}

/// `meta fit` records the scale its GPs model accuracy on (arcsine by default); a model file
/// written before the field existed has none and is read as the raw accuracy, its
/// recommendations still stated inside [0, 1] with the accuracy inside its interval.
#[test]
fn the_warp_is_recorded_and_a_file_without_one_reads_as_the_raw_accuracy() {
    let f = fixture();
    let mut m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&f.model).unwrap()).unwrap();
    assert_eq!(m["warp"], "arcsine");
    m.as_object_mut().unwrap().remove("warp");
    let old = f.root.join("ml-without-warp.json");
    std::fs::write(&old, serde_json::to_string(&m).unwrap()).unwrap();
    let loaded = graft::metalearner::MetaModel::load(&old).unwrap();
    assert_eq!(loaded.warp, graft::metalearner::Warp::Identity);
    for model in [&f.model, &old] {
        let o = graft().args(["recommend", "--json", "--data"]).arg(example()).arg("--model").arg(model).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        check_recommendation(&json_of(&o));
    }
}

#[test]
fn recommend_gives_a_runnable_recipe_with_interval_and_reasons() {
    let f = fixture();
    let o = graft().args(["recommend", "--json", "--data"]).arg(example()).arg("--model").arg(&f.model).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = json_of(&o);
    check_recommendation(&v);
    // the recipe is a document `graft run --recipe` accepts as is
    let r = f.root.join("rec.json");
    std::fs::write(&r, serde_json::to_string(&v["recipe"]).unwrap()).unwrap();
    let o = graft()
        .args(["run", "--json", "--no-meta", "--data"])
        .arg(example())
        .arg("--recipe")
        .arg(&r)
        .arg("--backbone")
        .arg(v["backbone"].as_str().unwrap())
        .arg("--runs")
        .arg(f.root.join("runs-rec"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// `recommend` computes the meta-features on the images it can decode; it says how many it
/// could not, and which, instead of leaving them out silently.
#[test]
fn recommend_names_the_training_images_it_could_not_decode() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    make_folder(&data, &[("train", 8), ("test", 3)], 3, 32);
    let bad = data.join("train/class1/broken.png");
    std::fs::write(&bad, b"not a png at all").unwrap();
    let o = graft().args(["recommend", "--json", "--data"]).arg(&data).arg("--model").arg(&f.model).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = json_of(&o);
    let bad_list = v["unreadable_training_images"].as_array().unwrap();
    assert_eq!(bad_list.len(), 1, "{bad_list:?}");
    assert!(bad_list[0].as_str().unwrap().contains("broken.png"), "{bad_list:?}");
    let line = v["rationale"].as_array().unwrap().iter().filter_map(|l| l.as_str()).find(|l| l.contains("could not be decoded"));
    let line = line.unwrap_or_else(|| panic!("no rationale line on the unreadable image: {}", v["rationale"]));
    assert!(line.starts_with("1 of the 25 training images") && line.contains("broken.png") && line.contains("--skip-bad"), "{line}");
    // auto refuses them before its first run, naming the file and --skip-bad
    let o = auto_once(f, &data, dir.path());
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("broken.png") && e.contains("--skip-bad"), "{e}");
    assert!(!dir.path().join("runs").exists() && !dir.path().join("meta").exists(), "auto ran before refusing");
    // without one, the list is empty and the rationale silent on it
    let o = graft().args(["recommend", "--json", "--data"]).arg(example()).arg("--model").arg(&f.model).output().unwrap();
    let v = json_of(&o);
    assert_eq!(v["unreadable_training_images"], serde_json::json!([]));
    assert!(!v["rationale"].to_string().contains("could not be decoded"));
}

/// On a training set whose classes differ in size by 1.5x or more, every recipe `recommend`
/// gives weights classes the same (`class_weights: balanced`), `auto` runs it so, and the
/// rationale says why and how to turn it off; `--class-weights none` turns it off; on a
/// balanced or nearly balanced set nothing changes.
#[test]
fn an_imbalanced_training_set_gets_class_weights() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    make_folder(&data, &[("train", 8), ("test", 3)], 3, 32);
    for i in 3..8 {
        std::fs::remove_file(data.join(format!("train/class1/img{i:03}.png"))).unwrap();
    }
    let rec = |extra: &[&str]| {
        let o = graft().args(["recommend", "--json", "--data"]).arg(&data).arg("--model").arg(&f.model).args(extra).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        json_of(&o)
    };
    let line = |v: &serde_json::Value| {
        v["rationale"].as_array().unwrap().iter().filter_map(|l| l.as_str()).find(|l| l.starts_with("Classes:")).map(str::to_string)
    };
    let v = rec(&[]);
    assert_eq!(v["recipe"]["class_weights"], "balanced", "{}", v["recipe"]);
    assert!(v["alternatives"].as_array().unwrap().iter().all(|a| a["recipe"]["class_weights"] == "balanced"));
    let l = line(&v).unwrap_or_else(|| panic!("no Classes: line in {}", v["rationale"]));
    assert!(l.contains("3 to 8 training images a class") && l.contains("--class-weights none"), "{l}");
    // and what the held-out evaluation says about accuracies stated for such a task
    assert!(l.contains("can be far too high"), "{l}");
    // the meta-learner reads the imbalance as a task feature, under every backbone
    let feats = v["features"].as_object().unwrap();
    assert!(!feats.is_empty());
    for (b, f) in feats {
        let li = f["log_imbalance"].as_f64().unwrap_or_else(|| panic!("{b}: no log_imbalance in {f}"));
        assert!((li - (8f64 / 3.0).ln()).abs() < 1e-12, "{b}: {li}");
    }
    let v = rec(&["--class-weights", "none"]);
    assert!(v["recipe"].get("class_weights").is_none(), "{}", v["recipe"]);
    assert!(line(&v).is_some_and(|l| l.contains("--class-weights balanced")), "{}", v["rationale"]);
    // auto runs the weighted recipe and records its balanced test accuracy
    let o = auto_once(f, &data, dir.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = json_of(&o);
    let run = &v["runs"][0];
    assert_eq!(run["recipe"]["class_weights"], "balanced", "{run}");
    assert_eq!(run["dataset"]["train_per_class"], serde_json::json!([8, 3, 8]));
    assert!(run["test_balanced_accuracy"].as_f64().is_some_and(|b| (0.0..=1.0).contains(&b)), "{run}");
    // with a budget, each weighted run is judged on its validation split's balanced accuracy
    // (mean per-class recall), and the winner refit is the run that scored highest on it
    let o = graft()
        .args(["auto", "--json", "--budget", "3", "--data"])
        .arg(&data)
        .arg("--model")
        .arg(&f.model)
        .arg("--meta")
        .arg(dir.path().join("meta-budget"))
        .arg("--runs")
        .arg(dir.path().join("runs-budget"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(err.contains("validation balanced accuracy"), "{err}");
    let v = json_of(&o);
    let runs = v["runs"].as_array().unwrap();
    let judged: Vec<&serde_json::Value> = runs.iter().filter(|r| r["val_balanced_accuracy"].is_number()).collect();
    assert_eq!(judged.len(), 3, "every budgeted run has a validation split: {v}");
    for r in &judged {
        let per: Vec<u64> = serde_json::from_value(r["dataset"]["val_per_class"].clone()).unwrap();
        assert_eq!(per.len(), 3);
        assert!(per.iter().all(|&n| n >= 1), "{per:?}");
        assert_eq!(per.iter().sum::<u64>(), r["dataset"]["n_val"].as_u64().unwrap());
    }
    let top = judged.iter().map(|r| r["val_balanced_accuracy"].as_f64().unwrap()).fold(f64::MIN, f64::max);
    let first_top = judged.iter().find(|r| r["val_balanced_accuracy"].as_f64().unwrap() == top).unwrap();
    assert_eq!(v["refit_of"], first_top["run_id"], "{err}");
    // a balanced training set, and a nearly balanced one (7 to 8 images a class): no weights,
    // no line
    std::fs::remove_dir_all(&data).unwrap();
    make_folder(&data, &[("train", 8), ("test", 3)], 3, 32);
    std::fs::remove_file(data.join("train/class1/img007.png")).unwrap();
    for d in [example(), data.clone()] {
        let o = graft().args(["recommend", "--json", "--data"]).arg(&d).arg("--model").arg(&f.model).output().unwrap();
        let v = json_of(&o);
        assert!(v["recipe"].get("class_weights").is_none(), "{}", v["recipe"]);
        assert!(line(&v).is_none(), "{}", v["rationale"]);
    }
    // a bad value names the flag
    let o = graft().args(["recommend", "--class-weights", "inverse", "--data"]).arg(example()).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--class-weights"), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn auto_runs_the_budget_and_logs_every_run_back() {
    let f = fixture();
    let meta = f.root.join("user-meta");
    let rep = f.root.join("auto-report");
    let o = graft()
        .args(["auto", "--json", "--budget", "2", "--data"])
        .arg(example())
        .arg("--model")
        .arg(&f.model)
        .arg("--meta")
        .arg(&meta)
        .arg("--runs")
        .arg(f.root.join("runs-auto"))
        .arg("--report")
        .arg(&rep)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // each run's line states its validation accuracy as a number, not Rust's `None`/`Some(..)`
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("validation accuracy 0.") || err.contains("validation accuracy 1."), "{err}");
    assert!(!err.contains("None") && !err.contains("Some("), "{err}");
    let v = json_of(&o);
    check_recommendation(&v);
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3, "two candidates, then the winner refit");
    // winner chosen on validation (a 20% split), never on test
    assert!(runs[..2].iter().all(|r| r["val_accuracy"].is_number()));
    let chosen = v["refit_of"].as_str().unwrap();
    assert!(runs[..2].iter().any(|r| r["run_id"] == chosen));
    // the answer is the refit: the winner's recipe on every training image (no validation split)
    let best = v["best_run_id"].as_str().unwrap();
    assert_eq!(runs[2]["run_id"], best);
    assert!(runs[2]["val_accuracy"].is_null());
    let winner = runs.iter().find(|r| r["run_id"] == chosen).unwrap();
    assert_eq!(runs[2]["recipe"]["name"], winner["recipe"]["name"]);
    assert!(runs[2]["n_train"].as_u64().unwrap() > winner["n_train"].as_u64().unwrap());
    // the answer's classifier is saved, and `graft predict` on the test folder measures what
    // the run measured
    assert_eq!(runs[2]["saved_model"], "classifier.json");
    let o = graft()
        .args(["predict", "--json", "--run", runs[2]["run_dir"].as_str().unwrap(), "--data"])
        .arg(example().join("test"))
        .output()
        .unwrap();
    let p = json_of(&o);
    assert_eq!(p["n_labelled"], runs[2]["n_test"]);
    assert!((p["accuracy"].as_f64().unwrap() - runs[2]["test_accuracy"].as_f64().unwrap()).abs() < 1e-12);
    // every run is in the meta-dataset, with transfer meta-features, and a refit reads them
    let df = graft::metadataset::read_all(&meta).unwrap();
    assert_eq!(df.height(), 3);
    assert_eq!(df.column("mf_logme_last").unwrap().null_count(), 0);
    let o = graft()
        .args(["meta", "fit", "--json", "--gp-iters", "5", "--meta"])
        .arg(&f.meta)
        .arg("--meta")
        .arg(&meta)
        .arg("--out")
        .arg(f.root.join("ml2.json"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(json_of(&o)["n_runs"], 39);
    let html = std::fs::read_to_string(rep.join("report.html")).unwrap();
    for id in [
        "id=\"recommendation\"",
        "id=\"alternatives\"",
        "id=\"nearest\"",
        "id=\"winner\"",
        "id=\"predict\"",
        "id=\"curves\"",
        "id=\"confusion\"",
    ] {
        assert!(html.contains(id), "report lacks {id}");
    }
    assert!(html.contains(&format!("{:.3}", v["predicted_accuracy"].as_f64().unwrap())));
}

/// `graft meta eval` on the fixture's sweep at budgets 1..=3, into `out`.
fn meta_eval(f: &Fixture, out: &std::path::Path, extra: &[&str]) -> std::process::Output {
    graft()
        .args(["meta", "eval", "--budget", "3", "--gp-iters", "10"])
        .args(extra)
        .arg("--meta")
        .arg(&f.meta)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

#[test]
fn meta_eval_writes_tables_and_plots() {
    let f = fixture();
    let out = f.root.join("eval");
    let o = meta_eval(f, &out, &["--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = json_of(&o);
    assert_eq!(v["families"].as_array().unwrap().len(), 2);
    assert_eq!(v["n_tasks"], 6);
    let r1 = v["mean_regret"]["advisor (LogME-anchored, sequential EI)"].as_array().unwrap();
    assert_eq!(r1.len(), 3);
    // SPEC.md: exactly one method, the shipped advisor, has "shipped" in its name, with a regret
    // at every budget; so has the simulation of auto as it runs
    let shipped: Vec<&String> = v["mean_regret"].as_object().unwrap().keys().filter(|k| k.contains("shipped")).collect();
    assert_eq!(shipped, vec![graft::metalearner::eval::shipped_method()], "{shipped:?}");
    assert_eq!(v["mean_regret"][shipped[0].as_str()].as_array().unwrap().len(), 3);
    assert_eq!(v["mean_regret"][graft::metalearner::eval::auto_simulated_method()].as_array().unwrap().len(), 3);
    // the per-configuration offset variant runs on every task (the fixture's refits have offsets)
    let offset_row = graft::metalearner::eval::METHODS[graft::metalearner::eval::CONFIG_OFFSET];
    assert_eq!(v["mean_regret"][offset_row].as_array().map(Vec::len), Some(3), "{offset_row}");
    // best of K can only get better with K
    let r: Vec<f64> = r1.iter().map(|x| x.as_f64().unwrap()).collect();
    assert!(r[0] >= r[1] - 1e-12 && r[1] >= r[2] - 1e-12 && r.iter().all(|x| (0.0..=1.0).contains(x)), "{r:?}");
    let cov = v["coverage80"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&cov));
    assert_eq!(v["n_calibration_runs"], 36);
    let md = std::fs::read_to_string(out.join("meta-eval.md")).unwrap();
    assert!(md.contains("random search") && md.contains("shots per class"));
    // the predicted accuracy's error, overall and by held-out family
    assert!(
        md.contains("Predicted accuracy against the 36 held-out runs: RMSE") && md.contains("Predicted accuracy by held-out family"),
        "{md}"
    );
    let (sq, runs): (f64, u64) = v["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .fold((0.0, 0), |(s, n), t| (s + t["pred_sq_err"].as_f64().unwrap(), n + t["pred_runs"].as_u64().unwrap()));
    assert_eq!(runs, 36);
    assert!(sq > 0.0 && (sq / 36.0).sqrt() < 1.0);
    assert!(std::fs::read_to_string(out.join("regret.svg")).unwrap().starts_with("<svg"));
    let html = std::fs::read_to_string(out.join("meta-eval.html")).unwrap();
    assert!(html.contains("id=\"regret\"") && html.contains("id=\"calibration\"") && html.matches("<svg").count() == 2);
    assert!(html.contains(&format!("{:.3}", r[0])), "regret@1 of the advisor is in the table");
    // the folds run in parallel; one thread gives the same report
    let o1 = graft()
        .args(["--threads", "1", "meta", "eval", "--json", "--budget", "3", "--gp-iters", "10", "--meta"])
        .arg(&f.meta)
        .arg("--out")
        .arg(f.root.join("eval1"))
        .output()
        .unwrap();
    assert!(o1.status.success(), "{}", String::from_utf8_lossy(&o1.stderr));
    assert_eq!(json_of(&o1), v, "meta eval on 1 thread differs");
}

/// `meta compare` pairs two evaluations task by task: an evaluation against itself differs by
/// exactly 0 everywhere; the raw-accuracy scale against the shipped arcsine one gives a row per
/// budget for the shipped advisor over the same 6 tasks; bad inputs exit 2 naming the file.
#[test]
fn meta_compare_pairs_two_evaluations() {
    let f = fixture();
    let eval = |warp: &str| {
        let out = f.root.join(format!("cmp-{warp}"));
        let o = meta_eval(f, &out, &["--warp", warp]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        out
    };
    let (arcsine, identity) = (eval("arcsine"), eval("identity"));
    let compare = |a: &std::path::Path, b: &std::path::Path, extra: &[&str]| {
        graft().args(["meta", "compare", "--json"]).args(extra).arg(a).arg(b).output().unwrap()
    };
    let o = compare(&arcsine, &arcsine.join("meta-eval.json"), &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows = json_of(&o);
    assert!(rows.as_array().unwrap().len() > 10);
    for r in rows.as_array().unwrap() {
        assert_eq!(r["difference"].as_f64().unwrap(), 0.0, "{r}");
        assert_eq!((r["families_lower"].as_u64(), r["families_higher"].as_u64()), (Some(0), Some(0)));
    }
    let o = compare(&identity, &arcsine, &["--method", "shipped"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows = json_of(&o);
    let budgets: Vec<u64> = rows.as_array().unwrap().iter().map(|r| r["budget"].as_u64().unwrap()).collect();
    assert_eq!(budgets, vec![1, 3]);
    for r in rows.as_array().unwrap() {
        assert_eq!(r["method"], graft::metalearner::eval::shipped_method());
        assert_eq!(r["tasks"], 6);
        let (d, lo, hi) = (r["difference"].as_f64().unwrap(), r["low"].as_f64().unwrap(), r["high"].as_f64().unwrap());
        assert!(lo <= d && d <= hi && (r["new"].as_f64().unwrap() - r["base"].as_f64().unwrap() - d).abs() < 1e-9, "{r}");
    }
    // the markdown table by default
    let o = graft().args(["meta", "compare"]).arg(&identity).arg(&arcsine).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("| method | budget | tasks | base | new |"));
    // bad inputs
    let missing = f.root.join("no-such-eval");
    let o = compare(&missing, &arcsine, &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no-such-eval does not exist"), "{}", String::from_utf8_lossy(&o.stderr));
    let o = compare(&f.model, &arcsine, &[]);
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("ml.json") && e.contains("not a `graft meta eval` result"), "{e}");
    let o = compare(&identity, &arcsine, &["--budget", "0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--budget 0"));
}

#[test]
fn bad_inputs_exit_2_with_a_clear_message() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    // empty meta-dataset
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = graft().args(["meta", "fit", "--meta"]).arg(&empty).arg("--out").arg(dir.path().join("x.json")).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no Parquet files"));
    // one family-grouped CV fold would hold out every family
    for cmd in ["fit", "eval"] {
        let o =
            graft().args(["meta", cmd, "--cv-folds", "1", "--meta"]).arg(&f.meta).arg("--out").arg(dir.path().join("y")).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "meta {cmd}");
        assert!(String::from_utf8_lossy(&o.stderr).contains("--cv-folds must be at least 2"), "{}", String::from_utf8_lossy(&o.stderr));
    }
    // a backfill without its sweep plans
    let o = graft().args(["meta", "backfill", "--meta"]).arg(&f.meta).arg("--plans").arg(dir.path().join("no-plans")).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--plans"), "{}", String::from_utf8_lossy(&o.stderr));
    // a meta-learner of another schema version
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&f.model).unwrap()).unwrap();
    v["schema_version"] = serde_json::json!(99);
    let old = dir.path().join("old.json");
    std::fs::write(&old, v.to_string()).unwrap();
    let o = graft().args(["recommend", "--data"]).arg(example()).arg("--model").arg(&old).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("schema version 99") && e.contains("graft meta fit"), "{e}");
    // a dataset with one class
    let one = dir.path().join("one");
    make_folder(&one, &[("train", 5), ("test", 3)], 1, 32);
    let o = graft().args(["recommend", "--data"]).arg(&one).arg("--model").arg(&f.model).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("one class"), "{}", String::from_utf8_lossy(&o.stderr));
    // an unknown backbone
    let o = graft().args(["recommend", "--backbone", "nope", "--data"]).arg(example()).arg("--model").arg(&f.model).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--backbone nope"));
}

#[test]
fn a_task_far_from_everything_says_so_and_widens_the_interval() {
    let f = fixture();
    // 10 classes of synthetic stripes: nothing like the CIFAR-3 tasks the model saw
    let dir = tempfile::tempdir().unwrap();
    let far = dir.path().join("far");
    make_folder(&far, &[("train", 40), ("test", 4)], 10, 32);
    let o = graft().args(["recommend", "--json", "--data"]).arg(&far).arg("--model").arg(&f.model).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = json_of(&o);
    assert_eq!(v["far_from_past_tasks"], true);
    assert!(v["rationale"].as_array().unwrap().iter().any(|l| l.as_str().unwrap().contains("far from every past task")));
    let near = json_of(&graft().args(["recommend", "--json", "--data"]).arg(example()).arg("--model").arg(&f.model).output().unwrap());
    let w = |v: &serde_json::Value| v["interval"][1].as_f64().unwrap() - v["interval"][0].as_f64().unwrap();
    assert!(w(&v) > w(&near), "far {} vs near {}", w(&v), w(&near));
}

#[test]
fn the_shipped_meta_learner_recommends_for_the_example() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/meta-learner.json");
    assert!(p.is_file(), "models/meta-learner.json is missing: fit it with `graft meta fit`");
    let o = graft().args(["recommend", "--json", "--data"]).arg(example()).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = json_of(&o);
    check_recommendation(&v);
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    assert!(m["n_runs"].as_u64().unwrap() >= 1000 && m["families"].as_array().unwrap().len() >= 6);
}

/// `--forecast-more-labels` forecasts every listed recipe with twice the labels (checked by
/// [`check_recommendation`]); without it there is no forecast. The shots-only forecast that
/// `meta eval` scores moves only the shots: at a factor of 1 it is the prediction for the task as
/// it is, to the bit; at 2 the shipped GP forecasts the standard fine-tune higher.
#[test]
fn the_more_labels_forecast_moves_only_the_shots() {
    use graft::metalearner::features::{RecipeSummary, TASK_FEATURES};
    let model = graft::metalearner::MetaModel::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models/meta-learner.json")).unwrap();
    let o = graft().args(["recommend", "--json", "--forecast-more-labels", "--data"]).arg(example()).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = json_of(&o);
    assert!(v["more_labels"].is_object(), "{v}");
    check_recommendation(&v);
    let task: std::collections::BTreeMap<String, Vec<Option<f64>>> = v["features"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(b, f)| (b.clone(), TASK_FEATURES.iter().map(|n| f[*n].as_f64()).collect()))
        .collect();
    let ft = RecipeSummary {
        strategy: graft::recipe::Strategy::Finetune,
        probe_depth: None,
        n_freeze: 0,
        n_reinit: 0,
        n_groups: 5,
        lr: 3e-4,
        layer_decay: 1.0,
        l2sp: 0.0,
        epochs: 30,
        pretrain: false,
        pretrain_method: None,
        pretrain_epochs: 0,
    };
    let keys: Vec<(String, RecipeSummary, String)> = task.keys().map(|b| (b.clone(), ft.clone(), format!("{b}::test-ft"))).collect();
    let now = model.predict(&task, &keys);
    assert_eq!(model.predict_with_more_shots(&task, &keys, 1.0), now);
    let twice = model.predict_with_more_shots(&task, &keys, 2.0);
    let std = keys.iter().position(|k| k.0 == "efficientnet-lite0-imagenet").expect("the shipped model knows Lite0 at 224 px");
    assert!(twice[std].0 > now[std].0, "Lite0 fine-tune: {:?} at twice the labels vs {:?}", twice[std], now[std]);
}

/// With one training image a class there is no half of the labels to measure: asked for the
/// forecast, `recommend` gives none and says why, and still recommends.
#[test]
fn one_image_a_class_gets_no_forecast_and_says_why() {
    let t = tempfile::tempdir().unwrap();
    make_folder(t.path(), &[("train", 1), ("test", 3)], 3, 32);
    let o = graft().args(["recommend", "--json", "--forecast-more-labels", "--data"]).arg(t.path()).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = json_of(&o);
    assert!(v.get("more_labels").is_none(), "{}", v["more_labels"]);
    let lines: Vec<&str> = v["rationale"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    assert!(lines.iter().any(|l| l.starts_with("More labels: no forecast") && l.contains("fewer than two training images")), "{lines:?}");
}

/// The shipped meta-learner reads and writes back unchanged: the learner, ranker, strategy and
/// status fields are enums in code and the same strings on disk.
#[test]
fn the_shipped_meta_learner_round_trips_unchanged() {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/meta-learner.json");
    let on_disk: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    let m = graft::metalearner::MetaModel::load(&p).unwrap();
    assert_eq!(serde_json::to_value(&m).unwrap(), on_disk);
}

/// `--backbone NAME` leaves the input size to the advisor (every size it knows the backbone
/// at); `--backbone NAME@SIZE` fixes it; the answer names the backbone and states the size.
#[test]
fn a_named_backbone_keeps_the_choice_of_input_size() {
    let known = |size: u64| [96u64, 160, 224].contains(&size);
    let o = graft().args(["recommend", "--json", "--backbone", "efficientnet-lite0-imagenet", "--data"]).arg(example()).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = json_of(&o);
    check_recommendation(&v);
    assert_eq!(v["backbone"], "efficientnet-lite0-imagenet");
    assert!(known(v["input_size"].as_u64().unwrap()), "{}", v["input_size"]);
    let o =
        graft().args(["recommend", "--json", "--backbone", "efficientnet-lite0-imagenet@96", "--data"]).arg(example()).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = json_of(&o);
    assert_eq!((v["backbone"].as_str().unwrap(), v["input_size"].as_u64().unwrap()), ("efficientnet-lite0-imagenet", 96));
    assert_eq!(v["recipe"]["input_size"], 96);
    let o = graft().args(["recommend", "--backbone", "efficientnet-lite0-imagenet@97", "--data"]).arg(example()).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "an unknown size is a usage error");
    assert!(String::from_utf8_lossy(&o.stderr).contains("--backbone efficientnet-lite0-imagenet@97"));
}

/// A checkpoint continued from a backbone the shipped meta-learner knows (`graft pretrain
/// --init`) stands in for its parent: the recipe runs on the checkpoint, the rationale says whose
/// runs the prediction comes from, and a checkpoint without a known parent is a usage error.
#[test]
fn a_continued_checkpoint_stands_in_for_its_parent() {
    let t = tempfile::tempdir().unwrap();
    // one epoch of SimCLR on resnet8 over the example's training images, `init` flags first
    let simclr = |out: &Path, init: &[&str]| {
        let o = graft()
            .args(["--threads", "1", "pretrain", "--arch", "resnet8", "--method", "simclr", "--epochs", "1", "--batch-size", "8"])
            .args(init)
            .arg("--data")
            .arg(example().join("train"))
            .arg("--out")
            .arg(out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    let out = t.path().join("r8-simclr.safetensors");
    simclr(&out, &["--init", "resnet8-cifar10"]);
    let o = graft().args(["recommend", "--json", "--backbone"]).arg(&out).arg("--data").arg(example()).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = json_of(&o);
    let (p, iv) = (v["predicted_accuracy"].as_f64().unwrap(), v["interval"].as_array().unwrap());
    assert!(iv[0].as_f64().unwrap() <= p && p <= iv[1].as_f64().unwrap(), "{v}");
    let path = out.display().to_string();
    assert_eq!(v["backbone"].as_str(), Some(path.as_str()));
    assert_eq!(v["recipe"]["backbone"].as_str(), Some(path.as_str()));
    assert_eq!(v["continued_from"]["key"].as_str(), Some("resnet8-cifar10"));
    let why = v["rationale"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect::<Vec<_>>().join("\n");
    assert!(why.contains("continues resnet8-cifar10 (simclr, 1 epoch)"), "{why}");
    // a checkpoint trained from scratch names no parent
    let scratch = t.path().join("scratch.safetensors");
    simclr(&scratch, &[]);
    let o = graft().args(["recommend", "--backbone"]).arg(&scratch).arg("--data").arg(example()).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("its card names no parent"), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Pretrain-first recipes are weighed only when the task has unlabelled images, and the
/// rationale says whether pretraining is predicted to pay against the pick, and at what cost.
#[test]
fn the_rationale_says_whether_pretraining_pays() {
    let why = |data: &Path| -> String {
        let o = graft().args(["recommend", "--json", "--data"]).arg(data).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        json_of(&o)["rationale"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_string()).collect::<Vec<_>>().join("\n")
    };
    assert!(why(&example()).contains("Pretraining: no unlabelled images, so the"), "{}", why(&example()));
    // the same task with an unlabelled pool (the cat training images again, without labels)
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("task");
    for split in ["train", "test"] {
        for class in std::fs::read_dir(example().join(split)).unwrap() {
            let class = class.unwrap().path();
            let dst = data.join(split).join(class.file_name().unwrap());
            std::fs::create_dir_all(&dst).unwrap();
            for f in std::fs::read_dir(&class).unwrap() {
                let f = f.unwrap().path();
                std::fs::copy(&f, dst.join(f.file_name().unwrap())).unwrap();
            }
        }
    }
    let pool = data.join("unlabelled");
    std::fs::create_dir_all(&pool).unwrap();
    for f in std::fs::read_dir(example().join("train/cat")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, pool.join(f.file_name().unwrap())).unwrap();
    }
    let n = std::fs::read_dir(&pool).unwrap().count();
    let w = why(&data);
    let line = w.lines().find(|l| l.starts_with("Pretraining on your")).unwrap_or_else(|| panic!("{w}"));
    assert!(line.contains(&format!("your {n} unlabelled images is")) && line.contains("points"), "{line}");
    assert!(line.contains("predicted to pay") && line.contains("the recommended recipe"), "{line}");
}

/// Every accuracy `recommend` states is the GP's shifted by the task's own level (session 31):
/// on the photos example the JSON's `task_level` and the rationale's "Level:" line say by how
/// much, and against the same model without its fitted level, every alternative's interval
/// moves by exactly that shift on the arcsine scale while the ranking and the pick stay. The
/// interval's width is its strategy and backbone model's own (`cv.stated_sd_scales`).
#[test]
fn stated_accuracies_carry_the_tasks_level_shift() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let photos = root.join("examples/photos");
    let mut m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(root.join("models/meta-learner.json")).unwrap()).unwrap();
    assert!(m["cv"]["task_level"]["beta"].as_f64().is_some_and(|b| b > 0.0), "the shipped model has no fitted task level");
    let rec = |model: &Path| {
        let o = graft().args(["recommend", "--json", "--data"]).arg(&photos).arg("--model").arg(model).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        json_of(&o)
    };
    let with = rec(&root.join("models/meta-learner.json"));
    m["cv"]["task_level"] = serde_json::Value::Null;
    let dir = tempfile::tempdir().unwrap();
    let flat = dir.path().join("no-level.json");
    std::fs::write(&flat, m.to_string()).unwrap();
    let without = rec(&flat);
    let level = |v: &serde_json::Value| {
        v["rationale"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_string()).find(|l| l.starts_with("Level:"))
    };
    let tl = &with["task_level"];
    let shift = tl["shift"].as_f64().unwrap();
    assert!(tl["probes"].as_u64().unwrap() >= 1 && tl["probe_gap"].as_f64().unwrap().is_finite(), "{tl}");
    let line = level(&with).expect("a Level: line");
    assert!(line.contains(&format!("shifted by {shift:+.3}")), "{line}");
    assert!(without.get("task_level").is_none() && level(&without).is_none());
    // the same candidates in the same order, and the same pick
    assert_eq!(with["recipe"], without["recipe"]);
    let (a, b) = (with["alternatives"].as_array().unwrap(), without["alternatives"].as_array().unwrap());
    assert_eq!(a.len(), b.len());
    let latent_mid = |v: &serde_json::Value| {
        let (lo, hi) = (v["interval"][0].as_f64().unwrap(), v["interval"][1].as_f64().unwrap());
        ((lo > 1e-9 && hi < 1.0 - 1e-9).then(|| (lo.sqrt().asin() + hi.sqrt().asin()) / 2.0), hi - lo)
    };
    let mut checked = 0;
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x["recipe"], y["recipe"]);
        if let ((Some(mx), _), (Some(my), _)) = (latent_mid(x), latent_mid(y)) {
            assert!((mx - my - shift).abs() < 1e-6, "{mx} - {my} != {shift}");
            checked += 1;
        }
    }
    assert!(checked >= 3, "only {checked} alternatives with an interval inside (0, 1)");
    // the interval's scale is its strategy and backbone model's own where the model has one:
    // against the pooled scale, every such alternative's latent half-width scales by their ratio
    let scales = m["cv"]["stated_sd_scales"].as_object().expect("per-group interval scales").clone();
    let pooled = m["cv"]["gp_sd_scale"].as_f64().unwrap();
    assert!(!scales.is_empty());
    m["cv"]["stated_sd_scales"] = serde_json::json!({});
    let plain = dir.path().join("pooled.json");
    std::fs::write(&plain, m.to_string()).unwrap();
    let pooled_rec = rec(&plain);
    let half = |v: &serde_json::Value| {
        let (lo, hi) = (v["interval"][0].as_f64().unwrap(), v["interval"][1].as_f64().unwrap());
        (lo > 1e-9 && hi < 1.0 - 1e-9).then(|| (hi.sqrt().asin() - lo.sqrt().asin()) / 2.0)
    };
    let mut scaled = 0;
    for (x, y) in b.iter().zip(pooled_rec["alternatives"].as_array().unwrap()) {
        assert_eq!(x["recipe"], y["recipe"]);
        let group = format!("{}/{}", x["recipe"]["strategy"].as_str().unwrap(), x["backbone"].as_str().unwrap());
        if let (Some(s), Some(hx), Some(hy)) = (scales.get(&group).and_then(|s| s.as_f64()), half(x), half(y)) {
            assert!((hx / hy - s / pooled).abs() < 1e-6, "{group}: {hx} / {hy} != {s} / {pooled}");
            scaled += 1;
        }
    }
    assert!(scaled >= 3, "only {scaled} alternatives of a group with its own scale");
}
