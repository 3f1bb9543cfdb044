//! Direct 3x3, stride-1, pad-1 convolution for AVX-512 and AVX2 + FMA CPUs, with no im2col
//! matrix.
//!
//! A tile of 16 output pixels (consecutive in row-major order, so a tile may span rows) and 16
//! output channels lives in 16 zmm registers, one per pixel, each holding that pixel's 16
//! channels. For every input channel and tap, one vector of 16 weights is loaded and each
//! pixel's input value is broadcast and multiply-added into its register. So every input
//! value is read from a zero-padded copy of the image, with no column matrix nine times the
//! input's size. The same kernel computes the input gradient of such a convolution: it is the
//! convolution of dy with the weights flipped in both spatial axes and with in/out channels
//! swapped. Each output element is summed in a fixed order (input channel, then tap), so
//! results do not depend on the thread count.

/// Whether this CPU can run the kernel: AVX-512, or AVX2 with FMA (where a tile is 6 pixels
/// by 16 channels in 12 ymm registers; each output is summed in the same order with the same
/// fused multiply-adds, so both give the same bits).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f") || (std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Weights packed as [out-channel block of 16][in channel][tap][16], zero beyond `n_out`;
/// `get(o, i, tap)` reads the weight from output channel o, input channel i, tap ky·3 + kx.
pub fn pack(n_out: usize, n_in: usize, get: impl Fn(usize, usize, usize) -> f32) -> Vec<f32> {
    let nb = n_out.div_ceil(16);
    let mut p = vec![0f32; nb * n_in * 9 * 16];
    for o in 0..n_out {
        let (blk, lane) = (o / 16, o % 16);
        for i in 0..n_in {
            for t in 0..9 {
                p[((blk * n_in + i) * 9 + t) * 16 + lane] = get(o, i, t);
            }
        }
    }
    p
}

/// Copy one image (`n_in` x h x w) into the interior of `xp` ((h + 2) x (w + 2) per channel,
/// borders left at zero).
pub fn pad_into(x: &[f32], n_in: usize, h: usize, w: usize, xp: &mut [f32]) {
    let (wp, plane) = (w + 2, (h + 2) * (w + 2));
    for c in 0..n_in {
        for y in 0..h {
            let d = c * plane + (y + 1) * wp + 1;
            xp[d..d + w].copy_from_slice(&x[(c * h + y) * w..][..w]);
        }
    }
}

/// Every image of `x` (`n_in` x h x w each, one after another) convolved with packed weights
/// `wp` (`n_out` x h x w each), images in parallel, each padded into a per-thread buffer.
pub fn conv_batch(x: &[f32], wp: &[f32], n_in: usize, n_out: usize, h: usize, w: usize) -> Vec<f32> {
    conv_batch_then(x, wp, n_in, n_out, h, w, &|_, _| {})
}

/// [`conv_batch`], then `post(image index, output image)` on each image while it is still in cache.
pub fn conv_batch_then(
    x: &[f32],
    wp: &[f32],
    n_in: usize,
    n_out: usize,
    h: usize,
    w: usize,
    post: &(dyn Fn(usize, &mut [f32]) + Sync),
) -> Vec<f32> {
    let img = n_in * h * w;
    let n = x.len() / img.max(1);
    super::par_zeroed(
        n * n_out * h * w,
        n_out * h * w,
        || vec![0f32; n_in * (h + 2) * (w + 2)],
        |xp, i, yi| {
            pad_into(&x[i * img..(i + 1) * img], n_in, h, w, xp);
            conv_image(xp, wp, n_in, n_out, h, w, yi);
            post(i, yi);
        },
    )
}

/// y (n_out x h x w) = the 3x3 convolution of the padded image `xp` with packed weights `wp`.
pub fn conv_image(xp: &[f32], wp: &[f32], n_in: usize, n_out: usize, h: usize, w: usize, y: &mut [f32]) {
    assert!(available(), "direct conv needs AVX-512, or AVX2 and FMA");
    assert!(xp.len() >= n_in * (h + 2) * (w + 2) && wp.len() >= n_out.div_ceil(16) * n_in * 144 && y.len() >= n_out * h * w);
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F is present (checked just above) and the slices cover every index
            // the kernel reads or writes (asserted above; the offsets stay inside the padded
            // planes).
            unsafe { conv_image_avx512(xp, wp, n_in, n_out, h, w, y) }
        } else {
            // SAFETY: AVX2 and FMA are present (`available`, asserted above); the slices are
            // checked as for AVX-512.
            unsafe { conv_image_avx2(xp, wp, n_in, n_out, h, w, y) }
        }
    }
}

