#include "spectrum/scan.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mpi/comm.h"
#include "mpi/grid.h"
#include "util/err.h"
#include "util/hash.h"
#include "util/mem.h"

enum { FILL_NONFINITE_ = 100 }; /* a fill status meaning "NaN/Inf in W": skip, SNR is NaN */

snr_input *scan_inputs(const sft_model *m) {
  snr_input *in = xcalloc((size_t)(m->n > 0 ? m->n : 1), sizeof *in);
  for (int i = 0; i < m->n; i++) {
    in[i].tensor = m->t[i].name;
    in[i].ndim = m->t[i].ndim;
    for (int d = 0; d < m->t[i].ndim && d < 8; d++) in[i].shape[d] = m->t[i].shape[d];
  }
  return in;
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
  double mn = (double)(e->rows < e->cols ? e->rows : e->cols);
  double mx = (double)(e->rows < e->cols ? e->cols : e->rows);
  return mn * mn * mx + (double)e->numel;
}

static uint64_t single_bytes_(const snr_module *e) {
  uint64_t mn = (uint64_t)(e->rows < e->cols ? e->rows : e->cols);
  uint64_t mx = (uint64_t)(e->rows < e->cols ? e->cols : e->rows);
  uint64_t work = 3 * mn + (mx > 7 * mn ? mx : 7 * mn);
  return 8 * (e->numel + mn + work) + 32 * mn;
}

static uint64_t default_limit_(void) {
  long pages = sysconf(_SC_AVPHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
  double avail = pages > 0 && psz > 0 ? (double)pages * (double)psz : 4e9;
  const char *ls = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
  if (!ls) ls = getenv("SLURM_NTASKS_PER_NODE");
  int local = ls ? atoi(ls) : comm_size();
  if (local < 1) local = 1;
  return (uint64_t)(avail / local / 2);
}

/* ---- reading ---------------------------------------------------------------------- */
typedef struct {
  const sft_model *m;
  const sft_tensor *t;
  int64_t cols; /* of W (row-major); A = W^T is what ScaLAPACK sees */
} fill_ctx_;

static int fill_(void *vctx, int64_t j, int64_t i0, int64_t len, double *dst) {
  fill_ctx_ *c = vctx;
  int rc = sft_read_f64(c->m, c->t, (uint64_t)(j * c->cols + i0), (uint64_t)len, dst);
  if (rc) return rc;
  for (int64_t k = 0; k < len; k++)
    if (!isfinite(dst[k])) return FILL_NONFINITE_;
  return ST_OK;
}

static int single_(const sft_model *m, const snr_module *e, double *snr) {
  if (e->numel == 0 || e->ndim == 0) {
    *snr = NAN;
    return ST_OK;
  }
  const sft_tensor *t = &m->t[e->input_index];
  double *w = xmalloc((size_t)e->numel * sizeof *w);
  int rc = sft_read_f64(m, t, 0, e->numel, w);
  if (!rc) rc = snr_of_matrix(w, e->rows, e->cols, snr);
  free(w);
  if (rc) st_fail_ctx(rc, "tensor '%s': ", e->tensor);
  return rc;
}

static int grid_(const sft_model *m, comm_group *g, const snr_module *e, double *snr) {
  fill_ctx_ c = {m, &m->t[e->input_index], e->cols};
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
  int *order;  /* items by cost, descending */
  int group_size, ngroups;
} schedule_;

static int schedule_build_(const snr_table *t, const double *cost, uint64_t limit, int nranks,
                           schedule_ *s) {
  int n = t->n;
  s->owner = xmalloc((size_t)(n > 0 ? n : 1) * sizeof *s->owner);
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
    if (single_bytes_(e) <= limit) continue;
    int g = 2;
    while (g <= nranks && grid_svd_bytes_per_rank(e->cols, e->rows, g) > limit) g++;
    if (g > nranks) {
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
      if (single_bytes_(&t->m[i]) <= limit) continue;
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
    if (single_bytes_(&t->m[i]) > limit) continue;
    int best = 0;
    for (int r = 1; r < nranks; r++)
      if (load[r] < load[best]) best = r;
    load[best] += cost[i];
    s->owner[i] = best;
  }
  free(load);
  return ST_OK;
}

static void schedule_free_(schedule_ *s) {
  free(s->owner);
  free(s->order);
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

  double *cost = xmalloc((size_t)(t->n > 0 ? t->n : 1) * sizeof *cost);
  for (int i = 0; i < t->n; i++) cost[i] = cost_(&t->m[i]);
  schedule_ sch;
  memset(&sch, 0, sizeof sch);
  rc = schedule_build_(t, cost, limit, nranks, &sch);
  uint64_t h = HASH64_INIT;
  for (int i = 0; i < t->n && !rc; i++) h = hash64_u64(h, (uint64_t)(int64_t)sch.owner[i]);
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
  for (int k = 0; k < t->n; k++) {
    int i = sch.order[k];
    if (sch.owner[i] != rank) continue;
    double v = NAN;
    int r = status ? status : single_(m, &t->m[i], &v);
    if (r && !status) status = r;
    val[i] = v;
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
  uint64_t tot[2] = {(uint64_t)stats.n_single, (uint64_t)stats.n_grid};
  if (!rc) rc = comm_allreduce_sum_u64(tot, 2);
  stats.n_single = (int)tot[0];
  stats.n_grid = (int)tot[1];
  if (st) *st = stats;
  return rc;
}
