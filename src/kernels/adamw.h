/* The optimizer's loops over flat float ranges on the host: one AdamW step (as
 * torch.optim.AdamW) and the sum of squares of a gradient (for the global norm). They are
 * the CPU kernel table's adamw / sum_squares and run on offloaded host shards; the element
 * update itself is kernels/adamw_elem.h, shared with the CUDA kernel. The schedules and the
 * clipping coefficient around them are model/optim.h's. */
#ifndef SPECTRAIN_KERNELS_ADAMW_H
#define SPECTRAIN_KERNELS_ADAMW_H
#include <stddef.h>

/* One AdamW step over n elements, `step` = 1-based count of updates including this one:
 *   p *= 1 - lr*weight_decay; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 *   p -= lr/(1-b1^step) * m / (sqrt(v)/sqrt(1-b2^step) + eps).
 * Call it per range with weight_decay = 0 for ranges that do not decay (norms, biases). */
void adamw_step(float *param, const float *grad, float *m, float *v, size_t n, float lr,
                float beta1, float beta2, float eps, float weight_decay, long step);

/* Sum of squares in double. */
double grad_sum_squares(const float *g, size_t n);
#endif
