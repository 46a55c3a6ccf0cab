/* Checkpoints on top of the format and the HDF5 files: resume selection, the job check and
 * `inspect` (export is export.c). */
#include "ckpt/ckpt.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpi/comm.h"
#include "util/err.h"
#include "util/mem.h"

int ckpt_resolve_resume(const char *dir, const char *mode, char **path) {
  *path = NULL;
  if (!mode || strcmp(mode, "none") == 0) return 0;
  if (strcmp(mode, "auto") != 0) {
    int rc = ckpt_verify(mode);
    if (rc) return st_fail_ctx(rc, "--resume %s: ", mode);
    *path = xstrdup(mode);
    return 0;
  }
  /* Rank 0 lists the directory and tells the others, so every rank tries the same files. */
  uint64_t *steps = NULL, cnt = 0;
  char **paths = NULL;
  int n = 0;
  if (comm_rank() == 0) {
    ckpt_list(dir, 1, &steps, &paths, &n);
    for (int i = 0; i < n; i++) free(paths[i]);
    free(paths);
    cnt = (uint64_t)n;
  }
  int rc = comm_bcast(&cnt, sizeof cnt, 0);
  if (!rc && comm_rank() != 0) steps = xcalloc(cnt ? cnt : 1, sizeof *steps);
  if (!rc && cnt) rc = comm_bcast(steps, cnt * sizeof *steps, 0);
  for (uint64_t i = 0; i < cnt && !rc && !*path; i++) {
    char *p = xasprintf("%s/ckpt-%llu.h5", dir, (unsigned long long)steps[i]);
    int v = ckpt_verify(p);
    ckpt_meta m = {0};
    if (!v) v = ckpt_read_meta(p, 1, &m);
    /* a copied or renamed file would be taken as newest on every restart, forever */
    if (!v && m.step != steps[i])
      v = st_fail(ST_EINPUT, "%s holds the state after step %llu, not %llu (a renamed or "
                  "copied checkpoint?): not resuming from it",
                  p, (unsigned long long)m.step, (unsigned long long)steps[i]);
    ckpt_meta_free(&m);
    if (v == 0) {
      *path = p;
    } else {
      if (comm_rank() == 0)
        log_warn("%s; falling back to the checkpoint before it", st_errmsg());
      free(p);
    }
  }
  if (!rc && cnt && !*path && comm_rank() == 0)
    log_warn("no checkpoint in %s verifies: starting from the model", dir);
  free(steps);
  return rc;
}

/* ---- job compatibility ------------------------------------------------------------------- */

/* The config.json keys that decide tensor names, shapes and the forward computation. */
static const char *arch_keys_[] = {
    "model_type",          "hidden_size",         "intermediate_size",
    "num_hidden_layers",   "num_attention_heads", "num_key_value_heads",
    "head_dim",            "vocab_size",          "rms_norm_eps",
    "rope_theta",          "rope_scaling",        "attention_bias",
    "tie_word_embeddings", "rope_parameters"};

