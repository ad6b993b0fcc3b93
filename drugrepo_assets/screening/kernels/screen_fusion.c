/* DrugBAN screening on CPU: each drug's GCN, v_net rows, Gram matrix and contraction with every
   target, fused.

   A drug's atoms go through the GCN (gcn) and v_net, X = relu(E W^T + b) [A, K], one molecule at
   a time in cache-sized buffers, read straight from the molecule store. With a target's Gram
   matrix Gq [K, K] and the heads' summed weights H [K] (screen.py),
   fusion[k] = sum_j (X^T X)[k, j] * Gq[k, j] * H[j]. X is written in the panel layout the Gram
   tiles read (its column sums on the way), so the drug side never exists as an [atoms, K]
   tensor in memory. Both Gram matrices are symmetric, so only tiles on and above the diagonal
   are computed: strips of MR rows, tiles of MR x NR in registers, the NR-wide tile holding the
   strip's diagonal computed whole. Each tile is contracted at once against every target, with
   D = tile ⊙ Gq-tile: its rows (sum over the lanes of D * H[j], kept per strip, summed at the
   strip's end) and, off the diagonal, its columns (sum over rows of D * H[k], lanes over the
   output j). Nothing of size K x K per drug is ever written to memory. Drugs go in groups of
   GROUP so a tile of target terms is read once per group; groups are spread over OpenMP threads.
   Prebuilt by the package build in portable ISA variants (setup.py, kernels/variants.py), else
   compiled at first use with the machine's C compiler (see native.py); GCC/Clang vector
   extensions. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NV 16
#define MR 8
#define NR (2 * NV)
#define GROUP 8

/* A prebuilt library's stamp of what it was compiled from (variants.build_id): native.py does not load
   one whose stamp differs from the source and flags beside it. */
#ifdef DRUGBAN_BUILD_ID
const char drugban_build_id[] = DRUGBAN_BUILD_ID;
#endif

typedef float vf __attribute__((vector_size(NV * 4)));
typedef int32_t vi __attribute__((vector_size(NV * 4)));

