/* spectrain eval: the mean next-token loss of a model on token data (the Hugging Face
 * definition: sum of cross-entropies over every counted prediction / their number) and its
 * perplexity. Samples are split over ranks when run under mpirun. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "job/job.h"
#include "io/data.h"
#include "train/backend.h"
#include "model/model.h"
#include "io/weights.h"
#include "mpi/comm.h"
#include "util/err.h"
#include "util/mem.h"
#include "util/opt.h"

static int eval_run_(const char *model_dir, const char *data_path, long max_tokens, long seq_len,
                     long batch, int json, int backend, int bf16) {
  const kernels *k = NULL;
  coll_transport tr;
  int rc = kernels_select("--backend", backend, bf16, comm_local_rank(), &k, &tr);
  if (rc) return rc;
  if (!json) log_info("%s", kernels_select_description());
  model_weights mw;
  /* bf16: the weights are read straight into bf16 (BF16 files as stored), no fp32 copy */
  rc = bf16 ? model_weights_load_bf16(model_dir, &mw)
            : model_weights_load(model_dir, &mw); /* frees what it took on failure */
  if (rc) return rc;
  if (k != kernels_cpu() && (rc = model_weights_to_compute(&mw, k))) {
    model_weights_free(&mw);
    return rc;
  }
  for (int i = 0; i < mw.tt.n; i++) mw.tt.t[i].trainable = 0;
  int T = (int)(seq_len > 0 ? seq_len
                            : (mw.cfg.max_position_embeddings > 0 &&
                                       mw.cfg.max_position_embeddings < 1024
                                   ? mw.cfg.max_position_embeddings
                                   : 1024));
  data_source *src = NULL;
  const char *paths[1] = {data_path};
  if ((rc = data_open(paths, 1, DATA_AUTO, T, mw.cfg.vocab_size, &src))) {
    model_weights_free(&mw);
    return rc;
  }
  data_view view;
  data_view_all(src, &view);
  uint64_t n_samples = view.n;
  if (max_tokens > 0 && (uint64_t)((max_tokens + T - 1) / T) < n_samples)
    n_samples = (uint64_t)((max_tokens + T - 1) / T);
  int B = (int)(batch > 0 ? batch : 4);
  if ((uint64_t)B > n_samples) B = (int)n_samples;

  model_opts o = {.batch = B, .seq_len = T, .grad_checkpointing = 0,
                  .lowest_grad_unit = mw.tt.n_units, .bf16 = bf16};
  model_ctx *ctx = NULL;
  uint64_t act = 0;
  const char *what = NULL;
  uint64_t limit = mem_host_limit_bytes(&what), ranks = (uint64_t)comm_node_size();
  rc = model_ctx_predict_bytes(&mw.cfg, k, &o, &act);
  if (!rc && k->host_addressable && act > limit / ranks) {
    char ha[32], hl[32];
    rc = st_fail(ST_EINPUT,
                 "eval: the activations of --batch %d x --seq-len %d tokens need %s per rank "
                 "(%llu rank(s) on this host), more than its %s (%s): lower --batch or --seq-len",
                 B, T, mem_human(act, ha, sizeof ha), (unsigned long long)ranks,
                 mem_human(limit, hl, sizeof hl), what);
  }
  if (rc || (rc = model_ctx_create(&mw.cfg, k, &o, &ctx))) {
    data_view_free(&view);
    data_close(src);
    model_weights_free(&mw);
    return rc;
  }
  int32_t *inputs = xmalloc((size_t)B * T * sizeof *inputs);
  int32_t *targets = xmalloc((size_t)B * T * sizeof *targets);
  uint64_t *samples = xmalloc((size_t)B * sizeof *samples);
  double loss_sum = 0;
  int64_t counted = 0;
  double t0 = time_now_s();
  uint64_t n_batches = (n_samples + (uint64_t)B - 1) / (uint64_t)B;
  for (uint64_t bi = (uint64_t)comm_rank(); bi < n_batches && !rc; bi += (uint64_t)comm_size()) {
    int n = 0;
    for (uint64_t s = bi * B; s < n_samples && n < B; s++) samples[n++] = s;
    data_fill(&view, samples, n, inputs, targets);
    for (size_t j = (size_t)n * T; j < (size_t)B * T; j++) /* short last batch: ignored rows */
      inputs[j] = 0, targets[j] = MODEL_IGNORE_INDEX;
    /* as long as the batch's longest sequence (the loss is the same: causal) */
    rc = model_ctx_set_seq_len(ctx, data_trim(inputs, targets, B, T, 16));
    if (!rc) rc = model_forward(ctx, mw.units, inputs, targets, &loss_sum, &counted);
  }
  double elapsed = time_now_s() - t0;
  rc = comm_max_status(rc);
  if (!rc) {
    double sums[2] = {loss_sum, (double)counted};
    rc = comm_allreduce_sum_f64(sums, 2);
    loss_sum = sums[0];
    counted = (int64_t)sums[1];
  }
  if (!rc && counted == 0)
    rc = st_fail(ST_EINPUT, "%s: no counted target tokens in the first %llu samples of %d tokens",
                 data_path, (unsigned long long)n_samples, T);
  if (!rc && !isfinite(loss_sum))
    rc = st_fail(ST_ERUNTIME,
                 "%s: the loss on %s is %s: the model's forward pass overflows (its weights are "
                 "finite, but too large for fp32 activations); no result",
                 model_dir, data_path, isnan(loss_sum) ? "NaN" : "infinite");
  if (!rc) {
    double loss = loss_sum / (double)counted;
    if (comm_rank() == 0) {
      if (json)
        printf("{\"loss\": %.9g, \"tokens\": %lld, \"perplexity\": %.9g}\n", loss,
               (long long)counted, exp(loss));
      else
        printf("loss %.6f  perplexity %.4f  over %lld predicted tokens (%llu samples of %d, "
               "%s, %.1f s)\n",
               loss, exp(loss), (long long)counted, (unsigned long long)n_samples, T,
               bf16 ? "bf16" : "fp32", elapsed);
      fflush(stdout);
    }
  }
  free(inputs);
  free(targets);
  free(samples);
  model_ctx_free(ctx);
  data_view_free(&view);
  data_close(src);
  model_weights_free(&mw);
  return rc;
}

