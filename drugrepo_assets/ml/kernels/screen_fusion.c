/* DrugBAN screening on CPU: each drug's Gram matrix contracted with every target's terms, fused.

   For a drug with v_net rows X [A, K] and a target with terms Gqh = Gq ⊙ H [K, K] (screen.py),
   fusion[k] = sum_j (X^T X)[k, j] * Gqh[k, j]. The Gram matrix is symmetric, so only its upper
   block triangle is computed (blocks of BS), one MR x NR tile at a time in registers; each tile is
   contracted at once against every target: with Gqh for its rows (lanes over j, summed at the end
   of the block row) and, off the diagonal, with Gqh^T for its columns (lanes over the output j).
   Nothing of size K x K per drug is ever written to memory: torch's batched-matmul form spends
   most of its time writing and re-reading those matrices. Drugs go in groups of GROUP so a
   tile of target terms is read once per group; groups are spread over OpenMP threads.
   Compiled at first use with the machine's C compiler (see native.py); GCC/Clang vector extensions. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NV 16
#define MR 8
#define NR (2 * NV)
#define BS 96
#define GROUP 8

typedef float vf __attribute__((vector_size(NV * 4)));

static inline vf vload(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
static inline void vstore(float *p, vf v) { memcpy(p, &v, sizeof v); }
static inline float vsum(vf v) { float s = 0; for (int i = 0; i < NV; i++) s += v[i]; return s; }

/* Panel layout of one drug's rows X [A, K]: P[(j / NR) * A * NR + a * NR + j % NR]. */
static void pack(const float *X, int64_t A, int64_t K, float *P) {
    for (int64_t p = 0; p < K / NR; p++)
        for (int64_t a = 0; a < A; a++) memcpy(P + (p * A + a) * NR, X + a * K + p * NR, NR * sizeof(float));
}

static void group(const float *X, const int64_t *offsets, int64_t g, int64_t K, const float *QP,
                  int64_t T, float *out, float *sums, float *panels, vf *rowacc) {
    float *P[GROUP];
    int64_t A[GROUP];
    float *pp = panels;
    for (int64_t i = 0; i < g; i++) {
        A[i] = offsets[i + 1] - offsets[i];
        P[i] = pp;
        pack(X + offsets[i] * K, A[i], K, pp);
        pp += A[i] * K;
        float *sum = sums + i * K;
        for (int64_t j = 0; j < K; j += NV) {
            vf acc = (vf){0};
            for (int64_t a = 0; a < A[i]; a++) acc += vload(X + (offsets[i] + a) * K + j);
            vstore(sum + j, acc);
        }
    }
    for (int64_t kb = 0; kb < K; kb += BS) {
        memset(rowacc, 0, sizeof(vf) * g * T * BS);
        for (int64_t jb = kb; jb < K; jb += BS) {
            const int diag = jb == kb;
            for (int64_t k0 = kb; k0 < kb + BS; k0 += MR) {
                for (int64_t j0 = jb; j0 < jb + BS; j0 += NR) {
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
                        float *o = out + i * T * K;
                        vf *ra = rowacc + i * T * BS + (k0 - kb);
                        const float *q = QP + ((k0 / MR) * (K / NR) + j0 / NR) * T * 2 * MR * NR;
                        for (int64_t t = 0; t < T; t++, ra += BS, q += 2 * MR * NR) {
                            for (int r = 0; r < MR; r++) ra[r] += c0[r] * vload(q + r * NR) + c1[r] * vload(q + r * NR + NV);
                            if (!diag) {
                                const float *qt = q + MR * NR;
                                vf s0 = (vf){0}, s1 = (vf){0};
                                for (int r = 0; r < MR; r++) {
                                    s0 += c0[r] * vload(qt + r * NR);
                                    s1 += c1[r] * vload(qt + r * NR + NV);
                                }
                                float *ot = o + t * K + j0;
                                vstore(ot, vload(ot) + s0);
                                vstore(ot + NV, vload(ot + NV) + s1);
                            }
                        }
                    }
                }
            }
        }
        for (int64_t i = 0; i < g; i++)
            for (int64_t t = 0; t < T; t++)
                for (int64_t k = 0; k < BS; k++) out[(i * T + t) * K + kb + k] += vsum(rowacc[(i * T + t) * BS + k]);
    }
}

/* X: every drug's rows [sum A_d, K]; offsets [n+1]; QP: packed target terms (native.py's
   pack_targets): [K/MR][K/NR][T][Q rows, QT rows][MR][NR]; out [n, T, K] and sums [n, K], each
   drug's row sum (overwritten). */
int drugban_fusion(const float *X, const int64_t *offsets, int64_t n, int64_t K, const float *QP,
                   int64_t T, float *out, float *sums, int threads) {
    if (K % BS) return 1;
    int64_t max_rows = 0;
    for (int64_t d = 0; d < n; d++) if (offsets[d + 1] - offsets[d] > max_rows) max_rows = offsets[d + 1] - offsets[d];
    memset(out, 0, sizeof(float) * n * T * K);
    int failed = 0;
    #pragma omp parallel num_threads(threads)
    {
        vf *rowacc = aligned_alloc(64, sizeof(vf) * GROUP * T * BS);
        float *panels = malloc(sizeof(float) * GROUP * max_rows * K);
        if (!rowacc || !panels) {
            #pragma omp atomic write
            failed = 1;
        } else {
            #pragma omp for schedule(dynamic, 1)
            for (int64_t d = 0; d < n; d += GROUP) {
                int64_t g = n - d < GROUP ? n - d : GROUP;
                group(X, offsets + d, g, K, QP, T, out + d * T * K, sums + d * K, panels, rowacc);
            }
        }
        free(rowacc);
        free(panels);
    }
    return failed ? 2 : 0;
}
