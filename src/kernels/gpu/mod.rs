//! graft's CUDA kernels (`--features cudnn`): every convolution through cuDNN (forward and both
//! gradients, grouped and depthwise ones included: candle 0.11 splits a grouped convolution into
//! one convolution a group, and computes the input gradient with its direct conv-transpose
//! kernel), and fused element-wise kernels for training-mode BatchNorm with its activation,
//! residual add + ReLU and AdamW (`kernels.cu`, compiled to PTX by build.rs with nvcc). They are
//! candle custom ops, like the CPU kernels beside this module, so autograd needs nothing else.
//!
//! Reductions run in a fixed order (no atomics), and the convolution gradients avoid cuDNN's
//! atomic algorithms (see [`nondeterministic`]), so results are deterministic on one machine.
//! float32 convolutions use cuDNN's FMA math (true float32, as on the CPU): `GRAFT_TF32=1` lets
//! cuDNN use TF32 tensor cores instead, as PyTorch does by default for convolutions.
//! `GRAFT_REFERENCE_KERNELS=1` turns all of this off (candle's ops), for before/after figures.
//!
//! [`self_check`] compares each op, forward and backward, with candle's ops on the same GPU
//! (`graft bench --check-kernels --device cuda`).
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::cudnn::{self, safe::Cudnn, CudnnDataType};
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaView, DeviceRepr, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaDType, CudaDevice, CudaStorageSlice, WrapErr};
use candle_core::{bail, CpuStorage, CudaStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Storage, Tensor, WithDType};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/graft_kernels.ptx"));
const MODULE: &str = "graft_kernels";

/// Whether graft's GPU kernels serve an f32 op on `x`.
pub(crate) fn applies(x: &Tensor) -> bool {
    x.device().is_cuda() && x.dtype() == DType::F32 && !super::use_reference_kernels()
}

/// Whether graft's GPU kernels (cuDNN convolutions, BatchNorm, add + ReLU, depthwise
/// convolutions, max-pool) serve an op on `x`: float32, or bfloat16 in mixed precision.
pub(crate) fn act_applies(x: &Tensor) -> bool {
    x.device().is_cuda() && matches!(x.dtype(), DType::F32 | DType::BF16) && !super::use_reference_kernels()
}

/// `GRAFT_CUDNN_NONDETERMINISTIC=1` lets the gradients use cuDNN's algorithms that sum with
/// atomics (backward-data ALGO_0, backward-filter ALGO_0 and ALGO_3) when its heuristic prefers
/// them; by default those are replaced by ALGO_1, so a seed gives the same bits run after run.
fn nondeterministic() -> bool {
    static FLAG: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FLAG.get_or_init(|| std::env::var("GRAFT_CUDNN_NONDETERMINISTIC").map(|v| v == "1").unwrap_or(false))
}

fn tf32() -> bool {
    static FLAG: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FLAG.get_or_init(|| std::env::var("GRAFT_TF32").map(|v| v == "1").unwrap_or(false))
}

fn cpu_only(name: &str) -> Result<(CpuStorage, Shape)> {
    bail!("{name} is a CUDA kernel; on the CPU graft's CPU kernels run instead")
}

/// The contiguous elements of `s` that layout `l` covers.
fn view<'a, T: CudaDType>(s: &'a CudaStorage, l: &Layout, what: &str) -> Result<CudaView<'a, T>> {
    sub(s.as_cuda_slice::<T>()?, l, what)
}

/// The contiguous elements of slice `s` that layout `l` covers.
fn sub<'a, T>(s: &'a CudaSlice<T>, l: &Layout, what: &str) -> Result<CudaView<'a, T>> {
    let Some((a, b)) = l.contiguous_offsets() else { bail!("graft CUDA kernel: {what} must be contiguous") };
    Ok(s.slice(a..b))
}

/// A tensor held by an op (statistics, the activation output), read inside its kernel.
fn with_held<R>(t: &Tensor, what: &str, f: impl FnOnce(&CudaStorage, &Layout) -> Result<R>) -> Result<R> {
    let (s, l) = t.storage_and_layout();
    match &*s {
        Storage::Cuda(s) => f(s, l),
        _ => bail!("graft CUDA kernel: {what} is not on the GPU"),
    }
}

/// Launches kernel `name` of kernels.cu with `cfg` and the arguments in order (each pushed by
/// reference, so each must outlive the launch).
macro_rules! launch {
    ($dev:expr, $name:expr, $cfg:expr; $($arg:expr),* $(,)?) => {{
        let f = $dev.get_or_load_custom_func($name, MODULE, PTX)?;
        let mut lb = f.builder();
        $( lb.arg($arg); )*
        // SAFETY: the argument list matches the kernel's signature in kernels.cu.
        unsafe { lb.launch($cfg) }.w()
    }};
}

/// A grid-stride launch over `n` elements.
fn flat_cfg(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(256).clamp(1, 8192) as u32;
    LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 }
}

/// One thread a channel.
fn chan_cfg(c: usize) -> LaunchConfig {
    LaunchConfig { grid_dim: (c.div_ceil(128) as u32, 1, 1), block_dim: (128, 1, 1), shared_mem_bytes: 0 }
}

/// Blocks a channel for the two-pass reductions: about 4 096 elements a block, at most 64.
fn split(per_channel: usize) -> usize {
    per_channel.div_ceil(4096).clamp(1, 64)
}

fn wrap<T: CudaDType>(s: CudaSlice<T>, dev: &CudaDevice) -> CudaStorage {
    CudaStorage::wrap_cuda_slice(s, dev.clone())
}

fn dims4(l: &Layout) -> Result<(usize, usize, usize, usize)> {
    l.shape().dims4()
}

// ---- cuDNN convolutions ---------------------------------------------------------------------

thread_local! {
    // cuDNN handles are neither Send nor Sync: one a thread and device, as candle keeps its own.
    static CUDNN: RefCell<HashMap<candle_core::cuda_backend::DeviceId, Arc<Cudnn>>> = RefCell::new(HashMap::new());
    // The heuristic's algorithm for each (pass, shape), asked once.
    static ALGOS: RefCell<HashMap<(u8, DType, [usize; 9]), i32>> = RefCell::new(HashMap::new());
}

fn handle(dev: &CudaDevice) -> Result<Arc<Cudnn>> {
    CUDNN.with(|m| {
        if let Some(h) = m.borrow().get(&dev.id()) {
            return Ok(h.clone());
        }
        let h = Cudnn::new(dev.cuda_stream()).map_err(candle_core::Error::wrap)?;
        m.borrow_mut().insert(dev.id(), h.clone());
        Ok(h)
    })
}

/// One convolution's geometry: NCHW input (b, cin, h, w), filter (cout, cin/groups, k, k).
#[derive(Debug, Clone, Copy)]
struct ConvGeom {
    b: usize,
    cin: usize,
    h: usize,
    w: usize,
    cout: usize,
    k: usize,
    stride: usize,
    pad: usize,
    groups: usize,
}

impl ConvGeom {
    fn out_hw(&self) -> (usize, usize) {
        ((self.h + 2 * self.pad - self.k) / self.stride + 1, (self.w + 2 * self.pad - self.k) / self.stride + 1)
    }
    fn key(&self) -> [usize; 9] {
        [self.b, self.cin, self.h, self.w, self.cout, self.k, self.stride, self.pad, self.groups]
    }
    fn check(&self) -> Result<()> {
        if self.groups == 0 || self.cin % self.groups != 0 || self.cout % self.groups != 0 {
            bail!("graft-cudnn-conv: {} input and {} output channels do not split into {} groups", self.cin, self.cout, self.groups)
        }
        if self.h + 2 * self.pad < self.k || self.w + 2 * self.pad < self.k {
            bail!("graft-cudnn-conv: a {}x{} kernel does not fit a padded {}x{} input", self.k, self.k, self.h, self.w)
        }
        Ok(())
    }
}

/// The descriptors of one convolution, its operands of type `T` and arithmetic in `C`.
struct Descs<T: CudnnDataType, C: CudnnDataType> {
    conv: cudnn::safe::ConvDescriptor<C>,
    x: cudnn::safe::TensorDescriptor<T>,
    w: cudnn::safe::FilterDescriptor<T>,
    y: cudnn::safe::TensorDescriptor<T>,
}