/// Pixels per AVX2 tile.
const PX2: usize = 6;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn conv_image_avx2(xp: &[f32], wp: &[f32], n_in: usize, n_out: usize, h: usize, w: usize, y: &mut [f32]) {
    use std::arch::x86_64::*;
    let (wpd, plane, hw) = (w + 2, (h + 2) * (w + 2), h * w);
    let mut tmp = [0f32; PX2 * 16];
    for p0 in (0..hw).step_by(PX2) {
        let valid = (hw - p0).min(PX2);
        // padded offset of each pixel's top-left tap (pixels past the end repeat the last one)
        let mut off = [0usize; PX2];
        for (j, o) in off.iter_mut().enumerate() {
            let p = p0 + j.min(valid - 1);
            *o = (p / w) * wpd + p % w;
        }
        for blk in 0..n_out.div_ceil(16) {
            let mut lo = [_mm256_setzero_ps(); PX2];
            let mut hi = [_mm256_setzero_ps(); PX2];
            let wb = wp.as_ptr().add(blk * n_in * 144);
            for ci in 0..n_in {
                let xb = xp.as_ptr().add(ci * plane);
                let wc = wb.add(ci * 144);
                for t in 0..9 {
                    let d = (t / 3) * wpd + t % 3;
                    let w0 = _mm256_loadu_ps(wc.add(t * 16));
                    let w1 = _mm256_loadu_ps(wc.add(t * 16 + 8));
                    for j in 0..PX2 {
                        let xv = _mm256_set1_ps(*xb.add(off[j] + d));
                        lo[j] = _mm256_fmadd_ps(xv, w0, lo[j]);
                        hi[j] = _mm256_fmadd_ps(xv, w1, hi[j]);
                    }
                }
            }
            for j in 0..PX2 {
                _mm256_storeu_ps(tmp.as_mut_ptr().add(j * 16), lo[j]);
                _mm256_storeu_ps(tmp.as_mut_ptr().add(j * 16 + 8), hi[j]);
            }
            for c in 0..(n_out - blk * 16).min(16) {
                let o = (blk * 16 + c) * hw + p0;
                for j in 0..valid {
                    y[o + j] = tmp[j * 16 + c];
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
// `acc` is a tile of 16 registers indexed by pixel, next to pointer offsets by the same index
#[allow(clippy::needless_range_loop)]
unsafe fn conv_image_avx512(xp: &[f32], wp: &[f32], n_in: usize, n_out: usize, h: usize, w: usize, y: &mut [f32]) {
    use std::arch::x86_64::*;
    let (wpd, plane, hw) = (w + 2, (h + 2) * (w + 2), h * w);
    let mut tmp = [0f32; 256];
    for p0 in (0..hw).step_by(16) {
        let valid = (hw - p0).min(16);
        // padded offset of each pixel's top-left tap (pixels past the end repeat the last one)
        let mut off = [0usize; 16];
        for (j, o) in off.iter_mut().enumerate() {
            let p = p0 + j.min(valid - 1);
            *o = (p / w) * wpd + p % w;
        }
        let in_row = valid == 16 && p0 / w == (p0 + 15) / w;
        let two_rows = valid == 16 && w == 8;
        for blk in 0..n_out.div_ceil(16) {
            let mut acc = [_mm512_setzero_ps(); 16];
            let wb = wp.as_ptr().add(blk * n_in * 144);
            if in_row {
                // the 16 pixels are consecutive in one row: one base pointer, constant offsets
                for ci in 0..n_in {
                    let xb = xp.as_ptr().add(ci * plane + off[0]);
                    let wc = wb.add(ci * 144);
                    for t in 0..9 {
                        let xr = xb.add((t / 3) * wpd + t % 3);
                        let wv = _mm512_loadu_ps(wc.add(t * 16));
                        for j in 0..16 {
                            acc[j] = _mm512_fmadd_ps(_mm512_set1_ps(*xr.add(j)), wv, acc[j]);
                        }
                    }
                }
            } else if two_rows {
                // width 8: pixels 0..8 of the tile in one row, 8..16 at the same columns of the next
                for ci in 0..n_in {
                    let xb = xp.as_ptr().add(ci * plane + off[0]);
                    let wc = wb.add(ci * 144);
                    for t in 0..9 {
                        let xr = xb.add((t / 3) * wpd + t % 3);
                        let xr2 = xr.add(wpd - 8);
                        let wv = _mm512_loadu_ps(wc.add(t * 16));
                        for j in 0..8 {
                            acc[j] = _mm512_fmadd_ps(_mm512_set1_ps(*xr.add(j)), wv, acc[j]);
                        }
                        for j in 8..16 {
                            acc[j] = _mm512_fmadd_ps(_mm512_set1_ps(*xr2.add(j)), wv, acc[j]);
                        }
                    }
                }
            } else {
                for ci in 0..n_in {
                    let xb = xp.as_ptr().add(ci * plane);
                    let wc = wb.add(ci * 144);
                    for t in 0..9 {
                        let d = (t / 3) * wpd + t % 3;
                        let wv = _mm512_loadu_ps(wc.add(t * 16));
                        for j in 0..16 {
                            acc[j] = _mm512_fmadd_ps(_mm512_set1_ps(*xb.add(off[j] + d)), wv, acc[j]);
                        }
                    }
                }
            }
            for (j, a) in acc.iter().enumerate() {
                _mm512_storeu_ps(tmp.as_mut_ptr().add(j * 16), *a);
            }
            for c in 0..(n_out - blk * 16).min(16) {
                let o = (blk * 16 + c) * hw + p0;
                for j in 0..valid {
                    y[o + j] = tmp[j * 16 + c];
                }
            }
        }
    }
}
