/* src/config: the job-file schema, parsing, errors, --set overrides, hash, docs sync. */
#include <dirent.h>
#include <math.h>

#include "job/job.h"
#include "test.h"
#include "util/err.h"

static const char *base_ =
    "output_dir: /tmp/run\n"
    "model:\n"
    "  path: m\n"
    "data:\n"
    "  train: t.txt\n";

/* Load base_ + extra; return the status. */
static int load_(const char *extra, job_config *c) {
  char *text = xasprintf("%s%s", base_, extra);
  int rc = job_load_text("job.yaml", text, NULL, c);
  free(text);
  return rc;
}

static void expect_error_(const char *text, const char *n1, const char *n2, const char *n3) {
  job_config c;
  int rc = job_load_text("job.yaml", text, NULL, &c);
  CHECK_EQ_INT(rc, ST_EINPUT);
  if (n1) CHECK_CONTAINS(st_errmsg(), n1);
  if (n2) CHECK_CONTAINS(st_errmsg(), n2);
  if (n3) CHECK_CONTAINS(st_errmsg(), n3);
  job_free(&c);
}

static void test_defaults_(void) {
  job_config c;
  CHECK_EQ_INT(load_("", &c), 0);
  /* Hugging Face TrainingArguments defaults where a key has one */
  CHECK_CLOSE(c.training.learning_rate, 5e-5, 0, 0);
  CHECK_EQ_INT(c.training.max_steps, -1);
  CHECK_CLOSE(c.training.num_train_epochs, 3.0, 0, 0);
  CHECK_EQ_INT(c.training.per_device_train_batch_size, 8);
  CHECK_EQ_INT(c.training.gradient_accumulation_steps, 1);
  CHECK_CLOSE(c.training.adam_beta1, 0.9, 0, 0);
  CHECK_CLOSE(c.training.adam_beta2, 0.999, 0, 0);
  CHECK_CLOSE(c.training.adam_epsilon, 1e-8, 0, 0);
  CHECK_CLOSE(c.training.max_grad_norm, 1.0, 0, 0);
  CHECK_EQ_INT(c.training.lr_scheduler_type, JOB_LR_LINEAR);
  CHECK_EQ_INT(c.training.seed, 42);
  CHECK_EQ_INT(c.training.bf16, 0);
  CHECK_EQ_INT(c.training.save_steps, 500);
  CHECK_EQ_INT(c.training.backend, BACKEND_AUTO);
  CHECK_EQ_INT(c.sharding.offload, OFFLOAD_NONE);
  CHECK_EQ_INT(c.sharding.reshard_after_forward, 1);
  CHECK_STR_EQ(c.checkpoint.resume, "auto");
  CHECK_STR_EQ(c.logging.metrics_file, "metrics.jsonl");
  CHECK_CLOSE(c.spectrum.top_percent, 100, 0, 0);
  CHECK(c.spectrum.unfrozen_parameters == NULL);
  CHECK(c.data.validation == NULL);
  CHECK_EQ_INT(c.data.format, DATA_AUTO);
  CHECK_EQ_INT(c.data.train.n, 1);
  if (c.data.train.n == 1) CHECK_STR_EQ(c.data.train.v[0], "t.txt");
  CHECK_STR_EQ(c.output_dir, "/tmp/run");
  CHECK_STR_EQ(c.training.output_dir, "/tmp/run");
  CHECK(job_is_set(&c, "model.path"));
  CHECK(!job_is_set(&c, "training.seed"));
  char *mp = job_output_path(&c, c.logging.metrics_file);
  CHECK_STR_EQ(mp, "/tmp/run/metrics.jsonl");
  free(mp);
  job_free(&c);

  /* every schema default parses and lies in its own range (init_ ignores errors) */
  int n;
  const job_key *ks = job_schema(&n);
  for (int i = 0; i < n; i++) {
    if (!ks[i].def) continue;
    char *t = xasprintf("%s--set\n", "");
    free(t);
    job_config d;
    CHECK_EQ_INT(load_("", &d), 0);
    char *a = xasprintf("%s=%s", ks[i].path, ks[i].def);
    int rc = job_set(&d, a);
    CHECK_MSG(rc == 0 || strcmp(ks[i].path, "training.output_dir") == 0, "default of %s: %s",
              ks[i].path, st_errmsg());
    free(a);
    job_free(&d);
  }
}

