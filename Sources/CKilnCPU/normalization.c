// normalization.c — fused layer / RMS / group / batch / instance norm and local response norm for the
// CPU backend, forward and backward. Layouts, formulas and the statistics algorithm are documented in
// include/kiln_normalization.h.
//
// The hot loops use explicit 16-lane vectors (clang's ext_vector_type): the AVX-512 variant keeps one
// in a register, the AVX2 variant two halves, the baseline four SSE quarters; each body is compiled once
// per ISA by KILN_MULTIVERSION. Sums run in Float32 lanes within blocks of NORM_BLOCK elements and the
// block sums are added in double, so rows of 10^6 elements keep about 1e-7 relative accuracy.
// Large outputs can be written with non-temporal stores (`streaming`), which skip the read-for-ownership
// of each output line: on the 2-core Zen 5 machines this is the difference between ~35 and ~48 GB/s.
#include "kiln_cpu_internal.h"

// The vector helpers are always inlined into each ISA variant, so no 16-lane vector ever crosses a
// real call: the ABI warning about passing them without AVX-512 does not apply.
#pragma clang diagnostic ignored "-Wpsabi"

typedef float nv16 __attribute__((ext_vector_type(16)));

/// Elements summed in Float32 lanes before the block sum is added in double.
#define NORM_BLOCK 4096
/// Rows whose per-element dweight / dbias contributions are summed in float before a double flush.
#define NORM_ROW_BLOCK 32
/// Channels handled together when spatial == 1 (batch norm of [N, C]).
#define NORM_COLUMNS 128

KILN_INLINE nv16 nv_load(const float *p) {
    nv16 v;
    memcpy(&v, p, sizeof v);
    return v;
}

KILN_INLINE void nv_store(float *p, nv16 v, int streaming) {
    if (streaming)
        __builtin_nontemporal_store(v, (nv16 *)p); // p is 64-byte aligned (see the callers' heads)
    else
        memcpy(p, &v, sizeof v);
}

KILN_INLINE nv16 nv_splat(float s) { return (nv16)s; }

KILN_INLINE double nv_sum(nv16 v) {
    double s = 0.0;
    for (int k = 0; k < 16; k++) s += v[k];
    return s;
}

/// Orders the non-temporal stores before the caller's synchronisation (they are weakly ordered).
KILN_INLINE void norm_store_fence(int streaming) {
#ifdef KILN_X86
    if (streaming) __builtin_ia32_sfence();
#else
    (void)streaming;
#endif
}

/// Elements to write one at a time before y + i is 64-byte aligned (0 unless streaming).
KILN_INLINE int64_t norm_head(const float *y, int64_t n, int streaming) {
    if (!streaming) return 0;
    const int64_t head = (int64_t)((64 - ((uintptr_t)y & 63)) & 63) / 4;
    return ((uintptr_t)y & 3) != 0 || head > n ? n : head;
}

// ---------------------------------------------------------------------------------------------------
// Sums

/// Σ x[i], i < n.
KILN_INLINE double norm_sum(const float *x, int64_t n) {
    double total = 0.0;
    for (int64_t b = 0; b < n; b += NORM_BLOCK) {
        const int64_t len = n - b < NORM_BLOCK ? n - b : NORM_BLOCK;
        const float *p = x + b;
        nv16 a0 = nv_splat(0), a1 = a0, a2 = a0, a3 = a0;
        int64_t i = 0;
        for (; i + 64 <= len; i += 64) {
            a0 += nv_load(p + i);
            a1 += nv_load(p + i + 16);
            a2 += nv_load(p + i + 32);
            a3 += nv_load(p + i + 48);
        }
        for (; i + 16 <= len; i += 16) a0 += nv_load(p + i);
        double tail = 0.0;
        for (; i < len; i++) tail += p[i];
        total += nv_sum((a0 + a1) + (a2 + a3)) + tail;
    }
    return total;
}

/// Σ x[i]², i < n.
KILN_INLINE double norm_sum_squares(const float *x, int64_t n) {
    double total = 0.0;
    for (int64_t b = 0; b < n; b += NORM_BLOCK) {
        const int64_t len = n - b < NORM_BLOCK ? n - b : NORM_BLOCK;
        const float *p = x + b;
        nv16 a0 = nv_splat(0), a1 = a0, a2 = a0, a3 = a0;
        int64_t i = 0;
        for (; i + 64 <= len; i += 64) {
            const nv16 v0 = nv_load(p + i), v1 = nv_load(p + i + 16);
            const nv16 v2 = nv_load(p + i + 32), v3 = nv_load(p + i + 48);
            a0 += v0 * v0;
            a1 += v1 * v1;
            a2 += v2 * v2;
            a3 += v3 * v3;
        }
        for (; i + 16 <= len; i += 16) {
            const nv16 v = nv_load(p + i);
            a0 += v * v;
        }
        double tail = 0.0;
        for (; i < len; i++) tail += (double)p[i] * p[i];
        total += nv_sum((a0 + a1) + (a2 + a3)) + tail;
    }
    return total;
}

