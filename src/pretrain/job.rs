//! `graft pretrain` as a library call: one job (supervised training of a new backbone on a
//! labelled source dataset, or an unsupervised/self-supervised method on unlabelled images)
//! → a checkpoint with its card. The CLI only turns flags into a [`PretrainJob`] and prints.
use super::{pretrain_with, PretrainSpec};
use crate::backbones::card::{self, ModelRef, Provenance};
use crate::backbones::{Arch, Model};
use crate::data::{self, load_dataset, Augment, Dataset, Item, LoadOptions};
use crate::error::{GraftError, Result};
use crate::recipe::{self, Action, OptimizerKind, OptimizerSpec, ScheduleKind, ScheduleSpec};
use crate::train::{self, Progress};
use candle_core::Device;
use std::path::PathBuf;
use std::time::Instant;

/// What to learn: supervised classification of the source labels, or one of the label-free
/// methods with its settings.
#[derive(Debug, Clone, PartialEq)]
pub enum Objective {
    Supervised,
    Unsupervised(PretrainSpec),
}

impl Objective {
    pub fn name(&self) -> &'static str {
        match self {
            Objective::Supervised => "supervised",
            Objective::Unsupervised(s) => s.method.as_str(),
        }
    }
}

/// Everything a pretraining run needs. `lr` None means the objective's default (SGD 0.1 for
/// supervised training, the spec's own for the other methods).
#[derive(Debug, Clone)]
pub struct PretrainJob {
    pub load: LoadOptions,
    pub skip_bad: bool,
    pub arch: Arch,
    pub objective: Objective,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: Option<f64>,
    pub weight_decay: f64,
    pub input_size: Option<usize>,
    /// At most this many training images (seeded; stratified when supervised).
    pub max_train: Option<usize>,
    /// Start an unsupervised method from this backbone (name or file) instead of random weights.
    pub init: Option<String>,
    pub seed: u64,
    pub device: Device,
    pub out: PathBuf,
    pub name: Option<String>,
    pub source: Option<String>,
    pub license: String,
    /// Supervised only: per-epoch checkpoints (default: OUT with `.ckpt` appended), resume, and
    /// a stop as if killed after this many epochs (for testing resume).
    pub checkpoint_dir: Option<PathBuf>,
    pub resume: bool,
    pub stop_after_epoch: Option<usize>,
    /// Unsupervised only: decode the images into memory when their 8-bit pixels fit in this
    /// many MiB, else stream them from their files batch by batch.
    pub in_memory_limit_mb: usize,
    /// The command line recorded in the card.
    pub command: String,
}

/// What a finished (or deliberately stopped) job made.
pub enum Finished {
    /// Supervised training stopped after `epochs` epochs by `stop_after_epoch`; resume from `checkpoint_dir`.
    Stopped {
        epochs: usize,
        checkpoint_dir: PathBuf,
    },
    Supervised {
        model: ModelRef,
        test_accuracy: f64,
        source_stats: PathBuf,
    },
    Unsupervised {
        model: ModelRef,
        outcome: super::PretrainOutcome,
    },
}

impl PretrainJob {
    fn checkpoint_dir(&self) -> PathBuf {
        self.checkpoint_dir.clone().unwrap_or_else(|| PathBuf::from(format!("{}.ckpt", self.out.display())))
    }

    fn input(&self) -> data::InputSpec {
        let mut input = self.arch.default_input();
        if let Some(s) = self.input_size {
            input.height = s;
            input.width = s;
        }
        input
    }

    fn name(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.out.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default())
    }

    fn source(&self, root: &std::path::Path) -> String {
        self.source.clone().unwrap_or_else(|| root.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "unknown".into()))
    }
}

/// Runs the job: checks the flags that do not apply to the objective, makes the output folder
/// before any training, trains, and writes the weights and their card (and, when supervised,
/// the source statistics `graft recommend` compares tasks against). `log` gets one line per
/// unsupervised epoch and `step(done, total)` every unsupervised optimisation step; `progress`
/// sees the supervised epochs.
pub fn run(job: &PretrainJob, progress: &dyn Progress, log: &dyn Fn(&str), step: &dyn Fn(usize, usize)) -> Result<Finished> {
    if job.out.extension().and_then(|e| e.to_str()) != Some("safetensors") {
        return Err(GraftError::Usage(format!("--out {}: must end in .safetensors", job.out.display())));
    }
    if let Some(d) = job.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d)
            .map_err(|e| GraftError::Usage(format!("--out {}: cannot create its folder {}: {e}", job.out.display(), d.display())))?;
    }
    match &job.objective {
        Objective::Supervised => {
            if job.init.is_some() {
                return Err(GraftError::Usage(
                    "--init and --settings apply to the unsupervised methods, not to --method supervised".into(),
                ));
            }
            supervised(job, progress)
        }
        Objective::Unsupervised(spec) => {
            if job.resume || job.checkpoint_dir.is_some() {
                return Err(GraftError::Usage("--resume and --checkpoint-dir apply to --method supervised only".into()));
            }
            unsupervised(job, spec, log, step)
        }
    }
}

