/* config.json (Hugging Face) <-> model_config.
 *
 * Defaults are those of transformers' LlamaConfig / MistralConfig / Qwen2Config /
 * Qwen3Config, so a minimal hand-written config means what it would mean there. */
#include "model/config.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"
#include "util/fs.h"

static const char *const supported_[] = {"llama", "mistral", "qwen2", "qwen3"};
#define N_SUPPORTED ((int)(sizeof supported_ / sizeof supported_[0]))

const char *model_config_supported_types(void) { return "llama, mistral, qwen2, qwen3"; }

static const char *json_type_name_(const json_t *v) {
  switch (json_typeof(v)) {
    case JSON_OBJECT:
      return "an object";
    case JSON_ARRAY:
      return "an array";
    case JSON_STRING:
      return "a string";
    case JSON_INTEGER:
      return "an integer";
    case JSON_REAL:
      return "a number with a fraction";
    case JSON_TRUE:
    case JSON_FALSE:
      return "a boolean";
    case JSON_NULL:
      return "null";
  }
  return "something else";
}

/* Optional integer: missing or null -> *out unchanged (the default). `req` makes it required. */
static int get_int_(const json_t *o, const char *key, const char *what, int req, int *out) {
  json_t *v = json_object_get(o, key);
  if (!v || json_is_null(v)) {
    if (req) return st_fail(ST_EINPUT, "%s: missing key '%s' (expected an integer)", what, key);
    return 0;
  }
  double d = json_is_real(v) ? json_real_value(v) : 0;
  if (json_is_integer(v)) {
    json_int_t x = json_integer_value(v);
    if (x < -2147483647LL || x > 2147483647LL)
      return st_fail(ST_EINPUT, "%s: key '%s': expected a 32-bit integer, found %lld", what, key,
                     (long long)x);
    *out = (int)x;
    return 0;
  }
  if (json_is_real(v) && d == floor(d) && fabs(d) < 2147483647.0) { /* 8192.0 */
    *out = (int)d;
    return 0;
  }
  return st_fail(ST_EINPUT, "%s: key '%s': expected an integer, found %s", what, key,
                 json_type_name_(v));
}

static int get_double_(const json_t *o, const char *key, const char *what, int req, double *out) {
  json_t *v = json_object_get(o, key);
  if (!v || json_is_null(v)) {
    if (req) return st_fail(ST_EINPUT, "%s: missing key '%s' (expected a number)", what, key);
    return 0;
  }
  if (!json_is_number(v))
    return st_fail(ST_EINPUT, "%s: key '%s': expected a number, found %s", what, key,
                   json_type_name_(v));
  *out = json_number_value(v);
  return 0;
}

static int get_bool_(const json_t *o, const char *key, const char *what, int *out) {
  json_t *v = json_object_get(o, key);
  if (!v || json_is_null(v)) return 0;
  if (!json_is_boolean(v))
    return st_fail(ST_EINPUT, "%s: key '%s': expected true or false, found %s", what, key,
                   json_type_name_(v));
  *out = json_is_true(v);
  return 0;
}

/* Optional string: missing or null -> NULL. */
static int get_str_(const json_t *o, const char *key, const char *what, const char **out) {
  json_t *v = json_object_get(o, key);
  *out = NULL;
  if (!v || json_is_null(v)) return 0;
  if (!json_is_string(v))
    return st_fail(ST_EINPUT, "%s: key '%s': expected a string, found %s", what, key,
                   json_type_name_(v));
  *out = json_string_value(v);
  return 0;
}