/// Adds Σ (x[i] − m) to *s1 and Σ (x[i] − m)² to *s2, i < n.
KILN_INLINE void norm_deviation_sums(const float *x, int64_t n, float m, double *s1, double *s2) {
    const nv16 mv = nv_splat(m);
    for (int64_t b = 0; b < n; b += NORM_BLOCK) {
        const int64_t len = n - b < NORM_BLOCK ? n - b : NORM_BLOCK;
        const float *p = x + b;
        nv16 a0 = nv_splat(0), a1 = a0, a2 = a0, a3 = a0, q0 = a0, q1 = a0, q2 = a0, q3 = a0;
        int64_t i = 0;
        for (; i + 64 <= len; i += 64) {
            const nv16 d0 = nv_load(p + i) - mv, d1 = nv_load(p + i + 16) - mv;
            const nv16 d2 = nv_load(p + i + 32) - mv, d3 = nv_load(p + i + 48) - mv;
            a0 += d0;
            a1 += d1;
            a2 += d2;
            a3 += d3;
            q0 += d0 * d0;
            q1 += d1 * d1;
            q2 += d2 * d2;
            q3 += d3 * d3;
        }
        a0 += a2;
        a1 += a3;
        q0 += q2;
        q1 += q3;
        for (; i + 16 <= len; i += 16) {
            const nv16 d = nv_load(p + i) - mv;
            a0 += d;
            q0 += d * d;
        }
        double t1 = 0.0, t2 = 0.0;
        for (; i < len; i++) {
            const double d = p[i] - m;
            t1 += d;
            t2 += d * d;
        }
        *s1 += nv_sum(a0 + a1) + t1;
        *s2 += nv_sum(q0 + q1) + t2;
    }
}

/// Adds, with ĝ = dy[i]·(wv ? wv[i] : 1)·ws and d = x[i] − m: Σ d to *s1, Σ ĝ to *sg and Σ ĝ·d to *sgd.
KILN_INLINE void norm_backward_sums(const float *x, const float *dy, const float *wv, float ws, int64_t n,
                                    float m, double *s1, double *sg, double *sgd) {
    const nv16 mv = nv_splat(m), wsv = nv_splat(ws);
    for (int64_t b = 0; b < n; b += NORM_BLOCK) {
        const int64_t len = n - b < NORM_BLOCK ? n - b : NORM_BLOCK;
        const float *p = x + b, *g = dy + b, *w = wv ? wv + b : NULL;
        nv16 a0 = nv_splat(0), a1 = a0, c0 = a0, c1 = a0, e0 = a0, e1 = a0;
        int64_t i = 0;
        for (; i + 32 <= len; i += 32) {
            const nv16 d0 = nv_load(p + i) - mv, d1 = nv_load(p + i + 16) - mv;
            nv16 g0 = nv_load(g + i) * wsv, g1 = nv_load(g + i + 16) * wsv;
            if (w) {
                g0 *= nv_load(w + i);
                g1 *= nv_load(w + i + 16);
            }
            a0 += d0;
            a1 += d1;
            c0 += g0;
            c1 += g1;
            e0 += g0 * d0;
            e1 += g1 * d1;
        }
        double t1 = 0.0, tg = 0.0, tgd = 0.0;
        for (; i < len; i++) {
            const double d = p[i] - m;
            const double gh = (double)(g[i] * ws) * (w ? w[i] : 1.0f);
            t1 += d;
            tg += gh;
            tgd += gh * d;
        }
        *s1 += nv_sum(a0 + a1) + t1;
        *sg += nv_sum(c0 + c1) + tg;
        *sgd += nv_sum(e0 + e1) + tgd;
    }
}

// ---------------------------------------------------------------------------------------------------
// Element passes

/// y[i] = (((x[i] − m) − lo)·s)·w + b with w = wv[i] or ws and b = bv[i] or bs, i < n. HAS_W and HAS_B
/// are constants at every call site, so each combination compiles to its own loop. `next` (NULL for
/// none) is the next row's input: its lines are prefetched while this row is written, so that the next
/// row's statistics passes find it in cache and the DRAM reads overlap the computation.
KILN_INLINE void norm_apply_impl(const float *x, float *y, int64_t n, float m, float lo, float s,
                                 const float *wv, const float *bv, float ws, float bs, int streaming,
                                 const int has_w, const int has_b, const float *next) {
    const float a = s * ws;
    int64_t i = 0;
    const int64_t head = norm_head(y, n, streaming);
    for (; i < head; i++) {
        const float t = ((x[i] - m) - lo) * s;
        y[i] = (has_w ? t * wv[i] : t * ws) + (has_b ? bv[i] : bs);
    }
    const nv16 mv = nv_splat(m), lov = nv_splat(lo), sv = nv_splat(s), av = nv_splat(a), bsv = nv_splat(bs);
    for (; i + 16 <= n; i += 16) {
        if (next) __builtin_prefetch(next + i, 0, 3);
        const nv16 d = (nv_load(x + i) - mv) - lov;
        const nv16 t = has_w ? (d * sv) * nv_load(wv + i) : d * av;
        nv_store(y + i, t + (has_b ? nv_load(bv + i) : bsv), streaming);
    }
    for (; i < n; i++) {
        const float t = ((x[i] - m) - lo) * s;
        y[i] = (has_w ? t * wv[i] : t * ws) + (has_b ? bv[i] : bs);
    }
}

