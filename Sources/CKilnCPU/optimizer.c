// optimizer.c — fused optimizer updates: each rule is one loop that reads θ, g and the state once
// and writes θ' and the state once. Formulas: FusedUpdateRule in KilnCore.
#include "kiln_cpu_internal.h"
#include "kiln_optimizer.h"

KILN_INLINE float kiln_signf(float x) { return x > 0.0f ? 1.0f : x < 0.0f ? -1.0f : 0.0f; }

/// Loops over i < n with the shared prologue: g = sign·grad + l2·θ, t = decay·θ. BODY reads g and
/// t and assigns the new θ to t (rules that keep θ leave t alone and do not store it).
#define KILN_OPT_LOOP(STORE, ...)                                                                 \
    KILN_VECTORIZE for (int64_t i = 0; i < n; i++) {                                               \
        const float th = theta[i];                                                                 \
        const float g = sign * grad[i] + l2 * th;                                                  \
        float t = decay * th;                                                                      \
        __VA_ARGS__;                                                                               \
        if (STORE) out[i] = t;                                                                     \
    }

KILN_INLINE void optimizer_update_body(int rule, const float *c, const float *theta, const float *grad,
                                       float *s0, float *s1, float *s2, float *out, int64_t n) {
    const float sign = c[0], l2 = c[1], decay = c[2];
    const float *k = c + 3;
    switch (rule) {
    case KILN_OPT_SGD: {
        const float lr = k[0], mu = k[1], damp = 1.0f - k[2];
        if (mu == 0.0f) {
            KILN_OPT_LOOP(1, t -= lr * g)
        } else if (k[4] != 0.0f) {
            KILN_OPT_LOOP(1, { const float b = g; s0[i] = b; t -= lr * (k[3] != 0.0f ? g + mu * b : b); })
        } else if (k[3] != 0.0f) {
            KILN_OPT_LOOP(1, { const float b = mu * s0[i] + damp * g; s0[i] = b; t -= lr * (g + mu * b); })
        } else {
            KILN_OPT_LOOP(1, { const float b = mu * s0[i] + damp * g; s0[i] = b; t -= lr * b; })
        }
        break;
    }
    case KILN_OPT_ADAGRAD: {
        const float lr = k[0], eps = k[1];
        KILN_OPT_LOOP(1, { const float s = s0[i] + g * g; s0[i] = s; t -= lr * g / (KILN_SQRTF(s) + eps); })
        break;
    }
    case KILN_OPT_RMSPROP: {
        const float lr = k[0], a = k[1], eps = k[2], mu = k[3];
        const int centered = k[4] != 0.0f;
        KILN_OPT_LOOP(1, {
            const float sq = a * s0[i] + (1.0f - a) * g * g;
            s0[i] = sq;
            float avg;
            if (centered) {
                const float ga = a * s1[i] + (1.0f - a) * g;
                s1[i] = ga;
                avg = KILN_SQRTF(sq - ga * ga) + eps;
            } else {
                avg = KILN_SQRTF(sq) + eps;
            }
            if (mu > 0.0f) {
                const float b = mu * s2[i] + g / avg;
                s2[i] = b;
                t -= lr * b;
            } else {
                t -= lr * g / avg;
            }
        })
        break;
    }
    case KILN_OPT_ADADELTA: {
        const float lr = k[0], rho = k[1], eps = k[2];
        KILN_OPT_LOOP(1, {
            const float sq = rho * s0[i] + (1.0f - rho) * g * g;
            s0[i] = sq;
            const float d = KILN_SQRTF(s1[i] + eps) / KILN_SQRTF(sq + eps) * g;
            s1[i] = rho * s1[i] + (1.0f - rho) * d * d;
            t -= lr * d;
        })
        break;
    }
    case KILN_OPT_ADAM: {
        const float b1 = k[0], b2 = k[1], step = k[2], ibc2 = k[3], eps = k[4];
        if (k[5] != 0.0f) {  // AMSGrad: the denominator uses the running maximum of v
            KILN_OPT_LOOP(1, {
                const float m = b1 * s0[i] + (1.0f - b1) * g;
                const float v = b2 * s1[i] + (1.0f - b2) * g * g;
                const float vmax = v > s2[i] ? v : s2[i];
                s0[i] = m;
                s1[i] = v;
                s2[i] = vmax;
                t -= step * m / (KILN_SQRTF(vmax) * ibc2 + eps);
            })
        } else {
            KILN_OPT_LOOP(1, {
                const float m = b1 * s0[i] + (1.0f - b1) * g;
                const float v = b2 * s1[i] + (1.0f - b2) * g * g;
                s0[i] = m;
                s1[i] = v;
                t -= step * m / (KILN_SQRTF(v) * ibc2 + eps);
            })
        }
        break;
    }
    case KILN_OPT_ADAMAX: {
        const float b1 = k[0], b2 = k[1], step = k[2], eps = k[3];
        KILN_OPT_LOOP(1, {
            const float m = b1 * s0[i] + (1.0f - b1) * g;
            const float a = b2 * s1[i], b = fabsf(g) + eps;
            const float u = a > b ? a : b;
            s0[i] = m;
            s1[i] = u;
            t -= step * m / u;
        })
        break;
    }
    case KILN_OPT_NADAM: {
        const float b1 = k[0], b2 = k[1], cg = k[2], cm = k[3], ibc2 = k[4], eps = k[5];
        KILN_OPT_LOOP(1, {
            const float m = b1 * s0[i] + (1.0f - b1) * g;
            const float v = b2 * s1[i] + (1.0f - b2) * g * g;
            s0[i] = m;
            s1[i] = v;
            const float d = KILN_SQRTF(v) * ibc2 + eps;
            t -= (cg * g + cm * m) / d;
        })
        break;
    }
    case KILN_OPT_RADAM: {
        const float b1 = k[0], b2 = k[1], step = k[2], sbc2 = k[4], eps = k[5];
        const int rect = k[3] != 0.0f;
        KILN_OPT_LOOP(1, {
            const float m = b1 * s0[i] + (1.0f - b1) * g;
            const float v = b2 * s1[i] + (1.0f - b2) * g * g;
            s0[i] = m;
            s1[i] = v;
            t -= rect ? step * m * sbc2 / (KILN_SQRTF(v) + eps) : step * m;
        })
        break;
    }
    case KILN_OPT_LION: {
        const float lr = k[0], b1 = k[1], b2 = k[2];
        KILN_OPT_LOOP(1, {
            const float m = s0[i];
            t -= lr * kiln_signf(b1 * m + (1.0f - b1) * g);
            s0[i] = b2 * m + (1.0f - b2) * g;
        })
        break;
    }
    case KILN_OPT_ADABOUND: {
        const float b1 = k[0], b2 = k[1], step = k[2], eps = k[3], lo = k[4], hi = k[5];
        const int ams = k[6] != 0.0f;
        KILN_OPT_LOOP(1, {
            const float m = b1 * s0[i] + (1.0f - b1) * g;
            float v = b2 * s1[i] + (1.0f - b2) * g * g;
            s0[i] = m;
            s1[i] = v;
            if (ams) {
                v = v > s2[i] ? v : s2[i];
                s2[i] = v;
            }
            float e = step / (KILN_SQRTF(v) + eps);
            e = e < lo ? lo : e > hi ? hi : e;
            t -= e * m;
        })
        break;
    }
    case KILN_OPT_ACCSGD: {
        const float lr = k[0], large = k[1], beta = k[2], zeta = k[3];
        KILN_OPT_LOOP(1, {
            const float b = beta * ((1.0f / beta - 1.0f) * s0[i] - large * g + t);
            s0[i] = b;
            t = zeta * (t - lr * g) + (1.0f - zeta) * b;
        })
        break;
    }
    case KILN_OPT_MADGRAD: {
        const float lam = k[0], eps = k[1], ck = k[2];
        const int momentum = k[3] != 0.0f;
        for (int64_t i = 0; i < n; i++) {  // cbrtf is a libm call: not vectorised
            const float g = sign * grad[i] + l2 * theta[i];
            const float s = s1[i] + lam * g, nu = s2[i] + lam * g * g;
            s1[i] = s;
            s2[i] = nu;
            const float z = s0[i] - s / (cbrtf(nu) + eps);
            const float t = decay * theta[i];
            out[i] = momentum ? (1.0f - ck) * t + ck * z : z;
        }
        break;
    }
    case KILN_OPT_FTRL: {
        const float alpha = k[0], beta = k[1], l1 = k[2], l2r = k[3];
        KILN_OPT_LOOP(1, {
            const float nOld = s1[i], nNew = nOld + g * g;
            const float sigma = (KILN_SQRTF(nNew) - KILN_SQRTF(nOld)) / alpha;
            const float z = s0[i] + g - sigma * t;
            s0[i] = z;
            s1[i] = nNew;
            t = fabsf(z) <= l1 ? 0.0f : -(z - kiln_signf(z) * l1) / ((beta + KILN_SQRTF(nNew)) / alpha + l2r);
        })
        break;
    }
    case KILN_OPT_SOPHIA: {
        const float lr = k[0], b1 = k[1], rho = k[2], eps = k[3];
        KILN_OPT_LOOP(1, {
            const float m = b1 * s0[i] + (1.0f - b1) * g;
            s0[i] = m;
            float r = fabsf(m) / (rho * s1[i] + eps);
            r = r < 1.0f ? r : 1.0f;
            t -= lr * kiln_signf(m) * r;
        })
        break;
    }
    case KILN_OPT_LOOKAHEAD: {
        const float a = k[0];
        KILN_VECTORIZE for (int64_t i = 0; i < n; i++) {
            const float s = s0[i] + a * (theta[i] - s0[i]);
            s0[i] = s;
            out[i] = s;
        }
        break;
    }
    case KILN_OPT_AVERAGE: {
        const float w = k[0];
        KILN_VECTORIZE for (int64_t i = 0; i < n; i++) s0[i] += w * (theta[i] - s0[i]);
        break;
    }
    case KILN_OPT_LAMB_DIRECTION: {
        const float b1 = k[0], b2 = k[1], ibc1 = k[2], ibc2 = k[3], eps = k[4], wd = k[5];
        KILN_OPT_LOOP(0, {
            const float m = b1 * s0[i] + (1.0f - b1) * g;
            const float v = b2 * s1[i] + (1.0f - b2) * g * g;
            s0[i] = m;
            s1[i] = v;
            s2[i] = m * ibc1 / (KILN_SQRTF(v * ibc2) + eps) + wd * t;
        })
        break;
    }
    default: break;
    }
}

KILN_MULTIVERSION(optimizer_update,
                  (int rule, const float *c, const float *theta, const float *grad, float *s0, float *s1,
                   float *s2, float *out, int64_t n),
                  (rule, c, theta, grad, s0, s1, s2, out, n))

void kiln_optimizer_update_f32(int rule, const float *c, const float *theta, const float *grad,
                               float *s0, float *s1, float *s2, float *theta_out, int64_t n) {
    KILN_DISPATCH(optimizer_update, (rule, c, theta, grad, s0, s1, s2, theta_out, n))
}
