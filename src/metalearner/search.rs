//! `graft recommend`: compute a task's meta-features under each candidate backbone, enumerate
//! recipes (the logged portfolio, and with the GP a grid of freeze/reinit depths, learning
//! rates, layer decay and L2-SP), predict each, refine the best one's learning rate with
//! argmin's Brent optimiser on the surrogate, and explain the choice.
use super::features::{task_index, task_vector, RecipeSummary, TASK_FEATURES};
use super::{Learner, MetaModel, Ranker, Warp, Z80};
use crate::backbones::{card, ModelRef};
use crate::data::{decode_items, Dataset};
use crate::error::{GraftError, Result};
use crate::metadataset::{TaskProfile, TransferFeatures};
use crate::metafeatures::inspect_decoded;
use crate::recipe::{Recipe, Strategy};
use crate::sweep::plan::Template;
use argmin::core::{CostFunction, Executor};
use argmin::solver::brent::BrentOpt;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    pub backbone: String,
    /// `backbone::recipe name`
    pub config: String,
    pub recipe: Recipe,
    #[serde(skip)]
    pub summary: RecipeSummary,
    pub predicted_accuracy: f64,
    /// What orders candidates: the ranking GP's mean (equal to `predicted_accuracy` when the
    /// absolute GP ranks; a within-task relative accuracy when the within-task GP does).
    pub score: f64,
    pub sd: f64,
    pub interval: [f64; 2],
    /// `portfolio` (logged on past tasks) or `search` (a new combination, predicted only).
    pub origin: String,
    /// Predicted training seconds on this task's training images (from the logged runs'
    /// times); None when nothing was logged for the backbone.
    pub predicted_seconds: Option<f64>,
    /// On how many past tasks a recipe of this kind ran on this backbone
    /// ([`MetaModel::support`]); 0: never, its prediction is an extrapolation.
    pub logged_tasks: usize,
    /// The same recipe forecast with twice the labelled images a class ([`more_labels`]).
    pub more_labels: Option<MoreLabels>,
}

/// The meta-learner's forecast for a recipe on the same task with twice the labelled images a
/// class, of the same kind: its prediction for the task's features forecast at twice the shots
/// (measured on half the labels and on all, and extrapolated: [`twice_the_labels`]). It answers
/// "should I label more before training?"; docs/label-curve.md says how such forecasts compared
/// with what more labels did.
#[derive(Debug, Clone, Serialize)]
pub struct MoreLabels {
    /// The task's median labelled images a class.
    pub shots: f64,
    /// The forecast's (twice `shots`).
    pub forecast_shots: f64,
    pub predicted_accuracy: f64,
    /// 80% interval, as the recipe's own stated accuracy has.
    pub interval: [f64; 2],
    /// `predicted_accuracy` less the recipe's stated accuracy at `shots`.
    pub gain: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Alternative {
    pub recipe: Recipe,
    pub backbone: String,
    /// The square input size the backbone runs at (also in the recipe when it is not the card's).
    pub input_size: usize,
    pub predicted_accuracy: f64,
    pub interval: [f64; 2],
    pub predicted_seconds: Option<f64>,
    /// See [`Candidate::logged_tasks`].
    pub logged_tasks: usize,
    /// See [`Candidate::more_labels`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub more_labels: Option<MoreLabels>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Recommendation {
    pub recipe: Recipe,
    /// The backbone's name (a model of `graft models`).
    pub backbone: String,
    /// The square input size it runs at; the recipe's `input_size` says so when it is not the
    /// card's.
    pub input_size: usize,
    pub predicted_accuracy: f64,
    pub interval: [f64; 2],
    /// Predicted training seconds (see [`Candidate::predicted_seconds`]).
    pub predicted_seconds: Option<f64>,
    /// On how many past tasks a recipe of the pick's kind ran on its backbone (see
    /// [`Candidate::logged_tasks`]).
    pub logged_tasks: usize,
    /// The recipe forecast with twice the labelled images a class ([`MoreLabels`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub more_labels: Option<MoreLabels>,
    pub alternatives: Vec<Alternative>,
    pub rationale: Vec<String>,
    /// Meta-features used, per backbone (name -> value).
    pub features: BTreeMap<String, BTreeMap<String, Option<f64>>>,
    pub nearest_tasks: Vec<serde_json::Value>,
    pub far_from_past_tasks: bool,
    pub learner: Learner,
    pub meta_hash: String,
    pub seconds: f64,
    /// Every candidate, ranked (for `auto` and reports).
    #[serde(skip)]
    pub ranked: Vec<Candidate>,
    /// Per-backbone task features (raw).
    #[serde(skip)]
    pub task_features: BTreeMap<String, Vec<Option<f64>>>,
    #[serde(skip)]
    pub transfer: BTreeMap<String, TransferFeatures>,
    /// When `--backbone` named a checkpoint the meta-learner has no runs of, continued from one
    /// it has (`graft pretrain --init`): which, and what stands in for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub continued_from: Option<ContinuedFrom>,
    /// The standard ImageNet recipe as the default the pick must beat ([`standard_default`]);
    /// absent where it is no candidate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub standard_default: Option<StandardDefault>,
    /// The anchor's override decision (None: no anchor, or no challenger to weigh against it).
    pub anchor_decision: Option<AnchorDecision>,
    /// Training images that could not be decoded, left out of the meta-features (the
    /// decoder's message for each, naming the file); `run` and `auto` refuse them unless
    /// `--skip-bad`.
    pub unreadable_training_images: Vec<String>,
    /// The shift of every stated accuracy by the task's own level ([`super::TaskLevel`]);
    /// absent where there is none (no fitted level in the model, or no probe gap).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_level: Option<TaskLevelShift>,
}

/// The task-level shift `recommend` applied to every stated accuracy, on the GP's scale.
#[derive(Debug, Clone, Serialize)]
pub struct TaskLevelShift {
    /// The mean of (cross-validated nearest-centroid accuracy − the GP's prediction for that
    /// centroid probe) over `probes` probes, on the GP's (arcsine) scale.
    pub probe_gap: f64,
    pub probes: usize,
    /// alpha + beta · probe_gap, added to every candidate's latent mean.
    pub shift: f64,
}

/// How the pick fared against the standard ImageNet recipe, the default it must beat.
#[derive(Debug, Clone, Serialize)]
pub struct StandardDefault {
    /// The recipe's configuration (`backbone::recipe name`).
    pub config: String,
    /// The pick it was weighed against (the anchored pick, or what overrode the anchor).
    pub challenger: String,
    /// Posterior probability that the challenger beats the recipe (1 when it is the recipe).
    pub p_challenger_beats_it: f64,
    /// The probability the challenger needed.
    pub needed: f64,
    /// Whether the recipe is the recommendation.
    pub kept: bool,
    /// What such a P has meant on held-out tasks: the meta-learner's cross-validated decisions of
    /// this kind stated at a P in the same band ([`super::HitBand`]); None with a model file
    /// fitted before session 27.
    pub held_out: Option<super::HitBand>,
}

/// The override of the transferability anchor by its best-ranked challenger (a fine-tune, a
/// centroid probe or a pretrain-first recipe).
#[derive(Debug, Clone, Serialize)]
pub struct AnchorDecision {
    pub anchor: String,
    pub challenger: String,
    /// Posterior probability that the challenger beats the anchor.
    pub p_challenger_beats_it: f64,
    pub needed: f64,
    pub overrode: bool,
    /// As for [`StandardDefault::held_out`].
    pub held_out: Option<super::HitBand>,
}

/// The rationale's sentence on what a stated P has meant on held-out tasks (empty without a band).
fn held_out_note(band: Option<&super::HitBand>, challenger: &str, default: &str) -> String {
    match band {
        None => String::new(),
        Some(b) if b.decisions == 0 => {
            format!(" No held-out decision of the meta-learner's cross-validation was stated at a P in [{:.2}, {:.2}).", b.lo, b.hi)
        }
        Some(b) => format!(
            " In the meta-learner's cross-validation (held-out families), {challenger}'s logged accuracy was above {default}'s in {} of the {} decisions stated at a P in [{:.2}, {:.2}){}.",
            b.challenger_higher,
            b.decisions,
            b.lo,
            b.hi,
            if b.ties > 0 { format!(" (tied in {})", b.ties) } else { String::new() }
        ),
    }
}

/// A continued-pretraining checkpoint standing in for its parent: the meta-learner predicts from
/// the parent's runs (backbone key `key`), with the task's features computed on `weights`, and
/// every recipe runs on `weights`.
#[derive(Debug, Clone, Serialize)]
pub struct ContinuedFrom {
    pub key: String,
    pub weights: String,
}

impl Recommendation {
    /// What to run a candidate of backbone key `key` on: the continued checkpoint in its
    /// parent's place, else the key itself.
    pub fn backbone_for(&self, key: &str) -> String {
        stand_in(self.continued_from.as_ref(), key).map(|cf| cf.weights.clone()).unwrap_or_else(|| key.to_string())
    }
}

/// The continued checkpoint, when it stands in for backbone key `key`.
fn stand_in<'a>(cf: Option<&'a ContinuedFrom>, key: &str) -> Option<&'a ContinuedFrom> {
    cf.filter(|cf| cf.key == key)
}

