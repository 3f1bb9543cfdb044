//! `graft sweep` through the binary: four shards as separate processes give exactly the rows of
//! the unsharded plan; a sweep killed with SIGKILL and resumed ends with every run exactly once;
//! a plan already in the output is refused without --resume; a bad plan names its field; a dry
//! run (and --max-runs 0) runs nothing, and a dry run writes nothing.
mod common;
use common::{graft, tiny_plan};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rows(meta: &Path) -> BTreeMap<String, (f64, Option<f64>)> {
    let df = graft::metadataset::read_all(meta).unwrap();
    let ids = df.column("run_id").unwrap().str().unwrap().iter().map(|s| s.unwrap().to_string()).collect::<Vec<_>>();
    let acc: Vec<f64> = df.column("test_accuracy").unwrap().f64().unwrap().iter().map(|v| v.unwrap()).collect();
    let val: Vec<Option<f64>> = df.column("val_accuracy").unwrap().f64().unwrap().iter().collect();
    let mut m = BTreeMap::new();
    for i in 0..ids.len() {
        assert!(m.insert(ids[i].clone(), (acc[i], val[i])).is_none(), "duplicate row {}", ids[i]);
    }
    m
}

/// A plan `NAME.toml` in `dir`: one family (`examples/cifar3`) with `tasks` (its task count
/// and `[tasks]` space, 5 test images a class), the `backbones` tables, the linear probe, one seed.
fn cifar3_plan(dir: &Path, name: &str, tasks: &str, backbones: &str) -> PathBuf {
    let p = dir.join(format!("{name}.toml"));
    let d = repo().join("examples/cifar3");
    let text = format!(
        "name = \"{name}\"\nseeds = [0]\n[[family]]\nname = \"fam\"\ndata = \"{}\"\n{tasks}\ntest_per_class = 5\n{backbones}\n[recipes]\nsample = \"none\"\ninclude = [\"linear-probe\"]\n",
        d.display()
    );
    std::fs::write(&p, text).unwrap();
    p
}

