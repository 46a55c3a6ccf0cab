/* libFuzzer harness for the GGUF reader (io/gguf.c) and the dequantisation (io/gguf_quant.c):
 * the input is a whole file image. Whatever the bytes, parsing must return cleanly (no crash,
 * leak, overflow or UB under ASan + UBSan); a failure leaves nothing behind; when a file is
 * accepted every tensor lies inside the image, its byte count matches its shape and type,
 * no two overlap, every metadata string lies inside the image, and dequantising each tensor
 * of a supported type reads only its own bytes (ASan checks the reads: the image is a copy
 * of exactly `size` bytes). Built with clang by tests/fuzz/CMakeLists.txt; run by ctest as
 * fuzz.gguf for ~15 s from the committed seeds (tests/fuzz/corpus/gguf: gguf-py files). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/gguf.h"
#include "io/gguf_quant.h"
#include "util/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t *img = malloc(size ? size : 1);
  if (size) memcpy(img, data, size);
  gguf_file g;
  if (gguf_parse_memory("fuzz.gguf", img, size, &g) != 0) {
    if (g.kv || g.t || g.n_kv || g.n_tensors) abort();
    free(img);
    st_clear_error();
    return 0;
  }
  for (int i = 0; i < g.n_kv; i++) {
    const gguf_kv *kv = &g.kv[i];
    if (kv->strs)
      for (uint64_t k = 0; k < kv->n; k++)
        if ((const uint8_t *)kv->strs[k].s < img || kv->strs[k].len > size ||
            (const uint8_t *)kv->strs[k].s + kv->strs[k].len > img + size)
          abort();
    int64_t v;
    double d;
    char *s = NULL;
    int found;
    gguf_get_int(&g, kv->key, &v, &found);
    gguf_get_float(&g, kv->key, &d, &found);
    if (gguf_get_str(&g, kv->key, &s, &found) == 0) free(s);
    const gguf_kv *arr;
    if (gguf_get_arr(&g, kv->key, GGUF_T_I32, &arr, &found) == 0 && found)
      for (uint64_t k = 0; k < arr->n && k < 64; k++) (void)gguf_arr_int(arr, k);
  }
  for (int i = 0; i < g.n_tensors; i++) {
    const gguf_tensor *t = &g.t[i];
    const ggml_type_info *ti = ggml_type_get(t->type);
    if (!ti || t->numel % ti->block || t->bytes != t->numel / ti->block * ti->block_bytes) abort();
    if (t->data < img || t->bytes > size || t->data + t->bytes > img + size) abort();
    for (int j = 0; j < i; j++) {
      const gguf_tensor *u = &g.t[j];
      if (t->data < u->data + u->bytes && u->data < t->data + t->bytes && t->bytes && u->bytes)
        abort();
    }
    if (ti->dequant && t->numel <= (1u << 16)) {
      float *y = malloc((size_t)t->numel * sizeof *y);
      if (ggml_dequantize(t->type, t->data, y, t->numel) != 0) abort();
      free(y);
    }
  }
  gguf_close(&g);
  free(img);
  st_clear_error();
  return 0;
}
