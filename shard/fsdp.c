#include "shard/fsdp.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "model/optim.h"
#include "mpi/comm.h"
#include "util/err.h"

static size_t fbytes_(uint64_t n) { return (size_t)n * sizeof(float); }
static size_t hbytes_(uint64_t n) { return (size_t)n * sizeof(bf16_t); }
static void train16_refresh_(fsdp *f, int u);

/* ---- the background optimizer step (offload) -------------------------------------------
 * One thread per step, started by fsdp_step after the norm: it updates units 0, 1, ... in
 * order and publishes how many are done. Everything that touches unit u's shards first
 * waits for done > u (opt_wait_unit_); the thread touches only host shards (no memspace
 * accounting, no compute memory, no MPI). */

typedef struct {
  float lr, beta1, beta2, eps, wd, coef;
  long step;
} opt_job_;

struct fsdp_async {
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int running; /* a thread was started and not yet joined (main thread only) */
  int done;    /* units updated (under mu) */
  opt_job_ job;
  fsdp *f;
};

static void update_unit_(fsdp *f, int u, const opt_job_ *j);

static void *opt_thread_(void *arg) {
  struct fsdp_async *a = arg;
  for (int u = 0; u < a->f->plan->n_units; u++) {
    update_unit_(a->f, u, &a->job);
    pthread_mutex_lock(&a->mu);
    a->done = u + 1;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
  }
  return NULL;
}

static void opt_wait_unit_(fsdp *f, int u) {
  struct fsdp_async *a = f->async;
  if (!a || !a->running) return;
  pthread_mutex_lock(&a->mu);
  while (a->done <= u) pthread_cond_wait(&a->cv, &a->mu);
  pthread_mutex_unlock(&a->mu);
}

void fsdp_wait_step(fsdp *f) {
  /* With offload the gathers copy host shards to compute memory asynchronously (on CUDA:
   * on the communication stream, finished when the compute stream that waited for it is):
   * whoever writes or frees host shards after this call sees no copy still reading them. */
  if (f->sh && (f->shard_space == MS_HOST || f->space[PB_FROZEN] == MS_HOST)) f->k->sync();
  struct fsdp_async *a = f->async;
  if (!a || !a->running) return;
  pthread_join(a->thread, NULL);
  a->running = 0;
}

/* ---- schedule ------------------------------------------------------------------------- */

static fsdp_op op_(int dir, int unit, int n_need, int a, int b) {
  fsdp_op o = {dir, unit, n_need, {a, b}};
  return o;
}

static void build_ops_(fsdp *f) {
  int L = f->cfg->num_hidden_layers, H = L + 1, lowest = f->plan->lowest_grad_unit;
  f->ops_train = xcalloc((size_t)(2 * (L + 2) + 1), sizeof(fsdp_op));
  f->ops_eval = xcalloc((size_t)(L + 2), sizeof(fsdp_op));
  int n = 0;
  for (int u = 0; u <= H; u++)
    f->ops_train[n++] = u == H && f->tied ? op_(0, u, 2, H, 0) : op_(0, u, 1, u, -1);
  memcpy(f->ops_eval, f->ops_train, (size_t)n * sizeof(fsdp_op));
  f->n_ops_eval = n;
  if (lowest <= H) {
    f->ops_train[n++] = f->tied ? op_(1, H, 2, H, 0) : op_(1, H, 1, H, -1);
    for (int u = L; u >= (lowest > 1 ? lowest : 1); u--) f->ops_train[n++] = op_(1, u, 1, u, -1);
    if (lowest == 0) f->ops_train[n++] = op_(1, 0, 0, -1, -1); /* lookup grad: no params */
  }
  f->n_ops_train = n;
}

/* ---- the memory formula --------------------------------------------------------------- */

void fsdp_predict(const shard_plan *p, const kernels *k, const fsdp_opts *o, int tied,
                  uint64_t pred[MC_NCAT], uint64_t host[MC_NCAT]) {
  memset(pred, 0, MC_NCAT * sizeof(uint64_t));
  /* where fsdp_create puts each kind of shard */
  mem_space space[PB_NKINDS];
  space[PB_TRAIN] = o->offload ? MS_HOST : MS_COMPUTE;
  space[PB_FROZEN] = o->offload == 1 ? MS_HOST : MS_COMPUTE;
  int n = p->n_units;
  int cap = o->limit_all_gathers ? 1 + o->prefetch : n + 1;
  uint64_t sf = plan_total_shard(p, PB_FROZEN), st = plan_total_shard(p, PB_TRAIN);
  const uint64_t es = o->bf16 ? 2 : 4; /* bytes per stored / gathered parameter */
  pred[MC_PARAM_FROZEN] = es * sf;
  pred[MC_PARAM_TRAIN] = es * st;
  pred[MC_MASTER] = o->bf16 ? 4 * st : 0; /* fp32 parameters are their own master */
  pred[MC_GRAD] = 4 * st;
  pred[MC_OPTIM] = 8 * st;
  /* gathered units: at most max(cap, units one op needs) of the largest units alive;
   * everything when reshard_after_forward is off */
  uint64_t *sz = xcalloc((size_t)(n ? n : 1), sizeof(uint64_t));
  uint64_t *tr = xcalloc((size_t)(n ? n : 1), sizeof(uint64_t));
  uint64_t staging_n = 0;
  for (int u = 0; u < n; u++) {
    sz[u] = es * (p->units[u].padded[PB_FROZEN] + p->units[u].padded[PB_TRAIN]);
    /* reduce_bf16: the bf16 copy and result stay in flight; the fp32 gradient lives only
     * until it is rounded (counted below) */
    tr[u] = (o->reduce_bf16 ? 2 : 4) * (p->units[u].padded[PB_TRAIN] + p->units[u].shard[PB_TRAIN]);
    if (p->units[u].shard[PB_TRAIN] > staging_n) staging_n = p->units[u].shard[PB_TRAIN];
  }
  int live = o->reshard_after_forward ? (cap < n ? cap : n) : n;
  if (live < 1 + tied) live = 1 + tied;
  for (int pass = 0; pass < 2; pass++) {
    uint64_t *a = pass ? tr : sz;
    int take = pass ? (n < 4 ? n : 4) : live; /* grads: <= 2 ops x 2 buffers in flight */
    for (int i = 0; i < take && n > 0; i++) { /* sum of the `take` largest */
      int best = 0;
      for (int u = 1; u < n; u++)
        if (a[u] > a[best]) best = u;
      pred[pass ? MC_GRAD_FULL : MC_GATHER] += a[best];
      a[best] = 0;
    }
  }
  if (o->reduce_bf16) { /* plus the op's fp32 gradients before rounding: <= 2 units (tied head) */
    uint64_t g1 = 0, g2 = 0;
    for (int u = 0; u < n; u++) {
      uint64_t b = 4 * p->units[u].padded[PB_TRAIN];
      if (b > g1) { g2 = g1; g1 = b; } else if (b > g2) g2 = b;
    }
    pred[MC_GRAD_FULL] += g1 + (tied ? g2 : 0);
  }
  free(sz);
  free(tr);
  /* host staging: offload's persistent buffer, or the load's 1 Mi-float chunk (freed after
   * the load); plus, at a checkpoint, host copies of every shard kept in compute memory the
   * host cannot read (parameters; m and v of trainable ones): fsdp_foreach_piece; bf16:
   * fp32 copies of every frozen shard (widened), through one unit's bf16 download at a time
   * where the host cannot read the shard */
  uint64_t mirrors = 0, down16 = 0;
  for (int u = 0; u < n; u++)
    for (int kk = 0; kk < PB_NKINDS; kk++) {
      uint64_t sh = p->units[u].shard[kk];
      int hidden = space[kk] != MS_HOST && !k->host_addressable;
      if (o->bf16 && kk == PB_FROZEN) {
        mirrors += 4 * sh;
        if (hidden && 2 * sh > down16) down16 = 2 * sh;
      } else if (hidden) {
        mirrors += 4 * sh * (kk == PB_TRAIN ? 3u : 1u);
      }
    }
  mirrors += down16;
  uint64_t load = (space[PB_FROZEN] != MS_HOST || space[PB_TRAIN] != MS_HOST) ? 4u << 20 : 0;
  pred[MC_STAGING] = (o->offload ? 4 * staging_n : 0) + (load > mirrors ? load : mirrors);
  if (host) {
    memset(host, 0, MC_NCAT * sizeof(uint64_t));
    for (int c = 0; c < MC_NCAT; c++)
      if (k->host_addressable) host[c] = pred[c]; /* one memory: everything is host RAM */
    if (!k->host_addressable) {
      if (space[PB_FROZEN] == MS_HOST) host[MC_PARAM_FROZEN] = pred[MC_PARAM_FROZEN];
      if (space[PB_TRAIN] == MS_HOST) {
        host[MC_PARAM_TRAIN] = pred[MC_PARAM_TRAIN];
        host[MC_MASTER] = pred[MC_MASTER];
        host[MC_GRAD] = pred[MC_GRAD];
        host[MC_OPTIM] = pred[MC_OPTIM];
      }
      host[MC_STAGING] = pred[MC_STAGING];
    }
  }
}

