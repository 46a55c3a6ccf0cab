/* Collectives on flat float32 buffers, for the sharded trainer (shard/). One interface, three
 * transports behind it (coll_set_transport below): MPI on host memory, MPI staged through
 * host memory for compute memory the host must not touch, and NCCL on device memory (the
 * requests then wrap CUDA events).
 *
 * Every call is made by every rank in the same order (blocking and non-blocking calls alike);
 * a non-blocking call returns a request that must be completed with coll_wait before its
 * buffers are touched. Counts are elements per rank and must fit in an int (2^31-1 floats);
 * larger counts are an ST_EINPUT error, never a silent truncation.
 *
 * Byte counters: every call adds the logical size of the full (unsharded) buffer it moves to
 * its category, so a trainer can compare what it moved with what its plan predicts. On one
 * rank the calls are copies (or nothing) and still count their bytes. */
#ifndef SPECTRAIN_MPI_COLL_H
#define SPECTRAIN_MPI_COLL_H
#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"
#include "mpi/coll_req.h"

typedef enum {
  COLL_ALLGATHER = 0,      /* parameter gathers (in the shard group) */
  COLL_REDUCE_SCATTER = 1, /* gradient reduce-scatters (in the shard group) */
  COLL_ALLREDUCE = 2,      /* norms, token counts, losses (small) */
  COLL_REPLICA_ALLREDUCE = 3, /* hybrid sharding: reduced gradient shards across replicas */
  COLL_NCAT
} coll_category;

/* Link classes: what a collective sends between ranks of one host (shared memory, NVLink)
 * and between hosts (the network). */
typedef enum { COLL_INTRA_HOST = 0, COLL_INTER_HOST = 1, COLL_NLINK } coll_link;

typedef struct {
  uint64_t calls[COLL_NCAT];
  uint64_t bytes[COLL_NCAT]; /* logical bytes: the full buffer size (count * group size * 4;
                              * allreduces: the buffer) */
  /* Bytes this rank sends per link class, by the direct-exchange model: in a collective of
   * n ranks over a logical buffer of B bytes a rank sends B/n to every other member for an
   * all-gather or a reduce-scatter, and twice that for an all-reduce (a reduce-scatter then
   * an all-gather); a member on another host costs inter-host bytes. That is the least any
   * algorithm without host-level aggregation sends in all (MPI's own may route it otherwise:
   * docs/sharding.md, Hybrid sharding). */
  uint64_t link_bytes[COLL_NCAT][COLL_NLINK];
} coll_counters;

/* ---- shard groups (sharding.strategy: hybrid) ---------------------------------------------
 * The unit collectives (all-gathers, reduce-scatters) run in this rank's SHARD GROUP; with
 * more than one group (hybrid sharding) a reduce-scatter's result is then summed over the
 * REPLICA GROUP (the ranks holding the same shard index in every group), so every replica
 * ends with the same reduced shard. The allreduces below stay on the whole world
 * (coll_shard_allreduce_sum_f64: the shard group). The default is one group of every rank
 * (full sharding).
 *
 * coll_set_groups (collective): shard_size 0 = the ranks of one host (by host name, as
 * comm_placement sees it), else shard_size ranks; every host must run a multiple of
 * shard_size ranks (and with 0, every host the same count). The groups are laid out per
 * host, in rank order: the k-th rank of a host (k counted in world rank order) is shard
 * rank k % shard_size of the host's group k / shard_size. Each rank decides from the same
 * gathered placement, so a bad layout is the same ST_EINPUT on every rank, before any
 * collective on the groups; `key` names the job key for the message. hybrid 0: back to
 * one group (shard_size ignored). */
