//! Bring-your-own torchvision ResNets: a safetensors file with torchvision's key names
//! (`conv1`, `bn1`, `layer1.0.conv1.weight`, ..., `fc`) becomes a graft backbone with groups
//! stem, layer1..layer4, head. Depth (blocks per layer), block type (basic or bottleneck) and
//! widths are read from the tensor shapes, so ResNet-18/34/50/101/152 and narrower variants load.
use super::layers::{head_linear, BasicBlock, Bottleneck, ConvBn, Layer};
use crate::data::InputSpec;
use crate::error::{GraftError, Result};
use candle_nn::VarBuilder;
use std::collections::HashMap;
use std::path::Path;

#[derive(Debug, Clone, PartialEq)]
pub struct TvSpec {
    pub in_channels: usize,
    pub stem: usize,
    pub bottleneck: bool,
    /// Blocks per layer.
    pub blocks: [usize; 4],
    /// Width of each layer's blocks (output channels of a basic block; inner width of a bottleneck).
    pub widths: [usize; 4],
    /// Output channels of each layer.
    pub outs: [usize; 4],
    pub n_classes: usize,
}

fn shapes(path: &Path) -> Result<HashMap<String, Vec<usize>>> {
    let bytes = std::fs::read(path).map_err(|e| GraftError::io(path, e))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| GraftError::Model(format!("{}: not a safetensors file: {e}", path.display())))?;
    Ok(st.tensors().into_iter().map(|(k, v)| (k, v.shape().to_vec())).collect())
}

impl TvSpec {
    pub fn from_file(path: &Path) -> Result<Self> {
        let sh = shapes(path)?;
        let get = |k: &str, rank: usize| -> Result<Vec<usize>> {
            match sh.get(k) {
                Some(s) if s.len() == rank => Ok(s.clone()),
                Some(s) => Err(GraftError::Model(format!("{}: tensor `{k}` has shape {s:?}, expected rank {rank}", path.display()))),
                None => Err(GraftError::Model(format!(
                    "{}: missing tensor `{k}`; a torchvision ResNet file needs conv1, bn1, layer1..layer4 and fc",
                    path.display()
                ))),
            }
        };
        let c1 = get("conv1.weight", 4)?;
        if c1[2] != 7 || c1[3] != 7 {
            return Err(GraftError::Model(format!("{}: tensor `conv1.weight` has shape {c1:?}, expected a 7x7 kernel", path.display())));
        }
        let bottleneck = sh.contains_key("layer1.0.conv3.weight");
        let mut blocks = [0; 4];
        let mut widths = [0; 4];
        let mut outs = [0; 4];
        for l in 0..4 {
            while sh.contains_key(&format!("layer{}.{}.conv1.weight", l + 1, blocks[l])) {
                blocks[l] += 1;
            }
            if blocks[l] == 0 {
                return Err(GraftError::Model(format!("{}: missing tensor `layer{}.0.conv1.weight`", path.display(), l + 1)));
            }
            widths[l] = get(&format!("layer{}.0.conv1.weight", l + 1), 4)?[0];
            outs[l] = get(&format!("layer{}.0.{}.weight", l + 1, if bottleneck { "conv3" } else { "conv2" }), 4)?[0];
        }
        let fc = get("fc.weight", 2)?;
        if fc[1] != outs[3] {
            return Err(GraftError::Model(format!("{}: tensor `fc.weight` has shape {fc:?}, expected [_, {}]", path.display(), outs[3])));
        }
        Ok(TvSpec { in_channels: c1[1], stem: c1[0], bottleneck, blocks, widths, outs, n_classes: fc[0] })
    }

    /// Standard name for the depth, e.g. `resnet18`, or `resnet-custom`.
    pub fn name(&self) -> String {
        match (self.bottleneck, self.blocks) {
            (false, [2, 2, 2, 2]) => "resnet18".into(),
            (false, [3, 4, 6, 3]) => "resnet34".into(),
            (true, [3, 4, 6, 3]) => "resnet50".into(),
            (true, [3, 4, 23, 3]) => "resnet101".into(),
            (true, [3, 8, 36, 3]) => "resnet152".into(),
            _ => format!("resnet-{}-{:?}", if self.bottleneck { "bottleneck" } else { "basic" }, self.blocks),
        }
    }

    pub fn build(&self, input: InputSpec, n_classes: usize, vb: &VarBuilder) -> Result<Vec<Vec<Layer>>> {
        if input.channels != self.in_channels {
            return Err(GraftError::Model(format!(
                "the card's input has {} channels but conv1 expects {}",
                input.channels, self.in_channels
            )));
        }
        let stem = ConvBn::from_parts(self.in_channels, self.stem, 7, 2, vb.pp("conv1"), vb.pp("bn1"))?;
        let mut g = vec![vec![Layer::ConvBnReluPool3(stem)]];
        let mut cin = self.stem;
        for l in 0..4 {
            let vbl = vb.pp(format!("layer{}", l + 1));
            let mut layer = Vec::new();
            for b in 0..self.blocks[l] {
                let stride = if b == 0 && l > 0 { 2 } else { 1 };
                if self.bottleneck {
                    let has_down = b == 0 && (stride != 1 || cin != self.outs[l]);
                    layer.push(Layer::Bottleneck(Bottleneck::new(cin, self.widths[l], self.outs[l], stride, has_down, vbl.pp(b))?));
                } else {
                    layer.push(Layer::Block(BasicBlock::with_names(cin, self.outs[l], stride, true, vbl.pp(b))?));
                }
                cin = self.outs[l];
            }
            g.push(layer);
        }
        g.push(vec![Layer::PoolLinear(head_linear(cin, n_classes, vb.pp("fc"))?)]);
        Ok(g)
    }
}
