//! Training-mode BatchNorm over NCHW as one custom op (forward: two passes over the input;
//! backward: two passes), instead of candle-nn's chain of transposes, copies and broadcast ops.
//! Per-channel sums are accumulated in f64 in a fixed order, so results are deterministic.
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

fn slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    super::contiguous_f32(s, l, "batch-norm", what)
}

fn dims(l: &Layout) -> Result<(usize, usize, usize)> {
    let d = l.dims();
    if d.len() < 2 {
        candle_core::bail!("batch-norm: input must have at least 2 dims, got {d:?}");
    }
    Ok((d[0], d[1], d[2..].iter().product()))
}

/// f64 accumulator lanes: lane j sums elements j, j + LANES, …, and the lanes are added in
/// order at the end. The order is fixed (so results do not depend on the thread count) and the
/// lanes are independent, so the compiler vectorises the loop; a single running f64 sum cannot be.
const LANES: usize = 8;

fn lanes_total(acc: [f64; LANES]) -> f64 {
    acc.iter().sum()
}

multiversion!(lane_sum(x: &[f32]) -> f64 = lane_sum_body);
multiversion!(lane_sq_dev(x: &[f32], mean: f64) -> f64 = lane_sq_dev_body);
multiversion!(lane_bwd_sums(dy: &[f32], x: &[f32], mean: f64) -> (f64, f64) = lane_bwd_sums_body);
multiversion!(mask_row(out: &mut [f32], dy: &[f32], r: &[f32], cap: f32) -> () = mask_row_body);
multiversion!(affine_row(y: &mut [f32], x: &[f32], a: f32, s: f32, cap: Option<f32>) -> () = affine_row_body);
multiversion!(affine_row_inplace(y: &mut [f32], a: f32, s: f32, cap: Option<f32>) -> () = affine_row_inplace_body);

/// One image's eval-mode BatchNorm and activation in place (`y` is c x hw): the epilogue the
/// fused convolution applies while the image is still in cache.
pub(crate) fn bn_eval_inplace(y: &mut [f32], scale: &[f32], shift: &[f32], act: Act) {
    let hw = y.len() / scale.len().max(1);
    let cap = act.cap();
    for (ch, row) in y.chunks_mut(hw).enumerate() {
        affine_row_inplace(row, scale[ch], shift[ch], cap);
    }
}
multiversion!(bwd_dx_row(out: &mut [f32], dy: &[f32], x: &[f32], act_out: Option<(&[f32], f32)>, c: [f32; 5]) -> () = bwd_dx_row_body);
multiversion!(scale_masked_row(out: &mut [f32], dy: &[f32], act_out: Option<(&[f32], f32)>, a: f32) -> () = scale_masked_row_body);

/// The activation fused into the BatchNorm kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    Identity,
    /// max(0, ·)
    Relu,
    /// min(max(0, ·), 6), as MobileNet and EfficientNet-Lite use.
    Relu6,
}

impl Act {
    /// The clamp's upper bound (`None`: no activation).
    fn cap(self) -> Option<f32> {
        match self {
            Act::Identity => None,
            Act::Relu => Some(f32::INFINITY),
            Act::Relu6 => Some(6.0),
        }
    }
}

/// `d` where the clamped output `o` lies strictly inside (0, cap), else 0, as a bit mask (a
/// select the compiler vectorises; written as a branch it stays scalar). For ReLU (cap = ∞)
/// that is `o > 0`; for ReLU6 it is PyTorch's hardtanh gradient mask.
#[inline(always)]
fn act_mask(d: f32, o: f32, cap: f32) -> f32 {
    let inside = ((o > 0.0) as u32) & ((o < cap) as u32);
    f32::from_bits(d.to_bits() & inside.wrapping_neg())
}

/// y = a·x + s, then min(max(0, ·), cap) with a fused activation.
#[inline(always)]
fn affine_row_body(y: &mut [f32], x: &[f32], a: f32, s: f32, cap: Option<f32>) {
    if let Some(cap) = cap {
        for (o, v) in y.iter_mut().zip(x) {
            *o = (v * a + s).max(0.0).min(cap);
        }
    } else {
        for (o, v) in y.iter_mut().zip(x) {
            *o = v * a + s;
        }
    }
}

