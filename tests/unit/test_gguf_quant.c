/* Dequantisation of every ggml type spectrain imports against gguf-py's reference
 * (gguf.quants.dequantize), bit for bit: tests/fixtures/gguf/quant/TYPE.q holds blocks
 * (quantised from random data with gguf-py where it can quantise the type, and random bytes
 * with finite f16 scales, which reach every bit pattern of the quants), TYPE.f32 what
 * gguf-py makes of them (tests/fixtures/gguf/make_fixtures.py). The C code computes in the
 * same order of float32 operations as gguf-py, so equality is exact, not within rounding.
 * Also: the type table's block sizes, refusal of a type with no dequantisation and of a
 * count that is not a whole number of blocks. */
#include <stdint.h>

#include "io/gguf_quant.h"
#include "test.h"
#include "util/err.h"

static const char *fixtures_(void) {
  const char *f = getenv("FIXTURES");
  return f ? f : SPECTRAIN_SOURCE_DIR "/tests/fixtures";
}

static uint8_t *slurp_(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *b = malloc((size_t)len + 1);
  *n = fread(b, 1, (size_t)len, f);
  fclose(f);
  return b;
}

static void check_type_(const char *name, uint32_t id) {
  char qp[512], fp[512];
  snprintf(qp, sizeof qp, "%s/gguf/quant/%s.q", fixtures_(), name);
  snprintf(fp, sizeof fp, "%s/gguf/quant/%s.f32", fixtures_(), name);
  size_t nq = 0, nf = 0;
  uint8_t *q = slurp_(qp, &nq), *f = slurp_(fp, &nf);
  CHECK_MSG(q && f, "%s: fixture missing", name);
  const ggml_type_info *ti = ggml_type_get(id);
  CHECK_MSG(ti && strcmp(ti->name, name) == 0, "type %u", id);
  if (!q || !f || !ti) {
    free(q);
    free(f);
    return;
  }
  const uint64_t nblocks = nq / ti->block_bytes, n = nblocks * ti->block;
  CHECK_MSG(nq % ti->block_bytes == 0 && nf == n * 4, "%s: %zu bytes of blocks, %zu of floats",
            name, nq, nf);
  float *y = malloc((size_t)n * sizeof *y + 4);
  CHECK_EQ_INT(ggml_dequantize(id, q, y, n), 0);
  uint64_t diff = 0, first = n;
  for (uint64_t i = 0; i < n; i++) {
    uint32_t a, b;
    memcpy(&a, &y[i], 4);
    memcpy(&b, f + 4 * i, 4);
    if (a != b) {
      if (!diff) first = i;
      diff++;
    }
  }
  float want = 0;
  if (first < n) memcpy(&want, f + 4 * first, 4);
  CHECK_MSG(diff == 0, "%s: %llu of %llu values differ from gguf-py's; first at %llu: %.9g, want %.9g",
            name, (unsigned long long)diff, (unsigned long long)n, (unsigned long long)first,
            first < n ? y[first] : 0.0, want);
  printf("%-5s %6llu values (%llu blocks of %u) equal gguf-py's\n", name, (unsigned long long)n,
         (unsigned long long)nblocks, ti->block);
  free(y);
  free(q);
  free(f);
}

int main(void) {
  static const struct {
    const char *name;
    uint32_t id;
  } types[] = {{"F32", 0},   {"F16", 1},   {"BF16", 30}, {"Q8_0", 8},  {"Q4_0", 2},
               {"Q4_1", 3},  {"Q5_0", 6},  {"Q5_1", 7},  {"Q2_K", 10}, {"Q3_K", 11},
               {"Q4_K", 12}, {"Q5_K", 13}, {"Q6_K", 14}};
  for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) check_type_(types[i].name, types[i].id);

  /* the table: ggml's block sizes */
  CHECK(ggml_type_get(12)->block == 256 && ggml_type_get(12)->block_bytes == 144);
  CHECK(ggml_type_get(3)->block == 32 && ggml_type_get(3)->block_bytes == 20);
  CHECK(ggml_type_get(4) == NULL && ggml_type_get(5) == NULL && ggml_type_get(99) == NULL);
  /* a type spectrain cannot dequantise, and a partial block */
  uint8_t blk[300] = {0};
  float y[512];
  CHECK_EQ_INT(ggml_dequantize(16, blk, y, 256), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "IQ2_XXS");
  CHECK_CONTAINS(st_errmsg(), "Q4_K");
  CHECK_EQ_INT(ggml_dequantize(3, blk, y, 48), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "not a whole number of 32-element blocks");
  st_clear_error();
  return test_done();
}
