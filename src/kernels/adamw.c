/* The optimizer's host loops (kernels/adamw.h). Vectorised with OpenMP SIMD: built with
 * -fno-trapping-math -fno-math-errno like the CPU kernels (CMakeLists.txt). */
#include "kernels/adamw.h"

#include "kernels/adamw_elem.h"

void adamw_step(float *param, const float *grad, float *m, float *v, size_t n, float lr,
                float beta1, float beta2, float eps, float weight_decay, long step) {
  adamw_coef c = adamw_coef_make(lr, beta1, beta2, eps, weight_decay, step);
#pragma omp parallel for simd schedule(static)
  for (size_t i = 0; i < n; i++) adamw_elem(&param[i], grad[i], &m[i], &v[i], c);
}

double grad_sum_squares(const float *g, size_t n) {
  double s = 0;
#pragma omp parallel for simd schedule(static) reduction(+ : s)
  for (size_t i = 0; i < n; i++) s += (double)g[i] * g[i];
  return s;
}
