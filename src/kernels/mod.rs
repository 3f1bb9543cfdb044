//! Fast CPU kernels as candle custom ops. candle 0.11's CPU conv2d backward goes through a
//! direct conv-transpose and a large-kernel convolution, which made training 6-8x slower than
//! PyTorch; these ops use im2col + packed GEMM (the `gemm` crate candle itself uses) for the
//! forward pass and both gradients, parallel over images with a fixed reduction order, so
//! results do not depend on the thread count. Non-CPU devices use candle's own conv2d.

/// Compiles `$body` (an `#[inline(always)]` function) again with AVX-512 and with AVX2 enabled
/// and picks the widest the CPU has at run time. Rust never contracts a multiply and an add into
/// an FMA on its own and the bodies fix their summation order, so all three give the same bits.
macro_rules! multiversion {
    ($name:ident($($a:ident: $t:ty),*) -> $r:ty = $body:ident) => {
        fn $name($($a: $t),*) -> $r {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                unsafe fn v4($($a: $t),*) -> $r {
                    $body($($a),*)
                }
                #[target_feature(enable = "avx2")]
                unsafe fn v3($($a: $t),*) -> $r {
                    $body($($a),*)
                }
                if std::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU supports AVX-512F (checked just above).
                    return unsafe { v4($($a),*) };
                }
                if std::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU supports AVX2 (checked just above).
                    return unsafe { v3($($a),*) };
                }
            }
            $body($($a),*)
        }
    };
}

mod batchnorm;
mod conv;
mod depthwise;
mod direct;
mod eltwise;
#[cfg(feature = "cudnn")]
pub mod gpu;
mod pool;
/// Without the `cudnn` feature there are no GPU kernels: nothing applies, and candle's ops run
/// on any non-CPU device.
#[cfg(not(feature = "cudnn"))]
pub mod gpu {
    use candle_core::{Result, Tensor};
    pub(crate) fn applies(_: &Tensor) -> bool {
        false
    }
    pub(crate) fn act_applies(_: &Tensor) -> bool {
        false
    }
    fn absent() -> candle_core::Error {
        candle_core::Error::Msg("graft was built without the `cudnn` feature (scripts/build-cuda.sh builds it)".into())
    }
    pub fn conv2d(_: &Tensor, _: &Tensor, _: usize, _: usize, _: usize) -> Result<Tensor> {
        Err(absent())
    }
    pub fn add_relu(_: &Tensor, _: &Tensor) -> Result<Tensor> {
        Err(absent())
    }
    pub fn max_pool(_: &Tensor, _: usize, _: usize, _: usize) -> Result<Tensor> {
        Err(absent())
    }
    pub(crate) fn depthwise_applies(_: usize) -> bool {
        false
    }
    pub fn depthwise(_: &Tensor, _: &Tensor, _: usize, _: [usize; 4]) -> Result<Tensor> {
        Err(absent())
    }
    pub fn batchnorm_train(
        _: &Tensor,
        _: &Tensor,
        _: &Tensor,
        _: (&Tensor, &Tensor),
        _: f64,
        _: f64,
        _: Option<f32>,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        Err(absent())
    }
    pub fn self_check(_: &candle_core::Device) -> Result<Vec<(String, f32, f32)>> {
        Err(absent())
    }
    /// (The fused GPU AdamW step's parameters; never run without the feature.)
    pub struct AdamW {
        pub b1: f32,
        pub c1: f32,
        pub b2: f32,
        pub c2: f32,
        pub ibc1: f32,
        pub ibc2: f32,
        pub eps: f32,
        pub decay: f32,
        pub lr: f32,
    }
    impl candle_core::CustomOp3 for AdamW {
        fn name(&self) -> &'static str {
            "graft-cuda-adamw"
        }
        fn cpu_fwd(
            &self,
            _: &candle_core::CpuStorage,
            _: &candle_core::Layout,
            _: &candle_core::CpuStorage,
            _: &candle_core::Layout,
            _: &candle_core::CpuStorage,
            _: &candle_core::Layout,
        ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
            Err(absent())
        }
    }
}
pub use batchnorm::{Act, BatchNorm};
pub use conv::{conv2d, conv2d_bn_add_relu_eval, conv2d_bn_eval};
pub use depthwise::{depthwise_conv2d, depthwise_conv2d_padded, depthwise_conv2d_same, pad_same, Pad};
pub use eltwise::{add_channel_bias, add_relu};
pub use pool::{max_pool, max_pool2, upsample_nearest};

