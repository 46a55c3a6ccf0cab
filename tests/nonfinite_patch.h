/* Test helper: overwrite one stored element of a tensor in a safetensors file with NaN, +Inf
 * or -Inf in that tensor's own dtype (F32, BF16, F16) — what a damaged or diverged model
 * holds. The writers refuse non-finite data, so tests put them in after writing. */
#ifndef SPECTRAIN_TESTS_NONFINITE_PATCH_H
#define SPECTRAIN_TESTS_NONFINITE_PATCH_H
#include <fcntl.h>
#include <stdint.h>
#include <unistd.h>

#include "io/safetensors.h"

typedef enum { BAD_NAN, BAD_PINF, BAD_NINF, BAD_NKINDS } bad_kind;
static const char *const bad_kind_name_[BAD_NKINDS] = {"NaN", "+Inf", "-Inf"};

/* 0 on success. `file` is the .safetensors path (or a directory: model.safetensors in it). */
static int patch_nonfinite_(const char *path, const char *tensor, uint64_t elem, bad_kind k) {
  sft_model m;
  if (sft_open(path, &m)) return -1;
  const sft_tensor *t = sft_find(&m, tensor);
  int rc = -1;
  if (t && elem < t->numel) {
    static const uint32_t f32[BAD_NKINDS] = {0x7fc00000u, 0x7f800000u, 0xff800000u};
    static const uint16_t bf16[BAD_NKINDS] = {0x7fc0, 0x7f80, 0xff80};
    static const uint16_t f16[BAD_NKINDS] = {0x7e00, 0x7c00, 0xfc00};
    unsigned char b[4];
    size_t n = sft_dtype_bytes(t->dtype);
    uint32_t v = t->dtype == SFT_F32 ? f32[k] : t->dtype == SFT_BF16 ? bf16[k] : f16[k];
    for (size_t i = 0; i < n; i++) b[i] = (unsigned char)(v >> (8 * i)); /* little-endian */
    int fd = open(m.paths[t->file], O_WRONLY);
    if (fd >= 0 && (t->dtype == SFT_F32 || t->dtype == SFT_BF16 || t->dtype == SFT_F16) &&
        pwrite(fd, b, n, (off_t)(t->offset + elem * n)) == (ssize_t)n)
      rc = 0;
    if (fd >= 0) close(fd);
  }
  sft_close(&m);
  return rc;
}
#endif