/* ---- create / free -------------------------------------------------------------------- */

int fsdp_create(const tensor_table *tt, const shard_plan *plan, const model_config *cfg,
                const kernels *k, const fsdp_opts *o, fsdp *f) {
  memset(f, 0, sizeof *f);
  if (plan->n_units != cfg->num_hidden_layers + 2 || plan->n_tensors != tt->n)
    return st_fail(ST_EINPUT, "fsdp: the shard plan (%d units, %d tensors) does not belong to "
                   "this model (%d units, %d tensors)", plan->n_units, plan->n_tensors,
                   cfg->num_hidden_layers + 2, tt->n);
  if (o->prefetch < 0) return st_fail(ST_EINPUT, "sharding.prefetch: expected >= 0, found %d", o->prefetch);
  f->tt = tt;
  f->plan = plan;
  f->cfg = cfg;
  f->k = k;
  f->hk = kernels_cpu();
  f->o = *o;
  f->tied = cfg->tie_word_embeddings != 0;
  ms_init(&f->ms, k);
  if (o->offload < 0 || o->offload > 2)
    return st_fail(ST_EINPUT, "fsdp: offload: expected 0, 1 or 2, found %d", o->offload);
  f->shard_space = o->offload ? MS_HOST : MS_COMPUTE;
  f->space[PB_TRAIN] = f->shard_space;
  f->space[PB_FROZEN] = o->offload == 1 ? MS_HOST : MS_COMPUTE;
  f->cap = o->limit_all_gathers ? 1 + o->prefetch : plan->n_units + 1;
  f->sh = xcalloc((size_t)plan->n_units, sizeof(fsdp_shard));
  f->slot = xcalloc((size_t)plan->n_units, sizeof(fsdp_slot));
  for (int u = 0; u < plan->n_units; u++) {
    const plan_unit *pu = &plan->units[u];
    fsdp_shard *s = &f->sh[u];
    if (o->bf16) { /* bf16 shards; the trainable one's fp32 master is MC_MASTER */
      s->param16[PB_FROZEN] = ms_alloc(&f->ms, f->space[PB_FROZEN], MC_PARAM_FROZEN,
                                       hbytes_(pu->shard[PB_FROZEN]));
      s->param16[PB_TRAIN] = ms_alloc(&f->ms, f->shard_space, MC_PARAM_TRAIN,
                                      hbytes_(pu->shard[PB_TRAIN]));
      s->param[PB_TRAIN] = ms_alloc(&f->ms, f->shard_space, MC_MASTER, fbytes_(pu->shard[PB_TRAIN]));
    } else { /* fp32 parameters are their own master copy: no MC_MASTER buffer */
      s->param[PB_FROZEN] = ms_alloc(&f->ms, f->space[PB_FROZEN], MC_PARAM_FROZEN, fbytes_(pu->shard[PB_FROZEN]));
      s->param[PB_TRAIN] = ms_alloc(&f->ms, f->shard_space, MC_PARAM_TRAIN, fbytes_(pu->shard[PB_TRAIN]));
    }
    s->grad = ms_alloc(&f->ms, f->shard_space, MC_GRAD, fbytes_(pu->shard[PB_TRAIN]));
    s->m = ms_alloc(&f->ms, f->shard_space, MC_OPTIM, fbytes_(pu->shard[PB_TRAIN]));
    s->v = ms_alloc(&f->ms, f->shard_space, MC_OPTIM, fbytes_(pu->shard[PB_TRAIN]));
    if (pu->shard[PB_TRAIN] > f->staging_n) f->staging_n = pu->shard[PB_TRAIN];
  }
  if (o->offload)
    f->staging = ms_alloc(&f->ms, MS_HOST, MC_STAGING, fbytes_(f->staging_n));
  f->grad_fresh = xcalloc((size_t)plan->n_units, 1);
  f->mirror = xcalloc((size_t)4 * plan->n_units * PB_NKINDS, sizeof(float *));
  int overlap = o->overlap_step > 0 ||
                (o->overlap_step == 0 && k->name && strcmp(k->name, "cuda") == 0);
  if (o->offload && overlap) {
    f->async = xcalloc(1, sizeof *f->async);
    f->async->f = f;
    pthread_mutex_init(&f->async->mu, NULL);
    pthread_cond_init(&f->async->cv, NULL);
  }
  build_ops_(f);
  return ST_OK;
}

