//! The meta-learner's inputs: task meta-features (per backbone) and recipe features, read from
//! the meta-dataset or computed for a new task, as fixed-order numeric vectors.
use crate::error::{GraftError, Result};
use crate::executor::run::RunStatus;
use crate::metadataset::{TaskProfile, TransferFeatures};
use crate::recipe::{Action, CheckedRecipe, Strategy};
use polars::prelude::*;
use std::path::Path;

/// Task meta-features, in order (`None` where a feature is missing, e.g. no LEEP for a backbone
/// without a source head).
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
];

pub const RECIPE_FEATURES: &[&str] = &[
    "is_finetune",
    "is_svm",
    "is_softmax",
    "probe_depth",
    "freeze_frac",
    "reinit_frac",
    "log10_lr",
    "layer_decay",
    "l2sp_x100",
    "epochs_10",
    "pretrain",
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
}

impl RecipeSummary {
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
        }
    }

    pub fn vector(&self) -> Vec<f64> {
        let ng = self.n_groups.max(1) as f64;
        let ft = self.strategy == Strategy::Finetune;
        vec![
            ft as u8 as f64,
            (self.strategy == Strategy::LinearProbe) as u8 as f64,
            (self.strategy == Strategy::SoftmaxProbe) as u8 as f64,
            self.probe_depth.unwrap_or(1.0),
            if ft { self.n_freeze as f64 / ng } else { 1.0 },
            if ft { self.n_reinit as f64 / ng } else { 0.0 },
            if ft { self.lr.max(1e-8).log10() } else { -3.0 },
            if ft { self.layer_decay } else { 1.0 },
            if ft { self.l2sp * 100.0 } else { 0.0 },
            if ft { self.epochs as f64 / 10.0 } else { 0.0 },
            self.pretrain as u8 as f64,
        ]
    }
}

/// One run of the meta-dataset, as the meta-learner sees it.
#[derive(Debug, Clone)]
pub struct Obs {
    pub run_id: String,
    pub task_id: String,
    pub family: String,
    pub backbone: String,
    /// The recipe's name (sweep arm id or preset) — identifies a configuration with the backbone.
    pub r_name: String,
    pub strategy: String,
    pub acc: f64,
    pub seed: i64,
    pub n_classes: usize,
    pub shots: f64,
    pub shift: String,
    pub task: Vec<Option<f64>>,
    pub recipe: RecipeSummary,
    pub recipe_json: String,
}

impl Obs {
    /// The configuration key: backbone and recipe name.
    pub fn config(&self) -> String {
        format!("{}::{}", self.backbone, self.r_name)
    }
}

fn col_f64(df: &DataFrame, name: &str) -> Result<Vec<Option<f64>>> {
    let c = df.column(name).map_err(|_| GraftError::Data(format!("meta-dataset: column `{name}` is missing (schema too old?)")))?;
    let c = c.cast(&DataType::Float64).map_err(|e| GraftError::Data(format!("meta-dataset: column `{name}`: {e}")))?;
    Ok(c.f64().map_err(|e| GraftError::Data(format!("meta-dataset: column `{name}`: {e}")))?.iter().collect())
}

fn col_str(df: &DataFrame, name: &str) -> Result<Vec<String>> {
    let c = df.column(name).map_err(|_| GraftError::Data(format!("meta-dataset: column `{name}` is missing (schema too old?)")))?;
    let s = c.str().map_err(|e| GraftError::Data(format!("meta-dataset: column `{name}`: {e}")))?;
    Ok(s.iter().map(|v| v.unwrap_or_default().to_string()).collect())
}

