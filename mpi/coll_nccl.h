/* Internal to mpi/: the NCCL transport behind mpi/coll.h (mpi/coll_nccl.c, compiled only
 * with SPECTRAIN_HAVE_CUDA). coll.c validates counts, counts bytes and dispatches here. */
#ifndef SPECTRAIN_MPI_COLL_NCCL_H
#define SPECTRAIN_MPI_COLL_NCCL_H
#include <stddef.h>

#include "kernels/kernels.h"
#include "mpi/coll_req.h"

enum {
  COLL_REQ_NCCL_ALLGATHER = 3,
  COLL_REQ_NCCL_REDUCE_SCATTER = 4,
  COLL_REQ_NCCL_REDUCE_SCATTER_HOST = 5 /* result in host memory: the wait syncs the host */
};

/* Collective: every rank calls it (after gpu_select_device). Bootstraps the communicator
 * over MPI; a failure on any rank is an error on every rank (no rank is left waiting in
 * NCCL's initialisation). k: the kernel table whose compute stream the buffers are used on
 * (k->scale applies a reduce-scatter's scale). Idempotent once initialised. */
int coll_nccl_init(const kernels *k);
/* Collective: destroys the communicator (after completing its work). */
void coll_nccl_shutdown(void);
/* 1 when the communicator exists. */
int coll_nccl_ready(void);
/* count > 0 (coll.c handles 0). The request becomes active. */
int coll_nccl_allgather(float *buf, size_t count, coll_req *req);
int coll_nccl_reduce_scatter(const float *in, float *out, size_t count, float scale,
                             coll_req *req);
/* The offload variants (mpi/coll.h): the own slice copied from pinned host memory on the
 * communication stream before the all-gather (the request is an ordinary all-gather
 * request); the reduce-scatter's result copied to pinned host memory (wait blocks the host
 * until it is there and applies the scale on the host). */
int coll_nccl_allgather_from_host(float *buf, const float *host_slice, size_t count,
                                  coll_req *req);
int coll_nccl_reduce_scatter_to_host(const float *in, float *host_out, size_t count,
                                     float scale, coll_req *req);
/* The compute stream waits for the collective (no host block); the scale is queued. */
int coll_nccl_wait(coll_req *req);
/* 1 when the collective finished on the device (then completes it as coll_nccl_wait). */
int coll_nccl_test(coll_req *req);

#endif
