//! Model cards: a JSON document beside each `*.safetensors` checkpoint, and the model zoo.
use crate::data::{InputSpec, Normalisation};
use crate::error::{GraftError, Result};
use crate::util::sha256_file;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const CARD_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelCard {
    pub card_version: u32,
    pub name: String,
    pub arch: String,
    pub input: InputSpec,
    pub normalisation: Normalisation,
    /// Layer groups from input to output.
    pub groups: Vec<String>,
    /// Number of classes of the source head.
    pub n_classes: usize,
    pub source_classes: Vec<String>,
    /// The data the weights were trained on.
    pub source: String,
    /// Test accuracy on the source data (0..1), when measured.
    pub source_accuracy: Option<f64>,
    pub params: usize,
    pub license: String,
    /// sha256 of the safetensors file.
    pub sha256: String,
    /// How it was trained: `supervised`, `autoencoder`, ..., or `random`.
    pub method: String,
    pub epochs: usize,
    pub seed: u64,
    pub final_loss: Option<f64>,
    /// The exact command that made it.
    pub command: String,
    pub created_at: String,
    pub graft_version: String,
    #[serde(default)]
    pub train_seconds: Option<f64>,
    #[serde(default)]
    pub notes: String,
    /// The checkpoint these weights continued from (continued pretraining with `--init`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Parent>,
    /// sha256 over the training images (content and label, in order; `ImageSet::fingerprint`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_fingerprint: Option<String>,
}

/// A parent checkpoint: its card's name and its weights' sha256.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Parent {
    pub name: String,
    pub sha256: String,
}

impl Parent {
    /// The checkpoint `m` as a parent.
    pub fn of(m: &ModelRef) -> Self {
        Parent { name: m.card.name.clone(), sha256: m.card.sha256.clone() }
    }
}

/// What a card records about where a checkpoint came from: everything the model itself cannot
/// say (its architecture, input, groups, classes and parameter count come from the model).
#[derive(Debug, Clone, Default)]
pub struct Provenance {
    pub name: String,
    /// The data the weights were trained on.
    pub source: String,
    pub source_classes: Vec<String>,
    pub source_accuracy: Option<f64>,
    pub license: String,
    /// `supervised`, `autoencoder`, ..., `torchvision`.
    pub method: String,
    pub epochs: usize,
    pub seed: u64,
    pub final_loss: Option<f64>,
    /// The exact command that made it.
    pub command: String,
    pub train_seconds: Option<f64>,
    pub notes: String,
    pub parent: Option<Parent>,
    pub data_fingerprint: Option<String>,
}

/// The model's side of a card.
pub struct Shape {
    pub arch: String,
    pub input: InputSpec,
    pub groups: Vec<String>,
    pub n_classes: usize,
    pub params: usize,
}

impl Shape {
    pub fn of(model: &super::Model) -> Self {
        Shape {
            arch: model.arch.name().into(),
            input: model.input,
            groups: model.group_names.clone(),
            n_classes: model.n_classes,
            params: model.param_count(),
        }
    }
}

/// Saves `model` to `weights` (a `.safetensors` path; its folder is made if missing) and its
/// card beside it, written atomically; returns the reference `graft run --backbone` resolves.
pub fn save_with_card(model: &super::Model, weights: &Path, normalisation: &Normalisation, p: Provenance) -> Result<ModelRef> {
    if let Some(d) = weights.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d).map_err(|e| GraftError::io(d, e))?;
    }
    model.save(weights)?;
    let card = ModelCard::new(Shape::of(model), normalisation.clone(), sha256_file(weights)?, crate::util::now_rfc3339(), p);
    let cp = ModelCard::card_path(weights);
    crate::util::write_atomic(&cp, serde_json::to_string_pretty(&card).expect("serialises").as_bytes())?;
    Ok(ModelRef { weights: weights.to_path_buf(), card })
}

impl ModelCard {
    /// The one constructor: the model's shape, its input normalisation, the weights' sha256,
    /// when it was made, and its provenance.
    pub fn new(shape: Shape, normalisation: Normalisation, sha256: String, created_at: String, p: Provenance) -> Self {
        ModelCard {
            card_version: CARD_VERSION,
            name: p.name,
            arch: shape.arch,
            input: shape.input,
            normalisation,
            groups: shape.groups,
            n_classes: shape.n_classes,
            source_classes: p.source_classes,
            source: p.source,
            source_accuracy: p.source_accuracy,
            params: shape.params,
            license: p.license,
            sha256,
            method: p.method,
            epochs: p.epochs,
            seed: p.seed,
            final_loss: p.final_loss,
            command: p.command,
            created_at,
            graft_version: env!("CARGO_PKG_VERSION").into(),
            train_seconds: p.train_seconds,
            notes: p.notes,
            parent: p.parent,
            data_fingerprint: p.data_fingerprint,
        }
    }

