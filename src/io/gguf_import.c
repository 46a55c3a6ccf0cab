/* spectrain import: GGUF -> Hugging Face directory (see gguf_import.h). Everything is
 * checked before the first file is written: the config, every tensor's presence, shape and
 * type, and that no tensor is left over. */
#include "io/gguf_import.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/gguf_quant.h"
#include "io/model_dir.h"
#include "model/tensors.h"
#include "util/err.h"
#include "util/fs.h"

/* A float32 metadata value as the shortest decimal that reads back as the same float
 * (1e-05, not 9.999999747378752e-06): what the Hugging Face config of the model says. */
static double short_f32_(double v) {
  const float f = (float)v;
  char buf[32];
  for (int p = 1; p <= 9; p++) {
    snprintf(buf, sizeof buf, "%.*g", p, (double)f);
    if ((float)strtod(buf, NULL) == f) return strtod(buf, NULL);
  }
  return v;
}

static int meta_int_(const gguf_file *g, const char *arch, const char *key, int req, int64_t lo,
                     int64_t *out) {
  char k[128];
  snprintf(k, sizeof k, "%s.%s", arch, key);
  int found;
  int rc = gguf_get_int(g, k, out, &found);
  if (rc) return rc;
  if (!found) return req ? st_fail(ST_EINPUT, "%s: missing metadata key '%s'", g->path, k) : 0;
  if (*out < lo || *out > 0x7fffffff)
    return st_fail(ST_EINPUT, "%s: metadata key '%s' is %lld (expected %lld to 2^31-1)", g->path,
                   k, (long long)*out, (long long)lo);
  return 0;
}