int ckpt_check_job(const ckpt_meta *ck, const char *config_json, char *const *trainable,
                   int n_trainable) {
  static const char *hint =
      " (resume from a checkpoint of this job, start over with --resume none, or set the "
      "job's checkpoint.take_from_checkpoint: true to take the checkpoint's)";
  json_error_t je;
  json_t *a = json_loads(ck->config_json ? ck->config_json : "", 0, &je);
  json_t *b = json_loads(config_json ? config_json : "", 0, &je);
  int rc = 0;
  if (!a || !b || !json_is_object(a) || !json_is_object(b)) {
    rc = st_fail(ST_EINPUT, "checkpoint: %s config.json is not a JSON object",
                 !a || !json_is_object(a) ? "the checkpoint's" : "the job's");
  } else {
    for (size_t i = 0; i < sizeof arch_keys_ / sizeof *arch_keys_ && !rc; i++) {
      json_t *x = json_object_get(a, arch_keys_[i]), *y = json_object_get(b, arch_keys_[i]);
      if (x && json_is_null(x)) x = NULL;
      if (y && json_is_null(y)) y = NULL;
      if ((!x && !y) || (x && y && json_equal(x, y))) continue;
      char *xs = x ? json_dumps(x, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
      char *ys = y ? json_dumps(y, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
      rc = st_fail(ST_EINPUT,
                   "checkpoint model config differs from the job's: '%s' is %s in the "
                   "checkpoint, %s in the job%s",
                   arch_keys_[i], xs ? xs : "absent", ys ? ys : "absent", hint);
      free(xs);
      free(ys);
    }
  }
  json_decref(a);
  json_decref(b);
  if (rc) return rc;
  /* trainable sets: report the first name in one and not the other */
  for (int pass = 0; pass < 2; pass++) {
    char *const *p = pass ? trainable : ck->trainable;
    char *const *q = pass ? ck->trainable : trainable;
    int np = pass ? n_trainable : ck->n_trainable, nq = pass ? ck->n_trainable : n_trainable;
    for (int i = 0; i < np; i++) {
      int found = 0;
      for (int j = 0; j < nq && !found; j++) found = strcmp(p[i], q[j]) == 0;
      if (!found)
        return st_fail(ST_EINPUT,
                       "checkpoint trainable set differs from the job's: '%s' is trainable in "
                       "the %s only (%d trainable tensors in the checkpoint, %d in the job)%s",
                       p[i], pass ? "job" : "checkpoint", ck->n_trainable, n_trainable, hint);
    }
  }
  return 0;
}

/* ---- inspect ------------------------------------------------------------------------------ */

static int is_trainable_(const ckpt_meta *m, const char *name) {
  for (int j = 0; j < m->n_trainable; j++)
    if (strcmp(m->trainable[j], name) == 0) return 1;
  return 0;
}

static json_t *inspect_json_(const char *path, const ckpt_meta *m, const ckpt_entry *e, int n,
                             int tensors, const uint64_t *bytes, uint64_t numel_train,
                             uint64_t numel_all) {
  json_t *o = json_object();
  json_object_set_new(o, "path", json_string(path));
  json_object_set_new(o, "kind", json_string("checkpoint"));
  json_object_set_new(o, "format_version", json_integer(CKPT_FORMAT_VERSION));
  json_object_set_new(o, "step", json_integer((json_int_t)m->step));
  json_object_set_new(o, "tokens_seen", json_integer((json_int_t)m->tokens_seen));
  json_object_set_new(o, "data_seed", json_integer((json_int_t)m->data_seed));
  json_object_set_new(o, "data_epoch", json_integer((json_int_t)m->data_epoch));
  json_object_set_new(o, "data_sample_index", json_integer((json_int_t)m->data_sample));
  json_object_set_new(o, "global_batch_size", json_integer((json_int_t)m->global_batch));
  json_object_set_new(o, "lr", json_real(m->lr));
  json_object_set_new(o, "elapsed_s", json_real(m->elapsed_s));
  json_object_set_new(o, "world_size", json_integer(m->world_size));
  json_object_set_new(o, "have_master", json_boolean(m->have_master));
  json_object_set_new(o, "trainable_params", json_integer((json_int_t)numel_train));
  json_object_set_new(o, "total_params", json_integer((json_int_t)numel_all));
  json_t *tr = json_array();
  for (int j = 0; j < m->n_trainable; j++) json_array_append_new(tr, json_string(m->trainable[j]));
  json_object_set_new(o, "trainable", tr);
  json_t *gb = json_object();
  for (int k = 0; k < CKPT_NKINDS; k++)
    if (bytes[k]) json_object_set_new(gb, ckpt_kind_group((ckpt_kind)k), json_integer((json_int_t)bytes[k]));
  json_object_set_new(o, "bytes_by_group", gb);
  json_object_set_new(o, "has_snr_table", json_boolean(m->snr_json != NULL));
  if (tensors) {
    json_t *arr = json_array();
    for (int i = 0; i < n; i++) {
      json_t *x = json_object(), *sh = json_array();
      for (int d = 0; d < e[i].ndim; d++) json_array_append_new(sh, json_integer(e[i].shape[d]));
      json_object_set_new(x, "group", json_string(ckpt_kind_group(e[i].kind)));
      json_object_set_new(x, "name", json_string(e[i].name));
      json_object_set_new(x, "shape", sh);
      json_object_set_new(x, "bytes", json_integer((json_int_t)(e[i].numel * sizeof(float))));
      json_array_append_new(arr, x);
    }
    json_object_set_new(o, "tensors", arr);
  }
  return o;
}

int ckpt_inspect(const char *path, int tensors, int as_json) {
  ckpt_reader *r;
  ckpt_meta m;
  ckpt_entry *e;
  int n;
  int rc = ckpt_reader_open(path, &r, &m, &e, &n);
  if (rc) return rc;
  char hb[32];
  uint64_t bytes[CKPT_NKINDS] = {0}, numel_train = 0, numel_all = 0;
  int count[CKPT_NKINDS] = {0};
  for (int i = 0; i < n; i++) {
    bytes[e[i].kind] += e[i].numel * sizeof(float);
    count[e[i].kind]++;
    if (e[i].kind == CKPT_PARAM) numel_all += e[i].numel;
    if (e[i].kind == CKPT_PARAM && is_trainable_(&m, e[i].name)) numel_train += e[i].numel;
  }
  if (as_json) {
    json_t *o = inspect_json_(path, &m, e, n, tensors, bytes, numel_train, numel_all);
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
    printf("%s\n", s);
    free(s);
    json_decref(o);
  } else {
    printf("%s: spectrain checkpoint (format %d)\n", path, CKPT_FORMAT_VERSION);
    printf("  step %llu, tokens seen %llu, lr %.6g, global batch %llu, written by %d rank(s)\n",
           (unsigned long long)m.step, (unsigned long long)m.tokens_seen, m.lr,
           (unsigned long long)m.global_batch, m.world_size);
    printf("  data position: seed %llu, epoch %llu, next sample %llu\n",
           (unsigned long long)m.data_seed, (unsigned long long)m.data_epoch,
           (unsigned long long)m.data_sample);
    printf("  trainable: %d tensors, %llu of %llu parameters (%.2f %%)%s\n", m.n_trainable,
           (unsigned long long)numel_train, (unsigned long long)numel_all,
           numel_all ? 100.0 * (double)numel_train / (double)numel_all : 0.0,
           m.have_master ? ", with fp32 master copy" : "");
    printf("  job file %zu bytes, config.json %zu bytes, SNR table %s\n",
           m.job_text ? strlen(m.job_text) : 0, m.config_json ? strlen(m.config_json) : 0,
           m.snr_json ? "yes" : "no");
    for (int k = 0; k < CKPT_NKINDS; k++)
      if (count[k])
        printf("  %-9s %4d tensors %12s\n", ckpt_kind_group((ckpt_kind)k), count[k],
               mem_human(bytes[k], hb, sizeof hb));
    if (tensors) {
      printf("\n  %-9s %-52s %-14s %11s  %s\n", "group", "tensor", "shape", "size", "trainable");
      for (int i = 0; i < n; i++) {
        char shape[40];
        if (e[i].ndim == 2)
          snprintf(shape, sizeof shape, "(%lld, %lld)", (long long)e[i].shape[0],
                   (long long)e[i].shape[1]);
        else
          snprintf(shape, sizeof shape, "(%lld)", (long long)e[i].shape[0]);
        printf("  %-9s %-52s %-14s %11s  %s\n", ckpt_kind_group(e[i].kind), e[i].name, shape,
               mem_human(e[i].numel * sizeof(float), hb, sizeof hb),
               is_trainable_(&m, e[i].name) ? "yes" : "no");
      }
    }
  }
  free(e);
  ckpt_meta_free(&m);
  ckpt_reader_close(r);
  return 0;
}
