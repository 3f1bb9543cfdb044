//! Hostile inputs and faults, one test per case of the reliability issue: each reproduces the
//! original failure (a path outside --out, a lost run on a closed pipe, a NaN run recorded as
//! ok, ...) and checks the named error, the exit code and that nothing is lost.
mod common;
use common::{graft, json_of, make_folder, TinyTask};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::OnceLock;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

type Fixture = TinyTask;

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| TinyTask::new(6, 4))
}

/// `graft run` with these arguments (strings or paths), run to completion.
macro_rules! graft_run {
    ($($a:expr),* $(,)?) => { graft().arg("run")$(.arg($a))*.output().unwrap() };
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn assert_exit(o: &Output, code: i32, needles: &[&str]) {
    let e = stderr(o);
    assert_eq!(o.status.code(), Some(code), "expected exit {code}, stderr: {e}");
    for n in needles {
        assert!(e.contains(n), "stderr lacks {n:?}: {e}");
    }
    assert!(!e.contains("panicked"), "panic: {e}");
}

/// Every file under `dir`, relative.
fn files_under(dir: &Path) -> Vec<String> {
    walk(dir).into_iter().map(|p| p.strip_prefix(dir).unwrap().display().to_string()).collect()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                v.extend(walk(&p));
            } else {
                v.push(p);
            }
        }
    }
    v.sort();
    v
}

// 1. path traversal from a sweep plan
#[test]
fn sweep_plan_names_cannot_leave_the_output_folder() {
    let t = tempfile::tempdir().unwrap();
    let data = repo().join("examples/cifar3");
    for (plan_name, family) in [("../../x", "fam"), ("ok", "../../y"), ("a/b", "fam"), ("..", "fam")] {
        let plan = t.path().join("plan.toml");
        std::fs::write(
            &plan,
            format!(
                "name = {plan_name:?}\nseeds = [0]\n[[family]]\nname = {family:?}\ndata = {:?}\ntasks = 1\n[tasks]\nn_classes = [2, 2]\nshots = [2]\ntest_per_class = 2\n[[backbone]]\nname = \"resnet8-cifar10\"\n[recipes]\nsample = \"none\"\ninclude = [\"linear-probe\"]\n",
                data.display().to_string()
            ),
        )
        .unwrap();
        let out = t.path().join("deep/er/out");
        let o =
            graft().args(["sweep", "--plan"]).arg(&plan).arg("--out").arg(&out).arg("--runs").arg(t.path().join("runs")).output().unwrap();
        assert_exit(&o, 2, &["safe file-name component"]);
        // nothing was written anywhere: not in --out, not beside it, not above it
        let written: Vec<String> = files_under(t.path()).into_iter().filter(|f| f != "plan.toml").collect();
        assert!(written.is_empty(), "plan name {plan_name:?} / family {family:?} wrote {written:?}");
    }
}

// 2. a closed pipe must not lose the run
fn run_with_closed_pipes(args: &[&std::ffi::OsStr]) -> std::process::ExitStatus {
    let mut child = graft().args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // the reader goes away at once, as `| head -0` would
    drop(child.stdout.take());
    drop(child.stderr.take());
    child.wait().unwrap()
}

