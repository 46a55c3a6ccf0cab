/* Everything that talks between ranks goes through here (and the other files of mpi/):
 * no other folder includes mpi.h. On one rank every call is a cheap no-op or copy. */
#ifndef SPECTRAIN_MPI_COMM_H
#define SPECTRAIN_MPI_COMM_H
#include <stddef.h>
#include <stdint.h>

/* MPI_Init_thread(FUNNELED) (or singleton init without a launcher); sets the log rank. */
int comm_init(int *argc, char ***argv);
void comm_finalize(void);
int comm_rank(void);
int comm_size(void);
/* Node-local rank: SLURM_LOCALID when srun started this MPI job (every rank's SLURM_PROCID and
 * SLURM_NTASKS match its MPI rank and size), else OMPI_COMM_WORLD_LOCAL_RANK (mpirun, also
 * inside a Slurm allocation), else a shared-memory split. Warns when Slurm's task numbering
 * disagrees with MPI's outside mpirun (srun without --mpi=pmix starts N one-rank jobs). */
int comm_local_rank(void);
/* Ranks on this host (sharing its memory: an MPI shared-memory split at comm_init). */
int comm_node_size(void);
/* Where comm_local_rank() came from: "SLURM_LOCALID", "OMPI_COMM_WORLD_LOCAL_RANK",
 * "shared-memory split" or "single rank". */
const char *comm_local_rank_source(void);
/* Where every rank runs: its host name (gethostname, what Open MPI and Slurm call the node)
 * and node-local rank. */
#define COMM_HOST_MAX 64
typedef struct {
  char host[COMM_HOST_MAX]; /* NUL-terminated, truncated to COMM_HOST_MAX - 1 */
  int local_rank;
  int host_index;           /* hosts numbered 0.. in order of their lowest rank */
} comm_place;
/* Gathers every rank's placement on every rank: *out = comm_place[comm_size()] (free()),
 * *nhosts = distinct host names. Collective. */
int comm_placement(comm_place **out, int *nhosts);
/* ST_OK when on every host the node-local ranks of its k ranks are exactly 0..k-1 (what
 * device selection by local rank needs); else ST_EINPUT with a message naming the host and
 * its local ranks. */
int comm_placement_check(const comm_place *p, int n);
void comm_abort(int code);
void comm_barrier(void);

/* Every rank passes its own status; all return the maximum (so one rank's input error
 * stops every rank at the same point instead of leaving the others in a collective). */
int comm_max_status(int local_status);

/* Prove that every rank holds the same value (hash of a plan, job, selection):
 * allreduce min and max. On mismatch every rank gets ST_EINPUT with a message
 * "ranks disagree on <what>: ..." naming the lowest rank that differs from rank 0. */
int comm_agree_u64(uint64_t value, const char *what);

int comm_bcast(void *buf, size_t bytes, int root);
int comm_allreduce_sum_f64(double *x, int n);
int comm_allreduce_max_f64(double *x, int n);
int comm_allreduce_sum_u64(uint64_t *x, int n);

#endif