/* bos/eos: an integer, null, or (eos in Llama 3.1) a list whose first entry we keep. */
static int get_token_id_(const json_t *o, const char *key, const char *what, int *out, int *list,
                         int *n_list) {
  json_t *v = json_object_get(o, key);
  if (v && json_is_array(v)) {
    *out = -1;
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
      if (!json_is_integer(e))
        return st_fail(ST_EINPUT, "%s: key '%s': expected a list of integers, found %s inside",
                       what, key, json_type_name_(e));
      if (i == 0) *out = (int)json_integer_value(e);
      if (list && i < 8) list[(*n_list)++] = (int)json_integer_value(e);
    }
    return 0;
  }
  if (v && json_is_null(v)) {
    *out = -1;
    return 0;
  }
  return get_int_(o, key, what, 0, out);
}

/* rope: transformers 5 writes rope_parameters {rope_type, rope_theta, factor, ...};
 * transformers 4 (and most Hub files) write rope_theta and rope_scaling {rope_type|type, ...}. */
static int parse_rope_(const json_t *o, const char *what, model_config *c) {
  int rc = get_double_(o, "rope_theta", what, 0, &c->rope_theta);
  if (rc) return rc;
  const json_t *rs = json_object_get(o, "rope_parameters");
  const char *rs_key = "rope_parameters";
  if (rs && !json_is_null(rs)) {
    if (!json_is_object(rs))
      return st_fail(ST_EINPUT, "%s: key 'rope_parameters': expected an object, found %s", what,
                     json_type_name_(rs));
    char sub[512];
    snprintf(sub, sizeof sub, "%s: rope_parameters", what);
    if ((rc = get_double_(rs, "rope_theta", sub, 0, &c->rope_theta))) return rc;
  } else {
    rs = json_object_get(o, "rope_scaling");
    rs_key = "rope_scaling";
    if (rs && !json_is_null(rs) && !json_is_object(rs))
      return st_fail(ST_EINPUT, "%s: key 'rope_scaling': expected an object or null, found %s",
                     what, json_type_name_(rs));
  }
  c->rope_scaling.type = ROPE_DEFAULT;
  if (!rs || json_is_null(rs)) return 0;
  char sub[512];
  snprintf(sub, sizeof sub, "%s: %s", what, rs_key);
  const char *type = NULL;
  if ((rc = get_str_(rs, "rope_type", sub, &type))) return rc;
  if (!type && (rc = get_str_(rs, "type", sub, &type))) return rc;
  if (!type || strcmp(type, "default") == 0) return 0;
  if (strcmp(type, "llama3") != 0)
    return st_fail(ST_EINPUT,
                   "%s: key 'rope_type': expected \"default\" or \"llama3\", found \"%s\"", sub,
                   type);
  c->rope_scaling.type = ROPE_LLAMA3;
  if ((rc = get_double_(rs, "factor", sub, 1, &c->rope_scaling.factor))) return rc;
  if ((rc = get_double_(rs, "low_freq_factor", sub, 1, &c->rope_scaling.low_freq_factor)))
    return rc;
  if ((rc = get_double_(rs, "high_freq_factor", sub, 1, &c->rope_scaling.high_freq_factor)))
    return rc;
  return get_int_(rs, "original_max_position_embeddings", sub, 1,
                  &c->rope_scaling.original_max_position_embeddings);
}

static void set_defaults_(model_config *c, const char *type) {
  memset(c, 0, sizeof *c);
  snprintf(c->model_type, sizeof c->model_type, "%s", type);
  c->rms_norm_eps = 1e-6;
  c->rope_theta = 10000.0;
  c->initializer_range = 0.02;
  c->bos_token_id = c->eos_token_id = -1;
  c->head_dim = -1; /* hidden_size / heads unless given */
  if (strcmp(type, "llama") == 0) {
    c->max_position_embeddings = 2048;
    c->bos_token_id = 1, c->eos_token_id = 2;
  } else if (strcmp(type, "mistral") == 0) {
    c->max_position_embeddings = 4096 * 32;
    c->bos_token_id = 1, c->eos_token_id = 2;
    c->sliding_window = 4096;
  } else if (strcmp(type, "qwen2") == 0) {
    c->max_position_embeddings = 32768;
    c->attention_bias = 1; /* Qwen2Attention: q/k/v always carry a bias */
  } else {                 /* qwen3 */
    c->max_position_embeddings = 32768;
    c->head_dim = 128; /* Qwen3Config's default, not hidden_size / heads */
    c->qk_norm = 1;
  }
}

