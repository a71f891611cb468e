/*
 * Body of gru_kernel.c, included once per REAL type (see there for the equations). Defines
 * grud_gru_forward<SUFFIX> and grud_gru_backward<SUFFIX>.
 *
 * Saved factors, each (B, T, H): r, z, n, ghn = W_hn hd + b_hn, hh = h_hat; hd = h_hat * drop
 * only when a dropout mask is given (else hd is hh). The backward writes the per-step
 * pre-activation gradients into dpre (B, T, 4H) laid out [d ghn | d pre_r | d pre_z | d pre_n]:
 * the first three are d(W_hh hd + b_hh) in the row order n, r, z of w_perm, the last three
 * d gi in torch's gate order r, z, n. The caller forms dW_hh and db_hh from them with one
 * matrix multiply over all steps.
 */
#include <stdlib.h>

#define FN(name) CAT(name, SUFFIX)

static inline REAL FN(grud_sigmoid)(REAL a) { return (REAL)1 / ((REAL)1 + EXP(-a)); }

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

/* Returns 0, -1 without BLAS, -2 when out of memory. Pass r_s == NULL for inference: nothing is
 * saved, and hh_s, hd_s, z_s, n_s, ghn_s are ignored. valid, gamma and drop may be NULL (all
 * steps valid, no hidden decay, no dropout). */
int FN(grud_gru_forward)(int64_t B, int64_t T, int64_t H, const REAL *gi, const REAL *w, const REAL *bias,
                         const REAL *h0, const REAL *valid, const REAL *gamma, const REAL *drop, REAL *hs,
                         REAL *h_last, REAL *r_s, REAL *z_s, REAL *n_s, REAL *ghn_s, REAL *hh_s, REAL *hd_s) {
    if (!GEMM) return -1;
    const int save = r_s != NULL;
    const int64_t G3 = 3 * H, TH = T * H, TG3 = T * 3 * H;
    const REAL one = 1, zero = 0;
    REAL *g = (REAL *)malloc(sizeof(REAL) * (size_t)(B * G3 + 6 * H * (B + 1)));
    if (!g) return -2;
    REAL *hh_tmp = g + B * G3, *hd_tmp = hh_tmp + B * H, *row = hd_tmp + B * H; /* row: 4H scratch */

    for (int64_t t = 0; t < T; t++) {
        REAL *hh_t = save ? hh_s + t * H : hh_tmp;
        const int64_t ld_hh = save ? TH : H;
        REAL *hd_t = drop ? (save ? hd_s + t * H : hd_tmp) : hh_t;
        const int64_t ld_hd = drop ? ld_hh : ld_hh;

        for (int64_t b = 0; b < B; b++) { /* h_hat = gamma * h_{t-1}; hd = h_hat * drop */
            const REAL *prev = t ? hs + b * TH + (t - 1) * H : h0 + b * H;
            REAL *hhb = hh_t + b * ld_hh;
            if (gamma) {
                const REAL *gam = gamma + b * TH + t * H;
#pragma GCC ivdep
                for (int64_t j = 0; j < H; j++) hhb[j] = prev[j] * gam[j];
            } else {
                memcpy(hhb, prev, sizeof(REAL) * (size_t)H);
            }
            if (drop) {
                const REAL *d = drop + b * H;
                REAL *hdb = hd_t + b * ld_hd;
#pragma GCC ivdep
                for (int64_t j = 0; j < H; j++) hdb[j] = hhb[j] * d[j];
            }
        }
        /* g (B, 3H) = hd (B, H) @ w^T: column-major g^T (3H, B) = w (3H, H) . hd^T (H, B) */
        GEMM("T", "N", &G3, &B, &H, &one, w, &H, hd_t, &ld_hd, &zero, g, &G3);

        for (int64_t b = 0; b < B; b++) {
            const REAL *gib = gi + b * TG3 + t * G3, *gb = g + b * G3;
            const REAL *prev = t ? hs + b * TH + (t - 1) * H : h0 + b * H;
            const REAL *hhb = hh_t + b * ld_hh;
            REAL *out = hs + b * TH + t * H;
            const REAL v = valid ? valid[b * T + t] : (REAL)1;
            const int64_t o = b * TH + t * H;
            if (v == 0) { /* padded step: the state is carried, nothing else matters */
                memcpy(out, prev, sizeof(REAL) * (size_t)H);
                if (save) {
                    memset(r_s + o, 0, sizeof(REAL) * (size_t)H);
                    memset(z_s + o, 0, sizeof(REAL) * (size_t)H);
                    memset(n_s + o, 0, sizeof(REAL) * (size_t)H);
                    memset(ghn_s + o, 0, sizeof(REAL) * (size_t)H);
                }
                continue;
            }
            REAL *rb = save ? r_s + o : row, *zb = save ? z_s + o : row + H;
            REAL *nb = save ? n_s + o : row + 2 * H, *ghb = save ? ghn_s + o : row + 3 * H;
            FN(grud_gates)(H, gib, gb, bias, hhb, out, rb, zb, nb, ghb);
            if (v != 1) { /* a fractional step weight (0 < v < 1): blend with the carried state */
                for (int64_t j = 0; j < H; j++) out[j] = prev[j] + v * (out[j] - prev[j]);
            }
        }
    }
    for (int64_t b = 0; b < B; b++)
        memcpy(h_last + b * H, T ? hs + b * TH + (T - 1) * H : h0 + b * H, sizeof(REAL) * (size_t)H);
    free(g);
    return 0;
}