KILN_INLINE void norm_apply(const float *x, float *y, int64_t n, float m, float lo, float s, const float *wv,
                            const float *bv, float ws, float bs, int streaming, const float *next) {
    if (wv && bv)
        norm_apply_impl(x, y, n, m, lo, s, wv, bv, ws, bs, streaming, 1, 1, next);
    else if (wv)
        norm_apply_impl(x, y, n, m, lo, s, wv, bv, ws, bs, streaming, 1, 0, next);
    else if (bv)
        norm_apply_impl(x, y, n, m, lo, s, wv, bv, ws, bs, streaming, 0, 1, next);
    else
        norm_apply_impl(x, y, n, m, lo, s, wv, bv, ws, bs, streaming, 0, 0, next);
}

/// dx[i] = s·(ĝ − c1 − x̂·c2) with x̂ = ((x[i] − m) − lo)·s and ĝ = dy[i]·(wv ? wv[i] : 1)·ws, i < n.
/// Adds dy·x̂ into fw[i] and dy into fb[i] (per-element accumulators, either may be NULL), and
/// Σ dy·x̂, Σ dy into *dws, *dbs (either may be NULL). next_x and next_dy (NULL for none) are prefetched
/// as in norm_apply.
KILN_INLINE void norm_backward_apply(const float *x, const float *dy, float *dx, int64_t n, float m, float lo,
                                     float s, float c1, float c2, const float *wv, float ws, float *fw, float *fb,
                                     double *dws, double *dbs, int streaming, const float *next_x,
                                     const float *next_dy) {
    double tw = 0.0, tb = 0.0;
    int64_t i = 0;
    const int64_t head = norm_head(dx, n, streaming);
#define NORM_BACKWARD_ONE                                                                            \
    do {                                                                                             \
        const float xh = ((x[i] - m) - lo) * s;                                                      \
        const float gh = dy[i] * ws * (wv ? wv[i] : 1.0f);                                           \
        dx[i] = s * ((gh - c1) - xh * c2);                                                           \
        if (fw) fw[i] += dy[i] * xh;                                                                 \
        if (fb) fb[i] += dy[i];                                                                      \
        tw += (double)(dy[i] * xh);                                                                  \
        tb += dy[i];                                                                                 \
    } while (0)
    for (; i < head; i++) NORM_BACKWARD_ONE;
    const nv16 mv = nv_splat(m), lov = nv_splat(lo), sv = nv_splat(s), c1v = nv_splat(c1), c2v = nv_splat(c2);
    const nv16 wsv = nv_splat(ws);
    nv16 aw = nv_splat(0), ab = aw;
    for (; i + 16 <= n; i += 16) {
        if (next_x) {
            __builtin_prefetch(next_x + i, 0, 3);
            __builtin_prefetch(next_dy + i, 0, 3);
        }
        const nv16 g = nv_load(dy + i);
        const nv16 xh = ((nv_load(x + i) - mv) - lov) * sv;
        nv16 gh = g * wsv;
        if (wv) gh *= nv_load(wv + i);
        nv_store(dx + i, sv * ((gh - c1v) - xh * c2v), streaming);
        const nv16 gx = g * xh;
        if (fw) {
            const nv16 acc = nv_load(fw + i) + gx;
            memcpy(fw + i, &acc, sizeof acc);
        }
        if (fb) {
            const nv16 acc = nv_load(fb + i) + g;
            memcpy(fb + i, &acc, sizeof acc);
        }
        aw += gx;
        ab += g;
    }
    for (; i < n; i++) NORM_BACKWARD_ONE;
#undef NORM_BACKWARD_ONE
    if (dws) *dws += tw + nv_sum(aw);
    if (dbs) *dbs += tb + nv_sum(ab);
}

// ---------------------------------------------------------------------------------------------------
// Rows: layer, RMS and group norm

KILN_INLINE void norm_rows_body(const float *x, const float *weight, const float *bias, float *y, float *mean,
                                float *rstd, int64_t row_begin, int64_t row_end, int64_t groups,
                                int64_t group_channels, int64_t spatial, float eps, int rms, int streaming) {
    const int64_t n = group_channels * spatial;
    for (int64_t r = row_begin; r < row_end; r++) {
        const float *xr = x + r * n;
        float *yr = y + r * n;
        float m = 0.0f, lo = 0.0f;
        double var;
        if (rms) {
            var = norm_sum_squares(xr, n) / (double)n;
        } else {
            m = (float)(norm_sum(xr, n) / (double)n);
            double s1 = 0.0, s2 = 0.0;
            norm_deviation_sums(xr, n, m, &s1, &s2);
            const double delta = s1 / (double)n;
            var = s2 / (double)n - delta * delta;
            if (var < 0.0) var = 0.0;
            lo = (float)delta;
            if (mean) mean[r] = (float)((double)m + delta);
        }
        const float s = (float)(1.0 / sqrt(var + (double)eps));
        rstd[r] = s;
        const int64_t p0 = (r % groups) * group_channels;
        if (spatial == 1) {
            norm_apply(xr, yr, n, m, lo, s, weight ? weight + p0 : NULL, bias ? bias + p0 : NULL, 1.0f, 0.0f,
                       streaming, r + 1 < row_end ? xr + n : NULL);
        } else {
            for (int64_t c = 0; c < group_channels; c++)
                norm_apply(xr + c * spatial, yr + c * spatial, spatial, m, lo, s, NULL, NULL,
                           weight ? weight[p0 + c] : 1.0f, bias ? bias[p0 + c] : 0.0f, streaming, NULL);
        }
    }
    norm_store_fence(streaming);
}

