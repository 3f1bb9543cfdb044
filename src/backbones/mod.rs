//! Backbones as structs with named layer groups from input to output, features at every group,
//! per-group train/eval mode for BatchNorm, a replaceable head, seeded initialisation and
//! safetensors checkpoints with a card.
pub mod card;
pub mod layers;
pub mod torchvision;

use crate::data::InputSpec;
use crate::error::{GraftError, Result};
use crate::util::rng_for;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use layers::{BasicBlock, ConvBn, Layer};
use rand_distr::{Distribution, Normal, Uniform};
use std::collections::BTreeMap;
use std::path::Path;

pub use card::{ModelCard, ModelRef};

/// The architectures graft can build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// 4 conv blocks (64 channels, conv-BN-ReLU-maxpool), for 28x28 grey images.
    Convnet4,
    /// CIFAR ResNet with 1 basic block per stage (16/32/64 channels).
    Resnet8,
    /// CIFAR ResNet with 3 basic blocks per stage (16/32/64 channels).
    Resnet20,
    /// A torchvision-format ResNet (18/34/50/...) loaded from a safetensors file; its depth and
    /// widths are read from the file's tensor shapes.
    #[value(skip)]
    #[serde(rename = "torchvision-resnet")]
    TorchvisionResnet,
    /// EfficientNet-Lite0 (no squeeze-excitation, ReLU6, TensorFlow "same" padding), groups
    /// stem, stage1..stage7, top (1x1 conv to 1280), head; any input size from about 32 px.
    #[value(name = "efficientnet-lite0")]
    #[serde(rename = "efficientnet-lite0")]
    EfficientnetLite0,
    /// EfficientNet-Lite1: Lite0 deepened 1.1x (21 blocks), native 240 px.
    #[value(name = "efficientnet-lite1")]
    #[serde(rename = "efficientnet-lite1")]
    EfficientnetLite1,
    /// EfficientNet-Lite2: Lite0 widened 1.1x and deepened 1.2x (21 blocks), native 260 px.
    #[value(name = "efficientnet-lite2")]
    #[serde(rename = "efficientnet-lite2")]
    EfficientnetLite2,
}

/// An EfficientNet-Lite stage: (expand ratio, kernel, stride, output channels, blocks).
pub type LiteStage = (usize, usize, usize, usize, usize);

/// EfficientNet-Lite0 stages (EfficientNet-B0's, which the other Lite models scale).
pub const LITE0_STAGES: [LiteStage; 7] =
    [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)];

/// EfficientNet's channel rounding for a width multiplier: scale, round to a multiple of 8,
/// and never fall below 90% of the scaled count.
fn round_filters(c: usize, width: f64) -> usize {
    if width == 1.0 {
        return c;
    }
    let x = c as f64 * width;
    let r = (((x + 4.0) as usize) / 8 * 8).max(8);
    if (r as f64) < 0.9 * x {
        r + 8
    } else {
        r
    }
}

/// The stages of a Lite model with the given width and depth multipliers. The Lite family
/// keeps the stem (32), the head (1280) and the first and last stage's depth fixed.
pub fn lite_stages(width: f64, depth: f64) -> [LiteStage; 7] {
    let mut out = LITE0_STAGES;
    for (i, st) in out.iter_mut().enumerate() {
        st.3 = round_filters(st.3, width);
        if i != 0 && i != 6 {
            st.4 = (st.4 as f64 * depth).ceil() as usize;
        }
    }
    out
}