/// y = act(a·y + s) in place: the arithmetic of [`affine_row_body`], so the same bits.
#[inline(always)]
fn affine_row_inplace_body(y: &mut [f32], a: f32, s: f32, cap: Option<f32>) {
    if let Some(cap) = cap {
        for o in y.iter_mut() {
            *o = (*o * a + s).max(0.0).min(cap);
        }
    } else {
        for o in y.iter_mut() {
            *o = *o * a + s;
        }
    }
}

/// out = a·dy, dy masked by the activation's output (the eval-mode input gradient).
#[inline(always)]
fn scale_masked_row_body(out: &mut [f32], dy: &[f32], act_out: Option<(&[f32], f32)>, a: f32) {
    match act_out {
        None => {
            for (o, d) in out.iter_mut().zip(dy) {
                *o = d * a;
            }
        }
        Some((r, cap)) => {
            for ((o, d), rv) in out.iter_mut().zip(dy).zip(r) {
                *o = act_mask(*d, *rv, cap) * a;
            }
        }
    }
}

/// dx = k·(dy − mean(dy) − x̂·mean(dy·x̂)), x̂ = (x − m)·inv, dy masked by the activation's
/// output; `c` = [k, mean(dy), m, inv, mean(dy·x̂)].
#[inline(always)]
fn bwd_dx_row_body(out: &mut [f32], dy: &[f32], x: &[f32], act_out: Option<(&[f32], f32)>, c: [f32; 5]) {
    let [k, md, m, inv, mdx] = c;
    match act_out {
        None => {
            for ((d, xv), dst) in dy.iter().zip(x).zip(out.iter_mut()) {
                *dst = k * (d - md - (xv - m) * inv * mdx);
            }
        }
        Some((r, cap)) => {
            for (((d, xv), rv), dst) in dy.iter().zip(x).zip(r).zip(out.iter_mut()) {
                let d = act_mask(*d, *rv, cap);
                *dst = k * (d - md - (xv - m) * inv * mdx);
            }
        }
    }
}

/// Σ x.
#[inline(always)]
fn lane_sum_body(x: &[f32]) -> f64 {
    let mut acc = [0f64; LANES];
    let mut it = x.chunks_exact(LANES);
    for ch in &mut it {
        for j in 0..LANES {
            acc[j] += ch[j] as f64;
        }
    }
    lanes_total(acc) + it.remainder().iter().map(|&v| v as f64).sum::<f64>()
}

/// Σ (x − mean)².
#[inline(always)]
fn lane_sq_dev_body(x: &[f32], mean: f64) -> f64 {
    let mut acc = [0f64; LANES];
    let mut it = x.chunks_exact(LANES);
    for ch in &mut it {
        for j in 0..LANES {
            let d = ch[j] as f64 - mean;
            acc[j] += d * d;
        }
    }
    lanes_total(acc) + it.remainder().iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>()
}

/// (Σ dy, Σ dy·(x − mean)), dy already masked by the activation. Two lane passes (the compiler
/// vectorises each; one loop with both sums it does not), then the tail element by element.
#[inline(always)]
fn lane_bwd_sums_body(dy: &[f32], x: &[f32], mean: f64) -> (f64, f64) {
    let n = dy.len().min(x.len()) / LANES * LANES;
    let (mut sd, mut sdx) = ([0f64; LANES], [0f64; LANES]);
    for c in dy[..n].chunks_exact(LANES) {
        for j in 0..LANES {
            sd[j] += c[j] as f64;
        }
    }
    for (ca, cb) in dy[..n].chunks_exact(LANES).zip(x[..n].chunks_exact(LANES)) {
        for j in 0..LANES {
            sdx[j] += ca[j] as f64 * (cb[j] as f64 - mean);
        }
    }
    let (mut a, mut b) = (lanes_total(sd), lanes_total(sdx));
    for k in n..dy.len() {
        let d = dy[k] as f64;
        a += d;
        b += d * (x[k] as f64 - mean);
    }
    (a, b)
}

/// out = dy masked by the activation's output `r` (clamped values pass no gradient).
#[inline(always)]
fn mask_row_body(out: &mut [f32], dy: &[f32], r: &[f32], cap: f32) {
    for ((o, d), rv) in out.iter_mut().zip(dy).zip(r) {
        *o = act_mask(*d, *rv, cap);
    }
}

