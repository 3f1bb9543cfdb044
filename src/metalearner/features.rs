//! The meta-learner's inputs: task meta-features (per backbone) and recipe features, read from
//! the meta-dataset or computed for a new task, as fixed-order numeric vectors.
use crate::error::{GraftError, Result};
use crate::executor::run::RunStatus;
use crate::metadataset::{TaskProfile, TransferFeatures};
use crate::recipe::{Action, CheckedRecipe, Strategy};
use std::path::Path;

/// Task meta-features, in order (`None` where a feature is missing, e.g. no LEEP for a backbone
/// without a source head).
///
/// The stored images' native size and colourfulness (`mf_native_size`, `mf_colourfulness`)
/// are logged with every run but are not among them: added here (as log2 of the size, and the
/// chroma), they made the shipped advisor's leave-one-family-out regret@1 worse, 0.195 to 0.204
/// (+0.009 [-0.001, +0.021]), with 12 families, each of one size and nearly one colour level
/// (docs/meta-eval/where-it-falls-short.md).
pub const TASK_FEATURES: &[&str] = &[
    "log_n_classes",
    "log_shots",
    "log1p_unlabelled",
    "pixel_mean",
    "pixel_std",
    "logme_first",
    "logme_mid",
    "logme_last",
    "ncprobe_first",
    "ncprobe_mid",
    "ncprobe_last",
    "leep",
    "log1p_frechet",
    "pixel_separability",
    // ln(most / fewest training images a class): 0 for a balanced task (docs/imbalance.md)
    "log_imbalance",
];

/// The position of task feature `name` in [`TASK_FEATURES`] (a name not among them is a bug).
pub fn task_index(name: &str) -> usize {
    TASK_FEATURES.iter().position(|f| *f == name).unwrap_or_else(|| panic!("{name} is not a task feature"))
}

pub const RECIPE_FEATURES: &[&str] = &[
    "is_finetune",
    "is_svm",
    "is_softmax",
    "is_centroid",
    "probe_depth",
    "freeze_frac",
    "reinit_frac",
    "log10_lr",
    "layer_decay",
    "l2sp_x100",
    "epochs_10",
    "pretrain",
    "pretrain_simclr",
    "pretrain_sparse",
    "pretrain_log_epochs",
];

pub fn task_vector(p: &TaskProfile, t: &TransferFeatures) -> Vec<Option<f64>> {
    vec![
        Some((p.n_classes.max(1) as f64).ln()),
        Some(p.shots_median.max(1.0).ln()),
        Some((p.n_unlabelled as f64).ln_1p()),
        Some(p.pixel_mean),
        Some(p.pixel_std),
        Some(t.logme_first),
        Some(t.logme_mid),
        Some(t.logme_last),
        t.ncprobe_first,
        t.ncprobe_mid,
        t.ncprobe_last,
        t.leep,
        t.frechet.map(|f| f.max(0.0).ln_1p()),
        t.pixel_separability,
        Some(p.imbalance().ln()),
    ]
}

/// What the recipe features are computed from (a meta-dataset row or a checked recipe).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RecipeSummary {
    pub strategy: Strategy,
    pub probe_depth: Option<f64>,
    pub n_freeze: usize,
    pub n_reinit: usize,
    pub n_groups: usize,
    pub lr: f64,
    pub layer_decay: f64,
    pub l2sp: f64,
    pub epochs: usize,
    /// Unsupervised pretraining first.
    #[serde(default)]
    pub pretrain: bool,
    /// Which method, and for how many epochs (when `pretrain`).
    #[serde(default)]
    pub pretrain_method: Option<crate::pretrain::Method>,
    #[serde(default)]
    pub pretrain_epochs: usize,
}

impl RecipeSummary {
    /// For tests: a linear probe at `depth` on a 5-group backbone (lr 1e-3, 10 epochs), or,
    /// with `depth` None, the plain fine-tune of the same backbone.
    #[cfg(test)]
    pub fn for_tests(depth: Option<f64>) -> Self {
        RecipeSummary {
            strategy: if depth.is_some() { Strategy::LinearProbe } else { Strategy::Finetune },
            probe_depth: depth,
            n_freeze: 0,
            n_reinit: 0,
            n_groups: 5,
            lr: 1e-3,
            layer_decay: 1.0,
            l2sp: 0.0,
            epochs: 10,
            pretrain: false,
            pretrain_method: None,
            pretrain_epochs: 0,
        }
    }

