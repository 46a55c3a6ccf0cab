#include "train/train_ckpt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/optim.h"
#include "mpi/comm.h"
#include "util/err.h"
#include "util/finite.h"
#include "util/mem.h"

/* Job keys that change how a run executes, not what the checkpoint means: they may differ
 * between the checkpoint's job and the resuming one. (The per-device batch and accumulation
 * may change with the rank count; the global batch they give is checked on restore. The
 * run's length may change, as in HF's Trainer: the schedule is recomputed over the new total
 * and restore_hook_ says what that does.) */
static const char *run_only_keys_[] = {
    "output_dir",          "checkpoint.",
    "training.max_steps",  "training.num_train_epochs",
    "sharding.",           "logging.",            "distributed.",
    "training.save_steps", "training.save_total_limit",
    "training.logging_steps", "training.eval_steps",
    "training.eval_max_batches", "training.per_device_eval_batch_size",
    "training.backend",    "training.per_device_train_batch_size",
    "training.gradient_accumulation_steps", "training.gradient_checkpointing"};

static int run_only_(const char *key) {
  for (size_t i = 0; i < sizeof run_only_keys_ / sizeof *run_only_keys_; i++) {
    size_t n = strlen(run_only_keys_[i]);
    if (run_only_keys_[i][n - 1] == '.' ? strncmp(key, run_only_keys_[i], n) == 0
                                        : strcmp(key, run_only_keys_[i]) == 0)
      return 1;
  }
  return 0;
}

/* The keys of job_diff's "a, b, c" list that matter, or NULL. */
static char *relevant_diff_(const char *diff) {
  if (!diff) return NULL;
  char *copy = xstrdup(diff), *out = NULL, *save = NULL;
  for (char *k = strtok_r(copy, ", ", &save); k; k = strtok_r(NULL, ", ", &save)) {
    if (run_only_(k)) continue;
    char *t = xasprintf("%s%s%s", out ? out : "", out ? ", " : "", k);
    free(out);
    out = t;
  }
  free(copy);
  return out;
}

static char *read_text_(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 4096, n = 0;
  char *s = xmalloc(cap);
  size_t got;
  while ((got = fread(s + n, 1, cap - n - 1, f)) > 0) {
    n += got;
    if (n + 1 == cap) s = xrealloc(s, cap *= 2);
  }
  fclose(f);
  s[n] = '\0';
  return s;
}

/* ---- pieces of the shards as checkpoint slices ------------------------------------------- */

typedef struct {
  ckpt_slices *l;
  ckpt_kind kind;
} piece_arg_;

static int piece_(int tensor, uint64_t first, uint64_t count, float *data, void *arg) {
  piece_arg_ *a = arg;
  ckpt_slices_add(a->l, tensor, a->kind, first, count, data);
  return 0;
}

/* writing: with hybrid sharding every shard group holds the whole model, so only the first
 * group's ranks write (the slices of the ranks cover every element once, as with full
 * sharding); every rank reads its own slices on restore. The file is the same either way:
 * full-shape tensors by name, whatever the strategy or rank count. */
static void slices_of_(train_ctx *t, ckpt_slices *l, int writing) {
  if (writing && t->groups.replica_rank != 0) return;
  static const struct {
    int which;
    ckpt_kind kind;
  } map[] = {{0, CKPT_PARAM}, {1, CKPT_M}, {2, CKPT_V}}; /* fsdp_foreach_piece's `which` */
  for (int i = 0; i < 3; i++) {
    piece_arg_ a = {l, map[i].kind};
    fsdp_foreach_piece(&t->fs, map[i].which, piece_, &a);
  }
}

