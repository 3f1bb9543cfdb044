//! The meta-learner: a surrogate that predicts a recipe's test accuracy on a task from the task's
//! meta-features and the recipe's fields, with an uncertainty. Two learners are fitted and the
//! one with the lower held-out error (family-grouped cross-validation) is kept:
//! a Gaussian process ([`gp`]) and a k-nearest-task warm start ([`Knn`], the auto-sklearn way).
pub mod auto;
pub mod eval;
pub mod features;
pub mod gp;
pub mod linalg;
pub mod score;
pub mod search;
pub mod warp;

use crate::error::{GraftError, Result};
use crate::recipe::Strategy;
use features::{obs_hash, Obs, RecipeSummary, RECIPE_FEATURES, TASK_FEATURES};
use gp::Gp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
pub use warp::Warp;

pub const MODEL_SCHEMA_VERSION: u32 = 3;
/// z of a central 80% normal interval.
pub const Z80: f64 = 1.2815515655446004;

/// Standardises task and recipe features and one-hot encodes the backbone.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Encoder {
    pub backbones: Vec<String>,
    pub task_mean: Vec<f64>,
    pub task_std: Vec<f64>,
    pub recipe_mean: Vec<f64>,
    pub recipe_std: Vec<f64>,
    /// Task x recipe interactions: LogME and nearest-centroid accuracy at the depth the recipe
    /// uses (the probed group; the penultimate group for fine-tuning).
    pub inter_mean: Vec<f64>,
    pub inter_std: Vec<f64>,
}

pub const INTERACTION_FEATURES: &[&str] = &["logme_at_depth", "ncprobe_at_depth"];

/// LogME and nearest-centroid accuracy of the task at the recipe's depth (raw values).
pub fn interactions(t: &[Option<f64>], r: &RecipeSummary) -> [Option<f64>; 2] {
    let k = depth_bucket(if r.strategy == Strategy::Finetune { 1.0 } else { r.probe_depth.unwrap_or(1.0) });
    [t[5 + k], t[8 + k]]
}

/// Which of the three measured depths (0 first, 1 mid, 2 penultimate group) a relative depth in
/// [0, 1] falls to: the first, mid and last columns of LogME and nearest-centroid accuracy.
fn depth_bucket(d: f64) -> usize {
    if d < 0.25 {
        0
    } else if d < 0.75 {
        1
    } else {
        2
    }
}

fn mean_std(cols: &[Vec<f64>]) -> (Vec<f64>, Vec<f64>) {
    cols.iter()
        .map(|c| {
            if c.is_empty() {
                return (0.0, 1.0);
            }
            let m = c.iter().sum::<f64>() / c.len() as f64;
            let s = (c.iter().map(|v| (v - m).powi(2)).sum::<f64>() / c.len() as f64).sqrt();
            (m, if s > 1e-9 { s } else { 1.0 })
        })
        .unzip()
}

impl Encoder {
    pub fn fit(obs: &[Obs]) -> Encoder {
        let backbones: BTreeSet<String> = obs.iter().map(|o| o.backbone.clone()).collect();
        let mut tc = vec![Vec::new(); TASK_FEATURES.len()];
        let mut rc = vec![Vec::new(); RECIPE_FEATURES.len()];
        for o in obs {
            for (i, v) in o.task.iter().enumerate() {
                if let Some(v) = v.filter(|v| v.is_finite()) {
                    tc[i].push(v);
                }
            }
            for (i, v) in o.recipe.vector().into_iter().enumerate() {
                rc[i].push(v);
            }
        }
        let mut ic = vec![Vec::new(); INTERACTION_FEATURES.len()];
        for o in obs {
            for (i, v) in interactions(&o.task, &o.recipe).iter().enumerate() {
                if let Some(v) = v.filter(|v| v.is_finite()) {
                    ic[i].push(v);
                }
            }
        }
        let (task_mean, task_std) = mean_std(&tc);
        let (recipe_mean, recipe_std) = mean_std(&rc);
        let (inter_mean, inter_std) = mean_std(&ic);
        Encoder { backbones: backbones.into_iter().collect(), task_mean, task_std, recipe_mean, recipe_std, inter_mean, inter_std }
    }

    /// Standardised task features; a missing value becomes the mean (0).
    pub fn task(&self, t: &[Option<f64>]) -> Vec<f64> {
        t.iter()
            .enumerate()
            .map(|(i, v)| match v {
                Some(v) if v.is_finite() => ((v - self.task_mean[i]) / self.task_std[i]).clamp(-6.0, 6.0),
                _ => 0.0,
            })
            .collect()
    }

    pub fn encode(&self, t: &[Option<f64>], r: &RecipeSummary, backbone: &str) -> Vec<f64> {
        let mut v = self.task(t);
        v.extend(r.vector().iter().enumerate().map(|(i, x)| (x - self.recipe_mean[i]) / self.recipe_std[i]));
        v.extend(interactions(t, r).iter().enumerate().map(|(i, x)| match x {
            Some(x) if x.is_finite() => ((x - self.inter_mean[i]) / self.inter_std[i]).clamp(-6.0, 6.0),
            _ => 0.0,
        }));
        v.extend(self.backbones.iter().map(|b| (b == backbone) as u8 as f64));
        v
    }

    pub fn feature_names(&self) -> Vec<String> {
        let mut n: Vec<String> = TASK_FEATURES.iter().map(|s| format!("task.{s}")).collect();
        n.extend(RECIPE_FEATURES.iter().map(|s| format!("recipe.{s}")));
        n.extend(INTERACTION_FEATURES.iter().map(|s| format!("task_x_recipe.{s}")));
        n.extend(self.backbones.iter().map(|b| format!("backbone={b}")));
        n
    }
}

/// A (task, configuration) cell: the mean accuracy over the seeds logged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cell {
    pub task_id: String,
    pub family: String,
    pub backbone: String,
    pub r_name: String,
    pub acc: f64,
    pub n_seeds: usize,
    pub task: Vec<Option<f64>>,
    pub recipe: RecipeSummary,
    pub shots: f64,
    /// Most over fewest training images a class ([`Obs::imbalance`]).
    pub imbalance: f64,
    pub n_classes: usize,
    pub shift: String,
}

impl Cell {
    pub fn config(&self) -> String {
        format!("{}::{}", self.backbone, self.r_name)
    }
}

/// Average the seeds of every (task, configuration).
pub fn cells(obs: &[Obs]) -> Vec<Cell> {
    let mut m: BTreeMap<(String, String, String), (Vec<f64>, &Obs)> = BTreeMap::new();
    for o in obs {
        m.entry((o.task_id.clone(), o.backbone.clone(), o.r_name.clone())).or_insert_with(|| (Vec::new(), o)).0.push(o.acc);
    }
    m.into_values()
        .map(|(accs, o)| Cell {
            task_id: o.task_id.clone(),
            family: o.family.clone(),
            backbone: o.backbone.clone(),
            r_name: o.r_name.clone(),
            acc: accs.iter().sum::<f64>() / accs.len() as f64,
            n_seeds: accs.len(),
            task: o.task.clone(),
            recipe: o.recipe.clone(),
            shots: o.shots,
            imbalance: o.imbalance,
            n_classes: o.n_classes,
            shift: o.shift.clone(),
        })
        .collect()
}

/// k-nearest-task warm start: a configuration's accuracy on a new task is the distance-weighted
/// mean of its accuracy on the k most similar past tasks (task features under that backbone).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Knn {
    pub k: usize,
    /// (config, encoded task features, mean accuracy, task id)
    pub entries: Vec<(String, Vec<f64>, f64, String)>,
}

fn dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>().sqrt()
}

impl Knn {
    pub fn fit(cells: &[Cell], enc: &Encoder, k: usize) -> Knn {
        Knn { k, entries: cells.iter().map(|c| (c.config(), enc.task(&c.task), c.acc, c.task_id.clone())).collect() }
    }
    /// Mean and variance for `config` on a task with encoded features `t`; None if the
    /// configuration was never logged.
    pub fn predict(&self, config: &str, t: &[f64]) -> Option<(f64, f64)> {
        let mut nb: Vec<(f64, f64)> = self.entries.iter().filter(|e| e.0 == config).map(|e| (dist(&e.1, t), e.2)).collect();
        if nb.is_empty() {
            return None;
        }
        nb.sort_by(|a, b| a.0.total_cmp(&b.0));
        nb.truncate(self.k);
        let w: Vec<f64> = nb.iter().map(|(d, _)| 1.0 / (d + 0.25)).collect();
        let ws: f64 = w.iter().sum();
        let m = nb.iter().zip(&w).map(|((_, a), w)| a * w).sum::<f64>() / ws;
        let v = nb.iter().zip(&w).map(|((_, a), w)| w * (a - m).powi(2)).sum::<f64>() / ws;
        // a floor for the spread: few neighbours say little
        Some((m, v.max(0.0025) * (1.0 + 1.0 / nb.len() as f64)))
    }
}

/// One configuration of the logged portfolio, with a recipe document that reproduces it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PortfolioEntry {
    pub backbone: String,
    pub r_name: String,
    pub recipe: RecipeSummary,
    pub recipe_json: String,
    pub n_tasks: usize,
    pub mean_acc: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct CvReport {
    pub folds: Vec<Vec<String>>,
    pub gp_rmse: f64,
    pub knn_rmse: f64,
    pub gp_coverage80: f64,
    pub knn_coverage80: f64,
    pub n_cells: usize,
    pub chosen: Learner,
    /// Factors applied to each learner's predictive standard deviation so that 80% of the
    /// held-out cells fall inside the 80% interval (variance recalibration on the CV residuals).
    #[serde(default = "one")]
    pub gp_sd_scale: f64,
    #[serde(default = "one")]
    pub knn_sd_scale: f64,
    /// Held-out normalised regret of the top-1 pick per task, by which GP orders candidates:
    /// the absolute GP, or the within-task GP (`fit_gp_rel`). The lower one becomes `ranker`.
    #[serde(default)]
    pub gp_regret1: f64,
    #[serde(default)]
    pub gp_rel_regret1: f64,
    /// The same held-out regret for the kNN learner's ranking. The learner with the lower
    /// held-out regret (the better ranking of the two GPs for the GP) is `chosen`; RMSE breaks a
    /// tie.
    #[serde(default)]
    pub knn_regret1: f64,
    /// The same recalibration for *differences* between two candidates of one held-out task
    /// (`pair_sd_scale`), per GP: what the override's P(a beats b) reads. None in model files
    /// fitted before it existed (the marginal `gp_sd_scale` stands in).
    #[serde(default)]
    pub gp_pair_sd_scale: Option<f64>,
    #[serde(default)]
    pub gp_rel_pair_sd_scale: Option<f64>,
    /// The same for the override's own question only (`decision_sd_scale`): on each held-out
    /// task, the anchor against its best-ranked challenger, one-sided.
    #[serde(default)]
    pub gp_decision_sd_scale: Option<f64>,
    #[serde(default)]
    pub gp_rel_decision_sd_scale: Option<f64>,
    /// What the ranking GP's stated P(challenger beats the default) has meant on held-out
    /// tasks, per band of P ([`HitBand`]): for the override of the transferability anchor by
    /// its best-ranked challenger, and for the anchored pick against the standard ImageNet
    /// recipe. Empty in files fitted before session 27.
    #[serde(default)]
    pub override_hits: Vec<HitBand>,
    #[serde(default)]
    pub standard_hits: Vec<HitBand>,
    /// The P the anchored pick must reach to replace the standard recipe, chosen on the same
    /// held-out decisions ([`choose_standard_threshold`]), and the mean accuracy gain over the
    /// recipe at each threshold tried. None (0.9) before session 27 or with fewer than
    /// [`MIN_STANDARD_DECISIONS`] decisions.
    #[serde(default)]
    pub standard_threshold: Option<f64>,
    #[serde(default)]
    pub standard_gain_by_threshold: Vec<(f64, f64)>,
    /// Per configuration (backbone key and recipe name), the ranking GP's systematic miss on
    /// held-out tasks, relative to the other configurations of the same task: the mean of
    /// (logged − predicted) centred within each task, on the GP's scale, shrunk towards 0 by
    /// empirical Bayes ([`config_offsets`]). Only `meta eval`'s variant row reads it; empty in
    /// files fitted before session 30.
    #[serde(default)]
    pub config_offsets: BTreeMap<String, f64>,
    /// How the level of a held-out task moved with its probe gap ([`TaskLevel`]); None in files
    /// fitted before session 31, or where the gap did not predict the level.
    #[serde(default)]
    pub task_level: Option<TaskLevel>,
    /// Per [`scale_group`] with at least [`MIN_SCALE_GROUP_CELLS`] held-out cells, the GP's
    /// interval scale calibrated on that group's held-out cells as they are stated (shifted by
    /// the task's level where it has a gap), as `gp_sd_scale` is on all of them: a fine-tune on
    /// an ImageNet backbone is missed by more than one on a small backbone, and a single scale
    /// made the first's intervals too narrow and the second's too wide. Empty in files fitted
    /// before session 31; a group without one falls back to the pooled scales.
    #[serde(default)]
    pub stated_sd_scales: BTreeMap<String, f64>,
}

/// The group whose held-out cells calibrate a candidate's stated interval
/// ([`CvReport::stated_sd_scales`]): its strategy ("+pretrain" for a pretrain-first recipe) on its
/// backbone model (the backbone key without its input size).
pub fn scale_group(backbone: &str, r: &RecipeSummary) -> String {
    format!("{}{}/{}", r.strategy, if r.pretrain { "+pretrain" } else { "" }, backbone.split('@').next().unwrap_or(backbone))
}

/// Fewest held-out cells a [`scale_group`] needs for its own interval scale.
pub const MIN_SCALE_GROUP_CELLS: usize = 200;

