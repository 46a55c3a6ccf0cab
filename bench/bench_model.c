/* Single-rank training speed of the model on the CPU: forward, backward and optimizer time
 * per step, tokens/s and achieved GFLOP/s against the GEMM roofline measured in the same
 * run (the kernel table's own gemm on a large square product), for full training and for
 * only the top fraction of blocks trainable. bench/run_model_bench.sh runs this and
 * bench/peer_torch_model.py (the same model in PyTorch) in one go and prints the ratios.
 *
 * --precision picks the kernel table through kernels_select (as training.bf16 does): fp32 is
 * the CPU table; bf16 is whatever this build's CPU backend gives for training.bf16. A build
 * whose CPU backend refuses bf16 prints "RESULT unsupported PRECISION reason" and exits 0,
 * so that the harness can say "not supported by this build".
 *
 * Output lines:
 *   RESULT gemm spectrain PRECISION N gflops_wall gflops_per_cpu_second
 *   RESULT spectrain PRECISION MODE fwd_ms bwd_ms opt_ms step_ms tokens_per_s gflops cpu_ms */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io/weights.h"
#include "job/job.h"
#include "model/model.h"
#include "model/optim.h"
#include "train/backend.h"
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

/* GEMM GFLOP/s of the kernel table's gemm (C = A B^T, n x n x n, as the model's linear
 * layers call it; bf16: gemm_bf16 on bf16 operands into fp32, as the bf16 model calls it):
 * the fastest of `reps` products, by wall time and per CPU-second. */
