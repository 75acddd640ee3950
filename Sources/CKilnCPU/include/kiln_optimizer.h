// kiln_optimizer.h — the fused optimizer update: one pass over a parameter tensor.
#ifndef KILN_OPTIMIZER_H
#define KILN_OPTIMIZER_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Update rules; the codes match FusedUpdateRule in KilnCore and Kernels/optimizer.cl.
typedef enum {
    KILN_OPT_SGD = 0,
    KILN_OPT_ADAGRAD = 1,
    KILN_OPT_RMSPROP = 2,
    KILN_OPT_ADADELTA = 3,
    KILN_OPT_ADAM = 4,
    KILN_OPT_ADAMAX = 5,
    KILN_OPT_NADAM = 6,
    KILN_OPT_RADAM = 7,
    KILN_OPT_LION = 8,
    KILN_OPT_ADABOUND = 9,
    KILN_OPT_ACCSGD = 10,
    KILN_OPT_MADGRAD = 11,
    KILN_OPT_FTRL = 12,
    KILN_OPT_SOPHIA = 13,
    KILN_OPT_LOOKAHEAD = 14,
    KILN_OPT_AVERAGE = 15,
    KILN_OPT_LAMB_DIRECTION = 16,
} kiln_optimizer_rule;

/// Number of floats in the coefficient block: sign, l2, decay, then 9 rule coefficients.
#define KILN_OPT_COEFFICIENTS 12

/// Applies `rule` to elements [0, n): reads theta, grad and the state s0..s2 (NULL where the rule
/// does not use one), writes theta_out (may alias theta exactly) and the state in place.
/// `c` holds KILN_OPT_COEFFICIENTS floats; see FusedUpdateRule for each rule's formula.
void kiln_optimizer_update_f32(int rule, const float *c, const float *theta, const float *grad,
                               float *s0, float *s1, float *s2, float *theta_out, int64_t n);

#ifdef __cplusplus
}
#endif

#endif
