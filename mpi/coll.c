#include "mpi/coll.h"

#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mpi/comm.h"
#include "util/err.h"
#ifdef SPECTRAIN_HAVE_CUDA
#include "mpi/coll_nccl.h"
#endif

_Static_assert(sizeof(MPI_Request) <= 2 * sizeof(uint64_t), "coll_req too small for MPI_Request");

enum { REQ_ALLGATHER = 1, REQ_REDUCE_SCATTER = 2 };

static coll_counters counters_;

/* The transport of the unit collectives, the kernel table their buffers belong to, and the
 * host staging of COLL_TRANSPORT_MPI_STAGED (k->host_alloc'd, grown as needed). */
static coll_transport transport_ = COLL_TRANSPORT_MPI;
static const kernels *tk_ = NULL;
static const kernels *staging_k_ = NULL; /* the table that allocated staging_ */
static float *staging_ = NULL;
static size_t staging_floats_ = 0;

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

/* ---- transports ------------------------------------------------------------------------ */

const char *coll_transport_name(coll_transport t) {
  switch (t) {
  case COLL_TRANSPORT_MPI: return "mpi";
  case COLL_TRANSPORT_MPI_STAGED: return "mpi-staged";
  case COLL_TRANSPORT_NCCL: return "nccl";
  }
  return "?";
}

coll_transport coll_get_transport(void) { return transport_; }

static void staging_free_(void) {
  if (staging_) staging_k_->host_free(staging_);
  staging_ = NULL;
  staging_floats_ = 0;
  staging_k_ = NULL;
}

/* Host staging of at least n floats (contents undefined), or NULL with an error set. */
static float *stage_(size_t n) {
  if (n <= staging_floats_ && staging_k_ == tk_) return staging_;
  staging_free_();
  size_t want = n + n / 4; /* grow with headroom: units differ in size */
  staging_ = tk_->host_alloc(want * sizeof(float));
  if (!staging_) {
    st_fail(ST_ERUNTIME,
            "collectives (%s): could not allocate %zu bytes of host staging memory (%s "
            "host_alloc)",
            coll_transport_name(transport_), want * sizeof(float), tk_->name);
    return NULL;
  }
  staging_k_ = tk_;
  staging_floats_ = want;
  return staging_;
}

void coll_shutdown(void) {
#ifdef SPECTRAIN_HAVE_CUDA
  coll_nccl_shutdown();
#endif
  staging_free_();
  transport_ = COLL_TRANSPORT_MPI;
  tk_ = NULL;
}

int coll_set_transport(coll_transport t, const kernels *k) {
  /* Agree first, so that a mismatch is the same error on every rank (a rank on NCCL and one
   * on MPI would otherwise wait for each other forever). */
  uint64_t t0 = (uint64_t)t;
  int rc = comm_bcast(&t0, sizeof t0, 0);
  if (rc) return rc;
  rc = comm_agree_u64((uint64_t)t, "the collective transport");
  if (rc) {
    char why[512];
    snprintf(why, sizeof why, "%s", st_errmsg());
    return st_fail(ST_EINPUT,
                   "ranks disagree on the collective transport: rank 0 uses '%s', this rank "
                   "'%s' (%s)",
                   coll_transport_name((coll_transport)t0), coll_transport_name(t), why);
  }
  int local = ST_OK;
  if ((int)t < COLL_TRANSPORT_MPI || (int)t > COLL_TRANSPORT_NCCL)
    local = st_fail(ST_EINPUT, "coll_set_transport: unknown transport %d", (int)t);
  else if (t != COLL_TRANSPORT_MPI && !k)
    local = st_fail(ST_EINPUT, "coll_set_transport: transport '%s' needs the kernel table",
                    coll_transport_name(t));
  else if (t == COLL_TRANSPORT_MPI_STAGED && (!k->download || !k->upload || !k->host_alloc ||
                                              !k->host_free))
    local = st_fail(ST_EINPUT,
                    "coll_set_transport: kernel table '%s' lacks upload/download/host_alloc",
                    k->name);
#ifndef SPECTRAIN_HAVE_CUDA
  else if (t == COLL_TRANSPORT_NCCL)
    local = st_fail(ST_EINPUT,
                    "collective transport 'nccl': this spectrain was built without CUDA and "
                    "NCCL (rebuild with -DSPECTRAIN_CUDA=ON on a machine with nvcc and NCCL)");
#endif
  int all = comm_max_status(local);
  if (all)
    return local ? local
                 : st_fail(all, "another rank could not set the collective transport '%s' "
                                "(see its error)",
                           coll_transport_name(t));
  if (t != COLL_TRANSPORT_NCCL) {
    coll_shutdown(); /* releases an NCCL communicator (collective: all ranks are here) */
    transport_ = t;
    tk_ = t == COLL_TRANSPORT_MPI ? NULL : k;
    return ST_OK;
  }
#ifdef SPECTRAIN_HAVE_CUDA
  staging_free_();
  rc = coll_nccl_init(k); /* collective; fails on every rank alike */
  if (rc) return rc;
  transport_ = t;
  tk_ = k;
  return ST_OK;
#else
  return ST_EINPUT; /* unreachable: refused above */
#endif
}