int gguf_model_config(const gguf_file *g, model_config *c) {
  char *arch = NULL;
  int rc = gguf_get_str(g, "general.architecture", &arch, NULL);
  if (rc) return rc;
  if (strcmp(arch, "llama") != 0 && strcmp(arch, "qwen2") != 0 && strcmp(arch, "qwen3") != 0) {
    rc = st_fail(ST_EINPUT,
                 "%s: general.architecture is '%s'; spectrain imports llama (Llama, Mistral, "
                 "SmolLM and kin), qwen2 and qwen3",
                 g->path, arch);
    free(arch);
    return rc;
  }
  int64_t layers = 0, hidden = 0, ffn = 0, heads = 0, kv = -1, ctx = 2048, vocab = -1, hd = -1,
          rot = -1;
  double eps = 1e-5, theta = 10000.0;
  int found;
  if ((rc = meta_int_(g, arch, "block_count", 1, 1, &layers)) ||
      (rc = meta_int_(g, arch, "embedding_length", 1, 1, &hidden)) ||
      (rc = meta_int_(g, arch, "feed_forward_length", 1, 1, &ffn)) ||
      (rc = meta_int_(g, arch, "attention.head_count", 1, 1, &heads)) ||
      (rc = meta_int_(g, arch, "attention.head_count_kv", 0, 1, &kv)) ||
      (rc = meta_int_(g, arch, "context_length", 0, 1, &ctx)) ||
      (rc = meta_int_(g, arch, "vocab_size", 0, 1, &vocab)) ||
      (rc = meta_int_(g, arch, "attention.key_length", 0, 1, &hd)) ||
      (rc = meta_int_(g, arch, "rope.dimension_count", 0, 1, &rot)))
    goto done;
  char k[128];
  snprintf(k, sizeof k, "%s.attention.layer_norm_rms_epsilon", arch);
  if ((rc = gguf_get_float(g, k, &eps, NULL))) goto done;
  snprintf(k, sizeof k, "%s.rope.freq_base", arch);
  if ((rc = gguf_get_float(g, k, &theta, &found))) goto done;
  /* rope scaling: llama.cpp keeps Llama 3.1's in a rope_freqs tensor, others in metadata */
  char *scaling = NULL;
  snprintf(k, sizeof k, "%s.rope.scaling.type", arch);
  if ((rc = gguf_get_str(g, k, &scaling, &found))) goto done;
  if (found && strcmp(scaling, "none") != 0) {
    rc = st_fail(ST_EINPUT, "%s: %s is '%s': rope scaling is not supported by the import", g->path,
                 k, scaling);
    free(scaling);
    goto done;
  }
  free(scaling);
  if (gguf_find_tensor(g, "rope_freqs.weight")) {
    rc = st_fail(ST_EINPUT,
                 "%s: tensor 'rope_freqs.weight' (Llama 3.1-style rope scaling) is not supported "
                 "by the import",
                 g->path);
    goto done;
  }
  if (vocab < 0) {
    const gguf_kv *toks;
    if ((rc = gguf_get_arr(g, "tokenizer.ggml.tokens", GGUF_T_STRING, &toks, &found))) goto done;
    const gguf_tensor *emb = gguf_find_tensor(g, "token_embd.weight");
    if (found) vocab = (int64_t)toks->n;
    else if (emb && emb->n_dims == 2) vocab = emb->ne[1];
    else {
      rc = st_fail(ST_EINPUT, "%s: no %s.vocab_size, tokenizer.ggml.tokens or token_embd.weight "
                   "to take the vocabulary size from", g->path, arch);
      goto done;
    }
  }
  if (kv < 0) kv = heads;
  if (hd < 0) hd = hidden / heads;
  if (rot >= 0 && rot != hd) {
    rc = st_fail(ST_EINPUT, "%s: %s.rope.dimension_count is %lld but the head size is %lld "
                 "(partial rotary embeddings are not supported)", g->path, arch, (long long)rot,
                 (long long)hd);
    goto done;
  }
  int64_t bos = -1, eos = -1;
  if ((rc = gguf_get_int(g, "tokenizer.ggml.bos_token_id", &bos, &found))) goto done;
  if (!found) bos = -1;
  if ((rc = gguf_get_int(g, "tokenizer.ggml.eos_token_id", &eos, &found))) goto done;
  if (!found) eos = -1;
  json_t *o = json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:f,s:b}", "model_type", arch,
                        "hidden_size", (json_int_t)hidden, "intermediate_size", (json_int_t)ffn,
                        "num_hidden_layers", (json_int_t)layers, "num_attention_heads",
                        (json_int_t)heads, "num_key_value_heads", (json_int_t)kv, "head_dim",
                        (json_int_t)hd, "vocab_size", (json_int_t)vocab,
                        "max_position_embeddings", (json_int_t)ctx, "rms_norm_eps",
                        short_f32_(eps), "rope_theta", short_f32_(theta), "tie_word_embeddings",
                        gguf_find_tensor(g, "output.weight") == NULL);
  json_object_set_new(o, "bos_token_id", bos >= 0 ? json_integer(bos) : json_null());
  json_object_set_new(o, "eos_token_id", eos >= 0 ? json_integer(eos) : json_null());
  rc = model_config_from_json(o, g->path, c);
  json_decref(o);
done:
  free(arch);
  return rc;
}

/* The GGUF name of a Hugging Face tensor (llama.cpp's tensor names for llama). */
static void gguf_name_(const tensor_desc *d, char *out, size_t n) {
  static const char *const blk[TK_COUNT] = {
      [TK_ATTN_NORM] = "attn_norm.weight", [TK_Q] = "attn_q.weight", [TK_K] = "attn_k.weight",
      [TK_V] = "attn_v.weight",            [TK_Q_BIAS] = "attn_q.bias", [TK_K_BIAS] = "attn_k.bias",
      [TK_V_BIAS] = "attn_v.bias",         [TK_Q_NORM] = "attn_q_norm.weight",
      [TK_K_NORM] = "attn_k_norm.weight",  [TK_O] = "attn_output.weight",
      [TK_MLP_NORM] = "ffn_norm.weight",   [TK_GATE] = "ffn_gate.weight",
      [TK_UP] = "ffn_up.weight",           [TK_DOWN] = "ffn_down.weight"};
  if (d->kind == TK_EMBED) snprintf(out, n, "token_embd.weight");
  else if (d->kind == TK_FINAL_NORM) snprintf(out, n, "output_norm.weight");
  else if (d->kind == TK_LM_HEAD) snprintf(out, n, "output.weight");
  else snprintf(out, n, "blk.%d.%s", d->layer, blk[d->kind]);
}

