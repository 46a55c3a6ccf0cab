/* The training loop (`spectrain train`): one rank or many, the same code (N = 1 is FSDP with
 * one shard). Loads the job, the model directory and the trainable set, builds and agrees on
 * the shard plan, trains, evaluates, logs, and exports the trained model.
 *
 * Global batch of one optimizer step: per_device_train_batch_size (B) x ranks (N) x
 * gradient_accumulation_steps (A) samples. Step s uses global positions
 * [s*B*N*A, (s+1)*B*N*A) of the data order (io/data.h: a pure function of seed and
 * position); micro-step m of rank r takes positions s*B*N*A + (m*N + r)*B + [0, B). The loss
 * is normalised by the number of counted targets of the whole global batch (one allreduce
 * before backward), so any (N, A) with the same B*N*A computes the same update.
 *
 * Hooks (checkpointing, stop requests) are function pointers the caller fills; everything a
 * checkpoint must save besides the shards is in train_state. */
#ifndef SPECTRAIN_TRAIN_TRAIN_H
#define SPECTRAIN_TRAIN_TRAIN_H
#include <stdint.h>

#include "job/job.h"
#include "io/data.h"
#include "kernels/kernels.h"
#include "model/config.h"
#include "model/model.h"
#include "model/tensors.h"
#include "mpi/comm.h"
#include "shard/fsdp.h"
#include "shard/plan.h"

/* What resuming needs besides parameters and optimizer moments (which live in the shards:
 * fsdp_foreach_piece). The data position is a pure function of `step` and the job (seed,
 * batch sizes, rank count do not matter beyond B*N*A), the learning rate of `step` and the
 * schedule; there is no other randomness. */
typedef struct {
  int64_t step;            /* optimizer steps completed */
  int64_t total_steps;     /* of the whole run */
  int64_t warmup_steps;    /* resolved (warmup_steps, else ceil(warmup_ratio * total)) */
  uint64_t samples_seen;   /* global data position of the next step = step * global batch */
  uint64_t global_batch;   /* B * N * A samples per step */
  uint64_t tokens_seen;    /* counted targets trained on so far */
  uint64_t data_seed;      /* training.seed */
  double elapsed_s;        /* training time of earlier runs (resume) */
  double last_loss, last_val_loss; /* NaN when none yet */
} train_state;

typedef struct train_ctx train_ctx;

typedef struct {
  /* Restore shards (fsdp_foreach_piece) and *state from a checkpoint before the first step;
   * 0 = nothing to restore or restored, else an error. Collective. May be NULL. */
  int (*restore)(train_ctx *t, void *arg);
  /* Write a checkpoint: called after steps that are multiples of save_steps, at the end, and
   * when a stop was agreed. reason: "step", "final", "stop". Collective. May be NULL. */
  int (*save)(train_ctx *t, const char *reason, void *arg);
  /* At every step boundary: 1 on every rank when the run must stop now (agreed: one
   * allreduce), else 0. May be NULL. */
  int (*stop_agreed)(void *arg);
  void *arg;
} train_hooks;

struct train_ctx {
  const job_config *job;
  model_config cfg;
  tensor_table tt;
  shard_plan plan;
  fsdp fs;
  const kernels *k;
  model_ctx *mctx, *ectx; /* train (B, T) and eval (B_eval, T, no backward) */
  data_job data;
  train_state st;
  int nranks, rank;
  comm_place *place;      /* [nranks]: every rank's host and node-local rank */
  int nhosts;             /* distinct hosts among the ranks */
  int stopped;            /* the run ended on an agreed stop request */
  char *snr_json_path;    /* the Spectrum scan's results JSON when train ran the scan, else NULL */
  uint64_t step_comm_bytes[COLL_NCAT]; /* logical bytes the last train_step moved */
  uint64_t step_link_bytes[COLL_NLINK]; /* what this rank sent in it, per link class (model) */
  coll_groups groups;     /* shard groups (sharding.strategy): the plan shards over one */
  int nonfinite;          /* the last train_step's loss or grad norm was NaN/Inf: it applied
                             nothing and advanced nothing (train_run stops or skips) */
  int64_t skipped_steps;  /* steps skipped so (training.on_nonfinite: skip) in this run */
};

/* Run the whole job. Returns 0, ST_EINPUT (bad inputs, every rank alike), ST_ERUNTIME, or
 * ST_STOPPED when a stop request ended the run early (after the "stop" save hook). */
int train_run(const job_config *job, const train_hooks *hooks);

/* The run's length as the job defines it: training.max_steps when > 0, else
 * ceil(num_train_epochs x samples per epoch / global batch) (at least 1 step); warmup:
 * training.warmup_steps when > 0, else ceil(warmup_ratio x total). */
void train_total_steps(const job_config *j, uint64_t n_train, uint64_t global_batch,
                       int64_t *total, int64_t *warmup);

/* Pieces, for tests and other commands. */
int train_setup(train_ctx *t, const job_config *job);
void train_teardown(train_ctx *t);
/* One optimizer step (collective): fills loss (mean over the global batch) and grad norm.
 * When either is NaN or infinite (every rank sees the same: both are allreduced) the step
 * updates nothing, leaves the step counter and data position alone and sets t->nonfinite;
 * train_run then stops (exit 1) or skips the batch (training.on_nonfinite). */
int train_step(train_ctx *t, double *loss, double *grad_norm, double *lr);
/* Mean validation loss over the job's validation set (collective); NaN when there is none. */
int train_eval(train_ctx *t, double *val_loss);
/* Write OUTPUT_DIR-style Hugging Face directory `dir` (config.json + model.safetensors) from
 * the current shards (collective; rank 0 writes). */
int train_export_hf(train_ctx *t, const char *dir);

#endif