/// dweight[p] += fw[p], dbias[p] += fb[p] and clears fw, fb (P entries).
KILN_INLINE void norm_flush(float *fw, float *fb, double *dweight, double *dbias, int64_t count) {
    if (dweight)
        for (int64_t p = 0; p < count; p++) {
            dweight[p] += fw[p];
            fw[p] = 0.0f;
        }
    if (dbias)
        for (int64_t p = 0; p < count; p++) {
            dbias[p] += fb[p];
            fb[p] = 0.0f;
        }
}

KILN_INLINE void norm_rows_backward_body(const float *x, const float *dy, const float *weight, const float *mean,
                                         const float *rstd, float *dx, double *dweight, double *dbias,
                                         float *scratch, int64_t row_begin, int64_t row_end, int64_t groups,
                                         int64_t group_channels, int64_t spatial, int rms, int streaming) {
    const int64_t n = group_channels * spatial, parameters = groups * group_channels;
    const int per_element = spatial == 1 && (dweight || dbias);
    float *fw = per_element && dweight ? scratch : NULL;
    float *fb = per_element && dbias ? scratch + parameters : NULL;
    if (fw) memset(fw, 0, (size_t)parameters * sizeof(float));
    if (fb) memset(fb, 0, (size_t)parameters * sizeof(float));
    int64_t pending = 0;
    for (int64_t r = row_begin; r < row_end; r++) {
        const float *xr = x + r * n, *gr = dy + r * n;
        float *dxr = dx + r * n;
        const float s = rstd[r];
        const float m = rms ? 0.0f : mean[r];
        const int64_t p0 = (r % groups) * group_channels;
        double s1 = 0.0, sg = 0.0, sgd = 0.0;
        if (spatial == 1) {
            norm_backward_sums(xr, gr, weight ? weight + p0 : NULL, 1.0f, n, m, &s1, &sg, &sgd);
        } else {
            for (int64_t c = 0; c < group_channels; c++)
                norm_backward_sums(xr + c * spatial, gr + c * spatial, NULL, weight ? weight[p0 + c] : 1.0f,
                                   spatial, m, &s1, &sg, &sgd);
        }
        // Σ ĝ·x̂ = s·(Σ ĝ·(x − m) − δ·Σ ĝ), δ = Σ(x − m)/n: the exact mean is m + δ.
        const double delta = rms ? 0.0 : s1 / (double)n;
        const double sgx = (double)s * (sgd - delta * sg);
        const float c1 = rms ? 0.0f : (float)(sg / (double)n);
        const float c2 = (float)(sgx / (double)n);
        const float lo = (float)delta;
        if (spatial == 1) {
            const int more = r + 1 < row_end;
            norm_backward_apply(xr, gr, dxr, n, m, lo, s, c1, c2, weight ? weight + p0 : NULL, 1.0f,
                                fw ? fw + p0 : NULL, fb ? fb + p0 : NULL, NULL, NULL, streaming,
                                more ? xr + n : NULL, more ? gr + n : NULL);
            if (per_element && ++pending == NORM_ROW_BLOCK) {
                norm_flush(fw, fb, dweight, dbias, parameters);
                pending = 0;
            }
        } else {
            for (int64_t c = 0; c < group_channels; c++) {
                double tw = 0.0, tb = 0.0;
                norm_backward_apply(xr + c * spatial, gr + c * spatial, dxr + c * spatial, spatial, m, lo, s, c1,
                                    c2, NULL, weight ? weight[p0 + c] : 1.0f, NULL, NULL, &tw, &tb, streaming, NULL,
                                    NULL);
                if (dweight) dweight[p0 + c] += tw;
                if (dbias) dbias[p0 + c] += tb;
            }
        }
    }
    if (per_element && pending > 0) norm_flush(fw, fb, dweight, dbias, parameters);
    norm_store_fence(streaming);
}

// ---------------------------------------------------------------------------------------------------
// Channels: batch and instance norm