    pub fn card_path(weights: &Path) -> PathBuf {
        weights.with_extension("json")
    }

    pub fn load(card_path: &Path) -> Result<Self> {
        let bytes = std::fs::read(card_path).map_err(|e| GraftError::io(card_path, e))?;
        let card: ModelCard = serde_json::from_slice(&bytes)
            .map_err(|e| GraftError::Model(format!("{}: not a valid model card: {e}", card_path.display())))?;
        card.validate(card_path)?;
        Ok(card)
    }

    /// The fields a backbone is built from: an input graft can decode to, a normalisation per
    /// channel with positive spreads, at least two groups, a source head.
    fn validate(&self, card_path: &Path) -> Result<()> {
        let bad = |why: String| GraftError::Model(format!("{}: bad model card: {why}", card_path.display()));
        let i = self.input;
        if !matches!(i.channels, 1 | 3) {
            return Err(bad(format!("`input.channels` is {}, expected 1 or 3", i.channels)));
        }
        if !(8..=1024).contains(&i.height) || !(8..=1024).contains(&i.width) {
            return Err(bad(format!("`input` is {}x{}, expected 8 to 1024 pixels a side", i.height, i.width)));
        }
        let n = &self.normalisation;
        if n.mean.len() != i.channels || n.std.len() != i.channels {
            return Err(bad(format!("`normalisation` needs {} mean and std values", i.channels)));
        }
        if n.mean.iter().any(|v| !v.is_finite()) || n.std.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
            return Err(bad("`normalisation` needs finite means and positive, finite stds".into()));
        }
        if self.groups.len() < 2 {
            return Err(bad("`groups` needs at least two layer groups".into()));
        }
        if self.n_classes == 0 {
            return Err(bad("`n_classes` must be at least 1".into()));
        }
        Ok(())
    }

    /// Refuse a card whose sha256 does not match its weights file.
    pub fn verify(&self, weights: &Path) -> Result<()> {
        let actual = sha256_file(weights)?;
        if actual != self.sha256 {
            return Err(GraftError::Model(format!(
                "{}: sha256 {actual} does not match its card ({}); the weights or the card were changed — restore them or re-create the card with `graft pretrain`",
                weights.display(),
                self.sha256
            )));
        }
        Ok(())
    }
}

/// A resolved backbone reference: weights file and its card.
#[derive(Debug, Clone)]
pub struct ModelRef {
    pub weights: PathBuf,
    pub card: ModelCard,
}

/// Folders searched for named models, in order: `$GRAFT_MODELS`, `./models`, and `models/`
/// beside the installed binary's repository (`target/release/graft` -> `models/`).
pub fn model_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(d) = std::env::var("GRAFT_MODELS") {
        dirs.push(PathBuf::from(d));
    }
    dirs.push(PathBuf::from("models"));
    if let Ok(exe) = std::env::current_exe() {
        if let Some(root) = exe.parent().and_then(|p| p.parent()).and_then(|p| p.parent()) {
            dirs.push(root.join("models"));
        }
        if let Some(root) = exe.parent().and_then(|p| p.parent()).and_then(|p| p.parent()).and_then(|p| p.parent()) {
            dirs.push(root.join("models"));
        }
    }
    dirs
}

/// Every model card found in the model folders (first folder wins for a repeated name).
pub fn list_models() -> Result<Vec<ModelRef>> {
    let mut out: Vec<ModelRef> = Vec::new();
    for d in model_dirs() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut files: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        files.sort();
        for p in files {
            if p.extension().and_then(|e| e.to_str()) == Some("safetensors") {
                let cp = ModelCard::card_path(&p);
                if !cp.is_file() {
                    continue;
                }
                let card = ModelCard::load(&cp)?;
                if !out.iter().any(|m| m.card.name == card.name) {
                    out.push(ModelRef { weights: p, card });
                }
            }
        }
    }
    Ok(out)
}

/// The key of a backbone at an input size, as the meta-learner and `--backbone` spell it: the
/// name alone at the card's own size, `NAME@SIZE` at another square size.
pub fn backbone_key(name: &str, size: usize, native: usize) -> String {
    if size == native || size == 0 {
        name.to_string()
    } else {
        format!("{name}@{size}")
    }
}

/// Split `NAME@SIZE` into the name and the size (None without a numeric `@SIZE` suffix).
pub fn split_key(key: &str) -> (&str, Option<usize>) {
    match key.rsplit_once('@') {
        Some((n, s)) if !n.is_empty() && !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => (n, s.parse().ok()),
        _ => (key, None),
    }
}

