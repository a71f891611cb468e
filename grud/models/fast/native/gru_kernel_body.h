/*
 * Body of gru_kernel.c, included once per REAL type (see there for the equations; BITS is the
 * unsigned integer of REAL's width, BITS_ABS and BITS_INF its sign-less and infinity patterns).
 * Defines grud_any_nonfinite, grud_gru_forward, grud_gru_backward, grud_decay_input_forward and
 * grud_decay_input_backward, each with the type's SUFFIX.
 *
 * Saved factors, each (T, B, H): r, z, n, ghn = W_hn hd + b_hn, hh = h_hat; hd = h_hat * drop
 * only when a dropout mask is given (else hd is hh). The backward writes the per-step
 * pre-activation gradients into dpre (T, B, 4H) laid out [d ghn | d pre_r | d pre_z | d pre_n]:
 * the first three are d(W_hh hd + b_hh) in the row order n, r, z of w_perm, the last three
 * d gi in torch's gate order r, z, n. The caller forms dW_hh and db_hh from them with one
 * matrix multiply over all steps.
 */

#define FN(name) CAT(name, SUFFIX)

static inline REAL FN(grud_sigmoid)(REAL a) { return (REAL)1 / ((REAL)1 + EXP(-a)); }

/* 1 if any of the n values at x is NaN or infinite, else 0: one pass of integer compares on the
 * bit patterns (exponent all ones: infinity if the mantissa is zero, else NaN), so that it
 * vectorises without fast-math. */
int FN(grud_any_nonfinite)(const REAL *x, int64_t n) {
    BITS hit = 0;
    for (int64_t i = 0; i < n; i++) {
        BITS u;
        memcpy(&u, x + i, sizeof u);
        hit |= (u & BITS_ABS) >= BITS_INF;
    }
    return hit != 0;
}

/* One row of a step: the gates from gi + W_hh hd (g, without b_hh), and h' into out. */
static inline void FN(grud_gates)(int64_t H, const REAL *restrict gi, const REAL *restrict g,
                                  const REAL *restrict bias, const REAL *restrict hh, REAL *restrict out,
                                  REAL *restrict r_out, REAL *restrict z_out, REAL *restrict n_out,
                                  REAL *restrict ghn_out) {
    for (int64_t j = 0; j < H; j++) {
        const REAL r = FN(grud_sigmoid)(gi[j] + g[j] + bias[j]);
        const REAL z = FN(grud_sigmoid)(gi[H + j] + g[H + j] + bias[H + j]);
        const REAL ghn = g[2 * H + j] + bias[2 * H + j];
        const REAL n = 2 * FN(grud_sigmoid)(2 * (gi[2 * H + j] + r * ghn)) - 1; /* tanh */
        out[j] = n + z * (hh[j] - n);
        r_out[j] = r;
        z_out[j] = z;
        n_out[j] = n;
        ghn_out[j] = ghn;
    }
}

/* Strides. gi (B, T, 3H) and gamma (B, T, H) are read through (batch, time) element strides with a
 * contiguous last dimension, so a batch-major tensor or a time-major one seen as (B, T, K) both work
 * without a copy. Everything the kernel writes is time-major and contiguous: hs and the saved
 * factors (T, B, H), dpre (T, B, 4H), d_gamma (T, B, H). Per step, the B x H block is then one
 * contiguous piece of memory: with batch-major buffers the rows of a step sit T*K floats apart, and
 * when that is a multiple of 4 KiB (T = 48, H = 64: the hourly grid) every load of a row falsely
 * depends on the stores of the row before (4K aliasing); the step then ran five times slower.
 *
 * Threads. The rows of a batch never interact in the recurrence, so the exported functions split
 * them into blocks, one per thread (OpenMP, at most GRUD_MAX_THREADS, at least 8 rows each), and
 * every block runs the whole time loop with its own single-threaded gemm per step (a 64 x 64 by
 * 64 x 192 product is too small to gain from BLAS threads). */

