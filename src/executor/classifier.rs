//! A run's trained classifier, saved in its run directory, and applied to new images
//! (`graft predict`).
//!
//! A run that saves its classifier writes, beside `run.json`:
//! - `model.safetensors`: every variable of the network as trained (BatchNorm statistics
//!   included), float32;
//! - `probe.safetensors` (probe runs only): the fitted probe's arrays, float64;
//! - `classifier.json` ([`ClassifierCard`]): what is needed to apply them without the model zoo
//!   (arch, input size, normalisation, precision, class names), and the digests that tie the
//!   files to the run record.
//!
//! Applying the classifier to the run's own test images gives the run's own test predictions:
//! the same decoding, normalisation, forward pass (or features and probe) and batch size.
use super::features::features_at;
use super::probe::{argmax_rows, softmax_rows, ProbeHead, ProbeKind};
use crate::backbones::{Arch, Model};
use crate::data::{decode_items, ImageSet, InputSpec, Item, ItemSource, Normalisation};
use crate::error::{GraftError, Result};
use crate::kernels::Precision;
use crate::util::{sha256_hex, write_atomic};
use candle_core::{DType, Device, Tensor, D};
use ndarray::Array2;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub const CLASSIFIER_FILE: &str = "classifier.json";
pub const MODEL_FILE: &str = "model.safetensors";
pub const PROBE_FILE: &str = "probe.safetensors";
const FORMAT: u32 = 1;
/// Images a forward pass takes at once (the batch the run's own evaluation uses).
const BATCH: usize = 256;
/// Images `graft predict` decodes at once: a multiple of [`BATCH`], so its forward passes see
/// the batches the run's evaluation saw.
pub const PREDICT_CHUNK: usize = 4 * BATCH;

/// `classifier.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifierCard {
    /// The file format's version (1).
    pub format: u32,
    pub run_id: String,
    /// The backbone the run started from (a name from `graft models`).
    pub backbone: String,
    pub arch: String,
    /// The input the images are resized to (the run's, after any `input_size`).
    pub input: InputSpec,
    pub normalisation: Normalisation,
    pub precision: Precision,
    /// Class names, in label order (the training folder's sorted subfolder names).
    pub classes: Vec<String>,
    /// sha256 over `model.safetensors`' variables as the run record's `final_weights_sha256`
    /// computes it.
    pub weights_sha256: String,
    pub head: SavedHead,
    /// What the run measured, for reference.
    pub test_accuracy: f64,
    pub n_test: usize,
}

/// What turns the network's output into class scores.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SavedHead {
    /// The network's own classifier layer (fine-tuning): scores are logits.
    Network,
    /// A probe fitted on the pooled features of `group` (`probe.safetensors`).
    Probe {
        probe: ProbeKind,
        group: String,
        group_index: usize,
        features: usize,
        /// sha256 of `probe.safetensors`' bytes.
        file_sha256: String,
    },
}

/// What a saved classifier's card records of the run that trained it.
pub struct RunFacts<'a> {
    pub run_id: &'a str,
    pub backbone: &'a str,
    pub precision: Precision,
    pub classes: &'a [String],
    /// The run's `final_weights_sha256`: the digest of the saved network's weights.
    pub weights_sha256: &'a str,
    pub test_accuracy: f64,
    pub n_test: usize,
}

/// Save a finished run's classifier into `run_dir`: the network, the probe (with the index of
/// the group it reads) for a probe run, and `classifier.json` last, each file written atomically.
pub fn save(run_dir: &Path, run: &RunFacts, model: &Model, norm: &Normalisation, probe: Option<(&ProbeHead, usize)>) -> Result<()> {
    model.save(&run_dir.join(MODEL_FILE))?;
    let head = match probe {
        None => SavedHead::Network,
        Some((h, g)) => {
            let arrays = h.arrays();
            let features = arrays[0].1.shape()[0];
            let mut map = HashMap::new();
            for (name, a) in arrays {
                let shape = a.shape().to_vec();
                let t = Tensor::from_vec(a.iter().copied().collect::<Vec<f64>>(), shape, &Device::Cpu)?;
                map.insert(name.to_string(), t);
            }
            let path = run_dir.join(PROBE_FILE);
            let bytes = crate::util::save_tensors(&path, map)?;
            SavedHead::Probe {
                probe: h.kind(),
                group: model.group_names[g].clone(),
                group_index: g,
                features,
                file_sha256: sha256_hex(&bytes),
            }
        }
    };
    let card = ClassifierCard {
        format: FORMAT,
        run_id: run.run_id.to_string(),
        backbone: run.backbone.to_string(),
        arch: model.arch.name().into(),
        input: model.input,
        normalisation: norm.clone(),
        precision: run.precision,
        classes: run.classes.to_vec(),
        weights_sha256: run.weights_sha256.to_string(),
        head,
        test_accuracy: run.test_accuracy,
        n_test: run.n_test,
    };
    write_atomic(&run_dir.join(CLASSIFIER_FILE), serde_json::to_string_pretty(&card).expect("serialises").as_bytes())
}

