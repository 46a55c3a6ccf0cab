/* Bad inputs to the model are errors that name what is wrong: missing or misshapen tensors
 * in a model directory, token ids and targets outside the vocabulary, impossible sizes.
 * Also: a model written by sft_write_f32 loads back bit for bit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "model/model.h"
#include "io/weights.h"
#include "nonfinite_patch.h"
#include "test.h"
#include "util/err.h"

static char tmp_[512];

static void copy_file_(const char *from, const char *to) {
  FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
  CHECK(a && b);
  if (a && b) {
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0) fwrite(buf, 1, n, b);
  }
  if (a) fclose(a);
  if (b) fclose(b);
}

/* Write the weights of `mw` into tmp_/model.safetensors, leaving out tensor `skip` and
 * giving tensor `bad_shape` a wrong first dimension (-1: none). */
static void write_model_(const model_weights *mw, int skip, int bad_shape) {
  sft_out_tensor *t = calloc((size_t)mw->tt.n, sizeof *t);
  int n = 0;
  for (int i = 0; i < mw->tt.n; i++) {
    if (i == skip) continue;
    const tensor_desc *d = &mw->tt.t[i];
    t[n].name = d->name;
    t[n].ndim = d->ndim;
    t[n].shape[0] = d->shape[0] - (i == bad_shape ? 1 : 0);
    t[n].shape[1] = d->shape[1];
    t[n].data = mw->data + mw->offset[i];
    n++;
  }
  char path[600];
  snprintf(path, sizeof path, "%s/model.safetensors", tmp_);
  CHECK_MSG(sft_write_f32(path, t, n, SFT_F32) == 0, "%s", st_errmsg());
  free(t);
}

