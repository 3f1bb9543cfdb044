//! Fast CPU kernels as candle custom ops. candle 0.11's CPU conv2d backward goes through a
//! direct conv-transpose and a large-kernel convolution, which made training 6-8x slower than
//! PyTorch; these ops use im2col + packed GEMM (the `gemm` crate candle itself uses) for the
//! forward pass and both gradients, parallel over images with a fixed reduction order, so
//! results do not depend on the thread count. Non-CPU devices use candle's own conv2d.
mod batchnorm;
mod conv;
mod depthwise;
mod pool;
pub use batchnorm::BatchNorm;
pub use conv::conv2d;
pub use depthwise::{depthwise_conv2d, pad_same};
pub use pool::{max_pool, max_pool2};

/// `GRAFT_REFERENCE_KERNELS=1` runs candle's own conv2d and a tensor-op BatchNorm instead of
/// graft's kernels (for before/after benchmarks and cross-checks).
pub fn use_reference_kernels() -> bool {
    static FLAG: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FLAG.get_or_init(|| std::env::var("GRAFT_REFERENCE_KERNELS").map(|v| v == "1").unwrap_or(false))
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
    debug_assert!(a.len() >= (m - 1) * a_rs + (k.max(1) - 1) * a_cs + 1 || k == 0);
    debug_assert!(b.len() >= (k.max(1) - 1) * b_rs + (n - 1) * b_cs + 1 || k == 0);
    debug_assert!(c.len() > (m - 1) * c_rs + (n - 1) * c_cs);
    // SAFETY: the slices cover every index the strides reach (checked above in debug builds,
    // and guaranteed by the callers' shape arithmetic).
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

#[cfg(test)]
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
