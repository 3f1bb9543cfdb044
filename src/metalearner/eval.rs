//! `graft meta eval`: leave-one-family-out evaluation of the advisor against baselines at equal
//! budgets. Every task drawn from a family (shifted copies included) is held out together; the
//! meta-learner is refitted without that family and must choose among the configurations
//! logged on each held-out task, so regret is measured against real runs.
use super::features::Obs;
use super::{cells, fit, Cell, FitOptions, MetaModel, Z80};
use crate::error::{GraftError, Result};
use crate::util::rng_for;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

pub const METHODS: &[&str] = &[
    "advisor (LogME-anchored, sequential EI)",
    "advisor (knn)",
    "finetune-all",
    "linear-probe",
    "best on average",
    "random search",
    "LogME cut layer + probe",
    "fastai-style (discriminative LRs)",
    "advisor (q-EI, absolute GP)",
    "advisor (q-EI, within-task GP)",
    "advisor (per-config GP)",
    "advisor (q-EI, the GP nested CV chose to rank with)",
    "advisor (LogME-anchored, q-EI batch)",
    "advisor (LogME anchor, then greedy portfolio)",
    "largest ImageNet backbone, linear probe",
    "largest ImageNet backbone, fine-tune all at lr 3e-4, 224 px",
    "advisor (probe-CV-anchored, any candidate may override it, sequential EI)",
    "probe CV cut layer + probe",
    "auto as it runs (simulated; winner: highest posterior mean)",
    "auto as it runs (simulated; winner: the first pick unless a run beats it with P >= 0.9)",
    "auto as it runs (simulated; winner: highest validation accuracy)",
    "advisor, shipped (probe-CV-anchored, read by the classifier the GP ranks highest on its features; only a fine-tune, a centroid probe or a pretrain-first recipe may override it, sequential EI)",
    "pretrain policy: never (the best-predicted recipe without pretraining)",
    "pretrain policy: always (the best-predicted pretrain-first recipe)",
    "advisor (probe-CV-anchored, read by its SVM probe; only a fine-tune, a centroid probe or a pretrain-first recipe may override it, sequential EI)",
    "advisor variant: the override weighed on outcomes (both runs' observation noise counts), sequential EI",
    "advisor variant: a centroid probe may override only on the anchor's own features, sequential EI",
    "advisor variant: both of the two rows above, sequential EI",
    "advisor variant: the override's probability on the posterior calibrated on single cells, not on within-task differences (the rule before session 19), sequential EI",
    "advisor variant: the override's probability on the posterior calibrated on its own held-out decisions (anchor against best challenger, one-sided), sequential EI",
    "standard ImageNet recipe: EfficientNet-Lite0 fine-tuned at 224 px, 30 epochs, AdamW at 3e-4",
    "advisor variant: the rule before session 25, the anchored pick alone (the standard ImageNet recipe is not the default it must beat), sequential EI",
    "advisor variant: the rule before session 27, the pick replaces the standard recipe at P >= 0.9 (not at the threshold chosen on held-out decisions), sequential EI",
    "advisor variant: the advisor's rule on predicted means shifted per configuration by its cross-validated within-task offset (empirical-Bayes shrunk), sequential EI",
];

/// The shipped rule on the ranking GP's means shifted per configuration by the refit's
/// cross-validated offsets (`cv.config_offsets`, [`super::config_offsets`]): anchor, override,
/// the standard default and sequential EI all read the shifted means.
pub const CONFIG_OFFSET: usize = 33;

/// The shipped rule with the standard default's threshold fixed at
/// [`super::ANCHOR_SWITCH_PROBABILITY`], as before session 27, not the one each refit chooses on
/// its cross-validated decisions ([`MetaModel::standard_threshold`]). It differs from the
/// shipped row only on tasks where the recipe was logged.
pub const STANDARD_AT_0_9: usize = 32;

/// The row of [`METHODS`] that always runs the standard ImageNet transfer recipe
/// ([`standard_recipe`]): what a practitioner without an advisor would try first.
pub const STANDARD_RECIPE: usize = 30;

/// The shipped rule before session 25: the anchored pick alone. Since then, on the tasks where
/// the standard recipe is a candidate, the recipe is the default and the anchored pick replaces
/// it only when it beats it with P >= [`super::ANCHOR_SWITCH_PROBABILITY`]
/// ([`super::standard_default_pick`]). It differs from the shipped row only on those tasks.
pub const ANCHORED_ALONE: usize = 31;

/// The backbone of the standard ImageNet recipe ([`STANDARD_RECIPE`]).
pub const STANDARD_BACKBONE: &str = "efficientnet-lite0-imagenet";

/// Ablations of the shipped override rule: [`OUTCOME_OVERRIDE`] weighs P(run j beats the
/// anchor's run) with each run's observation noise added to the latent posterior;
/// [`SAME_FEATURES_CENTROID`] lets a centroid probe override only on the anchor's backbone and
/// input size (on other features the anchor's cross-validated accuracy is direct evidence
/// against it); [`BOTH_OVERRIDE_RULES`] applies both.
pub const OUTCOME_OVERRIDE: usize = 25;
pub const SAME_FEATURES_CENTROID: usize = 26;
pub const BOTH_OVERRIDE_RULES: usize = 27;
/// The override's P(challenger beats anchor) with the ranking GP's covariance scaled by the
/// marginal calibration factor (`cv.gp_sd_scale`, which calibrates single cells) instead of the
/// one that calibrates differences between a held-out task's cells
/// ([`MetaModel::override_sd_scale`]), as the advisor did before session 19.
pub const MARGINAL_OVERRIDE: usize = 28;
/// The override's P with the covariance scaled by the factor calibrated on the override's own
/// held-out decisions ([`MetaModel::decision_sd_scale`]).
pub const DECISION_OVERRIDE: usize = 29;

/// The rows of [`METHODS`] that restrict the advisor to recipes without, or only with, a
/// pretraining step: on tasks with an unlabelled pool, what "never pretrain" and "always
/// pretrain" would get against the advisor's free choice ([`pretrain_policy_table`]).
pub const PRETRAIN_NEVER: usize = 22;
pub const PRETRAIN_ALWAYS: usize = 23;

/// The row of [`METHODS`] with the shipped rule of session 14: the anchor read by its own SVM
/// probe, not by the classifier the GP prefers on its features ([`super::anchor_classifier`]).
pub const SVM_ANCHOR: usize = 24;

/// How `graft auto` names its winner among the runs it made, each seen through its accuracy on a
/// small validation split.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WinnerRule {
    /// The run with the highest posterior mean given the prediction and the validation accuracy.
    PosteriorMean,
    /// The first run (the anchored pick, which the probe's cross-validation chose on every
    /// training image) unless the run with the highest posterior mean beats it with posterior
    /// probability at least this (under the joint posterior, so their correlation counts).
    KeepFirstUnless(f64),
    /// The highest validation accuracy (ties: the earlier run).
    ValAccuracy,
}

/// The rows of [`METHODS`] that simulate `graft auto --budget K` as it runs ([`simulate_auto`]),
/// one per winner rule: their regret at budget K is that of the one answer auto gives, not of
/// the best of K runs.
pub const AUTO_SIMULATED: [(usize, WinnerRule); 3] =
    [(18, WinnerRule::PosteriorMean), (19, WinnerRule::KeepFirstUnless(super::ANCHOR_SWITCH_PROBABILITY)), (20, WinnerRule::ValAccuracy)];

/// The winner rule `graft auto` uses ([`super::search::Planner::best_config`]): the highest
/// validation accuracy. In `meta eval`'s simulation of `auto` (279 held-out tasks, 14 764 runs)
/// it is the only rule of the three under which a bigger budget never gave a worse answer: mean
/// test accuracy 0.712 at budget 1, 0.715 at 3 and at 5. The posterior mean lost accuracy (0.703
/// at 3): the GP's prior over candidates is too far off to outweigh even a noisy validation
/// accuracy. Keeping the first pick unless a run beats it with P ≥ 0.9 held 0.709 to 0.710.
pub const AUTO_WINNER_RULE: WinnerRule = WinnerRule::ValAccuracy;

/// The row of [`METHODS`] that simulates `auto` with its shipped winner rule.
pub fn auto_simulated_method() -> &'static str {
    METHODS[AUTO_SIMULATED.iter().find(|x| x.1 == AUTO_WINNER_RULE).expect("the shipped rule is simulated").0]
}

/// Replicates of the simulated validation noise per held-out task in [`simulate_auto`].
pub const AUTO_SIM_REPLICATES: usize = 8;

/// The row of [`METHODS`] that is the advisor as shipped (its anchor score is
/// [`super::ANCHOR_SCORE`]); SPEC.md: its name, and only its, contains "shipped".
pub fn shipped_method() -> &'static str {
    match super::ANCHOR_SCORE {
        super::AnchorScore::LogMe => METHODS[0],
        super::AnchorScore::ProbeCv => METHODS[21],
    }
}

/// The ImageNet backbone of the zoo with the most parameters (what a user without an advisor
/// would reach for), by name.
fn largest_imagenet_backbone() -> Option<String> {
    crate::backbones::card::list_models()
        .ok()?
        .into_iter()
        .filter(|m| m.card.source.contains("imagenet"))
        .max_by_key(|m| m.card.params)
        .map(|m| m.card.name)
}

/// Every group fine-tuned (nothing frozen, at most the head re-initialised) at one learning rate
/// 3e-4, without layer decay, L2-SP or pretraining: the plain fine-tune the baselines run.
fn plain_finetune_3e4(r: &super::features::RecipeSummary) -> bool {
    r.strategy == crate::recipe::Strategy::Finetune
        && r.n_freeze == 0
        && r.n_reinit <= 1
        && (r.lr - 3e-4).abs() < 1e-9
        && r.layer_decay == 1.0
        && r.l2sp == 0.0
        && !r.pretrain
}

/// The two "what users would otherwise do" baselines on a held-out task's cells, chosen by
/// recipe alone: the linear probe on the penultimate features of the largest ImageNet backbone
/// at the largest input size logged for it, and its full fine-tune (nothing frozen or
/// re-initialised, one learning rate 3e-4, no L2-SP) at the logged size closest to 224 px.
/// None where the task has no such run.
pub fn imagenet_baselines(tc: &[&Cell], largest: &str, native: usize) -> (Option<usize>, Option<usize>) {
    let size = |c: &Cell| crate::backbones::card::split_key(&c.backbone).1.unwrap_or(native);
    let on_largest = |c: &Cell| crate::backbones::card::split_key(&c.backbone).0 == largest;
    let probe = tc
        .iter()
        .enumerate()
        .filter(|(_, c)| on_largest(c) && c.recipe.strategy == crate::recipe::Strategy::LinearProbe && c.recipe.probe_depth == Some(1.0))
        .max_by_key(|(_, c)| size(c))
        .map(|(i, _)| i);
    let ft = tc
        .iter()
        .enumerate()
        .filter(|(_, c)| on_largest(c) && plain_finetune_3e4(&c.recipe))
        .min_by_key(|(_, c)| (size(c) as i64 - 224).abs())
        .map(|(i, _)| i);
    (probe, ft)
}

/// The standard ImageNet recipe's cell on a held-out task, chosen by recipe alone:
/// [`STANDARD_BACKBONE`] at 224 px (`native` is its card's input size, which an unsuffixed key
/// means), the plain fine-tune at 3e-4 ([`plain_finetune_3e4`]) for 30 epochs. None where the
/// task has no such run.
pub fn standard_recipe(tc: &[&Cell], native: usize) -> Option<usize> {
    tc.iter().position(|c| is_standard_recipe(&c.backbone, &c.recipe, native))
}

/// Whether a backbone key and recipe are the standard ImageNet recipe ([`standard_recipe`]).
pub fn is_standard_recipe(backbone_key: &str, r: &super::features::RecipeSummary, native: usize) -> bool {
    let (name, size) = crate::backbones::card::split_key(backbone_key);
    name == STANDARD_BACKBONE && size.unwrap_or(native) == 224 && plain_finetune_3e4(r) && r.epochs == 30
}

/// The LogME anchor of every task among `cells`: the linear probe whose backbone and depth have
/// the highest LogME on that task (tasks without probe cells have none).
pub fn logme_anchors<'a>(cells: &[&'a Cell]) -> BTreeMap<String, &'a Cell> {
    let mut out: BTreeMap<String, (&Cell, f64)> = BTreeMap::new();
    for c in cells {
        if let Some(v) = super::probe_logme(&c.recipe, &c.task) {
            let e = out.entry(c.task_id.clone()).or_insert((c, v));
            if v > e.1 {
                *e = (c, v);
            }
        }
    }
    out.into_iter().map(|(k, (c, _))| (k, c)).collect()
}

/// A greedy portfolio of `k` configurations that complements the LogME anchor on past tasks
/// (auto-sklearn 2.0's portfolio construction, started from the anchor): each step adds the
/// configuration with the largest mean gain in best-so-far accuracy over the tasks, where a task
/// on which the configuration was not logged counts as no gain.
pub fn anchored_portfolio(cells: &[&Cell], k: usize) -> Vec<String> {
    let anchors = logme_anchors(cells);
    let mut by_task: BTreeMap<&str, BTreeMap<String, f64>> = BTreeMap::new();
    for c in cells {
        if anchors.contains_key(&c.task_id) {
            by_task.entry(c.task_id.as_str()).or_default().insert(c.config(), c.acc);
        }
    }
    let mut cur: BTreeMap<&str, f64> = by_task.keys().map(|t| (*t, anchors[*t].acc)).collect();
    let configs: BTreeSet<String> = by_task.values().flat_map(|m| m.keys().cloned()).collect();
    let mut chosen: Vec<String> = Vec::new();
    for _ in 0..k {
        let gain =
            |cfg: &String| -> f64 { by_task.iter().map(|(t, m)| m.get(cfg).map(|a| (a - cur[t]).max(0.0)).unwrap_or(0.0)).sum::<f64>() };
        // each candidate's gain once; max_by keeps the last of equal maxima, as before
        let Some((_, best)) = configs.iter().filter(|c| !chosen.contains(c)).map(|c| (gain(c), c)).max_by(|a, b| a.0.total_cmp(&b.0))
        else {
            break;
        };
        for (t, m) in &by_task {
            if let Some(a) = m.get(best) {
                let e = cur.get_mut(t).expect("task");
                *e = e.max(*a);
            }
        }
        chosen.push(best.clone());
    }
    chosen
}

#[derive(Debug, Clone, Serialize)]
pub struct TaskResult {
    pub task_id: String,
    pub family: String,
    pub shots: f64,
    pub shift: String,
    pub distance: String,
    pub n_configs: usize,
    pub best_acc: f64,
    /// method -> normalised regret at budgets 1..=K
    pub regret: BTreeMap<String, Vec<f64>>,
    /// method -> accuracy gap (best − chosen) at budgets 1..=K
    pub gap: BTreeMap<String, Vec<f64>>,
    /// method -> rank (1 = best) of the best chosen configuration at budgets 1..=K
    pub rank: BTreeMap<String, Vec<f64>>,
    /// The advisor's predicted accuracy against each held-out run of the task: the sum of
    /// squared errors, the runs, and the runs predicted to within ±3 points.
    #[serde(default)]
    pub pred_sq_err: f64,
    #[serde(default)]
    pub pred_runs: usize,
    #[serde(default)]
    pub pred_within3: usize,
    /// The sum of the signed errors (stated − measured) over those runs: their bias.
    #[serde(default)]
    pub pred_err_sum: f64,
    /// Most over fewest training images a class (1 for a balanced task; 0 in evaluations saved
    /// before it was recorded, whose tasks were all balanced).
    #[serde(default)]
    pub imbalance: f64,
    /// The seed-to-seed noise of the task's runs: over its configurations logged with two or more
    /// seeds, the sum of half the squared difference of the first two seeds' accuracies, and the
    /// number of such pairs. sqrt(sum / pairs) estimates the standard deviation of one run around
    /// its configuration's expected accuracy: the RMSE floor of any prediction of a single run.
    #[serde(default)]
    pub seed_half_sq: f64,
    #[serde(default)]
    pub seed_pairs: usize,
    /// The task's unlabelled pool (images).
    #[serde(default)]
    pub n_unlabelled: usize,
    /// Whether the task's best logged configuration pretrains (None when none of its
    /// configurations does).
    #[serde(default)]
    pub best_pretrains: Option<bool>,
    /// Whether the shipped advisor's first pick pretrains (same condition).
    #[serde(default)]
    pub advisor_pretrains: Option<bool>,
    /// The best logged accuracy (mean over seeds) of the task's configurations without a
    /// pretraining step (`none`) and with each pretraining method (its name), where logged.
    #[serde(default)]
    pub best_by_pretrain: BTreeMap<String, f64>,
    /// The shipped override's question on this task, where the anchor has a challenger: P(the
    /// challenger beats the anchor) under the posterior calibrated on within-task differences,
    /// the same under the marginal calibration, and the logged accuracy of the challenger minus
    /// the anchor's.
    #[serde(default)]
    pub override_check: Option<OverrideCheck>,
    /// The standard default's question on this task, where the recipe is logged and the anchored
    /// pick is another configuration: P(the pick beats the recipe) as the shipped rule weighs it
    /// (`p`), under the marginal calibration, and the pick's logged accuracy minus the recipe's.
    #[serde(default)]
    pub standard_check: Option<OverrideCheck>,
}

