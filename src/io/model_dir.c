#include "io/model_dir.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"

static void shape_str_(char *buf, size_t len, int ndim, const int64_t *shape) {
  size_t n = (size_t)snprintf(buf, len, "[");
  for (int d = 0; d < ndim && n < len; d++)
    n += (size_t)snprintf(buf + n, len - n, "%s%lld", d ? ", " : "", (long long)shape[d]);
  if (n < len) snprintf(buf + n, len - n, "]");
}

static int check_(model_dir *md) {
  const char *dir = md->dir;
  md->file_t = xcalloc((size_t)md->tt.n + 1, sizeof *md->file_t);
  for (int i = 0; i < md->tt.n; i++) {
    const tensor_desc *d = &md->tt.t[i];
    char want[96], got[96];
    shape_str_(want, sizeof want, d->ndim, d->shape);
    const sft_tensor *t = sft_find(&md->st, d->name);
    if (!t)
      return st_fail(ST_EINPUT, "%s: tensor '%s' is missing (config.json implies shape %s)", dir,
                     d->name, want);
    int same = t->ndim == d->ndim;
    for (int k = 0; same && k < d->ndim; k++) same = t->shape[k] == d->shape[k];
    if (!same) {
      shape_str_(got, sizeof got, t->ndim, t->shape);
      return st_fail(ST_EINPUT, "%s: tensor '%s': config.json implies shape %s, %s holds %s", dir,
                     d->name, want, md->st.paths[t->file], got);
    }
    if (t->dtype != SFT_F32 && t->dtype != SFT_BF16 && t->dtype != SFT_F16 && t->dtype != SFT_F64)
      return st_fail(ST_EINPUT, "%s: tensor '%s': dtype %s in %s, expected F32, BF16 or F16", dir,
                     d->name, sft_dtype_name(t->dtype), md->st.paths[t->file]);
    md->file_t[i] = t;
  }
  md->n_extra = md->st.n - md->tt.n;
  if (md->n_extra > 0) {
    const char *first = NULL;
    for (int j = 0; j < md->st.n && !first; j++)
      if (tensor_table_find(&md->tt, md->st.t[j].name) < 0) first = md->st.t[j].name;
    log_warn("%s: %d stored tensor(s) that config.json does not imply are ignored (e.g. '%s')", dir,
             md->n_extra, first ? first : "?");
  }
  return 0;
}

int model_dir_open(const char *dir, model_dir *md) {
  memset(md, 0, sizeof *md);
  md->dir = xstrdup(dir);
  char *cfg = xasprintf("%s/config.json", dir);
  int rc = model_config_load(cfg, &md->cfg);
  free(cfg);
  if (!rc) rc = tensor_table_build(&md->cfg, &md->tt);
  if (!rc) rc = sft_open(dir, &md->st);
  if (!rc) rc = check_(md);
  if (rc) model_dir_close(md);
  return rc;
}

void model_dir_close(model_dir *md) {
  free(md->dir);
  free(md->file_t);
  tensor_table_free(&md->tt);
  sft_close(&md->st);
  memset(md, 0, sizeof *md);
}

int model_dir_read_f32(const model_dir *md, int i, float *out) {
  if (i < 0 || i >= md->tt.n)
    return st_fail(ST_ERUNTIME, "%s: tensor index %d out of range", md->dir, i);
  const sft_tensor *t = md->file_t[i];
  int rc = sft_read_f32(&md->st, t, 0, t->numel, out);
  return rc ? rc : sft_check_finite(&md->st, t, 0, out, t->numel);
}

/* Shard k of n covers table entries [first[k], first[k+1]). */
static int plan_shards_(const tensor_table *tt, size_t es, uint64_t max_bytes, int *first) {
  int n = 0;
  uint64_t cur = 0;
  for (int i = 0; i < tt->n; i++) {
    uint64_t b = tt->t[i].numel * es;
    if (i == 0 || (cur > 0 && cur + b > max_bytes)) {
      first[n++] = i;
      cur = 0;
    }
    cur += b;
  }
  first[n] = tt->n;
  return n;
}

