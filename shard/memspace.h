/* Memory spaces for the sharded trainer. COMPUTE is where kernels run (the kernel table's
 * allocator: host RAM for the CPU backend, device memory for CUDA); HOST is ordinary RAM.
 * With `offload: cpu` parameter shards, gradient shards and optimizer state live in HOST and
 * only gathered units (and the gradients being reduced) in COMPUTE; every move between the
 * two is an explicit ms_copy. On the CPU backend both spaces are RAM, but the buffers and
 * copies are still separate, so the offload path is exercised and tested exactly as CUDA will
 * run it.
 *
 * Every allocation names a category; the accounting (current and peak bytes per space and
 * category) is what the memory report prints next to the formula's prediction. */
#ifndef SPECTRAIN_SHARD_MEMSPACE_H
#define SPECTRAIN_SHARD_MEMSPACE_H
#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"

typedef enum { MS_HOST = 0, MS_COMPUTE = 1, MS_NSPACES = 2 } mem_space;

typedef enum {
  MC_PARAM_FROZEN = 0, /* frozen parameter shards */
  MC_PARAM_TRAIN,      /* trainable parameter shards (fp32: also the master copy) */
  MC_MASTER,           /* separate fp32 master copy (only when parameters are not fp32) */
  MC_GRAD,             /* gradient shards */
  MC_OPTIM,            /* AdamW m and v */
  MC_GATHER,           /* gathered unit parameters */
  MC_GRAD_FULL,        /* full-unit gradients before the reduce-scatter, and its output */
  MC_STAGING,          /* host staging for loads and offload copies */
  MC_ACT,              /* activations (reported by the model, not allocated here) */
  MC_NCAT
} mem_cat;

typedef struct {
  const kernels *k; /* compute allocator */
  uint64_t cur[MS_NSPACES][MC_NCAT], peak[MS_NSPACES][MC_NCAT];
  uint64_t cur_total[MS_NSPACES], peak_total[MS_NSPACES];
  uint64_t copied_bytes[MS_NSPACES][MS_NSPACES]; /* [dst][src] */
} memspace;

void ms_init(memspace *ms, const kernels *k);
/* Zeroed memory; out of memory is fatal (xmalloc's rule). bytes == 0 gives NULL. */
void *ms_alloc(memspace *ms, mem_space s, mem_cat c, size_t bytes);
void ms_free(memspace *ms, mem_space s, mem_cat c, void *p, size_t bytes);
void ms_copy(memspace *ms, mem_space dst_s, void *dst, mem_space src_s, const void *src,
             size_t bytes);
/* Record a copy of `bytes` that happened elsewhere (inside a collective that moves a host
 * shard to compute memory or a result back), so copied_bytes stays the whole traffic. */
void ms_note_copy(memspace *ms, mem_space dst_s, mem_space src_s, uint64_t bytes);
/* Record memory held elsewhere (activations) under a category. */
void ms_note(memspace *ms, mem_space s, mem_cat c, uint64_t bytes);
const char *ms_cat_name(mem_cat c);   /* "param_frozen", ... */
const char *ms_space_name(mem_space s); /* "host", "compute" */

#endif
