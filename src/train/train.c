#include "train/train.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/model_dir.h"
#include "io/safetensors.h"
#include "train/backend.h"
#include "train/metrics.h"
#include "model/optim.h"
#include "mpi/coll.h"
#include "mpi/comm.h"
#include "spectrum/analyze.h"
#include "spectrum/unfrozen.h"
#include "util/err.h"
#include "util/finite.h"
#include "util/fs.h"
#include "util/watchdog.h"
#include "util/mem.h"

/* ---- setup ------------------------------------------------------------------------------ */

/* The trainable set: an unfrozen_parameters YAML, or everything. */
static int trainable_set_(train_ctx *t) {
  const job_config *j = t->job;
  for (int i = 0; i < t->tt.n; i++) t->tt.t[i].trainable = 1;
  if (j->spectrum.unfrozen_parameters) {
    int n = 0;
    int rc = unfrozen_apply(j->spectrum.unfrozen_parameters, &t->tt, &n);
    if (rc) return rc;
    log_info("trainable set: %d of %d tensors from %s", n, t->tt.n,
             j->spectrum.unfrozen_parameters);
  } else if (j->spectrum.top_percent < 100.0) {
    /* the Spectrum scan (cached in output_dir), then its YAML read like any other */
    char *yaml = NULL;
    int n = 0;
    int rc = spectrum_select_yaml(j->model.path, j->spectrum.model_name, j->spectrum.top_percent,
                                  (const char *const *)j->spectrum.layer_types.v,
                                  j->spectrum.layer_types.n, j->output_dir,
                                  j->training.backend == BACKEND_CPU ? SCAN_SOLVER_CPU
                                                                     : SCAN_SOLVER_AUTO,
                                  &yaml, &t->snr_json_path);
    if (!rc) rc = unfrozen_apply(yaml, &t->tt, &n);
    if (!rc)
      log_info("trainable set: %d of %d tensors from %s (Spectrum scan, top %g%%)", n, t->tt.n, yaml,
               j->spectrum.top_percent);
    free(yaml);
    if (rc) return rc;
  }
  int any = 0;
  for (int i = 0; i < t->tt.n; i++) any |= t->tt.t[i].trainable;
  if (!any)
    return st_fail(ST_EINPUT, "%s: the trainable set is empty (no pattern matched any tensor)",
                   j->spectrum.unfrozen_parameters ? j->spectrum.unfrozen_parameters : "job");
  return ST_OK;
}

void train_total_steps(const job_config *j, uint64_t n_train, uint64_t global_batch,
                       int64_t *total, int64_t *warmup) {
  uint64_t per_epoch = global_batch ? n_train / global_batch : 0;
  if (per_epoch == 0) per_epoch = 1;
  *total = j->training.max_steps > 0
               ? j->training.max_steps
               : (int64_t)ceil(j->training.num_train_epochs * (double)per_epoch);
  if (*total < 1) *total = 1;
  *warmup = j->training.warmup_steps > 0
                ? j->training.warmup_steps
                : (int64_t)ceil(j->training.warmup_ratio * (double)*total);
}

static int resolve_steps_(train_ctx *t) {
  const job_config *j = t->job;
  train_state *s = &t->st;
  s->global_batch = (uint64_t)j->training.per_device_train_batch_size * (uint64_t)t->nranks *
                    (uint64_t)j->training.gradient_accumulation_steps;
  if (j->training.max_steps <= 0) { /* epochs x steps per epoch must be a step count */
    uint64_t per_epoch = t->data.train.n / s->global_batch;
    double steps = ceil(j->training.num_train_epochs * (double)(per_epoch ? per_epoch : 1));
    if (!(steps <= 9.0e15)) /* below 2^53: exact, and far below INT64_MAX */
      return st_fail(ST_EINPUT,
                     "%s: training.num_train_epochs %g x %llu steps per epoch (%llu samples / "
                     "global batch %llu) = %.4g optimizer steps: at most 9e15; lower "
                     "num_train_epochs or give training.max_steps",
                     j->source_path, j->training.num_train_epochs,
                     (unsigned long long)(per_epoch ? per_epoch : 1),
                     (unsigned long long)t->data.train.n, (unsigned long long)s->global_batch,
                     steps);
  }
  train_total_steps(j, t->data.train.n, s->global_batch, &s->total_steps, &s->warmup_steps);
  s->data_seed = (uint64_t)j->training.seed;
  s->last_loss = s->last_val_loss = NAN;
  return ST_OK;
}

static int setup_local_(train_ctx *t, sft_model *m) {
  const job_config *j = t->job;
  char *cfg_path = xasprintf("%s/config.json", j->model.path);
  int rc = model_config_load(cfg_path, &t->cfg);
  free(cfg_path);
  if (!rc) rc = tensor_table_build(&t->cfg, &t->tt);
  if (!rc) rc = trainable_set_(t);
  if (!rc) rc = sft_open(j->model.path, m);
  if (!rc) rc = data_open_job(j, t->cfg.vocab_size, &t->data);
  if (!rc) rc = resolve_steps_(t);
  return rc;
}

/* Every rank runs the same steps; an input error on one rank is reported on all. */
static int agree_(int rc, const char *what) {
  int all = comm_max_status(rc);
  if (all && !rc)
    return st_fail(all, "another rank failed while %s (see its error above)", what);
  return rc;
}

/* The activation contexts' options: training (mo) and evaluation (eo). */
static void model_opts_(const train_ctx *t, model_opts *mo, model_opts *eo) {
  const job_config *j = t->job;
  memset(mo, 0, sizeof *mo);
  memset(eo, 0, sizeof *eo);
  mo->batch = (int)j->training.per_device_train_batch_size; /* job_load bounds B x T */
  mo->seq_len = (int)j->training.max_seq_length;
  mo->grad_checkpointing = j->training.gradient_checkpointing;
  mo->lowest_grad_unit = t->plan.lowest_grad_unit;
  mo->bf16 = j->training.bf16;
  eo->batch = (int)j->training.per_device_eval_batch_size;
  eo->seq_len = (int)j->training.max_seq_length;
  eo->lowest_grad_unit = t->plan.n_units;
  eo->bf16 = j->training.bf16;
}

/* Host memory per rank, predicted by the formula the memory report prints (shards,
 * gathered units, gradients, staging, activations) plus the step's token buffers, times
 * the ranks on this host, against what the host can give (physical memory or the cgroup
 * limit). Too much is ST_EINPUT with the prediction and the key of the largest part. On a
 * device backend only the host-memory part is checked here (device memory: the kernel
 * table's allocator fails with its own error). Local: the caller agrees. */