/// Meta-features of a dataset under one backbone.
pub fn task_features(mref: &ModelRef, ds: &Dataset) -> Result<(Vec<Option<f64>>, TransferFeatures)> {
    let set = decode_items(&ds.train, mref.card.input, true)?;
    task_features_decoded(mref, ds, &set)
}

/// Meta-features from training images already decoded at the backbone's input.
pub fn task_features_decoded(mref: &ModelRef, ds: &Dataset, set: &crate::data::ImageSet) -> Result<(Vec<Option<f64>>, TransferFeatures)> {
    if set.n < 2 {
        return Err(GraftError::Data(format!("{}: fewer than two readable training images", ds.root.display())));
    }
    // the stored images' traits are not among the meta-learner's task features: not measured
    let profile = TaskProfile::compute(ds, set, None);
    let rep = inspect_decoded(mref, ds, set, None)?;
    let tf = TransferFeatures::from_report(&rep);
    Ok((task_vector(&profile, &tf), tf))
}

fn grid_templates(lrs: &[f64]) -> Vec<Template> {
    let mut v = Vec::new();
    for strat in [Strategy::LinearProbe, Strategy::SoftmaxProbe, Strategy::CentroidProbe] {
        for d in ["first", "mid", "last"] {
            v.push(Template::probe(strat, d));
        }
    }
    for f in [0usize, 1, 2, 99] {
        for r in [0usize, 1, 2] {
            for &lr in lrs {
                for ld in [1.0, 0.5] {
                    for sp in [0.0, 0.01] {
                        v.push(Template::finetune(r, f, lr, ld, sp, 10, 32));
                    }
                }
            }
        }
    }
    v
}

struct LrCost<'a> {
    model: &'a MetaModel,
    task: &'a BTreeMap<String, Vec<Option<f64>>>,
    cand: &'a Candidate,
}

impl CostFunction for LrCost<'_> {
    type Param = f64;
    type Output = f64;
    fn cost(&self, log_lr: &f64) -> std::result::Result<f64, argmin::core::Error> {
        let mut s = self.cand.summary.clone();
        s.lr = 10f64.powf(*log_lr);
        Ok(-self.model.rank_scores(self.task, &[(self.cand.backbone.clone(), s, self.cand.config.clone())])[0])
    }
}

impl Candidate {
    /// States the meta-learner's prediction (mean `m`, variance `v` on the scale `warp`, the
    /// standard deviation widened by `widen`): the accuracy the latent distribution stands for
    /// ([`Warp::mean`]), its 80% interval mapped end by end, and the sd read as accuracy points
    /// ([`Warp::acc_sd`]). Without a warp (a GP on the raw accuracy, or kNN) the mean can leave
    /// [0, 1] (a mean of 1.02 said "1.023" for the photos example): it and the interval's ends are
    /// clamped (clamping is monotone, so the stated accuracy stays inside the interval). Ranking
    /// uses `score`, not this.
    fn set_prediction(&mut self, m: f64, v: f64, widen: f64, warp: Warp) {
        (self.predicted_accuracy, self.interval, self.sd) = super::stated(warp, m, v, widen);
    }
}

pub struct RecommendOptions {
    /// `auto` (every backbone the meta-learner knows that is in the zoo) or a name.
    pub backbone: String,
    pub top: usize,
    pub seed: u64,
    /// Leave out candidates predicted to train for longer than this many seconds.
    pub time_budget: Option<f64>,
    /// Also weigh candidates of a kind no past run has logged on their backbone (by default
    /// they are left out: [`drop_unlogged`]).
    pub allow_unlogged: bool,
    /// Leave training images that cannot be decoded out of the meta-features and list them
    /// ([`Recommendation::unreadable_training_images`]); false refuses them with the decoder's
    /// error naming the file and `--skip-bad`, as a run does (`auto` without `--skip-bad`).
    pub skip_unreadable: bool,
    /// Whether the recipes weight classes ([`crate::recipe::ClassWeightPolicy`]).
    pub class_weights: crate::recipe::ClassWeightPolicy,
    /// Forecast every listed candidate with twice the labels ([`MoreLabels`]; experimental: a
    /// second pass over half the images, and docs/label-curve.md measures how far off it was).
    pub forecast_more_labels: bool,
}

/// The recipe to run a candidate as written: it names its backbone, and its input size when
/// the candidate's backbone key carries one (`NAME@SIZE`); or, where a continued checkpoint
/// stands in for that key, the checkpoint (at its own card's size).
fn runnable(c: &Candidate, cf: Option<&ContinuedFrom>) -> (Recipe, String) {
    let (name, size) = match stand_in(cf, &c.backbone) {
        Some(cf) => (cf.weights.as_str(), None),
        None => card::split_key(&c.backbone),
    };
    let mut r = c.recipe.clone();
    r.backbone = Some(name.to_string());
    r.input_size = size;
    (r, name.to_string())
}

/// The task as each candidate backbone sees it: meta-features, transferability, and the
/// distance to the nearest past task (far tasks get wider intervals).
struct TaskView {
    names: Vec<String>,
    task: BTreeMap<String, Vec<Option<f64>>>,
    transfer: BTreeMap<String, TransferFeatures>,
    nearest: BTreeMap<String, f64>,
    /// Training images that could not be decoded and were left out of the meta-features, each
    /// as the decoder's message naming the file (the same files at every input size).
    unreadable: Vec<String>,
}

impl TaskView {
    /// How much a backbone's intervals widen: the nearest past task's distance over the typical one.
    fn widen(&self, model: &MetaModel, backbone: &str) -> f64 {
        model.widening(self.nearest[backbone])
    }
}

