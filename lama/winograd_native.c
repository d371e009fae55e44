/* Winograd F(4x4, 3x3) input and output transforms for lama.winograd, fused into one pass each.

   In PyTorch a transform is a gather copy, a matrix product with a 36x36 (or 16x36) matrix, and a
   scatter copy: three passes over 10-20 MB per band, all memory-bound, and the 36-deep product is a
   poor fit for the matrix units. Here each tile's 36 values are read once, transformed in registers
   (separably: 6 + 6 small sums instead of a 36x36 product) and written once. Bias and ReLU are fused
   into the output transform.

   Plain C with no PyTorch headers, so that it compiles in about a second with the system's C compiler
   (lama/native.py compiles it once per machine and loads it with ctypes), with -fopenmp where it has it. The channel loops are written
   to be vectorised by the compiler for the machine it runs on (-O3 -march=native). Arithmetic is float32;
   bfloat16 values are converted on load and rounded to nearest even on store, as PyTorch rounds.

   Layouts (element strides; channels are contiguous everywhere):
     x     [B, H, W, C]    contiguous; a band of tr tile rows reads rows top .. top + 4 tr + 1 and columns
                           -1 .. 4 tw, reflect-padded by one pixel (-1 is 1, H is H - 2) and zero past that;
                           row `top`, if `halo` is given, is read from `halo` [B, W, C] instead (the layer
                           writes its output over its input, and that row was already overwritten)
     v     [36, T, C]      contiguous, T = B tr tw, tiles in (b, row, column) order, component 6 i + j
     v_lo  [36, T, C_lo]   optional, contiguous: the first C_lo channels of v once more (the FFC's local
                           channels, the only input of its l2g product: a contiguous operand is the faster one)
     m     [36, T, Cm]     contiguous
     dst   pixel (b, row r, y p, column q, x s, channel c) at
           b*sb + r*sr + p*sp + q*sq + s*ss + c   (a [B, tr, 4, tw, 4, Cm] view of a channels-last map) */

#include <stdint.h>
#include <string.h>
#ifdef __AVX512BF16__
#include <immintrin.h>
#endif

#define CB 64 /* channels per chunk: 36 x 64 float32 = 9 KB of scratch, in L1 */

static inline float bf16_to_float(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t float_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0; /* NaN stays NaN */
    u += 0x7fffu + ((u >> 16) & 1u);                  /* round to nearest even */
    return (uint16_t)(u >> 16);
}

static inline void load_n(const void *src, long off, int bf16, float *restrict out, int n) {
    if (bf16) {
        const uint16_t *s = (const uint16_t *)src + off;
        for (int c = 0; c < n; c++) out[c] = bf16_to_float(s[c]);
    } else {
        memcpy(out, (const float *)src + off, (size_t)n * sizeof(float));
    }
}

static inline void store_n(void *dst, long off, int bf16, const float *restrict in, int n) {
    if (bf16) {
        uint16_t *d = (uint16_t *)dst + off;
        for (int c = 0; c < n; c++) d[c] = float_to_bf16(in[c]);
    } else {
        memcpy((float *)dst + off, in, (size_t)n * sizeof(float));
    }
}

/* Full chunks (LaMa's channel counts are multiples of CB) take a copy with a constant bound: whole vectors, no
   remainder loop. */
static inline void load(const void *src, long off, int bf16, float *restrict out, int n) {
    if (n == CB) load_n(src, off, bf16, out, CB);
    else load_n(src, off, bf16, out, n);
}

static inline void store(void *dst, long off, int bf16, const float *restrict in, int n) {
#ifdef __AVX512BF16__
    /* the CPU's own conversion, round to nearest even as float_to_bf16, in one instruction per 32 values (the bf16
       input transform 10% faster on an AMX Xeon); it flushes float32 denormals (below 1.2e-38) to zero */
    if (bf16 && n == CB) {
        uint16_t *d = (uint16_t *)dst + off;
        for (int c = 0; c < CB; c += 32) {
            __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(in + c + 16), _mm512_loadu_ps(in + c));
            _mm512_storeu_si512((void *)(d + c), (__m512i)v);
        }
        return;
    }
#endif
    if (n == CB) store_n(dst, off, bf16, in, CB);
    else store_n(dst, off, bf16, in, n);
}

/* y = BT x on six rows of CB channels, x[k] at x + k*xs, y[i] at y + i*ys (strides in rows). */
static inline void bt6(float (*restrict x)[CB], int xs, float (*restrict y)[CB], int ys) {
    for (int c = 0; c < CB; c++) {
        float d0 = x[0][c], d1 = x[xs][c], d2 = x[2 * xs][c], d3 = x[3 * xs][c], d4 = x[4 * xs][c],
              d5 = x[5 * xs][c];
        y[0][c] = 4 * d0 - 5 * d2 + d4;
        y[ys][c] = -4 * (d1 + d2) + d3 + d4;
        y[2 * ys][c] = 4 * (d1 - d2) - d3 + d4;
        y[3 * ys][c] = 2 * (d3 - d1) - d2 + d4;
        y[4 * ys][c] = 2 * (d1 - d3) - d2 + d4;
        y[5 * ys][c] = 4 * d1 - 5 * d3 + d5;
    }
}

