/* The shard plan: how every tensor of the model lies in flat per-unit buffers and which
 * slice of each buffer a rank owns.
 *
 * Units follow model/tensors.h (0 = embedding, 1 + l = block l, L + 1 = head). Inside a
 * unit the tensors are laid out in model order in two flat buffers: FROZEN and TRAINABLE
 * (by tensor_desc.trainable). Each buffer is padded to a multiple of PLAN_ALIGN * nranks
 * floats (zeros at the end), so every rank's slice has the same length and starts 64-byte
 * aligned; rank r owns elements [r * shard, (r + 1) * shard). A unit with no frozen (or no
 * trainable) tensor has an empty buffer of that kind and never communicates it.
 *
 * The plan is a pure function of (tensor table with trainable flags, nranks): every rank
 * builds it alone, then plan_agree proves it identical on all ranks (hash min/max) before
 * the first collective that depends on it. */
#ifndef SPECTRAIN_SHARD_PLAN_H
#define SPECTRAIN_SHARD_PLAN_H
#include <stddef.h>
#include <stdint.h>

#include "model/tensors.h"

#define PLAN_ALIGN 16 /* floats: every shard is a multiple of 64 bytes */

typedef enum { PB_FROZEN = 0, PB_TRAIN = 1, PB_NKINDS = 2 } plan_buf;

typedef struct {
  int unit;
  plan_buf buf;    /* which flat buffer of its unit holds the tensor */
  uint64_t offset; /* element offset inside that buffer */
  uint64_t numel;
} plan_tensor;

/* A run of elements of this rank's shard that belongs to one tensor (AdamW weight decay is
 * per tensor; loading reads per tensor). */
typedef struct {
  int tensor;           /* index into the tensor table */
  uint64_t shard_off;   /* element offset inside the rank's shard */
  uint64_t tensor_off;  /* first element of the tensor (row-major flat index) */
  uint64_t count;
} plan_seg;

typedef struct {
  uint64_t numel[PB_NKINDS];  /* sum of the tensors' elements */
  uint64_t padded[PB_NKINDS]; /* buffer length: numel rounded up to PLAN_ALIGN * nranks */
  uint64_t shard[PB_NKINDS];  /* padded / nranks: the per-rank slice */
  /* This rank's segments, per buffer kind: seg[k][0 .. nseg[k]) in shard order. */
  int nseg[PB_NKINDS];
  plan_seg *seg[PB_NKINDS];
} plan_unit;

typedef struct {
  int nranks, rank;
  int n_units;
  int n_tensors;
  plan_unit *units;     /* [n_units] */
  plan_tensor *tensors; /* [n_tensors], same order as the tensor table */
  int lowest_grad_unit; /* lowest unit with a trainable tensor; n_units when none */
  uint64_t hash;        /* over names, shapes, units, trainable flags, layout and nranks */
} shard_plan;

/* Build the plan of `tt` for nranks ranks as seen by `rank`. */
int plan_build(const tensor_table *tt, int nranks, int rank, shard_plan *p);
void plan_free(shard_plan *p);

/* Prove that every rank built the same plan (collective). On a mismatch every rank returns
 * ST_EINPUT with a message naming the first tensor that differs and how (its trainable
 * flag, shape or name on rank 0 and on the differing rank), or the rank count. */
int plan_agree(const shard_plan *p, const tensor_table *tt);

/* Totals over all units, per buffer kind, in elements. */
uint64_t plan_total_numel(const shard_plan *p, plan_buf k);
uint64_t plan_total_padded(const shard_plan *p, plan_buf k);
uint64_t plan_total_shard(const shard_plan *p, plan_buf k);
/* Largest padded unit (frozen + trainable) in elements: the size of one gather buffer. */
uint64_t plan_max_unit_padded(const shard_plan *p);

#endif
