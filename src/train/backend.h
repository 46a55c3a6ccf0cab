/* Which kernel table a run uses (training.backend, SPECTRAIN_KERNELS), and how the sharded
 * trainer's collectives move its compute memory. */
#ifndef SPECTRAIN_TRAIN_BACKEND_H
#define SPECTRAIN_TRAIN_BACKEND_H

#include "kernels/kernels.h"
#include "mpi/coll.h"

/* Resolve the backend (BACKEND_CPU, BACKEND_CUDA or BACKEND_AUTO of config.h), set by the
 * setting `key` (named in errors and the description: "training.backend" for jobs (NULL
 * means that), "--backend" for eval's option):
 *   SPECTRAIN_KERNELS=guard in the environment (developers' test backend) overrides it:
 *     the guard table, transport MPI_STAGED;
 *   cpu  -> kernels_cpu(), transport MPI;
 *   cuda -> gpu_select_device(local_rank) + kernels_cuda(bf16), transport NCCL; or an
 *     ST_EINPUT error that names `key` and the reason (no CUDA build, no
 *     device, cuBLAS failed);
 *   auto -> cuda when gpu_device_count() > 0, else cpu.
 * bf16 (training.bf16, eval --bf16: mixed precision, docs/model.md "Precision") works on
 * every table; with cpu and guard the description names what the CPU's bf16 products run
 * on (kernels_cpu_bf16_description); cuda gets kernels_cuda(1). Logs nothing (eval's --json output stays clean):
 * kernels_select_description() says what was chosen and why, for the caller to log. Local: every rank resolves on its own;
 * coll_set_transport(*transport, *out) then proves that all ranks agree. */
int kernels_select(const char *key, int backend, int bf16, int local_rank, const kernels **out,
                   coll_transport *transport);

/* One line on the last successful kernels_select: "kernels: cuda on device 0 (...) ...". */
const char *kernels_select_description(void);

#endif
