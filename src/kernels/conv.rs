//! 2-D convolution (square kernel, no bias, groups = 1) with im2col + GEMM forward and backward.
use super::{direct, sgemm};
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

#[derive(Debug, Clone, Copy)]
struct Geom {
    b: usize,
    cin: usize,
    h: usize,
    w: usize,
    cout: usize,
    k: usize,
    stride: usize,
    pad: usize,
    ho: usize,
    wo: usize,
}

impl Geom {
    fn new(xd: &[usize], wd: &[usize], stride: usize, pad: usize) -> Result<Self> {
        if xd.len() != 4 || wd.len() != 4 || xd[1] != wd[1] || wd[2] != wd[3] {
            candle_core::bail!("conv2d: bad shapes input {xd:?} weight {wd:?}");
        }
        let (h, w, k) = (xd[2], xd[3], wd[2]);
        if h + 2 * pad < k || w + 2 * pad < k {
            candle_core::bail!("conv2d: input {h}x{w} smaller than kernel {k}");
        }
        let ho = (h + 2 * pad - k) / stride + 1;
        let wo = (w + 2 * pad - k) / stride + 1;
        Ok(Geom { b: xd[0], cin: xd[1], h, w, cout: wd[0], k, stride, pad, ho, wo })
    }
    fn ckk(&self) -> usize {
        self.cin * self.k * self.k
    }
    fn howo(&self) -> usize {
        self.ho * self.wo
    }
    /// 3x3, stride 1, pad 1 on an AVX-512 or AVX2 + FMA CPU: the direct kernel (`direct.rs`) instead of
    /// im2col + GEMM, for the forward pass and the input gradient. Only for widths whose
    /// 16-pixel tiles lie in one row (multiples of 16) or in two rows of 8: the general tile
    /// addressing measured slower than im2col + GEMM.
    fn is_direct(&self) -> bool {
        self.k == 3 && self.stride == 1 && self.pad == 1 && (self.w.is_multiple_of(16) || self.w == 8) && direct::available()
    }
    fn is_pointwise(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.pad == 0
    }
}

/// col[(c*k + ky)*k + kx][oy*wo + ox] = x[c][oy*s - p + ky][ox*s - p + kx] (0 outside).
fn im2col(x: &[f32], g: &Geom, col: &mut [f32]) {
    let howo = g.howo();
    for c in 0..g.cin {
        for ky in 0..g.k {
            for kx in 0..g.k {
                let row = ((c * g.k + ky) * g.k + kx) * howo;
                for oy in 0..g.ho {
                    let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                    let dst = &mut col[row + oy * g.wo..row + (oy + 1) * g.wo];
                    if iy < 0 || iy >= g.h as isize {
                        dst.fill(0.0);
                        continue;
                    }
                    let src = &x[c * g.h * g.w + iy as usize * g.w..][..g.w];
                    if g.stride == 1 {
                        // valid ox: 0 <= ox + kx - pad < w
                        let lo = g.pad.saturating_sub(kx).min(g.wo);
                        let hi = (g.w + g.pad).saturating_sub(kx).min(g.wo).max(lo);
                        dst[..lo].fill(0.0);
                        dst[hi..].fill(0.0);
                        let s0 = lo + kx - g.pad;
                        dst[lo..hi].copy_from_slice(&src[s0..s0 + (hi - lo)]);
                    } else {
                        // valid ox: 0 <= ox * stride + kx - pad < w, a contiguous range
                        let st = g.stride;
                        let lo = g.pad.saturating_sub(kx).div_ceil(st).min(g.wo);
                        let hi = ((g.w + g.pad).saturating_sub(kx).div_ceil(st)).min(g.wo).max(lo);
                        dst[..lo].fill(0.0);
                        dst[hi..].fill(0.0);
                        let s0 = lo * st + kx - g.pad;
                        for (d, v) in dst[lo..hi].iter_mut().zip(src[s0..].iter().step_by(st)) {
                            *d = *v;
                        }
                    }
                }
            }
        }
    }
}

