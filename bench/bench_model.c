/* Single-rank training speed of the model on the CPU: forward, backward and optimizer time
 * per step, tokens/s and achieved GFLOP/s against the machine's measured sgemm GFLOP/s,
 * for full training and for only the top fraction of blocks trainable. bench/
 * run_model_bench.sh runs this and bench/peer_torch_model.py (the same model in PyTorch)
 * in one go and prints the ratios.
 *
 * Output lines "RESULT spectrain MODE fwd_ms bwd_ms opt_ms step_ms tokens_per_s gflops". */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/model.h"
#include "model/optim.h"
#include "io/weights.h"
#include "util/err.h"
#include "util/mem.h"
#include "util/opt.h"
#include "util/rng.h"

char *openblas_get_corename(void); /* OpenBLAS extension: the kernel set it chose */

typedef struct {
  double fwd, bwd, opt, cpu;
} step_times;

static double cpu_time_s_(void) { /* process CPU time: robust on a shared, loaded machine */
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Matrix FLOPs of one training step: the forward, plus the backward of every unit at or
 * above the lowest one that needs a gradient (input-gradient products where needed,
 * weight-gradient products for trainable matrices). */
static double train_flops_(const model_config *c, int B, int T, int top_blocks, int full) {
  double N = (double)B * T, C = c->hidden_size, F = c->intermediate_size;
  double HD = (double)c->num_attention_heads * c->head_dim,
         KVD = (double)c->num_key_value_heads * c->head_dim;
  double mats = 2.0 * N * (C * HD + 2 * C * KVD + HD * C + 3 * C * F);
  double attn = 2.0 * 2.0 * N * T * HD;
  double head = 2.0 * N * C * c->vocab_size;
  double fwd = model_forward_flops(c, B, T);
  int L = c->num_hidden_layers;
  if (full) return fwd + 2.0 * (L * (mats + attn) + head) - 0; /* embedding grad: no matmul */
  /* top blocks: input + weight grads of everything, attention backward = 2x forward;
   * head frozen: input gradient only */
  return fwd + top_blocks * (2.0 * mats + 2.0 * attn) + head;
}

/* sgemm GFLOP/s of the fastest of `reps` products, by wall time and per CPU-second. */
static void sgemm_gflops_(int n, int reps, double *wall, double *cpu) {
  float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n),
        *c = calloc((size_t)n * n, sizeof(float));
  for (int i = 0; i < n * n; i++) a[i] = (float)(i % 7) * 0.1f, b[i] = (float)(i % 5) * 0.1f;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1, a, n, b, n, 0, c, n);
  double bw = 1e30, bc = 1e30;
  for (int r = 0; r < reps; r++) {
    double c0 = cpu_time_s_(), t0 = time_now_s();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1, a, n, b, n, 0, c, n);
    double t = time_now_s() - t0, tc = cpu_time_s_() - c0;
    bw = t < bw ? t : bw;
    bc = tc < bc ? tc : bc;
  }
  free(a), free(b), free(c);
  *wall = 2.0 * n * n * (double)n / bw / 1e9;
  *cpu = 2.0 * n * n * (double)n / bc / 1e9;
}

static int run_(const model_config *cfg, int B, int T, int steps, int warm, double top_frac,
                double sgemm, const char *mode) {
  model_weights mw;
  int rc = model_weights_init_random(cfg, 1234, 0.02, &mw);
  if (rc) return rc;
  int L = cfg->num_hidden_layers;
  int top = (int)floor(top_frac * L + 0.5); /* at least one block */
  if (top < 1) top = 1;
  int full = top_frac >= 1.0;
  if (!full)
    for (int i = 0; i < mw.tt.n; i++)
      mw.tt.t[i].trainable = mw.tt.t[i].layer >= L - top;
  model_weights_enable_grads(&mw);
  model_opts o = {.batch = B, .seq_len = T, .grad_checkpointing = 0,
                  .lowest_grad_unit = model_lowest_grad_unit(&mw.tt)};
  model_ctx *ctx;
  if ((rc = model_ctx_create(cfg, kernels_cpu(), &o, &ctx))) {
    model_weights_free(&mw);
    return rc;
  }
  const kernels *K = kernels_cpu();
  float *m = calloc(mw.numel, sizeof *m), *v = calloc(mw.numel, sizeof *v);
  int32_t *tok = malloc(sizeof(int32_t) * B * T), *tgt = malloc(sizeof(int32_t) * B * T);
  rng_t r;
  rng_seed(&r, 7);
  step_times best = {0, 0, 0, 0}; /* the fastest timed step (wall), and the least CPU time */
  double best_step = 1e30, best_cpu = 1e30;
  for (int s = 0; s < warm + steps; s++) {
    for (int i = 0; i < B * T; i++) tok[i] = (int32_t)rng_below(&r, (uint64_t)cfg->vocab_size);
    for (int i = 0; i < B * T; i++)
      tgt[i] = (i % T) + 1 < T ? tok[i + 1] : MODEL_IGNORE_INDEX;
    double c0 = cpu_time_s_(), t0 = time_now_s();
    model_weights_zero_grads(&mw);
    double ls = 0;
    int64_t cnt = 0;
    if ((rc = model_forward(ctx, mw.units, tok, tgt, &ls, &cnt))) break;
    double t1 = time_now_s();
    model_backward(ctx, mw.units, tgt, (float)(1.0 / cnt));
    double t2 = time_now_s();
    double ss = 0;
    for (int i = 0; i < mw.tt.n; i++)
      if (mw.tt.t[i].trainable) ss += K->sum_squares(mw.grad + mw.offset[i], mw.tt.t[i].numel);
    double coef = grad_clip_coef(sqrt(ss), 1.0);
    for (int i = 0; i < mw.tt.n; i++) {
      const tensor_desc *d = &mw.tt.t[i];
      if (!d->trainable) continue;
      size_t off = mw.offset[i];
      if (coef < 1.0) K->scale(mw.grad + off, (float)coef, d->numel);
      K->adamw(mw.data + off, mw.grad + off, m + off, v + off, d->numel, 1e-4f, 0.9f, 0.999f,
               1e-8f, d->decay ? 0.1f : 0.0f, s + 1);
    }
    double t3 = time_now_s(), c3 = cpu_time_s_();
    if (s >= warm && t3 - t0 < best_step) {
      best_step = t3 - t0;
      best.fwd = t1 - t0, best.bwd = t2 - t1, best.opt = t3 - t2;
    }
    if (s >= warm && c3 - c0 < best_cpu) best_cpu = c3 - c0;
    if (s == 0) fprintf(stderr, "spectrain %s: first-step loss %.4f\n", mode, ls / cnt);
  }
  if (!rc) {
    double f = best.fwd, b = best.bwd, op = best.opt, st = f + b + op;
    double flops = train_flops_(cfg, B, T, top, full);
    printf("RESULT spectrain %s %.2f %.2f %.2f %.2f %.1f %.2f %.2f\n", mode, 1e3 * f, 1e3 * b,
           1e3 * op, 1e3 * st, B * T / st, flops / st / 1e9, 1e3 * best_cpu);
    printf("  spectrain %-6s fwd %8.1f ms  bwd %8.1f ms  opt %6.1f ms  step %8.1f ms  "
           "%8.0f tokens/s  %6.1f GFLOP/s (%.0f%% of sgemm)  cpu %.1f ms = %.1f GFLOP/s per "
           "CPU-second  activations %s\n",
           mode, 1e3 * f, 1e3 * b, 1e3 * op, 1e3 * st, B * T / st, flops / st / 1e9,
           100 * flops / st / 1e9 / sgemm, 1e3 * best_cpu, flops / best_cpu / 1e9,
           mem_human(model_ctx_bytes(ctx), (char[32]){0}, 32));
  }
  free(m), free(v), free(tok), free(tgt);
  model_ctx_free(ctx);
  model_weights_free(&mw);
  return rc;
}

