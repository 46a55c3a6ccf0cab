/* Job files: the schema table and everything driven by it (parsing, defaults, checks,
 * --set overrides, hashing, canonical YAML, the reference documentation). */
#include "job/job.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "model/config.h"
#include "util/err.h"
#include "util/fs.h"
#include "util/hash.h"

#define OFF(field) offsetof(job_config, field)
#define INF HUGE_VAL
#define I64MAX 9.2e18

/* The schema. Order = documentation order = hash order (append, don't reorder, when the
 * hash of existing jobs should stay stable). */
static const job_key schema_[] = {
    {"output_dir", JT_STR, OFF(output_dir), NULL, 1, 0, 0, 0, NULL,
     "Folder for everything the job writes: checkpoints, metrics, the exported model. "
     "Created when missing. TRL users may write it as `training.output_dir` instead."},

    {"model.path", JT_STR, OFF(model.path), NULL, 1, 0, 0, 0, NULL,
     "Hugging Face model directory (config.json + model.safetensors or a sharded index). "
     "Also accepted as `model.model_name_or_path`."},
    {"model.init_preset", JT_STR, OFF(model.init_preset), "null", 0, 0, 0, 0, NULL,
     "When set and `model.path` has no config.json, `spectrain train` first writes a randomly "
     "initialised model of this preset there (as `spectrain init --preset NAME` does), so a job "
     "can start from scratch. null: the model directory must exist."},
    {"model.init_seed", JT_INT, OFF(model.init_seed), "0", 0, 0, I64MAX, 0, NULL,
     "Seed of that initialisation."},

    {"data.train", JT_STRLIST, OFF(data.train), NULL, 1, 0, 0, 0, NULL,
     "Training token file, or a list of them (read in order). `.bin`: llm.c shards; "
     "`.jsonl`: one pre-tokenized record per line (`input_ids`, optional `labels`); anything "
     "else: UTF-8 text read as bytes (vocabulary 256)."},
    {"data.validation", JT_STR, OFF(data.validation), "null", 0, 0, 0, 0, NULL,
     "Held-out token file (same formats). null: use `data.validation_split`."},
    {"data.validation_split", JT_FLOAT, OFF(data.validation_split), "0", 0, 0, 0.5, 0, NULL,
     "Fraction of the training samples held out for validation when there is no "
     "`data.validation` file (a fixed pseudo-random choice, independent of the seed). "
     "0 with no file: no validation."},
    {"data.format", JT_ENUM, OFF(data.format), "auto", 0, 0, 0, 0, "auto|bin|jsonl|text",
     "File format: auto picks by extension (.bin, .jsonl, else text)."},
    {"data.vocab_size", JT_INT, OFF(data.vocab_size), "0", 0, 0, 2147483647.0, 0, NULL,
     "Token ids must be below this (an id at or above it is an error naming file and position). "
     "0: the model's vocab_size."},

    {"spectrum.top_percent", JT_FLOAT, OFF(spectrum.top_percent), "100", 0, 0, 100, JOB_OPEN_MIN,
     NULL,
     "Per module type, train the top N % of modules by signal-to-noise ratio; the rest stay "
     "frozen. 100 trains every module (full fine-tuning)."},
    {"spectrum.layer_types", JT_STRLIST, OFF(spectrum.layer_types), NULL, 0, 0, 0, 0, NULL,
     "Restrict the scan and selection to these module types (e.g. `mlp.down_proj`, "
     "`self_attn.q_proj`); empty: every type."},
    {"spectrum.unfrozen_parameters", JT_STR, OFF(spectrum.unfrozen_parameters), "null", 0, 0, 0, 0,
     NULL,
     "A Spectrum `unfrozen_parameters` YAML (written by Spectrum, by hand or by `spectrain "
     "analyze`) to use instead of scanning. Excludes `top_percent` and `layer_types`."},
    {"spectrum.model_name", JT_STR, OFF(spectrum.model_name), "null", 0, 0, 0, 0, NULL,
     "Model name used in Spectrum's file names (`snr_results_<slug>...`). null: the name of "
     "the model directory."},

    {"training.learning_rate", JT_FLOAT, OFF(training.learning_rate), "5e-5", 0, 0, INF, 0, NULL,
     "Peak AdamW learning rate."},
    {"training.max_steps", JT_INT, OFF(training.max_steps), "-1", 0, -1, I64MAX, 0, NULL,
     "Optimizer steps to run. <= 0: run `num_train_epochs` epochs instead (as in HF). May "
     "differ from a checkpoint's when resuming (e.g. to extend a finished run): the "
     "learning-rate schedule is then recomputed over the new total, and a line says so."},
    {"training.num_train_epochs", JT_FLOAT, OFF(training.num_train_epochs), "3", 0, 0, INF, 0, NULL,
     "Epochs over the training samples when `max_steps` <= 0 (fractions allowed)."},
    {"training.per_device_train_batch_size", JT_INT, OFF(training.per_device_train_batch_size), "8",
     0, 1, I64MAX, 0, NULL,
     "Sequences per rank per micro-step. Global batch = this x ranks x "
     "gradient_accumulation_steps sequences."},
    {"training.per_device_eval_batch_size", JT_INT, OFF(training.per_device_eval_batch_size), "8",
     0, 1, I64MAX, 0, NULL, "Sequences per rank per evaluation step."},
    {"training.gradient_accumulation_steps", JT_INT, OFF(training.gradient_accumulation_steps), "1",
     0, 1, I64MAX, 0, NULL, "Micro-steps per optimizer step."},
    {"training.gradient_checkpointing", JT_BOOL, OFF(training.gradient_checkpointing), "false", 0,
     0, 0, 0, NULL, "Recompute each block's activations in backward instead of keeping them."},
    {"training.warmup_steps", JT_INT, OFF(training.warmup_steps), "0", 0, 0, I64MAX, 0, NULL,
     "Linear warmup from 0 over this many steps; wins over `warmup_ratio` when > 0."},
    {"training.warmup_ratio", JT_FLOAT, OFF(training.warmup_ratio), "0", 0, 0, 1, 0, NULL,
     "Warmup as a fraction of the total steps (used when `warmup_steps` is 0)."},
    {"training.weight_decay", JT_FLOAT, OFF(training.weight_decay), "0", 0, 0, INF, 0, NULL,
     "AdamW decoupled weight decay (matrices only; not norms or biases)."},
    {"training.adam_beta1", JT_FLOAT, OFF(training.adam_beta1), "0.9", 0, 0, 1, JOB_OPEN_MAX, NULL,
     "AdamW beta1."},
    {"training.adam_beta2", JT_FLOAT, OFF(training.adam_beta2), "0.999", 0, 0, 1, JOB_OPEN_MAX,
     NULL, "AdamW beta2."},
    {"training.adam_epsilon", JT_FLOAT, OFF(training.adam_epsilon), "1e-8", 0, 0, 1, JOB_OPEN_MIN,
     NULL, "AdamW epsilon."},
    {"training.lr_scheduler_type", JT_ENUM, OFF(training.lr_scheduler_type), "linear", 0, 0, 0, 0,
     "constant|linear|cosine|constant_with_warmup",
     "Learning-rate schedule after warmup (HF names): constant ignores warmup; linear and "
     "cosine decay to 0 at the last step; constant_with_warmup holds the peak after warmup."},
    {"training.max_grad_norm", JT_FLOAT, OFF(training.max_grad_norm), "1.0", 0, 0, INF, 0, NULL,
     "Clip the global gradient norm to this; 0: no clipping."},
    {"training.on_nonfinite", JT_ENUM, OFF(training.on_nonfinite), "stop", 0, 0, 0, 0, "stop|skip",
     "A step whose loss or global gradient norm is NaN or infinite never updates the model. "
     "stop: end the run there with an error (exit 1), before anything is checkpointed or "
     "exported, so the newest checkpoint is the last good state; skip: warn, leave parameters "
     "and optimizer state as they were, and go on with the next batch (the step still counts). "
     "Either way a checkpoint or export that would hold a non-finite value is refused."},
    {"training.seed", JT_INT, OFF(training.seed), "42", 0, 0, I64MAX, 0, NULL,
     "Seed of the data order (and of dropout-free training: the only randomness)."},
    {"training.bf16", JT_BOOL, OFF(training.bf16), "false", 0, 0, 0, 0, NULL,
     "bf16 mixed precision on every backend: frozen parameters stored and all-gathered in "
     "bfloat16, trainable ones as an fp32 master plus the bf16 copy that is gathered, bf16 "
     "matrix products with fp32 accumulation, fp32 gradients (reduce-scattered in fp32), "
     "AdamW and clipping on the fp32 master (docs/model.md, Precision)."},
    {"training.logging_steps", JT_INT, OFF(training.logging_steps), "10", 0, 1, I64MAX, 0, NULL,
     "Print and record training metrics every N steps."},
    {"training.eval_steps", JT_INT, OFF(training.eval_steps), "0", 0, 0, I64MAX, 0, NULL,
     "Validation loss every N steps; 0: only at the end."},
    {"training.eval_max_batches", JT_INT, OFF(training.eval_max_batches), "0", 0, 0, I64MAX, 0,
     NULL,
     "Evaluate on at most this many global validation batches (the same ones every time); "
     "0: the whole validation set."},
    {"training.save_steps", JT_INT, OFF(training.save_steps), "500", 0, 0, I64MAX, 0, NULL,
     "Checkpoint every N steps; 0: only at the end (and on a stop signal)."},
    {"training.save_total_limit", JT_INT, OFF(training.save_total_limit), "0", 0, 0, I64MAX, 0,
     NULL, "Keep at most this many checkpoints (oldest removed first); 0: keep all."},
    {"training.max_seq_length", JT_INT, OFF(training.max_seq_length), "1024", 0, 1, 1048576, 0,
     NULL,
     "Sequence length T of every sample; longer JSONL records are truncated (and counted). "
     "Also accepted as `training.max_length` (newer TRL)."},
    {"training.padding", JT_ENUM, OFF(training.padding), "longest", 0, 0, 0, 0,
     "longest|max_length",
     "How long each micro-batch is. longest: as long as its longest sequence (one past its "
     "last counted target, rounded up to a multiple of 16 tokens), as Hugging Face's "
     "collators pad: JSONL records shorter than max_seq_length cost their own length, and "
     "the loss is the same (a causal model's loss at a position never sees later ones); "
     "max_length: always max_seq_length tokens. Text and .bin windows are always full."},
    {"training.backend", JT_ENUM, OFF(training.backend), "auto", 0, 0, 0, 0, "cpu|cuda|auto",
     "Where the model computes: cpu (OpenBLAS + OpenMP), cuda (one GPU per rank, chosen by "
     "the node-local rank; NCCL collectives), or auto (cuda when a GPU is usable, else cpu; "
     "the start-up log says which and why). Also where the Spectrum scan "
     "(`spectrum.top_percent` < 100) takes singular values: cpu keeps it on LAPACK/ScaLAPACK; "
     "cuda and auto use cuSOLVER when every rank has a GPU, as `spectrain analyze --solver "
     "auto` does."},
    {"training.optim", JT_ENUM, OFF(training.optim), "adamw_torch", 0, 0, 0, 0,
     "adamw_torch|adamw_torch_fused|adamw_hf|adamw",
     "Accepted for TRL/HF compatibility: every choice means the same decoupled AdamW "
     "(fp32 state, sharded across ranks)."},
    {"training.fp16", JT_BOOL, OFF(training.fp16), "false", 0, 0, 0, 0, NULL,
     "Accepted for TRL/HF compatibility; must be false (use `bf16`)."},
    {"training.packing", JT_BOOL, OFF(training.packing), "false", 0, 0, 0, 0, NULL,
     "Accepted for TRL compatibility; must be false: JSONL records are never packed (text "
     "and .bin data are streams cut into windows anyway)."},
    {"training.output_dir", JT_STR, OFF(training.output_dir), "null", 0, 0, 0, 0, NULL,
     "TRL's place for `output_dir`; either may be given (both and different is an error)."},

    {"sharding.strategy", JT_ENUM, OFF(sharding.strategy), "full", 0, 0, 0, 0, "full|hybrid",
     "full: every unit is sharded over all ranks (FSDP's FULL_SHARD, ZeRO-3). hybrid: sharded "
     "within a shard group (the ranks of one host), replicated across the groups (FSDP2's "
     "HSDP, DeepSpeed ZeRO++ hpZ): the all-gathers and reduce-scatters of every unit stay on "
     "the intra-host links and only the reduced gradient shards are all-reduced across hosts "
     "(each rank then holds 1/shard_size of the state instead of 1/ranks). Every host must "
     "run the same number of ranks. Losses, checkpoints and exports are those of full "
     "(docs/sharding.md, Hybrid sharding)."},
    {"sharding.shard_size", JT_INT, OFF(sharding.shard_size), "0", 0, 0, 1048576, 0, NULL,
     "strategy hybrid only: ranks per shard group (the shard dimension of the device mesh "
     "(replicas, shard_size)); 0: the ranks of one host. It must divide every host's rank "
     "count; below it, one host holds several shard groups (hybrid sharding tried on one "
     "machine)."},
    {"sharding.reduce_dtype", JT_ENUM, OFF(sharding.reduce_dtype), "fp32", 0, 0, 0, 0,
     "fp32|bf16",
     "The dtype gradients are reduce-scattered in (FSDP's MixedPrecision reduce_dtype). fp32: "
     "exact sums, as the single-rank step. bf16: each unit's gradient is rounded to bf16 and "
     "summed in bf16 (every partial sum formed in fp32 and rounded, as NCCL does), then "
     "widened into the fp32 gradient shard: half the reduce-scatter (and, hybrid, "
     "cross-host) bytes, gradients accurate to bf16 rounding only. Either works with or "
     "without training.bf16; mpi transports only (the cuda backend's nccl refuses bf16 "
     "for now)."},
    {"sharding.offload", JT_ENUM, OFF(sharding.offload), "none", 0, 0, 0, 0,
     "none|cpu|cpu_trainable",
     "cpu: keep parameter shards and optimizer state in host memory between uses (FSDP "
     "offload; AdamW runs on the host); cpu_trainable: only the trainable parameter shards, "
     "gradients and optimizer state (frozen shards stay on the compute device: fewer "
     "uploads when few parameters train); none: keep them on the compute device."},
    {"sharding.prefetch", JT_INT, OFF(sharding.prefetch), "1", 0, 0, 64, 0, NULL,
     "Units whose all-gather is started ahead of the one computing."},
    {"sharding.limit_all_gathers", JT_BOOL, OFF(sharding.limit_all_gathers), "true", 0, 0, 0, 0,
     NULL, "Never hold more gathered units than 1 + prefetch (bounds memory)."},
    {"sharding.reshard_after_forward", JT_BOOL, OFF(sharding.reshard_after_forward), "true", 0, 0,
     0, 0, NULL,
     "Release gathered units after forward and re-gather them in backward (ZeRO-3); false "
     "keeps them (more memory, fewer gathers)."},

    {"distributed.timeout_s", JT_FLOAT, OFF(distributed.timeout_s), "300", 0, 0, INF, 0, NULL,
     "The longest one rank waits for the others in one collective while training (steps, "
     "evaluations). Past it the rank names the ranks and hosts that no longer answer and "
     "ends the job (exit 1), so a lost host or a cut link ends the run in bounded time "
     "instead of hanging; the newest complete checkpoint stays the last good state. 0: wait "
     "forever. Raise it when ranks may legitimately wait longer for each other."},
    {"distributed.checkpoint_timeout_s", JT_FLOAT, OFF(distributed.checkpoint_timeout_s), "1800",
     0, 0, INF, 0, NULL,
     "The longest a checkpoint write, the restore at start or the final export may take "
     "(and any wait for the other ranks inside them); past it the job ends as for "
     "`timeout_s`. 0: no limit. Size it to the checkpoint: its bytes over the slowest file "
     "system bandwidth you accept, with room to spare."},

    {"checkpoint.resume", JT_STR, OFF(checkpoint.resume), "auto", 0, 0, 0, 0, NULL,
     "auto: resume from the latest complete checkpoint in output_dir if there is one; none: "
     "start fresh; or the path of a checkpoint."},
    {"checkpoint.take_from_checkpoint", JT_BOOL, OFF(checkpoint.take_from_checkpoint), "false", 0,
     0, 0, 0, NULL,
     "On resume, train with the job stored in the checkpoint. false: a job that differs from "
     "the stored one is an error naming the keys that differ."},
    {"checkpoint.save_on_signal", JT_BOOL, OFF(checkpoint.save_on_signal), "true", 0, 0, 0, 0, NULL,
     "On SIGUSR1/SIGTERM (Slurm before the time limit) checkpoint at the next step boundary "
     "and exit for requeue."},

    {"logging.metrics_file", JT_STR, OFF(logging.metrics_file), "metrics.jsonl", 0, 0, 0, 0, NULL,
     "JSON-lines metrics (one object per logged step and evaluation), under output_dir."},
    {"logging.log_memory", JT_BOOL, OFF(logging.log_memory), "true", 0, 0, 0, 0, NULL,
     "Add peak host (and device) memory to progress lines and metrics."},
};
#define NKEYS_ ((int)(sizeof schema_ / sizeof schema_[0]))

