#include "mpi/comm.h"

#include <mpi.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mpi/comm_internal.h"
#include "util/err.h"

static int rank_ = 0, size_ = 1, local_rank_ = 0, node_size_ = 1, inited_ = 0;
static const char *local_source_ = "single rank";
static MPI_Comm probe_comm_ = MPI_COMM_NULL; /* the timeout's who-is-there exchange */
static double timeout_s_ = 0;
static const char *timeout_key_ = "";
static comm_place *hosts_ = NULL; /* the placement, once gathered (for naming lost ranks) */

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
  if (size_ > 1) MPI_Comm_dup(MPI_COMM_WORLD, &probe_comm_);
  if (size_ > 1) { /* ranks sharing this host's memory */
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node);
    MPI_Comm_size(node, &node_size_);
    MPI_Comm_free(&node);
  }
  return ST_OK;
}

void comm_set_timeout(double seconds, const char *key) {
  timeout_s_ = seconds > 0 ? seconds : 0;
  timeout_key_ = key ? key : "";
}
double comm_timeout(void) { return timeout_s_; }

static double now_s_(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* After a timeout: one message to and from every other rank on probe_comm_, for `grace`
 * seconds. The ranks that answered are reachable and also waiting past their deadline (all
 * healthy ranks of a job whose collective cannot complete get here within about the spread
 * of their entry into it); the others are written into `out` ("ranks 2, 3 on host h2").
 * Returns how many did not answer. */
static int unanswered_(double grace, char *out, size_t len) {
  static int one = 1;
  int n = size_;
  int *got = xcalloc((size_t)n, sizeof *got), *flag = xcalloc((size_t)n, sizeof *flag);
  MPI_Request *rq = xcalloc((size_t)2 * (size_t)n, sizeof *rq);
  for (int q = 0; q < n; q++) {
    rq[q] = rq[n + q] = MPI_REQUEST_NULL;
    if (q == rank_) continue;
    MPI_Irecv(&got[q], 1, MPI_INT, q, 7, probe_comm_, &rq[q]);
    MPI_Isend(&one, 1, MPI_INT, q, 7, probe_comm_, &rq[n + q]);
  }
  flag[rank_] = 1;
  double end = now_s_() + grace;
  int missing = n - 1;
  while (missing > 0 && now_s_() < end) {
    for (int q = 0; q < n; q++) {
      if (flag[q]) continue;
      MPI_Test(&rq[q], &flag[q], MPI_STATUS_IGNORE);
      if (flag[q]) missing--;
    }
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  /* grouped by host, in rank order: "ranks 2, 3 on host h2; rank 5 on host h3" */
  size_t used = 0;
  out[0] = 0;
  for (int q = 0; q < n && used + 96 < len; q++) {
    if (flag[q]) continue;
    int cnt = 0;
    for (int o = q; o < n; o++)
      cnt += !flag[o] && (!hosts_ || hosts_[o].host_index == hosts_[q].host_index);
    used += (size_t)snprintf(out + used, len - used, "%s%s ", used ? "; " : "",
                             cnt > 1 ? "ranks" : "rank");
    int first = 1;
    for (int o = q; o < n && used + 48 < len; o++) {
      if (flag[o] || (hosts_ && hosts_[o].host_index != hosts_[q].host_index) ||
          (!hosts_ && o != q))
        continue;
      used += (size_t)snprintf(out + used, len - used, "%s%d", first ? "" : ", ", o);
      first = 0;
      flag[o] = 1; /* listed */
    }
    if (hosts_) used += (size_t)snprintf(out + used, len - used, " on host %s", hosts_[q].host);
  }
  /* the requests are left as they are: the job ends now */
  free(got);
  free(flag);
  free(rq);
  return missing;
}

int comm_wait_request(MPI_Request *r, const char *what) {
  static int spin = -1;
  if (spin < 0) {
    const char *e = getenv("SPECTRAIN_COMM_SPIN");
    spin = e && e[0] == '1';
  }
  if (spin && timeout_s_ <= 0) return MPI_Wait(r, MPI_STATUS_IGNORE);
  double t0 = timeout_s_ > 0 ? now_s_() : 0;
  int done = 0, rc = MPI_Test(r, &done, MPI_STATUS_IGNORE);
  long ns = 10000;
  for (unsigned it = 1; rc == MPI_SUCCESS && !done; it++) {
    if (!spin) {
      struct timespec ts = {0, ns};
      nanosleep(&ts, NULL);
      if (ns < 500000) ns *= 2;
    }
    rc = MPI_Test(r, &done, MPI_STATUS_IGNORE);
    if (done || timeout_s_ <= 0 || (spin && it % 1024)) continue;
    double waited = now_s_() - t0;
    if (waited < timeout_s_) continue;
    double grace = timeout_s_ / 4 < 1 ? 1 : timeout_s_ / 4 > 30 ? 30 : timeout_s_ / 4;
    char host[COMM_HOST_MAX] = "?", lost[1024];
    gethostname(host, sizeof host - 1);
    int missing = size_ > 1 ? unanswered_(grace, lost, sizeof lost) : 0;
    if (missing)
      log_error("on host %s: the %s has waited %.0f s for the other ranks (%s: %g s); %s did "
                "not answer within %.0f s more: lost (host down, link cut) or stuck; ending "
                "the job (the newest complete checkpoint is the last good state: resubmit to "
                "resume from it)",
                host, what, waited, timeout_key_, timeout_s_, lost, grace);
    else
      log_error("on host %s: the %s has waited %.0f s for the other ranks (%s: %g s) though "
                "every rank answers: the ranks are out of step (a bug: please report it); "
                "ending the job",
                host, what, waited, timeout_key_, timeout_s_);
    MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1);
  }
  return rc;
}

void comm_finalize(void) {
  if (probe_comm_ != MPI_COMM_NULL) MPI_Comm_free(&probe_comm_);
  free(hosts_);
  hosts_ = NULL;
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
  free(hosts_);
  hosts_ = xcalloc((size_t)size_, sizeof *hosts_);
  memcpy(hosts_, p, (size_t)size_ * sizeof *p);
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

/* Issued non-blocking and completed with comm_wait_request: under the job's deadline. */
static int wait_(int issued, MPI_Request *r, const char *what) {
  return issued == MPI_SUCCESS ? comm_wait_request(r, what) : issued;
}

void comm_barrier(void) {
  MPI_Request r;
  if (size_ > 1) wait_(MPI_Ibarrier(MPI_COMM_WORLD, &r), &r, "barrier");
}

int comm_max_status(int local_status) {
  if (size_ == 1) return local_status;
  int out = local_status;
  MPI_Request r;
  if (wait_(MPI_Iallreduce(&local_status, &out, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD, &r), &r,
            "status agreement between the ranks") != MPI_SUCCESS)
    return local_status ? local_status : ST_ERUNTIME;
  return out;
}

int comm_agree_u64(uint64_t value, const char *what) {
  if (size_ == 1) return ST_OK;
  uint64_t v0 = value;
  MPI_Request r;
  if (wait_(MPI_Ibcast(&v0, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD, &r), &r, "agreement") !=
      MPI_SUCCESS)
    return st_fail(ST_ERUNTIME, "MPI_Ibcast failed while agreeing on %s", what);
  int differs = value != v0 ? rank_ : size_;
  int first = size_;
  if (wait_(MPI_Iallreduce(&differs, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD, &r), &r,
            "agreement") != MPI_SUCCESS)
    return st_fail(ST_ERUNTIME, "MPI_Iallreduce failed while agreeing on %s", what);
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
    MPI_Request r;
    if (wait_(MPI_Ibcast(p, n, MPI_BYTE, root, MPI_COMM_WORLD, &r), &r, "broadcast") !=
        MPI_SUCCESS)
      return st_fail(ST_ERUNTIME, "MPI_Ibcast failed");
    p += n;
    bytes -= (size_t)n;
  }
  return ST_OK;
}

static int allreduce_(void *x, int n, MPI_Datatype t, MPI_Op op) {
  if (size_ == 1) return ST_OK;
  MPI_Request r;
  if (wait_(MPI_Iallreduce(MPI_IN_PLACE, x, n, t, op, MPI_COMM_WORLD, &r), &r, "allreduce") !=
      MPI_SUCCESS)
    return st_fail(ST_ERUNTIME, "MPI_Iallreduce failed");
  return ST_OK;
}

int comm_allreduce_sum_f64(double *x, int n) { return allreduce_(x, n, MPI_DOUBLE, MPI_SUM); }
int comm_allreduce_max_f64(double *x, int n) { return allreduce_(x, n, MPI_DOUBLE, MPI_MAX); }
int comm_allreduce_sum_u64(uint64_t *x, int n) { return allreduce_(x, n, MPI_UINT64_T, MPI_SUM); }
