/* `spectrain train JOB.yaml [--set key=value ...]`: run a training job on every rank of the
 * MPI world (mpirun -np N / srun). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ckpt/format.h"
#include "commands.h"
#include "job/job.h"
#include "mpi/comm.h"
#include "train/train.h"
#include "train/train_ckpt.h"
#include "util/err.h"
#include "util/fs.h"
#include "util/opt.h"
#include "util/signals.h"

/* model.init_preset: when model.path holds no config.json (as rank 0 sees it), write a
 * randomly initialised model of that preset there first, exactly as `spectrain init
 * --preset NAME --seed model.init_seed --out model.path` does (only rank 0 writes). */
static int ensure_model_(const job_config *job) {
  if (!job->model.init_preset) return ST_OK;
  int missing = 0;
  if (comm_rank() == 0) {
    char *cfg = xasprintf("%s/config.json", job->model.path);
    missing = access(cfg, F_OK) != 0;
    free(cfg);
  }
  int rc = comm_bcast(&missing, sizeof missing, 0);
  if (rc || !missing) return rc;
  char seed[32];
  snprintf(seed, sizeof seed, "%lld", (long long)job->model.init_seed);
  char *iargv[] = {"init", "--out", job->model.path, "--preset", job->model.init_preset,
                   "--seed", seed};
  rc = cmd_init((int)(sizeof iargv / sizeof iargv[0]), iargv); /* reports its own error */
  int all = comm_max_status(rc); /* also: no rank opens the model before rank 0 wrote it */
  if (all && !rc) rc = st_fail(all, "rank 0 could not initialise %s", job->model.path);
  else if (rc) rc = st_fail(rc, "model.init_preset: could not write %s (see above)",
                            job->model.path);
  return rc;
}

/* One training per output_dir: rank 0 holds OUTPUT_DIR/train.lock (util/fs.h: a record
 * lock the kernel drops when the process dies) from before the checkpoint listing to the
 * end. A second training on the folder fails here, before it reads or writes anything
 * there, on every rank. Holding the lock, rank 0 also removes the .tmp files of saves that
 * an earlier, killed run left behind. */
static int lock_output_dir_(const job_config *job, fs_lock *lk) {
  lk->fd = -1;
  lk->path = NULL;
  int rc = ST_OK;
  char msg[2048] = "";
  if (comm_rank() == 0) {
    rc = fs_mkdir_p(job->output_dir);
    char host[256] = "?", when[64] = "?";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    time_t now = time(NULL);
    struct tm tm;
    if (localtime_r(&now, &tm)) strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S %z", &tm);
    char *about = xasprintf("pid %ld on host %s, training %s on %d rank(s) since %s",
                            (long)getpid(), host, job->source_path ? job->source_path : "?",
                            comm_size(), when);
    char *path = xasprintf("%s/train.lock", job->output_dir);
    if (!rc) {
      rc = fs_lock_take(path, about, lk);
      if (rc == FS_LOCK_UNSUPPORTED) {
        log_warn("%s; a second training started on output_dir %s would not be refused",
                 st_errmsg(), job->output_dir);
        st_clear_error();
        rc = ST_OK;
      } else if (rc == ST_EINPUT) { /* held by another process */
        char why[1024];
        snprintf(why, sizeof why, "%s", st_errmsg()); /* st_fail overwrites the message */
        rc = st_fail(ST_EINPUT,
                     "output_dir %s is in use by another training (%s). Two trainings in one "
                     "folder would overwrite each other's checkpoints, metrics and final "
                     "model: wait for that one to end or stop it, or give this job another "
                     "output_dir (e.g. --set output_dir=%s-2)",
                     job->output_dir, why, job->output_dir);
      } else if (!rc) {
        ckpt_remove_tmp(job->output_dir, NULL, 1);
      }
    }
    if (rc) snprintf(msg, sizeof msg, "%s", st_errmsg());
    free(path);
    free(about);
  }
  int b[1] = {rc};
  int crc = comm_bcast(b, sizeof b, 0);
  if (!crc && b[0]) crc = comm_bcast(msg, sizeof msg, 0);
  if (crc) return crc;
  if (b[0] && comm_rank() != 0) return st_fail(b[0], "%s", msg);
  return b[0];
}