int model_config_from_json(const void *json_obj, const char *what, model_config *c) {
  const json_t *o = json_obj;
  if (!json_is_object(o))
    return st_fail(ST_EINPUT, "%s: expected a JSON object, found %s", what, json_type_name_(o));
  const char *type = NULL;
  int rc = get_str_(o, "model_type", what, &type);
  if (rc) return rc;
  if (!type)
    return st_fail(ST_EINPUT, "%s: missing key 'model_type' (expected one of %s)", what,
                   model_config_supported_types());
  int known = 0;
  for (int i = 0; i < N_SUPPORTED; i++) known |= strcmp(type, supported_[i]) == 0;
  if (!known)
    return st_fail(ST_EINPUT, "%s: key 'model_type': expected one of %s, found \"%s\"", what,
                   model_config_supported_types(), type);
  set_defaults_(c, type);

  if ((rc = get_int_(o, "hidden_size", what, 1, &c->hidden_size))) return rc;
  if ((rc = get_int_(o, "intermediate_size", what, 1, &c->intermediate_size))) return rc;
  if ((rc = get_int_(o, "num_hidden_layers", what, 1, &c->num_hidden_layers))) return rc;
  if ((rc = get_int_(o, "num_attention_heads", what, 1, &c->num_attention_heads))) return rc;
  if ((rc = get_int_(o, "vocab_size", what, 1, &c->vocab_size))) return rc;
  c->num_key_value_heads = c->num_attention_heads;
  if ((rc = get_int_(o, "num_key_value_heads", what, 0, &c->num_key_value_heads))) return rc;
  if ((rc = get_int_(o, "head_dim", what, 0, &c->head_dim))) return rc;
  if (c->head_dim < 0 && c->num_attention_heads > 0)
    c->head_dim = c->hidden_size / c->num_attention_heads;
  if ((rc = get_int_(o, "max_position_embeddings", what, 0, &c->max_position_embeddings)))
    return rc;
  if ((rc = get_double_(o, "rms_norm_eps", what, 0, &c->rms_norm_eps))) return rc;
  if ((rc = get_double_(o, "initializer_range", what, 0, &c->initializer_range))) return rc;
  if ((rc = parse_rope_(o, what, c))) return rc;
  if ((rc = get_bool_(o, "tie_word_embeddings", what, &c->tie_word_embeddings))) return rc;
  if ((rc = get_token_id_(o, "bos_token_id", what, &c->bos_token_id, NULL, NULL))) return rc;
  if ((rc = get_token_id_(o, "eos_token_id", what, &c->eos_token_id, c->eos_token_ids, &c->n_eos)))
    return rc;

  /* attention_bias: qwen2 has q/k/v biases whatever the key says. In llama, mistral and
   * qwen3 the key also puts a bias on o_proj, which this trainer does not implement. */
  int bias = 0;
  if ((rc = get_bool_(o, "attention_bias", what, &bias))) return rc;
  if (bias && strcmp(type, "qwen2") != 0)
    return st_fail(ST_EINPUT,
                   "%s: key 'attention_bias': expected false for model_type \"%s\" (its o_proj "
                   "bias is not supported), found true",
                   what, type);
  int mlp_bias = 0;
  if ((rc = get_bool_(o, "mlp_bias", what, &mlp_bias))) return rc;
  if (mlp_bias)
    return st_fail(ST_EINPUT,
                   "%s: key 'mlp_bias': expected false (MLP biases are not supported), found true",
                   what);
  const char *act = NULL;
  if ((rc = get_str_(o, "hidden_act", what, &act))) return rc;
  if (act && strcmp(act, "silu") != 0)
    return st_fail(ST_EINPUT, "%s: key 'hidden_act': expected \"silu\", found \"%s\"", what, act);

  /* Sliding windows: mistral applies `sliding_window` to every layer; qwen2/qwen3 only when
   * use_sliding_window is true, and then only above max_window_layers (not supported). */
  if (strcmp(type, "mistral") == 0) {
    json_t *sw = json_object_get(o, "sliding_window");
    if (sw && json_is_null(sw))
      c->sliding_window = 0;
    else if ((rc = get_int_(o, "sliding_window", what, 0, &c->sliding_window)))
      return rc;
  } else if (strncmp(type, "qwen", 4) == 0) {
    int use_sw = 0;
    if ((rc = get_bool_(o, "use_sliding_window", what, &use_sw))) return rc;
    if (use_sw)
      return st_fail(ST_EINPUT,
                     "%s: key 'use_sliding_window': expected false (per-layer sliding "
                     "windows are not supported), found true",
                     what);
  }
  const char *dt = NULL;
  if ((rc = get_str_(o, "torch_dtype", what, &dt))) return rc;
  if (!dt && (rc = get_str_(o, "dtype", what, &dt))) return rc;
  if (dt) snprintf(c->torch_dtype, sizeof c->torch_dtype, "%s", dt);
  if ((rc = model_config_validate(c, what))) return rc;
  if (c->bos_token_id >= c->vocab_size || c->eos_token_id >= c->vocab_size)
    log_warn("%s: bos_token_id=%d / eos_token_id=%d lie outside vocab_size=%d", what,
             c->bos_token_id, c->eos_token_id, c->vocab_size);
  return 0;
}