fn descs<T: CudnnDataType, C: CudnnDataType>(h: &Arc<Cudnn>, g: &ConvGeom, dtype: DType) -> Result<Descs<T, C>> {
    use cudnn::sys::{cudnnConvolutionMode_t as M, cudnnMathType_t as MT, cudnnTensorFormat_t as F};
    let e = candle_core::Error::wrap;
    let i = |v: usize| v as i32;
    let (oh, ow) = g.out_hw();
    let mut conv = h.create_conv2d::<C>([i(g.pad), i(g.pad)], [i(g.stride), i(g.stride)], [1, 1], M::CUDNN_CROSS_CORRELATION).map_err(e)?;
    conv.set_group_count(i(g.groups)).map_err(e)?;
    // cuDNN's legacy convolutions use tensor cores only with a TENSOR_OP math type (its guide's
    // "Tensor Core operations" prerequisites), so bfloat16 asks for it, as PyTorch does for half;
    // DEFAULT_MATH permits TF32 on float32 (A100 and later), FMA_MATH forbids it.
    let math = match dtype {
        DType::BF16 => MT::CUDNN_TENSOR_OP_MATH,
        DType::F32 if !tf32() => MT::CUDNN_FMA_MATH,
        _ => MT::CUDNN_DEFAULT_MATH,
    };
    conv.set_math_type(math).map_err(e)?;
    Ok(Descs {
        conv,
        x: h.create_4d_tensor::<T>(F::CUDNN_TENSOR_NCHW, [i(g.b), i(g.cin), i(g.h), i(g.w)]).map_err(e)?,
        w: h.create_4d_filter::<T>(F::CUDNN_TENSOR_NCHW, [i(g.cout), i(g.cin / g.groups), i(g.k), i(g.k)]).map_err(e)?,
        y: h.create_4d_tensor::<T>(F::CUDNN_TENSOR_NCHW, [i(g.b), i(g.cout), i(oh), i(ow)]).map_err(e)?,
    })
}

/// The cached algorithm for (pass, dtype, geometry), or `pick()`'s.
fn algo(pass: u8, dtype: DType, g: &ConvGeom, pick: impl FnOnce() -> Result<i32>) -> Result<i32> {
    let key = (pass, dtype, g.key());
    if let Some(a) = ALGOS.with(|m| m.borrow().get(&key).copied()) {
        return Ok(a);
    }
    let a = pick()?;
    ALGOS.with(|m| m.borrow_mut().insert(key, a));
    Ok(a)
}

fn workspace(dev: &CudaDevice, bytes: usize) -> Result<CudaSlice<u8>> {
    // SAFETY: scratch memory cuDNN writes before it reads.
    unsafe { dev.alloc::<u8>(bytes.max(1)) }
}

/// An element type cuDNN convolves (float32, bfloat16).
trait ConvElem: CudnnDataType + DeviceRepr + WithDType + CudaDType {}
impl<T: CudnnDataType + DeviceRepr + WithDType + CudaDType> ConvElem for T {}

fn conv_fwd<T: ConvElem, C: CudnnDataType>(dev: &CudaDevice, g: &ConvGeom, x: &CudaView<T>, w: &CudaView<T>) -> Result<CudaSlice<T>> {
    use cudnn::sys::cudnnConvolutionFwdAlgo_t as A;
    let h = handle(dev)?;
    let d = descs::<T, C>(&h, g, T::DTYPE)?;
    let op = cudnn::safe::ConvForward { conv: &d.conv, x: &d.x, w: &d.w, y: &d.y };
    let a = algo(0, T::DTYPE, g, || Ok(op.pick_algorithm().map_err(candle_core::Error::wrap)? as i32))?;
    // SAFETY: the value came from cuDNN's own enum just above (or an earlier call).
    let a: A = unsafe { std::mem::transmute(a) };
    let mut ws = workspace(dev, op.get_workspace_size(a).map_err(candle_core::Error::wrap)?)?;
    let (oh, ow) = g.out_hw();
    // SAFETY: cuDNN writes every output element (beta = 0).
    let mut y = unsafe { dev.alloc::<T>(g.b * g.cout * oh * ow)? };
    // SAFETY: the operands match the descriptors (shapes checked by the caller, contiguous NCHW).
    unsafe { op.launch(a, Some(&mut ws), (T::one(), T::zero()), x, w, &mut y) }.map_err(candle_core::Error::wrap)?;
    Ok(y)
}

fn conv_bwd_data<T: ConvElem, C: CudnnDataType>(dev: &CudaDevice, g: &ConvGeom, dy: &CudaView<T>, w: &CudaView<T>) -> Result<CudaSlice<T>> {
    use cudnn::sys::cudnnConvolutionBwdDataAlgo_t as A;
    let h = handle(dev)?;
    let d = descs::<T, C>(&h, g, T::DTYPE)?;
    let op = cudnn::safe::ConvBackwardData { conv: &d.conv, dx: &d.x, w: &d.w, dy: &d.y };
    let a = algo(1, T::DTYPE, g, || {
        let a = op.pick_algorithm().map_err(candle_core::Error::wrap)?;
        let det = A::CUDNN_CONVOLUTION_BWD_DATA_ALGO_1;
        Ok((if a == A::CUDNN_CONVOLUTION_BWD_DATA_ALGO_0 && !nondeterministic() && op.get_workspace_size(det).is_ok() { det } else { a })
            as i32)
    })?;
    // SAFETY: as in conv_fwd.
    let a: A = unsafe { std::mem::transmute(a) };
    let mut ws = workspace(dev, op.get_workspace_size(a).map_err(candle_core::Error::wrap)?)?;
    // SAFETY: cuDNN writes every element (beta = 0).
    let mut dx = unsafe { dev.alloc::<T>(g.b * g.cin * g.h * g.w)? };
    // SAFETY: as in conv_fwd.
    unsafe { op.launch(a, Some(&mut ws), (T::one(), T::zero()), &mut dx, w, dy) }.map_err(candle_core::Error::wrap)?;
    Ok(dx)
}

fn conv_bwd_filter<T: ConvElem, C: CudnnDataType>(
    dev: &CudaDevice,
    g: &ConvGeom,
    x: &CudaView<T>,
    dy: &CudaView<T>,
) -> Result<CudaSlice<T>> {
    use cudnn::sys::cudnnConvolutionBwdFilterAlgo_t as A;
    let h = handle(dev)?;
    let d = descs::<T, C>(&h, g, T::DTYPE)?;
    let op = cudnn::safe::ConvBackwardFilter { conv: &d.conv, x: &d.x, dw: &d.w, dy: &d.y };
    let a = algo(2, T::DTYPE, g, || {
        let a = op.pick_algorithm().map_err(candle_core::Error::wrap)?;
        let det = A::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1;
        let atomic = matches!(a, A::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0 | A::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3);
        Ok((if atomic && !nondeterministic() && op.get_workspace_size(det).is_ok() { det } else { a }) as i32)
    })?;
    // SAFETY: as in conv_fwd.
    let a: A = unsafe { std::mem::transmute(a) };
    let mut ws = workspace(dev, op.get_workspace_size(a).map_err(candle_core::Error::wrap)?)?;
    // SAFETY: cuDNN writes every element (beta = 0).
    let mut dw = unsafe { dev.alloc::<T>(g.cout * (g.cin / g.groups) * g.k * g.k)? };
    // SAFETY: as in conv_fwd.
    unsafe { op.launch(a, Some(&mut ws), (T::one(), T::zero()), x, &mut dw, dy) }.map_err(candle_core::Error::wrap)?;
    Ok(dw)
}

/// Which pass a [`Conv`] op runs: the two operands are (x, w), (dy, w) or (x, dy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    Forward,
    /// The input gradient of an input of h x w.
    Data {
        h: usize,
        w: usize,
    },
    /// The filter gradient of a k x k filter with `cout` outputs.
    Filter {
        k: usize,
        cout: usize,
    },
}

struct Conv {
    stride: usize,
    pad: usize,
    groups: usize,
    pass: Pass,
}

impl Conv {
    fn geom(&self, l1: &Layout, l2: &Layout) -> Result<ConvGeom> {
        let (stride, pad, groups) = (self.stride, self.pad, self.groups);
        let g = match self.pass {
            Pass::Forward => {
                let (b, cin, h, w) = dims4(l1)?;
                let (cout, cig, k, k2) = dims4(l2)?;
                if k != k2 || cig * groups != cin {
                    bail!("graft-cudnn-conv: filter {:?} does not fit input {:?} in {groups} groups", l2.dims(), l1.dims())
                }
                ConvGeom { b, cin, h, w, cout, k, stride, pad, groups }
            }
            Pass::Data { h, w } => {
                let (b, cout, _, _) = dims4(l1)?;
                let (cout2, cig, k, _) = dims4(l2)?;
                if cout != cout2 {
                    bail!("graft-cudnn-conv (input gradient): gradient {:?} does not fit filter {:?}", l1.dims(), l2.dims())
                }
                ConvGeom { b, cin: cig * groups, h, w, cout, k, stride, pad, groups }
            }
            Pass::Filter { k, cout } => {
                let (b, cin, h, w) = dims4(l1)?;
                ConvGeom { b, cin, h, w, cout, k, stride, pad, groups }
            }
        };
        g.check()?;
        let (oh, ow) = g.out_hw();
        let out_dims = [g.b, g.cout, oh, ow];
        let grad = match self.pass {
            Pass::Forward => None,
            Pass::Data { .. } => Some(l1.dims()),
            Pass::Filter { .. } => Some(l2.dims()),
        };
        if let Some(d) = grad {
            if d != out_dims {
                bail!("graft-cudnn-conv: gradient {d:?} is not the output's shape {out_dims:?}")
            }
        }
        Ok(g)
    }