/* The loop's stop hook: USR1/TERM on any rank stops every rank after the same step. */
/* Every rank at the same step boundary: 1 on every rank when any rank has a stop request
 * (one integer allreduce; free on one rank). */
static int stop_agreed_(void *arg) {
  signals_test_delay();
  return comm_max_status(stop_requested() ? 1 : 0) != 0;
}

int cmd_train(int argc, char **argv) {
  static const opt_cmd cmd = {
      "train", "JOB.yaml", 1, 1, "train a model as the job file says (any number of ranks)",
      "Every rank reads the same job file; the job (with its --set overrides), the model and "
      "the trainable set are checked to be identical on all ranks before training starts.\n"
      "Writes OUTPUT_DIR/metrics.jsonl (one JSON object per logged step) and the trained "
      "model as a Hugging Face directory OUTPUT_DIR/final (config.json + model.safetensors).\n"
      "The global batch is per_device_train_batch_size x ranks x gradient_accumulation_steps; "
      "any split with the same product trains the same model. sharding.offload: cpu keeps "
      "shards and optimizer state in host memory. On SIGUSR1/SIGTERM every rank stops after "
      "the same step (exit status 75).\n"
      "Checkpoints: OUTPUT_DIR/ckpt-STEP.h5 every training.save_steps steps, at the end and on "
      "a stop request. A run resumes from the newest "
      "checkpoint whose checksums verify (--resume auto), on any number of ranks; "
      "docs/checkpoints.md describes the files."};
  opt_list sets = {0};
  const char *resume = NULL;
  opt_spec specs[] = {
      {"set", OPT_MULTI, "KEY=VALUE",
       "override a job key, e.g. --set training.max_steps=10", &sets},
      {"resume", OPT_STR, "auto|none|PATH",
       "resume from the newest verified checkpoint in output_dir (auto), start from the model "
       "(none), or from this checkpoint file (default: the job's checkpoint.resume)", &resume},
  };
  int np = 0;
  char **pos = NULL;
  int rc = opt_parse(&cmd, specs, (int)(sizeof specs / sizeof specs[0]), argc, argv, &np, &pos);
  if (rc) {
    opt_list_free(&sets);
    return rc == OPT_HELP_SHOWN ? ST_OK : st_report(rc);
  }
  job_config job;
  rc = job_load(pos[0], &sets, &job);
  /* before any collective: a rank that could not read its job stops every rank */
  int all = comm_max_status(rc);
  if (all && !rc) rc = st_fail(all, "another rank could not load its job file (see its error)");
  fs_lock lock = {-1, NULL};
  if (!rc) rc = lock_output_dir_(&job, &lock);
  ckpt_train ck;
  memset(&ck, 0, sizeof ck);
  if (!rc) rc = ckpt_train_prepare(&ck, &job, resume); /* may take the checkpoint's job */
  const job_config *use = ck.job ? ck.job : &job;
  if (!rc) rc = ensure_model_(use);
  train_hooks hooks = ck.hooks; /* checkpoint save and restore */
  if (!rc && use->checkpoint.save_on_signal) {
    rc = signals_install();
    hooks.stop_agreed = stop_agreed_;
  }
  if (!rc) rc = train_run(use, &hooks);
  if (use->checkpoint.save_on_signal) signals_uninstall();
  ckpt_train_free(&ck);
  fs_lock_release(&lock); /* after the last write into output_dir */
  job_free(&job);
  free(pos);
  opt_list_free(&sets);
  if (rc == ST_STOPPED) return rc;
  return rc ? st_report(rc) : ST_OK;
}
