/* spectrain init + model_dir: initial values follow transformers' rules (normal(0, std) for
 * matrices, ones for norms, zeros for biases), are a function of the seed only (sharded ==
 * unsharded, bf16 == rounded f32), and model_dir_open rejects directories whose tensors
 * disagree with config.json. */
#include <ftw.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "io/model_dir.h"
#include "io/safetensors.h"
#include "test.h"
#include "util/err.h"

static char dir_[512];

static const char *p_(const char *name) {
  static char buf[8][1024];
  static int k = 0;
  k = (k + 1) % 8;
  snprintf(buf[k], sizeof buf[k], "%s/%s", dir_, name);
  return buf[k];
}

#define RUN_INIT(...)                                     \
  ({                                                      \
    char *av_[] = {"init", __VA_ARGS__, NULL};            \
    cmd_init((int)(sizeof av_ / sizeof av_[0]) - 1, av_); \
  })

static float *read_all_(const model_dir *md, const char *name, uint64_t *n) {
  int i = tensor_table_find(&md->tt, name);
  if (i < 0) return NULL;
  *n = md->tt.t[i].numel;
  float *x = xmalloc((size_t)*n * sizeof *x);
  if (model_dir_read_f32(md, i, x)) {
    free(x);
    return NULL;
  }
  return x;
}

static void test_values(void) {
  char *a = xasprintf("%s", p_("a")), *s = xasprintf("%s", p_("s")), *h = xasprintf("%s", p_("h"));
  char *b = xasprintf("%s", p_("b"));
  CHECK_EQ_INT(RUN_INIT("--out", a, "--preset", "tiny-llama", "--seed", "7"), 0);
  CHECK_EQ_INT(
      RUN_INIT("--out", s, "--preset", "tiny-llama", "--seed", "7", "--max-shard-bytes", "1MB"), 0);
  CHECK_EQ_INT(RUN_INIT("--out", h, "--preset", "tiny-llama", "--seed", "7", "--dtype", "bf16"), 0);
  CHECK_EQ_INT(RUN_INIT("--out", b, "--preset", "tiny-llama", "--seed", "8"), 0);
  model_dir ma, ms, mh, mb;
  int ok = model_dir_open(a, &ma) == 0;
  CHECK_MSG(ok, "%s", st_errmsg());
  ok = ok && model_dir_open(s, &ms) == 0;
  CHECK_MSG(ok, "%s", st_errmsg());
  ok = ok && model_dir_open(h, &mh) == 0 && model_dir_open(b, &mb) == 0;
  CHECK_MSG(ok, "%s", st_errmsg());
  if (!ok) return;
  CHECK_EQ_INT(ma.st.nfiles, 1);
  CHECK(ms.st.nfiles > 3); /* 12 MB in 1 MB shards */
  struct stat st;
  CHECK(stat(p_("s/model.safetensors.index.json"), &st) == 0);
  CHECK(mh.st.t[0].dtype == SFT_BF16);
  CHECK_STR_EQ(mh.cfg.torch_dtype, "bfloat16");
  CHECK_EQ_INT(ma.tt.n, 39);
  for (int i = 0; i < ma.tt.n; i++) {
    const tensor_desc *d = &ma.tt.t[i];
    uint64_t n, n2;
    float *x = read_all_(&ma, d->name, &n), *y = read_all_(&ms, d->name, &n2);
    float *z = read_all_(&mh, d->name, &n2), *w = read_all_(&mb, d->name, &n2);
    CHECK(x && y && z && w);
    if (!x || !y || !z || !w) break;
    int same_shard = memcmp(x, y, (size_t)n * 4) == 0, rounded = 1, differ = 0;
    double sum = 0, sq = 0;
    for (uint64_t k = 0; k < n; k++) {
      rounded &= z[k] == sft_bf16_to_f32(sft_f32_to_bf16(x[k]));
      differ += x[k] != w[k];
      sum += x[k];
      sq += (double)x[k] * x[k];
    }
    CHECK_MSG(same_shard, "%s: sharded values differ", d->name);
    CHECK_MSG(rounded, "%s: bf16 values are not the rounded f32 values", d->name);
    if (d->ndim == 1) { /* RMSNorm weights */
      CHECK_MSG(sum == (double)n && sq == (double)n, "%s: norms must be ones", d->name);
    } else {
      double mean = sum / (double)n, sd = sqrt(sq / (double)n - mean * mean);
      CHECK_MSG(fabs(mean) < 5 * 0.02 / sqrt((double)n), "%s: mean %g", d->name, mean);
      CHECK_MSG(fabs(sd - 0.02) < 0.02 * 6 / sqrt(2.0 * (double)n), "%s: std %g", d->name, sd);
      CHECK_MSG(differ > (int)(n * 0.99), "%s: seed 8 equals seed 7", d->name);
    }
    free(x), free(y), free(z), free(w);
  }
  /* different tensors draw different numbers */
  uint64_t n1, n2;
  float *q0 = read_all_(&ma, "model.layers.0.self_attn.q_proj.weight", &n1);
  float *q1 = read_all_(&ma, "model.layers.1.self_attn.q_proj.weight", &n2);
  CHECK(q0 && q1 && q0[0] != q1[0] && q0[1] != q1[1]);
  free(q0), free(q1);
  model_dir_close(&ma), model_dir_close(&ms), model_dir_close(&mh), model_dir_close(&mb);
  free(a), free(s), free(h), free(b);
}

