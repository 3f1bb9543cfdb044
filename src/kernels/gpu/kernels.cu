// graft's fused element-wise kernels for the CUDA build (`--features cudnn`), compiled to PTX by
// build.rs with nvcc and loaded through candle's custom-kernel API (src/kernels/gpu/mod.rs).
//
// Every reduction here has a fixed order (per-block partial sums in double, then a serial sum
// of the partials per channel), so a seed gives the same bits run after run: no atomics.
//
// Layout: NCHW, contiguous; `hw` pixels a plane, `c` channels, `b` images. A BatchNorm channel's
// elements are the planes (i·c + ch) for i < b.
//
// Activations (BatchNorm's input, output and gradients, the residual add's operands) come in
// float32 or bfloat16 (`--precision bf16`, where they stay bfloat16 through a block): each
// activation kernel is one template, instantiated as `name` (float) and `name_bf16`. Arithmetic
// is float32 (reductions float64) either way; a bfloat16 result is rounded to nearest even once,
// on store. BatchNorm's parameters, statistics and running statistics are float32 always.
#include <stdint.h>
#ifdef __CUDACC__
#include <cuda_bf16.h>
#endif

typedef __nv_bfloat16 bf16;

__device__ __forceinline__ float ldv(const float* __restrict__ p, int64_t j) { return p[j]; }
__device__ __forceinline__ float ldv(const bf16* __restrict__ p, int64_t j) { return __bfloat162float(p[j]); }
__device__ __forceinline__ void stv(float* __restrict__ p, int64_t j, float v) { p[j] = v; }
__device__ __forceinline__ void stv(bf16* __restrict__ p, int64_t j, float v) { p[j] = __float2bfloat16(v); }

#define RED_THREADS 256

// j over this thread's share of 0..n (a grid-stride loop).
#define GRID_STRIDE(j, n) for (int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; j < (n); j += (int64_t)gridDim.x * blockDim.x)

// Block-wide sum of two doubles into thread 0 (RED_THREADS threads, a power of two).
__device__ __forceinline__ void block_sum2(double& a, double& b, double* sa, double* sb) {
    int t = threadIdx.x;
    sa[t] = a;
    sb[t] = b;
    __syncthreads();
    for (int s = RED_THREADS / 2; s > 0; s >>= 1) {
        if (t < s) {
            sa[t] += sa[t + s];
            sb[t] += sb[t + s];
        }
        __syncthreads();
    }
    a = sa[0];
    b = sb[0];
}

// a / d, and the remainder in `rem` (a >= 0, d > 0), in 32-bit unsigned arithmetic where a
// fits: a GPU divides by a run-time divisor in a few instructions in 32 bits, in tens in 64.
__device__ __forceinline__ int64_t divmod(int64_t a, int d, int& rem) {
    if (a <= 0xffffffffLL) {
        uint32_t q = (uint32_t)a / (uint32_t)d;
        rem = (int)((uint32_t)a - q * (uint32_t)d);
        return q;
    }
    int64_t q = a / d;
    rem = (int)(a - q * d);
    return q;
}

// The channel of flat NCHW index j.
__device__ __forceinline__ int chan_of(int64_t j, int c, int hw) {
    int p, ch;
    divmod(divmod(j, hw, p), c, ch);
    return ch;
}

// The flat index of element j (0 <= j < b·hw) of channel ch.
__device__ __forceinline__ int64_t chan_at(int64_t j, int ch, int c, int hw) {
    int p;
    int64_t i = divmod(j, hw, p);
    return (i * c + ch) * (int64_t)hw + p;
}