/// See [`TaskResult::override_check`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct OverrideCheck {
    pub p: f64,
    pub p_marginal: f64,
    pub gain: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub families: Vec<String>,
    pub n_tasks: usize,
    pub budgets: usize,
    pub tasks: Vec<TaskResult>,
    /// method -> mean normalised regret per budget
    pub mean_regret: BTreeMap<String, Vec<f64>>,
    pub mean_gap: BTreeMap<String, Vec<f64>>,
    pub mean_rank: BTreeMap<String, Vec<f64>>,
    /// Fraction of held-out runs inside the advisor's stated 80% interval.
    pub coverage80: f64,
    pub n_calibration_runs: usize,
    /// (predicted, actual) per held-out run (advisor, GP), for the calibration plot.
    pub calibration: Vec<(f64, f64)>,
    /// The stated accuracy with the task-level shift and without: over all held-out runs, and
    /// over the standard recipe's.
    pub task_level_all: LevelCheck,
    pub task_level_standard: LevelCheck,
    /// Per strategy and backbone model ([`super::scale_group`]): held-out runs, and how many
    /// fell inside the stated 80% interval.
    pub coverage80_by_group: BTreeMap<String, [usize; 2]>,
    /// The forecasts of twice the labels against what twice the labels did ([`LabelPair`]).
    pub label_pairs: Vec<LabelPair>,
}

/// The accuracy stated for the held-out runs with the task-level shift (shipped) and without:
/// bias, RMSE and 80% coverage, over all runs and over the standard recipe's.
fn task_level_table(r: &EvalReport) -> String {
    let mut s = "The accuracy stated for a held-out run, with the task-level shift (alpha + beta x the task's probe gap: its nearest-centroid probes' cross-validated balanced accuracy on its training images less the GP's prediction for them, alpha and beta from each refit's own cross-validation; shipped) and without:\n\n| runs | n | bias with | bias without | RMSE with | RMSE without | 80% coverage with | without |\n|---|---|---|---|---|---|---|---|\n".to_string();
    for (name, c) in [("all", &r.task_level_all), ("the standard recipe's", &r.task_level_standard)] {
        if c.runs == 0 {
            continue;
        }
        let (b0, e0, v0) = c.stats(0);
        let (b1, e1, v1) = c.stats(1);
        s.push_str(&format!(
            "| {name} | {} | {:+.1} | {:+.1} | {:.1} | {:.1} | {:.1}% | {:.1}% |\n",
            c.runs,
            b0 * 100.0,
            b1 * 100.0,
            e0 * 100.0,
            e1 * 100.0,
            v0 * 100.0,
            v1 * 100.0
        ));
    }
    s.push_str("\nBias and RMSE in accuracy points (stated − logged). The stated 80% interval's coverage per strategy and backbone model (its interval scale calibrated on that group's held-out cells where it has enough):\n\n| strategy / backbone model | held-out runs | inside the 80% interval |\n|---|---|---|\n");
    for (g, [n, i]) in &r.coverage80_by_group {
        s.push_str(&format!("| {g} | {n} | {:.1}% |\n", 100.0 * *i as f64 / (*n).max(1) as f64));
    }
    s.push('\n');
    s
}

/// Pearson correlation of two equally long series (NaN with fewer than 3 points or no spread).
fn correlation(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    if x.len() < 3 {
        return f64::NAN;
    }
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let sxx: f64 = x.iter().map(|a| (a - mx).powi(2)).sum();
    let syy: f64 = y.iter().map(|b| (b - my).powi(2)).sum();
    if sxx <= 0.0 || syy <= 0.0 {
        f64::NAN
    } else {
        sxy / (sxx * syy).sqrt()
    }
}

/// A correlation to two decimals, or a dash where it is undefined.
fn fmt_r(r: f64) -> String {
    if r.is_finite() {
        format!("{r:.2}")
    } else {
        "–".into()
    }
}

/// Per [`LabelPair`], the baseline "what twice the labels did elsewhere": the mean measured gain
/// of the pairs of the same kind and shots in the *other* families (None where there are none).
pub fn other_families_gain(pairs: &[LabelPair]) -> Vec<Option<f64>> {
    pairs
        .iter()
        .map(|p| {
            let g: Vec<f64> =
                pairs.iter().filter(|q| q.family != p.family && q.kind == p.kind && q.shots == p.shots).map(|q| q.measured_gain).collect();
            (!g.is_empty()).then(|| g.iter().sum::<f64>() / g.len() as f64)
        })
        .collect()
}

/// The forecasts of twice the labels on held-out families, per kind of recipe and per S: the
/// measured gain, the forecast's and the given features' gains, their mean absolute errors and
/// correlations with the measured gain, beside two baselines (no change; the mean gain of the
/// other families' pairs of the same kind and S).
fn label_pairs_table(pairs: &[LabelPair]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let base = other_families_gain(pairs);
    let mut s = "## Twice the labels: the forecast on held-out families\n\nEach held-out family's tasks of one kind (classes, shift) at S and at 2S labelled images a class, and each configuration logged on both (seeds and tasks averaged): the gain twice the labels measured, the gain the meta-learner forecasts from the S-shot tasks' features with only their shots doubled (the measured transferability and the task-level shift held), and the gain it states once the 2S tasks exist (their own features: what `recommend`'s `more_labels`, which forecasts the transferability from half the images, would give were that forecast exact). Baselines: no change, and the mean measured gain of the other families' pairs of the same kind and S. Gains and mean absolute errors (MAE) in accuracy points; r: correlation with the measured gain over the pairs.\n\n| pairs by | pairs | families | measured | shots only | MAE shots only | r shots only | given 2S | MAE given | r given | MAE no change | MAE other families | r other families |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n".to_string();
    let mut rows: Vec<(String, Vec<usize>)> = Vec::new();
    // the kinds in the order of their names
    let mut kinds: Vec<RecipeKind> = pairs.iter().map(|p| p.kind).collect();
    kinds.sort_by_key(|k| k.to_string());
    kinds.dedup();
    rows.push(("all".into(), (0..pairs.len()).collect()));
    for k in kinds {
        rows.push((k.to_string(), (0..pairs.len()).filter(|&i| pairs[i].kind == k).collect()));
    }
    let mut shots: Vec<f64> = pairs.iter().map(|p| p.shots).collect();
    shots.sort_by(f64::total_cmp);
    shots.dedup();
    for sh in shots {
        rows.push((format!("S = {sh}"), (0..pairs.len()).filter(|&i| pairs[i].shots == sh).collect()));
    }
    for (name, idx) in rows {
        if idx.is_empty() {
            continue;
        }
        let col = |f: &dyn Fn(usize) -> f64| idx.iter().map(|&i| f(i)).collect::<Vec<f64>>();
        let m = col(&|i| pairs[i].measured_gain);
        let fc = col(&|i| pairs[i].forecast_gain);
        let gv = col(&|i| pairs[i].given_gain);
        let mean = |v: &[f64]| 100.0 * v.iter().sum::<f64>() / v.len() as f64;
        let mae = |v: &[f64]| 100.0 * v.iter().zip(&m).map(|(a, b)| (a - b).abs()).sum::<f64>() / v.len() as f64;
        let with_base: Vec<usize> = idx.iter().copied().filter(|&i| base[i].is_some()).collect();
        let (bm, bb): (Vec<f64>, Vec<f64>) = with_base.iter().map(|&i| (pairs[i].measured_gain, base[i].expect("filtered"))).unzip();
        let base_mae = 100.0 * bm.iter().zip(&bb).map(|(a, b)| (a - b).abs()).sum::<f64>() / bm.len().max(1) as f64;
        let families: BTreeSet<&str> = idx.iter().map(|&i| pairs[i].family.as_str()).collect();
        s.push_str(&format!(
            "| {name} | {} | {} | {:+.1} | {:+.1} | {:.1} | {} | {:+.1} | {:.1} | {} | {:.1} | {} | {} |\n",
            idx.len(),
            families.len(),
            mean(&m),
            mean(&fc),
            mae(&fc),
            fmt_r(correlation(&fc, &m)),
            mean(&gv),
            mae(&gv),
            fmt_r(correlation(&gv, &m)),
            100.0 * m.iter().map(|v| v.abs()).sum::<f64>() / m.len() as f64,
            if bm.is_empty() { "–".to_string() } else { format!("{base_mae:.1} ({} pairs)", bm.len()) },
            fmt_r(correlation(&bb, &bm))
        ));
    }
    s.push('\n');
    s
}

/// Resamples of the family-cluster bootstrap in [`paired_differences`].
pub const BOOTSTRAP_RESAMPLES: usize = 2000;

/// Each method's regret at budget `b` (0-based) minus the shipped advisor's, paired per task over
/// the tasks where both have one: (method, tasks, mean difference, 95% interval). The interval is
/// a percentile bootstrap that resamples held-out *families* with replacement (a family's tasks,
/// shifted copies included, are not independent draws), seeded, so a difference whose interval
/// holds 0 is not one the held-out tasks can tell from chance.
pub fn paired_differences(r: &EvalReport, b: usize, seed: u64) -> Vec<(String, usize, f64, f64, f64)> {
    let shipped = shipped_method();
    let mut out = Vec::new();
    for m in METHODS.iter().filter(|m| **m != shipped) {
        let pairs = r.tasks.iter().filter_map(|t| {
            let (a, s) = (t.regret.get(*m)?.get(b)?, t.regret.get(shipped)?.get(b)?);
            (a.is_finite() && s.is_finite()).then(|| (t.family.as_str(), a - s))
        });
        if let Some((n, mean, lo, hi)) = family_bootstrap(pairs, seed, &format!("paired-bootstrap/{m}/{b}")) {
            out.push((m.to_string(), n, mean, lo, hi));
        }
    }
    out
}

/// The mean of per-task differences (family, difference) and its 95% percentile interval from
/// [`BOOTSTRAP_RESAMPLES`] resamples of whole families with replacement, seeded by `seed` and
/// `label`: (tasks, mean, low, high), or None without a task.
fn family_bootstrap<'a>(pairs: impl Iterator<Item = (&'a str, f64)>, seed: u64, label: &str) -> Option<(usize, f64, f64, f64)> {
    use rand::Rng;
    // per family: (sum of differences, tasks)
    let mut fam: BTreeMap<&str, (f64, usize)> = BTreeMap::new();
    for (f, d) in pairs {
        let e = fam.entry(f).or_insert((0.0, 0));
        e.0 += d;
        e.1 += 1;
    }
    let groups: Vec<(f64, usize)> = fam.into_values().collect();
    let n: usize = groups.iter().map(|g| g.1).sum();
    if n == 0 {
        return None;
    }
    let mean = groups.iter().map(|g| g.0).sum::<f64>() / n as f64;
    let mut rng = rng_for(seed, label);
    let mut boot: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| {
            let (mut sum, mut k) = (0.0, 0usize);
            for _ in 0..groups.len() {
                let g = groups[rng.random_range(0..groups.len())];
                sum += g.0;
                k += g.1;
            }
            sum / k.max(1) as f64
        })
        .collect();
    boot.sort_by(|x, y| x.total_cmp(y));
    let q = |p: f64| boot[((p * (boot.len() - 1) as f64).round() as usize).min(boot.len() - 1)];
    Some((n, mean, q(0.025), q(0.975)))
}

/// A `meta eval` as saved in its meta-eval.json, as far as comparing two of them needs (a
/// regret that was not finite is saved as null).
#[derive(Debug, Clone, Deserialize)]
pub struct SavedEval {
    pub tasks: Vec<SavedTask>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SavedTask {
    pub task_id: String,
    pub family: String,
    /// method -> normalised regret at budgets 1..=K
    pub regret: BTreeMap<String, Vec<Option<f64>>>,
}

/// One method's regret at one budget in two evaluations, paired per task.
#[derive(Debug, Clone, Serialize)]
pub struct EvalDifference {
    pub method: String,
    /// 1-based.
    pub budget: usize,
    pub tasks: usize,
    pub base: f64,
    pub new: f64,
    /// Mean of new − base over the tasks both evaluated; its 95% family-bootstrap interval.
    pub difference: f64,
    pub low: f64,
    pub high: f64,
    /// Families whose tasks' summed difference is below 0 / above 0.
    pub families_lower: usize,
    pub families_higher: usize,
}

/// Every method both evaluations report, its regret at budget `b` (0-based) in `new` minus in
/// `base`, paired per task (by task id; tasks and budgets only one of them has drop out), with
/// the interval of [`paired_differences`]: what changed between two versions of the advisor (a
/// refit, a new scale, more runs) on the same held-out tasks, and whether the tasks can tell.
pub fn compare_evals(base: &SavedEval, new: &SavedEval, b: usize, seed: u64) -> Vec<EvalDifference> {
    let by_id: BTreeMap<&str, &SavedTask> = base.tasks.iter().map(|t| (t.task_id.as_str(), t)).collect();
    let methods: BTreeSet<&String> = new.tasks.iter().flat_map(|t| t.regret.keys()).collect();
    let mut out = Vec::new();
    for m in methods {
        let rows: Vec<(&str, f64, f64)> = new
            .tasks
            .iter()
            .filter_map(|t| {
                let y = (*t.regret.get(m)?.get(b)?)?;
                let x = (*by_id.get(t.task_id.as_str())?.regret.get(m)?.get(b)?)?;
                (x.is_finite() && y.is_finite()).then_some((t.family.as_str(), x, y))
            })
            .collect();
        let Some((n, difference, low, high)) =
            family_bootstrap(rows.iter().map(|r| (r.0, r.2 - r.1)), seed, &format!("compare-bootstrap/{m}/{b}"))
        else {
            continue;
        };
        let mut fam: BTreeMap<&str, f64> = BTreeMap::new();
        for r in &rows {
            *fam.entry(r.0).or_default() += r.2 - r.1;
        }
        out.push(EvalDifference {
            method: m.clone(),
            budget: b + 1,
            tasks: n,
            base: rows.iter().map(|r| r.1).sum::<f64>() / n as f64,
            new: rows.iter().map(|r| r.2).sum::<f64>() / n as f64,
            difference,
            low,
            high,
            families_lower: fam.values().filter(|d| **d < -1e-12).count(),
            families_higher: fam.values().filter(|d| **d > 1e-12).count(),
        });
    }
    out
}

/// [`compare_evals`] as a markdown table.
pub fn compare_markdown(rows: &[EvalDifference]) -> String {
    let mut s = String::from(
        "| method | budget | tasks | base | new | new − base [95% family-bootstrap interval] | families lower / higher |\n|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} | {:.4} | {:.4} | {:+.4} [{:+.4}, {:+.4}] | {} / {} |\n",
            r.method, r.budget, r.tasks, r.base, r.new, r.difference, r.low, r.high, r.families_lower, r.families_higher
        ));
    }
    s
}

/// How often the override's challenger beat the anchor in the logged runs, by the probability
/// the advisor gave it, under the calibration on within-task differences (shipped) and the
/// marginal one: a reliability table of the override's P. Only tasks where the challenger's
/// posterior mean exceeds the anchor's (P > 0.5) have a question to ask.
fn override_table(r: &EvalReport) -> String {
    let checks: Vec<OverrideCheck> = r.tasks.iter().filter_map(|t| t.override_check).collect();
    if checks.is_empty() {
        return String::new();
    }
    let head = format!(
        "The override's probability against the logged outcome, on the {} held-out tasks where the anchor's best challenger (a fine-tune, a centroid probe or a pretrain-first recipe) has the higher posterior mean: tasks, mean stated P(challenger beats anchor), and the fraction where its logged accuracy was higher (ties count half), binned by P under each calibration. The anchor is overridden at P >= {:.2}. A logged accuracy is one or two seeds on a few test images, so the realised fraction is pulled towards 0.5 even where P is right about the expected accuracies.\n\n| P | tasks (within-task calibration, shipped) | mean P | challenger higher | tasks (marginal calibration) | mean P | challenger higher |\n|---|---|---|---|---|---|---|\n",
        checks.len(),
        super::ANCHOR_SWITCH_PROBABILITY
    );
    check_table(&checks, head, &[(0.5, 0.7), (0.7, 0.9), (0.9, 0.99), (0.99, 1.0 + 1e-9)])
}

/// The standard default's P against the logged outcome ([`TaskResult::standard_check`]).
fn standard_check_table(r: &EvalReport) -> String {
    let checks: Vec<OverrideCheck> = r.tasks.iter().filter_map(|t| t.standard_check).collect();
    if checks.is_empty() {
        return String::new();
    }
    let head = format!(
        "The standard default's probability against the logged outcome, on the {} held-out tasks where the standard recipe was logged and the anchored pick is another configuration: tasks, mean stated P(the pick beats the recipe), and the fraction where the pick's logged accuracy was higher (ties count half), binned by P. The pick replaces the recipe at P >= {:.2} before session 27; since, at the threshold each held-out refit chose on its own cross-validated decisions. The same caveat on noisy outcomes holds.\n\n| P | tasks (within-task calibration, shipped) | mean P | pick higher | tasks (marginal calibration) | mean P | pick higher |\n|---|---|---|---|---|---|---|\n",
        checks.len(),
        super::ANCHOR_SWITCH_PROBABILITY
    );
    check_table(&checks, head, &[(0.0, 0.5), (0.5, 0.7), (0.7, 0.9), (0.9, 0.99), (0.99, 1.0 + 1e-9)])
}

/// Rows of P bands under both calibrations: tasks, mean P, and the fraction the challenger won
/// (ties half).
fn check_table(checks: &[OverrideCheck], mut s: String, bins: &[(f64, f64)]) -> String {
    let row = |p: &dyn Fn(&OverrideCheck) -> f64, lo: f64, hi: f64| {
        let c: Vec<&OverrideCheck> = checks.iter().filter(|c| p(c) >= lo && p(c) < hi).collect();
        if c.is_empty() {
            return "0 | – | –".to_string();
        }
        let n = c.len() as f64;
        let won = c
            .iter()
            .map(|c| {
                if c.gain > 1e-12 {
                    1.0
                } else if c.gain < -1e-12 {
                    0.0
                } else {
                    0.5
                }
            })
            .sum::<f64>();
        format!("{} | {:.3} | {:.2}", c.len(), c.iter().map(|c| p(c)).sum::<f64>() / n, won / n)
    };
    for &(lo, hi) in bins {
        s.push_str(&format!(
            "| [{lo:.2}, {:.2}) | {} | {} |\n",
            hi.min(1.0),
            row(&|c: &OverrideCheck| c.p, lo, hi),
            row(&|c: &OverrideCheck| c.p_marginal, lo, hi)
        ));
    }
    s.push('\n');
    s
}

