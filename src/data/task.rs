//! Task sampler for experiments: a subset of classes, K shots per class, an unlabelled pool,
//! all drawn from the seed; and writing a task out as an ImageFolder tree.
use super::folder::{Dataset, Item, ItemSource};
use crate::error::{GraftError, Result};
use crate::util::rng_for;
use rand::seq::{IndexedRandom, SliceRandom};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskSpec {
    /// Explicit class names; when None, `n_classes` classes are drawn at random.
    pub classes: Option<Vec<String>>,
    pub n_classes: usize,
    /// Labelled training images per class.
    pub shots: usize,
    /// Unlabelled images drawn from the remaining training images of the chosen classes.
    pub unlabelled: usize,
    /// Test images per class (None = all of the source's test images of those classes).
    pub test_per_class: Option<usize>,
    /// Labelled validation images per class, drawn from the source's training images after the
    /// shots (disjoint from them), into the task's `val` split.
    #[serde(default)]
    pub val_per_class: usize,
    /// Ratio of the most to the fewest training images a class (1 = `shots` in every class).
    /// Above 1 the classes, in a seeded random order, get `shots` · imbalance^(−i/(K−1))
    /// images (rounded, at least 1): the exponential profile of long-tailed CIFAR (Cui et al.
    /// 2019), from `shots` down to `shots` / imbalance.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub imbalance: f64,
}

fn one() -> f64 {
    1.0
}
fn is_one(v: &f64) -> bool {
    *v == 1.0
}

impl TaskSpec {
    /// Training images of each of `k` classes, in the order of the task's classes; the
    /// largest first unless the imbalance's seeded order says otherwise.
    pub fn shots_per_class(&self, k: usize, seed: u64) -> Vec<usize> {
        if self.imbalance == 1.0 || k < 2 {
            return vec![self.shots; k];
        }
        let mut order: Vec<usize> = (0..k).collect();
        order.shuffle(&mut rng_for(seed, "task-imbalance"));
        let mut out = vec![0; k];
        for (rank, &c) in order.iter().enumerate() {
            let s = self.shots as f64 * self.imbalance.powf(-(rank as f64) / (k - 1) as f64);
            out[c] = (s.round() as usize).max(1);
        }
        out
    }
}

pub fn sample_task(ds: &Dataset, spec: &TaskSpec, seed: u64) -> Result<Dataset> {
    let mut rng = rng_for(seed, "task");
    let chosen: Vec<usize> = match &spec.classes {
        Some(names) => names
            .iter()
            .map(|n| {
                ds.classes
                    .iter()
                    .position(|c| c == n)
                    .ok_or_else(|| GraftError::Usage(format!("--classes: unknown class `{n}`; known: {}", ds.classes.join(", "))))
            })
            .collect::<Result<_>>()?,
        None => {
            if spec.n_classes < 2 || spec.n_classes > ds.n_classes() {
                return Err(GraftError::Usage(format!(
                    "--n-classes must be between 2 and {} for {}, got {}",
                    ds.n_classes(),
                    ds.root.display(),
                    spec.n_classes
                )));
            }
            let all: Vec<usize> = (0..ds.n_classes()).collect();
            let mut c: Vec<usize> = all.choose_multiple(&mut rng, spec.n_classes).copied().collect();
            c.sort();
            c
        }
    };
    if chosen.len() < 2 {
        return Err(GraftError::Usage("a task needs at least two classes".into()));
    }
    if spec.shots == 0 {
        return Err(GraftError::Usage("--shots must be at least 1".into()));
    }
    if !(spec.imbalance.is_finite() && spec.imbalance >= 1.0) {
        return Err(GraftError::Usage(format!(
            "--imbalance must be at least 1 (the most over the fewest images a class), got {}",
            spec.imbalance
        )));
    }
    let shots = spec.shots_per_class(chosen.len(), seed);
    let classes: Vec<String> = chosen.iter().map(|&c| ds.classes[c].clone()).collect();
    let relabel = |l: usize| chosen.iter().position(|&c| c == l);
    let mut train = Vec::new();
    let mut pool = Vec::new();
    let mut test = Vec::new();
    let mut val = Vec::new();
    for (new, &old) in chosen.iter().enumerate() {
        let mut items: Vec<&Item> = ds.train.iter().filter(|it| it.label == Some(old)).collect();
        items.shuffle(&mut rng);
        let s = shots[new];
        if items.len() < s + spec.val_per_class {
            return Err(GraftError::Usage(format!(
                "--shots {} (+ {} validation): class `{}` has only {} training images",
                s,
                spec.val_per_class,
                ds.classes[old],
                items.len()
            )));
        }
        for it in &items[..s] {
            train.push(Item { source: it.source.clone(), label: Some(new) });
        }
        let v_end = s + spec.val_per_class;
        val.extend(items[s..v_end].iter().map(|it| Item { source: it.source.clone(), label: Some(new) }));
        pool.extend(items[v_end..].iter().map(|it| Item { source: it.source.clone(), label: None }));
        let mut t: Vec<&Item> = ds.test.iter().filter(|it| it.label == Some(old)).collect();
        if let Some(k) = spec.test_per_class {
            t.shuffle(&mut rng);
            t.truncate(k);
        }
        test.extend(t.into_iter().map(|it| Item { source: it.source.clone(), label: relabel(old) }));
    }
    pool.shuffle(&mut rng);
    pool.truncate(spec.unlabelled);
    let mut unlabelled = pool;
    if spec.unlabelled > unlabelled.len() {
        unlabelled.extend(ds.unlabelled.iter().take(spec.unlabelled - unlabelled.len()).cloned());
    }
    Ok(Dataset { root: ds.root.clone(), classes, train, val, test, unlabelled, split: ds.split.clone() })
}

