// Internal to src/kernels/cuda: error checks and the runtime's shared objects.
//
// The kernel table (kernels.h) has no error return: a failed CUDA or cuBLAS call leaves the
// context unusable (a launch error or an illegal address is sticky), so, like xmalloc on
// out-of-memory, the check prints what failed, where and why, and aborts. Allocation
// failures are not errors of this kind: alloc and host_alloc return NULL.
#ifndef SPECTRAIN_KERNELS_CUDA_CHECK_H
#define SPECTRAIN_KERNELS_CUDA_CHECK_H
#include <cublas_v2.h>
#include <cuda_runtime.h>

[[noreturn]] void cuda_die_(const char *expr, const char *what, int code, const char *file,
                            int line);

#define CUDA_CHECK(expr)                                                           \
  do {                                                                             \
    cudaError_t e_ = (expr);                                                       \
    if (e_ != cudaSuccess)                                                         \
      cuda_die_(#expr, cudaGetErrorString(e_), (int)e_, __FILE__, __LINE__);       \
  } while (0)

#define CUBLAS_CHECK(expr)                                                         \
  do {                                                                             \
    cublasStatus_t s_ = (expr);                                                    \
    if (s_ != CUBLAS_STATUS_SUCCESS)                                               \
      cuda_die_(#expr, cublasGetStatusString(s_), (int)s_, __FILE__, __LINE__);    \
  } while (0)

// After a kernel launch: configuration errors show at once, faults at the next sync.
#define CUDA_LAUNCH_CHECK(name)                                                    \
  do {                                                                             \
    cudaError_t e_ = cudaGetLastError();                                           \
    if (e_ != cudaSuccess)                                                         \
      cuda_die_("launch of " name, cudaGetErrorString(e_), (int)e_, __FILE__,     \
                __LINE__);                                                         \
  } while (0)

// The objects gpu_select_device created (runtime.cu); valid only after it succeeded.
cudaStream_t cuda_compute_stream_(void);
cublasHandle_t cuda_cublas_(void);

#endif
