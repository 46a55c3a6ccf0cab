/* spectrum/snr: the SNR formula and its edge cases, module types and Spectrum's type
 * re-assignment, model order, selection, Python-repr floats, and the exact bytes of the
 * JSON/YAML writers (spectrum-method.md §1-§4). Reference values: Python's repr and the
 * numpy reference tests/fixtures/spectrum/spectrum_ref.py. */
#include <math.h>
#include <unistd.h>

#include "spectrum/snr.h"
#include "test.h"
#include "util/err.h"

static void check_fmt_(double x, const char *want) {
  char buf[40];
  CHECK_STR_EQ(snr_format_float(x, buf), want);
}

static char *write_to_string_(void (*w)(const snr_table *, FILE *), const snr_table *t) {
  char *s = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&s, &n);
  w(t, f);
  fclose(f);
  return s;
}

int main(void) {
  /* Python repr (values from CPython 3.11: repr(x) and x.hex()) */
  check_fmt_(0x1.10548cp-1, "0.5318950414657593");
  check_fmt_(0x1.4f8b588e368f1p-17, "1e-05");
  check_fmt_(1.0, "1.0");
  check_fmt_(0.1, "0.1");
  check_fmt_(0x1.5555555555555p-2, "0.3333333333333333");
  check_fmt_(0x1.a36e2eb1c432dp-16, "2.5e-05");
  check_fmt_(0x1.a36e2eb1c432dp-14, "0.0001");
  check_fmt_(0x1.02e4b6ce5dc68p-13, "0.00012345");
  check_fmt_(0x1.1c37937e08000p+53, "1e+16");
  check_fmt_(0x1.5eddb25e04800p+53, "1.2345e+16");
  check_fmt_(0x1.1c37937e07fffp+53, "9999999999999998.0");
  check_fmt_(0x1.c12218377de66p+46, "123456789012345.6");
  check_fmt_(0x1.0f0cf064dd592p+73, "1e+22");
  check_fmt_(0x0.0000000000001p-1022, "5e-324");
  check_fmt_(0x1.fffffffffffffp+1023, "1.7976931348623157e+308");
  check_fmt_(100.0, "100.0");
  check_fmt_(12.5, "12.5");
  check_fmt_(-0.75, "-0.75");
  check_fmt_(0x1.421f5f40d8376p-23, "1.5e-07");
  check_fmt_(0x1.3333333333334p-2, "0.30000000000000004");
  check_fmt_(0x1.0p+53, "9007199254740992.0");
  check_fmt_(0x1.edd2f1a9fbe77p+6, "123.456");
  check_fmt_(0.0, "0.0");
  check_fmt_(INFINITY, "Infinity");
  check_fmt_(-INFINITY, "-Infinity");
  check_fmt_(NAN, "NaN");

  /* §1 types */
  char *ty = snr_module_type("model.layers.7.mlp.down_proj");
  CHECK_STR_EQ(ty, "mlp.down_proj");
  free(ty);
  ty = snr_module_type("lm_head");
  CHECK_STR_EQ(ty, "lm_head");
  free(ty);
  ty = snr_module_type("model.embed_tokens");
  CHECK_STR_EQ(ty, "model.embed_tokens");
  free(ty);
  ty = snr_module_type("model.layers.0.mlp.experts.3.w1");
  CHECK_STR_EQ(ty, "mlp.experts.3.w1");
  free(ty);
  CHECK(snr_model_order_cmp("model.layers.2.mlp", "model.layers.10.mlp") < 0);
  CHECK(snr_model_order_cmp("model.layers.10.mlp", "model.layers.9.mlp") > 0);
  CHECK(snr_model_order_cmp("model.layers.1", "model.layers.1.mlp") < 0);
  CHECK(snr_model_order_cmp("a.b", "a.b") == 0);

  /* §2 numbers (numpy reference: spectrum_ref.snr) */
  double w[40] = {0};
  double s5[5] = {10, 5, 1, 0.5, 0.2};
  for (int i = 0; i < 5; i++) w[i * 8 + i + 1] = s5[i]; /* 5 x 8, singular values s5 */
  double v = 0;
  CHECK_EQ_INT(snr_of_matrix(w, 5, 8, &v), 0);
  CHECK_CLOSE(v, 0.14925373134328357, 1e-12, 0);
  CHECK_CLOSE(snr_from_singular_values(s5, 5, 5, 8), 0.14925373134328357, 1e-15, 0);
  double tiny[6] = {3.0, 1, 0.5, 0.2, 2, 0.1};
  CHECK_EQ_INT(snr_of_matrix(tiny, 2, 3, &v), 0);
  CHECK_CLOSE(v, 1.523037389882281, 1e-12, 0);
  double zero[12] = {0};
  CHECK_EQ_INT(snr_of_matrix(zero, 3, 4, &v), 0);
  CHECK(isinf(v) && v > 0);
  double norm[4] = {1, 2, 3, 4};
  CHECK_EQ_INT(snr_of_matrix(norm, 1, 4, &v), 0);
  CHECK(v == 1.0);
  double bad[4] = {1, NAN, 3, 4};
  CHECK_EQ_INT(snr_of_matrix(bad, 2, 2, &v), 0);
  CHECK(isnan(v));
  bad[1] = INFINITY;
  CHECK_EQ_INT(snr_of_matrix(bad, 2, 2, &v), 0);
  CHECK(isnan(v));
  CHECK_EQ_INT(snr_of_matrix(NULL, 0, 4, &v), 0);
  CHECK(isnan(v));
  /* Spectrum's degenerate cases, from its arithmetic (spectrum_ref.snr, which
   * spectrum_torch_check.py checks against torch): a 1-D weight is a 1 x d matrix whose one
   * singular value is its norm: 1.0, but Infinity when that norm is 0 (noise sums to 0) */
  double z4[4] = {0};
  CHECK_EQ_INT(snr_of_matrix(z4, 1, 4, &v), 0);
  CHECK(isinf(v) && v > 0);
  double one0[1] = {0}, one3[1] = {-3};
  CHECK_EQ_INT(snr_of_matrix(one0, 1, 1, &v), 0); /* one element, 0 (1-D or 1 x 1) */
  CHECK(isinf(v) && v > 0);
  CHECK_EQ_INT(snr_of_matrix(one3, 1, 1, &v), 0);
  CHECK(v == 1.0);
  double col0[4] = {0}, col[4] = {1, 2, 3, 4};
  CHECK_EQ_INT(snr_of_matrix(col0, 4, 1, &v), 0); /* d x 1 */
  CHECK(isinf(v) && v > 0);
  CHECK_EQ_INT(snr_of_matrix(col, 4, 1, &v), 0);
  CHECK(v == 1.0);
  double cst[4] = {1e-40, 1e-40, 1e-40, 1e-40}; /* tiny but not zero: 1.0 */
  CHECK_EQ_INT(snr_of_matrix(cst, 1, 4, &v), 0);
  CHECK(v == 1.0);
  double r1[6] = {0, 0, 0, 0, 7, 0}; /* rank 1 with an exactly zero second value */
  CHECK_EQ_INT(snr_of_matrix(r1, 2, 3, &v), 0);
  CHECK(isinf(v) && v > 0);
  double nan1[3] = {1, NAN, 2};
  CHECK_EQ_INT(snr_of_matrix(nan1, 1, 3, &v), 0);
  CHECK(isnan(v));
  nan1[1] = -INFINITY;
  CHECK_EQ_INT(snr_of_matrix(nan1, 1, 3, &v), 0);
  CHECK(isnan(v));
  /* k-D: a batch of vectors (3 x 1 x 4) has one value per vector, its norm (3, 5, 1), and
   * Spectrum divides by S[0], the FIRST one: 8 / 1 / 3, not 8 / 5 */
  double bv[12] = {1, 2, 2, 0, 0, 0, 3, 4, 1, 0, 0, 0};
  CHECK_EQ_INT(snr_of_batch(bv, 3, 1, 4, &v), 0);
  CHECK_CLOSE(v, 2.6666666666666665, 1e-15, 0);
  double bm[24] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2, 3, 4, 5, 6};
  CHECK_EQ_INT(snr_of_batch(bm, 2, 3, 4, &v), 0); /* S[0] is three numbers: NaN */
  CHECK(isnan(v));

  /* all singular values above the threshold: noise counts as 1.0 */
  double flat[2] = {3, 3};
  CHECK_CLOSE(snr_from_singular_values(flat, 2, 2, 2), 6.0 / 1.0 / 3.0, 1e-15, 0);

  /* §3 keep counts */
  CHECK_EQ_INT(snr_keep_count(1, 50), 0);
  CHECK_EQ_INT(snr_keep_count(1, 100), 1);
  CHECK_EQ_INT(snr_keep_count(12, 25), 3);
  CHECK_EQ_INT(snr_keep_count(12, 10), 1);
  CHECK_EQ_INT(snr_keep_count(3, 50), 1);

  /* §1 table: BERT names where "output.dense" is inside "attention.output.dense". */
  snr_input in[] = {
      {"encoder.layer.10.output.dense.weight", 2, {4, 6}, NULL},
      {"encoder.layer.2.output.dense.weight", 2, {4, 6}, NULL},
      {"encoder.layer.2.attention.output.dense.weight", 2, {4, 4}, NULL},
      {"encoder.layer.2.attention.output.dense.bias", 1, {4}, NULL},
      {"encoder.layer.10.attention.output.dense.weight", 2, {4, 4}, NULL},
      {"embeddings.LayerNorm.weight", 1, {4}, NULL},
      {"weight", 1, {4}, NULL},
  };
  snr_table t;
  CHECK_EQ_INT(snr_table_build(in, 7, NULL, 0, &t), 0);
  CHECK_EQ_INT(t.n, 5);
  CHECK_EQ_INT(t.ntypes, 2);
  if (t.n == 5 && t.ntypes == 2) {
    /* types sorted: attention.output.dense, embeddings.LayerNorm, output.dense; the
     * attention modules keep their first position but end as type output.dense */
    CHECK_STR_EQ(t.m[0].module, "encoder.layer.2.attention.output.dense");
    CHECK_STR_EQ(t.m[0].type, "output.dense");
    CHECK_STR_EQ(t.m[1].module, "encoder.layer.10.attention.output.dense");
    CHECK_STR_EQ(t.m[2].module, "embeddings.LayerNorm");
    CHECK_STR_EQ(t.m[3].module, "encoder.layer.2.output.dense");
    CHECK_STR_EQ(t.m[4].module, "encoder.layer.10.output.dense");
    CHECK_STR_EQ(t.types[0], "output.dense");
    CHECK_STR_EQ(t.types[1], "embeddings.LayerNorm");
    CHECK_EQ_INT(t.m[2].rows, 1);
    CHECK_EQ_INT(t.m[2].cols, 4);
    t.m[0].snr = 0.25;
    t.m[1].snr = INFINITY;
    t.m[2].snr = 1.0;
    t.m[3].snr = 0.25; /* tie with m[0]: JSON order decides */
    t.m[4].snr = 1e-05;
    int idx[5];
    CHECK_EQ_INT(snr_type_order(&t, 0, idx), 4);
    CHECK(idx[0] == 1 && idx[1] == 0 && idx[2] == 3 && idx[3] == 4);
    CHECK(snr_is_selected(&t, 1, 50) && snr_is_selected(&t, 0, 50) && !snr_is_selected(&t, 3, 50));
    CHECK(snr_selection_hash(&t, 50) != snr_selection_hash(&t, 25));
    /* exact bytes of json.dump(..., indent=4) as Python writes them for these values */
    char *js = write_to_string_(snr_write_json, &t);
    CHECK_STR_EQ(js,
                 "{\n"
                 "    \"encoder.layer.2.attention.output.dense\": {\n"
                 "        \"snr\": 0.25,\n"
                 "        \"type\": \"output.dense\"\n"
                 "    },\n"
                 "    \"encoder.layer.10.attention.output.dense\": {\n"
                 "        \"snr\": Infinity,\n"
                 "        \"type\": \"output.dense\"\n"
                 "    },\n"
                 "    \"embeddings.LayerNorm\": {\n"
                 "        \"snr\": 1.0,\n"
                 "        \"type\": \"embeddings.LayerNorm\"\n"
                 "    },\n"
                 "    \"encoder.layer.2.output.dense\": {\n"
                 "        \"snr\": 0.25,\n"
                 "        \"type\": \"output.dense\"\n"
                 "    },\n"
                 "    \"encoder.layer.10.output.dense\": {\n"
                 "        \"snr\": 1e-05,\n"
                 "        \"type\": \"output.dense\"\n"
                 "    }\n"
                 "}");
    free(js);
    js = write_to_string_(snr_write_sorted_json, &t);
    CHECK_STR_EQ(js,
                 "{\n"
                 "    \"output.dense\": {\n"
                 "        \"encoder.layer.10.attention.output.dense\": Infinity,\n"
                 "        \"encoder.layer.2.attention.output.dense\": 0.25,\n"
                 "        \"encoder.layer.2.output.dense\": 0.25,\n"
                 "        \"encoder.layer.10.output.dense\": 1e-05\n"
                 "    },\n"
                 "    \"embeddings.LayerNorm\": {\n"
                 "        \"embeddings.LayerNorm\": 1.0\n"
                 "    }\n"
                 "}");
    free(js);
    char *ys = NULL;
    size_t yn = 0;
    FILE *f = open_memstream(&ys, &yn);
    snr_write_yaml(&t, 50, f);
    fclose(f);
    CHECK_STR_EQ(ys, "unfrozen_parameters:\n- ^lm_head.weight$\n- ^model.embed_tokens.weight$\n"
                     "# output.dense layers\n- encoder.layer.10.attention.output.dense\n"
                     "- encoder.layer.2.attention.output.dense\n"
                     "# embeddings.LayerNorm layers\n");
    free(ys);

    /* JSON round trip through the cache reader (Infinity and NaN literals) */
    const char *tmp = getenv("TEST_TMP");
    char *path = xasprintf("%s/snr_rt.%d.json", tmp ? tmp : "/tmp", (int)getpid());
    t.m[2].snr = NAN;
    CHECK_EQ_INT(snr_save_json(&t, path), 0);
    double keep[5];
    for (int i = 0; i < 5; i++) keep[i] = t.m[i].snr, t.m[i].snr = -1;
    CHECK_EQ_INT(snr_load_json(&t, path), 0);
    CHECK(t.m[0].snr == keep[0] && isinf(t.m[1].snr) && isnan(t.m[2].snr) && t.m[4].snr == keep[4]);
    remove(path);
    free(path);
  }
  snr_table_free(&t);

  /* --types: restricts; an unknown type names the known ones */
  const char *only[] = {"output.dense"};
  CHECK_EQ_INT(snr_table_build(in, 7, only, 1, &t), 0);
  CHECK_EQ_INT(t.n, 4);
  snr_table_free(&t);
  const char *wrong[] = {"output.dens"};
  CHECK_EQ_INT(snr_table_build(in, 7, wrong, 1, &t), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "output.dens");
  CHECK_CONTAINS(st_errmsg(), "attention.output.dense");

  /* shapes as Spectrum hands them to svdvals; data_tensor (a tied head reads the embedding) */
  snr_input kd[] = {
      {"a.batch_vec.weight", 3, {3, 1, 4}, NULL},  {"a.batch_mat.weight", 3, {2, 3, 4}, NULL},
      {"a.conv.weight", 4, {4, 3, 2, 2}, NULL},    {"a.conv_rows.weight", 4, {2, 1, 1, 3}, NULL},
      {"a.scalar.weight", 0, {0}, NULL},           {"a.empty.weight", 2, {0, 4}, NULL},
      {"lm_head.weight", 2, {6, 4}, "model.embed_tokens.weight"},
  };
  CHECK_EQ_INT(snr_table_build(kd, 7, NULL, 0, &t), 0);
  for (int i = 0; i < t.n; i++) {
    const snr_module *e = &t.m[i];
    if (!strcmp(e->module, "a.batch_vec"))
      CHECK(e->batch == 3 && e->rows == 1 && e->cols == 4 && !e->nan_by_shape);
    else if (!strcmp(e->module, "a.conv_rows"))
      CHECK(e->batch == 2 && e->rows == 1 && e->cols == 3 && !e->nan_by_shape);
    else if (!strcmp(e->module, "lm_head"))
      CHECK(!strcmp(e->data_tensor, "model.embed_tokens.weight") && e->rows == 6 && !e->nan_by_shape);
    else
      CHECK_MSG(e->nan_by_shape, "%s", e->module);
    if (strcmp(e->module, "lm_head")) CHECK_STR_EQ(e->data_tensor, e->tensor);
  }
  snr_table_free(&t);

  /* a NaN is never selected, even at 100 % (Spectrum's sort could put it first) */
  snr_input nn[] = {{"model.layers.0.n.weight", 1, {4}, NULL},
                    {"model.layers.1.n.weight", 1, {4}, NULL},
                    {"model.layers.2.n.weight", 1, {4}, NULL}};
  CHECK_EQ_INT(snr_table_build(nn, 3, NULL, 0, &t), 0);
  if (t.n == 3) {
    t.m[0].snr = NAN;
    t.m[1].snr = 1.0;
    t.m[2].snr = INFINITY;
    int idx[3];
    CHECK_EQ_INT(snr_type_order(&t, 0, idx), 3);
    CHECK(idx[0] == 2 && idx[1] == 1 && idx[2] == 0);
    CHECK_EQ_INT(snr_type_keep(&t, idx, 3, 100), 2);
    CHECK_EQ_INT(snr_type_keep(&t, idx, 3, 67), 2);
    CHECK_EQ_INT(snr_type_keep(&t, idx, 3, 34), 1);
    CHECK(!snr_is_selected(&t, 0, 100) && snr_is_selected(&t, 1, 100));
  }
  snr_table_free(&t);

  char *slug = snr_slug("Qwen/Qwen3_8B");
  CHECK_STR_EQ(slug, "Qwen-Qwen3-8B");
  free(slug);
  return test_done();
}