/* The first NaN/Inf in this rank's slices, or NULL: "/params/NAME holds NaN at index [i, j]". */
static char *slices_nonfinite_(const train_ctx *t, const ckpt_slices *l) {
  for (int i = 0; i < l->n; i++) {
    const ckpt_slice *c = &l->s[i];
    uint64_t bad = finite_first_bad_f32(c->data, c->count);
    if (bad == c->count) continue;
    const tensor_desc *d = &t->tt.t[c->tensor];
    char at[96];
    finite_index_str(c->begin + bad, d->ndim, d->shape, at, sizeof at);
    return xasprintf("%s/%s holds %s at index %s", ckpt_kind_group(c->kind), d->name,
                     finite_name(c->data[bad]), at);
  }
  return NULL;
}

/* rc agreed by every rank; a rank that is fine but sees another's failure says so. */
static int agree_(int rc, const char *what) {
  int all = comm_max_status(rc);
  if (all && !rc) return st_fail(all, "another rank failed while %s (see its error above)", what);
  return all;
}

static char **trainable_names_(const tensor_table *tt, int *n) {
  char **v = xmalloc((size_t)(tt->n ? tt->n : 1) * sizeof(char *));
  *n = 0;
  for (int i = 0; i < tt->n; i++)
    if (tt->t[i].trainable) v[(*n)++] = (char *)tt->t[i].name;
  return v;
}

/* ---- hooks ------------------------------------------------------------------------------- */

static int save_hook_(train_ctx *t, const char *reason, void *arg) {
  ckpt_train *c = arg;
  const job_config *j = t->job;
  ckpt_meta m = {0};
  m.step = (uint64_t)t->st.step;
  m.tokens_seen = t->st.tokens_seen;
  m.data_seed = t->st.data_seed;
  m.data_sample = t->st.samples_seen;
  m.data_epoch = t->data.train.n ? t->st.samples_seen / t->data.train.n : 0;
  rng_seed(&m.rng, t->st.data_seed); /* the trainer draws no random numbers of its own */
  lr_schedule sched;
  lr_schedule_parse(job_enum_name("training.lr_scheduler_type", j->training.lr_scheduler_type),
                    &sched);
  m.lr = t->st.step > 0 ? lr_at_step(sched, (long)t->st.step - 1, (long)t->st.total_steps,
                                     (long)t->st.warmup_steps, j->training.learning_rate)
                        : 0.0;
  m.global_batch = t->st.global_batch;
  m.elapsed_s = t->st.elapsed_s + (time_now_s() - c->t0);
  m.job_text = j->source_text;
  m.job_sets = j->sets_text;
  char *cfg_path = xasprintf("%s/config.json", j->model.path);
  m.config_json = read_text_(cfg_path);
  int rc = m.config_json ? 0 : st_fail(ST_EINPUT, "%s: cannot read", cfg_path);
  /* the SNR table the trainable set came from, when train ran the scan itself */
  if (!rc && t->snr_json_path && !(m.snr_json = read_text_(t->snr_json_path)))
    rc = st_fail(ST_EINPUT, "%s: cannot read the Spectrum results", t->snr_json_path);
  m.trainable = trainable_names_(&t->tt, &m.n_trainable);
  ckpt_slices l = {0};
  slices_of_(t, &l, 1);
  /* nothing non-finite is ever written: the newest checkpoint stays the last good state */
  char *bad = rc ? NULL : slices_nonfinite_(t, &l);
  if (bad)
    rc = st_fail(ST_ERUNTIME,
                 "step %lld: %s: refusing to write a checkpoint with non-finite values (nothing "
                 "written; the newest checkpoint in %s, if any, is the last good state). The "
                 "update of this step overflowed: lower training.learning_rate (%g) or keep "
                 "training.max_grad_norm above 0",
                 (long long)t->st.step, bad, j->output_dir, j->training.learning_rate);
  free(bad);
  rc = agree_(rc, "checking the checkpoint's values");
  ckpt_save_opts o = {(int)j->training.save_total_limit};
  ckpt_save_stats st;
  if (!rc) {
    rc = ckpt_save(j->output_dir, &t->tt, &m, l.s, l.n, &o, &st);
    if (rc && (strstr(st_errmsg(), "(ENOSPC") || strstr(st_errmsg(), "(EDQUOT"))) {
      char why[2048];
      snprintf(why, sizeof why, "%s", st_errmsg()); /* st_fail overwrites the message */
      st_fail(rc, "%s. Free space or move output_dir: a save needs room for one checkpoint "
              "more than training.save_total_limit (%lld) keeps, as the oldest is removed only "
              "after the new one is complete",
              why, (long long)j->training.save_total_limit);
    }
  }
  if (!rc) {
    char hb[32];
    log_info("checkpoint (%s) step %lld: %s, %s in %.2f s (write %.2f s, %.1f MiB/s)", reason,
             (long long)t->st.step, st.path, mem_human(st.tensor_bytes, hb, sizeof hb),
             st.seconds, st.write_seconds,
             st.write_seconds > 0 ? (double)st.tensor_bytes / st.write_seconds / 1048576.0 : 0.0);
  }
  ckpt_slices_free(&l);
  fsdp_pieces_done(&t->fs, 0); /* drop host copies of compute shards */
  free(m.trainable);
  free(m.config_json);
  free(m.snr_json);
  free(cfg_path);
  return rc;
}

