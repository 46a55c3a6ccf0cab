/* config.json parsing (both transformers layouts, per-type defaults, errors naming file and
 * key), save -> load round trip, the tensor table, and parameter counts against counts
 * taken from transformers (AutoModelForCausalLM.from_config on the meta device, summing
 * p.numel() over model.parameters()). */
#include <ftw.h>
#include <jansson.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/config.h"
#include "model/tensors.h"
#include "test.h"
#include "util/err.h"

static char dir_[512];

static const char *write_(const char *name, const char *text) {
  static char p[1024];
  snprintf(p, sizeof p, "%s/%s", dir_, name);
  FILE *f = fopen(p, "w");
  fputs(text, f);
  fclose(f);
  return p;
}

static int parse_(const char *json, model_config *c) {
  json_error_t e;
  json_t *o = json_loads(json, 0, &e);
  if (!o) {
    fprintf(stderr, "bad test JSON: %s\n", e.text);
    return -1;
  }
  int rc = model_config_from_json(o, "cfg.json", c);
  json_decref(o);
  return rc;
}

static void expect_err_(const char *json, const char *n1, const char *n2) {
  model_config c;
  int rc = parse_(json, &c);
  CHECK_MSG(rc == ST_EINPUT, "rc %d for %s", rc, json);
  CHECK_CONTAINS(st_errmsg(), "cfg.json");
  CHECK_CONTAINS(st_errmsg(), n1);
  if (n2) CHECK_CONTAINS(st_errmsg(), n2);
}

#define BASE                                                                    \
  "\"hidden_size\": 64, \"intermediate_size\": 128, \"num_hidden_layers\": 2, " \
  "\"num_attention_heads\": 4, \"vocab_size\": 100"

