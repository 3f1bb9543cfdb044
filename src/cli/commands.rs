//! One function per command.
use super::progress::EpochBar;
use super::{command_line, default_meta_dir, DataArgs};
use crate::backbones::{card, Arch, ModelCard};
use crate::data::{self, load_dataset, LoadOptions};
use crate::error::{GraftError, Result, EXIT_OK, EXIT_RUN_FAILED};
use crate::executor::{self, RunOptions};
use crate::recipe::{self, Recipe};
use crate::util::{read_to_string, write_atomic};
use clap::{Args, Subcommand};
use std::path::PathBuf;

pub(super) fn load_opts(d: &DataArgs, seed: u64) -> LoadOptions {
    LoadOptions { data: d.data.clone(), test: d.test.clone(), unlabelled: d.unlabelled.clone(), seed, test_fraction: d.test_fraction }
}

pub(super) fn print_json<T: serde::Serialize>(v: &T) {
    outln!("{}", serde_json::to_string_pretty(v).expect("serialises"));
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Recipe file (JSON).
    #[arg(long, conflicts_with = "preset", required_unless_present = "preset")]
    pub recipe: Option<PathBuf>,
    /// Preset: linear-probe, finetune-all, scratch.
    #[arg(long)]
    pub preset: Option<String>,
    /// Backbone: a model name from `graft models`, or a .safetensors file with its .json card
    /// (default: the recipe's `backbone`, else resnet8-cifar10).
    #[arg(long)]
    pub backbone: Option<String>,
    /// Seed (overrides the recipe's).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Override the recipe's epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Override the recipe's precision: f32, or bf16 mixed precision (bfloat16 convolutions and
    /// matmuls, float32 master weights; pays on a GPU).
    #[arg(long, value_enum)]
    pub precision: Option<crate::kernels::Precision>,
    /// Meta-dataset folder to append the run to (default: $GRAFT_META or ~/.local/share/graft/meta_dataset).
    #[arg(long)]
    pub meta: Option<PathBuf>,
    /// Square input size for the backbone instead of its card's (e.g. 96 for efficientnet-lite0 on small images).
    #[arg(long)]
    pub input_size: Option<usize>,
    /// Do not append the run to any meta-dataset.
    #[arg(long, conflicts_with = "meta")]
    pub no_meta: bool,
    /// Folder for run directories.
    #[arg(long, default_value = "runs")]
    pub runs: PathBuf,
    /// Dataset family recorded in the meta-dataset (default: the data folder's name).
    #[arg(long)]
    pub family: Option<String>,
    /// Task id recorded in the meta-dataset (default: the training set's fingerprint).
    #[arg(long)]
    pub task_id: Option<String>,
    /// Print the run record as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Do not save the trained classifier (model.safetensors, classifier.json) in the run
    /// directory; `graft predict` needs it.
    #[arg(long)]
    pub no_save_model: bool,
}

pub fn load_recipe(file: &Option<PathBuf>, preset: &Option<String>) -> Result<Recipe> {
    match (file, preset) {
        (Some(f), _) => Recipe::from_json(&read_to_string(f)?, &f.display().to_string()),
        (None, Some(p)) => recipe::preset(p),
        (None, None) => Err(GraftError::Usage("pass --recipe FILE or --preset NAME".into())),
    }
}

/// The backbone a run uses: `--backbone`, else the recipe's `backbone`, else resnet8-cifar10.
/// When both are given they must name the same weights (same sha256).
fn run_backbone(flag: &Option<String>, recipe: &Recipe) -> Result<String> {
    match (flag, &recipe.backbone) {
        (Some(f), Some(r)) if f != r => {
            let (fc, rc) = (card::resolve(f)?, card::resolve(r)?);
            if fc.card.sha256 != rc.card.sha256 {
                return Err(GraftError::Usage(format!(
                    "--backbone {f} conflicts with the recipe's \"backbone\": {r:?}; drop --backbone to run the recipe as written, \
                     or remove the recipe's backbone field"
                )));
            }
            Ok(f.clone())
        }
        (Some(f), _) => Ok(f.clone()),
        (None, Some(r)) => Ok(r.clone()),
        (None, None) => Ok("resnet8-cifar10".into()),
    }
}

