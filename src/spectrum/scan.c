#include "spectrum/scan.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/gpu.h"
#include "kernels/gpu_svd.h"
#include "mpi/comm.h"
#include "mpi/grid.h"
#include "util/err.h"
#include "util/finite.h"
#include "util/hash.h"
#include "util/mem.h"

enum { FILL_NONFINITE_ = 100 }; /* a fill status meaning "NaN/Inf in W": skip, SNR is NaN */

static const char lm_head_[] = "lm_head.weight", embed_[] = "model.embed_tokens.weight";

snr_input *scan_inputs(const sft_model *m, int tied, int *n) {
  snr_input *in = xcalloc((size_t)m->n + 1, sizeof *in);
  const sft_tensor *emb = tied ? sft_find(m, embed_) : NULL;
  *n = 0;
  for (int i = 0; i < m->n; i++) {
    snr_input *x = &in[(*n)++];
    x->tensor = m->t[i].name;
    x->ndim = m->t[i].ndim;
    for (int d = 0; d < m->t[i].ndim && d < 8; d++) x->shape[d] = m->t[i].shape[d];
  }
  if (emb && !sft_find(m, lm_head_)) { /* the tied head: a module whose weight is the embedding */
    snr_input *x = &in[(*n)++];
    x->tensor = lm_head_;
    x->data_tensor = emb->name;
    x->ndim = emb->ndim;
    for (int d = 0; d < emb->ndim && d < 8; d++) x->shape[d] = emb->shape[d];
  }
  return in;
}

/* The stored tensor a module reads (its own, or the embedding of a tied head). */
static const sft_tensor *data_of_(const sft_model *m, const snr_module *e) {
  return sft_find(m, e->data_tensor);
}

/* Spectrum stores NaN for a weight holding NaN/Inf (svdvals fails on it and the module is
 * skipped with its error): say which element, on the rank that read it. */
static void warn_nonfinite_(const sft_model *m, const snr_module *e, const sft_tensor *t,
                            uint64_t flat, double v) {
  char at[160], via[200] = "";
  finite_index_str(flat, t->ndim, t->shape, at, sizeof at);
  if (strcmp(e->tensor, t->name) != 0) snprintf(via, sizeof via, " (tied: the data of '%s')", t->name);
  log_warn("%s: tensor '%s'%s: element %s (%s) is %s: its SNR is NaN (as Spectrum stores it); "
           "it is listed in the results and never selected",
           m->paths[t->file], e->tensor, via, at, sft_dtype_name(t->dtype), finite_name(v));
}

uint64_t scan_table_hash(const snr_table *t) {
  uint64_t h = HASH64_INIT;
  for (int i = 0; i < t->n; i++) {
    h = hash64_str(h, t->m[i].module);
    double v = t->m[i].snr;
    if (isnan(v)) v = NAN; /* one NaN bit pattern */
    h = hash64_bytes(h, &v, sizeof v);
  }
  return h;
}

int scan_parse_bytes(const char *s, uint64_t *out) {
  char *end;
  double v = strtod(s, &end);
  if (end == s || v < 0) return -1;
  double mul = 1;
  switch (*end) {
    case 'k': case 'K': mul = 1024.0; end++; break;
    case 'm': case 'M': mul = 1024.0 * 1024; end++; break;
    case 'g': case 'G': mul = 1024.0 * 1024 * 1024; end++; break;
    case 't': case 'T': mul = 1024.0 * 1024 * 1024 * 1024; end++; break;
    default: break;
  }
  if (*end == 'i') end++;
  if (*end == 'B' || *end == 'b') end++;
  if (*end) return -1;
  *out = (uint64_t)(v * mul);
  return 0;
}

static double cost_(const snr_module *e) {
  if (e->nan_by_shape) return 0;
  double mn = (double)(e->rows < e->cols ? e->rows : e->cols);
  double mx = (double)(e->rows < e->cols ? e->cols : e->rows);
  return mn * mn * mx + (double)e->numel;
}

uint64_t scan_single_bytes(int64_t rows, int64_t cols) {
  uint64_t mn = (uint64_t)(rows < cols ? rows : cols);
  uint64_t mx = (uint64_t)(rows < cols ? cols : rows);
  uint64_t work = 3 * mn + (mx > 7 * mn ? mx : 7 * mn);
  return 8 * ((uint64_t)rows * (uint64_t)cols + mn + work) + 32 * mn;
}

