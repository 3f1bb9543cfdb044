//! The residual join of ResNet blocks, relu(a + b), as one pass and one autograd node instead
//! of candle's add, then ReLU with its compare-and-multiply backward.
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

/// Elements per parallel chunk (large enough that the split costs nothing).
const CHUNK: usize = 1 << 14;

multiversion!(add_relu_chunk(y: &mut [f32], a: &[f32], b: &[f32]) -> () = add_relu_chunk_body);
multiversion!(mask_chunk(dx: &mut [f32], dy: &[f32], y: &[f32]) -> () = mask_chunk_body);
multiversion!(add_relu_inplace_chunk(y: &mut [f32], b: &[f32]) -> () = add_relu_inplace_body);

/// y = relu(y + b) in place: the arithmetic of [`add_relu`], so the same bits.
pub(crate) fn add_relu_inplace(y: &mut [f32], b: &[f32]) {
    add_relu_inplace_chunk(y, b)
}

#[inline(always)]
fn add_relu_inplace_body(y: &mut [f32], b: &[f32]) {
    for (o, v) in y.iter_mut().zip(b) {
        *o = (*o + v).max(0.0);
    }
}

#[inline(always)]
fn add_relu_chunk_body(y: &mut [f32], a: &[f32], b: &[f32]) {
    for ((o, u), v) in y.iter_mut().zip(a).zip(b) {
        *o = (u + v).max(0.0);
    }
}

/// dx = dy where y > 0, else 0 (a bit mask, as PyTorch's threshold backward).
#[inline(always)]
fn mask_chunk_body(dx: &mut [f32], dy: &[f32], y: &[f32]) {
    for ((o, d), r) in dx.iter_mut().zip(dy).zip(y) {
        *o = f32::from_bits(d.to_bits() & ((*r > 0.0) as u32).wrapping_neg());
    }
}

fn slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    super::contiguous_f32(s, l, "add-relu", what)
}

struct AddRelu;

impl CustomOp2 for AddRelu {
    fn name(&self) -> &'static str {
        "graft-add-relu"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        if l1.shape() != l2.shape() {
            candle_core::bail!("add-relu: shapes {:?} and {:?} differ", l1.dims(), l2.dims());
        }
        let (a, b) = (slice(s1, l1, "lhs")?, slice(s2, l2, "rhs")?);
        let y = super::par_zeroed(
            a.len(),
            CHUNK,
            || (),
            |_, i, y| {
                let r = i * CHUNK..i * CHUNK + y.len();
                add_relu_chunk(y, &a[r.clone()], &b[r])
            },
        );
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }
    fn bwd(&self, _a: &Tensor, _b: &Tensor, res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = grad.contiguous()?.apply_op2_no_bwd(&res.contiguous()?, &ReluMask)?;
        Ok((Some(g.clone()), Some(g)))
    }
}

/// dy masked by the forward output.
struct ReluMask;

impl CustomOp2 for ReluMask {
    fn name(&self) -> &'static str {
        "graft-relu-mask"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (dy, y) = (slice(s1, l1, "grad")?, slice(s2, l2, "output")?);
        let dx = super::par_zeroed(
            dy.len(),
            CHUNK,
            || (),
            |_, i, dx| {
                let r = i * CHUNK..i * CHUNK + dx.len();
                mask_chunk(dx, &dy[r.clone()], &y[r])
            },
        );
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

/// relu(a + b): graft's fused op for float32 on the CPU and on CUDA (`cudnn` feature), candle's
/// ops otherwise.
/// Two activations of different types (a bfloat16 block output and a float32 shortcut from
/// outside the backbone's pass) add in `a`'s type; the result is stored as activations are.
pub fn add_relu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let b = b.to_dtype(a.dtype())?;
    if super::gpu::act_applies(a) {
        return super::gpu::add_relu(a, &b);
    }
    let y = if super::native_kernels_apply(a, &[&b]) { a.contiguous()?.apply_op2(&b.contiguous()?, AddRelu)? } else { (a + b)?.relu()? };
    super::store_act(y)
}

/// x + b[c] over NCHW `x` and a per-channel bias `b` (a decoder convolution's bias): one pass
/// forward, and a backward whose bias gradient sums each channel's plane in order (f64), in
/// parallel over channels, instead of candle's strided reduction over three axes.
struct AddChannelBias;