static int check_memory_(const train_ctx *t, const fsdp_opts *fo, const model_opts *mo,
                         const model_opts *eo) {
  const job_config *j = t->job;
  uint64_t pred[MC_NCAT], host[MC_NCAT], act = 0, eact = 0;
  fsdp_predict(&t->plan, t->k, fo, t->cfg.tie_word_embeddings != 0, pred, host);
  int rc = model_ctx_predict_bytes(&t->cfg, t->k, mo, &act);
  if (!rc && t->data.val.n) rc = model_ctx_predict_bytes(&t->cfg, t->k, eo, &eact);
  if (rc) return rc;
  const uint64_t A = (uint64_t)j->training.gradient_accumulation_steps,
                 B = (uint64_t)j->training.per_device_train_batch_size,
                 T = (uint64_t)j->training.max_seq_length;
  /* train_step: tokens and targets (int32) of A x B x T, sample indices of A x B */
  const uint64_t inputs = A * B * T * 2 * sizeof(int32_t) + A * B * sizeof(uint64_t);
  const int host_act = t->k->host_addressable;
  enum { P_STATE, P_GATHER, P_GRADS, P_STAGING, P_ACT, P_EACT, P_INPUTS, P_N };
  uint64_t part[P_N] = {
      host[MC_PARAM_FROZEN] + host[MC_PARAM_TRAIN] + host[MC_MASTER] + host[MC_GRAD] +
          host[MC_OPTIM],
      host[MC_GATHER], host[MC_GRAD_FULL], host[MC_STAGING], host_act ? act : 0,
      host_act ? eact : 0, inputs};
  uint64_t total = 0;
  int big = 0;
  for (int i = 0; i < P_N; i++) {
    total += part[i];
    if (part[i] > part[big]) big = i;
  }
  const char *what;
  uint64_t limit = mem_host_limit_bytes(&what);
  uint64_t ranks = (uint64_t)comm_node_size();
  if (total <= limit / ranks) return ST_OK;
  char fix[512];
  switch (big) {
    case P_STATE:
      snprintf(fix, sizeof fix,
               "parameter shards, gradients and AdamW state (%llu of %llu parameters "
               "trainable; 16 bytes per trainable and 4 per frozen parameter, split over %d "
               "ranks%s): run on more ranks or hosts, or train fewer parameters "
               "(spectrum.top_percent)",
               (unsigned long long)plan_total_numel(&t->plan, PB_TRAIN),
               (unsigned long long)(plan_total_numel(&t->plan, PB_TRAIN) +
                                    plan_total_numel(&t->plan, PB_FROZEN)),
               t->plan.nranks,
               t->groups.hybrid ? ", the shard group of sharding.strategy hybrid; full "
                                  "sharding splits them over every rank"
                                : "");
      break;
    case P_GATHER:
      snprintf(fix, sizeof fix,
               "gathered units (sharding.prefetch %lld, limit_all_gathers %s, "
               "reshard_after_forward %s): lower sharding.prefetch, or set "
               "sharding.limit_all_gathers and sharding.reshard_after_forward to true",
               (long long)j->sharding.prefetch, j->sharding.limit_all_gathers ? "true" : "false",
               j->sharding.reshard_after_forward ? "true" : "false");
      break;
    case P_GRADS:
      snprintf(fix, sizeof fix, "unit gradients in flight: run on more ranks");
      break;
    case P_STAGING:
      snprintf(fix, sizeof fix, "host staging (sharding.offload %s): run on more ranks",
               job_enum_name("sharding.offload", (int)j->sharding.offload));
      break;
    case P_ACT:
      snprintf(fix, sizeof fix,
               "activations of a micro-batch of %lld x %lld tokens: lower "
               "training.per_device_train_batch_size (and raise gradient_accumulation_steps "
               "to keep the global batch) or training.max_seq_length%s",
               (long long)B, (long long)T,
               j->training.gradient_checkpointing ? ""
                                                  : ", or set training.gradient_checkpointing: true");
      break;
    case P_EACT:
      snprintf(fix, sizeof fix,
               "evaluation activations of %lld x %lld tokens: lower "
               "training.per_device_eval_batch_size",
               (long long)j->training.per_device_eval_batch_size, (long long)T);
      break;
    default:
      snprintf(fix, sizeof fix,
               "the step's token buffers (training.gradient_accumulation_steps %lld x "
               "per_device_train_batch_size %lld x max_seq_length %lld tokens per rank): "
               "lower training.gradient_accumulation_steps (more ranks give the same global "
               "batch with fewer)",
               (long long)A, (long long)B, (long long)T);
  }
  char h[P_N][32], ht[32], hl[32], hn[32];
  for (int i = 0; i < P_N; i++) mem_human(part[i], h[i], sizeof h[i]);
  return st_fail(ST_EINPUT,
                 "%s: this job needs about %s of host memory per rank (shards and optimizer "
                 "state %s, gathered units %s, unit gradients %s, staging %s, activations %s, "
                 "evaluation activations %s, step inputs %s: the memory formula of "
                 "docs/sharding.md), %s for the %llu rank(s) on this host, more than its %s "
                 "(%s). The largest part is %s",
                 j->source_path, mem_human(total, ht, sizeof ht), h[P_STATE], h[P_GATHER],
                 h[P_GRADS], h[P_STAGING], h[P_ACT], h[P_EACT], h[P_INPUTS],
                 mem_human(total * ranks, hn, sizeof hn), (unsigned long long)ranks,
                 mem_human(limit, hl, sizeof hl), what, fix);
}

/* Where the ranks run: one line ("HOST [rank:local ...]" per host) and a check that the
 * node-local ranks of every host are 0..k-1 (they pick the GPU: an error on the CUDA
 * kernels, a warning elsewhere). The same gathered data on every rank: all decide alike. */
static int placement_(train_ctx *t) {
  int rc = comm_placement(&t->place, &t->nhosts);
  if (rc) return rc;
  char line[1024];
  int len = snprintf(line, sizeof line, "placement: %d host%s, %d rank%s [rank:local rank]:",
                     t->nhosts, t->nhosts == 1 ? "" : "s", t->nranks, t->nranks == 1 ? "" : "s");
  for (int h = 0; h < t->nhosts && len < (int)sizeof line - 96; h++) {
    if (h == 8 && t->nhosts > 9) {
      len += snprintf(line + len, sizeof line - (size_t)len, " ... and %d more hosts",
                      t->nhosts - 8);
      break;
    }
    const char *name = NULL;
    for (int r = 0; r < t->nranks && len < (int)sizeof line - 96; r++) {
      if (t->place[r].host_index != h) continue;
      if (!name) {
        name = t->place[r].host;
        len += snprintf(line + len, sizeof line - (size_t)len, "%s %s [", h ? "," : "", name);
      } else {
        len += snprintf(line + len, sizeof line - (size_t)len, " ");
      }
      len += snprintf(line + len, sizeof line - (size_t)len, "%d:%d", r, t->place[r].local_rank);
    }
    if (len < (int)sizeof line - 2) len += snprintf(line + len, sizeof line - (size_t)len, "]");
  }
  log_info("%s", line);
  rc = comm_placement_check(t->place, t->nranks);
  if (rc && strcmp(t->k->name, "cuda") == 0) return rc;
  if (rc) {
    if (t->rank == 0) log_warn("%s (harmless on the %s kernels)", st_errmsg(), t->k->name);
    st_clear_error();
  }
  return ST_OK;
}

