// normalization.cl — layer / RMS / group norm over rows, batch / instance norm over channels, and local
// response norm across channels, forward and backward. All buffers contiguous row-major Float32.
//
// Rows (norm_rows_*): `rows` rows of n = group_channels * spatial elements; row r belongs to group
// r % groups and element j uses the affine parameter p = (r % groups) * group_channels + j / spatial
// (layer / RMS norm: groups 1, group_channels n, spatial 1). Forward:
//     y = ((x − μ)·σ)·w[p] + b[p],  σ = 1/√(var + eps)         (RMS: y = x·σ·w[p], σ = 1/√(Σx²/n + eps))
// Backward, with x̂ = (x − μ)σ and ĝ = dy·w[p]:  dx = σ·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂))  (RMS: no mean(ĝ));
// dw[p] = Σ dy·x̂ and db[p] = Σ dy over every element using p (norm_rows_params_f32).
// Channels (norm_channels_*, norm_columns_*): [batch, channels, spatial], statistics per channel over
// its batch·spatial elements (batch norm), or the running statistics (inference).
// Local response norm (lrn_*): y_c = x_c / D_c^β, D_c = k + (α/size)·Σ_{c' ∈ [c − size/2, c + (size−1)/2]} x_{c'}².
//
// Statistics: the corrected two-pass algorithm. m = Σx/n, then δ = Σ(x − m)/n and var = Σ(x − m)²/n − δ²;
// the mean is m + δ and outputs use (x − m) − δ, so inputs with a large offset (mean 1e4, std 1e-2) do
// not cancel. Each work-item accumulates with Kahan compensation and the work-group adds the partial sums
// in a local-memory tree, so rows of 10^6 elements keep Float32 accuracy. Backward kernels take the
// forward's mean as m and recompute δ.
//
// Work decomposition. Rows and channels kernels: one work-group of LOCAL_SIZE work-items per row (per
// channel); work-item l handles the blocks of VEC consecutive elements l, l + LOCAL_SIZE, … of each
// contiguous segment and the segment's tail elements one by one. The GPU-style tunables (LOCAL_SIZE 256,
// VEC 1) give coalesced loads; the CPU-style ones (LOCAL_SIZE 1, VEC 16) give one work-item per row that
// streams float16 loads, which PoCL turns into AVX-512. norm_rows_params_f32 and norm_columns_* run one
// work-item per parameter (channel); lrn_* one work-item per (batch, position). Global sizes:
//   norm_rows_f32, norm_rows_backward_f32:        rows * LOCAL_SIZE, local LOCAL_SIZE
//   norm_channels_f32, norm_channels_backward_f32: channels * LOCAL_SIZE, local LOCAL_SIZE
//   norm_rows_params_f32:                         groups * group_channels (any local size; GPU style)
//   norm_rows_params_partial_f32:                 ceil(rows / ROWS_PER_PARTIAL) (any local size; CPU style)
//   norm_rows_params_reduce_f32:                  groups * group_channels (any local size; CPU style)
//   norm_columns_f32, norm_columns_backward_f32:  channels (any local size; batch norm with spatial 1)
//   lrn_f32, lrn_backward_f32:                    batch * spatial (any local size)
// Absent optional buffers are passed as any valid buffer and ignored by their flag.
//
// Build options: -cl-std=CL1.2 -cl-mad-enable -DLOCAL_SIZE=.. -DVEC=.. -DROWS_PER_PARTIAL=.. (never
// fast-relaxed math).

#ifndef LOCAL_SIZE
#define LOCAL_SIZE 256 // work-items per row / channel work-group: a power of two
#endif
#ifndef VEC
#define VEC 1 // consecutive elements per load: 1, 4, 8 or 16
#endif
#ifndef ROWS_PER_PARTIAL
#define ROWS_PER_PARTIAL 256 // rows summed by one work-item of norm_rows_params_partial_f32
#endif

#if (LOCAL_SIZE & (LOCAL_SIZE - 1)) != 0
#error "LOCAL_SIZE must be a power of two"
#endif

