/* bfloat16 <-> float32 for one value, on the host: the only definition of the rounding
 * (round to nearest, ties to even; NaN stays a quiet NaN), shared by the CPU kernels, the
 * safetensors reader and writer, and the sharded trainer. The CUDA kernels use the CUDA
 * intrinsics (__float2bfloat16_rn), which round the same way. */
#ifndef SPECTRAIN_KERNELS_BF16_H
#define SPECTRAIN_KERNELS_BF16_H
#include <stdint.h>
#include <string.h>

#include "kernels/kernels.h"

static inline float bf16_to_f32(bf16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static inline bf16_t bf16_from_f32(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16; /* ties to even */
  uint32_t q = (u >> 16) | 0x40u;                        /* NaN: keep sign and payload, quiet */
  return (bf16_t)((u & 0x7fffffffu) > 0x7f800000u ? q : r);
}

#endif
