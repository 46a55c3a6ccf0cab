/* Non-finite numbers never enter or change the sharded model:
 *  - loading: a NaN / +Inf / -Inf stored in the embedding, a matrix or a norm, as F32, BF16
 *    or F16, makes fsdp_load fail with ST_EINPUT on *every* rank (no hang): the rank whose
 *    shard holds it names the tensor and the element's index, the others say another rank
 *    failed. On the CPU table (shards in host memory, read in place) and on the guard table
 *    (compute shards, read through the staging buffer).
 *  - stepping: a NaN or infinite gradient on one rank's shard gives every rank the same
 *    non-finite norm, and fsdp_step then changes neither parameters nor optimizer state. */
#include <sys/stat.h>
#include <unistd.h>

#include "io/weights.h"
#include "mpi/coll.h"
#include "mpi/comm.h"
#include "nonfinite_patch.h"
#include "shard/fsdp.h"
#include "test.h"
#include "util/err.h"

static void config_(model_config *c, int tied) {
  memset(c, 0, sizeof *c);
  snprintf(c->model_type, sizeof c->model_type, "%s", tied ? "qwen3" : "llama");
  c->hidden_size = 16;
  c->intermediate_size = 24;
  c->num_hidden_layers = 2;
  c->num_attention_heads = 2;
  c->num_key_value_heads = 1;
  c->head_dim = 8;
  c->vocab_size = 37;
  c->max_position_embeddings = 32;
  c->rms_norm_eps = 1e-6;
  c->rope_theta = 10000;
  c->qk_norm = tied;
  c->tie_word_embeddings = tied;
  c->initializer_range = 0.02;
  c->bos_token_id = c->eos_token_id = -1;
}

static char dir_[512];

/* Rank 0 writes the random model in `dtype` and puts a bad value at (tensor, elem). */
static void write_model_(const model_config *cfg, sft_dtype dtype, const char *tensor,
                         uint64_t elem, bad_kind k) {
  if (comm_rank() == 0) {
    model_weights mw;
    CHECK_EQ_INT(model_weights_init_random(cfg, 3, 0.05, &mw), 0);
    sft_out_tensor *o = calloc((size_t)mw.tt.n, sizeof *o);
    for (int i = 0; i < mw.tt.n; i++) {
      o[i].name = mw.tt.t[i].name;
      o[i].ndim = mw.tt.t[i].ndim;
      o[i].shape[0] = mw.tt.t[i].shape[0];
      o[i].shape[1] = mw.tt.t[i].shape[1];
      o[i].data = model_weights_tensor(&mw, i);
    }
    char p[600];
    snprintf(p, sizeof p, "%s/model.safetensors", dir_);
    CHECK_MSG(sft_write_f32(p, o, mw.tt.n, dtype) == 0, "%s", st_errmsg());
    if (tensor) CHECK_EQ_INT(patch_nonfinite_(p, tensor, elem, k), 0);
    free(o);
    model_weights_free(&mw);
  }
  comm_barrier();
}

/* Does this rank's shard hold element `elem` of tensor `ti`? */
static int holds_(const shard_plan *p, int ti, uint64_t elem) {
  for (int u = 0; u < p->n_units; u++)
    for (int k = 0; k < PB_NKINDS; k++)
      for (int s = 0; s < p->units[u].nseg[k]; s++) {
        const plan_seg *sg = &p->units[u].seg[k][s];
        if (sg->tensor == ti && elem >= sg->tensor_off && elem < sg->tensor_off + sg->count)
          return 1;
      }
  return 0;
}

