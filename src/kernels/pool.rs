//! 2x2 max-pool with stride 2 (floor), forward and backward. candle 0.11's max-pool gradient
//! routes through nearest upsampling, which misplaces gradients when the input size is odd
//! (7x7 -> 3x3 in convnet4): caught by the PyTorch golden test.
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

fn slice<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("max-pool: input must be contiguous"),
    }
}

/// Index (within the plane) of the maximum of window (oy, ox); the first one on ties.
#[inline]
fn argmax(p: &[f32], w: usize, oy: usize, ox: usize) -> usize {
    let mut best = (2 * oy) * w + 2 * ox;
    for (dy, dx) in [(0, 1), (1, 0), (1, 1)] {
        let i = (2 * oy + dy) * w + 2 * ox + dx;
        if p[i] > p[best] {
            best = i;
        }
    }
    best
}

struct MaxPool2;

impl CustomOp1 for MaxPool2 {
    fn name(&self) -> &'static str {
        "graft-maxpool2"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = l.shape().dims4()?;
        let x = slice(s, l)?;
        let (ho, wo) = (h / 2, w / 2);
        let mut y = vec![0f32; b * c * ho * wo];
        y.par_chunks_mut(ho * wo).enumerate().for_each(|(pi, yp)| {
            let p = &x[pi * h * w..(pi + 1) * h * w];
            for oy in 0..ho {
                for ox in 0..wo {
                    yp[oy * wo + ox] = p[argmax(p, w, oy, ox)];
                }
            }
        });
        Ok((CpuStorage::F32(y), Shape::from((b, c, ho, wo))))
    }
    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            arg.apply_op2_no_bwd(&grad.contiguous()?, &MaxPool2Bwd)?,
        ))
    }
}

struct MaxPool2Bwd;

impl CustomOp2 for MaxPool2Bwd {
    fn name(&self) -> &'static str {
        "graft-maxpool2-bwd"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = l1.shape().dims4()?;
        let x = slice(s1, l1)?;
        let g = slice(s2, l2)?;
        let (ho, wo) = (h / 2, w / 2);
        let mut dx = vec![0f32; b * c * h * w];
        dx.par_chunks_mut(h * w).enumerate().for_each(|(pi, dp)| {
            let p = &x[pi * h * w..(pi + 1) * h * w];
            let gp = &g[pi * ho * wo..(pi + 1) * ho * wo];
            for oy in 0..ho {
                for ox in 0..wo {
                    dp[argmax(p, w, oy, ox)] += gp[oy * wo + ox];
                }
            }
        });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

/// 2x2 max-pool, stride 2; graft's kernel on CPU, candle's elsewhere.
pub fn max_pool2(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu()
        && x.dtype() == candle_core::DType::F32
        && !super::use_reference_kernels()
    {
        x.contiguous()?.apply_op1(MaxPool2)
    } else {
        x.max_pool2d(2)
    }
}
