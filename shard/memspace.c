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

/* Host buffers come from the kernel table's host_alloc when it has one (pinned memory on
 * CUDA, so copies to and from compute memory run at full speed); compute buffers from its
 * alloc. */
void *ms_alloc(memspace *ms, mem_space s, mem_cat c, size_t bytes) {
  if (bytes == 0) return NULL;
  void *p;
  void *(*fn)(size_t) = NULL;
  if (ms->k) fn = s == MS_COMPUTE ? ms->k->alloc : ms->k->host_alloc;
  if (fn) {
    p = fn(bytes);
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
  void (*fn)(void *) = NULL;
  if (ms->k) fn = s == MS_COMPUTE ? ms->k->free : ms->k->host_free;
  if (fn) fn(p);
  else free(p);
  ms->cur[s][c] -= bytes;
  ms->cur_total[s] -= bytes;
}

/* host <-> compute through the table's upload/download, compute <-> compute through its
 * copy (whole floats) or, for an odd size, a round trip through the host (never hit by the
 * trainer: its buffers are float arrays); host <-> host is a memmove. */
void ms_copy(memspace *ms, mem_space dst_s, void *dst, mem_space src_s, const void *src,
             size_t bytes) {
  if (bytes == 0 || dst == src) return;
  const kernels *k = ms->k;
  if (k && dst_s == MS_COMPUTE && src_s == MS_COMPUTE) {
    if (bytes % 4 == 0) {
      k->copy(dst, src, bytes / 4);
    } else {
      void *tmp = xmalloc(bytes);
      k->download(tmp, src, bytes);
      k->upload(dst, tmp, bytes);
      free(tmp);
    }
  } else if (k && dst_s == MS_COMPUTE) {
    k->upload(dst, src, bytes);
  } else if (k && src_s == MS_COMPUTE) {
    k->download(dst, src, bytes);
  } else {
    memmove(dst, src, bytes);
  }
  ms->copied_bytes[dst_s][src_s] += bytes;
}

void ms_note_copy(memspace *ms, mem_space dst_s, mem_space src_s, uint64_t bytes) {
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