/* One shard, one tensor in memory at a time. */
static int write_shard_(const char *path, const tensor_table *tt, int lo, int hi, sft_dtype dtype,
                        model_fill_fn fill, void *ctx) {
  sft_out_tensor *o = xcalloc((size_t)(hi - lo), sizeof *o);
  for (int i = lo; i < hi; i++) {
    const tensor_desc *d = &tt->t[i];
    o[i - lo].name = d->name;
    o[i - lo].ndim = d->ndim;
    for (int k = 0; k < d->ndim; k++) o[i - lo].shape[k] = d->shape[k];
  }
  sft_writer *w;
  int rc = sft_writer_open(path, o, hi - lo, dtype, &w);
  for (int i = lo; i < hi && !rc; i++) {
    float *buf = xmalloc((size_t)tt->t[i].numel * sizeof(float) + 1);
    rc = fill(ctx, &tt->t[i], buf);
    if (!rc) rc = sft_writer_put(w, buf);
    free(buf);
  }
  if (!rc)
    rc = sft_writer_close(w);
  else if (w)
    sft_writer_abort(w);
  free(o);
  return rc;
}

sft_dtype model_dir_dtype_of(const model_config *c) {
  if (strcmp(c->torch_dtype, "bfloat16") == 0) return SFT_BF16;
  if (strcmp(c->torch_dtype, "float16") == 0) return SFT_F16;
  return SFT_F32;
}

int model_dir_write(const char *dir, const model_config *c, const tensor_table *tt, sft_dtype dtype,
                    uint64_t max_shard_bytes, model_fill_fn fill, void *ctx) {
  if (dtype != SFT_F32 && dtype != SFT_BF16 && dtype != SFT_F16)
    return st_fail(ST_EINPUT, "%s: cannot write dtype %s", dir, sft_dtype_name(dtype));
  const size_t es = sft_dtype_bytes(dtype);
  int *first = xmalloc(((size_t)tt->n + 2) * sizeof *first);
  int n = plan_shards_(tt, es, max_shard_bytes ? max_shard_bytes : UINT64_MAX, first);
  int rc = 0;
  if (n <= 1) {
    char *p = xasprintf("%s/model.safetensors", dir);
    rc = write_shard_(p, tt, 0, tt->n, dtype, fill, ctx);
    free(p);
  } else {
    json_t *wm = json_object();
    uint64_t total = 0;
    for (int k = 0; k < n && !rc; k++) {
      char *name = xasprintf("model-%05d-of-%05d.safetensors", k + 1, n);
      char *p = xasprintf("%s/%s", dir, name);
      log_info("writing %s (%d tensors)", p, first[k + 1] - first[k]);
      rc = write_shard_(p, tt, first[k], first[k + 1], dtype, fill, ctx);
      for (int j = 0; rc && j < k; j++) { /* a failed export leaves no partial model behind */
        char *q = xasprintf("%s/model-%05d-of-%05d.safetensors", dir, j + 1, n);
        remove(q);
        free(q);
      }
      for (int i = first[k]; i < first[k + 1]; i++) {
        json_object_set_new(wm, tt->t[i].name, json_string(name));
        total += tt->t[i].numel * es;
      }
      free(p);
      free(name);
    }
    if (!rc) {
      json_t *idx = json_object(), *meta = json_object();
      json_object_set_new(meta, "total_size", json_integer((json_int_t)total));
      json_object_set_new(idx, "metadata", meta);
      json_object_set(idx, "weight_map", wm);
      char *p = xasprintf("%s/model.safetensors.index.json", dir);
      char *tmp = xasprintf("%s.tmp", p);
      if (json_dump_file(idx, tmp, JSON_INDENT(2) | JSON_SORT_KEYS) != 0 || rename(tmp, p) != 0)
        rc = st_fail(ST_ERUNTIME, "%s: cannot write the shard index", p);
      free(tmp);
      free(p);
      json_decref(idx);
    }
    json_decref(wm);
  }
  free(first);
  if (rc) return rc;
  model_config cc = *c;
  snprintf(cc.torch_dtype, sizeof cc.torch_dtype, "%s",
           dtype == SFT_F32    ? "float32"
           : dtype == SFT_BF16 ? "bfloat16"
                               : "float16");
  char *p = xasprintf("%s/config.json", dir);
  rc = model_config_save(p, &cc);
  free(p);
  return rc;
}