/* Other names for a key (TRL spellings). */
static const struct {
  const char *alias, *path;
} aliases_[] = {
    {"model.model_name_or_path", "model.path"},
    {"training.max_length", "training.max_seq_length"},
};
#define NALIASES_ ((int)(sizeof aliases_ / sizeof aliases_[0]))

const job_key *job_schema(int *n) {
  if (n) *n = NKEYS_;
  return schema_;
}

int job_key_index(const char *path) {
  for (int i = 0; i < NKEYS_; i++)
    if (strcmp(schema_[i].path, path) == 0) return i;
  return -1;
}

static int resolve_(const char *path) {
  int k = job_key_index(path);
  if (k >= 0) return k;
  for (int i = 0; i < NALIASES_; i++)
    if (strcmp(aliases_[i].alias, path) == 0) return job_key_index(aliases_[i].path);
  return -1;
}

/* A section is a proper prefix of some key path ending at a dot ("training"). */
static int is_section_(const char *path) {
  size_t len = strlen(path);
  for (int i = 0; i < NKEYS_; i++)
    if (strncmp(schema_[i].path, path, len) == 0 && schema_[i].path[len] == '.') return 1;
  return 0;
}

/* The closest known path or section, or NULL when nothing is close. A key put into the
 * wrong section (same last component) is suggested first. */