    fn run<T: ConvElem, C: CudnnDataType>(
        &self,
        dev: &CudaDevice,
        s1: &CudaSlice<T>,
        l1: &Layout,
        s2: &CudaSlice<T>,
        l2: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let g = self.geom(l1, l2)?;
        let Some((o1, e1)) = l1.contiguous_offsets() else { bail!("graft-cudnn-conv: first operand must be contiguous") };
        let Some((o2, e2)) = l2.contiguous_offsets() else { bail!("graft-cudnn-conv: second operand must be contiguous") };
        let a = s1.slice(o1..e1);
        let b = s2.slice(o2..e2);
        let (oh, ow) = g.out_hw();
        let (out, shape) = match self.pass {
            Pass::Forward => (conv_fwd::<T, C>(dev, &g, &a, &b)?, Shape::from((g.b, g.cout, oh, ow))),
            Pass::Data { h, w } => (conv_bwd_data::<T, C>(dev, &g, &a, &b)?, Shape::from((g.b, g.cin, h, w))),
            Pass::Filter { k, cout } => (conv_bwd_filter::<T, C>(dev, &g, &a, &b)?, Shape::from((cout, g.cin / g.groups, k, k))),
        };
        Ok((wrap(out, dev), shape))
    }
}

impl CustomOp2 for Conv {
    fn name(&self) -> &'static str {
        match self.pass {
            Pass::Forward => "graft-cudnn-conv",
            Pass::Data { .. } => "graft-cudnn-conv-bwd-data",
            Pass::Filter { .. } => "graft-cudnn-conv-bwd-filter",
        }
    }
    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        cpu_only(self.name())
    }
    fn cuda_fwd(&self, s1: &CudaStorage, l1: &Layout, s2: &CudaStorage, l2: &Layout) -> Result<(CudaStorage, Shape)> {
        let dev = &s1.device;
        match (&s1.slice, &s2.slice) {
            (CudaStorageSlice::F32(a), CudaStorageSlice::F32(b)) => self.run::<_, f32>(dev, a, l1, b, l2),
            // bfloat16 operands, float32 arithmetic (cuDNN's "pseudo-bf16" configuration)
            (CudaStorageSlice::BF16(a), CudaStorageSlice::BF16(b)) => self.run::<_, f32>(dev, a, l1, b, l2),
            _ => bail!("graft-cudnn-conv: operands of {:?} and {:?}; want both float32 or both bfloat16", s1.dtype(), s2.dtype()),
        }
    }
    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (stride, pad, groups) = (self.stride, self.pad, self.groups);
        conv_grads(
            x,
            w,
            &grad.contiguous()?,
            || Ok(Conv { stride, pad, groups, pass: Pass::Data { h: x.dim(2)?, w: x.dim(3)? } }),
            || Ok(Conv { stride, pad, groups, pass: Pass::Filter { k: w.dim(2)?, cout: w.dim(0)? } }),
        )
    }
}

/// A convolution's gradients by its own backward ops: the input gradient, op `data()` on
/// (dy, w), where x is tracked; the filter gradient, op `filter()` on (x, dy), where w is.
fn conv_grads<O: CustomOp2>(
    x: &Tensor,
    w: &Tensor,
    dy: &Tensor,
    data: impl FnOnce() -> Result<O>,
    filter: impl FnOnce() -> Result<O>,
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let dx = if x.track_op() { Some(dy.apply_op2_no_bwd(w, &data()?)?) } else { None };
    let dw = if w.track_op() { Some(x.apply_op2_no_bwd(dy, &filter()?)?) } else { None };
    Ok((dx, dw))
}

/// Convolution of NCHW `x` with (cout, cin/groups, k, k) `w` by cuDNN: stride, symmetric zero
/// padding, `groups` groups (depthwise: groups = channels).
pub fn conv2d(x: &Tensor, w: &Tensor, stride: usize, pad: usize, groups: usize) -> Result<Tensor> {
    let w = w.to_dtype(x.dtype())?.contiguous()?;
    x.contiguous()?.apply_op2(&w, Conv { stride, pad, groups, pass: Pass::Forward })
}

// ---- BatchNorm in training mode ---------------------------------------------------------------

fn f32_of(t: &Tensor, what: &str) -> Result<()> {
    if t.dtype() != DType::F32 {
        bail!("graft CUDA batch-norm: {what} must be float32, not {:?}", t.dtype())
    }
    Ok(())
}

/// An activation's element type (float32, or bfloat16 in mixed precision).
trait ActElem: CudaDType + DeviceRepr + WithDType {}
impl<T: CudaDType + DeviceRepr + WithDType> ActElem for T {}

/// kernels.cu's instance of activation kernel `base` for `T`: `base` (float32), `base_bf16`.
fn act_kernel<T: ActElem>(base: &str) -> Result<String> {
    match T::DTYPE {
        DType::F32 => Ok(base.to_string()),
        DType::BF16 => Ok(format!("{base}_bf16")),
        d => bail!("graft CUDA kernel {base}: activations of {d:?}; want float32 or bfloat16"),
    }
}

/// Calls `$body` with `$x` bound to the activation slice of `$s` (float32 or bfloat16), its
/// element type inferred from the slice.
macro_rules! with_act {
    ($s:expr, $name:expr, |$x:ident| $body:expr) => {
        match &$s.slice {
            CudaStorageSlice::F32($x) => $body,
            CudaStorageSlice::BF16($x) => $body,
            _ => bail!("{}: activations of {:?}; want float32 or bfloat16", $name, $s.dtype()),
        }
    };
}

/// Batch statistics and the updated running ones: (x, running mean, running var) -> float64
/// (4, c): mean, biased variance, new running mean, new running variance (unbiased batch
/// variance, as PyTorch).
struct BnStats {
    momentum: f64,
}

impl BnStats {
    fn run<T: ActElem>(
        &self,
        xs: &CudaSlice<T>,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
        s3: &CudaStorage,
        l3: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let (b, c, h, w) = dims4(l1)?;
        let hw = h * w;
        let dev = &s2.device;
        let x = sub(xs, l1, "input")?;
        let rm = view::<f32>(s2, l2, "running mean")?;
        let rv = view::<f32>(s3, l3, "running variance")?;
        let per = b * hw;
        let s = split(per);
        // SAFETY: every partial is written by its block.
        let part = unsafe { dev.alloc::<f64>(2 * s * c)? };
        let (bi, ci, hwi, si) = (b as i32, c as i32, hw as i32, s as i32);
        let cfg = LaunchConfig { grid_dim: (s as u32, c as u32, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
        launch!(dev, &act_kernel::<T>("bn_stats_partial")?, cfg; &x, &bi, &ci, &hwi, &si, &part)?;
        // SAFETY: written by bn_stats_final, one thread a channel.
        let out = unsafe { dev.alloc::<f64>(4 * c)? };
        let (n, m) = (per as f64, self.momentum);
        launch!(dev, "bn_stats_final", chan_cfg(c); &part, &ci, &si, &n, &rm, &rv, &m, &out)?;
        Ok((wrap(out, dev), Shape::from((4, c))))
    }
}

impl CustomOp3 for BnStats {
    fn name(&self) -> &'static str {
        "graft-cuda-batchnorm-stats"
    }
    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        cpu_only(self.name())
    }
    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
        s3: &CudaStorage,
        l3: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        with_act!(s1, self.name(), |x| self.run(x, l1, s2, l2, s3, l3))
    }
}

/// Per channel, scale = γ/√(var + eps) and shift = β − mean·scale from the batch statistics:
/// (statistics (4, c) float64, γ, β) -> float32 (2, c). The forward pass applies them and the
/// backward pass recomputes the pre-activation with them (for the activation's mask).
struct BnScaleShift {
    eps: f64,
}

impl CustomOp3 for BnScaleShift {
    fn name(&self) -> &'static str {
        "graft-cuda-batchnorm-scale-shift"
    }
    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        cpu_only(self.name())
    }
    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
        s3: &CudaStorage,
        l3: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let c = l2.shape().elem_count();
        if l1.shape().elem_count() != 4 * c || l3.shape().elem_count() != c {
            bail!("{}: statistics {:?}, weight {:?}, bias {:?}", self.name(), l1.dims(), l2.dims(), l3.dims())
        }
        let dev = &s1.device;
        let st = view::<f64>(s1, l1, "batch statistics")?;
        let gamma = view::<f32>(s2, l2, "weight")?;
        let beta = view::<f32>(s3, l3, "bias")?;
        // SAFETY: bn_scale_shift writes all 2c values.
        let ss = unsafe { dev.alloc::<f32>(2 * c)? };
        let ci = c as i32;
        launch!(dev, "bn_scale_shift", chan_cfg(c); &st, &gamma, &beta, &self.eps, &ci, &ss)?;
        Ok((wrap(ss, dev), Shape::from((2, c))))
    }
}

/// y = act(γ·(x − mean)/√(var + eps) + β) with the batch statistics `st` (from [`BnStats`]) as
/// `ss` (from [`BnScaleShift`]); `cap` < 0: no activation, else the clamp's upper bound (∞ for
/// ReLU, 6 for ReLU6). x and y float32 or bfloat16; γ and β float32.
struct BnNorm {
    eps: f64,
    cap: f32,
    st: Tensor,
    ss: Tensor,
}