static int gemm_gflops_(const kernels *K, int bf16, int n, int reps, double *wall,
                        double *cpu) {
  size_t nn = (size_t)n * n;
  float *ha = malloc(sizeof(float) * nn), *hb = malloc(sizeof(float) * nn);
  float *a = K->alloc(sizeof(float) * nn), *b = K->alloc(sizeof(float) * nn),
        *c = K->alloc(sizeof(float) * nn);
  if (!ha || !hb || !a || !b || !c) {
    free(ha), free(hb), K->free(a), K->free(b), K->free(c);
    return st_fail(ST_ERUNTIME, "bench_model: out of memory for the %d^3 roofline GEMM", n);
  }
  for (size_t i = 0; i < nn; i++) ha[i] = (float)(i % 7) * 0.1f, hb[i] = (float)(i % 5) * 0.1f;
  K->upload(a, ha, sizeof(float) * nn);
  K->upload(b, hb, sizeof(float) * nn);
  bf16_t *a16 = NULL, *b16 = NULL; /* bf16: compute-memory copies of a and b */
  if (bf16) {
    a16 = K->alloc(sizeof(bf16_t) * nn), b16 = K->alloc(sizeof(bf16_t) * nn);
    if (!a16 || !b16) {
      free(ha), free(hb), K->free(a), K->free(b), K->free(c), K->free(a16), K->free(b16);
      return st_fail(ST_ERUNTIME, "bench_model: out of memory for the %d^3 roofline GEMM", n);
    }
    K->to_bf16(a16, a, nn);
    K->to_bf16(b16, b, nn);
  }
  double bw = 1e30, bc = 1e30;
  for (int r = -1; r < reps; r++) { /* r = -1: warm-up (primitive creation) */
    double c0 = cpu_time_s_(), t0 = time_now_s();
    if (bf16) K->gemm_bf16(0, 1, n, n, n, 1.0f, a16, n, b16, n, 0.0f, c, 0, n);
    else K->gemm(0, 1, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    K->sync();
    if (r < 0) continue;
    double t = time_now_s() - t0, tc = cpu_time_s_() - c0;
    bw = t < bw ? t : bw;
    bc = tc < bc ? tc : bc;
  }
  if (bf16) K->free(a16), K->free(b16);
  free(ha), free(hb), K->free(a), K->free(b), K->free(c);
  *wall = 2.0 * n * n * (double)n / bw / 1e9;
  *cpu = 2.0 * n * n * (double)n / bc / 1e9;
  return 0;
}

static int run_(const kernels *K, int bf16, const char *prec, const model_config *cfg, int B,
                int T,
                int steps, int warm, double top_frac, double roof, const char *mode) {
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
  /* bf16 (training.bf16): the model computes from a bf16 copy of the weights; the optimizer
   * steps the fp32 master weights and the trainable tensors' copies are rounded again after
   * each step (part of the step's time, as in the trainer) */
  if (bf16) model_weights_make_bf16(&mw);
  model_opts o = {.batch = B, .seq_len = T, .grad_checkpointing = 0,
                  .lowest_grad_unit = model_lowest_grad_unit(&mw.tt), .bf16 = bf16};
  model_ctx *ctx;
  if ((rc = model_ctx_create(cfg, K, &o, &ctx))) {
    model_weights_free(&mw);
    return rc;
  }
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
      if (bf16) K->to_bf16(mw.data16 + off, mw.data + off, d->numel);
    }
    double t3 = time_now_s(), c3 = cpu_time_s_();
    if (s >= warm && t3 - t0 < best_step) {
      best_step = t3 - t0;
      best.fwd = t1 - t0, best.bwd = t2 - t1, best.opt = t3 - t2;
    }
    if (s >= warm && c3 - c0 < best_cpu) best_cpu = c3 - c0;
    if (s == 0) fprintf(stderr, "spectrain %s %s: first-step loss %.4f\n", prec, mode, ls / cnt);
  }
  if (!rc) { /* a hash of the weights after all steps: a kernel change that keeps fp32
               * results bit-identical keeps it */
    uint64_t hsh = 1469598103934665603ull;
    const unsigned char *pb = (const unsigned char *)mw.data;
    for (size_t i = 0; i < mw.numel * sizeof(float); i++) hsh = (hsh ^ pb[i]) * 1099511628211ull;
    fprintf(stderr, "spectrain %s %s: weights after %d steps: hash %016llx\n", prec, mode,
            warm + steps, (unsigned long long)hsh);
  }
  if (!rc) {
    double f = best.fwd, b = best.bwd, op = best.opt, st = f + b + op;
    double flops = train_flops_(cfg, B, T, top, full);
    printf("RESULT spectrain %s %s %.2f %.2f %.2f %.2f %.1f %.2f %.2f\n", prec, mode, 1e3 * f,
           1e3 * b, 1e3 * op, 1e3 * st, B * T / st, flops / st / 1e9, 1e3 * best_cpu);
    char pct[48] = "";
    if (roof > 0)
      snprintf(pct, sizeof pct, " (%.0f%% of the GEMM roofline)", 100 * flops / st / 1e9 / roof);
    printf("  spectrain %s %-4s fwd %8.1f ms  bwd %8.1f ms  opt %6.1f ms  step %8.1f ms  "
           "%8.0f tokens/s  %6.1f GFLOP/s%s  cpu %.1f ms = %.1f GFLOP/s per CPU-second  "
           "activations %s\n",
           prec, mode, 1e3 * f, 1e3 * b, 1e3 * op, 1e3 * st, B * T / st, flops / st / 1e9, pct,
           1e3 * best_cpu, flops / best_cpu / 1e9,
           mem_human(model_ctx_bytes(ctx), (char[32]){0}, 32));
  }
  free(m), free(v), free(tok), free(tgt);
  model_ctx_free(ctx);
  model_weights_free(&mw);
  return rc;
}

