/* spectrain inspect: what a model directory (or a bare .safetensors file) holds. The path
 * is classified first, so checkpoints (HDF5) can be routed to their own inspector. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "commands.h"
#include "io/model_dir.h"
#include "spectrum/snr.h"
#include "util/err.h"
#include "ckpt/ckpt.h"
#include "util/mem.h"
#include "util/opt.h"

typedef enum { PATH_MODEL_DIR, PATH_SAFETENSORS, PATH_HDF5, PATH_OTHER } path_kind_;

static int has_file_(const char *dir, const char *name) {
  char *p = xasprintf("%s/%s", dir, name);
  struct stat st;
  int e = stat(p, &st) == 0 && S_ISREG(st.st_mode);
  free(p);
  return e;
}

static path_kind_ classify_(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) return PATH_OTHER;
  if (S_ISDIR(st.st_mode)) return has_file_(path, "config.json") ? PATH_MODEL_DIR : PATH_OTHER;
  unsigned char sig[8] = {0};
  FILE *f = fopen(path, "rb");
  size_t n = f ? fread(sig, 1, 8, f) : 0;
  if (f) fclose(f);
  if (n == 8 && memcmp(sig, "\x89HDF\r\n\x1a\n", 8) == 0) return PATH_HDF5;
  size_t len = strlen(path);
  if (len > 12 && strcmp(path + len - 12, ".safetensors") == 0) return PATH_SAFETENSORS;
  return PATH_OTHER;
}

/* Spectrum's module type: the part of the module name after its first all-digit dotted
 * component, or the whole name (docs/spectrum-method.md §1). The module is the tensor name
 * without ".weight"/".bias", so a bias counts with its projection. */
static void module_type_(const char *tensor, char *out, size_t len) {
  char mod[256];
  snprintf(mod, sizeof mod, "%s", tensor);
  size_t n = strlen(mod);
  if (n > 7 && strcmp(mod + n - 7, ".weight") == 0)
    mod[n - 7] = '\0';
  else if (n > 5 && strcmp(mod + n - 5, ".bias") == 0)
    mod[n - 5] = '\0';
  char *type = snr_module_type(mod); /* the scan's rule, so inspect and analyze agree */
  snprintf(out, len, "%s", type);
  free(type);
}

typedef struct {
  char type[160];
  uint64_t params;
} type_count_;

typedef struct {
  int n;
  type_count_ *t;
} type_counts_;

static void count_(type_counts_ *tc, const char *tensor, uint64_t numel) {
  char ty[160];
  module_type_(tensor, ty, sizeof ty);
  for (int i = 0; i < tc->n; i++)
    if (strcmp(tc->t[i].type, ty) == 0) {
      tc->t[i].params += numel;
      return;
    }
  tc->t = xrealloc(tc->t, (size_t)(tc->n + 1) * sizeof *tc->t);
  snprintf(tc->t[tc->n].type, sizeof tc->t[tc->n].type, "%s", ty);
  tc->t[tc->n++].params = numel;
}