// Flags.
#define HAS_WEIGHT 1 // rows / channels: weight given
#define HAS_BIAS 2   // rows / channels: bias given
#define RMS 4        // rows: RMS norm (no centering)
#define WRITE_MEAN 8 // rows: write mean[row] (forward), delta[row] (backward)
#define TRAINING 16  // channels: batch statistics (else the running statistics)
#define RUNNING 32   // channels: write the updated running statistics
#define WRITE_DW 64  // backward: write the weight gradient
#define WRITE_DB 128 // backward: write the bias gradient

#if VEC == 1
typedef float vecf;
#define VLOAD(p) (*(p))
#define VSTORE(v, p) (*(p) = (v))
#define VSUM(v) (v)
#elif VEC == 4
typedef float4 vecf;
#define VLOAD(p) vload4(0, p)
#define VSTORE(v, p) vstore4(v, 0, p)
#define VSUM(v) (((v).s0 + (v).s1) + ((v).s2 + (v).s3))
#elif VEC == 8
typedef float8 vecf;
#define VLOAD(p) vload8(0, p)
#define VSTORE(v, p) vstore8(v, 0, p)
float vsum8(float8 v) { const float4 a = v.lo + v.hi; return (a.s0 + a.s1) + (a.s2 + a.s3); }
#define VSUM(v) vsum8(v)
#elif VEC == 16
typedef float16 vecf;
#define VLOAD(p) vload16(0, p)
#define VSTORE(v, p) vstore16(v, 0, p)
float vsum16(float16 v) {
    const float8 a = v.lo + v.hi;
    const float4 b = a.lo + a.hi;
    return (b.s0 + b.s1) + (b.s2 + b.s3);
}
#define VSUM(v) vsum16(v)
#else
#error "VEC must be 1, 4, 8 or 16"
#endif

// sum += value with Kahan compensation (comp holds the negated lost low-order part); T is the type.
#define KAHAN_T(T, sum, comp, value)                                                                   \
    do {                                                                                               \
        const T y_ = (value) - (comp);                                                                 \
        const T t_ = (sum) + y_;                                                                       \
        (comp) = (t_ - (sum)) - y_;                                                                    \
        (sum) = t_;                                                                                    \
    } while (0)
#define KAHAN(sum, comp, value) KAHAN_T(float, sum, comp, value)
#define KAHAN_V(sum, comp, value) KAHAN_T(vecf, sum, comp, value)

// A running Kahan sum of vector blocks and of scalar tail elements.
typedef struct {
    vecf s, c;
    float ts, tc;
} acc_t;

acc_t acc_zero(void) {
    acc_t a;
    a.s = (vecf)(0.0f);
    a.c = (vecf)(0.0f);
    a.ts = 0.0f;
    a.tc = 0.0f;
    return a;
}

float acc_total(acc_t a) { return (VSUM(a.s) - VSUM(a.c)) + (a.ts - a.tc); }