static void test_full_trl_(void) {
  /* The training part of a TRL SFT config, pasted under training:. */
  const char *text =
      "model:\n  model_name_or_path: /models/llama\n"
      "data:\n  train: [a.bin, b.bin]\n  validation: v.bin\n"
      "spectrum:\n  unfrozen_parameters: snr.yaml\n"
      "training:\n"
      "  output_dir: out/x\n  learning_rate: 2.0e-5\n  max_steps: 1000\n"
      "  num_train_epochs: 1\n  per_device_train_batch_size: 4\n"
      "  per_device_eval_batch_size: 2\n  gradient_accumulation_steps: 8\n"
      "  gradient_checkpointing: true\n  warmup_steps: 0\n  warmup_ratio: 0.03\n"
      "  weight_decay: 0.01\n  lr_scheduler_type: cosine\n  max_grad_norm: 0.3\n"
      "  seed: 7\n  bf16: true\n  logging_steps: 5\n  eval_steps: 100\n  save_steps: 200\n"
      "  save_total_limit: 3\n  max_length: 2048\n  adam_beta2: 0.95\n";
  job_config c;
  CHECK_EQ_INT(job_load_text("trl.yaml", text, NULL, &c), 0);
  CHECK_STR_EQ(c.output_dir, "out/x");
  CHECK_STR_EQ(c.model.path, "/models/llama");
  CHECK_EQ_INT(c.data.train.n, 2);
  CHECK_STR_EQ(c.data.validation, "v.bin");
  CHECK_CLOSE(c.training.learning_rate, 2e-5, 0, 0);
  CHECK_EQ_INT(c.training.max_steps, 1000);
  CHECK_EQ_INT(c.training.per_device_train_batch_size, 4);
  CHECK_EQ_INT(c.training.per_device_eval_batch_size, 2);
  CHECK_EQ_INT(c.training.gradient_accumulation_steps, 8);
  CHECK_EQ_INT(c.training.gradient_checkpointing, 1);
  CHECK_CLOSE(c.training.warmup_ratio, 0.03, 0, 0);
  CHECK_CLOSE(c.training.weight_decay, 0.01, 0, 0);
  CHECK_EQ_INT(c.training.lr_scheduler_type, JOB_LR_COSINE);
  CHECK_CLOSE(c.training.max_grad_norm, 0.3, 0, 0);
  CHECK_EQ_INT(c.training.seed, 7);
  CHECK_EQ_INT(c.training.bf16, 1);
  CHECK_EQ_INT(c.training.logging_steps, 5);
  CHECK_EQ_INT(c.training.eval_steps, 100);
  CHECK_EQ_INT(c.training.save_steps, 200);
  CHECK_EQ_INT(c.training.save_total_limit, 3);
  CHECK_EQ_INT(c.training.max_seq_length, 2048);
  CHECK_CLOSE(c.training.adam_beta2, 0.95, 0, 0);
  CHECK_STR_EQ(c.spectrum.unfrozen_parameters, "snr.yaml");
  job_free(&c);

  /* TRL keys we accept with the values we honour */
  CHECK_EQ_INT(
      load_("training:\n  optim: adamw_torch_fused\n  fp16: false\n  packing: false\n", &c), 0);
  job_free(&c);
  {
    char *t = xasprintf("%s%s", base_, "training:\n  fp16: true\n");
    expect_error_(t, "job.yaml:7", "training.fp16", "bf16");
    free(t);
    t = xasprintf("%s%s", base_, "training:\n  packing: true\n");
    expect_error_(t, "job.yaml:7", "training.packing", "always one sequence");
    free(t);
    t = xasprintf("%s%s", base_, "training:\n  optim: sgd\n");
    expect_error_(t, "training.optim", "found 'sgd'", NULL);
    free(t);
  }
  /* both output_dirs, equal: fine */
  CHECK_EQ_INT(load_("training:\n  output_dir: /tmp/run\n", &c), 0);
  job_free(&c);
}