/// Features → candidates → anchor → refine → rationale.
pub fn recommend(model: &MetaModel, ds: &Dataset, o: &RecommendOptions) -> Result<Recommendation> {
    let t0 = Instant::now();
    if ds.n_classes() < 2 {
        return Err(GraftError::Data(format!("{}: one class only; a classifier needs at least two classes", ds.root.display())));
    }
    let (names, derived) = backbone_names(model, &o.backbone)?;
    let (view, mrefs) = task_view(model, ds, names, derived.as_ref(), o.skip_unreadable)?;
    let lrs = portfolio_lrs(model);
    let mut cands = candidates(model, ds.n_classes(), o.seed, &view.names, &mrefs, &lrs)?;
    let (weighting, weighting_note) = class_weighting(ds, o.class_weights);
    for c in cands.iter_mut() {
        c.recipe.class_weights = weighting;
    }
    // pretrain-first recipes learn from the unlabelled pool; without one they are not candidates
    let n_unlabelled = ds.unlabelled.len();
    let before = cands.len();
    if n_unlabelled < 2 {
        cands.retain(|c| !c.summary.pretrain);
    }
    let dropped_pretrain = before - cands.len();
    score(model, &view, &mut cands);
    for c in cands.iter_mut() {
        c.logged_tasks = model.support(&c.backbone, &c.summary);
    }
    let unlogged_note = if o.allow_unlogged { None } else { drop_unlogged(&mut cands) };
    for c in cands.iter_mut() {
        c.predicted_seconds = model.cost.seconds(&c.backbone, &c.config, &c.summary, ds.train.len());
    }
    let mut budget_note = None;
    if let Some(budget) = o.time_budget {
        let before = cands.len();
        if let Some(c) = standard_candidate(&cands).map(|i| &cands[i]) {
            if let Some(secs) = c.predicted_seconds.filter(|&s| s > budget) {
                budget_note = Some(format!(
                    "The standard ImageNet recipe ({}) is predicted to train for {secs:.0} s, over --time-budget {budget}, so it is not the default here.",
                    c.config
                ));
            }
        }
        cands.retain(|c| c.predicted_seconds.is_none_or(|s| s <= budget));
        if cands.is_empty() {
            return Err(GraftError::Usage(format!(
                "--time-budget {budget}: every one of the {before} candidates is predicted to train for longer; raise the budget"
            )));
        }
    }
    let (anchor_note, anchor_decision) = match anchor(model, &view, &mut cands) {
        Some((note, d)) => (Some(note), d),
        None => (None, None),
    };
    let (default_note, std_default) = match standard_default(model, &view, &mut cands) {
        Some((note, d)) => (Some(note), Some(d)),
        None => (None, None),
    };
    let kept_default = std_default.as_ref().is_some_and(|d| d.kept);
    // the standard recipe kept as the default runs as logged: a learning rate the surrogate
    // prefers would be a deviation it is not confident of
    let refine_note = if kept_default { None } else { refine_lr(model, &view, &lrs, &mut cands) };
    // the features at twice the labels cost a second pass over the images: only under the
    // backbones of the candidates the answer lists
    let mut no_forecast_note = None;
    if o.forecast_more_labels {
        let shown: BTreeSet<String> = cands.iter().take(o.top.max(1) + 1).map(|c| c.backbone.clone()).collect();
        let twice = twice_the_labels(ds, &view, &mrefs, &shown, o.seed, o.skip_unreadable)?;
        if twice.is_none() {
            no_forecast_note = Some(
                "More labels: no forecast (--forecast-more-labels), as the median class has fewer than two training images: there is no half of the labels to measure the features on, and the features that move with the labels cannot be extrapolated."
                    .to_string(),
            );
        }
        more_labels(model, &view, twice.as_ref(), &mut cands);
    }
    let best = cands[0].clone();
    let near = model.nearest_tasks(&best.backbone, &view.task[&best.backbone], 3);
    let task_level = model.task_shift(&view.task).map(|(shift, probe_gap, probes)| TaskLevelShift { probe_gap, probes, shift });
    let mut lines = rationale(model, &view, &cands, &near, anchor_note, task_level.as_ref());
    lines.extend(default_note);
    lines.extend(unlogged_note);
    lines.extend(budget_note);
    lines.extend(refine_note);
    lines.extend(cost_line(&cands, &mrefs, ds.train.len()));
    lines.extend(pretrain_line(&cands, n_unlabelled, dropped_pretrain));
    lines.extend(unreadable_line(&view.unreadable, ds.train.len()));
    lines.extend(weighting_note);
    lines.extend(best.more_labels.as_ref().map(more_labels_line));
    lines.extend(no_forecast_note);
    if let Some((key, m)) = &derived {
        lines.push(format!(
            "Backbone {} continues {} ({}, {}): the meta-learner has no runs of it, so it predicts from its parent's runs at {} px, with this task's features (LogME, cross-validated accuracy, domain distance) computed on {}'s own weights.",
            m.weights.display(),
            key,
            m.card.method,
            epochs_phrase(m.card.epochs),
            m.card.input.height,
            m.card.name
        ));
    }
    tracing::info!(
        "recommend: {} candidates ranked by the {} in {:.1} s; best {} on {} (predicted {:.3})",
        cands.len(),
        model.learner,
        t0.elapsed().as_secs_f64(),
        best.recipe.name.clone().unwrap_or_default(),
        best.backbone,
        best.predicted_accuracy
    );
    if !(best.predicted_accuracy.is_finite() && best.interval.iter().all(|v| v.is_finite())) {
        return Err(GraftError::Model(format!(
            "the meta-learner (fitted {}) predicts a non-finite accuracy for {}; refit it with `graft meta fit`",
            model.created_at, best.backbone
        )));
    }
    let continued_from = derived.as_ref().map(|(key, m)| ContinuedFrom { key: key.clone(), weights: m.weights.display().to_string() });
    let alternatives = cands
        .iter()
        .skip(1)
        .take(o.top.max(1))
        .map(|c| {
            let (recipe, backbone) = runnable(c, continued_from.as_ref());
            Alternative {
                recipe,
                backbone,
                input_size: mrefs[&c.backbone].card.input.height,
                predicted_accuracy: c.predicted_accuracy,
                interval: c.interval,
                predicted_seconds: c.predicted_seconds,
                logged_tasks: c.logged_tasks,
                more_labels: c.more_labels.clone(),
            }
        })
        .collect();
    let features =
        view.task.iter().map(|(b, v)| (b.clone(), TASK_FEATURES.iter().map(|s| s.to_string()).zip(v.iter().copied()).collect())).collect();
    let nearest_tasks = near
        .iter()
        .map(|(d, p)| serde_json::json!({"task_id": p.task_id, "family": p.family, "distance": d, "shots": p.shots, "n_classes": p.n_classes, "shift": p.shift, "best_config": p.best_config, "best_accuracy": p.best_acc}))
        .collect();
    // the recipe names its backbone (and input size), so `graft run --recipe` on it runs what
    // was recommended
    let (recipe, backbone) = runnable(&best, continued_from.as_ref());
    Ok(Recommendation {
        recipe,
        backbone,
        input_size: mrefs[&best.backbone].card.input.height,
        predicted_accuracy: best.predicted_accuracy,
        interval: best.interval,
        predicted_seconds: best.predicted_seconds,
        logged_tasks: best.logged_tasks,
        more_labels: best.more_labels.clone(),
        alternatives,
        rationale: lines,
        features,
        nearest_tasks,
        far_from_past_tasks: view.nearest[&best.backbone] > model.ood_distance,
        learner: model.learner,
        meta_hash: model.meta_hash.clone(),
        seconds: t0.elapsed().as_secs_f64(),
        ranked: cands,
        task_features: view.task,
        transfer: view.transfer,
        continued_from,
        standard_default: std_default,
        anchor_decision,
        task_level,
        unreadable_training_images: view.unreadable,
    })
}

/// The largest imbalance (most over fewest images a class) among the meta-dataset's tasks: the
/// imbalance plans draw 3x and 10x (`meta_dataset/_plans/imbalance.toml`).
const MOST_IMBALANCE_LOGGED: f64 = 10.0;

/// What the held-out evaluation says about accuracies stated for an imbalanced task: right on
/// average, but not where the smallest class is also the hardest, since several task features
/// (LEEP, NCE, H-score, sometimes LogME) average over images and score an imbalanced draw as
/// easier (docs/imbalance.md, session 36).
const IMBALANCE_CAVEAT: &str = "On held-out imbalanced tasks the stated accuracy was right on average, but several of the task's features (LEEP, LogME) average over images, so an imbalanced task reads as easier than it is: where the smallest class is also the hardest, the stated accuracy can be far too high (one such task was stated 0.90 and scored 0.71, docs/imbalance.md).";

/// The class weighting of every candidate's recipe, and the rationale's line on it when the
/// training set's classes differ in size.
fn class_weighting(ds: &Dataset, policy: crate::recipe::ClassWeightPolicy) -> (crate::recipe::ClassWeights, Option<String>) {
    let counts = ds.train_counts();
    let w = policy.choose(&counts);
    let Some((lo, hi)) = crate::recipe::class_size_range(&counts).filter(|(lo, hi)| lo < hi) else { return (w, None) };
    let ratio = hi as f64 / lo as f64;
    let line = if w.is_none() {
        // a near-balanced set (one `auto` would not weight) is not worth a line
        if crate::recipe::ClassWeightPolicy::Auto.choose(&counts).is_none() {
            return (w, None);
        }
        format!(
            "Classes: {lo} to {hi} training images a class ({ratio:.1}x); the recipe gives every image the same weight, so a larger class counts for more (`--class-weights balanced` gives every class the same weight). The meta-learner's imbalanced past tasks were all class-weighted, so its stated accuracy may be high for an unweighted recipe. {IMBALANCE_CAVEAT}"
        )
    } else {
        format!(
            "Classes: {lo} to {hi} training images a class ({ratio:.1}x); the recipe gives every class the same weight (`class_weights: balanced`: each image's loss weighted by n / (K n_c)), for test images spread evenly over the classes. On 11 imbalanced tasks drawn from past families this raised the standard recipe's balanced accuracy by about 2 points and left its accuracy under the training proportions where it was (docs/imbalance.md). The meta-learner's past tasks include imbalanced ones (3x and 10x, class-weighted as here) and it reads the imbalance among the task's features (ln of most over fewest images a class, and the centroid probes' cross-validated balanced accuracy on these images, a mean of per-class recalls that the large classes cannot dominate){}. {IMBALANCE_CAVEAT} `--class-weights none` turns the weighting off.",
            // beyond it by more than the rounding of class sizes
            if ratio > MOST_IMBALANCE_LOGGED + 0.5 {
                format!("; it has no past task beyond {MOST_IMBALANCE_LOGGED}x, so here it extrapolates")
            } else {
                String::new()
            }
        )
    };
    (w, Some(line))
}