typedef struct {
  int hybrid;                 /* 1: coll_set_groups(1, ...) made the groups */
  int shard_size, shard_rank; /* this rank's shard group: its size and this rank's index */
  int replicas, replica_rank; /* how many shard groups; this rank's group index */
  int nhosts;                 /* distinct hosts of the world */
  /* members on this rank's own host (this rank included), per group: [0] shard, [1] replica,
   * [2] world (the link model above) */
  int local_members[3];
} coll_groups;
int coll_set_groups(int hybrid, int shard_size, const char *key);
void coll_get_groups(coll_groups *g);
/* The shard group a world rank belongs to (its index 0..replicas-1). */
int coll_group_of_rank(int world_rank);
/* Sum over this rank's shard group only (the gradient norm: every replica holds the same
 * shards). Counted under COLL_ALLREDUCE. */
int coll_shard_allreduce_sum_f64(double *x, size_t n);
/* The direct-exchange model for a collective of `bytes` logical bytes in group g (0 shard,
 * 1 replica, 2 world): the bytes this rank sends within its host and to other hosts.
 * allreduce: 1 for an all-reduce, 0 for an all-gather or reduce-scatter. */
void coll_link_model(int group, uint64_t bytes, int allreduce, uint64_t out[COLL_NLINK]);

/* How the collectives on unit buffers (all-gathers, reduce-scatters: compute memory) move
 * data. The allreduces below always work on host memory over MPI.
 *   COLL_TRANSPORT_MPI: buffers are host memory (the CPU backend). The default.
 *   COLL_TRANSPORT_MPI_STAGED: buffers are compute memory the host must not touch: copied
 *     to host staging with k->download, reduced over MPI, copied back with k->upload (the
 *     guard test backend; CUDA without NCCL). Non-blocking calls complete at issue.
 *   COLL_TRANSPORT_NCCL: device buffers; NCCL on gpu_comm_stream(), bootstrapped over MPI
 *     (rank 0's ncclUniqueId broadcast). A non-blocking call makes the communication stream
 *     wait for the compute stream's work so far (an event), and coll_wait makes the compute
 *     stream wait for the collective (an event): no host blocking.
 * Collective: every rank must pass the same transport (checked, a clear error on every
 * rank otherwise). `k` is the kernel table whose compute memory the buffers live in. */
typedef enum {
  COLL_TRANSPORT_MPI = 0,
  COLL_TRANSPORT_MPI_STAGED = 1,
  COLL_TRANSPORT_NCCL = 2
} coll_transport;
int coll_set_transport(coll_transport t, const kernels *k);
coll_transport coll_get_transport(void);
const char *coll_transport_name(coll_transport t); /* "mpi", "mpi-staged", "nccl" */
/* Release what the transport holds (host staging, the NCCL communicator) and go back to
 * COLL_TRANSPORT_MPI. Collective when the transport is NCCL (ncclCommDestroy); every
 * request must be complete. The command runner (src/main.c) calls it before comm_finalize;
 * safe to call more than once. */
void coll_shutdown(void);

/* All-gather in place: `buf` holds nranks * count floats, this rank's own slice already at
 * buf[rank * count]; afterwards every slice is filled. */
int coll_allgather_f32(float *buf, size_t count);
int coll_iallgather_f32(float *buf, size_t count, coll_req *req);

/* Reduce-scatter: `in` holds nranks * count floats on every rank; `out[count]` receives
 * scale * (sum over ranks of in[rank * count ..]) for this rank's slice. (With shard
 * groups, "nranks" and "rank" here and in the all-gathers are the shard group's, and the sum
 * runs over every rank of the world: the group's reduce-scatter, then an all-reduce of the
 * slice over the replica group when the request completes.) scale = 1/nranks
 * is the average; the trainer passes 1 and folds the normalisation into the loss scale. */
int coll_reduce_scatter_f32(const float *in, float *out, size_t count, float scale);
int coll_ireduce_scatter_f32(const float *in, float *out, size_t count, float scale,
                             coll_req *req);