static void test_errors_(void) {
  char *t;
  /* unknown key: file, line, key path, suggestion */
  t = xasprintf("%s%s", base_, "training:\n  learning_rat: 1e-3\n");
  expect_error_(t, "job.yaml:7", "'training.learning_rat'",
                "did you mean 'training.learning_rate'");
  free(t);
  /* a key in the wrong section: suggested by its name */
  t = xasprintf("%s%s", base_, "learning_rate: 1e-3\n");
  expect_error_(t, "job.yaml:6", "'learning_rate'", "did you mean 'training.learning_rate'");
  free(t);
  /* misspelt section */
  t = xasprintf("%s%s", base_, "trainig:\n  seed: 1\n");
  expect_error_(t, "job.yaml:6", "'trainig'", "did you mean 'training'");
  free(t);
  /* nothing close: no suggestion */
  t = xasprintf("%s%s", base_, "training:\n  zzzzzzzzzzzz: 1\n");
  expect_error_(t, "unknown key 'training.zzzzzzzzzzzz'", NULL, NULL);
  CHECK(strstr(st_errmsg(), "did you mean") == NULL);
  free(t);
  /* wrong types: file, line, key, expected, found */
  t = xasprintf("%s%s", base_, "training:\n  max_steps: ten\n");
  expect_error_(t, "job.yaml:7", "'training.max_steps'", "expected an integer >= -1, found 'ten'");
  free(t);
  t = xasprintf("%s%s", base_, "training:\n  max_steps: 1.5\n");
  expect_error_(t, "job.yaml:7", "'training.max_steps'", "found '1.5'");
  free(t);
  t = xasprintf("%s%s", base_, "training:\n  learning_rate: fast\n");
  expect_error_(t, "job.yaml:7", "expected a number >= 0", "found 'fast'");
  free(t);
  t = xasprintf("%s%s", base_, "training:\n  learning_rate: \"1e-3\"\n");
  expect_error_(t, "'training.learning_rate'", "expected a number", "found '1e-3'");
  free(t);
  t = xasprintf("%s%s", base_, "training:\n  bf16: maybe\n");
  expect_error_(t, "job.yaml:7", "expected true or false", "found 'maybe'");
  free(t);
  t = xasprintf("%s%s", base_, "training:\n  lr_scheduler_type: cosin\n");
  expect_error_(t, "expected one of constant|linear|cosine|constant_with_warmup", "found 'cosin'",
                "did you mean 'cosine'");
  free(t);
  t = xasprintf("%s%s", base_, "training:\n  seed: [1, 2]\n");
  expect_error_(t, "'training.seed'", "found a list", NULL);
  free(t);
  t = xasprintf("%s%s", base_, "spectrum:\n  layer_types: {a: 1}\n");
  expect_error_(t, "'spectrum.layer_types'", "expected a list of strings", "found a mapping");
  free(t);
  t = xasprintf("%s%s", base_, "training: 5\n");
  expect_error_(t, "job.yaml:6", "section 'training'", "expected a mapping");
  free(t);
  /* ranges */
  t = xasprintf("%s%s", base_, "training:\n  per_device_train_batch_size: 0\n");
  expect_error_(t, "job.yaml:7", "'training.per_device_train_batch_size'",
                "expected an integer >= 1, found 0");
  free(t);
  t = xasprintf("%s%s", base_, "training:\n  learning_rate: -1e-3\n");
  expect_error_(t, "'training.learning_rate'", "expected a number >= 0", "found -1e-3");
  free(t);
  t = xasprintf("%s%s", base_, "training:\n  adam_beta1: 1.0\n");
  expect_error_(t, "'training.adam_beta1'", "in [0, 1)", "found 1.0");
  free(t);
  t = xasprintf("%s%s", base_, "spectrum:\n  top_percent: 0\n");
  expect_error_(t, "'spectrum.top_percent'", "in (0, 100]", "found 0");
  free(t);
  t = xasprintf("%s%s", base_, "spectrum:\n  top_percent: 101\n");
  expect_error_(t, "'spectrum.top_percent'", "in (0, 100]", "found 101");
  free(t);
  t = xasprintf("%s%s", base_, "data:\n  validation_split: 0.7\n");
  expect_error_(t, "job.yaml:6", "key 'data' given twice", NULL); /* duplicate section */
  free(t);
  expect_error_("output_dir: o\nmodel:\n  path: m\n  init_preset: tiny-lama\ndata:\n  train: t\n",
                "job.yaml:4: model.init_preset", "tiny-llama", "found 'tiny-lama'");
  /* both output_dirs, different */
  t = xasprintf("%s%s", base_, "training:\n  output_dir: /elsewhere\n");
  expect_error_(t, "output_dir '/tmp/run' (line 1)", "training.output_dir '/elsewhere' (line 7)",
                "differ");
  free(t);
  /* duplicate keys; key and its alias */
  t = xasprintf("%s%s", base_, "training:\n  seed: 1\n  seed: 2\n");
  expect_error_(t, "job.yaml:8", "'training.seed' given twice (also at line 7)", NULL);
  free(t);
  t = xasprintf("%s%s", base_, "training:\n  max_seq_length: 1\n  max_length: 2\n");
  expect_error_(t, "job.yaml:8", "'training.max_seq_length' given twice", NULL);
  free(t);
  /* required keys */
  expect_error_("model:\n  path: m\ndata:\n  train: t\n", "missing required key 'output_dir'", NULL,
                NULL);
  expect_error_("output_dir: o\ndata:\n  train: t\n", "missing required key 'model.path'", NULL,
                NULL);
  expect_error_("output_dir: o\nmodel:\n  path: m\ndata:\n  train: []\n",
                "missing required key 'data.train'", NULL, NULL);
  /* cross-key rules */
  t = xasprintf("%s%s", base_, "spectrum:\n  unfrozen_parameters: x.yaml\n  top_percent: 25\n");
  expect_error_(t, "spectrum.unfrozen_parameters", "top_percent", NULL);
  free(t);
  t = xasprintf("%s%s", base_, "  validation: v.txt\n  validation_split: 0.1\n");
  expect_error_(t, "data.validation", "validation_split", NULL);
  free(t);
  t = xasprintf("%s%s", base_, "training:\n  num_train_epochs: 0\n");
  expect_error_(t, "nothing to train", NULL, NULL);
  free(t);
  /* not YAML; not a mapping; empty */
  expect_error_("output_dir: [a\n", "job.yaml:", "not valid YAML", NULL);
  expect_error_("- a\n- b\n", "job.yaml:1", "expected a mapping of keys at the top level", NULL);
  expect_error_("", "job.yaml", "empty", NULL);
  /* a file that is not there */
  job_config c;
  CHECK_EQ_INT(job_load("/nonexistent/job.yaml", NULL, &c), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "/nonexistent/job.yaml");
  job_free(&c);
}