static void release_(fsdp *f, int u);
static int rs_complete_(fsdp *f, int keep);

void fsdp_free(fsdp *f) {
  if (!f->sh) return;
  fsdp_wait_step(f);
  fsdp_pieces_done(f, 0);
  rs_complete_(f, 0);
  for (int u = 0; u < f->plan->n_units; u++) {
    release_(f, u);
    const plan_unit *pu = &f->plan->units[u];
    fsdp_shard *s = &f->sh[u];
    if (f->o.bf16) {
      ms_free(&f->ms, f->space[PB_FROZEN], MC_PARAM_FROZEN, s->param16[PB_FROZEN],
              hbytes_(pu->shard[PB_FROZEN]));
      ms_free(&f->ms, f->shard_space, MC_PARAM_TRAIN, s->param16[PB_TRAIN],
              hbytes_(pu->shard[PB_TRAIN]));
      ms_free(&f->ms, f->shard_space, MC_MASTER, s->param[PB_TRAIN], fbytes_(pu->shard[PB_TRAIN]));
    } else {
      ms_free(&f->ms, f->space[PB_FROZEN], MC_PARAM_FROZEN, s->param[PB_FROZEN], fbytes_(pu->shard[PB_FROZEN]));
      ms_free(&f->ms, f->shard_space, MC_PARAM_TRAIN, s->param[PB_TRAIN], fbytes_(pu->shard[PB_TRAIN]));
    }
    ms_free(&f->ms, f->shard_space, MC_GRAD, s->grad, fbytes_(pu->shard[PB_TRAIN]));
    ms_free(&f->ms, f->shard_space, MC_OPTIM, s->m, fbytes_(pu->shard[PB_TRAIN]));
    ms_free(&f->ms, f->shard_space, MC_OPTIM, s->v, fbytes_(pu->shard[PB_TRAIN]));
  }
  ms_free(&f->ms, MS_HOST, MC_STAGING, f->staging, fbytes_(f->staging_n));
  free(f->sh);
  free(f->slot);
  free(f->ops_train);
  free(f->ops_eval);
  free(f->grad_fresh);
  free(f->mirror);
  if (f->async) {
    pthread_mutex_destroy(&f->async->mu);
    pthread_cond_destroy(&f->async->cv);
    free(f->async);
  }
  memset(f, 0, sizeof *f);
}

/* ---- loading -------------------------------------------------------------------------- */

static int check_tensor_(const tensor_desc *d, const sft_model *m, const sft_tensor **out) {
  const sft_tensor *t = sft_find(m, d->name);
  if (!t)
    return st_fail(ST_EINPUT, "%s: tensor '%s' is missing (the model config expects it)",
                   m->nfiles ? m->paths[0] : "model", d->name);
  int64_t s1 = d->ndim == 2 ? d->shape[1] : 1, t1 = t->ndim == 2 ? t->shape[1] : 1;
  if (t->numel != d->numel || t->ndim != d->ndim || t->shape[0] != d->shape[0] || s1 != t1)
    return st_fail(ST_EINPUT,
                   "%s: tensor '%s' has %d dims (%lld, %lld), expected (%lld, %lld) from "
                   "config.json",
                   m->paths[t->file], d->name, t->ndim, (long long)t->shape[0], (long long)t1,
                   (long long)d->shape[0], (long long)s1);
  *out = t;
  return ST_OK;
}

static int load_local_(fsdp *f, const sft_model *m) {
  const sft_tensor **st = xcalloc((size_t)f->tt->n + 1, sizeof *st);
  int rc = ST_OK;
  for (int i = 0; i < f->tt->n && !rc; i++) rc = check_tensor_(&f->tt->t[i], m, &st[i]);
  /* Read straight into the shard when it is host memory; through a bounded host staging
   * buffer otherwise (a device shard on CUDA), so the peak stays near the shard size. */
  const uint64_t chunk = 1u << 20;
  float *stage = NULL;
  if (f->space[PB_FROZEN] != MS_HOST || f->space[PB_TRAIN] != MS_HOST)
    stage = ms_alloc(&f->ms, MS_HOST, MC_STAGING, fbytes_(chunk));
  for (int u = 0; u < f->plan->n_units && !rc; u++)
    for (int k = 0; k < PB_NKINDS && !rc; k++) {
      const plan_unit *pu = &f->plan->units[u];
      for (int s = 0; s < pu->nseg[k] && !rc; s++) {
        const plan_seg *sg = &pu->seg[k][s];
        if (f->o.bf16 && k == PB_FROZEN) { /* bf16 only: no fp32 copy on the way */
          bf16_t *dst16 = f->sh[u].param16[k] + sg->shard_off, *stage16 = (bf16_t *)stage;
          if (f->space[k] == MS_HOST) {
            rc = sft_read_bf16(m, st[sg->tensor], sg->tensor_off, sg->count, dst16);
            if (!rc) rc = sft_check_finite_bf16(m, st[sg->tensor], sg->tensor_off, dst16, sg->count);
            continue;
          }
          for (uint64_t done = 0; done < sg->count && !rc; done += chunk) {
            uint64_t n = sg->count - done < chunk ? sg->count - done : chunk;
            rc = sft_read_bf16(m, st[sg->tensor], sg->tensor_off + done, n, stage16);
            if (!rc) rc = sft_check_finite_bf16(m, st[sg->tensor], sg->tensor_off + done, stage16, n);
            if (!rc) ms_copy(&f->ms, f->space[k], dst16 + done, MS_HOST, stage16, hbytes_(n));
            f->k->sync();
          }
          continue;
        }
        float *dst = f->sh[u].param[k] + sg->shard_off;
        /* non-finite numbers are bad input: named (tensor, index) by the rank that read them */
        if (f->space[k] == MS_HOST) {
          rc = sft_read_f32(m, st[sg->tensor], sg->tensor_off, sg->count, dst);
          if (!rc) rc = sft_check_finite(m, st[sg->tensor], sg->tensor_off, dst, sg->count);
          continue;
        }
        for (uint64_t done = 0; done < sg->count && !rc; done += chunk) {
          uint64_t n = sg->count - done < chunk ? sg->count - done : chunk;
          rc = sft_read_f32(m, st[sg->tensor], sg->tensor_off + done, n, stage);
          if (!rc) rc = sft_check_finite(m, st[sg->tensor], sg->tensor_off + done, stage, n);
          if (!rc) ms_copy(&f->ms, f->space[k], dst + done, MS_HOST, stage, fbytes_(n));
          f->k->sync(); /* the upload from pinned staging may be asynchronous: reuse after */
        }
      }
    }
  ms_free(&f->ms, MS_HOST, MC_STAGING, stage, fbytes_(chunk));
  free(st);
  for (int u = 0; u < f->plan->n_units && !rc; u++) train16_refresh_(f, u);
  return rc;
}

