#include "shard/plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpi/coll.h"
#include "mpi/comm.h"
#include "util/err.h"
#include "util/hash.h"

static uint64_t round_up_(uint64_t x, uint64_t m) { return (x + m - 1) / m * m; }

/* What every rank must agree on about one tensor. */
static uint64_t tensor_hash_(const tensor_desc *d) {
  uint64_t h = hash64_str(HASH64_INIT, d->name);
  h = hash64_u64(h, (uint64_t)d->unit);
  h = hash64_u64(h, (uint64_t)d->ndim);
  for (int i = 0; i < d->ndim && i < 2; i++) h = hash64_u64(h, (uint64_t)d->shape[i]);
  h = hash64_u64(h, (uint64_t)(d->trainable != 0));
  return h;
}

static void segments_(shard_plan *p, const tensor_table *tt, int u, plan_buf k) {
  plan_unit *pu = &p->units[u];
  uint64_t lo = (uint64_t)p->rank * pu->shard[k], hi = lo + pu->shard[k];
  int n = 0;
  for (int pass = 0; pass < 2; pass++) {
    n = 0;
    for (int i = 0; i < tt->n; i++) {
      const plan_tensor *t = &p->tensors[i];
      if (t->unit != u || t->buf != k) continue;
      uint64_t a = t->offset > lo ? t->offset : lo;
      uint64_t b = t->offset + t->numel < hi ? t->offset + t->numel : hi;
      if (a >= b) continue;
      if (pass == 1)
        pu->seg[k][n] = (plan_seg){i, a - lo, a - t->offset, b - a};
      n++;
    }
    if (pass == 0) pu->seg[k] = n ? xcalloc((size_t)n, sizeof(plan_seg)) : NULL;
  }
  pu->nseg[k] = n;
}

int plan_build(const tensor_table *tt, int nranks, int rank, shard_plan *p) {
  memset(p, 0, sizeof *p);
  if (nranks < 1 || rank < 0 || rank >= nranks)
    return st_fail(ST_EINPUT, "shard plan: rank %d of %d ranks is not valid", rank, nranks);
  p->nranks = nranks;
  p->rank = rank;
  p->n_units = tt->n_units;
  p->n_tensors = tt->n;
  p->units = xcalloc((size_t)tt->n_units, sizeof(plan_unit));
  p->tensors = xcalloc((size_t)(tt->n ? tt->n : 1), sizeof(plan_tensor));
  p->lowest_grad_unit = tt->n_units;
  uint64_t h = hash64_u64(HASH64_INIT, (uint64_t)nranks);
  h = hash64_u64(h, PLAN_ALIGN);
  h = hash64_u64(h, (uint64_t)tt->n_units);
  for (int i = 0; i < tt->n; i++) {
    const tensor_desc *d = &tt->t[i];
    if (d->unit < 0 || d->unit >= tt->n_units) {
      plan_free(p);
      return st_fail(ST_EINPUT, "shard plan: tensor '%s' has unit %d, expected 0..%d", d->name,
                     d->unit, tt->n_units - 1);
    }
    plan_buf k = d->trainable ? PB_TRAIN : PB_FROZEN;
    plan_unit *pu = &p->units[d->unit];
    p->tensors[i] = (plan_tensor){d->unit, k, pu->numel[k], d->numel};
    pu->numel[k] += d->numel;
    if (d->trainable && d->unit < p->lowest_grad_unit) p->lowest_grad_unit = d->unit;
    h = hash64_u64(h, tensor_hash_(d));
    h = hash64_u64(h, p->tensors[i].offset);
  }
  for (int u = 0; u < tt->n_units; u++)
    for (int k = 0; k < PB_NKINDS; k++) {
      plan_unit *pu = &p->units[u];
      pu->padded[k] = round_up_(pu->numel[k], (uint64_t)PLAN_ALIGN * (uint64_t)nranks);
      pu->shard[k] = pu->padded[k] / (uint64_t)nranks;
      h = hash64_u64(h, pu->padded[k]);
      segments_(p, tt, u, (plan_buf)k);
    }
  p->hash = h;
  return ST_OK;
}

void plan_free(shard_plan *p) {
  if (p->units)
    for (int u = 0; u < p->n_units; u++)
      for (int k = 0; k < PB_NKINDS; k++) free(p->units[u].seg[k]);
  free(p->units);
  free(p->tensors);
  memset(p, 0, sizeof *p);
}