/// The statistics of channel c (training) or its running statistics: m, lo, σ, and the outputs
/// mean[c], rstd[c] and the running-statistics update.
KILN_INLINE void norm_channel_statistics(double s1, double s2, float m, int64_t count, int training,
                                         const float *running_mean, const float *running_var, float *mean,
                                         float *rstd, float *new_running_mean, float *new_running_var,
                                         int64_t c, float eps, float momentum, float *lo_out, float *m_out,
                                         float *s_out) {
    if (training) {
        const double delta = s1 / (double)count;
        double var = s2 / (double)count - delta * delta;
        if (var < 0.0) var = 0.0;
        const double mu = (double)m + delta;
        *m_out = m;
        *lo_out = (float)delta;
        *s_out = (float)(1.0 / sqrt(var + (double)eps));
        mean[c] = (float)mu;
        if (new_running_mean && new_running_var && running_mean && running_var) {
            const double mo = momentum;
            new_running_mean[c] = (float)((1.0 - mo) * running_mean[c] + mo * mu);
            new_running_var[c] =
                (float)((1.0 - mo) * running_var[c] + mo * var * (double)count / (double)(count - 1));
        }
    } else {
        *m_out = running_mean[c];
        *lo_out = 0.0f;
        *s_out = (float)(1.0 / sqrt((double)running_var[c] + (double)eps));
        mean[c] = running_mean[c];
    }
    rstd[c] = *s_out;
}

/// Batch norm of [batch, channels] (spatial == 1): tiles of NORM_COLUMNS channels, vectorised along
/// the channels, sums in double.
KILN_INLINE void norm_columns_body(const float *x, const float *weight, const float *bias, const float *running_mean,
                                   const float *running_var, float *y, float *mean, float *rstd,
                                   float *new_running_mean, float *new_running_var, int64_t batch, int64_t channels,
                                   int64_t c_begin, int64_t c_end, float eps, float momentum, int training) {
    for (int64_t c0 = c_begin; c0 < c_end; c0 += NORM_COLUMNS) {
        const int64_t w = c_end - c0 < NORM_COLUMNS ? c_end - c0 : NORM_COLUMNS;
        double acc[NORM_COLUMNS], s1[NORM_COLUMNS], s2[NORM_COLUMNS];
        float m[NORM_COLUMNS], lo[NORM_COLUMNS], a[NORM_COLUMNS], b[NORM_COLUMNS];
        for (int64_t i = 0; i < w; i++) acc[i] = s1[i] = s2[i] = 0.0;
        if (training) {
            for (int64_t n = 0; n < batch; n++) {
                const float *row = x + n * channels + c0;
                for (int64_t i = 0; i < w; i++) acc[i] += row[i];
            }
            for (int64_t i = 0; i < w; i++) m[i] = (float)(acc[i] / (double)batch);
            for (int64_t n = 0; n < batch; n++) {
                const float *row = x + n * channels + c0;
                for (int64_t i = 0; i < w; i++) {
                    const double d = row[i] - m[i];
                    s1[i] += d;
                    s2[i] += d * d;
                }
            }
        }
        for (int64_t i = 0; i < w; i++) {
            float s;
            norm_channel_statistics(s1[i], s2[i], m[i], batch, training, running_mean, running_var, mean,
                                    rstd, new_running_mean, new_running_var, c0 + i, eps, momentum, &lo[i], &m[i],
                                    &s);
            a[i] = s * (weight ? weight[c0 + i] : 1.0f);
            b[i] = bias ? bias[c0 + i] : 0.0f;
        }
        for (int64_t n = 0; n < batch; n++) {
            const float *row = x + n * channels + c0;
            float *out = y + n * channels + c0;
            for (int64_t i = 0; i < w; i++) out[i] = ((row[i] - m[i]) - lo[i]) * a[i] + b[i];
        }
    }
}

KILN_INLINE void norm_channels_body(const float *x, const float *weight, const float *bias,
                                    const float *running_mean, const float *running_var, float *y, float *mean,
                                    float *rstd, float *new_running_mean, float *new_running_var, int64_t batch,
                                    int64_t channels, int64_t spatial, int64_t c_begin, int64_t c_end, float eps,
                                    float momentum, int training, int streaming) {
    if (spatial == 1) {
        norm_columns_body(x, weight, bias, running_mean, running_var, y, mean, rstd, new_running_mean,
                          new_running_var, batch, channels, c_begin, c_end, eps, momentum, training);
        return;
    }
    const int64_t count = batch * spatial;
    for (int64_t c = c_begin; c < c_end; c++) {
        double sum = 0.0, s1 = 0.0, s2 = 0.0;
        float m0 = 0.0f;
        if (training) {
            for (int64_t n = 0; n < batch; n++) sum += norm_sum(x + (n * channels + c) * spatial, spatial);
            m0 = (float)(sum / (double)count);
            for (int64_t n = 0; n < batch; n++)
                norm_deviation_sums(x + (n * channels + c) * spatial, spatial, m0, &s1, &s2);
        }
        float m, lo, s;
        norm_channel_statistics(s1, s2, m0, count, training, running_mean, running_var, mean, rstd,
                                new_running_mean, new_running_var, c, eps, momentum, &lo, &m, &s);
        const float wc = weight ? weight[c] : 1.0f, bc = bias ? bias[c] : 0.0f;
        for (int64_t n = 0; n < batch; n++) {
            const int64_t offset = (n * channels + c) * spatial;
            norm_apply(x + offset, y + offset, spatial, m, lo, s, NULL, NULL, wc, bc, streaming,
                       c + 1 < c_end ? x + offset + spatial : NULL);
        }
    }
    norm_store_fence(streaming);
}