int main(void) {
  const char *fx = getenv("FIXTURES");
  char src[512], path[600];
  snprintf(src, sizeof src, "%s/model/llama", fx ? fx : SPECTRAIN_SOURCE_DIR "/tests/fixtures");
  const char *tt = getenv("TEST_TMP");
  snprintf(tmp_, sizeof tmp_, "%s/model_errors_%d", tt ? tt : "/tmp", (int)getpid());
  mkdir(tmp_, 0755);
  snprintf(path, sizeof path, "%s/config.json", src);
  char dst[600];
  snprintf(dst, sizeof dst, "%s/config.json", tmp_);
  copy_file_(path, dst);

  model_weights mw, back;
  CHECK_MSG(model_weights_load(src, &mw) == 0, "%s", st_errmsg());

  /* round trip */
  write_model_(&mw, -1, -1);
  CHECK_MSG(model_weights_load(tmp_, &back) == 0, "%s", st_errmsg());
  CHECK(back.numel == mw.numel && memcmp(back.data, mw.data, mw.numel * sizeof(float)) == 0);
  model_weights_free(&back);

  /* a missing tensor is named */
  int i_down = tensor_table_find(&mw.tt, "model.layers.1.mlp.down_proj.weight");
  CHECK(i_down >= 0);
  write_model_(&mw, i_down, -1);
  CHECK_EQ_INT(model_weights_load(tmp_, &back), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "model.layers.1.mlp.down_proj.weight");
  CHECK_CONTAINS(st_errmsg(), "missing");

  /* a wrong shape is named with the expected shape */
  write_model_(&mw, -1, i_down);
  CHECK_EQ_INT(model_weights_load(tmp_, &back), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "model.layers.1.mlp.down_proj.weight");
  CHECK_CONTAINS(st_errmsg(), "expected shape (32, 64)");

  /* a NaN or infinity in any tensor (the embedding, a matrix, a norm) is bad input, named with
   * its index: model_weights_load is what `spectrain eval` reads */
  static const struct {
    const char *tensor;
    uint64_t elem;
    bad_kind k;
    const char *idx;
  } bad[] = {{"model.embed_tokens.weight", 0, BAD_NAN, "[0, 0]"},
             {"model.embed_tokens.weight", 95 * 32 + 31, BAD_NINF, "[95, 31]"},
             {"model.layers.1.mlp.down_proj.weight", 64 + 5, BAD_PINF, "[1, 5]"},
             {"model.norm.weight", 7, BAD_NAN, "[7]"}};
  for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
    write_model_(&mw, -1, -1);
    snprintf(path, sizeof path, "%s/model.safetensors", tmp_);
    CHECK_EQ_INT(patch_nonfinite_(path, bad[b].tensor, bad[b].elem, bad[b].k), 0);
    CHECK_EQ_INT(model_weights_load(tmp_, &back), ST_EINPUT);
    CHECK_CONTAINS(st_errmsg(), bad[b].tensor);
    CHECK_CONTAINS(st_errmsg(), bad[b].idx);
    CHECK_CONTAINS(st_errmsg(), bad_kind_name_[bad[b].k]);
    CHECK_CONTAINS(st_errmsg(), "must be finite");
  }

  /* token ids and targets outside the vocabulary */
  model_opts o = {.batch = 1, .seq_len = 4, .lowest_grad_unit = mw.tt.n_units};
  model_ctx *ctx = NULL;
  CHECK(model_ctx_create(&mw.cfg, kernels_cpu(), &o, &ctx) == 0);
  int32_t tok[4] = {1, 2, 96, 3}, tgt[4] = {2, -100, 5, 100};
  CHECK_EQ_INT(model_embed_forward(ctx, &mw.units[0], tok), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "token id 96 at sequence 0 position 2");
  tok[2] = 95;
  double loss = 0;
  int64_t cnt = 0;
  CHECK_EQ_INT(model_forward(ctx, mw.units, tok, tgt, &loss, &cnt), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "target 100 at sequence 0 position 3");
  tgt[3] = -1;
  CHECK_EQ_INT(model_forward(ctx, mw.units, tok, tgt, &loss, &cnt), ST_EINPUT);
  tgt[3] = 0;
  CHECK_EQ_INT(model_forward(ctx, mw.units, tok, tgt, &loss, &cnt), 0);
  CHECK_EQ_INT(cnt, 3);
  model_ctx_free(ctx);

  /* the prediction of the activation bytes is what creating the context allocates:
   * inference, training (each block keeps its activations), checkpointed, chunked logits */
  model_opts po[] = {{.batch = 2, .seq_len = 8, .lowest_grad_unit = mw.tt.n_units},
                     {.batch = 3, .seq_len = 8, .lowest_grad_unit = 0},
                     {.batch = 3, .seq_len = 8, .lowest_grad_unit = 2, .grad_checkpointing = 1},
                     {.batch = 4, .seq_len = 16, .lowest_grad_unit = 1, .head_chunk_tokens = 5}};
  for (size_t i = 0; i < sizeof po / sizeof po[0]; i++) {
    uint64_t pred = 0;
    CHECK_EQ_INT(model_ctx_predict_bytes(&mw.cfg, kernels_cpu(), &po[i], &pred), 0);
    CHECK_EQ_INT(model_ctx_create(&mw.cfg, kernels_cpu(), &po[i], &ctx), 0);
    CHECK_MSG(ctx && pred == model_ctx_bytes(ctx) && pred > 0, "case %zu: predicted %llu, "
              "allocated %zu", i, (unsigned long long)pred, ctx ? model_ctx_bytes(ctx) : 0);
    model_ctx_free(ctx);
  }
  /* a huge prediction costs nothing: 2^30 tokens are counted, not allocated */
  model_opts huge = {.batch = 1 << 20, .seq_len = 1 << 10, .lowest_grad_unit = 0};
  uint64_t hp = 0;
  CHECK_EQ_INT(model_ctx_predict_bytes(&mw.cfg, kernels_cpu(), &huge, &hp), 0);
  CHECK(hp > ((uint64_t)1 << 30) * 32 * 4); /* at least the (N, C) residual stream */

  /* impossible sizes */
  o.batch = 0;
  CHECK_EQ_INT(model_ctx_create(&mw.cfg, kernels_cpu(), &o, &ctx), ST_EINPUT);
  CHECK(ctx == NULL);
  o.batch = 1;
  model_config odd = mw.cfg;
  odd.num_key_value_heads = 3;
  CHECK_EQ_INT(model_ctx_create(&odd, kernels_cpu(), &o, &ctx), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "num_key_value_heads");

  model_weights_free(&mw);
  snprintf(path, sizeof path, "%s/model.safetensors", tmp_);
  unlink(path);
  unlink(dst);
  rmdir(tmp_);
  return test_done();
}
