/* DrugBAN screening on CPU: each drug's v_net rows, Gram matrix and contraction with every target, fused.

   For a drug with GCN rows E [A, C], v_net gives X = relu(E W^T + b) [A, K]; with a target's Gram
   matrix Gq [K, K] and the heads' summed weights H [K] (screen.py),
   fusion[k] = sum_j (X^T X)[k, j] * Gq[k, j] * H[j]. X is computed straight into the panel layout
   the Gram tiles read (its column sums on the way), so the drug side never exists as an
   [atoms, K] tensor in memory. Both Gram matrices are symmetric, so only tiles on and above the
   diagonal are computed: strips of MR rows, tiles of MR x NR in registers, the NR-wide tile
   holding the strip's diagonal computed whole. Each tile is contracted at once against every
   target, with D = tile ⊙ Gq-tile: its rows (sum over the lanes of D * H[j], kept per strip,
   summed at the strip's end) and, off the diagonal, its columns (sum over rows of D * H[k],
   lanes over the output j). Nothing of size K x K per drug is ever written to memory. Drugs go
   in groups of GROUP so a tile of target terms is read once per group; groups are spread over
   OpenMP threads. Compiled at first use with the machine's C compiler (see native.py); GCC/Clang
   vector extensions. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NV 16
#define MR 8
#define NR (2 * NV)
#define GROUP 8

typedef float vf __attribute__((vector_size(NV * 4)));
typedef int32_t vi __attribute__((vector_size(NV * 4)));

static inline vf vload(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
static inline void vstore(float *p, vf v) { memcpy(p, &v, sizeof v); }
static inline float vsum(vf v) { float s = 0; for (int i = 0; i < NV; i++) s += v[i]; return s; }

static inline vf relu(vf x) { return (vf)((vi)x & (x > (vf){0})); }

/* One drug's v_net rows X = relu(E W^T + b) in panel layout, P[(j / NR) * A * NR + a * NR + j % NR],
   and their column sums. E [A, C]; WP [K/NR][C + 1][NR]: W^T by panels of NR columns, the bias
   as row C; ET: scratch for E by blocks of MR rows, transposed and zero-padded [A/MR][C][MR]. */
static void vnet(const float *E, int64_t A, int64_t C, const float *WP, int64_t K, float *P, float *sum, float *ET) {
    const int64_t blocks = (A + MR - 1) / MR;
    for (int64_t b = 0; b < blocks; b++)
        for (int64_t c = 0; c < C; c++)
            for (int r = 0; r < MR; r++) ET[(b * C + c) * MR + r] = b * MR + r < A ? E[(b * MR + r) * C + c] : 0.0f;
    for (int64_t p = 0; p < K / NR; p++) {
        const float *w = WP + p * (C + 1) * NR;
        vf s0 = (vf){0}, s1 = (vf){0};
        for (int64_t b = 0; b < blocks; b++) {
            vf c0[MR], c1[MR];
            for (int r = 0; r < MR; r++) { c0[r] = vload(w + C * NR); c1[r] = vload(w + C * NR + NV); }
            const float *et = ET + b * C * MR;
            for (int64_t c = 0; c < C; c++) {
                vf x0 = vload(w + c * NR), x1 = vload(w + c * NR + NV);
                for (int r = 0; r < MR; r++) {
                    c0[r] += et[c * MR + r] * x0;
                    c1[r] += et[c * MR + r] * x1;
                }
            }
            const int64_t rows = A - b * MR < MR ? A - b * MR : MR;
            for (int64_t r = 0; r < rows; r++) {
                vf y0 = relu(c0[r]), y1 = relu(c1[r]);
                vstore(P + (p * A + b * MR + r) * NR, y0);
                vstore(P + (p * A + b * MR + r) * NR + NV, y1);
                s0 += y0;
                s1 += y1;
            }
        }
        vstore(sum + p * NR, s0);
        vstore(sum + p * NR + NV, s1);
    }
}

