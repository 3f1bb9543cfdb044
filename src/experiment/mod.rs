//! `graft experiment NAME`: reproductions of the lecture's claims as rerunnable commands. Each
//! writes `OUT/NAME.json` (settings and one row per run, rewritten atomically after every run,
//! so a killed experiment resumes where it stopped), `OUT/NAME.md` (table) and `OUT/NAME.svg`.
//!
//! - `paine`: unsupervised pretraining when labels are few (Paine et al. 2014). CIFAR-10, all 10
//!   classes, L labelled images per class, an unlabelled pool drawn from the rest of the training
//!   set; a resnet8 trained from scratch vs pretrained without labels on the pool (denoising
//!   autoencoder, SimCLR), then fine-tuned on the L labels. Also a linear probe on the frozen
//!   features of each (random, denoising, SimCLR): "SimCLR features vs random features".
//! - `yosinski`: transferability by layer (Yosinski et al. 2014). CIFAR-10 split into two random
//!   5-class halves A and B; resnet20 base networks trained on each; for every cut n (the first n
//!   groups copied), BnB / BnB+ / AnB / AnB+ as in the paper (frozen / fine-tuned copies, the
//!   groups above re-initialised and trained on B).
use crate::backbones::{card, Arch, Model, ModelCard, ModelRef};
use crate::data::task::{sample_task, TaskSpec};
use crate::data::{decode_items, load_dataset, Dataset, ImageSet, LoadOptions, Normalisation};
use crate::error::{GraftError, Result};
use crate::executor::run::{decode_dataset, run_prepared, Decoded, Prepared, TaskContext};
use crate::executor::train::{evaluate, train, NoProgress};
use crate::executor::RunOptions;
use crate::pretrain::{self, Method, PretrainSpec};
use crate::recipe::{self, Action, GroupSpec, Recipe, Strategy};
use crate::report::svg::{line_chart, Series};
use crate::util::{now_rfc3339, rng_for, write_atomic};
use candle_core::Device;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const EXPERIMENTS: &[&str] = &["paine", "yosinski"];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Settings {
    pub experiment: String,
    pub data: String,
    pub seeds: Vec<u64>,
    /// paine: labelled images per class.
    pub labels: Vec<usize>,
    /// paine: unlabelled pool size.
    pub unlabelled: usize,
    pub pretrain_epochs: usize,
    /// yosinski: training images per class of each half.
    pub shots: usize,
    /// Fine-tuning epochs (paine: scaled so every L sees about the same number of steps).
    pub epochs: usize,
    pub test_per_class: usize,
    /// paine: start from this pretrained backbone (name or file) instead of a random resnet8,
    /// and compare continued SimCLR pretraining on the pool with no continued pretraining
    /// (results go to `paine-init.*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<String>,
    /// paine with `init`: the input size (square) to run the backbone at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_size: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    pub key: String,
    pub arm: String,
    /// paine: labels per class; yosinski: the cut n.
    pub x: usize,
    pub seed: u64,
    pub test_accuracy: f64,
    pub n_train: usize,
    pub n_test: usize,
    pub train_seconds: f64,
    #[serde(default)]
    pub run_id: Option<String>,
    #[serde(default)]
    pub note: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    pub settings: Settings,
    pub rows: Vec<Row>,
    pub command: String,
    pub updated_at: String,
}

pub struct Env {
    pub out: PathBuf,
    pub runs: PathBuf,
    pub device: Device,
    pub device_name: String,
    pub command: String,
    pub log: Box<dyn Fn(&str)>,
}

struct Book<'a> {
    env: &'a Env,
    res: Results,
    path: PathBuf,
}

impl Book<'_> {
    fn has(&self, key: &str) -> Option<&Row> {
        self.res.rows.iter().find(|r| r.key == key)
    }
    fn push(&mut self, row: Row) -> Result<()> {
        (self.env.log)(&format!(
            "{} {} x={} seed {}: test accuracy {:.4} ({:.0} s)",
            row.key, row.arm, row.x, row.seed, row.test_accuracy, row.train_seconds
        ));
        self.res.rows.push(row);
        self.res.updated_at = now_rfc3339();
        write_atomic(&self.path, serde_json::to_string_pretty(&self.res).expect("serialises").as_bytes())
    }
}

