/* The CPU table's bf16 entries (kernels/cpu_bf16.c), for kernels/cpu.c's table. */
#ifndef SPECTRAIN_KERNELS_CPU_BF16_H
#define SPECTRAIN_KERNELS_CPU_BF16_H
#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"

void cpu_to_bf16(bf16_t *dst, const float *src, size_t n);
void cpu_to_f32(float *dst, const bf16_t *src, size_t n);
void cpu_add_bf16(float *y, const bf16_t *x, size_t n);
void cpu_gemm_bf16(int ta, int tb, int M, int N, int K, float alpha, const bf16_t *A, int lda,
                   const bf16_t *B, int ldb, float beta, void *C, int cbf16, int ldc);
void cpu_embed_forward_bf16(float *out, const int32_t *tokens, const bf16_t *emb, int N,
                            int C);

#endif