KILN_INLINE void norm_columns_backward_body(const float *x, const float *dy, const float *weight,
                                            const float *mean, const float *rstd, float *dx, float *dweight,
                                            float *dbias, int64_t batch, int64_t channels, int64_t c_begin,
                                            int64_t c_end, int training) {
    for (int64_t c0 = c_begin; c0 < c_end; c0 += NORM_COLUMNS) {
        const int64_t w = c_end - c0 < NORM_COLUMNS ? c_end - c0 : NORM_COLUMNS;
        double s1[NORM_COLUMNS], sg[NORM_COLUMNS], sgd[NORM_COLUMNS];
        float m[NORM_COLUMNS], lo[NORM_COLUMNS], s[NORM_COLUMNS], k1[NORM_COLUMNS], k2[NORM_COLUMNS],
            ws[NORM_COLUMNS];
        for (int64_t i = 0; i < w; i++) {
            s1[i] = sg[i] = sgd[i] = 0.0;
            m[i] = mean[c0 + i];
        }
        for (int64_t n = 0; n < batch; n++) {
            const float *row = x + n * channels + c0, *g = dy + n * channels + c0;
            for (int64_t i = 0; i < w; i++) {
                const double d = row[i] - m[i];
                s1[i] += d;
                sg[i] += g[i];
                sgd[i] += g[i] * d;
            }
        }
        for (int64_t i = 0; i < w; i++) {
            const double delta = training ? s1[i] / (double)batch : 0.0;
            s[i] = rstd[c0 + i];
            const double sgx = (double)s[i] * (sgd[i] - delta * sg[i]);
            if (dweight) dweight[c0 + i] = (float)sgx;
            if (dbias) dbias[c0 + i] = (float)sg[i];
            ws[i] = weight ? weight[c0 + i] : 1.0f;
            lo[i] = (float)delta;
            k1[i] = training ? (float)(ws[i] * sg[i] / (double)batch) : 0.0f;
            k2[i] = training ? (float)(ws[i] * sgx / (double)batch) : 0.0f;
        }
        for (int64_t n = 0; n < batch; n++) {
            const float *row = x + n * channels + c0, *g = dy + n * channels + c0;
            float *out = dx + n * channels + c0;
            for (int64_t i = 0; i < w; i++) {
                const float xh = ((row[i] - m[i]) - lo[i]) * s[i];
                out[i] = s[i] * ((g[i] * ws[i] - k1[i]) - xh * k2[i]);
            }
        }
    }
}

KILN_INLINE void norm_channels_backward_body(const float *x, const float *dy, const float *weight,
                                             const float *mean, const float *rstd, float *dx, float *dweight,
                                             float *dbias, int64_t batch, int64_t channels, int64_t spatial,
                                             int64_t c_begin, int64_t c_end, int training, int streaming) {
    if (spatial == 1) {
        norm_columns_backward_body(x, dy, weight, mean, rstd, dx, dweight, dbias, batch, channels, c_begin, c_end,
                                   training);
        return;
    }
    const int64_t count = batch * spatial;
    for (int64_t c = c_begin; c < c_end; c++) {
        const float m = mean[c], s = rstd[c], wc = weight ? weight[c] : 1.0f;
        double s1 = 0.0, sg = 0.0, sgd = 0.0;
        for (int64_t n = 0; n < batch; n++) {
            const int64_t offset = (n * channels + c) * spatial;
            norm_backward_sums(x + offset, dy + offset, NULL, 1.0f, spatial, m, &s1, &sg, &sgd);
        }
        const double delta = training ? s1 / (double)count : 0.0;
        const double sgx = (double)s * (sgd - delta * sg);
        if (dweight) dweight[c] = (float)sgx;
        if (dbias) dbias[c] = (float)sg;
        // dx = s·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)) with ĝ = dy·w: the means are w·Σdy/M and w·Σdy·x̂/M.
        const float k1 = training ? (float)(wc * sg / (double)count) : 0.0f;
        const float k2 = training ? (float)(wc * sgx / (double)count) : 0.0f;
        for (int64_t n = 0; n < batch; n++) {
            const int64_t offset = (n * channels + c) * spatial;
            const int more = c + 1 < c_end;
            norm_backward_apply(x + offset, dy + offset, dx + offset, spatial, m, (float)delta, s, k1, k2, NULL,
                                wc, NULL, NULL, NULL, NULL, streaming, more ? x + offset + spatial : NULL,
                                more ? dy + offset + spatial : NULL);
        }
    }
    norm_store_fence(streaming);
}

// ---------------------------------------------------------------------------------------------------
// Local response norm

/// out[i] = D[i]^(−β), i < w.
KILN_INLINE void lrn_power(const float *d, float *out, int64_t w, float beta) {
    if (beta == 0.75f) {
        KILN_VECTORIZE for (int64_t i = 0; i < w; i++) {
            const float r = KILN_SQRTF(d[i]);
            out[i] = 1.0f / (r * KILN_SQRTF(r));
        }
    } else {
        for (int64_t i = 0; i < w; i++) out[i] = powf(d[i], -beta);
    }
}