impl Arch {
    pub fn name(&self) -> &'static str {
        match self {
            Arch::Convnet4 => "convnet4",
            Arch::Resnet8 => "resnet8",
            Arch::Resnet20 => "resnet20",
            Arch::TorchvisionResnet => "torchvision-resnet",
            Arch::EfficientnetLite0 => "efficientnet-lite0",
            Arch::EfficientnetLite1 => "efficientnet-lite1",
            Arch::EfficientnetLite2 => "efficientnet-lite2",
        }
    }
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "convnet4" => Ok(Arch::Convnet4),
            "resnet8" => Ok(Arch::Resnet8),
            "resnet20" => Ok(Arch::Resnet20),
            "torchvision-resnet" => Ok(Arch::TorchvisionResnet),
            "efficientnet-lite0" => Ok(Arch::EfficientnetLite0),
            "efficientnet-lite1" => Ok(Arch::EfficientnetLite1),
            "efficientnet-lite2" => Ok(Arch::EfficientnetLite2),
            _ => Err(GraftError::Model(format!(
                "unknown arch `{s}`; known: convnet4, resnet8, resnet20, efficientnet-lite0, efficientnet-lite1, efficientnet-lite2, torchvision-resnet"
            ))),
        }
    }
    /// The default input of the architecture.
    pub fn default_input(&self) -> InputSpec {
        match self {
            Arch::Convnet4 => InputSpec { channels: 1, height: 28, width: 28 },
            Arch::TorchvisionResnet | Arch::EfficientnetLite0 => InputSpec { channels: 3, height: 224, width: 224 },
            Arch::EfficientnetLite1 => InputSpec { channels: 3, height: 240, width: 240 },
            Arch::EfficientnetLite2 => InputSpec { channels: 3, height: 260, width: 260 },
            _ => InputSpec { channels: 3, height: 32, width: 32 },
        }
    }
    /// The stages of an EfficientNet-Lite architecture; `None` for the others.
    pub fn lite_stages(&self) -> Option<[LiteStage; 7]> {
        match self {
            Arch::EfficientnetLite0 => Some(LITE0_STAGES),
            Arch::EfficientnetLite1 => Some(lite_stages(1.0, 1.1)),
            Arch::EfficientnetLite2 => Some(lite_stages(1.1, 1.2)),
            _ => None,
        }
    }
    pub fn group_names(&self) -> Vec<String> {
        let g: &[&str] = match self {
            Arch::Convnet4 => &["block1", "block2", "block3", "block4", "head"],
            Arch::TorchvisionResnet => &["stem", "layer1", "layer2", "layer3", "layer4", "head"],
            Arch::EfficientnetLite0 | Arch::EfficientnetLite1 | Arch::EfficientnetLite2 => {
                &["stem", "stage1", "stage2", "stage3", "stage4", "stage5", "stage6", "stage7", "top", "head"]
            }
            _ => &["stem", "stage1", "stage2", "stage3", "head"],
        };
        g.iter().map(|s| s.to_string()).collect()
    }
}

/// A backbone: layer groups from input to output; the last group is the classifier `head`.
pub struct Model {
    pub arch: Arch,
    pub input: InputSpec,
    pub n_classes: usize,
    pub group_names: Vec<String>,
    groups: Vec<Vec<Layer>>,
    pub varmap: VarMap,
    pub device: Device,
}

impl Model {
    /// Build with seeded initialisation (He-normal convs, PyTorch-default linear, BN = identity).
    pub fn new(arch: Arch, input: InputSpec, n_classes: usize, seed: u64, device: &Device) -> Result<Self> {
        if arch == Arch::TorchvisionResnet {
            return Err(GraftError::Model("a torchvision ResNet is built from its weights file (Model::for_card)".into()));
        }
        Self::build(arch, None, input, n_classes, seed, device)
    }

    /// Build the model a card describes, for a task with `n_classes` (not yet loading weights).
    pub fn for_card(mref: &ModelRef, n_classes: usize, seed: u64, device: &Device) -> Result<Self> {
        let arch = Arch::parse(&mref.card.arch)?;
        let tv = if arch == Arch::TorchvisionResnet { Some(torchvision::TvSpec::from_file(&mref.weights)?) } else { None };
        Self::build(arch, tv, mref.card.input, n_classes, seed, device)
    }

    /// The structure of a saved model (`arch` at `input` with `n_classes`), for its weights file
    /// (a torchvision ResNet reads its layout from it); the weights are not loaded.
    pub fn for_weights(arch: Arch, input: InputSpec, n_classes: usize, weights: &Path, device: &Device) -> Result<Self> {
        let tv = if arch == Arch::TorchvisionResnet { Some(torchvision::TvSpec::from_file(weights)?) } else { None };
        Self::build(arch, tv, input, n_classes, 0, device)
    }

    /// The model a card describes, with its weights (and its own head).
    pub fn load(mref: &ModelRef, seed: u64, device: &Device) -> Result<Self> {
        let model = Self::for_card(mref, mref.card.n_classes, seed, device)?;
        model.load_weights(&mref.weights, &[])?;
        Ok(model)
    }

