/* spectrain init: write a randomly initialised Hugging Face model directory. */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "commands.h"
#include "io/model_dir.h"
#include "util/err.h"
#include "util/fs.h"
#include "util/hash.h"
#include "util/opt.h"
#include "util/rng.h"

/* Keys --set may change (those model_config reads); rope_scaling.<x> for its fields. */
/* clang-format off */
static const char *const settable_[] = {
    "model_type", "hidden_size", "intermediate_size", "num_hidden_layers",
    "num_attention_heads", "num_key_value_heads", "head_dim", "vocab_size",
    "max_position_embeddings", "rms_norm_eps", "rope_theta", "rope_scaling",
    "tie_word_embeddings", "attention_bias", "initializer_range", "bos_token_id",
    "eos_token_id", "sliding_window", "torch_dtype",
    "rope_scaling.rope_type", "rope_scaling.factor", "rope_scaling.low_freq_factor",
    "rope_scaling.high_freq_factor", "rope_scaling.original_max_position_embeddings"};
/* clang-format on */
#define N_SETTABLE ((int)(sizeof settable_ / sizeof settable_[0]))

static int apply_set_(json_t *o, const char *kv) {
  const char *eq = strchr(kv, '=');
  if (!eq || eq == kv) return st_fail(ST_EINPUT, "init: --set expects key=value, found '%s'", kv);
  char key[128];
  snprintf(key, sizeof key, "%.*s", (int)(eq - kv), kv);
  int known = 0, best = 0, bestd = 1 << 30;
  for (int i = 0; i < N_SETTABLE; i++) {
    if (strcmp(key, settable_[i]) == 0) known = 1;
    int d = opt_edit_distance(key, settable_[i]);
    if (d < bestd) bestd = d, best = i;
  }
  if (!known) {
    if (bestd <= 3)
      return st_fail(ST_EINPUT, "init: --set %s: unknown config key '%s' (did you mean '%s'?)", kv,
                     key, settable_[best]);
    return st_fail(ST_EINPUT, "init: --set %s: unknown config key '%s'", kv, key);
  }
  /* The value is JSON when it parses as JSON (4, 1e-5, true, null, {...}), else a string. */
  json_t *v = json_loads(eq + 1, JSON_DECODE_ANY, NULL);
  if (!v) v = json_string(eq + 1);
  /* transformers 5 files keep rope fields in rope_parameters: change them there. */
  json_t *rp = json_object_get(o, "rope_parameters");
  const char *dot = strchr(key, '.');
  if (json_is_object(rp) && (dot || strcmp(key, "rope_theta") == 0)) {
    json_object_set_new(rp, dot ? dot + 1 : key, v);
    return 0;
  }
  if (dot) {
    json_t *rs = json_object_get(o, "rope_scaling");
    if (!json_is_object(rs)) {
      rs = json_object();
      json_object_set_new(o, "rope_scaling", rs);
    }
    json_object_set_new(rs, dot + 1, v);
    return 0;
  }
  json_object_set_new(o, key, v);
  return 0;
}

/* "5GB", "500MB", "64KB", "1000" (decimal units, as transformers' max_shard_size). */
static int parse_bytes_(const char *s, uint64_t *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  uint64_t mul = 1;
  if (strcmp(end, "KB") == 0 || strcmp(end, "kB") == 0)
    mul = 1000ULL;
  else if (strcmp(end, "MB") == 0)
    mul = 1000000ULL;
  else if (strcmp(end, "GB") == 0)
    mul = 1000000000ULL;
  else if (strcmp(end, "KiB") == 0)
    mul = 1ULL << 10;
  else if (strcmp(end, "MiB") == 0)
    mul = 1ULL << 20;
  else if (strcmp(end, "GiB") == 0)
    mul = 1ULL << 30;
  else if (*end)
    mul = 0;
  if (errno || end == s || mul == 0 || !(v > 0))
    return st_fail(ST_EINPUT,
                   "init: --max-shard-bytes: expected a size such as 5GB, 500MB or "
                   "1000000, found '%s'",
                   s);
  *out = (uint64_t)(v * (double)mul);
  return 0;
}

typedef struct {
  uint64_t seed;
  double std;
} init_ctx_;

/* transformers' _init_weights for these models: normal(0, initializer_range) for linear
 * and embedding weights, zeros for biases, ones for RMSNorm weights. Each tensor draws from
 * its own stream keyed by its name, so the values do not depend on sharding or order. */
static int fill_init_(void *vctx, const tensor_desc *d, float *out) {
  const init_ctx_ *c = vctx;
  switch (d->kind) {
    case TK_ATTN_NORM:
    case TK_MLP_NORM:
    case TK_FINAL_NORM:
    case TK_Q_NORM:
    case TK_K_NORM:
      for (uint64_t i = 0; i < d->numel; i++) out[i] = 1.0f;
      return 0;
    case TK_Q_BIAS:
    case TK_K_BIAS:
    case TK_V_BIAS:
      memset(out, 0, (size_t)d->numel * sizeof *out);
      return 0;
    default:
      break;
  }
  rng_t r;
  rng_seed3(&r, c->seed, hash64_str(HASH64_INIT, d->name), 0);
  for (uint64_t i = 0; i < d->numel; i++) out[i] = (float)(c->std * rng_normal(&r));
  return 0;
}

static int exists_(const char *dir, const char *name) {
  char *p = xasprintf("%s/%s", dir, name);
  struct stat st;
  int e = stat(p, &st) == 0;
  free(p);
  return e;
}

