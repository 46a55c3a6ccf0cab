/* Optimizer math on flat float ranges: AdamW (as torch.optim.AdamW), the learning-rate
 * schedules of Hugging Face's get_scheduler, and global-norm gradient clipping (as
 * torch.nn.utils.clip_grad_norm_). Pure functions: the loop does the allreduce of the
 * squared norm and applies these to its local shards. */
#ifndef SPECTRAIN_MODEL_OPTIM_H
#define SPECTRAIN_MODEL_OPTIM_H
#include <stddef.h>

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

/* One AdamW step over n elements, `step` = 1-based count of updates including this one:
 *   p *= 1 - lr*weight_decay; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 *   p -= lr/(1-b1^step) * m / (sqrt(v)/sqrt(1-b2^step) + eps).
 * Call it per range with weight_decay = 0 for ranges that do not decay (norms, biases). */
void adamw_step(float *param, const float *grad, float *m, float *v, size_t n, float lr,
                float beta1, float beta2, float eps, float weight_decay, long step);

/* Sum of squares in double. */
double grad_sum_squares(const float *g, size_t n);
/* Clip coefficient for a global norm: min(1, max_norm / (total_norm + 1e-6)); 1 when
 * max_norm <= 0 (clipping off). Multiply every gradient by it. */
double grad_clip_coef(double total_norm, double max_norm);

#endif