/// Scatter-add a column matrix back to an image (the adjoint of im2col); `x` must arrive zeroed.
fn col2im(col: &[f32], g: &Geom, x: &mut [f32]) {
    let howo = g.howo();
    for c in 0..g.cin {
        for ky in 0..g.k {
            for kx in 0..g.k {
                let row = ((c * g.k + ky) * g.k + kx) * howo;
                for oy in 0..g.ho {
                    let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                    if iy < 0 || iy >= g.h as isize {
                        continue;
                    }
                    let src = &col[row + oy * g.wo..row + (oy + 1) * g.wo];
                    let dst = &mut x[c * g.h * g.w + iy as usize * g.w..][..g.w];
                    if g.stride == 1 {
                        let lo = g.pad.saturating_sub(kx).min(g.wo);
                        let hi = (g.w + g.pad).saturating_sub(kx).min(g.wo).max(lo);
                        let s0 = lo + kx - g.pad;
                        for (d, v) in dst[s0..s0 + (hi - lo)].iter_mut().zip(&src[lo..hi]) {
                            *d += v;
                        }
                        continue;
                    }
                    for (ox, v) in src.iter().enumerate() {
                        let ix = (ox * g.stride + kx) as isize - g.pad as isize;
                        if ix >= 0 && ix < g.w as isize {
                            dst[ix as usize] += v;
                        }
                    }
                }
            }
        }
    }
}

fn slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    super::contiguous_f32(s, l, "conv2d", what)
}

thread_local! {
    /// Each worker thread's im2col buffer, kept between calls: allocating and zeroing a fresh
    /// one per parallel task cost about a tenth of a ResNet-8 step.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's scratch buffer of `n` floats. Its contents are stale: `f` must
/// write every element before reading it (im2col and a non-accumulating GEMM both do).
fn with_scratch<R>(n: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < n {
            s.resize(n, 0.0);
        }
        f(&mut s[..n])
    })
}

struct ConvFwd {
    stride: usize,
    pad: usize,
}

/// The forward convolution, then `post(image index, output image)` on each output image
/// (c x ho x wo) in the same per-image task, while it is still in cache.
fn conv_forward(
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
    stride: usize,
    pad: usize,
    post: &(dyn Fn(usize, &mut [f32]) + Sync),
) -> Result<(CpuStorage, Shape)> {
    let g = Geom::new(l1.dims(), l2.dims(), stride, pad)?;
    let x = slice(s1, l1, "input")?;
    let w = slice(s2, l2, "weight")?;
    let (ckk, howo, img) = (g.ckk(), g.howo(), g.cin * g.h * g.w);
    if g.is_direct() {
        let wpk = direct::pack(g.cout, g.cin, |o, i, t| w[(o * g.cin + i) * 9 + t]);
        let out = direct::conv_batch_then(&x[..g.b * img], &wpk, g.cin, g.cout, g.h, g.w, post);
        return Ok((CpuStorage::F32(out), Shape::from((g.b, g.cout, g.ho, g.wo))));
    }
    let out = super::par_zeroed(
        g.b * g.cout * howo,
        g.cout * howo,
        || (),
        |_, i, y| {
            let xi = &x[i * img..(i + 1) * img];
            if g.is_pointwise() {
                sgemm(g.cout, howo, ckk, w, ckk, 1, xi, howo, 1, y, howo, 1, false);
            } else {
                with_scratch(ckk * howo, |col| {
                    im2col(xi, &g, col);
                    sgemm(g.cout, howo, ckk, w, ckk, 1, col, howo, 1, y, howo, 1, false);
                });
            }
            post(i, y);
        },
    );
    Ok((CpuStorage::F32(out), Shape::from((g.b, g.cout, g.ho, g.wo))))
}