/// The task's own images as evidence on its level. The meta-learner's held-out error is more
/// than half the level of each task: every configuration on it is over- or under-predicted
/// together (the variance of a task's mean residual is 0.017 of the 0.030 of a cell's, on the
/// arcsine scale, over the shipped meta-dataset's held-out families). A new task carries one
/// measurement of its own level: the cross-validated accuracy of nearest-centroid probes on its
/// training images (the `ncprobe_*` meta-features, computed for every candidate backbone). The
/// *probe gap* ([`probe_gap`]) is that measurement less what the GP predicts for the centroid
/// probe on the same features, averaged over the probes; `meta fit`'s family-grouped CV
/// regresses each held-out task's mean residual on it (least squares over tasks), and the
/// accuracy stated for every candidate of a new task is shifted by `alpha + beta · gap`.
/// A shift common to every candidate changes no ranking and no decision.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskLevel {
    pub alpha: f64,
    pub beta: f64,
    /// Held-out tasks with a gap the regression was fitted on.
    pub n_tasks: usize,
    /// Correlation of gap and mean residual over those tasks.
    pub correlation: f64,
    /// Variance over those tasks of the mean residual, before and after the shift.
    pub var_before: f64,
    pub var_after: f64,
    /// The GP's interval scale recalibrated on the shifted held-out cells (as `gp_sd_scale` is
    /// on the unshifted ones); used where the shift is.
    pub sd_scale: f64,
}

impl TaskLevel {
    /// Least squares of each task's mean residual on its gap, `pairs` = (gap, mean residual);
    /// None with fewer than `MIN_TASK_LEVEL_TASKS` tasks or a slope that is not positive (a gap
    /// that does not move the level in its own direction is no evidence to shift by).
    pub fn fit(pairs: &[(f64, f64)]) -> Option<(f64, f64, f64, f64, f64)> {
        let n = pairs.len() as f64;
        if pairs.len() < MIN_TASK_LEVEL_TASKS {
            return None;
        }
        let (mx, my) = (pairs.iter().map(|p| p.0).sum::<f64>() / n, pairs.iter().map(|p| p.1).sum::<f64>() / n);
        let sxx: f64 = pairs.iter().map(|p| (p.0 - mx).powi(2)).sum();
        let syy: f64 = pairs.iter().map(|p| (p.1 - my).powi(2)).sum();
        let sxy: f64 = pairs.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
        if sxx <= 0.0 || syy <= 0.0 || sxy <= 0.0 {
            return None;
        }
        let beta = sxy / sxx;
        let alpha = my - beta * mx;
        let after: f64 = pairs.iter().map(|p| (p.1 - alpha - beta * p.0).powi(2)).sum::<f64>() / n;
        Some((alpha, beta, sxy / (sxx * syy).sqrt(), syy / n, after))
    }

    /// The shift for a task with probe gap `gap`.
    pub fn shift(&self, gap: f64) -> f64 {
        self.alpha + self.beta * gap
    }
}

/// A held-out task's probe gap (None where it has none), and its cells: each one's
/// [`scale_group`], (mean, variance) on the GP's scale, and observation.
type GapTask = (Option<f64>, Vec<(String, (f64, f64), f64)>);

/// Predictions (mean, variance) and the observations they predict, in order.
type Scored = (Vec<(f64, f64)>, Vec<f64>);

/// Fewest held-out tasks with a probe gap that [`TaskLevel::fit`] fits on.
pub const MIN_TASK_LEVEL_TASKS: usize = 20;

/// The centroid probes among configurations given as (backbone key, recipe): those without
/// pretraining, one per backbone key and probe-depth bucket (the first of each).
pub fn centroid_probes<'a>(configs: impl Iterator<Item = (&'a str, &'a RecipeSummary)>) -> Vec<(String, RecipeSummary)> {
    let mut seen: BTreeMap<(String, usize), RecipeSummary> = BTreeMap::new();
    for (b, r) in configs {
        if r.strategy == Strategy::CentroidProbe && !r.pretrain {
            seen.entry((b.to_string(), depth_bucket(r.probe_depth.unwrap_or(1.0)))).or_insert_with(|| r.clone());
        }
    }
    seen.into_iter().map(|((b, _), r)| (b, r)).collect()
}

/// A task's (unencoded) features per backbone key, from its cells or runs given as (backbone
/// key, features under it): the first of each backbone (every cell of a task on one backbone
/// carries the same features).
pub fn features_by_backbone<'a>(cells: impl Iterator<Item = (&'a str, &'a [Option<f64>])>) -> BTreeMap<String, Vec<Option<f64>>> {
    let mut m = BTreeMap::new();
    for (b, t) in cells {
        m.entry(b.to_string()).or_insert_with(|| t.to_vec());
    }
    m
}

/// A task's probe gap under `gp`: over the centroid probes `probes` whose backbone the task has
/// features under and whose cross-validated accuracy it has (`ncprobe_*` at the probe's depth),
/// the mean of (that accuracy − the GP's predicted mean for the probe), on the GP's scale `warp`;
/// with how many probes it averages. None where no probe has both.
pub fn probe_gap(
    gp: &Gp,
    enc: &Encoder,
    warp: Warp,
    probes: &[(String, RecipeSummary)],
    task: &BTreeMap<String, Vec<Option<f64>>>,
) -> Option<(f64, usize)> {
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for (b, r) in probes {
        let Some(t) = task.get(b) else { continue };
        if let Some(Some(cv)) = t.get(ncprobe_index(r.probe_depth)) {
            if cv.is_finite() {
                xs.push(enc.encode(t, r, b));
                ys.push(warp.fwd(cv.clamp(0.0, 1.0)));
            }
        }
    }
    if xs.is_empty() {
        return None;
    }
    let (m, _) = gp.predict(&xs);
    Some((ys.iter().zip(&m).map(|(y, m)| y - m).sum::<f64>() / m.len() as f64, m.len()))
}

/// Per configuration, the shrunk mean of its within-task-centred held-out residuals. On each
/// held-out task with two or more cells, a cell's residual is (observed − predicted mean) minus
/// the task's mean residual, so a miss of the task's level (which moves every candidate alike
/// and changes no decision) drops out. Each configuration's mean residual r̄ over its n tasks is
/// shrunk as in a normal-normal model: r̄ · τ² / (τ² + σ²/n), with σ² the pooled variance of a
/// residual about its configuration's mean, and τ² the variance of the true offsets by the
/// method of moments (the spread of the r̄ less their mean sampling variance σ²/n, floored at 0).
/// `tasks` holds, per held-out task, each cell's configuration, predicted mean and observation
/// (both on the GP's scale).
pub fn config_offsets(tasks: &[Vec<(String, f64, f64)>]) -> BTreeMap<String, f64> {
    let mut by: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for t in tasks.iter().filter(|t| t.len() >= 2) {
        let mean = t.iter().map(|(_, m, y)| y - m).sum::<f64>() / t.len() as f64;
        for (k, m, y) in t {
            by.entry(k.as_str()).or_default().push(y - m - mean);
        }
    }
    let means: Vec<(&str, f64, f64)> = by.iter().map(|(k, r)| (*k, r.iter().sum::<f64>() / r.len() as f64, r.len() as f64)).collect();
    let (ss, dof) = by
        .values()
        .zip(&means)
        .fold((0.0, 0.0), |(ss, dof), (r, &(_, rb, n))| (ss + r.iter().map(|x| (x - rb).powi(2)).sum::<f64>(), dof + n - 1.0));
    if means.len() < 2 || dof < 1.0 {
        return BTreeMap::new();
    }
    let sigma2 = ss / dof;
    let k = means.len() as f64;
    let grand = means.iter().map(|m| m.1).sum::<f64>() / k;
    let spread = means.iter().map(|m| (m.1 - grand).powi(2)).sum::<f64>() / (k - 1.0);
    let tau2 = (spread - means.iter().map(|m| sigma2 / m.2).sum::<f64>() / k).max(0.0);
    means.into_iter().map(|(key, rb, n)| (key.to_string(), if tau2 > 0.0 { rb * tau2 / (tau2 + sigma2 / n) } else { 0.0 })).collect()
}

/// Held-out decisions whose stated P(challenger beats the default) fell in [lo, hi): how many,
/// their mean P, in how many the challenger's logged accuracy was the higher, and in how many
/// the two tied.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HitBand {
    pub lo: f64,
    pub hi: f64,
    pub decisions: usize,
    pub mean_p: f64,
    pub challenger_higher: usize,
    pub ties: usize,
}

/// The bands of P that [`HitBand`]s count in.
pub const HIT_BANDS: [f64; 7] = [0.0, 0.1, 0.5, 0.7, 0.9, 0.99, 1.0];

/// Whether P `p` falls in the band [lo, hi) (the last band, `last`, also holds hi itself).
fn in_band(p: f64, lo: f64, hi: f64, last: bool) -> bool {
    p >= lo && (p < hi || (last && p <= hi))
}

/// Counts decisions (stated P, the challenger's logged accuracy minus the default's) into
/// [`HIT_BANDS`]; P = 1 falls in the last band.
pub fn hit_bands(d: &[Decided]) -> Vec<HitBand> {
    HIT_BANDS
        .windows(2)
        .enumerate()
        .map(|(i, w)| {
            let last = i == HIT_BANDS.len() - 2;
            let inside: Vec<&Decided> = d.iter().filter(|(p, _)| in_band(*p, w[0], w[1], last)).collect();
            HitBand {
                lo: w[0],
                hi: w[1],
                decisions: inside.len(),
                mean_p: inside.iter().map(|x| x.0).sum::<f64>() / inside.len().max(1) as f64,
                challenger_higher: inside.iter().filter(|x| x.1 > 1e-12).count(),
                ties: inside.iter().filter(|x| x.1.abs() <= 1e-12).count(),
            }
        })
        .collect()
}

/// The band of `bands` that P `p` falls in.
pub fn hit_band(bands: &[HitBand], p: f64) -> Option<&HitBand> {
    let n = bands.len();
    bands.iter().enumerate().find(|(i, b)| in_band(p, b.lo, b.hi, *i == n - 1)).map(|x| x.1)
}

/// The thresholds on P(the anchored pick beats the standard recipe) that `meta fit` chooses
/// among ([`choose_standard_threshold`]).
pub const STANDARD_THRESHOLDS: [f64; 7] = [0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99];

/// Fewest held-out standard-default decisions a threshold is chosen on.
pub const MIN_STANDARD_DECISIONS: usize = 20;

/// The threshold on the standard default's P chosen on held-out decisions `d` (stated P, the
/// pick's logged accuracy minus the recipe's; a decision below the threshold keeps the recipe
/// and gains 0) by the one-standard-error rule: the highest threshold (the fewest departures
/// from the default) whose mean accuracy gain is within one standard error of the best mean
/// gain. On a few dozen decisions the gain curve is flat within its noise, and the rule keeps
/// the choice from chasing that noise. Returns it with the mean gain at every threshold; None
/// with fewer than [`MIN_STANDARD_DECISIONS`] decisions.
pub fn choose_standard_threshold(d: &[Decided]) -> Option<(f64, Vec<(f64, f64)>)> {
    if d.len() < MIN_STANDARD_DECISIONS {
        return None;
    }
    let n = d.len() as f64;
    let taken = |t: f64| d.iter().map(move |x| if x.0 >= t { x.1 } else { 0.0 });
    let gains: Vec<(f64, f64)> = STANDARD_THRESHOLDS.iter().map(|&t| (t, taken(t).sum::<f64>() / n)).collect();
    let best = gains.iter().fold(gains[0], |b, &g| if g.1 >= b.1 - 1e-12 { g } else { b });
    let se = (taken(best.0).map(|g| (g - best.1).powi(2)).sum::<f64>() / (n - 1.0)).sqrt() / n.sqrt();
    let chosen = gains.iter().rev().find(|g| g.1 >= best.1 - se - 1e-12).map_or(best.0, |g| g.0);
    Some((chosen, gains))
}

/// One held-out decision: (stated P(challenger beats the default), the challenger's logged
/// accuracy minus the default's).
pub type Decided = (f64, f64);

/// The anchor `recommend` would keep on a held-out task (cells `tc`, the ranking GP's means
/// `m`): the probe-CV anchor, read by the classifier the GP ranks highest on its features.
fn held_out_anchor(tc: &[&Cell], m: &[f64]) -> Option<usize> {
    let items: Vec<(&RecipeSummary, &[Option<f64>])> = tc.iter().map(|c| (&c.recipe, c.task.as_slice())).collect();
    let a0 = transferability_anchor(&items, ANCHOR_SCORE)?;
    let keyed: Vec<(&str, &RecipeSummary)> = tc.iter().map(|c| (c.backbone.as_str(), &c.recipe)).collect();
    Some(anchor_classifier(&keyed, m, a0))
}

/// The two decisions `recommend` states a P for, on one held-out task (cells `tc`, a GP's joint
/// posterior `m`, `cov` with the override's calibration applied, observed `y` on its scale), as
/// the advisor takes them: the anchor (the probe-CV anchor read by the classifier the GP ranks
/// highest) against its best-ranked eligible challenger; and, where the standard ImageNet recipe
/// is logged (native input size `native`) and the anchored pick is another configuration, that
/// pick against the recipe. Each as (P(challenger beats the default), the challenger's logged
/// accuracy minus the default's; `y` is on the GP's scale `warp`).
fn held_out_decisions(
    tc: &[&Cell],
    m: &[f64],
    cov: &nalgebra::DMatrix<f64>,
    y: &[f64],
    native: Option<usize>,
    warp: Warp,
) -> (Option<Decided>, Option<Decided>) {
    let gain = |i: usize, j: usize| warp.inv(y[i]) - warp.inv(y[j]);
    let Some(a) = held_out_anchor(tc, m) else {
        return (None, None);
    };
    let eligible = |i: usize| may_override_anchor(&tc[i].recipe);
    let over = best_challenger(m, a, &eligible).map(|j| (prob_greater(m, cov, j, a), gain(j, a)));
    let first = anchored_pick_among(m, cov, a, ANCHOR_SWITCH_PROBABILITY, &eligible).0;
    let std =
        native.and_then(|n| eval::standard_recipe(tc, n)).filter(|&s| s != first).map(|s| (prob_greater(m, cov, first, s), gain(first, s)));
    (over, std)
}