pub fn run(a: RunArgs) -> Result<i32> {
    let mut recipe = load_recipe(&a.recipe, &a.preset)?;
    if let Some(s) = a.seed {
        recipe.seed = s;
    }
    if let Some(e) = a.epochs {
        recipe.epochs = e;
    }
    if let Some(p) = a.precision {
        recipe.precision = p;
    }
    let backbone = run_backbone(&a.backbone, &recipe)?;
    let (device, device_name) = executor::select_device(&a.device)?;
    let meta_dir = if a.no_meta { None } else { Some(a.meta.clone().unwrap_or_else(default_meta_dir)) };
    let opts = RunOptions {
        data: load_opts(&a.data, recipe.seed),
        skip_bad: a.data.skip_bad,
        recipe: recipe.clone(),
        backbone,
        device,
        device_name,
        runs_dir: a.runs.clone(),
        meta_dir: meta_dir.clone(),
        family: a.family.clone(),
        task_id: a.task_id.clone(),
        command: command_line(),
        input_size: a.input_size,
        context: Default::default(),
        save_model: !a.no_save_model,
    };
    let bar = EpochBar::new(recipe.epochs, "train", a.json);
    let rec = executor::run(&opts, &bar)?;
    bar.finish();
    if a.json {
        print_json(&rec);
    } else {
        errln!(
            "run {}: {} on {} -> test_accuracy {:.4}{}{} (n_test {}), {:.1}s training; record in {}",
            rec.run_id,
            rec.strategy,
            rec.backbone,
            rec.test_accuracy,
            rec.interval_note(),
            rec.balanced_note(),
            rec.n_test,
            rec.train_seconds,
            rec.run_dir
        );
        for g in &rec.groups {
            errln!("  {:<8} {:<8} lr {:<10.3e} weight_change {:.4}", g.name, g.action, g.lr, g.weight_change);
        }
        if let Some(m) = &meta_dir {
            errln!("appended to meta-dataset {}", m.display());
        }
        if rec.saved_model.is_some() {
            errln!("classify new images with it: graft predict --run {} --data IMAGES", rec.run_dir);
        }
    }
    if rec.status == executor::run::RunStatus::Diverged {
        errln!("error: run diverged: {}", rec.error.clone().unwrap_or_default());
        return Ok(EXIT_RUN_FAILED);
    }
    Ok(EXIT_OK)
}

#[derive(Args, Debug)]
pub struct ModelsArgs {
    #[arg(long)]
    pub json: bool,
}

pub fn models(a: ModelsArgs) -> Result<i32> {
    let list = card::list_models()?;
    if a.json {
        let cards: Vec<&ModelCard> = list.iter().map(|m| &m.card).collect();
        print_json(&serde_json::json!({ "models": cards }));
    } else {
        for m in &list {
            let c = &m.card;
            errln!(
                "{:<20} {:<9} {}x{}x{} source {:<12} acc {} params {} ({})",
                c.name,
                c.arch,
                c.input.channels,
                c.input.height,
                c.input.width,
                c.source,
                c.source_accuracy
                    .map(|v| format!("{v:.4}{}", if c.notes.contains("REPORTED") { " (reported upstream)" } else { "" }))
                    .unwrap_or("-".into()),
                c.params,
                m.weights.display()
            );
        }
        if list.is_empty() {
            errln!("no models found in {:?}", card::model_dirs());
        }
    }
    Ok(EXIT_OK)
}

#[derive(Args, Debug)]
pub struct TaskArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Comma-separated class names (default: --n-classes drawn at random).
    #[arg(long, value_delimiter = ',')]
    pub classes: Option<Vec<String>>,
    #[arg(long, default_value_t = 5)]
    pub n_classes: usize,
    #[arg(long)]
    pub shots: usize,
    #[arg(long, default_value_t = 0)]
    pub unlabelled_pool: usize,
    /// Test images per class (default: all of those classes' test images).
    #[arg(long)]
    pub test_per_class: Option<usize>,
    /// Labelled validation images per class (written to OUT/val/), disjoint from the shots.
    #[arg(long, default_value_t = 0)]
    pub val_per_class: usize,
    /// Most over fewest training images a class: above 1, the classes (in a seeded order) get
    /// from --shots down to --shots / IMBALANCE images, exponentially (long-tailed CIFAR's
    /// profile); test and validation images per class are unchanged.
    #[arg(long, default_value_t = 1.0)]
    pub imbalance: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long)]
    pub out: PathBuf,
}

