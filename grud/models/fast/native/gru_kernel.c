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
 * Layout: inputs are read through (batch, time) strides; everything written is time-major (see
 * gru_kernel_body.h). The file is compiled once per REAL type (float, double).
 *
 * Shape symbols: B batch, T steps, H hidden units.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
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

typedef int (*threads_local_fn)(int);

static sgemm_fn grud_sgemm = NULL;
static dgemm_fn grud_dgemm = NULL;
/* MKL's MKL_Set_Num_Threads_Local (returns the previous thread-local setting), or NULL. */
static threads_local_fn grud_blas_threads_local = NULL;

/* Hand over the BLAS routines (addresses of sgemm_ and dgemm_, and of MKL_Set_Num_Threads_Local
 * or NULL). Without the last, the kernel runs on the calling thread only: another BLAS's threads
 * could not be kept from competing with the kernel's own. Returns 0. */
int grud_set_blas(void *sgemm, void *dgemm, void *threads_local) {
    grud_sgemm = (sgemm_fn)sgemm;
    grud_dgemm = (dgemm_fn)dgemm;
    grud_blas_threads_local = (threads_local_fn)threads_local;
    return 0;
}

#define GRUD_MAX_THREADS 16
#define GRUD_MIN_ROWS_PER_THREAD 8

/* Threads for a loop over B rows: at most `wanted`, GRUD_MAX_THREADS and B / 8. */
static int grud_row_threads(int64_t wanted, int64_t B) {
    int64_t n = wanted < 1 ? 1 : wanted;
    if (n > GRUD_MAX_THREADS) n = GRUD_MAX_THREADS;
    if (n > B / GRUD_MIN_ROWS_PER_THREAD) n = B / GRUD_MIN_ROWS_PER_THREAD;
    return n < 1 ? 1 : (int)n;
}

/* The same for loops that call BLAS: 1 without a way to keep the BLAS single-threaded inside
 * each thread (another BLAS's own threads would compete with the kernel's). */
static int grud_thread_count(int64_t wanted, int64_t B) {
    return grud_blas_threads_local ? grud_row_threads(wanted, B) : 1;
}

#ifdef _OPENMP
#include <omp.h>
#define GRUD_THREAD_ID omp_get_thread_num()
#else
#define GRUD_THREAD_ID 0
#endif

/* Run rows(job k) for k < n, jobs laid out `size` bytes apart, each on a thread of the OpenMP team
 * (the same libgomp, and so the same threads, that PyTorch's own operations use; built without
 * OpenMP, one after another) with its BLAS set to one thread; return the first nonzero result,
 * else 0. */
static int grud_run_jobs(int n, const void *jobs, size_t size, int (*rows)(const void *)) {
    const char *base = (const char *)jobs;
    int rc[GRUD_MAX_THREADS] = {0};
#ifdef _OPENMP
#pragma omp parallel for num_threads(n) schedule(static, 1) if (n > 1)
#endif
    for (int k = 0; k < n; k++) {
        const int prev = grud_blas_threads_local ? grud_blas_threads_local(1) : 0;
        rc[k] = rows(base + (size_t)k * size);
        if (grud_blas_threads_local) grud_blas_threads_local(prev);
    }
    for (int k = 0; k < n; k++)
        if (rc[k]) return rc[k];
    return 0;
}

/* Version of the kernel's calling convention; the loader refuses a library with another. */
int grud_kernel_abi(void) { return 6; }

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
#define BITS uint32_t
#define BITS_ABS 0x7fffffffu
#define BITS_INF 0x7f800000u
#include "gru_kernel_body.h" /* undefines the seven again */

/* ------------------------------------------------------------------ double (tests, gradcheck) */
#define REAL double
#define SUFFIX _f64
#define EXP exp
#define GEMM grud_dgemm
#define BITS uint64_t
#define BITS_ABS 0x7fffffffffffffffull
#define BITS_INF 0x7ff0000000000000ull
#include "gru_kernel_body.h" /* undefines the seven again */