/// Standard normal CDF (Abramowitz & Stegun 26.2.17, |error| < 7.5e-8).
pub fn normal_cdf(z: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.2316419 * z.abs());
    let poly = t * (0.319381530 + t * (-0.356563782 + t * (1.781477937 + t * (-1.821255978 + t * 1.330274429))));
    let tail = (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt() * poly;
    if z >= 0.0 {
        1.0 - tail
    } else {
        tail
    }
}

/// Index in TASK_FEATURES of the LogME at a probe's depth (0 = first body group, 1 = last):
/// logme_first, logme_mid or logme_last.
pub fn logme_index(probe_depth: Option<f64>) -> usize {
    5 + depth_bucket(probe_depth.unwrap_or(1.0))
}

/// The index in [`TASK_FEATURES`] of the nearest-centroid probe accuracy at a probe depth.
pub fn ncprobe_index(probe_depth: Option<f64>) -> usize {
    8 + depth_bucket(probe_depth.unwrap_or(1.0))
}

/// The LogME of a linear-probe candidate at the depth it probes (None for other strategies, for
/// a probe that pretrains first, whose features are not the ones LogME scored, or when LogME is
/// missing): what "LogME cut layer + probe" ranks by and the advisor anchors on.
pub fn probe_logme(r: &RecipeSummary, task: &[Option<f64>]) -> Option<f64> {
    if r.strategy == Strategy::LinearProbe && !r.pretrain {
        task[logme_index(r.probe_depth)]
    } else {
        None
    }
}

/// The cross-validated nearest-centroid accuracy of a linear-probe candidate's features at the
/// depth it probes (None for other strategies, or where the task has too few images a class for
/// cross-validation, or for a probe that pretrains first): a direct, cheap estimate of how well a
/// probe on those features classifies this task.
pub fn probe_cv(r: &RecipeSummary, task: &[Option<f64>]) -> Option<f64> {
    if r.strategy == Strategy::LinearProbe && !r.pretrain {
        task[ncprobe_index(r.probe_depth)]
    } else {
        None
    }
}

/// What ranks the linear probes when the advisor picks its transferability anchor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnchorScore {
    /// LogME at the probed depth (You et al. 2021).
    LogMe,
    /// The probe's cross-validated nearest-centroid accuracy ([`probe_cv`]), ties broken by
    /// LogME; LogME alone where any probe lacks it (one image a class).
    ProbeCv,
}

/// The anchor score the shipped advisor uses (`recommend`, `auto`, and the row of `meta eval`
/// that [`eval::shipped_method`] names). The probe's CV accuracy: over the logged tasks whose
/// probes all have one, the probe it ranks first is 6.5 points from the task's best logged
/// recipe on the tasks with ImageNet backbones (106 tasks; LogME's pick: 8.8) and 3.6 on the
/// others (137; LogME: 3.7). Neither score is fitted, so this compares them on every logged
/// task; `meta eval` reports both advisors.
pub const ANCHOR_SCORE: AnchorScore = AnchorScore::ProbeCv;

/// The linear probes among candidates given as (recipe, task features under the candidate's
/// backbone) with LogME, best anchor score first, as indices into `cands`; among equal scores
/// the later candidate comes first. Whether CV accuracy can rank is decided once, on all the
/// probes.
pub fn anchor_ranking(cands: &[(&RecipeSummary, &[Option<f64>])], score: AnchorScore) -> Vec<usize> {
    let mut probes: Vec<(usize, f64, Option<f64>)> =
        cands.iter().enumerate().filter_map(|(i, (r, t))| probe_logme(r, t).map(|l| (i, l, probe_cv(r, t)))).collect();
    let by_cv = score == AnchorScore::ProbeCv && probes.iter().all(|p| p.2.is_some());
    // ascending and stable, then reversed: the best first, and the last of equals first
    probes.sort_by(|a, b| {
        let cv = if by_cv { a.2.unwrap_or(0.0).total_cmp(&b.2.unwrap_or(0.0)) } else { std::cmp::Ordering::Equal };
        cv.then(a.1.total_cmp(&b.1))
    });
    probes.iter().rev().map(|p| p.0).collect()
}

/// The transferability anchor: the first of [`anchor_ranking`], or None when no candidate is a
/// probe with LogME.
pub fn transferability_anchor(cands: &[(&RecipeSummary, &[Option<f64>])], score: AnchorScore) -> Option<usize> {
    anchor_ranking(cands, score).first().copied()
}

/// The classifier the anchor's features are read with: among the probes on the same features
/// as candidate `anchor` (same backbone key and probe depth, no pretraining), the one with the
/// highest ranking-GP mean `mean` (ties: the anchor). The anchor's CV accuracy ranks feature
/// sets, not classifiers; whether a linear SVM, a softmax or a nearest-centroid classifier reads
/// those features better depends on shots and domain, which only the past tasks inform.
/// `cands`: (backbone key, recipe) per candidate.
pub fn anchor_classifier(cands: &[(&str, &RecipeSummary)], mean: &[f64], anchor: usize) -> usize {
    let (b, r) = cands[anchor];
    let same = |i: usize| {
        let (bi, ri) = cands[i];
        bi == b && ri.strategy != Strategy::Finetune && !ri.pretrain && ri.probe_depth == r.probe_depth
    };
    (0..cands.len()).filter(|&i| i != anchor && same(i)).fold(anchor, |best, i| if mean[i] > mean[best] { i } else { best })
}

/// The first pick when the standard ImageNet recipe (candidate `standard`) is the default: the
/// anchored pick `first` replaces it only when it beats it with posterior probability >= `p`
/// ([`MetaModel::standard_threshold`]; [`ANCHOR_SWITCH_PROBABILITY`] before session 27) under
/// (`mean`, `cov`), the override's calibrated joint posterior. Session 25's `meta eval`, on the
/// 60 held-out tasks with the recipe logged: mean
/// gap to the best logged recipe 0.073, against 0.091 for the anchored pick alone and 0.128 for
/// the recipe always (regret@1 -0.032 [-0.067, +0.009] against the anchored pick alone).
pub fn standard_default_pick(mean: &[f64], cov: &nalgebra::DMatrix<f64>, first: usize, standard: usize, p: f64) -> usize {
    if first == standard || prob_greater(mean, cov, first, standard) >= p {
        first
    } else {
        standard
    }
}

/// A recipe's kind as far as the logged runs inform it: strategy, probe depth, how many groups
/// are frozen and re-initialised, and the pretraining method. The learning rate, layer decay,
/// L2-SP strength and epochs vary continuously inside a kind, and the GP interpolates them; a
/// kind no run has logged on a backbone is an extrapolation ([`MetaModel::support`]).
pub fn recipe_kind(s: &RecipeSummary) -> (Strategy, Option<i64>, usize, usize, Option<crate::pretrain::Method>) {
    let depth = s.probe_depth.map(|d| (d * 1000.0).round() as i64);
    let (f, r) = if s.strategy == Strategy::Finetune { (s.n_freeze, s.n_reinit) } else { (0, 0) };
    (s.strategy, depth, f, r, if s.pretrain { s.pretrain_method } else { None })
}

/// Probability that the advisor must reach before it overrides the transferability anchor.
pub const ANCHOR_SWITCH_PROBABILITY: f64 = 0.9;

/// Which candidates may override the transferability anchor: fine-tuning, the centroid probe,
/// and any recipe that pretrains first. The anchor's cross-validated accuracy ranks feature
/// sets; whether a nearest-mean classifier or a linear SVM reads them better is a question
/// of shots and domain that only the past tasks answer, so the centroid probe is weighed by the
/// GP like a fine-tune. Among the plain linear
/// probes the anchor's cross-validated accuracy is direct evidence from this task's images, which
/// the GP's prediction for another probe is not. In `meta eval` (279 held-out tasks) this rule
/// lowered regret at every budget against letting any candidate override (regret@1 0.214 vs
/// 0.221, regret@3 0.101 vs 0.105). A probe that pretrains first is not one of them: the
/// anchor's evidence is about the backbone's features before pretraining, not after.
pub fn may_override_anchor(r: &RecipeSummary) -> bool {
    matches!(r.strategy, crate::recipe::Strategy::Finetune | crate::recipe::Strategy::CentroidProbe) || r.pretrain
}

/// The LogME-anchored first pick: keep `anchor` (the linear probe at the backbone and depth with
/// the highest LogME on this task) unless the candidate with the highest ranking-GP mean beats it
/// with posterior probability ≥ `p` under the GP's joint posterior (so the correlation between the
/// two predictions counts). Returns the first pick and P(best-mean candidate > anchor).
pub fn anchored_pick(mean: &[f64], cov: &nalgebra::DMatrix<f64>, anchor: usize, p: f64) -> (usize, f64) {
    anchored_pick_among(mean, cov, anchor, p, &|_| true)
}

/// [`anchored_pick`] where only the candidates `eligible` admits may override the anchor.
pub fn anchored_pick_among(
    mean: &[f64],
    cov: &nalgebra::DMatrix<f64>,
    anchor: usize,
    p: f64,
    eligible: &dyn Fn(usize) -> bool,
) -> (usize, f64) {
    let Some(j) = (0..mean.len()).filter(|&i| i == anchor || eligible(i)).max_by(|&a, &b| mean[a].total_cmp(&mean[b])) else {
        return (anchor, 0.5);
    };
    if j == anchor {
        return (anchor, 0.5);
    }
    let pr = prob_greater(mean, cov, j, anchor);
    (if pr >= p { j } else { anchor }, pr)
}

/// Var(f_a − f_b) under a joint Gaussian covariance `cov` (unfloored: rounding can make it
/// slightly negative).
fn diff_var(cov: &nalgebra::DMatrix<f64>, a: usize, b: usize) -> f64 {
    cov[(a, a)] + cov[(b, b)] - 2.0 * cov[(a, b)]
}

/// The best-ranked candidate other than `anchor` that `eligible` admits as a challenger to it
/// (highest `mean`), if any.
pub fn best_challenger(mean: &[f64], anchor: usize, eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
    (0..mean.len()).filter(|&i| i != anchor && eligible(i)).max_by(|&p, &q| mean[p].total_cmp(&mean[q]))
}

/// P(f_a > f_b) under a joint Gaussian posterior (`mean`, `cov`): the correlation between the
/// two counts.
pub fn prob_greater(mean: &[f64], cov: &nalgebra::DMatrix<f64>, a: usize, b: usize) -> f64 {
    let var = diff_var(cov, a, b).max(1e-12);
    normal_cdf((mean[a] - mean[b]) / var.sqrt())
}

/// Mean over tasks of the normalised regret (best − chosen) / (best − worst) of picking the
/// cell with the highest score; tasks whose cells all tie are skipped.
pub fn regret_at_1(cells: &[&Cell], score: &[f64]) -> (f64, usize) {
    let mut by: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, c) in cells.iter().enumerate() {
        by.entry(c.task_id.as_str()).or_default().push(i);
    }
    let (mut sum, mut n) = (0.0, 0usize);
    for idx in by.values() {
        let best = idx.iter().map(|&i| cells[i].acc).fold(f64::NEG_INFINITY, f64::max);
        let worst = idx.iter().map(|&i| cells[i].acc).fold(f64::INFINITY, f64::min);
        if best - worst < 1e-12 {
            continue;
        }
        let pick = *idx.iter().max_by(|&&a, &&b| score[a].total_cmp(&score[b])).expect("non-empty");
        sum += (best - cells[pick].acc) / (best - worst);
        n += 1;
    }
    (if n > 0 { sum / n as f64 } else { 0.0 }, n)
}

/// Which learner states predictions: the Gaussian process or the k-nearest-task model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Learner {
    #[default]
    Gp,
    Knn,
}

impl Learner {
    pub fn as_str(&self) -> &'static str {
        match self {
            Learner::Gp => "gp",
            Learner::Knn => "knn",
        }
    }
}

