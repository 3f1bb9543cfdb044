//! The presets of SPEC.md.
use super::*;

pub const PRESETS: &[&str] = &["linear-probe", "finetune-all", "scratch"];

fn base(name: &str, strategy: Strategy, action: Action) -> Recipe {
    Recipe {
        schema_version: RECIPE_SCHEMA_VERSION,
        name: Some(name.to_string()),
        strategy,
        default_action: action,
        lr: 1e-3,
        layer_decay: 1.0,
        groups: BTreeMap::new(),
        optimizer: OptimizerSpec::default(),
        l2sp: 0.0,
        schedule: ScheduleSpec::default(),
        epochs: 30,
        batch_size: 32,
        augment: Augment { crop_padding: 4, hflip: true, ..Augment::default() },
        label_smoothing: 0.0,
        seed: 0,
        probe: ProbeSpec::default(),
        early_stopping: None,
        val_fraction: 0.0,
        pretrain: None,
        precision: Default::default(),
        head_init: Default::default(),
        class_weights: Default::default(),
        backbone: None,
        input_size: None,
    }
}

/// A preset by name: `linear-probe`, `finetune-all` or `scratch`.
pub fn preset(name: &str) -> Result<Recipe> {
    let mut r = match name {
        // every group frozen; linear SVM on pooled penultimate features
        "linear-probe" => base(name, Strategy::LinearProbe, Action::Freeze),
        // every group transferred and fine-tuned at one learning rate; new head
        "finetune-all" => base(name, Strategy::Finetune, Action::Finetune),
        // every group reinitialised and trained, same epochs as finetune-all
        "scratch" => base(name, Strategy::Finetune, Action::Reinit),
        _ => {
            return Err(GraftError::Usage(format!("--preset {name}: unknown preset; known: {}", PRESETS.join(", "))));
        }
    };
    if r.strategy == Strategy::Finetune && r.default_action == Action::Finetune {
        r.groups.insert("head".into(), GroupSpec { action: Some(Action::Reinit), lr: None });
    }
    if r.strategy != Strategy::Finetune {
        r.augment = Augment::default();
    }
    Ok(r)
}