/// A saved classifier, loaded and checked against its digests.
pub struct Classifier {
    pub card: ClassifierCard,
    pub dir: PathBuf,
    model: Model,
    probe: Option<(ProbeHead, usize)>,
}

/// Class scores for a set of images: the prediction (largest score) and, where the head gives
/// them (fine-tuned networks, softmax probes), class probabilities.
pub struct Scores {
    pub scores: Array2<f64>,
    pub pred: Vec<usize>,
    pub probabilities: Option<Array2<f64>>,
}

impl Scores {
    /// The ensemble of several classifiers' scores for the same images: the mean of their
    /// probabilities (one classifier: its scores unchanged). Every one must give probabilities
    /// when there are several.
    pub fn mean_probabilities(mut each: Vec<Scores>) -> Scores {
        if each.len() == 1 {
            return each.remove(0);
        }
        let k = each.len() as f64;
        let mut p = each[0].probabilities.clone().expect("ensembled heads give probabilities");
        for s in &each[1..] {
            p += s.probabilities.as_ref().expect("ensembled heads give probabilities");
        }
        p /= k;
        Scores { scores: p.mapv(f64::ln), pred: argmax_rows(&p), probabilities: Some(p) }
    }
}

impl Classifier {
    /// Load the classifier saved in run directory `dir` (`--run`). A missing file, a file that
    /// does not match its digest, or a malformed card is an error naming the file and the fix.
    pub fn load(dir: &Path, device: &Device) -> Result<Classifier> {
        // a file of the run directory (its run.json, classifier.json, ...) names the directory
        let dir = if dir.is_file() { dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")) } else { dir };
        if !dir.is_dir() {
            return Err(GraftError::Usage(format!("--run {}: not a directory; pass a run directory (runs/<run_id>)", dir.display())));
        }
        let card_path = dir.join(CLASSIFIER_FILE);
        if !card_path.is_file() {
            return Err(GraftError::Usage(format!(
                "--run {}: no {CLASSIFIER_FILE}; this run did not save its classifier (runs of `graft sweep` and `graft experiment`, \
                 runs with --no-save-model, diverged runs and runs older than `graft predict` do not). Rerun its recipe with `graft run --recipe {}`",
                dir.display(),
                dir.join("recipe.json").display()
            )));
        }
        let text = std::fs::read_to_string(&card_path).map_err(|e| GraftError::io(&card_path, e))?;
        let card: ClassifierCard =
            serde_json::from_str(&text).map_err(|e| GraftError::Model(format!("{}: not a classifier card: {e}", card_path.display())))?;
        if card.format != FORMAT {
            return Err(GraftError::Model(format!(
                "{}: format {} (this graft reads format {FORMAT}); use the graft that wrote it",
                card_path.display(),
                card.format
            )));
        }
        // the card's own fields: a hand-edited input size would otherwise decode every image
        // at it (the weights' digest does not cover the card)
        let InputSpec { channels, height, width } = card.input;
        if !matches!(channels, 1 | 3) || !(8..=1024).contains(&height) || !(8..=1024).contains(&width) {
            return Err(GraftError::Model(format!(
                "{}: field `input` is {channels}x{height}x{width}; expected 1 or 3 channels and sides in 8..=1024",
                card_path.display()
            )));
        }
        let norm = &card.normalisation;
        if norm.mean.len() != channels
            || norm.std.len() != channels
            || norm.mean.iter().any(|m| !m.is_finite())
            || norm.std.iter().any(|s| !(s.is_finite() && *s > 0.0))
        {
            return Err(GraftError::Model(format!(
                "{}: field `normalisation` needs {channels} finite means and {channels} positive standard deviations",
                card_path.display()
            )));
        }
        let k = card.classes.len();
        if k < 2 {
            return Err(GraftError::Model(format!("{}: `classes` lists {k} classes; a classifier needs two or more", card_path.display())));
        }
        let arch = Arch::parse(&card.arch).map_err(|e| GraftError::Model(format!("{}: field `arch`: {e}", card_path.display())))?;
        let weights = dir.join(MODEL_FILE);
        if !weights.is_file() {
            return Err(GraftError::Model(format!("{}: missing; the run directory is incomplete (rerun the recipe)", weights.display())));
        }
        let model = Model::for_weights(arch, card.input, k, &weights, device)?;
        model.load_weights(&weights, &[])?;
        let sha = model.weights_sha256()?;
        if sha != card.weights_sha256 {
            return Err(GraftError::Model(format!(
                "{}: its weights' sha256 is {sha}, {CLASSIFIER_FILE} says {}; the file was changed or replaced since the run (rerun the recipe)",
                weights.display(),
                card.weights_sha256
            )));
        }
        let probe = match &card.head {
            SavedHead::Network => None,
            SavedHead::Probe { probe, group_index, features, file_sha256, .. } => {
                let path = dir.join(PROBE_FILE);
                if !path.is_file() {
                    return Err(GraftError::Model(format!(
                        "{}: missing; the run directory is incomplete (rerun the recipe)",
                        path.display()
                    )));
                }
                let bytes = std::fs::read(&path).map_err(|e| GraftError::io(&path, e))?;
                let got = sha256_hex(&bytes);
                if &got != file_sha256 {
                    return Err(GraftError::Model(format!(
                        "{}: sha256 {got}, {CLASSIFIER_FILE} says {file_sha256}; the file was changed since the run (rerun the recipe)",
                        path.display()
                    )));
                }
                if *group_index + 1 >= model.n_groups() {
                    return Err(GraftError::Model(format!(
                        "{}: `head.group_index` {group_index} is not a body group of arch {}",
                        card_path.display(),
                        arch.name()
                    )));
                }
                let tensors = candle_core::safetensors::load(&path, &Device::Cpu)
                    .map_err(|e| GraftError::Model(format!("{}: cannot read safetensors: {e}", path.display())))?;
                let get = |name: &str| -> Result<ndarray::ArrayD<f64>> {
                    let t = tensors.get(name).ok_or_else(|| GraftError::Model(format!("{}: missing array `{name}`", path.display())))?;
                    let v = t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
                    Ok(ndarray::ArrayD::from_shape_vec(t.dims().to_vec(), v).expect("shape matches"))
                };
                let head = ProbeHead::from_arrays(*probe, &get, k, *features)
                    .map_err(|e| GraftError::Model(format!("{}: {e}", path.display())))?;
                Some((head, *group_index))
            }
        };
        Ok(Classifier { card, dir: dir.to_path_buf(), model, probe })
    }

    /// Class scores for `set` (decoded at the card's input); with `flip`, the mean of the scores
    /// of each image and its mirror image (test-time augmentation; for heads with probabilities,
    /// the mean probability, and its log as the score).
    pub fn scores_tta(&self, set: &ImageSet, flip: bool) -> Result<Scores> {
        let a = self.scores(set)?;
        if !flip {
            return Ok(a);
        }
        let b = self.scores(&set.hflipped())?;
        Ok(match (a.probabilities, b.probabilities) {
            (Some(pa), Some(pb)) => {
                let p = (pa + pb) * 0.5;
                let pred = argmax_rows(&p);
                Scores { scores: p.mapv(f64::ln), pred, probabilities: Some(p) }
            }
            _ => {
                let s = (a.scores + b.scores) * 0.5;
                Scores { pred: argmax_rows(&s), scores: s, probabilities: None }
            }
        })
    }

    /// Class scores for `set` (decoded at the card's input).
    pub fn scores(&self, set: &ImageSet) -> Result<Scores> {
        let _precision = crate::kernels::set_precision(self.card.precision);
        let norm = &self.card.normalisation;
        if let Some((head, g)) = &self.probe {
            let x = features_at(&self.model, set, norm, &[*g])?.remove(0);
            let scores = head.scores(&x);
            let pred = argmax_rows(&scores);
            let probabilities = matches!(head, ProbeHead::Softmax { .. }).then(|| softmax_rows(scores.clone()));
            return Ok(Scores { scores, pred, probabilities });
        }
        let k = self.card.classes.len();
        let mut scores = Array2::<f64>::zeros((set.n, k));
        let mut pred = Vec::with_capacity(set.n);
        let idx: Vec<usize> = (0..set.n).collect();
        for chunk in idx.chunks(BATCH) {
            let x = super::train::to_tensor(set.batch(chunk, norm, None), chunk.len(), set, &self.model.device)?;
            let logits = self.model.forward(&x, &[])?.detach();
            // the prediction as the run's evaluation takes it
            pred.extend(logits.argmax(D::Minus1)?.to_dtype(DType::U32)?.to_vec1::<u32>()?.into_iter().map(|v| v as usize));
            for (r, row) in chunk.iter().zip(logits.to_dtype(DType::F32)?.to_vec2::<f32>()?) {
                for (c, v) in row.into_iter().enumerate() {
                    scores[[*r, c]] = v as f64;
                }
            }
        }
        let probabilities = Some(softmax_rows(scores.clone()));
        Ok(Scores { scores, pred, probabilities })
    }
}

/// Image files to classify: `path` itself when it is a file, else every image file under it
/// (recursively, sorted by path). An empty list is an error naming the path.
pub fn image_files(path: &Path) -> Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    if !path.is_dir() {
        return Err(GraftError::Usage(format!("--data {}: no such file or folder", path.display())));
    }
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(d) = stack.pop() {
        let rd = std::fs::read_dir(&d).map_err(|e| GraftError::io(&d, e))?;
        for e in rd {
            let e = e.map_err(|e| GraftError::io(&d, e))?;
            let p = e.path();
            // a symlinked folder is not followed (it could loop); a symlinked image is read
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(p);
            } else if crate::data::folder::is_image(&p) && p.is_file() {
                out.push(p);
            }
        }
    }
    out.sort();
    if out.is_empty() {
        return Err(GraftError::Data(format!(
            "--data {}: no image files ({}) in it or its subfolders",
            path.display(),
            crate::data::folder::IMAGE_EXTENSIONS.join(", ")
        )));
    }
    Ok(out)
}