/// D[i] = k + (α/size)·Σ_{c' ∈ [lo, hi]} x[c'·spatial + i]² for the w positions of a tile.
KILN_INLINE void lrn_denominator(const float *x, int64_t spatial, int64_t lo, int64_t hi, int64_t w, float scale,
                                 float k, float *d) {
    float acc[KILN_LRN_TILE];
    for (int64_t i = 0; i < w; i++) acc[i] = 0.0f;
    for (int64_t c = lo; c <= hi; c++) {
        const float *row = x + c * spatial;
        for (int64_t i = 0; i < w; i++) acc[i] += row[i] * row[i];
    }
    for (int64_t i = 0; i < w; i++) d[i] = k + scale * acc[i];
}

KILN_INLINE void lrn_body(const float *x, float *y, int64_t batch, int64_t channels, int64_t spatial, int64_t size,
                          float alpha, float beta, float k, int64_t unit_begin, int64_t unit_end) {
    (void)batch;
    const int64_t tiles = (spatial + KILN_LRN_TILE - 1) / KILN_LRN_TILE;
    const int64_t before = size / 2, after = (size - 1) / 2;
    const float scale = alpha / (float)size;
    for (int64_t u = unit_begin; u < unit_end; u++) {
        const int64_t n = u / tiles, s0 = (u % tiles) * KILN_LRN_TILE;
        const int64_t w = spatial - s0 < KILN_LRN_TILE ? spatial - s0 : KILN_LRN_TILE;
        const float *xb = x + n * channels * spatial + s0;
        float *yb = y + n * channels * spatial + s0;
        float d[KILN_LRN_TILE], p[KILN_LRN_TILE];
        for (int64_t c = 0; c < channels; c++) {
            const int64_t lo = c - before < 0 ? 0 : c - before;
            const int64_t hi = c + after > channels - 1 ? channels - 1 : c + after;
            lrn_denominator(xb, spatial, lo, hi, w, scale, k, d);
            lrn_power(d, p, w, beta);
            const float *row = xb + c * spatial;
            float *out = yb + c * spatial;
            for (int64_t i = 0; i < w; i++) out[i] = row[i] * p[i];
        }
    }
}

