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
    /// The training images as stored, before the backbone resizes them
    /// ([`crate::metafeatures::images`]): median sqrt(width x height) in pixels, and mean
    /// chroma in [0, 1]. `None` where they could not be measured (rows logged before these
    /// columns, unless `graft meta backfill` filled them in).
    #[serde(default)]
    pub native_size: Option<f64>,
    #[serde(default)]
    pub colourfulness: Option<f64>,
}

impl TaskProfile {
    /// Most over fewest training images a class: 1 for a balanced task, and for a profile
    /// without counts (rows that lack them, or no training images).
    pub fn imbalance(&self) -> f64 {
        if self.shots_min == 0 || self.shots_max <= self.shots_min {
            1.0
        } else {
            self.shots_max as f64 / self.shots_min as f64
        }
    }

    /// The profile of `ds` with its training images decoded (`train`); `images` are the stored
    /// images' traits, measured once per task by the caller ([`crate::executor::run::Prepared::images`]).
    pub fn compute(ds: &Dataset, train: &ImageSet, images: Option<crate::metafeatures::images::ImageTraits>) -> Self {
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
            native_size: images.map(|t| t.native_size),
            colourfulness: images.map(|t| t.colourfulness),
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

/// One meta-dataset row. Its columns, their order and types are defined once, by the
/// `schema!` table below.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
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
    /// The square input size the backbone ran at (pixels).
    pub r_input_size: i64,
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

/// The schema, each column once: its name, how it is read back (`text`, `real`, `int`, `flag`),
/// the value a row gives it (whose type is the column's Parquet type), and how a value read
/// back sets the row. [`to_frame`], [`from_frame`] and [`COLUMNS`] are generated from it.
macro_rules! schema {
    ($($name:literal $kind:ident: |$r:ident| $get:expr, |$w:ident, $v:ident| $set:expr;)*) => {
        /// The columns, in order.
        pub const COLUMNS: &[&str] = &[$($name),*];

        /// Rows as a DataFrame with the schema's columns in order.
        pub fn to_frame(rows: &[MetaRow]) -> Result<DataFrame> {
            let cols = vec![$(Column::new($name.into(), rows.iter().map(|$r| $get).collect::<Vec<_>>())),*];
            DataFrame::new(rows.len(), cols).map_err(|e| GraftError::Other(format!("building meta-dataset frame: {e}")))
        }

        /// Rows back from a DataFrame with the schema's columns (`what` names it in errors).
        pub fn from_frame(df: &DataFrame, what: &Path) -> Result<Vec<MetaRow>> {
            let mut rows = vec![MetaRow::default(); df.height()];
            $(
                for (row, value) in rows.iter_mut().zip(read::$kind(df, $name, what)?) {
                    let ($w, $v) = (row, value);
                    $set;
                }
            )*
            Ok(rows)
        }
    };
}

schema! {
    "run_id" text: |r| r.run_id.clone(), |w, v| w.run_id = v;
    "task_id" text: |r| r.task_id.clone(), |w, v| w.task_id = v;
    "family" text: |r| r.family.clone(), |w, v| w.family = v;
    "backbone" text: |r| r.backbone.clone(), |w, v| w.backbone = v;
    "strategy" text: |r| r.strategy.clone(), |w, v| w.strategy = v;
    "status" text: |r| r.status.clone(), |w, v| w.status = v;
    "test_accuracy" real: |r| r.test_accuracy, |w, v| w.test_accuracy = v.unwrap_or(f64::NAN);
    "val_accuracy" real: |r| r.val_accuracy, |w, v| w.val_accuracy = v;
    "seed" int: |r| r.seed, |w, v| w.seed = v.unwrap_or(0);
    "train_seconds" real: |r| r.train_seconds, |w, v| w.train_seconds = v.unwrap_or(f64::NAN);
    "schema_version" int: |r| r.schema_version, |w, v| w.schema_version = v.unwrap_or(0);
    "device" text: |r| r.device.clone(), |w, v| w.device = v;
    "created_at" text: |r| r.created_at.clone(), |w, v| w.created_at = v;
    "n_train" int: |r| r.n_train, |w, v| w.n_train = v.unwrap_or(0);
    "n_test" int: |r| r.n_test, |w, v| w.n_test = v.unwrap_or(0);
    "n_classes" int: |r| r.n_classes, |w, v| w.n_classes = v.unwrap_or(0);
    "mf_n_classes" int: |r| r.mf.n_classes as i64, |w, v| w.mf.n_classes = v.unwrap_or(0) as usize;
    "mf_n_train" int: |r| r.mf.n_train as i64, |w, v| w.mf.n_train = v.unwrap_or(0) as usize;
    "mf_n_test" int: |r| r.mf.n_test as i64, |w, v| w.mf.n_test = v.unwrap_or(0) as usize;
    "mf_n_unlabelled" int: |r| r.mf.n_unlabelled as i64, |w, v| w.mf.n_unlabelled = v.unwrap_or(0) as usize;
    "mf_shots_min" int: |r| r.mf.shots_min as i64, |w, v| w.mf.shots_min = v.unwrap_or(0) as usize;
    "mf_shots_median" real: |r| r.mf.shots_median, |w, v| w.mf.shots_median = v.unwrap_or(f64::NAN);
    "mf_shots_max" int: |r| r.mf.shots_max as i64, |w, v| w.mf.shots_max = v.unwrap_or(0) as usize;
    "mf_pixel_mean" real: |r| r.mf.pixel_mean, |w, v| w.mf.pixel_mean = v.unwrap_or(f64::NAN);
    "mf_pixel_std" real: |r| r.mf.pixel_std, |w, v| w.mf.pixel_std = v.unwrap_or(f64::NAN);
    "mf_input_channels" int: |r| r.mf.input_channels as i64, |w, v| w.mf.input_channels = v.unwrap_or(0) as usize;
    "mf_input_size" int: |r| r.mf.input_size as i64, |w, v| w.mf.input_size = v.unwrap_or(0) as usize;
    "mf_logme_first" real: |r| r.has_mft.then_some(r.mft.logme_first), |w, v| { w.mft.logme_first = v.unwrap_or(0.0) };
    "mf_logme_mid" real: |r| r.has_mft.then_some(r.mft.logme_mid), |w, v| { w.mft.logme_mid = v.unwrap_or(0.0) };
    "mf_logme_last" real: |r| r.has_mft.then_some(r.mft.logme_last), |w, v| { w.mft.logme_last = v.unwrap_or(0.0); w.has_mft = v.is_some() };
    "mf_ncprobe_first" real: |r| r.mft.ncprobe_first, |w, v| w.mft.ncprobe_first = v;
    "mf_ncprobe_mid" real: |r| r.mft.ncprobe_mid, |w, v| w.mft.ncprobe_mid = v;
    "mf_ncprobe_last" real: |r| r.mft.ncprobe_last, |w, v| w.mft.ncprobe_last = v;
    "mf_hscore_last" real: |r| r.has_mft.then_some(r.mft.hscore_last), |w, v| { w.mft.hscore_last = v.unwrap_or(0.0) };
    "mf_leep" real: |r| r.mft.leep, |w, v| w.mft.leep = v;
    "mf_nce" real: |r| r.mft.nce, |w, v| w.mft.nce = v;
    "mf_frechet" real: |r| r.mft.frechet, |w, v| w.mft.frechet = v;
    "mf_pixel_separability" real: |r| r.mft.pixel_separability, |w, v| w.mft.pixel_separability = v;
    "task_shift" text: |r| r.task_shift.clone(), |w, v| w.task_shift = v;
    "task_spec" text: |r| r.task_spec.clone(), |w, v| w.task_spec = v;
    "r_n_groups" int: |r| r.r_n_groups, |w, v| w.r_n_groups = v.unwrap_or(0);
    "r_name" text: |r| r.r_name.clone(), |w, v| w.r_name = v;
    "r_probe_depth" real: |r| r.r_probe_depth, |w, v| w.r_probe_depth = v;
    "r_pretrain" text: |r| r.r_pretrain.clone(), |w, v| w.r_pretrain = v;
    "wall_seconds" real: |r| r.wall_seconds, |w, v| w.wall_seconds = v.unwrap_or(f64::NAN);
    "r_default_action" text: |r| r.r_default_action.clone(), |w, v| w.r_default_action = v;
    "r_actions" text: |r| r.r_actions.clone(), |w, v| w.r_actions = v;
    "r_n_freeze" int: |r| r.r_n_freeze, |w, v| w.r_n_freeze = v.unwrap_or(0);
    "r_n_finetune" int: |r| r.r_n_finetune, |w, v| w.r_n_finetune = v.unwrap_or(0);
    "r_n_reinit" int: |r| r.r_n_reinit, |w, v| w.r_n_reinit = v.unwrap_or(0);
    "r_lr" real: |r| r.r_lr, |w, v| w.r_lr = v.unwrap_or(f64::NAN);
    "r_layer_decay" real: |r| r.r_layer_decay, |w, v| w.r_layer_decay = v.unwrap_or(f64::NAN);
    "r_optimizer" text: |r| r.r_optimizer.clone(), |w, v| w.r_optimizer = v;
    "r_weight_decay" real: |r| r.r_weight_decay, |w, v| w.r_weight_decay = v.unwrap_or(f64::NAN);
    "r_l2sp" real: |r| r.r_l2sp, |w, v| w.r_l2sp = v.unwrap_or(f64::NAN);
    "r_schedule" text: |r| r.r_schedule.clone(), |w, v| w.r_schedule = v;
    "r_warmup_epochs" real: |r| r.r_warmup_epochs, |w, v| w.r_warmup_epochs = v.unwrap_or(f64::NAN);
    "r_epochs" int: |r| r.r_epochs, |w, v| w.r_epochs = v.unwrap_or(0);
    "r_batch_size" int: |r| r.r_batch_size, |w, v| w.r_batch_size = v.unwrap_or(0);
    "r_label_smoothing" real: |r| r.r_label_smoothing, |w, v| w.r_label_smoothing = v.unwrap_or(f64::NAN);
    "r_probe_group" text: |r| r.r_probe_group.clone(), |w, v| w.r_probe_group = v;
    "r_aug_crop_padding" int: |r| r.r_aug_crop_padding, |w, v| w.r_aug_crop_padding = v.unwrap_or(0);
    "r_aug_hflip" flag: |r| r.r_aug_hflip, |w, v| w.r_aug_hflip = v.unwrap_or(false);
    "r_aug_random_resized_crop" real: |r| r.r_aug_random_resized_crop, |w, v| w.r_aug_random_resized_crop = v.unwrap_or(f64::NAN);
    "r_aug_color_jitter" real: |r| r.r_aug_color_jitter, |w, v| w.r_aug_color_jitter = v.unwrap_or(f64::NAN);
    "r_aug_gaussian_noise" real: |r| r.r_aug_gaussian_noise, |w, v| w.r_aug_gaussian_noise = v.unwrap_or(f64::NAN);
    "r_aug_gaussian_blur" real: |r| r.r_aug_gaussian_blur, |w, v| w.r_aug_gaussian_blur = v.unwrap_or(f64::NAN);
    "recipe" text: |r| r.recipe.clone(), |w, v| w.recipe = v;
    "r_input_size" int: |r| r.r_input_size, |w, v| w.r_input_size = v.unwrap_or(w.mf.input_size as i64);
    "mf_native_size" real: |r| r.mf.native_size, |w, v| w.mf.native_size = v;
    "mf_colourfulness" real: |r| r.mf.colourfulness, |w, v| w.mf.colourfulness = v;
}

/// Columns added after schema version 2 was first written, each with how a part file written
/// before it gets the column when read: `r_input_size` (the square input the run used) is the
/// backbone input the task profile recorded, `mf_input_size`; the stored images' traits
/// (`mf_native_size`, `mf_colourfulness`) are null until `graft meta backfill` measures them.
/// They are added in the schema's order, so every part stacks onto the others.
fn add_late_columns(df: &mut DataFrame, what: &Path) -> Result<()> {
    let add = |df: &mut DataFrame, c: Column| {
        let name = c.name().to_string();
        df.with_column(c).map(|_| ()).map_err(|e| GraftError::Data(format!("meta-dataset {}: adding {name}: {e}", what.display())))
    };
    if df.column("r_input_size").is_err() {
        let v = read::int(df, "mf_input_size", what)?;
        add(df, Column::new("r_input_size".into(), v))?;
    }
    for name in ["mf_native_size", "mf_colourfulness"] {
        if df.column(name).is_err() {
            add(df, Column::new(name.into(), vec![None::<f64>; df.height()]))?;
        }
    }
    Ok(())
}

/// Typed column readers for [`from_frame`]; numbers are cast, so an integer column written by
/// another tool reads as a float column and the other way round.
mod read {
    use super::*;

    fn column<'a>(df: &'a DataFrame, name: &str, what: &Path) -> Result<&'a Column> {
        df.column(name)
            .map_err(|_| GraftError::Data(format!("meta-dataset {}: column `{name}` is missing (schema too old?)", what.display())))
    }