void gguf_unpermute_rows(float *w, int n_head, int64_t rows, int64_t cols) {
  const int64_t hd = rows / n_head, half = hd / 2;
  float *tmp = xmalloc((size_t)(hd * cols) * sizeof *tmp);
  for (int h = 0; h < n_head; h++) {
    float *head = w + (size_t)(h * hd * cols);
    memcpy(tmp, head, (size_t)(hd * cols) * sizeof *tmp);
    /* HF row i*half + j  <-  stored row 2j + i */
    for (int i = 0; i < 2; i++)
      for (int64_t j = 0; j < half; j++)
        memcpy(head + (size_t)((i * half + j) * cols), tmp + (size_t)((2 * j + i) * cols),
               (size_t)cols * sizeof *tmp);
  }
  free(tmp);
}

typedef struct {
  const gguf_file *g;
  const model_config *c;
  const gguf_tensor **src; /* [tt.n] */
  const tensor_table *tt;
} fill_ctx_;

static int fill_(void *vctx, const tensor_desc *d, float *out) {
  const fill_ctx_ *x = vctx;
  const int i = (int)(d - x->tt->t);
  const gguf_tensor *t = x->src[i];
  int rc = ggml_dequantize(t->type, t->data, out, t->numel);
  if (rc) return st_fail_ctx(rc, "%s: tensor '%s': ", x->g->path, t->name);
  const int64_t cols = d->ndim == 2 ? d->shape[1] : 1;
  /* only llama's converter (LlamaModel.permute) reorders q/k rows; qwen2/qwen3 keep HF's */
  const int permuted = strcmp(x->c->model_type, "llama") == 0;
  if (permuted && (d->kind == TK_Q || d->kind == TK_Q_BIAS))
    gguf_unpermute_rows(out, x->c->num_attention_heads, d->shape[0], cols);
  else if (permuted && (d->kind == TK_K || d->kind == TK_K_BIAS))
    gguf_unpermute_rows(out, x->c->num_key_value_heads, d->shape[0], cols);
  return 0;
}

/* Match every table tensor to a GGUF tensor of the implied shape and a type we convert. */
static int match_(const gguf_file *g, const tensor_table *tt, const gguf_tensor **src,
                  int *all_bf16) {
  char name[160];
  *all_bf16 = 1;
  int *used = xcalloc((size_t)g->n_tensors + 1, sizeof *used);
  int rc = 0;
  for (int i = 0; i < tt->n && !rc; i++) {
    const tensor_desc *d = &tt->t[i];
    gguf_name_(d, name, sizeof name);
    const gguf_tensor *t = src[i] = gguf_find_tensor(g, name);
    if (!t) {
      rc = st_fail(ST_EINPUT, "%s: no tensor '%s' (for %s)", g->path, name, d->name);
      break;
    }
    used[t - g->t] = 1;
    int same = t->n_dims == d->ndim;
    for (int k = 0; same && k < d->ndim; k++) same = t->ne[d->ndim - 1 - k] == d->shape[k];
    if (!same) {
      char want[64], got[96];
      if (d->ndim == 2)
        snprintf(want, sizeof want, "[%lld, %lld]", (long long)d->shape[1], (long long)d->shape[0]);
      else
        snprintf(want, sizeof want, "[%lld]", (long long)d->shape[0]);
      int o = snprintf(got, sizeof got, "[");
      for (int k = 0; k < t->n_dims; k++)
        o += snprintf(got + o, sizeof got - (size_t)o, "%s%lld", k ? ", " : "", (long long)t->ne[k]);
      snprintf(got + o, sizeof got - (size_t)o, "]");
      rc = st_fail(ST_EINPUT, "%s: tensor '%s' has shape %s (ggml order); the metadata implies %s",
                   g->path, name, got, want);
      break;
    }
    const ggml_type_info *ti = ggml_type_get(t->type);
    if (!ti->dequant) {
      rc = st_fail(ST_EINPUT, "%s: tensor '%s' is %s, which spectrain cannot dequantise (it "
                   "converts %s)", g->path, name, ti->name, ggml_supported_types());
      break;
    }
    if (d->ndim == 2 && t->type != 30) *all_bf16 = 0;
  }
  for (int i = 0; i < g->n_tensors && !rc; i++)
    if (!used[i])
      rc = st_fail(ST_EINPUT, "%s: tensor '%s' is not one the model's config implies (the import "
                   "would have to drop it)", g->path, g->t[i].name);
  free(used);
  return rc;
}

