//! `graft run`: one recipe end to end.
use super::features::{features, features_at};
use super::probe::{
    accuracy, balanced_accuracy, balanced_accuracy_of, fit_svm_cv_weighted, NearestCentroid, ProbeHead, ProbeReport, SoftmaxProbe,
    Standardiser,
};
use super::train::{evaluate, train, EpochMetrics, Progress};
use crate::backbones::{card, Model, ModelRef};
use crate::data::{load_dataset, Dataset, ImageSet, LoadOptions, Normalisation};
use crate::error::{GraftError, Result};
use crate::metadataset;
use crate::recipe::{Action, CheckedRecipe, Recipe, Strategy};
use crate::util::{now_rfc3339, sha256_hex, write_atomic};
use candle_core::Device;
use ndarray::Array2;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Instant;

pub const CANDLE_VERSION: &str = "0.11.1";

pub struct RunOptions {
    pub data: LoadOptions,
    pub skip_bad: bool,
    /// The recipe as given: `run` checks it once against the backbone and the task and passes
    /// the [`CheckedRecipe`] on; `run_prepared` takes only a checked one.
    pub recipe: Recipe,
    pub backbone: String,
    pub device: Device,
    pub device_name: String,
    pub runs_dir: PathBuf,
    /// Meta-dataset folder to append to (None: do not append).
    pub meta_dir: Option<PathBuf>,
    pub family: Option<String>,
    pub task_id: Option<String>,
    pub command: String,
    /// Run the backbone at this square input size instead of its card's (e.g. 64-128 px for
    /// an ImageNet backbone on small images).
    pub input_size: Option<usize>,
    /// Task meta-features computed by the caller (`graft auto`), recorded with the run.
    pub context: TaskContext,
    /// Save the trained classifier in the run directory for `graft predict` (`run` and `auto`
    /// do; sweeps and experiments, whose thousands of runs are for the meta-dataset, do not).
    pub save_model: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupRecord {
    pub name: String,
    pub action: String,
    #[serde(deserialize_with = "crate::util::nan_as_null::f64")]
    pub lr: f64,
    /// NaN (written as `null`) when the run diverged.
    #[serde(deserialize_with = "crate::util::nan_as_null::f64")]
    pub weight_change: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatasetRecord {
    pub root: String,
    pub fingerprint: String,
    pub classes: Vec<String>,
    pub split: crate::data::SplitInfo,
    pub train_per_class: Vec<usize>,
    pub n_val: usize,
    /// Validation images per class (empty without a validation split, and in records written
    /// before it was added).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub val_per_class: Vec<usize>,
    pub n_unlabelled: usize,
    pub skipped: Vec<String>,
    /// sha256 over the test split's decoded images and labels (as `fingerprint` is the training
    /// split's): two runs with the same one were scored on the same test images. Absent from
    /// records written before it was added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_fingerprint: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Timings {
    pub load_seconds: f64,
    pub decode_seconds: f64,
    pub model_seconds: f64,
    pub train_seconds: f64,
    pub eval_seconds: f64,
    pub total_seconds: f64,
}

/// How a run ended: `ok`, or `diverged` (a NaN or infinite loss, weight or logit; exit 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Ok,
    Diverged,
}

impl RunStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            RunStatus::Ok => "ok",
            RunStatus::Diverged => "diverged",
        }
    }
    /// The status written as `s` in a run record or the meta-dataset.
    pub fn parse(s: &str) -> Option<RunStatus> {
        [RunStatus::Ok, RunStatus::Diverged].into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything about one run; `run.json` in the run directory and the `--json` output.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: String,
    pub run_dir: String,
    pub status: RunStatus,
    pub error: Option<String>,
    #[serde(deserialize_with = "crate::util::nan_as_null::f64")]
    pub test_accuracy: f64,
    pub val_accuracy: Option<f64>,
    pub n_train: usize,
    pub n_test: usize,
    pub n_classes: usize,
    pub train_seconds: f64,
    pub backbone: String,
    /// `--backbone` as given (a model name or a file path).
    #[serde(default)]
    pub backbone_ref: String,
    pub backbone_sha256: String,
    pub arch: String,
    /// The backbone input the run used (the card's, or `--input-size`).
    #[serde(default)]
    pub input: Option<crate::data::InputSpec>,
    pub recipe: Recipe,
    pub groups: Vec<GroupRecord>,
    pub seed: u64,
    pub strategy: Strategy,
    pub task_id: String,
    pub family: String,
    pub dataset: DatasetRecord,
    pub probe: Option<ProbeReport>,
    pub epochs_run: usize,
    pub best_epoch: Option<usize>,
    pub final_train_loss: Option<f64>,
    /// Loss of the first optimisation step (fine-tuning only); CPU/GPU parity compares it.
    #[serde(default)]
    pub first_step_loss: Option<f64>,
    pub test_loss: Option<f64>,
    /// confusion[true][predicted] on the test split.
    pub confusion: Vec<Vec<usize>>,
    /// Mean over the test split's classes of the share of their images classified correctly
    /// (mean per-class recall); equals `test_accuracy` when every class has as many test
    /// images. Absent from records written before it was added.
    #[serde(default)]
    pub test_balanced_accuracy: Option<f64>,
    /// The 95% Wilson score interval of `test_accuracy` over the `n_test` images: where the
    /// accuracy on another test set of that size from the same source would likely fall
    /// (`executor::predictions::wilson_interval`). Absent from records written before it was added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_accuracy_interval: Option<[f64; 2]>,
    /// The validation split's mean per-class recall, when it has one (`auto` judges runs with
    /// `class_weights: balanced` by it). Absent from records written before it was added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_balanced_accuracy: Option<f64>,
    /// sha256 of the final weights (see `Model::weights_sha256`), for reproducibility checks.
    pub final_weights_sha256: String,
    pub timings: Timings,
    pub device: String,
    pub threads: usize,
    pub versions: serde_json::Value,
    pub command: String,
    pub created_at: String,
    pub metafeatures: metadataset::TaskProfile,
    /// Transferability meta-features and the task's shift, when the caller computed them.
    #[serde(default)]
    pub context: TaskContext,
    /// The recipe's pretraining step, when it had one (losses per epoch, images/s).
    #[serde(default)]
    pub pretrain: Option<crate::pretrain::PretrainOutcome>,
    /// The trained classifier's description in the run directory (`classifier.json`, beside
    /// `model.safetensors`), for `graft predict`; absent when the run did not save it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saved_model: Option<String>,
}

