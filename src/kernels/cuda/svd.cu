// Singular values with cuSOLVER for the Spectrum scan (kernels/gpu_svd.h).
//
// The CPU path (spectrum/snr.c) hands LAPACKE_dgesdd the row-major rows x cols matrix W as
// the column-major cols x rows matrix W^T (same singular values). cuSOLVER's gesvd needs
// m >= n, so:
//   cols >= rows: A = W^T, column-major m = cols, n = rows, lda = cols: W's bytes as they are;
//   rows >  cols: A = W,   column-major m = rows, n = cols, lda = rows: W transposed on the
//                 device while it is converted from float to double.
// Either way A is m x n with m >= n and min(rows, cols) = n singular values come back.
// The conversion streams W through a bounded float staging buffer, so the device holds the
// double matrix, one staging chunk, and (after the staging buffer is freed) the workspace.
#include <cuda_runtime.h>
#include <cusolverDn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <algorithm>
#include <functional>

extern "C" {
#include "kernels/gpu_svd.h"
}
#include "kernels/gpu_svd_layout.h"

namespace {

const size_t kStagingBytes = (size_t)64 << 20;   // float chunk of W uploaded at a time
const uint64_t kReserveBytes = (uint64_t)1 << 30;  // context, handle, fragmentation

void say(char *why, int why_len, const char *fmt, const char *a, long long b) {
  if (why && why_len > 0) snprintf(why, (size_t)why_len, fmt, a, b);
}

// dst (double, column-major, see gpu_svd_layout.h) gets rows [r0, r0 + nr) of W (row-major,
// cols wide), which src holds contiguously (nr * cols floats). Grid-stride over size_t
// indices: any size.
__global__ void convert_rows(const float *__restrict__ src, double *__restrict__ dst, int64_t r0,
                             int64_t nr, int64_t rows, int64_t cols, int transpose) {
  size_t total = (size_t)nr * (size_t)cols;
  size_t stride = (size_t)gridDim.x * (size_t)blockDim.x;
  for (size_t k = (size_t)blockIdx.x * blockDim.x + threadIdx.x; k < total; k += stride)
    dst[gpu_svd_dst_index(k, r0, rows, cols, transpose)] = (double)src[k];
}

struct Resources {
  double *d_a = nullptr, *d_s = nullptr;
  float *d_stage = nullptr;
  void *d_work = nullptr, *h_work = nullptr;
  int *d_info = nullptr;
  cusolverDnHandle_t handle = nullptr;
  cusolverDnParams_t params = nullptr;
  cudaStream_t stream = nullptr;
  ~Resources() {
    // best effort: errors here cannot change the result any more
    if (stream) cudaStreamSynchronize(stream);
    cudaFree(d_a);
    cudaFree(d_s);
    cudaFree(d_stage);
    cudaFree(d_work);
    cudaFree(d_info);
    free(h_work);
    if (params) cusolverDnDestroyParams(params);
    if (handle) cusolverDnDestroy(handle);
    if (stream) cudaStreamDestroy(stream);
  }
};

const char *cusolver_name(cusolverStatus_t s) {
  switch (s) {
    case CUSOLVER_STATUS_SUCCESS: return "CUSOLVER_STATUS_SUCCESS";
    case CUSOLVER_STATUS_NOT_INITIALIZED: return "CUSOLVER_STATUS_NOT_INITIALIZED";
    case CUSOLVER_STATUS_ALLOC_FAILED: return "CUSOLVER_STATUS_ALLOC_FAILED";
    case CUSOLVER_STATUS_INVALID_VALUE: return "CUSOLVER_STATUS_INVALID_VALUE";
    case CUSOLVER_STATUS_ARCH_MISMATCH: return "CUSOLVER_STATUS_ARCH_MISMATCH";
    case CUSOLVER_STATUS_EXECUTION_FAILED: return "CUSOLVER_STATUS_EXECUTION_FAILED";
    case CUSOLVER_STATUS_INTERNAL_ERROR: return "CUSOLVER_STATUS_INTERNAL_ERROR";
    case CUSOLVER_STATUS_NOT_SUPPORTED: return "CUSOLVER_STATUS_NOT_SUPPORTED";
    default: return "cuSOLVER error";
  }
}

}  // namespace

