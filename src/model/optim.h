/* Optimizer math: the learning-rate
 * schedules of Hugging Face's get_scheduler, and global-norm gradient clipping (as
 * torch.nn.utils.clip_grad_norm_). Pure functions: the loop does the allreduce of the
 * squared norm and applies these to its local shards. */
#ifndef SPECTRAIN_MODEL_OPTIM_H
#define SPECTRAIN_MODEL_OPTIM_H
#include <stddef.h>

#include "kernels/adamw.h" /* adamw_step, grad_sum_squares: the loops themselves */

typedef enum {
  LR_CONSTANT,             /* "constant" */
  LR_CONSTANT_WITH_WARMUP, /* "constant_with_warmup" */
  LR_LINEAR,               /* "linear": warmup then linear decay to 0 at max_steps */
  LR_COSINE                /* "cosine": warmup then half-cosine decay to 0 at max_steps */
} lr_schedule;

/* Parse a schedule name as Hugging Face spells it; 0 or -1. */
int lr_schedule_parse(const char *name, lr_schedule *out);
const char *lr_schedule_name(lr_schedule s);

/* The learning rate for the optimizer step that follows `step` completed steps (0-based:
 * the first update uses step = 0, which is lr 0 when warmup_steps > 0, as in HF). */
double lr_at_step(lr_schedule s, long step, long max_steps, long warmup_steps, double base_lr);

/* Clip coefficient for a global norm: min(1, max_norm / (total_norm + 1e-6)); 1 when
 * max_norm <= 0 (clipping off). Multiply every gradient by it. */
double grad_clip_coef(double total_norm, double max_norm);

#endif