/// Convolution followed by eval-mode BatchNorm (per-channel `scale`, `shift`) and an
/// activation, in one pass per image: the same bits as [`ConvFwd`] then the BatchNorm's eval
/// kernel. Forward only: for inputs and weights that need no gradient (feature extraction,
/// frozen groups).
struct ConvBnEval {
    stride: usize,
    pad: usize,
    scale: Vec<f32>,
    shift: Vec<f32>,
    act: super::Act,
}

impl CustomOp2 for ConvBnEval {
    fn name(&self) -> &'static str {
        "graft-conv2d-bn-eval"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        if l2.dims()[0] != self.scale.len() {
            candle_core::bail!("conv2d + batch-norm: {} output channels, {} BatchNorm channels", l2.dims()[0], self.scale.len());
        }
        conv_forward(s1, l1, s2, l2, self.stride, self.pad, &|_, y| {
            super::batchnorm::bn_eval_inplace(y, &self.scale, &self.shift, self.act)
        })
    }
}

/// [`ConvBnEval`] with the residual join of a ResNet block as its epilogue too:
/// relu(bn_eval(conv2d(x, w)) + res), the same bits as the steps and `add_relu`.
struct ConvBnAddReluEval {
    stride: usize,
    pad: usize,
    scale: Vec<f32>,
    shift: Vec<f32>,
}

impl candle_core::CustomOp3 for ConvBnAddReluEval {
    fn name(&self) -> &'static str {
        "graft-conv2d-bn-add-relu-eval"
    }
    #[allow(clippy::too_many_arguments)]
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Geom::new(l1.dims(), l2.dims(), self.stride, self.pad)?;
        if l3.dims() != [g.b, g.cout, g.ho, g.wo] {
            candle_core::bail!("conv2d + residual: residual {:?}, output {:?}", l3.dims(), [g.b, g.cout, g.ho, g.wo]);
        }
        let res = slice(s3, l3, "residual")?;
        let n = g.cout * g.howo();
        conv_forward(s1, l1, s2, l2, self.stride, self.pad, &|i, y| {
            super::batchnorm::bn_eval_inplace(y, &self.scale, &self.shift, super::Act::Identity);
            super::eltwise::add_relu_inplace(y, &res[i * n..(i + 1) * n]);
        })
    }
}

/// `relu(bn_eval(conv2d(x, w)) + res)` fused as [`conv2d_bn_eval`] is (None: run the steps).
pub fn conv2d_bn_add_relu_eval(
    x: &Tensor,
    w: &Tensor,
    stride: usize,
    pad: usize,
    bn: &super::BatchNorm,
    res: &Tensor,
) -> Result<Option<Tensor>> {
    if !fused_eval_applies(x, w) || res.track_op() {
        return Ok(None);
    }
    let (scale, shift) = bn.eval_affine()?;
    let (x, w, res) = (x.contiguous()?, w.contiguous()?, res.contiguous()?);
    Ok(Some(x.apply_op3_no_bwd(&w, &res, &ConvBnAddReluEval { stride, pad, scale, shift })?))
}

/// Whether the fused eval-mode kernels run: graft's float32 CPU kernels, and no gradient needed.
fn fused_eval_applies(x: &Tensor, w: &Tensor) -> bool {
    super::native_kernels_apply(x, &[]) && super::precision().is_f32() && !x.track_op() && !w.track_op()
}

/// `act(bn_eval(conv2d(x, w)))` in one pass per image when nothing needs a gradient and graft's
/// float32 CPU kernels run (the same bits as the three steps); None otherwise, for the caller
/// to run the steps.
pub fn conv2d_bn_eval(x: &Tensor, w: &Tensor, stride: usize, pad: usize, bn: &super::BatchNorm, act: super::Act) -> Result<Option<Tensor>> {
    if !fused_eval_applies(x, w) {
        return Ok(None);
    }
    let (scale, shift) = bn.eval_affine()?;
    let x = x.contiguous()?;
    let w = w.contiguous()?;
    Ok(Some(x.apply_op2_no_bwd(&w, &ConvBnEval { stride, pad, scale, shift, act })?))
}