typedef struct {
    int64_t B, T, H, b0, b1;
    const REAL *gi;
    int64_t gi_sb, gi_st;
    const REAL *w, *bias, *h0, *valid, *gamma;
    int64_t gam_sb, gam_st, gam_exp;
    const REAL *drop;
    REAL *hs, *h_last, *r_s, *z_s, *n_s, *ghn_s, *hh_s, *hd_s;
} FN(grud_fwd_job);

/* The forward on rows [b0, b1). Returns 0, or -2 when out of memory. */
static int FN(grud_gru_forward_rows)(const void *job) {
    const FN(grud_fwd_job) *a = (const FN(grud_fwd_job) *)job;
    const int64_t T = a->T, H = a->H, G3 = 3 * H, BH = a->B * H, b0 = a->b0, nb = a->b1 - a->b0;
    const int save = a->r_s != NULL;
    const REAL one = 1, zero = 0;
    const REAL *gamma = a->gamma, *drop = a->drop, *valid = a->valid, *bias = a->bias;
    REAL *hs = a->hs;
    REAL *g = (REAL *)malloc(sizeof(REAL) * (size_t)(nb * G3 + 2 * nb * H + 4 * H + 1));
    if (!g) return -2;
    REAL *hh_tmp = g + nb * G3, *hd_tmp = hh_tmp + nb * H, *row = hd_tmp + nb * H; /* row: 4H scratch */

    for (int64_t t = 0; t < T; t++) {
        /* this block's rows of step t: time-major blocks start at t * BH + b0 * H, row stride H */
        const REAL *prev_t = t ? hs + (t - 1) * BH + b0 * H : a->h0 + b0 * H;
        REAL *hh_t = save ? a->hh_s + t * BH + b0 * H : hh_tmp;
        REAL *hd_t = drop ? (save ? a->hd_s + t * BH + b0 * H : hd_tmp) : hh_t;
        for (int64_t i = 0; i < nb; i++) { /* h_hat = gamma * h_{t-1}; hd = h_hat * drop */
            const int64_t b = b0 + i;
            const REAL *prev = prev_t + i * H;
            REAL *hhb = hh_t + i * H;
            if (gamma && a->gam_exp) { /* gamma given as its exponent e: gamma = exp(min(e, 0)) */
                const REAL *e = gamma + b * a->gam_sb + t * a->gam_st;
#pragma GCC ivdep
                for (int64_t j = 0; j < H; j++) hhb[j] = prev[j] * EXP(e[j] < 0 ? e[j] : (REAL)0);
            } else if (gamma) {
                const REAL *gam = gamma + b * a->gam_sb + t * a->gam_st;
#pragma GCC ivdep
                for (int64_t j = 0; j < H; j++) hhb[j] = prev[j] * gam[j];
            } else {
                memcpy(hhb, prev, sizeof(REAL) * (size_t)H);
            }
            if (drop) {
                const REAL *d = drop + b * H;
                REAL *hdb = hd_t + i * H;
#pragma GCC ivdep
                for (int64_t j = 0; j < H; j++) hdb[j] = hhb[j] * d[j];
            }
        }
        /* g (nb, 3H) = hd (nb, H) @ w^T: column-major g^T (3H, nb) = w (3H, H) . hd^T (H, nb) */
        GEMM("T", "N", &G3, &nb, &H, &one, a->w, &H, hd_t, &H, &zero, g, &G3);

        for (int64_t i = 0; i < nb; i++) {
            const int64_t b = b0 + i;
            const REAL *gib = a->gi + b * a->gi_sb + t * a->gi_st, *gb = g + i * G3;
            const REAL *prev = prev_t + i * H;
            const REAL *hhb = hh_t + i * H;
            const int64_t o = t * BH + b * H;
            REAL *out = hs + o;
            const REAL v = valid ? valid[b * T + t] : (REAL)1;
            if (v == 0) { /* padded step: the state is carried, nothing else matters */
                memcpy(out, prev, sizeof(REAL) * (size_t)H);
                if (save) {
                    memset(a->r_s + o, 0, sizeof(REAL) * (size_t)H);
                    memset(a->z_s + o, 0, sizeof(REAL) * (size_t)H);
                    memset(a->n_s + o, 0, sizeof(REAL) * (size_t)H);
                    memset(a->ghn_s + o, 0, sizeof(REAL) * (size_t)H);
                }
                continue;
            }
            REAL *rb = save ? a->r_s + o : row, *zb = save ? a->z_s + o : row + H;
            REAL *nbuf = save ? a->n_s + o : row + 2 * H, *ghb = save ? a->ghn_s + o : row + 3 * H;
            FN(grud_gates)(H, gib, gb, bias, hhb, out, rb, zb, nbuf, ghb);
            if (v != 1) { /* a fractional step weight (0 < v < 1): blend with the carried state */
                for (int64_t j = 0; j < H; j++) out[j] = prev[j] + v * (out[j] - prev[j]);
            }
        }
    }
    memcpy(a->h_last + b0 * H, T ? hs + (T - 1) * BH + b0 * H : a->h0 + b0 * H, sizeof(REAL) * (size_t)(nb * H));
    free(g);
    return 0;
}