fn open_book<'a>(env: &'a Env, settings: &Settings) -> Result<Book<'a>> {
    std::fs::create_dir_all(&env.out).map_err(|e| GraftError::io(&env.out, e))?;
    let path = env.out.join(format!("{}.json", settings.experiment));
    let mut res = Results { settings: settings.clone(), rows: vec![], command: env.command.clone(), updated_at: now_rfc3339() };
    if path.is_file() {
        let old: Results = serde_json::from_str(&crate::util::read_to_string(&path)?).map_err(|e| {
            GraftError::Usage(format!("{}: not an experiment results file ({e}); move it away to start afresh", path.display()))
        })?;
        // the same settings, or the same but more seeds: keep every row and run what is missing
        let same_but_seeds = Settings { seeds: settings.seeds.clone(), ..old.settings.clone() } == *settings
            && old.settings.seeds.iter().all(|s| settings.seeds.contains(s));
        if same_but_seeds {
            (env.log)(&format!("resuming {}: {} runs already done", path.display(), old.rows.len()));
            res.rows = old.rows;
        } else {
            return Err(GraftError::Usage(format!(
                "{} holds results for other settings ({}); pass another --out or move it away (adding seeds is allowed)",
                path.display(),
                serde_json::to_string(&old.settings).expect("serialises")
            )));
        }
    }
    Ok(Book { env, res, path })
}

/// Save a model with a card, so `run` (and `graft run --backbone FILE`) can load it.
#[allow(clippy::too_many_arguments)]
fn checkpoint(
    model: &Model,
    path: &Path,
    norm: &Normalisation,
    method: &str,
    epochs: usize,
    seed: u64,
    final_loss: Option<f64>,
    notes: String,
    command: &str,
) -> Result<ModelRef> {
    let p = card::Provenance {
        name: path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default(),
        source: "graft experiment".into(),
        license: "same as the data".into(),
        method: method.into(),
        epochs,
        seed,
        final_loss,
        command: command.to_string(),
        notes,
        ..card::Provenance::default()
    };
    card::save_with_card(model, path, norm, p)
}

/// The first `l` training images of every class (nested: the first 4 are among the first 25).
fn per_class(task: &Dataset, set: &ImageSet, l: usize) -> (Dataset, ImageSet) {
    let mut seen = vec![0usize; task.n_classes()];
    let idx: Vec<usize> = (0..set.n)
        .filter(|&i| {
            let c = set.labels[i] as usize;
            seen[c] += 1;
            seen[c] <= l
        })
        .collect();
    let mut t = task.clone();
    t.train = idx.iter().map(|&i| task.train[i].clone()).collect();
    (t, set.subset(&idx))
}

fn run_one(env: &Env, mref: &ModelRef, recipe: Recipe, task: &Dataset, dec: Decoded, family: &str) -> Result<crate::executor::RunRecord> {
    let opts = RunOptions {
        data: LoadOptions::new(&task.root),
        skip_bad: false,
        recipe,
        backbone: mref.card.name.clone(),
        device: env.device.clone(),
        device_name: env.device_name.clone(),
        runs_dir: env.runs.clone(),
        meta_dir: None,
        family: Some(family.into()),
        task_id: None,
        command: env.command.clone(),
        input_size: None,
        context: TaskContext::default(),
        save_model: false,
    };
    let prep = Prepared {
        mref: mref.clone(),
        ds: task.clone(),
        dec,
        load_seconds: 0.0,
        decode_seconds: 0.0,
        features: None,
        pretrained: None,
        images: Default::default(),
    };
    let checked = opts.recipe.check(&mref.card.groups, mref.card.n_classes, prep.ds.n_classes())?;
    let rec = run_prepared(&opts, &checked, &prep, &TaskContext::default(), None, &NoProgress)?;
    if rec.status != crate::executor::run::RunStatus::Ok {
        return Err(GraftError::Other(format!("run {} {}: {}", rec.run_id, rec.status, rec.error.clone().unwrap_or_default())));
    }
    Ok(rec)
}

