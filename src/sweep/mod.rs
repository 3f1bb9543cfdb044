//! `graft sweep`: every (task, backbone, recipe, seed) of a plan, run in-process, each finished
//! run stored at once (see [`store`]); `--shard I/N` runs every N-th (task, backbone) block and
//! `--resume` skips runs already recorded.
pub mod backfill;
pub mod plan;
pub mod store;

use crate::backbones::card;
use crate::data::{load_dataset, task::sample_task, Dataset, LoadOptions};
use crate::error::{GraftError, Result};
use crate::executor::run::{decode_dataset, run_prepared, Prepared, RunOptions, TaskContext};
use crate::executor::NoProgress;
use crate::metadataset::{MetaRow, TransferFeatures};
use crate::metafeatures::inspect_decoded;
use candle_core::Device;
use plan::{run_key, Plan};
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

pub struct SweepOptions {
    pub plan: PathBuf,
    pub out: PathBuf,
    pub runs_dir: PathBuf,
    /// (index, count)
    pub shard: (usize, usize),
    pub resume: bool,
    pub compact_every: usize,
    /// Stop after this many runs (time-boxing; `--resume` continues).
    pub max_runs: Option<usize>,
    /// Only count the units; run nothing.
    pub dry_run: bool,
    pub device: Device,
    pub device_name: String,
    pub command: String,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct SweepSummary {
    pub plan: String,
    pub shard: String,
    pub units_in_plan: usize,
    pub units_in_shard: usize,
    pub already_done: usize,
    pub ran: usize,
    pub failed: usize,
    pub remaining: usize,
    pub seconds: f64,
    pub failures: Vec<String>,
}

/// Parse `I/N`.
pub fn parse_shard(s: &str) -> Result<(usize, usize)> {
    let bad = || GraftError::Usage(format!("--shard {s}: expected I/N with 0 <= I < N, e.g. 0/4"));
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
    if n == 0 || i >= n {
        return Err(bad());
    }
    Ok((i, n))
}

/// One (task, backbone) block of a plan: the task draw and the runs of it not yet recorded.
struct Block<'a> {
    fi: usize,
    draw: plan::TaskDraw,
    bb: &'a plan::BackboneSpec,
    pending: Vec<(&'a plan::Template, crate::recipe::Recipe, String)>,
}

/// Expand the plan into its (task, backbone) blocks and their runs, and keep this shard's
/// blocks (every N-th, counting from I). Counts the plan's, the shard's and the recorded runs
/// into `sum`. Tasks interleave across families (task 0 of every family, then task 1, ...), so
/// a partial sweep already covers every family.
fn expand<'a>(
    plan: &'a Plan,
    templates: &'a [plan::Template],
    fams: &[Dataset],
    mrefs: &HashMap<(String, Option<usize>), crate::backbones::ModelRef>,
    done: &std::collections::HashSet<String>,
    (shard, n_shards): (usize, usize),
    sum: &mut SweepSummary,
) -> Result<Vec<Block<'a>>> {
    let mut blocks = Vec::new();
    let mut b = 0usize;
    let sizes: Vec<Vec<usize>> = fams.iter().map(|d| d.train_counts()).collect();
    let max_tasks = plan.families.iter().map(|f| f.tasks).max().unwrap_or(0);
    let counts: Vec<usize> = plan.families.iter().map(|f| f.tasks).collect();
    let order: Vec<(usize, usize)> =
        (0..max_tasks).flat_map(|t| counts.iter().enumerate().filter(move |(_, &n)| t < n).map(move |(fi, _)| (fi, t))).collect();
    for (fi, t) in order {
        let draw = plan.draw_task(&plan.families[fi], &sizes[fi], t)?;
        for bb in &plan.backbones {
            let mine = b % n_shards == shard;
            b += 1;
            let mref = &mrefs[&(bb.name.clone(), bb.input_size)];
            let mut units = Vec::new();
            for tpl in templates.iter().filter(|t| bb.only.as_ref().is_none_or(|o| o.contains(&t.id))) {
                for &seed in &plan.seeds {
                    let r = plan.recipe_for(tpl, &mref.card.groups, seed, &draw)?;
                    let key = run_key(&draw, bb, &r.to_json());
                    units.push((tpl, r, key));
                }
            }
            sum.units_in_plan += units.len();
            if !mine {
                continue;
            }
            sum.units_in_shard += units.len();
            let n_block = units.len();
            let pending: Vec<_> = units.into_iter().filter(|u| !done.contains(&u.2)).collect();
            sum.already_done += n_block - pending.len();
            blocks.push(Block { fi, draw: draw.clone(), bb, pending });
        }
    }
    Ok(blocks)
}

