//! Commands that grow and use the meta-dataset: `sweep` (and the advisor's commands).
use super::commands::{load_opts, print_json};
use crate::error::{Result, EXIT_OK, EXIT_RUN_FAILED};
use crate::executor;
use crate::metalearner as ml;
use crate::sweep::{self, SweepOptions};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct SweepArgs {
    /// Sweep plan (TOML): families, task space, backbones, recipe space, seeds (see docs/sweep.md).
    #[arg(long)]
    pub plan: PathBuf,
    /// Meta-dataset folder the rows go to (part files under OUT/source=sweep-<plan name>/).
    #[arg(long, default_value = "meta_dataset")]
    pub out: PathBuf,
    /// Where each run's run.json and metrics.csv go.
    #[arg(long, default_value = "runs")]
    pub runs: PathBuf,
    /// Run only shard I of N (every N-th task-backbone block, counting from I), e.g. 0/4.
    #[arg(long, default_value = "0/1")]
    pub shard: String,
    /// Recover staged runs of an interrupted sweep and skip every run already recorded. Without
    /// it, a plan whose runs are already in OUT is refused.
    #[arg(long)]
    pub resume: bool,
    /// Compact staged runs into a part file every N runs.
    #[arg(long, default_value_t = 25)]
    pub compact_every: usize,
    /// Stop after N runs (resume later with --resume).
    #[arg(long)]
    pub max_runs: Option<usize>,
    /// Count the plan's runs (total, this shard, already done) and run nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[arg(long)]
    pub json: bool,
}

pub fn sweep(a: SweepArgs) -> Result<i32> {
    let (device, device_name) = executor::select_device(&a.device)?;
    let opts = SweepOptions {
        plan: a.plan.clone(),
        out: a.out.clone(),
        runs_dir: a.runs.clone(),
        shard: sweep::parse_shard(&a.shard)?,
        resume: a.resume || a.dry_run,
        compact_every: a.compact_every.max(1),
        max_runs: a.max_runs,
        dry_run: a.dry_run,
        device,
        device_name,
        command: super::command_line(),
    };
    let s = sweep::sweep(&opts, &|m| errln!("{m}"))?;
    if a.json {
        print_json(&s);
    } else {
        errln!(
            "sweep {} shard {}: {} runs in plan, {} in this shard: {} already done, {} ran, {} failed, {} remaining; {:.0} s",
            s.plan,
            s.shard,
            s.units_in_plan,
            s.units_in_shard,
            s.already_done,
            s.ran,
            s.failed,
            s.remaining,
            s.seconds
        );
    }
    Ok(if s.failed > 0 { EXIT_RUN_FAILED } else { EXIT_OK })
}

/// Meta-dataset folders to learn from: `--meta` as given, else the shipped `meta_dataset/`
/// (./meta_dataset, or beside the installed binary) plus the user's run log if it has runs.
fn meta_dirs(given: &[PathBuf]) -> Vec<PathBuf> {
    if !given.is_empty() {
        return given.to_vec();
    }
    let mut v = Vec::new();
    let local = PathBuf::from("meta_dataset");
    if local.is_dir() {
        v.push(local);
    } else if let Some(repo) = std::env::current_exe().ok().and_then(|e| e.parent()?.parent()?.parent().map(|p| p.join("meta_dataset"))) {
        if repo.is_dir() {
            v.push(repo);
        }
    }
    let user = super::default_meta_dir();
    if !crate::metadataset::part_files(&user).is_empty() {
        v.push(user);
    }
    v
}

/// The meta-learner file: `--model` as given, else `meta-learner.json` in the model folders.
fn model_path(given: &Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p.clone());
    }
    for d in crate::backbones::card::model_dirs() {
        let p = d.join("meta-learner.json");
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(crate::GraftError::Data(
        "no meta-learner found (models/meta-learner.json); fit one with `graft meta fit` or pass --model FILE".into(),
    ))
}