/* Products of size keys the trainer's types bound (issue 18.2): refused at load with the
 * keys, the product and the bound; the largest values each key alone accepts still load. */
static void test_size_products_(void) {
  char *t;
  t = xasprintf("%s%s", base_, "training:\n  gradient_accumulation_steps: 8000000000\n");
  expect_error_(t, "training.gradient_accumulation_steps 8000000000 x "
                   "training.per_device_train_batch_size 8 = 6.4e+10 sequences per rank and step",
                "at most 2147483647", "lower gradient_accumulation_steps");
  free(t);
  t = xasprintf("%s%s", base_, "training:\n  per_device_train_batch_size: 1048577\n");
  expect_error_(t, "training.per_device_train_batch_size 1048577 x training.max_seq_length 1024 "
                   "= 1.074e+09 tokens per micro-batch",
                "at most 1073741824 (2^30) tokens per rank", "raise gradient_accumulation_steps");
  free(t);
  t = xasprintf("%s%s", base_, "training:\n  per_device_eval_batch_size: 3000000000\n");
  expect_error_(t, "training.per_device_eval_batch_size 3000000000 x training.max_seq_length",
                "tokens per evaluation batch", "lower per_device_eval_batch_size");
  free(t);
  t = xasprintf("%s%s", base_, "training:\n  warmup_steps: 9223372036854775807\n");
  expect_error_(t, "'training.warmup_steps'",
                "expected an integer >= 0 and at most 9200000000000000000, found "
                "9223372036854775807",
                NULL);
  free(t);
  job_config c;
  /* at the bounds: 2^30 tokens, 2^31 - 1 sequences */
  CHECK_EQ_INT(load_("training:\n  per_device_train_batch_size: 1048576\n"
                     "  per_device_eval_batch_size: 1048576\n", &c), 0);
  job_free(&c);
  CHECK_EQ_INT(load_("training:\n  per_device_train_batch_size: 1\n"
                     "  gradient_accumulation_steps: 2147483647\n", &c), 0);
  job_free(&c);
  /* --set goes through the same check */
  const char *sv[] = {"training.gradient_accumulation_steps=300000000"};
  opt_list sets = {1, sv};
  CHECK_EQ_INT(job_load_text("job.yaml", base_, &sets, &c), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "training.gradient_accumulation_steps 300000000 x");
  job_free(&c);
}

