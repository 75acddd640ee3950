// random.cl — Philox-4x32-10 samples; the bit-for-bit twin of KilnCore's `Philox` (Swift).
//
// Element i of the stream with 64-bit key `seed` comes from counter block
// (i / 4 low 32 bits, i / 4 high 32 bits, 0, 0), word i % 4. Distributions (codes match
// RandomDistribution): 0 uniform low + (high - low)·u with u = (bits >> 8)·2^-24;
// 1 normal mean + std·z by Box–Muller; 2 bernoulli u < p.
// The normal transform uses only IEEE +, ·, floor and integer operations — no library log, sin,
// cos or sqrt, whose last bits differ between devices — and no contraction into fused
// multiply-adds: this file is built without -cl-mad-enable and turns FP_CONTRACT off.
// Global size: one work-item per block of four samples. The file ends by turning FP_CONTRACT back on
// for the files the host builds after it (see OpenCLBackend.prependedFiles).

#pragma OPENCL FP_CONTRACT OFF

uint4 philox4x32_10(uint4 c, uint k0, uint k1) {
    for (int round = 0; round < 10; ++round) {
        const ulong p0 = (ulong)0xD2511F53u * c.x;
        const ulong p1 = (ulong)0xCD9E8D57u * c.z;
        c = (uint4)((uint)(p1 >> 32) ^ c.y ^ k0, (uint)p1, (uint)(p0 >> 32) ^ c.w ^ k1, (uint)p0);
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    return c;
}

float unit_float(const uint bits) { return (float)(bits >> 8) * 0x1p-24f; }

// ln x for x in (0, 1]: exponent bits plus an 11th-degree polynomial for ln(1 + f).
float portable_log(const float x) {
    uint bits = as_uint(x);
    int exponent = (int)((bits >> 23) & 0xFFu) - 127;
    bits = (bits & 0x007FFFFFu) | 0x3F800000u;
    float m = as_float(bits);
    if (m > 1.41421356f) {
        m = m * 0.5f;
        exponent += 1;
    }
    const float f = m - 1.0f;
    float p = 6.544442475e-02f;
    p = p * f + -1.178408489e-01f;
    p = p * f + 1.206534430e-01f;
    p = p * f + -1.240121126e-01f;
    p = p * f + 1.418882459e-01f;
    p = p * f + -1.666656137e-01f;
    p = p * f + 2.000413537e-01f;
    p = p * f + -2.500011921e-01f;
    p = p * f + 3.333325982e-01f;
    p = p * f + -4.999999702e-01f;
    p = p * f + 1.000000000e+00f;
    p = p * f + -3.663262749e-11f;
    return p + (float)exponent * 0.693147181f;
}

// sin and cos of a in [0, pi/2] by 8th-degree polynomials.
float2 portable_sin_cos(const float a) {
    float s = 1.723916466e-05f;
    s = s * a + -2.459342359e-04f;
    s = s * a + 7.241041749e-05f;
    s = s * a + 8.268183097e-03f;
    s = s * a + 3.470024603e-05f;
    s = s * a + -1.666771024e-01f;
    s = s * a + 1.576591899e-06f;
    s = s * a + 9.999998808e-01f;
    s = s * a + 8.827963915e-10f;
    float c = 1.723916466e-05f;
    c = c * a + 2.930052324e-05f;
    c = c * a + -1.440771739e-03f;
    c = c * a + 5.089586921e-05f;
    c = c * a + 4.163797945e-02f;
    c = c * a + 8.977533980e-06f;
    c = c * a + -5.000013709e-01f;
    c = c * a + 8.341156388e-08f;
    c = c * a + 1.000000000e+00f;
    return (float2)(s, c);
}

// sqrt x for x >= 0: four Newton steps on 1/sqrt x from the exponent-halving estimate.
float portable_sqrt(const float x) {
    if (x <= 0.0f) return 0.0f;
    float y = as_float(0x5F3759DFu - (as_uint(x) >> 1));
    const float halfX = x * 0.5f;
    y = y * (1.5f - halfX * y * y);
    y = y * (1.5f - halfX * y * y);
    y = y * (1.5f - halfX * y * y);
    y = y * (1.5f - halfX * y * y);
    return x * y;
}

// Two standard normals: r = sqrt(-2 ln u1), theta = 2 pi u2, evaluated by quarter turns.
float2 box_muller(const uint w0, const uint w1) {
    const float u1 = (float)((w0 >> 8) + 1u) * 0x1p-24f;
    const float radius = portable_sqrt(-2.0f * portable_log(u1));
    const float turns = (float)(w1 >> 8) * 0x1p-22f;
    const float quadrant = floor(turns);
    const float2 sc = portable_sin_cos((turns - quadrant) * 1.57079637f);
    float2 xy;
    switch ((int)quadrant) {
    case 0: xy = (float2)(sc.y, sc.x); break;
    case 1: xy = (float2)(-sc.x, sc.y); break;
    case 2: xy = (float2)(-sc.y, -sc.x); break;
    default: xy = (float2)(sc.x, -sc.y); break;
    }
    return (float2)(radius * xy.x, radius * xy.y);
}

__kernel void philox_fill_f32(__global float *out, const int n, const uint seedLow, const uint seedHigh,
                              const int distribution, const float p0, const float p1) {
    const int block = get_global_id(0);
    if (block * 4 >= n) return;
    const uint4 w = philox4x32_10((uint4)((uint)block, 0u, 0u, 0u), seedLow, seedHigh);
    float v[4];
    if (distribution == 0) {
        const float span = p1 - p0;
        v[0] = p0 + span * unit_float(w.x);
        v[1] = p0 + span * unit_float(w.y);
        v[2] = p0 + span * unit_float(w.z);
        v[3] = p0 + span * unit_float(w.w);
    } else if (distribution == 1) {
        const float2 a = box_muller(w.x, w.y);
        const float2 b = box_muller(w.z, w.w);
        v[0] = p0 + p1 * a.x;
        v[1] = p0 + p1 * a.y;
        v[2] = p0 + p1 * b.x;
        v[3] = p0 + p1 * b.y;
    } else {
        v[0] = unit_float(w.x) < p0 ? 1.0f : 0.0f;
        v[1] = unit_float(w.y) < p0 ? 1.0f : 0.0f;
        v[2] = unit_float(w.z) < p0 ? 1.0f : 0.0f;
        v[3] = unit_float(w.w) < p0 ? 1.0f : 0.0f;
    }
    for (int j = 0; j < 4; ++j) {
        if (block * 4 + j < n) out[block * 4 + j] = v[j];
    }
}

// Files built after this one (attention_*.cl call philox4x32_10 and unit_float) get contraction back.
#pragma OPENCL FP_CONTRACT ON