static int exists_(const char *dir, const char *name) {
  char *p = xasprintf("%s/%s", dir, name);
  struct stat st;
  int e = stat(p, &st) == 0;
  free(p);
  return e;
}

int gguf_import(const char *gguf_path, const char *out_dir, const gguf_import_opts *o) {
  gguf_file g;
  int rc = gguf_open(gguf_path, &g);
  if (rc) return rc;
  model_config c;
  tensor_table tt = {0};
  const gguf_tensor **src = NULL;
  int all_bf16 = 0;
  int64_t ctx_len = 0;
  if (!o->tokenizer_only) {
    rc = gguf_model_config(&g, &c);
    if (!rc) rc = tensor_table_build(&c, &tt);
    if (!rc) {
      src = xcalloc((size_t)tt.n + 1, sizeof *src);
      rc = match_(&g, &tt, src, &all_bf16);
    }
    ctx_len = c.max_position_embeddings;
  } else {
    char *arch = NULL;
    int found;
    if (!(rc = gguf_get_str(&g, "general.architecture", &arch, &found)) && found) {
      char k[128];
      snprintf(k, sizeof k, "%s.context_length", arch);
      if (gguf_get_int(&g, k, &ctx_len, &found) || !found) ctx_len = 0;
      st_clear_error();
    }
    free(arch);
  }
  const sft_dtype dtype = o->dtype >= 0 ? (sft_dtype)o->dtype : all_bf16 ? SFT_BF16 : SFT_F32;
  if (!rc) rc = fs_mkdir_p(out_dir);
  if (!rc && !o->force &&
      (exists_(out_dir, "config.json") || exists_(out_dir, "model.safetensors") ||
       exists_(out_dir, "model.safetensors.index.json") ||
       (o->tokenizer_only && exists_(out_dir, "tokenizer.json"))))
    rc = st_fail(ST_EINPUT, "import: %s already holds a model; use another directory or --force",
                 out_dir);
  if (!rc && o->force && !o->tokenizer_only) {
    char *a = xasprintf("%s/model.safetensors", out_dir);
    char *b = xasprintf("%s/model.safetensors.index.json", out_dir);
    remove(a);
    remove(b);
    free(a);
    free(b);
  }
  if (!rc && (o->tokenizer || o->tokenizer_only)) rc = gguf_tokenizer_write(&g, out_dir, ctx_len);
  if (!rc && !o->tokenizer_only) {
    fill_ctx_ fc = {&g, &c, src, &tt};
    rc = model_dir_write(out_dir, &c, &tt, dtype, o->max_shard_bytes, fill_, &fc);
  }
  if (!rc && !o->tokenizer_only) {
    /* what the file held, per type, for the log line */
    char types[512] = "";
    size_t off = 0;
    for (uint32_t id = 0; id < 64; id++) {
      int cnt = 0;
      for (int i = 0; i < g.n_tensors; i++) cnt += g.t[i].type == id;
      if (cnt)
        off += (size_t)snprintf(types + off, sizeof types - off, "%s%s x%d", off ? ", " : "",
                                ggml_type_get(id)->name, cnt);
      if (off >= sizeof types) break;
    }
    log_info("import: %s -> %s: %s, %d layers, %llu parameters; %s -> %s", gguf_path, out_dir,
             c.model_type, c.num_hidden_layers, (unsigned long long)model_config_num_params(&c), types,
             sft_dtype_name(dtype));
  } else if (!rc) {
    log_info("import: %s -> %s: tokenizer.json, tokenizer_config.json", gguf_path, out_dir);
  }
  free(src);
  tensor_table_free(&tt);
  gguf_close(&g);
  return rc;
}
