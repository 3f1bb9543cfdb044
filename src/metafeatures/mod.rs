//! Task meta-features: a dataset profile and per-layer-group transferability scores computed
//! from one pass of the training images through a backbone (`graft inspect`).
pub mod curve;
pub mod images;
pub mod stats;
pub mod transfer;

use crate::backbones::{card, Model, ModelRef};
use crate::data::{decode_items, load_dataset, ImageSet, ItemSource, LoadOptions};
use crate::error::{GraftError, Result};
use candle_core::{Device, Tensor, D};
use ndarray::Array2;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CountStats {
    pub min: usize,
    pub median: f64,
    pub max: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatasetProfile {
    pub root: String,
    pub classes: Vec<String>,
    pub n_classes: usize,
    pub images_per_class: CountStats,
    pub n_labelled: usize,
    pub n_unlabelled: usize,
    pub n_test: usize,
    /// Width and height of the first training image as stored.
    pub image_width: u32,
    pub image_height: u32,
    /// Channels of the first training image as stored (1 grey, 3 colour, 4 with alpha).
    pub image_channels: u8,
    /// The training images as stored (see [`images`]): median sqrt(width x height) and mean
    /// chroma; null when none could be read (and in [`inspect_decoded`]'s report: `inspect`
    /// measures them).
    #[serde(default)]
    pub native_size: Option<f64>,
    #[serde(default)]
    pub colourfulness: Option<f64>,
    /// Per-channel mean and std of pixels in [0, 1] at the backbone's input.
    pub colour_mean: Vec<f32>,
    pub colour_std: Vec<f32>,
    /// Cross-validated nearest-centroid accuracy on standardised raw pixels (null with < 2 images per class).
    pub pixel_separability: Option<f64>,
    pub fingerprint: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupScores {
    pub name: String,
    pub dim: usize,
    pub logme: f64,
    pub hscore: f64,
    /// Cross-validated nearest-centroid accuracy on the group's pooled features.
    pub probe_accuracy: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InspectReport {
    pub dataset: DatasetProfile,
    pub backbone: String,
    pub groups: Vec<GroupScores>,
    /// LEEP and NCE against the backbone's source head (null when it has none).
    pub leep: Option<f64>,
    pub nce: Option<f64>,
    /// Fréchet distance between the target's and the source's pooled penultimate features
    /// (null when the card has no source statistics).
    pub frechet_distance: Option<f64>,
    /// The label curve under the last group's features: a nearest-centroid probe's accuracy
    /// on held-out training images when trained on 1, 2, 4, ... images a class
    /// ([`curve::label_curve`]; descriptive: it did not foretell the gain from more labels);
    /// null when a class has fewer than three images.
    #[serde(default)]
    pub label_curve: Option<curve::LabelCurve>,
    pub seconds: HashMap<String, f64>,
}

/// Minimum, median and maximum of per-class image counts.
pub fn count_stats(counts: &[usize]) -> CountStats {
    let mut s = counts.to_vec();
    s.sort();
    let median = if s.is_empty() {
        0.0
    } else if s.len() % 2 == 1 {
        s[s.len() / 2] as f64
    } else {
        (s[s.len() / 2 - 1] + s[s.len() / 2]) as f64 / 2.0
    };
    CountStats { min: *s.first().unwrap_or(&0), median, max: *s.last().unwrap_or(&0) }
}

fn to_array(rows: Vec<f32>, n: usize) -> Array2<f64> {
    let d = rows.len().checked_div(n).unwrap_or(0);
    Array2::from_shape_vec((n, d), rows.into_iter().map(|v| v as f64).collect()).expect("shape")
}

/// Pooled features of every group but the head, and the head's softmax, in one pass.
pub fn group_features(model: &Model, set: &ImageSet, norm: &crate::data::Normalisation) -> Result<(Vec<Array2<f64>>, Array2<f64>)> {
    let ng = model.n_groups();
    let mut rows: Vec<Vec<f32>> = vec![Vec::new(); ng];
    let idx: Vec<usize> = (0..set.n).collect();
    for chunk in idx.chunks(256) {
        let x = Tensor::from_vec(
            set.batch(chunk, norm, None),
            (chunk.len(), set.spec.channels, set.spec.height, set.spec.width),
            &model.device,
        )?;
        let outs = model.forward_groups(&x, &[], ng - 1)?;
        for (g, o) in outs.iter().enumerate() {
            let t = if g == ng - 1 { candle_nn::ops::softmax(o, D::Minus1)? } else { crate::backbones::pool(o)? };
            rows[g].extend(t.flatten_all()?.to_vec1::<f32>()?);
        }
    }
    let mut arrays: Vec<Array2<f64>> = rows.into_iter().map(|r| to_array(r, set.n)).collect();
    let theta = arrays.pop().expect("head");
    Ok((arrays, theta))
}

/// Path of a model's source feature statistics (mean and covariance of pooled penultimate
/// features on the source training data).
pub fn stats_path(weights: &Path) -> PathBuf {
    weights.with_extension("stats.safetensors")
}

/// Compute and write source statistics for a model from (up to `max`) images of `data`.
pub fn write_source_stats(mref: &ModelRef, data: &Path, max: usize, seed: u64) -> Result<PathBuf> {
    let ds = load_dataset(&LoadOptions { seed, ..LoadOptions::new(data) })?;
    let mut items = ds.train.clone();
    if items.len() > max {
        use rand::seq::SliceRandom;
        items.shuffle(&mut crate::util::rng_for(seed, "source-stats"));
        items.truncate(max);
    }
    let set = decode_items(&items, mref.card.input, true)?;
    let model = Model::load(mref, 0, &Device::Cpu)?;
    let (feats, _) = group_features(&model, &set, &mref.card.normalisation)?;
    let pen = &feats[feats.len() - 1];
    let (mean, cov) = transfer::mean_cov(pen);
    let d = mean.len();
    let dev = Device::Cpu;
    let mut map = HashMap::new();
    map.insert("penultimate.mean".to_string(), Tensor::from_vec(mean, d, &dev)?);
    map.insert("penultimate.cov".to_string(), Tensor::from_vec(cov.into_raw_vec_and_offset().0, (d, d), &dev)?);
    map.insert("n".to_string(), Tensor::new(&[set.n as f64], &dev)?);
    let p = stats_path(&mref.weights);
    crate::util::save_tensors(&p, map)?;
    Ok(p)
}

fn load_source_stats(mref: &ModelRef) -> Result<Option<(Vec<f64>, Array2<f64>)>> {
    let p = stats_path(&mref.weights);
    if !p.is_file() {
        return Ok(None);
    }
    let t = candle_core::safetensors::load(&p, &Device::Cpu).map_err(|e| GraftError::Model(format!("{}: {e}", p.display())))?;
    let get = |k: &str| t.get(k).ok_or_else(|| GraftError::Model(format!("{}: missing tensor `{k}`", p.display())));
    let mean: Vec<f64> = get("penultimate.mean")?.to_dtype(candle_core::DType::F64)?.to_vec1()?;
    let cov = get("penultimate.cov")?.to_dtype(candle_core::DType::F64)?;
    let d = mean.len();
    let cov =
        Array2::from_shape_vec((d, d), cov.flatten_all()?.to_vec1()?).map_err(|e| GraftError::Model(format!("{}: {e}", p.display())))?;
    Ok(Some((mean, cov)))
}

pub struct InspectOptions {
    pub data: LoadOptions,
    pub backbone: String,
    pub skip_bad: bool,
    /// Write each group's pooled features, the head's softmax and the labels as .npy here.
    pub dump_features: Option<PathBuf>,
    /// Square input size instead of the card's.
    pub input_size: Option<usize>,
}

fn dump(dir: &Path, names: &[String], feats: &[Array2<f64>], theta: &Array2<f64>, y: &[usize]) -> Result<()> {
    use ndarray_npy::write_npy;
    std::fs::create_dir_all(dir).map_err(|e| GraftError::io(dir, e))?;
    let err = |p: &Path, e: ndarray_npy::WriteNpyError| GraftError::Other(format!("{}: {e}", p.display()));
    for (g, f) in feats.iter().enumerate() {
        let p = dir.join(format!("group_{g}_{}.npy", names[g]));
        write_npy(&p, f).map_err(|e| err(&p, e))?;
    }
    let p = dir.join("theta.npy");
    write_npy(&p, theta).map_err(|e| err(&p, e))?;
    let p = dir.join("labels.npy");
    write_npy(&p, &ndarray::Array1::from_iter(y.iter().map(|&v| v as i64))).map_err(|e| err(&p, e))?;
    Ok(())
}

pub fn inspect(o: &InspectOptions) -> Result<InspectReport> {
    let mut secs = HashMap::new();
    let t0 = Instant::now();
    let mut mref = card::resolve(&o.backbone)?;
    if let Some(sz) = o.input_size {
        card::override_input_size(&mut mref, sz)?;
    }
    let ds = load_dataset(&o.data)?;
    secs.insert("load".to_string(), t0.elapsed().as_secs_f64());
    let t0 = Instant::now();
    let set = decode_items(&ds.train, mref.card.input, o.skip_bad)?;
    secs.insert("decode".to_string(), t0.elapsed().as_secs_f64());
    if set.n < 2 {
        return Err(GraftError::Data(format!("{}: fewer than two readable training images", ds.root.display())));
    }
    let mut r = inspect_decoded(&mref, &ds, &set, o.dump_features.as_deref())?;
    let traits = images::image_traits(&ds.train);
    r.dataset.native_size = traits.map(|t| t.native_size);
    r.dataset.colourfulness = traits.map(|t| t.colourfulness);
    r.seconds.extend(secs);
    Ok(r)
}

/// Inspect already decoded training images (`set`, of dataset `ds`) with a resolved backbone.
pub fn inspect_decoded(mref: &ModelRef, ds: &crate::data::Dataset, set: &ImageSet, dump_features: Option<&Path>) -> Result<InspectReport> {
    let mut secs = HashMap::new();
    let y: Vec<usize> = set.labels.iter().map(|&l| l as usize).collect();
    let (w, h, ch) = match ds.train.first().map(|i| &i.source) {
        Some(ItemSource::File(p)) => {
            let (w, h) = image::image_dimensions(p).unwrap_or((0, 0));
            let c = image::open(p).map(|i| i.color().channel_count()).unwrap_or(0);
            (w, h, c)
        }
        Some(ItemSource::Pixels { width, height, channels, .. }) => (*width, *height, *channels),
        None => (0, 0, 0),
    };
    let t0 = Instant::now();
    let stats = set.channel_stats();
    let pix = to_array(set.pixels.iter().map(|&p| p as f32 / 255.0).collect(), set.n);
    let pixel_sep = transfer::nearest_centroid_cv(&pix, &y, 0);
    let counts = set.class_counts(ds.n_classes());
    let profile = DatasetProfile {
        root: ds.root.display().to_string(),
        classes: ds.classes.clone(),
        n_classes: ds.n_classes(),
        images_per_class: count_stats(&counts),
        n_labelled: set.n,
        n_unlabelled: ds.unlabelled.len(),
        n_test: ds.test.len(),
        image_width: w,
        image_height: h,
        image_channels: ch,
        // measured by `inspect` (once per task; the callers that inspect one task per backbone
        // do not need them)
        native_size: None,
        colourfulness: None,
        colour_mean: stats.mean,
        colour_std: stats.std,
        pixel_separability: pixel_sep,
        fingerprint: set.fingerprint.clone(),
    };
    secs.insert("profile".to_string(), t0.elapsed().as_secs_f64());
    let t0 = Instant::now();
    let model = Model::load(mref, 0, &Device::Cpu)?;
    let (feats, theta) = group_features(&model, set, &mref.card.normalisation)?;
    secs.insert("features".to_string(), t0.elapsed().as_secs_f64());
    if let Some(d) = dump_features {
        dump(d, &model.group_names, &feats, &theta, &y)?;
    }
    let t0 = Instant::now();
    let groups = feats
        .iter()
        .enumerate()
        .map(|(g, f)| GroupScores {
            name: model.group_names[g].clone(),
            dim: f.ncols(),
            logme: transfer::logme(f, &y),
            hscore: transfer::hscore(f, &y),
            probe_accuracy: transfer::nearest_centroid_cv(f, &y, 0),
        })
        .collect();
    // a head trained on labelled source data (graft's supervised pretraining, converted ImageNet weights)
    let has_head = mref.card.method.starts_with("supervised");
    let (leep, nce) = if has_head { (Some(transfer::leep(&theta, &y)), Some(transfer::nce(&theta, &y))) } else { (None, None) };
    let frechet_distance = match load_source_stats(mref)? {
        Some((mu, cov)) => {
            let (m2, c2) = transfer::mean_cov(&feats[feats.len() - 1]);
            Some(transfer::frechet(&m2, &c2, &mu, &cov))
        }
        None => None,
    };
    let label_curve = feats.last().and_then(|f| curve::label_curve(f, &y, 0));
    secs.insert("scores".to_string(), t0.elapsed().as_secs_f64());
    Ok(InspectReport {
        dataset: profile,
        backbone: mref.card.name.clone(),
        groups,
        leep,
        nce,
        frechet_distance,
        label_curve,
        seconds: secs,
    })
}
