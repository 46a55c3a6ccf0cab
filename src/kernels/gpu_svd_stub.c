/* The C side of kernels/gpu_svd.h: without CUDA there is no device. */
#include "kernels/gpu_svd.h"

#include <stdio.h>

#ifndef SPECTRAIN_HAVE_CUDA
int gpu_svdvals(const float *a_host_rowmajor, int64_t rows, int64_t cols, double *sv, char *why,
                int why_len) {
  (void)a_host_rowmajor;
  (void)rows;
  (void)cols;
  (void)sv;
  if (why && why_len > 0) snprintf(why, (size_t)why_len, "spectrain was built without CUDA");
  return GPU_SVD_EFAIL;
}
int64_t gpu_svd_max_elems(void) { return 0; }
#else
typedef int gpu_svd_stub_unused_; /* ISO C: a translation unit must declare something */
#endif