static const char *const solver_names_[] = {"auto", "cpu", "gpu"};

int scan_solver_parse(const char *s) {
  for (int i = 0; i < 3; i++)
    if (strcmp(s, solver_names_[i]) == 0) return i;
  return -1;
}

const char *scan_solver_name(int solver) {
  return solver >= 0 && solver < 3 ? solver_names_[solver] : "?";
}

static int smallest_group_(const scan_dispatch *d, int64_t rows, int64_t cols) {
  for (int g = 2; g <= d->nranks; g++)
    if (grid_svd_bytes_per_rank(cols, rows, g) <= d->host_limit_bytes) return g;
  return 0;
}

int scan_place(const scan_dispatch *d, int64_t rows, int64_t cols, int *group_size) {
  *group_size = 0;
  if (rows <= 1 || cols <= 0) return SCAN_ON_CPU; /* 1-D, empty: no SVD (snr_of_matrix) */
  uint64_t numel = (uint64_t)rows * (uint64_t)cols;
  int64_t mn = rows < cols ? rows : cols;
  if (d->solver != SCAN_SOLVER_CPU && d->gpu_ok && d->gpu_max_elems > 0) {
    int small = d->solver == SCAN_SOLVER_AUTO && mn < d->gpu_min_dim;
    uint64_t host = 4 * numel + 8 * (uint64_t)mn; /* the float copy and the values */
    int fits_gpu = numel <= (uint64_t)d->gpu_max_elems;
    if (fits_gpu && !small && host <= d->host_limit_bytes) return SCAN_ON_GPU;
    if (!fits_gpu) { /* too big for one GPU: spread over ranks */
      int g = smallest_group_(d, rows, cols);
      if (g) {
        *group_size = g;
        return SCAN_ON_GRID;
      }
    }
  }
  if (scan_single_bytes(rows, cols) <= d->host_limit_bytes) return SCAN_ON_CPU;
  int g = smallest_group_(d, rows, cols);
  if (!g) return SCAN_ON_NONE;
  *group_size = g;
  return SCAN_ON_GRID;
}

/* Ranks on this node (the launcher's word for it; the world size when it says nothing). */
static int local_size_(void) {
  const char *ls = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
  if (!ls) ls = getenv("SLURM_NTASKS_PER_NODE");
  int local = ls ? atoi(ls) : comm_size();
  return local < 1 ? 1 : local;
}