// ---- BatchNorm, training mode ------------------------------------------------------------
// Pass 1: grid (s, c); block (ch, part) sums x and x² over its share of channel ch into
// part_out[(ch·s + part)·2 + {0,1}].
template <class T>
__device__ __forceinline__ void bn_stats_partial_t(const T* __restrict__ x, int b, int c, int hw, int s,
                                                   double* __restrict__ part_out) {
    __shared__ double sa[RED_THREADS], sb[RED_THREADS];
    int ch = blockIdx.y, part = blockIdx.x;
    int64_t n = (int64_t)b * hw;
    double s1 = 0.0, s2 = 0.0;
    for (int64_t j = (int64_t)part * RED_THREADS + threadIdx.x; j < n; j += (int64_t)s * RED_THREADS) {
        double v = ldv(x, chan_at(j, ch, c, hw));
        s1 += v;
        s2 += v * v;
    }
    block_sum2(s1, s2, sa, sb);
    if (threadIdx.x == 0) {
        part_out[((int64_t)ch * s + part) * 2] = s1;
        part_out[((int64_t)ch * s + part) * 2 + 1] = s2;
    }
}

// The pre-activation x·scale + shift of element j (channel ch), as the forward pass computes it
// (ss = [scale (c), shift (c)]).
template <class T>
__device__ __forceinline__ float bn_pre(const T* __restrict__ x, const float* __restrict__ ss, int64_t j, int ch, int c) {
    return ldv(x, j) * ss[ch] + ss[c + ch];
}

// y = min(max(0, x·scale + shift), cap) per channel (cap < 0: no activation).
template <class T>
__device__ __forceinline__ void bn_affine_act_t(const T* __restrict__ x, const float* __restrict__ ss, int64_t total,
                                                int c, int hw, float cap, T* __restrict__ y) {
    GRID_STRIDE(j, total) {
        int ch = chan_of(j, c, hw);
        float v = bn_pre(x, ss, j, ch, c);
        if (cap >= 0.0f) v = fminf(fmaxf(v, 0.0f), cap);
        stv(y, j, v);
    }
}

// The incoming gradient of element j, zero where the activation clamped: the pre-activation is
// recomputed from x (the same bits as the forward pass), not read back from the output, whose
// bfloat16 rounding could reach the clamp (a ReLU6 output in (5.98, 6) rounds to 6).
template <class T>
__device__ __forceinline__ float act_mask(const T* __restrict__ dy, const T* __restrict__ x, const float* __restrict__ ss,
                                          int64_t j, int ch, int c, float cap) {
    float d = ldv(dy, j);
    if (cap < 0.0f) return d;
    float v = bn_pre(x, ss, j, ch, c);
    return (v > 0.0f && v < cap) ? d : 0.0f;
}

// Backward pass 1: grid (s, c); sums of dy and dy·(x − mean) over a share of channel ch.
template <class T>
__device__ __forceinline__ void bn_bwd_partial_t(const T* __restrict__ x, const T* __restrict__ dy,
                                                 const float* __restrict__ ss, float cap, const double* __restrict__ stats,
                                                 int b, int c, int hw, int s, double* __restrict__ part_out) {
    __shared__ double sa[RED_THREADS], sb[RED_THREADS];
    int ch = blockIdx.y, part = blockIdx.x;
    int64_t n = (int64_t)b * hw;
    double mean = stats[ch];
    double s1 = 0.0, s2 = 0.0;
    for (int64_t j = (int64_t)part * RED_THREADS + threadIdx.x; j < n; j += (int64_t)s * RED_THREADS) {
        int64_t at = chan_at(j, ch, c, hw);
        double d = act_mask(dy, x, ss, at, ch, c, cap);
        s1 += d;
        s2 += d * ((double)ldv(x, at) - mean);
    }
    block_sum2(s1, s2, sa, sb);
    if (threadIdx.x == 0) {
        part_out[((int64_t)ch * s + part) * 2] = s1;
        part_out[((int64_t)ch * s + part) * 2 + 1] = s2;
    }
}

// Backward pass 3: dx = k·(dy − mean(dy) − x̂·mean(dy·x̂)), x̂ = (x − mean)·inv, dy masked.
template <class T>
__device__ __forceinline__ void bn_bwd_dx_t(const T* __restrict__ x, const T* __restrict__ dy, const float* __restrict__ ss,
                                            float cap, const float* __restrict__ coef, int64_t total, int c, int hw,
                                            T* __restrict__ dx) {
    GRID_STRIDE(j, total) {
        int ch = chan_of(j, c, hw);
        float k = coef[2 * c + ch], md = coef[3 * c + ch], mdx = coef[4 * c + ch], inv = coef[5 * c + ch];
        float m = coef[6 * c + ch];
        float d = act_mask(dy, x, ss, j, ch, c, cap);
        stv(dx, j, k * (d - md - (ldv(x, j) - m) * inv * mdx));
    }
}

