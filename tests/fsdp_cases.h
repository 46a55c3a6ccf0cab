/* The cases of the FSDP-vs-reference test, shared by tests/mpi/test_fsdp.c (1, 2, 4 ranks)
 * and tests/unit/test_fsdp.c (one process, also under ASan + leak check). */
#ifndef SPECTRAIN_TESTS_FSDP_CASES_H
#define SPECTRAIN_TESTS_FSDP_CASES_H
#include <math.h>

#include "model/model.h"
#include "model/optim.h"
#include "io/weights.h"
#include "kernels/bf16.h"
#include "mpi/coll.h"
#include "mpi/comm.h"
#include "shard/fsdp.h"
#include "test.h"
#include "util/err.h"
#include "util/hash.h"

enum { L_ = 3, B_ = 2, A_ = 2, T_ = 8, STEPS_ = 3 };
#define BF16_TOL_ 1e-4   /* bf16 cases: losses, norms, parameters (relative) */
#define BF16_TOL_M_ 1e-3 /* bf16 cases: AdamW m */

/* The kernel table of the sharded side (NULL: the CPU table). tests/mpi/test_fsdp_guard.c
 * sets the guard table, so that any host access to compute memory in shard/fsdp crashes.
 * The reference always runs on the CPU table. */
static const kernels *fsdp_cases_k_ = NULL;

/* The sharded side's losses and gradient norms of the last run of each case (case index,
 * step), for tests that compare two strategies (tests/mpi/test_fsdp_hybrid.c). */
enum { FSDP_CASES_MAX_ = 16 };
static double fsdp_cases_loss_[FSDP_CASES_MAX_][STEPS_], fsdp_cases_norm_[FSDP_CASES_MAX_][STEPS_];
static int fsdp_cases_idx_ = 0;

static float value_(int tensor, uint64_t e, void *arg) {
  const tensor_table *tt = arg;
  uint64_t h = hash64_u64(hash64_u64(HASH64_INIT, (uint64_t)tensor), e);
  float u = (float)((double)(h >> 11) / 9007199254740992.0) - 0.5f; /* [-0.5, 0.5) */
  return tt->t[tensor].ndim == 1 ? 1.0f + 0.2f * u : 0.3f * u;
}

static void config_(model_config *c, int tied) {
  memset(c, 0, sizeof *c);
  snprintf(c->model_type, sizeof c->model_type, "%s", tied ? "qwen3" : "llama");
  c->hidden_size = 32;
  c->intermediate_size = 48;
  c->num_hidden_layers = L_;
  c->num_attention_heads = 4;
  c->num_key_value_heads = 2;
  c->head_dim = 8;
  c->vocab_size = 61;
  c->max_position_embeddings = 64;
  c->rms_norm_eps = 1e-6;
  c->rope_theta = 10000;
  c->qk_norm = tied;
  c->tie_word_embeddings = tied;
  c->initializer_range = 0.02;
  c->bos_token_id = c->eos_token_id = -1;
}

/* Global sample g of step s: tokens and shifted targets (every 5th target ignored). */
static void sample_(int s, int g, int32_t *tok, int32_t *tgt) {
  for (int t = 0; t < T_; t++) {
    uint64_t h = hash64_u64(hash64_u64(hash64_u64(7, (uint64_t)s), (uint64_t)g), (uint64_t)t);
    tok[t] = (int32_t)(h % 61);
    tgt[t] = (t * 7 + g + s) % 5 == 0 ? MODEL_IGNORE_INDEX : (int32_t)((h >> 20) % 61);
  }
}

typedef struct {
  float **full;
  uint64_t count, bad;
} piece_check_;

static int piece_visit_(int tensor, uint64_t first, uint64_t count, float *data, void *arg) {
  piece_check_ *pc = arg;
  for (uint64_t e = 0; e < count; e++) pc->bad += data[e] != pc->full[tensor][first + e];
  pc->count += count;
  return 0;
}

static float piece_value_(int tensor, uint64_t e) { return (float)tensor + 1e-3f * (float)(e % 977); }

static int piece_write_(int tensor, uint64_t first, uint64_t count, float *data, void *arg) {
  (void)arg;
  for (uint64_t e = 0; e < count; e++) data[e] = piece_value_(tensor, first + e);
  return 0;
}

typedef struct {
  const char *name;
  int tied, offload /* fsdp_opts.offload: 0, 1, 2 */, prefetch, limit, reshard;
  int overlap; /* fsdp_opts.overlap_step */
  int partial; /* 0 all, 1 spectrum-style (block 1 q/down, block 2, head), 2 top block only */
  int bf16;    /* fsdp_opts.bf16 and a bf16 model on both sides (the reference keeps an fp32
                * master and refreshes its bf16 copy after each step, as fsdp does) */
} case_;

