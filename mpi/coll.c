#include "mpi/coll.h"

#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mpi/comm.h"
#include "mpi/comm_internal.h"
#include "kernels/bf16.h"
#include "util/err.h"
#ifdef SPECTRAIN_HAVE_CUDA
#include "mpi/coll_nccl.h"
#endif

_Static_assert(sizeof(MPI_Request) <= 2 * sizeof(uint64_t), "coll_req too small for MPI_Request");

/* kinds 3-5 are the NCCL requests (mpi/coll_nccl.h) */
enum { REQ_ALLGATHER = 1, REQ_REDUCE_SCATTER = 2, REQ_REDUCE_SCATTER_BF16 = 6 };

static coll_counters counters_;

/* Shard groups (coll_set_groups). Without hybrid sharding the shard group is the world. */
static coll_groups groups_;
static int groups_set_ = 0;
static MPI_Comm shard_comm_ = MPI_COMM_NULL, replica_comm_ = MPI_COMM_NULL;
static int *group_of_ = NULL; /* [world size]: every rank's shard group */

static MPI_Comm scomm_(void) { return shard_comm_ != MPI_COMM_NULL ? shard_comm_ : MPI_COMM_WORLD; }
static int sn_(void) { return groups_.hybrid ? groups_.shard_size : comm_size(); }
static int sr_(void) { return groups_.hybrid ? groups_.shard_rank : comm_rank(); }
static int replicated_(void) { return groups_.hybrid && groups_.replicas > 1; }

/* The transport of the unit collectives, the kernel table their buffers belong to, and the
 * host staging of COLL_TRANSPORT_MPI_STAGED (k->host_alloc'd, grown as needed). */
static coll_transport transport_ = COLL_TRANSPORT_MPI;
static const kernels *tk_ = NULL;
static const kernels *staging_k_ = NULL; /* the table that allocated staging_ */
static float *staging_ = NULL;
static size_t staging_floats_ = 0;

/* The reduction of bf16 values (MPI_UINT16_T carrying bf16 bits): each sum formed in fp32 and
 * rounded to nearest even. Created on first use, freed by coll_shutdown. */
static MPI_Op bf16_sum_op_ = MPI_OP_NULL;

static MPI_Request *req_(coll_req *r) { return (MPI_Request *)(void *)r->mpi_req; }

static int count_ok_(size_t count, const char *what) {
  if (count > (size_t)INT_MAX)
    return st_fail(ST_EINPUT,
                   "%s of %zu floats per rank exceeds MPI's int count (%d); use more ranks or "
                   "split the unit",
                   what, count, INT_MAX);
  return ST_OK;
}

/* Members of group g (0 shard, 1 replica, 2 world) and how many of them share this host. */
static void group_dims_(int g, int *n, int *local) {
  if (!groups_set_) { /* before coll_set_groups: one group, the host's ranks local */
    *n = g == 1 ? 1 : comm_size();
    *local = g == 1 ? 1 : comm_node_size();
    return;
  }
  *n = g == 0 ? groups_.shard_size : g == 1 ? groups_.replicas : comm_size();
  *local = groups_.local_members[g];
}

void coll_link_model(int group, uint64_t bytes, int allreduce, uint64_t out[COLL_NLINK]) {
  int n, local;
  group_dims_(group, &n, &local);
  uint64_t f = allreduce ? 2 : 1;
  out[COLL_INTRA_HOST] = n > 0 ? f * bytes * (uint64_t)(local - 1) / (uint64_t)n : 0;
  out[COLL_INTER_HOST] = n > 0 ? f * bytes * (uint64_t)(n - local) / (uint64_t)n : 0;
}

/* One call of category c moving `bytes` logical bytes in group g (0 shard, 1 replica,
 * 2 world). */
