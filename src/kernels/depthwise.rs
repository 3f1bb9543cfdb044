//! Depthwise 2-D convolution (groups = channels, one k x k filter per channel) with explicit,
//! possibly asymmetric zero padding (TensorFlow "same" for EfficientNet), forward and both
//! gradients. Each input plane is first copied into a padded, *phase-split* scratch buffer:
//! for stride s, row r of the padded plane is stored as s rows of its every s-th pixel
//! (phase p holds columns p, p + s, p + 2s, ...). Tap (ky, kx) of output row oy then reads the
//! contiguous run `phase kx % s, offset kx / s` of padded row oy·s + ky, so every inner loop is a
//! plain vectorisable axpy or dot product, for stride 1 and 2 alike. The loops are compiled for
//! AVX-512, AVX2 and the baseline and chosen at run time; their summation order is fixed, so all
//! give the same bits, whatever the thread count (parallel over planes, and over channels for
//! the weight gradient, each summing its images in order).
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

fn slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    super::contiguous_f32(s, l, "depthwise conv", what)
}

/// Zero padding (top, bottom, left, right).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pad {
    pub top: usize,
    pub bottom: usize,
    pub left: usize,
    pub right: usize,
}

impl Pad {
    pub const NONE: Pad = Pad { top: 0, bottom: 0, left: 0, right: 0 };

    /// TensorFlow "SAME" padding of an h x w input for a k x k window at stride s: the output
    /// is ceil(n / s), and the odd pixel of the padding goes to the bottom/right.
    pub fn same(h: usize, w: usize, k: usize, s: usize) -> Pad {
        let total = |n: usize| ((n.div_ceil(s) - 1) * s + k).saturating_sub(n);
        let (ph, pw) = (total(h), total(w));
        Pad { top: ph / 2, bottom: ph - ph / 2, left: pw / 2, right: pw - pw / 2 }
    }
}

#[derive(Clone, Copy, Debug)]
struct G {
    b: usize,
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    s: usize,
    pad: Pad,
    ho: usize,
    wo: usize,
    /// Padded rows the outputs read: (ho − 1)·s + k.
    hp: usize,
    /// Length of one phase row: wo + (k − 1) / s.
    wq: usize,
}

impl G {
    fn new(xd: &[usize], k: usize, s: usize, pad: Pad) -> Result<G> {
        if xd.len() != 4 || k == 0 || s == 0 {
            candle_core::bail!("depthwise conv: input {xd:?}, kernel {k}, stride {s}");
        }
        let (h, w) = (xd[2] + pad.top + pad.bottom, xd[3] + pad.left + pad.right);
        if h < k || w < k {
            candle_core::bail!("depthwise conv: input {xd:?} with padding {pad:?} too small for kernel {k}");
        }
        let (ho, wo) = ((h - k) / s + 1, (w - k) / s + 1);
        Ok(G { b: xd[0], c: xd[1], h: xd[2], w: xd[3], k, s, pad, ho, wo, hp: (ho - 1) * s + k, wq: wo + (k - 1) / s })
    }
    fn plane(&self) -> usize {
        self.h * self.w
    }
    fn oplane(&self) -> usize {
        self.ho * self.wo
    }
    /// Scratch floats for one phase-split padded plane, plus a block of slack that a row's
    /// last, partial block may read past the end.
    fn scratch(&self) -> usize {
        self.hp * self.s * self.wq + BLK
    }
    /// Start of (padded row r, phase p) in the scratch buffer.
    fn q(&self, r: usize, p: usize) -> usize {
        (r * self.s + p) * self.wq
    }
    /// The positions [lo, hi) of phase p whose column j·s + p − left lies inside a row, and
    /// the first such column.
    fn inside(&self, p: usize) -> (usize, usize, usize) {
        let lo = self.pad.left.saturating_sub(p).div_ceil(self.s).min(self.wq);
        let hi = (self.w + self.pad.left).saturating_sub(p).div_ceil(self.s).clamp(lo, self.wq);
        (lo, hi, (lo * self.s + p).saturating_sub(self.pad.left))
    }
}

