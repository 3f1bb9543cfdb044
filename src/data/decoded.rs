//! A dataset's splits decoded at a backbone's input: train, an optional validation split
//! (the dataset's own, or a seeded stratified hold-out), test; `--skip-bad` may skip unreadable
//! files but never a whole class.
use super::folder::stratified_split;
use super::{decode_items, Dataset, ImageSet, InputSpec, Item};
use crate::error::{GraftError, Result};

/// Decode a dataset's splits into the backbone's input.
pub struct Decoded {
    pub train: ImageSet,
    pub val: Option<ImageSet>,
    pub test: ImageSet,
    /// The unlabelled pool, when a caller decoded it (sweeps); else decoded on demand.
    pub unlabelled: Option<ImageSet>,
}

pub fn decode_dataset(ds: &Dataset, input: InputSpec, skip_bad: bool, val_fraction: f64, seed: u64) -> Result<Decoded> {
    ds.check_every_class_tested()?;
    let (train_items, val_items) = if !ds.val.is_empty() {
        (ds.train.clone(), ds.val.clone())
    } else if val_fraction > 0.0 {
        let (k, v) = stratified_split(ds.train.clone(), ds.n_classes(), val_fraction, seed, "holdout-val");
        (k, v)
    } else {
        (ds.train.clone(), Vec::new())
    };
    let train = decode_items(&train_items, input, skip_bad)?;
    let val = if val_items.is_empty() { None } else { Some(decode_items(&val_items, input, skip_bad)?) };
    let test = decode_items(&ds.test, input, skip_bad)?;
    // --skip-bad must not silently drop a whole class from training or from the test
    check_classes_survive(ds, &train_items, &train, "training")?;
    check_classes_survive(ds, &ds.test, &test, "test")?;
    if train.n < 2 {
        return Err(GraftError::Data(format!("{}: fewer than two readable training images", ds.root.display())));
    }
    if test.n == 0 {
        return Err(GraftError::Data(format!("{}: no readable test images", ds.root.display())));
    }
    Ok(Decoded { train, val, test, unlabelled: None })
}

/// Every class that had images in `items` still has one after decoding (`--skip-bad` skips
/// unreadable files, but a class left with none would silently turn the task into another).
fn check_classes_survive(ds: &Dataset, items: &[Item], set: &ImageSet, split: &str) -> Result<()> {
    let k = ds.n_classes();
    let mut before = vec![0usize; k];
    for it in items {
        if let Some(l) = it.label.filter(|&l| l < k) {
            before[l] += 1;
        }
    }
    let after = set.class_counts(k);
    let lost: Vec<String> = (0..k).filter(|&c| before[c] > 0 && after[c] == 0).map(|c| format!("`{}`", ds.classes[c])).collect();
    if lost.is_empty() {
        return Ok(());
    }
    Err(GraftError::Data(format!(
        "{}: every {split} image of class {} is unreadable and was skipped ({} skipped in all, e.g. {}); fix or replace those files",
        ds.root.display(),
        lost.join(", "),
        set.skipped.len(),
        set.skipped.first().map(|s| s.as_str()).unwrap_or("?")
    )))
}