#[derive(Args, Debug)]
pub struct MetaFitArgs {
    /// Meta-dataset folder(s) (repeatable; default: the shipped meta_dataset/ and your run log).
    #[arg(long)]
    pub meta: Vec<PathBuf>,
    /// Where the fitted meta-learner goes.
    #[arg(long, default_value = "models/meta-learner.json")]
    pub out: PathBuf,
    /// Observations the Gaussian process is fitted on (a seeded subsample of task x recipe cells).
    #[arg(long, default_value_t = 600)]
    pub gp_points: usize,
    /// Observations the fitted GP is then conditioned on, its hyperparameters fixed (a larger
    /// seeded subsample that contains the first; at most --gp-points: the same observations).
    /// In `meta eval` (339 held-out tasks) 4 000 against 400 lowered regret@1 from 0.215 to 0.198
    /// and regret@3 from 0.122 to 0.092; the cost is one Cholesky factor of that size.
    #[arg(long, default_value_t = ml::CONDITION_POINTS)]
    pub condition_points: usize,
    /// L-BFGS iterations of the GP's marginal-likelihood fit.
    #[arg(long, default_value_t = 40)]
    pub gp_iters: u64,
    /// The scale the GPs model accuracy on: `arcsine` (asin(sqrt(accuracy)), the variance-
    /// stabilising transform of a binomial proportion; predictions stay in [0, 1] and intervals
    /// narrow towards 0 and 1) or `identity` (the raw accuracy, as before session 19). In `meta
    /// eval` (339 held-out tasks) arcsine against identity: regret@1 0.201 against 0.198, regret@3
    /// 0.085 against 0.092, the same RMSE (13.3 points).
    #[arg(long, default_value = "arcsine", value_parser = ["identity", "arcsine"])]
    pub warp: String,
    /// Family-grouped cross-validation folds (at least 2): they choose between the GP and kNN
    /// and calibrate the stated interval.
    #[arg(long, default_value_t = ml::CV_FOLDS)]
    pub cv_folds: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long)]
    pub json: bool,
}

/// `--cv-folds` of `meta fit` and `meta eval`: one fold would hold out every family and leave
/// nothing to fit on.
fn cv_folds_arg(k: usize) -> Result<usize> {
    if k < 2 {
        return Err(crate::GraftError::Usage(format!("--cv-folds must be at least 2 (family-grouped folds), got {k}")));
    }
    Ok(k)
}