use candle_core::{DType, Module, Tensor};
use std::cell::Cell;

/// Arithmetic precision of convolutions and linear layers. `Bf16` is mixed precision: weights
/// stay float32 (the optimiser's master copy) and are cast to bfloat16 for each convolution and
/// matmul. Inside a backbone's forward pass ([`activation_scope`]) on a GPU that graft's kernels
/// serve (`cudnn` feature), activations stay bfloat16 from one block to the next: convolutions
/// return bfloat16, and BatchNorm (float32 statistics, parameters and arithmetic), its
/// activation and the residual add + ReLU read and write bfloat16; the backbone's outputs come
/// back float32, so heads, losses, decoders and the optimiser see float32. Elsewhere each
/// convolution and matmul casts its result back to float32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize, schemars::JsonSchema, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    Bf16,
}

impl Precision {
    pub fn parse(s: &str) -> Option<Precision> {
        match s {
            "f32" | "fp32" | "float32" => Some(Precision::F32),
            "bf16" | "bfloat16" => Some(Precision::Bf16),
            _ => None,
        }
    }
    pub fn as_str(&self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }
    pub fn is_f32(&self) -> bool {
        *self == Precision::F32
    }
}

thread_local! {
    static PRECISION: Cell<Precision> = const { Cell::new(Precision::F32) };
}

/// The precision the current thread's forward passes use.
pub fn precision() -> Precision {
    PRECISION.with(|p| p.get())
}

/// Sets this thread's precision until the guard is dropped (then restores the previous one).
pub fn set_precision(p: Precision) -> PrecisionGuard {
    PrecisionGuard(PRECISION.with(|c| c.replace(p)))
}

pub struct PrecisionGuard(Precision);

impl Drop for PrecisionGuard {
    fn drop(&mut self) {
        PRECISION.with(|c| c.set(self.0));
    }
}

thread_local! {
    static IN_BACKBONE: Cell<bool> = const { Cell::new(false) };
}

/// Marks this thread as inside a backbone's forward pass (where activations may stay bfloat16)
/// until the guard is dropped. The backbone's forward functions hold one and return float32.
pub fn activation_scope() -> ScopeGuard {
    ScopeGuard(IN_BACKBONE.with(|c| c.replace(true)))
}

pub struct ScopeGuard(bool);

impl Drop for ScopeGuard {
    fn drop(&mut self) {
        IN_BACKBONE.with(|c| c.set(self.0));
    }
}

fn in_backbone() -> bool {
    IN_BACKBONE.with(|c| c.get())
}

/// Whether activations on `x`'s device are bfloat16 here: mixed precision, inside a backbone's
/// forward pass, on a GPU whose BatchNorm and add + ReLU graft's kernels serve in bfloat16.
/// `GRAFT_BF16_PER_OP=1` turns this off (each convolution's result cast back to float32, as
/// before; on the CPU, no rounding of the stored activations), for before/after figures.
pub(crate) fn bf16_activations(x: &Tensor) -> bool {
    precision() == Precision::Bf16 && in_backbone() && gpu::act_applies(x) && !bf16_per_op()
}

fn bf16_per_op() -> bool {
    static FLAG: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FLAG.get_or_init(|| std::env::var("GRAFT_BF16_PER_OP").map(|v| v == "1").unwrap_or(false))
}

/// An activation as it is stored between two ops of a backbone. Where activations are bfloat16
/// on the GPU, the ops already return bfloat16 and this does nothing; on the CPU in mixed
/// precision (inside a backbone) the value is rounded to bfloat16 and kept float32, so the CPU
/// reproduces the GPU's numerics for parity checks; otherwise `y` itself.
pub(crate) fn store_act(y: Tensor) -> candle_core::Result<Tensor> {
    if precision() == Precision::Bf16 && in_backbone() && y.device().is_cpu() && y.dtype() == DType::F32 && !bf16_per_op() {
        y.to_dtype(DType::BF16)?.to_dtype(DType::F32)
    } else {
        Ok(y)
    }
}

/// `a + b` of two activations (an inverted-residual block's skip), stored as activations are.
pub fn add_act(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    store_act((a + b.to_dtype(a.dtype())?)?)
}