#[test]
fn closed_pipe_finishes_and_records_the_run() {
    let f = fixture();
    let t = tempfile::tempdir().unwrap();
    let (runs, meta) = (t.path().join("runs"), t.path().join("meta"));
    let st = run_with_closed_pipes(&[
        "run".as_ref(),
        "--data".as_ref(),
        f.data.as_os_str(),
        "--backbone".as_ref(),
        f.backbone.as_os_str(),
        "--preset".as_ref(),
        "finetune-all".as_ref(),
        "--epochs".as_ref(),
        "2".as_ref(),
        // no --json: progress lines go to the closed stderr during training
        "--runs".as_ref(),
        runs.as_os_str(),
        "--meta".as_ref(),
        meta.as_os_str(),
    ]);
    assert_eq!(st.code(), Some(0), "graft run with closed pipes: {st:?}");
    let recs: Vec<PathBuf> = walk(&runs).into_iter().filter(|p| p.ends_with("run.json")).collect();
    assert_eq!(recs.len(), 1, "run record missing: {:?}", walk(&runs));
    assert!(walk(&runs).iter().any(|p| p.ends_with("metrics.csv")));
    assert_eq!(graft::metadataset::read_all(&meta).unwrap().height(), 1, "the run was not appended");
    // the read-only commands exit quietly too
    let st = run_with_closed_pipes(&["meta".as_ref(), "show".as_ref(), "--meta".as_ref(), meta.as_os_str()]);
    assert_eq!(st.code(), Some(0), "meta show: {st:?}");
    let st = run_with_closed_pipes(&["recommend".as_ref(), "--data".as_ref(), repo().join("examples/cifar3").as_os_str()]);
    assert_eq!(st.code(), Some(0), "recommend: {st:?}");
}

// 3 and 4. non-finite results are `diverged` (exit 3), and every record graft writes reads back
fn diverged_run_reads_back(run_out: &Output, meta: &Path) {
    assert_exit(run_out, 3, &["diverged"]);
    let rec: serde_json::Value = serde_json::from_slice(&run_out.stdout).expect("--json record");
    assert_eq!(rec["status"], "diverged", "{rec}");
    let dir = PathBuf::from(rec["run_dir"].as_str().unwrap());
    let df = graft::metadataset::read_all(meta).unwrap();
    assert_eq!(df.column("status").unwrap().str().unwrap().get(0), Some("diverged"));
    let o = graft().arg("report").arg(&dir).arg("--out").arg(dir.join("report")).output().unwrap();
    assert_exit(&o, 0, &[]);
    let o = graft().args(["meta", "show", "--meta"]).arg(meta).output().unwrap();
    assert_exit(&o, 0, &[]);
}

/// `graft run --json` of the `finetune-all` preset changed by `edit`, on the fixture, logging
/// to a fresh meta-dataset; returns the output and that meta-dataset (in `t`).
fn run_edited_preset(t: &Path, edit: impl FnOnce(&mut serde_json::Value)) -> (Output, PathBuf) {
    let f = fixture();
    let mut r: serde_json::Value = json_of(&graft().args(["recipe", "preset", "finetune-all"]).output().unwrap());
    r["epochs"] = 1.into();
    edit(&mut r);
    let rp = t.join("r.json");
    std::fs::write(&rp, r.to_string()).unwrap();
    let meta = t.join("meta");
    let o = graft_run!("--json", "--data", &f.data, "--backbone", &f.backbone, "--recipe", &rp, "--runs", t.join("runs"), "--meta", &meta);
    (o, meta)
}

#[test]
fn exploding_sgd_is_diverged_not_ok() {
    let t = tempfile::tempdir().unwrap();
    let (o, meta) = run_edited_preset(t.path(), |r| {
        r["optimizer"]["kind"] = "sgd".into();
        r["lr"] = 1e4.into();
    });
    diverged_run_reads_back(&o, &meta);
}

/// A recipe whose unsupervised pretraining blows up ends as a `diverged` run on record (before,
/// the run failed without a record, and a sweep dropped it from the meta-dataset).
#[test]
fn exploding_pretraining_is_a_diverged_run_on_record() {
    let t = tempfile::tempdir().unwrap();
    let (o, meta) = run_edited_preset(t.path(), |r| {
        r["pretrain"] = serde_json::json!({"method": "autoencoder", "epochs": 3, "batch_size": 4, "lr": 1e30, "data": "train"});
    });
    assert!(stderr(&o).contains("pretraining"), "the reason names the pretraining: {}", stderr(&o));
    diverged_run_reads_back(&o, &meta);
}

