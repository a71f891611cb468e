/*
 * grud native kernel: the time loops of the fused GRU(-D) recurrence, forward and backward.
 *
 * Che et al., "Recurrent Neural Networks for Multivariate Time Series with Missing Values",
 * Scientific Reports 8 (2018), eq. 5 with the hidden decay of eq. 4:
 *
 *     h_hat = gamma_t * h_{t-1}                  (gamma_t = 1 without hidden decay)
 *     hd    = h_hat * drop                       (variational dropout mask, or 1)
 *     r     = sigmoid(gi_r + W_hr hd + b_hr)
 *     z     = sigmoid(gi_z + W_hz hd + b_hz)
 *     n     = tanh(gi_n + r * (W_hn hd + b_hn))
 *     h'    = (1 - z) n + z h_hat
 *     h_t   = h_{t-1} + v_t (h' - h_{t-1})       (v_t = 0 at padded steps: the state is carried)
 *
 * gi holds the input-side pre-activations (W_i x + V m + b_i) for all steps, computed by the
 * caller in one matrix multiply. Each step here is one small matrix multiply (the BLAS sgemm /
 * dgemm the caller hands over, normally the one inside PyTorch) plus one fused pass over the
 * B x H state: no per-operation dispatch, no temporaries. The backward is the hand-written
 * loop back through time of grud/models/fast/gru.py, with the same saved factors.
 *
 * Layout: every array is row-major and contiguous; (B, T, K) arrays are batch-major as the
 * PyTorch tensors they come from. The file is compiled once per REAL type (float, double).
 *
 * Shape symbols: B batch, T steps, H hidden units.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Fortran BLAS gemm. Integers are passed as pointers to int64_t holding values < 2^31: an LP64
 * library reads their low 32 bits, which on a little-endian machine are the value itself, and
 * an ILP64 library reads all 64. The loader checks the result against torch before use. */
typedef void (*sgemm_fn)(const char *, const char *, const int64_t *, const int64_t *, const int64_t *,
                         const float *, const float *, const int64_t *, const float *, const int64_t *,
                         const float *, float *, const int64_t *);
typedef void (*dgemm_fn)(const char *, const char *, const int64_t *, const int64_t *, const int64_t *,
                         const double *, const double *, const int64_t *, const double *, const int64_t *,
                         const double *, double *, const int64_t *);

static sgemm_fn grud_sgemm = NULL;
static dgemm_fn grud_dgemm = NULL;

/* Hand over the BLAS routines (addresses of sgemm_ and dgemm_). Returns 0. */
int grud_set_blas(void *sgemm, void *dgemm) {
    grud_sgemm = (sgemm_fn)sgemm;
    grud_dgemm = (dgemm_fn)dgemm;
    return 0;
}

/* Version of the kernel's calling convention; the loader refuses a library with another. */
int grud_kernel_abi(void) { return 1; }

/* exp for float without a libm call, so that the loops vectorise: Cody-Waite range reduction
 * x = k ln2 + r, |r| <= ln2 / 2, and the minimax polynomial of Cephes' expf (relative error
 * below 2e-7 on the whole range). Inputs are clamped to [-87.3, 88.7]; exp of the clamp ends
 * stays finite and nonzero, which is all a sigmoid needs. */
static inline float grud_expf(float x) {
    x = x < -87.3f ? -87.3f : (x > 88.7f ? 88.7f : x);
    /* k = round(x / ln2) by the 1.5 * 2^23 shift (exact for |k| < 2^22; floorf would block vectorising) */
    float k = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - k * 0.693359375f;
    r = r + k * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * r * r + r + 1.0f;
    union {
        int32_t i;
        float f;
    } scale = {((int32_t)k + 127) * (1 << 23)};
    return y * scale.f;
}

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)

/* ------------------------------------------------------------------ float */
#define REAL float
#define SUFFIX _f32
#define EXP grud_expf
#define GEMM grud_sgemm
#include "gru_kernel_body.h"
#undef REAL
#undef SUFFIX
#undef EXP
#undef GEMM

/* ------------------------------------------------------------------ double (tests, gradcheck) */
#define REAL double
#define SUFFIX _f64
#define EXP exp
#define GEMM grud_dgemm
#include "gru_kernel_body.h"
#undef REAL
#undef SUFFIX
#undef EXP
#undef GEMM