// ---- residual add + ReLU -----------------------------------------------------------------
template <class T>
__device__ __forceinline__ void add_relu_fwd_t(const T* __restrict__ a, const T* __restrict__ b, int64_t n, T* __restrict__ y) {
    GRID_STRIDE(j, n)
        stv(y, j, fmaxf(ldv(a, j) + ldv(b, j), 0.0f));
}

// dx = dy where y > 0, else 0 (the gradient of both addends). A positive sum stays positive when
// rounded to bfloat16 (the same exponent range as float32), so the mask is exact in either type.
template <class T>
__device__ __forceinline__ void relu_mask_t(const T* __restrict__ dy, const T* __restrict__ y, int64_t n, T* __restrict__ dx) {
    GRID_STRIDE(j, n)
        stv(dx, j, ldv(y, j) > 0.0f ? ldv(dy, j) : 0.0f);
}

// ---- depthwise convolution ---------------------------------------------------------------
// x (b, c, h, w), filter (c, 1, k, k), y (b, c, oh, ow); stride s; zero padding pt rows above
// and pl columns left (the bottom/right padding is whatever oh and ow imply: TensorFlow "SAME"
// pads one more pixel there, with no copy of the input). Sums in float32 in a fixed order.
// Each kernel is instantiated for k = 3 and 5 (the windows EfficientNet uses): with k known at
// compile time its loops unroll and the filter gradient's k·k sums stay in registers.

// Forward: one thread an output element, y = Σ_ij x[oy·s − pt + i, ox·s − pl + j]·w[i, j].
template <class T, int K>
__device__ __forceinline__ void dw_fwd_t(const T* __restrict__ x, const T* __restrict__ wt, int b, int c, int h, int w,
                                         int oh, int ow, int s, int pt, int pl, T* __restrict__ y) {
    constexpr int k = K;
    int64_t total = (int64_t)b * c * oh * ow;
    GRID_STRIDE(j, total) {
        int ox, oy, ch;
        int64_t plane = divmod(divmod(j, ow, ox), oh, oy);
        divmod(plane, c, ch);
        int64_t xo = plane * h * w;
        int wo = ch * k * k;
        int iy0 = oy * s - pt, ix0 = ox * s - pl;
        float acc = 0.0f;
        for (int i = 0; i < k; i++) {
            int iy = iy0 + i;
            if (iy < 0 || iy >= h) continue;
            for (int q = 0; q < k; q++) {
                int ix = ix0 + q;
                if (ix < 0 || ix >= w) continue;
                acc += ldv(x, xo + (int64_t)iy * w + ix) * ldv(wt, wo + i * k + q);
            }
        }
        stv(y, j, acc);
    }
}

// Input gradient: one thread an input element, dx = Σ over the taps (i, j) whose output
// (oy, ox) = ((iy + pt − i)/s, (ix + pl − j)/s) exists (divides exactly, inside oh x ow) of
// dy[oy, ox]·w[i, j].
template <class T, int K>
__device__ __forceinline__ void dw_bwd_data_t(const T* __restrict__ dy, const T* __restrict__ wt, int b, int c, int h,
                                              int w, int oh, int ow, int s, int pt, int pl, T* __restrict__ dx) {
    constexpr int k = K;
    int64_t total = (int64_t)b * c * h * w;
    GRID_STRIDE(j, total) {
        int ix, iy, ch;
        int64_t plane = divmod(divmod(j, w, ix), h, iy);
        divmod(plane, c, ch);
        int64_t go = plane * oh * ow;
        int wo = ch * k * k;
        float acc = 0.0f;
        for (int i = 0; i < k; i++) {
            int ty = iy + pt - i;
            if (ty < 0 || ty % s != 0 || ty / s >= oh) continue;
            int oy = ty / s;
            for (int q = 0; q < k; q++) {
                int tx = ix + pl - q;
                if (tx < 0 || tx % s != 0 || tx / s >= ow) continue;
                acc += ldv(dy, go + (int64_t)oy * ow + tx / s) * ldv(wt, wo + i * k + q);
            }
        }
        stv(dx, j, acc);
    }
}

