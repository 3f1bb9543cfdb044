// Runs graft's CUDA kernels (src/kernels/gpu/kernels.cu) on the CPU through shim.h, with the
// launch shapes src/kernels/gpu/mod.rs uses, against double-precision references (whose
// BatchNorm gradient is itself checked by central differences). Prints one line a check and
// exits 1 if any is off. Built and run by tests/cuda_kernels_emulated.rs.
#include "shim.h"
#include KERNELS

#include <algorithm>
#include <cstdio>
#include <random>

static int failures = 0;
static void check(const char* what, double err, double tol) {
    bool ok = err <= tol;
    if (!ok) failures++;
    std::printf("%s %-48s max error %.3e (tolerance %.0e)\n", ok ? "ok  " : "FAIL", what, err, tol);
}

// mod.rs's launch shapes
static Dim3 flat_cfg(size_t n) { return Dim3{(unsigned)std::clamp<size_t>((n + 255) / 256, 1, 8192), 1, 1}; }
static Dim3 chan_cfg(size_t c) { return Dim3{(unsigned)((c + 127) / 128), 1, 1}; }
static int split(size_t per) { return (int)std::clamp<size_t>((per + 4095) / 4096, 1, 64); }

struct Ref {
    std::vector<double> y, mean, var;
};

// y = act(γ(x − mean)/√(var + eps) + β) in double; cap < 0: no activation
static Ref bn_ref(const std::vector<float>& x, const std::vector<float>& g, const std::vector<float>& be, int b, int c,
                  int hw, double eps, float cap) {
    Ref r;
    r.y.resize(x.size());
    r.mean.assign(c, 0);
    r.var.assign(c, 0);
    double n = (double)b * hw;
    for (int ch = 0; ch < c; ch++) {
        for (int i = 0; i < b; i++)
            for (int p = 0; p < hw; p++) r.mean[ch] += x[((size_t)i * c + ch) * hw + p];
        r.mean[ch] /= n;
        for (int i = 0; i < b; i++)
            for (int p = 0; p < hw; p++) {
                double d = x[((size_t)i * c + ch) * hw + p] - r.mean[ch];
                r.var[ch] += d * d;
            }
        r.var[ch] /= n;
        for (int i = 0; i < b; i++)
            for (int p = 0; p < hw; p++) {
                size_t j = ((size_t)i * c + ch) * hw + p;
                double v = g[ch] * (x[j] - r.mean[ch]) / std::sqrt(r.var[ch] + eps) + be[ch];
                if (cap >= 0) v = std::min(std::max(v, 0.0), (double)cap);
                r.y[j] = v;
            }
    }
    return r;
}

static double max_rel(const std::vector<float>& a, const std::vector<double>& b) {
    double d = 0, m = 1e-12;
    for (size_t i = 0; i < a.size(); i++) {
        d = std::max(d, std::fabs((double)a[i] - b[i]));
        m = std::max(m, std::fabs(b[i]));
    }
    return d / m;
}

static float to_float(float v) { return v; }
static float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
static float round_bf16(float v) { return __bfloat162float(__float2bfloat16(v)); }
template <class T> static T from_float(float v);
template <> float from_float<float>(float v) { return v; }
template <> __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16(v); }

// What the BatchNorm kernels give, as mod.rs launches them (activations of type T), in float.
struct BnOut {
    std::vector<double> st;
    std::vector<float> ss, y, coef, dx;
};

