/* The C side of kernels/gpu.h: without CUDA there is no device. */
#include "kernels/gpu.h"

#include <stdio.h>

#ifdef SPECTRAIN_HAVE_CUDA
int gpu_built_with_cuda(void) { return 1; }
#else
int gpu_built_with_cuda(void) { return 0; }
int gpu_device_count(char *why, int why_len) {
  if (why) snprintf(why, (size_t)why_len, "spectrain was built without CUDA");
  return 0;
}
#endif
