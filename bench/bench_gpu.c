/* One-GPU training speed of a Llama-3-8B-shaped block stack: tokens/s and model FLOPs
 * utilisation (MFU) for full training and 25 % trainable, offload off and on, through the
 * real trainer path (shard/fsdp on one rank, the CUDA kernel table, the NCCL or staged
 * transport). Random weights made in memory (no files). Not a test: prints a table.
 *
 * Shape (defaults): hidden 4096, intermediate 14336, 32 heads, 8 kv heads, head_dim 128,
 * vocab 128256, 8 blocks (2.80 G parameters: 1.75 G in blocks, 0.53 G embedding, 0.53 G
 * untied lm_head), fp32 master weights (11.2 GB), batch 4 x 2048 tokens.
 *
 * "25 % trainable" = the top quarter of the blocks (2 of 8: 25 % of the block parameters);
 * the embedding, the lm_head and the other blocks are frozen, so backward runs through the
 * head (input gradient only) and the top 2 blocks.
 *
 * MFU is reported two ways, both against gpu_peak_bf16_flops():
 *   MFU(6N) = 6 x N x tokens / time / peak with N = the parameters that take part in matrix
 *     products (every block matrix and the lm_head; not the embedding table, which is a
 *     lookup, nor the norm weights), the same N for full and 25 % trainable: the usual
 *     "6 x params x tokens" convention (for 25 % trainable it credits work that is not done).
 *   MFU(exec) = the matrix FLOPs this step actually executes (forward of everything incl. the
 *     causal half of the attention products, backward of the units that need it: input
 *     gradients, weight gradients for trainable matrices only, the attention's recompute)
 *     / time / peak (exec_flops_).
 * Modes: full / top25 (25 % trainable), each without and with `offload: cpu` (every shard in
 * pinned host memory, AdamW on the host); top25-offload-tr offloads only the trainable state
 * (`offload: cpu_trainable`, fsdp offload 2: frozen parameter shards stay on the GPU).
 * Step time = wall time of the timed steps (zero grads, forward/backward, optimizer step)
 * divided by their number, from a synchronised start to the end of the last step with the
 * device synchronised and a background optimizer step (offload) finished; warm-up steps are
 * not timed. "fwd+bwd" and "opt" are the per-step means of the forward/backward (device
 * synchronised) and of the fsdp_step call (with offload: the norm and the start of the
 * background AdamW, whose remaining time overlaps the next forward).
 *
 * Without a GPU (or without CUDA in the build) it prints one "bench_gpu: SKIP ..." line and
 * exits 0. Runs as one MPI rank (a singleton; mpiexec -n 1 works too). --backend cpu runs the same code on the CPU kernels (use a small shape): that is
 * how the program is checked on machines without a GPU. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job/job.h"
#include "kernels/gpu.h"
#include "kernels/kernels.h"
#include "train/backend.h"
#include "model/model.h"
#include "model/tensors.h"
#include "mpi/coll.h"
#include "mpi/comm.h"
#include "shard/fsdp.h"
#include "shard/plan.h"
#include "util/err.h"
#include "util/hash.h"
#include "util/mem.h"
#include "util/opt.h"
#include "util/rng.h"

typedef struct {
  double step_s, fwd_bwd_s, opt_s, tokens_per_s, mfu_6n, mfu_exec, exec_flops, loss;
  uint64_t trainable, host_bytes, compute_bytes;
} result_;

/* Parameters that take part in matrix products: block matrices and the lm_head. */
static double matmul_params_(const tensor_table *tt) {
  double n = 0;
  for (int i = 0; i < tt->n; i++)
    if (tt->t[i].ndim == 2 && tt->t[i].kind != TK_EMBED) n += (double)tt->t[i].numel;
  return n;
}