static void test_parse(void) {
  model_config c;
  /* transformers 4 layout (what the Hub's Llama 3.1 config.json has) */
  int rc = parse_("{\"model_type\": \"llama\", " BASE
                  ", \"num_key_value_heads\": 2,"
                  " \"rope_theta\": 500000.0, \"rms_norm_eps\": 1e-05,"
                  " \"rope_scaling\": {\"factor\": 8.0, \"low_freq_factor\": 1.0,"
                  " \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192,"
                  " \"rope_type\": \"llama3\"}, \"eos_token_id\": [128001, 128008],"
                  " \"bos_token_id\": 128000, \"vocab_size\": 128256}",
                  &c);
  CHECK_MSG(rc == 0, "%s", st_errmsg());
  CHECK_STR_EQ(c.model_type, "llama");
  CHECK_EQ_INT(c.num_key_value_heads, 2);
  CHECK_EQ_INT(c.head_dim, 16);
  CHECK_EQ_INT(c.vocab_size, 128256);
  CHECK_EQ_INT(c.rope_scaling.type, ROPE_LLAMA3);
  CHECK(c.rope_scaling.factor == 8.0 && c.rope_scaling.high_freq_factor == 4.0);
  CHECK_EQ_INT(c.rope_scaling.original_max_position_embeddings, 8192);
  CHECK(c.rope_theta == 500000.0 && c.rms_norm_eps == 1e-5);
  CHECK_EQ_INT(c.eos_token_id, 128001);
  CHECK_EQ_INT(c.n_eos, 2);
  CHECK_EQ_INT(c.eos_token_ids[1], 128008);
  CHECK_EQ_INT(c.bos_token_id, 128000);
  {
    char sp[1024];
    snprintf(sp, sizeof sp, "%s/eos.json", dir_);
    model_config d;
    CHECK_EQ_INT(model_config_save(sp, &c), 0);
    CHECK_EQ_INT(model_config_load(sp, &d), 0);
    CHECK(d.n_eos == 2 && d.eos_token_ids[0] == 128001 && d.eos_token_ids[1] == 128008);
  }
  CHECK_EQ_INT(c.attention_bias, 0);
  CHECK_EQ_INT(c.qk_norm, 0);
  CHECK_EQ_INT(c.max_position_embeddings, 2048); /* LlamaConfig default */
  /* transformers 5 layout, old key "type" */
  rc = parse_("{\"model_type\": \"llama\", " BASE
              ", \"rope_parameters\": {\"rope_theta\": 1234.0,"
              " \"rope_type\": \"llama3\", \"factor\": 2, \"low_freq_factor\": 1,"
              " \"high_freq_factor\": 4, \"original_max_position_embeddings\": 64}}",
              &c);
  CHECK_MSG(rc == 0, "%s", st_errmsg());
  CHECK(c.rope_theta == 1234.0 && c.rope_scaling.type == ROPE_LLAMA3 && c.rope_scaling.factor == 2);
  CHECK_EQ_INT(c.num_key_value_heads, 4); /* default = heads */
  rc = parse_("{\"model_type\": \"mistral\", " BASE ", \"rope_scaling\": {\"type\": \"default\"}}",
              &c);
  CHECK_MSG(rc == 0, "%s", st_errmsg());
  CHECK_EQ_INT(c.rope_scaling.type, ROPE_DEFAULT);
  CHECK_EQ_INT(c.sliding_window, 4096); /* MistralConfig default */
  rc = parse_("{\"model_type\": \"mistral\", " BASE ", \"sliding_window\": null}", &c);
  CHECK_EQ_INT(c.sliding_window, 0);
  /* qwen2: q/k/v bias always, head_dim = hidden / heads */
  rc = parse_("{\"model_type\": \"qwen2\", " BASE ", \"tie_word_embeddings\": true}", &c);
  CHECK_MSG(rc == 0, "%s", st_errmsg());
  CHECK_EQ_INT(c.attention_bias, 1);
  CHECK_EQ_INT(c.tie_word_embeddings, 1);
  CHECK_EQ_INT(c.head_dim, 16);
  CHECK_EQ_INT(c.bos_token_id, -1);
  /* qwen3: qk-norm, head_dim default 128 (Qwen3Config), given head_dim wins */
  rc = parse_("{\"model_type\": \"qwen3\", " BASE "}", &c);
  CHECK_EQ_INT(c.head_dim, 128);
  CHECK_EQ_INT(c.qk_norm, 1);
  rc = parse_(
      "{\"model_type\": \"qwen3\", " BASE ", \"head_dim\": 32, \"torch_dtype\": \"bfloat16\"}", &c);
  CHECK_EQ_INT(c.head_dim, 32);
  CHECK_STR_EQ(c.torch_dtype, "bfloat16");

  /* errors name the file and the key */
  expect_err_("{\"model_type\": \"gpt2\", " BASE "}", "llama, mistral, qwen2, qwen3", "gpt2");
  expect_err_("{" BASE "}", "model_type", NULL);
  expect_err_("{\"model_type\": \"llama\", \"hidden_size\": 64}", "intermediate_size", "missing");
  expect_err_("{\"model_type\": \"llama\", " BASE ", \"num_key_value_heads\": \"2\"}",
              "num_key_value_heads", "found a string");
  expect_err_("{\"model_type\": \"llama\", " BASE ", \"num_key_value_heads\": 3}",
              "num_key_value_heads", "divisor");
  expect_err_("{\"model_type\": \"llama\", " BASE ", \"rms_norm_eps\": \"x\"}", "rms_norm_eps",
              NULL);
  expect_err_("{\"model_type\": \"llama\", " BASE ", \"tie_word_embeddings\": 1}",
              "tie_word_embeddings", "true or false");
  expect_err_("{\"model_type\": \"llama\", " BASE ", \"rope_scaling\": {\"rope_type\": \"yarn\"}}",
              "rope_type", "yarn");
  expect_err_("{\"model_type\": \"llama\", " BASE
              ", \"rope_scaling\": {\"rope_type\": \"llama3\"}}",
              "factor", "missing");
  expect_err_("{\"model_type\": \"llama\", " BASE ", \"attention_bias\": true}", "attention_bias",
              NULL);
  expect_err_("{\"model_type\": \"llama\", " BASE ", \"hidden_act\": \"gelu\"}", "hidden_act",
              "gelu");
  expect_err_("{\"model_type\": \"qwen2\", " BASE ", \"use_sliding_window\": true}",
              "use_sliding_window", NULL);
  expect_err_("{\"model_type\": \"llama\", " BASE ", \"hidden_size\": 0}", "hidden_size",
              "positive");
  expect_err_("{\"model_type\": \"llama\", " BASE ", \"num_hidden_layers\": 2.5}",
              "num_hidden_layers", "integer");

  /* files: bad JSON names the file and line; missing file */
  const char *p = write_("bad.json", "{\"model_type\": \"llama\",\n \"hidden_size\": }");
  CHECK_EQ_INT(model_config_load(p, &c), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "bad.json");
  CHECK_CONTAINS(st_errmsg(), "line 2");
  CHECK_EQ_INT(model_config_load("/nonexistent/config.json", &c), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "/nonexistent/config.json");
}

static void test_save_roundtrip(void) {
  const char *names[] = {"tiny-llama", "tiny-qwen3", "tiny-qwen2", "llama-3.1-8b", "qwen3-8b"};
  for (int i = 0; i < 5; i++) {
    model_config a, b;
    const char *js = model_config_preset_json(names[i]);
    CHECK(js != NULL);
    if (!js) continue;
    CHECK_MSG(parse_(js, &a) == 0, "%s: %s", names[i], st_errmsg());
    char p[1024];
    snprintf(p, sizeof p, "%s/%s.json", dir_, names[i]);
    CHECK_EQ_INT(model_config_save(p, &a), 0);
    CHECK_MSG(model_config_load(p, &b) == 0, "%s", st_errmsg());
    CHECK((strcmp(a.model_type, b.model_type) == 0 && a.hidden_size == b.hidden_size &&
           a.head_dim == b.head_dim && a.rope_theta == b.rope_theta &&
           a.rms_norm_eps == b.rms_norm_eps && a.rope_scaling.type == b.rope_scaling.type &&
           a.rope_scaling.factor == b.rope_scaling.factor &&
           a.tie_word_embeddings == b.tie_word_embeddings && a.qk_norm == b.qk_norm &&
           a.attention_bias == b.attention_bias && a.eos_token_id == b.eos_token_id &&
           a.num_key_value_heads == b.num_key_value_heads && a.vocab_size == b.vocab_size &&
           a.max_position_embeddings == b.max_position_embeddings));
    json_error_t e;
    json_t *o = json_load_file(p, 0, &e);
    CHECK(o && json_is_array(json_object_get(o, "architectures")));
    json_decref(o);
  }
  CHECK(model_config_preset_json("gpt-5") == NULL);
}