static void test_sets_(void) {
  const char *argv[] = {"training.max_steps=5",
                        "output_dir=/tmp/other",
                        "spectrum.layer_types=[mlp.down_proj, self_attn.q_proj]",
                        "training.lr_scheduler_type=constant",
                        "training.bf16=true",
                        "data.validation=null",
                        "training.learning_rate=3e-4",
                        "model.model_name_or_path=/m2"};
  opt_list sets = {8, argv};
  job_config c;
  char *text = xasprintf("%s%s", base_, "training:\n  max_steps: 100\n  learning_rate: 1e-3\n");
  CHECK_EQ_INT(job_load_text("job.yaml", text, &sets, &c), 0);
  CHECK_EQ_INT(c.training.max_steps, 5);
  CHECK_STR_EQ(c.output_dir, "/tmp/other");
  CHECK_STR_EQ(c.training.output_dir, "/tmp/other");
  CHECK_EQ_INT(c.spectrum.layer_types.n, 2);
  if (c.spectrum.layer_types.n == 2) {
    CHECK_STR_EQ(c.spectrum.layer_types.v[0], "mlp.down_proj");
    CHECK_STR_EQ(c.spectrum.layer_types.v[1], "self_attn.q_proj");
  }
  CHECK_EQ_INT(c.training.lr_scheduler_type, JOB_LR_CONSTANT);
  CHECK_EQ_INT(c.training.bf16, 1);
  CHECK(c.data.validation == NULL);
  CHECK_CLOSE(c.training.learning_rate, 3e-4, 0, 0);
  CHECK_STR_EQ(c.model.path, "/m2");
  CHECK_CONTAINS(c.sets_text, "training.max_steps=5\n");
  /* a scalar for a list is a one-element list */
  CHECK_EQ_INT(job_set(&c, "data.train=other.bin"), 0);
  CHECK_EQ_INT(c.data.train.n, 1);
  CHECK_STR_EQ(c.data.train.v[0], "other.bin");
  /* errors name the --set, the key, expected and found */
  CHECK_EQ_INT(job_set(&c, "training.max_step=5"), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "--set training.max_step=5");
  CHECK_CONTAINS(st_errmsg(), "did you mean 'training.max_steps'");
  CHECK_EQ_INT(job_set(&c, "training.max_steps=abc"), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "expected an integer >= -1, found 'abc'");
  CHECK_EQ_INT(job_set(&c, "training.max_steps"), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "expected KEY=VALUE");
  CHECK_EQ_INT(job_set(&c, "training=5"), ST_EINPUT);
  CHECK_EQ_INT(job_set(&c, "sharding.offload=gpu"), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "expected one of none|cpu|cpu_trainable, found 'gpu'");
  /* a --set of output_dir moves TRL's spelling too (no conflict with the file's) */
  {
    const char *sv[] = {"output_dir=/tmp/set"};
    opt_list one = {1, sv};
    job_config o;
    CHECK_EQ_INT(job_load_text("o.yaml",
                               "training:\n  output_dir: /tmp/file\nmodel: {path: m}\n"
                               "data: {train: t}\n",
                               &one, &o),
                 0);
    CHECK_STR_EQ(o.output_dir, "/tmp/set");
    CHECK_STR_EQ(o.training.output_dir, "/tmp/set");
    CHECK_EQ_INT(job_set(&o, "training.output_dir=/tmp/set2"), 0);
    CHECK_STR_EQ(o.output_dir, "/tmp/set2");
    job_free(&o);
  }
  /* a --set that breaks a cross-key rule */
  CHECK_EQ_INT(job_set(&c, "data.validation_split=0.1"), 0);
  CHECK_EQ_INT(job_set(&c, "data.validation=v.bin"), ST_EINPUT);
  job_free(&c);
  free(text);
}