/// Resolve `--backbone NAME|FILE|NAME@SIZE`. A file needs its card beside it; a name is looked
/// up in the model folders; `@SIZE` runs the model at a square input of SIZE pixels (as
/// `--input-size` does). The card's sha256 is checked against the file.
pub fn resolve(name_or_path: &str) -> Result<ModelRef> {
    if !Path::new(name_or_path).exists() {
        if let (name, Some(size)) = split_key(name_or_path) {
            let mut m = resolve(name)?;
            override_input_size(&mut m, size).map_err(|e| GraftError::Usage(format!("--backbone {name_or_path}: {e}")))?;
            return Ok(m);
        }
    }
    let p = Path::new(name_or_path);
    let r = if p.extension().and_then(|e| e.to_str()) == Some("safetensors") || p.is_file() {
        if !p.is_file() {
            return Err(GraftError::Model(format!("--backbone {}: no such file", p.display())));
        }
        let cp = ModelCard::card_path(p);
        if !cp.is_file() {
            return torchvision_card(p).map_err(|e| {
                GraftError::Model(format!(
                    "--backbone {}: no model card {} beside it, and not a torchvision-format ResNet ({e}); write a card (arch, input, normalisation) or use a torchvision ResNet file",
                    p.display(),
                    cp.display()
                ))
            });
        }
        ModelRef { weights: p.to_path_buf(), card: ModelCard::load(&cp)? }
    } else {
        let all = list_models()?;
        match all.iter().find(|m| m.card.name == name_or_path) {
            Some(m) => m.clone(),
            None => {
                let names: Vec<String> = all.iter().map(|m| m.card.name.clone()).collect();
                return Err(GraftError::Model(format!(
                    "--backbone {name_or_path}: unknown model; known models: {} (searched {}); or pass a .safetensors file with its .json card",
                    if names.is_empty() { "none".into() } else { names.join(", ") },
                    model_dirs().iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
                )));
            }
        }
    };
    r.card.verify(&r.weights)?;
    Ok(r)
}

/// A card for a torchvision-format ResNet file without one: ImageNet normalisation, 224x224
/// RGB input (write a card beside the file to choose another size), groups stem, layer1..4, head.
pub fn torchvision_card(weights: &Path) -> Result<ModelRef> {
    let spec = super::torchvision::TvSpec::from_file(weights)?;
    let arch = super::Arch::TorchvisionResnet;
    let name = weights.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| spec.name());
    let mut input = arch.default_input();
    input.channels = spec.in_channels;
    let shape = Shape { arch: arch.name().into(), input, groups: arch.group_names(), n_classes: spec.n_classes, params: 0 };
    let normalisation = Normalisation { mean: vec![0.485, 0.456, 0.406], std: vec![0.229, 0.224, 0.225] };
    let p = Provenance {
        name,
        source: "unknown (torchvision-format file without a card)".into(),
        license: "unknown".into(),
        method: "torchvision".into(),
        notes: format!("{} read from tensor shapes: blocks {:?}, widths {:?}", spec.name(), spec.blocks, spec.outs),
        ..Provenance::default()
    };
    let card = ModelCard::new(shape, normalisation, sha256_file(weights)?, String::new(), p);
    Ok(ModelRef { weights: weights.to_path_buf(), card })
}

/// Use a square input of `size` pixels instead of the card's (convnet4 needs at least 16).
pub fn override_input_size(m: &mut ModelRef, size: usize) -> Result<()> {
    if !(16..=1024).contains(&size) {
        return Err(GraftError::Usage(format!("--input-size must be in 16..=1024, got {size}")));
    }
    if m.card.arch == "convnet4" && size != m.card.input.height {
        return Err(GraftError::Usage(format!(
            "--input-size: convnet4's flatten head is fixed to its card's {}x{} input",
            m.card.input.height, m.card.input.width
        )));
    }
    m.card.input.height = size;
    m.card.input.width = size;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backbone_keys_name_a_size_only_when_it_is_not_the_cards() {
        assert_eq!(backbone_key("efficientnet-lite0-imagenet", 224, 224), "efficientnet-lite0-imagenet");
        assert_eq!(backbone_key("efficientnet-lite0-imagenet", 96, 224), "efficientnet-lite0-imagenet@96");
        assert_eq!(split_key("efficientnet-lite0-imagenet@96"), ("efficientnet-lite0-imagenet", Some(96)));
        assert_eq!(split_key("resnet8-cifar10"), ("resnet8-cifar10", None));
        assert_eq!(split_key("odd@name"), ("odd@name", None));
        assert_eq!(split_key("@96"), ("@96", None));
    }
}