static void test_tensors(void) {
  model_config c;
  /* counts from transformers (see the header comment) */
  CHECK_EQ_INT(parse_(model_config_preset_json("llama-3.1-8b"), &c), 0);
  CHECK_EQ_INT(model_config_num_params(&c), 8030261248ULL);
  tensor_table tt;
  CHECK_EQ_INT(tensor_table_build(&c, &tt), 0);
  uint64_t sum = 0;
  for (int i = 0; i < tt.n; i++) sum += tt.t[i].numel;
  CHECK_EQ_INT(sum, 8030261248ULL);
  CHECK_EQ_INT(tt.n, 1 + 32 * 9 + 2);
  CHECK_EQ_INT(tt.n_units, 34);
  int k = tensor_table_find(&tt, "model.layers.31.self_attn.k_proj.weight");
  CHECK(k >= 0);
  if (k >= 0) {
    CHECK_EQ_INT(tt.t[k].shape[0], 1024);
    CHECK_EQ_INT(tt.t[k].shape[1], 4096);
    CHECK_EQ_INT(tt.t[k].unit, 32);
    CHECK_EQ_INT(tt.t[k].layer, 31);
    CHECK_EQ_INT(tt.t[k].decay, 1);
    CHECK_EQ_INT(tt.t[k].kind, TK_K);
  }
  int h = tensor_table_find(&tt, "lm_head.weight");
  CHECK(h == tt.n - 1 && tt.t[h].unit == 33 && tt.t[h].decay == 1);
  int nn = tensor_table_find(&tt, "model.norm.weight");
  CHECK(nn >= 0 && tt.t[nn].decay == 0 && tt.t[nn].ndim == 1 && tt.t[nn].unit == 33);
  CHECK(tt.t[0].kind == TK_EMBED && tt.t[0].unit == 0 && tt.t[0].shape[0] == 128256);
  CHECK(tensor_table_find(&tt, "model.layers.32.mlp.up_proj.weight") < 0);
  tensor_table_free(&tt);

  CHECK_EQ_INT(parse_(model_config_preset_json("qwen3-8b"), &c), 0);
  CHECK_EQ_INT(model_config_num_params(&c), 8190735360ULL);

  /* tied qwen3: no lm_head, q_norm/k_norm of head_dim, no decay on them */
  CHECK_EQ_INT(parse_(model_config_preset_json("tiny-qwen3"), &c), 0);
  CHECK_EQ_INT(tensor_table_build(&c, &tt), 0);
  CHECK(tensor_table_find(&tt, "lm_head.weight") < 0);
  k = tensor_table_find(&tt, "model.layers.2.self_attn.q_norm.weight");
  CHECK(k >= 0 && tt.t[k].shape[0] == 64 && tt.t[k].decay == 0 && tt.t[k].trainable == 1);
  k = tensor_table_find(&tt, "model.layers.0.self_attn.q_proj.weight");
  CHECK(k >= 0 && tt.t[k].shape[0] == 256 && tt.t[k].shape[1] == 256);
  sum = 0;
  for (int i = 0; i < tt.n; i++) sum += tt.t[i].numel;
  CHECK_EQ_INT(sum, model_config_num_params(&c));
  tensor_table_free(&tt);

  /* qwen2: q/k/v biases, 1-D, no decay */
  CHECK_EQ_INT(parse_(model_config_preset_json("tiny-qwen2"), &c), 0);
  CHECK_EQ_INT(tensor_table_build(&c, &tt), 0);
  k = tensor_table_find(&tt, "model.layers.1.self_attn.v_proj.bias");
  CHECK(k >= 0 && tt.t[k].ndim == 1 && tt.t[k].shape[0] == 128 && tt.t[k].decay == 0);
  CHECK(tensor_table_find(&tt, "model.layers.1.self_attn.o_proj.bias") < 0);
  CHECK_STR_EQ(tensor_kind_name(TK_V_BIAS), "self_attn.v_proj.bias");
  CHECK_STR_EQ(tensor_kind_name(TK_DOWN), "mlp.down_proj");
  tensor_table_free(&tt);
}

static int rm_(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  return remove(path);
}

int main(void) {
  const char *tmp = getenv("TEST_TMP");
  snprintf(dir_, sizeof dir_, "%s/model_config.%d", tmp ? tmp : "/tmp", (int)getpid());
  mkdir(dir_, 0755);
  log_set_quiet(1);
  test_parse();
  test_save_roundtrip();
  test_tensors();
  nftw(dir_, rm_, 16, FTW_DEPTH | FTW_PHYS);
  return test_done();
}