fn write_item(it: &Item, dir: &Path, i: usize) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| GraftError::io(dir, e))?;
    match &it.source {
        ItemSource::File(p) => {
            let name = format!("{i:06}_{}", p.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default());
            let dst = dir.join(name);
            std::fs::copy(p, &dst).map_err(|e| GraftError::io(&dst, e))?;
        }
        ItemSource::Pixels { data, width, height, channels, .. } => {
            let dst = dir.join(format!("{i:06}.png"));
            let color = if *channels == 1 { image::ExtendedColorType::L8 } else { image::ExtendedColorType::Rgb8 };
            image::save_buffer(&dst, data, *width, *height, color)
                .map_err(|e| GraftError::Other(format!("{}: cannot write PNG: {e}", dst.display())))?;
        }
    }
    Ok(())
}

/// Write a dataset as `out/train/<class>/`, `out/test/<class>/` and `out/unlabelled/`.
pub fn write_imagefolder(ds: &Dataset, out: &Path) -> Result<()> {
    if out.exists() && std::fs::read_dir(out).map(|mut d| d.next().is_some()).unwrap_or(false) {
        return Err(GraftError::Usage(format!("--out {} exists and is not empty; choose a new folder", out.display())));
    }
    for (split, items) in [("train", &ds.train), ("test", &ds.test), ("val", &ds.val)] {
        for (i, it) in items.iter().enumerate() {
            let l = it.label.expect("labelled split");
            write_item(it, &out.join(split).join(&ds.classes[l]), i)?;
        }
    }
    for (i, it) in ds.unlabelled.iter().enumerate() {
        write_item(it, &out.join("unlabelled"), i)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::TaskSpec;

    fn spec(shots: usize, imbalance: f64) -> TaskSpec {
        TaskSpec { classes: None, n_classes: 5, shots, unlabelled: 0, test_per_class: None, val_per_class: 0, imbalance }
    }

    /// The imbalanced profile runs from `shots` down to `shots` / imbalance exponentially, in a
    /// seeded class order; an imbalance of 1 gives every class `shots` and leaves the spec's
    /// JSON (a meta-dataset row's `task_spec`) as it was before the field existed.
    #[test]
    fn imbalanced_shots_follow_the_exponential_profile() {
        let mut s = spec(40, 10.0).shots_per_class(5, 7);
        let again = spec(40, 10.0).shots_per_class(5, 7);
        assert_eq!(s, again);
        s.sort_unstable_by(|a, b| b.cmp(a));
        assert_eq!(s, vec![40, 22, 13, 7, 4]);
        assert_eq!(spec(3, 10.0).shots_per_class(5, 0).iter().min(), Some(&1), "at least one image a class");
        assert_eq!(spec(6, 1.0).shots_per_class(4, 3), vec![6; 4]);
        let json = serde_json::to_string(&spec(6, 1.0)).unwrap();
        assert!(!json.contains("imbalance"), "{json}");
        let back: TaskSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back.imbalance, 1.0);
    }
}