/// Per-channel (mean, biased variance) of an NCHW buffer.
fn stats(x: &[f32], b: usize, c: usize, hw: usize) -> Vec<(f64, f64)> {
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let n = (b * hw) as f64;
            let mut s = 0f64;
            for i in 0..b {
                s += lane_sum(&x[(i * c + ch) * hw..][..hw]);
            }
            let mean = s / n;
            let mut q = 0f64;
            for i in 0..b {
                q += lane_sq_dev(&x[(i * c + ch) * hw..][..hw], mean);
            }
            (mean, q / n)
        })
        .collect()
}

/// Per-channel (mean, biased variance) the forward pass computed, kept for the running
/// statistics and the backward pass so neither walks the input again.
type SharedStats = std::sync::Arc<std::sync::Mutex<Option<Vec<(f64, f64)>>>>;

/// y = (x − mean_batch) / sqrt(var_batch + eps) · gamma + beta.
pub struct BnTrain {
    pub eps: f64,
    /// Filled by the forward pass.
    pub stats: SharedStats,
    /// Fused activation: y = min(max(0, ·), cap), and the gradient is masked where y is
    /// clamped.
    pub act: Act,
}

impl CustomOp3 for BnTrain {
    fn name(&self) -> &'static str {
        "graft-batchnorm-train"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, c, hw) = dims(l1)?;
        let x = slice(s1, l1, "input")?;
        let g = slice(s2, l2, "weight")?;
        let be = slice(s3, l3, "bias")?;
        let st = stats(x, b, c, hw);
        *self.stats.lock().expect("stats") = Some(st.clone());
        let scale: Vec<f32> = (0..c).map(|ch| (g[ch] as f64 / (st[ch].1 + self.eps).sqrt()) as f32).collect();
        let shift: Vec<f32> = (0..c).map(|ch| be[ch] - (st[ch].0 as f32) * scale[ch]).collect();
        let y = affine_batch(x, c, hw, &scale, &shift, self.act.cap());
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }
    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let act_out = self.act.cap().map(|cap| Ok::<_, candle_core::Error>((res.contiguous()?, cap))).transpose()?;
        let packed = x.apply_op3_no_bwd(gamma, &grad, &BnTrainBwd { eps: self.eps, stats: self.stats.clone(), act_out })?;
        let n = x.elem_count();
        let c = x.dim(1)?;
        let dx = packed.narrow(0, 0, n)?.reshape(x.shape())?;
        let dg = packed.narrow(0, n, c)?;
        let db = packed.narrow(0, n + c, c)?;
        Ok((Some(dx), Some(dg), Some(db)))
    }
}

/// Backward of [`BnTrain`]: returns dx (flattened) ++ dgamma ++ dbeta.
struct BnTrainBwd {
    eps: f64,
    stats: SharedStats,
    /// With a fused activation: the forward output (whose clamped values mask the incoming
    /// gradient) and the clamp's upper bound.
    act_out: Option<(Tensor, f32)>,
}