int cmd_init(int argc, char **argv) {
  static const opt_cmd cmd = {
      "init",
      "--out DIR (--preset NAME | --config FILE)",
      0,
      0,
      "write a randomly initialised model directory (config.json + safetensors)",
      "Weights are drawn as transformers initialises these models: normal(0, initializer_range)\n"
      "for projections and embeddings, ones for RMSNorm weights, zeros for biases. The values\n"
      "depend only on --seed and the tensor names. Presets: tiny-llama, tiny-qwen3, tiny-qwen2,\n"
      "llama-3.1-8b, qwen3-8b. Only rank 0 writes.\n"
      "Example: spectrain init --out /tmp/m --preset tiny-llama --set num_hidden_layers=2"};
  const char *out = NULL, *config = NULL, *preset = NULL, *dtype_s = NULL, *shard_s = "5GB";
  long seed = 0;
  int force = 0;
  opt_list sets = {0, NULL};
  const opt_spec specs[] = {
      {"out", OPT_STR, "DIR", "model directory to write (created if missing)", &out},
      {"preset", OPT_STR, "NAME", "built-in architecture (see below)", &preset},
      {"config", OPT_STR, "FILE", "a config.json to take the architecture from", &config},
      {"set", OPT_MULTI, "KEY=VALUE",
       "override a config key, e.g. num_hidden_layers=2 or "
       "rope_scaling.factor=8",
       &sets},
      {"seed", OPT_INT, "N", "random seed (default 0)", &seed},
      {"dtype", OPT_STR, "f32|bf16|f16",
       "stored dtype (default: the config's torch_dtype, "
       "else f32)",
       &dtype_s},
      {"max-shard-bytes", OPT_STR, "SIZE",
       "split into shards above this size, e.g. 500MB "
       "(default 5GB, as transformers)",
       &shard_s},
      {"force", OPT_FLAG, NULL, "replace a model already in DIR", &force},
  };
  int np;
  char **pos;
  int rc = opt_parse(&cmd, specs, (int)(sizeof specs / sizeof specs[0]), argc, argv, &np, &pos);
  if (rc) {
    opt_list_free(&sets);
    return rc == OPT_HELP_SHOWN ? rc : st_report(rc);
  }
  free(pos);
  json_t *o = NULL;
  const char *what = config ? config : preset;
  uint64_t shard_bytes = 0;
  model_config c;
  tensor_table tt = {0};
  if (!out) {
    rc = st_fail(ST_EINPUT, "init: --out DIR is required");
  } else if (!config == !preset) {
    rc = st_fail(ST_EINPUT, "init: give exactly one of --preset NAME or --config FILE");
  } else if (preset) {
    const char *js = model_config_preset_json(preset);
    if (!js)
      rc = st_fail(ST_EINPUT, "init: --preset '%s': expected one of %s", preset,
                   model_config_preset_names());
    else
      o = json_loads(js, 0, NULL);
  } else {
    json_error_t e;
    o = json_load_file(config, JSON_REJECT_DUPLICATES, &e);
    if (!o)
      rc = st_fail(ST_EINPUT, "%s: line %d column %d: invalid JSON: %s", config, e.line, e.column,
                   e.text);
  }
  for (int i = 0; !rc && i < sets.n; i++) rc = apply_set_(o, sets.v[i]);
  if (!rc) rc = model_config_from_json(o, what, &c);
  if (!rc) rc = parse_bytes_(shard_s, &shard_bytes);
  sft_dtype dtype = SFT_F32;
  if (!rc) {
    const char *d = dtype_s                                  ? dtype_s
                    : strcmp(c.torch_dtype, "bfloat16") == 0 ? "bf16"
                    : strcmp(c.torch_dtype, "float16") == 0  ? "f16"
                                                             : "f32";
    if (strcmp(d, "f32") == 0)
      dtype = SFT_F32;
    else if (strcmp(d, "bf16") == 0)
      dtype = SFT_BF16;
    else if (strcmp(d, "f16") == 0)
      dtype = SFT_F16;
    else
      rc = st_fail(ST_EINPUT, "init: --dtype: expected f32, bf16 or f16, found '%s'", d);
  }
  if (!rc) rc = tensor_table_build(&c, &tt);
  if (!rc && log_rank() == 0) {
    if (!(rc = fs_mkdir_p(out)) && !force &&
        (exists_(out, "config.json") || exists_(out, "model.safetensors") ||
         exists_(out, "model.safetensors.index.json")))
      rc = st_fail(ST_EINPUT,
                   "init: %s already holds a model (config.json or model.safetensors); "
                   "use another --out or --force",
                   out);
    if (!rc && force) { /* drop an older single-file/sharded layout so only ours remains */
      char *a = xasprintf("%s/model.safetensors", out);
      char *b = xasprintf("%s/model.safetensors.index.json", out);
      remove(a);
      remove(b);
      free(a);
      free(b);
    }
    init_ctx_ ctx = {(uint64_t)seed, c.initializer_range};
    if (!rc) rc = model_dir_write(out, &c, &tt, dtype, shard_bytes, fill_init_, &ctx);
    if (!rc) {
      log_info("init: wrote %s: %s, %d layers, %llu parameters, %s, seed %ld", out, c.model_type,
               c.num_hidden_layers, (unsigned long long)model_config_num_params(&c),
               sft_dtype_name(dtype), seed);
    }
  }
  tensor_table_free(&tt);
  json_decref(o);
  opt_list_free(&sets);
  return rc ? st_report(rc) : 0;
}