    fn cast(df: &DataFrame, name: &str, what: &Path, to: &DataType) -> Result<Column> {
        column(df, name, what)?.cast(to).map_err(|e| GraftError::Data(format!("meta-dataset {}: column `{name}`: {e}", what.display())))
    }

    fn bad(name: &str, what: &Path, e: PolarsError) -> GraftError {
        GraftError::Data(format!("meta-dataset {}: column `{name}`: {e}", what.display()))
    }

    pub fn text(df: &DataFrame, name: &str, what: &Path) -> Result<Vec<String>> {
        let c = column(df, name, what)?;
        Ok(c.str().map_err(|e| bad(name, what, e))?.iter().map(|v| v.unwrap_or_default().to_string()).collect())
    }

    pub fn real(df: &DataFrame, name: &str, what: &Path) -> Result<Vec<Option<f64>>> {
        Ok(cast(df, name, what, &DataType::Float64)?.f64().map_err(|e| bad(name, what, e))?.iter().collect())
    }

    pub fn int(df: &DataFrame, name: &str, what: &Path) -> Result<Vec<Option<i64>>> {
        Ok(cast(df, name, what, &DataType::Int64)?.i64().map_err(|e| bad(name, what, e))?.iter().collect())
    }

    pub fn flag(df: &DataFrame, name: &str, what: &Path) -> Result<Vec<Option<bool>>> {
        Ok(cast(df, name, what, &DataType::Boolean)?.bool().map_err(|e| bad(name, what, e))?.iter().collect())
    }
}