static json_t *placement_report_(const train_ctx *t) {
  json_t *o = json_object(), *jr = json_array();
  json_object_set_new(o, "event", json_string("placement"));
  json_object_set_new(o, "hosts", json_integer(t->nhosts));
  json_object_set_new(o, "local_rank_source", json_string(comm_local_rank_source()));
  for (int r = 0; r < t->nranks; r++) {
    json_t *x = json_object();
    json_object_set_new(x, "host", json_string(t->place[r].host));
    json_object_set_new(x, "local_rank", json_integer(t->place[r].local_rank));
    json_array_append_new(jr, x);
  }
  json_object_set_new(o, "ranks", jr);
  return o;
}

int train_setup(train_ctx *t, const job_config *job) {
  memset(t, 0, sizeof *t);
  t->job = job;
  t->nranks = comm_size();
  t->rank = comm_rank();
  /* 1. the job itself: every rank must have read the same file and --set overrides */
  int rc = comm_agree_u64(job_hash(job), "the job (file contents and --set overrides)");
  if (rc) return rc;
  /* 1b. the kernel table (training.backend; SPECTRAIN_KERNELS=guard for tests) on the GPU
   * of this node-local rank, and the collectives' transport, agreed by every rank */
  coll_transport tr = COLL_TRANSPORT_MPI;
  rc = kernels_select("training.backend", (int)job->training.backend, job->training.bf16,
                      comm_local_rank(), &t->k, &tr);
  if (rc) rc = st_fail_ctx(rc, "%s: ", job->source_path);
  else log_info("%s", kernels_select_description());
  rc = agree_(rc, "choosing the kernels (training.backend)");
  if (!rc) rc = coll_set_transport(tr, t->k);
  if (rc) return rc;
  if (tr == COLL_TRANSPORT_NCCL && job->sharding.reduce_dtype == REDUCE_BF16) /* alike everywhere */
    return st_fail(ST_EINPUT,
                   "%s: sharding.reduce_dtype: bf16 is not available on the nccl transport "
                   "(training.backend: cuda) yet; use reduce_dtype: fp32 there",
                   job->source_path);
  log_info("backend: %s kernels, %s collectives, local rank %d (%s)", t->k->name,
           coll_transport_name(tr), comm_local_rank(), comm_local_rank_source());
  rc = placement_(t);
  if (rc) return rc;
  /* 1c. shard groups (sharding.strategy): decided from the gathered placement, alike on
   * every rank, before any collective on them */
  rc = coll_set_groups(job->sharding.strategy == SHARDING_HYBRID, (int)job->sharding.shard_size,
                       "sharding.strategy:");
  if (rc) return st_fail_ctx(rc, "%s: ", job->source_path);
  coll_get_groups(&t->groups);
  if (job->sharding.strategy == SHARDING_HYBRID)
    log_info("sharding: hybrid, %d shard group%s of %d rank%s (%s), each unit sharded within "
             "its group and replicated across the groups; %d host%s",
             t->groups.replicas, t->groups.replicas == 1 ? "" : "s", t->groups.shard_size,
             t->groups.shard_size == 1 ? "" : "s",
             job->sharding.shard_size > 0 ? "sharding.shard_size" : "the ranks of one host",
             t->nhosts, t->nhosts == 1 ? "" : "s");
  /* 2. model, trainable set, data: local reads, outcome agreed */
  sft_model m;
  memset(&m, 0, sizeof m);
  rc = agree_(setup_local_(t, &m), "reading the model, trainable set and data");
  /* 3. the plan, proven identical before the first collective that uses it */
  if (!rc) rc = plan_build(&t->tt, t->groups.shard_size, t->groups.shard_rank, &t->plan);
  fsdp_opts fo = {(int)job->sharding.offload, (int)job->sharding.prefetch,
                  job->sharding.limit_all_gathers, job->sharding.reshard_after_forward, 0,
                  job->training.bf16, job->sharding.reduce_dtype == REDUCE_BF16};
  model_opts mo, eo;
  model_opts_(t, &mo, &eo);
  /* 3b. the memory formula, before anything big is allocated: a job that cannot fit is an
   * input error naming the key to change, not an abort halfway through */
  if (!rc) rc = agree_(check_memory_(t, &fo, &mo, &eo), "checking the job's memory");
  if (!rc) rc = plan_agree(&t->plan, &t->tt);
  if (!rc) rc = fsdp_create(&t->tt, &t->plan, &t->cfg, t->k, &fo, &t->fs);
  /* 4. each rank reads its own slices */
  if (!rc) rc = fsdp_load(&t->fs, &m);
  sft_close(&m);
  /* 5. activations */
  if (!rc) rc = agree_(model_ctx_create(&t->cfg, t->k, &mo, &t->mctx), "creating the model");
  if (!rc && t->data.val.n)
    rc = agree_(model_ctx_create(&t->cfg, t->k, &eo, &t->ectx), "creating the eval model");
  /* activations are the model's memory; the accounting records them under their category */
  if (!rc)
    ms_note(&t->fs.ms, MS_COMPUTE, MC_ACT,
            model_ctx_bytes(t->mctx) + (t->ectx ? model_ctx_bytes(t->ectx) : 0));
  return rc;
}

void train_teardown(train_ctx *t) {
  if (t->mctx) model_ctx_free(t->mctx);
  if (t->ectx) model_ctx_free(t->ectx);
  fsdp_free(&t->fs);
  plan_free(&t->plan);
  tensor_table_free(&t->tt);
  data_job_close(&t->data);
  free(t->place);
  free(t->snr_json_path);
  memset(t, 0, sizeof *t);
}

/* ---- one step ------------------------------------------------------------------------- */

enum { TRIM_MULTIPLE_ = 16 }; /* training.padding: longest rounds up to this many tokens */

