#include "mpi/coll.h"

#include <limits.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mpi/comm.h"
#include "util/err.h"

_Static_assert(sizeof(MPI_Request) <= 2 * sizeof(uint64_t), "coll_req too small for MPI_Request");

enum { REQ_ALLGATHER = 1, REQ_REDUCE_SCATTER = 2 };

static coll_counters counters_;

static MPI_Request *req_(coll_req *r) { return (MPI_Request *)(void *)r->mpi_req; }

static int count_ok_(size_t count, const char *what) {
  if (count > (size_t)INT_MAX)
    return st_fail(ST_EINPUT,
                   "%s of %zu floats per rank exceeds MPI's int count (%d); use more ranks or "
                   "split the unit",
                   what, count, INT_MAX);
  return ST_OK;
}

static void count_(coll_category c, size_t bytes) {
  counters_.calls[c]++;
  counters_.bytes[c] += bytes;
}

/* Waiting without spinning: MPI_Wait polls a core at 100 % (Open MPI's shared-memory
 * transport), which on shared or oversubscribed cores steals time from the ranks still
 * computing. Test, then sleep with backoff (10 us .. 0.5 ms). SPECTRAIN_COMM_SPIN=1 restores
 * MPI_Wait (dedicated cores, lowest latency). */
static int wait_(MPI_Request *r) {
  static int spin = -1;
  if (spin < 0) {
    const char *e = getenv("SPECTRAIN_COMM_SPIN");
    spin = e && e[0] == '1';
  }
  if (spin) return MPI_Wait(r, MPI_STATUS_IGNORE);
  int done = 0, rc = MPI_Test(r, &done, MPI_STATUS_IGNORE);
  long ns = 10000;
  while (rc == MPI_SUCCESS && !done) {
    struct timespec ts = {0, ns};
    nanosleep(&ts, NULL);
    rc = MPI_Test(r, &done, MPI_STATUS_IGNORE);
    if (ns < 500000) ns *= 2;
  }
  return rc;
}

static int mpi_check_(int rc, const char *what) {
  if (rc == MPI_SUCCESS) return ST_OK;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  return st_fail(ST_ERUNTIME, "%s failed: %s", what, msg);
}

int coll_iallgather_f32(float *buf, size_t count, coll_req *req) {
  memset(req, 0, sizeof *req);
  int rc = count_ok_(count, "all-gather");
  if (rc) return rc;
  int n = comm_size();
  count_(COLL_ALLGATHER, count * (size_t)n * sizeof(float));
  if (n == 1 || count == 0) return ST_OK;
  req->active = 1;
  req->kind = REQ_ALLGATHER;
  return mpi_check_(MPI_Iallgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, (int)count,
                                   MPI_FLOAT, MPI_COMM_WORLD, req_(req)),
                    "MPI_Iallgather");
}

int coll_allgather_f32(float *buf, size_t count) {
  int rc = count_ok_(count, "all-gather");
  if (rc) return rc;
  int n = comm_size();
  count_(COLL_ALLGATHER, count * (size_t)n * sizeof(float));
  if (n == 1 || count == 0) return ST_OK;
  MPI_Request r;
  int rc2 = mpi_check_(MPI_Iallgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, (int)count,
                                      MPI_FLOAT, MPI_COMM_WORLD, &r),
                       "MPI_Iallgather");
  return rc2 ? rc2 : mpi_check_(wait_(&r), "MPI_Wait");
}

static void scale_(float *x, size_t n, float s) {
  if (s == 1.0f) return;
  for (size_t i = 0; i < n; i++) x[i] *= s;
}

int coll_ireduce_scatter_f32(const float *in, float *out, size_t count, float scale,
                             coll_req *req) {
  memset(req, 0, sizeof *req);
  int rc = count_ok_(count, "reduce-scatter");
  if (rc) return rc;
  int n = comm_size();
  count_(COLL_REDUCE_SCATTER, count * (size_t)n * sizeof(float));
  if (n == 1 || count == 0) {
    if (count) memmove(out, in + (size_t)comm_rank() * count, count * sizeof(float));
    scale_(out, count, scale);
    return ST_OK;
  }
  req->active = 1;
  req->kind = REQ_REDUCE_SCATTER;
  req->out = out;
  req->out_count = count;
  req->scale = scale;
  return mpi_check_(MPI_Ireduce_scatter_block(in, out, (int)count, MPI_FLOAT, MPI_SUM,
                                              MPI_COMM_WORLD, req_(req)),
                    "MPI_Ireduce_scatter_block");
}

int coll_reduce_scatter_f32(const float *in, float *out, size_t count, float scale) {
  coll_req r;
  int rc = coll_ireduce_scatter_f32(in, out, count, scale, &r);
  if (rc) return rc;
  return coll_wait(&r);
}

static void finish_(coll_req *req) {
  if (req->kind == REQ_REDUCE_SCATTER) scale_(req->out, req->out_count, req->scale);
  req->active = 0;
}

int coll_wait(coll_req *req) {
  if (!req->active) return ST_OK;
  int rc = mpi_check_(wait_(req_(req)), "MPI_Wait");
  finish_(req);
  return rc;
}

int coll_test(coll_req *req) {
  if (!req->active) return 1;
  int done = 0;
  MPI_Test(req_(req), &done, MPI_STATUS_IGNORE);
  if (done) finish_(req);
  return done;
}

static int allreduce_(void *x, size_t n, size_t elem_bytes, MPI_Datatype t, MPI_Op op) {
  int rc = count_ok_(n, "allreduce");
  if (rc) return rc;
  count_(COLL_ALLREDUCE, n * elem_bytes);
  if (comm_size() == 1 || n == 0) return ST_OK;
  MPI_Request r;
  rc = mpi_check_(MPI_Iallreduce(MPI_IN_PLACE, x, (int)n, t, op, MPI_COMM_WORLD, &r),
                  "MPI_Iallreduce");
  return rc ? rc : mpi_check_(wait_(&r), "MPI_Wait");
}

int coll_allreduce_sum_f32(float *x, size_t n) {
  return allreduce_(x, n, sizeof *x, MPI_FLOAT, MPI_SUM);
}
int coll_allreduce_sum_f64(double *x, size_t n) {
  return allreduce_(x, n, sizeof *x, MPI_DOUBLE, MPI_SUM);
}
int coll_allreduce_max_f64(double *x, size_t n) {
  return allreduce_(x, n, sizeof *x, MPI_DOUBLE, MPI_MAX);
}
int coll_allreduce_sum_u64(uint64_t *x, size_t n) {
  return allreduce_(x, n, sizeof *x, MPI_UINT64_T, MPI_SUM);
}
int coll_allreduce_min_u64(uint64_t *x, size_t n) {
  return allreduce_(x, n, sizeof *x, MPI_UINT64_T, MPI_MIN);
}
int coll_allreduce_max_u64(uint64_t *x, size_t n) {
  return allreduce_(x, n, sizeof *x, MPI_UINT64_T, MPI_MAX);
}

void coll_counters_get(coll_counters *c) { *c = counters_; }
void coll_counters_reset(void) { memset(&counters_, 0, sizeof counters_); }

const char *coll_category_name(coll_category c) {
  static const char *names[COLL_NCAT] = {"allgather", "reduce_scatter", "allreduce"};
  return (int)c >= 0 && c < COLL_NCAT ? names[c] : "?";
}