// Filter gradient, pass 1: grid (parts, c); block (part, ch) sums dy·x for each of the k·k taps
// over its share of channel ch's b·oh·ow outputs (each thread in float32, then the block in
// double) into part_out[(ch·parts + part)·k·k + tap].
template <class T, int K>
__device__ __forceinline__ void dw_bwd_filter_partial_t(const T* __restrict__ x, const T* __restrict__ dy, int b, int c,
                                                        int h, int w, int oh, int ow, int s, int pt, int pl,
                                                        int parts, double* __restrict__ part_out) {
    __shared__ double sa[RED_THREADS];
    int ch = blockIdx.y, part = blockIdx.x, t = threadIdx.x;
    int64_t n = (int64_t)b * oh * ow;
    constexpr int k = K;
    float acc[K * K];
    for (int q = 0; q < k * k; q++) acc[q] = 0.0f;
    for (int64_t p = (int64_t)part * RED_THREADS + t; p < n; p += (int64_t)parts * RED_THREADS) {
        int ox, oy;
        int64_t plane = divmod(divmod(p, ow, ox), oh, oy) * c + ch;
        float d = ldv(dy, (plane * oh + oy) * ow + ox);
        int64_t xo = plane * h * w;
        int iy0 = oy * s - pt, ix0 = ox * s - pl;
        for (int i = 0; i < k; i++) {
            int iy = iy0 + i;
            if (iy < 0 || iy >= h) continue;
            for (int q = 0; q < k; q++) {
                int ix = ix0 + q;
                if (ix < 0 || ix >= w) continue;
                acc[i * k + q] += d * ldv(x, xo + (int64_t)iy * w + ix);
            }
        }
    }
    for (int q = 0; q < k * k; q++) {
        sa[t] = acc[q];
        __syncthreads();
        for (int m = RED_THREADS / 2; m > 0; m >>= 1) {
            if (t < m) sa[t] += sa[t + m];
            __syncthreads();
        }
        if (t == 0) part_out[((int64_t)ch * parts + part) * k * k + q] = sa[0];
        __syncthreads();
    }
}

// Filter gradient, pass 2: one thread a (channel, tap), the partials summed in order.
template <class T>
__device__ __forceinline__ void dw_bwd_filter_final_t(const double* __restrict__ part, int c, int kk, int parts,
                                                      T* __restrict__ dw) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= c * kk) return;
    int ch = j / kk, q = j - ch * kk;
    double acc = 0.0;
    for (int p = 0; p < parts; p++) acc += part[((int64_t)ch * parts + p) * kk + q];
    stv(dw, j, (float)acc);
}

// ---- max-pool with padding ----------------------------------------------------------------
// x (b, c, h, w), window k, stride s, padding p on every side (padding never wins), y (b, c, oh,
// ow). The maximum is the first in row-major window order on ties, as graft's CPU kernel picks.

// Index (within its h x w plane) of the maximum of window (oy, ox).
template <class T>
__device__ __forceinline__ int pool_argmax(const T* __restrict__ plane, int h, int w, int oy, int ox, int k, int s, int p) {
    int y0 = oy * s - p, x0 = ox * s - p, best = -1;
    float bv = 0.0f;
    for (int dy = 0; dy < k; dy++) {
        int y = y0 + dy;
        if (y < 0 || y >= h) continue;
        for (int dx = 0; dx < k; dx++) {
            int x = x0 + dx;
            if (x < 0 || x >= w) continue;
            float v = ldv(plane, y * w + x);
            if (best < 0 || v > bv) {
                best = y * w + x;
                bv = v;
            }
        }
    }
    return best;
}