int train_step(train_ctx *t, double *loss, double *grad_norm, double *lr) {
  const job_config *j = t->job;
  int B = (int)j->training.per_device_train_batch_size, A = (int)j->training.gradient_accumulation_steps;
  int T = (int)j->training.max_seq_length, N = t->nranks;
  size_t bt = (size_t)B * (size_t)T;
  int32_t *tok = xmalloc((size_t)A * bt * sizeof(int32_t));
  int32_t *tgt = xmalloc((size_t)A * bt * sizeof(int32_t));
  uint64_t *samples = xmalloc((size_t)A * (size_t)B * sizeof(uint64_t));
  /* this rank's samples of the step: micro m, row b -> global position
   * step*G + (m*N + rank)*B + b */
  uint64_t g0 = t->st.samples_seen;
  for (int m = 0; m < A; m++)
    for (int b = 0; b < B; b++)
      samples[(size_t)m * B + b] = data_sample_global(
          &t->data.train, t->st.data_seed, g0 + ((uint64_t)m * N + (uint64_t)t->rank) * B + b);
  data_fill(&t->data.train, samples, A * B, tok, tgt);
  uint64_t counted = data_count_targets(&t->data.train, samples, A * B);
  coll_counters c0, c1;
  coll_counters_get(&c0);
  int rc = coll_allreduce_sum_u64(&counted, 1);
  float scale = counted ? 1.0f / (float)counted : 0.0f;
  double loss_sum = 0;
  int64_t n_local = 0;
  fsdp_zero_grads(&t->fs);
  for (int m = 0; m < A && !rc; m++) {
    int Tm = T;
    if (j->training.padding == PADDING_LONGEST)
      Tm = data_trim(tok + (size_t)m * bt, tgt + (size_t)m * bt, B, T, TRIM_MULTIPLE_);
    rc = model_ctx_set_seq_len(t->mctx, Tm);
    if (!rc)
      rc = fsdp_forward_backward(&t->fs, t->mctx, tok + (size_t)m * bt, tgt + (size_t)m * bt,
                                 scale, &loss_sum, &n_local);
  }
  free(tok);
  free(tgt);
  free(samples);
  if (rc) return rc;
  rc = coll_allreduce_sum_f64(&loss_sum, 1);
  if (rc) return rc;
  *loss = counted ? loss_sum / (double)counted : NAN;
  t->nonfinite = 0;
  lr_schedule sched;
  lr_schedule_parse(job_enum_name("training.lr_scheduler_type", j->training.lr_scheduler_type),
                    &sched);
  *lr = lr_at_step(sched, (long)t->st.step, (long)t->st.total_steps, (long)t->st.warmup_steps,
                   j->training.learning_rate);
  fsdp_adamw h = {j->training.adam_beta1, j->training.adam_beta2, j->training.adam_epsilon,
                  j->training.weight_decay, j->training.max_grad_norm};
  /* a non-finite loss or gradient norm (both allreduced: every rank agrees) updates nothing */
  *grad_norm = NAN;
  if (counted && !isfinite(*loss)) {
    t->nonfinite = 1;
    return ST_OK;
  }
  rc = fsdp_step(&t->fs, &h, *lr, (long)t->st.step + 1, grad_norm);
  if (rc) return rc;
  if (!isfinite(*grad_norm)) {
    t->nonfinite = 1;
    return ST_OK;
  }
  coll_counters_get(&c1);
  for (int c = 0; c < COLL_NCAT; c++) t->step_comm_bytes[c] = c1.bytes[c] - c0.bytes[c];
  for (int l = 0; l < COLL_NLINK; l++) {
    t->step_link_bytes[l] = 0;
    for (int c = 0; c < COLL_NCAT; c++)
      t->step_link_bytes[l] += c1.link_bytes[c][l] - c0.link_bytes[c][l];
  }
  t->st.step++;
  t->st.samples_seen += t->st.global_batch;
  t->st.tokens_seen += counted;
  t->st.last_loss = *loss;
  return ST_OK;
}

int train_eval(train_ctx *t, double *val_loss) {
  *val_loss = NAN;
  if (!t->ectx || !t->data.val.n) return ST_OK;
  const job_config *j = t->job;
  int B = (int)j->training.per_device_eval_batch_size, T = (int)j->training.max_seq_length;
  uint64_t per_batch = (uint64_t)B * (uint64_t)t->nranks, E = t->data.val.n;
  /* max x per_batch < E, without the product (it may overflow for a huge eval_max_batches) */
  if (j->training.eval_max_batches > 0 && (uint64_t)j->training.eval_max_batches <= (E - 1) / per_batch)
    E = (uint64_t)j->training.eval_max_batches * per_batch;
  size_t bt = (size_t)B * (size_t)T;
  int32_t *tok = xmalloc(bt * sizeof(int32_t)), *tgt = xmalloc(bt * sizeof(int32_t));
  uint64_t *samples = xmalloc((size_t)B * sizeof(uint64_t));
  double sum = 0;
  int64_t count = 0;
  int rc = ST_OK;
  for (uint64_t first = 0; first < E && !rc; first += per_batch) {
    int n = 0;
    for (int b = 0; b < B; b++) {
      uint64_t pos = first + (uint64_t)t->rank * (uint64_t)B + (uint64_t)b;
      if (pos < E) samples[n++] = pos;
    }
    if (n) data_fill(&t->data.val, samples, n, tok, tgt);
    for (size_t i = (size_t)n * (size_t)T; i < bt; i++) tok[i] = 0, tgt[i] = DATA_IGNORE_INDEX;
    int Tb = j->training.padding == PADDING_LONGEST ? data_trim(tok, tgt, B, T, TRIM_MULTIPLE_) : T;
    rc = model_ctx_set_seq_len(t->ectx, Tb);
    if (!rc) rc = fsdp_forward(&t->fs, t->ectx, tok, tgt, &sum, &count);
  }
  free(tok);
  free(tgt);
  free(samples);
  double s[2] = {sum, (double)count};
  if (!rc) rc = coll_allreduce_sum_f64(s, 2);
  if (!rc && s[1] > 0) *val_loss = s[0] / s[1];
  t->st.last_val_loss = *val_loss;
  return rc;
}

/* ---- export --------------------------------------------------------------------------- */

/* Copy a file that travels with the model (the tokenizer); a missing source is fine. */
static int copy_file_(const char *from, const char *to) {
  FILE *a = fopen(from, "rb");
  if (!a) return ST_OK;
  char *tmp = xasprintf("%s.tmp", to);
  FILE *b = fopen(tmp, "wb");
  int rc = ST_OK, err = 0;
  if (!b) {
    err = errno;
  } else {
    char buf[65536];
    size_t n;
    while (!err && (n = fread(buf, 1, sizeof buf, a)) > 0)
      if (fwrite(buf, 1, n, b) != n) err = errno;
    if (!err && ferror(a)) err = EIO;
    if (fclose(b) != 0 && !err) err = errno;
  }
  fclose(a);
  if (!err && rename(tmp, to) != 0) err = errno;
  if (err) {
    char why[160];
    fs_write_error(err, tmp, why, sizeof why);
    rc = st_fail(ST_ERUNTIME, "%s: cannot write (copying %s): %s", to, from, why);
    remove(tmp);
  }
  free(tmp);
  return rc;
}

