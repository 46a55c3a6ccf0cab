/* libFuzzer harness for the safetensors header parser: the input is a whole file image
 * (8-byte length, JSON header, data). Whatever the bytes, the parser must return cleanly
 * (no crash, leak, overflow or UB under ASan + UBSan), and when it accepts a file every
 * tensor it reports must lie inside the image, be consistent with its shape and dtype, and
 * not overlap another. Built with clang by tests/fuzz/CMakeLists.txt; run by ctest as
 * fuzz.safetensors for ~15 s from the committed seed corpus. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "io/safetensors_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  sft_tensor *t = NULL;
  int n = 0;
  if (sft_parse_memory("fuzz.safetensors", data, size, &t, &n) != 0) {
    if (t || n) abort(); /* failure must leave nothing behind */
    return 0;
  }
  uint64_t hb = 0;
  for (int i = 7; i >= 0; i--) hb = (hb << 8) | data[i];
  uint64_t covered = 0;
  for (int i = 0; i < n; i++) {
    uint64_t numel = 1;
    for (int d = 0; d < t[i].ndim; d++) numel *= (uint64_t)t[i].shape[d];
    if (t[i].ndim < 0 || t[i].ndim > SFT_MAX_DIMS) abort();
    if (numel != t[i].numel || numel * sft_dtype_bytes(t[i].dtype) != t[i].bytes) abort();
    if (t[i].offset < 8 + hb || t[i].offset > size || t[i].bytes > size - t[i].offset) abort();
    if (!t[i].name || strcmp(sft_dtype_name(t[i].dtype), "?") == 0) abort();
    covered += t[i].bytes;
  }
  if (covered != size - 8 - hb) abort(); /* exactly covered: no gaps, no overlaps */
  sft_tensors_free(t, n);
  return 0;
}