int main(int argc, char **argv) {
  static const opt_cmd cmd = {
      "bench_model", "", 0, 0, "training step time of the model on the CPU (one rank)",
      "Prints RESULT lines for bench/run_model_bench.sh. --precision bf16 asks this build's "
      "CPU backend for training.bf16; a build that refuses it prints \"RESULT unsupported "
      "bf16 REASON\" and exits 0."};
  long L = 8, C = 256, F = 704, H = 8, KV = 4, V = 256, B = 4, T = 256, steps = 5, warm = 1;
  long roof_n = 2048;
  int tied = 0;
  const char *prec = "fp32";
  double top = 0.25;
  opt_spec specs[] = {
      {"layers", OPT_INT, "L", "blocks (default 8)", &L},
      {"hidden", OPT_INT, "C", "hidden size (default 256)", &C},
      {"ffn", OPT_INT, "F", "intermediate size (default 704)", &F},
      {"heads", OPT_INT, "H", "attention heads (default 8)", &H},
      {"kv-heads", OPT_INT, "KV", "key/value heads (default 4)", &KV},
      {"vocab", OPT_INT, "V", "vocabulary (default 256)", &V},
      {"tied", OPT_FLAG, NULL, "tie lm_head to the embedding (default: separate)", &tied},
      {"batch", OPT_INT, "B", "sequences per step (default 4)", &B},
      {"seq", OPT_INT, "T", "tokens per sequence (default 256)", &T},
      {"steps", OPT_INT, "N", "timed steps; the fastest counts (default 5; 0: the roofline "
                              "only)", &steps},
      {"warmup", OPT_INT, "N", "untimed steps first (default 1)", &warm},
      {"top-frac", OPT_DOUBLE, "X", "fraction of top blocks trainable in the partial run "
                                    "(default 0.25)", &top},
      {"precision", OPT_STR, "P", "fp32 or bf16 (training.bf16 on the cpu backend; default "
                                  "fp32)", &prec},
      {"roofline", OPT_INT, "N", "size of the square roofline GEMM (default 2048; 0: skip)",
       &roof_n},
  };
  int np;
  char **pos;
  int rc = opt_parse(&cmd, specs, (int)(sizeof specs / sizeof specs[0]), argc, argv, &np, &pos);
  if (rc) return rc == OPT_HELP_SHOWN ? 0 : st_report(rc);
  free(pos);
  int bf16 = strcmp(prec, "bf16") == 0;
  if (!bf16 && strcmp(prec, "fp32") != 0)
    return st_report(st_fail(ST_EINPUT, "bench_model: --precision: expected fp32 or bf16, "
                                        "found '%s'", prec));
  const kernels *K;
  coll_transport transport;
  if ((rc = kernels_select("bench_model", BACKEND_CPU, bf16, 0, &K, &transport))) {
    if (!bf16) return st_report(rc);
    printf("RESULT unsupported bf16 %s\n", st_errmsg());
    printf("  spectrain bf16: not supported by this build (%s)\n", st_errmsg());
    st_clear_error();
    return 0;
  }
  model_config c;
  memset(&c, 0, sizeof c);
  snprintf(c.model_type, sizeof c.model_type, "llama");
  c.hidden_size = (int)C, c.intermediate_size = (int)F, c.num_hidden_layers = (int)L;
  c.num_attention_heads = (int)H, c.num_key_value_heads = (int)KV, c.head_dim = (int)(C / H);
  c.vocab_size = (int)V, c.max_position_embeddings = (int)T, c.rms_norm_eps = 1e-5;
  c.rope_theta = 10000.0, c.bos_token_id = c.eos_token_id = -1;
  c.tie_word_embeddings = tied;
  double g = 0, gc = 0;
  if (roof_n > 0) {
    if ((rc = gemm_gflops_(K, bf16, (int)roof_n, 5, &g, &gc))) return st_report(rc);
    printf("RESULT gemm spectrain %s %ld %.2f %.2f\n", prec, roof_n, g, gc);
    printf("  spectrain %s gemm %ld^3: %.1f GFLOP/s, %.1f GFLOP per CPU-second (%s; OpenBLAS "
           "%s kernels)\n", prec, roof_n, g, gc, kernels_select_description(),
           openblas_get_corename());
  }
  printf("  model: L=%ld C=%ld F=%ld H=%ld KV=%ld V=%ld%s, batch %ld x %ld tokens, %.2f GFLOP "
         "forward\n", L, C, F, H, KV, V, tied ? " tied" : "", B, T,
         model_forward_flops(&c, (int)B, (int)T) / 1e9);
  if (steps <= 0) return 0; /* the roofline only */
  if ((rc = run_(K, bf16, prec, &c, (int)B, (int)T, (int)steps, (int)warm, 1.0, g, "full")))
    return st_report(rc);
  if ((rc = run_(K, bf16, prec, &c, (int)B, (int)T, (int)steps, (int)warm, top, g, "top")))
    return st_report(rc);
  return 0;
}