static uint64_t total_(const shard_plan *p, plan_buf k, int which) {
  uint64_t s = 0;
  for (int u = 0; u < p->n_units; u++)
    s += which == 0 ? p->units[u].numel[k] : which == 1 ? p->units[u].padded[k] : p->units[u].shard[k];
  return s;
}
uint64_t plan_total_numel(const shard_plan *p, plan_buf k) { return total_(p, k, 0); }
uint64_t plan_total_padded(const shard_plan *p, plan_buf k) { return total_(p, k, 1); }
uint64_t plan_total_shard(const shard_plan *p, plan_buf k) { return total_(p, k, 2); }

uint64_t plan_max_unit_padded(const shard_plan *p) {
  uint64_t m = 0;
  for (int u = 0; u < p->n_units; u++) {
    uint64_t s = p->units[u].padded[PB_FROZEN] + p->units[u].padded[PB_TRAIN];
    if (s > m) m = s;
  }
  return m;
}

/* ---- agreement ------------------------------------------------------------------------ */

/* The lowest rank whose `v` differs from rank 0's (nranks when none); *v0 = rank 0's. */
static int first_differing_rank_(uint64_t v, uint64_t *v0) {
  *v0 = v;
  comm_bcast(v0, sizeof *v0, 0);
  uint64_t key = v != *v0 ? (uint64_t)comm_rank() : (uint64_t)comm_size();
  coll_allreduce_min_u64(&key, 1);
  return (int)key;
}

static void describe_(char *buf, size_t len, const tensor_desc *d) {
  if (d->ndim == 1)
    snprintf(buf, len, "'%s' (%lld) %s", d->name, (long long)d->shape[0],
             d->trainable ? "trainable" : "frozen");
  else
    snprintf(buf, len, "'%s' (%lld, %lld) %s", d->name, (long long)d->shape[0],
             (long long)d->shape[1], d->trainable ? "trainable" : "frozen");
}

int plan_agree(const shard_plan *p, const tensor_table *tt) {
  if (comm_size() == 1) return ST_OK;
  uint64_t v0;
  if (first_differing_rank_(p->hash, &v0) == comm_size()) return ST_OK;

  /* Something differs: find the first tensor (in model order) and the lowest rank. */
  int k = first_differing_rank_((uint64_t)tt->n, &v0);
  if (k < comm_size()) {
    uint64_t nk = (uint64_t)(comm_rank() == k ? tt->n : 0);
    coll_allreduce_max_u64(&nk, 1);
    return st_fail(ST_EINPUT,
                   "ranks disagree on the shard plan: the model has %llu tensors on rank 0 "
                   "but %llu on rank %d; every rank must read the same model and config",
                   (unsigned long long)v0, (unsigned long long)nk, k);
  }
  uint64_t *h0 = xcalloc((size_t)tt->n + 1, sizeof(uint64_t));
  for (int i = 0; i < tt->n; i++) h0[i] = tensor_hash_(&tt->t[i]);
  comm_bcast(h0, (size_t)tt->n * sizeof(uint64_t), 0);
  int first = tt->n;
  for (int i = 0; i < tt->n && first == tt->n; i++)
    if (h0[i] != tensor_hash_(&tt->t[i])) first = i;
  free(h0);
  uint64_t key = (uint64_t)first * (uint64_t)comm_size() + (uint64_t)comm_rank();
  coll_allreduce_min_u64(&key, 1);
  int ti = (int)(key / (uint64_t)comm_size());
  int rk = (int)(key % (uint64_t)comm_size());
  if (ti == tt->n)
    return st_fail(ST_EINPUT,
                   "ranks disagree on the shard plan although every tensor agrees (different "
                   "rank counts or program versions?)");
  tensor_desc d0 = tt->t[ti], dk = tt->t[ti];
  comm_bcast(&d0, sizeof d0, 0);
  comm_bcast(&dk, sizeof dk, rk);
  d0.name[sizeof d0.name - 1] = dk.name[sizeof dk.name - 1] = 0;
  int same_shape = d0.ndim == dk.ndim && d0.shape[0] == dk.shape[0] &&
                   (d0.ndim < 2 || d0.shape[1] == dk.shape[1]);
  if (strcmp(d0.name, dk.name) == 0 && same_shape && d0.unit == dk.unit)
    return st_fail(ST_EINPUT,
                   "ranks disagree on the shard plan: tensor '%s' is %s on rank 0 but %s on "
                   "rank %d; every rank must read the same trainable set (unfrozen_parameters)",
                   d0.name, d0.trainable ? "trainable" : "frozen",
                   dk.trainable ? "trainable" : "frozen", rk);
  char a[256], b[256];
  describe_(a, sizeof a, &d0);
  describe_(b, sizeof b, &dk);
  return st_fail(ST_EINPUT,
                 "ranks disagree on the shard plan: tensor %d is %s on rank 0 but %s on rank "
                 "%d; every rank must read the same model and trainable set",
                 ti, a, b, rk);
}