template <class T, class K1, class K2, class K3, class K4>
static BnOut run_bn(K1 stats_partial, K2 affine_act, K3 bwd_partial, K4 bwd_dx, const std::vector<float>& xf,
                    const std::vector<float>& dyf, const std::vector<float>& g, const std::vector<float>& be,
                    const std::vector<float>& rm, const std::vector<float>& rv, int b, int c, int hw, float cap, double eps,
                    double mom) {
    size_t total = (size_t)b * c * hw;
    std::vector<T> x(total), dy(total), y(total), dx(total);
    for (size_t i = 0; i < total; i++) x[i] = from_float<T>(xf[i]), dy[i] = from_float<T>(dyf[i]);
    BnOut o;
    int s = split((size_t)b * hw);
    double n = (double)b * hw;
    std::vector<double> part(2 * (size_t)s * c), bpart(2 * (size_t)s * c);
    o.st.resize(4 * (size_t)c);
    o.ss.resize(2 * (size_t)c);
    o.coef.resize(7 * (size_t)c);
    // forward, as BnStats, BnScaleShift and BnNorm launch it
    emu_launch(Dim3{(unsigned)s, (unsigned)c, 1}, Dim3{256, 1, 1}, stats_partial, (const T*)x.data(), b, c, hw, s, part.data());
    emu_launch_seq(chan_cfg(c), Dim3{128, 1, 1}, bn_stats_final, (const double*)part.data(), c, s, n, (const float*)rm.data(),
               (const float*)rv.data(), mom, o.st.data());
    emu_launch_seq(chan_cfg(c), Dim3{128, 1, 1}, bn_scale_shift, (const double*)o.st.data(), (const float*)g.data(),
               (const float*)be.data(), eps, c, o.ss.data());
    emu_launch_seq(flat_cfg(total), Dim3{256, 1, 1}, affine_act, (const T*)x.data(), (const float*)o.ss.data(), (int64_t)total,
               c, hw, cap, y.data());
    // backward, as BnBwd launches it
    emu_launch(Dim3{(unsigned)s, (unsigned)c, 1}, Dim3{256, 1, 1}, bwd_partial, (const T*)x.data(), (const T*)dy.data(),
               (const float*)o.ss.data(), cap, (const double*)o.st.data(), b, c, hw, s, bpart.data());
    emu_launch_seq(chan_cfg(c), Dim3{128, 1, 1}, bn_bwd_final, (const double*)bpart.data(), c, s, n, (const double*)o.st.data(),
               (const float*)g.data(), eps, o.coef.data());
    emu_launch_seq(flat_cfg(total), Dim3{256, 1, 1}, bwd_dx, (const T*)x.data(), (const T*)dy.data(), (const float*)o.ss.data(),
               cap, (const float*)o.coef.data(), (int64_t)total, c, hw, dx.data());
    for (size_t i = 0; i < total; i++) o.y.push_back(to_float(y[i])), o.dx.push_back(to_float(dx[i]));
    return o;
}

// Elements where a and b differ in their bits (after `round`, when given, on b).
static size_t bit_diffs(const std::vector<float>& a, const std::vector<float>& b, bool round) {
    size_t d = 0;
    for (size_t i = 0; i < a.size(); i++) {
        float r = round ? round_bf16(b[i]) : b[i];
        if (std::memcmp(&a[i], &r, 4) != 0) d++;
    }
    return d;
}

