/* FSDP-style sharded training state and step: each rank owns 1/N of every unit's frozen and
 * trainable buffer (shard/plan.h); a unit's parameters are all-gathered just before the
 * model computes it and released after; trainable gradients are reduce-scattered back into
 * gradient shards; AdamW runs on the local shards only.
 *
 * Schedule of one micro-step (units: 0 embedding, 1..L blocks, L+1 head):
 *   forward  F(0), F(1), ..., F(L+1)  (the head also needs unit 0 when embeddings are tied)
 *   backward B(L+1), B(L), ..., B(lowest)  (B(0) needs no parameters: only its gradient)
 * Before an op computes, the next ops' gathers are issued (non-blocking) while fewer than
 * 1 + prefetch units are alive (limit_all_gathers; unbounded when off). After an op, its
 * units are released unless the next op uses them (the head stays gathered from forward into
 * backward) or reshard_after_forward is off and a backward op will use them. After B(u),
 * u's trainable gradient buffer is reduce-scattered (non-blocking, completed after the next
 * op) and ADDED into u's gradient shard; with tied embeddings the head's gradient of the
 * shared matrix goes into unit 0's gradient shard the same way. Units below the lowest one
 * needing a gradient do no backward.
 *
 * Gradients are the plain sum over ranks: the caller folds every normalisation (1 / global
 * number of counted targets over ranks and accumulation steps) into the loss scale.
 *
 * Memory (shard/memspace.h). Without offload every shard lives in COMPUTE memory and all
 * shard math (gradient adds, norm, AdamW) runs through the compute kernel table f->k. With
 * `offload: cpu` parameter, gradient and optimizer shards live in HOST memory (pinned on
 * CUDA): a gather uploads the rank's shard into the compute gather buffer and the collective
 * runs there; a finished reduce-scatter is downloaded into the host gradient shard; the
 * gradient norm and AdamW run on the host with kernels_cpu() (OpenMP, vectorised), never
 * through the compute table. fsdp never dereferences compute memory on the host: pieces
 * (checkpoints) and whole tensors are handed out as host copies.
 *
 * Overlap with offload (opts.overlap_step): fsdp_step returns after the gradient norm and
 * runs the host AdamW in a background thread, unit 0 first; the next step's gather of unit
 * u (and any other use of u's shards) waits only for u's update, so the updates of the
 * later units run while the compute device does the forward of the earlier ones.
 * Gradient zeroing is lazy (the first reduce-scatter of a step overwrites instead of adding),
 * so fsdp_zero_grads never waits for the optimizer.
 *
 * bf16 mixed precision (opts.bf16, training.bf16; docs/sharding.md "bf16"): frozen parameter
 * shards are stored, offloaded and all-gathered in bf16 only (2 bytes per parameter, half the
 * gather traffic; loaded straight from the file's BF16 or rounded on reading); a trainable
 * shard is an fp32 master (param[PB_TRAIN], what AdamW, clipping and checkpoints see) plus
 * its bf16 copy (param16[PB_TRAIN] = the master rounded to nearest even, refreshed after
 * every update and restore) that is gathered. Gathered units are handed to the model as bf16
 * (unit_view.wb); the model context must be in bf16 mode. Gradients stay fp32 and are
 * reduce-scattered in fp32. Whole tensors and checkpoint pieces are fp32 as always (frozen
 * ones widened from bf16, exactly). */
#ifndef SPECTRAIN_SHARD_FSDP_H
#define SPECTRAIN_SHARD_FSDP_H
#include <stddef.h>
#include <stdint.h>

#include "io/safetensors.h"
#include "kernels/kernels.h"
#include "model/config.h"
#include "model/model.h"
#include "model/tensors.h"
#include "mpi/coll.h"
#include "shard/memspace.h"
#include "shard/plan.h"