pub fn meta_fit(a: MetaFitArgs) -> Result<i32> {
    let cv_folds = cv_folds_arg(a.cv_folds)?;
    let dirs = meta_dirs(&a.meta);
    if dirs.is_empty() {
        return Err(crate::GraftError::Data("no meta-dataset found: pass --meta DIR (e.g. meta_dataset)".into()));
    }
    let refs: Vec<&std::path::Path> = dirs.iter().map(|d| d.as_path()).collect();
    let obs = ml::features::load_obs(&refs)?;
    errln!("fitting on {} runs from {}", obs.len(), dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "));
    let fo = ml::FitOptions {
        max_gp_points: a.gp_points,
        condition_points: a.condition_points,
        gp_iters: a.gp_iters,
        seed: a.seed,
        cv_folds,
        warp: ml::Warp::parse(&a.warp).unwrap_or_default(),
        ..Default::default()
    };
    let t0 = std::time::Instant::now();
    let m = ml::fit(&obs, &fo, &|s| errln!("{s}"))?;
    if let Some(p) = a.out.parent() {
        std::fs::create_dir_all(p).map_err(|e| crate::GraftError::io(p, e))?;
    }
    m.save(&a.out)?;
    let summary = serde_json::json!({
        "out": a.out.display().to_string(), "learner": m.learner, "n_runs": m.n_runs, "n_tasks": m.n_tasks,
        "families": m.families, "meta_hash": m.meta_hash, "cv": m.cv, "seconds": t0.elapsed().as_secs_f64(),
        "gp_hyperparameter_cells": a.gp_points.min(m.gp.x.len()), "gp_conditioned_cells": m.gp.x.len(), "warp": m.warp,
        "gp_lengthscales": m.encoder.feature_names().into_iter().zip(m.gp.lengthscales()).collect::<Vec<_>>(),
    });
    if a.json {
        print_json(&summary);
    } else {
        errln!(
            "wrote {} ({} learner, {} runs, {} tasks, {:.0} s)",
            a.out.display(),
            m.learner,
            m.n_runs,
            m.n_tasks,
            t0.elapsed().as_secs_f64()
        );
    }
    Ok(EXIT_OK)
}

#[derive(Args, Debug)]
pub struct MetaEvalArgs {
    #[arg(long)]
    pub meta: Vec<PathBuf>,
    /// Budgets 1..=K.
    #[arg(long, default_value_t = 5)]
    pub budget: usize,
    #[arg(long, default_value_t = 600)]
    pub gp_points: usize,
    /// Observations each held-out GP is conditioned on after its hyperparameter fit (see `meta fit`).
    #[arg(long, default_value_t = ml::CONDITION_POINTS)]
    pub condition_points: usize,
    #[arg(long, default_value_t = 40)]
    pub gp_iters: u64,
    /// The GPs' scale (see `meta fit --warp`).
    #[arg(long, default_value = "arcsine", value_parser = ["identity", "arcsine"])]
    pub warp: String,
    /// Family-grouped CV folds of each held-out fold's refit (see `meta fit --cv-folds`); they
    /// calibrate its interval and choose its ranker. The default is `meta fit`'s, so the
    /// coverage measured is that of intervals calibrated as the shipped model's are (2 folds, as
    /// before session 24, calibrate on half the training families: wider intervals).
    #[arg(long, default_value_t = ml::CV_FOLDS)]
    pub cv_folds: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Folder for meta-eval.md, regret.svg, calibration.svg and meta-eval.json.
    #[arg(long, default_value = "docs/meta-eval")]
    pub out: PathBuf,
    #[arg(long)]
    pub json: bool,
}

pub fn meta_eval(a: MetaEvalArgs) -> Result<i32> {
    let cv_folds = cv_folds_arg(a.cv_folds)?;
    let dirs = meta_dirs(&a.meta);
    let refs: Vec<&std::path::Path> = dirs.iter().map(|d| d.as_path()).collect();
    let obs = ml::features::load_obs(&refs)?;
    let fo = ml::FitOptions {
        max_gp_points: a.gp_points,
        condition_points: a.condition_points,
        gp_iters: a.gp_iters,
        seed: a.seed,
        cv_folds,
        warp: ml::Warp::parse(&a.warp).unwrap_or_default(),
        ..Default::default()
    };
    let r = ml::eval::evaluate(&obs, a.budget.max(1), &fo, &|s| errln!("{s}"))?;
    std::fs::create_dir_all(&a.out).map_err(|e| crate::GraftError::io(&a.out, e))?;
    let md = ml::eval::markdown(&r);
    let (regret, cal) = crate::report::meta_eval_plots(&r);
    let w = |name: &str, s: &str| crate::util::write_atomic(&a.out.join(name), s.as_bytes());
    w(
        "meta-eval.md",
        &format!(
            "# graft meta eval\n\n`{}`\n\n{md}\n![regret vs budget](regret.svg)\n![calibration](calibration.svg)\n",
            super::command_line()
        ),
    )?;
    w("regret.svg", &regret)?;
    w("calibration.svg", &cal)?;
    w("meta-eval.json", &serde_json::to_string_pretty(&r).expect("serialises"))?;
    w("meta-eval.html", &crate::report::render_meta_eval(&r))?;
    if a.json {
        print_json(&r);
    } else {
        errln!("{md}");
        errln!("wrote {}", a.out.display());
    }
    Ok(EXIT_OK)
}

#[derive(Args, Debug)]
pub struct MetaScoreArgs {
    /// Meta-dataset folder(s) whose runs are scored (repeatable; a `source=...` folder inside
    /// one scores that source only, e.g. a sweep logged after the model was fitted).
    #[arg(long, required = true)]
    pub meta: Vec<PathBuf>,
    /// Meta-learner file (default: models/meta-learner.json).
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

/// `graft meta score`: a fitted meta-learner's predictions against logged runs.
pub fn meta_score(a: MetaScoreArgs) -> Result<i32> {
    for d in &a.meta {
        if !d.is_dir() {
            return Err(crate::GraftError::Usage(format!(
                "--meta {}: no such folder; pass a meta-dataset folder (e.g. meta_dataset)",
                d.display()
            )));
        }
    }
    let model = ml::MetaModel::load(&model_path(&a.model)?)?;
    let refs: Vec<&std::path::Path> = a.meta.iter().map(|d| d.as_path()).collect();
    let obs = ml::features::load_obs(&refs)?;
    let r = ml::score::score(&model, &obs);
    if r.runs == 0 {
        return Err(crate::GraftError::Data(format!(
            "none of the {} runs in {} is on a backbone the meta-learner knows ({}); score a meta-dataset of those backbones",
            obs.len(),
            a.meta.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "),
            model.encoder.backbones.join(", ")
        )));
    }
    if a.json {
        print_json(&r);
    } else {
        outln!("{}", ml::score::markdown(&r));
    }
    Ok(EXIT_OK)
}

#[derive(Args, Debug)]
pub struct MetaCompareArgs {
    /// The baseline evaluation: a meta-eval.json, or the folder `meta eval --out` wrote it to.
    pub base: PathBuf,
    /// The evaluation compared against it (the same form).
    pub new: PathBuf,
    /// Budgets to compare (1-based, repeatable; default 1 and 3).
    #[arg(long)]
    pub budget: Vec<usize>,
    /// Only methods whose name contains this text (e.g. `shipped`).
    #[arg(long)]
    pub method: Option<String>,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long)]
    pub json: bool,
}