/// Every row of the meta-dataset folder `dir`, refusing rows of another schema version.
pub fn read_rows(dir: &Path) -> Result<Vec<MetaRow>> {
    let df = read_all(dir)?;
    if let Some(v) = read::int(&df, "schema_version", dir)?.into_iter().flatten().find(|v| *v != SCHEMA_VERSION) {
        return Err(GraftError::Data(format!(
            "meta-dataset {} holds rows of schema version {v}; this graft reads version {SCHEMA_VERSION} (re-run the sweep or use a matching graft)",
            dir.display()
        )));
    }
    from_frame(&df, dir)
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

/// The rows of one part file (late columns added as [`read_all`] adds them).
pub fn read_part(path: &Path) -> Result<Vec<MetaRow>> {
    let file = std::fs::File::open(path).map_err(|e| GraftError::io(path, e))?;
    let mut df = ParquetReader::new(file).finish().map_err(|e| GraftError::Data(format!("{}: unreadable Parquet: {e}", path.display())))?;
    add_late_columns(&mut df, path)?;
    from_frame(&df, path)
}

/// Replace the part file `path` with `rows`, atomically (a temporary file beside it, then a
/// rename): a crash leaves either the old part or the new one, never a partial one.
pub fn rewrite_part(path: &Path, rows: &[MetaRow]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut df = to_frame(rows)?;
    write_parquet_file(&mut df, &tmp)?;
    std::fs::rename(&tmp, path).map_err(|e| GraftError::io(path, e))
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
        let mut df =
            ParquetReader::new(file).finish().map_err(|e| GraftError::Data(format!("{}: unreadable Parquet: {e}", f.display())))?;
        add_late_columns(&mut df, &f)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A profile's imbalance is its most over fewest training images a class: 1 when balanced or
    /// without counts; the meta-learner's `log_imbalance` is its log.
    #[test]
    fn imbalance_is_most_over_fewest_images_a_class() {
        let p = |lo, hi| TaskProfile { shots_min: lo, shots_max: hi, ..Default::default() };
        assert_eq!((p(3, 30).imbalance(), p(8, 8).imbalance(), p(0, 0).imbalance()), (10.0, 1.0, 1.0));
        let t = crate::metalearner::features::task_vector(&p(4, 12), &TransferFeatures::default());
        assert_eq!(t[crate::metalearner::features::task_index("log_imbalance")], Some(3f64.ln()));
    }

    /// The one schema table drives both directions: a row with every field set (and one without
    /// transfer features) goes through a DataFrame and comes back equal, in the columns'
    /// order; and the committed meta-dataset reads back into rows with the frame's values.
    #[test]
    fn rows_round_trip_through_the_schema() {
        let a = MetaRow {
            run_id: "r1".into(),
            task_id: "t".into(),
            family: "f".into(),
            strategy: "finetune".into(),
            status: "ok".into(),
            test_accuracy: 0.5,
            val_accuracy: Some(0.25),
            seed: 3,
            schema_version: SCHEMA_VERSION,
            mf: TaskProfile { n_classes: 5, shots_median: 2.5, pixel_mean: 0.4, input_size: 32, ..Default::default() },
            mft: TransferFeatures {
                logme_first: -1.0,
                logme_mid: -0.5,
                logme_last: 0.25,
                hscore_last: 1.5,
                leep: Some(-2.0),
                ..Default::default()
            },
            has_mft: true,
            r_probe_depth: Some(0.5),
            r_aug_hflip: true,
            r_lr: 1e-3,
            recipe: "{}".into(),
            ..Default::default()
        };
        let mut b = a.clone();
        b.run_id = "r2".into();
        b.has_mft = false;
        b.mft = TransferFeatures { ncprobe_last: Some(0.75), ..Default::default() };
        b.val_accuracy = None;
        let df = to_frame(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(df.get_column_names().iter().map(|c| c.as_str()).collect::<Vec<_>>(), COLUMNS);
        let back = from_frame(&df, Path::new("mem")).unwrap();
        assert_eq!(back, vec![a, b]);

        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("meta_dataset");
        let df = read_all(&dir).unwrap();
        let rows = read_rows(&dir).unwrap();
        assert_eq!(rows.len(), df.height());
        let acc: Vec<Option<f64>> = df.column("test_accuracy").unwrap().f64().unwrap().iter().collect();
        assert!(rows.iter().zip(&acc).all(|(r, a)| a.is_none_or(|a| a.to_bits() == r.test_accuracy.to_bits())));
        assert_eq!(to_frame(&rows).unwrap().height(), df.height());
    }
}
