/* The Fourier unit's FFTs for lama.fast on float32 channels-last maps: one pass per axis and direction.

   The DFTs as matrix products (lama/dft.py) cost O(n) per point and axis; these FFTs cost O(log n), and their
   passes are bound by memory traffic instead. Each point of a transform is a vector of 16 channels (GCC/clang
   vector types, compiled with -march=native), and a transform runs on a batch of such vectors side by side
   (the innermost loops), read as contiguous runs of memory.

   The transform: Stockham's self-sorting mixed-radix FFT (no bit reversal), decimation in frequency, radix 4
   first, then 2, 3, and 5 and 7 by a generic butterfly; lama.fast calls it for sizes with no other prime factor
   (lama/native.py `fft_size_ok`). Twiddles are made per call in double precision.

   Layouts (float32, element offsets; C channels contiguous everywhere):
     x     [H, W, C]        a map, rows of W pixels
     rows  [H, 2, Wf, C]    each map row's half spectrum along W (Wf = W / 2 + 1): real parts, then imaginary
     cols  point (row i, column q, channel ch) at i*rs + q*C + ch (real part), + ps (imaginary part): the
           complex spectra whose columns are transformed along H (rows' columns, or [2, H, columns, C] blocks)
   Scaling is the caller's (`scale`, e.g. 1 / sqrt(n) per axis for norm="ortho"). Functions return 0, or -1
   where a size has a prime factor above MAX_RADIX (nothing is written) or memory ran out (the output is then
   incomplete). */

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "native_vec.h" /* v16, VL (channels per vector), vload, vstore */

typedef int v16i __attribute__((vector_size(64)));
#define MAX_STAGES 64
#define MAX_RADIX 7    /* the generic butterfly's scratch */
#define ROW_BLOCKS 1   /* vectors per point in the transforms along W (2 and 12 were slower) */
#define COL_PANEL 1    /* columns per task along H, C contiguous values a row (2: 0.32 against 0.29 ms at 64x33) */
#define TWO_PI 6.283185307179586476925

static inline int lanes(long c, long c0) { return (int)(c - c0 < VL ? c - c0 : VL); }

/* max(v, 0) by a mask (C has no ?: on vectors); NaN gives 0, as lama_relu_add */
static inline v16 relu(v16 v) { return (v16)((v16i)v & (v > (v16){0})); }

typedef struct {
    int n, stages, radix[MAX_STAGES];
    long tw_off[MAX_STAGES]; /* per stage, for j < m and u = 1 .. p-1: e^{sign 2 pi i j u / n_stage} as (re, im) */
    float *tw, *roots;       /* roots, row p: e^{sign 2 pi i q / p}, q < p, for the generic butterfly */
} plan_t;

static void plan_free(plan_t *pl) { free(pl->tw); }

static int plan_make(plan_t *pl, int n, int inverse) {
    double sign = inverse ? 1.0 : -1.0;
    int k = n, ns = 0;
    long ntw = 0;
    pl->tw = NULL;
    if (n < 1) return -1;
    while (k > 1) {
        int p = k % 4 == 0 ? 4 : k % 2 == 0 ? 2 : k % 3 == 0 ? 3 : k % 5 == 0 ? 5 : k % 7 == 0 ? 7 : 0;
        if (!p || ns == MAX_STAGES) return -1;
        pl->radix[ns++] = p;
        k /= p;
    }
    pl->n = n;
    pl->stages = ns;
    for (int s = 0, len = n; s < ns; len /= pl->radix[s], s++) {
        pl->tw_off[s] = ntw;
        ntw += 2L * (len / pl->radix[s]) * (pl->radix[s] - 1);
    }
    pl->tw = malloc(sizeof(float) * (size_t)(ntw + 2 * (MAX_RADIX + 1) * MAX_RADIX));
    if (!pl->tw) return -1;
    pl->roots = pl->tw + ntw;
    for (int s = 0, len = n; s < ns; len /= pl->radix[s], s++) {
        int p = pl->radix[s], m = len / p;
        float *t = pl->tw + pl->tw_off[s];
        for (int j = 0; j < m; j++)
            for (int u = 1; u < p; u++) {
                double a = sign * TWO_PI * (double)((long)j * u % len) / len;
                *t++ = (float)cos(a);
                *t++ = (float)sin(a);
            }
    }
    for (int p = 1; p <= MAX_RADIX; p++) /* row p: the p-th roots of unity */
        for (int q = 0; q < p; q++) {
            double a = sign * TWO_PI * q / p;
            pl->roots[2 * (p * MAX_RADIX + q)] = (float)cos(a);
            pl->roots[2 * (p * MAX_RADIX + q) + 1] = (float)sin(a);
        }
    return 0;
}