int fsdp_load(fsdp *f, const sft_model *m) {
  fsdp_wait_step(f);
  int rc = load_local_(f, m);
  int all = comm_max_status(rc);
  if (all && !rc)
    return st_fail(all, "another rank failed to load its shard of the model (see its error)");
  return rc;
}

void fsdp_fill(fsdp *f, float (*value)(int tensor, uint64_t elem, void *arg), void *arg) {
  fsdp_wait_step(f);
  for (int u = 0; u < f->plan->n_units; u++)
    for (int k = 0; k < PB_NKINDS; k++) {
      const plan_unit *pu = &f->plan->units[u];
      for (int s = 0; s < pu->nseg[k]; s++) {
        const plan_seg *sg = &pu->seg[k][s];
        float *tmp = xmalloc(fbytes_(sg->count));
        for (uint64_t e = 0; e < sg->count; e++) tmp[e] = value(sg->tensor, sg->tensor_off + e, arg);
        if (f->o.bf16 && k == PB_FROZEN) {
          bf16_t *t16 = xmalloc(hbytes_(sg->count));
          f->hk->to_bf16(t16, tmp, sg->count);
          ms_copy(&f->ms, f->space[k], f->sh[u].param16[k] + sg->shard_off, MS_HOST, t16,
                  hbytes_(sg->count));
          f->k->sync();
          free(t16);
        } else {
          ms_copy(&f->ms, f->space[k], f->sh[u].param[k] + sg->shard_off, MS_HOST, tmp,
                  fbytes_(sg->count));
          f->k->sync();
        }
        free(tmp);
      }
    }
  for (int u = 0; u < f->plan->n_units; u++) train16_refresh_(f, u);
}

/* ---- gather / release ----------------------------------------------------------------- */

static int gather_issue_(fsdp *f, int u) {
  fsdp_slot *sl = &f->slot[u];
  if (sl->state != 0) return ST_OK;
  opt_wait_unit_(f, u); /* the shard must hold this step's update before it is uploaded */
  const plan_unit *pu = &f->plan->units[u];
  for (int k = 0; k < PB_NKINDS; k++) {
    if (!pu->padded[k]) continue;
    int rc;
    if (f->o.bf16) { /* the bf16 shards, as pairs of values in 32-bit words (mpi/coll.h) */
      sl->buf16[k] = ms_alloc(&f->ms, MS_COMPUTE, MC_GATHER, hbytes_(pu->padded[k]));
      if (f->space[k] == MS_HOST) {
        ms_note_copy(&f->ms, MS_COMPUTE, MS_HOST, hbytes_(pu->shard[k]));
        rc = coll_iallgather_from_host_bf16(sl->buf16[k], f->sh[u].param16[k], pu->shard[k],
                                            &sl->req[k]);
      } else {
        ms_copy(&f->ms, MS_COMPUTE, sl->buf16[k] + (size_t)f->plan->rank * pu->shard[k],
                f->space[k], f->sh[u].param16[k], hbytes_(pu->shard[k]));
        rc = coll_iallgather_bf16(sl->buf16[k], pu->shard[k], &sl->req[k]);
      }
      if (rc) return rc;
      f->gathers++;
      continue;
    }
    sl->buf[k] = ms_alloc(&f->ms, MS_COMPUTE, MC_GATHER, fbytes_(pu->padded[k]));
    if (f->space[k] == MS_HOST) {
      /* offloaded shard: the collective copies it in (on CUDA asynchronously, on the
       * communication stream); the shard stays unchanged until fsdp_step, which syncs */
      ms_note_copy(&f->ms, MS_COMPUTE, MS_HOST, fbytes_(pu->shard[k]));
      rc = coll_iallgather_from_host_f32(sl->buf[k], f->sh[u].param[k], pu->shard[k],
                                         &sl->req[k]);
    } else {
      ms_copy(&f->ms, MS_COMPUTE, sl->buf[k] + (size_t)f->plan->rank * pu->shard[k],
              f->space[k], f->sh[u].param[k], fbytes_(pu->shard[k]));
      rc = coll_iallgather_f32(sl->buf[k], pu->shard[k], &sl->req[k]);
    }
    if (rc) return rc;
    f->gathers++;
  }
  sl->state = 1;
  f->live++;
  return ST_OK;
}

static int gather_wait_(fsdp *f, int u) {
  fsdp_slot *sl = &f->slot[u];
  int rc = ST_OK;
  if (sl->state == 1)
    for (int k = 0; k < PB_NKINDS; k++) rc |= coll_wait(&sl->req[k]);
  sl->state = 2;
  return rc;
}

static void release_(fsdp *f, int u) {
  fsdp_slot *sl = &f->slot[u];
  if (sl->state == 0) return;
  gather_wait_(f, u);
  const plan_unit *pu = &f->plan->units[u];
  for (int k = 0; k < PB_NKINDS; k++) {
    ms_free(&f->ms, MS_COMPUTE, MC_GATHER, sl->buf[k], fbytes_(pu->padded[k]));
    ms_free(&f->ms, MS_COMPUTE, MC_GATHER, sl->buf16[k], hbytes_(pu->padded[k]));
    sl->buf[k] = NULL;
    sl->buf16[k] = NULL;
  }
  sl->state = 0;
  f->live--;
}

/* Issue gathers for the ops from `from` on, in order, while fewer than cap units live. */
static int prefetch_(fsdp *f, const fsdp_op *ops, int n, int from) {
  for (int j = from; j < n; j++)
    for (int q = 0; q < ops[j].nneed; q++) {
      int u = ops[j].need[q];
      if (f->slot[u].state != 0) continue;
      if (f->live >= f->cap) return ST_OK;
      int rc = gather_issue_(f, u);
      if (rc) return rc;
    }
  return ST_OK;
}