static void test_hash_(void) {
  job_config a, b, d;
  /* layout, comments, key order and the output_dir spelling do not matter */
  CHECK_EQ_INT(job_load_text("a.yaml",
                             "output_dir: o\nmodel: {path: m}\ndata: {train: [t]}\n"
                             "training: {seed: 3, max_steps: 10}\n",
                             NULL, &a),
               0);
  CHECK_EQ_INT(job_load_text("b.yaml",
                             "# comment\ntraining:\n  max_steps: 10   # steps\n  seed: 3\n"
                             "  output_dir: o\ndata:\n  train: t\nmodel:\n  path: m\n",
                             NULL, &b),
               0);
  CHECK(job_hash(&a) == job_hash(&b));
  CHECK_EQ_INT(job_load_text("d.yaml",
                             "output_dir: o\nmodel: {path: m}\ndata: {train: [t]}\n"
                             "training: {seed: 4, max_steps: 10}\n",
                             NULL, &d),
               0);
  CHECK(job_hash(&a) != job_hash(&d));
  /* a --set that gives the same value keeps the hash; another value changes it */
  uint64_t h = job_hash(&d);
  CHECK_EQ_INT(job_set(&d, "training.seed=4"), 0);
  CHECK(job_hash(&d) == h);
  CHECK_EQ_INT(job_set(&d, "training.seed=3"), 0);
  CHECK(job_hash(&d) == job_hash(&a));
  /* the canonical YAML loads back to the same job */
  char *y = job_to_yaml(&a);
  job_config r;
  CHECK_EQ_INT(job_load_text("canonical.yaml", y, NULL, &r), 0);
  CHECK(job_hash(&r) == job_hash(&a));
  free(y);
  job_free(&r);
  /* numbers are written shortest-first and read back exactly */
  CHECK_EQ_INT(job_set(&a, "training.learning_rate=0.1"), 0);
  CHECK_EQ_INT(job_set(&a, "training.adam_epsilon=1.2345678901234567e-9"), 0);
  y = job_to_yaml(&a);
  CHECK_CONTAINS(y, "learning_rate: 0.1\n");
  CHECK_EQ_INT(job_load_text("canonical.yaml", y, NULL, &r), 0);
  CHECK(r.training.adam_epsilon == a.training.adam_epsilon);
  CHECK(job_hash(&r) == job_hash(&a));
  free(y);
  job_free(&r);
  /* strings with quotes, backslashes and newlines survive the round trip */
  CHECK_EQ_INT(job_set(&a, "model.path='we\"ird\\\\dir'"), 0);
  CHECK_STR_EQ(a.model.path, "we\"ird\\\\dir");
  y = job_to_yaml(&a);
  CHECK_EQ_INT(job_load_text("canonical.yaml", y, NULL, &r), 0);
  CHECK_STR_EQ(r.model.path, a.model.path);
  CHECK(job_hash(&r) == job_hash(&a));
  free(y);
  job_free(&r);
  job_free(&a);
  job_free(&b);
  job_free(&d);
  /* a job stored in a checkpoint (file text + --set lines) reloads to the same job, and
   * job_diff names the keys that differ */
  {
    const char *sv[] = {"training.max_steps=7", "spectrum.layer_types=[a, b]"};
    opt_list sets = {2, sv};
    job_config x, y2, z;
    const char *text = "output_dir: o\nmodel: {path: m}\ndata: {train: [t]}\n";
    CHECK_EQ_INT(job_load_text("x.yaml", text, &sets, &x), 0);
    CHECK_EQ_INT(job_load_stored("stored", x.source_text, x.sets_text, &y2), 0);
    CHECK(job_hash(&x) == job_hash(&y2));
    CHECK(job_diff(&x, &y2) == NULL);
    CHECK_EQ_INT(job_load_text("z.yaml", text, NULL, &z), 0);
    char *diff = job_diff(&x, &z);
    CHECK_STR_EQ(diff, "spectrum.layer_types, training.max_steps");
    free(diff);
    job_free(&x);
    job_free(&y2);
    job_free(&z);
  }
  CHECK_STR_EQ(job_enum_name("training.lr_scheduler_type", JOB_LR_CONSTANT_WITH_WARMUP),
               "constant_with_warmup");
  CHECK_STR_EQ(job_enum_name("training.backend", BACKEND_CUDA), "cuda");
  CHECK_STR_EQ(job_enum_name("data.format", DATA_JSONL), "jsonl");
  CHECK_STR_EQ(job_enum_name("sharding.offload", OFFLOAD_CPU), "cpu");
}