impl BnNorm {
    fn run<T: ActElem>(&self, xs: &CudaSlice<T>, l1: &Layout, dev: &CudaDevice) -> Result<(CudaStorage, Shape)> {
        let (_, c, h, w) = dims4(l1)?;
        let x = sub(xs, l1, "input")?;
        let total = l1.shape().elem_count();
        // SAFETY: bn_affine_act writes every element.
        let y = unsafe { dev.alloc::<T>(total)? };
        let (t, ci, hwi) = (total as i64, c as i32, (h * w) as i32);
        with_held(&self.ss, "scale and shift", |ss_s, ss_l| {
            let ss = view::<f32>(ss_s, ss_l, "scale and shift")?;
            launch!(dev, &act_kernel::<T>("bn_affine_act")?, flat_cfg(total); &x, &ss, &t, &ci, &hwi, &self.cap, &y)
        })?;
        Ok((wrap(y, dev), l1.shape().clone()))
    }
}

impl CustomOp3 for BnNorm {
    fn name(&self) -> &'static str {
        "graft-cuda-batchnorm-train"
    }
    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        cpu_only(self.name())
    }
    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        _s2: &CudaStorage,
        _l2: &Layout,
        _s3: &CudaStorage,
        _l3: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        // γ and β reach the kernel through `ss`; they are operands for autograd's sake
        with_act!(s1, self.name(), |x| self.run(x, l1, &s1.device))
    }
    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // the gradient in the activation's type (candle hands it over in the output's type)
        let grad = grad.to_dtype(x.dtype())?.contiguous()?;
        let op = |coef: bool| BnBwd { eps: self.eps, cap: self.cap, st: self.st.clone(), ss: self.ss.clone(), coef };
        let coef = x.apply_op3_no_bwd(&grad, gamma, &op(false))?;
        let dx = x.apply_op3_no_bwd(&grad, &coef, &op(true))?;
        Ok((Some(dx), Some(coef.get(0)?), Some(coef.get(1)?)))
    }
}

/// The backward pass of [`BnNorm`] in two ops. `coef: false`: (x, dy, γ) -> float32 (7, c): dγ,
/// dβ, γ·inv, mean(dy), mean(dy·x̂), inv, mean. `coef: true`: (x, dy, those rows) -> dx, in x's
/// type. Where the activation clamped, dy is masked; the pre-activation is recomputed from x and
/// `ss`.
struct BnBwd {
    eps: f64,
    cap: f32,
    st: Tensor,
    ss: Tensor,
    coef: bool,
}

impl BnBwd {
    #[allow(clippy::too_many_arguments)]
    fn run<T: ActElem>(
        &self,
        xs: &CudaSlice<T>,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
        s3: &CudaStorage,
        l3: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let (b, c, h, w) = dims4(l1)?;
        let hw = h * w;
        let dev = &s2.device;
        if l2.shape() != l1.shape() {
            bail!("{}: gradient {:?} is not the input's shape {:?}", self.name(), l2.dims(), l1.dims())
        }
        let x = sub(xs, l1, "input")?;
        let dy = view::<T>(s2, l2, "gradient")?;
        let third = view::<f32>(s3, l3, if self.coef { "coefficients" } else { "weight" })?;
        let (bi, ci, hwi) = (b as i32, c as i32, hw as i32);
        let total = l1.shape().elem_count();
        with_held(&self.ss, "scale and shift", |ss_s, ss_l| {
            let ss = view::<f32>(ss_s, ss_l, "scale and shift")?;
            if !self.coef {
                with_held(&self.st, "batch statistics", |st_s, st_l| {
                    let st = view::<f64>(st_s, st_l, "batch statistics")?;
                    let s = split(b * hw);
                    let si = s as i32;
                    // SAFETY: every partial is written by its block.
                    let part = unsafe { dev.alloc::<f64>(2 * s * c)? };
                    let cfg = LaunchConfig { grid_dim: (s as u32, c as u32, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
                    launch!(dev, &act_kernel::<T>("bn_bwd_partial")?, cfg; &x, &dy, &ss, &self.cap, &st, &bi, &ci, &hwi, &si, &part)?;
                    // SAFETY: bn_bwd_final writes all 7c values.
                    let coef = unsafe { dev.alloc::<f32>(7 * c)? };
                    let n = (b * hw) as f64;
                    launch!(dev, "bn_bwd_final", chan_cfg(c); &part, &ci, &si, &n, &st, &third, &self.eps, &coef)?;
                    Ok((wrap(coef, dev), Shape::from((7, c))))
                })
            } else {
                // SAFETY: bn_bwd_dx writes every element.
                let dx = unsafe { dev.alloc::<T>(total)? };
                let t = total as i64;
                launch!(dev, &act_kernel::<T>("bn_bwd_dx")?, flat_cfg(total); &x, &dy, &ss, &self.cap, &third, &t, &ci, &hwi, &dx)?;
                Ok((wrap(dx, dev), l1.shape().clone()))
            }
        })
    }
}

impl CustomOp3 for BnBwd {
    fn name(&self) -> &'static str {
        if self.coef {
            "graft-cuda-batchnorm-bwd-dx"
        } else {
            "graft-cuda-batchnorm-bwd-sums"
        }
    }
    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        cpu_only(self.name())
    }
    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
        s3: &CudaStorage,
        l3: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        with_act!(s1, self.name(), |x| self.run(x, l1, s2, l2, s3, l3))
    }
}

/// Training-mode BatchNorm with its activation on the GPU: returns y (in x's type: float32, or
/// bfloat16 in mixed precision) and the updated running mean and variance (float32, c each).
/// `cap`: None, or the clamp's upper bound.
pub fn batchnorm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running: (&Tensor, &Tensor),
    eps: f64,
    momentum: f64,
    cap: Option<f32>,
) -> Result<(Tensor, Tensor, Tensor)> {
    if !matches!(x.dtype(), DType::F32 | DType::BF16) {
        bail!("graft CUDA batch-norm: input must be float32 or bfloat16, not {:?}", x.dtype())
    }
    for (t, what) in [(gamma, "weight"), (beta, "bias"), (running.0, "running mean"), (running.1, "running variance")] {
        f32_of(t, what)?;
    }
    // any rank >= 2 as (b, c, rest, 1)
    let shape = x.shape().clone();
    let (b, c) = (x.dim(0)?, x.dim(1)?);
    let x = x.contiguous()?.reshape((b, c, shape.elem_count() / (b * c).max(1), 1))?;
    let (gamma, beta) = (gamma.contiguous()?, beta.contiguous()?);
    let st = x.apply_op3_no_bwd(&running.0.contiguous()?, &running.1.contiguous()?, &BnStats { momentum })?;
    let ss = st.apply_op3_no_bwd(&gamma.detach(), &beta.detach(), &BnScaleShift { eps })?;
    let y = x.apply_op3(&gamma, &beta, BnNorm { eps, cap: cap.unwrap_or(-1.0), st: st.clone(), ss })?;
    Ok((y.reshape(shape)?, st.get(2)?.to_dtype(DType::F32)?, st.get(3)?.to_dtype(DType::F32)?))
}

// ---- residual add + ReLU ------------------------------------------------------------------------

/// relu(a + b) (`mask: false`), or the gradient dy masked where the output y > 0 (`mask: true`,
/// operands (dy, y)); float32 or bfloat16, both operands of one type.
struct AddRelu {
    mask: bool,
}

impl AddRelu {
    fn run<T: ActElem>(
        &self,
        a: &CudaSlice<T>,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
        dev: &CudaDevice,
    ) -> Result<(CudaStorage, Shape)> {
        if s2.dtype() != T::DTYPE {
            bail!("{}: operands of {:?} and {:?}", self.name(), T::DTYPE, s2.dtype())
        }
        let a = sub(a, l1, "first operand")?;
        let b = view::<T>(s2, l2, "second operand")?;
        let n = l1.shape().elem_count();
        // SAFETY: the kernel writes every element.
        let y = unsafe { dev.alloc::<T>(n)? };
        let ni = n as i64;
        let name = act_kernel::<T>(if self.mask { "relu_mask" } else { "add_relu_fwd" })?;
        launch!(dev, &name, flat_cfg(n); &a, &b, &ni, &y)?;
        Ok((wrap(y, dev), l1.shape().clone()))
    }
}

impl CustomOp2 for AddRelu {
    fn name(&self) -> &'static str {
        if self.mask {
            "graft-cuda-relu-mask"
        } else {
            "graft-cuda-add-relu"
        }
    }
    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        cpu_only(self.name())
    }
    fn cuda_fwd(&self, s1: &CudaStorage, l1: &Layout, s2: &CudaStorage, l2: &Layout) -> Result<(CudaStorage, Shape)> {
        if l1.shape() != l2.shape() {
            bail!("{}: shapes {:?} and {:?} differ", self.name(), l1.dims(), l2.dims())
        }
        with_act!(s1, self.name(), |a| self.run(a, l1, s2, l2, &s1.device))
    }
    fn bwd(&self, _a: &Tensor, _b: &Tensor, res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.to_dtype(res.dtype())?.contiguous()?;
        let g = grad.apply_op2_no_bwd(&res.contiguous()?, &AddRelu { mask: true })?;
        Ok((Some(g.clone()), Some(g)))
    }
}