/* Matrix FLOPs one training step executes (2 per multiply-add). top_blocks < 0: full.
 * Attention: the causal products only (each of QK^T and PV over T(T+1)/2 query-key pairs per
 * head; the kernels skip the blocks above the diagonal, up to one block's rounding, not
 * counted); its backward 2.5x the forward (dQ, dK, dV, dP and the recomputed QK^T).
 * Blocks that run backward compute input gradients (the lowest one included) and weight
 * gradients of trainable matrices; the frozen head computes its input gradient only. */
static double exec_flops_(const model_config *c, int B, int T, int top_blocks) {
  double N = (double)B * T, C = c->hidden_size, F = c->intermediate_size;
  double HD = (double)c->num_attention_heads * c->head_dim,
         KVD = (double)c->num_key_value_heads * c->head_dim;
  double mats = 2.0 * N * (C * HD + 2 * C * KVD + HD * C + 3 * C * F);
  double attn = 2.0 * 2.0 * N * HD * 0.5 * (T + 1.0);
  double head = 2.0 * N * C * c->vocab_size;
  int L = c->num_hidden_layers;
  double fwd = L * (mats + attn) + head;
  if (top_blocks < 0) return fwd + L * (2.0 * mats + 2.5 * attn) + 2.0 * head;
  return fwd + top_blocks * (2.0 * mats + 2.5 * attn) + head;
}

/* Fast random init of this rank's shards (the bench has billions of parameters: fsdp_fill's
 * per-element callback would take minutes): matrices uniform in +-0.02*sqrt(3) (std 0.02),
 * norm weights 1. Deterministic per (tensor, element). */
static void fill_random_(fsdp *f) {
  const shard_plan *p = f->plan;
  for (int u = 0; u < p->n_units; u++)
    for (int k = 0; k < PB_NKINDS; k++) {
      const plan_unit *pu = &p->units[u];
      if (!pu->shard[k]) continue;
      float *h = xcalloc(pu->shard[k], sizeof(float));
      for (int s = 0; s < pu->nseg[k]; s++) {
        const plan_seg *sg = &pu->seg[k][s];
        int one = f->tt->t[sg->tensor].ndim == 1;
        uint64_t base = hash64_u64(HASH64_INIT, (uint64_t)sg->tensor);
        float *dst = h + sg->shard_off;
#pragma omp parallel for schedule(static)
        for (uint64_t e = 0; e < sg->count; e++) {
          uint64_t x = hash64_u64(base, sg->tensor_off + e);
          float r = (float)((double)(x >> 11) * (1.0 / 9007199254740992.0)) - 0.5f;
          dst[e] = one ? 1.0f : 0.0693f * r; /* 0.02 * sqrt(12) * r: std 0.02 */
        }
      }
      mem_space sp = f->space[k];
      ms_copy(&f->ms, sp, f->sh[u].param[k], MS_HOST, h, pu->shard[k] * sizeof(float));
      f->k->sync();
      free(h);
    }
}

