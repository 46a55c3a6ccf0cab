#include "mpi/comm.h"

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/err.h"

static int rank_ = 0, size_ = 1, local_rank_ = 0, node_size_ = 1, inited_ = 0;
static const char *local_source_ = "single rank";

/* Integer value of environment variable NAME, or -1 when unset or not a number >= 0. */
static int env_int_(const char *name) {
  const char *v = getenv(name);
  if (!v || !*v) return -1;
  char *end = NULL;
  long x = strtol(v, &end, 10);
  return (*end || x < 0 || x > 1 << 30) ? -1 : (int)x;
}

/* The node-local rank picks the GPU (and NUMA domain), so it must come from the launcher
 * that started *this* process. Slurm's task variables are trusted only when every rank's
 * SLURM_PROCID/SLURM_NTASKS match its MPI rank/size: under mpirun inside an allocation the
 * ranks inherit the batch shell's (or orted's) SLURM_PROCID=0, SLURM_LOCALID=0, and under
 * srun without an MPI plugin each task is a one-rank world. Then Open MPI's own variables
 * (set by mpirun for each rank) are used, else a shared-memory split of the world. */
static void place_local_rank_(void) {
  int procid = env_int_("SLURM_PROCID"), ntasks = env_int_("SLURM_NTASKS");
  int slurm_local = env_int_("SLURM_LOCALID");
  int ompi_rank = env_int_("OMPI_COMM_WORLD_RANK");
  int ompi_local = env_int_("OMPI_COMM_WORLD_LOCAL_RANK");
  int slurm_ok = procid == rank_ && ntasks == size_ && slurm_local >= 0;
  int all_ok = slurm_ok;
  if (size_ > 1) MPI_Allreduce(&slurm_ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (all_ok) {
    local_rank_ = slurm_local;
    local_source_ = "SLURM_LOCALID";
    return;
  }
  if (procid >= 0 && ntasks >= 0 && ompi_rank < 0 && (procid != rank_ || ntasks != size_))
    log_warn("Slurm says task %d of %d (SLURM_PROCID, SLURM_NTASKS) but MPI says rank %d of %d: "
             "the tasks do not form one MPI job; launch with `srun --mpi=pmix` (or mpirun), "
             "not plain srun or without a launcher inside a multi-task allocation",
             procid, ntasks, rank_, size_);
  if (ompi_rank == rank_ && ompi_local >= 0) {
    local_rank_ = ompi_local;
    local_source_ = "OMPI_COMM_WORLD_LOCAL_RANK";
    return;
  }
  if (size_ == 1) {
    local_rank_ = 0;
    local_source_ = "single rank";
    return;
  }
  MPI_Comm node;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node);
  MPI_Comm_rank(node, &local_rank_);
  MPI_Comm_free(&node);
  local_source_ = "shared-memory split";
}

int comm_init(int *argc, char ***argv) {
  int provided = 0;
  if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
    return st_fail(ST_ERUNTIME, "MPI_Init_thread failed");
  inited_ = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  log_set_rank(rank_, size_);
  place_local_rank_();
  if (size_ > 1) { /* ranks sharing this host's memory */
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node);
    MPI_Comm_size(node, &node_size_);
    MPI_Comm_free(&node);
  }
  return ST_OK;
}

void comm_finalize(void) {
  if (inited_) MPI_Finalize();
  inited_ = 0;
}

int comm_rank(void) { return rank_; }
int comm_size(void) { return size_; }
int comm_local_rank(void) { return local_rank_; }
int comm_node_size(void) { return node_size_; }
const char *comm_local_rank_source(void) { return local_source_; }

int comm_placement(comm_place **out, int *nhosts) {
  comm_place me;
  memset(&me, 0, sizeof me);
  if (gethostname(me.host, sizeof me.host - 1) != 0) snprintf(me.host, sizeof me.host, "?");
  me.host[sizeof me.host - 1] = 0;
  me.local_rank = local_rank_;
  comm_place *p = xcalloc((size_t)size_, sizeof *p);
  if (size_ == 1)
    p[0] = me;
  else if (MPI_Allgather(&me, (int)sizeof me, MPI_BYTE, p, (int)sizeof me, MPI_BYTE,
                         MPI_COMM_WORLD) != MPI_SUCCESS) {
    free(p);
    return st_fail(ST_ERUNTIME, "MPI_Allgather of the rank placement failed");
  }
  int h = 0;
  for (int r = 0; r < size_; r++) {
    p[r].host_index = -1;
    for (int q = 0; q < r && p[r].host_index < 0; q++)
      if (strcmp(p[q].host, p[r].host) == 0) p[r].host_index = p[q].host_index;
    if (p[r].host_index < 0) p[r].host_index = h++;
  }
  *out = p;
  *nhosts = h;
  return ST_OK;
}