static void count_g_(coll_category c, size_t bytes, int g) {
  counters_.calls[c]++;
  counters_.bytes[c] += bytes;
  uint64_t l[COLL_NLINK];
  coll_link_model(g, bytes, c == COLL_ALLREDUCE || c == COLL_REPLICA_ALLREDUCE, l);
  for (int k = 0; k < COLL_NLINK; k++) counters_.link_bytes[c][k] += l[k];
}
/* The unit collectives: in the shard group. */
static void count_(coll_category c, size_t bytes) { count_g_(c, bytes, 0); }

/* Hybrid: the reduce-scatter's result out[count] summed over the replica group (blocking,
 * under the job's deadline). Counted when the reduce-scatter is issued. */
static int replica_allreduce_(void *out, size_t count, MPI_Datatype type, MPI_Op op) {
  if (!replicated_() || count == 0) return ST_OK;
  MPI_Request q;
  int rc = MPI_Iallreduce(MPI_IN_PLACE, out, (int)count, type, op, replica_comm_, &q);
  if (rc == MPI_SUCCESS) rc = comm_wait_request(&q, "gradient all-reduce across replicas");
  if (rc == MPI_SUCCESS) return ST_OK;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  return st_fail(ST_ERUNTIME, "MPI_Iallreduce across replicas failed: %s", msg);
}
static int replica_sum_(float *out, size_t count) {
  return replica_allreduce_(out, count, MPI_FLOAT, MPI_SUM);
}
static void count_replica_(size_t count) {
  if (replicated_()) count_g_(COLL_REPLICA_ALLREDUCE, count * sizeof(float), 1);
}

/* Waiting: comm_wait_request (a sleeping poll, under the job's deadline). */
static int wait_(MPI_Request *r, const char *what) { return comm_wait_request(r, what); }

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

static void transport_shutdown_(void) {
#ifdef SPECTRAIN_HAVE_CUDA
  coll_nccl_shutdown();
#endif
  staging_free_();
  transport_ = COLL_TRANSPORT_MPI;
  tk_ = NULL;
}

static void groups_free_(void) {
  if (shard_comm_ != MPI_COMM_NULL) MPI_Comm_free(&shard_comm_);
  if (replica_comm_ != MPI_COMM_NULL) MPI_Comm_free(&replica_comm_);
  free(group_of_);
  group_of_ = NULL;
  memset(&groups_, 0, sizeof groups_);
  groups_set_ = 0;
}

void coll_shutdown(void) {
  transport_shutdown_();
  if (bf16_sum_op_ != MPI_OP_NULL) MPI_Op_free(&bf16_sum_op_);
  groups_free_();
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
    transport_shutdown_(); /* releases an NCCL communicator (collective: all ranks are here) */
    transport_ = t;
    tk_ = t == COLL_TRANSPORT_MPI ? NULL : k;
    return ST_OK;
  }
  if (replicated_())
    return st_fail(ST_EINPUT,
                   "collective transport 'nccl' with hybrid sharding (%d shard groups): not "
                   "supported yet; use sharding.strategy: full on NCCL",
                   groups_.replicas);
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
                                     MPI_FLOAT, scomm_(), &q),
                      "MPI_Iallgather");
  return rc ? rc : mpi_check_(wait_(&q, "all-gather"), "MPI_Wait");
}

static int host_reduce_scatter_t_(const void *in, void *out, size_t count, MPI_Datatype type,
                                  MPI_Op op) {
  MPI_Request q;
  int rc = mpi_check_(MPI_Ireduce_scatter_block(in, out, (int)count, type, op, scomm_(), &q),
                      "MPI_Ireduce_scatter_block");
  return rc ? rc : mpi_check_(wait_(&q, "reduce-scatter"), "MPI_Wait");
}
static int host_reduce_scatter_(const float *in, float *out, size_t count) {
  return host_reduce_scatter_t_(in, out, count, MPI_FLOAT, MPI_SUM);
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
  int rc = replica_sum_(res, count);
  if (rc) return rc;
  scale_(res, count, scale);
  tk_->upload(out, res, count * sizeof(float));
  return ST_OK;
}