// `shift`: added to β, so that (with ReLU6) many pre-activations land just below the cap.
static void batchnorm(int b, int c, int hw, float cap, unsigned seed, float shift = 0.0f) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-1, 1);
    size_t total = (size_t)b * c * hw;
    std::vector<float> x(total), dy(total), g(c), be(c), rm(c), rv(c);
    for (auto& v : x) v = 3 * u(rng) + 0.5f;
    for (auto& v : dy) v = u(rng);
    for (auto& v : g) v = u(rng) + 1.5f;
    for (auto& v : be) v = u(rng) + shift;
    for (int ch = 0; ch < c; ch++) rm[ch] = 0.1f * ch, rv[ch] = 1.0f + 0.1f * ch;
    double eps = 1e-3, mom = 0.1;
    char name[96];
    std::snprintf(name, sizeof name, "batchnorm b%d c%d hw%d cap %g", b, c, hw, cap);
    std::string nm(name);

    BnOut o = run_bn<float>(bn_stats_partial, bn_affine_act, bn_bwd_partial, bn_bwd_dx, x, dy, g, be, rm, rv, b, c, hw, cap,
                            eps, mom);
    const std::vector<float>& y = o.y;
    const std::vector<double>& st = o.st;
    const std::vector<float>& coef = o.coef;
    const std::vector<float>& dx = o.dx;
    Ref r = bn_ref(x, g, be, b, c, hw, eps, cap);
    check((nm + " forward").c_str(), max_rel(y, r.y), 1e-6);
    double n = (double)b * hw, e_stats = 0;
    for (int ch = 0; ch < c; ch++) {
        e_stats = std::max(e_stats, std::fabs(st[ch] - r.mean[ch]) + std::fabs(st[c + ch] - r.var[ch]));
        double nrm = 0.9 * rm[ch] + 0.1 * r.mean[ch], nrv = 0.9 * rv[ch] + 0.1 * r.var[ch] * n / (n - 1);
        e_stats = std::max(e_stats, std::fabs(st[2 * c + ch] - nrm) + std::fabs(st[3 * c + ch] - nrv));
    }
    check((nm + " batch and running statistics").c_str(), e_stats, 1e-9);

    // the reference gradient in double
    std::vector<double> rdx(total), rdg(c, 0), rdb(c, 0);
    for (int ch = 0; ch < c; ch++) {
        double inv = 1 / std::sqrt(r.var[ch] + eps), sd = 0, sdx = 0;
        auto at = [&](int i, int p) { return ((size_t)i * c + ch) * hw + p; };
        auto masked = [&](size_t j) {
            if (cap < 0) return (double)dy[j];
            return (r.y[j] > 0 && r.y[j] < cap) ? (double)dy[j] : 0.0;
        };
        for (int i = 0; i < b; i++)
            for (int p = 0; p < hw; p++) {
                size_t j = at(i, p);
                sd += masked(j);
                sdx += masked(j) * (x[j] - r.mean[ch]) * inv;
            }
        rdb[ch] = sd;
        rdg[ch] = sdx;
        for (int i = 0; i < b; i++)
            for (int p = 0; p < hw; p++) {
                size_t j = at(i, p);
                double xh = (x[j] - r.mean[ch]) * inv;
                rdx[j] = g[ch] * inv / n * (n * masked(j) - sd - xh * sdx);
            }
    }
    check((nm + " input grad").c_str(), max_rel(dx, rdx), 1e-5);
    std::vector<float> dg(coef.begin(), coef.begin() + c), db(coef.begin() + c, coef.begin() + 2 * c);
    check((nm + " weight grad").c_str(), max_rel(dg, rdg), 1e-5);
    check((nm + " bias grad").c_str(), max_rel(db, rdb), 1e-5);

    // the reference gradient itself, by central differences of L = Σ dy·y at a few inputs
    double fd_err = 0, fd_scale = 1e-12;
    for (int k = 0; k < 6; k++) {
        size_t j = (size_t)(rng() % total);
        std::vector<float> xp = x, xm = x;
        float h = 1e-2f;
        xp[j] += h;
        xm[j] -= h;
        Ref p = bn_ref(xp, g, be, b, c, hw, eps, cap), m = bn_ref(xm, g, be, b, c, hw, eps, cap);
        double lp = 0, lm = 0;
        for (size_t q = 0; q < total; q++) lp += dy[q] * p.y[q], lm += dy[q] * m.y[q];
        double fd = (lp - lm) / (2.0 * ((double)xp[j] - (double)x[j]));
        fd_err = std::max(fd_err, std::fabs(fd - rdx[j]));
        fd_scale = std::max(fd_scale, std::fabs(rdx[j]));
    }
    // (a clamp kink inside ±h moves a difference quotient: the tolerance is loose on purpose)
    check((nm + " reference grad vs central differences").c_str(), fd_err / fd_scale, 1e-3);

    // bfloat16 activations: on the same (rounded) inputs, every statistic and coefficient is the
    // float32 kernels' bit for bit, and every output is theirs rounded once to bfloat16
    std::vector<float> xr(total), dyr(total);
    for (size_t i = 0; i < total; i++) xr[i] = round_bf16(x[i]), dyr[i] = round_bf16(dy[i]);
    BnOut f = run_bn<float>(bn_stats_partial, bn_affine_act, bn_bwd_partial, bn_bwd_dx, xr, dyr, g, be, rm, rv, b, c, hw, cap,
                            eps, mom);
    BnOut h = run_bn<__nv_bfloat16>(bn_stats_partial_bf16, bn_affine_act_bf16, bn_bwd_partial_bf16, bn_bwd_dx_bf16, xr, dyr, g,
                                    be, rm, rv, b, c, hw, cap, eps, mom);
    size_t near_cap = 0;
    for (size_t j = 0; j < total; j++) near_cap += cap > 0 && std::isfinite(cap) && f.y[j] < cap && round_bf16(f.y[j]) == cap;
    check((nm + " bf16: statistics, coefficients = f32's").c_str(),
          (double)(h.st != f.st) + (double)bit_diffs(h.ss, f.ss, false) + (double)bit_diffs(h.coef, f.coef, false), 0);
    check((nm + " bf16: output = f32's rounded").c_str(), (double)bit_diffs(h.y, f.y, true), 0);
    char mask[160];
    std::snprintf(mask, sizeof mask, "%s bf16: input grad = f32's rounded (%zu outputs round to the cap)", nm.c_str(), near_cap);
    check(mask, (double)bit_diffs(h.dx, f.dx, true), 0);
    check((nm + " bf16: output vs double reference").c_str(), max_rel(h.y, bn_ref(xr, g, be, b, c, hw, eps, cap).y), 4e-3);
}