static void load_case_(const kernels *K, int tied, sft_dtype dtype, const char *tensor,
                       uint64_t elem, const char *idx, bad_kind bk) {
  model_config cfg;
  config_(&cfg, tied);
  write_model_(&cfg, dtype, tensor, elem, bk);
  tensor_table tt;
  CHECK_EQ_INT(tensor_table_build(&cfg, &tt), 0);
  for (int i = 0; i < tt.n; i++) tt.t[i].trainable = tt.t[i].layer == 1;
  shard_plan plan;
  CHECK_EQ_INT(plan_build(&tt, comm_size(), comm_rank(), &plan), 0);
  CHECK_EQ_INT(plan_agree(&plan, &tt), 0);
  fsdp_opts fo = {0, 1, 1, 1, 0, 0, 0};
  fsdp f;
  CHECK_EQ_INT(fsdp_create(&tt, &plan, &cfg, K, &fo, &f), 0);
  sft_model m;
  CHECK_EQ_INT(sft_open(dir_, &m), 0);
  int rc = fsdp_load(&f, &m);
  int ti = tensor ? tensor_table_find(&tt, tensor) : -1;
  if (!tensor) {
    CHECK_MSG(rc == 0, "%s", st_errmsg());
  } else {
    CHECK_MSG(rc == ST_EINPUT, "%s %s %s[%llu] on %s: rc %d", sft_dtype_name(dtype),
              bad_kind_name_[bk], tensor, (unsigned long long)elem, K->name, rc);
    if (holds_(&plan, ti, elem)) {
      CHECK_CONTAINS(st_errmsg(), tensor);
      CHECK_CONTAINS(st_errmsg(), idx);
      CHECK_CONTAINS(st_errmsg(), bad_kind_name_[bk]);
      CHECK_CONTAINS(st_errmsg(), sft_dtype_name(dtype));
    } else {
      CHECK_CONTAINS(st_errmsg(), "another rank");
    }
  }
  sft_close(&m);
  fsdp_free(&f);
  plan_free(&plan);
  tensor_table_free(&tt);
}

static void test_load(const kernels *K) {
  static const sft_dtype dts[] = {SFT_F32, SFT_BF16, SFT_F16};
  for (int d = 0; d < 3; d++) {
    load_case_(K, 0, dts[d], NULL, 0, NULL, BAD_NAN); /* the clean model loads */
    /* the embedding's last row lands on the last rank; its first element on rank 0 */
    load_case_(K, 0, dts[d], "model.embed_tokens.weight", 36 * 16 + 15, "[36, 15]", BAD_NAN);
    load_case_(K, 1, dts[d], "model.embed_tokens.weight", 0, "[0, 0]", BAD_PINF);
    load_case_(K, 0, dts[d], "model.layers.1.mlp.down_proj.weight", 24 + 3, "[1, 3]", BAD_NINF);
    load_case_(K, 0, dts[d], "lm_head.weight", 37 * 16 - 1, "[36, 15]", BAD_PINF);
    load_case_(K, 1, dts[d], "model.layers.0.self_attn.k_norm.weight", 5, "[5]", BAD_NAN);
  }
}

/* ---- fsdp_step with a non-finite gradient ---------------------------------------------- */

typedef struct {
  int tensor;
  uint64_t elem;
  float v;
  int hit;
} poke_;

static int poke_grad_(int tensor, uint64_t first, uint64_t count, float *data, void *arg) {
  poke_ *p = arg;
  if (tensor == p->tensor && p->elem >= first && p->elem < first + count) {
    data[p->elem - first] = p->v;
    p->hit = 1;
  }
  return 0;
}

