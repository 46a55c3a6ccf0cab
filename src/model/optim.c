/* AdamW, learning-rate schedules and clipping, as torch.optim.AdamW,
 * transformers.get_scheduler and torch.nn.utils.clip_grad_norm_ compute them. */
#include "model/optim.h"

#include <math.h>
#include <string.h>


static const char *const lr_names_[] = {"constant", "constant_with_warmup", "linear", "cosine"};

int lr_schedule_parse(const char *name, lr_schedule *out) {
  for (int i = 0; i < 4; i++)
    if (strcmp(name, lr_names_[i]) == 0) {
      *out = (lr_schedule)i;
      return 0;
    }
  return -1;
}

const char *lr_schedule_name(lr_schedule s) {
  return (unsigned)s < 4 ? lr_names_[s] : "?";
}

static double max1_(double x) { return x > 1.0 ? x : 1.0; }

double lr_at_step(lr_schedule s, long step, long max_steps, long warmup_steps, double base_lr) {
  double f = 1.0;
  if (s != LR_CONSTANT && step < warmup_steps) {
    f = (double)step / max1_((double)warmup_steps);
  } else if (s == LR_LINEAR) {
    f = (double)(max_steps - step) / max1_((double)(max_steps - warmup_steps));
    if (f < 0) f = 0;
  } else if (s == LR_COSINE) { /* num_cycles = 0.5 */
    double progress = (double)(step - warmup_steps) / max1_((double)(max_steps - warmup_steps));
    f = 0.5 * (1.0 + cos(M_PI * 0.5 * 2.0 * progress));
    if (f < 0) f = 0;
  }
  return base_lr * f;
}

double grad_clip_coef(double total_norm, double max_norm) {
  if (!(max_norm > 0)) return 1.0;
  double c = max_norm / (total_norm + 1e-6);
  return c < 1.0 ? c : 1.0;
}
