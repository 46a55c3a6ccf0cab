/* COLL_TRANSPORT_NCCL (see mpi/coll.h): all-gathers and reduce-scatters of device buffers with
 * NCCL on gpu_comm_stream(), bootstrapped over MPI, ordered against gpu_compute_stream() with
 * events so that the host never blocks on a collective:
 *   issue:  record E on the compute stream; the comm stream waits for E (the buffers hold
 *           what the kernels queued so far wrote); the NCCL call; record E on the comm stream.
 *   wait:   the compute stream waits for E (kernels queued afterwards see the result); a
 *           reduce-scatter's scale (when not 1) is queued on the compute stream (k->scale).
 *   test:   cudaEventQuery(E).
 * cudaStreamWaitEvent waits for the record that precedes it, so one event per request serves
 * both directions. Events come from a small pool (no create/destroy per call).
 *
 * Compiled only with SPECTRAIN_HAVE_CUDA (the sources are globbed: the guard below keeps the
 * file empty otherwise). One rank drives one GPU: NCCL does not support two ranks of one
 * communicator on the same device (its initialisation fails with "Duplicate GPU detected"
 * or hangs), so init checks that first and says so on every rank. */
#ifdef SPECTRAIN_HAVE_CUDA
#include "mpi/coll_nccl.h"

#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kernels/gpu.h"
#include "mpi/comm.h"
#include "util/err.h"

static ncclComm_t comm_ = NULL;
static const kernels *k_ = NULL;
static int device_ = -1;
static uint64_t issued_ = 0; /* NCCL collectives issued on comm_ (compared at shutdown) */

static cudaEvent_t *pool_ = NULL; /* idle events */
static int pool_n_ = 0, pool_cap_ = 0;

static int cuda_fail_(cudaError_t e, const char *what) {
  return st_fail(ST_ERUNTIME, "collectives (nccl): %s failed: %s (%s)", what,
                 cudaGetErrorName(e), cudaGetErrorString(e));
}

static int nccl_fail_(ncclResult_t r, const char *what) {
  const char *last = ncclGetLastError(comm_);
  return st_fail(ST_ERUNTIME, "collectives (nccl): %s failed: %s%s%s (NCCL_DEBUG=WARN says more)",
                 what, ncclGetErrorString(r), last && *last ? ": " : "", last ? last : "");
}

#define CUDA_TRY(call, what)                                                                  \
  do {                                                                                        \
    cudaError_t e_ = (call);                                                                  \
    if (e_ != cudaSuccess) return cuda_fail_(e_, what);                                       \
  } while (0)
#define NCCL_TRY(call, what)                                                                  \
  do {                                                                                        \
    ncclResult_t r_ = (call);                                                                 \
    if (r_ != ncclSuccess) return nccl_fail_(r_, what);                                       \
  } while (0)

static cudaStream_t compute_(void) { return (cudaStream_t)gpu_compute_stream(); }
static cudaStream_t comm_stream_(void) { return (cudaStream_t)gpu_comm_stream(); }

static int event_get_(cudaEvent_t *ev) {
  if (pool_n_ > 0) {
    *ev = pool_[--pool_n_];
    return ST_OK;
  }
  CUDA_TRY(cudaEventCreateWithFlags(ev, cudaEventDisableTiming), "cudaEventCreateWithFlags");
  return ST_OK;
}

static void event_put_(cudaEvent_t ev) {
  if (pool_n_ == pool_cap_) {
    int cap = pool_cap_ ? 2 * pool_cap_ : 16;
    pool_ = xrealloc(pool_, (size_t)cap * sizeof *pool_);
    pool_cap_ = cap;
  }
  pool_[pool_n_++] = ev;
}

static void pool_free_(void) {
  for (int i = 0; i < pool_n_; i++) cudaEventDestroy(pool_[i]);
  free(pool_);
  pool_ = NULL;
  pool_n_ = pool_cap_ = 0;
}

int coll_nccl_ready(void) { return comm_ != NULL; }

/* This rank's device and host, for the one-GPU-per-rank check. */
typedef struct {
  char host[256];
  char bus[32];
} place_;

/* Local checks before any NCCL call: a GPU is selected, its streams exist and it is the
 * current device; fills *me. */