// Σ of v over the work-group (every work-item gets it). red holds LOCAL_SIZE floats per value.
float group_sum(float v, __local float *red) {
    const int lid = get_local_id(0);
    red[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = LOCAL_SIZE / 2; s > 0; s >>= 1) {
        if (lid < s) red[lid] += red[lid + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const float r = red[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
}

// Three sums at once (red holds 3 * LOCAL_SIZE floats).
float3 group_sum3(float a, float b, float c, __local float *red) {
    const int lid = get_local_id(0);
    red[lid] = a;
    red[LOCAL_SIZE + lid] = b;
    red[2 * LOCAL_SIZE + lid] = c;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = LOCAL_SIZE / 2; s > 0; s >>= 1) {
        if (lid < s) {
            red[lid] += red[lid + s];
            red[LOCAL_SIZE + lid] += red[LOCAL_SIZE + lid + s];
            red[2 * LOCAL_SIZE + lid] += red[2 * LOCAL_SIZE + lid + s];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const float3 r = (float3)(red[0], red[LOCAL_SIZE], red[2 * LOCAL_SIZE]);
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
}

// ---------------------------------------------------------------------------------------------------
// Segment passes: this work-item's share of a contiguous segment p[0, len).

// Adds Σ p[i] (when sum) or Σ (p[i] − m) and Σ (p[i] − m)² into the accumulators.
void seg_sum(__global const float *p, const int len, acc_t *a) {
    const int lid = get_local_id(0), blocks = len / VEC;
    for (int b = lid; b < blocks; b += LOCAL_SIZE) KAHAN_V(a->s, a->c, VLOAD(p + b * VEC));
    for (int i = blocks * VEC + lid; i < len; i += LOCAL_SIZE) KAHAN(a->ts, a->tc, p[i]);
}

void seg_deviations(__global const float *p, const int len, const float m, acc_t *a1, acc_t *a2) {
    const int lid = get_local_id(0), blocks = len / VEC;
    for (int b = lid; b < blocks; b += LOCAL_SIZE) {
        const vecf d = VLOAD(p + b * VEC) - m;
        KAHAN_V(a1->s, a1->c, d);
        KAHAN_V(a2->s, a2->c, d * d);
    }
    for (int i = blocks * VEC + lid; i < len; i += LOCAL_SIZE) {
        const float d = p[i] - m;
        KAHAN(a1->ts, a1->tc, d);
        KAHAN(a2->ts, a2->tc, d * d);
    }
}

// y = (((x − m) − lo)·s)·w + b with w, b from wv/bv (per element, when given) or ws/bs.
void seg_apply(__global const float *p, __global float *q, const int len, const float m, const float lo,
               const float s, __global const float *wv, __global const float *bv, const float ws, const float bs) {
    const int lid = get_local_id(0), blocks = len / VEC;
    for (int b = lid; b < blocks; b += LOCAL_SIZE) {
        const int i = b * VEC;
        vecf t = ((VLOAD(p + i) - m) - lo) * s;
        t = wv ? t * VLOAD(wv + i) : t * ws;
        t = bv ? t + VLOAD(bv + i) : t + bs;
        VSTORE(t, q + i);
    }
    for (int i = blocks * VEC + lid; i < len; i += LOCAL_SIZE) {
        const float t = ((p[i] - m) - lo) * s;
        q[i] = (wv ? t * wv[i] : t * ws) + (bv ? bv[i] : bs);
    }
}

// Adds Σ (x − m), Σ ĝ and Σ ĝ·(x − m), ĝ = dy·(wv ? wv[i] : 1)·ws.
void seg_backward_sums(__global const float *p, __global const float *g, const int len, const float m,
                       __global const float *wv, const float ws, acc_t *a1, acc_t *ag, acc_t *agd) {
    const int lid = get_local_id(0), blocks = len / VEC;
    for (int b = lid; b < blocks; b += LOCAL_SIZE) {
        const int i = b * VEC;
        const vecf d = VLOAD(p + i) - m;
        vecf gh = VLOAD(g + i) * ws;
        if (wv) gh *= VLOAD(wv + i);
        KAHAN_V(a1->s, a1->c, d);
        KAHAN_V(ag->s, ag->c, gh);
        KAHAN_V(agd->s, agd->c, gh * d);
    }
    for (int i = blocks * VEC + lid; i < len; i += LOCAL_SIZE) {
        const float d = p[i] - m;
        const float gh = g[i] * ws * (wv ? wv[i] : 1.0f);
        KAHAN(a1->ts, a1->tc, d);
        KAHAN(ag->ts, ag->tc, gh);
        KAHAN(agd->ts, agd->tc, gh * d);
    }
}

// dx = s·((ĝ − c1) − x̂·c2), x̂ = ((x − m) − lo)·s, ĝ = dy·(wv ? wv[i] : 1)·ws.
void seg_backward_apply(__global const float *p, __global const float *g, __global float *q, const int len,
                        const float m, const float lo, const float s, const float c1, const float c2,
                        __global const float *wv, const float ws) {
    const int lid = get_local_id(0), blocks = len / VEC;
    for (int b = lid; b < blocks; b += LOCAL_SIZE) {
        const int i = b * VEC;
        const vecf xh = ((VLOAD(p + i) - m) - lo) * s;
        vecf gh = VLOAD(g + i) * ws;
        if (wv) gh *= VLOAD(wv + i);
        VSTORE(s * ((gh - c1) - xh * c2), q + i);
    }
    for (int i = blocks * VEC + lid; i < len; i += LOCAL_SIZE) {
        const float xh = ((p[i] - m) - lo) * s;
        const float gh = g[i] * ws * (wv ? wv[i] : 1.0f);
        q[i] = s * ((gh - c1) - xh * c2);
    }
}

// ---------------------------------------------------------------------------------------------------
// Rows: layer, RMS and group norm

__kernel __attribute__((reqd_work_group_size(LOCAL_SIZE, 1, 1)))
void norm_rows_f32(__global const float *x, __global const float *weight, __global const float *bias,
                   __global float *y, __global float *mean, __global float *rstd, const int groups,
                   const int group_channels, const int spatial, const float eps, const int flags) {
    __local float red[3 * LOCAL_SIZE];
    const int row = get_group_id(0);
    const int n = group_channels * spatial;
    __global const float *xr = x + (long)row * n;
    __global float *yr = y + (long)row * n;
    const int rms = flags & RMS;
    float m = 0.0f;
    if (!rms) {
        acc_t a = acc_zero();
        seg_sum(xr, n, &a);
        m = group_sum(acc_total(a), red) / (float)n;
    }
    acc_t a1 = acc_zero(), a2 = acc_zero();
    seg_deviations(xr, n, m, &a1, &a2);
    const float3 sums = group_sum3(acc_total(a1), acc_total(a2), 0.0f, red);
    const float delta = rms ? 0.0f : sums.x / (float)n;
    const float raw = sums.y / (float)n - delta * delta;
    const float var = raw < 0.0f ? 0.0f : raw; // keeps NaN
    const float s = 1.0f / sqrt(var + eps);
    if (get_local_id(0) == 0) {
        if (flags & WRITE_MEAN) mean[row] = m + delta;
        rstd[row] = s;
    }
    const int p0 = (row % groups) * group_channels;
    __global const float *wv = (flags & HAS_WEIGHT) ? weight + p0 : 0;
    __global const float *bv = (flags & HAS_BIAS) ? bias + p0 : 0;
    if (spatial == 1) {
        seg_apply(xr, yr, n, m, delta, s, wv, bv, 1.0f, 0.0f);
    } else {
        for (int c = 0; c < group_channels; ++c)
            seg_apply(xr + c * spatial, yr + c * spatial, spatial, m, delta, s, 0, 0, wv ? wv[c] : 1.0f,
                      bv ? bv[c] : 0.0f);
    }
}

__kernel __attribute__((reqd_work_group_size(LOCAL_SIZE, 1, 1)))
void norm_rows_backward_f32(__global const float *x, __global const float *dy, __global const float *weight,
                            __global const float *mean, __global const float *rstd, __global float *dx,
                            __global float *delta_out, const int groups, const int group_channels,
                            const int spatial, const int flags) {
    __local float red[3 * LOCAL_SIZE];
    const int row = get_group_id(0);
    const int n = group_channels * spatial;
    const long base = (long)row * n;
    __global const float *xr = x + base, *gr = dy + base;
    __global float *dxr = dx + base;
    const int rms = flags & RMS;
    const float m = rms ? 0.0f : mean[row];
    const float s = rstd[row];
    const int p0 = (row % groups) * group_channels;
    __global const float *wv = (flags & HAS_WEIGHT) ? weight + p0 : 0;
    acc_t a1 = acc_zero(), ag = acc_zero(), agd = acc_zero();
    if (spatial == 1) {
        seg_backward_sums(xr, gr, n, m, wv, 1.0f, &a1, &ag, &agd);
    } else {
        for (int c = 0; c < group_channels; ++c)
            seg_backward_sums(xr + c * spatial, gr + c * spatial, spatial, m, 0, wv ? wv[c] : 1.0f, &a1, &ag, &agd);
    }
    const float3 sums = group_sum3(acc_total(a1), acc_total(ag), acc_total(agd), red);
    // Σ ĝ·x̂ = s·(Σ ĝ·(x − m) − δ·Σ ĝ): the exact mean is m + δ.
    const float delta = rms ? 0.0f : sums.x / (float)n;
    const float sgx = s * (sums.z - delta * sums.y);
    const float c1 = rms ? 0.0f : sums.y / (float)n;
    const float c2 = sgx / (float)n;
    if (get_local_id(0) == 0 && (flags & WRITE_MEAN)) delta_out[row] = delta;
    if (spatial == 1) {
        seg_backward_apply(xr, gr, dxr, n, m, delta, s, c1, c2, wv, 1.0f);
    } else {
        for (int c = 0; c < group_channels; ++c)
            seg_backward_apply(xr + c * spatial, gr + c * spatial, dxr + c * spatial, spatial, m, delta, s, c1, c2, 0,
                               wv ? wv[c] : 1.0f);
    }
}

// dw[p] = Σ dy·x̂, db[p] = Σ dy over the elements using parameter p, with the rows' m, δ (delta, written
// by norm_rows_backward_f32) and σ.
__kernel void norm_rows_params_f32(__global const float *x, __global const float *dy, __global const float *mean,
                                   __global const float *delta, __global const float *rstd, __global float *dweight,
                                   __global float *dbias, const int rows, const int groups,
                                   const int group_channels, const int spatial, const int flags) {
    const int p = get_global_id(0);
    if (p >= groups * group_channels) return;
    const int g = p / group_channels, c = p % group_channels;
    const int n = group_channels * spatial;
    const int rms = flags & RMS;
    float sw = 0.0f, cw = 0.0f, sb = 0.0f, cb = 0.0f;
    for (int r = g; r < rows; r += groups) {
        const float m = rms ? 0.0f : mean[r], lo = rms ? 0.0f : delta[r], s = rstd[r];
        const long base = (long)r * n + (long)c * spatial;
        for (int i = 0; i < spatial; ++i) {
            const float gv = dy[base + i];
            KAHAN(sw, cw, gv * (((x[base + i] - m) - lo) * s));
            KAHAN(sb, cb, gv);
        }
    }
    if (flags & WRITE_DW) dweight[p] = sw - cw;
    if (flags & WRITE_DB) dbias[p] = sb - cb;
}

// The CPU-style alternative to norm_rows_params_f32, in two steps. norm_rows_params_partial_f32: work-item
// k sums rows [k·ROWS_PER_PARTIAL, (k + 1)·ROWS_PER_PARTIAL) into partial[k·2P + p] (Σ dy·x̂) and
// partial[k·2P + P + p] (Σ dy), P = groups·group_channels, walking each row in order with VEC-wide loads.
// norm_rows_params_reduce_f32 (one work-item per parameter) adds the partials with Kahan compensation.
__kernel void norm_rows_params_partial_f32(__global const float *x, __global const float *dy,
                                           __global const float *mean, __global const float *delta,
                                           __global const float *rstd, __global float *partial, const int rows,
                                           const int groups, const int group_channels, const int spatial,
                                           const int flags) {
    const int k = get_global_id(0);
    const int parameters = groups * group_channels, n = group_channels * spatial;
    const int first = k * ROWS_PER_PARTIAL;
    if (first >= rows) return;
    const int last = min(rows, first + ROWS_PER_PARTIAL);
    __global float *pw = partial + (long)k * 2 * parameters, *pb = pw + parameters;
    for (int p = 0; p < 2 * parameters; ++p) pw[p] = 0.0f;
    const int rms = flags & RMS;
    for (int r = first; r < last; ++r) {
        const float m = rms ? 0.0f : mean[r], lo = rms ? 0.0f : delta[r], s = rstd[r];
        const long base = (long)r * n;
        const int p0 = (r % groups) * group_channels;
        if (spatial == 1) {
            const int blocks = n / VEC;
            for (int b = 0; b < blocks; ++b) {
                const int j = b * VEC;
                const vecf g = VLOAD(dy + base + j);
                const vecf xh = ((VLOAD(x + base + j) - m) - lo) * s;
                VSTORE(VLOAD(pw + p0 + j) + g * xh, pw + p0 + j);
                VSTORE(VLOAD(pb + p0 + j) + g, pb + p0 + j);
            }
            for (int j = blocks * VEC; j < n; ++j) {
                const float g = dy[base + j];
                pw[p0 + j] += g * (((x[base + j] - m) - lo) * s);
                pb[p0 + j] += g;
            }
        } else {
            for (int c = 0; c < group_channels; ++c) {
                float sw = 0.0f, sb = 0.0f;
                for (int i = 0; i < spatial; ++i) {
                    const long e = base + (long)c * spatial + i;
                    sw += dy[e] * (((x[e] - m) - lo) * s);
                    sb += dy[e];
                }
                pw[p0 + c] += sw;
                pb[p0 + c] += sb;
            }
        }
    }
}

__kernel void norm_rows_params_reduce_f32(__global const float *partial, __global float *dweight,
                                          __global float *dbias, const int partials, const int parameters,
                                          const int flags) {
    const int p = get_global_id(0);
    if (p >= parameters) return;
    float sw = 0.0f, cw = 0.0f, sb = 0.0f, cb = 0.0f;
    for (int k = 0; k < partials; ++k) {
        KAHAN(sw, cw, partial[(long)k * 2 * parameters + p]);
        KAHAN(sb, cb, partial[(long)k * 2 * parameters + parameters + p]);
    }
    if (flags & WRITE_DW) dweight[p] = sw - cw;
    if (flags & WRITE_DB) dbias[p] = sb - cb;
}

// ---------------------------------------------------------------------------------------------------
// Channels: batch and instance norm of [batch, channels, spatial]

// The statistics of channel c: from its sums (training: m + δ and the biased var) or the running
// statistics. *m and *lo are what outputs subtract, *s is σ.
void channel_statistics(const int c, const float sum1, const float sum2, const float m0, const int count,
                        const int flags, __global const float *running_mean, __global const float *running_var,
                        const float eps, float *m, float *lo, float *s, float *var) {
    if (flags & TRAINING) {
        *m = m0;
        *lo = sum1 / (float)count;
        const float raw = sum2 / (float)count - *lo * *lo;
        *var = raw < 0.0f ? 0.0f : raw; // keeps NaN
        *s = 1.0f / sqrt(*var + eps);
    } else {
        *m = running_mean[c];
        *lo = 0.0f;
        *var = running_var[c];
        *s = 1.0f / sqrt(*var + eps);
    }
}

// Writes mean[c], rstd[c] and, with RUNNING, the updated running statistics (unbiased variance).
void channel_write(const int c, const float m, const float lo, const float s, const float var, const int count,
                   const int flags, __global const float *running_mean, __global const float *running_var,
                   __global float *mean, __global float *rstd, __global float *new_mean, __global float *new_var,
                   const float momentum) {
    mean[c] = m + lo;
    rstd[c] = s;
    if ((flags & TRAINING) && (flags & RUNNING)) {
        new_mean[c] = (1.0f - momentum) * running_mean[c] + momentum * (m + lo);
        new_var[c] = (1.0f - momentum) * running_var[c] + momentum * var * ((float)count / (float)(count - 1));
    }
}

__kernel __attribute__((reqd_work_group_size(LOCAL_SIZE, 1, 1)))
void norm_channels_f32(__global const float *x, __global const float *weight, __global const float *bias,
                       __global const float *running_mean, __global const float *running_var, __global float *y,
                       __global float *mean, __global float *rstd, __global float *new_mean, __global float *new_var,
                       const int batch, const int channels, const int spatial, const float eps, const float momentum,
                       const int flags) {
    __local float red[3 * LOCAL_SIZE];
    const int c = get_group_id(0);
    const int count = batch * spatial;
    const long stride = (long)channels * spatial;
    __global const float *xc = x + (long)c * spatial;
    __global float *yc = y + (long)c * spatial;
    float m0 = 0.0f;
    float2 sums = (float2)(0.0f);
    if (flags & TRAINING) {
        acc_t a = acc_zero();
        for (int n = 0; n < batch; ++n) seg_sum(xc + n * stride, spatial, &a);
        m0 = group_sum(acc_total(a), red) / (float)count;
        acc_t a1 = acc_zero(), a2 = acc_zero();
        for (int n = 0; n < batch; ++n) seg_deviations(xc + n * stride, spatial, m0, &a1, &a2);
        sums = group_sum3(acc_total(a1), acc_total(a2), 0.0f, red).xy;
    }
    float m, lo, s, var;
    channel_statistics(c, sums.x, sums.y, m0, count, flags, running_mean, running_var, eps, &m, &lo, &s, &var);
    if (get_local_id(0) == 0)
        channel_write(c, m, lo, s, var, count, flags, running_mean, running_var, mean, rstd, new_mean, new_var,
                      momentum);
    const float ws = (flags & HAS_WEIGHT) ? weight[c] : 1.0f, bs = (flags & HAS_BIAS) ? bias[c] : 0.0f;
    for (int n = 0; n < batch; ++n) seg_apply(xc + n * stride, yc + n * stride, spatial, m, lo, s, 0, 0, ws, bs);
}

__kernel __attribute__((reqd_work_group_size(LOCAL_SIZE, 1, 1)))
void norm_channels_backward_f32(__global const float *x, __global const float *dy, __global const float *weight,
                                __global const float *mean, __global const float *rstd, __global float *dx,
                                __global float *dweight, __global float *dbias, const int batch, const int channels,
                                const int spatial, const int flags) {
    __local float red[3 * LOCAL_SIZE];
    const int c = get_group_id(0);
    const int count = batch * spatial;
    const long stride = (long)channels * spatial;
    const long offset = (long)c * spatial;
    const float m = mean[c], s = rstd[c], wc = (flags & HAS_WEIGHT) ? weight[c] : 1.0f;
    acc_t a1 = acc_zero(), ag = acc_zero(), agd = acc_zero();
    for (int n = 0; n < batch; ++n)
        seg_backward_sums(x + offset + n * stride, dy + offset + n * stride, spatial, m, 0, 1.0f, &a1, &ag, &agd);
    const float3 sums = group_sum3(acc_total(a1), acc_total(ag), acc_total(agd), red);
    const int training = flags & TRAINING;
    const float delta = training ? sums.x / (float)count : 0.0f;
    const float sgx = s * (sums.z - delta * sums.y);
    if (get_local_id(0) == 0) {
        if (flags & WRITE_DW) dweight[c] = sgx;
        if (flags & WRITE_DB) dbias[c] = sums.y;
    }
    // dx = s·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)), ĝ = dy·w (inference: s·ĝ).
    const float c1 = training ? wc * sums.y / (float)count : 0.0f;
    const float c2 = training ? wc * sgx / (float)count : 0.0f;
    for (int n = 0; n < batch; ++n)
        seg_backward_apply(x + offset + n * stride, dy + offset + n * stride, dx + offset + n * stride, spatial, m,
                           delta, s, c1, c2, 0, wc);
}

// Batch norm of [batch, channels] (spatial 1): one work-item per channel, reads coalesced across channels.
__kernel void norm_columns_f32(__global const float *x, __global const float *weight, __global const float *bias,
                               __global const float *running_mean, __global const float *running_var,
                               __global float *y, __global float *mean, __global float *rstd, __global float *new_mean,
                               __global float *new_var, const int batch, const int channels, const float eps,
                               const float momentum, const int flags) {
    const int c = get_global_id(0);
    if (c >= channels) return;
    float m0 = 0.0f, s1 = 0.0f, s2 = 0.0f;
    if (flags & TRAINING) {
        float a = 0.0f, ac = 0.0f;
        for (int n = 0; n < batch; ++n) KAHAN(a, ac, x[(long)n * channels + c]);
        m0 = (a - ac) / (float)batch;
        float c1 = 0.0f, c2 = 0.0f;
        for (int n = 0; n < batch; ++n) {
            const float d = x[(long)n * channels + c] - m0;
            KAHAN(s1, c1, d);
            KAHAN(s2, c2, d * d);
        }
        s1 -= c1;
        s2 -= c2;
    }
    float m, lo, s, var;
    channel_statistics(c, s1, s2, m0, batch, flags, running_mean, running_var, eps, &m, &lo, &s, &var);
    channel_write(c, m, lo, s, var, batch, flags, running_mean, running_var, mean, rstd, new_mean, new_var, momentum);
    const float a = s * ((flags & HAS_WEIGHT) ? weight[c] : 1.0f), b = (flags & HAS_BIAS) ? bias[c] : 0.0f;
    for (int n = 0; n < batch; ++n) {
        const long i = (long)n * channels + c;
        y[i] = ((x[i] - m) - lo) * a + b;
    }
}

__kernel void norm_columns_backward_f32(__global const float *x, __global const float *dy,
                                        __global const float *weight, __global const float *mean,
                                        __global const float *rstd, __global float *dx, __global float *dweight,
                                        __global float *dbias, const int batch, const int channels, const int flags) {
    const int c = get_global_id(0);
    if (c >= channels) return;
    const float m = mean[c], s = rstd[c], wc = (flags & HAS_WEIGHT) ? weight[c] : 1.0f;
    float s1 = 0.0f, k1 = 0.0f, sg = 0.0f, kg = 0.0f, sgd = 0.0f, kgd = 0.0f;
    for (int n = 0; n < batch; ++n) {
        const long i = (long)n * channels + c;
        const float d = x[i] - m;
        KAHAN(s1, k1, d);
        KAHAN(sg, kg, dy[i]);
        KAHAN(sgd, kgd, dy[i] * d);
    }
    s1 -= k1;
    sg -= kg;
    sgd -= kgd;
    const int training = flags & TRAINING;
    const float delta = training ? s1 / (float)batch : 0.0f;
    const float sgx = s * (sgd - delta * sg);
    if (flags & WRITE_DW) dweight[c] = sgx;
    if (flags & WRITE_DB) dbias[c] = sg;
    const float c1 = training ? wc * sg / (float)batch : 0.0f;
    const float c2 = training ? wc * sgx / (float)batch : 0.0f;
    for (int n = 0; n < batch; ++n) {
        const long i = (long)n * channels + c;
        const float xh = ((x[i] - m) - delta) * s;
        dx[i] = s * ((dy[i] * wc - c1) - xh * c2);
    }
}

// ---------------------------------------------------------------------------------------------------
// Local response norm

// D = k + (α/size)·Σ_{c' ∈ [lo, hi]} x_{c'}² at one position (p points at channel 0, stride between channels).
float lrn_denominator(__global const float *p, const long stride, const int lo, const int hi, const float scale,
                      const float k) {
    float acc = 0.0f;
    for (int c = lo; c <= hi; ++c) {
        const float v = p[c * stride];
        acc += v * v;
    }
    return k + scale * acc;
}

__kernel void lrn_f32(__global const float *x, __global float *y, const int batch, const int channels,
                      const int spatial, const int size, const float alpha, const float beta, const float k) {
    const int gid = get_global_id(0);
    if (gid >= batch * spatial) return;
    const int n = gid / spatial, s = gid % spatial;
    const long base = (long)n * channels * spatial + s;
    const int before = size / 2, after = (size - 1) / 2;
    const float scale = alpha / (float)size;
    for (int c = 0; c < channels; ++c) {
        const float d = lrn_denominator(x + base, spatial, max(0, c - before), min(channels - 1, c + after), scale, k);
        y[base + (long)c * spatial] = x[base + (long)c * spatial] * pow(d, -beta);
    }
}

// dx_j = dy_j·D_j^(−β) − (2αβ/size)·x_j·Σ_{c ∈ [j − (size−1)/2, j + size/2]} dy_c·x_c·D_c^(−β−1).
// scratch (the size of x) receives dy_c·x_c·D_c^(−β−1); dx holds D_c^(−β) between the two passes.
__kernel void lrn_backward_f32(__global const float *x, __global const float *dy, __global float *dx,
                               __global float *scratch, const int batch, const int channels, const int spatial,
                               const int size, const float alpha, const float beta, const float k) {
    const int gid = get_global_id(0);
    if (gid >= batch * spatial) return;
    const int n = gid / spatial, s = gid % spatial;
    const long base = (long)n * channels * spatial + s;
    const int before = size / 2, after = (size - 1) / 2;
    const float scale = alpha / (float)size;
    for (int c = 0; c < channels; ++c) {
        const long i = base + (long)c * spatial;
        const float d = lrn_denominator(x + base, spatial, max(0, c - before), min(channels - 1, c + after), scale, k);
        const float p = pow(d, -beta);
        scratch[i] = dy[i] * x[i] * p / d;
        dx[i] = p;
    }
    const float coefficient = 2.0f * alpha * beta / (float)size;
    for (int j = 0; j < channels; ++j) {
        const long i = base + (long)j * spatial;
        float acc = 0.0f;
        for (int c = max(0, j - after); c <= min(channels - 1, j + before); ++c) acc += scratch[base + (long)c * spatial];
        dx[i] = dy[i] * dx[i] - coefficient * x[i] * acc;
    }
}