int main(int argc, char **argv) {
  static const opt_cmd cmd = {"bench_model", "", 0, 0,
                              "training step time of the model on the CPU (one rank)", NULL};
  long L = 8, C = 256, F = 704, H = 8, KV = 4, V = 256, B = 4, T = 256, steps = 5, warm = 1;
  double top = 0.25;
  opt_spec specs[] = {
      {"layers", OPT_INT, "L", "blocks (default 8)", &L},
      {"hidden", OPT_INT, "C", "hidden size (default 256)", &C},
      {"ffn", OPT_INT, "F", "intermediate size (default 704)", &F},
      {"heads", OPT_INT, "H", "attention heads (default 8)", &H},
      {"kv-heads", OPT_INT, "KV", "key/value heads (default 4)", &KV},
      {"vocab", OPT_INT, "V", "vocabulary (default 256)", &V},
      {"batch", OPT_INT, "B", "sequences per step (default 4)", &B},
      {"seq", OPT_INT, "T", "tokens per sequence (default 256)", &T},
      {"steps", OPT_INT, "N", "timed steps; the fastest counts (default 5)", &steps},
      {"warmup", OPT_INT, "N", "untimed steps first (default 1)", &warm},
      {"top-frac", OPT_DOUBLE, "X", "fraction of top blocks trainable in the partial run "
                                    "(default 0.25)", &top},
  };
  int np;
  char **pos;
  int rc = opt_parse(&cmd, specs, (int)(sizeof specs / sizeof specs[0]), argc, argv, &np, &pos);
  if (rc) return rc == OPT_HELP_SHOWN ? 0 : st_report(rc);
  free(pos);
  model_config c;
  memset(&c, 0, sizeof c);
  snprintf(c.model_type, sizeof c.model_type, "llama");
  c.hidden_size = (int)C, c.intermediate_size = (int)F, c.num_hidden_layers = (int)L;
  c.num_attention_heads = (int)H, c.num_key_value_heads = (int)KV, c.head_dim = (int)(C / H);
  c.vocab_size = (int)V, c.max_position_embeddings = (int)T, c.rms_norm_eps = 1e-5;
  c.rope_theta = 10000.0, c.bos_token_id = c.eos_token_id = -1;
  double g, gc;
  sgemm_gflops_(1024, 10, &g, &gc);
  printf("RESULT sgemm %.2f %.2f\n", g, gc);
  printf("  sgemm 1024^3: %.1f GFLOP/s, %.1f GFLOP per CPU-second (OpenBLAS %s kernels)\n", g,
         gc, openblas_get_corename());
  printf("  model: L=%ld C=%ld F=%ld H=%ld KV=%ld V=%ld, batch %ld x %ld tokens, %.2f GFLOP "
         "forward\n", L, C, F, H, KV, V, B, T, model_forward_flops(&c, (int)B, (int)T) / 1e9);
  if ((rc = run_(&c, (int)B, (int)T, (int)steps, (int)warm, 1.0, g, "full"))) return st_report(rc);
  if ((rc = run_(&c, (int)B, (int)T, (int)steps, (int)warm, top, g, "top"))) return st_report(rc);
  return 0;
}