impl CustomOp2 for ConvFwd {
    fn name(&self) -> &'static str {
        "graft-conv2d"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        conv_forward(s1, l1, s2, l2, self.stride, self.pad, &|_, _| {})
    }
    /// Only the gradients something needs: none for an input that no gradient flows to (the
    /// image at the stem), none for a detached weight (a frozen group).
    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let dx = if x.track_op() {
            Some(grad.apply_op2_no_bwd(w, &ConvBwdInput { stride: self.stride, pad: self.pad, h: x.dim(2)?, w: x.dim(3)? })?)
        } else {
            None
        };
        let dw = if w.track_op() {
            Some(x.apply_op2_no_bwd(&grad, &ConvBwdWeight { stride: self.stride, pad: self.pad, k: w.dim(2)? })?)
        } else {
            None
        };
        Ok((dx, dw))
    }
}

/// dx from (dy, w).
struct ConvBwdInput {
    stride: usize,
    pad: usize,
    h: usize,
    w: usize,
}

impl CustomOp2 for ConvBwdInput {
    fn name(&self) -> &'static str {
        "graft-conv2d-bwd-input"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (dd, wd) = (l1.dims(), l2.dims());
        let g = Geom::new(&[dd[0], wd[1], self.h, self.w], wd, self.stride, self.pad)?;
        if dd[1] != g.cout || dd[2] != g.ho || dd[3] != g.wo {
            candle_core::bail!("conv2d backward: grad shape {dd:?} does not match {g:?}");
        }
        let dy = slice(s1, l1, "grad")?;
        let w = slice(s2, l2, "weight")?;
        let (ckk, howo, img) = (g.ckk(), g.howo(), g.cin * g.h * g.w);
        if g.is_direct() {
            // dx = dy convolved with the weights flipped in both axes, in/out channels swapped
            let wpk = direct::pack(g.cin, g.cout, |o, i, t| w[(i * g.cin + o) * 9 + 8 - t]);
            let dx = direct::conv_batch(&dy[..g.b * g.cout * howo], &wpk, g.cout, g.cin, g.h, g.w);
            return Ok((CpuStorage::F32(dx), Shape::from((g.b, g.cin, g.h, g.w))));
        }
        let dx = super::par_zeroed(
            g.b * img,
            img,
            || (),
            |_, i, dxi| {
                let dyi = &dy[i * g.cout * howo..(i + 1) * g.cout * howo];
                if g.is_pointwise() {
                    // dx (cin x hw) = w^T (cin x cout) · dy (cout x hw)
                    sgemm(ckk, howo, g.cout, w, 1, ckk, dyi, howo, 1, dxi, howo, 1, false);
                } else {
                    with_scratch(ckk * howo, |col| {
                        sgemm(ckk, howo, g.cout, w, 1, ckk, dyi, howo, 1, col, howo, 1, false);
                        col2im(col, &g, dxi); // dxi is a fresh zeroed chunk of dx
                    });
                }
            },
        );
        Ok((CpuStorage::F32(dx), Shape::from((g.b, g.cin, g.h, g.w))))
    }
}

/// dw from (x, dy): sum over images of dy_i · col_i^T, in fixed chunks summed in order.
struct ConvBwdWeight {
    stride: usize,
    pad: usize,
    k: usize,
}

const WGRAD_CHUNK: usize = 4;