static const char *suggest_(const char *path, char *buf, size_t bufsz) {
  const char *leaf = strrchr(path, '.');
  leaf = leaf ? leaf + 1 : path;
  for (int i = 0; i < NKEYS_ + NALIASES_; i++) {
    const char *p = i < NKEYS_ ? schema_[i].path : aliases_[i - NKEYS_].alias;
    const char *pl = strrchr(p, '.');
    pl = pl ? pl + 1 : p;
    if (strcmp(pl, leaf) == 0 && strcmp(p, path) != 0) {
      snprintf(buf, bufsz, "%s", p);
      return buf;
    }
  }
  int best = 1 << 30;
  const char *bestp = NULL;
  char cand[128];
  for (int i = 0; i < NKEYS_ + NALIASES_; i++) {
    const char *p = i < NKEYS_ ? schema_[i].path : aliases_[i - NKEYS_].alias;
    /* the key itself and each section above it */
    for (const char *dot = p;; dot++) {
      if (*dot == '.' || *dot == '\0') {
        size_t l = (size_t)(dot - p);
        if (l >= sizeof cand) l = sizeof cand - 1;
        memcpy(cand, p, l);
        cand[l] = '\0';
        int d = opt_edit_distance(path, cand);
        if (d < best) {
          best = d;
          snprintf(buf, bufsz, "%s", cand);
          bestp = buf;
        }
      }
      if (*dot == '\0') break;
    }
  }
  size_t ll = strlen(leaf);
  int limit = ll <= 4 ? 1 : ll <= 8 ? 2 : 3;
  return best <= limit ? bestp : NULL;
}