/// A copy of `weights` (and its card, sha256 updated) with every value of one tensor set to NaN.
fn nan_checkpoint(weights: &Path, dir: &Path) -> PathBuf {
    let bytes = std::fs::read(weights).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut owned: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, view) in st.tensors() {
        let mut data = view.data().to_vec();
        if name.starts_with("stage1.") && view.dtype() == safetensors::Dtype::F32 && name.ends_with("conv1.weight") {
            for c in data.chunks_mut(4) {
                c.copy_from_slice(&f32::NAN.to_le_bytes());
            }
        }
        owned.push((name, view.dtype(), view.shape().to_vec(), data));
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> =
        owned.iter().map(|(n, d, s, b)| (n.clone(), safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap())).collect();
    let out = dir.join("nan.safetensors");
    safetensors::serialize_to_file(views, None, &out).unwrap();
    let mut card: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(weights.with_extension("json")).unwrap()).unwrap();
    card["sha256"] = graft::util::sha256_file(&out).unwrap().into();
    card["name"] = "nan-backbone".into();
    std::fs::write(out.with_extension("json"), card.to_string()).unwrap();
    out
}

#[test]
fn nan_checkpoint_is_diverged_for_finetuning_and_probing() {
    let f = fixture();
    let t = tempfile::tempdir().unwrap();
    let nan = nan_checkpoint(&f.backbone, t.path());
    for preset in ["finetune-all", "linear-probe"] {
        let meta = t.path().join(format!("meta-{preset}"));
        let o = graft_run!(
            "--json",
            "--epochs",
            "1",
            "--preset",
            preset,
            "--data",
            &f.data,
            "--backbone",
            &nan,
            "--runs",
            t.path().join("runs"),
            "--meta",
            &meta
        );
        diverged_run_reads_back(&o, &meta);
    }
}

// 5. --skip-bad must not empty a class; a test tree must hold every class
#[test]
fn a_class_emptied_by_skip_bad_or_missing_from_test_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("d");
    make_folder(&data, &[("train", 5), ("test", 3)], 3, 32);
    for e in std::fs::read_dir(data.join("train/class2")).unwrap() {
        std::fs::write(e.unwrap().path(), b"not an image").unwrap();
    }
    let o = graft_run!(
        "--skip-bad",
        "--no-meta",
        "--preset",
        "linear-probe",
        "--backbone",
        "resnet8-cifar10",
        "--data",
        &data,
        "--runs",
        t.path().join("runs")
    );
    assert_exit(&o, 2, &["class2", "unreadable"]);
    let (good, test2) = (t.path().join("good"), t.path().join("test2"));
    make_folder(&good, &[("", 5)], 3, 32);
    make_folder(&test2, &[("", 2)], 2, 32);
    let o = graft_run!(
        "--no-meta",
        "--preset",
        "linear-probe",
        "--backbone",
        "resnet8-cifar10",
        "--data",
        &good,
        "--test",
        &test2,
        "--runs",
        t.path().join("runs")
    );
    assert_exit(&o, 2, &["class2", "test tree"]);
}

