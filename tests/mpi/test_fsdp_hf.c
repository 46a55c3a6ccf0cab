/* Sharded training against Hugging Face: each rank loads its slices of a fixture model
 * (tests/fixtures/model/<arch>: tiny LlamaForCausalLM with GQA + llama3 rope, Qwen2 with
 * q/k/v bias, Qwen3 with q/k norm and tied embeddings) straight from model.safetensors, trains
 * the fixture's 3 AdamW steps (warmup, linear decay, clipping, 2 micro-batches of 2 samples
 * per step) split over the ranks (1 sample per micro-step, 4/N micro-steps per rank), and
 * compares every step's global gradient norm and the parameters afterwards with what PyTorch
 * computed (ref.safetensors: grad_norm, after.<name>), with all tensors trainable and with the
 * fixture's partial trainable set. */
#include <jansson.h>
#include <math.h>

#include "io/safetensors.h"
#include "model/model.h"
#include "model/optim.h"
#include "mpi/comm.h"
#include "shard/fsdp.h"
#include "test.h"
#include "util/err.h"

static char dir_[512];

static float *ref_(const sft_model *ref, const char *name, uint64_t *n) {
  const sft_tensor *t = sft_find(ref, name);
  CHECK_MSG(t != NULL, "%s: reference '%s' missing", dir_, name);
  if (!t) return NULL;
  float *p = malloc(t->numel * sizeof(float));
  CHECK_EQ_INT(sft_read_f32(ref, t, 0, t->numel, p), 0);
  if (n) *n = t->numel;
  return p;
}