/* y = AT x: six rows in, four out. */
static inline void at6(float (*restrict x)[CB], int xs, float (*restrict y)[CB], int ys) {
    for (int c = 0; c < CB; c++) {
        float m0 = x[0][c], m1 = x[xs][c], m2 = x[2 * xs][c], m3 = x[3 * xs][c], m4 = x[4 * xs][c],
              m5 = x[5 * xs][c];
        float s12 = m1 + m2, d12 = m1 - m2, s34 = m3 + m4, d34 = m3 - m4;
        y[0][c] = m0 + s12 + s34;
        y[ys][c] = d12 + 2 * d34;
        y[2 * ys][c] = s12 + 4 * s34;
        y[3 * ys][c] = d12 + 8 * d34 + m5;
    }
}

typedef struct {
    const void *src;
    void *dst, *dst_lo; /* input: v and v_lo */
    const void *bias;
    const void *halo;
    const void *res; /* output: added after the ReLU, same strides as dst */
    int bf16, relu, acc; /* output: acc adds dst's own values before the ReLU */
    long tr, tw, c, h, w, top, halo_row; /* input: map and band geometry */
    long c_lo;                      /* input: channels of v_lo */
    long t_all, sb, sr, sp, sq, ss; /* output: tile count and dst strides */
    long t0, t1;                    /* this thread's tiles */
} job;

/* The source index of padded position p (-1 .. n): reflect by one pixel, -1 past the padding (zeros). */
static inline long reflect(long p, long n) {
    if (p < 0) return -p;
    if (p < n) return p;
    return p == n ? n - 2 : -1;
}

static void *input_job(void *arg) {
    const job *j = arg;
    float d[36][CB] = {{0}}, t[36][CB], v[36][CB]; /* zeros: a last chunk's tail lanes stay finite */
    long tiles = j->tr * j->tw, elt = j->bf16 ? 2 : 4;
    for (long t_ = j->t0; t_ < j->t1; t_++) {
        long b = t_ / tiles, r = t_ % tiles / j->tw, q = t_ % j->tw;
        const char *rows[6];
        long cols[6];
        for (int k = 0; k < 6; k++) {
            long y = reflect(j->top + 4 * r + k, j->h);
            rows[k] = y < 0 ? NULL
                    : y == j->halo_row ? (const char *)j->halo + b * j->w * j->c * elt
                    : (const char *)j->src + (b * j->h + y) * j->w * j->c * elt;
            cols[k] = reflect(4 * q + k - 1, j->w);
        }
        for (long c0 = 0; c0 < j->c; c0 += CB) {
            int n = j->c - c0 < CB ? (int)(j->c - c0) : CB;
            for (int k = 0; k < 36; k++) {
                const char *row = rows[k / 6];
                long col = cols[k % 6];
                if (row && col >= 0)
                    load(row, col * j->c + c0, j->bf16, d[k], n);
                else
                    memset(d[k], 0, sizeof d[k]);
            }
            for (int col = 0; col < 6; col++) bt6(&d[col], 6, &t[col], 6); /* along rows */
            for (int row = 0; row < 6; row++) bt6(&t[6 * row], 1, &v[6 * row], 1); /* along columns */
            for (int k = 0; k < 36; k++) store(j->dst, (k * j->t_all + t_) * j->c + c0, j->bf16, v[k], n);
            if (c0 < j->c_lo) {
                int n_lo = j->c_lo - c0 < n ? (int)(j->c_lo - c0) : n;
                for (int k = 0; k < 36; k++)
                    store(j->dst_lo, (k * j->t_all + t_) * j->c_lo + c0, j->bf16, v[k], n_lo);
            }
        }
    }
    return NULL;
}

/* The offset of pixel k (row k / 4, column k % 4) of the output tile at `base` */
static inline long pixel(const job *j, long base, int k) { return base + (k / 4) * j->sp + (k % 4) * j->ss; }

/* y += the tile's pixels in `src` (dst's strides), n channels from c0 */
static inline void add_tile(const job *j, const void *src, long base, long c0, int n, float (*restrict y)[CB]) {
    float a[CB];
    for (int k = 0; k < 16; k++) {
        load(src, pixel(j, base, k) + c0, j->bf16, a, n);
        for (int c = 0; c < n; c++) y[k][c] += a[c];
    }
}

