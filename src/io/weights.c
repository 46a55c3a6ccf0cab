/* Whole-model parameters in one process (see weights.h). */
#include "io/weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "kernels/bf16.h"
#include "util/err.h"
#include "util/rng.h"

static void views_(model_weights *mw) {
  memset(mw->units, 0, (size_t)mw->tt.n_units * sizeof *mw->units);
  float *w = mw->k ? mw->cdata : mw->data, *g = mw->k ? mw->cgrad : mw->grad;
  bf16_t *wb = mw->k ? mw->cdata16 : mw->data16;
  for (int i = 0; i < mw->tt.n; i++) {
    const tensor_desc *d = &mw->tt.t[i];
    if (w) mw->units[d->unit].w[d->kind] = w + mw->offset[i];
    if (wb) mw->units[d->unit].wb[d->kind] = wb + mw->offset[i];
    if (g && d->trainable) mw->units[d->unit].g[d->kind] = g + mw->offset[i];
  }
}

int model_weights_to_compute(model_weights *mw, const kernels *k) {
  if (mw->k) return 0;
  size_t n = mw->numel ? mw->numel : 1;
  if (mw->data && !(mw->cdata = k->alloc(n * sizeof(float))))
    return st_fail(ST_ERUNTIME, "model: cannot allocate %zu bytes of %s memory for %zu "
                   "parameters", n * sizeof(float), k->name, mw->numel);
  if (mw->data16 && !(mw->cdata16 = k->alloc(n * sizeof(bf16_t)))) {
    if (mw->cdata) k->free(mw->cdata);
    mw->cdata = NULL;
    return st_fail(ST_ERUNTIME, "model: cannot allocate %zu bytes of %s memory for %zu bf16 "
                   "parameters", n * sizeof(bf16_t), k->name, mw->numel);
  }
  if (mw->data) k->upload(mw->cdata, mw->data, mw->numel * sizeof(float));
  if (mw->data16) k->upload(mw->cdata16, mw->data16, mw->numel * sizeof(bf16_t));
  mw->k = k;
  views_(mw);
  return 0;
}

void model_weights_download(model_weights *mw) {
  if (mw->k && mw->data) mw->k->download(mw->data, mw->cdata, mw->numel * sizeof(float));
}

void model_weights_make_bf16(model_weights *mw) {
  if (!mw->data16) mw->data16 = xmalloc((mw->numel ? mw->numel : 1) * sizeof(bf16_t));
  for (size_t i = 0; i < mw->numel; i++) mw->data16[i] = bf16_from_f32(mw->data[i]);
  views_(mw);
}

static int layout_(const model_config *c, int bf16, model_weights *mw) {
  memset(mw, 0, sizeof *mw);
  mw->cfg = *c;
  int rc = tensor_table_build(&mw->cfg, &mw->tt);
  if (rc) return rc;
  mw->offset = xmalloc((size_t)mw->tt.n * sizeof *mw->offset);
  for (int i = 0; i < mw->tt.n; i++) {
    mw->offset[i] = mw->numel;
    mw->numel += mw->tt.t[i].numel;
  }
  size_t es = bf16 ? sizeof(bf16_t) : sizeof(float);
  void *p = malloc((mw->numel ? mw->numel : 1) * es);
  if (bf16) mw->data16 = p;
  else mw->data = p;
  if (!p) {
    size_t n = mw->numel;
    model_weights_free(mw);
    return st_fail(ST_ERUNTIME, "model: cannot allocate %zu parameters (%zu bytes)", n, n * es);
  }
  mw->units = xcalloc((size_t)mw->tt.n_units, sizeof *mw->units);
  views_(mw);
  return 0;
}