impl CustomOp2 for AddChannelBias {
    fn name(&self) -> &'static str {
        "graft-add-channel-bias"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (_, c, h, w) = l1.shape().dims4()?;
        if l2.dims() != [c] {
            candle_core::bail!("add-channel-bias: bias {:?} for {c} channels", l2.dims());
        }
        let (x, b) =
            (super::contiguous_f32(s1, l1, "add-channel-bias", "input")?, super::contiguous_f32(s2, l2, "add-channel-bias", "bias")?);
        let plane = h * w;
        let y = super::par_zeroed(
            x.len(),
            plane.max(1),
            || (),
            |_, i, y| {
                let bv = b[i % c];
                for (o, v) in y.iter_mut().zip(&x[i * plane..]) {
                    *o = v + bv;
                }
            },
        );
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }
    fn bwd(&self, _x: &Tensor, _b: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = grad.contiguous()?;
        let db = g.apply_op1_no_bwd(&ChannelSums)?;
        Ok((Some(g), Some(db)))
    }
}

/// Per-channel sums of an NCHW tensor, each over images then pixels in order, accumulated in f64.
struct ChannelSums;

impl candle_core::CustomOp1 for ChannelSums {
    fn name(&self) -> &'static str {
        "graft-channel-sums"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        use rayon::prelude::*;
        let (n, c, h, w) = l.shape().dims4()?;
        let x = super::contiguous_f32(s, l, "channel-sums", "grad")?;
        let plane = h * w;
        let sums: Vec<f32> = (0..c)
            .into_par_iter()
            .map(|ci| {
                let mut acc = 0f64;
                for ni in 0..n {
                    let p = &x[(ni * c + ci) * plane..][..plane];
                    acc += p.iter().map(|&v| v as f64).sum::<f64>();
                }
                acc as f32
            })
            .collect();
        Ok((CpuStorage::F32(sums), Shape::from(c)))
    }
}

/// x + b broadcast over images and pixels (b: one value per channel): graft's op for float32
/// on the CPU, candle's broadcast add otherwise.
pub fn add_channel_bias(x: &Tensor, b: &Tensor) -> Result<Tensor> {
    if super::native_kernels_apply(x, &[b]) {
        x.contiguous()?.apply_op2(&b.contiguous()?, AddChannelBias)
    } else {
        x.broadcast_add(&b.reshape((1, (), 1, 1))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::{max_rel, rand};
    use candle_core::Var;

    /// The same output bits as candle's add then ReLU, and the same gradients to both inputs
    /// (the shape spans several parallel chunks; about half the sums are negative).
    #[test]
    fn matches_add_then_relu() {
        let shape = [3, 5, 37, 41];
        let a = Var::from_tensor(&rand(&shape, 1, -1.0, 1.0)).unwrap();
        let b = Var::from_tensor(&rand(&shape, 2, -1.0, 1.0)).unwrap();
        let up = rand(&shape, 3, -1.0, 1.0);
        let ours = add_relu(a.as_tensor(), b.as_tensor()).unwrap();
        let refr = (a.as_tensor() + b.as_tensor()).unwrap().relu().unwrap();
        assert_eq!(ours.flatten_all().unwrap().to_vec1::<f32>().unwrap(), refr.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        let g1 = (ours * &up).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (refr * &up).unwrap().sum_all().unwrap().backward().unwrap();
        for v in [&a, &b] {
            assert!(max_rel(g1.get(v).unwrap(), g2.get(v).unwrap()) < 1e-7);
        }
        let zeros = g1.get(&a).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().filter(|v| **v == 0.0).count();
        assert!(zeros > 1000, "the test must exercise the mask ({zeros} zeros)");
    }

    /// The fused bias add and its gradients match candle's broadcast add.
    #[test]
    fn channel_bias_matches_broadcast_add() {
        let x = Var::from_tensor(&rand(&[3, 4, 5, 6], 11, -1.0, 1.0)).unwrap();
        let b = Var::from_tensor(&rand(&[4], 12, -1.0, 1.0)).unwrap();
        let up = rand(&[3, 4, 5, 6], 13, -1.0, 1.0);
        let ours = add_channel_bias(x.as_tensor(), b.as_tensor()).unwrap();
        let refr = x.as_tensor().broadcast_add(&b.as_tensor().reshape((1, 4, 1, 1)).unwrap()).unwrap();
        assert!(max_rel(&ours, &refr) < 1e-7);
        let g1 = (ours * &up).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (refr * &up).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(max_rel(g1.get(&x).unwrap(), g2.get(&x).unwrap()) < 1e-7);
        assert!(max_rel(g1.get(&b).unwrap(), g2.get(&b).unwrap()) < 1e-5);
    }
}