impl RunRecord {
    /// ", 95% interval [lo, hi]" for the test accuracy over the run's `n_test` images, when on
    /// record.
    pub fn interval_note(&self) -> String {
        match self.test_accuracy_interval {
            Some([lo, hi]) => format!(", 95% interval [{lo:.3}, {hi:.3}]"),
            None => String::new(),
        }
    }
    /// ", balanced accuracy X" when the test split's classes have different numbers of images
    /// (there the accuracy weighs each class by its images), else nothing.
    pub fn balanced_note(&self) -> String {
        let sizes: Vec<usize> = self.confusion.iter().map(|r| r.iter().sum()).filter(|&n| n > 0).collect();
        match self.test_balanced_accuracy {
            Some(b) if sizes.iter().any(|&n| n != sizes[0]) => format!(", balanced accuracy {b:.4}"),
            _ => String::new(),
        }
    }
}

/// Frozen-backbone features shared by the probe runs of one prepared task (a sweep block: the
/// same backbone weights, input size and decoded images). A miss extracts the split at the
/// probed group and at the first, middle and penultimate body groups in one pass; a hit
/// returns the same values (eval mode is deterministic) with the seconds that pass took, which
/// the run adds to its recorded times, so a run's times are what it would spend alone.
#[derive(Default)]
pub struct FeatureCache {
    map: std::sync::Mutex<std::collections::HashMap<(&'static str, usize), CachedFeatures>>,
}

/// A split's features at one group and the seconds computing them took.
type CachedFeatures = (std::sync::Arc<Array2<f64>>, f64);

impl FeatureCache {
    /// Features of `split` at group `g`: (features, seconds measured now, seconds replayed).
    fn get(
        &self,
        model: &Model,
        split: &'static str,
        set: &ImageSet,
        norm: &Normalisation,
        g: usize,
    ) -> Result<(std::sync::Arc<Array2<f64>>, f64, f64)> {
        if let Some((f, secs)) = self.map.lock().expect("feature cache").get(&(split, g)) {
            return Ok((f.clone(), 0.0, *secs));
        }
        let body = model.n_groups() - 1;
        let mut at = vec![g, 0, (body - 1) / 2, body - 1];
        at.sort();
        at.dedup();
        let t = Instant::now();
        let fs = features_at(model, set, norm, &at)?;
        let secs = t.elapsed().as_secs_f64();
        let mut map = self.map.lock().expect("feature cache");
        let mut out = None;
        for (gi, f) in at.into_iter().zip(fs) {
            let f = std::sync::Arc::new(f);
            if gi == g {
                out = Some(f.clone());
            }
            // an entry already there stays (and keeps the seconds of the pass that made it)
            map.entry((split, gi)).or_insert((f, secs));
        }
        Ok((out.expect("the probed group was extracted"), secs, 0.0))
    }
}

/// Pretrained bodies shared by the pretrain-first runs of one prepared task (a sweep block),
/// keyed by everything the pretraining step depends on: the pretraining spec, the seed, the
/// class count and which body groups start re-initialised (the body it starts from), on the same
/// backbone, input size and decoded pool. The step trains only body groups, so runs that differ
/// after it (fine-tuning or a probe, their learning rates) start from the same weights: a hit
/// sets them (bit-identical to pretraining again; the step is deterministic given its seed) and
/// replays the seconds the pretraining took, so a run's times are what it would spend alone.
#[derive(Default)]
pub struct PretrainCache {
    map: std::sync::Mutex<std::collections::HashMap<String, Pretrained>>,
}

/// A pretrained body and the outcome of the pretraining that made it.
type Pretrained = (std::sync::Arc<std::collections::BTreeMap<String, candle_core::Tensor>>, crate::pretrain::PretrainOutcome);

impl PretrainCache {
    /// Sets `model`'s body to the pretraining stored under `key`, if any, and returns its
    /// outcome marked as replayed.
    fn replay(&self, key: &str, model: &Model) -> Result<Option<crate::pretrain::PretrainOutcome>> {
        let Some((state, outcome)) = self.map.lock().expect("pretrain cache").get(key).cloned() else { return Ok(None) };
        model.set_vars(&state)?;
        Ok(Some(crate::pretrain::PretrainOutcome { replayed: true, ..outcome }))
    }

    /// Stores `model`'s freshly pretrained body under `key`.
    fn store(&self, key: String, model: &Model, outcome: &crate::pretrain::PretrainOutcome) -> Result<()> {
        let state = std::sync::Arc::new(model.body_state()?);
        self.map.lock().expect("pretrain cache").insert(key, (state, outcome.clone()));
        Ok(())
    }