// What the depthwise kernels give, as DwConv in mod.rs launches them (operands of type T), in
// float: (y, dx, dw).
struct DwOut {
    std::vector<float> y, dx, dw;
};

template <class T, class KF, class KD, class KP, class KQ>
static DwOut run_dw(KF fwd, KD data, KP filt, KQ fin, const std::vector<float>& xf, const std::vector<float>& wf,
                    const std::vector<float>& dyf, int b, int c, int h, int w, int oh, int ow, int k, int s, int pt, int pl) {
    size_t nx = (size_t)b * c * h * w, ny = (size_t)b * c * oh * ow, nw = (size_t)c * k * k;
    std::vector<T> x(nx), wt(nw), dy(ny), y(ny), dx(nx), dw(nw);
    for (size_t i = 0; i < nx; i++) x[i] = from_float<T>(xf[i]);
    for (size_t i = 0; i < nw; i++) wt[i] = from_float<T>(wf[i]);
    for (size_t i = 0; i < ny; i++) dy[i] = from_float<T>(dyf[i]);
    emu_launch_seq(flat_cfg(ny), Dim3{256, 1, 1}, fwd, (const T*)x.data(), (const T*)wt.data(), b, c, h, w, oh, ow, k, s, pt, pl,
                   y.data());
    emu_launch_seq(flat_cfg(nx), Dim3{256, 1, 1}, data, (const T*)dy.data(), (const T*)wt.data(), b, c, h, w, oh, ow, k, s, pt,
                   pl, dx.data());
    int parts = split((size_t)b * oh * ow);
    std::vector<double> part((size_t)c * parts * k * k);
    emu_launch(Dim3{(unsigned)parts, (unsigned)c, 1}, Dim3{256, 1, 1}, filt, (const T*)x.data(), (const T*)dy.data(), b, c, h, w,
               oh, ow, k, s, pt, pl, parts, part.data());
    emu_launch_seq(chan_cfg(nw), Dim3{128, 1, 1}, fin, (const double*)part.data(), c, k * k, parts, dw.data());
    DwOut o;
    for (auto v : y) o.y.push_back(to_float(v));
    for (auto v : dx) o.dx.push_back(to_float(v));
    for (auto v : dw) o.dw.push_back(to_float(v));
    return o;
}

