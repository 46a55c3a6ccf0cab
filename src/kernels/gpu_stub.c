/* The C side of kernels/gpu.h: without CUDA there is no device. */
#include "kernels/gpu.h"

#include <stdio.h>

#include "kernels/kernels.h"

#ifdef SPECTRAIN_HAVE_CUDA
int gpu_built_with_cuda(void) { return 1; }
#else
int gpu_built_with_cuda(void) { return 0; }
static void why_(char *why, int why_len) {
  if (why) snprintf(why, (size_t)why_len, "spectrain was built without CUDA");
}
int gpu_device_count(char *why, int why_len) {
  why_(why, why_len);
  return 0;
}
int gpu_nccl_version(void) { return 0; }
int gpu_select_device(int local_rank, char *why, int why_len) {
  (void)local_rank;
  why_(why, why_len);
  return -1;
}
int gpu_current_device(void) { return -1; }
const char *gpu_device_name(void) { return "none"; }
double gpu_peak_bf16_flops(void) { return 0; }
void *gpu_compute_stream(void) { return NULL; }
void *gpu_comm_stream(void) { return NULL; }
const kernels *kernels_cuda(int bf16, char *why, int why_len) {
  (void)bf16;
  why_(why, why_len);
  return NULL;
}
#endif
