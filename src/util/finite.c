#include "util/finite.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

enum { BLOCK_ = 4096 }; /* elements tested branch-free before looking closer */

uint64_t finite_first_bad_f32(const float *x, uint64_t n) {
  for (uint64_t b = 0; b < n; b += BLOCK_) {
    uint64_t e = n - b < BLOCK_ ? n - b : BLOCK_;
    uint32_t bad = 0;
    for (uint64_t i = 0; i < e; i++) { /* exponent all ones: Inf or NaN */
      uint32_t u;
      memcpy(&u, x + b + i, 4);
      bad |= (u & 0x7f800000u) == 0x7f800000u;
    }
    if (!bad) continue;
    for (uint64_t i = 0; i < e; i++)
      if (!isfinite(x[b + i])) return b + i;
  }
  return n;
}

uint64_t finite_first_bad_bf16(const uint16_t *x, uint64_t n) {
  for (uint64_t b = 0; b < n; b += BLOCK_) {
    uint64_t e = n - b < BLOCK_ ? n - b : BLOCK_;
    uint32_t bad = 0;
    for (uint64_t i = 0; i < e; i++) bad |= (x[b + i] & 0x7f80u) == 0x7f80u;
    if (!bad) continue;
    for (uint64_t i = 0; i < e; i++)
      if ((x[b + i] & 0x7f80u) == 0x7f80u) return b + i;
  }
  return n;
}

uint64_t finite_first_bad_f64(const double *x, uint64_t n) {
  for (uint64_t b = 0; b < n; b += BLOCK_) {
    uint64_t e = n - b < BLOCK_ ? n - b : BLOCK_;
    uint64_t bad = 0;
    for (uint64_t i = 0; i < e; i++) {
      uint64_t u;
      memcpy(&u, x + b + i, 8);
      bad |= (u & 0x7ff0000000000000ull) == 0x7ff0000000000000ull;
    }
    if (!bad) continue;
    for (uint64_t i = 0; i < e; i++)
      if (!isfinite(x[b + i])) return b + i;
  }
  return n;
}

const char *finite_name(double v) {
  if (isnan(v)) return "NaN";
  if (isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  return "finite";
}

const char *finite_index_str(uint64_t flat, int ndim, const int64_t *shape, char *buf, size_t len) {
  uint64_t idx[16] = {0};
  if (ndim > 16) ndim = 16;
  for (int d = ndim - 1; d >= 0; d--) {
    uint64_t s = shape[d] > 0 ? (uint64_t)shape[d] : 1;
    idx[d] = d ? flat % s : flat;
    flat = d ? flat / s : 0;
  }
  size_t o = (size_t)snprintf(buf, len, "[");
  for (int d = 0; d < ndim && o < len; d++)
    o += (size_t)snprintf(buf + o, len - o, "%s%llu", d ? ", " : "", (unsigned long long)idx[d]);
  if (o < len) snprintf(buf + o, len - o, "]");
  return buf;
}