/* Returns 0, -1 without BLAS, -2 when out of memory. Pass r_s == NULL for inference: nothing is
 * saved, and z_s, n_s, ghn_s, hh_s, hd_s are ignored. valid (B, T), gamma and drop (B, H) may be
 * NULL (all steps valid, no hidden decay, no dropout). gam_exp != 0: gamma holds the decay's
 * exponent e (gamma = exp(min(e, 0)), GRU-D's exp(-relu(W delta + b)) with e = -(W delta + b)),
 * applied on the fly. threads: how many to use at most. */
int FN(grud_gru_forward)(int64_t B, int64_t T, int64_t H, const REAL *gi, int64_t gi_sb, int64_t gi_st,
                         const REAL *w, const REAL *bias, const REAL *h0, const REAL *valid, const REAL *gamma,
                         int64_t gam_sb, int64_t gam_st, int64_t gam_exp, const REAL *drop, REAL *hs, REAL *h_last,
                         REAL *r_s, REAL *z_s, REAL *n_s, REAL *ghn_s, REAL *hh_s, REAL *hd_s, int64_t threads) {
    if (!GEMM) return -1;
    FN(grud_fwd_job) jobs[GRUD_MAX_THREADS];
    const int nt = grud_thread_count(threads, B);
    for (int k = 0; k < nt; k++) {
        FN(grud_fwd_job) j = {B, T, H, B * k / nt, B * (k + 1) / nt, gi, gi_sb, gi_st, w, bias, h0, valid, gamma,
                              gam_sb, gam_st, gam_exp, drop, hs, h_last, r_s, z_s, n_s, ghn_s, hh_s, hd_s};
        jobs[k] = j;
    }
    return grud_run_jobs(nt, jobs, sizeof jobs[0], FN(grud_gru_forward_rows));
}

typedef struct {
    int64_t B, T, H, b0, b1;
    const REAL *w_perm, *h0, *hs, *valid, *gamma;
    int64_t gam_sb, gam_st, gam_exp;
    const REAL *drop, *r_s, *z_s, *n_s, *ghn_s, *hh_s, *d_out;
    int64_t do_sb, do_st;
    const REAL *d_hlast;
    REAL *dpre, *d_gamma, *d_drop, *d_h0;
} FN(grud_bwd_job);