int coll_iallgather_f32(float *buf, size_t count, coll_req *req) {
  memset(req, 0, sizeof *req);
  int rc = count_ok_(count, "all-gather");
  if (rc) return rc;
  int n = sn_();
  count_(COLL_ALLGATHER, count * (size_t)n * sizeof(float));
  if (n == 1 || count == 0) return ST_OK;
  if (transport_ == COLL_TRANSPORT_MPI_STAGED)
    return staged_allgather_(buf, count, n, sr_());
#ifdef SPECTRAIN_HAVE_CUDA
  if (transport_ == COLL_TRANSPORT_NCCL) return coll_nccl_allgather(buf, count, req);
#endif
  req->active = 1;
  req->kind = REQ_ALLGATHER;
  return mpi_check_(MPI_Iallgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, (int)count,
                                   MPI_FLOAT, scomm_(), req_(req)),
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
  int n = sn_();
  count_(COLL_ALLGATHER, count * (size_t)n * sizeof(float));
  if (n == 1 || count == 0) return ST_OK;
  MPI_Request r;
  int rc2 = mpi_check_(MPI_Iallgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, (int)count,
                                      MPI_FLOAT, scomm_(), &r),
                       "MPI_Iallgather");
  return rc2 ? rc2 : mpi_check_(wait_(&r, "all-gather"), "MPI_Wait");
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
  int n = sn_();
  count_(COLL_REDUCE_SCATTER, count * (size_t)n * sizeof(float));
  if (count == 0) return ST_OK;
  count_replica_(count);
  if (transport_ == COLL_TRANSPORT_MPI_STAGED)
    return staged_reduce_scatter_(in, out, count, scale, n, sr_());
#ifdef SPECTRAIN_HAVE_CUDA
  if (transport_ == COLL_TRANSPORT_NCCL)
    return coll_nccl_reduce_scatter(in, out, count, scale, req);
#endif
  if (n == 1) {
    memmove(out, in + (size_t)sr_() * count, count * sizeof(float));
    rc = replica_sum_(out, count);
    if (rc) return rc;
    scale_(out, count, scale);
    return ST_OK;
  }
  req->active = 1;
  req->kind = REQ_REDUCE_SCATTER;
  req->out = out;
  req->out_count = count;
  req->scale = scale;
  req->replicate = replicated_();
  return mpi_check_(MPI_Ireduce_scatter_block(in, out, (int)count, MPI_FLOAT, MPI_SUM,
                                              scomm_(), req_(req)),
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
  int n = sn_(), r = sr_();
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
                                   MPI_FLOAT, scomm_(), req_(req)),
                    "MPI_Iallgather");
}