/* Resuming with another run length (training.max_steps / num_train_epochs): one line
 * saying what changed and what it does to the learning-rate schedule, which is a function
 * of the total (and, through warmup_ratio, of the warmup) and is recomputed over the new
 * one from the checkpoint's step on. */
static void length_change_note_(const train_ctx *t, const ckpt_train *c, const ckpt_meta *m) {
  const job_config *j = t->job;
  if (c->stored_max_steps == j->training.max_steps &&
      c->stored_epochs == j->training.num_train_epochs)
    return;
  job_config oldj = *j; /* shallow: the keys that may differ besides these change no length */
  const job_config *old = &oldj;
  oldj.training.max_steps = c->stored_max_steps;
  oldj.training.num_train_epochs = c->stored_epochs;
  int64_t old_total, old_warmup;
  train_total_steps(old, t->data.train.n, t->st.global_batch, &old_total, &old_warmup);
  char was[160], now[160];
  if (old->training.max_steps > 0)
    snprintf(was, sizeof was, "training.max_steps %lld", (long long)old->training.max_steps);
  else
    snprintf(was, sizeof was, "training.num_train_epochs %g (%lld steps)",
             old->training.num_train_epochs, (long long)old_total);
  if (j->training.max_steps > 0)
    snprintf(now, sizeof now, "training.max_steps %lld", (long long)j->training.max_steps);
  else
    snprintf(now, sizeof now, "training.num_train_epochs %g (%lld steps)",
             j->training.num_train_epochs, (long long)t->st.total_steps);
  const char *name = job_enum_name("training.lr_scheduler_type", j->training.lr_scheduler_type);
  lr_schedule sched;
  lr_schedule_parse(name, &sched);
  int64_t step = (int64_t)m->step, total = t->st.total_steps;
  char what[512];
  if (old_total == total) {
    snprintf(what, sizeof what, "the run is %lld steps either way: nothing else changes",
             (long long)total);
  } else {
    double lr_new = lr_at_step(sched, (long)step, (long)total, (long)t->st.warmup_steps,
                               j->training.learning_rate);
    double lr_old = lr_at_step(sched, (long)step, (long)old_total, (long)old_warmup,
                               j->training.learning_rate);
    int depends = sched == LR_LINEAR || sched == LR_COSINE || old_warmup != t->st.warmup_steps;
    char warm[96] = "";
    if (old_warmup != t->st.warmup_steps)
      snprintf(warm, sizeof warm, ", warmup %lld steps instead of %lld (training.warmup_ratio)",
               (long long)t->st.warmup_steps, (long long)old_warmup);
    if (!depends)
      snprintf(what, sizeof what,
               "it goes on from step %lld to step %lld; the %s schedule does not depend on the "
               "total: the learning rate is what it would have been (%.4g)",
               (long long)step, (long long)total, name, lr_new);
    else if (step < old_total)
      snprintf(what, sizeof what,
               "it goes on from step %lld to step %lld; the %s schedule is recomputed over "
               "%lld steps instead of %lld%s: step %lld trains at learning rate %.4g (%.4g "
               "with the old total)",
               (long long)step, (long long)total, name, (long long)total, (long long)old_total,
               warm, (long long)step + 1, lr_new, lr_old);
    else
      snprintf(what, sizeof what,
               "it goes on from step %lld to step %lld; the %s schedule is recomputed over "
               "%lld steps instead of %lld%s: step %lld trains at learning rate %.4g (the "
               "checkpoint's last step trained at %.4g)",
               (long long)step, (long long)total, name, (long long)total, (long long)old_total,
               warm, (long long)step + 1, lr_new, m->lr);
  }
  log_info("resuming with %s instead of the checkpoint's %s: %s", now, was, what);
}