static int op_needs_(const fsdp_op *op, int u) {
  for (int q = 0; q < op->nneed; q++)
    if (op->need[q] == u) return 1;
  return 0;
}

/* Keep u after ops[i]? When the next op uses it, or (no reshard after forward) a backward op
 * will. */
static int keep_(const fsdp *f, const fsdp_op *ops, int n, int i, int u) {
  if (i + 1 < n && op_needs_(&ops[i + 1], u)) return 1;
  if (!f->o.reshard_after_forward && ops[i].dir == 0)
    for (int j = i + 1; j < n; j++)
      if (ops[j].dir == 1 && op_needs_(&ops[j], u)) return 1;
  return 0;
}

/* Pointers into unit u's gathered buffers (NULL where not gathered) and its gradient. */
static void view_(const fsdp *f, int u, float *gfull, unit_view *v) {
  memset(v, 0, sizeof *v);
  const fsdp_slot *sl = &f->slot[u];
  for (int i = 0; i < f->tt->n; i++) {
    const plan_tensor *t = &f->plan->tensors[i];
    if (t->unit != u) continue;
    tensor_kind kind = f->tt->t[i].kind;
    if (sl->buf[t->buf]) v->w[kind] = sl->buf[t->buf] + t->offset;
    if (sl->buf16[t->buf]) v->wb[kind] = sl->buf16[t->buf] + t->offset;
    if (t->buf == PB_TRAIN && gfull) v->g[kind] = gfull + t->offset;
  }
}

/* ---- gradients ------------------------------------------------------------------------ */

static float *grad_alloc_(fsdp *f, int u) {
  uint64_t n = f->plan->units[u].padded[PB_TRAIN];
  return n ? ms_alloc(&f->ms, MS_COMPUTE, MC_GRAD_FULL, fbytes_(n)) : NULL;
}

static int rs_issue_(fsdp *f, int u, float *full) {
  if (!full) return ST_OK;
  const plan_unit *pu = &f->plan->units[u];
  size_t n = pu->shard[PB_TRAIN];
  int offload = f->shard_space == MS_HOST, staged = offload && !f->grad_fresh[u];
  if (staged && f->staging_busy) {
    /* One host landing buffer: complete the request holding it first. It belongs to an
     * earlier op (or, tied, to this op's head gradient), and this op's kernels are queued
     * already, so the device keeps computing while the host waits. */
    int i = 0;
    while (!f->rs[i].staged) i++;
    int rc = rs_complete_(f, f->n_rs - (i + 1));
    if (rc) return rc;
  }
  fsdp_rs *r = &f->rs[f->n_rs++];
  r->unit = u;
  r->full = full;
  r->out = NULL;
  r->host = NULL;
  r->staged = 0;
  r->full16 = r->out16 = NULL;
  f->reduce_scatters++;
  if (f->o.reduce_bf16) {
    /* bf16 on the wire: round the unit's gradient, free the fp32 one, reduce-scatter bf16 into
     * a compute buffer; rs_complete_ widens it into the gradient shard (through the host
     * staging when the shard is offloaded). */
    size_t np = pu->padded[PB_TRAIN];
    r->full16 = ms_alloc(&f->ms, MS_COMPUTE, MC_GRAD_FULL, np * sizeof(bf16_t));
    f->k->to_bf16(r->full16, full, np);
    f->k->sync();
    ms_free(&f->ms, MS_COMPUTE, MC_GRAD_FULL, full, fbytes_(np));
    r->full = NULL;
    r->out16 = ms_alloc(&f->ms, MS_COMPUTE, MC_GRAD_FULL, n * sizeof(bf16_t));
    return coll_ireduce_scatter_bf16(r->full16, r->out16, n, &r->req);
  }
  if (offload) {
    /* offload: the result lands in host memory while the next op computes: the first of
     * the step straight in the gradient shard (lazy zeroing), later ones (accumulation) in
     * `staging`, added on completion. The background optimizer may still read the shard. */
    opt_wait_unit_(f, u);
    f->grad_fresh[u] = 0;
    r->staged = staged;
    r->host = staged ? f->staging : f->sh[u].grad;
    if (staged) f->staging_busy = 1;
    return coll_ireduce_scatter_to_host_f32(full, r->host, n, 1.0f, &r->req);
  }
  r->out = ms_alloc(&f->ms, MS_COMPUTE, MC_GRAD_FULL, fbytes_(n));
  return coll_ireduce_scatter_f32(full, r->out, n, 1.0f, &r->req);
}

/* reduce_bf16: unit u's reduce-scattered bf16 gradient (compute memory) into its fp32 gradient
 * shard: widened over it when the shard is still fresh this step, added otherwise; offloaded
 * shards through the host staging (free: bf16 results complete one at a time here). */
static void rs_widen_(fsdp *f, int u, const bf16_t *x, size_t n) {
  float *g = f->sh[u].grad;
  opt_wait_unit_(f, u); /* the optimizer may still read last step's gradient */
  int fresh = f->grad_fresh[u];
  f->grad_fresh[u] = 0;
  const kernels *k = f->k;
  if (f->shard_space == MS_HOST) {
    ms_copy(&f->ms, MS_HOST, f->staging, MS_COMPUTE, x, n * sizeof(bf16_t));
    x = (const bf16_t *)(const void *)f->staging;
    k = f->hk;
  }
  if (fresh)
    k->to_f32(g, x, n);
  else
    k->add_bf16(g, x, n);
}