static int run_(const model_config *cfg, const kernels *K, int B, int T, int steps, int warm,
                int top_blocks, int offload, double peak, result_ *res) {
  memset(res, 0, sizeof *res);
  tensor_table tt;
  int rc = tensor_table_build(cfg, &tt);
  if (rc) return rc;
  int L = cfg->num_hidden_layers;
  for (int i = 0; i < tt.n; i++)
    tt.t[i].trainable = top_blocks < 0 || tt.t[i].layer >= L - top_blocks;
  shard_plan plan;
  if ((rc = plan_build(&tt, 1, 0, &plan))) {
    tensor_table_free(&tt);
    return rc;
  }
  fsdp f;
  fsdp_opts fo = {offload, 1, 1, 1, 0, 0, 0}; /* prefetch 1 unit, reshard after forward */
  if ((rc = fsdp_create(&tt, &plan, cfg, K, &fo, &f))) goto out_plan;
  fill_random_(&f);
  model_ctx *ctx = NULL;
  model_opts mo = {.batch = B, .seq_len = T, .lowest_grad_unit = plan.lowest_grad_unit};
  if ((rc = model_ctx_create(cfg, K, &mo, &ctx))) goto out_fsdp;
  ms_note(&f.ms, MS_COMPUTE, MC_ACT, model_ctx_bytes(ctx));
  size_t n = (size_t)B * T;
  int32_t *tok = xmalloc(n * sizeof(int32_t)), *tgt = xmalloc(n * sizeof(int32_t));
  rng_t r;
  rng_seed(&r, 7);
  fsdp_adamw h = {0.9, 0.95, 1e-8, 0.1, 1.0};
  double sum_fb = 0, sum_opt = 0, t_first = 0;
  for (int s = 0; s < warm + steps && !rc; s++) {
    for (size_t i = 0; i < n; i++) tok[i] = (int32_t)rng_below(&r, (uint64_t)cfg->vocab_size);
    for (size_t i = 0; i < n; i++)
      tgt[i] = (int)(i % (size_t)T) + 1 < T ? tok[i + 1] : MODEL_IGNORE_INDEX;
    int64_t counted = (int64_t)B * (T - 1);
    if (s == warm) { /* the clock starts with everything before finished */
      fsdp_wait_step(&f);
      K->sync();
      t_first = time_now_s();
    }
    double t0 = time_now_s();
    fsdp_zero_grads(&f);
    double ls = 0;
    int64_t c = 0;
    rc = fsdp_forward_backward(&f, ctx, tok, tgt, (float)(1.0 / (double)counted), &ls, &c);
    K->sync();
    double t1 = time_now_s(), gn = 0;
    /* with offload the AdamW may go on in the background, overlapping the next step's
     * forward, as in training: only the end of the last timed step waits for it */
    if (!rc) rc = fsdp_step(&f, &h, 1e-5, s + 1, &gn);
    double t2 = time_now_s();
    if (s >= warm) sum_fb += t1 - t0, sum_opt += t2 - t1;
    res->loss = c ? ls / (double)c : NAN;
  }
  fsdp_wait_step(&f);
  K->sync();
  double sum_step = time_now_s() - t_first;
  if (!rc) {
    res->step_s = sum_step / steps;
    res->fwd_bwd_s = sum_fb / steps;
    res->opt_s = sum_opt / steps;
    res->tokens_per_s = (double)n / res->step_s;
    res->exec_flops = exec_flops_(cfg, B, T, top_blocks);
    double n6 = 6.0 * matmul_params_(&tt) * (double)n;
    res->mfu_6n = peak > 0 ? n6 / res->step_s / peak : NAN; /* NAN: peak unknown */
    res->mfu_exec = peak > 0 ? res->exec_flops / res->step_s / peak : NAN;
    res->trainable = plan_total_numel(&plan, PB_TRAIN);
    res->host_bytes = f.ms.peak_total[MS_HOST];
    res->compute_bytes = f.ms.peak_total[MS_COMPUTE];
  }
  free(tok);
  free(tgt);
  model_ctx_free(ctx);
out_fsdp:
  fsdp_free(&f);
out_plan:
  plan_free(&plan);
  tensor_table_free(&tt);
  return rc;
}

