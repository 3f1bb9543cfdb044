//! Transfer recipes: the serde document users and the meta-learner write, its validation into a
//! [`CheckedRecipe`] against a backbone's groups, and the presets.
mod presets;
pub mod pretrain;
pub use presets::{preset, PRESETS};

use crate::data::Augment;
use crate::error::{GraftError, Result};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const RECIPE_SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Train the network (the groups' actions say what is trained).
    Finetune,
    /// Linear SVM (linfa-svm, one-vs-rest) on pooled features of `probe.group`; C by cross-validation.
    LinearProbe,
    /// Multinomial logistic regression on pooled features of `probe.group`.
    SoftmaxProbe,
    /// Nearest class mean on centred, L2-normalised pooled features of `probe.group`
    /// (SimpleShot's CL2N, Wang et al. 2019); nothing to tune.
    CentroidProbe,
}

impl Strategy {
    /// The strategy named by `s` as written in recipes and the meta-dataset.
    pub fn parse(s: &str) -> Option<Strategy> {
        [Strategy::Finetune, Strategy::LinearProbe, Strategy::SoftmaxProbe, Strategy::CentroidProbe].into_iter().find(|k| k.as_str() == s)
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Strategy::Finetune => "finetune",
            Strategy::LinearProbe => "linear-probe",
            Strategy::SoftmaxProbe => "softmax-probe",
            Strategy::CentroidProbe => "centroid-probe",
        }
    }
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a fine-tune's classifier head starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HeadInit {
    /// Seeded at random (or transferred, when the class count is the source's).
    #[default]
    Random,
    /// A softmax probe (multinomial logistic regression, `probe.l2`, `probe.iterations`) fitted
    /// on the training images' head inputs (as the fine-tune's first steps see them, BatchNorm
    /// of trained groups on batch statistics) before the fine-tune: the first stage of LP-FT
    /// (Kumar et al. 2022), so the body's first gradients come through a head that already
    /// classifies instead of a random one.
    Probe,
}

impl HeadInit {
    pub fn is_random(&self) -> bool {
        *self == HeadInit::Random
    }
}

/// How each training image's loss is weighted by its class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ClassWeights {
    /// Every image counts the same, so a class counts in proportion to its images.
    #[default]
    None,
    /// Every class counts the same: an image of class c weighs n / (K n_c), K the classes with
    /// images, n_c its images (scikit-learn's `class_weight="balanced"`). Fine-tuning and the
    /// softmax probe weight the cross-entropy (a batch's loss is its weighted mean), the SVM
    /// probe its hinge losses (each image's C), and the SVM's cross-validation chooses C by
    /// balanced accuracy. The nearest-centroid probe weighs classes equally either way. On a training
    /// set with as many images in every class every weight is 1 and the run is the same as
    /// with `none`.
    Balanced,
}

/// Whether a recommended recipe weights classes (`graft recommend` / `graft auto
/// --class-weights`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ClassWeightPolicy {
    /// `balanced` when the training set's largest class has at least
    /// [`ClassWeightPolicy::IMBALANCE_RATIO`] times the images of its smallest, else `none`.
    #[default]
    Auto,
    None,
    Balanced,
}

impl ClassWeightPolicy {
    /// Most over fewest training images a class from which `auto` weights classes.
    pub const IMBALANCE_RATIO: f64 = 1.5;

    /// The weighting for a training set with these images per class.
    pub fn choose(&self, counts: &[usize]) -> ClassWeights {
        match self {
            ClassWeightPolicy::None => ClassWeights::None,
            ClassWeightPolicy::Balanced => ClassWeights::Balanced,
            ClassWeightPolicy::Auto => match class_size_range(counts) {
                Some((lo, hi)) if hi as f64 >= Self::IMBALANCE_RATIO * lo as f64 => ClassWeights::Balanced,
                _ => ClassWeights::None,
            },
        }
    }
}