static void group(const float *E, const int64_t *offsets, int64_t g, int64_t C, const float *WP, int64_t K,
                  const float *QP, const float *Hd, int64_t T, float *out, float *sums, float *panels, float *ET,
                  vf *rowacc) {
    float *P[GROUP];
    int64_t A[GROUP];
    float *pp = panels;
    for (int64_t i = 0; i < g; i++) {
        A[i] = offsets[i + 1] - offsets[i];
        P[i] = pp;
        vnet(E + offsets[i] * C, A[i], C, WP, K, pp, sums + i * K, ET);
        pp += A[i] * K;
    }
    for (int64_t k0 = 0; k0 < K; k0 += MR) {
        memset(rowacc, 0, sizeof(vf) * g * T * MR);
        const int64_t first = k0 / NR * NR;  /* the tile holding the strip's diagonal: computed whole, row part only */
        for (int64_t j0 = first; j0 < K; j0 += NR) {
            const int diag = j0 == first;
            const float *qs = QP + ((k0 / MR) * (K / NR) + j0 / NR) * T * MR * NR;
            const vf h0 = vload(Hd + j0), h1 = vload(Hd + j0 + NV);
            for (int64_t i = 0; i < g; i++) {
                const int64_t Ai = A[i];
                const float *pk = P[i] + (k0 / NR) * Ai * NR + k0 % NR;
                const float *pj = P[i] + (j0 / NR) * Ai * NR;
                vf c0[MR], c1[MR];
                for (int r = 0; r < MR; r++) { c0[r] = (vf){0}; c1[r] = (vf){0}; }
                for (int64_t a = 0; a < Ai; a++) {
                    vf x0 = vload(pj + a * NR), x1 = vload(pj + a * NR + NV);
                    const float *s = pk + a * NR;
                    for (int r = 0; r < MR; r++) {
                        c0[r] += s[r] * x0;
                        c1[r] += s[r] * x1;
                    }
                }
                float *o = out + i * T * K + j0;
                vf *ra = rowacc + i * T * MR;
                const float *q = qs;
                for (int64_t t = 0; t < T; t++, ra += MR, q += MR * NR, o += K) {
                    if (diag) {
                        for (int r = 0; r < MR; r++) {
                            ra[r] += c0[r] * vload(q + r * NR) * h0;
                            ra[r] += c1[r] * vload(q + r * NR + NV) * h1;
                        }
                        continue;
                    }
                    vf s0[2] = {(vf){0}, (vf){0}}, s1[2] = {(vf){0}, (vf){0}};  /* two chains each: FMA latency */
                    for (int r = 0; r < MR; r++) {
                        vf d0 = c0[r] * vload(q + r * NR), d1 = c1[r] * vload(q + r * NR + NV);
                        ra[r] += d0 * h0;
                        ra[r] += d1 * h1;
                        s0[r & 1] += d0 * Hd[k0 + r];
                        s1[r & 1] += d1 * Hd[k0 + r];
                    }
                    vstore(o, vload(o) + s0[0] + s0[1]);
                    vstore(o + NV, vload(o + NV) + s1[0] + s1[1]);
                }
            }
        }
        for (int64_t i = 0; i < g; i++)
            for (int64_t t = 0; t < T; t++)
                for (int r = 0; r < MR; r++) out[(i * T + t) * K + k0 + r] += vsum(rowacc[(i * T + t) * MR + r]);
    }
}

/* E: every drug's GCN rows [sum A_d, C]; offsets [n+1]; WP: packed v_net weights (native.py's
   pack_vnet) [K/NR][C + 1][NR]; QP: each target's Gram matrix Gq by tiles (pack_targets)
   [K/MR][K/NR][T][MR][NR], of which the tiles on and above the diagonal are read; Hd: the heads'
   summed weights H [K]; out [n, T, K] and sums [n, K], each drug's v_net row sum (overwritten). */
int drugban_fusion(const float *E, const int64_t *offsets, int64_t n, int64_t C, const float *WP, int64_t K,
                   const float *QP, const float *Hd, int64_t T, float *out, float *sums, int threads) {
    if (K % NR) return 1;
    int64_t max_rows = 0;
    for (int64_t d = 0; d < n; d++) if (offsets[d + 1] - offsets[d] > max_rows) max_rows = offsets[d + 1] - offsets[d];
    memset(out, 0, sizeof(float) * n * T * K);
    int failed = 0;
    #pragma omp parallel num_threads(threads)
    {
        vf *rowacc = aligned_alloc(64, sizeof(vf) * GROUP * T * MR);
        float *panels = malloc(sizeof(float) * GROUP * max_rows * K);
        float *ET = malloc(sizeof(float) * (max_rows + MR) * C);
        if (!rowacc || !panels || !ET) {
            #pragma omp atomic write
            failed = 1;
        } else {
            #pragma omp for schedule(dynamic, 1)
            for (int64_t d = 0; d < n; d += GROUP) {
                int64_t g = n - d < GROUP ? n - d : GROUP;
                group(E, offsets + d, g, C, WP, K, QP, Hd, T, out + d * T * K, sums + d * K, panels, ET, rowacc);
            }
        }
        free(rowacc);
        free(panels);
        free(ET);
    }
    return failed ? 2 : 0;
}