static int unknown_key_(const char *where, const char *path) {
  char buf[128];
  const char *s = suggest_(path, buf, sizeof buf);
  if (s)
    return st_fail(ST_EINPUT, "%s: unknown key '%s' (did you mean '%s'?); see docs/job-file.md",
                   where, path, s);
  return st_fail(ST_EINPUT, "%s: unknown key '%s'; see docs/job-file.md for the keys", where, path);
}

/* ---- typed values ------------------------------------------------------------- */
static void *slot_(job_config *c, const job_key *k) { return (char *)c + k->offset; }
static const void *cslot_(const job_config *c, const job_key *k) {
  return (const char *)c + k->offset;
}

static void strlist_free_(job_strlist *l) {
  for (int i = 0; i < l->n; i++) free(l->v[i]);
  free(l->v);
  l->v = NULL;
  l->n = 0;
}

static void strlist_push_(job_strlist *l, const char *s) {
  l->v = xrealloc(l->v, (size_t)(l->n + 1) * sizeof *l->v);
  l->v[l->n++] = xstrdup(s);
}

static void clear_value_(job_config *c, const job_key *k) {
  void *p = slot_(c, k);
  if (k->type == JT_STR) {
    free(*(char **)p);
    *(char **)p = NULL;
  } else if (k->type == JT_STRLIST) {
    strlist_free_((job_strlist *)p);
  }
}

static const char *type_name_(const job_key *k) {
  switch (k->type) {
    case JT_STR:
      return "a string";
    case JT_INT:
      return "an integer";
    case JT_FLOAT:
      return "a number";
    case JT_BOOL:
      return "true or false";
    case JT_ENUM:
      return "one of";
    case JT_STRLIST:
      return "a list of strings";
  }
  return "?";
}

/* Describe the range of a numeric key ("an integer >= 1", "a number in (0, 100]"). */
static void range_text_(const job_key *k, char *buf, size_t n) {
  const char *t = type_name_(k);
  int has_min = k->min > -I64MAX, has_max = k->max < (k->type == JT_INT ? I64MAX : INF);
  if (has_min && has_max)
    snprintf(buf, n, "%s in %c%.10g, %.10g%c", t, (k->open & JOB_OPEN_MIN) ? '(' : '[', k->min,
             k->max, (k->open & JOB_OPEN_MAX) ? ')' : ']');
  else if (has_min)
    snprintf(buf, n, "%s %s %.10g", t, (k->open & JOB_OPEN_MIN) ? ">" : ">=", k->min);
  else
    snprintf(buf, n, "%s", t);
}

static int is_null_scalar_(const char *s, int plain) {
  return plain && (s[0] == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
                   strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0);
}

/* Store scalar text `s` into key k. `plain`: the YAML scalar was unquoted (only plain
 * scalars can be null, numbers or booleans). */
static int set_scalar_(job_config *c, const job_key *k, const char *where, const char *s,
                       int plain) {
  void *p = slot_(c, k);
  char *end;
  char rng[160];
  switch (k->type) {
    case JT_STR:
      clear_value_(c, k);
      if (!is_null_scalar_(s, plain)) *(char **)p = xstrdup(s);
      return 0;
    case JT_STRLIST:
      clear_value_(c, k);
      if (!is_null_scalar_(s, plain)) strlist_push_((job_strlist *)p, s);
      return 0;
    case JT_INT: {
      errno = 0;
      long long v = plain ? strtoll(s, &end, 10) : 0;
      if (!plain || errno || end == s || *end) {
        range_text_(k, rng, sizeof rng);
        return st_fail(ST_EINPUT, "%s: key '%s': expected %s, found '%s'", where, k->path, rng, s);
      }
      if ((double)v < k->min || (double)v > k->max) {
        range_text_(k, rng, sizeof rng);
        if ((double)v > k->max && k->max >= I64MAX) /* the text names no upper bound */
          return st_fail(ST_EINPUT, "%s: key '%s': expected %s and at most %.0f, found %lld",
                         where, k->path, rng, k->max, v);
        return st_fail(ST_EINPUT, "%s: key '%s': expected %s, found %lld", where, k->path, rng, v);
      }
      *(int64_t *)p = (int64_t)v;
      return 0;
    }
    case JT_FLOAT: {
      errno = 0;
      double v = plain ? strtod(s, &end) : 0;
      if (!plain || errno || end == s || *end || !isfinite(v)) {
        range_text_(k, rng, sizeof rng);
        return st_fail(ST_EINPUT, "%s: key '%s': expected %s, found '%s'", where, k->path, rng, s);
      }
      if (v < k->min || v > k->max || ((k->open & JOB_OPEN_MIN) && v == k->min) ||
          ((k->open & JOB_OPEN_MAX) && v == k->max)) {
        range_text_(k, rng, sizeof rng);
        return st_fail(ST_EINPUT, "%s: key '%s': expected %s, found %s", where, k->path, rng, s);
      }
      *(double *)p = v;
      return 0;
    }
    case JT_BOOL: {
      static const char *yes[] = {"true", "yes", "on"}, *no[] = {"false", "no", "off"};
      for (int i = 0; plain && i < 3; i++) {
        if (strcasecmp(s, yes[i]) == 0) return *(int *)p = 1, 0;
        if (strcasecmp(s, no[i]) == 0) return *(int *)p = 0, 0;
      }
      return st_fail(ST_EINPUT, "%s: key '%s': expected true or false, found '%s'", where, k->path,
                     s);
    }
    case JT_ENUM: {
      int idx = 0, best = 1 << 30;
      const char *c0 = k->choices, *bestc = NULL;
      size_t bestl = 0;
      for (const char *q = c0;; q++) {
        if (*q == '|' || *q == '\0') {
          size_t l = (size_t)(q - c0);
          if (strlen(s) == l && strncmp(s, c0, l) == 0) return *(int *)p = idx, 0;
          char tmp[64];
          snprintf(tmp, sizeof tmp, "%.*s", (int)l, c0);
          int d = opt_edit_distance(s, tmp);
          if (d < best) best = d, bestc = c0, bestl = l;
          idx++;
          c0 = q + 1;
        }
        if (*q == '\0') break;
      }
      if (bestc && best <= 3)
        return st_fail(ST_EINPUT,
                       "%s: key '%s': expected one of %s, found '%s' (did you mean '%.*s'?)", where,
                       k->path, k->choices, s, (int)bestl, bestc);
      return st_fail(ST_EINPUT, "%s: key '%s': expected one of %s, found '%s'", where, k->path,
                     k->choices, s);
    }
  }
  return 0;
}