int model_config_load(const char *path, model_config *c) {
  json_error_t err;
  json_t *o = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
  if (!o) {
    if (err.line <= 0 && strstr(err.text, "unable to open"))
      return st_fail(ST_EINPUT, "%s: cannot read the model config: %s", path, err.text);
    return st_fail(ST_EINPUT, "%s: line %d column %d: invalid JSON: %s", path, err.line, err.column,
                   err.text);
  }
  int rc = model_config_from_json(o, path, c);
  json_decref(o);
  return rc;
}

int model_config_validate(const model_config *c, const char *what) {
  struct {
    const char *key;
    int v;
  } pos[] = {{"hidden_size", c->hidden_size},
             {"intermediate_size", c->intermediate_size},
             {"num_hidden_layers", c->num_hidden_layers},
             {"num_attention_heads", c->num_attention_heads},
             {"num_key_value_heads", c->num_key_value_heads},
             {"head_dim", c->head_dim},
             {"vocab_size", c->vocab_size},
             {"max_position_embeddings", c->max_position_embeddings}};
  for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++)
    if (pos[i].v <= 0)
      return st_fail(ST_EINPUT, "%s: key '%s': expected a positive integer, found %d", what,
                     pos[i].key, pos[i].v);
  if (c->num_attention_heads % c->num_key_value_heads != 0)
    return st_fail(ST_EINPUT,
                   "%s: key 'num_key_value_heads': expected a divisor of num_attention_heads=%d, "
                   "found %d",
                   what, c->num_attention_heads, c->num_key_value_heads);
  if (c->head_dim % 2 != 0)
    return st_fail(ST_EINPUT,
                   "%s: key 'head_dim': expected an even number (rotary pairs), found %d", what,
                   c->head_dim);
  if (!(c->rms_norm_eps > 0))
    return st_fail(ST_EINPUT, "%s: key 'rms_norm_eps': expected a positive number, found %g", what,
                   c->rms_norm_eps);
  if (!(c->rope_theta > 0))
    return st_fail(ST_EINPUT, "%s: key 'rope_theta': expected a positive number, found %g", what,
                   c->rope_theta);
  if (!(c->initializer_range >= 0))
    return st_fail(ST_EINPUT, "%s: key 'initializer_range': expected a number >= 0, found %g", what,
                   c->initializer_range);
  if (c->rope_scaling.type == ROPE_LLAMA3) {
    if (!(c->rope_scaling.factor > 0) || !(c->rope_scaling.low_freq_factor > 0) ||
        !(c->rope_scaling.high_freq_factor > c->rope_scaling.low_freq_factor) ||
        c->rope_scaling.original_max_position_embeddings <= 0)
      return st_fail(ST_EINPUT,
                     "%s: rope_scaling (llama3): expected factor > 0, 0 < low_freq_factor < "
                     "high_freq_factor and original_max_position_embeddings > 0, found factor=%g "
                     "low_freq_factor=%g high_freq_factor=%g original_max_position_embeddings=%d",
                     what, c->rope_scaling.factor, c->rope_scaling.low_freq_factor,
                     c->rope_scaling.high_freq_factor,
                     c->rope_scaling.original_max_position_embeddings);
  }
  if (c->sliding_window < 0)
    return st_fail(ST_EINPUT, "%s: key 'sliding_window': expected >= 0, found %d", what,
                   c->sliding_window);
  return 0;
}