// Depthwise convolution with padding pt/pb rows and pl/pr columns, against a double reference
// that scatters each (output, tap) product (the kernels gather), then the bfloat16 instances.
static void depthwise(int b, int c, int h, int w, int k, int s, int pt, int pb, int pl, int pr, unsigned seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-1, 1);
    int oh = (h + pt + pb - k) / s + 1, ow = (w + pl + pr - k) / s + 1;
    size_t nx = (size_t)b * c * h * w, ny = (size_t)b * c * oh * ow, nw = (size_t)c * k * k;
    std::vector<float> x(nx), wt(nw), dy(ny);
    for (auto& v : x) v = u(rng);
    for (auto& v : wt) v = u(rng);
    for (auto& v : dy) v = u(rng);
    std::vector<double> ry(ny, 0), rdx(nx, 0), rdw(nw, 0);
    for (int i = 0; i < b; i++)
        for (int ch = 0; ch < c; ch++)
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++) {
                    size_t o = (((size_t)i * c + ch) * oh + oy) * ow + ox;
                    for (int a = 0; a < k; a++)
                        for (int q = 0; q < k; q++) {
                            int iy = oy * s - pt + a, ix = ox * s - pl + q;
                            if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                            size_t xi = (((size_t)i * c + ch) * h + iy) * w + ix, wi = ((size_t)ch * k + a) * k + q;
                            ry[o] += (double)x[xi] * wt[wi];
                            rdx[xi] += (double)dy[o] * wt[wi];
                            rdw[wi] += (double)dy[o] * x[xi];
                        }
                }
    char name[96];
    std::snprintf(name, sizeof name, "depthwise b%d c%d %dx%d k%d s%d pad %d,%d,%d,%d", b, c, h, w, k, s, pt, pb, pl, pr);
    std::string nm(name);
    DwOut f = k == 3 ? run_dw<float>(dw_fwd_k3, dw_bwd_data_k3, dw_bwd_filter_partial_k3, dw_bwd_filter_final, x, wt, dy, b, c, h,
                                     w, oh, ow, k, s, pt, pl)
                     : run_dw<float>(dw_fwd_k5, dw_bwd_data_k5, dw_bwd_filter_partial_k5, dw_bwd_filter_final, x, wt, dy, b, c, h,
                                     w, oh, ow, k, s, pt, pl);
    check((nm + " forward").c_str(), max_rel(f.y, ry), 1e-6);
    check((nm + " input grad").c_str(), max_rel(f.dx, rdx), 1e-6);
    check((nm + " filter grad").c_str(), max_rel(f.dw, rdw), 1e-5);
    // bfloat16 operands: the float32 kernels' results on the same rounded values, rounded once
    std::vector<float> xr(nx), wr(nw), dyr(ny);
    for (size_t i = 0; i < nx; i++) xr[i] = round_bf16(x[i]);
    for (size_t i = 0; i < nw; i++) wr[i] = round_bf16(wt[i]);
    for (size_t i = 0; i < ny; i++) dyr[i] = round_bf16(dy[i]);
    DwOut fr = k == 3 ? run_dw<float>(dw_fwd_k3, dw_bwd_data_k3, dw_bwd_filter_partial_k3, dw_bwd_filter_final, xr, wr, dyr, b, c,
                                      h, w, oh, ow, k, s, pt, pl)
                      : run_dw<float>(dw_fwd_k5, dw_bwd_data_k5, dw_bwd_filter_partial_k5, dw_bwd_filter_final, xr, wr, dyr, b, c,
                                      h, w, oh, ow, k, s, pt, pl);
    DwOut hb = k == 3 ? run_dw<__nv_bfloat16>(dw_fwd_k3_bf16, dw_bwd_data_k3_bf16, dw_bwd_filter_partial_k3_bf16,
                                              dw_bwd_filter_final_bf16, xr, wr, dyr, b, c, h, w, oh, ow, k, s, pt, pl)
                      : run_dw<__nv_bfloat16>(dw_fwd_k5_bf16, dw_bwd_data_k5_bf16, dw_bwd_filter_partial_k5_bf16,
                                              dw_bwd_filter_final_bf16, xr, wr, dyr, b, c, h, w, oh, ow, k, s, pt, pl);
    check((nm + " bf16: output, grads = f32's rounded").c_str(),
          (double)(bit_diffs(hb.y, fr.y, true) + bit_diffs(hb.dx, fr.dx, true) + bit_diffs(hb.dw, fr.dw, true)), 0);
}