pub fn task(a: TaskArgs) -> Result<i32> {
    let ds = load_dataset(&load_opts(&a.data, a.seed))?;
    let spec = data::task::TaskSpec {
        classes: a.classes.clone(),
        n_classes: a.n_classes,
        shots: a.shots,
        unlabelled: a.unlabelled_pool,
        test_per_class: a.test_per_class,
        val_per_class: a.val_per_class,
        imbalance: a.imbalance,
    };
    let t = data::task::sample_task(&ds, &spec, a.seed)?;
    data::task::write_imagefolder(&t, &a.out)?;
    errln!(
        "wrote task to {}: classes {}, {} train, {} test, {} unlabelled",
        a.out.display(),
        t.classes.join(","),
        t.train.len(),
        t.test.len(),
        t.unlabelled.len()
    );
    Ok(EXIT_OK)
}

#[derive(Args, Debug)]
pub struct RecipeArgs {
    #[command(subcommand)]
    pub cmd: RecipeCmd,
}

#[derive(Subcommand, Debug)]
pub enum RecipeCmd {
    /// Print a preset as a recipe document.
    Preset { name: String },
    /// Print the recipe JSON Schema.
    Schema,
    /// Validate a recipe file against a backbone and a class count.
    Check {
        file: PathBuf,
        /// Default: the recipe's `backbone`, else resnet8-cifar10.
        #[arg(long)]
        backbone: Option<String>,
        #[arg(long)]
        n_classes: usize,
    },
}

pub fn recipe(a: RecipeArgs) -> Result<i32> {
    match a.cmd {
        RecipeCmd::Preset { name } => outln!("{}", recipe::preset(&name)?.to_json()),
        RecipeCmd::Schema => print_json(&Recipe::json_schema()),
        RecipeCmd::Check { file, backbone, n_classes } => {
            let r = Recipe::from_json(&read_to_string(&file)?, &file.display().to_string())?;
            let m = card::resolve(&run_backbone(&backbone, &r)?)?;
            let c = r.check(&m.card.groups, m.card.n_classes, n_classes)?;
            let groups: Vec<_> =
                c.groups().iter().map(|g| serde_json::json!({"name": g.name, "action": g.action.as_str(), "lr": g.lr})).collect();
            print_json(&serde_json::json!({"valid": true, "strategy": c.recipe().strategy.as_str(), "groups": groups}));
        }
    }
    Ok(EXIT_OK)
}

#[derive(Args, Debug)]
pub struct MetaArgs {
    #[command(subcommand)]
    pub cmd: MetaCmd,
}