/* Complete all but the newest `keep` reduce-scatters, adding each into its gradient shard. */
static int rs_complete_(fsdp *f, int keep) {
  int rc = ST_OK, done = f->n_rs - keep;
  for (int i = 0; i < done; i++) {
    fsdp_rs *r = &f->rs[i];
    const plan_unit *pu = &f->plan->units[r->unit];
    size_t n = pu->shard[PB_TRAIN];
    rc |= coll_wait(&r->req); /* offload: returns when r->host holds the result */
    float *g = f->sh[r->unit].grad;
    if (r->out16) {
      rs_widen_(f, r->unit, r->out16, n);
      ms_free(&f->ms, MS_COMPUTE, MC_GRAD_FULL, r->out16, n * sizeof(bf16_t));
      ms_free(&f->ms, MS_COMPUTE, MC_GRAD_FULL, r->full16, pu->padded[PB_TRAIN] * sizeof(bf16_t));
      continue;
    }
    if (r->host) {
      ms_note_copy(&f->ms, MS_HOST, MS_COMPUTE, fbytes_(n));
      if (r->staged) {
        f->hk->add(g, r->host, n);
        f->staging_busy = 0;
      }
      ms_free(&f->ms, MS_COMPUTE, MC_GRAD_FULL, r->full, fbytes_(pu->padded[PB_TRAIN]));
      continue;
    }
    opt_wait_unit_(f, r->unit); /* the optimizer may still read last step's gradient */
    int fresh = f->grad_fresh[r->unit];
    f->grad_fresh[r->unit] = 0;
    if (fresh) { /* compute shards (offloaded ones took the branch above) */
      ms_copy(&f->ms, MS_COMPUTE, g, MS_COMPUTE, r->out, fbytes_(n));
    } else {
      f->k->add(g, r->out, n);
    }
    ms_free(&f->ms, MS_COMPUTE, MC_GRAD_FULL, r->out, fbytes_(n));
    ms_free(&f->ms, MS_COMPUTE, MC_GRAD_FULL, r->full, fbytes_(pu->padded[PB_TRAIN]));
  }
  if (done > 0) {
    memmove(f->rs, f->rs + done, (size_t)keep * sizeof(fsdp_rs));
    f->n_rs = keep;
  }
  return rc;
}

/* ---- one pass over the ops -------------------------------------------------------------- */

static int compute_(fsdp *f, const fsdp_op *op, model_ctx *ctx, const int32_t *tokens,
                    const int32_t *targets, float scale, double *loss_sum, int64_t *n_counted) {
  int L = f->cfg->num_hidden_layers, H = L + 1, u = op->unit, rc = ST_OK;
  unit_view v, ve;
  if (op->dir == 0) {
    view_(f, u, NULL, &v);
    if (u == 0) return model_embed_forward(ctx, &v, tokens);
    if (u <= L) {
      model_block_forward(ctx, u - 1, &v);
      return ST_OK;
    }
    if (f->tied) view_(f, 0, NULL, &ve);
    return model_head_forward(ctx, &v, f->tied ? &ve : NULL, targets, loss_sum, n_counted);
  }
  float *g = grad_alloc_(f, u);
  view_(f, u, g, &v);
  if (u == H) {
    float *g0 = f->tied ? grad_alloc_(f, 0) : NULL;
    if (f->tied) view_(f, 0, g0, &ve);
    model_head_backward(ctx, &v, f->tied ? &ve : NULL, targets, scale);
    rc = rs_issue_(f, H, g);
    if (!rc) rc = rs_issue_(f, 0, g0);
  } else if (u >= 1) {
    model_block_backward(ctx, u - 1, &v);
    rc = rs_issue_(f, u, g);
  } else {
    model_embed_backward(ctx, &v);
    rc = rs_issue_(f, 0, g);
  }
  return rc;
}

static int run_ops_(fsdp *f, const fsdp_op *ops, int n, model_ctx *ctx, const int32_t *tokens,
                    const int32_t *targets, float scale, double *loss_sum, int64_t *n_counted) {
  int rc = ST_OK;
  for (int i = 0; i < n && !rc; i++) {
    const fsdp_op *op = &ops[i];
    for (int q = 0; q < op->nneed && !rc; q++) rc = gather_issue_(f, op->need[q]);
    for (int q = 0; q < op->nneed && !rc; q++) rc = gather_wait_(f, op->need[q]);
    if (!rc) rc = prefetch_(f, ops, n, i + 1);
    uint64_t issued = f->reduce_scatters;
    if (!rc) rc = compute_(f, op, ctx, tokens, targets, scale, loss_sum, n_counted);
    /* keep this op's reduce-scatters in flight; finish the previous op's (compute_ may have
     * finished some already: offload's landing buffer) */
    int mine = (int)(f->reduce_scatters - issued);
    if (mine > f->n_rs) mine = f->n_rs;
    if (!rc) rc = rs_complete_(f, mine);
    for (int q = 0; q < op->nneed; q++)
      if (!keep_(f, ops, n, i, op->need[q])) release_(f, op->need[q]);
  }
  int rc2 = rs_complete_(f, 0);
  for (int u = 0; u < f->plan->n_units; u++) release_(f, u);
  return rc ? rc : rc2;
}

int fsdp_forward_backward(fsdp *f, model_ctx *ctx, const int32_t *tokens,
                          const int32_t *targets, float loss_scale, double *loss_sum,
                          int64_t *n_counted) {
  return run_ops_(f, f->ops_train, f->n_ops_train, ctx, tokens, targets, loss_scale, loss_sum,
                  n_counted);
}

int fsdp_forward(fsdp *f, model_ctx *ctx, const int32_t *tokens, const int32_t *targets,
                 double *loss_sum, int64_t *n_counted) {
  return run_ops_(f, f->ops_eval, f->n_ops_eval, ctx, tokens, targets, 0.0f, loss_sum,
                  n_counted);
}

/* ---- optimizer ------------------------------------------------------------------------ */

/* The kernel table that may touch unit shards: host kernels for offloaded shards. */
static const kernels *shard_k_(const fsdp *f) {
  return f->shard_space == MS_HOST ? f->hk : f->k;
}

/* bf16 mode: unit u's gathered trainable copy = its fp32 master rounded to nearest even
 * (after loading, every update and every restore). The optimizer thread calls it too: host
 * kernels for offloaded shards, no accounting. */
static void train16_refresh_(fsdp *f, int u) {
  size_t n = f->plan->units[u].shard[PB_TRAIN];
  if (f->o.bf16 && n) shard_k_(f)->to_bf16(f->sh[u].param16[PB_TRAIN], f->sh[u].param[PB_TRAIN], n);
}

/* Gradient shards still marked fresh become real zeros (before anything reads them). */
static void grads_realize_(fsdp *f) {
  for (int u = 0; u < f->plan->n_units; u++) {
    size_t n = f->plan->units[u].shard[PB_TRAIN];
    if (!f->grad_fresh[u]) continue;
    f->grad_fresh[u] = 0;
    if (n) shard_k_(f)->zero(f->sh[u].grad, n);
  }
}

void fsdp_zero_grads(fsdp *f) {
  /* lazy: the first reduce-scatter of the step overwrites (no pass over memory, and no
   * wait for a background optimizer step still reading the gradients) */
  for (int u = 0; u < f->plan->n_units; u++)
    f->grad_fresh[u] = f->plan->units[u].shard[PB_TRAIN] > 0;
}