static void add_relu(unsigned seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-1, 1);
    size_t n = 5000;
    std::vector<float> a(n), b(n), y(n), dy(n), dx(n);
    for (size_t i = 0; i < n; i++) a[i] = u(rng), b[i] = u(rng), dy[i] = u(rng);
    emu_launch_seq(flat_cfg(n), Dim3{256, 1, 1}, add_relu_fwd, (const float*)a.data(), (const float*)b.data(), (int64_t)n, y.data());
    emu_launch_seq(flat_cfg(n), Dim3{256, 1, 1}, relu_mask, (const float*)dy.data(), (const float*)y.data(), (int64_t)n, dx.data());
    double e1 = 0, e2 = 0;
    for (size_t i = 0; i < n; i++) {
        float s = a[i] + b[i];
        e1 = std::max(e1, (double)std::fabs(y[i] - (s > 0 ? s : 0.0f)));
        e2 = std::max(e2, (double)std::fabs(dx[i] - (s > 0 ? dy[i] : 0.0f)));
    }
    check("add+relu forward", e1, 0);
    check("add+relu mask", e2, 0);
    // bfloat16: relu(a + b) summed in float32 and rounded once; the mask exact
    std::vector<__nv_bfloat16> ah(n), bh(n), yh(n), dyh(n), dxh(n);
    for (size_t i = 0; i < n; i++) ah[i] = __float2bfloat16(a[i]), bh[i] = __float2bfloat16(b[i]), dyh[i] = __float2bfloat16(dy[i]);
    emu_launch_seq(flat_cfg(n), Dim3{256, 1, 1}, add_relu_fwd_bf16, (const __nv_bfloat16*)ah.data(), (const __nv_bfloat16*)bh.data(),
               (int64_t)n, yh.data());
    emu_launch_seq(flat_cfg(n), Dim3{256, 1, 1}, relu_mask_bf16, (const __nv_bfloat16*)dyh.data(), (const __nv_bfloat16*)yh.data(),
               (int64_t)n, dxh.data());
    size_t d1 = 0, d2 = 0;
    for (size_t i = 0; i < n; i++) {
        float s = __bfloat162float(ah[i]) + __bfloat162float(bh[i]);
        float want = round_bf16(s > 0 ? s : 0.0f);
        d1 += __bfloat162float(yh[i]) != want;
        d2 += __bfloat162float(dxh[i]) != (s > 0 ? __bfloat162float(dyh[i]) : 0.0f);
    }
    check("add+relu bf16 forward (elements off)", (double)d1, 0);
    check("add+relu bf16 mask (elements off)", (double)d2, 0);
}

