//! `graft experiment NAME`: the reproductions in `src/experiment`.
use super::commands::print_json;
use crate::error::{GraftError, Result, EXIT_OK};
use crate::executor;
use crate::experiment::{self, Env, Settings, EXPERIMENTS};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ExperimentArgs {
    /// paine or yosinski
    pub name: String,
    /// CIFAR-10 as ImageFolder with train/ and test/ (scripts/fetch-data.sh makes data/cifar10).
    #[arg(long, default_value = "data/cifar10")]
    pub data: PathBuf,
    /// Where the table (NAME.md), plot (NAME.svg) and rows (NAME.json) go.
    #[arg(long, default_value = "docs/experiments")]
    pub out: PathBuf,
    /// Folder for run records and the experiment's checkpoints.
    #[arg(long, default_value = "runs/experiments")]
    pub runs: PathBuf,
    /// Comma-separated seeds.
    #[arg(long, value_delimiter = ',', default_value = "0,1,2")]
    pub seeds: Vec<u64>,
    /// paine: labelled images per class, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "4,25,100")]
    pub labels: Vec<usize>,
    /// paine: unlabelled pool (drawn from the rest of the training set).
    #[arg(long, default_value_t = 2000)]
    pub unlabelled: usize,
    /// paine: pretraining epochs over the pool.
    #[arg(long, default_value_t = 10)]
    pub pretrain_epochs: usize,
    /// yosinski: training images per class of each 5-class half.
    #[arg(long, default_value_t = 100)]
    pub shots: usize,
    /// Training epochs (paine: at the largest L; smaller L get more epochs, up to 8x, so every L
    /// sees about the same number of steps).
    #[arg(long, default_value_t = 15)]
    pub epochs: usize,
    #[arg(long, default_value_t = 100)]
    pub test_per_class: usize,
    /// paine: start from this pretrained backbone (name or file), e.g.
    /// efficientnet-lite0-imagenet, and compare continued SimCLR on the pool against no
    /// continued pretraining; writes paine-init.{json,md,svg}.
    #[arg(long)]
    pub init: Option<String>,
    /// paine --init: input size (square) to run the backbone at (default: its card's).
    #[arg(long)]
    pub input_size: Option<usize>,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[arg(long)]
    pub json: bool,
}

pub fn experiment(a: ExperimentArgs) -> Result<i32> {
    if !EXPERIMENTS.contains(&a.name.as_str()) {
        return Err(GraftError::Usage(format!("experiment `{}`: unknown; known: {}", a.name, EXPERIMENTS.join(", "))));
    }
    if a.seeds.is_empty() || a.labels.contains(&0) || a.shots == 0 || a.epochs == 0 || a.test_per_class == 0 {
        return Err(GraftError::Usage("--seeds needs a seed; --labels, --shots, --epochs and --test-per-class must be at least 1".into()));
    }
    if a.name == "paine" && a.unlabelled < 2 {
        return Err(GraftError::Usage("--unlabelled must be at least 2 for paine".into()));
    }
    if (a.init.is_some() || a.input_size.is_some()) && a.name != "paine" {
        return Err(GraftError::Usage("--init and --input-size apply to the paine experiment only".into()));
    }
    if a.input_size.is_some() && a.init.is_none() {
        return Err(GraftError::Usage("--input-size needs --init (the resnet8 protocol runs at 32 px)".into()));
    }
    let (device, device_name) = executor::select_device(&a.device)?;
    let s = Settings {
        experiment: if a.init.is_some() { "paine-init".into() } else { a.name.clone() },
        data: a.data.display().to_string(),
        seeds: a.seeds.clone(),
        labels: if a.name == "paine" { a.labels.clone() } else { vec![] },
        unlabelled: if a.name == "paine" { a.unlabelled } else { 0 },
        pretrain_epochs: if a.name == "paine" { a.pretrain_epochs } else { 0 },
        shots: if a.name == "yosinski" { a.shots } else { 0 },
        epochs: a.epochs,
        test_per_class: a.test_per_class,
        init: a.init.clone(),
        input_size: a.input_size,
    };
    let env = Env {
        out: a.out.clone(),
        runs: a.runs.join(&a.name),
        device,
        device_name,
        command: super::command_line(),
        log: Box::new(|l: &str| errln!("{l}")),
    };
    let res = match a.name.as_str() {
        "paine" => experiment::paine(&env, &s)?,
        _ => experiment::yosinski(&env, &s)?,
    };
    let (md, svg) = experiment::write_outputs(&a.out, &res)?;
    if a.json {
        print_json(&res);
    } else {
        errln!("{}", experiment::render(&res).0);
        errln!("wrote {}, {} and {}", md.display(), svg.display(), a.out.join(format!("{}.json", res.settings.experiment)).display());
    }
    Ok(EXIT_OK)
}