impl CustomOp3 for BnTrainBwd {
    fn name(&self) -> &'static str {
        "graft-batchnorm-train-bwd"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, c, hw) = dims(l1)?;
        let x = slice(s1, l1, "input")?;
        let g = slice(s2, l2, "weight")?;
        let dy = slice(s3, l3, "grad")?;
        let act_guard = self.act_out.as_ref().map(|(r, cap)| (r.storage_and_layout(), *cap));
        let ro: Option<(&[f32], f32)> = match &act_guard {
            None => None,
            Some(((rs, rl), cap)) => {
                let candle_core::Storage::Cpu(rs) = &**rs else { candle_core::bail!("batch-norm: activation output must be on the CPU") };
                Some((slice(rs, rl, "activation output")?, *cap))
            }
        };
        let st = match self.stats.lock().expect("stats").clone() {
            Some(st) if st.len() == c => st,
            _ => stats(x, b, c, hw),
        };
        let n = (b * hw) as f64;
        // per channel: sum(dy), sum(dy * xhat)
        let sums: Vec<(f64, f64)> = (0..c)
            .into_par_iter()
            .map_init(
                || vec![0f32; if ro.is_some() { hw } else { 0 }],
                |masked, ch| {
                    let (mean, var) = st[ch];
                    let inv = 1.0 / (var + self.eps).sqrt();
                    let (mut sd, mut sdx) = (0f64, 0f64);
                    for i in 0..b {
                        let o = (i * c + ch) * hw;
                        let d: &[f32] = match ro {
                            None => &dy[o..o + hw],
                            Some((r, cap)) => {
                                mask_row(masked, &dy[o..o + hw], &r[o..o + hw], cap);
                                masked
                            }
                        };
                        let (a, d) = lane_bwd_sums(d, &x[o..o + hw], mean);
                        sd += a;
                        sdx += d;
                    }
                    (sd, sdx * inv)
                },
            )
            .collect();
        // after dx: sum(dy * xhat), then sum(dy), per channel
        let rest: Vec<f32> = sums.iter().map(|s| s.1 as f32).chain(sums.iter().map(|s| s.0 as f32)).collect();
        // dx = gamma * inv / n * (n*dy - sum(dy) - xhat * sum(dy*xhat))
        // per channel: (gamma * inv, mean(dy), mean(dy * xhat), inv)
        let coef: Vec<(f32, f32, f32, f32)> = (0..c)
            .map(|ch| {
                let inv = 1.0 / (st[ch].1 + self.eps).sqrt();
                ((g[ch] as f64 * inv) as f32, (sums[ch].0 / n) as f32, (sums[ch].1 / n) as f32, inv as f32)
            })
            .collect();
        let means: Vec<f32> = st.iter().map(|s| s.0 as f32).collect();
        // dx, then the two per-channel sums, in one buffer (no reallocation to append them)
        let out = super::par_zeroed(
            x.len() + 2 * c,
            c * hw,
            || (),
            |_, i, dxi| {
                if i >= b {
                    let at = (i - b) * c * hw;
                    dxi.copy_from_slice(&rest[at..at + dxi.len()]);
                    return;
                }
                for ch in 0..c {
                    let (k, md, mdx, inv) = coef[ch];
                    let m = means[ch];
                    let o = (i * c + ch) * hw;
                    bwd_dx_row(
                        &mut dxi[ch * hw..(ch + 1) * hw],
                        &dy[o..o + hw],
                        &x[o..o + hw],
                        ro.map(|(r, cap)| (&r[o..o + hw], cap)),
                        [k, md, m, inv, mdx],
                    );
                }
            },
        );
        Ok((CpuStorage::F32(out), Shape::from(x.len() + 2 * c)))
    }
}

/// y = act(scale · x + shift) per channel over a batch of NCHW images (c channels of hw
/// pixels each), one image per task.
fn affine_batch(x: &[f32], c: usize, hw: usize, scale: &[f32], shift: &[f32], cap: Option<f32>) -> Vec<f32> {
    super::par_zeroed(
        x.len(),
        c * hw,
        || (),
        |_, i, yi| {
            let xi = &x[i * c * hw..(i + 1) * c * hw];
            for ch in 0..c {
                affine_row(&mut yi[ch * hw..(ch + 1) * hw], &xi[ch * hw..(ch + 1) * hw], scale[ch], shift[ch], cap);
            }
        },
    )
}

/// BatchNorm over channels of NCHW input with running statistics; variable names match
/// PyTorch's (`weight`, `bias`, `running_mean`, `running_var`).
#[derive(Debug, Clone)]
pub struct BatchNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub running_mean: candle_core::Var,
    pub running_var: candle_core::Var,
    pub eps: f64,
    pub momentum: f64,
}

impl BatchNorm {
    pub fn new(c: usize, vb: candle_nn::VarBuilder) -> Result<Self> {
        Self::with_eps(c, 1e-5, vb)
    }

    pub fn with_eps(c: usize, eps: f64, vb: candle_nn::VarBuilder) -> Result<Self> {
        use candle_nn::Init;
        let running_mean = vb.get_with_hints(c, "running_mean", Init::Const(0.))?;
        let running_var = vb.get_with_hints(c, "running_var", Init::Const(1.))?;
        Ok(BatchNorm {
            weight: vb.get_with_hints(c, "weight", Init::Const(1.))?,
            bias: vb.get_with_hints(c, "bias", Init::Const(0.))?,
            running_mean: candle_core::Var::from_tensor(&running_mean)?,
            running_var: candle_core::Var::from_tensor(&running_var)?,
            eps,
            momentum: 0.1,
        })
    }

    fn bshape(&self, x: &Tensor) -> Vec<usize> {
        x.dims().iter().enumerate().map(|(i, &d)| if i == 1 { d } else { 1 }).collect()
    }

