//! `graft meta backfill`: measure the stored images' traits (native size, colourfulness; see
//! [`crate::metafeatures::images`]) of the runs logged before graft measured them, by drawing
//! each run's task again from its recorded `task_spec` and its plan's family folder.
//!
//! A sweep's part files live in `source=sweep-<plan>/`; the plan is `<plans>/<plan>.toml`. A
//! task is drawn exactly as the sweep drew it (the plan's seed to load the family, the draw's
//! seed to sample it), and the redrawn task must have as many training images as the row
//! recorded, or the row is left as it was and counted as a mismatch. Each part file is
//! rewritten atomically, only when a row in it changed; rows that already have the traits are
//! never touched, so a second backfill changes nothing.
use super::plan::{Plan, TaskDraw};
use crate::data::{load_dataset, task::sample_task, Dataset, LoadOptions};
use crate::error::Result;
use crate::metadataset::{part_files, read_part, rewrite_part};
use crate::metafeatures::images::{image_traits, ImageTraits};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Serialize)]
pub struct BackfillSummary {
    pub part_files: usize,
    pub rewritten: usize,
    pub rows: usize,
    pub already_measured: usize,
    pub filled: usize,
    /// Rows whose source folder names no plan found in the plans folder (or no sweep at all).
    pub no_plan: usize,
    /// Rows whose redrawn task has another number of training images than recorded.
    pub mismatched: usize,
    /// Rows whose task's images could not be read.
    pub unreadable: usize,
    pub tasks_measured: usize,
    pub seconds: f64,
}

/// The plan name of a part file under `source=sweep-<plan>/`.
fn plan_of(part: &Path) -> Option<String> {
    part.parent()?.file_name()?.to_str()?.strip_prefix("source=sweep-").map(str::to_string)
}

pub fn backfill(meta: &Path, plans: &Path, dry_run: bool, log: &dyn Fn(&str)) -> Result<BackfillSummary> {
    let t0 = std::time::Instant::now();
    // fail early, with the message `read_all` gives, on a folder that is no meta-dataset
    crate::metadataset::read_all(meta)?;
    let mut sum = BackfillSummary::default();
    let mut loaded_plans: HashMap<String, Option<Plan>> = HashMap::new();
    let mut families: HashMap<(PathBuf, u64), Dataset> = HashMap::new();
    let mut traits: HashMap<(PathBuf, u64, String), Option<(ImageTraits, usize)>> = HashMap::new();
    for part in part_files(meta) {
        sum.part_files += 1;
        let mut rows = read_part(&part)?;
        let measured = |r: &crate::metadataset::MetaRow| r.mf.native_size.is_some() && r.mf.colourfulness.is_some();
        let todo = rows.iter().filter(|r| !measured(r)).count();
        sum.rows += rows.len();
        sum.already_measured += rows.len() - todo;
        if todo == 0 {
            continue;
        }
        // the part's plan, loaded once per plan
        let plan = plan_of(&part).and_then(|name| {
            loaded_plans
                .entry(name.clone())
                .or_insert_with(|| {
                    let p = plans.join(format!("{name}.toml"));
                    let plan = Plan::load(&p).ok();
                    if plan.is_none() {
                        log(&format!("{}: no readable plan {}; its rows keep null image traits", part.display(), p.display()));
                    }
                    plan
                })
                .as_ref()
        });
        let mut changed = false;
        for row in rows.iter_mut().filter(|r| !measured(r)) {
            let draw: Option<TaskDraw> = serde_json::from_str(&row.task_spec).ok();
            let (Some(plan), Some(draw)) = (plan, draw) else {
                sum.no_plan += 1;
                continue;
            };
            let Some(fam) = plan.families.iter().find(|f| f.name == draw.family) else {
                sum.no_plan += 1;
                continue;
            };
            let key = (fam.data.clone(), plan.plan_seed, row.task_spec.clone());
            if !traits.contains_key(&key) {
                let fkey = (fam.data.clone(), plan.plan_seed);
                if !families.contains_key(&fkey) {
                    log(&format!("loading family {} ({}) with plan seed {}", fam.name, fam.data.display(), plan.plan_seed));
                    let ds = load_dataset(&LoadOptions { seed: plan.plan_seed, ..LoadOptions::new(&fam.data) }).map_err(|e| {
                        let why = match e {
                            crate::error::GraftError::Data(m) => m,
                            e => e.to_string(),
                        };
                        crate::error::GraftError::Data(format!(
                            "{}: plan `{}` family `{}`: {why} (the backfill redraws each task from its family's images: fetch them, e.g. scripts/fetch-data.sh, or fix the plan's `data`)",
                            part.display(),
                            plan.name,
                            fam.name
                        ))
                    })?;
                    families.insert(fkey.clone(), ds);
                }
                let task = sample_task(&families[&fkey], &draw.spec, draw.seed)?;
                sum.tasks_measured += 1;
                traits.insert(key.clone(), image_traits(&task.train).map(|t| (t, task.train.len())));
            }
            match traits[&key] {
                None => sum.unreadable += 1,
                Some((t, n)) if n == row.mf.n_train => {
                    row.mf.native_size = Some(t.native_size);
                    row.mf.colourfulness = Some(t.colourfulness);
                    sum.filled += 1;
                    changed = true;
                }
                Some((_, n)) => {
                    sum.mismatched += 1;
                    log(&format!(
                        "{}: run {}: the redrawn task has {n} training images, the row recorded {}; left as it was",
                        part.display(),
                        row.run_id,
                        row.mf.n_train
                    ));
                }
            }
        }
        if changed && !dry_run {
            rewrite_part(&part, &rows)?;
            sum.rewritten += 1;
        }
    }
    sum.seconds = t0.elapsed().as_secs_f64();
    Ok(sum)
}