    fn key(recipe: &Recipe, checked: &CheckedRecipe, n_classes: usize) -> Option<String> {
        let spec = recipe.pretrain.as_ref()?;
        // the head is neither trained by the step nor replayed
        let body = &checked.groups()[..checked.groups().len().saturating_sub(1)];
        let reinit: Vec<&str> = body.iter().filter(|g| g.action == Action::Reinit).map(|g| g.name.as_str()).collect();
        Some(format!("{}|seed={}|classes={n_classes}|reinit={}", serde_json::to_string(spec).ok()?, recipe.seed, reinit.join(",")))
    }
}

/// Why a probe cannot be fitted: the backbone's weights or its features at the probed group
/// hold NaN or infinite values (a corrupt checkpoint, or pretraining that diverged).
fn probe_inputs_not_finite(model: &Model, train_features: &Array2<f64>, g: usize) -> Result<Option<String>> {
    if let Some(v) = model.first_non_finite()? {
        return Ok(Some(format!("the backbone's weights `{v}` are not finite")));
    }
    Ok(train_features.iter().any(|v| !v.is_finite()).then(|| format!("the features at group {g} are not finite")))
}

fn labels(set: &ImageSet) -> Vec<usize> {
    set.labels.iter().map(|&l| l as usize).collect()
}

fn make_run_id(fingerprint: &str, recipe_json: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let h = sha256_hex(format!("{fingerprint}{recipe_json}{nanos}{}", std::process::id()).as_bytes());
    format!("{}-{}", chrono::Utc::now().format("%Y%m%dT%H%M%S"), &h[..8])
}

/// Build a model for a card, transfer its weights into every group whose action is not
/// `reinit` (and a head with the same class count), and re-initialise the rest from the seed.
pub fn build_transferred(mref: &ModelRef, checked: &CheckedRecipe, n_classes: usize, device: &Device) -> Result<Model> {
    let model = Model::for_card(mref, n_classes, checked.recipe().seed, device)?;
    if model.group_names != mref.card.groups {
        return Err(GraftError::Model(format!(
            "{}: card lists groups {:?} but arch {} has {:?}",
            mref.weights.display(),
            mref.card.groups,
            mref.card.arch,
            model.group_names
        )));
    }
    let mut skip: Vec<String> = checked.groups().iter().filter(|g| g.action == Action::Reinit).map(|g| g.name.clone()).collect();
    if n_classes != mref.card.n_classes {
        skip.push("head".into());
    }
    model.load_weights(&mref.weights, &skip)?;
    Ok(model)
}

pub use crate::data::{decode_dataset, Decoded};

/// A dataset loaded and decoded for one backbone, ready for any number of recipes.
pub struct Prepared {
    pub mref: ModelRef,
    pub ds: Dataset,
    pub dec: Decoded,
    pub load_seconds: f64,
    pub decode_seconds: f64,
    /// Features shared by the task's probe runs (None: every run extracts its own).
    pub features: Option<FeatureCache>,
    /// Pretrained bodies shared by the task's pretrain-first runs (None: every run pretrains).
    pub pretrained: Option<PretrainCache>,
    /// The stored training images' traits, measured once for all the task's runs ([`Prepared::images`]).
    pub images: std::sync::OnceLock<Option<crate::metafeatures::images::ImageTraits>>,
}

impl Prepared {
    /// The stored training images' native size and colourfulness, measured on first use.
    pub fn images(&self) -> Option<crate::metafeatures::images::ImageTraits> {
        *self.images.get_or_init(|| crate::metafeatures::images::image_traits(&self.ds.train))
    }
}

/// Extra task meta-features a caller computed (the sweep, `graft auto`): the backbone's
/// transferability scores, and a description of the task as drawn.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TaskContext {
    pub transfer: Option<metadataset::TransferFeatures>,
    /// The input shift applied to the task (`none` for a user's own data).
    pub shift: String,
    /// The task's description as JSON (sweeps), or empty.
    pub spec: String,
}

pub fn run(opts: &RunOptions, progress: &dyn Progress) -> Result<RunRecord> {
    remove_stale_run_temps(&opts.runs_dir);
    let mut mref = card::resolve(&opts.backbone)?;
    // --input-size wins over the recipe's input_size (which wins over the card's)
    if let Some(sz) = opts.input_size.or(opts.recipe.input_size) {
        card::override_input_size(&mut mref, sz)?;
    }
    let seed = opts.recipe.seed;
    let mut load_opts = opts.data.clone();
    load_opts.seed = seed;
    let t0 = Instant::now();
    let ds = load_dataset(&load_opts)?;
    let load_seconds = t0.elapsed().as_secs_f64();
    tracing::info!(
        "loaded {}: {} classes, {} train / {} val / {} test / {} unlabelled images ({:.2} s)",
        ds.root.display(),
        ds.n_classes(),
        ds.train.len(),
        ds.val.len(),
        ds.test.len(),
        ds.unlabelled.len(),
        load_seconds
    );
    // fail on a bad recipe before decoding anything
    let checked = opts.recipe.check(&mref.card.groups, mref.card.n_classes, ds.n_classes())?;
    let t0 = Instant::now();
    let dec = decode_dataset(&ds, mref.card.input, opts.skip_bad, checked.recipe().val_fraction, seed)?;
    let decode_seconds = t0.elapsed().as_secs_f64();
    tracing::info!(
        "decoded at {}x{}x{} ({:.2} s)",
        mref.card.input.channels,
        mref.card.input.height,
        mref.card.input.width,
        decode_seconds
    );
    let prep = Prepared { mref, ds, dec, load_seconds, decode_seconds, features: None, pretrained: None, images: Default::default() };
    run_prepared(opts, &checked, &prep, &opts.context, None, progress)
}

