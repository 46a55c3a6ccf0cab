#include "shard/memspace.h"

#include <stdlib.h>
#include <string.h>

#include "util/err.h"

void ms_init(memspace *ms, const kernels *k) {
  memset(ms, 0, sizeof *ms);
  ms->k = k;
}

static void add_(memspace *ms, mem_space s, mem_cat c, uint64_t bytes) {
  ms->cur[s][c] += bytes;
  ms->cur_total[s] += bytes;
  if (ms->cur[s][c] > ms->peak[s][c]) ms->peak[s][c] = ms->cur[s][c];
  if (ms->cur_total[s] > ms->peak_total[s]) ms->peak_total[s] = ms->cur_total[s];
}

void *ms_alloc(memspace *ms, mem_space s, mem_cat c, size_t bytes) {
  if (bytes == 0) return NULL;
  void *p;
  if (s == MS_COMPUTE && ms->k && ms->k->alloc) {
    p = ms->k->alloc(bytes);
    if (!p) {
      log_error("out of %s memory allocating %zu bytes for %s", ms_space_name(s), bytes,
                ms_cat_name(c));
      abort();
    }
  } else {
    p = xcalloc(1, bytes);
  }
  add_(ms, s, c, bytes);
  return p;
}

void ms_free(memspace *ms, mem_space s, mem_cat c, void *p, size_t bytes) {
  if (!p) return;
  if (s == MS_COMPUTE && ms->k && ms->k->free) ms->k->free(p);
  else free(p);
  ms->cur[s][c] -= bytes;
  ms->cur_total[s] -= bytes;
}

void ms_copy(memspace *ms, mem_space dst_s, void *dst, mem_space src_s, const void *src,
             size_t bytes) {
  if (bytes == 0 || dst == src) return;
  /* CPU backend: both spaces are RAM. A CUDA backend routes host<->compute through its
   * copy engine here; compute<->compute uses the kernel table. */
  if (dst_s == MS_COMPUTE && src_s == MS_COMPUTE && ms->k && ms->k->copy && bytes % 4 == 0)
    ms->k->copy(dst, src, bytes / 4);
  else
    memmove(dst, src, bytes);
  ms->copied_bytes[dst_s][src_s] += bytes;
}

void ms_note(memspace *ms, mem_space s, mem_cat c, uint64_t bytes) {
  ms->cur_total[s] -= ms->cur[s][c];
  ms->cur[s][c] = 0;
  add_(ms, s, c, bytes);
}

const char *ms_cat_name(mem_cat c) {
  static const char *names[MC_NCAT] = {"param_frozen", "param_trainable", "master",
                                       "grad_shard",   "optimizer",       "gather",
                                       "grad_full",    "staging",         "activations"};
  return (int)c >= 0 && c < MC_NCAT ? names[c] : "?";
}

const char *ms_space_name(mem_space s) { return s == MS_HOST ? "host" : "compute"; }