/* The backward on rows [b0, b1). Returns 0, or -2 when out of memory. */
static int FN(grud_gru_backward_rows)(const void *job) {
    const FN(grud_bwd_job) *a = (const FN(grud_bwd_job) *)job;
    const int64_t T = a->T, H = a->H, G3 = 3 * H, G4 = 4 * H, BH = a->B * H, b0 = a->b0, nb = a->b1 - a->b0;
    const int64_t BG4 = a->B * G4;
    const REAL one = 1, zero = 0;
    const REAL *valid = a->valid, *gamma = a->gamma, *drop = a->drop, *d_out = a->d_out, *hs = a->hs;
    const int gexp = gamma && a->gam_exp;
    REAL *dh = (REAL *)malloc(sizeof(REAL) * (size_t)(2 * nb * H + 1));
    if (!dh) return -2;
    REAL *dhd = dh + nb * H;

    for (int64_t i = 0; i < nb; i++) { /* dL/dh_{T-1} */
        const int64_t b = b0 + i;
        const REAL v = (valid && T) ? valid[b * T + T - 1] : (REAL)1;
        const REAL *dob = (d_out && T) ? d_out + b * a->do_sb + (T - 1) * a->do_st : NULL;
        for (int64_t j = 0; j < H; j++) {
            REAL d = a->d_hlast ? a->d_hlast[b * H + j] : 0;
            if (dob) d += dob[j] * v;
            dh[i * H + j] = d;
        }
    }
    if (a->d_drop) memset(a->d_drop + b0 * H, 0, sizeof(REAL) * (size_t)(nb * H));

    for (int64_t t = T - 1; t >= 0; t--) {
        REAL *dp_t = a->dpre + t * BG4 + b0 * G4;
        for (int64_t i = 0; i < nb; i++) { /* gate pre-activation gradients */
            const int64_t b = b0 + i;
            const REAL v = valid ? valid[b * T + t] : (REAL)1;
            const int64_t o = t * BH + b * H;
            const REAL *r = a->r_s + o, *z = a->z_s + o, *n = a->n_s + o, *gh = a->ghn_s + o, *hh = a->hh_s + o;
            const REAL *dhb = dh + i * H;
            REAL *dp = dp_t + i * G4;
#pragma GCC ivdep
            for (int64_t j = 0; j < H; j++) {
                const REAL dhp = dhb[j] * v; /* dL/dh' */
                const REAL zj = z[j], nj = n[j], rj = r[j];
                const REAL dn = dhp * (1 - zj) * (1 - nj * nj);
                dp[j] = dn * rj;                                    /* d ghn */
                dp[H + j] = dn * gh[j] * rj * (1 - rj);             /* d pre_r */
                dp[2 * H + j] = dhp * (hh[j] - nj) * zj * (1 - zj); /* d pre_z */
                dp[3 * H + j] = dn;                                 /* d pre_n */
            }
        }
        /* dhd (nb, H) = dG (nb, 3H) @ w_perm (3H, H): column-major dhd^T = w_perm^T . dG^T */
        GEMM("N", "N", &H, &nb, &G3, &one, a->w_perm, &H, dp_t, &G4, &zero, dhd, &H);

        for (int64_t i = 0; i < nb; i++) {
            const int64_t b = b0 + i;
            const REAL v = valid ? valid[b * T + t] : (REAL)1;
            const REAL v_prev = (valid && t) ? valid[b * T + t - 1] : (REAL)1;
            const int64_t o = t * BH + b * H;
            const REAL *z = a->z_s + o, *hh = a->hh_s + o;
            const REAL *prev = t ? hs + o - BH : a->h0 + b * H;
            const REAL *gam = gamma ? gamma + b * a->gam_sb + t * a->gam_st : NULL;
            const REAL *dnext = (d_out && t) ? d_out + b * a->do_sb + (t - 1) * a->do_st : NULL;
            const REAL *dr = drop ? drop + b * H : NULL;
            REAL *ddr = a->d_drop ? a->d_drop + b * H : NULL;
            REAL *dg = a->d_gamma ? a->d_gamma + o : NULL;
            REAL *dhb = dh + i * H;
            const REAL *dhdb = dhd + i * H;
            if (gexp) { /* gamma = exp(min(e, 0)) from its exponent e; d e passes where e <= 0 */
#pragma GCC ivdep
                for (int64_t j = 0; j < H; j++) {
                    const REAL dhdv = dhdb[j];
                    if (ddr) ddr[j] += dhdv * hh[j];
                    const REAL dhh = (dr ? dhdv * dr[j] : dhdv) + dhb[j] * v * z[j]; /* dL/d h_hat */
                    const REAL e = gam[j];
                    const REAL gv = EXP(e < 0 ? e : (REAL)0);
                    if (dg) dg[j] = e <= 0 ? dhh * prev[j] * gv : (REAL)0;
                    REAL d = dhh * gv;
                    if (v != 1) d += (1 - v) * dhb[j];
                    if (dnext) d += dnext[j] * v_prev;
                    dhb[j] = d;
                }
                continue;
            }
#pragma GCC ivdep
            for (int64_t j = 0; j < H; j++) {
                const REAL dhdv = dhdb[j];
                if (ddr) ddr[j] += dhdv * hh[j];
                const REAL dhh = (dr ? dhdv * dr[j] : dhdv) + dhb[j] * v * z[j]; /* dL/d h_hat */
                if (dg) dg[j] = dhh * prev[j];
                REAL d = gam ? dhh * gam[j] : dhh;
                if (v != 1) d += (1 - v) * dhb[j];
                if (dnext) d += dnext[j] * v_prev;
                dhb[j] = d;
            }
        }
    }
    memcpy(a->d_h0 + b0 * H, dh, sizeof(REAL) * (size_t)(nb * H));
    free(dh);
    return 0;
}

