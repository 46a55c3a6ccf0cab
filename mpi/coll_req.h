/* The request of a non-blocking collective (mpi/coll.h), in a header of its own so that the
 * transports behind coll (mpi/coll_nccl.c) can fill it without including coll.h. */
#ifndef SPECTRAIN_MPI_COLL_REQ_H
#define SPECTRAIN_MPI_COLL_REQ_H
#include <stddef.h>
#include <stdint.h>

/* A pending non-blocking collective. Zero-initialise; after coll_wait it is idle again. */
typedef struct {
  int active;
  int kind; /* internal */
  uint64_t mpi_req[2]; /* storage for an MPI_Request (only mpi/ includes mpi.h) */
  float *out;    /* reduce-scatter: the slice to scale after completion */
  uint16_t *out16; /* bf16 reduce-scatter: its result slice (bf16 bits) */
  size_t out_count;
  float scale;
  int replicate; /* hybrid: all-reduce `out` over the replica group when the RS completes */
  void *event;   /* NCCL: the cudaEvent_t recorded on the communication stream after it */
} coll_req;

#endif