/// Reads a saved evaluation, naming the file and what to do when it is not one.
fn read_saved_eval(p: &std::path::Path) -> Result<ml::eval::SavedEval> {
    let file = if p.is_dir() { p.join("meta-eval.json") } else { p.to_path_buf() };
    let bytes = std::fs::read(&file).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            crate::GraftError::Usage(format!(
                "{} does not exist; pass a meta-eval.json or the folder `graft meta eval --out DIR` wrote",
                file.display()
            ))
        } else {
            crate::GraftError::io(&file, e)
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        crate::GraftError::Data(format!(
            "{}: not a `graft meta eval` result ({e}); pass the meta-eval.json that `graft meta eval --out DIR` writes",
            file.display()
        ))
    })
}

pub fn meta_compare(a: MetaCompareArgs) -> Result<i32> {
    let (base, new) = (read_saved_eval(&a.base)?, read_saved_eval(&a.new)?);
    let budgets = if a.budget.is_empty() { vec![1, 3] } else { a.budget.clone() };
    if let Some(b) = budgets.iter().find(|b| **b == 0) {
        return Err(crate::GraftError::Usage(format!("--budget {b}: budgets count from 1")));
    }
    let mut rows = Vec::new();
    for b in budgets {
        rows.extend(ml::eval::compare_evals(&base, &new, b - 1, a.seed));
    }
    rows.retain(|r| a.method.as_ref().is_none_or(|m| r.method.contains(m.as_str())));
    if rows.is_empty() {
        return Err(crate::GraftError::Data(format!(
            "{} and {} share no task, method and budget to compare (check --method and --budget)",
            a.base.display(),
            a.new.display()
        )));
    }
    if a.json {
        print_json(&rows);
    } else {
        outln!("{}", ml::eval::compare_markdown(&rows));
    }
    Ok(EXIT_OK)
}

#[derive(Args, Debug)]
pub struct RecommendArgs {
    #[command(flatten)]
    pub data: super::DataArgs,
    /// A backbone the meta-learner knows, or `auto` to let it choose.
    #[arg(long, default_value = "auto")]
    pub backbone: String,
    /// Alternatives to list.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// Leave out recipes predicted to train for longer than this many seconds (predicted from
    /// the logged runs' times; on a CPU a larger input size costs about its square).
    #[arg(long, value_name = "SECONDS")]
    pub time_budget: Option<f64>,
    /// Also weigh recipes of a kind (strategy, probe depth, frozen and re-initialised groups,
    /// pretraining) that no logged run has on that backbone; by default they are left out, as
    /// the meta-learner's predictions for them are extrapolations.
    #[arg(long)]
    pub allow_unlogged: bool,
    /// Whether the recipes weight each class's loss: `auto` weighs every class the same
    /// (`class_weights: balanced`) when the largest class has 1.5x the training images of the
    /// smallest or more, `none` weighs every image the same, `balanced` always weighs classes.
    #[arg(long, value_enum, default_value_t = crate::recipe::ClassWeightPolicy::Auto)]
    pub class_weights: crate::recipe::ClassWeightPolicy,