// 6. one writer per sweep shard; duplicate rows never count twice
#[test]
fn a_second_writer_on_a_sweep_shard_is_refused() {
    use std::os::unix::io::AsRawFd;
    let t = tempfile::tempdir().unwrap();
    let plan = t.path().join("p.toml");
    std::fs::write(
        &plan,
        format!(
            "name = \"lk\"\nseeds = [0]\n[[family]]\nname = \"fam\"\ndata = {:?}\ntasks = 1\n[tasks]\nn_classes = [2, 2]\nshots = [2]\ntest_per_class = 2\n[[backbone]]\nname = \"resnet8-cifar10\"\n[recipes]\nsample = \"none\"\ninclude = [\"linear-probe\"]\n",
            repo().join("examples/cifar3").display().to_string()
        ),
    )
    .unwrap();
    let out = t.path().join("out");
    std::fs::create_dir_all(out.join("_staging")).unwrap();
    // a running sweep holds the shard's lock
    let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(out.join("_staging/lk-s0of1.lock")).unwrap();
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }, 0);
    let sweep = || {
        graft()
            .args(["--threads", "1", "sweep", "--plan"])
            .arg(&plan)
            .arg("--out")
            .arg(&out)
            .arg("--runs")
            .arg(t.path().join("runs"))
            .output()
            .unwrap()
    };
    let o = sweep();
    assert_exit(&o, 2, &["another graft sweep", "lk-s0of1.lock"]);
    assert!(graft::metadataset::part_files(&out).is_empty(), "the refused sweep wrote rows");
    drop(lock);
    let o = sweep();
    assert_exit(&o, 0, &[]);
    let n = graft::metadataset::read_all(&out).unwrap().height();
    assert_eq!(n, 1, "one task x one backbone x linear-probe x one seed");
    // rows duplicated by an old unlocked double writer count once, also after --resume
    let part = graft::metadataset::part_files(&out)[0].clone();
    std::fs::copy(&part, part.with_file_name("part-s0of1-99999.parquet")).unwrap();
    assert_eq!(graft::metadataset::read_all(&out).unwrap().height(), n);
    let o = graft()
        .args(["--threads", "1", "sweep", "--resume", "--plan"])
        .arg(&plan)
        .arg("--out")
        .arg(&out)
        .arg("--runs")
        .arg(t.path().join("runs"))
        .output()
        .unwrap();
    assert_exit(&o, 0, &[]);
    assert_eq!(graft::metadataset::read_all(&out).unwrap().height(), n);
}

// 7. non-UTF-8 class folders that would collide after lossy conversion
#[test]
fn non_utf8_class_folders_are_refused_by_name() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("d");
    for raw in [&b"x\xff"[..], &b"x\xfe"[..]] {
        let d = data.join(std::ffi::OsStr::from_bytes(raw));
        std::fs::create_dir_all(&d).unwrap();
        for i in 0..4 {
            common::synth_image(i % 2, i, 32).save(d.join(format!("{i}.png"))).unwrap();
        }
    }
    let o = graft_run!("--no-meta", "--preset", "linear-probe", "--data", &data, "--runs", t.path().join("runs"));
    assert_exit(&o, 2, &["x\\xFE", "x\\xFF", "UTF-8", "merge"]);
}

// 8. a JPEG missing half its scan is corrupt
#[test]
fn truncated_jpeg_is_corrupt_or_skipped() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("d");
    make_folder(&data, &[("train", 6), ("test", 3)], 2, 32);
    let img = image::DynamicImage::ImageRgb8(common::synth_image(0, 99, 64));
    let mut jpg = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut jpg), image::ImageFormat::Jpeg).unwrap();
    assert!(graft::data::images::jpeg_is_complete(&jpg));
    let cut = &jpg[..jpg.len() / 2];
    assert!(!graft::data::images::jpeg_is_complete(cut));
    let bad = data.join("train/class0/cut.jpg");
    std::fs::write(&bad, cut).unwrap();
    let runs = t.path().join("runs");
    let o = graft_run!("--no-meta", "--json", "--preset", "linear-probe", "--data", &data, "--runs", &runs);
    assert_exit(&o, 2, &["cut.jpg", "truncated JPEG"]);
    let o = graft_run!("--no-meta", "--json", "--preset", "linear-probe", "--data", &data, "--runs", &runs, "--skip-bad");
    let rec = json_of(&o);
    let skipped = rec["dataset"]["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert!(skipped[0].as_str().unwrap().contains("cut.jpg"));
}