static int restore_hook_(train_ctx *t, void *arg) {
  ckpt_train *c = arg;
  if (!c->resume_path) return 0;
  const job_config *j = t->job;
  const ckpt_meta *m = &c->meta;
  char *cfg_path = xasprintf("%s/config.json", j->model.path);
  char *cfg = read_text_(cfg_path);
  int n_tr = 0;
  char **tr = trainable_names_(&t->tt, &n_tr);
  int rc = cfg ? ckpt_check_job(m, cfg, tr, n_tr) : st_fail(ST_EINPUT, "%s: cannot read", cfg_path);
  if (!rc && m->global_batch != t->st.global_batch)
    rc = st_fail(ST_EINPUT,
                 "checkpoint %s was trained with a global batch of %llu samples per step; this "
                 "run has %llu (per_device_train_batch_size %lld x %d ranks x "
                 "gradient_accumulation_steps %lld): choose the accumulation steps so that "
                 "they multiply to %llu",
                 c->resume_path, (unsigned long long)m->global_batch,
                 (unsigned long long)t->st.global_batch,
                 (long long)j->training.per_device_train_batch_size, t->nranks,
                 (long long)j->training.gradient_accumulation_steps,
                 (unsigned long long)m->global_batch);
  if (!rc && (int64_t)m->step > t->st.total_steps)
    rc = st_fail(ST_EINPUT,
                 "checkpoint %s is at step %llu, past this job's %lld steps: set "
                 "training.max_steps to %llu or more to go on from it, or start over with "
                 "--resume none",
                 c->resume_path, (unsigned long long)m->step, (long long)t->st.total_steps,
                 (unsigned long long)m->step);
  free(tr);
  free(cfg);
  free(cfg_path);
  rc = comm_max_status(rc); /* every rank checked the same inputs; agree anyway */
  if (rc) return rc;
  ckpt_slices l = {0};
  slices_of_(t, &l, 0);
  double t0 = time_now_s();
  rc = ckpt_load(c->resume_path, &t->tt, l.s, l.n);
  char *bad = rc ? NULL : slices_nonfinite_(t, &l);
  if (bad)
    rc = st_fail(ST_EINPUT,
                 "checkpoint %s: %s: a checkpoint with non-finite values cannot be resumed "
                 "from (it is damaged, or older than spectrain's refusal to write them); resume "
                 "from an earlier one (checkpoint.resume: PATH) or start over (--resume none)",
                 c->resume_path, bad);
  free(bad);
  if (!rc || bad) rc = agree_(rc, "checking the checkpoint's values");
  ckpt_slices_free(&l);
  fsdp_pieces_done(&t->fs, !rc); /* compute shards: upload what was read into the copies */
  if (rc) return rc;
  t->st.step = (int64_t)m->step;
  t->st.samples_seen = m->data_sample;
  t->st.tokens_seen = m->tokens_seen;
  t->st.elapsed_s = m->elapsed_s;
  c->t0 = time_now_s();
  log_info("resumed from %s: step %llu, %llu tokens seen, next sample %llu (read in %.2f s)",
           c->resume_path, (unsigned long long)m->step, (unsigned long long)m->tokens_seen,
           (unsigned long long)m->data_sample, c->t0 - t0);
  if (c->have_stored) length_change_note_(t, c, m);
  return 0;
}

