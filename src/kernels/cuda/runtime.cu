// The CUDA runtime side of kernels/gpu.h: device selection (one rank per GPU), the compute
// and communication streams, the cuBLAS handle, and what benchmarks need to know about the
// device (name, bf16 peak). gpu_device_count and gpu_nccl_version live in device.cu.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_check.h"
extern "C" {
#include "kernels/gpu.h"
}

namespace {
struct runtime_state {
  int device = -1;
  cudaStream_t compute = nullptr;
  cudaStream_t comm = nullptr;
  cublasHandle_t cublas = nullptr;
  void *cublas_ws = nullptr;
  char name[256] = "none";
  double peak_bf16 = 0;
};
runtime_state rt_;

// cuBLAS wants 32 MiB of workspace on Hopper (4 MiB is enough before it); one per handle.
constexpr size_t CUBLAS_WS_BYTES = (size_t)32 << 20;

// Dense (not 2:4 sparse) bf16 tensor-core FLOP per SM per clock, by compute capability.
double bf16_flop_per_sm_clock_(int major, int minor) {
  if (major == 8 && minor == 0) return 2048;  // A100, A800, A30
  if (major == 8) return 1024;                // sm_86 / 87 / 89 (A10, A40, L4, L40S, RTX)
  if (major == 9) return 4096;                // H100, H200, GH200
  if (major == 10) return 8192;               // B200
  return 0;
}

// Known parts by name first (the published dense bf16 peak), else SM count x clock x the
// per-SM rate of the architecture; 0 when neither is known.
double peak_bf16_(const cudaDeviceProp &p, int clock_khz) {
  const char *n = p.name;
  if (strstr(n, "H100") || strstr(n, "H200") || strstr(n, "H800") || strstr(n, "GH200"))
    // SXM 989 TFLOP/s; PCIe (H100) 756; NVL (H100 NVL, H200 NVL) 835 (datasheets' dense
    // figures, half the "with sparsity" numbers)
    return strstr(n, "PCIe") ? 756e12 : strstr(n, "NVL") ? 835e12 : 989e12;
  if (strstr(n, "A100") || strstr(n, "A800")) return 312e12;
  if (strstr(n, "L40S")) return 362e12;
  double per = bf16_flop_per_sm_clock_(p.major, p.minor);
  if (per <= 0 || clock_khz <= 0) return 0;
  return per * p.multiProcessorCount * (double)clock_khz * 1e3;
}

void why_(char *why, int why_len, const char *fmt, const char *a, const char *b) {
  if (why && why_len > 0) snprintf(why, (size_t)why_len, fmt, a, b);
}
}  // namespace

[[noreturn]] void cuda_die_(const char *expr, const char *what, int code, const char *file,
                            int line) {
  const char *base = strrchr(file, '/');
  // plain stderr: this library sits below spectrain_core (no util/err.h logging here)
  fprintf(stderr,
          "spectrain: error: CUDA: %s:%d: %s failed: %s (%d); the device context is unusable, "
          "aborting\n",
          base ? base + 1 : file, line, expr, what ? what : "?", code);
  fflush(stderr);
  abort();
}

// The current device is per host thread: a table call from another thread (an OpenMP
// worker, a progress thread) binds that thread to the selected device first.
static thread_local int bound_device_ = -1;
static inline void bind_thread_() {
  if (rt_.device >= 0 && bound_device_ != rt_.device) {
    CUDA_CHECK(cudaSetDevice(rt_.device));
    bound_device_ = rt_.device;
  }
}
cudaStream_t cuda_compute_stream_(void) {
  bind_thread_();
  return rt_.compute;
}
cublasHandle_t cuda_cublas_(void) {
  bind_thread_();
  return rt_.cublas;
}