/// Decode `files` at `spec`: the decoded images and, for each, its index in `files`; with
/// `skip_bad`, unreadable files are left out (their messages in the set's `skipped`), else the
/// first is an error naming it.
pub fn decode_files(files: &[PathBuf], spec: InputSpec, skip_bad: bool) -> Result<(ImageSet, Vec<usize>)> {
    // each item's label is its index, so the kept images say which files they are
    let items: Vec<Item> = files.iter().enumerate().map(|(i, p)| Item { source: ItemSource::File(p.clone()), label: Some(i) }).collect();
    let mut set = decode_items(&items, spec, skip_bad)?;
    let kept: Vec<usize> = set.labels.iter().map(|&l| l as usize).collect();
    set.labels = vec![-1; set.n];
    Ok((set, kept))
}

/// One image's prediction.
#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    pub path: String,
    pub class: String,
    /// The predicted class's probability (fine-tuned networks and softmax probes; None for SVM
    /// and centroid probes, whose scores are not probabilities).
    pub probability: Option<f64>,
    /// Every class's probability, in the order of the classes (None where `probability` is).
    pub probabilities: Option<Vec<f64>>,
    /// The class the image's folder names, when it is one of the classes.
    pub truth: Option<String>,
}

/// Every image's prediction, with the totals `graft predict` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Predicted {
    pub predictions: Vec<Prediction>,
    /// The decoder's message for each unreadable file left out (`skip_bad`).
    pub skipped: Vec<String>,
    /// Images predicted as each class.
    pub counts: Vec<usize>,
    pub n_labelled: usize,
    /// Over the labelled images (None without any).
    pub accuracy: Option<f64>,
    /// The mean over the labelled images' classes of the share of their images predicted
    /// right (None without any).
    pub balanced_accuracy: Option<f64>,
    /// True class × predicted class, over the labelled images (None without any).
    pub confusion: Option<Vec<Vec<usize>>>,
}

