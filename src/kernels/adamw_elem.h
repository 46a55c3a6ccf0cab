/* One AdamW update of one element, shared by the CPU loop (kernels/adamw.c: adamw_step) and the
 * CUDA kernel (kernels/cuda/kernels.cu), so both compute the same expression in the same
 * order. The math is in kernels/adamw.h. */
#ifndef SPECTRAIN_KERNELS_ADAMW_ELEM_H
#define SPECTRAIN_KERNELS_ADAMW_ELEM_H
#include <math.h>

#ifdef __CUDACC__
#define ADAMW_ELEM_FN static __host__ __device__ __forceinline__
#else
#define ADAMW_ELEM_FN static inline
#endif

/* The per-step constants: bias corrections folded into the step size and the second
 * moment's scale, decoupled weight decay as a factor. */
typedef struct {
  float beta1, beta2, eps;
  float step_size; /* lr / (1 - beta1^step) */
  float bc2_sqrt;  /* sqrt(1 - beta2^step) */
  float decay;     /* 1 - lr * weight_decay */
} adamw_coef;

static inline adamw_coef adamw_coef_make(float lr, float beta1, float beta2, float eps,
                                         float weight_decay, long step) {
  double bc1 = 1.0 - pow(beta1, (double)step);
  double bc2 = 1.0 - pow(beta2, (double)step);
  adamw_coef c = {beta1, beta2, eps, (float)(lr / bc1), (float)sqrt(bc2),
                  1.0f - lr * weight_decay};
  return c;
}

ADAMW_ELEM_FN void adamw_elem(float *param, float g, float *m, float *v, adamw_coef c) {
  float mi = c.beta1 * *m + (1.0f - c.beta1) * g;
  float vi = c.beta2 * *v + (1.0f - c.beta2) * g * g;
  *m = mi;
  *v = vi;
  float p = *param * c.decay;
  *param = p - c.step_size * (mi / (sqrtf(vi) / c.bc2_sqrt + c.eps));
}

#endif