/// `op(a, b)` (`a` an activation, `b` a float32 weight) in this thread's precision; `None` (run
/// the float32 path) outside mixed precision. Where activations are bfloat16 ([`bf16_activations`])
/// both operands go in as bfloat16 and the result stays bfloat16. Otherwise both are cast to
/// bfloat16 and the result back to float32. candle's CPU backend has no bfloat16 matmul, so on
/// the CPU the same numerics are emulated: operands and result are rounded to bfloat16 and the
/// arithmetic runs in float32 (as tensor cores accumulate in float32). That is for parity checks
/// only; it is no faster than float32.
pub(crate) fn mixed<F>(a: &Tensor, b: &Tensor, op: F) -> candle_core::Result<Option<Tensor>>
where
    F: Fn(&Tensor, &Tensor) -> candle_core::Result<Tensor>,
{
    if precision() != Precision::Bf16 {
        return Ok(None);
    }
    if bf16_activations(a) {
        return Ok(Some(op(&a.to_dtype(DType::BF16)?, &b.to_dtype(DType::BF16)?)?));
    }
    if a.dtype() != DType::F32 {
        return Ok(None);
    }
    if a.device().is_cpu() {
        let round = |t: &Tensor| t.to_dtype(DType::BF16)?.to_dtype(DType::F32);
        Ok(Some(round(&op(&round(a)?, &round(b)?)?)?))
    } else {
        Ok(Some(op(&a.to_dtype(DType::BF16)?, &b.to_dtype(DType::BF16)?)?.to_dtype(DType::F32)?))
    }
}

/// A linear layer's forward pass in this thread's precision (bias added in float32).
/// Its output is float32 (a head's logits), also where activations are bfloat16.
pub fn linear_forward(l: &candle_nn::Linear, x: &Tensor) -> candle_core::Result<Tensor> {
    let y = mixed(x, l.weight(), |x, w| x.broadcast_matmul(&w.t()?))?;
    match y {
        Some(y) => match l.bias() {
            Some(b) => y.to_dtype(DType::F32)?.broadcast_add(b),
            None => y.to_dtype(DType::F32),
        },
        None if x.dtype() != DType::F32 => linear_forward(l, &x.to_dtype(DType::F32)?),
        None => l.forward(x),
    }
}

/// Whether graft's own kernels serve an op on `x` (and the float32 `others`): float32 on the CPU,
/// unless `GRAFT_REFERENCE_KERNELS=1` asks for candle's ops.
pub(crate) fn native_kernels_apply(x: &Tensor, others: &[&Tensor]) -> bool {
    x.device().is_cpu()
        && x.dtype() == candle_core::DType::F32
        && others.iter().all(|t| t.dtype() == candle_core::DType::F32)
        && !use_reference_kernels()
}

/// `GRAFT_REFERENCE_KERNELS=1` runs candle's own conv2d and a tensor-op BatchNorm instead of
/// graft's kernels (for before/after benchmarks and cross-checks).
pub fn use_reference_kernels() -> bool {
    static FLAG: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FLAG.get_or_init(|| std::env::var("GRAFT_REFERENCE_KERNELS").map(|v| v == "1").unwrap_or(false))
}

/// A vector of `n` floats built in parallel chunks of `chunk` (the last may be shorter): each
/// chunk is zeroed inside its own task, then handed to `f(state, chunk index, chunk)` with a
/// per-thread `state` from `init`. `vec![0f32; n]` instead zeroes all of it in one serial
/// memset on the calling thread whenever the allocator reuses memory (7–8% of a ResNet-8
/// training step on 2 cores was such memsets); here the zeroing is split over the threads and
/// the chunk is still in cache when `f` fills it.
pub(crate) fn par_zeroed<T: Send>(
    n: usize,
    chunk: usize,
    init: impl Fn() -> T + Sync + Send,
    f: impl Fn(&mut T, usize, &mut [f32]) + Sync + Send,
) -> Vec<f32> {
    use rayon::prelude::*;
    use std::mem::MaybeUninit;
    let mut v: Vec<f32> = Vec::with_capacity(n);
    v.spare_capacity_mut()[..n].par_chunks_mut(chunk.max(1)).enumerate().for_each_init(init, |st, (i, c)| {
        for e in c.iter_mut() {
            e.write(0.0);
        }
        // SAFETY: every element of `c` was initialised just above, and MaybeUninit<f32> has
        // the layout of f32.
        let c = unsafe { &mut *(c as *mut [MaybeUninit<f32>] as *mut [f32]) };
        f(st, i, c);
    });
    // SAFETY: the chunks cover indices 0..n and each was initialised in its task.
    unsafe { v.set_len(n) };
    v
}