/// A run's row in the meta-dataset (here, beside the run record, so the meta-dataset module
/// does not depend on the executor).
impl metadataset::MetaRow {
    /// The meta-dataset row of a finished run.
    pub fn from_run(r: &RunRecord) -> Self {
        let rc = &r.recipe;
        let count = |a: &str| r.groups.iter().filter(|g| g.action == a).count() as i64;
        let actions = r.groups.iter().map(|g| format!("{}={}", g.name, g.action)).collect::<Vec<_>>().join(",");
        let probe_group = match rc.strategy {
            crate::recipe::Strategy::Finetune => String::new(),
            _ => r.probe.as_ref().map(|p| p.group.clone()).unwrap_or_default(),
        };
        metadataset::MetaRow {
            run_id: r.run_id.clone(),
            task_id: r.task_id.clone(),
            family: r.family.clone(),
            backbone: r.backbone.clone(),
            strategy: r.strategy.as_str().into(),
            status: r.status.as_str().into(),
            test_accuracy: r.test_accuracy,
            val_accuracy: r.val_accuracy,
            seed: r.seed as i64,
            train_seconds: r.train_seconds,
            schema_version: metadataset::SCHEMA_VERSION,
            device: r.device.clone(),
            created_at: r.created_at.clone(),
            n_train: r.n_train as i64,
            n_test: r.n_test as i64,
            n_classes: r.n_classes as i64,
            mf: r.metafeatures.clone(),
            mft: r.context.transfer.clone().unwrap_or_default(),
            has_mft: r.context.transfer.is_some(),
            task_shift: if r.context.shift.is_empty() { "none".into() } else { r.context.shift.clone() },
            task_spec: r.context.spec.clone(),
            r_n_groups: r.groups.len() as i64,
            r_name: rc.name.clone().unwrap_or_default(),
            r_probe_depth: match rc.strategy {
                crate::recipe::Strategy::Finetune => None,
                _ => r.probe.as_ref().and_then(|p| {
                    let body = r.groups.len().saturating_sub(1);
                    r.groups.iter().position(|g| g.name == p.group).map(|i| if body > 1 { i as f64 / (body - 1) as f64 } else { 1.0 })
                }),
            },
            r_pretrain: rc.pretrain.as_ref().map(|p| format!("{}:{}", p.method.as_str(), p.epochs)).unwrap_or_else(|| "none".into()),
            wall_seconds: r.timings.total_seconds,
            r_input_size: r.input.map(|i| i.height as i64).unwrap_or(r.metafeatures.input_size as i64),
            r_default_action: rc.default_action.as_str().into(),
            r_actions: actions,
            r_n_freeze: count("freeze"),
            r_n_finetune: count("finetune"),
            r_n_reinit: count("reinit"),
            r_lr: rc.lr,
            r_layer_decay: rc.layer_decay,
            r_optimizer: format!("{:?}", rc.optimizer.kind).to_lowercase(),
            r_weight_decay: rc.optimizer.weight_decay,
            r_l2sp: rc.l2sp,
            r_schedule: format!("{:?}", rc.schedule.kind).to_lowercase(),
            r_warmup_epochs: rc.schedule.warmup_epochs,
            r_epochs: rc.epochs as i64,
            r_batch_size: rc.batch_size as i64,
            r_label_smoothing: rc.label_smoothing,
            r_probe_group: probe_group,
            r_aug_crop_padding: rc.augment.crop_padding as i64,
            r_aug_hflip: rc.augment.hflip,
            r_aug_random_resized_crop: rc.augment.random_resized_crop.unwrap_or(0.0) as f64,
            r_aug_color_jitter: rc.augment.color_jitter as f64,
            r_aug_gaussian_noise: rc.augment.gaussian_noise as f64,
            r_aug_gaussian_blur: rc.augment.gaussian_blur as f64,
            recipe: serde_json::to_string(rc).expect("recipe serialises"),
        }
    }
}

/// Remove temporary files that killed or disk-full runs left in the run directories under
/// `runs_dir` (`.metrics.csv.tmp-<pid>` and the like; see [`crate::util::remove_stale_temps`]).
pub fn remove_stale_run_temps(runs_dir: &std::path::Path) {
    let Ok(rd) = std::fs::read_dir(runs_dir) else { return };
    let mut n = 0;
    for e in rd.flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            n += crate::util::remove_stale_temps(&e.path());
        }
    }
    if n > 0 {
        tracing::info!("removed {n} stale temporary files under {}", runs_dir.display());
    }
}

/// What training (or fitting a probe) and evaluating gave, before the run record is written.
struct Outcome {
    test_pred: Vec<usize>,
    test_loss: Option<f64>,
    /// The validation split's predictions, when there is one.
    val_pred: Option<Vec<usize>>,
    epochs: Vec<EpochMetrics>,
    best_epoch: Option<usize>,
    /// Why the run diverged (a NaN or infinite loss, weight, logit or feature).
    diverged: Option<String>,
    first_step_loss: Option<f64>,
    probe: Option<ProbeReport>,
    /// The fitted probe of a probe run, saved with the model for `graft predict`.
    probe_head: Option<ProbeHead>,
    /// Seconds spent evaluating the test and validation splits (not training time).
    eval_seconds: f64,
    /// Seconds of feature extraction another run of the task already spent, whose features
    /// this run reused: (training split, test and validation splits).
    replayed_seconds: (f64, f64),
}

impl Outcome {
    fn diverged(n_test: usize, why: String) -> Outcome {
        Outcome {
            test_pred: vec![0; n_test],
            test_loss: None,
            val_pred: None,
            epochs: Vec::new(),
            best_epoch: None,
            diverged: Some(why),
            first_step_loss: None,
            probe: None,
            probe_head: None,
            eval_seconds: 0.0,
            replayed_seconds: (0.0, 0.0),
        }
    }
}