/* Backward through time. d_out is the gradient of outputs = hs * valid, read through (batch, time)
 * strides like gi (or NULL); d_hlast (B, H) that of the last state (or NULL). Writes dpre
 * (T, B, 4H), d_h0 (B, H), and when not NULL d_gamma (T, B, H: the gradient of gamma, or with
 * gam_exp that of its exponent, passed where e <= 0 as torch's clamp does) and d_drop (B, H).
 * Returns 0, -1 without BLAS, -2 when out of memory. threads: how many to use at most. */
int FN(grud_gru_backward)(int64_t B, int64_t T, int64_t H, const REAL *w_perm, const REAL *h0, const REAL *hs,
                          const REAL *valid, const REAL *gamma, int64_t gam_sb, int64_t gam_st, int64_t gam_exp,
                          const REAL *drop,
                          const REAL *r_s, const REAL *z_s, const REAL *n_s, const REAL *ghn_s, const REAL *hh_s,
                          const REAL *d_out, int64_t do_sb, int64_t do_st, const REAL *d_hlast, REAL *dpre,
                          REAL *d_gamma, REAL *d_drop, REAL *d_h0, int64_t threads) {
    if (!GEMM) return -1;
    FN(grud_bwd_job) jobs[GRUD_MAX_THREADS];
    const int nt = grud_thread_count(threads, B);
    for (int k = 0; k < nt; k++) {
        FN(grud_bwd_job) j = {B, T, H, B * k / nt, B * (k + 1) / nt, w_perm, h0, hs, valid, gamma, gam_sb, gam_st,
                              gam_exp, drop, r_s, z_s, n_s, ghn_s, hh_s, d_out, do_sb, do_st, d_hlast, dpre, d_gamma, d_drop,
                              d_h0};
        jobs[k] = j;
    }
    return grud_run_jobs(nt, jobs, sizeof jobs[0], FN(grud_gru_backward_rows));
}

#undef FN

#define FN(name) CAT(name, SUFFIX)

/* GRU-D input decay (Che et al. 2018, eq. 3 and the definition of gamma in eq. 1), fused with the
 * forward fill it needs:
 *
 *     gamma_x = exp(min(-(w delta + b), 0))        = exp(-relu(w delta + b))
 *     x_hat   = m x + (1 - m) (gamma_x x_last + (1 - gamma_x) x_mean)
 *             = base + gamma_x gap,   base = m x + (1 - m) x_mean,   gap = (1 - m)(x_last - x_mean)
 *
 * x_last is the latest observation at a step < t (x_mean before the first one), carried along
 * the time loop instead of computed by a separate scan. values, mask, delta (B, T, F) are read
 * through (batch, time) strides with a contiguous last dimension; out (B, T, F) is contiguous.
 * "Observed" means mask != 0. */
