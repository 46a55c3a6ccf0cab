/* Job files: one YAML file (libyaml) describes a job.
 *
 * One schema table (src/job/job.c, job_schema()) drives everything about a key: parsing,
 * its default, type and range checks, `--set path=value` overrides (typed by the same
 * table) and the reference documentation docs/job-file.md (job_print_reference; a test
 * fails when the committed file differs). Keys under `training:` use the names Hugging
 * Face TrainingArguments / TRL users already write.
 *
 * Relative paths in a job file are taken relative to the current working directory (as
 * TRL does), not to the job file's folder. */
#ifndef SPECTRAIN_JOB_JOB_H
#define SPECTRAIN_JOB_JOB_H
#include <stdint.h>
#include <stdio.h>

#include "util/opt.h"

/* The order of each enum matches the choices string of its key in the schema. */
typedef enum {
  JOB_LR_CONSTANT = 0, /* prefixed: model/optim.h owns the LR_* names of lr_schedule */
  JOB_LR_LINEAR,
  JOB_LR_COSINE,
  JOB_LR_CONSTANT_WITH_WARMUP
} job_lr_sched;
typedef enum { BACKEND_CPU = 0, BACKEND_CUDA, BACKEND_AUTO } job_backend;
typedef enum { OFFLOAD_NONE = 0, OFFLOAD_CPU, OFFLOAD_CPU_TRAINABLE } job_offload; /* = fsdp_opts.offload */
typedef enum { SHARDING_FULL = 0, SHARDING_HYBRID } job_sharding; /* sharding.strategy */
typedef enum { REDUCE_FP32 = 0, REDUCE_BF16 } job_reduce_dtype; /* sharding.reduce_dtype */
typedef enum { DATA_AUTO = 0, DATA_BIN, DATA_JSONL, DATA_TEXT } job_data_format;
typedef enum { NONFINITE_STOP = 0, NONFINITE_SKIP } job_nonfinite;
typedef enum { PADDING_LONGEST = 0, PADDING_MAX_LENGTH } job_padding;

typedef struct {
  int n;
  char **v; /* owned */
} job_strlist;

typedef struct {
  /* Where everything the job writes goes (checkpoints, metrics, exported model, data
   * prepared by scripts). Also accepted as training.output_dir (TRL); both set and
   * different is an error. Required. */
  char *output_dir;

  struct {
    char *path;        /* Hugging Face model directory (config.json + *.safetensors); required */
    char *init_preset; /* NULL, or a `spectrain init --preset` name: when path has no
                          config.json, a random model of this preset is written there first */
    int64_t init_seed; /* seed for that initialisation */
  } model;

  struct {
    job_strlist train;       /* token files, read in this order and concatenated; >= 1 */
    char *validation;        /* NULL, or a held-out file (same format rules) */
    double validation_split; /* fraction of the training samples held out when no file */
    job_data_format format;  /* auto: .bin llm.c shards, .jsonl, anything else text bytes */
    int64_t vocab_size;      /* 0: the model's vocab_size (256 for text data) */
  } data;

  struct {
    double top_percent;        /* per type, keep this % of modules by SNR (100 = all) */
    job_strlist layer_types;   /* restrict the scan to these types (empty = all) */
    char *unfrozen_parameters; /* NULL, or a Spectrum YAML to use instead of scanning */
    char *model_name;          /* for Spectrum file names (slug); NULL = model dir name */
  } spectrum;

  struct {
    double learning_rate;
    int64_t max_steps; /* -1: use num_train_epochs */
    double num_train_epochs;
    int64_t per_device_train_batch_size; /* sequences per rank per micro-step */
    int64_t per_device_eval_batch_size;
    int64_t gradient_accumulation_steps;
    int gradient_checkpointing;
    int64_t warmup_steps; /* wins over warmup_ratio when > 0 (as in HF) */
    double warmup_ratio;
    double weight_decay;
    double adam_beta1, adam_beta2, adam_epsilon;
    job_lr_sched lr_scheduler_type;
    double max_grad_norm; /* 0: no clipping */
    job_nonfinite on_nonfinite; /* a step whose loss or gradient norm is NaN/Inf: stop or skip */
    int64_t seed;
    int bf16;
    int64_t logging_steps;
    int64_t eval_steps;       /* 0: evaluate only at the end */
    int64_t eval_max_batches; /* 0: the whole validation set */
    int64_t save_steps;       /* 0: checkpoint only at the end (and on a signal) */
    int64_t save_total_limit; /* 0: keep every checkpoint */
    int64_t max_seq_length;   /* T */
    job_padding padding;      /* micro-batches as long as their longest sequence, or T */
    job_backend backend;
    int optim;         /* TRL compatibility: every AdamW spelling is the same AdamW */
    int fp16, packing; /* TRL compatibility: must be false */
    char *output_dir;  /* TRL's place for output_dir: equal to the top-level one after loading */
  } training;

  struct {
    job_sharding strategy;     /* full: shard over every rank; hybrid: within shard groups,
                                * replicated across them (HSDP) */
    int64_t shard_size;        /* hybrid: ranks per shard group; 0: the ranks of one host */
    job_reduce_dtype reduce_dtype; /* dtype of the gradient reduce-scatter */
    job_offload offload;
    int64_t prefetch;          /* units gathered ahead of the one computing */
    int limit_all_gathers;     /* bound in-flight gathers to prefetch depth */
    int reshard_after_forward; /* release gathered units after forward (re-gather in backward) */
  } sharding;

  struct {
    double timeout_s;            /* longest wait for the other ranks in one collective */
    double checkpoint_timeout_s; /* longest checkpoint write / export / restore */
  } distributed;

  struct {
    char *resume;             /* "auto" (latest in output_dir if any), "none", or a PATH */
    int take_from_checkpoint; /* on resume, train with the job stored in the checkpoint
                                 (else a job that differs from it is an error naming keys) */
    int save_on_signal;       /* USR1/TERM: checkpoint at the next step boundary, then exit */
  } checkpoint;

  struct {
    char *metrics_file; /* JSON lines, one per logged step, under output_dir */
    int log_memory;     /* add peak RSS / device memory to progress lines */
  } logging;

  /* Provenance (not schema keys). */
  char *source_path;     /* the job file as given */
  char *source_text;     /* its full text, for checkpoints */
  char *sets_text;       /* the --set overrides, one "path=value" per line ("" when none) */
  unsigned char *is_set; /* per schema key: 1 when the file or a --set gave it */
  int *key_line;         /* per schema key: its line in the file (0: not from the file) */
} job_config;