/// The supervised recipe: every group trained from scratch with SGD (Nesterov momentum 0.9),
/// cosine schedule with one warm-up epoch, crop-and-flip augmentation for colour images.
fn supervised_recipe(job: &PretrainJob, input: data::InputSpec) -> Result<recipe::Recipe> {
    let mut r = recipe::preset("scratch")?;
    r.name = Some("supervised-pretraining".into());
    r.lr = job.lr.unwrap_or(0.1);
    r.epochs = job.epochs;
    r.batch_size = job.batch_size;
    r.seed = job.seed;
    r.optimizer = OptimizerSpec {
        kind: OptimizerKind::Sgd,
        weight_decay: job.weight_decay,
        nesterov: true,
        momentum: 0.9,
        ..OptimizerSpec::default()
    };
    r.schedule = ScheduleSpec { kind: ScheduleKind::Cosine, warmup_epochs: 1.0_f64.min(job.epochs as f64) };
    r.augment = if input.channels == 3 {
        Augment { crop_padding: (input.height / 8) as u32, hflip: true, ..Augment::default() }
    } else {
        Augment { crop_padding: (input.height / 14) as u32, ..Augment::default() }
    };
    Ok(r)
}

fn supervised(job: &PretrainJob, progress: &dyn Progress) -> Result<Finished> {
    let t_all = Instant::now();
    let ds = load_dataset(&job.load)?;
    let input = job.input();
    let checked = supervised_recipe(job, input)?.check(&job.arch.group_names(), ds.n_classes(), ds.n_classes())?;
    debug_assert!(checked.groups().iter().all(|g| g.action == Action::Reinit));
    let mut used = ds.clone();
    if let Some(m) = job.max_train.filter(|&m| m < ds.train.len()) {
        let frac = 1.0 - m as f64 / ds.train.len() as f64;
        used.train = data::folder::stratified_split(ds.train.clone(), ds.n_classes(), frac, job.seed, "max-train").0;
    }
    let dec = data::decode_dataset(&used, input, job.skip_bad, 0.0, job.seed)?;
    let norm = dec.train.channel_stats();
    let model = Model::new(job.arch, input, ds.n_classes(), job.seed, &job.device)?;
    let t0 = Instant::now();
    let ckpt_dir = job.checkpoint_dir();
    let ckpt = train::Checkpointing { dir: &ckpt_dir, resume: job.resume, stop_after: job.stop_after_epoch };
    let out = train::train_with(&model, &checked, &dec.train, None, &norm, &Default::default(), progress, Some(&ckpt))?;
    if out.interrupted {
        return Ok(Finished::Stopped { epochs: out.epochs.len(), checkpoint_dir: ckpt_dir });
    }
    let train_seconds = t0.elapsed().as_secs_f64();
    if let Some(d) = out.diverged {
        return Err(GraftError::Diverged(format!("pretraining {}: {d}", job.out.display())));
    }
    let (test_loss, test_accuracy, _) = train::evaluate(&model, &dec.test, &norm, 256)?;
    let p = Provenance {
        name: job.name(),
        source: job.source(&ds.root),
        source_classes: ds.classes.clone(),
        source_accuracy: Some(test_accuracy),
        license: job.license.clone(),
        method: "supervised".into(),
        epochs: out.epochs.len(),
        seed: job.seed,
        final_loss: out.epochs.last().map(|e| e.train_loss),
        command: job.command.clone(),
        train_seconds: Some(train_seconds),
        notes: format!(
            "trained on {} images, tested on {} ({}); test loss {:.4}; total wall time {:.0}s",
            dec.train.n,
            dec.test.n,
            ds.split.method,
            test_loss,
            t_all.elapsed().as_secs_f64()
        ),
        parent: None,
        data_fingerprint: Some(dec.train.fingerprint.clone()),
    };
    let mref = card::save_with_card(&model, &job.out, &norm, p)?;
    let _ = std::fs::remove_dir_all(&ckpt_dir);
    let source_stats = crate::metafeatures::write_source_stats(&mref, &job.load.data, 5000, job.seed)?;
    Ok(Finished::Supervised { model: mref, test_accuracy, source_stats })
}

