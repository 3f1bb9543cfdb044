//! ImageFolder trees (`DIR/<class>/<image>`), split folders, hold-out splits and unlabelled pools.
use crate::error::{GraftError, Result};
use crate::util::rng_for;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const IMAGE_EXTENSIONS: &[&str] =
    &["png", "jpg", "jpeg", "jpe", "jfif", "bmp", "gif", "pgm", "ppm", "pnm", "pbm", "tif", "tiff", "webp"];

/// Where an image's pixels come from: a file, or raw 8-bit pixels (IDX files).
#[derive(Debug, Clone)]
pub enum ItemSource {
    File(PathBuf),
    /// Raw pixels, row-major, `channels` interleaved.
    Pixels {
        data: Arc<[u8]>,
        width: u32,
        height: u32,
        channels: u8,
        /// A name for error messages and fingerprints (`file#index`).
        name: String,
    },
}

impl ItemSource {
    pub fn display(&self) -> String {
        match self {
            ItemSource::File(p) => p.display().to_string(),
            ItemSource::Pixels { name, .. } => name.clone(),
        }
    }
}

/// One image with its class index (None for unlabelled images).
#[derive(Debug, Clone)]
pub struct Item {
    pub source: ItemSource,
    pub label: Option<usize>,
}

/// How the train/test split was obtained; recorded in the run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SplitInfo {
    /// `folders` (train/ and test/ present), `explicit-test` (`--test DIR`), `holdout` (seeded
    /// stratified hold-out), or `idx` (IDX train/t10k files).
    pub method: String,
    pub test_fraction: Option<f64>,
    pub seed: u64,
}

/// A loaded (not yet decoded) dataset.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub root: PathBuf,
    pub classes: Vec<String>,
    pub train: Vec<Item>,
    pub val: Vec<Item>,
    pub test: Vec<Item>,
    pub unlabelled: Vec<Item>,
    pub split: SplitInfo,
}

impl Dataset {
    pub fn n_classes(&self) -> usize {
        self.classes.len()
    }
    /// Classes without a single test image (a hold-out split leaves a class of one image
    /// wholly in training).
    pub fn untested_classes(&self) -> Vec<&str> {
        let mut seen = vec![false; self.classes.len()];
        for it in &self.test {
            if let Some(l) = it.label.filter(|&l| l < seen.len()) {
                seen[l] = true;
            }
        }
        self.classes.iter().zip(seen).filter(|(_, s)| !s).map(|(c, _)| c.as_str()).collect()
    }

    /// Error unless every class has a test image: accuracy on some of the classes is not the
    /// task's accuracy, and a run that claimed it would mislead the meta-dataset too.
    pub fn check_every_class_tested(&self) -> Result<()> {
        let missing = self.untested_classes();
        if missing.is_empty() {
            return Ok(());
        }
        let names = missing.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ");
        // only a hold-out split records a test fraction
        let why = match self.split.test_fraction {
            Some(f) => format!("the hold-out split (--test-fraction {f}) keeps a class's only image for training"),
            None => "its test split has none".to_string(),
        };
        Err(GraftError::Data(format!(
            "{}: class{} {names} {} no test image ({why}), so a test accuracy would not cover every class; add images to {} (two or more a class), or pass a test tree with every class via --test DIR",
            self.root.display(),
            if missing.len() > 1 { "es" } else { "" },
            if missing.len() > 1 { "have" } else { "has" },
            if missing.len() > 1 { "them" } else { "it" },
        )))
    }

    /// Per-class counts of the training split.
    pub fn train_counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.classes.len()];
        for it in &self.train {
            if let Some(l) = it.label {
                c[l] += 1;
            }
        }
        c
    }
}

#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub data: PathBuf,
    pub test: Option<PathBuf>,
    pub unlabelled: Option<PathBuf>,
    pub seed: u64,
    /// Fraction of each class held out for testing when the data has no split folders.
    pub test_fraction: f64,
}

impl LoadOptions {
    pub fn new(data: impl Into<PathBuf>) -> Self {
        LoadOptions { data: data.into(), test: None, unlabelled: None, seed: 0, test_fraction: 0.2 }
    }
}