/// The paired differences against the shipped advisor at budgets 1 and 3 ([`paired_differences`]).
fn paired_table(r: &EvalReport) -> String {
    let b3 = 2.min(r.budgets.saturating_sub(1));
    let d1 = paired_differences(r, 0, 0);
    let d3: BTreeMap<String, (f64, f64, f64)> =
        paired_differences(r, b3, 0).into_iter().map(|(m, _, d, lo, hi)| (m, (d, lo, hi))).collect();
    let mut s = format!(
        "Each method against the shipped advisor, paired per task: regret minus the shipped advisor's (positive: worse than shipped), with a 95% interval from a bootstrap over held-out families ({BOOTSTRAP_RESAMPLES} resamples; a family's tasks move together). An interval that holds 0 is a difference these tasks cannot tell from chance.\n\n| method | tasks | Δ regret@1 [95%] | Δ regret@{} [95%] |\n|---|---|---|---|\n",
        b3 + 1
    );
    for (m, n, d, lo, hi) in d1 {
        let r3 = d3.get(&m).map_or("n/a".to_string(), |(d, lo, hi)| format!("{d:+.3} [{lo:+.3}, {hi:+.3}]"));
        s.push_str(&format!("| {m} | {n} | {d:+.3} [{lo:+.3}, {hi:+.3}] | {r3} |\n"));
    }
    s.push('\n');
    s
}

/// Expected best of K distinct configurations drawn uniformly at random (exact).
fn random_best_of_k(accs: &[f64], k: usize) -> f64 {
    let mut a = accs.to_vec();
    a.sort_by(|x, y| x.total_cmp(y));
    let n = a.len();
    let k = k.min(n);
    // P(max is the i-th smallest, 1-based) = C(i-1, k-1) / C(n, k)
    let lc = |n: usize, r: usize| -> f64 {
        if r > n {
            return f64::NEG_INFINITY;
        }
        (1..=r).map(|j| ((n - r + j) as f64).ln() - (j as f64).ln()).sum()
    };
    let denom = lc(n, k);
    (1..=n).map(|i| if i >= k { (lc(i - 1, k - 1) - denom).exp() * a[i - 1] } else { 0.0 }).sum()
}

/// Greedy batch selection by Monte-Carlo q-expected improvement on the joint posterior.
/// `first`, then the other k − 1 picks by q-EI among the rest (the advisor's batch: its first pick
/// is the anchored recommendation).
pub fn first_then_qei(first: usize, mean: &[f64], cov: &nalgebra::DMatrix<f64>, k: usize, seed: u64) -> Vec<usize> {
    let mut o = vec![first];
    o.extend(qei_order(mean, cov, k + 1, seed).into_iter().filter(|&i| i != first));
    o.truncate(k);
    o
}

/// Sequential Bayesian optimisation over one task's candidates, as `graft auto --budget K` runs
/// them one after another: after each run the joint Gaussian posterior over the candidates is
/// conditioned on the accuracy observed, and the next candidate is the one with the highest
/// expected improvement over the best accuracy observed so far. `noise_var` is the observation
/// noise; `offset_var` adds a task-level offset shared by all candidates (the within-task GP
/// predicts accuracy minus the task's unknown mean; 0 for the absolute GP), which the first
/// observation pins down.
#[derive(Debug, Clone)]
pub struct SeqEi {
    mean: Vec<f64>,
    cov: nalgebra::DMatrix<f64>,
    noise_var: f64,
    chosen: Vec<usize>,
    best: f64,
}

impl SeqEi {
    pub fn new(mean: &[f64], cov: &nalgebra::DMatrix<f64>, noise_var: f64, offset_var: f64) -> Self {
        SeqEi {
            mean: mean.to_vec(),
            cov: cov.add_scalar(offset_var),
            noise_var: noise_var.max(1e-10),
            chosen: Vec::new(),
            best: f64::NEG_INFINITY,
        }
    }

    /// Record that candidate `i` was run (`y`: its observed accuracy, if any) and condition on it.
    pub fn observe(&mut self, i: usize, y: Option<f64>) {
        self.observe_noisy(i, y, 0.0)
    }

    /// [`SeqEi::observe`] with `extra_var` added to this observation's noise (e.g. the sampling
    /// variance of an accuracy measured on a handful of validation images).
    pub fn observe_noisy(&mut self, i: usize, y: Option<f64>, extra_var: f64) {
        if !self.chosen.contains(&i) {
            self.chosen.push(i);
        }
        let Some(y) = y else { return };
        self.best = self.best.max(y);
        let n = self.mean.len();
        let d = self.cov[(i, i)] + self.noise_var + extra_var.max(0.0);
        let ci: Vec<f64> = (0..n).map(|j| self.cov[(j, i)]).collect();
        let r = y - self.mean[i];
        for (m, c) in self.mean.iter_mut().zip(&ci) {
            *m += c / d * r;
        }
        for a in 0..n {
            for b in 0..n {
                self.cov[(a, b)] -= ci[a] * ci[b] / d;
            }
        }
    }

    /// Expected improvement of candidate `j` over the best observation (its mean before any).
    pub fn ei(&self, j: usize) -> f64 {
        let sd = self.cov[(j, j)].max(1e-12).sqrt();
        let gain = if self.best.is_finite() { self.mean[j] - self.best } else { self.mean[j] };
        let z = gain / sd;
        gain * super::normal_cdf(z) + sd * (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt()
    }

    /// The not-yet-run candidate with the highest expected improvement (ties: the lower index).
    pub fn next(&self) -> Option<usize> {
        (0..self.mean.len())
            .filter(|j| !self.chosen.contains(j))
            .map(|j| (j, self.ei(j)))
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
            .map(|x| x.0)
    }

    /// Posterior mean and variance of candidate `j` given the observations so far.
    pub fn posterior(&self, j: usize) -> (f64, f64) {
        (self.mean[j], self.cov[(j, j)])
    }

    /// Of the candidates `idx`, the one with the highest posterior mean (ties: the lower index).
    pub fn best_among(&self, idx: &[usize]) -> Option<usize> {
        idx.iter().map(|&i| (i, self.mean[i])).max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0))).map(|x| x.0)
    }

    /// The winner under `rule` among the runs made, as (candidate, validation accuracy) in the
    /// order they ran; None before any run with a validation accuracy.
    pub fn winner(&self, runs: &[(usize, f64)], rule: WinnerRule) -> Option<usize> {
        let idx: Vec<usize> = runs.iter().map(|r| r.0).collect();
        match rule {
            WinnerRule::PosteriorMean => self.best_among(&idx),
            WinnerRule::KeepFirstUnless(p) => {
                let first = *idx.first()?;
                let j = self.best_among(&idx)?;
                Some(if j != first && super::prob_greater(&self.mean, &self.cov, j, first) >= p { j } else { first })
            }
            WinnerRule::ValAccuracy => highest_validation(runs),
        }
    }
}

/// The run with the highest validation accuracy among (candidate, validation accuracy) in the
/// order they ran (ties: the earlier run).
pub fn highest_validation(runs: &[(usize, f64)]) -> Option<usize> {
    runs.iter().rev().copied().max_by(|a, b| a.1.total_cmp(&b.1)).map(|r| r.0)
}

/// The sampling variance of an accuracy `v` measured on `n_val` validation images, p(1 − p) /
/// n_val with p kept in [0.1, 0.9] (so that a perfect score on ten images is not taken as
/// certain); 0 without a validation split.
pub fn val_noise_var(v: f64, n_val: usize) -> f64 {
    if n_val == 0 {
        return 0.0;
    }
    let p = v.clamp(0.1, 0.9);
    p * (1.0 - p) / n_val as f64
}

/// The validation images `graft auto` carves out of a task with `shots` images in each of
/// `n_classes` classes: the executor's stratified 20% split (`data::folder::stratified_split`),
/// at least one and at most all but one image a class, none below two.
pub fn auto_val_size(shots: f64, n_classes: usize) -> usize {
    let m = shots.round().max(0.0) as usize;
    if m < 2 {
        return 0;
    }
    ((0.2 * m as f64).round() as usize).clamp(1, m - 1) * n_classes
}

/// `graft auto --budget K` as it runs, for every K up to `budgets`, on a task whose
/// configurations have the logged accuracies `accs`: budget 1 runs the first pick on every
/// training image. With more, each run trains on 80% of the training set and is seen only
/// through its accuracy on the `n_val` validation images, simulated as a binomial draw around the
/// logged accuracy; the next run is the expected-improvement pick given those noisy accuracies
/// ([`SeqEi::observe_noisy`] with [`val_noise_var`], as the `Planner` does), the winner is named
/// by `rule` ([`SeqEi::winner`]), and its refit on every training image scores its logged
/// accuracy. Returns, per replicate of the validation noise, the configuration auto answers with
/// at each budget. The draws come from `seed` and `task`. Approximations: a run on 80% of the
/// images is taken to validate at the accuracy logged for the full training set, and every
/// candidate's validation split holds the same number of images.
#[allow(clippy::too_many_arguments)]
pub fn simulate_auto(
    first: usize,
    mean: &[f64],
    cov: &nalgebra::DMatrix<f64>,
    noise_var: f64,
    offset_var: f64,
    accs: &[f64],
    n_val: usize,
    budgets: usize,
    seed: u64,
    task: &str,
    rule: WinnerRule,
    warp: super::Warp,
) -> Vec<Vec<usize>> {
    (0..AUTO_SIM_REPLICATES)
        .map(|rep| {
            let mut rng = crate::util::rng_for(seed, &format!("auto-sim/{task}/{rep}"));
            let mut s = SeqEi::new(mean, cov, noise_var, offset_var);
            let mut answers = vec![first];
            let mut run: Vec<usize> = Vec::new();
            let mut seen: Vec<(usize, f64)> = Vec::new();
            let mut pick = Some(first);
            while answers.len() < budgets {
                let Some(i) = pick else {
                    // every candidate has run: a bigger budget answers as the last one did
                    answers.push(*answers.last().expect("budget 1 answered"));
                    continue;
                };
                run.push(i);
                let val = (n_val > 0).then(|| {
                    let b = rand_distr::Binomial::new(n_val as u64, accs[i].clamp(0.0, 1.0)).expect("p in [0, 1]");
                    b.sample(&mut rng) as f64 / n_val as f64
                });
                s.observe_noisy(i, val.map(|v| warp.fwd(v)), val.map_or(0.0, |v| warp.obs_var(val_noise_var(v, n_val), n_val)));
                seen.extend(val.map(|v| (i, v)));
                pick = s.next();
                if run.len() >= 2 {
                    // without validation accuracies the first run wins
                    answers.push(s.winner(&seen, rule).unwrap_or(first));
                }
            }
            answers.truncate(budgets);
            answers
        })
        .collect()
}

/// The first `k` picks of sequential EI when `first` is run first and `observe` reveals each
/// pick's accuracy (in `meta eval`: the accuracy logged for that configuration on the task).
pub fn sequential_ei_order(
    first: usize,
    mean: &[f64],
    cov: &nalgebra::DMatrix<f64>,
    noise_var: f64,
    offset_var: f64,
    observe: &dyn Fn(usize) -> f64,
    k: usize,
) -> Vec<usize> {
    let mut s = SeqEi::new(mean, cov, noise_var, offset_var);
    let mut pick = Some(first);
    let mut order = Vec::new();
    while let Some(i) = pick {
        order.push(i);
        if order.len() >= k {
            break;
        }
        s.observe(i, Some(observe(i)));
        pick = s.next();
    }
    order
}

pub fn qei_order(mean: &[f64], cov: &nalgebra::DMatrix<f64>, k: usize, seed: u64) -> Vec<usize> {
    let n = mean.len();
    let mut c = cov.clone();
    for i in 0..n {
        c[(i, i)] += 1e-8;
    }
    let l = match nalgebra::Cholesky::new(c) {
        Some(ch) => ch.l(),
        None => {
            let mut idx: Vec<usize> = (0..n).collect();
            idx.sort_by(|&a, &b| mean[b].total_cmp(&mean[a]));
            return idx.into_iter().take(k).collect();
        }
    };
    let mut rng = rng_for(seed, "qei");
    let draws = 512;
    let samples: Vec<Vec<f64>> = (0..draws)
        .map(|_| {
            let z: nalgebra::DVector<f64> = nalgebra::DVector::from_iterator(n, (0..n).map(|_| StandardNormal.sample(&mut rng)));
            let s = &l * z;
            (0..n).map(|i| mean[i] + s[i]).collect()
        })
        .collect();
    let mut chosen: Vec<usize> = Vec::new();
    let mut cur = vec![f64::NEG_INFINITY; draws];
    for _ in 0..k.min(n) {
        let best = (0..n)
            .filter(|i| !chosen.contains(i))
            .map(|i| (i, samples.iter().zip(&cur).map(|(s, c)| s[i].max(*c)).sum::<f64>()))
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
            .expect("candidates left");
        chosen.push(best.0);
        for (c, s) in cur.iter_mut().zip(&samples) {
            *c = c.max(s[best.0]);
        }
    }
    chosen
}

fn outcome(order: &[usize], accs: &[f64], k: usize) -> (f64, f64, f64) {
    scored(order.iter().take(k).map(|&i| accs[i]).fold(f64::NEG_INFINITY, f64::max), accs)
}

/// Normalised regret, gap and rank (1 = best) of obtaining accuracy `got` on a task whose
/// configurations have the accuracies `accs`.
fn scored(got: f64, accs: &[f64]) -> (f64, f64, f64) {
    let best = accs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let worst = accs.iter().cloned().fold(f64::INFINITY, f64::min);
    let regret = if best - worst > 1e-12 { (best - got) / (best - worst) } else { 0.0 };
    let rank = 1.0 + accs.iter().filter(|&&a| a > got + 1e-12).count() as f64;
    (regret, best - got, rank)
}

/// Leave-one-family-out evaluation of every ranking method: per held-out family, refit on the
/// others (fold), rank each held-out task's logged configurations with every method (orders),
/// score the orders by regret, gap and rank (outcomes), check the intervals (calibration), then
/// average over tasks.
pub fn evaluate(obs: &[Obs], budgets: usize, fo: &FitOptions, log: &(dyn Fn(&str) + Sync)) -> Result<EvalReport> {
    let families: Vec<String> = obs.iter().map(|o| o.family.clone()).collect::<BTreeSet<_>>().into_iter().collect();
    if families.len() < 2 {
        return Err(GraftError::Data("meta eval needs runs from at least two families".into()));
    }
    let strata = DistanceStrata::of(obs);
    // The folds are independent: they run on the worker threads (`--threads`), each taking the
    // next family in turn, and are merged in family order, so the report does not depend on
    // the thread count.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done: std::sync::Mutex<BTreeMap<usize, FoldOut>> = Default::default();
    let workers = rayon::current_num_threads().clamp(1, families.len());
    std::thread::scope(|sc| {
        for _ in 0..workers {
            sc.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= families.len() {
                    break;
                }
                let out = eval_fold(obs, &families[i], &strata, budgets, fo);
                if let Ok((t, _, _)) = &out {
                    log(&format!("held out {}: {} tasks", families[i], t.len()));
                }
                done.lock().expect("no worker panicked").insert(i, out);
            });
        }
    });
    let mut tasks_out = Vec::new();
    let mut calib = Calibration::default();
    let mut label_pairs = Vec::new();
    for (_, out) in done.into_inner().expect("no worker panicked") {
        let (t, c, l) = out?;
        tasks_out.extend(t);
        calib.merge(c);
        label_pairs.extend(l);
    }
    let mut r = report(families, budgets, tasks_out, calib)?;
    r.label_pairs = label_pairs;
    Ok(r)
}

/// A fold's held-out tasks, the calibration of its predictions, and its forecasts of twice the
/// labels.
type FoldOut = Result<(Vec<TaskResult>, Calibration, Vec<LabelPair>)>;

/// A held-out family's balanced tasks of one kind (classes, shift) at S and at 2S labelled images a class,
/// and one configuration logged on both: what twice the labels did to its accuracy, and what the
/// meta-learner refitted without the family said it would.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabelPair {
    pub family: String,
    pub config: String,
    pub kind: RecipeKind,
    pub n_classes: usize,
    pub shift: String,
    /// S (median labelled images a class of the fewer-shot tasks).
    pub shots: f64,
    /// Tasks with the configuration at S and at 2S.
    pub tasks: [usize; 2],
    /// Mean logged accuracy (seeds averaged per task) at S.
    pub measured_now: f64,
    /// Mean logged accuracy at 2S less at S.
    pub measured_gain: f64,
    /// The forecast from the S tasks' features alone with their shots doubled and their measured
    /// transferability held ([`MetaModel::predict_with_more_shots`]), less the accuracy stated
    /// for them; averaged. `recommend`'s `more_labels` also moves the transferability (measured
    /// again on half the images), which needs the images; `given_gain` is what a perfect
    /// forecast of those features would give.
    pub forecast_gain: f64,
    /// The accuracy stated for the 2S tasks from their own features less that for the S tasks:
    /// what the meta-learner says once the labels exist.
    pub given_gain: f64,
}

/// The kind of recipe a [`LabelPair`] is summarised under: its strategy, and for a fine-tune
/// whether it pretrains first. Written `fine-tune`, `pretrain, then fine-tune`, or the probe's
/// strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct RecipeKind {
    pub strategy: crate::recipe::Strategy,
    pub pretrain: bool,
}

impl RecipeKind {
    fn of(r: &super::features::RecipeSummary) -> Self {
        RecipeKind { strategy: r.strategy, pretrain: r.strategy == crate::recipe::Strategy::Finetune && r.pretrain }
    }
}