pub fn sweep(o: &SweepOptions, log: &dyn Fn(&str)) -> Result<SweepSummary> {
    let t_all = Instant::now();
    let plan = Plan::load(&o.plan)?;
    let templates = plan.templates()?;
    let (shard, n_shards) = o.shard;
    let mut store = store::Store::new(&o.out, &plan.name, shard, n_shards, !o.dry_run)?;
    if !o.dry_run {
        crate::executor::run::remove_stale_run_temps(&o.runs_dir);
    }
    if o.resume && !o.dry_run {
        let n = store.compact()?;
        if n > 0 {
            log(&format!("recovered {n} staged runs from an interrupted sweep"));
        }
    }
    let done = store.done()?;
    tracing::info!("sweep plan `{}` shard {shard}/{n_shards}: {} runs already recorded in {}", plan.name, done.len(), o.out.display());
    // keyed by name and input size: a plan may list one backbone at several input sizes
    let mut mrefs = HashMap::new();
    for b in &plan.backbones {
        let mut m = card::resolve(&b.name)?;
        if let Some(sz) = b.input_size {
            card::override_input_size(&mut m, sz)?;
        }
        mrefs.insert((b.name.clone(), b.input_size), m);
    }
    // families are loaded once; the task draws depend on their class sizes
    let mut fams: Vec<Dataset> = Vec::new();
    for f in &plan.families {
        let ds = load_dataset(&LoadOptions { seed: plan.plan_seed, ..LoadOptions::new(&f.data) })
            .map_err(|e| GraftError::Data(format!("sweep plan family `{}`: {e}", f.name)))?;
        if ds.test.is_empty() {
            return Err(GraftError::Data(format!("sweep plan family `{}`: {} has no test split", f.name, f.data.display())));
        }
        fams.push(ds);
    }
    let mut sum = SweepSummary { plan: plan.name.clone(), shard: format!("{shard}/{n_shards}"), ..Default::default() };
    let blocks = expand(&plan, &templates, &fams, &mrefs, &done, o.shard, &mut sum)?;
    if sum.already_done > 0 && !o.resume {
        return Err(GraftError::Usage(format!(
            "{} already holds {} runs of plan `{}` shard {}; pass --resume to continue the sweep (finished runs are skipped)",
            o.out.display(),
            sum.already_done,
            plan.name,
            sum.shard
        )));
    }
    let mut since_compact = 0usize;
    // --max-runs 0 runs nothing (it still recovers staged runs with --resume)
    let mut stop = o.max_runs == Some(0);
    for Block { fi, draw, bb, pending } in blocks {
        let fam = &plan.families[fi];
        let mref = &mrefs[&(bb.name.clone(), bb.input_size)];
        if o.dry_run || stop || pending.is_empty() {
            sum.remaining += pending.len();
            continue;
        }
        // draw the task, decode it at this backbone's input, shift it, inspect it
        let t0 = Instant::now();
        let task = sample_task(&fams[fi], &draw.spec, draw.seed)?;
        let load_seconds = t0.elapsed().as_secs_f64();
        let t0 = Instant::now();
        let mut dec = decode_dataset(&task, mref.card.input, true, 0.0, draw.seed)?;
        draw.shift.apply(&mut dec.train, draw.seed, "train");
        draw.shift.apply(&mut dec.test, draw.seed, "test");
        if let Some(v) = dec.val.as_mut() {
            draw.shift.apply(v, draw.seed, "val");
        }
        if pending.iter().any(|u| u.1.pretrain.is_some()) && task.unlabelled.len() >= 2 {
            let mut u = crate::data::decode_items(&task.unlabelled, mref.card.input, true)?;
            draw.shift.apply(&mut u, draw.seed, "unlabelled");
            dec.unlabelled = Some(u);
        }
        let decode_seconds = t0.elapsed().as_secs_f64();
        let report = inspect_decoded(mref, &task, &dec.train, None)?;
        let ctx = TaskContext {
            transfer: Some(TransferFeatures::from_report(&report)),
            shift: draw.shift.name(),
            spec: serde_json::to_string(&draw).expect("serialises"),
        };
        let prep = Prepared {
            mref: mref.clone(),
            ds: task,
            dec,
            load_seconds,
            decode_seconds,
            features: Some(Default::default()),
            pretrained: Some(Default::default()),
            images: Default::default(),
        };
        let mut left = pending.len();
        for (tpl, recipe, key) in pending {
            if stop {
                sum.remaining += 1;
                continue;
            }
            left -= 1;
            let opts = RunOptions {
                data: LoadOptions::new(&fam.data),
                skip_bad: true,
                recipe,
                backbone: bb.name.clone(),
                device: o.device.clone(),
                device_name: o.device_name.clone(),
                runs_dir: o.runs_dir.clone(),
                meta_dir: None,
                family: Some(fam.name.clone()),
                task_id: Some(draw.task_id()),
                command: o.command.clone(),
                input_size: bb.input_size,
                context: ctx.clone(),
                save_model: false,
            };
            let t0 = Instant::now();
            let checked = opts.recipe.check(&prep.mref.card.groups, prep.mref.card.n_classes, prep.ds.n_classes());
            match checked.and_then(|c| run_prepared(&opts, &c, &prep, &ctx, Some(key.clone()), &NoProgress)) {
                Ok(rec) => {
                    store.stage(&MetaRow::from_run(&rec))?;
                    sum.ran += 1;
                    since_compact += 1;
                    log(&format!(
                        "[{} {}/{}] {} {} {} seed {}: {} {:.4} ({:.1} s; {left} left in block)",
                        sum.shard,
                        sum.already_done + sum.ran,
                        sum.units_in_shard,
                        draw.task_id(),
                        bb.name,
                        tpl.id,
                        rec.seed,
                        rec.status,
                        rec.test_accuracy,
                        t0.elapsed().as_secs_f64()
                    ));
                }
                Err(e) => {
                    sum.failed += 1;
                    let msg = format!("{key} ({} {} {}): {e}", draw.task_id(), bb.name, tpl.id);
                    log(&format!("FAILED {msg}"));
                    sum.failures.push(msg);
                }
            }
            if since_compact >= o.compact_every {
                store.compact()?;
                since_compact = 0;
            }
            if o.max_runs.is_some_and(|m| sum.ran + sum.failed >= m) {
                stop = true;
            }
        }
    }
    store.compact()?;
    sum.seconds = t_all.elapsed().as_secs_f64();
    Ok(sum)
}
