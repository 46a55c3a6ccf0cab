#include "mpi/comm.h"

#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"

static int rank_ = 0, size_ = 1, local_rank_ = 0, inited_ = 0;

int comm_init(int *argc, char ***argv) {
  int provided = 0;
  if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
    return st_fail(ST_ERUNTIME, "MPI_Init_thread failed");
  inited_ = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  const char *lr = getenv("SLURM_LOCALID");
  if (!lr) lr = getenv("OMPI_COMM_WORLD_LOCAL_RANK");
  if (lr) {
    local_rank_ = atoi(lr);
  } else {
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &local_rank_);
    MPI_Comm_free(&node);
  }
  log_set_rank(rank_, size_);
  return ST_OK;
}

void comm_finalize(void) {
  if (inited_) MPI_Finalize();
  inited_ = 0;
}

int comm_rank(void) { return rank_; }
int comm_size(void) { return size_; }
int comm_local_rank(void) { return local_rank_; }

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