static void test_qwen(void) {
  char *q = xasprintf("%s", p_("q2"));
  CHECK_EQ_INT(RUN_INIT("--out", q, "--preset", "tiny-qwen2", "--set", "num_hidden_layers=2"), 0);
  model_dir md;
  int rc = model_dir_open(q, &md);
  CHECK_MSG(rc == 0, "%s", st_errmsg());
  if (!rc) {
    CHECK_EQ_INT(md.cfg.num_hidden_layers, 2);
    CHECK(!sft_find(&md.st, "lm_head.weight")); /* tied */
    uint64_t n;
    float *bias = read_all_(&md, "model.layers.1.self_attn.k_proj.bias", &n);
    CHECK(bias && n == 128);
    int zero = 1;
    for (uint64_t k = 0; bias && k < n; k++) zero &= bias[k] == 0.0f;
    CHECK(zero);
    free(bias);
    model_dir_close(&md);
  }
  free(q);
}

static void copy_(const char *from, const char *to) {
  FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
  char buf[65536];
  size_t n;
  while (a && b && (n = fread(buf, 1, sizeof buf, a)) > 0) fwrite(buf, 1, n, b);
  if (a) fclose(a);
  if (b) fclose(b);
}

static void test_errors(void) {
  char *e1 = xasprintf("%s", p_("e1")), *e2 = xasprintf("%s", p_("e2"));
  char *e3 = xasprintf("%s", p_("e3"));
  CHECK_EQ_INT(RUN_INIT("--out", e1, "--preset", "tiny-llama", "--config", "x.json"), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "exactly one");
  CHECK_EQ_INT(RUN_INIT("--out", e1, "--preset", "gpt2"), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "tiny-llama");
  CHECK_EQ_INT(RUN_INIT("--preset", "tiny-llama"), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "--out");
  CHECK_EQ_INT(RUN_INIT("--out", e1, "--preset", "tiny-llama", "--dtype", "f8"), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "f8");
  CHECK_EQ_INT(RUN_INIT("--out", e1, "--preset", "tiny-llama", "--max-shard-bytes", "5XB"),
               ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "5XB");
  CHECK_EQ_INT(RUN_INIT("--out", e1, "--preset", "tiny-llama", "--set", "hidden_sise=8"),
               ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "did you mean 'hidden_size'");
  CHECK_EQ_INT(RUN_INIT("--out", e1, "--preset", "tiny-llama", "--set", "num_attention_heads=3"),
               ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "num_key_value_heads");
  CHECK_EQ_INT(RUN_INIT("--out", e1, "--preset", "tiny-llama", "--set", "num_hidden_layers=1"), 0);
  CHECK_EQ_INT(RUN_INIT("--out", e1, "--preset", "tiny-llama"), ST_EINPUT); /* exists */
  CHECK_CONTAINS(st_errmsg(), "--force");
  CHECK_EQ_INT(
      RUN_INIT("--out", e1, "--preset", "tiny-llama", "--set", "num_hidden_layers=1", "--force"),
      0);
  /* shapes that disagree with config.json */
  CHECK_EQ_INT(RUN_INIT("--out", e2, "--preset", "tiny-llama", "--set", "num_hidden_layers=1",
                        "--set", "intermediate_size=512"),
               0);
  copy_(p_("e2/config.json"), p_("e1/config.json"));
  model_dir md;
  CHECK_EQ_INT(model_dir_open(e1, &md), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "'model.layers.0.mlp.gate_proj.weight'");
  CHECK_CONTAINS(st_errmsg(), "[512, 256]");
  CHECK_CONTAINS(st_errmsg(), "[688, 256]");
  /* a missing tensor: untied config, tied weights */
  CHECK_EQ_INT(RUN_INIT("--out", e3, "--preset", "tiny-llama", "--set", "num_hidden_layers=1",
                        "--set", "tie_word_embeddings=true"),
               0);
  CHECK_EQ_INT(
      RUN_INIT("--out", e1, "--preset", "tiny-llama", "--set", "num_hidden_layers=1", "--force"),
      0);
  copy_(p_("e3/model.safetensors"), p_("e1/model.safetensors"));
  CHECK_EQ_INT(model_dir_open(e1, &md), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "'lm_head.weight' is missing");
  /* the other way round: an extra tensor is ignored with a warning */
  CHECK_EQ_INT(
      RUN_INIT("--out", e1, "--preset", "tiny-llama", "--set", "num_hidden_layers=1", "--force"),
      0);
  copy_(p_("e1/model.safetensors"), p_("e3/model.safetensors"));
  int rc = model_dir_open(e3, &md);
  CHECK_MSG(rc == 0, "%s", st_errmsg());
  if (!rc) {
    CHECK_EQ_INT(md.n_extra, 1);
    model_dir_close(&md);
  }
  /* no config.json */
  CHECK_EQ_INT(model_dir_open(dir_, &md), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "config.json");
  free(e1), free(e2), free(e3);
}

static int rm_(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  return remove(path);
}

int main(void) {
  const char *tmp = getenv("TEST_TMP");
  snprintf(dir_, sizeof dir_, "%s/init.%d", tmp ? tmp : "/tmp", (int)getpid());
  mkdir(dir_, 0755);
  log_set_quiet(1);
  test_values();
  test_qwen();
  test_errors();
  nftw(dir_, rm_, 16, FTW_DEPTH | FTW_PHYS); /* ~50 MB of models */
  return test_done();
}