static void update_unit_(fsdp *f, int u, const opt_job_ *j) {
  const plan_unit *pu = &f->plan->units[u];
  fsdp_shard *s = &f->sh[u];
  const kernels *K = shard_k_(f);
  if (!pu->shard[PB_TRAIN]) return;
  if (j->coef < 1.0f) K->scale(s->grad, j->coef, pu->shard[PB_TRAIN]);
  for (int q = 0; q < pu->nseg[PB_TRAIN]; q++) {
    const plan_seg *sg = &pu->seg[PB_TRAIN][q];
    float wd = f->tt->t[sg->tensor].decay ? j->wd : 0.0f;
    size_t o = sg->shard_off;
    K->adamw(s->param[PB_TRAIN] + o, s->grad + o, s->m + o, s->v + o, sg->count, j->lr,
             j->beta1, j->beta2, j->eps, wd, j->step);
  }
  train16_refresh_(f, u);
}

int fsdp_step(fsdp *f, const fsdp_adamw *h, double lr, long step, double *grad_norm) {
  fsdp_wait_step(f);
  grads_realize_(f);
  const kernels *K = shard_k_(f);
  double ss = 0;
  for (int u = 0; u < f->plan->n_units; u++) {
    size_t n = f->plan->units[u].shard[PB_TRAIN];
    if (n) ss += K->sum_squares(f->sh[u].grad, n);
  }
  /* over the shard group: with hybrid sharding every replica holds the same reduced shards */
  int rc = coll_shard_allreduce_sum_f64(&ss, 1);
  if (rc) return rc;
  double norm = sqrt(ss);
  if (grad_norm) *grad_norm = norm;
  if (!isfinite(norm)) return ST_OK; /* a NaN/Inf gradient never reaches the shards */
  double coef = grad_clip_coef(norm, h->max_grad_norm);
  opt_job_ j = {(float)lr, (float)h->beta1, (float)h->beta2, (float)h->eps,
                (float)h->weight_decay, coef < 1.0 ? (float)coef : 1.0f, step};
  struct fsdp_async *a = f->async;
  if (a) {
    /* uploads from the host shards queued by the last pass may still be in flight */
    f->k->sync();
    a->job = j;
    a->done = 0;
    if (pthread_create(&a->thread, NULL, opt_thread_, a) == 0) {
      a->running = 1;
      f->async_steps++;
      return ST_OK;
    }
    log_warn("fsdp: could not start the background optimizer thread: stepping inline");
  }
  for (int u = 0; u < f->plan->n_units; u++) update_unit_(f, u, &j);
  return ST_OK;
}

/* ---- whole tensors -------------------------------------------------------------------- */

static float *shard_of_(fsdp *f, int u, int k, int which) {
  if (which == 0) return f->sh[u].param[k];
  if (k != PB_TRAIN) return NULL;
  return which == 1 ? f->sh[u].m : which == 2 ? f->sh[u].v : f->sh[u].grad;
}

int fsdp_gather_tensors(fsdp *f, int which, int root, float ***out) {
  fsdp_wait_step(f);
  if (which == 3) grads_realize_(f);
  float **o = xcalloc((size_t)f->tt->n + 1, sizeof(float *));
  /* root is a world rank; the gathers run in the shard group (with hybrid sharding only the
   * root's group needs to gather: the other groups hold the same shards) */
  int me = root < 0 || root == comm_rank(), rc = ST_OK;
  coll_groups g;
  coll_get_groups(&g);
  if (root >= 0 && coll_group_of_rank(root) != g.replica_rank) {
    *out = o;
    return ST_OK;
  }
  for (int u = 0; u < f->plan->n_units && !rc; u++)
    for (int k = 0; k < PB_NKINDS && !rc; k++) {
      const plan_unit *pu = &f->plan->units[u];
      if (which == 0 && f->o.bf16 && k == PB_FROZEN) { /* bf16 only: widened on the host */
        if (!pu->padded[k]) continue;
        bf16_t *b16 = ms_alloc(&f->ms, MS_COMPUTE, MC_GATHER, hbytes_(pu->padded[k]));
        ms_copy(&f->ms, MS_COMPUTE, b16 + (size_t)f->plan->rank * pu->shard[k], f->space[k],
                f->sh[u].param16[k], hbytes_(pu->shard[k]));
        rc = coll_allgather_bf16(b16, pu->shard[k]);
        for (int i = 0; i < f->tt->n && me && !rc; i++) {
          const plan_tensor *t = &f->plan->tensors[i];
          if (t->unit != u || t->buf != (plan_buf)k) continue;
          bf16_t *h = xmalloc(hbytes_(t->numel));
          ms_copy(&f->ms, MS_HOST, h, MS_COMPUTE, b16 + t->offset, hbytes_(t->numel));
          o[i] = xmalloc(fbytes_(t->numel));
          f->hk->to_f32(o[i], h, t->numel);
          free(h);
        }
        ms_free(&f->ms, MS_COMPUTE, MC_GATHER, b16, hbytes_(pu->padded[k]));
        continue;
      }
      float *src = shard_of_(f, u, k, which);
      if (!pu->padded[k] || !src) continue;
      float *buf = ms_alloc(&f->ms, MS_COMPUTE, MC_GATHER, fbytes_(pu->padded[k]));
      ms_copy(&f->ms, MS_COMPUTE, buf + (size_t)f->plan->rank * pu->shard[k], f->space[k],
              src, fbytes_(pu->shard[k]));
      rc = coll_allgather_f32(buf, pu->shard[k]);
      for (int i = 0; i < f->tt->n && me && !rc; i++) {
        const plan_tensor *t = &f->plan->tensors[i];
        if (t->unit != u || t->buf != (plan_buf)k) continue;
        o[i] = xmalloc(fbytes_(t->numel));
        ms_copy(&f->ms, MS_HOST, o[i], MS_COMPUTE, buf + t->offset, fbytes_(t->numel));
      }
      ms_free(&f->ms, MS_COMPUTE, MC_GATHER, buf, fbytes_(pu->padded[k]));
    }
  *out = o;
  return rc;
}

void fsdp_free_tensors(const fsdp *f, float **out) {
  if (!out) return;
  for (int i = 0; i < f->tt->n; i++) free(out[i]);
  free(out);
}

static float **mirror_slot_(fsdp *f, int which, int u, int k) {
  return &f->mirror[((size_t)which * f->plan->n_units + (size_t)u) * PB_NKINDS + (size_t)k];
}

