//! The building blocks of graft's backbones, as plain structs over graft's CPU kernels and candle-nn.
use crate::kernels::BatchNorm;
use candle_core::{Result, Tensor};
use candle_nn::{linear, Linear, VarBuilder};

pub fn bn(c: usize, vb: VarBuilder) -> Result<BatchNorm> {
    BatchNorm::new(c, vb)
}

/// A square convolution without bias (padding k/2), run by graft's im2col + GEMM kernel on the CPU.
#[derive(Debug, Clone)]
pub struct Conv2d {
    pub weight: Tensor,
    pub stride: usize,
    pub pad: usize,
}

impl Conv2d {
    /// Outside train mode (frozen or evaluating) the weight is detached, so no weight gradient
    /// is computed for it.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let w = if train { self.weight.clone() } else { self.weight.detach() };
        crate::kernels::conv2d(x, &w, self.stride, self.pad)
    }

    /// `act(bn(conv(x)))`; outside train mode, when nothing needs a gradient, as one fused pass
    /// (the same bits).
    pub fn forward_bn_act(&self, bn: &BatchNorm, x: &Tensor, train: bool, act: crate::kernels::Act) -> Result<Tensor> {
        if !train {
            if let Some(y) = crate::kernels::conv2d_bn_eval(x, &self.weight.detach(), self.stride, self.pad, bn, act)? {
                return Ok(y);
            }
        }
        bn.forward_act(&self.forward_t(x, train)?, train, act)
    }
}

pub fn conv(cin: usize, cout: usize, k: usize, stride: usize, vb: VarBuilder) -> Result<Conv2d> {
    let weight = vb.get_with_hints((cout, cin, k, k), "weight", candle_nn::init::DEFAULT_KAIMING_NORMAL)?;
    Ok(Conv2d { weight, stride, pad: k / 2 })
}

/// conv -> BN -> (ReLU)
#[derive(Debug, Clone)]
pub struct ConvBn {
    pub conv: Conv2d,
    pub bn: BatchNorm,
}

impl ConvBn {
    pub fn from_parts(cin: usize, cout: usize, k: usize, stride: usize, conv_vb: VarBuilder, bn_vb: VarBuilder) -> Result<Self> {
        Ok(ConvBn { conv: conv(cin, cout, k, stride, conv_vb)?, bn: bn(cout, bn_vb)? })
    }
    pub fn new(cin: usize, cout: usize, k: usize, stride: usize, vb: VarBuilder) -> Result<Self> {
        Ok(ConvBn { conv: conv(cin, cout, k, stride, vb.pp("conv"))?, bn: bn(cout, vb.pp("bn"))? })
    }
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.conv.forward_bn_act(&self.bn, x, train, crate::kernels::Act::Identity)
    }
    /// conv → BatchNorm → ReLU, the ReLU fused into the BatchNorm kernel.
    pub fn forward_t_relu(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.conv.forward_bn_act(&self.bn, x, train, crate::kernels::Act::Relu)
    }
}

/// The basic residual block of He et al. (2016): two 3x3 conv-BN, identity or 1x1 projection shortcut.
#[derive(Debug, Clone)]
pub struct BasicBlock {
    pub conv1: Conv2d,
    pub bn1: BatchNorm,
    pub conv2: Conv2d,
    pub bn2: BatchNorm,
    pub down: Option<ConvBn>,
}

