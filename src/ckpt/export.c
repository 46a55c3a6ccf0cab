/* `spectrain export`: a checkpoint's /params as a Hugging Face model directory, through the
 * io module's model_dir_write (sharding, index, config.json with torch_dtype). Serial: one
 * tensor is read from the checkpoint at a time, checked against its checksum. */
#include <errno.h>
#include <jansson.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt/ckpt.h"
#include "io/model_dir.h"
#include "model/config.h"
#include "util/err.h"
#include "util/finite.h"
#include "util/fs.h"

typedef struct {
  ckpt_reader *r;
  const ckpt_entry *e;
  int n;
  const char *path;
} export_ctx_;

static int fill_(void *vctx, const tensor_desc *d, float *out) {
  const export_ctx_ *c = vctx;
  for (int i = 0; i < c->n; i++)
    if (c->e[i].kind == CKPT_PARAM && strcmp(c->e[i].name, d->name) == 0) {
      if (c->e[i].numel != d->numel)
        return st_fail(ST_EINPUT, "checkpoint %s: /params/%s has %llu elements, config.json "
                       "implies %llu", c->path, d->name, (unsigned long long)c->e[i].numel,
                       (unsigned long long)d->numel);
      int rc = ckpt_reader_read(c->r, &c->e[i], out);
      uint64_t bad = rc ? 0 : finite_first_bad_f32(out, d->numel);
      char at[96];
      if (!rc && bad < d->numel)
        rc = st_fail(ST_EINPUT,
                     "checkpoint %s: /params/%s holds %s at index %s: not exported (a model "
                     "must hold finite numbers; the checkpoint is damaged or older than "
                     "spectrain's refusal to write them: export an earlier one)",
                     c->path, d->name, finite_name(out[bad]),
                     finite_index_str(bad, d->ndim, d->shape, at, sizeof at));
      return rc;
    }
  return st_fail(ST_EINPUT, "checkpoint %s: /params/%s missing (config.json implies it)",
                 c->path, d->name);
}

int ckpt_export(const char *path, const char *out_dir, int dtype_arg,
                uint64_t max_shard_bytes) {
  sft_dtype dtype = SFT_F32;
  ckpt_reader *r;
  ckpt_meta m;
  ckpt_entry *e;
  int n;
  int rc = ckpt_reader_open(path, &r, &m, &e, &n);
  if (rc) return rc;
  model_config cfg;
  tensor_table tt = {0};
  json_error_t je;
  json_t *j = json_loads(m.config_json ? m.config_json : "", 0, &je);
  if (!j) {
    rc = st_fail(ST_EINPUT, "checkpoint %s: /meta/config_json is not JSON: %s (line %d)", path,
                 je.text, je.line);
  } else {
    char *what = xasprintf("%s:/meta/config_json", path);
    rc = model_config_from_json(j, what, &cfg);
    free(what);
    json_decref(j);
  }
  if (!rc) dtype = dtype_arg < 0 ? model_dir_dtype_of(&cfg) : (sft_dtype)dtype_arg;
  if (!rc) rc = tensor_table_build(&cfg, &tt);
  if (!rc) rc = fs_mkdir_p(out_dir);
  if (!rc) {
    export_ctx_ c = {r, e, n, path};
    rc = model_dir_write(out_dir, &cfg, &tt, dtype, max_shard_bytes, fill_, &c);
  }
  if (!rc)
    log_info("exported %s (step %llu, %d tensors, %s) to %s", path, (unsigned long long)m.step,
             tt.n, sft_dtype_name(dtype), out_dir);
  tensor_table_free(&tt);
  free(e);
  ckpt_meta_free(&m);
  ckpt_reader_close(r);
  return rc;
}