/// Classifiers that can be averaged: the same classes, each giving probabilities (one
/// classifier is always fine). The error names the run that does not fit.
pub fn check_ensemble(clfs: &[Classifier]) -> Result<()> {
    let Some(first) = clfs.first() else { return Err(GraftError::Usage("pass at least one --run".into())) };
    if clfs.len() == 1 {
        return Ok(());
    }
    for c in clfs {
        if c.card.classes != first.card.classes {
            return Err(GraftError::Usage(format!(
                "--run {}: classes {:?}, but --run {} has {:?}; an ensemble needs runs on the same classes",
                c.dir.display(),
                c.card.classes,
                first.dir.display(),
                first.card.classes
            )));
        }
        if let SavedHead::Probe { probe, .. } = &c.card.head {
            if *probe != ProbeKind::Softmax {
                return Err(GraftError::Usage(format!(
                    "--run {}: a {probe} probe gives scores, not probabilities, and an ensemble averages probabilities; \
                     use fine-tuned or softmax-probe runs",
                    c.dir.display()
                )));
            }
        }
    }
    Ok(())
}

/// Classify every image under `data` (a file, or a folder searched recursively) with the
/// classifiers (several: the mean of their probabilities, [`check_ensemble`]), `flip`: with
/// flip test-time augmentation. Images are decoded [`PREDICT_CHUNK`] at a time, each
/// classifier's at its own input; `each` sees every prediction as its chunk is done. An image's
/// truth is the nearest folder above it, up to `data` itself (a file's own folder), named after
/// a class, so a dataset's root, its test folder and one class folder all score.
pub fn predict(clfs: &[Classifier], data: &Path, flip: bool, skip_bad: bool, each: &mut dyn FnMut(&Prediction)) -> Result<Predicted> {
    check_ensemble(clfs)?;
    let classes = &clfs[0].card.classes;
    let files = image_files(data)?;
    let top = if data.is_file() { data.parent().unwrap_or(data).to_path_buf() } else { data.to_path_buf() };
    let truth_of = |p: &Path| -> Option<String> {
        p.ancestors()
            .skip(1)
            .take_while(|d| d.starts_with(&top))
            .filter_map(|d| d.file_name().map(|n| n.to_string_lossy().to_string()))
            .find(|n| classes.contains(n))
    };
    let mut predictions: Vec<Prediction> = Vec::with_capacity(files.len());
    let mut skipped: Vec<String> = Vec::new();
    for (c, chunk) in files.chunks(PREDICT_CHUNK).enumerate() {
        // each classifier at its own input (decoded once for those sharing one)
        let mut decoded: Vec<(InputSpec, ImageSet, Vec<usize>)> = Vec::new();
        let mut scores: Vec<Scores> = Vec::new();
        for clf in clfs {
            if !decoded.iter().any(|(spec, _, _)| *spec == clf.card.input) {
                let (set, kept) = decode_files(chunk, clf.card.input, skip_bad)?;
                decoded.push((clf.card.input, set, kept));
            }
            let (_, set, _) = decoded.iter().find(|(spec, _, _)| *spec == clf.card.input).expect("decoded above");
            if set.n > 0 {
                scores.push(clf.scores_tta(set, flip)?);
            }
        }
        let (_, set, kept) = &decoded[0];
        if decoded.iter().any(|(_, _, k)| k != kept) {
            return Err(GraftError::Data(format!(
                "--data {}: some images could be decoded at one run's input size and not at another's; pass runs with one input size",
                data.display()
            )));
        }
        skipped.extend(set.skipped.iter().cloned());
        if set.n == 0 {
            continue;
        }
        let s = Scores::mean_probabilities(scores);
        for (row, &i) in kept.iter().enumerate() {
            let file = &files[c * PREDICT_CHUNK + i];
            let p = Prediction {
                path: file.display().to_string(),
                class: classes[s.pred[row]].clone(),
                probability: s.probabilities.as_ref().map(|p| p[[row, s.pred[row]]]),
                probabilities: s.probabilities.as_ref().map(|p| p.row(row).to_vec()),
                truth: truth_of(file),
            };
            each(&p);
            predictions.push(p);
        }
    }
    if predictions.is_empty() {
        return Err(GraftError::Data(format!("--data {}: none of its {} image files could be decoded", data.display(), files.len())));
    }
    let ix = |c: &str| classes.iter().position(|k| k == c).expect("a class of the classifier");
    let mut counts = vec![0usize; classes.len()];
    let mut confusion = vec![vec![0usize; classes.len()]; classes.len()];
    let (mut n_labelled, mut correct) = (0usize, 0usize);
    for p in &predictions {
        counts[ix(&p.class)] += 1;
        if let Some(t) = &p.truth {
            confusion[ix(t)][ix(&p.class)] += 1;
            n_labelled += 1;
            correct += usize::from(t == &p.class);
        }
    }
    let labelled = n_labelled > 0;
    Ok(Predicted {
        predictions,
        skipped,
        counts,
        n_labelled,
        accuracy: labelled.then(|| correct as f64 / n_labelled as f64),
        balanced_accuracy: super::probe::balanced_accuracy_of(&confusion),
        confusion: labelled.then_some(confusion),
    })
}

/// The predictions as CSV (path, class, probability, truth), fields with a comma, quote or line
/// break quoted.
pub fn to_csv(predictions: &[Prediction]) -> String {
    let quote = |v: &str| if v.contains([',', '"', '\n', '\r']) { format!("\"{}\"", v.replace('"', "\"\"")) } else { v.to_string() };
    let mut csv = String::from("path,class,probability,truth\n");
    for p in predictions {
        let prob = p.probability.map(|v| format!("{v:.6}")).unwrap_or_default();
        csv.push_str(&format!("{},{},{prob},{}\n", quote(&p.path), quote(&p.class), quote(p.truth.as_deref().unwrap_or(""))));
    }
    csv
}