uint64_t model_config_num_params(const model_config *c) {
  uint64_t C = (uint64_t)c->hidden_size, F = (uint64_t)c->intermediate_size;
  uint64_t H = (uint64_t)c->num_attention_heads, KV = (uint64_t)c->num_key_value_heads;
  uint64_t D = (uint64_t)c->head_dim, V = (uint64_t)c->vocab_size;
  uint64_t block = 2 * C              /* input_layernorm, post_attention_layernorm */
                   + (H * D) * C * 2  /* q_proj, o_proj */
                   + (KV * D) * C * 2 /* k_proj, v_proj */
                   + 3 * F * C;       /* gate, up, down */
  if (c->attention_bias) block += H * D + 2 * KV * D;
  if (c->qk_norm) block += 2 * D;
  uint64_t n = V * C + (uint64_t)c->num_hidden_layers * block + C;
  if (!c->tie_word_embeddings) n += V * C;
  return n;
}

static const char *architecture_(const char *type) {
  if (strcmp(type, "llama") == 0) return "LlamaForCausalLM";
  if (strcmp(type, "mistral") == 0) return "MistralForCausalLM";
  if (strcmp(type, "qwen2") == 0) return "Qwen2ForCausalLM";
  return "Qwen3ForCausalLM";
}

/* Significant digits that make %.Ng round-trip x (1e-05 rather than 1.0000000000000001e-05). */
static int digits_(double x) {
  for (int p = 1; p < 17; p++) {
    char buf[64];
    snprintf(buf, sizeof buf, "%.*g", p, x);
    if (strtod(buf, NULL) == x) return p;
  }
  return 17;
}

static json_t *token_id_(int id) { return id >= 0 ? json_integer(id) : json_null(); }