impl CustomOp2 for ConvBwdWeight {
    fn name(&self) -> &'static str {
        "graft-conv2d-bwd-weight"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (xd, dd) = (l1.dims(), l2.dims());
        let wd = [dd[1], xd[1], self.k, self.k];
        let g = Geom::new(xd, &wd, self.stride, self.pad)?;
        let x = slice(s1, l1, "input")?;
        let dy = slice(s2, l2, "grad")?;
        let (ckk, howo, img) = (g.ckk(), g.howo(), g.cin * g.h * g.w);
        let n_chunks = g.b.div_ceil(WGRAD_CHUNK);
        let partials: Vec<Vec<f32>> = (0..n_chunks)
            .into_par_iter()
            .map(|c| {
                let mut acc = vec![0f32; g.cout * ckk];
                for i in c * WGRAD_CHUNK..((c + 1) * WGRAD_CHUNK).min(g.b) {
                    let xi = &x[i * img..(i + 1) * img];
                    let dyi = &dy[i * g.cout * howo..(i + 1) * g.cout * howo];
                    // dw (cout x ckk) += dy (cout x howo) · col^T (howo x ckk), accumulated
                    // transposed (ckk x cout, column-major = dw row-major is what gemm sees as
                    // its output): so gemm streams the im2col matrix unpacked and packs only dy
                    let acc_step = |src: &[f32], acc: &mut [f32]| {
                        sgemm(g.cout, ckk, howo, dyi, howo, 1, src, 1, howo, acc, 1, g.cout, i > c * WGRAD_CHUNK)
                    };
                    if g.is_pointwise() {
                        acc_step(xi, &mut acc);
                    } else {
                        with_scratch(ckk * howo, |col| {
                            im2col(xi, &g, col);
                            acc_step(col, &mut acc);
                        });
                    }
                }
                acc
            })
            .collect();
        // partials hold dw transposed (ckk x cout); sum in chunk order, then transpose
        let mut dwt = vec![0f32; g.cout * ckk];
        for p in &partials {
            for (d, v) in dwt.iter_mut().zip(p) {
                *d += v;
            }
        }
        let mut dw = vec![0f32; g.cout * ckk];
        for (j, row) in dwt.chunks(g.cout).enumerate() {
            for (o, v) in row.iter().enumerate() {
                dw[o * ckk + j] = *v;
            }
        }
        Ok((CpuStorage::F32(dw), Shape::from(wd.to_vec())))
    }
}

/// Convolution of NCHW `x` with OIHW `w` (square kernel), stride and zero padding.
pub fn conv2d(x: &Tensor, w: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
    match super::mixed(x, w, |x, w| conv2d_native(x, w, stride, pad))? {
        Some(y) => Ok(y),
        None => conv2d_native(x, w, stride, pad),
    }
}