static int set_node_(job_config *c, const job_key *k, const char *where, yaml_document_t *doc,
                     yaml_node_t *node) {
  if (!node) return set_scalar_(c, k, where, "", 1);
  if (node->type == YAML_SCALAR_NODE)
    return set_scalar_(c, k, where, (const char *)node->data.scalar.value,
                       node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE);
  if (node->type == YAML_SEQUENCE_NODE && k->type == JT_STRLIST) {
    job_strlist tmp = {0, NULL};
    for (yaml_node_item_t *it = node->data.sequence.items.start; it < node->data.sequence.items.top;
         it++) {
      yaml_node_t *e = yaml_document_get_node(doc, *it);
      if (!e || e->type != YAML_SCALAR_NODE) {
        strlist_free_(&tmp);
        return st_fail(ST_EINPUT,
                       "%s: key '%s': expected a list of strings, found a list with a %s in it",
                       where, k->path, e && e->type == YAML_MAPPING_NODE ? "mapping" : "list");
      }
      strlist_push_(&tmp, (const char *)e->data.scalar.value);
    }
    clear_value_(c, k);
    *(job_strlist *)slot_(c, k) = tmp;
    return 0;
  }
  char rng[160];
  range_text_(k, rng, sizeof rng);
  if (k->type == JT_ENUM) snprintf(rng, sizeof rng, "one of %s", k->choices);
  return st_fail(ST_EINPUT, "%s: key '%s': expected %s, found a %s", where, k->path, rng,
                 node->type == YAML_MAPPING_NODE ? "mapping" : "list");
}

/* ---- loading -------------------------------------------------------------------- */
static void init_(job_config *c) {
  memset(c, 0, sizeof *c);
  c->is_set = xcalloc((size_t)NKEYS_, 1);
  c->key_line = xcalloc((size_t)NKEYS_, sizeof *c->key_line);
  for (int i = 0; i < NKEYS_; i++)
    if (schema_[i].def) {
      int rc = set_scalar_(c, &schema_[i], "schema default", schema_[i].def, 1);
      (void)rc; /* defaults are checked by the unit test of the schema */
    }
  c->sets_text = xstrdup("");
}

void job_free(job_config *c) {
  if (!c) return;
  for (int i = 0; i < NKEYS_; i++) clear_value_(c, &schema_[i]);
  free(c->source_path);
  free(c->source_text);
  free(c->sets_text);
  free(c->is_set);
  free(c->key_line);
  memset(c, 0, sizeof *c);
}

int job_is_set(const job_config *c, const char *path) {
  int k = resolve_(path);
  return k >= 0 && c->is_set && c->is_set[k];
}

static int walk_(job_config *c, const char *file, yaml_document_t *doc, yaml_node_t *map,
                 const char *prefix) {
  for (yaml_node_pair_t *pr = map->data.mapping.pairs.start; pr < map->data.mapping.pairs.top;
       pr++) {
    yaml_node_t *kn = yaml_document_get_node(doc, pr->key);
    yaml_node_t *vn = yaml_document_get_node(doc, pr->value);
    int line = (int)kn->start_mark.line + 1;
    char where[1100];
    snprintf(where, sizeof where, "%s:%d", file, line);
    if (kn->type != YAML_SCALAR_NODE)
      return st_fail(ST_EINPUT, "%s: expected a key name, found a %s", where,
                     kn->type == YAML_MAPPING_NODE ? "mapping" : "list");
    char path[256];
    snprintf(path, sizeof path, "%s%s%s", prefix, prefix[0] ? "." : "",
             (const char *)kn->data.scalar.value);
    for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < pr; q++) {
      yaml_node_t *qk = yaml_document_get_node(doc, q->key);
      if (qk->type == YAML_SCALAR_NODE &&
          strcmp((const char *)qk->data.scalar.value, (const char *)kn->data.scalar.value) == 0)
        return st_fail(ST_EINPUT, "%s: key '%s' given twice (also at line %d)", where, path,
                       (int)qk->start_mark.line + 1);
    }
    int k = resolve_(path);
    if (k >= 0) {
      if (c->is_set[k])
        return st_fail(ST_EINPUT, "%s: key '%s' given twice (also at line %d)", where,
                       schema_[k].path, c->key_line[k]);
      int rc = set_node_(c, &schema_[k], where, doc, vn);
      if (rc) return rc;
      c->is_set[k] = 1;
      c->key_line[k] = line;
    } else if (is_section_(path)) {
      if (vn->type == YAML_SCALAR_NODE &&
          is_null_scalar_((const char *)vn->data.scalar.value,
                          vn->data.scalar.style == YAML_PLAIN_SCALAR_STYLE))
        continue; /* an empty section */
      if (vn->type != YAML_MAPPING_NODE)
        return st_fail(ST_EINPUT, "%s: section '%s': expected a mapping of keys, found a %s", where,
                       path, vn->type == YAML_SCALAR_NODE ? "scalar" : "list");
      int rc = walk_(c, file, doc, vn, path);
      if (rc) return rc;
    } else {
      return unknown_key_(where, path);
    }
  }
  return 0;
}

static void append_set_(job_config *c, const char *assignment) {
  char *t = xasprintf("%s%s\n", c->sets_text ? c->sets_text : "", assignment);
  free(c->sets_text);
  c->sets_text = t;
}