impl std::fmt::Display for RecipeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.strategy, self.pretrain) {
            (crate::recipe::Strategy::Finetune, true) => f.write_str("pretrain, then fine-tune"),
            (crate::recipe::Strategy::Finetune, false) => f.write_str("fine-tune"),
            (s, _) => write!(f, "{s}"),
        }
    }
}

impl From<RecipeKind> for String {
    fn from(k: RecipeKind) -> String {
        k.to_string()
    }
}

impl TryFrom<String> for RecipeKind {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        use crate::recipe::Strategy;
        match s.as_str() {
            "fine-tune" => Ok(RecipeKind { strategy: Strategy::Finetune, pretrain: false }),
            "pretrain, then fine-tune" => Ok(RecipeKind { strategy: Strategy::Finetune, pretrain: true }),
            _ => Strategy::parse(&s)
                .filter(|st| *st != Strategy::Finetune)
                .map(|strategy| RecipeKind { strategy, pretrain: false })
                .ok_or_else(|| format!("unknown recipe kind {s:?} (expected fine-tune, pretrain, then fine-tune, or a probe strategy)")),
        }
    }
}

/// Every [`LabelPair`] of a held-out family: its tasks grouped by (classes, shift, shots), each
/// group paired with the group at twice the shots, and every configuration logged on both.
fn label_pairs(model: &MetaModel, fam: &str, held: &[Cell]) -> Vec<LabelPair> {
    // balanced tasks only: an imbalanced task's shots (the median class) would pair it with
    // balanced tasks of other sizes
    let held: Vec<&Cell> = held.iter().filter(|c| !is_imbalanced(c.imbalance)).collect();
    let mut by_task: BTreeMap<&str, Vec<&Cell>> = BTreeMap::new();
    for &c in &held {
        by_task.entry(c.task_id.as_str()).or_default().push(c);
    }
    // the accuracy stated now and forecast at twice the shots, per (task, configuration)
    let mut stated: BTreeMap<(&str, String), (f64, f64)> = BTreeMap::new();
    for (tid, cs) in &by_task {
        let task = super::features_by_backbone(cs.iter().map(|c| (c.backbone.as_str(), c.task.as_slice())));
        let keys: Vec<_> = cs.iter().map(|c| (c.backbone.clone(), c.recipe.clone(), c.config())).collect();
        let now = model.predict(&task, &keys);
        let twice = model.predict_with_more_shots(&task, &keys, 2.0);
        for ((c, (m, v)), (m2, v2)) in cs.iter().zip(now).zip(twice) {
            let a = super::stated(model.scale(), m, v, 1.0).0;
            let b = super::stated(model.scale(), m2, v2, 1.0).0;
            stated.insert((tid, c.config()), (a, b));
        }
    }
    // tasks of one kind and size: (classes, shift, shots in thousandths)
    let key = |c: &Cell| (c.n_classes, c.shift.clone(), (c.shots * 1000.0).round() as i64);
    let mut groups: BTreeMap<(usize, String, i64), Vec<&Cell>> = BTreeMap::new();
    for &c in &held {
        groups.entry(key(c)).or_default().push(c);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let mut out = Vec::new();
    for ((k, shift, s), few) in &groups {
        let Some(more) = groups.get(&(*k, shift.clone(), 2 * s)) else { continue };
        let configs: BTreeSet<String> = few.iter().map(|c| c.config()).collect();
        for config in configs {
            let a: Vec<&&Cell> = few.iter().filter(|c| c.config() == config).collect();
            let b: Vec<&&Cell> = more.iter().filter(|c| c.config() == config).collect();
            if b.is_empty() {
                continue;
            }
            let st = |c: &Cell| stated[&(c.task_id.as_str(), config.clone())];
            let acc_a = mean(&a.iter().map(|c| c.acc).collect::<Vec<_>>());
            let acc_b = mean(&b.iter().map(|c| c.acc).collect::<Vec<_>>());
            let now_a = mean(&a.iter().map(|c| st(c).0).collect::<Vec<_>>());
            let now_b = mean(&b.iter().map(|c| st(c).0).collect::<Vec<_>>());
            let forecast = mean(&a.iter().map(|c| st(c).1 - st(c).0).collect::<Vec<_>>());
            out.push(LabelPair {
                family: fam.to_string(),
                config: config.clone(),
                kind: RecipeKind::of(&a[0].recipe),
                n_classes: *k,
                shift: shift.clone(),
                shots: *s as f64 / 1000.0,
                tasks: [a.len(), b.len()],
                measured_now: acc_a,
                measured_gain: acc_b - acc_a,
                forecast_gain: forecast,
                given_gain: now_b - now_a,
            });
        }
    }
    out
}

/// One leave-one-family-out fold: the meta-learner refitted without `fam`, then every method's
/// choices on each of `fam`'s tasks, and the calibration of its predicted accuracies.
fn eval_fold(obs: &[Obs], fam: &String, strata: &DistanceStrata, budgets: usize, fo: &FitOptions) -> FoldOut {
    let mut tasks_out = Vec::new();
    let mut calib = Calibration::default();
    let train: Vec<Obs> = obs.iter().filter(|o| &o.family != fam).cloned().collect();
    let held: Vec<&Obs> = obs.iter().filter(|o| &o.family == fam).collect();
    let fold = Fold::fit(&train, budgets, fo)?;
    let held_cells = cells(&held.iter().map(|o| (*o).clone()).collect::<Vec<_>>());
    let pairs = label_pairs(&fold.model, fam, &held_cells);
    let task_ids: BTreeSet<String> = held_cells.iter().map(|c| c.task_id.clone()).collect();
    for tid in task_ids {
        let tc: Vec<&Cell> = held_cells.iter().filter(|c| c.task_id == tid && fold.avg.contains_key(&c.config())).collect();
        if tc.len() < 2 {
            continue;
        }
        let accs: Vec<f64> = tc.iter().map(|c| c.acc).collect();
        let ranked = fold.orders(&tc, &accs, budgets, fo.seed);
        let (mut regret, mut gap, mut rank) = outcomes(&ranked.orders, &accs, budgets);
        answer_outcomes(&ranked.answers, &accs, (&mut regret, &mut gap, &mut rank));
        // calibration and error of the predicted accuracy on the individual held-out runs
        let (mut sq, mut err_sum, mut runs, mut within3) = (0.0, 0.0, 0usize, 0usize);
        let shift = fold.model.task_shift(&super::features_by_backbone(tc.iter().map(|c| (c.backbone.as_str(), c.task.as_slice()))));
        for (i, c) in tc.iter().enumerate() {
            let sd = (ranked.cov[(i, i)].max(0.0) + ranked.noise).sqrt();
            let warp = fold.model.warp;
            // as `recommend` states it: the GP's mean shifted by the task's level, the interval
            // on the scale of its strategy and backbone model
            let raw = warp.state(ranked.mean[i], sd, Z80);
            let group = super::scale_group(&c.backbone, &c.recipe);
            let (m, v) = fold.model.stated_latent((ranked.mean[i], sd * sd), shift.as_ref(), &group);
            let (stated, interval) = warp.state(m, v.sqrt(), Z80);
            let is_standard = fold.standard_native.is_some_and(|n| is_standard_recipe(&c.backbone, &c.recipe, n));
            for o in held.iter().filter(|o| o.task_id == tid && o.config() == c.config()) {
                calib.add((stated, interval), raw, o.acc, is_standard, &group);
                let e = stated - o.acc;
                sq += e * e;
                err_sum += e;
                runs += 1;
                within3 += (e.abs() <= 0.03) as usize;
            }
        }
        let (seed_half_sq, seed_pairs) = seed_noise(held.iter().copied().filter(|o| o.task_id == tid));
        let c0 = tc[0];
        tasks_out.push(TaskResult {
            task_id: tid.clone(),
            family: fam.clone(),
            shots: c0.shots,
            shift: c0.shift.clone(),
            distance: strata.label(&tid).into(),
            n_configs: tc.len(),
            best_acc: accs.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
            regret,
            gap,
            rank,
            pred_sq_err: sq,
            pred_runs: runs,
            pred_within3: within3,
            pred_err_sum: err_sum,
            imbalance: c0.imbalance,
            seed_half_sq,
            seed_pairs,
            n_unlabelled: n_unlabelled(&c0.task),
            best_pretrains: tc.iter().any(|c| c.recipe.pretrain).then(|| {
                let best = (0..tc.len()).max_by(|&a, &b| accs[a].total_cmp(&accs[b]).then(b.cmp(&a))).expect("two cells");
                tc[best].recipe.pretrain
            }),
            advisor_pretrains: tc
                .iter()
                .any(|c| c.recipe.pretrain)
                .then(|| ranked.orders.get(shipped_method()).and_then(|o| o.first()).map(|&i| tc[i].recipe.pretrain))
                .flatten(),
            override_check: ranked.override_check,
            standard_check: ranked.standard_check,
            best_by_pretrain: {
                let mut m: BTreeMap<String, f64> = BTreeMap::new();
                for (c, &a) in tc.iter().zip(&accs) {
                    let k = c
                        .recipe
                        .pretrain_method
                        .filter(|_| c.recipe.pretrain)
                        .map(|m| m.as_str().to_string())
                        .unwrap_or_else(|| "none".into());
                    let e = m.entry(k).or_insert(a);
                    *e = e.max(a);
                }
                m
            },
        });
    }
    Ok((tasks_out, calib, pairs))
}

/// Over a task's runs, per configuration logged with two or more seeds: the sum of (a₁ − a₂)² / 2
/// of the two lowest seeds' accuracies, and the number of such configurations. If each run is its
/// configuration's expected accuracy plus independent noise of variance σ², each term estimates σ².
fn seed_noise<'a>(runs: impl Iterator<Item = &'a Obs>) -> (f64, usize) {
    let mut by_config: BTreeMap<String, BTreeMap<i64, f64>> = BTreeMap::new();
    for o in runs {
        by_config.entry(o.config()).or_default().entry(o.seed).or_insert(o.acc);
    }
    by_config.values().filter(|s| s.len() >= 2).fold((0.0, 0), |(sq, n), s| {
        let mut it = s.values();
        let (a, b) = (it.next().expect("two seeds"), it.next().expect("two seeds"));
        (sq + (a - b).powi(2) / 2.0, n + 1)
    })
}

/// The unlabelled pool of a task, from its meta-features (`log1p_unlabelled`).
fn n_unlabelled(task: &[Option<f64>]) -> usize {
    let i = super::features::task_index("log1p_unlabelled");
    task.get(i).copied().flatten().map(|v| v.exp_m1().round().max(0.0) as usize).unwrap_or(0)
}

/// The report over every fold's tasks: mean regret, gap and rank per method and budget.
fn report(families: Vec<String>, budgets: usize, tasks_out: Vec<TaskResult>, calib: Calibration) -> Result<EvalReport> {
    let mean_of = |f: &dyn Fn(&TaskResult) -> Option<&Vec<f64>>| -> Vec<f64> {
        (0..budgets)
            .map(|b| {
                let v: Vec<f64> = tasks_out.iter().filter_map(|t| f(t).map(|r| r[b])).collect();
                if v.is_empty() {
                    f64::NAN
                } else {
                    v.iter().sum::<f64>() / v.len() as f64
                }
            })
            .collect()
    };
    let mut mean_regret = BTreeMap::new();
    let mut mean_gap = BTreeMap::new();
    let mut mean_rank = BTreeMap::new();
    for m in METHODS {
        mean_regret.insert(m.to_string(), mean_of(&|t| t.regret.get(*m)));
        mean_gap.insert(m.to_string(), mean_of(&|t| t.gap.get(*m)));
        mean_rank.insert(m.to_string(), mean_of(&|t| t.rank.get(*m)));
    }
    Ok(EvalReport {
        families,
        n_tasks: tasks_out.len(),
        budgets,
        tasks: tasks_out,
        mean_regret,
        mean_gap,
        mean_rank,
        coverage80: calib.level[0].stats(0).2,
        n_calibration_runs: calib.level[0].runs,
        calibration: calib.pairs,
        task_level_all: calib.level[0].clone(),
        task_level_standard: calib.level[1].clone(),
        coverage80_by_group: calib.by_group,
        label_pairs: Vec::new(),
    })
}

/// Domain-distance strata: a task's mean log1p Fréchet distance over backbones, cut at the
/// terciles over all tasks into near, mid and far.
struct DistanceStrata {
    distance: BTreeMap<String, f64>,
    cuts: (f64, f64),
}

impl DistanceStrata {
    fn of(obs: &[Obs]) -> Self {
        let all_cells = cells(obs);
        let mut per_task: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for c in &all_cells {
            let v = per_task.entry(c.task_id.clone()).or_default();
            v.extend(c.task[12]);
        }
        let distance: BTreeMap<String, f64> =
            per_task.into_iter().map(|(t, v)| (t, if v.is_empty() { 0.0 } else { v.iter().sum::<f64>() / v.len() as f64 })).collect();
        let mut dvals: Vec<f64> = distance.values().copied().collect();
        dvals.sort_by(|a, b| a.total_cmp(b));
        let cuts = (dvals[dvals.len() / 3], dvals[2 * dvals.len() / 3]);
        DistanceStrata { distance, cuts }
    }

    fn label(&self, task_id: &str) -> &'static str {
        let d = self.distance.get(task_id).copied().unwrap_or(0.0);
        if d <= self.cuts.0 {
            "near"
        } else if d <= self.cuts.1 {
            "mid"
        } else {
            "far"
        }
    }
}

/// The 80% intervals against the held-out runs' accuracies.
#[derive(Default)]
struct Calibration {
    /// (stated, logged) per held-out run.
    pairs: Vec<(f64, f64)>,
    /// The stated accuracy with and without the task-level shift, on all held-out runs and on
    /// the standard recipe's (the coverage of the first, with the shift, is `coverage80`).
    level: [LevelCheck; 2],
    /// Per scale group ([`super::scale_group`]): held-out runs, and how many fell inside the
    /// stated 80% interval.
    by_group: BTreeMap<String, [usize; 2]>,
}

impl Calibration {
    /// A held-out run's accuracy `acc` against the accuracy and 80% interval stated for it
    /// (`stated`) and those without the task-level shift (`raw`); `standard`: a run of the
    /// standard recipe; `group`: its [`super::scale_group`].
    fn add(&mut self, stated: (f64, (f64, f64)), raw: (f64, (f64, f64)), acc: f64, standard: bool, group: &str) {
        self.pairs.push((stated.0, acc));
        let e = self.by_group.entry(group.to_string()).or_default();
        e[0] += 1;
        e[1] += super::warp::holds(stated.1, acc) as usize;
        for g in if standard { &mut self.level[..] } else { &mut self.level[..1] } {
            g.runs += 1;
            g.add(0, stated, acc);
            g.add(1, raw, acc);
        }
    }

    fn merge(&mut self, c: Calibration) {
        self.pairs.extend(c.pairs);
        for (a, b) in self.level.iter_mut().zip(c.level) {
            a.merge(&b);
        }
        for (g, [n, i]) in c.by_group {
            let e = self.by_group.entry(g).or_default();
            e[0] += n;
            e[1] += i;
        }
    }
}

/// The accuracy stated for held-out runs, with the task-level shift (`cv.task_level`, what is
/// shipped) and without it: runs, sums of error and squared error (stated − logged), and how
/// many fell inside the stated 80% interval, each as [with, without].
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct LevelCheck {
    pub runs: usize,
    pub sum_err: [f64; 2],
    pub sum_sq: [f64; 2],
    pub inside: [usize; 2],
}

impl LevelCheck {
    fn add(&mut self, i: usize, (mean, interval): (f64, (f64, f64)), acc: f64) {
        self.sum_err[i] += mean - acc;
        self.sum_sq[i] += (mean - acc).powi(2);
        self.inside[i] += super::warp::holds(interval, acc) as usize;
    }

    fn merge(&mut self, o: &LevelCheck) {
        self.runs += o.runs;
        for i in 0..2 {
            self.sum_err[i] += o.sum_err[i];
            self.sum_sq[i] += o.sum_sq[i];
            self.inside[i] += o.inside[i];
        }
    }

    /// (bias, RMSE, 80% coverage) with the shift (`i` 0) or without (1).
    pub fn stats(&self, i: usize) -> (f64, f64, f64) {
        let n = self.runs.max(1) as f64;
        (self.sum_err[i] / n, (self.sum_sq[i] / n).sqrt(), self.inside[i] as f64 / n)
    }
}

/// What one leave-one-family-out fold learns from the training families: the meta-learner (its
/// own family-grouped CV calibrates the interval, as `meta fit` does), the per-configuration
/// GPs, and the baselines' fixed choices.
struct Fold {
    model: MetaModel,
    per_config: super::PerConfig,
    /// Mean accuracy per configuration over the training families.
    avg: BTreeMap<String, f64>,
    /// Fixed recipes on the backbone where each did best on average.
    fixed: BTreeMap<&'static str, Option<String>>,
    portfolio: Vec<String>,
    /// Configurations by mean accuracy, best first.
    by_avg: Vec<String>,
    /// The zoo's largest ImageNet backbone and its card's input size.
    largest_imagenet: Option<(String, usize)>,
    /// The card input size of [`STANDARD_BACKBONE`] (None when the zoo lacks it).
    standard_native: Option<usize>,
}

/// A held-out task's candidates ranked by every method, and the meta-learner's (recalibrated)
/// joint posterior over them.
struct Ranked {
    orders: BTreeMap<String, Vec<usize>>,
    /// Methods that give one answer per budget (the simulated `auto`): per replicate, the answer
    /// at budgets 1..=K.
    answers: BTreeMap<String, Vec<Vec<usize>>>,
    mean: Vec<f64>,
    cov: nalgebra::DMatrix<f64>,
    noise: f64,
    override_check: Option<OverrideCheck>,
    standard_check: Option<OverrideCheck>,
}