fn row(key: String, arm: &str, x: usize, seed: u64, rec: &crate::executor::RunRecord) -> Row {
    Row {
        key,
        arm: arm.into(),
        x,
        seed,
        test_accuracy: rec.test_accuracy,
        n_train: rec.n_train,
        n_test: rec.n_test,
        train_seconds: rec.train_seconds,
        run_id: Some(rec.run_id.clone()),
        note: String::new(),
    }
}

fn cifar(data: &Path) -> Result<Dataset> {
    let ds = load_dataset(&LoadOptions::new(data))?;
    if ds.n_classes() < 10 || ds.test.is_empty() {
        return Err(GraftError::Usage(format!(
            "--data {}: expected CIFAR-10 as ImageFolder with train/ and test/ (10 classes); run scripts/fetch-data.sh",
            data.display()
        )));
    }
    Ok(ds)
}

/// Paine et al. (2014): scratch vs denoising-AE vs SimCLR pretraining, then fine-tuning, at a few
/// labels per class; and linear probes on the frozen features.
/// A Paine task of one seed: all ten classes, the largest L labelled images a class, the pool
/// and the test images, decoded at `input`.
fn paine_task(ds: &Dataset, s: &Settings, seed: u64, input: crate::data::InputSpec) -> Result<(Dataset, Decoded)> {
    let max_l = *s.labels.iter().max().ok_or_else(|| GraftError::Usage("--labels: give at least one count".into()))?;
    let spec = TaskSpec {
        classes: None,
        n_classes: 10,
        shots: max_l,
        unlabelled: s.unlabelled,
        test_per_class: Some(s.test_per_class),
        val_per_class: 0,
        imbalance: 1.0,
    };
    let task = sample_task(ds, &spec, seed)?;
    let dec = decode_dataset(&task, input, false, 0.0, seed)?;
    Ok((task, dec))
}

/// Every starting point fine-tuned (every group, a new head) and linearly probed at every L,
/// skipping rows already in the book. Fine-tuning gets `s.epochs` at the largest L and about as
/// many optimisation steps at smaller L (at most 8x the epochs).
fn paine_arms(
    env: &Env,
    book: &mut Book,
    s: &Settings,
    seed: u64,
    task: &Dataset,
    dec: &Decoded,
    starts: &[(&str, &ModelRef)],
) -> Result<()> {
    let max_l = s.labels.iter().copied().max().unwrap_or(1);
    for &l in &s.labels {
        let (task_l, train_l) = per_class(task, &dec.train, l);
        let epochs = s.epochs.max((s.epochs * max_l * 10).div_ceil(train_l.n.max(1)).min(s.epochs * 8));
        for &(arm, mref) in starts {
            for (kind, preset) in [("finetune", "finetune-all"), ("probe", "linear-probe")] {
                let key = format!("{kind}/{arm}/L{l}/s{seed}");
                if book.has(&key).is_some() {
                    continue;
                }
                let mut r = recipe::preset(preset)?;
                r.seed = seed;
                let finetune = r.strategy == Strategy::Finetune;
                if finetune {
                    r.epochs = epochs;
                }
                let d = Decoded { train: train_l.clone(), val: None, test: dec.test.clone(), unlabelled: None };
                let rec = run_one(env, mref, r, &task_l, d, "cifar10")?;
                let name = if finetune { arm.to_string() } else { format!("probe-{arm}") };
                book.push(row(key, &name, l, seed, &rec))?;
            }
        }
    }
    Ok(())
}

