//! `graft auto` as a library call: run the recommendation, or K recipes one after another, each
//! next one chosen by the [`Planner`] after seeing the validation accuracies of the runs before
//! it, and pick the winner on validation accuracy, never on the test split.
use super::search::{Candidate, Planner, Recommendation};
use super::MetaModel;
use crate::data::{Dataset, LoadOptions};
use crate::error::Result;
use crate::executor::{self, RunRecord};
use crate::recipe::ClassWeights;
use candle_core::Device;
use std::path::PathBuf;

pub struct AutoOptions {
    pub budget: usize,
    pub data: LoadOptions,
    pub skip_bad: bool,
    pub device: Device,
    pub device_name: String,
    pub runs_dir: PathBuf,
    pub meta_dir: PathBuf,
    /// The command line recorded in each run.
    pub command: String,
    /// Save each run's trained classifier in its run directory (`graft predict`).
    pub save_model: bool,
}

pub struct AutoOutcome {
    /// The runs in the order they ran, with the candidate each ran (the refit last).
    pub runs: Vec<(Candidate, RunRecord)>,
    /// The answer: the refit of the winner when there was one, else the winner.
    pub best_run_id: String,
    /// The run chosen on validation accuracy whose recipe the refit ran again on every
    /// training image (None: no refit, e.g. budget 1).
    pub refit_of: Option<String>,
}

impl AutoOutcome {
    pub fn best(&self) -> Option<&RunRecord> {
        self.runs.iter().map(|(_, r)| r).find(|r| r.run_id == self.best_run_id)
    }
}

/// Runs up to `o.budget` candidates (at least one). With more than one run, a task without a
/// validation split gets a 20% one, and the winner is named by [`super::eval::AUTO_WINNER_RULE`]
/// (the highest validation accuracy, or balanced accuracy for class-weighted recipes: see
/// [`validation_score`]; ties: the earlier run, then the higher prediction); the GP,
/// given each validation accuracy with the sampling noise of its split's size, chooses which
/// candidate runs next. The winner's recipe is then
/// run again on every training image, validation split included (as scikit-learn's
/// `GridSearchCV(refit=True)` does), and that refit is the answer: a bigger budget no longer
/// leaves the answer trained on 80% of a small training set. `log` gets a line per run.
pub fn auto(model: &MetaModel, rec: &Recommendation, ds: &Dataset, o: &AutoOptions, log: &dyn Fn(&str)) -> Result<AutoOutcome> {
    let mut planner = Planner::new(model, rec);
    let budget = o.budget.max(1);
    let mut runs: Vec<(Candidate, RunRecord)> = Vec::new();
    let mut carved = false;
    while runs.len() < budget {
        let Some(c) = planner.next().cloned() else { break };
        let mut recipe = c.recipe.clone();
        if budget > 1 && ds.val.is_empty() && recipe.val_fraction == 0.0 {
            recipe.val_fraction = 0.2;
            carved = true;
        }
        log(&format!(
            "run {}/{}: {} on {} (predicted {:.3})",
            runs.len() + 1,
            budget,
            recipe.name.clone().unwrap_or_default(),
            c.backbone,
            c.predicted_accuracy
        ));
        let r = run_candidate(rec, &c, recipe, o)?;
        let (score, n_eff) = validation_score(&r);
        log(&match score {
            Some(v) if r.recipe.class_weights == ClassWeights::Balanced => format!(
                "  -> test accuracy {:.4}, validation balanced accuracy {v:.4} (mean per-class recall; as reliable as an accuracy on {n_eff} images)",
                r.test_accuracy
            ),
            Some(v) => format!("  -> test accuracy {:.4}, validation accuracy {v:.4}", r.test_accuracy),
            None => format!("  -> test accuracy {:.4} (no validation split)", r.test_accuracy),
        });
        planner.observe_on(score, n_eff);
        runs.push((c, r));
    }
    // the winner under the shipped rule (meta eval simulates the alternatives)
    let chosen = planner
        .best_config()
        .and_then(|cfg| runs.iter().find(|(c, _)| c.config == cfg).map(|(_, r)| r.run_id.clone()))
        .unwrap_or_else(|| winner(&runs));
    if !carved {
        return Ok(AutoOutcome { runs, best_run_id: chosen, refit_of: None });
    }
    // refit the winner on every training image (the 20% validation split carved out above included)
    let c = runs.iter().find(|(_, r)| r.run_id == chosen).map(|(c, _)| c.clone()).expect("the winner ran");
    log(&format!(
        "refit: {} on {} on every training image (the winner given the validation accuracies)",
        c.recipe.name.clone().unwrap_or_default(),
        c.backbone
    ));
    let r = run_candidate(rec, &c, c.recipe.clone(), o)?;
    log(&format!("  -> test accuracy {:.4}", r.test_accuracy));
    let best_run_id = r.run_id.clone();
    runs.push((c, r));
    Ok(AutoOutcome { runs, best_run_id, refit_of: Some(chosen) })
}