impl Fold {
    fn fit(train: &[Obs], budgets: usize, fo: &FitOptions) -> Result<Self> {
        let model: MetaModel = fit(train, fo, &|_| {})?;
        let train_cells = cells(train);
        let per_config = super::PerConfig::fit(&train_cells, &model.encoder, fo.gp_iters)?;
        let mut sums: BTreeMap<String, (f64, usize)> = BTreeMap::new();
        for c in &train_cells {
            let e = sums.entry(c.config()).or_insert((0.0, 0));
            e.0 += c.acc;
            e.1 += 1;
        }
        let avg: BTreeMap<String, f64> = sums.into_iter().map(|(k, (s, n))| (k, s / n as f64)).collect();
        let best_backbone_for = |r_name: &str| -> Option<String> {
            avg.iter().filter(|(k, _)| k.ends_with(&format!("::{r_name}"))).max_by(|a, b| a.1.total_cmp(b.1)).map(|(k, _)| k.clone())
        };
        let fixed = [
            ("finetune-all", best_backbone_for("finetune-all")),
            ("linear-probe", best_backbone_for("linear-probe")),
            ("fastai-style (discriminative LRs)", best_backbone_for("ft-r0-f0-lr0.003-ld0.5-sp0-e10-b32")),
        ]
        .into_iter()
        .collect();
        let portfolio = anchored_portfolio(&train_cells.iter().collect::<Vec<_>>(), budgets + 2);
        let mut by_avg: Vec<(&String, &f64)> = avg.iter().collect();
        by_avg.sort_by(|a, b| b.1.total_cmp(a.1));
        let by_avg = by_avg.into_iter().map(|(k, _)| k.clone()).collect();
        let largest_imagenet =
            largest_imagenet_backbone().and_then(|n| crate::backbones::card::resolve(&n).ok().map(|m| (n, m.card.input.height)));
        let standard_native = crate::backbones::card::resolve(STANDARD_BACKBONE).ok().map(|m| m.card.input.height);
        Ok(Fold { model, per_config, avg, fixed, portfolio, by_avg, largest_imagenet, standard_native })
    }

    /// Every method's order over a held-out task's configurations `tc` (accuracies `accs`, which
    /// only the sequential methods observe, one run at a time).
    fn orders(&self, tc: &[&Cell], accs: &[f64], budgets: usize, seed: u64) -> Ranked {
        let model = &self.model;
        let mut task_feats = BTreeMap::new();
        for c in tc {
            task_feats.insert(c.backbone.clone(), c.task.clone());
        }
        let keys: Vec<(String, super::features::RecipeSummary, String)> =
            tc.iter().map(|c| (c.backbone.clone(), c.recipe.clone(), c.config())).collect();
        let xs: Vec<Vec<f64>> = keys.iter().map(|(b, r, _)| model.encoder.encode(&task_feats[b], r, b)).collect();
        let (mean, cov, sn2) = model.gp.predict_joint(&xs);
        let k2 = model.cv.gp_sd_scale.powi(2);
        let (cov, sn2) = (cov * k2, sn2 * k2);
        let mut orders: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        orders.insert(METHODS[8].into(), qei_order(&mean, &cov, budgets, seed));
        let rel = model.gp_rel.as_ref().map(|g| {
            let (rm, rc, rn) = g.predict_joint(&xs);
            (rm, rc * k2, rn * k2)
        });
        if let Some((rm, rc, _)) = &rel {
            orders.insert(METHODS[9].into(), qei_order(rm, rc, budgets, seed));
        }
        // the advisor as shipped: q-EI on the joint posterior of the GP its nested CV chose to rank with
        let (am, ac, an, aoff) = match (model.ranker, &rel) {
            (super::Ranker::GpRel, Some((rm, rc, rn))) => (rm, rc, *rn, model.task_mean_var),
            _ => (&mean, &cov, sn2, 0.0),
        };
        orders.insert(METHODS[11].into(), qei_order(am, ac, budgets, seed));
        // per-configuration GPs: ranked by predicted mean
        let pc: Vec<Option<f64>> =
            keys.iter().map(|(b, _, k)| self.per_config.predict(k, &model.encoder.task(&task_feats[b])).map(|x| x.0)).collect();
        if pc.iter().all(|p| p.is_some()) {
            let mut o: Vec<usize> = (0..tc.len()).collect();
            o.sort_by(|&a, &b| pc[b].unwrap_or(0.0).total_cmp(&pc[a].unwrap_or(0.0)));
            orders.insert(METHODS[10].into(), o);
        }
        // kNN advisor
        let knn_m: Vec<f64> =
            keys.iter().map(|(b, _, k)| model.knn.predict(k, &model.encoder.task(&task_feats[b])).map(|x| x.0).unwrap_or(0.0)).collect();
        let mut o: Vec<usize> = (0..tc.len()).collect();
        o.sort_by(|&a, &b| knn_m[b].total_cmp(&knn_m[a]));
        orders.insert(METHODS[1].into(), o);
        for (name, cfg) in &self.fixed {
            if let Some(cfg) = cfg {
                if let Some(i) = tc.iter().position(|c| &c.config() == cfg) {
                    orders.insert(name.to_string(), vec![i]);
                }
            }
        }
        let o: Vec<usize> = self.by_avg.iter().filter_map(|k| tc.iter().position(|c| &c.config() == k)).collect();
        orders.insert(METHODS[4].into(), o);
        // LogME: probes ranked by the task's LogME at the probed depth (mid = 6, last = 7)
        let lo = probe_order(tc, super::AnchorScore::LogMe);
        let cvo = probe_order(tc, super::AnchorScore::ProbeCv);
        let observe = |i: usize| model.warp.fwd(accs[i]);
        // the override's P(a beats b) reads the covariance calibrated on within-task differences
        let oc = &(ac * (model.override_sd_scale() / model.cv.gp_sd_scale).powi(2));
        // the advisor keeps its anchor unless confident, then runs sequential EI (without an
        // anchor: q-EI); returns the first pick when anchored
        let anchored = |anchor: Option<&usize>| match anchor {
            Some(&a) => {
                let (pick, _) = super::anchored_pick(am, oc, a, super::ANCHOR_SWITCH_PROBABILITY);
                (Some(pick), sequential_ei_order(pick, am, ac, an, aoff, &observe, budgets))
            }
            None => (None, qei_order(am, ac, budgets, seed)),
        };
        // anchored on the LogME pick
        let (pick, order) = anchored(lo.first());
        orders.insert(METHODS[0].into(), order);
        if let Some(pick) = pick {
            orders.insert(METHODS[12].into(), first_then_qei(pick, am, ac, budgets, seed));
            let mut po = vec![pick];
            po.extend(self.portfolio.iter().filter_map(|k| tc.iter().position(|c| &c.config() == k)).filter(|&i| i != pick));
            orders.insert(METHODS[13].into(), po);
        }
        // anchored on the probe whose features classify the task best under CV; any candidate
        // may override it
        orders.insert(METHODS[16].into(), anchored(cvo.first()).1);
        // the advisor as shipped: the same anchor, its features read by the classifier the GP
        // ranks highest on them ([`super::anchor_classifier`]), which only a fine-tune, a
        // centroid probe or a pretrain-first recipe may override ([`super::may_override_anchor`])
        let keyed: Vec<(&str, &super::features::RecipeSummary)> = tc.iter().map(|c| (c.backbone.as_str(), &c.recipe)).collect();
        let eligible = |i: usize| super::may_override_anchor(&tc[i].recipe);
        let shipped_anchor = cvo.first().map(|&a| super::anchor_classifier(&keyed, am, a));
        let anchored_first = shipped_anchor.map(|a| super::anchored_pick_among(am, oc, a, super::ANCHOR_SWITCH_PROBABILITY, &eligible).0);
        // the standard recipe, where logged, is the default the anchored pick must beat
        let std_cell = self.standard_native.and_then(|n| standard_recipe(tc, n));
        // the shipped rule's last step on means `m`: the anchored pick `first` replaces the
        // recipe only at the threshold the refit chose
        let standard_default_on =
            |m: &[f64], first: usize| std_cell.map_or(first, |s| super::standard_default_pick(m, oc, first, s, model.standard_threshold()));
        // where it is, its rows before sessions 25 (the anchored pick alone) and 27 (the recipe
        // left at P >= 0.9), and the shipped decision's P against the outcome
        let (shipped_first, standard_check) = match (anchored_first, std_cell) {
            (Some(first), Some(s)) => {
                let at_0_9 = super::standard_default_pick(am, oc, first, s, super::ANCHOR_SWITCH_PROBABILITY);
                for (row, pick) in [(ANCHORED_ALONE, first), (STANDARD_AT_0_9, at_0_9)] {
                    orders.insert(METHODS[row].into(), sequential_ei_order(pick, am, ac, an, aoff, &observe, budgets));
                }
                let check = (first != s).then(|| OverrideCheck {
                    p: super::prob_greater(am, oc, first, s),
                    p_marginal: super::prob_greater(am, ac, first, s),
                    gain: accs[first] - accs[s],
                });
                (Some(standard_default_on(am, first)), check)
            }
            (first, _) => (first, None),
        };
        // the override's question, under both calibrations, against the logged outcome
        let override_check = shipped_anchor.and_then(|a| {
            let j = super::best_challenger(am, a, &eligible)?;
            (am[j] > am[a]).then(|| OverrideCheck {
                p: super::prob_greater(am, oc, j, a),
                p_marginal: super::prob_greater(am, ac, j, a),
                gain: accs[j] - accs[a],
            })
        });
        // ablations of the override rule (see OUTCOME_OVERRIDE), on the shipped anchor
        if let Some(a) = shipped_anchor {
            let outcome_cov = oc + nalgebra::DMatrix::<f64>::identity(ac.nrows(), ac.ncols()) * an;
            let same_feats = |i: usize| {
                let r = &tc[i].recipe;
                super::may_override_anchor(r) && (r.strategy != crate::recipe::Strategy::CentroidProbe || tc[i].backbone == tc[a].backbone)
            };
            for (row, cov, elig) in [
                (OUTCOME_OVERRIDE, &outcome_cov, &eligible as &dyn Fn(usize) -> bool),
                (SAME_FEATURES_CENTROID, oc, &same_feats),
                (BOTH_OVERRIDE_RULES, &outcome_cov, &same_feats),
            ] {
                let pick = super::anchored_pick_among(am, cov, a, super::ANCHOR_SWITCH_PROBABILITY, elig).0;
                orders.insert(METHODS[row].into(), sequential_ei_order(pick, am, ac, an, aoff, &observe, budgets));
            }
            let pick = super::anchored_pick_among(am, ac, a, super::ANCHOR_SWITCH_PROBABILITY, &eligible).0;
            orders.insert(METHODS[MARGINAL_OVERRIDE].into(), sequential_ei_order(pick, am, ac, an, aoff, &observe, budgets));
            let dc = ac * (model.decision_sd_scale() / model.cv.gp_sd_scale).powi(2);
            let pick = super::anchored_pick_among(am, &dc, a, super::ANCHOR_SWITCH_PROBABILITY, &eligible).0;
            orders.insert(METHODS[DECISION_OVERRIDE].into(), sequential_ei_order(pick, am, ac, an, aoff, &observe, budgets));
        }
        // the rule before: the anchor read by its own (SVM) probe
        if let Some(&a) = cvo.first() {
            let pick = super::anchored_pick_among(am, oc, a, super::ANCHOR_SWITCH_PROBABILITY, &eligible).0;
            orders.insert(METHODS[SVM_ANCHOR].into(), sequential_ei_order(pick, am, ac, an, aoff, &observe, budgets));
        }
        // the same rule on the means shifted by each configuration's cross-validated offset
        if !model.cv.config_offsets.is_empty() {
            let shifted: Vec<f64> =
                am.iter().zip(&keys).map(|(m, (_, _, k))| m + model.cv.config_offsets.get(k).copied().unwrap_or(0.0)).collect();
            let first = cvo.first().map(|&a| {
                let a = super::anchor_classifier(&keyed, &shifted, a);
                standard_default_on(&shifted, super::anchored_pick_among(&shifted, oc, a, super::ANCHOR_SWITCH_PROBABILITY, &eligible).0)
            });
            orders.insert(
                METHODS[CONFIG_OFFSET].into(),
                match first {
                    Some(pick) => sequential_ei_order(pick, &shifted, ac, an, aoff, &observe, budgets),
                    None => qei_order(&shifted, ac, budgets, seed),
                },
            );
        }
        orders.insert(
            METHODS[21].into(),
            match shipped_first {
                Some(pick) => sequential_ei_order(pick, am, ac, an, aoff, &observe, budgets),
                None => qei_order(am, ac, budgets, seed),
            },
        );
        let mut answers = BTreeMap::new();
        if let Some(first) = shipped_first.or_else(|| orders[METHODS[21]].first().copied()) {
            let n_val = auto_val_size(tc[0].shots, tc[0].n_classes);
            for (row, rule) in AUTO_SIMULATED {
                let sim = simulate_auto(first, am, ac, an, aoff, accs, n_val, budgets, seed, &tc[0].task_id, rule, model.warp);
                answers.insert(METHODS[row].to_string(), sim);
            }
        }
        // never / always pretrain, on tasks with an unlabelled pool where both kinds were logged
        if n_unlabelled(&tc[0].task) >= 2 {
            let best_where = |want: bool| {
                (0..tc.len()).filter(|&i| tc[i].recipe.pretrain == want).max_by(|&a, &b| am[a].total_cmp(&am[b]).then(b.cmp(&a)))
            };
            if let (Some(never), Some(always)) = (best_where(false), best_where(true)) {
                orders.insert(METHODS[PRETRAIN_NEVER].into(), vec![never]);
                orders.insert(METHODS[PRETRAIN_ALWAYS].into(), vec![always]);
            }
        }
        orders.insert(METHODS[6].into(), lo);
        orders.insert(METHODS[17].into(), cvo);
        if let Some((name, native)) = &self.largest_imagenet {
            let (probe, ft) = imagenet_baselines(tc, name, *native);
            if let Some(i) = probe {
                orders.insert(METHODS[14].into(), vec![i]);
            }
            if let Some(i) = ft {
                orders.insert(METHODS[15].into(), vec![i]);
            }
        }
        if let Some(i) = std_cell {
            orders.insert(METHODS[STANDARD_RECIPE].into(), vec![i]);
        }
        Ranked { orders, answers, mean, cov, noise: sn2, override_check, standard_check }
    }
}

/// The linear-probe cells of a task, best anchor score first ([`super::anchor_ranking`]: the
/// first is the anchor `recommend` would take).
fn probe_order(tc: &[&Cell], score: super::AnchorScore) -> Vec<usize> {
    let items: Vec<(&super::features::RecipeSummary, &[Option<f64>])> = tc.iter().map(|c| (&c.recipe, c.task.as_slice())).collect();
    super::anchor_ranking(&items, score)
}

type PerMethod = BTreeMap<String, Vec<f64>>;

/// Regret, gap and rank at budgets 1..=`budgets` of every order, and of random search (its exact
/// expectation).
fn outcomes(orders: &BTreeMap<String, Vec<usize>>, accs: &[f64], budgets: usize) -> (PerMethod, PerMethod, PerMethod) {
    let mut regret = BTreeMap::new();
    let mut gap = BTreeMap::new();
    let mut rank = BTreeMap::new();
    for (name, ord) in orders {
        if ord.is_empty() {
            continue;
        }
        let (mut r, mut g, mut k) = (Vec::new(), Vec::new(), Vec::new());
        for b in 1..=budgets {
            let (a, bgap, c) = outcome(ord, accs, b);
            r.push(a);
            g.push(bgap);
            k.push(c);
        }
        regret.insert(name.clone(), r);
        gap.insert(name.clone(), g);
        rank.insert(name.clone(), k);
    }
    let rs: Vec<(f64, f64, f64)> = (1..=budgets).map(|b| scored(random_best_of_k(accs, b), accs)).collect();
    regret.insert(METHODS[5].into(), rs.iter().map(|v| v.0).collect());
    gap.insert(METHODS[5].into(), rs.iter().map(|v| v.1).collect());
    rank.insert(METHODS[5].into(), rs.iter().map(|v| v.2).collect());
    (regret, gap, rank)
}

/// Regret, gap and rank at each budget of methods that give one answer per budget, averaged over
/// their replicates, added to `out`.
fn answer_outcomes(answers: &BTreeMap<String, Vec<Vec<usize>>>, accs: &[f64], out: (&mut PerMethod, &mut PerMethod, &mut PerMethod)) {
    for (name, reps) in answers {
        let Some(budgets) = reps.first().map(|r| r.len()) else { continue };
        let n = reps.len() as f64;
        let (mut r, mut g, mut k) = (vec![0.0; budgets], vec![0.0; budgets], vec![0.0; budgets]);
        for rep in reps {
            for (b, &i) in rep.iter().enumerate() {
                let (regret, gap, rank) = scored(accs[i], accs);
                r[b] += regret / n;
                g[b] += gap / n;
                k[b] += rank / n;
            }
        }
        out.0.insert(name.clone(), r);
        out.1.insert(name.clone(), g);
        out.2.insert(name.clone(), k);
    }
}