impl std::fmt::Display for Learner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which GP orders candidates: the absolute one, or the within-task one (`fit_gp_rel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ranker {
    Gp,
    GpRel,
}

fn default_ranker() -> Ranker {
    Ranker::Gp
}

fn one() -> f64 {
    1.0
}

/// Standardised residuals of within-task differences: for every pair of a held-out task's
/// cells, |(y_i − y_j) − (m_i − m_j)| over the sd of that difference under the joint posterior
/// (latent covariance plus both cells' noise), with weight 1/(the task's pairs) so that each
/// task counts once. `joint`: per task, (latent means, latent covariance, noise variance,
/// observed values), all on the GP's scale.
type TaskPosterior = (Vec<f64>, nalgebra::DMatrix<f64>, f64, Vec<f64>);

fn pair_residuals(joint: &[TaskPosterior]) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    for (m, c, sn2, y) in joint {
        let n = m.len();
        if n < 2 {
            continue;
        }
        let w = 2.0 / (n * (n - 1)) as f64;
        for i in 0..n {
            for j in 0..i {
                let v = diff_var(c, i, j).max(0.0) + 2.0 * sn2;
                out.push((((y[i] - y[j]) - (m[i] - m[j])).abs() / v.sqrt().max(1e-6), w));
            }
        }
    }
    out
}

/// The factor k with a weighted 80% of the standardised pair residuals inside Z80 · k: the
/// calibration of the posterior's differences. Because the 80% two-sided point of a normal is its
/// 90% one-sided point, it calibrates exactly the override's test P(a beats b) ≥ 0.9.
fn pair_sd_scale(mut r: Vec<(f64, f64)>) -> Option<f64> {
    let total: f64 = r.iter().map(|x| x.1).sum();
    if r.is_empty() || total <= 0.0 {
        return None;
    }
    r.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut acc = 0.0;
    for (z, w) in &r {
        acc += w;
        if acc >= 0.8 * total {
            return Some((z / Z80).max(0.25));
        }
    }
    r.last().map(|x| (x.0 / Z80).max(0.25))
}

/// The override's question on one held-out task (cells `tc`, a GP's joint posterior `m`, `c`,
/// noise `sn2`, observed `y` on its scale): the anchor as `recommend` forms it (the probe-CV
/// anchor read by the classifier the GP ranks highest), its best-ranked eligible challenger,
/// and, when the challenger's mean is the higher, the standardised residual of their
/// difference, signed (negative: the challenger did worse against the anchor than predicted).
fn decision_residual(tc: &[&Cell], m: &[f64], c: &nalgebra::DMatrix<f64>, sn2: f64, y: &[f64]) -> Option<f64> {
    let a = held_out_anchor(tc, m)?;
    let j = best_challenger(m, a, &|i| may_override_anchor(&tc[i].recipe))?;
    if m[j] <= m[a] {
        return None;
    }
    let v = diff_var(c, j, a).max(0.0) + 2.0 * sn2;
    Some(((y[j] - y[a]) - (m[j] - m[a])) / v.sqrt().max(1e-6))
}

/// The factor k under which the override's one-sided 90% bound holds on held-out decisions:
/// −(the 10th percentile of the signed residuals) = Z80 · k (Z80 is the normal's 90% one-sided
/// point). A challenger picked as the best of many is biased upwards (the winner's curse), which
/// shows here and not in unselected pairs. None with fewer than 20 decisions.
fn decision_sd_scale(mut z: Vec<f64>) -> Option<f64> {
    if z.len() < 20 {
        return None;
    }
    z.sort_by(|a, b| a.total_cmp(b));
    let q10 = z[((z.len() as f64 * 0.1) as usize).min(z.len() - 1)];
    Some((-q10 / Z80).max(0.25))
}

/// The factor k with P(|y − m| ≤ Z80 · k · sd) = 0.8 on held-out predictions.
fn sd_scale(pred: &[(f64, f64)], y: &[f64]) -> f64 {
    let mut r: Vec<f64> = pred.iter().zip(y).map(|((m, v), a)| (a - m).abs() / v.sqrt().max(1e-6)).collect();
    if r.is_empty() {
        return 1.0;
    }
    r.sort_by(|a, b| a.total_cmp(b));
    (r[((r.len() as f64 * 0.8) as usize).min(r.len() - 1)] / Z80).max(0.25)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetaModel {
    pub schema_version: u32,
    pub meta_schema_version: i64,
    /// sha256 over the runs it was fitted on (run ids and accuracies).
    pub meta_hash: String,
    pub n_runs: usize,
    pub n_tasks: usize,
    pub families: Vec<String>,
    pub created_at: String,
    /// `gp` or `knn`: the learner used for predictions.
    pub learner: Learner,
    pub encoder: Encoder,
    pub gp: Gp,
    /// The within-task GP (`fit_gp_rel`); when `ranker` is `gp_rel` it orders candidates and
    /// `gp` states their accuracy and interval.
    #[serde(default)]
    pub gp_rel: Option<Gp>,
    /// Which GP orders candidates: `gp` or `gp_rel`, chosen by held-out regret (`cv`).
    #[serde(default = "default_ranker")]
    pub ranker: Ranker,
    pub knn: Knn,
    pub portfolio: Vec<PortfolioEntry>,
    pub cv: CvReport,
    /// Encoded-task distance to the nearest past task above which a task counts as far from
    /// everything seen (the 95th percentile of past tasks' nearest-neighbour distances).
    pub ood_distance: f64,
    /// Past tasks (id, family, shots, classes, shift, encoded features per backbone, best config, its accuracy).
    pub tasks: Vec<PastTask>,
    /// Variance of the past tasks' mean accuracies: the prior variance of a new task's level,
    /// which the within-task GP leaves out and `auto`'s sequential picks learn from the first run.
    #[serde(default)]
    pub task_mean_var: f64,
    /// What a recipe costs on the machines that logged it (see [`CostModel`]).
    #[serde(default)]
    pub cost: CostModel,
    /// The scale both GPs model accuracy on; `predict` answers on it (see [`MetaModel::scale`]).
    #[serde(default)]
    pub warp: Warp,
}

/// Training seconds per training image, learned from the logged runs' `train_seconds`: the
/// median per configuration (backbone key and recipe name), and per backbone key the median
/// for probes (seconds per image) and for fine-tuning (seconds per image and epoch), which
/// price a configuration never logged. Seconds are those of the machines that ran the sweep.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CostModel {
    pub per_config: BTreeMap<String, f64>,
    pub probe_per_image: BTreeMap<String, f64>,
    pub finetune_per_image_epoch: BTreeMap<String, f64>,
}

impl CostModel {
    pub fn fit(obs: &[Obs]) -> CostModel {
        let mut per_config: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let mut probe: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let mut ft: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for o in obs.iter().filter(|o| o.train_seconds.is_finite() && o.train_seconds > 0.0 && o.n_train > 0) {
            let per_image = o.train_seconds / o.n_train as f64;
            per_config.entry(o.config()).or_default().push(per_image);
            if o.recipe.strategy == crate::recipe::Strategy::Finetune {
                ft.entry(o.backbone.clone()).or_default().push(per_image / o.recipe.epochs.max(1) as f64);
            } else {
                probe.entry(o.backbone.clone()).or_default().push(per_image);
            }
        }
        let med = |m: BTreeMap<String, Vec<f64>>| m.into_iter().map(|(k, v)| (k, crate::util::median(v))).collect();
        CostModel { per_config: med(per_config), probe_per_image: med(probe), finetune_per_image_epoch: med(ft) }
    }

    /// Predicted training seconds of a candidate on `n_train` images (None: nothing logged
    /// for its backbone).
    pub fn seconds(&self, backbone: &str, config: &str, r: &RecipeSummary, n_train: usize) -> Option<f64> {
        let n = n_train.max(1) as f64;
        if let Some(rate) = self.per_config.get(config) {
            return Some(rate * n);
        }
        if r.strategy == crate::recipe::Strategy::Finetune {
            self.finetune_per_image_epoch.get(backbone).map(|rate| rate * n * r.epochs.max(1) as f64)
        } else {
            self.probe_per_image.get(backbone).map(|rate| rate * n)
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PastTask {
    pub task_id: String,
    pub family: String,
    pub shots: f64,
    pub n_classes: usize,
    pub shift: String,
    pub backbone: String,
    pub features: Vec<f64>,
    pub best_config: String,
    pub best_acc: f64,
}

/// The GP that orders candidates: the within-task GP where its held-out regret is the lower.
fn ranker_of(cv: &CvReport) -> Ranker {
    if cv.gp_rel_regret1 < cv.gp_regret1 {
        Ranker::GpRel
    } else {
        Ranker::Gp
    }
}

/// Family-grouped cross-validation folds of `meta fit` (and of each held-out refit in `meta
/// eval`): they choose the learner and ranker and calibrate the stated interval.
pub const CV_FOLDS: usize = 4;

/// Cells the shipped GPs are conditioned on after their hyperparameters are fitted on a smaller
/// subsample (`FitOptions::condition_points`).
pub const CONDITION_POINTS: usize = 4000;

#[derive(Debug, Clone)]
pub struct FitOptions {
    /// Cells the GP's hyperparameters are fitted on (a seeded subsample).
    pub max_gp_points: usize,
    /// Cells the GP is then conditioned on with those hyperparameters fixed (a seeded subsample
    /// that contains the first; no more than `max_gp_points` means the same cells).
    pub condition_points: usize,
    pub gp_iters: u64,
    pub knn_k: usize,
    pub seed: u64,
    pub cv_folds: usize,
    /// The scale both GPs model accuracy on ([`Warp`]).
    pub warp: Warp,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            max_gp_points: 600,
            condition_points: CONDITION_POINTS,
            gp_iters: 40,
            knn_k: 7,
            seed: 0,
            cv_folds: CV_FOLDS,
            warp: Warp::Arcsine,
        }
    }
}

/// GP on a seeded subsample of `max_gp_points` cells (`sample_order`), then conditioned on
/// `condition_points` cells (the same order, truncated later).
pub fn fit_gp(cells: &[Cell], enc: &Encoder, o: &FitOptions) -> Result<Gp> {
    fit_gp_on(cells, enc, o, |i| o.warp.fwd(cells[i].acc))
}

/// Fit the hyperparameters on the first `max_gp_points` cells of the seeded order, then
/// condition on its first `condition_points` (the exact GP posterior with those hyperparameters:
/// marginal-likelihood fitting costs O(n^3) per L-BFGS step, conditioning one Cholesky factor).
fn fit_gp_on(cells: &[Cell], enc: &Encoder, o: &FitOptions, target: impl Fn(usize) -> f64) -> Result<Gp> {
    let order = sample_order(cells, o.seed);
    let (idx, x) = gp_sample(cells, enc, &order, o.max_gp_points);
    let y: Vec<f64> = idx.iter().map(|&i| target(i)).collect();
    let mut gp = Gp::fit(x, y, o.gp_iters)?;
    if o.condition_points > o.max_gp_points && cells.len() > o.max_gp_points {
        let (idx, x) = gp_sample(cells, enc, &order, o.condition_points);
        let y: Vec<f64> = idx.iter().map(|&i| target(i)).collect();
        gp.condition(x, y)?;
    }
    Ok(gp)
}

/// The order in which cells enter the GPs' subsamples: by a seeded hash of each cell's identity
/// (task, backbone, recipe), smallest first. The first `n` are a bottom-n sample, so a smaller
/// subsample is contained in a larger one, and appending runs to the meta-dataset displaces at
/// most as many sampled cells as it adds. (Until session 23 this was a seeded shuffle of the cell
/// list, which re-drew the whole subsample whenever one cell was added: 30 new runs, 0.2% of
/// the meta-dataset, changed the first pick's regret on 75 of the 309 tasks they did not touch.)
fn sample_order(cells: &[Cell], seed: u64) -> Vec<usize> {
    use sha2::{Digest, Sha256};
    let key = |c: &Cell| {
        let mut h = Sha256::new();
        h.update(seed.to_le_bytes());
        h.update(b"gp-subsample");
        for part in [&c.task_id, &c.backbone, &c.r_name] {
            h.update(part.as_bytes());
            h.update([0u8]);
        }
        let d = h.finalize();
        u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
    };
    let mut k: Vec<(u64, usize)> = cells.iter().enumerate().map(|(i, c)| (key(c), i)).collect();
    k.sort_unstable();
    k.into_iter().map(|(_, i)| i).collect()
}

/// The first `n` cells of `order` (in cell order) and their encoded inputs.
fn gp_sample(cells: &[Cell], enc: &Encoder, order: &[usize], n: usize) -> (Vec<usize>, Vec<Vec<f64>>) {
    let mut idx: Vec<usize> = order.iter().copied().take(n).collect();
    idx.sort();
    let x = idx.iter().map(|&i| enc.encode(&cells[i].task, &cells[i].recipe, &cells[i].backbone)).collect();
    (idx, x)
}

/// The within-task GP: the same inputs and subsample as `fit_gp`, but the target is a cell's
/// accuracy minus its task's mean accuracy over every logged configuration (all backbones). Task
/// difficulty, which dominates raw accuracy and is the same for every candidate of a task, is
/// removed, so the kernel's length scales are spent on how recipes differ within a task (the
/// quantity a choice depends on; ZAP's pairwise loss targets the same thing).
pub fn fit_gp_rel(cells: &[Cell], enc: &Encoder, o: &FitOptions) -> Result<Gp> {
    let tm = task_means(cells, o.warp);
    fit_gp_on(cells, enc, o, |i| o.warp.fwd(cells[i].acc) - tm[cells[i].task_id.as_str()])
}

/// Each task's mean accuracy, on the scale `warp`, over its logged configurations (all backbones).
fn task_means(cells: &[Cell], warp: Warp) -> BTreeMap<&str, f64> {
    let mut tm: BTreeMap<&str, (f64, usize)> = BTreeMap::new();
    for c in cells {
        let e = tm.entry(c.task_id.as_str()).or_insert((0.0, 0));
        e.0 += warp.fwd(c.acc);
        e.1 += 1;
    }
    tm.into_iter().map(|(t, (s, n))| (t, s / n as f64)).collect()
}

/// One GP per configuration (backbone::recipe) over the task's encoded meta-features, each fitted
/// on every past task that configuration ran on (no subsampling: ~100-150 tasks per model), the
/// multi-output view of the meta-learning problem: a configuration's accuracy as a function of the
/// task. Predicts only logged configurations; `meta eval` fits it as an ablation (it is not part
/// of the shipped meta-learner, which must also score recipes never logged).
#[derive(Debug, Clone, Default)]
pub struct PerConfig {
    pub gps: BTreeMap<String, Gp>,
}

pub const PER_CONFIG_MIN_TASKS: usize = 8;

impl PerConfig {
    pub fn fit(cells: &[Cell], enc: &Encoder, iters: u64) -> Result<PerConfig> {
        let mut by: BTreeMap<String, (Vec<Vec<f64>>, Vec<f64>)> = BTreeMap::new();
        for c in cells {
            let e = by.entry(c.config()).or_default();
            e.0.push(enc.task(&c.task));
            e.1.push(c.acc);
        }
        let mut gps = BTreeMap::new();
        for (k, (x, y)) in by {
            if y.len() >= PER_CONFIG_MIN_TASKS {
                gps.insert(k, Gp::fit(x, y, iters)?);
            }
        }
        Ok(PerConfig { gps })
    }
    /// (mean, variance of an observation) of `config` on a task with encoded features `t`.
    pub fn predict(&self, config: &str, t: &[f64]) -> Option<(f64, f64)> {
        self.gps.get(config).map(|g| {
            let (m, v) = g.predict(&[t.to_vec()]);
            (m[0], v[0])
        })
    }
}