/// The recipe's optional unsupervised pretraining step, on the unlabelled pool when the recipe
/// asks for it and there is one, else on the training images without labels.
/// With a [`PretrainCache`], an identical earlier pretraining of the task is replayed (the
/// outcome says so, with that pretraining's seconds).
fn pretrain_step(
    opts: &RunOptions,
    prep: &Prepared,
    model: &Model,
    checked: &CheckedRecipe,
    norm: &Normalisation,
) -> Result<Option<crate::pretrain::PretrainOutcome>> {
    let recipe = checked.recipe();
    let Some(spec) = &recipe.pretrain else { return Ok(None) };
    let slot = prep.pretrained.as_ref().zip(PretrainCache::key(recipe, checked, prep.ds.n_classes()));
    if let Some((cache, key)) = &slot {
        if let Some(outcome) = cache.replay(key, model)? {
            tracing::info!("pretraining ({}) replayed from an earlier run of this task", outcome.method);
            return Ok(Some(outcome));
        }
    }
    let (ds, dec) = (&prep.ds, &prep.dec);
    let owned;
    let images: &dyn crate::data::Images = match (&dec.unlabelled, spec.data.as_str()) {
        (Some(u), "unlabelled") if u.n >= 2 => u,
        (None, "unlabelled") if ds.unlabelled.len() >= 2 => {
            // a large pool is read from its files batch by batch (the same batches)
            use crate::data::images::{open_images, IN_MEMORY_LIMIT_MB};
            owned = open_images(&ds.unlabelled, prep.mref.card.input, opts.skip_bad, IN_MEMORY_LIMIT_MB)?;
            owned.as_ref()
        }
        _ => &dec.train,
    };
    let outcome = crate::pretrain::pretrain(model, images, norm, spec, recipe.seed, &|_| {})?;
    if let Some((cache, key)) = slot {
        cache.store(key, model, &outcome)?;
    }
    Ok(Some(outcome))
}

/// LP-FT's first stage ([`crate::recipe::HeadInit::Probe`]): fit a softmax probe (`probe.l2`,
/// `probe.iterations`) on the head inputs of the training images as the fine-tune's first
/// steps see them (no augmentation), centred and scaled by one factor, and set the head to it,
/// folded back to the raw inputs. Returns the probe's report (`kind` "softmax head init");
/// non-finite features are [`GraftError::Diverged`].
fn init_head_from_probe(model: &Model, checked: &CheckedRecipe, dec: &Decoded, norm: &Normalisation, k: usize) -> Result<ProbeReport> {
    let recipe = checked.recipe();
    // the head inputs as the fine-tune's first steps see them: each trained group's BatchNorm on
    // the statistics of a training batch (of the recipe's size), frozen groups on their running
    // statistics; the running statistics this updates are restored after
    let train: Vec<bool> = checked.groups().iter().map(|g| g.action != Action::Freeze).collect();
    let saved = model.state()?;
    // batches drawn as training draws them: shuffled (from the recipe's seed), not class by class
    let mut idx: Vec<usize> = (0..dec.train.n).collect();
    idx.shuffle(&mut crate::util::rng_for(recipe.seed, "head-init"));
    let bs = recipe.batch_size.clamp(2, 256);
    let mut x: Option<Array2<f64>> = None;
    for chunk in idx.chunks(bs) {
        let t = super::train::to_tensor(dec.train.batch(chunk, norm, None), chunk.len(), &dec.train, &model.device)?;
        // a last batch of one image has no batch statistics: eval mode
        let flags: &[bool] = if chunk.len() > 1 { &train } else { &[] };
        let h = model.head_inputs(&t, flags)?.to_dtype(candle_core::DType::F64)?.to_vec2::<f64>()?;
        let x = x.get_or_insert_with(|| Array2::zeros((dec.train.n, h[0].len())));
        for (&i, row) in chunk.iter().zip(h) {
            x.row_mut(i).assign(&ndarray::Array1::from(row));
        }
    }
    model.set_vars(&saved)?;
    let x = x.ok_or_else(|| GraftError::Data("head_init probe: no training images".into()))?;
    if x.iter().any(|v| !v.is_finite()) {
        return Err(GraftError::Diverged("head_init probe: the backbone's features of the training images are not finite".into()));
    }
    // centred, and scaled by one factor (the root mean variance), not per column: a nearly dead
    // channel scaled up to unit variance would get a weight that explodes once the fine-tune
    // moves its input (batch statistics, augmentation)
    let mean = x.mean_axis(ndarray::Axis(0)).expect("training images");
    let centred = &x - &mean;
    let scale = (centred.mapv(|v| v * v).mean().unwrap_or(0.0)).sqrt().max(1e-8);
    let sd = ndarray::Array1::from_elem(x.ncols(), scale);
    let (m, mut rep) = SoftmaxProbe::fit_weighted(
        &(centred / scale),
        &labels(&dec.train),
        k,
        recipe.probe.l2,
        recipe.probe.iterations,
        recipe.class_weights,
    )?;
    let (w, b) = m.on_raw_features(&mean, &sd);
    let dev = &model.device;
    let w = candle_core::Tensor::from_vec(w.iter().map(|&v| v as f32).collect::<Vec<_>>(), w.dim(), dev)?;
    let b = candle_core::Tensor::from_vec(b.iter().map(|&v| v as f32).collect::<Vec<_>>(), b.len(), dev)?;
    model.set_head(&w, &b)?;
    rep.kind = "softmax head init".into();
    rep.group = "head".into();
    Ok(rep)
}

/// Fine-tune, then evaluate on the test (and validation) split. A loss, final weight or test
/// logit that is NaN or infinite means the run diverged.
fn finetune_outcome(
    model: &Model,
    checked: &CheckedRecipe,
    dec: &Decoded,
    norm: &Normalisation,
    start: &std::collections::BTreeMap<String, candle_core::Tensor>,
    progress: &dyn Progress,
) -> Result<Outcome> {
    let out = train(model, checked, &dec.train, dec.val.as_ref(), norm, start, progress)?;
    let mut o = Outcome {
        test_pred: vec![0; dec.test.n],
        test_loss: None,
        val_pred: None,
        epochs: out.epochs,
        best_epoch: out.best_epoch,
        diverged: out.diverged,
        first_step_loss: out.first_step_loss,
        probe: None,
        probe_head: None,
        eval_seconds: 0.0,
        replayed_seconds: (0.0, 0.0),
    };
    if o.diverged.is_none() {
        // a loss that stayed finite can still leave NaN or infinite weights or logits
        o.diverged = model.first_non_finite()?.map(|v| format!("the final weights of `{v}` are not finite"));
    }
    if o.diverged.is_some() {
        return Ok(o);
    }
    let te = Instant::now();
    let (l, _, p) = evaluate(model, &dec.test, norm, 256)?;
    let va = match &dec.val {
        Some(v) => Some(evaluate(model, v, norm, 256)?.2),
        None => None,
    };
    o.eval_seconds = te.elapsed().as_secs_f64();
    if l.is_finite() {
        (o.test_pred, o.test_loss, o.val_pred) = (p, Some(l), va);
    } else {
        o.diverged = Some(format!("the test loss is {l} (non-finite test logits)"));
    }
    Ok(o)
}