fn sweep(plan: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    graft()
        .args(["--threads", "1", "sweep", "--plan"])
        .arg(plan)
        .arg("--out")
        .arg(out)
        .arg("--runs")
        .arg(out.join("_runs"))
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn four_shards_give_exactly_the_unsharded_rows() {
    let dir = tempfile::tempdir().unwrap();
    let plan = tiny_plan(dir.path(), "shards", 2);
    let whole = dir.path().join("whole");
    let o = sweep(&plan, &whole, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let sharded = dir.path().join("sharded");
    for i in 0..4 {
        let o = sweep(&plan, &sharded, &["--shard", &format!("{i}/4"), "--resume"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let (a, b) = (rows(&whole), rows(&sharded));
    // 2 families x 2 tasks x 1 backbone x 3 recipes x 2 seeds
    assert_eq!(a.len(), 24);
    assert_eq!(a, b, "sharded rows differ from the unsharded plan");
    // each shard wrote its own part files
    let parts: Vec<String> = std::fs::read_dir(sharded.join("source=sweep-shards"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    for i in 0..4 {
        assert!(parts.iter().any(|p| p.starts_with(&format!("part-s{i}of4-"))), "{parts:?}");
    }
    // running the finished plan again without --resume is refused, with --resume it does nothing
    let o = sweep(&plan, &whole, &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--resume"));
    let o = sweep(&plan, &whole, &["--resume", "--json"]);
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["ran"], 0);
    assert_eq!(s["already_done"], 24);
}

#[test]
fn a_dry_run_and_max_runs_0_run_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let plan = tiny_plan(dir.path(), "dry", 2);
    let out = dir.path().join("meta");
    let o = sweep(&plan, &out, &["--dry-run", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // 2 families x 2 tasks x 1 backbone x 3 recipes x 2 seeds, none run
    assert_eq!((v["units_in_plan"].as_u64(), v["remaining"].as_u64(), v["ran"].as_u64()), (Some(24), Some(24), Some(0)), "{v}");
    assert!(!out.exists(), "a dry run created {}: {:?}", out.display(), walkdir(&out));
    // --max-runs 0 runs nothing either
    let o = sweep(&plan, &out, &["--max-runs", "0", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((v["ran"].as_u64(), v["remaining"].as_u64()), (Some(0), Some(24)), "{v}");
}

#[test]
fn a_sigkilled_sweep_resumes_with_every_run_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let plan = tiny_plan(dir.path(), "killed", 3);
    let out = dir.path().join("meta");
    let mut child = graft()
        .args(["--threads", "1", "sweep", "--compact-every", "4", "--plan"])
        .arg(&plan)
        .arg("--out")
        .arg(&out)
        .arg("--runs")
        .arg(out.join("_runs"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // wait until some runs are recorded (staged or compacted), then kill mid-sweep
    let t0 = std::time::Instant::now();
    loop {
        let n = walk(&out);
        if n >= 6 || t0.elapsed().as_secs() > 120 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = rows(&out).len();
    assert!(before < 36, "the sweep finished before it was killed; nothing was tested");
    let o = sweep(&plan, &out, &["--resume", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = rows(&out);
    assert_eq!(r.len(), 36, "2 families x 3 tasks x 3 recipes x 2 seeds, each once");
    // nothing left in staging, no temporary files visible to readers
    assert_eq!(walk(&out.join("_staging")), 0);
    // the whole table also reads with graft's reader as one frame with the schema's columns
    let df = graft::metadataset::read_all(&out).unwrap();
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
        "mf_logme_last",
        "task_shift",
        "r_lr",
    ] {
        assert!(df.column(c).is_ok(), "missing column {c}");
    }
}

fn walk(d: &Path) -> usize {
    walkdir(d).into_iter().filter(|p| p.extension().is_some_and(|e| e == "parquet")).count()
}

fn walkdir(d: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir(d) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                if !p.ends_with("_runs") {
                    v.extend(walkdir(&p));
                }
            } else {
                v.push(p);
            }
        }
    }
    v
}

#[test]
fn bad_plans_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.toml");
    std::fs::write(&p, "name = \"x\"\nseeds = []\n").unwrap();
    let o = graft().args(["sweep", "--plan"]).arg(&p).arg("--out").arg(dir.path().join("m")).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("bad.toml") && e.contains("family"), "{e}");
    let plan = tiny_plan(dir.path(), "ok", 1);
    let text = std::fs::read_to_string(&plan).unwrap().replace("\"invert\"", "\"melt\"");
    std::fs::write(&plan, text).unwrap();
    let o = graft().args(["sweep", "--plan"]).arg(&plan).arg("--out").arg(dir.path().join("m")).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("tasks.shifts") && e.contains("melt"), "{e}");
    let o = graft().args(["sweep", "--plan"]).arg(dir.path().join("missing.toml")).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing.toml"));
    let o = graft().args(["sweep", "--shard", "4/4", "--plan"]).arg(&plan).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--shard 4/4"));
}

/// A plan may list one backbone at several input sizes: each block runs at its own size (the
/// runs record it in `mf_input_size`), and the two sizes' probes are distinct runs.
#[test]
fn one_backbone_at_two_input_sizes_runs_at_both() {
    let dir = tempfile::tempdir().unwrap();
    let p = cifar3_plan(
        dir.path(),
        "sizes",
        "tasks = 1\n[tasks]\nn_classes = [2, 2]\nshots = [5]",
        "[[backbone]]\nname = \"resnet8-cifar10\"\n[[backbone]]\nname = \"resnet8-cifar10\"\ninput_size = 48",
    );
    let out = dir.path().join("meta");
    let o = sweep(&p, &out, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let df = graft::metadataset::read_all(&out).unwrap();
    let mut sizes: Vec<i64> = df.column("mf_input_size").unwrap().i64().unwrap().iter().map(|v| v.unwrap()).collect();
    sizes.sort();
    assert_eq!(sizes, [32, 48]);
}

/// The run.json records under a sweep's run folder, as (recipe name, seed) -> record.
fn run_records(runs: &Path) -> BTreeMap<(String, u64), serde_json::Value> {
    let mut m = BTreeMap::new();
    for e in std::fs::read_dir(runs).unwrap() {
        let p = e.unwrap().path().join("run.json");
        if let Ok(s) = std::fs::read_to_string(&p) {
            let v: serde_json::Value = serde_json::from_str(&s).unwrap();
            let name = v["recipe"]["name"].as_str().unwrap_or("").to_string();
            m.insert((name, v["seed"].as_u64().unwrap()), v);
        }
    }
    m
}

/// A fine-tune and a probe after the same pretraining share it within a sweep block: the second
/// run replays the first one's pretrained weights (and its seconds), and its result is
/// bit-identical to the same probe run in a sweep where nothing is shared.
#[test]
fn runs_after_the_same_pretraining_share_it_and_match_a_run_alone() {
    let dir = tempfile::tempdir().unwrap();
    let plan = |name: &str, arms: &str| {
        let p = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &p,
            format!(
                r#"name = "{name}"
seeds = [0, 1]
[[family]]
name = "fam"
data = "{d}"
tasks = 1
[tasks]
n_classes = [3, 3]
shots = [5]
unlabelled = [20]
test_per_class = 5
[[backbone]]
name = "resnet8-cifar10"
[recipes]
sample = "none"
{arms}"#,
                d = repo().join("examples/cifar3").display()
            ),
        )
        .unwrap();
        p
    };
    let ft = "[[recipes.arm]]\nstrategy = \"finetune\"\nepochs = 1\npretrain = \"denoising-autoencoder\"\npretrain_epochs = 1\n";
    let probe = "[[recipes.arm]]\nstrategy = \"linear-probe\"\npretrain = \"denoising-autoencoder\"\npretrain_epochs = 1\n";
    let (shared, alone) = (dir.path().join("shared"), dir.path().join("alone"));
    let o = sweep(&plan("share", &format!("{ft}{probe}")), &shared, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = sweep(&plan("share", probe), &alone, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (s, a) = (run_records(&shared.join("_runs")), run_records(&alone.join("_runs")));
    assert_eq!((s.len(), a.len()), (4, 2));
    for seed in [0, 1] {
        let key = ("svm-last-pt-denoising-autoencoder1".to_string(), seed);
        let (rs, ra) = (&s[&key], &a[&key]);
        assert_eq!(rs["pretrain"]["replayed"], true, "the probe after the fine-tune replays its pretraining");
        assert_eq!(ra["pretrain"]["replayed"], false);
        let ft = &s[&("ft-r0-f0-lr0.001-ld1-sp0-e1-b32-pt-denoising-autoencoder1".to_string(), seed)];
        assert_eq!(ft["pretrain"]["replayed"], false);
        // the replayed pretraining is the fine-tune's own (same losses and seconds) ...
        assert_eq!(rs["pretrain"]["losses"], ft["pretrain"]["losses"]);
        assert_eq!(rs["pretrain"]["seconds"], ft["pretrain"]["seconds"]);
        assert!(rs["train_seconds"].as_f64().unwrap() >= ft["pretrain"]["seconds"].as_f64().unwrap());
        // ... and the probe's result is what it is when it pretrains alone
        assert_eq!(rs["pretrain"]["losses"], ra["pretrain"]["losses"]);
        for f in ["test_accuracy", "confusion", "final_weights_sha256"] {
            assert_eq!(rs[f], ra[f], "{f} differs between the shared and the lone pretraining (seed {seed})");
        }
    }
    // the seeds pretrain separately
    let l0 = &s[&("svm-last-pt-denoising-autoencoder1".to_string(), 0)]["pretrain"]["losses"];
    let l1 = &s[&("svm-last-pt-denoising-autoencoder1".to_string(), 1)]["pretrain"]["losses"];
    assert_ne!(l0, l1);
}

/// The stored images' traits are recorded with every run, and `graft meta backfill` measures
/// exactly the same values again from a row's `task_spec` and its plan: rows stripped of them
/// get them back bit for bit, a second backfill changes nothing, and rows whose folder names
/// no plan keep null traits.
#[test]
fn backfill_measures_the_image_traits_a_sweep_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let p = cifar3_plan(
        dir.path(),
        "traits",
        "tasks = 2\n[tasks]\nn_classes = [2, 3]\nshots = [3, 5]",
        "[[backbone]]\nname = \"resnet8-cifar10\"",
    );
    let out = dir.path().join("meta");
    let o = sweep(&p, &out, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let recorded = graft::metadataset::read_rows(&out).unwrap();
    assert_eq!(recorded.len(), 2);
    for r in &recorded {
        // examples/cifar3 holds 32 x 32 colour photographs
        assert_eq!(r.mf.native_size, Some(32.0), "{}", r.run_id);
        assert!(r.mf.colourfulness.is_some_and(|c| c > 0.02 && c < 0.5), "{:?}", r.mf.colourfulness);
    }
    // strip the traits, as rows logged before they were measured
    let parts = graft::metadataset::part_files(&out);
    for part in &parts {
        let mut rows = graft::metadataset::read_part(part).unwrap();
        rows.iter_mut().for_each(|r| (r.mf.native_size, r.mf.colourfulness) = (None, None));
        graft::metadataset::rewrite_part(part, &rows).unwrap();
    }
    // one more part, in a folder that names no plan
    let orphan = out.join("source=sweep-gone");
    std::fs::create_dir_all(&orphan).unwrap();
    let mut lone = graft::metadataset::read_rows(&out).unwrap()[0].clone();
    lone.run_id = "lone".into();
    graft::metadataset::write_part(&orphan, "lone", &[lone]).unwrap();

    // a plan whose family folder is gone: exit 2 naming the family, nothing rewritten
    let bad = dir.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    let text = std::fs::read_to_string(&p).unwrap().replace(&repo().join("examples/cifar3").display().to_string(), "/no/such/folder");
    std::fs::write(bad.join("traits.toml"), text).unwrap();
    let before: Vec<Vec<u8>> = parts.iter().map(|f| std::fs::read(f).unwrap()).collect();
    let o = graft().args(["meta", "backfill", "--meta"]).arg(&out).arg("--plans").arg(&bad).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("family `fam`"), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(parts.iter().map(|f| std::fs::read(f).unwrap()).collect::<Vec<_>>(), before, "a failed backfill changed a part");

    let backfill = || {
        let o = graft().args(["meta", "backfill", "--meta"]).arg(&out).arg("--plans").arg(dir.path()).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let s = backfill();
    assert_eq!((s["filled"].as_u64(), s["no_plan"].as_u64(), s["mismatched"].as_u64()), (Some(2), Some(1), Some(0)), "{s}");
    let mut back = graft::metadataset::read_rows(&out).unwrap();
    let lone = back.iter().position(|r| r.run_id == "lone").unwrap();
    assert_eq!((back[lone].mf.native_size, back[lone].mf.colourfulness), (None, None));
    back.remove(lone);
    back.sort_by(|a, b| a.run_id.cmp(&b.run_id));
    let mut want = recorded.clone();
    want.sort_by(|a, b| a.run_id.cmp(&b.run_id));
    assert_eq!(back, want, "backfilled rows differ from the rows the sweep recorded");
    let s = backfill();
    assert_eq!((s["filled"].as_u64(), s["rewritten"].as_u64(), s["already_measured"].as_u64()), (Some(0), Some(0), Some(2)), "{s}");
}