/// RMSE, in accuracy, of predictions (mean, variance) made on the scale `warp`, their
/// variances multiplied by `s2` (the calibration factor squared) as the advisor states them; and
/// the fraction of accuracies inside the uncalibrated 80% interval.
fn rmse_cov(pred: &[(f64, f64)], y: &[f64], warp: Warp, s2: f64) -> (f64, f64) {
    let n = y.len().max(1) as f64;
    let rmse =
        (pred.iter().zip(y).map(|(&(m, v), a)| (warp.state(m, (v * s2).max(0.0).sqrt(), Z80).0 - a).powi(2)).sum::<f64>() / n).sqrt();
    let inside = |(&(m, v), &a): (&(f64, f64), &f64)| warp::holds(warp.interval(m, v.sqrt(), Z80), a);
    let cov = pred.iter().zip(y).filter(|&x| inside(x)).count() as f64 / n;
    (rmse, cov)
}

/// Family-grouped folds: families dealt round-robin in sorted order.
pub fn family_folds(families: &[String], k: usize) -> Vec<Vec<String>> {
    let k = k.clamp(1, families.len().max(1));
    let mut f = vec![Vec::new(); k];
    for (i, fam) in families.iter().enumerate() {
        f[i % k].push(fam.clone());
    }
    f
}