int train_export_hf(train_ctx *t, const char *dir) {
  float **full = NULL;
  int rc = fsdp_gather_tensors(&t->fs, 0, 0, &full);
  int lrc = ST_OK;
  for (int i = 0; !rc && t->rank == 0 && i < t->tt.n && !lrc; i++) {
    const tensor_desc *d = &t->tt.t[i];
    uint64_t bad = finite_first_bad_f32(full[i], d->numel);
    char at[96];
    if (bad < d->numel)
      lrc = st_fail(ST_ERUNTIME,
                    "step %lld: tensor '%s' holds %s at index %s: refusing to export a model "
                    "with non-finite values to %s (nothing written)",
                    (long long)t->st.step, d->name, finite_name(full[i][bad]),
                    finite_index_str(bad, d->ndim, d->shape, at, sizeof at), dir);
  }
  if (!rc && !lrc && t->rank == 0) {
    lrc = fs_mkdir_p(dir);
    char *p = xasprintf("%s/config.json", dir);
    /* the tensors are written in the input model's own dtype (its torch_dtype: bf16 for a
     * bf16 model, whether it trained in fp32 or bf16; float32 when it names none), and
     * config.json says which (transformers casts to it on load) */
    model_config cfg = t->cfg;
    sft_dtype dt = model_dir_dtype_of(&cfg);
    snprintf(cfg.torch_dtype, sizeof cfg.torch_dtype, "%s",
             dt == SFT_BF16 ? "bfloat16" : dt == SFT_F16 ? "float16" : "float32");
    sft_out_tensor *o = xcalloc((size_t)t->tt.n, sizeof *o);
    for (int i = 0; i < t->tt.n; i++) {
      o[i].name = t->tt.t[i].name;
      o[i].ndim = t->tt.t[i].ndim;
      o[i].shape[0] = t->tt.t[i].shape[0];
      o[i].shape[1] = t->tt.t[i].shape[1];
      o[i].data = full[i];
    }
    /* the weights first: a write that fails (a full disk) leaves an earlier export's
     * config.json as it was */
    char *w = xasprintf("%s/model.safetensors", dir);
    if (!lrc) lrc = sft_write_f32(w, o, t->tt.n, dt);
    free(w);
    free(o);
    if (!lrc) lrc = model_config_save(p, &cfg);
    free(p);
    /* the tokenizer travels with the model, unchanged */
    static const char *extra[] = {"tokenizer.json", "tokenizer_config.json",
                                  "special_tokens_map.json", "generation_config.json",
                                  "tokenizer.model"};
    for (size_t i = 0; i < sizeof extra / sizeof extra[0] && !lrc; i++) {
      char *from = xasprintf("%s/%s", t->job->model.path, extra[i]);
      char *to = xasprintf("%s/%s", dir, extra[i]);
      lrc = copy_file_(from, to);
      free(from);
      free(to);
    }
  }
  fsdp_free_tensors(&t->fs, full);
  return rc ? rc : agree_(lrc, "exporting the model");
}

/* ---- memory report -------------------------------------------------------------------- */

/* The formula (docs/sharding.md, "Memory per rank"), per rank, in bytes. */
static void predict_(const train_ctx *t, uint64_t pred[MC_NCAT]) {
  fsdp_predict(&t->plan, t->k, &t->fs.o, t->fs.tied, pred, NULL);
  pred[MC_ACT] = (t->mctx ? model_ctx_bytes(t->mctx) : 0) + (t->ectx ? model_ctx_bytes(t->ectx) : 0);
}

/* Rank 0 prints every rank's accounted bytes (current, by category, host + compute) next
 * to the prediction, and returns the table as JSON. Collective. */
static json_t *memory_report_(train_ctx *t, int at_end) {
  int n = t->nranks;
  const memspace *ms = &t->fs.ms;
  double *all = xcalloc((size_t)n * (MC_NCAT + 1), sizeof(double));
  double *row = all + (size_t)t->rank * (MC_NCAT + 1);
  for (int c = 0; c < MC_NCAT; c++)
    row[c] = (double)(at_end ? ms->peak[MS_HOST][c] + ms->peak[MS_COMPUTE][c]
                             : ms->cur[MS_HOST][c] + ms->cur[MS_COMPUTE][c]);
  row[MC_NCAT] = (double)mem_peak_rss_bytes();
  coll_allreduce_sum_f64(all, (size_t)n * (MC_NCAT + 1));
  uint64_t pred[MC_NCAT];
  predict_(t, pred);
  json_t *o = json_object();
  json_object_set_new(o, "event", json_string(at_end ? "memory_end" : "memory_start"));
  json_object_set_new(o, "step", json_integer(t->st.step));
  json_t *jp = json_object(), *jr = json_array();
  char h1[32], h2[32];
  log_info("memory per rank (%s; bytes by category, prediction from the formula):",
           at_end ? "peak during the run" : "after loading");
  for (int c = 0; c < MC_NCAT; c++) {
    json_object_set_new(jp, ms_cat_name(c), json_integer((json_int_t)pred[c]));
    char line[512];
    int len = snprintf(line, sizeof line, "  %-16s predicted %s%-11s measured",
                       ms_cat_name(c), c == MC_GATHER || c == MC_GRAD_FULL || c == MC_STAGING ? "<= " : "",
                       mem_human(pred[c], h1, sizeof h1));
    for (int r = 0; r < n && len < (int)sizeof line - 24; r++)
      len += snprintf(line + len, sizeof line - (size_t)len, " r%d %s", r,
                      mem_human((uint64_t)all[(size_t)r * (MC_NCAT + 1) + c], h2, sizeof h2));
    log_info("%s", line);
  }
  for (int r = 0; r < n; r++) {
    json_t *jrow = json_object();
    for (int c = 0; c < MC_NCAT; c++)
      json_object_set_new(jrow, ms_cat_name(c),
                          json_integer((json_int_t)all[(size_t)r * (MC_NCAT + 1) + c]));
    json_object_set_new(jrow, "peak_rss", json_integer((json_int_t)all[(size_t)r * (MC_NCAT + 1) + MC_NCAT]));
    json_array_append_new(jr, jrow);
  }
  if (at_end) {
    char line[512];
    int len = snprintf(line, sizeof line, "  %-16s", "peak RSS");
    for (int r = 0; r < n && len < (int)sizeof line - 24; r++)
      len += snprintf(line + len, sizeof line - (size_t)len, " r%d %s", r,
                      mem_human((uint64_t)all[(size_t)r * (MC_NCAT + 1) + MC_NCAT], h2, sizeof h2));
    log_info("%s", line);
  }
  json_object_set_new(o, "predicted", jp);
  json_object_set_new(o, "ranks", jr);
  free(all);
  return o;
}

/* What one optimizer step sends per link class and category (mpi/coll.h's model), call by
 * call as train_step and fsdp issue them: per micro-step the unit all-gathers and
 * reduce-scatters in the shard group (and, hybrid, each reduced shard all-reduced across the
 * replicas); per step the counted-targets and loss sums over the world and the gradient
 * norm over the shard group. */
static void step_link_theory_(train_ctx *t, uint64_t lk[COLL_NCAT][COLL_NLINK]) {
  memset(lk, 0, sizeof(uint64_t) * COLL_NCAT * COLL_NLINK);
  uint64_t A = (uint64_t)t->job->training.gradient_accumulation_steps, eg, er, x[COLL_NLINK];
  fsdp_expected_bytes(&t->fs, 1, &eg, &er);
  int S = t->groups.shard_size;
  coll_link_model(0, eg, 0, x);
  for (int l = 0; l < COLL_NLINK; l++) lk[COLL_ALLGATHER][l] += A * x[l];
  coll_link_model(0, er, 0, x);
  for (int l = 0; l < COLL_NLINK; l++) lk[COLL_REDUCE_SCATTER][l] += A * x[l];
  if (t->groups.replicas > 1) {
    /* one all-reduce per reduce-scatter, of its shard; the sum of those is er / S, and the
     * model is linear in the bytes (every shard is a multiple of 64 bytes) */
    coll_link_model(1, er / (uint64_t)S, 1, x);
    for (int l = 0; l < COLL_NLINK; l++) lk[COLL_REPLICA_ALLREDUCE][l] += A * x[l];
  }
  for (int k = 0; k < 3; k++) { /* counted targets, loss: world; the norm: the shard group */
    coll_link_model(k < 2 ? 2 : t->groups.hybrid ? 0 : 2, 8, 1, x);
    for (int l = 0; l < COLL_NLINK; l++) lk[COLL_ALLREDUCE][l] += x[l];
  }
}