    /// Train mode normalises with batch statistics and updates the running ones; eval mode
    /// uses the running statistics and, being frozen, detaches the affine parameters.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_act(x, train, Act::Identity)
    }

    /// The eval-mode affine map (scale, shift) per channel, as [`BatchNorm::forward_act`]
    /// computes it outside train mode.
    pub fn eval_affine(&self) -> Result<(Vec<f32>, Vec<f32>)> {
        let (scale, shift) = self.eval_scale_shift()?;
        Ok((scale.to_vec1()?, shift.to_vec1()?))
    }

    /// scale = γ / sqrt(running_var + eps), shift = β − running_mean · scale (detached).
    fn eval_scale_shift(&self) -> Result<(Tensor, Tensor)> {
        let scale = (self.weight.detach() / (self.running_var.as_detached_tensor() + self.eps)?.sqrt()?)?;
        let shift = (self.bias.detach() - (self.running_mean.as_detached_tensor() * &scale)?)?;
        Ok((scale, shift))
    }

    /// `relu(forward_t(x))`, with the ReLU fused into the kernel on the CPU.
    pub fn forward_t_relu(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_act(x, train, Act::Relu)
    }

    /// `act(forward_t(x))`, the activation fused into graft's kernel on the CPU (train and eval
    /// mode) and on the GPU (train mode, `cudnn` feature); elsewhere candle's ops. The output is
    /// in x's type, stored as activations are ([`super::store_act`]).
    pub fn forward_act(&self, x: &Tensor, train: bool, act: Act) -> Result<Tensor> {
        super::store_act(self.normalise_act(x, train, act)?)
    }

    fn normalise_act(&self, x: &Tensor, train: bool, act: Act) -> Result<Tensor> {
        let c = x.dim(1)?;
        let fast = super::native_kernels_apply(x, &[]);
        if !train && x.dtype() != DType::F32 {
            // a bfloat16 activation in eval mode (a frozen group): float32 arithmetic, stored back
            return self.forward_act(&x.to_dtype(DType::F32)?, false, act)?.to_dtype(x.dtype());
        }
        if !train {
            let (scale, shift) = self.eval_scale_shift()?;
            if fast {
                let op = BnEval { scale: scale.to_vec1()?, shift: shift.to_vec1()?, act };
                return x.contiguous()?.apply_op1(op);
            }
            let shape = self.bshape(x);
            let y = x.broadcast_mul(&scale.reshape(shape.clone())?)?.broadcast_add(&shift.reshape(shape)?)?;
            return apply_act(y, act);
        }
        if super::gpu::act_applies(x) {
            let running = (self.running_mean.as_tensor(), self.running_var.as_tensor());
            let (y, rm, rv) = super::gpu::batchnorm_train(x, &self.weight, &self.bias, running, self.eps, self.momentum, act.cap())?;
            self.running_mean.set(&rm)?;
            self.running_var.set(&rv)?;
            return Ok(y);
        }
        let (y, mean, var) = if fast {
            let x = x.contiguous()?;
            let shared = SharedStats::default();
            let y = x.apply_op3(&self.weight, &self.bias, BnTrain { eps: self.eps, stats: shared.clone(), act })?;
            let st = shared.lock().expect("stats").clone().expect("the forward pass fills the statistics");
            let n = (x.elem_count() / c) as f64;
            let unb = if n > 1.0 { n / (n - 1.0) } else { 1.0 };
            let mean: Vec<f32> = st.iter().map(|s| s.0 as f32).collect();
            let var: Vec<f32> = st.iter().map(|s| (s.1 * unb) as f32).collect();
            (y, Tensor::from_vec(mean, c, x.device())?, Tensor::from_vec(var, c, x.device())?)
        } else {
            let shape = self.bshape(x);
            let axes: Vec<usize> = (0..x.rank()).filter(|&i| i != 1).collect();
            let n = (x.elem_count() / c) as f64;
            let mean = x.mean_keepdim(axes.clone())?;
            let xc = x.broadcast_sub(&mean)?;
            let var = xc.sqr()?.mean_keepdim(axes)?;
            let y = xc
                .broadcast_div(&(&var + self.eps)?.sqrt()?)?
                .broadcast_mul(&self.weight.reshape(shape.clone())?)?
                .broadcast_add(&self.bias.reshape(shape)?)?;
            let unb = if n > 1.0 { n / (n - 1.0) } else { 1.0 };
            let y = apply_act(y, act)?;
            (y, mean.flatten_all()?.detach(), (var.flatten_all()?.detach() * unb)?)
        };
        let m = self.momentum;
        self.running_mean.set(&((self.running_mean.as_tensor() * (1.0 - m))? + (mean * m)?)?)?;
        self.running_var.set(&((self.running_var.as_tensor() * (1.0 - m))? + (var * m)?)?)?;
        Ok(y)
    }
}