/// Whether pretraining on the unlabelled pool is predicted to pay: the pick against the
/// best-predicted candidate of the other kind (pretrain-first or not), by how much, and what
/// each costs in time.
fn pretrain_line(cands: &[Candidate], n_unlabelled: usize, dropped: usize) -> Option<String> {
    if n_unlabelled < 2 {
        return (dropped > 0).then(|| {
            let what = if dropped == 1 { "pretrain-first candidate was" } else { "pretrain-first candidates were" };
            format!(
                "Pretraining: no unlabelled images, so the {dropped} {what} left out (give an `unlabelled/` folder or --unlabelled DIR to weigh them)."
            )
        });
    }
    // the pick against the best-predicted candidate of the other kind
    let best_where = |want: bool| {
        cands.iter().filter(|c| c.summary.pretrain == want).max_by(|a, b| a.predicted_accuracy.total_cmp(&b.predicted_accuracy))
    };
    let pick = cands.first()?;
    let (with, without) = if pick.summary.pretrain { (pick, best_where(false)?) } else { (best_where(true)?, pick) };
    let gain = with.predicted_accuracy - without.predicted_accuracy;
    let method = with.summary.pretrain_method.map(|m| m.as_str()).unwrap_or("unsupervised pretraining");
    let verdict = if gain > 0.0 { "predicted to pay" } else { "not predicted to pay" };
    let cost = match (with.predicted_seconds, without.predicted_seconds) {
        (Some(a), Some(b)) => format!(", at about {} of training against {} without (from the logged runs' times)", secs(a), secs(b)),
        _ => String::new(),
    };
    Some(format!(
        "Pretraining on your {n_unlabelled} unlabelled images is {verdict}: {}, {} ({method}, {}) on {}, is predicted {:.3}; {}, {} on {}, {:.3} ({:+.1} points){cost}.",
        if pick.summary.pretrain { "the recommended recipe" } else { "the best pretrain-first recipe" },
        with.recipe.name.clone().unwrap_or_default(),
        epochs_phrase(with.summary.pretrain_epochs),
        with.backbone,
        with.predicted_accuracy,
        if pick.summary.pretrain { "the best without pretraining" } else { "the recommended recipe, without pretraining" },
        without.recipe.name.clone().unwrap_or_default(),
        without.backbone,
        without.predicted_accuracy,
        100.0 * gain
    ))
}

/// "1 epoch", "3 epochs".
fn epochs_phrase(n: usize) -> String {
    format!("{n} epoch{}", if n == 1 { "" } else { "s" })
}

/// Seconds as a person reads them: one decimal under 10 s.
pub fn secs(s: f64) -> String {
    if s < 10.0 {
        format!("{s:.1} s")
    } else {
        format!("{s:.0} s")
    }
}

/// The time side of the pick: its predicted training seconds at its input size, and the
/// cheapest candidate predicted within one point of it when that is at least twice as fast
/// (on a CPU the cost of a backbone grows with the square of its input size).
fn cost_line(cands: &[Candidate], mrefs: &BTreeMap<String, ModelRef>, n_train: usize) -> Option<String> {
    let best = cands.first()?;
    let s = best.predicted_seconds?;
    let size = |c: &Candidate| mrefs[&c.backbone].card.input.height;
    let mut line = format!("Cost: about {} of training on {n_train} images at {} px (from the logged runs' times).", secs(s), size(best));
    let cheaper = cands
        .iter()
        .filter(|c| c.predicted_accuracy >= best.predicted_accuracy - 0.01)
        .filter_map(|c| c.predicted_seconds.map(|t| (t, c)))
        .filter(|(t, _)| *t * 2.0 <= s)
        .min_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((t, c)) = cheaper {
        line.push_str(&format!(
            " {} on {} at {} px is predicted within a point ({:.3}) for about {}.",
            c.recipe.name.clone().unwrap_or_default(),
            c.backbone,
            size(c),
            c.predicted_accuracy,
            secs(t)
        ));
    }
    Some(line)
}

/// `auto`: every backbone the meta-learner knows; otherwise the one named (`NAME`: at every
/// input size the meta-learner knows it at, so it still chooses the size; `NAME@SIZE`: that
/// size only), if it knows it; or a checkpoint whose card names a parent it knows at the
/// checkpoint's input size (continued pretraining), which then stands in for that parent.
type Derived = (String, ModelRef);

fn backbone_names(model: &MetaModel, backbone: &str) -> Result<(Vec<String>, Option<Derived>)> {
    if backbone == "auto" {
        return Ok((model.encoder.backbones.clone(), None));
    }
    let keys: Vec<String> = if card::split_key(backbone).1.is_some() {
        model.encoder.backbones.iter().filter(|b| *b == backbone).cloned().collect()
    } else {
        model.encoder.backbones.iter().filter(|b| card::split_key(b).0 == backbone).cloned().collect()
    };
    if !keys.is_empty() {
        return Ok((keys, None));
    }
    let unknown = |why: String| {
        GraftError::Usage(format!(
            "--backbone {backbone}: the meta-learner has no runs with this backbone{why}; known: {} (or auto)",
            model.encoder.backbones.join(", ")
        ))
    };
    let Ok(m) = card::resolve(backbone) else { return Err(unknown(String::new())) };
    let Some(parent) = m.card.parent.clone() else { return Err(unknown(" and its card names no parent".into())) };
    let native = card::resolve(&parent.name).map(|p| p.card.input.height).unwrap_or(m.card.input.height);
    let key = card::backbone_key(&parent.name, m.card.input.height, native);
    if !model.encoder.backbones.contains(&key) {
        return Err(unknown(format!(", nor with its parent {} at {} px ({key})", parent.name, m.card.input.height)));
    }
    Ok((vec![key.clone()], Some((key, m))))
}

/// `items` decoded at `spec`: from `cache`, or decoded now and kept there, so backbones with the
/// same input share one decoding.
fn decoded_at<'a>(
    cache: &'a mut Vec<(crate::data::InputSpec, crate::data::ImageSet)>,
    items: &[crate::data::Item],
    spec: crate::data::InputSpec,
    skip_unreadable: bool,
) -> Result<&'a crate::data::ImageSet> {
    let i = match cache.iter().position(|(s, _)| *s == spec) {
        Some(i) => i,
        None => {
            cache.push((spec, decode_items(items, spec, skip_unreadable)?));
            cache.len() - 1
        }
    };
    Ok(&cache[i].1)
}

/// The task's meta-features under each backbone; backbones with the same input share one
/// decoding of the training images (unreadable ones skipped, or refused: `skip_unreadable`).
fn task_view(
    model: &MetaModel,
    ds: &Dataset,
    names: Vec<String>,
    derived: Option<&Derived>,
    skip_unreadable: bool,
) -> Result<(TaskView, BTreeMap<String, ModelRef>)> {
    let mut mrefs = BTreeMap::new();
    let mut task = BTreeMap::new();
    let mut transfer = BTreeMap::new();
    let mut decoded: Vec<(crate::data::InputSpec, crate::data::ImageSet)> = Vec::new();
    for b in &names {
        let m = match derived {
            Some((key, m)) if key == b => m.clone(),
            _ => card::resolve(b)?,
        };
        let (tv, tf) = task_features_decoded(&m, ds, decoded_at(&mut decoded, &ds.train, m.card.input, skip_unreadable)?)?;
        task.insert(b.clone(), tv);
        transfer.insert(b.clone(), tf);
        mrefs.insert(b.clone(), m);
    }
    let nearest = names.iter().map(|b| (b.clone(), model.nearest_distance(b, &task[b]))).collect();
    let unreadable = decoded.first().map(|(_, set)| set.skipped.clone()).unwrap_or_default();
    Ok((TaskView { names, task, transfer, nearest, unreadable }, mrefs))
}

/// The rationale's line on training images that could not be decoded (None when all could).
fn unreadable_line(unreadable: &[String], n_train: usize) -> Option<String> {
    let first = unreadable.first()?;
    Some(format!(
        "{} of the {n_train} training images could not be decoded and were left out of the task's meta-features ({first}{}); `graft run` and `graft auto` refuse them unless --skip-bad, so fix or remove those files.",
        unreadable.len(),
        if unreadable.len() > 1 { "; and others, listed in the JSON's unreadable_training_images" } else { "" }
    ))
}

/// The fine-tuning learning rates of the logged portfolio, ascending: the grid's rates and the
/// range the learning-rate refinement searches.
fn portfolio_lrs(model: &MetaModel) -> Vec<f64> {
    let mut v: Vec<f64> = model.portfolio.iter().filter(|p| p.recipe.strategy == Strategy::Finetune).map(|p| p.recipe.lr).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v.dedup();
    v
}