/// The simulated `auto` ([`simulate_auto`]) at each budget, under each winner rule: the mean
/// test accuracy of its answer and its regret, next to the shipped advisor's best-of-K on logged
/// accuracies (which assumes the best of K runs is known without error).
pub fn auto_simulation_table(r: &EvalReport) -> String {
    let rows: Vec<(&str, WinnerRule)> = AUTO_SIMULATED.iter().map(|&(i, rule)| (METHODS[i], rule)).collect();
    let ts = tasks_picked_by(r, &rows.iter().map(|(m, _)| *m).collect::<Vec<_>>());
    if ts.is_empty() {
        return String::new();
    }
    let mut s = format!(
        "`graft auto --budget K` as it runs, simulated on the {} held-out tasks ({AUTO_SIM_REPLICATES} draws of the validation noise each). Budget 1 runs the first pick on every training image. With more, each run is judged on a 20% validation split (a binomial draw around its logged accuracy), the next run is chosen by expected improvement given those accuracies, and the winner is refit on every training image. Mean test accuracy of the answer (regret in brackets) for each winner rule; `auto` ships {:?}. \"Best of K (logged)\" is the shipped advisor's best logged accuracy among its first K picks, which assumes the winner is known without error.\n\n| budget |",
        ts.len(),
        AUTO_WINNER_RULE
    );
    for (_, rule) in &rows {
        s.push_str(&format!(" winner: {rule:?} |"));
    }
    s.push_str(" best of K (logged) |\n|---|");
    for _ in 0..=rows.len() {
        s.push_str("---|");
    }
    s.push('\n');
    let adv = shipped_method();
    let mean = |f: &dyn Fn(&TaskResult) -> Option<f64>| {
        let v: Vec<f64> = ts.iter().filter_map(|t| f(t)).collect();
        if v.is_empty() {
            f64::NAN
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    for b in 0..r.budgets {
        s.push_str(&format!("| {} |", b + 1));
        for (m, _) in rows.iter().copied().chain(std::iter::once((adv, AUTO_WINNER_RULE))) {
            s.push_str(&format!(
                " {:.3} ({:.3}) |",
                mean(&|t| t.gap.get(m).and_then(|g| g.get(b)).map(|g| t.best_acc - g)),
                mean(&|t| t.regret.get(m).and_then(|g| g.get(b)).copied())
            ));
        }
        s.push('\n');
    }
    s.push('\n');
    s
}

/// The shipped advisor's first pick against the two ImageNet baselines (what a user without an
/// advisor would run), per held-out family, on the tasks where both baselines were logged (so the
/// three are compared on the same tasks): mean test accuracy, mean normalised regret@1, and the
/// tasks the advisor wins, ties and loses against the better baseline of each task. Empty when no
/// task has both baselines.
pub fn baselines_head_to_head(r: &EvalReport) -> String {
    let (adv, lp, ft) = (shipped_method(), METHODS[14], METHODS[15]);
    let both = tasks_picked_by(r, &[adv, lp, ft]);
    if both.is_empty() {
        return String::new();
    }
    let acc = first_pick_acc;
    let reg = |t: &TaskResult, m: &str| t.regret[m][0];
    let mut s = format!(
        "The advisor as shipped ({adv}), first pick, against the ImageNet baselines on the {} held-out tasks where both baselines were logged. Accuracy is mean test accuracy; win/tie/loss against the better of the two baselines on each task (tie: within 0.5 points):\n\n| held-out family | tasks | advisor acc | {lp} acc | {ft} acc | advisor regret@1 | probe regret@1 | fine-tune regret@1 | win/tie/loss |\n|---|---|---|---|---|---|---|---|---|\n",
        both.len()
    );
    let fams: BTreeSet<&str> = both.iter().map(|t| t.family.as_str()).collect();
    let mut groups: Vec<(String, Vec<&TaskResult>)> =
        fams.iter().map(|f| (f.to_string(), both.iter().copied().filter(|t| t.family == *f).collect())).collect();
    groups.push(("all".into(), both.clone()));
    for (g, ts) in groups {
        let n = ts.len() as f64;
        let mean = |f: &dyn Fn(&TaskResult) -> f64| ts.iter().map(|t| f(t)).sum::<f64>() / n;
        let (w, d, l) = win_tie_loss(ts.iter().map(|t| acc(t, adv) - acc(t, lp).max(acc(t, ft))));
        s.push_str(&format!(
            "| {g} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {w}/{d}/{l} |\n",
            ts.len(),
            mean(&|t| acc(t, adv)),
            mean(&|t| acc(t, lp)),
            mean(&|t| acc(t, ft)),
            mean(&|t| reg(t, adv)),
            mean(&|t| reg(t, lp)),
            mean(&|t| reg(t, ft)),
        ));
    }
    s.push('\n');
    s
}

/// The held-out tasks on which every one of `methods` made a first pick.
fn tasks_picked_by<'a>(r: &'a EvalReport, methods: &[&str]) -> Vec<&'a TaskResult> {
    r.tasks.iter().filter(|t| methods.iter().all(|m| t.gap.get(*m).is_some_and(|g| !g.is_empty()))).collect()
}

/// The test accuracy of method `m`'s first pick on `t`: the task's best logged accuracy less
/// the pick's gap.
fn first_pick_acc(t: &TaskResult, m: &str) -> f64 {
    t.best_acc - t.gap[m][0]
}

/// The error of the stated accuracy over the held-out runs of some tasks.
struct PredictionError {
    rmse: f64,
    /// Mean of stated − measured.
    bias: f64,
    /// Share of runs stated to within ±3 points.
    within3: f64,
    runs: usize,
}

fn prediction_error(ts: &[&TaskResult]) -> PredictionError {
    let runs: usize = ts.iter().map(|t| t.pred_runs).sum();
    let n = runs.max(1) as f64;
    PredictionError {
        rmse: (ts.iter().map(|t| t.pred_sq_err).sum::<f64>() / n).sqrt(),
        bias: ts.iter().map(|t| t.pred_err_sum).sum::<f64>() / n,
        within3: ts.iter().map(|t| t.pred_within3).sum::<usize>() as f64 / n,
        runs,
    }
}

/// The seed-to-seed noise, the RMSE no prediction of a single run can beat, and the
/// configurations it is estimated from.
fn seed_noise_floor(ts: &[&TaskResult]) -> (f64, usize) {
    let n: usize = ts.iter().map(|t| t.seed_pairs).sum();
    ((ts.iter().map(|t| t.seed_half_sq).sum::<f64>() / n.max(1) as f64).sqrt(), n)
}

/// The predicted accuracy users read: its error over the held-out runs, by the groups `key`
/// puts the tasks in.
fn prediction_table(r: &EvalReport, title: &str, key: &dyn Fn(&TaskResult) -> String) -> String {
    let groups: BTreeSet<String> = r.tasks.iter().map(key).collect();
    let mut s = format!(
        "Predicted accuracy by {title}:\n\n| | RMSE (pts) | bias, stated − measured (pts) | within ±3 pts | runs | seed-noise floor (pts) |\n|---|---|---|---|---|---|\n"
    );
    for g in &groups {
        let ts: Vec<&TaskResult> = r.tasks.iter().filter(|t| &key(t) == g).collect();
        let e = prediction_error(&ts);
        let (fl, pairs) = seed_noise_floor(&ts);
        let fl = if pairs > 0 { format!("{:.1}", fl * 100.0) } else { "–".into() };
        s.push_str(&format!("| {g} | {:.1} | {:+.1} | {:.0}% | {} | {fl} |\n", e.rmse * 100.0, e.bias * 100.0, e.within3 * 100.0, e.runs));
    }
    s.push('\n');
    s
}

/// Whether a task of this imbalance (most over fewest images a class) counts as imbalanced:
/// from the ratio at which the advisor weights classes
/// ([`crate::recipe::ClassWeightPolicy::IMBALANCE_RATIO`]).
fn is_imbalanced(imbalance: f64) -> bool {
    imbalance >= crate::recipe::ClassWeightPolicy::IMBALANCE_RATIO
}

/// A task's class balance as `meta eval`'s strata name it.
fn balance_label(imbalance: f64) -> &'static str {
    if is_imbalanced(imbalance) {
        "imbalanced (1.5x or more)"
    } else {
        "balanced"
    }
}

/// The strata of shots per class the report breaks results down by, and a task's stratum.
const SHOT_BANDS: [&str; 4] = ["1-2", "3-10", "11-50", "51-200"];
fn shot_band(shots: f64) -> &'static str {
    SHOT_BANDS[match shots as usize {
        0..=2 => 0,
        3..=10 => 1,
        11..=50 => 2,
        _ => 3,
    }]
}

/// Wins, ties and losses of accuracy differences (tie: within 0.5 points).
fn win_tie_loss(diffs: impl Iterator<Item = f64>) -> (usize, usize, usize) {
    diffs.fold((0, 0, 0), |(w, d, l), x| {
        if x > 0.005 {
            (w + 1, d, l)
        } else if x < -0.005 {
            (w, d, l + 1)
        } else {
            (w, d + 1, l)
        }
    })
}

/// The shipped advisor's first pick against the standard ImageNet recipe ([`STANDARD_RECIPE`])
/// on the held-out tasks where that recipe was logged, by shots per class: mean test accuracy of
/// each, the mean paired difference with its 95% family-bootstrap interval, mean regret@1 and
/// the advisor's wins, ties and losses; then the same by held-out family. Empty when no task has
/// the recipe logged.
pub fn standard_recipe_head_to_head(r: &EvalReport) -> String {
    let (adv, std) = (shipped_method(), METHODS[STANDARD_RECIPE]);
    let both = tasks_picked_by(r, &[adv, std]);
    if both.is_empty() {
        return String::new();
    }
    let acc = first_pick_acc;
    let mut s = format!(
        "The advisor as shipped, first pick, against the {std} (what a practitioner would try first), on the {} held-out tasks where that recipe was logged, by shots per class. Δ is advisor minus recipe in test accuracy, with a 95% interval from a bootstrap over held-out families; win/tie/loss is the advisor's (tie: within 0.5 points):\n\n| shots per class | tasks | advisor acc | recipe acc | Δ acc [95%] | advisor regret@1 | recipe regret@1 | win/tie/loss |\n|---|---|---|---|---|---|---|---|\n",
        both.len()
    );
    let mut groups: Vec<(String, Vec<&TaskResult>)> = SHOT_BANDS
        .iter()
        .map(|b| (b.to_string(), both.iter().copied().filter(|t| shot_band(t.shots) == *b).collect::<Vec<_>>()))
        .filter(|g| !g.1.is_empty())
        .collect();
    groups.push(("all".into(), both.clone()));
    let row = |g: &str, ts: &[&TaskResult], with_ci: bool| -> String {
        let n = ts.len() as f64;
        let mean = |f: &dyn Fn(&TaskResult) -> f64| ts.iter().map(|t| f(t)).sum::<f64>() / n;
        let (w, d, l) = win_tie_loss(ts.iter().map(|t| acc(t, adv) - acc(t, std)));
        let delta = mean(&|t| acc(t, adv) - acc(t, std));
        let ci = if with_ci {
            family_bootstrap(ts.iter().map(|t| (t.family.as_str(), acc(t, adv) - acc(t, std))), 0, &format!("standard-recipe/{g}"))
                .map_or("n/a".to_string(), |(_, m, lo, hi)| format!("{m:+.3} [{lo:+.3}, {hi:+.3}]"))
        } else {
            format!("{delta:+.3}")
        };
        format!(
            "| {g} | {} | {:.3} | {:.3} | {ci} | {:.3} | {:.3} | {w}/{d}/{l} |\n",
            ts.len(),
            mean(&|t| acc(t, adv)),
            mean(&|t| acc(t, std)),
            mean(&|t| t.regret[adv][0]),
            mean(&|t| t.regret[std][0]),
        )
    };
    for (g, ts) in &groups {
        s.push_str(&row(g, ts, true));
    }
    // by held-out family: one family's tasks move together in the bootstrap, so no interval
    s.push_str("\nThe same tasks by held-out family (Δ without an interval: a family is one unit of the bootstrap):\n\n| held-out family | tasks | advisor acc | recipe acc | Δ acc | advisor regret@1 | recipe regret@1 | win/tie/loss |\n|---|---|---|---|---|---|---|---|\n");
    let fams: BTreeSet<&str> = both.iter().map(|t| t.family.as_str()).collect();
    for f in fams {
        let ts: Vec<&TaskResult> = both.iter().copied().filter(|t| t.family == f).collect();
        s.push_str(&row(f, &ts, false));
    }
    s.push('\n');
    s
}

/// On held-out tasks with an unlabelled pool where runs with and without pretraining were
/// logged: the first pick of "never pretrain", "always pretrain" (each the advisor's
/// best-predicted recipe of its kind) and the shipped advisor's, by pool size. Empty when no
/// task qualifies.
pub fn pretrain_policy_table(r: &EvalReport) -> String {
    let (never, always, adv) = (METHODS[PRETRAIN_NEVER], METHODS[PRETRAIN_ALWAYS], shipped_method());
    let ts = tasks_picked_by(r, &[never, always, adv]);
    if ts.is_empty() {
        return String::new();
    }
    let mut s = format!(
        "Pretraining on the unlabelled pool: never, always, or as the advisor decides, on the {} held-out tasks with an unlabelled pool where recipes were logged both with and without a pretraining step. Never / always: the advisor's best-predicted recipe of that kind. Accuracy is mean test accuracy of the first pick; \"advisor pretrains\" and \"pretraining best\" count the tasks where the advisor's pick, and the best logged recipe, pretrain. The last two columns are the oracles: the best logged recipe of each kind, known after the fact.\n\n| pool | tasks | never acc | always acc | advisor acc | never regret@1 | always regret@1 | advisor regret@1 | advisor pretrains | pretraining best | best without (logged) | best pretrain-first (logged) |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        ts.len()
    );
    let best_without = |t: &TaskResult| t.best_by_pretrain.get("none").copied();
    let best_with = |t: &TaskResult| t.best_by_pretrain.iter().filter(|(k, _)| *k != "none").map(|(_, v)| *v).reduce(f64::max);
    let mean_of = |v: &[&TaskResult], f: &dyn Fn(&TaskResult) -> Option<f64>| {
        let xs: Vec<f64> = v.iter().filter_map(|t| f(t)).collect();
        if xs.is_empty() {
            "–".to_string()
        } else {
            format!("{:.3}", xs.iter().sum::<f64>() / xs.len() as f64)
        }
    };
    let acc = first_pick_acc;
    let bucket = |n: usize| match n {
        0..=300 => "100",
        301..=3000 => "1000",
        _ => "5000",
    };
    let mut groups: Vec<(String, Vec<&TaskResult>)> = ["100", "1000", "5000"]
        .iter()
        .map(|b| (format!("~{b}"), ts.iter().copied().filter(|t| bucket(t.n_unlabelled) == *b).collect::<Vec<_>>()))
        .filter(|(_, v)| !v.is_empty())
        .collect();
    groups.push(("all".into(), ts.clone()));
    for (g, v) in groups {
        let n = v.len() as f64;
        let mean = |f: &dyn Fn(&TaskResult) -> f64| v.iter().map(|t| f(t)).sum::<f64>() / n;
        let pretrains = v.iter().filter(|t| t.advisor_pretrains == Some(true)).count();
        let pt_best = v.iter().filter(|t| t.best_pretrains == Some(true)).count();
        s.push_str(&format!(
            "| {g} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {pretrains} | {pt_best} | {} | {} |\n",
            v.len(),
            mean(&|t| acc(t, never)),
            mean(&|t| acc(t, always)),
            mean(&|t| acc(t, adv)),
            mean(&|t| t.regret[never][0]),
            mean(&|t| t.regret[always][0]),
            mean(&|t| t.regret[adv][0]),
            mean_of(&v, &best_without),
            mean_of(&v, &best_with),
        ));
    }
    s.push('\n');
    // what each method adds at best, on the tasks where it and the no-pretraining recipes ran
    let methods: BTreeSet<&String> = ts.iter().flat_map(|t| t.best_by_pretrain.keys()).filter(|k| *k != "none").collect();
    if !methods.is_empty() {
        s.push_str("What each pretraining method adds at best: on the same tasks, the best logged recipe with that method against the best logged recipe without pretraining (accuracy; gain in points; tasks where the method gains more than 1 point, or loses more than 1).\n\n| method | tasks | best without | best with the method | mean gain (pts) | gains > 1 pt | loses > 1 pt |\n|---|---|---|---|---|---|---|\n");
        for m in methods {
            let pairs: Vec<(f64, f64)> =
                ts.iter().filter_map(|t| Some((*t.best_by_pretrain.get("none")?, *t.best_by_pretrain.get(m)?))).collect();
            if pairs.is_empty() {
                continue;
            }
            let n = pairs.len() as f64;
            let (wo, wi) = (pairs.iter().map(|p| p.0).sum::<f64>() / n, pairs.iter().map(|p| p.1).sum::<f64>() / n);
            let gains = pairs.iter().filter(|p| p.1 - p.0 > 0.01).count();
            let losses = pairs.iter().filter(|p| p.0 - p.1 > 0.01).count();
            s.push_str(&format!("| {m} | {} | {wo:.3} | {wi:.3} | {:+.2} | {gains} | {losses} |\n", pairs.len(), (wi - wo) * 100.0));
        }
        s.push('\n');
    }
    s
}

