//! `graft pretrain`: flags → a [`PretrainJob`] → `pretrain::run` → what was written.
use super::commands::{load_opts, print_json};
use super::progress::{EpochBar, StepBar};
use super::DataArgs;
use crate::backbones::{Arch, ModelCard};
use crate::error::{GraftError, Result, EXIT_OK};
use crate::executor;
use crate::pretrain::{self, Finished, Method, Objective, PretrainJob, PretrainSpec};
use clap::builder::TypedValueParser;
use clap::Args;
use std::path::PathBuf;

/// `--method`: `supervised` (None) or one of the label-free methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodArg(pub Option<Method>);

fn method_parser() -> impl clap::builder::TypedValueParser<Value = MethodArg> {
    let names: Vec<&'static str> = std::iter::once("supervised").chain(Method::ALL.iter().map(|m| m.as_str())).collect();
    clap::builder::PossibleValuesParser::new(names).map(|s| MethodArg(Method::ALL.into_iter().find(|m| m.as_str() == s)))
}

#[derive(Args, Debug)]
pub struct PretrainArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[arg(long, value_enum)]
    pub arch: Arch,
    /// supervised, autoencoder, sparse-autoencoder, denoising-autoencoder,
    /// contractive-autoencoder, greedy-layerwise or simclr.
    #[arg(long, default_value = "supervised", value_parser = method_parser())]
    pub method: MethodArg,
    /// Output weights file (.safetensors); the card is written beside it (.json).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 30)]
    pub epochs: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Peak learning rate (supervised: SGD, Nesterov momentum 0.9, cosine with 1 warm-up epoch,
    /// default 0.1; other methods: AdamW, cosine, default 1e-3).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Start from this backbone's weights (name or file) instead of a random initialisation:
    /// continued pretraining on the target domain (unsupervised methods).
    #[arg(long)]
    pub init: Option<String>,
    /// Method settings as JSON, e.g. '{"temperature": 0.2}' or '{"noise": 0.3, "mask": 0.1}'
    /// (fields of the recipe's `pretrain` step; see `graft recipe schema`).
    #[arg(long)]
    pub settings: Option<String>,
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 5e-4)]
    pub weight_decay: f64,
    /// Input size (square); default: the arch's.
    #[arg(long)]
    pub input_size: Option<usize>,
    /// Use at most this many training images (seeded, stratified), e.g. for quick checks.
    #[arg(long)]
    pub max_train: Option<usize>,
    /// Model name in the card (default: the output file's stem).
    #[arg(long)]
    pub name: Option<String>,
    /// Source data name in the card (default: the data folder's name).
    #[arg(long)]
    pub source: Option<String>,
    #[arg(long, default_value = "MIT OR Apache-2.0 (weights); the source data's own terms also apply")]
    pub license: String,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Folder for per-epoch checkpoints (default: OUT with `.ckpt` appended); removed after success.
    #[arg(long)]
    pub checkpoint_dir: Option<PathBuf>,
    /// Resume from the last finished epoch in the checkpoint folder.
    #[arg(long)]
    pub resume: bool,
    /// Unsupervised methods: decode the images into memory when their 8-bit pixels fit in this
    /// many MiB; past it, stream them from disk batch by batch (same result, bounded memory).
    #[arg(long, default_value_t = crate::data::images::IN_MEMORY_LIMIT_MB)]
    pub in_memory_limit_mb: usize,
    /// Stop after this many epochs as if killed (for testing --resume).
    #[arg(long, hide = true)]
    pub stop_after_epoch: Option<usize>,
    #[arg(long)]
    pub json: bool,
}

/// The method's default settings, `--settings` merged over them, then the flags.
fn unsupervised_spec(a: &PretrainArgs, method: Method) -> Result<PretrainSpec> {
    let mut spec = PretrainSpec::new(method);
    if let Some(js) = &a.settings {
        let mut v = serde_json::to_value(&spec).expect("serialises");
        let extra: serde_json::Value =
            serde_json::from_str(js).map_err(|e| GraftError::Usage(format!("--settings: not a JSON object: {e}")))?;
        let obj = extra.as_object().ok_or_else(|| GraftError::Usage("--settings: must be a JSON object".into()))?;
        for (k, x) in obj {
            v[k] = x.clone();
        }
        spec = serde_json::from_value(v).map_err(|e| GraftError::Usage(format!("--settings: {e}")))?;
    }
    spec.epochs = a.epochs;
    spec.batch_size = a.batch_size;
    if let Some(lr) = a.lr {
        spec.lr = lr;
    }
    spec.validate().map_err(|e| match e {
        GraftError::Recipe { field, msg } => GraftError::Usage(format!("{field}: {msg}")),
        e => e,
    })?;
    Ok(spec)
}

pub fn pretrain(a: PretrainArgs) -> Result<i32> {
    let objective = match a.method.0 {
        None if a.settings.is_some() => {
            return Err(GraftError::Usage("--init and --settings apply to the unsupervised methods, not to --method supervised".into()))
        }
        None => Objective::Supervised,
        Some(m) => Objective::Unsupervised(unsupervised_spec(&a, m)?),
    };
    let (device, _) = executor::select_device(&a.device)?;
    let job = PretrainJob {
        load: load_opts(&a.data, a.seed),
        skip_bad: a.data.skip_bad,
        arch: a.arch,
        objective,
        epochs: a.epochs,
        batch_size: a.batch_size,
        lr: a.lr,
        weight_decay: a.weight_decay,
        input_size: a.input_size,
        max_train: a.max_train,
        init: a.init.clone(),
        seed: a.seed,
        device,
        out: a.out.clone(),
        name: a.name.clone(),
        source: a.source.clone(),
        license: a.license.clone(),
        checkpoint_dir: a.checkpoint_dir.clone(),
        resume: a.resume,
        stop_after_epoch: a.stop_after_epoch,
        in_memory_limit_mb: a.in_memory_limit_mb,
        command: super::command_line(),
    };
    // supervised training reports epochs to the bar; the label-free methods log a line per
    // epoch through `log` instead
    let bar = EpochBar::new(a.epochs, "pretrain", a.method.0.is_some());
    // the label-free methods: a bar over optimisation steps on a terminal
    let steps = StepBar::new("pretrain", a.method.0.is_some());
    let done = pretrain::run(&job, &bar, &|l| steps.println(l), &|d, t| steps.set(d, t));
    bar.finish();
    steps.finish();
    match done? {
        Finished::Stopped { epochs, checkpoint_dir } => {
            errln!("stopped after epoch {epochs}; resume with --resume (checkpoint in {})", checkpoint_dir.display());
        }
        Finished::Supervised { model, test_accuracy, source_stats } => {
            if a.json {
                print_json(&model.card);
            } else {
                errln!(
                    "wrote {}, {} and {}: source test accuracy {test_accuracy:.4}",
                    a.out.display(),
                    ModelCard::card_path(&a.out).display(),
                    source_stats.display()
                );
            }
        }
        Finished::Unsupervised { model, outcome } => {
            if a.json {
                print_json(
                    &serde_json::json!({"card": model.card, "losses": outcome.losses, "images_per_second": outcome.images_per_second}),
                );
            } else {
                errln!(
                    "wrote {} and {}: {} loss {:.5} -> {:.5}",
                    a.out.display(),
                    ModelCard::card_path(&a.out).display(),
                    outcome.method,
                    outcome.losses[0],
                    outcome.losses[outcome.losses.len() - 1]
                );
            }
        }
    }
    Ok(EXIT_OK)
}
