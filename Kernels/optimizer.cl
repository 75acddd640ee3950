// optimizer.cl — fused optimizer updates, one work-item per parameter element. Built once per
// rule: RULE is the FusedUpdateRule code (KilnCore), the formulas are documented there and match
// CKilnCPU's optimizer.c. Coefficients: c0 sign, c1 l2, c2 decay, then k0..k8 for the rule.
// Unused state arguments are bound to some other buffer and never touched.

#ifndef RULE
#error "optimizer.cl needs -D RULE=<FusedUpdateRule code>"
#endif

inline float sign_or_zero(const float x) { return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f); }

__kernel void optimizer_update_f32(__global const float *theta, __global const float *grad,
                                   __global float *s0, __global float *s1, __global float *s2,
                                   __global float *out, const int n,
                                   const float sign, const float l2, const float decay,
                                   const float k0, const float k1, const float k2, const float k3,
                                   const float k4, const float k5, const float k6, const float k7,
                                   const float k8) {
    const int i = get_global_id(0);
    if (i >= n) return;
    const float th = theta[i];
    const float g = sign * grad[i] + l2 * th;
    float t = decay * th;
#if RULE == 0  // SGD: k0 lr, k1 momentum, k2 dampening, k3 nesterov, k4 first step
    if (k1 != 0.0f) {
        const float b = k4 != 0.0f ? g : k1 * s0[i] + (1.0f - k2) * g;
        s0[i] = b;
        t -= k0 * (k3 != 0.0f ? g + k1 * b : b);
    } else {
        t -= k0 * g;
    }
#elif RULE == 1  // AdaGrad: k0 lr, k1 eps
    const float s = s0[i] + g * g;
    s0[i] = s;
    t -= k0 * g / (sqrt(s) + k1);
#elif RULE == 2  // RMSProp: k0 lr, k1 alpha, k2 eps, k3 momentum, k4 centered
    const float sq = k1 * s0[i] + (1.0f - k1) * g * g;
    s0[i] = sq;
    float avg;
    if (k4 != 0.0f) {
        const float ga = k1 * s1[i] + (1.0f - k1) * g;
        s1[i] = ga;
        avg = sqrt(sq - ga * ga) + k2;
    } else {
        avg = sqrt(sq) + k2;
    }
    if (k3 > 0.0f) {
        const float b = k3 * s2[i] + g / avg;
        s2[i] = b;
        t -= k0 * b;
    } else {
        t -= k0 * g / avg;
    }
#elif RULE == 3  // Adadelta: k0 lr, k1 rho, k2 eps
    const float sq = k1 * s0[i] + (1.0f - k1) * g * g;
    s0[i] = sq;
    const float d = sqrt(s1[i] + k2) / sqrt(sq + k2) * g;
    s1[i] = k1 * s1[i] + (1.0f - k1) * d * d;
    t -= k0 * d;
#elif RULE == 4  // Adam: k0 b1, k1 b2, k2 lr/bc1, k3 1/sqrt(bc2), k4 eps, k5 amsgrad
    const float m = k0 * s0[i] + (1.0f - k0) * g;
    float v = k1 * s1[i] + (1.0f - k1) * g * g;
    s0[i] = m;
    s1[i] = v;
    if (k5 != 0.0f) {
        v = fmax(v, s2[i]);
        s2[i] = v;
    }
    t -= k2 * m / (sqrt(v) * k3 + k4);
#elif RULE == 5  // AdaMax: k0 b1, k1 b2, k2 lr/bc1, k3 eps
    const float m = k0 * s0[i] + (1.0f - k0) * g;
    const float u = fmax(k1 * s1[i], fabs(g) + k3);
    s0[i] = m;
    s1[i] = u;
    t -= k2 * m / u;
#elif RULE == 6  // NAdam: k0 b1, k1 b2, k2 cg, k3 cm, k4 1/sqrt(bc2), k5 eps
    const float m = k0 * s0[i] + (1.0f - k0) * g;
    const float v = k1 * s1[i] + (1.0f - k1) * g * g;
    s0[i] = m;
    s1[i] = v;
    const float d = sqrt(v) * k4 + k5;
    t -= (k2 * g + k3 * m) / d;
#elif RULE == 7  // RAdam: k0 b1, k1 b2, k2 step, k3 rectified, k4 sqrt(bc2), k5 eps
    const float m = k0 * s0[i] + (1.0f - k0) * g;
    const float v = k1 * s1[i] + (1.0f - k1) * g * g;
    s0[i] = m;
    s1[i] = v;
    t -= k3 != 0.0f ? k2 * m * k4 / (sqrt(v) + k5) : k2 * m;
#elif RULE == 8  // Lion: k0 lr, k1 b1, k2 b2
    const float m = s0[i];
    t -= k0 * sign_or_zero(k1 * m + (1.0f - k1) * g);
    s0[i] = k2 * m + (1.0f - k2) * g;
#elif RULE == 9  // AdaBound: k0 b1, k1 b2, k2 step, k3 eps, k4 lower, k5 upper, k6 amsbound
    const float m = k0 * s0[i] + (1.0f - k0) * g;
    float v = k1 * s1[i] + (1.0f - k1) * g * g;
    s0[i] = m;
    s1[i] = v;
    if (k6 != 0.0f) {
        v = fmax(v, s2[i]);
        s2[i] = v;
    }
    const float e = k2 / (sqrt(v) + k3);
    t -= (e < k4 ? k4 : (e > k5 ? k5 : e)) * m;
#elif RULE == 10  // AccSGD: k0 lr, k1 long step, k2 beta, k3 zeta
    const float b = k2 * ((1.0f / k2 - 1.0f) * s0[i] - k1 * g + t);
    s0[i] = b;
    t = k3 * (t - k0 * g) + (1.0f - k3) * b;
#elif RULE == 11  // MADGRAD: k0 lambda, k1 eps, k2 ck, k3 momentum; s0 x0, s1 s, s2 nu
    const float s = s1[i] + k0 * g, nu = s2[i] + k0 * g * g;
    s1[i] = s;
    s2[i] = nu;
    const float z = s0[i] - s / (cbrt(nu) + k1);
    t = k3 != 0.0f ? (1.0f - k2) * t + k2 * z : z;
#elif RULE == 12  // FTRL-Proximal: k0 alpha, k1 beta, k2 l1, k3 l2; s0 z, s1 n
    const float n0 = s1[i], n1 = n0 + g * g;
    const float sigma = (sqrt(n1) - sqrt(n0)) / k0;
    const float z = s0[i] + g - sigma * t;
    s0[i] = z;
    s1[i] = n1;
    t = fabs(z) <= k2 ? 0.0f : -(z - sign_or_zero(z) * k2) / ((k1 + sqrt(n1)) / k0 + k3);
#elif RULE == 13  // Sophia: k0 lr, k1 b1, k2 rho, k3 eps; s1 the Hessian EMA (read only)
    const float m = k1 * s0[i] + (1.0f - k1) * g;
    s0[i] = m;
    const float r = fmin(fabs(m) / (k2 * s1[i] + k3), 1.0f);
    t -= k0 * sign_or_zero(m) * r;
#elif RULE == 14  // Lookahead: k0 alpha
    t = s0[i] + k0 * (th - s0[i]);
    s0[i] = t;
#elif RULE == 15  // running average: k0 weight; theta is not written
    s0[i] += k0 * (th - s0[i]);
    return;
#elif RULE == 16  // LAMB direction: k0 b1, k1 b2, k2 1/bc1, k3 1/bc2, k4 eps, k5 weight decay
    const float m = k0 * s0[i] + (1.0f - k0) * g;
    const float v = k1 * s1[i] + (1.0f - k1) * g * g;
    s0[i] = m;
    s1[i] = v;
    s2[i] = m * k2 / (sqrt(v * k3) + k4) + k5 * t;
    return;
#else
#error "unknown RULE"
#endif
    out[i] = t;
}