typedef struct {
  /* 0: every shard in COMPUTE memory. 1 (`offload: cpu`): parameter, gradient and
   * optimizer shards in HOST memory. 2 (`offload: cpu_trainable`): only the trainable state (trainable parameter
   * shards, gradients, optimizer state) in HOST; frozen parameter shards stay in COMPUTE
   * (they cost 4 bytes per parameter there but save the host -> device upload of every
   * frozen unit at each gather: the better trade when few parameters train). */
  int offload;
  int prefetch;              /* units gathered ahead of the computing one (>= 0) */
  int limit_all_gathers;     /* 1: at most 1 + prefetch units gathered at once */
  int reshard_after_forward; /* 1: release after forward and re-gather in backward */
  /* Offload only: AdamW in a background host thread, overlapped with the next forward.
   * 0 auto (on when the compute backend is a device, i.e. "cuda"), 1 on, -1 off. */
  int overlap_step;
  /* 1: bf16 mixed precision (see above); 0: every parameter fp32. */
  int bf16;
  /* 1 (sharding.reduce_dtype: bf16): each unit's gradient is rounded to bf16 and
   * reduce-scattered (and, hybrid, all-reduced across replicas) in bf16, half the bytes; the
   * result is widened into the fp32 gradient shard. 0: fp32 (the default). */
  int reduce_bf16;
} fsdp_opts;

typedef struct {
  double beta1, beta2, eps, weight_decay;
  double max_grad_norm; /* <= 0: no clipping */
} fsdp_adamw;

typedef struct {
  float *param[PB_NKINDS];    /* [shard[k]] fp32 in the shard space; bf16 mode: only
                               * param[PB_TRAIN], the fp32 master (param[PB_FROZEN] NULL) */
  bf16_t *param16[PB_NKINDS]; /* bf16 mode: [shard[k]] the bf16 shards that are gathered
                               * (frozen: the only copy; trainable: the rounded master) */
  float *grad, *m, *v;        /* [shard[PB_TRAIN]] in the shard space; NULL when none */
} fsdp_shard;

typedef struct {
  int state;                /* 0 free, 1 gathering, 2 ready */
  float *buf[PB_NKINDS];    /* [padded[k]] compute (fp32 mode) */
  bf16_t *buf16[PB_NKINDS]; /* [padded[k]] compute (bf16 mode) */
  coll_req req[PB_NKINDS];
} fsdp_slot;

typedef struct {
  int dir;  /* 0 forward, 1 backward */
  int unit; /* the unit computed */
  int nneed;
  int need[2]; /* units whose parameters must be gathered */
} fsdp_op;

typedef struct {
  coll_req req;
  int unit;
  float *full; /* [padded[PB_TRAIN]] compute: the summed-over-the-unit gradient */
  float *out;  /* [shard[PB_TRAIN]] compute: reduce-scatter result (NULL with offload) */
  float *host; /* offload: [shard[PB_TRAIN]] host: where the result lands (the gradient
                * shard itself, or fsdp.staging when it is added on completion) */
  int staged;  /* host is fsdp.staging */
  /* reduce_bf16: [padded[PB_TRAIN]] / [shard[PB_TRAIN]] compute: the gradient rounded to bf16
   * (full, out and host are then NULL) and the bf16 reduce-scatter's result */
  bf16_t *full16, *out16;
} fsdp_rs;

struct fsdp_async; /* the background optimizer step (fsdp.c) */

typedef struct {
  const tensor_table *tt;
  const shard_plan *plan;
  const model_config *cfg;
  const kernels *k;  /* compute kernels: gathered units, activations, compute shards */
  const kernels *hk; /* host kernels (kernels_cpu()): math on host (offloaded) shards */
  fsdp_opts o;
  memspace ms;
  mem_space shard_space; /* trainable shards, gradients, optimizer state: MS_HOST with
                          * offload, else MS_COMPUTE */
  mem_space space[PB_NKINDS]; /* parameter shards per kind (frozen: HOST only for offload 1) */
  fsdp_shard *sh;        /* [n_units] */
  fsdp_slot *slot;       /* [n_units] */
  int live;              /* units gathered or gathering */
  int cap;               /* max live units for prefetching */
  int tied;
  int n_ops_train, n_ops_eval;
  fsdp_op *ops_train, *ops_eval;
  fsdp_rs rs[4];
  int n_rs;
  float *staging; /* host, [max shard[PB_TRAIN]] (offload: reduce-scatter results) */
  size_t staging_n;
  int staging_busy; /* offload: a reduce-scatter in flight lands in `staging` */
  uint64_t gathers, reduce_scatters; /* counts of unit-buffer collectives issued */
  unsigned char *grad_fresh; /* [n_units] 1: gradient shard logically zero (lazy zeroing) */
  float **mirror;            /* [4 * n_units * PB_NKINDS] host copies of compute shards */
  struct fsdp_async *async;  /* background optimizer step; NULL when not overlapping */
  uint64_t async_steps;      /* optimizer steps run in the background (tests, logs) */
} fsdp;