/// Markdown tables: overall regret/gap/rank per budget, and regret at budget 1 by stratum.
pub fn markdown(r: &EvalReport) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "Leave-one-family-out over {} families ({}), {} held-out tasks. Normalised regret = (best − chosen) / (best − worst) over the configurations logged on each task; gap in accuracy points; rank 1 = best.\n\n",
        r.families.len(),
        r.families.join(", "),
        r.n_tasks
    ));
    s.push_str("| method |");
    for b in 1..=r.budgets {
        s.push_str(&format!(" regret@{b} |"));
    }
    s.push_str(" gap@1 (pts) | gap@3 (pts) | rank@1 |\n|---|");
    for _ in 0..r.budgets + 3 {
        s.push_str("---|");
    }
    s.push('\n');
    for m in METHODS {
        let rg = &r.mean_regret[*m];
        if rg.iter().all(|v| v.is_nan()) {
            continue;
        }
        s.push_str(&format!("| {m} |"));
        for v in rg {
            s.push_str(&format!(" {v:.3} |"));
        }
        let g = &r.mean_gap[*m];
        s.push_str(&format!(" {:.2} | {:.2} | {:.2} |\n", g[0] * 100.0, g[2.min(g.len() - 1)] * 100.0, r.mean_rank[*m][0]));
    }
    s.push_str(&format!(
        "\nCalibration: {:.1}% of {} held-out runs fell inside the advisor's stated 80% interval.\n\n",
        r.coverage80 * 100.0,
        r.n_calibration_runs
    ));
    s.push_str(&task_level_table(r));
    s.push_str(&label_pairs_table(&r.label_pairs));
    s.push_str(&paired_table(r));
    s.push_str(&baselines_head_to_head(r));
    s.push_str(&standard_recipe_head_to_head(r));
    s.push_str(&auto_simulation_table(r));
    s.push_str(&pretrain_policy_table(r));
    s.push_str(&override_table(r));
    s.push_str(&standard_check_table(r));
    type Stratum<'a> = (&'a str, Box<dyn Fn(&TaskResult) -> String>);
    let strata: Vec<Stratum> = vec![
        ("shots per class", Box::new(|t: &TaskResult| shot_band(t.shots).to_string())),
        ("domain distance (Fréchet tercile)", Box::new(|t: &TaskResult| t.distance.clone())),
        ("input shift", Box::new(|t: &TaskResult| if t.shift == "none" { "none".into() } else { "shifted".into() })),
        ("class balance (training images a class, most over fewest)", Box::new(|t: &TaskResult| balance_label(t.imbalance).into())),
        ("held-out family", Box::new(|t: &TaskResult| t.family.clone())),
    ];
    let all: Vec<&TaskResult> = r.tasks.iter().collect();
    let e = prediction_error(&all);
    let (fl, pairs) = seed_noise_floor(&all);
    s.push_str(&format!(
        "Predicted accuracy against the {} held-out runs: RMSE {:.1} points, {:.0}% within ±3 points. The noise floor: a run differs from its configuration's expected accuracy by {:.1} points (RMSE), estimated from the {pairs} configurations logged with two seeds on the same task and test images; no prediction of a single run can have a lower RMSE.\n\n",
        e.runs,
        e.rmse * 100.0,
        e.within3 * 100.0,
        fl * 100.0
    ));
    for (title, key) in &strata {
        s.push_str(&prediction_table(r, title, key));
    }
    for (title, key) in strata {
        let groups: BTreeSet<String> = r.tasks.iter().map(&key).collect();
        s.push_str(&format!("Regret at budget 1 by {title}:\n\n| method |"));
        for g in &groups {
            let n = r.tasks.iter().filter(|t| &key(t) == g).count();
            s.push_str(&format!(" {g} (n={n}) |"));
        }
        s.push_str("\n|---|");
        for _ in &groups {
            s.push_str("---|");
        }
        s.push('\n');
        for m in METHODS {
            s.push_str(&format!("| {m} |"));
            for g in &groups {
                let v: Vec<f64> = r.tasks.iter().filter(|t| &key(t) == g).filter_map(|t| t.regret.get(*m).map(|x| x[0])).collect();
                if v.is_empty() {
                    s.push_str(" – |");
                } else {
                    s.push_str(&format!(" {:.3} |", v.iter().sum::<f64>() / v.len() as f64));
                }
            }
            s.push('\n');
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    fn cell(task: &str, backbone: &str, name: &str, acc: f64, logme: Option<f64>) -> Cell {
        let mut t = vec![None; super::super::features::TASK_FEATURES.len()];
        t[super::super::logme_index(Some(1.0))] = logme;
        Cell {
            task_id: task.into(),
            family: "f".into(),
            backbone: backbone.into(),
            r_name: name.into(),
            acc,
            n_seeds: 1,
            task: t,
            recipe: super::super::features::RecipeSummary::for_tests(logme.map(|_| 1.0)),
            shots: 5.0,
            imbalance: 1.0,
            n_classes: 2,
            shift: "none".into(),
        }
    }

    /// The portfolio starts from each task's LogME anchor and adds what complements it: `ft-b`
    /// is best on average but never beats the anchor; `ft-c` is worse on average but wins where
    /// the anchor is weak, so it comes first.
    /// The ImageNet baselines pick by recipe alone: the probe on the penultimate group at the
    /// largest logged size of the largest backbone, and its plain fine-tune at lr 3e-4 closest
    /// to 224 px; other backbones, depths and learning rates are never taken.
    #[test]
    fn imagenet_baselines_pick_by_recipe_not_by_accuracy() {
        let big = "efficientnet-lite2-imagenet";
        let mut cs = [
            cell("t", &format!("{big}@96"), "linear-probe", 0.9, Some(0.1)),
            cell("t", &format!("{big}@160"), "linear-probe", 0.5, Some(0.1)),
            cell("t", "efficientnet-lite0-imagenet@224", "linear-probe", 0.95, Some(0.1)),
            cell("t", &format!("{big}@160"), "svm-mid", 0.99, Some(0.1)),
            cell("t", &format!("{big}@96"), "ft-lr3e-4", 0.7, None),
            cell("t", &format!("{big}@224"), "ft-lr3e-4", 0.6, None),
            cell("t", &format!("{big}@224"), "ft-lr1e-3", 0.99, None),
        ];
        cs[3].recipe.probe_depth = Some(0.5);
        for c in &mut cs[4..6] {
            c.recipe.lr = 3e-4;
        }
        let refs: Vec<&Cell> = cs.iter().collect();
        assert_eq!(imagenet_baselines(&refs, big, 260), (Some(1), Some(5)));
        // no such runs on the task: no pick
        assert_eq!(imagenet_baselines(&refs[2..4], big, 260), (None, None));
    }

    /// The head-to-head compares only tasks where both baselines were logged, and derives each
    /// method's accuracy from the task's best and the method's gap.
    /// A held-out task whose best logged accuracy is `best` (and the worst `best - range`), where
    /// each method with an accuracy picked a configuration of that accuracy (budget 1).
    fn task_result(id: &str, family: &str, best: f64, range: f64, picks: &[(&str, Option<f64>)]) -> TaskResult {
        let (mut gap, mut regret) = (BTreeMap::new(), BTreeMap::new());
        for (m, a) in picks {
            if let Some(a) = a {
                gap.insert(m.to_string(), vec![best - a]);
                regret.insert(m.to_string(), vec![(best - a) / range]);
            }
        }
        TaskResult {
            task_id: id.into(),
            family: family.into(),
            shots: 5.0,
            shift: "none".into(),
            distance: "near".into(),
            n_configs: 10,
            best_acc: best,
            regret,
            gap,
            rank: BTreeMap::new(),
            pred_sq_err: 0.0,
            pred_runs: 0,
            pred_within3: 0,
            pred_err_sum: 0.0,
            imbalance: 1.0,
            seed_half_sq: 0.0,
            seed_pairs: 0,
            n_unlabelled: 0,
            best_pretrains: None,
            advisor_pretrains: None,
            best_by_pretrain: BTreeMap::new(),
            override_check: None,
            standard_check: None,
        }
    }

    /// A report over `tasks` at budget 1 (the tables read only the tasks).
    fn report_of(tasks: Vec<TaskResult>) -> EvalReport {
        let families: BTreeSet<String> = tasks.iter().map(|t| t.family.clone()).collect();
        EvalReport {
            families: families.into_iter().collect(),
            n_tasks: tasks.len(),
            budgets: 1,
            tasks,
            mean_regret: BTreeMap::new(),
            mean_gap: BTreeMap::new(),
            mean_rank: BTreeMap::new(),
            coverage80: 0.8,
            n_calibration_runs: 0,
            calibration: vec![],
            task_level_all: LevelCheck::default(),
            task_level_standard: LevelCheck::default(),
            coverage80_by_group: BTreeMap::new(),
            label_pairs: Vec::new(),
        }
    }

    /// The stated accuracy's error by class balance: RMSE and bias per group over the runs,
    /// tasks saved before the imbalance was recorded (0) read as balanced.
    #[test]
    fn prediction_table_states_rmse_and_bias_by_class_balance() {
        let t = |i: usize, imbalance: f64, runs: usize, sq: f64, err: f64| TaskResult {
            imbalance,
            pred_runs: runs,
            pred_sq_err: sq,
            pred_err_sum: err,
            pred_within3: 1,
            ..task_result(&format!("t{i}"), "f", 0.9, 0.5, &[])
        };
        let r = report_of(vec![t(0, 1.0, 2, 0.01, -0.02), t(1, 0.0, 2, 0.01, 0.0), t(2, 10.0, 4, 0.04, 0.2)]);
        let md = prediction_table(&r, "class balance", &|t: &TaskResult| balance_label(t.imbalance).into());
        assert!(md.contains("| balanced | 7.1 | -0.5 | 50% | 4 | – |"), "{md}");
        assert!(md.contains("| imbalanced (1.5x or more) | 10.0 | +5.0 | 25% | 4 | – |"), "{md}");
    }

    #[test]
    fn paired_differences_bootstrap_over_families() {
        let m = METHODS[3];
        // a method worse than shipped by 0.2 of the range on every task of every family: the
        // difference and both ends of its interval are exactly +0.2
        let worse: Vec<TaskResult> = (0..12)
            .map(|i| task_result(&format!("t{i}"), &format!("f{}", i % 4), 0.9, 0.5, &[(shipped_method(), Some(0.8)), (m, Some(0.7))]))
            .collect();
        let d = paired_differences(&report_of(worse), 0, 0);
        let (_, n, mean, lo, hi) = d.iter().find(|x| x.0 == m).unwrap().clone();
        assert_eq!(n, 12);
        assert!((mean - 0.2).abs() < 1e-12 && (lo - 0.2).abs() < 1e-12 && (hi - 0.2).abs() < 1e-12, "{mean} {lo} {hi}");
        // better in half the families, worse in the other half: the interval spans 0 and is
        // wide (families resampled, not tasks), and the tasks where the method has no pick drop out
        let mixed: Vec<TaskResult> = (0..12)
            .map(|i| {
                let a = if i % 4 < 2 { 0.9 } else { 0.7 };
                let pick = if i == 11 { None } else { Some(a) };
                task_result(&format!("t{i}"), &format!("f{}", i % 4), 0.9, 0.5, &[(shipped_method(), Some(0.8)), (m, pick)])
            })
            .collect();
        let d = paired_differences(&report_of(mixed.clone()), 0, 0);
        let (_, n, mean, lo, hi) = d.iter().find(|x| x.0 == m).unwrap().clone();
        assert_eq!(n, 11);
        assert!(lo < 0.0 && hi > 0.0 && hi - lo > 0.2, "{mean} [{lo}, {hi}]");
        // seeded: the same report gives the same interval; no tasks, no rows
        assert_eq!(paired_differences(&report_of(mixed.clone()), 0, 0), paired_differences(&report_of(mixed), 0, 0));
        assert_eq!(paired_differences(&report_of(vec![]), 0, 0).len(), 0);
        let md = paired_table(&report_of(
            (0..4).map(|i| task_result(&format!("t{i}"), "f", 0.9, 0.5, &[(shipped_method(), Some(0.8)), (m, Some(0.9))])).collect(),
        ));
        assert!(md.contains(&format!("| {m} | 4 | -0.200 [-0.200, -0.200] |")), "{md}");
    }

    /// The override's reliability table bins tasks by each calibration's P and counts how often
    /// the challenger's logged accuracy was higher (ties half).
    #[test]
    fn override_table_bins_by_probability_and_counts_outcomes() {
        let t = |i: usize, p: f64, p_marginal: f64, gain: f64| TaskResult {
            override_check: Some(OverrideCheck { p, p_marginal, gain }),
            ..task_result(&format!("t{i}"), "f", 0.9, 0.5, &[(shipped_method(), Some(0.8))])
        };
        let r = report_of(vec![t(0, 0.95, 0.995, 0.1), t(1, 0.92, 0.999, -0.1), t(2, 0.6, 0.95, 0.0), t(3, 0.995, 0.999, 0.05)]);
        let md = override_table(&r);
        assert!(md.contains("on the 4 held-out tasks"), "{md}");
        assert!(md.contains("| [0.50, 0.70) | 1 | 0.600 | 0.50 | 0 | – | – |"), "{md}");
        assert!(md.contains("| [0.90, 0.99) | 2 | 0.935 | 0.50 | 1 | 0.950 | 0.50 |"), "{md}");
        assert!(md.contains("| [0.99, 1.00) | 1 | 0.995 | 1.00 | 3 | 0.998 | 0.67 |"), "{md}");
        assert!(override_table(&report_of(vec![])).is_empty());
    }

    /// Two saved evaluations compared through their JSON: pairs by task id, drops tasks only one
    /// has and regrets saved as null (NaN), and counts families by the sign of their difference.
    #[test]
    fn comparing_two_saved_evaluations_pairs_tasks_by_id() {
        let m = METHODS[3];
        let saved = |accs: &[(usize, f64)]| -> SavedEval {
            let tasks = accs
                .iter()
                .map(|&(i, a)| {
                    task_result(&format!("t{i}"), &format!("f{}", i % 4), 0.9, 0.5, &[(shipped_method(), Some(0.8)), (m, Some(a))])
                })
                .collect();
            serde_json::from_str(&serde_json::to_string(&report_of(tasks)).unwrap()).unwrap()
        };
        // base: regret 0.4 on t0..t7; new: 0.2 on t1..t8 (t0 only in base, t8 only in new), t5's regret NaN
        let base = saved(&(0..8).map(|i| (i, 0.7)).collect::<Vec<_>>());
        let new = saved(&(1..9).map(|i| (i, if i == 5 { f64::NAN } else { 0.8 })).collect::<Vec<_>>());
        assert_eq!(new.tasks.iter().find(|t| t.task_id == "t5").unwrap().regret[m], vec![None]);
        let rows = compare_evals(&base, &new, 0, 0);
        let r = rows.iter().find(|r| r.method == m).unwrap();
        assert_eq!((r.tasks, r.budget), (6, 1));
        assert!((r.base - 0.4).abs() < 1e-12 && (r.new - 0.2).abs() < 1e-12, "{r:?}");
        assert!((r.difference + 0.2).abs() < 1e-12 && (r.low + 0.2).abs() < 1e-12 && (r.high + 0.2).abs() < 1e-12, "{r:?}");
        assert_eq!((r.families_lower, r.families_higher), (4, 0));
        // the shipped advisor's regret did not change: a difference of 0 on 7 tasks, no family either way
        let s = rows.iter().find(|r| r.method == shipped_method()).unwrap();
        assert_eq!((s.tasks, s.difference, s.families_lower, s.families_higher), (7, 0.0, 0, 0));
        // a budget neither has gives no rows; the table names every method compared
        assert!(compare_evals(&base, &new, 3, 0).is_empty());
        let md = compare_markdown(&rows);
        assert!(md.contains(&format!("| {m} | 1 | 6 | 0.4000 | 0.2000 | -0.2000 [-0.2000, -0.2000] | 4 / 0 |")), "{md}");
    }

    #[test]
    fn head_to_head_uses_only_tasks_with_both_baselines() {
        let task = |fam: &str, adv: f64, lp: Option<f64>, ft: Option<f64>| {
            task_result(&format!("{fam}-{adv}"), fam, 0.9, 0.5, &[(shipped_method(), Some(adv)), (METHODS[14], lp), (METHODS[15], ft)])
        };
        let r =
            report_of(vec![task("a", 0.8, Some(0.7), Some(0.6)), task("a", 0.5, Some(0.7), Some(0.6)), task("b", 0.9, Some(0.5), None)]);
        let md = baselines_head_to_head(&r);
        assert!(md.contains("on the 2 held-out tasks"), "{md}");
        assert!(md.contains("| a | 2 | 0.650 | 0.700 | 0.600 | 0.500 | 0.400 | 0.600 | 1/0/1 |"), "{md}");
        assert!(md.contains("| all | 2 |"), "{md}");
        assert!(!md.contains("| b |"), "{md}");
        let none = EvalReport { tasks: r.tasks[2..].to_vec(), ..r };
        assert_eq!(baselines_head_to_head(&none), "");
    }

    /// The standard-recipe table bands tasks by shots, compares only tasks where the recipe was
    /// logged, and its Δ is advisor minus recipe in accuracy, with a family-bootstrap interval.
    #[test]
    fn standard_recipe_table_bands_by_shots_on_tasks_with_the_recipe() {
        let task = |i: usize, fam: &str, shots: f64, adv: f64, std: Option<f64>| TaskResult {
            shots,
            ..task_result(&format!("t{i}"), fam, 0.9, 0.5, &[(shipped_method(), Some(adv)), (METHODS[STANDARD_RECIPE], std)])
        };
        let r = report_of(vec![
            task(0, "a", 1.0, 0.8, Some(0.7)),
            task(1, "b", 2.0, 0.8, Some(0.7)),
            task(2, "a", 5.0, 0.6, Some(0.9)),
            task(3, "b", 5.0, 0.9, None),
        ]);
        let md = standard_recipe_head_to_head(&r);
        assert!(md.contains("on the 3 held-out tasks"), "{md}");
        assert!(md.contains("| 1-2 | 2 | 0.800 | 0.700 | +0.100 [+0.100, +0.100] | 0.200 | 0.400 | 2/0/0 |"), "{md}");
        assert!(md.contains("| 3-10 | 1 | 0.600 | 0.900 | -0.300 [-0.300, -0.300] | 0.600 | 0.000 | 0/0/1 |"), "{md}");
        assert!(md.contains("| all | 3 | 0.733 | 0.767 |"), "{md}");
        assert!(!md.contains("| 11-50 |"), "{md}");
        // by family: a: tasks 0 and 2 (Δ +0.1 and −0.3), b: task 1 (+0.1), no interval
        assert!(md.contains("| a | 2 | 0.700 | 0.800 | -0.100 | 0.400 | 0.200 | 1/0/1 |"), "{md}");
        assert!(md.contains("| b | 1 | 0.800 | 0.700 | +0.100 | 0.200 | 0.400 | 1/0/0 |"), "{md}");
        assert_eq!(standard_recipe_head_to_head(&report_of(vec![task(4, "a", 5.0, 0.9, None)])), "");
    }

    /// The standard recipe is picked by recipe alone: Lite0 at 224 px (its native size, so an
    /// unsuffixed key counts), plain fine-tune at 3e-4 for 30 epochs; other sizes, epochs,
    /// learning rates and backbones are never taken, however well they scored.
    #[test]
    fn standard_recipe_picks_by_recipe_not_by_accuracy() {
        let ft = |backbone: &str, lr: f64, epochs: usize, acc: f64| {
            let mut c = cell("t", backbone, "ft", acc, None);
            c.recipe.lr = lr;
            c.recipe.epochs = epochs;
            c
        };
        let cs = [
            ft("efficientnet-lite0-imagenet@96", 3e-4, 30, 0.99),
            ft("efficientnet-lite0-imagenet", 3e-4, 10, 0.98),
            ft("efficientnet-lite2-imagenet@224", 3e-4, 30, 0.97),
            ft("efficientnet-lite0-imagenet", 1e-3, 30, 0.96),
            ft("efficientnet-lite0-imagenet", 3e-4, 30, 0.5),
        ];
        let refs: Vec<&Cell> = cs.iter().collect();
        assert_eq!(standard_recipe(&refs, 224), Some(4));
        assert_eq!(standard_recipe(&refs[..4], 224), None);
        // an explicit @224 key counts whatever the card's size
        let at224 = [ft("efficientnet-lite0-imagenet@224", 3e-4, 30, 0.5)];
        assert_eq!(standard_recipe(&at224.iter().collect::<Vec<_>>(), 260), Some(0));
        assert_eq!(standard_recipe(&refs[4..], 260), None);
    }

    /// Tasks with an unlabelled pool and both policies logged enter the table, by pool size;
    /// the columns are the first picks' accuracies and regrets.
    #[test]
    fn pretrain_policy_table_compares_never_always_and_the_advisor() {
        let task = |pool: usize, never: Option<f64>, always: Option<f64>, adv: f64, adv_pt: bool, best_pt: bool| {
            let picks = [(METHODS[PRETRAIN_NEVER], never), (METHODS[PRETRAIN_ALWAYS], always), (shipped_method(), Some(adv))];
            let mut best_by_pretrain: BTreeMap<String, f64> = [("none".to_string(), if pool == 100 { 0.7 } else { 0.8 })].into();
            best_by_pretrain.insert("denoising-autoencoder".into(), if pool == 100 { 0.65 } else { 0.6 });
            if pool == 100 {
                best_by_pretrain.insert("simclr".into(), 0.8);
            }
            TaskResult {
                n_unlabelled: pool,
                best_pretrains: Some(best_pt),
                advisor_pretrains: Some(adv_pt),
                best_by_pretrain,
                ..task_result(&format!("t{pool}-{adv}"), "f", 0.8, 0.4, &picks)
            }
        };
        let r = report_of(vec![
            task(100, Some(0.6), Some(0.7), 0.7, true, true),
            task(5000, Some(0.8), Some(0.6), 0.8, false, false),
            task(0, None, None, 0.5, false, false),
        ]);
        let md = pretrain_policy_table(&r);
        assert!(md.contains("on the 2 held-out tasks"), "{md}");
        assert!(md.contains("| ~100 | 1 | 0.600 | 0.700 | 0.700 | 0.500 | 0.250 | 0.250 | 1 | 1 | 0.700 | 0.800 |"), "{md}");
        assert!(md.contains("| ~5000 | 1 | 0.800 | 0.600 | 0.800 | 0.000 | 0.500 | 0.000 | 0 | 0 | 0.800 | 0.600 |"), "{md}");
        assert!(md.contains("| all | 2 | 0.700 | 0.650 | 0.750 | 0.250 | 0.375 | 0.125 | 1 | 1 | 0.750 | 0.700 |"), "{md}");
        // the per-method table: simclr on the first task only (+10 points), the autoencoder on
        // both (-5 and -20)
        assert!(md.contains("| simclr | 1 | 0.700 | 0.800 | +10.00 | 1 | 0 |"), "{md}");
        assert!(md.contains("| denoising-autoencoder | 2 | 0.750 | 0.625 | -12.50 | 0 | 2 |"), "{md}");
        assert!(md.contains("| all | 2 | 0.700 | 0.650 | 0.750 |"), "{md}");
        assert!(!md.contains("| ~1000 |"), "{md}");
        let none = EvalReport { tasks: r.tasks[2..].to_vec(), ..r };
        assert_eq!(pretrain_policy_table(&none), "");
    }

    #[test]
    fn anchored_portfolio_complements_the_anchor() {
        let mut cs = Vec::new();
        for (t, probe, ftb, ftc) in [("t1", 0.9, 0.85, 0.5), ("t2", 0.9, 0.88, 0.5), ("t3", 0.4, 0.38, 0.8)] {
            cs.push(cell(t, "bb", "probe", probe, Some(1.0)));
            cs.push(cell(t, "bb", "probe-low", 0.1, Some(0.0)));
            cs.push(cell(t, "bb", "ft-b", ftb, None));
            cs.push(cell(t, "bb", "ft-c", ftc, None));
        }
        let refs: Vec<&Cell> = cs.iter().collect();
        let anchors = logme_anchors(&refs);
        assert!(anchors.values().all(|c| c.r_name == "probe"));
        let p = anchored_portfolio(&refs, 2);
        assert_eq!(p[0], "bb::ft-c");
    }

    use super::*;
    use crate::metalearner::Warp;
    use nalgebra::DMatrix;

    /// A noisier observation moves the posterior less: a validation accuracy on ten images
    /// (binomial variance ~0.02) barely overturns a confident prediction, a precise one does.
    #[test]
    fn noisy_observations_move_the_posterior_less() {
        let cov = nalgebra::DMatrix::from_row_slice(2, 2, &[0.002, 0.0, 0.0, 0.002]);
        let (mut precise, mut noisy) = (SeqEi::new(&[0.8, 0.8], &cov, 1e-4, 0.0), SeqEi::new(&[0.8, 0.8], &cov, 1e-4, 0.0));
        precise.observe(0, Some(1.0));
        noisy.observe_noisy(0, Some(1.0), 0.9 * 0.1 / 10.0);
        let (p, n) = (precise.posterior(0).0, noisy.posterior(0).0);
        assert!(p > 0.98 && n > 0.8 && n - 0.8 < (p - 0.8) / 4.0, "{p} {n}");
        // the unobserved, independent candidate is untouched either way
        assert_eq!(noisy.posterior(1).0, 0.8);
    }

    #[test]
    fn sequential_ei_conditions_on_what_it_observes() {
        // two correlated candidates and an independent one
        let mean = [0.60, 0.55, 0.50];
        let cov = DMatrix::from_row_slice(3, 3, &[0.010, 0.008, 0.0, 0.008, 0.010, 0.0, 0.0, 0.0, 0.010]);
        let mut s = SeqEi::new(&mean, &cov, 1e-6, 0.0);
        s.observe(0, Some(0.70));
        // the correlated one moves by cov/var of the surprise, the independent one not at all
        let (m1, v1) = s.posterior(1);
        assert!((m1 - (0.55 + 0.008 / (0.010 + 1e-6) * 0.10)).abs() < 1e-9, "{m1}");
        assert!((v1 - (0.010 - 0.008 * 0.008 / (0.010 + 1e-6))).abs() < 1e-9, "{v1}");
        assert!((s.posterior(2).0 - 0.50).abs() < 1e-12);
        // the observed one is pinned down
        let (m0, v0) = s.posterior(0);
        assert!((m0 - 0.70).abs() < 1e-4 && v0 < 1e-5, "{m0} {v0}");
        // a task-level offset: one observation shifts every candidate's level
        let mut t = SeqEi::new(&mean, &DMatrix::from_diagonal_element(3, 3, 0.001), 1e-6, 0.04);
        t.observe(0, Some(0.90));
        for (j, &m) in mean.iter().enumerate().skip(1) {
            let shift = t.posterior(j).0 - m;
            assert!(shift > 0.25 && shift < 0.30, "candidate {j} moved by {shift}");
        }
    }

    #[test]
    fn simulated_auto_answers_with_its_first_pick_at_budget_1_and_the_best_run_when_validation_is_exact() {
        let mean = [0.60, 0.55, 0.50, 0.45];
        let cov = DMatrix::from_diagonal_element(4, 4, 0.01);
        let accs = [0.50, 0.80, 0.65, 0.90];
        // a validation split so large that its accuracy is the logged one: the answer at budget K
        // is the best logged accuracy among the first K runs of sequential EI on those accuracies
        let run = |first: usize, n_val: usize, budgets: usize| {
            simulate_auto(first, &mean, &cov, 1e-6, 0.0, &accs, n_val, budgets, 3, "t", WinnerRule::PosteriorMean, Warp::Identity)
        };
        let sim = run(0, 1_000_000, 4);
        let order = sequential_ei_order(0, &mean, &cov, 1e-6, 0.0, &|i| accs[i], 4);
        assert_eq!(sim.len(), AUTO_SIM_REPLICATES);
        for rep in &sim {
            assert_eq!(rep.len(), 4);
            assert_eq!(rep[0], 0, "budget 1 runs the first pick");
            for k in 1..4 {
                let best = order[..=k].iter().copied().max_by(|&a, &b| accs[a].total_cmp(&accs[b])).unwrap();
                assert_eq!(rep[k], best, "budget {}: {rep:?} from runs {:?}", k + 1, &order[..=k]);
            }
        }
        // the same seed and task give the same draws; without a validation split the first run wins
        assert_eq!(sim, run(0, 1_000_000, 4));
        for rep in run(2, 0, 3) {
            assert_eq!(rep, vec![2, 2, 2]);
        }
    }

    #[test]
    fn simulated_auto_can_pick_a_worse_run_on_a_small_validation_split() {
        // two candidates 5 points apart, 5 validation images: the noisy validation accuracies
        // sometimes crown the worse one, so the simulated answer is no oracle
        let mean = [0.70, 0.70];
        let cov = DMatrix::from_diagonal_element(2, 2, 0.02);
        let accs = [0.75, 0.70];
        let mut worse = 0;
        for t in 0..20 {
            for rep in simulate_auto(0, &mean, &cov, 1e-4, 0.0, &accs, 5, 2, t, "t", WinnerRule::PosteriorMean, Warp::Identity) {
                assert_eq!(rep[0], 0);
                worse += (rep[1] == 1) as usize;
            }
        }
        assert!(worse > 0 && worse < 20 * AUTO_SIM_REPLICATES, "worse run chosen {worse} times");
    }

    #[test]
    fn winner_rules_weigh_the_validation_accuracies_as_documented() {
        // candidate 1 is predicted far better than 0; both validate at similar accuracies
        let mean = [0.50, 0.80, 0.60];
        let cov = DMatrix::from_diagonal_element(3, 3, 0.01);
        let mut s = SeqEi::new(&mean, &cov, 1e-4, 0.0);
        let runs = [(0, 0.72), (1, 0.70), (2, 0.72)];
        for &(i, v) in &runs {
            s.observe_noisy(i, Some(v), val_noise_var(v, 10));
        }
        // the posterior mean still trusts the prediction of candidate 1
        assert_eq!(s.winner(&runs, WinnerRule::PosteriorMean), Some(1));
        // the validation accuracy: 0 and 2 tie, the earlier run wins
        assert_eq!(s.winner(&runs, WinnerRule::ValAccuracy), Some(0));
        // keep the first run unless the posterior is sure another beats it
        assert_eq!(s.winner(&runs, WinnerRule::KeepFirstUnless(0.999)), Some(0));
        assert_eq!(s.winner(&runs, WinnerRule::KeepFirstUnless(0.5)), Some(1));
        assert_eq!(s.winner(&[], WinnerRule::ValAccuracy), None);
        assert!((val_noise_var(1.0, 10) - 0.009).abs() < 1e-15);
        assert_eq!(val_noise_var(0.5, 0), 0.0);
    }

    #[test]
    fn seed_noise_pairs_the_seeds_of_each_configuration() {
        let obs = |name: &str, seed: i64, acc: f64| Obs {
            run_id: format!("{name}-{seed}"),
            task_id: "t".into(),
            family: "f".into(),
            backbone: "b".into(),
            r_name: name.into(),
            strategy: "finetune".into(),
            acc,
            seed,
            n_classes: 2,
            shots: 5.0,
            imbalance: 1.0,
            shift: "none".into(),
            task: vec![],
            recipe: super::super::features::RecipeSummary::for_tests(None),
            recipe_json: String::new(),
            train_seconds: 1.0,
            n_train: 10,
        };
        // a: seeds 0 and 1 differ by 0.2 (seed 2 ignored); b: one seed only; c: equal seeds
        let runs = [obs("a", 1, 0.5), obs("a", 0, 0.7), obs("a", 2, 0.0), obs("b", 0, 0.9), obs("c", 0, 0.6), obs("c", 1, 0.6)];
        let (sq, n) = seed_noise(runs.iter());
        assert_eq!(n, 2);
        assert!((sq - 0.2f64.powi(2) / 2.0).abs() < 1e-12, "{sq}");
    }

    #[test]
    fn auto_val_size_follows_the_stratified_split() {
        assert_eq!(auto_val_size(1.0, 5), 0);
        assert_eq!(auto_val_size(2.0, 5), 5);
        assert_eq!(auto_val_size(10.0, 3), 6);
        assert_eq!(auto_val_size(50.0, 4), 40);
    }

    #[test]
    fn sequential_ei_explores_after_a_disappointment() {
        // candidate 0 is predicted best; 1 is strongly tied to it; 2 is independent and uncertain.
        let mean = [0.70, 0.68, 0.60];
        let cov = DMatrix::from_row_slice(3, 3, &[0.004, 0.0038, 0.0, 0.0038, 0.004, 0.0, 0.0, 0.0, 0.02]);
        // before any run, 1 ranks above 2
        let s = SeqEi::new(&mean, &cov, 1e-4, 0.0);
        assert!(s.ei(1) > 0.0);
        // 0 comes in far below its prediction: 1 is dragged down with it, so 2 is next
        let order = sequential_ei_order(0, &mean, &cov, 1e-4, 0.0, &|i| [0.50, 0.49, 0.65][i], 3);
        assert_eq!(order, vec![0, 2, 1]);
        // whatever comes in, every candidate is picked exactly once
        let order = sequential_ei_order(0, &mean, &cov, 1e-4, 0.0, &|i| [0.70, 0.69, 0.55][i], 3);
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, vec![0, 1, 2]);
    }

    /// A family's tasks pair with the tasks of the same classes and shift at twice the shots,
    /// per configuration logged on both: the measured gain is the difference of the mean
    /// accuracies; a configuration or a shot count without a partner makes no pair. With no
    /// measured transferability to hold (no probe gap, so no task-level shift), the forecast from
    /// the S tasks is exactly what the meta-learner states for a 2S task whose features differ
    /// only in the shots.
    #[test]
    fn label_pairs_pair_s_with_2s_and_forecast_what_the_2s_task_is_stated() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/meta-learner.json");
        let model = MetaModel::load(&path).unwrap();
        let names = super::super::features::TASK_FEATURES;
        let at = |n: &str| names.iter().position(|f| *f == n).unwrap();
        let mk = |task: &str, shots: f64, name: &str, acc: f64, probe: bool| {
            let mut c = cell(task, "efficientnet-lite0-imagenet", name, acc, None);
            c.task[at("log_shots")] = Some(shots.ln());
            c.task[at("log_n_classes")] = Some(5f64.ln());
            c.task[at("pixel_mean")] = Some(0.45);
            c.task[at("pixel_std")] = Some(0.25);
            c.shots = shots;
            c.n_classes = 5;
            c.recipe = super::super::features::RecipeSummary::for_tests(probe.then_some(1.0));
            c
        };
        let held = vec![
            mk("a5", 5.0, "ft", 0.50, false),
            mk("b5", 5.0, "ft", 0.60, false),
            mk("a5", 5.0, "svm", 0.55, true),
            mk("a10", 10.0, "ft", 0.70, false),
            mk("a3", 3.0, "ft", 0.40, false),
            // imbalanced tasks of the same median shots are not paired
            Cell { imbalance: 3.0, ..mk("i5", 5.0, "ft", 0.90, false) },
            Cell { imbalance: 10.0, ..mk("i10", 10.0, "ft", 0.10, false) },
        ];
        let pairs = label_pairs(&model, "f", &held);
        assert_eq!(pairs.len(), 1, "{pairs:?}");
        let p = &pairs[0];
        assert_eq!(
            (p.config.as_str(), p.kind.to_string().as_str(), p.shots, p.tasks),
            ("efficientnet-lite0-imagenet::ft", "fine-tune", 5.0, [2, 1])
        );
        // the kind is written and read back as its name
        let json = serde_json::to_string(&p.kind).unwrap();
        assert_eq!(json, "\"fine-tune\"");
        assert_eq!(serde_json::from_str::<RecipeKind>(&json).unwrap(), p.kind);
        assert!((p.measured_now - 0.55).abs() < 1e-12 && (p.measured_gain - 0.15).abs() < 1e-12, "{p:?}");
        assert!(p.forecast_gain.is_finite() && (p.forecast_gain - p.given_gain).abs() < 1e-9, "{p:?}");
        // the baseline from the other families: none here; one other family's gain when there is
        let mut q = p.clone();
        q.family = "g".into();
        q.measured_gain = 0.05;
        assert_eq!(other_families_gain(std::slice::from_ref(p)), vec![None]);
        let g = other_families_gain(&[p.clone(), q]);
        assert!((g[0].unwrap() - 0.05).abs() < 1e-12 && (g[1].unwrap() - 0.15).abs() < 1e-12, "{g:?}");
        let md = label_pairs_table(&pairs);
        assert!(md.contains("| fine-tune | 1 | 1 | +15.0 |") && md.contains("| S = 5 |"), "{md}");
    }
}