/* ---- preparation ------------------------------------------------------------------------- */

static void restr_(char **dst, const char *src) {
  free(*dst);
  *dst = src ? xstrdup(src) : NULL;
}

/* Training with the checkpoint's job still runs where and how this invocation says: the
 * run-only keys (run_only_keys_) come from the given job. */
static void adopt_run_keys_(job_config *dst, const job_config *src) {
  restr_(&dst->output_dir, src->output_dir);
  restr_(&dst->training.output_dir, src->training.output_dir);
  restr_(&dst->checkpoint.resume, src->checkpoint.resume);
  dst->checkpoint.take_from_checkpoint = src->checkpoint.take_from_checkpoint;
  dst->checkpoint.save_on_signal = src->checkpoint.save_on_signal;
  dst->sharding = src->sharding;
  restr_(&dst->logging.metrics_file, src->logging.metrics_file);
  dst->logging.log_memory = src->logging.log_memory;
  dst->training.max_steps = src->training.max_steps;
  dst->training.num_train_epochs = src->training.num_train_epochs;
  dst->training.save_steps = src->training.save_steps;
  dst->training.save_total_limit = src->training.save_total_limit;
  dst->training.logging_steps = src->training.logging_steps;
  dst->training.eval_steps = src->training.eval_steps;
  dst->training.eval_max_batches = src->training.eval_max_batches;
  dst->training.per_device_eval_batch_size = src->training.per_device_eval_batch_size;
  dst->training.backend = src->training.backend;
  dst->training.per_device_train_batch_size = src->training.per_device_train_batch_size;
  dst->training.gradient_accumulation_steps = src->training.gradient_accumulation_steps;
  dst->training.gradient_checkpointing = src->training.gradient_checkpointing;
}

int ckpt_train_prepare(ckpt_train *c, const job_config *job, const char *resume) {
  memset(c, 0, sizeof *c);
  c->job = job;
  c->t0 = time_now_s();
  if (!resume) resume = job->checkpoint.resume ? job->checkpoint.resume : "auto";
  int rc = ckpt_resolve_resume(job->output_dir, resume, &c->resume_path);
  if (!rc && c->resume_path) rc = ckpt_read_meta(c->resume_path, 1, &c->meta);
  if (!rc && c->resume_path) {
    rc = job_load_stored(c->resume_path, c->meta.job_text ? c->meta.job_text : "",
                         c->meta.job_sets ? c->meta.job_sets : "", &c->stored);
    c->have_stored = 1;
    if (rc) st_fail_ctx(rc, "the job stored in the checkpoint: ");
    c->stored_max_steps = c->stored.training.max_steps; /* before adopt_run_keys_ */
    c->stored_epochs = c->stored.training.num_train_epochs;
  }
  if (!rc && c->resume_path) {
    char *all = job_diff(&c->stored, job), *diff = relevant_diff_(all);
    if (diff && job->checkpoint.take_from_checkpoint) {
      log_info("checkpoint.take_from_checkpoint: training with the job stored in %s (it "
               "differs from the given one in: %s)",
               c->resume_path, diff);
      adopt_run_keys_(&c->stored, job);
      c->job = &c->stored;
    } else if (diff) {
      rc = st_fail(ST_EINPUT,
                   "%s: the job differs from the one the checkpoint was trained with in: %s. "
                   "Resume with the same job, start over with --resume none, or set "
                   "checkpoint.take_from_checkpoint: true to train with the checkpoint's job",
                   c->resume_path, diff);
    }
    free(diff);
    free(all);
  }
  rc = comm_max_status(rc);
  c->hooks.restore = restore_hook_;
  c->hooks.save = save_hook_;
  c->hooks.arg = c;
  return rc;
}

void ckpt_train_free(ckpt_train *c) {
  if (c->have_stored) job_free(&c->stored);
  ckpt_meta_free(&c->meta);
  free(c->resume_path);
  memset(c, 0, sizeof *c);
}