/// The fewest and the most images of a class, over the classes that have any (None without
/// images).
pub fn class_size_range(counts: &[usize]) -> Option<(usize, usize)> {
    let present = counts.iter().copied().filter(|&c| c > 0);
    Some((present.clone().min()?, present.max()?))
}

impl ClassWeights {
    pub fn is_none(&self) -> bool {
        *self == ClassWeights::None
    }
    /// Per-class weights for these class counts (classes without images get 0); None when
    /// they would all be equal (a balanced training set, or weighting off), so callers take
    /// the unweighted path and the run is bit-for-bit the unweighted one.
    pub fn weights(&self, counts: &[usize]) -> Option<Vec<f64>> {
        if self.is_none() {
            return None;
        }
        match class_size_range(counts) {
            Some((lo, hi)) if lo < hi => {}
            _ => return None,
        }
        let n: usize = counts.iter().sum();
        let k = counts.iter().filter(|&&c| c > 0).count() as f64;
        Some(counts.iter().map(|&c| if c == 0 { 0.0 } else { n as f64 / (k * c as f64) }).collect())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Transferred and not trained (BatchNorm in eval mode).
    Freeze,
    /// Transferred and trained.
    Finetune,
    /// Re-initialised at random and trained.
    Reinit,
}

impl Action {
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Freeze => "freeze",
            Action::Finetune => "finetune",
            Action::Reinit => "reinit",
        }
    }
}