/// One run of a candidate's recipe, appended to the user's meta-dataset.
fn run_candidate(rec: &Recommendation, c: &Candidate, recipe: crate::recipe::Recipe, o: &AutoOptions) -> Result<RunRecord> {
    let opts = executor::RunOptions {
        data: o.data.clone(),
        skip_bad: o.skip_bad,
        recipe,
        backbone: rec.backbone_for(&c.backbone),
        device: o.device.clone(),
        device_name: o.device_name.clone(),
        runs_dir: o.runs_dir.clone(),
        meta_dir: Some(o.meta_dir.clone()),
        family: None,
        task_id: None,
        command: o.command.clone(),
        input_size: None,
        context: executor::run::TaskContext { transfer: rec.transfer.get(&c.backbone).cloned(), shift: "none".into(), spec: String::new() },
        save_model: o.save_model,
    };
    executor::run(&opts, &executor::NoProgress)
}

/// What a run is judged on, and the number of validation images whose plain accuracy would be
/// as noisy: its validation accuracy over `n_val` images; for a class-weighted recipe
/// (`class_weights: balanced`, set on imbalanced tasks) its validation *balanced* accuracy, the
/// mean per-class recall the weighting aims at, which a plain accuracy would let the large
/// classes decide. That mean's variance is Σ_c p(1-p)/(K² n_c) over the K classes' n_c images,
/// that of an accuracy over K² / Σ_c 1/n_c images (fewer than n_val when classes differ).
pub fn validation_score(r: &RunRecord) -> (Option<f64>, usize) {
    let balanced = r.recipe.class_weights == ClassWeights::Balanced;
    match (balanced, r.val_balanced_accuracy) {
        (true, Some(b)) => (Some(b), effective_images(&r.dataset.val_per_class)),
        _ => (r.val_accuracy, r.dataset.n_val),
    }
}

/// K² / Σ_c 1/n_c over the classes with images: the number of images a plain accuracy needs to
/// be as precise as a mean of per-class recalls on these counts (their harmonic mean times K).
pub fn effective_images(per_class: &[usize]) -> usize {
    let present: Vec<f64> = per_class.iter().filter(|&&n| n > 0).map(|&n| n as f64).collect();
    if present.is_empty() {
        return 0;
    }
    let k = present.len() as f64;
    (k * k / present.iter().map(|n| 1.0 / n).sum::<f64>()).round() as usize
}

/// The highest validation score ([`validation_score`]); ties go to the earlier run, then the
/// higher prediction.
fn winner(runs: &[(Candidate, RunRecord)]) -> String {
    let key = |i: usize, (c, r): &(Candidate, RunRecord)| {
        validation_score(r).0.unwrap_or(0.0) * 1e3 - i as f64 * 1e-9 + c.predicted_accuracy * 1e-6
    };
    runs.iter().enumerate().max_by(|x, y| key(x.0, x.1).total_cmp(&key(y.0, y.1))).map(|(_, (_, r))| r.run_id.clone()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Equal classes: every image counts; unequal: fewer (the harmonic mean times K); a class
    /// without images is left out.
    #[test]
    fn effective_images_is_k_times_the_harmonic_mean() {
        assert_eq!(effective_images(&[4, 4, 4]), 12);
        // 2 classes of 8 and 1: 4 / (1/8 + 1) = 3.56
        assert_eq!(effective_images(&[8, 1]), 4);
        assert_eq!(effective_images(&[8, 0, 1]), 4);
        assert_eq!(effective_images(&[]), 0);
        assert!(effective_images(&[9, 5, 3, 2, 1]) < 20);
    }
}