pub fn is_image(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()).map(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str())).unwrap_or(false)
}

/// Image files under `dir` at any depth (following links), sorted, and the other files found
/// there (hidden ones, such as `.DS_Store`, left out), sorted. A folder that cannot be read
/// (permissions, a link loop) is an error naming it, not an empty folder.
fn list_images(dir: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let (mut imgs, mut other) = (Vec::new(), Vec::new());
    for e in walkdir::WalkDir::new(dir).follow_links(true) {
        let e = e.map_err(|e| {
            let at = e.path().unwrap_or(dir).display().to_string();
            GraftError::Data(format!("cannot read {at}: {e}; check that the folder and its files are readable"))
        })?;
        if !e.file_type().is_file() {
            continue;
        }
        if is_image(e.path()) {
            imgs.push(e.into_path());
        } else if !e.file_name().to_string_lossy().starts_with('.') {
            other.push(e.into_path());
        }
    }
    imgs.sort();
    other.sort();
    Ok((imgs, other))
}

/// Say once, for a whole tree, which files were passed over because graft does not read their
/// kind (an image in a format it lacks would otherwise vanish from the task without a word).
fn warn_ignored(what: &str, dir: &Path, ignored: &[PathBuf]) {
    if let Some(msg) = ignored_summary(what, dir, ignored) {
        tracing::warn!("{msg}");
    }
}

/// The warning `warn_ignored` prints, or None when nothing was passed over.
pub fn ignored_summary(what: &str, dir: &Path, ignored: &[PathBuf]) -> Option<String> {
    if ignored.is_empty() {
        return None;
    }
    let mut by_ext: BTreeMap<String, usize> = BTreeMap::new();
    for p in ignored {
        let ext = p.extension().map(|e| format!(".{}", e.to_string_lossy().to_ascii_lowercase())).unwrap_or_else(|| "no extension".into());
        *by_ext.entry(ext).or_default() += 1;
    }
    let kinds: Vec<String> = by_ext.iter().map(|(e, n)| format!("{n} {e}")).collect();
    Some(format!(
        "{what} folder {}: {} file{} passed over, not being images graft reads ({}; e.g. {}); graft reads {}: convert images in other formats to PNG to use them",
        dir.display(),
        ignored.len(),
        if ignored.len() == 1 { "" } else { "s" },
        kinds.join(", "),
        ignored[0].display(),
        IMAGE_EXTENSIONS.join(", ")
    ))
}

/// What a labelled folder must be, and what an unlabelled pool may be.
const CLASS_TREE: &str = "an ImageFolder tree (DIR/<class>/<image>)";
const ANY_IMAGES: &str = "a folder of images (any depth, no class folders needed)";

/// `dir` exists and is a folder; else an error naming `what` it is and the `want`ed layout.
fn check_dir(dir: &Path, what: &str, want: &str) -> Result<()> {
    if !dir.exists() {
        return Err(GraftError::Data(format!("{what} folder {} does not exist; pass {want}", dir.display())));
    }
    if !dir.is_dir() {
        return Err(GraftError::Data(format!("{what} {} is not a folder; pass {want}", dir.display())));
    }
    Ok(())
}