static void *output_job(void *arg) {
    const job *j = arg;
    float m[36][CB] = {{0}}, t[24][CB], y[16][CB], bias[CB] = {0};
    long tiles = j->tr * j->tw;
    for (long t_ = j->t0; t_ < j->t1; t_++) {
        long b = t_ / tiles, r = t_ % tiles / j->tw, q = t_ % j->tw;
        long base = b * j->sb + r * j->sr + q * j->sq;
        for (long c0 = 0; c0 < j->c; c0 += CB) {
            int n = j->c - c0 < CB ? (int)(j->c - c0) : CB;
            for (int k = 0; k < 36; k++) load(j->src, (k * j->t_all + t_) * j->c + c0, j->bf16, m[k], n);
            for (int col = 0; col < 6; col++) at6(&m[col], 6, &t[col], 6); /* 4 rows of 6 */
            for (int row = 0; row < 4; row++) at6(&t[6 * row], 1, &y[4 * row], 1);
            if (j->bias) {
                load(j->bias, c0, j->bf16, bias, n);
                for (int k = 0; k < 16; k++)
                    for (int c = 0; c < n; c++) y[k][c] += bias[c];
            }
            if (j->acc) add_tile(j, j->dst, base, c0, n, y);
            if (j->relu)
                for (int k = 0; k < 16; k++)
                    for (int c = 0; c < CB; c++) y[k][c] = y[k][c] > 0 ? y[k][c] : 0;
            if (j->res) add_tile(j, j->res, base, c0, n, y);
            for (int k = 0; k < 16; k++) store(j->dst, pixel(j, base, k) + c0, j->bf16, y[k], n);
        }
    }
    return NULL;
}

/* Splits the tiles over `threads` threads. With OpenMP this is the process's OpenMP pool: inside PyTorch,
   libgomp.so.1 is already loaded and the dynamic linker binds this library to it, so these are PyTorch's own
   threads (threads of a second pool would compete with PyTorch's, which spin for a while after each of its
   operations). Without OpenMP (a compiler without it) the tiles run on the calling thread. */
static void run(const job *base, void *(*fn)(void *), int threads) {
    long t_all = base->t_all;
    if (threads < 1) threads = 1;
    if (threads > t_all) threads = (int)(t_all > 0 ? t_all : 1);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int i = 0; i < threads; i++) {
        job j = *base;
        j.t0 = t_all * i / threads;
        j.t1 = t_all * (i + 1) / threads;
        fn(&j);
    }
}

void lama_winograd_input(const void *x, const void *halo, void *v, void *v_lo, long c_lo, int bf16, long b, long h,
                         long w, long c, long top, long tr, long tw, int threads) {
    job j = {0};
    j.src = x, j.halo = halo, j.dst = v, j.bf16 = bf16, j.h = h, j.w = w, j.c = c, j.top = top;
    j.dst_lo = v_lo, j.c_lo = v_lo ? c_lo : 0;
    j.halo_row = halo ? top : -2, j.tr = tr, j.tw = tw, j.t_all = b * tr * tw;
    run(&j, input_job, threads);
}

void lama_winograd_output(const void *m, void *dst, const void *bias, const void *res, int bf16, int relu, int acc,
                          long b, long tr, long tw, long c, long sb, long sr, long sp, long sq, long ss, int threads) {
    job j = {0};
    j.src = m, j.dst = dst, j.bias = bias, j.res = res, j.bf16 = bf16, j.relu = relu, j.acc = acc, j.tr = tr;
    j.tw = tw, j.c = c;
    j.t_all = b * tr * tw, j.sb = sb, j.sr = sr, j.sp = sp, j.sq = sq, j.ss = ss;
    run(&j, output_job, threads);
}

/* y = relu(y + b) + x (b, x optional; b has `cols` values) on `rows` rows of `cols` values, row strides ys and xs: the
   end of a resnet block's spectral path and its residual, or a matrix product's bias and ReLU, in one pass, rows
   split over PyTorch's OpenMP threads. */
void lama_relu_add(void *y, const void *x, const void *b, long rows, long cols, long ys, long xs, int bf16,
                   int threads) {
#pragma omp parallel for num_threads(threads < 1 ? 1 : threads) schedule(static)
    for (long r = 0; r < rows; r++) {
        if (bf16) {
            uint16_t *yr = (uint16_t *)y + r * ys;
            const uint16_t *xr = x ? (const uint16_t *)x + r * xs : NULL;
            const uint16_t *br = (const uint16_t *)b;
            for (long c = 0; c < cols; c++) {
                float a = bf16_to_float(yr[c]);
                if (br) a += bf16_to_float(br[c]);
                a = a > 0 ? a : 0;
                if (xr) a += bf16_to_float(xr[c]);
                yr[c] = float_to_bf16(a);
            }
        } else {
            float *yr = (float *)y + r * ys;
            const float *xr = x ? (const float *)x + r * xs : NULL;
            const float *br = (const float *)b;
            for (long c = 0; c < cols; c++) { /* the pointer tests are loop-invariant: -O3 unswitches them */
                float a = br ? yr[c] + br[c] : yr[c];
                a = a > 0 ? a : 0;
                yr[c] = xr ? a + xr[c] : a;
            }
        }
    }
}