/* Offload variants: one side of the collective is pinned host memory (k->host_alloc).
 *
 * coll_iallgather_from_host_f32: as coll_iallgather_f32, but this rank's own slice comes
 * from host_slice[count] (not from buf): the copy into buf's own slice is part of the
 * request. CONTRACT: host_slice must stay allocated and unchanged until the request
 * completes on the device, which for NCCL is later than coll_wait returns (coll_wait only
 * orders the compute stream): until the compute stream has been synchronised (k->sync)
 * after coll_wait. MPI: a copy into buf, then the non-blocking all-gather. MPI-staged: the
 * slice goes straight into the host staging, the all-gather runs there, one upload of the
 * whole buffer (completes at issue). NCCL: on the communication stream, after the compute
 * stream's work so far, an asynchronous host -> device copy into the own slice and the
 * in-place all-gather; coll_wait makes the compute stream wait (no host block).
 *
 * coll_ireduce_scatter_to_host_f32: as coll_ireduce_scatter_f32, but the result lands in
 * host memory host_out[count] (pinned; it must not be touched until coll_wait returns, and
 * `in` must stay allocated until then). coll_wait returns when host_out holds scale * sum.
 * NCCL: the reduce-scatter into a device slice allocated stream-ordered on the
 * communication stream, a device -> host copy into host_out, the slice freed in stream
 * order, an event; coll_wait waits for that event on the host (sleeping, not spinning) and
 * applies the scale on the host. MPI / MPI-staged: the reduce-scatter (of a download of
 * `in` when staged) straight into host_out.
 * Byte counters count both exactly as their compute-memory counterparts. */
int coll_iallgather_from_host_f32(float *buf, const float *host_slice, size_t count,
                                  coll_req *req);
int coll_ireduce_scatter_to_host_f32(const float *in, float *host_out, size_t count,
                                     float scale, coll_req *req);

/* bf16 reduce-scatter (sharding.reduce_dtype: bf16, FSDP's reduce_dtype=torch.bfloat16):
 * in[n * count] (n = the shard group's size) is summed over the group into this rank's
 * out[count], both bf16; every partial sum is formed in fp32 and rounded to nearest even, as
 * NCCL's bf16 reductions do. Hybrid sharding: the result is then summed across the replica
 * group in bf16 as well, when the request completes. Half the bytes of the fp32 reduce-scatter.
 * Transports mpi and mpi-staged; nccl refuses it (an input error). No scale: the caller
 * widens the result. */
int coll_ireduce_scatter_bf16(const bf16_t *in, bf16_t *out, size_t count, coll_req *req);

/* bf16 all-gathers (the bf16 parameter shards of training.bf16): an all-gather only moves
 * bits, so `count` bf16 values (count must be even: the trainer's shards are multiples of
 * 16) travel as count / 2 32-bit words through the f32 calls above, on every transport,
 * with the same contracts; the byte counters count 2 bytes per value. */
int coll_iallgather_bf16(bf16_t *buf, size_t count, coll_req *req);
int coll_allgather_bf16(bf16_t *buf, size_t count);
int coll_iallgather_from_host_bf16(bf16_t *buf, const bf16_t *host_slice, size_t count,
                                   coll_req *req);

/* Complete a request (no-op on an idle one). Blocks without spinning the CPU hard: MPI's
 * progress engine runs inside; polling cost is what MPI_Wait costs. */
int coll_wait(coll_req *req);
/* Let pending non-blocking collectives progress (MPI_Test); returns 1 when req completed. */
int coll_test(coll_req *req);

/* In-place sums / maxima over ranks (counted under COLL_ALLREDUCE). */
int coll_allreduce_sum_f32(float *x, size_t n);
int coll_allreduce_sum_f64(double *x, size_t n);
int coll_allreduce_max_f64(double *x, size_t n);
int coll_allreduce_sum_u64(uint64_t *x, size_t n);
int coll_allreduce_min_u64(uint64_t *x, size_t n);
int coll_allreduce_max_u64(uint64_t *x, size_t n);

void coll_counters_get(coll_counters *c);
void coll_counters_reset(void);
const char *coll_category_name(coll_category c); /* "allgather", ... "replica_allreduce" */
const char *coll_link_name(coll_link l);          /* "intra_host", "inter_host" */

#endif