int model_config_save(const char *path, const model_config *c) {
  int rc = model_config_validate(c, path);
  if (rc) return rc;
  json_t *o = json_object();
  json_t *arch = json_array();
  json_array_append_new(arch, json_string(architecture_(c->model_type)));
  json_object_set_new(o, "architectures", arch);
  int qwen2 = strcmp(c->model_type, "qwen2") == 0;
  /* qwen2's biases are implicit; for the others attention_bias=true would add o_proj.bias */
  json_object_set_new(o, "attention_bias", json_boolean(!qwen2 && c->attention_bias));
  json_object_set_new(o, "attention_dropout", json_real(0.0));
  json_object_set_new(o, "bos_token_id", token_id_(c->bos_token_id));
  if (c->n_eos > 1) {
    json_t *l = json_array();
    for (int i = 0; i < c->n_eos && i < 8; i++)
      json_array_append_new(l, json_integer(c->eos_token_ids[i]));
    json_object_set_new(o, "eos_token_id", l);
  } else {
    json_object_set_new(o, "eos_token_id", token_id_(c->eos_token_id));
  }
  json_object_set_new(o, "head_dim", json_integer(c->head_dim));
  json_object_set_new(o, "hidden_act", json_string("silu"));
  json_object_set_new(o, "hidden_size", json_integer(c->hidden_size));
  json_object_set_new(o, "initializer_range", json_real(c->initializer_range));
  json_object_set_new(o, "intermediate_size", json_integer(c->intermediate_size));
  json_object_set_new(o, "max_position_embeddings", json_integer(c->max_position_embeddings));
  if (strcmp(c->model_type, "llama") == 0) json_object_set_new(o, "mlp_bias", json_false());
  json_object_set_new(o, "model_type", json_string(c->model_type));
  json_object_set_new(o, "num_attention_heads", json_integer(c->num_attention_heads));
  json_object_set_new(o, "num_hidden_layers", json_integer(c->num_hidden_layers));
  json_object_set_new(o, "num_key_value_heads", json_integer(c->num_key_value_heads));
  json_object_set_new(o, "rms_norm_eps", json_real(c->rms_norm_eps));
  /* The transformers 4 layout: transformers 5 converts it on load, 4 reads it directly. */
  json_object_set_new(o, "rope_theta", json_real(c->rope_theta));
  if (c->rope_scaling.type == ROPE_LLAMA3) {
    json_t *rs = json_object();
    json_object_set_new(rs, "factor", json_real(c->rope_scaling.factor));
    json_object_set_new(rs, "high_freq_factor", json_real(c->rope_scaling.high_freq_factor));
    json_object_set_new(rs, "low_freq_factor", json_real(c->rope_scaling.low_freq_factor));
    json_object_set_new(rs, "original_max_position_embeddings",
                        json_integer(c->rope_scaling.original_max_position_embeddings));
    json_object_set_new(rs, "rope_type", json_string("llama3"));
    json_object_set_new(o, "rope_scaling", rs);
  } else {
    json_object_set_new(o, "rope_scaling", json_null());
  }
  if (strcmp(c->model_type, "mistral") == 0)
    json_object_set_new(o, "sliding_window",
                        c->sliding_window > 0 ? json_integer(c->sliding_window) : json_null());
  if (strncmp(c->model_type, "qwen", 4) == 0) {
    json_object_set_new(o, "sliding_window", json_null());
    json_object_set_new(o, "use_sliding_window", json_false());
  }
  json_object_set_new(o, "tie_word_embeddings", json_boolean(c->tie_word_embeddings));
  json_object_set_new(o, "torch_dtype",
                      json_string(c->torch_dtype[0] ? c->torch_dtype : "float32"));
  json_object_set_new(o, "use_cache", json_true());
  json_object_set_new(o, "vocab_size", json_integer(c->vocab_size));

  double reals[] = {c->initializer_range,
                    c->rms_norm_eps,
                    c->rope_theta,
                    c->rope_scaling.factor,
                    c->rope_scaling.low_freq_factor,
                    c->rope_scaling.high_freq_factor};
  int prec = 6;
  for (size_t i = 0; i < sizeof reals / sizeof reals[0]; i++)
    if (digits_(reals[i]) > prec) prec = digits_(reals[i]);
  char *tmp = xasprintf("%s.tmp", path);
  rc = 0;
  errno = 0;
  if (json_dump_file(o, tmp, JSON_INDENT(2) | JSON_REAL_PRECISION(prec)) != 0) {
    char why[160] = "unknown reason";
    if (errno) fs_write_error(errno, tmp, why, sizeof why);
    rc = st_fail(ST_ERUNTIME, "%s: cannot write the model config: %s", tmp, why);
  } else if (rename(tmp, path) != 0) {
    rc = st_fail(ST_ERUNTIME, "%s: cannot rename to %s", tmp, path);
  }
  if (rc) remove(tmp);
  free(tmp);
  json_decref(o);
  return rc;
}