/* the complex product (br, bi) * (c + i s) */
#define TWIDDLE(dr, di, br, bi, c, s) do { dr = (br) * (c) - (bi) * (s); di = (br) * (s) + (bi) * (c); } while (0)

/* The FFT of n points (pl->n), each a batch of P vectors (point i, vector l at x[i P + l]), in natural order. The
   stages alternate between (xr, xi) and (yr, yi); returns 1 where the result is left in (yr, yi). */
static int fft_run(const plan_t *pl, long P, v16 *restrict xr, v16 *restrict xi, v16 *restrict yr,
                   v16 *restrict yi, int inverse) {
    long len = pl->n, s = 1;
    int in_y = 0;
    for (int st = 0; st < pl->stages; st++) {
        int p = pl->radix[st];
        long m = len / p, sm = s * m * P, sp = s * P; /* input stride between a butterfly's points; output's */
        const float *tw = pl->tw + pl->tw_off[st], *roots = pl->roots + 2 * p * MAX_RADIX;
        v16 *sr = in_y ? yr : xr, *si = in_y ? yi : xi, *dr = in_y ? xr : yr, *di = in_y ? xi : yi;
        for (long j = 0; j < m; j++) {
            const float *t = tw + 2 * j * (p - 1);
            for (long q = 0; q < sp; q++) { /* (index within the stride s, vector) pairs: consecutive vectors */
                long i0 = q + s * j * P, o0 = q + s * p * j * P;
                if (p == 4) {
                    v16 t0r = sr[i0] + sr[i0 + 2 * sm], t0i = si[i0] + si[i0 + 2 * sm];
                    v16 t1r = sr[i0] - sr[i0 + 2 * sm], t1i = si[i0] - si[i0 + 2 * sm];
                    v16 t2r = sr[i0 + sm] + sr[i0 + 3 * sm], t2i = si[i0 + sm] + si[i0 + 3 * sm];
                    v16 t3r = sr[i0 + sm] - sr[i0 + 3 * sm], t3i = si[i0 + sm] - si[i0 + 3 * sm];
                    if (inverse) { /* -i t3 forward, +i t3 inverse */
                        t3r = -t3r;
                        t3i = -t3i;
                    }
                    v16 b1r = t1r + t3i, b1i = t1i - t3r, b2r = t0r - t2r, b2i = t0i - t2i;
                    v16 b3r = t1r - t3i, b3i = t1i + t3r;
                    dr[o0] = t0r + t2r;
                    di[o0] = t0i + t2i;
                    TWIDDLE(dr[o0 + sp], di[o0 + sp], b1r, b1i, t[0], t[1]);
                    TWIDDLE(dr[o0 + 2 * sp], di[o0 + 2 * sp], b2r, b2i, t[2], t[3]);
                    TWIDDLE(dr[o0 + 3 * sp], di[o0 + 3 * sp], b3r, b3i, t[4], t[5]);
                } else if (p == 2) {
                    v16 br = sr[i0] - sr[i0 + sm], bi = si[i0] - si[i0 + sm];
                    dr[o0] = sr[i0] + sr[i0 + sm];
                    di[o0] = si[i0] + si[i0 + sm];
                    TWIDDLE(dr[o0 + sp], di[o0 + sp], br, bi, t[0], t[1]);
                } else if (p == 3) {
                    const float h = inverse ? 0.86602540378443864676f : -0.86602540378443864676f; /* sin(-+2pi/3) */
                    v16 smr = sr[i0 + sm] + sr[i0 + 2 * sm], smi = si[i0 + sm] + si[i0 + 2 * sm];
                    v16 dfr = sr[i0 + sm] - sr[i0 + 2 * sm], dfi = si[i0 + sm] - si[i0 + 2 * sm];
                    v16 cr = sr[i0] - 0.5f * smr, ci = si[i0] - 0.5f * smi;
                    dr[o0] = sr[i0] + smr;
                    di[o0] = si[i0] + smi;
                    TWIDDLE(dr[o0 + sp], di[o0 + sp], cr - h * dfi, ci + h * dfr, t[0], t[1]);
                    TWIDDLE(dr[o0 + 2 * sp], di[o0 + 2 * sp], cr + h * dfi, ci - h * dfr, t[2], t[3]);
                } else { /* 5, 7: the p-point DFT by its definition */
                    v16 ar[MAX_RADIX], ai[MAX_RADIX];
                    for (int r = 0; r < p; r++) {
                        ar[r] = sr[i0 + r * sm];
                        ai[r] = si[i0 + r * sm];
                    }
                    for (int u = 0; u < p; u++) {
                        v16 br = ar[0], bi = ai[0];
                        for (int r = 1; r < p; r++) {
                            const float *w = roots + 2 * (r * u % p);
                            br += ar[r] * w[0] - ai[r] * w[1];
                            bi += ar[r] * w[1] + ai[r] * w[0];
                        }
                        if (u) {
                            TWIDDLE(dr[o0 + u * sp], di[o0 + u * sp], br, bi, t[2 * (u - 1)], t[2 * (u - 1) + 1]);
                        } else {
                            dr[o0] = br;
                            di[o0] = bi;
                        }
                    }
                }
            }
        }
        in_y = !in_y;
        s *= p;
        len = m;
    }
    return in_y;
}