static void run_(const char *arch, int partial) {
  int N = comm_size(), r = comm_rank();
  const char *root = getenv("FIXTURES");
  snprintf(dir_, sizeof dir_, "%s/model/%s", root ? root : SPECTRAIN_SOURCE_DIR "/tests/fixtures",
           arch);
  char path[600];
  snprintf(path, sizeof path, "%s/meta.json", dir_);
  json_error_t jerr;
  json_t *meta = json_load_file(path, 0, &jerr);
  CHECK_MSG(meta != NULL, "%s: %s", path, jerr.text);
  if (!meta) return;
#define META_I(k) ((int)json_integer_value(json_object_get(meta, k)))
#define META_D(k) json_number_value(json_object_get(meta, k))
  int B = META_I("batch"), T = META_I("seq_len"), steps = META_I("steps"), A = META_I("grad_accum");
  int warmup = META_I("warmup_steps"), max_steps = META_I("max_steps");
  fsdp_adamw h = {META_D("beta1"), META_D("beta2"), META_D("eps"), META_D("weight_decay"),
                  META_D("max_grad_norm")};
  double base_lr = META_D("lr");
  json_decref(meta);
  int G = B * A; /* samples per step */
  if (G % N) return;
  int per_rank = G / N;

  model_config cfg;
  snprintf(path, sizeof path, "%s/config.json", dir_);
  CHECK_EQ_INT(model_config_load(path, &cfg), 0);
  tensor_table tt;
  CHECK_EQ_INT(tensor_table_build(&cfg, &tt), 0);
  for (int i = 0; i < tt.n; i++) tt.t[i].trainable = !partial;
  if (partial) {
    snprintf(path, sizeof path, "%s/trainable_partial.txt", dir_);
    FILE *fp = fopen(path, "r");
    char line[256];
    while (fp && fgets(line, sizeof line, fp)) {
      line[strcspn(line, "\n")] = 0;
      int i = tensor_table_find(&tt, line);
      if (line[0]) CHECK_MSG(i >= 0, "unknown tensor %s", line);
      if (i >= 0) tt.t[i].trainable = 1;
    }
    if (fp) fclose(fp);
  }
  sft_model model, ref;
  CHECK_EQ_INT(sft_open(dir_, &model), 0);
  snprintf(path, sizeof path, "%s/ref.safetensors", dir_);
  CHECK_EQ_INT(sft_open(path, &ref), 0);

  shard_plan plan;
  CHECK_EQ_INT(plan_build(&tt, N, r, &plan), 0);
  CHECK_EQ_INT(plan_agree(&plan, &tt), 0);
  fsdp_opts fo = {partial, 1, 1, 1, 0, 0, 0}; /* offload on for the partial run: same path, host side */
  fsdp f;
  CHECK_EQ_INT(fsdp_create(&tt, &plan, &cfg, kernels_cpu(), &fo, &f), 0);
  CHECK_EQ_INT(fsdp_load(&f, &model), 0);
  model_ctx *ctx = NULL;
  model_opts mo = {.batch = 1, .seq_len = T, .lowest_grad_unit = plan.lowest_grad_unit};
  CHECK_EQ_INT(model_ctx_create(&cfg, kernels_cpu(), &mo, &ctx), 0);

  uint64_t n = 0, nl = 0;
  float *ids = ref_(&ref, "input_ids", &n), *labels = ref_(&ref, "labels", &nl);
  float *gnorm = ref_(&ref, partial ? "partial.grad_norm" : "grad_norm", NULL);
  if (!ids || !labels || !gnorm || n != (uint64_t)steps * G * T) goto out;
  int32_t *tok = malloc((size_t)T * sizeof(int32_t)), *tgt = malloc((size_t)T * sizeof(int32_t));
  for (int s = 0; s < steps; s++) {
    /* fixture sample (s, g) at ids[((s*A + a)*B + b)*T]: g = a*B + b; rank r takes
     * g in [r*per_rank, (r+1)*per_rank); HF labels are unshifted */
    uint64_t cnt = 0;
    for (int g = 0; g < G; g++)
      for (int t = 0; t + 1 < T; t++) cnt += labels[((size_t)s * G + g) * T + t + 1] != -100.0f;
    fsdp_zero_grads(&f);
    double ls = 0;
    int64_t c = 0;
    for (int q = 0; q < per_rank; q++) {
      size_t o = ((size_t)s * G + (size_t)r * per_rank + q) * T;
      for (int t = 0; t < T; t++) {
        tok[t] = (int32_t)ids[o + t];
        tgt[t] = t + 1 < T ? (int32_t)labels[o + t + 1] : MODEL_IGNORE_INDEX;
      }
      CHECK_EQ_INT(fsdp_forward_backward(&f, ctx, tok, tgt, (float)(1.0 / (double)cnt), &ls, &c), 0);
    }
    double norm = 0;
    CHECK_EQ_INT(fsdp_step(&f, &h, lr_at_step(LR_LINEAR, s, max_steps, warmup, base_lr), s + 1, &norm), 0);
    CHECK_MSG(fabs(norm - gnorm[s]) <= 1e-4 * gnorm[s], "%s%s step %d: grad norm %.8g, HF %.8g",
              arch, partial ? " partial" : "", s, norm, gnorm[s]);
  }
  free(tok);
  free(tgt);

  float **full = NULL;
  CHECK_EQ_INT(fsdp_gather_tensors(&f, 0, 0, &full), 0);
  for (int i = 0; r == 0 && i < tt.n; i++) {
    const tensor_desc *d = &tt.t[i];
    char name[200];
    float *want = NULL;
    if (d->trainable) {
      snprintf(name, sizeof name, "%safter.%s", partial ? "partial." : "", d->name);
      want = ref_(&ref, name, NULL);
    } else { /* frozen: unchanged from the model file */
      want = malloc(d->numel * sizeof(float));
      sft_read_f32(&model, sft_find(&model, d->name), 0, d->numel, want);
    }
    snprintf(name, sizeof name, "grad.%s", d->name);
    float *g0 = d->trainable && sft_find(&ref, name) ? ref_(&ref, name, NULL) : NULL;
    if (!want) continue;
    /* as the model's own HF test: elements whose gradient is ~0 (< 1e-3 of the tensor's
     * largest) are decided by rounding inside AdamW; they get one lr per step */
    double gmax = 0, pmax = 0, worst = 0, loose = 0;
    for (uint64_t j = 0; j < d->numel; j++) gmax = fmax(gmax, g0 ? fabs(g0[j]) : 1.0);
    for (uint64_t j = 0; j < d->numel; j++) pmax = fmax(pmax, fabs(want[j]));
    for (uint64_t j = 0; j < d->numel; j++) {
      double e = fabs((double)full[i][j] - want[j]);
      if (g0 && fabs(g0[j]) < 1e-3 * gmax) loose = fmax(loose, e);
      else worst = fmax(worst, e);
    }
    CHECK_MSG(d->trainable ? worst <= 1e-4 * pmax : worst == 0, "%s%s %s: error %.3g of %.3g",
              arch, partial ? " partial" : "", d->name, worst, pmax);
    CHECK_MSG(loose <= base_lr * steps, "%s %s: near-zero-gradient error %.3g", arch, d->name, loose);
    free(want);
    free(g0);
  }
  fsdp_free_tensors(&f, full);
out:
  free(ids);
  free(labels);
  free(gnorm);
  model_ctx_free(ctx);
  fsdp_free(&f);
  plan_free(&plan);
  sft_close(&model);
  sft_close(&ref);
  tensor_table_free(&tt);
}

int main(int argc, char **argv) {
  CHECK_EQ_INT(comm_init(&argc, &argv), 0);
  const char *archs[] = {"llama", "qwen2", "qwen3"};
  for (int a = 0; a < 3; a++)
    for (int partial = 0; partial < 2; partial++) {
      int before = test_failures_;
      run_(archs[a], partial);
      if (test_failures_ != before) fprintf(stderr, "%s partial=%d failed\n", archs[a], partial);
    }
  int fails = comm_max_status(test_failures_ ? 1 : 0);
  comm_finalize();
  if (fails && !test_failures_) fprintf(stderr, "another rank failed\n");
  return fails ? 1 : test_done();
}
