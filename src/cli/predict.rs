//! `graft predict`: flags → [`crate::executor::classifier::predict`] → print.
use super::commands::print_json;
use crate::error::{Result, EXIT_OK};
use crate::executor::{self, classifier};
use crate::util::write_atomic;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// A run directory whose trained classifier to apply (runs/<run_id>, as `graft run` or
    /// `graft auto` printed it), or a file in it. Given more than once: an ensemble, the mean
    /// of the runs' class probabilities (the runs must have the same classes, and heads with
    /// probabilities).
    #[arg(long, required = true)]
    pub run: Vec<PathBuf>,
    /// An image file, or a folder: every image in it and its subfolders. An image in a folder
    /// named after one of the run's classes (the nearest such folder up to --data itself)
    /// counts as that class, and the accuracy on such images is reported.
    #[arg(long)]
    pub data: PathBuf,
    /// Also write the predictions as CSV (path, class, probability, truth) to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Skip unreadable image files (listed) instead of failing.
    #[arg(long)]
    pub skip_bad: bool,
    /// Test-time augmentation: `flip` averages each image's prediction with its mirror
    /// image's (for a run that trained with `augment.hflip`; not for text or digits).
    #[arg(long, value_enum, default_value = "none")]
    pub tta: Tta,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Print one JSON object on stdout instead of one line an image.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tta {
    None,
    Flip,
}

pub fn predict(a: PredictArgs) -> Result<i32> {
    use classifier::{Classifier, SavedHead};
    let (device, _) = executor::select_device(&a.device)?;
    let clfs: Vec<Classifier> = a.run.iter().map(|r| Classifier::load(r, &device)).collect::<Result<_>>()?;
    let flip = a.tta == Tta::Flip;
    if flip {
        // mirrored images are like the training images only if training mirrored them
        for c in &clfs {
            let recipe: Option<serde_json::Value> =
                std::fs::read_to_string(c.dir.join("recipe.json")).ok().and_then(|t| serde_json::from_str(&t).ok());
            if recipe.as_ref().and_then(|r| r["augment"]["hflip"].as_bool()) != Some(true) {
                errln!(
                    "warning: --tta flip: run {} did not train with augment.hflip, so mirrored images may not look like its training images",
                    c.card.run_id
                );
            }
        }
    }
    let json = a.json;
    let done = classifier::predict(&clfs, &a.data, flip, a.skip_bad, &mut |p| {
        if !json {
            let prob = p.probability.map(|v| format!("\t{v:.3}")).unwrap_or_default();
            outln!("{}\t{}{prob}", p.path, p.class);
        }
    })?;
    let first = &clfs[0];
    let classes = &first.card.classes;
    let head = match (&first.card.head, clfs.len()) {
        (SavedHead::Network, 1) => "network".to_string(),
        (SavedHead::Probe { probe, group, .. }, 1) => format!("{probe} probe on {group}"),
        (_, k) => format!("mean probability of {k} runs"),
    };
    let backbones: Vec<&str> = clfs.iter().map(|c| c.card.backbone.as_str()).collect();
    if let Some(out) = &a.out {
        write_atomic(out, classifier::to_csv(&done.predictions).as_bytes())?;
    }
    if a.json {
        print_json(&serde_json::json!({
            "run_id": first.card.run_id,
            "run_dir": first.dir.display().to_string(),
            "run_ids": clfs.iter().map(|c| c.card.run_id.clone()).collect::<Vec<_>>(),
            "backbone": first.card.backbone,
            "backbones": backbones,
            "head": head,
            "tta": format!("{:?}", a.tta).to_lowercase(),
            "classes": classes,
            "n_images": done.predictions.len(),
            "skipped": done.skipped,
            "counts": done.counts,
            "n_labelled": done.n_labelled,
            "accuracy": done.accuracy,
            "balanced_accuracy": done.balanced_accuracy,
            "confusion": done.confusion,
            "predictions": done.predictions,
        }));
    } else {
        let ids: Vec<&str> = clfs.iter().map(|c| c.card.run_id.as_str()).collect();
        errln!(
            "{} images classified by run {} ({} on {}){}",
            done.predictions.len(),
            ids.join(" + "),
            head,
            backbones.join(", "),
            match done.accuracy {
                Some(acc) => format!("; accuracy {acc:.4} on the {} in class-named folders", done.n_labelled),
                None => String::new(),
            }
        );
        let per: Vec<String> = classes.iter().zip(&done.counts).map(|(c, n)| format!("{c} {n}")).collect();
        errln!("predicted: {}", per.join(", "));
        if !done.skipped.is_empty() {
            errln!("skipped {} unreadable files, e.g. {}", done.skipped.len(), done.skipped[0]);
        }
        if let Some(out) = &a.out {
            errln!("predictions written to {}", out.display());
        }
    }
    Ok(EXIT_OK)
}
