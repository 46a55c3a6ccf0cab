/* The CUDA side as seen from C. Defined in src/kernels/cuda/ when spectrain is built with
 * CUDA (SPECTRAIN_HAVE_CUDA), and as "no GPU" otherwise, so callers need no #ifdef. */
#ifndef SPECTRAIN_KERNELS_GPU_H
#define SPECTRAIN_KERNELS_GPU_H

/* Number of usable CUDA devices (0 when there is no driver or no GPU). Writes a short
 * reason into `why` (may be NULL) when it returns 0. */
int gpu_device_count(char *why, int why_len);
/* 1 when this binary was built with the CUDA backend. */
int gpu_built_with_cuda(void);

#endif
