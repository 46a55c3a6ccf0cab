#include "util/hash.h"

#include <string.h>

uint64_t hash64_bytes(uint64_t h, const void *data, size_t bytes) {
  const unsigned char *p = data;
  for (size_t i = 0; i < bytes; i++) {
    h ^= p[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}

uint64_t hash64_str(uint64_t h, const char *s) { return hash64_bytes(h, s, strlen(s) + 1); }

uint64_t hash64_u64(uint64_t h, uint64_t v) {
  unsigned char b[8];
  for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i)); /* fixed byte order */
  return hash64_bytes(h, b, sizeof b);
}