static void trainable_(tensor_table *tt, int partial) {
  for (int i = 0; i < tt->n; i++) {
    tensor_desc *d = &tt->t[i];
    if (partial == 0) d->trainable = 1;
    else if (partial == 1)
      d->trainable = (d->layer == 1 && (d->kind == TK_Q || d->kind == TK_DOWN)) || d->layer == 2 ||
                     d->unit == L_ + 1;
    else d->trainable = d->layer == L_ - 1;
  }
}

static void run_case_(const case_ *cs) {
  int N = comm_size(), r = comm_rank();
  model_config cfg;
  config_(&cfg, cs->tied);
  CHECK_EQ_INT(model_config_validate(&cfg, cs->name), 0);
  const kernels *K = kernels_cpu();
  const fsdp_adamw h = {0.9, 0.95, 1e-8, 0.1, 0.5};
  const double base_lr = 3e-3;
  const int G = B_ * A_ * 2; /* global batch; per rank: B_ rows x (G / (B_ * N)) micro-steps */
  int A = G / (B_ * N);
  if (A < 1 || G % (B_ * N)) return; /* not divisible for this rank count */

  /* ---- reference: one process, everything ---- */
  model_weights mw;
  CHECK_EQ_INT(model_weights_init_random(&cfg, 1, 0.02, &mw), 0);
  trainable_(&mw.tt, cs->partial);
  for (int i = 0; i < mw.tt.n; i++)
    for (uint64_t e = 0; e < mw.tt.t[i].numel; e++)
      model_weights_tensor(&mw, i)[e] = value_(i, e, &mw.tt);
  model_weights_enable_grads(&mw);
  if (cs->bf16) model_weights_make_bf16(&mw);
  model_opts mo = {.batch = B_, .seq_len = T_, .lowest_grad_unit = model_lowest_grad_unit(&mw.tt),
                   .bf16 = cs->bf16};
  model_ctx *rctx = NULL;
  CHECK_EQ_INT(model_ctx_create(&cfg, K, &mo, &rctx), 0);
  float *m = calloc(mw.numel, sizeof(float)), *v = calloc(mw.numel, sizeof(float));
  double ref_loss[STEPS_], ref_norm[STEPS_];
  int32_t tok[B_ * T_], tgt[B_ * T_];
  for (int s = 0; s < STEPS_; s++) {
    model_weights_zero_grads(&mw);
    int64_t cnt = 0;
    for (int g = 0; g < G; g++) {
      sample_(s, g, tok, tgt);
      for (int t = 0; t < T_; t++) cnt += tgt[t] != MODEL_IGNORE_INDEX;
    }
    double ls = 0;
    int64_t c = 0;
    for (int mb = 0; mb < G / B_; mb++) {
      for (int b = 0; b < B_; b++) sample_(s, mb * B_ + b, tok + b * T_, tgt + b * T_);
      CHECK_EQ_INT(model_forward(rctx, mw.units, tok, tgt, &ls, &c), 0);
      model_backward(rctx, mw.units, tgt, (float)(1.0 / (double)cnt));
    }
    ref_loss[s] = ls / (double)cnt;
    double ss = 0;
    for (int i = 0; i < mw.tt.n; i++)
      if (mw.tt.t[i].trainable) ss += grad_sum_squares(mw.grad + mw.offset[i], mw.tt.t[i].numel);
    ref_norm[s] = sqrt(ss);
    double coef = grad_clip_coef(sqrt(ss), h.max_grad_norm);
    double lr = lr_at_step(LR_LINEAR, s, STEPS_ + 2, 1, base_lr);
    for (int i = 0; i < mw.tt.n; i++) {
      const tensor_desc *d = &mw.tt.t[i];
      if (!d->trainable) continue;
      size_t o = mw.offset[i];
      for (uint64_t e = 0; e < d->numel; e++) mw.grad[o + e] *= (float)coef;
      adamw_step(mw.data + o, mw.grad + o, m + o, v + o, d->numel, (float)lr, (float)h.beta1,
                 (float)h.beta2, (float)h.eps, d->decay ? (float)h.weight_decay : 0.0f, s + 1);
    }
    if (cs->bf16) model_weights_make_bf16(&mw);
  }
  model_ctx_free(rctx);

  /* ---- sharded ---- */
  tensor_table tt;
  CHECK_EQ_INT(tensor_table_build(&cfg, &tt), 0);
  trainable_(&tt, cs->partial);
  /* the plan shards over the shard group (coll_set_groups; without it: every rank) */
  coll_groups grp;
  coll_get_groups(&grp);
  shard_plan plan;
  CHECK_EQ_INT(plan_build(&tt, grp.shard_size, grp.shard_rank, &plan), 0);
  CHECK_EQ_INT(plan_agree(&plan, &tt), 0);
  fsdp_opts fo = {cs->offload, cs->prefetch, cs->limit, cs->reshard, cs->overlap, cs->bf16, 0};
  /* bf16: the sharded side sums gradients over ranks in another order, so its fp32 master
   * differs from the reference's in the last bits, and a bf16 copy can round the other way */
  const double tol = cs->bf16 ? BF16_TOL_ : 1e-5;
  fsdp f;
  const kernels *KS = fsdp_cases_k_ ? fsdp_cases_k_ : K;
  CHECK_EQ_INT(fsdp_create(&tt, &plan, &cfg, KS, &fo, &f), 0);
  fsdp_fill(&f, value_, &tt);
  model_ctx *ctx = NULL;
  model_opts so = {.batch = B_, .seq_len = T_, .lowest_grad_unit = plan.lowest_grad_unit,
                   .bf16 = cs->bf16};
  CHECK_EQ_INT(model_ctx_create(&cfg, KS, &so, &ctx), 0);
  CHECK_EQ_INT(model_ctx_lowest_grad_unit(ctx), model_lowest_grad_unit(&tt));
  int32_t *mtok = malloc((size_t)A * B_ * T_ * sizeof(int32_t));
  int32_t *mtgt = malloc((size_t)A * B_ * T_ * sizeof(int32_t));
  for (int s = 0; s < STEPS_; s++) {
    uint64_t cnt = 0;
    for (int mb = 0; mb < A; mb++)
      for (int b = 0; b < B_; b++) {
        size_t o = ((size_t)mb * B_ + b) * T_;
        sample_(s, (mb * N + r) * B_ + b, mtok + o, mtgt + o);
        for (int t = 0; t < T_; t++) cnt += mtgt[o + t] != MODEL_IGNORE_INDEX;
      }
    CHECK_EQ_INT(coll_allreduce_sum_u64(&cnt, 1), 0);
    fsdp_zero_grads(&f);
    double ls = 0;
    int64_t c = 0;
    coll_counters c0, c1;
    coll_counters_get(&c0);
    for (int mb = 0; mb < A; mb++)
      CHECK_EQ_INT(fsdp_forward_backward(&f, ctx, mtok + (size_t)mb * B_ * T_,
                                         mtgt + (size_t)mb * B_ * T_, (float)(1.0 / (double)cnt),
                                         &ls, &c), 0);
    coll_counters_get(&c1);
    uint64_t eg, er;
    fsdp_expected_bytes(&f, 1, &eg, &er);
    CHECK_MSG(c1.bytes[COLL_ALLGATHER] - c0.bytes[COLL_ALLGATHER] == A * eg,
              "%s: all-gather bytes %llu, theory %llu", cs->name,
              (unsigned long long)(c1.bytes[COLL_ALLGATHER] - c0.bytes[COLL_ALLGATHER]),
              (unsigned long long)(A * eg));
    CHECK_MSG(c1.bytes[COLL_REDUCE_SCATTER] - c0.bytes[COLL_REDUCE_SCATTER] == A * er,
              "%s: reduce-scatter bytes %llu, theory %llu", cs->name,
              (unsigned long long)(c1.bytes[COLL_REDUCE_SCATTER] - c0.bytes[COLL_REDUCE_SCATTER]),
              (unsigned long long)(A * er));
    /* hybrid: every reduced shard all-reduced across the replicas, nothing else */
    uint64_t rep_bytes = c1.bytes[COLL_REPLICA_ALLREDUCE] - c0.bytes[COLL_REPLICA_ALLREDUCE];
    uint64_t rep_want = grp.replicas > 1 ? A * er / (uint64_t)grp.shard_size : 0;
    CHECK_MSG(rep_bytes == rep_want, "%s: replica all-reduce bytes %llu, theory %llu", cs->name,
              (unsigned long long)rep_bytes, (unsigned long long)rep_want);
    double sums[2] = {ls, (double)c};
    coll_allreduce_sum_f64(sums, 2);
    CHECK_EQ_INT((uint64_t)sums[1], cnt);
    fsdp_cases_loss_[fsdp_cases_idx_][s] = sums[0] / sums[1];
    CHECK_MSG(fabs(sums[0] / sums[1] - ref_loss[s]) <= tol * fabs(ref_loss[s]),
              "%s step %d: loss %.9g vs reference %.9g", cs->name, s, sums[0] / sums[1], ref_loss[s]);
    double gn;
    CHECK_EQ_INT(fsdp_step(&f, &h, lr_at_step(LR_LINEAR, s, STEPS_ + 2, 1, base_lr), s + 1, &gn), 0);
    fsdp_cases_norm_[fsdp_cases_idx_][s] = gn;
    CHECK_MSG(fabs(gn - ref_norm[s]) <= tol * ref_norm[s], "%s step %d: grad norm %.9g vs %.9g",
              cs->name, s, gn, ref_norm[s]);
  }
  /* gathered parameters == reference; frozen tensors unchanged */
  float **full = NULL;
  CHECK_EQ_INT(fsdp_gather_tensors(&f, 0, -1, &full), 0);
  double worst = 0, scale = 0;
  int changed_frozen = 0;
  for (int i = 0; i < tt.n; i++) {
    const float *want = model_weights_tensor(&mw, i);
    for (uint64_t e = 0; e < tt.t[i].numel; e++) {
      double w = want[e]; /* bf16: the reference's frozen tensors as stored (rounded) */
      if (cs->bf16 && !tt.t[i].trainable) w = bf16_to_f32(bf16_from_f32(want[e]));
      worst = fmax(worst, fabs((double)full[i][e] - w));
      scale = fmax(scale, fabs(want[e]));
      float v0 = value_(i, e, &tt);
      if (cs->bf16) v0 = bf16_to_f32(bf16_from_f32(v0)); /* frozen: stored in bf16 */
      if (!tt.t[i].trainable) changed_frozen += full[i][e] != v0;
    }
  }
  CHECK_MSG(worst <= tol * scale, "%s: parameters differ from the reference by %.3g (max %.3g)",
            cs->name, worst, scale);
  /* every shard group gathered its own copy: the replicas must be bit-identical (they took
   * the same AdamW steps on the same all-reduced gradients), not merely close */
  uint64_t ph = HASH64_INIT;
  for (int i = 0; i < tt.n; i++) ph = hash64_bytes(ph, full[i], tt.t[i].numel * sizeof(float));
  CHECK_MSG(comm_agree_u64(ph, "the gathered parameters") == 0, "%s: %s", cs->name,
            st_errmsg());
  CHECK_EQ_INT(changed_frozen, 0);
  /* this rank's pieces are the gathered tensors' ranges, and all ranks' pieces cover every
   * element once per shard group (the checkpoint writer relies on both) */
  piece_check_ pc = {full, 0, 0};
  CHECK_EQ_INT(fsdp_foreach_piece(&f, 0, piece_visit_, &pc), 0);
  fsdp_pieces_done(&f, 0);
  CHECK_EQ_INT(pc.bad, 0);
  uint64_t total = 0, covered = pc.count;
  for (int i = 0; i < tt.n; i++) total += tt.t[i].numel;
  coll_allreduce_sum_u64(&covered, 1);
  CHECK_EQ_INT(covered, total * (uint64_t)grp.replicas);
  fsdp_free_tensors(&f, full);
  /* optimizer state: the m of trainable tensors gathers to the reference's m */
  CHECK_EQ_INT(fsdp_gather_tensors(&f, 1, 0, &full), 0);
  if (r == 0) {
    worst = scale = 0;
    for (int i = 0; i < tt.n; i++) {
      CHECK(!!full[i] == !!tt.t[i].trainable);
      if (!full[i]) continue;
      for (uint64_t e = 0; e < tt.t[i].numel; e++) {
        worst = fmax(worst, fabs((double)full[i][e] - m[mw.offset[i] + e]));
        scale = fmax(scale, fabs(m[mw.offset[i] + e]));
      }
    }
    CHECK_MSG(worst <= (cs->bf16 ? BF16_TOL_M_ : 1e-4) * scale, "%s: AdamW m differs by %.3g (max %.3g)", cs->name, worst, scale);
  }
  fsdp_free_tensors(&f, full);
  /* the background optimizer ran when asked for (offload only) */
  CHECK_EQ_INT(f.async_steps, cs->offload && cs->overlap > 0 ? (uint64_t)STEPS_ : 0);
  /* a restore writes into the pieces: after fsdp_pieces_done(f, 1) the shards hold it (for
   * compute shards the pieces are host copies; nothing may reach the shards before) */
  CHECK_EQ_INT(fsdp_foreach_piece(&f, 2, piece_write_, NULL), 0);
  fsdp_pieces_done(&f, 1);
  CHECK_EQ_INT(fsdp_gather_tensors(&f, 2, -1, &full), 0);
  uint64_t wrong = 0;
  for (int i = 0; i < tt.n; i++)
    for (uint64_t e = 0; full[i] && e < tt.t[i].numel; e++)
      wrong += full[i][e] != piece_value_(i, e);
  CHECK_MSG(wrong == 0, "%s: %llu elements of v not restored through the pieces", cs->name,
            (unsigned long long)wrong);
  fsdp_free_tensors(&f, full);
  CHECK_EQ_INT(f.ms.cur[MS_HOST][MC_STAGING], cs->offload ? 4 * f.staging_n : 0);

  /* accounted shard memory == the formula; nothing gathered remains */
  uint64_t st = plan_total_shard(&plan, PB_TRAIN), sf = plan_total_shard(&plan, PB_FROZEN);
  mem_space sp = cs->offload ? MS_HOST : MS_COMPUTE;
  const uint64_t es = cs->bf16 ? 2 : 4; /* bf16: frozen shards and the gathered copy halved */
  CHECK_EQ_INT(f.ms.cur[sp][MC_PARAM_TRAIN], es * st);
  CHECK_EQ_INT(f.ms.cur[sp][MC_MASTER], cs->bf16 ? 4 * st : 0);
  CHECK_EQ_INT(f.ms.cur[cs->offload == 1 ? MS_HOST : MS_COMPUTE][MC_PARAM_FROZEN], es * sf);
  CHECK_EQ_INT(f.ms.cur[sp][MC_GRAD], 4 * st);
  CHECK_EQ_INT(f.ms.cur[sp][MC_OPTIM], 8 * st);
  CHECK_EQ_INT(f.ms.cur[MS_COMPUTE][MC_GATHER], 0);
  CHECK_EQ_INT(f.ms.cur[MS_COMPUTE][MC_GRAD_FULL], 0);
  CHECK_EQ_INT(f.live, 0);
  if (cs->offload) CHECK(f.ms.copied_bytes[MS_HOST][MS_COMPUTE] > 0);
  /* with the cap on, never more than max(1 + prefetch, 2 if tied) units gathered */
  if (cs->limit && cs->reshard) {
    uint64_t big = 0, second = 0;
    for (int u = 0; u < plan.n_units; u++) {
      uint64_t b = es * (plan.units[u].padded[0] + plan.units[u].padded[1]);
      if (b > big) second = big, big = b;
      else if (b > second) second = b;
    }
    int live = 1 + cs->prefetch > 1 + cs->tied ? 1 + cs->prefetch : 1 + cs->tied;
    CHECK_MSG(f.ms.peak[MS_COMPUTE][MC_GATHER] <= (live >= 2 ? big + second : big) + 0,
              "%s: gathered peak %llu", cs->name, (unsigned long long)f.ms.peak[MS_COMPUTE][MC_GATHER]);
  }

  model_ctx_free(ctx);
  free(mtok);
  free(mtgt);
  fsdp_free(&f);
  plan_free(&plan);
  tensor_table_free(&tt);
  free(m);
  free(v);
  model_weights_free(&mw);
}