    /// Experimental: also forecast each listed recipe with twice the labelled images a class
    /// (`more_labels` in the JSON, a line in the rationale): the task's features measured again
    /// on half the labels and extrapolated to twice them, then predicted. On 12 held-out task
    /// pairs (5 and 10 images a class, same classes) the standard fine-tune's forecast gain
    /// averaged +15.5 points against +17.8 measured, with a per-task error of 9 points; a
    /// centroid probe's overstated its gain (+9.1 against +1.0). See docs/label-curve.md.
    #[arg(long)]
    pub forecast_more_labels: bool,
    /// Meta-learner file (default: models/meta-learner.json).
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long)]
    pub json: bool,
}

/// A word as a POSIX shell reads it: unchanged when it is plain, else in single quotes.
fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:+,@".contains(&b)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn load_data(d: &super::DataArgs, seed: u64) -> Result<crate::data::Dataset> {
    crate::data::load_dataset(&load_opts(d, seed))
}

fn print_recommendation(r: &ml::search::Recommendation) {
    errln!(
        "recommended recipe ({} at {} px): predicted accuracy {:.3}, 80% interval [{:.3}, {:.3}]{}",
        r.backbone,
        r.input_size,
        r.predicted_accuracy,
        r.interval[0],
        r.interval[1],
        r.predicted_seconds.map(|s| format!(", about {} of training", ml::search::secs(s))).unwrap_or_default()
    );
    for l in &r.rationale {
        errln!("  - {l}");
    }
    errln!("alternatives:");
    for a in &r.alternatives {
        errln!(
            "  {:<10} {:>4} px {:<40} {:.3} [{:.3}, {:.3}] {}",
            a.backbone,
            a.input_size,
            a.recipe.name.clone().unwrap_or_default(),
            a.predicted_accuracy,
            a.interval[0],
            a.interval[1],
            a.predicted_seconds.map(|s| format!("~{}", ml::search::secs(s))).unwrap_or_default()
        );
    }
}

pub fn recommend(a: RecommendArgs) -> Result<i32> {
    let model = ml::MetaModel::load(&model_path(&a.model)?)?;
    let ds = load_data(&a.data, a.seed)?;
    let r = ml::search::recommend(
        &model,
        &ds,
        &ml::search::RecommendOptions {
            backbone: a.backbone.clone(),
            top: a.top,
            seed: a.seed,
            time_budget: a.time_budget,
            allow_unlogged: a.allow_unlogged,
            // recommend lists unreadable images instead of refusing them
            skip_unreadable: true,
            class_weights: a.class_weights,
            forecast_more_labels: a.forecast_more_labels,
        },
    )?;
    let run_cmd = format!(
        "graft run --data {} --recipe RECIPE.json --backbone {}",
        shell_quote(&a.data.data.display().to_string()),
        shell_quote(&r.backbone)
    );
    if a.json {
        let mut v = serde_json::to_value(&r).expect("serialises");
        v["run_command"] = serde_json::Value::String(format!("{run_cmd}   # RECIPE.json: the `recipe` object above"));
        print_json(&v);
    } else {
        print_recommendation(&r);
        errln!("to run it, save the recipe below (stdout) as RECIPE.json, then:\n  {run_cmd}");
        outln!("{}", r.recipe.to_json());
    }
    Ok(EXIT_OK)
}