pub fn paine(env: &Env, s: &Settings) -> Result<Results> {
    if s.init.is_some() {
        return paine_init(env, s);
    }
    let ds = cifar(Path::new(&s.data))?;
    let mut book = open_book(env, s)?;
    let arch = Arch::Resnet8;
    let input = arch.default_input();
    for &seed in &s.seeds {
        let (task, dec) = paine_task(&ds, s, seed, input)?;
        let pool = decode_items(&task.unlabelled, input, false)?;
        let norm = pool.channel_stats();
        let dir = env.runs.join(format!("paine-s{seed}"));
        // the three starting points, each saved once (reused when resuming)
        let mut starts: Vec<(&str, ModelRef)> = Vec::new();
        for (arm, method) in [("scratch", None), ("denoising-ae", Some(Method::DenoisingAutoencoder)), ("simclr", Some(Method::Simclr))] {
            let path = dir.join(format!("{arm}.safetensors"));
            let mref = if path.is_file() && ModelCard::card_path(&path).is_file() {
                card::resolve(path.to_str().expect("utf-8 path"))?
            } else {
                let model = Model::new(arch, input, 10, seed, &env.device)?;
                let (loss, notes) = match method {
                    None => (None, "random initialisation".to_string()),
                    Some(m) => {
                        let mut ps = PretrainSpec::new(m);
                        ps.epochs = s.pretrain_epochs;
                        (env.log)(&format!(
                            "seed {seed}: pretraining {} on {} unlabelled images, {} epochs",
                            m.as_str(),
                            pool.n,
                            ps.epochs
                        ));
                        let out = pretrain::pretrain(&model, &pool, &norm, &ps, seed, &|l| (env.log)(l))?;
                        (
                            out.losses.last().copied(),
                            format!("{} on {} unlabelled CIFAR-10 images; loss per epoch {:?}", m.as_str(), pool.n, out.losses),
                        )
                    }
                };
                checkpoint(
                    &model,
                    &path,
                    &norm,
                    method.map(|m| m.as_str()).unwrap_or("random"),
                    s.pretrain_epochs,
                    seed,
                    loss,
                    notes,
                    &env.command,
                )?
            };
            starts.push((arm, mref));
        }
        let starts: Vec<(&str, &ModelRef)> = starts.iter().map(|(a, m)| (*a, m)).collect();
        paine_arms(env, &mut book, s, seed, &task, &dec, &starts)?;
    }
    Ok(book.res)
}

/// The Paine protocol from a pretrained backbone (`s.init`, at `s.input_size`): the backbone as
/// it is, and the backbone after continued SimCLR on the unlabelled pool (domain-adaptive
/// pretraining), each fine-tuned and linearly probed at every L. The backbone's own input
/// normalisation is kept throughout.
fn paine_init(env: &Env, s: &Settings) -> Result<Results> {
    let init = s.init.as_deref().expect("paine_init needs init");
    let ds = cifar(Path::new(&s.data))?;
    let mut book = open_book(env, s)?;
    let mut base = card::resolve(init)?;
    if let Some(sz) = s.input_size {
        card::override_input_size(&mut base, sz)?;
    }
    let input = base.card.input;
    let norm = base.card.normalisation.clone();
    for &seed in &s.seeds {
        let (task, dec) = paine_task(&ds, s, seed, input)?;
        let dir = env.runs.join(format!("paine-init-s{seed}"));
        let path = dir.join("continued-simclr.safetensors");
        let continued = if path.is_file() && ModelCard::card_path(&path).is_file() {
            card::resolve(path.to_str().expect("utf-8 path"))?
        } else {
            let pool = decode_items(&task.unlabelled, input, false)?;
            let model = Model::load(&base, seed, &env.device)?;
            let mut ps = PretrainSpec::new(Method::Simclr);
            ps.epochs = s.pretrain_epochs;
            (env.log)(&format!(
                "seed {seed}: continued SimCLR of {} on {} unlabelled images, {} epochs",
                base.card.name, pool.n, ps.epochs
            ));
            let out = pretrain::pretrain(&model, &pool, &norm, &ps, seed, &|l| (env.log)(l))?;
            let p = card::Provenance {
                name: format!("{}-simclr-s{seed}", base.card.name),
                source: format!("{} unlabelled CIFAR-10 images (graft experiment paine --init)", pool.n),
                license: base.card.license.clone(),
                method: "simclr".into(),
                epochs: ps.epochs,
                seed,
                final_loss: out.losses.last().copied(),
                command: env.command.clone(),
                train_seconds: Some(out.seconds),
                notes: format!("continued SimCLR from {} at {} px; loss per epoch {:?}", base.card.name, input.height, out.losses),
                parent: Some(card::Parent::of(&base)),
                data_fingerprint: Some(pool.fingerprint.clone()),
                ..card::Provenance::default()
            };
            card::save_with_card(&model, &path, &norm, p)?
        };
        paine_arms(env, &mut book, s, seed, &task, &dec, &[("imagenet", &base), ("imagenet+simclr", &continued)])?;
    }
    Ok(book.res)
}