KILN_INLINE void lrn_backward_body(const float *x, const float *dy, float *dx, float *scratch, int64_t batch,
                                   int64_t channels, int64_t spatial, int64_t size, float alpha, float beta, float k,
                                   int64_t unit_begin, int64_t unit_end) {
    (void)batch;
    const int64_t tiles = (spatial + KILN_LRN_TILE - 1) / KILN_LRN_TILE;
    const int64_t before = size / 2, after = (size - 1) / 2;
    const float scale = alpha / (float)size;
    const float coefficient = 2.0f * alpha * beta / (float)size;
    for (int64_t u = unit_begin; u < unit_end; u++) {
        const int64_t n = u / tiles, s0 = (u % tiles) * KILN_LRN_TILE;
        const int64_t w = spatial - s0 < KILN_LRN_TILE ? spatial - s0 : KILN_LRN_TILE;
        const int64_t base = n * channels * spatial + s0;
        const float *xb = x + base, *gb = dy + base;
        float *db = dx + base, *tb = scratch + base;
        float d[KILN_LRN_TILE], p[KILN_LRN_TILE];
        // Pass 1: t_c = dy_c·x_c·D_c^(−β)/D_c into scratch, D_c^(−β) into dx for now.
        for (int64_t c = 0; c < channels; c++) {
            const int64_t lo = c - before < 0 ? 0 : c - before;
            const int64_t hi = c + after > channels - 1 ? channels - 1 : c + after;
            lrn_denominator(xb, spatial, lo, hi, w, scale, k, d);
            lrn_power(d, p, w, beta);
            const float *row = xb + c * spatial, *g = gb + c * spatial;
            float *t = tb + c * spatial, *out = db + c * spatial;
            for (int64_t i = 0; i < w; i++) {
                t[i] = g[i] * row[i] * p[i] / d[i];
                out[i] = p[i];
            }
        }
        // Pass 2: dx_j = dy_j·D_j^(−β) − coefficient·x_j·Σ_{c ∈ [j − after, j + before]} t_c.
        for (int64_t j = 0; j < channels; j++) {
            const int64_t lo = j - after < 0 ? 0 : j - after;
            const int64_t hi = j + before > channels - 1 ? channels - 1 : j + before;
            float acc[KILN_LRN_TILE];
            for (int64_t i = 0; i < w; i++) acc[i] = 0.0f;
            for (int64_t c = lo; c <= hi; c++) {
                const float *t = tb + c * spatial;
                for (int64_t i = 0; i < w; i++) acc[i] += t[i];
            }
            const float *row = xb + j * spatial, *g = gb + j * spatial;
            float *out = db + j * spatial;
            for (int64_t i = 0; i < w; i++) out[i] = g[i] * out[i] - coefficient * row[i] * acc[i];
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Dispatch

KILN_MULTIVERSION(norm_rows,
                  (const float *x, const float *weight, const float *bias, float *y, float *mean, float *rstd,
                   int64_t row_begin, int64_t row_end, int64_t groups, int64_t group_channels, int64_t spatial,
                   float eps, int rms, int streaming),
                  (x, weight, bias, y, mean, rstd, row_begin, row_end, groups, group_channels, spatial, eps, rms,
                   streaming))

void kiln_norm_rows_f32(const float *x, const float *weight, const float *bias, float *y, float *mean, float *rstd,
                        int64_t row_begin, int64_t row_end, int64_t groups, int64_t group_channels, int64_t spatial,
                        float eps, int rms, int streaming) {
    KILN_DISPATCH(norm_rows, (x, weight, bias, y, mean, rstd, row_begin, row_end, groups, group_channels, spatial,
                              eps, rms, streaming))
}

KILN_MULTIVERSION(norm_rows_backward,
                  (const float *x, const float *dy, const float *weight, const float *mean, const float *rstd,
                   float *dx, double *dweight, double *dbias, float *scratch, int64_t row_begin, int64_t row_end,
                   int64_t groups, int64_t group_channels, int64_t spatial, int rms, int streaming),
                  (x, dy, weight, mean, rstd, dx, dweight, dbias, scratch, row_begin, row_end, groups,
                   group_channels, spatial, rms, streaming))

void kiln_norm_rows_backward_f32(const float *x, const float *dy, const float *weight, const float *mean,
                                 const float *rstd, float *dx, double *dweight, double *dbias, float *scratch,
                                 int64_t row_begin, int64_t row_end, int64_t groups, int64_t group_channels,
                                 int64_t spatial, int rms, int streaming) {
    KILN_DISPATCH(norm_rows_backward, (x, dy, weight, mean, rstd, dx, dweight, dbias, scratch, row_begin, row_end,
                                       groups, group_channels, spatial, rms, streaming))
}

KILN_MULTIVERSION(norm_channels,
                  (const float *x, const float *weight, const float *bias, const float *running_mean,
                   const float *running_var, float *y, float *mean, float *rstd, float *new_running_mean,
                   float *new_running_var, int64_t batch, int64_t channels, int64_t spatial, int64_t c_begin,
                   int64_t c_end, float eps, float momentum, int training, int streaming),
                  (x, weight, bias, running_mean, running_var, y, mean, rstd, new_running_mean, new_running_var,
                   batch, channels, spatial, c_begin, c_end, eps, momentum, training, streaming))

void kiln_norm_channels_f32(const float *x, const float *weight, const float *bias, const float *running_mean,
                            const float *running_var, float *y, float *mean, float *rstd, float *new_running_mean,
                            float *new_running_var, int64_t batch, int64_t channels, int64_t spatial,
                            int64_t channel_begin, int64_t channel_end, float eps, float momentum, int training,
                            int streaming) {
    KILN_DISPATCH(norm_channels, (x, weight, bias, running_mean, running_var, y, mean, rstd, new_running_mean,
                                  new_running_var, batch, channels, spatial, channel_begin, channel_end, eps,
                                  momentum, training, streaming))
}

KILN_MULTIVERSION(norm_channels_backward,
                  (const float *x, const float *dy, const float *weight, const float *mean, const float *rstd,
                   float *dx, float *dweight, float *dbias, int64_t batch, int64_t channels, int64_t spatial,
                   int64_t c_begin, int64_t c_end, int training, int streaming),
                  (x, dy, weight, mean, rstd, dx, dweight, dbias, batch, channels, spatial, c_begin, c_end,
                   training, streaming))

void kiln_norm_channels_backward_f32(const float *x, const float *dy, const float *weight, const float *mean,
                                     const float *rstd, float *dx, float *dweight, float *dbias, int64_t batch,
                                     int64_t channels, int64_t spatial, int64_t channel_begin, int64_t channel_end,
                                     int training, int streaming) {
    KILN_DISPATCH(norm_channels_backward, (x, dy, weight, mean, rstd, dx, dweight, dbias, batch, channels, spatial,
                                           channel_begin, channel_end, training, streaming))
}

KILN_MULTIVERSION(lrn,
                  (const float *x, float *y, int64_t batch, int64_t channels, int64_t spatial, int64_t size,
                   float alpha, float beta, float k, int64_t unit_begin, int64_t unit_end),
                  (x, y, batch, channels, spatial, size, alpha, beta, k, unit_begin, unit_end))

void kiln_lrn_f32(const float *x, float *y, int64_t batch, int64_t channels, int64_t spatial, int64_t size,
                  float alpha, float beta, float k, int64_t unit_begin, int64_t unit_end) {
    KILN_DISPATCH(lrn, (x, y, batch, channels, spatial, size, alpha, beta, k, unit_begin, unit_end))
}

KILN_MULTIVERSION(lrn_backward,
                  (const float *x, const float *dy, float *dx, float *scratch, int64_t batch, int64_t channels,
                   int64_t spatial, int64_t size, float alpha, float beta, float k, int64_t unit_begin,
                   int64_t unit_end),
                  (x, dy, dx, scratch, batch, channels, spatial, size, alpha, beta, k, unit_begin, unit_end))

void kiln_lrn_backward_f32(const float *x, const float *dy, float *dx, float *scratch, int64_t batch,
                           int64_t channels, int64_t spatial, int64_t size, float alpha, float beta, float k,
                           int64_t unit_begin, int64_t unit_end) {
    KILN_DISPATCH(lrn_backward,
                  (x, dy, dx, scratch, batch, channels, spatial, size, alpha, beta, k, unit_begin, unit_end))
}