#[derive(Args, Debug)]
pub struct AutoArgs {
    #[command(flatten)]
    pub data: super::DataArgs,
    /// Runs to spend, one after another: the recommendation, then each next recipe by expected
    /// improvement on the GP given the validation accuracies of the runs so far. With more than
    /// one, the winner on a 20% validation split is then refit on every training image (one
    /// more run), and that refit is the answer.
    #[arg(long, default_value_t = 1)]
    pub budget: usize,
    #[arg(long, default_value = "auto")]
    pub backbone: String,
    /// Leave out recipes predicted to train for longer than this many seconds (predicted from
    /// the logged runs' times; on a CPU a larger input size costs about its square).
    #[arg(long, value_name = "SECONDS")]
    pub time_budget: Option<f64>,
    /// Also weigh recipes of a kind (strategy, probe depth, frozen and re-initialised groups,
    /// pretraining) that no logged run has on that backbone; by default they are left out, as
    /// the meta-learner's predictions for them are extrapolations.
    #[arg(long)]
    pub allow_unlogged: bool,
    /// Whether the recipes weight each class's loss: `auto` weighs every class the same
    /// (`class_weights: balanced`) when the largest class has 1.5x the training images of the
    /// smallest or more, `none` weighs every image the same, `balanced` always weighs classes.
    #[arg(long, value_enum, default_value_t = crate::recipe::ClassWeightPolicy::Auto)]
    pub class_weights: crate::recipe::ClassWeightPolicy,
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Meta-dataset folder the runs are appended to (default: $GRAFT_META or ~/.local/share/graft/meta_dataset).
    #[arg(long)]
    pub meta: Option<PathBuf>,
    #[arg(long, default_value = "runs")]
    pub runs: PathBuf,
    /// Write an HTML report (recommendation, runs) into this folder.
    #[arg(long)]
    pub report: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[arg(long)]
    pub json: bool,
    /// Do not save the runs' trained classifiers in their run directories; `graft predict`
    /// needs them.
    #[arg(long)]
    pub no_save_model: bool,
}

pub fn auto(a: AutoArgs) -> Result<i32> {
    let model = ml::MetaModel::load(&model_path(&a.model)?)?;
    let ds = load_data(&a.data, a.seed)?;
    // auto runs what it recommends: refuse a task it could not test before recommending
    ds.check_every_class_tested()?;
    let rec = ml::search::recommend(
        &model,
        &ds,
        &ml::search::RecommendOptions {
            backbone: a.backbone.clone(),
            top: 5,
            seed: a.seed,
            time_budget: a.time_budget,
            allow_unlogged: a.allow_unlogged,
            // the runs decode every training image: refuse unreadable ones now, as a run would,
            // not after the recommendation
            skip_unreadable: a.data.skip_bad,
            class_weights: a.class_weights,
            forecast_more_labels: false,
        },
    )?;
    if !a.json {
        print_recommendation(&rec);
    }
    let (device, device_name) = executor::select_device(&a.device)?;
    let meta_dir = a.meta.clone().unwrap_or_else(super::default_meta_dir);
    let opts = ml::auto::AutoOptions {
        budget: a.budget,
        data: load_opts(&a.data, a.seed),
        skip_bad: a.data.skip_bad,
        device,
        device_name,
        runs_dir: a.runs.clone(),
        meta_dir: meta_dir.clone(),
        command: super::command_line(),
        save_model: !a.no_save_model,
    };
    let done = ml::auto::auto(&model, &rec, &ds, &opts, &|l| errln!("{l}"))?;
    let runs: Vec<&executor::RunRecord> = done.runs.iter().map(|(_, r)| r).collect();
    let mut out = serde_json::to_value(&rec).expect("serialises");
    out["runs"] = serde_json::to_value(&runs).expect("serialises");
    out["best_run_id"] = serde_json::Value::String(done.best_run_id.clone());
    out["refit_of"] = done.refit_of.clone().map(serde_json::Value::String).unwrap_or(serde_json::Value::Null);
    if let Some(dir) = &a.report {
        let loaded: Vec<crate::report::LoadedRun> =
            runs.iter().map(|r| crate::report::load_run(std::path::Path::new(&r.run_dir))).collect::<Result<_>>()?;
        let html = crate::report::render_auto(&rec, &loaded, &done.best_run_id);
        std::fs::create_dir_all(dir).map_err(|e| crate::GraftError::io(dir, e))?;
        crate::util::write_atomic(&dir.join("report.html"), html.as_bytes())?;
        errln!("report: {}", dir.join("report.html").display());
    }
    if a.json {
        print_json(&out);
    } else if let Some(b) = done.best() {
        errln!(
            "winner {}: {} on {}: test accuracy {:.4}{}{} over {} test images (appended {} runs to {})",
            b.run_id,
            b.recipe.name.clone().unwrap_or_default(),
            b.backbone,
            b.test_accuracy,
            b.interval_note(),
            b.balanced_note(),
            b.n_test,
            runs.len(),
            meta_dir.display()
        );
        if b.saved_model.is_some() {
            errln!("classify new images with it: graft predict --run {} --data IMAGES", b.run_dir);
        }
    }
    Ok(EXIT_OK)
}