impl BasicBlock {
    pub fn new(cin: usize, cout: usize, stride: usize, vb: VarBuilder) -> Result<Self> {
        Self::with_names(cin, cout, stride, false, vb)
    }
    /// `torchvision`: the shortcut is named `downsample.0` / `downsample.1` as torchvision names it.
    pub fn with_names(cin: usize, cout: usize, stride: usize, torchvision: bool, vb: VarBuilder) -> Result<Self> {
        let down = if stride != 1 || cin != cout {
            Some(if torchvision {
                ConvBn::from_parts(cin, cout, 1, stride, vb.pp("downsample").pp("0"), vb.pp("downsample").pp("1"))?
            } else {
                ConvBn::new(cin, cout, 1, stride, vb.pp("down"))?
            })
        } else {
            None
        };
        Ok(BasicBlock {
            conv1: conv(cin, cout, 3, stride, vb.pp("conv1"))?,
            bn1: bn(cout, vb.pp("bn1"))?,
            conv2: conv(cout, cout, 3, 1, vb.pp("conv2"))?,
            bn2: bn(cout, vb.pp("bn2"))?,
            down,
        })
    }
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let y = self.conv1.forward_bn_act(&self.bn1, x, train, crate::kernels::Act::Relu)?;
        let s = match &self.down {
            Some(d) => d.forward_t(x, train)?,
            None => x.clone(),
        };
        if !train {
            // eval mode: the second convolution, its BatchNorm and the residual join in one pass
            let w = self.conv2.weight.detach();
            if let Some(out) = crate::kernels::conv2d_bn_add_relu_eval(&y, &w, self.conv2.stride, self.conv2.pad, &self.bn2, &s)? {
                return Ok(out);
            }
        }
        let y = self.conv2.forward_bn_act(&self.bn2, &y, train, crate::kernels::Act::Identity)?;
        crate::kernels::add_relu(&y, &s)
    }
}

/// The bottleneck block of torchvision's ResNet-50/101/152 (stride on the 3x3 convolution).
#[derive(Debug, Clone)]
pub struct Bottleneck {
    pub c1: ConvBn,
    pub c2: ConvBn,
    pub c3: ConvBn,
    pub down: Option<ConvBn>,
}

impl Bottleneck {
    pub fn new(cin: usize, width: usize, cout: usize, stride: usize, has_down: bool, vb: VarBuilder) -> Result<Self> {
        let down = if has_down {
            Some(ConvBn::from_parts(cin, cout, 1, stride, vb.pp("downsample").pp("0"), vb.pp("downsample").pp("1"))?)
        } else {
            None
        };
        Ok(Bottleneck {
            c1: ConvBn::from_parts(cin, width, 1, 1, vb.pp("conv1"), vb.pp("bn1"))?,
            c2: ConvBn::from_parts(width, width, 3, stride, vb.pp("conv2"), vb.pp("bn2"))?,
            c3: ConvBn::from_parts(width, cout, 1, 1, vb.pp("conv3"), vb.pp("bn3"))?,
            down,
        })
    }
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let y = self.c1.forward_t_relu(x, train)?;
        let y = self.c2.forward_t_relu(&y, train)?;
        let y = self.c3.forward_t(&y, train)?;
        let s = match &self.down {
            Some(d) => d.forward_t(x, train)?,
            None => x.clone(),
        };
        crate::kernels::add_relu(&y, &s)
    }
}

/// A convolution with TensorFlow "same" padding (as EfficientNet's converted weights need),
/// followed by BatchNorm (eps 1e-3) and optionally ReLU6; depthwise when `depthwise`.
#[derive(Debug, Clone)]
pub struct SameConvBn {
    pub weight: Tensor,
    pub stride: usize,
    pub depthwise: bool,
    pub bn: BatchNorm,
    pub relu6: bool,
}

impl SameConvBn {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        depthwise: bool,
        relu6: bool,
        conv_vb: VarBuilder,
        bn_vb: VarBuilder,
    ) -> Result<Self> {
        let shape = if depthwise { (cout, 1, k, k) } else { (cout, cin, k, k) };
        let weight = conv_vb.get_with_hints(shape, "weight", candle_nn::init::DEFAULT_KAIMING_NORMAL)?;
        Ok(SameConvBn { weight, stride, depthwise, bn: BatchNorm::with_eps(cout, 1e-3, bn_vb)?, relu6 })
    }
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let w = if train { self.weight.clone() } else { self.weight.detach() };
        let k = w.dim(2)?;
        let act = if self.relu6 { crate::kernels::Act::Relu6 } else { crate::kernels::Act::Identity };
        if self.depthwise {
            // the padding is built into the depthwise kernel (no padded copy of the input)
            let y = crate::kernels::depthwise_conv2d_same(x, &w, self.stride)?;
            return self.bn.forward_act(&y, train, act);
        }
        // TensorFlow "same" padding as an explicit border (none for a 1x1, stride-1 convolution)
        let xp = if k > 1 || self.stride > 1 { crate::kernels::pad_same(x, k, self.stride)? } else { x.clone() };
        if !train {
            // eval mode: convolution, BatchNorm and activation fused when nothing needs a gradient
            if let Some(y) = crate::kernels::conv2d_bn_eval(&xp, &w, self.stride, 0, &self.bn, act)? {
                return Ok(y);
            }
        }
        self.bn.forward_act(&crate::kernels::conv2d(&xp, &w, self.stride, 0)?, train, act)
    }
}

