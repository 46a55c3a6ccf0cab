// Device discovery for the CUDA backend.
#include <cuda_runtime.h>
#include <nccl.h>
#include <stdio.h>

extern "C" int gpu_device_count(char *why, int why_len) {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    if (why) snprintf(why, (size_t)why_len, "%s", cudaGetErrorString(e));
    cudaGetLastError();  // clear the sticky error so later probes start clean
    return 0;
  }
  if (n == 0 && why) snprintf(why, (size_t)why_len, "no CUDA device");
  return n;
}

extern "C" int gpu_nccl_version(void) {
  int v = 0;
  ncclGetVersion(&v);
  return v;
}