/* Blocking MPI collectives on host buffers (the staged paths): all-gather in place of
 * nranks * count floats; reduce-scatter (sum) of nranks * count floats into out[count]. */
static int host_allgather_(float *buf, size_t count) {
  MPI_Request q;
  int rc = mpi_check_(MPI_Iallgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, (int)count,
                                     MPI_FLOAT, MPI_COMM_WORLD, &q),
                      "MPI_Iallgather");
  return rc ? rc : mpi_check_(wait_(&q), "MPI_Wait");
}

static int host_reduce_scatter_(const float *in, float *out, size_t count) {
  MPI_Request q;
  int rc = mpi_check_(MPI_Ireduce_scatter_block(in, out, (int)count, MPI_FLOAT, MPI_SUM,
                                                MPI_COMM_WORLD, &q),
                      "MPI_Ireduce_scatter_block");
  return rc ? rc : mpi_check_(wait_(&q), "MPI_Wait");
}

/* MPI staged through host memory. Every call completes before it returns. */
static int staged_allgather_(float *buf, size_t count, int n, int r) {
  float *st = stage_((size_t)n * count);
  if (!st) return ST_ERUNTIME;
  size_t own = (size_t)r * count;
  tk_->download(st + own, buf + own, count * sizeof(float));
  int rc = host_allgather_(st, count);
  if (rc) return rc;
  tk_->upload(buf, st, (size_t)n * count * sizeof(float));
  return ST_OK;
}

static void scale_(float *x, size_t n, float s);

static int staged_reduce_scatter_(const float *in, float *out, size_t count, float scale,
                                  int n, int r) {
  size_t full = (size_t)n * count;
  float *st = stage_(n == 1 ? count : full + count);
  if (!st) return ST_ERUNTIME;
  float *res = st;
  if (n == 1) {
    tk_->download(st, in + (size_t)r * count, count * sizeof(float));
  } else {
    tk_->download(st, in, full * sizeof(float));
    res = st + full;
    int rc = host_reduce_scatter_(st, res, count);
    if (rc) return rc;
  }
  scale_(res, count, scale);
  tk_->upload(out, res, count * sizeof(float));
  return ST_OK;
}

int coll_iallgather_f32(float *buf, size_t count, coll_req *req) {
  memset(req, 0, sizeof *req);
  int rc = count_ok_(count, "all-gather");
  if (rc) return rc;
  int n = comm_size();
  count_(COLL_ALLGATHER, count * (size_t)n * sizeof(float));
  if (n == 1 || count == 0) return ST_OK;
  if (transport_ == COLL_TRANSPORT_MPI_STAGED)
    return staged_allgather_(buf, count, n, comm_rank());
#ifdef SPECTRAIN_HAVE_CUDA
  if (transport_ == COLL_TRANSPORT_NCCL) return coll_nccl_allgather(buf, count, req);
#endif
  req->active = 1;
  req->kind = REQ_ALLGATHER;
  return mpi_check_(MPI_Iallgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, (int)count,
                                   MPI_FLOAT, MPI_COMM_WORLD, req_(req)),
                    "MPI_Iallgather");
}

int coll_allgather_f32(float *buf, size_t count) {
  if (transport_ != COLL_TRANSPORT_MPI) {
    coll_req q = {0};
    int rc = coll_iallgather_f32(buf, count, &q);
    return rc ? rc : coll_wait(&q);
  }
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
  if (count == 0) return ST_OK;
  if (transport_ == COLL_TRANSPORT_MPI_STAGED)
    return staged_reduce_scatter_(in, out, count, scale, n, comm_rank());
#ifdef SPECTRAIN_HAVE_CUDA
  if (transport_ == COLL_TRANSPORT_NCCL)
    return coll_nccl_reduce_scatter(in, out, count, scale, req);
#endif
  if (n == 1) {
    memmove(out, in + (size_t)comm_rank() * count, count * sizeof(float));
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
  coll_req r = {0};
  int rc = coll_ireduce_scatter_f32(in, out, count, scale, &r);
  if (rc) return rc;
  return coll_wait(&r);
}

/* ---- offload variants (mpi/coll.h) ---------------------------------------------------- */

int coll_iallgather_from_host_f32(float *buf, const float *host_slice, size_t count,
                                  coll_req *req) {
  memset(req, 0, sizeof *req);
  int rc = count_ok_(count, "all-gather");
  if (rc) return rc;
  int n = comm_size(), r = comm_rank();
  count_(COLL_ALLGATHER, count * (size_t)n * sizeof(float));
  if (count == 0) return ST_OK;
  size_t own = (size_t)r * count, bytes = count * sizeof(float);
  if (transport_ == COLL_TRANSPORT_MPI_STAGED) {
    if (n == 1) { /* the gather is the upload */
      tk_->upload(buf, host_slice, bytes);
      return ST_OK;
    }
    float *st = stage_((size_t)n * count);
    if (!st) return ST_ERUNTIME;
    memcpy(st + own, host_slice, bytes); /* no download of the own slice */
    rc = host_allgather_(st, count);
    if (rc) return rc;
    tk_->upload(buf, st, (size_t)n * bytes);
    return ST_OK;
  }
#ifdef SPECTRAIN_HAVE_CUDA
  if (transport_ == COLL_TRANSPORT_NCCL)
    return coll_nccl_allgather_from_host(buf, host_slice, count, req);
#endif
  memcpy(buf + own, host_slice, bytes);
  if (n == 1) return ST_OK;
  req->active = 1;
  req->kind = REQ_ALLGATHER;
  return mpi_check_(MPI_Iallgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, (int)count,
                                   MPI_FLOAT, MPI_COMM_WORLD, req_(req)),
                    "MPI_Iallgather");
}