/// The f32 data of a contiguous CPU tensor; `op` and `what` name it in the error.
pub(crate) fn contiguous_f32<'a>(
    s: &'a candle_core::CpuStorage,
    l: &candle_core::Layout,
    op: &str,
    what: &str,
) -> candle_core::Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{op}: {what} must be contiguous"),
    }
}

/// C (m x n) = A (m x k) · B (k x n) (+ C when `acc`), with explicit row/column strides.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    a_rs: usize,
    a_cs: usize,
    b: &[f32],
    b_rs: usize,
    b_cs: usize,
    c: &mut [f32],
    c_rs: usize,
    c_cs: usize,
    acc: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    // Bounds, checked in every build (three multiplications against an O(mnk) product): the
    // slices must cover every index the strides reach, or the unchecked GEMM below would read
    // or write out of bounds.
    let reach = |rows: usize, rs: usize, cols: usize, cs: usize| (rows - 1) * rs + (cols - 1) * cs + 1;
    assert!(
        k == 0 || a.len() >= reach(m, a_rs, k, a_cs),
        "sgemm: A holds {} values, the strides reach {}",
        a.len(),
        reach(m, a_rs, k.max(1), a_cs)
    );
    assert!(
        k == 0 || b.len() >= reach(k, b_rs, n, b_cs),
        "sgemm: B holds {} values, the strides reach {}",
        b.len(),
        reach(k.max(1), b_rs, n, b_cs)
    );
    assert!(c.len() >= reach(m, c_rs, n, c_cs), "sgemm: C holds {} values, the strides reach {}", c.len(), reach(m, c_rs, n, c_cs));
    // SAFETY: the asserts above guarantee every index the strides reach lies inside the slices.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            c_cs as isize,
            c_rs as isize,
            acc,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            if acc { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

#[cfg(any(test, feature = "cudnn"))]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) mod testutil {
    use candle_core::{Device, Tensor};

    /// A seeded uniform tensor in [lo, hi).
    pub fn rand(shape: &[usize], seed: u64, lo: f32, hi: f32) -> Tensor {
        use rand::Rng;
        let mut r = crate::util::rng_for(seed, "kernel-test");
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| r.random_range(lo..hi)).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    /// max |a - b| / max |b|.
    pub fn max_rel(a: &Tensor, b: &Tensor) -> f32 {
        let d = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        let s = b.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        d / s.max(1e-6)
    }
}

#[cfg(test)]
mod precision_tests {
    use super::*;

    #[test]
    fn precision_parses_and_round_trips() {
        assert_eq!(Precision::parse("bf16"), Some(Precision::Bf16));
        assert_eq!(Precision::parse("f32"), Some(Precision::F32));
        assert_eq!(Precision::parse("fp8"), None);
        let j = serde_json::to_string(&Precision::Bf16).unwrap();
        assert_eq!(j, "\"bf16\"");
    }
}

#[cfg(test)]
mod sgemm_tests {
    use super::sgemm;

    #[test]
    fn sgemm_multiplies_with_strides() {
        // A = [[1, 2], [3, 4]] row-major, B = [[5, 6], [7, 8]] given column-major
        let a = [1.0, 2.0, 3.0, 4.0];
        let b = [5.0, 7.0, 6.0, 8.0];
        let mut c = [0.0f32; 4];
        sgemm(2, 2, 2, &a, 2, 1, &b, 1, 2, &mut c, 2, 1, false);
        assert_eq!(c, [19.0, 22.0, 43.0, 50.0]);
    }

    #[test]
    #[should_panic(expected = "sgemm: C holds 3 values")]
    fn sgemm_refuses_a_short_output_in_release_too() {
        let (a, b) = ([1.0f32; 4], [1.0f32; 4]);
        let mut c = [0.0f32; 3];
        sgemm(2, 2, 2, &a, 2, 1, &b, 2, 1, &mut c, 2, 1, false);
    }
}