/// Read `DIR/<class>/<image>`: classes are the sorted subfolder names (as torchvision sorts them).
/// Returns the class names and, per class, the sorted image paths.
pub fn scan_class_folders(dir: &Path, what: &str) -> Result<(Vec<String>, Vec<Vec<PathBuf>>)> {
    check_dir(dir, what, CLASS_TREE)?;
    let mut classes = BTreeMap::new();
    let mut not_utf8 = Vec::new();
    let rd = std::fs::read_dir(dir)
        .map_err(|e| GraftError::Data(format!("cannot read {what} folder {}: {e}; check its permissions", dir.display())))?;
    for entry in rd {
        let entry = entry.map_err(|e| GraftError::io(dir, e))?;
        let p = entry.path();
        if p.is_dir() {
            // class names go into run records and the meta-dataset as text: a folder name that
            // is not UTF-8 is refused, never replaced by a lossy (possibly colliding) name
            let name = match entry.file_name().into_string() {
                Ok(n) => n,
                Err(raw) => {
                    not_utf8.push(raw);
                    continue;
                }
            };
            if name.starts_with('.') {
                continue;
            }
            classes.insert(name, p);
        }
    }
    if !not_utf8.is_empty() {
        not_utf8.sort();
        let lossy: Vec<String> = not_utf8.iter().map(|n| n.to_string_lossy().to_string()).collect();
        let collide = lossy.iter().enumerate().any(|(i, a)| lossy[..i].contains(a) || classes.contains_key(a));
        let names: Vec<String> = not_utf8.iter().map(|n| format!("{n:?}")).collect();
        return Err(GraftError::Data(format!(
            "{what} folder {}: class folder name{} {} {} not valid UTF-8{}; rename {} (class names are recorded as text)",
            dir.display(),
            if names.len() > 1 { "s" } else { "" },
            names.join(" and "),
            if names.len() > 1 { "are" } else { "is" },
            if collide { ", and would merge with another class if read lossily" } else { "" },
            if names.len() > 1 { "them" } else { "it" },
        )));
    }
    if classes.is_empty() {
        return Err(GraftError::Data(format!(
            "{what} folder {} has no class subfolders; expected DIR/<class>/<image> with at least two classes",
            dir.display()
        )));
    }
    let mut names = Vec::new();
    let mut files = Vec::new();
    let mut ignored = Vec::new();
    for (name, p) in classes {
        let (imgs, other) = list_images(&p)?;
        if imgs.is_empty() {
            let held = if other.is_empty() {
                String::new()
            } else {
                format!(" (it holds {} other file{}, e.g. {})", other.len(), if other.len() == 1 { "" } else { "s" }, other[0].display())
            };
            return Err(GraftError::Data(format!(
                "class folder {} has no images graft reads ({}){held}; add images, convert them to PNG, or remove the folder",
                p.display(),
                IMAGE_EXTENSIONS.join(", ")
            )));
        }
        ignored.extend(other);
        names.push(name);
        files.push(imgs);
    }
    warn_ignored(what, dir, &ignored);
    if names.len() < 2 {
        return Err(GraftError::Data(format!(
            "{what} folder {} has only one class ({}); classification needs at least two class subfolders",
            dir.display(),
            names[0]
        )));
    }
    Ok((names, files))
}

/// A test tree must hold every training class: accuracy on a subset of the classes is not the
/// task's accuracy.
fn check_all_classes(classes: &[String], names: &[String], dir: &Path) -> Result<()> {
    let missing: Vec<&str> = classes.iter().filter(|c| !names.contains(c)).map(|c| c.as_str()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(GraftError::Data(format!(
        "test tree {} has no folder for class{} {} (training classes: {}); add {} test images or remove the class from training",
        dir.display(),
        if missing.len() > 1 { "es" } else { "" },
        missing.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", "),
        classes.join(", "),
        if missing.len() > 1 { "their" } else { "its" }
    )))
}

fn items_for(classes: &[String], names: &[String], files: Vec<Vec<PathBuf>>, dir: &Path) -> Result<Vec<Item>> {
    let mut out = Vec::new();
    for (name, fs) in names.iter().zip(files) {
        let label = classes.iter().position(|c| c == name).ok_or_else(|| {
            GraftError::Data(format!(
                "class `{name}` in {} is not among the training classes ({}); the test tree must use the same class folder names",
                dir.display(),
                classes.join(", ")
            ))
        })?;
        out.extend(fs.into_iter().map(|p| Item { source: ItemSource::File(p), label: Some(label) }));
    }
    Ok(out)
}

/// Every image under `dir`, at any depth, without labels.
pub fn scan_unlabelled(dir: &Path) -> Result<Vec<Item>> {
    check_dir(dir, "unlabelled", ANY_IMAGES)?;
    let (imgs, ignored) = list_images(dir)?;
    warn_ignored("unlabelled", dir, &ignored);
    Ok(imgs.into_iter().map(|p| Item { source: ItemSource::File(p), label: None }).collect())
}

