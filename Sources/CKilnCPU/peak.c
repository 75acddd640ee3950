// peak.c — a fused multiply-add loop at the widest vector width the CPU has, to measure the
// machine's floating-point peak (bench reports kernels as a percentage of it).
#include "kiln_cpu.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

__attribute__((target("avx512f"))) static float burn_avx512(int64_t iterations) {
    __m512 acc[12];
    const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ps((float)i);
    for (int64_t n = 0; n < iterations; ++n) {
        for (int i = 0; i < 12; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
    }
    __m512 sum = acc[0];
    for (int i = 1; i < 12; ++i) sum = _mm512_add_ps(sum, acc[i]);
    return _mm512_reduce_add_ps(sum);
}

__attribute__((target("avx2,fma"))) static float burn_avx2(int64_t iterations) {
    __m256 acc[12];
    const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps((float)i);
    for (int64_t n = 0; n < iterations; ++n) {
        for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
    }
    __m256 sum = acc[0];
    for (int i = 1; i < 12; ++i) sum = _mm256_add_ps(sum, acc[i]);
    float lanes[8];
    _mm256_storeu_ps(lanes, sum);
    return lanes[0] + lanes[1] + lanes[2] + lanes[3] + lanes[4] + lanes[5] + lanes[6] + lanes[7];
}
#endif

double kiln_fma_burn(int64_t iterations, float *sink) {
#if defined(__x86_64__) || defined(__i386__)
    if (kiln_cpu_isa() >= 2) {
        *sink = burn_avx512(iterations);
        return (double)iterations * 12 * 16 * 2;
    }
    if (kiln_cpu_isa() >= 1) {
        *sink = burn_avx2(iterations);
        return (double)iterations * 12 * 8 * 2;
    }
#endif
    float acc = 0.0f;
    for (int64_t n = 0; n < iterations; ++n) acc = acc * 0.999999f + 1e-7f;
    *sink = acc;
    return (double)iterations * 2;
}