/// Every candidate, unscored: the logged portfolio per backbone and, with the GP, the search
/// grid; identical recipes (e.g. a portfolio arm equal to a grid point) are kept once.
fn candidates(
    model: &MetaModel,
    n_classes: usize,
    seed: u64,
    names: &[String],
    mrefs: &BTreeMap<String, ModelRef>,
    lrs: &[f64],
) -> Result<Vec<Candidate>> {
    let mut cands: Vec<Candidate> = Vec::new();
    for b in names {
        let mref = &mrefs[b];
        let mut push = |recipe: Recipe, name: String, origin: &str| -> Result<()> {
            let checked = recipe.check(&mref.card.groups, mref.card.n_classes, n_classes)?;
            let mut recipe = checked.recipe().clone();
            if recipe.strategy != Strategy::Finetune {
                recipe.probe.group = Some(checked.groups()[checked.probe_group()].name.clone());
            }
            cands.push(Candidate {
                backbone: b.clone(),
                config: format!("{b}::{name}"),
                recipe,
                summary: RecipeSummary::of(&checked),
                predicted_accuracy: 0.0,
                score: 0.0,
                sd: 0.0,
                interval: [0.0, 1.0],
                origin: origin.into(),
                predicted_seconds: None,
                logged_tasks: 0,
                more_labels: None,
            });
            Ok(())
        };
        for p in model.portfolio.iter().filter(|p| &p.backbone == b) {
            let mut r: Recipe = serde_json::from_str(&p.recipe_json)
                .map_err(|e| GraftError::Data(format!("meta-learner portfolio entry {}: bad recipe: {e}", p.r_name)))?;
            r.seed = seed;
            push(r, p.r_name.clone(), "portfolio")?;
        }
        if model.learner == Learner::Gp && !lrs.is_empty() {
            for t in grid_templates(lrs) {
                let r = t.recipe(&mref.card.groups, seed)?;
                push(r, t.id.clone(), "search")?;
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    cands.retain(|c| seen.insert((c.backbone.clone(), format!("{:?}", c.summary))));
    Ok(cands)
}

/// Leaves out the candidates of a kind ([`super::recipe_kind`]) that no past run has logged on
/// their backbone: the search grid crosses every probe depth and freeze/re-initialise pattern
/// with every backbone and input size, and for a kind never run the surrogate's prediction is an
/// extrapolation that `meta eval` (which scores only logged configurations) never tested. On
/// the unseen-source trial of session 25, `auto` picked such a candidate on two of six tasks
/// (centroid-last and centroid-mid on EfficientNet-Lite2 at 160 px, neither ever run) and lost
/// to the standard recipe by 13 and 15 points. `cands` is in ranking order; returns the
/// rationale line, None when nothing was left out. Keeps everything when nothing is logged.
fn drop_unlogged(cands: &mut Vec<Candidate>) -> Option<String> {
    let n_out = cands.iter().filter(|c| c.logged_tasks == 0).count();
    if n_out == 0 || n_out == cands.len() {
        return None;
    }
    let best_out = cands.iter().find(|c| c.logged_tasks == 0).map(|c| (c.config.clone(), c.predicted_accuracy));
    let best_in = cands.iter().find(|c| c.logged_tasks > 0).map(|c| c.predicted_accuracy).unwrap_or(0.0);
    cands.retain(|c| c.logged_tasks > 0);
    let (cfg, acc) = best_out?;
    let ahead = if acc > best_in {
        format!(", among them the best-predicted of all, {cfg} (predicted {acc:.3})")
    } else {
        format!(" (the best of them, {cfg}, predicted {acc:.3})")
    };
    Some(format!(
        "Left out {n_out} candidate{} of a kind no past run has logged on its backbone{ahead}: their predictions extrapolate the meta-learner past its evidence, which its held-out evaluation never tested; --allow-unlogged weighs them too.",
        if n_out == 1 { "" } else { "s" }
    ))
}

/// Predicts every candidate (mean, widened interval, ranking score) and orders them best first.
fn score(model: &MetaModel, view: &TaskView, cands: &mut [Candidate]) {
    let keys: Vec<(String, RecipeSummary, String)> =
        cands.iter().map(|c| (c.backbone.clone(), c.summary.clone(), c.config.clone())).collect();
    let preds = model.predict(&view.task, &keys);
    let scores = model.rank_scores(&view.task, &keys);
    for ((c, (m, v)), sc) in cands.iter_mut().zip(preds).zip(scores) {
        let widen = view.widen(model, &c.backbone);
        c.score = sc;
        c.set_prediction(m, v, widen, model.scale());
    }
    cands.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.config.cmp(&b.config)));
}

/// The task features that move with the labelled images a class, extrapolated by
/// [`twice_the_labels`], and the range each must stay in.
const SHOT_DEPENDENT: &[(&str, f64, f64)] = &[
    ("logme_first", f64::NEG_INFINITY, f64::INFINITY),
    ("logme_mid", f64::NEG_INFINITY, f64::INFINITY),
    ("logme_last", f64::NEG_INFINITY, f64::INFINITY),
    ("ncprobe_first", 0.0, 1.0),
    ("ncprobe_mid", 0.0, 1.0),
    ("ncprobe_last", 0.0, 1.0),
    ("leep", f64::NEG_INFINITY, 0.0),
    ("log1p_frechet", 0.0, f64::INFINITY),
    ("pixel_separability", 0.0, 1.0),
];

/// The training set with about half the images of every class (at least one a class), drawn
/// with the seed: a stratified subsample, as a task of half the labels.
fn half_the_labels(ds: &Dataset, seed: u64) -> Dataset {
    use rand::seq::SliceRandom;
    let mut rng = crate::util::rng_for(seed, "more-labels-half");
    let mut by_class: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, it) in ds.train.iter().enumerate() {
        by_class.entry(it.label.unwrap_or(0)).or_default().push(i);
    }
    let mut keep = Vec::new();
    for idx in by_class.values_mut() {
        idx.shuffle(&mut rng);
        keep.extend(idx.iter().take((idx.len() / 2).max(1)).copied());
    }
    keep.sort_unstable();
    let mut half = ds.clone();
    half.train = keep.into_iter().map(|i| ds.train[i].clone()).collect();
    half
}

/// Every backbone's task features forecast at twice the labelled images a class, for
/// [`more_labels`]: the features measured again on half the training images a class
/// ([`half_the_labels`]), and each feature that moves with the shots ([`SHOT_DEPENDENT`]: the
/// transferability scores, which a larger sample measures differently) extrapolated linearly in
/// log shots from the half to the whole and on to twice the whole; the shots feature set to
/// twice the task's; the class count, unlabelled pool and pixel statistics held. A feature the
/// half could not measure (a probe needs two images a class) is held as measured. None where the
/// median class has fewer than two training images (no half to measure).
fn twice_the_labels(
    ds: &Dataset,
    view: &TaskView,
    mrefs: &BTreeMap<String, ModelRef>,
    backbones: &BTreeSet<String>,
    seed: u64,
    skip_unreadable: bool,
) -> Result<Option<BTreeMap<String, Vec<Option<f64>>>>> {
    let shots = task_index("log_shots");
    let half = half_the_labels(ds, seed);
    let mut decoded: Vec<(crate::data::InputSpec, crate::data::ImageSet)> = Vec::new();
    let mut out = BTreeMap::new();
    for b in view.names.iter().filter(|b| backbones.contains(*b)) {
        let m = &mrefs[b];
        let full = &view.task[b];
        let set = decoded_at(&mut decoded, &half.train, m.card.input, skip_unreadable)?;
        if set.n < 2 {
            return Ok(None);
        }
        let (h, _) = task_features_decoded(m, &half, set)?;
        let (Some(ls_full), Some(ls_half)) = (full[shots], h[shots]) else { return Ok(None) };
        if ls_full - ls_half < 0.1 {
            return Ok(None);
        }
        // from the half to the whole is ln(S / S_half) in log shots; from the whole to twice, ln 2
        let k = std::f64::consts::LN_2 / (ls_full - ls_half);
        let mut v = full.clone();
        v[shots] = Some(ls_full + std::f64::consts::LN_2);
        for &(name, lo, hi) in SHOT_DEPENDENT {
            let j = task_index(name);
            if let (Some(f), Some(g)) = (full[j], h[j]) {
                v[j] = Some((f + k * (f - g)).clamp(lo, hi));
            }
        }
        out.insert(b.clone(), v);
    }
    Ok(Some(out))
}

/// The rationale's line on the recommended recipe's forecast with twice the labels, with how far
/// such forecasts were off when measured.
fn more_labels_line(m: &MoreLabels) -> String {
    format!(
        "More labels (experimental forecast): with twice the labelled images a class ({:.0} instead of {:.0}), this recipe is forecast at {:.3} [{:.3}, {:.3}], {:+.1} points. It extrapolates the task's features from half its labels to twice them; on 12 task pairs of 5 and 10 images a class it was off by about 9 points a task for the standard fine-tune (+15.5 forecast, +17.8 measured on average), and it overstated a centroid probe's gain about ninefold (docs/label-curve.md).",
        m.forecast_shots,
        m.shots,
        m.predicted_accuracy,
        m.interval[0],
        m.interval[1],
        100.0 * m.gain
    )
}