static int local_ready_(const kernels *k, place_ *me) {
  memset(me, 0, sizeof *me);
  int dev = gpu_current_device();
  if (dev < 0)
    return st_fail(ST_EINPUT,
                   "collective transport 'nccl': no GPU selected on this rank (the kernel "
                   "backend must be cuda: gpu_select_device runs first)");
  if (!compute_() || !comm_stream_())
    return st_fail(ST_ERUNTIME, "collective transport 'nccl': the CUDA streams do not exist");
  if (!k || !k->scale)
    return st_fail(ST_EINPUT, "collective transport 'nccl': needs the cuda kernel table");
  int cur = -1;
  CUDA_TRY(cudaGetDevice(&cur), "cudaGetDevice");
  if (cur != dev) CUDA_TRY(cudaSetDevice(dev), "cudaSetDevice");
  CUDA_TRY(cudaDeviceGetPCIBusId(me->bus, (int)sizeof me->bus, dev), "cudaDeviceGetPCIBusId");
  if (gethostname(me->host, sizeof me->host - 1) != 0) snprintf(me->host, sizeof me->host, "?");
  device_ = dev;
  return ST_OK;
}

/* Every rank: an error when two ranks on one host drive the same GPU. */
static int distinct_gpus_(const place_ *me) {
  int n = comm_size();
  if (n == 1) return ST_OK;
  place_ *all = xcalloc((size_t)n, sizeof *all);
  int rc = MPI_Allgather(me, (int)sizeof *me, MPI_BYTE, all, (int)sizeof *me, MPI_BYTE,
                         MPI_COMM_WORLD);
  if (rc != MPI_SUCCESS) {
    free(all);
    return st_fail(ST_ERUNTIME, "collective transport 'nccl': MPI_Allgather of the GPU "
                                "placement failed");
  }
  int per_host = 0; /* ranks on this rank's host */
  for (int i = 0; i < n; i++) per_host += strcmp(all[i].host, me->host) == 0;
  for (int i = 0; i < n; i++)
    for (int j = i + 1; j < n; j++)
      if (strcmp(all[i].host, all[j].host) == 0 && strcmp(all[i].bus, all[j].bus) == 0) {
        int ndev = 0;
        if (cudaGetDeviceCount(&ndev) != cudaSuccess) ndev = 0;
        rc = st_fail(ST_EINPUT,
                     "collective transport 'nccl': ranks %d and %d both drive GPU %s on host "
                     "%s, but NCCL needs one GPU per rank (%d ranks on this host, %d GPUs "
                     "visible here): start at most one rank per GPU (each rank opens GPU "
                     "local rank modulo the GPUs it sees)",
                     i, j, all[i].bus, all[i].host, per_host, ndev);
        free(all);
        return rc;
      }
  free(all);
  return ST_OK;
}

int coll_nccl_init(const kernels *k) {
  if (comm_) { /* collective: every rank has it alike */
    k_ = k;
    return ST_OK;
  }
  int n = comm_size(), r = comm_rank();
  place_ me;
  int rc = local_ready_(k, &me);
  int all = comm_max_status(rc);
  if (all)
    return rc ? rc
              : st_fail(all, "collective transport 'nccl': another rank has no usable GPU "
                             "(see its error)");
  rc = distinct_gpus_(&me); /* the same verdict on every rank */
  if (rc) return rc;

  ncclUniqueId id;
  memset(&id, 0, sizeof id);
  rc = ST_OK;
  if (r == 0) {
    ncclResult_t nr = ncclGetUniqueId(&id);
    if (nr != ncclSuccess) rc = nccl_fail_(nr, "ncclGetUniqueId");
  }
  all = comm_max_status(rc);
  if (all)
    return rc ? rc
              : st_fail(all, "collective transport 'nccl': rank 0 could not create the NCCL "
                             "unique id (see its error)");
  rc = comm_bcast(&id, sizeof id, 0);
  if (rc) return rc;

  ncclComm_t c = NULL;
  ncclResult_t nr = ncclCommInitRank(&c, n, id, r);
  rc = nr == ncclSuccess ? ST_OK : nccl_fail_(nr, "ncclCommInitRank");
  all = comm_max_status(rc);
  if (all) {
    if (c) ncclCommAbort(c);
    return rc ? rc
              : st_fail(all, "collective transport 'nccl': another rank could not create "
                             "its NCCL communicator (see its error)");
  }
  comm_ = c;
  k_ = k;
  issued_ = 0;
  int v = 0;
  ncclGetVersion(&v);
  log_info("collectives: NCCL %d.%d.%d on %d rank%s (rank 0: GPU %d, %s)", v / 10000,
           (v / 100) % 100, v % 100, n, n == 1 ? "" : "s", device_, me.bus);
  return ST_OK;
}

