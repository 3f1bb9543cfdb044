//! The meta-dataset: one row per run, as Parquet part files in a folder (one file per run or
//! per shard), each written atomically (temporary file, fsync, rename), so a crash never
//! leaves a partial row. pandas, pyarrow and polars read the folder as one table. The columns
//! are fixed per schema version (see `meta_dataset/README.md`).
use crate::data::{Dataset, ImageSet};
use crate::error::{GraftError, Result};
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const SCHEMA_VERSION: i64 = 2;

/// Cheap task meta-features computed for every run (the `mf_*` columns).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TaskProfile {
    pub n_classes: usize,
    pub n_train: usize,
    pub n_test: usize,
    pub n_unlabelled: usize,
    pub shots_min: usize,
    pub shots_median: f64,
    pub shots_max: usize,
    /// Mean and std of pixel values in [0, 1] over the training images (backbone input).
    pub pixel_mean: f64,
    pub pixel_std: f64,
    pub input_channels: usize,
    pub input_size: usize,
}

impl TaskProfile {
    pub fn compute(ds: &Dataset, train: &ImageSet) -> Self {
        let shots = crate::metafeatures::count_stats(&train.class_counts(ds.n_classes()));
        let st = train.channel_stats();
        let c = st.mean.len().max(1) as f64;
        TaskProfile {
            n_classes: ds.n_classes(),
            n_train: train.n,
            n_test: ds.test.len(),
            n_unlabelled: ds.unlabelled.len(),
            shots_min: shots.min,
            shots_median: shots.median,
            shots_max: shots.max,
            pixel_mean: st.mean.iter().map(|&v| v as f64).sum::<f64>() / c,
            pixel_std: st.std.iter().map(|&v| v as f64).sum::<f64>() / c,
            input_channels: train.spec.channels,
            input_size: train.spec.height,
        }
    }
}

/// Transferability meta-features of a task for one backbone (from `graft inspect`), taken at
/// three relative depths so that backbones with different group counts line up: the first
/// group, the middle body group and the penultimate group.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TransferFeatures {
    pub logme_first: f64,
    pub logme_mid: f64,
    pub logme_last: f64,
    pub ncprobe_first: Option<f64>,
    pub ncprobe_mid: Option<f64>,
    pub ncprobe_last: Option<f64>,
    pub hscore_last: f64,
    pub leep: Option<f64>,
    pub nce: Option<f64>,
    pub frechet: Option<f64>,
    pub pixel_separability: Option<f64>,
}

impl TransferFeatures {
    pub fn from_report(r: &crate::metafeatures::InspectReport) -> Self {
        let g = &r.groups;
        let n = g.len();
        let (first, mid, last) = (&g[0], &g[(n - 1) / 2], &g[n - 1]);
        TransferFeatures {
            logme_first: first.logme,
            logme_mid: mid.logme,
            logme_last: last.logme,
            ncprobe_first: first.probe_accuracy,
            ncprobe_mid: mid.probe_accuracy,
            ncprobe_last: last.probe_accuracy,
            hscore_last: last.hscore,
            leep: r.leep,
            nce: r.nce,
            frechet: r.frechet_distance,
            pixel_separability: r.dataset.pixel_separability,
        }
    }
}

