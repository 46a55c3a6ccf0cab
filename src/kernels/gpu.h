/* The CUDA side as seen from C. Defined in src/kernels/cuda/ when spectrain is built with
 * CUDA (SPECTRAIN_HAVE_CUDA), and as "no GPU" otherwise (gpu_stub.c), so callers need no
 * #ifdef. One process drives one GPU. */
#ifndef SPECTRAIN_KERNELS_GPU_H
#define SPECTRAIN_KERNELS_GPU_H
#include <stddef.h>

/* Number of usable CUDA devices (0 when there is no driver or no GPU). Writes a short
 * reason into `why` (may be NULL) when it returns 0. */
int gpu_device_count(char *why, int why_len);
/* 1 when this binary was built with the CUDA backend. */
int gpu_built_with_cuda(void);
/* The NCCL version (e.g. 22703), 0 without CUDA. */
int gpu_nccl_version(void);

/* Bind this process to a device: local_rank modulo the number of devices (one rank per
 * GPU; the caller takes local_rank from SLURM_LOCALID or the launcher's local rank).
 * Creates the compute and communication streams. Returns the device index, or -1 with a
 * reason in `why`. Calling it again with the same device is a no-op. */
int gpu_select_device(int local_rank, char *why, int why_len);
/* The selected device (-1 before gpu_select_device), its name and bf16 dense peak in
 * FLOP/s (0 when unknown; for MFU in benchmarks). */
int gpu_current_device(void);
const char *gpu_device_name(void);
double gpu_peak_bf16_flops(void);

/* The streams (cudaStream_t as void *): kernels run on the compute stream, collectives
 * (NCCL) on the communication stream; they are ordered with events (mpi/coll). NULL before
 * gpu_select_device. */
void *gpu_compute_stream(void);
void *gpu_comm_stream(void);

#endif