/// Yosinski et al. (2014): AnB, AnB+, BnB, BnB+ for every cut of resnet20's groups.
pub fn yosinski(env: &Env, s: &Settings) -> Result<Results> {
    let ds = cifar(Path::new(&s.data))?;
    let mut book = open_book(env, s)?;
    let arch = Arch::Resnet20;
    let input = arch.default_input();
    for &seed in &s.seeds {
        let mut classes = ds.classes.clone();
        classes.shuffle(&mut rng_for(seed, "yosinski-halves"));
        let halves = [classes[..5].to_vec(), classes[5..10].to_vec()];
        let mut tasks = Vec::new();
        for h in &halves {
            let spec = TaskSpec {
                classes: Some(h.clone()),
                n_classes: 5,
                shots: s.shots,
                unlabelled: 0,
                test_per_class: Some(s.test_per_class),
                val_per_class: 0,
                imbalance: 1.0,
            };
            let t = sample_task(&ds, &spec, seed)?;
            let d = decode_dataset(&t, input, false, 0.0, seed)?;
            tasks.push((t, d));
        }
        let dir = env.runs.join(format!("yosinski-s{seed}"));
        // base networks A and B, trained from scratch on their half
        let mut bases = Vec::new();
        for (hi, name) in ["A", "B"].iter().enumerate() {
            let path = dir.join(format!("base{name}.safetensors"));
            let d = &tasks[hi].1;
            let norm = d.train.channel_stats();
            let key = format!("base/{name}/s{seed}");
            let mref = if path.is_file() && ModelCard::card_path(&path).is_file() && book.has(&key).is_some() {
                card::resolve(path.to_str().expect("utf-8 path"))?
            } else {
                (env.log)(&format!("seed {seed}: training base {name} on {} ({} images)", halves[hi].join(", "), d.train.n));
                let model = Model::new(arch, input, 5, seed, &env.device)?;
                let mut r = recipe::preset("scratch")?;
                r.epochs = s.epochs;
                r.seed = seed;
                let checked = r.check(&model.group_names, 5, 5)?;
                let t0 = std::time::Instant::now();
                let out = train(&model, &checked, &d.train, None, &norm, &BTreeMap::new(), &NoProgress)?;
                if let Some(e) = out.diverged {
                    return Err(GraftError::Other(format!("base {name} diverged: {e}")));
                }
                let secs = t0.elapsed().as_secs_f64();
                let (_, acc, _) = evaluate(&model, &d.test, &norm, 256)?;
                let mref = checkpoint(
                    &model,
                    &path,
                    &norm,
                    "supervised",
                    s.epochs,
                    seed,
                    out.epochs.last().map(|e| e.train_loss),
                    format!("base {name}: {}", halves[hi].join(", ")),
                    &env.command,
                )?;
                if book.has(&key).is_none() {
                    book.push(Row {
                        key,
                        arm: format!("base{name}"),
                        x: 0,
                        seed,
                        test_accuracy: acc,
                        n_train: d.train.n,
                        n_test: d.test.n,
                        train_seconds: secs,
                        run_id: None,
                        note: halves[hi].join(","),
                    })?;
                }
                mref
            };
            bases.push(mref);
        }
        let (tb, db) = &tasks[1];
        let groups = bases[0].card.groups.clone();
        for n in 1..groups.len() {
            for (arm, from, act) in
                [("BnB", 1, Action::Freeze), ("BnB+", 1, Action::Finetune), ("AnB", 0, Action::Freeze), ("AnB+", 0, Action::Finetune)]
            {
                let key = format!("{arm}/n{n}/s{seed}");
                if book.has(&key).is_some() {
                    continue;
                }
                let mut r = recipe::preset("finetune-all")?;
                r.name = Some(format!("{arm}-{n}"));
                r.strategy = Strategy::Finetune;
                r.default_action = Action::Reinit;
                r.groups = groups[..n].iter().map(|g| (g.clone(), GroupSpec { action: Some(act), lr: None })).collect();
                r.epochs = s.epochs;
                r.seed = seed;
                let d = Decoded { train: db.train.clone(), val: None, test: db.test.clone(), unlabelled: None };
                let rec = run_one(env, &bases[from], r, tb, d, "cifar10")?;
                book.push(row(key, arm, n, seed, &rec))?;
            }
        }
    }
    Ok(book.res)
}