int comm_placement_check(const comm_place *p, int n) {
  for (int r = 0; r < n; r++) {
    if (p[r].host_index < 0) continue;
    int k = 0, ok = 1;
    for (int q = 0; q < n; q++) k += p[q].host_index == p[r].host_index;
    /* a permutation of 0..k-1: every value in range and none twice */
    for (int q = 0; q < n && ok; q++) {
      if (p[q].host_index != p[r].host_index) continue;
      if (p[q].local_rank < 0 || p[q].local_rank >= k) ok = 0;
      for (int o = q + 1; o < n && ok; o++)
        if (p[o].host_index == p[q].host_index && p[o].local_rank == p[q].local_rank) ok = 0;
    }
    if (ok) continue;
    char list[256];
    int len = 0;
    for (int q = 0; q < n && len < (int)sizeof list - 32; q++)
      if (p[q].host_index == p[r].host_index)
        len += snprintf(list + len, sizeof list - (size_t)len, "%s rank %d: %d", len ? "," : "",
                        q, p[q].local_rank);
    return st_fail(ST_EINPUT,
                   "node-local ranks on host %s are not 0..%d (%s, from %s): ranks would share "
                   "a GPU or leave one idle; start the ranks with mpirun or `srun --mpi=pmix`, "
                   "and give every host its own host name",
                   p[r].host, k - 1, list, local_source_);
  }
  return ST_OK;
}

void comm_abort(int code) {
  if (inited_) MPI_Abort(MPI_COMM_WORLD, code);
  exit(code);
}

void comm_barrier(void) {
  if (size_ > 1) MPI_Barrier(MPI_COMM_WORLD);
}

int comm_max_status(int local_status) {
  if (size_ == 1) return local_status;
  int out = local_status;
  MPI_Allreduce(&local_status, &out, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return out;
}

int comm_agree_u64(uint64_t value, const char *what) {
  if (size_ == 1) return ST_OK;
  uint64_t v0 = value;
  MPI_Bcast(&v0, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
  int differs = value != v0 ? rank_ : size_;
  int first = size_;
  MPI_Allreduce(&differs, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (first == size_) return ST_OK;
  return st_fail(ST_EINPUT,
                 "ranks disagree on %s: rank %d differs from rank 0 (hash %016llx on this rank, "
                 "%016llx on rank 0); every rank must read the same inputs",
                 what, first, (unsigned long long)value, (unsigned long long)v0);
}

int comm_bcast(void *buf, size_t bytes, int root) {
  if (size_ == 1) return ST_OK;
  char *p = buf;
  while (bytes > 0) { /* MPI counts are int: send in chunks of at most 1 GiB */
    int n = bytes > (1u << 30) ? (1 << 30) : (int)bytes;
    if (MPI_Bcast(p, n, MPI_BYTE, root, MPI_COMM_WORLD) != MPI_SUCCESS)
      return st_fail(ST_ERUNTIME, "MPI_Bcast failed");
    p += n;
    bytes -= (size_t)n;
  }
  return ST_OK;
}

static int allreduce_(void *x, int n, MPI_Datatype t, MPI_Op op) {
  if (size_ == 1) return ST_OK;
  if (MPI_Allreduce(MPI_IN_PLACE, x, n, t, op, MPI_COMM_WORLD) != MPI_SUCCESS)
    return st_fail(ST_ERUNTIME, "MPI_Allreduce failed");
  return ST_OK;
}

int comm_allreduce_sum_f64(double *x, int n) { return allreduce_(x, n, MPI_DOUBLE, MPI_SUM); }
int comm_allreduce_max_f64(double *x, int n) { return allreduce_(x, n, MPI_DOUBLE, MPI_MAX); }
int comm_allreduce_sum_u64(uint64_t *x, int n) { return allreduce_(x, n, MPI_UINT64_T, MPI_SUM); }
