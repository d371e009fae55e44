/* LaMa's output convolution (7x7, C channels in, 3 out) for lama.fast on float32 channels-last bands.

   oneDNN vectorises a convolution over its output channels; with 3 of them (or 21 for the vertical half of the
   two-pass form) most of each vector is idle, and that conv ran at half the speed of the others (about 190
   GFLOP/s on an AMX Xeon's two cores). Here the vectors run along the image's width instead: 16 pixels of a row
   side by side, with one accumulator per (kx, output channel) pair, so every lane does useful work.

   Two passes per band, as lama.fast's `_two_pass_weights` describes: the vertical 7x1 one gives, per pixel, the
   21 sums over (ky, input channel) for each (kx, output channel); the horizontal one adds those 21 values at their
   column offsets, reflecting at the left and right edges (the vertical conv commutes with a horizontal
   reflection, so reflecting its output is reflecting its input), plus the bias.

   Layouts (float32, element offsets):
     y    [rows + 6, W, C]   the band's input rows, already reflect-padded vertically (channels-last)
     wv   [7 (ky), C, 21]    the vertical weights, (kx, output channel) pairs innermost: kx * 3 + o
     v    [rows, 21, W]      scratch between the passes
     out  output channel o, band row r, column x at o * ocs + r * ors + x */

#include <stdlib.h>
#include <string.h>

/* multiply-adds as single FMA instructions (ISO C mode, -std=c11, keeps a multiply and an add apart: half the rate) */
#if defined(__clang__)
#pragma clang fp contract(fast)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=fast")
#endif

#include "native_vec.h" /* v16, VL (pixels per vector), vload, vstore */

#define K 7  /* kernel size */
#define CO 3 /* output channels */
#define J (K * CO)

/* acc[p][j] = the sums of x[p] * w[j] over the 7 rows ky and C channels, for the PX pixel vectors of a strip and
   the jn (kx, o) pairs from j0 on; jn <= JB keeps the accumulators and the inputs in the 32 vector registers, with
   one broadcast weight per PX multiply-adds. Always inlined, with constant jn at each call, so that the loops over
   p and j unroll completely. */
#define PX 2
#define JB 12
static inline __attribute__((always_inline)) void vertical_block(const v16 *ring, long r, long c, const float *wv,
                                                                 int j0, int jn, v16 acc[PX][JB]) {
    for (int p = 0; p < PX; p++)
        for (int j = 0; j < jn; j++) acc[p][j] = (v16){0};
    for (int ky = 0; ky < K; ky++) {
        const v16 *xs = ring + (r + ky) % K * c * PX;
        const float *wk = wv + ky * c * J + j0;
        for (long ci = 0; ci < c; ci++)
            for (int j = 0; j < jn; j++)
                for (int p = 0; p < PX; p++) acc[p][j] += xs[ci * PX + p] * wk[ci * J + j];
    }
}

/* acc -> the scratch rows of output row r, pairs j0 .. j0 + jn - 1, the strip's n columns from x0 */
static inline void store_block(float *v, long r, long w, long x0, int n, int j0, int jn, v16 acc[PX][JB]) {
    for (int p = 0; p < PX && n > p * VL; p++)
        for (int j = 0; j < jn; j++)
            vstore(v + (r * J + j0 + j) * w + x0 + p * VL, acc[p][j], n - p * VL < VL ? n - p * VL : VL);
}

/* The vertical pass for the strip of (at most) PX * 16 columns from x0, down the band: each input row is turned
   pixels-innermost once, into a ring of the last 7 rows ([7][C][PX * 16]), and each output row reads the ring. */
static void vertical_strip(const float *y, const float *wv, float *v, long rows, long w, long c, long x0,
                           v16 *ring) {
    int n = w - x0 < PX * VL ? (int)(w - x0) : PX * VL;
    for (long rr = 0; rr < rows + K - 1; rr++) {
        float *slot = (float *)(ring + rr % K * c * PX);
        const float *src = y + (rr * w + x0) * c;
        for (int p = 0; p < n; p++)
            for (long ci = 0; ci < c; ci++) slot[ci * PX * VL + p] = src[p * c + ci];
        if (rr < K - 1) continue;
        long r = rr - (K - 1);
        v16 acc[PX][JB];
        vertical_block(ring, r, c, wv, 0, JB, acc); /* the 21 pairs as 12 + 9 */
        store_block(v, r, w, x0, n, 0, JB, acc);
        vertical_block(ring, r, c, wv, JB, J - JB, acc);
        store_block(v, r, w, x0, n, JB, J - JB, acc);
    }
}

/* The horizontal pass for one row: out[o][x] = bias[o] + sum over kx of v[kx * 3 + o][x + kx - 3], the column
   reflected where it passes an edge (-1 is 1, W is W - 2) */
static void horizontal_row(const float *v, const float *bias, float *out, long w, long ocs) {
    for (int o = 0; o < CO; o++) {
        float *dst = out + o * ocs;
        for (long x = 0; x < w; x++) dst[x] = bias[o];
        for (int kx = 0; kx < K; kx++) {
            const float *src = v + (kx * CO + o) * w;
            long s = kx - K / 2, a = s < 0 ? -s : 0, b = s > 0 ? w - s : w;
            for (long x = 0; x < a; x++) dst[x] += src[-(x + s)];
            for (long x = a; x < b; x++) dst[x] += src[x + s];
            for (long x = b; x < w; x++) dst[x] += src[2 * (w - 1) - (x + s)];
        }
    }
}

/* out <- the 7x7 conv (C -> 3) of a band of `rows` output rows; v: scratch [rows, 21, W]. Returns 0, or -1 where
   memory ran out (out is then incomplete). W >= 4 (the reflection by 3 columns). */
int lama_out_conv(const float *y, const float *wv, const float *bias, float *v, float *out, long rows, long w,
                  long c, long ors, long ocs, int threads) {
    int failed = 0;
    long strips = (w + PX * VL - 1) / (PX * VL);
#pragma omp parallel num_threads(threads < 1 ? 1 : threads)
    {
        v16 *ring = aligned_alloc(sizeof(v16), (size_t)K * c * PX * sizeof(v16));
        if (ring) {
            memset(ring, 0, (size_t)K * c * PX * sizeof(v16)); /* a last strip's idle lanes stay finite */
        } else {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (long s = 0; s < strips; s++)
            if (ring) vertical_strip(y, wv, v, rows, w, c, s * PX * VL, ring);
        free(ring);
#pragma omp for schedule(static)
        for (long r = 0; r < rows; r++) horizontal_row(v + r * J * w, bias, out + r * ors, w, ocs);
    }
    return failed ? -1 : 0;
}