/// relu(a + b) in one kernel (and its gradient in one); a and b of one type, float32 or
/// bfloat16.
pub fn add_relu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    a.contiguous()?.apply_op2(&b.contiguous()?, AddRelu { mask: false })
}

// ---- depthwise convolution (graft's kernels) --------------------------------------------------

/// Which pass a [`DwConv`] op runs: the operands are (x, w), (dy, w) or (x, dy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DwPass {
    Forward,
    /// The input gradient of an input of h x w.
    Data {
        h: usize,
        w: usize,
    },
    /// The filter gradient of a k x k filter.
    Filter {
        k: usize,
    },
}

/// Depthwise convolution by kernels.cu (`dw_*`): NCHW x, (c, 1, k, k) filter, stride `s`, zero
/// padding `pad` = [top, bottom, left, right] (asymmetric "SAME" padding without a padded copy).
struct DwConv {
    s: usize,
    pad: [usize; 4],
    pass: DwPass,
}

/// The depthwise windows kernels.cu has instances for (`dw_*_k3`, `dw_*_k5`).
const DW_WINDOWS: [usize; 2] = [3, 5];

/// (b, c, h, w, oh, ow, k) of a depthwise convolution, checked.
type DwGeom = (usize, usize, usize, usize, usize, usize, usize);

impl DwConv {
    fn geom(&self, l1: &Layout, l2: &Layout) -> Result<DwGeom> {
        let [pt, pb, pl, pr] = self.pad;
        let (b, c, h, w, k) = match self.pass {
            DwPass::Forward => {
                let (b, c, h, w) = dims4(l1)?;
                let (c2, one, k, k2) = dims4(l2)?;
                if c2 != c || one != 1 || k != k2 {
                    bail!("graft-cuda-depthwise: filter {:?} does not fit input {:?}", l2.dims(), l1.dims())
                }
                (b, c, h, w, k)
            }
            DwPass::Data { h, w } => {
                let (b, c, _, _) = dims4(l1)?;
                let (c2, one, k, k2) = dims4(l2)?;
                if c2 != c || one != 1 || k != k2 {
                    bail!("graft-cuda-depthwise (input gradient): filter {:?} does not fit gradient {:?}", l2.dims(), l1.dims())
                }
                (b, c, h, w, k)
            }
            DwPass::Filter { k } => {
                let (b, c, h, w) = dims4(l1)?;
                (b, c, h, w, k)
            }
        };
        if !DW_WINDOWS.contains(&k) || self.s == 0 || h + pt + pb < k || w + pl + pr < k {
            bail!("graft-cuda-depthwise: a {k}x{k} window at stride {} on a {h}x{w} input padded {:?}", self.s, self.pad)
        }
        let (oh, ow) = ((h + pt + pb - k) / self.s + 1, (w + pl + pr - k) / self.s + 1);
        let grad = match self.pass {
            DwPass::Forward => None,
            DwPass::Data { .. } => Some(l1.dims()),
            DwPass::Filter { .. } => Some(l2.dims()),
        };
        if let Some(d) = grad {
            if d != [b, c, oh, ow] {
                bail!("graft-cuda-depthwise: gradient {d:?} is not the output's shape {:?}", [b, c, oh, ow])
            }
        }
        Ok((b, c, h, w, oh, ow, k))
    }

    fn run<T: ActElem>(
        &self,
        a: &CudaSlice<T>,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
        dev: &CudaDevice,
    ) -> Result<(CudaStorage, Shape)> {
        if s2.dtype() != T::DTYPE {
            bail!("{}: operands of {:?} and {:?}", self.name(), T::DTYPE, s2.dtype())
        }
        let (b, c, h, w, oh, ow, k) = self.geom(l1, l2)?;
        let a = sub(a, l1, "first operand")?;
        let o = view::<T>(s2, l2, "second operand")?;
        let i = |v: usize| v as i32;
        let (bi, ci, hi, wi, ohi, owi, ki, si, pt, pl) =
            (i(b), i(c), i(h), i(w), i(oh), i(ow), i(k), i(self.s), i(self.pad[0]), i(self.pad[2]));
        match self.pass {
            DwPass::Forward => {
                let n = b * c * oh * ow;
                // SAFETY: dw_fwd writes every output element.
                let y = unsafe { dev.alloc::<T>(n)? };
                launch!(dev, &act_kernel::<T>(&format!("dw_fwd_k{k}"))?, flat_cfg(n); &a, &o, &bi, &ci, &hi, &wi, &ohi, &owi, &ki, &si, &pt, &pl, &y)?;
                Ok((wrap(y, dev), Shape::from((b, c, oh, ow))))
            }
            DwPass::Data { .. } => {
                let n = b * c * h * w;
                // SAFETY: dw_bwd_data writes every input element.
                let dx = unsafe { dev.alloc::<T>(n)? };
                launch!(dev, &act_kernel::<T>(&format!("dw_bwd_data_k{k}"))?, flat_cfg(n); &a, &o, &bi, &ci, &hi, &wi, &ohi, &owi, &ki, &si, &pt, &pl, &dx)?;
                Ok((wrap(dx, dev), Shape::from((b, c, h, w))))
            }
            DwPass::Filter { .. } => {
                let parts = split(b * oh * ow);
                let pi = i(parts);
                // SAFETY: every partial is written by its block.
                let part = unsafe { dev.alloc::<f64>(c * parts * k * k)? };
                let cfg = LaunchConfig { grid_dim: (parts as u32, c as u32, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
                launch!(dev, &act_kernel::<T>(&format!("dw_bwd_filter_partial_k{k}"))?, cfg; &a, &o, &bi, &ci, &hi, &wi, &ohi, &owi, &ki, &si, &pt, &pl, &pi, &part)?;
                // SAFETY: dw_bwd_filter_final writes all c·k·k values.
                let dw = unsafe { dev.alloc::<T>(c * k * k)? };
                let kk = i(k * k);
                launch!(dev, &act_kernel::<T>("dw_bwd_filter_final")?, chan_cfg(c * k * k); &part, &ci, &kk, &pi, &dw)?;
                Ok((wrap(dw, dev), Shape::from((c, 1, k, k))))
            }
        }
    }
}

impl CustomOp2 for DwConv {
    fn name(&self) -> &'static str {
        match self.pass {
            DwPass::Forward => "graft-cuda-depthwise",
            DwPass::Data { .. } => "graft-cuda-depthwise-bwd-data",
            DwPass::Filter { .. } => "graft-cuda-depthwise-bwd-filter",
        }
    }
    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        cpu_only(self.name())
    }
    fn cuda_fwd(&self, s1: &CudaStorage, l1: &Layout, s2: &CudaStorage, l2: &Layout) -> Result<(CudaStorage, Shape)> {
        with_act!(s1, self.name(), |a| self.run(a, l1, s2, l2, &s1.device))
    }
    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.to_dtype(x.dtype())?.contiguous()?;
        let (s, pad) = (self.s, self.pad);
        conv_grads(
            x,
            w,
            &grad,
            || Ok(DwConv { s, pad, pass: DwPass::Data { h: x.dim(2)?, w: x.dim(3)? } }),
            || Ok(DwConv { s, pad, pass: DwPass::Filter { k: w.dim(2)? } }),
        )
    }
}

/// Whether graft's depthwise kernels serve a k x k depthwise convolution on the GPU: 3x3 and
/// 5x5 windows, unless `GRAFT_DEPTHWISE=cudnn` asks for cuDNN's grouped convolution instead.
pub(crate) fn depthwise_applies(k: usize) -> bool {
    static CUDNN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    DW_WINDOWS.contains(&k) && !*CUDNN.get_or_init(|| std::env::var("GRAFT_DEPTHWISE").map(|v| v == "cudnn").unwrap_or(false))
}

/// Depthwise convolution of NCHW `x` (float32 or bfloat16) with a (c, 1, k, k) filter (cast to
/// x's type), stride `s`, zero padding [top, bottom, left, right], by graft's kernels.
pub fn depthwise(x: &Tensor, w: &Tensor, s: usize, pad: [usize; 4]) -> Result<Tensor> {
    let w = w.to_dtype(x.dtype())?.contiguous()?;
    x.contiguous()?.apply_op2(&w, DwConv { s, pad, pass: DwPass::Forward })
}

// ---- max-pool with padding ------------------------------------------------------------------------

/// Max-pool of NCHW x (float32 or bfloat16), window k, stride s, padding p on every side, by
/// kernels.cu (`maxpool_*`): the first maximum of a window on ties, as graft's CPU kernel. candle
/// has no padded max-pool, and its backward pass takes only windows equal to their stride.
#[derive(Debug, Clone, Copy)]
struct MaxPool {
    k: usize,
    s: usize,
    p: usize,
}