    pub fn of(c: &CheckedRecipe) -> Self {
        let r = c.recipe();
        let g = c.groups();
        let body = g.len().saturating_sub(1);
        let probe_depth = match r.strategy {
            Strategy::Finetune => None,
            _ => Some(if body > 1 { c.probe_group() as f64 / (body - 1) as f64 } else { 1.0 }),
        };
        RecipeSummary {
            strategy: r.strategy,
            probe_depth,
            n_freeze: g.iter().filter(|x| x.action == Action::Freeze).count(),
            n_reinit: g.iter().filter(|x| x.action == Action::Reinit).count(),
            n_groups: g.len(),
            lr: r.lr,
            layer_decay: r.layer_decay,
            l2sp: r.l2sp,
            epochs: r.epochs,
            pretrain: r.pretrain.is_some(),
            pretrain_method: r.pretrain.as_ref().map(|p| p.method),
            pretrain_epochs: r.pretrain.as_ref().map(|p| p.epochs).unwrap_or(0),
        }
    }

    pub fn vector(&self) -> Vec<f64> {
        let ng = self.n_groups.max(1) as f64;
        let ft = self.strategy == Strategy::Finetune;
        vec![
            ft as u8 as f64,
            (self.strategy == Strategy::LinearProbe) as u8 as f64,
            (self.strategy == Strategy::SoftmaxProbe) as u8 as f64,
            (self.strategy == Strategy::CentroidProbe) as u8 as f64,
            self.probe_depth.unwrap_or(1.0),
            if ft { self.n_freeze as f64 / ng } else { 1.0 },
            if ft { self.n_reinit as f64 / ng } else { 0.0 },
            if ft { self.lr.max(1e-8).log10() } else { -3.0 },
            if ft { self.layer_decay } else { 1.0 },
            if ft { self.l2sp * 100.0 } else { 0.0 },
            if ft { self.epochs as f64 / 10.0 } else { 0.0 },
            self.pretrain as u8 as f64,
            // the method (the denoising autoencoder, and the other autoencoders, are neither
            // flag) and its budget
            (self.pretrain_method == Some(crate::pretrain::Method::Simclr)) as u8 as f64,
            (self.pretrain_method == Some(crate::pretrain::Method::SparseAutoencoder)) as u8 as f64,
            if self.pretrain { (self.pretrain_epochs as f64).ln_1p() } else { 0.0 },
        ]
    }
}

/// One run of the meta-dataset, as the meta-learner sees it.
#[derive(Debug, Clone)]
pub struct Obs {
    pub run_id: String,
    pub task_id: String,
    pub family: String,
    /// The backbone's key: its name, or `NAME@SIZE` when the run used another input size than
    /// the card's (see [`crate::backbones::card::backbone_key`]).
    pub backbone: String,
    /// The recipe's name (sweep arm id or preset) — identifies a configuration with the backbone.
    pub r_name: String,
    pub strategy: String,
    pub acc: f64,
    pub seed: i64,
    pub n_classes: usize,
    pub shots: f64,
    /// Most over fewest training images a class (1 for a balanced task; see
    /// [`TaskProfile::imbalance`]).
    pub imbalance: f64,
    pub shift: String,
    pub task: Vec<Option<f64>>,
    pub recipe: RecipeSummary,
    pub recipe_json: String,
    /// Training (or probe fitting) seconds, and the training images they were spent on.
    pub train_seconds: f64,
    pub n_train: usize,
}

impl Obs {
    /// The configuration key: backbone and recipe name.
    pub fn config(&self) -> String {
        format!("{}::{}", self.backbone, self.r_name)
    }
}