multiversion!(fill_phases(x: &[f32], g: &G, q: &mut [f32]) -> () = fill_phases_body);
multiversion!(fwd_plane(q: &[f32], wk: &[f32], offs: &[usize], g: &G, y: &mut [f32]) -> () = fwd_plane_body);
multiversion!(bwd_input_plane(dy: &[f32], wk: &[f32], g: &G, dyp: &mut Vec<f32>, dx: &mut [f32]) -> () = bwd_input_plane_body);
multiversion!(bwd_weight_plane(q: &[f32], dy: &[f32], offs: &[usize], g: &G, dyr: &mut [f32], dw: &mut [f32]) -> () = bwd_weight_plane_body);

/// Copies plane `x` into the phase-split padded layout (zeros where the padding is).
#[inline(always)]
fn fill_phases_body(x: &[f32], g: &G, q: &mut [f32]) {
    for r in 0..g.hp {
        let iy = r.checked_sub(g.pad.top).filter(|&iy| iy < g.h);
        for p in 0..g.s {
            let dst = &mut q[g.q(r, p)..g.q(r, p) + g.wq];
            match iy {
                None => dst.fill(0.0),
                Some(iy) => {
                    let src = &x[iy * g.w..(iy + 1) * g.w];
                    let (lo, hi, first) = g.inside(p);
                    dst[..lo].fill(0.0);
                    dst[hi..].fill(0.0);
                    if hi > lo {
                        if g.s == 1 {
                            dst[lo..hi].copy_from_slice(&src[first..first + (hi - lo)]);
                        } else {
                            for (d, v) in dst[lo..hi].iter_mut().zip(src[first..].iter().step_by(g.s)) {
                                *d = *v;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Outputs per register block of the forward pass: one AVX2 register, which stays in a
/// register across all k² taps (Lite0's rows are 112, 56, 28, 14 and 7 wide, so a wider block
/// would leave most of each row to the tail loop).
const BLK: usize = 8;

/// Each tap's offset (ky·k + kx order) from the start of an output row's first padded row,
/// computed once per op and shared by every plane.
fn tap_offsets(g: &G) -> Vec<usize> {
    (0..g.k * g.k).map(|t| ((t / g.k) * g.s + (t % g.k) % g.s) * g.wq + (t % g.k) / g.s).collect()
}

/// A dy row padded with zeros to whole blocks.
fn padded_row_len(g: &G) -> usize {
    g.wo.div_ceil(BLK) * BLK
}

/// Output row oy's start in the scratch buffer.
#[inline(always)]
fn row_base(g: &G, oy: usize) -> usize {
    oy * g.s * g.s * g.wq
}

/// y[oy][ox] = Σ_{ky,kx} w[ky][kx] · padded[oy·s + ky][ox·s + kx], summed from 0 in tap order
/// (the same order for every output, so the bits do not depend on the blocking). A row's last,
/// partial block is computed whole (the scratch buffer has `BLK` floats of slack) and only its
/// valid outputs are stored.
#[inline(always)]
fn fwd_plane_body(q: &[f32], wk: &[f32], offs: &[usize], g: &G, y: &mut [f32]) {
    for oy in 0..g.ho {
        let base = row_base(g, oy);
        let yr = &mut y[oy * g.wo..(oy + 1) * g.wo];
        for ox in (0..g.wo).step_by(BLK) {
            let mut acc = [0f32; BLK];
            for (&off, &wv) in offs.iter().zip(wk) {
                let src: &[f32; BLK] = q[base + off + ox..][..BLK].try_into().expect("a block inside the scratch slack");
                for l in 0..BLK {
                    acc[l] += wv * src[l];
                }
            }
            let n = BLK.min(g.wo - ox);
            yr[ox..ox + n].copy_from_slice(&acc[..n]);
        }
    }
}

/// The adjoint of the forward pass, gathered: each input pixel's gradient is the sum of w·dy
/// over the (output, tap) pairs that read it, accumulated in a register block of `BLK`
/// pixels of one phase of one input row (as the forward pass accumulates its outputs), in
/// (oy, kx) order, so the bits are those of scattering w·dy tap by tap in (oy, ky, kx) order.
/// Padded rows and columns that no input pixel maps to are never computed. `dyp` is the
/// thread's scratch: the plane's dy rows, each with `(k − 1) / s` zeros before it and zeros
/// after it to a whole block past the phase row.
#[inline(always)]
fn bwd_input_plane_body(dy: &[f32], wk: &[f32], g: &G, dyp: &mut Vec<f32>, dx: &mut [f32]) {
    let lead = (g.k - 1) / g.s;
    let l = dy_row_len(g);
    dyp.clear();
    dyp.resize(g.ho * l, 0.0);
    for oy in 0..g.ho {
        dyp[oy * l + lead..][..g.wo].copy_from_slice(&dy[oy * g.wo..(oy + 1) * g.wo]);
    }
    for iy in 0..g.h {
        let r = iy + g.pad.top;
        let row = &mut dx[iy * g.w..(iy + 1) * g.w];
        row.fill(0.0); // columns (and rows) past what any output reads get no gradient
        if r >= g.hp {
            continue;
        }
        // the outputs whose window covers padded row r: oy·s + ky = r with 0 <= ky < k
        let oy_lo = (r + 1).saturating_sub(g.k).div_ceil(g.s);
        let oy_hi = (r / g.s).min(g.ho - 1);
        for p in 0..g.s {
            let (lo, hi, first) = g.inside(p);
            for j0 in (lo..hi).step_by(BLK) {
                let mut acc = [0f32; BLK];
                for oy in oy_lo..=oy_hi {
                    let ky = r - oy * g.s;
                    let drow = &dyp[oy * l..(oy + 1) * l];
                    for kx in (p..g.k).step_by(g.s) {
                        let wv = wk[ky * g.k + kx];
                        let src: &[f32; BLK] = drow[j0 + lead - kx / g.s..][..BLK].try_into().expect("a block inside the padded dy row");
                        for q in 0..BLK {
                            acc[q] += wv * src[q];
                        }
                    }
                }
                let n = BLK.min(hi - j0);
                if g.s == 1 {
                    row[first + (j0 - lo)..][..n].copy_from_slice(&acc[..n]);
                } else {
                    for (q, v) in acc[..n].iter().enumerate() {
                        row[first + (j0 - lo + q) * g.s] = *v;
                    }
                }
            }
        }
    }
}

/// Length of one zero-padded dy row in [`bwd_input_plane_body`]'s scratch.
fn dy_row_len(g: &G) -> usize {
    (g.k - 1) / g.s + g.wq + BLK
}

/// dw[ky][kx] += Σ_{oy} dy[oy] · padded[oy·s + ky][kx ...] (one plane's contribution), each a
/// lane dot product over a zero-padded copy of the dy row (the padding multiplies the scratch
/// slack or the next row by 0). `dyr` is the thread's dy-row scratch (zeros past `wo`).
#[inline(always)]
fn bwd_weight_plane_body(q: &[f32], dy: &[f32], offs: &[usize], g: &G, dyr: &mut [f32], dw: &mut [f32]) {
    let wr = dyr.len();
    let mut acc = vec![[0f32; BLK]; g.k * g.k];
    for oy in 0..g.ho {
        dyr[..g.wo].copy_from_slice(&dy[oy * g.wo..(oy + 1) * g.wo]);
        let base = row_base(g, oy);
        for (a, &off) in acc.iter_mut().zip(offs) {
            for (src, d) in q[base + off..][..wr].chunks_exact(BLK).zip(dyr.chunks_exact(BLK)) {
                for l in 0..BLK {
                    a[l] += d[l] * src[l];
                }
            }
        }
    }
    for (t, a) in acc.iter().enumerate() {
        dw[t] += a.iter().sum::<f32>();
    }
}

struct DwFwd {
    s: usize,
    pad: Pad,
}

impl CustomOp2 for DwFwd {
    fn name(&self) -> &'static str {
        "graft-depthwise-conv"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let wd = l2.dims();
        let g = G::new(l1.dims(), wd[2], self.s, self.pad)?;
        if wd.len() != 4 || wd[0] != g.c || wd[1] != 1 || wd[3] != g.k {
            candle_core::bail!("depthwise conv: weight {wd:?} does not match {} channels", g.c);
        }
        let x = slice(s1, l1, "input")?;
        let w = slice(s2, l2, "weight")?;
        let offs = tap_offsets(&g);
        let y = super::par_zeroed(
            g.b * g.c * g.oplane(),
            g.oplane(),
            || vec![0f32; g.scratch()],
            |q, pi, yp| {
                let c = pi % g.c;
                fill_phases(&x[pi * g.plane()..(pi + 1) * g.plane()], &g, q);
                fwd_plane(q, &w[c * g.k * g.k..(c + 1) * g.k * g.k], &offs, &g, yp);
            },
        );
        Ok((CpuStorage::F32(y), Shape::from((g.b, g.c, g.ho, g.wo))))
    }
    /// Only the gradients something needs (see the convolution's backward).
    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let dx = if x.track_op() {
            Some(grad.apply_op2_no_bwd(w, &DwBwdInput { s: self.s, pad: self.pad, h: x.dim(2)?, w: x.dim(3)? })?)
        } else {
            None
        };
        let dw =
            if w.track_op() { Some(x.apply_op2_no_bwd(&grad, &DwBwdWeight { s: self.s, pad: self.pad, k: w.dim(2)? })?) } else { None };
        Ok((dx, dw))
    }
}

struct DwBwdInput {
    s: usize,
    pad: Pad,
    h: usize,
    w: usize,
}

impl CustomOp2 for DwBwdInput {
    fn name(&self) -> &'static str {
        "graft-depthwise-conv-bwd-input"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let dd = l1.dims();
        let g = G::new(&[dd[0], dd[1], self.h, self.w], l2.dims()[2], self.s, self.pad)?;
        if dd[2] != g.ho || dd[3] != g.wo {
            candle_core::bail!("depthwise conv backward: grad {dd:?} does not match output {}x{}", g.ho, g.wo);
        }
        let dy = slice(s1, l1, "grad")?;
        let w = slice(s2, l2, "weight")?;
        let dx = super::par_zeroed(
            g.b * g.c * g.plane(),
            g.plane(),
            || Vec::with_capacity(g.ho * dy_row_len(&g)),
            |scratch, pi, dxp| {
                let c = pi % g.c;
                let (dyp, wk) = (&dy[pi * g.oplane()..(pi + 1) * g.oplane()], &w[c * g.k * g.k..(c + 1) * g.k * g.k]);
                bwd_input_plane(dyp, wk, &g, scratch, dxp);
            },
        );
        Ok((CpuStorage::F32(dx), Shape::from((g.b, g.c, g.h, g.w))))
    }
}

struct DwBwdWeight {
    s: usize,
    pad: Pad,
    k: usize,
}

impl CustomOp2 for DwBwdWeight {
    fn name(&self) -> &'static str {
        "graft-depthwise-conv-bwd-weight"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = G::new(l1.dims(), self.k, self.s, self.pad)?;
        let x = slice(s1, l1, "input")?;
        let dy = slice(s2, l2, "grad")?;
        let mut dw = vec![0f32; g.c * g.k * g.k];
        let offs = tap_offsets(&g);
        dw.par_chunks_mut(g.k * g.k).enumerate().for_each_init(
            || (vec![0f32; g.scratch()], vec![0f32; padded_row_len(&g)]),
            |(q, dyr), (c, dwk)| {
                for bi in 0..g.b {
                    let pi = bi * g.c + c;
                    fill_phases(&x[pi * g.plane()..(pi + 1) * g.plane()], &g, q);
                    bwd_weight_plane(q, &dy[pi * g.oplane()..(pi + 1) * g.oplane()], &offs, &g, dyr, dwk);
                }
            },
        );
        Ok((CpuStorage::F32(dw), Shape::from((g.c, 1, g.k, g.k))))
    }
}

/// Depthwise convolution of NCHW `x` with (C, 1, k, k) `w`, stride `s`, zero padding `pad`.
/// In mixed precision its operands are bfloat16, as a dense convolution's ([`super::mixed`]).
pub fn depthwise_conv2d_padded(x: &Tensor, w: &Tensor, s: usize, pad: Pad) -> Result<Tensor> {
    match super::mixed(x, w, |x, w| depthwise_native(x, w, s, pad))? {
        Some(y) => Ok(y),
        None => depthwise_native(x, w, s, pad),
    }
}

/// On the GPU (`cudnn` feature) graft's depthwise kernels (3x3 and 5x5 windows; `GRAFT_DEPTHWISE=cudnn`:
/// cuDNN's grouped convolution), graft's kernel for float32 on the CPU, candle's grouped conv2d
/// otherwise.
fn depthwise_native(x: &Tensor, w: &Tensor, s: usize, pad: Pad) -> Result<Tensor> {
    if super::gpu::act_applies(x) {
        if super::gpu::depthwise_applies(w.dim(2)?) {
            return super::gpu::depthwise(x, w, s, [pad.top, pad.bottom, pad.left, pad.right]);
        }
        // cuDNN pads symmetrically: the asymmetric ("SAME") rest is padded explicitly
        let p = pad.top.min(pad.bottom).min(pad.left).min(pad.right);
        let rest = Pad { top: pad.top - p, bottom: pad.bottom - p, left: pad.left - p, right: pad.right - p };
        let x = pad_zeros(x, rest)?;
        let c = x.dim(1)?;
        return super::gpu::conv2d(&x, w, s, p, c);
    }
    if super::native_kernels_apply(x, &[]) {
        x.contiguous()?.apply_op2(&w.contiguous()?, DwFwd { s, pad })
    } else {
        let x = pad_zeros(x, pad)?;
        x.conv2d(w, 0, s, 1, x.dim(1)?)
    }
}

/// Depthwise convolution of NCHW `x` with (C, 1, k, k) `w`, stride `s`, no padding.
pub fn depthwise_conv2d(x: &Tensor, w: &Tensor, s: usize) -> Result<Tensor> {
    depthwise_conv2d_padded(x, w, s, Pad::NONE)
}

/// Depthwise convolution with TensorFlow "SAME" padding (EfficientNet's converted weights).
pub fn depthwise_conv2d_same(x: &Tensor, w: &Tensor, s: usize) -> Result<Tensor> {
    let pad = Pad::same(x.dim(2)?, x.dim(3)?, w.dim(2)?, s);
    depthwise_conv2d_padded(x, w, s, pad)
}

/// TensorFlow "SAME" zero padding for a k x k window at stride s (asymmetric: the extra
/// pixel goes to the bottom/right).
pub fn pad_same(x: &Tensor, k: usize, s: usize) -> Result<Tensor> {
    pad_zeros(x, Pad::same(x.dim(2)?, x.dim(3)?, k, s))
}

/// `x` (NCHW) with zero rows and columns added as `p` says (a copy; `x` itself when `p` is empty).
fn pad_zeros(x: &Tensor, p: Pad) -> Result<Tensor> {
    let x = if p.top + p.bottom > 0 { x.pad_with_zeros(2, p.top, p.bottom)? } else { x.clone() };
    if p.left + p.right > 0 {
        x.pad_with_zeros(3, p.left, p.right)
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
        for (c, h, k, s, same) in [
            (3, 9, 3, 1, false),
            (4, 10, 5, 2, false),
            (2, 7, 3, 2, false),
            (3, 9, 3, 1, true),
            (2, 10, 3, 2, true),
            (2, 11, 5, 2, true),
            (3, 8, 5, 1, true),
            (2, 24, 5, 2, true),
        ] {
            let x = Var::from_tensor(&rand(&[2, c, h, h], 1, -1.0, 1.0)).unwrap();
            let w = Var::from_tensor(&rand(&[c, 1, k, k], 2, -1.0, 1.0)).unwrap();
            let conv = |x: &Tensor, w: &Tensor| if same { depthwise_conv2d_same(x, w, s) } else { depthwise_conv2d(x, w, s) };
            let ours = conv(x.as_tensor(), w.as_tensor()).unwrap();
            let xp = if same { pad_same(x.as_tensor(), k, s).unwrap() } else { x.as_tensor().clone() };
            let refr = xp.conv2d(w.as_tensor(), 0, s, 1, c).unwrap();
            assert_eq!(ours.dims(), refr.dims());
            assert!(max_rel(&ours, &refr) < 1e-5);
            let up = rand(ours.dims(), 3, -1.0, 1.0);
            let g = (ours * &up).unwrap().sum_all().unwrap().backward().unwrap();
            let gx = g.get(&x).unwrap();
            let gw = g.get(&w).unwrap();
            // check against candle's gradients where candle supports them (stride 1)
            if s == 1 {
                let g2 = (refr.clone() * &up).unwrap().sum_all().unwrap().backward();
                if let Ok(g2) = g2 {
                    assert!(max_rel(gx, g2.get(&x).unwrap()) < 1e-5);
                    assert!(max_rel(gw, g2.get(&w).unwrap()) < 1e-5);
                }
            }
            // adjoint identity: <conv(x), up> = <x, dx> since the op is linear in x
            let lhs = (conv(x.as_tensor(), w.as_tensor()).unwrap() * &up).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
            let rhs = (x.as_tensor() * gx).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
            assert!((lhs - rhs).abs() < 1e-3 * lhs.abs().max(1.0), "{lhs} {rhs}");
            let rhs_w = (w.as_tensor() * gw).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
            assert!((lhs - rhs_w).abs() < 1e-3 * lhs.abs().max(1.0), "{lhs} {rhs_w}");
        }
    }

    /// The input gradient is bit-identical to scattering w·dy into the padded plane in (oy, ky,
    /// kx, ox) order and cropping: each pixel sums its terms in (oy, kx) order from 0.
    #[test]
    fn input_gradient_has_the_bits_of_a_plain_scatter() {
        for (c, h, k, s, same) in
            [(3, 9, 3, 1, false), (2, 11, 5, 2, true), (2, 24, 5, 2, true), (3, 8, 5, 1, true), (2, 4, 3, 2, true), (1, 2, 5, 1, true)]
        {
            let x = rand(&[2, c, h, h], 5, -1.0, 1.0);
            let w = rand(&[c, 1, k, k], 6, -1.0, 1.0);
            let pad = if same { Pad::same(h, h, k, s) } else { Pad::NONE };
            let g = G::new(x.dims(), k, s, pad).unwrap();
            let dy = rand(&[2, c, g.ho, g.wo], 7, -1.0, 1.0);
            let dx = dy.apply_op2(&w, DwBwdInput { s, pad, h, w: h }).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let (dyv, wv) = (dy.flatten_all().unwrap().to_vec1::<f32>().unwrap(), w.flatten_all().unwrap().to_vec1::<f32>().unwrap());
            let (hp, wp) = (h + pad.top + pad.bottom, h + pad.left + pad.right);
            for pi in 0..2 * c {
                let mut dq = vec![0f32; hp * wp];
                for oy in 0..g.ho {
                    for ky in 0..k {
                        for kx in 0..k {
                            for ox in 0..g.wo {
                                dq[(oy * s + ky) * wp + ox * s + kx] +=
                                    wv[(pi % c) * k * k + ky * k + kx] * dyv[pi * g.ho * g.wo + oy * g.wo + ox];
                            }
                        }
                    }
                }
                for iy in 0..h {
                    for ix in 0..h {
                        let want = dq[(iy + pad.top) * wp + ix + pad.left];
                        assert_eq!(
                            dx[pi * h * h + iy * h + ix].to_bits(),
                            want.to_bits(),
                            "{c} {h} {k} {s} {same}: plane {pi} ({iy}, {ix})"
                        );
                    }
                }
            }
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