/// Stratified, seeded hold-out: from each class, `round(fraction * n)` images (at least one,
/// and at least one left for training) go to the test split.
pub fn stratified_split(items: Vec<Item>, n_classes: usize, fraction: f64, seed: u64, purpose: &str) -> (Vec<Item>, Vec<Item>) {
    let mut by_class: Vec<Vec<Item>> = vec![Vec::new(); n_classes];
    for it in items {
        by_class[it.label.unwrap_or(0)].push(it);
    }
    let mut rng = rng_for(seed, purpose);
    let (mut keep, mut held) = (Vec::new(), Vec::new());
    for mut v in by_class {
        v.shuffle(&mut rng);
        let n = v.len();
        let mut k = (fraction * n as f64).round() as usize;
        if n >= 2 {
            k = k.clamp(1, n - 1);
        } else {
            k = 0;
        }
        let rest = v.split_off(k);
        held.extend(v);
        keep.extend(rest);
    }
    (keep, held)
}

/// Load a dataset as SPEC.md describes: split folders, `--test`, a seeded stratified hold-out,
/// `unlabelled/` or `--unlabelled`, or MNIST-style IDX files.
pub fn load_dataset(opts: &LoadOptions) -> Result<Dataset> {
    let dir = &opts.data;
    check_dir(dir, "data", CLASS_TREE)?;
    if !(opts.test_fraction > 0.0 && opts.test_fraction < 1.0) {
        return Err(GraftError::Usage(format!("--test-fraction must be in (0, 1), got {}", opts.test_fraction)));
    }
    if let Some(ds) = super::idx::try_load_idx(dir, opts)? {
        return Ok(ds);
    }
    let train_dir = dir.join("train");
    let has_split = train_dir.is_dir();
    let (classes, files) = if has_split { scan_class_folders(&train_dir, "train")? } else { scan_class_folders(dir, "data")? };
    let classes_owned = classes.clone();
    let base_dir = if has_split { train_dir.clone() } else { dir.clone() };
    let mut train = items_for(&classes_owned, &classes, files, &base_dir)?;
    let mut val = Vec::new();
    let test;
    let split;
    if let Some(tdir) = &opts.test {
        let (tn, tf) = scan_class_folders(tdir, "test")?;
        test = items_for(&classes_owned, &tn, tf, tdir)?;
        check_all_classes(&classes_owned, &tn, tdir)?;
        split = SplitInfo { method: "explicit-test".into(), test_fraction: None, seed: opts.seed };
    } else if has_split && dir.join("test").is_dir() {
        let tdir = dir.join("test");
        let (tn, tf) = scan_class_folders(&tdir, "test")?;
        test = items_for(&classes_owned, &tn, tf, &tdir)?;
        check_all_classes(&classes_owned, &tn, &tdir)?;
        split = SplitInfo { method: "folders".into(), test_fraction: None, seed: opts.seed };
    } else {
        let (keep, held) = stratified_split(train, classes_owned.len(), opts.test_fraction, opts.seed, "holdout-test");
        train = keep;
        test = held;
        split = SplitInfo { method: "holdout".into(), test_fraction: Some(opts.test_fraction), seed: opts.seed };
    }
    if has_split && dir.join("val").is_dir() {
        let vdir = dir.join("val");
        let (vn, vf) = scan_class_folders(&vdir, "val")?;
        val = items_for(&classes_owned, &vn, vf, &vdir)?;
    }
    let unlabelled = match &opts.unlabelled {
        Some(u) => scan_unlabelled(u)?,
        None if dir.join("unlabelled").is_dir() => scan_unlabelled(&dir.join("unlabelled"))?,
        None => Vec::new(),
    };
    if test.is_empty() {
        return Err(GraftError::Data(format!("{} gives an empty test split; add test/ or more images per class", dir.display())));
    }
    Ok(Dataset { root: dir.clone(), classes: classes_owned, train, val, test, unlabelled, split })
}