/// Every usable run (status ok, transfer meta-features present) of the meta-dataset folders.
/// The meta-learner sees, of a run's task profile, the class count, median shots, unlabelled
/// pool and pixel statistics, and of its transfer features those that every backbone has.
/// A backbone run at another input size than its card's is its own backbone key
/// (`NAME@SIZE`); the cards' sizes come from the model folders (a backbone not found there keeps
/// its name).
pub fn load_obs(dirs: &[&Path]) -> Result<Vec<Obs>> {
    let native: std::collections::HashMap<String, usize> = crate::backbones::card::list_models()
        .map(|ms| ms.into_iter().map(|m| (m.card.name.clone(), m.card.input.height)).collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    for dir in dirs {
        for r in crate::metadataset::read_rows(dir)? {
            if RunStatus::parse(&r.status) != Some(RunStatus::Ok) || !r.has_mft || starts_head_from_probe(&r.recipe) {
                continue;
            }
            let Some(strat) = Strategy::parse(&r.strategy) else {
                return Err(GraftError::Data(format!(
                    "meta-dataset {}: run {} has an unknown strategy {:?} (expected finetune, linear-probe or softmax-probe)",
                    dir.display(),
                    r.run_id,
                    r.strategy
                )));
            };
            let profile = TaskProfile {
                n_classes: r.mf.n_classes,
                shots_median: r.mf.shots_median,
                n_unlabelled: r.mf.n_unlabelled,
                pixel_mean: r.mf.pixel_mean,
                pixel_std: r.mf.pixel_std,
                shots_min: r.mf.shots_min,
                shots_max: r.mf.shots_max,
                ..Default::default()
            };
            let t = TransferFeatures { hscore_last: 0.0, nce: None, ..r.mft.clone() };
            out.push(Obs {
                n_classes: profile.n_classes,
                shots: profile.shots_median,
                imbalance: profile.imbalance(),
                task: task_vector(&profile, &t),
                recipe: RecipeSummary {
                    strategy: strat,
                    probe_depth: r.r_probe_depth,
                    n_freeze: r.r_n_freeze as usize,
                    n_reinit: r.r_n_reinit as usize,
                    n_groups: r.r_n_groups as usize,
                    lr: r.r_lr,
                    layer_decay: r.r_layer_decay,
                    l2sp: r.r_l2sp,
                    epochs: r.r_epochs as usize,
                    pretrain: r.r_pretrain != "none",
                    pretrain_method: pretrain_method_of(&r.r_pretrain),
                    pretrain_epochs: r.r_pretrain.split_once(':').and_then(|(_, e)| e.parse().ok()).unwrap_or(0),
                },
                run_id: r.run_id,
                task_id: r.task_id,
                family: r.family,
                backbone: match native.get(&r.backbone) {
                    Some(&n) => crate::backbones::card::backbone_key(&r.backbone, r.mf.input_size, n),
                    None => r.backbone,
                },
                train_seconds: r.train_seconds,
                n_train: r.n_train.max(0) as usize,
                r_name: r.r_name,
                strategy: r.strategy,
                acc: r.test_accuracy,
                seed: r.seed,
                shift: r.task_shift,
                recipe_json: r.recipe,
            });
        }
    }
    if out.is_empty() {
        return Err(GraftError::Data(format!(
            "meta-dataset {} has no usable runs (status ok with transfer meta-features); run `graft sweep` first",
            dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
        )));
    }
    out.sort_by(|a, b| a.run_id.cmp(&b.run_id));
    Ok(out)
}

/// Whether a row's recipe (JSON) starts its head from a probe (LP-FT, `head_init: probe`). The
/// meta-learner's recipe encoding has no such input, so these runs would read as the plain
/// fine-tune of the same recipe; until it has one, `load_obs` leaves them out.
fn starts_head_from_probe(recipe_json: &str) -> bool {
    /// The one recipe field this reads (the others are ignored here).
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(default)]
        head_init: crate::recipe::HeadInit,
    }
    recipe_json.contains("head_init")
        && serde_json::from_str::<Head>(recipe_json).is_ok_and(|h| h.head_init == crate::recipe::HeadInit::Probe)
}