void coll_nccl_shutdown(void) {
  if (comm_) {
    /* Ranks that issued different numbers of collectives (one stopped on an error), or a
     * rank whose communicator saw an asynchronous error, would leave the others waiting in
     * ncclCommFinalize for operations that never complete: then every rank aborts. */
    ncclResult_t async = ncclSuccess;
    if (ncclCommGetAsyncError(comm_, &async) != ncclSuccess) async = ncclInternalError;
    uint64_t mm[3] = {issued_, UINT64_MAX - issued_, async != ncclSuccess};
    if (comm_size() > 1 &&
        MPI_Allreduce(MPI_IN_PLACE, mm, 3, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD) !=
            MPI_SUCCESS)
      mm[2] = 1;
    int same = mm[0] == UINT64_MAX - mm[1];
    if (mm[2] && async == ncclSuccess) async = ncclRemoteError; /* another rank's */
    if (same && async == ncclSuccess) {
      ncclResult_t fr = ncclCommFinalize(comm_);
      if (fr != ncclSuccess) log_warn("ncclCommFinalize: %s", ncclGetErrorString(fr));
      ncclCommDestroy(comm_);
    } else {
      log_warn("collectives (nccl): %s: aborting the NCCL communicator",
               same ? ncclGetErrorString(async)
                    : "ranks issued different numbers of collectives (one stopped early)");
      ncclCommAbort(comm_);
    }
    comm_ = NULL;
  }
  pool_free_();
  k_ = NULL;
  device_ = -1;
  issued_ = 0;
}

/* Order the comm stream after the compute stream's work so far; *ev is the request's event. */
static int issue_begin_(cudaEvent_t *ev) {
  if (!comm_)
    return st_fail(ST_ERUNTIME, "collectives (nccl): no communicator (coll_set_transport "
                                "first)");
  int rc = event_get_(ev);
  if (rc) return rc;
  cudaError_t e = cudaEventRecord(*ev, compute_());
  if (e == cudaSuccess) e = cudaStreamWaitEvent(comm_stream_(), *ev, 0);
  if (e != cudaSuccess) {
    event_put_(*ev);
    return cuda_fail_(e, "ordering the communication stream after the compute stream");
  }
  return ST_OK;
}

static int issue_end_(cudaEvent_t ev, coll_req *req, int kind) {
  issued_++;
  cudaError_t e = cudaEventRecord(ev, comm_stream_());
  if (e != cudaSuccess) {
    event_put_(ev);
    return cuda_fail_(e, "cudaEventRecord on the communication stream");
  }
  req->active = 1;
  req->kind = kind;
  req->event = (void *)ev;
  return ST_OK;
}

int coll_nccl_allgather(float *buf, size_t count, coll_req *req) {
  cudaEvent_t ev;
  int rc = issue_begin_(&ev);
  if (rc) return rc;
  /* in place: this rank's slice of buf is the send buffer */
  ncclResult_t nr = ncclAllGather(buf + (size_t)comm_rank() * count, buf, count, ncclFloat32,
                                  comm_, comm_stream_());
  if (nr != ncclSuccess) {
    event_put_(ev);
    return nccl_fail_(nr, "ncclAllGather");
  }
  return issue_end_(ev, req, COLL_REQ_NCCL_ALLGATHER);
}

int coll_nccl_reduce_scatter(const float *in, float *out, size_t count, float scale,
                             coll_req *req) {
  cudaEvent_t ev;
  int rc = issue_begin_(&ev);
  if (rc) return rc;
  ncclResult_t nr =
      ncclReduceScatter(in, out, count, ncclFloat32, ncclSum, comm_, comm_stream_());
  if (nr != ncclSuccess) {
    event_put_(ev);
    return nccl_fail_(nr, "ncclReduceScatter");
  }
  req->out = out;
  req->out_count = count;
  req->scale = scale;
  return issue_end_(ev, req, COLL_REQ_NCCL_REDUCE_SCATTER);
}

/* Offload: the own slice comes from pinned host memory. The copy is queued on the
 * communication stream after it waits for the compute stream (so the copy cannot overwrite
 * buf while a kernel queued earlier still reads it), then the in-place all-gather. The
 * request is an ordinary all-gather request. */
int coll_nccl_allgather_from_host(float *buf, const float *host_slice, size_t count,
                                  coll_req *req) {
  cudaEvent_t ev;
  int rc = issue_begin_(&ev);
  if (rc) return rc;
  float *own = buf + (size_t)comm_rank() * count;
  cudaError_t e = cudaMemcpyAsync(own, host_slice, count * sizeof(float),
                                  cudaMemcpyHostToDevice, comm_stream_());
  if (e != cudaSuccess) {
    event_put_(ev);
    return cuda_fail_(e, "cudaMemcpyAsync of the host shard to the device");
  }
  ncclResult_t nr = ncclAllGather(own, buf, count, ncclFloat32, comm_, comm_stream_());
  if (nr != ncclSuccess) {
    event_put_(ev);
    return nccl_fail_(nr, "ncclAllGather");
  }
  return issue_end_(ev, req, COLL_REQ_NCCL_ALLGATHER);
}