/* Four arrays of n points x P vectors, 64-byte aligned; NULL where memory ran out */
static v16 *scratch(long n, long P) {
    return aligned_alloc(64, sizeof(v16) * (size_t)(4 * n * P));
}

/* Pairs of map rows r, r + 1 (the second absent where r is the last) as one complex transform along W, P channel
   vectors from vector b0 on. Forward: x1 + i x2 from the map; the spectra are told apart by symmetry after,
   X1[k] = (Z[k] + conj Z[W-k]) / 2, X2[k] = (Z[k] - conj Z[W-k]) / 2i. Inverse: the half spectra X1, X2 extended to
   all W frequencies as Hermitian ones (the imaginary parts of the zero and, even W, the Nyquist frequency ignored,
   as irfft does), Z = X1 + i X2, whose inverse is x1 + i x2. */
static void rows_load(const float *src, v16 *xr, v16 *xi, long r, int two, long b0, long P, long w, long c,
                      int inverse) {
    long wf = w / 2 + 1;
    for (long l = 0; l < P; l++) {
        long c0 = (b0 + l) * VL;
        int n = lanes(c, c0);
        if (!inverse) {
            for (long t = 0; t < w; t++) {
                xr[t * P + l] = vload(src + (r * w + t) * c + c0, n);
                xi[t * P + l] = two ? vload(src + ((r + 1) * w + t) * c + c0, n) : (v16){0};
            }
            continue;
        }
        for (long k = 0; k < wf; k++) {
            int real = k == 0 || 2 * k == w;
            const float *in = src + (r * 2 * wf + k) * c + c0;
            v16 ar = vload(in, n), ai = real ? (v16){0} : vload(in + wf * c, n);
            v16 br = two ? vload(in + 2 * wf * c, n) : (v16){0};
            v16 bi = two && !real ? vload(in + 3 * wf * c, n) : (v16){0};
            xr[k * P + l] = ar - bi; /* Z[k] = X1[k] + i X2[k] */
            xi[k * P + l] = ai + br;
            if (!real) { /* Z[W-k] = conj X1[k] + i conj X2[k] */
                xr[(w - k) * P + l] = ar + bi;
                xi[(w - k) * P + l] = br - ai;
            }
        }
    }
}