// 9. a corrupt meta-learner.json
#[test]
fn corrupt_meta_learners_exit_2_naming_the_file() {
    let t = tempfile::tempdir().unwrap();
    let good: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(repo().join("models/meta-learner.json")).unwrap()).unwrap();
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut v = good.clone();
    v["gp"]["x"].as_array_mut().unwrap().truncate(10);
    cases.push(("gp-x-10-rows", v.to_string().into_bytes()));
    let mut v = good.clone();
    v["portfolio"] = serde_json::json!([]);
    cases.push(("empty-portfolio", v.to_string().into_bytes()));
    let mut v = good.clone();
    v["encoder"]["backbones"] = serde_json::json!([]);
    cases.push(("empty-backbones", v.to_string().into_bytes()));
    let mut v = good.clone();
    v["gp"]["y"][0] = 1e300.into();
    cases.push(("huge-y", v.to_string().into_bytes()));
    let mut v = good.clone();
    v["knn"]["entries"] = serde_json::json!([]);
    cases.push(("empty-knn", v.to_string().into_bytes()));
    cases.push(("random-bytes", (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect()));
    for (name, bytes) in cases {
        let p = t.path().join(format!("{name}.json"));
        std::fs::write(&p, bytes).unwrap();
        let o = graft().args(["recommend", "--data"]).arg(repo().join("examples/cifar3")).arg("--model").arg(&p).output().unwrap();
        assert_exit(&o, 2, &[p.to_str().unwrap()]);
    }
    let missing = t.path().join("missing.json");
    let o = graft().args(["recommend", "--data"]).arg(repo().join("examples/cifar3")).arg("--model").arg(&missing).output().unwrap();
    assert_exit(&o, 2, &["does not exist"]);
}

// 10. unsupervised pretraining on a plain folder of images, at any depth, for every method
#[test]
fn every_unsupervised_method_pretrains_on_a_plain_folder() {
    let t = tempfile::tempdir().unwrap();
    let pool = t.path().join("photos");
    for (i, sub) in ["", "2024/a", "2025"].iter().enumerate() {
        let d = pool.join(sub);
        std::fs::create_dir_all(&d).unwrap();
        for j in 0..4 {
            common::synth_image(j % 3, i * 10 + j, 28).save(d.join(format!("p{j}.png"))).unwrap();
        }
    }
    for m in ["autoencoder", "sparse-autoencoder", "denoising-autoencoder", "contractive-autoencoder", "greedy-layerwise", "simclr"] {
        let out = t.path().join(format!("{m}.safetensors"));
        let o = graft()
            .args(["--threads", "1", "pretrain", "--arch", "convnet4", "--epochs", "1", "--batch-size", "4", "--method", m, "--data"])
            .arg(&pool)
            .arg("--out")
            .arg(&out)
            .arg("--json")
            .output()
            .unwrap();
        let j = json_of(&o);
        assert!(j["card"]["notes"].as_str().unwrap().contains("on 12 unlabelled images"), "{m}: {}", j["card"]["notes"]);
        assert!(out.is_file() && out.with_extension("json").is_file());
    }
    // a missing pool says what to pass: any folder of images, not a class tree
    let o = graft()
        .args(["pretrain", "--arch", "convnet4", "--method", "simclr", "--data"])
        .arg(t.path().join("missing"))
        .arg("--out")
        .arg(t.path().join("m.safetensors"))
        .output()
        .unwrap();
    assert_exit(&o, 2, &["does not exist", "a folder of images (any depth, no class folders needed)"]);
}