    fn build(arch: Arch, tv: Option<torchvision::TvSpec>, input: InputSpec, n_classes: usize, seed: u64, device: &Device) -> Result<Self> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let groups = match arch {
            Arch::Convnet4 => {
                let mut g = Vec::new();
                let mut cin = input.channels;
                let (mut h, mut w) = (input.height, input.width);
                for i in 0..4 {
                    g.push(vec![Layer::ConvBnReluPool(ConvBn::new(cin, 64, 3, 1, vb.pp(format!("block{}", i + 1)))?)]);
                    cin = 64;
                    h /= 2;
                    w /= 2;
                }
                if h == 0 || w == 0 {
                    return Err(GraftError::Model(format!(
                        "convnet4 needs inputs of at least 16x16, got {}x{}",
                        input.height, input.width
                    )));
                }
                g.push(vec![Layer::FlattenLinear(layers::head_linear(64 * h * w, n_classes, vb.pp("head").pp("fc"))?)]);
                g
            }
            Arch::Resnet8 | Arch::Resnet20 => {
                let n = if arch == Arch::Resnet8 { 1 } else { 3 };
                let mut g = vec![vec![Layer::ConvBnRelu(ConvBn::new(input.channels, 16, 3, 1, vb.pp("stem"))?)]];
                let mut cin = 16;
                for (s, cout) in [16usize, 32, 64].into_iter().enumerate() {
                    let vbs = vb.pp(format!("stage{}", s + 1));
                    let mut blocks = Vec::new();
                    for b in 0..n {
                        let stride = if b == 0 && s > 0 { 2 } else { 1 };
                        blocks.push(Layer::Block(BasicBlock::new(cin, cout, stride, vbs.pp(b))?));
                        cin = cout;
                    }
                    g.push(blocks);
                }
                g.push(vec![Layer::PoolLinear(layers::head_linear(64, n_classes, vb.pp("head").pp("fc"))?)]);
                g
            }
            Arch::EfficientnetLite0 | Arch::EfficientnetLite1 | Arch::EfficientnetLite2 => {
                let stages = arch.lite_stages().expect("a Lite arch has stages");
                let mut g = vec![vec![Layer::SameConvBn(layers::SameConvBn::new(
                    input.channels,
                    32,
                    3,
                    2,
                    false,
                    true,
                    vb.pp("_conv_stem"),
                    vb.pp("_bn0"),
                )?)]];
                let (mut cin, mut idx) = (32, 0);
                for (e, k, st, cout, r) in stages {
                    let mut stage = Vec::new();
                    for i in 0..r {
                        stage.push(Layer::MbConv(layers::MbConv::new(
                            cin,
                            cout,
                            e,
                            k,
                            if i == 0 { st } else { 1 },
                            vb.pp("_blocks").pp(idx),
                        )?));
                        cin = cout;
                        idx += 1;
                    }
                    g.push(stage);
                }
                g.push(vec![Layer::SameConvBn(layers::SameConvBn::new(cin, 1280, 1, 1, false, true, vb.pp("_conv_head"), vb.pp("_bn1"))?)]);
                g.push(vec![Layer::PoolLinear(layers::head_linear(1280, n_classes, vb.pp("_fc"))?)]);
                g
            }
            Arch::TorchvisionResnet => {
                let spec = tv.as_ref().ok_or_else(|| GraftError::Model("torchvision ResNet without a spec".into()))?;
                spec.build(input, n_classes, &vb)?
            }
        };
        let m = Model { arch, input, n_classes, group_names: arch.group_names(), groups, varmap, device: device.clone() };
        let all: Vec<String> = m.group_names.clone();
        m.reinit_groups(&all, seed)?;
        Ok(m)
    }

    pub fn n_groups(&self) -> usize {
        self.groups.len()
    }

    pub fn group_index(&self, name: &str) -> Option<usize> {
        self.group_names.iter().position(|g| g == name)
    }

    /// All variables by name (sorted), including BatchNorm running statistics.
    pub fn named_vars(&self) -> BTreeMap<String, Var> {
        let data = self.varmap.data().lock().expect("varmap lock");
        data.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// The group a variable of this model belongs to (see [`Model::group_of_arch`]).
    pub fn group_of<'a>(&self, name: &'a str) -> &'a str {
        Self::group_of_arch(self.arch, name)
    }

    /// The group a variable of an `arch` model belongs to: its first path component
    /// (torchvision's `conv1`/`bn1` are the stem and `fc` the head; an EfficientNet's
    /// `_blocks.N` maps to its stage by the architecture's block counts).
    pub fn group_of_arch(arch: Arch, name: &str) -> &str {
        let mut parts = name.split('.');
        match parts.next().unwrap_or(name) {
            "conv1" | "bn1" | "_conv_stem" | "_bn0" => "stem",
            "fc" | "_fc" => "head",
            "_conv_head" | "_bn1" => "top",
            "_blocks" => {
                // EfficientNet-Lite: block index -> stage
                let i: usize = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
                let mut end = 0;
                for (s, st) in arch.lite_stages().unwrap_or(LITE0_STAGES).iter().enumerate() {
                    end += st.4;
                    if i < end {
                        return ["stage1", "stage2", "stage3", "stage4", "stage5", "stage6", "stage7"][s];
                    }
                }
                "stage7"
            }
            g => g,
        }
    }

    pub fn is_buffer(name: &str) -> bool {
        name.ends_with("running_mean") || name.ends_with("running_var")
    }

    /// Trainable parameters of a group (no BatchNorm running statistics), sorted by name.
    pub fn group_params(&self, group: &str) -> Vec<(String, Var)> {
        self.named_vars().into_iter().filter(|(k, _)| self.group_of(k) == group && !Self::is_buffer(k)).collect()
    }

    pub fn param_count(&self) -> usize {
        self.named_vars().iter().filter(|(k, _)| !Self::is_buffer(k)).map(|(_, v)| v.elem_count()).sum()
    }

    /// Re-initialise the named groups from `seed`; each variable draws from its own stream.
    pub fn reinit_groups(&self, groups: &[String], seed: u64) -> Result<()> {
        for (name, var) in self.named_vars() {
            if !groups.iter().any(|g| g == self.group_of(&name)) {
                continue;
            }
            let dims = var.dims().to_vec();
            let vals = init_values(&name, &dims, seed);
            var.set(&Tensor::from_vec(vals, dims, &self.device)?)?;
        }
        Ok(())
    }

    /// Forward through groups `0..=upto`, with BatchNorm in train mode for groups whose flag is
    /// set (frozen groups run in eval mode). Returns each group's output.
    /// Like every forward function here, it returns float32 (in mixed precision the
    /// activations inside may be bfloat16: [`crate::kernels::activation_scope`]).
    pub fn forward_groups(&self, x: &Tensor, train: &[bool], upto: usize) -> Result<Vec<Tensor>> {
        let _scope = crate::kernels::activation_scope();
        let mut outs = Vec::with_capacity(upto + 1);
        let mut h = x.clone();
        for (i, g) in self.groups.iter().enumerate().take(upto + 1) {
            let t = train.get(i).copied().unwrap_or(false);
            for l in g {
                h = l.forward_t(&h, t)?;
            }
            outs.push(h.to_dtype(candle_core::DType::F32)?);
        }
        Ok(outs)
    }

    /// Forward `x` (the output of group `from - 1`, or the image for 0) through groups
    /// `from..=to` with BatchNorm in train mode.
    pub fn forward_from(&self, x: &Tensor, from: usize, to: usize) -> Result<Tensor> {
        let _scope = crate::kernels::activation_scope();
        let mut h = x.clone();
        for g in &self.groups[from..=to] {
            for l in g {
                h = l.forward_t(&h, true)?;
            }
        }
        Ok(h.to_dtype(candle_core::DType::F32)?)
    }

    /// `h`, the output of group `span.start - 1` (the image for 0), through the groups in
    /// `span`, with per-group train flags (indexed from group 0; a missing flag is eval mode).
    pub fn forward_span(&self, h: &Tensor, span: std::ops::Range<usize>, train: &[bool]) -> Result<Tensor> {
        let _scope = crate::kernels::activation_scope();
        let mut h = h.clone();
        for i in span {
            let t = train.get(i).copied().unwrap_or(false);
            for l in &self.groups[i] {
                h = l.forward_t(&h, t)?;
            }
        }
        Ok(h.to_dtype(candle_core::DType::F32)?)
    }

    /// Logits, with per-group train flags.
    pub fn forward(&self, x: &Tensor, train: &[bool]) -> Result<Tensor> {
        self.forward_span(x, 0..self.groups.len(), train)
    }

    /// Pooled features (global average over space) at group `upto`, all in eval mode.
    pub fn features(&self, x: &Tensor, upto: usize) -> Result<Tensor> {
        Ok(self.features_at(x, &[upto])?.remove(0))
    }

    /// Pooled features at several groups (each `<` [`Model::n_groups`]) from one eval-mode
    /// pass, in the order asked.
    pub fn features_at(&self, x: &Tensor, at: &[usize]) -> Result<Vec<Tensor>> {
        let _scope = crate::kernels::activation_scope();
        let upto = at.iter().copied().max().unwrap_or(0);
        let mut pooled = vec![None; upto + 1];
        let mut h = x.clone();
        for (i, g) in self.groups.iter().enumerate().take(upto + 1) {
            for l in g {
                h = l.forward_t(&h, false)?;
            }
            if at.contains(&i) {
                pooled[i] = Some(pool(&h)?);
            }
        }
        Ok(at.iter().map(|&i| pooled[i].clone().expect("pooled")).collect())
    }

    /// Save all variables (including BatchNorm statistics) as safetensors.
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::util::save_tensors(path, self.named_vars().into_iter().map(|(k, v)| (k, v.as_tensor().clone()))).map(drop)
    }

    /// Load weights from a safetensors file, skipping the groups in `skip` (e.g. a head whose
    /// class count differs). A missing or misshapen tensor names the key and what was expected.
    pub fn load_weights(&self, path: &Path, skip: &[String]) -> Result<()> {
        let tensors = candle_core::safetensors::load(path, &self.device)
            .map_err(|e| GraftError::Model(format!("{}: cannot read safetensors: {e}", path.display())))?;
        for (name, var) in self.named_vars() {
            if skip.iter().any(|g| g == self.group_of(&name)) {
                continue;
            }
            let t = tensors.get(&name).ok_or_else(|| {
                GraftError::Model(format!(
                    "{}: missing tensor `{name}` (expected shape {:?}); the file does not match arch {}",
                    path.display(),
                    var.dims(),
                    self.arch.name()
                ))
            })?;
            if t.dims() != var.dims() {
                return Err(GraftError::Model(format!(
                    "{}: tensor `{name}` has shape {:?}, expected {:?} for arch {}",
                    path.display(),
                    t.dims(),
                    var.dims(),
                    self.arch.name()
                )));
            }
            var.set(&t.to_dtype(DType::F32)?)?;
        }
        Ok(())
    }

    /// Every variable outside the head (BatchNorm running statistics included), copied: what an
    /// unsupervised pretraining step changes, so that [`Model::set_vars`] can replay it.
    pub fn body_state(&self) -> Result<BTreeMap<String, Tensor>> {
        self.copied(|k| self.group_of(k) != "head")
    }

    /// Every variable (BatchNorm running statistics included), copied, for [`Model::set_vars`].
    pub fn state(&self) -> Result<BTreeMap<String, Tensor>> {
        self.copied(|_| true)
    }

    /// Copies of the variables whose names `keep` admits.
    fn copied(&self, keep: impl Fn(&str) -> bool) -> Result<BTreeMap<String, Tensor>> {
        self.named_vars().into_iter().filter(|(k, _)| keep(k)).map(|(k, v)| Ok((k, v.as_tensor().copy()?))).collect()
    }

    /// Set the named variables (as [`Model::body_state`] returned them) to the given values.
    pub fn set_vars(&self, state: &BTreeMap<String, Tensor>) -> Result<()> {
        let vars = self.named_vars();
        for (k, t) in state {
            let v = vars.get(k).ok_or_else(|| GraftError::Model(format!("no variable `{k}` in arch {}", self.arch.name())))?;
            if v.dims() != t.dims() {
                return Err(GraftError::Model(format!("variable `{k}` has shape {:?}, the state gives {:?}", v.dims(), t.dims())));
            }
            v.set(t)?;
        }
        Ok(())
    }

    /// What the head's linear layer reads for images `x`: the last body group's output, pooled
    /// (or, for a convnet4, flattened) as the head does; per-group train flags as
    /// [`Model::forward_span`] (a group in train mode updates its BatchNorm running statistics).
    pub fn head_inputs(&self, x: &Tensor, train: &[bool]) -> Result<Tensor> {
        let n = self.groups.len();
        let h = self.forward_span(x, 0..n - 1, train)?;
        Ok(match self.groups[n - 1].last() {
            Some(Layer::FlattenLinear(_)) => h.flatten_from(1)?,
            _ => pool(&h)?,
        })
    }

    /// Set the head's linear layer: `weight` (classes × features) and `bias` (classes).
    pub fn set_head(&self, weight: &Tensor, bias: &Tensor) -> Result<()> {
        for (name, var) in self.group_params("head") {
            let t = if name.ends_with("weight") { weight } else { bias };
            if var.dims() != t.dims() {
                return Err(GraftError::Model(format!("head variable `{name}` has shape {:?}, given {:?}", var.dims(), t.dims())));
            }
            var.set(&t.to_dtype(DType::F32)?.to_device(&self.device)?)?;
        }
        Ok(())
    }

    /// Snapshot of every trainable parameter (for weight-change measures and L2-SP anchors).
    pub fn snapshot(&self) -> Result<BTreeMap<String, Tensor>> {
        self.copied(|k| !Self::is_buffer(k))
    }

    /// FLOPs (2 x multiply-adds) of one forward pass for one image: convolutions and linear layers.
    pub fn forward_flops(&self) -> u64 {
        let (mut h, mut w) = (self.input.height, self.input.width);
        let mut total = 0u64;
        let conv = |cin: usize, cout: usize, k: usize, ho: usize, wo: usize| 2 * (cin * cout * k * k * ho * wo) as u64;
        for g in &self.groups {
            for l in g {
                match l {
                    Layer::ConvBnRelu(c) | Layer::ConvBnReluPool(c) => {
                        let d = c.conv.weight.dims();
                        let (ho, wo) = ((h + 2 * c.conv.pad - d[2]) / c.conv.stride + 1, (w + 2 * c.conv.pad - d[3]) / c.conv.stride + 1);
                        total += conv(d[1], d[0], d[2], ho, wo);
                        h = ho;
                        w = wo;
                        if matches!(l, Layer::ConvBnReluPool(_)) {
                            h /= 2;
                            w /= 2;
                        }
                    }
                    Layer::Block(b) => {
                        let d1 = b.conv1.weight.dims();
                        let s = b.conv1.stride;
                        let (ho, wo) = ((h + 2 - 3) / s + 1, (w + 2 - 3) / s + 1);
                        total += conv(d1[1], d1[0], 3, ho, wo);
                        let d2 = b.conv2.weight.dims();
                        total += conv(d2[1], d2[0], 3, ho, wo);
                        if let Some(dn) = &b.down {
                            let dd = dn.conv.weight.dims();
                            total += conv(dd[1], dd[0], 1, ho, wo);
                        }
                        h = ho;
                        w = wo;
                    }
                    Layer::SameConvBn(c) => {
                        let d = c.weight.dims();
                        let (ho, wo) = (h.div_ceil(c.stride), w.div_ceil(c.stride));
                        total += if c.depthwise { conv(1, d[0], d[2], ho, wo) } else { conv(d[1], d[0], d[2], ho, wo) };
                        h = ho;
                        w = wo;
                    }
                    Layer::MbConv(b) => {
                        if let Some(e) = &b.expand {
                            let d = e.weight.dims();
                            total += conv(d[1], d[0], 1, h, w);
                        }
                        let d = b.depthwise.weight.dims();
                        let (ho, wo) = (h.div_ceil(b.depthwise.stride), w.div_ceil(b.depthwise.stride));
                        total += conv(1, d[0], d[2], ho, wo);
                        let d = b.project.weight.dims();
                        total += conv(d[1], d[0], 1, ho, wo);
                        h = ho;
                        w = wo;
                    }
                    Layer::ConvBnReluPool3(c) => {
                        let d = c.conv.weight.dims();
                        let (ho, wo) = ((h + 2 * c.conv.pad - d[2]) / c.conv.stride + 1, (w + 2 * c.conv.pad - d[3]) / c.conv.stride + 1);
                        total += conv(d[1], d[0], d[2], ho, wo);
                        h = (ho + 2 - 3) / 2 + 1;
                        w = (wo + 2 - 3) / 2 + 1;
                    }
                    Layer::Bottleneck(b) => {
                        let s = b.c2.conv.stride;
                        let (ho, wo) = ((h + 2 - 3) / s + 1, (w + 2 - 3) / s + 1);
                        for (cb, oh, ow) in [(&b.c1, h, w), (&b.c2, ho, wo), (&b.c3, ho, wo)] {
                            let d = cb.conv.weight.dims();
                            total += conv(d[1], d[0], d[2], oh, ow);
                        }
                        if let Some(dn) = &b.down {
                            let dd = dn.conv.weight.dims();
                            total += conv(dd[1], dd[0], 1, ho, wo);
                        }
                        h = ho;
                        w = wo;
                    }
                    Layer::PoolLinear(lin) | Layer::FlattenLinear(lin) => {
                        let d = lin.weight().dims();
                        total += 2 * (d[0] * d[1]) as u64;
                    }
                }
            }
        }
        total
    }

    /// sha256 over every variable (name, then little-endian f32 values), in name order.
    pub fn weights_sha256(&self) -> Result<String> {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for (k, v) in self.named_vars() {
            h.update(k.as_bytes());
            for x in v.as_tensor().flatten_all()?.to_vec1::<f32>()? {
                h.update(x.to_le_bytes());
            }
        }
        Ok(hex::encode(h.finalize()))
    }

    /// The first variable (by name) holding a NaN or infinite value, if any.
    pub fn first_non_finite(&self) -> Result<Option<String>> {
        for (k, v) in self.named_vars() {
            if v.as_tensor().flatten_all()?.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?.iter().any(|x| !x.is_finite()) {
                return Ok(Some(k));
            }
        }
        Ok(None)
    }

    /// ‖w_end − w_start‖ / ‖w_start‖ over a group's trainable parameters.
    pub fn weight_change(&self, group: &str, start: &BTreeMap<String, Tensor>) -> Result<f64> {
        let (mut num, mut den) = (0f64, 0f64);
        for (k, v) in self.group_params(group) {
            let s = &start[&k];
            num += (v.as_tensor() - s)?.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
            den += s.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
        }
        Ok(if den > 0.0 { (num / den).sqrt() } else { num.sqrt() })
    }
}