/// One meta-dataset row. The column order and types are the schema.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MetaRow {
    pub run_id: String,
    pub task_id: String,
    pub family: String,
    pub backbone: String,
    pub strategy: String,
    pub status: String,
    pub test_accuracy: f64,
    pub val_accuracy: Option<f64>,
    pub seed: i64,
    pub train_seconds: f64,
    pub schema_version: i64,
    pub device: String,
    pub created_at: String,
    pub n_train: i64,
    pub n_test: i64,
    pub n_classes: i64,
    pub mf: TaskProfile,
    pub mft: TransferFeatures,
    /// Whether `mft` was computed for this run (false for a plain `graft run`).
    pub has_mft: bool,
    pub task_shift: String,
    pub task_spec: String,
    pub r_n_groups: i64,
    /// The recipe's name (a preset's name, or a sweep arm's id).
    pub r_name: String,
    /// Relative depth of the probed group, 0 (first) .. 1 (penultimate); null for fine-tuning.
    pub r_probe_depth: Option<f64>,
    /// Unsupervised pretraining before fine-tuning (`none` until recipes carry one).
    pub r_pretrain: String,
    pub wall_seconds: f64,
    pub r_default_action: String,
    pub r_actions: String,
    pub r_n_freeze: i64,
    pub r_n_finetune: i64,
    pub r_n_reinit: i64,
    pub r_lr: f64,
    pub r_layer_decay: f64,
    pub r_optimizer: String,
    pub r_weight_decay: f64,
    pub r_l2sp: f64,
    pub r_schedule: String,
    pub r_warmup_epochs: f64,
    pub r_epochs: i64,
    pub r_batch_size: i64,
    pub r_label_smoothing: f64,
    pub r_probe_group: String,
    pub r_aug_crop_padding: i64,
    pub r_aug_hflip: bool,
    pub r_aug_random_resized_crop: f64,
    pub r_aug_color_jitter: f64,
    pub r_aug_gaussian_noise: f64,
    pub r_aug_gaussian_blur: f64,
    pub recipe: String,
}

macro_rules! col {
    ($rows:expr, $name:expr, $f:expr) => {
        Column::new($name.into(), $rows.iter().map($f).collect::<Vec<_>>())
    };
}