static void adamw(unsigned seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-1, 1);
    size_t n = 3000;
    std::vector<float> w(n), state(3 * n, 0.0f);
    for (auto& v : w) v = u(rng);
    std::vector<double> wr(w.begin(), w.end()), m(n, 0), v(n, 0);
    double b1 = 0.9, b2 = 0.999, eps = 1e-8, lr = 1e-2, wd = 0.05;
    for (int t = 1; t <= 3; t++) {
        std::vector<float> g(n), out(3 * n);
        for (auto& x : g) x = u(rng);
        double bc1 = 1 - std::pow(b1, t), bc2 = 1 - std::pow(b2, t);
        emu_launch_seq(flat_cfg(n), Dim3{256, 1, 1}, adamw_step, (const float*)w.data(), (const float*)g.data(),
                   (const float*)state.data(), (int64_t)n, (float)b1, (float)(1 - b1), (float)b2, (float)(1 - b2),
                   (float)(1 / bc1), (float)(1 / bc2), (float)eps, (float)(1 - lr * wd), (float)lr, out.data());
        state = out;
        std::copy(out.begin(), out.begin() + n, w.begin());
        for (size_t i = 0; i < n; i++) {
            m[i] = b1 * m[i] + (1 - b1) * g[i];
            v[i] = b2 * v[i] + (1 - b2) * (double)g[i] * g[i];
            wr[i] = wr[i] * (1 - lr * wd) - lr * (m[i] / bc1) / (std::sqrt(v[i] / bc2) + eps);
        }
    }
    check("adamw 3 steps (weights)", max_rel(w, wr), 1e-5);
    std::vector<float> mm(state.begin() + n, state.begin() + 2 * n);
    check("adamw 3 steps (first moment)", max_rel(mm, m), 1e-5);
}

// Max-pool with padding (the torchvision stem: 3x3, stride 2, padding 1) after a ReLU, so that
// many windows tie at 0, plus repeated positive values: against a reference that takes the first
// maximum of each window and scatters its gradient there in output order (graft's CPU kernel).
static void maxpool(int b, int c, int h, int w, int k, int s, int p, unsigned seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-1, 1);
    int oh = (h + 2 * p - k) / s + 1, ow = (w + 2 * p - k) / s + 1;
    size_t planes = (size_t)b * c, nx = planes * h * w, ny = planes * oh * ow;
    std::vector<float> x(nx), dy(ny), y(ny), dx(nx), ry(ny), rdx(nx, 0.0f);
    for (auto& v : x) v = std::max(0.0f, std::round(u(rng) * 8) / 4);  // ReLU'd, on a coarse grid: ties
    for (auto& v : dy) v = u(rng);
    for (size_t pl = 0; pl < planes; pl++)
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++) {
                int best = -1;
                for (int a = 0; a < k; a++)
                    for (int q = 0; q < k; q++) {
                        int iy = oy * s - p + a, ix = ox * s - p + q;
                        if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                        if (best < 0 || x[pl * h * w + iy * w + ix] > x[pl * h * w + best]) best = iy * w + ix;
                    }
                size_t o = (pl * oh + oy) * ow + ox;
                ry[o] = x[pl * h * w + best];
                rdx[pl * h * w + best] += dy[o];
            }
    emu_launch_seq(flat_cfg(ny), Dim3{256, 1, 1}, maxpool_fwd, (const float*)x.data(), (int64_t)planes, h, w, oh, ow, k, s, p,
                   y.data());
    emu_launch_seq(flat_cfg(nx), Dim3{256, 1, 1}, maxpool_bwd, (const float*)x.data(), (const float*)dy.data(), (int64_t)planes, h,
                   w, oh, ow, k, s, p, dx.data());
    char name[96];
    std::snprintf(name, sizeof name, "max-pool b%d c%d %dx%d k%d s%d p%d", b, c, h, w, k, s, p);
    std::string nm(name);
    check((nm + " forward (elements off)").c_str(), (double)bit_diffs(y, ry, false), 0);
    check((nm + " input grad (elements off)").c_str(), (double)bit_diffs(dx, rdx, false), 0);
    // bfloat16: the same maxima (x is on a bf16 grid), the gradient's sums rounded once
    std::vector<__nv_bfloat16> xh(nx), dyh(ny), yh(ny), dxh(nx);
    std::vector<float> dyr(ny), fdx(nx), yf, dxf;
    for (size_t i = 0; i < nx; i++) xh[i] = __float2bfloat16(x[i]);
    for (size_t i = 0; i < ny; i++) dyh[i] = __float2bfloat16(dy[i]), dyr[i] = round_bf16(dy[i]);
    emu_launch_seq(flat_cfg(nx), Dim3{256, 1, 1}, maxpool_bwd, (const float*)x.data(), (const float*)dyr.data(), (int64_t)planes,
                   h, w, oh, ow, k, s, p, fdx.data());
    emu_launch_seq(flat_cfg(ny), Dim3{256, 1, 1}, maxpool_fwd_bf16, (const __nv_bfloat16*)xh.data(), (int64_t)planes, h, w, oh, ow,
                   k, s, p, yh.data());
    emu_launch_seq(flat_cfg(nx), Dim3{256, 1, 1}, maxpool_bwd_bf16, (const __nv_bfloat16*)xh.data(),
                   (const __nv_bfloat16*)dyh.data(), (int64_t)planes, h, w, oh, ow, k, s, p, dxh.data());
    for (auto v : yh) yf.push_back(__bfloat162float(v));
    for (auto v : dxh) dxf.push_back(__bfloat162float(v));
    check((nm + " bf16: forward = f32's, grad = f32's rounded").c_str(),
          (double)(bit_diffs(yf, ry, false) + bit_diffs(dxf, fdx, true)), 0);
}