/// Every usable run (status ok, transfer meta-features present) of the meta-dataset folders.
pub fn load_obs(dirs: &[&Path]) -> Result<Vec<Obs>> {
    let mut out = Vec::new();
    for dir in dirs {
        let df = crate::metadataset::read_all(dir)?;
        let sv = col_f64(&df, "schema_version")?;
        if let Some(v) = sv.iter().flatten().find(|v| **v as i64 != crate::metadataset::SCHEMA_VERSION) {
            return Err(GraftError::Data(format!(
                "meta-dataset {} holds rows of schema version {v}; this graft reads version {} (re-run the sweep or use a matching graft)",
                dir.display(),
                crate::metadataset::SCHEMA_VERSION
            )));
        }
        let s = |n: &str| col_str(&df, n);
        let f = |n: &str| col_f64(&df, n);
        let (run_id, task_id, family, backbone, r_name, strategy, status, shift, recipe) = (
            s("run_id")?,
            s("task_id")?,
            s("family")?,
            s("backbone")?,
            s("r_name")?,
            s("strategy")?,
            s("status")?,
            s("task_shift")?,
            s("recipe")?,
        );
        let r_pre = s("r_pretrain")?;
        let (acc, seed, n_classes, shots, unl, pm, ps) = (
            f("test_accuracy")?,
            f("seed")?,
            f("mf_n_classes")?,
            f("mf_shots_median")?,
            f("mf_n_unlabelled")?,
            f("mf_pixel_mean")?,
            f("mf_pixel_std")?,
        );
        let tf: Vec<Vec<Option<f64>>> = [
            "mf_logme_first",
            "mf_logme_mid",
            "mf_logme_last",
            "mf_ncprobe_first",
            "mf_ncprobe_mid",
            "mf_ncprobe_last",
            "mf_leep",
            "mf_frechet",
            "mf_pixel_separability",
        ]
        .iter()
        .map(|n| f(n))
        .collect::<Result<_>>()?;
        let (pd, nf, nr, ng, lr, ld, sp, ep) = (
            f("r_probe_depth")?,
            f("r_n_freeze")?,
            f("r_n_reinit")?,
            f("r_n_groups")?,
            f("r_lr")?,
            f("r_layer_decay")?,
            f("r_l2sp")?,
            f("r_epochs")?,
        );
        for i in 0..df.height() {
            if RunStatus::parse(&status[i]) != Some(RunStatus::Ok) || tf[2][i].is_none() {
                continue;
            }
            let Some(strat) = Strategy::parse(&strategy[i]) else {
                return Err(GraftError::Data(format!(
                    "meta-dataset {}: run {} has an unknown strategy {:?} (expected finetune, linear-probe or softmax-probe)",
                    dir.display(),
                    run_id[i],
                    strategy[i]
                )));
            };
            let profile = TaskProfile {
                n_classes: n_classes[i].unwrap_or(2.0) as usize,
                shots_median: shots[i].unwrap_or(1.0),
                n_unlabelled: unl[i].unwrap_or(0.0) as usize,
                pixel_mean: pm[i].unwrap_or(0.5),
                pixel_std: ps[i].unwrap_or(0.25),
                ..Default::default()
            };
            let t = TransferFeatures {
                logme_first: tf[0][i].unwrap_or(0.0),
                logme_mid: tf[1][i].unwrap_or(0.0),
                logme_last: tf[2][i].unwrap_or(0.0),
                ncprobe_first: tf[3][i],
                ncprobe_mid: tf[4][i],
                ncprobe_last: tf[5][i],
                hscore_last: 0.0,
                leep: tf[6][i],
                nce: None,
                frechet: tf[7][i],
                pixel_separability: tf[8][i],
            };
            out.push(Obs {
                run_id: run_id[i].clone(),
                task_id: task_id[i].clone(),
                family: family[i].clone(),
                backbone: backbone[i].clone(),
                r_name: r_name[i].clone(),
                strategy: strategy[i].clone(),
                acc: acc[i].unwrap_or(0.0),
                seed: seed[i].unwrap_or(0.0) as i64,
                n_classes: profile.n_classes,
                shots: profile.shots_median,
                shift: shift[i].clone(),
                task: task_vector(&profile, &t),
                recipe: RecipeSummary {
                    strategy: strat,
                    probe_depth: pd[i],
                    n_freeze: nf[i].unwrap_or(0.0) as usize,
                    n_reinit: nr[i].unwrap_or(0.0) as usize,
                    n_groups: ng[i].unwrap_or(1.0) as usize,
                    lr: lr[i].unwrap_or(1e-3),
                    layer_decay: ld[i].unwrap_or(1.0),
                    l2sp: sp[i].unwrap_or(0.0),
                    epochs: ep[i].unwrap_or(0.0) as usize,
                    pretrain: r_pre[i] != "none",
                },
                recipe_json: recipe[i].clone(),
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

/// A content hash of the observations (run ids and accuracies), recorded with a fitted model.
pub fn obs_hash(obs: &[Obs]) -> String {
    let mut s = String::new();
    for o in obs {
        s.push_str(&format!("{}:{:.6};", o.run_id, o.acc));
    }
    crate::util::sha256_hex(s.as_bytes())
}