int main(int argc, char **argv) {
  static const opt_cmd cmd = {"bench_gpu", "", 0, 0,
                              "one-GPU training speed and MFU of a Llama-3-8B-shaped block "
                              "stack, full and 25 % trainable, offload off and on", NULL};
  long L = 8, C = 4096, F = 14336, H = 32, KV = 8, D = 128, V = 128256, B = 4, T = 2048;
  long steps = 3, warm = 2, bf16 = 1;
  const char *backend = "cuda", *only = "";
  opt_spec specs[] = {
      {"layers", OPT_INT, "L", "blocks (default 8)", &L},
      {"hidden", OPT_INT, "C", "hidden size (default 4096)", &C},
      {"ffn", OPT_INT, "F", "intermediate size (default 14336)", &F},
      {"heads", OPT_INT, "H", "attention heads (default 32)", &H},
      {"kv-heads", OPT_INT, "KV", "key/value heads (default 8)", &KV},
      {"head-dim", OPT_INT, "D", "head dimension (default 128)", &D},
      {"vocab", OPT_INT, "V", "vocabulary (default 128256)", &V},
      {"batch", OPT_INT, "B", "sequences per step (default 4)", &B},
      {"seq", OPT_INT, "T", "tokens per sequence (default 2048)", &T},
      {"steps", OPT_INT, "N", "timed steps, mean reported (default 3)", &steps},
      {"warmup", OPT_INT, "N", "untimed steps first (default 2)", &warm},
      {"bf16", OPT_INT, "0|1", "bf16 tensor-core matrix products (default 1)", &bf16},
      {"backend", OPT_STR, "NAME", "cuda (default) or cpu (checks the program without a GPU)",
       &backend},
      {"only", OPT_STR, "LIST", "run only these of full,full-offload,top25,top25-offload,"
                                "top25-offload-tr (comma-separated; default all)", &only},
  };
  int np;
  char **pos;
  int rc = opt_parse(&cmd, specs, (int)(sizeof specs / sizeof specs[0]), argc, argv, &np, &pos);
  if (rc) return rc == OPT_HELP_SHOWN ? 0 : st_report(rc);
  free(pos);
  if (steps < 1 || warm < 0 || B < 1 || T < 2)
    return st_report(st_fail(ST_EINPUT, "bench_gpu: expected --steps >= 1, --warmup >= 0, "
                                        "--batch >= 1, --seq >= 2"));
  const kernels *K = NULL;
  char why[256] = "";
  double peak = 0;
  int is_cpu = strcmp(backend, "cpu") == 0;
  if (!is_cpu && gpu_device_count(why, (int)sizeof why) < 1) {
    printf("bench_gpu: SKIP: no GPU (%s)\n", why);
    return 0;
  }
  /* one rank (an MPI singleton: NCCL bootstraps over MPI); the trainer's own selection:
   * the GPU, the CUDA table, NCCL for the unit collectives */
  if ((rc = comm_init(&argc, &argv))) return st_report(rc);
  coll_transport tr = COLL_TRANSPORT_MPI;
  rc = kernels_select("--backend", is_cpu ? BACKEND_CPU : BACKEND_CUDA, is_cpu ? 0 : (int)bf16,
                      comm_local_rank(), &K, &tr);
  if (!rc) rc = coll_set_transport(tr, K);
  if (rc && tr == COLL_TRANSPORT_NCCL) { /* e.g. a build whose NCCL transport is missing */
    st_report(rc);
    printf("bench_gpu: WARNING: NCCL transport unavailable, using mpi-staged: on one rank each "
           "unit's reduce-scatter then adds a download + upload of its gradient\n");
    tr = COLL_TRANSPORT_MPI_STAGED;
    rc = coll_set_transport(tr, K);
  }
  if (rc) {
    st_report(rc);
    comm_finalize();
    return 1;
  }
  if (!is_cpu) peak = gpu_peak_bf16_flops();
  printf("bench_gpu: %s; collectives %s\n", kernels_select_description(), coll_transport_name(tr));
  model_config c;
  memset(&c, 0, sizeof c);
  snprintf(c.model_type, sizeof c.model_type, "llama");
  c.hidden_size = (int)C, c.intermediate_size = (int)F, c.num_hidden_layers = (int)L;
  c.num_attention_heads = (int)H, c.num_key_value_heads = (int)KV, c.head_dim = (int)D;
  c.vocab_size = (int)V, c.max_position_embeddings = (int)T, c.rms_norm_eps = 1e-5;
  c.rope_theta = 500000.0, c.bos_token_id = c.eos_token_id = -1, c.initializer_range = 0.02;
  if ((rc = model_config_validate(&c, "bench_gpu"))) {
    st_report(rc);
    comm_finalize();
    return 2;
  }
  int top = (int)L / 4 > 0 ? (int)L / 4 : 1;
  printf("bench_gpu: %s backend on %s (bf16 peak %.0f TFLOP/s), %d OpenMP threads\n",
         K->name, is_cpu ? "the CPU" : gpu_device_name(), peak / 1e12, omp_get_max_threads());
  printf("  model: L=%ld C=%ld F=%ld H=%ld KV=%ld D=%ld V=%ld; batch %ld x %ld tokens; "
         "bf16 %ld; %ld warm-up + %ld timed steps\n",
         L, C, F, H, KV, D, V, B, T, bf16, warm, steps);
  static const struct {
    const char *name;
    int top, offload;
  } modes[] = {{"full", 0, 0}, {"full-offload", 0, 1}, {"top25", 1, 0}, {"top25-offload", 1, 1},
               {"top25-offload-tr", 1, 2}};
  enum { NMODES = (int)(sizeof modes / sizeof modes[0]) };
  result_ res[NMODES];
  int ok[NMODES] = {0};
  printf("| mode             | trainable | step ms | fwd+bwd ms | opt ms | tokens/s | MFU(6N) | "
         "MFU(exec) | exec TFLOP | peak compute | peak host |\n");
  printf("|------------------|-----------|---------|------------|--------|----------|---------|"
         "-----------|------------|--------------|-----------|\n");
  fflush(stdout);
  int failed = 0;
  for (int m = 0; m < NMODES; m++) {
    if (*only && !strstr(only, modes[m].name)) continue;
    if (*only) { /* "full" must not select "full-offload" by substring alone */
      const char *p = only;
      int hit = 0;
      size_t ln = strlen(modes[m].name);
      while ((p = strstr(p, modes[m].name))) {
        if ((p == only || p[-1] == ',') && (p[ln] == 0 || p[ln] == ',')) hit = 1;
        p += ln;
      }
      if (!hit) continue;
    }
    rc = run_(&c, K, (int)B, (int)T, (int)steps, (int)warm, modes[m].top ? top : -1,
              modes[m].offload, peak, &res[m]);
    if (rc) {
      st_report(rc);
      printf("| %-16s | failed (see the error above) |\n", modes[m].name);
      failed = 1;
      continue;
    }
    ok[m] = 1;
    char h1[32], h2[32], m1[16] = "n/a", m2[16] = "n/a";
    result_ *x = &res[m];
    if (peak > 0) {
      snprintf(m1, sizeof m1, "%.1f%%", 100 * x->mfu_6n);
      snprintf(m2, sizeof m2, "%.1f%%", 100 * x->mfu_exec);
    }
    printf("| %-16s | %9.3g | %7.1f | %10.1f | %6.1f | %8.0f | %7s | %9s | %10.4g | "
           "%12s | %9s |\n",
           modes[m].name, (double)x->trainable, 1e3 * x->step_s, 1e3 * x->fwd_bwd_s,
           1e3 * x->opt_s, x->tokens_per_s, m1, m2, x->exec_flops / 1e12,
           mem_human(x->compute_bytes, h1, sizeof h1), mem_human(x->host_bytes, h2, sizeof h2));
    printf("RESULT %s step_s %.6f tokens_per_s %.1f mfu_6n %.4f mfu_exec %.4f loss %.4f\n",
           modes[m].name, x->step_s, x->tokens_per_s, x->mfu_6n, x->mfu_exec, x->loss);
    fflush(stdout);
  }
  if (ok[0] && ok[1])
    printf("offload / no offload throughput, full training: %.2f\n",
           res[1].tokens_per_s / res[0].tokens_per_s);
  if (ok[2] && ok[3])
    printf("offload / no offload throughput, 25 %% trainable: %.2f (target >= 0.60)\n",
           res[3].tokens_per_s / res[2].tokens_per_s);
  if (ok[2] && ok[4])
    printf("offload of the trainable state only (frozen shards on the GPU) / no offload, 25 %% "
           "trainable: %.2f\n", res[4].tokens_per_s / res[2].tokens_per_s);
  if (ok[0] && peak > 0)
    printf("MFU(6N) full training without offload: %.1f %% (target >= 40 %%)\n",
           100 * res[0].mfu_6n);
  comm_finalize();
  return failed ? 1 : 0;
}