/* Communication per optimizer step: the schedule's exact expectation, and the simple FSDP
 * theory (2 gathers of every unit + 1 reduce-scatter of every trainable buffer per
 * micro-step). Logged at the start; the step records carry what was measured. */
static json_t *comm_report_(train_ctx *t) {
  uint64_t eg, er, all = 0, tr = 0, A = (uint64_t)t->job->training.gradient_accumulation_steps;
  fsdp_expected_bytes(&t->fs, 1, &eg, &er);
  for (int u = 0; u < t->plan.n_units; u++) {
    all += (t->fs.o.bf16 ? 2u : 4u) * (t->plan.units[u].padded[PB_FROZEN] + t->plan.units[u].padded[PB_TRAIN]);
    tr += 4 * t->plan.units[u].padded[PB_TRAIN];
  }
  char a[32], b[32], c[32], d[32];
  log_info("communication per step (%llu micro-steps): all-gather %s, reduce-scatter %s "
           "(simple theory 2 x units + trainable: %s, %s)",
           (unsigned long long)A, mem_human(A * eg, a, sizeof a), mem_human(A * er, b, sizeof b),
           mem_human(A * 2 * all, c, sizeof c), mem_human(A * tr, d, sizeof d));
  json_t *o = json_object();
  json_object_set_new(o, "event", json_string("comm_theory"));
  json_object_set_new(o, "step", json_integer(t->st.step));
  json_object_set_new(o, "ranks", json_integer(t->nranks));
  json_object_set_new(o, "backend", json_string(t->k->name));
  json_object_set_new(o, "transport", json_string(coll_transport_name(coll_get_transport())));
  json_object_set_new(o, "allgather_bytes", json_integer((json_int_t)(A * eg)));
  json_object_set_new(o, "reduce_scatter_bytes", json_integer((json_int_t)(A * er)));
  json_object_set_new(o, "simple_allgather_bytes", json_integer((json_int_t)(A * 2 * all)));
  json_object_set_new(o, "simple_reduce_scatter_bytes", json_integer((json_int_t)(A * tr)));
  uint64_t lk[COLL_NCAT][COLL_NLINK];
  step_link_theory_(t, lk);
  const char *cat_txt[COLL_NCAT] = {"all-gather", "reduce-scatter", "allreduce",
                                    "replica all-reduce"};
  for (int l = 0; l < COLL_NLINK; l++) {
    char line[512], h[32];
    uint64_t sum = 0;
    for (int q = 0; q < COLL_NCAT; q++) sum += lk[q][l];
    int len = snprintf(line, sizeof line, "%s %s per step (%s)", l ? "  inter-host" : "  intra-host",
                       mem_human(sum, h, sizeof h), l ? "to other hosts" : "within the host");
    for (int q = 0; q < COLL_NCAT && len < (int)sizeof line - 64; q++)
      if (lk[q][l])
        len += snprintf(line + len, sizeof line - (size_t)len, ", %s %s", cat_txt[q],
                        mem_human(lk[q][l], h, sizeof h));
    if (l == 0)
      log_info("communication per step by link class (bytes each rank sends, theory: the "
               "direct-exchange model of docs/sharding.md; sharding %s, %d group%s of %d):",
               t->groups.hybrid ? "hybrid" : "full", t->groups.replicas,
               t->groups.replicas == 1 ? "" : "s", t->groups.shard_size);
    log_info("%s", line);
    char key[48];
    snprintf(key, sizeof key, "%s_bytes", coll_link_name((coll_link)l));
    json_object_set_new(o, key, json_integer((json_int_t)sum));
  }
  json_object_set_new(o, "strategy", json_string(t->groups.hybrid ? "hybrid" : "full"));
  json_object_set_new(o, "shard_size", json_integer(t->groups.shard_size));
  json_object_set_new(o, "replicas", json_integer(t->groups.replicas));
  json_object_set_new(o, "replica_allreduce_bytes", json_integer((json_int_t)(t->groups.replicas > 1 ? A * er / (uint64_t)t->groups.shard_size : 0)));
  json_object_set_new(o, "trainable_params", json_integer((json_int_t)plan_total_numel(&t->plan, PB_TRAIN)));
  json_object_set_new(o, "frozen_params", json_integer((json_int_t)plan_total_numel(&t->plan, PB_FROZEN)));
  return o;
}

/* Everything the collectives moved in this process (steps, evaluations, export; not the
 * checkpoints' MPI-IO): what a cluster's links carried, at least in part. */
static json_t *comm_total_(train_ctx *t) {
  coll_counters c;
  coll_counters_get(&c);
  /* what every host's ranks sent per link class (the model), summed per host: what the
   * host's own link carried, at least in part */
  uint64_t *ph = xcalloc((size_t)t->nhosts * COLL_NLINK, sizeof *ph);
  int me = t->place ? t->place[t->rank].host_index : 0;
  for (int l = 0; l < COLL_NLINK; l++)
    for (int k = 0; k < COLL_NCAT; k++) ph[(size_t)me * COLL_NLINK + l] += c.link_bytes[k][l];
  coll_allreduce_sum_u64(ph, (size_t)t->nhosts * COLL_NLINK);
  char a[32], b[32], d[32];
  char e[32];
  log_info("communication in all: all-gather %s, reduce-scatter %s, allreduce %s, replica "
           "all-reduce %s (%llu collective calls)",
           mem_human(c.bytes[COLL_ALLGATHER], a, sizeof a),
           mem_human(c.bytes[COLL_REDUCE_SCATTER], b, sizeof b),
           mem_human(c.bytes[COLL_ALLREDUCE], d, sizeof d),
           mem_human(c.bytes[COLL_REPLICA_ALLREDUCE], e, sizeof e),
           (unsigned long long)(c.calls[0] + c.calls[1] + c.calls[2] + c.calls[3]));
  json_t *o = json_object();
  json_object_set_new(o, "event", json_string("comm_total"));
  for (int k = 0; k < COLL_NCAT; k++) {
    char key[48];
    snprintf(key, sizeof key, "%s_bytes", coll_category_name((coll_category)k));
    json_object_set_new(o, key, json_integer((json_int_t)c.bytes[k]));
    snprintf(key, sizeof key, "%s_calls", coll_category_name((coll_category)k));
    json_object_set_new(o, key, json_integer((json_int_t)c.calls[k]));
  }
  for (int l = 0; l < COLL_NLINK; l++) {
    char key[48];
    json_t *arr = json_array();
    for (int h = 0; h < t->nhosts; h++)
      json_array_append_new(arr, json_integer((json_int_t)ph[(size_t)h * COLL_NLINK + l]));
    snprintf(key, sizeof key, "%s_bytes_per_host", coll_link_name((coll_link)l));
    json_object_set_new(o, key, arr);
  }
  char hi[32], he[32];
  uint64_t ti = 0, te = 0;
  for (int h = 0; h < t->nhosts; h++) ti += ph[(size_t)h * COLL_NLINK], te += ph[(size_t)h * COLL_NLINK + 1];
  log_info("communication in all by link class (sent, all ranks, the model): intra-host %s, "
           "inter-host %s",
           mem_human(ti, hi, sizeof hi), mem_human(te, he, sizeof he));
  free(ph);
  return o;
}