static void rows_store(const v16 *xr, const v16 *xi, float *dst, long r, int two, long b0, long P, long w, long c,
                       float scale, int inverse) {
    long wf = w / 2 + 1;
    for (long l = 0; l < P; l++) {
        long c0 = (b0 + l) * VL;
        int n = lanes(c, c0);
        if (inverse) { /* added to the map */
            for (long t = 0; t < w; t++) {
                float *out = dst + (r * w + t) * c + c0;
                vstore(out, vload(out, n) + xr[t * P + l] * scale, n);
                if (two) vstore(out + w * c, vload(out + w * c, n) + xi[t * P + l] * scale, n);
            }
            continue;
        }
        for (long k = 0; k < wf; k++) {
            long mk = (k ? w - k : 0) * P + l;
            v16 ar = xr[k * P + l], ai = xi[k * P + l], cr = xr[mk], ci = xi[mk];
            float *out = dst + (r * 2 * wf + k) * c + c0;
            vstore(out, (ar + cr) * (0.5f * scale), n);
            vstore(out + wf * c, (ai - ci) * (0.5f * scale), n);
            if (two) {
                vstore(out + 2 * wf * c, (ai + ci) * (0.5f * scale), n);
                vstore(out + 3 * wf * c, (cr - ar) * (0.5f * scale), n);
            }
        }
    }
}

/* A pass of transforms along one axis: its shape and tensors (the fields its tasks read), and its task. */
typedef struct pass pass_t;
struct pass {
    plan_t pl;
    int inverse;
    long tasks, vectors;     /* tasks of at most `vectors` channel vectors per point */
    const float *src, *bias; /* bias: along H only, optional */
    float *dst, scale;
    long h, w, c, ncols, srs, sps, drs, dps;
    void (*task)(const pass_t *ps, long i, v16 *buf);
};

/* Runs the pass's tasks on the threads, each with scratch for its batch; -1 where a size has no plan or memory ran
   out (no task then writes where the scratch is missing). */
static int run_pass(pass_t *ps, long n, int threads) {
    int failed = 0;
    if (plan_make(&ps->pl, (int)n, ps->inverse)) return plan_free(&ps->pl), -1;
#pragma omp parallel num_threads(threads < 1 ? 1 : threads)
    {
        v16 *buf = scratch(n, ps->vectors);
        if (!buf) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (long i = 0; i < ps->tasks; i++)
            if (buf) ps->task(ps, i, buf);
        free(buf);
    }
    plan_free(&ps->pl);
    return failed ? -1 : 0;
}

/* The transform of (xr, xi), n points of P vectors; the result's arrays (the scratch holds two pairs) */
static void transform(const pass_t *ps, long n, long P, v16 *buf, v16 **xr, v16 **xi) {
    *xr = buf;
    *xi = buf + n * P;
    if (fft_run(&ps->pl, P, buf, buf + n * P, buf + 2 * n * P, buf + 3 * n * P, ps->inverse)) {
        *xr = buf + 2 * n * P;
        *xi = buf + 3 * n * P;
    }
}

/* Along W: ROW_BLOCKS channel vectors of a pair of rows per task; map -> rows (forward), rows -> added to the map
   (inverse) */