// Forward: one thread an output element.
template <class T>
__device__ __forceinline__ void maxpool_fwd_t(const T* __restrict__ x, int64_t planes, int h, int w, int oh, int ow, int k,
                                              int s, int p, T* __restrict__ y) {
    int64_t total = planes * oh * ow;
    GRID_STRIDE(j, total) {
        int ox, oy;
        int64_t plane = divmod(divmod(j, ow, ox), oh, oy);
        const T* xp = x + plane * h * w;
        stv(y, j, ldv(xp, pool_argmax(xp, h, w, oy, ox, k, s, p)));
    }
}

// Input gradient: one thread an input element, summing (in output order, as the CPU kernel adds
// them) the gradients of the windows whose maximum it is.
template <class T>
__device__ __forceinline__ void maxpool_bwd_t(const T* __restrict__ x, const T* __restrict__ dy, int64_t planes, int h,
                                              int w, int oh, int ow, int k, int s, int p, T* __restrict__ dx) {
    int64_t total = planes * h * w;
    GRID_STRIDE(j, total) {
        int ix, iy;
        int64_t plane = divmod(divmod(j, w, ix), h, iy);
        const T* xp = x + plane * h * w;
        // the windows holding (iy, ix): oy·s − p <= iy <= oy·s − p + k − 1
        int ly = iy + p - k + 1, lx = ix + p - k + 1;
        int oy0 = ly <= 0 ? 0 : (ly + s - 1) / s, ox0 = lx <= 0 ? 0 : (lx + s - 1) / s;
        int oy1 = min(oh - 1, (iy + p) / s), ox1 = min(ow - 1, (ix + p) / s);
        float acc = 0.0f;
        for (int oy = oy0; oy <= oy1; oy++)
            for (int ox = ox0; ox <= ox1; ox++)
                if (pool_argmax(xp, h, w, oy, ox, k, s, p) == iy * w + ix) acc += ldv(dy, (plane * oh + oy) * ow + ox);
        stv(dx, j, acc);
    }
}

extern "C" {

// Each activation kernel as `name` (float32) and `name_bf16` (bfloat16).
#define BN_STATS_PARTIAL(NAME, T)                                                                          \
    __global__ void NAME(const T* __restrict__ x, int b, int c, int hw, int s, double* __restrict__ part_out) { \
        bn_stats_partial_t(x, b, c, hw, s, part_out);                                                      \
    }
BN_STATS_PARTIAL(bn_stats_partial, float)
BN_STATS_PARTIAL(bn_stats_partial_bf16, bf16)

// Pass 2: one thread a channel. out (4·c doubles): mean, biased variance, and the running
// statistics after this batch: (1−m)·running + m·batch, the variance unbiased (n/(n−1)).
__global__ void bn_stats_final(const double* __restrict__ part, int c, int s, double n,
                               const float* __restrict__ run_mean, const float* __restrict__ run_var,
                               double momentum, double* __restrict__ out) {
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= c) return;
    double s1 = 0.0, s2 = 0.0;
    for (int p = 0; p < s; p++) {
        s1 += part[((int64_t)ch * s + p) * 2];
        s2 += part[((int64_t)ch * s + p) * 2 + 1];
    }
    double mean = s1 / n;
    double var = s2 / n - mean * mean;
    if (var < 0.0) var = 0.0;
    double unb = n > 1.0 ? n / (n - 1.0) : 1.0;
    out[ch] = mean;
    out[c + ch] = var;
    out[2 * c + ch] = (1.0 - momentum) * (double)run_mean[ch] + momentum * mean;
    out[3 * c + ch] = (1.0 - momentum) * (double)run_var[ch] + momentum * var * unb;
}

// Per channel (one thread each): scale = γ/√(var + eps) (in double, rounded once) and
// shift = β − mean·scale, from the batch statistics `stats` (mean at [ch], variance at [c + ch]);
// ss = [scale (c), shift (c)].
__global__ void bn_scale_shift(const double* __restrict__ stats, const float* __restrict__ gamma,
                               const float* __restrict__ beta, double eps, int c, float* __restrict__ ss) {
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= c) return;
    float scale = (float)((double)gamma[ch] / sqrt(stats[c + ch] + eps));
    ss[ch] = scale;
    ss[c + ch] = beta[ch] - (float)stats[ch] * scale;
}