/* ---- the loop ------------------------------------------------------------------------- */

static void hms_(double s, char *buf, size_t len) {
  if (!(s >= 0) || s > 1e8) {
    snprintf(buf, len, "?");
    return;
  }
  long x = (long)(s + 0.5);
  snprintf(buf, len, "%ld:%02ld:%02ld", x / 3600, x / 60 % 60, x % 60);
}

static json_t *num_(double x) { return isfinite(x) ? json_real(x) : json_null(); }

/* After a train_step that saw a NaN/Inf loss or gradient norm (and applied nothing):
 * training.on_nonfinite stop ends the run here, before any checkpoint or export; skip
 * counts the step as done without an update. Every rank decides alike (allreduced values). */
static int nonfinite_step_(train_ctx *t, double loss, double gnorm, double lr) {
  const job_config *j = t->job;
  long long s = (long long)t->st.step + 1;
  char what[96];
  if (!isfinite(loss))
    snprintf(what, sizeof what, "the training loss is %s", finite_name(loss));
  else
    snprintf(what, sizeof what, "the gradient norm is %s (loss %.4f)", finite_name(gnorm), loss);
  if (j->training.on_nonfinite == NONFINITE_SKIP) {
    log_warn("step %lld/%lld: %s: step skipped (parameters and optimizer state unchanged; "
             "training.on_nonfinite: skip)",
             s, (long long)t->st.total_steps, what);
    t->st.step++;
    t->st.samples_seen += t->st.global_batch;
    t->skipped_steps++;
    return ST_OK;
  }
  return st_fail(ST_ERUNTIME,
                 "step %lld/%lld: %s: stopping before anything non-finite reaches the model: "
                 "nothing of this step was applied and nothing more is checkpointed or exported "
                 "(the newest checkpoint in %s, if any, is the last good state). Lower "
                 "training.learning_rate (%g now, %.3g at this step), keep "
                 "training.max_grad_norm above 0 (%g now), check this step's data, or set "
                 "training.on_nonfinite: skip",
                 s, (long long)t->st.total_steps, what, j->output_dir, j->training.learning_rate,
                 lr, j->training.max_grad_norm);
}

/* A validation loss that is NaN/Inf (the forward pass overflowed on the current weights). */
static int nonfinite_eval_(train_ctx *t, double val) {
  const job_config *j = t->job;
  if (j->training.on_nonfinite == NONFINITE_SKIP) {
    log_warn("step %lld: the validation loss is %s (training.on_nonfinite: skip: going on)",
             (long long)t->st.step, finite_name(val));
    return ST_OK;
  }
  return st_fail(ST_ERUNTIME,
                 "step %lld: the validation loss is %s: the weights after this step overflow in "
                 "the forward pass; stopping before they are checkpointed or exported (the "
                 "newest checkpoint in %s, if any, is the last good state). Lower "
                 "training.learning_rate (%g) or set training.on_nonfinite: skip",
                 (long long)t->st.step, finite_name(val), j->output_dir,
                 j->training.learning_rate);
}

/* A checkpoint write, restore or export (fn(t, reason, arg); reason may be NULL) under
 * distributed.checkpoint_timeout_s: the watchdog for the whole of it (parallel HDF5 waits
 * inside MPI-IO, where no deadline of ours reaches) and the same bound on each wait of ours
 * for the other ranks inside it (comm_set_timeout). The training deadline
 * (distributed.timeout_s) is back on afterwards. */
typedef int (*io_fn_)(train_ctx *t, const char *reason, void *arg);
static int under_io_deadline_(train_ctx *t, io_fn_ fn, const char *reason, void *arg,
                              const char *what) {
  const job_config *j = t->job;
  double s = j->distributed.checkpoint_timeout_s;
  const char *key = "distributed.checkpoint_timeout_s";
  comm_set_timeout(s, key);
  char w[160];
  snprintf(w, sizeof w, "%s at step %lld", what, (long long)t->st.step);
  int rc = s > 0 ? watchdog_arm(s, w, key) : ST_OK;
  if (!rc) rc = fn(t, reason, arg);
  watchdog_disarm();
  comm_set_timeout(j->distributed.timeout_s, "distributed.timeout_s");
  return rc;
}
static int restore_fn_(train_ctx *t, const char *reason, void *arg) {
  (void)reason;
  const train_hooks *h = arg;
  return h->restore(t, h->arg);
}
static int save_fn_(train_ctx *t, const char *reason, void *arg) {
  const train_hooks *h = arg;
  return h->save(t, reason, h->arg);
}
/* Rank 0 writes the metrics; a failure there (a full disk) ends every rank at the same
 * point instead of leaving the others waiting in the next step's collectives. */
static int metrics_put_(metrics_writer *w, json_t *o) {
  return agree_(metrics_write(w, o), "writing the metrics");
}
static int export_fn_(train_ctx *t, const char *dir, void *arg) {
  (void)arg;
  return train_export_hf(t, dir);
}