/// Per-group override.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    pub action: Option<Action>,
    /// Absolute learning rate for this group (overrides `lr` and `layer_decay`).
    pub lr: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Adamw,
    Sgd,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct OptimizerSpec {
    pub kind: OptimizerKind,
    /// Decoupled (AdamW) or coupled (SGD) weight decay.
    pub weight_decay: f64,
    /// Apply weight decay to 1-D parameters (biases, BatchNorm) too. Off by default.
    pub decay_1d: bool,
    /// SGD momentum.
    pub momentum: f64,
    pub nesterov: bool,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl Default for OptimizerSpec {
    fn default() -> Self {
        OptimizerSpec {
            kind: OptimizerKind::Adamw,
            weight_decay: 0.01,
            decay_1d: false,
            momentum: 0.9,
            nesterov: false,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// Linear warm-up then cosine decay to 0.
    Cosine,
    Constant,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleSpec {
    pub kind: ScheduleKind,
    pub warmup_epochs: f64,
}

impl Default for ScheduleSpec {
    fn default() -> Self {
        ScheduleSpec { kind: ScheduleKind::Cosine, warmup_epochs: 1.0 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ProbeSpec {
    /// Group whose pooled output is the feature; default: the last group before the head.
    pub group: Option<String>,
    /// Candidate values of the SVM's C, chosen by stratified k-fold cross-validation.
    pub c_grid: Vec<f64>,
    pub cv_folds: usize,
    /// L2 strength of the softmax probe.
    pub l2: f64,
    /// Full-batch iterations of the softmax probe.
    pub iterations: usize,
}

impl Default for ProbeSpec {
    fn default() -> Self {
        ProbeSpec { group: None, c_grid: vec![0.01, 0.1, 1.0, 10.0], cv_folds: 3, l2: 1e-3, iterations: 300 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct EarlyStopping {
    /// Stop after this many epochs without a better validation accuracy; restore the best weights.
    pub patience: usize,
}

impl Default for EarlyStopping {
    fn default() -> Self {
        EarlyStopping { patience: 10 }
    }
}

/// A transfer recipe (schema version 1). Unknown fields are rejected, so typos fail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    pub schema_version: u32,
    #[serde(default)]
    pub name: Option<String>,
    pub strategy: Strategy,
    /// Action of every group not listed in `groups` (the head defaults to `reinit` when the
    /// class count differs from the backbone's source head).
    #[serde(default = "default_action")]
    pub default_action: Action,
    /// Base learning rate (the head's; lower groups get lr * layer_decay^depth).
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// Layer-wise decay of the learning rate from the head down, in (0, 1]; 1 = one rate.
    #[serde(default = "one")]
    pub layer_decay: f64,
    /// Per-group overrides by group name.
    #[serde(default)]
    pub groups: BTreeMap<String, GroupSpec>,
    #[serde(default)]
    pub optimizer: OptimizerSpec,
    /// L2-SP strength (Li et al. 2018): alpha/2 ‖w − w_pretrained‖² on transferred, trained groups.
    #[serde(default)]
    pub l2sp: f64,
    #[serde(default)]
    pub schedule: ScheduleSpec,
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    #[serde(default)]
    pub augment: Augment,
    #[serde(default)]
    pub label_smoothing: f64,
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub probe: ProbeSpec,
    /// Early stopping on the validation split (used only when there is one).
    #[serde(default)]
    pub early_stopping: Option<EarlyStopping>,
    /// Fraction of each training class held out for validation when the data has no val/ split.
    #[serde(default)]
    pub val_fraction: f64,
    /// Optional unsupervised or self-supervised pretraining of the backbone (after transfer and
    /// re-initialisation, before fine-tuning or probing) on the target's unlabelled pool or its
    /// training images without labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretrain: Option<crate::recipe::pretrain::PretrainSpec>,
    /// Arithmetic of convolutions and linear layers: `f32` (default) or `bf16` mixed precision
    /// (bfloat16 operands, float32 master weights, BatchNorm and losses). Pays on a GPU.
    #[serde(default, skip_serializing_if = "crate::kernels::Precision::is_f32")]
    pub precision: crate::kernels::Precision,
    /// How the head starts a fine-tune ([`HeadInit`]); `probe` makes the run LP-FT.
    #[serde(default, skip_serializing_if = "HeadInit::is_random")]
    pub head_init: HeadInit,
    /// How each image's loss is weighted by its class ([`ClassWeights`]): `none` (default) or
    /// `balanced`, for a training set whose classes have very different numbers of images.
    #[serde(default, skip_serializing_if = "ClassWeights::is_none")]
    pub class_weights: ClassWeights,
    /// The backbone the recipe was made for (a name from `graft models`, or a .safetensors file
    /// with its card); `graft recommend` writes it. `graft run` uses it unless `--backbone`
    /// is given, and refuses a `--backbone` that names other weights. Not part of the recipe as
    /// run: the run record states the backbone on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backbone: Option<String>,
    /// The square input size (pixels) the backbone runs at; absent: its card's. On a CPU the
    /// cost grows with its square. `graft recommend` sets it when it picks another size than
    /// the card's; `--input-size` overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_size: Option<usize>,
}

fn default_action() -> Action {
    Action::Finetune
}
fn default_lr() -> f64 {
    1e-3
}
fn one() -> f64 {
    1.0
}
fn default_epochs() -> usize {
    30
}
fn default_batch() -> usize {
    32
}

/// One group of a checked recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckedGroup {
    pub name: String,
    pub action: Action,
    /// 0 for frozen groups.
    pub lr: f64,
}

/// A recipe validated against a backbone's groups and the task's class count. Only this type
/// can be executed.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedRecipe {
    recipe: Recipe,
    groups: Vec<CheckedGroup>,
    probe_group: usize,
}

impl CheckedRecipe {
    pub fn recipe(&self) -> &Recipe {
        &self.recipe
    }
    pub fn groups(&self) -> &[CheckedGroup] {
        &self.groups
    }
    pub fn probe_group(&self) -> usize {
        self.probe_group
    }
}

fn pos(field: &str, v: f64) -> Result<()> {
    if !(v.is_finite() && v > 0.0) {
        return Err(GraftError::recipe(field, format!("must be a positive finite number, got {v}")));
    }
    Ok(())
}

fn unit(field: &str, v: f64, lo_open: bool) -> Result<()> {
    let ok = v.is_finite() && v <= 1.0 && if lo_open { v > 0.0 } else { v >= 0.0 };
    if !ok {
        let range = if lo_open { "(0, 1]" } else { "[0, 1]" };
        return Err(GraftError::recipe(field, format!("must be in {range}, got {v}")));
    }
    Ok(())
}

impl Recipe {
    pub fn from_json(s: &str, origin: &str) -> Result<Self> {
        let de = &mut serde_json::Deserializer::from_str(s);
        let r: Recipe = serde_path_to_error::deserialize(de).map_err(|e| {
            // the path of the offending field (`epochs`, `groups.block1.lr`), not a word of the message
            let path = e.path().to_string();
            let field = if path.is_empty() || path == "." { "(document)".to_string() } else { path };
            GraftError::recipe(field, format!("{origin}: {}", e.inner()))
        })?;
        Ok(r)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("recipe serialises")
    }

    /// JSON Schema of the recipe document.
    pub fn json_schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(Recipe)).expect("schema serialises")
    }

    /// Validate against a backbone's groups (input to output, last = head), the backbone's
    /// source class count and the target's class count.
    pub fn check(&self, group_names: &[String], source_classes: usize, target_classes: usize) -> Result<CheckedRecipe> {
        if self.schema_version != RECIPE_SCHEMA_VERSION {
            return Err(GraftError::recipe("schema_version", format!("must be {RECIPE_SCHEMA_VERSION}, got {}", self.schema_version)));
        }
        if target_classes < 2 {
            return Err(GraftError::Data(format!("the task has {target_classes} class; classification needs at least two")));
        }
        pos("lr", self.lr)?;
        unit("layer_decay", self.layer_decay, true)?;
        if self.epochs == 0 || self.epochs > 10_000 {
            return Err(GraftError::recipe("epochs", format!("must be in 1..=10000, got {}", self.epochs)));
        }
        if self.batch_size < 2 || self.batch_size > 8192 {
            return Err(GraftError::recipe("batch_size", format!("must be in 2..=8192 (BatchNorm needs 2), got {}", self.batch_size)));
        }
        if let Some(sz) = self.input_size {
            if !(16..=1024).contains(&sz) {
                return Err(GraftError::recipe("input_size", format!("must be in 16..=1024 pixels, got {sz}")));
            }
        }
        if !(self.l2sp.is_finite() && self.l2sp >= 0.0) {
            return Err(GraftError::recipe("l2sp", format!("must be >= 0, got {}", self.l2sp)));
        }
        if !(self.label_smoothing >= 0.0 && self.label_smoothing < 1.0) {
            return Err(GraftError::recipe("label_smoothing", format!("must be in [0, 1), got {}", self.label_smoothing)));
        }
        if let Some(p) = &self.pretrain {
            p.validate()?;
        }
        if !(self.val_fraction >= 0.0 && self.val_fraction < 0.9) {
            return Err(GraftError::recipe("val_fraction", format!("must be in [0, 0.9), got {}", self.val_fraction)));
        }
        let o = &self.optimizer;
        if !(o.weight_decay.is_finite() && o.weight_decay >= 0.0) {
            return Err(GraftError::recipe("optimizer.weight_decay", format!("must be >= 0, got {}", o.weight_decay)));
        }
        if !(o.momentum >= 0.0 && o.momentum < 1.0) {
            return Err(GraftError::recipe("optimizer.momentum", format!("must be in [0, 1), got {}", o.momentum)));
        }
        for (f, v) in [("optimizer.beta1", o.beta1), ("optimizer.beta2", o.beta2)] {
            if !(0.0..1.0).contains(&v) {
                return Err(GraftError::recipe(f, format!("must be in [0, 1), got {v}")));
            }
        }
        pos("optimizer.eps", o.eps)?;
        if self.schedule.warmup_epochs.is_nan() || self.schedule.warmup_epochs < 0.0 || self.schedule.warmup_epochs > self.epochs as f64 {
            return Err(GraftError::recipe(
                "schedule.warmup_epochs",
                format!("must be in [0, epochs={}], got {}", self.epochs, self.schedule.warmup_epochs),
            ));
        }
        self.augment.validate()?;
        if let Some(es) = &self.early_stopping {
            if es.patience == 0 {
                return Err(GraftError::recipe("early_stopping.patience", "must be at least 1"));
            }
        }
        let p = &self.probe;
        if p.c_grid.is_empty() {
            return Err(GraftError::recipe("probe.c_grid", "must list at least one C"));
        }
        for c in &p.c_grid {
            pos("probe.c_grid", *c)?;
        }
        if p.cv_folds < 2 || p.cv_folds > 20 {
            return Err(GraftError::recipe("probe.cv_folds", format!("must be in 2..=20, got {}", p.cv_folds)));
        }
        if p.l2.is_nan() || p.l2 < 0.0 {
            return Err(GraftError::recipe("probe.l2", format!("must be >= 0, got {}", p.l2)));
        }
        if p.iterations == 0 {
            return Err(GraftError::recipe("probe.iterations", "must be at least 1"));
        }
        if self.head_init == HeadInit::Probe && self.strategy != Strategy::Finetune {
            return Err(GraftError::recipe(
                "head_init",
                format!(
                    "`probe` starts a fine-tune's head from a probe; strategy {} has no head to train (remove head_init)",
                    self.strategy
                ),
            ));
        }
        for (name, g) in &self.groups {
            if !group_names.iter().any(|n| n == name) {
                return Err(GraftError::recipe(
                    format!("groups.{name}"),
                    format!("unknown group; this backbone's groups are {}", group_names.join(", ")),
                ));
            }
            if let Some(lr) = g.lr {
                pos(&format!("groups.{name}.lr"), lr)?;
            }
        }
        let n = group_names.len();
        let head = n - 1;
        let probe_group = match &p.group {
            Some(g) => group_names.iter().position(|n| n == g).ok_or_else(|| {
                GraftError::recipe("probe.group", format!("unknown group `{g}`; this backbone's groups are {}", group_names.join(", ")))
            })?,
            None => head.saturating_sub(1),
        };
        let is_probe = self.strategy != Strategy::Finetune;
        let mut groups = Vec::with_capacity(n);
        for (i, name) in group_names.iter().enumerate() {
            let spec = self.groups.get(name);
            let explicit = spec.and_then(|s| s.action);
            let mut action = explicit.unwrap_or(self.default_action);
            if is_probe {
                if let Some(a) = explicit {
                    if a != Action::Freeze {
                        return Err(GraftError::recipe(
                            format!("groups.{name}.action"),
                            format!("strategy {} keeps the backbone fixed; only `freeze` is allowed", self.strategy.as_str()),
                        ));
                    }
                }
                action = Action::Freeze;
            } else if i == head && source_classes != target_classes {
                match explicit {
                    Some(Action::Reinit) | None => action = Action::Reinit,
                    Some(a) => {
                        return Err(GraftError::recipe(
                            format!("groups.{name}.action"),
                            format!(
                                "the backbone's head has {source_classes} classes and the task {target_classes}; the head must be `reinit`, not `{}`",
                                a.as_str()
                            ),
                        ))
                    }
                }
            }
            let depth = (head - i) as i32;
            let lr = match action {
                Action::Freeze => 0.0,
                Action::Reinit => spec.and_then(|s| s.lr).unwrap_or(self.lr),
                Action::Finetune => spec.and_then(|s| s.lr).unwrap_or(self.lr * self.layer_decay.powi(depth)),
            };
            groups.push(CheckedGroup { name: name.clone(), action, lr });
        }
        if !is_probe && groups.iter().all(|g| g.action == Action::Freeze) {
            return Err(GraftError::recipe(
                "groups",
                "strategy finetune with every group frozen trains nothing; use strategy linear-probe or unfreeze a group",
            ));
        }
        Ok(CheckedRecipe { recipe: self.clone(), groups, probe_group })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        ["stem", "stage1", "stage2", "stage3", "head"].iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn presets_validate_and_replace_head() {
        for p in PRESETS {
            let r = preset(p).unwrap();
            let c = r.check(&names(), 10, 5).unwrap();
            assert_eq!(c.groups().len(), 5);
            if r.strategy == Strategy::Finetune {
                assert_eq!(c.groups()[4].action, Action::Reinit, "{p}");
            }
        }
        let c = preset("linear-probe").unwrap().check(&names(), 10, 5).unwrap();
        assert!(c.groups().iter().all(|g| g.action == Action::Freeze && g.lr == 0.0));
        assert_eq!(c.probe_group(), 3);
        let c = preset("scratch").unwrap().check(&names(), 10, 5).unwrap();
        assert!(c.groups().iter().all(|g| g.action == Action::Reinit));
    }

    #[test]
    fn layer_decay_gives_layerwise_rates() {
        let mut r = preset("finetune-all").unwrap();
        r.lr = 0.1;
        r.layer_decay = 0.5;
        r.groups.insert("stem".into(), GroupSpec { action: Some(Action::Freeze), lr: None });
        r.groups.insert("stage1".into(), GroupSpec { action: None, lr: Some(0.003) });
        let c = r.check(&names(), 10, 5).unwrap();
        let lrs: Vec<f64> = c.groups().iter().map(|g| g.lr).collect();
        assert_eq!(lrs, vec![0.0, 0.003, 0.025, 0.05, 0.1]);
    }

    #[test]
    fn bad_recipes_name_the_field() {
        let check = |r: Recipe| match r.check(&names(), 10, 5) {
            Err(GraftError::Recipe { field, .. }) => field,
            other => panic!("expected a recipe error, got {other:?}"),
        };
        let mut r = preset("finetune-all").unwrap();
        r.groups.insert("stage9".into(), GroupSpec::default());
        assert_eq!(check(r), "groups.stage9");
        let mut r = preset("finetune-all").unwrap();
        r.lr = -1.0;
        assert_eq!(check(r), "lr");
        let mut r = preset("finetune-all").unwrap();
        r.lr = 0.0;
        assert_eq!(check(r), "lr");
        let mut r = preset("finetune-all").unwrap();
        r.groups.insert("stage2".into(), GroupSpec { action: None, lr: Some(0.0) });
        assert_eq!(check(r), "groups.stage2.lr");
        let mut r = preset("finetune-all").unwrap();
        r.groups.insert("head".into(), GroupSpec { action: Some(Action::Freeze), lr: None });
        assert_eq!(check(r), "groups.head.action");
        let mut r = preset("finetune-all").unwrap();
        r.batch_size = 1;
        assert_eq!(check(r), "batch_size");
        let mut r = preset("linear-probe").unwrap();
        r.probe.group = Some("nope".into());
        assert_eq!(check(r), "probe.group");
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let mut v = serde_json::to_value(preset("finetune-all").unwrap()).unwrap();
        v["learning_rate"] = serde_json::json!(0.1);
        let e = Recipe::from_json(&v.to_string(), "test.json").unwrap_err();
        assert!(e.to_string().contains("learning_rate"), "{e}");
        let mut v = serde_json::to_value(preset("finetune-all").unwrap()).unwrap();
        v["optimizer"]["wd"] = serde_json::json!(0.1);
        let e = Recipe::from_json(&v.to_string(), "test.json").unwrap_err();
        assert!(e.to_string().contains("wd"), "{e}");
    }

    #[test]
    fn recipe_round_trips_and_has_schema() {
        for p in PRESETS {
            let r = preset(p).unwrap();
            assert_eq!(Recipe::from_json(&r.to_json(), "x").unwrap(), r);
        }
        let s = Recipe::json_schema();
        assert!(s["properties"]["strategy"].is_object());
    }
}