static void shape_str_(char *buf, size_t len, const sft_tensor *t) {
  size_t n = (size_t)snprintf(buf, len, "[");
  for (int d = 0; d < t->ndim && n < len; d++)
    n += (size_t)snprintf(buf + n, len - n, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
  if (n < len) snprintf(buf + n, len - n, "]");
}

static const char *human_(uint64_t n, char *buf, size_t len) {
  if (n >= 1000000000ULL)
    snprintf(buf, len, "%.2fB", (double)n / 1e9);
  else if (n >= 1000000ULL)
    snprintf(buf, len, "%.2fM", (double)n / 1e6);
  else if (n >= 1000ULL)
    snprintf(buf, len, "%.1fK", (double)n / 1e3);
  else
    snprintf(buf, len, "%llu", (unsigned long long)n);
  return buf;
}

static json_t *config_json_(const model_config *c) {
  json_t *o = json_object();
  json_object_set_new(o, "model_type", json_string(c->model_type));
  json_object_set_new(o, "hidden_size", json_integer(c->hidden_size));
  json_object_set_new(o, "intermediate_size", json_integer(c->intermediate_size));
  json_object_set_new(o, "num_hidden_layers", json_integer(c->num_hidden_layers));
  json_object_set_new(o, "num_attention_heads", json_integer(c->num_attention_heads));
  json_object_set_new(o, "num_key_value_heads", json_integer(c->num_key_value_heads));
  json_object_set_new(o, "head_dim", json_integer(c->head_dim));
  json_object_set_new(o, "vocab_size", json_integer(c->vocab_size));
  json_object_set_new(o, "max_position_embeddings", json_integer(c->max_position_embeddings));
  json_object_set_new(o, "rms_norm_eps", json_real(c->rms_norm_eps));
  json_object_set_new(o, "rope_theta", json_real(c->rope_theta));
  json_object_set_new(o, "rope_type",
                      json_string(c->rope_scaling.type == ROPE_LLAMA3 ? "llama3" : "default"));
  json_object_set_new(o, "attention_bias", json_boolean(c->attention_bias));
  json_object_set_new(o, "qk_norm", json_boolean(c->qk_norm));
  json_object_set_new(o, "tie_word_embeddings", json_boolean(c->tie_word_embeddings));
  return o;
}

/* Report on tensors in model order: `order` lists indices into st->t (table order first,
 * then tensors the config does not imply); cfg may be NULL (bare safetensors file). */
static int report_(const char *path, const model_config *cfg, const sft_model *st, const int *order,
                   int n, int tensors, int as_json) {
  type_counts_ tc = {0, NULL};
  uint64_t total = 0, bytes = 0;
  for (int k = 0; k < n; k++) {
    const sft_tensor *t = &st->t[order[k]];
    count_(&tc, t->name, t->numel);
    total += t->numel;
    bytes += t->bytes;
  }
  char b1[64], b2[64];
  if (as_json) {
    json_t *o = json_object();
    json_object_set_new(o, "path", json_string(path));
    json_object_set_new(o, "kind", json_string(cfg ? "model" : "safetensors"));
    if (cfg) json_object_set_new(o, "config", config_json_(cfg));
    json_t *files = json_array();
    for (int i = 0; i < st->nfiles; i++) json_array_append_new(files, json_string(st->paths[i]));
    json_object_set_new(o, "files", files);
    if (tensors) {
      json_t *arr = json_array();
      for (int k = 0; k < n; k++) {
        const sft_tensor *t = &st->t[order[k]];
        json_t *e = json_object(), *sh = json_array();
        for (int d = 0; d < t->ndim; d++) json_array_append_new(sh, json_integer(t->shape[d]));
        json_object_set_new(e, "name", json_string(t->name));
        json_object_set_new(e, "shape", sh);
        json_object_set_new(e, "dtype", json_string(sft_dtype_name(t->dtype)));
        json_object_set_new(e, "bytes", json_integer((json_int_t)t->bytes));
        json_object_set_new(e, "file", json_string(st->paths[t->file]));
        json_array_append_new(arr, e);
      }
      json_object_set_new(o, "tensors", arr);
    }
    json_t *pt = json_object();
    for (int i = 0; i < tc.n; i++)
      json_object_set_new(pt, tc.t[i].type, json_integer((json_int_t)tc.t[i].params));
    json_object_set_new(o, "params_by_type", pt);
    json_object_set_new(o, "total_params", json_integer((json_int_t)total));
    json_object_set_new(o, "total_bytes", json_integer((json_int_t)bytes));
    json_object_set_new(o, "n_tensors", json_integer(n));
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
    printf("%s\n", s);
    free(s);
    json_decref(o);
  } else {
    printf("%s\n", path);
    if (cfg) {
      printf(
          "  model_type %s: hidden_size %d, intermediate_size %d, num_hidden_layers %d,\n"
          "  num_attention_heads %d, num_key_value_heads %d, head_dim %d, vocab_size %d\n"
          "  rms_norm_eps %g, rope_theta %g, rope %s",
          cfg->model_type, cfg->hidden_size, cfg->intermediate_size, cfg->num_hidden_layers,
          cfg->num_attention_heads, cfg->num_key_value_heads, cfg->head_dim, cfg->vocab_size,
          cfg->rms_norm_eps, cfg->rope_theta,
          cfg->rope_scaling.type == ROPE_LLAMA3 ? "llama3" : "default");
      if (cfg->rope_scaling.type == ROPE_LLAMA3)
        printf(" (factor %g, low_freq_factor %g, high_freq_factor %g, original %d)",
               cfg->rope_scaling.factor, cfg->rope_scaling.low_freq_factor,
               cfg->rope_scaling.high_freq_factor,
               cfg->rope_scaling.original_max_position_embeddings);
      printf("\n  attention_bias %s, qk_norm %s, tie_word_embeddings %s\n",
             cfg->attention_bias ? "yes" : "no", cfg->qk_norm ? "yes" : "no",
             cfg->tie_word_embeddings ? "yes" : "no");
    }
    printf("  %d file(s), %d tensors, %s\n", st->nfiles, n, mem_human(bytes, b1, sizeof b1));
    if (tensors) {
      printf("\n  %-56s %-16s %-5s %12s\n", "tensor", "shape", "dtype", "bytes");
      for (int k = 0; k < n; k++) {
        const sft_tensor *t = &st->t[order[k]];
        char sh[96];
        shape_str_(sh, sizeof sh, t);
        printf("  %-56s %-16s %-5s %12llu\n", t->name, sh, sft_dtype_name(t->dtype),
               (unsigned long long)t->bytes);
      }
    }
    printf("\n  %-32s %16s %8s\n", "parameters by type", "count", "share");
    for (int i = 0; i < tc.n; i++)
      printf("  %-32s %16llu %7.2f%%\n", tc.t[i].type, (unsigned long long)tc.t[i].params,
             total ? 100.0 * (double)tc.t[i].params / (double)total : 0.0);
    printf("  %-32s %16llu (%s)\n", "total", (unsigned long long)total,
           human_(total, b2, sizeof b2));
  }
  free(tc.t);
  return 0;
}

static int inspect_model_dir_(const char *path, int tensors, int as_json) {
  model_dir md;
  int rc = model_dir_open(path, &md);
  if (rc) return rc;
  /* model order: the table, then whatever the config does not imply (sorted by name) */
  int *order = xmalloc(((size_t)md.st.n + 1) * sizeof *order);
  int n = 0;
  for (int i = 0; i < md.tt.n; i++) order[n++] = (int)(md.file_t[i] - md.st.t);
  for (int j = 0; j < md.st.n; j++)
    if (tensor_table_find(&md.tt, md.st.t[j].name) < 0) order[n++] = j;
  rc = report_(path, &md.cfg, &md.st, order, n, tensors, as_json);
  free(order);
  model_dir_close(&md);
  return rc;
}

static int inspect_safetensors_(const char *path, int tensors, int as_json) {
  sft_model st;
  int rc = sft_open(path, &st);
  if (rc) return rc;
  int *order = xmalloc(((size_t)st.n + 1) * sizeof *order);
  for (int j = 0; j < st.n; j++) order[j] = j; /* by name: no config to order by */
  rc = report_(path, NULL, &st, order, st.n, tensors, as_json);
  free(order);
  sft_close(&st);
  return rc;
}

/* Checkpoints (HDF5): the checkpoint module reads and prints them. */
static int inspect_checkpoint_(const char *path, int tensors, int as_json) {
  return ckpt_inspect(path, tensors, as_json);
}

int cmd_inspect(int argc, char **argv) {
  static const opt_cmd cmd = {
      "inspect", "PATH", 1, 1,
      "show the architecture, tensors and parameter counts of a model directory or checkpoint",
      "PATH is a Hugging Face model directory (config.json + model.safetensors or a sharded\n"
      "index), a single .safetensors file, or a checkpoint (ckpt-STEP.h5: step, tokens seen,\n"
      "data position, trainable set, bytes per group; layout in docs/checkpoints.md).\nThe directory is checked as training would check\n"
      "it: every tensor config.json implies must be present with its shape. Parameter counts\n"
      "are grouped by module type as Spectrum groups them (the name after the layer number)."};
  int tensors = 0, as_json = 0;
  const opt_spec specs[] = {
      {"tensors", OPT_FLAG, NULL, "list every tensor (name, shape, dtype, bytes)", &tensors},
      {"json", OPT_FLAG, NULL, "print one JSON object instead of text", &as_json},
  };
  int np;
  char **pos;
  int rc = opt_parse(&cmd, specs, 2, argc, argv, &np, &pos);
  if (rc) return rc == OPT_HELP_SHOWN ? rc : st_report(rc);
  const char *path = pos[0];
  if (log_rank() == 0) {
    switch (classify_(path)) {
      case PATH_MODEL_DIR:
        rc = inspect_model_dir_(path, tensors, as_json);
        break;
      case PATH_SAFETENSORS:
        rc = inspect_safetensors_(path, tensors, as_json);
        break;
      case PATH_HDF5:
        rc = inspect_checkpoint_(path, tensors, as_json);
        break;
      default: {
        struct stat st;
        if (stat(path, &st) != 0)
          rc = st_fail(ST_EINPUT, "%s: no such file or directory", path);
        else
          rc = st_fail(ST_EINPUT,
                       "%s: not a model directory (expected config.json with "
                       "model.safetensors or model.safetensors.index.json) nor a .safetensors file",
                       path);
      }
    }
  }
  free(pos);
  return rc ? st_report(rc) : 0;
}
