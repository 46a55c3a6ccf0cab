/* spectrain check: validate a job file and its token data without training; print the
 * job reference (docs/job-file.md is this command's --print-job-reference output). */
#include <stdio.h>
#include <stdlib.h>

#include "commands.h"
#include "job/job.h"
#include "io/data.h"
#include "mpi/comm.h"
#include "util/err.h"
#include "util/opt.h"

int cmd_check(int argc, char **argv) {
  static const opt_cmd cmd = {
      "check",
      "[JOB.yaml]",
      0,
      1,
      "check a job file and its token data (keys, types, ranges, files, token ids)",
      "Prints the job hash, the number of training and validation samples and tokens.\n"
      "With --print-job-reference, prints the reference of every job key (docs/job-file.md)."};
  opt_list sets = {0, NULL};
  int print_ref = 0, print_job = 0;
  long vocab = 0;
  opt_spec specs[] = {
      {"set", OPT_MULTI, "KEY=VALUE", "override a job key by its dotted path (repeatable)", &sets},
      {"print-job", OPT_FLAG, NULL, "print the effective job (every key) as YAML", &print_job},
      {"print-job-reference", OPT_FLAG, NULL, "print the job file reference (markdown) and exit",
       &print_ref},
      {"vocab-size", OPT_INT, "N", "check token ids against N (default: data.vocab_size)", &vocab},
  };
  int np = 0;
  char **pos = NULL;
  int rc = opt_parse(&cmd, specs, (int)(sizeof specs / sizeof specs[0]), argc, argv, &np, &pos);
  if (rc) {
    opt_list_free(&sets);
    return rc == OPT_HELP_SHOWN ? OPT_HELP_SHOWN : st_report(rc);
  }
  if (print_ref) {
    job_print_reference(stdout);
    free(pos);
    opt_list_free(&sets);
    return 0;
  }
  if (np != 1) {
    free(pos);
    opt_list_free(&sets);
    st_fail(ST_EINPUT, "check: missing argument; usage: spectrain check JOB.yaml [options]");
    return st_report(ST_EINPUT);
  }
  job_config job;
  rc = job_load(pos[0], &sets, &job);
  free(pos);
  opt_list_free(&sets);
  /* every rank stops on any rank's error; then every rank proves it read the same job */
  int all = comm_max_status(rc);
  if (!rc && all) rc = st_fail(all, "another rank could not read the job");
  if (!rc) rc = comm_agree_u64(job_hash(&job), "the job (job file and --set overrides)");
  if (rc) {
    job_free(&job);
    return st_report(rc);
  }
  if (print_job) {
    char *y = job_to_yaml(&job);
    fputs(y, stdout);
    free(y);
  }
  log_info("job %s: hash %016llx", job.source_path, (unsigned long long)job_hash(&job));
  data_job d;
  rc = data_open_job(&job, vocab, &d);
  all = comm_max_status(rc);
  if (!rc && all) {
    data_job_close(&d);
    rc = st_fail(all, "another rank could not read the token data");
  }
  if (rc) {
    job_free(&job);
    return st_report(rc);
  }
  log_info(
      "train: %llu samples of %lld tokens (%llu tokens read, largest id %lld, %llu "
      "records truncated)",
      (unsigned long long)d.train.n, (long long)data_seq_len(d.train_src),
      (unsigned long long)data_num_tokens(d.train_src), (long long)data_max_token(d.train_src),
      (unsigned long long)data_num_truncated(d.train_src));
  log_info("validation: %llu samples (%s)", (unsigned long long)d.val.n,
           d.val_src ? job.data.validation
           : d.val.n ? "held out of the training files"
                     : "none");
  data_job_close(&d);
  job_free(&job);
  return 0;
}