/* The memory formula (docs/sharding.md, "Memory per rank"): the bytes per rank of each
 * category fsdp_create and the step will hold for this plan and these options (MC_ACT is
 * the model's: left 0). Needs no fsdp, so a job can be checked before anything is
 * allocated. `host` (may be NULL): the part of each category in host memory (all of it when
 * the compute memory is host RAM, k->host_addressable). */
void fsdp_predict(const shard_plan *p, const kernels *k, const fsdp_opts *o, int tied,
                  uint64_t pred[MC_NCAT], uint64_t host[MC_NCAT]);

int fsdp_create(const tensor_table *tt, const shard_plan *plan, const model_config *cfg,
                const kernels *k, const fsdp_opts *o, fsdp *f);
void fsdp_free(fsdp *f);

/* Each rank reads its own slices from a safetensors model (collective only in agreeing on
 * the outcome: a rank's failure is reported on every rank). */
int fsdp_load(fsdp *f, const sft_model *m);
/* Fill every rank's shards from a function of (tensor index, flat element index). Tests. */
void fsdp_fill(fsdp *f, float (*value)(int tensor, uint64_t elem, void *arg), void *arg);

/* Forward and backward of one micro-batch (tokens, targets: (B, T) host arrays, B and T as
 * the model context was created with), adding gradients into the gradient shards. Adds the
 * loss sum and counted targets of this rank's micro-batch. Collective. */
int fsdp_forward_backward(fsdp *f, model_ctx *ctx, const int32_t *tokens,
                          const int32_t *targets, float loss_scale, double *loss_sum,
                          int64_t *n_counted);
/* Forward only (evaluation): adds loss sum and count. Collective. */
int fsdp_forward(fsdp *f, model_ctx *ctx, const int32_t *tokens, const int32_t *targets,
                 double *loss_sum, int64_t *n_counted);

void fsdp_zero_grads(fsdp *f);
/* Global gradient norm (one allreduce), clipping, then AdamW on the local trainable shards
 * (`step` = 1-based update count, lr for this update). *grad_norm = the norm before clipping.
 * With overlap the AdamW may still run when this returns; every fsdp call that touches a
 * unit's shards waits for that unit's update (fsdp_wait_step waits for all). A norm that is
 * NaN or infinite (the same on every rank: it is allreduced) updates nothing — parameters and
 * optimizer state stay as they were — and the caller sees it in *grad_norm. */
int fsdp_step(fsdp *f, const fsdp_adamw *h, double lr, long step, double *grad_norm);

/* Full tensors, gathered unit by unit (collective). out[i] for every tensor i of the table is
 * allocated (xmalloc) on `root` (every rank when root < 0) and NULL elsewhere; free with
 * fsdp_free_tensors. which: 0 parameters, 1 m, 2 v (optimizer state of trainable tensors;
 * NULL for frozen ones). */
int fsdp_gather_tensors(fsdp *f, int which, int root, float ***out);
/* Wait until a background optimizer step (if any) has updated every shard. */
void fsdp_wait_step(fsdp *f);
void fsdp_free_tensors(const fsdp *f, float **out);
/* Visit this rank's pieces of every tensor (checkpoint write and restore read exactly these
 * ranges): fn gets the tensor index, the first element and count inside the tensor (row-major
 * flat index), and a HOST pointer to those elements. which: 0 parameters, 1 m, 2 v,
 * 3 gradient (m, v, gradient: trainable tensors only). Stops at the first non-zero return of
 * fn and returns it. The pointers stay valid until fsdp_pieces_done: host shards (offload)
 * are handed out directly; compute shards as host copies (downloaded here), which
 * fsdp_pieces_done(f, 1) uploads back into the shards (after a restore wrote into them) and
 * fsdp_pieces_done(f, 0) drops. Call fsdp_pieces_done after every fsdp_foreach_piece. */
int fsdp_foreach_piece(fsdp *f, int which,
                       int (*fn)(int tensor, uint64_t first, uint64_t count, float *data,
                                 void *arg),
                       void *arg);
void fsdp_pieces_done(fsdp *f, int written);

/* The bytes each collective category is expected to move in one micro-step / one eval
 * forward under this schedule (logical bytes, as mpi/coll counts them). */
void fsdp_expected_bytes(const fsdp *f, int train, uint64_t *gather_bytes, uint64_t *rs_bytes);

#endif