int coll_ireduce_scatter_to_host_f32(const float *in, float *host_out, size_t count,
                                     float scale, coll_req *req) {
  if (transport_ == COLL_TRANSPORT_MPI) /* host memory on both sides already */
    return coll_ireduce_scatter_f32(in, host_out, count, scale, req);
  memset(req, 0, sizeof *req);
  int rc = count_ok_(count, "reduce-scatter");
  if (rc) return rc;
  int n = sn_(), r = sr_();
  count_(COLL_REDUCE_SCATTER, count * (size_t)n * sizeof(float));
  if (count == 0) return ST_OK;
  count_replica_(count);
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
  rc = replica_sum_(host_out, count);
  if (rc) return rc;
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

/* ---- bf16 reduce-scatter (mpi/coll.h) --------------------------------------------------- */


static void bf16_sum_(void *in, void *inout, int *len, MPI_Datatype *type) {
  (void)type;
  const bf16_t *a = in;
  bf16_t *b = inout;
  for (int i = 0; i < *len; i++) b[i] = bf16_from_f32(bf16_to_f32(a[i]) + bf16_to_f32(b[i]));
}

static int bf16_op_(void) {
  if (bf16_sum_op_ != MPI_OP_NULL) return ST_OK;
  return mpi_check_(MPI_Op_create(bf16_sum_, 1, &bf16_sum_op_), "MPI_Op_create (bf16 sum)");
}

static int replica_sum16_(bf16_t *out, size_t count) {
  return replica_allreduce_(out, count, MPI_UINT16_T, bf16_sum_op_);
}

int coll_ireduce_scatter_bf16(const bf16_t *in, bf16_t *out, size_t count, coll_req *req) {
  memset(req, 0, sizeof *req);
  int rc = count_ok_(count, "reduce-scatter");
  if (rc) return rc;
  if (transport_ == COLL_TRANSPORT_NCCL)
    return st_fail(ST_EINPUT, "sharding.reduce_dtype: bf16 is not available on the nccl "
                   "transport yet (use reduce_dtype: fp32 on the cuda backend)");
  int n = sn_(), r = sr_();
  count_(COLL_REDUCE_SCATTER, count * (size_t)n * sizeof(bf16_t));
  if (count == 0) return ST_OK;
  if (replicated_()) count_g_(COLL_REPLICA_ALLREDUCE, count * sizeof(bf16_t), 1);
  rc = bf16_op_();
  if (rc) return rc;
  size_t bytes = count * sizeof(bf16_t);
  if (transport_ == COLL_TRANSPORT_MPI_STAGED) { /* through host memory, complete at issue */
    size_t full = n == 1 ? 0 : (size_t)n * count;
    float *st = stage_((full + count + 1) / 2); /* bf16 values, two to a float */
    if (!st) return ST_ERUNTIME;
    bf16_t *res = (bf16_t *)(void *)st + full;
    if (n == 1) {
      tk_->download(res, in + (size_t)r * count, bytes);
    } else {
      bf16_t *all = (bf16_t *)(void *)st;
      tk_->download(all, in, full * sizeof(bf16_t));
      rc = host_reduce_scatter_t_(all, res, count, MPI_UINT16_T, bf16_sum_op_);
      if (rc) return rc;
    }
    rc = replica_sum16_(res, count);
    if (rc) return rc;
    tk_->upload(out, res, bytes);
    return ST_OK;
  }
  if (n == 1) {
    memmove(out, in + (size_t)r * count, bytes);
    return replica_sum16_(out, count);
  }
  req->active = 1;
  req->kind = REQ_REDUCE_SCATTER_BF16;
  req->out16 = out;
  req->out_count = count;
  req->replicate = replicated_();
  return mpi_check_(MPI_Ireduce_scatter_block(in, out, (int)count, MPI_UINT16_T, bf16_sum_op_,
                                              scomm_(), req_(req)),
                    "MPI_Ireduce_scatter_block (bf16)");
}

/* A completed MPI request: a reduce-scatter's replica all-reduce (hybrid) and scale. */
static int finish_(coll_req *req) {
  int rc = ST_OK;
  if (req->kind == REQ_REDUCE_SCATTER && req->replicate) rc = replica_sum_(req->out, req->out_count);
  if (req->kind == REQ_REDUCE_SCATTER) scale_(req->out, req->out_count, req->scale);
  if (req->kind == REQ_REDUCE_SCATTER_BF16 && req->replicate)
    rc = replica_sum16_(req->out16, req->out_count);
  req->active = 0;
  return rc;
}

int coll_wait(coll_req *req) {
  if (!req->active) return ST_OK;
#ifdef SPECTRAIN_HAVE_CUDA
  if (req->kind >= COLL_REQ_NCCL_ALLGATHER && req->kind <= COLL_REQ_NCCL_REDUCE_SCATTER_HOST)
    return coll_nccl_wait(req);
#endif
  int rc = mpi_check_(
      wait_(req_(req), req->kind == REQ_ALLGATHER ? "all-gather" : "reduce-scatter"),
      "MPI_Wait");
  int rc2 = finish_(req);
  return rc ? rc : rc2;
}

int coll_test(coll_req *req) {
  if (!req->active) return 1;
#ifdef SPECTRAIN_HAVE_CUDA
  if (req->kind >= COLL_REQ_NCCL_ALLGATHER && req->kind <= COLL_REQ_NCCL_REDUCE_SCATTER_HOST)
    return coll_nccl_test(req);
#endif
  int done = 0;
  MPI_Test(req_(req), &done, MPI_STATUS_IGNORE);
  if (done && finish_(req)) log_error("%s", st_errmsg()); /* the next wait fails alike */
  return done;
}

static int allreduce_(void *x, size_t n, size_t elem_bytes, MPI_Datatype t, MPI_Op op) {
  int rc = count_ok_(n, "allreduce");
  if (rc) return rc;
  count_g_(COLL_ALLREDUCE, n * elem_bytes, 2);
  if (comm_size() == 1 || n == 0) return ST_OK;
  MPI_Request r;
  rc = mpi_check_(MPI_Iallreduce(MPI_IN_PLACE, x, (int)n, t, op, MPI_COMM_WORLD, &r),
                  "MPI_Iallreduce");
  return rc ? rc : mpi_check_(wait_(&r, "allreduce"), "MPI_Wait");
}

int coll_shard_allreduce_sum_f64(double *x, size_t n) {
  if (!groups_.hybrid) return coll_allreduce_sum_f64(x, n);
  int rc = count_ok_(n, "allreduce");
  if (rc) return rc;
  count_g_(COLL_ALLREDUCE, n * sizeof *x, 0);
  if (groups_.shard_size == 1 || n == 0) return ST_OK;
  MPI_Request r;
  rc = mpi_check_(MPI_Iallreduce(MPI_IN_PLACE, x, (int)n, MPI_DOUBLE, MPI_SUM, shard_comm_, &r),
                  "MPI_Iallreduce");
  return rc ? rc : mpi_check_(wait_(&r, "allreduce"), "MPI_Wait");
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
  static const char *names[COLL_NCAT] = {"allgather", "reduce_scatter", "allreduce",
                                         "replica_allreduce"};
  return (int)c >= 0 && c < COLL_NCAT ? names[c] : "?";
}

const char *coll_link_name(coll_link l) {
  return l == COLL_INTRA_HOST ? "intra_host" : l == COLL_INTER_HOST ? "inter_host" : "?";
}

/* ---- shard groups (mpi/coll.h) ----------------------------------------------------------- */

void coll_get_groups(coll_groups *g) {
  if (groups_set_) {
    *g = groups_;
    return;
  }
  memset(g, 0, sizeof *g);
  g->shard_size = comm_size();
  g->shard_rank = comm_rank();
  g->replicas = 1;
  g->nhosts = 1;
  g->local_members[0] = g->local_members[2] = comm_node_size();
  g->local_members[1] = 1;
}

int coll_group_of_rank(int world_rank) {
  return groups_set_ && group_of_ && world_rank >= 0 && world_rank < comm_size()
             ? group_of_[world_rank]
             : 0;
}

/* The layout from the placement (the same on every rank): per rank its group and shard
 * rank, or an error naming what does not fit. */
static int layout_(const comm_place *p, int n, int nhosts, int hybrid, int shard_size,
                   const char *key, int *group, int *srank, int *S_out) {
  int *per_host = xcalloc((size_t)nhosts, sizeof *per_host);
  int *pos = xcalloc((size_t)n, sizeof *pos);
  for (int r = 0; r < n; r++) pos[r] = per_host[p[r].host_index]++;
  int rc = ST_OK, S = shard_size;
  char hosts[512];
  int len = 0;
  for (int h = 0; h < nhosts && len < (int)sizeof hosts - 96; h++)
    for (int r = 0; r < n; r++)
      if (p[r].host_index == h) {
        len += snprintf(hosts + len, sizeof hosts - (size_t)len, "%s%s %d", h ? ", " : "",
                        p[r].host, per_host[h]);
        break;
      }
  if (!hybrid) {
    S = n;
  } else if (S <= 0) {
    S = per_host[0];
    for (int h = 1; h < nhosts && !rc; h++)
      if (per_host[h] != S)
        rc = st_fail(ST_EINPUT,
                     "%s hybrid: the hosts run different numbers of ranks (%s): hybrid "
                     "sharding shards within a host and needs the same count on every host; "
                     "start as many ranks on each (mpirun --map-by ppr:K:node, sbatch "
                     "--ntasks-per-node=K), or set sharding.shard_size to a divisor of every "
                     "count",
                     key, hosts);
  } else {
    for (int h = 0; h < nhosts && !rc; h++)
      if (per_host[h] % S)
        rc = st_fail(ST_EINPUT,
                     "%s hybrid with sharding.shard_size %d: every host must run a multiple "
                     "of %d ranks (ranks per host: %s); a shard group never spans hosts",
                     key, S, S, hosts);
  }
  if (!rc) {
    /* groups numbered host by host: the groups of host h come after those of hosts < h */
    int *first = xcalloc((size_t)nhosts, sizeof *first);
    for (int h = 1; h < nhosts; h++)
      first[h] = first[h - 1] + (hybrid ? per_host[h - 1] / S : 0);
    for (int r = 0; r < n; r++) {
      group[r] = hybrid ? first[p[r].host_index] + pos[r] / S : 0;
      srank[r] = hybrid ? pos[r] % S : r;
    }
    free(first);
  }
  free(per_host);
  free(pos);
  *S_out = S;
  return rc;
}

int coll_set_groups(int hybrid, int shard_size, const char *key) {
  if (!key) key = "sharding.strategy:";
  comm_place *p = NULL;
  int nhosts = 0, n = comm_size(), me = comm_rank();
  int rc = comm_placement(&p, &nhosts);
  if (rc) return rc;
  int *group = xcalloc((size_t)n, sizeof *group), *srank = xcalloc((size_t)n, sizeof *srank);
  int S = 0;
  rc = layout_(p, n, nhosts, hybrid, shard_size, key, group, srank, &S);
  if (!rc && hybrid && transport_ == COLL_TRANSPORT_NCCL && S < n)
    rc = st_fail(ST_EINPUT,
                 "%s hybrid on the NCCL transport (training.backend cuda): not supported yet; "
                 "use sharding.strategy: full there",
                 key);
  /* every rank decided from the same placement: no rank is left in a collective */
  if (rc) {
    free(p);
    free(group);
    free(srank);
    return rc;
  }
  groups_free_();
  groups_.hybrid = hybrid && S < n;
  groups_.shard_size = S;
  groups_.shard_rank = srank[me];
  groups_.replicas = n / S;
  groups_.replica_rank = group[me];
  groups_.nhosts = nhosts;
  int lm[3] = {0, 0, 0};
  for (int r = 0; r < n; r++) {
    if (p[r].host_index != p[me].host_index) continue;
    lm[0] += group[r] == group[me];
    lm[1] += srank[r] == srank[me];
    lm[2]++;
  }
  memcpy(groups_.local_members, lm, sizeof lm);
  if (!groups_.hybrid) { /* one group: the world; shard index = rank */
    groups_.shard_rank = me;
    groups_.replica_rank = 0;
    groups_.local_members[0] = lm[2];
    groups_.local_members[1] = 1;
  }
  group_of_ = group;
  groups_set_ = 1;
  free(srank);
  free(p);
  if (!groups_.hybrid) return ST_OK;
  if (MPI_Comm_split(MPI_COMM_WORLD, groups_.replica_rank, groups_.shard_rank, &shard_comm_) !=
          MPI_SUCCESS ||
      MPI_Comm_split(MPI_COMM_WORLD, groups_.shard_rank, groups_.replica_rank, &replica_comm_) !=
          MPI_SUCCESS) {
    groups_free_();
    return st_fail(ST_ERUNTIME, "MPI_Comm_split of the shard and replica groups failed");
  }
  int cs = 0, cr = 0;
  MPI_Comm_rank(shard_comm_, &cs);
  MPI_Comm_rank(replica_comm_, &cr);
  if (cs != groups_.shard_rank || cr != groups_.replica_rank) { /* cannot happen: keys */
    groups_free_();
    return st_fail(ST_ERUNTIME, "shard groups: communicator ranks %d/%d, expected %d/%d", cs, cr,
                   groups_.shard_rank, groups_.replica_rank);
  }
  return ST_OK;
}