/// candle's ops for `act` (the reference and non-CPU path).
fn apply_act(y: Tensor, act: Act) -> Result<Tensor> {
    match act {
        Act::Identity => Ok(y),
        Act::Relu => y.relu(),
        Act::Relu6 => y.clamp(0f32, 6f32),
    }
}

/// Eval-mode BatchNorm with its activation as one pass: y = act(scale·x + shift) per channel
/// (the same two roundings as candle's broadcast multiply then add, so the same bits), and
/// dx = scale·dy masked by the activation. The affine parameters are frozen in eval mode, so
/// there is no gradient for them.
struct BnEval {
    scale: Vec<f32>,
    shift: Vec<f32>,
    act: Act,
}

impl candle_core::CustomOp1 for BnEval {
    fn name(&self) -> &'static str {
        "graft-batchnorm-eval"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout) -> Result<(CpuStorage, Shape)> {
        let (_, c, hw) = dims(l1)?;
        if c != self.scale.len() {
            candle_core::bail!("batch-norm: input has {c} channels, the layer {}", self.scale.len());
        }
        let x = slice(s1, l1, "input")?;
        let y = affine_batch(x, c, hw, &self.scale, &self.shift, self.act.cap());
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }
    fn bwd(&self, _x: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let grad = grad.contiguous()?;
        let res = res.contiguous()?;
        Ok(Some(grad.apply_op2_no_bwd(&res, &BnEvalBwd { scale: self.scale.clone(), cap: self.act.cap() })?))
    }
}

/// dx of [`BnEval`] from (dy, its output).
struct BnEvalBwd {
    scale: Vec<f32>,
    cap: Option<f32>,
}