int FN(grud_decay_input_forward)(int64_t B, int64_t T, int64_t F, const REAL *values, const REAL *mask,
                                 const REAL *delta, int64_t sb, int64_t st, const REAL *x_mean, const REAL *w,
                                 const REAL *bias, REAL *out, int64_t threads) {
    const int nt = grud_row_threads(threads, B);
    REAL *buf = (REAL *)malloc(sizeof(REAL) * (size_t)(nt * F + 1)); /* each thread's last observations */
    if (!buf) return -2;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
#endif
    for (int64_t b = 0; b < B; b++) {
        REAL *last = buf + GRUD_THREAD_ID * F;
        memcpy(last, x_mean, sizeof(REAL) * (size_t)F);
        for (int64_t t = 0; t < T; t++) {
            const int64_t i = b * sb + t * st;
            const REAL *x = values + i, *m = mask + i, *d = delta + i;
            REAL *o = out + (b * T + t) * F;
#pragma GCC ivdep
            for (int64_t f = 0; f < F; f++) {
                const REAL a = -(w[f] * d[f] + bias[f]);
                const REAL gam = EXP(a < 0 ? a : (REAL)0);
                const int obs = m[f] != 0;
                const REAL base = obs ? x[f] : x_mean[f];
                const REAL gap = obs ? (REAL)0 : last[f] - x_mean[f];
                o[f] = base + gam * gap;
                last[f] = obs ? x[f] : last[f];
            }
        }
    }
    free(buf);
    return 0;
}

/* Gradients of the decay parameters from d_out = dL/d x_hat (B, T, F, strides do_sb, do_st):
 * dL/da = -dL/dgamma * gamma where w delta + b >= 0 (the subgradient torch's clamp gives), else 0;
 * d_w = sum dL/da * delta, d_b = sum dL/da over all (b, t): per series in REAL, over series in
 * double (each thread its own totals, added up in thread order at the end). */
int FN(grud_decay_input_backward)(int64_t B, int64_t T, int64_t F, const REAL *values, const REAL *mask,
                                  const REAL *delta, int64_t sb, int64_t st, const REAL *x_mean, const REAL *w,
                                  const REAL *bias, const REAL *d_out, int64_t do_sb, int64_t do_st, REAL *d_w,
                                  REAL *d_b, int64_t threads) {
    const int nt = grud_row_threads(threads, B);
    REAL *buf = (REAL *)malloc(sizeof(REAL) * (size_t)(nt * 3 * F + 1));
    double *acc = (double *)calloc((size_t)(nt * 2 * F + 1), sizeof(double));
    if (!buf || !acc) {
        free(buf);
        free(acc);
        return -2;
    }
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
#endif
    for (int64_t b = 0; b < B; b++) {
        const int k = GRUD_THREAD_ID;
        REAL *last = buf + k * 3 * F, *pw = last + F, *pb = pw + F; /* one series' sums, then the totals */
        double *aw = acc + k * 2 * F, *ab = aw + F;
        memcpy(last, x_mean, sizeof(REAL) * (size_t)F);
        memset(pw, 0, sizeof(REAL) * (size_t)(2 * F));
        for (int64_t t = 0; t < T; t++) {
            const int64_t i = b * sb + t * st;
            const REAL *x = values + i, *m = mask + i, *d = delta + i, *g = d_out + b * do_sb + t * do_st;
#pragma GCC ivdep
            for (int64_t f = 0; f < F; f++) {
                const REAL a = -(w[f] * d[f] + bias[f]);
                const int obs = m[f] != 0;
                const REAL gap = obs ? (REAL)0 : last[f] - x_mean[f];
                const REAL e = EXP(a < 0 ? a : (REAL)0);
                const REAL da = a <= 0 ? -g[f] * gap * e : (REAL)0;
                pw[f] += da * d[f];
                pb[f] += da;
                last[f] = obs ? x[f] : last[f];
            }
        }
        for (int64_t f = 0; f < F; f++) {
            aw[f] += (double)pw[f];
            ab[f] += (double)pb[f];
        }
    }
    for (int64_t f = 0; f < F; f++) {
        double sw = 0, sbias = 0;
        for (int k = 0; k < nt; k++) {
            sw += acc[k * 2 * F + f];
            sbias += acc[k * 2 * F + F + f];
        }
        d_w[f] = (REAL)sw;
        d_b[f] = (REAL)sbias;
    }
    free(buf);
    free(acc);
    return 0;
}

#undef FN

/* the per-type parameters of this body (see gru_kernel.c) */
#undef REAL
#undef SUFFIX
#undef EXP
#undef GEMM
#undef BITS
#undef BITS_ABS
#undef BITS_INF