static int apply_set_(job_config *c, const char *assignment) {
  const char *eq = strchr(assignment, '=');
  char where[600];
  snprintf(where, sizeof where, "--set %s", assignment);
  if (!eq || eq == assignment)
    return st_fail(ST_EINPUT,
                   "%s: expected KEY=VALUE with a dotted key path (e.g. "
                   "training.max_steps=5)",
                   where);
  char path[256];
  snprintf(path, sizeof path, "%.*s", (int)(eq - assignment), assignment);
  int k = resolve_(path);
  if (k < 0) return unknown_key_(where, path);
  const char *val = eq + 1;
  yaml_parser_t parser;
  yaml_document_t doc;
  yaml_parser_initialize(&parser);
  yaml_parser_set_input_string(&parser, (const unsigned char *)val, strlen(val));
  int rc;
  if (!yaml_parser_load(&parser, &doc)) {
    rc = st_fail(ST_EINPUT, "%s: the value is not valid YAML: %s", where,
                 parser.problem ? parser.problem : "?");
  } else {
    rc = set_node_(c, &schema_[k], where, &doc, yaml_document_get_root_node(&doc));
    yaml_document_delete(&doc);
  }
  yaml_parser_delete(&parser);
  if (rc) return rc;
  c->is_set[k] = 1;
  /* a --set of either output_dir spelling moves both */
  int ko = job_key_index("output_dir"), kt = job_key_index("training.output_dir");
  if (k == ko || k == kt) {
    char **other = k == ko ? &c->training.output_dir : &c->output_dir;
    const char *mine = k == ko ? c->output_dir : c->training.output_dir;
    free(*other);
    *other = mine ? xstrdup(mine) : NULL;
  }
  append_set_(c, assignment);
  return 0;
}

