//! Depthwise 2-D convolution (groups = channels, one filter per channel, no padding: callers
//! pad explicitly, e.g. TensorFlow-style "same"), forward and both gradients, parallel over
//! planes (forward, input gradient) and channels (weight gradient), in a fixed order.
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

fn slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    super::contiguous_f32(s, l, "depthwise conv", what)
}

#[derive(Clone, Copy)]
struct G {
    b: usize,
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    s: usize,
    ho: usize,
    wo: usize,
}

fn geom(xd: &[usize], k: usize, s: usize) -> Result<G> {
    if xd.len() != 4 || xd[2] < k || xd[3] < k {
        candle_core::bail!("depthwise conv: input {xd:?} too small for kernel {k}");
    }
    Ok(G { b: xd[0], c: xd[1], h: xd[2], w: xd[3], k, s, ho: (xd[2] - k) / s + 1, wo: (xd[3] - k) / s + 1 })
}

struct DwFwd {
    s: usize,
}

impl CustomOp2 for DwFwd {
    fn name(&self) -> &'static str {
        "graft-depthwise-conv"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let wd = l2.dims();
        let g = geom(l1.dims(), wd[2], self.s)?;
        if wd[0] != g.c || wd[1] != 1 || wd[3] != g.k {
            candle_core::bail!("depthwise conv: weight {wd:?} does not match {} channels", g.c);
        }
        let x = slice(s1, l1, "input")?;
        let w = slice(s2, l2, "weight")?;
        let mut y = vec![0f32; g.b * g.c * g.ho * g.wo];
        y.par_chunks_mut(g.ho * g.wo).enumerate().for_each(|(pi, yp)| {
            let c = pi % g.c;
            let xp = &x[pi * g.h * g.w..(pi + 1) * g.h * g.w];
            let wk = &w[c * g.k * g.k..(c + 1) * g.k * g.k];
            for oy in 0..g.ho {
                let yr = &mut yp[oy * g.wo..(oy + 1) * g.wo];
                for ky in 0..g.k {
                    let xr = &xp[(oy * g.s + ky) * g.w..];
                    for kx in 0..g.k {
                        let wv = wk[ky * g.k + kx];
                        for (ox, o) in yr.iter_mut().enumerate() {
                            *o += wv * xr[ox * g.s + kx];
                        }
                    }
                }
            }
        });
        Ok((CpuStorage::F32(y), Shape::from((g.b, g.c, g.ho, g.wo))))
    }
    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let dx = grad.apply_op2_no_bwd(w, &DwBwdInput { s: self.s, h: x.dim(2)?, w: x.dim(3)? })?;
        let dw = x.apply_op2_no_bwd(&grad, &DwBwdWeight { s: self.s, k: w.dim(2)? })?;
        Ok((Some(dx), Some(dw)))
    }
}

struct DwBwdInput {
    s: usize,
    h: usize,
    w: usize,
}

impl CustomOp2 for DwBwdInput {
    fn name(&self) -> &'static str {
        "graft-depthwise-conv-bwd-input"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let dd = l1.dims();
        let k = l2.dims()[2];
        let g = geom(&[dd[0], dd[1], self.h, self.w], k, self.s)?;
        let dy = slice(s1, l1, "grad")?;
        let w = slice(s2, l2, "weight")?;
        let mut dx = vec![0f32; g.b * g.c * g.h * g.w];
        dx.par_chunks_mut(g.h * g.w).enumerate().for_each(|(pi, dxp)| {
            let c = pi % g.c;
            let dyp = &dy[pi * g.ho * g.wo..(pi + 1) * g.ho * g.wo];
            let wk = &w[c * g.k * g.k..(c + 1) * g.k * g.k];
            for oy in 0..g.ho {
                let dyr = &dyp[oy * g.wo..(oy + 1) * g.wo];
                for ky in 0..g.k {
                    let row = (oy * g.s + ky) * g.w;
                    for kx in 0..g.k {
                        let wv = wk[ky * g.k + kx];
                        for (ox, d) in dyr.iter().enumerate() {
                            dxp[row + ox * g.s + kx] += wv * d;
                        }
                    }
                }
            }
        });
        Ok((CpuStorage::F32(dx), Shape::from((g.b, g.c, g.h, g.w))))
    }
}

struct DwBwdWeight {
    s: usize,
    k: usize,
}