/// mean and sample standard deviation
fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n.max(1.0);
    let sd = if v.len() > 1 { (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt() } else { 0.0 };
    (m, sd)
}

/// Markdown table (arms x x-values, mean ± s.d. over seeds) and an SVG line chart.
pub fn render(res: &Results) -> (String, String) {
    let mut arms: Vec<String> = Vec::new();
    let mut xs: Vec<usize> = Vec::new();
    for r in &res.rows {
        if !arms.contains(&r.arm) {
            arms.push(r.arm.clone());
        }
        if !xs.contains(&r.x) {
            xs.push(r.x);
        }
    }
    xs.sort();
    let s = &res.settings;
    let init_title;
    let (xname, title) = match s.experiment.as_str() {
        "paine" => ("labels per class", "CIFAR-10: pretraining without labels, then fine-tuning (resnet8)"),
        "paine-init" => {
            init_title = format!(
                "CIFAR-10: continued SimCLR on unlabelled images, then fine-tuning ({} at {} px)",
                s.init.as_deref().unwrap_or("?"),
                s.input_size.map(|v| v.to_string()).unwrap_or_else(|| "its native size".into())
            );
            ("labels per class", init_title.as_str())
        }
        _ => ("groups copied (n)", "CIFAR-10 halves: transferability by layer (resnet20)"),
    };
    let mut md = format!("# {title}\n\nSettings: `{}`\n\nCommand: `{}`\n\n", serde_json::to_string(s).expect("serialises"), res.command);
    md += &format!("Test accuracy, mean ± s.d. over seeds {:?} (n = runs).\n\n| arm |", s.seeds);
    for x in &xs {
        md += &format!(" {xname} = {x} |");
    }
    md += "\n|---|";
    md += &"---|".repeat(xs.len());
    md += "\n";
    let mut series = Vec::new();
    for a in &arms {
        md += &format!("| {a} |");
        let mut pts = Vec::new();
        for &x in &xs {
            let v: Vec<f64> = res.rows.iter().filter(|r| &r.arm == a && r.x == x).map(|r| r.test_accuracy).collect();
            if v.is_empty() {
                md += " |";
            } else {
                let (m, sd) = mean_sd(&v);
                md += &format!(" {m:.3} ± {sd:.3} (n={}) |", v.len());
                let px = if s.experiment.starts_with("paine") { (x as f64).log10() } else { x as f64 };
                pts.push((px, m));
            }
        }
        md += "\n";
        if pts.len() > 1 && !a.starts_with("base") {
            series.push(Series { name: a.clone(), points: pts });
        }
    }
    let xl = if s.experiment.starts_with("paine") { "log10(labels per class)" } else { xname };
    let svg = line_chart(title, xl, "test accuracy", &series, None);
    (md, svg)
}

pub fn write_outputs(out: &Path, res: &Results) -> Result<(PathBuf, PathBuf)> {
    let (md, svg) = render(res);
    let mp = out.join(format!("{}.md", res.settings.experiment));
    let sp = out.join(format!("{}.svg", res.settings.experiment));
    write_atomic(&mp, md.as_bytes())?;
    write_atomic(&sp, svg.as_bytes())?;
    Ok((mp, sp))
}