/// Every candidate's forecast with twice the labelled images a class ([`MoreLabels`]): the
/// meta-learner's prediction for the task's features forecast at twice the labels
/// ([`twice_the_labels`]), stated as its accuracy now is (same widening for the distance to past
/// tasks). None where there is no forecast of the features.
fn more_labels(model: &MetaModel, view: &TaskView, twice: Option<&BTreeMap<String, Vec<Option<f64>>>>, cands: &mut [Candidate]) {
    let Some(twice) = twice else { return };
    let at = task_index("log_shots");
    let keys: Vec<(String, RecipeSummary, String)> =
        cands.iter().map(|c| (c.backbone.clone(), c.summary.clone(), c.config.clone())).collect();
    let (idx, keys): (Vec<usize>, Vec<_>) = keys.into_iter().enumerate().filter(|(_, k)| twice.contains_key(&k.0)).unzip();
    // the task-level shift is read from the backbones' probes together: the gain is taken
    // between the same backbones' features now and at twice the labels, and added to the
    // prediction now (over every backbone, as stated)
    let now_all = model.predict(&view.task, &keys);
    let same: BTreeMap<String, Vec<Option<f64>>> =
        view.task.iter().filter(|(b, _)| twice.contains_key(*b)).map(|(b, v)| (b.clone(), v.clone())).collect();
    let now_same = model.predict(&same, &keys);
    let then = model.predict(twice, &keys);
    let preds = now_all.iter().zip(&now_same).zip(then).map(|((a, s), (t, v))| (a.0 + (t - s.0), v));
    for (i, (m, v)) in idx.into_iter().zip(preds) {
        let c = &mut cands[i];
        let Some(shots) = view.task[&c.backbone].get(at).copied().flatten().map(f64::exp).filter(|s| s.is_finite()) else {
            continue;
        };
        let (acc, interval, _) = super::stated(model.scale(), m, v, view.widen(model, &c.backbone));
        if acc.is_finite() && interval.iter().all(|v| v.is_finite()) {
            c.more_labels = Some(MoreLabels {
                shots,
                forecast_shots: 2.0 * shots,
                predicted_accuracy: acc,
                interval,
                gain: acc - c.predicted_accuracy,
            });
        }
    }
}

/// Anchor on transferability: the linear probe ranked first by [`super::ANCHOR_SCORE`] (the
/// probe whose features classify this task best under cross-validation), read by the classifier
/// the ranking GP prefers on those features ([`super::anchor_classifier`]), is the default pick.
/// Only a candidate [`super::may_override_anchor`] admits (fine-tuning, a centroid probe, or
/// pretraining first) may override it: the
/// best-ranked such candidate, and only when it beats the anchor with posterior probability >=
/// ANCHOR_SWITCH_PROBABILITY (the posterior recalibrated on within-task differences, `MetaModel::override_sd_scale`, as `meta eval` evaluates the anchored
/// pick). The pick goes first in `cands`. Returns the rationale line.
fn anchor(model: &MetaModel, view: &TaskView, cands: &mut Vec<Candidate>) -> Option<(String, Option<AnchorDecision>)> {
    if model.learner != Learner::Gp {
        return None;
    }
    let items: Vec<(&RecipeSummary, &[Option<f64>])> = cands.iter().map(|c| (&c.summary, view.task[&c.backbone].as_slice())).collect();
    let probe = super::transferability_anchor(&items, super::ANCHOR_SCORE)?;
    // the anchor's features, read by the classifier the meta-learner ranks highest on them
    let keyed: Vec<(&str, &RecipeSummary)> = cands.iter().map(|c| (c.backbone.as_str(), &c.summary)).collect();
    let scores: Vec<f64> = cands.iter().map(|c| c.score).collect();
    let a = super::anchor_classifier(&keyed, &scores, probe);
    let mut what = match super::ANCHOR_SCORE {
        super::AnchorScore::LogMe => "linear probe where LogME is highest".to_string(),
        super::AnchorScore::ProbeCv => "linear probe whose features classify this task best under cross-validation".to_string(),
    };
    if a != probe {
        what = format!(
            "the {what} is {}; on the same features the meta-learner ranks the {} higher",
            cands[probe].config, cands[a].summary.strategy
        );
    }
    let p = super::ANCHOR_SWITCH_PROBABILITY;
    let anc = cands[a].config.clone();
    let to_front = |cands: &mut Vec<Candidate>, i: usize| {
        let c = cands.remove(i);
        cands.insert(0, c);
    };
    // the challenger: the best-ranked candidate that may override the anchor (cands are in
    // ranking order)
    let Some(f) = (0..cands.len()).find(|&i| i != a && super::may_override_anchor(&cands[i].summary)) else {
        to_front(cands, a);
        return Some((
            format!(
                "Kept the transferability anchor {anc} ({what}): no fine-tuning, centroid-probe or pretrain-first candidate to weigh against it."
            ),
            None,
        ));
    };
    let (m, c) = calibrated_pair(model, view, cands, f, a);
    let pr = super::prob_greater(&m, &c, 0, 1);
    let top = cands[f].config.clone();
    let kind = if cands[f].summary.pretrain {
        "pretrain-first"
    } else if cands[f].summary.strategy == crate::recipe::Strategy::CentroidProbe {
        "centroid-probe"
    } else {
        "fine-tuning"
    };
    let overrides = pr >= p;
    to_front(cands, if overrides { f } else { a });
    let band = model.held_out_band(super::Decision::Override, pr).cloned();
    let note = held_out_note(band.as_ref(), "the challenger", "the anchor");
    let line = if overrides {
        format!(
            "Overrode the transferability anchor {anc} ({what}): the meta-learner's best {kind} candidate, {top}, beats it with probability {pr:.2} (>= {p:.2}).{note}"
        )
    } else {
        format!(
            "Kept the transferability anchor {anc} ({what}): the meta-learner's best {kind} candidate, {top}, beats it with probability {pr:.2} only (needs {p:.2}); among the probes, the cross-validated accuracy decides.{note}"
        )
    };
    let d = AnchorDecision { anchor: anc, challenger: top, p_challenger_beats_it: pr, needed: p, overrode: overrides, held_out: band };
    Some((line, Some(d)))
}

/// The ranking GP's joint posterior of candidates `i` and `j` (in that order), its covariance
/// scaled by the calibration of within-task differences on held-out tasks: what the override
/// decisions' P reads.
fn calibrated_pair(model: &MetaModel, view: &TaskView, cands: &[Candidate], i: usize, j: usize) -> (Vec<f64>, nalgebra::DMatrix<f64>) {
    let xs: Vec<Vec<f64>> =
        [i, j].iter().map(|&k| model.encoder.encode(&view.task[&cands[k].backbone], &cands[k].summary, &cands[k].backbone)).collect();
    let (m, c, _) = model.ranking_gp().predict_joint(&xs);
    (m, c * model.override_sd_scale().powi(2))
}

/// The index of the standard ImageNet recipe among `cands`, if it is one of them.
fn standard_candidate(cands: &[Candidate]) -> Option<usize> {
    let native = crate::backbones::card::resolve(super::eval::STANDARD_BACKBONE).ok()?.card.input.height;
    cands.iter().position(|c| super::eval::is_standard_recipe(&c.backbone, &c.summary, native))
}