#[derive(Subcommand, Debug)]
pub enum MetaCmd {
    /// Print a summary of a meta-dataset folder.
    Show {
        #[arg(long)]
        meta: Option<PathBuf>,
    },
    /// Fit the meta-learner (GP vs kNN, chosen by family-grouped held-out error).
    Fit(super::advisor::MetaFitArgs),
    /// Leave-one-family-out evaluation of the advisor against baselines.
    Eval(super::advisor::MetaEvalArgs),
    /// Compare two `meta eval` runs (their meta-eval.json) method by method, paired per task,
    /// with a family-bootstrap interval on each difference.
    Compare(super::advisor::MetaCompareArgs),
    /// Score a fitted meta-learner on logged runs, as `recommend` states them (accuracy and 80%
    /// interval): bias, RMSE and interval coverage, by whether the run's recipe kind and task
    /// were among those the model was fitted on, and per configuration. Prospective on a sweep
    /// logged after the fit.
    Score(super::advisor::MetaScoreArgs),
    /// Measure the stored images' native size and colourfulness for runs logged before graft
    /// recorded them: each run's task is drawn again from its `task_spec` with its sweep plan
    /// (`source=sweep-<plan>/` -> `<plans>/<plan>.toml`), and each changed part file is
    /// rewritten atomically. Rows already measured are left alone.
    Backfill {
        #[arg(long)]
        meta: Option<PathBuf>,
        /// Folder of the sweep plans (default: the meta-dataset's `_plans/`).
        #[arg(long)]
        plans: Option<PathBuf>,
        /// Measure and report, write nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

pub fn meta(a: MetaArgs) -> Result<i32> {
    match a.cmd {
        MetaCmd::Show { meta } => {
            let dir = meta.unwrap_or_else(default_meta_dir);
            let df = crate::metadataset::read_all(&dir)?;
            errln!("{} runs, {} columns in {}", df.height(), df.width(), dir.display());
            outln!("{df}");
        }
        MetaCmd::Fit(f) => return super::advisor::meta_fit(f),
        MetaCmd::Eval(e) => return super::advisor::meta_eval(e),
        MetaCmd::Compare(c) => return super::advisor::meta_compare(c),
        MetaCmd::Score(c) => return super::advisor::meta_score(c),
        MetaCmd::Backfill { meta, plans, dry_run } => {
            let dir = meta.unwrap_or_else(default_meta_dir);
            let plans = plans.unwrap_or_else(|| dir.join("_plans"));
            if !plans.is_dir() {
                return Err(GraftError::Usage(format!(
                    "--plans {}: no such folder; pass --plans with the folder of the sweep plans (`<plan>.toml`) the meta-dataset's `source=sweep-<plan>/` parts came from",
                    plans.display()
                )));
            }
            let s = crate::sweep::backfill::backfill(&dir, &plans, dry_run, &|m| errln!("{m}"))?;
            print_json(&serde_json::to_value(&s).expect("serialises"));
        }
    }
    Ok(EXIT_OK)
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[arg(long, value_enum, default_value = "resnet8")]
    pub arch: Arch,
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    /// Timed steps (after 2 warm-up steps).
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// f32, or bf16 mixed precision (bfloat16 convolutions and matmuls, float32 master weights).
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: crate::kernels::Precision,
    /// Also time SimCLR pretraining (two augmented views, projection head, NT-Xent).
    #[arg(long)]
    pub simclr: bool,
    /// Instead of timing: check each of graft's GPU kernels (cuDNN convolutions, fused
    /// BatchNorm, add+ReLU, AdamW), forward and backward, against candle's ops on --device
    /// (needs a build with the `cudnn` feature and a CUDA device); exits 1 if one is off.
    #[arg(long)]
    pub check_kernels: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(serde::Serialize)]
struct KernelCheck {
    op: String,
    max_rel_error: f32,
    tolerance: f32,
    ok: bool,
}

fn check_kernels(a: &BenchArgs) -> Result<i32> {
    let (device, name) = executor::select_device(&a.device)?;
    if !device.is_cuda() {
        return Err(GraftError::Usage(format!("--check-kernels checks graft's CUDA kernels: give --device cuda (got {name})")));
    }
    let rows: Vec<KernelCheck> = crate::kernels::gpu::self_check(&device)?
        .into_iter()
        .map(|(op, e, tol)| KernelCheck { ok: e <= tol, op, max_rel_error: e, tolerance: tol })
        .collect();
    let bad = rows.iter().filter(|r| !r.ok).count();
    if a.json {
        print_json(&rows);
    } else {
        for r in &rows {
            errln!(
                "{} {:<60} max rel. error {:.2e} (tolerance {:.0e})",
                if r.ok { "ok  " } else { "FAIL" },
                r.op,
                r.max_rel_error,
                r.tolerance
            );
        }
        errln!("{} of {} checks within tolerance on {name}", rows.len() - bad, rows.len());
    }
    Ok(if bad == 0 { EXIT_OK } else { 1 })
}

pub fn bench(a: BenchArgs) -> Result<i32> {
    if a.batch < 2 || a.steps == 0 {
        return Err(GraftError::Usage("--batch must be at least 2 and --steps at least 1".into()));
    }
    if a.check_kernels {
        return check_kernels(&a);
    }
    let (device, name) = executor::select_device(&a.device)?;
    let _precision = crate::kernels::set_precision(a.precision);
    let mut r = executor::bench::bench(a.arch, a.batch, a.steps, &device, &name)?;
    if a.simclr {
        r.simclr_images_per_second = Some(executor::bench::bench_simclr(a.arch, a.batch, a.steps, &device)?);
        r.peak_rss_bytes = executor::bench::peak_rss_bytes();
    }
    if a.json {
        print_json(&r);
    } else {
        errln!(
            "{} batch {} {} on {} ({} threads): train {:.1} img/s ({:.1} GFLOP/s), extract {:.1} img/s; peak memory {}; peak {}",
            r.arch,
            r.batch,
            r.precision.as_str(),
            r.device,
            r.threads,
            r.train_images_per_second,
            r.train_gflops_achieved,
            r.extract_images_per_second,
            r.peak_rss_bytes.map(|b| format!("{:.2} GB", b as f64 / 1e9)).unwrap_or_else(|| "unknown".into()),
            r.machine_peak_gflops.map(|p| format!("{p:.0} GFLOP/s ({})", r.peak_note)).unwrap_or(r.peak_note.clone())
        );
        if let Some(s) = r.simclr_images_per_second {
            errln!("SimCLR pretraining: {s:.0} img/s (two views each)");
        }
    }
    Ok(EXIT_OK)
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[arg(long, default_value = "resnet8-cifar10")]
    pub backbone: String,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Square input size for the backbone instead of its card's.
    #[arg(long)]
    pub input_size: Option<usize>,
    /// Also write each group's pooled features, the source head's softmax and the labels as .npy files here.
    #[arg(long)]
    pub dump_features: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

pub fn inspect(a: InspectArgs) -> Result<i32> {
    let r = crate::metafeatures::inspect(&crate::metafeatures::InspectOptions {
        data: load_opts(&a.data, a.seed),
        backbone: a.backbone.clone(),
        skip_bad: a.data.skip_bad,
        dump_features: a.dump_features.clone(),
        input_size: a.input_size,
    })?;
    if a.json {
        print_json(&r);
    } else {
        let d = &r.dataset;
        errln!(
            "{}: {} classes, {}..{} images per class (median {}), {} unlabelled; stored {}x{}x{}; pixel separability {}",
            d.root,
            d.n_classes,
            d.images_per_class.min,
            d.images_per_class.max,
            d.images_per_class.median,
            d.n_unlabelled,
            d.image_width,
            d.image_height,
            d.image_channels,
            d.pixel_separability.map(|v| format!("{v:.3}")).unwrap_or("-".into())
        );
        let opt = |v: Option<f64>| v.map(|v| format!("{v:.4}")).unwrap_or_else(|| "n/a".into());
        errln!("backbone {}: LEEP {} NCE {} Frechet {}", r.backbone, opt(r.leep), opt(r.nce), opt(r.frechet_distance));
        for g in &r.groups {
            errln!(
                "  {:<8} dim {:<4} LogME {:>8.4}  H-score {:>8.4}  probe {}",
                g.name,
                g.dim,
                g.logme,
                g.hscore,
                g.probe_accuracy.map(|v| format!("{v:.3}")).unwrap_or("-".into())
            );
        }
        if let Some(c) = &r.label_curve {
            let pts: Vec<String> = c.points.iter().map(|p| format!("{}: {:.3}", p.shots, p.accuracy)).collect();
            errln!(
                "label curve (nearest-centroid probe on the last group, held-out training images, by images a class): {}; fitted {:.3} at {} a class, {:.3} at twice that ({:+.3})",
                pts.join(", "),
                c.at_shots,
                c.shots,
                c.at_shots + c.gain_from_twice,
                c.gain_from_twice
            );
        }
    }
    Ok(EXIT_OK)
}

#[derive(Args, Debug)]
pub struct LogmeArgs {
    /// n x d float32 or float64 .npy
    #[arg(long)]
    pub features: PathBuf,
    /// n integer labels .npy (any integer dtype)
    #[arg(long)]
    pub labels: PathBuf,
    #[arg(long)]
    pub json: bool,
}

pub fn logme(a: LogmeArgs) -> Result<i32> {
    let f = crate::data::npy::read_features(&a.features)?;
    let raw = crate::data::npy::read_labels(&a.labels)?;
    if raw.len() != f.nrows() {
        return Err(GraftError::Data(format!(
            "--labels {} has {} labels but --features {} has {} rows",
            a.labels.display(),
            raw.len(),
            a.features.display(),
            f.nrows()
        )));
    }
    if f.iter().any(|v| !v.is_finite()) {
        return Err(GraftError::Data(format!("--features {}: contains NaN or infinite values", a.features.display())));
    }
    // map labels to 0..k in sorted order
    let mut uniq = raw.clone();
    uniq.sort();
    uniq.dedup();
    if uniq.len() < 2 {
        return Err(GraftError::Data(format!("--labels {}: LogME needs at least two classes", a.labels.display())));
    }
    let y: Vec<usize> = raw.iter().map(|v| uniq.binary_search(v).expect("present")).collect();
    let v = crate::metafeatures::transfer::logme(&f, &y);
    if a.json {
        print_json(&serde_json::json!({"logme": v, "n": f.nrows(), "d": f.ncols(), "classes": uniq.len()}));
    } else {
        outln!("{v}");
    }
    Ok(EXIT_OK)
}

#[derive(Args, Debug)]
pub struct SourceStatsArgs {
    /// Model name or .safetensors file.
    #[arg(long)]
    pub backbone: String,
    /// The model's source data (its training split is used).
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, default_value_t = 5000)]
    pub max_images: usize,
}

pub fn source_stats(a: SourceStatsArgs) -> Result<i32> {
    let m = card::resolve(&a.backbone)?;
    let p = crate::metafeatures::write_source_stats(&m, &a.data, a.max_images, 0)?;
    errln!("wrote {}", p.display());
    Ok(EXIT_OK)
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Two or more run directories (each with run.json; `predictions.csv` for the paired test).
    #[arg(required = true, num_args = 2..)]
    pub runs: Vec<PathBuf>,
    /// Print one JSON object (`runs`, `pairs`) on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Runs side by side: each test accuracy with its 95% interval, and every pair scored on the
/// same test images by the exact McNemar test (Holm-adjusted over the pairs).
pub fn compare(a: CompareArgs) -> Result<i32> {
    let runs = a.runs.iter().map(|d| crate::report::load_run(d)).collect::<Result<Vec<_>>>()?;
    let c = crate::report::stats::compare(&runs);
    if a.json {
        print_json(&c);
    } else {
        for l in c.lines() {
            errln!("{l}");
        }
    }
    Ok(EXIT_OK)
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Run directories (each with run.json and metrics.csv).
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// Output folder for report.html (default: the first run directory).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also compute per-group transferability (graft inspect) for the first run's data and backbone.
    #[arg(long)]
    pub inspect: bool,
}

pub fn report(a: ReportArgs) -> Result<i32> {
    let runs = a.runs.iter().map(|d| crate::report::load_run(d)).collect::<Result<Vec<_>>>()?;
    let ins = if a.inspect {
        let r = &runs[0].record;
        Some(crate::metafeatures::inspect(&crate::metafeatures::InspectOptions {
            data: LoadOptions { seed: r.seed, ..LoadOptions::new(&r.dataset.root) },
            backbone: if r.backbone_ref.is_empty() { r.backbone.clone() } else { r.backbone_ref.clone() },
            skip_bad: true,
            dump_features: None,
            input_size: r.input.map(|i| i.height),
        })?)
    } else {
        None
    };
    let html = crate::report::render(&runs, ins.as_ref());
    let out = a.out.clone().unwrap_or_else(|| a.runs[0].clone());
    let path = out.join("report.html");
    write_atomic(&path, html.as_bytes())?;
    errln!("wrote {}", path.display());
    Ok(EXIT_OK)
}
