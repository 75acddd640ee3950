// dispatch.c — chooses, once, the instruction set every kernel runs with: 2 = AVX-512
// (F, DQ, BW, VL) with FMA, 1 = AVX2 with FMA, 0 = the baseline (scalar) build, the only one
// off x86.
#include <stdatomic.h>

#include "kiln_cpu_internal.h"

/// The best level this CPU (and OS) supports; -1 until detected.
static _Atomic int kiln_isa_supported = -1;
/// The level in use; -1 until the first kernel call or kiln_cpu_set_isa.
static _Atomic int kiln_isa_current = -1;

static int kiln_detect_isa(void) {
#ifdef KILN_X86
    __builtin_cpu_init();
    const int fma = __builtin_cpu_supports("fma");
    if (fma && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
        return 2;
    if (fma && __builtin_cpu_supports("avx2")) return 1;
#endif
    return 0;
}

static int kiln_supported_isa(void) {
    int level = atomic_load_explicit(&kiln_isa_supported, memory_order_relaxed);
    if (level < 0) {
        level = kiln_detect_isa();
        atomic_store_explicit(&kiln_isa_supported, level, memory_order_relaxed);
    }
    return level;
}

int kiln_cpu_isa(void) {
    int level = atomic_load_explicit(&kiln_isa_current, memory_order_relaxed);
    if (level < 0) {
        // First use: adopt the detected level unless kiln_cpu_set_isa got there first.
        int unset = -1;
        level = kiln_supported_isa();
        if (!atomic_compare_exchange_strong(&kiln_isa_current, &unset, level)) level = unset;
    }
    return level;
}

int kiln_cpu_set_isa(int level) {
    const int supported = kiln_supported_isa();
    level = level < 0 ? 0 : level > supported ? supported : level;
    atomic_store_explicit(&kiln_isa_current, level, memory_order_relaxed);
    return level;
}
