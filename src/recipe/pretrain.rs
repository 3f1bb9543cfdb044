//! The recipe's optional pretraining step: the unsupervised or self-supervised method and its
//! settings. The methods themselves live in the top-level `pretrain` module.
use crate::error::{GraftError, Result};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    Autoencoder,
    SparseAutoencoder,
    DenoisingAutoencoder,
    ContractiveAutoencoder,
    GreedyLayerwise,
    Simclr,
}

impl Method {
    pub const ALL: [Method; 6] = [
        Method::Autoencoder,
        Method::SparseAutoencoder,
        Method::DenoisingAutoencoder,
        Method::ContractiveAutoencoder,
        Method::GreedyLayerwise,
        Method::Simclr,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Method::Autoencoder => "autoencoder",
            Method::SparseAutoencoder => "sparse-autoencoder",
            Method::DenoisingAutoencoder => "denoising-autoencoder",
            Method::ContractiveAutoencoder => "contractive-autoencoder",
            Method::GreedyLayerwise => "greedy-layerwise",
            Method::Simclr => "simclr",
        }
    }
    pub fn parse(s: &str) -> Result<Method> {
        Method::ALL.into_iter().find(|m| m.as_str() == s).ok_or_else(|| {
            GraftError::Usage(format!(
                "unknown pretraining method `{s}`; known: {}",
                Method::ALL.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", ")
            ))
        })
    }
}

/// Pretraining settings (also the `pretrain` step of a recipe).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PretrainSpec {
    pub method: Method,
    #[serde(default = "d_epochs")]
    pub epochs: usize,
    #[serde(default = "d_batch")]
    pub batch_size: usize,
    #[serde(default = "d_lr")]
    pub lr: f64,
    /// Code units of the autoencoders' dense code layer.
    #[serde(default = "d_code")]
    pub code_dim: usize,
    /// Sparse autoencoder: target mean activation ρ of the code units and weight β of the KL penalty.
    #[serde(default = "d_rho")]
    pub sparsity_target: f64,
    #[serde(default = "d_beta")]
    pub sparsity_weight: f64,
    /// Denoising autoencoder: Gaussian noise (std, normalised units) and the fraction of pixels masked.
    #[serde(default = "d_noise")]
    pub noise: f64,
    #[serde(default = "d_mask")]
    pub mask: f64,
    /// Contractive autoencoder: weight λ of ‖∂h/∂p‖²_F.
    #[serde(default = "d_lambda")]
    pub contractive_weight: f64,
    /// SimCLR: NT-Xent temperature, projection size, colour-jitter strength.
    #[serde(default = "d_temp")]
    pub temperature: f64,
    #[serde(default = "d_proj")]
    pub projection_dim: usize,
    #[serde(default = "d_jitter")]
    pub jitter: f32,
    /// Which images: `unlabelled` (the unlabelled pool, else the training images) or `train`
    /// (the training images without their labels). Used by recipes.
    #[serde(default = "d_data")]
    pub data: String,
}

fn d_epochs() -> usize {
    5
}
fn d_batch() -> usize {
    64
}
fn d_lr() -> f64 {
    1e-3
}
fn d_code() -> usize {
    32
}
fn d_rho() -> f64 {
    0.05
}
fn d_beta() -> f64 {
    0.1
}
fn d_noise() -> f64 {
    0.5
}
fn d_mask() -> f64 {
    0.25
}
fn d_lambda() -> f64 {
    0.1
}
fn d_temp() -> f64 {
    0.5
}
fn d_proj() -> usize {
    64
}
fn d_jitter() -> f32 {
    0.5
}
fn d_data() -> String {
    "unlabelled".into()
}

impl PretrainSpec {
    pub fn new(method: Method) -> Self {
        let mut s: PretrainSpec = serde_json::from_value(serde_json::json!({"method": method})).expect("defaults");
        if method == Method::Simclr {
            s.batch_size = 128;
        }
        s
    }
    /// Every setting in range; the error names the field (`pretrain.lr`, ...).
    pub fn validate(&self) -> Result<()> {
        let pos = |f: &str, v: f64| {
            if v > 0.0 && v.is_finite() {
                Ok(())
            } else {
                Err(GraftError::recipe(format!("pretrain.{f}"), format!("must be positive, got {v}")))
            }
        };
        pos("lr", self.lr)?;
        pos("temperature", self.temperature)?;
        if self.epochs == 0 {
            return Err(GraftError::recipe("pretrain.epochs", "must be at least 1"));
        }
        if self.batch_size < 2 {
            return Err(GraftError::recipe("pretrain.batch_size", format!("must be at least 2, got {}", self.batch_size)));
        }
        if self.code_dim == 0 || self.projection_dim == 0 {
            return Err(GraftError::recipe("pretrain.code_dim", "code_dim and projection_dim must be at least 1"));
        }
        if !(self.sparsity_target > 0.0 && self.sparsity_target < 1.0) {
            return Err(GraftError::recipe("pretrain.sparsity_target", format!("must be in (0, 1), got {}", self.sparsity_target)));
        }
        if !(0.0..1.0).contains(&self.mask) {
            return Err(GraftError::recipe("pretrain.mask", format!("must be in [0, 1), got {}", self.mask)));
        }
        if self.data != "unlabelled" && self.data != "train" {
            return Err(GraftError::recipe("pretrain.data", format!("must be `unlabelled` or `train`, got `{}`", self.data)));
        }
        Ok(())
    }
}