impl MaxPool {
    /// (planes, h, w, oh, ow) of input layout `l`, checked.
    fn geom(&self, l: &Layout) -> Result<(usize, usize, usize, usize, usize)> {
        let (b, c, h, w) = dims4(l)?;
        if self.k == 0 || self.s == 0 || self.p >= self.k || h + 2 * self.p < self.k || w + 2 * self.p < self.k {
            bail!("graft-cuda-maxpool: window {} stride {} padding {} on a {h}x{w} input", self.k, self.s, self.p)
        }
        Ok((b * c, h, w, (h + 2 * self.p - self.k) / self.s + 1, (w + 2 * self.p - self.k) / self.s + 1))
    }

    fn run<T: ActElem>(
        &self,
        xs: &CudaSlice<T>,
        l1: &Layout,
        dy: Option<(&CudaStorage, &Layout)>,
        dev: &CudaDevice,
    ) -> Result<(CudaStorage, Shape)> {
        let (planes, h, w, oh, ow) = self.geom(l1)?;
        let x = sub(xs, l1, "input")?;
        let i = |v: usize| v as i32;
        let (pl, hi, wi, ohi, owi, k, s, p) = (planes as i64, i(h), i(w), i(oh), i(ow), i(self.k), i(self.s), i(self.p));
        match dy {
            None => {
                let n = planes * oh * ow;
                // SAFETY: maxpool_fwd writes every output element.
                let y = unsafe { dev.alloc::<T>(n)? };
                launch!(dev, &act_kernel::<T>("maxpool_fwd")?, flat_cfg(n); &x, &pl, &hi, &wi, &ohi, &owi, &k, &s, &p, &y)?;
                Ok((wrap(y, dev), Shape::from((l1.dims()[0], l1.dims()[1], oh, ow))))
            }
            Some((s2, l2)) => {
                if l2.dims() != [l1.dims()[0], l1.dims()[1], oh, ow] {
                    bail!("graft-cuda-maxpool-bwd: gradient {:?} is not the output's shape", l2.dims())
                }
                let g = view::<T>(s2, l2, "gradient")?;
                let n = planes * h * w;
                // SAFETY: maxpool_bwd writes every input element.
                let dx = unsafe { dev.alloc::<T>(n)? };
                launch!(dev, &act_kernel::<T>("maxpool_bwd")?, flat_cfg(n); &x, &g, &pl, &hi, &wi, &ohi, &owi, &k, &s, &p, &dx)?;
                Ok((wrap(dx, dev), l1.shape().clone()))
            }
        }
    }
}

impl candle_core::CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "graft-cuda-maxpool"
    }
    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        cpu_only(self.name())
    }
    fn cuda_fwd(&self, s1: &CudaStorage, l1: &Layout) -> Result<(CudaStorage, Shape)> {
        with_act!(s1, self.name(), |x| self.run(x, l1, None, &s1.device))
    }
    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let grad = grad.to_dtype(arg.dtype())?.contiguous()?;
        Ok(Some(arg.apply_op2_no_bwd(&grad, &MaxPoolBwd(*self))?))
    }
}

/// The input gradient of [`MaxPool`]: (x, dy) -> dx.
struct MaxPoolBwd(MaxPool);

impl CustomOp2 for MaxPoolBwd {
    fn name(&self) -> &'static str {
        "graft-cuda-maxpool-bwd"
    }
    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        cpu_only(self.name())
    }
    fn cuda_fwd(&self, s1: &CudaStorage, l1: &Layout, s2: &CudaStorage, l2: &Layout) -> Result<(CudaStorage, Shape)> {
        if s2.dtype() != s1.dtype() {
            bail!("{}: operands of {:?} and {:?}", self.name(), s1.dtype(), s2.dtype())
        }
        with_act!(s1, self.name(), |x| self.0.run(x, l1, Some((s2, l2)), &s1.device))
    }
}

/// Max-pool with window k, stride s and padding p (p < k) of NCHW x (float32 or bfloat16) on the
/// GPU by graft's kernels.
pub fn max_pool(x: &Tensor, k: usize, s: usize, p: usize) -> Result<Tensor> {
    x.contiguous()?.apply_op1(MaxPool { k, s, p })
}

// ---- AdamW ----------------------------------------------------------------------------------------

/// One AdamW step for one parameter: (w, g, state) -> [w', m', v'] (3n), state = [·, m, v].
pub struct AdamW {
    pub b1: f32,
    pub c1: f32,
    pub b2: f32,
    pub c2: f32,
    pub ibc1: f32,
    pub ibc2: f32,
    pub eps: f32,
    /// 1 − lr·wd, or a negative value for no decay.
    pub decay: f32,
    pub lr: f32,
}

impl CustomOp3 for AdamW {
    fn name(&self) -> &'static str {
        "graft-cuda-adamw"
    }
    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        cpu_only(self.name())
    }
    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
        s3: &CudaStorage,
        l3: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let n = l1.shape().elem_count();
        if l2.shape().elem_count() != n || l3.shape().elem_count() != 3 * n {
            bail!(
                "graft-cuda-adamw: parameter of {n}, gradient of {}, state of {} (want {})",
                l2.shape().elem_count(),
                l3.shape().elem_count(),
                3 * n
            )
        }
        let dev = &s1.device;
        let w = view::<f32>(s1, l1, "parameter")?;
        let g = view::<f32>(s2, l2, "gradient")?;
        let mv = view::<f32>(s3, l3, "state")?;
        // SAFETY: adamw_step writes all 3n values.
        let out = unsafe { dev.alloc::<f32>(3 * n)? };
        let ni = n as i64;
        launch!(dev, "adamw_step", flat_cfg(n); &w, &g, &mv, &ni, &self.b1, &self.c1, &self.b2, &self.c2,
            &self.ibc1, &self.ibc2, &self.eps, &self.decay, &self.lr, &out)?;
        Ok((wrap(out, dev), Shape::from(3 * n)))
    }
}

/// Training-mode BatchNorm and its activation in candle's tensor ops (the self-check's
/// reference): (y, batch mean (1, c, 1, 1), biased batch variance (1, c, 1, 1)).
fn bn_reference(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64, cap: Option<f32>) -> Result<(Tensor, Tensor, Tensor)> {
    let c = gamma.elem_count();
    let mean = x.mean_keepdim(0)?.mean_keepdim(2)?.mean_keepdim(3)?;
    let xm = x.broadcast_sub(&mean)?;
    let var = xm.sqr()?.mean_keepdim(0)?.mean_keepdim(2)?.mean_keepdim(3)?;
    let y = xm
        .broadcast_div(&(&var + eps)?.sqrt()?)?
        .broadcast_mul(&gamma.reshape((1, c, 1, 1))?)?
        .broadcast_add(&beta.reshape((1, c, 1, 1))?)?;
    let y = match cap {
        Some(cap) if cap.is_finite() => y.clamp(0f32, cap)?,
        Some(_) => y.relu()?,
        None => y,
    };
    Ok((y, mean, var))
}

// ---- self-check ----------------------------------------------------------------------------------

/// Runs one self-check case, keeping its rows; a case that fails to run (a launch or cuDNN
/// error) becomes a failing row with the error, so that one broken op does not hide the others.
fn guarded(out: &mut Vec<(String, f32, f32)>, case: &str, f: impl FnOnce(&mut Vec<(String, f32, f32)>) -> Result<()>) {
    let mut rows = Vec::new();
    let r = f(&mut rows);
    out.extend(rows);
    if let Err(e) = r {
        let msg = e.to_string().replace('\n', " ");
        out.push((format!("{case}: did not run: {msg}"), f32::MAX, 0.0));
    }
}