/// graft's kernel for float32 on the CPU, cuDNN on CUDA (`cudnn` feature), candle's conv2d
/// otherwise.
fn conv2d_native(x: &Tensor, w: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
    if super::gpu::act_applies(x) {
        return super::gpu::conv2d(x, w, stride, pad, 1);
    }
    if super::native_kernels_apply(x, &[]) {
        let x = x.contiguous()?;
        let w = w.contiguous()?;
        x.apply_op2(&w, ConvFwd { stride, pad })
    } else {
        x.conv2d(w, pad, stride, 1, 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    use crate::kernels::testutil::max_rel;

    fn rand(shape: &[usize], seed: u64) -> Tensor {
        crate::kernels::testutil::rand(shape, seed, -1.0, 1.0)
    }

    /// Forward and both gradients agree with candle's reference conv2d (batches of 6 and 9 span
    /// several weight-gradient chunks, the last one partial).
    #[test]
    fn matches_candle_conv_forward_and_backward() {
        for (b, cin, h, cout, k, stride, pad) in [
            (3, 4, 9, 5, 3, 1, 1),
            (2, 3, 8, 6, 3, 2, 1),
            (2, 4, 8, 6, 1, 2, 0),
            (2, 4, 6, 3, 1, 1, 0),
            (1, 2, 7, 2, 3, 1, 0),
            (6, 3, 8, 5, 3, 1, 1),
            (9, 2, 9, 4, 3, 2, 1),
            (2, 17, 5, 20, 3, 1, 1),
            (2, 16, 4, 32, 3, 1, 1),
            (2, 3, 16, 20, 3, 1, 1),
            (1, 17, 32, 5, 3, 1, 1),
            (3, 5, 8, 18, 3, 1, 1),
        ] {
            let x = Var::from_tensor(&rand(&[b, cin, h, h], 1)).unwrap();
            let w = Var::from_tensor(&rand(&[cout, cin, k, k], 2)).unwrap();
            let up = rand(&[b, cout, (h + 2 * pad - k) / stride + 1, (h + 2 * pad - k) / stride + 1], 3);
            let ours = conv2d(x.as_tensor(), w.as_tensor(), stride, pad).unwrap();
            let refr = x.as_tensor().conv2d(w.as_tensor(), pad, stride, 1, 1).unwrap();
            assert!(max_rel(&ours, &refr) < 1e-5, "forward {b} {cin} {h} {k} {stride}");
            let g1 = (ours * &up).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (refr * &up).unwrap().sum_all().unwrap().backward().unwrap();
            assert!(max_rel(g1.get(&x).unwrap(), g2.get(&x).unwrap()) < 1e-5, "dx {k} {stride}");
            assert!(max_rel(g1.get(&w).unwrap(), g2.get(&w).unwrap()) < 1e-5, "dw {k} {stride}");
        }
    }

    /// The fused eval-mode convolution + BatchNorm + activation gives exactly the bits of the
    /// three steps, on the direct 3x3 path, the im2col path and the pointwise path; and it
    /// steps aside when the input needs a gradient.
    #[test]
    fn fused_conv_bn_eval_equals_the_three_steps_bit_for_bit() {
        use crate::kernels::{Act, BatchNorm};
        for (b, cin, h, cout, k, stride, pad) in
            [(3, 5, 16, 20, 3, 1, 1), (2, 4, 9, 6, 3, 2, 1), (2, 8, 7, 12, 1, 1, 0), (2, 3, 8, 5, 3, 1, 0)]
        {
            let vm = candle_nn::VarMap::new();
            let vb = candle_nn::VarBuilder::from_varmap(&vm, candle_core::DType::F32, &candle_core::Device::Cpu);
            let bn = BatchNorm::new(cout, vb).unwrap();
            bn.running_mean.set(&rand(&[cout], 11)).unwrap();
            bn.running_var.set(&(rand(&[cout], 12).abs().unwrap() + 0.1).unwrap()).unwrap();
            let x = rand(&[b, cin, h, h], 13);
            let w = rand(&[cout, cin, k, k], 14);
            for act in [Act::Identity, Act::Relu, Act::Relu6] {
                let fused = conv2d_bn_eval(&x, &w, stride, pad, &bn, act).unwrap().expect("the fused path runs");
                let steps = bn.forward_act(&conv2d(&x, &w, stride, pad).unwrap(), false, act).unwrap();
                let d = (fused - steps).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                assert_eq!(d, 0.0, "{b} {cin} {h} {cout} {k} {stride} {pad} {act:?}");
            }
            // with the residual join as its epilogue
            let y = conv2d(&x, &w, stride, pad).unwrap();
            let res = rand(y.dims(), 15);
            let fused = conv2d_bn_add_relu_eval(&x, &w, stride, pad, &bn, &res).unwrap().expect("the fused path runs");
            let steps = crate::kernels::add_relu(&bn.forward_act(&y, false, Act::Identity).unwrap(), &res).unwrap();
            let d = (fused - steps).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert_eq!(d, 0.0, "residual {b} {cin} {h} {cout} {k} {stride} {pad}");
            let xv = Var::from_tensor(&x).unwrap();
            assert!(conv2d_bn_eval(xv.as_tensor(), &w, stride, pad, &bn, Act::Relu).unwrap().is_none());
            assert!(conv2d_bn_add_relu_eval(xv.as_tensor(), &w, stride, pad, &bn, &res).unwrap().is_none());
        }
    }
}