/* Offload: reduce-scatter into a device slice allocated in stream order on the
 * communication stream, copy it to host_out, free the slice in stream order (after the
 * copy), record the event; the wait synchronises the host with the event. */
int coll_nccl_reduce_scatter_to_host(const float *in, float *host_out, size_t count,
                                     float scale, coll_req *req) {
  cudaEvent_t ev;
  int rc = issue_begin_(&ev);
  if (rc) return rc;
  void *slice = NULL;
  cudaError_t e = cudaMallocAsync(&slice, count * sizeof(float), comm_stream_());
  if (e != cudaSuccess) {
    event_put_(ev);
    return cuda_fail_(e, "cudaMallocAsync of the reduce-scatter's device slice");
  }
  ncclResult_t nr =
      ncclReduceScatter(in, slice, count, ncclFloat32, ncclSum, comm_, comm_stream_());
  if (nr != ncclSuccess) {
    cudaFreeAsync(slice, comm_stream_());
    event_put_(ev);
    return nccl_fail_(nr, "ncclReduceScatter");
  }
  e = cudaMemcpyAsync(host_out, slice, count * sizeof(float), cudaMemcpyDeviceToHost,
                      comm_stream_());
  cudaError_t ef = cudaFreeAsync(slice, comm_stream_()); /* after the copy, in stream order */
  if (e == cudaSuccess) e = ef;
  if (e != cudaSuccess) {
    issued_++; /* the NCCL call was queued (shutdown compares the counts) */
    event_put_(ev);
    return cuda_fail_(e, "copying the reduce-scatter's result to the host");
  }
  req->out = host_out;
  req->out_count = count;
  req->scale = scale;
  return issue_end_(ev, req, COLL_REQ_NCCL_REDUCE_SCATTER_HOST);
}

/* Host wait for an event without spinning a core: query, then sleep with backoff
 * (10 us .. 0.5 ms), as coll.c waits for MPI. */
static cudaError_t event_host_wait_(cudaEvent_t ev) {
  long ns = 10000;
  for (;;) {
    cudaError_t e = cudaEventQuery(ev);
    if (e != cudaErrorNotReady) return e;
    if (cudaPeekAtLastError() == cudaErrorNotReady) cudaGetLastError();
    struct timespec ts = {0, ns};
    nanosleep(&ts, NULL);
    if (ns < 500000) ns *= 2;
  }
}

int coll_nccl_wait(coll_req *req) {
  if (!req->active) return ST_OK;
  cudaEvent_t ev = (cudaEvent_t)req->event;
  req->active = 0;
  req->event = NULL;
  if (req->kind == COLL_REQ_NCCL_REDUCE_SCATTER_HOST) {
    /* the result is in host memory: the host waits (nothing on the device reads it) */
    cudaError_t he = event_host_wait_(ev);
    event_put_(ev);
    if (he != cudaSuccess)
      return cuda_fail_(he, "waiting for the reduce-scatter's copy to the host");
    if (req->scale != 1.0f)
      for (size_t i = 0; i < req->out_count; i++) req->out[i] *= req->scale;
    ncclResult_t as = ncclSuccess;
    NCCL_TRY(ncclCommGetAsyncError(comm_, &as), "ncclCommGetAsyncError");
    if (as != ncclSuccess && as != ncclInProgress) return nccl_fail_(as, "a collective");
    return ST_OK;
  }
  cudaError_t e = cudaStreamWaitEvent(compute_(), ev, 0);
  event_put_(ev); /* the wait refers to the record before it: the event may be reused */
  if (e != cudaSuccess)
    return cuda_fail_(e, "ordering the compute stream after the collective");
  if (req->kind == COLL_REQ_NCCL_REDUCE_SCATTER && req->scale != 1.0f)
    k_->scale(req->out, req->scale, req->out_count);
  /* NCCL reports network and peer failures asynchronously */
  ncclResult_t async = ncclSuccess;
  NCCL_TRY(ncclCommGetAsyncError(comm_, &async), "ncclCommGetAsyncError");
  if (async != ncclSuccess && async != ncclInProgress) return nccl_fail_(async, "a collective");
  return ST_OK;
}

int coll_nccl_test(coll_req *req) {
  if (!req->active) return 1;
  cudaError_t e = cudaEventQuery((cudaEvent_t)req->event);
  if (e == cudaErrorNotReady) {
    /* "not ready" is no failure, but the runtime may keep it as the last error, where a
     * later launch check (cudaGetLastError) would take it for one */
    if (cudaPeekAtLastError() == cudaErrorNotReady) cudaGetLastError();
    return 0;
  }
  /* done, or an error: complete the request (coll_nccl_wait records the error) */
  coll_nccl_wait(req);
  return 1;
}

#endif /* SPECTRAIN_HAVE_CUDA */