pub fn fit(obs: &[Obs], o: &FitOptions, log: &dyn Fn(&str)) -> Result<MetaModel> {
    let enc = Encoder::fit(obs);
    let all = cells(obs);
    let families: Vec<String> = obs.iter().map(|c| c.family.clone()).collect::<BTreeSet<_>>().into_iter().collect();
    // held-out error of both learners, folds grouped by family
    let mut cv = CvReport { n_cells: all.len(), ..Default::default() };
    if families.len() >= 2 {
        cv.folds = family_folds(&families, o.cv_folds);
        let (mut pg, mut pk, mut ys) = (Vec::new(), Vec::new(), Vec::new());
        let (mut reg_abs, mut reg_rel, mut reg_knn, mut reg_n) = (0.0, 0.0, 0.0, 0usize);
        let (mut joint_abs, mut joint_rel) = (Vec::new(), Vec::new());
        // each held-out task's cells, in the order of its joint posteriors
        let mut task_cells: Vec<Vec<&Cell>> = Vec::new();
        let (mut dec_abs, mut dec_rel) = (Vec::new(), Vec::new());
        // per held-out task: its probe gap under its fold's GP, and its cells' scale group,
        // (mean, variance) under the absolute GP and observation
        let mut gaps: Vec<GapTask> = Vec::new();
        for (fi, held) in cv.folds.iter().enumerate() {
            let train: Vec<Cell> = all.iter().filter(|c| !held.contains(&c.family)).cloned().collect();
            let test: Vec<&Cell> = all.iter().filter(|c| held.contains(&c.family)).collect();
            let gp = fit_gp(&train, &enc, o)?;
            let knn = Knn::fit(&train, &enc, o.knn_k);
            let xs: Vec<Vec<f64>> = test.iter().map(|c| enc.encode(&c.task, &c.recipe, &c.backbone)).collect();
            let (m, v) = gp.predict(&xs);
            let gp_rel = fit_gp_rel(&train, &enc, o)?;
            let (mr, _) = gp_rel.predict(&xs);
            // both GPs' joint posteriors over each held-out task's cells, for the pairs
            let mut by_task: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
            for (i, c) in test.iter().enumerate() {
                by_task.entry(c.task_id.as_str()).or_default().push(i);
            }
            let probes = centroid_probes(train.iter().map(|c| (c.backbone.as_str(), &c.recipe)));
            for idx in by_task.values() {
                let feats = features_by_backbone(idx.iter().map(|&i| (test[i].backbone.as_str(), test[i].task.as_slice())));
                gaps.push((
                    probe_gap(&gp, &enc, o.warp, &probes, &feats).map(|g| g.0),
                    idx.iter().map(|&i| (scale_group(&test[i].backbone, &test[i].recipe), (m[i], v[i]), o.warp.fwd(test[i].acc))).collect(),
                ));
                let xt: Vec<Vec<f64>> = idx.iter().map(|&i| xs[i].clone()).collect();
                let yt: Vec<f64> = idx.iter().map(|&i| o.warp.fwd(test[i].acc)).collect();
                let tc: Vec<&Cell> = idx.iter().map(|&i| test[i]).collect();
                let (m, c, n) = gp.predict_joint(&xt);
                dec_abs.extend(decision_residual(&tc, &m, &c, n, &yt));
                joint_abs.push((m, c, n, yt.clone()));
                let (m, c, n) = gp_rel.predict_joint(&xt);
                dec_rel.extend(decision_residual(&tc, &m, &c, n, &yt));
                joint_rel.push((m, c, n, yt));
                task_cells.push(tc);
            }
            let (ra, n) = regret_at_1(&test, &m);
            let (rr, _) = regret_at_1(&test, &mr);
            reg_abs += ra * n as f64;
            reg_rel += rr * n as f64;
            reg_n += n;
            let mut mk = Vec::with_capacity(test.len());
            for (i, c) in test.iter().enumerate() {
                let kp = knn.predict(&c.config(), &enc.task(&c.task)).unwrap_or((o.warp.inv(gp.params.mean), 0.05));
                pg.push((m[i], v[i]));
                pk.push(kp);
                mk.push(kp.0);
                ys.push(c.acc);
            }
            reg_knn += regret_at_1(&test, &mk).0 * n as f64;
            log(&format!("cv fold {}/{} (held out: {}): {} cells", fi + 1, cv.folds.len(), held.join(", "), test.len()));
        }
        // the GP's scale is calibrated where it models (its residuals on the warped scale)
        let yw: Vec<f64> = ys.iter().map(|&a| o.warp.fwd(a)).collect();
        cv.gp_sd_scale = sd_scale(&pg, &yw);
        cv.knn_sd_scale = sd_scale(&pk, &ys);
        (cv.gp_rmse, cv.gp_coverage80) = rmse_cov(&pg, &ys, o.warp, cv.gp_sd_scale.powi(2));
        (cv.knn_rmse, cv.knn_coverage80) = rmse_cov(&pk, &ys, Warp::Identity, 1.0);
        cv.gp_regret1 = reg_abs / reg_n.max(1) as f64;
        cv.gp_rel_regret1 = reg_rel / reg_n.max(1) as f64;
        cv.knn_regret1 = reg_knn / reg_n.max(1) as f64;
        cv.gp_pair_sd_scale = pair_sd_scale(pair_residuals(&joint_abs));
        cv.gp_rel_pair_sd_scale = pair_sd_scale(pair_residuals(&joint_rel));
        // what the stated P of the advisor's two decisions has meant on the held-out tasks, under
        // the ranking GP with the calibration the override reads
        let native = crate::backbones::card::resolve(eval::STANDARD_BACKBONE).ok().map(|m| m.card.input.height);
        let (joint, k) = match ranker_of(&cv) {
            Ranker::GpRel => (&joint_rel, cv.gp_rel_pair_sd_scale),
            Ranker::Gp => (&joint_abs, cv.gp_pair_sd_scale),
        };
        let k2 = k.unwrap_or(cv.gp_sd_scale).powi(2);
        let residuals: Vec<Vec<(String, f64, f64)>> = task_cells
            .iter()
            .zip(joint)
            .map(|(tc, (m, _, _, y))| tc.iter().zip(m).zip(y).map(|((c, &m), &y)| (c.config(), m, y)).collect())
            .collect();
        cv.config_offsets = config_offsets(&residuals);
        let standard_key = native
            .and_then(|n| task_cells.iter().flatten().find(|c| eval::is_standard_recipe(&c.backbone, &c.recipe, n)).map(|c| c.config()));
        if let Some(s) = standard_key.and_then(|k| cv.config_offsets.get(&k)) {
            log(&format!(
                "the standard recipe's held-out within-task offset (shrunk): {s:+.4} on the GP's scale, of {} configurations' offsets",
                cv.config_offsets.len()
            ));
        }
        let pairs: Vec<(f64, f64)> = gaps
            .iter()
            .filter_map(|(g, cs)| g.map(|g| (g, cs.iter().map(|(_, (m, _), y)| y - m).sum::<f64>() / cs.len() as f64)))
            .collect();
        cv.task_level = TaskLevel::fit(&pairs).map(|(alpha, beta, correlation, var_before, var_after)| {
            let (pred, y): Scored = gaps
                .iter()
                .filter_map(|(g, cs)| g.map(|g| (g, cs)))
                .flat_map(|(g, cs)| cs.iter().map(move |&(_, (m, v), y)| ((m + alpha + beta * g, v), y)))
                .unzip();
            TaskLevel { alpha, beta, n_tasks: pairs.len(), correlation, var_before, var_after, sd_scale: sd_scale(&pred, &y) }
        });
        match &cv.task_level {
            Some(t) => log(&format!(
                "the task's level against its probe gap, over {} held-out tasks: shift {:+.4} {:+.4} x gap (correlation {:.2}); variance of a task's mean residual {:.4} -> {:.4}; interval scale x{:.2} where shifted",
                t.n_tasks, t.alpha, t.beta, t.correlation, t.var_before, t.var_after, t.sd_scale
            )),
            None => log(&format!("the task's level against its probe gap: no shift ({} held-out tasks with a gap)", pairs.len())),
        }
        // per group: the cells' (mean, variance) as stated, and their observations
        let mut groups: BTreeMap<&str, Scored> = BTreeMap::new();
        for (gap, cs) in &gaps {
            let shift = cv.task_level.as_ref().zip(*gap).map(|(t, gap)| t.shift(gap)).unwrap_or(0.0);
            for (g, (m, v), y) in cs {
                let e = groups.entry(g.as_str()).or_default();
                e.0.push((m + shift, *v));
                e.1.push(*y);
            }
        }
        cv.stated_sd_scales = groups
            .into_iter()
            .filter(|(_, (p, _))| p.len() >= MIN_SCALE_GROUP_CELLS)
            .map(|(g, (p, y))| (g.to_string(), sd_scale(&p, &y)))
            .collect();
        log(&format!(
            "interval scale per strategy and backbone model (>= {MIN_SCALE_GROUP_CELLS} held-out cells): {}",
            cv.stated_sd_scales.iter().map(|(g, s)| format!("{g} x{s:.2}")).collect::<Vec<_>>().join(", ")
        ));
        let (mut over, mut std) = (Vec::new(), Vec::new());
        for (tc, (m, c, _, y)) in task_cells.iter().zip(joint) {
            let (d_over, d_std) = held_out_decisions(tc, m, &(c * k2), y, native, o.warp);
            over.extend(d_over);
            std.extend(d_std);
        }
        (cv.override_hits, cv.standard_hits) = (hit_bands(&over), hit_bands(&std));
        if let Some((t, gains)) = choose_standard_threshold(&std) {
            log(&format!(
                "the standard default's threshold on P: {t}, the highest within one standard error of the best mean held-out accuracy gain over the recipe (by threshold: {})",
                gains.iter().map(|(t, g)| format!("{t} {g:+.4}")).collect::<Vec<_>>().join(", ")
            ));
            (cv.standard_threshold, cv.standard_gain_by_threshold) = (Some(t), gains);
        }
        for (what, bands) in
            [("override of the anchor", &cv.override_hits), ("anchored pick against the standard recipe", &cv.standard_hits)]
        {
            log(&format!(
                "held-out {what}: {}",
                bands
                    .iter()
                    .filter(|b| b.decisions > 0)
                    .map(|b| format!(
                        "P [{:.2}, {:.2}) challenger higher {}/{} (ties {})",
                        b.lo, b.hi, b.challenger_higher, b.decisions, b.ties
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let n_dec = (dec_abs.len(), dec_rel.len());
        cv.gp_decision_sd_scale = decision_sd_scale(dec_abs);
        cv.gp_rel_decision_sd_scale = decision_sd_scale(dec_rel);
        log(&format!(
            "the override's own decisions (one-sided): interval scale absolute GP x{:.2} over {} tasks, within-task GP x{:.2} over {}",
            cv.gp_decision_sd_scale.unwrap_or(f64::NAN),
            n_dec.0,
            cv.gp_rel_decision_sd_scale.unwrap_or(f64::NAN),
            n_dec.1
        ));
        log(&format!(
            "within-task differences: interval scale absolute GP x{:.2}, within-task GP x{:.2} (marginal: x{:.2})",
            cv.gp_pair_sd_scale.unwrap_or(f64::NAN),
            cv.gp_rel_pair_sd_scale.unwrap_or(f64::NAN),
            cv.gp_sd_scale
        ));
        // the advisor's job is the pick: the learner whose ranking loses less on held-out
        // families (the GP by its better ranking of the two), RMSE breaking a tie. Choosing by
        // RMSE alone let a few appended runs flip the fit to kNN, whose pick is worse
        let gp_regret = cv.gp_regret1.min(cv.gp_rel_regret1);
        cv.chosen = match gp_regret.total_cmp(&cv.knn_regret1) {
            std::cmp::Ordering::Less => Learner::Gp,
            std::cmp::Ordering::Greater => Learner::Knn,
            std::cmp::Ordering::Equal => {
                if cv.gp_rmse <= cv.knn_rmse {
                    Learner::Gp
                } else {
                    Learner::Knn
                }
            }
        };
        log(&format!(
            "held-out regret of the top pick: absolute GP {:.3}, within-task GP {:.3}, kNN {:.3} over {reg_n} tasks",
            cv.gp_regret1, cv.gp_rel_regret1, cv.knn_regret1
        ));
        log(&format!(
            "held-out RMSE: gp {:.4} (80% coverage {:.2}), knn {:.4} (coverage {:.2}) -> {}; interval scale gp x{:.2}, knn x{:.2}",
            cv.gp_rmse, cv.gp_coverage80, cv.knn_rmse, cv.knn_coverage80, cv.chosen, cv.gp_sd_scale, cv.knn_sd_scale
        ));
    } else {
        cv.gp_sd_scale = 1.0;
        cv.knn_sd_scale = 1.0;
        cv.chosen = Learner::Gp;
        log("one family only: no held-out comparison; using the GP");
    }
    let gp = fit_gp(&all, &enc, o)?;
    let gp_rel = Some(fit_gp_rel(&all, &enc, o)?);
    let knn = Knn::fit(&all, &enc, o.knn_k);
    // the portfolio, and the past tasks with their best configuration
    let mut port: BTreeMap<String, (Vec<f64>, &Obs)> = BTreeMap::new();
    for ob in obs {
        port.entry(ob.config()).or_insert_with(|| (Vec::new(), ob));
    }
    for c in &all {
        if let Some(e) = port.get_mut(&c.config()) {
            e.0.push(c.acc);
        }
    }
    let portfolio = port
        .into_values()
        .map(|(accs, ob)| PortfolioEntry {
            backbone: ob.backbone.clone(),
            r_name: ob.r_name.clone(),
            recipe: ob.recipe.clone(),
            recipe_json: ob.recipe_json.clone(),
            n_tasks: accs.len(),
            mean_acc: accs.iter().sum::<f64>() / accs.len().max(1) as f64,
        })
        .collect();
    let mut by_task: BTreeMap<(String, String), Vec<&Cell>> = BTreeMap::new();
    for c in &all {
        by_task.entry((c.task_id.clone(), c.backbone.clone())).or_default().push(c);
    }
    let mut best_of_task: BTreeMap<String, (String, f64)> = BTreeMap::new();
    for c in &all {
        let e = best_of_task.entry(c.task_id.clone()).or_insert((c.config(), c.acc));
        if c.acc > e.1 {
            *e = (c.config(), c.acc);
        }
    }
    let tasks: Vec<PastTask> = by_task
        .into_iter()
        .map(|((tid, bb), cs)| {
            let c = cs[0];
            let (best_config, best_acc) = best_of_task[&tid].clone();
            PastTask {
                task_id: tid,
                family: c.family.clone(),
                shots: c.shots,
                n_classes: c.n_classes,
                shift: c.shift.clone(),
                backbone: bb,
                features: enc.task(&c.task),
                best_config,
                best_acc,
            }
        })
        .collect();
    let ood_distance = ood_threshold(&tasks);
    Ok(MetaModel {
        schema_version: MODEL_SCHEMA_VERSION,
        meta_schema_version: crate::metadataset::SCHEMA_VERSION,
        meta_hash: obs_hash(obs),
        n_runs: obs.len(),
        n_tasks: obs.iter().map(|o| o.task_id.clone()).collect::<BTreeSet<_>>().len(),
        families,
        created_at: crate::util::now_rfc3339(),
        learner: cv.chosen,
        encoder: enc,
        gp,
        ranker: ranker_of(&cv),
        gp_rel,
        knn,
        portfolio,
        cv,
        ood_distance,
        tasks,
        task_mean_var: task_mean_variance(&all, o.warp),
        cost: CostModel::fit(obs),
        warp: o.warp,
    })
}

/// Variance over tasks of each task's mean accuracy over its logged configurations.
pub fn task_mean_variance(cells: &[Cell], warp: Warp) -> f64 {
    let v: Vec<f64> = task_means(cells, warp).into_values().collect();
    let mu = v.iter().sum::<f64>() / v.len().max(1) as f64;
    v.iter().map(|x| (x - mu).powi(2)).sum::<f64>() / v.len().max(1) as f64
}

/// 95th percentile of each past task's distance to its nearest other task (same backbone, other family).
fn ood_threshold(tasks: &[PastTask]) -> f64 {
    let mut d: Vec<f64> = tasks
        .iter()
        .filter_map(|a| {
            tasks
                .iter()
                .filter(|b| b.backbone == a.backbone && b.task_id != a.task_id)
                .map(|b| dist(&a.features, &b.features))
                .min_by(|x, y| x.total_cmp(y))
        })
        .collect();
    if d.is_empty() {
        return 3.0;
    }
    d.sort_by(|a, b| a.total_cmp(b));
    d[((d.len() as f64 * 0.95) as usize).min(d.len() - 1)].max(0.5)
}

/// What the advisor states for a prediction (mean `m`, variance `v` on the scale `warp`, the
/// standard deviation widened by `widen`): the accuracy the latent distribution stands for
/// ([`Warp::state`]) and its 80% interval, both clamped to [0, 1] (clamping is monotone, so the
/// accuracy stays inside the interval), and the sd read as accuracy points ([`Warp::acc_sd`]).
pub fn stated(warp: Warp, m: f64, v: f64, widen: f64) -> (f64, [f64; 2], f64) {
    let sd = v.max(0.0).sqrt() * widen;
    let (mean, (lo, hi)) = warp.state(m, sd, Z80);
    (mean.clamp(0.0, 1.0), [lo.clamp(0.0, 1.0), hi.clamp(0.0, 1.0)], warp.acc_sd(m, sd))
}

/// The two decisions `recommend` states a P for ([`CvReport::override_hits`], [`CvReport::standard_hits`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    Override,
    StandardDefault,
}

impl MetaModel {
    /// The P the anchored pick must reach to replace the standard recipe (`cv.standard_threshold`,
    /// else [`ANCHOR_SWITCH_PROBABILITY`]).
    pub fn standard_threshold(&self) -> f64 {
        self.cv.standard_threshold.unwrap_or(ANCHOR_SWITCH_PROBABILITY)
    }

    /// The band of held-out decisions of kind `d` whose stated P was near `p` (None in a model
    /// file fitted before the bands were kept).
    pub fn held_out_band(&self, d: Decision, p: f64) -> Option<&HitBand> {
        let bands = match d {
            Decision::Override => &self.cv.override_hits,
            Decision::StandardDefault => &self.cv.standard_hits,
        };
        hit_band(bands, p)
    }

    /// The distance from a task (features `t` under backbone key `backbone`) to the nearest
    /// past task under that backbone; infinite when there is none.
    pub fn nearest_distance(&self, backbone: &str, t: &[Option<f64>]) -> f64 {
        self.nearest_tasks(backbone, t, 1).first().map(|x| x.0).unwrap_or(f64::INFINITY)
    }

    /// How much a prediction's interval widens on a task whose nearest past task is `nearest`
    /// away: that distance over the typical one, at least 1.
    pub fn widening(&self, nearest: f64) -> f64 {
        (nearest / self.ood_distance).max(1.0)
    }

    /// On how many past tasks a recipe of `s`'s kind ([`recipe_kind`]) was logged on backbone
    /// key `backbone`: the most of any portfolio configuration of that kind (0: never run, so
    /// any prediction for it is an extrapolation of the surrogate).
    pub fn support(&self, backbone: &str, s: &RecipeSummary) -> usize {
        let k = recipe_kind(s);
        self.portfolio.iter().filter(|p| p.backbone == backbone && recipe_kind(&p.recipe) == k).map(|p| p.n_tasks).max().unwrap_or(0)
    }

    /// Predictive mean and variance for candidates (backbone, recipe summary, config key) on a
    /// task whose (unencoded) features under each backbone are `task`, on the scale
    /// [`MetaModel::scale`] (the GP's warped scale; kNN's are accuracies).
    /// Variances are recalibrated by the cross-validated factor (`cv.*_sd_scale`), and the GP's
    /// means shifted by the task's level ([`MetaModel::task_shift`], with its own interval
    /// scale): this is the accuracy the advisor states. Ranking and decisions read the GPs
    /// directly ([`MetaModel::rank_scores`], [`MetaModel::ranking_gp`]).
    pub fn predict(&self, task: &BTreeMap<String, Vec<Option<f64>>>, cands: &[(String, RecipeSummary, String)]) -> Vec<(f64, f64)> {
        let items: Vec<(&str, &[Option<f64>], &RecipeSummary, &str)> =
            cands.iter().map(|(b, r, key)| (b.as_str(), task[b].as_slice(), r, key.as_str())).collect();
        let shift = self.task_shift(task);
        self.predict_each(&items)
            .into_iter()
            .zip(cands)
            .map(|(p, (b, r, _))| self.stated_latent(p, shift.as_ref(), &scale_group(b, r)))
            .collect()
    }

    /// [`MetaModel::predict`] for the same task with `factor` times the labelled images a class:
    /// the log median shots moved by ln `factor`, every other feature held as measured on the
    /// images at hand, and the task-level shift held at the one measured ([`MetaModel::task_shift`]):
    /// the probe gap it is read from is measured, and a prediction of the probe at more shots
    /// would move the gap by the very gain asked about. A forecast of what more labels of the same
    /// kind would give a recipe, before labelling them.
    pub fn predict_with_more_shots(
        &self,
        task: &BTreeMap<String, Vec<Option<f64>>>,
        cands: &[(String, RecipeSummary, String)],
        factor: f64,
    ) -> Vec<(f64, f64)> {
        let shift = self.task_shift(task);
        let at = features::task_index("log_shots");
        let moved: BTreeMap<String, Vec<Option<f64>>> = task
            .iter()
            .map(|(b, v)| {
                let mut v = v.clone();
                if let Some(Some(x)) = v.get_mut(at) {
                    *x += factor.ln();
                }
                (b.clone(), v)
            })
            .collect();
        let items: Vec<(&str, &[Option<f64>], &RecipeSummary, &str)> =
            cands.iter().map(|(b, r, key)| (b.as_str(), moved[b].as_slice(), r, key.as_str())).collect();
        self.predict_each(&items)
            .into_iter()
            .zip(cands)
            .map(|(p, (b, r, _))| self.stated_latent(p, shift.as_ref(), &scale_group(b, r)))
            .collect()
    }

    /// The task-level shift of the accuracies stated for a task whose (unencoded) features under
    /// each backbone are `task` ([`TaskLevel`]): (shift on the GP's scale, probe gap, probes
    /// averaged). None for kNN, a model without a fitted [`TaskLevel`], or a task without a gap.
    pub fn task_shift(&self, task: &BTreeMap<String, Vec<Option<f64>>>) -> Option<(f64, f64, usize)> {
        let tl = self.cv.task_level.as_ref().filter(|_| self.learner == Learner::Gp)?;
        let probes = centroid_probes(self.portfolio.iter().map(|p| (p.backbone.as_str(), &p.recipe)));
        let (gap, n) = probe_gap(&self.gp, &self.encoder, self.warp, &probes, task)?;
        Some((tl.shift(gap), gap, n))
    }

    /// A prediction of [`MetaModel::predict_each`] (mean, variance under `gp_sd_scale`) as the
    /// advisor states it, for a candidate of [`scale_group`] `group`: the mean moved by the task's
    /// shift, the variance rescaled to the group's own interval scale
    /// ([`CvReport::stated_sd_scales`]), else to the shift's ([`TaskLevel::sd_scale`]) where the
    /// task is shifted, else left. kNN's predictions are left as they are.
    pub fn stated_latent(&self, (m, v): (f64, f64), shift: Option<&(f64, f64, usize)>, group: &str) -> (f64, f64) {
        if self.learner != Learner::Gp {
            return (m, v);
        }
        let tl = self.cv.task_level.as_ref();
        let s = shift.filter(|_| tl.is_some()).map(|x| x.0);
        let scale = self.cv.stated_sd_scales.get(group).copied().or_else(|| s.and(tl).map(|t| t.sd_scale)).unwrap_or(self.cv.gp_sd_scale);
        (m + s.unwrap_or(0.0), v * (scale / self.cv.gp_sd_scale).powi(2))
    }

    /// [`MetaModel::predict`] where every item brings its own task features: (backbone key,
    /// features under it, recipe summary, config key).
    pub fn predict_each(&self, items: &[(&str, &[Option<f64>], &RecipeSummary, &str)]) -> Vec<(f64, f64)> {
        match self.learner {
            Learner::Knn => {
                let s2 = self.cv.knn_sd_scale.powi(2);
                items
                    .iter()
                    .map(|(_, t, _, key)| {
                        let t = self.encoder.task(t);
                        let (m, v) = self.knn.predict(key, &t).unwrap_or((self.warp.inv(self.gp.params.mean), 0.05));
                        (m, v * s2)
                    })
                    .collect()
            }
            Learner::Gp => {
                let s2 = self.cv.gp_sd_scale.powi(2);
                let xs: Vec<Vec<f64>> = items.iter().map(|(b, t, r, _)| self.encoder.encode(t, r, b)).collect();
                let (m, v) = self.gp.predict(&xs);
                m.into_iter().zip(v).map(|(m, v)| (m, v * s2)).collect()
            }
        }
    }

    /// The scale `predict` answers on: the GP's warp, or accuracy itself for kNN.
    pub fn scale(&self) -> Warp {
        match self.learner {
            Learner::Gp => self.warp,
            Learner::Knn => Warp::Identity,
        }
    }

    /// The task-level offset variance the ranking GP leaves out (see `task_mean_var`).
    pub fn ranking_offset_var(&self) -> f64 {
        if self.ranks_within_task() {
            self.task_mean_var
        } else {
            0.0
        }
    }

    /// Whether the within-task GP orders candidates (`ranker` says so and the file has it).
    fn ranks_within_task(&self) -> bool {
        self.ranker == Ranker::GpRel && self.gp_rel.is_some()
    }

    /// The factor calibrated on the override's own decisions (`cv.*_decision_sd_scale`), where
    /// the file has it, else [`MetaModel::override_sd_scale`].
    pub fn decision_sd_scale(&self) -> f64 {
        let d = if self.ranks_within_task() { self.cv.gp_rel_decision_sd_scale } else { self.cv.gp_decision_sd_scale };
        d.unwrap_or_else(|| self.override_sd_scale())
    }

    /// The factor on the ranking GP's standard deviations for the override's P(a beats b): the
    /// calibration of within-task differences on held-out tasks (`cv.*_pair_sd_scale`) where the
    /// file has it, else the marginal one.
    pub fn override_sd_scale(&self) -> f64 {
        let pair = if self.ranks_within_task() { self.cv.gp_rel_pair_sd_scale } else { self.cv.gp_pair_sd_scale };
        pair.unwrap_or(self.cv.gp_sd_scale)
    }

    /// The GP that orders candidates (see `ranker`).
    pub fn ranking_gp(&self) -> &Gp {
        match (self.ranker, &self.gp_rel) {
            (Ranker::GpRel, Some(g)) => g,
            _ => &self.gp,
        }
    }

    /// Scores that order candidates (higher is better): the ranking GP's predictive means.
    pub fn rank_scores(&self, task: &BTreeMap<String, Vec<Option<f64>>>, cands: &[(String, RecipeSummary, String)]) -> Vec<f64> {
        if self.learner != Learner::Gp {
            return self.predict(task, cands).into_iter().map(|x| x.0).collect();
        }
        let xs: Vec<Vec<f64>> = cands.iter().map(|(b, r, _)| self.encoder.encode(&task[b], r, b)).collect();
        self.ranking_gp().predict(&xs).0
    }

    /// Nearest past tasks (other than `exclude_family`) to a task's features under `backbone`.
    pub fn nearest_tasks(&self, backbone: &str, t: &[Option<f64>], k: usize) -> Vec<(f64, &PastTask)> {
        let e = self.encoder.task(t);
        let mut v: Vec<(f64, &PastTask)> =
            self.tasks.iter().filter(|p| p.backbone == backbone).map(|p| (dist(&p.features, &e), p)).collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        v.truncate(k);
        v
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let s = serde_json::to_string(self).expect("serialises");
        crate::util::write_atomic(path, s.as_bytes())
    }

    pub fn load(path: &Path) -> Result<MetaModel> {
        let bytes = std::fs::read(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                GraftError::Usage(format!(
                    "meta-learner file {} does not exist; pass --model FILE or fit one with `graft meta fit`",
                    path.display()
                ))
            } else {
                GraftError::io(path, e)
            }
        })?;
        let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            GraftError::Data(format!("{}: not a meta-learner file (not JSON: {e}); refit it with `graft meta fit`", path.display()))
        })?;
        let sv = v.get("schema_version").and_then(|x| x.as_u64()).unwrap_or(0);
        if sv != MODEL_SCHEMA_VERSION as u64 {
            return Err(GraftError::Data(format!(
                "{}: meta-learner schema version {sv}, this graft reads {MODEL_SCHEMA_VERSION}; refit it with `graft meta fit`",
                path.display()
            )));
        }
        let mut m: MetaModel =
            serde_json::from_value(v).map_err(|e| GraftError::Data(format!("{}: malformed meta-learner: {e}", path.display())))?;
        if m.meta_schema_version != crate::metadataset::SCHEMA_VERSION {
            return Err(GraftError::Data(format!(
                "{}: fitted on meta-dataset schema {}, this graft writes schema {}; refit with `graft meta fit`",
                path.display(),
                m.meta_schema_version,
                crate::metadataset::SCHEMA_VERSION
            )));
        }
        if m.encoder.task_mean.len() != TASK_FEATURES.len() || m.encoder.recipe_mean.len() != RECIPE_FEATURES.len() {
            return Err(GraftError::Data(format!(
                "{}: fitted on {} task and {} recipe features, this graft computes {} and {}; refit it with `graft meta fit`",
                path.display(),
                m.encoder.task_mean.len(),
                m.encoder.recipe_mean.len(),
                TASK_FEATURES.len(),
                RECIPE_FEATURES.len()
            )));
        }
        let corrupt =
            |what: String| GraftError::Data(format!("{}: corrupt meta-learner: {what}; refit it with `graft meta fit`", path.display()));
        m.validate().map_err(|e| corrupt(e.to_string()))?;
        m.gp.refit().map_err(|e| corrupt(format!("gp: {e}")))?;
        if let Some(g) = m.gp_rel.as_mut() {
            g.refit().map_err(|e| corrupt(format!("gp_rel: {e}")))?;
        }
        Ok(m)
    }

    /// Every shape, list and number the predictions rely on: a hand-edited or damaged file is
    /// refused on load instead of panicking or predicting NaN later.
    fn validate(&self) -> Result<()> {
        let bad = |what: String| GraftError::Other(what);
        let e = &self.encoder;
        if e.backbones.is_empty() {
            return Err(bad("`encoder.backbones` is empty".into()));
        }
        for (name, v, n) in [
            ("encoder.task_mean", &e.task_mean, TASK_FEATURES.len()),
            ("encoder.task_std", &e.task_std, TASK_FEATURES.len()),
            ("encoder.recipe_mean", &e.recipe_mean, RECIPE_FEATURES.len()),
            ("encoder.recipe_std", &e.recipe_std, RECIPE_FEATURES.len()),
            ("encoder.inter_mean", &e.inter_mean, INTERACTION_FEATURES.len()),
            ("encoder.inter_std", &e.inter_std, INTERACTION_FEATURES.len()),
        ] {
            if v.len() != n {
                return Err(bad(format!("`{name}` has {} values, expected {n}", v.len())));
            }
            if v.iter().any(|x| !x.is_finite()) {
                return Err(bad(format!("`{name}` holds a non-finite value")));
            }
        }
        if [&e.task_std, &e.recipe_std, &e.inter_std].iter().any(|v| v.iter().any(|x| *x <= 0.0)) {
            return Err(bad("an `encoder.*_std` value is not positive".into()));
        }
        let dim = TASK_FEATURES.len() + RECIPE_FEATURES.len() + INTERACTION_FEATURES.len() + e.backbones.len();
        self.gp.validate("gp", dim)?;
        if let Some(g) = &self.gp_rel {
            g.validate("gp_rel", dim)?;
        }
        if self.ranker == Ranker::GpRel && self.gp_rel.is_none() {
            return Err(bad("`ranker` is \"gp_rel\" but there is no `gp_rel`".into()));
        }
        if self.knn.k == 0 || self.knn.entries.is_empty() {
            return Err(bad("`knn` needs k >= 1 and at least one entry".into()));
        }
        let td = TASK_FEATURES.len();
        if let Some(i) =
            self.knn.entries.iter().position(|(_, f, a, _)| f.len() != td || !a.is_finite() || f.iter().any(|x| !x.is_finite()))
        {
            return Err(bad(format!(
                "`knn.entries[{i}]` is misshapen or not finite (expected {td} finite task features and a finite accuracy)"
            )));
        }
        if self.portfolio.is_empty() {
            return Err(bad("`portfolio` is empty".into()));
        }
        for (i, p) in self.portfolio.iter().enumerate() {
            if !e.backbones.contains(&p.backbone) {
                return Err(bad(format!("`portfolio[{i}].backbone` {:?} is not among `encoder.backbones`", p.backbone)));
            }
            crate::recipe::Recipe::from_json(&p.recipe_json, "portfolio")
                .map_err(|err| bad(format!("`portfolio[{i}].recipe_json`: {err}")))?;
            if !p.mean_acc.is_finite() {
                return Err(bad(format!("`portfolio[{i}].mean_acc` is not finite")));
            }
        }
        if let Some(i) = self.tasks.iter().position(|t| !t.best_acc.is_finite() || t.features.iter().any(|x| !x.is_finite())) {
            return Err(bad(format!("`tasks[{i}]` holds a non-finite value")));
        }
        let c = &self.cv;
        if !(self.ood_distance.is_finite() && self.ood_distance >= 0.0) {
            return Err(bad("`ood_distance` must be finite and >= 0".into()));
        }
        if !(c.gp_sd_scale.is_finite() && c.gp_sd_scale > 0.0 && c.knn_sd_scale.is_finite() && c.knn_sd_scale > 0.0) {
            return Err(bad("`cv.gp_sd_scale` and `cv.knn_sd_scale` must be finite and > 0".into()));
        }
        if !(self.task_mean_var.is_finite() && self.task_mean_var >= 0.0) {
            return Err(bad("`task_mean_var` must be finite and >= 0".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod hit_tests {
    use super::*;

    #[test]
    fn decisions_are_counted_in_the_band_of_their_stated_p() {
        let d = [(0.05, -0.1), (0.95, 0.2), (0.93, 0.0), (0.97, -0.05), (1.0, 0.1), (0.995, 0.3), (0.5, 0.1)];
        let b = hit_bands(&d);
        assert_eq!(b.len(), HIT_BANDS.len() - 1);
        assert_eq!(b.iter().map(|x| x.decisions).sum::<usize>(), d.len());
        let high = hit_band(&b, 0.95).unwrap();
        assert_eq!((high.lo, high.hi), (0.9, 0.99));
        assert_eq!((high.decisions, high.challenger_higher, high.ties), (3, 1, 1));
        assert!((high.mean_p - (0.95 + 0.93 + 0.97) / 3.0).abs() < 1e-12);
        // P = 1 falls in the last band, with P in [0.99, 1)
        let top = hit_band(&b, 1.0).unwrap();
        assert_eq!((top.lo, top.decisions, top.challenger_higher), (0.99, 2, 2));
        assert_eq!(hit_band(&b, 0.5).unwrap().lo, 0.5);
        assert_eq!(hit_band(&b, 0.0).unwrap().decisions, 1);
        assert!(hit_band(&[], 0.5).is_none());
    }

    #[test]
    fn the_standard_threshold_is_the_most_conservative_within_one_se_of_the_best_held_out_gain() {
        // decisions at P 0.9-0.99 lost on average, those at 0.99 and above won
        let mut d = Vec::new();
        for i in 0..10 {
            d.push((0.6, if i % 2 == 0 { 0.05 } else { -0.08 }));
            d.push((0.93, if i % 3 == 0 { 0.02 } else { -0.04 }));
            d.push((0.995, 0.06));
        }
        let (t, gains) = choose_standard_threshold(&d).unwrap();
        assert_eq!(t, 0.99, "{gains:?}");
        assert_eq!(gains.len(), STANDARD_THRESHOLDS.len());
        let at = |t: f64| gains.iter().find(|g| g.0 == t).unwrap().1;
        assert!((at(0.99) - 0.6 / 30.0).abs() < 1e-12);
        assert!(at(0.99) > at(0.9) && at(0.9) > at(0.5));
        // a higher threshold within one standard error of the best is preferred: fewer departures
        let mut flat = d.clone();
        flat.extend((0..10).map(|_| (0.85, 0.001)));
        assert_eq!(choose_standard_threshold(&flat).unwrap().0, 0.99);
        let close: Vec<(f64, f64)> = (0..40).map(|i| (if i < 20 { 0.75 } else { 0.999 }, if i % 2 == 0 { 0.2 } else { -0.19 })).collect();
        let (t, g) = choose_standard_threshold(&close).unwrap();
        assert!(g.iter().find(|x| x.0 == 0.7).unwrap().1 > g.iter().find(|x| x.0 == 0.99).unwrap().1);
        assert_eq!(t, 0.99, "{g:?}");
        // when every departure gains, the lowest threshold departs most; ties go to the higher one
        let all_win: Vec<(f64, f64)> = (0..20).map(|i| (0.55 + 0.02 * i as f64, 0.03)).collect();
        assert_eq!(choose_standard_threshold(&all_win).unwrap().0, 0.5);
        let none_above: Vec<(f64, f64)> = (0..20).map(|_| (0.3, 0.1)).collect();
        assert_eq!(choose_standard_threshold(&none_above).unwrap().0, 0.99);
        assert!(choose_standard_threshold(&d[..19]).is_none());
    }
}

#[cfg(test)]
mod anchor_tests {
    use super::*;
    use nalgebra::DMatrix;

    /// A kind ignores what the GP interpolates (learning rate, layer decay, L2-SP, epochs) and
    /// tells apart strategy, depth, frozen and re-initialised groups and pretraining.
    #[test]
    fn a_recipe_kind_is_what_the_logged_runs_inform() {
        let ft = RecipeSummary::for_tests(None);
        let mut other_lr = ft.clone();
        (other_lr.lr, other_lr.layer_decay, other_lr.l2sp, other_lr.epochs) = (3e-4, 0.5, 0.01, 30);
        assert_eq!(recipe_kind(&ft), recipe_kind(&other_lr));
        let mut frozen = ft.clone();
        frozen.n_freeze = 2;
        let mut reinit = ft.clone();
        reinit.n_reinit = 1;
        let mut pre = ft.clone();
        (pre.pretrain, pre.pretrain_method) = (true, Some(crate::pretrain::Method::Simclr));
        for k in [&frozen, &reinit, &pre] {
            assert_ne!(recipe_kind(&ft), recipe_kind(k), "{k:?}");
        }
        let svm_last = RecipeSummary::for_tests(Some(1.0));
        let mut svm_mid = svm_last.clone();
        svm_mid.probe_depth = Some(0.5);
        let mut centroid = svm_last.clone();
        centroid.strategy = Strategy::CentroidProbe;
        assert_ne!(recipe_kind(&svm_last), recipe_kind(&svm_mid));
        assert_ne!(recipe_kind(&svm_last), recipe_kind(&centroid));
        // a probe's frozen-group count is the whole body either way: not part of its kind
        let mut svm_frozen = svm_last.clone();
        svm_frozen.n_freeze = 4;
        assert_eq!(recipe_kind(&svm_last), recipe_kind(&svm_frozen));
    }

    #[test]
    fn the_anchor_reads_its_features_with_the_classifier_the_gp_prefers() {
        let svm = RecipeSummary::for_tests(Some(1.0));
        let mut centroid = svm.clone();
        centroid.strategy = Strategy::CentroidProbe;
        let mut svm_mid = svm.clone();
        svm_mid.probe_depth = Some(0.5);
        let mut after_pretraining = centroid.clone();
        after_pretraining.pretrain = true;
        let ft = RecipeSummary::for_tests(None);
        let cands = [("a", &svm), ("a", &centroid), ("b", &centroid), ("a", &svm_mid), ("a", &after_pretraining), ("a", &ft)];
        // the centroid probe on the same features is predicted higher: it reads them
        assert_eq!(anchor_classifier(&cands, &[0.5, 0.6, 0.9, 0.9, 0.9, 0.9], 0), 1);
        // predicted lower or equal: the anchor stays; other backbones, depths, pretraining and
        // fine-tunes never stand in for it, however high their prediction
        assert_eq!(anchor_classifier(&cands, &[0.5, 0.4, 0.9, 0.9, 0.9, 0.9], 0), 0);
        assert_eq!(anchor_classifier(&cands, &[0.5, 0.5, 0.9, 0.9, 0.9, 0.9], 0), 0);
    }

    #[test]
    fn logme_index_points_at_the_probe_depths_logme() {
        assert_eq!(TASK_FEATURES[logme_index(Some(0.0))], "logme_first");
        assert_eq!(TASK_FEATURES[logme_index(Some(0.5))], "logme_mid");
        assert_eq!(TASK_FEATURES[logme_index(Some(1.0))], "logme_last");
        assert_eq!(TASK_FEATURES[logme_index(None)], "logme_last");
    }

    /// The anchor by probe CV takes the probe with the best cross-validated accuracy, LogME
    /// breaking ties; where any probe has no CV accuracy (one image a class) it falls back to
    /// LogME, and fine-tuning candidates are never anchors.
    #[test]
    fn the_anchor_ranks_probes_by_cv_accuracy_then_logme() {
        let task = |logme: f64, cv: Option<f64>| {
            let mut t = vec![None; TASK_FEATURES.len()];
            t[logme_index(Some(1.0))] = Some(logme);
            t[ncprobe_index(Some(1.0))] = cv;
            t
        };
        assert_eq!(TASK_FEATURES[ncprobe_index(Some(1.0))], "ncprobe_last");
        assert_eq!(TASK_FEATURES[ncprobe_index(Some(0.5))], "ncprobe_mid");
        assert_eq!(TASK_FEATURES[ncprobe_index(Some(0.0))], "ncprobe_first");
        let (p, f) = (RecipeSummary::for_tests(Some(1.0)), RecipeSummary::for_tests(None));
        let (a, b, c, d) = (task(0.9, Some(0.6)), task(0.1, Some(0.8)), task(0.5, Some(0.8)), task(9.0, Some(0.99)));
        let cands: Vec<(&RecipeSummary, &[Option<f64>])> = vec![(&p, &a), (&p, &b), (&p, &c), (&f, &d)];
        assert_eq!(transferability_anchor(&cands, AnchorScore::LogMe), Some(0));
        assert_eq!(transferability_anchor(&cands, AnchorScore::ProbeCv), Some(2));
        let e = task(0.95, None);
        let mut one_shot = cands.clone();
        one_shot.push((&p, &e));
        assert_eq!(transferability_anchor(&one_shot, AnchorScore::ProbeCv), Some(4));
        assert_eq!(transferability_anchor(&cands[3..], AnchorScore::ProbeCv), None);
        // the full ranking (what `meta eval` scores), probes only, best first
        assert_eq!(anchor_ranking(&cands, AnchorScore::ProbeCv), vec![2, 1, 0]);
        assert_eq!(anchor_ranking(&cands, AnchorScore::LogMe), vec![0, 2, 1]);
        assert_eq!(anchor_ranking(&one_shot, AnchorScore::ProbeCv), vec![4, 0, 2, 1]);
        // equal scores: the later candidate first, as a max over the candidates would take it
        let twins: Vec<(&RecipeSummary, &[Option<f64>])> = vec![(&p, &c), (&p, &c), (&p, &b)];
        assert_eq!(anchor_ranking(&twins, AnchorScore::ProbeCv), vec![1, 0, 2]);
    }

    /// The decisions' one-sided calibration: the 10th percentile of the signed residuals sits at
    /// −Z80 · k; too few decisions give none; residuals all on the good side give the floor.
    #[test]
    fn decision_scale_is_one_sided() {
        let z: Vec<f64> = (0..100).map(|i| -2.5 + 5.0 * i as f64 / 99.0).collect();
        let k = super::decision_sd_scale(z.clone()).unwrap();
        assert!((k - (2.5 - 50.0 / 99.0) / Z80).abs() < 1e-12, "{k}");
        // only the lower tail counts: the upper tail moved far out changes nothing
        let far: Vec<f64> = z.iter().map(|v| if *v > 0.0 { v * 10.0 } else { *v }).collect();
        assert_eq!(super::decision_sd_scale(far), Some(k));
        assert_eq!(super::decision_sd_scale(z[..19].to_vec()), None);
        assert_eq!(super::decision_sd_scale(vec![1.0; 30]), Some(0.25));
    }

    /// The pairwise calibration: standardised within-task differences, each task weighted once.
    #[test]
    fn pair_scale_calibrates_differences_and_weighs_tasks_equally() {
        // two-cell tasks whose observed difference is d while the posterior predicts none, with
        // the difference's sd 1 (latent variances 0.5 each, uncorrelated, no noise)
        let two = |d: f64| (vec![0.0, 0.0], DMatrix::from_diagonal_element(2, 2, 0.5), 0.0, vec![d, 0.0]);
        let tasks: Vec<_> = (1..=10).map(|i| two(0.2 * i as f64)).collect();
        let r = super::pair_residuals(&tasks);
        assert_eq!(r.len(), 10);
        // the 8th of 10 equally weighted residuals, 1.6, sits at Z80 · k
        let k = super::pair_sd_scale(r.clone()).unwrap();
        assert!((k - 1.6 / Z80).abs() < 1e-12, "{k}");
        // correlation narrows a difference's sd: the same residuals read as larger
        let corr = |d: f64| (vec![0.0, 0.0], DMatrix::from_row_slice(2, 2, &[0.5, 0.375, 0.375, 0.5]), 0.0, vec![d, 0.0]);
        let rc = super::pair_residuals(&(1..=10).map(|i| corr(0.2 * i as f64)).collect::<Vec<_>>());
        assert!((super::pair_sd_scale(rc).unwrap() - 2.0 * k).abs() < 1e-9);
        // a task with 6 cells (15 pairs) of huge residuals counts as one task, not fifteen
        let mut big = tasks.clone();
        big.push((vec![0.0; 6], DMatrix::from_diagonal_element(6, 6, 0.5), 0.0, vec![0.0, 10.0, 20.0, 30.0, 40.0, 50.0]));
        let rb = super::pair_residuals(&big);
        assert_eq!(rb.len(), 25);
        // 11 tasks: 80% of the weight is reached at the 9th smallest task-residual, 1.8
        assert!((super::pair_sd_scale(rb).unwrap() - 1.8 / Z80).abs() < 1e-12);
        assert_eq!(super::pair_sd_scale(vec![]), None);
    }

    #[test]
    fn normal_cdf_matches_known_values() {
        for (z, p) in [(0.0, 0.5), (1.0, 0.841344746), (-1.959963985, 0.025), (1.281551566, 0.9), (3.0, 0.998650102)] {
            assert!((normal_cdf(z) - p).abs() < 1e-6, "{z}: {}", normal_cdf(z));
        }
    }

    /// The anchor is kept unless the best-mean candidate beats it with the required probability;
    /// a positive correlation between the two predictions makes the difference more certain.
    #[test]
    fn anchored_pick_switches_only_when_confident() {
        let m = [0.70, 0.72, 0.60];
        let indep = DMatrix::from_diagonal(&nalgebra::DVector::from_vec(vec![0.01, 0.01, 0.01]));
        // anchor 0: best is 1, P = Phi(0.02 / sqrt(0.02)) = 0.556 < 0.9 -> keep the anchor
        let (pick, pr) = anchored_pick(&m, &indep, 0, 0.9);
        assert_eq!(pick, 0);
        assert!((pr - normal_cdf(0.02 / 0.02f64.sqrt())).abs() < 1e-12);
        // strongly correlated: var of the difference 0.01 + 0.01 - 2*0.0099 = 0.0002 -> P = Phi(1.414) = 0.92
        let mut corr = indep.clone();
        corr[(0, 1)] = 0.0099;
        corr[(1, 0)] = 0.0099;
        let (pick, pr) = anchored_pick(&m, &corr, 0, 0.9);
        assert_eq!(pick, 1, "P {pr}");
        // the anchor is the best-mean candidate itself
        assert_eq!(anchored_pick(&m, &indep, 1, 0.9).0, 1);
    }
}

#[cfg(test)]
mod sample_tests {
    use super::*;

    fn cell(task: &str, cfg: &str) -> Cell {
        Cell {
            task_id: task.into(),
            family: "f".into(),
            backbone: "b".into(),
            r_name: cfg.into(),
            acc: 0.5,
            n_seeds: 1,
            task: vec![],
            recipe: RecipeSummary::for_tests(Some(1.0)),
            shots: 1.0,
            imbalance: 1.0,
            n_classes: 2,
            shift: "none".into(),
        }
    }

    fn sample(cells: &[Cell], seed: u64, n: usize) -> BTreeSet<(String, String)> {
        sample_order(cells, seed).into_iter().take(n).map(|i| (cells[i].task_id.clone(), cells[i].r_name.clone())).collect()
    }

    /// The GPs' subsample is a bottom-n sample by a seeded hash of each cell's identity: the same
    /// cells whatever their order in the list; nested across sizes; appending cells displaces at
    /// most as many sampled cells as were appended (a shuffle of the list re-drew all of them);
    /// another seed draws another sample.
    #[test]
    fn appending_cells_displaces_at_most_as_many_sampled_cells() {
        let old: Vec<Cell> = (0..400).map(|i| cell(&format!("t{}", i / 10), &format!("c{}", i % 10))).collect();
        let s = sample(&old, 0, 100);
        assert_eq!(s.len(), 100);
        let mut reversed = old.clone();
        reversed.reverse();
        assert_eq!(sample(&reversed, 0, 100), s, "the sample depends on the cells' order");
        assert!(sample(&old, 0, 40).is_subset(&s), "a smaller sample is not nested in a larger one");
        let mut grown = old.clone();
        grown.extend((0..30).map(|i| cell(&format!("new{i}"), "ft224")));
        let g = sample(&grown, 0, 100);
        let kept = s.intersection(&g).count();
        assert!(kept >= 70, "appending 30 cells displaced {} of 100 sampled cells", 100 - kept);
        assert!(g.iter().all(|k| s.contains(k) || k.0.starts_with("new")), "a cell that was not sampled before entered");
        let other = sample(&old, 1, 100);
        assert!(other.intersection(&s).count() < 50, "seed 1 draws nearly the same sample as seed 0");
    }
}

#[cfg(test)]
mod offset_tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// 200 held-out tasks, each with its own level miss (which must drop out), three
    /// configurations: `low` observed 0.1 above its prediction relative to the others, `flat` and
    /// `also-flat` without a systematic miss, all with noise of sd 0.05.
    fn tasks(seed: u64) -> Vec<Vec<(String, f64, f64)>> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut noise = move || (0..12).map(|_| rng.random::<f64>()).sum::<f64>() - 6.0;
        (0..200)
            .map(|t| {
                let level = (t % 7) as f64 * 0.1 - 0.3;
                [("low", 0.1), ("flat", 0.0), ("also-flat", 0.0)]
                    .into_iter()
                    .map(|(k, miss)| (k.to_string(), 0.5, 0.5 + level + miss + 0.05 * noise()))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn a_configuration_missed_within_its_tasks_gets_the_miss_shrunk_and_the_task_level_drops_out() {
        let o = config_offsets(&tasks(3));
        // centred within the task: low is +0.1 - 0.1/3 = +0.067, the others -0.033
        assert!((o["low"] - 0.2 / 3.0).abs() < 0.01, "{o:?}");
        assert!((o["flat"] + 0.1 / 3.0).abs() < 0.01, "{o:?}");
        // shrunk towards 0, never past the raw mean
        assert!(o["low"] < 0.2 / 3.0 + 0.01 && o["low"] > 0.0);
    }

    #[test]
    fn no_systematic_miss_gives_no_offsets() {
        // every configuration missed alike: the offsets' spread is all sampling noise
        let t: Vec<Vec<(String, f64, f64)>> = tasks(5)
            .into_iter()
            .map(|cells| cells.into_iter().map(|(k, m, y)| (k.clone(), m, if k == "low" { y - 0.1 } else { y })).collect())
            .collect();
        let o = config_offsets(&t);
        assert!(o.values().all(|v| v.abs() < 0.01), "{o:?}");
        // one configuration, or tasks of one cell: nothing to compare
        assert!(config_offsets(&[vec![("a".into(), 0.5, 0.6)]]).is_empty());
    }

    #[test]
    fn the_task_level_is_fitted_on_the_gap_only_when_it_moves_with_it() {
        // mean residual = 0.02 + 0.6 gap, exactly: the fit recovers it and leaves no variance
        let pairs: Vec<(f64, f64)> = (0..30).map(|i| (i as f64 / 30.0 - 0.5, 0.02 + 0.6 * (i as f64 / 30.0 - 0.5))).collect();
        let (a, b, r, before, after) = TaskLevel::fit(&pairs).unwrap();
        assert!((a - 0.02).abs() < 1e-12 && (b - 0.6).abs() < 1e-12 && (r - 1.0).abs() < 1e-12, "{a} {b} {r}");
        assert!(before > 0.0 && after < 1e-20);
        // a gap that moves the level the other way, or too few tasks: no shift
        let neg: Vec<(f64, f64)> = pairs.iter().map(|&(g, y)| (g, -y)).collect();
        assert!(TaskLevel::fit(&neg).is_none());
        assert!(TaskLevel::fit(&pairs[..MIN_TASK_LEVEL_TASKS - 1]).is_none());
        let tl = TaskLevel { alpha: a, beta: b, n_tasks: 30, correlation: r, var_before: before, var_after: after, sd_scale: 1.0 };
        assert!((tl.shift(0.1) - 0.08).abs() < 1e-12);
    }
}