int cmd_eval(int argc, char **argv) {
  static const opt_cmd cmd = {
      "eval", "", 0, 0, "mean next-token loss and perplexity of a model on token data",
      "The loss is the Hugging Face one: the cross-entropy summed over every counted\n"
      "next-token prediction (labels -100 are not counted), divided by their number.\n"
      "Data formats as in job files (.bin llm.c shards, .jsonl records, other files =\n"
      "UTF-8 bytes): streams are cut into windows of T+1 tokens with stride T, jsonl\n"
      "records are one sequence each. With --max-tokens N only the first ceil(N/T)\n"
      "samples are evaluated. Under mpirun the batches are split over the ranks.\n"
      "--bf16 runs the model in bf16 mixed precision (docs/model.md \"Precision\"):\n"
      "weights held in bf16 only (bf16 files as stored, others rounded on reading),\n"
      "bf16 matrix products with fp32 accumulation, norms, softmax and the loss in fp32."};
  const char *model_dir = NULL, *data = NULL;
  long max_tokens = 0, seq_len = 0, batch = 4;
  int json = 0, bf16 = 0;
  const char *backend_s = "auto";
  opt_spec specs[] = {
      {"model", OPT_STR, "DIR", "model directory (config.json + safetensors); required",
       &model_dir},
      {"data", OPT_STR, "FILE", "token data file (.bin, .jsonl or text); required", &data},
      {"max-tokens", OPT_INT, "N", "evaluate only the first ceil(N/T) samples (default: all)",
       &max_tokens},
      {"seq-len", OPT_INT, "T",
       "tokens per sample (default: max_position_embeddings, at most 1024)", &seq_len},
      {"batch", OPT_INT, "B", "samples per forward pass (default 4)", &batch},
      {"backend", OPT_STR, "B",
       "kernels: auto (cuda when a GPU is found, else cpu), cpu or cuda (default auto)",
       &backend_s},
      {"bf16", OPT_FLAG, NULL, "bf16 mixed precision (half the weight memory; see above)",
       &bf16},
      {"json", OPT_FLAG, NULL, "print one JSON object {\"loss\", \"tokens\", \"perplexity\"}",
       &json},
  };
  int np = 0;
  char **pos = NULL;
  int rc = opt_parse(&cmd, specs, (int)(sizeof specs / sizeof specs[0]), argc, argv, &np, &pos);
  free(pos);
  if (rc) return rc == OPT_HELP_SHOWN ? OPT_HELP_SHOWN : st_report(rc);
  if (!model_dir || !data)
    return st_report(st_fail(ST_EINPUT, "eval: --model DIR and --data FILE are required"));
  if (max_tokens < 0)
    return st_report(st_fail(ST_EINPUT, "eval: --max-tokens: expected >= 0, found %ld", max_tokens));
  if (seq_len < 0 || seq_len > (1L << 20))
    return st_report(st_fail(ST_EINPUT, "eval: --seq-len: expected 0 (the default) to 1048576, "
                             "found %ld", seq_len));
  if (batch <= 0 || batch > (1L << 20))
    return st_report(st_fail(ST_EINPUT, "eval: --batch: expected 1 to 1048576, found %ld", batch));
  if (seq_len > 0 && batch * seq_len > (1L << 30))
    return st_report(st_fail(ST_EINPUT,
                             "eval: --batch %ld x --seq-len %ld = %ld tokens per forward pass: at "
                             "most 1073741824 (2^30); lower --batch",
                             batch, seq_len, batch * seq_len));
  int backend = !strcmp(backend_s, "cpu")    ? BACKEND_CPU
                : !strcmp(backend_s, "cuda") ? BACKEND_CUDA
                : !strcmp(backend_s, "auto") ? BACKEND_AUTO
                                             : -1;
  if (backend < 0)
    return st_report(st_fail(ST_EINPUT, "eval: --backend: expected auto, cpu or cuda, found '%s'",
                             backend_s));
  rc = eval_run_(model_dir, data, max_tokens, seq_len, batch, json, backend, bf16);
  return rc ? st_report(rc) : 0;
}
