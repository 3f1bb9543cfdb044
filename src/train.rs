//! The fine-tuning loop: one optimiser with per-group learning rates (one backward per step,
//! every group stepped with its own rate), frozen groups left out and kept in eval mode,
//! label smoothing, warm-up + cosine schedule, early stopping on a validation split.
use crate::backbones::Model;
use crate::data::{ImageSet, Normalisation};
use crate::error::Result;
use crate::optim::{schedule_factor, Optimizer, Param};
use crate::recipe::{Action, CheckedRecipe};
use crate::util::rng_for;
use candle_core::{DType, Device, Tensor, D};
use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub lr_scale: f64,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub val_loss: Option<f64>,
    pub val_accuracy: Option<f64>,
    pub seconds: f64,
}

const METRICS_HEADER: [&str; 7] = ["epoch", "lr_scale", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds"];

impl EpochMetrics {
    /// A run's `metrics.csv`: one row per epoch, the field names as the header, losses and
    /// accuracies to 6 decimals, seconds to 3, an empty cell where there is no validation split.
    pub fn to_csv(epochs: &[EpochMetrics]) -> String {
        let mut w = csv::Writer::from_writer(Vec::new());
        let f = |v: Option<f64>| v.map(|x| format!("{x:.6}")).unwrap_or_default();
        let mut rows = vec![METRICS_HEADER.iter().map(|s| s.to_string()).collect::<Vec<_>>()];
        for m in epochs {
            rows.push(vec![
                m.epoch.to_string(),
                format!("{:.6}", m.lr_scale),
                format!("{:.6}", m.train_loss),
                format!("{:.6}", m.train_accuracy),
                f(m.val_loss),
                f(m.val_accuracy),
                format!("{:.3}", m.seconds),
            ]);
        }
        for r in rows {
            w.write_record(&r).expect("writing to memory");
        }
        String::from_utf8(w.into_inner().expect("writing to memory")).expect("ASCII")
    }

    /// Reads what [`EpochMetrics::to_csv`] wrote; `path` names the file in errors.
    pub fn from_csv(text: &str, path: &std::path::Path) -> crate::error::Result<Vec<EpochMetrics>> {
        use crate::error::GraftError;
        let mut r = csv::Reader::from_reader(text.as_bytes());
        let header = r.headers().map_err(|e| GraftError::Data(format!("{}: {e}", path.display())))?.clone();
        if header.iter().ne(METRICS_HEADER) {
            return Err(GraftError::Data(format!(
                "{}: header is `{}`, expected `{}`",
                path.display(),
                header.iter().collect::<Vec<_>>().join(","),
                METRICS_HEADER.join(",")
            )));
        }
        r.deserialize()
            .map(|row| {
                row.map_err(|e| {
                    let line = e.position().map(|p| p.line()).unwrap_or(0);
                    GraftError::Data(format!("{}: line {line}: {e}", path.display()))
                })
            })
            .collect()
    }
}

/// What the caller wants to hear about during training (the CLI draws a progress bar).
pub trait Progress {
    fn epoch(&self, _m: &EpochMetrics, _total: usize) {}
}
pub struct NoProgress;
impl Progress for NoProgress {}

pub struct TrainOutcome {
    pub epochs: Vec<EpochMetrics>,
    pub best_epoch: Option<usize>,
    pub diverged: Option<String>,
    /// Stopped before the last epoch on request (`Checkpointing::stop_after`).
    pub interrupted: bool,
    /// Loss of the very first optimisation step (before any update): the CPU/GPU parity check
    /// compares it. None when training resumed from a checkpoint.
    pub first_step_loss: Option<f64>,
}

/// Mean cross-entropy with label smoothing ε: (1-ε)·NLL + ε·mean_k(−log p_k).
pub fn cross_entropy(logits: &Tensor, labels: &Tensor, smoothing: f64) -> candle_core::Result<Tensor> {
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let nll = logp.gather(&labels.unsqueeze(1)?, 1)?.squeeze(1)?.neg()?.mean_all()?;
    if smoothing == 0.0 {
        return Ok(nll);
    }
    let uni = logp.mean(D::Minus1)?.neg()?.mean_all()?;
    (nll * (1.0 - smoothing))? + (uni * smoothing)?
}

/// Cross-entropy with label smoothing ε, each image's term weighted: Σ w_i l_i / Σ w_i with
/// l_i = (1-ε)·(−log p_{y_i}) + ε·mean_k(−log p_k) (PyTorch's weighted mean). `weights` holds one
/// weight per image of the batch.
pub fn weighted_cross_entropy(logits: &Tensor, labels: &Tensor, smoothing: f64, weights: &Tensor) -> candle_core::Result<Tensor> {
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let mut per = logp.gather(&labels.unsqueeze(1)?, 1)?.squeeze(1)?.neg()?;
    if smoothing != 0.0 {
        per = ((per * (1.0 - smoothing))? + (logp.mean(D::Minus1)?.neg()? * smoothing)?)?;
    }
    let w = weights.to_dtype(per.dtype())?;
    (per * &w)?.sum_all()?.broadcast_div(&w.sum_all()?)
}

/// The training loss of a batch: the plain cross-entropy, or the class-weighted one when the
/// recipe weights classes and the training set's classes differ in size (`class_w`, per class).
fn batch_loss(logits: &Tensor, y: &[i64], yt: &Tensor, smoothing: f64, class_w: Option<&[f64]>) -> candle_core::Result<Tensor> {
    match class_w {
        None => cross_entropy(logits, yt, smoothing),
        Some(cw) => {
            let w: Vec<f32> = y.iter().map(|&c| cw[c as usize] as f32).collect();
            weighted_cross_entropy(logits, yt, smoothing, &Tensor::new(w.as_slice(), logits.device())?)
        }
    }
}

pub fn to_tensor(x: Vec<f32>, n: usize, set: &ImageSet, dev: &Device) -> candle_core::Result<Tensor> {
    Tensor::from_vec(x, (n, set.spec.channels, set.spec.height, set.spec.width), dev)
}

/// Evaluate in eval mode: (mean loss, accuracy, predictions).
pub fn evaluate(model: &Model, set: &ImageSet, norm: &Normalisation, batch: usize) -> Result<(f64, f64, Vec<usize>)> {
    let mut loss_sum = 0.0;
    let mut preds = Vec::with_capacity(set.n);
    let dev = &model.device;
    let idx: Vec<usize> = (0..set.n).collect();
    // the batches' losses and predictions are read back once, after the last batch, so a GPU
    // is not waited for between batches (the same values, summed in the same order)
    let (mut losses, mut picks) = (Vec::new(), Vec::new());
    for chunk in idx.chunks(batch.max(1)) {
        let x = to_tensor(set.batch(chunk, norm, None), chunk.len(), set, dev)?;
        let y: Vec<i64> = chunk.iter().map(|&i| set.labels[i]).collect();
        let yt = Tensor::new(y.as_slice(), dev)?;
        let logits = model.forward(&x, &[])?.detach();
        losses.push(cross_entropy(&logits, &yt, 0.0)?.reshape(1)?);
        picks.push(logits.argmax(D::Minus1)?);
    }
    if !losses.is_empty() {
        let lv = Tensor::cat(&losses, 0)?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        for (l, chunk) in lv.into_iter().zip(idx.chunks(batch.max(1))) {
            loss_sum += l as f64 * chunk.len() as f64;
        }
        let p = Tensor::cat(&picks, 0)?.to_dtype(DType::U32)?.to_vec1::<u32>()?;
        preds.extend(p.into_iter().map(|v| v as usize));
    }
    let correct = preds.iter().zip(&set.labels).filter(|(p, l)| **p as i64 == **l).count();
    let n = set.n.max(1) as f64;
    Ok((loss_sum / n, correct as f64 / n, preds))
}

/// The outcome of a run whose loss became non-finite at (`epoch`, `step`), both 0-based.
fn diverged_at(epochs: Vec<EpochMetrics>, loss: f64, epoch: usize, step: usize, first_step_loss: Option<f64>) -> TrainOutcome {
    let why = format!("loss became {loss} at epoch {} step {}", epoch + 1, step + 1);
    TrainOutcome { epochs, best_epoch: None, diverged: Some(why), interrupted: false, first_step_loss }
}

/// An epoch's training losses and correct predictions: each step's scalar loss and predicted
/// classes are pushed as device tensors and read back by `read` (every step on the CPU, once an
/// epoch on a GPU), summed in step order either way.
#[derive(Default)]
struct StepTally {
    pending: Vec<(Tensor, Tensor, Vec<i64>, usize)>,
    loss_sum: f64,
    correct: usize,
    seen: usize,
}

impl StepTally {
    fn push(&mut self, loss: Tensor, preds: Tensor, labels: Vec<i64>, step: usize) {
        self.pending.push((loss, preds, labels, step));
    }

    /// Read the pending steps (one transfer each for the losses and the predictions) and add
    /// them up; the first non-finite loss and its step, if any, instead.
    fn read(&mut self) -> Result<Option<(f64, usize)>> {
        if self.pending.is_empty() {
            return Ok(None);
        }
        let pending = std::mem::take(&mut self.pending);
        let losses: Vec<Tensor> = pending.iter().map(|p| p.0.reshape(1)).collect::<candle_core::Result<_>>()?;
        let losses = Tensor::cat(&losses, 0)?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        let preds: Vec<&Tensor> = pending.iter().map(|p| &p.1).collect();
        let preds = Tensor::cat(&preds, 0)?.to_dtype(DType::U32)?.to_vec1::<u32>()?;
        let mut at = 0;
        for ((_, _, y, step), lv) in pending.iter().zip(losses) {
            let lv = lv as f64;
            if !lv.is_finite() {
                return Ok(Some((lv, *step)));
            }
            let p = &preds[at..at + y.len()];
            at += y.len();
            self.correct += p.iter().zip(y).filter(|(a, b)| **a as i64 == **b).count();
            self.loss_sum += lv * y.len() as f64;
            self.seen += y.len();
        }
        Ok(None)
    }
}

/// Build the optimiser's parameters: trained groups only, with L2-SP anchors on transferred ones.
pub fn build_params(model: &Model, recipe: &CheckedRecipe, anchors: &BTreeMap<String, Tensor>) -> Vec<Param> {
    let mut params = Vec::new();
    for (gi, g) in recipe.groups().iter().enumerate() {
        if g.action == Action::Freeze {
            continue;
        }
        for (name, var) in model.group_params(&g.name) {
            let decay = recipe.recipe().optimizer.decay_1d || var.rank() > 1;
            let anchor = if g.action == Action::Finetune { anchors.get(&name).cloned() } else { None };
            params.push(Param::new(name, var, gi, decay, anchor));
        }
    }
    params
}

pub fn train(
    model: &Model,
    recipe: &CheckedRecipe,
    train_set: &ImageSet,
    val_set: Option<&ImageSet>,
    norm: &Normalisation,
    anchors: &BTreeMap<String, Tensor>,
    progress: &dyn Progress,
) -> Result<TrainOutcome> {
    train_with(model, recipe, train_set, val_set, norm, anchors, progress, None)
}

/// Per-epoch checkpoints for long runs: after every epoch the weights, the optimiser's moments,
/// the step count and the epoch metrics are written to `dir` (new files, then `state.json` as
/// the commit point), so a killed run resumes at the last finished epoch and, because shuffling
/// and augmentation streams derive from (seed, epoch), ends with the same weights as an
/// uninterrupted one. Early-stopping snapshots are not checkpointed.
pub struct Checkpointing<'a> {
    pub dir: &'a std::path::Path,
    pub resume: bool,
    /// Stop (as if killed) after this many epochs; for tests of resuming.
    pub stop_after: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CheckpointState {
    epochs_done: usize,
    steps: i32,
    model_file: String,
    optim_file: String,
    model_sha256: String,
    optim_sha256: String,
    epochs: Vec<EpochMetrics>,
}

fn save_checkpoint(dir: &std::path::Path, model: &Model, opt: &Optimizer, epochs: &[EpochMetrics]) -> Result<()> {
    use crate::error::GraftError;
    std::fs::create_dir_all(dir).map_err(|e| GraftError::io(dir, e))?;
    let n = epochs.len();
    let mf = format!("model-e{n}.safetensors");
    let of = format!("optim-e{n}.safetensors");
    model.save(&dir.join(&mf))?;
    crate::util::save_tensors(&dir.join(&of), opt.state())?;
    let st = CheckpointState {
        epochs_done: n,
        steps: opt.steps(),
        model_sha256: crate::util::sha256_file(&dir.join(&mf))?,
        optim_sha256: crate::util::sha256_file(&dir.join(&of))?,
        model_file: mf.clone(),
        optim_file: of.clone(),
        epochs: epochs.to_vec(),
    };
    crate::util::write_atomic(&dir.join("state.json"), serde_json::to_string_pretty(&st).expect("serialises").as_bytes())?;
    // older checkpoints are no longer referenced
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.ends_with(".safetensors") && name != mf && name != of {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(())
}

fn load_checkpoint(dir: &std::path::Path, model: &Model, opt: &mut Optimizer) -> Result<Option<Vec<EpochMetrics>>> {
    use crate::error::GraftError;
    let sp = dir.join("state.json");
    if !sp.is_file() {
        return Ok(None);
    }
    let st: CheckpointState = serde_json::from_str(&crate::util::read_to_string(&sp)?)
        .map_err(|e| GraftError::Data(format!("{}: corrupt checkpoint state ({e}); delete the folder to start over", sp.display())))?;
    for (f, sha) in [(&st.model_file, &st.model_sha256), (&st.optim_file, &st.optim_sha256)] {
        if &crate::util::sha256_file(&dir.join(f))? != sha {
            return Err(GraftError::Data(format!(
                "{}: checksum mismatch; delete the checkpoint folder to start over",
                dir.join(f).display()
            )));
        }
    }
    model.load_weights(&dir.join(&st.model_file), &[])?;
    let state = candle_core::safetensors::load(dir.join(&st.optim_file), &model.device)?;
    opt.load_state(&state, st.steps);
    Ok(Some(st.epochs))
}

/// The most memory the activations of a frozen prefix may take to be cached (bytes).
const PREFIX_CACHE_BYTES: usize = 1 << 30;

/// How many leading groups `train_with` can skip by caching their output: the frozen prefix
/// (groups before the first trained one, in eval mode and without gradients), when the recipe has
/// no augmentation, so every image's prefix output is the same in every epoch; 0 otherwise.
pub fn cacheable_prefix(train_flags: &[bool], augment_off: bool) -> usize {
    if !augment_off {
        return 0;
    }
    // the head is always trained, so a prefix never covers every group
    train_flags.iter().take_while(|t| !**t).count().min(train_flags.len().saturating_sub(1))
}

/// The output of groups `0..prefix` for every image of `set`, in eval mode and detached, in
/// chunks of 64 images; None when it would take more than [`PREFIX_CACHE_BYTES`].
fn prefix_activations(model: &Model, set: &ImageSet, norm: &Normalisation, prefix: usize) -> Result<Option<Tensor>> {
    let dev = model.device.clone();
    let flags = [false];
    let mut parts = Vec::new();
    let idx: Vec<usize> = (0..set.n).collect();
    for chunk in idx.chunks(64) {
        let x = to_tensor(set.batch(chunk, norm, None), chunk.len(), set, &dev)?;
        let h = model.forward_span(&x, 0..prefix, &flags)?.detach();
        if parts.is_empty() && h.elem_count() / chunk.len() * set.n * 4 > PREFIX_CACHE_BYTES {
            return Ok(None);
        }
        parts.push(h);
    }
    Ok(Some(Tensor::cat(&parts, 0)?))
}

#[allow(clippy::too_many_arguments)]
pub fn train_with(
    model: &Model,
    recipe: &CheckedRecipe,
    train_set: &ImageSet,
    val_set: Option<&ImageSet>,
    norm: &Normalisation,
    anchors: &BTreeMap<String, Tensor>,
    progress: &dyn Progress,
    ckpt: Option<&Checkpointing>,
) -> Result<TrainOutcome> {
    train_inner(model, recipe, train_set, val_set, norm, anchors, progress, ckpt, true, None)
}

#[allow(clippy::too_many_arguments)]
fn train_inner(
    model: &Model,
    recipe: &CheckedRecipe,
    train_set: &ImageSet,
    val_set: Option<&ImageSet>,
    norm: &Normalisation,
    anchors: &BTreeMap<String, Tensor>,
    progress: &dyn Progress,
    ckpt: Option<&Checkpointing>,
    cache_prefix: bool,
    // read the steps' losses once an epoch (None: on a GPU only; tests set it on the CPU)
    defer_reads: Option<bool>,
) -> Result<TrainOutcome> {
    let r = recipe.recipe();
    let dev = model.device.clone();
    let mut opt = Optimizer::new(r.optimizer.clone(), r.l2sp, build_params(model, recipe, anchors));
    let train_flags: Vec<bool> = recipe.groups().iter().map(|g| g.action != Action::Freeze).collect();
    let base_lrs: Vec<f64> = recipe.groups().iter().map(|g| g.lr).collect();
    let bs = r.batch_size.min(train_set.n.max(2));
    let steps_per_epoch = (train_set.n / bs + usize::from(train_set.n % bs >= 2)).max(1);
    let total = steps_per_epoch * r.epochs;
    let warmup = (r.schedule.warmup_epochs * steps_per_epoch as f64).round() as usize;
    let aug = if r.augment.is_off() { None } else { Some(&r.augment) };
    let class_w = r.class_weights.weights(&train_set.class_counts(model.n_classes));
    // a frozen prefix that sees no augmentation is run once, not once an epoch
    let mut prefix = if cache_prefix { cacheable_prefix(&train_flags, aug.is_none()) } else { 0 };
    let cached = if prefix > 0 { prefix_activations(model, train_set, norm, prefix)? } else { None };
    if cached.is_none() {
        prefix = 0;
    }
    let mut epochs = Vec::new();
    let mut best: Option<(f64, usize, BTreeMap<String, Tensor>)> = None;
    let mut since_best = 0usize;
    let mut step = 0usize;
    let mut start_epoch = 0;
    let mut first_step_loss = None;
    if let Some(c) = ckpt.filter(|c| c.resume) {
        if let Some(done) = load_checkpoint(c.dir, model, &mut opt)? {
            start_epoch = done.len();
            step = opt.steps() as usize;
            for m in &done {
                progress.epoch(m, r.epochs);
            }
            epochs = done;
        }
    }
    // On a GPU, reading a step's loss or predictions back to the host waits for the device to
    // finish that step, so the next batch could not be decoded and augmented while the device
    // computes. There, the steps' losses and predictions stay on the device and are read once an
    // epoch (the same values, summed in the same order); on the CPU they are read each step.
    let defer = defer_reads.unwrap_or(!dev.is_cpu());
    for epoch in start_epoch..r.epochs {
        let t0 = std::time::Instant::now();
        let mut order: Vec<usize> = (0..train_set.n).collect();
        order.shuffle(&mut rng_for(r.seed, &format!("shuffle-{epoch}")));
        let mut tally = StepTally::default();
        let mut lr_scale = 1.0;
        for (bi, chunk) in order.chunks(bs).enumerate() {
            if chunk.len() < 2 {
                continue; // BatchNorm needs two images
            }
            let stream: u64 = rng_for(r.seed, &format!("aug-{epoch}-{bi}")).random();
            let y: Vec<i64> = chunk.iter().map(|&i| train_set.labels[i]).collect();
            let yt = Tensor::new(y.as_slice(), &dev)?;
            let logits = match &cached {
                Some(h) => {
                    let rows: Vec<u32> = chunk.iter().map(|&i| i as u32).collect();
                    let h = h.index_select(&Tensor::new(rows.as_slice(), &dev)?, 0)?;
                    model.forward_span(&h, prefix..model.n_groups(), &train_flags)?
                }
                None => {
                    let x = to_tensor(train_set.batch(chunk, norm, aug.map(|a| (a, stream))), chunk.len(), train_set, &dev)?;
                    model.forward(&x, &train_flags)?
                }
            };
            let loss = batch_loss(&logits, &y, &yt, r.label_smoothing, class_w.as_deref())?;
            if step == 0 || !defer {
                // the first step's loss is recorded; on the CPU a non-finite loss stops the run
                // before its gradient is applied
                let lv = loss.to_scalar::<f32>()? as f64;
                if !lv.is_finite() {
                    return Ok(diverged_at(epochs, lv, epoch, step, first_step_loss));
                }
                if step == 0 {
                    first_step_loss = Some(lv);
                }
            }
            let grads = loss.backward()?;
            lr_scale = schedule_factor(r.schedule.kind, step, total, warmup);
            let lrs: Vec<f64> = base_lrs.iter().map(|l| l * lr_scale).collect();
            opt.step(&grads, &lrs)?;
            tally.push(loss.detach(), logits.argmax(D::Minus1)?.detach(), y, step);
            if !defer {
                tally.read()?;
            }
            step += 1;
        }
        // on a GPU a non-finite loss is found here, an epoch late at most (the steps after it
        // ran on NaN weights; the run is recorded as diverged either way)
        if let Some((lv, at)) = tally.read()? {
            return Ok(diverged_at(epochs, lv, epoch, at, first_step_loss));
        }
        let (loss_sum, correct, seen) = (tally.loss_sum, tally.correct, tally.seen);
        let (val_loss, val_accuracy) = match val_set {
            Some(v) if v.n > 0 => {
                let (l, a, _) = evaluate(model, v, norm, 256)?;
                (Some(l), Some(a))
            }
            _ => (None, None),
        };
        let m = EpochMetrics {
            epoch: epoch + 1,
            lr_scale,
            train_loss: loss_sum / seen.max(1) as f64,
            train_accuracy: correct as f64 / seen.max(1) as f64,
            val_loss,
            val_accuracy,
            seconds: t0.elapsed().as_secs_f64(),
        };
        progress.epoch(&m, r.epochs);
        epochs.push(m);
        if let Some(c) = ckpt {
            save_checkpoint(c.dir, model, &opt, &epochs)?;
            if c.stop_after == Some(epochs.len()) && epochs.len() < r.epochs {
                return Ok(TrainOutcome { epochs, best_epoch: None, diverged: None, interrupted: true, first_step_loss });
            }
        }
        if let (Some(va), Some(es)) = (val_accuracy, &r.early_stopping) {
            if best.as_ref().map(|b| va > b.0).unwrap_or(true) {
                let snap =
                    model.named_vars().into_iter().map(|(k, v)| Ok((k, v.as_tensor().copy()?))).collect::<candle_core::Result<_>>()?;
                best = Some((va, epoch + 1, snap));
                since_best = 0;
            } else {
                since_best += 1;
                if since_best >= es.patience {
                    break;
                }
            }
        }
    }
    let best_epoch = if let Some((_, e, snap)) = best {
        for (k, v) in model.named_vars() {
            v.set(&snap[&k])?;
        }
        Some(e)
    } else {
        None
    };
    Ok(TrainOutcome { epochs, best_epoch, diverged: None, interrupted: false, first_step_loss })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The csv-crate writer gives exactly the bytes the hand-written one did (runs logged before
    /// it read back unchanged), reads them back, and names the line of a bad cell.
    #[test]
    fn metrics_csv_round_trips_and_names_bad_lines() {
        let m = |epoch, val: Option<f64>| EpochMetrics {
            epoch,
            lr_scale: 0.5,
            train_loss: 1.25,
            train_accuracy: 0.75,
            val_loss: val,
            val_accuracy: val,
            seconds: 2.0,
        };
        let epochs = vec![m(1, None), m(2, Some(0.125))];
        let text = EpochMetrics::to_csv(&epochs);
        assert_eq!(
            text,
            "epoch,lr_scale,train_loss,train_accuracy,val_loss,val_accuracy,seconds\n\
             1,0.500000,1.250000,0.750000,,,2.000\n\
             2,0.500000,1.250000,0.750000,0.125000,0.125000,2.000\n"
        );
        let p = std::path::Path::new("metrics.csv");
        let back = EpochMetrics::from_csv(&text, p).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!((back[0].val_loss, back[1].val_accuracy, back[1].seconds), (None, Some(0.125), 2.0));
        let bad = text.replace("2,0.500000", "2,zero");
        let e = EpochMetrics::from_csv(&bad, p).unwrap_err().to_string();
        assert!(e.contains("metrics.csv: line 3"), "{e}");
        let e = EpochMetrics::from_csv("epoch,loss\n1,2\n", p).unwrap_err().to_string();
        assert!(e.contains("header is `epoch,loss`"), "{e}");
    }

    #[test]
    fn cross_entropy_with_label_smoothing() {
        let dev = Device::Cpu;
        // uniform logits: every term is ln k whatever the smoothing
        let z = Tensor::zeros((2, 4), DType::F32, &dev).unwrap();
        let y = Tensor::new(&[1i64, 3], &dev).unwrap();
        for eps in [0.0, 0.1, 0.5] {
            let l = cross_entropy(&z, &y, eps).unwrap().to_scalar::<f32>().unwrap();
            assert!((l - 4f32.ln()).abs() < 1e-6);
        }
        // confident correct logits: smoothing adds eps * mean(-log p) > 0
        let z = Tensor::new(&[[10f32, 0.0], [0.0, 10.0]], &dev).unwrap();
        let y = Tensor::new(&[0i64, 1], &dev).unwrap();
        let l0 = cross_entropy(&z, &y, 0.0).unwrap().to_scalar::<f32>().unwrap();
        let l1 = cross_entropy(&z, &y, 0.2).unwrap().to_scalar::<f32>().unwrap();
        let nll = (1.0 + (-10f32).exp()).ln();
        assert!((l0 - nll).abs() < 1e-6);
        // mean over classes of -log p = (nll + (10 + nll)) / 2
        let want = 0.8 * nll + 0.2 * (nll + 10.0 + nll) / 2.0;
        assert!((l1 - want).abs() < 1e-5, "{l1} vs {want}");
    }

    /// The weighted cross-entropy is Σ w_i l_i / Σ w_i of the per-image terms: equal weights
    /// give the plain mean (with smoothing too), and a weight of 0 drops an image.
    #[test]
    fn weighted_cross_entropy_is_the_weighted_mean_of_the_terms() {
        let dev = Device::Cpu;
        let z = Tensor::new(&[[2f32, 0.0, -1.0], [0.5, 1.5, 0.0], [0.0, 0.0, 3.0]], &dev).unwrap();
        let y = Tensor::new(&[0i64, 2, 2], &dev).unwrap();
        let one = |t: &Tensor| t.to_scalar::<f32>().unwrap();
        for eps in [0.0, 0.1] {
            let plain = one(&cross_entropy(&z, &y, eps).unwrap());
            let w = Tensor::new(&[2.5f32, 2.5, 2.5], &dev).unwrap();
            assert!((one(&weighted_cross_entropy(&z, &y, eps, &w).unwrap()) - plain).abs() < 1e-6);
        }
        // per-image terms, from single-image batches
        let term = |i: usize| {
            let zi = z.narrow(0, i, 1).unwrap();
            let yi = y.narrow(0, i, 1).unwrap();
            one(&cross_entropy(&zi, &yi, 0.0).unwrap())
        };
        let w = Tensor::new(&[3f32, 1.0, 0.0], &dev).unwrap();
        let want = (3.0 * term(0) + term(1)) / 4.0;
        let got = one(&weighted_cross_entropy(&z, &y, 0.0, &w).unwrap());
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }

    /// Balanced class weights are n / (K n_c) over the classes with images; on a balanced
    /// training set, or with weighting off, there are none, so training takes the plain path.
    #[test]
    fn balanced_class_weights() {
        use crate::recipe::ClassWeights;
        assert_eq!(ClassWeights::Balanced.weights(&[4, 4, 4]), None);
        assert_eq!(ClassWeights::None.weights(&[8, 2]), None);
        let w = ClassWeights::Balanced.weights(&[8, 2, 0]).unwrap();
        assert_eq!(w, vec![10.0 / 16.0, 10.0 / 4.0, 0.0]);
        // every class then carries the same total weight
        assert!((8.0 * w[0] - 2.0 * w[1]).abs() < 1e-12);
    }
}

/// bf16 mixed precision through a whole backbone (here, not in `kernels`, which sits below
/// the backbones and the training loop).
#[cfg(test)]
mod precision_tests {
    use crate::kernels::testutil::{max_rel, rand};
    use crate::kernels::{self, Precision};
    use candle_core::{DType, Tensor, Var};

    /// Reading the steps' losses and predictions once an epoch (as on a GPU) gives the same
    /// epoch metrics, first loss and weights as reading them every step, and a loss that
    /// becomes non-finite is reported at the same epoch and step.
    #[test]
    fn deferred_reads_give_the_same_metrics_and_divergence() {
        use crate::backbones::{Arch, Model};
        use crate::data::ImageSet;
        let dev = candle_core::Device::Cpu;
        let arch = Arch::Resnet8;
        let spec = arch.default_input();
        let n = 22; // 3 batches of 8, the last of 6
        let pixels: Vec<u8> = (0..n * spec.channels * spec.height * spec.width).map(|i| ((i * 7919 + i / 17) % 253) as u8).collect();
        let set = ImageSet::in_memory(pixels, (0..n as i64).map(|i| i % 3).collect(), spec);
        let norm = set.channel_stats();
        let mut r = crate::recipe::preset("finetune-all").unwrap();
        r.epochs = 2;
        r.batch_size = 8;
        let names = Model::new(arch, spec, 3, 0, &dev).unwrap().group_names.clone();
        let train = |r: &crate::recipe::Recipe, defer: bool| {
            let checked = r.check(&names, 10, 3).unwrap();
            let model = Model::new(arch, spec, 3, 0, &dev).unwrap();
            let none = std::collections::BTreeMap::new();
            let out = super::train_inner(&model, &checked, &set, None, &norm, &none, &super::NoProgress, None, true, Some(defer)).unwrap();
            let w: Vec<Vec<f32>> =
                model.named_vars().into_values().map(|v| v.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap()).collect();
            (out, w)
        };
        let (each, w_each) = train(&r, false);
        let (epoch, w_epoch) = train(&r, true);
        assert!(each.diverged.is_none() && epoch.diverged.is_none());
        assert_eq!(each.first_step_loss, epoch.first_step_loss);
        assert_eq!(each.epochs.len(), 2);
        for (a, b) in each.epochs.iter().zip(&epoch.epochs) {
            assert_eq!((a.train_loss, a.train_accuracy), (b.train_loss, b.train_accuracy), "epoch {}", a.epoch);
            assert!(a.train_accuracy > 0.0 && a.train_loss > 0.0);
        }
        assert_eq!(w_each, w_epoch);
        // a learning rate that blows the weights up after the first step
        let mut wild = r.clone();
        wild.lr = 1e30;
        let (each, _) = train(&wild, false);
        let (epoch, _) = train(&wild, true);
        let msg = each.diverged.expect("a 1e30 learning rate diverges");
        assert!(msg.contains("at epoch 1 step"), "{msg}");
        assert_eq!(epoch.diverged.as_deref(), Some(msg.as_str()));
    }

    /// A frozen prefix without augmentation is run once: training from its cached activations
    /// ends with the same weights as running it on every step, and only the leading frozen
    /// groups are cached (none with augmentation, never the head).
    #[test]
    fn cached_frozen_prefix_trains_to_the_same_weights() {
        use crate::backbones::{Arch, Model};
        use crate::data::ImageSet;
        assert_eq!(super::cacheable_prefix(&[false, false, true, false, true], true), 2);
        assert_eq!(super::cacheable_prefix(&[false, false, true], false), 0);
        assert_eq!(super::cacheable_prefix(&[true, false, true], true), 0);
        assert_eq!(super::cacheable_prefix(&[false, false, false], true), 2);
        let dev = candle_core::Device::Cpu;
        let arch = Arch::Resnet8;
        let spec = arch.default_input();
        let n = 24;
        let pixels: Vec<u8> = (0..n * spec.channels * spec.height * spec.width).map(|i| ((i * 7919 + i / 13) % 251) as u8).collect();
        let set = ImageSet::in_memory(pixels, (0..n as i64).map(|i| i % 3).collect(), spec);
        let norm = set.channel_stats();
        let mut r = crate::recipe::preset("finetune-all").unwrap();
        r.augment = Default::default();
        r.epochs = 2;
        r.batch_size = 8;
        let names = Model::new(arch, spec, 3, 0, &dev).unwrap().group_names.clone();
        for g in &names[..2] {
            r.groups.insert(g.clone(), crate::recipe::GroupSpec { action: Some(crate::recipe::Action::Freeze), lr: None });
        }
        let checked = r.check(&names, 10, 3).unwrap();
        let weights = |cache: bool| {
            let model = Model::new(arch, spec, 3, 0, &dev).unwrap();
            let out = super::train_inner(
                &model,
                &checked,
                &set,
                None,
                &norm,
                &std::collections::BTreeMap::new(),
                &super::NoProgress,
                None,
                cache,
                None,
            )
            .unwrap();
            assert!(out.diverged.is_none());
            let mut v: Vec<(String, Vec<f32>)> =
                model.named_vars().into_iter().map(|(k, v)| (k, v.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap())).collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            (v, out.first_step_loss)
        };
        let (with, l1) = weights(true);
        let (without, l2) = weights(false);
        assert_eq!(l1, l2, "first-step loss");
        let mut moved = 0;
        let fresh = Model::new(arch, spec, 3, 0, &dev).unwrap();
        for ((k, a), (_, b)) in with.iter().zip(&without) {
            let d = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
            assert!(d <= 1e-6, "{k}: cached and uncached weights differ by {d}");
            let f = fresh
                .named_vars()
                .into_iter()
                .find(|(n, _)| n == k)
                .unwrap()
                .1
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            if a != &f {
                moved += 1;
                assert!(!names[..2].iter().any(|g| fresh.group_of(k) == g.as_str()), "{k}: a frozen variable moved");
            }
        }
        assert!(moved > 0, "training moved nothing");
    }

    /// bf16 mixed precision: a training step of a whole backbone gives float32 outputs and
    /// float32 gradients for the float32 weights, within bfloat16's ~3 significant digits of
    /// the float32 step; the guard restores float32 when dropped.
    #[test]
    fn bf16_step_matches_f32_within_bf16_rounding() {
        use crate::backbones::{Arch, Model};
        let dev = candle_core::Device::Cpu;
        let arch = Arch::Resnet8;
        let model = Model::new(arch, arch.default_input(), 10, 0, &dev).unwrap();
        let s = arch.default_input();
        let x = rand(&[8, s.channels, s.height, s.width], 5, -1.0, 1.0);
        let y = Tensor::new(&[0i64, 1, 2, 3, 4, 5, 6, 7], &dev).unwrap();
        let flags = vec![true; model.n_groups()];
        let step = || {
            let logits = model.forward(&x, &flags).unwrap();
            let loss = super::cross_entropy(&logits, &y, 0.0).unwrap();
            let grads = loss.backward().unwrap();
            let (name, w) = model.named_vars().into_iter().find(|(k, v)| v.rank() == 4 && k.contains("conv")).unwrap();
            (logits, loss.to_scalar::<f32>().unwrap(), grads.get(w.as_tensor()).unwrap().clone(), name)
        };
        let (l32, loss32, g32, _) = step();
        let (l16, loss16, g16, name) = {
            let _g = kernels::set_precision(Precision::Bf16);
            step()
        };
        assert_eq!(kernels::precision(), Precision::F32, "guard restores f32");
        assert_eq!(l16.dtype(), DType::F32);
        assert_eq!(g16.dtype(), DType::F32, "{name}: master-weight gradient stays f32");
        let rel_loss = ((loss16 - loss32) / loss32).abs();
        assert!(rel_loss < 1e-3 && rel_loss > 0.0, "loss f32 {loss32} bf16 {loss16}");
        let rel_norm = |a: &Tensor, b: &Tensor| {
            let d = (a - b).unwrap().sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap().sqrt();
            d / b.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap().sqrt()
        };
        eprintln!("bf16 vs f32: loss {rel_loss:.2e}, logits {:.2e}, {name} grad {:.2e}", rel_norm(&l16, &l32), rel_norm(&g16, &g32));
        assert!(rel_norm(&l16, &l32) < 2e-2, "logits {}", rel_norm(&l16, &l32));
        // Early-layer gradients at initialisation cancel a lot, so bf16 rounding shows: PyTorch
        // 2.15's CPU bf16 autocast on the same arch, batch and input range gives relative errors
        // of 6.5e-5 (loss), 4.4e-3 (logits) and 0.147 (stage1.0.conv1 gradient); graft gives
        // 1.0e-4, 4.7e-3 and 0.166 (activations stored as bfloat16 inside the backbone; 1.2e-4,
        // 5.4e-3 and 0.164 with the per-op casts).
        assert!(rel_norm(&g16, &g32) < 0.3 && rel_norm(&g16, &g32) > 1e-4, "{name} grad {}", rel_norm(&g16, &g32));
        // and a bare conv: bf16 operands really are rounded (not silently f32)
        let xv = Var::from_tensor(&rand(&[2, 3, 8, 8], 1, -1.0, 1.0)).unwrap();
        let w = rand(&[4, 3, 3, 3], 2, -1.0, 1.0);
        let f = kernels::conv2d(xv.as_tensor(), &w, 1, 1).unwrap();
        let b = {
            let _g = kernels::set_precision(Precision::Bf16);
            kernels::conv2d(xv.as_tensor(), &w, 1, 1).unwrap()
        };
        let r = max_rel(&b, &f);
        assert!(r > 1e-5 && r < 2e-2, "bf16 conv rel err {r}");
    }

    /// How many elements of `t` differ from their value rounded to bfloat16.
    fn off_bf16(t: &Tensor) -> usize {
        let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let r = t.flatten_all().unwrap().to_dtype(DType::BF16).unwrap().to_dtype(DType::F32).unwrap().to_vec1::<f32>().unwrap();
        v.iter().zip(&r).filter(|(a, b)| a != b).count()
    }

    /// In mixed precision, activations inside a backbone's forward pass are stored as bfloat16
    /// (on the CPU: rounded to bfloat16 values, as the GPU keeps them in bfloat16), BatchNorm's
    /// output and the residual joins included; outside a backbone's pass (decoders, heads) a
    /// BatchNorm output is float32 as before, and every backbone forward function returns
    /// float32. EfficientNet-Lite0 (depthwise convolutions, ReLU6, the inverted-residual skip)
    /// and ResNet-8 (add + ReLU) stay within bfloat16 rounding of their float32 logits.
    #[test]
    fn bf16_activations_are_stored_as_bfloat16_inside_a_backbone_only() {
        use crate::backbones::{Arch, Model};
        use crate::data::InputSpec;
        let dev = candle_core::Device::Cpu;
        let vm = candle_nn::VarMap::new();
        let bn = kernels::BatchNorm::new(16, candle_nn::VarBuilder::from_varmap(&vm, DType::F32, &dev)).unwrap();
        let x = rand(&[4, 16, 5, 5], 7, -2.0, 2.0);
        let _p = kernels::set_precision(Precision::Bf16);
        let outside = bn.forward_act(&x, true, kernels::Act::Relu6).unwrap();
        assert!(off_bf16(&outside) > 100, "outside a backbone BatchNorm's output is float32");
        {
            let _s = kernels::activation_scope();
            let inside = bn.forward_act(&x, true, kernels::Act::Relu6).unwrap();
            assert_eq!(inside.dtype(), DType::F32);
            assert_eq!(off_bf16(&inside), 0, "inside, BatchNorm's output is stored as bfloat16");
            assert!(max_rel(&inside, &outside) < 4e-3);
            let frozen = bn.forward_act(&x, false, kernels::Act::Identity).unwrap();
            assert_eq!(off_bf16(&frozen), 0, "eval mode too");
            let joined = kernels::add_relu(&x, &rand(&[4, 16, 5, 5], 8, -2.0, 2.0)).unwrap();
            assert_eq!(off_bf16(&joined), 0, "add + ReLU too");
        }
        assert!(off_bf16(&bn.forward_act(&x, true, kernels::Act::Relu6).unwrap()) > 100, "the scope ends with its guard");
        drop(_p);
        for (arch, spec) in
            [(Arch::EfficientnetLite0, InputSpec { channels: 3, height: 64, width: 64 }), (Arch::Resnet8, Arch::Resnet8.default_input())]
        {
            let model = Model::new(arch, spec, 5, 0, &dev).unwrap();
            let x = rand(&[4, 3, spec.height, spec.width], 9, -1.0, 1.0);
            // eval mode: a randomly initialised Lite0 in train mode (batch statistics of 4
            // images through 16 blocks) amplifies any rounding, the per-op casts' too (logits
            // 0.24 off float32 in norm with GRAFT_BF16_PER_OP=1, 0.22 without; 2.6e-3 and
            // 2.6e-3 in eval mode)
            let eval = vec![false; model.n_groups()];
            let f32_logits = model.forward(&x, &eval).unwrap();
            let _p = kernels::set_precision(Precision::Bf16);
            let logits = model.forward(&x, &eval).unwrap();
            assert_eq!(logits.dtype(), DType::F32);
            let r = max_rel(&logits, &f32_logits);
            assert!(r > 1e-5 && r < 2e-2, "{arch:?}: bf16 logits off f32 by {r}");
            let flags = vec![true; model.n_groups()];
            let mid = model.forward_span(&x, 0..2, &flags).unwrap();
            assert_eq!(mid.dtype(), DType::F32);
            assert_eq!(off_bf16(&mid), 0, "{arch:?}: a group's output is a stored activation");
            let feats = model.features_at(&x, &[1]).unwrap();
            assert_eq!(feats[0].dtype(), DType::F32);
        }
    }
}