static void rows_task(const pass_t *ps, long i, v16 *buf) {
    long w = ps->w, nb = (ps->c + VL - 1) / VL, ngb = (nb + ROW_BLOCKS - 1) / ROW_BLOCKS;
    long r = i / ngb * 2, b0 = i % ngb * ROW_BLOCKS, P = nb - b0 < ROW_BLOCKS ? nb - b0 : ROW_BLOCKS;
    int two = r + 1 < ps->h;
    v16 *xr, *xi;
    rows_load(ps->src, buf, buf + w * P, r, two, b0, P, w, ps->c, ps->inverse);
    transform(ps, w, P, buf, &xr, &xi);
    rows_store(xr, xi, ps->dst, r, two, b0, P, w, ps->c, ps->scale, ps->inverse);
}

static int rows_pass(const float *src, float *dst, long h, long w, long c, float scale, int inverse, int threads) {
    long nb = (c + VL - 1) / VL;
    pass_t ps = {.inverse = inverse, .tasks = (h + 1) / 2 * ((nb + ROW_BLOCKS - 1) / ROW_BLOCKS),
                 .vectors = ROW_BLOCKS, .src = src, .dst = dst, .scale = scale, .h = h, .w = w, .c = c,
                 .task = rows_task};
    return run_pass(&ps, w, threads);
}

/* rows <- scale * the FFT along W of each row of x (real) */
int lama_fft_rows(const float *x, float *rows, long h, long w, long c, float scale, int threads) {
    return rows_pass(x, rows, h, w, c, scale, 0, threads);
}

/* x += scale * the inverse real FFT along W of each row of rows, a half spectrum, as irfft */
int lama_ifft_rows_add(const float *rows, float *x, long h, long w, long c, float scale, int threads) {
    return rows_pass(rows, x, h, w, c, scale, 1, threads);
}

/* Along H: the channels of COL_PANEL columns per task, so that each row's read is one contiguous run */
static void cols_task(const pass_t *ps, long g, v16 *buf) {
    long h = ps->h, c = ps->c, nb = (c + VL - 1) / VL, q0 = g * COL_PANEL;
    long P = (ps->ncols - q0 < COL_PANEL ? ps->ncols - q0 : COL_PANEL) * nb;
    v16 *xr = buf, *xi = buf + h * P;
    for (long t = 0; t < h; t++)
        for (long l = 0; l < P; l++) {
            long c0 = l % nb * VL, off = t * ps->srs + (q0 + l / nb) * c + c0;
            int n = lanes(c, c0);
            xr[t * P + l] = vload(ps->src + off, n);
            xi[t * P + l] = vload(ps->src + off + ps->sps, n);
            if (ps->bias) {
                xr[t * P + l] = relu(xr[t * P + l] + vload(ps->bias + c0, n));
                xi[t * P + l] = relu(xi[t * P + l] + vload(ps->bias + c + c0, n));
            }
        }
    transform(ps, h, P, buf, &xr, &xi);
    for (long k = 0; k < h; k++)
        for (long l = 0; l < P; l++) {
            long c0 = l % nb * VL, off = k * ps->drs + (q0 + l / nb) * c + c0;
            int n = lanes(c, c0);
            vstore(ps->dst + off, xr[k * P + l] * ps->scale, n);
            vstore(ps->dst + off + ps->dps, xi[k * P + l] * ps->scale, n);
        }
}

/* dst <- scale * the FFT (inverse: e^{+i..}) along H of ncols columns of src (layouts above: rs, ps per tensor);
   with `bias` [2, C] (real part's, imaginary part's), of relu(src + bias) instead: the Fourier unit's conv, BN
   and ReLU end there, and its values are read once. */
int lama_fft_cols(const float *src, float *dst, const float *bias, long h, long ncols, long c, long srs, long sps,
                  long drs, long dps, int inverse, float scale, int threads) {
    pass_t ps = {.inverse = inverse, .tasks = (ncols + COL_PANEL - 1) / COL_PANEL,
                 .vectors = COL_PANEL * ((c + VL - 1) / VL), .src = src, .bias = bias, .dst = dst, .scale = scale,
                 .h = h, .c = c, .ncols = ncols, .srs = srs, .sps = sps, .drs = drs, .dps = dps, .task = cols_task};
    return run_pass(&ps, h, threads);
}
