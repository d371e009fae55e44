/* 16-float vectors for the compiled kernels of lama.native (GCC/clang vector types, compiled with -march=native):
   the type, and loads and stores of n <= 16 values, where a whole vector is one load or store and the rest a short
   copy. Shared by fft_native.c (16 channels a vector) and conv_native.c (16 pixels). */
#ifndef LAMA_NATIVE_VEC_H
#define LAMA_NATIVE_VEC_H

#include <string.h>

typedef float v16 __attribute__((vector_size(64)));
#define VL 16

static inline v16 vload(const float *src, int n) {
    v16 v = {0};
    if (n == VL) memcpy(&v, src, sizeof v);
    else memcpy(&v, src, (size_t)n * sizeof(float));
    return v;
}

static inline void vstore(float *dst, v16 v, int n) {
    if (n == VL) memcpy(dst, &v, sizeof v);
    else memcpy(dst, &v, (size_t)n * sizeof(float));
}

#endif
