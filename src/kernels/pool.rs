//! Max-pooling (square window k, stride s, padding p with −∞, floor), forward and backward.
//! candle 0.11's max-pool gradient routes through nearest upsampling, which misplaces gradients
//! when the input size is odd (7x7 -> 3x3 in convnet4: caught by the PyTorch golden test), and
//! it has no padding (torchvision's 3x3/2/1 stem pool).
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

fn slice<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    super::contiguous_f32(s, l, "max-pool", "input")
}

#[derive(Clone, Copy)]
struct Pool {
    k: usize,
    s: usize,
    p: usize,
}

/// (index, value) of the maximum of a 2x2 window given in row-major order; the first on ties,
/// as [`Pool::argmax`] picks it.
#[inline(always)]
fn window2(a: f32, b: f32, c: f32, d: f32) -> (usize, f32) {
    let (mut i, mut v) = (0, a);
    if b > v {
        (i, v) = (1, b);
    }
    if c > v {
        (i, v) = (2, c);
    }
    if d > v {
        (i, v) = (3, d);
    }
    (i, v)
}

impl Pool {
    /// The common 2x2 window, stride 2, no padding.
    fn is_2x2(&self) -> bool {
        self.k == 2 && self.s == 2 && self.p == 0
    }
    fn out(&self, h: usize) -> usize {
        (h + 2 * self.p - self.k) / self.s + 1
    }
    /// Index (within the h x w plane) of the maximum of window (oy, ox); the first on ties.
    #[inline]
    fn argmax(&self, plane: &[f32], h: usize, w: usize, oy: usize, ox: usize) -> usize {
        let y0 = (oy * self.s) as isize - self.p as isize;
        let x0 = (ox * self.s) as isize - self.p as isize;
        let mut best = usize::MAX;
        let mut bv = f32::NEG_INFINITY;
        for dy in 0..self.k as isize {
            let y = y0 + dy;
            if y < 0 || y >= h as isize {
                continue;
            }
            for dx in 0..self.k as isize {
                let x = x0 + dx;
                if x < 0 || x >= w as isize {
                    continue;
                }
                let i = y as usize * w + x as usize;
                if best == usize::MAX || plane[i] > bv {
                    best = i;
                    bv = plane[i];
                }
            }
        }
        best
    }
}

impl CustomOp1 for Pool {
    fn name(&self) -> &'static str {
        "graft-maxpool"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = l.shape().dims4()?;
        let x = slice(s, l)?;
        let (ho, wo) = (self.out(h), self.out(w));
        let mut y = vec![0f32; b * c * ho * wo];
        y.par_chunks_mut(ho * wo).enumerate().for_each(|(pi, yp)| {
            let plane = &x[pi * h * w..(pi + 1) * h * w];
            if self.is_2x2() {
                for (oy, yr) in yp.chunks_exact_mut(wo).enumerate() {
                    let (r0, r1) = (&plane[2 * oy * w..][..2 * wo], &plane[(2 * oy + 1) * w..][..2 * wo]);
                    for (ox, o) in yr.iter_mut().enumerate() {
                        *o = window2(r0[2 * ox], r0[2 * ox + 1], r1[2 * ox], r1[2 * ox + 1]).1;
                    }
                }
                return;
            }
            for oy in 0..ho {
                for ox in 0..wo {
                    yp[oy * wo + ox] = plane[self.argmax(plane, h, w, oy, ox)];
                }
            }
        });
        Ok((CpuStorage::F32(y), Shape::from((b, c, ho, wo))))
    }
    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(arg.apply_op2_no_bwd(&grad.contiguous()?, &PoolBwd(*self))?))
    }
}

struct PoolBwd(Pool);