// 10b. past --in-memory-limit-mb the images are streamed from disk batch by batch: the same
// weights bit for bit, the same data fingerprint; continued pretraining (--init) names its parent
#[test]
fn streamed_pretraining_equals_in_memory_and_the_card_names_its_lineage() {
    let t = tempfile::tempdir().unwrap();
    let pool = t.path().join("photos");
    for (i, sub) in ["", "a/b"].iter().enumerate() {
        let d = pool.join(sub);
        std::fs::create_dir_all(&d).unwrap();
        for j in 0..5 {
            common::synth_image(j % 3, i * 10 + j, 32).save(d.join(format!("p{j}.png"))).unwrap();
        }
    }
    let mut cards = Vec::new();
    for (limit, method) in [("1024", "simclr"), ("0", "simclr"), ("0", "denoising-autoencoder")] {
        let out = t.path().join(format!("{method}-{limit}.safetensors"));
        let o = graft()
            .args(["--threads", "1", "pretrain", "--arch", "resnet8", "--init", "resnet8-cifar10", "--epochs", "2", "--batch-size", "4"])
            .args(["--method", method, "--in-memory-limit-mb", limit, "--json", "--data"])
            .arg(&pool)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        let j = json_of(&o);
        let notes = j["card"]["notes"].as_str().unwrap().to_string();
        let how = if limit == "0" { "streamed from disk" } else { "decoded in memory" };
        assert!(notes.contains(how) && notes.contains("on 10 unlabelled images"), "{notes}");
        assert_eq!(j["card"]["parent"]["name"].as_str(), Some("resnet8-cifar10"), "{}", j["card"]);
        assert_eq!(j["card"]["parent"]["sha256"].as_str().map(|s| s.len()), Some(64));
        cards.push(j["card"].clone());
    }
    assert_eq!(cards[0]["sha256"], cards[1]["sha256"], "streaming changed the pretrained weights");
    assert_eq!(cards[0]["data_fingerprint"], cards[1]["data_fingerprint"]);
    assert_eq!(cards[0]["data_fingerprint"], cards[2]["data_fingerprint"]);
    assert_ne!(cards[1]["sha256"], cards[2]["sha256"], "two methods gave the same weights");
    // the result is a backbone graft run accepts
    let data = t.path().join("d");
    make_folder(&data, &[("train", 4), ("test", 2)], 2, 32);
    let o = graft_run!(
        "--json",
        "--no-meta",
        "--preset",
        "linear-probe",
        "--data",
        &data,
        "--backbone",
        t.path().join("simclr-0.safetensors"),
        "--runs",
        t.path().join("runs")
    );
    assert_eq!(json_of(&o)["status"].as_str(), Some("ok"));
}

// 11. a recommended recipe carries its backbone
#[test]
fn a_recommended_recipe_runs_on_its_own_backbone() {
    let t = tempfile::tempdir().unwrap();
    let data = repo().join("examples/cifar3");
    let rec = json_of(&graft().args(["recommend", "--json", "--data"]).arg(&data).output().unwrap());
    let backbone = rec["backbone"].as_str().unwrap().to_string();
    assert_eq!(rec["recipe"]["backbone"].as_str(), Some(backbone.as_str()));
    assert!(rec["run_command"].as_str().unwrap().starts_with("graft run --data "), "{}", rec["run_command"]);
    let rp = t.path().join("rec.json");
    std::fs::write(&rp, rec["recipe"].to_string()).unwrap();
    let o = graft_run!("--json", "--no-meta", "--epochs", "1", "--data", &data, "--recipe", &rp, "--runs", t.path().join("runs"));
    let run = json_of(&o);
    assert_eq!(run["backbone"].as_str(), Some(backbone.as_str()));
    let other = if backbone == "convnet4-mnist" { "resnet8-cifar10" } else { "convnet4-mnist" };
    let o = graft_run!("--no-meta", "--data", &data, "--recipe", &rp, "--backbone", other, "--runs", t.path().join("runs"));
    assert_exit(&o, 2, &["conflicts with the recipe's \"backbone\""]);
}