impl CustomOp2 for DwBwdWeight {
    fn name(&self) -> &'static str {
        "graft-depthwise-conv-bwd-weight"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = geom(l1.dims(), self.k, self.s)?;
        let x = slice(s1, l1, "input")?;
        let dy = slice(s2, l2, "grad")?;
        let mut dw = vec![0f32; g.c * g.k * g.k];
        dw.par_chunks_mut(g.k * g.k).enumerate().for_each(|(c, dwk)| {
            for bi in 0..g.b {
                let pi = bi * g.c + c;
                let xp = &x[pi * g.h * g.w..(pi + 1) * g.h * g.w];
                let dyp = &dy[pi * g.ho * g.wo..(pi + 1) * g.ho * g.wo];
                for ky in 0..g.k {
                    for kx in 0..g.k {
                        let mut acc = 0f32;
                        for oy in 0..g.ho {
                            let xr = &xp[(oy * g.s + ky) * g.w..];
                            for (ox, d) in dyp[oy * g.wo..(oy + 1) * g.wo].iter().enumerate() {
                                acc += d * xr[ox * g.s + kx];
                            }
                        }
                        dwk[ky * g.k + kx] += acc;
                    }
                }
            }
        });
        Ok((CpuStorage::F32(dw), Shape::from((g.c, 1, g.k, g.k))))
    }
}

/// Depthwise convolution of NCHW `x` with (C, 1, k, k) `w`, stride `s`, no padding.
pub fn depthwise_conv2d(x: &Tensor, w: &Tensor, s: usize) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 && !super::use_reference_kernels() {
        x.contiguous()?.apply_op2(&w.contiguous()?, DwFwd { s })
    } else {
        x.conv2d(w, 0, s, 1, x.dim(1)?)
    }
}

/// TensorFlow "SAME" zero padding for a k x k window at stride s (asymmetric: the extra
/// pixel goes to the bottom/right).
pub fn pad_same(x: &Tensor, k: usize, s: usize) -> Result<Tensor> {
    let (h, w) = (x.dim(2)?, x.dim(3)?);
    let total = |n: usize| ((n.div_ceil(s) - 1) * s + k).saturating_sub(n);
    let (ph, pw) = (total(h), total(w));
    let x = if ph > 0 { x.pad_with_zeros(2, ph / 2, ph - ph / 2)? } else { x.clone() };
    if pw > 0 {
        x.pad_with_zeros(3, pw / 2, pw - pw / 2)
    } else {
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::{max_rel, rand};
    use candle_core::Var;

    #[test]
    fn matches_candle_grouped_conv_forward_and_backward() {
        for (c, h, k, s) in [(3, 9, 3, 1), (4, 10, 5, 2), (2, 7, 3, 2)] {
            let x = Var::from_tensor(&rand(&[2, c, h, h], 1, -1.0, 1.0)).unwrap();
            let w = Var::from_tensor(&rand(&[c, 1, k, k], 2, -1.0, 1.0)).unwrap();
            let ours = depthwise_conv2d(x.as_tensor(), w.as_tensor(), s).unwrap();
            let refr = x.as_tensor().conv2d(w.as_tensor(), 0, s, 1, c).unwrap();
            assert!(max_rel(&ours, &refr) < 1e-5);
            let up = rand(ours.dims(), 3, -1.0, 1.0);
            let g = (ours * &up).unwrap().sum_all().unwrap().backward().unwrap();
            let gx = g.get(&x).unwrap();
            let gw = g.get(&w).unwrap();
            // check against candle's gradients where candle supports them (stride 1)
            if s == 1 {
                let g2 = (x.as_tensor().conv2d(w.as_tensor(), 0, s, 1, c).unwrap() * &up).unwrap().sum_all().unwrap().backward();
                if let Ok(g2) = g2 {
                    assert!(max_rel(gx, g2.get(&x).unwrap()) < 1e-5);
                    assert!(max_rel(gw, g2.get(&w).unwrap()) < 1e-5);
                }
            }
            // adjoint identity: <conv(x), up> = <x, dx> since the op is linear in x
            let lhs =
                (depthwise_conv2d(x.as_tensor(), w.as_tensor(), s).unwrap() * &up).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
            let rhs = (x.as_tensor() * gx).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
            assert!((lhs - rhs).abs() < 1e-3 * lhs.abs().max(1.0), "{lhs} {rhs}");
            let rhs_w = (w.as_tensor() * gw).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
            assert!((lhs - rhs_w).abs() < 1e-3 * lhs.abs().max(1.0), "{lhs} {rhs_w}");
        }
    }

    #[test]
    fn same_padding_is_tensorflow_style() {
        let x = Tensor::zeros((1, 1, 224, 224), candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
        assert_eq!(pad_same(&x, 3, 2).unwrap().dims(), &[1, 1, 225, 225]);
        assert_eq!(pad_same(&x, 5, 1).unwrap().dims(), &[1, 1, 228, 228]);
        let x = Tensor::zeros((1, 1, 7, 7), candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
        assert_eq!(pad_same(&x, 3, 2).unwrap().dims(), &[1, 1, 9, 9]);
    }
}
