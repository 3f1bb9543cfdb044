//! graft: an AutoML advisor for transfer learning on small image-classification datasets.
//!
//! The library is organised one concern per module, and the modules import each other without
//! cycles (lowest first):
//! - [`error`], [`util`]: the error type with its exit codes; seeded RNG streams, hashing,
//!   atomic writes, safe path components, stale temporary files;
//! - [`data`]: ImageFolder / IDX / `.npy` loading, splits, decoding, task sampling, augmentations;
//! - [`kernels`]: CPU custom ops (convolutions, BatchNorm, pooling, AdamW) and the precision;
//! - [`backbones`]: CNN backbones as structs with named layer groups, model cards, checkpoints;
//! - [`recipe`]: the transfer recipe document (with its pretraining step), its validation into
//!   a [`recipe::CheckedRecipe`], presets;
//! - [`optim`]: optimisers with per-group learning rates, L2-SP, schedules;
//! - [`train`]: the training loop, evaluation, per-epoch checkpoints and `metrics.csv`;
//! - [`metafeatures`]: dataset profile and transferability scores (LogME, H-score, probes);
//! - [`pretrain`]: the unsupervised and self-supervised pretraining methods, and
//!   [`pretrain::run`], every `graft pretrain` (supervised included) as one library call;
//! - [`metadataset`]: the Parquet meta-dataset of past runs (its schema is one table);
//! - [`executor`]: runs a [`recipe::CheckedRecipe`] (fine-tuning or a probe), run records;
//! - [`sweep`]: sweep plans and the sharded, resumable sweep;
//! - [`metalearner`]: the GP/kNN advisor, `recommend`, `auto`, `meta eval`;
//! - [`report`]: HTML reports and SVG plots;
//! - [`experiment`]: the lecture's reproductions;
//! - [`cli`]: the command-line front end (the binary is a thin wrapper around it; nothing else
//!   imports it).
pub mod backbones;
pub mod cli;
pub mod data;
pub mod error;
pub mod executor;
pub mod experiment;
pub mod kernels;
pub mod metadataset;
pub mod metafeatures;
pub mod metalearner;
pub mod optim;
pub mod pretrain;
pub mod recipe;
pub mod report;
pub mod sweep;
pub mod train;
pub mod util;

pub use error::{GraftError, Result};