/// EfficientNet's inverted-residual block without squeeze-excitation (the Lite variants):
/// 1x1 expansion, depthwise k x k, 1x1 projection, identity skip when shapes allow.
#[derive(Debug, Clone)]
pub struct MbConv {
    pub expand: Option<SameConvBn>,
    pub depthwise: SameConvBn,
    pub project: SameConvBn,
    pub skip: bool,
}

impl MbConv {
    pub fn new(cin: usize, cout: usize, expand: usize, k: usize, stride: usize, vb: VarBuilder) -> Result<Self> {
        let mid = cin * expand;
        let e = if expand != 1 { Some(SameConvBn::new(cin, mid, 1, 1, false, true, vb.pp("_expand_conv"), vb.pp("_bn0"))?) } else { None };
        Ok(MbConv {
            expand: e,
            depthwise: SameConvBn::new(mid, mid, k, stride, true, true, vb.pp("_depthwise_conv"), vb.pp("_bn1"))?,
            project: SameConvBn::new(mid, cout, 1, 1, false, false, vb.pp("_project_conv"), vb.pp("_bn2"))?,
            skip: stride == 1 && cin == cout,
        })
    }
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut y = x.clone();
        if let Some(e) = &self.expand {
            y = e.forward_t(&y, train)?;
        }
        y = self.project.forward_t(&self.depthwise.forward_t(&y, train)?, train)?;
        if self.skip {
            crate::kernels::add_act(&y, x)
        } else {
            Ok(y)
        }
    }
}

/// One layer of a group.
#[derive(Debug, Clone)]
pub enum Layer {
    /// conv-BN-ReLU
    ConvBnRelu(ConvBn),
    /// conv-BN-ReLU then 2x2 max-pool
    ConvBnReluPool(ConvBn),
    Block(BasicBlock),
    Bottleneck(Bottleneck),
    SameConvBn(SameConvBn),
    MbConv(MbConv),
    /// conv-BN-ReLU then 3x3 max-pool, stride 2, padding 1 (torchvision's stem).
    ConvBnReluPool3(ConvBn),
    /// Global average pool, then a linear classifier.
    PoolLinear(Linear),
    /// Flatten, then a linear classifier.
    FlattenLinear(Linear),
}

impl Layer {
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        match self {
            Layer::ConvBnRelu(c) => c.forward_t_relu(x, train),
            Layer::ConvBnReluPool(c) => crate::kernels::max_pool2(&c.forward_t_relu(x, train)?),
            Layer::Block(b) => b.forward_t(x, train),
            Layer::Bottleneck(b) => b.forward_t(x, train),
            Layer::SameConvBn(c) => c.forward_t(x, train),
            Layer::MbConv(b) => b.forward_t(x, train),
            Layer::ConvBnReluPool3(c) => crate::kernels::max_pool(&c.forward_t_relu(x, train)?, 3, 2, 1),
            Layer::PoolLinear(l) => crate::kernels::linear_forward(&linear_t(l, train), &super::pool(x)?),
            Layer::FlattenLinear(l) => crate::kernels::linear_forward(&linear_t(l, train), &x.flatten_from(1)?),
        }
    }
}

/// The linear layer itself in train mode, a detached copy otherwise.
fn linear_t(l: &Linear, train: bool) -> Linear {
    if train {
        l.clone()
    } else {
        Linear::new(l.weight().detach(), l.bias().map(|b| b.detach()))
    }
}

pub fn head_linear(cin: usize, n: usize, vb: VarBuilder) -> Result<Linear> {
    linear(cin, n, vb)
}