int coll_ireduce_scatter_to_host_f32(const float *in, float *host_out, size_t count,
                                     float scale, coll_req *req) {
  if (transport_ == COLL_TRANSPORT_MPI) /* host memory on both sides already */
    return coll_ireduce_scatter_f32(in, host_out, count, scale, req);
  memset(req, 0, sizeof *req);
  int rc = count_ok_(count, "reduce-scatter");
  if (rc) return rc;
  int n = comm_size(), r = comm_rank();
  count_(COLL_REDUCE_SCATTER, count * (size_t)n * sizeof(float));
  if (count == 0) return ST_OK;
#ifdef SPECTRAIN_HAVE_CUDA
  if (transport_ == COLL_TRANSPORT_NCCL)
    return coll_nccl_reduce_scatter_to_host(in, host_out, count, scale, req);
#endif
  /* MPI staged: complete at issue */
  if (n == 1) {
    tk_->download(host_out, in + (size_t)r * count, count * sizeof(float));
  } else {
    size_t full = (size_t)n * count;
    float *st = stage_(full);
    if (!st) return ST_ERUNTIME;
    tk_->download(st, in, full * sizeof(float));
    rc = host_reduce_scatter_(st, host_out, count);
    if (rc) return rc;
  }
  scale_(host_out, count, scale);
  return ST_OK;
}

/* ---- bf16 all-gathers (mpi/coll.h): pairs of bf16 values as 32-bit words ---------------- */

static int even_(size_t count) {
  if (count % 2 == 0) return ST_OK;
  return st_fail(ST_EINPUT, "bf16 all-gather: %zu values per rank; expected an even count "
                 "(two bf16 values travel as one 32-bit word)", count);
}

int coll_iallgather_bf16(bf16_t *buf, size_t count, coll_req *req) {
  memset(req, 0, sizeof *req);
  int rc = even_(count);
  return rc ? rc : coll_iallgather_f32((float *)(void *)buf, count / 2, req);
}

int coll_allgather_bf16(bf16_t *buf, size_t count) {
  int rc = even_(count);
  return rc ? rc : coll_allgather_f32((float *)(void *)buf, count / 2);
}

int coll_iallgather_from_host_bf16(bf16_t *buf, const bf16_t *host_slice, size_t count,
                                   coll_req *req) {
  memset(req, 0, sizeof *req);
  int rc = even_(count);
  return rc ? rc
            : coll_iallgather_from_host_f32((float *)(void *)buf,
                                            (const float *)(const void *)host_slice, count / 2,
                                            req);
}

static void finish_(coll_req *req) {
  if (req->kind == REQ_REDUCE_SCATTER) scale_(req->out, req->out_count, req->scale);
  req->active = 0;
}

int coll_wait(coll_req *req) {
  if (!req->active) return ST_OK;
#ifdef SPECTRAIN_HAVE_CUDA
  if (req->kind >= COLL_REQ_NCCL_ALLGATHER && req->kind <= COLL_REQ_NCCL_REDUCE_SCATTER_HOST)
    return coll_nccl_wait(req);
#endif
  int rc = mpi_check_(wait_(req_(req)), "MPI_Wait");
  finish_(req);
  return rc;
}

int coll_test(coll_req *req) {
  if (!req->active) return 1;
#ifdef SPECTRAIN_HAVE_CUDA
  if (req->kind >= COLL_REQ_NCCL_ALLGATHER && req->kind <= COLL_REQ_NCCL_REDUCE_SCATTER_HOST)
    return coll_nccl_test(req);
#endif
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