static int str_eq_(const char *a, const char *b) {
  return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* Products of size keys that the trainer's types bound, refused here so that `check` and
 * `train` say which keys to change instead of overflowing (memory is checked by train
 * once the model is known). A micro-batch is B x T tokens of an int-indexed activation
 * buffer: at most 2^30 per rank (model_ctx_create's bound); a step holds A x B sequences
 * per rank: at most INT_MAX. */
static int check_products_(const job_config *c, const char *f) {
  const int64_t max_tokens = (int64_t)1 << 30, T = c->training.max_seq_length;
  const int64_t B = c->training.per_device_train_batch_size,
                E = c->training.per_device_eval_batch_size,
                A = c->training.gradient_accumulation_steps;
  static const char *why =
      "the activations of one micro-batch are indexed by int: at most 1073741824 (2^30) "
      "tokens per rank";
  if (T > 0 && B > max_tokens / T)
    return st_fail(ST_EINPUT,
                   "%s: training.per_device_train_batch_size %lld x training.max_seq_length "
                   "%lld = %.4g tokens per micro-batch: %s; lower "
                   "per_device_train_batch_size (and raise gradient_accumulation_steps to keep "
                   "the global batch) or max_seq_length",
                   f, (long long)B, (long long)T, (double)B * (double)T, why);
  if (T > 0 && E > max_tokens / T)
    return st_fail(ST_EINPUT,
                   "%s: training.per_device_eval_batch_size %lld x training.max_seq_length "
                   "%lld = %.4g tokens per evaluation batch: %s; lower "
                   "per_device_eval_batch_size",
                   f, (long long)E, (long long)T, (double)E * (double)T, why);
  if (B > 0 && A > INT_MAX / B)
    return st_fail(ST_EINPUT,
                   "%s: training.gradient_accumulation_steps %lld x "
                   "training.per_device_train_batch_size %lld = %.4g sequences per rank and "
                   "step: at most %d; lower gradient_accumulation_steps (more ranks give the "
                   "same global batch with fewer)",
                   f, (long long)A, (long long)B, (double)A * (double)B, INT_MAX);
  return 0;
}

/* Cross-key rules and required keys; normalises the two output_dir spellings. */
static int validate_(job_config *c) {
  const char *f = c->source_path ? c->source_path : "job";
  int rc_sz;
  int ko = job_key_index("output_dir"), kt = job_key_index("training.output_dir");
  if (c->output_dir && c->training.output_dir && !str_eq_(c->output_dir, c->training.output_dir))
    return st_fail(ST_EINPUT,
                   "%s: output_dir '%s' (line %d) and training.output_dir '%s' (line %d) "
                   "differ; give one of them",
                   f, c->output_dir, c->key_line[ko], c->training.output_dir, c->key_line[kt]);
  if (!c->output_dir && c->training.output_dir) c->output_dir = xstrdup(c->training.output_dir);
  if (c->output_dir && !c->training.output_dir) c->training.output_dir = xstrdup(c->output_dir);
  for (int i = 0; i < NKEYS_; i++) {
    const job_key *k = &schema_[i];
    if (!k->required) continue;
    const void *p = cslot_(c, k);
    int missing = (k->type == JT_STR && !*(char *const *)p) ||
                  (k->type == JT_STRLIST && ((const job_strlist *)p)->n == 0);
    if (missing)
      return st_fail(ST_EINPUT, "%s: missing required key '%s' (%s)", f, k->path, k->help);
  }
  if (c->spectrum.unfrozen_parameters &&
      (job_is_set(c, "spectrum.top_percent") || c->spectrum.layer_types.n))
    return st_fail(ST_EINPUT,
                   "%s:%d: spectrum.unfrozen_parameters gives the selection; "
                   "spectrum.top_percent and spectrum.layer_types must then be left out",
                   f, c->key_line[job_key_index("spectrum.unfrozen_parameters")]);
  if (c->data.validation && c->data.validation_split > 0)
    return st_fail(ST_EINPUT,
                   "%s:%d: data.validation (a file) and data.validation_split = %g "
                   "are both given; give one of them",
                   f, c->key_line[job_key_index("data.validation")], c->data.validation_split);
  if (c->model.init_preset && !model_config_preset_json(c->model.init_preset))
    return st_fail(ST_EINPUT, "%s:%d: model.init_preset: expected one of %s, found '%s'", f,
                   c->key_line[job_key_index("model.init_preset")], model_config_preset_names(),
                   c->model.init_preset);
  if (c->sharding.shard_size > 0 && c->sharding.strategy != SHARDING_HYBRID)
    return st_fail(ST_EINPUT,
                   "%s:%d: sharding.shard_size = %lld applies to sharding.strategy hybrid "
                   "only (full shards over every rank); set sharding.strategy: hybrid or "
                   "leave sharding.shard_size out",
                   f, c->key_line[job_key_index("sharding.shard_size")],
                   (long long)c->sharding.shard_size);
  if (c->training.fp16)
    return st_fail(ST_EINPUT,
                   "%s:%d: training.fp16: expected false, found true: spectrain "
                   "computes in fp32 or bfloat16 (set training.bf16: true instead)",
                   f, c->key_line[job_key_index("training.fp16")]);
  if (c->training.packing)
    return st_fail(ST_EINPUT,
                   "%s:%d: training.packing: expected false, found true: a JSONL "
                   "record is always one sequence (text and .bin data are cut into windows)",
                   f, c->key_line[job_key_index("training.packing")]);
  if ((rc_sz = check_products_(c, f))) return rc_sz;
  if (c->training.max_steps <= 0 && c->training.num_train_epochs <= 0)
    return st_fail(ST_EINPUT,
                   "%s: nothing to train: training.max_steps = %lld and "
                   "training.num_train_epochs = %g; set one of them above 0",
                   f, (long long)c->training.max_steps, c->training.num_train_epochs);
  return 0;
}

static int load_doc_(job_config *c, const char *name, const char *text) {
  yaml_parser_t parser;
  yaml_document_t doc;
  yaml_parser_initialize(&parser);
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, strlen(text));
  int rc = 0;
  if (!yaml_parser_load(&parser, &doc)) {
    rc = st_fail(ST_EINPUT, "%s:%d:%d: not valid YAML: %s%s%s", name,
                 (int)parser.problem_mark.line + 1, (int)parser.problem_mark.column + 1,
                 parser.problem ? parser.problem : "?", parser.context ? " " : "",
                 parser.context ? parser.context : "");
    yaml_parser_delete(&parser);
    return rc;
  }
  yaml_node_t *root = yaml_document_get_root_node(&doc);
  if (!root)
    rc = st_fail(ST_EINPUT,
                 "%s: the job file is empty (expected a mapping with output_dir, "
                 "model, data, ...)",
                 name);
  else if (root->type != YAML_MAPPING_NODE)
    rc =
        st_fail(ST_EINPUT, "%s:%d: expected a mapping of keys at the top level, found a %s", name,
                (int)root->start_mark.line + 1, root->type == YAML_SCALAR_NODE ? "scalar" : "list");
  else
    rc = walk_(c, name, &doc, root, "");
  yaml_document_delete(&doc);
  yaml_parser_delete(&parser);
  return rc;
}

int job_load_text(const char *name, const char *text, const opt_list *sets, job_config *out) {
  init_(out);
  out->source_path = xstrdup(name);
  out->source_text = xstrdup(text);
  int rc = load_doc_(out, name, text);
  for (int i = 0; !rc && sets && i < sets->n; i++) rc = apply_set_(out, sets->v[i]);
  if (!rc) rc = validate_(out);
  return rc;
}

int job_load(const char *path, const opt_list *sets, job_config *out) {
  int crc = fs_check_file(path, "a job file (YAML; see docs/job-file.md)", 0);
  if (crc) {
    init_(out);
    return crc;
  }
  FILE *f = fopen(path, "rb");
  if (!f) {
    int err = errno; /* init_ allocates, which may change errno */
    init_(out);
    return st_fail(ST_EINPUT, "%s: cannot open the job file: %s", path, strerror(err));
  }
  size_t cap = 4096, n = 0;
  char *buf = xmalloc(cap);
  size_t r;
  while ((r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
    n += r;
    if (cap - n - 1 == 0) buf = xrealloc(buf, cap *= 2);
  }
  int err = ferror(f);
  fclose(f);
  buf[n] = '\0';
  if (err) {
    free(buf);
    init_(out);
    return st_fail(ST_EINPUT, "%s: cannot read the job file", path);
  }
  if (strlen(buf) != n) {
    free(buf);
    init_(out);
    return st_fail(ST_EINPUT, "%s: the job file contains a NUL byte (expected UTF-8 YAML text)",
                   path);
  }
  int rc = job_load_text(path, buf, sets, out);
  free(buf);
  return rc;
}

int job_set(job_config *c, const char *assignment) {
  int rc = apply_set_(c, assignment);
  return rc ? rc : validate_(c);
}

int job_load_stored(const char *name, const char *source_text, const char *sets_text,
                    job_config *out) {
  /* split the "path=value\n" lines into an opt_list */
  char *copy = xstrdup(sets_text ? sets_text : "");
  opt_list sets = {0, NULL};
  for (char *line = strtok(copy, "\n"); line; line = strtok(NULL, "\n")) {
    sets.v = xrealloc((void *)sets.v, (size_t)(sets.n + 1) * sizeof *sets.v);
    sets.v[sets.n++] = line;
  }
  int rc = job_load_text(name, source_text, &sets, out);
  free((void *)sets.v);
  free(copy);
  return rc;
}

/* ---- hashing, canonical YAML, reference ------------------------------------------ */
static uint64_t key_hash_(uint64_t h, const job_config *c, const job_key *k) {
  const void *p = cslot_(c, k);
  h = hash64_str(h, k->path);
  switch (k->type) {
    case JT_STR: {
      const char *s = *(char *const *)p;
      h = hash64_u64(h, s != NULL);
      if (s) h = hash64_str(h, s);
      break;
    }
    case JT_INT:
      h = hash64_u64(h, (uint64_t) * (const int64_t *)p);
      break;
    case JT_FLOAT: {
      double v = *(const double *)p;
      uint64_t bits;
      if (v == 0) v = 0; /* -0 and 0 hash alike */
      memcpy(&bits, &v, sizeof bits);
      h = hash64_u64(h, bits);
      break;
    }
    case JT_BOOL:
    case JT_ENUM:
      h = hash64_u64(h, (uint64_t)(int64_t) * (const int *)p);
      break;
    case JT_STRLIST: {
      const job_strlist *l = p;
      h = hash64_u64(h, (uint64_t)l->n);
      for (int j = 0; j < l->n; j++) h = hash64_str(h, l->v[j]);
      break;
    }
  }
  return h;
}

uint64_t job_hash(const job_config *c) {
  uint64_t h = HASH64_INIT;
  for (int i = 0; i < NKEYS_; i++) h = key_hash_(h, c, &schema_[i]);
  return h;
}

char *job_diff(const job_config *a, const job_config *b) {
  char *out = NULL;
  for (int i = 0; i < NKEYS_; i++) {
    const job_key *k = &schema_[i];
    if (k->offset == offsetof(job_config, training.output_dir)) continue; /* = output_dir */
    if (key_hash_(HASH64_INIT, a, k) == key_hash_(HASH64_INIT, b, k)) continue;
    char *t = xasprintf("%s%s%s", out ? out : "", out ? ", " : "", k->path);
    free(out);
    out = t;
  }
  return out;
}

const char *job_enum_name(const char *path, int value) {
  static _Thread_local char buf[64];
  int k = job_key_index(path);
  if (k < 0 || schema_[k].type != JT_ENUM) return "?";
  const char *c0 = schema_[k].choices;
  int idx = 0;
  for (const char *q = c0;; q++) {
    if (*q == '|' || *q == '\0') {
      if (idx == value) {
        snprintf(buf, sizeof buf, "%.*s", (int)(q - c0), c0);
        return buf;
      }
      idx++;
      c0 = q + 1;
    }
    if (*q == '\0') break;
  }
  return "?";
}

char *job_output_path(const job_config *c, const char *name) {
  if (name && name[0] == '/') return xstrdup(name);
  return xasprintf("%s/%s", c->output_dir ? c->output_dir : ".", name ? name : "");
}

/* Append to a growing string. */
typedef struct {
  char *s;
  size_t n, cap;
} sbuf_;

static void sb_put_(sbuf_ *b, const char *fmt, ...) ST_PRINTF(2, 3);
static void sb_put_(sbuf_ *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int need = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (b->n + (size_t)need + 1 > b->cap) {
    b->cap = (b->n + (size_t)need + 1) * 2;
    b->s = xrealloc(b->s, b->cap);
  }
  va_start(ap, fmt);
  vsnprintf(b->s + b->n, (size_t)need + 1, fmt, ap);
  va_end(ap);
  b->n += (size_t)need;
}

static void sb_quoted_(sbuf_ *b, const char *s) {
  sb_put_(b, "\"");
  for (const unsigned char *q = (const unsigned char *)s; *q; q++) {
    if (*q == '"' || *q == '\\')
      sb_put_(b, "\\%c", *q);
    else if (*q < 0x20)
      sb_put_(b, "\\x%02x", *q);
    else
      sb_put_(b, "%c", *q);
  }
  sb_put_(b, "\"");
}

static void sb_value_(sbuf_ *b, const job_config *c, const job_key *k) {
  const void *p = cslot_(c, k);
  switch (k->type) {
    case JT_STR: {
      const char *s = *(char *const *)p;
      if (s)
        sb_quoted_(b, s);
      else
        sb_put_(b, "null");
      break;
    }
    case JT_INT:
      sb_put_(b, "%lld", (long long)*(const int64_t *)p);
      break;
    case JT_FLOAT: { /* the shortest text that reads back to the same double */
      double v = *(const double *)p;
      char num[40];
      for (int prec = 1; prec <= 17; prec++) {
        snprintf(num, sizeof num, "%.*g", prec, v);
        if (strtod(num, NULL) == v) break;
      }
      sb_put_(b, "%s", num);
      break;
    }
    case JT_BOOL:
      sb_put_(b, "%s", *(const int *)p ? "true" : "false");
      break;
    case JT_ENUM:
      sb_put_(b, "%s", job_enum_name(k->path, *(const int *)p));
      break;
    case JT_STRLIST: {
      const job_strlist *l = p;
      sb_put_(b, "[");
      for (int j = 0; j < l->n; j++) {
        if (j) sb_put_(b, ", ");
        sb_quoted_(b, l->v[j]);
      }
      sb_put_(b, "]");
      break;
    }
  }
}

char *job_to_yaml(const job_config *c) {
  sbuf_ b = {NULL, 0, 0};
  sb_put_(&b, "# effective job (every key, defaults included)\n");
  char section[64] = "";
  for (int i = 0; i < NKEYS_; i++) {
    const job_key *k = &schema_[i];
    if (strcmp(k->path, "training.output_dir") == 0) continue; /* same as output_dir */
    const char *dot = strchr(k->path, '.');
    size_t sl = dot ? (size_t)(dot - k->path) : 0;
    if (dot && (strlen(section) != sl || strncmp(section, k->path, sl) != 0)) {
      snprintf(section, sizeof section, "%.*s", (int)sl, k->path);
      sb_put_(&b, "%s:\n", section);
    }
    sb_put_(&b, "%s%s: ", dot ? "  " : "", dot ? dot + 1 : k->path);
    sb_value_(&b, c, k);
    sb_put_(&b, "\n");
  }
  return b.s;
}

void job_print_reference(FILE *f) {
  fprintf(f,
          "# Job file reference\n\n"
          "<!-- Generated by `spectrain check --print-job-reference` from the schema table in\n"
          "     src/job/job.c; the test unit.config fails when this file is out of step. -->\n\n"
          "A job is one YAML file: top-level `output_dir` and the sections below. Unknown keys\n"
          "are errors (with a \"did you mean\"), and every value is checked for its type and\n"
          "range. Any key can be overridden on the command line by its dotted path, typed like\n"
          "the file: `spectrain train job.yaml --set training.max_steps=5 --set "
          "spectrum.layer_types=[mlp.down_proj]`.\n"
          "Relative paths are taken from the current directory (as TRL does). Keys under\n"
          "`training:` carry the Hugging Face `TrainingArguments` / TRL names, so the training\n"
          "part of a TRL SFT config can be pasted there.\n");
  char section[64] = "-";
  for (int i = 0; i < NKEYS_; i++) {
    const job_key *k = &schema_[i];
    const char *dot = strchr(k->path, '.');
    size_t sl = dot ? (size_t)(dot - k->path) : 0;
    if (strlen(section) != sl || strncmp(section, k->path, sl) != 0) {
      snprintf(section, sizeof section, "%.*s", (int)sl, k->path);
      fprintf(f, "\n## %s\n\n| key | type | default | allowed | meaning |\n|---|---|---|---|---|\n",
              sl ? section : "top level");
    }
    const char *tn = k->type == JT_STR     ? "string"
                     : k->type == JT_INT   ? "integer"
                     : k->type == JT_FLOAT ? "number"
                     : k->type == JT_BOOL  ? "bool"
                     : k->type == JT_ENUM  ? "choice"
                                           : "list of strings";
    char def[96], allowed[160] = "";
    if (k->required)
      snprintf(def, sizeof def, "required");
    else if (!k->def)
      snprintf(def, sizeof def, "`[]`");
    else
      snprintf(def, sizeof def, "`%s`", k->def);
    if (k->type == JT_ENUM) {
      snprintf(allowed, sizeof allowed, "%s", k->choices);
      for (char *q = allowed; *q; q++)
        if (*q == '|') *q = ',';
    } else if (k->type == JT_INT || k->type == JT_FLOAT) {
      char rng[160];
      range_text_(k, rng, sizeof rng);
      const char *r = strchr(rng, ' ');
      r = r ? strchr(r + 1, ' ') : NULL; /* drop "an integer"/"a number" */
      snprintf(allowed, sizeof allowed, "%s", r ? r + 1 : "any");
    }
    fprintf(f, "| `%s` | %s | %s | %s | %s |\n", dot ? dot + 1 : k->path, tn, def, allowed,
            k->help);
  }
  fprintf(f, "\n## Other names\n\n| name | same as |\n|---|---|\n");
  for (int i = 0; i < NALIASES_; i++)
    fprintf(f, "| `%s` | `%s` |\n", aliases_[i].alias, aliases_[i].path);
}