static inline vf vload(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
static inline void vstore(float *p, vf v) { memcpy(p, &v, sizeof v); }
static inline float vsum(vf v) { float s = 0; for (int i = 0; i < NV; i++) s += v[i]; return s; }

static inline vf relu(vf x) { return (vf)((vi)x & (x > (vf){0})); }

/* out = act(in W^T + b) for the A rows of in [A, Cin]; WP (native.py's pack_linear): W^T by
   panels of NR output columns with the bias as row Cin, [N/NR][Cin + 1][NR]. Output (a, j) goes
   to out[(j / NR) * panel + a * row + j % NR]: row-major with (row, panel) = (N, NR), the Gram
   tiles' panel layout with (NR, A * NR). sum, if given, gets the output's column sums [N].
   pad: scratch [MR][Cin] for the last block of rows, zero-padded to MR. */
static void linear(const float *in, int64_t A, int64_t Cin, const float *WP, int64_t N, int act, float *out,
                   int64_t row, int64_t panel, float *sum, float *pad) {
    const int64_t blocks = (A + MR - 1) / MR, full = A / MR;
    if (blocks > full) {
        memset(pad, 0, sizeof(float) * MR * Cin);
        memcpy(pad, in + full * MR * Cin, sizeof(float) * (A - full * MR) * Cin);
    }
    for (int64_t p = 0; p < N / NR; p++) {
        const float *w = WP + p * (Cin + 1) * NR;
        vf s0 = (vf){0}, s1 = (vf){0};
        for (int64_t b = 0; b < blocks; b++) {
            vf c0[MR], c1[MR];
            for (int r = 0; r < MR; r++) { c0[r] = vload(w + Cin * NR); c1[r] = vload(w + Cin * NR + NV); }
            const float *x = b < full ? in + b * MR * Cin : pad;
            for (int64_t c = 0; c < Cin; c++) {
                vf x0 = vload(w + c * NR), x1 = vload(w + c * NR + NV);
                for (int r = 0; r < MR; r++) {
                    c0[r] += x[r * Cin + c] * x0;
                    c1[r] += x[r * Cin + c] * x1;
                }
            }
            const int64_t rows = A - b * MR < MR ? A - b * MR : MR;
            for (int64_t r = 0; r < rows; r++) {
                vf y0 = act ? relu(c0[r]) : c0[r], y1 = act ? relu(c1[r]) : c1[r];
                float *o = out + p * panel + (b * MR + r) * row;
                vstore(o, y0);
                vstore(o + NV, y1);
                s0 += y0;
                s1 += y1;
            }
        }
        if (sum) {
            vstore(sum + p * NR, s0);
            vstore(sum + p * NR + NV, s1);
        }
    }
}

/* One molecule's drug GCN in eval mode (model.py's MolecularGCN), into h [A, dims[L]]: the
   initial transform of its features [A, F], then per layer relu(agg(h) Wg + bg) + relu(h Wr^T + br)
   through BatchNorm (a scale and a shift), agg(h)[i] = h[i] + sum over edges s -> i of h[s].
   GP (native.py's pack_gcn): the initial transform, then per layer Wg, Wr (pack_linear), scale,
   shift. agg, t1, t2: scratch [A, max dims]. */
static void gcn(const float *feats, int64_t A, int64_t F, const int64_t *src, const int64_t *dst, int64_t E,
                const float *GP, const int64_t *dims, int64_t L, float *h, float *agg, float *t1, float *t2, float *pad) {
    const float *w = GP;
    linear(feats, A, F, w, dims[0], 0, h, dims[0], NR, NULL, pad);
    w += (F + 1) * dims[0];
    for (int64_t l = 0; l < L; l++) {
        const int64_t ci = dims[l], co = dims[l + 1];
        memcpy(agg, h, sizeof(float) * A * ci);
        for (int64_t e = 0; e < E; e++) {
            float *to = agg + dst[e] * ci;
            const float *from = h + src[e] * ci;
            for (int64_t c = 0; c < ci; c++) to[c] += from[c];
        }
        linear(agg, A, ci, w, co, 1, t1, co, NR, NULL, pad);
        w += (ci + 1) * co;
        linear(h, A, ci, w, co, 1, t2, co, NR, NULL, pad);
        w += (ci + 1) * co;
        const float *scale = w, *shift = w + co;
        w += 2 * co;
        for (int64_t a = 0; a < A; a++)
            for (int64_t c = 0; c < co; c++) h[a * co + c] = (t1[a * co + c] + t2[a * co + c]) * scale[c] + shift[c];
    }
}

/* The molecules of one group, read from the store (feats, edges) as they lie. */
typedef struct {
    const float *feats;        /* every molecule's atom features [sum A, F] */
    const int64_t *edges;      /* [2, n_edges]: source then destination rows, local atom ids */
    int64_t n_edges;
    const int64_t *node_start; /* per molecule of the chunk: first atom row, atoms, first edge, edges */
    const int64_t *atoms;
    const int64_t *edge_start;
    const int64_t *edge_count;
    int64_t F;
    const float *GP;           /* the GCN (pack_gcn) and its widths dims[0..L] */
    const int64_t *dims;
    int64_t L;
    const float *WP;           /* v_net (pack_linear) */
} Drugs;

/* Molecules d0 .. d0 + g - 1 of the chunk: each one's GCN and v_net into its panels, then every
   tile of their Gram matrices contracted with every target (out [g, T, K], sums [g, K]). */
static void group(const Drugs *D, int64_t d0, int64_t g, int64_t K, const float *QP, const float *Hd, int64_t T,
                  float *out, float *sums, float *panels, float *scratch, int64_t width, float *pad, vf *rowacc) {
    float *P[GROUP];
    int64_t A[GROUP];
    float *pp = panels;
    float *h = scratch, *agg = h + width, *t1 = agg + width, *t2 = t1 + width;
    const int64_t C = D->dims[D->L];
    for (int64_t i = 0; i < g; i++) {
        const int64_t d = d0 + i, e0 = D->edge_start[d];
        A[i] = D->atoms[d];
        P[i] = pp;
        gcn(D->feats + D->node_start[d] * D->F, A[i], D->F, D->edges + e0, D->edges + D->n_edges + e0,
            D->edge_count[d], D->GP, D->dims, D->L, h, agg, t1, t2, pad);
        linear(h, A[i], C, D->WP, K, 1, pp, NR, A[i] * NR, sums + i * K, pad);
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

/* Limits on the widths, thread and target counts the kernel takes: far above any model's, low enough
   that no size computed from them overflows int64. */
#define MAX_WIDTH (1 << 16)
#define MAX_LAYERS 64
#define MAX_TARGETS (1 << 24)
#define MAX_THREADS 4096

/* The packed GCN's length (native.py's pack_gcn) for F atom features and widths dims[0..L]. */
static int64_t gcn_length(int64_t F, const int64_t *dims, int64_t L) {
    int64_t total = (F + 1) * dims[0];
    for (int64_t l = 0; l < L; l++) total += 2 * (dims[l] + 1) * dims[l + 1] + 2 * dims[l + 1];
    return total;
}

/* Every input checked before any work, so a wrong one is refused instead of read past its end:
   the sizes against each other and the buffers' lengths, each molecule's atoms and edges inside
   the store's (n_nodes atom rows, n_edges edges), every edge's ends among its molecule's atoms.
   Returns 0, or the error code of drugban_screen with bad = {molecule, edge} (-1: none). */
static int check_inputs(int64_t n_nodes, const int64_t *edges, int64_t n_edges, const int64_t *node_start,
                        const int64_t *atoms, const int64_t *edge_start, const int64_t *edge_count, int64_t n, int64_t F,
                        int64_t gp_len, const int64_t *dims, int64_t L, int64_t wp_len, int64_t K, int64_t qp_len,
                        int64_t T, int threads, int64_t *bad) {
    bad[0] = bad[1] = -1;
    if (n < 0 || n_nodes < 0 || n_edges < 0 || F < 1 || F > MAX_WIDTH || L < 0 || L > MAX_LAYERS || T < 0 ||
        T > MAX_TARGETS || K < 1 || K > MAX_WIDTH || threads < 1 || threads > MAX_THREADS)
        return 3;
    if (K % NR) return 1;
    for (int64_t l = 0; l <= L; l++) {
        if (dims[l] < 1 || dims[l] > MAX_WIDTH) return 3;
        if (dims[l] % NR) return 1;
    }
    if (gp_len != gcn_length(F, dims, L) || wp_len != (dims[L] + 1) * K || qp_len != K * K * T) return 3;
    for (int64_t d = 0; d < n; d++) {
        bad[0] = d;
        if (node_start[d] < 0 || atoms[d] < 0 || node_start[d] > n_nodes || atoms[d] > n_nodes - node_start[d] ||
            edge_start[d] < 0 || edge_count[d] < 0 || edge_start[d] > n_edges || edge_count[d] > n_edges - edge_start[d])
            return 4;
        const int64_t *src = edges + edge_start[d], *dst = edges + n_edges + edge_start[d];
        for (int64_t e = 0; e < edge_count[d]; e++) {
            if (src[e] < 0 || src[e] >= atoms[d] || dst[e] < 0 || dst[e] >= atoms[d]) {
                bad[1] = edge_start[d] + e;
                return 5;
            }
        }
    }
    bad[0] = -1;
    return 0;
}

/* One chunk of n molecules (Drugs) against T targets. feats [n_nodes, F] and edges [2, n_edges]:
   the store; node_start, atoms, edge_start, edge_count: per molecule, its span of each. QP: each
   target's Gram matrix Gq by tiles (pack_targets) [K/MR][K/NR][T][MR][NR], of which the tiles on
   and above the diagonal are read; Hd: the heads' summed weights H [K]; GP, WP, QP hold gp_len,
   wp_len and qp_len floats; out [n, T, K] and sums [n, K], each drug's v_net row sum
   (overwritten). Inputs are checked first (check_inputs), nothing is written when one is wrong.
   Returns 0, or 1 for a width that is not a multiple of NR, 2 when out of memory, 3 for sizes that
   do not fit together, 4 for molecule bad[0] whose atoms or edges lie outside the store's, 5 for
   edge bad[1] of molecule bad[0] joining atoms outside it. */
int drugban_screen(const float *feats, int64_t n_nodes, const int64_t *edges, int64_t n_edges,
                   const int64_t *node_start, const int64_t *atoms, const int64_t *edge_start, const int64_t *edge_count,
                   int64_t n, int64_t F, const float *GP, int64_t gp_len, const int64_t *dims, int64_t L, const float *WP,
                   int64_t wp_len, int64_t K, const float *QP, int64_t qp_len, const float *Hd, int64_t T, float *out,
                   float *sums, int threads, int64_t *bad) {
    const int invalid = check_inputs(n_nodes, edges, n_edges, node_start, atoms, edge_start, edge_count, n, F, gp_len,
                                     dims, L, wp_len, K, qp_len, T, threads, bad);
    if (invalid) return invalid;
    const Drugs D = {feats, edges, n_edges, node_start, atoms, edge_start, edge_count, F, GP, dims, L, WP};
    if (n == 0) return 0;
    int64_t max_rows = 0, width = F;
    for (int64_t d = 0; d < n; d++) if (atoms[d] > max_rows) max_rows = atoms[d];
    for (int64_t l = 0; l <= L; l++) if (dims[l] > width) width = dims[l];
    width *= max_rows + MR;
    memset(out, 0, sizeof(float) * n * T * K);
    int failed = 0;
    #pragma omp parallel num_threads(threads)
    {
        vf *rowacc = aligned_alloc(64, sizeof(vf) * GROUP * (T ? T : 1) * MR);  /* never 0 bytes: NULL is allowed */
        float *panels = malloc(sizeof(float) * GROUP * (max_rows ? max_rows : 1) * K);
        float *scratch = malloc(sizeof(float) * 4 * width);
        float *pad = malloc(sizeof(float) * width);
        if (!rowacc || !panels || !scratch || !pad) {
            #pragma omp atomic write
            failed = 1;
        } else {
            #pragma omp for schedule(dynamic, 1)
            for (int64_t d = 0; d < n; d += GROUP) {
                int64_t g = n - d < GROUP ? n - d : GROUP;
                group(&D, d, g, K, QP, Hd, T, out + d * T * K, sums + d * K, panels, scratch, width, pad, rowacc);
            }
        }
        free(rowacc);
        free(panels);
        free(scratch);
        free(pad);
    }
    return failed ? 2 : 0;
}