/// Fit the recipe's probe (linear SVM or softmax) on standardised features of the probed group,
/// then predict the test (and validation) split. Non-finite weights or features mean the run
/// diverged: there is nothing to fit a probe on.
fn probe_outcome(
    model: &Model,
    checked: &CheckedRecipe,
    dec: &Decoded,
    norm: &Normalisation,
    k: usize,
    cache: Option<&FeatureCache>,
) -> Result<Outcome> {
    let recipe = checked.recipe();
    let g = checked.probe_group();
    let mut replayed = (0.0, 0.0);
    let extract = |split: &'static str, set: &ImageSet| -> Result<(Array2<f64>, f64)> {
        match cache {
            Some(c) => {
                let (f, _, again) = c.get(model, split, set, norm, g)?;
                Ok(((*f).clone(), again))
            }
            None => Ok((features(model, set, norm, g)?, 0.0)),
        }
    };
    let (xtr, again) = extract("train", &dec.train)?;
    replayed.0 += again;
    if let Some(why) = probe_inputs_not_finite(model, &xtr, g)? {
        return Ok(Outcome::diverged(dec.test.n, why));
    }
    let ytr = labels(&dec.train);
    let te = Instant::now();
    let (xte, again) = extract("test", &dec.test)?;
    replayed.1 += again;
    let xva = match &dec.val {
        Some(v) => {
            let (x, again) = extract("val", v)?;
            replayed.1 += again;
            Some(x)
        }
        None => None,
    };
    let eval_seconds = te.elapsed().as_secs_f64();
    // the linear probes see standardised features; the centroid probe centres and normalises
    // the raw ones itself
    let (head, mut rep) = match recipe.strategy {
        Strategy::CentroidProbe => {
            let (m, rep) = NearestCentroid::fit(&xtr, &ytr, k)?;
            (ProbeHead::Centroid(m), rep)
        }
        Strategy::LinearProbe => {
            let st = Standardiser::fit(&xtr);
            let (m, rep) = fit_svm_cv_weighted(
                &st.apply(&xtr),
                &ytr,
                k,
                &recipe.probe.c_grid,
                recipe.probe.cv_folds,
                recipe.seed,
                recipe.class_weights,
            )?;
            let (w, b) = m.into_parts();
            (ProbeHead::Svm { st, w, b }, rep)
        }
        _ => {
            let st = Standardiser::fit(&xtr);
            let (m, rep) =
                SoftmaxProbe::fit_weighted(&st.apply(&xtr), &ytr, k, recipe.probe.l2, recipe.probe.iterations, recipe.class_weights)?;
            let (w, b) = m.into_parts();
            (ProbeHead::Softmax { st, w, b }, rep)
        }
    };
    // the predictions come from the head as saved for `graft predict`
    let (pred, pv) = (head.predict(&xte), xva.map(|x| head.predict(&x)));
    rep.group = checked.groups()[g].name.clone();
    Ok(Outcome {
        test_pred: pred,
        test_loss: None,
        val_pred: pv,
        epochs: Vec::new(),
        best_epoch: None,
        diverged: None,
        first_step_loss: None,
        probe: Some(rep),
        probe_head: Some(head),
        eval_seconds,
        replayed_seconds: replayed,
    })
}