/* Backward through time. d_out (B, T, H) is the gradient of outputs = hs * valid (or NULL),
 * d_hlast (B, H) that of the last state (or NULL). Writes dpre (B, T, 4H), d_h0 (B, H), and
 * when not NULL d_gamma (B, T, H) and d_drop (B, H). Returns 0, -1 without BLAS, -2 when out of
 * memory. */
int FN(grud_gru_backward)(int64_t B, int64_t T, int64_t H, const REAL *w_perm, const REAL *h0, const REAL *hs,
                          const REAL *valid, const REAL *gamma, const REAL *drop, const REAL *r_s,
                          const REAL *z_s, const REAL *n_s, const REAL *ghn_s, const REAL *hh_s,
                          const REAL *d_out, const REAL *d_hlast, REAL *dpre, REAL *d_gamma, REAL *d_drop,
                          REAL *d_h0) {
    if (!GEMM) return -1;
    const int64_t G3 = 3 * H, G4 = 4 * H, TH = T * H, TG4 = T * 4 * H;
    const REAL one = 1, zero = 0;
    REAL *dh = (REAL *)malloc(sizeof(REAL) * (size_t)(2 * B * H + 1));
    if (!dh) return -2;
    REAL *dhd = dh + B * H;

    for (int64_t b = 0; b < B; b++) { /* dL/dh_{T-1} */
        const REAL v = (valid && T) ? valid[b * T + T - 1] : (REAL)1;
        for (int64_t j = 0; j < H; j++) {
            REAL d = d_hlast ? d_hlast[b * H + j] : 0;
            if (d_out && T) d += d_out[b * TH + (T - 1) * H + j] * v;
            dh[b * H + j] = d;
        }
    }
    if (d_drop) memset(d_drop, 0, sizeof(REAL) * (size_t)(B * H));

    for (int64_t t = T - 1; t >= 0; t--) {
        for (int64_t b = 0; b < B; b++) { /* gate pre-activation gradients */
            const REAL v = valid ? valid[b * T + t] : (REAL)1;
            const int64_t o = b * TH + t * H;
            const REAL *r = r_s + o, *z = z_s + o, *n = n_s + o, *gh = ghn_s + o, *hh = hh_s + o;
            const REAL *dhb = dh + b * H;
            REAL *dp = dpre + b * TG4 + t * G4;
#pragma GCC ivdep
            for (int64_t j = 0; j < H; j++) {
                const REAL dhp = dhb[j] * v; /* dL/dh' */
                const REAL zj = z[j], nj = n[j], rj = r[j];
                const REAL dn = dhp * (1 - zj) * (1 - nj * nj);
                dp[j] = dn * rj;                                  /* d ghn */
                dp[H + j] = dn * gh[j] * rj * (1 - rj);           /* d pre_r */
                dp[2 * H + j] = dhp * (hh[j] - nj) * zj * (1 - zj); /* d pre_z */
                dp[3 * H + j] = dn;                               /* d pre_n */
            }
        }
        /* dhd (B, H) = dG (B, 3H) @ w_perm (3H, H): column-major dhd^T = w_perm^T . dG^T */
        GEMM("N", "N", &H, &B, &G3, &one, w_perm, &H, dpre + t * G4, &TG4, &zero, dhd, &H);

        for (int64_t b = 0; b < B; b++) {
            const REAL v = valid ? valid[b * T + t] : (REAL)1;
            const REAL v_prev = (valid && t) ? valid[b * T + t - 1] : (REAL)1;
            const int64_t o = b * TH + t * H;
            const REAL *z = z_s + o, *hh = hh_s + o;
            const REAL *prev = t ? hs + b * TH + (t - 1) * H : h0 + b * H;
            const REAL *gam = gamma ? gamma + o : NULL;
            const REAL *dnext = (d_out && t) ? d_out + b * TH + (t - 1) * H : NULL;
            const REAL *dr = drop ? drop + b * H : NULL;
            REAL *ddr = d_drop ? d_drop + b * H : NULL;
            REAL *dg = d_gamma ? d_gamma + o : NULL;
            REAL *dhb = dh + b * H;
            const REAL *dhdb = dhd + b * H;
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
    memcpy(d_h0, dh, sizeof(REAL) * (size_t)(B * H));
    free(dh);
    return 0;
}

#undef FN