impl candle_core::CustomOp2 for BnEvalBwd {
    fn name(&self) -> &'static str {
        "graft-batchnorm-eval-bwd"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (_, c, hw) = dims(l1)?;
        let dy = slice(s1, l1, "grad")?;
        let r = slice(s2, l2, "output")?;
        let dx = super::par_zeroed(
            dy.len(),
            c * hw,
            || (),
            |_, i, dxi| {
                for ch in 0..c {
                    let o = (i * c + ch) * hw;
                    let ro = self.cap.map(|cap| (&r[o..o + hw], cap));
                    scale_masked_row(&mut dxi[ch * hw..(ch + 1) * hw], &dy[o..o + hw], ro, self.scale[ch]);
                }
            },
        );
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};
    use candle_nn::ModuleT;

    use crate::kernels::testutil::max_rel;

    fn rand(shape: &[usize], seed: u64) -> Tensor {
        crate::kernels::testutil::rand(shape, seed, -2.0, 3.0)
    }

    /// Forward, gradients and running statistics agree with candle-nn's BatchNorm.
    #[test]
    fn matches_candle_nn_batchnorm() {
        let dev = Device::Cpu;
        let (b, c, h) = (4, 3, 5);
        let vm1 = candle_nn::VarMap::new();
        let ours = BatchNorm::new(c, candle_nn::VarBuilder::from_varmap(&vm1, candle_core::DType::F32, &dev)).unwrap();
        let vm2 = candle_nn::VarMap::new();
        let cfg = candle_nn::BatchNormConfig { eps: 1e-5, remove_mean: true, affine: true, momentum: 0.1 };
        let refr = candle_nn::batch_norm(c, cfg, candle_nn::VarBuilder::from_varmap(&vm2, candle_core::DType::F32, &dev)).unwrap();
        let gamma = rand(&[c], 7);
        for vm in [&vm1, &vm2] {
            let d = vm.data().lock().unwrap();
            d["weight"].set(&gamma).unwrap();
            d["bias"].set(&rand(&[c], 8)).unwrap();
        }
        let x = Var::from_tensor(&rand(&[b, c, h, h], 1)).unwrap();
        let up = rand(&[b, c, h, h], 2);
        let y1 = ours.forward_t(x.as_tensor(), true).unwrap();
        let y2 = refr.forward_t(x.as_tensor(), true).unwrap();
        assert!(max_rel(&y1, &y2) < 1e-5);
        let g1 = (y1 * &up).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (y2 * &up).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(max_rel(g1.get(&x).unwrap(), g2.get(&x).unwrap()) < 1e-4);
        let (w1, w2) = (vm1.data().lock().unwrap()["weight"].clone(), vm2.data().lock().unwrap()["weight"].clone());
        assert!(max_rel(g1.get(&w1).unwrap(), g2.get(&w2).unwrap()) < 1e-4);
        let rv1 = vm1.data().lock().unwrap()["running_var"].as_tensor().clone();
        let rv2 = vm2.data().lock().unwrap()["running_var"].as_tensor().clone();
        assert!(max_rel(&rv1, &rv2) < 1e-5);
        let e1 = ours.forward_t(x.as_tensor(), false).unwrap();
        let e2 = refr.forward_t(x.as_tensor(), false).unwrap();
        assert!(max_rel(&e1, &e2) < 1e-5);
    }

    /// The fused BatchNorm + ReLU (and + ReLU6) gives act(BatchNorm(x)) and the same gradients
    /// as the separate ops (input, weight and bias) in train mode, and the same output and
    /// input gradient in eval mode (frozen: no parameter gradients).
    #[test]
    fn fused_activations_match_separate_ops() {
        let dev = Device::Cpu;
        let (b, c, h) = (4, 3, 5);
        for act in [Act::Relu, Act::Relu6] {
            let separate = |y: Tensor| if act == Act::Relu { y.relu().unwrap() } else { y.clamp(0f32, 6f32).unwrap() };
            let vm1 = candle_nn::VarMap::new();
            let fused = BatchNorm::new(c, candle_nn::VarBuilder::from_varmap(&vm1, candle_core::DType::F32, &dev)).unwrap();
            let vm2 = candle_nn::VarMap::new();
            let sep = BatchNorm::new(c, candle_nn::VarBuilder::from_varmap(&vm2, candle_core::DType::F32, &dev)).unwrap();
            // large and negative gammas: outputs below 0 and above 6 in every channel
            let gamma = Tensor::new(&[5.0f32, -4.5, 4.0], &dev).unwrap();
            let beta = Tensor::new(&[1.0f32, 2.0, 3.0], &dev).unwrap();
            for vm in [&vm1, &vm2] {
                let d = vm.data().lock().unwrap();
                d["weight"].set(&gamma).unwrap();
                d["bias"].set(&beta).unwrap();
            }
            let x = Var::from_tensor(&rand(&[b, c, h, h], 1)).unwrap();
            let up = rand(&[b, c, h, h], 2);
            let y1 = fused.forward_act(x.as_tensor(), true, act).unwrap();
            let y2 = separate(sep.forward_t(x.as_tensor(), true).unwrap());
            assert!(max_rel(&y1, &y2) < 1e-6, "{act:?}");
            let v = y1.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert!(v.iter().filter(|v| **v == 0.0).count() > 10, "{act:?}: the input must exercise the lower clamp");
            if act == Act::Relu6 {
                assert!(v.iter().filter(|v| **v == 6.0).count() > 3, "the input must exercise the upper clamp");
            }
            let g1 = (y1 * &up).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (y2 * &up).unwrap().sum_all().unwrap().backward().unwrap();
            assert!(max_rel(g1.get(&x).unwrap(), g2.get(&x).unwrap()) < 1e-5, "{act:?}");
            for name in ["weight", "bias"] {
                let (v1, v2) = (vm1.data().lock().unwrap()[name].clone(), vm2.data().lock().unwrap()[name].clone());
                assert!(max_rel(g1.get(&v1).unwrap(), g2.get(&v2).unwrap()) < 1e-5, "{act:?} {name}");
            }
            // eval mode: the same bits as candle's broadcast multiply, add and activation
            let e1 = fused.forward_act(x.as_tensor(), false, act).unwrap();
            let e2 = separate(sep.forward_t(x.as_tensor(), false).unwrap());
            assert_eq!(e1.flatten_all().unwrap().to_vec1::<f32>().unwrap(), e2.flatten_all().unwrap().to_vec1::<f32>().unwrap());
            let g1 = (e1 * &up).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (e2 * &up).unwrap().sum_all().unwrap().backward().unwrap();
            assert!(max_rel(g1.get(&x).unwrap(), g2.get(&x).unwrap()) < 1e-6, "{act:?} eval dx");
        }
    }
}