/// The standard ImageNet recipe (EfficientNet-Lite0 fine-tuned at 224 px, 30 epochs, AdamW at
/// 3e-4; [`super::eval::is_standard_recipe`]) is the default where it is a candidate: the pick
/// so far (`cands[0]`, the anchor or what overrode it) replaces it only when it beats it with
/// posterior probability >= [`MetaModel::standard_threshold`] (chosen by `meta fit` on held-out
/// decisions; 0.9 before session 27), on the same calibrated joint
/// posterior as the anchor's override ([`super::standard_default_pick`], which `meta eval`
/// scores as the shipped rule; its row "the rule before session 25" is the anchored pick
/// alone). Returns the rationale line and the decision; None where the
/// recipe is no candidate (another `--backbone`, `--time-budget`) or the learner is kNN.
fn standard_default(model: &MetaModel, view: &TaskView, cands: &mut Vec<Candidate>) -> Option<(String, StandardDefault)> {
    if model.learner != Learner::Gp {
        return None;
    }
    let s = standard_candidate(cands)?;
    let std = cands[s].config.clone();
    let p = model.standard_threshold();
    let outcome = |challenger: &str, pr: f64, kept: bool, held_out: Option<super::HitBand>| StandardDefault {
        config: std.clone(),
        challenger: challenger.to_string(),
        p_challenger_beats_it: pr,
        needed: p,
        kept,
        held_out,
    };
    if s == 0 {
        return Some((
            format!("The pick is the standard ImageNet recipe ({std}), the default a practitioner would run."),
            outcome(&std, 1.0, true, None),
        ));
    }
    let (m, c) = calibrated_pair(model, view, cands, 0, s);
    let pr = super::prob_greater(&m, &c, 0, 1);
    let pick = cands[0].config.clone();
    let band = model.held_out_band(super::Decision::StandardDefault, pr).cloned();
    let mut note = held_out_note(band.as_ref(), "the pick", "the recipe");
    if model.cv.standard_threshold.is_some() {
        note.push_str(&format!(
            " The threshold {p:.2} is the most conservative whose mean accuracy gain over the recipe on those held-out decisions came within one standard error of the best threshold's."
        ));
    }
    if super::standard_default_pick(&m, &c, 0, 1, p) == 0 {
        return Some((
            format!(
                "Chose {pick} over the standard ImageNet recipe ({std}, the default a practitioner would run): it beats the recipe with probability {pr:.2} (>= {p:.2}).{note}"
            ),
            outcome(&pick, pr, false, band),
        ));
    }
    let c = cands.remove(s);
    cands.insert(0, c);
    Some((
        format!(
            "Kept the standard ImageNet recipe ({std}) as the default a practitioner would run: the meta-learner's pick {pick} beats it with probability {pr:.2} only (needs {p:.2}).{note}"
        ),
        outcome(&pick, pr, true, band),
    ))
}

/// What the predicted accuracy rests on: the direct evidence from the task's own images (the
/// cross-validated balanced accuracy of the pick's features, or of the best probe's when the pick
/// fine-tunes) beside the GP's prediction from the past tasks.
fn basis(view: &TaskView, cands: &[Candidate]) -> String {
    let best = &cands[0];
    let cv_of = |c: &Candidate| super::probe_cv(&c.summary, &view.task[&c.backbone]);
    let gp = format!("the predicted {:.3} is the meta-learner's, from the past tasks most like this one (below)", best.predicted_accuracy);
    match cv_of(best) {
        Some(cv) => format!(
            "Basis: these features reach {cv:.3} balanced accuracy (mean per-class recall) on your training images under cross-validation (nearest centroid, a cheap stand-in for the probe); {gp}."
        ),
        None => match cands.iter().filter_map(|c| cv_of(c).map(|v| (c, v))).max_by(|a, b| a.1.total_cmp(&b.1)) {
            Some((c, cv)) => format!(
                "Basis: {gp}; for comparison, the best probe's features ({}) reach {cv:.3} balanced accuracy (mean per-class recall) on your training images under cross-validation.",
                c.config
            ),
            None => format!("Basis: {gp}; no cross-validated accuracy (a class has a single training image)."),
        },
    }
}

/// The task-level shift of every stated accuracy ([`super::TaskLevel`]), in words: the probe
/// gap it rests on, and what the same shift did on held-out tasks. None where there is none.
fn level_note(model: &MetaModel, level: Option<&TaskLevelShift>) -> Option<String> {
    let tl = model.cv.task_level.as_ref()?;
    let &TaskLevelShift { probe_gap: gap, probes: n, shift } = level?;
    Some(format!(
        "Level: on your training images, {n} nearest-centroid probes classify {} under cross-validation than the meta-learner predicts for them (probe gap {gap:+.3} on its arcsine scale). Over {} held-out past tasks, the meta-learner's miss on a task's recipes moved with that gap (correlation {:.2}), so every accuracy stated here is shifted by {shift:+.3} on that scale (the same for every candidate: no ranking changes); on those tasks the shift explained {:.0}% of the variance of that miss.",
        if gap >= 0.0 { "better" } else { "worse" },
        tl.n_tasks,
        tl.correlation,
        100.0 * (1.0 - tl.var_after / tl.var_before.max(1e-12))
    ))
}

/// "name value, name value, ..." over the backbones, "n/a" where a value is missing.
fn per_backbone(names: &[String], f: impl Fn(&String) -> Option<String>) -> String {
    names.iter().map(|b| format!("{b} {}", f(b).unwrap_or_else(|| "n/a".into()))).collect::<Vec<_>>().join(", ")
}

/// Refines the best fine-tuning candidate's learning rate on the surrogate (argmin's Brent over
/// the portfolio's log10 range); returns the rationale line when the refined rate scores higher.
fn refine_lr(model: &MetaModel, view: &TaskView, lrs: &[f64], cands: &mut [Candidate]) -> Option<String> {
    if model.learner != Learner::Gp || cands[0].recipe.strategy != Strategy::Finetune || lrs.len() < 2 {
        return None;
    }
    let (lo, hi) = (lrs[0].log10(), lrs[lrs.len() - 1].log10());
    let cost = LrCost { model, task: &view.task, cand: &cands[0] };
    let res = Executor::new(cost, BrentOpt::new(lo, hi)).configure(|s| s.max_iters(30)).run().ok()?;
    let best = res.state().best_param.unwrap_or(cands[0].recipe.lr.log10());
    let lr = format!("{:.2e}", 10f64.powf(best)).parse::<f64>().unwrap_or(cands[0].recipe.lr);
    let mut s = cands[0].summary.clone();
    s.lr = lr;
    let key = [(cands[0].backbone.clone(), s.clone(), cands[0].config.clone())];
    let (m, v) = model.predict(&view.task, &key)[0];
    let sc = model.rank_scores(&view.task, &key)[0];
    let widen = view.widen(model, &cands[0].backbone);
    let stated = model.scale().state(m, v.max(0.0).sqrt() * widen, Z80).0;
    // the ranking GP must prefer the new rate, and the accuracy the advisor states must not
    // drop (the two GPs can disagree; a refinement that lowers the stated prediction is none)
    if sc <= cands[0].score + 1e-4 || stated < cands[0].predicted_accuracy {
        return None;
    }
    let c = &mut cands[0];
    let (old_lr, old_pred) = (c.recipe.lr, c.predicted_accuracy);
    c.recipe.lr = lr;
    c.recipe.name = Some(format!("{}-lr{lr:.2e}", c.recipe.name.clone().unwrap_or_default()));
    c.summary = s;
    c.score = sc;
    c.set_prediction(m, v, widen, model.scale());
    Some(format!(
        "Learning rate refined on the surrogate (Brent, log10 lr in [{lo:.2}, {hi:.2}]): {old_lr:.2e} -> {lr:.2e}, predicted {old_pred:.3} -> {:.3}.",
        c.predicted_accuracy
    ))
}