// 12. messages name the real cause
#[test]
fn messages_name_the_real_cause() {
    let t = tempfile::tempdir().unwrap();
    // a recipe type error names its field, not the offending value
    let mut r: serde_json::Value = json_of(&graft().args(["recipe", "preset", "finetune-all"]).output().unwrap());
    r["epochs"] = (-1).into();
    let rp = t.path().join("r.json");
    std::fs::write(&rp, r.to_string()).unwrap();
    let o = graft().args(["recipe", "check", "--n-classes", "3"]).arg(&rp).output().unwrap();
    assert_exit(&o, 2, &["field `epochs`"]);
    // a meta-dataset folder that does not exist
    let o =
        graft().args(["meta", "fit", "--meta"]).arg(t.path().join("missing")).arg("--out").arg(t.path().join("m.json")).output().unwrap();
    assert_exit(&o, 2, &["does not exist"]);
    // a class folder that cannot be read is not "a folder with no images"
    let data = t.path().join("d");
    make_folder(&data, &[("", 3)], 3, 32);
    let c2 = data.join("class2");
    for e in std::fs::read_dir(&c2).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    std::os::unix::fs::symlink(&c2, c2.join("loop")).unwrap();
    let o = graft_run!("--no-meta", "--preset", "linear-probe", "--data", &data, "--runs", t.path().join("runs"));
    assert_exit(&o, 2, &["cannot read", "class2"]);
    if unsafe { libc::geteuid() } != 0 {
        std::fs::remove_file(c2.join("loop")).unwrap();
        common::synth_image(2, 0, 32).save(c2.join("a.png")).unwrap();
        let mut perm = std::fs::metadata(&c2).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o000);
        std::fs::set_permissions(&c2, perm).unwrap();
        let o = graft_run!("--no-meta", "--preset", "linear-probe", "--data", &data, "--runs", t.path().join("runs"));
        let mut perm = std::fs::metadata(&c2).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
        std::fs::set_permissions(&c2, perm).unwrap();
        assert_exit(&o, 2, &["cannot read", "class2"]);
    }
    // a full disk is named as such, with the file, not as a Parquet decoding error
    let dir = t.path().join("full");
    std::fs::create_dir_all(&dir).unwrap();
    let target = dir.join("x.parquet");
    std::os::unix::fs::symlink("/dev/full", &target).unwrap();
    let mut df = polars::prelude::df!("run_id" => ["a"]).unwrap();
    let e = graft::metadataset::write_parquet_file(&mut df, &target).unwrap_err().to_string();
    assert!(e.contains("No space left on device") && e.contains("x.parquet"), "{e}");
}

#[test]
fn graft_log_info_shows_the_library_steps() {
    let f = fixture();
    let t = tempfile::tempdir().unwrap();
    let o = graft()
        .env("GRAFT_LOG", "info")
        .args(["run", "--no-meta", "--preset", "linear-probe", "--data"])
        .arg(&f.data)
        .arg("--backbone")
        .arg(&f.backbone)
        .arg("--runs")
        .arg(t.path().join("runs"))
        .output()
        .unwrap();
    assert_exit(&o, 0, &["INFO", "loaded", "test accuracy"]);
}

// 13. temporary files left by a kill or a full disk are removed by the next run
#[test]
fn stale_temporary_files_are_removed_by_the_next_run() {
    let f = fixture();
    let t = tempfile::tempdir().unwrap();
    let (runs, meta) = (t.path().join("runs"), t.path().join("meta"));
    // a process id that does not exist here
    let dead = (400_000u32..).find(|p| !Path::new(&format!("/proc/{p}")).exists()).unwrap();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    let stale = [
        runs.join("old-run").join(format!(".metrics.csv.tmp-{dead}")),
        meta.join("source=run").join(format!(".part-x.parquet.tmp-{dead}")),
    ];
    // a live writer's file (this process) must stay
    let live = meta.join("source=run").join(format!(".part-y.parquet.tmp-{}", std::process::id()));
    for p in stale.iter().chain([&live]) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let mut fh = std::fs::File::create(p).unwrap();
        fh.write_all(b"partial").unwrap();
        fh.set_modified(old).unwrap();
    }
    let o = graft_run!("--preset", "linear-probe", "--data", &f.data, "--backbone", &f.backbone, "--runs", &runs, "--meta", &meta);
    assert_exit(&o, 0, &[]);
    for p in &stale {
        assert!(!p.exists(), "{} was left behind", p.display());
    }
    assert!(live.exists(), "a live process's temporary file was removed");
}

/// `graft bench --check-kernels` checks the CUDA kernels: on the CPU it says which flag to give
/// (exit 2, no panic), and a CUDA device that this build or machine lacks is named as such.
#[test]
fn kernel_check_needs_a_cuda_device() {
    let o = graft().args(["bench", "--check-kernels"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--device cuda"), "{err}");
    let o = graft().args(["bench", "--check-kernels", "--device", "cuda"]).output().unwrap();
    assert_ne!(o.status.code(), Some(0), "{o:?}");
    assert!(!String::from_utf8_lossy(&o.stderr).contains("panicked"), "{o:?}");
}