static int load_(const char *dir, int bf16, model_weights *mw) {
  char *cfg_path = xasprintf("%s/config.json", dir);
  model_config c;
  int rc = model_config_load(cfg_path, &c);
  free(cfg_path);
  if (rc) return rc;
  if ((rc = layout_(&c, bf16, mw))) return rc;
  sft_model m;
  if ((rc = sft_open(dir, &m))) {
    model_weights_free(mw);
    return rc;
  }
  for (int i = 0; i < mw->tt.n && !rc; i++) {
    const tensor_desc *d = &mw->tt.t[i];
    const sft_tensor *t = sft_find(&m, d->name);
    if (!t) {
      rc = st_fail(ST_EINPUT, "%s: tensor '%s' is missing (the config asks for it)", dir,
                   d->name);
      break;
    }
    int shape_ok = t->ndim == d->ndim && t->shape[0] == d->shape[0] &&
                   (d->ndim == 1 || t->shape[1] == d->shape[1]);
    if (!shape_ok) {
      rc = st_fail(ST_EINPUT, "%s: tensor '%s': expected shape (%lld%s%lld), found %d dims "
                   "(%lld, ...)", dir, d->name, (long long)d->shape[0], d->ndim == 2 ? ", " : "",
                   d->ndim == 2 ? (long long)d->shape[1] : 0LL, t->ndim,
                   t->ndim ? (long long)t->shape[0] : 0LL);
      break;
    }
    if (bf16) {
      rc = sft_read_bf16(&m, t, 0, d->numel, mw->data16 + mw->offset[i]);
      if (!rc) rc = sft_check_finite_bf16(&m, t, 0, mw->data16 + mw->offset[i], d->numel);
    } else {
      rc = sft_read_f32(&m, t, 0, d->numel, mw->data + mw->offset[i]);
      if (!rc) rc = sft_check_finite(&m, t, 0, mw->data + mw->offset[i], d->numel);
    }
  }
  sft_close(&m);
  if (rc) model_weights_free(mw);
  return rc;
}

int model_weights_load(const char *dir, model_weights *mw) { return load_(dir, 0, mw); }
int model_weights_load_bf16(const char *dir, model_weights *mw) { return load_(dir, 1, mw); }

int model_weights_init_random(const model_config *c, uint64_t seed, double std,
                              model_weights *mw) {
  int rc = layout_(c, 0, mw);
  if (rc) return rc;
  for (int i = 0; i < mw->tt.n; i++) {
    const tensor_desc *d = &mw->tt.t[i];
    float *p = mw->data + mw->offset[i];
    rng_t r;
    rng_seed3(&r, seed, (uint64_t)i, 0);
    int is_norm = d->ndim == 1 && d->kind != TK_Q_BIAS && d->kind != TK_K_BIAS &&
                  d->kind != TK_V_BIAS;
    for (uint64_t j = 0; j < d->numel; j++)
      p[j] = d->ndim == 2 ? (float)(std * rng_normal(&r)) : (is_norm ? 1.0f : 0.0f);
  }
  return 0;
}

void model_weights_enable_grads(model_weights *mw) {
  if (mw->k && !mw->cgrad) {
    mw->cgrad = mw->k->alloc((mw->numel ? mw->numel : 1) * sizeof(float));
    if (!mw->cgrad) {
      log_error("model: out of %s memory for %zu gradients", mw->k->name, mw->numel);
      abort();
    }
  }
  if (!mw->k && !mw->grad) mw->grad = xcalloc(mw->numel ? mw->numel : 1, sizeof *mw->grad);
  views_(mw);
  model_weights_zero_grads(mw);
}

void model_weights_zero_grads(model_weights *mw) {
  if (mw->grad) memset(mw->grad, 0, mw->numel * sizeof *mw->grad);
  if (mw->cgrad) mw->k->zero(mw->cgrad, mw->numel);
}

void model_weights_free(model_weights *mw) {
  tensor_table_free(&mw->tt);
  free(mw->offset);
  free(mw->data);
  free(mw->data16);
  free(mw->grad);
  if (mw->k) {
    if (mw->cdata) mw->k->free(mw->cdata);
    if (mw->cdata16) mw->k->free(mw->cdata16);
    if (mw->cgrad) mw->k->free(mw->cgrad);
  }
  free(mw->units);
  memset(mw, 0, sizeof *mw);
}