impl CustomOp2 for PoolBwd {
    fn name(&self) -> &'static str {
        "graft-maxpool-bwd"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = l1.shape().dims4()?;
        let x = slice(s1, l1)?;
        let g = slice(s2, l2)?;
        let (ho, wo) = (self.0.out(h), self.0.out(w));
        let mut dx = vec![0f32; b * c * h * w];
        dx.par_chunks_mut(h * w).enumerate().for_each(|(pi, dp)| {
            let plane = &x[pi * h * w..(pi + 1) * h * w];
            let gp = &g[pi * ho * wo..(pi + 1) * ho * wo];
            if self.0.is_2x2() {
                // windows do not overlap: each input receives at most one gradient
                for (oy, gr) in gp.chunks_exact(wo).enumerate() {
                    let (r0, r1) = (&plane[2 * oy * w..][..2 * wo], &plane[(2 * oy + 1) * w..][..2 * wo]);
                    for (ox, gv) in gr.iter().enumerate() {
                        let (i, _) = window2(r0[2 * ox], r0[2 * ox + 1], r1[2 * ox], r1[2 * ox + 1]);
                        dp[(2 * oy + i / 2) * w + 2 * ox + i % 2] = *gv;
                    }
                }
                return;
            }
            for oy in 0..ho {
                for ox in 0..wo {
                    dp[self.0.argmax(plane, h, w, oy, ox)] += gp[oy * wo + ox];
                }
            }
        });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

/// Max-pool with window k, stride s and padding p (k > p); graft's kernel on the CPU, and on the
/// GPU (`cudnn` feature) where there is padding or the window is not its stride (candle has no
/// padded max-pool, and its backward pass takes only windows equal to their stride).
pub fn max_pool(x: &Tensor, k: usize, s: usize, p: usize) -> Result<Tensor> {
    // (with GRAFT_REFERENCE_KERNELS=1 too where padding leaves candle without a max-pool)
    let cpu_f32 = x.device().is_cpu() && x.dtype() == candle_core::DType::F32;
    if super::native_kernels_apply(x, &[]) || (cpu_f32 && p > 0) {
        x.contiguous()?.apply_op1(Pool { k, s, p })
    } else if super::gpu::act_applies(x) && (p > 0 || k != s) {
        super::gpu::max_pool(x, k, s, p)
    } else if p == 0 {
        x.max_pool2d_with_stride(k, s)
    } else {
        candle_core::bail!(
            "a padded max-pool (window {k}, stride {s}, padding {p}) runs on the CPU in float32, or on a GPU with the `cudnn` build (scripts/build-cuda.sh); candle's own max-pool has no padding"
        )
    }
}

/// 2x2 max-pool, stride 2.
pub fn max_pool2(x: &Tensor) -> Result<Tensor> {
    max_pool(x, 2, 2, 0)
}

/// Nearest upsampling by an integer factor (each value fills an s x s block); its gradient sums
/// each block ([`BlockSum`]). candle's own `upsample_nearest2d` overwrites the input's
/// accumulated gradient (candle-core 0.11.1), and the reshape + broadcast that replaced it spent
/// a quarter of an autoencoder's step in candle's strided reduction over the broadcast dimensions.
struct Upsample(usize);

impl CustomOp1 for Upsample {
    fn name(&self) -> &'static str {
        "graft-upsample-nearest"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = l.shape().dims4()?;
        let x = super::contiguous_f32(s, l, "upsample", "input")?;
        let f = self.0;
        let (ho, wo) = (h * f, w * f);
        let mut y = vec![0f32; b * c * ho * wo];
        y.par_chunks_mut(ho * wo).zip(x.par_chunks(h * w)).for_each(|(yp, xp)| {
            for (iy, xr) in xp.chunks_exact(w).enumerate() {
                let row = &mut yp[iy * f * wo..][..wo];
                for (ix, v) in xr.iter().enumerate() {
                    row[ix * f..(ix + 1) * f].fill(*v);
                }
                for r in 1..f {
                    yp.copy_within(iy * f * wo..(iy * f + 1) * wo, (iy * f + r) * wo);
                }
            }
        });
        Ok((CpuStorage::F32(y), Shape::from((b, c, ho, wo))))
    }
    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&BlockSum(self.0))?))
    }
}

/// The sum of every s x s block (row by row within a block), the upsample's gradient.
struct BlockSum(usize);

impl CustomOp1 for BlockSum {
    fn name(&self) -> &'static str {
        "graft-block-sum"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, c, ho, wo) = l.shape().dims4()?;
        let g = super::contiguous_f32(s, l, "upsample backward", "gradient")?;
        let f = self.0;
        let (h, w) = (ho / f, wo / f);
        let mut dx = vec![0f32; b * c * h * w];
        dx.par_chunks_mut(h * w).zip(g.par_chunks(ho * wo)).for_each(|(dp, gp)| {
            for (iy, dr) in dp.chunks_exact_mut(w).enumerate() {
                for r in 0..f {
                    let grow = &gp[(iy * f + r) * wo..][..wo];
                    for (ix, d) in dr.iter_mut().enumerate() {
                        for v in &grow[ix * f..(ix + 1) * f] {
                            *d += v;
                        }
                    }
                }
            }
        });
        Ok((CpuStorage::F32(dx), Shape::from((b, c, h, w))))
    }
}

/// Nearest upsampling of an (n, c, h, w) tensor by the integer factor `s`: graft's kernel on
/// the CPU, a reshape + broadcast elsewhere (both accumulate gradients correctly).
pub fn upsample_nearest(x: &Tensor, s: usize) -> Result<Tensor> {
    if super::native_kernels_apply(x, &[]) {
        return x.contiguous()?.apply_op1(Upsample(s));
    }
    let (n, c, h, w) = x.dims4()?;
    x.reshape((n, c, h, 1, w, 1))?.broadcast_as((n, c, h, s, w, s))?.reshape((n, c, h * s, w * s))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 2x2 fast path gives the generic window search's outputs and gradient routing, on odd
    /// sizes and with ties (values rounded to a few levels).
    #[test]
    fn fast_2x2_matches_generic_search() {
        let dev = candle_core::Device::Cpu;
        let (b, c, h, w) = (2, 3, 7, 9);
        let xs: Vec<f32> = (0..b * c * h * w).map(|i| ((i * 7919 % 13) as f32 / 4.0).round()).collect();
        let x = candle_core::Var::from_vec(xs.clone(), (b, c, h, w), &dev).unwrap();
        let y = max_pool2(x.as_tensor()).unwrap();
        let (ho, wo) = (h / 2, w / 2);
        let gs: Vec<f32> = (0..b * c * ho * wo).map(|i| i as f32 + 1.0).collect();
        let g = Tensor::from_vec(gs.clone(), (b, c, ho, wo), &dev).unwrap();
        let grads = (y.clone() * &g).unwrap().sum_all().unwrap().backward().unwrap();
        let dx = grads.get(x.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let yv = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let pool = Pool { k: 2, s: 2, p: 0 };
        let mut want_dx = vec![0f32; xs.len()];
        for pi in 0..b * c {
            let plane = &xs[pi * h * w..(pi + 1) * h * w];
            for oy in 0..ho {
                for ox in 0..wo {
                    let i = pool.argmax(plane, h, w, oy, ox);
                    assert_eq!(yv[pi * ho * wo + oy * wo + ox], plane[i]);
                    want_dx[pi * h * w + i] += gs[pi * ho * wo + oy * wo + ox];
                }
            }
        }
        assert_eq!(dx, want_dx);
    }
}