static void step_case_(const kernels *K, int offload, float bad) {
  model_config cfg;
  config_(&cfg, 0);
  write_model_(&cfg, SFT_F32, NULL, 0, BAD_NAN);
  tensor_table tt;
  CHECK_EQ_INT(tensor_table_build(&cfg, &tt), 0);
  for (int i = 0; i < tt.n; i++) tt.t[i].trainable = 1;
  shard_plan plan;
  CHECK_EQ_INT(plan_build(&tt, comm_size(), comm_rank(), &plan), 0);
  CHECK_EQ_INT(plan_agree(&plan, &tt), 0);
  fsdp_opts fo = {offload, 1, 1, 1, 0, 0, 0};
  fsdp f;
  CHECK_EQ_INT(fsdp_create(&tt, &plan, &cfg, K, &fo, &f), 0);
  sft_model m;
  CHECK_EQ_INT(sft_open(dir_, &m), 0);
  CHECK_EQ_INT(fsdp_load(&f, &m), 0);
  sft_close(&m);
  enum { B = 2, T = 6 };
  model_opts mo = {.batch = B, .seq_len = T, .lowest_grad_unit = plan.lowest_grad_unit};
  model_ctx *ctx = NULL;
  CHECK_EQ_INT(model_ctx_create(&cfg, K, &mo, &ctx), 0);
  int32_t tok[B * T], tgt[B * T];
  for (int i = 0; i < B * T; i++) tok[i] = (i * 7 + comm_rank()) % 37, tgt[i] = (i * 5 + 1) % 37;
  const fsdp_adamw h = {0.9, 0.95, 1e-8, 0.1, 1.0};
  /* one good step first, so that m and v are not zero */
  double ls = 0, gn = 0;
  int64_t c = 0;
  fsdp_zero_grads(&f);
  CHECK_EQ_INT(fsdp_forward_backward(&f, ctx, tok, tgt, 1.0f / (float)(B * T), &ls, &c), 0);
  CHECK_EQ_INT(fsdp_step(&f, &h, 1e-3, 1, &gn), 0);
  CHECK(isfinite(gn) && gn > 0);
  float **before[3];
  for (int w = 0; w < 3; w++) CHECK_EQ_INT(fsdp_gather_tensors(&f, w, -1, &before[w]), 0);
  /* the next gradient holds one bad value, on the last rank's shard only */
  fsdp_zero_grads(&f);
  CHECK_EQ_INT(fsdp_forward_backward(&f, ctx, tok, tgt, 1.0f / (float)(B * T), &ls, &c), 0);
  int ti = tensor_table_find(&tt, "model.layers.0.mlp.up_proj.weight");
  poke_ p = {ti, 24 * 16 - 1, bad, 0};
  if (comm_rank() == comm_size() - 1) {
    CHECK_EQ_INT(fsdp_foreach_piece(&f, 3, poke_grad_, &p), 0);
    fsdp_pieces_done(&f, 1);
  }
  uint64_t hit = (uint64_t)p.hit;
  CHECK_EQ_INT(coll_allreduce_sum_u64(&hit, 1), 0);
  CHECK_EQ_INT(hit, 1);
  gn = 0;
  CHECK_EQ_INT(fsdp_step(&f, &h, 1e-3, 2, &gn), 0);
  CHECK_MSG(!isfinite(gn), "grad norm %g with a %g gradient", gn, (double)bad);
  CHECK(isnan(bad) ? isnan(gn) : isinf(gn));
  uint64_t changed = 0;
  for (int w = 0; w < 3; w++) {
    float **after;
    CHECK_EQ_INT(fsdp_gather_tensors(&f, w, -1, &after), 0);
    for (int i = 0; i < tt.n; i++)
      for (uint64_t e = 0; after[i] && e < tt.t[i].numel; e++)
        changed += memcmp(&after[i][e], &before[w][i][e], 4) != 0;
    fsdp_free_tensors(&f, after);
    fsdp_free_tensors(&f, before[w]);
  }
  CHECK_MSG(changed == 0, "%llu parameter/optimizer values changed by a step with grad norm %g",
            (unsigned long long)changed, gn);
  model_ctx_free(ctx);
  fsdp_free(&f);
  plan_free(&plan);
  tensor_table_free(&tt);
}

int main(int argc, char **argv) {
  CHECK_EQ_INT(comm_init(&argc, &argv), 0);
  const char *tmp = getenv("TEST_TMP");
  int pid = (int)getpid();
  comm_bcast(&pid, sizeof pid, 0);
  snprintf(dir_, sizeof dir_, "%s/fsdp_nonfinite.%d", tmp ? tmp : "/tmp", pid);
  if (comm_rank() == 0) mkdir(dir_, 0755);
  comm_barrier();
  test_load(kernels_cpu());
  CHECK_EQ_INT(coll_set_transport(COLL_TRANSPORT_MPI_STAGED, kernels_guard()), 0);
  test_load(kernels_guard());
  step_case_(kernels_guard(), 0, NAN);
  CHECK_EQ_INT(coll_set_transport(COLL_TRANSPORT_MPI, NULL), 0);
  step_case_(kernels_cpu(), 0, NAN);
  step_case_(kernels_cpu(), 0, INFINITY);
  step_case_(kernels_cpu(), 1, -INFINITY); /* offload: AdamW on the host shards */
  comm_barrier();
  if (comm_rank() == 0) {
    char p[600];
    snprintf(p, sizeof p, "%s/model.safetensors", dir_);
    remove(p);
    rmdir(dir_);
  }
  int fails = comm_max_status(test_failures_ ? 1 : 0);
  comm_finalize();
  if (fails && !test_failures_) fprintf(stderr, "another rank failed\n");
  return fails ? 1 : test_done();
}