/// Rows as a DataFrame with the schema's columns in order.
pub fn to_frame(rows: &[MetaRow]) -> Result<DataFrame> {
    let cols = vec![
        col!(rows, "run_id", |r| r.run_id.clone()),
        col!(rows, "task_id", |r| r.task_id.clone()),
        col!(rows, "family", |r| r.family.clone()),
        col!(rows, "backbone", |r| r.backbone.clone()),
        col!(rows, "strategy", |r| r.strategy.clone()),
        col!(rows, "status", |r| r.status.clone()),
        col!(rows, "test_accuracy", |r| r.test_accuracy),
        col!(rows, "val_accuracy", |r| r.val_accuracy),
        col!(rows, "seed", |r| r.seed),
        col!(rows, "train_seconds", |r| r.train_seconds),
        col!(rows, "schema_version", |r| r.schema_version),
        col!(rows, "device", |r| r.device.clone()),
        col!(rows, "created_at", |r| r.created_at.clone()),
        col!(rows, "n_train", |r| r.n_train),
        col!(rows, "n_test", |r| r.n_test),
        col!(rows, "n_classes", |r| r.n_classes),
        col!(rows, "mf_n_classes", |r| r.mf.n_classes as i64),
        col!(rows, "mf_n_train", |r| r.mf.n_train as i64),
        col!(rows, "mf_n_test", |r| r.mf.n_test as i64),
        col!(rows, "mf_n_unlabelled", |r| r.mf.n_unlabelled as i64),
        col!(rows, "mf_shots_min", |r| r.mf.shots_min as i64),
        col!(rows, "mf_shots_median", |r| r.mf.shots_median),
        col!(rows, "mf_shots_max", |r| r.mf.shots_max as i64),
        col!(rows, "mf_pixel_mean", |r| r.mf.pixel_mean),
        col!(rows, "mf_pixel_std", |r| r.mf.pixel_std),
        col!(rows, "mf_input_channels", |r| r.mf.input_channels as i64),
        col!(rows, "mf_input_size", |r| r.mf.input_size as i64),
        col!(rows, "mf_logme_first", |r| r.has_mft.then_some(r.mft.logme_first)),
        col!(rows, "mf_logme_mid", |r| r.has_mft.then_some(r.mft.logme_mid)),
        col!(rows, "mf_logme_last", |r| r.has_mft.then_some(r.mft.logme_last)),
        col!(rows, "mf_ncprobe_first", |r| r.mft.ncprobe_first),
        col!(rows, "mf_ncprobe_mid", |r| r.mft.ncprobe_mid),
        col!(rows, "mf_ncprobe_last", |r| r.mft.ncprobe_last),
        col!(rows, "mf_hscore_last", |r| r.has_mft.then_some(r.mft.hscore_last)),
        col!(rows, "mf_leep", |r| r.mft.leep),
        col!(rows, "mf_nce", |r| r.mft.nce),
        col!(rows, "mf_frechet", |r| r.mft.frechet),
        col!(rows, "mf_pixel_separability", |r| r.mft.pixel_separability),
        col!(rows, "task_shift", |r| r.task_shift.clone()),
        col!(rows, "task_spec", |r| r.task_spec.clone()),
        col!(rows, "r_n_groups", |r| r.r_n_groups),
        col!(rows, "r_name", |r| r.r_name.clone()),
        col!(rows, "r_probe_depth", |r| r.r_probe_depth),
        col!(rows, "r_pretrain", |r| r.r_pretrain.clone()),
        col!(rows, "wall_seconds", |r| r.wall_seconds),
        col!(rows, "r_default_action", |r| r.r_default_action.clone()),
        col!(rows, "r_actions", |r| r.r_actions.clone()),
        col!(rows, "r_n_freeze", |r| r.r_n_freeze),
        col!(rows, "r_n_finetune", |r| r.r_n_finetune),
        col!(rows, "r_n_reinit", |r| r.r_n_reinit),
        col!(rows, "r_lr", |r| r.r_lr),
        col!(rows, "r_layer_decay", |r| r.r_layer_decay),
        col!(rows, "r_optimizer", |r| r.r_optimizer.clone()),
        col!(rows, "r_weight_decay", |r| r.r_weight_decay),
        col!(rows, "r_l2sp", |r| r.r_l2sp),
        col!(rows, "r_schedule", |r| r.r_schedule.clone()),
        col!(rows, "r_warmup_epochs", |r| r.r_warmup_epochs),
        col!(rows, "r_epochs", |r| r.r_epochs),
        col!(rows, "r_batch_size", |r| r.r_batch_size),
        col!(rows, "r_label_smoothing", |r| r.r_label_smoothing),
        col!(rows, "r_probe_group", |r| r.r_probe_group.clone()),
        col!(rows, "r_aug_crop_padding", |r| r.r_aug_crop_padding),
        col!(rows, "r_aug_hflip", |r| r.r_aug_hflip),
        col!(rows, "r_aug_random_resized_crop", |r| r.r_aug_random_resized_crop),
        col!(rows, "r_aug_color_jitter", |r| r.r_aug_color_jitter),
        col!(rows, "r_aug_gaussian_noise", |r| r.r_aug_gaussian_noise),
        col!(rows, "r_aug_gaussian_blur", |r| r.r_aug_gaussian_blur),
        col!(rows, "recipe", |r| r.recipe.clone()),
    ];
    DataFrame::new(rows.len(), cols).map_err(|e| GraftError::Other(format!("building meta-dataset frame: {e}")))
}

fn part_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("part-{id}.parquet"))
}

/// Write rows as one Parquet part file `dir/part-<id>.parquet`, atomically.
/// Encode `df` as Parquet (zstd) in memory, then write, fsync and close `path`. Encoding into
/// memory first means a full disk or any other write failure surfaces as an I/O error naming
/// `path` (the Parquet writer's own buffered flush could swallow it and leave a truncated file).
pub fn write_parquet_file(df: &mut DataFrame, path: &Path) -> Result<()> {
    use std::io::Write;
    let mut buf: Vec<u8> = Vec::new();
    ParquetWriter::new(&mut buf)
        .with_compression(ParquetCompression::Zstd(None))
        .finish(df)
        .map_err(|e| GraftError::Other(format!("{}: encoding Parquet: {e}", path.display())))?;
    let mut f = std::fs::File::create(path).map_err(|e| GraftError::io(path, e))?;
    let res = f.write_all(&buf).and_then(|_| f.sync_all());
    if let Err(e) = res {
        drop(f);
        let _ = std::fs::remove_file(path);
        return Err(GraftError::io(path, e));
    }
    Ok(())
}