/* docs/job-file.md is the generated reference: fail when it is out of step. */
static void test_docs_sync_(void) {
  char *gen = NULL;
  size_t gen_len = 0;
  FILE *m = open_memstream(&gen, &gen_len);
  job_print_reference(m);
  fclose(m);
  const char *path = SPECTRAIN_SOURCE_DIR "/docs/job-file.md";
  FILE *f = fopen(path, "rb");
  CHECK_MSG(f != NULL, "cannot open %s", path);
  if (f) {
    char *doc = xmalloc(gen_len + 2);
    size_t n = fread(doc, 1, gen_len + 1, f);
    fclose(f);
    int same = n == gen_len && memcmp(doc, gen, gen_len) == 0;
    CHECK_MSG(same,
              "%s is out of step with the schema in src/job/job.c: regenerate it with "
              "'spectrain check --print-job-reference > docs/job-file.md'",
              path);
    free(doc);
  }
  /* and every key of the schema is in it */
  int n;
  const job_key *ks = job_schema(&n);
  for (int i = 0; i < n; i++) {
    const char *leaf = strrchr(ks[i].path, '.');
    char *want = xasprintf("| `%s` |", leaf ? leaf + 1 : ks[i].path);
    CHECK_CONTAINS(gen, want);
    free(want);
    CHECK_MSG(ks[i].help && strlen(ks[i].help) > 10, "key %s has no help", ks[i].path);
  }
  free(gen);
}

/* Every job file shipped in jobs/ is valid (and so stays valid when the schema changes). */
static void test_shipped_jobs_(void) {
  job_config c;
  int rc = job_load(SPECTRAIN_SOURCE_DIR "/jobs/tiny.yaml", NULL, &c);
  CHECK_MSG(rc == 0, "%s", st_errmsg());
  CHECK_EQ_INT(c.training.max_seq_length, 256);
  CHECK_STR_EQ(c.model.init_preset, "tiny-llama");
  job_free(&c);
  DIR *d = opendir(SPECTRAIN_SOURCE_DIR "/jobs");
  CHECK(d != NULL);
  int n = 0;
  for (struct dirent *e; d && (e = readdir(d));) {
    size_t l = strlen(e->d_name);
    if (l < 5 || strcmp(e->d_name + l - 5, ".yaml") != 0) continue;
    char *p = xasprintf("%s/jobs/%s", SPECTRAIN_SOURCE_DIR, e->d_name);
    rc = job_load(p, NULL, &c);
    CHECK_MSG(rc == 0, "%s", st_errmsg());
    job_free(&c);
    free(p);
    n++;
  }
  if (d) closedir(d);
  CHECK(n >= 3);
}

int main(void) {
  log_set_quiet(1);
  test_defaults_();
  test_full_trl_();
  test_errors_();
  test_size_products_();
  test_sets_();
  test_hash_();
  test_docs_sync_();
  test_shipped_jobs_();
  return test_done();
}