// A CUDA runtime call; on failure: the reason, and ENOMEM for an allocation that failed.
#define CU(call)                                                                            \
  do {                                                                                      \
    cudaError_t e_ = (call);                                                                \
    if (e_ != cudaSuccess) {                                                                \
      say(why, why_len, "%s (CUDA error %lld in " #call ")", cudaGetErrorString(e_),        \
          (long long)e_);                                                                   \
      int oom_ = e_ == cudaErrorMemoryAllocation;                                           \
      cudaGetLastError(); /* clear a non-sticky error so the next matrix starts clean */   \
      return oom_ ? GPU_SVD_ENOMEM : GPU_SVD_EFAIL;                                         \
    }                                                                                       \
  } while (0)
#define CS(call)                                                                            \
  do {                                                                                      \
    cusolverStatus_t s_ = (call);                                                           \
    if (s_ != CUSOLVER_STATUS_SUCCESS) {                                                    \
      say(why, why_len, "%s (status %lld in " #call ")", cusolver_name(s_), (long long)s_); \
      return s_ == CUSOLVER_STATUS_ALLOC_FAILED ? GPU_SVD_ENOMEM : GPU_SVD_EFAIL;           \
    }                                                                                       \
  } while (0)

extern "C" int64_t gpu_svd_max_elems(void) {
  size_t free_b = 0, total_b = 0;
  int dev = -1;
  if (cudaGetDevice(&dev) != cudaSuccess || cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  uint64_t fixed = kReserveBytes + kStagingBytes;
  if ((uint64_t)free_b <= fixed) return 0;
  // mat + mat / 8 per element = 9 bytes; the (m + n) terms are left to the 1 GiB reserve
  return (int64_t)(((uint64_t)free_b - fixed) / 9);
}

extern "C" int gpu_svdvals(const float *a, int64_t rows, int64_t cols, double *sv, char *why,
                           int why_len) {
  if (why && why_len > 0) why[0] = 0;
  if (!a || !sv || rows < 1 || cols < 1) {
    say(why, why_len, "gpu_svdvals: %s (rows %lld)", "expected a non-empty matrix",
        (long long)rows);
    return GPU_SVD_EFAIL;
  }
  const gpu_svd_layout lay = gpu_svd_layout_of(rows, cols);
  const int transpose = lay.transpose;
  const int64_t m = lay.m, n = lay.n;
  const size_t elems = (size_t)m * (size_t)n;
  Resources r;
  CU(cudaStreamCreateWithFlags(&r.stream, cudaStreamNonBlocking));
  CU(cudaMalloc((void **)&r.d_a, elems * sizeof(double)));
  CU(cudaMalloc((void **)&r.d_s, (size_t)n * sizeof(double)));
  CU(cudaMalloc((void **)&r.d_info, sizeof(int)));

  // W -> A in chunks of whole rows of W (at least one row, however wide). Tests shrink the
  // staging buffer (SPECTRAIN_TEST_GPU_SVD_STAGE_BYTES) to run the chunk loop on small matrices.
  size_t stage_bytes = kStagingBytes;
  const char *env = getenv("SPECTRAIN_TEST_GPU_SVD_STAGE_BYTES");
  if (env && atoll(env) > 0 && (size_t)atoll(env) < kStagingBytes) stage_bytes = (size_t)atoll(env);
  const int64_t chunk_rows = gpu_svd_chunk_rows(rows, cols, stage_bytes);
  CU(cudaMalloc((void **)&r.d_stage, (size_t)chunk_rows * (size_t)cols * sizeof(float)));
  for (int64_t r0 = 0; r0 < rows; r0 += chunk_rows) {
    int64_t nr = rows - r0 < chunk_rows ? rows - r0 : chunk_rows;
    size_t cnt = (size_t)nr * (size_t)cols;
    // Same stream: the next chunk's copy into d_stage starts after this chunk's kernel.
    CU(cudaMemcpyAsync(r.d_stage, a + (size_t)r0 * (size_t)cols, cnt * sizeof(float),
                       cudaMemcpyHostToDevice, r.stream));
    size_t blocks = (cnt + 255) / 256;
    if (blocks > 65535) blocks = 65535;
    convert_rows<<<(unsigned)blocks, 256, 0, r.stream>>>(r.d_stage, r.d_a, r0, nr, rows, cols,
                                                         transpose);
    CU(cudaGetLastError());
  }
  CU(cudaStreamSynchronize(r.stream));
  CU(cudaFree(r.d_stage));
  r.d_stage = nullptr;

  CS(cusolverDnCreate(&r.handle));
  CS(cusolverDnSetStream(r.handle, r.stream));
  CS(cusolverDnCreateParams(&r.params));
  // jobu = jobvt = 'N': U and VT are never referenced; their leading dimensions are given as
  // a full U (m x m) and VT (n x n) would have them, which any argument check accepts.
  size_t dev_bytes = 0, host_bytes = 0;
  CS(cusolverDnXgesvd_bufferSize(r.handle, r.params, 'N', 'N', m, n, CUDA_R_64F, r.d_a, m,
                                 CUDA_R_64F, r.d_s, CUDA_R_64F, nullptr, m, CUDA_R_64F, nullptr,
                                 n, CUDA_R_64F, &dev_bytes, &host_bytes));
  CU(cudaMalloc(&r.d_work, dev_bytes > 0 ? dev_bytes : 1));
  if (host_bytes > 0) {
    r.h_work = malloc(host_bytes);
    if (!r.h_work) {
      say(why, why_len, "%s: %lld bytes", "cannot allocate cuSOLVER's host workspace",
          (long long)host_bytes);
      return GPU_SVD_ENOMEM;
    }
  }
  CS(cusolverDnXgesvd(r.handle, r.params, 'N', 'N', m, n, CUDA_R_64F, r.d_a, m, CUDA_R_64F,
                      r.d_s, CUDA_R_64F, nullptr, m, CUDA_R_64F, nullptr, n, CUDA_R_64F,
                      r.d_work, dev_bytes, r.h_work, host_bytes, r.d_info));
  int info = 0;
  CU(cudaMemcpyAsync(&info, r.d_info, sizeof info, cudaMemcpyDeviceToHost, r.stream));
  CU(cudaMemcpyAsync(sv, r.d_s, (size_t)n * sizeof(double), cudaMemcpyDeviceToHost, r.stream));
  CU(cudaStreamSynchronize(r.stream));
  if (info < 0) {
    say(why, why_len, "%s %lld (a bug in svd.cu)", "cusolverDnXgesvd: invalid parameter",
        (long long)-info);
    return GPU_SVD_EFAIL;
  }
  if (info > 0) {
    say(why, why_len, "%s (%lld superdiagonals left)",
        "cusolverDnXgesvd: the bidiagonal QR iteration did not converge", (long long)info);
    return GPU_SVD_ENOCONV;
  }
  for (int64_t i = 0; i < n; i++)
    if (!(sv[i] >= 0)) {  // also NaN
      say(why, why_len, "%s (at index %lld)",
          "cusolverDnXgesvd returned a singular value that is negative or NaN", (long long)i);
      return GPU_SVD_EFAIL;
    }
  // documented as descending; the SNR takes sv[0] as the largest, so make sure of it
  std::sort(sv, sv + n, std::greater<double>());
  return GPU_SVD_OK;
}