static const case_ fsdp_cases_[] = {
    {"untied-all", 0, 0, 1, 1, 1, 0, 0, 0},
    {"untied-spectrum-offload", 0, 1, 1, 1, 1, -1, 1, 0},
    {"untied-spectrum-offload-overlap", 0, 1, 1, 1, 1, 1, 1, 0},
    {"untied-spectrum-offload-trainable", 0, 2, 1, 1, 1, 1, 1, 0},
    {"tied-all-keep", 1, 0, 2, 0, 0, 0, 0, 0},
    {"tied-top-block-prefetch0-overlap", 1, 1, 0, 1, 1, 1, 2, 0},
    {"bf16-untied-all", 0, 0, 1, 1, 1, 0, 0, 1},
    {"bf16-untied-spectrum-offload-overlap", 0, 1, 1, 1, 1, 1, 1, 1},
    {"bf16-tied-top-block-offload-trainable", 1, 2, 0, 1, 1, 1, 2, 1},
    {"bf16-tied-all-keep", 1, 0, 2, 0, 0, 0, 0, 1},
};

static void run_fsdp_cases_(void) {
  for (size_t i = 0; i < sizeof fsdp_cases_ / sizeof fsdp_cases_[0]; i++) {
    int before = test_failures_;
    fsdp_cases_idx_ = (int)i;
    run_case_(&fsdp_cases_[i]);
    if (test_failures_ != before) fprintf(stderr, "case %s failed\n", fsdp_cases_[i].name);
  }
}
#endif
