/* ggml's tensor types: block sizes, and dequantisation to float32 of the ones spectrain
 * imports: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 and the K-quants Q2_K, Q3_K, Q4_K,
 * Q5_K, Q6_K.
 *
 * Each routine computes what ggml's dequantize_row_* and gguf-py's gguf.quants.dequantize
 * compute, in the same order of float32 operations (for example Q4_K's y = (d*sc)*q -
 * (dmin*m)), so the results are bit-identical to gguf-py's (tests/unit/test_gguf_quant.c
 * checks every type against tests/fixtures/gguf/quant/, written by gen_quant_fixtures.py).
 * The file must be compiled without floating-point contraction (C11 mode: gcc's default is
 * -ffp-contract=off), or a fused multiply-add would change the last bit. */
#ifndef SPECTRAIN_IO_GGUF_QUANT_H
#define SPECTRAIN_IO_GGUF_QUANT_H
#include <stdint.h>

typedef struct {
  uint32_t id;
  const char *name;     /* "Q4_K" */
  uint32_t block;       /* elements per block */
  uint32_t block_bytes; /* bytes per block */
  /* NULL when spectrain cannot dequantise this type */
  void (*dequant)(const uint8_t *src, float *dst, uint64_t n_blocks);
} ggml_type_info;

/* Every type ggml defines (so a file with one spectrain cannot convert still parses, and
 * the error names the type); NULL for an id ggml does not define. */
const ggml_type_info *ggml_type_get(uint32_t id);
/* "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K" */
const char *ggml_supported_types(void);

/* Dequantise n elements (a multiple of the type's block) from src into dst. 0, or
 * ST_EINPUT naming the type when it has no dequantisation. */
int ggml_dequantize(uint32_t type, const uint8_t *src, float *dst, uint64_t n);

#endif