/// Each GPU op against candle's ops on the CPU (exact float32: candle's own cuDNN convolution
/// may use TF32 on the GPU), forward and backward: (name, max relative error, tolerance). Inputs
/// are drawn on the CPU from fixed seeds. A wrong index or a missing term shows as an error of
/// order 1; the tolerances allow for cuDNN's algorithms (Winograd, FFT) summing in other orders.
pub fn self_check(dev: &candle_core::Device) -> Result<Vec<(String, f32, f32)>> {
    use candle_core::{Device, Var};
    let cpu = Device::Cpu;
    let rand = |shape: &[usize], seed: u64| -> Tensor { super::testutil::rand(shape, seed, -1.0, 1.0) };
    // a pair of leaf variables holding the same values, on the GPU and on the CPU
    let pair = |t: &Tensor| -> Result<(Var, Var)> { Ok((Var::from_tensor(&t.to_device(dev)?)?, Var::from_tensor(t)?)) };
    let rel = |a: &Tensor, b: &Tensor| -> Result<f32> {
        let a = a.to_device(&cpu)?.to_dtype(DType::F32)?;
        let d = (&a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        let m = b.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        Ok(d / m.max(1e-12))
    };
    let mut out = Vec::new();
    // convolutions: dense, strided, 1x1, grouped and depthwise (k 3 and 5)
    for (i, &(b, cin, h, cout, k, s, p, groups)) in [
        (4, 16, 16, 32, 3, 1, 1, 1),
        (4, 16, 17, 32, 3, 2, 1, 1),
        (8, 32, 8, 64, 1, 1, 0, 1),
        (2, 3, 32, 16, 3, 2, 0, 1),
        (4, 8, 12, 16, 3, 1, 1, 4),
        (4, 32, 14, 32, 3, 1, 1, 32),
        (4, 24, 15, 24, 5, 2, 2, 24),
    ]
    .iter()
    .enumerate()
    {
        let name = format!("conv b{b} c{cin}->{cout} {h}px k{k} s{s} p{p} g{groups}");
        guarded(&mut out, &name, |out| {
            let (xg, xc) = pair(&rand(&[b, cin, h, h], 10 + i as u64))?;
            let (wg, wc) = pair(&rand(&[cout, cin / groups, k, k], 20 + i as u64))?;
            let o = (h + 2 * p - k) / s + 1;
            let up = rand(&[b, cout, o, o], 30 + i as u64);
            let ours = conv2d(xg.as_tensor(), wg.as_tensor(), s, p, groups)?;
            let theirs = xc.as_tensor().conv2d(wc.as_tensor(), p, s, 1, groups)?;
            out.push((format!("{name} forward"), rel(&ours, &theirs)?, 1e-4));
            let go = (ours * up.to_device(dev)?)?.sum_all()?.backward()?;
            let gt = (theirs * &up)?.sum_all()?.backward()?;
            out.push((format!("{name} input grad"), rel(go.get(xg.as_tensor()).expect("dx"), gt.get(xc.as_tensor()).expect("dx"))?, 1e-4));
            out.push((format!("{name} weight grad"), rel(go.get(wg.as_tensor()).expect("dw"), gt.get(wc.as_tensor()).expect("dw"))?, 1e-4));
            Ok(())
        });
    }
    // graft's depthwise kernels: symmetric padding, TensorFlow "SAME" at stride 2 (the extra
    // pixel bottom/right, no padded copy), k 5 at stride 2, odd sizes
    let dw_cases: [(usize, usize, usize, usize, usize, [usize; 4]); 4] =
        [(4, 32, 14, 3, 1, [1, 1, 1, 1]), (4, 16, 16, 3, 2, [0, 1, 0, 1]), (2, 24, 15, 5, 2, [2, 2, 2, 2]), (3, 8, 9, 5, 1, [2, 2, 2, 2])];
    let pad_cpu = |x: &Tensor, p: [usize; 4]| -> Result<Tensor> { x.pad_with_zeros(2, p[0], p[1])?.pad_with_zeros(3, p[2], p[3]) };
    for (i, &(b, c, h, k, s, p)) in dw_cases.iter().enumerate() {
        let name = format!("depthwise b{b} c{c} {h}px k{k} s{s} pad {p:?}");
        guarded(&mut out, &name, |out| {
            let (xg, xc) = pair(&rand(&[b, c, h, h], 190 + i as u64))?;
            let (wg, wc) = pair(&rand(&[c, 1, k, k], 200 + i as u64))?;
            let ours = depthwise(xg.as_tensor(), wg.as_tensor(), s, p)?;
            let theirs = pad_cpu(xc.as_tensor(), p)?.conv2d(wc.as_tensor(), 0, s, 1, c)?;
            let up = rand(theirs.dims(), 210 + i as u64);
            out.push((format!("{name} forward"), rel(&ours, &theirs)?, 1e-5));
            let go = (ours * up.to_device(dev)?)?.sum_all()?.backward()?;
            let gt = (theirs * &up)?.sum_all()?.backward()?;
            out.push((format!("{name} input grad"), rel(go.get(xg.as_tensor()).expect("dx"), gt.get(xc.as_tensor()).expect("dx"))?, 1e-5));
            out.push((format!("{name} weight grad"), rel(go.get(wg.as_tensor()).expect("dw"), gt.get(wc.as_tensor()).expect("dw"))?, 1e-5));
            Ok(())
        });
    }
    // padded max-pool (the torchvision stem) against graft's CPU kernel, on ReLU'd values of a
    // coarse grid, so that many windows tie and must pick the same (first) maximum
    let pool_cases = [(2, 8, 16, 3, 2, 1), (2, 4, 15, 3, 2, 1), (2, 4, 9, 3, 1, 1)];
    let tied = |shape: &[usize], seed: u64| -> Result<Tensor> { (rand(shape, seed) * 4.0)?.round()?.relu() };
    for (i, &(b, c, h, k, s, p)) in pool_cases.iter().enumerate() {
        let name = format!("max-pool b{b} c{c} {h}px k{k} s{s} p{p}");
        guarded(&mut out, &name, |out| {
            let (xg, xc) = pair(&tied(&[b, c, h, h], 230 + i as u64)?)?;
            let ours = max_pool(xg.as_tensor(), k, s, p)?;
            let theirs = crate::kernels::max_pool(xc.as_tensor(), k, s, p)?;
            let up = rand(theirs.dims(), 240 + i as u64);
            out.push((format!("{name} forward"), rel(&ours, &theirs)?, 0.0));
            let go = (ours * up.to_device(dev)?)?.sum_all()?.backward()?;
            let gt = (theirs * &up)?.sum_all()?.backward()?;
            out.push((format!("{name} input grad"), rel(go.get(xg.as_tensor()).expect("dx"), gt.get(xc.as_tensor()).expect("dx"))?, 1e-6));
            Ok(())
        });
    }
    // BatchNorm + activation in training mode, and its running statistics
    for (i, &(b, c, h, cap)) in
        [(8, 16, 8, None), (4, 32, 7, Some(6f32)), (16, 8, 4, Some(f32::INFINITY)), (2, 3, 33, Some(6f32))].iter().enumerate()
    {
        let name = format!("batchnorm b{b} c{c} {h}px act {cap:?}");
        guarded(&mut out, &name, |out| {
            let (xg, xc) = pair(&((rand(&[b, c, h, h], 40 + i as u64) * 3.0)? + 0.5)?)?;
            let (gg, gc) = pair(&(rand(&[c], 50 + i as u64) + 1.5)?)?;
            let (bg, bc) = pair(&rand(&[c], 60 + i as u64))?;
            let up = rand(&[b, c, h, h], 70 + i as u64);
            let (rm, rv) = (Tensor::zeros(c, DType::F32, dev)?, Tensor::ones(c, DType::F32, dev)?);
            let (ours, nrm, nrv) = batchnorm_train(xg.as_tensor(), gg.as_tensor(), bg.as_tensor(), (&rm, &rv), 1e-5, 0.1, cap)?;
            let (theirs, mean, var) = bn_reference(xc.as_tensor(), gc.as_tensor(), bc.as_tensor(), 1e-5, cap)?;
            let n = (b * h * h) as f64;
            let trm = (mean.flatten_all()? * 0.1)?;
            let trv = (var.flatten_all()? * (n / (n - 1.0)))?.affine(0.1, 0.9)?;
            out.push((format!("{name} forward"), rel(&ours, &theirs)?, 1e-5));
            out.push((format!("{name} running mean"), rel(&nrm, &trm)?, 1e-5));
            out.push((format!("{name} running var"), rel(&nrv, &trv)?, 1e-5));
            let go = (ours * up.to_device(dev)?)?.sum_all()?.backward()?;
            let gt = (theirs * &up)?.sum_all()?.backward()?;
            for ((vg, vc), what) in [((&xg, &xc), "input"), ((&gg, &gc), "weight"), ((&bg, &bc), "bias")] {
                let (a, r) = (go.get(vg.as_tensor()).expect("grad"), gt.get(vc.as_tensor()).expect("grad"));
                out.push((format!("{name} {what} grad"), rel(a, r)?, 1e-4));
            }
            Ok(())
        });
    }
    // bfloat16 activations (`--precision bf16`): each op on bfloat16 operands against candle's
    // float32 ops on the CPU on the same (rounded) values; the tolerances allow for the outputs'
    // and the upstream gradients' rounding to bfloat16 (relative 2^-9 each)
    let round = |t: &Tensor| -> Result<Tensor> { t.to_dtype(DType::BF16)?.to_dtype(DType::F32) };
    let pair16 = |t: &Tensor| -> Result<(Var, Var)> {
        Ok((Var::from_tensor(&t.to_device(dev)?.to_dtype(DType::BF16)?)?, Var::from_tensor(&round(t)?)?))
    };
    // an output that is not bfloat16 fails its check
    let rel16 = |a: &Tensor, b: &Tensor| -> Result<f32> { Ok(if a.dtype() == DType::BF16 { rel(a, b)? } else { f32::MAX }) };
    for (i, &(b, cin, h, cout, k, s, p, groups)) in [(4, 16, 16, 32, 3, 1, 1, 1), (4, 32, 14, 32, 3, 1, 1, 32)].iter().enumerate() {
        let name = format!("bf16 conv b{b} c{cin}->{cout} {h}px k{k} g{groups}");
        guarded(&mut out, &name, |out| {
            let (xg, xc) = pair16(&rand(&[b, cin, h, h], 110 + i as u64))?;
            let (wg, wc) = pair16(&rand(&[cout, cin / groups, k, k], 120 + i as u64))?;
            let o = (h + 2 * p - k) / s + 1;
            let up = round(&rand(&[b, cout, o, o], 130 + i as u64))?;
            let ours = conv2d(xg.as_tensor(), wg.as_tensor(), s, p, groups)?;
            let theirs = xc.as_tensor().conv2d(wc.as_tensor(), p, s, 1, groups)?;
            out.push((format!("{name} forward"), rel16(&ours, &theirs)?, 1e-2));
            let go = (ours.to_dtype(DType::F32)? * up.to_device(dev)?)?.sum_all()?.backward()?;
            let gt = (theirs * &up)?.sum_all()?.backward()?;
            out.push((format!("{name} input grad"), rel(go.get(xg.as_tensor()).expect("dx"), gt.get(xc.as_tensor()).expect("dx"))?, 2e-2));
            out.push((format!("{name} weight grad"), rel(go.get(wg.as_tensor()).expect("dw"), gt.get(wc.as_tensor()).expect("dw"))?, 2e-2));
            Ok(())
        });
    }
    guarded(&mut out, "bf16 depthwise", |out| {
        let (b, c, h, k, s, p) = dw_cases[1];
        let (xg, xc) = pair16(&rand(&[b, c, h, h], 220))?;
        let (wg, wc) = pair16(&rand(&[c, 1, k, k], 221))?;
        let ours = depthwise(xg.as_tensor(), wg.as_tensor(), s, p)?;
        let theirs = pad_cpu(xc.as_tensor(), p)?.conv2d(wc.as_tensor(), 0, s, 1, c)?;
        let up = round(&rand(theirs.dims(), 222))?;
        let name = format!("bf16 depthwise b{b} c{c} {h}px k{k} s{s} pad {p:?}");
        out.push((format!("{name} forward"), rel16(&ours, &theirs)?, 1e-2));
        let go = (ours.to_dtype(DType::F32)? * up.to_device(dev)?)?.sum_all()?.backward()?;
        let gt = (theirs * &up)?.sum_all()?.backward()?;
        out.push((format!("{name} input grad"), rel(go.get(xg.as_tensor()).expect("dx"), gt.get(xc.as_tensor()).expect("dx"))?, 2e-2));
        out.push((format!("{name} weight grad"), rel(go.get(wg.as_tensor()).expect("dw"), gt.get(wc.as_tensor()).expect("dw"))?, 2e-2));
        Ok(())
    });
    for (i, &(b, c, h, cap)) in [(8, 16, 8, None), (4, 32, 7, Some(6f32)), (16, 8, 4, Some(f32::INFINITY))].iter().enumerate() {
        let name = format!("bf16 batchnorm b{b} c{c} {h}px act {cap:?}");
        guarded(&mut out, &name, |out| {
            let (xg, xc) = pair16(&((rand(&[b, c, h, h], 140 + i as u64) * 3.0)? + 0.5)?)?;
            let (gg, gc) = pair(&(rand(&[c], 150 + i as u64) + 1.5)?)?;
            let (bg, bc) = pair(&(rand(&[c], 160 + i as u64) + 3.0)?)?;
            let up = round(&rand(&[b, c, h, h], 170 + i as u64))?;
            let (rm, rv) = (Tensor::zeros(c, DType::F32, dev)?, Tensor::ones(c, DType::F32, dev)?);
            let (ours, nrm, _) = batchnorm_train(xg.as_tensor(), gg.as_tensor(), bg.as_tensor(), (&rm, &rv), 1e-3, 0.1, cap)?;
            let (theirs, mean, _) = bn_reference(xc.as_tensor(), gc.as_tensor(), bc.as_tensor(), 1e-3, cap)?;
            out.push((format!("{name} forward"), rel16(&ours, &theirs)?, 8e-3));
            out.push((format!("{name} running mean"), rel(&nrm, &(mean.flatten_all()? * 0.1)?)?, 1e-5));
            let go = (ours.to_dtype(DType::F32)? * up.to_device(dev)?)?.sum_all()?.backward()?;
            let gt = (theirs * &up)?.sum_all()?.backward()?;
            for ((vg, vc), what, tol) in [((&xg, &xc), "input", 2e-2), ((&gg, &gc), "weight", 5e-3), ((&bg, &bc), "bias", 5e-3)] {
                let (a, r) = (go.get(vg.as_tensor()).expect("grad"), gt.get(vc.as_tensor()).expect("grad"));
                out.push((format!("{name} {what} grad"), rel(a, r)?, tol));
            }
            Ok(())
        });
    }
    guarded(&mut out, "bf16 max-pool", |out| {
        let (b, c, h, k, s, p) = pool_cases[0];
        let (xg, xc) = pair16(&tied(&[b, c, h, h], 250)?)?;
        let up = round(&rand(&[b, c, (h + 2 * p - k) / s + 1, (h + 2 * p - k) / s + 1], 251))?;
        let ours = max_pool(xg.as_tensor(), k, s, p)?;
        let theirs = crate::kernels::max_pool(xc.as_tensor(), k, s, p)?;
        out.push(("bf16 max-pool forward".into(), rel16(&ours, &theirs)?, 0.0));
        let go = (ours.to_dtype(DType::F32)? * up.to_device(dev)?)?.sum_all()?.backward()?;
        let gt = (theirs * &up)?.sum_all()?.backward()?;
        out.push(("bf16 max-pool input grad".into(), rel(go.get(xg.as_tensor()).expect("dx"), gt.get(xc.as_tensor()).expect("dx"))?, 4e-3));
        Ok(())
    });
    guarded(&mut out, "bf16 add+relu", |out| {
        let (ag, ac) = pair16(&rand(&[4, 16, 9, 9], 180))?;
        let (bg, bc) = pair16(&rand(&[4, 16, 9, 9], 181))?;
        let up = round(&rand(&[4, 16, 9, 9], 182))?;
        let ours = add_relu(ag.as_tensor(), bg.as_tensor())?;
        let theirs = (ac.as_tensor() + bc.as_tensor())?.relu()?;
        out.push(("bf16 add+relu forward".into(), rel16(&ours, &theirs)?, 4e-3));
        let go = (ours.to_dtype(DType::F32)? * up.to_device(dev)?)?.sum_all()?.backward()?;
        let gt = (theirs * &up)?.sum_all()?.backward()?;
        out.push(("bf16 add+relu grad".into(), rel(go.get(ag.as_tensor()).expect("grad"), gt.get(ac.as_tensor()).expect("grad"))?, 1e-6));
        Ok(())
    });
    // residual add + ReLU
    guarded(&mut out, "add+relu", |out| {
        let (ag, ac) = pair(&rand(&[4, 16, 9, 9], 80))?;
        let (bg, bc) = pair(&rand(&[4, 16, 9, 9], 81))?;
        let up = rand(&[4, 16, 9, 9], 82);
        let ours = add_relu(ag.as_tensor(), bg.as_tensor())?;
        let theirs = (ac.as_tensor() + bc.as_tensor())?.relu()?;
        out.push(("add+relu forward".into(), rel(&ours, &theirs)?, 1e-6));
        let go = (ours * up.to_device(dev)?)?.sum_all()?.backward()?;
        let gt = (theirs * &up)?.sum_all()?.backward()?;
        out.push(("add+relu grad".into(), rel(go.get(ag.as_tensor()).expect("grad"), gt.get(ac.as_tensor()).expect("grad"))?, 1e-6));
        Ok(())
    });
    // AdamW: three steps of the fused kernel against the tensor-op formula
    guarded(&mut out, "adamw", |out| {
        let n = 1000;
        let w0 = rand(&[n], 90);
        let (b1, b2, eps, lr, wd) = (0.9f64, 0.999f64, 1e-8f64, 1e-2f64, 0.05f64);
        let w0g = w0.to_device(dev)?;
        let (mut w, mut st) = (w0g.clone(), Tensor::cat(&[&w0g, &Tensor::zeros(2 * n, DType::F32, dev)?], 0)?);
        let (mut wr, mut m, mut v) = (w0.clone(), Tensor::zeros(n, DType::F32, &cpu)?, Tensor::zeros(n, DType::F32, &cpu)?);
        for t in 1..=3 {
            let g = rand(&[n], 100 + t as u64);
            let (bc1, bc2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
            let op = AdamW {
                b1: b1 as f32,
                c1: (1.0 - b1) as f32,
                b2: b2 as f32,
                c2: (1.0 - b2) as f32,
                ibc1: (1.0 / bc1) as f32,
                ibc2: (1.0 / bc2) as f32,
                eps: eps as f32,
                decay: (1.0 - lr * wd) as f32,
                lr: lr as f32,
            };
            st = w.apply_op3_no_bwd(&g.to_device(dev)?, &st, &op)?;
            w = st.narrow(0, 0, n)?;
            m = ((m * b1)? + (&g * (1.0 - b1))?)?;
            v = ((v * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let upd = ((&m / bc1)? / ((&v / bc2)?.sqrt()? + eps)?)?;
            wr = ((wr * (1.0 - lr * wd))? - (upd * lr)?)?;
        }
        out.push(("adamw 3 steps".into(), rel(&w, &wr)?, 1e-5));
        Ok(())
    });
    Ok(out)
}