/// Global average pool for 4-D activations; 2-D pass through.
/// float32 either way (bfloat16 activations are pooled in float32).
pub fn pool(h: &Tensor) -> candle_core::Result<Tensor> {
    let h = h.to_dtype(candle_core::DType::F32)?;
    if h.rank() == 4 {
        h.mean((2, 3))
    } else {
        Ok(h)
    }
}

/// Seeded initial values of one backbone variable (each variable draws from its own stream
/// `init-<name>` of `seed`): BatchNorm running statistics 0/1, biases 0, BatchNorm scales 1,
/// convolution kernels He-normal over fan-out (as torchvision's ResNets), dense weights uniform
/// ±1/√fan-in. Pretraining's decoders and heads use their own (`pretrain::seed_vars`).
fn init_values(name: &str, dims: &[usize], seed: u64) -> Vec<f32> {
    let n: usize = dims.iter().product();
    let mut rng = rng_for(seed, &format!("init-{name}"));
    if name.ends_with("running_var") {
        vec![1.0; n]
    } else if name.ends_with("running_mean") || name.ends_with("bias") {
        vec![0.0; n]
    } else if dims.len() == 1 {
        vec![1.0; n] // BatchNorm scale
    } else if dims.len() == 4 {
        let fan_out = dims[0] * dims[2] * dims[3];
        let d = Normal::new(0.0f32, (2.0 / fan_out as f32).sqrt()).expect("std > 0");
        (0..n).map(|_| d.sample(&mut rng)).collect()
    } else {
        let fan_in = dims[1];
        let b = 1.0 / (fan_in as f32).sqrt();
        let d = Uniform::new_inclusive(-b, b).expect("bound > 0");
        (0..n).map(|_| d.sample(&mut rng)).collect()
    }
}