// The index helper both ways: 32-bit where the dividend fits, 64-bit above 2^32 - 1.
static void index_division() {
    size_t off = 0;
    std::mt19937_64 rng(13);
    for (int t = 0; t < 20000; t++) {
        int64_t a = t < 10000 ? (int64_t)(rng() % 0x100000000ULL) : (int64_t)(rng() % (1ULL << 40));
        if (t == 0) a = 0xffffffffLL;
        if (t == 1) a = 0x100000000LL;
        int d = 1 + (int)(rng() % 5000), rem = -1;
        int64_t q = divmod(a, d, rem);
        off += q != a / d || rem != a % d;
    }
    check("divmod, 32- and 64-bit dividends (results off)", (double)off, 0);
}

int main() {
    // channel planes of 1 pixel to 40x40, batches whose channel spans several blocks (split > 1)
    batchnorm(4, 3, 1600, 6.0f, 1);        // ReLU6, 6 400 a channel: 2 blocks a channel
    batchnorm(3, 5, 49, -1.0f, 2);         // no activation, 7x7 planes
    batchnorm(9, 4, 1, INFINITY, 3);       // ReLU, 1x1 planes
    batchnorm(2, 7, 33 * 33, INFINITY, 4); // ReLU, odd plane
    batchnorm(4, 6, 225, 6.0f, 7, 4.5f);   // ReLU6 with many pre-activations just below 6
    // depthwise: symmetric padding, TensorFlow "SAME" at stride 2 (the extra pixel bottom/right),
    // odd sizes, k 5, and a channel whose outputs span two blocks of the filter gradient
    depthwise(2, 3, 9, 7, 3, 1, 1, 1, 1, 1, 8);
    depthwise(2, 4, 12, 12, 3, 2, 0, 1, 0, 1, 9);
    depthwise(3, 2, 11, 10, 5, 2, 1, 2, 2, 1, 10);
    depthwise(3, 2, 40, 40, 5, 1, 2, 2, 2, 2, 11);
    depthwise(1, 5, 4, 4, 3, 1, 1, 1, 1, 1, 12);
    index_division();
    // max-pool: the torchvision stem (3x3, stride 2, padding 1) on even and odd planes, a 2x2
    // window without padding, and a 3x3 window at stride 1
    maxpool(2, 3, 16, 16, 3, 2, 1, 14);
    maxpool(2, 2, 15, 9, 3, 2, 1, 15);
    maxpool(1, 4, 8, 8, 2, 2, 0, 16);
    maxpool(2, 2, 7, 7, 3, 1, 1, 17);
    add_relu(5);
    adamw(6);
    std::printf("%d failure(s)\n", failures);
    return failures == 0 ? 0 : 1;
}