/* bf16 mode's frozen parameter shards (pieces of which = 0): fp32 copies handed out */
static int frozen16_(const fsdp *f, int which, int k) {
  return f->o.bf16 && which == 0 && k == PB_FROZEN;
}

/* Host access to unit u's bf16 shard of kind k: the shard itself when the host may use it,
 * else a host staging copy (downloaded when `read`); host16_end_ uploads it back when
 * `write` and frees the copy. */
static bf16_t *host16_begin_(fsdp *f, int u, int k, int read) {
  bf16_t *sh = f->sh[u].param16[k];
  if (f->space[k] == MS_HOST || f->k->host_addressable) return sh;
  size_t n = f->plan->units[u].shard[k];
  bf16_t *h = ms_alloc(&f->ms, MS_HOST, MC_STAGING, hbytes_(n));
  if (read) ms_copy(&f->ms, MS_HOST, h, f->space[k], sh, hbytes_(n));
  return h;
}
static void host16_end_(fsdp *f, int u, int k, bf16_t *h, int write) {
  bf16_t *sh = f->sh[u].param16[k];
  if (h == sh) return;
  size_t n = f->plan->units[u].shard[k];
  if (write) {
    ms_copy(&f->ms, f->space[k], sh, MS_HOST, h, hbytes_(n));
    f->k->sync(); /* the upload may still read h */
  }
  ms_free(&f->ms, MS_HOST, MC_STAGING, h, hbytes_(n));
}

int fsdp_foreach_piece(fsdp *f, int which,
                       int (*fn)(int tensor, uint64_t first, uint64_t count, float *data,
                                 void *arg),
                       void *arg) {
  fsdp_wait_step(f);
  if (which == 3) grads_realize_(f);
  for (int u = 0; u < f->plan->n_units; u++)
    for (int k = 0; k < PB_NKINDS; k++) {
      float *base = shard_of_(f, u, k, which);
      const plan_unit *pu = &f->plan->units[u];
      if (frozen16_(f, which, k) && pu->shard[k]) {
        /* bf16 frozen shard: an fp32 host copy, widened (exact) */
        float **mp = mirror_slot_(f, which, u, k);
        if (!*mp) *mp = ms_alloc(&f->ms, MS_HOST, MC_STAGING, fbytes_(pu->shard[k]));
        bf16_t *h = host16_begin_(f, u, k, 1);
        f->hk->to_f32(*mp, h, pu->shard[k]);
        host16_end_(f, u, k, h, 0);
        base = *mp;
      } else if (!base || !pu->shard[k]) {
        continue;
      } else if (f->space[k] != MS_HOST && !f->k->host_addressable) {
        /* compute shard the host may not read (cuda, guard): hand out a host copy */
        float **mp = mirror_slot_(f, which, u, k);
        if (!*mp) *mp = ms_alloc(&f->ms, MS_HOST, MC_STAGING, fbytes_(pu->shard[k]));
        ms_copy(&f->ms, MS_HOST, *mp, f->space[k], base, fbytes_(pu->shard[k]));
        base = *mp;
      }
      for (int s = 0; s < pu->nseg[k]; s++) {
        const plan_seg *sg = &pu->seg[k][s];
        int rc = fn(sg->tensor, sg->tensor_off, sg->count, base + sg->shard_off, arg);
        if (rc) return rc;
      }
    }
  return ST_OK;
}

void fsdp_pieces_done(fsdp *f, int written) {
  if (!f->mirror) return;
  int uploaded = 0;
  for (int which = 0; which < 4; which++)
    for (int u = 0; u < f->plan->n_units; u++)
      for (int k = 0; k < PB_NKINDS; k++) {
        float **mp = mirror_slot_(f, which, u, k);
        if (!*mp) continue;
        size_t n = f->plan->units[u].shard[k];
        if (written && frozen16_(f, which, k)) { /* narrowed back into the bf16 shard */
          bf16_t *h = host16_begin_(f, u, k, 0);
          f->hk->to_bf16(h, *mp, n);
          host16_end_(f, u, k, h, 1);
        } else if (written) {
          ms_copy(&f->ms, f->space[k], shard_of_(f, u, k, which), MS_HOST, *mp, fbytes_(n));
          uploaded = 1;
        }
        if (uploaded) f->k->sync(); /* the upload may still read the mirror */
        ms_free(&f->ms, MS_HOST, MC_STAGING, *mp, fbytes_(n));
        *mp = NULL;
      }
  /* restored masters (host shards were written in place): their bf16 copies follow */
  if (written)
    for (int u = 0; u < f->plan->n_units; u++) train16_refresh_(f, u);
}

/* ---- theory --------------------------------------------------------------------------- */

void fsdp_expected_bytes(const fsdp *f, int train, uint64_t *gather_bytes, uint64_t *rs_bytes) {
  const shard_plan *p = f->plan;
  int L = f->cfg->num_hidden_layers, H = L + 1, lowest = p->lowest_grad_unit;
  uint64_t g = 0, r = 0;
  const uint64_t es = f->o.bf16 ? 2 : 4; /* bytes per gathered parameter */
#define UNIT_BYTES(u) (es * (p->units[u].padded[PB_FROZEN] + p->units[u].padded[PB_TRAIN]))
  const uint64_t er = f->o.reduce_bf16 ? 2 : 4; /* bytes per reduce-scattered gradient */
#define TRAIN_BYTES(u) (er * p->units[u].padded[PB_TRAIN])
  /* forward: every unit once; tied: the head gathers unit 0 again (released after F(0)),
   * unless it is kept for the head's backward */
  for (int u = 0; u <= H; u++) g += UNIT_BYTES(u);
  int backward = train && lowest <= H;
  int keep0 = backward && !f->o.reshard_after_forward;
  if (f->tied && L >= 1 && !keep0) g += UNIT_BYTES(0);
  if (backward) {
    /* backward: blocks re-gathered (the head and tied unit 0 stay from F(head)) */
    if (f->o.reshard_after_forward)
      for (int u = lowest > 1 ? lowest : 1; u <= L; u++) g += UNIT_BYTES(u);
    for (int u = lowest > 1 ? lowest : 1; u <= H; u++) r += TRAIN_BYTES(u);
    if (lowest == 0) r += TRAIN_BYTES(0);      /* lookup gradient */
    if (f->tied) r += TRAIN_BYTES(0);          /* head's gradient of the shared matrix */
  }
#undef UNIT_BYTES
#undef TRAIN_BYTES
  *gather_bytes = g;
  *rs_bytes = r;
}
