/* Checkpointing for `spectrain train`: the train_hooks (src/train.h) that save every
 * save_steps steps, at the end and on an agreed stop request, and restore before the first
 * step; plus choosing what to resume from (--resume auto|none|PATH) before training starts,
 * because the checkpoint's job may replace the given one (checkpoint.take_from_checkpoint). */
#ifndef SPECTRAIN_TRAIN_TRAIN_CKPT_H
#define SPECTRAIN_TRAIN_TRAIN_CKPT_H
#include "ckpt/ckpt.h"
#include "job/job.h"
#include "train/train.h"

typedef struct {
  const job_config *job; /* the job to train with: the given one or the checkpoint's */
  job_config stored;     /* the checkpoint's job (when resuming) */
  int have_stored;
  int64_t stored_max_steps; /* the checkpoint's run length, as its job gave it */
  double stored_epochs;
  char *resume_path;     /* the verified checkpoint to restore, NULL: start from the model */
  ckpt_meta meta;        /* its metadata */
  double t0;             /* when this run started (elapsed time in checkpoints) */
  train_hooks hooks;
} ckpt_train;

/* Collective. resume: the --resume option (NULL: the job's checkpoint.resume). Picks and
 * verifies the checkpoint in job->output_dir, compares its job with `job` (keys that only
 * affect how the run is executed may differ: sharding, logging, checkpoint, save/eval/log
 * intervals, backend, per-device batch and accumulation as long as the global batch is the
 * same; and the run's length, max_steps / num_train_epochs, with one line on the schedule) and either fails naming the keys or, with checkpoint.take_from_checkpoint, trains
 * with the checkpoint's job. Fills c->hooks.restore/save for train_run (the caller adds
 * stop_agreed: signal handling belongs to the command). */
int ckpt_train_prepare(ckpt_train *c, const job_config *job, const char *resume);
void ckpt_train_free(ckpt_train *c);

#endif