/// Why: the pick and its interval, the anchor decision, the nearest past tasks, backbone,
/// strategy and group choices, and the meta-features the surrogate weighs most.
fn rationale(
    model: &MetaModel,
    view: &TaskView,
    cands: &[Candidate],
    near: &[(f64, &super::PastTask)],
    anchor_note: Option<String>,
    level: Option<&TaskLevelShift>,
) -> Vec<String> {
    let best = &cands[0];
    let mut lines = vec![format!(
        "Recommended: {} on {} (predicted test accuracy {:.3}, 80% interval [{:.3}, {:.3}]), by the {} meta-learner{} fitted on {} runs over {} tasks from {} families.",
        best.recipe.name.clone().unwrap_or_default(),
        best.backbone,
        best.predicted_accuracy,
        best.interval[0],
        best.interval[1],
        model.learner,
        if model.learner == Learner::Gp && model.ranker == Ranker::GpRel {
            " (candidates ordered by its within-task GP, which had the lower held-out regret)"
        } else {
            ""
        },
        model.n_runs,
        model.n_tasks,
        model.families.len()
    )];
    lines.extend(anchor_note);
    lines.push(basis(view, cands));
    if let Some(l) = level_note(model, level) {
        lines.push(l);
    }
    lines.push(format!(
        "Most similar past tasks (meta-feature distance; typical nearest distance {:.2}): {}.",
        model.ood_distance,
        near.iter()
            .map(|(d, p)| format!(
                "{} ({}, {} classes, {} shots, shift {}; d={d:.2}; best there {} at {:.3})",
                p.task_id, p.family, p.n_classes, p.shots, p.shift, p.best_config, p.best_acc
            ))
            .collect::<Vec<_>>()
            .join("; ")
    ));
    let d = view.nearest[&best.backbone];
    if d > model.ood_distance {
        lines.push(format!(
            "This task is far from every past task (nearest distance {d:.2} > {:.2}): the prediction is an extrapolation and the interval is widened x{:.1}.",
            model.ood_distance,
            d / model.ood_distance
        ));
    }
    if view.names.len() > 1 {
        let mut per_b: Vec<(String, f64)> = view
            .names
            .iter()
            .map(|b| (b.clone(), cands.iter().find(|c| &c.backbone == b).map(|c| c.predicted_accuracy).unwrap_or(0.0)))
            .collect();
        per_b.sort_by(|a, b| b.1.total_cmp(&a.1));
        lines.push(format!(
            "Backbone: best predicted recipe per backbone: {}; LogME at the penultimate group: {}; cross-validated nearest-centroid accuracy of the penultimate features: {}; domain distance (Fréchet distance between this task's and the backbone's source images' penultimate features; lower is closer): {}.",
            per_b.iter().map(|(b, a)| format!("{b} {a:.3}")).collect::<Vec<_>>().join(", "),
            per_backbone(&view.names, |b| Some(format!("{:.3}", view.transfer[b].logme_last))),
            per_backbone(&view.names, |b| view.transfer[b].ncprobe_last.map(|v| format!("{v:.3}"))),
            per_backbone(&view.names, |b| view.transfer[b].frechet.map(|v| format!("{v:.1}"))),
        ));
    }
    let same_b: Vec<&Candidate> = cands.iter().filter(|c| c.backbone == best.backbone).collect();
    let best_of = |f: &dyn Fn(&Candidate) -> bool| same_b.iter().filter(|c| f(c)).map(|c| c.predicted_accuracy).fold(f64::NAN, f64::max);
    let ft = best_of(&|c| c.recipe.strategy == Strategy::Finetune);
    let pr = best_of(&|c| c.recipe.strategy != Strategy::Finetune);
    // NaN: no candidate of that kind on this backbone (left out as never logged, or by a budget)
    let acc = |v: f64| if v.is_nan() { "none among the candidates".to_string() } else { format!("{v:.3}") };
    lines.push(format!("Strategy: best fine-tuning recipe predicted {}, best probe {} on {}.", acc(ft), acc(pr), best.backbone));
    if best.recipe.strategy == Strategy::Finetune {
        let s = &best.summary;
        let nf = best_of(&|c| c.recipe.strategy == Strategy::Finetune && c.summary.n_freeze == 0);
        let nr = best_of(&|c| c.recipe.strategy == Strategy::Finetune && c.summary.n_reinit <= 1);
        lines.push(format!(
            "Groups: {} of {} frozen (best recipe with nothing frozen: {}); {} re-initialised incl. the new head (best with only the head new: {}); learning rate {:.2e}, layer decay {}, L2-SP {}.",
            s.n_freeze,
            s.n_groups,
            acc(nf),
            s.n_reinit,
            acc(nr),
            s.lr,
            s.layer_decay,
            s.l2sp
        ));
    } else {
        let vs_ft = if ft.is_nan() {
            format!("no fine-tuning recipe of a logged kind on {} is a candidate", best.backbone)
        } else {
            format!("fine-tuning is predicted {:+.3} relative to it", ft - best.predicted_accuracy)
        };
        lines.push(format!(
            "Probe on group `{}` (relative depth {:.2}): the backbone stays frozen; {vs_ft}.",
            best.recipe.probe.group.clone().unwrap_or_default(),
            best.summary.probe_depth.unwrap_or(1.0),
        ));
    }
    if model.learner == Learner::Gp {
        let ls = model.gp.lengthscales();
        let mut imp: Vec<(String, f64)> = model.encoder.feature_names().into_iter().zip(ls).take(TASK_FEATURES.len()).collect();
        imp.sort_by(|a, b| a.1.total_cmp(&b.1));
        lines.push(format!(
            "Task meta-features the surrogate is most sensitive to (shortest GP length-scales): {}.",
            imp.iter().take(4).map(|(n, l)| format!("{n} (l={l:.2})")).collect::<Vec<_>>().join(", ")
        ));
    }
    lines
}

/// What `graft auto --budget K` runs, one after another: the recommendation first (the anchored
/// pick), then each next candidate by expected improvement on the ranking GP's joint posterior
/// over the 40 best-predicted candidates, conditioned on the validation accuracies of the runs
/// so far (`eval::SeqEi`). With the kNN learner: its candidates in predicted order.
pub struct Planner {
    top: Vec<Candidate>,
    seq: Option<super::eval::SeqEi>,
    next: Option<usize>,
    /// (candidate index, validation accuracy) of the runs so far.
    observed: Vec<(usize, f64)>,
    /// The ranking GP's scale, onto which observed accuracies are mapped.
    warp: Warp,
}

impl Planner {
    pub fn new(model: &MetaModel, rec: &Recommendation) -> Self {
        let top: Vec<Candidate> = rec.ranked.iter().take(40).cloned().collect();
        let seq = (model.learner == Learner::Gp && top.len() > 1).then(|| {
            let xs: Vec<Vec<f64>> =
                top.iter().map(|c| model.encoder.encode(&rec.task_features[&c.backbone], &c.summary, &c.backbone)).collect();
            let (mean, cov, noise) = model.ranking_gp().predict_joint(&xs);
            let k2 = model.cv.gp_sd_scale.powi(2);
            super::eval::SeqEi::new(&mean, &(cov * k2), noise * k2, model.ranking_offset_var())
        });
        let next = if top.is_empty() { None } else { Some(0) };
        Planner { top, seq, next, observed: Vec::new(), warp: model.warp }
    }

    /// The candidate to run next (None when every candidate has run).
    pub fn next(&self) -> Option<&Candidate> {
        self.next.map(|i| &self.top[i])
    }

    /// Record the run of the candidate `next` returned and its validation accuracy, if any
    /// (never the test accuracy), and choose the one after it.
    pub fn observe(&mut self, val_accuracy: Option<f64>) {
        self.observe_on(val_accuracy, 0);
    }

    /// [`Planner::observe`] for an accuracy measured on `n_val` validation images: its sampling
    /// variance ([`super::eval::val_noise_var`]) joins the GP's observation noise.
    pub fn observe_on(&mut self, val_accuracy: Option<f64>, n_val: usize) {
        let Some(i) = self.next else { return };
        if let Some(v) = val_accuracy {
            self.observed.push((i, v));
        }
        let extra = val_accuracy.map_or(0.0, |v| self.warp.obs_var(super::eval::val_noise_var(v, n_val), n_val));
        self.next = match &mut self.seq {
            Some(s) => {
                s.observe_noisy(i, val_accuracy.map(|v| self.warp.fwd(v)), extra);
                s.next()
            }
            None => (i + 1 < self.top.len()).then_some(i + 1),
        };
    }

    /// Of the candidates run, the winner's config under [`super::eval::AUTO_WINNER_RULE`] given
    /// every validation accuracy observed; without the GP, the highest validation accuracy (ties:
    /// the earlier run). None before any run with a validation accuracy.
    pub fn best_config(&self) -> Option<String> {
        let pick = match &self.seq {
            Some(s) => s.winner(&self.observed, super::eval::AUTO_WINNER_RULE),
            // candidates run in index order here, so the earliest run is the lowest index
            None => super::eval::highest_validation(&self.observed),
        };
        pick.map(|i| self.top[i].config.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Item, ItemSource, SplitInfo};

    fn dataset(counts: &[usize]) -> Dataset {
        let mut train = Vec::new();
        for (c, &n) in counts.iter().enumerate() {
            for i in 0..n {
                train.push(Item { source: ItemSource::File(format!("c{c}/{i}.png").into()), label: Some(c) });
            }
        }
        Dataset {
            root: "mem".into(),
            classes: (0..counts.len()).map(|c| format!("c{c}")).collect(),
            train,
            val: vec![],
            test: vec![],
            unlabelled: vec![],
            split: SplitInfo { method: "folders".into(), test_fraction: None, seed: 0 },
        }
    }

    fn names(ds: &Dataset) -> Vec<String> {
        ds.train.iter().map(|it| format!("{:?}", it.source)).collect()
    }

    /// Half the labels: every class keeps half its images (rounded down, at least one), drawn
    /// from its own images by the seed; the same seed draws the same half.
    #[test]
    fn half_the_labels_halves_every_class_from_its_own_images() {
        let ds = dataset(&[5, 1, 4, 10]);
        let half = half_the_labels(&ds, 7);
        let counts = |d: &Dataset| (0..4).map(|c| d.train.iter().filter(|it| it.label == Some(c)).count()).collect::<Vec<_>>();
        assert_eq!(counts(&half), vec![2, 1, 2, 5]);
        let all = names(&ds);
        for (it, name) in half.train.iter().zip(names(&half)) {
            let c = it.label.unwrap();
            assert!(all.contains(&name) && name.contains(&format!("c{c}/")), "{name} is not one of class {c}'s images");
        }
        assert_eq!(names(&half_the_labels(&ds, 7)), names(&half));
        assert!((0..20).any(|s| names(&half_the_labels(&ds, s)) != names(&half)), "the seed never changes the draw");
    }
}