int train_run(const job_config *job, const train_hooks *hooks) {
  static const train_hooks none = {0};
  if (!hooks) hooks = &none;
  train_ctx t;
  int rc = train_setup(&t, job);
  metrics_writer mw = {0};
  if (!rc) rc = agree_(t.rank == 0 ? fs_mkdir_p(job->output_dir) : ST_OK, "creating output_dir");
  char *mpath = job_output_path(job, job->logging.metrics_file);
  if (!rc) rc = agree_(metrics_open(&mw, mpath, t.rank), "opening the metrics file");
  free(mpath);
  if (!rc && hooks->restore)
    rc = under_io_deadline_(&t, restore_fn_, NULL, (void *)hooks, "restoring the checkpoint");
  if (rc) {
    comm_set_timeout(0, NULL);
    metrics_close(&mw);
    train_teardown(&t);
    return rc;
  }
  char h1[32], h2[32];
  log_info("training %s: %d ranks, %lld steps of %llu samples x %lld tokens, %llu of %llu "
           "parameters trainable (%.1f %%), offload %s",
           job->model.path, t.nranks, (long long)t.st.total_steps,
           (unsigned long long)t.st.global_batch, (long long)job->training.max_seq_length,
           (unsigned long long)plan_total_numel(&t.plan, PB_TRAIN),
           (unsigned long long)(plan_total_numel(&t.plan, PB_TRAIN) + plan_total_numel(&t.plan, PB_FROZEN)),
           100.0 * (double)plan_total_numel(&t.plan, PB_TRAIN) /
               (double)(plan_total_numel(&t.plan, PB_TRAIN) + plan_total_numel(&t.plan, PB_FROZEN)),
           job_enum_name("sharding.offload", (int)job->sharding.offload));
  rc = metrics_put_(&mw, memory_report_(&t, 0));
  if (!rc) rc = metrics_put_(&mw, comm_report_(&t));
  if (!rc) rc = metrics_put_(&mw, placement_report_(&t));

  /* from here every wait for the other ranks is bounded (a lost host ends the job) */
  comm_set_timeout(job->distributed.timeout_s, "distributed.timeout_s");
  const uint64_t tokens_per_step = t.st.global_batch * (uint64_t)job->training.max_seq_length;
  double t_start = time_now_s();
  int64_t first_step = t.st.step, steps_since_log = 0;
  double step_s = 0; /* seconds inside train_step since the last log line */
  while (!rc && t.st.step < t.st.total_steps) {
    double loss, gnorm, lr, val = NAN;
    double t0 = time_now_s();
    rc = train_step(&t, &loss, &gnorm, &lr);
    if (rc) break;
    if (t.nonfinite) {
      rc = nonfinite_step_(&t, loss, gnorm, lr);
      if (rc) break;
    }
    steps_since_log++;
    step_s += time_now_s() - t0; /* throughput: training steps only (no eval, no saves) */
    if (t.st.step == first_step + 1 && !t.nonfinite) {
      uint64_t lk[COLL_NCAT][COLL_NLINK], th[COLL_NLINK] = {0, 0};
      step_link_theory_(&t, lk);
      for (int c = 0; c < COLL_NCAT; c++)
        for (int l = 0; l < COLL_NLINK; l++) th[l] += lk[c][l];
      char a[32], b[32], c2[32], d[32];
      log_info("communication of step %lld by link class, measured on this rank: intra-host "
               "%s (theory %s), inter-host %s (theory %s)",
               (long long)t.st.step, mem_human(t.step_link_bytes[0], a, sizeof a),
               mem_human(th[0], b, sizeof b), mem_human(t.step_link_bytes[1], c2, sizeof c2),
               mem_human(th[1], d, sizeof d));
    }
    int64_t s = t.st.step;
    int last = s == t.st.total_steps;
    int do_eval = (job->training.eval_steps > 0 && s % job->training.eval_steps == 0) || last;
    if (do_eval) rc = train_eval(&t, &val);
    if (!rc && do_eval && t.data.val.n && !isfinite(val)) rc = nonfinite_eval_(&t, val);
    if (rc) break;
    int do_log = s % job->training.logging_steps == 0 || last || do_eval;
    if (do_log) {
      double now = time_now_s();
      double tps = (double)(tokens_per_step * (uint64_t)steps_since_log) / step_s;
      double elapsed = t.st.elapsed_s + (now - t_start);
      double eta = (now - t_start) / (double)(s - first_step) * (double)(t.st.total_steps - s);
      double peak = (double)mem_peak_rss_bytes();
      coll_allreduce_max_f64(&peak, 1);
      char el[32], et[32], vl[48] = "";
      hms_(elapsed, el, sizeof el);
      hms_(eta, et, sizeof et);
      if (isfinite(val)) snprintf(vl, sizeof vl, " | val_loss %.4f", val);
      log_info("step %lld/%lld | loss %.4f%s | lr %.3e | grad_norm %.4f | %.0f tok/s | "
               "elapsed %s | eta %s | peak_mem %s",
               (long long)s, (long long)t.st.total_steps, loss, vl, lr, gnorm, tps, el, et,
               mem_human((uint64_t)peak, h1, sizeof h1));
      json_t *o = json_object();
      json_object_set_new(o, "step", json_integer(s));
      json_object_set_new(o, "epoch", json_real((double)t.st.samples_seen / (double)t.data.train.n));
      json_object_set_new(o, "loss", num_(loss));
      json_object_set_new(o, "lr", json_real(lr));
      json_object_set_new(o, "grad_norm", num_(gnorm));
      json_object_set_new(o, "tokens_per_s", num_(tps));
      json_object_set_new(o, "elapsed_s", json_real(elapsed));
      json_object_set_new(o, "peak_rss_bytes", json_integer((json_int_t)peak));
      for (int c = 0; c < COLL_NCAT; c++) {
        char key[48];
        snprintf(key, sizeof key, "%s_bytes", coll_category_name((coll_category)c));
        json_object_set_new(o, key, json_integer((json_int_t)t.step_comm_bytes[c]));
      }
      for (int l = 0; l < COLL_NLINK; l++) {
        char key[48];
        snprintf(key, sizeof key, "%s_bytes", coll_link_name((coll_link)l));
        json_object_set_new(o, key, json_integer((json_int_t)t.step_link_bytes[l]));
      }
      if (do_eval) json_object_set_new(o, "val_loss", num_(val));
      if (t.skipped_steps) json_object_set_new(o, "skipped_steps", json_integer(t.skipped_steps));
      rc = metrics_put_(&mw, o);
      step_s = 0;
      steps_since_log = 0;
    }
    if (!rc && hooks->save && job->training.save_steps > 0 && s % job->training.save_steps == 0 &&
        !last)
      rc = under_io_deadline_(&t, save_fn_, "step", (void *)hooks, "writing the checkpoint");
    if (!rc && !last && hooks->stop_agreed && hooks->stop_agreed(hooks->arg)) {
      log_info("stop requested: stopping after step %lld", (long long)s);
      if (hooks->save)
        rc = under_io_deadline_(&t, save_fn_, "stop", (void *)hooks, "writing the checkpoint");
      t.stopped = 1;
      break;
    }
  }
  t.st.elapsed_s += time_now_s() - t_start;
  if (!rc) rc = metrics_put_(&mw, memory_report_(&t, 1));
  if (!rc && !t.stopped) {
    if (hooks->save)
      rc = under_io_deadline_(&t, save_fn_, "final", (void *)hooks, "writing the checkpoint");
    char *dir = job_output_path(job, "final");
    if (!rc) {
      rc = under_io_deadline_(&t, export_fn_, dir, NULL, "exporting the model");
      if (rc && hooks->save && t.rank == 0) { /* the final checkpoint holds the model */
        char why[2048];
        snprintf(why, sizeof why, "%s", st_errmsg()); /* st_fail overwrites the message */
        st_fail(rc, "%s. The trained model is in the final checkpoint %s/ckpt-%lld.h5: "
                "`spectrain export %s/ckpt-%lld.h5 --out %s` writes it once there is room",
                why, job->output_dir, (long long)t.st.step, job->output_dir,
                (long long)t.st.step, dir);
      }
    }
    if (!rc) log_info("trained model written to %s (%s of training)", dir,
                      (hms_(t.st.elapsed_s, h2, sizeof h2), h2));
    free(dir);
  }
  if (!rc) rc = metrics_put_(&mw, comm_total_(&t));
  comm_set_timeout(0, NULL);
  int stopped = t.stopped;
  metrics_close(&mw);
  train_teardown(&t);
  return rc ? rc : stopped ? ST_STOPPED : ST_OK;
}