extern "C" int gpu_select_device(int local_rank, char *why, int why_len) {
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count <= 0) {
    why_(why, why_len, "no CUDA device%s%s", e != cudaSuccess ? ": " : "",
         e != cudaSuccess ? cudaGetErrorString(e) : "");
    cudaGetLastError();
    return -1;
  }
  int dev = (local_rank < 0 ? 0 : local_rank) % count;
  if (rt_.device >= 0) {
    if (rt_.device == dev) return dev;
    char a[32], b[32];
    snprintf(a, sizeof a, "%d", rt_.device);
    snprintf(b, sizeof b, "%d", dev);
    why_(why, why_len, "this process is already bound to CUDA device %s, cannot switch to %s",
         a, b);
    return -1;
  }
  // Each step says what failed; on failure everything created so far is released.
  const char *step = "cudaSetDevice";
  cudaStream_t compute = nullptr, comm = nullptr;
  cublasHandle_t h = nullptr;
  void *ws = nullptr;
  cublasStatus_t bs = CUBLAS_STATUS_SUCCESS;
  cudaDeviceProp prop;
  int clock_khz = 0;
  if ((e = cudaSetDevice(dev)) != cudaSuccess) goto cuda_fail;
  step = "cudaStreamCreateWithFlags(compute)";
  if ((e = cudaStreamCreateWithFlags(&compute, cudaStreamNonBlocking)) != cudaSuccess)
    goto cuda_fail;
  step = "cudaStreamCreateWithFlags(comm)";
  if ((e = cudaStreamCreateWithFlags(&comm, cudaStreamNonBlocking)) != cudaSuccess)
    goto cuda_fail;
  step = "cudaMalloc(cuBLAS workspace)";
  if ((e = cudaMalloc(&ws, CUBLAS_WS_BYTES)) != cudaSuccess) goto cuda_fail;
  step = "cudaGetDeviceProperties";
  if ((e = cudaGetDeviceProperties(&prop, dev)) != cudaSuccess) goto cuda_fail;
  if (cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, dev) != cudaSuccess) {
    cudaGetLastError();
    clock_khz = 0;
  }
  step = "cublasCreate";
  if ((bs = cublasCreate(&h)) != CUBLAS_STATUS_SUCCESS) goto blas_fail;
  // cublasSetStream resets the workspace to cuBLAS's own pool: set the stream first.
  step = "cublasSetStream";
  if ((bs = cublasSetStream(h, compute)) != CUBLAS_STATUS_SUCCESS) goto blas_fail;
  step = "cublasSetWorkspace";
  if ((bs = cublasSetWorkspace(h, ws, CUBLAS_WS_BYTES)) != CUBLAS_STATUS_SUCCESS)
    goto blas_fail;
  step = "cublasSetPointerMode";
  if ((bs = cublasSetPointerMode(h, CUBLAS_POINTER_MODE_HOST)) != CUBLAS_STATUS_SUCCESS)
    goto blas_fail;

  rt_.device = dev;
  bound_device_ = dev;
  rt_.compute = compute;
  rt_.comm = comm;
  rt_.cublas = h;
  rt_.cublas_ws = ws;
  snprintf(rt_.name, sizeof rt_.name, "%s", prop.name);
  rt_.peak_bf16 = peak_bf16_(prop, clock_khz);
  return dev;

cuda_fail:
  why_(why, why_len, "CUDA device setup: %s failed: %s", step, cudaGetErrorString(e));
  goto cleanup;
blas_fail:
  why_(why, why_len, "CUDA device setup: %s failed: %s", step, cublasGetStatusString(bs));
cleanup:
  cudaGetLastError();
  if (h) cublasDestroy(h);
  if (ws) cudaFree(ws);
  if (comm) cudaStreamDestroy(comm);
  if (compute) cudaStreamDestroy(compute);
  cudaGetLastError();
  return -1;
}

extern "C" int gpu_current_device(void) { return rt_.device; }
extern "C" const char *gpu_device_name(void) { return rt_.name; }
extern "C" double gpu_peak_bf16_flops(void) { return rt_.peak_bf16; }
extern "C" void *gpu_compute_stream(void) { return (void *)rt_.compute; }
extern "C" void *gpu_comm_stream(void) { return (void *)rt_.comm; }