pub fn write_part(dir: &Path, id: &str, rows: &[MetaRow]) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| GraftError::io(dir, e))?;
    let mut df = to_frame(rows)?;
    let path = part_path(dir, id);
    let tmp = dir.join(format!(".part-{id}.parquet.tmp-{}", std::process::id()));
    write_parquet_file(&mut df, &tmp)?;
    std::fs::rename(&tmp, &path).map_err(|e| GraftError::io(&path, e))?;
    Ok(path)
}

/// Append one run: its own part file `dir/source=run/part-<run id>.parquet` (a Hive-style
/// partition beside the sweeps' `source=sweep-<plan>/`).
pub fn append(dir: &Path, row: &MetaRow) -> Result<PathBuf> {
    // temporary files left by a killed process or a full disk
    crate::util::remove_stale_temps(&dir.join("source=run"));
    write_part(&dir.join("source=run"), &row.run_id, std::slice::from_ref(row))
}

/// Every `*.parquet` file under `dir` (recursively; Hive-style folders allowed), sorted. Files
/// and folders whose names start with `.` or `_` are skipped, as pyarrow and polars skip them
/// (a sweep's staging area lives in `_staging/`).
pub fn part_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_entry(|e| {
            let n = e.file_name().to_string_lossy();
            e.depth() == 0 || !(n.starts_with('.') || n.starts_with('_'))
        })
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name().to_string_lossy();
            e.file_type().is_file() && n.ends_with(".parquet") && !n.starts_with('.') && !n.starts_with('_')
        })
        .map(|e| e.into_path())
        .collect();
    v.sort();
    v
}

/// Read the whole meta-dataset folder as one DataFrame.
pub fn read_all(dir: &Path) -> Result<DataFrame> {
    if !dir.is_dir() {
        return Err(GraftError::Data(format!(
            "meta-dataset folder {} does not exist{}; pass --meta with a folder that `graft run --meta` or `graft sweep --out` wrote",
            dir.display(),
            if dir.exists() { " as a folder" } else { "" }
        )));
    }
    let files = part_files(dir);
    if files.is_empty() {
        return Err(GraftError::Data(format!(
            "meta-dataset {} holds no Parquet files; run `graft run --meta {}` first",
            dir.display(),
            dir.display()
        )));
    }
    let mut out: Option<DataFrame> = None;
    for f in files {
        let file = std::fs::File::open(&f).map_err(|e| GraftError::io(&f, e))?;
        let df = ParquetReader::new(file).finish().map_err(|e| GraftError::Data(format!("{}: unreadable Parquet: {e}", f.display())))?;
        out = Some(match out {
            None => df,
            Some(mut acc) => {
                acc.vstack_mut(&df).map_err(|e| GraftError::Data(format!("{}: schema differs from the other parts: {e}", f.display())))?;
                acc
            }
        });
    }
    drop_duplicate_runs(out.expect("non-empty"), dir)
}

/// Keep the first row of every run id: two writers on one shard (before sweeps took a lock)
/// could record a run twice, and a run must count once.
fn drop_duplicate_runs(df: DataFrame, dir: &Path) -> Result<DataFrame> {
    let ids =
        df.column("run_id").and_then(|c| c.str().cloned()).map_err(|e| GraftError::Data(format!("{}: run_id: {e}", dir.display())))?;
    let mut seen = std::collections::HashSet::new();
    let keep: Vec<bool> = ids.iter().map(|v| seen.insert(v.unwrap_or_default().to_string())).collect();
    let dropped = keep.iter().filter(|k| !**k).count();
    if dropped == 0 {
        return Ok(df);
    }
    tracing::warn!("{}: {dropped} duplicate rows of already-recorded runs ignored", dir.display());
    df.filter(&BooleanChunked::from_slice("keep".into(), &keep)).map_err(|e| GraftError::Data(format!("{}: {e}", dir.display())))
}