/// Run a recipe checked against the prepared backbone and task (the one check: `run`, the
/// sweep and the experiments check `opts.recipe` once and pass the result) on prepared data.
/// `run_id`: a fixed id (sweeps), or None for a fresh one.
pub fn run_prepared(
    opts: &RunOptions,
    checked: &CheckedRecipe,
    prep: &Prepared,
    ctx: &TaskContext,
    run_id: Option<String>,
    progress: &dyn Progress,
) -> Result<RunRecord> {
    let t_all = Instant::now();
    let (mref, ds, dec) = (&prep.mref, &prep.ds, &prep.dec);
    let (load_seconds, decode_seconds) = (prep.load_seconds, prep.decode_seconds);
    let mut recipe = checked.recipe().clone();
    // the backbone is recorded on its own (`backbone`, `backbone_sha256`), not in the recipe
    recipe.backbone = None;
    let seed = recipe.seed;
    let norm = mref.card.normalisation.clone();
    let _precision = crate::kernels::set_precision(recipe.precision);

    // The run directory and its recipe are written before any training starts.
    let recipe_json = recipe.to_json();
    let run_id = run_id.unwrap_or_else(|| make_run_id(&dec.train.fingerprint, &recipe_json));
    let run_dir = opts.runs_dir.join(&run_id);
    std::fs::create_dir_all(&run_dir).map_err(|e| GraftError::io(&run_dir, e))?;
    write_atomic(&run_dir.join("recipe.json"), recipe_json.as_bytes())?;

    let t0 = Instant::now();
    let model = build_transferred(mref, checked, ds.n_classes(), &opts.device)?;
    let model_seconds = t0.elapsed().as_secs_f64();
    tracing::info!("run {run_id}: {} on {} ({} parameters), seed {seed}", recipe.strategy.as_str(), mref.card.name, model.param_count());
    // optional unsupervised pretraining step; counted in the training time
    let t_pre = Instant::now();
    // a pretraining whose loss diverges ends the run as `diverged`, on record like a diverged
    // fine-tune (the meta-dataset keeps the failure; the fine-tune or probe does not run)
    let (pretrain, pretrain_diverged) = match pretrain_step(opts, prep, &model, checked, &norm) {
        Ok(p) => (p, None),
        Err(GraftError::Diverged(why)) => (None, Some(why)),
        Err(e) => return Err(e),
    };
    // a replayed pretraining counts with the seconds it took when it ran
    let replayed = pretrain.as_ref().filter(|p| p.replayed).map_or(0.0, |p| p.seconds);
    let pretrain_seconds = t_pre.elapsed().as_secs_f64() + replayed;
    if let Some(p) = &pretrain {
        tracing::info!("pretrained ({}) on {} images in {pretrain_seconds:.1} s", p.method, p.images);
    }
    // LP-FT: the head starts as a softmax probe (counted as training); features that are not
    // finite end the run as diverged, on record
    let t_head = Instant::now();
    let (head_probe, pretrain_diverged) = match (pretrain_diverged, recipe.head_init) {
        (None, crate::recipe::HeadInit::Probe) => match init_head_from_probe(&model, checked, dec, &norm, ds.n_classes()) {
            Ok(rep) => (Some(rep), None),
            Err(GraftError::Diverged(why)) => (None, Some(why)),
            Err(e) => return Err(e),
        },
        (d, _) => (None, d),
    };
    let head_seconds = t_head.elapsed().as_secs_f64();
    let start = model.snapshot()?;

    let t0 = Instant::now();
    let out = match (pretrain_diverged, recipe.strategy) {
        (Some(why), _) => Outcome::diverged(dec.test.n, why),
        (None, Strategy::Finetune) => finetune_outcome(&model, checked, dec, &norm, &start, progress)?,
        (None, Strategy::LinearProbe | Strategy::SoftmaxProbe | Strategy::CentroidProbe) => {
            // shared features only when this run's backbone is the card's, untouched
            let pristine = pretrain.is_none() && checked.groups().iter().all(|g| g.action != Action::Reinit);
            probe_outcome(&model, checked, dec, &norm, ds.n_classes(), prep.features.as_ref().filter(|_| pristine))?
        }
    };
    let Outcome {
        test_pred,
        test_loss,
        val_pred,
        epochs,
        best_epoch,
        mut diverged,
        first_step_loss,
        probe: probe_report,
        probe_head,
        eval_seconds: eval_only,
        replayed_seconds: (replayed_train, replayed_eval),
    } = out;
    // training time excludes evaluating the test and validation splits; features reused from
    // another run of the task count with the seconds their extraction took
    let train_seconds = t0.elapsed().as_secs_f64() - eval_only + pretrain_seconds + head_seconds + replayed_train;
    let probe_report = probe_report.or(head_probe);
    tracing::info!("trained in {train_seconds:.1} s{}", diverged.as_ref().map(|d| format!("; diverged: {d}")).unwrap_or_default());
    let t0 = Instant::now();
    let mut groups = Vec::new();
    for g in checked.groups() {
        let wc = if g.action == Action::Freeze { 0.0 } else { model.weight_change(&g.name, &start)? };
        if !wc.is_finite() && diverged.is_none() {
            diverged = Some(format!("the weight change of group `{}` is not finite", g.name));
        }
        groups.push(GroupRecord { name: g.name.clone(), action: g.action.as_str().into(), lr: g.lr, weight_change: wc });
    }
    let ytest = labels(&dec.test);
    let test_accuracy = if diverged.is_some() { 0.0 } else { accuracy(&test_pred, &ytest) };
    let mut confusion = vec![vec![0usize; ds.n_classes()]; ds.n_classes()];
    if diverged.is_none() {
        for (p, t) in test_pred.iter().zip(&ytest) {
            confusion[*t][*p] += 1;
        }
    }
    // a diverged run's confusion is all zero, so 0 is its balanced accuracy as its accuracy
    let test_balanced_accuracy = balanced_accuracy_of(&confusion).unwrap_or(0.0);
    let correct: usize = (0..ds.n_classes()).map(|c| confusion[c][c]).sum();
    let test_interval = if diverged.is_none() {
        super::predictions::wilson_interval(correct, dec.test.n, super::predictions::Z95).map(|(lo, hi)| [lo, hi])
    } else {
        None
    };
    // validation: accuracy, and the mean per-class recall `auto` judges class-weighted runs by
    let (val_accuracy, val_balanced_accuracy) = match (&val_pred, &dec.val) {
        (Some(p), Some(v)) if diverged.is_none() => {
            let y = labels(v);
            (Some(accuracy(p, &y)), (!y.is_empty()).then(|| balanced_accuracy(p, &y)))
        }
        _ => (None, None),
    };
    let eval_seconds = t0.elapsed().as_secs_f64() + eval_only + replayed_eval;
    let profile = metadataset::TaskProfile::compute(ds, &dec.train, prep.images());
    let family = opts
        .family
        .clone()
        .unwrap_or_else(|| ds.root.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "unknown".into()));
    let task_id = opts.task_id.clone().unwrap_or_else(|| dec.train.fingerprint[..16].to_string());
    let train_counts = dec.train.class_counts(ds.n_classes());
    let rec = RunRecord {
        run_id: run_id.clone(),
        run_dir: run_dir.display().to_string(),
        status: if diverged.is_some() { RunStatus::Diverged } else { RunStatus::Ok },
        error: diverged.clone(),
        test_accuracy,
        val_accuracy,
        n_train: dec.train.n,
        n_test: dec.test.n,
        n_classes: ds.n_classes(),
        train_seconds,
        backbone: mref.card.name.clone(),
        backbone_ref: opts.backbone.clone(),
        backbone_sha256: mref.card.sha256.clone(),
        arch: mref.card.arch.clone(),
        input: Some(mref.card.input),
        recipe: recipe.clone(),
        groups,
        seed,
        strategy: recipe.strategy,
        task_id,
        family,
        dataset: DatasetRecord {
            root: ds.root.display().to_string(),
            fingerprint: dec.train.fingerprint.clone(),
            classes: ds.classes.clone(),
            split: ds.split.clone(),
            train_per_class: train_counts,
            n_val: dec.val.as_ref().map(|v| v.n).unwrap_or(0),
            val_per_class: dec.val.as_ref().map(|v| v.class_counts(ds.n_classes())).unwrap_or_default(),
            n_unlabelled: ds.unlabelled.len(),
            skipped: [dec.train.skipped.clone(), dec.test.skipped.clone(), dec.val.as_ref().map(|v| v.skipped.clone()).unwrap_or_default()]
                .concat(),
            test_fingerprint: Some(dec.test.fingerprint.clone()),
        },
        probe: probe_report,
        epochs_run: epochs.len(),
        best_epoch,
        final_train_loss: epochs.last().map(|e| e.train_loss),
        first_step_loss,
        test_loss,
        confusion,
        test_balanced_accuracy: Some(test_balanced_accuracy),
        test_accuracy_interval: test_interval,
        val_balanced_accuracy,
        final_weights_sha256: model.weights_sha256()?,
        timings: Timings {
            load_seconds,
            decode_seconds,
            model_seconds,
            train_seconds,
            eval_seconds,
            total_seconds: t_all.elapsed().as_secs_f64() + load_seconds + decode_seconds + replayed_train + replayed_eval,
        },
        device: opts.device_name.clone(),
        threads: rayon::current_num_threads(),
        versions: serde_json::json!({"graft": env!("CARGO_PKG_VERSION"), "candle": CANDLE_VERSION, "meta_schema": metadataset::SCHEMA_VERSION}),
        command: opts.command.clone(),
        created_at: now_rfc3339(),
        metafeatures: profile,
        context: ctx.clone(),
        pretrain,
        saved_model: (opts.save_model && diverged.is_none()).then(|| super::classifier::CLASSIFIER_FILE.to_string()),
    };
    write_atomic(&run_dir.join("metrics.csv"), EpochMetrics::to_csv(&epochs).as_bytes())?;
    // every test image's true and predicted class, for error analysis and paired comparisons
    // (`graft compare`); a diverged run predicted nothing
    if diverged.is_none() && dec.test.names.len() == dec.test.n {
        let rows: Vec<super::predictions::Prediction> = (0..dec.test.n)
            .map(|i| super::predictions::Prediction {
                // absolute, so the file stays usable from another working directory
                image: std::path::absolute(&dec.test.names[i])
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|_| dec.test.names[i].clone()),
                label: ds.classes[ytest[i]].clone(),
                predicted: ds.classes[test_pred[i]].clone(),
            })
            .collect();
        write_atomic(&run_dir.join(super::predictions::PREDICTIONS_FILE), &super::predictions::predictions_csv(&rows)?)?;
    }
    // the trained classifier, for `graft predict` (written before run.json, so a run on record
    // with `saved_model` has it)
    if let Some(file) = &rec.saved_model {
        let probe = probe_head.as_ref().map(|h| (h, checked.probe_group()));
        let facts = super::classifier::RunFacts {
            run_id: &rec.run_id,
            backbone: &rec.backbone,
            precision: rec.recipe.precision,
            classes: &rec.dataset.classes,
            weights_sha256: &rec.final_weights_sha256,
            test_accuracy: rec.test_accuracy,
            n_test: rec.n_test,
        };
        super::classifier::save(&run_dir, &facts, &model, &norm, probe)?;
        tracing::info!("saved the trained classifier: {}", run_dir.join(file).display());
    }
    write_atomic(&run_dir.join("run.json"), serde_json::to_string_pretty(&rec).expect("serialises").as_bytes())?;
    tracing::info!("run {run_id}: {} test accuracy {:.4}; record in {}", rec.status, rec.test_accuracy, run_dir.display());
    if let Some(meta) = &opts.meta_dir {
        let p = metadataset::append(meta, &metadataset::MetaRow::from_run(&rec))?;
        tracing::info!("appended to the meta-dataset: {}", p.display());
    }
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backbones::Arch;
    use crate::data::InputSpec;

    /// The shared feature cache returns exactly what a run extracting its own features gets,
    /// at every group (one pass for several groups equals one pass per group), and replays the
    /// first extraction's seconds on a hit.
    #[test]
    fn cached_features_equal_fresh_ones_and_replay_their_seconds() {
        let spec = InputSpec { channels: 3, height: 32, width: 32 };
        let model = Model::new(Arch::Resnet8, spec, 3, 5, &Device::Cpu).unwrap();
        let n = 300; // more than one chunk of 256
        let pixels: Vec<u8> = (0..n * 3 * 32 * 32).map(|i| ((i * 7919) % 251) as u8).collect();
        let set = ImageSet::in_memory(pixels, vec![0; n], spec);
        let norm = Normalisation { mean: vec![0.5; 3], std: vec![0.25; 3] };
        let cache = FeatureCache::default();
        let body = model.n_groups() - 1;
        let (f_mid, secs, again) = cache.get(&model, "train", &set, &norm, (body - 1) / 2).unwrap();
        assert!(secs > 0.0 && again == 0.0);
        for g in 0..body {
            let fresh = features(&model, &set, &norm, g).unwrap();
            let (cached, now, replayed) = cache.get(&model, "train", &set, &norm, g).unwrap();
            assert_eq!(*cached, fresh, "group {g}");
            if [0, (body - 1) / 2, body - 1].contains(&g) {
                assert_eq!((now, replayed), (0.0, secs), "group {g} came from the first pass");
            }
        }
        assert_eq!(*f_mid, features(&model, &set, &norm, (body - 1) / 2).unwrap());
        // another split is its own entry
        let (_, secs_test, _) = cache.get(&model, "test", &set, &norm, body - 1).unwrap();
        assert!(secs_test > 0.0);
    }
}
