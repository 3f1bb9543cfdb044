//! `graft auto` as a library call: run the recommendation, or K recipes one after another, each
//! next one chosen by the [`Planner`] after seeing the validation accuracies of the runs before
//! it, and pick the winner on validation accuracy, never on the test split.
use super::search::{Candidate, Planner, Recommendation};
use super::MetaModel;
use crate::data::{Dataset, LoadOptions};
use crate::error::Result;
use crate::executor::{self, RunRecord};
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
}

pub struct AutoOutcome {
    /// The runs in the order they ran, with the candidate each ran.
    pub runs: Vec<(Candidate, RunRecord)>,
    pub best_run_id: String,
}

impl AutoOutcome {
    pub fn best(&self) -> Option<&RunRecord> {
        self.runs.iter().map(|(_, r)| r).find(|r| r.run_id == self.best_run_id)
    }
}

/// Runs up to `o.budget` candidates (at least one). With more than one run, a task without a
/// validation split gets a 20% one, and the winner is the run with the highest validation
/// accuracy (ties: the earlier run, then the higher prediction). `log` gets a line per run.
pub fn auto(model: &MetaModel, rec: &Recommendation, ds: &Dataset, o: &AutoOptions, log: &dyn Fn(&str)) -> Result<AutoOutcome> {
    let mut planner = Planner::new(model, rec);
    let budget = o.budget.max(1);
    let mut runs: Vec<(Candidate, RunRecord)> = Vec::new();
    while runs.len() < budget {
        let Some(c) = planner.next().cloned() else { break };
        let mut recipe = c.recipe.clone();
        if budget > 1 && ds.val.is_empty() && recipe.val_fraction == 0.0 {
            recipe.val_fraction = 0.2;
        }
        log(&format!(
            "run {}/{}: {} on {} (predicted {:.3})",
            runs.len() + 1,
            budget,
            recipe.name.clone().unwrap_or_default(),
            c.backbone,
            c.predicted_accuracy
        ));
        let opts = executor::RunOptions {
            data: o.data.clone(),
            skip_bad: o.skip_bad,
            recipe,
            backbone: c.backbone.clone(),
            device: o.device.clone(),
            device_name: o.device_name.clone(),
            runs_dir: o.runs_dir.clone(),
            meta_dir: Some(o.meta_dir.clone()),
            family: None,
            task_id: None,
            command: o.command.clone(),
            input_size: None,
            context: executor::run::TaskContext {
                transfer: rec.transfer.get(&c.backbone).cloned(),
                shift: "none".into(),
                spec: String::new(),
            },
        };
        let r = executor::run(&opts, &executor::NoProgress)?;
        log(&match r.val_accuracy {
            Some(v) => format!("  -> test accuracy {:.4}, validation accuracy {v:.4}", r.test_accuracy),
            None => format!("  -> test accuracy {:.4} (no validation split)", r.test_accuracy),
        });
        planner.observe(r.val_accuracy);
        runs.push((c, r));
    }
    let best_run_id = winner(&runs);
    Ok(AutoOutcome { runs, best_run_id })
}

/// The highest validation accuracy; ties go to the earlier run, then the higher prediction.
fn winner(runs: &[(Candidate, RunRecord)]) -> String {
    let key =
        |i: usize, (c, r): &(Candidate, RunRecord)| r.val_accuracy.unwrap_or(0.0) * 1e3 - i as f64 * 1e-9 + c.predicted_accuracy * 1e-6;
    runs.iter().enumerate().max_by(|x, y| key(x.0, x.1).total_cmp(&key(y.0, y.1))).map(|(_, (_, r))| r.run_id.clone()).unwrap_or_default()
}