/* ---- the schema ---------------------------------------------------------------- */
typedef enum { JT_STR, JT_INT, JT_FLOAT, JT_BOOL, JT_ENUM, JT_STRLIST } job_type;

enum { JOB_OPEN_MIN = 1, JOB_OPEN_MAX = 2 };

typedef struct {
  const char *path; /* dotted key path, e.g. "training.learning_rate" */
  job_type type;
  size_t offset;   /* of the value inside job_config */
  const char *def; /* default as YAML text; NULL = no default (unset / required) */
  int required;
  double min, max;     /* inclusive range for JT_INT / JT_FLOAT */
  int open;            /* JOB_OPEN_MIN / JOB_OPEN_MAX: that bound itself is excluded */
  const char *choices; /* JT_ENUM: "a|b|c" in enum order */
  const char *help;    /* one or two sentences for docs/job-file.md */
} job_key;

const job_key *job_schema(int *n);
/* Index of a key path in the schema, or -1. */
int job_key_index(const char *path);

/* ---- loading ------------------------------------------------------------------ */
/* Read and validate `path`, apply `sets` ("dotted.path=value", may be NULL), fill *out
 * (zeroed first; free with job_free even on failure). Errors (ST_EINPUT) name the file,
 * line and key path: unknown keys with a "did you mean", wrong types and ranges with
 * what was expected and found. */
int job_load(const char *path, const opt_list *sets, job_config *out);
/* Same from YAML text in memory (`name` is used in messages). */
int job_load_text(const char *name, const char *text, const opt_list *sets, job_config *out);
/* Apply one "path=value" override to a loaded job (value parsed as YAML, typed by the
 * schema), then re-validate. */
int job_set(job_config *c, const char *assignment);
void job_free(job_config *c);
/* 1 when the job file or a --set gave this key (not just the default). */
int job_is_set(const job_config *c, const char *path);

/* Canonical fingerprint of the effective job (every schema key's value in table order;
 * comments, layout and key order of the file do not matter). Ranks compare it with
 * comm_agree_u64. */
uint64_t job_hash(const job_config *c);
/* The effective job as YAML (every key, defaults included); loading it gives the same
 * job_hash. Caller frees. */
char *job_to_yaml(const job_config *c);
/* Reload a job stored in a checkpoint: its file text and its --set lines (sets_text as
 * kept in job_config). */
int job_load_stored(const char *name, const char *source_text, const char *sets_text,
                    job_config *out);
/* The key paths whose values differ between a and b, comma-separated (caller frees), or
 * NULL when the jobs are equal (job_hash equal). */
char *job_diff(const job_config *a, const job_config *b);
/* docs/job-file.md, generated from the schema. */
void job_print_reference(FILE *f);

/* Small helpers for consumers. */
const char *job_enum_name(const char *path, int value); /* "cosine" for JOB_LR_COSINE */
/* Effective metrics path: output_dir/metrics_file (caller frees). */
char *job_output_path(const job_config *c, const char *name);

#endif
