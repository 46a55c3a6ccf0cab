/* Singular values on the GPU with cuSOLVER (the Spectrum scan's per-rank path, see
 * spectrum/scan.c). Defined in src/kernels/cuda/svd.cu when spectrain is built with CUDA,
 * and as "no GPU" in gpu_svd_stub.c otherwise, so callers need no #ifdef. Everything runs on
 * the calling process's current CUDA device (gpu_select_device, kernels/gpu.h, binds it). */
#ifndef SPECTRAIN_KERNELS_GPU_SVD_H
#define SPECTRAIN_KERNELS_GPU_SVD_H
#include <stdint.h>

enum {
  GPU_SVD_OK = 0,
  GPU_SVD_ENOMEM = 1,   /* the matrix and workspace do not fit the device now: use the CPU */
  GPU_SVD_ENOCONV = 2,  /* the bidiagonal QR iteration did not converge (devInfo > 0) */
  GPU_SVD_EFAIL = 3,    /* any other CUDA / cuSOLVER failure, or no CUDA in this build */
};

/* Singular values, descending, of the row-major rows x cols matrix a (host memory, float as
 * Spectrum upcasts the weights), computed in double (cusolverDnXgesvd, jobu = jobvt = 'N') as
 * the CPU path (LAPACKE_dgesdd) does: sv gets min(rows, cols) values. rows, cols >= 1.
 * Returns GPU_SVD_*; `why` (may be NULL) gets the reason of a failure. */
int gpu_svdvals(const float *a_host_rowmajor, int64_t rows, int64_t cols, double *sv, char *why,
                int why_len);
/* The largest element count rows * cols that gpu_svdvals can take on the current device
 * with the memory free now (the double matrix, cuSOLVER's workspace estimated from the
 * matrix, a staging buffer and a reserve for the context); 0 without a usable device. */
int64_t gpu_svd_max_elems(void);

#endif