/// The images an unsupervised method learns from, without labels. A labelled tree (class
/// folders, split folders or IDX files) gives its training split and its unlabelled pool, so a
/// later `graft run` with the same seed never tests on an image pretraining saw. Anything else,
/// e.g. a plain folder of photos at any depth, gives every image under it.
fn unlabelled_images(job: &PretrainJob) -> Result<(Option<Dataset>, Vec<Item>)> {
    let root = &job.load.data;
    // an ImageFolder root holds class folders only; images directly in it mean a plain folder
    let loose =
        std::fs::read_dir(root).map(|rd| rd.flatten().any(|e| e.path().is_file() && data::folder::is_image(&e.path()))).unwrap_or(false);
    let labelled = if loose { None } else { Some(load_dataset(&job.load)) };
    let plain_allowed = !root.join("train").is_dir() && job.load.test.is_none();
    let not_labelled_why = match labelled {
        Some(Ok(ds)) => {
            let items = ds.train.iter().chain(ds.unlabelled.iter()).map(|i| Item { source: i.source.clone(), label: None }).collect();
            return Ok((Some(ds), items));
        }
        // not a labelled tree (no split folders, no class folders): a plain folder of images
        Some(Err(GraftError::Data(why))) if plain_allowed => why,
        Some(Err(e)) => return Err(e),
        None if plain_allowed => "images directly in the folder".to_string(),
        None => {
            return Err(GraftError::Data(format!(
                "{}: images directly in the folder, yet it has a train/ folder or --test was given; an ImageFolder root holds class folders only",
                root.display()
            )))
        }
    };
    let mut items = data::folder::scan_unlabelled(root)?;
    if let Some(u) = &job.load.unlabelled {
        items.extend(data::folder::scan_unlabelled(u)?);
    }
    if items.is_empty() {
        return Err(GraftError::Data(format!(
            "{} holds no images at any depth ({}); pass a folder of images",
            root.display(),
            data::folder::IMAGE_EXTENSIONS.join(", ")
        )));
    }
    tracing::info!("{}: not a labelled tree ({not_labelled_why}); pretraining on all {} images under it", root.display(), items.len());
    Ok((None, items))
}

/// The backbone to pretrain: `--init`'s weights (also named as the card's parent), or the arch
/// at a random initialisation.
fn initial_model(job: &PretrainJob, ds: Option<&Dataset>) -> Result<(Model, String, Option<card::Parent>)> {
    match &job.init {
        Some(b) => {
            let mut m = card::resolve(b)?;
            if let Some(s) = job.input_size {
                card::override_input_size(&mut m, s)?;
            }
            if m.card.arch != job.arch.name() {
                return Err(GraftError::Usage(format!("--init {b}: its arch is {}, not --arch {}", m.card.arch, job.arch.name())));
            }
            let model = Model::load(&m, job.seed, &job.device)?;
            Ok((
                model,
                format!("initialised from {} (sha256 {})", m.card.name, &m.card.sha256[..12.min(m.card.sha256.len())]),
                Some(card::Parent::of(&m)),
            ))
        }
        None => {
            let k = ds.map(|d| d.n_classes()).unwrap_or(2).max(2);
            Ok((Model::new(job.arch, job.input(), k, job.seed, &job.device)?, "random initialisation".to_string(), None))
        }
    }
}

fn unsupervised(job: &PretrainJob, spec: &PretrainSpec, log: &dyn Fn(&str), step: &dyn Fn(usize, usize)) -> Result<Finished> {
    let t_all = Instant::now();
    let (ds, mut items) = unlabelled_images(job)?;
    if let Some(m) = job.max_train {
        use rand::seq::SliceRandom;
        items.shuffle(&mut crate::util::rng_for(job.seed, "max-train"));
        items.truncate(m);
    }
    let (model, init_note, parent) = initial_model(job, ds.as_ref())?;
    let i = model.input;
    // thousands of images at 224 px are gigabytes even as 8-bit pixels: past the limit they
    // are read from their files batch by batch (the same batches, bit for bit)
    let in_memory = data::images::fits_in_memory(items.len(), i, job.in_memory_limit_mb);
    if !in_memory {
        log(&format!(
            "{} images of {}x{}x{} are over --in-memory-limit-mb {} as 8-bit pixels: streaming them from disk",
            items.len(),
            i.channels,
            i.height,
            i.width,
            job.in_memory_limit_mb
        ));
    }
    let set = data::images::open_images(&items, i, job.skip_bad, job.in_memory_limit_mb)?;
    let norm = set.channel_stats();
    let outcome = pretrain_with(&model, set.as_ref(), &norm, spec, job.seed, log, step)?;
    let (n, skipped) = (set.count(), set.skipped().len());
    let held = if in_memory { "decoded in memory" } else { "streamed from disk" };
    let method = spec.method.as_str();
    let p = Provenance {
        name: job.name(),
        source: job.source(&job.load.data),
        license: job.license.clone(),
        method: method.into(),
        epochs: spec.epochs,
        seed: job.seed,
        final_loss: outcome.losses.last().copied(),
        command: job.command.clone(),
        train_seconds: Some(outcome.seconds),
        notes: format!(
            "{method} on {n} unlabelled images ({held}{}; {init_note}); head not trained; settings {}; loss per epoch {:?}; {:.0} images/s; total wall time {:.0}s",
            if skipped > 0 { format!(", {skipped} unreadable skipped") } else { String::new() },
            serde_json::to_string(spec).expect("serialises"),
            outcome.losses.iter().map(|l| (l * 1e5).round() / 1e5).collect::<Vec<_>>(),
            outcome.images_per_second,
            t_all.elapsed().as_secs_f64()
        ),
        parent,
        data_fingerprint: Some(set.fingerprint().to_string()),
        ..Provenance::default()
    };
    let mref = card::save_with_card(&model, &job.out, &norm, p)?;
    Ok(Finished::Unsupervised { model: mref, outcome })
}