#define BN_AFFINE_ACT(NAME, T)                                                                                 \
    __global__ void NAME(const T* __restrict__ x, const float* __restrict__ ss, int64_t total, int c, int hw, \
                         float cap, T* __restrict__ y) {                                                       \
        bn_affine_act_t(x, ss, total, c, hw, cap, y);                                                          \
    }
BN_AFFINE_ACT(bn_affine_act, float)
BN_AFFINE_ACT(bn_affine_act_bf16, bf16)

#define BN_BWD_PARTIAL(NAME, T)                                                                                  \
    __global__ void NAME(const T* __restrict__ x, const T* __restrict__ dy, const float* __restrict__ ss, float cap, \
                         const double* __restrict__ stats, int b, int c, int hw, int s, double* __restrict__ part_out) { \
        bn_bwd_partial_t(x, dy, ss, cap, stats, b, c, hw, s, part_out);                                          \
    }
BN_BWD_PARTIAL(bn_bwd_partial, float)
BN_BWD_PARTIAL(bn_bwd_partial_bf16, bf16)

// Backward pass 2: one thread a channel. coef (7·c floats): dγ = Σ dy·x̂, dβ = Σ dy, then the dx
// coefficients k = γ·inv, mean(dy), mean(dy·x̂), inv, with inv = 1/√(var + eps), and the mean.
__global__ void bn_bwd_final(const double* __restrict__ part, int c, int s, double n,
                             const double* __restrict__ stats, const float* __restrict__ gamma, double eps,
                             float* __restrict__ coef) {
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= c) return;
    double sd = 0.0, sdx = 0.0;
    for (int p = 0; p < s; p++) {
        sd += part[((int64_t)ch * s + p) * 2];
        sdx += part[((int64_t)ch * s + p) * 2 + 1];
    }
    double inv = 1.0 / sqrt(stats[c + ch] + eps);
    sdx *= inv;
    coef[ch] = (float)sdx;
    coef[c + ch] = (float)sd;
    coef[2 * c + ch] = (float)((double)gamma[ch] * inv);
    coef[3 * c + ch] = (float)(sd / n);
    coef[4 * c + ch] = (float)(sdx / n);
    coef[5 * c + ch] = (float)inv;
    coef[6 * c + ch] = (float)stats[ch];
}

#define BN_BWD_DX(NAME, T)                                                                                       \
    __global__ void NAME(const T* __restrict__ x, const T* __restrict__ dy, const float* __restrict__ ss, float cap, \
                         const float* __restrict__ coef, int64_t total, int c, int hw, T* __restrict__ dx) {     \
        bn_bwd_dx_t(x, dy, ss, cap, coef, total, c, hw, dx);                                                     \
    }
BN_BWD_DX(bn_bwd_dx, float)
BN_BWD_DX(bn_bwd_dx_bf16, bf16)

#define ADD_RELU(NAME, MASK, T)                                                                              \
    __global__ void NAME(const T* __restrict__ a, const T* __restrict__ b, int64_t n, T* __restrict__ y) {   \
        add_relu_fwd_t(a, b, n, y);                                                                          \
    }                                                                                                        \
    __global__ void MASK(const T* __restrict__ dy, const T* __restrict__ y, int64_t n, T* __restrict__ dx) { \
        relu_mask_t(dy, y, n, dx);                                                                           \
    }
ADD_RELU(add_relu_fwd, relu_mask, float)
ADD_RELU(add_relu_fwd_bf16, relu_mask_bf16, bf16)

