/* training.padding: longest. data_trim compacts a micro-batch to one past its last counted
 * target (rounded up), and model_ctx_set_seq_len runs the same context on the shorter
 * batch: loss and every gradient equal those of the full-length batch (a causal model's loss
 * at a position never sees later positions), with the head's logits kept whole and in
 * recomputed blocks, and with the bottom blocks frozen. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/data.h"
#include "io/weights.h"
#include "model/model.h"
#include "test.h"
#include "util/err.h"
#include "util/rng.h"

enum { B = 3, T = 40, V = 64 };

static void test_trim_(void) {
  int32_t in[B * T], tg[B * T];
  for (int i = 0; i < B * T; i++) in[i] = i, tg[i] = DATA_IGNORE_INDEX;
  /* nothing counted: one block of `multiple` */
  CHECK_EQ_INT(data_trim(in, tg, B, T, 16), 16);
  CHECK_EQ_INT(in[16], T); /* row 1 moved to 16: its first input was T */
  for (int i = 0; i < B * T; i++) in[i] = i, tg[i] = DATA_IGNORE_INDEX;
  tg[0 * T + 9] = 5;  /* row 0: last counted target at 9 */
  tg[1 * T + 20] = 7; /* row 1: at 20 -> 21 -> 32 (multiple 16) */
  tg[2 * T + 3] = 1;
  CHECK_EQ_INT(data_trim(in, tg, B, T, 16), 32);
  for (int b = 0; b < B; b++)
    for (int t = 0; t < 32; t++) CHECK_EQ_INT(in[b * 32 + t], b * T + t);
  CHECK_EQ_INT(tg[1 * 32 + 20], 7);
  CHECK_EQ_INT(tg[2 * 32 + 3], 1);
  /* multiple 1: exactly one past the last target; a full row keeps T */
  for (int i = 0; i < B * T; i++) in[i] = i, tg[i] = DATA_IGNORE_INDEX;
  tg[2 * T + 20] = 3;
  CHECK_EQ_INT(data_trim(in, tg, B, T, 1), 21);
  CHECK_EQ_INT(in[2 * 21 + 20], 2 * T + 20);
  for (int i = 0; i < B * T; i++) in[i] = i, tg[i] = DATA_IGNORE_INDEX;
  tg[T - 1] = 0;
  CHECK_EQ_INT(data_trim(in, tg, B, T, 16), T); /* 40 rounds to 48 > T: T, untouched */
  CHECK_EQ_INT(in[T], T);
}

/* loss and gradients of one micro-batch on a context of the given length */
static double run_(model_weights *mw, model_ctx *ctx, int Tr, const int32_t *tok,
                   const int32_t *tgt, float *grads) {
  CHECK_EQ_INT(model_ctx_set_seq_len(ctx, Tr), 0);
  CHECK_EQ_INT(model_ctx_seq_len(ctx), Tr);
  model_weights_zero_grads(mw);
  double loss = 0;
  int64_t cnt = 0;
  CHECK_EQ_INT(model_forward(ctx, mw->units, tok, tgt, &loss, &cnt), 0);
  model_backward(ctx, mw->units, tgt, 1.0f);
  memcpy(grads, mw->grad, mw->numel * sizeof *grads);
  return loss / (double)cnt;
}

static void test_model_(int chunk, int frozen_blocks) {
  model_config c;
  memset(&c, 0, sizeof c);
  snprintf(c.model_type, sizeof c.model_type, "llama");
  c.hidden_size = 32, c.intermediate_size = 48, c.num_hidden_layers = 3;
  c.num_attention_heads = 4, c.num_key_value_heads = 2, c.head_dim = 8, c.vocab_size = V;
  c.max_position_embeddings = T, c.rms_norm_eps = 1e-5, c.rope_theta = 10000.0;
  c.bos_token_id = c.eos_token_id = -1;
  model_weights mw;
  CHECK_EQ_INT(model_weights_init_random(&c, 7, 0.2, &mw), 0);
  for (int i = 0; i < mw.tt.n; i++) mw.tt.t[i].trainable = mw.tt.t[i].unit > frozen_blocks;
  model_weights_enable_grads(&mw);
  model_opts o = {.batch = B, .seq_len = T, .lowest_grad_unit = model_lowest_grad_unit(&mw.tt),
                  .head_chunk_tokens = chunk};
  model_ctx *ctx = NULL;
  CHECK_EQ_INT(model_ctx_create(&mw.cfg, kernels_cpu(), &o, &ctx), 0);
  if (!ctx) return;
  /* SFT-like rows: prompt (ignored), answer (counted), then padding (ignored) */
  int32_t tok[B * T], tgt[B * T], tok2[B * T], tgt2[B * T];
  static const int answer[B][2] = {{4, 11}, {6, 23}, {2, 7}};
  rng_t r;
  rng_seed(&r, 3);
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++) {
      tok[b * T + t] = (int32_t)(rng_u64(&r) % V);
      tgt[b * T + t] = t >= answer[b][0] && t < answer[b][1] ? (int32_t)(rng_u64(&r) % V)
                                                             : DATA_IGNORE_INDEX;
    }
  memcpy(tok2, tok, sizeof tok);
  memcpy(tgt2, tgt, sizeof tgt);
  float *g_full = malloc(mw.numel * sizeof(float)), *g_trim = malloc(mw.numel * sizeof(float));
  double l_full = run_(&mw, ctx, T, tok, tgt, g_full);
  int Tr = data_trim(tok2, tgt2, B, T, 8);
  CHECK_EQ_INT(Tr, 24);
  double l_trim = run_(&mw, ctx, Tr, tok2, tgt2, g_trim);
  CHECK_MSG(fabs(l_full - l_trim) <= 1e-6 * fabs(l_full), "chunk %d: loss %.9g vs %.9g", chunk,
            l_full, l_trim);
  double worst = 0, scale = 0;
  for (size_t i = 0; i < mw.numel; i++) {
    double d = fabs((double)g_full[i] - g_trim[i]);
    if (d > worst) worst = d;
    if (fabs(g_full[i]) > scale) scale = fabs(g_full[i]);
  }
  CHECK_MSG(scale > 0 && worst <= 1e-5 * scale, "chunk %d frozen %d: gradients differ by %.3g "
            "(largest %.3g)", chunk, frozen_blocks, worst, scale);
  /* and back to the full length: the same numbers as the first time */
  double again = run_(&mw, ctx, T, tok, tgt, g_trim);
  CHECK(again == l_full);
  CHECK(memcmp(g_full, g_trim, mw.numel * sizeof(float)) == 0);
  CHECK_EQ_INT(model_ctx_set_seq_len(ctx, T + 1), ST_ERUNTIME);
  CHECK_CONTAINS(st_errmsg(), "outside [1, 40]");
  CHECK_EQ_INT(model_ctx_set_seq_len(ctx, 0), ST_ERUNTIME);
  st_clear_error();
  free(g_full);
  free(g_trim);
  model_ctx_free(ctx);
  model_weights_free(&mw);
}

int main(void) {
  log_set_quiet(1);
  test_trim_();
  test_model_(0, 0);  /* logits kept whole */
  test_model_(10, 0); /* head in blocks of 10 token rows, recomputed in backward */
  test_model_(0, 2);  /* bottom blocks frozen: forward only below the lowest trainable unit */
  return test_done();
}