static uint64_t default_limit_(void) {
  long pages = sysconf(_SC_AVPHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
  double avail = pages > 0 && psz > 0 ? (double)pages * (double)psz : 4e9;
  return (uint64_t)(avail / local_size_() / 2);
}

/* ---- reading ---------------------------------------------------------------------- */
typedef struct {
  const sft_model *m;
  const sft_tensor *t;
  const snr_module *e;
  int64_t cols; /* of W (row-major); A = W^T is what ScaLAPACK sees */
} fill_ctx_;

static int fill_(void *vctx, int64_t j, int64_t i0, int64_t len, double *dst) {
  fill_ctx_ *c = vctx;
  uint64_t first = (uint64_t)(j * c->cols + i0);
  int rc = sft_read_f64(c->m, c->t, first, (uint64_t)len, dst);
  if (rc) return rc;
  uint64_t bad = finite_first_bad_f64(dst, (uint64_t)len);
  if (bad < (uint64_t)len) {
    warn_nonfinite_(c->m, c->e, c->t, first + bad, dst[bad]);
    return FILL_NONFINITE_;
  }
  return ST_OK;
}

static int single_(const sft_model *m, const snr_module *e, double *snr) {
  *snr = NAN;
  if (e->nan_by_shape) return ST_OK; /* 0-d, empty, or k-D Spectrum cannot reduce: NaN */
  const sft_tensor *t = data_of_(m, e);
  if (!t) return st_fail(ST_ERUNTIME, "tensor '%s': '%s' is not in the model", e->tensor, e->data_tensor);
  double *w = xmalloc((size_t)e->numel * sizeof *w);
  int rc = sft_read_f64(m, t, 0, e->numel, w);
  uint64_t bad = rc ? e->numel : finite_first_bad_f64(w, e->numel);
  if (bad < e->numel) warn_nonfinite_(m, e, t, bad, w[bad]);
  else if (!rc) rc = snr_of_batch(w, e->batch, e->rows, e->cols, snr);
  free(w);
  if (rc) st_fail_ctx(rc, "tensor '%s': ", e->tensor);
  return rc;
}

/* cuSOLVER on this rank's device: W read as float (Spectrum's precision), decomposed in double.
 * *gpu_rc gets GPU_SVD_* (snr set only on GPU_SVD_OK, why filled otherwise). ST_* for read
 * errors. */
static int gpu_single_(const sft_model *m, const snr_module *e, double *snr, int *gpu_rc, char *why,
                       int why_len) {
  *gpu_rc = GPU_SVD_OK;
  const sft_tensor *t = data_of_(m, e);
  float *w = xmalloc((size_t)e->numel * sizeof *w);
  int rc = sft_read_f32(m, t, 0, e->numel, w);
  if (rc) {
    free(w);
    return st_fail_ctx(rc, "tensor '%s': ", e->tensor);
  }
  uint64_t bad = finite_first_bad_f32(w, e->numel);
  if (bad < e->numel) { /* §2: NaN, as snr_of_matrix says */
    warn_nonfinite_(m, e, t, bad, w[bad]);
    free(w);
    *snr = NAN;
    return ST_OK;
  }
  int64_t k = e->rows < e->cols ? e->rows : e->cols;
  double *s = xmalloc((size_t)k * sizeof *s);
  *gpu_rc = gpu_svdvals(w, e->rows, e->cols, s, why, why_len);
  free(w);
  if (*gpu_rc == GPU_SVD_OK) *snr = snr_from_singular_values(s, k, e->rows, e->cols);
  free(s);
  return ST_OK;
}

static int grid_(const sft_model *m, comm_group *g, const snr_module *e, double *snr) {
  fill_ctx_ c = {m, data_of_(m, e), e, e->cols};
  int64_t k = e->rows < e->cols ? e->rows : e->cols;
  double *s = xcalloc((size_t)k, sizeof *s);
  int rc = grid_svd_values(g, e->cols, e->rows, fill_, &c, s, NULL);
  if (rc == FILL_NONFINITE_) {
    *snr = NAN;
    rc = ST_OK;
  } else if (!rc) {
    *snr = snr_from_singular_values(s, k, e->rows, e->cols);
  } else {
    st_fail_ctx(rc, "tensor '%s': ", e->tensor);
  }
  free(s);
  return rc;
}

/* ---- progress (rank 0) ---------------------------------------------------------------- */
typedef struct {
  int total, done;
  double total_cost, done_cost, t0, last, interval;
  int quiet;
  const double *cost;
} progress_;

static void progress_note_(progress_ *p, int item, int force) {
  if (item >= 0) {
    p->done++;
    p->done_cost += p->cost[item];
  }
  double now = time_now_s();
  if (p->quiet || (!force && now - p->last < p->interval)) return;
  p->last = now;
  double el = now - p->t0;
  double frac = p->total_cost > 0 ? p->done_cost / p->total_cost : 1;
  if (frac > 0 && p->done < p->total)
    log_info("scan: %d/%d matrices, %.1f s elapsed, ETA %.1f s", p->done, p->total, el,
             el * (1 - frac) / frac);
  else
    log_info("scan: %d/%d matrices, %.1f s elapsed", p->done, p->total, el);
}

static void progress_drain_(progress_ *p, int wait_ms, int *status) {
  if (comm_size() == 1) return; /* nothing to receive (and MPI may not even be initialised) */
  int items[64], st[64];
  int n = comm_progress_poll(items, st, 64, wait_ms);
  for (int i = 0; i < n; i++) {
    if (st[i] && !*status) *status = st[i];
    progress_note_(p, items[i], 0);
  }
}

/* ---- schedule and run ------------------------------------------------------------------ */
typedef struct {
  int *owner;  /* rank for single items, -1 - group for grid items */
  int *where;  /* scan_where of each item */
  int *order;  /* items by cost, descending */
  int group_size, ngroups;
} schedule_;

/* Balancing weight of a matrix on a GPU against the same one on one CPU core: a guess, used
 * only to spread the work (an H100 runs a large dgesvd much faster than one core does). */
static const double gpu_speedup_ = 20.0;

static int schedule_build_(const snr_table *t, const double *cost, const scan_dispatch *d,
                           schedule_ *s) {
  int n = t->n, nranks = d->nranks;
  uint64_t limit = d->host_limit_bytes;
  s->owner = xmalloc((size_t)(n > 0 ? n : 1) * sizeof *s->owner);
  s->where = xmalloc((size_t)(n > 0 ? n : 1) * sizeof *s->where);
  s->order = xmalloc((size_t)(n > 0 ? n : 1) * sizeof *s->order);
  s->group_size = 0;
  for (int i = 0; i < n; i++) s->order[i] = i;
  for (int i = 1; i < n; i++) { /* insertion sort: by cost desc, then index */
    int v = s->order[i], j = i;
    while (j > 0 && cost[v] > cost[s->order[j - 1]]) {
      s->order[j] = s->order[j - 1];
      j--;
    }
    s->order[j] = v;
  }
  for (int i = 0; i < n; i++) {
    const snr_module *e = &t->m[i];
    int g = 0;
    /* no data to decompose (NaN by shape), or a batch of vectors (norms): this rank's CPU */
    s->where[i] = e->nan_by_shape || e->batch > 1 ? SCAN_ON_CPU : scan_place(d, e->rows, e->cols, &g);
    if (s->where[i] == SCAN_ON_NONE) {
      char a[32], b[32];
      return st_fail(ST_EINPUT,
                     "tensor '%s' (%lld x %lld) needs about %s per rank even spread over %d rank(s), over "
                     "the per-rank memory limit %s: run with more ranks or raise --rank-mem-limit",
                     e->tensor, (long long)e->rows, (long long)e->cols,
                     mem_human(grid_svd_bytes_per_rank(e->cols, e->rows, nranks), a, sizeof a),
                     nranks, mem_human(limit, b, sizeof b));
    }
    if (g > s->group_size) s->group_size = g;
  }
  double *load = xcalloc((size_t)nranks, sizeof *load);
  if (s->group_size) {
    s->ngroups = nranks / s->group_size;
    double *gload = xcalloc((size_t)s->ngroups, sizeof *gload);
    for (int k = 0; k < n; k++) {
      int i = s->order[k];
      if (s->where[i] != SCAN_ON_GRID) continue;
      int best = 0;
      for (int q = 1; q < s->ngroups; q++)
        if (gload[q] < gload[best]) best = q;
      /* a grid is slower per flop than one rank (platform.md: 2x2 PDGESVD ~3x dgesdd) */
      gload[best] += 3.0 * cost[i] / s->group_size;
      s->owner[i] = -1 - best;
    }
    for (int r = 0; r < s->ngroups * s->group_size; r++) load[r] = gload[r / s->group_size];
    free(gload);
  }
  for (int k = 0; k < n; k++) {
    int i = s->order[k];
    if (s->where[i] == SCAN_ON_GRID) continue;
    int best = 0;
    for (int r = 1; r < nranks; r++)
      if (load[r] < load[best]) best = r;
    load[best] += s->where[i] == SCAN_ON_GPU ? cost[i] / gpu_speedup_ : cost[i];
    s->owner[i] = best;
  }
  free(load);
  return ST_OK;
}

static void schedule_free_(schedule_ *s) {
  free(s->owner);
  free(s->where);
  free(s->order);
}

/* Collective: bind this rank's GPU (unless the solver is cpu), measure its share of the device
 * (the node's ranks on one device split it), and agree on the smallest share: d->gpu_ok only
 * when every rank has one. --solver gpu without a GPU somewhere is an input error. */
static int gpu_probe_(int solver, scan_dispatch *d) {
  d->gpu_ok = 0;
  d->gpu_max_elems = 0;
  if (solver == SCAN_SOLVER_CPU) return ST_OK;
  char why[256] = "";
  double elems = 0;
  int ndev = gpu_device_count(why, sizeof why);
  if (ndev > 0) {
    int dev = gpu_select_device(comm_local_rank(), why, sizeof why);
    if (dev >= 0) {
      int share = (local_size_() + ndev - 1) / ndev;
      elems = (double)(gpu_svd_max_elems() / share);
      if (elems <= 0) snprintf(why, sizeof why, "GPU %d has too little free memory", dev);
      /* tests: pretend the GPU is small, so the grid path runs on a GPU machine too */
      const char *cap = getenv("SPECTRAIN_TEST_GPU_MAX_ELEMS");
      if (cap && atof(cap) > 0 && atof(cap) < elems) elems = atof(cap);
    }
  }
  int rc = ST_OK;
  if (elems <= 0 && solver == SCAN_SOLVER_GPU)
    rc = st_fail(ST_EINPUT, "--solver gpu: rank %d has no usable GPU: %s", comm_rank(), why);
  int all = comm_max_status(rc);
  if (all) return rc ? rc : st_fail(all, "--solver gpu: another rank has no usable GPU (see its error)");
  double neg = -elems;
  rc = comm_allreduce_max_f64(&neg, 1);
  if (rc) return rc;
  d->gpu_max_elems = (int64_t)-neg;
  d->gpu_ok = d->gpu_max_elems > 0;
  if (d->gpu_ok && solver == SCAN_SOLVER_AUTO)
    log_info("scan: cuSOLVER on every rank's GPU for matrices of up to %lld elements whose shorter "
             "side is at least %d (smaller ones: LAPACK; --solver gpu: any size)",
             (long long)d->gpu_max_elems, (int)d->gpu_min_dim);
  else if (d->gpu_ok)
    log_info("scan: cuSOLVER on every rank's GPU for matrices of up to %lld elements",
             (long long)d->gpu_max_elems);
  else if (comm_rank() == 0 && elems > 0)
    log_info("scan: not every rank has a usable GPU: LAPACK and ScaLAPACK only");
  else if (gpu_built_with_cuda())
    log_info("scan: no usable GPU (%s): LAPACK and ScaLAPACK only", why);
  return ST_OK;
}

int scan_run(const sft_model *m, snr_table *t, const scan_opts *o, scan_stats *st) {
  int rank = comm_rank(), nranks = comm_size();
  scan_stats stats;
  memset(&stats, 0, sizeof stats);
  double t0 = time_now_s();
  /* the same limit everywhere (the schedule depends on it): the smallest rank's */
  double lim = o && o->rank_mem_limit_bytes ? (double)o->rank_mem_limit_bytes : (double)default_limit_();
  double neg = -lim;
  int rc = comm_allreduce_max_f64(&neg, 1);
  if (rc) return rc;
  uint64_t limit = (uint64_t)-neg;
  stats.mem_limit_bytes = limit;

  int solver = o ? o->solver : SCAN_SOLVER_AUTO;
  scan_dispatch disp = {solver, 0, 0, SCAN_GPU_MIN_DIM, limit, nranks};
  /* auto with nothing the GPU would take (every matrix has a side under 256: test models,
   * norms only): CUDA is not even initialised */
  int probe = solver == SCAN_SOLVER_GPU;
  for (int i = 0; i < t->n && solver == SCAN_SOLVER_AUTO && !probe; i++)
    probe = !t->m[i].nan_by_shape && t->m[i].batch == 1 && t->m[i].rows > 1 &&
            t->m[i].rows >= disp.gpu_min_dim && t->m[i].cols >= disp.gpu_min_dim;
  rc = gpu_probe_(probe ? solver : SCAN_SOLVER_CPU, &disp);
  if (rc) return rc;
  stats.gpu_max_elems = disp.gpu_ok ? disp.gpu_max_elems : 0;

  double *cost = xmalloc((size_t)(t->n > 0 ? t->n : 1) * sizeof *cost);
  for (int i = 0; i < t->n; i++) cost[i] = cost_(&t->m[i]);
  schedule_ sch;
  memset(&sch, 0, sizeof sch);
  rc = schedule_build_(t, cost, &disp, &sch);
  uint64_t h = HASH64_INIT;
  for (int i = 0; i < t->n && !rc; i++) {
    h = hash64_u64(h, (uint64_t)(int64_t)sch.owner[i]);
    h = hash64_u64(h, (uint64_t)sch.where[i]);
  }
  if (!rc) rc = comm_agree_u64(h, "the SNR scan schedule");
  if (rc) {
    schedule_free_(&sch);
    free(cost);
    return rc;
  }
  stats.group_size = sch.group_size;

  comm_group *grp = NULL;
  if (sch.group_size) rc = comm_group_split(sch.group_size, &grp);
  int my_group = grp ? rank / sch.group_size : -1;

  progress_ p = {t->n, 0, 0, 0, t0, t0, o && o->progress_interval_s > 0 ? o->progress_interval_s : 2.0,
                 o ? o->quiet : 0, cost};
  for (int i = 0; i < t->n; i++) p.total_cost += cost[i];
  int expected = 0; /* messages rank 0 will receive: items finished by other ranks */
  for (int i = 0; i < t->n; i++) {
    int who = sch.owner[i] >= 0 ? sch.owner[i] : (-1 - sch.owner[i]) * sch.group_size;
    expected += who != 0;
    t->m[i].snr = 0.0; /* summed over ranks below: only the owner contributes */
  }
  double *val = xcalloc((size_t)(t->n > 0 ? t->n : 1), sizeof *val);
  int status = rc, remote_status = 0;
  /* group work first (collective inside the group, same order on every member) */
  for (int k = 0; k < t->n; k++) {
    int i = sch.order[k];
    if (sch.owner[i] >= 0 || -1 - sch.owner[i] != my_group) continue;
    double v = NAN;
    int r = grid_(m, grp, &t->m[i], &v);
    if (r && !status) status = r;
    if (comm_group_rank(grp) == 0) {
      stats.n_grid++;
      val[i] = v;
      if (rank != 0) comm_progress_send(i, r);
      else progress_note_(&p, i, 0);
    }
    if (rank == 0) progress_drain_(&p, 0, &remote_status);
  }
  int gpu_live = 1; /* auto: cleared after a GPU failure, the rest of this rank's work on LAPACK */
  for (int k = 0; k < t->n; k++) {
    int i = sch.order[k];
    if (sch.owner[i] != rank) continue;
    double v = NAN;
    int r = status, on_gpu = 0;
    if (!r && sch.where[i] == SCAN_ON_GPU && gpu_live) {
      const snr_module *e = &t->m[i];
      char why[256] = "";
      int g = GPU_SVD_OK;
      r = gpu_single_(m, e, &v, &g, why, sizeof why);
      on_gpu = !r && g == GPU_SVD_OK;
      if (!r && g != GPU_SVD_OK) {
        if (g == GPU_SVD_EFAIL && solver == SCAN_SOLVER_GPU) {
          r = st_fail(ST_ERUNTIME, "tensor '%s' (%lld x %lld): cuSOLVER failed: %s", e->tensor,
                      (long long)e->rows, (long long)e->cols, why);
        } else { /* out of device memory, no convergence, or auto: LAPACK takes it */
          if (g == GPU_SVD_EFAIL) gpu_live = 0;
          log_warn("tensor '%s' (%lld x %lld): cuSOLVER: %s; using LAPACK for it%s", e->tensor,
                   (long long)e->rows, (long long)e->cols, why,
                   g == GPU_SVD_EFAIL ? " and the rest of this rank's matrices" : "");
        }
      }
    }
    if (!r && !on_gpu) r = single_(m, &t->m[i], &v);
    if (r && !status) status = r;
    val[i] = v;
    if (on_gpu)
      stats.n_gpu++;
    else
      stats.n_single++;
    if (rank != 0) comm_progress_send(i, r);
    else progress_note_(&p, i, 0);
    if (rank == 0) progress_drain_(&p, 0, &remote_status);
  }
  if (rank == 0) {
    int received = 0;
    /* count what was already drained: done minus rank 0's own items */
    int own = 0;
    for (int i = 0; i < t->n; i++) {
      int who = sch.owner[i] >= 0 ? sch.owner[i] : (-1 - sch.owner[i]) * sch.group_size;
      own += who == 0;
    }
    received = p.done - own;
    while (received < expected) {
      int before = p.done;
      progress_drain_(&p, 200, &remote_status);
      received += p.done - before;
    }
    progress_note_(&p, -1, 1);
  }
  comm_group_free(grp);
  schedule_free_(&sch);
  free(cost);
  status = comm_max_status(status);
  if (status) {
    free(val);
    return status;
  }
  rc = comm_allreduce_sum_f64(val, t->n);
  for (int i = 0; i < t->n; i++) t->m[i].snr = val[i];
  free(val);
  if (!rc) rc = comm_agree_u64(scan_table_hash(t), "the SNR table");
  stats.seconds = time_now_s() - t0;
  /* totals over the world (grid items counted by their group's first rank) */
  uint64_t tot[3] = {(uint64_t)stats.n_single, (uint64_t)stats.n_grid, (uint64_t)stats.n_gpu};
  if (!rc) rc = comm_allreduce_sum_u64(tot, 3);
  stats.n_single = (int)tot[0];
  stats.n_grid = (int)tot[1];
  stats.n_gpu = (int)tot[2];
  if (st) *st = stats;
  return rc;
}