// The k argument must be K (mod.rs picks the instance by the filter's size).
#define DW_CONV(FWD, DATA, FILT, T, K)                                                                          \
    __global__ void FWD(const T* __restrict__ x, const T* __restrict__ wt, int b, int c, int h, int w, int oh,  \
                        int ow, int k, int s, int pt, int pl, T* __restrict__ y) {                               \
        dw_fwd_t<T, K>(x, wt, b, c, h, w, oh, ow, s, pt, pl, y);                                                 \
    }                                                                                                            \
    __global__ void DATA(const T* __restrict__ dy, const T* __restrict__ wt, int b, int c, int h, int w, int oh,\
                         int ow, int k, int s, int pt, int pl, T* __restrict__ dx) {                             \
        dw_bwd_data_t<T, K>(dy, wt, b, c, h, w, oh, ow, s, pt, pl, dx);                                          \
    }                                                                                                            \
    __global__ void FILT(const T* __restrict__ x, const T* __restrict__ dy, int b, int c, int h, int w, int oh, \
                         int ow, int k, int s, int pt, int pl, int parts, double* __restrict__ part_out) {       \
        dw_bwd_filter_partial_t<T, K>(x, dy, b, c, h, w, oh, ow, s, pt, pl, parts, part_out);                    \
    }
DW_CONV(dw_fwd_k3, dw_bwd_data_k3, dw_bwd_filter_partial_k3, float, 3)
DW_CONV(dw_fwd_k3_bf16, dw_bwd_data_k3_bf16, dw_bwd_filter_partial_k3_bf16, bf16, 3)
DW_CONV(dw_fwd_k5, dw_bwd_data_k5, dw_bwd_filter_partial_k5, float, 5)
DW_CONV(dw_fwd_k5_bf16, dw_bwd_data_k5_bf16, dw_bwd_filter_partial_k5_bf16, bf16, 5)
__global__ void dw_bwd_filter_final(const double* __restrict__ part, int c, int kk, int parts, float* __restrict__ dw) {
    dw_bwd_filter_final_t(part, c, kk, parts, dw);
}
__global__ void dw_bwd_filter_final_bf16(const double* __restrict__ part, int c, int kk, int parts, bf16* __restrict__ dw) {
    dw_bwd_filter_final_t(part, c, kk, parts, dw);
}

#define MAXPOOL(FWD, BWD, T)                                                                                      \
    __global__ void FWD(const T* __restrict__ x, int64_t planes, int h, int w, int oh, int ow, int k, int s, int p, \
                        T* __restrict__ y) {                                                                          \
        maxpool_fwd_t(x, planes, h, w, oh, ow, k, s, p, y);                                                           \
    }                                                                                                                 \
    __global__ void BWD(const T* __restrict__ x, const T* __restrict__ dy, int64_t planes, int h, int w, int oh,    \
                        int ow, int k, int s, int p, T* __restrict__ dx) {                                            \
        maxpool_bwd_t(x, dy, planes, h, w, oh, ow, k, s, p, dx);                                                      \
    }
MAXPOOL(maxpool_fwd, maxpool_bwd, float)
MAXPOOL(maxpool_fwd_bf16, maxpool_bwd_bf16, bf16)

// ---- AdamW in one pass -------------------------------------------------------------------
// out = [w', m', v'] (3·n floats) from w, g and the previous state mv = [·, m, v] (3·n floats;
// the first third is not read). The f32 arithmetic is the CPU path's (src/optim.rs), op for op:
// each scalar op is x·a + b with a and b rounded to f32; `decay` < 0 means no weight decay.
__global__ void adamw_step(const float* __restrict__ w, const float* __restrict__ g,
                           const float* __restrict__ mv, int64_t n, float b1, float c1, float b2,
                           float c2, float ibc1, float ibc2, float eps, float decay, float lr,
                           float* __restrict__ out) {
    GRID_STRIDE(i, n) {
        float gi = g[i];
        float m = __fadd_rn(__fmul_rn(mv[n + i], b1), __fmul_rn(gi, c1));
        float g2 = __fmul_rn(gi, gi);
        float v = __fadd_rn(__fmul_rn(mv[2 * n + i], b2), __fmul_rn(g2, c2));
        float denom = __fadd_rn(__fsqrt_rn(__fmul_rn(v, ibc2)), eps);
        float upd = __fdiv_rn(__fmul_rn(m, ibc1), denom);
        float nw = w[i];
        if (decay >= 0.0f) nw = __fmul_rn(nw, decay);
        out[i] = __fsub_rn(nw, __fmul_rn(upd, lr));
        out[n + i] = m;
        out[2 * n + i] = v;
    }
}

}  // extern "C"
