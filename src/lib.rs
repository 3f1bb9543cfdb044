//! graft: an AutoML advisor for transfer learning on small image-classification datasets.
//!
//! The library is organised one concern per module:
//! - [`data`]: ImageFolder / IDX loading, splits, task sampling, augmentations;
//! - [`backbones`]: CNN backbones as structs with named layer groups, model cards, checkpoints;
//! - [`recipe`]: the transfer recipe document, its validation into a [`recipe::CheckedRecipe`], presets;
//! - [`executor`]: training, probing, evaluation and run records;
//! - [`metadataset`]: the Parquet meta-dataset of past runs;
//! - [`cli`]: the command-line front end (the binary is a thin wrapper around it).
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
pub mod util;

pub use error::{GraftError, Result};