/// The method of a meta-dataset row's `r_pretrain` (`METHOD:EPOCHS`, or `none`).
fn pretrain_method_of(r_pretrain: &str) -> Option<crate::pretrain::Method> {
    let m = r_pretrain.split(':').next().unwrap_or("none");
    (m != "none").then(|| crate::pretrain::Method::parse(m).ok()).flatten()
}

/// A content hash of the observations (run ids and accuracies), recorded with a fitted model.
pub fn obs_hash(obs: &[Obs]) -> String {
    let mut s = String::new();
    for o in obs {
        s.push_str(&format!("{}:{:.6};", o.run_id, o.acc));
    }
    crate::util::sha256_hex(s.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pretrain::Method;

    /// Each probe's classifier has its own flag, so the GP can learn where a nearest-centroid
    /// probe beats the SVM on the same features (few shots) and where it loses (many).
    #[test]
    fn every_probe_classifier_has_its_flag() {
        let at = |name: &str, v: &[f64]| v[RECIPE_FEATURES.iter().position(|f| *f == name).unwrap()];
        let mut r = RecipeSummary::for_tests(Some(1.0));
        for (s, flag) in [
            (Strategy::LinearProbe, "is_svm"),
            (Strategy::SoftmaxProbe, "is_softmax"),
            (Strategy::CentroidProbe, "is_centroid"),
            (Strategy::Finetune, "is_finetune"),
        ] {
            r.strategy = s;
            let v = r.vector();
            assert_eq!(v.len(), RECIPE_FEATURES.len());
            for f in ["is_svm", "is_softmax", "is_centroid", "is_finetune"] {
                assert_eq!(at(f, &v), (f == flag) as u8 as f64, "{s}: {f}");
            }
        }
    }

    /// Runs that start the head from a probe (LP-FT) are told apart from plain fine-tunes by the
    /// recipe JSON alone; a recipe without the field, or with the default, is a plain one.
    #[test]
    fn lp_ft_runs_are_recognised_by_their_recipe() {
        let mut r = crate::recipe::preset("finetune-all").unwrap();
        assert!(!starts_head_from_probe(&r.to_json()));
        r.head_init = crate::recipe::HeadInit::Probe;
        assert!(starts_head_from_probe(&r.to_json()));
        assert!(!starts_head_from_probe(r#"{"name": "head_init", "head_init": "random"}"#));
        assert!(!starts_head_from_probe("head_init: not json"));
    }

    /// A row's `r_pretrain` (`METHOD:EPOCHS` or `none`) becomes the method and budget features:
    /// SimCLR and the sparse autoencoder each have a flag, the denoising autoencoder neither,
    /// and the budget enters as ln(1 + epochs).
    #[test]
    fn pretraining_method_and_budget_are_recipe_features() {
        assert_eq!(pretrain_method_of("simclr:2"), Some(Method::Simclr));
        assert_eq!(pretrain_method_of("denoising-autoencoder:1"), Some(Method::DenoisingAutoencoder));
        assert_eq!(pretrain_method_of("none"), None);
        assert_eq!(pretrain_method_of("no-such-method:3"), None);
        let at = |name: &str, v: &[f64]| v[RECIPE_FEATURES.iter().position(|f| *f == name).unwrap()];
        let mut r = RecipeSummary::for_tests(None);
        let plain = r.vector();
        assert_eq!(plain.len(), RECIPE_FEATURES.len());
        assert_eq!((at("pretrain", &plain), at("pretrain_simclr", &plain), at("pretrain_log_epochs", &plain)), (0.0, 0.0, 0.0));
        r.pretrain = true;
        r.pretrain_method = Some(Method::Simclr);
        r.pretrain_epochs = 2;
        let v = r.vector();
        assert_eq!((at("pretrain", &v), at("pretrain_simclr", &v), at("pretrain_sparse", &v)), (1.0, 1.0, 0.0));
        assert!((at("pretrain_log_epochs", &v) - 3f64.ln()).abs() < 1e-12);
        r.pretrain_method = Some(Method::DenoisingAutoencoder);
        let v = r.vector();
        assert_eq!((at("pretrain_simclr", &v), at("pretrain_sparse", &v)), (0.0, 0.0));
    }
}
